"""Walking an index range entry by entry: the base's keys in the range, without those hidden at a snapshot,
with the keys added since merged in, in key order (or reversed).

Responsibilities: :class:`Entry`, one key of a range; :func:`forward` and :func:`backward`, lazy walks that
read the base in chunks (64 keys first, doubling up to 4,096), so taking the first ``n`` entries costs about
``n``. :meth:`zapnb.index.IndexData.scan` merges one walk per source (the base and each bulk run);
:mod:`zapnb.indexrows` answers whole ranges as arrays instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from itertools import repeat
from operator import itemgetter
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from zapnb.indexbase import SortedKeys

__all__ = ["FIRST_CHUNK", "LAST_CHUNK", "Entry", "backward", "entry_key", "forward"]

Int64s = npt.NDArray[np.int64]

FIRST_CHUNK: Final = 64  # base keys read per step when a walk starts; doubled each step up to LAST_CHUNK
LAST_CHUNK: Final = 4096


class Entry(NamedTuple):
    """One key of an index range: a base entry has the document's row in the table base and no ``doc_id``;
    an entry added since the base has ``position == -1`` and its document's ``doc_id``."""

    key: bytes
    position: int
    doc_id: str | None


_base_entry: Final = partial(tuple.__new__, Entry)
entry_key: Final = itemgetter(0)
"""An entry's key (to merge walks by)."""


def forward(
    base: SortedKeys, rows: Int64s, i: int, j: int, hidden: list[int], keys: list[bytes], ids: list[str]
) -> Iterator[Entry]:
    """The entries of ``base`` positions ``[i, j)`` (rows ``rows``) without the positions ``hidden``, merged
    with the added ``keys`` (document IDs ``ids``), ascending; all three lists ascending."""
    t, d = 0, 0
    next_hidden = hidden[0] if hidden else j
    next_key = keys[0] if keys else None
    step = FIRST_CHUNK
    while i < j:
        stop = min(j, i + step)
        step = min(2 * step, LAST_CHUNK)
        chunk = base.keys(i, stop)
        positions: list[int] = rows[i:stop].tolist()
        if next_hidden >= stop and (next_key is None or next_key > chunk[-1]):
            yield from map(_base_entry, zip(chunk, positions, repeat(None)))
            i = stop
            continue
        for at, key in enumerate(chunk, start=i):
            if at == next_hidden:
                t += 1
                next_hidden = hidden[t] if t < len(hidden) else j
                continue
            while next_key is not None and next_key < key:
                yield Entry(next_key, -1, ids[d])
                d += 1
                next_key = keys[d] if d < len(keys) else None
            yield Entry(key, positions[at - i], None)
        i = stop
    for k in range(d, len(keys)):
        yield Entry(keys[k], -1, ids[k])


def backward(
    base: SortedKeys, rows: Int64s, i: int, j: int, hidden: list[int], keys: list[bytes], ids: list[str]
) -> Iterator[Entry]:
    """:func:`forward`'s entries, descending."""
    t, d = len(hidden) - 1, len(keys) - 1
    next_hidden = hidden[t] if hidden else -1
    next_key = keys[d] if keys else None
    step = FIRST_CHUNK
    while j > i:
        start = max(i, j - step)
        step = min(2 * step, LAST_CHUNK)
        chunk = base.keys(start, j)
        positions: list[int] = rows[start:j].tolist()
        if next_hidden < start and (next_key is None or next_key < chunk[0]):
            yield from map(_base_entry, zip(reversed(chunk), reversed(positions), repeat(None)))
            j = start
            continue
        for at in range(j - 1, start - 1, -1):
            key = chunk[at - start]
            if at == next_hidden:
                t -= 1
                next_hidden = hidden[t] if t >= 0 else -1
                continue
            while next_key is not None and next_key > key:
                yield Entry(next_key, -1, ids[d])
                d -= 1
                next_key = keys[d] if d >= 0 else None
            yield Entry(key, positions[at - start], None)
        j = start
    for k in range(d, -1, -1):
        yield Entry(keys[k], -1, ids[k])

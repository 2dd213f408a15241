"""A whole index range as arrays: the table-base row of every entry in key order, without a Python object per
entry.

Responsibilities:

- :class:`Part`: one sorted source of an index range at a snapshot: the window of the index base, or of one
  bulk run, that falls in the range, with its rows in the table base and the positions hidden at the snapshot;
- :func:`ordered_rows`: the parts merged in key order (vectorised), hidden entries dropped, and the keys added
  since the base (which have no row yet) placed where they fall.

:meth:`~zapnb.index.IndexData.scan` yields the same entries one by one, which is what reading a few rows
needs; reading a range of a million rows that way costs about a second of Python, and these arrays a few
milliseconds (:mod:`zapnb.queries` uses them for ``collect()`` and ``count()`` with filters).

Examples
--------
>>> import numpy as np
>>> from zapnb.indexbase import sort_keys
>>> base, _ = sort_keys([b"a", b"c", b"e"])
>>> run, _ = sort_keys([b"b", b"f"])
>>> ranged = ordered_rows(
...     [Part(base, np.array([0, 1, 2]), [1]), Part(run, np.array([3, 4]), [])], [b"d"], ["id9"]
... )
>>> ranged.rows.tolist(), ranged.added
([0, 3, -1, 2, 4], {2: 'id9'})
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from zapnb.indexbase import SortedKeys
from zapnb.keymerge import merge_sorted

__all__ = ["Part", "RangeRows", "ordered_rows"]

Int64s = npt.NDArray[np.int64]

_HIDDEN: Final = -2  # a row never has this number: marks an entry hidden at the snapshot while merging

FEW_TO_PLACE: Final = 65_536
"""Up to this many keys outside the largest part are placed one search each; beyond, parts merge pairwise."""


@dataclass(frozen=True)
class Part:
    """A window of sorted keys with their table-base rows; ``hidden`` are positions in the window (ascending)
    whose entries the snapshot does not see."""

    keys: SortedKeys
    rows: Int64s
    hidden: Sequence[int]


@dataclass(frozen=True)
class RangeRows:
    """A range's entries in key order: ``rows[k]`` is the table-base row of entry ``k``, or -1 for an entry
    added since the base, whose document ID is ``added[k]``. ``rows`` may be a view of an index's array:
    copy it before changing it."""

    rows: Int64s
    added: dict[int, str]

    def reversed(self) -> RangeRows:
        """The same entries in descending key order."""
        last = len(self.rows) - 1
        return RangeRows(self.rows[::-1], {last - k: doc_id for k, doc_id in self.added.items()})


def ordered_rows(parts: Sequence[Part], added_keys: Sequence[bytes], added_ids: Sequence[str]) -> RangeRows:
    """Merge ``parts`` (whose keys are pairwise distinct) in key order, drop their hidden entries, and place
    ``added_keys`` (ascending, with their document IDs, distinct from the parts' visible keys) among them."""
    parts = [part for part in parts if len(part.keys)]
    marked = [_marked(part) for part in parts]
    if not parts:
        rows: Int64s = np.empty(0, np.int64)
    elif len(parts) == 1:
        rows = marked[0]
    else:
        rows = _merged(parts, marked)
    gone = rows == _HIDDEN
    visible = rows[~gone] if bool(gone.any()) else rows
    if not added_keys:
        return RangeRows(visible, {})
    below = np.zeros(len(added_keys), np.int64)
    for part in parts:
        below += part.keys.bisect_many(added_keys)
    hidden_below = np.concatenate([np.zeros(1, np.int64), np.cumsum(gone, dtype=np.int64)])[below]
    at = below - hidden_below + np.arange(len(added_keys), dtype=np.int64)
    out = np.empty(len(visible) + len(added_keys), np.int64)
    taken = np.zeros(len(out), bool)
    taken[at] = True
    out[~taken] = visible
    out[taken] = -1
    return RangeRows(out, dict(zip(at.tolist(), added_ids, strict=True)))


def _marked(part: Part) -> Int64s:
    """The part's rows, with its hidden entries marked."""
    if not len(part.hidden):
        return part.rows
    rows = part.rows.copy()
    rows[np.asarray(part.hidden, np.int64)] = _HIDDEN
    return rows


def _merged(parts: Sequence[Part], marked: Sequence[Int64s]) -> Int64s:
    """The marked rows of several parts in key order.

    The usual case is one large part (the base, or a large bulk insert) and a few small ones: each small
    part's keys are placed by searching the others, and the large part fills the rest, in order; nothing
    is copied but the rows. When the small parts are large too, the parts are merged pairwise with their keys.
    """
    big = max(range(len(parts)), key=lambda k: len(parts[k].keys))
    total = sum(len(part.keys) for part in parts)
    if total - len(parts[big].keys) > FEW_TO_PLACE:
        keys, rows = parts[0].keys, marked[0]
        for part, part_rows in zip(parts[1:], marked[1:], strict=True):
            keys, rows, _, _ = merge_sorted(keys, rows, part.keys, part_rows)
        return rows
    out = np.empty(total, np.int64)
    taken = np.zeros(total, bool)
    for k, part in enumerate(parts):
        if k == big:
            continue
        own = part.keys.keys(0, len(part.keys))
        at = np.arange(len(own), dtype=np.int64)
        for q, other in enumerate(parts):
            if q != k:
                at += other.keys.bisect_many(own)
        out[at] = marked[k]
        taken[at] = True
    out[~taken] = marked[big]
    return out

"""Merging sorted index keys: new keys into a base at a checkpoint (:func:`merge_keys`), two sorted key sets
into one (:func:`merge_sorted`), and the positions of one set's keys in another (:func:`positions_of`), all
vectorised, for checkpoints and for the runs of keys that bulk inserts add (:mod:`zapnb.indexdelta`).

The keys are :class:`~zapnb.indexbase.SortedKeys` in either layout; a result keeps the fixed layout when
:func:`~zapnb.indexbase.choose_layout` allows it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from zapnb.indexbase import FixedKeys, Int64s, SortedKeys, choose_layout, keys_from_sorted_arrow

__all__ = ["merge_keys", "merge_sorted", "positions_of"]


def merge_keys(base: SortedKeys, removed: Int64s, new: Sequence[bytes]) -> tuple[SortedKeys, Int64s, Int64s]:
    """The base without the keys at positions ``removed`` (ascending), with the sorted keys ``new`` merged in.

    Returns the merged keys, the new position of each kept base key (in order) and of each new key. No new
    key may equal a kept one. Linear in the base (no sort of the whole); the base itself when nothing changes.
    """
    if not len(removed) and not len(new):
        return base, np.arange(len(base), dtype=np.int64), np.empty(0, np.int64)
    kept = len(base) - len(removed)
    at = base.bisect_many(new) if len(new) else np.empty(0, np.int64)
    dest_new = at - removed.searchsorted(at) + np.arange(len(new), dtype=np.int64)
    is_new = np.zeros(kept + len(new), bool)
    is_new[dest_new] = True
    dest_kept = np.flatnonzero(~is_new).astype(np.int64)
    lengths = np.fromiter(map(len, new), np.int64, len(new))
    width = max(base.width, int(lengths.max()) if len(new) else 1)
    total = _total_bytes(base, removed) + int(lengths.sum())
    if isinstance(base, FixedKeys) and choose_layout(kept + len(new), width, total) == "fixed":
        return _merge_fixed(base, removed, new, width, dest_kept, dest_new), dest_kept, dest_new
    return _merge_arrow(base, removed, new, dest_kept, dest_new), dest_kept, dest_new


def _total_bytes(base: SortedKeys, removed: Int64s) -> int:
    if isinstance(base, FixedKeys):
        return int(base._lengths.sum(dtype=np.int64)) - int(base._lengths[removed].sum(dtype=np.int64))
    _, offsets = base.arrays()
    return int(offsets[-1]) - int((offsets[removed + 1] - offsets[removed]).sum()) if len(base) else 0


def _merge_fixed(
    base: FixedKeys, removed: Int64s, new: Sequence[bytes], width: int, dest_kept: Int64s, dest_new: Int64s
) -> FixedKeys:
    dtype = np.dtype(f"S{width}")
    keys = np.empty(len(dest_kept) + len(new), dtype)
    lengths = np.empty(len(keys), np.uint32)
    keys[dest_kept] = np.delete(base._keys, removed)
    lengths[dest_kept] = np.delete(base._lengths, removed)
    keys[dest_new] = np.array(new, dtype) if len(new) else np.empty(0, dtype)
    lengths[dest_new] = np.fromiter(map(len, new), np.uint32, len(new))
    return FixedKeys(keys, lengths)


def _merge_arrow(
    base: SortedKeys, removed: Int64s, new: Sequence[bytes], dest_kept: Int64s, dest_new: Int64s
) -> SortedKeys:
    import pyarrow as pa

    old = base.to_arrow()
    if len(removed):
        keep = np.ones(len(base), bool)
        keep[removed] = False
        old = old.filter(pa.array(keep))
    combined = pa.concat_arrays([old, pa.array(list(new), pa.large_binary())])
    order = np.empty(len(combined), np.int64)
    order[dest_kept] = np.arange(len(dest_kept))
    order[dest_new] = np.arange(len(dest_kept), len(combined))
    return keys_from_sorted_arrow(combined.take(pa.array(order)))


def _common_width(
    first: FixedKeys, second: FixedKeys
) -> tuple[npt.NDArray[np.bytes_], npt.NDArray[np.bytes_]]:
    """Both key arrays at the wider of their widths (NumPy pads with zeros, which keeps their order)."""
    dtype = np.dtype(f"S{max(first.width, second.width)}")
    return first._keys.astype(dtype, copy=False), second._keys.astype(dtype, copy=False)


def positions_of(keys: SortedKeys, probes: SortedKeys) -> Int64s:
    """The position in ``keys`` of each key of ``probes``, or -1 where ``keys`` does not hold it.

    Vectorised when both are in the fixed layout (one search of the whole sorted ``probes``).

    Examples
    --------
    >>> from zapnb.indexbase import sort_keys
    >>> keys, _ = sort_keys([b"a", b"c", b"e"])
    >>> probes, _ = sort_keys([b"c", b"d", b"e\\x00"])
    >>> positions_of(keys, probes).tolist()
    [1, -1, -1]
    """
    if not len(keys) or not len(probes):
        return np.full(len(probes), -1, np.int64)
    if not (isinstance(keys, FixedKeys) and isinstance(probes, FixedKeys)):
        return np.array(keys.find_many(probes.keys(0, len(probes))), np.int64)
    stored, wanted = _common_width(keys, probes)
    at: Int64s = stored.searchsorted(wanted).astype(np.int64)
    near = np.minimum(at, len(keys) - 1)
    hit = (at < len(keys)) & (stored[near] == wanted) & (keys._lengths[near] == probes._lengths)
    found: Int64s = np.where(hit, at, -1)
    return found


def merge_sorted(
    first: SortedKeys, first_rows: Int64s, second: SortedKeys, second_rows: Int64s
) -> tuple[SortedKeys, Int64s, Int64s, Int64s]:
    """Merge two sorted key sets that share no key, each key with its row.

    Returns the merged keys, their rows, and the merged position of each key of ``first`` and of ``second``.
    Linear (one vectorised search) when both are in the fixed layout.

    Examples
    --------
    >>> from zapnb.indexbase import sort_keys
    >>> a, _ = sort_keys([b"a", b"c"])
    >>> b, _ = sort_keys([b"b", b"d"])
    >>> keys, rows, to_first, to_second = merge_sorted(a, np.array([0, 1]), b, np.array([7, 8]))
    >>> keys.keys(0, 4), rows.tolist(), to_first.tolist(), to_second.tolist()
    ([b'a', b'b', b'c', b'd'], [0, 7, 1, 8], [0, 2], [1, 3])
    """
    total = len(first) + len(second)
    if not len(first) or not len(second):  # one of them, as it is
        only, only_rows = (second, second_rows) if not len(first) else (first, first_rows)
        return (
            only,
            only_rows,
            np.arange(len(first), dtype=np.int64),
            np.arange(len(first), total, dtype=np.int64),
        )
    if isinstance(first, FixedKeys) and isinstance(second, FixedKeys):
        left, right = _common_width(first, second)
        to_second: Int64s = left.searchsorted(right).astype(np.int64) + np.arange(len(second))
    else:
        to_second = first.bisect_many(second.keys(0, len(second))) + np.arange(len(second))
    from_second = np.zeros(total, bool)
    from_second[to_second] = True
    to_first: Int64s = np.flatnonzero(~from_second).astype(np.int64)
    rows = np.empty(total, np.int64)
    rows[to_first], rows[to_second] = first_rows, second_rows
    if isinstance(first, FixedKeys) and isinstance(second, FixedKeys):
        keys = np.empty(total, left.dtype)
        keys[to_first], keys[to_second] = left, right
        lengths = np.empty(total, np.uint32)
        lengths[to_first], lengths[to_second] = first._lengths, second._lengths
        return FixedKeys(keys, lengths), rows, to_first, to_second
    import pyarrow as pa

    order = np.empty(total, np.int64)
    order[to_first], order[to_second] = np.arange(len(first)), np.arange(len(first), total)
    combined = pa.concat_arrays([first.to_arrow(), second.to_arrow()]).take(pa.array(order))
    return keys_from_sorted_arrow(combined), rows, to_first, to_second

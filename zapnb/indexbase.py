"""The base of an index: its keys as of a checkpoint, sorted and immutable, searchable in about a microsecond.

Responsibilities:

- hold ``n`` sorted keys in one of two layouts and give back any of them exactly;
- find where a key falls (:meth:`SortedKeys.bisect`) with exact bytewise semantics;
- sort unsorted keys (:func:`sort_keys`), vectorised, and find a duplicate (:func:`first_duplicate`).

Merging sorted keys (into a base at a checkpoint, or two sorted sets) is :mod:`zapnb.keymerge`.

Layouts
-------
``"fixed"`` (the usual one): a NumPy ``S{W}`` array, ``W`` the longest key, and each key's length. A search
is one ``np.searchsorted``: about 1 µs on a million 86-byte keys. NumPy compares ``S`` items as if padded with
``0x00`` and drops trailing ``0x00`` bytes when it reads an item back, so the lengths restore the keys
exactly, and the padded order is the bytewise order as long as no two keys differ only by trailing ``0x00``
bytes. Index keys never do: all keys of one index encode the same number of self-delimiting values, so none
is a prefix of another. A probe (a range bound) may be any bytes: the one key that can tie with it once
padded is resolved by its length.

``"var"`` (very long keys): when the longest key is over :data:`FIXED_WIDTH_LIMIT` bytes and fixed width would
take more than :data:`WASTE_LIMIT` times the bytes of the keys themselves (one 50 kB key among a million short
ones would need 50 GB), the keys are stored end to end with their offsets, as Arrow's ``large_binary`` does.
A search is then a binary search in Python, about 20 µs: correct and compact rather than fast.

Examples
--------
>>> keys, order = sort_keys([b"b\\x00", b"a", b"c\\x00\\x00"])
>>> keys.layout, order.tolist(), keys.keys(0, len(keys))
('fixed', [1, 0, 2], [b'a', b'b\\x00', b'c\\x00\\x00'])
>>> keys.bisect(b"b"), keys.bisect(b"b\\x00"), keys.bisect(b"b\\x00\\x00"), keys.find(b"c")
(1, 1, 2, -1)
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, ClassVar, Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "FIXED_WIDTH_LIMIT",
    "WASTE_LIMIT",
    "FixedKeys",
    "Layout",
    "SortedKeys",
    "VarKeys",
    "choose_layout",
    "empty_keys",
    "first_duplicate",
    "keys_from_sorted_arrow",
    "sort_keys",
    "sort_uniform",
]

Layout = Literal["fixed", "var"]
Int64s = npt.NDArray[np.int64]
if TYPE_CHECKING:
    KeysInput: TypeAlias = Sequence[bytes] | pa.Array | pa.ChunkedArray

FIXED_WIDTH_LIMIT: Final = 512
"""Keys up to this long always use the fixed layout."""
WASTE_LIMIT: Final = 4
"""Longer keys use the fixed layout only while it takes at most this many times the keys' own bytes."""

# Up to this many keys are looked up one by one (a vectorised search costs more to set up).
_FEW: Final = 16
# Arrays of at least twice this many keys are sorted as parallel runs, then merged.
_SORT_CHUNK: Final = 131_072


def choose_layout(count: int, width: int, total: int) -> Layout:
    """The layout for ``count`` keys of ``total`` bytes, the longest ``width`` bytes long.

    Examples
    --------
    >>> choose_layout(1000, 86, 86_000), choose_layout(1000, 50_000, 136_000), choose_layout(10, 600, 6000)
    ('fixed', 'var', 'fixed')
    """
    if width <= FIXED_WIDTH_LIMIT or count * width <= WASTE_LIMIT * total:
        return "fixed"
    return "var"


class SortedKeys(abc.ABC):
    """Keys in ascending bytewise order, immutable (safe to read from any thread)."""

    layout: ClassVar[Layout]

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @property
    @abc.abstractmethod
    def width(self) -> int:
        """The length of the longest key (at least 1)."""

    @property
    @abc.abstractmethod
    def nbytes(self) -> int:
        """The memory the arrays take."""

    @abc.abstractmethod
    def bisect(self, key: bytes) -> int:
        """How many keys are smaller than ``key`` (bytewise)."""

    @abc.abstractmethod
    def keys(self, start: int, stop: int) -> list[bytes]:
        """The keys at positions ``start`` to ``stop - 1``, exactly as stored."""

    @abc.abstractmethod
    def bisect_many(self, keys: Sequence[bytes]) -> Int64s:
        """:meth:`bisect` of each key, vectorised where the layout allows."""

    @abc.abstractmethod
    def window(self, start: int, stop: int) -> SortedKeys:
        """The keys at positions ``start`` to ``stop - 1`` as keys of their own (a view: no copy)."""

    @abc.abstractmethod
    def to_arrow(self) -> pa.LargeBinaryArray:
        """The keys as an Arrow array (a copy for the fixed layout, zero-copy for the variable one)."""

    @abc.abstractmethod
    def arrays(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint32] | Int64s]:
        """The two arrays to store: fixed: (key bytes, lengths); var: (key bytes, offsets)."""

    def find(self, key: bytes) -> int:
        """The position of ``key``, or -1 if it is not here."""
        i = self.bisect(key)
        return i if i < len(self) and self.keys(i, i + 1)[0] == key else -1

    def find_many(self, keys: Sequence[bytes]) -> list[int]:
        """:meth:`find` of each key."""
        return [self.find(key) for key in keys]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self)} keys, width {self.width}>"


class FixedKeys(SortedKeys):
    """Keys in a NumPy ``S{W}`` array plus their lengths (see the module docstring)."""

    layout: ClassVar[Layout] = "fixed"

    def __init__(self, keys: npt.NDArray[np.bytes_], lengths: npt.NDArray[np.uint32]) -> None:
        self._keys = keys
        self._lengths = lengths
        self._n = len(keys)
        self._dtype = keys.dtype

    def __len__(self) -> int:
        return self._n

    @property
    def width(self) -> int:
        return int(self._dtype.itemsize)

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._lengths.nbytes)

    def bisect(self, key: bytes) -> int:
        probe = key[: self._dtype.itemsize]
        i = int(self._keys.searchsorted(np.array(probe, self._dtype)))
        # Only one stored key can equal the probe once both are padded with zeros: it is smaller than the
        # probe exactly when it is shorter (the probe then extends it with zeros, or is longer than W).
        if i < self._n and self._keys[i] == probe.rstrip(b"\x00") and self._lengths[i] < len(key):
            i += 1
        return i

    def keys(self, start: int, stop: int) -> list[bytes]:
        raw: list[bytes] = self._keys[start:stop].tolist()
        lengths: list[int] = self._lengths[start:stop].tolist()
        return [k if len(k) == n else k.ljust(n, b"\x00") for k, n in zip(raw, lengths, strict=True)]

    def bisect_many(self, keys: Sequence[bytes]) -> Int64s:
        width = self._dtype.itemsize
        probes = np.array([k[:width] for k in keys], self._dtype)
        found: Int64s = self._keys.searchsorted(probes).astype(np.int64)
        inside = found < self._n
        at = np.minimum(found, max(self._n - 1, 0))
        if self._n:
            lengths = np.fromiter(map(len, keys), np.int64, len(keys))
            tie = inside & (self._keys[at] == probes) & (self._lengths[at] < lengths)
            found += tie
        return found

    def find(self, key: bytes) -> int:
        i = self.bisect(key)
        # the stored item reads back without its trailing zero bytes; its length tells the rest
        if i < self._n and int(self._lengths[i]) == len(key) and self._keys[i] == key.rstrip(b"\x00"):
            return i
        return -1

    def window(self, start: int, stop: int) -> FixedKeys:
        return FixedKeys(self._keys[start:stop], self._lengths[start:stop])

    def find_many(self, keys: Sequence[bytes]) -> list[int]:
        if len(keys) <= _FEW or not self._n:
            return [self.find(key) for key in keys] if self._n else [-1] * len(keys)
        at = self.bisect_many(keys)
        probes = np.array([k[: self._dtype.itemsize] for k in keys], self._dtype)
        near = np.minimum(at, self._n - 1)
        lengths = np.fromiter(map(len, keys), np.int64, len(keys))
        hit = (at < self._n) & (self._keys[near] == probes) & (self._lengths[near] == lengths)
        found: list[int] = np.where(hit, at, -1).tolist()
        return found

    def to_arrow(self) -> pa.LargeBinaryArray:
        import pyarrow as pa

        lengths = self._lengths.astype(np.int64)
        offsets = np.zeros(self._n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        matrix = self._keys.view(np.uint8).reshape(self._n, self.width)
        data = matrix[np.arange(self.width) < lengths[:, None]]
        buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        array: pa.LargeBinaryArray = pa.LargeBinaryArray.from_buffers(pa.large_binary(), self._n, buffers)
        return array

    def arrays(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint32]]:
        return self._keys.view(np.uint8), self._lengths


class VarKeys(SortedKeys):
    """Keys stored end to end with ``n + 1`` offsets (the fallback for very long keys)."""

    layout: ClassVar[Layout] = "var"

    def __init__(self, data: npt.NDArray[np.uint8], offsets: Int64s) -> None:
        self._data = data
        self._offsets = offsets
        self._view = data.data  # a memoryview of bytes
        self._n = len(offsets) - 1
        self._width = max(1, int(np.diff(offsets).max())) if self._n else 1

    def __len__(self) -> int:
        return self._n

    @property
    def width(self) -> int:
        return self._width

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes + self._offsets.nbytes)

    def _key(self, i: int) -> bytes:
        return self._view[int(self._offsets[i]) : int(self._offsets[i + 1])].tobytes()

    def bisect(self, key: bytes) -> int:
        lo, hi = 0, self._n
        while lo < hi:
            mid = (lo + hi) // 2
            if self._key(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def keys(self, start: int, stop: int) -> list[bytes]:
        offsets: list[int] = self._offsets[start : stop + 1].tolist()
        view = self._view
        return [view[offsets[k] : offsets[k + 1]].tobytes() for k in range(len(offsets) - 1)]

    def bisect_many(self, keys: Sequence[bytes]) -> Int64s:
        return np.fromiter(map(self.bisect, keys), np.int64, len(keys))

    def window(self, start: int, stop: int) -> VarKeys:
        return VarKeys(self._data, self._offsets[start : max(start, stop) + 1])

    def to_arrow(self) -> pa.LargeBinaryArray:
        import pyarrow as pa

        buffers = [None, pa.py_buffer(self._offsets), pa.py_buffer(self._data)]
        array: pa.LargeBinaryArray = pa.LargeBinaryArray.from_buffers(pa.large_binary(), self._n, buffers)
        return array

    def arrays(self) -> tuple[npt.NDArray[np.uint8], Int64s]:
        return self._data, self._offsets


def empty_keys() -> SortedKeys:
    """No keys."""
    return FixedKeys(np.empty(0, "S1"), np.empty(0, np.uint32))


# --- building -----------------------------------------------------------------------------------------------


def _as_arrow(keys: pa.Array | pa.ChunkedArray) -> pa.LargeBinaryArray:
    import pyarrow as pa

    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks() if keys.num_chunks else pa.array([], pa.large_binary())
    large: pa.LargeBinaryArray = keys.cast(pa.large_binary())
    return large


def _arrow_lengths(keys: pa.LargeBinaryArray) -> npt.NDArray[np.uint32]:
    import pyarrow.compute as pc

    lengths: npt.NDArray[np.uint32] = pc.binary_length(keys).to_numpy(zero_copy_only=False).astype(np.uint32)
    return lengths


def _width_and_total(lengths: npt.NDArray[np.uint32]) -> tuple[int, int]:
    if not len(lengths):
        return 1, 0
    return max(1, int(lengths.max())), int(lengths.sum(dtype=np.int64))


def _fixed_from_arrow(keys: pa.LargeBinaryArray, lengths: npt.NDArray[np.uint32], width: int) -> FixedKeys:
    """Pad every key to ``width`` with zeros, in Arrow's C++ kernels, then view the result as ``S{width}``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    padding = pc.binary_repeat(
        pa.scalar(b"\x00", pa.large_binary()), pa.array(width - lengths.astype(np.int64))
    )
    padded = pc.binary_join_element_wise(keys, padding, pa.scalar(b"", pa.large_binary()))
    fixed = padded.cast(pa.binary(width))
    raw = np.frombuffer(fixed.buffers()[1], np.uint8)[
        fixed.offset * width : (fixed.offset + len(keys)) * width
    ]
    return FixedKeys(raw.view(f"S{width}").copy(), lengths)


def _var_from_arrow(keys: pa.LargeBinaryArray) -> VarKeys:
    buffers = keys.buffers()
    offsets = np.frombuffer(buffers[1], np.int64)[keys.offset : keys.offset + len(keys) + 1]
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
    data = data[int(offsets[0]) : int(offsets[-1])]
    return VarKeys(data.copy(), offsets - offsets[0])


def keys_from_sorted_arrow(keys: pa.LargeBinaryArray) -> SortedKeys:
    """Sorted keys from an Arrow array already in order, in the layout that suits them."""
    if not len(keys):
        return empty_keys()
    lengths = _arrow_lengths(keys)
    width, total = _width_and_total(lengths)
    if choose_layout(len(keys), width, total) == "fixed":
        return _fixed_from_arrow(keys, lengths, width)
    return _var_from_arrow(keys)


def _sort_run(keys: npt.NDArray[np.bytes_], start: int) -> tuple[npt.NDArray[np.bytes_], Int64s]:
    """Sort ``S{W}`` keys by value with each one's position appended as 4 big-endian bytes.

    Sorting values is about twice as fast as ``np.argsort`` (no indirection), and the appended position, which
    never decides between keys that differ, gives back the permutation.
    """
    n, width = len(keys), keys.dtype.itemsize
    if not n:
        return keys.copy(), np.empty(0, np.int64)
    tag = ">u4" if start + n < 1 << 32 else ">u8"
    extra = np.dtype(tag).itemsize
    rows = np.empty((n, width + extra), np.uint8)
    rows[:, :width] = keys.view(np.uint8).reshape(n, width)
    rows[:, width:] = np.arange(start, start + n, dtype=tag).view(np.uint8).reshape(n, extra)
    ordered = np.sort(rows.view(f"S{width + extra}").ravel(), kind="quicksort").view(np.uint8).reshape(n, -1)
    order = np.ascontiguousarray(ordered[:, width:]).view(tag).ravel().astype(np.int64)
    return np.ascontiguousarray(ordered[:, :width]).view(keys.dtype).ravel(), order


def _sort_fixed(keys: npt.NDArray[np.bytes_]) -> tuple[npt.NDArray[np.bytes_], Int64s]:
    """Sort an ``S{W}`` array: the sorted keys and the permutation. Large arrays are split into runs sorted in
    parallel threads (NumPy releases the GIL while sorting), then merged."""
    n = len(keys)
    pieces = min(os.cpu_count() or 1, 4, max(1, n // _SORT_CHUNK))
    if pieces == 1:
        return _sort_run(keys, 0)
    bounds = [(n * k // pieces, n * (k + 1) // pieces) for k in range(pieces)]
    with ThreadPoolExecutor(max_workers=pieces) as pool:
        runs = list(pool.map(lambda b: _sort_run(keys[b[0] : b[1]], b[0]), bounds))
        while len(runs) > 1:
            merged = list(pool.map(_merge_runs, runs[0::2], runs[1::2]))
            runs = [*merged, runs[-1]] if len(runs) % 2 else merged
    return runs[0]


def _merge_runs(
    first: tuple[npt.NDArray[np.bytes_], Int64s], second: tuple[npt.NDArray[np.bytes_], Int64s]
) -> tuple[npt.NDArray[np.bytes_], Int64s]:
    keys1, order1 = first
    keys2, order2 = second
    dest = keys1.searchsorted(keys2) + np.arange(len(keys2))
    total = len(keys1) + len(keys2)
    from_first = np.ones(total, bool)
    from_first[dest] = False
    keys = np.empty(total, keys1.dtype)
    order = np.empty(total, np.int64)
    keys[dest], keys[from_first] = keys2, keys1
    order[dest], order[from_first] = order2, order1
    return keys, order


def sort_keys(keys: KeysInput) -> tuple[SortedKeys, Int64s]:
    """Sort keys (a sequence of ``bytes`` or an Arrow binary array): the sorted keys and the permutation.

    ``sorted.keys(i, i + 1)[0] == keys[order[i]]``. Duplicates are kept (see :func:`first_duplicate`).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(keys, Sequence):
        lengths = np.fromiter(map(len, keys), np.uint32, len(keys))
        width, total = _width_and_total(lengths)
        if choose_layout(len(keys), width, total) == "fixed":
            array = np.array(keys, f"S{width}") if len(keys) else np.empty(0, f"S{width}")
            ordered, order = _sort_fixed(array)
            return FixedKeys(ordered, lengths[order]), order
        arrow = pa.array(keys, pa.large_binary())
    else:
        arrow = _as_arrow(keys)
        lengths = _arrow_lengths(arrow)
        width, total = _width_and_total(lengths)
        if choose_layout(len(arrow), width, total) == "fixed":
            ordered, order = _sort_fixed(_fixed_from_arrow(arrow, lengths, width)._keys)
            return FixedKeys(ordered, lengths[order]), order
    order = pc.sort_indices(arrow).to_numpy().astype(np.int64)
    return _var_from_arrow(arrow.take(pa.array(order))), order


def sort_uniform(rows: npt.NDArray[np.uint8], order: Int64s | None = None) -> tuple[FixedKeys, Int64s]:
    """Sort keys that all have one length, given as the rows of a byte matrix: the sorted keys (in the fixed
    layout, without another copy to pad them) and the permutation. With ``order``, the permutation is
    known already (its keys are ascending) and only applied.

    Examples
    --------
    >>> keys, order = sort_uniform(np.frombuffer(b"b\\x00a\\x00", np.uint8).reshape(2, 2))
    >>> keys.keys(0, 2), order.tolist()
    ([b'a\\x00', b'b\\x00'], [1, 0])
    """
    count, width = rows.shape
    keys = np.ascontiguousarray(rows).view(f"S{max(width, 1)}").ravel()
    lengths = np.full(count, width, np.uint32)
    if order is None:
        ordered, order = _sort_fixed(keys)
        return FixedKeys(ordered, lengths), order
    in_place = bool(np.array_equal(order, np.arange(count)))
    return FixedKeys(keys if in_place else keys[order], lengths), order


def first_duplicate(keys: SortedKeys, near: Int64s | None = None) -> int:
    """The first position whose key equals the one before it (up to trailing zeros), or -1 if none does.

    With ``near``, only the keys at those positions are compared with both their neighbours (enough after a
    merge, when the keys merged in are the only ones that can have a twin).
    """
    n = len(keys)
    if n < 2:
        return -1
    if near is None and isinstance(keys, FixedKeys):  # neighbours as two views: nothing gathered
        same = np.flatnonzero(keys._keys[1:] == keys._keys[:-1]) + 1
        return int(same[0]) if len(same) else -1
    if near is None:
        left = np.arange(1, n)
    else:
        left = np.unique(np.concatenate([near[near > 0], near[near < n - 1] + 1]))
    if isinstance(keys, FixedKeys):
        same = left[keys._keys[left] == keys._keys[left - 1]]
    else:
        pairs = [(i, keys.keys(i - 1, i + 1)) for i in left.tolist()]
        same = np.array([i for i, (a, b) in pairs if a.rstrip(b"\x00") == b.rstrip(b"\x00")], np.int64)
    return int(same.min()) if len(same) else -1

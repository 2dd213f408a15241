"""Index keys of many documents at once, from the Arrow columns of a table's layout.

Responsibilities:

- the key of every row of an Arrow table (in a table's :class:`~zapnb.layout.Layout`) in one index
  (:func:`table_keys`), byte for byte what :meth:`zapnb.index.IndexSpec.key_for` gives for the document the
  row holds;
- those keys sorted, with each one's row (:func:`sorted_table_keys`), as
  :meth:`zapnb.index.IndexData.apply_run` takes them; keys of one width are written straight into the
  fixed layout in sorted order, without a second copy;
- the columns the keys of some indexes read (:func:`key_columns`), and each column's share of the keys made
  once for all the indexes of a table (:class:`KeyColumns`).

A top-level field in a scalar column (strings, IDs, numbers, booleans, bytes, null) is encoded for the whole
column in Arrow's and NumPy's kernels, with the rules of :mod:`zapnb.keys`: the kind's tag, then its body
(big-endian order bits for numbers, escaped bytes and an end byte for strings and bytes); a null is the
value ``None`` or, where the layout means a missing field by it, ``MISSING``. Any other field (nested paths,
lists, objects, JSON columns, the generic layout) is read back value by value and encoded with
:func:`zapnb.keys.encode_value`. The parts of a key are then joined row by row.

Examples
--------
>>> from zapnb import define_table, v
>>> from zapnb.index import IndexSpec
>>> from zapnb.layout import Layout
>>> layout = Layout.for_table(define_table({"n": v.optional(v.number()), "tags": v.array(v.string())}))
>>> doc = {"_id": "jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "_creationTime": 1.5, "tags": ["a"]}
>>> spec = IndexSpec("by_n_tags", ("n", "tags"))
>>> table_keys(spec, layout, layout.to_arrow([doc])).to_pylist() == [spec.key_for(doc)]
True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from zapnb.indexbase import FixedKeys, SortedKeys, keys_from_sorted_arrow, sort_keys, sort_uniform
from zapnb.keys import encode_value
from zapnb.values import lookup_path

if TYPE_CHECKING:
    from zapnb.index import IndexSpec
    from zapnb.layout import Layout

__all__ = ["KeyColumns", "key_columns", "sorted_table_keys", "table_keys"]

Int64s = npt.NDArray[np.int64]
Documents = Callable[[], list[dict[str, Any]]]

_BINARY: Final = pa.large_binary()
_TAGS: Final = {"string": b"\x07", "id": b"\x07", "bytes": b"\x08"}
_SCALAR_KINDS: Final = frozenset({"string", "id", "float64", "int64", "boolean", "bytes", "null"})
_GATHER_ROWS: Final = 65_536
_MISSING: Final = b"\x01"
_NULL: Final = b"\x02"
_SIGN: Final = np.uint64(1 << 63)
_POSITIVE_NAN: Final = np.uint64(0x7FF8000000000000)
_NEGATIVE_NAN: Final = np.uint64(0xFFF8000000000000)


def table_keys(spec: IndexSpec, layout: Layout, table: pa.Table) -> pa.LargeBinaryArray:
    """The key of each row of ``table`` (in ``layout``) in the index ``spec``, in row order."""
    return _joined(_parts(spec, layout, table))


def sorted_table_keys(
    spec: IndexSpec, layout: Layout, table: pa.Table, columns: KeyColumns | None = None
) -> tuple[SortedKeys, Int64s]:
    """The keys of :func:`table_keys`, sorted, and the row of each (``sorted[i]`` is the key of row
    ``rows[i]``).

    When the creation times increase row by row (as a bulk insert makes them), the keys of
    ``by_creation_time`` are in order already, and those of another index are put in order by their
    fields alone (the creation time then orders the rest): each field's values are ranked through their
    distinct values, and the rows sorted by those ranks. Keys of one length (IDs, numbers, enums of one
    length...) are written straight into the fixed layout in their sorted order, without joining or
    sorting whole keys; ``by_id`` keys are sorted by their first eight varying bytes, ties by the rest.
    ``columns`` shares the work on each column between the indexes of one table.
    """
    times = table.column("_creationTime").to_numpy()
    direct = (columns or KeyColumns(layout, table)).direct_parts(spec)
    if direct is not None:  # every part of one width, straight into the fixed layout
        return _sorted_direct(spec, direct, times)
    parts = _parts(spec, layout, table)
    order = _order_by_fields(spec, [partial(_ranks, part) for part in parts], times)
    matrix = _uniform(parts)
    if matrix is not None:
        del parts
        return sort_uniform(matrix, order)
    keys = _joined(parts)
    del parts
    if order is None:
        return sort_keys(keys)
    return keys_from_sorted_arrow(keys.take(pa.array(order))), order


def key_columns(specs: Sequence[IndexSpec], layout: Layout) -> list[str] | None:
    """The columns that the keys of ``specs`` read from rows in ``layout``, or ``None`` when some key needs
    whole documents (a nested path, a field of a column that is not scalar, the generic layout).

    Examples
    --------
    >>> from zapnb import define_table, v
    >>> from zapnb.index import IndexSpec
    >>> from zapnb.layout import Layout
    >>> layout = Layout.for_table(define_table({"n": v.number(), "tags": v.array(v.string())}))
    >>> key_columns([IndexSpec("by_n", ("n",)), IndexSpec("by_m", ("m",))], layout)
    ['_id', '_creationTime', 'n']
    >>> key_columns([IndexSpec("by_tags", ("tags",))], layout) is None
    True
    """
    if layout.slots is None:
        return None
    slots = {slot.name: slot for slot in layout.slots}
    names = ["_id", "_creationTime"]
    for path in sorted({path for spec in specs for path in spec.fields}):
        slot = slots.get(path)
        if "." in path or (slot is not None and slot.codec.kind not in _SCALAR_KINDS):
            return None
        if slot is not None:
            names.append(path)
    return names


def _sorted_direct(spec: IndexSpec, direct: list[_Direct], times: Any) -> tuple[FixedKeys, Int64s]:
    """The sorted keys of parts that all have one width, and their rows."""
    count = len(times)
    order = _order_by_fields(spec, [part.rank for part in direct], times)
    if order is None:
        order = _order_of_rows(_written(direct, count, None))
    in_order = count < 2 or bool(np.all(order[1:] > order[:-1]))
    rows = _written(direct, count, None if in_order else order)
    width = rows.shape[1]
    return FixedKeys(rows.view(f"S{width}").ravel(), np.full(count, width, np.uint32)), order


def _written(direct: list[_Direct], count: int, order: Int64s | None) -> npt.NDArray[np.uint8]:
    """The keys as a byte matrix, row ``i`` holding the key of row ``order[i]`` (of row ``i`` without
    ``order``), gathered in slices so that no part is copied whole."""
    rows = np.empty((count, sum(part.width for part in direct)), np.uint8)
    for start in range(0, count, _GATHER_ROWS):
        stop = min(count, start + _GATHER_ROWS)
        which: slice | Int64s = slice(start, stop) if order is None else order[start:stop]
        column = 0
        for part in direct:
            part.write(rows[start:stop, column : column + part.width], which)
            column += part.width
    return rows


def _order_of_rows(rows: npt.NDArray[np.uint8]) -> Int64s:
    """The permutation that sorts the rows of a byte matrix bytewise.

    The rows are sorted by the eight bytes from the first column in which they differ (for IDs, random
    bytes), as integers; rows tied on those are sorted by their whole bytes. With many ties, whole rows.
    """
    count, width = rows.shape
    first = next((j for j in range(width) if count and not bool(np.all(rows[:, j] == rows[0, j]))), width)
    if first == width:  # all rows the same (or none)
        return np.arange(count, dtype=np.int64)
    window = np.zeros((count, 8), np.uint8)
    taken = min(8, width - first)
    window[:, :taken] = rows[:, first : first + taken]
    prefixes = window.view(">u8").ravel().astype(np.uint64)
    del window
    order: Int64s = np.argsort(prefixes).astype(np.int64)
    ordered = prefixes[order]
    tied = np.flatnonzero(ordered[1:] == ordered[:-1])
    if not len(tied) or taken < 8:  # no ties, or rows tied on all their bytes (duplicates)
        return order
    if len(tied) > count // 16:
        return sort_uniform(rows)[1]
    run_starts = np.flatnonzero(np.diff(tied, prepend=-2) != 1)
    for start, stop in zip(tied[run_starts], np.append(tied[run_starts[1:] - 1], tied[-1]) + 2, strict=True):
        run = order[start:stop]
        order[start:stop] = run[sort_uniform(rows[run])[1]]
    return order


def _order_by_fields(spec: IndexSpec, ranks: list[Callable[[], Any]], times: Any) -> Int64s | None:
    """The sorting permutation of the keys when their creation times increase row by row, else ``None``.

    ``ranks`` gives, per part of the keys, numbers in the order of its values.
    """
    if spec.kind == "by_id" or len(times) < 2 or not bool(np.all(times[1:] > times[:-1])):
        return None
    fields = ranks[:-2]  # without the creation time and the ID
    if not fields:
        return np.arange(len(times), dtype=np.int64)
    if len(fields) == 1:
        rank = fields[0]()
        if rank.dtype == np.int64 and len(rank) and rank.min() >= 0 and rank.max() < 2**16:
            rank = rank.astype(np.uint16)  # a stable sort of 16-bit integers is a radix sort
        order: Int64s = np.argsort(rank, kind="stable").astype(np.int64)
    else:
        order = np.lexsort([rank() for rank in reversed(fields)]).astype(np.int64)
    return order


def _uniform(parts: list[pa.LargeBinaryArray]) -> npt.NDArray[np.uint8] | None:
    """The keys as a byte matrix, one key per row, when every part has one length in every row."""
    count = len(parts[0])
    pieces = []
    for part in parts:
        offsets = np.frombuffer(part.buffers()[1], np.int64)[part.offset : part.offset + count + 1]
        width = int(offsets[1] - offsets[0]) if count else 0
        if not count or not bool(np.all(np.diff(offsets) == width)):
            return None
        data = np.frombuffer(part.buffers()[2], np.uint8) if width else np.empty(0, np.uint8)
        pieces.append(data[int(offsets[0]) : int(offsets[0]) + count * width].reshape(count, width))
    matrix = np.empty((count, sum(piece.shape[1] for piece in pieces)), np.uint8)
    column = 0
    for piece in pieces:
        matrix[:, column : column + piece.shape[1]] = piece
        column += piece.shape[1]
    return matrix


def _parts(spec: IndexSpec, layout: Layout, table: pa.Table) -> list[pa.LargeBinaryArray]:
    """The encoded values of each part of the keys: the fields, then the creation time and the ID."""
    documents = _documents(layout, table)
    parts = [_field_part(path, layout, table, documents) for path in spec.fields]
    if spec.kind != "by_id":
        parts.append(_scalar_part(table.column("_creationTime"), "float64", None))
    parts.append(_scalar_part(table.column("_id"), "string", None))
    return parts


def _joined(parts: list[pa.LargeBinaryArray]) -> pa.LargeBinaryArray:
    if len(parts) == 1:
        return parts[0]
    joined: pa.LargeBinaryArray = pc.binary_join_element_wise(*parts, pa.scalar(b"", _BINARY))
    return joined


def _dictionary_ranks(values: pa.Array) -> Int64s:
    """Each value's rank among the distinct values (bytewise, as Arrow sorts binary and string values)."""
    encoded = pc.dictionary_encode(values)
    rank = np.empty(len(encoded.dictionary), np.int64)
    rank[pc.sort_indices(encoded.dictionary).to_numpy()] = np.arange(len(encoded.dictionary))
    ranks: Int64s = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    return ranks


def _ranks(part: pa.LargeBinaryArray) -> npt.NDArray[np.int64] | npt.NDArray[np.uint64]:
    """Numbers in the bytewise order of the values of ``part``: for numbers of one kind their 8 order bytes
    read as an integer, else each value's rank among the distinct values."""
    rows = _uniform([part])
    if rows is not None and rows.shape[1] == 9 and bool(np.all(rows[:, 0] == rows[0, 0])):
        order_bits: npt.NDArray[np.uint64] = rows[:, 1:].copy().view(">u8").ravel().astype(np.uint64)
        return order_bits
    return _dictionary_ranks(part)


# --- parts of one width, written straight into the keys ----------------------------------------------------


class _Direct(NamedTuple):
    """A part of the keys whose values all have one width: how to write the values of some rows into its
    columns of the keys (rows given as a slice or as positions), and numbers in the order of its values."""

    width: int
    write: Callable[[npt.NDArray[np.uint8], slice | Int64s], None]
    rank: Callable[[], Any]


class KeyColumns:
    """The columns of one table's rows as parts of index keys, each made once for all its indexes.

    Thread-safe: the indexes of a table are built in parallel, and a column's part, or its ranks, is made
    by the first index that needs it while the others wait.
    """

    def __init__(self, layout: Layout, table: pa.Table) -> None:
        self._layout = layout
        self._table = table
        self._slots = {} if layout.slots is None else {slot.name: slot for slot in layout.slots}
        self._made: dict[str, _Direct | None] = {}
        self._lock = threading.Lock()

    def direct_parts(self, spec: IndexSpec) -> list[_Direct] | None:
        """The parts of ``spec``'s keys, if every one is a scalar column without nulls whose values have
        one width (strings of one length without 0x00 and 0x01, numbers, booleans), or a field the table
        lacks; else ``None``."""
        found = [self._field(path) for path in spec.fields]
        if spec.kind != "by_id":
            found.append(self._column("_creationTime", "float64"))
        found.append(self._column("_id", "string"))
        return None if any(part is None for part in found) else [part for part in found if part is not None]

    def _field(self, path: str) -> _Direct | None:
        slot = self._slots.get(path)
        if self._layout.slots is not None and "." not in path and slot is None:  # a field the table lacks
            return _constant_part(self._table.num_rows, _MISSING)
        if slot is not None and slot.codec.kind in _SCALAR_KINDS - {"null"}:
            return self._column(path, slot.codec.kind)
        return None

    def _column(self, name: str, kind: str) -> _Direct | None:
        with self._lock:
            if name not in self._made:
                self._made[name] = _direct_scalar(self._table.column(name), kind)
            return self._made[name]


def _once(make: Callable[[], Any]) -> Callable[[], Any]:
    """``make``, called once however many threads ask (the others wait for its result)."""
    lock = threading.Lock()
    made: list[Any] = []

    def get() -> Any:
        with lock:
            if not made:
                made.append(make())
            return made[0]

    return get


def _constant_part(count: int, value: bytes) -> _Direct:
    def write(out: npt.NDArray[np.uint8], rows: slice | Int64s) -> None:
        out[:] = np.frombuffer(value, np.uint8)

    return _Direct(len(value), write, lambda: np.zeros(count, np.int64))


def _direct_scalar(column: pa.ChunkedArray, kind: str) -> _Direct | None:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        return None
    if kind in _TAGS:
        return _direct_bytes(array, _TAGS[kind][0])
    if kind == "boolean":
        flags = np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)
        tags = np.where(flags, np.uint8(0x06), np.uint8(0x05))

        def write_flag(out: npt.NDArray[np.uint8], rows: slice | Int64s) -> None:
            out[:, 0] = tags[rows]

        return _Direct(1, write_flag, lambda: tags)
    order, tag = _order_bits(array, kind)

    def write_number(out: npt.NDArray[np.uint8], rows: slice | Int64s) -> None:
        out[:, 0] = tag
        out[:, 1:] = order[rows].astype(">u8").view(np.uint8).reshape(-1, 8)

    return _Direct(9, write_number, lambda: order)


def _direct_bytes(array: pa.Array, tag: int) -> _Direct | None:
    """A column of strings or bytes that all have one length, read in place from its Arrow buffers."""
    count = len(array)
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    if not count or not (large or pa.types.is_string(array.type) or pa.types.is_binary(array.type)):
        return None
    offsets = np.frombuffer(array.buffers()[1], np.int64 if large else np.int32)
    offsets = offsets[array.offset : array.offset + count + 1]
    start, length, data_buffer = int(offsets[0]), int(offsets[1] - offsets[0]), array.buffers()[2]
    if not length or data_buffer is None or int(offsets[-1]) - start != count * length:
        return None
    if not bool(np.all(np.diff(offsets) == length)):
        return None
    data = np.frombuffer(data_buffer, np.uint8)[start : start + count * length]
    if int(data.min()) <= 1:  # escaped in keys: not one width
        return None
    values = data.view(f"V{length}")  # one item per row: gathering items is several times faster than rows

    def write(out: npt.NDArray[np.uint8], rows: slice | Int64s) -> None:
        out[:, 0] = tag
        out[:, 1:-1] = values[rows].view(np.uint8).reshape(-1, length)
        out[:, -1] = 0

    return _Direct(length + 2, write, _once(partial(_dictionary_ranks, array)))


# --- the part of one field ----------------------------------------------------------------------------------


def _documents(layout: Layout, table: pa.Table) -> Documents:
    """The rows as documents, read once and only if a field needs them."""
    cache: list[list[dict[str, Any]]] = []

    def read() -> list[dict[str, Any]]:
        if not cache:
            cache.append(layout.to_documents(table))
        return cache[0]

    return read


def _field_part(path: str, layout: Layout, table: pa.Table, documents: Documents) -> pa.LargeBinaryArray:
    if layout.slots is not None and "." not in path:
        slot = next((slot for slot in layout.slots if slot.name == path), None)
        if slot is None:  # not a field of the table: every document lacks it
            return _constant(table.num_rows, _MISSING)
        if slot.codec.kind in _SCALAR_KINDS:
            null = _MISSING if slot.null_is_missing else _NULL
            return _scalar_part(table.column(path), slot.codec.kind, null)
    steps = tuple(path.split("."))
    return pa.array([encode_value(lookup_path(doc, steps)) for doc in documents()], _BINARY)


def _scalar_part(column: pa.ChunkedArray, kind: str, null: bytes | None) -> pa.LargeBinaryArray:
    """The encoded values of a scalar column; a null is encoded as ``null`` (``None`` when none may be)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if kind == "null" or len(array) == array.null_count:
        return _constant(len(array), null if null is not None else _NULL)
    if kind in _TAGS:
        encoded = _escaped(array.cast(_BINARY), _TAGS[kind])
    elif kind == "boolean":
        encoded = pc.if_else(array, pa.scalar(b"\x06", _BINARY), pa.scalar(b"\x05", _BINARY))
    else:
        encoded = _fixed_width(array, kind)
    if array.null_count:
        encoded = pc.if_else(
            array.is_null(), pa.scalar(null if null is not None else _NULL, _BINARY), encoded
        )
    result: pa.LargeBinaryArray = encoded
    return result


def _constant(count: int, value: bytes) -> pa.LargeBinaryArray:
    offsets = np.arange(count + 1, dtype=np.int64) * len(value)
    data = np.frombuffer(value * count, np.uint8) if count else np.empty(0, np.uint8)
    array: pa.LargeBinaryArray = pa.LargeBinaryArray.from_buffers(
        _BINARY, count, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    return array


def _escaped(values: pa.LargeBinaryArray, tag: bytes) -> pa.LargeBinaryArray:
    """``tag``, the bytes with 0x01 written as 0x01 0x02 and 0x00 as 0x01 0x01, then 0x00."""
    data = values.buffers()[2]
    if data is not None and bool((np.frombuffer(data, np.uint8) <= 1).any()):
        values = pc.replace_substring(values, pattern=b"\x01", replacement=b"\x01\x02")
        values = pc.replace_substring(values, pattern=b"\x00", replacement=b"\x01\x01")
    joined: pa.LargeBinaryArray = pc.binary_join_element_wise(
        pa.scalar(tag, _BINARY), values, pa.scalar(b"\x00", _BINARY), pa.scalar(b"", _BINARY)
    )
    return joined


def _order_bits(array: pa.Array, kind: str) -> tuple[npt.NDArray[np.uint64], int]:
    """Numbers as unsigned integers in their key order (see :func:`zapnb.keys.encode_value`), and the tag."""
    if kind == "float64":
        values = array.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        bits = values.view(np.uint64)
        nan = np.isnan(values)
        if nan.any():
            bits = np.where(nan, np.where(bits & _SIGN, _NEGATIVE_NAN, _POSITIVE_NAN), bits)
        return np.where(bits & _SIGN, ~bits, bits | _SIGN), 0x04
    order = array.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64) ^ _SIGN
    return order, 0x03


def _fixed_width(array: pa.Array, kind: str) -> pa.LargeBinaryArray:
    """Numbers: the tag, then 8 bytes big-endian (see :func:`zapnb.keys.encode_value`)."""
    order, tag = _order_bits(array, kind)
    rows = np.empty((len(array), 9), np.uint8)
    rows[:, 0] = tag
    rows[:, 1:] = order.astype(">u8").view(np.uint8).reshape(len(array), 8)
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(9), len(array), [None, pa.py_buffer(rows)])
    encoded: pa.LargeBinaryArray = fixed.cast(_BINARY)
    return encoded

"""Index keys of many documents at once, from the Arrow columns of a table's layout.

Responsibilities:

- the key of every row of an Arrow table (in a table's :class:`~zapnb.layout.Layout`) in one index
  (:func:`table_keys`), byte for byte what :meth:`zapnb.index.IndexSpec.key_for` gives for the document the
  row holds;
- those keys sorted, with each one's row (:func:`sorted_table_keys`), as
  :meth:`zapnb.index.IndexData.apply_run` takes them.

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

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from zapnb.indexbase import SortedKeys, keys_from_sorted_arrow, sort_keys, sort_uniform
from zapnb.keys import encode_value
from zapnb.values import lookup_path

if TYPE_CHECKING:
    from zapnb.index import IndexSpec
    from zapnb.layout import Layout

__all__ = ["sorted_table_keys", "table_keys"]

Int64s = npt.NDArray[np.int64]
Documents = Callable[[], list[dict[str, Any]]]

_BINARY: Final = pa.large_binary()
_TAGS: Final = {"string": b"\x07", "id": b"\x07", "bytes": b"\x08"}
_SCALAR_KINDS: Final = frozenset({"string", "id", "float64", "int64", "boolean", "bytes", "null"})
_MISSING: Final = b"\x01"
_NULL: Final = b"\x02"
_SIGN: Final = np.uint64(1 << 63)
_POSITIVE_NAN: Final = np.uint64(0x7FF8000000000000)
_NEGATIVE_NAN: Final = np.uint64(0xFFF8000000000000)


def table_keys(spec: IndexSpec, layout: Layout, table: pa.Table) -> pa.LargeBinaryArray:
    """The key of each row of ``table`` (in ``layout``) in the index ``spec``, in row order."""
    return _joined(_parts(spec, layout, table))


def sorted_table_keys(spec: IndexSpec, layout: Layout, table: pa.Table) -> tuple[SortedKeys, Int64s]:
    """The keys of :func:`table_keys`, sorted, and the row of each (``sorted[i]`` is the key of row
    ``rows[i]``).

    When the creation times increase row by row (as a bulk insert makes them), the keys of
    ``by_creation_time`` are in order already, and those of another index are put in order by their
    fields alone (the creation time then orders the rest): each field's values are ranked through their
    distinct values, and the rows sorted by those ranks. Keys of one length (IDs, numbers, enums of one
    length...) are laid out straight into the fixed layout, without joining them first.
    """
    times = table.column("_creationTime").to_numpy()
    direct = _direct_parts(spec, layout, table)
    if direct is not None:  # every part of one width, straight into the fixed layout
        order = _order_by_fields(spec, [part.rank for part in direct], times)
        rows = np.empty((table.num_rows, sum(part.width for part in direct)), np.uint8)
        column = 0
        for part in direct:
            part.write(rows[:, column : column + part.width])
            column += part.width
        return sort_uniform(rows, order)
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


def _order_by_fields(spec: IndexSpec, ranks: list[Callable[[], Any]], times: Any) -> Int64s | None:
    """The sorting permutation of the keys when their creation times increase row by row, else ``None``.

    ``ranks`` gives, per part of the keys, numbers in the order of its values.
    """
    if spec.kind == "by_id" or len(times) < 2 or not bool(np.all(times[1:] > times[:-1])):
        return None
    fields = ranks[:-2]  # without the creation time and the ID
    if not fields:
        return np.arange(len(times), dtype=np.int64)
    order: Int64s = np.lexsort([rank() for rank in reversed(fields)]).astype(np.int64)
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
    """A part of the keys whose values all have one width: how to write it into its columns of the keys,
    and numbers in the order of its values."""

    width: int
    write: Callable[[npt.NDArray[np.uint8]], None]
    rank: Callable[[], Any]


def _direct_parts(spec: IndexSpec, layout: Layout, table: pa.Table) -> list[_Direct] | None:
    """The parts of the keys, if every one is a scalar column without nulls whose values have one width
    (strings of one length without 0x00 and 0x01, numbers, booleans), or a field the table lacks."""
    found: list[_Direct | None] = []
    slots = {} if layout.slots is None else {slot.name: slot for slot in layout.slots}
    for path in spec.fields:
        slot = slots.get(path)
        if layout.slots is not None and "." not in path and slot is None:  # a field the table lacks
            found.append(_constant_part(table.num_rows, _MISSING))
        elif slot is not None and slot.codec.kind in _SCALAR_KINDS - {"null"}:
            found.append(_direct_scalar(table.column(path), slot.codec.kind))
        else:
            found.append(None)
    if spec.kind != "by_id":
        found.append(_direct_scalar(table.column("_creationTime"), "float64"))
    found.append(_direct_scalar(table.column("_id"), "string"))
    return None if any(part is None for part in found) else [part for part in found if part is not None]


def _constant_part(count: int, value: bytes) -> _Direct:
    def write(out: npt.NDArray[np.uint8]) -> None:
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

        def write_flag(out: npt.NDArray[np.uint8]) -> None:
            out[:, 0] = tags

        return _Direct(1, write_flag, lambda: tags)
    order, tag = _order_bits(array, kind)

    def write_number(out: npt.NDArray[np.uint8]) -> None:
        out[:, 0] = tag
        out[:, 1:] = order.astype(">u8").view(np.uint8).reshape(len(order), 8)

    return _Direct(9, write_number, lambda: order)


def _direct_bytes(array: pa.Array, tag: int) -> _Direct | None:
    values = array.cast(_BINARY)
    count = len(values)
    offsets = np.frombuffer(values.buffers()[1], np.int64)[values.offset : values.offset + count + 1]
    length = int(offsets[1] - offsets[0]) if count else 0
    data_buffer = values.buffers()[2]
    if not count or not length or data_buffer is None or not bool(np.all(np.diff(offsets) == length)):
        return None
    data = np.frombuffer(data_buffer, np.uint8)[int(offsets[0]) : int(offsets[0]) + count * length]
    if bool((data <= 1).any()):  # escaped in keys: not one width
        return None

    def write(out: npt.NDArray[np.uint8]) -> None:
        out[:, 0] = tag
        out[:, 1:-1] = data.reshape(count, length)
        out[:, -1] = 0

    return _Direct(length + 2, write, partial(_dictionary_ranks, values))


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

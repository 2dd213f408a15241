"""Columns: checking a whole Polars or Arrow column against a validator, as :meth:`Validator.validate_column`.

A column whose dtype already fits its validator (strings for ``v.string()``, integers or floats for
``v.number()``, strings within the literals of an enum...) is checked at once with Polars expressions. Any
other column, and the first bad row of a vectorized one, is checked value by value with the validator's own
check, so values and error messages are exactly those of :meth:`Validator.validate`, with the row in front
of the path (``[3].name``).

The result is normalized and typed with :meth:`Validator.polars_dtype`: IDs become plain strings and values
of JSON-text columns (:meth:`Validator.stores_json`) become zapnb JSON text. Reading a Struct row back, a null
field of an object is a missing field when the field is optional and cannot hold null.

:func:`check_column` is the same check for bulk inserts: instead of raising it returns the first bad row, so
a caller checking several columns can report the first bad row of the whole table. A column of ``v.id("t")``
is checked as a whole too (base32, table number and checksum in NumPy) when the table numbers are known.

Examples
--------
>>> import polars as pl
>>> from zapnb import v
>>> validate_column(v.any(), pl.Series("files", [[1, 2], None])).to_list()
['[1,2]', 'null']
>>> validate_column(v.int64(), pl.Series([1, 2, 2**63], dtype=pl.UInt64))
Traceback (most recent call last):
...
zapnb.errors.SchemaValidationError: Value does not match validator.
Path: [2]
Value: 9223372036854775808
Validator: v.int64()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from zapnb.errors import InvalidValueError, SchemaValidationError
from zapnb.ids import ALPHABET, varint
from zapnb.jsonvalues import encode_json
from zapnb.validator_base import IdResolver, Validator, _error, _Mismatch, _resolver
from zapnb.validator_kinds import (
    _ABSENT,
    ArrayValidator,
    BooleanValidator,
    BytesValidator,
    Float64Validator,
    IdValidator,
    Int64Validator,
    LiteralValidator,
    NullValidator,
    ObjectValidator,
    OptionalValidator,
    StringValidator,
    UnionValidator,
)

if TYPE_CHECKING:
    import polars as pl

__all__ = ["check_column", "validate_column"]

Convert: TypeAlias = Callable[[Any], Any]
Vector: TypeAlias = "tuple[pl.Series, pl.Series]"
"""A normalized column and the mask of its good rows."""

_FAMILIES: Final[Mapping[type[Validator], str]] = {
    StringValidator: "string",
    Float64Validator: "float",
    Int64Validator: "int",
    BooleanValidator: "boolean",
    BytesValidator: "bytes",
}
"""The dtype family of the scalar kinds whose columns can be checked as a whole (see :func:`_fits`)."""


def validate_column(
    validator: Validator,
    column: Any,
    *,
    path: str = "",
    ids: IdResolver | Mapping[str, int] | None = None,
    table: str | None = None,
    optional: bool = False,
) -> pl.Series:
    """Check a whole column against ``validator`` and return it normalized and typed.

    Parameters are those of :meth:`Validator.validate_column`: ``column`` is a Polars Series or an Arrow
    array, and with ``optional=True`` (always for ``v.optional(x)``) a null entry is a missing value rather
    than the value ``None``.

    Raises
    ------
    SchemaValidationError
        For the first bad row ``i``, with path ``[i]`` + ``path``.
    InvalidValueError
        If ``column`` is neither a Polars Series nor an Arrow array.
    """
    if isinstance(validator, OptionalValidator):
        validator, optional = validator.inner, True
    series = _as_series(column)
    resolver = _resolver(ids)
    checked = _checked(validator, series, resolver, optional)
    if isinstance(checked, int):  # the first bad row's error, exactly as the value check words it
        error = _row_error(validator, series[checked], f"[{checked}]{path}", resolver, table)
        if error is None:
            raise AssertionError(f"row {checked} failed the column check but passed the value check")
        raise error
    return checked


def check_column(
    validator: Validator,
    column: Any,
    *,
    ids: IdResolver | Mapping[str, int] | None = None,
    optional: bool = False,
) -> pl.Series | int:
    """Like :func:`validate_column`, but return the first bad row instead of raising.

    Returns
    -------
    The normalized, typed column when every row passes, else the number of the first row that does not
    (:func:`validate_column` on that row gives the error).

    Examples
    --------
    >>> import polars as pl
    >>> from zapnb import v
    >>> check_column(v.number(), pl.Series([1, 2])).to_list()
    [1.0, 2.0]
    >>> check_column(v.string(), pl.Series(["a", None]))
    1
    """
    if isinstance(validator, OptionalValidator):
        validator, optional = validator.inner, True
    return _checked(validator, _as_series(column), _resolver(ids), optional)


def _checked(
    validator: Validator, series: pl.Series, ids: IdResolver | None, optional: bool
) -> pl.Series | int:
    """The normalized column, or the first bad row."""
    import polars as pl

    vector = _vectorized(validator, series, ids)
    if vector is not None:
        normalized, ok = vector
        if optional:
            ok = ok | series.is_null()
        if ok.all():
            return normalized.alias(series.name)
        return int(ok.arg_min())  # type: ignore[arg-type]
    cells = _cells(validator, series, ids, optional)
    if isinstance(cells, int):
        return cells
    return pl.Series(series.name, cells, dtype=validator.polars_dtype())


def _cells(
    validator: Validator, series: pl.Series, ids: IdResolver | None, optional: bool
) -> list[Any] | int:
    """The normalized cells of ``series`` checked value by value, or the first bad row."""
    read, check, write = _reader(validator), validator._check, _writer(validator)
    cells: list[Any] = []
    try:
        for item in series.to_list():
            cells.append(None if item is None and optional else write(check(read(item), ids)))
    except _Mismatch:
        return len(cells)
    return cells


def _as_series(column: Any) -> pl.Series:
    import polars as pl

    if isinstance(column, pl.Series):
        return column
    if type(column).__module__.startswith("pyarrow"):
        series = pl.from_arrow(column)
        if isinstance(series, pl.Series):
            return series
    raise InvalidValueError(
        "validate_column takes a polars Series or a pyarrow Array or ChunkedArray, "
        f"not {type(column).__name__}: convert it with polars.Series(...) first.",
        value=type(column).__name__,
    )


def _row_error(
    validator: Validator, item: Any, path: str, ids: IdResolver | None, table: str | None
) -> SchemaValidationError | None:
    """The error of one cell as :meth:`Validator.validate` words it (``None`` if the cell is good)."""
    try:
        validator._check(_reader(validator)(item), ids)
    except _Mismatch as m:
        return _error(m, path, table)
    return None


# --- checking a column as a whole ---------------------------------------------------------------------------


def _fits(family: str, dtype: pl.DataType) -> bool:
    """Whether a column of ``dtype`` can be checked as a whole for a validator of this dtype family."""
    import polars as pl

    if family == "string":
        return dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum)
    if family == "float":
        return dtype.is_float() or dtype.is_integer()
    if family == "int":
        return dtype.is_integer()
    return (family == "boolean" and dtype == pl.Boolean) or (family == "bytes" and dtype == pl.Binary)


def _vectorized(validator: Validator, series: pl.Series, ids: IdResolver | None) -> Vector | None:
    """The normalized column and a mask of good rows (nulls counted as the value None), or None."""
    if isinstance(validator, NullValidator):
        return series.cast(validator.polars_dtype(), strict=False), series.is_null()
    if isinstance(validator, LiteralValidator):
        return _literal_vector(validator, series)
    if isinstance(validator, UnionValidator):
        return _union_vector(validator, series, ids)
    if isinstance(validator, IdValidator):
        return _id_vector(validator, series, ids)
    if not _fits(_FAMILIES.get(type(validator), ""), series.dtype):
        return None
    normalized = series.cast(validator.polars_dtype(), strict=False)
    return normalized, normalized.is_not_null()


def _literal_vector(validator: LiteralValidator, series: pl.Series) -> Vector | None:
    literal = validator.value
    family = {str: "string", int: "int", bool: "boolean"}.get(type(literal), "")
    if not _fits(family, series.dtype):
        return None
    import polars as pl

    as_kind = series.cast(
        {"string": pl.String, "int": pl.Int64, "boolean": pl.Boolean}[family](), strict=False
    )
    return as_kind.cast(validator.polars_dtype(), strict=False), (as_kind == literal).fill_null(False)


def _union_vector(validator: UnionValidator, series: pl.Series, ids: IdResolver | None) -> Vector | None:
    import polars as pl

    others = _not_null(validator)
    nullable = len(others) < len(validator.members)
    dtype = validator.polars_dtype()
    if isinstance(dtype, pl.Enum) and _fits("string", series.dtype):
        strings = series.cast(pl.String)
        ok = strings.is_in(dtype.categories.to_list()).fill_null(nullable) | (series.is_null() & nullable)
        return strings.cast(dtype, strict=False), ok
    if len(others) == 1 and (inner := _vectorized(others[0], series, ids)) is not None:
        return inner[0], inner[1] | (series.is_null() & nullable)
    return None


def _not_null(union: UnionValidator) -> list[Validator]:
    return [member for member in union.members if not isinstance(member, NullValidator)]


# --- IDs, as a whole ----------------------------------------------------------------------------------------


def _id_vector(validator: IdValidator, series: pl.Series, ids: IdResolver | None) -> Vector | None:
    """A string column of IDs of ``validator``'s table: a row is good when it is the canonical text of an ID
    with that table's number (see :mod:`zapnb.ids`); any other row is left to the value check."""
    import numpy as np
    import polars as pl

    number = None if ids is None else ids.table_number(validator.table)
    if number is None or not _fits("string", series.dtype):
        return None
    texts = series.cast(pl.String)
    prefix = varint(number)
    good = np.empty(len(texts), bool)
    for start in range(0, len(texts), _ID_CHUNK):  # in slices: the temporaries stay a few MB
        part = texts.slice(start, _ID_CHUNK)
        good[start : start + len(part)] = _good_ids(part, prefix)
    return texts, pl.Series(good)


_DIGITS: Final = {ord(char): digit for digit, char in enumerate(ALPHABET)}
_ID_CHUNK: Final = 65_536


def _good_ids(texts: pl.Series, prefix: bytes) -> Any:
    """Which ``texts`` are IDs whose table number's varint is ``prefix``: of the right length, with
    characters of the alphabet, zero padding bits and the right Fletcher-16 footer (nulls are not)."""
    import numpy as np
    import polars as pl

    size = len(prefix) + 18  # the table number, 16 bytes of internal id, 2 of checksum
    chars = (8 * size + 4) // 5
    n = len(texts)
    fits = (texts.str.len_bytes() == chars).fill_null(False)
    array = pl.select(pl.when(fits).then(texts).otherwise(pl.lit("0" * chars))).to_series().to_arrow()
    offsets = np.frombuffer(array.buffers()[1], np.int64)[array.offset : array.offset + n + 1]
    data = np.frombuffer(array.buffers()[2], np.uint8)[int(offsets[0]) : int(offsets[0]) + n * chars]
    lookup = np.full(256, 32, np.uint8)
    lookup[list(_DIGITS)] = list(_DIGITS.values())
    digits = lookup[data.reshape(n, chars)]
    good = fits.to_numpy() & (digits < 32).all(axis=1)
    groups = -(-chars // 8)
    padded = np.zeros((n, groups * 8), np.uint8)
    padded[:, :chars] = digits & 31
    d = [padded[:, k::8] for k in range(8)]  # the k-th character of each group of 8 (40 bits, 5 bytes)
    grouped = np.empty((n, groups, 5), np.uint8)
    grouped[:, :, 0] = (d[0] << 3) | (d[1] >> 2)
    grouped[:, :, 1] = ((d[1] & 3) << 6) | (d[2] << 1) | (d[3] >> 4)
    grouped[:, :, 2] = ((d[3] & 15) << 4) | (d[4] >> 1)
    grouped[:, :, 3] = ((d[4] & 1) << 7) | (d[5] << 2) | (d[6] >> 3)
    grouped[:, :, 4] = ((d[6] & 7) << 5) | d[7]
    raw = grouped.reshape(n, groups * 5)
    padding = 5 * chars - 8 * size
    if padding:
        good &= (digits[:, -1] & ((1 << padding) - 1)) == 0
    good &= (raw[:, : len(prefix)] == np.frombuffer(prefix, np.uint8)).all(axis=1)
    # Fletcher-16 modulo 256: the sum of the bytes and the sum of their running sums (byte k counted
    # size - 2 - k times); uint8 arithmetic wraps modulo 256, as both sums do
    weights = np.stack([np.ones(size - 2), np.arange(size - 2, 0, -1)], axis=1).astype(np.uint8)
    sums = raw[:, : size - 2] @ weights
    return good & (raw[:, size - 2] == sums[:, 0]) & (raw[:, size - 1] == sums[:, 1])


# --- cells, value by value ----------------------------------------------------------------------------------


def _identity(value: Any) -> Any:
    return value


def _writer(validator: Validator) -> Convert:
    """How a normalized value of ``validator`` is held in its column: JSON text, a plain str for an ID..."""
    if validator.stores_json():
        return encode_json
    if isinstance(validator, OptionalValidator):
        return _writer(validator.inner)
    if isinstance(validator, IdValidator):
        return str.__str__
    if isinstance(validator, ArrayValidator):
        write_item = _writer(validator.element)
        return lambda value: None if value is None else [write_item(item) for item in value]
    if isinstance(validator, ObjectValidator):
        return _object_writer(validator)
    if isinstance(validator, UnionValidator) and len(others := _not_null(validator)) == 1:
        write_other = _writer(others[0])
        return lambda value: None if value is None else write_other(value)
    return _identity


def _object_writer(validator: ObjectValidator) -> Convert:
    fields = [(name, _writer(field)) for name, field in validator.fields]

    def write(value: Any) -> Any:
        if value is None:
            return None
        cells = {}
        for name, write_field in fields:
            item = value.get(name, _ABSENT)
            cells[name] = None if item is _ABSENT else write_field(item)
        return cells

    return write


def _reader(validator: Validator) -> Convert:
    """How a cell of the column (a Struct row has every field, null when absent) reads back as a value."""
    if isinstance(validator, OptionalValidator):
        return _reader(validator.inner)
    if isinstance(validator, ArrayValidator):
        read_item = _reader(validator.element)
        return lambda value: None if value is None else [read_item(item) for item in value]
    if isinstance(validator, ObjectValidator):
        return _object_reader(validator)
    if isinstance(validator, UnionValidator) and len(others := _not_null(validator)) == 1:
        return _reader(others[0])
    return _identity


def _object_reader(validator: ObjectValidator) -> Convert:
    fields = {name: (_reader(field), _missing_when_null(field)) for name, field in validator.fields}
    unknown = (_identity, True)  # a field not in the validator: kept unless null

    def read(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = {}
        for key, item in value.items():
            read_field, drop_null = fields.get(key, unknown)
            if item is None and drop_null:
                continue
            out[key] = read_field(item)
        return out

    return read


def _missing_when_null(validator: Validator) -> bool:
    """Whether a null in a struct field means "missing": an optional field that cannot hold null."""
    if not isinstance(validator, OptionalValidator):
        return False
    try:
        validator.inner._check(None, None)
    except _Mismatch:
        return True
    return False

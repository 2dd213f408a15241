"""zapnb values: their kinds and the one total order used by indexes, ``order()``, filters and equality.

A zapnb value is ``None``, an ``int`` (int64), a ``float`` (float64), a ``bool``, a ``str`` (``zapnb.Id`` is a
``str``), ``bytes``, a ``list`` (or ``tuple``) of values or a ``dict`` from field names to values. Every value
has a :class:`Kind`, and kinds sort in this order::

    MISSING < NULL < INT64 < FLOAT64 < BOOLEAN < STRING < BYTES < ARRAY < OBJECT

Within a kind:

- int64 compare as integers; every int64 sorts before every float64, so ``1`` and ``1.0`` differ.
- float64 use IEEE 754 total order: ``-nan < -inf < ... < -0.0 < 0.0 < ... < inf < nan``, so
  ``-0.0 != 0.0`` and ``nan == nan``. A NaN's sign is part of the value (``-nan`` sorts first, ``nan``
  last), its payload bits are not: all NaNs of one sign are equal, and zapnb stores them as the quiet NaN of
  that sign (see :func:`canonical_float`). Note that ``inf - inf`` gives a *negative* NaN on x86 machines.
- ``False < True``.
- strings compare by code point, which is the order of their UTF-8 bytes (Python's own ``str`` order).
- bytes compare bytewise, arrays element by element (a prefix sorts first), objects as their list of
  ``(field, value)`` pairs sorted by field name (so field order in a ``dict`` never matters).

Comparing values of different kinds never raises; comparing something that is not a zapnb value raises
:class:`~zapnb.errors.InvalidValueError`.

Examples
--------
>>> from zapnb.values import MISSING, compare, kind_of
>>> kind_of(True), kind_of(1), kind_of((1, 2))
(<Kind.BOOLEAN: 4>, <Kind.INT64: 2>, <Kind.ARRAY: 7>)
>>> compare(1, 1.0), compare(MISSING, None), compare("b", b"a")
(-1, -1, -1)
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

from zapnb.errors import InvalidValueError

__all__ = [
    "MISSING",
    "UNSET",
    "Kind",
    "MissingType",
    "UnsetType",
    "canonical_float",
    "compare",
    "float_from_order",
    "float_order",
    "kind_of",
    "lookup_path",
    "sorted_fields",
    "values_equal",
]


class MissingType(enum.Enum):
    """The type of :data:`MISSING`, the marker for a field that a document does not have.

    ``MISSING`` sorts before every value (it is how an index orders documents that lack an indexed field).
    It is a singleton: ``copy``, ``deepcopy`` and ``pickle`` give back the same object, so test it with
    ``value is MISSING``. It is falsy, like ``None``; prefer the ``is`` test. Annotate fields that may be
    missing as ``T | MissingType`` (mypy narrows on ``is MISSING``).

    Examples
    --------
    >>> import copy, pickle
    >>> from zapnb.values import MISSING
    >>> MISSING
    zapnb.MISSING
    >>> copy.deepcopy(MISSING) is MISSING, pickle.loads(pickle.dumps(MISSING)) is MISSING, bool(MISSING)
    (True, True, False)
    """

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "zapnb.MISSING"

    def __bool__(self) -> Literal[False]:
        return False


class UnsetType(enum.Enum):
    """The type of :data:`UNSET`: as a value in a ``patch``, it removes that field from the document.

    ``UNSET`` is not a value: it cannot be stored, compared or encoded. Like :data:`MISSING` it is a falsy
    singleton that survives ``copy`` and ``pickle``; test it with ``value is UNSET``.

    Examples
    --------
    >>> import pickle
    >>> from zapnb.values import UNSET
    >>> UNSET, pickle.loads(pickle.dumps(UNSET)) is UNSET
    (zapnb.UNSET, True)
    """

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "zapnb.UNSET"

    def __bool__(self) -> Literal[False]:
        return False


MISSING: Final = MissingType.MISSING
"""A field that a document does not have; sorts before every value."""

UNSET: Final = UnsetType.UNSET
"""In a ``patch``, removes the field."""


class Kind(enum.IntEnum):
    """The kinds of zapnb values, numbered in their sort order.

    Examples
    --------
    >>> from zapnb.values import Kind
    >>> Kind.INT64 < Kind.FLOAT64 < Kind.BOOLEAN < Kind.STRING
    True
    """

    MISSING = 0
    NULL = 1
    INT64 = 2
    FLOAT64 = 3
    BOOLEAN = 4
    STRING = 5
    BYTES = 6
    ARRAY = 7
    OBJECT = 8


# Exact types first; subclasses (zapnb.Id is a str subclass) are found by isinstance and cached here.
_KIND_BY_TYPE: dict[type, Kind] = {
    type(None): Kind.NULL,
    bool: Kind.BOOLEAN,
    int: Kind.INT64,
    float: Kind.FLOAT64,
    str: Kind.STRING,
    bytes: Kind.BYTES,
    list: Kind.ARRAY,
    tuple: Kind.ARRAY,
    dict: Kind.OBJECT,
    MissingType: Kind.MISSING,
}
# bool before int: bool is an int subclass.
_BASES: Final = (bool, int, float, str, bytes, list, tuple, dict)


def kind_of(value: object) -> Kind:
    """Return the :class:`Kind` of a value.

    ``bool`` is a boolean (not an int64), a ``str`` subclass such as ``zapnb.Id`` is a string and a tuple is
    an array.

    Raises
    ------
    InvalidValueError
        If ``value`` is not a zapnb value (for example a ``set``, a ``datetime`` or :data:`UNSET`).

    Examples
    --------
    >>> from zapnb.values import MISSING, kind_of
    >>> [kind_of(x).name for x in (MISSING, None, 7, 7.0, False, "s", b"b", [1], {"a": 1})]
    ['MISSING', 'NULL', 'INT64', 'FLOAT64', 'BOOLEAN', 'STRING', 'BYTES', 'ARRAY', 'OBJECT']
    """
    kind = _KIND_BY_TYPE.get(type(value))
    if kind is None:
        kind = _kind_of_subclass(value)
    return kind


def _kind_of_subclass(value: object) -> Kind:
    for base in _BASES:
        if isinstance(value, base):
            kind = _KIND_BY_TYPE[base]
            _KIND_BY_TYPE[type(value)] = kind
            return kind
    raise _not_a_value(value)


def _not_a_value(value: object) -> InvalidValueError:
    if value is UNSET:
        return InvalidValueError(
            "zapnb.UNSET is not a value: use it only as a field value in a patch, to remove that field",
            value=value,
        )
    name = type(value).__name__
    return InvalidValueError(
        f"a {name} is not a zapnb value: convert it to None, int, float, bool, str, bytes, list or dict "
        "(for example a datetime to a float of milliseconds, a set to a sorted list)",
        value=value,
    )


# --- floats -------------------------------------------------------------------------------------------------

_PACK_D: Final = struct.Struct(">d").pack
_UNPACK_D: Final = struct.Struct(">d").unpack
_PACK_Q: Final = struct.Struct(">Q").pack
_UNPACK_Q: Final = struct.Struct(">Q").unpack
_SIGN: Final = 1 << 63
_ALL_ONES: Final = (1 << 64) - 1
_POSITIVE_NAN_BITS: Final = 0x7FF8000000000000
_NEGATIVE_NAN_BITS: Final = 0xFFF8000000000000
_POSITIVE_NAN: Final[float] = _UNPACK_D(_PACK_Q(_POSITIVE_NAN_BITS))[0]
_NEGATIVE_NAN: Final[float] = _UNPACK_D(_PACK_Q(_NEGATIVE_NAN_BITS))[0]


def canonical_float(value: float) -> float:
    """Return ``value``, or for a NaN the quiet NaN with the same sign (the only NaNs zapnb stores).

    NaN payload bits are not part of a zapnb value; the sign is (``-nan`` sorts first, ``nan`` last).

    Examples
    --------
    >>> import struct
    >>> from zapnb.values import canonical_float
    >>> odd_nan = struct.unpack(">d", bytes.fromhex("fff0000000000001"))[0]
    >>> struct.pack(">d", canonical_float(odd_nan)).hex()
    'fff8000000000000'
    >>> canonical_float(-0.0)
    -0.0
    """
    if value == value:
        return value
    return _NEGATIVE_NAN if math.copysign(1.0, value) < 0 else _POSITIVE_NAN


def float_order(value: float) -> int:
    """Map a float to an unsigned 64-bit integer whose order is the zapnb (IEEE total) order of floats.

    Negative floats have all bits flipped, others only the sign bit; NaN payloads are dropped first
    (:func:`canonical_float`), so all NaNs of one sign map to the same integer.

    Examples
    --------
    >>> from zapnb.values import float_order
    >>> inf, nan = float("inf"), float("nan")
    >>> xs = [nan, 0.0, -0.0, -inf, 1.5, -nan, inf, -1.5]
    >>> sorted(xs, key=float_order)  # the first is -nan, which Python prints as nan
    [nan, -inf, -1.5, -0.0, 0.0, 1.5, inf, nan]
    >>> float_order(-0.0) < float_order(0.0)
    True
    """
    bits: int = _UNPACK_Q(_PACK_D(value))[0]
    if value != value:
        bits = _NEGATIVE_NAN_BITS if bits & _SIGN else _POSITIVE_NAN_BITS
    return bits ^ _ALL_ONES if bits & _SIGN else bits | _SIGN


def float_from_order(order: int) -> float:
    """Invert :func:`float_order` (exact, bit for bit).

    Examples
    --------
    >>> from zapnb.values import float_from_order, float_order
    >>> float_from_order(float_order(-0.0))
    -0.0
    """
    bits = order ^ _SIGN if order & _SIGN else order ^ _ALL_ONES
    value: float = _UNPACK_D(_PACK_Q(bits))[0]
    return value


# --- comparison ---------------------------------------------------------------------------------------------


def _sign(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def _compare_floats(a: float, b: float) -> int:
    return _sign(float_order(a), float_order(b))


def _compare_equal(a: object, b: object) -> int:
    return 0


def _compare_arrays(a: list[Any] | tuple[Any, ...], b: list[Any] | tuple[Any, ...]) -> int:
    for x, y in zip(a, b, strict=False):
        result = compare(x, y)
        if result:
            return result
    return _sign(len(a), len(b))


def sorted_fields(value: dict[Any, Any]) -> list[tuple[str, Any]]:
    """Return an object's ``(field, value)`` pairs sorted by field name: the form objects compare in.

    Raises
    ------
    InvalidValueError
        If a field name is not a ``str``.

    Examples
    --------
    >>> from zapnb.values import sorted_fields
    >>> sorted_fields({"b": 1, "a": 2})
    [('a', 2), ('b', 1)]
    """
    for key in value:
        if not isinstance(key, str):
            raise InvalidValueError(
                f"object field names must be str, not {type(key).__name__}: convert the key {key!r} to str",
                value=value,
            )
    return sorted(value.items(), key=_first)


def _first(item: tuple[str, Any]) -> str:
    return item[0]


def _compare_objects(a: dict[str, Any], b: dict[str, Any]) -> int:
    items_a, items_b = sorted_fields(a), sorted_fields(b)
    for (key_a, value_a), (key_b, value_b) in zip(items_a, items_b, strict=False):
        if key_a != key_b:
            return -1 if key_a < key_b else 1
        result = compare(value_a, value_b)
        if result:
            return result
    return _sign(len(items_a), len(items_b))


_COMPARE_SAME_KIND: Final[tuple[Callable[[Any, Any], int], ...]] = (
    _compare_equal,  # MISSING
    _compare_equal,  # NULL
    _sign,  # INT64
    _compare_floats,  # FLOAT64
    _sign,  # BOOLEAN
    _sign,  # STRING: code point order == UTF-8 byte order
    _sign,  # BYTES
    _compare_arrays,  # ARRAY
    _compare_objects,  # OBJECT
)


def compare(a: object, b: object) -> int:
    """Compare two values in the zapnb total order: ``-1`` if ``a`` sorts first, ``0`` if equal, else ``1``.

    Values of different kinds compare by kind (see the module docstring) and never raise.

    Raises
    ------
    InvalidValueError
        If either side is not a zapnb value.

    Examples
    --------
    >>> from zapnb.values import compare
    >>> compare(1, 1.0), compare(-0.0, 0.0), compare(float("nan"), float("nan"))
    (-1, -1, 0)
    >>> compare(True, "a"), compare([1, 2], [1]), compare({"b": 1, "a": 2}, {"a": 2, "b": 1})
    (-1, 1, 0)
    >>> import functools
    >>> sorted([{"a": 1}, [], b"", "", True, 2.5, 3, None], key=functools.cmp_to_key(compare))
    [None, 3, 2.5, True, '', b'', [], {'a': 1}]
    """
    if a is b:
        kind_of(a)
        return 0
    kind_a, kind_b = kind_of(a), kind_of(b)
    if kind_a is not kind_b:
        return -1 if kind_a < kind_b else 1
    return _COMPARE_SAME_KIND[kind_a](a, b)


def values_equal(a: object, b: object) -> bool:
    """Whether two values are equal in the zapnb order (``compare(a, b) == 0``).

    Unlike Python's ``==``: ``1`` and ``1.0`` differ, ``True`` and ``1`` differ, ``-0.0`` and ``0.0`` differ,
    NaN equals NaN (of the same sign), and a tuple equals the list with the same elements.

    Examples
    --------
    >>> from zapnb.values import values_equal
    >>> values_equal(1, 1.0), values_equal(True, 1), values_equal(float("nan"), float("nan"))
    (False, False, True)
    >>> values_equal((1, "a"), [1, "a"]), values_equal(0.0, -0.0)
    (True, False)
    """
    type_a = type(a)
    if type_a is type(b) and (type_a is str or type_a is int or type_a is bytes):
        return a == b
    return compare(a, b) == 0


def lookup_path(doc: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at a field path (``("a", "b")`` reads ``doc["a"]["b"]``), or ``MISSING`` if a step is absent
    or not an object.

    Examples
    --------
    >>> lookup_path({"a": {"b": 1}}, ("a", "b")), lookup_path({"a": 1}, ("a", "b"))
    (1, zapnb.MISSING)
    """
    value: Any = doc
    for part in path:
        if not isinstance(value, Mapping):
            return MISSING
        value = value.get(part, MISSING)
    return value

r"""Index keys: byte strings whose bytewise order is the zapnb total order of the values they encode.

Every value encodes to a tag byte followed by its body; the tags are numbered in kind order, and no tag
is ``0x00``, the byte that ends a string, bytes, array or object::

    0x01 MISSING      0x02 null        0x03 int64 (8 bytes, big-endian, sign bit flipped)
    0x04 float64 (8 bytes of :func:`zapnb.values.float_order`, big-endian)
    0x05 false        0x06 true
    0x07 string (UTF-8, with 0x00 written as 0x01 0x01 and 0x01 as 0x01 0x02, then 0x00)
    0x08 bytes (escaped the same way, then 0x00)
    0x09 array (each element, then 0x00)
    0x0a object (for each field in sorted order: the name encoded as a string, then the value; then 0x00)

Every encoding is self-delimiting: no encoding is a prefix of another, and ``0x00`` never occurs inside a
string or bytes body. So the key of several fields is the concatenation of theirs and sorts like the tuple of
values, field by field; and a key that starts with the key of some fields starts with those fields' values, so
the keys with a given prefix of fields are exactly ``[encode_key(prefix), prefix_end(encode_key(prefix)))``.

Keys decode back to the exact values (``-0.0`` stays ``-0.0``, ``1`` stays an int, ``1.0`` a float), except
that NaN payload bits are not kept (:func:`zapnb.values.canonical_float`), tuples come back as lists,
``zapnb.Id`` as plain ``str`` and objects with their fields in sorted order.

Keys may end in ``0x00`` bytes: store them with their length (NumPy's fixed-width ``S`` dtype drops
trailing zero bytes when an item is read back).

Examples
--------
>>> from zapnb.keys import decode_key, encode_key, prefix_end
>>> from zapnb.values import MISSING
>>> encode_key(["a", 1.0]) < encode_key(["a", float("inf")]) < encode_key(["a\x00", MISSING])
True
>>> decode_key(encode_key(["a", -0.0, MISSING, [1, b"\x00"]]))
['a', -0.0, zapnb.MISSING, [1, b'\x00']]
>>> start = encode_key(["a"])
>>> start < encode_key(["a", 5]) < encode_key(["a", {}]) < prefix_end(start) < encode_key(["a\x00"])
True
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

from zapnb.errors import InvalidKeyError, InvalidValueError
from zapnb.values import MISSING, MissingType, float_from_order, kind_of, sorted_fields

__all__ = ["decode_key", "decode_value", "encode_key", "encode_value", "prefix_end"]

_END: Final = 0x00
_MISSING_TAG: Final = 0x01
_NULL_TAG: Final = 0x02
_INT_TAG: Final = 0x03
_FLOAT_TAG: Final = 0x04
_FALSE_TAG: Final = 0x05
_TRUE_TAG: Final = 0x06
_STRING_TAG: Final = 0x07
_BYTES_TAG: Final = 0x08
_ARRAY_TAG: Final = 0x09
_OBJECT_TAG: Final = 0x0A

_TAGGED_U64: Final = struct.Struct(">BQ")
_PACK_TAGGED_U64: Final = _TAGGED_U64.pack
_UNPACK_U64_FROM: Final = struct.Struct(">Q").unpack_from
_PACK_D: Final = struct.Struct(">d").pack
_UNPACK_Q: Final = struct.Struct(">Q").unpack
_INT_OFFSET: Final = 1 << 63
_SIGN: Final = 1 << 63
_ALL_ONES: Final = (1 << 64) - 1
_POSITIVE_NAN_BITS: Final = 0x7FF8000000000000
_NEGATIVE_NAN_BITS: Final = 0xFFF8000000000000


# --- encoding -----------------------------------------------------------------------------------------------


def _encode_missing(value: object) -> bytes:
    return b"\x01"


def _encode_null(value: object) -> bytes:
    return b"\x02"


def _encode_int(value: int) -> bytes:
    try:
        return _PACK_TAGGED_U64(_INT_TAG, value + _INT_OFFSET)
    except struct.error:
        raise InvalidValueError(
            f"{value} is outside int64 (-2**63 .. 2**63-1): store it as a float or a string",
            value=value,
        ) from None


def _encode_float(value: float) -> bytes:
    # float_order, inlined: this runs for every float in every index key.
    bits: int = _UNPACK_Q(_PACK_D(value))[0]
    if value != value:
        bits = _NEGATIVE_NAN_BITS if bits & _SIGN else _POSITIVE_NAN_BITS
    return _PACK_TAGGED_U64(_FLOAT_TAG, bits ^ _ALL_ONES if bits & _SIGN else bits | _SIGN)


def _encode_bool(value: bool) -> bytes:
    return b"\x06" if value else b"\x05"


def _encode_str(value: str) -> bytes:
    try:
        raw = str.encode(value)  # not value.encode(): a str subclass may define its own encode
    except UnicodeEncodeError:
        raise InvalidValueError(
            "a string with a lone surrogate is not valid Unicode: fix the text (for example decode its "
            "source bytes with errors='replace')",
            value=value,
        ) from None
    # ``1 in raw`` (a memchr) is several times faster than ``b"\x01" in raw`` on short strings.
    if 1 in raw:
        raw = raw.replace(b"\x01", b"\x01\x02")
    if 0 in raw:
        raw = raw.replace(b"\x00", b"\x01\x01")
    return b"\x07%s\x00" % raw


def _encode_bytes(value: bytes) -> bytes:
    raw = bytes(value)
    if 1 in raw:
        raw = raw.replace(b"\x01", b"\x01\x02")
    if 0 in raw:
        raw = raw.replace(b"\x00", b"\x01\x01")
    return b"\x08%s\x00" % raw


def _encode_array(value: Sequence[Any]) -> bytes:
    return b"\x09" + b"".join([_encode(element) for element in value]) + b"\x00"


def _encode_object(value: dict[str, Any]) -> bytes:
    parts = [b"\x0a"]
    for key, element in sorted_fields(value):
        parts.append(_encode_str(key))
        parts.append(_encode(element))
    parts.append(b"\x00")
    return b"".join(parts)


_Encoder = Callable[[Any], bytes]
_ENCODER_BY_KIND: Final[tuple[_Encoder, ...]] = (
    _encode_missing,
    _encode_null,
    _encode_int,
    _encode_float,
    _encode_bool,
    _encode_str,
    _encode_bytes,
    _encode_array,
    _encode_object,
)
# Exact types; subclasses (zapnb.Id) are added on first sight.
_ENCODERS: dict[type, _Encoder] = {
    str: _encode_str,
    float: _encode_float,
    int: _encode_int,
    bool: _encode_bool,
    type(None): _encode_null,
    MissingType: _encode_missing,
    bytes: _encode_bytes,
    list: _encode_array,
    tuple: _encode_array,
    dict: _encode_object,
}


def _encoder_for(value: object) -> _Encoder:
    encoder = _ENCODER_BY_KIND[kind_of(value)]
    _ENCODERS[type(value)] = encoder
    return encoder


def _encode(value: Any) -> bytes:
    """:func:`encode_value` inside an array or object (the outermost call turns a RecursionError into an
    error about the value)."""
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        encoder = _encoder_for(value)
    return encoder(value)


def _too_deep(values: Sequence[Any], err: RecursionError) -> RecursionError:
    """Raise the error a document holding ``values`` gets: a value that contains itself, or nesting over the
    document limit (:func:`zapnb.documents.normalize_value`). Return ``err`` when every value passes that
    check: then the stack was deep before the encoding started, and the RecursionError is the caller's."""
    from zapnb.documents import normalize_value

    for position, value in enumerate(values):
        if value is not MISSING:
            normalize_value(value, f"[{position}]" if len(values) > 1 else "")
    return err


def encode_value(value: Any) -> bytes:
    """Encode one value (which may be :data:`~zapnb.values.MISSING`) as an order-preserving key.

    Raises
    ------
    InvalidValueError
        If ``value`` is not a zapnb value, is an int outside int64 or a string with a lone surrogate, or
        contains itself; :class:`~zapnb.errors.DocumentLimitError` if it nests so deeply that the encoding
        would overflow the stack (hundreds of levels; no stored value nests deeper than 16).

    Examples
    --------
    >>> from zapnb.keys import encode_value
    >>> encode_value("a\\x00b")
    b'\\x07a\\x01\\x01b\\x00'
    >>> encode_value(1) < encode_value(-1.0) < encode_value(False) < encode_value("")
    True
    >>> cycle = []
    >>> cycle.append(cycle)
    >>> encode_value(cycle)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zapnb.errors.InvalidValueError: Invalid value at [0]...: the value contains itself (a cyclic list ...
    """
    try:
        encoder = _ENCODERS.get(type(value))
        if encoder is None:
            encoder = _encoder_for(value)
        return encoder(value)
    except RecursionError as err:
        raise _too_deep((value,), err) from None


def encode_key(values: Sequence[Any]) -> bytes:
    """Encode the values of several fields (each may be ``MISSING``) as one key that sorts like the tuple.

    Examples
    --------
    >>> from zapnb.keys import encode_key
    >>> from zapnb.values import MISSING
    >>> encode_key(["a", MISSING]) < encode_key(["a", None]) < encode_key(["a", 0]) < encode_key(["b"])
    True
    >>> encode_key([]) == b""
    True
    """
    get = _ENCODERS.get
    try:
        return b"".join([(get(type(value)) or _encoder_for(value))(value) for value in values])
    except RecursionError as err:
        raise _too_deep(values, err) from None


def prefix_end(key: bytes) -> bytes | None:
    """Return the smallest byte string greater than every byte string that starts with ``key``.

    The keys whose first fields equal ``prefix`` are those in
    ``[encode_key(prefix), prefix_end(encode_key(prefix)))``. Returns ``None`` when there is no such string
    (``key`` is empty or all ``0xff``): the range has no upper end.

    Examples
    --------
    >>> from zapnb.keys import prefix_end
    >>> prefix_end(b"\\x07a\\x00"), prefix_end(b"a\\xff\\xff"), prefix_end(b"\\xff"), prefix_end(b"")
    (b'\\x07a\\x01', b'b', None, None)
    """
    stripped = key.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


# --- decoding -----------------------------------------------------------------------------------------------


def _fail(data: bytes, offset: int, problem: str) -> InvalidKeyError:
    return InvalidKeyError(
        f"not a zapnb index key: {problem} at byte {offset} of {len(data)}; "
        "decode only bytes made by zapnb.keys.encode_key (a damaged index can be rebuilt from its table)",
        data=data,
        offset=offset,
    )


def _read_escaped(data: bytes, pos: int) -> tuple[bytes, int]:
    end = data.find(b"\x00", pos)
    if end == -1:
        raise _fail(data, len(data), "a string or bytes value without its end")
    raw = data[pos:end]
    if 1 in raw:
        # Every 0x01 starts a pair. Undo 0x01 0x01 first: scanning left to right it can only match whole
        # pairs, while undoing 0x01 0x02 first could make a new 0x01 0x01 out of two neighbours.
        raw = raw.replace(b"\x01\x01", b"\x00").replace(b"\x01\x02", b"\x01")
    return raw, end + 1


def _read_str(data: bytes, pos: int) -> tuple[str, int]:
    raw, end = _read_escaped(data, pos)
    try:
        return raw.decode(), end
    except UnicodeDecodeError as err:
        raise _fail(data, pos + err.start, "invalid UTF-8") from None


def _read_u64(data: bytes, pos: int) -> int:
    if pos + 8 > len(data):
        raise _fail(data, pos, "a number cut short")
    value: int = _UNPACK_U64_FROM(data, pos)[0]
    return value


def _read_array(data: bytes, pos: int) -> tuple[list[Any], int]:
    elements: list[Any] = []
    while True:
        if pos >= len(data):
            raise _fail(data, pos, "an array without its end")
        if data[pos] == _END:
            return elements, pos + 1
        element, pos = _read_value(data, pos)
        elements.append(element)


def _read_object(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
    fields: dict[str, Any] = {}
    previous: str | None = None
    while True:
        if pos >= len(data):
            raise _fail(data, pos, "an object without its end")
        if data[pos] == _END:
            return fields, pos + 1
        if data[pos] != _STRING_TAG:
            raise _fail(data, pos, "an object field name that is not a string")
        name, pos = _read_str(data, pos + 1)
        if previous is not None and name <= previous:
            raise _fail(data, pos, "object fields out of order")
        if pos >= len(data):
            raise _fail(data, pos, "an object field without its value")
        fields[name], pos = _read_value(data, pos)
        previous = name


def _read_value(data: bytes, pos: int) -> tuple[Any, int]:
    tag = data[pos]
    pos += 1
    if tag == _STRING_TAG:
        return _read_str(data, pos)
    if tag == _FLOAT_TAG:
        return float_from_order(_read_u64(data, pos)), pos + 8
    if tag == _INT_TAG:
        return _read_u64(data, pos) - _INT_OFFSET, pos + 8
    if tag == _MISSING_TAG:
        return MISSING, pos
    if tag == _NULL_TAG:
        return None, pos
    if tag in (_FALSE_TAG, _TRUE_TAG):
        return tag == _TRUE_TAG, pos
    if tag == _BYTES_TAG:
        return _read_escaped(data, pos)
    if tag == _ARRAY_TAG:
        return _read_array(data, pos)
    if tag == _OBJECT_TAG:
        return _read_object(data, pos)
    raise _fail(data, pos - 1, f"unknown tag 0x{tag:02x}")


def decode_key(data: bytes | bytearray | memoryview) -> list[Any]:
    """Decode a key made by :func:`encode_key` back into its values (exact; see the module docstring).

    Raises
    ------
    InvalidKeyError
        If ``data`` is not a key.

    Examples
    --------
    >>> from zapnb.keys import decode_key, encode_key
    >>> decode_key(encode_key([1, 1.0, True, {"b": [], "a": None}]))
    [1, 1.0, True, {'a': None, 'b': []}]
    """
    data = bytes(data)
    values: list[Any] = []
    pos = 0
    try:
        while pos < len(data):
            value, pos = _read_value(data, pos)
            values.append(value)
    except RecursionError:
        raise _fail(data, pos, "values nested too deeply") from None
    return values


def decode_value(data: bytes | bytearray | memoryview) -> Any:
    """Decode the key of exactly one value, as made by :func:`encode_value`.

    Raises
    ------
    InvalidKeyError
        If ``data`` is not the key of exactly one value.

    Examples
    --------
    >>> from zapnb.keys import decode_value, encode_value
    >>> decode_value(encode_value([b"\\xff", "é", -2**63]))
    [b'\\xff', 'é', -9223372036854775808]
    """
    values = decode_key(data)
    if len(values) != 1:
        raise _fail(bytes(data), 0, f"{len(values)} values where one was expected")
    return values[0]

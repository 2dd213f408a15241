"""zapnb's JSON encoding of values: lossless, and the one Convex uses in snapshot exports.

=============================  ====================================================================
value                          JSON
=============================  ====================================================================
``None``, ``bool``, ``str``    ``null``, ``true``/``false``, a string (UTF-8, not ``\\u``-escaped)
int64                          a bare integer: ``7``
finite float64                 always with a decimal point or an exponent: ``7.0``, ``-0.0``, ``1e+20``
NaN, ``inf``, ``-inf``         ``{"$float": "<base64 of the 8 little-endian IEEE 754 bytes>"}``
bytes                          ``{"$bytes": "<base64>"}``
array (list or tuple)          an array
object                         an object, fields in the order given
=============================  ====================================================================

Decoding reads this back exactly: a number with a decimal point or an exponent is a float, one without is
an int64. It also accepts Convex's other forms, ``{"$integer": "<base64 of 8 little-endian bytes>"}`` for an
int64 and ``{"$float": ...}`` for any float (Convex clients write ``-0.0`` that way). Field names never start
with ``$``, so these objects cannot be confused with documents; any other ``$`` field is an error. NaN payload
bits are not kept (:func:`zapnb.values.canonical_float`): NaN is written as ``AAAAAAAA+H8=`` (the bits
``0x7ff8000000000000``, as Convex writes it) and ``-nan`` as ``AAAAAAAA+P8=``.

Examples
--------
>>> import zapnb
>>> text = zapnb.encode_json({"n": 1, "x": 1.0, "big": 1e20, "inf": float("inf"), "raw": b"\\x00\\xff"})
>>> text
'{"n":1,"x":1.0,"big":1e+20,"inf":{"$float":"AAAAAAAA8H8="},"raw":{"$bytes":"AP8="}}'
>>> zapnb.decode_json(text)
{'n': 1, 'x': 1.0, 'big': 1e+20, 'inf': inf, 'raw': b'\\x00\\xff'}
"""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Mapping
from typing import Any, Final

from zapnb.errors import InvalidFieldNameError, InvalidJsonError, InvalidValueError
from zapnb.values import Kind, canonical_float, kind_of

__all__ = ["decode_json", "encode_json", "encode_json_line", "encode_stored_json"]

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_PACK_LE_DOUBLE: Final = struct.Struct("<d").pack
_UNPACK_LE_DOUBLE: Final = struct.Struct("<d").unpack
_UNPACK_LE_INT64: Final = struct.Struct("<q").unpack

_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
)


# --- encoding -----------------------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _int_to_json(value: int) -> int:
    if _INT64_MIN <= value <= _INT64_MAX:
        return int(value)
    raise InvalidValueError(
        f"{value} is outside int64 (-2**63 .. 2**63-1): store it as a float or a string", value=value
    )


def _float_to_json(value: float) -> float | dict[str, str]:
    if value - value == 0.0:  # finite
        return float(value)
    return {"$float": _b64(_PACK_LE_DOUBLE(canonical_float(value)))}


def _object_to_json(value: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, element in value.items():
        if not isinstance(key, str):
            raise InvalidFieldNameError(
                f"object field names must be str, not {type(key).__name__}: convert {key!r} to str",
                value=key,
            )
        if key[:1] == "$":
            raise InvalidFieldNameError(
                f"field name {key!r} starts with '$', which is reserved: rename the field", path=f".{key}"
            )
        try:
            out[key] = _to_json(element)
        except InvalidValueError as err:
            err.path = f".{key}{err.path}"
            raise
    return out


def _array_to_json(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for index, element in enumerate(value):
        try:
            out.append(_to_json(element))
        except InvalidValueError as err:
            err.path = f"[{index}]{err.path}"
            raise
    return out


def _to_json(value: Any) -> Any:
    """The tree ``json`` can write: special floats, bytes and subclasses replaced, every value checked."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is float:
        return value if value - value == 0.0 else _float_to_json(value)
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else _int_to_json(value)
    if kind is dict:
        return _object_to_json(value)
    if kind is list or kind is tuple:
        return _array_to_json(value)
    if kind is bytes:
        return {"$bytes": _b64(value)}
    return _subclass_to_json(value)


def _subclass_to_json(value: Any) -> Any:
    kind = kind_of(value)  # raises for what is not a value
    if kind is Kind.STRING:
        return str(value)
    if kind is Kind.INT64:
        return _int_to_json(value)
    if kind is Kind.FLOAT64:
        return _float_to_json(value)
    if kind is Kind.BYTES:
        return {"$bytes": _b64(bytes(value))}
    if kind is Kind.ARRAY:
        return _array_to_json(value)
    if kind is Kind.OBJECT:
        return _object_to_json(value)
    raise InvalidValueError(
        "zapnb.MISSING has no JSON form: leave the field out of the object instead", value=value
    )


def encode_json(value: Any) -> str:
    """Encode a value as zapnb JSON (compact, lossless; see the module docstring).

    Raises
    ------
    InvalidValueError
        If ``value`` holds something that is not a zapnb value (its ``path`` says where), an int outside
        int64, or a field name starting with ``$`` (:class:`~zapnb.errors.InvalidFieldNameError`).

    Examples
    --------
    >>> import zapnb
    >>> zapnb.encode_json({"a": 1, "b": 1.0, "c": float("nan"), "d": b"\\x00"})
    '{"a":1,"b":1.0,"c":{"$float":"AAAAAAAA+H8="},"d":{"$bytes":"AA=="}}'
    >>> zapnb.encode_json([-0.0, 2**63 - 1, "é", (True, None)])
    '[-0.0,9223372036854775807,"é",[true,null]]'
    >>> zapnb.encode_json({"when": {1, 2}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zapnb.errors.InvalidValueError: a set is not a zapnb value: ...
    """
    try:
        tree = _to_json(value)
    except RecursionError:
        raise InvalidValueError(
            "the value is nested too deeply or contains itself: zapnb values are trees of at most 16 levels",
            value=None,
        ) from None
    return _ENCODER.encode(tree)


def encode_stored_json(value: Any) -> str:
    """:func:`encode_json` of a value already in stored form: one that :func:`zapnb.documents.check_document`
    made (or a tree of such values, lists and dicts with ``str`` keys), whose field names, integers and kinds
    are checked.

    Such a value goes to the JSON encoder as it is, without the checked copy that :func:`encode_json` builds,
    unless it holds bytes, NaN or an infinity (then it takes that path). The text is the same either way; for
    a 200-byte document it is made in a third of the time. The commit log's records use it for the documents
    of each commit.

    Examples
    --------
    >>> from zapnb.jsonvalues import encode_json, encode_stored_json
    >>> stored = {"n": 1, "x": -0.0, "s": "é", "l": [True, None]}
    >>> encode_stored_json(stored) == encode_json(stored)
    True
    >>> encode_stored_json({"raw": b"\\x00", "inf": float("inf")})
    '{"raw":{"$bytes":"AA=="},"inf":{"$float":"AAAAAAAA8H8="}}'
    """
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError):  # bytes, NaN or infinities: their JSON forms need the checked path
        return encode_json(value)


def encode_json_line(document: Mapping[str, Any]) -> str:
    """Encode a document as one line of JSON Lines (as in a Convex snapshot's ``documents.jsonl``).

    Examples
    --------
    >>> from zapnb.jsonvalues import encode_json_line
    >>> encode_json_line({"_id": "jx7...", "order": 20.0})
    '{"_id":"jx7...","order":20.0}\\n'
    """
    return encode_json(document) + "\n"


# --- decoding -----------------------------------------------------------------------------------------------


class _RejectedJsonError(Exception):
    """Raised inside the JSON parser's hooks; :func:`decode_json` turns it into an InvalidJsonError."""


def _parse_int(text: str) -> int:
    value = int(text)
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    raise _RejectedJsonError(
        f"the integer {text} is outside int64; write a float with a decimal point (as {text}.0)"
    )


def _parse_float(text: str) -> float:
    value = float(text)
    if value - value == 0.0:
        return value
    raise _RejectedJsonError(f"the number {text} is too large for a float64")


def _parse_constant(text: str) -> Any:
    raise _RejectedJsonError(f'{text} is not JSON: write NaN and infinities as {{"$float": base64}}')


def _eight_bytes(tag: str, encoded: Any) -> bytes:
    raw = _base64(tag, encoded)
    if len(raw) != 8:
        raise _RejectedJsonError(f"{tag} holds {len(raw)} bytes, not 8")
    return raw


def _base64(tag: str, encoded: Any) -> bytes:
    if not isinstance(encoded, str):
        raise _RejectedJsonError(f"{tag} must hold a base64 string, not {type(encoded).__name__}")
    try:
        return binascii.a2b_base64(encoded, strict_mode=True)
    except binascii.Error:
        raise _RejectedJsonError(f"{tag} holds {encoded!r}, which is not base64") from None


def _object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((tag, encoded),) = obj.items()
        if tag == "$float":
            return canonical_float(_UNPACK_LE_DOUBLE(_eight_bytes(tag, encoded))[0])
        if tag == "$bytes":
            return _base64(tag, encoded)
        if tag == "$integer":
            value: int = _UNPACK_LE_INT64(_eight_bytes(tag, encoded))[0]
            return value
    for key in obj:
        if key[:1] == "$":
            raise _RejectedJsonError(
                f"unknown field {key!r}: field names never start with '$', and $float, $bytes and $integer "
                "must be the only field of their object"
            )
    return obj


_PLAIN_DECODER: Final = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)
_DECODER: Final = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant, object_hook=_object_hook
)


def decode_json(text: str | bytes) -> Any:
    """Decode zapnb (or Convex) JSON back into the exact value (see the module docstring).

    Raises
    ------
    InvalidJsonError
        If ``text`` is not JSON, uses ``NaN``/``Infinity`` literals, holds an integer outside int64, a
        malformed ``$float``/``$bytes``/``$integer`` object or any other field starting with ``$``.

    Examples
    --------
    >>> import zapnb
    >>> zapnb.decode_json('{"order":20.0,"count":20,"blob":{"$bytes":"AP8="}}')
    {'order': 20.0, 'count': 20, 'blob': b'\\x00\\xff'}
    >>> zapnb.decode_json('[{"$float":"AAAAAAAAAIA="},{"$integer":"//////////8="}]')
    [-0.0, -1]
    >>> zapnb.decode_json('{"$set":[]}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zapnb.errors.InvalidJsonError: not zapnb JSON: unknown field '$set': ...
    """
    if not isinstance(text, str):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidJsonError(
                f"not zapnb JSON: invalid UTF-8 at byte {err.start}; JSON text must be UTF-8",
                text=repr(text[:200]),
            ) from None
    decoder = _DECODER if '"$' in text or "\\u0024" in text else _PLAIN_DECODER
    try:
        return decoder.decode(text)
    except _RejectedJsonError as err:
        problem = str(err)
    except json.JSONDecodeError as err:
        problem = f"{err.msg} at line {err.lineno} column {err.colno}"
    except RecursionError:
        problem = "nested too deeply"
    raise InvalidJsonError(
        f"not zapnb JSON: {problem}; pass text made by zapnb.encode_json or exported by Convex", text=text
    )

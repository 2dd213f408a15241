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

Both directions hold to the rules of the values zapnb stores (:mod:`zapnb.documents`), so what one writes
the other reads, and neither accepts what a document could not hold: field names are 1 to 1024 printable
ASCII characters not starting with ``$``, strings are valid Unicode (no lone surrogate, written or as a
``\ud800`` escape), and an object names each field once (a repeated field is refused rather than resolved
to its last value). The errors name the path of the offending part. The per-document limits (size, nesting,
array length, fields per object) are not checked here: they apply to documents, while this encoding also
carries the commit log's records, which hold many documents.

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
import re
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

from zapnb.documents import field_name_problem
from zapnb.errors import InvalidFieldNameError, InvalidJsonError, InvalidValueError
from zapnb.values import Kind, canonical_float, kind_of

__all__ = ["decode_json", "decode_stored_json", "encode_json", "encode_json_line", "encode_stored_json"]

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


def _segment(key: str) -> str:
    """A field's step in an error's path: ``.name``, or ``["name"]`` for a name that is not printable."""
    return f".{key}" if key and key.isascii() and key.isprintable() else f"[{json.dumps(key)}]"


def _checked_text(value: str) -> str:
    try:
        str.encode(value)
    except UnicodeEncodeError as err:
        raise InvalidValueError(
            f"the string has a lone surrogate {value[err.start]!r} at index {err.start}, which is not valid "
            "Unicode: fix the text (for example decode its bytes with errors='replace')",
            value=value if len(value) <= 200 else value[:200] + "...",
        ) from None
    return value


def _object_to_json(value: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, element in value.items():
        if not isinstance(key, str):
            raise InvalidFieldNameError(
                f"object field names must be str, not {type(key).__name__}: convert {key!r} to str",
                value=key,
            )
        problem = field_name_problem(key)
        if problem is not None:
            raise InvalidFieldNameError(
                f"invalid field name {key!r}: {problem}; rename the field", path=_segment(key), value=key
            )
        try:
            out[key] = _to_json(element)
        except InvalidValueError as err:
            err.path = f"{_segment(key)}{err.path}"
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
    if kind is str:
        return value if value.isascii() else _checked_text(value)
    if value is None or kind is bool:
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
        return _checked_text(str.__str__(value))
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
        int64, a string with a lone surrogate, or a field name that a document cannot have (empty, longer
        than 1024 characters, not printable ASCII, starting with ``$``:
        :class:`~zapnb.errors.InvalidFieldNameError`).

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


_TAGS: Final = frozenset({"$float", "$bytes", "$integer"})
_NAMES_LIMIT: Final = 65_536
# Field names already found valid; bounded, cleared when full.
_valid_names: set[str] = set()
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


class _BadObjectError(Exception):
    """An object with a repeated or invalid field name; :func:`decode_json` then finds which and where."""


def _unknown_field(name: str) -> str:
    return (
        f"unknown field {name!r}: field names never start with '$', and $float, $bytes and $integer must be "
        "the only field of their object"
    )


def _tagged(tag: str, encoded: Any) -> Any:
    if tag == "$float":
        return canonical_float(_UNPACK_LE_DOUBLE(_eight_bytes(tag, encoded))[0])
    if tag == "$bytes":
        return _base64(tag, encoded)
    value: int = _UNPACK_LE_INT64(_eight_bytes(tag, encoded))[0]
    return value


def _pairs_hook(pairs: list[tuple[str, Any]]) -> Any:
    """:func:`decode_json`'s objects: each field named once, with a valid name, or a ``$`` tag alone."""
    obj = dict(pairs)
    if len(obj) == len(pairs) and _valid_names.issuperset(obj):  # no tag is a valid name
        return obj
    if len(pairs) == 1 and pairs[0][0] in _TAGS:
        return _tagged(*pairs[0])
    if len(obj) != len(pairs):
        raise _BadObjectError
    for name in obj:
        if name not in _valid_names:
            if field_name_problem(name) is not None:
                raise _BadObjectError
            if len(_valid_names) >= _NAMES_LIMIT:
                _valid_names.clear()
            _valid_names.add(name)
    return obj


def _object_hook(obj: dict[str, Any]) -> Any:
    """:func:`decode_stored_json`'s objects: only the ``$`` tags are looked at."""
    if len(obj) == 1:
        ((tag, encoded),) = obj.items()
        if tag in _TAGS:
            return _tagged(tag, encoded)
    for name in obj:
        if name[:1] == "$":
            raise _RejectedJsonError(_unknown_field(name))
    return obj


def _decoder(
    object_hook: Callable[[dict[str, Any]], Any] | None = None,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> json.JSONDecoder:
    return json.JSONDecoder(
        object_hook=object_hook,
        parse_float=_parse_float,
        parse_int=_parse_int,
        parse_constant=_parse_constant,
        object_pairs_hook=object_pairs_hook,
    )


_DECODER: Final = _decoder(object_pairs_hook=_pairs_hook)
_STORED_DECODER: Final = _decoder(object_hook=_object_hook)
_PLAIN_DECODER: Final = _decoder()


# --- finding what is wrong, once decoding failed ------------------------------------------------------------


class _Pairs(list[tuple[str, Any]]):
    """An object as its list of fields, repeats kept (to find the one that :func:`_pairs_hook` refused)."""


def _object_problem(pairs: _Pairs) -> str | None:
    if len(pairs) == 1 and pairs[0][0] in _TAGS:
        return None
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            return f"the field {name!r} appears twice in one object; name each field once"
        seen.add(name)
        if name[:1] == "$":
            return _unknown_field(name)
        problem = field_name_problem(name)
        if problem is not None:
            return f"invalid field name {name!r}: {problem}"
    return None


def _first_bad_object(value: Any, path: str) -> tuple[str, str] | None:
    """``(path, problem)`` of the first object that :func:`_pairs_hook` refuses, in the order it sees them:
    an object's fields before the object itself."""
    if isinstance(value, _Pairs):
        for name, item in value:
            found = _first_bad_object(item, path + _segment(name))
            if found is not None:
                return found
        problem = _object_problem(value)
        return None if problem is None else (path, problem)
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_bad_object(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _bad_object(text: str) -> str:
    """The problem of the object that made decoding ``text`` fail, and its path."""
    try:
        tree, _ = json.JSONDecoder(object_pairs_hook=_Pairs).raw_decode(text.lstrip())
        found = _first_bad_object(tree, "")
    except (ValueError, RecursionError):  # the text also breaks down after the bad object
        found = None
    if found is None:
        return "an object repeats a field or has an invalid field name"
    path, problem = found
    return f"{problem} (at {path or 'the top level'})"


def _lone_surrogate(value: Any, path: str) -> str | None:
    """The path of the first string in ``value`` that is not valid Unicode, or ``None``."""
    if type(value) is str:
        return None if value.isascii() or _encodes(value) else path
    if type(value) is list:
        for index, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}[{index}]")
            if found is not None:
                return found
    if type(value) is dict:
        for name, item in value.items():
            found = _lone_surrogate(item, path + _segment(name))
            if found is not None:
                return found
    return None


def _encodes(text: str) -> bool:
    try:
        str.encode(text)
    except UnicodeEncodeError:
        return False
    return True


def _may_hold_surrogates(text: str, from_bytes: bool) -> bool:
    """Whether decoding ``text`` may have made a lone surrogate: from a ``\\udc00`` escape, or from a
    surrogate in a ``str`` (UTF-8 bytes hold none)."""
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        return True
    return not from_bytes and not text.isascii() and not _encodes(text)


# --- the public functions -----------------------------------------------------------------------------------


def _invalid(text: str, problem: str) -> InvalidJsonError:
    return InvalidJsonError(
        f"not zapnb JSON: {problem}; pass text made by zapnb.encode_json or exported by Convex", text=text
    )


def _utf8_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidJsonError(
            f"not zapnb JSON: invalid UTF-8 at byte {err.start}; JSON text must be UTF-8",
            text=repr(data[:200]),
        ) from None


def _parse(decoder: json.JSONDecoder, text: str) -> Any:
    try:
        return decoder.decode(text)
    except _BadObjectError:
        problem = _bad_object(text)
    except _RejectedJsonError as err:
        problem = str(err)
    except json.JSONDecodeError as err:
        problem = f"{err.msg} at line {err.lineno} column {err.colno}"
    except RecursionError:
        problem = "nested too deeply"
    raise _invalid(text, problem)


def decode_json(text: str | bytes) -> Any:
    """Decode zapnb (or Convex) JSON back into the exact value (see the module docstring).

    Raises
    ------
    InvalidJsonError
        If ``text`` is not JSON, uses ``NaN``/``Infinity`` literals, holds an integer outside int64, a
        malformed ``$float``/``$bytes``/``$integer`` object, any other field starting with ``$``, a field
        name a document cannot have, a field twice in one object, or a string with a lone surrogate (the
        message gives the path of those last three).

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
    >>> zapnb.decode_json('{"a":[{"b":1,"b":2}]}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zapnb.errors.InvalidJsonError: not zapnb JSON: the field 'b' appears twice ... (at .a[0]); ...
    """
    if isinstance(text, str):
        from_bytes = False
    else:
        text, from_bytes = _utf8_text(text), True
    value = _parse(_DECODER, text)
    if _may_hold_surrogates(text, from_bytes):
        path = _lone_surrogate(value, "")
        if path is not None:
            where = path or "the top level"
            raise _invalid(text, f"the string at {where} has a lone surrogate, which is not valid Unicode")
    return value


def decode_stored_json(text: str | bytes) -> Any:
    """:func:`decode_json` of text that zapnb wrote itself with :func:`encode_json` or
    :func:`encode_stored_json` (its own files and log), without the checks of field names, repeated fields
    and lone surrogates, which that text passed when it was written.

    Numbers and the ``$float``/``$bytes``/``$integer`` objects are read as :func:`decode_json` reads them,
    and broken text is still an :class:`~zapnb.errors.InvalidJsonError`. It is faster (a document in about
    three quarters of the time): its objects are built by the JSON parser itself, without a check per object.

    Examples
    --------
    >>> from zapnb.jsonvalues import decode_stored_json, encode_json
    >>> decode_stored_json(encode_json({"n": 1, "raw": b"\\x00", "x": float("inf")}))
    {'n': 1, 'raw': b'\\x00', 'x': inf}
    """
    if not isinstance(text, str):
        text = _utf8_text(text)
    return _parse(_STORED_DECODER if '"$' in text or "\\u0024" in text else _PLAIN_DECODER, text)

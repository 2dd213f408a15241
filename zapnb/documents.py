"""Document-level rules: the stored form of values, field names and the per-document limits.

Every write passes its document through :func:`check_document`, which in one pass over the document

- turns each value into its canonical stored form (:func:`normalize_value`): ``None``, ``bool``, ``int``
  (int64), ``float``, ``str``, ``bytes``, ``list`` and ``dict`` with ``str`` keys; tuples become lists,
  ``bytearray`` and ``memoryview`` become ``bytes``, dict and list subclasses plain dicts and lists, a NaN
  the quiet NaN of its sign (:func:`zapnb.values.canonical_float`), and a :class:`~zapnb.ids.Id` (as a
  value or a key) its plain text: an ID is a string, and only a ``v.id(...)`` validator, which runs after
  this check, makes it an ``Id`` again (so it reads back the same before and after a checkpoint); anything
  else (including subclasses of int, float and str other than ``Id``) is refused with
  :class:`~zapnb.InvalidValueError`;
- checks every field name (:func:`check_field_name`);
- checks the limits Convex sets on a document, with Convex's definitions:

  ============  =========  ======================================================================
  limit         maximum    meaning
  ============  =========  ======================================================================
  size          1 MiB      :func:`value_size` of the document (rules below), at most 1,048,576
  depth         16         the document's nesting: a scalar has nesting 0, an array or object has
                           1 + the largest nesting of its elements, so the document itself is 1,
                           ``{"a": [1]}`` is 2 and ``{"a": {"b": [[1]]}}`` is 4
  array_length  8192       elements in any one array
  fields        1024       fields in the document and in any one nested object
  ============  =========  ======================================================================

The size of a value (Convex's ``Size`` rules, in bytes): ``null`` and booleans 1; int64 and float64 9;
strings and bytes 2 + their length in bytes (UTF-8 for strings; an ID is a string); arrays 2 + the sizes
of their elements; objects 2 + for each field its name's length + 1 + its value's size.

Field names are 1 to 1024 printable ASCII characters (space to ``~``) and never start with ``$``. At the
top level of a document they never start with ``_`` either, except the system fields ``_id`` and
``_creationTime``, which only zapnb itself sets (``allow_system_fields=True``, used when storing and
restoring documents; a user's insert or replace that contains them is refused).

Examples
--------
>>> from zapnb.documents import check_document, document_size
>>> check_document({"text": "hi", "tags": ("a", "b"), "raw": bytearray(b"x")})
{'text': 'hi', 'tags': ['a', 'b'], 'raw': b'x'}
>>> document_size({"text": "hi"})
11
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final, NoReturn

from zapnb.errors import DocumentLimitError, InvalidFieldNameError, InvalidValueError, ZapError
from zapnb.ids import Id, is_valid_id, labeller
from zapnb.values import MISSING, canonical_float

__all__ = [
    "MAX_ARRAY_LENGTH",
    "MAX_DOCUMENT_SIZE",
    "MAX_FIELD_NAME_LENGTH",
    "MAX_NESTING",
    "MAX_OBJECT_FIELDS",
    "SYSTEM_FIELDS",
    "check_document",
    "check_document_with_size",
    "check_field_name",
    "document_size",
    "field_name_problem",
    "normalize_value",
    "query_value",
    "result_document",
    "value_size",
]

MAX_DOCUMENT_SIZE: Final = 1 << 20
"""The largest document size, in bytes as :func:`value_size` counts them (1 MiB)."""
MAX_NESTING: Final = 16
"""The deepest nesting of a document: the document itself counts 1, each object or array inside adds 1."""
MAX_ARRAY_LENGTH: Final = 8192
"""The most elements in one array."""
MAX_OBJECT_FIELDS: Final = 1024
"""The most fields in the document and in any one nested object."""
MAX_FIELD_NAME_LENGTH: Final = 1024
"""The longest field name, in characters."""
SYSTEM_FIELDS: Final = frozenset({"_id", "_creationTime"})
"""The top-level fields that only zapnb sets."""

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_KINDS: Final = "None, bool, int, float, str, bytes, list or dict (or a zapnb.Id)"
_NAME_CACHE_LIMIT: Final = 65_536

# Field names already found valid (anywhere below the top level), each mapped to itself as a plain str;
# bounded, cleared when full.
_valid_names: dict[str, str] = {}


class _BadValueError(Exception):
    """A failure deep in a value, carried up to the top, which adds the path and raises the public error."""

    def __init__(self, build: Callable[[str], ZapError], container: object = None) -> None:
        super().__init__()
        self.build = build
        self.container = container
        self.segments: list[str] = []
        self.cyclic = False


def _where(path: str) -> str:
    return f" at {path}" if path else ""


def _segment(key: object) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f".{key}"
    return f"[{json.dumps(key) if isinstance(key, str) else repr(key)}]"


# --- field names -------------------------------------------------------------------------------------------


def _name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a field name anywhere, or None when it can (top-level rules aside)."""
    if not isinstance(name, str):
        return f"field names are str, not {type(name).__name__} ({name!r}); convert the key with str()"
    if not name:
        return "field names cannot be empty"
    if len(name) > MAX_FIELD_NAME_LENGTH:
        return f"field names are at most {MAX_FIELD_NAME_LENGTH} characters, this one has {len(name)}"
    if not (name.isascii() and name.isprintable()):
        bad = next(c for c in name if not (" " <= c <= "~"))
        return f"field names are printable ASCII (space to '~'), and {name!r} contains {bad!r}"
    if name[0] == "$":
        return f"field names cannot start with '$' (reserved), and {name!r} does"
    return None


def _top_level_problem(name: str, allow_system_fields: bool) -> str | None:
    if name[0] != "_" or (allow_system_fields and name in SYSTEM_FIELDS):
        return None
    if name in SYSTEM_FIELDS:
        return f"{name!r} is a system field that zapnb sets itself; remove it from the document"
    return (
        f"top-level field names cannot start with '_' (reserved for system fields), and {name!r} does; "
        "rename the field"
    )


def check_field_name(name: str, *, top_level: bool, path: str, allow_system_fields: bool = False) -> None:
    """Raise :class:`~zapnb.InvalidFieldNameError` if ``name`` cannot name a field.

    Parameters
    ----------
    name:
        The field name.
    top_level:
        Whether the field is at the top level of a document (where ``_`` is reserved).
    path:
        Where the field is, as ``.a.b``, for the error message.
    allow_system_fields:
        Whether ``_id`` and ``_creationTime`` are allowed at the top level (only zapnb's own writes).

    Examples
    --------
    >>> check_field_name("_private", top_level=False, path="._private")
    >>> check_field_name("_private", top_level=True, path="._private")
    Traceback (most recent call last):
    ...
    zapnb.errors.InvalidFieldNameError: Invalid field name at ._private: top-level field names cannot ...
    """
    problem = _name_problem(name)
    if problem is None and top_level:
        problem = _top_level_problem(name, allow_system_fields)
    if problem is not None:
        raise _name_error(problem, name)(path)


def field_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a field below the top level of a document, or ``None`` when it can.

    Examples
    --------
    >>> field_name_problem("price"), field_name_problem("")
    (None, 'field names cannot be empty')
    """
    if type(name) is str and name in _valid_names:
        return None
    problem = _name_problem(name)
    if problem is None:
        _checked_name(name)  # remembered for next time
    return problem


def _name_error(problem: str, name: object) -> Callable[[str], ZapError]:
    return lambda path: InvalidFieldNameError(
        f"Invalid field name{_where(path)}: {problem}.", path=path, value=name
    )


def _checked_name(name: object) -> str:
    """``name`` as a plain str once it is found valid (below the top level), remembered for next time."""
    problem = _name_problem(name)
    if problem is not None:
        raise _BadValueError(_name_error(problem, name))
    key = str.__str__(name)  # a str subclass used as a key (an Id, a StrEnum) is stored as plain text
    if len(_valid_names) >= _NAME_CACHE_LIMIT:
        _valid_names.clear()
    _valid_names[key] = key
    return key


# --- values ------------------------------------------------------------------------------------------------


def _hint(value: object) -> str:
    module = type(value).__module__.split(".")[0]
    if isinstance(value, set | frozenset):
        return "store a list instead, for example sorted(value)"
    if module == "numpy":
        return "convert numpy values with .item() (scalars) or .tolist() (arrays)"
    if module == "datetime":
        return "store milliseconds since the epoch (value.timestamp() * 1000) or a str (value.isoformat())"
    if module == "decimal" or module == "fractions":
        return "store float(value), or str(value) to keep every digit"
    if isinstance(value, int | float | str | bytes):
        kind = next(k for k in (int, float, str, bytes) if isinstance(value, k)).__name__
        return f"convert it to a plain {kind} with {kind}(value)"
    return "convert it to one of those first"


def _unsupported(value: object) -> _BadValueError:
    message = f"a {type(value).__module__}.{type(value).__qualname__} is not a value zapnb can store"
    hint = _hint(value)
    return _BadValueError(
        lambda path: InvalidValueError(
            f"Invalid value{_where(path)}: {message}. Values are {_KINDS}; {hint}.", path=path, value=value
        )
    )


def _int_out_of_range(value: int) -> _BadValueError:
    return _BadValueError(
        lambda path: InvalidValueError(
            f"Invalid value{_where(path)}: {value} is outside the int64 range -2**63 .. 2**63-1; "
            "store it as a float (losing precision) or as a str.",
            path=path,
            value=value,
        )
    )


def _utf8_size(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as err:
        index = err.start
        char = text[index]
        raise _BadValueError(
            lambda path: InvalidValueError(
                f"Invalid value{_where(path)}: the string has a lone surrogate {char!r} at index {index}, "
                "which is not valid Unicode; fix the text (for example decode its bytes with "
                "errors='replace').",
                path=path,
                value=text if len(text) <= 200 else text[:200] + "...",
            )
        ) from None


def _value(value: Any, depth: int) -> tuple[Any, int]:
    """The stored form of ``value`` and its size; ``depth`` is the nesting of its container."""
    kind = type(value)
    if kind is str:
        return value, (len(value) if value.isascii() else _utf8_size(value)) + 2
    if kind is Id:
        return str.__str__(value), len(value) + 2
    if kind is float:
        return (value if value == value else canonical_float(value)), 9
    if kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return value, 9
        raise _int_out_of_range(value)
    if kind is dict:
        return _object(value, depth + 1, False, False)
    if kind is list or kind is tuple:
        return _array(value, depth + 1)
    if value is None or kind is bool:
        return value, 1
    if kind is bytes:
        return value, len(value) + 2
    return _other(value, depth)


def _other(value: Any, depth: int) -> tuple[Any, int]:
    """The rarer kinds: bytes-like objects and dict or list subclasses; anything else is refused."""
    if isinstance(value, bytearray | memoryview):
        data = bytes(value)
        return data, len(data) + 2
    if isinstance(value, dict):
        return _object(value, depth + 1, False, False)
    if isinstance(value, list):
        return _array(value, depth + 1)
    raise _unsupported(value)


def _too_deep(depth: int, container: object) -> _BadValueError:
    return _BadValueError(
        lambda path: DocumentLimitError(
            f"Document too deeply nested{_where(path)}: nesting reaches {depth} levels, more than the "
            f"maximum of {MAX_NESTING} (the document counts 1, each object or array inside it 1 more); "
            "flatten the structure, for example by moving nested parts into a table of their own and "
            "storing their IDs.",
            limit="depth",
            maximum=MAX_NESTING,
            actual=depth,
            path=path,
        ),
        container,
    )


def _too_many(limit: str, maximum: int, actual: int, what: str, advice: str) -> _BadValueError:
    return _BadValueError(
        lambda path: DocumentLimitError(
            f"{what}{_where(path)}: {actual}, more than the maximum of {maximum}; {advice}.",
            limit=limit,
            maximum=maximum,
            actual=actual,
            path=path,
        )
    )


def _array(items: list[Any] | tuple[Any, ...], depth: int) -> tuple[list[Any], int]:
    if depth > MAX_NESTING:
        raise _too_deep(depth, items)
    if len(items) > MAX_ARRAY_LENGTH:
        advice = "split the array, or store its elements as documents of their own table"
        raise _too_many("array_length", MAX_ARRAY_LENGTH, len(items), "Array too long", advice)
    out: list[Any] = []
    size = 2
    try:
        for item in items:
            kind = type(item)
            if kind is str:
                size += (len(item) if item.isascii() else _utf8_size(item)) + 2
            elif kind is float:
                size += 9
                if item != item:
                    item = canonical_float(item)
            else:
                item, item_size = _value(item, depth)
                size += item_size
            out.append(item)
    except _BadValueError as bad:
        bad.segments.append(f"[{len(out)}]")
        bad.cyclic = bad.cyclic or bad.container is items
        raise
    return out, size


def _object(fields: dict[Any, Any], depth: int, top: bool, allow_system: bool) -> tuple[dict[str, Any], int]:
    if depth > MAX_NESTING:
        raise _too_deep(depth, fields)
    if len(fields) > MAX_OBJECT_FIELDS:
        advice = "store the data as an array of objects, or split it across documents"
        raise _too_many("fields", MAX_OBJECT_FIELDS, len(fields), "Too many fields in an object", advice)
    out: dict[str, Any] = {}
    size = 2
    name: Any = None
    try:
        for name, value in fields.items():
            key = _valid_names.get(name)
            if key is None:
                key = _checked_name(name)
            if top and key[0] == "_":
                value, value_size = _system_field(key, value, allow_system)
            else:
                kind = type(value)
                if kind is str:
                    value_size = (len(value) if value.isascii() else _utf8_size(value)) + 2
                elif kind is float:
                    value_size = 9
                    if value != value:
                        value = canonical_float(value)
                elif kind is Id:
                    value, value_size = str.__str__(value), len(value) + 2
                elif (kind is int and _INT64_MIN <= value <= _INT64_MAX) or kind is bool or value is None:
                    value_size = 1 if kind is not int else 9
                else:
                    value, value_size = _value(value, depth)
            size += len(key) + 1 + value_size
            out[key] = value
    except _BadValueError as bad:
        bad.segments.append(_segment(name))
        bad.cyclic = bad.cyclic or bad.container is fields
        raise
    return out, size


def _system_field(name: str, value: Any, allow_system: bool) -> tuple[Any, int]:
    problem = _top_level_problem(name, allow_system)
    if problem is not None:
        raise _BadValueError(_name_error(problem, name))
    if name == "_id":
        if not isinstance(value, str) or not is_valid_id(value):
            raise _BadValueError(_bad_system_value(name, value, "a document ID (zapnb.Id)"))
        stored = value if type(value) is Id else Id(value)
        return stored, len(stored) + 2
    if type(value) is not float or not 0.0 < value < 2.0**53:
        raise _BadValueError(_bad_system_value(name, value, "a float of milliseconds since the epoch"))
    return value, 9


def _bad_system_value(name: str, value: object, expected: str) -> Callable[[str], ZapError]:
    return lambda path: InvalidValueError(
        f"Invalid value{_where(path)}: the system field {name!r} must be {expected}, not {value!r}; "
        "leave system fields to zapnb.",
        path=path,
        value=value,
    )


def _raise_public(bad: _BadValueError, prefix: str) -> NoReturn:
    path = prefix + "".join(reversed(bad.segments))
    if bad.cyclic:
        raise InvalidValueError(
            f"Invalid value{_where(path)}: the value contains itself (a cyclic list or dict), which cannot "
            "be stored; store a copy without the cycle.",
            path=path,
            value=f"<cyclic {type(bad.container).__name__}>",
        ) from None
    raise bad.build(path) from None


# --- public API --------------------------------------------------------------------------------------------


def normalize_value(value: Any, path: str = "") -> Any:
    """The canonical stored form of ``value``, or :class:`~zapnb.InvalidValueError` naming what is wrong.

    The value is checked as a field value: its field names and the array-length, fields-per-object and
    nesting limits apply (a value's own nesting may be at most 16), the document size limit does not.

    Parameters
    ----------
    value:
        Any Python value.
    path:
        Where the value sits (as ``.a.b[3]``), to prefix the paths in error messages.

    Examples
    --------
    >>> normalize_value({"point": (1, 2.5), "blob": bytearray(b"ab")})
    {'point': [1, 2.5], 'blob': b'ab'}
    >>> normalize_value({1, 2}, ".tags")
    Traceback (most recent call last):
    ...
    zapnb.errors.InvalidValueError: Invalid value at .tags: a builtins.set is not a value zapnb can store. ...
    """
    try:
        return _value(value, 0)[0]
    except _BadValueError as bad:
        _raise_public(bad, path)


def query_value(value: Any, path: str = "") -> Any:
    """A value that a query compares with (an index range bound, a filter literal), in stored form.

    Such a value passes the checks a field value passes (:func:`normalize_value`: kinds, int64, strings,
    field names, the nesting and length limits, no cycles), so a literal that no document could hold is
    refused rather than silently matching nothing; only :data:`~zapnb.values.MISSING` (a missing field) is
    allowed besides.

    Examples
    --------
    >>> from zapnb.values import MISSING
    >>> query_value((1, "a")), query_value(MISSING)
    ([1, 'a'], zapnb.MISSING)
    >>> query_value(2**63, ".n")
    Traceback (most recent call last):
    ...
    zapnb.errors.InvalidValueError: Invalid value at .n: 9223372036854775808 is outside the int64 range ...
    """
    if value is MISSING:
        return value
    return normalize_value(value, path)


def value_size(value: Any) -> int:
    """The size of ``value`` in bytes by Convex's rules (see the module docstring).

    ``value`` is checked like :func:`normalize_value` checks it, and measured in its stored form.

    Examples
    --------
    >>> value_size(None), value_size(7), value_size("héllo"), value_size([1.5, True])
    (1, 9, 8, 12)
    >>> value_size({"a": b"xy"})
    8
    """
    try:
        return _value(value, 0)[1]
    except _BadValueError as bad:
        _raise_public(bad, "")


def document_size(doc: dict[str, Any]) -> int:
    """The size of the document ``doc`` by Convex's rules, system fields included when present.

    The document is checked like :func:`check_document` checks it (system fields allowed), except that a
    size over the limit is returned rather than refused.

    Examples
    --------
    >>> document_size({})
    2
    >>> document_size({"n": 1})
    13
    """
    return _walk_document(doc, True)[1]


def check_document(doc: dict[str, Any], *, allow_system_fields: bool = False) -> dict[str, Any]:
    """Check ``doc`` against every document rule in one pass and return its canonical stored form.

    The size limit applies to ``doc`` as given: a user's document is measured without the system fields
    (as Convex measures an insert), a stored or restored one with them.

    Parameters
    ----------
    doc:
        The document, a dict of field names to values.
    allow_system_fields:
        Whether ``doc`` may contain ``_id`` (a valid ID) and ``_creationTime`` (a positive float); only
        zapnb's own storage and restore set this. A user's document never may.

    Raises
    ------
    InvalidFieldNameError
        A field name breaks the naming rules.
    DocumentLimitError
        The document breaks a limit (size, depth, array length, fields per object).
    InvalidValueError
        A value zapnb cannot store (an unsupported type, an int outside int64, a lone surrogate, a cycle).

    Examples
    --------
    >>> check_document({"title": "Notes", "stars": 3})
    {'title': 'Notes', 'stars': 3}
    >>> check_document({"_id": "kd70hswas0vt0z9b7kxmmcwcd97ed1rj"})
    Traceback (most recent call last):
    ...
    zapnb.errors.InvalidFieldNameError: Invalid field name at ._id: '_id' is a system field that zapnb ...
    """
    return check_document_with_size(doc, allow_system_fields=allow_system_fields)[0]


def check_document_with_size(
    doc: dict[str, Any], *, allow_system_fields: bool = False
) -> tuple[dict[str, Any], int]:
    """Like :func:`check_document`, also returning the document's size (for write accounting).

    Examples
    --------
    >>> check_document_with_size({"text": "hi"})
    ({'text': 'hi'}, 11)
    """
    out, size = _walk_document(doc, allow_system_fields)
    if size > MAX_DOCUMENT_SIZE:
        raise DocumentLimitError(
            f"Document too large: {size} bytes, more than the maximum of {MAX_DOCUMENT_SIZE} (1 MiB); store "
            "large text or bytes elsewhere (a file, or split across documents) and keep a reference here.",
            limit="size",
            maximum=MAX_DOCUMENT_SIZE,
            actual=size,
        )
    return out, size


def _walk_document(doc: dict[str, Any], allow_system_fields: bool) -> tuple[dict[str, Any], int]:
    if not isinstance(doc, dict):
        raise InvalidValueError(
            f"A document is a dict of field names to values, not a {type(doc).__name__}; "
            "pass a dict such as {'text': 'hello'}.",
            value=doc,
        )
    try:
        return _object(doc, 1, True, allow_system_fields)
    except _BadValueError as bad:
        _raise_public(bad, "")


# --- documents handed out -----------------------------------------------------------------------------------


def result_document(table: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document as a caller receives it: a dict of its own, whose arrays and objects are copies too,
    so that changing it never changes what is stored; ``_id`` is an :class:`~zapnb.Id` of ``table``.

    Examples
    --------
    >>> stored = {"_id": "j574j6mfnbe0rpyxsm1xemrxs18k1yyn", "_creationTime": 1.0, "tags": ["a"]}
    >>> doc = result_document("notes", stored)
    >>> doc["tags"].append("b")
    >>> stored["tags"], doc["_id"].table
    (['a'], 'notes')
    """
    out = {name: _copied(value) for name, value in doc.items()}
    out["_id"] = labeller(table)(str.__str__(doc["_id"]))  # a stored ID: valid, not checked again
    return out


def _copied(value: Any) -> Any:
    """``value`` with its arrays and objects copied (every other value is immutable)."""
    kind = type(value)
    if kind is list:
        return [_copied(item) for item in value]
    if kind is dict:
        return {name: _copied(item) for name, item in value.items()}
    return value

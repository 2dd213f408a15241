"""What an index orders by (:class:`IndexSpec`) and the key of a document in it.

An index over fields ``[f1, ..., fk]`` orders documents by ``(f1, ..., fk, _creationTime, _id)``; its key is
``encode_key([f1, ..., fk, _creationTime, _id])``, an absent field being ``MISSING``, and a dotted path
``"a.b"`` reading ``doc["a"]["b"]`` (``MISSING`` if a step is absent or not an object). ``by_id`` keys are
``encode_key([_id])`` and ``by_creation_time`` keys ``encode_key([_creationTime, _id])``: every key ends with
the document's encoded system fields (:func:`system_key_parts`), which a table encodes once for all of a
document's keys (:meth:`IndexSpec.key_from`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from zapnb.errors import InvalidValueError, SchemaDefinitionError
from zapnb.keys import encode_key, encode_value
from zapnb.values import MISSING, lookup_path

__all__ = ["MAX_FIELDS", "IndexKind", "IndexSpec", "system_key_parts"]

IndexKind = Literal["user", "by_id", "by_creation_time"]
Document = Mapping[str, Any]

MAX_FIELDS: Final = 15
"""The most fields a user index may have."""


def _missing_system_field(err: KeyError) -> InvalidValueError:
    return InvalidValueError(
        f"Cannot compute the index key of a document without its system field {err.args[0]!r}: pass the "
        "stored document (with _id and _creationTime), not the fields given to insert.",
        path=f".{err.args[0]}",
    )


def _by_id_key(doc: Document) -> bytes:
    try:
        return encode_value(doc["_id"])
    except KeyError as err:
        raise _missing_system_field(err) from None


def system_key_parts(doc: Document) -> tuple[bytes, bytes]:
    """The encoded ``_id``, and ``_creationTime`` then ``_id``: how every key of ``doc`` ends (see
    :meth:`IndexSpec.key_from`)."""
    try:
        creation_time, doc_id = doc["_creationTime"], doc["_id"]
    except KeyError as err:
        raise _missing_system_field(err) from None
    creation_key, id_key = encode_value(creation_time), encode_value(doc_id)
    return id_key, creation_key + id_key


def _fields_key_function(fields: tuple[str, ...]) -> Callable[[Document], bytes]:
    """The part of a user index's key made of the indexed fields (the system fields follow it)."""
    paths = tuple(tuple(name.split(".")) for name in fields)
    if all(len(path) == 1 for path in paths):
        names = tuple(path[0] for path in paths)
        missing = (MISSING,) * len(names)
        return lambda doc: encode_key(list(map(doc.get, names, missing)))
    return lambda doc: encode_key([lookup_path(doc, path) for path in paths])


def _spec_problem(fields: tuple[str, ...], kind: str) -> str | None:
    if kind in ("by_id", "by_creation_time"):
        return f"a {kind} index has no fields of its own" if fields else None
    if kind != "user":
        return f"the kind must be 'user', 'by_id' or 'by_creation_time', not {kind!r}"
    if not 1 <= len(fields) <= MAX_FIELDS:
        return f"a user index has 1 to {MAX_FIELDS} fields, not {len(fields)}"
    for name in fields:
        if not isinstance(name, str) or "" in name.split("."):
            return f"{name!r} is not a field path (names joined by dots)"
    return None


@dataclass(frozen=True)
class IndexSpec:
    """What an index orders documents by.

    Attributes
    ----------
    name:
        The index's name (``by_id`` and ``by_creation_time`` for the built-in ones).
    fields:
        The indexed fields, as dotted paths (empty for the built-in indexes).
    kind:
        ``"user"``, ``"by_id"`` or ``"by_creation_time"``.

    Examples
    --------
    >>> from zapnb.keys import decode_key
    >>> spec = IndexSpec("by_user_age", ("user.name", "age"))
    >>> decode_key(spec.key_for({"_id": "i", "_creationTime": 1.5, "user": {"name": "ann"}}))
    ['ann', zapnb.MISSING, 1.5, 'i']
    >>> IndexSpec.by_id().key_for({"_id": "i", "_creationTime": 1.5}) == encode_key(["i"])
    True
    """

    name: str
    fields: tuple[str, ...] = ()
    kind: IndexKind = "user"
    _fields_key: Callable[[Document], bytes] | None = field(init=False, repr=False, compare=False)
    key_fields: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The top-level fields whose values make up a document's key (the first name of each dotted path, then
    the system fields the key ends with)."""

    def __post_init__(self) -> None:
        fields = tuple(self.fields)
        object.__setattr__(self, "fields", fields)
        problem = _spec_problem(fields, self.kind)
        if problem is not None:
            raise SchemaDefinitionError(
                f"Index {self.name!r} cannot be defined: {problem}. Fix its definition."
            )
        fields_key = _fields_key_function(fields) if self.kind == "user" else None
        object.__setattr__(self, "_fields_key", fields_key)
        names = [name.split(".")[0] for name in fields]
        system = ("_id",) if self.kind == "by_id" else ("_creationTime", "_id")
        object.__setattr__(self, "key_fields", (*dict.fromkeys(names), *system))

    def __reduce__(self) -> tuple[type[IndexSpec], tuple[str, tuple[str, ...], IndexKind]]:
        return (IndexSpec, (self.name, self.fields, self.kind))

    @classmethod
    def by_id(cls) -> IndexSpec:
        """The built-in index of every table by ``_id``."""
        return cls("by_id", (), "by_id")

    @classmethod
    def by_creation_time(cls) -> IndexSpec:
        """The built-in index of every table by ``_creationTime`` (then ``_id``)."""
        return cls("by_creation_time", (), "by_creation_time")

    def key_for(self, doc: Document) -> bytes:
        """The key of a stored document (one that has ``_id`` and ``_creationTime``) in this index.

        Raises
        ------
        InvalidValueError
            If the document lacks a system field or holds a value that cannot be a key.
        """
        if self.kind == "by_id":
            return _by_id_key(doc)  # needs no _creationTime
        return self.key_from(doc, system_key_parts(doc))

    def key_from(self, doc: Document, parts: tuple[bytes, bytes]) -> bytes:
        """:meth:`key_for` of ``doc`` given its :func:`system_key_parts`, which several indexes share.

        >>> doc = {"_id": "i", "_creationTime": 1.5, "a": [1]}
        >>> spec = IndexSpec("by_a", ("a",))
        >>> spec.key_from(doc, system_key_parts(doc)) == spec.key_for(doc)
        True
        """
        if self._fields_key is not None:
            return self._fields_key(doc) + parts[1]
        return parts[0] if self.kind == "by_id" else parts[1]

"""Where an ID stays an :class:`~zapnb.Id`: in a column that holds IDs, not in one that holds them as text.

A field whose column holds text (zapnb's JSON, or a string column shared with other kinds: the keys and values
of ``v.record``, a ``v.union`` that mixes ``v.id`` with other kinds or tables) reads back as a plain ``str``
after a checkpoint; :class:`~zapnb.validator_kinds.ObjectValidator` stores such a field's IDs as text from the
start (:func:`zapnb.ids.plain_ids`) where :func:`stores_ids_as_text` says so: it reads the same on every path.

Examples
--------
>>> from zapnb import v
>>> stores_ids_as_text(v.union(v.id("a"), v.string())), stores_ids_as_text(v.nullable(v.id("a")))
(True, False)
"""

from __future__ import annotations

from zapnb.validator_base import Validator
from zapnb.validator_kinds import (
    ArrayValidator,
    IdValidator,
    NullValidator,
    ObjectValidator,
    OptionalValidator,
    RecordValidator,
    UnionValidator,
)

__all__ = ["stores_ids_as_text"]


def stores_ids_as_text(validator: Validator) -> bool:
    """Whether ``validator`` can give an :class:`~zapnb.Id` in a place its column holds as text (zapnb's JSON,
    or a string column shared with other kinds), which reads back as a plain ``str``: such a field stores
    plain strings from the start, so that it reads the same before and after a checkpoint."""
    if isinstance(validator, OptionalValidator):
        return stores_ids_as_text(validator.inner)
    if isinstance(validator, ArrayValidator):
        return stores_ids_as_text(validator.element)
    if isinstance(validator, RecordValidator):
        return _has_ids(validator.keys) or _has_ids(validator.values)
    if isinstance(validator, UnionValidator):
        others = [m for m in validator.members if not isinstance(m, NullValidator)]
        if len(others) == 1:
            return stores_ids_as_text(others[0])
        if all(isinstance(m, IdValidator) for m in others) and len({m.table for m in others}) == 1:  # type: ignore[attr-defined]
            return False
        return any(_has_ids(m) for m in others)
    return False  # an ID column keeps Ids; an object's own fields decide for themselves


def _has_ids(validator: Validator) -> bool:
    if isinstance(validator, IdValidator):
        return True
    if isinstance(validator, OptionalValidator):
        return _has_ids(validator.inner)
    if isinstance(validator, ArrayValidator):
        return _has_ids(validator.element)
    if isinstance(validator, RecordValidator):
        return _has_ids(validator.keys) or _has_ids(validator.values)
    if isinstance(validator, UnionValidator):
        return any(_has_ids(m) for m in validator.members)
    if isinstance(validator, ObjectValidator):
        return any(_has_ids(v) for _, v in validator.fields)
    return False

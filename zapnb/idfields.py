"""Where an ID stays an :class:`~zapnb.Id`: in a column that holds IDs, not in one that holds them as text.

A field whose column holds text (zapnb's JSON, or a string column shared with other kinds: the keys and values
of ``v.record``, a ``v.union`` that mixes ``v.id`` with other kinds or tables) reads back as a plain ``str``
after a checkpoint; :class:`~zapnb.validator_kinds.ObjectValidator` stores such a field's IDs as text from the
start (:func:`plain_ids`), where :func:`stores_ids_as_text` says so, so that it reads the same on every path.

Examples
--------
>>> from zapnb import v
>>> stores_ids_as_text(v.union(v.id("a"), v.string())), stores_ids_as_text(v.nullable(v.id("a")))
(True, False)
"""

from __future__ import annotations

from typing import Any

from zapnb.ids import Id
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

__all__ = ["plain_ids", "stores_ids_as_text"]


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


def plain_ids(value: Any) -> Any:
    """``value`` with every :class:`~zapnb.Id` in it (dict keys too) as a plain ``str``."""
    if isinstance(value, Id):
        return str(value)
    if isinstance(value, dict):
        return {plain_ids(k): plain_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_ids(item) for item in value]
    return value

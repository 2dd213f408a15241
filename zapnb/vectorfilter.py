"""Filters evaluated on whole columns: the fast path of ``collect()`` and ``count()`` with ``.filter()``.

Responsibilities: translate a filter expression into one Polars expression over the query's typed frame when,
and only when, it gives exactly the answer of the per-document evaluation (:mod:`zapnb.filters`).

That holds for comparisons of a top-level field with a literal of the one kind the field's validators allow
(string, int64 or boolean), combined with ``and_``, ``or_`` and ``not_``. A column is read by its exact
name (``"*"`` and ``"^a$"`` are names here, not a wildcard or a regular expression). In such a column a null
stands for a missing field or a null, and both sort before any string, int64 or boolean in the total order, so
a null row compares as "less than" the literal: ``eq`` false, ``neq`` true, ``lt``/``lte`` true,
``gt``/``gte`` false.
Everything else returns ``None`` and the per-document path runs: nested paths, arithmetic, comparisons of two
fields or with null, floats (the total order has ``-0.0 < 0.0`` and ``nan == nan``; Polars does not),
fields whose validators mix kinds, and tables without a schema.

Examples
--------
>>> from zapnb import define_table, v
>>> from zapnb.filters import FilterBuilder
>>> from zapnb.ranges import field_validators
>>> validators_of = field_validators(define_table({"role": v.string(), "n": v.optional(v.int64())}))
>>> q = FilterBuilder()
>>> vector_filter(q.and_(q.eq(q.field("role"), "USER"), q.lt(q.field("n"), 3)), validators_of) is not None
True
>>> vector_filter(q.eq(q.field("role"), 1), validators_of) is None  # a string field against an int64
True
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from functools import reduce
from typing import TYPE_CHECKING, Final, Literal

from zapnb.filters import (
    Compare,
    CompareOp,
    Constant,
    Expr,
    Field,
    Logical,
    Not,
    ValidatorsOf,
    coerce_literals,
)
from zapnb.validator_kinds import (
    BooleanValidator,
    IdValidator,
    Int64Validator,
    LiteralValidator,
    NullValidator,
    StringValidator,
)
from zapnb.validators import Validator

if TYPE_CHECKING:
    import polars as pl

__all__ = ["vector_filter"]

Kind = Literal["string", "int64", "boolean"]

_FLIPPED: Final[dict[CompareOp, CompareOp]] = {
    "eq": "eq",
    "neq": "neq",
    "lt": "gt",
    "lte": "gte",
    "gt": "lt",
    "gte": "lte",
}
#: What a comparison gives for a null cell: null and missing sort before every string, int64 and boolean.
_NULL_RESULT: Final[dict[CompareOp, bool]] = {
    "eq": False,
    "neq": True,
    "lt": True,
    "lte": True,
    "gt": False,
    "gte": False,
}


def vector_filter(expr: Expr, validators_of: ValidatorsOf) -> pl.Expr | None:
    """``expr`` as a Polars expression over the typed frame, or ``None`` when only documents can answer it."""
    return _translate(coerce_literals(expr, validators_of), validators_of)


def _translate(expr: Expr, validators_of: ValidatorsOf) -> pl.Expr | None:
    import polars as pl

    if isinstance(expr, Constant) and type(expr.value) is bool:
        return pl.lit(expr.value)
    if isinstance(expr, Compare):
        return _compare(expr, validators_of)
    if isinstance(expr, Not):
        inner = _translate(expr.operand, validators_of)
        return None if inner is None else ~inner
    if isinstance(expr, Logical):
        parts: list[pl.Expr] = []
        for operand in expr.operands:
            part = _translate(operand, validators_of)
            if part is None:
                return None
            parts.append(part)
        if not parts:
            return pl.lit(expr.op == "and_")
        combined: pl.Expr = reduce(operator.and_ if expr.op == "and_" else operator.or_, parts)
        return combined
    return None


def _compare(expr: Compare, validators_of: ValidatorsOf) -> pl.Expr | None:
    import polars as pl

    if isinstance(expr.left, Field) and isinstance(expr.right, Constant):
        field, value, op = expr.left.path, expr.right.value, expr.op
    elif isinstance(expr.left, Constant) and isinstance(expr.right, Field):
        field, value, op = expr.right.path, expr.left.value, _FLIPPED[expr.op]
    else:
        return None
    if "." in field or field.startswith("_"):
        return None
    validators = validators_of(field)
    kind = _kind(validators)
    if kind is None or _value_kind(value) != kind:
        return None
    column = _column(field)
    if kind == "string" and op in ("eq", "neq"):
        choices = _string_choices(validators)
        if choices is not None and value not in choices:
            return pl.lit(op == "neq")  # no cell holds it (an enum column could not even say so)
    elif kind == "string":
        column = column.cast(pl.String)  # an enum column orders by its categories: compare the text
    compared: pl.Expr = {
        "eq": column == value,
        "neq": column != value,
        "lt": column < value,
        "lte": column <= value,
        "gt": column > value,
        "gte": column >= value,
    }[op]
    return compared.fill_null(_NULL_RESULT[op])


def _column(name: str) -> pl.Expr:
    """The column named exactly ``name``.

    ``pl.col`` reads ``"*"`` as every column and ``"^...$"`` as a regular expression; a selector by name
    takes any field name as it is.

    Examples
    --------
    >>> import polars as pl
    >>> frame = pl.DataFrame({"*": [1], "^a$": [2], "a": [3]})
    >>> frame.select(_column("*"), _column("^a$")).columns
    ['*', '^a$']
    """
    import polars.selectors as cs

    return cs.by_name(name).as_expr()


def _string_choices(validators: Sequence[Validator]) -> set[str] | None:
    """The strings a field can hold when its validators are string literals (its column is an enum)."""
    choices: set[str] = set()
    for validator in validators:
        if isinstance(validator, LiteralValidator) and type(validator.value) is str:
            choices.add(validator.value)
        elif not isinstance(validator, NullValidator):
            return None
    return choices


def _kind(validators: Sequence[Validator]) -> Kind | None:
    """The one kind every validator of a field allows, if there is one that columns compare exactly.

    ``v.null()`` adds no kind: its null cells compare like missing ones.
    """
    kinds = {
        _validator_kind(validator) for validator in validators if not isinstance(validator, NullValidator)
    }
    if len(kinds) != 1:
        return None
    return kinds.pop()


def _validator_kind(validator: Validator) -> Kind | None:
    if isinstance(validator, StringValidator | IdValidator):
        return "string"
    if isinstance(validator, Int64Validator):
        return "int64"
    if isinstance(validator, BooleanValidator):
        return "boolean"
    if isinstance(validator, LiteralValidator):
        return _value_kind(validator.value)
    return None


def _value_kind(value: object) -> Kind | None:
    if type(value) is str:
        return "string"
    if type(value) is int:
        return "int64"
    if type(value) is bool:
        return "boolean"
    return None

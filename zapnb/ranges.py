"""Index ranges: ``.with_index("by_a_b", lambda q: q.eq("a", 1).gt("b", 2))`` as a range of index keys.

Responsibilities:

- :class:`IndexRangeBuilder`, the ``q`` that a range function receives: ``eq``, ``gt``, ``gte``, ``lt``,
  ``lte``, each returning a new builder;
- :func:`compile_range`: check a range against its index the way Convex does and turn it into the keys
  ``[lo, hi)`` of :mod:`zapnb.keys` (an index over ``[f1, ..., fk]`` has keys
  ``encode_key([f1, ..., fk, _creationTime, _id])``);
- the int/float rule for literals (:func:`coerce_value`, :func:`literal_coercer`), which filters share.

The rule: zero or more ``eq`` on index fields (in any order; together they must be the first fields of the
index), then at most one lower bound (``gt``/``gte``) and one upper bound (``lt``/``lte``), both on the next
field. ``_creationTime`` follows the declared fields (and ``_id`` follows it), so it can be ranged too. A
violation raises :class:`~zapnb.errors.InvalidIndexRangeError` worded as Convex words it. An open bound covers
every kind on its side of the total order (``gt("n", 5)`` also matches strings); ``eq("x", None)`` matches
null and ``eq("x", zapnb.MISSING)`` documents without ``x``.

Where every validator of a field is ``v.number()``/``v.float64()`` (or a float literal), an ``int`` compared
with it is taken as that float, as Convex's Python client sends it; against ``v.any()`` or a table without a
schema an ``int`` stays an int64, so ``1`` and ``1.0`` differ there.

Examples
--------
>>> from zapnb.index import IndexSpec
>>> spec = IndexSpec("by_a_b", ("a", "b"))
>>> keys = compile_range("items", spec, IndexRangeBuilder().eq("a", 1).gt("b", 2).lte("b", 9))
>>> keys.describe()
'q.eq("a", 1).gt("b", 2).lte("b", 9)'
>>> from zapnb.keys import encode_key
>>> keys.contains(encode_key([1, 5, 1.0, "id"])), keys.contains(encode_key([1, 2, 1.0, "id"]))
(True, False)
>>> compile_range("items", spec, IndexRangeBuilder().eq("b", 1))
Traceback (most recent call last):
...
zapnb.errors.InvalidIndexRangeError: Tried to query index items.by_a_b but the query didn't use the index ...
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from zapnb.documents import query_value
from zapnb.errors import InvalidIndexRangeError, InvalidQueryError, InvalidValueError, ZapError
from zapnb.jsonvalues import encode_json
from zapnb.keys import encode_key, encode_value, prefix_end
from zapnb.validators import (
    AnyValidator,
    ArrayValidator,
    Float64Validator,
    Int64Validator,
    LiteralValidator,
    NullValidator,
    ObjectValidator,
    OptionalValidator,
    RecordValidator,
    UnionValidator,
    Validator,
    validators_at,
)
from zapnb.values import MISSING

if TYPE_CHECKING:
    from zapnb.index import IndexSpec
    from zapnb.schema import TableDefinition

__all__ = [
    "Bound",
    "IndexRangeBuilder",
    "KeyRange",
    "RangeOp",
    "coerce_value",
    "compile_range",
    "field_validators",
    "index_fields",
    "literal_coercer",
    "show_value",
]

RangeOp = Literal["eq", "gt", "gte", "lt", "lte"]
Coercer = Callable[[str, Any], Any]

_COMPARATORS: Final[Mapping[str, str]] = {"eq": "==", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_FIX: Final = (
    "Compare the index's fields in order: eq() on the first ones, then at most one lower bound (gt/gte) and "
    "one upper bound (lt/lte) on the next; filter other fields with .filter(...), or define an index whose "
    "fields come in the order you compare them."
)


def show_value(value: Any) -> str:
    """A value as messages show it: zapnb JSON (``undefined`` for :data:`~zapnb.MISSING`), at most 100 chars.

    Examples
    --------
    >>> show_value("a"), show_value(1.0), show_value(MISSING)
    ('"a"', '1.0', 'undefined')
    """
    if value is MISSING:
        return "undefined"
    try:
        text = encode_json(value)
    except ZapError:
        text = reprlib.repr(value)  # bounded: a value nested hundreds deep would overflow repr()
    return text if len(text) <= 100 else text[:97] + "..."


def _quoted(field: str) -> str:
    return json.dumps(field)


@dataclass(frozen=True, slots=True)
class IndexRangeBuilder:
    """The ``q`` of ``.with_index(name, lambda q: ...)``: each method adds one comparison to the range.

    Examples
    --------
    >>> IndexRangeBuilder().eq("userId", "u1").gte("createdAt", 10)
    q.eq("userId", "u1").gte("createdAt", 10)
    """

    expressions: tuple[tuple[RangeOp, str, Any], ...] = ()

    def eq(self, field: str, value: Any) -> IndexRangeBuilder:
        """Documents whose ``field`` equals ``value`` (``None``: null; ``zapnb.MISSING``: no such field)."""
        return self._add("eq", field, value)

    def gt(self, field: str, value: Any) -> IndexRangeBuilder:
        """Documents whose ``field`` sorts after ``value``."""
        return self._add("gt", field, value)

    def gte(self, field: str, value: Any) -> IndexRangeBuilder:
        """Documents whose ``field`` sorts at or after ``value``."""
        return self._add("gte", field, value)

    def lt(self, field: str, value: Any) -> IndexRangeBuilder:
        """Documents whose ``field`` sorts before ``value``."""
        return self._add("lt", field, value)

    def lte(self, field: str, value: Any) -> IndexRangeBuilder:
        """Documents whose ``field`` sorts at or before ``value``."""
        return self._add("lte", field, value)

    def _add(self, op: RangeOp, field: str, value: Any) -> IndexRangeBuilder:
        if not isinstance(field, str) or not field:
            raise InvalidQueryError(
                f'q.{op}() takes a field name such as "userId" first, not {field!r}.', method=op
            )
        return IndexRangeBuilder((*self.expressions, (op, field, value)))

    def __repr__(self) -> str:
        return "q" + "".join(f".{op}({_quoted(f)}, {show_value(v)})" for op, f, v in self.expressions)


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of the bounded field's interval: its value and whether the value itself is included."""

    value: Any
    inclusive: bool


@dataclass(frozen=True, slots=True)
class KeyRange:
    """A checked index range and its keys ``[lo, hi)`` (``None``: unbounded).

    Attributes
    ----------
    index:
        ``table.index``.
    equalities:
        ``(field, value)`` for each ``eq``, in index order, values after the int/float rule.
    field:
        The bounded field, or ``None``.
    lower, upper:
        The bounds on ``field``.
    lo, hi:
        The index keys of the range.
    """

    index: str
    equalities: tuple[tuple[str, Any], ...]
    field: str | None
    lower: Bound | None
    upper: Bound | None
    lo: bytes | None
    hi: bytes | None

    @property
    def is_full(self) -> bool:
        """Whether the range is the whole index."""
        return self.lo is None and self.hi is None

    def contains(self, key: bytes) -> bool:
        """Whether an index key falls in the range."""
        return (self.lo is None or key >= self.lo) and (self.hi is None or key < self.hi)

    def describe(self) -> str:
        """The range in builder syntax with its values as compared (``"all"`` for the whole index)."""
        parts = [f".eq({_quoted(f)}, {show_value(v)})" for f, v in self.equalities]
        for name, bound in (("gt", self.lower), ("lt", self.upper)):
            if bound is not None:
                parts.append(f".{name}{'e' if bound.inclusive else ''}({_quoted(str(self.field))}, ")
                parts[-1] += f"{show_value(bound.value)})"
        return "q" + "".join(parts) if parts else "all"


def index_fields(spec: IndexSpec) -> tuple[str, ...]:
    """The fields a range on ``spec`` may compare, in index order (``_creationTime`` then ``_id`` last).

    Examples
    --------
    >>> from zapnb.index import IndexSpec
    >>> index_fields(IndexSpec("by_a", ("a",))), index_fields(IndexSpec.by_id())
    (('a', '_creationTime', '_id'), ('_id',))
    """
    if spec.kind == "by_id":
        return ("_id",)
    return (*spec.fields, "_creationTime", "_id")


def _shown_fields(spec: IndexSpec) -> tuple[str, ...]:
    """The index fields as Convex prints them: without the trailing ``_id`` (except for ``by_id``)."""
    fields = index_fields(spec)
    return fields if spec.kind == "by_id" else fields[:-1]


# --- the int/float rule -------------------------------------------------------------------------------------


def _flatten(validators: Sequence[Validator]) -> list[Validator]:
    out: list[Validator] = []
    for validator in validators:
        if isinstance(validator, OptionalValidator):
            out.extend(_flatten([validator.inner]))
        elif isinstance(validator, UnionValidator):
            out.extend(_flatten(validator.members))
        else:
            out.append(validator)
    return out


def _is_float(validator: Validator) -> bool:
    return isinstance(validator, Float64Validator) or (
        isinstance(validator, LiteralValidator) and type(validator.value) is float
    )


def _is_numeric(validator: Validator) -> bool:
    """Whether ``validator`` holds numbers (``v.any()`` included): those decide what an ``int`` stands for."""
    if isinstance(validator, LiteralValidator):
        return type(validator.value) is int or type(validator.value) is float
    return isinstance(validator, Float64Validator | Int64Validator | AnyValidator)


def coerce_value(value: Any, validators: Sequence[Validator]) -> Any:
    """``value`` with each ``int`` taken as a float where every numeric validator it meets is a float one
    (where the field would store that ``int`` as a float).

    Arrays and objects are followed into their elements and fields; ``v.any()`` (or no validator at all)
    leaves ints alone.

    Raises
    ------
    InvalidValueError
        If an ``int`` that would be taken as a float is outside int64: no document holds such an int, and
        inserts refuse it, so it is not rounded into a float that one could hold.

    Examples
    --------
    >>> from zapnb import v
    >>> coerce_value(1, [v.number()]), coerce_value(1, [v.any()]), coerce_value(1, [v.number(), v.null()])
    (1.0, 1, 1.0)
    >>> coerce_value([1, 2], [v.array(v.float64())]), coerce_value({"n": 1}, [v.object({"n": v.number()})])
    ([1.0, 2.0], {'n': 1.0})
    >>> coerce_value(1, [v.number(), v.string()]), coerce_value(1, [v.number(), v.int64()])
    (1.0, 1)
    """
    leaves = [leaf for leaf in _flatten(validators) if not isinstance(leaf, NullValidator)]
    if not leaves:
        return value
    if type(value) is int:
        numeric = [leaf for leaf in leaves if _is_numeric(leaf)]
        if not numeric or not all(_is_float(leaf) for leaf in numeric):
            return value
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise InvalidValueError(
                f"{value} is outside the int64 range -2**63 .. 2**63-1, so no document holds it; compare "
                "with a float instead",
                value=value,
            )
        return float(value)
    if isinstance(value, list | tuple):
        elements = [leaf.element for leaf in leaves if isinstance(leaf, ArrayValidator)]
        return [coerce_value(item, elements) for item in value] if elements else value
    if isinstance(value, dict):
        return {name: coerce_value(item, _field_validators(leaves, name)) for name, item in value.items()}
    return value


def _field_validators(leaves: list[Validator], name: str) -> list[Validator]:
    found: list[Validator] = []
    for leaf in leaves:
        if isinstance(leaf, ObjectValidator):
            child = leaf.field_validator(name)
            if child is not None:
                found.append(child)
        elif isinstance(leaf, RecordValidator):
            found.append(leaf.values)
    return found


def field_validators(definition: TableDefinition | None) -> Callable[[str], list[Validator]]:
    """The validators of a field path of a table with this definition (``None``: no schema), cached.

    ``_creationTime`` is a float64 in every table; ``_id`` and fields of a table without a schema have none.

    Examples
    --------
    >>> from zapnb import define_table, v
    >>> validators_of = field_validators(define_table({"n": v.optional(v.number())}))
    >>> validators_of("n"), validators_of("_creationTime"), field_validators(None)("n")
    ([v.number()], [v.number()], [])
    """
    number = Float64Validator("number")
    cache: dict[str, list[Validator]] = {}

    def validators_of(field: str) -> list[Validator]:
        found = cache.get(field)
        if found is None:
            if field == "_creationTime":
                found = [number]
            elif field == "_id" or definition is None:
                found = []
            else:
                found = _path_validators(definition.document, field)
            cache[field] = found
        return found

    return validators_of


def _path_validators(document: Validator, path: str) -> list[Validator]:
    """:func:`~zapnb.validators.validators_at`, also reaching into the values of ``v.record(...)``.

    Examples
    --------
    >>> from zapnb import v
    >>> _path_validators(v.object({"r": v.record(v.string(), v.object({"n": v.number()}))}), "r.k.n")
    [v.number()]
    """
    head, dot, name = path.rpartition(".")
    if not dot:
        return validators_at(document, path)
    found: list[Validator] = []
    for parent in _path_validators(document, head):
        if isinstance(parent, RecordValidator):
            found.extend(validators_at(parent.values, ""))  # any name: a record's values
        else:
            found.extend(validators_at(parent, name))
    return found


def literal_coercer(definition: TableDefinition | None) -> Coercer:
    """The int/float rule for the fields of a table with this definition (``None``: no schema).

    Examples
    --------
    >>> from zapnb import define_table, v
    >>> coerce = literal_coercer(define_table({"n": v.number(), "a": v.any()}))
    >>> coerce("n", 2), coerce("a", 2), coerce("_creationTime", 2), literal_coercer(None)("n", 2)
    (2.0, 2, 2.0, 2)
    """
    validators_of = field_validators(definition)

    def coerce(field: str, value: Any) -> Any:
        return coerce_value(value, validators_of(field))

    return coerce


# --- compiling a range --------------------------------------------------------------------------------------


def _error(
    spec_name: str, spec: IndexSpec, used: Sequence[str], field: str, reason: str, message: str
) -> InvalidIndexRangeError:
    return InvalidIndexRangeError(
        message,
        index=spec_name,
        index_fields=index_fields(spec),
        query_fields=tuple(used),
        field=field,
        reason=reason,
    )


def _already_defined(
    name: str, spec: IndexSpec, used: Sequence[str], kind: str, op: str, field: str, value: Any
) -> InvalidIndexRangeError:
    return _error(
        name,
        spec,
        used,
        field,
        "AlreadyDefinedBound",
        f"Already defined {kind} bound in index range. Can't add {_quoted(field)} {_COMPARATORS[op]} "
        f"{show_value(value)}. {_FIX}",
    )


@dataclass
class _Split:
    equalities: dict[str, Any]
    field: str | None = None
    lower: tuple[RangeOp, Any] | None = None
    upper: tuple[RangeOp, Any] | None = None


def _split(name: str, spec: IndexSpec, expressions: Sequence[tuple[RangeOp, str, Any]]) -> _Split:
    """Group the comparisons into equalities and one bounded field, as Convex's ``IndexRange::split``."""
    split = _Split({})
    seen: list[str] = []
    for op, field, value in expressions:
        seen.append(field)
        if op == "eq":
            if field in split.equalities:
                raise _already_defined(name, spec, seen, "equality", op, field, value)
            split.equalities[field] = value
            continue
        upper = op in ("lt", "lte")
        if (split.upper if upper else split.lower) is not None:
            raise _already_defined(name, spec, seen, "upper" if upper else "lower", op, field, value)
        if split.field is not None and split.field != field:
            raise _error(
                name,
                spec,
                seen,
                field,
                "BoundsOnMultipleFields",
                "Upper and lower bounds in `range` can only be applied to a single index field. This query "
                f"against index {name} attempted to set a range bound on both {_quoted(split.field)} and "
                f"{_quoted(field)}. Consider using `filter` instead. {_FIX}",
            )
        split.field = field
        if upper:
            split.upper = (op, value)
        else:
            split.lower = (op, value)
    if split.field is not None and split.field in split.equalities:
        value = split.equalities[split.field]
        raise _already_defined(name, spec, seen, "inequality", "eq", split.field, value)
    return split


def _check_order(name: str, spec: IndexSpec, split: _Split) -> list[str]:
    """The fields used, equalities in index order then the bounded field; raise unless they lead the index."""
    fields = index_fields(spec)
    rank = {field: i for i, field in enumerate(fields)}
    mentioned = [*split.equalities, *([split.field] if split.field is not None else [])]
    for field in mentioned:
        if field not in rank:
            raise _error(
                name,
                spec,
                mentioned,
                field,
                "FieldNotInIndex",
                f"The index range included a comparison with {_quoted(field)}, but {name} with fields "
                f"{json.dumps(list(_shown_fields(spec)))} doesn't index this field. {_FIX}",
            )
    used = sorted(split.equalities, key=rank.__getitem__)
    if split.field is not None:
        used.append(split.field)
    for position, field in enumerate(used):
        if field != fields[position]:
            raise _error(
                name,
                spec,
                used,
                field,
                "InvalidIndexRange",
                f"Tried to query index {name} but the query didn't use the index fields in order.\n"
                f"Index fields: {json.dumps(list(_shown_fields(spec)))}\nQuery fields: {json.dumps(used)}\n"
                f"First incorrect field: {_quoted(field)}\n{_FIX}",
            )
    return used


def compile_range(
    table: str,
    spec: IndexSpec,
    builder: IndexRangeBuilder,
    coerce: Coercer | None = None,
) -> KeyRange:
    """Check ``builder``'s comparisons against index ``spec`` of ``table`` and return the range's keys.

    ``coerce`` applies the int/float rule (see :func:`literal_coercer`); without it values are taken as given.

    Raises
    ------
    InvalidIndexRangeError
        If the comparisons break the range rule (see the module docstring).
    InvalidValueError
        If a value is not one a document can hold (:func:`zapnb.documents.query_value`): not a zapnb value,
        an int outside int64, a string with a lone surrogate, a value that contains itself or nests more
        than 16 levels (:class:`~zapnb.errors.DocumentLimitError`), a bad field name. The message names the
        field compared; ``path`` starts with it.
    """
    name = f"{table}.{spec.name}"
    split = _split(name, spec, builder.expressions)
    used = _check_order(name, spec, split)
    convert = _checked(name, coerce if coerce is not None else _as_given)
    equalities = tuple(
        (field, convert(field, split.equalities[field])) for field in used[: len(split.equalities)]
    )
    prefix = encode_key([value for _, value in equalities])
    lower = upper = None
    lo: bytes | None = prefix
    hi = prefix_end(prefix)
    if split.field is not None:
        if split.lower is not None:
            lower = Bound(convert(split.field, split.lower[1]), split.lower[0] == "gte")
            at = prefix + encode_value(lower.value)
            lo = at if lower.inclusive else prefix_end(at)
        if split.upper is not None:
            upper = Bound(convert(split.field, split.upper[1]), split.upper[0] == "lte")
            at = prefix + encode_value(upper.value)
            hi = prefix_end(at) if upper.inclusive else at
    return KeyRange(name, equalities, split.field, lower, upper, lo or None, hi)


def _as_given(field: str, value: Any) -> Any:
    return value


def _checked(name: str, coerce: Coercer) -> Coercer:
    """``coerce`` after the checks a stored value passes (:func:`zapnb.documents.query_value`): a literal
    that no document can hold (an int outside int64, a cycle, nesting over 16, a bad field name) is refused
    with the error an insert gets, its path starting at the field compared."""

    def convert(field: str, value: Any) -> Any:
        try:
            return coerce(field, query_value(value, f".{field}"))
        except InvalidValueError as err:
            err.args = (
                f"In the index range on {name}, {_quoted(field)} is compared with a value no "
                f"document can hold: {err}",
            )
            raise

    return convert

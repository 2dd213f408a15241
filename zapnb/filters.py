"""Filter expressions: ``.filter(lambda q: q.and_(q.eq(q.field("role"), "USER"), q.gt(q.field("n"), 1)))``.

Responsibilities:

- :class:`FilterBuilder`, the ``q`` a filter function receives, and the expression values it builds
  (:class:`Field`, :class:`Literal`, :class:`Compare`, :class:`Arithmetic`, :class:`Negate`,
  :class:`Logical`, :class:`Not`), each printing as the text that builds it (part of a query's fingerprint);
- :func:`compile_filter`: an expression as one Python closure over a document, made once per query.

Semantics, as Convex evaluates filters:

- ``q.field("a.b")`` reads ``doc["a"]["b"]``; a missing field (or a step through a non-object) is
  :data:`~zapnb.MISSING`, which sorts before null.
- ``eq neq lt lte gt gte`` compare with zapnb's total order (:func:`zapnb.values.compare`): across kinds they
  never raise, ``1 != 1.0``, ``-0.0 != 0.0``, ``nan == nan``.
- ``and_ or_ not_`` take booleans (``and_()`` is true, ``or_()`` false; both stop at the first operand that
  decides); a filter keeps a document when its expression is ``True``. Any other value there raises
  :class:`~zapnb.errors.FilterExpressionError`, as does arithmetic on anything but two int64 or two float64.
- int64 arithmetic is checked, as in Convex (built with overflow checks): a result outside int64, ``x / 0``,
  ``x % 0`` and ``-(2**63)`` negated raise; division truncates toward zero and ``mod`` takes the sign of the
  dividend (``-7 / 2 == -3``, ``-7 % 2 == -1``).
- float64 arithmetic is IEEE 754: ``x / 0.0`` is an infinity, ``0.0 / 0.0`` NaN, ``mod`` is C's ``fmod``.
- Where every numeric validator of a field is ``v.number()``/``v.float64()`` (so the field stores an ``int``
  as a float), an ``int`` literal compared with it (or combined with it in arithmetic) is taken as a float
  (see :func:`zapnb.ranges.coerce_value`).
- Python's own operators build nothing: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` and truth tests (``and``,
  ``or``, ``not``, ``if``) on an expression raise :class:`~zapnb.errors.FilterExpressionError`, since Python
  would decide them once, when the filter is built, and not for each document.

Examples
--------
>>> q = FilterBuilder()
>>> expr = q.and_(q.eq(q.field("role"), "USER"), q.gt(q.add(q.field("n"), 1), 2))
>>> expr
and_(eq(field("role"), "USER"), gt(add(field("n"), 1), 2))
>>> keep = compile_filter(expr)
>>> keep({"role": "USER", "n": 5}), keep({"role": "USER", "n": 1}), keep({"n": 5})
(True, False, False)
>>> compile_filter(q.eq(q.add(q.field("n"), 1.5), 0.0))({"n": 1})
Traceback (most recent call last):
...
zapnb.errors.FilterExpressionError: Cannot add 1 (type int64) and 1.5 (type float64): arithmetic takes ...
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn

from zapnb.errors import FilterExpressionError, ZapError
from zapnb.keys import encode_value
from zapnb.ranges import coerce_value, show_value
from zapnb.validators import Validator
from zapnb.values import MISSING, compare, kind_of, lookup_path, values_equal

__all__ = [
    "Arithmetic",
    "Compare",
    "Constant",
    "Expr",
    "Field",
    "FilterBuilder",
    "Logical",
    "Negate",
    "Not",
    "as_expr",
    "coerce_literals",
    "compile_filter",
]

CompareOp = Literal["eq", "neq", "lt", "lte", "gt", "gte"]
ArithmeticOp = Literal["add", "sub", "mul", "div", "mod"]
Document = Mapping[str, Any]
Evaluate = Callable[[Document], Any]
ValidatorsOf = Callable[[str], Sequence[Validator]]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_KIND_NAMES: Final = ("missing", "null", "int64", "float64", "boolean", "string", "bytes", "array", "object")
_VERBS: Final[Mapping[str, str]] = {
    "add": "add",
    "sub": "subtract",
    "mul": "multiply",
    "div": "divide",
    "mod": "mod",
}


# --- expressions --------------------------------------------------------------------------------------------


#: The builder method for each Python comparison operator, for the error that points to it.
_OPERATOR_METHODS: Final[Mapping[str, str]] = {
    "==": "eq",
    "!=": "neq",
    "<": "lt",
    "<=": "lte",
    ">": "gt",
    ">=": "gte",
}


class Expr:
    """A filter expression; build one with :class:`FilterBuilder`. Immutable; prints as its source.

    Python's own operators do not build expressions: ``==``, ``!=``, ``<``... and truth tests (``and``,
    ``or``, ``not``, ``if``) raise :class:`~zapnb.errors.FilterExpressionError` rather than answer with a
    Python bool the filter would take as its result. Expressions hash by identity.

    Examples
    --------
    >>> q = FilterBuilder()
    >>> q.field("n") == 1
    Traceback (most recent call last):
    ...
    zapnb.errors.FilterExpressionError: Python evaluated field("n") == 1 itself, ...
    >>> q.eq(q.field("n"), 1) and q.eq(q.field("m"), 2)
    Traceback (most recent call last):
    ...
    zapnb.errors.FilterExpressionError: A filter expression has no Python truth value: ...
    """

    __slots__ = ()

    def __bool__(self) -> bool:
        raise FilterExpressionError(
            f"A filter expression has no Python truth value: `and`, `or`, `not` and `if` on {self!r} would "
            "be decided by Python, not by the filter. Combine expressions with q.and_(...), q.or_(...) and "
            'q.not_(...), and compare with q.eq(...), as in q.and_(q.eq(q.field("a"), 1), q.gt(q.field("b"), '
            "2)).",
            operation="bool",
        )

    def _operator(self, symbol: str, other: object) -> NoReturn:
        method = _OPERATOR_METHODS[symbol]
        shown = repr(other) if isinstance(other, Expr) else _literal_text(other)
        raise FilterExpressionError(
            f"Python evaluated {self!r} {symbol} {shown} itself, which a filter cannot use. Write "
            f'q.{method}(left, right) instead, as in q.{method}(q.field("n"), 1).',
            operation=method,
        )

    def __eq__(self, other: object) -> bool:
        return self._operator("==", other)

    def __ne__(self, other: object) -> bool:
        return self._operator("!=", other)

    def __lt__(self, other: object) -> bool:
        return self._operator("<", other)

    def __le__(self, other: object) -> bool:
        return self._operator("<=", other)

    def __gt__(self, other: object) -> bool:
        return self._operator(">", other)

    def __ge__(self, other: object) -> bool:
        return self._operator(">=", other)

    __hash__ = object.__hash__


def _literal_text(value: object) -> str:
    """``value`` as a filter literal prints, or Python's repr when it is no zapnb value."""
    try:
        encode_value(value)
    except ZapError:
        return repr(value)
    return show_value(value)


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Field(Expr):
    """The value at a dotted field path of the document (``MISSING`` when absent)."""

    path: str

    def __repr__(self) -> str:
        return f"field({show_value(self.path)})"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Constant(Expr):
    """A constant zapnb value (``zapnb.MISSING`` included)."""

    value: Any

    def __repr__(self) -> str:
        return show_value(self.value) if self.value is not MISSING else "zapnb.MISSING"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Compare(Expr):
    """``left <op> right`` in the total order: a boolean."""

    op: CompareOp
    left: Expr
    right: Expr

    def __repr__(self) -> str:
        return f"{self.op}({self.left!r}, {self.right!r})"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Arithmetic(Expr):
    """``left <op> right`` on two int64 or two float64."""

    op: ArithmeticOp
    left: Expr
    right: Expr

    def __repr__(self) -> str:
        return f"{self.op}({self.left!r}, {self.right!r})"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Negate(Expr):
    """``-operand`` of an int64 or a float64."""

    operand: Expr

    def __repr__(self) -> str:
        return f"neg({self.operand!r})"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Logical(Expr):
    """``and_`` / ``or_`` of booleans."""

    op: Literal["and_", "or_"]
    operands: tuple[Expr, ...]

    def __repr__(self) -> str:
        return f"{self.op}({', '.join(map(repr, self.operands))})"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Not(Expr):
    """``not_`` of a boolean."""

    operand: Expr

    def __repr__(self) -> str:
        return f"not_({self.operand!r})"


def as_expr(value: Any, operation: str) -> Expr:
    """``value`` as an expression: an expression stays one, a zapnb value becomes a :class:`Constant`."""
    if isinstance(value, Expr):
        return value
    try:
        encode_value(value)
    except ZapError as err:
        raise FilterExpressionError(
            f'q.{operation}(...) takes expressions such as q.field("name") or zapnb values, not '
            f"{type(value).__name__} {reprlib.repr(value)}: {err}",
            operation=operation,
        ) from None
    return Constant(value)


class FilterBuilder:
    """The ``q`` of ``.filter(lambda q: ...)``: builds :class:`Expr` values. Arguments that are not
    expressions are taken as literal values.

    Examples
    --------
    >>> q = FilterBuilder()
    >>> q.or_(q.lt(q.field("a.b"), 0), q.not_(q.neq(q.field("c"), None)))
    or_(lt(field("a.b"), 0), not_(neq(field("c"), null)))
    """

    __slots__ = ()

    def field(self, path: str) -> Field:
        """The document's value at ``path`` (dots reach into objects)."""
        if not isinstance(path, str) or not path:
            raise FilterExpressionError(
                f'q.field(...) takes a field path such as "user.name", not {path!r}.', operation="field"
            )
        return Field(path)

    def _compare(self, op: CompareOp, left: Any, right: Any) -> Compare:
        return Compare(op, as_expr(left, op), as_expr(right, op))

    def eq(self, left: Any, right: Any) -> Compare:
        """``left == right``."""
        return self._compare("eq", left, right)

    def neq(self, left: Any, right: Any) -> Compare:
        """``left != right``."""
        return self._compare("neq", left, right)

    def lt(self, left: Any, right: Any) -> Compare:
        """``left < right``."""
        return self._compare("lt", left, right)

    def lte(self, left: Any, right: Any) -> Compare:
        """``left <= right``."""
        return self._compare("lte", left, right)

    def gt(self, left: Any, right: Any) -> Compare:
        """``left > right``."""
        return self._compare("gt", left, right)

    def gte(self, left: Any, right: Any) -> Compare:
        """``left >= right``."""
        return self._compare("gte", left, right)

    def _arithmetic(self, op: ArithmeticOp, left: Any, right: Any) -> Arithmetic:
        return Arithmetic(op, as_expr(left, op), as_expr(right, op))

    def add(self, left: Any, right: Any) -> Arithmetic:
        """``left + right``."""
        return self._arithmetic("add", left, right)

    def sub(self, left: Any, right: Any) -> Arithmetic:
        """``left - right``."""
        return self._arithmetic("sub", left, right)

    def mul(self, left: Any, right: Any) -> Arithmetic:
        """``left * right``."""
        return self._arithmetic("mul", left, right)

    def div(self, left: Any, right: Any) -> Arithmetic:
        """``left / right`` (int64: truncated toward zero)."""
        return self._arithmetic("div", left, right)

    def mod(self, left: Any, right: Any) -> Arithmetic:
        """``left % right`` (the sign of ``left``)."""
        return self._arithmetic("mod", left, right)

    def neg(self, operand: Any) -> Negate:
        """``-operand``."""
        return Negate(as_expr(operand, "neg"))

    def and_(self, *operands: Any) -> Logical:
        """True when every operand is (true for none)."""
        return Logical("and_", tuple(as_expr(x, "and_") for x in operands))

    def or_(self, *operands: Any) -> Logical:
        """True when some operand is (false for none)."""
        return Logical("or_", tuple(as_expr(x, "or_") for x in operands))

    def not_(self, operand: Any) -> Not:
        """The negation of a boolean."""
        return Not(as_expr(operand, "not_"))


# --- the int/float rule -------------------------------------------------------------------------------------


def _no_validators(path: str) -> Sequence[Validator]:
    return ()


def _is_float(expr: Expr, validators_of: ValidatorsOf) -> bool:
    """Whether ``expr`` reads a field whose validators only hold float64 (alone or in arithmetic)."""
    if isinstance(expr, Field):
        return type(coerce_value(0, validators_of(expr.path))) is float
    if isinstance(expr, Arithmetic):
        return _is_float(expr.left, validators_of) or _is_float(expr.right, validators_of)
    if isinstance(expr, Negate):
        return _is_float(expr.operand, validators_of)
    return False


def _coerced(expr: Expr, sibling: Expr, validators_of: ValidatorsOf) -> Expr:
    """A literal ``expr`` taken as its ``sibling`` holds it: ints become floats next to float-only values."""
    if not isinstance(expr, Constant):
        return expr
    if isinstance(sibling, Field):
        return Constant(coerce_value(expr.value, validators_of(sibling.path)))
    if type(expr.value) is int and _is_float(sibling, validators_of):
        return Constant(float(expr.value))
    return expr


def coerce_literals(expr: Expr, validators_of: ValidatorsOf) -> Expr:
    """``expr`` with the int/float rule applied to its literals.

    Examples
    --------
    >>> from zapnb import v
    >>> q = FilterBuilder()
    >>> coerce_literals(q.gt(q.add(q.field("n"), 1), 2), lambda path: [v.number()])
    gt(add(field("n"), 1.0), 2.0)
    """
    if isinstance(expr, Compare | Arithmetic):
        left = coerce_literals(expr.left, validators_of)
        right = coerce_literals(expr.right, validators_of)
        left, right = _coerced(left, right, validators_of), _coerced(right, left, validators_of)
        return (
            Compare(expr.op, left, right) if isinstance(expr, Compare) else Arithmetic(expr.op, left, right)
        )
    if isinstance(expr, Logical):
        return Logical(expr.op, tuple(coerce_literals(x, validators_of) for x in expr.operands))
    if isinstance(expr, Not):
        return Not(coerce_literals(expr.operand, validators_of))
    if isinstance(expr, Negate):
        return Negate(coerce_literals(expr.operand, validators_of))
    return expr


# --- evaluation ---------------------------------------------------------------------------------------------


def _kind_name(value: Any) -> str:
    return _KIND_NAMES[kind_of(value)]


def _shown(value: Any) -> str:
    return f"{show_value(value)} (type {_kind_name(value)})"


def _arithmetic_error(op: str, *values: Any, why: str = "") -> FilterExpressionError:
    if why:
        text = f"Cannot {_VERBS.get(op, op)} {' and '.join(map(_shown, values))}: {why}"
    else:
        text = (
            f"Cannot {_VERBS.get(op, op)} {' and '.join(map(_shown, values))}: arithmetic takes two int64 or "
            "two float64 values. Make both sides the same kind (write 1.0 for a float64), or compare instead."
        )
    return FilterExpressionError(text, operation=op, values=values)


def _checked(op: str, a: int, b: int, result: int) -> int:
    if INT64_MIN <= result <= INT64_MAX:
        return result
    raise _arithmetic_error(
        op, a, b, why="the result is outside int64. Use float64 values for large numbers."
    )


def _numbers(op: str, a: Any, b: Any) -> type:
    kind = type(a)
    if kind is type(b) and (kind is int or kind is float):
        return kind
    raise _arithmetic_error(op, a, b)


def _add(a: Any, b: Any) -> Any:
    return _checked("add", a, b, a + b) if _numbers("add", a, b) is int else a + b


def _sub(a: Any, b: Any) -> Any:
    return _checked("sub", a, b, a - b) if _numbers("sub", a, b) is int else a - b


def _mul(a: Any, b: Any) -> Any:
    return _checked("mul", a, b, a * b) if _numbers("mul", a, b) is int else a * b


def _ieee(op: str, a: float, b: float) -> float:
    import numpy as np

    with np.errstate(all="ignore"):
        return float(np.divide(a, b) if op == "div" else np.fmod(a, b))


def _div(a: Any, b: Any) -> Any:
    if _numbers("div", a, b) is float:
        return a / b if b != 0.0 else _ieee("div", a, b)
    if b == 0:
        raise _arithmetic_error("div", a, b, why="division by zero. Filter out zero divisors first.")
    quotient = abs(a) // abs(b)
    return _checked("div", a, b, quotient if (a < 0) == (b < 0) else -quotient)


def _mod(a: Any, b: Any) -> Any:
    if _numbers("mod", a, b) is float:
        return math.fmod(a, b) if b != 0.0 and math.isfinite(a) else _ieee("mod", a, b)
    if b == 0:
        raise _arithmetic_error("mod", a, b, why="division by zero. Filter out zero divisors first.")
    if a == INT64_MIN and b == -1:
        raise _arithmetic_error("mod", a, b, why="the result is outside int64.")
    remainder = abs(a) % abs(b)
    return -remainder if a < 0 else remainder


def _neg(a: Any) -> Any:
    kind = type(a)
    if kind is float:
        return -a
    if kind is int:
        if a == INT64_MIN:
            raise _arithmetic_error("neg", a, why="the result is outside int64.")
        return -a
    raise FilterExpressionError(
        f"Cannot negate {_shown(a)}: neg() takes an int64 or a float64.", operation="neg", values=(a,)
    )


_ARITHMETIC: Final[Mapping[str, Callable[[Any, Any], Any]]] = {
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "mod": _mod,
}


def _boolean(value: Any, operation: str) -> bool:
    if value is True or value is False:
        return value
    raise FilterExpressionError(
        f"{operation}() needs a boolean, but got {_shown(value)}. Compare values with q.eq, q.gt... to get "
        "booleans.",
        operation=operation,
        values=(value,),
    )


def _field_getter(path: str) -> Evaluate:
    parts = path.split(".")
    if len(parts) == 1:
        name = parts[0]
        return lambda doc: doc.get(name, MISSING)

    return lambda doc: lookup_path(doc, parts)


def _compare_closure(op: CompareOp, left: Evaluate, right: Evaluate) -> Evaluate:
    if op == "eq":
        return lambda doc: values_equal(left(doc), right(doc))
    if op == "neq":
        return lambda doc: not values_equal(left(doc), right(doc))
    if op == "lt":
        return lambda doc: compare(left(doc), right(doc)) < 0
    if op == "lte":
        return lambda doc: compare(left(doc), right(doc)) <= 0
    if op == "gt":
        return lambda doc: compare(left(doc), right(doc)) > 0
    return lambda doc: compare(left(doc), right(doc)) >= 0


def _logical(op: str, parts: list[Evaluate]) -> Evaluate:
    stop = op == "or_"

    def evaluate(doc: Document) -> bool:
        for part in parts:
            if _boolean(part(doc), op) is stop:
                return stop
        return not stop

    return evaluate


def _closure(expr: Expr) -> Evaluate:
    if isinstance(expr, Field):
        return _field_getter(expr.path)
    if isinstance(expr, Constant):
        constant = expr.value
        return lambda doc: constant
    if isinstance(expr, Compare):
        return _compare_closure(expr.op, _closure(expr.left), _closure(expr.right))
    if isinstance(expr, Arithmetic):
        apply, left, right = _ARITHMETIC[expr.op], _closure(expr.left), _closure(expr.right)
        return lambda doc: apply(left(doc), right(doc))
    if isinstance(expr, Negate):
        operand = _closure(expr.operand)
        return lambda doc: _neg(operand(doc))
    if isinstance(expr, Logical):
        return _logical(expr.op, [_closure(x) for x in expr.operands])
    if isinstance(expr, Not):
        inner = _closure(expr.operand)
        return lambda doc: not _boolean(inner(doc), "not_")
    raise FilterExpressionError(f"{expr!r} is not a filter expression.", operation="filter")


def compile_filter(expr: Expr, validators_of: ValidatorsOf | None = None) -> Callable[[Document], bool]:
    """One closure that tells whether a document passes ``expr``.

    ``validators_of`` gives a field path's validators, for the int/float rule (``None``: no schema).

    Raises
    ------
    FilterExpressionError
        When called, if the expression is not a boolean or an operation fails (see the module docstring).
    """
    evaluate = _closure(coerce_literals(expr, validators_of or _no_validators))

    def keep(doc: Document) -> bool:
        return _boolean(evaluate(doc), "filter")

    return keep

"""The base of every validator: checking a value, and turning a failure into Convex's error message.

:class:`Validator` is what every kind in :mod:`zapnb.validator_kinds` derives from: ``validate`` checks and
normalizes a value, ``describe`` prints the source text that builds the validator, ``polars_dtype`` names the
dtype of its column and ``to_json`` describes it for storage. A kind implements ``_check(value, ids)``,
which returns the normalized value or raises the internal :class:`_Mismatch`; containers add path segments
to it while it unwinds, and ``validate`` turns it into a :class:`~zapnb.SchemaValidationError` with
Convex's wording.

:class:`IdResolver` (or :class:`TableNumbers` over a plain mapping) gives ``v.id("t")`` the table numbers it
needs to check the table an ID belongs to.

Examples
--------
>>> from zapnb import v
>>> v.object({"tags": v.array(v.string())}).validate({"tags": ["a", 1]}, path=".args")
Traceback (most recent call last):
...
zapnb.errors.SchemaValidationError: Value does not match validator.
Path: .args.tags[1]
Value: 1
Validator: v.string()
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Protocol, TypeAlias

from zapnb.errors import SchemaValidationError, ZapError
from zapnb.ids import Id

if TYPE_CHECKING:
    import polars as pl

__all__ = ["IdResolver", "TableNumbers", "Validator"]

_MAX_SHOWN: Final = 1000  # characters of a value shown in an error message
_SURROGATE: Final = re.compile("[\ud800-\udfff]")

Cause: TypeAlias = Literal["no_match", "missing_field", "extra_field", "wrong_table"]


class IdResolver(Protocol):
    """What ``v.id("t")`` needs to check the table encoded in an ID: table numbers and names both ways.

    Pass one as ``ids=`` to :meth:`Validator.validate`; a plain ``Mapping[str, int]`` from table name to
    table number is wrapped in :class:`TableNumbers`.
    """

    def table_number(self, table: str) -> int | None:
        """The number of ``table``, or ``None`` if it has none yet."""

    def table_name(self, number: int) -> str | None:
        """The name of table number ``number``, or ``None`` if no table has it."""


@dataclass(frozen=True, slots=True)
class TableNumbers:
    """An :class:`IdResolver` over a mapping from table name to table number.

    Examples
    --------
    >>> numbers = TableNumbers({"projects": 10001, "messages": 10002})
    >>> numbers.table_number("messages"), numbers.table_name(10001), numbers.table_name(7)
    (10002, 'projects', None)
    """

    numbers: Mapping[str, int]

    def table_number(self, table: str) -> int | None:
        """The number of ``table``, or ``None``."""
        return self.numbers.get(table)

    def table_name(self, number: int) -> str | None:
        """The name of table number ``number``, or ``None``."""
        return next((name for name, n in self.numbers.items() if n == number), None)


def _resolver(ids: IdResolver | Mapping[str, int] | None) -> IdResolver | None:
    if ids is None or hasattr(ids, "table_name"):
        return ids  # type: ignore[return-value]
    return TableNumbers(ids)


# --- failures and their messages ----------------------------------------------------------------------------


class _Mismatch(Exception):  # noqa: N818 (internal control flow, never escapes zapnb)
    """Internal: raised where a value fails; containers add path segments while it unwinds."""

    def __init__(self, cause: Cause, value: Any, validator: Validator, detail: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.value = value
        self.validator = validator
        self.detail = detail  # the field name, or the table an ID belongs to
        self.segments: list[str] = []


def _show(value: Any) -> str:
    """A value as zapnb JSON text for messages (Python repr for what JSON cannot hold), cut when long."""
    from zapnb.jsonvalues import encode_json

    try:
        text = encode_json(value)
    except (ZapError, TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) > _MAX_SHOWN:
        text = f"{text[:_MAX_SHOWN]}... ({len(text)} characters)"
    return text if _is_unicode(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _cause_message(m: _Mismatch, path: str) -> str:
    where = f"\nPath: {path}" if path else ""
    if m.cause == "missing_field":
        return (
            f"Object is missing the required field `{m.detail}`. Consider wrapping the field validator in "
            f"`v.optional(...)` if this is expected.{where}\nObject: {_show(m.value)}\n"
            f"Validator: {m.validator}"
        )
    if m.cause == "extra_field":
        return (
            f"Object contains extra field `{m.detail}` that is not in the validator.{where}\n"
            f"Object: {_show(m.value)}\nValidator: {m.validator}"
        )
    if m.cause == "wrong_table":
        return (
            f'Found ID "{m.value}" from table `{m.detail}`, which does not match the table name in '
            f"validator `{m.validator}`.{where}"
        )
    return f"Value does not match validator.{where}\nValue: {_show(m.value)}\nValidator: {m.validator}"


def _error(m: _Mismatch, path: str, table: str | None) -> SchemaValidationError:
    full_path = path + "".join(reversed(m.segments))
    message = _cause_message(m, full_path)
    if table is not None:
        message = (
            f'Failed to insert or update a document in table "{table}" because it does not match the '
            f"schema: {message}"
        )
    return SchemaValidationError(
        message, table=table, path=full_path, value=m.value, validator=m.validator.describe()
    )


# --- the base class -----------------------------------------------------------------------------------------


class Validator:
    """Base of all validators. Build them with :data:`zapnb.v`; they are immutable and compare by value."""

    __slots__ = ()
    type_name: ClassVar[str]
    _dtype: ClassVar[str] = "String"  # the name of the Polars dtype class of the column

    def validate(
        self,
        value: Any,
        *,
        path: str = "",
        ids: IdResolver | Mapping[str, int] | None = None,
        table: str | None = None,
    ) -> Any:
        """Check ``value`` and return it normalized, or raise :class:`~zapnb.SchemaValidationError`.

        Parameters
        ----------
        value:
            The value to check.
        path:
            Where the value sits (``.field``), put in front of the path of the failing part.
        ids:
            Table numbers, so ``v.id("t")`` can check the table an ID belongs to. Without them, an ID must
            still decode, and a :class:`zapnb.Id` labelled with another table is refused.
        table:
            The table written to: the error message then says which table refused the document.

        Examples
        --------
        >>> from zapnb import v
        >>> v.array(v.number()).validate((1, 2.5))
        [1.0, 2.5]
        >>> v.int64().validate(True)
        Traceback (most recent call last):
        ...
        zapnb.errors.SchemaValidationError: Value does not match validator.
        Value: true
        Validator: v.int64()
        """
        try:
            return self._check(value, _resolver(ids))
        except _Mismatch as m:
            raise _error(m, path, table) from None

    _check: Callable[[Any, IdResolver | None], Any]
    """Each kind's check: ``value`` normalized, or :class:`_Mismatch` raised (every subclass defines it)."""

    def describe(self) -> str:
        """The source text that builds this validator, as Convex prints validators.

        Examples
        --------
        >>> from zapnb import v
        >>> v.record(v.string(), v.nullable(v.id("users"))).describe()
        'v.record(v.string(), v.union(v.id("users"), v.null()))'
        """
        return f"v.{self.type_name}()"

    def __repr__(self) -> str:
        return self.describe()

    def __str__(self) -> str:
        return self.describe()

    def polars_dtype(self) -> pl.DataType:
        """The Polars dtype of this validator's column in typed frames.

        Values with no single Arrow type (``v.any()``, records, unions mixing kinds) are a ``String``
        column of zapnb JSON text (see :meth:`stores_json`).

        Examples
        --------
        >>> from zapnb import v
        >>> v.nullable(v.union(v.literal("a"), v.literal("b"))).polars_dtype()
        Enum(categories=['a', 'b'])
        >>> v.object({"n": v.int64(), "tags": v.array(v.string())}).polars_dtype()
        Struct({'n': Int64, 'tags': List(String)})
        """
        import polars as pl

        dtype: pl.DataType = getattr(pl, self._dtype)()
        return dtype

    def stores_json(self) -> bool:
        """Whether this validator's column holds zapnb JSON text rather than native values.

        Examples
        --------
        >>> from zapnb import v
        >>> v.any().stores_json(), v.string().stores_json(), v.union(v.int64(), v.string()).stores_json()
        (True, False, True)
        """
        return False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description; :func:`zapnb.validators.validator_from_json` reads it back.

        Examples
        --------
        >>> from zapnb import v
        >>> v.array(v.id("users")).to_json()
        {'type': 'array', 'value': {'type': 'id', 'tableName': 'users'}}
        """
        return {"type": self.type_name}

    def validate_column(
        self,
        column: Any,
        *,
        path: str = "",
        ids: IdResolver | Mapping[str, int] | None = None,
        table: str | None = None,
        optional: bool = False,
    ) -> pl.Series:
        """Check a whole column (a Polars Series or an Arrow array) and return it normalized and typed.

        Columns whose dtype already fits (strings for ``v.string()``, integers or floats for ``v.number()``,
        strings within the literals of an enum...) are checked with vectorized Polars expressions; anything
        else is checked value by value. A null entry is the value ``None``, or, with ``optional=True``, a
        missing value (an optional field). The result has dtype :meth:`polars_dtype`. On the first bad row
        ``i`` it raises :class:`~zapnb.SchemaValidationError` with path ``[i]`` + ``path``. For
        ``v.optional(x)`` null entries are always missing values. See :func:`zapnb.columns.validate_column`.

        Examples
        --------
        >>> import polars as pl
        >>> from zapnb import v
        >>> v.number().validate_column(pl.Series("n", [1, 2])).to_list()
        [1.0, 2.0]
        >>> v.union(v.literal("A"), v.literal("B")).validate_column(pl.Series(["A", "C"]), path=".k")
        Traceback (most recent call last):
        ...
        zapnb.errors.SchemaValidationError: Value does not match validator.
        Path: [1].k
        Value: "C"
        Validator: v.union(v.literal("A"), v.literal("B"))
        """
        from zapnb.columns import validate_column

        return validate_column(self, column, path=path, ids=ids, table=table, optional=optional)


# --- strings and numbers, as every kind sees them -----------------------------------------------------------


def _is_unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode: no lone surrogates."""
    return text.isascii() or _SURROGATE.search(text) is None


def _plain_str(value: str) -> str:
    return value if type(value) is str or isinstance(value, Id) else value[:]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

"""Query and mutation functions: ``@zapnb.query``, ``@zapnb.mutation``, and running them with ``db.run``.

Responsibilities:

- declare a function: the decorators wrap a handler ``def handler(ctx, **args)`` into a :class:`Function`
  (its name, kind, ``args`` validators and handler), checking at once that the validators and the handler's
  parameters agree;
- the handler's context: ``ctx.db`` (a :class:`DatabaseReader` in a query, a :class:`DatabaseWriter` in a
  mutation) and ``ctx.auth`` (:class:`Auth`, the identity set with ``db.as_user(...)``).

Running them (``db.run``: arguments, retries, the run log, the guard against writes through the outer
database from a handler) is :mod:`zapnb.runner`.

The handler takes its arguments as keyword arguments: ``def send(ctx, *, body, author)``, where Convex
passes one object (``handler: async (ctx, args) => ...``). An optional argument (``v.optional(...)``) that
the caller leaves out is not passed, so give its parameter a default.

Examples
--------
>>> import tempfile, zapnb
>>> from zapnb import v
>>> @zapnb.mutation(args={"text": v.string()})
... def add(ctx, *, text):
...     return ctx.db.insert("notes", {"text": text})
>>> @zapnb.query
... def texts(ctx):
...     return sorted(note["text"] for note in ctx.db.query("notes"))
>>> with tempfile.TemporaryDirectory() as data, zapnb.connect(data) as db:
...     _ = db.run(add, text="hello")
...     db.run(texts)
['hello']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Concatenate, Final, Generic, Literal, ParamSpec, TypeVar, overload

from zapnb.auth import Auth, UserIdentity
from zapnb.errors import (
    FunctionDefinitionError,
    ReadOnlyError,
    SchemaDefinitionError,
)
from zapnb.monitoring import CountedQuery, RunCounts
from zapnb.transaction import Transaction
from zapnb.validator_base import Validator
from zapnb.validator_kinds import ObjectValidator, OptionalValidator

if TYPE_CHECKING:
    from zapnb.ids import Id

__all__ = [
    "MUTATION_ATTEMPTS",
    "Auth",
    "DatabaseReader",
    "DatabaseWriter",
    "Function",
    "FunctionKind",
    "MutationContext",
    "QueryContext",
    "UserIdentity",
    "mutation",
    "query",
]

#: How many times ``db.run`` runs a mutation whose commit conflicts before raising ``ConflictError``.
MUTATION_ATTEMPTS: Final = 8
#: The backoff before attempt ``n + 1`` is random, up to ``BACKOFF_SECONDS * 2 ** (n - 1)``, capped.
BACKOFF_SECONDS: Final = 0.004
BACKOFF_CAP_SECONDS: Final = 0.25
#: How long a retried mutation waits for its turn among this process's retries before going anyway.
RETRY_WAIT_SECONDS: Final = 1.0

FunctionKind = Literal["query", "mutation"]
P = ParamSpec("P")
R = TypeVar("R")
Document = dict[str, Any]


# --- contexts -----------------------------------------------------------------------------------------------


class DatabaseReader:
    """``ctx.db`` in a query: ``get``, ``query`` and ``normalize_id`` at one snapshot; writes raise.

    Every write method raises :class:`~zapnb.errors.ReadOnlyError`: move the write into a mutation.
    """

    __slots__ = ("_counts", "_function", "_tx")

    def __init__(self, tx: Transaction, function: str, counts: RunCounts) -> None:
        self._tx = tx
        self._function = function
        self._counts = counts

    def get(self, doc_id: str) -> Document | None:
        """The document with this ID, or ``None``."""
        doc = self._tx.get(doc_id)
        if doc is not None:
            self._counts.document(doc)
        return doc

    def query(self, table: str) -> CountedQuery:
        """A query of ``table`` at this snapshot (see ``db.query``); what it returns counts as read."""
        return CountedQuery(self._tx.query(table), self._counts)

    def normalize_id(self, table: str, text: str) -> Id | None:
        """``text`` as an ID of ``table``, or ``None`` if it is not one."""
        return self._tx.normalize_id(table, text)

    def insert(self, table: str, doc: Mapping[str, Any]) -> Id:
        """Refused in a query."""
        raise self._read_only("insert")

    def insert_many(self, table: str, rows: Iterable[Mapping[str, Any]]) -> list[Id]:
        """Refused in a query."""
        raise self._read_only("insert_many")

    def patch(self, doc_id: str, fields: Mapping[str, Any]) -> None:
        """Refused in a query."""
        raise self._read_only("patch")

    def replace(self, doc_id: str, doc: Mapping[str, Any]) -> None:
        """Refused in a query."""
        raise self._read_only("replace")

    def delete(self, doc_id: str) -> None:
        """Refused in a query."""
        raise self._read_only("delete")

    def _read_only(self, operation: str) -> ReadOnlyError:
        return ReadOnlyError(
            f"ctx.db.{operation}(...) is not allowed in query {self._function!r}: a query only reads the "
            "database. Write from a @zapnb.mutation instead, and run it with db.run(...).",
            function=self._function,
            operation=operation,
        )


class DatabaseWriter(DatabaseReader):
    """``ctx.db`` in a mutation: the reads of :class:`DatabaseReader` plus the writes of its transaction.

    Everything it writes commits together when the handler returns, and is discarded if it raises.
    """

    __slots__ = ()

    def insert(self, table: str, doc: Mapping[str, Any]) -> Id:
        """Insert a document; return its new ID."""
        return self._tx.insert(table, doc)

    def insert_many(self, table: str, rows: Iterable[Mapping[str, Any]]) -> list[Id]:
        """Insert several documents; return their IDs in order."""
        return self._tx.insert_many(table, rows)

    def patch(self, doc_id: str, fields: Mapping[str, Any]) -> None:
        """Shallow-merge ``fields`` into a document (``zapnb.UNSET`` removes a field)."""
        self._tx.patch(doc_id, fields)

    def replace(self, doc_id: str, doc: Mapping[str, Any]) -> None:
        """Replace a document's fields, keeping ``_id`` and ``_creationTime``."""
        self._tx.replace(doc_id, doc)

    def delete(self, doc_id: str) -> None:
        """Delete a document."""
        self._tx.delete(doc_id)


@dataclass(frozen=True, slots=True)
class QueryContext:
    """The ``ctx`` of a query: ``ctx.db`` reads, ``ctx.auth`` says who is calling."""

    db: DatabaseReader
    auth: Auth


@dataclass(frozen=True, slots=True)
class MutationContext:
    """A mutation's ``ctx``: ``ctx.db`` reads and writes in a transaction, ``ctx.auth`` as in a query."""

    db: DatabaseWriter
    auth: Auth


# --- declaring functions ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Function(Generic[P, R]):
    """A query or mutation: what ``@zapnb.query``/``@zapnb.mutation`` make and ``db.run`` runs.

    Calling it directly, ``fn(ctx, **args)``, calls the handler with no argument check and no transaction:
    handy in unit tests with a context of your own.

    Attributes
    ----------
    name:
        The name in the run log and in error messages (the handler's ``__name__`` unless given).
    kind:
        ``"query"`` or ``"mutation"``.
    args:
        The argument validators, or ``None`` for a function declared without them (arguments unchecked).
    handler:
        The decorated function.
    validator:
        ``v.object(args)``, which checks the arguments as one object (``None`` without ``args``).
    """

    name: str
    kind: FunctionKind
    args: Mapping[str, Validator] | None
    handler: Callable[Concatenate[Any, P], R]
    validator: ObjectValidator | None = field(repr=False)

    def __call__(self, ctx: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.handler(ctx, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<zapnb {self.kind} {self.name!r}>"


QueryHandler = Callable[Concatenate[QueryContext, P], R]
MutationHandler = Callable[Concatenate[MutationContext, P], R]


@overload
def query(handler: QueryHandler[P, R], /) -> Function[P, R]: ...
@overload
def query(
    *, args: Mapping[str, Validator] | None = None, name: str | None = None
) -> Callable[[QueryHandler[P, R]], Function[P, R]]: ...
def query(
    handler: Callable[..., Any] | None = None,
    /,
    *,
    args: Mapping[str, Validator] | None = None,
    name: str | None = None,
) -> Any:
    """Declare a query: a function that reads the database (``ctx.db`` refuses writes).

    Use it bare (``@zapnb.query``: any keyword arguments, unchecked) or with ``args`` (``@zapnb.query(args=
    {"limit": v.number()})``: every call is checked against these validators). ``name`` defaults to the
    handler's ``__name__``.

    Examples
    --------
    >>> import zapnb
    >>> from zapnb import v
    >>> @zapnb.query(args={"table": v.string()})
    ... def count(ctx, *, table):
    ...     return ctx.db.query(table).count()
    >>> count
    <zapnb query 'count'>
    """
    return _declare("query", handler, args, name)


@overload
def mutation(handler: MutationHandler[P, R], /) -> Function[P, R]: ...
@overload
def mutation(
    *, args: Mapping[str, Validator] | None = None, name: str | None = None
) -> Callable[[MutationHandler[P, R]], Function[P, R]]: ...
def mutation(
    handler: Callable[..., Any] | None = None,
    /,
    *,
    args: Mapping[str, Validator] | None = None,
    name: str | None = None,
) -> Any:
    """Declare a mutation: a function that reads and writes in one serializable transaction.

    ``db.run`` commits its writes all together when it returns, discards them all when it raises, and runs
    it again when another commit changed what it read (so it must not have side effects outside the
    database). Use it bare or with ``args``, as :func:`query`.

    Examples
    --------
    >>> import zapnb
    >>> from zapnb import v
    >>> @zapnb.mutation(args={"id": v.id("notes"), "text": v.string()})
    ... def rename(ctx, *, id, text):
    ...     ctx.db.patch(id, {"text": text})
    >>> rename.kind, sorted(rename.args)
    ('mutation', ['id', 'text'])
    """
    return _declare("mutation", handler, args, name)


def _declare(
    kind: FunctionKind,
    handler: Callable[..., Any] | None,
    args: Mapping[str, Validator] | None,
    name: str | None,
) -> Any:
    def wrap(function: Callable[..., Any]) -> Function[..., Any]:
        title: str = name or getattr(function, "__name__", None) or repr(function)
        validator = None if args is None else _args_validator(title, kind, args)
        _check_parameters(title, function, validator)
        frozen = None if args is None else MappingProxyType(dict(args))
        return Function(title, kind, frozen, function, validator)

    return wrap if handler is None else wrap(handler)


def _args_validator(name: str, kind: FunctionKind, args: Mapping[str, Validator]) -> ObjectValidator:
    from zapnb.validators import v

    try:
        return v.object(args)
    except SchemaDefinitionError as err:
        raise FunctionDefinitionError(
            f"The args of {kind} {name!r} are not validators: {err} Pass a dict from argument names to "
            'validators, as in args={"text": v.string()}.',
            function=name,
        ) from None


def _check_parameters(name: str, handler: Callable[..., Any], validator: ObjectValidator | None) -> None:
    """Refuse a handler that could never take the declared arguments (found at definition, not at run)."""
    if inspect.iscoroutinefunction(handler) or inspect.isasyncgenfunction(handler):
        raise FunctionDefinitionError(
            f"Function {name!r} cannot be defined: its handler is an async def, and zapnb runs functions "
            "synchronously (nothing would ever await it). Write it as a plain def, without async and await: "
            "ctx.db calls return their results directly.",
            function=name,
        )
    params = list(inspect.signature(handler).parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        raise _definition_error(name, "its handler must take the context as first parameter")
    rest = params[1:]
    if any(p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL) for p in rest):
        raise _definition_error(name, "its arguments are passed by name, so they cannot be positional-only")
    if validator is None:
        return
    takes_any = any(p.kind == p.VAR_KEYWORD for p in rest)
    named = {p.name: p for p in rest if p.kind != p.VAR_KEYWORD}
    declared = {arg: isinstance(kind, OptionalValidator) for arg, kind in validator.fields}
    for field_name, optional in declared.items():
        param = named.get(field_name)
        if param is None and not takes_any:
            raise _definition_error(
                name, f"args declares {field_name!r} but its handler has no such parameter"
            )
        if param is not None and optional and param.default is param.empty:
            raise _definition_error(name, f"the optional argument {field_name!r} needs a default value")
    for param in named.values():
        if param.name not in declared and param.default is param.empty:
            raise _definition_error(name, f"its handler requires {param.name!r}, which args does not declare")


def _definition_error(name: str, problem: str) -> FunctionDefinitionError:
    return FunctionDefinitionError(
        f"Function {name!r} cannot be defined: {problem}. Write the handler as def {name}(ctx, *, arg1, "
        "arg2=default, ...) with one parameter per entry of args (optional ones with a default).",
        function=name,
    )

"""Query and mutation functions: ``@zapnb.query``, ``@zapnb.mutation``, and running them with ``db.run``.

Responsibilities:

- declare a function: the decorators wrap a handler ``def handler(ctx, **args)`` into a :class:`Function`
  (its name, kind, ``args`` validators and handler), checking at once that the validators and the handler's
  parameters agree;
- run it (:class:`Runner`, behind ``db.run(fn, **args)``): check the arguments
  (:class:`~zapnb.ArgumentValidationError`), run a query read-only at one snapshot, run a mutation in a
  :class:`~zapnb.Transaction` and commit it, re-running it on a conflict with a short random backoff;
- hand the handler its context: ``ctx.db`` (a :class:`DatabaseReader` in a query, a :class:`DatabaseWriter`
  in a mutation) and ``ctx.auth`` (:class:`Auth`, the identity set with ``db.as_user(...)``);
- count what each run reads and writes, and record the run in the database's run log
  (:mod:`zapnb.monitoring`);
- mark the thread a handler runs on, so that writing through the outer database object from a handler
  (``db.insert``, ``db.run``, ``db.transaction()``...) is refused (:func:`refuse_inside_function`).

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

import contextlib
import inspect
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Concatenate, Final, Generic, Literal, ParamSpec, TypeVar, overload

from zapnb.auth import Auth, UserIdentity
from zapnb.errors import (
    ArgumentValidationError,
    ConflictError,
    FunctionDefinitionError,
    NestedWriteError,
    ReadOnlyError,
    SchemaDefinitionError,
    SchemaValidationError,
)
from zapnb.monitoring import MAX_MESSAGE, CountedQuery, Outcome, RunCounts, RunLog, RunRecord
from zapnb.transaction import Transaction
from zapnb.validator_base import Validator
from zapnb.validator_kinds import ObjectValidator, OptionalValidator

if TYPE_CHECKING:
    from zapnb.engine import Engine
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
    "Runner",
    "UserIdentity",
    "mutation",
    "query",
    "refuse_inside_function",
    "running_function",
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


# --- running ------------------------------------------------------------------------------------------------


class Runner:
    """Runs functions for one connection (``db.run``); shared by its ``as_user`` views.

    Responsibilities: check arguments, run each function in its context, retry conflicting mutations, and
    record every run in :attr:`runs`. A mutation's first attempt runs in parallel with everything; after a
    conflict, its further attempts in this process take turns (a re-entrant lock, waited for at most
    :data:`RETRY_WAIT_SECONDS`), so a hot document gets one retry at a time instead of a stampede.
    Processes still race each other, spread out by a short random backoff.
    """

    def __init__(self, engine: Engine, runs: RunLog | None = None) -> None:
        self.engine = engine
        self.runs = RunLog() if runs is None else runs
        self._retries = threading.RLock()

    def run(
        self,
        fn: Function[..., R],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        identity: UserIdentity | None,
    ) -> R:
        """Run ``fn`` with ``kwargs`` as ``db.run`` does, and record the run.

        Raises :class:`~zapnb.ArgumentValidationError` for arguments that do not match, the handler's own
        exception (after discarding every write), or :class:`~zapnb.ConflictError` once
        :data:`MUTATION_ATTEMPTS` attempts all conflicted; :class:`~zapnb.FunctionDefinitionError` for ``fn``
        not declared with ``@zapnb.query``/``@zapnb.mutation``; :class:`~zapnb.NestedWriteError` when called
        from inside a running handler on this thread (see :func:`refuse_inside_function`).
        """
        _check_declared(fn)
        refuse_inside_function("run")
        with self._recorded(fn) as counts:
            checked = self.checked_args(fn, args, kwargs)
            if fn.kind == "query":
                return _run_query(Transaction(self.engine), fn, checked, Auth(identity), counts)
            return self._run_mutation(fn, checked, Auth(identity), counts)

    def run_query_in(
        self, tx: Transaction, fn: Function[..., R], args: dict[str, Any], identity: UserIdentity | None
    ) -> R:
        """Run query ``fn`` with checked ``args`` in ``tx`` (its snapshot and read set) and record the run.

        Watched queries use this to re-run at a chosen snapshot and learn what the run read.
        """
        with self._recorded(fn) as counts:
            return _run_query(tx, fn, args, Auth(identity), counts)

    def checked_args(
        self, fn: Function[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``kwargs`` checked against ``fn``'s validators (:class:`~zapnb.ArgumentValidationError` if not)."""
        return _checked_args(self.engine, fn, args, kwargs)

    @contextlib.contextmanager
    def _recorded(self, fn: Function[..., Any]) -> Iterator[RunCounts]:
        started, clock, counts = time.time(), time.perf_counter(), RunCounts()
        outcome: Outcome = "success"
        failure: BaseException | None = None
        try:
            yield counts
        except BaseException as err:
            outcome, failure = ("conflict" if isinstance(err, ConflictError) else "error"), err
            raise
        finally:
            self.runs.append(_record(fn, started, time.perf_counter() - clock, counts, outcome, failure))

    def _run_mutation(self, fn: Function[..., R], args: dict[str, Any], auth: Auth, counts: RunCounts) -> R:
        for attempt in range(1, MUTATION_ATTEMPTS + 1):
            counts.attempts = attempt
            turn = attempt > 1 and self._retries.acquire(timeout=RETRY_WAIT_SECONDS)
            try:
                outcome = _attempt(self.engine, fn, args, auth, counts)
            finally:
                if turn:
                    self._retries.release()
            if not isinstance(outcome, _Conflicted):
                return outcome
            if attempt == MUTATION_ATTEMPTS:
                raise _gave_up(fn, attempt, outcome.error) from outcome.error
            time.sleep(random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2 ** (attempt - 1))))
        raise AssertionError("unreachable")


def _checked_args(
    engine: Engine, fn: Function[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    if args:
        raise ArgumentValidationError(
            f"ArgumentValidationError: {fn.kind} {fn.name!r} takes its arguments by name, not by position "
            f"(got {len(args)} positional). Call db.run({fn.name}, name=value, ...).",
            function=fn.name,
            path="",
            value=list(args),
            validator="" if fn.validator is None else fn.validator.describe(),
        )
    if fn.validator is None:
        return dict(kwargs)
    try:
        checked: dict[str, Any] = fn.validator.validate(dict(kwargs), ids=engine.snapshot().catalog.numbers)
    except SchemaValidationError as err:
        raise ArgumentValidationError(
            f"ArgumentValidationError: {err}\nCalled as db.run({fn.name}, ...): pass arguments that match "
            f"the args validators of {fn.kind} {fn.name!r}.",
            function=fn.name,
            path=err.path,
            value=err.value,
            validator=err.validator,
        ) from None
    return checked


def _run_query(
    tx: Transaction, fn: Function[..., R], args: dict[str, Any], auth: Auth, counts: RunCounts
) -> R:
    counts.attempts = 1
    try:
        return _call(fn, QueryContext(DatabaseReader(tx, fn.name, counts), auth), args)
    finally:
        tx.discard()


def _attempt(
    engine: Engine, fn: Function[..., R], args: dict[str, Any], auth: Auth, counts: RunCounts
) -> R | _Conflicted:
    """Run a mutation's handler once in a new transaction and commit it; a conflicting commit comes back."""
    tx = Transaction(engine)
    try:
        result = _call(fn, MutationContext(DatabaseWriter(tx, fn.name, counts), auth), args)
    except BaseException:
        tx.discard()
        raise
    try:
        tx.commit()
    except ConflictError as err:
        return _Conflicted(err)
    counts.wrote(tx)
    return result


def _call(fn: Function[..., R], ctx: QueryContext | MutationContext, args: dict[str, Any]) -> R:
    """Call ``fn``'s handler with this thread marked as running it; refuse an awaitable result."""
    outer, _running.function = running_function(), fn
    try:
        result = fn.handler(ctx, **args)
    finally:
        _running.function = outer
    if inspect.isawaitable(result) or inspect.isasyncgen(result):
        if inspect.iscoroutine(result):
            result.close()  # never started: closing it spares the "coroutine was never awaited" warning
        raise FunctionDefinitionError(
            f"{fn.kind.capitalize()} {fn.name!r} returned a {type(result).__name__}, which would have to be "
            "awaited, and zapnb runs functions synchronously (nothing in it ran). Write the handler as a "
            "plain def that returns its result, without async and await.",
            function=fn.name,
        )
    return result


def _check_declared(fn: object) -> None:
    if not isinstance(fn, Function):
        name = getattr(fn, "__name__", None) or repr(fn)
        raise FunctionDefinitionError(
            f"db.run() takes a function declared with @zapnb.query or @zapnb.mutation, not {fn!r}. Put "
            "@zapnb.query (it reads) or @zapnb.mutation (it writes) above its def handler(ctx, ...).",
            function=name,
        )


# --- the handler running on this thread ---------------------------------------------------------------------

_running = threading.local()
_ALONE: Final = "it would commit on its own, once per attempt when the mutation is re-run after a conflict, "
_INSTEAD: Final = {
    ("query", "run"): "a query is read-only and reads one snapshot. To reuse another query, call it "
    "directly with this context: other(ctx, **args)",
    ("query", "write"): "a query is read-only. Move the write into a @zapnb.mutation, where ctx.db writes",
    ("mutation", "run"): _ALONE + "and stay if it fails. Call the other function directly instead, "
    "other(ctx, **args), so its writes commit with this mutation",
    ("mutation", "write"): _ALONE + "and stay if it fails. Write with ctx.db (already a transaction), so "
    "the write commits with the mutation",
}


def running_function() -> Function[..., Any] | None:
    """The query or mutation whose handler is running on this thread (``None`` outside any)."""
    fn: Function[..., Any] | None = getattr(_running, "function", None)
    return fn


def refuse_inside_function(operation: str) -> None:
    """Raise :class:`~zapnb.NestedWriteError` if a handler is running on this thread.

    ``Database`` calls this first in its writing entry points (``insert``, ``insert_many``, ``patch``,
    ``replace``, ``delete``, ``run``, ``transaction``): called from a handler they would commit on their own,
    outside the function's transaction. Other threads are not affected.
    """
    fn = running_function()
    if fn is not None:
        call = "db.transaction()" if operation == "transaction" else f"db.{operation}(...)"
        instead = _INSTEAD[fn.kind, "run" if operation == "run" else "write"]
        raise NestedWriteError(
            f"{call} was called inside {fn.kind} {fn.name!r} through the database object instead of "
            f"ctx.db: {instead}.",
            operation=operation,
        )


@dataclass(frozen=True, slots=True)
class _Conflicted:
    """An attempt whose commit conflicted (kept apart from what a handler may return)."""

    error: ConflictError


def _gave_up(fn: Function[..., Any], attempts: int, err: ConflictError) -> ConflictError:
    where = "the schema" if err.table is None else f"table {err.table!r}"
    return ConflictError(
        f"Mutation {fn.name!r} conflicted with other commits {attempts} times in a row (the last time in "
        f"{where}) and was given up; nothing it wrote was committed. Run it again later, or make it read "
        "less of what other writers change (for example a narrower index range instead of a whole table).",
        attempts=attempts,
        table=err.table,
    )


def _record(
    fn: Function[..., Any],
    started: float,
    seconds: float,
    counts: RunCounts,
    outcome: Outcome,
    failure: BaseException | None,
) -> RunRecord:
    return RunRecord(
        function=fn.name,
        kind=fn.kind,
        started_at=started,
        duration_ms=seconds * 1000.0,
        documents_read=counts.documents_read,
        bytes_read=counts.bytes_read,
        documents_written=counts.documents_written,
        bytes_written=counts.bytes_written,
        outcome=outcome,
        attempts=counts.attempts,
        error_type=None if failure is None else type(failure).__name__,
        error_message=None if failure is None else str(failure)[:MAX_MESSAGE],
    )

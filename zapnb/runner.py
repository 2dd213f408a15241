"""Running query and mutation functions: ``db.run(fn, **args)``.

Responsibilities:

- check a run's arguments (:class:`~zapnb.ArgumentValidationError`), run a query read-only at one snapshot,
  run a mutation in a :class:`~zapnb.Transaction` and commit it, re-running it on a conflict with a short
  random backoff (:class:`Runner`);
- count what each run reads and writes, and record the run in the database's run log
  (:mod:`zapnb.monitoring`);
- mark the thread a handler runs on, so that writing through the outer database object from a handler
  (``db.insert``, ``db.run``, ``db.transaction()``...) is refused (:func:`refuse_inside_function`).

Declaring functions (``@zapnb.query``, ``@zapnb.mutation``) and their contexts live in :mod:`zapnb.functions`.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from zapnb.auth import Auth, UserIdentity
from zapnb.errors import (
    ArgumentValidationError,
    ConflictError,
    FunctionDefinitionError,
    NestedWriteError,
    SchemaValidationError,
)
from zapnb.functions import (
    BACKOFF_CAP_SECONDS,
    BACKOFF_SECONDS,
    MUTATION_ATTEMPTS,
    RETRY_WAIT_SECONDS,
    DatabaseReader,
    DatabaseWriter,
    Function,
    MutationContext,
    QueryContext,
)
from zapnb.monitoring import MAX_MESSAGE, Outcome, RunCounts, RunLog, RunRecord
from zapnb.transaction import Transaction

if TYPE_CHECKING:
    from zapnb.engine import Engine

__all__ = ["Runner", "refuse_inside_function", "running_function"]

R = TypeVar("R")


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

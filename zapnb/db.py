"""``zapnb.connect()`` and :class:`Database`, the object users hold.

Responsibilities: the public entry points, each a thin call into a transaction or the engine. No business
logic lives here: validation is in :mod:`zapnb.transaction`, commits in :mod:`zapnb.engine`, deploys in
:mod:`zapnb.deploy`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from zapnb.bulk import frame_of
from zapnb.deploy import DeleteTableReport, DeployReport, delete_table, deploy
from zapnb.engine import Engine
from zapnb.errors import ConflictError
from zapnb.functions import Function, UserIdentity
from zapnb.ids import Id
from zapnb.queries import Query
from zapnb.reactive import Reactor, Subscription
from zapnb.runner import Runner, refuse_inside_function
from zapnb.schema import Schema
from zapnb.transaction import Rows, Transaction, check_rows, read_by_id

if TYPE_CHECKING:
    import polars as pl

__all__ = ["DEFAULT_DIRECTORY", "Database", "connect", "data_path"]

#: Where ``zapnb.connect()`` keeps the data when given no path and ``ZAPNB_DATA_DIR`` is not set:
#: ``zapnb-data`` in the current working directory (beside the notebook, in Jupyter).
DEFAULT_DIRECTORY = "zapnb-data"
WRITE_ATTEMPTS = 5

Durability = Literal["full", "process"]
T = TypeVar("T")
P = ParamSpec("P")


def data_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The data directory ``zapnb.connect(path)`` opens: ``path``, else ``$ZAPNB_DATA_DIR``, else
    :data:`DEFAULT_DIRECTORY` (relative to the working directory)."""
    return Path(path if path is not None else os.environ.get("ZAPNB_DATA_DIR", DEFAULT_DIRECTORY))


def connect(path: str | os.PathLike[str] | None = None, *, durability: Durability = "full") -> Database:
    """Open the database in ``path`` (created if missing), recovering from any crash.

    Parameters
    ----------
    path:
        A data directory. Without one, ``$ZAPNB_DATA_DIR``, else ``./zapnb-data``.
    durability:
        ``"full"`` (default): a commit returns once it is on disk and survives a power cut.
        ``"process"``: a commit returns once the operating system has it; it survives the process
        crashing but not the machine losing power. Faster for bulk work you could redo.

    Raises
    ------
    InvalidValueError
        A bad ``durability``, or a ``path`` that is a file: raised before anything is created.
    FormatVersionError
        ``path`` is not empty and is not a zapnb data directory (nothing is written into it), or holds one
        in another format version.
    CorruptionError
        The data directory's ``zapnb.json`` or its commit log is damaged.

    Examples
    --------
    >>> import tempfile, zapnb
    >>> with tempfile.TemporaryDirectory() as data, zapnb.connect(data) as db:
    ...     note = db.insert("notes", {"text": "hello"})
    ...     db.get(note)["text"]
    'hello'
    """
    from zapnb.datadir import make_directory
    from zapnb.errors import InvalidValueError

    if durability not in ("full", "process"):  # before anything is created on disk
        raise InvalidValueError(
            f"durability is 'full' or 'process', not {durability!r}. Nothing was created.", value=durability
        )
    chosen = data_path(path)
    make_directory(chosen)
    return Database(Engine.open(chosen, durability=durability))


class Database:
    """An open zapnb database. Thread-safe; use one per process (a forked child must connect again)."""

    def __init__(
        self, engine: Engine, *, identity: UserIdentity | None = None, shared: _Shared | None = None
    ) -> None:
        self._engine = engine
        self._identity = identity
        self._shared = _Shared(Runner(engine)) if shared is None else shared
        self._runner = self._shared.runner

    @property
    def path(self) -> Path:
        """The data directory."""
        return self._engine.path

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (on this database or on a view of it from ``as_user``)."""
        return self._engine.closed

    @property
    def schema(self) -> Schema | None:
        """The active schema, or ``None`` before the first deploy."""
        return self._engine.snapshot().catalog.schema

    def deploy(self, schema: Schema, *, progress: bool = True) -> DeployReport:
        """Make ``schema`` active: create tables, check existing documents, build and drop indexes.

        If an existing document does not match, raises :class:`~zapnb.DeployValidationError` and the old
        schema stays active. Long checks and index builds show a progress bar (``progress=False`` hides it).
        """
        refuse_inside_function("deploy")
        return deploy(self._engine, schema, show_progress=progress)

    def delete_table(self, table: str) -> DeleteTableReport:
        """Delete ``table`` and all its documents, in one durable commit that every process sees.

        Removing a table from the schema keeps its documents; this is the separate step that deletes them.
        The table's number is never given to another table, so its old IDs stay unknown (``db.get`` returns
        ``None``); a table created later under the same name starts empty. Transactions running meanwhile
        conflict (and mutations are retried). The files go at the next checkpoint (``docs/storage.md``).

        Raises :class:`~zapnb.TableDeletionError` (a :class:`~zapnb.SchemaDefinitionError`) and
        changes nothing when the table is in the active schema (remove it with :meth:`deploy` first) or
        does not exist; :class:`~zapnb.NestedWriteError` inside a query or mutation handler.

        Examples
        --------
        >>> import tempfile, zapnb
        >>> with tempfile.TemporaryDirectory() as data, zapnb.connect(data) as db:
        ...     note = db.insert("scratch", {"text": "draft"})
        ...     print(db.delete_table("scratch").documents_deleted, db.get(note), db.query("scratch").count())
        1 None 0
        """
        refuse_inside_function("delete_table")
        return delete_table(self._engine, table)

    def wait_for_indexes(self, timeout: float | None = None) -> bool:
        """Wait until every staged index is built (they are built in the background after a deploy);
        ``False`` if ``timeout`` seconds passed first."""
        return self._engine.wait_for_index_builds(timeout)

    def transaction(self) -> Transaction:
        """A transaction: ``with db.transaction() as tx:`` commits at the end, or discards on an exception.

        Refused (:class:`~zapnb.NestedWriteError`) inside a query or mutation handler: use ``ctx.db``.
        """
        refuse_inside_function("transaction")
        return Transaction(self._engine)

    # --- functions ------------------------------------------------------------------------------------------

    def run(self, fn: Function[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a ``@zapnb.query`` or ``@zapnb.mutation`` with keyword arguments and return its result.

        A query reads at one snapshot; a mutation commits all its writes or none, and is re-run when it
        conflicts with another commit (:class:`~zapnb.ConflictError` after a few attempts). Bad arguments
        raise :class:`~zapnb.ArgumentValidationError`. Every run is recorded in :meth:`logs`. Inside a
        handler, call another function directly, ``other(ctx, **args)``: ``db.run`` raises
        :class:`~zapnb.NestedWriteError` there.
        """
        return self._runner.run(fn, args, kwargs, self._identity)

    def as_user(self, identity: UserIdentity | Mapping[str, Any] | str | None) -> Database:
        """This database as seen by ``identity``: ``ctx.auth.get_user_identity()`` returns it in functions.

        ``identity`` is a subject (``"alice"``), a dict of claims with at least ``"subject"``, a
        :class:`~zapnb.UserIdentity`, or ``None`` for no user. The view shares this connection and its run
        log; closing either closes both.
        """
        user = None if identity is None else UserIdentity.of(identity)
        return Database(self._engine, identity=user, shared=self._shared)

    def logs(self) -> pl.DataFrame:
        """The recent function runs, oldest first, one row each (the last 10,000 runs of this process).

        Columns: ``function``, ``kind``, ``started_at``, ``duration_ms``, ``documents_read``, ``bytes_read``,
        ``documents_written``, ``bytes_written``, ``outcome`` (``success``, ``error`` or ``conflict``),
        ``attempts``, ``error_type`` and ``error_message``.
        """
        return self._runner.runs.frame()

    # --- watching -------------------------------------------------------------------------------------------

    def watch(
        self,
        fn_or_query: Function[..., Any] | Query | Callable[..., Any],
        args: Mapping[str, Any] | None = None,
        callback: Callable[[Any], None] | None = None,
        *,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> Subscription:
        """Follow a query's result as commits change it; returns a :class:`~zapnb.reactive.Subscription`.

        ``fn_or_query`` is a ``db.query(...)`` (the result is its ``collect()`` frame), a ``@zapnb.query``
        function called with ``args``, or a plain ``handler(ctx)``. ``callback(result)`` gets the current
        result at once, in this thread, and then a new result each time a commit (from any thread or
        process on this data directory) changes it, on a zapnb thread, one call at a time. A commit re-runs
        only the watched queries whose recorded read set it touched, and an unchanged result is not
        handed over again.

        Keep the returned subscription: when it is garbage-collected it stops, as does ``unsubscribe()``.
        A failing re-run or callback is passed to ``on_error`` (or printed on standard error), and the
        subscription goes on. Bad ``args`` raise :class:`~zapnb.ArgumentValidationError` here.
        """
        reactor = self._shared.reactor()
        return reactor.watch(fn_or_query, args, callback, on_error, self._identity)

    # --- one-statement transactions -------------------------------------------------------------------------

    def query(self, table: str) -> Query:
        """A query of ``table``: ``.with_index(...)``, ``.order(...)``, ``.filter(...)``, then a terminal such
        as ``.collect()`` (a typed Polars frame). Each terminal reads the newest snapshot (``zapnb.query``).
        """
        return Query(self._engine, table)

    def get(self, doc_id: str) -> dict[str, Any] | None:
        """The document with this ID, or ``None``."""
        return read_by_id(self._engine.snapshot(), doc_id)

    def normalize_id(self, table: str, text: str) -> Id | None:
        """``text`` as an ID of ``table``, or ``None`` if it is not one."""
        return Transaction(self._engine).normalize_id(table, text)

    def insert(self, table: str, doc: Mapping[str, Any]) -> Id:
        """Insert one document and return its ID (durable when this returns)."""
        refuse_inside_function("insert")
        return self._write(lambda tx: tx.insert(table, doc))

    def insert_many(self, table: str, rows: Rows) -> list[Id]:
        """Insert many documents in one transaction: a list of dicts, a Polars frame or an Arrow table.

        A frame is checked column by column, and a large insert is stored as one columnar batch; errors
        name the row (``Path: [3].name``). See :meth:`Transaction.insert_many`.
        """
        refuse_inside_function("insert_many")
        check_rows(rows)
        docs = rows if frame_of(rows) is not None or isinstance(rows, list) else list(rows)
        return self._write(lambda tx: tx.insert_many(table, docs))

    def patch(self, doc_id: str, fields: Mapping[str, Any]) -> None:
        """Shallow-merge ``fields`` into a document (``zapnb.UNSET`` removes a field)."""
        refuse_inside_function("patch")
        self._write(lambda tx: tx.patch(doc_id, fields))

    def replace(self, doc_id: str, doc: Mapping[str, Any]) -> None:
        """Replace a document's fields, keeping ``_id`` and ``_creationTime``."""
        refuse_inside_function("replace")
        self._write(lambda tx: tx.replace(doc_id, doc))

    def delete(self, doc_id: str) -> None:
        """Delete a document."""
        refuse_inside_function("delete")
        self._write(lambda tx: tx.delete(doc_id))

    def _write(self, operation: Callable[[Transaction], T]) -> T:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            tx = Transaction(self._engine)
            result = operation(tx)
            try:
                tx.commit()
            except ConflictError as err:
                if attempt == WRITE_ATTEMPTS:
                    err.attempts = attempt
                    raise
                continue
            return result
        raise AssertionError("unreachable")

    # --- lifecycle ------------------------------------------------------------------------------------------

    def checkpoint(self) -> bool:
        """Write a checkpoint now: every table as of the newest commit, as a new Lance version plus the files
        that let the next open map it instead of replaying the log (``docs/storage.md``).

        Checkpoints also run in the background (after enough writes or time) and on :meth:`close`; call this
        after a large load, say, before other tools read the Lance datasets. Returns ``False`` when another
        process was writing one (it holds these commits, or the next will).
        """
        return self._engine.checkpoint()

    def close(self) -> None:
        """Close the database (idempotent). Everything committed is already durable; watches stop."""
        self._shared.close()
        self._engine.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._engine.closed else "open"
        return f"<zapnb.Database {str(self.path)!r} ({state})>"


class _Shared:
    """What a connection's views (``db.as_user(...)``) share: the function runner and the watched queries."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._reactor: Reactor | None = None
        self._lock = threading.Lock()

    def reactor(self) -> Reactor:
        """The connection's watched queries, started on the first ``watch``."""
        with self._lock:
            if self._reactor is None:
                self.runner.engine.check_usable()
                self._reactor = Reactor(self.runner)
            return self._reactor

    def close(self) -> None:
        with self._lock:
            reactor, self._reactor = self._reactor, None
        if reactor is not None:
            reactor.close()

"""Building a table's indexes: at once when a deploy adds one, in the background when it is staged.

Responsibilities: the two system indexes every table has (:func:`system_indexes`), the database indexes a
table definition declares (:func:`user_index_specs`, :func:`staged_index_names`), building one over the
documents a table holds at a commit (:func:`build_index`: a deploy's backfill, with a progress bar for long
builds), bringing a built index up to date with the commits applied since (:func:`catch_up_index`), and the
engine's background builds of ``staged=True`` indexes (:class:`IndexBuilds`; ``docs/design-storage.md``,
"Staged indexes").

Examples
--------
>>> sorted(system_indexes())
['by_creation_time', 'by_id']
"""

from __future__ import annotations

import collections
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zapnb.columnkeys import sorted_table_keys
from zapnb.errors import ZapError, ZapWarning
from zapnb.index import IndexData, IndexSpec
from zapnb.progress import progress

if TYPE_CHECKING:
    from zapnb.catalog import Catalog
    from zapnb.changes import ChangeSet
    from zapnb.schema import Schema
    from zapnb.tablestate import Batch, TableState

__all__ = [
    "BuildStoppedError",
    "IndexBuilds",
    "Version",
    "build_index",
    "catch_up_index",
    "index_label",
    "recent_versions",
    "staged_index_names",
    "system_indexes",
    "user_index_specs",
    "versions_since",
]

Document = Mapping[str, Any]
Version = tuple[int, str, Document | None, Document | None]
"""A document written by a commit: its LSN, its ID, the document before and after (``None``: absent)."""

STOP_EVERY = 128  # documents a background build reads between two looks at whether it should stop
CATCH_UP_ROUNDS = 4  # at most this many rounds of catching up outside the apply lock...
LOCKED_COMMITS = 16  # ...until at most this many commits are left for the round under it


class BuildStoppedError(ZapError):
    """A background build was told to stop: the engine closes, or a deploy dropped, redefined or enabled the
    index. The engine's builder catches it; it never reaches a caller of the database.

    Attributes
    ----------
    index:
        The index, as ``table.index``.
    """

    def __init__(self, message: str, *, index: str) -> None:
        super().__init__(message)
        self.index = index


def system_indexes(table: str = "") -> dict[str, tuple[IndexSpec, IndexData]]:
    """Fresh, empty ``by_id`` and ``by_creation_time`` indexes (of ``table``, which names them in errors)."""
    specs = (IndexSpec.by_id(), IndexSpec.by_creation_time())
    return {
        spec.name: (spec, IndexData.build([], [], lsn=0, name=index_label(table, spec))) for spec in specs
    }


def index_label(table: str, spec: IndexSpec) -> str:
    """How errors name an index: ``table.index`` (just the index's name when the table is not known)."""
    return f"{table}.{spec.name}" if table else spec.name


def user_index_specs(definition: Any) -> list[IndexSpec]:
    """The database indexes a table definition declares (search and vector indexes are separate)."""
    return [IndexSpec(name=i.name, fields=tuple(i.fields), kind="user") for i in definition.indexes]


def staged_index_names(definition: Any) -> frozenset[str]:
    """The database indexes a table definition declares with ``staged=True`` (built in the background)."""
    return frozenset(i.name for i in definition.indexes if i.staged)


def build_index(
    state: TableState,
    spec: IndexSpec,
    lsn: int,
    *,
    show_progress: bool = False,
    stop: Callable[[], bool] | None = None,
) -> IndexData:
    """Build ``spec`` over the documents ``state`` holds at ``lsn`` (a progress bar for long builds).

    The index holds one entry per document, added at ``lsn`` and naming its document by ID. A background
    build passes ``stop``: every :data:`STOP_EVERY` documents it lets other threads run, then asks ``stop``,
    and raises :class:`BuildStoppedError` when told to.
    """
    data = IndexData.build([], [], lsn=0, name=index_label(state.name, spec))
    added = []
    with progress(state.count(lsn), f"building {state.name}.{spec.name}", enabled=show_progress) as bar:
        for doc in state.documents(lsn):
            added.append((spec.key_for(doc), str(doc["_id"])))
            bar.update(1)
            if stop is not None and len(added) % STOP_EVERY == 0 and _yield_then(stop):
                label = index_label(state.name, spec)
                raise BuildStoppedError(
                    f"The build of index {label} was stopped: the database is closing, or a deploy dropped, "
                    "redefined or enabled the index. Nothing to do: it is built again where still needed.",
                    index=label,
                )
    if added:
        data.apply(lsn, [], added)
    return data


def _yield_then(stop: Callable[[], bool]) -> bool:
    """Let other threads (commits) take the interpreter, then ask ``stop``: a background build would
    otherwise hold the interpreter lock for its whole switch interval each time a commit waits for it."""
    time.sleep(0)
    return stop()


def versions_since(state: TableState, after: int, until: int) -> list[Version]:
    """The versions ``state``'s overlay holds from commits after ``after`` up to ``until`` (applied by then),
    in LSN order, each with the document as it was just before.

    Safe beside the thread applying commits: the overlay's histories only grow, and those past ``until`` are
    left out.
    """
    found: list[tuple[int, str, Document | None]] = []
    for doc_id, history in list(state.overlay.items()):  # one step: the writer may add to it meanwhile
        for version_lsn, doc in reversed(history[:]):
            if version_lsn <= after:
                break
            if version_lsn <= until:
                found.append((version_lsn, doc_id, doc))
    found.sort(key=lambda version: version[0])
    return [(lsn, doc_id, state.get(doc_id, lsn - 1), doc) for lsn, doc_id, doc in found]


def recent_versions(recent: Iterable[ChangeSet], table: str, after: int) -> list[Version]:
    """The versions of ``table`` in the engine's ``recent`` change sets from commits after ``after``."""
    return [
        (changes.lsn, change.id, change.old, change.new)
        for changes in recent
        if changes.lsn > after
        for change in changes.changes
        if change.table == table
    ]


def catch_up_index(
    data: IndexData, spec: IndexSpec, versions: Sequence[Version], batches: Sequence[Batch]
) -> None:
    """Apply to ``data`` (built at an older LSN) the commits since: ``versions`` and ``batches`` of bulk
    inserts, both in LSN order and newer than the build. A commit's documents go before its batch, as the
    engine applies them; each commit is one :meth:`~zapnb.index.IndexData.apply`."""
    pending = list(batches)
    at = 0
    while at < len(versions):
        lsn = versions[at][0]
        while pending and pending[0].lsn < lsn:
            _apply_batch(data, spec, pending.pop(0))
        removed, added = [], []
        while at < len(versions) and versions[at][0] == lsn:
            _lsn, doc_id, old, new = versions[at]
            old_key = None if old is None else spec.key_for(old)
            new_key = None if new is None else spec.key_for(new)
            if old_key != new_key:
                removed += [] if old_key is None else [old_key]
                added += [] if new_key is None else [(new_key, doc_id)]
            at += 1
        if removed or added:
            data.apply(lsn, removed, added)
    for batch in pending:
        _apply_batch(data, spec, batch)


def _apply_batch(data: IndexData, spec: IndexSpec, batch: Batch) -> None:
    keys, rows = sorted_table_keys(spec, batch.layout, batch.rows)
    data.apply_run(batch.lsn, keys, batch.start + rows)


@dataclass(eq=False)
class _Build:
    """A staged index waiting for its background build (compared by identity: a deploy that supersedes it
    replaces the object)."""

    table: str
    spec: IndexSpec

    @property
    def key(self) -> tuple[str, str]:
        return (self.table, self.spec.name)


class IndexBuilds:
    """The index builds of :class:`~zapnb.engine.Engine`: at once for a deployed index, in the background
    for a staged one.

    Responsibilities: bring a table's indexes in line with each deploy (:meth:`_deploy_indexes`); know which
    staged indexes wait for their build (:meth:`_plan_builds`, after each deploy and each checkpoint load);
    build them one at a time on a thread of their own, started on demand, beside commits; bring each up to
    date and add it under the apply lock; stop on close. A mixin, kept apart for size (as
    :class:`~zapnb.enginecheckpoints.Checkpoints` is): its methods work on the engine's state, declared here
    for the type checker. See ``docs/design-storage.md``, "Staged indexes".
    """

    _apply_lock: Any  # a threading.RLock
    _applied: int
    _catalog: Catalog
    _tables: dict[str, TableState]
    _recent: collections.deque[ChangeSet]
    _deploying: bool
    _writes_since_checkpoint: int
    _first_write_at: float | None
    _builds: threading.Condition  # guards the four below; taken after the apply lock, never before it
    _pending: dict[tuple[str, str], _Build]
    _builder: threading.Thread | None
    _builds_open: bool
    _builds_stopped: threading.Event

    if TYPE_CHECKING:

        def _table(self, name: str) -> TableState: ...

        def _recent_since(self, lsn: int) -> bool: ...

    def _init_builds(self) -> None:
        self._builds = threading.Condition()
        self._pending = {}
        self._builder = None
        self._builds_open = False  # no thread until the engine is open (a failed open leaves none behind)
        self._builds_stopped = threading.Event()

    # --- asking about builds --------------------------------------------------------------------------------

    @property
    def pending_index_builds(self) -> tuple[str, ...]:
        """The staged indexes not built yet, as ``"table.index"``, sorted."""
        with self._builds:
            return tuple(sorted(f"{table}.{name}" for table, name in self._pending))

    def wait_for_index_builds(self, timeout: float | None = None) -> bool:
        """Wait until every staged index is built; ``False`` if ``timeout`` seconds passed first, or the
        engine was closed meanwhile (its builds then stop, and run again when the data is opened again)."""
        with self._builds:
            self._builds.wait_for(lambda: not self._pending or self._builds_stopped.is_set(), timeout)
            return not self._pending

    # --- deploys and plans ----------------------------------------------------------------------------------

    def _deploy_indexes(self, schema: Schema | None, lsn: int) -> None:
        """Bring the tables' indexes in line with ``schema``, deployed at ``lsn`` (under the apply lock): drop
        those it no longer declares as they are, build new ones now, and leave staged ones to the background
        (one that a deploy enables before its build ended is built now)."""
        tables = {} if schema is None else schema.tables
        for name, definition in tables.items():
            state = self._table(name)
            wanted = {spec.name: spec for spec in user_index_specs(definition)}
            for existing in [n for n, (s, _) in state.indexes.items() if s.kind == "user"]:
                if existing not in wanted or wanted[existing] != state.indexes[existing][0]:
                    state.drop_index(existing)
        self._plan_builds()  # first, so that a background build this deploy supersedes stops
        for name, definition in tables.items():
            state, staged = self._tables[name], staged_index_names(definition)
            for spec in user_index_specs(definition):
                if spec.name not in state.indexes and spec.name not in staged:
                    state.add_index(spec, build_index(state, spec, lsn, show_progress=self._deploying))

    def _plan_builds(self) -> None:
        """Make the pending builds those of the staged indexes that the active schema declares and the
        tables lack (under the apply lock): a build whose index is unchanged goes on, one whose index was
        dropped, redefined, enabled or found built is dropped."""
        wanted: dict[tuple[str, str], IndexSpec] = {}
        schema = self._catalog.schema
        for name, definition in ({} if schema is None else schema.tables).items():
            state, staged = self._tables.get(name), staged_index_names(definition)
            for spec in user_index_specs(definition):
                if state is not None and spec.name in staged and spec.name not in state.indexes:
                    wanted[(name, spec.name)] = spec
        with self._builds:
            for key, build in list(self._pending.items()):
                if wanted.get(key) != build.spec:
                    del self._pending[key]
            for key, spec in wanted.items():
                if key not in self._pending:
                    self._pending[key] = _Build(key[0], spec)
            self._builds.notify_all()
            self._start_builder()

    def _building(self, table: str) -> bool:
        """Whether an index of ``table`` waits for its background build."""
        with self._builds:
            return any(name == table for name, _ in self._pending)

    # --- the builder thread ---------------------------------------------------------------------------------

    def _open_builds(self) -> None:
        """Let builds run from now on (the engine is open)."""
        with self._builds:
            self._builds_open = True
            self._start_builder()

    def _stop_builds(self, timeout: float | None) -> None:
        """Stop the background builds (a build under way stops within a few hundred documents) and wait
        for the thread to end. For good: the engine is closing."""
        self._builds_stopped.set()
        with self._builds:
            builder = self._builder
            self._builds.notify_all()
        if builder is not None and builder is not threading.current_thread():
            builder.join(timeout)

    def _start_builder(self) -> None:
        """Start the builder thread if builds wait and none runs (with ``_builds`` held)."""
        idle = self._builder is None and not self._builds_stopped.is_set()
        if self._pending and idle and self._builds_open:
            self._builder = threading.Thread(
                target=self._build_in_background, name="zapnb-index-builder", daemon=True
            )
            self._builder.start()

    def _build_in_background(self) -> None:
        try:
            while (build := self._next_build()) is not None:
                try:
                    self._build(build)
                except BuildStoppedError:
                    continue
                except Exception as err:  # a bug: give the index up rather than try again forever
                    self._give_up(build, err)
        finally:
            with self._builds:
                if self._builder is threading.current_thread():
                    self._builder = None
                self._builds.notify_all()

    def _next_build(self) -> _Build | None:
        """The next build to run, or ``None`` (and the thread ends) when none waits or the engine closes."""
        with self._builds:
            build = next(iter(self._pending.values()), None)
            if build is None or self._builds_stopped.is_set():
                self._builder = None
                self._builds.notify_all()
                return None
            return build

    def _build(self, build: _Build) -> None:
        """Build one staged index from a consistent view, bring it up to date with the commits applied since
        (most of them outside the apply lock) and add it to its table.

        Returns without adding it when a deploy superseded it (it is no longer pending) or the table's state
        was replaced meanwhile (a reload: the build runs again, from the new state).
        """

        def stop() -> bool:
            return self._builds_stopped.is_set() or self._pending.get(build.key) is not build

        with self._apply_lock:
            if stop():
                return
            state = self._tables.get(build.table)
            if state is None or build.spec.name in state.indexes:  # the plan keeps neither: defensive
                self._finish(build)
                return
            view, built_at = state.frozen(), self._applied
        data = build_index(view, build.spec, built_at, stop=stop)
        upto = self._catch_up_outside(data, build.spec, state, built_at)
        with self._apply_lock:
            if stop() or self._tables.get(build.table) is not state:
                return
            now = self._applied
            if self._recent_since(upto):
                versions = recent_versions(self._recent, build.table, upto)
            else:  # a deploy came between, or too many commits: search the overlay
                versions = versions_since(state, upto, now)
            catch_up_index(data, build.spec, versions, _batches(state, upto, now))
            state.add_index(build.spec, data)
            self._writes_since_checkpoint += 1  # the next checkpoint records the index
            if self._first_write_at is None:
                self._first_write_at = time.monotonic()
            self._finish(build)

    def _catch_up_outside(self, data: IndexData, spec: IndexSpec, state: TableState, after: int) -> int:
        """Bring ``data`` up to date with the commits applied to ``state`` after ``after``, outside the apply
        lock, in rounds while commits keep coming (so the lock is then held for a few); return the LSN
        reached."""
        for _ in range(CATCH_UP_ROUNDS):
            until = self._applied  # every commit up to it is in state: _applied moves after each apply
            catch_up_index(data, spec, versions_since(state, after, until), _batches(state, after, until))
            after = until
            if self._applied - after <= LOCKED_COMMITS:
                break
        return after

    def _finish(self, build: _Build) -> None:
        """Forget ``build`` if it is still pending, and wake those waiting for builds."""
        with self._builds:
            if self._pending.get(build.key) is build:
                del self._pending[build.key]
            self._builds.notify_all()

    def _give_up(self, build: _Build, err: Exception) -> None:
        """Warn that a build failed, then forget it (whoever waits for the builds hears after the warning)."""
        label = f"{build.table}.{build.spec.name}"
        try:
            warnings.warn(
                ZapWarning(
                    f"Building the staged index {label} in the background failed ({err!r}). It is built "
                    "when a deploy enables it (staged=False); until then it cannot be queried, as before."
                ),
                stacklevel=1,
            )
        finally:
            self._finish(build)


def _batches(state: TableState, after: int, until: int) -> list[Batch]:
    """The bulk inserts ``state`` applied after ``after`` and up to ``until``."""
    return [batch for batch in list(state.batches) if after < batch.lsn <= until]

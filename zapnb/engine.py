"""The storage engine's coordinator: one data directory, open in this process.

Responsibilities:

- open a data directory: check its format, open the commit log, load the last checkpoint and replay the log
  after it (:mod:`zapnb.checkpoint`);
- hand out snapshots (an LSN and the table states that answer reads at it);
- commit: inside the log's cross-process writer section, catch up with every record appended since, check the
  transaction's read set against the commits after its snapshot (serializable isolation), append; rows
  inserted in bulk go to side files written before the section and named inside it (:mod:`zapnb.sidefiles`);
- apply every record, its own and other processes', in LSN order, read back from the log (a bulk insert as
  a columnar batch, from memory when this process made it), and publish the
  :class:`~zapnb.changes.ChangeSet` of each to listeners (the conflict check, watched queries);
- watch the log for other processes' commits, so they become visible within a few tens of milliseconds.

It holds no business logic of its own: table state, index keys, record formats and checkpoint files live in
their modules, writing, loading and swapping in checkpoints in :mod:`zapnb.enginecheckpoints`, and building
indexes (staged ones in the background) in :mod:`zapnb.indexbuild`. See
``docs/design-storage.md``.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from zapnb import checkpoint as checkpoints
from zapnb import shutdown, sidefiles
from zapnb.bulk import BulkPart, BulkRows, bulk_parts, keys_meanwhile
from zapnb.catalog import Catalog, Snapshot, TableNumbers, next_table_number
from zapnb.changes import (
    BulkChange,
    BulkFile,
    Change,
    ChangeSet,
    Commit,
    Deploy,
    ReadRange,
    Record,
    Write,
    decode_record,
    encode_record,
)
from zapnb.datadir import FORMAT_VERSION, check_format
from zapnb.enginecheckpoints import Checkpoints
from zapnb.errors import (
    ClosedError,
    ConflictError,
    CorruptionError,
    LogTruncatedError,
    UsedAfterForkError,
    ZapWarning,
)
from zapnb.faults import kill_point
from zapnb.index import IndexSpec
from zapnb.indexbuild import IndexBuilds, system_indexes
from zapnb.layout import Layout
from zapnb.log import DEFAULT_SEGMENT_SIZE, CommitLog, LogRecord, forks
from zapnb.schema import Schema, stored_definition
from zapnb.tablestate import TableState

__all__ = ["FORMAT_VERSION", "Catalog", "Engine", "Snapshot", "next_table_number"]

RECENT_COMMITS = 50_000  # change sets kept for conflict checks; an older snapshot conflicts conservatively
RECENT_DOCUMENTS = 250_000  # ...and at most this many documents written in them (bulk inserts hold keys)
WATCH_INTERVAL = 0.02

Durability = Literal["full", "process"]
Listener = Callable[[ChangeSet], None]
Document = Mapping[str, Any]


class Engine(Checkpoints, IndexBuilds):
    """One open data directory. Thread-safe; not fork-safe (a forked child must open its own)."""

    def __init__(self, path: Path, log: CommitLog) -> None:
        self.path = path
        self.log = log
        self._pid, self._forks = os.getpid(), forks()
        self._apply_lock = threading.RLock()
        self._applied = 0
        self._tables: dict[str, TableState] = {}
        self._catalog = Catalog()
        self._snapshot = Snapshot(0, {}, self._catalog)
        self._recent: collections.deque[ChangeSet] = collections.deque()
        self._recent_documents = 0
        self._deploys: list[int] = []
        self._listeners: list[Listener] = []
        self._last_time = 0.0
        self._time_lock = threading.Lock()
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        self._checkpoint_lsn = 0
        self._writes_since_checkpoint = 0
        self._first_write_at: float | None = None
        self._checkpoint_mutex = threading.Lock()
        self._in_flight = _InFlight()
        self._deploying = False
        self._own_bulk: dict[int, list[BulkPart]] = {}  # this process's bulk inserts being committed, by LSN
        self._init_builds()

    # --- opening and closing --------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, durability: Durability = "full", segment_size: int | None = None
    ) -> Engine:
        """Open (creating if needed) the data directory at ``path`` and bring it up to date.

        ``segment_size`` sets the size at which the log starts a new segment file (tests use small ones).
        """
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        check_format(root)
        size = DEFAULT_SEGMENT_SIZE if segment_size is None else segment_size
        engine = cls(root, CommitLog.open(root, durability=durability, segment_size=size))
        try:
            engine._load_checkpoint()
            engine._continue_after_checkpoint()
            engine.catch_up()
            sidefiles.remove_unreferenced(root, engine.log)  # left by a bulk commit that crashed
        except BaseException:
            engine.log.close()
            raise
        engine._watcher = threading.Thread(target=engine._watch, name="zapnb-log-watcher", daemon=True)
        engine._watcher.start()
        engine._open_builds()  # staged indexes of the schema that the tables lack are built in the background
        shutdown.track(engine)
        return engine

    def _continue_after_checkpoint(self) -> None:
        """Make new commits follow the checkpoint when the log ends before it (a repair cut records that the
        checkpoint holds): their LSNs would otherwise be ones the checkpoint already holds, and be skipped.
        A log that starts after LSN 1 with no checkpoint lost its first segments: that is damage."""
        ended, first = self.log.last_lsn(), self.log.first_lsn()
        if first > 1 and self._checkpoint_lsn == 0 and not checkpoints.read_info(self.path):
            raise CorruptionError(
                f"The commit log of {self.path} starts at LSN {first}, but no checkpoint holds the records "
                f"before it: segment files are missing from {self.path / 'log'}. Restore the data directory "
                "from a backup.",
                file=str(self.path / "log"),
                offset=0,
            )
        if ended < self._checkpoint_lsn and self.log.start_after(self._checkpoint_lsn):
            warnings.warn(
                ZapWarning(
                    f"The commit log of {self.path} ended at LSN {ended}, before the checkpoint at LSN "
                    f"{self._checkpoint_lsn} (a repair cut it there). The checkpoint holds every record the "
                    "log still had; the log now continues after the checkpoint, so new commits are kept."
                ),
                stacklevel=3,
            )

    def close(self) -> None:
        """Stop building staged indexes (the next open builds them again) and watching, checkpoint, close
        the log. Idempotent."""
        if self._closed.is_set():
            return
        if os.getpid() == self._pid:  # a forked child has no builder (and may have copied its lock held)
            self._stop_builds(timeout=5)
        try:
            if os.getpid() == self._pid and self._writes_since_checkpoint:
                self.checkpoint()
        finally:
            self._stop_watching(timeout=5)
            with self._checkpoint_mutex:  # a checkpoint of another thread finishes first
                self.log.close()

    def halt(self) -> None:
        """Stop building staged indexes and watching, and close the log without a checkpoint (at interpreter
        exit: see :mod:`zapnb.shutdown`); a checkpoint being written is finished first. Idempotent."""
        if self._closed.is_set() or os.getpid() != self._pid:
            return
        self._stop_builds(timeout=None)
        self._stop_watching(timeout=None)
        with self._checkpoint_mutex:  # one called from another thread
            self.log.close()

    def _stop_watching(self, timeout: float | None) -> None:
        """Mark the engine closed and wait for the watcher thread (and a checkpoint it is writing) to end."""
        self._closed.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()

    def check_usable(self) -> None:
        """Raise if this engine was closed or is being used in a forked child."""
        if self._forks != forks():  # no system call: this runs several times per read and per commit
            raise UsedAfterForkError(
                f"This zapnb database was opened by process {self._pid} and cannot be used in process "
                f"{os.getpid()}, a child made with fork(). Call zapnb.connect() again in the child (or use "
                "the 'spawn' start method of multiprocessing).",
                owner_pid=self._pid,
                pid=os.getpid(),
            )
        if self._closed.is_set():
            raise ClosedError(
                f"The database at {self.path} is closed. Open it again with zapnb.connect().",
                resource=f"database {self.path}",
            )

    # --- reading --------------------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The newest consistent view, after picking up any commits other processes made."""
        self.check_usable()
        if self.log.last_lsn() > self._applied:
            self.catch_up()
        return self._snapshot

    def known_snapshot(self) -> Snapshot:
        """The newest snapshot this process has applied, without looking for other processes' commits: for
        checks that a later read repeats on a fresh snapshot (a query's index and range when it is built),
        where :meth:`snapshot`'s read of the log would cost more than the check."""
        self.check_usable()
        return self._snapshot

    @property
    def catalog(self) -> Catalog:
        """The catalog as of the newest applied commit."""
        return self._catalog

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with the change set of every commit applied from now on; returns a remover.

        Deploys and reloads from another process's checkpoint arrive as change sets marked ``everything``.
        Listeners run on the thread that applies the commit and must be quick (hand work to another thread).
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def creation_time(self) -> float:
        """A creation time (milliseconds since the epoch) later than any this process handed out before."""
        with self._time_lock:
            now = max(time.time() * 1000.0, self._last_time + 0.001)
            while now <= self._last_time:  # float spacing at this magnitude is ~0.0002 ms
                now += 0.001
            self._last_time = now
            return now

    def creation_times(self, count: int) -> npt.NDArray[np.float64]:
        """``count`` strictly increasing creation times, later than any this process handed out before."""
        with self._time_lock:
            start = max(time.time() * 1000.0, self._last_time + 0.001)
            times = start + 0.001 * np.arange(count, dtype=np.float64)  # 0.001 ms is several float steps
            if count:
                self._last_time = float(times[-1])
            return times

    # --- writing --------------------------------------------------------------------------------------------

    def commit(
        self,
        snapshot: Snapshot,
        writes: Sequence[Write],
        reads: Iterable[ReadRange],
        new_tables: Mapping[str, int] | None = None,
        bulk: Sequence[BulkRows] = (),
        known: Mapping[str, Document | None] | None = None,
    ) -> int:
        """Commit writes made on ``snapshot`` if nothing they read has changed since; return the commit's LSN.

        ``bulk`` are rows inserted in bulk: they are written to side files (:mod:`zapnb.sidefiles`) that the
        record names, and applied to their tables as columnar batches. ``known`` maps IDs of documents the
        transaction read (by ID, so a change to them since ``snapshot`` conflicts) to what it read: applying
        the commit need not look them up again.

        Raises :class:`~zapnb.errors.ConflictError` (writing nothing) when a commit after the snapshot changed
        an index key inside one of ``reads``, changed the schema, or created one of ``new_tables``.
        """
        with self._in_flight:
            return self._commit(snapshot, writes, reads, new_tables, bulk, known)

    @property
    def committing(self) -> bool:
        """Whether a thread of this process is committing now (watched queries wait for it to finish)."""
        return self._in_flight.busy

    def _commit(
        self,
        snapshot: Snapshot,
        writes: Sequence[Write],
        reads: Iterable[ReadRange],
        new_tables: Mapping[str, int] | None,
        bulk: Sequence[BulkRows],
        known: Mapping[str, Document | None] | None,
    ) -> int:
        self.check_usable()
        parts = bulk_parts(bulk)
        keys: AbstractContextManager[tuple[Callable[[], None], sidefiles.Written | None]]
        keys = nullcontext((lambda: None, None))
        if parts:  # each part's index keys are built once its side file is written, from the file
            # the indexes are listed once: a staged index built meanwhile joins at the apply
            specs = {part.table: _index_specs(snapshot, part.table) for part in parts}
            keys = keys_meanwhile(parts, specs.__getitem__)
        with keys as (keys_built, written), self._side_files(parts, written) as files:
            keys_built()
            record = Commit(
                time=time.time() * 1000.0,
                writes=tuple(writes),
                tables=dict(new_tables or {}),
                bulk=tuple(file.ref for file in files),
            )
            payload = encode_record(record)
            with self.log.writer(wait=False) as writer:
                if writer.base_lsn > self._applied:
                    self._apply(writer.read_since(self._applied))
                self._check_conflicts(snapshot, list(reads), record.tables)
                lsn = writer.last_lsn + 1
                for file in files:
                    file.publish(lsn)
                if parts:
                    self._own_bulk[lsn] = (
                        parts  # applied as built (rows mapped from their files), by whichever thread
                    )
                    kill_point("bulk.after_side_file_before_append")
                writer.append(payload)
        kill_point("engine.after_append_before_apply")
        published: list[ChangeSet] = []
        try:
            try:
                # nothing else came between: apply our record as it is (without reading and decoding it)
                # while the disk makes it durable, and tell listeners once it is
                if self._applied == lsn - 1:
                    published = self._apply_records([(lsn, record)], known, publish=False)
            finally:
                self.log.wait_durable(lsn)
            self._publish(published)
            if self._applied < lsn:
                self.catch_up(until=lsn)
        finally:
            self._own_bulk.pop(lsn, None)
        return lsn

    def _side_files(
        self, parts: Sequence[BulkPart], written: sidefiles.Written | None
    ) -> AbstractContextManager[list[sidefiles.PendingFile]]:
        if not parts:
            return nullcontext([])
        return sidefiles.pending(self.path, [(part.table, part.rows) for part in parts], written)

    def deploy_record(self, change: Callable[[Catalog], Catalog], *, show_progress: bool = True) -> int:
        """Append a deploy record of the catalog that ``change`` makes of the current one.

        ``change`` runs inside the log's writer section on the caught-up state, so no commit comes between
        what it checks and the switch; if it raises, nothing is appended. Tables whose number the new
        catalog drops are deleted with their documents. Applying the record builds new indexes, with a
        progress bar if ``show_progress`` (and the build is long), except staged ones: those are built in
        the background (:meth:`wait_for_index_builds`), or now when this deploy enables one not built yet.
        """
        self.check_usable()
        with self.log.writer() as writer:
            self._apply(writer.read_since(self._applied))
            catalog = change(self._catalog)
            schema = None if catalog.schema is None else catalog.schema.to_json()
            record = Deploy(time=time.time() * 1000.0, schema=schema, tables=dict(catalog.numbers))
            lsn = writer.append(encode_record(record))
        self._deploying = show_progress  # this process's deploy may show its index builds' progress
        try:
            self.catch_up(until=lsn)
        finally:
            self._deploying = False
        return lsn

    def _check_conflicts(
        self, snapshot: Snapshot, reads: list[ReadRange], new_tables: Mapping[str, int]
    ) -> None:
        if self._applied == snapshot.lsn:
            return
        if any(lsn > snapshot.lsn for lsn in self._deploys):
            raise _conflict(None, "the schema was deployed")
        taken = {n: name for name, n in self._catalog.numbers.items()}
        for name, number in new_tables.items():
            if name in self._catalog.numbers or number in taken:
                raise _conflict(name, f"table {name!r} was created")
        oldest = self._recent[0].lsn if self._recent else self._applied + 1
        if snapshot.lsn + 1 < oldest:
            raise _conflict(None, "too many commits happened while it ran")
        for changes in reversed(self._recent):
            if changes.lsn <= snapshot.lsn:
                break
            hit = changes.touches(reads)
            if hit is not None:
                raise _conflict(hit.table, f"table {hit.table!r} changed (index {hit.index})")

    # --- applying the log -----------------------------------------------------------------------------------

    def catch_up(self, until: int | None = None) -> None:
        """Apply every record in the log that this process has not applied yet (at least up to ``until``)."""
        try:
            self._apply(list(self.log.read_since(self._applied)))
            if until is not None and self._applied < until:
                self._apply(list(self.log.read_since(self._applied)))
        except LogTruncatedError:
            # another process checkpointed and dropped log we had not read: start from its checkpoint
            self._load_checkpoint(replace=True)
            self._publish([ChangeSet(self._applied, time.time() * 1000.0, (), everything=True)])
            self._apply(list(self.log.read_since(self._applied)))

    def _apply(self, records: Iterable[LogRecord]) -> None:
        self._apply_records((log_record.lsn, log_record.payload) for log_record in records)

    def _apply_records(
        self,
        records: Iterable[tuple[int, Record | bytes]],
        known: Mapping[str, Document | None] | None = None,
        *,
        publish: bool = True,
    ) -> list[ChangeSet]:
        """Apply records in LSN order (skipping those applied already), each given as its log payload or,
        for this process's own commit, as the record it encoded (with the documents it read, ``known``);
        then publish their change sets (or, without ``publish``, return them for the caller to publish)."""
        published: list[ChangeSet] = []
        with self._apply_lock:
            for lsn, item in records:
                if lsn <= self._applied:
                    continue
                record = decode_record(item, lsn=lsn) if isinstance(item, bytes) else item
                changes = self._apply_record(lsn, record, known)
                self._applied = lsn
                if changes is None:  # a deploy: conflicts are checked against self._deploys instead
                    changes = ChangeSet(lsn, record.time, (), everything=True)
                else:
                    self._remember(changes)
                published.append(changes)
            if published:
                self._snapshot = Snapshot(self._applied, dict(self._tables), self._catalog)
        if publish:
            self._publish(published)
        return published

    def _remember(self, changes: ChangeSet) -> None:
        """Keep ``changes`` for conflict checks; forget the oldest beyond the limits, never the newest."""
        self._recent.append(changes)
        self._recent_documents += changes.weight
        while len(self._recent) > 1 and (
            len(self._recent) > RECENT_COMMITS or self._recent_documents > RECENT_DOCUMENTS
        ):
            self._recent_documents -= self._recent.popleft().weight

    def _publish(self, published: list[ChangeSet]) -> None:
        listeners = list(self._listeners)
        for changes in published:
            for listener in listeners:
                listener(changes)

    def _apply_record(
        self, lsn: int, record: Record, known: Mapping[str, Document | None] | None = None
    ) -> ChangeSet | None:
        if isinstance(record, Deploy):
            self._apply_deploy(lsn, record)
            return None
        if record.tables:
            numbers = self._catalog.numbers
            self._catalog = Catalog(
                self._catalog.schema, TableNumbers({**numbers, **record.tables}, numbers.highest)
            )
        by_table: dict[str, list[Write]] = {}
        for write in record.writes:
            by_table.setdefault(write.table, []).append(write)
        changes = [
            change
            for table, writes in by_table.items()
            if (state := self._table(table)).base_lsn < lsn
            for change in state.apply_many(lsn, writes, known)
        ]
        bulk = self._apply_bulk(lsn, record.bulk, changes)
        applied = ChangeSet(lsn, record.time, tuple(changes), bulk=tuple(bulk))
        self._writes_since_checkpoint += applied.weight
        if self._first_write_at is None:
            self._first_write_at = time.monotonic()
        return applied

    def _apply_bulk(self, lsn: int, files: Sequence[BulkFile], changes: list[Change]) -> list[BulkChange]:
        """Apply a commit's bulk inserts: from memory when this process made them, else from their side files.

        A table whose base cannot take the batch (written in another layout, before a deploy) gets its
        documents one by one, added to ``changes``.
        """
        own = {part.table: part for part in self._own_bulk.get(lsn, ())}
        applied = []
        for file in files:
            state = self._table(file.table)
            if state.base_lsn >= lsn:
                continue
            part = own.get(file.table)
            layout = self._layout(file.table)
            rows = part.rows if part is not None else sidefiles.logged_rows(self.path, self.log, lsn, file)
            if state.accepts(rows):
                applied.append(state.apply_bulk(lsn, rows, layout, None if part is None else part.keys))
            else:
                docs = layout.to_documents(rows)
                changes.extend(state.apply_many(lsn, [Write(file.table, str(d["_id"]), d) for d in docs]))
        return applied

    def _layout(self, table: str) -> Layout:
        """The layout the table's rows are stored in (as checkpoints write them)."""
        return Layout.for_table(stored_definition(self._catalog.schema, table), table=table)

    def _apply_deploy(self, lsn: int, record: Deploy) -> None:
        schema = None if record.schema is None else Schema.from_json(record.schema)
        self._catalog = Catalog(schema, TableNumbers(record.tables, self._catalog.numbers.highest))
        self._deploys.append(lsn)
        self._drop_deleted_tables()
        self._deploy_indexes(schema, lsn)

    def _drop_deleted_tables(self) -> None:
        """Forget the states of tables whose number the catalog no longer has (``db.delete_table``); the next
        checkpoint, which this makes due, leaves their files out."""
        numbers = self._catalog.numbers
        deleted = [name for name, state in self._tables.items() if numbers.get(name) != state.number]
        for name in deleted:
            del self._tables[name]
        if deleted:
            self._writes_since_checkpoint += 1
            if self._first_write_at is None:
                self._first_write_at = time.monotonic()

    def _table(self, name: str) -> TableState:
        state = self._tables.get(name)
        if state is None:
            number = self._catalog.numbers.get(name)
            if number is None:
                raise CorruptionError(
                    f"The commit log writes to table {name!r}, which no earlier record created: the log is "
                    "inconsistent. Restore the data directory from a backup.",
                    file=str(self.path / "log"),
                    offset=0,
                )
            state = TableState(name, number, system_indexes(name))
            self._tables[name] = state
        return state

    # --- watching other processes ---------------------------------------------------------------------------

    def _watch(self) -> None:
        ticks = 0
        while not self._closed.is_set():
            try:
                if self.log.wait_for_append(self._applied, WATCH_INTERVAL) > self._applied:
                    self.catch_up()
                ticks += 1
                if ticks % 25 == 0:  # about twice a second
                    self._maybe_checkpoint()
            except ClosedError:
                return
            except Exception:  # keep watching; the next reader or writer meets the problem itself
                self._closed.wait(WATCH_INTERVAL)


class _InFlight:
    """How many threads are inside a block: ``with in_flight:`` counts one in, and out at the end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    @property
    def busy(self) -> bool:
        return self._count > 0

    def __enter__(self) -> None:
        with self._lock:
            self._count += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._count -= 1


def _index_specs(snapshot: Snapshot, table: str) -> list[IndexSpec]:
    """The indexes ``table`` has at ``snapshot`` (a commit made on it applies to those: a deploy since
    would make it conflict; a staged index built since gets its keys when the commit is applied)."""
    state = snapshot.tables.get(table)
    return [spec for spec, _ in (system_indexes() if state is None else state.indexes).values()]


def _conflict(table: str | None, why: str) -> ConflictError:
    return ConflictError(
        f"This transaction conflicted with another commit: {why} after it started, and it had read what "
        "changed. Nothing was written; run it again (a @zapnb.mutation is retried automatically).",
        attempts=1,
        table=table,
    )

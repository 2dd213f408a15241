"""The engine's checkpoints: writing one, loading the newest, and swapping a newly written one in.

Responsibilities:

- write a checkpoint of every table as of the newest applied commit (:meth:`Checkpoints.checkpoint`) when
  it is due (from the engine's watcher) or asked for, then truncate the log it makes redundant;
- load the newest checkpoint on open, or again when another process truncated log this one had not read yet;
- swap the states of a newly written checkpoint in while commits go on, holding the apply lock only to add
  the last few commits (``docs/design-storage.md``, "Checkpoints beside commits").

A mixin of :class:`zapnb.engine.Engine`, kept apart for size: its methods work on the engine's state, which
is declared here for the type checker. The files themselves are :mod:`zapnb.checkpoint`'s.
"""

from __future__ import annotations

import collections
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from zapnb import checkpoint as checkpoints
from zapnb import sidefiles
from zapnb.catalog import Catalog, Snapshot, TableNumbers
from zapnb.changes import ChangeSet
from zapnb.errors import CorruptionError, ZapWarning
from zapnb.faults import kill_point
from zapnb.log import CommitLog
from zapnb.schema import Schema, stored_definition, table_definition
from zapnb.tablestate import TableState

__all__ = ["CHECKPOINT_SECONDS", "CHECKPOINT_WRITES", "Checkpoints"]

CHECKPOINT_WRITES: Final = 50_000  # checkpoint once this many document writes are held in memory...
CHECKPOINT_SECONDS: Final = 60.0  # ...or this long after the first write since the last checkpoint


class Checkpoints:
    """The checkpoint methods of :class:`~zapnb.engine.Engine`."""

    path: Path
    log: CommitLog
    _apply_lock: Any  # a threading.RLock
    _checkpoint_mutex: threading.Lock
    _applied: int
    _catalog: Catalog
    _tables: dict[str, TableState]
    _snapshot: Snapshot
    _recent: collections.deque[ChangeSet]
    _recent_documents: int
    _deploys: list[int]
    _checkpoint_lsn: int
    _writes_since_checkpoint: int
    _first_write_at: float | None

    if TYPE_CHECKING:

        def check_usable(self) -> None: ...

        def _plan_builds(self) -> None: ...

        def _building(self, table: str) -> bool: ...

    def checkpoint(self) -> bool:
        """Write a checkpoint now (:mod:`zapnb.checkpoint`); ``False`` if another process is writing one."""
        self.check_usable()
        with self._checkpoint_mutex:
            self.check_usable()  # closed while this waited: close() takes the mutex before closing the log
            with self._apply_lock:
                lsn, catalog = self._applied, self._catalog
                tables = {name: state.frozen() for name, state in self._tables.items()}
                written = self._writes_since_checkpoint
            info = checkpoints.write_checkpoint(self.path, lsn, tables, catalog.schema, catalog.numbers)
            if info is None:
                return False
            self._swap(info, written=True)
            with self._apply_lock:
                self._writes_since_checkpoint -= written
                self._first_write_at = None if self._writes_since_checkpoint == 0 else time.monotonic()
            kill_point("checkpoint.after_info_write_before_truncate")
            self.log.truncate_before(info.previous_lsn + 1)  # keep one checkpoint's worth of log
            sidefiles.remove_unreferenced(self.path, self.log)  # those of bulk commits no longer in the log
            return True

    def _maybe_checkpoint(self) -> None:
        info = checkpoints.read_info(self.path)
        if info is not None and self._checkpoint_lsn < info.lsn <= self._applied:
            self._swap(info)  # another process checkpointed: map its files, drop what they hold from memory
        due = self._writes_since_checkpoint >= CHECKPOINT_WRITES or (
            self._first_write_at is not None and time.monotonic() - self._first_write_at >= CHECKPOINT_SECONDS
        )
        if due:
            self.checkpoint()

    def _load_checkpoint(self, *, replace: bool = False) -> None:
        loaded = self._load_newest(lambda info: info.tables)
        if loaded is None:
            return
        info, schema, tables = loaded
        with self._apply_lock:
            if not replace and self._applied:
                return
            self._tables = tables
            self._catalog = Catalog(schema, TableNumbers(info.numbers, info.highest))
            self._checkpoint_lsn = info.lsn
            self._applied = min([info.lsn, *(state.base_lsn for state in tables.values())])
            self._recent.clear()
            self._recent_documents = 0
            self._snapshot = Snapshot(self._applied, dict(self._tables), self._catalog)
            self._plan_builds()  # staged indexes the checkpoint was written without are built again

    def _load_newest(
        self,
        pick: Callable[[checkpoints.CheckpointInfo], Mapping[str, Mapping[str, Any]]],
        written: int | None = None,
    ) -> tuple[checkpoints.CheckpointInfo, Schema | None, dict[str, TableState]] | None:
        """Load the tables ``pick`` chooses from the newest checkpoint.

        Another process may checkpoint (and delete the files this one is about to map) in between: then the
        newer checkpoint is loaded instead. Only a file that is damaged while it is still the newest is
        rebuilt from Lance, with a warning. The files of the checkpoint at ``written``, which this process
        has just written and fsynced, are mapped without reading every byte (that would make all of a large
        base resident at once).
        """
        info = checkpoints.read_info(self.path)
        while info is not None:
            schema = None if info.schema is None else Schema.from_json(info.schema)
            tables: dict[str, TableState] = {}
            try:
                for name, entry in pick(info).items():
                    tables[name] = self._load_table(name, entry, schema, info.lsn, info.lsn != written)
            except _SupersededError as newer:
                info = newer.info
                continue
            return info, schema, tables
        return None

    def _load_table(
        self, name: str, entry: Mapping[str, Any], schema: Schema | None, lsn: int, verify: bool = True
    ) -> TableState:
        definition = stored_definition(schema, name)
        try:
            return checkpoints.load_table(
                self.path,
                name,
                entry,
                definition,
                lsn,
                verify=verify,
                declared=table_definition(schema, name),
            )
        except CorruptionError as err:
            now = checkpoints.read_info(self.path)
            if now is not None and now.lsn != lsn:
                raise _SupersededError(now) from err
            warnings.warn(
                ZapWarning(
                    f"{err} Table {name!r} was rebuilt from its Lance dataset and the commit log instead; "
                    "nothing is lost. The damaged file is replaced at the next checkpoint."
                ),
                stacklevel=2,
            )
            return checkpoints.rebuild_table(self.path, name, entry, definition, lsn)

    def _swap(self, info: checkpoints.CheckpointInfo, *, written: bool = False) -> None:
        """Replace the states of the tables a checkpoint wrote by ones mapped from its files (``written``:
        this process wrote them)."""
        loaded = self._load_newest(
            lambda newest: {n: e for n, e in newest.tables.items() if int(e["lsn"]) == newest.lsn},
            info.lsn if written else None,
        )
        if loaded is None:
            return
        newest, _schema, tables = loaded
        # Commits go on while the new states catch up with what was applied so far (outside the lock); the
        # lock is held only to add the few commits applied meanwhile and switch (see docs/design-storage.md).
        upto, olds = self._applied, dict(self._tables)
        if newest.lsn > upto:
            return  # not caught up with that checkpoint yet: the watcher swaps it in later
        carried = {
            name: checkpoints.carry_over(olds[name], new, until=upto)
            for name, new in tables.items()
            if name in olds and self._swappable(olds[name], new)
        }
        with self._apply_lock:
            if any(self._tables.get(name) is not olds[name] for name in carried) or not self._recent_since(
                upto
            ):
                return  # a deploy or a reload came between: the watcher swaps a newer checkpoint in later
            recent = [changes for changes in self._recent if changes.lsn > upto]
            for name, new in carried.items():
                if self._swappable(olds[name], new):  # again: a background build may have ended meanwhile
                    self._tables[name] = checkpoints.carry_recent(olds[name], new, recent, upto)
            self._checkpoint_lsn = max(self._checkpoint_lsn, newest.lsn)
            self._snapshot = Snapshot(self._applied, dict(self._tables), self._catalog)

    def _swappable(self, old: TableState, new: TableState) -> bool:
        """Whether ``new``, loaded from a checkpoint, can replace ``old``: the same table with the same
        indexes, and no staged index being built over ``old`` (its build would have to start again; the
        table is swapped at the checkpoint after the build, which records the index)."""
        return (
            old.number == new.number and set(old.indexes) == set(new.indexes) and not self._building(old.name)
        )

    def _recent_since(self, lsn: int) -> bool:
        """Whether the change sets kept for conflict checks hold every commit after ``lsn`` (call it under the
        apply lock)."""
        if self._applied == lsn:
            return True
        if any(deployed > lsn for deployed in self._deploys):
            return False
        return bool(self._recent) and self._recent[0].lsn <= lsn + 1


class _SupersededError(Exception):
    """A checkpoint's files vanished because a newer checkpoint replaced it."""

    def __init__(self, info: checkpoints.CheckpointInfo) -> None:
        super().__init__(f"checkpoint {info.lsn} superseded")
        self.info = info

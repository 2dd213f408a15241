"""Group commit for the commit log: one fsync makes the records of many appenders durable.

Responsibilities:
- know, in this process, the newest record written to the operating system and the newest known durable;
- make a record durable with leader and followers: the first waiter calls ``fdatasync`` for everything
  written so far (by any process, since all write the same file in order) and the others wait on a condition,
  then one of them leads the next round;
- start that ``fdatasync`` early without waiting (:meth:`GroupCommit.start`, through :mod:`zapnb.logaio`
  where the kernel offers it), so the writer can do other work while the disk writes; the next waiter
  collects it;
- after a failed fsync, refuse durability until the log is reopened: the operating system may have dropped the
  dirty pages, so a retried fsync could succeed without the data being on disk;
- close the descriptors of segments the log has moved past, once no fsync is using them.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from zapnb.logformat import create_segment
>>> with tempfile.TemporaryDirectory() as directory:
...     segment = create_segment(Path(directory), 1)
...     group = GroupCommit()
...     group.start(0, segment)
...     group.written(3, segment)  # records 1 to 3 were written
...     group.flush(3)  # started, if this system can start an fsync without waiting for it
...     group.wait(2)
...     (group.durable_lsn(), group.fsyncs)
...     group.close()
(3, 1)
"""

from __future__ import annotations

import os
import threading

from zapnb.errors import StorageIOError
from zapnb.logaio import AsyncFlush
from zapnb.logformat import Segment, io_error

_FAILED = (
    "Records written since the last successful fsync may be lost, so this log refuses further writes: close "
    "it and open it again to continue from what is on disk."
)


class GroupCommit:
    """The fsync state of one open log in one process (thread-safe)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._written = self._synced = 0
        self._segment: Segment | None = None
        self._syncing = False  # a thread is inside fdatasync, or collecting the fsync in flight
        self._in_flight: tuple[int, Segment] | None = None  # an fsync started early: its target and segment
        self._flusher: AsyncFlush | None = None
        self._can_flush = True
        self._retired: list[Segment] = []
        self.failed: StorageIOError | None = None
        self.fsyncs = 0

    def start(self, lsn: int, segment: Segment) -> None:
        """Everything up to ``lsn`` is durable (the log fsynced it on open), in ``segment``."""
        with self._cond:
            self._written = self._synced = lsn
            self._segment = segment

    def written(self, lsn: int, segment: Segment) -> None:
        """Records up to ``lsn`` are written to the operating system, the newest in ``segment``."""
        with self._cond:
            if lsn > self._written:
                self._written, self._segment = lsn, segment

    def written_lsn(self) -> int:
        with self._cond:
            return self._written

    def durable_lsn(self) -> int:
        with self._cond:
            return self._synced

    def moved(self, old: Segment, old_lsn: int, new: Segment) -> None:
        """The log moved from ``old`` (fsynced in full before ``new`` was created) to ``new``."""
        with self._cond:
            self._synced = max(self._synced, old_lsn)
            self._segment = new
            self._retired.append(old)
            if not self._busy():
                self._close_retired()

    def fsync(self, segment: Segment) -> None:
        """``fdatasync`` one segment; a failure refuses all further durability (see the module docstring)."""
        try:
            os.fdatasync(segment.fd)
        except OSError as err:
            self.failed = io_error(err, segment.path, "fsync", _FAILED)
            raise self.failed from err
        with self._cond:
            self.fsyncs += 1

    def raise_if_failed(self) -> None:
        failed = self.failed
        if failed is not None:
            raise StorageIOError(
                str(failed), path=failed.path, operation=failed.operation, errno=failed.errno
            )

    def flush(self, lsn: int) -> None:
        """Start making the records up to ``lsn`` durable without waiting, if no fsync is under way and this
        system can; :meth:`wait` finishes it (or does it, where it could not start)."""
        with self._cond:
            if self._synced >= lsn or self._busy() or not self._can_flush or self.failed is not None:
                return
            if self._flusher is None:
                self._flusher = AsyncFlush.open()
                if self._flusher is None:
                    self._can_flush = False
                    return
            segment = self._segment
            assert segment is not None, "a record was written, so its segment is known"
            if not self._flusher.submit(segment.fd):
                self._can_flush = False  # the kernel refused it (such as an older one): fsync as before
                return
            self._in_flight = (self._written, segment)

    def wait(self, lsn: int) -> None:
        """Return once record ``lsn`` (or the newest written, if lower) is durable."""
        with self._cond:
            lsn = min(lsn, self._written)
            while self._synced < lsn:
                self.raise_if_failed()
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                in_flight, self._in_flight = self._in_flight, None
                target, segment = in_flight or (self._written, self._segment)
                assert segment is not None, "a record was written, so its segment is known"
                self._cond.release()
                try:
                    if in_flight is None:
                        self.fsync(segment)
                    else:
                        self._collect(segment)
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self._synced = max(self._synced, target)
                self._close_retired()

    def _collect(self, segment: Segment) -> None:
        """Wait for the fsync started by :meth:`flush` (outside the condition's lock)."""
        assert self._flusher is not None, "an fsync in flight was started by the flusher"
        error = self._flusher.collect()
        if error:
            self.failed = io_error(OSError(error, os.strerror(error)), segment.path, "fsync", _FAILED)
            raise self.failed
        with self._cond:
            self.fsyncs += 1

    def close(self) -> None:
        """Finish a running fsync, then close the descriptors of segments left behind."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            in_flight, self._in_flight = self._in_flight, None
            if in_flight is not None and self._flusher is not None:
                self._flusher.collect()  # the log is being closed: its fate is reported by the next open
            if self._flusher is not None:
                self._flusher.close()
            self._close_retired()

    def _busy(self) -> bool:
        return self._syncing or self._in_flight is not None

    def _close_retired(self) -> None:
        for segment in self._retired:
            os.close(segment.fd)
        self._retired.clear()

"""Group commit for the commit log: one fsync makes the records of many appenders durable.

Responsibilities:
- know, in this process, the newest record written to the operating system and the newest known durable;
- make a record durable with leader and followers: the first waiter calls ``fdatasync`` for everything
  written so far (by any process, since all write the same file in order) and the others wait on a condition,
  then one of them leads the next round;
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
...     group.wait(2)
...     (group.durable_lsn(), group.fsyncs)
...     group.close()
(3, 1)
"""

from __future__ import annotations

import os
import threading

from zapnb.errors import StorageIOError
from zapnb.logformat import Segment, io_error


class GroupCommit:
    """The fsync state of one open log in one process (thread-safe)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._written = self._synced = 0
        self._segment: Segment | None = None
        self._syncing = False
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
            if not self._syncing:
                self._close_retired()

    def fsync(self, segment: Segment) -> None:
        """``fdatasync`` one segment; a failure refuses all further durability (see the module docstring)."""
        try:
            os.fdatasync(segment.fd)
        except OSError as err:
            self.failed = io_error(
                err,
                segment.path,
                "fsync",
                "Records written since the last successful fsync may be lost, so this log refuses further "
                "writes: close it and open it again to continue from what is on disk.",
            )
            raise self.failed from err
        with self._cond:
            self.fsyncs += 1

    def raise_if_failed(self) -> None:
        failed = self.failed
        if failed is not None:
            raise StorageIOError(
                str(failed), path=failed.path, operation=failed.operation, errno=failed.errno
            )

    def wait(self, lsn: int) -> None:
        """Return once record ``lsn`` (or the newest written, if lower) is durable."""
        with self._cond:
            lsn = min(lsn, self._written)
            while self._synced < lsn:
                self.raise_if_failed()
                if self._syncing:
                    self._cond.wait()
                    continue
                target, segment = self._written, self._segment
                assert segment is not None, "a record was written, so its segment is known"
                self._syncing = True
                self._cond.release()
                try:
                    self.fsync(segment)
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self._synced = max(self._synced, target)
                self._close_retired()

    def close(self) -> None:
        """Wait for a running fsync, then close the descriptors of segments left behind."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            self._close_retired()

    def _close_retired(self) -> None:
        for segment in self._retired:
            os.close(segment.fd)
        self._retired.clear()

"""The end of the commit log, as one process knows it: following it, writing at it, rolling over.

Responsibilities:

- follow the records other processes append, reading the record header at the known end (one ``pread``
  when nothing is new) and moving into the segments they create (:meth:`Tail.advance`);
- write records at the end, after zeros written ahead of them (:data:`~zapnb.logformat.PREALLOCATE` at a
  time, fsynced, so that a record's ``fdatasync`` records no change of size), and roll over to a new segment
  when one is full (:meth:`Tail.write`);
- holding the writers' lock, cut a torn write that a crashed process left, or raise for damage
  (:mod:`zapnb.logrecover` tells which).

Not thread-safe: :class:`~zapnb.log.CommitLog` holds its mutex around every call, and its writers' lock
around writes and cuts.
"""

from __future__ import annotations

import errno
import os
from contextlib import suppress
from pathlib import Path
from typing import Final

from zapnb.faults import kill_point
from zapnb.logformat import (
    BLOCK,
    PREALLOCATE,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    ZERO_HEADER,
    Scan,
    Segment,
    Window,
    corruption_error,
    create_segment,
    encode_record,
    end_mark,
    header_problem,
    io_error,
    list_segments,
    pwrite_all,
    segment_name,
    walk,
    write_zeros,
)
from zapnb.logread import Positions
from zapnb.logrecover import check_tail
from zapnb.logsync import GroupCommit

__all__ = ["Tail"]

_HEAD: Final = SEGMENT_HEADER_SIZE
_REC: Final = RECORD_HEADER_SIZE


class Tail:
    """The newest segment this process knows, the end of its records, and the counters of writing there.

    Attributes
    ----------
    seg, offset, lsn, sealed:
        The segment, where its last known record ends, that record's LSN, and whether an end mark follows.
    allocated:
        The size of the segment file when last looked at: the bytes past ``offset`` up to it are zeros.
    others_lsn:
        The newest LSN that this process found written by someone else (on open: the newest of all).
    dropped_bytes, appends, rollovers:
        Bytes of torn writes cut, records written, segments started (by this process).
    """

    def __init__(
        self,
        directory: Path,
        segment_size: int,
        group: GroupCommit,
        positions: Positions,
        seg: Segment,
        scan: Scan,
    ) -> None:
        self._directory, self._segment_size = directory, segment_size
        self._group, self._positions = group, positions
        self.seg, self.offset, self.lsn = seg, scan.offset, scan.lsn
        self.sealed = scan.stop == "sealed"
        self.allocated = os.fstat(seg.fd).st_size
        self.others_lsn = scan.lsn
        self.dropped_bytes = self.appends = self.rollovers = 0

    @property
    def preallocate(self) -> int:
        """How many bytes of zeros a new segment starts with."""
        return min(PREALLOCATE, self._segment_size)

    # --- following ------------------------------------------------------------------------------------------

    def advance(self, locked: bool) -> bool:
        """Move over records appended since this process last looked.

        Holding the writers' lock (``locked``), a torn write is cut and damage raises. Without it, a torn
        tail may be a record being written, so the walk stops there; damage returns ``False`` (to retry
        holding the lock).
        """
        while True:
            if self.sealed and not self._enter_next_segment():
                return True
            head = os.pread(self.seg.fd, _REC, self.offset)
            if head == ZERO_HEADER:
                return True
            if not head:
                self._check_not_shorter()
                return True
            marks: list[tuple[int, int]] = []
            scan = walk(Window(self.seg.fd), self.offset, self.lsn, marks=marks)
            self._positions.note(self.seg.start, marks)
            self.offset, self.lsn, self.sealed = scan.offset, scan.lsn, scan.stop == "sealed"
            self.others_lsn = self.lsn
            self._group.written(self.lsn, self.seg)
            if scan.stop == "sealed":
                continue
            if scan.stop in ("end", "zeros"):
                return True
            if not locked:
                return scan.stop == "torn"
            self.settle(scan.reason)
            return True

    def settle(self, reason: str = "") -> None:
        """Holding the writers' lock: cut what follows the last record if it is a torn write, or raise
        :class:`~zapnb.errors.CorruptionError` if it is damage."""
        end, problem = check_tail(self.seg.fd, self.offset, self.lsn, reason)
        if problem is not None:
            raise corruption_error(self.seg.path, self.offset, problem)
        if end > self.offset:
            self.cut(end)

    def cut(self, end: int) -> None:
        """Overwrite the torn write ``[offset, end)`` with zeros and fsync; holds the writers' lock."""
        try:
            write_zeros(self.seg.fd, self.offset, end)
            os.fdatasync(self.seg.fd)
        except OSError as err:
            raise io_error(err, self.seg.path, "cut the torn tail of", "The log is unchanged.") from err
        self.dropped_bytes += end - self.offset

    def _check_not_shorter(self) -> None:
        size = os.fstat(self.seg.fd).st_size
        if size < self.offset:
            raise corruption_error(
                self.seg.path,
                size,
                "the file is shorter than what this process already read from it (another "
                "process repaired or replaced the log); close and reopen the log",
            )

    def _enter_next_segment(self) -> bool:
        """Move a sealed tail into the next segment, if it exists (or the next left after truncation)."""
        start = self.lsn + 1
        path = self._directory / segment_name(start)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            later = [s for s in list_segments(self._directory) if s > start]
            if not later:
                return False
            start, path = later[0], self._directory / segment_name(later[0])
            fd = os.open(path, os.O_RDWR)
        problem = header_problem(fd, path, start)
        if problem is not None:
            os.close(fd)
            raise corruption_error(path, 0, problem)
        old, old_lsn = self.seg, self.lsn
        self.seg, self.offset, self.lsn, self.sealed = Segment(start, path, fd), _HEAD, start - 1, False
        self.allocated = os.fstat(fd).st_size
        self._group.moved(old, old_lsn, self.seg)
        return True

    # --- writing --------------------------------------------------------------------------------------------

    def write(self, payloads: list[bytes]) -> int:
        """Write records after the last one with one ``pwrite``; return the last LSN (holds the lock)."""
        first = self.lsn + 1
        size = sum(map(len, payloads)) + _REC * len(payloads)
        if self.sealed or (self.offset > _HEAD and self.offset + size > self._segment_size):
            self._roll_over()
        seg, offset = self.seg, self.offset
        self._make_room(offset + size)
        synced = self._group.durable_lsn()
        if len(payloads) == 1:
            data = encode_record(first, payloads[0], synced=synced)
        else:
            data = b"".join([encode_record(first + k, p, synced=synced) for k, p in enumerate(payloads)])
        try:
            kill_point("log.during_write", lambda: _torn_write(seg.fd, data, offset))
            pwrite_all(seg.fd, data, offset)
        except OSError as err:
            self._undo_write(offset, len(data))
            raise io_error(err, seg.path, "write to", "The records were not written.") from err
        last = first + len(payloads) - 1
        self.offset, self.lsn = offset + len(data), last
        kill_point("log.after_write_before_fsync")
        self._group.written(last, seg)
        self.appends += len(payloads)
        return last

    def _make_room(self, end: int) -> None:
        """Write zeros ahead (and fsync them) unless the segment already has them up to ``end``."""
        if end <= self.allocated:
            return
        fd = self.seg.fd
        self.allocated = max(self.allocated, os.fstat(fd).st_size)  # another process may have done it
        target = min(self._segment_size, max(end, self.allocated + PREALLOCATE))
        if end <= self.allocated or target <= end:
            return  # already there, or no room to write ahead: the write grows the file
        try:
            write_zeros(fd, self.allocated, target)
        except OSError as err:
            with suppress(OSError):
                os.ftruncate(fd, self.allocated)
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                return  # writing ahead is only a speed-up; the record itself may still fit
            raise io_error(err, self.seg.path, "write to", "The records were not written.") from err
        self._group.fsync(self.seg)
        self.allocated = target

    def _undo_write(self, offset: int, size: int) -> None:
        """Take back a failed write; if this fails, the next writer finds a torn write and cuts it."""
        with suppress(OSError):
            if offset + size > self.allocated:
                os.ftruncate(self.seg.fd, max(offset, self.allocated))
            if self.allocated > offset:
                write_zeros(self.seg.fd, offset, min(offset + size, self.allocated))

    def _roll_over(self) -> None:
        """Seal the full segment, fsync it, then create the next one (the order recovery relies on)."""
        old, old_lsn = self.seg, self.lsn
        if not self.sealed:
            try:
                pwrite_all(old.fd, end_mark(old_lsn + 1), self.offset)
            except OSError as err:
                self._undo_write(self.offset, _REC)
                raise io_error(err, old.path, "write to", "The records were not written.") from err
            self.offset, self.sealed = self.offset + _REC, True
        kill_point("log.during_rollover")
        with suppress(OSError):  # zeros left after the end mark are allowed; this only saves the space
            os.ftruncate(old.fd, self.offset)
        self._group.fsync(old)
        try:
            new = create_segment(self._directory, old_lsn + 1, self.preallocate)
        except OSError as err:
            raise io_error(
                err, self._directory, "create a segment in", "The records were not written."
            ) from err
        kill_point("log.after_rollover")
        self._group.moved(old, old_lsn, new)
        self.seg, self.offset, self.sealed = new, _HEAD, False
        self.allocated = os.fstat(new.fd).st_size
        self.rollovers += 1


def _torn_write(fd: int, data: bytes, offset: int) -> None:
    """Leave what a crash while writing ``data`` at ``offset`` can leave: its first whole blocks."""
    cut = (offset + len(data) // 2) // BLOCK * BLOCK - offset
    if cut > 0:
        os.pwrite(fd, data[:cut], offset)

"""zapnb's durable commit log: every transaction is appended here before it is acknowledged.

Responsibilities:
- append opaque byte records, each given the next log position (the LSN, which later layers use as the
  commit timestamp), and return once the record is durable; threads and processes share fsyncs (group commit);
- a cross-process critical section, :meth:`CommitLog.writer`, to read what others committed, check, append;
- tailing: :meth:`CommitLog.read_since`, :meth:`CommitLog.last_lsn`, :meth:`CommitLog.wait_for_append`;
- recovery on open: a torn tail is dropped, damage raises :class:`~zapnb.errors.CorruptionError`;
- segment rollover, and :meth:`CommitLog.truncate_before` once a checkpoint holds the older records.

The bytes on disk (records, segments, what counts as a torn tail) are described in :mod:`zapnb.logformat`.

Protocol
--------
Appenders take a thread lock, then an ``flock`` on ``log/LOCK`` (so one writer at a time across threads and
processes), read whatever other processes appended since they last looked (one ``fstat`` when nothing was),
write their records with one ``pwrite`` at the end of the newest segment, and release the lock. Only then do
they wait for durability: the first waiter of a process calls ``fdatasync`` and covers every record written so
far, by any process, while later ones wait on a condition (group commit). Since all processes write the same
files in LSN order, one fsync covers every earlier record.

Durability
----------
``"full"`` (the default): :meth:`CommitLog.append` returns once ``fdatasync`` of the segment covers the record
(the directory is fsynced whenever a segment is created), so the record survives a power cut.
``"process"``: it returns once the record is written to the operating system. That survives the crash of any
process, but a power cut or a kernel crash can lose the last commits before it (never part of one, never
leaving a gap). Segment rollover and :meth:`CommitLog.close` fsync in both modes.

Every process sees a record in :meth:`CommitLog.read_since` as soon as it is written, which in ``"full"`` mode
is just before its fsync completes; a reader never sees a half-written record.

Examples
--------
>>> import tempfile
>>> from zapnb.log import CommitLog
>>> with tempfile.TemporaryDirectory() as data, CommitLog.open(data) as log:
...     first = log.append(b"hello")
...     with log.writer() as w:
...         second = w.append(b"world")
...     [(record.lsn, record.payload) for record in log.read_since(0)]
[(1, b'hello'), (2, b'world')]
"""

from __future__ import annotations

import bisect
import fcntl
import itertools
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

from zapnb.durable import fsync_dir
from zapnb.errors import (
    ClosedError,
    InvalidValueError,
    NestedWriteError,
    UsedAfterForkError,
)
from zapnb.faults import kill_point
from zapnb.logformat import (
    FORMAT_VERSION,
    MAX_PAYLOAD,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    LogRecord,
    RepairReport,
    Scan,
    Segment,
    Window,
    as_payload,
    corruption_error,
    create_segment,
    encode_record,
    end_mark,
    header_problem,
    io_error,
    list_segments,
    make_dirs,
    pwrite_all,
    recover_segments,
    segment_name,
    walk,
)
from zapnb.logread import LogReader, Position, Positions, truncated_error
from zapnb.logsync import GroupCommit

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "FORMAT_VERSION",
    "MAX_PAYLOAD",
    "CommitLog",
    "Durability",
    "LogRecord",
    "LogStats",
    "LogWriter",
    "RepairReport",
]

Durability = Literal["full", "process"]

DEFAULT_SEGMENT_SIZE: Final = 64 * 1024 * 1024
_HEAD: Final = SEGMENT_HEADER_SIZE
_REC: Final = RECORD_HEADER_SIZE
_POLL: Final = 0.01


@dataclass(frozen=True, slots=True)
class LogStats:
    """Counters of one open log, in this process: records appended, fsyncs issued, segments started.

    Examples
    --------
    >>> LogStats(appends=10, fsyncs=3, rollovers=0).fsyncs
    3
    """

    appends: int
    fsyncs: int
    rollovers: int


@dataclass(slots=True)
class _Tail:
    """How far this process has read the log: the newest segment and the end of its last record."""

    seg: Segment
    offset: int
    lsn: int
    sealed: bool


class CommitLog:
    """The durable, multi-process commit log of one data directory.

    Responsibilities: see the module docstring. Open it with :meth:`open`. Any number of threads may use one
    log; a child process made with ``os.fork()`` must open its own (using the parent's raises
    :class:`~zapnb.errors.UsedAfterForkError`).
    """

    def __init__(self, directory: Path, durability: Durability, segment_size: int) -> None:
        self.directory = directory
        self.durability: Durability = durability
        self.segment_size = segment_size
        self.repair_report: RepairReport | None = None
        self.dropped_tail_bytes = 0
        self._pid = os.getpid()
        self._closed = False
        self._write_lock = threading.Lock()
        self._owner: int | None = None
        self._mutex = threading.Lock()
        self._group = GroupCommit()
        self._changed = threading.Condition(threading.Lock())
        self._waiting = 0
        self._lock_fd = self._open_fd = -1
        self._tail: _Tail | None = None
        self._cursor = 0
        self._positions = Positions()
        self._reader = LogReader(directory, lambda: self._exclusive(None), self._remember)
        self._appends = self._rollovers = 0

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        durability: Durability = "full",
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        repair: bool = False,
    ) -> CommitLog:
        """Open (or create) the log in ``<directory>/log``, recovering from a crash if there was one.

        Parameters
        ----------
        directory:
            The data directory.
        durability:
            ``"full"`` or ``"process"``: see the module docstring.
        segment_size:
            Start a new segment file once one would grow past this many bytes.
        repair:
            Cut the log at damage instead of raising :class:`~zapnb.errors.CorruptionError`; what was cut
            is in :attr:`repair_report`. Needs every other process to have the log closed.

        Examples
        --------
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as data:
        ...     with CommitLog.open(data) as log:
        ...         log.append(b"a")
        ...     with CommitLog.open(data, durability="process") as log:
        ...         log.last_lsn()
        1
        1
        """
        if durability not in ("full", "process"):
            raise InvalidValueError(
                f"durability is 'full' or 'process', not {durability!r}.", value=durability
            )
        if segment_size < 4096:
            raise InvalidValueError(
                f"segment_size is at least 4096 bytes, not {segment_size}.", value=segment_size
            )
        log_dir = Path(directory) / "log"
        log = cls(log_dir, durability, segment_size)
        try:
            make_dirs(log_dir)
            log._lock_fd = os.open(log_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
            log._open_fd = os.open(log_dir / "OPEN", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(log._open_fd, fcntl.LOCK_SH)
            with log._exclusive("open"), log._mutex:
                log._recover(repair)
        except OSError as err:
            log._release()
            raise io_error(err, log_dir, "open the commit log in", "Nothing was changed.") from err
        except BaseException:
            log._release()
            raise
        return log

    # --- public API -----------------------------------------------------------------------------------------

    def append(self, payload: bytes | bytearray | memoryview) -> int:
        """Append one record and return its LSN once it is durable.

        Examples
        --------
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as data, CommitLog.open(data) as log:
        ...     [log.append(b"x"), log.append(b"y")]
        [1, 2]
        """
        data = as_payload(payload)
        self._check_writable()
        if self._owner == threading.get_ident():
            self._refuse_nested("append")
        with self._write_lock:  # _exclusive() inlined: this is the hot path
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                with self._mutex:
                    self._advance(locked=True)
                    lsn = self._write_locked([data])
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._after_write(lsn)
        return lsn

    @contextmanager
    def writer(self) -> Iterator[LogWriter]:
        """The writers' critical section, shared by every thread and process: ``with log.writer() as w:``.

        Inside, nobody else can append: :meth:`LogWriter.new_records` shows what others appended, and
        :meth:`LogWriter.append` queues records with the next LSNs. On leaving the block the queued records
        are written, the lock is released, and then (outside the lock, so others proceed) they are made
        durable.
        If the block raises, nothing is written.

        Examples
        --------
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as data, CommitLog.open(data) as log:
        ...     with log.writer() as w:
        ...         conflicts = w.new_records()
        ...         lsn = w.append(b"checked")
        ...     (conflicts, lsn, log.durable_lsn())
        ([], 1, 1)
        """
        self._check_writable()
        with self._exclusive("writer"):
            with self._mutex:
                self._advance(locked=True)
                w = LogWriter(self, self._cursor, self._require_tail().lsn)
            try:
                yield w
            finally:
                w._open = False
            with self._mutex:
                last = self._write_locked(w._pending) if w._pending else w.base_lsn
                self._cursor = last
        if w._pending:
            self._after_write(last)

    def read_since(self, lsn: int) -> Iterator[LogRecord]:
        """The records with an LSN above ``lsn``, oldest first, across segments and processes.

        Raises :class:`~zapnb.errors.LogTruncatedError` if some of them were removed by
        :meth:`truncate_before`.

        Examples
        --------
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as data, CommitLog.open(data) as log:
        ...     for payload in (b"a", b"b", b"c"):
        ...         _ = log.append(payload)
        ...     [record.payload for record in log.read_since(1)]
        [b'b', b'c']
        """
        self._check_open()
        return self._read(lsn, locked=self._owner == threading.get_ident())

    def last_lsn(self) -> int:
        """The LSN of the newest record in the log, including those of other processes (0 if empty).

        Costs one ``fstat`` when nothing new was appended, so it can be polled.
        """
        self._check_open()
        with self._mutex:
            if self._advance(locked=self._owner == threading.get_ident()):
                return self._require_tail().lsn
        with self._exclusive(None), self._mutex:
            self._advance(locked=True)
            return self._require_tail().lsn

    def first_lsn(self) -> int:
        """The lowest LSN that :meth:`read_since` can still return (``last_lsn() + 1`` for an empty log)."""
        self._check_open()
        starts = list_segments(self.directory)
        return starts[0] if starts else self.last_lsn() + 1

    def durable_lsn(self) -> int:
        """The highest LSN this process knows to be on disk (fsynced by it, or by a segment rollover)."""
        self._check_open()
        return self._group.durable_lsn()

    def wait_for_append(self, after_lsn: int, timeout: float) -> int:
        """Wait until the log holds a record above ``after_lsn`` (of any process), or ``timeout`` seconds.

        Returns :meth:`last_lsn`. Appends of this process wake it at once, those of others within 10 ms.

        Examples
        --------
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as data, CommitLog.open(data) as log:
        ...     log.wait_for_append(0, timeout=0.05)
        0
        """
        deadline = time.monotonic() + timeout
        while True:
            last = self.last_lsn()
            remaining = deadline - time.monotonic()
            if last > after_lsn or remaining <= 0:
                return last
            with self._changed:
                self._waiting += 1
                try:
                    self._changed.wait(min(_POLL, remaining))
                finally:
                    self._waiting -= 1

    def sync(self) -> int:
        """Make every record written so far durable now, in either durability mode; return the newest LSN."""
        self._check_writable()
        lsn = self.last_lsn()
        self._await_durable(lsn, force=True)
        return lsn

    def truncate_before(self, lsn: int) -> int:
        """Delete the segments whose records all have an LSN of at most ``lsn``; return how many went.

        The caller must have made those records durable elsewhere (a checkpoint). The newest segment always
        stays, and a crash at any point leaves a log that opens.
        """
        self._check_writable()
        with self._exclusive("truncate_before"), self._mutex:
            self._advance(locked=True)
            if lsn > self._require_tail().lsn:
                raise InvalidValueError(
                    f"truncate_before({lsn}) is past the end of the log (LSN {self._require_tail().lsn}): a "
                    "checkpoint cannot contain records the log never had; check which log it belongs to.",
                    value=lsn,
                )
            starts = list_segments(self.directory)
            removed = 0
            for start, following in itertools.pairwise(starts):
                if following - 1 > lsn:
                    break
                self._remove_segment(start)
                removed += 1
            return removed

    def stats(self) -> LogStats:
        """Counters of this process's use of the log (appends, fsyncs, rollovers): tests, benchmarks."""
        return LogStats(self._appends, self._group.fsyncs, self._rollovers)

    def close(self) -> None:
        """Flush (an fsync in ``"process"`` mode too), release files and locks. Closing twice is harmless."""
        if self._closed:
            return
        self._check_open()
        if self._group.failed is None:
            self._group.wait(self._group.written_lsn())
        with self._write_lock:
            self._group.close()
            self._closed = True
            self._release()

    def __enter__(self) -> CommitLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"last_lsn={self._tail.lsn if self._tail else 0}"
        return f"CommitLog({str(self.directory)!r}, durability={self.durability!r}, {state})"

    # --- locks and state checks -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            raise UsedAfterForkError(
                f"This commit log was opened by process {self._pid} and is used in process {pid}, a child "
                "made with os.fork(); it shares the parent's file locks, so using it could corrupt the log. "
                "Open the log again in the child, or start child processes with the 'spawn' method.",
                owner_pid=self._pid,
                pid=pid,
            )
        if self._closed:
            raise ClosedError(
                f"The commit log {self.directory} is closed: open it again with CommitLog.open.",
                resource=f"commit log {self.directory}",
            )

    def _check_writable(self) -> None:
        self._check_open()
        self._group.raise_if_failed()

    @contextmanager
    def _exclusive(self, operation: str | None) -> Iterator[None]:
        """Hold the writers' lock (threads, then processes). Re-entered by the holder only to read."""
        me = threading.get_ident()
        if self._owner == me:
            if operation is not None:
                self._refuse_nested(operation)
            yield
            return
        with self._write_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._owner = me
            try:
                yield
            finally:
                self._owner = None
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @staticmethod
    def _refuse_nested(operation: str) -> None:
        raise NestedWriteError(
            f"log.{operation}() was called inside a log.writer() block of the same thread; inside "
            "the block use the writer's own methods (w.append, w.read_since).",
            operation=operation,
        )

    def _require_tail(self) -> _Tail:
        assert self._tail is not None, "the log is open, so its tail is known"
        return self._tail

    def _release(self) -> None:
        for fd in [self._tail.seg.fd if self._tail else -1, self._lock_fd, self._open_fd]:
            if fd >= 0:
                os.close(fd)
        self._lock_fd = self._open_fd = -1

    # --- recovery -------------------------------------------------------------------------------------------

    def _recover(self, repair: bool) -> None:
        """Check the whole log, cut a torn tail and set the tail; holds the writers' lock."""
        found = recover_segments(self.directory, repair=repair, open_fd=self._open_fd)
        self.repair_report = found.report
        self._positions.reset(found.marks)
        tail = _Tail(found.segment, found.scan.offset, found.scan.lsn, found.scan.stop == "sealed")
        if found.scan.stop in ("torn", "zeros"):
            self._cut_tail(tail)
        self._set_tail(tail)

    def _set_tail(self, tail: _Tail) -> None:
        os.fdatasync(tail.seg.fd)
        self._tail, self._cursor = tail, tail.lsn
        self._group.start(tail.lsn, tail.seg)

    def _cut_tail(self, tail: _Tail) -> None:
        """Cut a torn tail (a record a crashed writer left half-written); holds the writers' lock."""
        size = os.fstat(tail.seg.fd).st_size
        try:
            os.ftruncate(tail.seg.fd, tail.offset)
            os.fdatasync(tail.seg.fd)
        except OSError as err:
            raise io_error(err, tail.seg.path, "cut the torn tail of", "The log is unchanged.") from err
        self.dropped_tail_bytes += size - tail.offset

    # --- following the tail ---------------------------------------------------------------------------------

    def _advance(self, locked: bool) -> bool:
        """Move the tail over records appended since this process last looked; holds ``_mutex``.

        Holding the writers' lock, a torn tail is cut and damage raises. Without it, a torn tail may be a
        record being written, so the walk stops there; damage returns ``False`` (to retry holding the lock).
        """
        t = self._require_tail()
        while True:
            if t.sealed and not self._enter_next_segment(t):
                return True
            size = os.fstat(t.seg.fd).st_size
            if size == t.offset:
                return True
            if size < t.offset:
                raise corruption_error(
                    t.seg.path,
                    size,
                    "the file is shorter than what this process already read from it (another "
                    "process repaired or replaced the log); close and reopen the log",
                )
            marks: list[tuple[int, int]] = []
            scan = walk(Window(t.seg.fd, size), t.offset, t.lsn, marks=marks)
            self._positions.note(t.seg.start, marks)
            t.offset, t.lsn, t.sealed = scan.offset, scan.lsn, scan.stop == "sealed"
            self._group.written(t.lsn, t.seg)
            if scan.stop == "sealed":
                continue
            if scan.stop == "end":
                return True
            if scan.stop == "corrupt":
                if locked:
                    raise corruption_error(t.seg.path, scan.offset, scan.reason)
                return False
            if locked:
                self._cut_tail(t)
            return True

    def _enter_next_segment(self, t: _Tail) -> bool:
        """Move a sealed tail into the next segment, if it exists (or the next left after truncation)."""
        start = t.lsn + 1
        path = self.directory / segment_name(start)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            later = [s for s in list_segments(self.directory) if s > start]
            if not later:
                return False
            start, path = later[0], self.directory / segment_name(later[0])
            fd = os.open(path, os.O_RDWR)
        problem = header_problem(fd, path, start)
        if problem is not None:
            os.close(fd)
            raise corruption_error(path, 0, problem)
        old, old_lsn = t.seg, t.lsn
        t.seg, t.offset, t.lsn, t.sealed = Segment(start, path, fd), _HEAD, start - 1, False
        self._group.moved(old, old_lsn, t.seg)
        return True

    # --- writing --------------------------------------------------------------------------------------------

    def _write_locked(self, payloads: list[bytes]) -> int:
        """Write records after the tail in one write; return the last LSN. Holds the lock and ``_mutex``."""
        t = self._require_tail()
        first = t.lsn + 1
        data = b"".join([encode_record(first + k, p) for k, p in enumerate(payloads)])
        if t.sealed or (t.offset > _HEAD and t.offset + len(data) > self.segment_size):
            self._roll_over(t)
        seg, offset = t.seg, t.offset
        try:
            kill_point("log.during_write", lambda: os.pwrite(seg.fd, data[: len(data) // 2], offset))
            pwrite_all(seg.fd, data, offset)
        except OSError as err:
            self._undo_write(seg, offset)
            raise io_error(err, seg.path, "write to", "The records were not written.") from err
        last = first + len(payloads) - 1
        t.offset, t.lsn = offset + len(data), last
        kill_point("log.after_write_before_fsync")
        self._group.written(last, seg)
        self._appends += len(payloads)
        return last

    def _undo_write(self, seg: Segment, offset: int) -> None:
        with suppress(OSError):  # if this fails, the next writer finds the partial record and cuts it
            os.ftruncate(seg.fd, offset)

    def _roll_over(self, t: _Tail) -> None:
        """Seal the full segment, fsync it, then create the next one (the order recovery relies on)."""
        old, old_lsn = t.seg, t.lsn
        if not t.sealed:
            try:
                pwrite_all(old.fd, end_mark(old_lsn + 1), t.offset)
            except OSError as err:
                self._undo_write(old, t.offset)
                raise io_error(err, old.path, "write to", "The records were not written.") from err
            t.offset, t.sealed = t.offset + _REC, True
        kill_point("log.during_rollover")
        self._group.fsync(old)
        try:
            new = create_segment(self.directory, old_lsn + 1)
        except OSError as err:
            raise io_error(
                err, self.directory, "create a segment in", "The records were not written."
            ) from err
        kill_point("log.after_rollover")
        self._group.moved(old, old_lsn, new)
        t.seg, t.offset, t.sealed = new, _HEAD, False
        self._rollovers += 1

    def _after_write(self, lsn: int) -> None:
        if self._waiting:
            with self._changed:
                self._changed.notify_all()
        self._await_durable(lsn)
        kill_point("log.after_fsync")

    def _await_durable(self, lsn: int, *, force: bool = False) -> None:
        if self.durability == "full" or force:
            self._group.wait(lsn)

    def _remove_segment(self, start: int) -> None:
        path = self.directory / segment_name(start)
        try:
            os.unlink(path)
            kill_point("log.during_truncate")
            fsync_dir(self.directory)
        except OSError as err:
            raise io_error(err, path, "delete", "Older segments are still in place.") from err
        self._positions.forget(start)

    # --- reading --------------------------------------------------------------------------------------------

    def _read(self, lsn: int, *, locked: bool) -> Iterator[LogRecord]:
        return self._reader.read(self._locate(lsn), lsn, locked=locked)

    def _locate(self, lsn: int) -> Position:
        """Where to start reading for the records after ``lsn``."""
        with self._mutex:
            t = self._require_tail()
            if lsn >= t.lsn:
                return (t.lsn + 1, _HEAD, t.lsn) if t.sealed else (t.seg.start, t.offset, t.lsn)
            hint = self._positions.hint(lsn)
            if hint is not None:
                return hint
            start = t.seg.start
            if lsn + 1 < start:
                starts = list_segments(self.directory)
                if not starts or lsn + 1 < starts[0]:
                    raise truncated_error(lsn, starts[0] if starts else start)
                start = starts[bisect.bisect_right(starts, lsn + 1) - 1]
            return self._positions.find(lsn, start)

    def _remember(self, start: int, marks: list[tuple[int, int]], scan: Scan) -> None:
        with self._mutex:
            self._positions.note(start, marks, scan)


class LogWriter:
    """The writers' critical section of a :class:`CommitLog`, from :meth:`CommitLog.writer`.

    While it is open no other thread or process appends, so :meth:`new_records` and :meth:`read_since` see
    everything before the records that :meth:`append` queues. Queued records are written when the ``with``
    block ends, all of them or (if it raises) none, and are durable once it has exited.

    Attributes
    ----------
    base_lsn:
        The log's newest LSN (of any process) when the section began.
    """

    __slots__ = ("_cursor", "_log", "_open", "_pending", "base_lsn")

    def __init__(self, log: CommitLog, cursor: int, base_lsn: int) -> None:
        self._log, self._cursor, self.base_lsn = log, cursor, base_lsn
        self._pending: list[bytes] = []
        self._open = True

    @property
    def last_lsn(self) -> int:
        """The newest LSN including the records queued so far."""
        return self.base_lsn + len(self._pending)

    def new_records(self) -> list[LogRecord]:
        """The records appended since this process's previous writer section ended (or the log opened).

        Those are the records of other processes, plus any that this process appended with
        :meth:`CommitLog.append` meanwhile.
        """
        return self.read_since(self._cursor)

    def read_since(self, lsn: int) -> list[LogRecord]:
        """The records above ``lsn`` that were in the log when the section began."""
        self._require_open()
        return list(self._log._read(lsn, locked=True))

    def append(self, payload: bytes | bytearray | memoryview) -> int:
        """Queue a record; return the LSN it gets (durable once the ``with`` block has exited)."""
        self._require_open()
        self._pending.append(as_payload(payload))
        return self.last_lsn

    def _require_open(self) -> None:
        self._log._check_open()
        if not self._open:
            raise ClosedError(
                "This log writer's block has ended: open a new one with `with log.writer() as w:`.",
                resource="log writer",
            )

"""zapnb's durable commit log: every transaction is appended here before it is acknowledged.

Responsibilities:
- append opaque byte records, each given the next log position (the LSN, which later layers use as the
  commit timestamp), and return once the record is durable; threads and processes share fsyncs (group commit);
- a cross-process critical section, :meth:`CommitLog.writer`, to read what others committed, check, append;
- tailing: :meth:`CommitLog.read_since`, :meth:`CommitLog.last_lsn`, :meth:`CommitLog.wait_for_append`;
- recovery on open: a torn tail is dropped, damage raises :class:`~zapnb.errors.CorruptionError`;
- :meth:`CommitLog.truncate_before` once a checkpoint holds the older records.

The bytes on disk are described in :mod:`zapnb.logformat`, what counts as a torn tail in
:mod:`zapnb.logrecover`, and following, writing and rolling over the newest segment in :mod:`zapnb.logtail`.

Protocol
--------
Appenders take a thread lock, then an ``flock`` on ``log/LOCK`` (so one writer at a time across threads and
processes), read whatever other processes appended since they last looked (one ``pread`` of the record header
at the known end when nothing was), write their records with one ``pwrite`` over the zeros that follow the
records of the newest segment, and release the lock. Only then do they wait for durability: the first waiter
of a process calls ``fdatasync`` and covers every record written so far, by any process, while later ones wait
on a condition (group commit). Since all processes write the same files in LSN order, one fsync covers every
earlier record.

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

from zapnb.durable import fsync_dir
from zapnb.errors import (
    ClosedError,
    CorruptionError,
    InvalidValueError,
    NestedWriteError,
    UsedAfterForkError,
)
from zapnb.faults import kill_point
from zapnb.logformat import (
    FORMAT_VERSION,
    MAX_PAYLOAD,
    PREALLOCATE,
    SEGMENT_HEADER_SIZE,
    LogRecord,
    Scan,
    as_payload,
    create_segment,
    io_error,
    list_segments,
    make_dirs,
    segment_name,
)
from zapnb.logread import LogReader, Position, Positions, truncated_error
from zapnb.logrecover import RepairReport, recover_segments
from zapnb.logsync import GroupCommit
from zapnb.logtail import Tail
from zapnb.logwriter import LogWriter

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
    "forks",
]

Durability = Literal["full", "process"]

DEFAULT_SEGMENT_SIZE: Final = 64 * 1024 * 1024
_HEAD: Final = SEGMENT_HEADER_SIZE
_POLL: Final = 0.01
_forks = 0  # fork() calls that made this process: a log opened before the last one is the parent's


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


def forks() -> int:
    """How many ``fork()`` calls made this process (0 in a process that was not forked): an object that saved
    the count when it was made is the parent's when it differs, found without a system call."""
    return _forks


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
        self._pid, self._forks = os.getpid(), _forks
        self._closed = False
        self._write_lock = threading.Lock()
        self._owner: int | None = None
        self._mutex = threading.Lock()
        self._group = GroupCommit()
        self._lock_fd = self._open_fd = -1
        self._tail: Tail | None = None
        self._cursor = 0
        self._positions = Positions()
        self._reader = LogReader(directory, self._settled, self._remember)

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
                    tail = self._require_tail()
                    tail.advance(locked=True)
                    lsn = tail.write([data])
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._after_write(lsn)
        return lsn

    def writer(self, *, wait: bool = True) -> LogWriter:
        """The writers' critical section, shared by every thread and process: ``with log.writer() as w:``.

        Inside, nobody else can append: :meth:`LogWriter.new_records` shows what others appended, and
        :meth:`LogWriter.append` queues records with the next LSNs. On leaving the block the queued records
        are written, the lock is released, and then (outside the lock, so others proceed) they are made
        durable. If the block raises, nothing is written.

        With ``wait=False`` leaving the block only starts making them durable (the disk writes while the
        caller goes on), and the caller must call :meth:`wait_durable` before acknowledging them.

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
        return LogWriter(self, wait)

    def wait_durable(self, lsn: int) -> None:
        """Return once record ``lsn`` is durable (in ``"full"`` mode), after ``log.writer(wait=False)``.

        Examples
        --------
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as data, CommitLog.open(data) as log:
        ...     with log.writer(wait=False) as w:
        ...         lsn = w.append(b"applied while it is fsynced")
        ...     log.wait_durable(lsn)
        ...     log.durable_lsn()
        1
        """
        self._check_open()
        self._after_write(lsn)

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

        Costs one ``pread`` when nothing new was appended, so it can be polled.
        """
        self._check_open()
        with self._mutex:
            tail = self._require_tail()
            if tail.advance(locked=self._owner == threading.get_ident()):
                return tail.lsn
        with self._exclusive(None), self._mutex:
            tail.advance(locked=True)
            return tail.lsn

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
        """Wait until another process appends a record above ``after_lsn``, or ``timeout`` seconds pass.

        Returns the newest LSN appended by others (another process, or another :class:`CommitLog` of the
        same directory): on open, the newest in the log. This log's own appends do not end the wait (whoever
        made them knows of them), so a caller that follows the log while also appending to it is woken only
        for what it has to read. Looks every 10 ms, one ``pread`` each time.

        Examples
        --------
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as data, CommitLog.open(data) as log:
        ...     (log.append(b"own"), log.wait_for_append(0, timeout=0.05))
        (1, 0)
        """
        deadline = time.monotonic() + timeout
        while True:
            self.last_lsn()
            others = self._require_tail().others_lsn
            remaining = deadline - time.monotonic()
            if others > after_lsn or remaining <= 0:
                return others
            time.sleep(min(_POLL, remaining))

    def sync(self) -> int:
        """Make every record written so far durable now, in either durability mode; return the newest LSN."""
        self._check_writable()
        lsn = self.last_lsn()
        self._group.wait(lsn)
        return lsn

    def truncate_before(self, lsn: int) -> int:
        """Delete the segments whose records all have an LSN of at most ``lsn``; return how many went.

        The caller must have made those records durable elsewhere (a checkpoint). The newest segment always
        stays, and a crash at any point leaves a log that opens.
        """
        self._check_writable()
        with self._exclusive("truncate_before"), self._mutex:
            tail = self._require_tail()
            tail.advance(locked=True)
            if lsn > tail.lsn:
                raise InvalidValueError(
                    f"truncate_before({lsn}) is past the end of the log (LSN {tail.lsn}): a "
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

    def start_after(self, lsn: int) -> bool:
        """Continue the log after ``lsn`` if it ends before it; return whether it did.

        For a log that a repair cut below a checkpoint at ``lsn``: every record it still has is older and
        held by that checkpoint, so they are deleted and the next record gets ``lsn + 1`` (otherwise new
        records would get LSNs the checkpoint already holds, and be skipped). Needs every other process to
        have the log closed, as a repair does.
        """
        self._check_writable()
        with self._exclusive("start_after"), self._mutex:
            tail = self._require_tail()
            tail.advance(locked=True)
            if tail.lsn >= lsn:
                return False
            try:
                fcntl.flock(self._open_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CorruptionError(
                    f"The commit log in {self.directory} ends at LSN {tail.lsn}, before the checkpoint at "
                    f"LSN {lsn} (a repair cut it), and another process has it open: close every other "
                    "process using this data directory, then open it again.",
                    file=str(tail.seg.path),
                    offset=tail.offset,
                ) from None
            try:
                self._restart(lsn + 1)
            finally:
                fcntl.flock(self._open_fd, fcntl.LOCK_SH)
            return True

    def _restart(self, start: int) -> None:
        """Replace every segment with an empty one whose first record is ``start`` (holds the lock)."""
        old = self._require_tail().seg
        for first in list_segments(self.directory):  # a crash in between leaves a log that restarts again
            self._remove_segment(first)
        os.close(old.fd)
        self._tail = None
        os.close(create_segment(self.directory, start, min(PREALLOCATE, self.segment_size)).fd)
        self._recover(repair=False)

    def stats(self) -> LogStats:
        """Counters of this process's use of the log (appends, fsyncs, rollovers): tests, benchmarks."""
        tail = self._require_tail()
        return LogStats(tail.appends, self._group.fsyncs, tail.rollovers)

    @property
    def dropped_tail_bytes(self) -> int:
        """Bytes of torn writes (left by crashed writers) that this log cut, on open or since."""
        return 0 if self._tail is None else self._tail.dropped_bytes

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
        if self._forks != _forks:  # without a system call: this runs several times per commit
            pid = os.getpid()
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

    @contextmanager
    def _settled(self) -> Iterator[None]:
        """Hold the writers' lock with the end of the log settled: a torn write cut, damage raised."""
        with self._exclusive(None):
            with self._mutex:
                self._require_tail().advance(locked=True)
            yield

    def _enter_writer(self, w: LogWriter) -> None:
        """Start a writer section: the lock (threads, then processes), then catch up with the log."""
        self._check_writable()
        me = threading.get_ident()
        if self._owner == me:
            self._refuse_nested("writer")
        self._write_lock.acquire()
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._owner = me
            try:
                with self._mutex:
                    tail = self._require_tail()
                    tail.advance(locked=True)
                    w.base_lsn, w._cursor = tail.lsn, self._cursor
            except BaseException:
                self._owner = None
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                raise
        except BaseException:
            self._write_lock.release()
            raise

    def _exit_writer(self, w: LogWriter, failed: bool) -> None:
        """End a writer section: write its records (unless it ``failed``), unlock, make them durable."""
        last = w.base_lsn
        try:
            if not failed:
                with self._mutex:
                    if w._pending:
                        last = self._require_tail().write(w._pending)
                    self._cursor = last
        finally:
            self._owner = None
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            self._write_lock.release()
        if not failed and w._pending:
            if w._wait:
                self._after_write(last)
            elif self.durability == "full":
                self._group.flush(last)

    @staticmethod
    def _refuse_nested(operation: str) -> None:
        raise NestedWriteError(
            f"log.{operation}() was called inside a log.writer() block of the same thread; inside "
            "the block use the writer's own methods (w.append, w.read_since).",
            operation=operation,
        )

    def _require_tail(self) -> Tail:
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
        preallocate = min(PREALLOCATE, self.segment_size)
        found = recover_segments(
            self.directory, repair=repair, open_fd=self._open_fd, preallocate=preallocate
        )
        self.repair_report = found.report
        self._positions.reset(found.marks)
        tail = Tail(
            self.directory, self.segment_size, self._group, self._positions, found.segment, found.scan
        )
        self._tail = tail
        if found.torn_end > tail.offset:
            tail.cut(found.torn_end)
        os.fdatasync(tail.seg.fd)
        self._cursor = tail.lsn
        self._group.start(tail.lsn, tail.seg)

    # --- writing --------------------------------------------------------------------------------------------

    def _after_write(self, lsn: int) -> None:
        if self.durability == "full":
            self._group.wait(lsn)
        kill_point("log.after_fsync")

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

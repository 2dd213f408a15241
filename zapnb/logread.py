"""Reading the commit log: where records are, and reading them across segments without the writers' lock.

Responsibilities:
- remember record boundaries seen while walking segments (one per 256 KiB, and where recent reads ended), so
  reading the records after an LSN starts near it instead of at its segment's start (:class:`Positions`);
- read records across segments, following end marks and segments removed by truncation (:class:`LogReader`).

A reader takes no lock: it stops quietly at a record still being written (or at zeros, where nothing is
written yet), and when it finds a bad record it looks again holding the writers' lock, after the log has cut
a torn write that a crashed process may have left there, before raising
:class:`~zapnb.errors.CorruptionError`.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final

from zapnb.errors import LogTruncatedError
from zapnb.logformat import (
    READ_CHUNK,
    SEGMENT_HEADER_SIZE,
    LogRecord,
    Scan,
    Segment,
    Window,
    corruption_error,
    header_problem,
    list_segments,
    segment_name,
    walk,
)

Position = tuple[int, int, int]
"""Where to read from: (the segment's first LSN, a byte offset in it, the LSN of the record before it)."""

_HEAD: Final = SEGMENT_HEADER_SIZE
_HINTS: Final = 64


class Positions:
    """Known record boundaries of one log.

    A mark ``(lsn, offset)`` of the segment starting at ``start`` says that the record after ``lsn`` starts
    at ``offset``. Not thread-safe: :class:`~zapnb.log.CommitLog` holds its mutex around every call.

    Examples
    --------
    >>> positions = Positions()
    >>> positions.note(1, [(10, 300_000)])
    >>> positions.find(25, 1)
    (1, 300000, 10)
    >>> positions.find(5, 1)
    (1, 24, 0)
    """

    def __init__(self) -> None:
        self._marks: dict[int, list[tuple[int, int]]] = {}
        self._hints: dict[int, tuple[int, int]] = {}

    def reset(self, marks: dict[int, list[tuple[int, int]]]) -> None:
        """Start over from the marks of a full check of the log."""
        self._marks, self._hints = marks, {}

    def note(self, start: int, marks: list[tuple[int, int]], scan: Scan | None = None) -> None:
        """Keep the marks found by a walk over segment ``start``, and where the walk stopped."""
        known = self._marks.setdefault(start, [])
        for mark in marks:
            i = bisect.bisect_left(known, mark)
            if i == len(known) or known[i] != mark:
                known.insert(i, mark)
        if scan is not None:
            self._hints[scan.lsn] = (scan.lsn + 1, _HEAD) if scan.stop == "sealed" else (start, scan.offset)
            if len(self._hints) > _HINTS:
                del self._hints[next(iter(self._hints))]

    def forget(self, start: int) -> None:
        """Drop what is known about a deleted segment."""
        self._marks.pop(start, None)
        self._hints = {lsn: pos for lsn, pos in self._hints.items() if pos[0] != start}

    def hint(self, lsn: int) -> Position | None:
        """The exact place where the record after ``lsn`` starts, if a recent read ended there."""
        found = self._hints.get(lsn)
        return None if found is None else (found[0], found[1], lsn)

    def find(self, lsn: int, start: int) -> Position:
        """The latest known boundary at or before the record after ``lsn``, in segment ``start``."""
        marks = self._marks.get(start, [])
        k = bisect.bisect_right(marks, (lsn, 1 << 62)) - 1
        return (start, marks[k][1], marks[k][0]) if k >= 0 else (start, _HEAD, start - 1)


def truncated_error(lsn: int, first: int) -> LogTruncatedError:
    """The error for records after ``lsn`` asked for when the log starts at ``first``."""
    return LogTruncatedError(
        f"Records after LSN {lsn} were asked for, but the log now starts at LSN {first}: a checkpoint "
        "removed the older ones. Read the tables as of the checkpoint, then the log from there.",
        requested=lsn + 1,
        first_available=first,
    )


class LogReader:
    """Reads the records of one log directory, each read with its own file descriptors.

    Parameters
    ----------
    directory:
        The ``log`` directory.
    exclusive:
        Makes a context that holds the writers' lock, the log's end settled (a torn write cut), to look again
        at a bad record.
    remember:
        Called with the marks and the stopping place of every walk (the log keeps them in its
        :class:`Positions`).
    """

    def __init__(
        self,
        directory: Path,
        exclusive: Callable[[], AbstractContextManager[None]],
        remember: Callable[[int, list[tuple[int, int]], Scan], None],
    ) -> None:
        self.directory, self._exclusive, self._remember = directory, exclusive, remember
        self._paths: dict[int, Path] = {}

    def read(self, position: Position, after: int, *, locked: bool) -> Iterator[LogRecord]:
        """The records with an LSN above ``after``, from ``position`` to the end of the log.

        ``locked`` says that the caller holds the writers' lock, so damage is damage at once.
        """
        start, offset, before = position
        while True:
            fd = self._open(start)
            if fd < 0:
                following = self._relocate(start, max(after, before))
            else:
                try:
                    seg = Segment(start, self._path(start), fd)
                    following = yield from self._read_segment(seg, offset, before, after, locked)
                finally:
                    os.close(fd)
            if following is None:
                return
            start, offset, before = following, _HEAD, following - 1

    def _read_segment(
        self, seg: Segment, offset: int, before: int, after: int, locked: bool
    ) -> Generator[LogRecord, None, int | None]:
        """Yield a segment's records above ``after``; return the next segment's first LSN if it is full."""
        while True:
            out: list[LogRecord] = []
            marks: list[tuple[int, int]] = []
            scan = self._walk(seg, offset, before, after, out, marks)
            if scan.stop == "corrupt" and not locked:
                with self._exclusive():
                    out.clear()
                    marks.clear()
                    scan = self._walk(seg, offset, before, after, out, marks)
            if scan.stop == "corrupt":
                raise corruption_error(seg.path, scan.offset, scan.reason)
            self._remember(seg.start, marks, scan)
            yield from out
            offset, before = scan.offset, scan.lsn
            if scan.stop == "sealed":
                return scan.lsn + 1
            if scan.stop != "more":
                return None

    @staticmethod
    def _walk(
        seg: Segment, offset: int, before: int, after: int, out: list[LogRecord], marks: list[tuple[int, int]]
    ) -> Scan:
        return walk(
            Window(seg.fd), offset, before, stop_at=offset + READ_CHUNK, out=out, after=after, marks=marks
        )

    def _relocate(self, start: int, done: int) -> int | None:
        """The segment to read when the one starting at ``start`` is missing (``None``: not created yet)."""
        starts = list_segments(self.directory)
        older = [s for s in starts if s <= done + 1]
        if older and older[-1] > start:
            return older[-1]
        if starts and starts[-1] > start:
            raise truncated_error(done, starts[0])
        return None

    def _path(self, start: int) -> Path:
        path = self._paths.get(start)
        if path is None:
            path = self._paths[start] = self.directory / segment_name(start)
        return path

    def _open(self, start: int) -> int:
        """A read-only descriptor of the segment starting at ``start``; -1 if there is no such file."""
        path = self._path(start)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return -1
        problem = header_problem(fd, path, start)
        if problem is not None:
            os.close(fd)
            raise corruption_error(path, 0, problem)
        return fd

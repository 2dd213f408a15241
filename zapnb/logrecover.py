"""Checking a commit log after a crash: where its records end, what is a torn write, what is damage.

Responsibilities:

- tell the bytes an unfinished write left after the last record (a *torn tail*, dropped) from damage to
  records that were acknowledged (a :class:`~zapnb.errors.CorruptionError` naming the file and offset)
  (:func:`check_tail`);
- check a whole log on open and find its newest segment (:func:`recover_segments`);
- cut a damaged log for ``repair=True``, keeping what was cut (:func:`repair_segments`).

Torn writes and damage
----------------------
Records are written over zeros (:mod:`zapnb.logformat`), and a record is acknowledged only after an
``fdatasync`` that covers it and, since writers take turns under one lock, every byte before it. After a
crash, each :data:`~zapnb.logformat.BLOCK` of the bytes written since the last completed ``fdatasync`` is
either as written or still zeros; a process killed inside ``pwrite`` leaves a prefix of whole pages. So
when the records of the newest segment stop at a bad record and something other than zeros follows, those
bytes are a torn write, and are dropped, when both hold:

- the bad record has a whole block that reads as zeros (its header, or its header and payload when the header
  is intact), or the file ends inside it: a flipped bit is damage;
- no intact record after it says, in its *synced lag*, that the bad record was already on disk when it was
  written: a record that was on disk and is now unreadable is damage, whatever follows.

A bad record in a full segment (which was fsynced before its successor was created) is always damage.

Examples
--------
>>> import os, tempfile
>>> from pathlib import Path
>>> from zapnb.logformat import create_segment, encode_record
>>> with tempfile.TemporaryDirectory() as directory:
...     seg = create_segment(Path(directory), 1, preallocate=4096)
...     record = encode_record(1, b"a" * 1000, synced=0)
...     _ = os.pwrite(seg.fd, record[:488], 24)  # the first block reached the disk, the rest did not
...     check_tail(seg.fd, 24, 0)
...     os.close(seg.fd)
(512, None)
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from zapnb.durable import fsync_dir
from zapnb.errors import CorruptionError
from zapnb.logformat import (
    BLOCK,
    READ_CHUNK,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    Scan,
    Segment,
    Window,
    close_all,
    corruption_error,
    create_segment,
    header_problem,
    is_end_mark,
    list_segments,
    read_header,
    segment_name,
    walk,
)

__all__ = ["Recovered", "RepairReport", "check_tail", "recover_segments", "repair_segments"]

_HEAD: Final = SEGMENT_HEADER_SIZE
_REC: Final = RECORD_HEADER_SIZE
_RESYNC: Final = 64
"""How many LSNs past a broken record header a search for the next intact header tries."""


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What ``CommitLog.open(..., repair=True)`` cut from a damaged log.

    Attributes
    ----------
    file, offset, reason:
        Where the damage was and what it was; the log now ends just before ``offset`` of ``file``.
    dropped_records:
        Records recognised in the cut bytes (a record whose header was destroyed cannot be counted).
    dropped_bytes:
        Bytes cut, including whole later segments (not counting zeros written ahead of the records).
    saved_to:
        The directory that keeps the cut bytes and segments, for forensics.

    Examples
    --------
    >>> RepairReport("log/00000000000000000001.zlog", 64, "bad checksum", 3, 90, "log/damaged").offset
    64
    """

    file: str
    offset: int
    reason: str
    dropped_records: int
    dropped_bytes: int
    saved_to: str


@dataclass(frozen=True, slots=True)
class Recovered:
    """A checked log: its newest segment (open), where its records end and why, where a torn write after
    them ends (``torn_end``; the records' end if there is none), read marks, and a repair report."""

    segment: Segment
    scan: Scan
    torn_end: int
    marks: dict[int, list[tuple[int, int]]]
    report: RepairReport | None


@dataclass(frozen=True, slots=True)
class Damage:
    """The first damage in a log: segment ``index`` of those checked, at ``offset``, after record ``lsn``."""

    index: int
    offset: int
    lsn: int
    reason: str


# --- the tail of the newest segment -------------------------------------------------------------------------


def check_tail(fd: int, offset: int, lsn: int, reason: str = "") -> tuple[int, str | None]:
    """Judge the bytes of a segment from ``offset`` (just after record ``lsn``) to its end.

    Returns ``(end, None)`` when they are zeros or a torn write that ends at ``end`` (the bytes to drop are
    ``[offset, end)``), or ``(offset, why)`` when the record at ``offset`` is damage (see the module
    docstring). ``reason`` is what the walk found wrong there, used in ``why``.
    """
    size = os.fstat(fd).st_size
    data = os.pread(fd, size - offset, offset) if size > offset else b""
    used = len(data.rstrip(b"\x00"))
    if not used:
        return offset, None
    expected = lsn + 1
    vouched = _newest_known_synced(data, expected)
    if vouched >= expected:
        return offset, (
            f"{reason or 'the record is unreadable'}, and a later record shows that record {expected} was "
            "already on disk"
        )
    problem = _not_torn(data, offset, expected)
    if problem is not None:
        return offset, problem
    return offset + used, None


def _not_torn(data: bytes, offset: int, expected: int) -> str | None:
    """Why the bad record at the start of ``data`` (at ``offset`` in its file) cannot be a torn write, or
    ``None`` when it can."""
    if len(data) < _REC:
        return None  # the file ends inside its header
    header = read_header(data, 0)
    if header is None:
        span, problem = _REC, "the record header checksum does not match"
    else:
        length, lsn, _lag, _crc = header
        if lsn != expected:
            return f"the record has LSN {lsn} where {expected} was expected"
        if is_end_mark(length):
            return "bytes follow the end-of-segment mark"
        span, problem = _REC + length, "the record checksum does not match its contents"
        if span > len(data):
            return None  # the file ends inside it
    first = offset - offset % BLOCK
    for block in range(first, offset + span, BLOCK):
        lo, hi = max(block, offset) - offset, min(block + BLOCK, offset + span) - offset
        if data.count(0, lo, hi) == hi - lo:
            return None  # a block of it was never written
    return problem


def _newest_known_synced(data: bytes, expected: int) -> int:
    """The newest LSN that an intact record header after the first one in ``data`` says was on disk."""
    newest = 0
    for _pos, _length, lsn, lag in _intact_headers(data, 0, expected):
        if lsn > expected:
            newest = max(newest, lsn - lag)
    return newest


def _intact_headers(buf: bytes, pos: int, expected: int) -> list[tuple[int, int, int, int]]:
    """``(position, length, lsn, synced lag)`` of the intact record headers in ``buf`` from ``pos`` on,
    following lengths and searching past broken headers; ``expected`` is the LSN of the first."""
    found = []
    while pos + _REC <= len(buf):
        header = read_header(buf, pos)
        if header is not None:
            length, lsn, lag, _crc = header
            if is_end_mark(length):
                break
            found.append((pos, length, lsn, lag))
            expected, pos = lsn + 1, pos + _REC + length
            continue
        pos = _resync(buf, pos + 1, expected)
        if pos < 0:
            break
    return found


def _resync(buf: bytes, start: int, expected: int) -> int:
    """The position of the first intact record header at or after ``start`` with an LSN near ``expected``."""
    best = -1
    for lsn in range(expected, expected + _RESYNC):
        pattern = struct.pack("<Q", lsn)
        i = buf.find(pattern, start + 4)
        while i >= 0 and (best < 0 or i - 4 < best) and i - 4 + _REC <= len(buf):
            if read_header(buf, i - 4) is not None:
                best = i - 4
                break
            i = buf.find(pattern, i + 1)
    return best


# --- checking and repairing a whole log ---------------------------------------------------------------------


def verify_segments(
    segs: list[Segment],
) -> tuple[Damage | None, Scan, int, dict[int, list[tuple[int, int]]]]:
    """Walk every segment from its start: the first damage (or ``None``), the last walk, where a torn write
    after it ends, and read marks.

    Every header is checked first, so a format version this zapnb does not read raises before anything else.
    Only the last segment may end torn; a full one must end with its end mark.
    """
    problems = [header_problem(seg.fd, seg.path, seg.start) for seg in segs]
    lsn = segs[0].start - 1
    scan = Scan(_HEAD, lsn, "end")
    all_marks: dict[int, list[tuple[int, int]]] = {}
    for k, seg in enumerate(segs):
        problem = problems[k]
        if problem is None and seg.start != lsn + 1:
            problem = f"the segment starts at LSN {seg.start} but the one before it ends at LSN {lsn}"
        if problem is not None:
            return Damage(k, 0, lsn, problem), scan, 0, all_marks
        marks: list[tuple[int, int]] = []
        scan = walk(Window(seg.fd, READ_CHUNK), _HEAD, lsn, marks=marks)
        all_marks[seg.start] = marks
        if k < len(segs) - 1 and scan.stop != "sealed":
            reason = scan.reason or "a full segment ends without its end mark"
            return Damage(k, scan.offset, scan.lsn, reason), scan, 0, all_marks
        lsn = scan.lsn
    torn_end = scan.offset
    if scan.stop in ("zeros", "torn", "corrupt"):
        torn_end, problem = check_tail(segs[-1].fd, scan.offset, scan.lsn, scan.reason)
        if problem is not None:
            return Damage(len(segs) - 1, scan.offset, scan.lsn, problem), scan, 0, all_marks
    return None, scan, torn_end, all_marks


def recover_segments(directory: Path, *, repair: bool, open_fd: int, preallocate: int) -> Recovered:
    """Check a whole log (holding the writers' lock), repairing it if asked; create it if it is empty.

    ``open_fd`` is the log's ``OPEN`` lock file, held shared by every open log: a repair needs it exclusively.
    """
    for name in os.listdir(directory):
        if name.endswith(".zlog.tmp"):
            os.unlink(directory / name)
    starts = list_segments(directory)
    if not starts:
        segment = create_segment(directory, 1, preallocate)
        return Recovered(segment, Scan(_HEAD, 0, "zeros"), _HEAD, {}, None)
    segs = [Segment(s, directory / segment_name(s), -1) for s in starts]
    try:
        for seg in segs:
            seg.fd = os.open(seg.path, os.O_RDWR)
        damage, scan, torn_end, marks = verify_segments(segs)
        if damage is not None:
            error = corruption_error(segs[damage.index].path, damage.offset, damage.reason)
            if not repair:
                raise error
            report = _repair_alone(directory, segs, damage, open_fd, error)
    except BaseException:
        close_all(segs)
        raise
    if damage is not None:
        close_all(segs)
        again = recover_segments(directory, repair=False, open_fd=open_fd, preallocate=preallocate)
        return dataclasses.replace(again, report=report)
    close_all(segs[:-1])
    return Recovered(segs[-1], scan, torn_end, marks, None)


def _repair_alone(
    directory: Path, segs: list[Segment], damage: Damage, open_fd: int, error: CorruptionError
) -> RepairReport:
    """Repair, if no other process has the log open."""
    try:
        fcntl.flock(open_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        message = f"{error} Another process has the log open: close it, then repair."
        raise CorruptionError(message, file=error.file, offset=error.offset) from None
    try:
        return repair_segments(directory, segs, damage)
    finally:
        fcntl.flock(open_fd, fcntl.LOCK_SH)


def repair_segments(directory: Path, segs: list[Segment], damage: Damage) -> RepairReport:
    """Cut the log at ``damage``: keep the cut bytes and later segments in ``damaged/``, then truncate.

    Every step is durable before the next, so a crash leaves a log that is still damaged (and repaired
    again) or repaired.
    """
    seg, later = segs[damage.index], segs[damage.index + 1 :]
    saved = directory / "damaged"
    saved.mkdir(exist_ok=True)
    size = os.fstat(seg.fd).st_size
    cut = os.pread(seg.fd, size - damage.offset, damage.offset).rstrip(b"\x00")
    top = max(
        [_highest_lsn(cut, damage.lsn + 1)]
        + [_highest_lsn(os.pread(s.fd, os.fstat(s.fd).st_size, 0), s.start, _HEAD) for s in later]
    )
    dropped = len(cut) + sum(os.fstat(s.fd).st_size for s in later)
    with open(saved / f"{seg.path.name}.from-{damage.offset}", "wb") as copy:
        copy.write(cut)
        copy.flush()
        os.fsync(copy.fileno())
    for other in later:
        os.replace(other.path, saved / other.path.name)
    fsync_dir(directory)
    if damage.offset < _HEAD:
        os.replace(seg.path, saved / seg.path.name)
        if damage.index == 0:
            os.close(create_segment(directory, seg.start).fd)
    else:
        os.ftruncate(seg.fd, damage.offset)
        os.fdatasync(seg.fd)
    fsync_dir(saved)
    fsync_dir(directory)
    reported = max(0, top - damage.lsn)
    return RepairReport(str(seg.path), damage.offset, damage.reason, reported, dropped, str(saved))


def _highest_lsn(buf: bytes, expected: int, pos: int = 0) -> int:
    """The highest LSN among the records with an intact header in ``buf`` from ``pos`` on (0 if none)."""
    return max((lsn for _pos, _length, lsn, _lag in _intact_headers(buf, pos, expected)), default=0)

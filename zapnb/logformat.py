"""The commit log's bytes on disk: records, segment files, checking them, and cutting out damage.

Responsibilities:
- encode records and segment headers, and walk a segment checking every record (:func:`walk`);
- tell a torn tail (a file that ends inside a record, or ends in zeros) from damage;
- create segment files crash-safely, and cut a damaged log for ``repair=True`` (:func:`repair_segments`).

The protocol around these bytes (locks, group commit, tailing) is in :mod:`zapnb.log`.

Layout (format version 1)
-------------------------
``<data directory>/log/`` holds ``LOCK`` (the writers' ``flock``), ``OPEN`` (a shared ``flock`` held by every
open log, so a repair can tell that nobody else has it open) and segments named after their first LSN,
``00000000000000000001.zlog``. A segment starts with a 24-byte header: ``b"ZAPNBLOG"``, the format version
(u32), the segment's first LSN (u64) and a CRC-32 of those (u32). Records follow, each a 20-byte header and
the payload:

==========  ====  ===============================================================
length      u32   payload bytes (``0xFFFFFFFF`` marks the end of a full segment)
lsn         u64   the log position: consecutive, starting at 1
header crc  u32   CRC-32 of length and lsn (a length is trusted only if it matches)
crc         u32   CRC-32 of length, lsn and payload
==========  ====  ===============================================================

Integers are little-endian. A full segment ends with an end mark holding the next segment's first LSN, and
the next segment is created only once the full one is fsynced, so a durable record implies that every record
before it, in any segment, is durable. CRC-32 (zlib) checks 250 bytes in 0.25 us and runs at 4 GB/s on large
payloads (an 8-byte BLAKE2b: 0.5 us and 0.9 GB/s), and catches every burst error of up to 32 bits.

Examples
--------
>>> from zapnb.logformat import RECORD_HEADER_SIZE, encode_record
>>> len(encode_record(1, b"abc")) == RECORD_HEADER_SIZE + 3
True
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from zapnb.durable import fsync_dir
from zapnb.errors import CorruptionError, FormatVersionError, InvalidValueError, StorageIOError
from zapnb.faults import kill_point

FORMAT_VERSION: Final = 1
MAX_PAYLOAD: Final = 0xFFFF_FFFE
READ_CHUNK: Final = 1 << 20
MARK_STRIDE: Final = 1 << 18

_MAGIC: Final = b"ZAPNBLOG"
_SEG_HEAD: Final = struct.Struct("<8sIQI")
_REC_HEAD: Final = struct.Struct("<IQII")
_LEN_LSN: Final = struct.Struct("<IQ")
_CRCS: Final = struct.Struct("<II")
_END_MARK: Final = 0xFFFF_FFFF
_NAME: Final = re.compile(r"^(\d{20})\.zlog$")
SEGMENT_HEADER_SIZE: Final = _SEG_HEAD.size
RECORD_HEADER_SIZE: Final = _REC_HEAD.size
_HEAD: Final = SEGMENT_HEADER_SIZE
_REC: Final = RECORD_HEADER_SIZE

Stop = Literal["end", "more", "sealed", "torn", "zeros", "corrupt"]


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record of the log: its position (LSN) and its bytes.

    Examples
    --------
    >>> LogRecord(1, b"x")
    LogRecord(lsn=1, payload=b'x')
    """

    lsn: int
    payload: bytes


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
        Bytes cut, including whole later segments.
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


@dataclass(slots=True, eq=False)
class Segment:
    """An open segment file: its first LSN, path and descriptor."""

    start: int
    path: Path
    fd: int


@dataclass(frozen=True, slots=True)
class Scan:
    """Where a walk over one segment stopped: after record ``lsn``, at ``offset``, and why."""

    offset: int
    lsn: int
    stop: Stop
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Recovered:
    """A checked log: its newest segment (open), how the walk over it ended, read marks, a repair report."""

    segment: Segment
    scan: Scan
    marks: dict[int, list[tuple[int, int]]]
    report: RepairReport | None


@dataclass(frozen=True, slots=True)
class Damage:
    """The first damage in a log: segment ``index`` of those checked, at ``offset``, after record ``lsn``."""

    index: int
    offset: int
    lsn: int
    reason: str


# --- records ------------------------------------------------------------------------------------------------


def encode_record(lsn: int, payload: bytes) -> bytes:
    """The bytes of one record."""
    head = _LEN_LSN.pack(len(payload), lsn)
    hcrc = zlib.crc32(head)
    return head + _CRCS.pack(hcrc, zlib.crc32(payload, hcrc)) + payload


def end_mark(next_lsn: int) -> bytes:
    """The bytes that close a full segment whose successor starts at ``next_lsn``."""
    head = _LEN_LSN.pack(_END_MARK, next_lsn)
    hcrc = zlib.crc32(head)
    return head + _CRCS.pack(hcrc, hcrc)


def as_payload(payload: object) -> bytes:
    """``payload`` as ``bytes``, or :class:`~zapnb.errors.InvalidValueError` if it cannot be a record."""
    if isinstance(payload, bytes):
        data = payload
    elif isinstance(payload, bytearray | memoryview):
        data = bytes(payload)
    else:
        name = type(payload).__name__
        raise InvalidValueError(f"A log record is bytes, not {name}: encode the payload first.", value=name)
    if len(data) > MAX_PAYLOAD:
        raise InvalidValueError(
            f"A log record holds at most {MAX_PAYLOAD} bytes, not {len(data)}: split the write into several "
            "transactions.",
            value=len(data),
        )
    return data


class Window:
    """Buffered reads of one file, up to a size fixed when the window is made."""

    __slots__ = ("base", "buf", "fd", "size")

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size, self.base, self.buf = fd, size, 0, b""

    def at(self, offset: int, n: int) -> int:
        """The index in ``buf`` of the file's bytes ``[offset, offset + n)``, or -1 if the file ends first."""
        i = offset - self.base
        if i >= 0 and i + n <= len(self.buf):
            return i
        want = min(max(n, READ_CHUNK), self.size - offset)
        if want < n:
            return -1
        self.buf, self.base = os.pread(self.fd, want, offset), offset
        return 0 if len(self.buf) >= n else -1


def _all_zero(fd: int, offset: int, size: int) -> bool:
    while offset < size:
        chunk = os.pread(fd, min(READ_CHUNK, size - offset), offset)
        if not chunk:
            break
        if chunk.count(0) != len(chunk):
            return False
        offset += len(chunk)
    return True


def walk(
    win: Window,
    offset: int,
    lsn: int,
    *,
    stop_at: int | None = None,
    out: list[LogRecord] | None = None,
    after: int = 0,
    marks: list[tuple[int, int]] | None = None,
) -> Scan:
    """Check the records from ``offset`` (just after record ``lsn``) up to the window's end or ``stop_at``.

    Collects the records with an LSN above ``after`` into ``out``, and ``(lsn, offset after it)`` pairs at
    ``MARK_STRIDE`` intervals into ``marks`` (places to start later reads from).
    """
    limit = win.size if stop_at is None else min(win.size, stop_at)
    while offset < limit:
        i = win.at(offset, _REC)
        if i < 0:
            return Scan(offset, lsn, "torn", "the file ends inside a record header")
        buf = win.buf
        length, rlsn, hcrc, crc = _REC_HEAD.unpack_from(buf, i)
        if zlib.crc32(buf[i : i + 12]) != hcrc:
            if _all_zero(win.fd, offset, win.size):
                return Scan(offset, lsn, "zeros")
            return Scan(offset, lsn, "corrupt", "the record header checksum does not match")
        if rlsn != lsn + 1:
            return Scan(offset, lsn, "corrupt", f"the record has LSN {rlsn} where {lsn + 1} was expected")
        if length == _END_MARK:
            if offset + _REC != win.size:
                return Scan(offset, lsn, "corrupt", "bytes follow the end-of-segment mark")
            return Scan(offset + _REC, lsn, "sealed")
        i = win.at(offset, _REC + length)
        if i < 0:
            return Scan(offset, lsn, "torn", "the file ends inside a record")
        buf = win.buf
        if zlib.crc32(memoryview(buf)[i + _REC : i + _REC + length], hcrc) != crc:
            return Scan(offset, lsn, "corrupt", "the record checksum does not match its contents")
        if out is not None and rlsn > after:
            out.append(LogRecord(rlsn, buf[i + _REC : i + _REC + length]))
        end = offset + _REC + length
        if marks is not None and end // MARK_STRIDE != offset // MARK_STRIDE:
            marks.append((rlsn, end))
        offset, lsn = end, rlsn
    return Scan(offset, lsn, "end" if offset >= win.size else "more")


# --- segment files ------------------------------------------------------------------------------------------


def segment_name(start: int) -> str:
    """The file name of the segment whose first LSN is ``start``."""
    return f"{start:020d}.zlog"


def list_segments(directory: Path) -> list[int]:
    """The first LSNs of the segments in ``directory``, ascending."""
    return sorted(int(m.group(1)) for m in map(_NAME.match, os.listdir(directory)) if m)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``pwrite`` may write less than asked)."""
    written = os.pwrite(fd, data, offset)
    if written == len(data):
        return
    view, offset = memoryview(data)[written:], offset + written
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def make_dirs(log_dir: Path) -> None:
    """Create the log directory (and the data directory), fsyncing the parents of what was created."""
    missing = [p for p in (log_dir.parent, log_dir) if not p.exists()]
    log_dir.mkdir(parents=True, exist_ok=True)
    for path in missing:
        fsync_dir(path.parent)


def header_problem(fd: int, path: Path, start: int) -> str | None:
    """What is wrong with a segment's header, or ``None``.

    A format version this zapnb does not read raises :class:`~zapnb.errors.FormatVersionError`.
    """
    raw = os.pread(fd, _HEAD, 0)
    if len(raw) < _HEAD or raw[:8] != _MAGIC:
        return "the segment header is missing or is not a zapnb log header"
    _, version, first, crc = _SEG_HEAD.unpack(raw)
    if version != FORMAT_VERSION:
        raise FormatVersionError(
            f"{path} is in commit log format version {version}, and this zapnb reads version "
            f"{FORMAT_VERSION}. Open the data directory with the zapnb release that wrote it (or newer).",
            file=str(path),
            found=version,
            supported=FORMAT_VERSION,
        )
    if zlib.crc32(raw[:20]) != crc:
        return "the segment header checksum does not match"
    if first != start:
        return f"the segment header says it starts at LSN {first}, its name says {start}"
    return None


def create_segment(directory: Path, start: int) -> Segment:
    """Create a segment under a temporary name, fsync it, rename it into place and fsync the directory."""
    path = directory / segment_name(start)
    tmp = directory / (path.name + ".tmp")
    head = _SEG_HEAD.pack(_MAGIC, FORMAT_VERSION, start, 0)[:20]
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        pwrite_all(fd, head + struct.pack("<I", zlib.crc32(head)), 0)
        os.fdatasync(fd)
        kill_point("log.before_segment_rename")
        os.rename(tmp, path)
        fsync_dir(directory)
    except BaseException:
        os.close(fd)
        raise
    return Segment(start, path, fd)


def close_all(segs: list[Segment]) -> None:
    """Close the segments' descriptors (those still open)."""
    for seg in segs:
        if seg.fd >= 0:
            os.close(seg.fd)
            seg.fd = -1


def corruption_error(path: Path, offset: int, reason: str) -> CorruptionError:
    """The error for damage at ``offset`` of ``path``, saying what to do."""
    return CorruptionError(
        f"The commit log is damaged at byte {offset} of {path}: {reason}. Committed records from there on "
        "cannot be trusted, and zapnb does not continue with a silently shorter history. Restore the data "
        "directory from a backup, or open it with repair=True to cut the log at the damage (the cut bytes "
        f"are kept in {path.parent / 'damaged'} and the number of dropped records is reported).",
        file=str(path),
        offset=offset,
    )


def io_error(err: OSError, path: Path, operation: str, consequence: str) -> StorageIOError:
    """The error for an operating-system failure while doing ``operation`` on ``path``."""
    advice = "free disk space" if err.errno == errno.ENOSPC else "check the disk and the file permissions"
    return StorageIOError(
        f"Could not {operation} {path}: {err.strerror}. {consequence} Then {advice} and retry.",
        path=str(path),
        operation=operation,
        errno=err.errno or 0,
    )


# --- checking and repairing a whole log ---------------------------------------------------------------------


def verify_segments(segs: list[Segment]) -> tuple[Damage | None, Scan, dict[int, list[tuple[int, int]]]]:
    """Walk every segment from its start: the first damage (or ``None``), the last walk, and read marks.

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
            return Damage(k, 0, lsn, problem), scan, all_marks
        marks: list[tuple[int, int]] = []
        scan = walk(Window(seg.fd, os.fstat(seg.fd).st_size), _HEAD, lsn, marks=marks)
        all_marks[seg.start] = marks
        if scan.stop == "corrupt" or (k < len(segs) - 1 and scan.stop != "sealed"):
            reason = scan.reason or "a full segment ends without its end mark"
            return Damage(k, scan.offset, scan.lsn, reason), scan, all_marks
        lsn = scan.lsn
    return None, scan, all_marks


def recover_segments(directory: Path, *, repair: bool, open_fd: int) -> Recovered:
    """Check a whole log (holding the writers' lock), repairing it if asked; create it if it is empty.

    ``open_fd`` is the log's ``OPEN`` lock file, held shared by every open log: a repair needs it exclusively.
    """
    for name in os.listdir(directory):
        if name.endswith(".zlog.tmp"):
            os.unlink(directory / name)
    starts = list_segments(directory)
    if not starts:
        return Recovered(create_segment(directory, 1), Scan(_HEAD, 0, "end"), {}, None)
    segs = [Segment(s, directory / segment_name(s), -1) for s in starts]
    try:
        for seg in segs:
            seg.fd = os.open(seg.path, os.O_RDWR)
        damage, scan, marks = verify_segments(segs)
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
        return dataclasses.replace(recover_segments(directory, repair=False, open_fd=open_fd), report=report)
    close_all(segs[:-1])
    return Recovered(segs[-1], scan, marks, None)


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
    top = max(
        [_highest_lsn(seg.fd, damage.offset, damage.lsn + 1)]
        + [_highest_lsn(s.fd, _HEAD, s.start) for s in later]
    )
    dropped = size - damage.offset + sum(os.fstat(s.fd).st_size for s in later)
    with open(saved / f"{seg.path.name}.from-{damage.offset}", "wb") as copy:
        copy.write(os.pread(seg.fd, size - damage.offset, damage.offset))
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


def _resync(buf: bytes, start: int, expected: int) -> int:
    """The position of the first intact record header at or after ``start`` with an LSN near ``expected``."""
    best = -1
    for lsn in range(expected, expected + 16):
        pattern = struct.pack("<Q", lsn)
        i = buf.find(pattern, start + 4)
        while i >= 0 and (best < 0 or i - 4 < best) and i + 16 <= len(buf):
            if zlib.crc32(buf[i - 4 : i + 8]) == _REC_HEAD.unpack_from(buf, i - 4)[2]:
                best = i - 4
                break
            i = buf.find(pattern, i + 1)
    return best


def _highest_lsn(fd: int, offset: int, expected: int) -> int:
    """The highest LSN among the records with an intact header at or after ``offset`` (0 if none)."""
    buf = os.pread(fd, max(0, os.fstat(fd).st_size - offset), offset)
    pos, top = 0, 0
    while pos + _REC <= len(buf):
        length, lsn, hcrc, _ = _REC_HEAD.unpack_from(buf, pos)
        if zlib.crc32(buf[pos : pos + 12]) == hcrc:
            if length == _END_MARK:
                break
            top, expected, pos = max(top, lsn), lsn + 1, pos + _REC + length
            continue
        pos = _resync(buf, pos + 1, expected)
        if pos < 0:
            break
    return top

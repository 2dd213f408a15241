"""The commit log: format, recovery, group commit, processes, crashes (zapnb.log)."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strace_support import run_with_failing_fsync

from zapnb.errors import (
    ClosedError,
    CorruptionError,
    FormatVersionError,
    InvalidValueError,
    LogTruncatedError,
    NestedWriteError,
    StorageIOError,
    UsedAfterForkError,
)
from zapnb.log import CommitLog, LogRecord, LogWriter
from zapnb.logformat import PREALLOCATE

ROOT = Path(__file__).resolve().parent.parent
HEAD = 24  # segment header
REC = 24  # record header


def segments(data: Path) -> list[Path]:
    return sorted((data / "log").glob("*.zlog"))


def payloads_of(log: CommitLog, after: int = 0) -> list[bytes]:
    return [r.payload for r in log.read_since(after)]


def record_offsets(payload_sizes: list[int]) -> list[int]:
    """Byte offsets of each record in a single segment holding records of these payload sizes."""
    offsets, offset = [], HEAD
    for size in payload_sizes:
        offsets.append(offset)
        offset += REC + size
    return [*offsets, offset]


def fresh_copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def three_records(tmp_path: Path) -> tuple[Path, list[int]]:
    """A closed log with three 30-byte records; returns its data directory and the records' offsets."""
    data = tmp_path / "src"
    with CommitLog.open(data) as log:
        for k in range(3):
            log.append(bytes([65 + k]) * 30)
    return data, record_offsets([30, 30, 30])


# --- basics -------------------------------------------------------------------------------------------------


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path) as log:
        assert log.last_lsn() == 0
        assert [
            log.append(b"one"),
            log.append(bytearray(b"two")),
            log.append(memoryview(b"")),
            log.append(b"4"),
        ] == [
            1,
            2,
            3,
            4,
        ]
        assert log.durable_lsn() == 4
    assert [p.name for p in segments(tmp_path)] == ["00000000000000000001.zlog"]
    with CommitLog.open(tmp_path) as log:
        assert log.last_lsn() == 4
        assert list(log.read_since(0)) == [
            LogRecord(1, b"one"),
            LogRecord(2, b"two"),
            LogRecord(3, b""),
            LogRecord(4, b"4"),
        ]
        assert payloads_of(log, 2) == [b"", b"4"]
        assert payloads_of(log, 4) == []
        assert log.append(b"five") == 5


def test_payload_must_be_bytes(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path) as log:
        with pytest.raises(InvalidValueError, match="bytes, not str"):
            log.append("text")  # type: ignore[arg-type]
        assert log.last_lsn() == 0


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError, match="durability"):
        CommitLog.open(tmp_path, durability="lazy")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="segment_size"):
        CommitLog.open(tmp_path, segment_size=100)


def test_closed_log_raises(tmp_path: Path) -> None:
    log = CommitLog.open(tmp_path)
    log.close()
    log.close()
    with pytest.raises(ClosedError, match="open it again"):
        log.append(b"x")
    with pytest.raises(ClosedError):
        log.last_lsn()


def test_rollover_read_since_across_segments_and_reopen(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path, segment_size=4096) as log:
        expected = [f"record {i:04d} ".encode() * 8 for i in range(300)]
        for payload in expected:
            log.append(payload)
        assert log.stats().rollovers == 9
        for after in (0, 1, 37, 150, 299, 300):
            assert payloads_of(log, after) == expected[after:]
    files = segments(tmp_path)
    assert len(files) == 10
    assert all(f.stat().st_size <= 4096 + REC for f in files[:-1])  # full segments end at their end mark
    starts = [int(f.name.split(".")[0]) for f in files]
    assert starts[0] == 1
    with CommitLog.open(tmp_path, segment_size=4096) as log:
        assert log.last_lsn() == 300
        assert payloads_of(log) == expected
        for after in range(0, 301, 13):
            assert [r.lsn for r in log.read_since(after)] == list(range(after + 1, 301))
        assert log.append(b"more") == 301


def test_read_since_uses_positions_inside_a_large_segment(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path, durability="process") as log:
        expected = [os.urandom(500) for _ in range(3000)]
        with log.writer() as w:
            for payload in expected:
                w.append(payload)
    with CommitLog.open(tmp_path) as log:
        for after in (0, 999, 2500, 2999, 1500, 3000):
            assert payloads_of(log, after) == expected[after:]


def test_truncate_before_removes_whole_segments(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path, segment_size=4096) as log:
        for i in range(200):
            log.append(f"{i:03d}".encode() * 40)
        starts = [int(f.name.split(".")[0]) for f in segments(tmp_path)]
        cut = starts[3] + 1  # inside the fourth segment: the first three go
        assert log.truncate_before(cut) == 3
        assert log.first_lsn() == starts[3]
        assert [int(f.name.split(".")[0]) for f in segments(tmp_path)] == starts[3:]
        assert next(iter(log.read_since(starts[3] - 1))).lsn == starts[3]
        with pytest.raises(LogTruncatedError) as info:
            list(log.read_since(0))
        assert (info.value.requested, info.value.first_available) == (1, starts[3])
        assert log.truncate_before(log.last_lsn()) == len(starts) - 4  # the newest segment always stays
        assert len(segments(tmp_path)) == 1
        with pytest.raises(InvalidValueError, match="past the end"):
            log.truncate_before(10_000)
        assert log.append(b"after") == 201
    with CommitLog.open(tmp_path, segment_size=4096) as log:
        assert log.last_lsn() == 201
        assert payloads_of(log, 200) == [b"after"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 700), min_size=1, max_size=60), st.integers(0, 60))
def test_read_since_returns_exactly_the_later_records(sizes: list[int], after: int) -> None:
    with (
        tempfile.TemporaryDirectory() as data,
        CommitLog.open(data, durability="process", segment_size=4096) as log,
    ):
        expected = [bytes([k % 256]) * size for k, size in enumerate(sizes)]
        for payload in expected:
            log.append(payload)
        assert [(r.lsn, r.payload) for r in log.read_since(after)] == list(enumerate(expected, start=1))[
            after:
        ]


# --- recovery -----------------------------------------------------------------------------------------------


def test_cut_at_every_byte_of_the_last_record_drops_it_silently(
    tmp_path: Path, three_records: tuple[Path, list[int]]
) -> None:
    src, offsets = three_records
    raw = segments(src)[0].read_bytes()
    assert raw[offsets[3] :] == bytes(PREALLOCATE - offsets[3])  # zeros written ahead of the records
    for cut in range(offsets[2], offsets[3]):
        data = fresh_copy(src, tmp_path / "cut")
        segments(data)[0].write_bytes(raw[:cut])
        with CommitLog.open(data) as log:
            assert log.last_lsn() == 2, cut
            assert log.dropped_tail_bytes == len(raw[offsets[2] : cut].rstrip(b"\x00"))
            assert payloads_of(log) == [b"A" * 30, b"B" * 30]
            assert log.append(b"new") == 3
        written = segments(data)[0].read_bytes()
        assert written[offsets[2] : offsets[2] + REC + 3].endswith(b"new")
        assert written[offsets[2] + REC + 3 :].count(0) == len(written) - offsets[2] - REC - 3
        with CommitLog.open(data) as log:
            assert payloads_of(log) == [b"A" * 30, b"B" * 30, b"new"]


def test_zeros_after_the_records_are_where_they_end(
    tmp_path: Path, three_records: tuple[Path, list[int]]
) -> None:
    src, offsets = three_records
    raw = segments(src)[0].read_bytes()[: offsets[3]]
    data = fresh_copy(src, tmp_path / "zeros")
    segments(data)[0].write_bytes(raw + bytes(5000))
    with CommitLog.open(data) as log:
        assert (log.last_lsn(), log.dropped_tail_bytes) == (3, 0)
        assert log.append(b"over the zeros") == 4
    assert segments(data)[0].stat().st_size == offsets[3] + 5000  # written over them, not after them
    data = fresh_copy(src, tmp_path / "no-zeros")
    segments(data)[0].write_bytes(raw)
    with CommitLog.open(data) as log:
        assert log.last_lsn() == 3
        assert log.append(b"grows the file") == 4
    data = fresh_copy(src, tmp_path / "zeroed-record")
    segments(data)[0].write_bytes(raw[: offsets[2]] + bytes(4096))
    with CommitLog.open(data) as log:
        assert log.last_lsn() == 2


def test_zeros_followed_by_data_is_corruption(tmp_path: Path, three_records: tuple[Path, list[int]]) -> None:
    src, offsets = three_records
    raw = segments(src)[0].read_bytes()
    data = fresh_copy(src, tmp_path / "x")
    segments(data)[0].write_bytes(raw[: offsets[1]] + bytes(offsets[2] - offsets[1]) + raw[offsets[2] :])
    with pytest.raises(CorruptionError) as info:
        CommitLog.open(data)
    assert info.value.offset == offsets[1]


def test_a_flipped_byte_anywhere_in_an_earlier_record_raises(
    tmp_path: Path, three_records: tuple[Path, list[int]]
) -> None:
    src, offsets = three_records
    raw = segments(src)[0].read_bytes()
    for position in range(offsets[1], offsets[2]):
        data = fresh_copy(src, tmp_path / "flip")
        damaged = bytearray(raw)
        damaged[position] ^= 0x10
        segments(data)[0].write_bytes(bytes(damaged))
        with pytest.raises(CorruptionError, match="repair=True") as info:
            CommitLog.open(data)
        assert info.value.file == str(segments(data)[0])
        assert info.value.offset == offsets[1], position
        assert segments(data)[0].read_bytes() == bytes(damaged)  # left untouched


def test_a_complete_last_record_with_a_bad_checksum_raises(
    tmp_path: Path, three_records: tuple[Path, list[int]]
) -> None:
    src, offsets = three_records
    damaged = bytearray(segments(src)[0].read_bytes())
    damaged[offsets[3] - 1] ^= 1
    segments(src)[0].write_bytes(bytes(damaged))
    with pytest.raises(CorruptionError, match="checksum") as info:
        CommitLog.open(src)
    assert info.value.offset == offsets[2]


def test_repair_cuts_at_the_damage_and_reports(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path) as log:
        for k in range(5):
            log.append(bytes([65 + k]) * 30)
    offsets = record_offsets([30] * 5)
    path = segments(tmp_path)[0]
    damaged = bytearray(path.read_bytes())
    damaged[offsets[1] + REC + 3] ^= 0xFF
    other = CommitLog.open(tmp_path)  # the log is open elsewhere while it gets damaged
    path.write_bytes(bytes(damaged))
    with pytest.raises(CorruptionError, match="close it, then repair"):
        CommitLog.open(tmp_path, repair=True)
    other.close()
    with CommitLog.open(tmp_path, repair=True) as log:
        report = log.repair_report
        assert report is not None
        assert (report.file, report.offset, report.dropped_records) == (str(path), offsets[1], 4)
        assert report.dropped_bytes == offsets[5] - offsets[1]
        saved = Path(report.saved_to) / f"{path.name}.from-{offsets[1]}"
        assert saved.read_bytes() == bytes(damaged[offsets[1] : offsets[5]])  # without the zeros after
        assert log.last_lsn() == 1
        assert log.append(b"again") == 2
    with CommitLog.open(tmp_path) as log:
        assert payloads_of(log) == [b"A" * 30, b"again"]
        assert log.repair_report is None


def test_repair_moves_later_segments_aside(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path, segment_size=4096) as log:
        for i in range(120):
            log.append(f"{i:03d}".encode() * 30)
    files = segments(tmp_path)
    damaged = bytearray(files[1].read_bytes())
    damaged[HEAD + REC + 5] ^= 1  # the first record of the second segment
    files[1].write_bytes(bytes(damaged))
    with pytest.raises(CorruptionError) as info:
        CommitLog.open(tmp_path)
    assert (info.value.file, info.value.offset) == (str(files[1]), HEAD)
    with CommitLog.open(tmp_path, segment_size=4096, repair=True) as log:
        first_of_second = int(files[1].name.split(".")[0])
        assert log.last_lsn() == first_of_second - 1
        assert log.repair_report is not None
        assert log.repair_report.dropped_records == 120 - first_of_second + 1
    assert segments(tmp_path) == files[:2]


def test_a_damaged_segment_header_raises(tmp_path: Path, three_records: tuple[Path, list[int]]) -> None:
    src, _ = three_records
    raw = bytearray(segments(src)[0].read_bytes())
    raw[17] ^= 1  # inside the first LSN
    segments(src)[0].write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match="header") as info:
        CommitLog.open(src)
    assert info.value.offset == 0


def test_an_unknown_format_version_is_named(tmp_path: Path, three_records: tuple[Path, list[int]]) -> None:
    src, _ = three_records
    raw = bytearray(segments(src)[0].read_bytes())
    head = b"ZAPNBLOG" + struct.pack("<IQ", 7, 1)
    raw[:24] = head + struct.pack("<I", zlib.crc32(head))
    segments(src)[0].write_bytes(bytes(raw))
    with pytest.raises(FormatVersionError, match="version 7, and this zapnb reads version 2") as info:
        CommitLog.open(src)
    assert (info.value.found, info.value.supported, info.value.file) == (7, 2, str(segments(src)[0]))


def test_a_full_segment_without_its_end_mark_is_corruption(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path, segment_size=4096) as log:
        for i in range(100):
            log.append(f"{i:03d}".encode() * 30)
    first = segments(tmp_path)[0]
    size = first.stat().st_size
    os.truncate(first, size - REC - 5)  # a torn record in the middle of the history
    with pytest.raises(CorruptionError) as info:
        CommitLog.open(tmp_path)
    assert info.value.file == str(first)


def test_leftover_segment_being_created_is_removed(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path) as log:
        log.append(b"x")
    (tmp_path / "log" / "00000000000000000002.zlog.tmp").write_bytes(b"ZAPNB")
    with CommitLog.open(tmp_path) as log:
        assert log.last_lsn() == 1
    assert not list((tmp_path / "log").glob("*.tmp"))


# --- writers, threads, processes ----------------------------------------------------------------------------


class ConflictError(Exception):
    def __init__(self, writer: LogWriter) -> None:
        self.writer = writer


def test_writer_sees_records_of_other_writers_and_discards_on_error(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path) as first, CommitLog.open(tmp_path) as second:
        first.append(b"from first")
        with second.writer() as w:
            assert w.base_lsn == 1
            assert w.new_records() == [LogRecord(1, b"from first")]
            assert (w.append(b"a"), w.append(b"b"), w.last_lsn) == (2, 3, 3)
        with second.writer() as w:
            assert w.new_records() == []

        def conflicting() -> LogWriter:
            with first.writer() as w:
                assert [r.lsn for r in w.new_records()] == [1, 2, 3]  # its own plain append counts too
                w.append(b"never written")
                raise ConflictError(w)

        with pytest.raises(ConflictError) as info:
            conflicting()
        assert second.last_lsn() == 3
        with pytest.raises(ClosedError):
            info.value.writer.append(b"late")
        with first.writer() as w:
            assert [r.lsn for r in w.new_records()] == [1, 2, 3]  # the discarded block did not count
            with pytest.raises(NestedWriteError):
                first.append(b"deadlock")
            assert [r.lsn for r in first.read_since(0)] == [1, 2, 3]
            assert first.last_lsn() == 3


def test_group_commit_threads_share_fsyncs(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path) as log:
        results: list[list[int]] = [[] for _ in range(8)]

        def work(k: int) -> None:
            for i in range(60):
                results[k].append(log.append(f"{k}:{i}".encode()))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = log.stats()
        lsns = sorted(lsn for r in results for lsn in r)
        assert lsns == list(range(1, 481))
        assert all(r == sorted(r) for r in results)
        assert stats.appends == 480
        assert stats.fsyncs < stats.appends
        payloads = {r.payload for r in log.read_since(0)}
        assert payloads == {f"{k}:{i}".encode() for k in range(8) for i in range(60)}


def test_process_mode_does_not_fsync_each_append(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path, durability="process") as log:
        for i in range(50):
            log.append(b"%d" % i)
        assert log.stats().fsyncs == 0
        assert log.sync() == 50
        assert log.stats().fsyncs == 1
        assert log.durable_lsn() == 50


def _counter_worker(data: str, increments: int) -> None:
    """Increment a shared counter through the writers' section: read others' records, append value + 1."""
    with CommitLog.open(data, segment_size=4096) as log:
        value = applied = 0
        for _ in range(increments):
            with log.writer() as w:
                for record in w.read_since(applied):
                    value = int(record.payload.split(b":")[0])
                value += 1
                applied = w.append(b"%d:%d" % (value, os.getpid()))


def _append_worker(data: str, tag: int, count: int) -> None:
    with CommitLog.open(data, segment_size=8192) as log:
        for i in range(count):
            log.append(f"{tag}:{i}".encode())


def test_processes_append_concurrently_every_record_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_worker, args=(str(tmp_path), tag, 150)) for tag in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    with CommitLog.open(tmp_path, segment_size=8192) as log:
        records = list(log.read_since(0))
    assert [r.lsn for r in records] == list(range(1, 601))
    payloads = [r.payload.decode() for r in records]
    assert sorted(payloads) == sorted(f"{tag}:{i}" for tag in range(4) for i in range(150))
    for tag in range(4):  # each process's own records are in its order
        mine = [int(p.split(":")[1]) for p in payloads if p.startswith(f"{tag}:")]
        assert mine == list(range(150))


def test_processes_counter_through_writer_sections_is_exact(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_counter_worker, args=(str(tmp_path), 60)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    with CommitLog.open(tmp_path) as log:
        values = [int(r.payload.split(b":")[0]) for r in log.read_since(0)]
    assert values == list(range(1, 181))


def _append_later(data: str, delay: float) -> None:
    with CommitLog.open(data) as log:
        time.sleep(delay)
        log.append(struct.pack("<d", time.time()))


def test_appends_of_another_process_are_seen_within_100ms(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path) as log:
        proc = multiprocessing.get_context("spawn").Process(target=_append_later, args=(str(tmp_path), 0.5))
        proc.start()
        try:
            assert log.wait_for_append(0, timeout=30) == 1
            woke = time.time()
        finally:
            proc.join(60)
        (appended,) = struct.unpack("<d", next(iter(log.read_since(0))).payload)
        assert woke - appended < 0.1
        assert log.wait_for_append(1, timeout=0.05) == 1


def test_forked_child_cannot_use_the_log(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path) as log:
        log.append(b"parent")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                log.append(b"child")
            except UsedAfterForkError as err:
                code = 0 if (err.owner_pid, err.pid) == (log._pid, os.getpid()) else 2
            except BaseException:
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert log.append(b"parent again") == 2
        assert payloads_of(log) == [b"parent", b"parent again"]


# --- crashes ------------------------------------------------------------------------------------------------

CHILD = r"""
import hashlib, os, sys
from zapnb.log import CommitLog
data, acked, count, truncate_every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
scale = int(sys.argv[5]) if len(sys.argv) > 5 else 1
side = os.open(acked, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
log = CommitLog.open(data, segment_size=4096)
i = 0
while count < 0 or i < count:
    payload = f"{os.getpid()}-{i}-".encode() * (1 + i % 9) * scale
    if i % 3 == 2:
        with log.writer() as w:
            w.new_records()
            lsn = w.append(payload)
    else:
        lsn = log.append(payload)
    os.write(side, f"{lsn} {hashlib.sha256(payload).hexdigest()}\n".encode())
    os.fsync(side)
    if truncate_every and i % truncate_every == truncate_every - 1:
        log.truncate_before(max(0, lsn - 60))
    i += 1
log.close()
"""


def run_child(
    data: Path, acked: Path, count: int, truncate_every: int, kill_at: str | None, scale: int = 1
) -> int:
    """Run CHILD; ``scale`` makes its records that many times longer (a torn write needs several blocks)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ZAPNB_KILL_AT", None)
    if kill_at is not None:
        env["ZAPNB_KILL_AT"] = kill_at
    args = [sys.executable, "-c", CHILD, str(data), str(acked), str(count), str(truncate_every), str(scale)]
    return subprocess.run(args, env=env, timeout=120, check=False).returncode


def check_acknowledged(data: Path, acked: Path) -> list[LogRecord]:
    """Reopen: every acknowledged record still there with its bytes, LSNs gap-free, and the log writable."""
    with CommitLog.open(data, segment_size=4096) as log:
        first = log.first_lsn()
        records = list(log.read_since(first - 1))
        assert [r.lsn for r in records] == list(range(first, first + len(records)))
        digests = {r.lsn: hashlib.sha256(r.payload).hexdigest() for r in records}
        lines = acked.read_text().split("\n")[:-1] if acked.exists() else []  # a cut last line is no ack
        for line in lines:
            lsn, digest = line.split()
            if int(lsn) >= first:
                assert digests.get(int(lsn)) == digest, f"acknowledged LSN {lsn} lost"
        last = log.last_lsn()
        assert log.append(b"after recovery") == last + 1
    return records


KILL_POINTS = [
    "log.after_write_before_fsync@7",
    "log.after_fsync@7",
    "log.during_write@7",
    "log.during_rollover@2",
    "log.after_rollover@2",
    "log.before_segment_rename@1",
    "log.before_segment_rename@3",
    "log.during_truncate@2",
]


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_kill_points_lose_no_acknowledged_record(tmp_path: Path, kill_at: str) -> None:
    data, acked = tmp_path / "data", tmp_path / "acked"
    assert run_child(data, acked, 400, 40, kill_at) == 137
    check_acknowledged(data, acked)
    assert run_child(data, acked, 30, 0, None) == 0  # and the log goes on after recovery
    check_acknowledged(data, acked)


def test_torn_write_is_dropped_on_reopen(tmp_path: Path) -> None:
    data, acked = tmp_path / "data", tmp_path / "acked"
    assert run_child(data, acked, 100, 0, "log.during_write@5", scale=40) == 137
    with CommitLog.open(data, segment_size=4096) as log:
        assert log.dropped_tail_bytes > 0
        assert log.last_lsn() == 4


def test_a_writer_cuts_the_torn_record_of_a_dead_process(tmp_path: Path) -> None:
    data, acked = tmp_path / "data", tmp_path / "acked"
    with CommitLog.open(data, segment_size=4096) as log:
        assert run_child(data, acked, 100, 0, "log.during_write@5", scale=40) == 137
        assert log.last_lsn() == 4  # the half record is not a record
        assert log.append(b"next") == 5
        assert log.dropped_tail_bytes > 0
    assert [r.payload for r in check_acknowledged(data, acked)][-1] == b"next"


@pytest.mark.slow
def test_sigkill_loop_loses_no_acknowledged_record(tmp_path: Path) -> None:
    data, acked = tmp_path / "data", tmp_path / "acked"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ZAPNB_KILL_AT", None)
    rng = random.Random(7)
    seen: dict[int, bytes] = {}
    for _ in range(60):
        args = [sys.executable, "-c", CHILD, str(data), str(acked), "-1", "150"]
        proc = subprocess.Popen(args, env=env)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        records = check_acknowledged(data, acked)
        now = {r.lsn: r.payload for r in records}
        for lsn, payload in seen.items():  # nothing seen earlier changes or vanishes (except truncated)
            if lsn >= records[0].lsn:
                assert now[lsn] == payload
        seen = now
    assert len(acked.read_text().splitlines()) > 500


def test_full_disk_fails_the_append_and_the_log_goes_on(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=False
    ).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        with CommitLog.open(mount, segment_size=1 << 20) as log:
            acked: list[int] = []

            def fill() -> None:
                for i in range(10_000):
                    acked.append(log.append(b"%05d" % i * 50))

            with pytest.raises(StorageIOError) as info:
                fill()
            assert info.value.errno == errno.ENOSPC
            assert log.last_lsn() == len(acked)
            subprocess.run(["mount", "-o", "remount,size=4m", str(mount)], check=True)
            assert log.append(b"after") == len(acked) + 1
        with CommitLog.open(mount) as log:
            assert log.last_lsn() == len(acked) + 1
            assert payloads_of(log, len(acked)) == [b"after"]
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_every_acknowledgment_follows_the_fdatasync_of_its_record(tmp_path: Path) -> None:
    """SIGKILL cannot see a missing fsync (the page cache survives), so check the system calls' order."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    data, acked, trace = tmp_path / "data", tmp_path / "acked", tmp_path / "trace"
    calls = "trace=pwrite64,fdatasync,fsync,rename,write"
    args = ["strace", "-f", "-y", "-qq", "-e", calls, "-o", str(trace), sys.executable, "-c", CHILD]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([*args, str(data), str(acked), "200", "40"], env=env, timeout=120, check=True)
    dirty: set[str] = set()  # segment files written since their last fdatasync
    directory_pending = False  # a segment was renamed into place and the directory not yet fsynced
    acks = renames = 0
    for line in trace.read_text().splitlines():
        match = re.search(r"(\w+)\((?:\d+<([^>]*)>)?", line)
        if match is None:
            continue
        call, path = match.group(1), match.group(2) or ""
        if call == "pwrite64" and ".zlog" in path:
            assert not (directory_pending and not path.endswith(".tmp")), "record written before dir fsync"
            dirty.add(path)
        elif call in ("fdatasync", "fsync"):
            dirty.discard(path)
            directory_pending = directory_pending and path != str(data / "log")
        elif call == "rename":
            assert not dirty, f"a segment was created while {dirty} were not durable"
            directory_pending, renames = True, renames + 1
        elif call == "write" and path == str(acked):
            assert not dirty, f"acknowledged while {dirty} were not durable"
            assert not directory_pending, "acknowledged before the new segment's directory entry was durable"
            acks += 1
    assert acks == 200
    assert renames >= 3  # the first segment and rollovers


def test_a_failed_fsync_is_reported_and_refuses_further_writes(tmp_path: Path) -> None:
    out = run_with_failing_fsync(tmp_path, "fdatasync:error=EIO:when=6", "    return log.append(b'r%d' % i)")
    operation, count = out[0].split()
    assert operation == "fsync"
    assert out[1] == "refused"
    with CommitLog.open(tmp_path) as log:
        assert log.last_lsn() >= int(count)


@pytest.fixture(autouse=True)
def _no_kill_point_armed() -> None:
    assert "ZAPNB_KILL_AT" not in os.environ, "a kill point armed here would end the test process"

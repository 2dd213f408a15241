"""The end of the commit log after a crash: zeros written ahead, torn writes dropped, damage raised.

Each test makes a real log on disk, changes its bytes the way a crash (or damage) would, and reopens it.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from zapnb.errors import CorruptionError, FormatVersionError
from zapnb.log import CommitLog
from zapnb.logformat import (
    BLOCK,
    PREALLOCATE,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    create_segment,
    encode_record,
)
from zapnb.logrecover import check_tail

HEAD, REC = SEGMENT_HEADER_SIZE, RECORD_HEADER_SIZE


def segment_of(data: Path) -> Path:
    (segment,) = sorted((data / "log").glob("*.zlog"))
    return segment


def offsets_of(sizes: list[int]) -> list[int]:
    """The offset of each record of a segment holding records with these payload sizes, and their end."""
    offsets = [HEAD]
    for size in sizes:
        offsets.append(offsets[-1] + REC + size)
    return offsets


def make_log(data: Path, sizes: list[int], durability: str = "full") -> list[int]:
    """A closed log with one record per size (byte ``k`` repeated for record ``k + 1``); their offsets."""
    with CommitLog.open(data, durability=durability) as log:  # type: ignore[arg-type]
        for k, size in enumerate(sizes):
            log.append(bytes([65 + k]) * size)
    return offsets_of(sizes)


def zero(path: Path, start: int, stop: int) -> None:
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(bytes(stop - start))


def next_block(offset: int) -> int:
    return (offset // BLOCK + 1) * BLOCK


# --- zeros written ahead ------------------------------------------------------------------------------------


def test_records_are_written_over_zeros_written_ahead(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path, segment_size=8 * PREALLOCATE) as log:
        segment = segment_of(tmp_path)
        assert segment.stat().st_size == PREALLOCATE  # zeros from the start
        for _ in range(100):
            log.append(b"r" * 1000)
        assert segment.stat().st_size == PREALLOCATE  # the appends did not grow the file
        for _ in range(1100):
            log.append(b"r" * 1000)
        end = offsets_of([1000] * 1200)[-1]
        assert (
            segment.stat().st_size == 2 * PREALLOCATE > end
        )  # grown a stretch at a time, ahead of the records
        assert segment.read_bytes()[end:] == bytes(2 * PREALLOCATE - end)
    with CommitLog.open(tmp_path, segment_size=8 * PREALLOCATE) as log:
        assert (log.last_lsn(), log.dropped_tail_bytes) == (1200, 0)


def test_a_full_segment_is_cut_after_its_end_mark(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path, segment_size=8192) as log:
        for i in range(30):
            log.append(b"%04d" % i * 100)
    first, *_, last = sorted((tmp_path / "log").glob("*.zlog"))
    assert first.stat().st_size <= 8192 + REC
    assert first.read_bytes()[-REC : -REC + 4] == b"\xff\xff\xff\xff"
    assert last.stat().st_size == 8192  # the newest segment keeps its zeros


def _crash_after_fsync(data: str, count: int) -> None:
    log = CommitLog.open(data)
    for i in range(count):
        log.append(b"%d" % i * 40)
    os._exit(0)  # no close: the zeros written ahead stay as a crash leaves them


def test_a_crash_leaves_the_zeros_and_reopening_finds_exactly_the_records(tmp_path: Path) -> None:
    process = multiprocessing.get_context("spawn").Process(
        target=_crash_after_fsync, args=(str(tmp_path), 50)
    )
    process.start()
    process.join(60)
    assert process.exitcode == 0
    size = segment_of(tmp_path).stat().st_size
    with CommitLog.open(tmp_path) as log:
        assert (log.last_lsn(), log.dropped_tail_bytes) == (50, 0)
        assert [r.payload for r in log.read_since(0)] == [b"%d" % i * 40 for i in range(50)]
        assert log.append(b"after") == 51
    assert segment_of(tmp_path).stat().st_size == size  # written where the zeros were


def _append_slowly(data: str, count: int) -> None:
    with CommitLog.open(data) as log:
        for i in range(count):
            log.append(b"from the other process %d" % i)


def test_another_process_sees_records_written_over_zeros(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path) as log:
        process = multiprocessing.get_context("spawn").Process(
            target=_append_slowly, args=(str(tmp_path), 200)
        )
        process.start()
        seen = 0
        while seen < 200:
            seen = log.wait_for_append(seen, timeout=30)
            lsns = [r.lsn for r in log.read_since(0)]
            assert lsns == list(range(1, len(lsns) + 1))
            assert len(lsns) >= seen
        process.join(60)
        assert log.append(b"mine") == 201
        assert log.wait_for_append(200, timeout=0.05) == 200  # its own append does not wake it
    with CommitLog.open(tmp_path) as log:
        assert [r.payload for r in log.read_since(199)] == [b"from the other process 199", b"mine"]


# --- torn writes --------------------------------------------------------------------------------------------


def test_a_torn_record_whose_first_block_reached_the_disk_is_dropped(tmp_path: Path) -> None:
    offsets = make_log(tmp_path, [100, 1500])
    segment = segment_of(tmp_path)
    cut = next_block(offsets[1])
    zero(segment, cut, offsets[2])  # the blocks after the first were never written
    kept = segment.read_bytes()[offsets[1] : cut]
    with CommitLog.open(tmp_path) as log:
        assert log.last_lsn() == 1
        assert log.dropped_tail_bytes == len(kept.rstrip(b"\x00"))
        assert log.append(b"next") == 2
        assert [r.payload for r in log.read_since(0)] == [b"A" * 100, b"next"]
    raw = segment.read_bytes()
    assert raw[offsets[1] + REC + 4 :].count(0) == len(raw) - offsets[1] - REC - 4  # the torn bytes are gone


def test_a_torn_record_whose_first_block_was_lost_is_dropped(tmp_path: Path) -> None:
    offsets = make_log(tmp_path, [100, 1500])
    segment = segment_of(tmp_path)
    zero(segment, offsets[1], next_block(offsets[1]))  # its header never reached the disk, later blocks did
    with CommitLog.open(tmp_path) as log:
        assert log.last_lsn() == 1
        assert log.dropped_tail_bytes > 0
        assert [r.payload for r in log.read_since(0)] == [b"A" * 100]


def test_torn_records_that_no_later_record_knew_on_disk_are_dropped(tmp_path: Path) -> None:
    # in "process" mode nothing is fsynced while appending, so no record says an earlier one is on disk
    offsets = make_log(tmp_path, [1500, 1500, 1500], durability="process")
    segment = segment_of(tmp_path)
    zero(segment, next_block(offsets[1]), next_block(offsets[1]) + BLOCK)  # a block inside record 2
    with CommitLog.open(tmp_path) as log:
        assert log.last_lsn() == 1  # records 2 and 3 were written in the same unfinished stretch
        assert log.dropped_tail_bytes == offsets[3] - offsets[1]


def test_damage_to_a_record_a_later_record_knew_on_disk_is_a_corruption_error(tmp_path: Path) -> None:
    offsets = make_log(tmp_path, [1500, 1500, 1500])  # each fsynced before the next was written
    segment = segment_of(tmp_path)
    zero(segment, next_block(offsets[1]), next_block(offsets[1]) + BLOCK)  # looks torn, but is not
    damaged = segment.read_bytes()
    with pytest.raises(CorruptionError, match="record 2 was already on disk") as info:
        CommitLog.open(tmp_path)
    assert (info.value.file, info.value.offset) == (str(segment), offsets[1])
    assert segment.read_bytes() == damaged


def test_a_flipped_bit_in_the_last_record_is_a_corruption_error(tmp_path: Path) -> None:
    offsets = make_log(tmp_path, [100, 1500])
    segment = segment_of(tmp_path)
    raw = bytearray(segment.read_bytes())
    raw[offsets[1] + REC + 700] ^= 0x04  # no block of it is zeros: not a torn write
    segment.write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match="checksum") as info:
        CommitLog.open(tmp_path)
    assert info.value.offset == offsets[1]


def test_bytes_other_than_zeros_after_the_records_are_a_corruption_error(tmp_path: Path) -> None:
    offsets = make_log(tmp_path, [100])
    segment = segment_of(tmp_path)
    with open(segment, "r+b") as f:
        f.seek(offsets[1])
        f.write(b"not a record header at all")
    with pytest.raises(CorruptionError, match="header checksum") as info:
        CommitLog.open(tmp_path)
    assert info.value.offset == offsets[1]


def test_a_sealed_segment_with_zeros_after_its_end_mark_opens(tmp_path: Path) -> None:
    """A crash between writing the end mark and cutting the zeros after it."""
    with CommitLog.open(tmp_path, segment_size=4096) as log:
        log.append(b"x" * 100)
    segment = segment_of(tmp_path)
    offset = offsets_of([100])[-1]
    head = struct.pack("<IQI", 0xFFFF_FFFF, 2, 0)
    crc = zlib.crc32(head)
    with open(segment, "r+b") as f:
        f.seek(offset)
        f.write(head + struct.pack("<II", crc, crc))
    with CommitLog.open(tmp_path, segment_size=4096) as log:
        assert log.append(b"y") == 2
        assert [r.payload for r in log.read_since(0)] == [b"x" * 100, b"y"]
    assert len(list((tmp_path / "log").glob("*.zlog"))) == 2


def test_a_log_of_format_version_1_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    head = b"ZAPNBLOG" + struct.pack("<IQ", 1, 1)
    (tmp_path / "log" / "00000000000000000001.zlog").write_bytes(head + struct.pack("<I", zlib.crc32(head)))
    with pytest.raises(FormatVersionError, match="format version 1, and this zapnb reads version 2") as info:
        CommitLog.open(tmp_path)
    assert (info.value.found, info.value.supported) == (1, 2)
    assert "release that wrote it; data you can make again" in str(info.value)


# --- check_tail on its own ----------------------------------------------------------------------------------


@pytest.fixture
def segment_fd(tmp_path: Path) -> Iterator[int]:
    seg = create_segment(tmp_path, 1, preallocate=16 * BLOCK)
    yield seg.fd
    os.close(seg.fd)


def test_check_tail_judges_what_follows_the_records(segment_fd: int) -> None:
    fd = segment_fd
    first = encode_record(1, b"a" * 100, synced=0)
    os.pwrite(fd, first, HEAD)
    after = HEAD + len(first)
    assert check_tail(fd, after, 1) == (after, None)  # zeros: the end, nothing to drop
    second = encode_record(2, b"b" * 2000, synced=1)
    os.pwrite(fd, second[: next_block(after) - after], after)  # only its first block
    assert check_tail(fd, after, 1) == (next_block(after), None)
    os.pwrite(fd, second, after)
    os.pwrite(fd, b"\x01", after + REC + 1000)  # whole, with a flipped bit: damage
    assert check_tail(fd, after, 1) == (after, "the record checksum does not match its contents")


def test_check_tail_trusts_a_later_record_that_knew_the_bad_one_on_disk(segment_fd: int) -> None:
    fd = segment_fd
    records = [
        encode_record(lsn, bytes([lsn]) * 1500, synced=synced) for lsn, synced in [(1, 0), (2, 1), (3, 2)]
    ]
    os.pwrite(fd, b"".join(records), HEAD)
    second = HEAD + len(records[0])
    os.pwrite(fd, bytes(BLOCK), next_block(second))  # a whole block inside record 2 reads as zeros
    end, problem = check_tail(fd, second, 1)
    assert end == second
    assert problem is not None
    assert "record 2 was already on disk" in problem
    os.pwrite(
        fd, encode_record(3, bytes([3]) * 1500, synced=1), second + len(records[1])
    )  # knew only record 1
    end, problem = check_tail(fd, second, 1)
    assert (end, problem) == (second + len(records[1]) + len(records[2]), None)

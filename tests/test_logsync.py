"""Durability of the commit log: group commit, and fsyncs started early (zapnb.logsync, zapnb.logaio)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from strace_support import run_with_failing_fsync

from zapnb.log import CommitLog
from zapnb.logaio import AsyncFlush

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_an_fsync_can_be_started_and_collected_here() -> None:
    flusher = AsyncFlush.open()
    if flusher is None:
        pytest.skip("this system cannot start an fdatasync without waiting (the log calls fdatasync)")
    try:
        assert not flusher.submit(10_000)  # not an open descriptor: refused, the caller would fsync itself
        with tempfile.TemporaryFile(dir=ROOT) as f:
            os.write(f.fileno(), b"x" * 100)
            assert flusher.submit(f.fileno())
            assert flusher.collect() == 0
    finally:
        flusher.close()


def test_a_writer_that_does_not_wait_is_durable_after_wait_durable(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path) as log:
        with log.writer(wait=False) as w:
            lsn = w.append(b"applied while it is written")
        assert log.durable_lsn() in (0, lsn)  # maybe not yet
        log.wait_durable(lsn)
        assert log.durable_lsn() == lsn
        assert log.stats().fsyncs == 1
    with CommitLog.open(tmp_path, durability="process") as log:
        with log.writer(wait=False) as w:
            lsn = w.append(b"not fsynced in process mode")
        log.wait_durable(lsn)
        assert (log.durable_lsn(), log.stats().fsyncs) == (lsn - 1, 0)


def test_without_early_fsyncs_a_writer_that_does_not_wait_fsyncs_when_it_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AsyncFlush, "open", classmethod(lambda cls: None))  # as on a system without Linux AIO
    with CommitLog.open(tmp_path) as log:
        for i in range(5):
            with log.writer(wait=False) as w:
                lsn = w.append(b"%d" % i)
            assert log.durable_lsn() == lsn - 1  # nothing was started
            log.wait_durable(lsn)
            assert log.durable_lsn() == lsn
        assert log.stats().fsyncs == 5


def test_threads_that_start_fsyncs_early_share_them(tmp_path: Path) -> None:
    with CommitLog.open(tmp_path) as log:
        acked: list[list[int]] = [[] for _ in range(6)]

        def work(k: int) -> None:
            for i in range(60):
                with log.writer(wait=False) as w:
                    lsn = w.append(f"{k}:{i}".encode())
                log.wait_durable(lsn)
                assert log.durable_lsn() >= lsn
                acked[k].append(lsn)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(lsn for lsns in acked for lsn in lsns) == list(range(1, 361))
        assert log.stats().fsyncs < 360
        assert {r.payload for r in log.read_since(0)} == {
            f"{k}:{i}".encode() for k in range(6) for i in range(60)
        }


ASYNC_CHILD = r"""
import os, sys
from zapnb.log import CommitLog
data, acked, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
side = os.open(acked, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
log = CommitLog.open(data, segment_size=4096)
for i in range(count):
    with log.writer(wait=False) as w:
        lsn = w.append(b"%d-" % i * (1 + i % 7))
    log.wait_durable(lsn)
    os.write(side, b"%d\n" % lsn)
log.close()
"""


def test_every_acknowledgment_follows_the_completion_of_its_early_fsync(tmp_path: Path) -> None:
    """The order of system calls: a record is acknowledged only after an fsync that started after it was
    written has completed (``io_getevents``), or after ``fdatasync`` returned."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    if AsyncFlush.open() is None:
        pytest.skip("this system cannot start an fdatasync without waiting")
    data, acked, trace = tmp_path / "data", tmp_path / "acked", tmp_path / "trace"
    calls = "trace=pwrite64,fdatasync,fsync,rename,write,io_submit,io_getevents"
    args = ["strace", "-f", "-y", "-qq", "-e", calls, "-o", str(trace), sys.executable, "-c", ASYNC_CHILD]
    subprocess.run([*args, str(data), str(acked), "150"], env=ENV, timeout=120, check=True)
    writes: dict[str, int] = {}  # segment path -> writes to it so far
    synced: dict[str, int] = {}  # segment path -> writes covered by a completed fsync
    started: tuple[str, int] | None = None
    acks = early = 0
    for line in trace.read_text().splitlines():
        call = re.search(r"(\w+)\(", line)
        if call is None or "resumed" in line:
            continue
        name = call.group(1)
        path = re.search(r"\(\d+<([^>]*)>", line)
        if name == "pwrite64" and path and ".zlog" in path.group(1):
            writes[path.group(1)] = writes.get(path.group(1), 0) + 1
        elif name in ("fdatasync", "fsync") and path:
            synced[path.group(1)] = writes.get(path.group(1), 0)
        elif name == "io_submit":
            fd = re.search(r"IOCB_CMD_FDSYNC, aio_fildes=\d+<([^>]*)>", line)
            assert fd is not None, line
            assert line.endswith("= 1"), line
            started = (fd.group(1), writes.get(fd.group(1), 0))
        elif name == "io_getevents" and line.endswith("= 1"):
            assert started is not None, line
            assert "res=0" in line, line
            synced[started[0]], started, early = started[1], None, early + 1
        elif name == "write" and path and path.group(1) == str(acked):
            dirty = [p for p, n in writes.items() if synced.get(p, 0) < n]
            assert not dirty, f"acknowledged while {dirty} were not durable"
            acks += 1
    assert acks == 150
    assert early >= 100  # most commits used an fsync started early


def test_a_failed_early_fsync_is_reported_and_refuses_further_writes(tmp_path: Path) -> None:
    if AsyncFlush.open() is None:
        pytest.skip("this system cannot start an fdatasync without waiting")
    write = """    with log.writer(wait=False) as w:
        lsn = w.append(b"r%d" % i)
    log.wait_durable(lsn)
    return lsn"""
    out = run_with_failing_fsync(tmp_path, "io_getevents:error=EIO:when=5", write)
    operation, count = out[0].split()
    assert operation == "fsync"
    assert int(count) < 20
    assert out[1] == "refused"
    with CommitLog.open(tmp_path) as log:
        assert log.last_lsn() >= int(count)

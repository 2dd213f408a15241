"""Durable commits: zapnb's commit log against SQLite (WAL, synchronous=FULL), side by side in one run.

Each operation appends one 250-byte record (zapnb) or inserts one 250-byte row in its own transaction
(SQLite), and is durable before it returns. Scenarios: one thread; 4 threads; 2 processes; 2 processes x 4
threads. Prints operations per second, p50 and p99 latency, fsyncs per commit, and the ratio to SQLite.

    python benchmarks/bench_log.py [--ops 2000] [--dir /path/on/the/disk/to/test]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zapnb.log import CommitLog

PAYLOAD = bytes(range(250))


@dataclass(frozen=True)
class Result:
    ops: int
    began: float  # wall clock when the timed loop started
    seconds: float
    latencies: list[float]
    fsyncs: int

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def sqlite_connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
    return db


def zapnb_ops(directory: Path) -> tuple[Callable[[], None], Callable[[], int], Callable[[], None]]:
    log = CommitLog.open(directory)

    def append() -> None:
        log.append(PAYLOAD)

    return append, lambda: log.stats().fsyncs, log.close


def sqlite_ops(directory: Path) -> tuple[Callable[[], None], Callable[[], int], Callable[[], None]]:
    local = threading.local()
    connections: list[sqlite3.Connection] = []

    def insert() -> None:
        db = getattr(local, "db", None)
        if db is None:
            db = local.db = sqlite_connect(directory / "bench.db")
            connections.append(db)
        db.execute("INSERT INTO t (v) VALUES (?)", (PAYLOAD,))  # autocommit: one transaction each

    def close() -> None:
        for db in connections:
            db.close()

    return insert, lambda: -1, close


def run_threads(engine: str, directory: Path, threads: int, ops: int, start: float = 0.0) -> Result:
    """``ops`` operations spread over ``threads`` threads of this process, from wall-clock time ``start``."""
    operation, fsyncs, close = (zapnb_ops if engine == "zapnb" else sqlite_ops)(directory)
    operation()  # open files and connections before timing
    while time.time() < start:
        time.sleep(0.0005)
    latencies: list[list[float]] = [[] for _ in range(threads)]

    def work(k: int) -> None:
        mine = latencies[k]
        for _ in range(ops // threads):
            started = time.perf_counter()
            operation()
            mine.append(time.perf_counter() - started)

    before = fsyncs()
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    began, started = time.time(), time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    synced = fsyncs() - before if before >= 0 else -1
    result = Result(ops // threads * threads, began, seconds, [x for xs in latencies for x in xs], synced)
    close()
    return result


def _process_worker(engine: str, directory: str, threads: int, ops: int, start: float, queue: object) -> None:
    result = run_threads(engine, Path(directory), threads, ops, start)
    queue.put((result.began, result.began + result.seconds, result.latencies, result.fsyncs))  # type: ignore[attr-defined]


def run_processes(engine: str, directory: Path, processes: int, threads: int, ops: int) -> Result:
    """``ops`` operations spread over ``processes`` spawned processes of ``threads`` threads each."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start = time.time() + 1.5  # every process has imported and opened by then
    args = (engine, str(directory), threads, ops // processes, start, queue)
    procs = [ctx.Process(target=_process_worker, args=args) for _ in range(processes)]
    for proc in procs:
        proc.start()
    parts = [queue.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    seconds = max(p[1] for p in parts) - min(p[0] for p in parts)
    latencies = [x for p in parts for x in p[2]]
    return Result(len(latencies), min(p[0] for p in parts), seconds, latencies, sum(p[3] for p in parts))


def measure(engine: str, root: Path, processes: int, threads: int, ops: int) -> Result:
    directory = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-", dir=root))
    if engine == "sqlite":
        sqlite_connect(directory / "bench.db").close()
    else:
        CommitLog.open(directory).close()
    try:
        if processes == 1:
            return run_threads(engine, directory, threads, ops)
        return run_processes(engine, directory, processes, threads, ops)
    finally:
        shutil.rmtree(directory)


def floor_write_fsync(root: Path, count: int = 500) -> float:
    """Median microseconds of appending 250 bytes and fdatasync, the floor for one durable commit."""
    fd, name = tempfile.mkstemp(dir=root)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        os.write(fd, PAYLOAD)
        os.fdatasync(fd)
        times.append(time.perf_counter() - started)
    os.close(fd)
    os.unlink(name)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=2000, help="durable commits per scenario")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where to write")
    args = parser.parse_args()
    root: Path = args.dir
    print(f"durable commits of 250 bytes, {args.ops} per scenario, in {root}")
    print(f"floor: write + fdatasync of 250 bytes, median {floor_write_fsync(root):.0f} us\n")
    header = (
        f"{'scenario':<26}{'engine':<8}{'ops/s':>9}{'p50 us':>9}{'p99 us':>9}{'fsyncs/op':>11}{'ratio':>8}"
    )
    print(header)
    print("-" * len(header))
    for label, processes, threads in [
        ("1 thread", 1, 1),
        ("4 threads", 1, 4),
        ("2 processes", 2, 1),
        ("2 processes x 4 threads", 2, 4),
    ]:
        sqlite = measure("sqlite", root, processes, threads, args.ops)
        zapnb = measure("zapnb", root, processes, threads, args.ops)
        for engine, result in (("sqlite", sqlite), ("zapnb", zapnb)):
            ratio = result.per_second / sqlite.per_second
            fsyncs = f"{result.fsyncs / result.ops:.2f}" if result.fsyncs >= 0 else "-"
            print(
                f"{label:<26}{engine:<8}{result.per_second:>9,.0f}{result.percentile(0.5):>9.0f}"
                f"{result.percentile(0.99):>9.0f}{fsyncs:>11}{ratio:>7.2f}x"
            )
    print("\nratio: operations per second relative to SQLite (WAL, synchronous=FULL) in the same scenario")


if __name__ == "__main__":
    main()

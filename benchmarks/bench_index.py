"""Indexes: build, save, open, scan, count, apply and merge on a realistic 1M-key index.

The keys are those of a ``messages`` table's ``by_projectId_createdAt`` index: ``encode_key([projectId,
createdAt, _creationTime, _id])``, 86 bytes each, 1,000 projects. Prints the median of each operation.

    python benchmarks/bench_index.py [--count 1000000] [--dir /path/on/the/disk/to/test]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zapnb.ids import new_ids
from zapnb.index import IndexData, IndexSpec, positions_from
from zapnb.keys import encode_key, prefix_end

PROJECTS = 1000


def timed(action: Callable[[], object], repeat: int) -> tuple[float, object]:
    """The median seconds of ``repeat`` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def show(what: str, seconds: float, note: str = "") -> None:
    value = f"{seconds * 1e6:10.1f} µs" if seconds < 0.01 else f"{seconds * 1e3:10.1f} ms"
    print(f"{what:<52}{value}  {note}")


def make_docs(count: int, rng: random.Random) -> tuple[list[str], list[dict[str, object]]]:
    projects = new_ids(10001, PROJECTS, "projects")
    ids = new_ids(10002, count, "messages")
    start = 1.76e12
    docs = [
        {
            "_id": ids[i],
            "_creationTime": start + i * 1.5,
            "projectId": rng.choice(projects),
            "createdAt": start + rng.random() * 3e9,
        }
        for i in range(count)
    ]
    return list(projects), docs


def churn(index: IndexData, spec: IndexSpec, keys: list[bytes], projects: list[str], commits: int) -> None:
    """``commits`` commits that each move one message to a new createdAt (one key out, one key in)."""
    rng = random.Random(5)
    lsn = index.newest_lsn
    for victim in rng.sample(range(len(keys)), commits):
        lsn += 1
        doc = {
            "_id": f"moved{lsn}",
            "_creationTime": 2e12 + lsn,
            "projectId": rng.choice(projects),
            "createdAt": 1.0,
        }
        index.apply(lsn, [keys[victim]], [(spec.key_for(doc), str(doc["_id"]))])


def bench_reads(index: IndexData, projects: list[str], label: str) -> None:
    rng = random.Random(3)
    snapshot = index.newest_lsn
    prefixes = [encode_key([rng.choice(projects)]) for _ in range(2000)]
    it = iter(prefixes * 10)

    def take_50(reverse: bool = False) -> list[object]:
        lo = next(it)
        return list(itertools.islice(index.scan(lo, prefix_end(lo), snapshot=snapshot, reverse=reverse), 50))

    def count() -> int:
        lo = next(it)
        return index.count(lo, prefix_end(lo), snapshot=snapshot)

    seconds, entries = timed(take_50, 2000)
    show(f"scan: first 50 of a project ({label})", seconds, f"{len(entries)} entries")  # type: ignore[arg-type]
    show(f"scan: last 50 of a project, reverse ({label})", timed(lambda: take_50(True), 2000)[0])
    seconds, n = timed(count, 2000)
    show(f"count: one project's messages ({label})", seconds, f"~{n} each")
    older = max(index.base_lsn, snapshot - 500)
    lo = prefixes[0]
    show(
        f"count at an older snapshot ({label})",
        timed(lambda: index.count(lo, prefix_end(lo), snapshot=older), 500)[0],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to save (default: a temporary directory)"
    )
    args = parser.parse_args()
    rng = random.Random(1)
    spec = IndexSpec("by_projectId_createdAt", ("projectId", "createdAt"))
    projects, docs = make_docs(args.count, rng)

    seconds, keys = timed(lambda: [spec.key_for(d) for d in docs], 1)
    assert isinstance(keys, list)
    print(f"{args.count:,} keys of {len(keys[0])} bytes ({spec.name}); {PROJECTS} projects\n")
    show("key_for, per document", seconds / args.count)
    positions = np.arange(args.count)
    cpu = time.process_time()
    seconds, index = timed(lambda: IndexData.build(keys, positions, lsn=1), 3)
    cpu = (time.process_time() - cpu) / 3
    assert isinstance(index, IndexData)
    show("build from a list of bytes", seconds, f"{index.nbytes / 1e6:.0f} MB; {cpu * 1e3:.0f} ms of CPU")
    arrow = pa.array(keys, pa.binary())
    show("build from an Arrow binary array", timed(lambda: IndexData.build(arrow, positions, lsn=1), 3)[0])

    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        show("save (write, fsync, rename, fsync dir)", timed(lambda: index.save(directory, "ix"), 3)[0])
        show("load, memory-mapped", timed(lambda: IndexData.load(directory, "ix"), 20)[0])
        show("load, read into memory", timed(lambda: IndexData.load(directory, "ix", mmap=False), 3)[0])
        show(
            "load, mapped, verify=True (checksum all)",
            timed(lambda: IndexData.load(directory, "ix", verify=True), 3)[0],
        )
        loaded = IndexData.load(directory, "ix")
        bench_reads(loaded, projects, "mapped base, no delta")

    churn(index, spec, keys, projects, 500)
    bench_reads(index, projects, "1k delta entries")
    doc = {"_id": "one", "_creationTime": 3e12, "projectId": projects[0], "createdAt": 5.0}
    key = spec.key_for(doc)
    lsn = [index.newest_lsn]

    def one_key_commit() -> None:
        lsn[0] += 1
        index.apply(lsn[0], [key] if lsn[0] % 2 else [], [] if lsn[0] % 2 else [(key, "one")])

    lsn[0] += 1
    index.apply(lsn[0], [], [(key, "one")])
    show("apply: a 1-key commit", timed(one_key_commit, 5000)[0])

    fresh = IndexData.build(keys, positions, lsn=1)
    churn(fresh, spec, keys, projects, 5000)
    moved = {f"moved{n}": args.count + n for n in range(fresh.newest_lsn + 1)}
    mapping = positions_from(np.arange(args.count), moved)
    seconds, merged = timed(lambda: fresh.merged(fresh.newest_lsn, mapping), 3)
    assert isinstance(merged, IndexData)
    show(
        "merge: 10k delta entries into the base",
        seconds,
        f"{fresh.delta_count} changes -> {merged.base_count:,} keys",
    )

    block = np.random.default_rng(0).integers(0, 255, 100_000_000, dtype=np.uint8).tobytes()
    show("(for reference) CRC-32 of 100 MB in memory", timed(lambda: zlib.crc32(block), 5)[0])


if __name__ == "__main__":
    main()

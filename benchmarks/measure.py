"""Measuring one system on the workload, in a process of its own (``run.py`` starts one per system).

The operations run in this order: W1 (load), Open, Q1-Q5 (on the freshly loaded database), then W2 and W3
(single writes last, so that the reads see the same data on every system). Sampled operations time each
call with ``perf_counter_ns`` and stop early, after at least :data:`MIN_SAMPLES` calls, once they have
used their time budget, so that slow systems finish in bounded time (the sample count is reported).
Each operation also makes a digest of what it returned (in workload IDs), for ``run.py`` to check that
every system answered the same.

    python benchmarks/measure.py KEY DATA_DIR DB_DIR OPS OUT_JSON BUDGET_SECONDS
"""

from __future__ import annotations

import functools
import hashlib
import json
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import polars as pl
from peers import ALL_OPS, Peer, make_peer
from tqdm import tqdm
from workload import Workload

__all__ = ["MIN_SAMPLES", "Sampler", "measure", "memory_mb"]

MIN_SAMPLES: Final = 100
KEEP: Final = 20  # results kept per sampled operation for the digest
REPEATS: Final = {"Q3": 3, "Q4": 5, "Open": 3}
A = TypeVar("A")
R = TypeVar("R")
Metrics = dict[str, Any]


@dataclass(frozen=True)
class Sampler:
    """Runs calls one at a time, timing each, within a time budget (in seconds) per operation."""

    budget: float
    label: str

    def run(
        self, op: str, args: Sequence[A], call: Callable[[A], R], minimum: int = MIN_SAMPLES
    ) -> tuple[list[int], list[R]]:
        """Latencies (ns) of ``call(arg)`` for each arg until the budget is spent, and the first results."""
        latencies: list[int] = []
        kept: list[R] = []
        deadline = time.perf_counter() + self.budget
        with tqdm(
            total=len(args), desc=f"{self.label} {op}", leave=False, mininterval=0.5, position=1, disable=None
        ) as bar:
            for arg in args:
                began = time.perf_counter_ns()
                result = call(arg)
                latencies.append(time.perf_counter_ns() - began)
                if len(kept) < KEEP:
                    kept.append(result)
                bar.update()
                if len(latencies) >= minimum and time.perf_counter() > deadline:
                    break
        return latencies, kept


def _latency_metrics(latencies: list[int]) -> Metrics:
    ordered = sorted(latencies)
    n = len(ordered)
    return {
        "n": n,
        "ops_per_s": n / (sum(ordered) / 1e9),
        "p50_us": ordered[n // 2] / 1e3,
        "p99_us": ordered[min(n - 1, int(0.99 * n))] / 1e3,
    }


def _digest(parts: Sequence[object]) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:12]


def _frame_ids(peer: Peer, frames: Sequence[pl.DataFrame]) -> list[str]:
    return [peer.workload_id(doc_id) for frame in frames for doc_id in frame["_id"].to_list()]


def memory_mb(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak) of this process in MB, from /proc (ru_maxrss where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def w1(peer: Peer, workload: Workload, _: Sampler) -> Metrics:
    before = memory_mb("VmRSS")
    began = time.perf_counter()
    peer.load(workload.projects, workload.messages)
    seconds = time.perf_counter() - began - peer.untimed_seconds
    loaded_peak = memory_mb("VmHWM")
    began = time.perf_counter()
    peer.finish_load()
    return {
        "rows": workload.rows,
        "seconds": seconds,
        "rows_per_s": workload.rows / seconds,
        "finish_s": time.perf_counter() - began,
        "rss_before_mb": before,
        "load_peak_rss_mb": loaded_peak,
        "peak_rss_mb": memory_mb("VmHWM"),
    }


def open_db(peer: Peer, workload: Workload, sampler: Sampler) -> Metrics:
    probe = peer.translate(workload.q5_ids[0])
    peer.close()
    timings = [peer.open(probe) for _ in range(REPEATS["Open"])]
    peer.attach()
    return {
        "n": len(timings),
        "open_ms": statistics.median(t.open_seconds for t in timings) * 1e3,
        "process_ms": statistics.median(t.process_seconds for t in timings) * 1e3,
    }


def _sampled_frames(
    op: str, peer: Peer, args: Sequence[str], call: Callable[[str], pl.DataFrame], sampler: Sampler
) -> Metrics:
    latencies, kept = sampler.run(op, args, call)
    ids = _frame_ids(peer, kept)
    return {**_latency_metrics(latencies), "rows": len(ids) / len(kept), "digest": _digest(ids)}


def q1(peer: Peer, workload: Workload, sampler: Sampler) -> Metrics:
    return _sampled_frames("Q1", peer, [peer.translate(p) for p in workload.q1_projects], peer.q1, sampler)


def q2(peer: Peer, workload: Workload, sampler: Sampler) -> Metrics:
    return _sampled_frames("Q2", peer, list(workload.q2_users), peer.q2, sampler)


def q3(peer: Peer, workload: Workload, sampler: Sampler) -> Metrics:
    project = peer.translate(workload.hot_projects[0])
    latencies, kept = sampler.run("Q3", [project] * REPEATS["Q3"], peer.q3, minimum=1)
    walk = kept[0]
    return {
        "n": len(latencies),
        "total_ms": statistics.median(latencies) / 1e6,
        "pages": walk.pages,
        "rows": walk.rows,
        "ms_per_page": statistics.median(latencies) / 1e6 / walk.pages,
        "digest": _digest([walk.rows, peer.workload_id(walk.last_id)]),
    }


def q4(peer: Peer, workload: Workload, sampler: Sampler) -> Metrics:
    count_latencies, counts = sampler.run(
        "Q4 count", [None] * REPEATS["Q4"], lambda _: peer.q4_count(), minimum=1
    )
    collect_latencies, frames = sampler.run(
        "Q4 collect", [None] * REPEATS["Q4"], lambda _: peer.q4_collect(), minimum=1
    )
    ids = sorted(_frame_ids(peer, frames[:1]))
    if counts[0] != len(ids):
        raise AssertionError(f"Q4 count() is {counts[0]} but collect() returned {len(ids)} rows")
    return {
        "n": len(collect_latencies),
        "count_ms": statistics.median(count_latencies) / 1e6,
        "collect_ms": statistics.median(collect_latencies) / 1e6,
        "rows": len(ids),
        "digest": _digest(ids),
    }


def q5(peer: Peer, workload: Workload, sampler: Sampler) -> Metrics:
    latencies, docs = sampler.run("Q5", [peer.translate(i) for i in workload.q5_ids], peer.q5)
    parts = [
        None if d is None else (peer.workload_id(str(d["_id"])), d["content"], d["status"]) for d in docs
    ]
    return {**_latency_metrics(latencies), "digest": _digest(parts)}


def w2(peer: Peer, workload: Workload, sampler: Sampler) -> Metrics:
    docs = [{**doc, "projectId": peer.translate(doc["projectId"])} for doc in workload.w2_docs]
    latencies, ids = sampler.run("W2", docs, peer.insert_one)
    found = peer.q5(ids[-1])
    return {**_latency_metrics(latencies), "durable": peer.durable, "verified": found is not None}


def w3(peer: Peer, workload: Workload, sampler: Sampler) -> Metrics:
    patches = [(peer.translate(doc_id), field, value) for doc_id, field, value in workload.w3_patches]
    latencies, _ = sampler.run("W3", patches, lambda patch: peer.patch_one(*patch))
    doc_id, field, value = patches[len(latencies) - 1]
    found = peer.q5(doc_id)
    verified = found is not None and found[field] == value
    return {**_latency_metrics(latencies), "durable": peer.durable, "verified": verified}


OPERATIONS: Final[dict[str, Callable[[Peer, Workload, Sampler], Metrics]]] = {
    "W1": w1, "Open": open_db, "Q1": q1, "Q2": q2, "Q3": q3, "Q4": q4, "Q5": q5, "W2": w2, "W3": w3,
}  # fmt: skip


def _attempt(run: Callable[[], Metrics]) -> Metrics:
    try:
        return run()
    except (AttributeError, NotImplementedError) as err:
        return {"skipped": f"{type(err).__name__}: {err}"}
    except Exception as err:  # a failing system is reported in the results, and the others still run
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(err).__name__}: {err}"[:300]}


def measure(key: str, data: Path, directory: Path, ops: Sequence[str], budget: float, out: Path) -> None:
    """Load the workload into system ``key``, run ``ops`` (W1 always runs: the others need the data), and
    write the results to ``out`` after each operation, naming the one running next (``"running"``), so
    that a run stopped at a timeout still reports what it measured."""
    workload = Workload.read(data)
    peer = make_peer(key, directory)
    sampler = Sampler(budget, key)
    record: dict[str, Any] = {"key": key, "label": peer.label, "durable": peer.durable, "ops": {}}
    results: dict[str, Metrics] = record["ops"]
    for op, operation in OPERATIONS.items():
        if op != "W1" and (op not in ops or op not in peer.ops):
            continue
        _write(out, record | {"running": op})
        results[op] = _attempt(functools.partial(operation, peer, workload, sampler))
        if op == "W1" and ("skipped" in results[op] or "error" in results[op]):
            break
    loaded = results["W1"]
    if "peak_rss_mb" in loaded:
        loaded["run_peak_rss_mb"] = memory_mb("VmHWM")  # through every operation, before close
    _attempt(lambda: _close(peer))
    if ("W1" not in ops or "W1" not in peer.ops) and not ("error" in loaded or "skipped" in loaded):
        del results["W1"]  # loaded for the other operations; not reported
    _write(out, record)


def _write(out: Path, record: dict[str, Any]) -> None:
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=1))
    partial.replace(out)


def _close(peer: Peer) -> Metrics:
    peer.close()
    return {}


def main() -> None:
    key, data, directory, ops, out, budget = sys.argv[1:]
    chosen = [op for op in ops.split(",") if op in ALL_OPS]
    measure(key, Path(data), Path(directory), chosen, float(budget), Path(out))


if __name__ == "__main__":
    main()

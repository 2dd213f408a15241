"""Run the benchmark workload on zapnb and its peers in one run, and print each result next to SQLite's.

    python benchmarks/run.py [--quick] [--only W1,W2,...] [--peers sqlite,duckdb,...] [--rounds R] [--dir D]

The workload (``workload.py``; see docs/benchmarks.md) is generated once; then each system
loads it and runs the operations in a process of its own (``measure.py``), with its database in real files
under a temporary directory (``--dir`` chooses where: put it on the disk you want to measure). The results
are printed as one Markdown table per operation, with each system's ratio to SQLite WAL measured in the
same run (``report.py``), and written as JSON to ``benchmarks/results/<date>-<machine>.json`` (with
``-quick`` and/or ``-partial`` before ``.json`` for a quick run or a run of selected operations or systems).

With ``--rounds R`` every system is measured R times, the systems taking turns (sqlite, zapnb, sqlite, zapnb,
...), and each number reported is the median of its R rounds; every round is kept in the JSON. On a shared
machine a slow spell then falls on every system alike instead of on whichever ran during it.

Operations: W1 W2 W3 Q1 Q2 Q3 Q4 Q5 Open. Systems: sqlite (WAL, synchronous=NORMAL), sqlite-full (WAL,
synchronous=FULL; single writes only), duckdb, lance (pylance), lancedb, polars (in memory), zapnb (skipped
with the reason when its engine is not available).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from peers import ALL_OPS, PEER_KEYS
from report import problems, render, summary
from tqdm import tqdm
from workload import FULL_MESSAGES, QUICK_MESSAGES, SAMPLES, generate
from zapnb_peer import unavailable

HERE: Final = Path(__file__).resolve().parent
RESULTS: Final = HERE / "results"
BUDGET: Final = {"full": 30.0, "quick": 15.0}
TIMEOUT: Final = {"full": 600.0, "quick": 300.0}
PACKAGES: Final = ("polars", "pyarrow", "duckdb", "pylance", "lancedb", "numpy", "zapnb")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_MESSAGES:,} messages instead of {FULL_MESSAGES:,}"
    )
    parser.add_argument(
        "--only", default=",".join(ALL_OPS), help="operations, comma-separated (default: all)"
    )
    parser.add_argument(
        "--peers", default=",".join(PEER_KEYS), help="systems, comma-separated (default: all)"
    )
    budget = f"default {BUDGET['full']:.0f}, quick {BUDGET['quick']:.0f}"
    parser.add_argument("--budget", type=float, help=f"seconds per operation, after 100 calls ({budget})")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the databases go (default: the temp dir)"
    )
    timeout = f"default {TIMEOUT['full']:.0f}, quick {TIMEOUT['quick']:.0f}"
    parser.add_argument("--timeout", type=float, help=f"seconds per system before it is stopped ({timeout})")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the generated data")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure each system this many times, taking turns (default 1)"
    )
    args = parser.parse_args(argv)
    args.ops = _choose(args.only, ALL_OPS, "operation")
    args.systems = _choose(args.peers, PEER_KEYS, "system")
    size = "quick" if args.quick else "full"
    args.budget = BUDGET[size] if args.budget is None else args.budget
    args.timeout = TIMEOUT[size] if args.timeout is None else args.timeout
    if args.rounds < 1:
        raise SystemExit(f"--rounds takes a whole number >= 1, not {args.rounds}")
    return args


def _choose(text: str, known: tuple[str, ...], kind: str) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in known]
    if unknown:
        raise SystemExit(f"unknown {kind} {', '.join(unknown)}; choose from {', '.join(known)}")
    return [item for item in known if item in chosen]  # in the standard order


def _machine() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "node": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": os.getloadavg(),
        "versions": versions,
    }


def _run_system(key: str, data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one system in a process of its own, stopped after ``args.timeout`` seconds."""
    out = work / f"{key}.json"
    database = work / key
    command = [sys.executable, str(HERE / "measure.py"), key, str(data), str(database), ",".join(args.ops)]
    command += [str(out), str(args.budget)]
    try:
        done = subprocess.run(command, check=False, timeout=args.timeout)
        problem = None if done.returncode == 0 else f"exit status {done.returncode}"
    except subprocess.TimeoutExpired:
        problem = f"timed out after {args.timeout:.0f} s (--timeout)"
    record: dict[str, Any] = {"key": key, "label": key, "durable": True, "ops": {}}
    if out.exists():
        record = json.loads(out.read_text())
    running = record.pop("running", None)
    if problem is not None or running is not None:
        record["ops"][running or "W1"] = {"error": problem or "stopped"}
    return record


def _results_path(args: argparse.Namespace, started: datetime.datetime) -> Path:
    machine = "".join(c if c.isalnum() or c in "-_" else "-" for c in platform.node()) or "machine"
    partial = args.ops != list(ALL_OPS) or args.systems != list(PEER_KEYS)
    suffix = ("-quick" if args.quick else "") + ("-partial" if partial else "")
    return RESULTS / f"{started:%Y-%m-%d}-{machine}{suffix}.json"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the workload, measure every chosen system, and return everything measured."""
    started = datetime.datetime.now()
    messages = QUICK_MESSAGES if args.quick else FULL_MESSAGES
    skipped: dict[str, str] = {}
    systems = list(args.systems)
    if "zapnb" in systems and (reason := unavailable()) is not None:
        tqdm.write(f"zapnb: not available ({reason})")
        skipped["zapnb"] = reason
        systems.remove("zapnb")
    work = Path(tempfile.mkdtemp(prefix="zapnb-bench-", dir=args.dir))
    rounds: dict[str, list[dict[str, Any]]] = {key: [] for key in systems}
    try:
        began = time.perf_counter()
        workload = generate(messages)
        tqdm.write(
            f"workload: {workload.rows:,} rows generated in {time.perf_counter() - began:.1f} s ({work})"
        )
        workload.save(work / "data")
        del workload
        turns = [(turn, key) for turn in range(args.rounds) for key in systems]
        for turn, key in tqdm(turns, desc="systems", position=0, leave=True, disable=None):
            began = time.perf_counter()
            record = _run_system(key, work / "data", work, args)
            rounds[key].append(record)
            of = f" (round {turn + 1} of {args.rounds})" if args.rounds > 1 else ""
            tqdm.write(f"{record['label']}: measured in {time.perf_counter() - began:.0f} s{of}")
            shutil.rmtree(work / key, ignore_errors=True)  # the next round loads afresh
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results = {key: combined(records) for key, records in rounds.items()}
    return {
        "date": started.isoformat(timespec="seconds"),
        "seconds": (datetime.datetime.now() - started).total_seconds(),
        "machine": _machine(),
        "workload": {"messages": messages, "projects": 50_000, "users": 10_000, "samples": SAMPLES},
        "operations": args.ops,
        "budget_seconds": args.budget,
        "timeout_seconds": args.timeout,
        "systems": args.systems,
        "skipped": skipped,
        "rounds": args.rounds,
        "results": results,
        "each_round": rounds if args.rounds > 1 else {},
    }


def combined(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's results over its rounds: each number the median of the rounds that measured it, the
    other fields from the first round; an operation that failed in any round keeps that round's error.

    >>> one = {"label": "x", "ops": {"Q1": {"p50_us": 10.0, "digest": "a"}}}
    >>> two = {"label": "x", "ops": {"Q1": {"p50_us": 30.0, "digest": "a"}}}
    >>> three = {"label": "x", "ops": {"Q1": {"p50_us": 20.0, "digest": "a"}, "Q5": {"error": "stopped"}}}
    >>> combined([one, two, three])["ops"]
    {'Q1': {'p50_us': 20.0, 'digest': 'a'}, 'Q5': {'error': 'stopped'}}
    """
    first = records[0]
    ops: dict[str, dict[str, Any]] = {}
    for op in dict.fromkeys(op for record in records for op in record["ops"]):
        measured = [record["ops"][op] for record in records if op in record["ops"]]
        failed = [metrics for metrics in measured if "error" in metrics]
        if failed:
            ops[op] = failed[0]
            continue
        ops[op] = {name: _median([metrics[name] for metrics in measured]) for name in measured[0]}
    return {**first, "ops": ops}


def _median(values: list[Any]) -> Any:
    """The median of numbers (an int for ints: a count stays a count), or the first of other values."""
    if all(type(value) is int for value in values):
        return statistics.median_low(values)
    if all(type(value) in (int, float) for value in values):
        return statistics.median(values)
    return values[0]


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    record = run(args)
    started = datetime.datetime.fromisoformat(record["date"])
    header = (
        f"## zapnb benchmarks, {record['date']} on {record['machine']['node']} "
        f"({record['machine']['cpus']} CPUs), {record['workload']['messages']:,} messages"
    )
    print(f"\n{header}\n")
    for key, reason in record["skipped"].items():
        print(f"{key}: not available ({reason})\n")
    for line in problems(record["results"], args.systems):
        print(f"{line}\n")
    print(render(record["results"], args.systems, args.ops))
    print("\n### Summary (medians)\n")
    print(summary(record["results"], args.systems))
    print("\n### Summary as speed relative to SQLite (WAL FULL for W2 and W3, NORMAL otherwise)\n")
    print(summary(record["results"], args.systems, ratios=True))
    path = _results_path(args, started)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"\nresults written to {path.relative_to(HERE.parent)} ({record['seconds']:.0f} s in all)")


if __name__ == "__main__":
    main()

"""Watched queries: how soon a commit reaches a callback, and what 10,000 subscriptions cost a commit.

Scenarios (each on a fresh data directory, durability "full"):

- in process: a thread commits one message at a time to a watched project; latency is from just before the
  commit call to the callback receiving the new result (target: p50 under 2 ms);
- across processes: another process commits, stamping each message with its wall-clock time; latency is from
  that stamp to the callback here (target: p50 under 100 ms). The peer is what one would build on SQLite:
  poll ``PRAGMA data_version`` every 20 ms (zapnb's watcher interval) and re-run the query when it moves;
- 10,000 subscriptions, one per project: commit latency of single inserts into one project, against the same
  commits with no subscription (target: within 2x) and with only the written project's subscription (what
  the re-run itself costs: it competes with the next commit for the interpreter), and how many subscriptions
  re-ran (must be only the written project's).

    python benchmarks/bench_reactive.py [--commits 200] [--subscriptions 10000] [--dir D] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zapnb
from zapnb import v

SCHEMA = zapnb.define_schema(
    {
        "projects": zapnb.define_table({"name": v.string()}),
        "messages": zapnb.define_table(
            {"projectId": v.id("projects"), "text": v.string(), "sentAt": v.float64()}
        ).index("by_project", ["projectId"]),
    }
)
WRITER = """
import sys, time, zapnb
path, project, commits = sys.argv[1], sys.argv[2], int(sys.argv[3])
with zapnb.connect(path) as db:
    for i in range(commits):
        db.insert("messages", {"projectId": project, "text": f"m{i}", "sentAt": time.time()})
        time.sleep(0.01)
"""
SQLITE_WRITER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA journal_mode=WAL"); con.execute("PRAGMA synchronous=FULL")
for i in range(int(sys.argv[2])):
    con.execute("INSERT INTO messages(project, text, sent_at) VALUES (1, ?, ?)", (f"m{i}", time.time()))
    time.sleep(0.01)
"""


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
        "n": len(ordered),
    }


def fresh(root: Path, name: str) -> zapnb.Database:
    db = zapnb.connect(root / name)
    db.deploy(SCHEMA, progress=False)
    return db


def in_process(root: Path, commits: int) -> dict[str, float]:
    db = fresh(root, "in-process")
    project = db.insert("projects", {"name": "watched"})
    arrived = threading.Semaphore(0)
    stamps: list[float] = []

    def on_result(frame: Any) -> None:
        stamps.append(time.perf_counter())
        arrived.release()

    query = db.query("messages").with_index("by_project", lambda q: q.eq("projectId", project))
    sub = db.watch(query, callback=on_result)
    arrived.acquire()
    latencies = []
    for i in range(commits):
        started = time.perf_counter()
        db.insert("messages", {"projectId": project, "text": f"m{i}", "sentAt": time.time()})
        if not arrived.acquire(timeout=10):
            raise RuntimeError("a commit never reached the callback")
        latencies.append(stamps[-1] - started)
    sub.unsubscribe()
    db.close()
    return percentiles(latencies)


def across_processes(root: Path, commits: int) -> dict[str, float]:
    db = fresh(root, "across")
    project = db.insert("projects", {"name": "watched"})
    latencies: list[float] = []
    done = threading.Event()

    def on_result(frame: Any) -> None:
        now = time.time()
        if len(frame):
            latencies.append(now - float(frame["sentAt"][-1]))
        if len(frame) >= commits:
            done.set()

    query = db.query("messages").with_index("by_project", lambda q: q.eq("projectId", project))
    sub = db.watch(query, callback=on_result)
    subprocess.run([sys.executable, "-c", WRITER, str(db.path), project, str(commits)], check=True)
    if not done.wait(30):
        raise RuntimeError("the other process's commits did not all arrive")
    sub.unsubscribe()
    db.close()
    return percentiles(latencies)


def sqlite_polling(root: Path, commits: int) -> dict[str, float]:
    path = root / "peer.sqlite"
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE messages(id INTEGER PRIMARY KEY, project INT, text TEXT, sent_at REAL)")
    con.execute("CREATE INDEX by_project ON messages(project)")
    latencies: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        version = con.execute("PRAGMA data_version").fetchone()[0]
        seen = 0
        while not stop.is_set():
            now_version = con.execute("PRAGMA data_version").fetchone()[0]
            if now_version != version:
                version = now_version
                rows = con.execute("SELECT sent_at FROM messages WHERE project = 1 ORDER BY id").fetchall()
                now = time.time()
                if len(rows) > seen:
                    latencies.append(now - rows[-1][0])
                    seen = len(rows)
                if seen >= commits:
                    return
            stop.wait(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    subprocess.run([sys.executable, "-c", SQLITE_WRITER, str(path), str(commits)], check=True)
    poller.join(30)
    stop.set()
    con.close()
    return percentiles(latencies)


def commit_latencies(db: zapnb.Database, project: str, commits: int) -> list[float]:
    latencies = []
    for i in range(commits):
        started = time.perf_counter()
        db.insert("messages", {"projectId": project, "text": f"m{i}", "sentAt": time.time()})
        latencies.append(time.perf_counter() - started)
    return latencies


def many_subscriptions(root: Path, commits: int, count: int) -> dict[str, Any]:
    """Commit latency with ``count`` subscriptions against none, measured before subscribing and again
    after unsubscribing (the disk's speed drifts on a shared machine; the two baselines bracket it)."""
    db = fresh(root, "many")
    projects = db.insert_many("projects", [{"name": f"p{i}"} for i in range(count)])
    target = projects[count // 2]
    before = commit_latencies(db, target, commits)
    one = db.watch(db.query("messages").with_index("by_project", lambda q: q.eq("projectId", target)))
    single = percentiles(commit_latencies(db, target, commits))
    one.unsubscribe()
    subs = [
        db.watch(db.query("messages").with_index("by_project", lambda q, p=p: q.eq("projectId", p)))
        for p in projects
    ]
    runs_before = sum(sub.runs for sub in subs)
    watched = percentiles(commit_latencies(db, target, commits))
    for sub in subs:
        sub.wait()
    reruns = sum(sub.runs for sub in subs) - runs_before
    touched = sum(1 for sub in subs if sub.runs > 1)
    for sub in subs:
        sub.unsubscribe()
    baseline = percentiles(before + commit_latencies(db, target, commits))
    db.close()
    return {
        "subscriptions": count,
        "without": baseline,
        "one": single,
        "with": watched,
        "ratio_p50": watched["p50_ms"] / baseline["p50_ms"],
        "reruns": reruns,
        "subscriptions_rerun": touched,
        "commits": commits,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, help="where the data directories go (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="zapnb-bench-reactive-") as tmp:
        root = Path(tmp)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("in_process", lambda: in_process(root, args.commits)),
            ("across_processes", lambda: across_processes(root, min(args.commits, 100))),
            ("sqlite_polling_across_processes", lambda: sqlite_polling(root, min(args.commits, 100))),
            ("many_subscriptions", lambda: many_subscriptions(root, args.commits, args.subscriptions)),
        ]
        results: dict[str, Any] = {}
        for name, step in steps:
            print(f"running {name}...", flush=True)
            results[name] = step()
    print_report(results)
    if args.json is not None:
        meta = {
            "date": datetime.date.today().isoformat(),
            "machine": platform.platform(),
            "python": sys.version,
        }
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


def print_report(results: dict[str, Any]) -> None:
    inside, across, peer = (
        results["in_process"],
        results["across_processes"],
        results["sqlite_polling_across_processes"],
    )
    many = results["many_subscriptions"]
    print()
    print("| scenario | p50 ms | p99 ms | target | ratio |")
    print("|---|---|---|---|---|")
    print(f"| commit -> callback, in process | {inside['p50_ms']:.2f} | {inside['p99_ms']:.2f} | p50 < 2 | |")
    print(
        f"| commit -> callback, across processes | {across['p50_ms']:.1f} | {across['p99_ms']:.1f} | "
        f"p50 < 100 | {peer['p50_ms'] / across['p50_ms']:.2f}x SQLite polling's speed |"
    )
    print(f"| SQLite, polling data_version every 20 ms | {peer['p50_ms']:.1f} | {peer['p99_ms']:.1f} | | |")
    print(
        f"| commit, no subscriptions | {many['without']['p50_ms']:.2f} | "
        f"{many['without']['p99_ms']:.2f} | | |"
    )
    print(
        f"| commit, 1 subscription (re-run each commit) | {many['one']['p50_ms']:.2f} | "
        f"{many['one']['p99_ms']:.2f} | | {many['one']['p50_ms'] / many['without']['p50_ms']:.2f}x |"
    )
    print(
        f"| commit, {many['subscriptions']:,} subscriptions | {many['with']['p50_ms']:.2f} | "
        f"{many['with']['p99_ms']:.2f} | within 2x | {many['ratio_p50']:.2f}x |"
    )
    print(
        f"\n{many['commits']} commits to one project re-ran {many['reruns']} subscription runs "
        f"({many['subscriptions_rerun']} distinct subscriptions) of {many['subscriptions']:,}."
    )


if __name__ == "__main__":
    main()

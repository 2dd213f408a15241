"""Watched queries (zapnb.reactive): what re-runs, what is delivered, and when, in this process and across."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import zapnb
from zapnb import v
from zapnb.reactive import Subscription, same_result

SCHEMA = zapnb.define_schema(
    {
        "projects": zapnb.define_table({"name": v.string()}),
        "messages": zapnb.define_table(
            {"projectId": v.id("projects"), "text": v.string(), "n": v.int64(), "done": v.boolean()}
        )
        .index("by_project", ["projectId"])
        .index("by_n", ["n"]),
    }
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[zapnb.Database]:
    with zapnb.connect(tmp_path / "data") as database:
        database.deploy(SCHEMA, progress=False)
        yield database


def _message(project: str, n: int, text: str = "hi", done: bool = False) -> dict[str, Any]:
    return {"projectId": project, "text": text, "n": n, "done": done}


def _of_project(db: zapnb.Database, project: str) -> zapnb.queries.Query:
    return db.query("messages").with_index("by_project", lambda q: q.eq("projectId", project))


class Recorder:
    """A callback that keeps every result it was handed."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    def __call__(self, result: Any) -> None:
        self.results.append(result)


def test_the_callback_gets_the_current_result_at_once_and_then_each_change(db: zapnb.Database) -> None:
    project = db.insert("projects", {"name": "a"})
    db.insert("messages", _message(project, 1, "first"))
    seen = Recorder()
    sub = db.watch(_of_project(db, project), callback=seen)
    assert [frame["text"].to_list() for frame in seen.results] == [["first"]]  # before watch returned
    db.insert("messages", _message(project, 2, "second"))
    assert sub.wait()
    assert [frame["text"].to_list() for frame in seen.results] == [["first"], ["first", "second"]]
    assert sub.result["text"].to_list() == ["first", "second"]
    assert sub.runs == 2
    assert sub.deliveries == 2


def test_a_commit_reruns_only_the_subscriptions_whose_read_set_it_touched(db: zapnb.Database) -> None:
    projects = [db.insert("projects", {"name": f"p{i}"}) for i in range(5)]
    subs = [db.watch(_of_project(db, p)) for p in projects]
    db.insert("messages", _message(projects[2], 1))
    for sub in subs:
        assert sub.wait()
    assert [sub.runs for sub in subs] == [1, 1, 2, 1, 1]
    moved = db.query("messages").first()
    assert moved is not None
    db.patch(moved["_id"], {"projectId": projects[4]})  # old key in 2, new key in 4
    for sub in subs:
        assert sub.wait()
    assert [sub.runs for sub in subs] == [1, 1, 3, 1, 2]
    assert [len(sub.result) for sub in subs] == [0, 0, 0, 0, 1]


def test_a_take_is_rerun_only_by_writes_up_to_its_last_key(db: zapnb.Database) -> None:
    project = db.insert("projects", {"name": "a"})
    db.insert_many("messages", [_message(project, n) for n in (10, 20, 30)])

    @zapnb.query
    def smallest_two(ctx: Any) -> pl.DataFrame:
        frame: pl.DataFrame = ctx.db.query("messages").with_index("by_n").take(2)
        return frame

    sub = db.watch(smallest_two)
    assert sub.result["n"].to_list() == [10, 20]
    db.insert("messages", _message(project, 40))  # beyond the last key read (20): not read, no re-run
    db.insert("messages", _message(project, 25))
    assert sub.wait()
    assert sub.runs == 1
    db.insert("messages", _message(project, 15))  # inside what the take read
    assert sub.wait()
    assert sub.runs == 2
    assert sub.result["n"].to_list() == [10, 15]


def test_a_bulk_insert_reruns_only_the_subscriptions_its_rows_fall_in(db: zapnb.Database) -> None:
    a, b, c = (db.insert("projects", {"name": name}) for name in "abc")
    subs = {p: db.watch(_of_project(db, p)) for p in (a, b, c)}
    everything = db.watch(lambda ctx: ctx.db.query("messages").count())
    db.insert_many("messages", pl.DataFrame([_message(b, n) for n in range(3000)]))  # the columnar path
    for sub in [*subs.values(), everything]:
        assert sub.wait()
    assert [subs[p].runs for p in (a, b, c)] == [1, 2, 1]
    assert everything.result == 3000
    db.insert_many("messages", [_message(p, n) for p in (a, c) for n in range(1500)])
    for sub in subs.values():
        assert sub.wait()
    assert [len(subs[p].result) for p in (a, b, c)] == [1500, 3000, 1500]
    assert [subs[p].runs for p in (a, b, c)] == [2, 2, 2]


def test_an_unchanged_result_is_not_handed_over_again(db: zapnb.Database) -> None:
    project = db.insert("projects", {"name": "a"})
    first = db.insert("messages", _message(project, 1))

    @zapnb.query(args={"project": v.id("projects")})
    def open_count(ctx: Any, *, project: str) -> int:
        messages = ctx.db.query("messages").with_index("by_project", lambda q: q.eq("projectId", project))
        return sum(1 for doc in messages if not doc["done"])

    seen = Recorder()
    sub = db.watch(open_count, {"project": project}, seen)
    db.patch(first, {"text": "edited"})  # read by the query, but the count stays 1
    assert sub.wait()
    assert (sub.runs, seen.results) == (2, [1])
    db.patch(first, {"done": True})
    assert sub.wait()
    assert (sub.runs, seen.results) == (3, [1, 0])


def test_every_subscription_a_commit_touched_sees_that_same_commit(db: zapnb.Database) -> None:
    project = db.insert("projects", {"name": "a"})
    everything = db.watch(db.query("messages"))
    mine = db.watch(_of_project(db, project))
    with db.transaction() as tx:
        tx.insert("messages", _message(project, 1))
        tx.insert("messages", _message(project, 2))
    assert everything.wait()
    assert mine.wait()
    assert everything.lsn == mine.lsn == tx.commit_lsn
    assert len(everything.result) == len(mine.result) == 2  # never one of the two inserts without the other


def test_a_function_of_ctx_and_args_is_watched_with_the_callers_identity(db: zapnb.Database) -> None:
    @zapnb.query
    def who(ctx: Any) -> str | None:
        identity = ctx.auth.get_user_identity()
        ctx.db.query("projects").count()
        return None if identity is None else identity.subject

    sub = db.as_user("alice").watch(who)
    assert sub.result == "alice"
    plain = db.watch(lambda ctx: ctx.db.query("projects").count())
    db.insert("projects", {"name": "x"})
    assert plain.wait()
    assert sub.wait()
    assert plain.result == 1
    assert sub.runs == 2
    assert sub.deliveries == 1
    assert db.logs().filter(pl.col("function") == "who").height == 2  # watched runs are in the run log


def test_a_deploy_reruns_every_subscription(db: zapnb.Database) -> None:
    sub = db.watch(db.query("projects"))
    db.deploy(
        zapnb.define_schema({**SCHEMA.tables, "projects": zapnb.define_table({"name": v.int64()})}),
        progress=False,
    )
    assert sub.wait()
    assert sub.runs == 2
    assert sub.deliveries == 2  # the empty frame's type changed (name is now an int64)


def test_a_slow_callback_does_not_hold_up_commits(db: zapnb.Database) -> None:
    release = threading.Event()
    calls: list[int] = []

    def slow(frame: pl.DataFrame) -> None:
        calls.append(len(frame))
        if len(calls) > 1:
            release.wait(10)

    sub = db.watch(db.query("projects"), callback=slow)
    started = time.perf_counter()
    for i in range(20):
        db.insert("projects", {"name": f"p{i}"})
    elapsed = time.perf_counter() - started
    release.set()
    assert sub.wait()
    assert elapsed < 5  # commits went on while the callback was stuck
    assert calls[0] == 0
    assert calls[-1] == 20
    assert calls == sorted(calls)


def test_a_failing_callback_is_reported_and_the_subscription_goes_on(db: zapnb.Database) -> None:
    errors: list[BaseException] = []

    def fussy(frame: pl.DataFrame) -> None:
        if len(frame) == 1:
            raise ValueError("one is not enough")

    sub = db.watch(db.query("projects"), callback=fussy, on_error=errors.append)
    db.insert("projects", {"name": "a"})
    assert sub.wait()
    db.insert("projects", {"name": "b"})
    assert sub.wait()
    assert [str(e) for e in errors] == ["one is not enough"]
    assert len(sub.result) == 2
    assert sub.active


def test_without_on_error_a_failing_callback_is_printed(
    db: zapnb.Database, capfd: pytest.CaptureFixture[str]
) -> None:
    def broken(frame: pl.DataFrame) -> None:
        if len(frame):
            raise RuntimeError("broken callback")

    sub = db.watch(db.query("projects"), callback=broken)
    db.insert("projects", {"name": "a"})
    assert sub.wait()
    err = capfd.readouterr().err
    assert "zapnb: watched query \"query('projects')\": its callback raised" in err
    assert "RuntimeError: broken callback" in err


def test_a_failing_rerun_keeps_the_last_result_and_is_reported(db: zapnb.Database) -> None:
    errors: list[BaseException] = []

    @zapnb.query
    def picky(ctx: Any) -> int:
        count: int = ctx.db.query("projects").count()
        if count == 2:
            raise LookupError("two projects")
        return count

    sub = db.watch(picky, on_error=errors.append)
    db.insert("projects", {"name": "a"})
    assert sub.wait()
    db.insert("projects", {"name": "b"})
    assert sub.wait(timeout=2) is False or sub.result == 1  # the failed run delivered nothing
    assert sub.result == 1
    assert [type(e) for e in errors] == [LookupError]
    db.insert("projects", {"name": "c"})
    assert sub.wait()
    assert sub.result == 3


def test_unsubscribe_and_garbage_collection_stop_a_subscription(db: zapnb.Database) -> None:
    seen = Recorder()
    sub = db.watch(db.query("projects"), callback=seen)
    dropped = Recorder()
    db.watch(db.query("projects"), callback=dropped)  # nobody keeps this one
    gc.collect()
    sub.unsubscribe()
    assert not sub.active
    db.insert("projects", {"name": "a"})
    time.sleep(0.2)
    assert len(seen.results) == 1
    assert len(dropped.results) == 1
    assert sub.runs == 1


def test_watch_refuses_what_it_cannot_follow(db: zapnb.Database) -> None:
    @zapnb.mutation
    def add(ctx: Any) -> None:
        ctx.db.insert("projects", {"name": "x"})

    with pytest.raises(zapnb.InvalidQueryError, match="is a mutation"):
        db.watch(add)
    with pytest.raises(zapnb.InvalidQueryError, match="takes none"):
        db.watch(db.query("projects"), {"x": 1})
    with pytest.raises(zapnb.InvalidQueryError, match="not 42"):
        db.watch(42)  # type: ignore[arg-type]

    @zapnb.query(args={"n": v.int64()})
    def numbered(ctx: Any, *, n: int) -> int:
        return n

    with pytest.raises(zapnb.ArgumentValidationError):
        db.watch(numbered, {"n": "one"})
    with pytest.raises(ValueError, match="first callback"):
        db.watch(db.query("projects"), callback=_raise_first)


def _raise_first(result: Any) -> None:
    raise ValueError("first callback")


def test_closing_the_database_stops_its_subscriptions(tmp_path: Path) -> None:
    db = zapnb.connect(tmp_path)
    sub = db.watch(db.query("notes"))
    db.close()
    assert not sub.active
    with pytest.raises(zapnb.ClosedError):
        db.watch(db.query("notes"))


def test_subscribing_while_others_commit_misses_nothing(db: zapnb.Database) -> None:
    project = db.insert("projects", {"name": "a"})
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            db.insert("messages", _message(project, n))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        subs = [db.watch(_of_project(db, project)) for _ in range(20)]
    finally:
        stop.set()
        writer.join()
    for sub in subs:
        assert sub.wait()
        assert len(sub.result) == _of_project(db, project).count()


def test_a_commit_from_another_process_wakes_a_subscription(db: zapnb.Database) -> None:
    seen = Recorder()
    sub = db.watch(db.query("projects"), callback=seen)
    script = (
        f"import zapnb\nwith zapnb.connect({str(db.path)!r}) as other:\n"
        "    other.insert('projects', {'name': 'far'})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    deadline = time.monotonic() + 2.0
    while len(seen.results) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [frame["name"].to_list() for frame in seen.results] == [[], ["far"]]
    assert sub.runs == 2


def test_same_result_compares_types_and_values() -> None:
    frame = pl.DataFrame({"x": [1.0, float("nan"), None]})
    assert same_result(frame, frame.clone())
    assert not same_result(pl.DataFrame({"x": [1]}), pl.DataFrame({"x": [1.0]}))
    assert same_result({"a": [1, float("nan")]}, {"a": [1, float("nan")]})
    assert not same_result(1, 1.0)
    assert not same_result([1], (1,))
    assert same_result(None, None)


def test_subscription_repr_is_readable(db: zapnb.Database) -> None:
    sub = db.watch(db.query("projects"))
    assert isinstance(sub, Subscription)
    assert repr(sub) == f"<zapnb Subscription \"query('projects')\" active, runs=1, at commit {sub.lsn}>"

"""Watched queries at their edges: failed re-runs, exact comparison, foreign queries, dying callbacks."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import zapnb
from zapnb import v
from zapnb.reactive import same_result
from zapnb.schema import Schema

NAN = float("nan")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[zapnb.Database]:
    with zapnb.connect(tmp_path / "data") as database:
        yield database


class Recorder:
    """A callback that keeps every result it was handed."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, result: Any) -> None:
        with self.lock:
            self.results.append(result)


def _sign(x: float) -> float:
    return math.copysign(1.0, x)


# --- a re-run that raises ---------------------------------------------------------------------------------


def test_a_failed_rerun_is_woken_by_a_commit_to_what_the_failing_run_read(db: zapnb.Database) -> None:
    config = db.insert("config", {"mode": "a"})
    db.insert("a", {"v": "from a"})
    db.insert("b", {"v": "b1"})
    duplicate = db.insert("b", {"v": "b2"})

    def pick(ctx: Any) -> Any:
        if ctx.db.query("config").first()["mode"] == "b":
            return ctx.db.query("b").unique()["v"]
        return ctx.db.query("a").first()["v"]

    errors: list[BaseException] = []
    seen = Recorder()
    sub = db.watch(pick, callback=seen, on_error=errors.append)
    db.patch(config, {"mode": "b"})
    assert sub.wait()
    assert [type(e) for e in errors] == [zapnb.NotUniqueError]
    assert seen.results == ["from a"]

    db.delete(duplicate)  # only the failing run read "b"
    assert sub.wait()
    assert seen.results == ["from a", "b1"]
    assert sub.result == "b1"


def test_a_failed_rerun_still_wakes_on_what_the_last_good_run_read(db: zapnb.Database) -> None:
    flag = db.insert("flags", {"fail": False})
    db.insert("items", {"n": 1})

    def read(ctx: Any) -> Any:
        if ctx.db.get(flag)["fail"]:
            raise ValueError("asked to fail")  # before reading "items"
        return ctx.db.query("items").collect()["n"].to_list()

    errors: list[BaseException] = []
    sub = db.watch(read, callback=Recorder(), on_error=errors.append)
    db.patch(flag, {"fail": True})
    assert sub.wait()
    db.insert("items", {"n": 2})
    assert sub.wait()
    assert len(errors) == 2  # the insert, read by the last good run only, ran the query again


# --- exact comparison -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (0.0, -0.0),
        (NAN, -NAN),
        ({"x": [0.0]}, {"x": [-0.0]}),
        ((1, NAN), (1, -NAN)),
        (pl.DataFrame({"x": [0.0, 1.0]}), pl.DataFrame({"x": [-0.0, 1.0]})),
        (pl.DataFrame({"x": [NAN, None]}), pl.DataFrame({"x": [-NAN, None]})),
        (pl.DataFrame({"l": [[1.0, 0.0]]}), pl.DataFrame({"l": [[1.0, -0.0]]})),
        (pl.DataFrame({"s": [{"a": 0.0, "b": "q"}]}), pl.DataFrame({"s": [{"a": -0.0, "b": "q"}]})),
        (pl.Series("x", [NAN]), pl.Series("x", [-NAN])),
        ({"rows": pl.DataFrame({"x": [0.0]})}, {"rows": pl.DataFrame({"x": [-0.0]})}),
    ],
)
def test_results_differing_in_zero_or_nan_sign_differ(old: Any, new: Any) -> None:
    assert not same_result(old, new)


@pytest.mark.parametrize(
    "make",
    [
        lambda: {"x": [1.0, NAN, -0.0], "i": 1},
        lambda: pl.DataFrame({"x": [NAN, -NAN, -0.0, None], "l": [[NAN], None, [], [-0.0]]}),
        lambda: {"rows": pl.DataFrame({"x": [1.0]}), "more": [pl.DataFrame({"y": ["a"]})]},
        lambda: (pl.DataFrame({"x": [1.0]}), "cursor"),
    ],
)
def test_equal_results_are_the_same_even_holding_frames_and_nans(make: Callable[[], Any]) -> None:
    assert same_result(make(), make())


def test_nan_payloads_are_not_part_of_the_value() -> None:
    odd = pl.Series([0x7FF0_0000_0000_0001], dtype=pl.UInt64).to_numpy().view("float64")
    assert same_result(pl.DataFrame({"x": odd}), pl.DataFrame({"x": [NAN]}))


def test_a_patch_to_negative_zero_or_nan_is_delivered(
    deployed: Callable[[Schema], zapnb.Database],
) -> None:
    db = deployed(
        zapnb.define_schema({"t": zapnb.define_table({"x": v.float64(), "l": v.array(v.float64())})})
    )
    doc = db.insert("t", {"x": 0.0, "l": [0.0]})
    frames, scalars = Recorder(), Recorder()
    watched_frame = db.watch(db.query("t"), callback=frames)
    watched_scalar = db.watch(lambda ctx: ctx.db.get(doc)["x"], callback=scalars)

    db.patch(doc, {"x": -0.0})
    assert watched_frame.wait()
    assert watched_scalar.wait()
    assert [_sign(x) for x in scalars.results] == [1.0, -1.0]
    assert _sign(frames.results[-1]["x"][0]) == -1.0

    db.patch(doc, {"l": [-0.0]})
    assert watched_frame.wait()
    assert len(frames.results) == 3

    db.patch(doc, {"x": -NAN})
    db.patch(doc, {"x": -NAN})  # unchanged: not handed again
    assert watched_frame.wait()
    assert watched_scalar.wait()
    assert len(frames.results) == 4
    assert _sign(scalars.results[-1]) == -1.0
    assert len(scalars.results) == 3


def test_an_unchanged_page_or_frame_in_a_container_is_not_handed_again(
    deployed: Callable[[Schema], zapnb.Database],
) -> None:
    db = deployed(
        zapnb.define_schema(
            {"t": zapnb.define_table({"a": v.number(), "k": v.string()}).index("by_a", ["a"])}
        )
    )
    ids = [db.insert("t", {"a": float(i), "k": "y" if i % 2 else "n"}) for i in range(10)]

    def page(ctx: Any) -> Any:
        query = ctx.db.query("t").with_index("by_a").filter(lambda q: q.eq(q.field("k"), "y"))
        return query.paginate(num_items=3)

    def rows(ctx: Any) -> Any:
        return {"rows": ctx.db.query("t").filter(lambda q: q.eq(q.field("k"), "y")).collect()}

    subs = [db.watch(page, callback=Recorder()), db.watch(rows, callback=Recorder())]
    db.patch(ids[0], {"k": "n2"})  # read by both, and neither result changes
    for sub in subs:
        assert sub.wait()
        assert (sub.runs, sub.deliveries) == (2, 1)


# --- what can be watched ----------------------------------------------------------------------------------


def test_a_query_of_another_database_or_a_transaction_is_refused(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path / "one") as one, zapnb.connect(tmp_path / "two") as two:
        one.insert("t", {"where": "one"})
        two.insert("t", {"where": "two"})
        with pytest.raises(zapnb.InvalidQueryError, match="another database") as caught:
            one.watch(two.query("t"), callback=Recorder())
        assert caught.value.method == "watch"
        tx = one.transaction()
        with pytest.raises(zapnb.InvalidQueryError, match=r"a transaction.*db\.query"):
            one.watch(tx.query("t"), callback=Recorder())
        tx.discard()
        assert one.watch(one.query("t"), callback=Recorder()).result["where"].to_list() == ["one"]


# --- callbacks that raise what is not an Exception ----------------------------------------------------------


@pytest.mark.parametrize("raised", [SystemExit(1), KeyboardInterrupt()])
def test_a_callback_raising_a_base_exception_is_reported_and_delivery_goes_on(
    db: zapnb.Database, raised: BaseException
) -> None:
    calls: list[int] = []

    def callback(frame: pl.DataFrame) -> None:
        calls.append(len(frame))
        if len(calls) == 2:
            raise raised

    errors: list[BaseException] = []
    sub = db.watch(db.query("t"), callback=callback, on_error=errors.append)
    db.insert("t", {"x": 1})
    assert sub.wait()
    assert errors == [raised]
    db.insert("t", {"x": 2})
    assert sub.wait(timeout=5)
    assert calls == [0, 1, 2]


def test_a_rerun_raising_system_exit_keeps_the_rerun_thread(db: zapnb.Database) -> None:
    flag = db.insert("flags", {"exit": False})

    def read(ctx: Any) -> Any:
        doc = ctx.db.get(flag)
        if doc["exit"]:
            sys.exit(3)
        return doc["exit"]

    errors: list[BaseException] = []
    sub = db.watch(read, callback=Recorder(), on_error=errors.append)
    db.patch(flag, {"exit": True})
    assert sub.wait()
    db.patch(flag, {"exit": False})
    assert sub.wait(timeout=5)
    assert [type(e) for e in errors] == [SystemExit]
    assert sub.result is False
    assert sub.runs == 2

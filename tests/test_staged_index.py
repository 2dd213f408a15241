"""Staged indexes: a deploy returns at once, the index is built in the background beside commits.

The builds are real (real files in ``tmp_path``, real commits from other threads). ``Gate`` wraps
``zapnb.indexbuild.build_index`` to hold a background build at its start (it still stops when told to) and to
count the builds, background and synchronous: every index build of the engine goes through that function.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import zapnb
from zapnb import bulk, define_schema, define_table, indexbuild, v
from zapnb.errors import IndexStagedError, ZapWarning
from zapnb.index import IndexData, IndexSpec
from zapnb.indexbuild import BuildStoppedError, Version
from zapnb.schema import Schema
from zapnb.tablestate import TableState

T = define_table({"n": v.int64(), "tag": v.string()})
ROWS = 40_000
TAGS = ("ant", "bee", "cat", "dog", "eel")


def _staged(fields: tuple[str, ...] = ("tag", "n")) -> Schema:
    return define_schema({"t": T.index("by_tag_n", list(fields), staged=True)})


def _enabled(fields: tuple[str, ...] = ("tag", "n")) -> Schema:
    return define_schema({"t": T.index("by_tag_n", list(fields))})


class Gate:
    """Stands in for ``build_index``: counts calls, holds a background build (one given ``stop``) until
    :attr:`release` is set, and counts the builds that were stopped."""

    def __init__(self, real: Callable[..., IndexData], *, held: bool = True) -> None:
        self.real = real
        self.started = threading.Event()
        self.release = threading.Event()
        if not held:
            self.release.set()
        self.background = 0
        self.synchronous = 0
        self.stopped = 0

    def __call__(
        self,
        state: TableState,
        spec: IndexSpec,
        lsn: int,
        *,
        show_progress: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> IndexData:
        if stop is None:
            self.synchronous += 1
            return self.real(state, spec, lsn, show_progress=show_progress)
        self.background += 1
        self.started.set()
        try:
            while not self.release.wait(0.005):
                if stop():
                    raise BuildStoppedError("stopped while held", index=spec.name)
            return self.real(state, spec, lsn, show_progress=show_progress, stop=stop)
        except BuildStoppedError:
            self.stopped += 1
            raise


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held = Gate(indexbuild.build_index)
    monkeypatch.setattr(indexbuild, "build_index", held)
    yield held
    held.release.set()


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Callable[[], zapnb.Database]]:
    """Opens the test's database; every database it opened is closed after the test."""
    databases: list[zapnb.Database] = []

    def open_one() -> zapnb.Database:
        databases.append(zapnb.connect(tmp_path / "data"))
        return databases[-1]

    yield open_one
    for database in databases:
        database.close()


def _loaded(db: zapnb.Database, rows: int = ROWS) -> None:
    db.deploy(define_schema({"t": T}), progress=False)
    frame = pl.DataFrame({"n": [i % 1_000 for i in range(rows)], "tag": [TAGS[i % 5] for i in range(rows)]})
    db.insert_many("t", frame)


def _expected(db: zapnb.Database) -> list[dict[str, Any]]:
    """Every document in the order a fresh index over ``(tag, n)`` holds them (a scan, sorted here)."""
    docs = list(db.query("t"))
    docs.sort(key=lambda d: (d["tag"], d["n"], d["_creationTime"], str(d["_id"])))
    return docs


def _check_index(db: zapnb.Database) -> None:
    """The enabled index holds exactly what a build from scratch would, in a whole scan and in a range."""
    expected = _expected(db)
    assert [str(d["_id"]) for d in db.query("t").with_index("by_tag_n")] == [str(d["_id"]) for d in expected]
    ranged = db.query("t").with_index("by_tag_n", lambda q: q.eq("tag", "bee").gte("n", 500))
    wanted = [str(d["_id"]) for d in expected if d["tag"] == "bee" and d["n"] >= 500]
    assert [str(d["_id"]) for d in ranged] == wanted
    assert ranged.count() == len(wanted) > 0


def _pending(db: zapnb.Database) -> tuple[str, ...]:
    return db._engine.pending_index_builds


def _indexes_in_checkpoint(path: Path) -> set[str]:
    info = json.loads((path / "data" / "checkpoint.json").read_text())
    return set(info["tables"]["t"]["indexes"])


def _commits(db: zapnb.Database, round_: int) -> None:
    """Inserts, patches that move keys (of old, new and bulk documents), deletes and a bulk insert."""
    old = [str(d["_id"]) for d in db.query("t").take(60).to_dicts()]
    new = [db.insert("t", {"n": 5_000 + i, "tag": "bee"}) for i in range(30)]
    for i, doc_id in enumerate(old[:30]):
        db.patch(doc_id, {"tag": "bee", "n": 600 + i + round_})
    for doc_id in old[30:45]:
        db.delete(doc_id)
    for doc_id in new[:10]:
        db.patch(doc_id, {"n": 700 + round_})
    db.delete(new[10])
    bulk = db.insert_many("t", [{"n": 500 + i % 50, "tag": TAGS[i % 5]} for i in range(1_200)])
    for doc_id in bulk[:20]:
        db.patch(doc_id, {"tag": "bee", "n": 900})
    for doc_id in bulk[20:30]:
        db.delete(doc_id)


def _few_commits(db: zapnb.Database) -> None:
    """Fewer commits than the builder leaves for its round under the apply lock (one of each kind)."""
    assert len(_COMMIT_KINDS) <= indexbuild.LOCKED_COMMITS
    for commit in _COMMIT_KINDS:
        commit(db)


def _move_first(db: zapnb.Database) -> None:
    doc = db.query("t").first()
    assert doc is not None
    db.patch(str(doc["_id"]), {"tag": "bee", "n": 777})


def _move_newest(db: zapnb.Database) -> None:
    doc = db.query("t").order("desc").first()
    assert doc is not None
    db.patch(str(doc["_id"]), {"tag": "ant", "n": 501})


def _delete_second(db: zapnb.Database) -> None:
    db.delete(str(db.query("t").take(2).to_dicts()[1]["_id"]))


_COMMIT_KINDS: tuple[Callable[[zapnb.Database], object], ...] = (
    lambda db: db.insert("t", {"n": 650, "tag": "bee"}),
    _move_first,
    lambda db: db.insert_many("t", [{"n": 500 + i % 70, "tag": TAGS[i % 5]} for i in range(1_100)]),
    _move_newest,  # a document of that bulk insert
    _delete_second,
)


def test_a_staged_index_deploys_at_once_and_is_built_in_the_background(
    opened: Callable[[], zapnb.Database], gate: Gate
) -> None:
    db = opened()
    _loaded(db)
    db.deploy(_staged(), progress=False)
    assert _pending(db) == ("t.by_tag_n",)  # deployed; its build has not ended
    assert gate.started.wait(10)
    with pytest.raises(IndexStagedError):
        db.query("t").with_index("by_tag_n").first()
    assert not db._engine.wait_for_index_builds(timeout=0.05)
    gate.release.set()
    assert db._engine.wait_for_index_builds(timeout=60)
    assert not _pending(db)
    assert "by_tag_n" in db._engine.snapshot().tables["t"].indexes
    db.deploy(_enabled(), progress=False)  # enabling a built index builds nothing
    assert (gate.background, gate.synchronous) == (1, 0)
    _check_index(db)


def test_commits_during_the_build_end_in_the_index_a_fresh_build_makes(
    opened: Callable[[], zapnb.Database], gate: Gate
) -> None:
    db = opened()
    _loaded(db)
    db.deploy(_staged(), progress=False)
    assert gate.started.wait(10)
    _commits(db, 0)  # after the build's view was taken, before the build reads it
    done = threading.Event()

    failed: list[BaseException] = []

    def write() -> None:
        round_ = 1
        try:
            while not done.is_set():
                _commits(db, round_)
                round_ += 1
        except BaseException as err:  # handed to the test's thread
            failed.append(err)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        gate.release.set()
        assert db._engine.wait_for_index_builds(timeout=120)
    finally:
        done.set()
        writer.join()
    if failed:
        raise failed[0]
    db.deploy(_enabled(), progress=False)
    assert (gate.background, gate.synchronous) == (1, 0)
    _check_index(db)


@pytest.mark.parametrize("deploy_between", [False, True], ids=["recent-changes", "deploy-between"])
def test_commits_between_the_catch_up_and_the_switch_are_added(
    opened: Callable[[], zapnb.Database], gate: Gate, monkeypatch: pytest.MonkeyPatch, deploy_between: bool
) -> None:
    db = opened()
    _loaded(db)
    others = {"u": T} if deploy_between else {}
    real = indexbuild.versions_since
    calls: list[int] = []

    def versions_since(state: TableState, after: int, until: int) -> list[Version]:
        found = real(state, after, until)
        calls.append(until)
        if len(calls) == 1:  # the builder caught up outside the lock: commit before it takes the lock
            _few_commits(db)
            if deploy_between:  # a deploy that leaves the staged index as it is
                db.deploy(define_schema({"t": _staged().tables["t"], **others}), progress=False)
        return found

    monkeypatch.setattr(indexbuild, "versions_since", versions_since)
    gate.release.set()
    db.deploy(_staged(), progress=False)
    assert db._engine.wait_for_index_builds(timeout=120)
    # without a deploy between, the last commits come from the engine's recent change sets; with one, from
    # a second search of the overlay
    assert len(calls) == (2 if deploy_between else 1)
    db.deploy(define_schema({"t": _enabled().tables["t"], **others}), progress=False)
    assert (gate.background, gate.synchronous) == (1, 0)
    _check_index(db)


def test_a_bulk_insert_under_way_when_the_index_is_added_gives_it_its_keys(
    opened: Callable[[], zapnb.Database], gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = opened()
    _loaded(db)
    db.deploy(_staged(), progress=False)
    assert gate.started.wait(10)
    real = bulk.build_keys

    def build_keys(*args: Any, **kwargs: Any) -> None:  # the insert's keys, built after its side file
        gate.release.set()
        assert db._engine.wait_for_index_builds(timeout=60)  # the index joins the table now
        real(*args, **kwargs)

    monkeypatch.setattr(bulk, "build_keys", build_keys)
    db.insert_many("t", [{"n": 500 + i % 100, "tag": "bee"} for i in range(1_500)])
    monkeypatch.setattr(bulk, "build_keys", real)
    db.deploy(_enabled(), progress=False)
    _check_index(db)


def test_a_checkpoint_during_the_build_leaves_the_index_out_and_the_next_records_it(
    tmp_path: Path, opened: Callable[[], zapnb.Database], gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = opened()
    _loaded(db)
    db.deploy(_staged(), progress=False)
    assert gate.started.wait(10)
    _commits(db, 0)
    assert db.checkpoint()
    assert "by_tag_n" not in _indexes_in_checkpoint(tmp_path)
    _commits(db, 1)
    gate.release.set()
    assert db._engine.wait_for_index_builds(timeout=60)
    assert db.checkpoint()
    assert "by_tag_n" in _indexes_in_checkpoint(tmp_path)
    db.close()
    counted = Gate(gate.real, held=False)
    monkeypatch.setattr(indexbuild, "build_index", counted)
    db = opened()
    assert _pending(db) == ()
    db.deploy(_enabled(), progress=False)
    assert (counted.background, counted.synchronous) == (0, 0)  # loaded from the checkpoint, not built
    _check_index(db)


def test_a_deploy_that_drops_or_redefines_the_staged_index_stops_its_build(
    opened: Callable[[], zapnb.Database], gate: Gate
) -> None:
    db = opened()
    _loaded(db)
    db.deploy(_staged(), progress=False)
    assert gate.started.wait(10)
    db.deploy(define_schema({"t": T}), progress=False)
    assert _pending(db) == ()
    assert db._engine.wait_for_index_builds(timeout=10)
    _wait_for(lambda: gate.stopped == 1)
    assert "by_tag_n" not in db._engine.snapshot().tables["t"].indexes
    db.deploy(_staged(("n",)), progress=False)
    _wait_for(lambda: gate.background == 2)
    db.deploy(_staged(), progress=False)  # redefined while pending: that build stops, a new one starts
    _wait_for(lambda: gate.stopped == 2)
    gate.release.set()
    assert db._engine.wait_for_index_builds(timeout=60)
    assert gate.background == 3
    spec = db._engine.snapshot().tables["t"].indexes["by_tag_n"][0]
    assert spec.fields == ("tag", "n")
    db.deploy(_enabled(), progress=False)
    _check_index(db)


def test_enabling_a_staged_index_while_it_is_pending_builds_it_in_the_deploy(
    opened: Callable[[], zapnb.Database], gate: Gate
) -> None:
    db = opened()
    _loaded(db)
    db.deploy(_staged(), progress=False)
    assert gate.started.wait(10)
    _commits(db, 0)
    report = db.deploy(_enabled(), progress=False)
    assert report.indexes_created == ("t.by_tag_n",)
    assert gate.synchronous == 1
    assert _pending(db) == ()
    _check_index(db)  # at once: the deploy built it
    _wait_for(lambda: gate.stopped == 1)  # the background build stopped, without being let go


def test_reopening_before_the_build_ended_builds_it_again_in_the_background(
    tmp_path: Path, opened: Callable[[], zapnb.Database], gate: Gate
) -> None:
    db = opened()
    _loaded(db)
    db.deploy(_staged(), progress=False)
    assert gate.started.wait(10)
    _commits(db, 0)
    db.close()  # checkpoints the commits, without the index
    assert gate.stopped == 1
    assert "by_tag_n" not in _indexes_in_checkpoint(tmp_path)
    gate.release.set()
    db = opened()
    assert db._engine.wait_for_index_builds(timeout=60)
    assert gate.background == 2
    db.deploy(_enabled(), progress=False)
    assert gate.synchronous == 0
    _check_index(db)


def test_close_during_a_build_returns_promptly_and_the_data_reopens(
    opened: Callable[[], zapnb.Database], gate: Gate
) -> None:
    db = opened()
    _loaded(db, rows=50_000)
    assert db.checkpoint()
    gate.release.set()  # a real build, stopped halfway
    db.deploy(_staged(), progress=False)
    assert gate.started.wait(10)
    db.close()  # no write since the checkpoint: the next open replays the deploy record
    assert gate.stopped == 1
    assert not [t for t in threading.enumerate() if t.name == "zapnb-index-builder" and t.is_alive()]
    db = opened()
    assert db._engine.wait_for_index_builds(timeout=60)
    assert gate.background == 2
    db.deploy(_enabled(), progress=False)
    _check_index(db)


def test_a_table_state_replaced_during_the_build_is_built_again(
    opened: Callable[[], zapnb.Database], gate: Gate
) -> None:
    db = opened()
    _loaded(db)
    db.deploy(_staged(), progress=False)
    assert gate.started.wait(10)
    _commits(db, 0)
    assert db.checkpoint()
    engine = db._engine
    engine._load_checkpoint(replace=True)  # what a reload after another process's checkpoint does
    engine.catch_up()
    _commits(db, 1)
    gate.release.set()
    assert engine.wait_for_index_builds(timeout=60)
    assert gate.background == 2  # the first build was over the replaced state: discarded
    db.deploy(_enabled(), progress=False)
    _check_index(db)


def test_a_background_build_that_fails_warns_and_the_enabling_deploy_builds_the_index(
    opened: Callable[[], zapnb.Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = opened()
    _loaded(db, rows=2_000)
    real = indexbuild.build_index

    def failing(state: TableState, spec: IndexSpec, lsn: int, **options: Any) -> IndexData:
        if options.get("stop") is not None:
            raise RuntimeError("disk on fire")
        return real(state, spec, lsn, **options)

    monkeypatch.setattr(indexbuild, "build_index", failing)
    with pytest.warns(ZapWarning, match=r"Building the staged index t\.by_tag_n in the background failed"):
        _deploy_staged_and_wait(db)
    assert "by_tag_n" not in db._engine.snapshot().tables["t"].indexes
    db.deploy(_enabled(), progress=False)
    _check_index(db)


def _deploy_staged_and_wait(db: zapnb.Database) -> None:
    db.deploy(_staged(), progress=False)
    assert db._engine.wait_for_index_builds(timeout=60)


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_wait_for_indexes_waits_for_the_background_builds(tmp_path: Path) -> None:
    db = zapnb.connect(tmp_path)
    db.deploy(define_schema({"t": T}), progress=False)
    db.insert_many("t", [{"n": i, "tag": TAGS[i % 5]} for i in range(2_000)])
    db.deploy(_staged(), progress=False)
    assert db.wait_for_indexes(timeout=60)
    assert db._engine.pending_index_builds == ()
    db.deploy(_enabled(), progress=False)
    assert db.query("t").with_index("by_tag_n", lambda q: q.eq("tag", "bee")).count() == 400
    db.close()

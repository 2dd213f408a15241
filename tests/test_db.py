"""The database end to end: connect, write, read back, reopen, deploy, conflicts, several processes."""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

import zapnb
from zapnb import define_schema, define_table, v
from zapnb.examples import zapdev
from zapnb.schema import Schema

NOTES = zapnb.define_schema(
    {
        "notes": zapnb.define_table({"text": v.string(), "tags": v.optional(v.array(v.string()))}).index(
            "by_text", ["text"]
        )
    }
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[zapnb.Database]:
    database = zapnb.connect(tmp_path / "data")
    yield database
    database.close()


def test_insert_get_round_trip_exact_values(db: zapnb.Database) -> None:
    doc = {"i": 1, "f": 1.0, "z": -0.0, "n": math.nan, "b": b"\x00", "a": [1, [2.5]], "o": {"k": None}}
    note = db.insert("anything", doc)
    got = db.get(note)
    assert got is not None
    assert isinstance(got["_id"], zapnb.Id)
    assert got["_id"].table == "anything"
    assert isinstance(got["_creationTime"], float)
    assert type(got["i"]) is int
    assert type(got["f"]) is float
    assert math.copysign(1, got["z"]) == -1
    assert math.isnan(got["n"])
    assert got["b"] == b"\x00"
    assert got["a"] == [1, [2.5]]
    assert got["o"] == {"k": None}


@pytest.mark.parametrize("checkpointed", [False, True])
def test_get_returns_a_document_the_caller_may_change(db: zapnb.Database, checkpointed: bool) -> None:
    note = db.insert("notes", {"text": "a", "tags": ["x"]})
    if checkpointed:
        db._engine.checkpoint()  # the document is read from the table's base, not from recent commits
    got = db.get(note)
    assert got is not None
    assert isinstance(got["_id"], zapnb.Id)
    assert got["_id"].table == "notes"
    got["text"] = "changed"
    got["_id"] = "changed"
    del got["tags"]
    again = db.get(note)
    assert again is not None
    assert again == {"_id": note, "_creationTime": again["_creationTime"], "text": "a", "tags": ["x"]}
    again["tags"].append("y")  # a nested value is the caller's own too
    assert db.get(note) == {**again, "tags": ["x"]}


def test_documents_from_queries_and_transactions_are_the_callers_own(db: zapnb.Database) -> None:
    note = db.insert("notes", {"text": "a", "tags": ["x"]})
    with db.transaction() as tx:
        tx.get(note)["tags"].append("from tx.get")  # type: ignore[index]
        tx.patch(note, {"text": "b"})
        tx.get(note)["tags"].append("from tx.get of its own write")  # type: ignore[index]
    db.query("notes").first()["tags"].append("from first")  # type: ignore[index]
    db.query("notes").unique()["tags"].append("from unique")  # type: ignore[index]
    for doc in db.query("notes"):
        doc["tags"].append("from iteration")
    got = db.get(note)
    assert got is not None
    assert (got["text"], got["tags"]) == ("b", ["x"])
    assert db.query("notes").collect()["tags"].to_list() == [["x"]]


def test_everything_acknowledged_survives_reopen(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        ids = [db.insert("t", {"n": n}) for n in range(20)]
        db.patch(ids[0], {"n": 100})
        db.delete(ids[1])
    with zapnb.connect(tmp_path) as db:
        assert db.get(ids[0]) == {**db.get(ids[0]), "n": 100}  # type: ignore[dict-item]
        assert db.get(ids[1]) is None
        assert [db.get(i)["n"] for i in ids[2:]] == list(range(2, 20))  # type: ignore[index]


def test_patch_replace_delete_semantics(db: zapnb.Database) -> None:
    note = db.insert("t", {"a": 1, "b": {"x": 1}, "c": 3})
    db.patch(note, {"a": 2, "b": {"y": 2}, "c": zapnb.UNSET, "d": None})
    got = db.get(note)
    assert got is not None
    assert {k: got[k] for k in got if not k.startswith("_")} == {"a": 2, "b": {"y": 2}, "d": None}
    created = got["_creationTime"]
    db.replace(note, {"z": 1})
    replaced = db.get(note)
    assert replaced is not None
    assert replaced["_creationTime"] == created
    assert {k: replaced[k] for k in replaced if not k.startswith("_")} == {"z": 1}
    db.delete(note)
    assert db.get(note) is None
    with pytest.raises(zapnb.NonexistentDocumentError, match="Update on nonexistent document ID"):
        db.patch(note, {"a": 1})
    with pytest.raises(zapnb.NonexistentDocumentError, match="Delete on nonexistent document ID"):
        db.delete(note)


def test_a_no_change_patch_writes_nothing(db: zapnb.Database) -> None:
    note = db.insert("t", {"a": 1})
    before = db._engine.log.last_lsn()
    db.patch(note, {"a": 1})
    assert db._engine.log.last_lsn() == before
    db.patch(note, {"a": 1.0})  # a different kind is a change
    assert db._engine.log.last_lsn() == before + 1


def test_creation_times_strictly_increase_within_a_transaction(db: zapnb.Database) -> None:
    ids = db.insert_many("t", [{"n": n} for n in range(50)])
    times = [db.get(i)["_creationTime"] for i in ids]  # type: ignore[index]
    assert times == sorted(times)
    assert len(set(times)) == 50


def test_bad_writes_raise_and_change_nothing(db: zapnb.Database) -> None:
    db.deploy(NOTES, progress=False)
    before = db._engine.log.last_lsn()
    with pytest.raises(zapnb.SchemaValidationError, match=r"Path: \.text"):
        db.insert("notes", {"text": 1})
    with pytest.raises(zapnb.InvalidValueError):
        db.insert("notes", {"text": "x", "$bad": 1})
    with pytest.raises(zapnb.SchemaValidationError):
        db.insert_many("notes", [{"text": "ok"}, {"text": None}])
    assert db._engine.log.last_lsn() == before
    assert db.insert("notes", {"text": "fine"})


def test_transaction_commits_all_or_nothing(db: zapnb.Database) -> None:
    def fail() -> None:
        with db.transaction() as tx:
            tx.insert("t", {"n": 1})
            raise RuntimeError("boom")

    before = db._engine.log.last_lsn()
    with pytest.raises(RuntimeError):
        fail()
    assert db._engine.log.last_lsn() == before
    with db.transaction() as tx:
        first = tx.insert("t", {"n": 1})
        second = tx.insert("t", {"n": 2})
        assert tx.get(first) is not None  # reads its own writes
    assert db.get(first) is not None
    assert db.get(second) is not None


def test_a_transaction_reads_one_snapshot(db: zapnb.Database) -> None:
    note = db.insert("t", {"n": 1})
    tx = db.transaction()
    assert tx.get(note)["n"] == 1  # type: ignore[index]
    db.patch(note, {"n": 2})
    assert tx.get(note)["n"] == 1  # type: ignore[index]
    assert db.get(note)["n"] == 2  # type: ignore[index]


def test_write_skew_is_prevented(db: zapnb.Database) -> None:
    alice = db.insert("doctors", {"on_call": True})
    bob = db.insert("doctors", {"on_call": True})
    first, second = db.transaction(), db.transaction()
    for tx, me, other in ((first, alice, bob), (second, bob, alice)):
        if tx.get(other)["on_call"]:  # type: ignore[index]
            tx.patch(me, {"on_call": False})
    first.commit()
    with pytest.raises(zapnb.ConflictError, match="conflicted with another commit"):
        second.commit()
    assert [db.get(d)["on_call"] for d in (alice, bob)] == [False, True]  # type: ignore[index]


def test_concurrent_increments_from_threads_are_all_counted(db: zapnb.Database) -> None:
    counter = db.insert("counters", {"n": 0})

    def increment() -> None:
        for _ in range(10):
            while True:
                tx = db.transaction()
                tx.patch(counter, {"n": tx.get(counter)["n"] + 1})  # type: ignore[index]
                try:
                    tx.commit()
                    break
                except zapnb.ConflictError:
                    continue

    threads = [threading.Thread(target=increment) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db.get(counter)["n"] == 40  # type: ignore[index]


def test_ids_name_their_table_and_normalize(db: zapnb.Database) -> None:
    note = db.insert("a", {"x": 1})
    db.insert("b", {"x": 1})
    assert db.normalize_id("a", note) == note
    assert db.normalize_id("b", note) is None
    assert db.normalize_id("a", "nonsense") is None
    assert db.get("nonsense") is None


def test_deploy_reports_and_refuses_bad_existing_documents(db: zapnb.Database) -> None:
    report = db.deploy(NOTES, progress=False)
    assert report.tables_created == ("notes",)
    assert report.indexes_created == ("notes.by_text",)
    bad = db.insert("notes", {"text": "keep"})
    stricter = zapnb.define_schema({"notes": zapnb.define_table({"text": v.string(), "n": v.number()})})
    with pytest.raises(zapnb.DeployValidationError) as caught:
        db.deploy(stricter, progress=False)
    message = str(caught.value)
    assert message.startswith("Schema validation failed.\n")
    assert f'Document with ID "{bad}" in table "notes" does not match the schema' in message
    assert caught.value.document_id == bad
    assert db.schema == NOTES  # the old schema stays active
    relaxed = zapnb.define_schema(
        {"notes": zapnb.define_table({"text": v.string(), "n": v.optional(v.number())})}
    )
    report = db.deploy(relaxed, progress=False)
    assert report.documents_checked == 1
    assert report.indexes_removed == ("notes.by_text",)


def test_the_zapdev_schema_deploys_and_takes_bulk_frames(db: zapnb.Database) -> None:
    report = db.deploy(zapdev.schema, progress=False)
    assert len(report.tables_created) == 14
    assert len(report.indexes_created) == 33
    frame = pl.DataFrame(
        {"name": ["a", "b"], "userId": ["u1", "u2"], "framework": ["REACT", "VUE"], "createdAt": [1.0, None]}
    )
    ids = db.insert_many("projects", frame)
    second = db.get(ids[1])
    assert second is not None
    assert "createdAt" not in second  # a null in an optional column is a missing field


def test_other_processes_commits_become_visible_without_reopening(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        db.insert("t", {"n": 0})
        context = multiprocessing.get_context("spawn")
        child = context.Process(target=_insert_in_child, args=(str(tmp_path),))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        deadline = time.monotonic() + 0.5
        while db._engine.snapshot().tables["t"].count(db._engine.snapshot().lsn) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)


def _insert_in_child(path: str) -> None:
    with zapnb.connect(path) as db:
        db.insert("t", {"n": 1})


def test_a_forked_child_is_refused(db: zapnb.Database) -> None:
    note = db.insert("t", {"n": 1})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            db.get(note)
            os.write(write, b"no error")
        except zapnb.UsedAfterForkError:
            os.write(write, b"refused")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 100) == b"refused"


def test_format_version_mismatch_is_explained(tmp_path: Path) -> None:
    zapnb.connect(tmp_path).close()
    (tmp_path / "zapnb.json").write_text('{"format": 99}')
    with pytest.raises(zapnb.FormatVersionError, match="format 99; this zapnb reads format 1"):
        zapnb.connect(tmp_path)


def test_closed_database_says_so(tmp_path: Path) -> None:
    db = zapnb.connect(tmp_path)
    db.close()
    with pytest.raises(zapnb.ClosedError, match="is closed"):
        db.insert("t", {})


def test_a_damaged_id_reads_as_no_document_and_writes_to_it_fail(tmp_path: Path) -> None:
    """An ID with one character changed still names its table in its first characters; looking it up finds
    nothing, exactly as the full check of the ID would have decided."""
    with zapnb.connect(tmp_path) as db:
        doc_id = str(db.insert("notes", {"n": 1}))
        damaged = doc_id[:10] + ("0" if doc_id[10] != "0" else "1") + doc_id[11:]
        assert db.get(damaged) is None
        with db.transaction() as tx:
            assert tx.get(damaged) is None
        with pytest.raises(zapnb.NonexistentDocumentError):
            db.patch(damaged, {"n": 2})
        assert (db.get(doc_id) or {}).get("n") == 1


def test_inserted_then_deleted_in_one_transaction_writes_nothing(
    deployed: Callable[[Schema], zapnb.Database],
) -> None:
    db = deployed(define_schema({"t": define_table({"a": v.string()})}))
    with db.transaction() as tx:
        doc = tx.insert("t", {"a": "x"})
        many = tx.insert_many("t", [{"a": str(i)} for i in range(1_200)])
        tx.delete(doc)
        for other in many:
            tx.delete(other)
        assert tx.writes == ()
    assert tx.commit_lsn is None
    assert db.query("t").count() == 0

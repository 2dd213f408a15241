"""``db.delete_table``: deleting a table that is no longer in the schema, durably and for every process.

Removing a table from the schema keeps its documents (semantics, section 4); deleting it is this separate,
explicit step. Its number is never given again, so an old ID of it never reads as an ID of a later table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import zapnb
from zapnb import checkpoint as checkpoints
from zapnb import define_schema, define_table, v
from zapnb.deploy import TableDeletionError
from zapnb.errors import ConflictError, IndexNotFoundError, NestedWriteError, SchemaDefinitionError
from zapnb.ids import table_number_of

TASKS = define_table({"title": v.string()}).index("by_title", ["title"])
KEEP = define_table({"m": v.string()})
BOTH = define_schema({"keep": KEEP, "tasks": TASKS})  # "tasks" gets the highest number
WITHOUT_TASKS = define_schema({"keep": KEEP})


def _setup(path: Path, count: int = 3) -> tuple[zapnb.Database, list[str]]:
    """A database whose table ``tasks`` holds ``count`` documents and was then removed from the schema."""
    db = zapnb.connect(path)
    db.deploy(BOTH, progress=False)
    ids = [str(db.insert("tasks", {"title": f"t{i}"})) for i in range(count)]
    db.insert("keep", {"m": "stays"})
    db.deploy(WITHOUT_TASKS, progress=False)
    return db, ids


def _titles(db: zapnb.Database, table: str = "tasks") -> list[Any]:
    return [doc.get("title") for doc in db.query(table)]


def _number(doc_id: object) -> int:
    number = table_number_of(str(doc_id))
    assert number is not None
    return number


def test_removing_from_the_schema_keeps_the_documents_and_deleting_removes_them(tmp_path: Path) -> None:
    db, ids = _setup(tmp_path)
    assert _titles(db) == ["t0", "t1", "t2"]
    report = db.delete_table("tasks")
    assert (report.table, report.documents_deleted) == ("tasks", 3)
    assert "Deleted table 'tasks' and its 3 documents" in str(report)
    assert _titles(db) == []  # as for a table that never existed
    assert db.query("tasks").count() == 0
    assert all(db.get(doc_id) is None for doc_id in ids)
    with pytest.raises(IndexNotFoundError):  # the index went with the table, as for a never-created table
        db.query("tasks").with_index("by_title").collect()
    assert _titles(db, "keep") == [None]  # other tables are untouched
    assert [doc["m"] for doc in db.query("keep")] == ["stays"]
    db.close()


@pytest.mark.parametrize("checkpoint_first", [False, True])
def test_the_deletion_is_replayed_from_the_log(tmp_path: Path, checkpoint_first: bool) -> None:
    db, ids = _setup(tmp_path)
    if checkpoint_first:
        db.checkpoint()  # the table's documents are in the checkpoint: replaying the deletion must drop them
    db.delete_table("tasks")
    db._engine.halt()  # no checkpoint: the next open replays the deletion from the log
    with zapnb.connect(tmp_path) as again:
        assert _titles(again) == []
        assert all(again.get(doc_id) is None for doc_id in ids)
        assert [doc["m"] for doc in again.query("keep")] == ["stays"]


def test_a_checkpoint_after_the_deletion_drops_the_table_and_its_files(tmp_path: Path) -> None:
    db, ids = _setup(tmp_path)
    db.checkpoint()
    assert (tmp_path / "tables" / "tasks.lance").is_dir()
    assert list((tmp_path / "base").glob("tasks-*.arrow"))
    db.delete_table("tasks")
    db.close()  # the deletion makes a checkpoint due: close writes it
    info = json.loads((tmp_path / "checkpoint.json").read_text())
    assert "tasks" not in info["tables"]
    assert "tasks" not in info["numbers"]
    assert not list((tmp_path / "base").glob("tasks-*.arrow"))
    assert not list((tmp_path / "indexes").glob("tasks-*.zidx"))
    assert not (tmp_path / "tables" / "tasks.lance").exists()
    assert (tmp_path / "tables" / "keep.lance").is_dir()
    with zapnb.connect(tmp_path) as again:
        assert _titles(again) == []
        assert all(again.get(doc_id) is None for doc_id in ids)
        assert [doc["m"] for doc in again.query("keep")] == ["stays"]


def test_refusals_name_the_next_step_and_change_nothing(tmp_path: Path) -> None:
    db = zapnb.connect(tmp_path)
    db.deploy(BOTH, progress=False)
    db.insert("tasks", {"title": "t0"})
    db.insert("keep", {"m": "stays"})
    lsn = db._engine.log.last_lsn()
    with pytest.raises(TableDeletionError) as in_schema:
        db.delete_table("tasks")
    assert isinstance(in_schema.value, SchemaDefinitionError)
    assert (in_schema.value.table, in_schema.value.reason) == ("tasks", "in_schema")
    assert "db.deploy" in str(in_schema.value)
    with pytest.raises(TableDeletionError) as missing:
        db.delete_table("taks")
    assert (missing.value.reason, missing.value.tables) == ("missing", ("keep", "tasks"))
    assert "Existing tables: keep, tasks" in str(missing.value)
    assert db._engine.log.last_lsn() == lsn  # nothing was appended
    assert _titles(db) == ["t0"]
    db.close()
    with zapnb.connect(tmp_path) as again:
        assert _titles(again) == ["t0"]
        assert again.schema == BOTH


def test_a_deleted_tables_number_is_never_given_again(tmp_path: Path) -> None:
    db, ids = _setup(tmp_path)
    deleted = _number(ids[0])
    db.delete_table("tasks")
    fresh = db.insert("notes", {"text": "new table"})
    assert _number(fresh) > deleted
    assert db.get(ids[0]) is None
    db._engine.halt()  # replayed from the log: the creating record tells the number was used
    with zapnb.connect(tmp_path) as again:
        assert again.get(ids[0]) is None
        assert _number(again.insert("more", {"text": "x"})) > _number(fresh)


def test_the_highest_number_survives_checkpoints_that_truncate_the_log(tmp_path: Path) -> None:
    db, ids = _setup(tmp_path)
    deleted = _number(ids[0])
    assert deleted == max(db._engine.catalog.numbers.values())  # "tasks" was the last table created
    db.delete_table("tasks")
    for i in range(2):  # two checkpoints: the log that created "tasks" is gone, only checkpoint.json tells
        db.insert("keep", {"m": f"m{i}"})
        assert db.checkpoint()
    db.close()
    assert json.loads((tmp_path / "checkpoint.json").read_text())["highest"] == deleted
    with zapnb.connect(tmp_path) as again:
        assert _number(again.insert("notes", {"text": "new"})) == deleted + 1
        assert again.get(ids[0]) is None


@pytest.mark.parametrize("how", ["reopen", "checkpoint and reopen"])
def test_a_table_created_again_under_the_name_is_empty_and_numbered_anew(tmp_path: Path, how: str) -> None:
    db, ids = _setup(tmp_path)
    db.checkpoint()  # the old table's files are in the checkpoint
    db.delete_table("tasks")
    db.deploy(BOTH, progress=False)  # "tasks" again, empty, in the schema
    assert _titles(db) == []
    new = db.insert("tasks", {"title": "new"})
    assert _number(new) > _number(ids[0])
    assert db.get(ids[0]) is None
    if how == "checkpoint and reopen":
        db.close()
    else:
        db._engine.halt()
    with zapnb.connect(tmp_path) as again:
        assert _titles(again) == ["new"]
        assert [doc["title"] for doc in again.query("tasks").with_index("by_title")] == ["new"]
        assert again.get(ids[0]) is None


def test_a_table_created_again_without_documents_does_not_bring_back_the_old_ones(tmp_path: Path) -> None:
    db, _ids = _setup(tmp_path)
    db.checkpoint()
    db.delete_table("tasks")
    db.deploy(BOTH, progress=False)  # created again by the deploy alone: no document written to it
    db.close()
    with zapnb.connect(tmp_path) as again:
        assert _titles(again) == []


def test_another_process_sees_the_deletion_without_reopening(tmp_path: Path) -> None:
    db, ids = _setup(tmp_path)
    sub = db.watch(db.query("tasks"))
    assert len(sub.result) == 3
    script = f"import zapnb\nwith zapnb.connect({str(tmp_path)!r}) as db:\n    db.delete_table('tasks')\n"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert _titles(db) == []  # the read catches up with the log
    assert db.get(ids[0]) is None
    deadline = time.monotonic() + 5.0
    while len(sub.result) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(sub.result) == 0  # the watched query was handed the change
    assert _number(db.insert("notes", {"text": "x"})) > _number(ids[0])
    db.close()


def test_a_watched_query_of_the_table_gets_the_deletion(tmp_path: Path) -> None:
    db, _ids = _setup(tmp_path)
    seen: list[int] = []
    sub = db.watch(db.query("tasks"), callback=lambda frame: seen.append(frame.height))
    db.delete_table("tasks")
    assert sub.wait()
    assert seen == [3, 0]
    db.close()


def test_a_transaction_running_meanwhile_conflicts(tmp_path: Path) -> None:
    db, _ids = _setup(tmp_path)
    tx = db.transaction()
    assert len(list(tx.query("tasks"))) == 3
    tx.insert("tasks", {"title": "late"})
    db.delete_table("tasks")
    with pytest.raises(ConflictError):
        tx.commit()
    assert _titles(db) == []
    db.close()


def test_delete_table_is_refused_inside_a_mutation(tmp_path: Path) -> None:
    db, _ids = _setup(tmp_path)

    @zapnb.mutation
    def sneaky(ctx: zapnb.MutationCtx) -> None:
        db.delete_table("tasks")

    with pytest.raises(NestedWriteError):
        db.run(sneaky)
    assert len(_titles(db)) == 3
    db.close()


def test_a_table_created_by_another_connection_during_a_deploy_keeps_its_number(tmp_path: Path) -> None:
    db, _ids = _setup(tmp_path)
    other = zapnb.connect(tmp_path)
    engine = db._engine
    append = engine.deploy_record

    def with_a_table_created_first(*args: Any, **kwargs: Any) -> int:
        other.insert("late", {"text": "created after the deploy started"})
        return append(*args, **kwargs)

    engine.deploy_record = with_a_table_created_first  # type: ignore[method-assign]
    try:
        db.deploy(define_schema({"keep": KEEP, "extra": KEEP}), progress=False)
    finally:
        engine.deploy_record = append  # type: ignore[method-assign]
    assert [doc["text"] for doc in db.query("late")] == ["created after the deploy started"]
    assert "late" in engine.catalog.numbers
    other.close()
    db.close()


def test_a_late_checkpoint_of_the_old_table_is_not_swapped_into_the_new_one(tmp_path: Path) -> None:
    db, _ids = _setup(tmp_path)
    engine = db._engine
    # what a slower process holds before the deletion, checkpointed by it only after the table was made anew
    lsn, catalog = engine.snapshot().lsn, engine.catalog
    frozen = {name: state.frozen() for name, state in engine._tables.items()}
    db.delete_table("tasks")
    db.deploy(BOTH, progress=False)
    db.insert("tasks", {"title": "new"})
    assert checkpoints.write_checkpoint(tmp_path, lsn, frozen, catalog.schema, catalog.numbers) is not None
    engine._maybe_checkpoint()  # as the watcher does: swap in the checkpoint another process wrote
    assert _titles(db) == ["new"]
    db.close()
    with zapnb.connect(tmp_path) as again:
        assert _titles(again) == ["new"]

"""Checkpoints: tables written to Lance and mapped base files, reopened exactly, the log kept short."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import lance
import polars as pl
import pytest

import zapnb
from zapnb import v
from zapnb.engine import Engine
from zapnb.storage import table_versions

SCHEMA = zapnb.define_schema(
    {
        "notes": zapnb.define_table(
            {"text": v.string(), "n": v.optional(v.number()), "meta": v.optional(v.any())}
        ).index("by_text", ["text"])
    }
)


def _contents(db: zapnb.Database, table: str) -> list[dict[str, Any]]:
    snapshot = db._engine.snapshot()
    return [dict(d) for d in snapshot.tables[table].documents(snapshot.lsn)]


def _by_text(db: zapnb.Database) -> list[str]:
    snapshot = db._engine.snapshot()
    return [d["text"] for d in snapshot.tables["notes"].scan("by_text", None, None, snapshot.lsn)]


def test_checkpoints_reopen_exactly_across_inserts_patches_and_deletes(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        ids = db.insert_many("notes", [{"text": f"t{i:02d}", "n": i, "meta": {"i": [i]}} for i in range(30)])
        db.insert("loose", {"anything": [1, "two", 3.0]})
        assert db._engine.checkpoint()
        db.patch(ids[0], {"text": "zz", "n": -0.0})
        db.delete(ids[1])
        db.insert("notes", {"text": "new"})
        assert db._engine.checkpoint()  # an incremental base: kept rows, then the rows written since
        db.patch(ids[2], {"meta": zapnb.UNSET})
        expected_notes, expected_loose, expected_order = (
            _contents(db, "notes"),
            _contents(db, "loose"),
            _by_text(db),
        )
    with zapnb.connect(tmp_path) as db:
        assert _contents(db, "notes") == expected_notes
        assert _contents(db, "loose") == expected_loose
        assert _by_text(db) == expected_order
        assert expected_order[-2:] == ["t29", "zz"]
        assert db.get(ids[1]) is None
        assert "meta" not in db.get(ids[2])  # type: ignore[operator]


def test_a_checkpoint_is_a_lance_version_carrying_its_lsn(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        db.insert_many("notes", [{"text": "a", "n": 1.0}, {"text": "b"}])
        assert db.checkpoint() is True
        lsn = db._engine.snapshot().lsn
        versions = table_versions(tmp_path, "notes")  # written by the call, not by close()
        assert versions[-1].lsn == lsn
    table = lance.dataset(str(tmp_path / "tables" / "notes.lance")).to_table()
    assert table.column_names[:4] == ["_id", "_creationTime", "text", "n"]
    assert sorted(table.column("text").to_pylist()) == ["a", "b"]


def test_the_log_keeps_only_one_checkpoint_of_history(tmp_path: Path) -> None:
    with zapnb.Database(Engine.open(tmp_path, segment_size=4096)) as db:
        for round_ in range(3):
            db.insert_many("t", [{"n": n, "pad": "x" * 100} for n in range(100)])
            db._engine.checkpoint()
            if round_ == 0:
                first = db._engine.snapshot().lsn
        assert db._engine.log.first_lsn() > first


def test_another_processes_checkpoint_is_picked_up(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        note = db.insert("t", {"n": 1})
        context = multiprocessing.get_context("spawn")
        child = context.Process(target=_write_and_checkpoint, args=(str(tmp_path),))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        deadline = time.monotonic() + 5
        while db._engine._checkpoint_lsn == 0:
            assert time.monotonic() < deadline, "the other process's checkpoint was not picked up"
            time.sleep(0.05)
        assert db.get(note)["n"] == 2  # type: ignore[index]
        db.patch(note, {"n": 3})
    with zapnb.connect(tmp_path) as db:
        assert db.get(note)["n"] == 3  # type: ignore[index]


def _write_and_checkpoint(path: str) -> None:
    with zapnb.connect(path) as db:
        snapshot = db._engine.snapshot()
        (doc_id,) = [str(d["_id"]) for d in snapshot.tables["t"].documents(snapshot.lsn)]
        db.patch(doc_id, {"n": 2})
        db._engine.checkpoint()


@pytest.mark.parametrize("count", [0, 1, 5000])
def test_counts_come_from_the_index(tmp_path: Path, count: int) -> None:
    with zapnb.connect(tmp_path) as db:
        db.insert_many("t", [{"n": n} for n in range(count)] or [{"n": 0}])
        db._engine.checkpoint()
        db.insert("t", {"n": -1})
        snapshot = db._engine.snapshot()
        assert snapshot.tables["t"].count(snapshot.lsn) == max(count, 1) + 1


def test_a_damaged_base_file_is_rebuilt_from_lance_with_a_warning(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        ids = db.insert_many("notes", [{"text": f"t{i}", "n": i} for i in range(20)])
        db._engine.checkpoint()
        db.patch(ids[5], {"n": 55})
        db.delete(ids[6])
        db.insert("notes", {"text": "late"})
        db._engine.checkpoint()  # an incremental Lance commit
        db.patch(ids[3], {"text": "after"})
        expected, order = _contents(db, "notes"), _by_text(db)
        db._engine._writes_since_checkpoint = 0  # close without a new checkpoint: the patch stays in the log
    (base,) = (tmp_path / "base").glob("notes-*.arrow")
    data = bytearray(base.read_bytes())
    data[len(data) // 2] ^= 0xFF
    base.write_bytes(bytes(data))
    with pytest.warns(zapnb.ZapWarning, match="rebuilt from its Lance dataset"):
        db = zapnb.connect(tmp_path)
    with db:
        assert _contents(db, "notes") == expected
        assert _by_text(db) == order
        db.insert("notes", {"text": "more"})
        db._engine.checkpoint()
    with zapnb.connect(tmp_path) as db:
        assert len(_contents(db, "notes")) == 21
        assert db.get(ids[5])["n"] == 55  # type: ignore[index]


def test_only_the_latest_checkpoints_files_are_kept(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        for round_ in range(3):
            db.insert("notes", {"text": f"r{round_}"})
            db._engine.checkpoint()
        lsn = db._engine.snapshot().lsn
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == [f"notes-{lsn}.arrow"]
    assert sorted(p.name for p in (tmp_path / "indexes").iterdir()) == sorted(
        f"notes-{lsn}-{index}.zidx" for index in ("by_creation_time", "by_id", "by_text")
    )


def test_an_index_deployed_over_checkpointed_documents_reads_them(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        db.insert_many("notes", [{"text": f"t{i}"} for i in range(5)])
        db._engine.checkpoint()
        db.deploy(SCHEMA, progress=False)  # builds by_text over documents that live in the base
        assert _by_text(db) == [f"t{i}" for i in range(5)]


def test_a_checkpoint_after_an_index_deployed_over_checkpointed_documents(tmp_path: Path) -> None:
    plain = zapnb.define_schema({"notes": zapnb.define_table({"text": v.string()})})
    indexed = zapnb.define_schema(
        {"notes": zapnb.define_table({"text": v.string()}).index("by_text", ["text"])}
    )
    with zapnb.connect(tmp_path) as db:
        db.deploy(plain, progress=False)
        db.insert_many("notes", [{"text": f"t{i}"} for i in (3, 1, 2)])
        db._engine.checkpoint()
        db.deploy(indexed, progress=False)  # its entries name checkpointed documents by ID
        db.insert("notes", {"text": "t0"})
        assert db._engine.checkpoint()
        assert _by_text(db) == ["t0", "t1", "t2", "t3"]
    with zapnb.connect(tmp_path) as db:
        assert _by_text(db) == ["t0", "t1", "t2", "t3"]


def test_a_checkpoint_after_a_deploy_that_changed_the_columns(tmp_path: Path) -> None:
    wider = zapnb.define_schema(
        {
            "notes": zapnb.define_table(
                {
                    "text": v.string(),
                    "n": v.optional(v.number()),
                    "meta": v.optional(v.any()),
                    "x": v.optional(v.int64()),
                }
            ).index("by_text", ["text"])
        }
    )
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        kept, rewritten, deleted = db.insert_many("notes", [{"text": "a"}, {"text": "b"}, {"text": "c"}])
        db._engine.checkpoint()
        db.deploy(wider, progress=False)  # the table's columns change: the next checkpoint rewrites every row
        db.patch(rewritten, {"x": 7})
        db.delete(deleted)
        assert db._engine.checkpoint()
        want = _contents(db, "notes")
    with zapnb.connect(tmp_path) as db:
        assert _contents(db, "notes") == want
        assert [d["text"] for d in want] == ["a", "b"]
        assert _by_text(db) == ["a", "b"]
        assert db.get(kept) is not None


def _during(monkeypatch: pytest.MonkeyPatch, name: str, action: Any) -> list[int]:
    """Run ``action`` once, right after ``zapnb.checkpoint.<name>`` first returns (inside a checkpoint)."""
    from zapnb import checkpoint

    original = getattr(checkpoint, name)
    ran: list[int] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not ran:
            ran.append(1)
            action()
        return result

    monkeypatch.setattr(checkpoint, name, wrapped)
    return ran


@pytest.mark.parametrize("step", ["write_checkpoint", "carry_over"])
def test_commits_while_a_checkpoint_is_written_or_swapped_in_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Commits land while the checkpoint writes its files, and while the new states catch up outside the
    lock: the swap carries them over (the second kind from the engine's recent change sets)."""
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        ids = db.insert_many("notes", [{"text": f"t{i:02d}", "n": i} for i in range(1200)])

        def meanwhile() -> None:
            db.patch(ids[0], {"text": "moved"})
            db.patch(ids[1], {"n": 99})
            db.delete(ids[2])
            db.insert("notes", {"text": "late"})
            db.insert_many("notes", [{"text": f"bulk{i:04d}"} for i in range(1000)])

        ran = _during(monkeypatch, step, meanwhile)
        assert db._engine.checkpoint()
        assert ran
        monkeypatch.undo()
        assert db._engine._checkpoint_lsn > 0  # swapped in, not left for later
        expected, order = _contents(db, "notes"), _by_text(db)
        assert len(expected) == 1200 - 1 + 1 + 1000
        assert db.get(ids[1])["n"] == 99  # type: ignore[index]
        assert db.query("notes").with_index("by_text", lambda q: q.eq("text", "moved")).count() == 1
    with zapnb.connect(tmp_path) as db:
        assert _contents(db, "notes") == expected
        assert _by_text(db) == order


def test_a_deploy_between_catching_up_and_the_swap_leaves_the_swap_for_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wider = zapnb.define_schema(
        {
            "notes": zapnb.define_table(
                {"text": v.string(), "n": v.optional(v.number()), "meta": v.optional(v.any())}
            )
            .index("by_text", ["text"])
            .index("by_n", ["n"])
        }
    )
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        ids = db.insert_many("notes", [{"text": f"t{i:02d}", "n": i} for i in range(50)])
        ran = _during(monkeypatch, "carry_over", lambda: db.deploy(wider, progress=False))
        assert db._engine.checkpoint()
        assert ran
        monkeypatch.undo()
        db.patch(ids[3], {"n": -1})
        assert db.query("notes").with_index("by_n", lambda q: q.lt("n", 0)).count() == 1
        expected = _contents(db, "notes")
        assert db._engine.checkpoint()
    with zapnb.connect(tmp_path) as db:
        assert _contents(db, "notes") == expected
        assert db.query("notes").with_index("by_n").count() == 50


def _resident_file_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    pytest.skip("this system does not report resident file pages")


@pytest.mark.parametrize("patched", [False, True])
def test_a_checkpoint_does_not_make_the_whole_table_resident(tmp_path: Path, patched: bool) -> None:
    """A checkpoint reads every row of a table's base; its mapped pages are let go as it goes, so the process
    does not end up holding the whole table (after a load, or after a few patches of a checkpointed table)."""
    schema = zapnb.define_schema({"notes": zapnb.define_table({"text": v.string(), "n": v.number()})})
    with zapnb.connect(tmp_path / "data") as db:
        db.deploy(schema, progress=False)
        rows = 400_000  # about 130 MB: several of the base's 65,536-row batches, each let go in turn
        texts = [f"{k:>8}" + "x" * 300 for k in range(rows)]
        ids = db.insert_many("notes", pl.DataFrame({"text": texts, "n": [float(k) for k in range(rows)]}))
        if patched:
            db._engine.checkpoint()
            for doc_id in ids[:10]:
                db.patch(doc_id, {"n": -1.0})
            db.get(ids[20])  # reads the base: maps it, as a query would
        base_mb = rows * 330 / 2**20
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(_resident_file_mb())
                time.sleep(0.002)

        before = _resident_file_mb()
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            db._engine.checkpoint()
        finally:
            done.set()
            sampler.join()
        assert max(samples) - before < base_mb / 2
        assert db.get(ids[0])["n"] == (-1.0 if patched else 0.0)  # type: ignore[index]

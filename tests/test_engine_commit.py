"""The engine's commit path (zapnb.engine): a commit is applied as it was made, while it becomes durable, and
told to listeners once it is durable; the watcher follows only other connections' commits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import zapnb
from zapnb import engine as engine_module
from zapnb import v
from zapnb.changes import ChangeSet, Record, Write
from zapnb.engine import Engine


@pytest.fixture
def db(tmp_path: Path) -> Iterator[zapnb.Database]:
    with zapnb.connect(tmp_path) as database:
        yield database


def counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[str]:
    """Record the thread of each call of ``owner.name`` (which still runs as before)."""
    calls: list[str] = []
    original: Callable[..., Any] = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_own_commits_are_applied_without_decoding_their_records(
    tmp_path: Path, db: zapnb.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = counting(monkeypatch, engine_module, "decode_record")
    note = db.insert("notes", {"n": 0})
    for n in range(1, 20):
        db.patch(note, {"n": n})
    with db.transaction() as tx:
        tx.insert("notes", {"n": 100})
        tx.delete(note)
    assert decoded == []
    with zapnb.connect(tmp_path) as other:  # another connection's commit is read from the log
        replayed = len(decoded)  # opening it replayed the log
        other.insert("notes", {"n": 200})
        assert sorted(d["n"] for d in db.query("notes")) == [100, 200]
    assert len(decoded) == replayed + 1


def test_listeners_hear_of_a_commit_once_it_is_durable(db: zapnb.Database) -> None:
    heard: list[tuple[int, int]] = []
    log = db._engine.log
    db._engine.add_listener(lambda changes: heard.append((changes.lsn, log.durable_lsn())))
    note = db.insert("notes", {"n": 0})
    for n in range(1, 30):
        db.patch(note, {"n": n})
    assert len(heard) == 30
    assert all(durable >= lsn for lsn, durable in heard)


def test_a_commit_starts_from_what_its_transaction_read(tmp_path: Path, db: zapnb.Database) -> None:
    """The documents a transaction read are its commit's old documents, though other commits came between."""
    schema = zapnb.define_schema(
        {"items": zapnb.define_table({"k": v.string(), "n": v.int64()}).index("by_k", ["k"])}
    )
    db.deploy(schema, progress=False)
    first, second = db.insert("items", {"k": "a", "n": 1}), db.insert("items", {"k": "b", "n": 2})
    changes: list[ChangeSet] = []
    db._engine.add_listener(changes.append)
    with zapnb.connect(tmp_path) as other, db.transaction() as tx:
        seen = tx.get(first)
        assert seen is not None
        other.patch(second, {"k": "c"})  # not read by tx: no conflict
        tx.patch(first, {"k": "z", "n": 10})
    (mine,) = [c for c in changes if any(change.id == first for change in c.changes)]
    (change,) = mine.changes
    assert change.old is not None
    assert change.new is not None
    assert (change.old["k"], change.old["n"], change.new["k"], change.new["n"]) == ("a", 1, "z", 10)
    by_k = [d["k"] for d in db.query("items").with_index("by_k")]
    assert by_k == ["c", "z"]
    assert db.query("items").with_index("by_k", lambda q: q.eq("k", "a")).count() == 0


def test_a_document_inserted_and_patched_in_one_transaction(db: zapnb.Database) -> None:
    changes: list[ChangeSet] = []
    db._engine.add_listener(changes.append)
    with db.transaction() as tx:
        note = tx.insert("notes", {"n": 1})
        tx.patch(note, {"n": 2})
    (change,) = changes[-1].changes
    assert change.old is None
    assert change.new is not None
    assert change.new["n"] == 2
    assert db.query("notes").count() == 1


def test_patches_move_index_keys_only_when_their_fields_change(db: zapnb.Database) -> None:
    schema = zapnb.define_schema(
        {
            "docs": zapnb.define_table({"a": v.object({"b": v.int64()}), "s": v.string()})
            .index("by_ab", ["a.b"])
            .index("by_s", ["s"])
        }
    )
    db.deploy(schema, progress=False)
    doc = db.insert("docs", {"a": {"b": 1}, "s": "x"})

    def keys() -> list[tuple[int, str]]:
        by_ab = [d["a"]["b"] for d in db.query("docs").with_index("by_ab")]
        by_s = [d["s"] for d in db.query("docs").with_index("by_s")]
        return list(zip(by_ab, by_s, strict=True))

    db.patch(doc, {"s": "y"})  # by_ab keeps its key
    assert keys() == [(1, "y")]
    db.patch(doc, {"a": {"b": 1}})  # a new object with the same value: no change at all
    db.patch(doc, {"a": {"b": 5}})
    assert keys() == [(5, "y")]
    assert db.query("docs").with_index("by_ab", lambda q: q.eq("a.b", 1)).count() == 0
    assert db.query("docs").with_index("by_ab", lambda q: q.eq("a.b", 5)).count() == 1


@pytest.mark.parametrize(
    ("before", "after", "written"),
    [
        (0.0, -0.0, True),
        (1, 1.0, True),
        (float("nan"), float("nan"), False),
        ({"x": [1, "a"]}, {"x": [1, "a"]}, False),
        ({"x": [1, "a"]}, {"x": [1, "b"]}, True),
        ("text", "text", False),
        (b"\x00", b"\x00", False),
    ],
)
def test_a_patch_is_a_write_only_if_a_value_changes_in_the_total_order(
    db: zapnb.Database, before: Any, after: Any, written: bool
) -> None:
    note = db.insert("notes", {"v": before, "other": "same"})
    last = db._engine.log.last_lsn()
    db.patch(note, {"v": after})
    assert db._engine.log.last_lsn() == last + written


def test_the_watcher_catches_up_with_other_connections_only(
    tmp_path: Path, db: zapnb.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    caught = counting(monkeypatch, Engine, "catch_up")
    note = db.insert("notes", {"n": 0})
    began = time.monotonic()
    while time.monotonic() - began < 0.5:  # own commits, back to back
        db.patch(note, {"n": int((time.monotonic() - began) * 1e6)})
    assert "zapnb-log-watcher" not in caught
    heard = threading.Event()
    db._engine.add_listener(lambda changes: heard.set())
    with zapnb.connect(tmp_path) as other:
        other.insert("notes", {"from": "other"})
        assert heard.wait(1.0)
    assert "zapnb-log-watcher" in caught


def test_records_a_commit_applies_are_the_ones_it_made(
    db: zapnb.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[tuple[int, Record | bytes]] = []
    original = Engine._apply_records

    def spy(self: Engine, records: Any, *args: Any, **kwargs: Any) -> Any:
        records = list(records)
        applied.extend(records)
        return original(self, records, *args, **kwargs)

    monkeypatch.setattr(Engine, "_apply_records", spy)
    note = db.insert("notes", {"n": 1})
    ((lsn, record),) = applied
    assert lsn == db._engine.log.last_lsn()
    assert not isinstance(record, bytes)
    assert [w.id for w in record.writes] == [note]  # type: ignore[union-attr]


@pytest.mark.parametrize("checkpointed", [False, True])
def test_an_insert_of_an_id_the_table_holds_is_refused_by_its_by_id_index(
    db: zapnb.Database, checkpointed: bool
) -> None:
    """Secondary indexes do not search their base for an added key (each key ends with its document's ID);
    the ``by_id`` index does, so a second insert of one ID is still refused, in the delta and in the base."""
    schema = zapnb.define_schema({"notes": zapnb.define_table({"n": v.float64()}).index("by_n", ["n"])})
    db.deploy(schema, progress=False)
    doc_id = db.insert("notes", {"n": 1.0})
    if checkpointed:
        assert db.checkpoint()
    engine = db._engine
    state = engine.snapshot().tables["notes"]
    stored = db.get(doc_id)
    assert stored is not None
    by_n = state.indexes["by_n"][1]
    before = by_n.count(None, None, snapshot=engine.snapshot().lsn)
    with pytest.raises(
        zapnb.errors.IndexConsistencyError,
        match=r"Index notes\.by_id refused an operation: adding a key the index already holds",
    ):
        state.apply_many(
            engine.snapshot().lsn + 1,
            [Write("notes", str(doc_id), {**stored, "n": 2.0})],
            {str(doc_id): None},
        )
    assert by_n.count(None, None, snapshot=engine.snapshot().lsn + 1) == before

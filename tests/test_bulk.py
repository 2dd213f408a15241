"""Bulk inserts: frames checked column by column with the row path's errors, one record with a side file,
columnar batches in table state and indexes, checkpoints, other processes, conflicts, and crashes."""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zapnb
import zapnb.ids
from zapnb import checkpoint as checkpoints
from zapnb import faults, v
from zapnb.bulk import frame_rows
from zapnb.changes import ChangeSet, ReadRange, decode_record
from zapnb.columnkeys import sorted_table_keys, table_keys
from zapnb.engine import Engine
from zapnb.errors import ConflictError, CorruptionError, ZapError
from zapnb.index import IndexSpec
from zapnb.keys import encode_key, prefix_end
from zapnb.layout import Layout
from zapnb.schema import Schema
from zapnb.sidefiles import DIRECTORY, side_file_path
from zapnb.transaction import BULK_ROWS

ITEMS = (
    zapnb.define_table(
        {
            "name": v.string(),
            "kind": v.union(v.literal("A"), v.literal("B")),
            "n": v.number(),
            "i": v.optional(v.int64()),
            "flag": v.boolean(),
            "blob": v.optional(v.bytes()),
            "owner": v.optional(v.id("owners")),
            "note": v.nullable(v.string()),
        }
    )
    .index("by_kind_n", ["kind", "n"])
    .index("by_owner", ["owner"])
)
SCHEMA = zapnb.define_schema({"owners": zapnb.define_table({"name": v.string()}), "items": ITEMS})
COLUMNS = {
    "name": pl.String,
    "kind": pl.String,
    "n": pl.Float64,
    "i": pl.Int64,
    "flag": pl.Boolean,
    "blob": pl.Binary,
    "owner": pl.String,
    "note": pl.String,
}
USER = tuple(COLUMNS)
KILLED = 137


@pytest.fixture
def db(deployed: Callable[[Schema], zapnb.Database]) -> zapnb.Database:
    return deployed(SCHEMA)


def make_rows(count: int, owners: list[str], seed: int = 7) -> list[dict[str, Any]]:
    """Rows with every kind of value the table takes, edge cases among them; some optional fields left out."""
    rng = random.Random(seed)
    floats = [0.0, -0.0, 1.5, -2.25, math.inf, -math.inf, math.nan, 1e300]
    texts = ["", "a", "é\x00b", "\x01", "zz" * 40]
    rows = []
    for k in range(count):
        row: dict[str, Any] = {
            "name": f"{rng.choice(texts)}{k % 97}",
            "kind": rng.choice("AB"),
            "n": rng.choice(floats) if k % 5 == 0 else float(rng.randint(-50, 50)),
            "flag": k % 3 == 0,
            "note": None if k % 4 == 0 else rng.choice(texts),
        }
        if k % 2:
            row["i"] = rng.choice([0, -(2**63), 2**63 - 1, k])
        if k % 3:
            row["blob"] = bytes([k % 256, 0, 1])
        if owners and k % 5 != 1:
            row["owner"] = rng.choice(owners)
        rows.append(row)
    return rows


def as_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame([{name: row.get(name) for name in COLUMNS} for row in rows], schema=COLUMNS)


def as_input(rows: list[dict[str, Any]], kind: str) -> Any:
    if kind == "dicts":
        return rows
    frame = as_frame(rows)
    return frame if kind == "polars" else frame.to_arrow()


def documents(db: zapnb.Database, table: str) -> list[dict[str, Any]]:
    """Every document of ``table`` at the newest snapshot, in creation order."""
    snapshot = db._engine.snapshot()
    state = snapshot.tables.get(table)
    return [] if state is None else [dict(doc) for doc in state.documents(snapshot.lsn)]


def user_fields(docs: list[dict[str, Any]]) -> list[str]:
    """The user fields of documents, as exact zapnb JSON (so NaN, -0.0 and ints compare exactly)."""
    from zapnb.jsonvalues import encode_json

    return [encode_json({k: d[k] for k in sorted(d) if k not in ("_id", "_creationTime")}) for d in docs]


def owners_of(db: zapnb.Database, count: int = 5) -> list[str]:
    return [str(i) for i in db.insert_many("owners", [{"name": f"o{k}"} for k in range(count)])]


# --- the same documents, whatever the rows came as ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["dicts", "polars", "arrow"])
def test_a_bulk_insert_stores_exactly_the_rows_given(tmp_path: Path, kind: str) -> None:
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        rows = make_rows(BULK_ROWS + 500, owners_of(db))
        before = db._engine.log.last_lsn()
        ids = db.insert_many("items", as_input(rows, kind))
        assert db._engine.log.last_lsn() == before + 1  # one record
        assert next(iter(db._engine.log.read_since(before))).payload.startswith(b'{"kind":"bulk"')
        assert all(doc_id.table == "items" for doc_id in ids)
        stored = documents(db, "items")
        assert [str(d["_id"]) for d in stored] == [str(i) for i in ids]  # creation order is insert order
        times = [d["_creationTime"] for d in stored]
        assert times == sorted(set(times))
        want = user_fields([ITEMS.validate_document(r) for r in rows])
        assert user_fields(stored) == want
        assert db.get(ids[17]) == stored[17]
        db._engine._writes_since_checkpoint = 0  # close without a checkpoint: reopening replays the side file
    with zapnb.connect(tmp_path) as db:
        assert user_fields(documents(db, "items")) == want
        db._engine.checkpoint()
    with zapnb.connect(tmp_path) as db:  # now from the checkpoint's files
        assert user_fields(documents(db, "items")) == want
        frame = db.query("items").with_index("by_kind_n", lambda q: q.eq("kind", "A")).collect()
        assert frame.height == sum(1 for r in rows if r["kind"] == "A")


def test_small_frames_and_lists_are_plain_writes(db: zapnb.Database) -> None:
    rows = make_rows(20, [])
    db.insert_many("items", as_frame(rows))
    db.insert_many("items", rows)
    assert not (db.path / DIRECTORY).exists() or not list((db.path / DIRECTORY).glob("*.arrow"))
    assert user_fields(documents(db, "items")) == user_fields(documents(db, "items")[:20]) * 2


def test_tables_without_a_definition_take_bulk_rows_too(db: zapnb.Database) -> None:
    rows = [{"x": k, "nested": {"a": [k, None]}, "maybe": None if k % 2 else "s"} for k in range(BULK_ROWS)]
    ids = db.insert_many("loose", pl.DataFrame(rows))
    assert len(ids) == BULK_ROWS
    assert list((db.path / DIRECTORY).glob("*.arrow"))
    assert db.get(ids[3]) == {"_id": ids[3], "_creationTime": db.get(ids[3])["_creationTime"], **rows[3]}  # type: ignore[index]


# --- errors: the row path's, naming the row -----------------------------------------------------------------

BAD_ROWS: list[tuple[str, int, dict[str, Any]]] = [
    ("an enum value outside the union", 5, {"kind": "C"}),
    ("a null in a required field", 7, {"name": None}),
    ("a malformed ID", 3, {"owner": "not-an-id"}),
    ("a document over 1 MiB", 4, {"note": "x" * (1 << 20)}),
]


@pytest.mark.parametrize(("why", "row", "change"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_frames_fail_like_lists_of_dicts_on_the_same_row(
    db: zapnb.Database, why: str, row: int, change: dict[str, Any]
) -> None:
    rows = make_rows(BULK_ROWS + 10, owners_of(db))
    rows[row].update(change)
    rows[row + 30].update(change)  # a later bad row is not the one reported
    before = db._engine.log.last_lsn()
    errors = []
    for kind in ("dicts", "polars", "arrow"):
        with pytest.raises(ZapError) as caught:
            db.insert_many("items", as_input(rows, kind))
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1] == errors[2], why
    assert db._engine.log.last_lsn() == before  # nothing written
    if errors[0][0] is zapnb.SchemaValidationError:
        assert f"Path: [{row}]." in errors[0][1]


def test_wrong_columns_fail_on_the_first_row_like_dicts(db: zapnb.Database) -> None:
    rows = make_rows(BULK_ROWS, [])
    cases = [
        as_frame(rows).with_columns(pl.lit(1).alias("extra")),
        as_frame(rows).drop("note"),
        as_frame(rows).with_columns(pl.col("n").cast(pl.String)),
        as_frame(rows).with_columns(pl.lit(2**63, pl.UInt64).alias("i")),
    ]
    for frame in cases:
        with pytest.raises(ZapError) as from_frame:
            db.insert_many("items", frame)
        with pytest.raises(ZapError) as from_dicts:
            db.insert_many("items", frame_rows(frame, ITEMS))  # a null in an optional field is missing
        assert type(from_frame.value) is type(from_dicts.value)
        assert str(from_frame.value) == str(from_dicts.value)


def test_an_id_of_another_table_is_refused_naming_the_row(db: zapnb.Database) -> None:
    owner = owners_of(db, 1)[0]
    item = db.insert("items", make_rows(1, [])[0])
    rows = make_rows(BULK_ROWS, [owner])
    rows[9]["owner"] = str(item)
    with pytest.raises(
        zapnb.SchemaValidationError, match=r"Found ID .* from table `items`(.|\n)*Path: \[9\]\.owner"
    ):
        db.insert_many("items", as_frame(rows))


# --- transactions -------------------------------------------------------------------------------------------


def test_a_transaction_reads_and_rewrites_its_own_bulk_rows(db: zapnb.Database) -> None:
    rows = make_rows(BULK_ROWS + 1, [])
    with db.transaction() as tx:
        ids = tx.insert_many("items", as_frame(rows))
        assert tx.get(ids[10])["name"] == rows[10]["name"]  # type: ignore[index]
        tx.patch(ids[10], {"name": "patched"})
        tx.delete(ids[11])
        tx.replace(ids[12], {**rows[12], "n": 99.0})
        assert tx.get(ids[10])["name"] == "patched"  # type: ignore[index]
        assert tx.get(ids[11]) is None
        assert tx.query("items").count() == len(rows) - 1
        extra = tx.insert("items", rows[0])
    stored = {str(d["_id"]): d for d in documents(db, "items")}
    assert len(stored) == len(rows)  # every bulk row but the deleted one, and the single insert
    assert stored[str(ids[10])]["name"] == "patched"
    assert stored[str(ids[12])]["n"] == 99.0
    assert str(ids[11]) not in stored
    assert str(extra) in stored


def _abandoned(db: zapnb.Database) -> None:
    with db.transaction() as tx:
        tx.insert_many("items", as_frame(make_rows(BULK_ROWS, [])))
        raise RuntimeError("changed my mind")


def test_a_failed_transaction_leaves_no_side_file(db: zapnb.Database) -> None:
    with pytest.raises(RuntimeError, match="changed my mind"):
        _abandoned(db)
    assert documents(db, "items") == []
    assert not (db.path / DIRECTORY).exists() or not list((db.path / DIRECTORY).glob("*.*"))


def test_a_bulk_insert_that_conflicts_writes_nothing_and_leaves_no_side_file(db: zapnb.Database) -> None:
    tx = db.transaction()
    tx.query("items").with_index("by_kind_n", lambda q: q.eq("kind", "A")).collect()
    tx.insert_many("items", as_frame(make_rows(BULK_ROWS, [])).to_arrow().to_batches()[0])  # a record batch
    db.insert("items", dict(make_rows(1, [])[0], kind="A"))
    before = db._engine.log.last_lsn()
    with pytest.raises(ConflictError):
        tx.commit()
    assert db._engine.log.last_lsn() == before
    assert db.query("items").count() == 1
    assert not list((db.path / DIRECTORY).glob("*.*"))


# --- change sets and conflicts ------------------------------------------------------------------------------


def test_a_bulk_change_set_touches_exactly_the_new_keys(db: zapnb.Database) -> None:
    seen: list[ChangeSet] = []
    db._engine.add_listener(seen.append)
    db.insert_many("items", as_frame(make_rows(BULK_ROWS, owners_of(db))))
    bulk = seen[-1]
    assert bulk.weight == BULK_ROWS
    assert not bulk.changes
    state = db._engine.snapshot().tables["items"]
    expected = {
        ("items", name, spec.key_for(doc))
        for doc in documents(db, "items")
        for name, (spec, _) in state.indexes.items()
    }
    assert set(bulk.touched_keys()) == expected
    a_key = encode_key(["A"])
    assert bulk.touches([ReadRange("items", "by_kind_n", a_key, prefix_end(a_key))]) is not None
    c_key = encode_key(["C"])
    assert bulk.touches([ReadRange("items", "by_kind_n", c_key, prefix_end(c_key))]) is None
    assert bulk.touches([ReadRange("owners", "by_id", None, None)]) is None


def test_a_bulk_insert_conflicts_with_a_transaction_that_read_its_range(db: zapnb.Database) -> None:
    rows = [dict(r, kind="A") for r in make_rows(BULK_ROWS, [])]
    reader, bystander = db.transaction(), db.transaction()
    reader.query("items").with_index("by_kind_n", lambda q: q.eq("kind", "A")).collect()
    bystander.query("items").with_index("by_kind_n", lambda q: q.eq("kind", "B")).collect()
    db.insert_many("items", as_frame(rows))
    reader.insert("owners", {"name": "x"})
    bystander.insert("owners", {"name": "y"})
    with pytest.raises(ConflictError):
        reader.commit()
    assert bystander.commit() is not None


# --- checkpoints --------------------------------------------------------------------------------------------


def test_checkpoints_fold_batches_rewritten_rows_and_a_batch_that_came_during_the_checkpoint(
    tmp_path: Path,
) -> None:
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        first = db.insert_many("items", as_frame(make_rows(BULK_ROWS, [])))
        db.patch(first[0], {"name": "patched"})
        db.delete(first[1])
        write = checkpoints.write_checkpoint

        def and_a_bulk_insert_meanwhile(*args: Any) -> Any:
            info = write(*args)
            db.insert_many("items", as_frame(make_rows(BULK_ROWS, [], seed=8)))  # applied after the freeze
            return info

        checkpoints.write_checkpoint = and_a_bulk_insert_meanwhile  # type: ignore[assignment]
        try:
            db._engine.checkpoint()
        finally:
            checkpoints.write_checkpoint = write
        want = user_fields(documents(db, "items"))
        assert len(want) == 2 * BULK_ROWS - 1
        db.insert_many("items", as_frame(make_rows(BULK_ROWS, [], seed=9)))
        db._engine.checkpoint()
        want = user_fields(documents(db, "items"))
    with zapnb.connect(tmp_path) as db:
        assert user_fields(documents(db, "items")) == want
        by_kind = db.query("items").with_index("by_kind_n").collect()
        assert by_kind.height == len(want)


def test_a_deploy_that_changes_the_layout_between_batches(tmp_path: Path) -> None:
    wider = zapnb.define_schema(
        {
            "owners": zapnb.define_table({"name": v.string()}),
            "items": zapnb.define_table({**dict(ITEMS.document.fields), "extra": v.optional(v.string())})  # type: ignore[attr-defined]
            .index("by_kind_n", ["kind", "n"])
            .index("by_extra", ["extra"]),
        }
    )
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        db.insert_many("items", as_frame(make_rows(BULK_ROWS, [])))
        db.deploy(wider, progress=False)
        db.insert_many(
            "items", as_frame(make_rows(BULK_ROWS, [], seed=3)).with_columns(pl.lit("e").alias("extra"))
        )
        want = user_fields(documents(db, "items"))
        assert db.query("items").with_index("by_extra", lambda q: q.eq("extra", "e")).count() == BULK_ROWS
        db._engine.checkpoint()
    with zapnb.connect(tmp_path) as db:
        assert user_fields(documents(db, "items")) == want
        assert db.query("items").with_index("by_extra", lambda q: q.eq("extra", "e")).count() == BULK_ROWS


def test_side_files_go_once_the_log_no_longer_names_them(tmp_path: Path) -> None:
    with zapnb.Database(Engine.open(tmp_path, segment_size=4096)) as db:
        db.deploy(SCHEMA, progress=False)
        db.insert_many("items", as_frame(make_rows(BULK_ROWS, [])))
        lsn = db._engine.log.last_lsn()
        path = next((tmp_path / DIRECTORY).glob("*.arrow"))
        assert path == side_file_path(tmp_path, lsn, 0)
        for _ in range(2):
            for k in range(40):
                db.insert("owners", {"name": f"n{k}"})
            db._engine.checkpoint()
        assert db._engine.log.first_lsn() > lsn
        assert not path.exists()
        assert len(documents(db, "items")) == BULK_ROWS


# --- other processes and damage -----------------------------------------------------------------------------


def _bulk_in_child(path: str, count: int) -> None:
    with zapnb.connect(path) as db:
        db.insert_many("items", as_frame(make_rows(count, [], seed=11)))


def test_another_process_sees_a_bulk_insert(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        db.insert("owners", {"name": "first"})
        child = multiprocessing.get_context("spawn").Process(
            target=_bulk_in_child, args=(str(tmp_path), BULK_ROWS)
        )
        child.start()
        child.join(120)
        assert child.exitcode == 0
        deadline = time.monotonic() + 5
        while db.query("items").count() < BULK_ROWS:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert user_fields(documents(db, "items")) == user_fields(
            [SCHEMA.tables["items"].validate_document(r) for r in make_rows(BULK_ROWS, [], seed=11)]
        )


@pytest.mark.parametrize("damage", ["flip", "remove"])
def test_a_damaged_or_missing_side_file_is_corruption_naming_it(tmp_path: Path, damage: str) -> None:
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        db.insert_many("items", as_frame(make_rows(BULK_ROWS, [])))
        path = side_file_path(tmp_path, db._engine.log.last_lsn(), 0)
        db._engine._writes_since_checkpoint = 0  # no checkpoint at close: the log still needs the file
    if damage == "remove":
        path.unlink()
    else:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match=path.name):
        zapnb.connect(tmp_path)


# --- crashes ------------------------------------------------------------------------------------------------


def _crash_child(path: str, acked: str, kill_at: str) -> None:
    with zapnb.connect(path) as db:
        if db.schema is None:
            db.deploy(SCHEMA, progress=False)
        owner = db.insert("owners", {"name": "acknowledged"})
        with open(acked, "a") as side:
            side.write(f"{owner}\n")
            side.flush()
            os.fsync(side.fileno())
        os.environ[faults.ENV_VAR] = kill_at
        faults.reload()
        db.insert_many("items", as_frame(make_rows(BULK_ROWS, [str(owner)])))


@pytest.mark.parametrize(
    ("kill_at", "committed"),
    [
        ("sidefiles.after_write_before_commit", False),
        ("bulk.after_side_file_before_append", False),
        ("engine.after_append_before_apply", True),
    ],
)
def test_a_kill_during_a_bulk_commit_loses_nothing_acknowledged_and_shows_no_part(
    tmp_path: Path, kill_at: str, committed: bool
) -> None:
    data, acked = tmp_path / "data", tmp_path / "acked"
    context = multiprocessing.get_context("spawn")
    for _ in range(2):  # the second run starts from what the first crash left
        child = context.Process(target=_crash_child, args=(str(data), str(acked), kill_at))
        child.start()
        child.join(120)
        assert child.exitcode == KILLED, f"the kill point {kill_at} was never reached"
    with zapnb.connect(data) as db:
        owners = {str(d["_id"]) for d in documents(db, "owners")}
        assert set(acked.read_text().split()) <= owners
        assert db.query("items").count() == (2 * BULK_ROWS if committed else 0)
        leftovers = sorted(p.name for p in (data / DIRECTORY).iterdir() if p.name != "LOCK")
        lsns = [int(name.split("-")[0]) for name in leftovers]
        assert all(not name.endswith(".tmp") for name in leftovers)
        assert all(lsn <= db._engine.log.last_lsn() for lsn in lsns)
        for lsn in lsns:  # every side file left is one a record in the log names
            assert decode_record(next(r for r in db._engine.log.read_since(lsn - 1)).payload).bulk  # type: ignore[union-attr]
        db.insert_many("items", as_frame(make_rows(BULK_ROWS, [])))
    with zapnb.connect(data) as db:
        assert db.query("items").count() == (3 if committed else 1) * BULK_ROWS


def _bulk_loads_until_killed(path: str, acked: str, run: int) -> None:
    with zapnb.connect(path) as db:
        if db.schema is None:
            db.deploy(SCHEMA, progress=False)
        for k in range(1000):
            tag = f"{run}-{k}"
            rows = [dict(r, name=tag) for r in make_rows(BULK_ROWS, [], seed=k)]
            db.insert_many("items", as_frame(rows))
            with open(acked, "a") as side:
                side.write(f"{tag}\n")
                side.flush()
                os.fsync(side.fileno())
            if k % 3 == 2:
                db._engine.checkpoint()


@pytest.mark.slow
def test_sigkill_during_bulk_loads_loses_nothing_acknowledged_and_no_load_is_partial(tmp_path: Path) -> None:
    data, acked = tmp_path / "data", tmp_path / "acked"
    context = multiprocessing.get_context("spawn")
    rng = random.Random(5)
    for run in range(12):
        child = context.Process(target=_bulk_loads_until_killed, args=(str(data), str(acked), run))
        child.start()
        time.sleep(rng.uniform(1.5, 4.0))
        child.kill()
        child.join(30)
        with zapnb.connect(data) as db:
            counts = documents(db, "items")
            by_tag: dict[str, int] = {}
            for doc in counts:
                by_tag[doc["name"]] = by_tag.get(doc["name"], 0) + 1
            assert set(by_tag.values()) <= {BULK_ROWS}, "a bulk insert is there in part"
            assert set(acked.read_text().split()) <= set(by_tag) if acked.exists() else True
            assert not list((data / DIRECTORY).glob("*.tmp"))
    assert len(acked.read_text().split()) >= 5


# --- index keys of whole columns ----------------------------------------------------------------------------

KEYED = zapnb.define_table(
    {
        "s": v.string(),
        "os": v.optional(v.string()),
        "ns": v.nullable(v.string()),
        "f": v.number(),
        "of": v.optional(v.number()),
        "i": v.int64(),
        "b": v.boolean(),
        "y": v.bytes(),
        "z": v.null(),
        "e": v.union(v.literal("A"), v.literal("B")),
        "p": v.id("projects"),
        "a": v.optional(v.any()),
        "l": v.optional(v.array(v.number())),
        "o": v.optional(v.object({"q": v.optional(v.string())})),
    }
)
KEY_SPECS = [
    IndexSpec.by_id(),
    IndexSpec.by_creation_time(),
    *[IndexSpec(f"by_{name}", (name,)) for name, _ in KEYED.document.fields],  # type: ignore[attr-defined]
    IndexSpec("several", ("e", "f", "s", "p", "b")),
    IndexSpec("nested_and_absent", ("o.q", "a", "not_a_field", "s.x")),
]
PROJECT_IDS = [str(i) for i in zapnb.ids.new_ids(10001, 20)]
FLOATS = st.floats() | st.sampled_from(
    [0.0, -0.0, math.nan, -math.nan, math.inf, struct.unpack(">d", bytes.fromhex("fff0000000000001"))[0]]
)
TEXT = st.text(alphabet=st.sampled_from(["a", "\x00", "\x01", "\x02", "é", "\uffff"]), max_size=4)
KEYED_DOCS = st.fixed_dictionaries(
    {
        "s": TEXT,
        "ns": st.none() | TEXT,
        "f": FLOATS,
        "i": st.integers(-(2**63), 2**63 - 1),
        "b": st.booleans(),
        "y": st.binary(max_size=3),
        "z": st.none(),
        "e": st.sampled_from("AB"),
        "p": st.sampled_from(PROJECT_IDS),
    },
    optional={
        "os": TEXT,
        "of": FLOATS,
        "a": st.recursive(
            st.none() | st.integers(-3, 3) | FLOATS | TEXT, lambda c: st.lists(c, max_size=2), max_leaves=4
        ),
        "l": st.lists(FLOATS, max_size=2),
        "o": st.fixed_dictionaries({}, optional={"q": TEXT}),
    },
)


@settings(max_examples=60)
@given(st.lists(KEYED_DOCS, min_size=1, max_size=12), st.booleans(), st.data())
def test_keys_of_whole_columns_are_those_of_each_document(
    docs: list[dict[str, Any]], ordered: bool, data: Any
) -> None:
    layout = Layout.for_table(KEYED, table="t")
    times = sorted(data.draw(st.sets(st.floats(1.0, 1e13), min_size=len(docs), max_size=len(docs))))
    if not ordered:
        times = data.draw(st.permutations(times))
    ids = [str(i) for i in zapnb.ids.new_ids(10002, len(docs))]
    stored = [
        {"_id": i, "_creationTime": t, **KEYED.validate_document(d)}
        for i, t, d in zip(ids, times, docs, strict=True)
    ]
    table = layout.to_arrow(stored)
    back = layout.to_documents(table)
    for spec in KEY_SPECS:
        want = [spec.key_for(doc) for doc in back]
        assert table_keys(spec, layout, table).to_pylist() == want, spec
        keys, rows = sorted_table_keys(spec, layout, table)
        assert keys.keys(0, len(keys)) == sorted(want), spec
        assert [want[r] for r in rows.tolist()] == sorted(want), spec


def test_an_index_spec_keys_match_in_bulk_and_one_by_one(db: zapnb.Database) -> None:
    db.insert_many("items", as_frame(make_rows(BULK_ROWS, owners_of(db))))
    state = db._engine.snapshot().tables["items"]
    spec = IndexSpec("by_kind_n", ("kind", "n"))
    keys = [spec.key_for(doc) for doc in documents(db, "items")]
    scanned = [
        entry.key
        for entry in state.indexes["by_kind_n"][1].scan(None, None, snapshot=db._engine.snapshot().lsn)
    ]
    assert scanned == sorted(keys)
    assert pa.array(scanned).null_count == 0

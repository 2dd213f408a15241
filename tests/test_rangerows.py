"""Whole ranges read as arrays (``indexrows``, ``scan.row_arrays``, ``frames.range_frame``) agree with the
per-entry path, across bases, bulk runs, rewrites, deletions, snapshots and orders."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

import zapnb
from zapnb import queries, v
from zapnb.gather import COLUMN_BY_COLUMN, Gatherer
from zapnb.index import IndexData, IndexSpec
from zapnb.indexbase import sort_keys
from zapnb.indexrows import Part, ordered_rows
from zapnb.keys import encode_key, prefix_end
from zapnb.transaction import BULK_ROWS

SCHEMA = zapnb.define_schema(
    {
        "items": zapnb.define_table(
            {
                "g": v.int64(),
                "s": v.union(v.literal("a"), v.literal("b"), v.literal("c")),
                "t": v.string(),
                "n": v.optional(v.float64()),
            }
        )
        .index("by_g", ["g"])
        .index("by_s_g", ["s", "g"])
    }
)


# --- ordered_rows against a plain merge ---------------------------------------------------------------------


@given(
    keys=st.sets(st.binary(min_size=1, max_size=6), min_size=0, max_size=60),
    data=st.data(),
)
def test_ordered_rows_is_the_merge_of_its_parts(keys: set[bytes], data: st.DataObject) -> None:
    every = sorted(keys)
    owner = [data.draw(st.integers(0, 3)) for _ in every]  # 0-2: a part; 3: added since the base
    hidden = {key for key in every if data.draw(st.booleans()) and data.draw(st.booleans())}
    rows = {key: k for k, key in enumerate(every)}
    parts = []
    for p in range(3):
        mine = [key for key, o in zip(every, owner, strict=True) if o == p]
        sorted_keys, _ = sort_keys(mine)
        gone = [k for k, key in enumerate(mine) if key in hidden]
        parts.append(Part(sorted_keys, np.array([rows[key] for key in mine], np.int64), gone))
    added = [key for key, o in zip(every, owner, strict=True) if o == 3]
    ranged = ordered_rows(parts, added, [f"id{rows[key]}" for key in added])
    expected = [key for key, o in zip(every, owner, strict=True) if o == 3 or key not in hidden]
    assert len(ranged.rows) == len(expected)
    for k, key in enumerate(expected):
        if key in added:
            assert ranged.rows[k] == -1
            assert ranged.added[k] == f"id{rows[key]}"
        else:
            assert ranged.rows[k] == rows[key]
    backwards = ranged.reversed()
    assert backwards.rows.tolist() == ranged.rows.tolist()[::-1]
    assert {len(expected) - 1 - k: d for k, d in backwards.added.items()} == ranged.added


def test_many_keys_outside_the_largest_part_merge_pairwise() -> None:
    from zapnb import indexrows

    a, _ = sort_keys([b"%06d" % k for k in range(0, 200_000, 2)])
    b, _ = sort_keys([b"%06d" % k for k in range(1, 200_000, 2)])
    assert len(b) > indexrows.FEW_TO_PLACE
    ranged = ordered_rows(
        [Part(a, np.arange(0, 200_000, 2), [0]), Part(b, np.arange(1, 200_000, 2), [])], [], []
    )
    assert ranged.rows.tolist() == list(range(1, 200_000))


# --- IndexData.range_rows against IndexData.scan -------------------------------------------------------


def _entries_as_arrays(index: IndexData, lo: bytes | None, hi: bytes | None, snapshot: int) -> Any:
    rows, added = [], {}
    for k, entry in enumerate(index.scan(lo, hi, snapshot=snapshot)):
        rows.append(entry.position)
        if entry.doc_id is not None:
            added[k] = entry.doc_id
    return rows, added


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_range_rows_matches_scan_at_every_snapshot(seed: int) -> None:
    rng = random.Random(seed)
    spec = IndexSpec("by_g", ("g",))
    made = 0

    def doc(g: int) -> dict[str, Any]:
        nonlocal made
        made += 1
        return {"_id": f"d{made:05d}", "_creationTime": float(made), "g": g}

    base_docs = [doc(rng.randrange(5)) for _ in range(rng.randrange(0, 40))]
    index = IndexData.build([spec.key_for(d) for d in base_docs], list(range(len(base_docs))), lsn=1)
    live = {d["_id"]: d for d in base_docs}
    next_row, lsn = len(base_docs), 1
    for _ in range(rng.randrange(1, 12)):
        lsn += 1
        action = rng.choice(["run", "add", "remove", "move"])
        if action == "run":
            docs = [doc(rng.randrange(5)) for _ in range(rng.randrange(1, 30))]
            index.apply_run(lsn, [spec.key_for(d) for d in docs], list(range(next_row, next_row + len(docs))))
            next_row += len(docs)
            live.update((d["_id"], d) for d in docs)
        elif action == "add":
            new = doc(rng.randrange(5))
            index.apply(lsn, [], [(spec.key_for(new), new["_id"])])
            live[new["_id"]] = new
        elif live:
            old = live[rng.choice(sorted(live))]
            added = []
            if action == "move":
                moved = {**old, "g": rng.randrange(5)}
                if moved["g"] == old["g"]:
                    continue
                added, live[old["_id"]] = [(spec.key_for(moved), old["_id"])], moved
            else:
                del live[old["_id"]]
            index.apply(lsn, [spec.key_for(old)], added)
    for snapshot in range(1, lsn + 1):
        for g in [None, *range(5)]:
            lo = None if g is None else encode_key([g])
            hi = None if lo is None else prefix_end(lo)
            ranged = index.range_rows(lo, hi, snapshot=snapshot)
            assert (ranged.rows.tolist(), ranged.added) == _entries_as_arrays(index, lo, hi, snapshot)


# --- queries: the whole-range path against iteration --------------------------------------------------


def _bulk(rng: random.Random, count: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "g": [rng.randrange(6) for _ in range(count)],
            "s": [rng.choice("abc") for _ in range(count)],
            "t": [rng.choice(["x", "y", "zz"]) for _ in range(count)],
            "n": [rng.choice([None, 1.5, -2.0]) for _ in range(count)],
        }
    )


def _queries(db: Any) -> Iterator[tuple[str, Any]]:
    for order in ("asc", "desc"):
        yield f"all {order}", db.query("items").order(order)
        yield f"by_g=2 {order}", db.query("items").with_index("by_g", lambda r: r.eq("g", 2)).order(order)
        yield (
            f"by_s_g {order}",
            db.query("items").with_index("by_s_g", lambda r: r.eq("s", "b").gt("g", 1)).order(order),
        )
        yield (
            f"filter {order}",
            db.query("items")
            .order(order)
            .filter(lambda f: f.and_(f.eq(f.field("s"), "a"), f.lt(f.field("g"), 4))),
        )
        yield f"filter nothing {order}", db.query("items").filter(lambda f: f.eq(f.field("t"), "absent"))
        yield f"filter neq {order}", db.query("items").filter(lambda f: f.neq(f.field("t"), "x"))


def _check_agrees(name: str, query: Any) -> None:
    expected = list(query)  # the per-document path
    frame = query.collect()
    assert frame["_id"].to_list() == [str(d["_id"]) for d in expected], name
    for column in ("g", "s", "t", "n", "_creationTime"):
        assert frame[column].to_list() == [d.get(column) for d in expected], (name, column)
    assert query.count() == len(expected), name
    for n in (1, 7, len(expected) + 1):
        taken = query.take(n)
        assert taken["_id"].to_list() == [str(d["_id"]) for d in expected[:n]], (name, n)
        assert taken["t"].to_list() == [d.get("t") for d in expected[:n]], (name, n)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::zapnb.FilterScanWarning")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), whole_from=st.sampled_from([0, queries.WHOLE_RANGE_ROWS]))
def test_collect_and_count_agree_with_iteration(
    tmp_path_factory: pytest.TempPathFactory, seed: int, whole_from: int
) -> None:
    default, queries.WHOLE_RANGE_ROWS = queries.WHOLE_RANGE_ROWS, whole_from  # type: ignore[misc]
    try:
        _random_writes_then_check(tmp_path_factory, seed)
    finally:
        queries.WHOLE_RANGE_ROWS = default  # type: ignore[misc]


def _random_writes_then_check(tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path_factory.mktemp("db")
    with zapnb.connect(path) as db:
        db.deploy(SCHEMA, progress=False)
        ids = [str(i) for i in db.insert_many("items", _bulk(rng, BULK_ROWS + rng.randrange(200)))]
        for step in range(rng.randrange(3, 9)):
            action = rng.choice(["bulk", "insert", "patch key", "patch other", "delete", "checkpoint"])
            if action == "bulk":
                ids += [str(i) for i in db.insert_many("items", _bulk(rng, BULK_ROWS))]
            elif action == "insert":
                ids.append(str(db.insert("items", {"g": rng.randrange(6), "s": "a", "t": "x"})))
            elif action == "checkpoint":
                db._engine.checkpoint()
            elif ids:
                target = ids.pop(rng.randrange(len(ids)))
                if action == "delete":
                    db.delete(target)
                    continue
                fields = {"g": rng.randrange(6)} if action == "patch key" else {"t": f"p{step}", "n": 9.0}
                db.patch(target, fields)
                ids.append(target)
            if step % 2:
                with db.transaction() as tx:  # an older snapshot, read after later commits
                    before = [(name, query.within(tx)) for name, query in _queries(db)]
                    db.insert("items", {"g": 2, "s": "b", "t": "later"})
                    for name, query in before:
                        _check_agrees(f"old snapshot {name}", query)
        for name, query in _queries(db):
            _check_agrees(name, query)
        with db.transaction() as tx:  # the transaction's own writes: the per-entry path answers
            tx.insert("items", {"g": 2, "s": "a", "t": "mine"})
            tx.patch(ids[0], {"g": 3})
            for name, query in _queries(db):
                _check_agrees(f"own writes {name}", query.within(tx))


@pytest.mark.filterwarnings("ignore::zapnb.FilterScanWarning")
def test_a_long_range_filters_on_the_whole_base(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        db.deploy(SCHEMA, progress=False)
        db.insert_many("items", _bulk(random.Random(7), 3 * BULK_ROWS))
        db._engine.checkpoint()
        first = db.query("items").filter(lambda f: f.eq(f.field("s"), "a")).first()
        assert first is not None
        target = str(first["_id"])
        db.patch(
            target, {"s": "c", "t": "moved"}
        )  # a rewritten base row: its document is read from the overlay
        query = db.query("items").filter(lambda f: f.eq(f.field("s"), "c"))
        frame = query.collect()
        assert target in frame["_id"].to_list()
        assert frame.filter(pl.col("_id") == target)["t"].to_list() == ["moved"]
        assert query.count() == frame.height == len(list(query))
        assert db.query("items").filter(lambda f: f.eq(f.field("s"), "nope")).count() == 0


# --- gathering ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_list", [True, False])
@pytest.mark.parametrize("column_by_column", [True, False])
@pytest.mark.parametrize("count", [0, 1, 50, 300, COLUMN_BY_COLUMN + 1])
def test_gatherer_gives_the_rows_asked_for(column_by_column: bool, count: int, as_list: bool) -> None:
    frame = pl.DataFrame(
        {
            "a": np.arange(30_000),
            "b": [f"s{k}" for k in range(30_000)],
            "e": pl.Series([("x", "y")[k % 2] for k in range(30_000)], dtype=pl.Enum(["x", "y"])),
        }
    )
    positions = np.random.default_rng(count).integers(0, frame.height, count)
    gatherer = Gatherer(frame, column_by_column=column_by_column)
    got = gatherer.gather(positions.tolist() if as_list else positions)
    assert got.schema == frame.schema
    assert got.to_dicts() == [frame.row(int(p), named=True) for p in positions]

"""Index keys of whole columns (zapnb.columnkeys): sorted keys written straight into the fixed layout, the
sort of ``by_id`` keys by their first varying bytes with ties, the columns shared between indexes, and the
memory the keys take while they are made."""

from __future__ import annotations

import random
import threading
import tracemalloc
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zapnb
from zapnb import v
from zapnb.columnkeys import KeyColumns, key_columns, sorted_table_keys, table_keys
from zapnb.ids import new_ids
from zapnb.index import IndexSpec
from zapnb.indexbase import FixedKeys
from zapnb.layout import Layout

TABLE = zapnb.define_table(
    {
        "project": v.id("projects"),
        "status": v.union(v.literal("PENDING"), v.literal("DONE")),
        "at": v.optional(v.number()),
        "n": v.int64(),
        "flag": v.boolean(),
        "label": v.string(),
        "tags": v.optional(v.array(v.string())),
    }
)
LAYOUT = Layout.for_table(TABLE, table="things")
SPECS = [
    IndexSpec.by_id(),
    IndexSpec.by_creation_time(),
    IndexSpec("by_project", ("project",)),
    IndexSpec("by_project_at", ("project", "at")),
    IndexSpec("by_status_n_flag", ("status", "n", "flag")),
    IndexSpec("by_flag_n", ("flag", "n")),
    IndexSpec("by_label", ("label",)),
    IndexSpec("by_missing", ("nothing",)),
    IndexSpec("by_tags", ("tags",)),
]


def make_table(
    count: int, *, seed: int = 3, increasing: bool = True, ids: list[str] | None = None
) -> pa.Table:
    rng = random.Random(seed)
    ids = ids or [str(i) for i in new_ids(10002, count)]
    projects = [str(i) for i in new_ids(10001, 7)]
    times = [1.7e12 + k * 0.001 for k in range(count)]
    if not increasing:
        rng.shuffle(times)
    docs = [
        {
            "_id": doc_id,
            "_creationTime": time,
            "project": rng.choice(projects),
            "status": rng.choice(["PENDING", "DONE"]),
            "at": float(rng.randint(0, 5)),
            "n": rng.randint(-3, 3),
            "flag": rng.random() < 0.5,
            "label": rng.choice(["a", "b\x00c", "dd"]),
            **({"tags": ["x", "y"][: rng.randint(0, 2)]} if k % 2 else {}),
        }
        for k, (doc_id, time) in enumerate(zip(ids, times, strict=True))
    ]
    return LAYOUT.to_arrow(docs)


def check_sorted(spec: IndexSpec, table: pa.Table, columns: KeyColumns | None = None) -> Any:
    """Assert that the sorted keys are the keys of the rows, sorted, and each one's row is right."""
    want = table_keys(spec, LAYOUT, table).to_pylist()
    keys, rows = sorted_table_keys(spec, LAYOUT, table, columns)
    assert keys.keys(0, len(keys)) == sorted(want), spec
    assert [want[r] for r in rows.tolist()] == sorted(want), spec
    return keys


@pytest.mark.parametrize("increasing", [True, False])
@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_sorted_keys_are_the_keys_of_the_rows_sorted(spec: IndexSpec, increasing: bool) -> None:
    check_sorted(spec, make_table(3000, increasing=increasing))


def test_keys_of_one_width_are_written_straight_into_the_fixed_layout() -> None:
    table = make_table(2000)
    for spec in [*SPECS[:4], SPECS[5]]:  # IDs, numbers, booleans: one width each
        assert isinstance(check_sorted(spec, table), FixedKeys), spec


def test_strings_whose_lengths_only_add_up_to_one_width_are_not_taken_for_one_width() -> None:
    table = make_table(3)
    labels = pa.array(["dd", "a", "ccc"])  # 2 + 1 + 3 = 3 * 2
    check_sorted(IndexSpec("by_label", ("label",)), table.set_column(7, "label", labels))


def test_ids_tied_on_their_first_varying_bytes_are_sorted_by_the_rest() -> None:
    # IDs of one length, the same but for a few late characters: every one ties on its first eight bytes
    # with others (first 8 varying bytes from the 5th character), in runs of several.
    rng = random.Random(5)
    heads = ["".join(rng.choice("abcdefgh") for _ in range(12)) for _ in range(40)]
    ids = sorted({head + "".join(rng.choice("xyz") for _ in range(20)) for head in heads for _ in range(5)})
    rng.shuffle(ids)
    check_sorted(IndexSpec.by_id(), make_table(len(ids), ids=["zzzz" + doc_id for doc_id in ids]))


def test_a_few_tied_ids_among_many() -> None:
    ids = [str(i) for i in new_ids(10002, 5000)]
    twins = [doc_id[:20] + ("0" if doc_id[20] != "0" else "1") + doc_id[21:] for doc_id in ids[:7]]
    check_sorted(IndexSpec.by_id(), make_table(len(ids) + 7, ids=ids + twins))


def test_identical_rows_a_single_row_and_none() -> None:
    same = make_table(50, ids=["k" * 32] * 50)
    check_sorted(IndexSpec.by_id(), same)
    for spec in SPECS:
        check_sorted(spec, make_table(1))
        check_sorted(spec, make_table(0))


@settings(max_examples=40)
@given(st.lists(st.text("ab\x00\x01é", min_size=3, max_size=3), min_size=1, max_size=60))
def test_any_ids_of_one_length_sort_like_their_keys(ids: list[str]) -> None:
    check_sorted(IndexSpec.by_id(), make_table(len(ids), ids=ids, increasing=False))


def test_columns_are_shared_between_indexes_and_threads() -> None:
    table = make_table(4000)
    columns = KeyColumns(LAYOUT, table)
    results: dict[str, Any] = {}

    def build(spec: IndexSpec) -> None:
        results[spec.name] = sorted_table_keys(spec, LAYOUT, table, columns)

    threads = [threading.Thread(target=build, args=(spec,)) for spec in SPECS for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for spec in SPECS:
        keys, rows = results[spec.name]
        alone, alone_rows = sorted_table_keys(spec, LAYOUT, table)
        assert keys.keys(0, len(keys)) == alone.keys(0, len(alone)), spec
        assert rows.tolist() == alone_rows.tolist(), spec


def test_keys_read_from_the_columns_they_need_alone() -> None:
    table = make_table(500)
    names = key_columns(SPECS[:8], LAYOUT)
    assert names == ["_id", "_creationTime", "at", "flag", "label", "n", "project", "status"]
    narrow = table.select(names)
    for spec in SPECS[:8]:
        keys, rows = sorted_table_keys(spec, LAYOUT, narrow)
        alone, alone_rows = sorted_table_keys(spec, LAYOUT, table)
        assert keys.keys(0, len(keys)) == alone.keys(0, len(alone)), spec
        assert rows.tolist() == alone_rows.tolist(), spec
    assert key_columns(SPECS, LAYOUT) is None  # by_tags reads whole documents
    assert key_columns([IndexSpec("by_nested", ("tags.x",))], LAYOUT) is None
    assert key_columns(SPECS[:2], Layout.for_table(None)) is None


def test_sorted_keys_of_one_width_take_little_more_memory_than_the_keys() -> None:
    table = make_table(200_000)
    spec = IndexSpec("by_project_at", ("project", "at"))
    columns = KeyColumns(LAYOUT, table)
    sorted_table_keys(spec, LAYOUT, table.slice(0, 10), KeyColumns(LAYOUT, table.slice(0, 10)))  # warm up
    tracemalloc.start()
    try:
        keys, rows = sorted_table_keys(spec, LAYOUT, table, columns)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = keys.nbytes + rows.nbytes
    # the keys (34 + 9 + 9 + 34 bytes a row) and their rows, plus ranks and slices: not a second copy
    assert kept >= 200_000 * 86
    assert peak < 1.4 * kept, (peak, kept)


def test_creation_times_out_of_order_sort_whole_keys() -> None:
    table = make_table(3000, increasing=False)
    for spec in SPECS[2:5]:
        check_sorted(spec, table)
    rows = np.asarray(sorted_table_keys(IndexSpec.by_creation_time(), LAYOUT, table)[1])
    times = table.column("_creationTime").to_numpy()
    assert bool(np.all(np.diff(times[rows]) > 0))

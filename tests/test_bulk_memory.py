"""Bulk inserts and memory: a batch is built at its exact size, the committing process lets go of its rows in
memory once its side file is written (it maps them from the file), the keys are read from the columns they
need, and the document size rule is computed per row without copies of the columns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import zapnb
from zapnb import sidefiles, v
from zapnb.bulk import (
    BulkRows,
    _arrow_of,
    _id_column,
    batch_from_frame,
    bulk_parts,
    check_frame,
    keys_meanwhile,
)
from zapnb.columnkeys import sorted_table_keys
from zapnb.documents import MAX_DOCUMENT_SIZE, document_size
from zapnb.ids import new_ids
from zapnb.index import IndexSpec
from zapnb.layout import Layout
from zapnb.schema import Schema
from zapnb.sidefiles import side_file_path
from zapnb.transaction import BULK_ROWS

MESSAGES = zapnb.define_table(
    {
        "content": v.string(),
        "role": v.union(v.literal("USER"), v.literal("ASSISTANT")),
        "projectId": v.id("projects"),
        "createdAt": v.optional(v.number()),
        "note": v.nullable(v.string()),
        "blob": v.optional(v.bytes()),
    }
).index("by_projectId_createdAt", ["projectId", "createdAt"])
SCHEMA = zapnb.define_schema({"projects": zapnb.define_table({"name": v.string()}), "messages": MESSAGES})
LAYOUT = Layout.for_table(MESSAGES, table="messages")
SPECS = [IndexSpec.by_id(), IndexSpec.by_creation_time(), IndexSpec("by_p", ("projectId", "createdAt"))]


@pytest.fixture
def db(deployed: Callable[[Schema], zapnb.Database]) -> zapnb.Database:
    return deployed(SCHEMA)


def messages(count: int, projects: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "content": [f"message {k} " + "é" * (k % 7) for k in range(count)],
            "role": ["USER" if k % 3 else "ASSISTANT" for k in range(count)],
            "projectId": [projects[k % len(projects)] for k in range(count)],
            "createdAt": [None if k % 11 == 0 else float(k) for k in range(count)],
            "note": [None if k % 2 else "n\x00" for k in range(count)],
            "blob": [bytes([k % 256]) * (k % 3) if k % 5 else None for k in range(count)],
        },
        schema={
            "content": pl.String,
            "role": pl.String,
            "projectId": pl.String,
            "createdAt": pl.Float64,
            "note": pl.String,
            "blob": pl.Binary,
        },
    )


def mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """The address ranges of this process that map the file at ``path``."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == str(path):
            start, end = (int(part, 16) for part in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


def buffers_of(table: pa.Table) -> list[pa.Buffer]:
    return [b for column in table.columns for chunk in column.chunks for b in chunk.buffers() if b and b.size]


def batch(count: int) -> BulkRows:
    ids = new_ids(10002, count, "messages")
    projects = [str(i) for i in new_ids(10001, 3)]
    columns = check_frame(messages(count, projects), MESSAGES, "messages", {"projects": 10001}, _never)
    assert columns is not None
    times = 1.7e12 + np.arange(count, dtype=np.float64)
    return batch_from_frame("messages", LAYOUT, columns, ids, times)


def _never(doc: dict[str, Any], row: int) -> None:
    raise AssertionError(f"row {row} was checked one by one: {doc}")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps")
def test_the_committing_process_keeps_its_batch_mapped_from_its_side_file(db: zapnb.Database) -> None:
    projects = [str(i) for i in db.insert_many("projects", [{"name": "p"}, {"name": "q"}])]
    frame = messages(3 * BULK_ROWS, projects)
    ids = db.insert_many("messages", frame)
    path = side_file_path(Path(db._engine.path), db._engine.log.last_lsn(), 0)
    rows = db._engine.snapshot().tables["messages"].batches[-1].rows
    ranges = mapped_ranges(path)
    assert ranges, "the side file is not mapped"
    for buffer in buffers_of(rows):
        assert any(start <= buffer.address < end for start, end in ranges), "a buffer is not in the file"
    got = db.query("messages").collect()
    assert got["_id"].to_list() == [str(i) for i in ids]
    assert got.select(frame.columns).equals(frame.with_columns(pl.col("role").cast(got["role"].dtype)))


def test_keys_are_built_once_each_side_file_is_written_from_the_columns_they_read(tmp_path: Path) -> None:
    first, second = batch(3000), batch(2000)
    second.table = "other"
    rows_before = [first.rows, second.rows]
    parts = bulk_parts([first, second])
    with (
        keys_meanwhile(parts, lambda table: SPECS) as (built, written),
        sidefiles.pending(tmp_path, [(p.table, p.rows) for p in parts], written) as files,
    ):  # as the engine does
        built()
    for part, kept, file, before in zip(parts, [first, second], files, rows_before, strict=True):
        assert part.rows.equals(before)
        assert kept.rows.equals(before)
        ranges = mapped_ranges(file.path)
        for rows in (part.rows, kept.rows):  # the part, and the batch it was made of, hold the mapped rows
            assert all(any(a <= b.address < z for a, z in ranges) for b in buffers_of(rows))
        for spec in SPECS:
            keys, order = part.keys[spec.name]
            want, want_order = sorted_table_keys(spec, LAYOUT, before)
            assert keys.keys(0, len(keys)) == want.keys(0, len(want))
            assert order.tolist() == want_order.tolist()


def test_keys_are_built_all_the_same_when_the_files_are_written_first(tmp_path: Path) -> None:
    parts = bulk_parts([batch(1500)])
    rows = parts[0].rows
    pending = sidefiles.pending(tmp_path, [(p.table, p.rows) for p in parts])  # not told of the files
    with pending, keys_meanwhile(parts, lambda table: SPECS) as (built, _):
        built()
    assert parts[0].rows is rows  # no file was handed over: the rows stay in memory
    for spec in SPECS:
        want, want_order = sorted_table_keys(spec, LAYOUT, rows)
        keys, order = parts[0].keys[spec.name]
        assert keys.keys(0, len(keys)) == want.keys(0, len(want))
        assert order.tolist() == want_order.tolist()


def test_pending_tells_of_each_file_with_its_rows_mapped(tmp_path: Path) -> None:
    first, second = batch(10).rows, batch(20).rows
    seen: list[tuple[int, pa.Table | None]] = []
    with sidefiles.pending(tmp_path, [("messages", first), ("messages", second)], lambda *a: seen.append(a)):
        assert [part for part, _ in seen] == [0, 1]
    for (_, mapped), rows in zip(seen, [first, second], strict=True):
        assert mapped is not None
        assert mapped.equals(rows)
        assert mapped is not rows


def test_the_batch_holds_exactly_the_checked_values_at_their_size() -> None:
    made = batch(70_000)  # more rows than one slice
    frame = messages(70_000, ["x"])
    rows = made.rows
    assert rows.schema.equals(LAYOUT.arrow_schema, check_metadata=True)
    for name in ("content", "note", "blob"):
        assert rows.column(name).to_pylist() == frame[name].to_list(), name
    assert rows.column("_id").to_pylist() == [str(i) for i in made.ids]
    for name in ("content", "note", "blob", "_id"):
        array = rows.column(name).combine_chunks()
        values = [x.encode() if isinstance(x, str) else x for x in array.to_pylist() if x is not None]
        assert array.buffers()[2].size == sum(map(len, values)), name


def test_strings_bytes_and_ids_as_arrow() -> None:
    strings = pl.Series("s", ["", None, "é\x00", "z" * 100, None], pl.String)
    assert _arrow_of(strings.to_frame()).column("s").to_pylist() == strings.to_list()
    assert _arrow_of(strings.to_frame()).column("s").type == pa.string()
    binary = pl.Series("b", [b"", None, b"\x00\x01"], pl.Binary)
    assert _arrow_of(binary.to_frame()).column("b").to_pylist() == binary.to_list()
    assert _arrow_of(binary.to_frame()).column("b").type == pa.binary()
    assert _arrow_of(pl.Series("s", [], pl.String).to_frame()).column("s").to_pylist() == []
    ids = new_ids(10001, 70_000, "projects")
    column = _id_column(ids)
    assert column.type == pa.string()
    assert column.to_pylist() == [str(i) for i in ids]
    assert _id_column([]).to_pylist() == []


class _CheckedError(Exception):
    def __init__(self, row: int) -> None:
        super().__init__(row)
        self.row = row


def _check_row(doc: dict[str, Any], row: int) -> None:
    raise _CheckedError(row)


@pytest.mark.parametrize("over", [0, 1])
def test_the_size_rule_counts_what_a_document_counts(over: int) -> None:
    frame = messages(40, [str(new_ids(10001, 1)[0])])
    row = 17
    doc = {k: x for k, x in frame.row(row, named=True).items() if x is not None or k == "note"}
    room = MAX_DOCUMENT_SIZE - document_size({**doc, "content": ""})
    content = "é" * (room // 2) + "a" * (room % 2 + over)  # two bytes a character, then one
    assert document_size({**doc, "content": content}) == MAX_DOCUMENT_SIZE + over
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(content)).otherwise("content").alias("content")
    )
    if over:
        with pytest.raises(_CheckedError) as checked:
            check_frame(frame, MESSAGES, "messages", {"projects": 10001}, _check_row)
        assert checked.value.row == row
    else:
        assert check_frame(frame, MESSAGES, "messages", {"projects": 10001}, _check_row) is not None

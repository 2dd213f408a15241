"""Storage: Lance versions that carry their LSN, incremental commits, damage, base files and fsyncs."""

from __future__ import annotations

import math
import os
import struct
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import lance
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zapnb import define_table, storage, v
from zapnb.errors import CorruptionError, ZapWarning
from zapnb.examples.zapdev import MESSAGE_ROLES, MESSAGE_STATUSES, MESSAGE_TYPES
from zapnb.examples.zapdev import schema as zapdev
from zapnb.ids import Id
from zapnb.layout import Layout
from zapnb.storage import (
    BaseFile,
    atomic_write_bytes,
    cleanup_versions,
    fsync_tree,
    read_base,
    read_table_version,
    release_pages,
    table_path,
    table_versions,
    write_base,
    write_base_batches,
    write_table_version,
)

MESSAGES = Layout.for_table(zapdev.tables["messages"], table="messages")
PROJECT = Id.encode(10001, bytes(16), "projects")
NEG_NAN = struct.unpack("<d", bytes.fromhex("000000000000f8ff"))[0]


def message(i: int, content: str = "hello") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": Id.encode(10002, i.to_bytes(16, "big"), "messages"),
        "_creationTime": 1.7e12 + i,
        "content": f"{content} {i}",
        "role": MESSAGE_ROLES[i % 2],
        "type": MESSAGE_TYPES[i % 3],
        "status": MESSAGE_STATUSES[i % 3],
        "projectId": PROJECT,
    }
    if i % 4:
        doc["createdAt"] = float(i)
    return doc


def messages(rows: range, content: str = "hello") -> pa.Table:
    return MESSAGES.to_arrow([message(i, content) for i in rows])


def documents(table: pa.Table) -> list[dict[str, Any]]:
    """The documents of a table in ``_id`` order (Lance returns rows in fragment order)."""
    return sorted(MESSAGES.to_documents(table), key=lambda doc: str(doc["_id"]))


def operation(data: Path, version: int) -> str:
    transaction = lance.dataset(str(table_path(data, "messages"))).read_transaction(version)
    assert transaction is not None
    return type(transaction.operation).__name__


def ids(rows: range) -> list[str]:
    return [str(message(i)["_id"]) for i in rows]


# --- versions and their LSN ---------------------------------------------------------------------------------


def test_each_version_records_the_lsn_of_the_table_it_holds(tmp_path: Path) -> None:
    for lsn, rows in ((10, range(3)), (20, range(5)), (30, range(2))):
        write_table_version(tmp_path, "messages", messages(rows), lsn=lsn)
    assert [(v.version, v.lsn) for v in table_versions(tmp_path, "messages")] == [(1, 10), (2, 20), (3, 30)]
    table, lsn = read_table_version(tmp_path, "messages", version=2)
    assert (lsn, documents(table)) == (20, documents(messages(range(5))))
    table, lsn = read_table_version(tmp_path, "messages")
    assert (lsn, table.num_rows) == (30, 2)
    assert table_versions(tmp_path, "missing") == []


def test_old_versions_are_cleaned_up_keeping_the_newest_two_and_the_retention_window(tmp_path: Path) -> None:
    for lsn in range(1, 6):
        write_table_version(tmp_path, "messages", messages(range(lsn)), lsn=lsn)
    assert cleanup_versions(tmp_path, "messages") == 0  # all younger than the 30-day window
    assert cleanup_versions(tmp_path, "messages", older_than=timedelta(0)) == 3
    assert [(v.version, v.lsn) for v in table_versions(tmp_path, "messages")] == [(4, 4), (5, 5)]
    table, lsn = read_table_version(tmp_path, "messages", version=4)  # the fallback version is still whole
    assert (lsn, documents(table)) == (4, documents(messages(range(4))))
    assert cleanup_versions(tmp_path, "missing") == 0


def test_checkpoints_clean_up_every_few_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "RETENTION", timedelta(0))  # as if every version were a month old
    for lsn in range(1, storage.CLEANUP_EVERY + 2):
        write_table_version(tmp_path, "messages", messages(range(2)), lsn=lsn)
    versions = [v.version for v in table_versions(tmp_path, "messages")]
    assert versions == [storage.CLEANUP_EVERY - 1, storage.CLEANUP_EVERY, storage.CLEANUP_EVERY + 1]


def test_other_tools_read_the_typed_columns(tmp_path: Path) -> None:
    write_table_version(tmp_path, "messages", messages(range(20)), lsn=1)
    dataset = lance.dataset(str(table_path(tmp_path, "messages")))
    assert dataset.to_table().schema.equals(MESSAGES.arrow_schema, check_metadata=True)
    frame = pl.scan_pyarrow_dataset(dataset).filter(pl.col("role") == "USER").collect()
    assert frame.height == 10
    assert frame.schema["createdAt"] == pl.Float64
    assert frame.schema["projectId"] == pl.String


def test_an_empty_table_keeps_its_typed_schema(tmp_path: Path) -> None:
    write_table_version(tmp_path, "messages", messages(range(0)), lsn=1)
    table, lsn = read_table_version(tmp_path, "messages")
    assert (table.num_rows, lsn) == (0, 1)
    assert table.schema.equals(MESSAGES.arrow_schema, check_metadata=True)


# --- full and incremental commits ---------------------------------------------------------------------------


def test_few_changes_make_an_incremental_commit(tmp_path: Path) -> None:
    write_table_version(tmp_path, "messages", messages(range(200)), lsn=1)
    docs = [message(i, "edited" if i < 5 else "hello") for i in range(2, 203)]  # 0, 1 deleted; 200-202 new
    changed = ids(range(2, 5)) + ids(range(200, 203))
    version = write_table_version(
        tmp_path, "messages", MESSAGES.to_arrow(docs), lsn=2, changed_ids=changed, deleted_ids=ids(range(2)),
        since_lsn=1,
    )  # fmt: skip
    assert operation(tmp_path, version) == "Update"
    table, lsn = read_table_version(tmp_path, "messages")
    assert lsn == 2
    assert documents(table) == sorted(docs, key=lambda doc: str(doc["_id"]))


@pytest.mark.parametrize(
    ("since_lsn", "changed", "deleted", "expected"),
    [
        (None, range(3), range(0), "Overwrite"),  # the base of the changes is not known
        (0, range(3), range(0), "Overwrite"),  # the newest version is not the base of the changes
        (1, range(20), range(0), "Overwrite"),  # more than a tenth of the rows
        (1, range(3), range(3, 4), "Overwrite"),  # a deleted row is still in the table: the lists are wrong
        (1, range(200, 201), range(0), "Overwrite"),  # a changed row is not in the table: the lists are wrong
        (1, range(0), range(0), "UpdateConfig"),  # nothing changed: a version that records the LSN
    ],
)
def test_the_kind_of_commit(
    tmp_path: Path, since_lsn: int | None, changed: range, deleted: range, expected: str
) -> None:
    write_table_version(tmp_path, "messages", messages(range(100)), lsn=1)
    new = messages(range(100), "edited" if len(changed) else "hello")
    version = write_table_version(
        tmp_path,
        "messages",
        new,
        lsn=2,
        changed_ids=ids(changed),
        deleted_ids=ids(deleted),
        since_lsn=since_lsn,
    )
    assert operation(tmp_path, version) == expected
    table, lsn = read_table_version(tmp_path, "messages")
    assert (lsn, documents(table)) == (2, documents(new))


def test_a_new_layout_overwrites_the_table(tmp_path: Path) -> None:
    write_table_version(tmp_path, "messages", messages(range(10)), lsn=1)
    generic = Layout.for_table(None).to_arrow([message(i) for i in range(10)])
    version = write_table_version(tmp_path, "messages", generic, lsn=2, changed_ids=[], since_lsn=1)
    assert operation(tmp_path, version) == "Overwrite"
    assert read_table_version(tmp_path, "messages")[0].schema.names == ["_id", "_creationTime", "_json"]


def test_many_fragments_are_compacted_by_a_full_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("zapnb.storage.MAX_FRAGMENTS", 3)
    write_table_version(tmp_path, "messages", messages(range(100)), lsn=1)
    kinds = []
    for step in range(1, 5):
        new, changed = messages(range(100 + step)), ids(range(99 + step, 100 + step))
        version = write_table_version(
            tmp_path, "messages", new, lsn=step + 1, changed_ids=changed, since_lsn=step
        )
        kinds.append(operation(tmp_path, version))
    assert kinds == ["Update", "Update", "Overwrite", "Update"]
    assert documents(read_table_version(tmp_path, "messages")[0]) == documents(messages(range(104)))


RICH = define_table(
    {
        "s": v.string(),
        "n": v.number(),
        "i": v.optional(v.int64()),
        "flag": v.nullable(v.boolean()),
        "raw": v.optional(v.bytes()),
        "enum": v.union(v.literal("a"), v.literal("b")),
        "p": v.id("projects"),
        "tags": v.array(v.nullable(v.string())),
        "o": v.optional(v.object({"x": v.optional(v.number()), "y": v.nullable(v.id("projects"))})),
        "any": v.optional(v.any()),
        "both": v.optional(v.nullable(v.number())),
        "mixed": v.union(v.int64(), v.number()),
        "rec": v.record(v.string(), v.bytes()),
    }
)
floats = st.one_of(st.floats(), st.sampled_from([-0.0, NEG_NAN, math.inf]))
rich_fields = st.fixed_dictionaries(
    {
        "s": st.text(max_size=5),
        "n": floats,
        "flag": st.one_of(st.none(), st.booleans()),
        "enum": st.sampled_from(["a", "b"]),
        "p": st.just(PROJECT),
        "tags": st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=3),
        "mixed": st.one_of(st.integers(-(2**63), 2**63 - 1), floats),
        "rec": st.dictionaries(st.sampled_from(["k", "l"]), st.binary(max_size=3)),
    },
    optional={
        "i": st.integers(-(2**63), 2**63 - 1),
        "raw": st.binary(max_size=3),
        "o": st.fixed_dictionaries({"y": st.one_of(st.none(), st.just(PROJECT))}, optional={"x": floats}),
        "any": st.one_of(st.none(), st.integers(-9, 9), floats, st.lists(st.text(max_size=2), max_size=2)),
        "both": st.one_of(st.none(), floats),
    },
)


@given(st.lists(rich_fields, max_size=6))
@settings(max_examples=40)
def test_documents_survive_lance_and_base_files_exactly(
    tmp_path_factory: pytest.TempPathFactory, raw: list[Any]
) -> None:
    data = tmp_path_factory.mktemp("data")
    docs = [
        {
            "_id": Id.encode(10003, i.to_bytes(16, "big"), "rich"),
            "_creationTime": float(i),
            **RICH.validate_document(f),
        }
        for i, f in enumerate(raw)
    ]
    layout = Layout.for_table(RICH, table="rich")
    write_table_version(data, "rich", layout.to_arrow(docs), lsn=1)
    write_base(data / "base" / "rich-1.arrow", layout.to_arrow(docs))
    from_lance = sorted(
        layout.to_documents(read_table_version(data, "rich")[0]), key=lambda d: d["_creationTime"]
    )
    from_base = layout.to_documents(read_base(data / "base" / "rich-1.arrow"))
    for found in (from_lance, from_base):
        assert [_bits(doc) for doc in found] == [_bits(doc) for doc in docs]


def _bits(value: Any) -> Any:
    """``value`` with floats as their bits and kinds spelled out, so ``==`` compares exactly."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, dict):
        return {key: _bits(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_bits(item) for item in value]
    if isinstance(value, Id):
        return ("id", str(value), value.table)
    return (type(value).__name__, value)


# --- damage -------------------------------------------------------------------------------------------------


def newest_manifest(data: Path) -> Path:
    versions = table_path(data, "messages") / "_versions"
    return min(versions.glob("*.manifest"))  # v2 names count down: the smallest name is the newest version


def test_an_empty_newest_manifest_falls_back_to_the_version_before(tmp_path: Path) -> None:
    write_table_version(tmp_path, "messages", messages(range(3)), lsn=1)
    write_table_version(tmp_path, "messages", messages(range(5)), lsn=2)
    newest_manifest(tmp_path).write_bytes(b"")  # what a hard stop of the machine has left behind
    with pytest.warns(ZapWarning, match="damaged"):
        table, lsn = read_table_version(tmp_path, "messages")
    assert (lsn, table.num_rows) == (1, 3)
    assert [v.lsn for v in table_versions(tmp_path, "messages")] == [1]
    with pytest.raises(CorruptionError) as info:
        read_table_version(tmp_path, "messages", version=2)
    assert info.value.file == str(newest_manifest(tmp_path))
    with pytest.warns(ZapWarning, match="moved"):
        version = write_table_version(
            tmp_path, "messages", messages(range(6)), lsn=3, changed_ids=ids(range(5, 6)), since_lsn=2
        )
    assert operation(tmp_path, version) == "Overwrite"  # the newest readable version is not at LSN 2
    assert list((tmp_path / "tables" / "messages.damaged").iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table, lsn = read_table_version(tmp_path, "messages")
    assert (lsn, table.num_rows) == (3, 6)


def test_a_torn_manifest_or_an_empty_data_file_is_damage_too(tmp_path: Path) -> None:
    write_table_version(tmp_path, "messages", messages(range(3)), lsn=1)
    write_table_version(tmp_path, "messages", messages(range(5)), lsn=2)
    manifest = newest_manifest(tmp_path)
    manifest.write_bytes(manifest.read_bytes()[:-7])
    with pytest.warns(ZapWarning):
        assert read_table_version(tmp_path, "messages")[1] == 1
    with pytest.warns(ZapWarning, match="moved"):
        write_table_version(tmp_path, "messages", messages(range(4)), lsn=3)
    dataset = lance.dataset(str(table_path(tmp_path, "messages")))
    data_file = dataset.get_fragments()[0].data_files()[0].path
    (table_path(tmp_path, "messages") / "data" / data_file).write_bytes(b"")
    with pytest.warns(ZapWarning, match="damaged"):
        assert read_table_version(tmp_path, "messages")[1] == 1


def test_no_readable_version_is_a_corruption_error(tmp_path: Path) -> None:
    with pytest.raises(CorruptionError, match="no manifest"):
        read_table_version(tmp_path, "messages")
    write_table_version(tmp_path, "messages", messages(range(3)), lsn=1)
    newest_manifest(tmp_path).write_bytes(b"")
    with pytest.raises(CorruptionError, match="No version"):
        read_table_version(tmp_path, "messages")
    with pytest.warns(ZapWarning, match="moved"):
        assert write_table_version(tmp_path, "messages", messages(range(2)), lsn=2) == 1
    assert read_table_version(tmp_path, "messages")[1] == 2


# --- base files ---------------------------------------------------------------------------------------------


def test_a_base_file_reads_back_memory_mapped(tmp_path: Path) -> None:
    table = messages(range(70_000))
    written = write_base(tmp_path / "base" / "messages-1.arrow", table)
    assert (written.rows, written.size) == (70_000, (tmp_path / "base" / "messages-1.arrow").stat().st_size)
    assert BaseFile.from_json(written.to_json()) == written
    allocated = pa.total_allocated_bytes()
    back = read_base(written.path, expected=written)
    assert pa.total_allocated_bytes() == allocated  # the buffers are the mapped file, not copies
    assert back.equals(table)
    assert back.column(0).num_chunks == 2  # record batches of 65,536 rows
    assert [p.name for p in (tmp_path / "base").iterdir()] == ["messages-1.arrow"]  # no temporary left
    write_base(written.path, messages(range(0)))
    assert read_base(written.path).schema.equals(MESSAGES.arrow_schema, check_metadata=True)


def _resident_file_mb() -> float:
    """How much of this process's resident memory is mapped file pages (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    pytest.skip("this system does not report resident file pages")


def test_a_base_file_written_batch_by_batch_is_the_same_file(tmp_path: Path) -> None:
    table = messages(range(70_000))
    whole = write_base(tmp_path / "whole.arrow", table)
    batches = write_base_batches(
        tmp_path / "batches.arrow", table.schema, iter(table.to_batches(max_chunksize=999))
    )
    assert batches.rows == whole.rows == 70_000
    assert read_base(batches.path, expected=batches).equals(table)
    assert read_base(batches.path).column(0).num_chunks == 71  # the batches as given, none above 65,536 rows


def test_reading_a_whole_base_file_leaves_little_of_it_resident(tmp_path: Path) -> None:
    table = messages(range(200_000))
    written = write_base(tmp_path / "base.arrow", table)
    size_mb = written.size / 2**20
    before = _resident_file_mb()
    back = read_base(written.path, expected=written)  # checks every byte
    assert _resident_file_mb() - before < size_mb / 4
    back.validate(full=True)  # reads every byte again through the mapping
    assert _resident_file_mb() - before > size_mb / 2
    release_pages()
    assert _resident_file_mb() - before < size_mb / 4
    assert back.equals(table)  # the pages map again as they are read


@pytest.mark.parametrize("cut", [0, 5, 100, -1, -7, -40])
def test_a_cut_base_file_is_a_corruption_error(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "messages.arrow"
    write_base(path, messages(range(50)))
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(CorruptionError) as info:
        read_base(path)
    assert info.value.file == str(path)
    assert 0 <= info.value.offset <= len(data)


def test_a_changed_byte_is_found_with_the_checksums(tmp_path: Path) -> None:
    path = tmp_path / "messages.arrow"
    written = write_base(path, messages(range(50)))
    data = bytearray(path.read_bytes())
    position = data.find(b"hello 17")
    data[position] = ord("j")
    path.write_bytes(bytes(data))
    assert read_base(path).column("content")[17].as_py() == "jello 17"  # the structure is intact
    with pytest.raises(CorruptionError) as info:
        read_base(path, expected=written)
    assert info.value.offset == 0  # the first 8 MiB block


def test_a_missing_base_file_is_a_corruption_error(tmp_path: Path) -> None:
    with pytest.raises(CorruptionError, match=r"missing\.arrow"):
        read_base(tmp_path / "missing.arrow")


# --- durable files ------------------------------------------------------------------------------------------


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> set[tuple[int, int]]:
    """The (device, inode) of every file and directory fsynced while the test runs."""
    seen: set[tuple[int, int]] = set()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        status = os.fstat(fd)
        seen.add((status.st_dev, status.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def inodes(root: Path) -> dict[Path, tuple[int, int]]:
    found = {root: (root.stat().st_dev, root.stat().st_ino)}
    for path in root.rglob("*"):
        found[path] = (path.stat().st_dev, path.stat().st_ino)
    return found


def test_a_new_version_is_durable_before_it_is_returned(tmp_path: Path, synced: set[tuple[int, int]]) -> None:
    write_table_version(tmp_path, "messages", messages(range(100)), lsn=1)
    first = inodes(tmp_path)
    assert set(first.values()) <= synced
    synced.clear()
    write_table_version(
        tmp_path, "messages", messages(range(101)), lsn=2, changed_ids=ids(range(100, 101)), since_lsn=1
    )
    dataset = table_path(tmp_path, "messages")
    new = {
        path: inode for path, inode in inodes(dataset.parent).items() if path not in first or path.is_dir()
    }
    assert set(new.values()) <= synced
    assert any(path.suffix == ".manifest" for path in new)


def test_atomic_write_bytes_and_fsync_tree(tmp_path: Path, synced: set[tuple[int, int]]) -> None:
    target = tmp_path / "checkpoint.json"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]
    assert inodes(tmp_path)[target] in synced
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "file").write_bytes(b"x")
    synced.clear()
    fsync_tree([tmp_path / "sub", target])
    assert set(inodes(tmp_path / "sub").values()) | {inodes(tmp_path)[target]} <= synced


def test_opening_a_base_file_leaves_little_of_it_resident(tmp_path: Path) -> None:
    """Reading a base file's batch headers maps whole large folios of the page cache (files written 16 MB at
    a time are cached in 2 MB folios): read_base lets them go, as it does after checking every byte."""
    table = messages(range(200_000))
    written = write_base_batches(
        tmp_path / "base.arrow", table.schema, iter(table.to_batches(max_chunksize=2_000))
    )
    size_mb = written.size / 2**20
    before = _resident_file_mb()
    back = read_base(written.path)
    assert _resident_file_mb() - before < size_mb / 8
    assert back.num_rows == 200_000

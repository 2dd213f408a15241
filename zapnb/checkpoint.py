"""Checkpoints: the tables as of one LSN, written so that opening is a memory map and the log can shrink.

Responsibilities:

- write a checkpoint of the tables changed since the last one: per table an Arrow IPC base file, the
  index base arrays and a Lance version (the table of record, carrying the LSN), then ``checkpoint.json``
  naming them, replaced atomically;
- load a checkpoint into :class:`~zapnb.tablestate.TableState` objects (memory maps, no scans) and carry the
  versions and bulk batches applied since over to them.

A table's new base is its old base (with the batches of bulk inserts applied to it since) without the rows
rewritten since, followed by the documents written since (columnar: an Arrow filter and concatenation, no
per-row Python), and each index is merged the same way, its bulk runs folded in
(:meth:`zapnb.index.IndexData.merged`). A table whose layout changed (a deploy) is rewritten row by row. Only
one process checkpoints at a time (a non-blocking ``flock`` on ``checkpoint.lock``); every process, this one
included, then loads the new files and swaps its states.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from zapnb.catalog import highest_number
from zapnb.changes import ChangeSet, Write
from zapnb.errors import CorruptionError
from zapnb.faults import kill_point
from zapnb.index import IndexData, IndexSpec, PositionsFor
from zapnb.indexbuild import index_label
from zapnb.layout import Layout
from zapnb.schema import Schema, TableDefinition, stored_definition
from zapnb.storage import (
    INCREMENTAL_MAX_FRACTION,
    BaseFile,
    atomic_write_bytes,
    fsync_tree,
    read_base,
    read_table_version,
    release_pages,
    released,
    table_path,
    write_base_batches,
    write_table_version,
)
from zapnb.tablestate import Batch, TableState

Document: TypeAlias = Mapping[str, Any]

__all__ = [
    "CHECKPOINT_FILE",
    "CheckpointInfo",
    "carry_over",
    "carry_recent",
    "load_table",
    "read_info",
    "rebuild_table",
    "remove_deleted_datasets",
    "remove_unreferenced",
    "write_checkpoint",
]

CHECKPOINT_FILE = "checkpoint.json"
LOCK_FILE = "checkpoint.lock"


@dataclass(frozen=True)
class CheckpointInfo:
    """What ``checkpoint.json`` says: the LSN, the one before, the catalog then, and each table's files.

    ``highest`` is the highest number a table ever had by then, deleted tables' included (a new table's
    number is above it: :class:`~zapnb.catalog.TableNumbers`); files written before it was recorded have
    none, and the highest of ``numbers`` stands for it.
    """

    lsn: int
    previous_lsn: int
    schema: Mapping[str, Any] | None
    numbers: Mapping[str, int]
    tables: Mapping[str, Mapping[str, Any]]
    highest: int = 0

    def to_json(self) -> bytes:
        """The file's bytes."""
        body = {
            "format": 1,
            "lsn": self.lsn,
            "previous_lsn": self.previous_lsn,
            "schema": self.schema,
            "numbers": dict(self.numbers),
            "highest": self.highest,
            "tables": {name: dict(files) for name, files in self.tables.items()},
        }
        return json.dumps(body).encode()


def read_info(root: Path) -> CheckpointInfo | None:
    """The last checkpoint's description, or ``None`` if the directory has never been checkpointed."""
    path = root / CHECKPOINT_FILE
    try:
        body = json.loads(path.read_bytes())
        return CheckpointInfo(
            lsn=int(body["lsn"]),
            previous_lsn=int(body["previous_lsn"]),
            schema=body["schema"],
            numbers=dict(body["numbers"]),
            tables=dict(body["tables"]),
            highest=int(body.get("highest", 0)),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptionError(
            f"{path} is damaged ({err}). Restore the data directory from a backup.", file=str(path), offset=0
        ) from err


@contextmanager
def checkpoint_lock(root: Path) -> Iterator[bool]:
    """Hold the checkpoint lock if nobody else does; yields whether it was taken."""
    descriptor = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


# --- loading ------------------------------------------------------------------------------------------------


def load_table(
    root: Path,
    name: str,
    entry: Mapping[str, Any],
    definition: TableDefinition | None,
    lsn: int,
    *,
    verify: bool = True,
    declared: TableDefinition | None = None,
) -> TableState:
    """A table's state as the checkpoint at ``lsn`` left it: its base mapped, its indexes loaded.

    The table may have been written by an earlier checkpoint (nothing changed it since); its state is the
    same at ``lsn``. With ``verify`` every byte of the base is checked against its checksums (reading all of
    it); without, only its structure (for files this process has just written). ``definition`` gives the
    layout the base is stored in; a base in the layout of ``declared`` instead (the table's declared
    definition: how checkpoints stored a table of a schema without validation before) is read in that one,
    and rewritten by the next checkpoint.
    """
    expected = BaseFile.from_json(entry["base"]) if verify else None
    base = read_base(root / entry["base"]["path"], expected=expected)
    layout = Layout.for_table(definition, table=name)
    if declared is not None and not base.schema.equals(layout.arrow_schema):
        older = Layout.for_table(declared, table=name)
        layout = older if base.schema.equals(older.arrow_schema) else layout
    indexes: dict[str, tuple[IndexSpec, IndexData]] = {}
    for index_name, index in entry["indexes"].items():
        spec = IndexSpec(index_name, tuple(index["fields"]), index["kind"])
        label = index_label(name, spec)
        indexes[index_name] = (spec, IndexData.load(root / "indexes", index["file"], label=label))
    state = TableState(
        name=name,
        number=int(entry["number"]),
        indexes=indexes,
        base_lsn=lsn,
        base_rows=base.num_rows,
        read_row=layout.row_reader(base),
    )
    state.base = base
    return state


def rebuild_table(
    root: Path, name: str, entry: Mapping[str, Any], definition: TableDefinition | None, checkpoint_lsn: int
) -> TableState:
    """A table's state rebuilt from its newest readable Lance version, for when its base file is damaged.

    Slower than :func:`load_table` (every index is rebuilt from the documents). The state's ``base_lsn`` is
    the checkpoint's LSN when that version is the one ``entry`` names (the table did not change between them,
    however old it is), else the LSN the version holds, which may be older: replay the log from there.
    """
    layout = Layout.for_table(definition, table=name)
    table, lsn = read_table_version(root, name)
    if lsn == int(entry["lsn"]):
        lsn = max(lsn, checkpoint_lsn)
    table = table.select(layout.arrow_schema.names).cast(layout.arrow_schema)
    docs = layout.to_documents(table)
    positions = list(range(len(docs)))
    indexes: dict[str, tuple[IndexSpec, IndexData]] = {}
    for index_name, index in entry["indexes"].items():
        spec = IndexSpec(index_name, tuple(index["fields"]), index["kind"])
        keys = [spec.key_for(d) for d in docs]
        indexes[index_name] = (spec, IndexData.build(keys, positions, lsn=lsn, name=index_label(name, spec)))
    state = TableState(name, int(entry["number"]), indexes, lsn, table.num_rows, layout.row_reader(table))
    state.base, state.rebuilt = table, True
    return state


def carry_over(old: TableState, new: TableState, *, until: int | None = None) -> TableState:
    """Apply to ``new`` (a state loaded at its base LSN) every version and batch ``old`` applied after that
    LSN (and up to ``until``, if given), in LSN order (within one commit, its documents before its batch, as
    the engine applied them).

    ``old`` may still be written to meanwhile when ``until`` is at most its last fully applied LSN: versions
    and batches after ``until`` are left for :func:`carry_recent`.
    """
    after = new.base_lsn
    versions = sorted(
        (lsn, doc_id, doc)
        for doc_id, history in list(old.overlay.items())  # one step: the writer may add to it meanwhile
        for lsn, doc in history
        if after < lsn and (until is None or lsn <= until)
    )
    batches = [
        batch for batch in list(old.batches) if after < batch.lsn and (until is None or batch.lsn <= until)
    ]
    return _replay(new, old.name, versions, batches)


def carry_recent(old: TableState, new: TableState, recent: Iterable[ChangeSet], after: int) -> TableState:
    """Apply to ``new`` the versions and batches ``old`` applied after ``after``, taking the versions from the
    engine's ``recent`` change sets (a few commits) instead of searching ``old``'s whole overlay."""
    versions = [
        (changes.lsn, change.id, change.new)
        for changes in recent
        if changes.lsn > after
        for change in changes.changes
        if change.table == old.name
    ]
    versions.sort(key=lambda version: version[0])  # stable: a commit's documents keep their order
    batches = [batch for batch in old.batches if batch.lsn > after]
    return _replay(new, old.name, versions, batches)


def _replay(
    new: TableState, table: str, versions: list[tuple[int, str, Document | None]], batches: list[Batch]
) -> TableState:
    for lsn, doc_id, doc in versions:
        while batches and batches[0].lsn < lsn:
            _carry_batch(new, batches.pop(0))
        new.apply(lsn, Write(table, doc_id, doc))
    for batch in batches:
        _carry_batch(new, batch)
    return new


def _carry_batch(new: TableState, batch: Batch) -> None:
    if new.accepts(batch.rows):
        new.apply_bulk(batch.lsn, batch.rows, batch.layout, batch.keys)
        return
    for doc in batch.layout.to_documents(batch.rows):  # a table rewritten in a new layout since: by document
        new.apply(batch.lsn, Write(new.name, str(doc["_id"]), doc))


# --- writing ------------------------------------------------------------------------------------------------


def write_checkpoint(
    root: Path, lsn: int, tables: Mapping[str, TableState], schema: Schema | None, numbers: Mapping[str, int]
) -> CheckpointInfo | None:
    """Checkpoint every table changed since its base, as of ``lsn`` (all states must have applied ``lsn``).

    ``numbers`` is the catalog's at ``lsn``: a table of the previous checkpoint that it no longer numbers (or
    numbers anew: deleted, then created again) is left out, and its files and Lance dataset are removed
    (:func:`remove_unreferenced`, :func:`remove_deleted_datasets`). Returns the new checkpoint, or ``None``
    if another process is checkpointing right now or the last checkpoint is already as new (and none of its
    files was found damaged).
    """
    with checkpoint_lock(root) as taken:
        previous = read_info(root) if taken else None
        rebuilt = any(state.rebuilt for state in tables.values())  # damaged files to write anew
        if not taken or (previous is not None and previous.lsn >= lsn and not rebuilt):
            return None
        entries = _kept_entries(previous, numbers)
        renumbered = [n for n in (previous.tables if previous else ()) if n in numbers and n not in entries]
        _remove_datasets(root, renumbered)  # deleted and created again: the new dataset starts afresh
        for name, state in tables.items():
            definition = stored_definition(schema, name)
            entry = entries.get(name)
            if (
                entry is None
                or state.changed_since_base()
                or state.rebuilt
                or _reshaped(state, entry, definition)
            ):
                since = None if entry is None else int(entry["lsn"])
                entries[name] = write_table(root, state, definition, lsn, since)
        info = CheckpointInfo(
            lsn=lsn,
            previous_lsn=_previous_lsn(previous, lsn),
            schema=None if schema is None else schema.to_json(),
            numbers=dict(numbers),
            tables=entries,
            highest=highest_number(numbers),
        )
        kill_point("checkpoint.before_info_write")
        atomic_write_bytes(root / CHECKPOINT_FILE, info.to_json())
        remove_unreferenced(root, info)
        remove_deleted_datasets(root, info)
        return info


def _kept_entries(
    previous: CheckpointInfo | None, numbers: Mapping[str, int]
) -> dict[str, Mapping[str, Any]]:
    """The previous checkpoint's tables that still exist under the same number (``db.delete_table`` removes
    a table's number; a table created again under its name gets a new one)."""
    if previous is None:
        return {}
    return {name: e for name, e in previous.tables.items() if numbers.get(name) == int(e["number"])}


def _previous_lsn(previous: CheckpointInfo | None, lsn: int) -> int:
    """The LSN of the checkpoint before one at ``lsn`` (the log is kept after it): a checkpoint that only
    rewrites damaged files at the same LSN keeps its predecessor's."""
    if previous is None:
        return 0
    return previous.previous_lsn if previous.lsn == lsn else previous.lsn


def _reshaped(state: TableState, entry: Mapping[str, Any], definition: TableDefinition | None) -> bool:
    """Whether a deploy since ``entry`` was written changed the table's columns or its indexes: its files then
    no longer fit the schema the new checkpoint records, and are rewritten although no document changed."""
    layout = Layout.for_table(definition, table=state.name)
    if state.base is not None and not state.base.schema.equals(layout.arrow_schema):
        return True
    recorded = {name: (list(index["fields"]), index["kind"]) for name, index in entry["indexes"].items()}
    return recorded != {name: (list(spec.fields), spec.kind) for name, (spec, _) in state.indexes.items()}


def remove_unreferenced(root: Path, info: CheckpointInfo) -> list[Path]:
    """Delete base and index files that ``info`` does not name (older checkpoints' files); return them.

    A process that still maps an old file keeps reading it (the file lives on until it is unmapped); the Lance
    datasets keep every version for point-in-time reads.
    """
    keep = {root / entry["base"]["path"] for entry in info.tables.values()}
    keep |= {
        root / "indexes" / f"{index['file']}.zidx"
        for entry in info.tables.values()
        for index in entry["indexes"].values()
    }
    removed = []
    for folder, pattern in (("base", "*.arrow"), ("indexes", "*.zidx")):
        for path in (root / folder).glob(pattern):
            if path not in keep:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def remove_deleted_datasets(root: Path, info: CheckpointInfo) -> list[Path]:
    """Delete the Lance datasets of tables that ``info`` does not name (deleted with ``db.delete_table``);
    return them.

    Called with the checkpoint lock held, after ``info`` was written: a dataset it does not name belongs to a
    deleted table, or to a table whose first checkpoint crashed before naming it (written again in full by
    the next one; the log holds its documents).
    """
    names = [path.name.removesuffix(".lance") for path in (root / "tables").glob("*.lance")]
    return _remove_datasets(root, [name for name in names if name not in info.tables])


def _remove_datasets(root: Path, names: Iterable[str]) -> list[Path]:
    removed = []
    for name in names:
        path = table_path(root, name)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def write_table(
    root: Path, state: TableState, definition: TableDefinition | None, lsn: int, since_lsn: int | None = None
) -> dict[str, Any]:
    """Write one table as of ``lsn`` (base file, index files, Lance version); return its checkpoint entry.

    ``since_lsn`` is the LSN of the table's previous checkpoint: when given, the Lance version is written as
    an incremental commit of the documents changed since, if few changed.
    """
    layout = Layout.for_table(definition, table=state.name)
    new = _new_base(state, layout, lsn)
    path = root / "base" / f"{state.name}-{lsn}.arrow"
    base = write_base_batches(path, layout.arrow_schema, new.batches)
    table = read_base(path)  # mapped: the Lance version is written from it without holding it in memory
    kill_point("checkpoint.after_base_write")
    indexes = {}
    if not (root / "indexes").exists():
        (root / "indexes").mkdir()
        fsync_tree([root / "indexes"])
    positions = _positions(state, new, lsn)
    for index_name, (spec, data) in state.indexes.items():
        file_name = f"{state.name}-{lsn}-{index_name}"
        data.merged(lsn, positions).save(root / "indexes", file_name)
        release_pages()  # the merge read the old index's mapped file whole
        indexes[index_name] = {"fields": list(spec.fields), "kind": spec.kind, "file": file_name}
    kill_point("checkpoint.after_index_write")
    inserted = _batch_ids(state, new, base.rows)
    if new.deleted is not None and since_lsn and inserted is not None:
        version = write_table_version(
            root,
            state.name,
            table,
            lsn=lsn,
            changed_ids=[*new.rows, *inserted],
            deleted_ids=new.deleted,
            since_lsn=since_lsn,
        )
    else:
        version = write_table_version(root, state.name, table, lsn=lsn)
    release_pages()
    kill_point("checkpoint.after_lance_commit")
    base_json = base.to_json()
    base_json["path"] = str(Path(base.path).relative_to(root))
    return {
        "number": state.number,
        "lsn": lsn,
        "base": base_json,
        "lance_version": version,
        "indexes": indexes,
    }


@dataclass(frozen=True)
class _NewBase:
    """A table's new base and how it relates to the old one.

    ``batches`` yields the new base's rows once, a batch at a time; ``old_to_new`` gives each old base row's
    new row (-1 if deleted); ``rows`` the new row of each document written since; ``deleted`` the old base's
    documents deleted since, or ``None`` when every row was rewritten (no old base, or a new layout), so no
    incremental Lance commit applies.
    """

    batches: Iterator[pa.RecordBatch]
    old_to_new: np.ndarray[Any, Any]
    rows: dict[str, int]
    deleted: list[str] | None


def _new_base(state: TableState, layout: Layout, lsn: int) -> _NewBase:
    """The table at ``lsn`` as Arrow: the old base's surviving rows in order, then the rows written since."""
    latest = {doc_id: _latest(history, lsn) for doc_id, history in state.overlay.items()}
    written = {doc_id: doc for doc_id, (seen, doc) in latest.items() if seen and doc is not None}
    keep = np.ones(state.base_rows, dtype=bool)
    moved: dict[int, str] = {}  # old base row -> the document now written after the kept rows (or deleted)
    for doc_id, (seen, _doc) in latest.items():
        position = state.base_position(doc_id, lsn) if seen else -1
        if position >= 0:
            keep[position] = False
            moved[position] = doc_id
    kept = int(keep.sum())
    old_to_new = np.full(state.base_rows, -1, dtype=np.int64)
    old_to_new[keep] = np.arange(kept, dtype=np.int64)
    new_rows = {doc_id: kept + i for i, doc_id in enumerate(written)}
    for position, doc_id in moved.items():
        old_to_new[position] = new_rows.get(doc_id, -1)  # an index key that stayed now points at the new row
    added = layout.to_arrow(list(written.values()))
    old_base = state.base
    if old_base is not None and old_base.schema.equals(layout.arrow_schema):
        deleted = [doc_id for doc_id in moved.values() if doc_id not in new_rows]
        batches = itertools.chain(released(_kept_batches(old_base, keep)), added.to_batches())
        return _NewBase(batches, old_to_new, new_rows, deleted)
    # the layout changed (a deploy): every row is rewritten in the new one
    stay_docs = layout.to_arrow([state.read_row(row) for row in np.flatnonzero(keep).tolist()])
    return _NewBase(iter([*stay_docs.to_batches(), *added.to_batches()]), old_to_new, new_rows, None)


def _kept_batches(old_base: pa.Table, keep: npt.NDArray[np.bool_]) -> Iterator[pa.RecordBatch]:
    """The old base's rows that ``keep`` marks, a batch at a time: a batch that keeps every row is passed on
    as it is (mapped), any other is copied without its dropped rows."""
    start = 0
    for batch in old_base.to_batches():
        mask = keep[start : start + batch.num_rows]
        start += batch.num_rows
        yield batch if mask.all() else batch.filter(pa.array(mask))


def _positions(state: TableState, new: _NewBase, lsn: int) -> PositionsFor:
    """Where the documents of the old base and those written since are in the new base.

    An index entry added since the old base names its document by ID: one written since, or one of the
    old base whose entry was added later (an index deployed since).
    """

    def positions(old_positions: npt.NDArray[np.int64], doc_ids: Sequence[str], /) -> npt.NDArray[np.int64]:
        rows = []
        for doc_id in doc_ids:
            row = new.rows.get(doc_id)
            if row is None:
                position = state.base_position(doc_id, lsn)
                row = int(new.old_to_new[position]) if position >= 0 else -1
            rows.append(row)
        found: npt.NDArray[np.int64] = np.concatenate(
            [new.old_to_new[old_positions], np.array(rows, dtype=np.int64)]
        )
        return found

    return positions


def _batch_ids(state: TableState, new: _NewBase, rows: int) -> list[str] | None:
    """The IDs of the batches' rows that the new base keeps (rows the Lance dataset does not have yet), or
    ``None`` when they are too many for an incremental Lance commit to pay."""
    if not state.batches:
        return []
    start = state.batches[0].start
    if state.base_rows - start > INCREMENTAL_MAX_FRACTION * max(rows, 1):
        return None
    kept = np.flatnonzero(new.old_to_new[start:] >= 0) + start
    found: list[str] = state.base.column("_id").take(pa.array(kept)).to_pylist()
    return [doc_id for doc_id in found if doc_id not in new.rows]


def _latest(history: list[tuple[int, Any]], lsn: int) -> tuple[bool, Any]:
    """The newest version at or before ``lsn``: (whether there is one, the document or ``None``)."""
    for version_lsn, doc in reversed(history):
        if version_lsn <= lsn:
            return True, doc
    return False, None

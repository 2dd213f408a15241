"""What a commit record holds, and its bytes in the commit log.

Responsibilities: the one description of a committed change that every layer shares. The log stores it;
replay and other processes decode it; table state applies it; the conflict check and (later) subscriptions and
monitoring read the :class:`ChangeSet` that applying it yields.

Records are zapnb JSON (:mod:`zapnb.jsonvalues`), so every value round-trips exactly. Three kinds:

- a commit: the wall-clock time and the written documents (a deleted document is written as ``None``);
- a bulk commit: a commit that also inserted rows in bulk, held in side files (:mod:`zapnb.sidefiles`) that
  the record names (:class:`BulkFile`: table, part, rows, size and checksums), not in the record itself;
- a deploy: the schema that became active and the table numbers.

A bulk commit's :class:`ChangeSet` holds its inserts as :class:`BulkChange` parts: per index, the sorted keys
of the new documents, so :meth:`ChangeSet.touches` is a bisection per read range rather than a loop over
documents.

Examples
--------
>>> from zapnb.changes import BulkFile, Commit, Write, decode_record, encode_record
>>> record = Commit(time=1.5, writes=(Write("notes", "id1", {"_id": "id1", "_creationTime": 1.0, "x": 1}),))
>>> decode_record(encode_record(record)) == record
True
>>> bulk = Commit(time=2.0, writes=(), bulk=(BulkFile("notes", 0, rows=1000, size=40960, checksums=(7,)),))
>>> decode_record(encode_record(bulk)) == bulk
True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from zapnb.errors import CorruptionError, InvalidJsonError
from zapnb.jsonvalues import decode_stored_json, encode_json, encode_stored_json

__all__ = [
    "BulkChange",
    "BulkFile",
    "Change",
    "ChangeSet",
    "Commit",
    "Deploy",
    "ReadRange",
    "Record",
    "Write",
    "decode_record",
    "encode_record",
]


@dataclass(frozen=True, slots=True)
class Write:
    """One document written by a commit: its new content, or ``None`` when it was deleted."""

    table: str
    id: str
    doc: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class BulkFile:
    """Rows one commit inserted into ``table`` in bulk, in the side file of its ``part`` (see
    :mod:`zapnb.sidefiles`): how many, the file's size and a CRC-32 per block of it."""

    table: str
    part: int
    rows: int
    size: int
    checksums: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Commit:
    """A committed transaction's writes, in the order they were made, and the tables it created.

    ``tables`` maps each table this commit created (by writing to a table with no number yet) to its
    number. ``bulk`` names the side files of the rows it inserted in bulk (none for most commits).
    """

    time: float
    writes: tuple[Write, ...]
    tables: Mapping[str, int] = field(default_factory=dict)
    bulk: tuple[BulkFile, ...] = ()


@dataclass(frozen=True, slots=True)
class Deploy:
    """A schema becoming active: its JSON description (``None`` for no schema) and every table's number."""

    time: float
    schema: Mapping[str, Any] | None
    tables: Mapping[str, int]


Record = Commit | Deploy


@dataclass(frozen=True, slots=True)
class Change:
    """What applying one :class:`Write` did: the document before and after, and its keys in every index.

    ``touched`` lists ``(index, key)`` for the document's old and new key in every index of its table (a key
    that did not change appears once): a read of an index range that holds any of them saw this document, so
    its result may have changed. Index maintenance itself only needs the keys that moved.
    """

    table: str
    id: str
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None
    touched: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class BulkChange:
    """What applying one table's bulk insert did: ``rows`` new documents, and per index their sorted keys.

    Every key is new (a bulk insert adds documents, it changes none), so these are all the keys it touched.
    ``keys`` maps an index name to an object with ``len``, ``bisect(key)`` and ``keys(start, stop)``
    (a :class:`~zapnb.indexbase.SortedKeys`, shared with the index it was added to).
    """

    table: str
    rows: int
    keys: Mapping[str, Any]

    def touches(self, read: ReadRange) -> bool:
        """Whether a key of these documents falls in ``read``."""
        keys = self.keys.get(read.index) if read.table == self.table else None
        if keys is None or not len(keys):
            return False
        start = 0 if read.lo is None else keys.bisect(read.lo)
        stop = len(keys) if read.hi is None else keys.bisect(read.hi)
        return bool(start < stop)

    def touched_keys(self) -> Iterator[tuple[str, str, bytes]]:
        """Every ``(table, index, key)``, in key order per index."""
        for index, keys in self.keys.items():
            for start in range(0, len(keys), _CHUNK):
                for key in keys.keys(start, min(start + _CHUNK, len(keys))):
                    yield self.table, index, key


_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class ReadRange:
    """A range ``[lo, hi)`` of one index that a transaction read (``None`` is unbounded)."""

    table: str
    index: str
    lo: bytes | None
    hi: bytes | None

    def contains(self, key: bytes) -> bool:
        """Whether ``key`` falls in the range."""
        return (self.lo is None or key >= self.lo) and (self.hi is None or key < self.hi)


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Everything one commit changed, as applied at ``lsn``: what conflict checks and watchers look at.

    ``everything`` marks a change that may affect any read: a deploy (the schema, and with it every result's
    types, changed) or a reload from another process's checkpoint after this process fell behind the log
    (the commits in between were never seen one by one).
    """

    lsn: int
    time: float
    changes: tuple[Change, ...]
    everything: bool = False
    bulk: tuple[BulkChange, ...] = ()

    def touched_keys(self) -> Iterator[tuple[str, str, bytes]]:
        """Every ``(table, index, key)`` this commit touched: old and new keys of each written document."""
        for change in self.changes:
            for index, key in change.touched:
                yield change.table, index, key
        for part in self.bulk:
            yield from part.touched_keys()

    def touches(self, reads: Iterable[ReadRange]) -> ReadRange | None:
        """The first read range that an old or new index key of this commit falls in, or ``None``."""
        ranges = list(reads)
        if self.everything:
            return ranges[0] if ranges else None
        for change in self.changes:
            for index, key in change.touched:
                for read in ranges:
                    if read.table == change.table and read.index == index and read.contains(key):
                        return read
        for read in ranges:
            if any(part.touches(read) for part in self.bulk):
                return read
        return None

    @property
    def weight(self) -> int:
        """How many documents this commit wrote (bulk inserts included)."""
        return len(self.changes) + sum(part.rows for part in self.bulk)


def encode_record(record: Record) -> bytes:
    """The bytes of a record, for :meth:`zapnb.log.CommitLog.append`.

    A commit's documents are stored documents (every write checks its document first), so they are encoded
    without being checked again (:func:`~zapnb.jsonvalues.encode_stored_json`).
    """
    if isinstance(record, Commit):
        body: dict[str, Any] = {
            "kind": "bulk" if record.bulk else "commit",
            "time": record.time,
            "writes": [[w.table, w.id, w.doc] for w in record.writes],
            "tables": dict(record.tables),
        }
        if record.bulk:
            body["files"] = [[f.table, f.part, f.rows, f.size, list(f.checksums)] for f in record.bulk]
        return encode_stored_json(body).encode()
    body = {"kind": "deploy", "time": record.time, "schema": record.schema, "tables": dict(record.tables)}
    return encode_json(body).encode()


def decode_record(payload: bytes, *, lsn: int = 0) -> Record:
    """The record a payload holds; a payload that is not one raises :class:`~zapnb.errors.CorruptionError`."""
    try:
        body = decode_stored_json(payload)
        kind = body["kind"]
        if kind in ("commit", "bulk"):
            writes = tuple(Write(table, id_, doc) for table, id_, doc in body["writes"])
            files = tuple(
                BulkFile(table, int(part), int(rows), int(size), tuple(int(c) for c in checksums))
                for table, part, rows, size, checksums in body.get("files", [])
                if kind == "bulk"
            )
            return Commit(time=float(body["time"]), writes=writes, tables=dict(body["tables"]), bulk=files)
        if kind == "deploy":
            return Deploy(time=float(body["time"]), schema=body["schema"], tables=dict(body["tables"]))
    except (InvalidJsonError, KeyError, TypeError, ValueError) as err:
        raise _bad_record(lsn, str(err)) from err
    raise _bad_record(lsn, f"unknown record kind {kind!r}")


def _bad_record(lsn: int, why: str) -> CorruptionError:
    return CorruptionError(
        f"Commit log record {lsn} passed its checksum but is not a zapnb record ({why}). It was written by "
        "another program or a newer zapnb; open the data directory with the zapnb version that wrote it.",
        file=f"commit log record {lsn}",
        offset=0,
    )

"""The systems zapnb is measured against, behind one interface: SQLite, DuckDB and Polars in memory here,
pylance and LanceDB in ``peers_lance.py``, zapnb itself in ``zapnb_peer.py``.

Every peer stores the workload's two tables with the same columns (``_id``, ``_creationTime`` and the
fields), validates what it stores as far as it can (SQLite: STRICT tables with CHECK constraints for the
enums; DuckDB: CHECK constraints; Lance and Polars: checked in Python before writing), keeps indexes like
zapnb's, and returns query results as Polars frames and documents as dicts, so each number includes what
a zapnb user gets. Databases live in real files under the directory a peer is given.

    python benchmarks/peers.py open KEY DIRECTORY ID    # used by Peer.open: open, get one document, time it
"""

from __future__ import annotations

import abc
import json
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workload import MESSAGES_TABLE_NUMBER

from zapnb.examples.zapdev import FRAMEWORKS, MESSAGE_ROLES, MESSAGE_STATUSES, MESSAGE_TYPES
from zapnb.ids import Id

__all__ = [
    "ENUMS",
    "MESSAGE_SCHEMA",
    "PEER_KEYS",
    "PROJECT_SCHEMA",
    "DuckDBPeer",
    "OpenTiming",
    "PageWalk",
    "Peer",
    "PolarsPeer",
    "SQLitePeer",
    "check_document",
    "check_frame",
    "check_patch",
    "make_peer",
    "message_row",
    "walk_pages",
]

PAGE_SIZE: Final = 100
Q1_TAKE: Final = 50
F64, STR = pl.Float64, pl.String
PROJECT_SCHEMA: Final = {
    "_id": STR, "_creationTime": F64, "name": STR, "userId": STR, "framework": STR, "createdAt": F64,
    "updatedAt": F64,
}  # fmt: skip
MESSAGE_SCHEMA: Final = {
    "_id": STR, "_creationTime": F64, "content": STR, "role": STR, "type": STR, "status": STR,
    "projectId": STR, "createdAt": F64, "updatedAt": F64,
}  # fmt: skip
ENUMS: Final[dict[str, tuple[str, ...]]] = {
    "framework": FRAMEWORKS,
    "role": MESSAGE_ROLES,
    "type": MESSAGE_TYPES,
    "status": MESSAGE_STATUSES,
}
PATCHABLE: Final = frozenset({"content", "role", "type", "status", "createdAt", "updatedAt"})
Op = Literal["W1", "W2", "W3", "Q1", "Q2", "Q3", "Q4", "Q5", "Open"]
ALL_OPS: Final[tuple[Op, ...]] = ("W1", "W2", "W3", "Q1", "Q2", "Q3", "Q4", "Q5", "Open")


@dataclass(frozen=True)
class PageWalk:
    """What paginating one project returned: pages, rows and the last row's ID."""

    pages: int
    rows: int
    last_id: str


@dataclass(frozen=True)
class OpenTiming:
    """Opening a database in a fresh process: open + first get (after imports), and the whole process."""

    open_seconds: float
    process_seconds: float


def message_row(doc: dict[str, Any]) -> tuple[Id, tuple[Any, ...]]:
    """A fresh message ID and the row of ``doc`` with its system fields, in :data:`MESSAGE_SCHEMA` order."""
    new_id = Id.new(MESSAGES_TABLE_NUMBER)
    values = (new_id, time.time() * 1000.0, *(doc.get(name) for name in list(MESSAGE_SCHEMA)[2:]))
    return new_id, values


def check_document(doc: dict[str, Any]) -> None:
    """Validate a message document the way a schema would (for peers with no constraints of their own)."""
    for name in ("content", "projectId"):
        if type(doc.get(name)) is not str:
            raise ValueError(f"messages.{name} must be a string, not {doc.get(name)!r}")
    for name in ("role", "type", "status"):
        if doc.get(name) not in ENUMS[name]:
            raise ValueError(f"messages.{name} must be one of {ENUMS[name]}, not {doc.get(name)!r}")
    extra = set(doc) - set(MESSAGE_SCHEMA)
    if extra:
        raise ValueError(f"messages has no fields {sorted(extra)}")


def check_patch(field: str, value: Any) -> None:
    """Validate setting message field ``field`` to ``value`` (for peers with no constraints of their own)."""
    if field not in PATCHABLE:
        raise ValueError(f"messages has no field {field!r} to patch")
    if field in ENUMS and value not in ENUMS[field]:
        raise ValueError(f"messages.{field} must be one of {ENUMS[field]}, not {value!r}")
    if field == "content" and type(value) is not str:
        raise ValueError(f"messages.content must be a string, not {value!r}")
    if field in ("createdAt", "updatedAt") and type(value) not in (int, float):
        raise ValueError(f"messages.{field} must be a number, not {value!r}")


def check_frame(frame: pl.DataFrame, schema: dict[str, Any]) -> pl.DataFrame:
    """``frame`` with exactly ``schema``'s columns and types, enums and required fields checked."""
    checked = frame.select([pl.col(name).cast(dtype, strict=True) for name, dtype in schema.items()])
    for name in set(schema) & set(ENUMS):
        if not checked[name].is_in(list(ENUMS[name])).all():
            raise ValueError(f"column {name} holds values outside {ENUMS[name]}")
    required = [name for name in schema if name not in ("createdAt", "updatedAt")]
    nulls = {name: checked[name].null_count() for name in required}
    if any(nulls.values()):
        raise ValueError(f"required columns hold nulls: {nulls}")
    return checked


class Peer(abc.ABC):
    """One system under test. ``load`` fills an empty database; ``attach`` opens one that exists.

    Responsibilities: store the workload, answer its operations with Polars frames and dicts, and say which
    operations it takes part in (``ops``) and whether its single writes are durable (``durable``).
    """

    key: ClassVar[str]
    label: ClassVar[str]
    durable: ClassVar[bool] = True
    ops: ClassVar[tuple[Op, ...]] = ALL_OPS

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.untimed_seconds = 0.0  # time inside load() that is the harness's, not the peer's

    @abc.abstractmethod
    def load(self, projects: pl.DataFrame, messages: pl.DataFrame) -> None:
        """Create the tables and indexes and load both frames, validated (W1)."""

    @abc.abstractmethod
    def attach(self) -> None:
        """Open the database that ``load`` made (in a fresh process)."""

    def finish_load(self) -> None:  # noqa: B027 - peers with no deferred work keep this
        """Do now the work a load left for later (zapnb: the checkpoint it made due), untimed: the peak
        memory of W1 is read after it, and the queries run once it is done."""

    @abc.abstractmethod
    def insert_one(self, doc: dict[str, Any]) -> str:
        """Insert one message, durably, and return its ID (W2)."""

    @abc.abstractmethod
    def patch_one(self, doc_id: str, field: str, value: Any) -> None:
        """Set one field of one message, durably (W3)."""

    @abc.abstractmethod
    def q1(self, project_id: str) -> pl.DataFrame:
        """A project's first 50 messages by ``createdAt`` ascending."""

    @abc.abstractmethod
    def q2(self, user_id: str) -> pl.DataFrame:
        """All of a user's projects by ``createdAt`` descending."""

    @abc.abstractmethod
    def q3(self, project_id: str) -> PageWalk:
        """Every message of a project, 100 per page by cursor, each page a frame."""

    @abc.abstractmethod
    def q4_count(self) -> int:
        """How many messages are PENDING from the USER (no index)."""

    @abc.abstractmethod
    def q4_collect(self) -> pl.DataFrame:
        """The messages that are PENDING from the USER (no index)."""

    @abc.abstractmethod
    def q5(self, doc_id: str) -> dict[str, Any] | None:
        """One message by ID, as a dict, or None."""

    def close(self) -> None:  # noqa: B027 - peers with nothing to release keep this
        """Release files and connections."""

    def translate(self, doc_id: str) -> str:
        """The ID this peer knows a workload ID by (the same for every peer that stores given IDs)."""
        return doc_id

    def workload_id(self, doc_id: str) -> str:
        """The workload ID of an ID this peer returned (the inverse of :meth:`translate`)."""
        return doc_id

    def open(self, probe_id: str) -> OpenTiming:
        """Time opening this database in a fresh process and getting ``probe_id`` there."""
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "open",
            self.key,
            str(self.directory),
            probe_id,
        ]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        process = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"opening {self.key} in a fresh process failed:\n{done.stderr[-2000:]}")
        return OpenTiming(float(json.loads(done.stdout.splitlines()[-1])["seconds"]), process)


# --------------------------------------------------------------------------------------------- SQL peers


def _sql_enum(name: str) -> str:
    values = ", ".join(f"'{value}'" for value in ENUMS[name])
    return f"{name} TEXT NOT NULL CHECK ({name} IN ({values}))"


_SQL_TABLES: Final = (
    f"""CREATE TABLE projects (_id TEXT PRIMARY KEY, _creationTime REAL NOT NULL, name TEXT NOT NULL,
    userId TEXT NOT NULL, {_sql_enum("framework")}, createdAt REAL, updatedAt REAL)""",
    f"""CREATE TABLE messages (_id TEXT PRIMARY KEY, _creationTime REAL NOT NULL, content TEXT NOT NULL,
    {_sql_enum("role")}, {_sql_enum("type")}, {_sql_enum("status")}, projectId TEXT NOT NULL,
    createdAt REAL, updatedAt REAL)""",
)
_SQL_INDEXES: Final = (
    "CREATE INDEX projects_by_userId ON projects (userId)",
    "CREATE INDEX projects_by_userId_createdAt ON projects (userId, createdAt)",
    "CREATE INDEX messages_by_projectId ON messages (projectId)",
    "CREATE INDEX messages_by_projectId_createdAt ON messages (projectId, createdAt)",
)
_Q4_WHERE: Final = "status = 'PENDING' AND role = 'USER'"
_MESSAGE_PLACEHOLDERS: Final = ", ".join("?" * len(MESSAGE_SCHEMA))
_PROJECT_PLACEHOLDERS: Final = ", ".join("?" * len(PROJECT_SCHEMA))


def _patch_sql(field: str) -> str:
    if field not in PATCHABLE:
        raise ValueError(f"messages has no patchable field {field!r}")
    return f"UPDATE messages SET {field} = ? WHERE _id = ?"


class _SqlPeer(Peer):
    """What the SQL peers share: single-row writes through their DB-API connection ``db``."""

    db: Any

    def insert_one(self, doc: dict[str, Any]) -> str:
        new_id, row = message_row(doc)
        self.db.execute(f"INSERT INTO messages VALUES ({_MESSAGE_PLACEHOLDERS})", row)
        return new_id

    def patch_one(self, doc_id: str, field: str, value: Any) -> None:
        self.db.execute(_patch_sql(field), (value, doc_id))


class SQLitePeer(_SqlPeer):
    """sqlite3 in WAL mode, STRICT tables with CHECK constraints for the enums, an index per zapnb index.

    Q3 pages by keyset on ``(createdAt, rowid)``, which the index on ``(projectId, createdAt)`` holds.
    """

    key = "sqlite"
    label = "sqlite3 WAL, synchronous NORMAL"
    synchronous: ClassVar[str] = "NORMAL"

    def attach(self) -> None:
        self.db = sqlite3.connect(self.directory / "zapdev.sqlite", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={self.synchronous}")

    def load(self, projects: pl.DataFrame, messages: pl.DataFrame) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.attach()
        self.db.execute("BEGIN")
        for statement in _SQL_TABLES + _SQL_INDEXES:
            self.db.execute(statement + " STRICT" if "TABLE" in statement else statement)
        self.db.executemany(f"INSERT INTO projects VALUES ({_PROJECT_PLACEHOLDERS})", projects.iter_rows())
        self.db.executemany(f"INSERT INTO messages VALUES ({_MESSAGE_PLACEHOLDERS})", messages.iter_rows())
        self.db.execute("COMMIT")

    def _frame(self, sql: str, args: Iterable[Any], schema: dict[str, Any]) -> pl.DataFrame:
        return pl.DataFrame(self.db.execute(sql, tuple(args)).fetchall(), schema=schema, orient="row")

    def q1(self, project_id: str) -> pl.DataFrame:
        sql = f"SELECT * FROM messages WHERE projectId = ? ORDER BY createdAt LIMIT {Q1_TAKE}"
        return self._frame(sql, (project_id,), MESSAGE_SCHEMA)

    def q2(self, user_id: str) -> pl.DataFrame:
        sql = "SELECT * FROM projects WHERE userId = ? ORDER BY createdAt DESC"
        return self._frame(sql, (user_id,), PROJECT_SCHEMA)

    def q3(self, project_id: str) -> PageWalk:
        first = (
            f"SELECT rowid, * FROM messages WHERE projectId = ? ORDER BY createdAt, rowid LIMIT {PAGE_SIZE}"
        )
        after = (
            "SELECT rowid, * FROM messages WHERE projectId = ? AND (createdAt, rowid) > (?, ?) "
            f"ORDER BY createdAt, rowid LIMIT {PAGE_SIZE}"
        )
        schema = {"rowid": pl.Int64, **MESSAGE_SCHEMA}
        pages = rows = 0
        last = ""
        page = self._frame(first, (project_id,), schema)
        while True:
            frame = page.drop("rowid")
            pages, rows = pages + 1, rows + frame.height
            if frame.height < PAGE_SIZE:
                return PageWalk(pages, rows, frame["_id"][-1] if frame.height else last)
            cursor, last = (page["createdAt"][-1], page["rowid"][-1]), frame["_id"][-1]
            page = self._frame(after, (project_id, *cursor), schema)

    def q4_count(self) -> int:
        row = self.db.execute(f"SELECT count(*) FROM messages WHERE {_Q4_WHERE}").fetchone()
        return int(row[0])

    def q4_collect(self) -> pl.DataFrame:
        return self._frame(f"SELECT * FROM messages WHERE {_Q4_WHERE}", (), MESSAGE_SCHEMA)

    def q5(self, doc_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM messages WHERE _id = ?", (doc_id,)).fetchone()
        return None if row is None else dict(zip(MESSAGE_SCHEMA, row, strict=True))

    def close(self) -> None:
        self.db.close()


class SQLiteFullPeer(SQLitePeer):
    """sqlite3 in WAL mode with ``synchronous=FULL``: every commit fsyncs (the durable single writes)."""

    key = "sqlite-full"
    label = "sqlite3 WAL, synchronous FULL"
    synchronous = "FULL"
    ops = ("W2", "W3")


class DuckDBPeer(_SqlPeer):
    """DuckDB with CHECK constraints for the enums, a primary key and ART indexes like zapnb's.

    Q3 pages by keyset on ``(createdAt, _id)``.
    """

    key = "duckdb"
    label = "DuckDB (ART indexes)"

    def attach(self) -> None:
        import duckdb

        self.db = duckdb.connect(str(self.directory / "zapdev.duckdb"))

    def load(self, projects: pl.DataFrame, messages: pl.DataFrame) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.attach()
        for statement in _SQL_TABLES + _SQL_INDEXES:
            self.db.execute(statement)
        self.db.execute("BEGIN")
        for name, frame in (("projects", projects), ("messages", messages)):
            self.db.register("source", frame.to_arrow())
            self.db.execute(f"INSERT INTO {name} SELECT * FROM source")
            self.db.unregister("source")
        self.db.execute("COMMIT")
        self.db.execute("CHECKPOINT")

    def _frame(self, sql: str, args: Iterable[Any]) -> pl.DataFrame:
        # A prepared statement (execute) is fastest for small results; its Arrow output copies the rows once.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            frame = pl.from_arrow(self.db.execute(sql, list(args)).to_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        return frame

    def q1(self, project_id: str) -> pl.DataFrame:
        sql = f"SELECT * FROM messages WHERE projectId = ? ORDER BY createdAt, _id LIMIT {Q1_TAKE}"
        return self._frame(sql, (project_id,))

    def q2(self, user_id: str) -> pl.DataFrame:
        return self._frame(
            "SELECT * FROM projects WHERE userId = ? ORDER BY createdAt DESC, _id DESC", (user_id,)
        )

    def q3(self, project_id: str) -> PageWalk:
        first = f"SELECT * FROM messages WHERE projectId = ? ORDER BY createdAt, _id LIMIT {PAGE_SIZE}"
        after = (
            "SELECT * FROM messages WHERE projectId = ? AND (createdAt > ? OR (createdAt = ? AND _id > ?)) "
            f"ORDER BY createdAt, _id LIMIT {PAGE_SIZE}"
        )
        return walk_pages(
            lambda: self._frame(first, (project_id,)), lambda c, i: self._frame(after, (project_id, c, c, i))
        )

    def q4_count(self) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM messages WHERE {_Q4_WHERE}").fetchall()[0][0])

    def q4_collect(self) -> pl.DataFrame:
        # A relation converts a large result to Polars with no extra copy.
        frame: pl.DataFrame = self.db.sql(f"SELECT * FROM messages WHERE {_Q4_WHERE}").pl()
        return frame

    def q5(self, doc_id: str) -> dict[str, Any] | None:
        cursor = self.db.execute("SELECT * FROM messages WHERE _id = ?", [doc_id])
        row = cursor.fetchone()
        return None if row is None else dict(zip(MESSAGE_SCHEMA, row, strict=True))

    def close(self) -> None:
        self.db.close()


def walk_pages(first: Callable[[], pl.DataFrame], after: Callable[[float, str], pl.DataFrame]) -> PageWalk:
    """Keyset pagination on ``(createdAt, _id)``: ``first()`` is page one, ``after(createdAt, _id)`` next."""
    pages = rows = 0
    last = ""
    page = first()
    while True:
        pages, rows = pages + 1, rows + page.height
        if page.height < PAGE_SIZE:
            return PageWalk(pages, rows, page["_id"][-1] if page.height else last)
        last = page["_id"][-1]
        page = after(page["createdAt"][-1], last)


# --------------------------------------------------------------------------------------------- Polars


class PolarsPeer(Peer):
    """Polars frames in memory, no durability: the floor.

    ``messages`` is kept twice: in creation order (the table, for filters and gets) and sorted by
    ``(projectId, createdAt, _id)`` (a clustered index), ``projects`` sorted by ``(userId, createdAt, _id)``.
    A dict maps each key (project, user) to its range of rows, so an index range is a dict lookup and a
    zero-copy slice; dicts map each message ID to its row in both copies. Inserted rows wait in a list
    until the next read or patch adds them and re-sorts.
    """

    key = "polars"
    label = "Polars in memory, no durability"
    durable = False
    ops = ("W1", "W2", "W3", "Q1", "Q2", "Q3", "Q4", "Q5")

    def attach(self) -> None:
        raise NotImplementedError("Polars in memory has no database to open")

    def load(self, projects: pl.DataFrame, messages: pl.DataFrame) -> None:
        self.projects = check_frame(projects, PROJECT_SCHEMA).sort("userId", "createdAt", "_id")
        self.user_ranges = self._ranges(self.projects, "userId")
        self.pending: list[tuple[Any, ...]] = []
        self._index(check_frame(messages, MESSAGE_SCHEMA))

    def _index(self, messages: pl.DataFrame) -> None:
        self.messages = messages.rechunk()
        self.row_of = dict(zip(self.messages["_id"].to_list(), range(self.messages.height), strict=True))
        self.by_project = self.messages.sort("projectId", "createdAt", "_id")
        ids = self.by_project["_id"].to_list()
        self.sorted_row_of = dict(zip(ids, range(len(ids)), strict=True))
        self.project_ranges = self._ranges(self.by_project, "projectId")

    @staticmethod
    def _ranges(frame: pl.DataFrame, column: str) -> dict[str, tuple[int, int]]:
        """Each value of ``column`` (which ``frame`` is sorted by) to its first row and row count."""
        runs = frame.select(pl.col(column).rle_id().alias("run"), pl.col(column)).with_row_index()
        starts = runs.group_by("run", maintain_order=True).agg(pl.first(column), pl.first("index"), pl.len())
        return dict(zip(starts[column], zip(starts["index"], starts["len"], strict=True), strict=True))

    def _current(self) -> None:
        if self.pending:
            added = pl.DataFrame(self.pending, schema=MESSAGE_SCHEMA, orient="row")
            self.pending = []
            self._index(pl.concat([self.messages, added]))

    @staticmethod
    def _range(frame: pl.DataFrame, ranges: dict[str, tuple[int, int]], value: str) -> pl.DataFrame:
        start, length = ranges.get(value, (0, 0))
        return frame.slice(start, length)

    def insert_one(self, doc: dict[str, Any]) -> str:
        check_document(doc)
        new_id, row = message_row(doc)
        self.pending.append(row)
        return new_id

    def patch_one(self, doc_id: str, field: str, value: Any) -> None:
        check_patch(field, value)
        self._current()
        self.messages[self.row_of[doc_id], field] = value
        self.by_project[self.sorted_row_of[doc_id], field] = value

    def q1(self, project_id: str) -> pl.DataFrame:
        self._current()
        return self._range(self.by_project, self.project_ranges, project_id).head(Q1_TAKE)

    def q2(self, user_id: str) -> pl.DataFrame:
        start, length = self.user_ranges.get(user_id, (0, 0))
        return self.projects[
            list(range(start + length - 1, start - 1, -1))
        ]  # backwards (reverse() is slower)

    def q3(self, project_id: str) -> PageWalk:
        self._current()
        rows = self._range(self.by_project, self.project_ranges, project_id)
        pages, last = 0, ""
        for start in range(0, rows.height + 1, PAGE_SIZE):  # a full last page is followed by an empty one
            page = rows.slice(start, PAGE_SIZE)
            pages += 1
            last = page["_id"][-1] if page.height else last
        return PageWalk(pages, rows.height, last)

    def q4_count(self) -> int:
        self._current()
        mask = (self.messages["status"] == "PENDING") & (self.messages["role"] == "USER")
        return int(mask.sum())

    def q4_collect(self) -> pl.DataFrame:
        self._current()
        return self.messages.filter(pl.col("status") == "PENDING", pl.col("role") == "USER")

    def q5(self, doc_id: str) -> dict[str, Any] | None:
        self._current()
        row = self.row_of.get(doc_id)
        return None if row is None else self.messages.row(row, named=True)


# --------------------------------------------------------------------------------------------- registry

PEER_KEYS: Final = ("sqlite", "sqlite-full", "duckdb", "lance", "lancedb", "polars", "zapnb")


def make_peer(key: str, directory: Path) -> Peer:
    """The peer called ``key`` (one of :data:`PEER_KEYS`), storing its database under ``directory``."""
    if key in ("lance", "lancedb"):
        from peers_lance import LanceDBPeer, LancePeer

        return (LancePeer if key == "lance" else LanceDBPeer)(directory)
    if key == "zapnb":
        from zapnb_peer import ZapnbPeer

        return ZapnbPeer(directory)
    classes: dict[str, type[Peer]] = {
        cls.key: cls for cls in (SQLitePeer, SQLiteFullPeer, DuckDBPeer, PolarsPeer)
    }
    if key not in classes:
        raise ValueError(f"unknown peer {key!r}; choose from {', '.join(PEER_KEYS)}")
    return classes[key](directory)


def _open_main(key: str, directory: str, probe_id: str) -> None:
    peer = make_peer(key, Path(directory))
    began = time.perf_counter()
    peer.attach()
    found = peer.q5(probe_id)
    seconds = time.perf_counter() - began
    if found is None:
        raise SystemExit(f"{key}: document {probe_id} not found after opening")
    peer.close()
    print(json.dumps({"seconds": seconds, "pid": os.getpid()}))


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "open":
        raise SystemExit("usage: python benchmarks/peers.py open KEY DIRECTORY ID")
    _open_main(*sys.argv[2:])

"""The Lance peers: pylance datasets and LanceDB tables, with BTREE scalar indexes.

Lance indexes one column each (a composite index is not supported), so each zapnb index becomes a BTREE on
its first column (``projects.userId``, ``messages.projectId``) and the ordering by ``createdAt`` is a sort
of the matches; ``_id`` has a BTREE too, for gets and updates. Q3 pages by keyset on ``(createdAt, _id)``.
Lance has no constraints: frames and documents are checked in Python before writing. A Lance commit does
not fsync, so single writes are committed but not durable across a power loss (``durable = False``).
"""

from __future__ import annotations

import abc
from typing import Any, Final

import polars as pl
import pyarrow as pa
from peers import (
    MESSAGE_SCHEMA,
    PAGE_SIZE,
    PROJECT_SCHEMA,
    Q1_TAKE,
    PageWalk,
    Peer,
    check_document,
    check_frame,
    check_patch,
    message_row,
    walk_pages,
)

__all__ = ["LanceDBPeer", "LancePeer"]

_Q4_WHERE: Final = "status = 'PENDING' AND role = 'USER'"
_INDEXED: Final = {"projects": ("_id", "userId"), "messages": ("_id", "projectId")}
_ASC: Final = [("createdAt", True), ("_id", True)]
_DESC: Final = [("createdAt", False), ("_id", False)]
Order = list[tuple[str, bool]]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _after(project_id: str, created: float, last_id: str) -> str:
    """The filter of the page after ``(created, last_id)`` in a project, keyset on ``(createdAt, _id)``."""
    c = repr(float(created))
    after = f"createdAt > {c} OR (createdAt = {c} AND _id > {_quote(last_id)})"
    return f"projectId = {_quote(project_id)} AND ({after})"


def _arrow(frame: pl.DataFrame, schema: dict[str, Any]) -> pa.Table:
    """The checked frame as Arrow with ``string`` columns (Lance's BTREE takes no ``large_string``)."""
    table = check_frame(frame, schema).to_arrow()
    types = [
        pa.string() if pa.types.is_large_string(t) or pa.types.is_string_view(t) else t
        for t in table.schema.types
    ]
    return table.cast(pa.schema(list(zip(table.schema.names, types, strict=True))))


def _tables(projects: pl.DataFrame, messages: pl.DataFrame) -> list[tuple[str, pa.Table]]:
    return [("projects", _arrow(projects, PROJECT_SCHEMA)), ("messages", _arrow(messages, MESSAGE_SCHEMA))]


def _row_table(doc: dict[str, Any], schema: pa.Schema | None) -> tuple[str, pa.Table]:
    check_document(doc)
    new_id, row = message_row(doc)
    return new_id, pa.Table.from_pylist([dict(zip(MESSAGE_SCHEMA, row, strict=True))], schema=schema)


class _Scanned(Peer):
    """The queries of both Lance peers, in terms of one filtered, ordered, limited scan (``_frame``)."""

    durable = False
    projects: Any
    messages: Any

    @abc.abstractmethod
    def _frame(self, table: Any, where: str, order: Order, limit: int | None) -> pl.DataFrame: ...

    def q1(self, project_id: str) -> pl.DataFrame:
        return self._frame(self.messages, f"projectId = {_quote(project_id)}", _ASC, Q1_TAKE)

    def q2(self, user_id: str) -> pl.DataFrame:
        return self._frame(self.projects, f"userId = {_quote(user_id)}", _DESC, None)

    def q3(self, project_id: str) -> PageWalk:
        return walk_pages(
            lambda: self._frame(self.messages, f"projectId = {_quote(project_id)}", _ASC, PAGE_SIZE),
            lambda c, i: self._frame(self.messages, _after(project_id, c, i), _ASC, PAGE_SIZE),
        )

    def q4_collect(self) -> pl.DataFrame:
        return self._frame(self.messages, _Q4_WHERE, [], None)


class LancePeer(_Scanned):
    """pylance: a dataset per table, BTREE scalar indexes, scans with ``filter``, ``order_by``, ``limit``."""

    key = "lance"
    label = "pylance (BTREE indexes)"

    def _uri(self, table: str) -> str:
        return str(self.directory / f"{table}.lance")

    def attach(self) -> None:
        import lance

        self.projects = lance.dataset(self._uri("projects"))
        self.messages = lance.dataset(self._uri("messages"))

    def load(self, projects: pl.DataFrame, messages: pl.DataFrame) -> None:
        import lance

        self.directory.mkdir(parents=True, exist_ok=True)
        for table, arrow in _tables(projects, messages):
            dataset = lance.write_dataset(arrow, self._uri(table))
            for column in _INDEXED[table]:
                dataset.create_scalar_index(column, index_type="BTREE")
        self.attach()

    def _frame(self, table: Any, where: str, order: Order, limit: int | None) -> pl.DataFrame:
        from lance.dataset import ColumnOrdering

        ordering = [ColumnOrdering(name, ascending=ascending) for name, ascending in order]
        frame = pl.from_arrow(table.to_table(filter=where, order_by=ordering or None, limit=limit))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def insert_one(self, doc: dict[str, Any]) -> str:
        import lance

        new_id, table = _row_table(doc, self.messages.schema)
        self.messages = lance.write_dataset(table, self.messages, mode="append")
        return new_id

    def patch_one(self, doc_id: str, field: str, value: Any) -> None:
        check_patch(field, value)
        literal = _quote(value) if isinstance(value, str) else repr(float(value))
        self.messages.update({field: literal}, where=f"_id = {_quote(doc_id)}")

    def q4_count(self) -> int:
        return int(self.messages.count_rows(filter=_Q4_WHERE))

    def q5(self, doc_id: str) -> dict[str, Any] | None:
        rows: list[dict[str, Any]] = self.messages.to_table(
            filter=f"_id = {_quote(doc_id)}", limit=1
        ).to_pylist()
        return rows[0] if rows else None


class LanceDBPeer(_Scanned):
    """LanceDB: a table per workload table, BTREE scalar indexes, queries with ``where``, ``order_by``."""

    key = "lancedb"
    label = "lancedb"

    def attach(self) -> None:
        import lancedb

        self.db = lancedb.connect(str(self.directory / "lancedb"))
        self.projects = self.db.open_table("projects")
        self.messages = self.db.open_table("messages")

    def load(self, projects: pl.DataFrame, messages: pl.DataFrame) -> None:
        import lancedb

        self.directory.mkdir(parents=True, exist_ok=True)
        db = lancedb.connect(str(self.directory / "lancedb"))
        for table, arrow in _tables(projects, messages):
            created = db.create_table(table, data=arrow)
            for column in _INDEXED[table]:
                created.create_scalar_index(column, index_type="BTREE")
        self.attach()

    def _frame(self, table: Any, where: str, order: Order, limit: int | None) -> pl.DataFrame:
        from lancedb.query import ColumnOrdering

        query = table.search().where(where)
        if order:
            query = query.order_by([ColumnOrdering(column_name=name, ascending=asc) for name, asc in order])
        frame: pl.DataFrame = query.limit(limit).to_polars()
        return frame

    def insert_one(self, doc: dict[str, Any]) -> str:
        new_id, table = _row_table(doc, self.messages.schema)
        self.messages.add(table)
        return new_id

    def patch_one(self, doc_id: str, field: str, value: Any) -> None:
        check_patch(field, value)
        self.messages.update(where=f"_id = {_quote(doc_id)}", values={field: value})

    def q4_count(self) -> int:
        return int(self.messages.count_rows(_Q4_WHERE))

    def q5(self, doc_id: str) -> dict[str, Any] | None:
        rows: list[dict[str, Any]] = (
            self.messages.search().where(f"_id = {_quote(doc_id)}").limit(1).to_list()
        )
        return rows[0] if rows else None

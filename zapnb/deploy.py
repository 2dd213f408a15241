"""Deploying a schema: compare with the active one, check existing documents, build indexes, report.

Responsibilities: everything ``db.deploy(schema)`` and ``db.delete_table(name)`` do before and after the
engine appends their deploy record. The check of existing documents (or of the table to delete) runs inside
the log's writer section, so no commit can slip in between the check and the switch; if it fails, nothing is
appended and the old catalog stays active. New indexes are built by every process when it applies the deploy
record (:func:`zapnb.indexbuild.build_index`); a table whose number the record drops is deleted there too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Literal

from zapnb.catalog import Catalog
from zapnb.engine import Engine
from zapnb.errors import DeployValidationError, SchemaDefinitionError, SchemaValidationError
from zapnb.progress import progress
from zapnb.schema import AnyIndex, Schema

__all__ = ["DeleteTableReport", "DeployReport", "TableDeletionError", "delete_table", "deploy"]


@dataclass(frozen=True)
class DeployReport:
    """What a deploy changed.

    Attributes
    ----------
    tables_created:
        Tables that had no number before (new, empty tables).
    indexes_created, indexes_removed:
        Indexes as ``"table.index"``. An index redefined under its name (other fields) is in both; a staged
        index that this deploy enables is created.
    documents_checked:
        Existing documents checked against the new validators.
    seconds:
        Time the deploy took, index builds included.
    """

    tables_created: tuple[str, ...]
    indexes_created: tuple[str, ...]
    indexes_removed: tuple[str, ...]
    documents_checked: int
    seconds: float

    def __str__(self) -> str:
        def listed(names: tuple[str, ...]) -> str:
            return ", ".join(names) if names else "none"

        return (
            f"Deployed in {self.seconds:.2f} s: tables created: {listed(self.tables_created)}; "
            f"indexes created: {listed(self.indexes_created)}; "
            f"indexes removed: {listed(self.indexes_removed)}; "
            f"{self.documents_checked} document{'' if self.documents_checked == 1 else 's'} checked."
        )


@dataclass(frozen=True)
class DeleteTableReport:
    """What ``db.delete_table`` deleted.

    Attributes
    ----------
    table:
        The deleted table.
    documents_deleted:
        How many documents it held.
    seconds:
        Time the deletion took.
    """

    table: str
    documents_deleted: int
    seconds: float

    def __str__(self) -> str:
        count = self.documents_deleted
        documents = f"{count} document{'' if count == 1 else 's'}"
        return f"Deleted table {self.table!r} and its {documents} in {self.seconds:.2f} s."


class TableDeletionError(SchemaDefinitionError):
    """``db.delete_table`` refused: the table is in the active schema, or there is no such table.

    Attributes
    ----------
    table:
        The table asked for.
    reason:
        ``"in_schema"`` or ``"missing"``.
    tables:
        The tables that exist, sorted.
    """

    def __init__(
        self, message: str, *, table: str, reason: Literal["in_schema", "missing"], tables: tuple[str, ...]
    ) -> None:
        super().__init__(message)
        self.table = table
        self.reason = reason
        self.tables = tables


def deploy(engine: Engine, schema: Schema, *, show_progress: bool = True) -> DeployReport:
    """Make ``schema`` the active schema of ``engine``'s database (see :meth:`zapnb.Database.deploy`)."""
    if not isinstance(schema, Schema):
        raise SchemaDefinitionError(
            f"deploy takes a schema made with zapnb.define_schema({{...}}), not {type(schema).__name__}."
        )
    started = time.perf_counter()
    checked = 0
    old = engine.snapshot().catalog

    def change(current: Catalog) -> Catalog:  # inside the log's writer section, on the caught-up catalog
        nonlocal checked, old
        old = current
        if schema.schema_validation:
            validated = current.schema if current.schema and current.schema.schema_validation else None
            for name, definition in schema.tables.items():
                previous = None if validated is None else validated.tables.get(name)
                if previous is None or previous.document != definition.document:
                    checked += _check_table(engine, schema, name, show_progress)
        return Catalog(schema, current.numbers.adding(schema.tables))

    engine.deploy_record(change, show_progress=show_progress)
    before, after = _indexes(old.schema), _indexes(schema)
    return DeployReport(
        tables_created=tuple(name for name in schema.tables if name not in old.numbers),
        indexes_created=tuple(sorted(n for n, index in after.items() if before.get(n) != index)),
        indexes_removed=tuple(sorted(n for n, i in before.items() if _built(after.get(n)) != _built(i))),
        documents_checked=checked,
        seconds=time.perf_counter() - started,
    )


def delete_table(engine: Engine, table: str) -> DeleteTableReport:
    """Delete ``table`` and its documents (see :meth:`zapnb.Database.delete_table`)."""
    started = time.perf_counter()
    deleted = 0

    def change(current: Catalog) -> Catalog:  # inside the log's writer section, on the caught-up catalog
        nonlocal deleted
        _refuse_deletion(current, table)
        snapshot = engine.snapshot()
        state = snapshot.tables.get(table)
        deleted = 0 if state is None else state.count(snapshot.lsn)
        return Catalog(current.schema, current.numbers.without(table))

    engine.deploy_record(change, show_progress=False)
    return DeleteTableReport(table, deleted, time.perf_counter() - started)


def _refuse_deletion(catalog: Catalog, table: str) -> None:
    existing = tuple(sorted(catalog.numbers))
    if catalog.schema is not None and table in catalog.schema.tables:
        raise TableDeletionError(
            f"Table {table!r} is in the active schema, so it cannot be deleted. Remove it from the schema "
            "with db.deploy first (its documents stay), then call db.delete_table again.",
            table=table,
            reason="in_schema",
            tables=existing,
        )
    if table not in catalog.numbers:
        raise TableDeletionError(
            f"There is no table {table!r} to delete (nothing was changed). Existing tables: "
            f"{', '.join(existing) or 'none'}.",
            table=table,
            reason="missing",
            tables=existing,
        )


def _check_table(engine: Engine, schema: Schema, table: str, show_progress: bool) -> int:
    snapshot = engine.snapshot()
    state = snapshot.tables.get(table)
    if state is None:
        return 0
    total = state.count(snapshot.lsn)
    numbers = dict(snapshot.catalog.numbers)
    checked = 0
    with progress(total, f"checking {table}", enabled=show_progress) as bar:
        for doc in state.documents(snapshot.lsn):
            try:
                schema.validate_document(table, dict(doc), ids=numbers)
            except SchemaValidationError as err:
                raise _deploy_error(table, str(doc["_id"]), err) from err
            checked += 1
            bar.update(1)
    return checked


def _deploy_error(table: str, doc_id: str, err: SchemaValidationError) -> DeployValidationError:
    cause = str(err).split("does not match the schema: ", 1)[-1]
    return DeployValidationError(
        f'Schema validation failed.\nDocument with ID "{doc_id}" in table "{table}" does not match the '
        f"schema: {cause}\nThe old schema is still active. Fix the document (or make the field v.optional) "
        "and deploy again.",
        document_id=doc_id,
        cause=err,
    )


def _indexes(schema: Schema | None) -> dict[str, AnyIndex]:
    """Every index of ``schema`` by ``"table.index"``."""
    if schema is None:
        return {}
    return {f"{table}.{index.name}": index for table, d in schema.tables.items() for index in d.all_indexes()}


def _built(index: AnyIndex | None) -> AnyIndex | None:
    """What an index holds, whether staged or not: a staged index enabled by a deploy is created, not removed
    (a redefined one is both)."""
    return None if index is None else replace(index, staged=False)

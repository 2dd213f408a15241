"""Which index a query reads: a table's declared or built-in index, resolved against a snapshot's schema.

Responsibilities:

- resolve an index name to its :class:`~zapnb.index.IndexSpec` (``by_id`` and ``by_creation_time`` always;
  declared ones from the active schema), with Convex's errors for an unknown or staged index;
- keep each declared spec once per schema, table and index (a spec builds its key function when made).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from zapnb.errors import IndexNotFoundError, IndexStagedError
from zapnb.index import IndexSpec
from zapnb.schema import table_definition

if TYPE_CHECKING:
    from zapnb.catalog import Snapshot
    from zapnb.schema import Schema

__all__ = ["declared_index", "resolve_index"]


def resolve_index(snapshot: Snapshot, table: str, name: str) -> IndexSpec:
    """The spec of index ``name`` of ``table`` a query reads at ``snapshot``: the table's own when it has that
    index as declared, else the declared one (:class:`~zapnb.errors.IndexNotFoundError` or
    :class:`~zapnb.errors.IndexStagedError` when there is none to read)."""
    spec = declared_index(snapshot, table, name)
    state = snapshot.tables.get(table)
    if state is not None and name in state.indexes and state.indexes[name][0] == spec:
        return state.indexes[name][0]  # the table's own spec: its key function is already built
    return spec


_DECLARED: dict[tuple[int, str, str], tuple[Schema | None, IndexSpec]] = {}
_DECLARED_MOST: Final = 1024


def declared_index(snapshot: Snapshot, table: str, name: str) -> IndexSpec:
    """The spec of a declared index (built once per schema, table and index: an :class:`IndexSpec` makes its
    key function when it is made)."""
    schema = snapshot.catalog.schema
    known = _DECLARED.get((id(schema), table, name))
    if known is not None and known[0] is schema:
        return known[1]
    spec = _new_declared_index(snapshot, table, name)
    if len(_DECLARED) >= _DECLARED_MOST:
        _DECLARED.clear()
    _DECLARED[(id(schema), table, name)] = (schema, spec)
    return spec


def _new_declared_index(snapshot: Snapshot, table: str, name: str) -> IndexSpec:
    if name == "by_id":
        return IndexSpec.by_id()
    if name == "by_creation_time":
        return IndexSpec.by_creation_time()
    definition = table_definition(snapshot.catalog.schema, table)
    declared = {} if definition is None else {index.name: index for index in definition.indexes}
    if name not in declared:
        raise IndexNotFoundError(
            f"Index {table}.{name} not found.",
            table=table,
            index=name,
            available=("by_creation_time", "by_id", *sorted(declared)),
        )
    if declared[name].staged:
        raise IndexStagedError(
            f"Index {table}.{name} is currently staged and not available to query until it is enabled. "
            "Deploy the schema with this index's staged=False to enable it.",
            table=table,
            index=name,
        )
    return IndexSpec(name, declared[name].fields)

"""Building a table's indexes.

Responsibilities: the two system indexes every table has (:func:`system_indexes`), the database indexes a
table definition declares (:func:`user_index_specs`), and building one over the documents a table holds at a
commit (:func:`build_index`: a deploy's backfill, with a progress bar for long builds).

Examples
--------
>>> sorted(system_indexes())
['by_creation_time', 'by_id']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zapnb.index import IndexData, IndexSpec
from zapnb.progress import progress

if TYPE_CHECKING:
    from zapnb.tablestate import TableState

__all__ = ["build_index", "index_label", "system_indexes", "user_index_specs"]


def system_indexes(table: str = "") -> dict[str, tuple[IndexSpec, IndexData]]:
    """Fresh, empty ``by_id`` and ``by_creation_time`` indexes (of ``table``, which names them in errors)."""
    specs = (IndexSpec.by_id(), IndexSpec.by_creation_time())
    return {
        spec.name: (spec, IndexData.build([], [], lsn=0, name=index_label(table, spec))) for spec in specs
    }


def index_label(table: str, spec: IndexSpec) -> str:
    """How errors name an index: ``table.index`` (just the index's name when the table is not known)."""
    return f"{table}.{spec.name}" if table else spec.name


def user_index_specs(definition: Any) -> list[IndexSpec]:
    """The database indexes a table definition declares (search and vector indexes are separate)."""
    return [IndexSpec(name=i.name, fields=tuple(i.fields), kind="user") for i in definition.indexes]


def build_index(state: TableState, spec: IndexSpec, lsn: int, *, show_progress: bool = False) -> IndexData:
    """Build ``spec`` over the documents ``state`` holds at ``lsn`` (a progress bar for long builds)."""
    data = IndexData.build([], [], lsn=0, name=index_label(state.name, spec))
    added = []
    with progress(state.count(lsn), f"building {state.name}.{spec.name}", enabled=show_progress) as bar:
        for doc in state.documents(lsn):
            added.append((spec.key_for(doc), str(doc["_id"])))
            bar.update(1)
    if added:
        data.apply(lsn, [], added)
    return data

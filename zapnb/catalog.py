"""What a snapshot of the database is: the catalog (the active schema and the tables' numbers) and the table
states at one commit.

Responsibilities:

- :class:`Catalog`: the active schema (``None`` before the first deploy) and every table's number;
- :class:`Snapshot`: a consistent view at one LSN, the table states that answer reads at it, and its catalog;
- :func:`next_table_number`: the number a new table gets.

Plain data, shared by the engine, its checkpoints and every reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zapnb.ids import FIRST_USER_TABLE_NUMBER
from zapnb.schema import Schema

if TYPE_CHECKING:
    from zapnb.tablestate import TableState

__all__ = ["Catalog", "Snapshot", "next_table_number"]


@dataclass(frozen=True)
class Catalog:
    """The active schema (``None`` before the first deploy) and every table's number."""

    schema: Schema | None = None
    numbers: Mapping[str, int] = field(default_factory=dict)


def next_table_number(numbers: Mapping[str, int]) -> int:
    """The number a new table gets, given the tables numbered so far (user tables start at 10001)."""
    return max(numbers.values(), default=FIRST_USER_TABLE_NUMBER - 1) + 1


@dataclass(frozen=True)
class Snapshot:
    """A consistent view of the database at one commit: reads at ``lsn`` see exactly the commits up to it."""

    lsn: int
    tables: Mapping[str, TableState]
    catalog: Catalog

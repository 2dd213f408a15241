"""What a snapshot of the database is: the catalog (the active schema and the tables' numbers) and the table
states at one commit.

Responsibilities:

- :class:`Catalog`: the active schema (``None`` before the first deploy) and every table's number;
- :class:`TableNumbers`: the tables' numbers, remembering the highest number ever given, so that a deleted
  table's number is never given again;
- :class:`Snapshot`: a consistent view at one LSN, the table states that answer reads at it, and its catalog;
- :func:`next_table_number`: the number a new table gets.

Plain data, shared by the engine, its checkpoints and every reader.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zapnb.ids import FIRST_USER_TABLE_NUMBER
from zapnb.schema import Schema

if TYPE_CHECKING:
    from zapnb.tablestate import TableState

__all__ = ["Catalog", "Snapshot", "TableNumbers", "highest_number", "next_table_number"]


class TableNumbers(dict[str, int]):
    """Every table's number, and ``highest``: the highest number a table ever had, deleted tables' included.

    A table's number is encoded in its document IDs, so a number is never given twice: an ID of a deleted
    table must not become an ID of a later one. ``highest`` survives in the log (the numbers of the records
    that created tables) and in ``checkpoint.json``. Treat it as read-only: :meth:`adding` and :meth:`without`
    make new ones.

    Examples
    --------
    >>> numbers = TableNumbers({"notes": 10001, "tags": 10002}).without("tags")
    >>> dict(numbers), numbers.highest, next_table_number(numbers)
    ({'notes': 10001}, 10002, 10003)
    >>> dict(numbers.adding(["tags", "notes"]))
    {'notes': 10001, 'tags': 10003}
    """

    __slots__ = ("highest",)

    def __init__(self, numbers: Mapping[str, int] | None = None, highest: int = 0) -> None:
        super().__init__(numbers or {})
        self.highest: int = max(highest, FIRST_USER_TABLE_NUMBER - 1, *self.values())

    def adding(self, names: Iterable[str]) -> TableNumbers:
        """These numbers, and a new one for each of ``names`` that has none yet (in order)."""
        numbers, top = dict(self), self.highest
        for name in names:
            if name not in numbers:
                top += 1
                numbers[name] = top
        return TableNumbers(numbers, top)

    def without(self, name: str) -> TableNumbers:
        """These numbers without ``name``'s (its number stays taken)."""
        return TableNumbers({n: number for n, number in self.items() if n != name}, self.highest)


@dataclass(frozen=True)
class Catalog:
    """The active schema (``None`` before the first deploy) and every table's number."""

    schema: Schema | None = None
    numbers: TableNumbers = field(default_factory=TableNumbers)


def highest_number(numbers: Mapping[str, int]) -> int:
    """The highest number a table of ``numbers`` has or had (deleted ones' too, for :class:`TableNumbers`)."""
    known = numbers.highest if isinstance(numbers, TableNumbers) else FIRST_USER_TABLE_NUMBER - 1
    return max(known, FIRST_USER_TABLE_NUMBER - 1, *numbers.values())


def next_table_number(numbers: Mapping[str, int]) -> int:
    """The number a new table gets, given the tables numbered so far (user tables start at 10001): above every
    number a table ever had, deleted tables' included, when ``numbers`` is a catalog's :class:`TableNumbers`
    (or a plain dict of one's tables and of tables numbered by this function since)."""
    return highest_number(numbers) + 1


@dataclass(frozen=True)
class Snapshot:
    """A consistent view of the database at one commit: reads at ``lsn`` see exactly the commits up to it."""

    lsn: int
    tables: Mapping[str, TableState]
    catalog: Catalog

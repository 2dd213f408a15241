"""What ``query.explain()`` returns: how a query ran (:class:`Explain`), and the query orders (:data:`Order`).

Examples
--------
>>> print(Explain("tasks", "by_creation_time", ("_creationTime",), "all", "asc", (), 3, 3, None))
table tasks, index by_creation_time ['_creationTime'], order asc
range: all
scanned 3 documents, returned 3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Explain", "Order"]

Order = Literal["asc", "desc"]
"""The order of a query's rows along its index."""


@dataclass(frozen=True)
class Explain:
    """How a query ran: what ``query.explain()`` returns.

    Attributes
    ----------
    table, index:
        The table and the index read.
    index_fields:
        The fields the index orders by (``_creationTime`` last).
    range:
        The index range in builder syntax, with values as compared (``"all"``: the whole index).
    order:
        ``"asc"`` or ``"desc"``.
    filters:
        The filter expressions, as text.
    scanned:
        Documents read from the index range (every document for a filter; otherwise the ones returned).
    returned:
        Documents the query returned.
    advice:
        What to change when the query reads far more than it returns, else ``None``.
    """

    table: str
    index: str
    index_fields: tuple[str, ...]
    range: str
    order: Order
    filters: tuple[str, ...]
    scanned: int
    returned: int
    advice: str | None

    def __str__(self) -> str:
        lines = [
            f"table {self.table}, index {self.index} {list(self.index_fields)}, order {self.order}",
            f"range: {self.range}",
            *(f"filter: {text}" for text in self.filters),
            f"scanned {self.scanned} documents, returned {self.returned}",
        ]
        return "\n".join(lines if self.advice is None else [*lines, self.advice])

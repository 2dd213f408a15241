"""Rows of a Polars frame by position, fast when they are few.

Responsibilities:

- :class:`Gatherer`: the rows of one frame at some positions, in the order given.

``DataFrame.gather`` (and ``frame[positions]``) hands every call to Polars' thread pool, one task per column;
for the few rows a query returns that hand-off is most of the cost. Measured on this project's 2-core machine,
1M messages in 9 columns: 50 rows take 30 µs through ``frame[positions]`` (p99 110 µs) and 11 µs column by
column on the calling thread (p99 23 µs); at 10,000 rows they cost about the same, and from 50,000 rows on the
pool wins. So up to :data:`COLUMN_BY_COLUMN` rows each column is gathered on the calling thread.

Doing that needs the Rust-side objects under Polars' Python classes (``Series._s``, ``DataFrame._df``,
``DataFrame._from_pydf``), which Polars does not promise to keep. The positions become a Polars series the
same way (the Rust-side ``new_opt_u32``: 0.7 µs for 50 positions, where ``pl.Series(positions,
dtype=pl.UInt32)`` takes 6 µs). A :class:`Gatherer` checks for them once and
falls back to ``DataFrame.gather`` when they are not there, so a Polars release that moves them makes queries
slower, never wrong (the tests run both ways).

Examples
--------
>>> import polars as pl
>>> rows = Gatherer(pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}))
>>> rows.gather([2, 0]).to_dicts()
[{'a': 3, 'b': 'z'}, {'a': 1, 'b': 'x'}]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import polars as pl

__all__ = ["COLUMN_BY_COLUMN", "Gatherer", "Positions"]

Positions: TypeAlias = "Sequence[int] | npt.NDArray[np.int64]"
"""Row numbers: a sequence of ints or a NumPy array."""

COLUMN_BY_COLUMN: Final = 20_000
"""Up to this many rows, columns are gathered one by one on the calling thread."""

_AS_LIST_UP_TO: Final = 256
"""Up to this many positions given as an array, they go to Polars as a list: ``tolist`` and Polars' list
constructor take about 2 us for 50, against 13 us for a ``UInt32`` series cast from the array."""


class Gatherer:
    """Gathers rows of ``frame`` by position (made once per frame; cheap to call many times).

    Parameters
    ----------
    frame:
        The frame to gather from, best with one chunk per column.
    column_by_column:
        Whether small gathers go column by column (``False`` always uses ``DataFrame.gather``).
    """

    __slots__ = ("_columns", "_make", "_series", "frame")

    def __init__(self, frame: pl.DataFrame, *, column_by_column: bool = True) -> None:
        self.frame = frame
        self._columns: list[Any] | None = None
        self._make: Any = None
        self._series: Any = None
        if column_by_column:
            self._columns, self._make, self._series = _internals(frame)

    def gather(self, positions: Positions) -> pl.DataFrame:
        """The rows at ``positions`` (each in ``range(frame.height)``), in that order."""
        import polars as pl

        if self._columns is None or len(positions) > COLUMN_BY_COLUMN:
            return self.frame.gather(pl.Series(positions, dtype=pl.UInt32))
        if not isinstance(positions, list) and len(positions) <= _AS_LIST_UP_TO:
            import numpy as np

            # a few positions: through a list is 10 us faster than a cast
            positions = positions.tolist() if isinstance(positions, np.ndarray) else list(positions)
        if isinstance(positions, list):
            taken = self._series.new_opt_u32("", positions, True)
        else:
            taken = pl.Series(positions, dtype=pl.UInt32)._s
        frame: pl.DataFrame = pl.DataFrame._from_pydf(
            self._make([column.gather_with_series(taken) for column in self._columns])
        )
        return frame


def _internals(frame: pl.DataFrame) -> tuple[list[Any] | None, Any, Any]:
    """The frame's Rust-side columns, the class that joins columns into a frame and the Rust-side series
    class, or ``(None, None, None)``.

    Tried once on a row: any mismatch with what this Polars has means ``DataFrame.gather`` is used instead.
    """
    import polars as pl

    try:
        columns = [series._s for series in frame.get_columns()]
        make = type(frame._df)
        series = type(columns[0])
        some = series.new_opt_u32("", [0] if frame.height else [], True)
        tried = pl.DataFrame._from_pydf(make([column.gather_with_series(some) for column in columns]))
    except Exception:  # whatever this Polars lacks, the public path still works
        return None, None, None
    if not isinstance(tried, pl.DataFrame) or tried.schema != frame.schema:
        return None, None, None
    return columns, make, series

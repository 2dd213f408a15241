"""The kernel side of a live table: one result as a frame, its sort orders, what changed, and windows of rows.

Responsibilities:

- :func:`as_frame`: a watched result as a Polars frame. A frame is taken as it is; a list of documents
  (dicts with ``_id`` and ``_creationTime``) goes through zapnb's own inference
  (:func:`zapnb.frames.inferred_frame`), other lists of dicts through Polars; anything else raises
  :class:`~zapnb.errors.InvalidQueryError`;
- :class:`TableSnapshot`: one result, immutable. It knows its row keys (``_id``, or for a frame without one
  the row's position), sorts on demand (a permutation per sort, cached), cuts windows of display rows and
  encodes them as Arrow IPC stream bytes (:meth:`TableSnapshot.window`), lists the keys of a range of rows
  (range selection), and renders the first rows as a plain HTML table (the fallback for nbval and GitHub);
- :func:`changed_keys`: the keys of the rows inserted or changed from one snapshot to the next;
- the display rules (:func:`cell_text`): numbers, booleans, strings and nulls travel with their type; nested
  values, bytes and every other type travel as display text, formatted the way the browser formats the rest.

Nothing here holds a lock or starts a thread: :mod:`zapnb.widgets` owns both. A snapshot is never mutated
after it is made (its caches are filled idempotently), so any thread may read it.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from zapnb.errors import InvalidQueryError

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "HTML_ROWS",
    "MAX_CHANGED",
    "MAX_TEXT",
    "MAX_WINDOW",
    "Sort",
    "TableSnapshot",
    "Window",
    "as_frame",
    "cell_text",
    "changed_keys",
    "count_text",
    "display_frame",
    "encode_ipc",
    "parse_sort",
    "sort_text",
]

Direction = Literal["asc", "desc"]
#: A sort order: ``(column, "asc" | "desc")``, or ``None`` for the result's own order.
Sort = tuple[str, Direction] | None

MAX_WINDOW: Final = 1_000
"""The most rows one window request returns."""
MAX_CHANGED: Final = 1_000
"""The most changed keys one update notice lists (``truncated`` says when more rows changed)."""
MAX_TEXT: Final = 1_000
"""Display text longer than this many characters is cut, ending in ``…`` (the kernel keeps the full value)."""
HTML_ROWS: Final = 10
"""How many rows the HTML fallback shows."""
HTML_TEXT: Final = 100
"""Cells of the HTML fallback are cut at this many characters."""
SYSTEM_FIELDS: Final = ("_id", "_creationTime")


# --- results as frames --------------------------------------------------------------------------------------


def as_frame(result: Any, name: str) -> pl.DataFrame:
    """``result`` as a Polars frame, or :class:`~zapnb.errors.InvalidQueryError` saying what to return.

    Examples
    --------
    >>> as_frame([{"text": "hi", "n": 1}], "notes").columns
    ['text', 'n']
    >>> as_frame(3, "count_notes")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zapnb.errors.InvalidQueryError: LiveTable shows ... and 'count_notes' returned an int. ...
    """
    import polars as pl

    if isinstance(result, pl.DataFrame):
        return result
    if isinstance(result, list | tuple) and all(isinstance(row, Mapping) for row in result):
        return _rows_frame(list(result), name)
    raise InvalidQueryError(
        f"LiveTable shows a Polars DataFrame or a list of dicts, and {name!r} returned "
        f"{_article(type(result).__name__)}. Return a query's .collect() (or a list of documents) from the "
        "query function, or compute a single value with db.run() instead.",
        method="LiveTable",
    )


def _rows_frame(rows: list[Mapping[str, Any]], name: str) -> pl.DataFrame:
    import polars as pl

    from zapnb.errors import InvalidValueError
    from zapnb.frames import inferred_frame

    if not rows:
        return pl.DataFrame()
    if all("_id" in row and "_creationTime" in row for row in rows):
        with contextlib.suppress(InvalidValueError):  # not zapnb values (a datetime, say): Polars types them
            return inferred_frame([dict(row) for row in rows])
    try:
        return pl.from_dicts(rows, infer_schema_length=None)
    except Exception as err:  # Polars raises several types for rows it cannot type
        raise InvalidQueryError(
            f"LiveTable could not make a frame of the dicts {name!r} returned ({err}). Return a Polars "
            "DataFrame instead, for example a query's .collect().",
            method="LiveTable",
        ) from err


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


# --- sorting ------------------------------------------------------------------------------------------------


def parse_sort(value: Any, columns: Sequence[str]) -> Sort:
    """A sort as the browser and the ``sort`` trait hold it (``[]`` or ``[column, "asc"|"desc"]``), checked.

    Examples
    --------
    >>> parse_sort(["text", "desc"], ["_id", "text"])
    ('text', 'desc')
    >>> parse_sort([], ["text"]) is None
    True
    """
    if isinstance(value, list | tuple) and len(value) == 0:
        return None
    if not (isinstance(value, list | tuple) and len(value) == 2 and value[1] in ("asc", "desc")):
        raise InvalidQueryError(
            f"A LiveTable sort is [] or [column, 'asc' | 'desc'], not {value!r}.", method="sort"
        )
    column, direction = value
    if column not in columns:
        raise InvalidQueryError(
            f"The table has no column {column!r} to sort by; its columns are {list(columns)}.", method="sort"
        )
    return (str(column), "asc" if direction == "asc" else "desc")


def sort_text(sort: Sort) -> str:
    """``"none"``, or the column and an arrow: ``"text ↑"`` (ascending), ``"text ↓"`` (descending)."""
    if sort is None:
        return "none"
    return f"{sort[0]} {'↑' if sort[1] == 'asc' else '↓'}"


def count_text(rows: int) -> str:
    """``"1 row"``, ``"3 rows"``, ``"1,000,000 rows"``: how the status line and the fallback count rows."""
    return f"{rows:,} {'row' if rows == 1 else 'rows'}"


# --- display values -----------------------------------------------------------------------------------------


def cell_text(value: Any, *, float32: bool = False) -> str:
    """How a cell shows ``value``: the browser formats the typed columns the same way.

    Strings show as they are; ``null``, ``true``/``false``; integers in full; floats as Python's ``repr``
    (``1.0``, ``nan``, ``1e+16``); bytes as their Python literal; arrays and objects as a literal with quoted
    strings. ``float32`` formats a float with the fewest digits that read back as the same 32-bit float.

    Examples
    --------
    >>> [cell_text(x) for x in ["hi", None, True, 3, 1.0, float("nan"), b"\\x00a"]]
    ['hi', 'null', 'true', '3', '1.0', 'nan', "b'\\\\x00a'"]
    >>> cell_text({"tags": ["a", "b"], "n": None})
    '{"tags": ["a", "b"], "n": null}'
    """
    if isinstance(value, str):
        return value
    if float32 and isinstance(value, float):
        return _float32_text(value)
    return _literal(value)


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes | bytearray | memoryview):
        return repr(bytes(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}: {_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return str(value)


def _float32_text(value: float) -> str:
    if not math.isfinite(value):
        return repr(value)
    for digits in range(1, 10):
        shorter = float(f"{value:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", shorter))[0] == value:
            return repr(shorter)
    return repr(value)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _typed_dtypes() -> tuple[type, ...]:
    """The dtypes a window sends with their type (the browser's Arrow decoder reads exactly these)."""
    import polars as pl

    return (
        pl.Boolean,
        pl.Int8,
        pl.Int16,
        pl.Int32,
        pl.Int64,
        pl.UInt8,
        pl.UInt16,
        pl.UInt32,
        pl.UInt64,
        pl.Float32,
        pl.Float64,
        pl.String,
        pl.Null,
    )


def display_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` ready to send: typed columns kept (long strings cut), every other column as display text."""
    import polars as pl

    typed = _typed_dtypes()
    columns = []
    for series in rows.get_columns():
        dtype = series.dtype
        if isinstance(dtype, pl.String):
            cut = pl.when(series.str.len_chars() > MAX_TEXT).then(series.str.slice(0, MAX_TEXT - 1) + "…")
            columns.append(pl.select(cut.otherwise(series).alias(series.name)).to_series())
        elif isinstance(dtype, typed):
            columns.append(series)
        elif isinstance(dtype, pl.Categorical | pl.Enum):
            columns.append(series.cast(pl.String))
        else:
            texts = [None if v is None else _cut(cell_text(v), MAX_TEXT) for v in series.to_list()]
            columns.append(pl.Series(series.name, texts, dtype=pl.String))
    return pl.DataFrame(columns)


def encode_ipc(frame: pl.DataFrame) -> bytes:
    """``frame`` as Arrow IPC stream bytes, strings as LargeUtf8 (what the browser's decoder reads)."""
    import polars as pl

    buffer = io.BytesIO()
    frame.write_ipc_stream(buffer, compat_level=pl.CompatLevel.oldest())
    return buffer.getvalue()


# --- snapshots ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One window of rows: the reply's JSON fields and the Arrow IPC bytes of its rows."""

    content: dict[str, Any]
    data: bytes


class TableSnapshot:
    """One result of the watched query, as the live table shows it. Immutable; safe to read from any thread.

    Attributes
    ----------
    version:
        1 for the first result, one more for each later one.
    frame:
        The result (for a frame without ``_id``, with the row's position appended as the key column).
    key:
        The column whose values identify rows: ``_id``, or the appended position column.
    columns:
        The columns shown, in order (the result's columns).
    """

    def __init__(self, version: int, frame: pl.DataFrame, json_columns: frozenset[str] = frozenset()) -> None:
        import polars as pl

        self.version = version
        self.json_columns = json_columns  # columns of zapnb JSON text: sorted by their values' total order
        self.columns: list[str] = list(frame.columns)
        if "_id" in frame.columns and isinstance(frame.schema["_id"], pl.String):
            self.key = "_id"
            self.frame = frame
        else:
            self.key = _unused_name("_row", frame.columns)
            self.frame = frame.with_row_index(self.key).select([*frame.columns, self.key])
        self._orders: dict[Sort, pl.Series] = {}
        self._hashes: pl.Series | None = None

    @property
    def row_count(self) -> int:
        """How many rows the result has."""
        return self.frame.height

    def parse_sort(self, value: Any) -> Sort:
        """``value`` as a sort of this result's columns (see :func:`parse_sort`)."""
        return parse_sort(value, self.columns)

    def order(self, sort: Sort) -> pl.Series | None:
        """The row positions in ``sort`` order (``None``: the result's own order). Nulls sort first when
        ascending and last when descending; ties keep the result's order."""
        import polars as pl

        if sort is None:
            return None
        cached = self._orders.get(sort)
        if cached is None:
            column, direction = sort
            descending = direction == "desc"
            by = _total_order_keys(self.frame[column]) if column in self.json_columns else pl.col(column)
            try:
                cached = self.frame.select(
                    pl.arg_sort_by(by, descending=descending, nulls_last=descending, maintain_order=True)
                ).to_series()
            except pl.exceptions.PolarsError as err:
                raise InvalidQueryError(
                    f"Column {column!r} ({self.frame.schema[column]}) cannot be sorted: {err}", method="sort"
                ) from err
            self._orders = {sort: cached}  # one order at a time: a 1M-row order is 4 MB
        return cached

    def rows(self, offset: int, limit: int, sort: Sort) -> pl.DataFrame:
        """Rows ``offset`` to ``offset + limit`` in ``sort`` order, with every column (the key included)."""
        import polars as pl

        order = self.order(sort)
        if order is None:
            return self.frame.slice(offset, limit)
        return self.frame.select(pl.all().gather(order.slice(offset, limit)))

    def window(self, offset: int, limit: int, sort: Sort) -> Window:
        """The reply to a window request: rows as Arrow IPC bytes, and what the browser needs to show them."""
        rows = self.rows(offset, min(limit, MAX_WINDOW), sort)
        sent = self.columns if self.key in self.columns else [*self.columns, self.key]
        content = {
            "version": self.version,
            "row_count": self.row_count,
            "offset": offset,
            "count": rows.height,
            "columns": [{"name": name, "dtype": str(self.frame.schema[name])} for name in self.columns],
            "key": self.key,
            "sort": [] if sort is None else list(sort),
            "error": None,
        }
        return Window(content, encode_ipc(display_frame(rows.select(sent))))

    def keys(self, start: int, stop: int, sort: Sort) -> list[str]:
        """The keys of rows ``start`` to ``stop`` (both included, either order) in ``sort`` order."""
        first, last = sorted((max(start, 0), max(stop, 0)))
        rows = self.rows(first, last - first + 1, sort)
        return [str(key) for key in rows[self.key].to_list()]

    def existing(self, keys: Sequence[str]) -> list[str]:
        """``keys`` without the ones no row of this result has (order kept)."""
        import polars as pl

        if not keys:
            return []
        present = self.frame.get_column(self.key).cast(pl.String)
        found = set(present.filter(present.is_in(pl.Series(list(keys), dtype=pl.String).implode())).to_list())
        return [key for key in keys if key in found]

    def row_hashes(self) -> pl.Series | None:
        """A hash of each row's shown values (``None`` when a column's type cannot be hashed)."""
        import polars as pl

        if self._hashes is None:
            try:
                self._hashes = self.frame.select(self.columns).hash_rows()
            except pl.exceptions.PolarsError:
                return None
        return self._hashes

    def html(self, sort: Sort) -> str:
        """The first rows as a plain HTML table and the row count: what nbval and GitHub show.

        ``_id`` and ``_creationTime`` are left out (they differ on every run of a notebook), unless they are
        all there is.
        """
        import polars as pl

        shown = [c for c in self.columns if c not in SYSTEM_FIELDS] or self.columns
        rows = self.rows(0, HTML_ROWS, sort).select(shown)
        float32 = [isinstance(rows.schema[c], pl.Float32) for c in shown]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(_cut(cell_text(v, float32=f), HTML_TEXT))}</td>"
                for v, f in zip(row, float32, strict=True)
            )
            + "</tr>"
            for row in rows.iter_rows()
        )
        status = count_text(self.row_count)
        if sort is not None:
            status += f" · sorted by {html.escape(sort_text(sort))}"
        table = f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        return f'<table class="zapnb-livetable-static">{table}</table><p>{status}</p>'


def _unused_name(name: str, taken: Sequence[str]) -> str:
    while name in taken:
        name = "_" + name
    return name


def _total_order_keys(column: pl.Series) -> pl.Series:
    """A column of zapnb JSON text as each value's order-preserving key (:func:`zapnb.keys.encode_value`),
    so that it sorts in the total order (``-1 < 2 < 10 < "a"``), not as text."""
    import polars as pl

    from zapnb.jsonvalues import decode_stored_json
    from zapnb.keys import encode_value

    keys = [None if text is None else encode_value(decode_stored_json(text)) for text in column.to_list()]
    return pl.Series(column.name, keys, dtype=pl.Binary)


def changed_keys(old: TableSnapshot, new: TableSnapshot) -> tuple[list[str], bool]:
    """The keys of ``new``'s rows that ``old`` did not have with the same values: inserted or changed rows.

    Returns at most :data:`MAX_CHANGED` keys (in ``new``'s order) and whether more rows changed. A change of
    the columns (a deploy) changes every row.
    """
    import polars as pl

    new_hashes, old_hashes = new.row_hashes(), old.row_hashes()
    keys = new.frame.get_column(new.key)
    if new_hashes is None or old_hashes is None or old.frame.schema != new.frame.schema:
        changed = keys
    else:
        before = old.row_count
        old_keys = old.frame.get_column(old.key)
        if new.row_count >= before and keys.head(before).equals(old_keys):  # in place, or appended
            same = pl.concat(
                [new_hashes.head(before) == old_hashes, pl.repeat(False, new.row_count - before, eager=True)]
            )
            changed = keys.filter(~same)
        else:
            changed = keys.filter(~new_hashes.is_in(old_hashes.implode()))
    listed = [str(key) for key in changed.head(MAX_CHANGED).to_list()]
    return listed, changed.len() > MAX_CHANGED

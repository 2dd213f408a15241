"""``zapnb.LiveTable``: a query's result as a live, virtualized table in Jupyter.

Responsibilities:

- subscribe to the query (``db.watch``) and keep its latest result, a :class:`~zapnb.tableview.TableSnapshot`;
- answer the browser's messages: a window of rows (Arrow IPC bytes in a binary buffer) and a range selection;
- push a small update notice when the result changes (version, row count, the keys of changed rows), at most
  one per :attr:`LiveTable.notice_interval`, the latest state winning;
- sync the user's ``selection`` and ``sort`` with the browser, and show a deterministic ``repr`` and an HTML
  fallback for notebooks viewed without the widget (nbval, GitHub).

The watch callback runs on a zapnb thread and browser messages on the kernel's comm thread, possibly at the
same time: the shared state (the current snapshot and the pending notice) is guarded by one lock, and a
snapshot itself never changes. The browser side is ``static/livetable.js`` (with its Arrow decoder) and
``static/livetable.css``; the protocol is documented in ``docs/live-tables.md``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from zapnb.errors import InvalidQueryError, ZapError
from zapnb.functions import Function
from zapnb.queries import Query
from zapnb.tableview import MAX_CHANGED, Sort, TableSnapshot, as_frame, changed_keys, count_text, sort_text

if TYPE_CHECKING:
    import polars as pl

    from zapnb.db import Database
    from zapnb.reactive import Subscription

__all__ = ["NOTICE_INTERVAL", "LiveTable"]

STATIC = Path(__file__).parent / "static"
NOTICE_INTERVAL = 0.05
"""Seconds between two update notices at most (a burst of commits in between is one notice)."""


@dataclass
class _Notice:
    """The update notice waiting to be sent: the latest state, and every change since the last notice."""

    version: int = 0
    row_count: int = 0
    changed: dict[str, None] = field(default_factory=dict)  # ordered set of keys
    truncated: bool = False
    error: str | None = None
    waiting: bool = False

    def add(self, version: int, row_count: int, changed: list[str], truncated: bool) -> None:
        self.version, self.row_count, self.error, self.waiting = version, row_count, None, True
        for key in changed:
            if len(self.changed) >= MAX_CHANGED:
                self.truncated = True
                break
            self.changed[key] = None
        self.truncated = self.truncated or truncated

    def fail(self, error: str, version: int, row_count: int) -> None:
        self.version, self.row_count, self.error, self.waiting = version, row_count, error, True

    def take(self) -> dict[str, Any]:
        content = {
            "type": "update",
            "version": self.version,
            "row_count": self.row_count,
            "changed": list(self.changed),
            "truncated": self.truncated,
            "error": self.error,
        }
        self.changed, self.truncated, self.waiting = {}, False, False
        return content


class LiveTable(anywidget.AnyWidget):
    """A query's result as a live table: it stays in the kernel, and the browser shows the visible rows.

    Parameters
    ----------
    db:
        The database.
    fn_or_query:
        A ``db.query(...)`` (shows its ``collect()`` frame), a ``@zapnb.query`` function, or a function of
        ``ctx``. A function may return a Polars frame or a list of dicts (documents, say).
    **args:
        The function's arguments.

    Attributes
    ----------
    selection:
        The ``_id`` of each selected row (a row's position, as text, for a result without ``_id``): click a
        row to select it, ctrl/cmd-click to add or remove one, shift-click for a range. Setting it from
        Python selects in the browser. Rows that leave the result leave the selection.
    sort:
        ``[]`` (the result's own order) or ``[column, "asc" | "desc"]``. Clicking a header cycles ascending,
        descending, unsorted. The sort runs in the kernel and holds across updates.
    notice_interval:
        Seconds between two update notices at most (class default :data:`NOTICE_INTERVAL`).

    Examples
    --------
    >>> import tempfile, zapnb
    >>> from zapnb.widgets import LiveTable
    >>> with tempfile.TemporaryDirectory() as data, zapnb.connect(data) as db:
    ...     _ = db.insert_many("messages", [{"text": "hi", "n": 1}, {"text": "yo", "n": 2}])
    ...     table = LiveTable(db, db.query("messages"))
    ...     table.sort = ["n", "desc"]
    ...     print(repr(table))
    ...     print(table.frame["text"].to_list())
    ...     table.close()
    LiveTable(messages: 2 rows × 4 columns, sorted by n ↓)
    ['hi', 'yo']
    """

    # The text, not the Path: anywidget connects every instance to a class-wide watcher of a file, which
    # would keep each LiveTable (and its subscription) alive for good.
    _esm = (STATIC / "livetable.js").read_text(encoding="utf-8")
    _css = (STATIC / "livetable.css").read_text(encoding="utf-8")

    selection = traitlets.List(traitlets.Unicode()).tag(sync=True)
    sort = traitlets.List(traitlets.Unicode()).tag(sync=True)

    notice_interval: float = NOTICE_INTERVAL

    def __init__(
        self, db: Database, fn_or_query: Query | Function[..., Any] | Callable[..., Any], /, **args: Any
    ) -> None:
        self._lock = threading.Lock()
        self._name = _name_of(fn_or_query)
        self._snapshot: TableSnapshot | None = None
        self._notice = _Notice()
        self._timer: threading.Timer | None = None
        self._last_notice = float("-inf")
        self._closed = False
        self._subscription: Subscription | None = None
        self._json_columns = partial(_json_columns, db, fn_or_query)
        super().__init__()
        self.on_msg(self._receive)
        try:
            self._subscription = db.watch(fn_or_query, args, self._on_result, on_error=self._on_error)
        except BaseException:
            self.close()
            raise

    # --- what Python users see ------------------------------------------------------------------------------

    @property
    def frame(self) -> pl.DataFrame:
        """The latest result, as a Polars frame."""
        snapshot = self._current()
        return snapshot.frame.select(snapshot.columns)

    @property
    def following(self) -> bool:
        """Whether the table still follows its query (neither :meth:`stop` nor :meth:`close` was called)."""
        subscription = getattr(self, "_subscription", None)
        return subscription is not None and subscription.active and not self._closed

    def stop(self) -> None:
        """Stop following the query but keep the widget: its views go on showing, scrolling and sorting the
        last result (idempotent). :meth:`close` also closes the views and lets the result go."""
        subscription = getattr(self, "_subscription", None)
        if subscription is not None:
            subscription.unsubscribe()

    def close(self) -> None:
        """Stop following the query and close the widget in every view (idempotent)."""
        self.stop()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            with lock:
                self._closed = True
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
        super().close()

    def __repr__(self) -> str:
        snapshot = getattr(self, "_snapshot", None)
        if snapshot is None:
            return f"LiveTable({getattr(self, '_name', '?')}: no result)"
        size = f"{count_text(snapshot.row_count)} × {len(snapshot.columns)} column"
        size += "" if len(snapshot.columns) == 1 else "s"
        closed = ", closed" if self._closed else ""
        return f"LiveTable({self._name}: {size}, sorted by {sort_text(self._sort())}{closed})"

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The widget view, plus ``text/plain`` and ``text/html`` for viewers without widgets (nbval, GitHub).

        A closed widget has no view (ipywidgets then hides this method): :meth:`_repr_html_` remains.
        """
        bundle = super()._repr_mimebundle_(**kwargs)
        data, metadata = bundle if bundle is not None else ({"text/plain": repr(self)}, {})
        html = self._repr_html_()
        if html is not None:
            data["text/html"] = html
        return data, metadata

    def _repr_html_(self) -> str | None:
        """The first rows as a plain HTML table, and the row count."""
        snapshot = self._snapshot
        return None if snapshot is None else snapshot.html(self._sort())

    @traitlets.validate("sort")
    def _check_sort(self, proposal: Any) -> list[str]:
        value = list(proposal["value"])
        snapshot = getattr(self, "_snapshot", None)
        if snapshot is not None:
            snapshot.parse_sort(value)
        return value

    # --- following the query (zapnb's watch thread) ---------------------------------------------------------

    def _on_result(self, result: Any) -> None:
        frame = as_frame(result, self._name)  # the first result's error reaches the constructor's caller
        previous = self._snapshot
        json_columns = self._json_columns()
        if previous is None:
            self._snapshot = TableSnapshot(1, frame, json_columns)
            return
        snapshot = TableSnapshot(previous.version + 1, frame, json_columns)
        changed, truncated = changed_keys(previous, snapshot)
        with self._lock:
            self._snapshot = snapshot
            self._notice.add(snapshot.version, snapshot.row_count, changed, truncated)
            self._schedule()
        self._follow(snapshot)

    def _on_error(self, err: BaseException) -> None:
        snapshot = self._current()
        with self._lock:
            self._notice.fail(f"{type(err).__name__}: {err}", snapshot.version, snapshot.row_count)
            self._schedule()

    def _follow(self, snapshot: TableSnapshot) -> None:
        """Drop a sort by a column that is gone and selected rows that left the result."""
        if self.sort and self.sort[0] not in snapshot.columns:
            self.sort = []
        if self.selection:
            kept = snapshot.existing(self.selection)
            if kept != self.selection:
                self.selection = kept

    def _schedule(self) -> None:
        """Send the notice now, or when ``notice_interval`` has passed since the last one (lock held)."""
        if self._timer is not None or self._closed:
            return
        delay = self._last_notice + self.notice_interval - time.monotonic()
        if delay <= 0:
            self._send_notice()
            return
        self._timer = threading.Timer(delay, self._flush)
        self._timer.daemon = True
        self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._send_notice()

    def _send_notice(self) -> None:
        """Send the pending notice (lock held, so notices leave in version order)."""
        if not self._notice.waiting:
            return
        self._last_notice = time.monotonic()
        self.send(self._notice.take())

    # --- answering the browser (the kernel's comm thread) ---------------------------------------------------

    def _receive(self, _widget: Any, content: Any, buffers: list[bytes]) -> None:
        if not isinstance(content, Mapping):
            return
        kind = content.get("type")
        if kind == "window":
            self._send_window(content)
        elif kind == "select":
            self._select(content)

    def _send_window(self, request: Mapping[str, Any]) -> None:
        snapshot = self._current()
        reply: dict[str, Any] = {"type": "window", "view": request.get("view"), "seq": request.get("seq")}
        try:
            offset, limit = _count(request, "offset"), _count(request, "limit")
            window = snapshot.window(offset, limit, snapshot.parse_sort(request.get("sort", [])))
        except ZapError as err:
            reply.update(version=snapshot.version, row_count=snapshot.row_count, error=str(err))
            self.send(reply)
            return
        self.send({**reply, **window.content}, [window.data])

    def _select(self, request: Mapping[str, Any]) -> None:
        snapshot = self._current()
        try:
            start, stop = _count(request, "start"), _count(request, "stop")
            keys = snapshot.keys(start, stop, snapshot.parse_sort(request.get("sort", [])))
        except ZapError:
            return  # the browser asked about a sort or range that no longer exists: nothing to select
        if request.get("add"):
            keys = list(dict.fromkeys([*self.selection, *keys]))
        self.selection = keys

    # --- the current result and sort ------------------------------------------------------------------------

    def _current(self) -> TableSnapshot:
        snapshot = self._snapshot
        if snapshot is None:
            raise InvalidQueryError("This LiveTable has no result: its query failed.", method="LiveTable")
        return snapshot

    def _sort(self) -> Sort:
        """The ``sort`` trait as a sort of the current result (``None``: unsorted)."""
        snapshot = self._snapshot
        if snapshot is None or not self.sort:
            return None
        try:
            return snapshot.parse_sort(self.sort)
        except ZapError:
            return None


def _name_of(fn_or_query: Any) -> str:
    if isinstance(fn_or_query, Query):
        return fn_or_query.table
    if isinstance(fn_or_query, Function):
        return fn_or_query.name
    return str(getattr(fn_or_query, "__name__", "query"))


def _count(request: Mapping[str, Any], name: str) -> int:
    value = request.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InvalidQueryError(
            f"A LiveTable request needs {name} as a whole number from 0 to 2**63 - 1.", method="LiveTable"
        )
    return value


def _json_columns(db: Database, fn_or_query: Any) -> frozenset[str]:
    """The columns of a query's typed frame that hold zapnb's JSON (``v.any()``, records, mixed unions): they
    sort by the total order of their values, not by their text. Unknown (empty) for a function's result."""
    if not isinstance(fn_or_query, Query):
        return frozenset()
    from zapnb.schema import table_definition

    definition = table_definition(db.schema, fn_or_query.table)
    if definition is None:
        return frozenset()
    return frozenset(name for name, v in definition.column_validators().items() if v.stores_json())

"""zapnb.LiveTable: the widget protocol, on a real database, with only the comm to the browser faked.

The comm records every message the widget sends; messages from the browser are handed to it the way the
kernel does. A real-browser run of livetable.js against a real LiveTable is at the end (``slow``).
"""

from __future__ import annotations

import gc
import itertools
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import comm
import polars as pl
import pyarrow as pa
import pytest
from browser_support import chromium_executable, chromium_page
from comm.base_comm import BaseComm

import zapnb
from zapnb import v
from zapnb.db import Database
from zapnb.tableview import cell_text, display_frame, encode_ipc
from zapnb.widgets import LiveTable

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class RecordingComm(BaseComm):
    """The kernel's comm, recording what the widget publishes instead of sending it to a browser."""

    def __init__(self, **kwargs: Any) -> None:
        self.published: list[tuple[str, dict[str, Any], list[bytes], float]] = []
        self.lock = threading.Lock()
        super().__init__(**kwargs)

    def publish_msg(
        self,
        msg_type: str,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: list[bytes] | None = None,
        **keys: Any,
    ) -> None:
        with self.lock:
            self.published.append((msg_type, data or {}, [bytes(b) for b in buffers or []], time.monotonic()))

    def from_browser(self, data: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        """A message from the browser, as the kernel's comm manager delivers it."""
        self.handle_msg({"content": {"comm_id": self.comm_id, "data": data}, "buffers": buffers or []})

    def custom(self) -> list[tuple[dict[str, Any], list[bytes]]]:
        """The custom messages sent so far: content and buffers."""
        with self.lock:
            return [
                (d["content"], b)
                for t, d, b, _ in self.published
                if t == "comm_msg" and d["method"] == "custom"
            ]

    def notices(self) -> list[dict[str, Any]]:
        return [content for content, _ in self.custom() if content["type"] == "update"]

    def updates(self) -> list[dict[str, Any]]:
        """The trait updates sent to the browser."""
        with self.lock:
            return [
                d["state"] for t, d, _, _ in self.published if t == "comm_msg" and d["method"] == "update"
            ]


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> list[RecordingComm]:
    made: list[RecordingComm] = []

    def create(**kwargs: Any) -> RecordingComm:
        made.append(RecordingComm(**kwargs))
        return made[-1]

    monkeypatch.setattr(comm, "create_comm", create)
    return made


MESSAGES = zapnb.define_schema(
    {
        "messages": zapnb.define_table(
            {
                "text": v.string(),
                "n": v.int64(),
                "score": v.float64(),
                "ok": v.boolean(),
                "tags": v.array(v.string()),
                "raw": v.optional(v.bytes()),
            }
        )
    }
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with zapnb.connect(tmp_path, durability="process") as database:
        database.deploy(MESSAGES, progress=False)
        yield database


def message(n: int, text: str | None = None, **more: Any) -> dict[str, Any]:
    return {"text": text or f"m{n}", "n": n, "score": n / 2, "ok": n % 2 == 0, "tags": [f"t{n}"], **more}


@pytest.fixture
def table(db: Database, comms: list[RecordingComm]) -> Iterator[LiveTable]:
    widget = LiveTable(db, db.query("messages"))
    yield widget
    widget.close()


def comm_of(widget: LiveTable) -> RecordingComm:
    assert isinstance(widget.comm, RecordingComm)
    return widget.comm


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def ask_window(widget: LiveTable, offset: int = 0, limit: int = 100, sort: list[str] | None = None) -> Any:
    """Send a window request as the browser does; return the reply's content and its rows (from Arrow)."""
    recorder = comm_of(widget)
    before = len(recorder.custom())
    request = {"type": "window", "view": "v1", "seq": 7, "offset": offset, "limit": limit, "sort": sort or []}
    recorder.from_browser({"method": "custom", "content": request})
    replies = [(c, b) for c, b in recorder.custom()[before:] if c["type"] == "window"]
    assert len(replies) == 1
    content, buffers = replies[0]
    rows = pa.ipc.open_stream(buffers[0]).read_all() if buffers else None
    return content, rows


COLUMNS = [
    {"name": "_id", "dtype": "String"},
    {"name": "_creationTime", "dtype": "Float64"},
    {"name": "text", "dtype": "String"},
    {"name": "n", "dtype": "Int64"},
    {"name": "score", "dtype": "Float64"},
    {"name": "ok", "dtype": "Boolean"},
    {"name": "tags", "dtype": "List(String)"},
    {"name": "raw", "dtype": "Binary"},
]


# --- windows ------------------------------------------------------------------------------------------------


def test_window_request_gets_its_rows_as_arrow_in_a_binary_buffer(
    db: Database, comms: list[RecordingComm]
) -> None:
    ids = [db.insert("messages", message(1, raw=b"\x00\xff")), db.insert("messages", message(2))]
    widget = LiveTable(db, db.query("messages"))
    content, rows = ask_window(widget)
    assert content == {
        "type": "window",
        "view": "v1",
        "seq": 7,
        "version": 1,
        "row_count": 2,
        "offset": 0,
        "count": 2,
        "columns": COLUMNS,
        "key": "_id",
        "sort": [],
        "error": None,
    }
    assert rows.schema == pa.schema(
        [
            ("_id", pa.large_string()),
            ("_creationTime", pa.float64()),
            ("text", pa.large_string()),
            ("n", pa.int64()),
            ("score", pa.float64()),
            ("ok", pa.bool_()),
            ("tags", pa.large_string()),
            ("raw", pa.large_string()),
        ]
    )
    created = widget.frame["_creationTime"].to_list()
    assert rows.to_pylist() == [
        {"_id": ids[0], "_creationTime": created[0], "text": "m1", "n": 1, "score": 0.5, "ok": False,
         "tags": '["t1"]', "raw": "b'\\x00\\xff'"},
        {"_id": ids[1], "_creationTime": created[1], "text": "m2", "n": 2, "score": 1.0, "ok": True,
         "tags": '["t2"]', "raw": None},
    ]  # fmt: skip
    widget.close()


def test_window_slices_in_the_requested_sort(db: Database, table: LiveTable) -> None:
    db.insert_many("messages", [message(n) for n in range(250)])
    wait_for(lambda: table.frame.height == 250)
    content, rows = ask_window(table, offset=100, limit=3, sort=["n", "desc"])
    assert (content["offset"], content["count"], content["row_count"], content["sort"]) == (
        100,
        3,
        250,
        ["n", "desc"],
    )
    assert rows["n"].to_pylist() == [149, 148, 147]
    _, rows = ask_window(table, offset=248, limit=100)
    assert rows["n"].to_pylist() == [248, 249]


@pytest.mark.parametrize(
    ("request_fields", "error"),
    [
        ({"offset": -1, "limit": 10}, "needs offset as a whole number from 0 to 2**63 - 1"),
        ({"offset": 2**63, "limit": 10}, "needs offset as a whole number from 0 to 2**63 - 1"),
        ({"offset": 0, "limit": "10"}, "needs limit as a whole number from 0 to 2**63 - 1"),
        ({"offset": 0, "limit": 10, "sort": ["nope", "asc"]}, "The table has no column 'nope' to sort by"),
    ],
)
def test_bad_window_request_gets_an_error_reply(
    table: LiveTable, request_fields: dict[str, Any], error: str
) -> None:
    recorder = comm_of(table)
    recorder.from_browser(
        {"method": "custom", "content": {"type": "window", "view": "v", "seq": 1, **request_fields}}
    )
    (content, buffers) = recorder.custom()[-1]
    assert buffers == []
    assert content["type"] == "window"
    assert (content["view"], content["seq"], content["version"], content["row_count"]) == ("v", 1, 1, 0)
    assert error in content["error"]


def test_unknown_messages_are_ignored(table: LiveTable) -> None:
    recorder = comm_of(table)
    recorder.from_browser({"method": "custom", "content": {"type": "dance"}})
    recorder.from_browser({"method": "custom", "content": "text"})
    assert recorder.custom() == []


# --- update notices -----------------------------------------------------------------------------------------


def test_a_commit_sends_exactly_one_notice(db: Database, table: LiveTable) -> None:
    first = db.insert("messages", message(1))
    recorder = comm_of(table)
    wait_for(lambda: len(recorder.notices()) == 1)
    assert recorder.notices() == [
        {
            "type": "update",
            "version": 2,
            "row_count": 1,
            "changed": [first],
            "truncated": False,
            "error": None,
        }
    ]
    db.patch(first, {"text": "edited"})
    wait_for(lambda: len(recorder.notices()) == 2)
    second = db.insert("messages", message(2))
    wait_for(lambda: len(recorder.notices()) == 3)
    db.delete(first)
    wait_for(lambda: len(recorder.notices()) == 4)
    time.sleep(0.2)
    assert [(n["version"], n["row_count"], n["changed"]) for n in recorder.notices()] == [
        (2, 1, [first]),
        (3, 1, [first]),
        (4, 2, [second]),
        (5, 1, []),
    ]
    content, rows = ask_window(table)
    assert (content["version"], rows["text"].to_pylist()) == (5, ["m2"])


def test_a_commit_the_query_does_not_read_sends_nothing(db: Database, table: LiveTable) -> None:
    db.insert("other", {"x": 1})
    db.insert("messages", message(1))
    recorder = comm_of(table)
    wait_for(lambda: len(recorder.notices()) == 1)
    time.sleep(0.2)
    assert [n["version"] for n in recorder.notices()] == [2]


def test_a_burst_of_commits_is_coalesced(db: Database, table: LiveTable) -> None:
    table.notice_interval = 0.3
    recorder = comm_of(table)
    ids = [db.insert("messages", message(n)) for n in range(30)]
    wait_for(lambda: bool(recorder.notices()) and recorder.notices()[-1]["row_count"] == 30)
    time.sleep(0.4)
    notices = recorder.notices()
    assert 1 <= len(notices) < 30
    versions = [n["version"] for n in notices]
    assert versions == sorted(set(versions))
    assert notices[-1]["row_count"] == table.frame.height == 30
    assert {key for n in notices for key in n["changed"]} == set(ids)
    sent = [
        at
        for t, d, _, at in recorder.published
        if t == "comm_msg" and d.get("content", {}).get("type") == "update"
    ]
    assert all(b - a >= 0.29 for a, b in itertools.pairwise(sent))


def test_a_failing_query_reports_in_a_notice_and_recovers(db: Database, comms: list[RecordingComm]) -> None:
    @zapnb.query
    def picky(ctx: Any) -> Any:
        rows = ctx.db.query("messages").collect()
        return rows.height if rows.height == 1 else rows

    widget = LiveTable(db, picky)
    recorder = comm_of(widget)
    db.insert("messages", message(1))
    wait_for(lambda: len(recorder.notices()) == 1)
    (notice,) = recorder.notices()
    assert (notice["version"], notice["row_count"]) == (1, 0)
    assert notice["error"].startswith(
        "InvalidQueryError: LiveTable shows a Polars DataFrame or a list of dicts"
    )
    db.insert("messages", message(2))
    wait_for(lambda: len(recorder.notices()) == 2)
    assert recorder.notices()[-1]["error"] is None
    assert recorder.notices()[-1]["row_count"] == 2
    widget.close()


# --- sort and selection -------------------------------------------------------------------------------------


def test_sort_from_the_browser_holds_across_updates(db: Database, table: LiveTable) -> None:
    for n in (5, 1, 9):
        db.insert("messages", message(n))
    recorder = comm_of(table)
    wait_for(lambda: table.frame.height == 3)
    recorder.from_browser({"method": "update", "state": {"sort": ["n", "desc"]}, "buffer_paths": []})
    assert table.sort == ["n", "desc"]
    assert repr(table) == "LiveTable(messages: 3 rows × 8 columns, sorted by n ↓)"
    db.insert("messages", message(7))
    wait_for(lambda: table.frame.height == 4)
    _, rows = ask_window(table, sort=table.sort)
    assert rows["n"].to_pylist() == [9, 7, 5, 1]
    recorder.from_browser({"method": "update", "state": {"sort": []}, "buffer_paths": []})
    _, rows = ask_window(table, sort=table.sort)
    assert rows["n"].to_pylist() == [5, 1, 9, 7]


def test_sort_set_in_python_is_checked_and_synced(db: Database, table: LiveTable) -> None:
    with pytest.raises(zapnb.InvalidQueryError, match="no column 'nope' to sort by"):
        table.sort = ["nope", "asc"]
    table.sort = ["text", "asc"]
    assert comm_of(table).updates()[-1] == {"sort": ["text", "asc"]}


def test_selection_round_trip(db: Database, table: LiveTable) -> None:
    ids = [db.insert("messages", message(n)) for n in range(4)]
    recorder = comm_of(table)
    wait_for(lambda: table.frame.height == 4)
    recorder.from_browser({"method": "update", "state": {"selection": [ids[2], ids[0]]}, "buffer_paths": []})
    assert table.selection == [ids[2], ids[0]]
    assert {"selection": [ids[2], ids[0]]} not in recorder.updates()  # not echoed back
    table.selection = [ids[1]]
    assert recorder.updates()[-1] == {"selection": [ids[1]]}


def test_shift_click_range_is_resolved_in_the_kernel(db: Database, table: LiveTable) -> None:
    ids = [db.insert("messages", message(n)) for n in range(6)]
    recorder = comm_of(table)
    wait_for(lambda: table.frame.height == 6)
    select = {"type": "select", "view": "v", "start": 4, "stop": 2, "sort": ["n", "desc"], "add": False}
    recorder.from_browser({"method": "custom", "content": select})
    assert table.selection == [ids[3], ids[2], ids[1]]
    recorder.from_browser({"method": "custom", "content": {**select, "start": 0, "stop": 0, "add": True}})
    assert table.selection == [ids[3], ids[2], ids[1], ids[5]]
    assert recorder.updates()[-1] == {"selection": [ids[3], ids[2], ids[1], ids[5]]}


def test_rows_that_leave_the_result_leave_the_selection(db: Database, table: LiveTable) -> None:
    ids = [db.insert("messages", message(n)) for n in range(3)]
    wait_for(lambda: table.frame.height == 3)
    table.selection = [ids[0], ids[2]]
    db.delete(ids[2])
    wait_for(lambda: table.selection == [ids[0]])
    assert comm_of(table).updates()[-1] == {"selection": [ids[0]]}


# --- repr, HTML fallback, function results ------------------------------------------------------------------


def test_repr_and_html_fallback_are_deterministic(db: Database, table: LiveTable) -> None:
    db.insert_many("messages", [message(n, text=f"<{n}>") for n in range(12)])
    wait_for(lambda: table.frame.height == 12)
    table.sort = ["n", "desc"]
    data, metadata = table._repr_mimebundle_()
    assert metadata == {}
    assert data["text/plain"] == "LiveTable(messages: 12 rows × 8 columns, sorted by n ↓)"
    assert data[WIDGET_VIEW]["model_id"] == comm_of(table).comm_id
    rows = "".join(
        f"<tr><td>&lt;{n}&gt;</td><td>{n}</td><td>{n / 2}</td><td>{'true' if n % 2 == 0 else 'false'}</td>"
        f"<td>[&quot;t{n}&quot;]</td><td>null</td></tr>"
        for n in range(11, 1, -1)
    )
    assert data["text/html"] == (
        '<table class="zapnb-livetable-static"><thead><tr><th>text</th><th>n</th><th>score</th><th>ok</th>'
        f"<th>tags</th><th>raw</th></tr></thead><tbody>{rows}</tbody></table>"
        "<p>12 rows · sorted by n ↓</p>"
    )


def test_ipython_shows_the_view_and_the_fallbacks_open_or_closed(
    db: Database, comms: list[RecordingComm]
) -> None:
    from IPython.core.formatters import DisplayFormatter

    db.insert("messages", message(1))
    widget = LiveTable(db, db.query("messages"))
    html = (
        '<table class="zapnb-livetable-static"><thead><tr><th>text</th><th>n</th><th>score</th><th>ok</th>'
        "<th>tags</th><th>raw</th></tr></thead><tbody><tr><td>m1</td><td>1</td><td>0.5</td><td>false</td>"
        "<td>[&quot;t1&quot;]</td><td>null</td></tr></tbody></table><p>1 row</p>"
    )
    data, _ = DisplayFormatter().format(widget)  # type: ignore[no-untyped-call]
    assert data == {
        "text/plain": "LiveTable(messages: 1 row × 8 columns, sorted by none)",
        "text/html": html,
        WIDGET_VIEW: {"version_major": 2, "version_minor": 1, "model_id": comm_of(widget).comm_id},
    }
    widget.close()
    data, _ = DisplayFormatter().format(widget)  # type: ignore[no-untyped-call]
    assert data == {
        "text/plain": "LiveTable(messages: 1 row × 8 columns, sorted by none, closed)",
        "text/html": html,
    }


def test_function_returning_documents_with_args(db: Database, comms: list[RecordingComm]) -> None:
    @zapnb.query(args={"least": v.int64()})
    def big(ctx: Any, *, least: int) -> list[dict[str, Any]]:
        return [doc for doc in ctx.db.query("messages") if doc["n"] >= least]

    ids = [db.insert("messages", message(n)) for n in range(4)]
    widget = LiveTable(db, big, least=2)
    assert repr(widget) == "LiveTable(big: 2 rows × 7 columns, sorted by none)"  # no raw: inferred
    assert widget.frame["_id"].to_list() == ids[2:]
    widget.close()


def test_function_returning_a_frame_without_ids(db: Database, comms: list[RecordingComm]) -> None:
    @zapnb.query
    def evens(ctx: Any) -> pl.DataFrame:
        rows: pl.DataFrame = ctx.db.query("messages").collect()
        return rows.group_by("ok").agg(pl.len().alias("count")).sort("ok")

    for n in range(5):
        db.insert("messages", message(n))
    widget = LiveTable(db, evens)
    content, rows = ask_window(widget)
    assert (content["key"], [c["name"] for c in content["columns"]]) == ("_row", ["ok", "count"])
    assert rows.to_pydict() == {"ok": [False, True], "count": [2, 3], "_row": [0, 1]}
    db.insert("messages", message(7))
    recorder = comm_of(widget)
    wait_for(lambda: len(recorder.notices()) == 1)
    assert recorder.notices()[0]["changed"] == ["0"]  # the row of odd counts changed
    widget.close()


def test_wrong_results_and_arguments_fail_at_construction(db: Database, comms: list[RecordingComm]) -> None:
    @zapnb.query
    def count(ctx: Any) -> int:
        return int(ctx.db.query("messages").count())

    with pytest.raises(zapnb.InvalidQueryError, match="'count' returned an int"):
        LiveTable(db, count)
    with pytest.raises(zapnb.InvalidQueryError, match="takes none"):
        LiveTable(db, db.query("messages"), limit=3)
    tables = [
        c for c in comms if c.published[0][1]["state"].get("_anywidget_id") == "zapnb.widgets.LiveTable"
    ]
    assert len(tables) == 2
    assert all(c.published[-1][0] == "comm_close" for c in tables)  # the widgets opened for them were closed


# --- lifecycle ----------------------------------------------------------------------------------------------


def test_stop_keeps_the_view_and_its_last_result(db: Database, comms: list[RecordingComm]) -> None:
    db.insert("messages", message(1))
    widget = LiveTable(db, db.query("messages"))
    recorder = comm_of(widget)
    following = [widget.following]
    widget.stop()
    widget.stop()  # idempotent
    following.append(widget.following)
    assert following == [True, False]
    db.insert("messages", message(2))
    time.sleep(0.2)
    assert recorder.notices() == []
    assert all(message[0] != "comm_close" for message in recorder.published)
    assert widget.frame.height == 1
    _, rows = ask_window(widget, offset=0, limit=10)
    assert rows["text"].to_pylist() == ["m1"]
    widget.close()


def test_close_unsubscribes_and_a_closed_table_is_collected(db: Database, comms: list[RecordingComm]) -> None:
    widget = LiveTable(db, db.query("messages"))
    subscription = widget._subscription
    assert subscription is not None
    recorder = comm_of(widget)
    active = [subscription.active]
    widget.close()
    active.append(subscription.active)
    assert active == [True, False]
    assert recorder.published[-1][0] == "comm_close"
    db.insert("messages", message(1))
    time.sleep(0.2)
    assert recorder.notices() == []
    refs: list[weakref.ref[Any]] = [weakref.ref(widget), weakref.ref(subscription)]
    del widget, subscription, recorder
    comms.clear()  # the kernel's comm manager forgets a closed comm
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


def test_notices_keep_coming_while_the_browser_asks_for_windows(db: Database, table: LiveTable) -> None:
    """The watch thread and the comm thread at once: every reply is consistent, the last notice is final."""
    recorder = comm_of(table)
    stop = threading.Event()
    errors: list[BaseException] = []

    def browse() -> None:
        try:
            while not stop.is_set():
                content, rows = ask_window(table, limit=50, sort=["n", "desc"])
                assert content["count"] == rows.num_rows == min(50, content["row_count"])
                assert rows["n"].to_pylist() == sorted(rows["n"].to_pylist(), reverse=True)
        except BaseException as err:
            errors.append(err)

    browser = threading.Thread(target=browse)
    browser.start()
    for n in range(40):
        db.insert("messages", message(n))
    wait_for(lambda: bool(recorder.notices()) and recorder.notices()[-1]["row_count"] == 40)
    stop.set()
    browser.join()
    assert errors == []


# --- in a real browser --------------------------------------------------------------------------------------

#: A stand-in for anywidget's model in the page: state, change events, and messages handed to Python.
FAKE_MODEL = """() => {
window.zapnbMount = async (source, css, state) => {
  const listeners = {};
  const emit = (event, ...args) => (listeners[event] || []).slice().forEach((f) => f(...args));
  let unsaved = {};
  const model = {
    get: (key) => state[key],
    set: (key, value) => { state[key] = value; unsaved[key] = value; emit(`change:${key}`); },
    save_changes: () => { window.zapnbSave(JSON.stringify(unsaved)); unsaved = {}; },
    send: (content) => window.zapnbSend(JSON.stringify(content)),
    on: (event, f) => (listeners[event] ||= []).push(f),
    off: (event, f) => { listeners[event] = (listeners[event] || []).filter((g) => g !== f); },
  };
  window.zapnbDeliver = (content, encoded) => {
    const buffers = encoded.map((text) => {
      const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
      return new DataView(bytes.buffer);
    });
    emit("msg:custom", content, buffers);
  };
  window.zapnbState = (changes) => {
    for (const [key, value] of Object.entries(changes)) { state[key] = value; emit(`change:${key}`); }
  };
  const style = document.createElement("style");
  style.textContent = css;
  document.head.appendChild(style);
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  const module = await import(url);
  window.zapnbModule = module;
  module.default.render({ model, el: document.getElementById("root") });
};
}"""


class BrowserBridge:
    """livetable.js in Chromium, wired to a real LiveTable through its recording comm."""

    def __init__(self, page: Any, widget: LiveTable) -> None:
        import base64

        self.page = page
        self.widget = widget
        self.recorder = comm_of(widget)
        self.forwarded = len(self.recorder.published)
        self.inbox: list[tuple[str, dict[str, Any]]] = []
        self.b64 = base64.b64encode
        page.expose_function("zapnbSend", lambda text: self.inbox.append(("custom", json.loads(text))))
        page.expose_function("zapnbSave", lambda text: self.inbox.append(("update", json.loads(text))))
        page.set_content('<html><body><div id="root" style="width: 900px"></div></body></html>')
        page.evaluate(FAKE_MODEL)
        state = {"selection": widget.selection, "sort": widget.sort}
        page.evaluate(
            "([source, css, state]) => window.zapnbMount(source, css, state)",
            [widget._esm, widget._css, state],
        )

    def pump(self) -> None:
        """Carry the messages waiting in either direction."""
        self.page.wait_for_timeout(15)
        inbox, self.inbox = self.inbox, []
        for kind, content in inbox:
            if kind == "custom":
                self.recorder.from_browser({"method": "custom", "content": content})
            else:
                self.recorder.from_browser({"method": "update", "state": content, "buffer_paths": []})
        with self.recorder.lock:
            fresh = self.recorder.published[self.forwarded :]
            self.forwarded += len(fresh)
        for msg_type, data, buffers, _ in fresh:
            if msg_type != "comm_msg":
                continue
            if data["method"] == "custom":
                encoded = [self.b64(b).decode() for b in buffers]
                self.page.evaluate("([c, b]) => window.zapnbDeliver(c, b)", [data["content"], encoded])
            elif data["method"] == "update":
                self.page.evaluate("(s) => window.zapnbState(s)", data["state"])

    def until(self, script: str, arg: Any = None, timeout: float = 15.0) -> Any:
        """Pump until ``script`` (a JS function of ``arg``) returns something truthy; return it."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            result = self.page.evaluate(script, arg)
            if result:
                return result
            assert time.monotonic() < deadline, f"timed out waiting for {script}"

    def rows(self) -> list[list[str]]:
        return list(
            self.page.evaluate(
                "() => [...document.querySelectorAll('tr.zapnb-row')].map((tr) => "
                "[tr.dataset.id, ...[...tr.cells].map((td) => td.textContent)])"
            )
        )

    def status(self) -> str:
        return str(self.page.evaluate("() => document.querySelector('.zapnb-status').textContent"))


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A page in headless Chromium (skipped without one, failed when ``ZAPNB_BROWSER_TESTS=required``)."""
    with chromium_page(chromium_executable()) as page:
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        yield page
        assert errors == []


@pytest.mark.slow
def test_in_a_browser_rows_sort_selection_and_updates(
    db: Database, comms: list[RecordingComm], browser_page: Any
) -> None:
    ids = [db.insert("messages", message(n, raw=b"\x01")) for n in (2, 1, 3)]
    widget = LiveTable(db, db.query("messages"))
    bridge = BrowserBridge(browser_page, widget)
    bridge.until("() => document.querySelector('.zapnb-status').textContent.startsWith('3 rows')")
    headers = browser_page.evaluate(
        "() => [...document.querySelectorAll('th.zapnb-header')].map((th) => th.dataset.column)"
    )
    assert headers == [c["name"] for c in COLUMNS]
    created = [cell_text(t) for t in widget.frame["_creationTime"].to_list()]
    assert bridge.rows() == [
        [ids[0], ids[0], created[0], "m2", "2", "1.0", "true", '["t2"]', "b'\\x01'"],
        [ids[1], ids[1], created[1], "m1", "1", "0.5", "false", '["t1"]', "b'\\x01'"],
        [ids[2], ids[2], created[2], "m3", "3", "1.5", "false", '["t3"]', "b'\\x01'"],
    ]
    number_cell = "() => getComputedStyle(document.querySelector('tr.zapnb-row td:nth-child(4)')).textAlign"
    assert browser_page.evaluate(number_cell) == "right"

    # sort: ascending, descending, back to the result's order
    order = "() => [...document.querySelectorAll('tr.zapnb-row')].map((tr) => tr.cells[3].textContent).join()"
    header = browser_page.locator('th.zapnb-header[data-column="n"]')
    for sort, expected in [("asc", "1,2,3"), ("desc", "3,2,1"), (None, "2,1,3")]:
        header.click()
        bridge.until(f"() => ({order})() === '{expected}'")
        assert header.get_attribute("data-sort") == sort
        assert widget.sort == ([] if sort is None else ["n", sort])
    assert bridge.status() == "3 rows"

    # selection: click, ctrl-click, shift-click (resolved in the kernel), click again to clear
    row = browser_page.locator("tr.zapnb-row")
    row.nth(0).click()
    bridge.until("() => document.querySelectorAll('tr.zapnb-selected').length === 1")
    assert widget.selection == [ids[0]]
    row.nth(2).click(modifiers=["Control"])
    bridge.until("() => document.querySelectorAll('tr.zapnb-selected').length === 2")
    assert widget.selection == [ids[0], ids[2]]
    row.nth(0).click(modifiers=["Shift"])
    bridge.until("() => document.querySelectorAll('tr.zapnb-selected').length === 3")
    assert widget.selection == ids
    assert bridge.status() == "3 rows · 3 selected"
    widget.selection = [ids[1]]
    bridge.until("() => document.querySelectorAll('tr.zapnb-selected').length === 1")

    # a commit: the new row appears marked as changed, the sort and selection hold, the mark goes away
    header.click()
    bridge.until(f"() => ({order})() === '1,2,3'")
    new = db.insert("messages", message(0))
    row_of_new = f"document.querySelector('tr.zapnb-row[data-id=\"{new}\"]')"
    changed = f"() => {row_of_new}?.classList.contains('zapnb-changed')"
    bridge.until(changed)
    assert bridge.until(f"() => ({order})() === '0,1,2,3'")
    assert bridge.status() == "4 rows · sorted by n ↑ · 1 selected"
    assert [r[0] for r in bridge.rows() if r[0] == ids[1]] == [ids[1]]
    assert browser_page.evaluate("() => document.querySelector('tr.zapnb-selected').dataset.id") == ids[1]
    bridge.until(f"() => !({changed})()", timeout=6)
    widget.close()


@pytest.mark.slow
def test_in_a_browser_a_million_rows_scroll_with_a_few_rows_in_the_dom(
    db: Database, comms: list[RecordingComm], browser_page: Any
) -> None:
    size = 1_000_000
    big = pl.DataFrame({"_id": [f"r{i:07}" for i in range(size)], "n": pl.int_range(size, eager=True)})

    @zapnb.query
    def million(ctx: Any) -> pl.DataFrame:
        ctx.db.query("messages").count()
        return big

    widget = LiveTable(db, million)
    bridge = BrowserBridge(browser_page, widget)
    bridge.until("() => document.querySelector('.zapnb-status').textContent === '1,000,000 rows'")
    bridge.until("() => document.querySelector('tr.zapnb-row[data-id=\"r0000000\"]')")
    spacer, header, height = browser_page.evaluate(
        "(names) => names.map((q) => document.querySelector(q).clientHeight)",
        [".zapnb-spacer", "thead", ".zapnb-scroller"],
    )
    # 24 px a row would make 24M px: past 16M px Chromium paints rows unevenly, so rows scroll proportionally
    assert spacer == header + 16_000_000
    visible = (height - header) / 24
    top_row = """() => {
      const edge = document.querySelector('th.zapnb-header').getBoundingClientRect().bottom;
      const rows = [...document.querySelectorAll('tr.zapnb-row')];
      const row = rows.find((tr) => tr.getBoundingClientRect().bottom > edge + 1);
      return row && rows.length < 45 && Number(row.dataset.id.slice(1));
    }"""
    for fraction in (0.5, 1.0, 0.123456, 0.0):
        browser_page.evaluate(
            "(f) => { const s = document.querySelector('.zapnb-scroller');"
            " s.scrollTop = f * (s.scrollHeight - s.clientHeight); }",
            fraction,
        )
        expected = fraction * (size - visible)
        bridge.until(
            f"() => Math.abs(({top_row})() - {expected}) <= 2 || ({top_row})() === 0 && {expected} === 0"
        )
    assert bridge.rows()[0][0] == "r0000000"
    assert browser_page.evaluate("() => document.querySelectorAll('tr').length") < 50
    widget.close()


DECODE = """async ([source, encoded]) => {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  const { decodeArrowStream, formatValue } = await import(url);
  const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
  const table = decodeArrowStream(new DataView(bytes.buffer));
  const rows = [];
  for (let r = 0; r < table.length; r++) {
    rows.push(table.fields.map((field, i) => formatValue(table.columns[i][r], field)));
  }
  return [table.fields.map((f) => f.name), rows];
}"""


@pytest.mark.slow
def test_in_a_browser_the_decoder_reads_every_type_a_window_holds(browser_page: Any) -> None:
    import base64

    frame = pl.DataFrame(
        {
            "i8": pl.Series([-128, None, 7], dtype=pl.Int8),
            "i16": pl.Series([-32768, 5, None], dtype=pl.Int16),
            "i32": pl.Series([None, -(2**31), 2**31 - 1], dtype=pl.Int32),
            "i64": pl.Series([-(2**63), 2**63 - 1, None], dtype=pl.Int64),
            "u8": pl.Series([255, None, 0], dtype=pl.UInt8),
            "u16": pl.Series([65535, 1, None], dtype=pl.UInt16),
            "u32": pl.Series([None, 2**32 - 1, 3], dtype=pl.UInt32),
            "u64": pl.Series([2**64 - 1, None, 0], dtype=pl.UInt64),
            "f32": pl.Series([0.1, None, float("-inf")], dtype=pl.Float32),
            "f64": [1e16, float("nan"), -0.0],
            "small": [1e-5, 123.456, None],
            "b": [True, None, False],
            "s": ["zé ✓", None, ""],
            "n": pl.Series([None, None, None], dtype=pl.Null),
            "nested": [{"x": [1, 2]}, None, {"x": []}],
        }
    )
    shown = display_frame(frame)
    streams = [encode_ipc(shown)]
    batches = pa.BufferOutputStream()  # several record batches, as other writers may send
    arrow = shown.to_arrow()
    with pa.ipc.new_stream(batches, arrow.schema) as writer:
        writer.write_table(arrow, max_chunksize=1)
    streams.append(batches.getvalue().to_pybytes())
    float32 = [isinstance(t, pl.Float32) for t in shown.dtypes]
    expected = [
        [cell_text(v, float32=f) for v, f in zip(row, float32, strict=True)] for row in shown.iter_rows()
    ]
    source = (Path(zapnb.__file__).parent / "static" / "livetable.js").read_text()
    browser_page.set_content("<html><body></body></html>")
    for data in streams:
        names, rows = browser_page.evaluate(DECODE, [source, base64.b64encode(data).decode()])
        assert names == frame.columns
        assert rows == expected
    assert expected[0][:4] == ["-128", "-32768", "null", "-9223372036854775808"]
    assert [expected[0][8], expected[0][9], expected[1][9], expected[2][9]] == ["0.1", "1e+16", "nan", "-0.0"]


def test_a_json_column_sorts_in_the_total_order_not_as_text(
    tmp_path: Path, comms: list[RecordingComm]
) -> None:
    schema = zapnb.define_schema(
        {"t": zapnb.define_table({"x": v.any(), "u": v.union(v.int64(), v.string())})}
    )
    with zapnb.connect(tmp_path / "json", durability="process") as db:
        db.deploy(schema, progress=False)
        for x in (9, 10, 100, -1, "a", 2.5, 2):
            db.insert("t", {"x": x, "u": x if isinstance(x, int) else "s"})
        widget = LiveTable(db, db.query("t"))
        _, rows = ask_window(widget, sort=["x", "asc"])
        assert rows["x"].to_pylist() == [
            "-1",
            "2",
            "9",
            "10",
            "100",
            "2.5",
            '"a"',
        ]  # int64 < float64 < string
        _, rows = ask_window(widget, sort=["u", "desc"])
        assert rows["u"].to_pylist()[:3] == ['"s"', '"s"', "100"]
        widget.close()

"""zapnb as a peer, through its public API only: ``connect``, ``deploy``, ``insert_many``, ``insert``,
``patch``, ``get`` and ``query(...).with_index(...).order(...).take / collect / paginate / filter / count``.

The documents are inserted without their system fields (``insert_many`` makes its own ``_id`` and
``_creationTime``, as ``insert`` does), so the adapter maps the workload's IDs to the ones zapnb returned:
the messages' ``projectId`` column before inserting them (that step is not counted in W1), and the IDs
that operations take (:meth:`ZapnbPeer.translate`, called before timing; the messages' map is made on its
first use, after W1). When an ID comes back unchanged the map is the identity.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

import polars as pl
from peers import PAGE_SIZE, Q1_TAKE, PageWalk, Peer

__all__ = ["ZapnbPeer", "unavailable"]

_SYSTEM: Final = ("_id", "_creationTime")


def unavailable() -> str | None:
    """Why zapnb cannot be measured here (its public API is not there yet), or None when it can."""
    try:
        import zapnb

        zapnb.connect  # noqa: B018 - the lazy attribute imports the engine
    except Exception as err:  # any failure to import the engine means "not available", with the reason
        return f"{type(err).__name__}: {err}"
    return None


def _pending_from_user(q: Any) -> Any:
    return q.and_(q.eq(q.field("status"), "PENDING"), q.eq(q.field("role"), "USER"))


class ZapnbPeer(Peer):
    """zapnb with the ZapDev schema deployed; durable commits (``durability="full"``, the default)."""

    key = "zapnb"
    label = "zapnb"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.to_zapnb: dict[str, str] = {}
        self.to_workload: dict[str, str] = {}
        self._unmapped: tuple[pl.Series, list[Any]] | None = None

    def attach(self) -> None:
        import zapnb

        self.db: Any = zapnb.connect(
            self.directory / "zapnb"
        )  # typed Any: parts of its API are still to come

    def load(self, projects: pl.DataFrame, messages: pl.DataFrame) -> None:
        from zapnb.examples import zapdev

        self.attach()
        self.db.deploy(zapdev.schema, progress=False)
        project_ids = self.db.insert_many("projects", projects.drop(_SYSTEM))
        began = time.perf_counter()
        mapped = self._map(projects["_id"], project_ids)
        if mapped:
            messages = messages.with_columns(pl.col("projectId").replace_strict(mapped))
        self.untimed_seconds += time.perf_counter() - began
        message_ids = self.db.insert_many("messages", messages.drop(_SYSTEM))
        # The million messages are mapped on first use, after W1 has read the peak memory of the load: the
        # two dicts are the harness's bookkeeping (several hundred MB), not part of zapnb's load.
        self._unmapped = (messages["_id"], message_ids)

    def finish_load(self) -> None:
        self.db.checkpoint()  # the checkpoint the load made due, which the background would start shortly

    def _settle(self) -> None:
        if self._unmapped is not None:
            given, made = self._unmapped
            self._unmapped = None
            self._map(given, made)

    def _map(self, given: pl.Series, made: list[Any]) -> dict[str, str]:
        """Record the IDs zapnb gave the rows that had ``given`` IDs; the map, or {} if they are the same."""
        made_text = [str(doc_id) for doc_id in made]
        if given.to_list() == made_text:
            return {}
        mapped = dict(zip(given.to_list(), made_text, strict=True))
        self.to_zapnb.update(mapped)
        self.to_workload.update(zip(made_text, given.to_list(), strict=True))
        return mapped

    def translate(self, doc_id: str) -> str:
        self._settle()
        return self.to_zapnb.get(doc_id, doc_id)

    def workload_id(self, doc_id: str) -> str:
        self._settle()
        return self.to_workload.get(doc_id, doc_id)

    def insert_one(self, doc: dict[str, Any]) -> str:
        return str(self.db.insert("messages", doc))

    def patch_one(self, doc_id: str, field: str, value: Any) -> None:
        self.db.patch(doc_id, {field: value})

    def _project_messages(self, project_id: str) -> Any:
        query = self.db.query("messages").with_index(
            "by_projectId_createdAt", lambda q: q.eq("projectId", project_id)
        )
        return query.order("asc")

    def q1(self, project_id: str) -> pl.DataFrame:
        frame: pl.DataFrame = self._project_messages(project_id).take(Q1_TAKE)
        return frame

    def q2(self, user_id: str) -> pl.DataFrame:
        query = self.db.query("projects").with_index("by_userId_createdAt", lambda q: q.eq("userId", user_id))
        frame: pl.DataFrame = query.order("desc").collect()
        return frame

    def q3(self, project_id: str) -> PageWalk:
        pages = rows = 0
        last = ""
        cursor = None
        while True:
            result = self._project_messages(project_id).paginate(num_items=PAGE_SIZE, cursor=cursor)
            page: pl.DataFrame = result.page
            pages, rows = pages + 1, rows + page.height
            last = page["_id"][-1] if page.height else last
            if result.is_done:
                return PageWalk(pages, rows, last)
            cursor = result.continue_cursor

    def q4_count(self) -> int:
        return int(self.db.query("messages").filter(_pending_from_user).count())

    def q4_collect(self) -> pl.DataFrame:
        frame: pl.DataFrame = self.db.query("messages").filter(_pending_from_user).collect()
        return frame

    def q5(self, doc_id: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = self.db.get(doc_id)
        return doc

    def close(self) -> None:
        self.db.close()

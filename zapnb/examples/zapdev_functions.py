"""The example functions of ZapDev's database guide, as zapnb functions on :mod:`zapnb.examples.zapdev`.

The guide writes them as Convex ``query`` and ``mutation`` functions; here each is the same function in
Python, with the same arguments and validators (``camelCase`` argument names, as the guide's), run with
:meth:`zapnb.Database.run`:

=============================  ========  ==============================================================
function                       kind      what it does
=============================  ========  ==============================================================
:data:`get_user_projects`      query     a user's projects, newest first (``by_userId``)
:data:`get_project_messages`   query     a project's messages in order (``by_projectId_createdAt``)
:data:`create_project`         mutation  insert a project with ``createdAt`` and ``updatedAt`` now
:data:`update_subscription_    mutation  set a subscription's ``status`` and ``updatedAt``
status`
:data:`paginated_projects`     query     one page of a user's projects, newest first
                                         (``by_userId_createdAt``)
=============================  ========  ==============================================================

``paginationOpts`` is Convex's shape: ``{"numItems": n, "cursor": None}`` for the first page, then the
previous page's ``continue_cursor`` (:data:`PAGINATION_OPTS` validates it, as Convex's
``paginationOptsValidator`` does). The result is a :class:`~zapnb.pagination.PaginationResult`.

``Date.now()`` becomes milliseconds since the epoch, as a float.

Examples
--------
>>> import tempfile, zapnb
>>> from zapnb.examples import zapdev
>>> from zapnb.examples.zapdev_functions import create_project, get_user_projects, paginated_projects
>>> with tempfile.TemporaryDirectory() as data, zapnb.connect(data) as db:
...     _ = db.deploy(zapdev.schema, progress=False)
...     for name in ("Landing page", "Blog", "Shop"):
...         _ = db.run(create_project, name=name, userId="user_1", framework="NEXTJS")
...     mine = db.run(get_user_projects, userId="user_1")["name"].to_list()
...     first = db.run(paginated_projects, userId="user_1", paginationOpts={"numItems": 2, "cursor": None})
...     rest = db.run(
...         paginated_projects,
...         userId="user_1",
...         paginationOpts={"numItems": 2, "cursor": first.continue_cursor},
...     )
>>> mine, first.page["name"].to_list(), rest.page["name"].to_list(), rest.is_done
(['Shop', 'Blog', 'Landing page'], ['Shop', 'Blog'], ['Landing page'], True)
"""

from __future__ import annotations

import time
from typing import Any, Final

import polars as pl

from zapnb.examples.zapdev import FRAMEWORKS, SUBSCRIPTION_STATUSES, enum
from zapnb.functions import MutationContext, QueryContext, mutation, query
from zapnb.ids import Id
from zapnb.pagination import PaginationResult
from zapnb.validators import v

__all__ = [
    "PAGINATION_OPTS",
    "create_project",
    "get_project_messages",
    "get_user_projects",
    "paginated_projects",
    "update_subscription_status",
]

PAGINATION_OPTS: Final = v.object({"numItems": v.number(), "cursor": v.union(v.string(), v.null())})
"""The validator of ``paginationOpts``: ``numItems`` and ``cursor`` (``None`` for the first page)."""


@query(args={"userId": v.string()})
def get_user_projects(ctx: QueryContext, *, userId: str) -> pl.DataFrame:  # noqa: N803 - the guide's names
    """A user's projects, newest first."""
    query = ctx.db.query("projects").with_index("by_userId", lambda q: q.eq("userId", userId))
    frame: pl.DataFrame = query.order("desc").collect()
    return frame


@query(args={"projectId": v.id("projects")})
def get_project_messages(ctx: QueryContext, *, projectId: str) -> pl.DataFrame:  # noqa: N803 - the guide's names
    """A project's messages, oldest first."""
    frame: pl.DataFrame = (
        ctx.db.query("messages")
        .with_index("by_projectId_createdAt", lambda q: q.eq("projectId", projectId))
        .order("asc")
        .collect()
    )
    return frame


@mutation(args={"name": v.string(), "userId": v.string(), "framework": enum(FRAMEWORKS)})
def create_project(ctx: MutationContext, *, name: str, userId: str, framework: str) -> Id:  # noqa: N803
    """Insert a project; return its ID."""
    now = _now()
    project = {"name": name, "userId": userId, "framework": framework, "createdAt": now, "updatedAt": now}
    return ctx.db.insert("projects", project)


@mutation(args={"subscriptionId": v.id("subscriptions"), "status": enum(SUBSCRIPTION_STATUSES)})
def update_subscription_status(ctx: MutationContext, *, subscriptionId: str, status: str) -> None:  # noqa: N803
    """Set a subscription's status (and ``updatedAt``)."""
    ctx.db.patch(subscriptionId, {"status": status, "updatedAt": _now()})


@query(args={"userId": v.string(), "paginationOpts": PAGINATION_OPTS})
def paginated_projects(
    ctx: QueryContext,
    *,
    userId: str,  # noqa: N803 - the guide's names
    paginationOpts: dict[str, Any],  # noqa: N803
) -> PaginationResult:
    """One page of a user's projects, newest first."""
    result: PaginationResult = (
        ctx.db.query("projects")
        .with_index("by_userId_createdAt", lambda q: q.eq("userId", userId))
        .order("desc")
        .paginate(int(paginationOpts["numItems"]), paginationOpts["cursor"])
    )
    return result


def _now() -> float:
    """``Date.now()``: milliseconds since the epoch."""
    return time.time() * 1000.0

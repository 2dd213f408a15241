"""The example functions of ZapDev's guide (zapnb.examples.zapdev_functions), run as zapnb functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

import zapnb
from zapnb.examples import zapdev
from zapnb.examples.zapdev_functions import (
    create_project,
    get_project_messages,
    get_user_projects,
    paginated_projects,
    update_subscription_status,
)
from zapnb.schema import Schema


@pytest.fixture
def db(deployed: Callable[[Schema], zapnb.Database]) -> zapnb.Database:
    return deployed(zapdev.schema)


def _subscription(db: zapnb.Database, user: str) -> zapnb.Id:
    return db.insert(
        "subscriptions",
        {
            "userId": user,
            "polarSubscriptionId": "sub_1",
            "customerId": "cus_1",
            "productId": "prod_1",
            "priceId": "price_1",
            "status": "active",
            "interval": "monthly",
            "currentPeriodStart": 0.0,
            "currentPeriodEnd": 1.0,
            "cancelAtPeriodEnd": False,
            "createdAt": 0.0,
            "updatedAt": 0.0,
        },
    )


def test_create_project_and_get_user_projects_newest_first(db: zapnb.Database) -> None:
    made = [db.run(create_project, name=f"p{i}", userId="user_1", framework="REACT") for i in range(3)]
    db.run(create_project, name="theirs", userId="user_2", framework="VUE")
    mine = db.run(get_user_projects, userId="user_1")
    assert isinstance(mine, pl.DataFrame)
    assert mine["name"].to_list() == ["p2", "p1", "p0"]
    assert mine["_id"].to_list() == [str(i) for i in reversed(made)]
    assert mine.schema["framework"] == pl.Enum(list(zapdev.FRAMEWORKS))
    project = db.get(made[0])
    assert project is not None
    assert project["createdAt"] == project["updatedAt"] > 1.6e12  # Date.now(): milliseconds
    assert db.run(get_user_projects, userId="nobody").height == 0


def test_get_project_messages_in_creation_order(db: zapnb.Database) -> None:
    project = db.run(create_project, name="p", userId="user_1", framework="NEXTJS")
    for created in (3.0, 1.0, 2.0):
        message = {"content": f"m{created:g}", "role": "USER", "type": "RESULT", "status": "COMPLETE"}
        db.insert("messages", {**message, "projectId": project, "createdAt": created})
    assert db.run(get_project_messages, projectId=project)["content"].to_list() == ["m1", "m2", "m3"]


def test_update_subscription_status_patches_status_and_time(db: zapnb.Database) -> None:
    subscription = _subscription(db, "user_1")
    db.run(update_subscription_status, subscriptionId=subscription, status="past_due")
    after = db.get(subscription)
    assert after is not None
    assert (after["status"], after["userId"]) == ("past_due", "user_1")
    assert after["updatedAt"] > 1.6e12


def test_paginated_projects_walks_every_page_once(db: zapnb.Database) -> None:
    for i in range(5):
        db.run(create_project, name=f"p{i}", userId="user_1", framework="SVELTE")
    pages: list[list[str]] = []
    cursor: Any = None
    while True:
        result = db.run(paginated_projects, userId="user_1", paginationOpts={"numItems": 2, "cursor": cursor})
        pages.append(result.page["name"].to_list())
        if result.is_done:
            break
        cursor = result.continue_cursor
    assert pages == [["p4", "p3"], ["p2", "p1"], ["p0"]]


@pytest.mark.parametrize(
    ("function", "args", "path"),
    [
        (create_project, {"name": "p", "userId": "u", "framework": "React"}, ".framework"),
        (get_user_projects, {"userId": 7}, ".userId"),
        (paginated_projects, {"userId": "u", "paginationOpts": {"numItems": 2}}, ".paginationOpts"),
    ],
)
def test_the_functions_check_their_arguments(
    db: zapnb.Database, function: Any, args: dict[str, Any], path: str
) -> None:
    with pytest.raises(zapnb.ArgumentValidationError) as info:
        db.run(function, **args)
    assert info.value.path.startswith(path)
    assert db.query("projects").count() == 0


def test_update_subscription_status_checks_the_id_and_the_status(db: zapnb.Database) -> None:
    subscription = _subscription(db, "user_1")
    project = db.run(create_project, name="p", userId="user_1", framework="VUE")
    with pytest.raises(zapnb.ArgumentValidationError):
        db.run(update_subscription_status, subscriptionId=project, status="active")  # an ID of another table
    with pytest.raises(zapnb.ArgumentValidationError):
        db.run(update_subscription_status, subscriptionId=subscription, status="paused")
    db.delete(subscription)
    with pytest.raises(zapnb.NonexistentDocumentError):
        db.run(update_subscription_status, subscriptionId=subscription, status="canceled")


def test_runs_are_logged_by_function_name(db: zapnb.Database) -> None:
    db.run(create_project, name="p", userId="user_1", framework="ANGULAR")
    db.run(get_user_projects, userId="user_1")
    logged = db.logs().select("function", "kind", "outcome").rows()
    assert logged[-2:] == [
        ("create_project", "mutation", "success"),
        ("get_user_projects", "query", "success"),
    ]

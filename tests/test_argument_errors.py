"""Arguments of the wrong type to the public write and query methods raise a ZapError saying what to pass,
and write nothing (not a TypeError or AttributeError from deep inside)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

import zapnb
from zapnb import define_schema, define_table, v
from zapnb.errors import InvalidQueryError, InvalidValueError

SCHEMA = define_schema({"t": define_table({"a": v.string()}).index("by_a", ["a"])})


@pytest.fixture
def db(deployed: Callable[[zapnb.schema.Schema], zapnb.Database]) -> zapnb.Database:
    return deployed(SCHEMA)


@pytest.mark.parametrize("doc", [None, [1], "a", [("a", "b")]])
def test_insert_and_replace_take_a_dict(db: zapnb.Database, doc: Any) -> None:
    with pytest.raises(InvalidValueError, match="insert takes a document"):
        db.insert("t", doc)
    kept = db.insert("t", {"a": "x"})
    with pytest.raises(InvalidValueError, match="replace takes a document"):
        db.replace(kept, doc)
    with pytest.raises(InvalidValueError, match="patch takes a document"):
        db.patch(kept, doc)
    assert db.query("t").count() == 1
    assert db.get(kept) is not None
    assert db.get(kept)["a"] == "x"  # type: ignore[index]


@pytest.mark.parametrize("rows", [None, {"a": "x"}, "ab", b"ab"])
def test_insert_many_takes_rows(db: zapnb.Database, rows: Any) -> None:
    with pytest.raises(InvalidValueError, match="insert_many takes rows"):
        db.insert_many("t", rows)
    with db.transaction() as tx, pytest.raises(InvalidValueError, match="insert_many takes rows"):
        tx.insert_many("t", rows)
    assert db.query("t").count() == 0


def test_insert_many_asks_to_collect_a_lazy_frame(db: zapnb.Database) -> None:
    with pytest.raises(InvalidValueError, match=r"call \.collect\(\)"):
        db.insert_many("t", pl.LazyFrame({"a": ["x"]}))
    assert db.query("t").count() == 0


def test_with_index_takes_a_function_for_its_range(db: zapnb.Database) -> None:
    with pytest.raises(InvalidQueryError, match="pass a function"):
        db.query("t").with_index("by_a", 5)  # type: ignore[arg-type]


def test_an_edited_cursor_is_refused_not_read_at_another_key(db: zapnb.Database) -> None:
    import base64

    from zapnb.errors import InvalidCursorError

    db.insert_many("t", [{"a": str(i)} for i in range(6)])
    query = db.query("t").with_index("by_a")
    cursor = query.paginate(num_items=3).continue_cursor
    sealed = base64.urlsafe_b64decode(cursor[3:] + "=" * (-len(cursor[3:]) % 4)).decode()
    body, _, check = sealed.rpartition(":")
    fingerprint, _, key = body.partition(":")
    edited = f"{fingerprint}:{key[:-4]}:{check}".encode()
    for bad in ("zc1" + base64.urlsafe_b64encode(edited).decode(), "zc1!!!!", cursor[:-2]):
        with pytest.raises(InvalidCursorError) as info:
            query.paginate(num_items=3, cursor=bad)
        assert info.value.reason == "malformed"
    assert [row["a"] for row in query.paginate(num_items=3, cursor=cursor).page.to_dicts()] == ["3", "4", "5"]

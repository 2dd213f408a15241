"""Commit records and their bytes (zapnb.changes): stored documents are encoded without a second check."""

from __future__ import annotations

from typing import Any

from hypothesis import given, reject
from hypothesis import strategies as st
from test_jsonvalues import values

from zapnb.changes import Commit, Deploy, Write, decode_record, encode_record
from zapnb.documents import normalize_value
from zapnb.errors import InvalidValueError
from zapnb.ids import Id
from zapnb.jsonvalues import encode_json, encode_stored_json

ID = "kd70hswas0vt0z9b7kxmmcwcd97ed1rj"


def stored(value: Any) -> Any:
    """``value`` in stored form, or nothing (the property skips values no document can hold)."""
    try:
        return normalize_value(value)
    except InvalidValueError:
        reject()


@given(values)
def test_a_stored_value_is_encoded_exactly_as_the_checked_encoding_would(value: Any) -> None:
    value = stored(value)
    assert encode_stored_json(value) == encode_json(value)


@given(st.lists(st.tuples(st.sampled_from(["notes", "tasks"]), values), max_size=4))
def test_a_commit_of_stored_documents_round_trips(docs: list[tuple[str, Any]]) -> None:
    writes = tuple(
        Write(table, f"id{k}", {"_id": f"id{k}", "_creationTime": float(k), "v": stored(value)})
        for k, (table, value) in enumerate(docs)
    )
    record = Commit(time=1.5, writes=writes, tables={"notes": 10001})
    payload = encode_record(record)
    body = {"kind": "commit", "time": 1.5, "writes": [[w.table, w.id, w.doc] for w in writes]}
    assert payload == encode_json({**body, "tables": {"notes": 10001}}).encode()
    assert decode_record(payload) == record


def test_ids_bytes_and_special_floats_in_a_commit() -> None:
    doc = {
        "_id": Id(ID, table="notes"),
        "_creationTime": 2.0,
        "raw": b"\x00\xff",
        "x": float("nan"),
        "y": -0.0,
    }
    record = Commit(time=3.0, writes=(Write("notes", ID, doc), Write("notes", "gone", None)))
    decoded = decode_record(encode_record(record))
    assert isinstance(decoded, Commit)
    (first, second) = decoded.writes
    assert first.doc is not None
    assert second.doc is None
    assert (first.doc["_id"], first.doc["raw"], first.doc["y"]) == (ID, b"\x00\xff", -0.0)
    assert first.doc["x"] != first.doc["x"]  # NaN


def test_a_deploy_record_round_trips() -> None:
    record = Deploy(time=1.0, schema={"tables": [], "schemaValidation": True}, tables={"notes": 10001})
    assert decode_record(encode_record(record)) == record

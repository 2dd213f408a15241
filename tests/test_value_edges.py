"""Values at zapnb's edges: query literals and range bounds get the checks stored values get, IDs read back
the same before and after a checkpoint, an ``Id`` cannot be relabelled, and JSON holds exactly what a
document can hold."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zapnb
from zapnb import v
from zapnb.documents import check_document, normalize_value
from zapnb.errors import (
    DocumentLimitError,
    FilterExpressionError,
    InvalidFieldNameError,
    InvalidJsonError,
    InvalidValueError,
    ZapError,
)
from zapnb.ids import Id
from zapnb.jsonvalues import decode_json, decode_stored_json, encode_json
from zapnb.keys import encode_key, encode_value
from zapnb.ranges import coerce_value
from zapnb.schema import Schema
from zapnb.values import MISSING

Open = Callable[[Schema], zapnb.Database]
AN_ID = "kd70hswas0vt0z9b7kxmmcwcd97ed1rj"


def cycle() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# --- query literals: the checks a stored value gets ---------------------------------------------------------


@pytest.fixture
def any_table(deployed: Open) -> zapnb.Database:
    db = deployed(zapnb.define_schema({"t": zapnb.define_table({"x": v.any()}).index("by_x", ["x"])}))
    db.insert("t", {"x": 1})
    return db


@pytest.mark.parametrize("literal", [cycle(), nested(2000)], ids=["cyclic", "2000 deep"])
def test_a_range_literal_that_contains_itself_or_nests_too_deeply_is_refused(
    any_table: zapnb.Database, literal: Any
) -> None:
    with pytest.raises(InvalidValueError, match=r'the index range on t\.by_x, "x" is compared') as info:
        any_table.query("t").with_index("by_x", lambda q: q.eq("x", literal)).count()
    assert info.value.path.startswith(".x[0]")


def test_a_cyclic_filter_literal_is_refused(any_table: zapnb.Database) -> None:
    with pytest.raises(FilterExpressionError, match="contains itself"):
        any_table.query("t").filter(lambda q: q.eq(q.field("x"), cycle())).count()


def test_a_filter_literal_nested_2000_deep_is_refused(any_table: zapnb.Database) -> None:
    with pytest.raises(ZapError):
        any_table.query("t").filter(lambda q: q.eq(q.field("x"), nested(2000))).count()


def test_key_encoding_turns_a_stack_overflow_into_the_document_error() -> None:
    with pytest.raises(InvalidValueError, match="contains itself"):
        encode_value({"a": cycle()})
    with pytest.raises(DocumentLimitError) as info:
        encode_key([1, nested(2000)])
    assert info.value.limit == "depth"
    assert info.value.path.startswith("[1][0]")


def test_range_literals_get_the_limits_and_names_of_stored_values(any_table: zapnb.Database) -> None:
    def count(literal: Any) -> int:
        return any_table.query("t").with_index("by_x", lambda q: q.eq("x", literal)).count()

    assert count(nested(16)) == 0  # as deep as a stored value may be
    with pytest.raises(DocumentLimitError):
        count(nested(17))
    with pytest.raises(InvalidFieldNameError, match="cannot be empty"):
        count({"": 1})
    with pytest.raises(InvalidValueError, match="zapnb can store"):
        count([MISSING])
    assert count(MISSING) == 0  # a missing field stays comparable
    assert count((1,)) == count([1]) == 0
    assert count(1) == 1


# --- range bounds outside int64 -----------------------------------------------------------------------------


@pytest.fixture
def number_table(deployed: Open) -> zapnb.Database:
    db = deployed(zapnb.define_schema({"t": zapnb.define_table({"x": v.number()}).index("by_x", ["x"])}))
    db.insert("t", {"x": 1.0})
    return db


@pytest.mark.parametrize("bound", [10**400, 2**63, -(2**63) - 1], ids=["10**400", "2**63", "-2**63-1"])
@pytest.mark.parametrize("op", ["eq", "lt", "gte"])
def test_a_range_bound_outside_int64_is_refused_as_an_insert_refuses_it(
    number_table: zapnb.Database, bound: int, op: str
) -> None:
    with pytest.raises(InvalidValueError, match=r"outside the int64 range -2\*\*63 \.\. 2\*\*63-1") as info:
        number_table.query("t").with_index("by_x", lambda q: getattr(q, op)("x", bound)).count()
    assert 't.by_x, "x" is compared' in str(info.value)
    assert (info.value.path, info.value.value) == (".x", bound)
    with pytest.raises(InvalidValueError, match="outside the int64 range"):
        number_table.insert("t", {"x": bound})
    with pytest.raises(FilterExpressionError, match=r"outside (the )?int64"):
        number_table.query("t").filter(lambda q: q.lt(q.field("x"), bound)).count()


def test_ints_inside_int64_are_still_taken_as_the_floats_the_field_stores(
    number_table: zapnb.Database,
) -> None:
    query = number_table.query("t")
    assert query.with_index("by_x", lambda q: q.eq("x", 1)).count() == 1
    assert query.with_index("by_x", lambda q: q.lt("x", 2**63 - 1).gt("x", -(2**63))).count() == 1


def test_coerce_value_refuses_an_int_it_cannot_hold_as_an_int64() -> None:
    with pytest.raises(InvalidValueError, match="outside the int64 range"):
        coerce_value(10**400, [v.number()])
    with pytest.raises(InvalidValueError, match="outside the int64 range"):
        coerce_value([2**63], [v.array(v.float64())])
    assert coerce_value(2**63 - 1, [v.number()]) == 2.0**63


# --- IDs outside v.id(...) ----------------------------------------------------------------------------------


def test_an_id_is_stored_as_its_text() -> None:
    labelled = Id(AN_ID, "sentences")
    stored = check_document({"ref": labelled, "refs": [labelled], "m": {labelled: {"in": labelled}}})
    assert [type(x) for x in (stored["ref"], stored["refs"][0], next(iter(stored["m"])))] == [str] * 3
    assert type(stored["m"][AN_ID]["in"]) is str
    assert stored == {"ref": AN_ID, "refs": [AN_ID], "m": {AN_ID: {"in": AN_ID}}}
    assert type(normalize_value(labelled)) is str
    assert type(check_document({"_id": labelled}, allow_system_fields=True)["_id"]) is Id


def _kinds(doc: dict[str, Any]) -> dict[str, str]:
    """The type of each ID in a document of table "b" (and its table, for an Id)."""

    def kind(value: Any) -> str:
        return f"Id({value.table})" if isinstance(value, Id) else type(value).__name__

    y = doc["y"]
    return {
        "r": kind(doc["r"]),
        "rs": kind(doc["rs"][0]),
        "y": kind(y["ref"]),
        "y.refs": kind(y["refs"][0]),
        "y.key": kind(next(iter(y["m"]))),
    }


@pytest.fixture
def id_holder(tmp_path: Path) -> tuple[Path, zapnb.Id, zapnb.Id, zapnb.Id]:
    schema = zapnb.define_schema(
        {
            "a": zapnb.define_table({"x": v.int64()}),
            "b": zapnb.define_table({"r": v.id("a"), "rs": v.array(v.id("a")), "y": v.any()}),
        }
    )
    with zapnb.connect(tmp_path / "data") as db:
        db.deploy(schema, progress=False)
        a = db.insert("a", {"x": 1})
        b = db.insert("b", {"r": a, "rs": [a], "y": {"ref": a, "refs": [a], "m": {a: 1}}})
        c = db.insert("schemaless", {"ref": a, "refs": [a]})
    return tmp_path / "data", a, b, c


@pytest.mark.parametrize("stage", ["written", "checkpointed", "reopened"])
def test_an_id_reads_back_as_an_id_only_under_v_id(
    id_holder: tuple[Path, zapnb.Id, zapnb.Id, zapnb.Id], stage: str
) -> None:
    path, a, b, c = id_holder
    with zapnb.connect(path) as db:
        if stage == "written":  # the same writes again, read before any checkpoint
            b = db.insert("b", {"r": a, "rs": [a], "y": {"ref": a, "refs": [a], "m": {a: 1}}})
            c = db.insert("schemaless", {"ref": a, "refs": [a]})
        elif stage == "checkpointed":
            db.checkpoint()
        expected = {"r": "Id(a)", "rs": "Id(a)", "y": "str", "y.refs": "str", "y.key": "str"}
        got = db.get(b)
        assert got is not None
        assert _kinds(got) == expected
        assert [_kinds(doc) for doc in db.query("b") if doc["_id"] == b] == [expected]
        frame = db.query("b").collect()  # a typed frame holds text; its v.any() column is zapnb JSON
        assert frame["r"].to_list()[-1] == a
        assert decode_json(frame["y"].to_list()[-1]) == {"ref": a, "refs": [a], "m": {a: 1}}
        schemaless = db.get(c)
        assert schemaless is not None
        assert (type(schemaless["ref"]), type(schemaless["refs"][0])) == (str, str)
        assert schemaless["ref"] == a


# --- Id immutability ----------------------------------------------------------------------------------------


def test_an_id_read_from_a_document_cannot_be_relabelled(deployed: Open) -> None:
    db = deployed(
        zapnb.define_schema(
            {"a": zapnb.define_table({"x": v.int64()}), "b": zapnb.define_table({"r": v.id("a")})}
        )
    )
    a = db.insert("a", {"x": 1})
    b = db.insert("b", {"r": a})
    got = db.get(b)
    assert got is not None
    with pytest.raises(AttributeError, match="immutable"):
        got["r"]._table = "b"
    with pytest.raises(AttributeError, match="immutable"):
        a._table = "b"
    again = db.get(b)
    assert again is not None
    assert (again["r"].table, a.table, zapnb.Id.new(10001, "a").table) == ("a", "a", "a")


def test_the_label_that_the_ids_of_a_table_share_cannot_be_changed() -> None:
    doc_id = Id(AN_ID, "sentences")
    with pytest.raises(TypeError, match="cannot be changed"):
        vars(doc_id)["_table"] = "other"
    with pytest.raises(TypeError, match="cannot be changed"):
        vars(doc_id).update(_table="other")
    with pytest.raises(AttributeError, match="immutable"):
        doc_id.__dict__ = {"_table": "other"}
    assert Id(AN_ID, "sentences").table == doc_id.table == "sentences"
    label = copy.copy(vars(doc_id))  # a copy is a plain dict of its own
    label["_table"] = "other"
    assert (type(label), doc_id.table) == (dict, "sentences")


def test_an_immutable_id_still_pickles_copies_and_relabels() -> None:
    doc_id = Id(AN_ID, "sentences")
    restored = pickle.loads(pickle.dumps(doc_id))
    assert (type(restored), restored, restored.table) == (Id, AN_ID, "sentences")
    assert copy.deepcopy(doc_id) is doc_id
    assert doc_id.with_table("other").table == "other"
    assert doc_id.with_table(None).table is None
    assert doc_id.table == "sentences"


# --- JSON holds what a document can hold --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('"\\ud800"', "the string at the top level has a lone surrogate"),
        ('["ok", {"a": "x\\udc00y"}]', r"the string at \[1\]\.a has a lone surrogate"),
        ('"\ud800"', "lone surrogate"),  # a surrogate in the text itself, not escaped
        ('{"": 1}', r"invalid field name '': field names cannot be empty \(at the top level\)"),
        ('{"a": {"b\\u0001": 1}}', r"printable ASCII.* \(at \.a\)"),
        ('{"caf\\u00e9": 1}', "printable ASCII"),
        ('{"' + "n" * 1025 + '": 1}', "at most 1024 characters"),
        (
            '{"a":1,"a":2}',
            r"the field 'a' appears twice in one object; name each field once \(at the top level\)",
        ),
        ('[{"x": {"k": 1, "k": 1}}]', r"'k' appears twice .*\(at \[0\]\.x\)"),
        ('{"a": [1, {"$x": 1}]}', r"unknown field '\$x'.*\(at \.a\[1\]\)"),
    ],
)
def test_decode_json_refuses_what_no_document_holds(text: str, problem: str) -> None:
    with pytest.raises(InvalidJsonError, match=problem):
        decode_json(text)


def test_decode_json_names_the_bad_object_even_when_the_text_breaks_after_it() -> None:
    with pytest.raises(InvalidJsonError, match="an object repeats a field or has an invalid field name"):
        decode_json('[{"a":1,"a":2}, ')


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate pair is one character
        ('"\\\\ud800"', "\\ud800"),  # an escaped backslash, then plain text
        ('{"_id": "x", "a b": {"_c": 1}}', {"_id": "x", "a b": {"_c": 1}}),
        ('{"$bytes": "AA=="}', b"\x00"),
    ],
)
def test_decode_json_accepts_what_a_document_holds(text: str, value: Any) -> None:
    assert decode_json(text) == value
    assert decode_json(text.encode()) == value
    assert decode_stored_json(text) == value


@pytest.mark.parametrize(
    ("value", "error", "path"),
    [
        ("\ud800", InvalidValueError, ""),
        ({"a": ["ok", "x\udfff"]}, InvalidValueError, ".a[1]"),
        ({"": 1}, InvalidFieldNameError, '[""]'),
        ({"a": {"b\x01": 1}}, InvalidFieldNameError, '.a["b\\u0001"]'),
        ({"café": 1}, InvalidFieldNameError, '["caf\\u00e9"]'),
        ({"n" * 1025: 1}, InvalidFieldNameError, "." + "n" * 1025),
    ],
    ids=["lone surrogate", "nested surrogate", "empty name", "control character", "not ASCII", "too long"],
)
def test_encode_json_refuses_what_no_document_holds(
    value: Any, error: type[InvalidValueError], path: str
) -> None:
    with pytest.raises(error) as info:
        encode_json(value)
    assert type(info.value) is error
    assert info.value.path == path


_names = st.sampled_from(["a", "_b", "c d", "~", "", "$x", "é", "\x01", "n" * 1025])
_strings = st.sampled_from(["", "text", "é😀", "\ud800", "a\udfffb"])
_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), _strings, st.binary()),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(_names, children, max_size=3)),
    max_leaves=8,
)


def _accepted(action: Callable[[], object]) -> bool:
    try:
        action()
    except ZapError:
        return False
    return True


@given(_json_values)
def test_json_accepts_exactly_the_values_a_document_holds(value: Any) -> None:
    stored = _accepted(lambda: normalize_value(value))
    assert _accepted(lambda: encode_json(value)) == stored
    if stored:
        text = encode_json(value)
        assert encode_json(decode_json(text)) == text
        assert encode_json(decode_stored_json(text)) == text


def test_ids_read_back_the_same_before_and_after_a_checkpoint(tmp_path: Path) -> None:
    fields = {
        "u1": v.union(v.id("a"), v.string()),
        "u2": v.union(v.id("a"), v.id("b")),
        "rec": v.record(v.id("a"), v.id("a")),
        "n": v.nullable(v.id("a")),
        "arr": v.array(v.id("a")),
        "obj": v.object({"x": v.id("a")}),
        "au": v.array(v.union(v.id("a"), v.int64())),
        "uo": v.union(v.object({"r": v.id("a")}), v.null()),
        "uos": v.union(v.object({"r": v.id("a")}), v.string()),
    }
    schema = zapnb.define_schema(
        {
            "a": zapnb.define_table({"k": v.int64()}),
            "b": zapnb.define_table({"k": v.int64()}),
            "t": zapnb.define_table({name: v.optional(f) for name, f in fields.items()}),
        }
    )
    db = zapnb.connect(tmp_path)
    db.deploy(schema, progress=False)
    a, b = db.insert("a", {"k": 1}), db.insert("b", {"k": 1})
    doc = {
        "u1": a, "u2": b, "rec": {a: a}, "n": a, "arr": [a], "obj": {"x": a}, "au": [a, 3],
        "uo": {"r": a}, "uos": {"r": a},
    }  # fmt: skip
    t = db.insert("t", doc)

    def kinds(value: object) -> object:
        if isinstance(value, dict):
            return [(type(k).__name__, kinds(x)) for k, x in value.items()]
        if isinstance(value, list):
            return [kinds(x) for x in value]
        return type(value).__name__

    before = {name: kinds(value) for name, value in (db.get(t) or {}).items()}
    db.checkpoint()
    after = {name: kinds(value) for name, value in (db.get(t) or {}).items()}
    assert before == after
    assert (before["n"], before["arr"], before["obj"]) == ("Id", ["Id"], [("str", "Id")])
    assert (before["u1"], before["rec"], before["au"]) == ("str", [("str", "str")], ["str", "int"])
    assert db.get(t) == {**doc, "_id": t, "_creationTime": (db.get(t) or {})["_creationTime"]}
    db.close()

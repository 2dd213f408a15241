"""Tests for zapnb.jsonvalues: the lossless JSON encoding (semantics.md section 9) and Convex's forms."""

from __future__ import annotations

import base64
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zapnb
from zapnb.errors import InvalidFieldNameError, InvalidJsonError, InvalidValueError
from zapnb.ids import Id
from zapnb.jsonvalues import decode_json, encode_json, encode_json_line
from zapnb.values import MISSING, UNSET, canonical_float

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "convex-snapshot-anouk"
NAN = float("nan")
NEG_NAN = -float("nan")
INF = float("inf")
PAYLOAD_NAN = struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def bits(value: float) -> str:
    return struct.pack(">d", value).hex()


def same(expected: Any, actual: Any) -> bool:
    """Exact equality after a JSON round trip: types, float bits (NaN canonical), field order."""
    if isinstance(expected, bool) or expected is None:
        return actual is expected
    if isinstance(expected, float):
        return type(actual) is float and bits(actual) == bits(canonical_float(expected))
    if isinstance(expected, (list, tuple)):
        return (
            type(actual) is list
            and len(actual) == len(expected)
            and all(same(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, dict):
        return (
            type(actual) is dict
            and list(actual) == list(expected)
            and all(same(expected[key], actual[key]) for key in expected)
        )
    return type(actual) is type(expected).__mro__[-2] and actual == expected


def float_b64(hex_bits: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_bits)[::-1]).decode()


# --- a strategy for every kind ------------------------------------------------------------------------------

_floats = st.one_of(
    st.floats(),
    st.sampled_from([NAN, NEG_NAN, PAYLOAD_NAN, 0.0, -0.0, INF, -INF, 5e-324, 1e20, 1e16, 1e-7, 20.0]),
)
_scalars = st.one_of(
    st.none(),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.sampled_from([INT64_MIN, INT64_MAX, 0]),
    _floats,
    st.booleans(),
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.sampled_from(["", "\x00", '"$float"', "\\u0024", "\u2028", "\U0001f600"]),
    st.binary(max_size=6),
)
values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children),
        st.dictionaries(
            st.text(alphabet='ab_ ~"\\$', min_size=1, max_size=3).filter(lambda k: k[0] != "$"),
            children,
            max_size=4,
        ),
    ),
    max_leaves=10,
)


# --- encoding: exact text -----------------------------------------------------------------------------------


def test_the_example_from_the_brief_of_section_9() -> None:
    text = encode_json({"a": 1, "b": 1.0, "c": NAN, "d": b"\x00"})
    assert text == '{"a":1,"b":1.0,"c":{"$float":"AAAAAAAA+H8="},"d":{"$bytes":"AA=="}}'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (INT64_MAX, "9223372036854775807"),
        (INT64_MIN, "-9223372036854775808"),
        (1.0, "1.0"),
        (20.0, "20.0"),
        (-0.0, "-0.0"),
        (0.1, "0.1"),
        (1e20, "1e+20"),
        (1e16, "1e+16"),
        (1e-7, "1e-07"),
        (5e-324, "5e-324"),
        (1745162191687.9707, "1745162191687.9707"),
        (NAN, '{"$float":"AAAAAAAA+H8="}'),
        (PAYLOAD_NAN, '{"$float":"AAAAAAAA+H8="}'),
        (NEG_NAN, '{"$float":"AAAAAAAA+P8="}'),
        (INF, '{"$float":"AAAAAAAA8H8="}'),
        (-INF, '{"$float":"AAAAAAAA8P8="}'),
        (b"", '{"$bytes":""}'),
        (b"\x00\xff", '{"$bytes":"AP8="}'),
        ("é😀", '"é😀"'),
        ('\x00\n"\\', '"\\u0000\\n\\"\\\\"'),
        ([], "[]"),
        ((1, (2.0,)), "[1,[2.0]]"),
        ({}, "{}"),
        ({"b": 1, "a": {"c": []}}, '{"b":1,"a":{"c":[]}}'),
        (Id("kd70hswas0vt0z9b7kxmmcwcd97ed1rj", "sentences"), '"kd70hswas0vt0z9b7kxmmcwcd97ed1rj"'),
    ],
    ids=repr,
)
def test_encode_json_text(value: Any, text: str) -> None:
    assert encode_json(value) == text


def test_nan_is_written_as_convex_writes_it() -> None:
    assert float_b64("7ff8000000000000") == "AAAAAAAA+H8="
    assert float_b64("7ff0000000000000") == "AAAAAAAA8H8="


def test_encode_json_line() -> None:
    assert encode_json_line({"_id": "x", "n": 2.0}) == '{"_id":"x","n":2.0}\n'


def test_public_names() -> None:
    assert zapnb.encode_json is encode_json
    assert zapnb.decode_json is decode_json


# --- encoding: errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "path"),
    [
        (2**63, InvalidValueError, ""),
        ({"a": [1, -(2**63) - 1]}, InvalidValueError, ".a[1]"),
        ({"a": {"$float": "x"}}, InvalidFieldNameError, ".a.$float"),
        ({"a": [{1: 2}]}, InvalidFieldNameError, ".a[0]"),
        ([{"x": {1, 2}}], InvalidValueError, "[0].x"),
        ({"m": MISSING}, InvalidValueError, ".m"),
        ({"u": UNSET}, InvalidValueError, ".u"),
        (bytearray(b"x"), InvalidValueError, ""),
    ],
    ids=[
        "int too big",
        "nested int too small",
        "$ field",
        "int field name",
        "set",
        "MISSING",
        "UNSET",
        "bytearray",
    ],
)
def test_encode_json_rejects(value: Any, error: type[InvalidValueError], path: str) -> None:
    with pytest.raises(error) as info:
        encode_json(value)
    assert type(info.value) is error
    assert info.value.path == path


def test_encode_json_rejects_a_value_that_contains_itself() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(InvalidValueError, match="contains itself"):
        encode_json(cycle)


# --- decoding -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20.0", 20.0),
        ("20", 20),
        ("2e1", 20.0),
        ("-0.0", -0.0),
        ("-9223372036854775808", INT64_MIN),
        ('{"$integer":"AAAAAAAAAAA="}', 0),
        ('{"$integer":"//////////8="}', -1),
        ('{"$integer":"/////////38="}', INT64_MAX),
        ('{"$integer":"AAAAAAAAAIA="}', INT64_MIN),
        ('{"$float":"AAAAAAAAAIA="}', -0.0),
        ('{"$float":"AAAAAAAA8D8="}', 1.0),
        ('{"$float":"AAAAAAAA+H8="}', NAN),
        ('{"$float":"AQAAAAAA8H8="}', NAN),
        ('{"$float":"AAAAAAAA+P8="}', NEG_NAN),
        ('{"$float":"AAAAAAAA8P8="}', -INF),
        ('{"$bytes":""}', b""),
        ('{"$bytes":"AP8="}', b"\x00\xff"),
        ('{"\\u0024bytes":"AP8="}', b"\x00\xff"),
        ('{"a":{"$bytes":"AA=="},"b":[{"$float":"AAAAAAAA8H8="}]}', {"a": b"\x00", "b": [INF]}),
        ('{"price":"$5","n":1}', {"price": "$5", "n": 1}),
        (" [1, 2.5] \n", [1, 2.5]),
    ],
)
def test_decode_json(text: str, expected: Any) -> None:
    assert same(expected, decode_json(text))


def test_decode_json_accepts_utf8_bytes() -> None:
    assert decode_json('{"s":"é"}'.encode()) == {"s": "é"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("NaN", "NaN is not JSON"),
        ("[Infinity]", "Infinity is not JSON"),
        ('{"a":-Infinity}', "-Infinity is not JSON"),
        ("1e400", "too large for a float64"),
        ("9223372036854775808", "outside int64"),
        ("-9223372036854775809", "outside int64"),
        ('{"$set":[]}', "unknown field '\\$set'"),
        ('{"$foo":1}', "unknown field"),
        ('{"a":1,"$float":"AAAAAAAA+H8="}', "unknown field '\\$float'"),
        ('[{"\\u0024map":[]}]', "unknown field '\\$map'"),
        ('{"$float":1}', "must hold a base64 string"),
        ('{"$float":"AAAA"}', "holds 3 bytes, not 8"),
        ('{"$integer":"AAAAAAAAAAAA"}', "holds 9 bytes, not 8"),
        ('{"$bytes":"!!"}', "not base64"),
        ('{"$bytes":"AA"}', "not base64"),
        ("{", "Expecting"),
        ('{"a":1} x', "Extra data"),
        ("", "Expecting value"),
    ],
)
def test_decode_json_rejects(text: str, problem: str) -> None:
    with pytest.raises(InvalidJsonError, match=problem) as info:
        decode_json(text)
    assert info.value.text == text[:200]


def test_decode_json_rejects_bad_utf8() -> None:
    with pytest.raises(InvalidJsonError, match="invalid UTF-8 at byte 1"):
        decode_json(b'"\xff"')


# --- properties ---------------------------------------------------------------------------------------------


@given(values)
def test_round_trip_is_exact(value: Any) -> None:
    assert same(value, decode_json(encode_json(value)))


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_always_read_back_as_floats(value: float) -> None:
    text = encode_json(value)
    assert "." in text or "e" in text
    assert bits(decode_json(text)) == bits(value)


# --- the real Convex export ---------------------------------------------------------------------------------


def _fixture_lines() -> list[tuple[str, str]]:
    files = sorted(FIXTURE.glob("*/documents.jsonl"))
    assert len(files) == 4
    return [(path.parent.name, line) for path in files for line in path.read_text("utf-8").splitlines()]


def test_convex_export_decodes_and_reencodes_byte_for_byte() -> None:
    lines = _fixture_lines()
    assert len(lines) == 59
    for table, line in lines:
        document = decode_json(line)
        assert encode_json(document) == line, table
        assert encode_json_line(document) == line + "\n"


def test_convex_export_keeps_its_kinds() -> None:
    documents: dict[str, list[tuple[str, Any]]] = {
        table: [] for table in ("_tables", "exercises", "sentences", "userProgress")
    }
    for table, line in _fixture_lines():
        documents[table].append((line, decode_json(line)))
    for _line, table_row in documents["_tables"]:
        assert type(table_row["id"]) is int
    for _line, exercise in documents["exercises"]:
        assert type(exercise["order"]) is float  # written as 20.0
    for _line, progress in documents["userProgress"]:
        assert type(progress["completed"]) is bool
        assert type(progress["completedAt"]) is float
    for table in ("exercises", "sentences", "userProgress"):
        for line, document in documents[table]:
            literal = re.search(r'"_creationTime":([0-9.e+-]+)', line)
            assert literal is not None
            assert type(document["_creationTime"]) is float
            assert bits(document["_creationTime"]) == bits(float(literal.group(1)))
    sentence = documents["sentences"][0][1]
    assert isinstance(sentence["distractorWords"], list)
    assert "😏" in sentence["explanation"]

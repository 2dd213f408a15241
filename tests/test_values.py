"""Tests for zapnb.values: kinds, the sentinels and the total order of section 1 of the semantics."""

from __future__ import annotations

import copy
import datetime
import enum
import functools
import pickle
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zapnb
from zapnb.errors import InvalidValueError
from zapnb.ids import Id
from zapnb.values import (
    MISSING,
    UNSET,
    Kind,
    MissingType,
    canonical_float,
    compare,
    float_from_order,
    float_order,
    kind_of,
    sorted_fields,
    values_equal,
)

NAN = float("nan")
NEG_NAN = -float("nan")
INF = float("inf")
PAYLOAD_NAN = struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0]
NEG_PAYLOAD_NAN = struct.unpack(">d", bytes.fromhex("ffffffffffffffff"))[0]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ID = Id("kd70hswas0vt0z9b7kxmmcwcd97ed1rj", "sentences")


def bits(value: float) -> str:
    return struct.pack(">d", value).hex()


# --- a strategy for every kind ------------------------------------------------------------------------------

_floats = st.one_of(
    st.floats(),
    st.sampled_from([NAN, NEG_NAN, PAYLOAD_NAN, NEG_PAYLOAD_NAN, 0.0, -0.0, INF, -INF, 5e-324, -5e-324, 1.0]),
)
_scalars = st.one_of(
    st.none(),
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.sampled_from([INT64_MIN, INT64_MAX]),
    _floats,
    st.booleans(),
    st.text(alphabet="ab\x00\x01\x7fé\uffff\U00010000\U0001f600", max_size=4),
    st.text(st.characters(codec="utf-8"), max_size=6),
    st.binary(max_size=4),
    st.sampled_from([b"", b"\x00", b"\x01", b"\xff", b"\x00\xff", b"\x01\x02"]),
)
values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(alphabet="ab\x00\x01é", max_size=3), children, max_size=4),
    ),
    max_leaves=10,
)
values_or_missing = st.one_of(st.just(MISSING), values)


# --- sentinels ----------------------------------------------------------------------------------------------


def test_sentinels_have_the_public_repr() -> None:
    assert repr(MISSING) == "zapnb.MISSING"
    assert repr(UNSET) == "zapnb.UNSET"
    assert zapnb.MISSING is MISSING
    assert zapnb.UNSET is UNSET
    sentinels: list[object] = [MISSING, UNSET]
    assert sentinels[0] is not sentinels[1]


@pytest.mark.parametrize("sentinel", [MISSING, UNSET], ids=["MISSING", "UNSET"])
def test_sentinels_survive_copy_and_pickle_as_the_same_object(sentinel: object) -> None:
    assert copy.copy(sentinel) is sentinel
    assert copy.deepcopy(sentinel) is sentinel
    assert copy.deepcopy({"x": [sentinel]})["x"][0] is sentinel
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(sentinel, protocol=protocol)) is sentinel


def test_sentinels_are_falsy() -> None:
    assert not MISSING
    assert not UNSET


def _plus_one(value: int | MissingType) -> int:
    # mypy --strict checks this file: it fails here if `is MISSING` does not narrow the type.
    if value is MISSING:
        return 0
    return value + 1


def test_missing_narrows_for_type_checkers() -> None:
    assert _plus_one(MISSING) == 0
    assert _plus_one(2) == 3


# --- kinds --------------------------------------------------------------------------------------------------


def test_kinds_are_numbered_in_sort_order() -> None:
    assert [kind.name for kind in sorted(Kind)] == [
        "MISSING",
        "NULL",
        "INT64",
        "FLOAT64",
        "BOOLEAN",
        "STRING",
        "BYTES",
        "ARRAY",
        "OBJECT",
    ]


class _Colour(enum.IntEnum):
    RED = 1


class _Ratio(float):
    pass


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (MISSING, Kind.MISSING),
        (None, Kind.NULL),
        (0, Kind.INT64),
        (INT64_MIN, Kind.INT64),
        (_Colour.RED, Kind.INT64),
        (0.0, Kind.FLOAT64),
        (NAN, Kind.FLOAT64),
        (_Ratio(0.5), Kind.FLOAT64),
        (True, Kind.BOOLEAN),
        (False, Kind.BOOLEAN),
        ("", Kind.STRING),
        (ID, Kind.STRING),
        (b"", Kind.BYTES),
        ([], Kind.ARRAY),
        ((1, 2), Kind.ARRAY),
        ({}, Kind.OBJECT),
    ],
    ids=repr,
)
def test_kind_of(value: object, kind: Kind) -> None:
    assert kind_of(value) is kind


@pytest.mark.parametrize(
    "value",
    [{1, 2}, datetime.date(2025, 1, 1), object(), bytearray(b"x"), 1j, UNSET],
    ids=["set", "date", "object", "bytearray", "complex", "UNSET"],
)
def test_kind_of_rejects_what_is_not_a_value(value: object) -> None:
    with pytest.raises(InvalidValueError) as info:
        kind_of(value)
    assert info.value.value is value


def test_unset_is_explained_when_used_as_a_value() -> None:
    with pytest.raises(InvalidValueError, match="patch"):
        compare(UNSET, 1)


def test_compare_rejects_non_string_field_names() -> None:
    with pytest.raises(InvalidValueError, match="field names must be str"):
        compare({1: "a"}, {"a": 1})
    with pytest.raises(InvalidValueError, match="field names must be str"):
        sorted_fields({1: "a"})


# --- the order, rule by rule --------------------------------------------------------------------------------

# Each row: (rule from semantics.md section 1, smaller value, larger value).
ORDER_RULES: list[tuple[str, Any, Any]] = [
    ("missing before null", MISSING, None),
    ("null before the smallest int64", None, INT64_MIN),
    ("int64 before float64: largest int before -inf", INT64_MAX, -INF),
    ("int64 before float64: largest int before -nan", INT64_MAX, NEG_NAN),
    ("int64 before float64: 1 before 1.0", 1, 1.0),
    ("int64 before float64: 2 before 1.0", 2, 1.0),
    ("float64 before boolean: nan before False", NAN, False),
    ("False before True", False, True),
    ("boolean before string", True, ""),
    ("string before bytes", "\U0010ffff", b""),
    ("bytes before array", b"\xff\xff", []),
    ("array before object", [[{}]], {}),
    ("int64 order: min before -1", INT64_MIN, -1),
    ("int64 order: -1 before 0", -1, 0),
    ("int64 order: 0 before max", 0, INT64_MAX),
    ("floats: -nan first", NEG_NAN, -INF),
    ("floats: -nan with a payload first", NEG_PAYLOAD_NAN, -INF),
    ("floats: -inf before the most negative finite", -INF, -1.7976931348623157e308),
    ("floats: -1.0 before -5e-324", -1.0, -5e-324),
    ("floats: -5e-324 before -0.0", -5e-324, -0.0),
    ("floats: -0.0 before 0.0", -0.0, 0.0),
    ("floats: 0.0 before 5e-324", 0.0, 5e-324),
    ("floats: largest finite before inf", 1.7976931348623157e308, INF),
    ("floats: inf before nan", INF, NAN),
    ("floats: inf before nan with a payload", INF, PAYLOAD_NAN),
    ("floats: -nan before nan", NEG_NAN, NAN),
    ("strings: prefix first", "a", "ab"),
    ("strings: empty first", "", "\x00"),
    ("strings: a before a-NUL", "a", "a\x00"),
    ("strings: NUL before SOH", "\x00", "\x01"),
    ("strings: code point order, not UTF-16 (U+FFFF before U+10000)", "\uffff", "\U00010000"),
    ("strings: upper case before lower case", "Z", "a"),
    ("strings: ASCII before accented", "z", "é"),
    ("bytes: bytewise, unsigned", b"\x7f", b"\x80"),
    ("bytes: prefix first", b"\x00", b"\x00\x00"),
    ("arrays: prefix first", [1], [1, None]),
    ("arrays: empty first", [], [MISSING]),
    ("arrays: element by element", [1, 2.0], [1.0]),
    ("arrays: nested prefix first", [[1]], [[1, 1]]),
    ("objects: prefix of sorted pairs first", {"a": 1}, {"a": 1, "b": 0}),
    ("objects: empty first", {}, {"": None}),
    ("objects: key decides before value", {"a": 2}, {"b": 1}),
    ("objects: value decides for equal keys", {"a": 1, "b": 1}, {"a": 1, "b": 2}),
    ("objects: sorted before comparing", {"b": 0, "a": 9}, {"c": 0, "a": 9}),
    ("objects: smaller first key wins over more fields", {"a": 1, "z": 1}, {"b": 0}),
    ("objects: values compare across kinds", {"a": 5}, {"a": 0.5}),
]


@pytest.mark.parametrize(("rule", "smaller", "larger"), ORDER_RULES, ids=[row[0] for row in ORDER_RULES])
def test_order_rule(rule: str, smaller: Any, larger: Any) -> None:
    assert compare(smaller, larger) == -1, rule
    assert compare(larger, smaller) == 1, rule
    assert not values_equal(smaller, larger), rule


EQUAL: list[tuple[str, Any, Any]] = [
    ("nan == nan", NAN, float("nan")),
    ("nan payload ignored", NAN, PAYLOAD_NAN),
    ("-nan == -nan", NEG_NAN, NEG_PAYLOAD_NAN),
    ("0.0 == 0.0", 0.0, 0.0),
    ("a tuple is the array", (1, "a"), [1, "a"]),
    ("field order does not matter", {"a": 1, "b": [2]}, {"b": [2], "a": 1}),
    ("an Id is its string", ID, "kd70hswas0vt0z9b7kxmmcwcd97ed1rj"),
    ("MISSING == MISSING", MISSING, MISSING),
    ("nested nan", [{"x": NAN}], [{"x": float("nan")}]),
]


@pytest.mark.parametrize(("rule", "a", "b"), EQUAL, ids=[row[0] for row in EQUAL])
def test_equal(rule: str, a: Any, b: Any) -> None:
    assert compare(a, b) == 0, rule
    assert compare(b, a) == 0, rule
    assert values_equal(a, b), rule


NOT_EQUAL: list[tuple[str, Any, Any]] = [
    ("1 != 1.0", 1, 1.0),
    ("0 != False", 0, False),
    ("1 != True", 1, True),
    ("0.0 != -0.0", 0.0, -0.0),
    ("nan != -nan", NAN, NEG_NAN),
    ("'' != b''", "", b""),
    ("[] != {}", [], {}),
    ("None != MISSING", None, MISSING),
    ("[1] != [1.0]", [1], [1.0]),
    ("{'a': 1} != {'a': 1.0}", {"a": 1}, {"a": 1.0}),
]


@pytest.mark.parametrize(("rule", "a", "b"), NOT_EQUAL, ids=[row[0] for row in NOT_EQUAL])
def test_not_equal(rule: str, a: Any, b: Any) -> None:
    assert compare(a, b) != 0, rule
    assert not values_equal(a, b), rule


def test_sorting_a_mixed_list_follows_the_kind_order() -> None:
    mixed: list[Any] = [{"a": 1}, [], b"", "", True, False, NAN, 2.5, 3, None, MISSING, NEG_NAN]
    ordered = sorted(mixed, key=functools.cmp_to_key(compare))
    assert [kind_of(value).name for value in ordered] == [
        "MISSING",
        "NULL",
        "INT64",
        "FLOAT64",
        "FLOAT64",
        "FLOAT64",
        "BOOLEAN",
        "BOOLEAN",
        "STRING",
        "BYTES",
        "ARRAY",
        "OBJECT",
    ]
    assert bits(ordered[3]) == bits(NEG_NAN)
    assert bits(ordered[5]) == bits(NAN)
    assert ordered[6:8] == [False, True]


# --- floats -------------------------------------------------------------------------------------------------


def test_canonical_float_keeps_the_nan_sign_and_drops_the_payload() -> None:
    assert bits(canonical_float(PAYLOAD_NAN)) == "7ff8000000000000"
    assert bits(canonical_float(NEG_PAYLOAD_NAN)) == "fff8000000000000"
    assert bits(canonical_float(-0.0)) == bits(-0.0)
    assert canonical_float(1.5) == 1.5


def test_inf_minus_inf_is_a_value_like_any_nan() -> None:
    produced = INF - INF  # a negative NaN on x86
    assert kind_of(produced) is Kind.FLOAT64
    assert values_equal(produced, canonical_float(produced))


@given(_floats)
def test_float_order_round_trips_exactly(value: float) -> None:
    assert bits(float_from_order(float_order(value))) == bits(canonical_float(value))


@given(_floats, _floats)
def test_float_order_is_ieee_total_order(a: float, b: float) -> None:
    expected = (a > b) - (a < b)
    if a != a or b != b or (a == 0.0 and b == 0.0):
        return  # the cases the table tests pin down
    assert compare(a, b) == expected


# --- properties ---------------------------------------------------------------------------------------------


@given(st.text(st.characters(codec="utf-8")), st.text(st.characters(codec="utf-8")))
def test_string_order_is_utf8_byte_order(a: str, b: str) -> None:
    encoded_a, encoded_b = a.encode(), b.encode()
    assert compare(a, b) == (encoded_a > encoded_b) - (encoded_a < encoded_b)


@given(values_or_missing, values_or_missing)
def test_compare_is_antisymmetric_and_never_raises_across_kinds(a: Any, b: Any) -> None:
    result = compare(a, b)
    assert result in (-1, 0, 1)
    assert compare(b, a) == -result
    assert values_equal(a, b) == (result == 0)
    if kind_of(a) is not kind_of(b):
        assert result == (-1 if kind_of(a) < kind_of(b) else 1)


@given(values_or_missing)
def test_compare_is_reflexive(a: Any) -> None:
    assert compare(a, a) == 0
    assert compare(a, copy.deepcopy(a)) == 0


@given(st.lists(values_or_missing, min_size=3, max_size=3))
def test_compare_is_transitive(triple: list[Any]) -> None:
    a, b, c = sorted(triple, key=functools.cmp_to_key(compare))
    assert compare(a, b) <= 0
    assert compare(b, c) <= 0
    assert compare(a, c) <= 0
    if compare(a, b) == 0 and compare(b, c) == 0:
        assert compare(a, c) == 0
    if compare(a, b) < 0 or compare(b, c) < 0:
        assert compare(a, c) < 0

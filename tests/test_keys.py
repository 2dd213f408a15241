"""Tests for zapnb.keys: byte keys that sort like the values, decode exactly and support prefix ranges."""

from __future__ import annotations

import functools
import itertools
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zapnb.errors import InvalidKeyError, InvalidValueError
from zapnb.ids import Id
from zapnb.keys import decode_key, decode_value, encode_key, encode_value, prefix_end
from zapnb.values import MISSING, UNSET, canonical_float, compare, values_equal

NAN = float("nan")
NEG_NAN = -float("nan")
INF = float("inf")
PAYLOAD_NAN = struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0]
NEG_PAYLOAD_NAN = struct.unpack(">d", bytes.fromhex("ffffffffffffffff"))[0]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def bits(value: float) -> str:
    return struct.pack(">d", value).hex()


def sign(result: int) -> int:
    return (result > 0) - (result < 0)


def same(expected: Any, actual: Any) -> bool:
    """Exact equality of a value and its decoded key: types, float bits (NaN canonical) and fields."""
    if isinstance(expected, bool) or expected is None or expected is MISSING:
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
            and list(actual) == sorted(expected)
            and all(same(expected[key], actual[key]) for key in expected)
        )
    return type(actual) is type(expected).__mro__[-2] and actual == expected


# --- a strategy for every kind ------------------------------------------------------------------------------

_floats = st.one_of(
    st.floats(),
    st.sampled_from([NAN, NEG_NAN, PAYLOAD_NAN, NEG_PAYLOAD_NAN, 0.0, -0.0, INF, -INF, 5e-324, -5e-324, 1.0]),
)
_scalars = st.one_of(
    st.none(),
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.sampled_from([INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1, 255, 256, -256]),
    _floats,
    st.booleans(),
    st.text(alphabet="ab\x00\x01\x02\x7fé\uffff\U00010000\U0001f600", max_size=4),
    st.text(st.characters(codec="utf-8"), max_size=6),
    st.binary(max_size=4),
    st.sampled_from([b"", b"\x00", b"\x01", b"\x02", b"\xff", b"\x00\xff", b"\x01\x02", b"\x01\x01"]),
)
values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.text(alphabet="ab\x00\x01é", max_size=3), children, max_size=4),
    ),
    max_leaves=10,
)
values_or_missing = st.one_of(st.just(MISSING), values)
composite_keys = st.lists(values_or_missing, min_size=1, max_size=3).map(tuple)


# --- the format ---------------------------------------------------------------------------------------------

FORMAT: list[tuple[Any, bytes]] = [
    (MISSING, b"\x01"),
    (None, b"\x02"),
    (0, b"\x03\x80" + bytes(7)),
    (-1, b"\x03\x7f" + b"\xff" * 7),
    (INT64_MIN, b"\x03" + bytes(8)),
    (INT64_MAX, b"\x03" + b"\xff" * 8),
    (1.0, b"\x04\xbf\xf0" + bytes(6)),
    (0.0, b"\x04\x80" + bytes(7)),
    (-0.0, b"\x04\x7f" + b"\xff" * 7),
    (NAN, b"\x04\xff\xf8" + bytes(6)),
    (NEG_NAN, b"\x04\x00\x07" + b"\xff" * 6),
    (False, b"\x05"),
    (True, b"\x06"),
    ("", b"\x07\x00"),
    ("a\x00b\x01", b"\x07a\x01\x01b\x01\x02\x00"),
    ("é", b"\x07\xc3\xa9\x00"),
    (b"\x00\xff", b"\x08\x01\x01\xff\x00"),
    ([], b"\x09\x00"),
    ([None, [True]], b"\x09\x02\x09\x06\x00\x00"),
    ({}, b"\x0a\x00"),
    ({"b": None, "a": False}, b"\x0a\x07a\x00\x05\x07b\x00\x02\x00"),
]


@pytest.mark.parametrize(("value", "expected"), FORMAT, ids=[repr(row[0]) for row in FORMAT])
def test_encoding_format_is_stable(value: Any, expected: bytes) -> None:
    assert encode_value(value) == expected
    assert same(value, decode_value(expected))


def test_a_key_is_the_concatenation_of_its_fields() -> None:
    assert encode_key(["a", 1.0, MISSING]) == encode_value("a") + encode_value(1.0) + encode_value(MISSING)
    assert encode_key(("a",)) == encode_value("a")
    assert encode_key([]) == b""
    assert decode_key(b"") == []


# --- order: explicit cases ----------------------------------------------------------------------------------

ORDERED: list[Any] = [
    MISSING,
    None,
    INT64_MIN,
    -256,
    -1,
    0,
    1,
    255,
    256,
    INT64_MAX,
    NEG_NAN,
    -INF,
    -1.0,
    -5e-324,
    -0.0,
    0.0,
    5e-324,
    1.0,
    INF,
    NAN,
    False,
    True,
    "",
    "\x00",
    "\x00\x00",
    "\x00\x01",
    "\x01",
    "\x01\x00",
    "\x02",
    "a",
    "a\x00",
    "a\x01",
    "ab",
    "\uffff",
    "\U00010000",
    b"",
    b"\x00",
    b"\x01",
    b"\xff",
    [],
    [MISSING],
    [None],
    [1],
    [1, 2],
    [1.0],
    [[]],
    {},
    {"": None},
    {"a": 1},
    {"a": 1, "b": 0},
    {"a": 1.0},
    {"a\x00": 0},
    {"b": 0},
]


def test_explicit_values_sort_by_their_keys() -> None:
    keys = [encode_value(value) for value in ORDERED]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    for smaller, larger in itertools.pairwise(ORDERED):
        assert compare(smaller, larger) == -1, (smaller, larger)


def test_an_id_encodes_as_its_string() -> None:
    doc_id = Id("kd70hswas0vt0z9b7kxmmcwcd97ed1rj", "sentences")
    assert encode_value(doc_id) == encode_value("kd70hswas0vt0z9b7kxmmcwcd97ed1rj")
    (decoded,) = decode_key(encode_key([doc_id]))
    assert type(decoded) is str
    assert decoded == doc_id


def test_nan_payloads_share_a_key_and_signs_do_not() -> None:
    assert encode_value(PAYLOAD_NAN) == encode_value(NAN)
    assert encode_value(NEG_PAYLOAD_NAN) == encode_value(NEG_NAN)
    assert encode_value(NEG_NAN) < encode_value(-INF)
    assert encode_value(INF) < encode_value(NAN)
    assert bits(decode_value(encode_value(NEG_PAYLOAD_NAN))) == "fff8000000000000"


# --- prefix ranges ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "end"),
    [
        (b"\x07a\x00", b"\x07a\x01"),
        (b"a\xff", b"b"),
        (b"a\xff\xff", b"b"),
        (b"\x00", b"\x01"),
        (b"\xfe", b"\xff"),
        (b"\xff", None),
        (b"\xff\xff", None),
        (b"", None),
    ],
)
def test_prefix_end(key: bytes, end: bytes | None) -> None:
    assert prefix_end(key) == end


def test_prefix_range_holds_exactly_the_keys_with_that_prefix() -> None:
    start = encode_key(["a"])
    end = prefix_end(start)
    assert end is not None
    inside: list[list[Any]] = [
        ["a"],
        ["a", MISSING],
        ["a", INT64_MAX],
        ["a", {"z": [b"\xff"]}],
        ["a", "\xff"],
    ]
    outside: list[list[Any]] = [[""], ["a\x00"], ["a\x01"], ["a\x00", 1], ["ab"], [MISSING], [b"a"], [["a"]]]
    for fields in inside:
        assert start <= encode_key(fields) < end, fields
    for fields in outside:
        assert not start <= encode_key(fields) < end, fields


@given(composite_keys, composite_keys, st.integers(min_value=0, max_value=3))
def test_prefix_range_property(a: tuple[Any, ...], b: tuple[Any, ...], length: int) -> None:
    prefix = a[:length]
    start = encode_key(prefix)
    end = prefix_end(start)
    key = encode_key(b)
    in_range = start <= key and (end is None or key < end)
    has_prefix = len(b) >= len(prefix) and all(values_equal(x, y) for x, y in zip(prefix, b, strict=False))
    assert in_range == has_prefix


# --- properties ---------------------------------------------------------------------------------------------


@given(values_or_missing, values_or_missing)
def test_key_order_is_value_order(a: Any, b: Any) -> None:
    key_a, key_b = encode_value(a), encode_value(b)
    assert sign((key_a > key_b) - (key_a < key_b)) == compare(a, b)


@given(st.lists(values_or_missing, max_size=8))
def test_sorting_by_key_equals_sorting_by_compare(items: list[Any]) -> None:
    by_key = sorted(items, key=encode_value)
    by_compare = sorted(items, key=functools.cmp_to_key(compare))
    # Both sorts are stable, so they agree object for object when the two orders agree.
    assert [id(item) for item in by_key] == [id(item) for item in by_compare]


@given(st.lists(composite_keys, max_size=8))
def test_sorting_composite_keys_equals_sorting_tuples(tuples: list[tuple[Any, ...]]) -> None:
    by_key = sorted(tuples, key=encode_key)
    by_compare = sorted(tuples, key=functools.cmp_to_key(compare))
    assert [id(fields) for fields in by_key] == [id(fields) for fields in by_compare]


@given(composite_keys, composite_keys)
def test_composite_key_order_is_tuple_order(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    key_a, key_b = encode_key(a), encode_key(b)
    assert sign((key_a > key_b) - (key_a < key_b)) == compare(a, b)


@given(composite_keys)
def test_decode_key_is_exact(fields: tuple[Any, ...]) -> None:
    decoded = decode_key(encode_key(fields))
    assert same(list(fields), decoded)


@given(values_or_missing, values_or_missing)
def test_encodings_are_prefix_free(a: Any, b: Any) -> None:
    key_a, key_b = encode_value(a), encode_value(b)
    if key_b.startswith(key_a):
        assert key_a == key_b
        assert values_equal(a, b)


@given(values)
def test_every_cut_short_key_fails_to_decode(value: Any) -> None:
    key = encode_value(value)
    for length in range(1, len(key)):
        with pytest.raises(InvalidKeyError):
            decode_value(key[:length])


# --- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x0b", "unknown tag 0x0b"),
        (b"\xff", "unknown tag 0xff"),
        (b"\x00", "unknown tag 0x00"),
        (b"\x03\x00", "cut short"),
        (b"\x04" + bytes(7), "cut short"),
        (b"\x07abc", "without its end"),
        (b"\x07\xff\x00", "invalid UTF-8"),
        (b"\x09\x02", "array without its end"),
        (b"\x0a\x07a\x00\x02", "object without its end"),
        (b"\x0a\x02\x00", "field name that is not a string"),
        (b"\x0a\x07b\x00\x02\x07a\x00\x02\x00", "out of order"),
        (b"\x0a\x07a\x00\x02\x07a\x00\x02\x00", "out of order"),
    ],
)
def test_decode_rejects_what_is_not_a_key(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidKeyError, match=problem) as info:
        decode_key(data)
    assert info.value.data == data
    assert 0 <= info.value.offset <= len(data)


def test_decode_value_wants_exactly_one_value() -> None:
    with pytest.raises(InvalidKeyError, match="2 values where one was expected"):
        decode_value(encode_key([1, 2]))
    with pytest.raises(InvalidKeyError, match="0 values"):
        decode_value(b"")


def test_decode_accepts_any_bytes_like() -> None:
    key = encode_key(["a", 1.5])
    assert decode_key(memoryview(key)) == ["a", 1.5]
    assert decode_key(bytearray(key)) == ["a", 1.5]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (2**63, "outside int64"),
        (-(2**63) - 1, "outside int64"),
        ("\ud800", "lone surrogate"),
        ({1, 2}, "not a zapnb value"),
        (UNSET, "patch"),
        ([1, {"a": {2}}], "not a zapnb value"),
        ({1: "a"}, "field names must be str"),
    ],
    ids=["int too big", "int too small", "lone surrogate", "set", "UNSET", "nested set", "int field name"],
)
def test_encode_rejects_what_is_not_a_value(value: Any, match: str) -> None:
    with pytest.raises(InvalidValueError, match=match):
        encode_value(value)
    with pytest.raises(InvalidValueError, match=match):
        encode_key(["ok", value])

"""Tests for zapnb.documents: stored forms, field names and the per-document limits, at their edges."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import fractions
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zapnb.documents import (
    MAX_ARRAY_LENGTH,
    MAX_DOCUMENT_SIZE,
    MAX_NESTING,
    MAX_OBJECT_FIELDS,
    check_document,
    check_document_with_size,
    check_field_name,
    document_size,
    normalize_value,
    value_size,
)
from zapnb.errors import DocumentLimitError, InvalidFieldNameError, InvalidValueError, ZapError
from zapnb.ids import Id

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "convex-snapshot-anouk"
AN_ID = "kd70hswas0vt0z9b7kxmmcwcd97ed1rj"


def reference_size(value: Any) -> int:
    """Convex's Size rules, written out plainly (crates/value/src/lib.rs, size.rs)."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return 9
    if isinstance(value, str):
        return 2 + len(value.encode("utf-8"))
    if isinstance(value, bytes):
        return 2 + len(value)
    if isinstance(value, list):
        return 2 + sum(reference_size(item) for item in value)
    return 2 + sum(len(name) + 1 + reference_size(item) for name, item in value.items())


# --- sizes ------------------------------------------------------------------------------------------------


def test_sizes_of_each_kind() -> None:
    assert value_size(None) == 1
    assert value_size(True) == 1
    assert value_size(0) == 9
    assert value_size(-(2**63)) == 9
    assert value_size(1.5) == 9
    assert value_size("") == 2
    assert value_size("abc") == 5
    assert value_size("é") == 4  # two UTF-8 bytes
    assert value_size("😀") == 6  # four UTF-8 bytes
    assert value_size(b"\x00\x01") == 4
    assert value_size(Id(AN_ID)) == 34
    assert value_size([]) == 2
    assert value_size([1, "a"]) == 2 + 9 + 3
    assert value_size({}) == 2
    assert value_size({"ab": None}) == 2 + 2 + 1 + 1


def test_document_size_counts_system_fields_when_present() -> None:
    doc = {"_id": AN_ID, "_creationTime": 1745161098481.734, "text": "hi"}
    assert document_size(doc) == 2 + (3 + 1 + 34) + (13 + 1 + 9) + (4 + 1 + 4)
    assert document_size({"text": "hi"}) == 11


@pytest.mark.parametrize(
    ("table", "expected_docs"), [("exercises", 18), ("sentences", 9), ("userProgress", 21)]
)
def test_fixture_documents_pass(table: str, expected_docs: int) -> None:
    lines = (FIXTURE / table / "documents.jsonl").read_text().splitlines()
    assert len(lines) == expected_docs
    for line in lines:
        doc = json.loads(line)
        stored = check_document(doc, allow_system_fields=True)
        assert stored == doc
        assert type(stored["_id"]) is Id
        assert document_size(doc) == reference_size(doc)
        user_fields = {name: value for name, value in doc.items() if not name.startswith("_")}
        assert check_document(user_fields) == user_fields


# --- limits, exactly at their edges -------------------------------------------------------------------------


def test_size_exactly_one_mib_is_accepted() -> None:
    doc = {"s": "x" * (MAX_DOCUMENT_SIZE - 6)}  # 2 + len("s") + 1 + (2 + n)
    assert document_size(doc) == MAX_DOCUMENT_SIZE
    stored, size = check_document_with_size(doc)
    assert size == MAX_DOCUMENT_SIZE
    assert stored == doc


def test_size_one_byte_over_one_mib_is_refused() -> None:
    doc = {"s": "x" * (MAX_DOCUMENT_SIZE - 5)}
    assert document_size(doc) == MAX_DOCUMENT_SIZE + 1
    with pytest.raises(DocumentLimitError, match="too large") as info:
        check_document(doc)
    err = info.value
    assert (err.limit, err.maximum, err.actual, err.path) == (
        "size",
        MAX_DOCUMENT_SIZE,
        MAX_DOCUMENT_SIZE + 1,
        "",
    )


def test_size_counts_utf8_bytes_and_nested_values() -> None:
    # 2 + len("a") + 1 + [2 + (2 + 2n)] with n two-byte characters
    n = (MAX_DOCUMENT_SIZE - 8) // 2
    at_limit = {"a": ["é" * n]}
    assert document_size(at_limit) == MAX_DOCUMENT_SIZE
    check_document(at_limit)
    over = {"a": ["é" * n, None]}  # a null is one byte more
    with pytest.raises(DocumentLimitError) as info:
        check_document(over)
    assert info.value.actual == MAX_DOCUMENT_SIZE + 1


def nested(levels: int, kind: str) -> Any:
    """``levels`` containers, one inside the other, around the number 1."""
    value: Any = 1
    for _ in range(levels):
        value = [value] if kind == "array" else {"k": value}
    return value


@pytest.mark.parametrize("kind", ["array", "object"])
def test_depth_sixteen_is_accepted(kind: str) -> None:
    doc = {"a": nested(MAX_NESTING - 1, kind)}  # the document itself is level 1
    assert check_document(doc) == doc


@pytest.mark.parametrize(("kind", "path"), [("array", ".a" + "[0]" * 15), ("object", ".a" + ".k" * 15)])
def test_depth_seventeen_is_refused(kind: str, path: str) -> None:
    with pytest.raises(DocumentLimitError, match="nested") as info:
        check_document({"a": nested(MAX_NESTING, kind)})
    err = info.value
    assert (err.limit, err.maximum, err.actual, err.path) == ("depth", 16, 17, path)


def test_depth_counts_empty_containers_and_mixed_kinds() -> None:
    mixed: Any = []  # an empty array counts as a level too
    for level in range(13):
        mixed = {"k": mixed} if level % 2 else [mixed]
    assert check_document({"a": [mixed]}) == {"a": [mixed]}  # document 1, list 1, then 14: 16
    with pytest.raises(DocumentLimitError):
        check_document({"a": [[mixed]]})


def test_a_values_own_nesting_is_limited_too() -> None:
    assert normalize_value(nested(16, "array")) == nested(16, "array")
    with pytest.raises(DocumentLimitError) as info:
        normalize_value(nested(17, "array"), ".v")
    assert info.value.path == ".v" + "[0]" * 16


@pytest.mark.parametrize("container", ["top", "nested"])
def test_array_of_8192_is_accepted_and_8193_refused(container: str) -> None:
    def doc(n: int) -> dict[str, Any]:
        items = list(range(n))
        return {"items": items} if container == "top" else {"a": {"items": items}}

    assert check_document(doc(MAX_ARRAY_LENGTH)) == doc(MAX_ARRAY_LENGTH)
    with pytest.raises(DocumentLimitError, match="Array too long") as info:
        check_document(doc(MAX_ARRAY_LENGTH + 1))
    err = info.value
    path = ".items" if container == "top" else ".a.items"
    assert (err.limit, err.maximum, err.actual, err.path) == ("array_length", 8192, 8193, path)


@pytest.mark.parametrize("container", ["top", "nested"])
def test_1024_fields_are_accepted_and_1025_refused(container: str) -> None:
    def doc(n: int) -> dict[str, Any]:
        fields = {f"f{i}": i for i in range(n)}
        return fields if container == "top" else {"meta": fields}

    assert check_document(doc(MAX_OBJECT_FIELDS)) == doc(MAX_OBJECT_FIELDS)
    with pytest.raises(DocumentLimitError, match="Too many fields") as info:
        check_document(doc(MAX_OBJECT_FIELDS + 1))
    err = info.value
    assert (err.limit, err.maximum, err.actual) == ("fields", 1024, 1025)
    assert err.path == ("" if container == "top" else ".meta")


def test_limit_errors_are_invalid_value_errors() -> None:
    with pytest.raises(InvalidValueError):
        check_document({"items": [0] * 8193})
    assert issubclass(DocumentLimitError, ZapError)


# --- field names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "a" * 1024, "with space", "~!@#%^&*()[]{}<>?/\\|'\"`=+-.,;:", "x$", "9"]
)
def test_valid_field_names(name: str) -> None:
    check_field_name(name, top_level=True, path=f".{name}")
    check_field_name(name, top_level=False, path=f".{name}")
    assert check_document({name: {name: 1}}) == {name: {name: 1}}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("a" * 1025, "at most 1024 characters"),
        ("$set", "cannot start with '\\$'"),
        ("é", "printable ASCII"),
        ("tab\there", "printable ASCII"),
        ("nul\x00", "printable ASCII"),
        ("unit\x1f", "printable ASCII"),
        ("del\x7f", "printable ASCII"),
        ("emoji😀", "printable ASCII"),
    ],
)
def test_invalid_field_names_anywhere(name: str, reason: str) -> None:
    for top_level in (True, False):
        with pytest.raises(InvalidFieldNameError, match=reason) as info:
            check_field_name(name, top_level=top_level, path=".here")
        assert info.value.path == ".here"
        assert info.value.value == name
    with pytest.raises(InvalidFieldNameError, match=reason):
        check_document({name: 1})
    with pytest.raises(InvalidFieldNameError, match=reason) as nested_info:
        check_document({"a": [{"b": {name: 1}}]})
    assert nested_info.value.path.startswith(".a[0].b")


def test_leading_underscore_only_below_the_top_level() -> None:
    check_field_name("_private", top_level=False, path="._private")
    assert check_document({"a": {"_private": 1}}) == {"a": {"_private": 1}}
    with pytest.raises(InvalidFieldNameError, match="cannot start with '_'") as info:
        check_document({"_private": 1})
    assert info.value.path == "._private"


@pytest.mark.parametrize("name", ["_id", "_creationTime"])
def test_system_fields_only_when_allowed(name: str) -> None:
    with pytest.raises(InvalidFieldNameError, match="system field"):
        check_field_name(name, top_level=True, path=f".{name}")
    check_field_name(name, top_level=True, path=f".{name}", allow_system_fields=True)
    value: Any = AN_ID if name == "_id" else 1745161098481.734
    with pytest.raises(InvalidFieldNameError, match="system field"):
        check_document({name: value})
    assert check_document({name: value}, allow_system_fields=True) == {name: value}
    assert check_document({"a": {name: "nested is fine"}}) == {"a": {name: "nested is fine"}}


def test_other_underscore_fields_are_refused_even_for_the_system() -> None:
    with pytest.raises(InvalidFieldNameError):
        check_document({"_other": 1}, allow_system_fields=True)


@pytest.mark.parametrize(
    "value", ["not an id", AN_ID[:-1] + "k", 42, None, AN_ID.encode(), Id(AN_ID).encode("ascii")]
)
def test_system_id_must_be_an_id(value: object) -> None:
    with pytest.raises(InvalidValueError, match="'_id' must be a document ID"):
        check_document({"_id": value}, allow_system_fields=True)


def test_system_id_becomes_an_id() -> None:
    stored = check_document({"_id": AN_ID}, allow_system_fields=True)
    assert type(stored["_id"]) is Id
    assert stored["_id"].table_number == 10011
    labelled = Id(AN_ID, "sentences")
    assert check_document({"_id": labelled}, allow_system_fields=True)["_id"] is labelled


@pytest.mark.parametrize("value", [1745161098481, -1.0, 0.0, math.nan, math.inf, "1745161098481.7", 2.0**53])
def test_system_creation_time_must_be_a_positive_float(value: object) -> None:
    with pytest.raises(InvalidValueError, match="'_creationTime' must be a float"):
        check_document({"_creationTime": value}, allow_system_fields=True)


@pytest.mark.parametrize("key", [1, None, b"bytes", 1.5, ("a",)])
def test_field_names_must_be_str(key: object) -> None:
    with pytest.raises(InvalidFieldNameError, match="field names are str"):
        check_document({"a": {key: 1}})


def test_an_id_used_as_a_key_is_stored_as_plain_text() -> None:
    stored = check_document({"votes": {Id(AN_ID): 3}})
    (key,) = stored["votes"]
    assert type(key) is str
    assert key == AN_ID


def test_a_str_subclass_key_is_stored_as_plain_text() -> None:
    class Name(str):
        def __str__(self) -> str:
            return "something else"

    for key in (Name("a"), Name("never seen before")):
        (stored,) = check_document({key: 1})
        assert type(stored) is str
        assert stored == key


# --- stored forms -----------------------------------------------------------------------------------------


def test_canonical_stored_forms() -> None:
    value = {
        "tuple": (1, (2, 3)),
        "bytearray": bytearray(b"ab"),
        "memoryview": memoryview(b"cd"),
        "ordered": collections.OrderedDict(a=1),
        "default": collections.defaultdict(list, b=[1]),
    }
    stored = normalize_value(value)
    assert stored == {
        "tuple": [1, [2, 3]],
        "bytearray": b"ab",
        "memoryview": b"cd",
        "ordered": {"a": 1},
        "default": {"b": [1]},
    }
    assert type(stored["bytearray"]) is bytes
    assert type(stored["memoryview"]) is bytes
    assert type(stored["ordered"]) is dict
    assert type(stored["default"]) is dict


def test_list_subclass_becomes_a_list() -> None:
    class Items(list[int]):
        pass

    stored = normalize_value(Items([1, 2]))
    assert type(stored) is list
    assert stored == [1, 2]


def test_bool_is_not_an_int64() -> None:
    for value in (True, False):
        stored = normalize_value(value)
        assert type(stored) is bool
        assert stored is value
        assert value_size(value) == 1
    assert type(check_document({"flag": True})["flag"]) is bool


def test_int64_bounds() -> None:
    assert normalize_value(2**63 - 1) == 2**63 - 1
    assert normalize_value(-(2**63)) == -(2**63)
    for value in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(InvalidValueError, match="int64 range") as info:
            check_document({"n": [value]})
        assert info.value.path == ".n[0]"
        assert info.value.value == value


def test_floats_keep_sign_and_nans_become_canonical() -> None:
    assert math.copysign(1.0, normalize_value(-0.0)) == -1.0
    assert normalize_value(math.inf) == math.inf
    odd_negative_nan = struct.unpack(">d", bytes.fromhex("fff0000000000001"))[0]
    odd_positive_nan = struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0]
    stored = check_document({"a": odd_negative_nan, "b": [odd_positive_nan], "c": {"d": odd_negative_nan}})
    assert struct.pack(">d", stored["a"]).hex() == "fff8000000000000"
    assert struct.pack(">d", stored["b"][0]).hex() == "7ff8000000000000"
    assert struct.pack(">d", stored["c"]["d"]).hex() == "fff8000000000000"


def test_ids_are_stored_as_their_text() -> None:
    labelled = Id(AN_ID, "sentences")
    stored = check_document({"ref": labelled, "refs": [labelled]})
    assert (type(stored["ref"]), type(stored["refs"][0])) == (str, str)
    assert stored == {"ref": AN_ID, "refs": [AN_ID]}


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(InvalidValueError, match="lone surrogate") as info:
        check_document({"a": ["ok", "bad \ud800 text"]})
    assert info.value.path == ".a[1]"
    with pytest.raises(InvalidValueError, match="lone surrogate"):
        normalize_value("\udfff")
    assert normalize_value("😀 fine") == "😀 fine"


def test_stored_documents_share_no_containers_with_the_input() -> None:
    inner = {"x": [1, 2]}
    doc = {"inner": inner, "list": [inner]}
    stored = check_document(doc)
    assert stored == doc
    assert stored is not doc
    assert stored["inner"] is not inner
    assert stored["inner"]["x"] is not inner["x"]
    inner["x"].append(3)
    assert stored["inner"]["x"] == [1, 2]


class Color(enum.IntEnum):
    RED = 1


class Mode(enum.Enum):
    FAST = "fast"


class Plain:
    pass


@pytest.mark.parametrize(
    ("value", "type_name", "hint"),
    [
        ({1, 2}, "builtins.set", "list"),
        (frozenset({1}), "builtins.frozenset", "list"),
        (datetime.datetime(2025, 4, 20, tzinfo=datetime.UTC), "datetime.datetime", "timestamp()"),
        (datetime.date(2025, 4, 20), "datetime.date", "isoformat()"),
        (decimal.Decimal("1.5"), "decimal.Decimal", "float(value)"),
        (fractions.Fraction(1, 3), "fractions.Fraction", "float(value)"),
        (np.int64(3), "numpy.int64", ".item()"),
        (np.float64(1.5), "numpy.float64", ".item()"),  # a float subclass, still refused
        (np.bool_(True), "numpy.bool", ".item()"),
        (np.array([1, 2]), "numpy.ndarray", ".tolist()"),
        (object(), "builtins.object", "convert"),
        (Plain(), "Plain", "convert"),
        (1 + 2j, "builtins.complex", "convert"),
        (Color.RED, "Color", "int(value)"),
        (Mode.FAST, "Mode", "convert"),
        (range(3), "builtins.range", "convert"),
        (len, "builtin_function_or_method", "convert"),
    ],
)
def test_unsupported_types_are_refused_with_the_path_and_type(
    value: object, type_name: str, hint: str
) -> None:
    with pytest.raises(InvalidValueError) as info:
        check_document({"a": {"b": [None, value]}})
    err = info.value
    assert type(err) is InvalidValueError
    assert err.path == ".a.b[1]"
    assert err.value is value
    message = str(err)
    assert ".a.b[1]" in message
    assert type_name in message
    assert hint in message
    with pytest.raises(InvalidValueError):
        normalize_value(value)


def test_a_str_subclass_value_is_refused() -> None:
    class Text(str):
        pass

    with pytest.raises(InvalidValueError, match=r"str\(value\)"):
        normalize_value(Text("x"))


def test_cyclic_dict_is_refused() -> None:
    doc: dict[str, Any] = {"a": 1}
    doc["self"] = doc
    with pytest.raises(InvalidValueError, match="contains itself") as info:
        check_document(doc)
    assert type(info.value) is InvalidValueError
    assert info.value.path.startswith(".self.self")


def test_cyclic_list_is_refused() -> None:
    items: list[Any] = [1]
    items.append(items)
    with pytest.raises(InvalidValueError, match="contains itself") as info:
        check_document({"items": items})
    assert type(info.value) is InvalidValueError
    assert info.value.path.startswith(".items[1][1]")
    with pytest.raises(InvalidValueError, match="contains itself"):
        normalize_value(items)


def test_longer_cycles_through_dicts_and_lists_are_refused() -> None:
    top: dict[str, Any] = {"list": []}
    top["list"].append({"back": top})
    with pytest.raises(InvalidValueError, match="contains itself"):
        check_document({"x": top})


def test_a_document_must_be_a_dict() -> None:
    for not_a_doc in ([("a", 1)], "text", None):
        with pytest.raises(InvalidValueError, match="A document is a dict"):
            check_document(not_a_doc)  # type: ignore[arg-type]


# --- properties -------------------------------------------------------------------------------------------

field_names = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=12).filter(
    lambda name: not name.startswith(("$", "_"))
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(field_names, children, max_size=5),
    max_leaves=30,
)


@given(st.dictionaries(field_names, values, max_size=8))
def test_valid_documents_are_stored_as_they_are_and_measured_like_convex(doc: dict[str, Any]) -> None:
    stored, size = check_document_with_size(doc)
    assert stored == doc
    assert size == reference_size(doc) == document_size(doc)
    assert check_document(stored) == stored


@given(values)
def test_normalize_is_idempotent_and_value_size_matches(value: Any) -> None:
    stored = normalize_value(value)
    assert normalize_value(stored) == stored == value
    assert value_size(value) == reference_size(value)

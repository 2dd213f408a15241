"""Tests for zapnb.ids: Convex's v6 document IDs, checked against a real Convex export."""

from __future__ import annotations

import copy
import json
import pickle
import re
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zapnb.errors import InvalidIdError, ZapError
from zapnb.ids import (
    ALPHABET,
    FIRST_USER_TABLE_NUMBER,
    MAX_TABLE_NUMBER,
    DecodedId,
    Id,
    is_valid_id,
    labeller,
    new_ids,
    table_number_for_lookup,
    table_number_of,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "convex-snapshot-anouk"
FOREIGN_KEYS = {"sentenceId": "sentences", "exerciseId": "exercises", "profileId": "profiles"}
VALID_LENGTHS = {31, 32, 34, 36, 37}
# Table numbers whose VInt takes 1, 2, 3, 4 and 5 bytes, at both ends of each width.
EDGE_TABLE_NUMBERS = [1, 127, 128, 10001, 16383, 16384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, MAX_TABLE_NUMBER]


def table_numbers() -> dict[str, int]:
    lines = (FIXTURE / "_tables" / "documents.jsonl").read_text().splitlines()
    return {row["name"]: row["id"] for row in map(json.loads, lines)}


def fixture_documents() -> list[tuple[str, dict[str, object]]]:
    docs = []
    for path in sorted(FIXTURE.glob("*/documents.jsonl")):
        if path.parent.name != "_tables":
            docs += [(path.parent.name, json.loads(line)) for line in path.read_text().splitlines()]
    return docs


def fixture_ids() -> list[tuple[str, str]]:
    """Every (table, ID text) in the export: `_id`s, foreign keys and the IDs inside generated schemas."""
    found = []
    for table, doc in fixture_documents():
        found.append((table, str(doc["_id"])))
        found += [(target, str(doc[field])) for field, target in FOREIGN_KEYS.items() if field in doc]
    for path in sorted(FIXTURE.glob("*/generated_schema.jsonl")):
        schema = json.loads(path.read_text())
        for field, union in re.findall(r'"(\w+)": ((?:"[0-9a-z]+"(?: \| )?)+)', schema):
            if field != "_id" and field not in FOREIGN_KEYS:
                continue  # a union of string literals, such as "mode": "audio" | "lecture"
            target = path.parent.name if field == "_id" else FOREIGN_KEYS[field]
            found += [(target, text) for text in re.findall(r'"([0-9a-z]+)"', union)]
    return found


def test_fixture_has_the_ids_we_expect() -> None:
    found = fixture_ids()
    assert len(found) > 100
    assert {table for table, _ in found} == {"exercises", "sentences", "userProgress", "profiles"}


@pytest.mark.parametrize(("table", "text"), fixture_ids())
def test_every_fixture_id_decodes_to_its_table_and_reencodes_identically(table: str, text: str) -> None:
    decoded = Id.decode(text)
    assert decoded.table_number == table_numbers()[table]
    assert len(decoded.internal_id) == 16
    assert Id.encode(decoded.table_number, decoded.internal_id) == text
    labelled = Id(text, table)
    assert (labelled.table, labelled.table_number, labelled.internal_id) == (
        table,
        decoded.table_number,
        decoded.internal_id,
    )


def test_fixture_internal_ids_end_with_the_creation_day() -> None:
    for _, doc in fixture_documents():
        day = int.from_bytes(Id(str(doc["_id"])).internal_id[14:], "big")
        assert day == int(float(str(doc["_creationTime"])) // 86_400_000)


def test_convex_stability_vector() -> None:
    # The value Convex's own test (crates/value/src/id_v6.rs) pins for table 1017.
    internal_id = [251]
    for _ in range(15):
        internal_id.append(internal_id[-1] * 251 % 256)
    assert Id.encode(1017, bytes(internal_id)) == "z43zp6c3e75gkmz1kfwj6mbbx5sw281h"
    assert Id.decode("z43zp6c3e75gkmz1kfwj6mbbx5sw281h") == DecodedId(1017, bytes(internal_id))


def sample_ids() -> list[str]:
    """Real IDs (one per fixture table) and IDs for every VInt width, including those with padding bits."""
    real = dict(fixture_ids())
    made = [Id.encode(n, bytes((7 * n + 13 * i) % 256 for i in range(16))) for n in EDGE_TABLE_NUMBERS]
    return sorted(real.values()) + [str(i) for i in made]


def test_sample_ids_cover_every_length() -> None:
    assert {len(text) for text in sample_ids()} == VALID_LENGTHS


def assert_refused(text: str) -> None:
    assert not is_valid_id(text), text
    with pytest.raises(InvalidIdError):
        Id.decode(text)
    with pytest.raises(InvalidIdError):
        Id(text)


@pytest.mark.parametrize("text", sample_ids())
def test_every_single_character_substitution_fails(text: str) -> None:
    others = "ABCDEFGHIJKLMNOPQRSTUVWXYZilou !-_=+/.:é\x00\x7fＡ\U0001f600"
    for position, original in enumerate(text):
        for char in ALPHABET + others:
            if char != original:
                assert_refused(text[:position] + char + text[position + 1 :])


@pytest.mark.parametrize("text", sample_ids())
def test_every_insertion_and_deletion_fails(text: str) -> None:
    for position in range(len(text) + 1):
        for char in ALPHABET:
            assert_refused(text[:position] + char + text[position:])
    for position in range(len(text)):
        assert_refused(text[:position] + text[position + 1 :])
    for length in range(len(text)):
        assert_refused(text[:length])
    assert_refused(text + text)
    assert_refused(text.upper())
    assert_refused(f" {text}")
    assert_refused(f"{text}\n")


@given(st.integers(1, MAX_TABLE_NUMBER), st.binary(min_size=16, max_size=16))
def test_encode_decode_round_trip(table_number: int, internal_id: bytes) -> None:
    made = Id.encode(table_number, internal_id)
    assert len(made) in VALID_LENGTHS
    assert set(made) <= set(ALPHABET)
    assert Id.decode(made) == DecodedId(table_number, internal_id)
    assert Id(str(made)).internal_id == internal_id


@given(st.integers(1, MAX_TABLE_NUMBER), st.binary(min_size=16, max_size=16), st.data())
def test_random_substitutions_fail(table_number: int, internal_id: bytes, data: st.DataObject) -> None:
    text = str(Id.encode(table_number, internal_id))
    position = data.draw(st.integers(0, len(text) - 1))
    char = data.draw(st.sampled_from(ALPHABET).filter(lambda c: c != text[position]))
    assert not is_valid_id(text[:position] + char + text[position + 1 :])


@given(st.text(max_size=40))
def test_decoding_any_text_either_works_or_raises_invalid_id(text: str) -> None:
    if is_valid_id(text):
        decoded = Id.decode(text)
        assert Id.encode(decoded.table_number, decoded.internal_id) == text
    else:
        with pytest.raises(InvalidIdError) as info:
            Id.decode(text)
        assert info.value.value == text
        assert info.value.reason in str(info.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "0 characters"),
        ("kd70hswas0vt0z9b7kxmmcwcd97ed1r", "checksum"),
        ("kd70hswas0vt0z9b7kxmmcwcd97ed1rj0", "33 characters"),
        ("kd70hswas0vt0z9b7kxmmcwcd97ed1rk", "checksum"),
        ("kd70hswas0vt0z9b7kxmmcwcd97ed1ri", "character 'i' at position 31"),
        ("KD70hswas0vt0z9b7kxmmcwcd97ed1rj", "character 'K' at position 0"),
        ("kd70hswas0vt0z9b7kxmmcwcd97éd1rj", "character 'é' at position 27"),
        ("sssswsgggggggggsgcsssfafffsffks", "padding bits"),  # a regression case from Convex's tests
        ("0000000000000000000000000000000", "table number 0"),
    ],
)
def test_errors_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(InvalidIdError, match=re.escape(reason)) as info:
        Id.decode(text)
    assert info.value.value == text
    assert "kd70hswas0vt0z9b7kxmmcwcd97ed1rj" in str(info.value)  # shows what a valid ID looks like
    assert isinstance(info.value, ZapError)


def reference_text(data: bytes) -> str:
    """Base32 text of ``data`` plus its footer, computed the way Convex's Rust code does it."""
    c0 = c1 = 0
    for byte in data:
        c0 = (c0 + byte) % 256
        c1 = (c1 + c0) % 256
    full = data + bytes([c0, c1])
    bits = "".join(f"{byte:08b}" for byte in full)
    bits += "0" * (-len(bits) % 5)
    return "".join(ALPHABET[int(bits[i : i + 5], 2)] for i in range(0, len(bits), 5))


@given(st.integers(1, MAX_TABLE_NUMBER), st.binary(min_size=16, max_size=16))
def test_encoding_matches_the_reference(table_number: int, internal_id: bytes) -> None:
    vint = bytearray()
    number = table_number
    while number >= 0x80:
        vint.append(number & 0x7F | 0x80)
        number >>= 7
    vint.append(number)
    assert Id.encode(table_number, internal_id) == reference_text(bytes(vint) + internal_id)


@pytest.mark.parametrize(
    ("vint", "reason"),
    [
        (b"\x85\x00", "shortest form"),  # table 5 in two bytes: Convex's decoder accepts it, zapnb does not
        (b"\x81", "does not fit its length"),  # a continuation bit with no byte after it
        (b"\x01\x01", "does not fit its length"),  # two bytes where the first ends the number
        (b"\x80\x80\x80\x80\x10", "outside"),  # 2**32: more than 32 bits
        (b"\x00", "table number 0"),
    ],
)
def test_malformed_table_numbers_with_valid_checksums(vint: bytes, reason: str) -> None:
    text = reference_text(vint + bytes(range(16)))
    with pytest.raises(InvalidIdError, match=reason):
        Id.decode(text)


def test_padding_bits_are_refused_though_convex_ignores_them() -> None:
    text = str(Id.encode(1, bytes(16)))  # 31 characters: the last one carries 3 padding bits
    assert len(text) == 31
    last = ALPHABET.index(text[-1])
    for padding in range(1, 8):
        altered = text[:-1] + ALPHABET[last | padding]
        with pytest.raises(InvalidIdError, match="padding"):
            Id.decode(altered)


@pytest.mark.parametrize("value", [None, 10007, b"kd70hswas0vt0z9b7kxmmcwcd97ed1rj", ["x"]])
def test_non_strings_are_not_ids(value: object) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidIdError, match="not a str"):
        Id.decode(value)  # type: ignore[arg-type]


def test_id_behaves_as_its_text() -> None:
    text = "jx73xh1f86gz7s9zgchp6wzbed7ec7aj"
    doc_id = Id(text, "exercises")
    assert doc_id == text
    assert text == doc_id
    assert hash(doc_id) == hash(text)
    assert {text: 1}[doc_id] == 1
    assert isinstance(doc_id, str)
    assert json.dumps({"id": doc_id}) == json.dumps({"id": text})
    assert doc_id.encode("utf-8") == text.encode("utf-8")  # the instance method is still str.encode
    assert doc_id.upper() == text.upper()
    assert str(doc_id) == text
    assert type(str(doc_id)) is str
    assert Id(text, "exercises") == Id(text)  # the label is not part of equality


def test_repr_shows_table_or_table_number() -> None:
    text = "jx73xh1f86gz7s9zgchp6wzbed7ec7aj"
    assert repr(Id(text, "exercises")) == f"Id('exercises', '{text}')"
    assert repr(Id(text)) == f"Id(10007, '{text}')"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_keeps_text_and_table(protocol: int) -> None:
    doc_id = Id("jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "exercises")
    back = pickle.loads(pickle.dumps(doc_id, protocol=protocol))
    assert type(back) is Id
    assert (back, back.table, back.table_number) == (doc_id, "exercises", 10007)


def test_copy_and_deepcopy() -> None:
    doc_id = Id("jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "exercises")
    for copied in (copy.copy(doc_id), copy.deepcopy(doc_id), copy.deepcopy({"a": [doc_id]})["a"][0]):
        assert type(copied) is Id
        assert (copied, copied.table) == (doc_id, "exercises")


def test_labels() -> None:
    bare = Id("jx73xh1f86gz7s9zgchp6wzbed7ec7aj")
    assert bare.table is None
    labelled = bare.with_table("exercises")
    assert labelled.table == "exercises"
    assert bare.table is None
    assert Id(labelled).table == "exercises"  # an Id passed in keeps its label
    assert Id(labelled, "other").table == "other"
    assert labelled.with_table("exercises") is labelled


def test_new_ids_are_fresh_and_carry_the_day() -> None:
    made = Id.new(FIRST_USER_TABLE_NUMBER, "projects", now_ms=1745161098481.734)
    assert (made.table, made.table_number, len(made)) == ("projects", 10001, 32)
    assert int.from_bytes(made.internal_id[14:], "big") == 20198
    assert Id.decode(str(made)).internal_id == made.internal_id
    assert len({Id.new(10001) for _ in range(1000)}) == 1000


@pytest.mark.parametrize("table_number", EDGE_TABLE_NUMBERS)
@pytest.mark.parametrize("count", [0, 1, 63, 64, 500])
def test_new_ids_in_bulk(table_number: int, count: int) -> None:
    before = int(time.time() // 86_400)
    made = new_ids(table_number, count, "t")
    after = int(time.time() // 86_400)
    assert len(made) == count == len(set(made))
    for doc_id in made:
        assert type(doc_id) is Id
        assert doc_id.table == "t"
        decoded = Id.decode(str(doc_id))
        assert (decoded.table_number, decoded.internal_id) == (doc_id.table_number, doc_id.internal_id)
        assert decoded.table_number == table_number
        assert int.from_bytes(doc_id.internal_id[14:], "big") in {before, after}


def test_bulk_ids_without_a_table() -> None:
    made = new_ids(10001, 100)
    assert all(doc_id.table is None and doc_id.table_number == 10001 for doc_id in made)


@pytest.mark.parametrize("table_number", [0, -1, MAX_TABLE_NUMBER + 1, 1.5, True, "10001"])
def test_invalid_table_numbers(table_number: object) -> None:
    with pytest.raises(InvalidIdError, match="table number"):
        Id.new(table_number)  # type: ignore[arg-type]
    with pytest.raises(InvalidIdError, match="table number"):
        Id.encode(table_number, bytes(16))  # type: ignore[arg-type]
    with pytest.raises(InvalidIdError, match="table number"):
        new_ids(table_number, 100)  # type: ignore[arg-type]


@pytest.mark.parametrize("internal_id", [bytes(15), bytes(17), bytearray(16), "0" * 16])
def test_invalid_internal_ids(internal_id: object) -> None:
    with pytest.raises(InvalidIdError, match="16 bytes"):
        Id.encode(10001, internal_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [-1, 1.0, None])
def test_invalid_counts(count: object) -> None:
    with pytest.raises(InvalidIdError, match="count"):
        new_ids(10001, count)  # type: ignore[arg-type]


def test_first_user_table_number() -> None:
    assert FIRST_USER_TABLE_NUMBER == 10001
    assert min(table_numbers().values()) == FIRST_USER_TABLE_NUMBER


def test_labelled_ids_share_their_table_and_hold_nothing_of_their_own() -> None:
    made = [*new_ids(10001, 200, "projects"), Id.new(10001, "projects"), Id(str(Id.new(10001)), "projects")]
    assert len({id(vars(doc_id)) for doc_id in made}) == 1
    assert all(doc_id.table == "projects" for doc_id in made)
    assert not vars(Id.new(10001))  # unlabelled: no attributes
    assert vars(made[0].with_table("other")) == {"_table": "other"}
    assert made[0].table == "projects"


def test_labelled_ids_cost_what_their_text_costs() -> None:
    new_ids(10001, 100, "projects")  # warm up
    tracemalloc.start()
    try:
        made = new_ids(10001, 100_000, "projects")
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(made) == 100_000
    # an Id is a str of 32 characters in two allocations (about 160 bytes) and a pointer in the list; an
    # attribute dict of its own would add about 300
    assert current < 100_000 * 200, current


def test_a_labeller_makes_labelled_ids_of_known_text() -> None:
    label = labeller("exercises")
    made = [label(text) for text in ("jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "kd70hswas0vt0z9b7kxmmcwcd97ed1rj")]
    assert [type(doc_id) for doc_id in made] == [Id, Id]
    assert [doc_id.table for doc_id in made] == ["exercises", "exercises"]
    assert vars(made[0]) is vars(made[1]) is vars(Id(made[0], "exercises"))
    assert made[1].table_number == 10011


def test_ids_are_immutable_and_relabelled_by_copy() -> None:
    doc_id = Id("jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "exercises")
    with pytest.raises(AttributeError, match="immutable"):
        doc_id.extra = 1
    with pytest.raises(AttributeError, match="immutable"):
        doc_id._table = "sentences"
    with pytest.raises(AttributeError, match="immutable"):
        del doc_id._table
    other = Id("jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "exercises")
    relabelled = doc_id.with_table("sentences")
    assert (relabelled.table, doc_id.table, other.table) == ("sentences", "exercises", "exercises")
    bare = relabelled.with_table(None)
    assert bare.table is None
    assert repr(bare) == "Id(10007, 'jx73xh1f86gz7s9zgchp6wzbed7ec7aj')"


def test_table_numbers_are_decoded_from_the_text_when_asked() -> None:
    made = new_ids(FIRST_USER_TABLE_NUMBER + 5, 100, "t")
    assert {doc_id.table_number for doc_id in made} == {FIRST_USER_TABLE_NUMBER + 5}
    assert [doc_id.internal_id for doc_id in made] == [Id.decode(str(d)).internal_id for d in made]


@given(st.binary(min_size=20, max_size=20))
def test_the_fast_text_of_20_bytes_is_the_general_one(data: bytes) -> None:
    from zapnb.base32 import base32, base32_160

    assert base32_160(int.from_bytes(data, "big")) == base32(data)


@pytest.mark.parametrize("number", EDGE_TABLE_NUMBERS)
def test_the_lookup_table_number_of_an_id_is_its_table_number(number: int) -> None:
    for doc_id in new_ids(number, 200):
        assert table_number_for_lookup(doc_id) == table_number_for_lookup(str(doc_id)) == number


@given(st.text(alphabet=ALPHABET + "XYZ-_ ", max_size=40))
def test_the_lookup_table_number_agrees_with_the_full_check_on_every_valid_id(text: str) -> None:
    """A text that is not an ID may get a table to look in (the lookup then finds nothing); an ID always gets
    its own table, and a text that names no table in its first characters gets none."""
    number = table_number_of(text)
    if number is not None:
        assert table_number_for_lookup(text) == number
    hint = table_number_for_lookup(text)
    assert hint is None or 1 <= hint <= MAX_TABLE_NUMBER


def test_the_convex_fixture_ids_get_their_tables_for_lookup() -> None:
    numbers = table_numbers()
    for table, number in numbers.items():
        path = FIXTURE / table / "documents.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                assert table_number_for_lookup(json.loads(line)["_id"]) == number

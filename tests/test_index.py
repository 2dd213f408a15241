"""Indexes: specs and keys, snapshot scans and counts, merges, files, concurrency (zapnb.index and parts)."""

from __future__ import annotations

import bisect
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import zapnb.index
import zapnb.indexwalk
from zapnb.errors import (
    CorruptionError,
    FormatVersionError,
    IndexConsistencyError,
    InvalidValueError,
    SchemaDefinitionError,
    StorageIOError,
)
from zapnb.faults import ENV_VAR, EXIT_CODE
from zapnb.index import Entry, IndexData, IndexSpec, positions_from
from zapnb.indexbase import FixedKeys, VarKeys, choose_layout, first_duplicate, sort_keys
from zapnb.indexdelta import NEVER, Delta, Record
from zapnb.indexfile import index_path
from zapnb.keys import encode_key, prefix_end
from zapnb.values import MISSING

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ["", "a", "a\x00", "b"]


def pool_keys(count: int, long_key: bool = False) -> list[tuple[bytes, str]]:
    """Index keys of ``count`` documents: (group, value, id) with ids whose keys end in 1 to 3 zero bytes."""
    pool = []
    for i in range(count):
        ident: Any = f"d{i}" if i % 3 == 0 else [f"d{i}"] if i % 3 == 1 else [[f"d{i}"]]
        value: Any = [MISSING, None, i % 5, float(i % 7), b"\x00" * (i % 3), "x"][i % 6]
        group = GROUPS[i % len(GROUPS)]
        if long_key and i == 0:
            group = "z" * 3000
        pool.append((encode_key([group, value, ident]), f"doc{i}"))
    return pool


def bounds_for(keys: Sequence[bytes]) -> list[bytes | None]:
    """Range bounds that probe every edge: keys, keys +- zero bytes, prefixes, very long probes."""
    out: list[bytes | None] = [None, b"", b"\xff" * 600, b"\x07a"]
    for group in GROUPS:
        start = encode_key([group])
        out += [start, prefix_end(start)]
    for key in keys:
        out += [key, key + b"\x00", key.rstrip(b"\x00"), key[:-1], key + b"\x00" * 700, key + b"\x01"]
    return out


def resolve(entry: Entry, rows: Sequence[str]) -> tuple[bytes, str]:
    """The key and document of an entry (a base entry's document is the row of the table base)."""
    if entry.position == -1:
        assert entry.doc_id is not None
        return entry.key, entry.doc_id
    assert entry.doc_id is None
    return entry.key, rows[entry.position]


def expected(
    state: dict[bytes, str], lo: bytes | None, hi: bytes | None, reverse: bool
) -> list[tuple[bytes, str]]:
    items = sorted((k, d) for k, d in state.items() if (lo is None or k >= lo) and (hi is None or k < hi))
    return items[::-1] if reverse else items


def scanned(
    index: IndexData, rows: Sequence[str], lo: bytes | None, hi: bytes | None, snapshot: int, reverse: bool
) -> list[tuple[bytes, str]]:
    return [resolve(e, rows) for e in index.scan(lo, hi, snapshot=snapshot, reverse=reverse)]


# --- the model-based test -----------------------------------------------------------------------------------


@dataclass
class Reader:
    index: IndexData
    rows: list[str]
    snapshot: int


class IndexModel(RuleBasedStateMachine):
    """Random commits, held snapshots, scans, counts, merges, forgets and file round trips, against a model:
    the sorted set of (key, document) live after each commit."""

    LONG_KEY = False

    def __init__(self) -> None:
        super().__init__()
        self.pool = pool_keys(80, self.LONG_KEY)
        self.doc_of = dict(self.pool)
        self.bounds = bounds_for([k for k, _ in self.pool[:12]])
        self.directory = Path(tempfile.mkdtemp(prefix="zapnb-index-test-"))
        self.states: list[tuple[int, dict[bytes, str]]] = []
        self.log: list[tuple[int, list[bytes], list[tuple[bytes, str]]]] = []
        self.runs: list[tuple[int, list[bytes], list[int]]] = []  # bulk runs: LSN, keys, their current rows
        self.readers: list[Reader] = []
        self.iterators: list[
            tuple[Iterator[Entry], list[tuple[bytes, str]], Reader, list[tuple[bytes, str]]]
        ] = []
        self.index = IndexData.build([], [], lsn=0)
        self.rows: list[str] = []
        self.floor = 0

    def teardown(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def state_at(self, snapshot: int) -> dict[bytes, str]:
        at = bisect.bisect_right([lsn for lsn, _ in self.states], snapshot) - 1
        return self.states[at][1]

    @property
    def newest(self) -> int:
        return self.states[-1][0]

    def snapshot(self, data: st.DataObject) -> int:
        return data.draw(st.integers(max(self.index.base_lsn, self.floor), self.newest), label="snapshot")

    @initialize(data=st.data(), from_arrow=st.booleans())
    def build(self, data: st.DataObject, from_arrow: bool) -> None:
        chosen = data.draw(st.lists(st.sampled_from(self.pool), unique=True, max_size=40), label="base")
        lsn = data.draw(st.integers(0, 5), label="base lsn")
        keys = [k for k, _ in chosen]
        self.rows = [d for _, d in chosen]
        self.index = IndexData.build(
            pa.array(keys, pa.binary()) if from_arrow else keys, range(len(keys)), lsn
        )
        self.states = [(lsn, dict(chosen))]
        self.floor = lsn

    def commit(self, lsn: int, removed: list[bytes], added: list[bytes], split: bool) -> None:
        pairs = [(k, self.doc_of[k]) for k in added]
        if split:
            self.index.apply(lsn, removed, [])
            self.index.apply(lsn, [], pairs)
        else:
            self.index.apply(lsn, iter(removed), iter(pairs))
        state = dict(self.states[-1][1])
        for key in removed:
            del state[key]
        state.update(pairs)
        self.states.append((lsn, state))
        self.log.append((lsn, removed, pairs))

    @rule(data=st.data(), split=st.booleans(), gap=st.integers(1, 3))
    def small_commit(self, data: st.DataObject, split: bool, gap: int) -> None:
        live = sorted(self.states[-1][1])
        removed = data.draw(st.lists(st.sampled_from(live), unique=True, max_size=4) if live else st.just([]))
        free = [k for k, _ in self.pool if k not in self.states[-1][1] or k in removed]
        added = data.draw(st.lists(st.sampled_from(free), unique=True, max_size=4) if free else st.just([]))
        self.commit(self.newest + gap, removed, added, split)

    @rule(data=st.data())
    def bulk_commit(self, data: st.DataObject) -> None:
        live = set(self.states[-1][1])
        removed = sorted(live) if data.draw(st.booleans(), label="remove all") else []
        added = [k for k, _ in self.pool if k not in live or k in removed]
        self.commit(self.newest + 1, removed, data.draw(st.permutations(added), label="order"), False)

    @rule(data=st.data(), gap=st.integers(0, 2), sorted_first=st.booleans())
    def run_commit(self, data: st.DataObject, gap: int, sorted_first: bool) -> None:
        """A bulk insert: fresh keys as one run, their documents appended to the table rows."""
        free = [k for k, _ in self.pool if k not in self.states[-1][1]]
        added = data.draw(st.lists(st.sampled_from(free), unique=True, max_size=12) if free else st.just([]))
        held = [r.snapshot for r in self.readers] + [r.snapshot for _, _, r, _ in self.iterators]
        if gap == 0 and self.newest in held:
            gap = 1  # a run may share the LSN of the commit before it only while no reader holds that LSN
        lsn = max(self.newest + gap, self.index.base_lsn + 1)
        rows = list(range(len(self.rows), len(self.rows) + len(added)))
        if sorted_first:
            keys, order = sort_keys(added)
            self.index.apply_run(lsn, keys, np.array(rows)[order])
        else:
            self.index.apply_run(lsn, pa.array(added, pa.binary()), rows)
        self.rows = self.rows + [self.doc_of[k] for k in added]
        state = dict(self.states[-1][1])
        state.update((k, self.doc_of[k]) for k in added)
        self.states.append((lsn, state))
        self.runs.append((lsn, added, rows))

    @rule(data=st.data())
    def refused_run(self, data: st.DataObject) -> None:
        live = sorted(self.states[-1][1])
        if live:
            keys = [data.draw(st.sampled_from(live))]
            keys += [k for k, _ in self.pool if k not in self.states[-1][1]][:3]
            with pytest.raises(IndexConsistencyError, match="already holds"):
                self.index.apply_run(self.newest + 1, keys, range(len(keys)))
            with pytest.raises(IndexConsistencyError, match="twice"):
                self.index.apply_run(self.newest + 1, [keys[-1], keys[-1]], [0, 1])

    @rule(data=st.data())
    def refused_commit(self, data: st.DataObject) -> None:
        live = sorted(self.states[-1][1])
        absent = [k for k, _ in self.pool if k not in self.states[-1][1]]
        add_live: bool = data.draw(st.booleans())
        if live and add_live:
            key = data.draw(st.sampled_from(live))
            with pytest.raises(IndexConsistencyError, match="already holds"):
                self.index.apply(self.newest + 1, [], [(key, "x")])
        elif absent:
            key = data.draw(st.sampled_from(absent))
            with pytest.raises(IndexConsistencyError, match="does not hold"):
                self.index.apply(self.newest + 1, [*live[:1], key], [])

    @rule(data=st.data())
    def hold(self, data: st.DataObject) -> None:
        self.readers.append(Reader(self.index, self.rows, self.snapshot(data)))

    @rule(data=st.data(), reverse=st.booleans())
    def start_iterator(self, data: st.DataObject, reverse: bool) -> None:
        reader = Reader(self.index, self.rows, self.snapshot(data))
        lo, hi = data.draw(st.sampled_from(self.bounds)), data.draw(st.sampled_from(self.bounds))
        want = expected(self.state_at(reader.snapshot), lo, hi, reverse)
        iterator = self.index.scan(lo, hi, snapshot=reader.snapshot, reverse=reverse)
        taken = [
            resolve(e, reader.rows)
            for _, e in zip(range(data.draw(st.integers(0, 3))), iterator, strict=False)
        ]
        self.iterators.append((iterator, taken, reader, want))

    @rule()
    def finish_iterators(self) -> None:
        for iterator, taken, reader, want in self.iterators:
            assert taken + [resolve(e, reader.rows) for e in iterator] == want
        self.iterators.clear()

    @rule(data=st.data(), reverse=st.booleans(), held=st.booleans())
    def scan_and_count(self, data: st.DataObject, reverse: bool, held: bool) -> None:
        reader = (
            data.draw(st.sampled_from(self.readers))
            if held and self.readers
            else Reader(self.index, self.rows, self.snapshot(data))
        )
        lo, hi = data.draw(st.sampled_from(self.bounds)), data.draw(st.sampled_from(self.bounds))
        want = expected(self.state_at(reader.snapshot), lo, hi, reverse)
        assert scanned(reader.index, reader.rows, lo, hi, reader.snapshot, reverse) == want
        assert reader.index.count(lo, hi, snapshot=reader.snapshot) == len(want)

    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        upto = self.snapshot(data)
        live = self.state_at(upto)
        rows = data.draw(st.permutations(sorted(live.values())), label="new table rows")
        new_row = {doc: row for row, doc in enumerate(rows)}
        old_to_new = [
            new_row.get(doc, -1) if row < len(self.rows) else -1 for row, doc in enumerate(self.rows)
        ]
        merged = self.index.merged(upto, positions_from(old_to_new, new_row))
        assert merged.base_lsn == upto
        assert merged.base_count == len(live)
        assert merged.newest_lsn == self.newest
        # runs added after upto follow the new base's rows, in the order of their old rows
        later = sorted(row for lsn, _, run_rows in self.runs if lsn > upto for row in run_rows)
        renumber = {old: len(rows) + i for i, old in enumerate(later)}
        self.runs = [
            (lsn, keys, [renumber[r] for r in run_rows]) for lsn, keys, run_rows in self.runs if lsn > upto
        ]
        new_rows = list(rows) + [self.rows[old] for old in later]
        self.index, self.rows, self.floor = merged, new_rows, upto

    @rule(data=st.data())
    def forget(self, data: st.DataObject) -> None:
        held = [r.snapshot for r in self.readers if r.index is self.index]
        held += [r.snapshot for _, _, r, _ in self.iterators if r.index is self.index]
        top = min([self.newest, *held])
        lsn = data.draw(st.integers(max(self.index.base_lsn, self.floor), top), label="forget before")
        self.index.forget_before(lsn)
        self.floor = lsn

    @rule(use_mmap=st.booleans())
    def save_and_load(self, use_mmap: bool) -> None:
        self.index.save(self.directory, "ix")
        loaded = IndexData.load(self.directory, "ix", mmap=use_mmap, verify=not use_mmap)
        assert loaded.base_lsn == self.index.base_lsn
        # what reopening does: replay the commit log after the base, commits and bulk runs in LSN order
        commits = [c for c in self.log if c[0] > loaded.base_lsn]
        runs = [r for r in self.runs if r[0] > loaded.base_lsn]
        while commits or runs:
            if runs and (not commits or runs[0][0] < commits[0][0]):
                lsn, keys, rows = runs.pop(0)
                loaded.apply_run(lsn, keys, rows)
            else:
                lsn, removed, added = commits.pop(0)
                loaded.apply(lsn, removed, added)
        self.index, self.floor = loaded, loaded.base_lsn

    @invariant()
    def counts_everything(self) -> None:
        if self.states:
            assert self.index.count(None, None, snapshot=self.newest) == len(self.states[-1][1])


class LongKeyModel(IndexModel):
    LONG_KEY = True


@pytest.mark.parametrize(
    ("machine", "chunks", "examples"),
    [(IndexModel, (64, 4096), 60), (IndexModel, (2, 8), 60), (LongKeyModel, (3, 8), 25)],
    ids=["default-chunks", "small-chunks", "long-keys"],
)
def test_index_agrees_with_a_model(
    machine: type[IndexModel], chunks: tuple[int, int], examples: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small scan chunks put chunk boundaries among hidden base keys and added keys.
    monkeypatch.setattr(zapnb.indexwalk, "FIRST_CHUNK", chunks[0])
    monkeypatch.setattr(zapnb.indexwalk, "LAST_CHUNK", chunks[1])
    run_state_machine_as_test(
        machine, settings=settings(max_examples=examples, stateful_step_count=40, deadline=None)
    )


# --- specs and keys -----------------------------------------------------------------------------------------


def test_key_for_follows_the_key_rule() -> None:
    doc = {"_id": "id1", "_creationTime": 5.5, "a": {"b": 1, "c": [2]}, "x": "s", "n": None}
    assert IndexSpec("i", ("x", "n")).key_for(doc) == encode_key(["s", None, 5.5, "id1"])
    assert IndexSpec("i", ("a.b",)).key_for(doc) == encode_key([1, 5.5, "id1"])
    # a missing field, a missing step, and a step through a non-object are all MISSING
    assert IndexSpec("i", ("gone", "a.zz", "x.y", "a.c.0")).key_for(doc) == encode_key(
        [MISSING, MISSING, MISSING, MISSING, 5.5, "id1"]
    )
    assert IndexSpec.by_id().key_for(doc) == encode_key(["id1"])
    assert IndexSpec.by_creation_time().key_for(doc) == encode_key([5.5, "id1"])


def test_spec_is_a_value() -> None:
    spec = IndexSpec("by_a", ["a", "b.c"])  # type: ignore[arg-type]
    assert spec.fields == ("a", "b.c")
    assert spec == IndexSpec("by_a", ("a", "b.c"))
    assert hash(spec) == hash(IndexSpec("by_a", ("a", "b.c")))
    copy = pickle.loads(pickle.dumps(spec))
    assert copy == spec
    assert copy.key_for({"_id": "i", "_creationTime": 1.0, "a": 3}) == encode_key([3, MISSING, 1.0, "i"])
    assert "_key" not in repr(spec)
    assert (IndexSpec.by_id().name, IndexSpec.by_creation_time().kind) == ("by_id", "by_creation_time")


@pytest.mark.parametrize(
    ("fields", "kind", "match"),
    [
        ((), "user", "1 to 15 fields"),
        (tuple(f"f{i}" for i in range(16)), "user", "1 to 15 fields"),
        (("a..b",), "user", "not a field path"),
        (("",), "user", "not a field path"),
        (("a",), "by_id", "no fields"),
        ((), "other", "kind must be"),
    ],
)
def test_bad_specs_are_refused(fields: tuple[str, ...], kind: Any, match: str) -> None:
    with pytest.raises(SchemaDefinitionError, match=match):
        IndexSpec("i", fields, kind)


def test_key_for_needs_the_system_fields() -> None:
    for spec in (
        IndexSpec.by_id(),
        IndexSpec.by_creation_time(),
        IndexSpec("i", ("a",)),
        IndexSpec("i", ("a.b",)),
    ):
        with pytest.raises(InvalidValueError, match="_id"):
            spec.key_for({"_creationTime": 1.0, "a": 1})


# --- sorted keys --------------------------------------------------------------------------------------------

_key_sets = st.lists(
    st.lists(
        st.one_of(st.integers(-3, 3), st.text("a\x00\x01", max_size=3), st.binary(max_size=2)),
        min_size=2,
        max_size=2,
    ),
    unique_by=repr,
    max_size=30,
).map(lambda rows: sorted({encode_key(row) for row in rows}))


@given(keys=_key_sets, probes=st.lists(st.binary(max_size=12), max_size=10), long_probe=st.binary(min_size=1))
def test_bisect_is_exact_bytewise_in_both_layouts(
    keys: list[bytes], probes: list[bytes], long_probe: bytes
) -> None:
    fixed, _ = sort_keys(keys)
    array = fixed.to_arrow()
    var = VarKeys(
        np.frombuffer(array.buffers()[2] or b"", np.uint8), np.frombuffer(array.buffers()[1], np.int64)
    )
    probes += [k + tail for k in keys[:5] for tail in (b"", b"\x00", b"\x00" * 40, b"\x01")]
    probes += [k.rstrip(b"\x00") for k in keys[:5]] + [k[:-1] for k in keys[:5]] + [b"\x07" + long_probe * 50]
    for layout in (fixed, var):
        assert layout.keys(0, len(keys)) == keys
        assert [layout.bisect(p) for p in probes] == [bisect.bisect_left(keys, p) for p in probes]
        assert layout.bisect_many(probes).tolist() == [bisect.bisect_left(keys, p) for p in probes]
        want = [keys.index(p) if p in keys else -1 for p in probes]
        assert [layout.find(p) for p in probes] == want
        assert layout.find_many(probes) == want


def test_layout_choice_and_long_keys() -> None:
    short = [encode_key([i, f"id{i}"]) for i in range(2000)]
    assert sort_keys(short)[0].layout == "fixed"
    long = [*short, encode_key(["z" * 5000, "id"])]
    keys, order = sort_keys(long)
    assert keys.layout == "var"
    assert keys.keys(0, len(long)) == sorted(long)
    assert [long[i] for i in order.tolist()] == sorted(long)
    assert choose_layout(10, 600, 6000) == "fixed"  # long but uniform keys stay fixed


@pytest.mark.parametrize("count", [0, 1, 5, 140_000])  # 140,000: sorted in parallel runs, then merged
def test_build_sorts_lists_and_arrow_arrays_alike(count: int) -> None:
    rng = random.Random(count)
    keys = [encode_key([rng.choice(GROUPS), rng.random(), f"id{i}"]) for i in range(count)]
    positions = list(range(count))
    reference = sorted(zip(keys, positions, strict=True))
    inputs: list[Any] = [
        keys,
        pa.array(keys, pa.binary()),
        pa.chunked_array([keys[: count // 2], keys[count // 2 :]], pa.binary()),
    ]
    inputs.append(pa.array([b"skip", *keys], pa.large_binary()).slice(1))
    for given_keys in inputs:
        index = IndexData.build(given_keys, positions, lsn=3)
        got = [(e.key, e.position) for e in index.scan(None, None, snapshot=3)]
        assert got == reference


def test_build_refuses_duplicates_and_mismatched_positions() -> None:
    with pytest.raises(IndexConsistencyError, match="duplicate") as info:
        IndexData.build([b"a\x00", b"b", b"a\x00"], [0, 1, 2], lsn=1, name="t.by_x")
    assert info.value.key == b"a\x00"
    assert info.value.index == "t.by_x"
    with pytest.raises(IndexConsistencyError, match="positions"):
        IndexData.build([b"a", b"b"], [0], lsn=1)


# --- edge cases ---------------------------------------------------------------------------------------------


def keys_of(index: IndexData, snapshot: int, reverse: bool = False) -> list[bytes]:
    return [e.key for e in index.scan(None, None, snapshot=snapshot, reverse=reverse)]


def test_empty_index() -> None:
    index = IndexData.build([], [], lsn=0)
    for lo, hi in [(None, None), (b"a", b"b"), (b"b", b"a")]:
        assert (
            list(index.scan(lo, hi, snapshot=0)) == list(index.scan(lo, hi, snapshot=0, reverse=True)) == []
        )
        assert index.count(lo, hi, snapshot=0) == 0
    merged = index.merged(0, positions_from([], {}))
    assert merged.base_count == 0
    assert keys_of(merged, 0) == []


def test_all_deleted_then_merged_saved_and_loaded(tmp_path: Path) -> None:
    keys = [k for k, _ in pool_keys(50)]
    index = IndexData.build(keys, range(50), lsn=1)
    index.apply(2, keys[:25], [])
    index.apply(3, keys[25:], [])
    assert keys_of(index, 1) == sorted(keys)
    assert keys_of(index, 2) == sorted(keys[25:])
    assert keys_of(index, 3) == []
    assert index.count(None, None, snapshot=3) == 0
    assert index.count(None, None, snapshot=2) == 25
    merged = index.merged(3, positions_from(np.full(50, -1), {}))
    merged.save(tmp_path, "empty")
    loaded = IndexData.load(tmp_path, "empty", verify=True)
    assert (loaded.base_count, loaded.base_lsn, keys_of(loaded, 3)) == (0, 3, [])


def test_a_key_removed_and_added_again() -> None:
    (k1, _), (k2, _) = pool_keys(2)
    index = IndexData.build([k1], [0], lsn=1)
    index.apply(2, [k1], [(k1, "again")])  # in one commit: the base key is replaced by a delta entry
    index.apply(3, [k1], [])
    index.apply(4, [], [(k1, "third"), (k2, "d2")])
    index.apply(5, [k1], [])
    index.apply(5, [], [(k1, "fourth")])  # removed and re-added by two calls of one commit
    seen = {
        s: [(e.key, e.position, e.doc_id) for e in index.scan(None, None, snapshot=s)] for s in range(1, 6)
    }
    assert seen[1] == [(k1, 0, None)]
    assert seen[2] == [(k1, -1, "again")]
    assert seen[3] == []
    assert seen[4] == sorted([(k1, -1, "third"), (k2, -1, "d2")])
    assert seen[5] == sorted([(k1, -1, "fourth"), (k2, -1, "d2")])
    merged = index.merged(3, positions_from([0], {}))
    assert keys_of(merged, 3) == []
    assert keys_of(merged, 5) == sorted([k1, k2])


def test_snapshot_older_than_a_merge_reads_the_old_object() -> None:
    keys = [k for k, _ in pool_keys(10)]
    old = IndexData.build(keys, range(10), lsn=1)
    old.apply(2, keys[:3], [])
    new = old.merged(2, positions_from(range(10), {}))
    new.apply(3, keys[3:6], [])
    assert keys_of(old, 1) == sorted(keys)
    assert keys_of(old, 2) == sorted(keys[3:])
    assert keys_of(new, 3) == sorted(keys[6:])
    with pytest.raises(IndexConsistencyError, match="older than the base") as info:
        new.scan(None, None, snapshot=1)
    assert info.value.lsn == 1
    with pytest.raises(IndexConsistencyError, match="older than the base"):
        new.count(None, None, snapshot=1)


def test_refused_commits_change_nothing() -> None:
    (k1, _), (k2, _), (k3, _) = pool_keys(3)
    index = IndexData.build([k1], [0], lsn=5, name="t.by_a")
    index.apply(6, [], [(k2, "d2")])
    cases: list[tuple[int, list[bytes], list[tuple[bytes, str]], str]] = [
        (7, [k1, k3], [], "does not hold"),
        (7, [k1], [(k2, "x")], "already holds"),
        (7, [], [(k1, "x")], "already holds"),
        (7, [], [(k3, "x"), (k3, "y")], "twice"),
        (7, [k2, k2], [], "twice"),
        (5, [], [(k3, "x")], "not after the base"),
        (7, [k1, k1], [], "twice"),
    ]
    for lsn, removed, added, match in cases:
        with pytest.raises(IndexConsistencyError, match=match) as info:
            index.apply(lsn, removed, added)
        assert info.value.index == "t.by_a"
        assert "reopen" in str(info.value)
    index.apply(8, [k1], [])
    with pytest.raises(IndexConsistencyError, match="after one at 8"):
        index.apply(7, [], [(k3, "x")])
    assert keys_of(index, 7) == sorted([k1, k2])
    assert keys_of(index, 8) == [k2]


def test_merge_needs_a_row_for_every_live_document() -> None:
    (k1, _), (k2, _) = pool_keys(2)
    index = IndexData.build([k1], [0], lsn=1)
    index.apply(2, [], [(k2, "d2")])
    with pytest.raises(IndexConsistencyError, match="no new row"):
        index.merged(2, positions_from([0], {}))
    with pytest.raises(IndexConsistencyError, match="no new row"):
        index.merged(2, lambda old, ids: np.zeros(5, np.int64))
    with pytest.raises(IndexConsistencyError, match="older than the base"):
        index.merged(0, positions_from([0], {}))


def test_merge_keeps_later_changes_as_its_delta() -> None:
    keys = [k for k, _ in pool_keys(30)]
    index = IndexData.build(keys[:20], range(20), lsn=1)
    index.apply(2, keys[:2], [(k, f"doc{i}") for i, k in enumerate(keys[20:25], 20)])
    index.apply(3, [keys[2], keys[20]], [(keys[25], "doc25")])
    index.apply(4, [keys[21]], [(keys[0], "doc0")])
    live_at_2 = sorted([*keys[2:20], *keys[20:25]])
    doc_of_key = {k: f"doc{i}" for i, k in enumerate(keys)}
    new_rows = {doc_of_key[k]: row for row, k in enumerate(reversed(live_at_2))}
    merged = index.merged(2, positions_from([new_rows.get(f"doc{i}", -1) for i in range(20)], new_rows))
    assert merged.base_count == len(live_at_2)
    assert merged.newest_lsn == 4
    rows = [doc for doc, _ in sorted(new_rows.items(), key=lambda item: item[1])]
    for snapshot in (2, 3, 4):
        assert [resolve(e, rows) for e in merged.scan(None, None, snapshot=snapshot)] == [
            resolve(e, [f"doc{i}" for i in range(20)]) for e in index.scan(None, None, snapshot=snapshot)
        ]
    assert all(e.doc_id is None for e in merged.scan(None, None, snapshot=2))


def test_forget_before_drops_only_dead_history() -> None:
    keys = [k for k, _ in pool_keys(6)]
    index = IndexData.build(keys[:2], [0, 1], lsn=1)
    index.apply(2, [], [(keys[2], "a"), (keys[3], "b")])
    index.apply(3, [keys[2], keys[0]], [(keys[4], "c")])
    before = index.delta_count
    assert index.forget_before(2) == 0
    assert index.forget_before(3) == 1  # keys[2], added at 2 and removed at 3; the base tombstone stays
    assert index.delta_count == before - 1
    assert keys_of(index, 3) == sorted([keys[1], keys[3], keys[4]])


def test_bulk_commits_match_one_by_one() -> None:
    rng = random.Random(7)
    keys = [encode_key([rng.choice(GROUPS), rng.random(), f"id{i}"]) for i in range(3000)]
    bulk = IndexData.build([], [], lsn=0)
    bulk.apply(1, [], [(k, f"d{i}") for i, k in enumerate(keys)])  # as a backfill does
    single = IndexData.build([], [], lsn=0)
    for i, k in enumerate(keys[:300]):
        single.apply(1, [], [(k, f"d{i}")])
    assert keys_of(bulk, 1) == sorted(keys)
    assert keys_of(single, 1) == sorted(keys[:300])
    bulk.apply(2, keys[:2000], [])
    assert keys_of(bulk, 2) == sorted(keys[2000:])
    assert bulk.count(None, None, snapshot=1) == 3000
    built = IndexData.build(keys, range(3000), lsn=2)
    built.apply(3, keys[:1000], [(k, "again") for k in keys[:40]])
    assert keys_of(built, 3) == sorted(keys[1000:] + keys[:40])
    assert built.count(None, None, snapshot=3) == 2040


# --- files --------------------------------------------------------------------------------------------------


def saved(tmp_path: Path, long_key: bool = False) -> tuple[IndexData, Path]:
    pool = pool_keys(200, long_key)
    index = IndexData.build([k for k, _ in pool], range(200), lsn=9, name="t.by_x")
    return index, index.save(tmp_path, "t.by_x")


@pytest.mark.parametrize("long_key", [False, True])
def test_save_and_load_round_trip(tmp_path: Path, long_key: bool) -> None:
    index, path = saved(tmp_path, long_key)
    assert path == index_path(tmp_path, "t.by_x")
    assert sorted(os.listdir(tmp_path)) == ["t.by_x.zidx"]
    for use_mmap in (True, False):
        loaded = IndexData.load(tmp_path, "t.by_x", mmap=use_mmap, verify=True)
        assert repr(loaded).startswith(
            "<IndexData t.by_x: 200 keys at LSN 9 (" + ("var" if long_key else "fixed")
        )
        assert list(loaded.scan(None, None, snapshot=9)) == list(index.scan(None, None, snapshot=9))
        assert loaded.nbytes == index.nbytes
    assert index.save(tmp_path, "t.by_x") == path  # replacing works


def test_loaded_arrays_are_mapped_read_only(tmp_path: Path) -> None:
    saved(tmp_path)
    loaded = IndexData.load(tmp_path, "t.by_x")
    keys = loaded._keys
    assert isinstance(keys, FixedKeys)
    first, lengths = keys.arrays()
    assert not first.flags.writeable
    assert not lengths.flags.writeable
    assert not loaded._rows.flags.writeable


@pytest.mark.parametrize("long_key", [False, True])
def test_a_cut_file_is_corruption_naming_the_file(tmp_path: Path, long_key: bool) -> None:
    _, path = saved(tmp_path, long_key)
    data = path.read_bytes()
    for size in sorted({0, 1, 64, 127, 128, 129, len(data) // 2, len(data) - 1}):
        path.write_bytes(data[:size])
        with pytest.raises(CorruptionError) as info:
            IndexData.load(tmp_path, "t.by_x")
        assert info.value.file == str(path)
        assert str(path) in str(info.value)
        assert info.value.offset <= size
    path.write_bytes(data + b"\x00")
    with pytest.raises(CorruptionError, match="its header says"):
        IndexData.load(tmp_path, "t.by_x")


def test_a_damaged_header_is_corruption(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    data = path.read_bytes()
    for offset in range(112):
        damaged = bytearray(data)
        damaged[offset] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises((CorruptionError, FormatVersionError)):
            IndexData.load(tmp_path, "t.by_x")


def test_a_damaged_section_is_found_by_verify(tmp_path: Path) -> None:
    _index, path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01  # inside the keys section
    path.write_bytes(bytes(data))
    IndexData.load(tmp_path, "t.by_x")  # opening does not read the sections
    with pytest.raises(CorruptionError, match="keys section's checksum") as info:
        IndexData.load(tmp_path, "t.by_x", verify=True)
    assert info.value.offset == 128


def test_other_versions_missing_files_and_foreign_files(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[8] = 2  # format version 2, with a matching header checksum
    import struct
    import zlib

    data[108:112] = struct.pack("<I", zlib.crc32(bytes(data[:108])))
    path.write_bytes(bytes(data))
    with pytest.raises(FormatVersionError) as version:
        IndexData.load(tmp_path, "t.by_x")
    assert (version.value.found, version.value.supported) == (2, 1)
    with pytest.raises(CorruptionError, match="missing"):
        IndexData.load(tmp_path, "nope")
    path.write_bytes(b"PAR1" + bytes(400))
    with pytest.raises(CorruptionError, match="does not start with a zapnb index header") as info:
        IndexData.load(tmp_path, "t.by_x")
    assert info.value.offset == 0


SAVE_CHILD = """
import sys
from pathlib import Path
from zapnb.index import IndexData
index = IndexData.build([b"new\\x00"], [0], lsn=2)
index.save(Path(sys.argv[1]), "ix")
"""


def test_a_crash_while_saving_leaves_the_old_file(tmp_path: Path) -> None:
    IndexData.build([b"old\x00"], [0], lsn=1).save(tmp_path, "ix")
    env = {**os.environ, ENV_VAR: "index.before_rename", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", SAVE_CHILD, str(tmp_path)], env=env, timeout=60, check=False
    )
    assert result.returncode == EXIT_CODE
    loaded = IndexData.load(tmp_path, "ix", verify=True)
    assert (loaded.base_lsn, keys_of(loaded, 1)) == (1, [b"old\x00"])
    env.pop(ENV_VAR)
    subprocess.run([sys.executable, "-c", SAVE_CHILD, str(tmp_path)], env=env, timeout=60, check=True)
    assert keys_of(IndexData.load(tmp_path, "ix"), 2) == [b"new\x00"]
    assert sorted(os.listdir(tmp_path)) == ["ix.zidx"]


# --- threads ------------------------------------------------------------------------------------------------


def test_readers_keep_their_snapshot_while_one_writer_applies_and_a_merge_runs() -> None:
    rng = random.Random(11)
    keys = [encode_key([rng.choice(GROUPS), rng.random(), f"id{i}"]) for i in range(3000)]
    index = IndexData.build(keys[:2000], range(2000), lsn=1)
    live = set(keys[:2000])
    history: dict[int, list[bytes]] = {1: sorted(live)}
    commits: list[tuple[int, list[bytes], list[tuple[bytes, str]]]] = []
    published = [1]
    merged: list[IndexData] = []
    failures: list[BaseException] = []
    reads = [0]
    done = threading.Event()

    def writer() -> None:
        spare = keys[2000:]
        for lsn in range(2, 400):
            gone = rng.sample(sorted(live), 3)
            new = [spare.pop(), *gone[:1]] if lsn % 5 == 0 else [spare.pop()]
            removed, added = gone, [(k, "doc") for k in new]
            index.apply(lsn, removed, added)
            commits.append((lsn, removed, added))
            live.difference_update(gone)
            live.update(new)
            history[lsn] = sorted(live)
            published.append(lsn)
            if lsn == 200:
                threading.Thread(target=merge, args=(lsn,)).start()
        done.set()

    def merge(upto: int) -> None:
        merged.append(index.merged(upto, lambda old, ids: np.arange(len(old) + len(ids), dtype=np.int64)))

    def reader() -> None:
        own = random.Random(threading.get_ident())
        try:
            while not done.is_set():
                snapshot = published[-1]
                lo = encode_key([own.choice(GROUPS)])
                iterator = index.scan(lo, prefix_end(lo), snapshot=snapshot, reverse=snapshot % 2 == 1)
                first = [e.key for _, e in zip(range(5), iterator, strict=False)]
                rest = [e.key for e in iterator]
                want = [k for k in history[snapshot] if lo <= k < prefix_end(lo)]  # type: ignore[operator]
                assert first + rest == (want[::-1] if snapshot % 2 else want)
                assert index.count(None, None, snapshot=snapshot) == len(history[snapshot])
                reads[0] += 1
        except BaseException as err:
            failures.append(err)
            raise

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures
    assert len(merged) == 1
    assert reads[0] > 10
    new = merged[0]
    for lsn, removed, added in commits:
        if lsn > new.newest_lsn:  # commits the writer applied after the merge took its copy
            new.apply(lsn, removed, added)
    assert keys_of(new, 399) == history[399]
    assert keys_of(new, 200) == history[200]


@pytest.mark.parametrize("long_key", [False, True])
def test_merge_refuses_to_hold_a_key_twice(long_key: bool) -> None:
    keys = [k for k, _ in pool_keys(8, long_key)]
    sorted_keys, order = sort_keys(keys)
    twin = sorted_keys.keys(5, 6)[0]
    delta = Delta("t.by_x", [Record(twin, 2, NEVER, "twin")], newest=2)  # what apply() would have refused
    index = IndexData(sorted_keys, order, 1, delta=delta, name="t.by_x")
    with pytest.raises(IndexConsistencyError, match="twice") as info:
        index.merged(2, lambda old, ids: np.arange(len(old) + len(ids), dtype=np.int64))
    assert info.value.key == twin
    assert first_duplicate(sorted_keys) == -1
    assert first_duplicate(sorted_keys, near=np.array([0, 7])) == -1


def test_a_failed_save_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageIOError, match="not replaced") as info:
        IndexData.build([b"k\x00"], [0], lsn=1).save(tmp_path / "missing", "ix")
    assert info.value.operation == "write"
    assert info.value.path == str(tmp_path / "missing" / "ix.zidx")

"""The range index that finds the watched queries a commit touched, checked against a plain scan."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from zapnb.changes import ReadRange
from zapnb.rangeindex import RangeIndex

keys = st.binary(min_size=0, max_size=3)
bounds = st.none() | keys
ranges = st.builds(
    lambda index, lo, hi: ReadRange("t", index, lo, hi), st.sampled_from(["a", "b"]), bounds, bounds
)
read_sets = st.dictionaries(st.integers(0, 30), st.lists(ranges, max_size=4), max_size=20)


@given(
    read_sets,
    st.lists(st.integers(0, 30), max_size=10),
    st.lists(st.tuples(st.sampled_from(["a", "b"]), keys)),
)
def test_stab_finds_exactly_the_owners_whose_range_holds_the_key(
    sets: dict[int, list[ReadRange]], dropped: list[int], probes: list[tuple[str, bytes]]
) -> None:
    index = RangeIndex()
    for owner, reads in sets.items():
        index.set(owner, reads)
    for owner in dropped:
        index.discard(owner)
        sets.pop(owner, None)
    for name, key in probes:
        expected = {o for o, reads in sets.items() for r in reads if r.index == name and r.contains(key)}
        assert set(index.stab("t", name, key)) == expected
        assert index.stab("other", name, key) == []
    assert len(index) == len(sets)


def test_replacing_a_read_set_forgets_the_old_ranges() -> None:
    index = RangeIndex()
    index.set(1, [ReadRange("t", "a", b"a", b"b")])
    index.set(1, [ReadRange("t", "a", b"c", b"d")])
    assert index.stab("t", "a", b"a") == []
    assert index.stab("t", "a", b"c") == [1]
    index.discard(1)
    assert index.stab("t", "a", b"c") == []

"""Which recorded read ranges hold an index key: how a commit finds the watched queries it touched.

Responsibilities: keep every subscription's read set (index key ranges, :class:`~zapnb.changes.ReadRange`)
grouped by table and index, and answer "which owners read a range holding this key" without looking at every
range. Per group the ranges are sorted by their lower bound with a running maximum of upper bounds, so a
lookup walks back from the key only while some range further back could still reach it: for the usual
case of many disjoint ranges (one project's messages each) that is a binary search and a step or two.
Ranges with no upper bound are kept apart, since they would make every walk go to the start.

Examples
--------
>>> from zapnb.changes import ReadRange
>>> ranges = RangeIndex()
>>> ranges.set(1, [ReadRange("messages", "by_project", b"a", b"b")])
>>> ranges.set(2, [ReadRange("messages", "by_project", b"b", b"c"), ReadRange("projects", "by_id", None,
...     None)])
>>> ranges.stab("messages", "by_project", b"a1"), ranges.stab("messages", "by_project", b"b")
([1], [2])
>>> ranges.stab("projects", "by_id", b"x"), ranges.stab("projects", "by_id_other", b"x")
([2], [])
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from zapnb.changes import ReadRange

__all__ = ["RangeIndex"]

Owner = int
_UNBOUNDED = b""  # a missing lower bound sorts before every key


class RangeIndex:
    """Read ranges by owner, searchable by key. Not thread-safe: its user holds a lock."""

    def __init__(self) -> None:
        self._by_owner: dict[Owner, tuple[ReadRange, ...]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}

    def set(self, owner: Owner, reads: Iterable[ReadRange]) -> None:
        """Make ``reads`` the read set of ``owner`` (replacing what it had)."""
        ranges = tuple(dict.fromkeys(reads))  # drop repeats, keep order
        if self._by_owner.get(owner) == ranges:
            return
        self.discard(owner)
        self._by_owner[owner] = ranges
        for read in ranges:
            self._groups.setdefault((read.table, read.index), _Group()).add(owner, read.lo, read.hi)

    def discard(self, owner: Owner) -> None:
        """Forget ``owner``'s read set."""
        for read in self._by_owner.pop(owner, ()):
            group = self._groups.get((read.table, read.index))
            if group is not None and group.remove(owner):
                del self._groups[(read.table, read.index)]

    def stab(self, table: str, index: str, key: bytes) -> list[Owner]:
        """The owners with a range of ``table``'s ``index`` that holds ``key`` (an owner may repeat)."""
        group = self._groups.get((table, index))
        return [] if group is None else group.stab(key)

    def ranges_of(self, table: str, index: str) -> Iterator[tuple[Owner, ReadRange]]:
        """Every recorded range of ``table``'s ``index``, with its owner."""
        group = self._groups.get((table, index))
        if group is None:
            return
        for owner, bounds in list(group.ranges.items()):
            for lo, hi in bounds:
                yield owner, ReadRange(table, index, lo or None, hi)

    def __len__(self) -> int:
        return len(self._by_owner)


class _Group:
    """The ranges of one index: bounded ones sorted for search (rebuilt lazily), unbounded ones apart."""

    def __init__(self) -> None:
        self.ranges: dict[Owner, list[tuple[bytes, bytes | None]]] = {}
        self._dirty = True
        self._los: list[bytes] = []
        self._his: list[bytes] = []
        self._reach: list[bytes] = []  # the largest upper bound among ranges 0..i
        self._owners: list[Owner] = []
        self._open: list[tuple[bytes, Owner]] = []  # ranges with no upper bound

    def add(self, owner: Owner, lo: bytes | None, hi: bytes | None) -> None:
        self.ranges.setdefault(owner, []).append((_UNBOUNDED if lo is None else lo, hi))
        self._dirty = True

    def remove(self, owner: Owner) -> bool:
        """Drop ``owner``'s ranges; ``True`` when the group is now empty."""
        if self.ranges.pop(owner, None) is not None:
            self._dirty = True
        return not self.ranges

    def stab(self, key: bytes) -> list[Owner]:
        if self._dirty:
            self._build()
        found = [owner for lo, owner in self._open if lo <= key]
        i = bisect.bisect_right(self._los, key) - 1
        while i >= 0 and self._reach[i] > key:
            if self._his[i] > key:
                found.append(self._owners[i])
            i -= 1
        return found

    def _build(self) -> None:
        bounded: list[tuple[bytes, bytes, Owner]] = []
        self._open = []
        for owner, ranges in self.ranges.items():
            for lo, hi in ranges:
                if hi is None:
                    self._open.append((lo, owner))
                else:
                    bounded.append((lo, hi, owner))
        bounded.sort()
        self._los = [lo for lo, _, _ in bounded]
        self._his = [hi for _, hi, _ in bounded]
        self._owners = [owner for _, _, owner in bounded]
        self._reach = []
        reach = b""
        for hi in self._his:
            reach = max(reach, hi)
            self._reach.append(reach)
        self._dirty = False

"""The delta of an index: what changed since its base, with the LSN of every change, for snapshot reads.

Responsibilities:

- hold the keys added since the base, each as a :class:`Record` ``(key, added, removed, doc_id)``, sorted by
  key, and the *tombstones*: base positions whose key was removed, with the LSN that removed it;
- apply one commit's removals and additions after checking them against the base (all or nothing);
- hand a reader the part of a range it needs at a snapshot: the hidden base positions and the visible added
  keys, or just their counts;
- drop history no snapshot can need, and export a consistent copy for a merge.

A key is visible at snapshot ``S`` when ``added <= S < removed`` (``removed`` is :data:`NEVER` while the key
is live); a base key is hidden at ``S`` when its tombstone's LSN is ``<= S``. A base key is removed at most
once; adding it again later is a new record. A key can have several records over time, never two visible at
one snapshot.

Concurrency: one writer thread calls :meth:`Delta.apply` and :meth:`Delta.forget_before`; readers call
:meth:`Delta.view` and :meth:`Delta.count`. All of them hold :attr:`Delta.lock` for a few microseconds: a
reader copies (slices) the part of the sorted lists it needs and then works on its copy, so it never sees a
list change under it. The only field the writer changes in place is a record's ``removed``, and only from
``NEVER`` to an LSN newer than every snapshot a reader may hold (commits are applied in LSN order, and
readers read at or below the last LSN applied), so a reader decides the same either way.

Examples
--------
>>> from zapnb.indexbase import sort_keys
>>> base, _ = sort_keys([b"a", b"c"])
>>> delta = Delta("demo")
>>> delta.apply(5, [b"a"], [(b"b", "doc-b")], base)
>>> delta.view(0, 2, None, None, 4), delta.view(0, 2, None, None, 5)
(([], [], []), ([0], [b'b'], ['doc-b']))
>>> delta.count(0, 2, None, None, 5)
0
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Final, NamedTuple

from zapnb.errors import IndexConsistencyError
from zapnb.indexbase import SortedKeys

__all__ = ["NEVER", "Delta", "Exported", "Record", "inconsistency"]

NEVER: Final = (1 << 63) - 1
"""The ``removed`` LSN of a key that is still live."""

_BULK: Final = 32  # a commit with more changes than this rebuilds the sorted lists instead of inserting


class Record:
    """A key added after the base: visible at snapshots ``added <= S < removed``."""

    __slots__ = ("added", "doc_id", "key", "removed")

    def __init__(self, key: bytes, added: int, removed: int, doc_id: str) -> None:
        self.key = key
        self.added = added
        self.removed = removed
        self.doc_id = doc_id

    def __repr__(self) -> str:
        removed = "live" if self.removed == NEVER else f"removed at {self.removed}"
        return f"Record({self.key!r}, added at {self.added}, {removed}, {self.doc_id!r})"


_KEY_OF: Final = attrgetter("key")


class Exported(NamedTuple):
    """A consistent copy of a delta: records as ``(key, added, removed, doc_id)`` and tombstones."""

    records: list[tuple[bytes, int, int, str]]
    tomb_positions: list[int]
    tomb_lsns: list[int]
    newest: int


def inconsistency(index: str, problem: str, lsn: int | None, key: bytes | None) -> IndexConsistencyError:
    """The error for an index asked something its state contradicts."""
    about = "" if key is None else f" (key {key[:60]!r}{'...' if len(key) > 60 else ''})"
    return IndexConsistencyError(
        f"Index {index or '(unnamed)'} refused an operation: {problem}{about}. This is a bug in zapnb or a "
        "damaged data directory, and the index was left unchanged. Close and reopen the database to rebuild "
        "the indexes from the last checkpoint and the commit log, and please report it.",
        index=index,
        problem=problem,
        lsn=lsn,
        key=key,
    )


class Delta:
    """The changes to one index since its base (see the module docstring)."""

    def __init__(
        self,
        name: str,
        records: Iterable[Record] = (),
        tombstones: Iterable[tuple[int, int]] = (),
        newest: int = 0,
    ) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.newest = newest
        self._records = sorted(records, key=lambda r: (r.key, r.added))
        self._keys = [r.key for r in self._records]
        self._live = {r.key: r for r in self._records if r.removed == NEVER}
        self._live_keys = sorted(self._live)
        self._tomb = dict(tombstones)
        self._tomb_positions = sorted(self._tomb)
        self._tomb_lsns = [self._tomb[p] for p in self._tomb_positions]

    def __len__(self) -> int:
        """Records plus tombstones."""
        return len(self._records) + len(self._tomb)

    # --- writing --------------------------------------------------------------------------------------------

    def apply(
        self, lsn: int, removed: Sequence[bytes], added: Sequence[tuple[bytes, str]], base: SortedKeys
    ) -> None:
        """Remove ``removed`` and then add ``added`` at ``lsn``, or raise and change nothing.

        Large commits (a bulk import, an index backfill) are checked against the base in one vectorised
        search and merged into the sorted lists in one pass.
        """
        with self.lock:
            if lsn < self.newest:
                raise inconsistency(self.name, f"a commit at LSN {lsn} after one at {self.newest}", lsn, None)
            from_delta, from_base = self._plan_removals(lsn, removed, base)
            self._check_additions(lsn, set(removed), added, base)
            self._remove(lsn, from_delta, from_base)
            self._add(lsn, added)
            self.newest = lsn

    def _plan_removals(
        self, lsn: int, removed: Sequence[bytes], base: SortedKeys
    ) -> tuple[list[bytes], list[int]]:
        from_delta: list[bytes] = []
        in_base: list[bytes] = []
        for key in removed:
            (from_delta if key in self._live else in_base).append(key)
        if len(set(removed)) != len(removed):
            key = next(k for k in removed if removed.count(k) > 1)
            raise inconsistency(self.name, "removing the same key twice in one commit", lsn, key)
        from_base = base.find_many(in_base)
        for key, position in zip(in_base, from_base, strict=True):
            if position < 0 or position in self._tomb:
                raise inconsistency(self.name, "removing a key the index does not hold", lsn, key)
        return from_delta, from_base

    def _check_additions(
        self, lsn: int, removed: set[bytes], added: Sequence[tuple[bytes, str]], base: SortedKeys
    ) -> None:
        keys = [key for key, _doc_id in added]
        if len(set(keys)) != len(keys):
            key = next(k for k in keys if keys.count(k) > 1)
            raise inconsistency(self.name, "adding the same key twice in one commit", lsn, key)
        for key in keys:
            if key in self._live and key not in removed:
                raise inconsistency(self.name, "adding a key the index already holds", lsn, key)
        fresh = [key for key in keys if key not in removed and key not in self._live]
        for key, position in zip(fresh, base.find_many(fresh), strict=True):
            if position >= 0 and position not in self._tomb:
                raise inconsistency(self.name, "adding a key the index already holds", lsn, key)

    def _remove(self, lsn: int, from_delta: list[bytes], from_base: list[int]) -> None:
        for key in from_delta:
            self._live.pop(key).removed = lsn
        if len(from_delta) > _BULK:
            gone = set(from_delta)
            self._live_keys = [key for key in self._live_keys if key not in gone]
        else:
            for key in from_delta:
                del self._live_keys[bisect_left(self._live_keys, key)]
        for position in from_base:
            self._tomb[position] = lsn
        if len(from_base) > _BULK:
            self._tomb_positions = sorted(self._tomb)
            self._tomb_lsns = [self._tomb[p] for p in self._tomb_positions]
        else:
            for position in from_base:
                at = bisect_left(self._tomb_positions, position)
                self._tomb_positions.insert(at, position)
                self._tomb_lsns.insert(at, lsn)

    def _add(self, lsn: int, added: Sequence[tuple[bytes, str]]) -> None:
        records = [Record(key, lsn, NEVER, doc_id) for key, doc_id in added]
        for record in records:
            self._live[record.key] = record
        if len(records) > _BULK:
            # Timsort finds the two sorted runs and merges them in C; it is stable, so an older record of
            # the same key stays first.
            self._records = sorted(self._records + records, key=_KEY_OF)
            self._keys = [r.key for r in self._records]
            self._live_keys = sorted(self._live_keys + [r.key for r in records])
            return
        for record in records:
            at = bisect_right(self._keys, record.key)
            self._keys.insert(at, record.key)
            self._records.insert(at, record)
            insort(self._live_keys, record.key)

    def forget_before(self, lsn: int) -> int:
        """Drop the records removed at or before ``lsn``; returns how many were dropped."""
        with self.lock:
            kept = [r for r in self._records if r.removed > lsn]
            dropped = len(self._records) - len(kept)
            if dropped:
                self._records = kept
                self._keys = [r.key for r in kept]
            return dropped

    # --- reading --------------------------------------------------------------------------------------------

    def _ranges(self, i: int, j: int, lo: bytes | None, hi: bytes | None) -> tuple[int, int, int, int]:
        ta, tb = bisect_left(self._tomb_positions, i), bisect_left(self._tomb_positions, j)
        da = 0 if lo is None else bisect_left(self._keys, lo)
        db = len(self._keys) if hi is None else bisect_left(self._keys, hi)
        return ta, tb, da, db

    def view(
        self, i: int, j: int, lo: bytes | None, hi: bytes | None, snapshot: int
    ) -> tuple[list[int], list[bytes], list[str]]:
        """For base positions ``[i, j)`` and keys ``[lo, hi)`` at ``snapshot``: the hidden base positions,
        and the visible added keys with their document IDs (all ascending)."""
        with self.lock:
            ta, tb, da, db = self._ranges(i, j, lo, hi)
            if snapshot >= self.newest:
                hidden = self._tomb_positions[ta:tb]
            else:
                lsns = self._tomb_lsns[ta:tb]
                hidden = [p for p, t in zip(self._tomb_positions[ta:tb], lsns, strict=True) if t <= snapshot]
            records = self._records[da:db]
        visible = [r for r in records if r.added <= snapshot < r.removed]
        return hidden, [r.key for r in visible], [r.doc_id for r in visible]

    def count(self, i: int, j: int, lo: bytes | None, hi: bytes | None, snapshot: int) -> int:
        """Visible added keys in ``[lo, hi)`` minus hidden base positions in ``[i, j)``, at ``snapshot``.

        At or after the newest change this is four bisections; at an older snapshot the changes in the range
        are filtered one by one (only the delta, never the base).
        """
        with self.lock:
            ta, tb = bisect_left(self._tomb_positions, i), bisect_left(self._tomb_positions, j)
            if snapshot >= self.newest:
                la = 0 if lo is None else bisect_left(self._live_keys, lo)
                lb = len(self._live_keys) if hi is None else bisect_left(self._live_keys, hi)
                return max(0, lb - la) - max(0, tb - ta)
            hidden = sum(1 for t in self._tomb_lsns[ta:tb] if t <= snapshot)
            _, _, da, db = self._ranges(i, j, lo, hi)
            records = self._records[da:db]
        return sum(1 for r in records if r.added <= snapshot < r.removed) - hidden

    def export(self) -> Exported:
        """A consistent copy of the whole delta (for a merge running beside the writer)."""
        with self.lock:
            records = [(r.key, r.added, r.removed, r.doc_id) for r in self._records]
            return Exported(records, list(self._tomb_positions), list(self._tomb_lsns), self.newest)

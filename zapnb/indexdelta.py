"""The delta of an index: what changed since its base, with the LSN of every change, for snapshot reads.

Responsibilities:

- hold the keys added since the base, each as a :class:`Record` ``(key, added, removed, doc_id)``, sorted by
  key, and the *tombstones*: base positions whose key was removed, with the LSN that removed it;
- hold the *runs*: keys a bulk insert added all at once (:class:`Run`), each run sorted and immutable like a
  base, with its rows in the table base and tombstones of its own;
- apply one commit's removals and additions, or one run, after checking them against the base, the records
  and the runs (all or nothing);
- hand a reader the part of a range it needs at a snapshot: the hidden base positions and the visible added
  keys, the visible part of each run, or just their counts;
- drop history no snapshot can need, and export a consistent copy for a merge.

A key is visible at snapshot ``S`` when ``added <= S < removed`` (``removed`` is :data:`NEVER` while the key
is live); a base or run key is hidden at ``S`` when its tombstone's LSN is ``<= S``, and a run's keys are
visible only from the run's LSN on. A base or run key is removed at most once; adding it again later is a
new record. A key can have several records over time, never two visible at one snapshot.

Concurrency: one writer thread calls :meth:`Delta.apply`, :meth:`Delta.add_run` and
:meth:`Delta.forget_before`; readers call :meth:`Delta.view`, :meth:`Delta.runs` and :meth:`Delta.count`. All
of them hold :attr:`Delta.lock` for a few microseconds: a reader copies (slices) the part of the sorted lists
it needs and then works on its copy, so it never sees a list change under it. The only field the writer
changes in place is a record's ``removed``, and only from ``NEVER`` to an LSN newer than every snapshot a
reader may hold (commits are applied in LSN order, and readers read at or below the last LSN applied), so a
reader decides the same either way.

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
>>> run_keys, _ = sort_keys([b"e", b"d"])
>>> delta.add_run(Run(run_keys, np.array([7, 8]), lsn=6), base)
>>> [(i, j, hidden) for _run, i, j, hidden in delta.runs(None, b"e", 6)], delta.count(0, 2, None, None, 6)
([(0, 1, [])], 2)
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from zapnb.errors import IndexConsistencyError
from zapnb.indexbase import SortedKeys
from zapnb.keymerge import positions_of

__all__ = ["NEVER", "Delta", "Exported", "ExportedRun", "Record", "Run", "Tombstones", "inconsistency"]

NEVER: Final = (1 << 63) - 1
"""The ``removed`` LSN of a key that is still live."""

_BULK: Final = 32  # a commit with more changes than this rebuilds the sorted lists instead of inserting

Int64s = npt.NDArray[np.int64]


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


class Tombstones:
    """Positions of a sorted key set (a base or a run) whose key was removed, with the LSN that removed it.

    Kept both as a map and as sorted lists, so that the positions hidden in a range are two bisections away.
    """

    __slots__ = ("_lsn_of", "lsns", "positions")

    def __init__(self, items: Iterable[tuple[int, int]] = ()) -> None:
        self._lsn_of = dict(items)
        self.positions = sorted(self._lsn_of)
        self.lsns = [self._lsn_of[p] for p in self.positions]

    def __len__(self) -> int:
        return len(self._lsn_of)

    def __contains__(self, position: int) -> bool:
        return position in self._lsn_of

    def add(self, lsn: int, positions: Sequence[int]) -> None:
        """Hide ``positions`` from ``lsn`` on."""
        for position in positions:
            self._lsn_of[position] = lsn
        if len(positions) > _BULK:
            self.positions = sorted(self._lsn_of)
            self.lsns = [self._lsn_of[p] for p in self.positions]
            return
        for position in positions:
            at = bisect_left(self.positions, position)
            self.positions.insert(at, position)
            self.lsns.insert(at, lsn)

    def hidden(self, i: int, j: int, snapshot: int, newest: int) -> list[int]:
        """The positions in ``[i, j)`` hidden at ``snapshot`` (ascending); ``newest`` is the newest LSN."""
        ta, tb = bisect_left(self.positions, i), bisect_left(self.positions, j)
        if snapshot >= newest:
            return self.positions[ta:tb]
        lsns = self.lsns[ta:tb]
        return [p for p, t in zip(self.positions[ta:tb], lsns, strict=True) if t <= snapshot]

    def hidden_count(self, i: int, j: int, snapshot: int, newest: int) -> int:
        """How many positions in ``[i, j)`` are hidden at ``snapshot``."""
        ta, tb = bisect_left(self.positions, i), bisect_left(self.positions, j)
        if snapshot >= newest:
            return max(0, tb - ta)
        return sum(1 for t in self.lsns[ta:tb] if t <= snapshot)

    def items(self) -> list[tuple[int, int]]:
        """``(position, lsn)`` pairs, by position."""
        return list(zip(self.positions, self.lsns, strict=True))


class Run:
    """Keys one commit added all at once, sorted, each with its row in the table base; visible from ``lsn``.

    The keys and rows never change (like a base); only :attr:`tombstones` grow as keys are removed.
    """

    __slots__ = ("keys", "lsn", "rows", "tombstones")

    def __init__(
        self, keys: SortedKeys, rows: Int64s, lsn: int, tombstones: Iterable[tuple[int, int]] = ()
    ) -> None:
        self.keys = keys
        self.rows = rows
        self.lsn = lsn
        self.tombstones = Tombstones(tombstones)

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"<Run of {len(self)} keys at LSN {self.lsn}, {len(self.tombstones)} removed>"

    def live_positions(self, keys: Sequence[bytes]) -> list[int]:
        """The position of each key among this run's live keys, or -1."""
        found = self.keys.find_many(keys)
        return [p if p >= 0 and p not in self.tombstones else -1 for p in found]


class ExportedRun(NamedTuple):
    """A consistent copy of a run: its keys and rows (shared, they never change), LSN and tombstones."""

    keys: SortedKeys
    rows: Int64s
    lsn: int
    tomb_positions: list[int]
    tomb_lsns: list[int]


class Exported(NamedTuple):
    """A consistent copy of a delta: records as ``(key, added, removed, doc_id)``, tombstones and runs."""

    records: list[tuple[bytes, int, int, str]]
    tomb_positions: list[int]
    tomb_lsns: list[int]
    newest: int
    runs: list[ExportedRun] = []  # noqa: RUF012 (a NamedTuple default, never mutated)


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
        runs: Iterable[Run] = (),
    ) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.newest = newest
        self._records = sorted(records, key=lambda r: (r.key, r.added))
        self._keys = [r.key for r in self._records]
        self._live = {r.key: r for r in self._records if r.removed == NEVER}
        self._live_keys = sorted(self._live)
        self._tomb = Tombstones(tombstones)
        self._runs = sorted(runs, key=attrgetter("lsn"))

    def __len__(self) -> int:
        """Records, tombstones and the keys of runs (with their tombstones)."""
        in_runs = sum(len(run) + len(run.tombstones) for run in self._runs)
        return len(self._records) + len(self._tomb) + in_runs

    # --- writing --------------------------------------------------------------------------------------------

    def apply(
        self,
        lsn: int,
        removed: Sequence[bytes],
        added: Sequence[tuple[bytes, str]],
        base: SortedKeys,
        *,
        search_added: bool = True,
    ) -> None:
        """Remove ``removed`` and then add ``added`` at ``lsn``, or raise and change nothing.

        Large commits (a bulk import, an index backfill) are checked against the base in one vectorised
        search and merged into the sorted lists in one pass.

        Without ``search_added`` an added key is checked against the keys added since the base only, not
        searched for in the base and the runs: for a caller that knows no live key can equal it. A table's
        secondary index is such a caller. Each of its keys ends with its document's ID, so an added key
        that the index already held would be a second key of one document, and the table has already
        checked that document against its ``by_id`` index (which is searched) and removed its old key.
        """
        with self.lock:
            self._check_order(lsn)
            if removed:
                from_delta, from_base, from_runs = self._plan_removals(lsn, removed, base)
            if added:
                self._check_additions(lsn, set(removed), added, base if search_added else None)
            if removed:
                self._remove(lsn, from_delta, from_base, from_runs)
            if added:
                self._add(lsn, added)
            self.newest = lsn

    def add_run(self, run: Run, base: SortedKeys) -> None:
        """Add a run of keys at ``run.lsn``, none of which the index holds, or raise and change nothing."""
        with self.lock:
            self._check_order(run.lsn)
            self._check_run(run, base)
            if len(run):
                self._runs = [*self._runs, run]
            self.newest = run.lsn

    def _check_order(self, lsn: int) -> None:
        if lsn < self.newest:
            raise inconsistency(self.name, f"a commit at LSN {lsn} after one at {self.newest}", lsn, None)

    def _plan_removals(
        self, lsn: int, removed: Sequence[bytes], base: SortedKeys
    ) -> tuple[list[bytes], list[int], list[tuple[Run, list[int]]]]:
        if len(set(removed)) != len(removed):
            key = next(k for k in removed if removed.count(k) > 1)
            raise inconsistency(self.name, "removing the same key twice in one commit", lsn, key)
        from_delta: list[bytes] = []
        others: list[bytes] = []
        for key in removed:
            (from_delta if key in self._live else others).append(key)
        from_base: list[int] = []
        missing: list[bytes] = []
        for key, position in zip(others, base.find_many(others), strict=True):
            if position >= 0 and position not in self._tomb:
                from_base.append(position)
            else:
                missing.append(key)
        from_runs: list[tuple[Run, list[int]]] = []
        for run in self._runs:
            if not missing:
                break
            found = run.live_positions(missing)
            from_runs.append((run, [p for p in found if p >= 0]))
            missing = [key for key, p in zip(missing, found, strict=True) if p < 0]
        if missing:
            raise inconsistency(self.name, "removing a key the index does not hold", lsn, missing[0])
        return from_delta, from_base, from_runs

    def _check_additions(
        self, lsn: int, removed: set[bytes], added: Sequence[tuple[bytes, str]], base: SortedKeys | None
    ) -> None:
        keys = [key for key, _doc_id in added]
        if len(set(keys)) != len(keys):
            key = next(k for k in keys if keys.count(k) > 1)
            raise inconsistency(self.name, "adding the same key twice in one commit", lsn, key)
        for key in keys:
            if key in self._live and key not in removed:
                raise inconsistency(self.name, "adding a key the index already holds", lsn, key)
        if base is None:
            return
        fresh = [key for key in keys if key not in removed and key not in self._live]
        for key, position in zip(fresh, base.find_many(fresh), strict=True):
            if position >= 0 and position not in self._tomb:
                raise inconsistency(self.name, "adding a key the index already holds", lsn, key)
        for run in self._runs if fresh else ():
            for key, position in zip(fresh, run.live_positions(fresh), strict=True):
                if position >= 0:
                    raise inconsistency(self.name, "adding a key the index already holds", lsn, key)

    def _check_run(self, run: Run, base: SortedKeys) -> None:
        """Refuse a run with a key twice or a key the index holds (live in the base, a record or a run)."""
        holders: list[tuple[SortedKeys, Tombstones]] = [(base, self._tomb)]
        holders += [(other.keys, other.tombstones) for other in self._runs]
        for keys, tombstones in holders:
            found = positions_of(keys, run.keys)
            for at in np.flatnonzero(found >= 0).tolist():
                if int(found[at]) not in tombstones:
                    key = run.keys.keys(at, at + 1)[0]
                    raise inconsistency(self.name, "adding a key the index already holds", run.lsn, key)
        if self._live:
            live = list(self._live)
            for key, position in zip(live, run.keys.find_many(live), strict=True):
                if position >= 0:
                    raise inconsistency(self.name, "adding a key the index already holds", run.lsn, key)

    def _remove(
        self, lsn: int, from_delta: list[bytes], from_base: list[int], from_runs: list[tuple[Run, list[int]]]
    ) -> None:
        for key in from_delta:
            self._live.pop(key).removed = lsn
        if len(from_delta) > _BULK:
            gone = set(from_delta)
            self._live_keys = [key for key in self._live_keys if key not in gone]
        else:
            for key in from_delta:
                del self._live_keys[bisect_left(self._live_keys, key)]
        self._tomb.add(lsn, from_base)
        for run, positions in from_runs:
            run.tombstones.add(lsn, positions)

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

    def _ranges(self, lo: bytes | None, hi: bytes | None) -> tuple[int, int]:
        da = 0 if lo is None else bisect_left(self._keys, lo)
        db = len(self._keys) if hi is None else bisect_left(self._keys, hi)
        return da, db

    def view(
        self, i: int, j: int, lo: bytes | None, hi: bytes | None, snapshot: int
    ) -> tuple[list[int], list[bytes], list[str]]:
        """For base positions ``[i, j)`` and keys ``[lo, hi)`` at ``snapshot``: the hidden base positions,
        and the visible added keys with their document IDs (all ascending). Runs are in :meth:`runs`."""
        with self.lock:
            hidden = self._tomb.hidden(i, j, snapshot, self.newest)
            da, db = self._ranges(lo, hi)
            records = self._records[da:db]
        visible = [r for r in records if r.added <= snapshot < r.removed]
        return hidden, [r.key for r in visible], [r.doc_id for r in visible]

    def runs(
        self, lo: bytes | None, hi: bytes | None, snapshot: int
    ) -> list[tuple[Run, int, int, list[int]]]:
        """The runs visible at ``snapshot``, each with its positions ``[i, j)`` of keys in ``[lo, hi)`` and
        the positions among them hidden at ``snapshot``."""
        out = []
        with self.lock:
            for run in self._runs:
                if run.lsn <= snapshot:
                    i, j = _bounds(run.keys, lo, hi)
                    out.append((run, i, j, run.tombstones.hidden(i, j, snapshot, self.newest)))
        return out

    def run_row(self, key: bytes, snapshot: int) -> int:
        """The row of ``key`` in the newest run added at or before ``snapshot`` that has it (removed since
        or not), or -1."""
        with self.lock:
            runs = self._runs
        for run in reversed(runs):
            if run.lsn <= snapshot and (position := run.keys.find(key)) >= 0:
                return int(run.rows[position])
        return -1

    def count(self, i: int, j: int, lo: bytes | None, hi: bytes | None, snapshot: int) -> int:
        """Visible added keys in ``[lo, hi)`` minus hidden base positions in ``[i, j)``, at ``snapshot``,
        plus the visible keys of runs in ``[lo, hi)``.

        At or after the newest change this is a few bisections per run and four more; at an older snapshot
        the changes in the range are filtered one by one (only the delta, never the base or a run).
        """
        with self.lock:
            total = -self._tomb.hidden_count(i, j, snapshot, self.newest)
            for run in self._runs:
                if run.lsn <= snapshot:
                    ri, rj = _bounds(run.keys, lo, hi)
                    total += rj - ri - run.tombstones.hidden_count(ri, rj, snapshot, self.newest)
            if snapshot >= self.newest:
                la = 0 if lo is None else bisect_left(self._live_keys, lo)
                lb = len(self._live_keys) if hi is None else bisect_left(self._live_keys, hi)
                return total + max(0, lb - la)
            da, db = self._ranges(lo, hi)
            records = self._records[da:db]
        return total + sum(1 for r in records if r.added <= snapshot < r.removed)

    def export(self) -> Exported:
        """A consistent copy of the whole delta (for a merge running beside the writer)."""
        with self.lock:
            records = [(r.key, r.added, r.removed, r.doc_id) for r in self._records]
            runs = [
                ExportedRun(
                    run.keys, run.rows, run.lsn, list(run.tombstones.positions), list(run.tombstones.lsns)
                )
                for run in self._runs
            ]
            tomb = self._tomb
            return Exported(records, list(tomb.positions), list(tomb.lsns), self.newest, runs)


def _bounds(keys: SortedKeys, lo: bytes | None, hi: bytes | None) -> tuple[int, int]:
    i = 0 if lo is None else keys.bisect(lo)
    j = len(keys) if hi is None else keys.bisect(hi)
    return i, max(i, j)

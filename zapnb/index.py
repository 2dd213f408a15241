"""Indexes: a table's documents in the order of some fields, readable at any snapshot in microseconds.

Responsibilities:

- :class:`~zapnb.indexspec.IndexSpec` (:mod:`zapnb.indexspec`, re-exported here): what an index orders by,
  and the key of a document (:meth:`~zapnb.indexspec.IndexSpec.key_for`);
- :class:`IndexData`: one index's entries as snapshots see them: an immutable sorted *base* (the keys as of a
  checkpoint, with the row of each document in the table's base; :mod:`zapnb.indexbase`) plus a *delta* of
  the keys added and removed since, each with its LSN, and the *runs* of keys bulk inserts added, each sorted
  and with its documents' rows in the table base (:mod:`zapnb.indexdelta`); range scans and counts at a
  snapshot; the checkpoint's merge into a new base; saving and memory-mapping the base
  (:mod:`zapnb.indexfile`).

Keys: an index over fields ``[f1, ..., fk]`` orders documents by ``(f1, ..., fk, _creationTime, _id)``; its
key is ``encode_key([f1, ..., fk, _creationTime, _id])``, an absent field being ``MISSING``, and a dotted
path ``"a.b"`` reading ``doc["a"]["b"]`` (``MISSING`` if a step is absent or not an object). ``by_id`` keys
are ``encode_key([_id])`` and ``by_creation_time`` keys ``encode_key([_creationTime, _id])``. Keys end with
the ``_id``, so they are unique, and no key of an index is a prefix of another.

Concurrency contract: one writer thread calls :meth:`IndexData.apply` and :meth:`IndexData.apply_run`
(commits in LSN order; several calls may share one LSN) and :meth:`IndexData.forget_before`; any number of
reader threads call :meth:`IndexData.scan` and :meth:`IndexData.count` at snapshots from
:attr:`IndexData.base_lsn` up to the last LSN fully applied. A reader sees exactly the keys live at its
snapshot, however long it iterates and whatever the writer applies meanwhile: the base and the runs never
change, and the delta is versioned by LSN (a scan copies the part of the delta it needs when it starts).
:meth:`IndexData.merged` returns a *new* object and leaves this one as it was, so readers holding the old
object keep their view; it may run on another thread beside the writer, which then applies to the new object
every commit newer than its :attr:`IndexData.newest_lsn` before publishing it.

Examples
--------
>>> from zapnb.keys import encode_key, prefix_end
>>> spec = IndexSpec("by_author", ("author",))
>>> docs = [
...     {"_id": "id1", "_creationTime": 1.0, "author": "ann"},
...     {"_id": "id2", "_creationTime": 2.0, "author": "bob"},
... ]
>>> index = IndexData.build([spec.key_for(d) for d in docs], [0, 1], lsn=10)
>>> index.apply(11, [], [(spec.key_for({"_id": "id3", "_creationTime": 3.0, "author": "ann"}), "id3")])
>>> ann = encode_key(["ann"])
>>> [(e.position, e.doc_id) for e in index.scan(ann, prefix_end(ann), snapshot=11)]
[(0, None), (-1, 'id3')]
>>> index.count(ann, prefix_end(ann), snapshot=10), index.count(None, None, snapshot=11)
(1, 3)
>>> index.apply_run(12, [spec.key_for({"_id": "id4", "_creationTime": 4.0, "author": "ann"})], [2])
>>> [(e.position, e.doc_id) for e in index.scan(ann, prefix_end(ann), snapshot=12)]
[(0, None), (-1, 'id3'), (2, None)]
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from zapnb.indexbase import SortedKeys, first_duplicate, sort_keys
from zapnb.indexdelta import NEVER, Delta, Record, Run, inconsistency
from zapnb.indexfile import load_index, save_index
from zapnb.indexmerge import Layer, carried_tombstones, fold, renumbered
from zapnb.indexrows import Part, RangeRows, ordered_rows
from zapnb.indexspec import MAX_FIELDS, IndexKind, IndexSpec
from zapnb.indexwalk import Entry, backward, entry_key, forward
from zapnb.keymerge import merge_keys

if TYPE_CHECKING:
    from zapnb.indexbase import KeysInput

__all__ = ["MAX_FIELDS", "Entry", "IndexData", "IndexKind", "IndexSpec", "PositionsFor", "positions_from"]

Document = Mapping[str, Any]
Int64s = npt.NDArray[np.int64]


# --- entries and merges -------------------------------------------------------------------------------------


class PositionsFor(Protocol):
    """Where the documents of a merged index live in the *new* table base (see :meth:`IndexData.merged`).

    Called once per merge with ``old_positions``, the rows in the old table base of the base entries that
    stay (their documents, whatever version they have now), and ``doc_ids``, the documents of the entries
    added since the old base that join the new one, both in key order. Returns one new row per old position,
    then one per document ID (``len(old_positions) + len(doc_ids)`` rows, each ``>= 0``).
    """

    def __call__(self, old_positions: Int64s, doc_ids: Sequence[str], /) -> Int64s: ...


def positions_from(old_to_new: npt.ArrayLike, new_rows: Mapping[str, int]) -> PositionsFor:
    """A :class:`PositionsFor` from the two maps a checkpoint has at hand.

    Parameters
    ----------
    old_to_new:
        For each row of the old table base, the row of the same document in the new base (-1 if it was
        deleted).
    new_rows:
        The new row of each document written since the old base.

    Examples
    --------
    >>> import numpy as np
    >>> mapping = positions_from([1, -1, 0], {"id7": 2})
    >>> mapping(np.array([2, 0]), ["id7"]).tolist()
    [0, 1, 2]
    """
    table = np.asarray(old_to_new, dtype=np.int64)

    def positions(old_positions: Int64s, doc_ids: Sequence[str], /) -> Int64s:
        added = np.fromiter((new_rows.get(d, -1) for d in doc_ids), np.int64, len(doc_ids))
        rows: Int64s = np.concatenate([table[old_positions], added])
        return rows

    return positions


# --- the index ----------------------------------------------------------------------------------------------


class IndexData:
    """One index's entries, as every snapshot from :attr:`base_lsn` on sees them.

    Make one with :meth:`build`, :meth:`load` or :meth:`merged`. See the module docstring for the concurrency
    contract.

    Attributes
    ----------
    name:
        A name for messages (the file name for a loaded index).
    base_lsn:
        The LSN the base reflects: every commit up to it is in the base, every later one in the delta.
    """

    def __init__(
        self,
        keys: SortedKeys,
        positions: Int64s,
        base_lsn: int,
        *,
        delta: Delta | None = None,
        name: str = "",
    ) -> None:
        if len(keys) != len(positions):
            raise inconsistency(name, f"{len(keys)} keys with {len(positions)} positions", base_lsn, None)
        self.name = name
        self.base_lsn = base_lsn
        self._keys = keys
        self._rows = positions
        self._delta = delta if delta is not None else Delta(name, newest=base_lsn)

    @classmethod
    def build(cls, keys: KeysInput, positions: npt.ArrayLike, lsn: int, *, name: str = "") -> IndexData:
        """A new index whose base holds ``keys`` (in any order), ``positions[i]`` being the table-base row of
        the document of ``keys[i]``, as of ``lsn``.

        ``keys`` is a sequence of ``bytes`` or an Arrow binary array. A million 86-byte keys take about half a
        second of CPU to sort (in parallel runs, then merged).

        Raises
        ------
        IndexConsistencyError
            If two keys are equal, or there are not as many positions as keys.
        """
        rows = np.asarray(positions, dtype=np.int64)
        if rows.ndim != 1 or len(rows) != len(keys):
            raise inconsistency(name, f"{len(keys)} keys with {rows.size} positions", lsn, None)
        sorted_keys, order = sort_keys(keys)
        duplicate = first_duplicate(sorted_keys)
        if duplicate >= 0:
            key = sorted_keys.keys(duplicate, duplicate + 1)[0]
            raise inconsistency(name, "building from keys that hold a duplicate", lsn, key)
        return cls(sorted_keys, rows[order], lsn, name=name)

    @classmethod
    def load(
        cls, directory: str | Path, name: str, *, mmap: bool = True, verify: bool = False, label: str = ""
    ) -> IndexData:
        """Open an index saved by :meth:`save` (memory-mapped by default: well under a millisecond).

        ``verify=True`` also checksums the whole file (see :mod:`zapnb.indexfile`). ``label`` names the
        index in errors (``table.index``); the file's name by default.

        Raises
        ------
        CorruptionError
            If the file is missing or damaged.
        """
        keys, positions, base_lsn = load_index(Path(directory), name, mmap=mmap, verify=verify)
        return cls(keys, positions, base_lsn, name=label or name)

    def save(self, directory: str | Path, name: str) -> Path:
        """Write the base (the keys as of :attr:`base_lsn`) to ``directory``, atomically; returns the path.

        The delta is not written: the commits after :attr:`base_lsn` are in the commit log, and replaying them
        with :meth:`apply` after :meth:`load` restores it. Save the result of :meth:`merged` at a checkpoint.
        """
        return save_index(Path(directory), name, self._keys, self._rows, self.base_lsn)

    # --- facts ----------------------------------------------------------------------------------------------

    @property
    def newest_lsn(self) -> int:
        """The newest LSN applied (``base_lsn`` if none since the base)."""
        return max(self.base_lsn, self._delta.newest)

    @property
    def base_count(self) -> int:
        """The number of keys in the base (some may be removed since)."""
        return len(self._keys)

    @property
    def delta_count(self) -> int:
        """The number of changes held since the base (added keys, including removed ones, and tombstones)."""
        return len(self._delta)

    @property
    def nbytes(self) -> int:
        """The memory (or mapped file) the base takes."""
        return self._keys.nbytes + int(self._rows.nbytes)

    def __repr__(self) -> str:
        return (
            f"<IndexData {self.name or '(unnamed)'}: {self.base_count} keys at LSN {self.base_lsn} "
            f"({self._keys.layout}, width {self._keys.width}), {self.delta_count} changes since>"
        )

    # --- writing --------------------------------------------------------------------------------------------

    def apply(
        self,
        lsn: int,
        removed: Iterable[bytes],
        added: Iterable[tuple[bytes, str]],
        *,
        search_added: bool = True,
    ) -> None:
        """Apply one commit: remove the keys ``removed``, then add the ``(key, doc_id)`` pairs ``added``.

        An update that leaves a document's key unchanged is not passed. LSNs never go down (several calls may
        share one). All or nothing. Without ``search_added`` the added keys are looked for only among the
        keys added since the base, not in the base and the runs (see :meth:`Delta.apply`).

        Raises
        ------
        IndexConsistencyError
            If a removed key is not in the index, an added one already is, or ``lsn`` is older than a commit
            already applied (or not newer than the base).
        """
        if lsn <= self.base_lsn:
            raise inconsistency(
                self.name, f"a commit at LSN {lsn}, not after the base at {self.base_lsn}", lsn, None
            )
        self._delta.apply(lsn, list(removed), list(added), self._keys, search_added=search_added)

    def apply_run(self, lsn: int, keys: KeysInput | SortedKeys, positions: npt.ArrayLike) -> None:
        """Apply one commit's bulk insert: the new ``keys``, ``positions[i]`` being the table-base row of the
        document of ``keys[i]`` (rows that the table base gains with this commit).

        ``keys`` is in any order, or a :class:`~zapnb.indexbase.SortedKeys` already sorted (with
        ``positions`` in its order). The keys are kept as one sorted run, visible from ``lsn`` on, until
        :meth:`merged` folds them into a base. All or nothing.

        Raises
        ------
        IndexConsistencyError
            If a key is there twice or is already in the index, there are not as many positions as keys, or
            ``lsn`` is older than a commit already applied (or not newer than the base).
        """
        if lsn <= self.base_lsn:
            raise inconsistency(
                self.name, f"a commit at LSN {lsn}, not after the base at {self.base_lsn}", lsn, None
            )
        rows = np.asarray(positions, dtype=np.int64)
        if rows.ndim != 1 or len(rows) != len(keys):
            raise inconsistency(self.name, f"{len(keys)} keys with {rows.size} positions", lsn, None)
        if isinstance(keys, SortedKeys):
            sorted_keys = keys
        else:
            sorted_keys, order = sort_keys(keys)
            rows = rows[order]
        duplicate = first_duplicate(sorted_keys)
        if duplicate >= 0:
            key = sorted_keys.keys(duplicate, duplicate + 1)[0]
            raise inconsistency(self.name, "adding the same key twice in one commit", lsn, key)
        self._delta.add_run(Run(sorted_keys, rows, lsn), self._keys)

    def forget_before(self, lsn: int) -> int:
        """Drop the history of keys removed at or before ``lsn`` (no snapshot ``>= lsn`` needs it).

        Call it with the oldest snapshot any reader still holds. Returns how many records were dropped.
        """
        return self._delta.forget_before(lsn)

    # --- reading --------------------------------------------------------------------------------------------

    def _bounds(self, lo: bytes | None, hi: bytes | None, snapshot: int) -> tuple[int, int]:
        if snapshot < self.base_lsn:
            raise inconsistency(
                self.name,
                f"a read at snapshot {snapshot}, older than the base at {self.base_lsn}",
                snapshot,
                None,
            )
        i = 0 if lo is None else self._keys.bisect(lo)
        j = len(self._keys) if hi is None else self._keys.bisect(hi)
        return i, max(i, j)

    def scan(
        self, lo: bytes | None, hi: bytes | None, *, snapshot: int, reverse: bool = False
    ) -> Iterator[Entry]:
        """The entries with ``lo <= key < hi`` (``None``: unbounded) visible at ``snapshot``, in key order.

        Lazy: taking the first ``n`` costs two searches of the base, the changes in the range, and ``n``.

        Raises
        ------
        IndexConsistencyError
            If ``snapshot`` is older than :attr:`base_lsn` (read an older object for that).
        """
        i, j = self._bounds(lo, hi, snapshot)
        if lo is not None and hi is not None and hi <= lo:
            return iter(())
        hidden, keys, ids = self._delta.view(i, j, lo, hi, snapshot)
        walk = backward if reverse else forward
        entries = walk(self._keys, self._rows, i, j, hidden, keys, ids)
        runs = [
            walk(run.keys, run.rows, ri, rj, run_hidden, [], [])
            for run, ri, rj, run_hidden in self._delta.runs(lo, hi, snapshot)
            if ri < rj
        ]
        return heapq.merge(entries, *runs, key=entry_key, reverse=reverse) if runs else entries

    def base_prefix(
        self, lo: bytes | None, hi: bytes | None, *, snapshot: int, limit: int, reverse: bool = False
    ) -> tuple[Int64s, bytes | None] | None:
        """The first ``limit`` entries of :meth:`scan` as table-base rows, with the key of the last one
        (``None`` if there is none), when the index has not changed since its base; else ``None``.

        Two searches and a slice: no entry is built one by one.

        Raises
        ------
        IndexConsistencyError
            If ``snapshot`` is older than :attr:`base_lsn`.
        """
        if len(self._delta):
            return None
        i, j = self._bounds(lo, hi, snapshot)
        if lo is not None and hi is not None and hi <= lo:
            j = i
        n = min(limit, j - i)
        if n == 0:
            return self._rows[i:i], None
        if reverse:
            return self._rows[j - n : j][::-1], self._keys.keys(j - n, j - n + 1)[0]
        return self._rows[i : i + n], self._keys.keys(i + n - 1, i + n)[0]

    def range_rows(self, lo: bytes | None, hi: bytes | None, *, snapshot: int) -> RangeRows:
        """The entries :meth:`scan` would yield, as arrays (:mod:`zapnb.indexrows`): vectorised, for long
        ranges.

        Raises
        ------
        IndexConsistencyError
            If ``snapshot`` is older than :attr:`base_lsn`.
        """
        i, j = self._bounds(lo, hi, snapshot)
        if lo is not None and hi is not None and hi <= lo:
            return ordered_rows([], [], [])
        hidden, keys, ids = self._delta.view(i, j, lo, hi, snapshot)
        parts = [Part(self._keys.window(i, j), self._rows[i:j], [h - i for h in hidden])]
        for run, ri, rj, run_hidden in self._delta.runs(lo, hi, snapshot):
            if ri < rj:
                parts.append(Part(run.keys.window(ri, rj), run.rows[ri:rj], [h - ri for h in run_hidden]))
        return ordered_rows(parts, keys, ids)

    def row_of(self, key: bytes, snapshot: int | None = None) -> int:
        """The table-base row of the document whose key is ``key``, in the base or in a run added at or
        before ``snapshot`` (any, without one), whether or not the key was removed since; -1 if none."""
        position = self._keys.find(key)
        if position >= 0:
            return int(self._rows[position])
        return self._delta.run_row(key, NEVER if snapshot is None else snapshot)

    def count(self, lo: bytes | None, hi: bytes | None, *, snapshot: int) -> int:
        """How many entries :meth:`scan` would yield, without visiting the base's entries."""
        i, j = self._bounds(lo, hi, snapshot)
        if lo is not None and hi is not None and hi <= lo:
            return 0
        return j - i + self._delta.count(i, j, lo, hi, snapshot)

    # --- merging --------------------------------------------------------------------------------------------

    def merged(self, upto_lsn: int, positions_for: PositionsFor) -> IndexData:
        """The checkpoint step: a new index whose base holds every key visible at ``upto_lsn``.

        The new base's positions are rows of the *new* table base, as ``positions_for`` says (see
        :class:`PositionsFor`; :func:`positions_from` makes one from an old-row-to-new-row array and a map of
        the documents written since): the keys of runs added up to ``upto_lsn`` count as base keys, their
        rows as old rows. Changes after ``upto_lsn`` stay as the new delta; a run added after it keeps its
        keys, and its rows are renumbered to follow the new base's, in their old order (as if its documents
        were appended to the new table base in that order). This object is not changed. Vectorised: linear in
        the base and the runs, no re-sort.

        Raises
        ------
        IndexConsistencyError
            If ``upto_lsn`` is older than the base, or ``positions_for`` gives no row for a live document.
        """
        if upto_lsn < self.base_lsn:
            raise inconsistency(self.name, f"a merge at LSN {upto_lsn}, older than the base", upto_lsn, None)
        exported = self._delta.export()
        old = fold(
            Layer(self._keys, self._rows, exported.tomb_positions, exported.tomb_lsns),
            [run for run in exported.runs if run.lsn <= upto_lsn],
        )
        gone = np.array([p for p, t in zip(old.tomb_positions, old.tomb_lsns, strict=True) if t <= upto_lsn])
        gone = gone.astype(np.int64)
        joining = [r for r in exported.records if r[1] <= upto_lsn < r[2]]
        keys, dest_kept, dest_new = merge_keys(old.keys, gone, [r[0] for r in joining])
        duplicate = first_duplicate(keys, near=dest_new)
        if duplicate >= 0:
            key = keys.keys(duplicate, duplicate + 1)[0]
            raise inconsistency(self.name, "a merge that would hold a key twice", upto_lsn, key)
        kept = np.delete(old.rows, gone)
        rows = self._merged_rows(upto_lsn, kept, [r[3] for r in joining], positions_for, dest_kept, dest_new)
        tombstones = carried_tombstones(old, upto_lsn, gone, dest_kept, dest_new, joining)
        pending = [Record(k, a, r, d) for k, a, r, d in exported.records if a > upto_lsn]
        runs = renumbered([run for run in exported.runs if run.lsn > upto_lsn], len(keys))
        delta = Delta(self.name, pending, tombstones, newest=max(exported.newest, upto_lsn), runs=runs)
        return IndexData(keys, rows, upto_lsn, delta=delta, name=self.name)

    def _merged_rows(
        self,
        upto_lsn: int,
        kept: Int64s,
        doc_ids: list[str],
        positions_for: PositionsFor,
        dest_kept: Int64s,
        dest_new: Int64s,
    ) -> Int64s:
        mapped = np.asarray(positions_for(kept, doc_ids), dtype=np.int64)
        if mapped.shape != (len(kept) + len(doc_ids),) or (len(mapped) and int(mapped.min()) < 0):
            raise inconsistency(
                self.name,
                "positions_for gave no new row (or the wrong number of rows) for a live document",
                upto_lsn,
                None,
            )
        rows = np.empty(len(mapped), np.int64)
        rows[dest_kept] = mapped[: len(kept)]
        rows[dest_new] = mapped[len(kept) :]
        return rows

"""The parts of an index's checkpoint merge (:meth:`zapnb.index.IndexData.merged`) that bulk runs need.

Responsibilities:

- fold the runs a merge takes into the base, as base keys with their rows, and move their tombstones to the
  merged positions (:func:`fold`);
- the tombstones the new base carries for keys removed after the merge's LSN (:func:`carried_tombstones`);
- the runs added after the merge's LSN, their rows renumbered to follow the new base's (:func:`renumbered`).

Examples
--------
>>> from zapnb.indexbase import sort_keys
>>> base, _ = sort_keys([b"a", b"c"])
>>> run_keys, _ = sort_keys([b"b"])
>>> folded = fold(Layer(base, np.array([0, 1]), [1], [5]), [ExportedRun(run_keys, np.array([2]), 4, [], [])])
>>> folded.keys.keys(0, 3), folded.rows.tolist(), folded.tomb_positions
([b'a', b'b', b'c'], [0, 2, 1], [2])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from zapnb.indexbase import SortedKeys
from zapnb.indexdelta import NEVER, ExportedRun, Run
from zapnb.keymerge import merge_sorted

__all__ = ["Layer", "carried_tombstones", "fold", "renumbered"]

Int64s = npt.NDArray[np.int64]


class Layer(NamedTuple):
    """Sorted keys with their rows and tombstones: a base, or a base with runs folded in."""

    keys: SortedKeys
    rows: Int64s
    tomb_positions: list[int]
    tomb_lsns: list[int]


def fold(base: Layer, runs: list[ExportedRun]) -> Layer:
    """The base with ``runs`` merged in as base keys, their tombstones moved to the merged positions."""
    if not runs:
        return base
    keys, rows = base.keys, base.rows
    positions = np.array(base.tomb_positions, np.int64)
    lsns = np.array(base.tomb_lsns, np.int64)
    for run in runs:
        keys, rows, to_old, to_run = merge_sorted(keys, rows, run.keys, run.rows)
        positions = np.concatenate([to_old[positions], to_run[np.array(run.tomb_positions, np.int64)]])
        lsns = np.concatenate([lsns, np.array(run.tomb_lsns, np.int64)])
    order = np.argsort(positions, kind="stable")
    return Layer(keys, rows, positions[order].tolist(), lsns[order].tolist())


def carried_tombstones(
    old: Layer,
    upto_lsn: int,
    gone: Int64s,
    dest_kept: Int64s,
    dest_new: Int64s,
    joining: list[tuple[bytes, int, int, str]],
) -> list[tuple[int, int]]:
    """Keys in the new base removed after ``upto_lsn``: tombstones at their new positions."""
    later = [(p, t) for p, t in zip(old.tomb_positions, old.tomb_lsns, strict=True) if t > upto_lsn]
    positions = np.array([p for p, _ in later], np.int64)
    moved = dest_kept[positions - gone.searchsorted(positions)].tolist() if len(later) else []
    carried = list(zip(moved, [t for _, t in later], strict=True))
    carried += [(int(dest_new[k]), r[2]) for k, r in enumerate(joining) if r[2] != NEVER]
    return carried


def renumbered(runs: list[ExportedRun], first_row: int) -> list[Run]:
    """``runs`` with their rows renumbered from ``first_row`` on, keeping the order of their old rows."""
    if not runs:
        return []
    ordered = np.unique(np.concatenate([run.rows for run in runs]))
    return [
        Run(
            run.keys,
            first_row + ordered.searchsorted(run.rows),
            run.lsn,
            zip(run.tomb_positions, run.tomb_lsns, strict=True),
        )
        for run in runs
    ]

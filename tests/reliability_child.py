"""The program the crash tests run in a child process: commit transactions, acknowledge each one, checkpoint.

Every transaction that commits is acknowledged by appending a line to a side file and fsyncing it, after its
commit returned; the parent kills the child at a random moment or at a named kill point and then checks the
database against the side file (see ``reliability_check.py``).

Transactions (each numbered ``run:i``, in commit order):

- ``t:run:i``: one to five writes to ``docs`` (inserts, patches, deletes) plus a ``ledger`` document naming
  them, committed together through ``db.transaction()``;
- ``s:run:i``: one ``db.insert`` into ``docs`` whose document carries its own transaction ID;
- ``x:run:i``: writes discarded by an exception inside ``db.transaction()``: never committed.

Side-file lines are ``<transaction> <sha256 of its writes> <document ID or ->``. Run it as a script with a
:class:`Plan` as JSON to start from a fresh interpreter (``python tests/reliability_child.py '{...}'``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import sys
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass
from typing import Any

import zapnb
from zapnb import faults, v
from zapnb.engine import Engine

SCHEMA = zapnb.define_schema(
    {
        "docs": zapnb.define_table({"k": v.number(), "tx": v.string(), "pad": v.string()}).index(
            "by_k", ["k"]
        ),
        "ledger": zapnb.define_table(
            {"tx": v.string(), "run": v.int64(), "i": v.int64(), "writes": v.any()}
        ).index("by_tx", ["tx"]),
    }
)

# Where the child is, for the parent to aim a kill and to tell afterwards where it landed (a shared array:
# [phase, transactions acknowledged, checkpoints finished]).
STARTING, OPENING, WRITING, CHECKPOINTING = 0, 1, 2, 3
PHASES = {STARTING: "starting up", OPENING: "opening", WRITING: "writing", CHECKPOINTING: "checkpointing"}

Fields = dict[str, Any]
Writes = list[list[Any]]  # [[document ID, its user fields after the write, or None once deleted], ...]


@dataclass(frozen=True)
class Plan:
    """What one child run does.

    Attributes
    ----------
    data, acked:
        The data directory and the side file of acknowledgments.
    run:
        This run's number (runs follow each other; transaction IDs are ``kind:run:i``).
    count:
        How many transactions to attempt, or -1 to go on until killed.
    checkpoint_every:
        Checkpoint after this many transactions.
    segment_size:
        The commit log's segment size (small ones make rollovers and log truncation frequent).
    kill_at:
        A kill point to arm (``ZAPNB_KILL_AT``), or ``None``.
    """

    data: str
    acked: str
    run: int
    count: int = -1
    checkpoint_every: int = 20
    segment_size: int = 16 * 1024
    kill_at: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def checksum(writes: Writes) -> str:
    """The checksum of a transaction's writes, as the side file records it."""
    return hashlib.sha256(json.dumps(writes, sort_keys=True).encode()).hexdigest()


def run(plan: Plan, status: MutableSequence[int] | None = None) -> None:
    """Run ``plan`` (the child's whole life); ``status`` is the shared array the parent watches."""
    if plan.kill_at is not None:
        os.environ[faults.ENV_VAR] = plan.kill_at
    faults.reload()
    mark = _marker(status)
    mark(OPENING)
    db = zapnb.Database(Engine.open(plan.data, segment_size=plan.segment_size))
    mark(WRITING)
    if db.schema is None:
        db.deploy(SCHEMA, progress=False)
    rng = random.Random(plan.run)
    live = [str(doc["_id"]) for doc in documents(db, "docs")]
    side = os.open(plan.acked, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    i = 0
    while plan.count < 0 or i < plan.count:
        line = one_transaction(db, rng, live, plan.run, i)
        if line is not None:
            os.write(side, line.encode())
            os.fsync(side)
            if status is not None:
                status[1] += 1
        i += 1
        if i % plan.checkpoint_every == 0:
            mark(CHECKPOINTING)
            db._engine.checkpoint()
            mark(WRITING)
            if status is not None:
                status[2] += 1
    os.close(side)
    db.close()


def documents(db: zapnb.Database, table: str) -> list[Fields]:
    """Every document of ``table`` at the newest snapshot."""
    snapshot = db._engine.snapshot()
    state = snapshot.tables.get(table)
    return [] if state is None else [dict(doc) for doc in state.documents(snapshot.lsn)]


def _marker(status: MutableSequence[int] | None) -> Callable[[int], None]:
    def mark(phase: int) -> None:
        if status is not None:
            status[0] = phase

    return mark


class _AbandonError(Exception):
    """Raised inside a transaction to discard its writes."""


def one_transaction(db: zapnb.Database, rng: random.Random, live: list[str], run_: int, i: int) -> str | None:
    """Commit (or discard) one transaction; return its side-file line, ``None`` if it was discarded."""
    roll = rng.random()
    if roll < 0.15:
        tx_id = f"s:{run_}:{i}"
        fields = _fields(rng, tx_id)
        doc_id = str(db.insert("docs", fields))
        live.append(doc_id)
        return f"{tx_id} {checksum([[doc_id, fields]])} {doc_id}\n"
    discard = roll < 0.2
    tx_id = f"{'x' if discard else 't'}:{run_}:{i}"
    writes: Writes = []
    try:
        with db.transaction() as tx:
            touched: set[str] = set()
            for _ in range(rng.randint(1, 5)):
                writes.append(_one_write(tx, rng, live, touched, tx_id))
            tx.insert("ledger", {"tx": tx_id, "run": run_, "i": i, "writes": writes})
            if discard:
                raise _AbandonError
    except _AbandonError:
        return None
    for doc_id, fields in writes:
        if fields is None:
            live.remove(doc_id)
        elif doc_id not in live:
            live.append(doc_id)
    return f"{tx_id} {checksum(writes)} -\n"


def _one_write(tx: Any, rng: random.Random, live: list[str], touched: set[str], tx_id: str) -> list[Any]:
    candidates = [doc_id for doc_id in live[-400:] if doc_id not in touched] if live else []
    roll = rng.random()
    fields = _fields(rng, tx_id)
    if not candidates or roll < (0.3 if len(live) > 1500 else 0.5):
        doc_id = str(tx.insert("docs", fields))
    elif roll < 0.8:
        doc_id = rng.choice(candidates)
        tx.patch(doc_id, fields)
    else:
        doc_id = rng.choice(candidates)
        tx.delete(doc_id)
        touched.add(doc_id)
        return [doc_id, None]
    touched.add(doc_id)
    return [doc_id, fields]


def _fields(rng: random.Random, tx_id: str) -> Fields:
    return {"k": rng.random(), "tx": tx_id, "pad": "p" * rng.randint(0, 300)}


if __name__ == "__main__":
    run(Plan(**json.loads(sys.argv[1])))

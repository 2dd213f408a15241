"""Checking a database that ``reliability_child.py`` wrote, after its writer was killed.

:func:`check` opens the data directory (recovering it), reads every document and checks, against the side
file of acknowledgments and against what an earlier check saw:

- every acknowledged transaction is present, with the checksum it was acknowledged with;
- none is partial: the documents are exactly what replaying the committed ledgers in order gives (plus the
  single inserts no ledger touched), so a transaction's writes are there all together or not at all;
- nothing was never written: no discarded transaction's writes, no committed but unacknowledged transaction
  except the last one of a run (the writer died between its commit and its acknowledgment);
- nothing seen earlier disappears, and the indexes hold exactly the documents.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability_child import Fields, Writes, checksum, documents

import zapnb

SYSTEM = ("_id", "_creationTime")


@dataclass
class Seen:
    """What a check found: the committed ledger transactions, the single inserts standing, counts."""

    committed: set[str] = field(default_factory=set)
    singles: set[str] = field(default_factory=set)
    acknowledged: int = 0
    documents: int = 0


def acknowledgments(acked: Path) -> dict[str, tuple[str, str]]:
    """The side file: transaction -> (checksum, document ID); a last line without its newline is no ack."""
    lines = acked.read_text().split("\n")[:-1] if acked.exists() else []
    out = {}
    for line in lines:
        tx_id, digest, doc_id = line.split()
        out[tx_id] = (digest, doc_id)
    return out


def check(data: Path, acked: Path, before: Seen | None = None) -> Seen:
    """Open ``data`` and check it (see the module docstring); return what was seen."""
    db = zapnb.connect(data)
    try:
        raw_docs, raw_ledgers = documents(db, "docs"), documents(db, "ledger")
        _check_index(db, "docs", "by_k", "k", raw_docs)
        _check_index(db, "ledger", "by_tx", "tx", raw_ledgers)
    finally:
        db._engine._writes_since_checkpoint = 0  # only read here: closing must not checkpoint for the writer
        db.close()
    docs = {str(d["_id"]): _user(d) for d in raw_docs}
    ledgers = {str(d["tx"]): d for d in raw_ledgers}
    assert len(ledgers) == len(raw_ledgers), "a transaction was applied twice"
    acks = acknowledgments(acked)
    expected, touched = _replay(ledgers)
    singles = {doc_id for doc_id in docs if doc_id not in touched}
    for doc_id in singles:
        assert str(docs[doc_id]["tx"]).startswith("s:"), f"{doc_id} was written by no committed transaction"
    for doc_id, fields in expected.items():
        assert docs.get(doc_id) == fields, (
            f"{doc_id} is {docs.get(doc_id)}, its last committed write {fields}"
        )
    assert set(docs) == set(expected) | singles
    _check_acknowledged(acks, docs, ledgers, touched)
    _check_unacknowledged(set(ledgers) | {str(docs[d]["tx"]) for d in singles}, acks)
    if before is not None:
        lost = before.committed - set(ledgers)
        assert not lost, f"committed transactions seen earlier disappeared: {sorted(lost)[:5]}"
        vanished = before.singles - singles - touched
        assert not vanished, f"documents seen earlier disappeared: {sorted(vanished)[:5]}"
    return Seen(set(ledgers), singles, len(acks), len(docs))


def _user(doc: Fields) -> Fields:
    return {k: v for k, v in doc.items() if k not in SYSTEM}


def _replay(ledgers: dict[str, Fields]) -> tuple[dict[str, Fields], set[str]]:
    """The documents the committed ledgers leave, applied in commit order; and every ID they touched."""
    state: dict[str, Fields | None] = {}
    for ledger in sorted(ledgers.values(), key=lambda d: (d["run"], d["i"])):
        assert not str(ledger["tx"]).startswith("x:"), f"discarded transaction {ledger['tx']} was committed"
        writes: Writes = ledger["writes"]
        for doc_id, fields in writes:
            state[doc_id] = fields
    return {k: f for k, f in state.items() if f is not None}, set(state)


def _check_acknowledged(
    acks: dict[str, tuple[str, str]], docs: dict[str, Fields], ledgers: dict[str, Fields], touched: set[str]
) -> None:
    for tx_id, (digest, doc_id) in acks.items():
        if tx_id.startswith("t:"):
            assert tx_id in ledgers, f"acknowledged transaction {tx_id} is lost"
            assert checksum(ledgers[tx_id]["writes"]) == digest, f"acknowledged transaction {tx_id} changed"
        elif doc_id not in touched:  # a single insert a later transaction did not rewrite
            assert doc_id in docs, f"acknowledged insert {tx_id} ({doc_id}) is lost"
            assert checksum([[doc_id, docs[doc_id]]]) == digest, f"acknowledged insert {tx_id} changed"


def _check_unacknowledged(committed: set[str], acks: dict[str, Any]) -> None:
    """A committed transaction without its acknowledgment can only be the last of its run."""
    by_run: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    for tx_id in committed:
        _kind, run_text, i = tx_id.split(":")
        by_run[int(run_text)].append((int(i), tx_id in acks))
    for run, found in by_run.items():
        found.sort()
        unacked = [i for i, ok in found if not ok]
        assert unacked in ([], [found[-1][0]]), f"run {run}: committed {unacked} were never acknowledged"


def _check_index(db: zapnb.Database, table: str, index: str, name: str, expected: list[Fields]) -> None:
    """The index ``index`` holds exactly the table's documents, in order of ``name``."""
    snapshot = db._engine.snapshot()
    state = snapshot.tables.get(table)
    found = [] if state is None else [dict(d) for d in state.scan(index, None, None, snapshot.lsn)]
    keys = [d[name] for d in found]
    assert keys == sorted(keys), f"index {table}.{index} is out of order"
    by_id = sorted(found, key=lambda d: str(d["_id"]))
    assert by_id == sorted(expected, key=lambda d: str(d["_id"])), f"{table}.{index} disagrees with the table"
    assert state is None or state.count(snapshot.lsn) == len(expected)

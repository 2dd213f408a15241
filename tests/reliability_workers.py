"""Worker processes of the concurrency tests (started with multiprocessing's ``spawn`` method).

- :func:`bank`: transfers between accounts from several threads, and a reader checking that every snapshot
  holds the same total;
- :func:`counter`: increments of one counter, each a transaction retried on :class:`~zapnb.ConflictError`;
- :func:`doctor`: the write-skew case: go off call if the other doctor is on call, in lockstep with the other
  process so both read before either commits.

Each reports its counts on a queue; an assertion failing in a worker ends it with a non-zero exit code.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any, TypeVar

import zapnb

T = TypeVar("T")


def retried(db: zapnb.Database, body: Callable[[Any], T]) -> tuple[T, int]:
    """Run ``body(tx)`` in a transaction until it commits; return its result and the conflicts met."""
    conflicts = 0
    while True:
        try:
            with db.transaction() as tx:
                result = body(tx)
            return result, conflicts
        except zapnb.ConflictError:
            conflicts += 1


def field(tx: Any, doc_id: str, name: str) -> Any:
    """A field of a document that must exist, read in transaction ``tx``."""
    doc = tx.get(doc_id)
    assert doc is not None, f"{doc_id} is missing"
    return doc[name]


def total(tx: Any, accounts: list[str]) -> int:
    """The sum of the balances, read in one transaction."""
    return sum(int(field(tx, account, "balance")) for account in accounts)


def bank(
    data: str, accounts: list[str], expected: int, threads: int, transfers: int, out: Queue[Any]
) -> None:
    """Transfer between random accounts from ``threads`` threads while a reader checks every snapshot."""
    with zapnb.connect(data) as db:
        done = threading.Event()
        counts = {"transfers": 0, "conflicts": 0, "snapshots": 0}
        lock = threading.Lock()
        failures: list[BaseException] = []

        def transfer(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(transfers):
                pair = rng.sample(accounts, 2)

                def body(tx: Any, source: str = pair[0], target: str = pair[1]) -> None:
                    balance = int(field(tx, source, "balance"))
                    amount = rng.randint(0, min(balance, 50))
                    tx.patch(source, {"balance": balance - amount})
                    tx.patch(target, {"balance": int(field(tx, target, "balance")) + amount})

                _, conflicts = retried(db, body)
                with lock:
                    counts["transfers"] += 1
                    counts["conflicts"] += conflicts

        def read() -> None:
            try:
                while not done.is_set():
                    with db.transaction() as tx:
                        found = total(tx, accounts)
                    assert found == expected, f"a snapshot holds {found}, not {expected}"
                    counts["snapshots"] += 1
            except BaseException as err:
                failures.append(err)

        reader = threading.Thread(target=read)
        reader.start()
        workers = [threading.Thread(target=transfer, args=(hash((data, i)),)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        done.set()
        reader.join()
        if failures:
            raise failures[0]
        out.put(counts)


def counter(data: str, counter_id: str, increments: int, out: Queue[Any]) -> None:
    """Increment the counter ``increments`` times, each in a transaction retried on conflicts."""
    conflicts = 0
    with zapnb.connect(data) as db:
        for _ in range(increments):

            def body(tx: Any) -> None:
                tx.patch(counter_id, {"n": int(field(tx, counter_id, "n")) + 1})

            conflicts += retried(db, body)[1]
    out.put(conflicts)


def doctor(data: str, me: str, other: str, rounds: int, barrier: Barrier, out: Queue[Any]) -> None:
    """Each round: read both doctors, wait for the other process to have read too, go off call if the other
    is on call, and report whether the commit went through. The first doctor puts both back on call."""
    with zapnb.connect(data) as db:
        for round_ in range(rounds):
            barrier.wait()
            tx = db.transaction()
            on_call = [bool(field(tx, doctor_id, "on_call")) for doctor_id in (me, other)]
            if on_call == [True, True]:
                tx.patch(me, {"on_call": False})
            barrier.wait()  # both have read: snapshot isolation alone would now let both go off call
            try:
                tx.commit()
                outcome = "off call" if on_call == [True, True] else "stayed"
            except zapnb.ConflictError:
                outcome = "conflict"
            out.put((round_, me, outcome))
            barrier.wait()
            if me < other:
                with db.transaction() as reset:
                    on_both = [(d, bool(field(reset, d, "on_call"))) for d in (me, other)]
                    out.put((round_, "on call after", sum(on for _, on in on_both)))
                    for doctor_id, _ in on_both:
                        reset.patch(doctor_id, {"on_call": True})

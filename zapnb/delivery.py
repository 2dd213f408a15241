"""Handing watched results to callbacks, off the commit path.

Responsibilities: run callbacks on a few daemon threads of zapnb's own, never two at once for one
subscription and always with its newest result (a slow callback skips the results that came and went while it
ran, rather than falling behind), and report a failing callback without stopping anything: any exception,
``SystemExit`` and ``KeyboardInterrupt`` included, leaves the threads running.
"""

from __future__ import annotations

import queue
import sys
import threading
import traceback
from typing import Final, Protocol

__all__ = ["DELIVERY_THREADS", "Deliverable", "Deliverer", "report"]

#: Callbacks of different subscriptions run on up to this many threads at once.
DELIVERY_THREADS: Final = 4


class Deliverable(Protocol):
    """What the deliverer hands results for: a subscription."""

    def deliver(self) -> None:
        """Call the callback with the newest pending result, if any."""


class Deliverer:
    """A small pool of daemon threads that run callbacks, one at a time per subscription."""

    def __init__(self, threads: int = DELIVERY_THREADS) -> None:
        self._queue: queue.SimpleQueue[Deliverable | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy: set[int] = set()  # subscriptions queued or being delivered
        self._again: set[int] = set()  # ...that got a newer result meanwhile
        self._threads: list[threading.Thread] = []
        self._size = threads
        self._closed = False

    def submit(self, item: Deliverable) -> None:
        """Deliver ``item``'s pending result soon (at once if it is not being delivered already)."""
        with self._lock:
            if self._closed:
                return
            key = id(item)
            if key in self._busy:
                self._again.add(key)
                return
            self._busy.add(key)
            if len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, name="zapnb-callback", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._queue.put(item)

    def close(self) -> None:
        """Let the threads finish what they are delivering and stop."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            key = id(item)
            while True:
                try:
                    item.deliver()
                except BaseException as err:  # keep the thread (and the subscription's turn) alive
                    report("zapnb: handing a watched result to its callback failed", err)
                with self._lock:
                    if key not in self._again:
                        self._busy.discard(key)
                        break
                    self._again.discard(key)


def report(what: str, err: BaseException) -> None:
    """Print ``what`` and ``err``'s traceback on standard error (in a notebook: under the running cell)."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    print(f"{what}:\n{text}", file=sys.stderr, flush=True)

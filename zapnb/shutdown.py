"""Stopping zapnb's background work when the interpreter exits.

Responsibilities: remember every open engine (weakly) and, at exit, stop each one's watcher thread after the
checkpoint it may be writing, without starting another.

A process may end without ``db.close()`` (a script's last line, a notebook kernel shut down). Python then
finalizes while daemon threads still run: a watcher thread caught inside Arrow's C++ code writing a checkpoint
made the process abort (``terminate called without an active exception``, exit status 134). Nothing
acknowledged was lost (the commit log holds it), but a clean exit is the least a user expects. The handler
runs before Python finalizes, waits for a checkpoint in progress, and closes the log; it does not write a new
checkpoint (``close()`` does), so exiting stays quick and the next open replays the log.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Protocol

__all__ = ["Haltable", "track"]


class Haltable(Protocol):
    """What the exit handler stops."""

    def halt(self) -> None:
        """Stop background threads (after the work they are doing) and release files; idempotent."""


_OPEN: weakref.WeakSet[Haltable] = weakref.WeakSet()
_LOCK = threading.Lock()
_REGISTERED = False


def track(engine: Haltable) -> None:
    """Halt ``engine`` when the interpreter exits, if it is still open then."""
    global _REGISTERED
    with _LOCK:
        _OPEN.add(engine)
        if not _REGISTERED:
            atexit.register(_halt_all)
            _REGISTERED = True


def _halt_all() -> None:
    for engine in list(_OPEN):
        try:
            engine.halt()
        except Exception:  # exiting anyway: the log holds every acknowledged commit
            continue

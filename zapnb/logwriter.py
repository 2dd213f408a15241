"""The writers' critical section of the commit log: ``with log.writer() as w:``.

Responsibilities: hold the section open (the lock of :class:`~zapnb.log.CommitLog`, which also catches up with
what other processes appended), show the records appended before it, queue records, and on leaving write them
all or none; the log does the locking, writing and fsyncing (``CommitLog._enter_writer`` and
``CommitLog._exit_writer``).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from zapnb.errors import ClosedError
from zapnb.logformat import LogRecord, as_payload

if TYPE_CHECKING:
    from zapnb.log import CommitLog

__all__ = ["LogWriter"]


class LogWriter:
    """The writers' critical section of a :class:`CommitLog`, from :meth:`CommitLog.writer`.

    While it is open no other thread or process appends, so :meth:`new_records` and :meth:`read_since` see
    everything before the records that :meth:`append` queues. Queued records are written when the ``with``
    block ends, all of them or (if it raises) none, and are durable once it has exited (or, with
    ``log.writer(wait=False)``, once :meth:`CommitLog.wait_durable` returns).

    Attributes
    ----------
    base_lsn:
        The log's newest LSN (of any process) when the section began.
    """

    __slots__ = ("_cursor", "_log", "_open", "_pending", "_wait", "base_lsn")

    def __init__(self, log: CommitLog, wait: bool = True) -> None:
        self._log, self._wait, self._cursor, self.base_lsn = log, wait, 0, 0
        self._pending: list[bytes] = []
        self._open = False

    def __enter__(self) -> LogWriter:
        self._log._enter_writer(self)
        self._open = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        self._log._exit_writer(self, failed=kind is not None)

    @property
    def last_lsn(self) -> int:
        """The newest LSN including the records queued so far."""
        return self.base_lsn + len(self._pending)

    def new_records(self) -> list[LogRecord]:
        """The records appended since this process's previous writer section ended (or the log opened).

        Those are the records of other processes, plus any that this process appended with
        :meth:`CommitLog.append` meanwhile.
        """
        return self.read_since(self._cursor)

    def read_since(self, lsn: int) -> list[LogRecord]:
        """The records above ``lsn`` that were in the log when the section began."""
        self._require_open()
        if lsn >= self.base_lsn:
            return []
        return list(self._log._read(lsn, locked=True))

    def append(self, payload: bytes | bytearray | memoryview) -> int:
        """Queue a record; return the LSN it gets (durable once the ``with`` block has exited)."""
        self._require_open()
        self._pending.append(as_payload(payload))
        return self.last_lsn

    def _require_open(self) -> None:
        self._log._check_open()
        if not self._open:
            raise ClosedError(
                "This log writer's block has ended: open a new one with `with log.writer() as w:`.",
                resource="log writer",
            )

"""Starting an ``fdatasync`` without waiting for it, so that a commit is applied while it becomes durable.

Responsibilities:

- hand one ``fdatasync`` of a file to the kernel and return at once (Linux AIO: ``io_submit`` of an
  ``IOCB_CMD_FDSYNC`` request, which the kernel runs as ``fdatasync`` itself; Linux 4.18 and later), then
  collect its result (``io_getevents``): first without blocking and without releasing the GIL, and only if
  it is not done yet, blocking with the GIL released;
- say when this is not available (another operating system or processor, an older kernel, a sandbox that
  forbids these calls): the caller then calls ``fdatasync`` itself, as it would anyway.

The calls go through ``ctypes`` (Python has no binding for them). Measured on the 2-core VM of
``docs/benchmarks.md`` (2026-11-27): ``io_submit`` takes 25-50 us (the kernel queues the ``fdatasync`` for a
worker thread and wakes it), collecting one that has finished a few; the
``fdatasync`` itself takes 105-120 us from submission. Applying the commit to the in-memory tables (70-150
us) runs in that time: with 80 us of work between them, submitting and collecting add about 70 us to the
work, against 110 us for an ``fdatasync`` called after it.

Examples
--------
>>> import os, tempfile
>>> flusher = AsyncFlush.open()
>>> with tempfile.TemporaryFile() as f:
...     if flusher is None:  # not on this system: the caller would call os.fdatasync
...         result = 0
...     else:
...         _ = os.write(f.fileno(), b"record")
...         result = flusher.collect() if flusher.submit(f.fileno()) else -1
...         flusher.close()
>>> result
0
"""

from __future__ import annotations

import ctypes
import errno
import platform
import sys
import weakref
from typing import Final

__all__ = ["AsyncFlush"]

_CALLS: Final = {  # io_setup, io_destroy, io_getevents, io_submit
    "x86_64": (206, 207, 208, 209),
    "aarch64": (0, 1, 4, 2),
}
_IOCB_CMD_FDSYNC: Final = 3


class _Iocb(ctypes.Structure):
    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _Event(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class AsyncFlush:
    """One kernel AIO context with room for one ``fdatasync`` in flight. Not thread-safe: the caller (the
    log's group commit) lets one thread submit or collect at a time."""

    def __init__(self, calls: tuple[int, int, int, int], context: ctypes.c_ulong) -> None:
        _, self._destroy, self._getevents, self._submit = calls
        self._context = context
        self._blocking = ctypes.CDLL(None, use_errno=True).syscall  # releases the GIL while it runs
        self._quick = ctypes.PyDLL(None, use_errno=True).syscall  # keeps it: for calls that do not block
        for call in (self._blocking, self._quick):
            call.restype = ctypes.c_long
        self._iocb = _Iocb(aio_lio_opcode=_IOCB_CMD_FDSYNC)
        self._iocbs = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(self._iocb))
        self._event = _Event()
        self._now = _Timespec(0, 0)
        self._closer = weakref.finalize(self, _destroy, self._blocking, self._destroy, context.value)

    @classmethod
    def open(cls) -> AsyncFlush | None:
        """A new context, or ``None`` where asynchronous ``fdatasync`` is not available."""
        calls = _CALLS.get(platform.machine())
        if calls is None or not sys.platform.startswith("linux"):
            return None
        try:
            syscall = ctypes.CDLL(None, use_errno=True).syscall
        except (OSError, AttributeError):
            return None
        syscall.restype = ctypes.c_long
        context = ctypes.c_ulong(0)
        if syscall(ctypes.c_long(calls[0]), ctypes.c_long(1), ctypes.byref(context)) != 0:
            return None
        return cls(calls, context)

    def submit(self, fd: int) -> bool:
        """Start an ``fdatasync`` of ``fd``; ``False`` if the kernel did not take it (call ``fdatasync``)."""
        self._iocb.aio_fildes = fd
        taken = self._quick(ctypes.c_long(self._submit), self._context, ctypes.c_long(1), self._iocbs)
        return bool(taken == 1)

    def collect(self) -> int:
        """Wait for the submitted ``fdatasync``: 0 if it succeeded, else the error number it failed with."""
        event = ctypes.byref(self._event)
        one = ctypes.c_long(1)
        got = self._quick(
            ctypes.c_long(self._getevents), self._context, one, one, event, ctypes.byref(self._now)
        )
        while got != 1:
            if got < 0 and ctypes.get_errno() != errno.EINTR:
                return ctypes.get_errno() or errno.EIO  # its outcome is unknown: treat it as failed
            got = self._blocking(ctypes.c_long(self._getevents), self._context, one, one, event, None)
        return -int(self._event.res) if self._event.res < 0 else 0

    def close(self) -> None:
        """Free the kernel context (after the last :meth:`collect`)."""
        self._closer()


def _destroy(syscall: ctypes._NamedFuncPointer, number: int, context: int) -> None:
    syscall(ctypes.c_long(number), ctypes.c_ulong(context))

"""Side files: the rows of a bulk insert, in an fsynced Arrow IPC file that the commit record names.

Responsibilities:

- write a bulk insert's rows before its commit (:func:`pending`): one uncompressed Arrow IPC file per table,
  under a temporary name, fsynced, its size and a CRC-32 per block noted for the record
  (:class:`~zapnb.changes.BulkFile`);
- give each its final name, from the commit's LSN, inside the log's writer section, just before the record
  is appended (:meth:`PendingFile.publish`);
- hand the rows just written back, memory-mapped from their file, to whoever asked for them (``written``
  of :func:`pending`), so that the committing process need not keep a second copy of them in memory;
- read the rows back for recovery and for other processes (:func:`read_rows`, :func:`logged_rows`), checking
  every byte;
- remove side files that no record in the log names (:func:`remove_unreferenced`), at open and after a
  checkpoint shortened the log.

Files
-----
``<data dir>/bulk/<lsn>-<part>.arrow`` holds part ``part`` (one per table) of the bulk commit at ``lsn``;
``<data dir>/bulk/.<token>.tmp`` is a file being written. A process writing one holds a shared ``flock`` on
``bulk/LOCK`` from before it creates the file until its record is appended (or given up).

Crash safety
------------
A side file is durable (written, fsynced, renamed and its directory fsynced) before the record that names
it is appended, so a record never names a file that a crash can lose. A crash before the append leaves a
file no record names: a temporary file, removed when nobody holds ``bulk/LOCK`` (so none is being written),
or a published file whose LSN is past the end of the log, removed inside the log's writer section (so no
commit is between its publish and its append). A file whose record a checkpoint truncated from the log is
removed too; a process still behind that record reloads the checkpoint instead
(:class:`~zapnb.errors.LogTruncatedError`).

Examples
--------
>>> import tempfile
>>> import pyarrow as pa
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as data:
...     with pending(Path(data), [("notes", pa.table({"_id": ["a", "b"]}))]) as files:
...         path = files[0].publish(7)
...     read_rows(Path(data), 7, files[0].ref).column("_id").to_pylist(), path.name
(['a', 'b'], '7-0.arrow')
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pyarrow as pa

from zapnb.changes import BulkFile
from zapnb.durable import (
    CHECKSUM_BLOCK,
    BaseFile,
    fsync_dir,
    io_error,
    make_dirs,
    read_base,
    write_ipc,
)
from zapnb.errors import CorruptionError
from zapnb.faults import kill_point
from zapnb.logread import truncated_error

if TYPE_CHECKING:
    from zapnb.log import CommitLog

__all__ = [
    "DIRECTORY",
    "PendingFile",
    "Written",
    "logged_rows",
    "pending",
    "read_rows",
    "remove_unreferenced",
    "side_file_path",
]

DIRECTORY: Final = "bulk"
_LOCK: Final = "LOCK"
_SUFFIX: Final = ".arrow"
_TEMPORARY: Final = ".tmp"


def side_file_path(root: Path, lsn: int, part: int) -> Path:
    """Where part ``part`` of the bulk commit at ``lsn`` is kept.

    Examples
    --------
    >>> side_file_path(Path("/data"), 12, 0).as_posix()
    '/data/bulk/12-0.arrow'
    """
    return root / DIRECTORY / f"{lsn}-{part}{_SUFFIX}"


class PendingFile:
    """A side file written for a commit that is not appended yet: :attr:`ref` describes it for the record."""

    def __init__(self, root: Path, path: Path, ref: BulkFile) -> None:
        self.root = root
        self.path = path
        self.ref = ref
        self.published = False

    def publish(self, lsn: int) -> Path:
        """Name the file for the commit at ``lsn`` (call it in the log's writer section, before appending)."""
        final = side_file_path(self.root, lsn, self.ref.part)
        try:
            os.replace(self.path, final)  # a file left there by a commit that crashed before appending
            fsync_dir(final.parent)
        except OSError as err:
            raise io_error(err, final, "name a bulk insert's side file") from err
        self.path, self.published = final, True
        return final

    def discard(self) -> None:
        """Remove the file if it was never published (the commit did not happen)."""
        if not self.published:
            self.path.unlink(missing_ok=True)


Written = Callable[[int, "pa.Table | None"], None]
"""Told, for each part as soon as its side file is written, the part's number and its rows memory-mapped from
the file (``None`` if they could not be mapped: the rows in memory then serve)."""


def _mapped(path: Path) -> pa.Table | None:
    try:
        return read_base(path)  # mapped as base files are (see zapnb.durable.release_pages)
    except CorruptionError:  # the rows stay in memory: nothing is lost but the saving
        return None


@contextlib.contextmanager
def pending(
    root: Path, parts: Sequence[tuple[str, pa.Table]], written: Written | None = None
) -> Iterator[list[PendingFile]]:
    """Write each ``(table, rows)`` as a side file, durably; yield them for the commit to publish.

    ``written`` hears of each part as soon as its file is written, with its rows mapped from the file: the
    bulk commit uses it to let go of a batch's rows in memory (from then on they take memory only where they
    are read: pages of the file, which the system can drop) and to start building its index keys.

    While the block runs, the files count as being written (``bulk/LOCK`` is held shared). If it raises,
    the files not yet published are removed.

    Raises
    ------
    StorageIOError
        The disk refused a write or an fsync; nothing was committed.
    """
    directory = root / DIRECTORY
    make_dirs(directory)
    lock = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    files: list[PendingFile] = []
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)
        _write_all(root, directory, parts, files, written)
        del parts  # the rows are on disk: holding them no longer is up to the caller alone
        kill_point("sidefiles.after_write_before_commit")
        yield files
    except BaseException:
        for file in files:
            file.discard()
        raise
    finally:
        os.close(lock)


def _write_all(
    root: Path,
    directory: Path,
    parts: Sequence[tuple[str, pa.Table]],
    files: list[PendingFile],
    written: Written | None,
) -> None:
    """Write each part's side file, adding it to ``files`` as soon as it is written (to be discarded if a
    later one fails), and tell ``written``."""
    for part, (table, rows) in enumerate(parts):
        files.append(_write(root, directory / f".{secrets.token_hex(8)}{_TEMPORARY}", table, part, rows))
        if written is not None:
            written(part, _mapped(files[-1].path))


def _write(root: Path, path: Path, table: str, part: int, rows: pa.Table) -> PendingFile:
    try:
        write_ipc(path, rows.schema, rows.to_batches())
        size, checksums = _fsync_and_checksums(path)
    except OSError as err:
        path.unlink(missing_ok=True)
        raise io_error(err, path, "write a bulk insert's side file") from err
    return PendingFile(root, path, BulkFile(table, part, rows.num_rows, size, checksums))


def _fsync_and_checksums(path: Path) -> tuple[int, tuple[int, ...]]:
    """Make the file durable; its size and a CRC-32 per :data:`~zapnb.durable.CHECKSUM_BLOCK` bytes."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        checksums, size = [], 0
        while block := os.pread(descriptor, CHECKSUM_BLOCK, size):
            checksums.append(zlib.crc32(block))
            size += len(block)
    finally:
        os.close(descriptor)
    return size, tuple(checksums)


def read_rows(root: Path, lsn: int, ref: BulkFile) -> pa.Table:
    """The rows of a side file, memory-mapped, after checking every byte against the record.

    Raises
    ------
    FileNotFoundError
        The file is gone (its record was truncated from the log, or it was never there: damage).
    CorruptionError
        The file is damaged.
    """
    path = side_file_path(root, lsn, ref.part)
    if not path.exists():
        raise FileNotFoundError(path)
    try:
        return read_base(path, expected=BaseFile(str(path), ref.size, ref.rows, ref.checksums))
    except CorruptionError as err:
        raise CorruptionError(
            f"The side file {path} of the bulk insert committed at LSN {lsn} is damaged near byte "
            f"{err.offset}, so that commit cannot be applied. Restore the data directory from a backup.",
            file=str(path),
            offset=err.offset,
        ) from err


def logged_rows(root: Path, log: CommitLog, lsn: int, ref: BulkFile) -> pa.Table:
    """:func:`read_rows` for a record read from ``log``: a file that is gone because a checkpoint truncated
    its record meanwhile is :class:`~zapnb.errors.LogTruncatedError` (read the checkpoint instead); gone
    while its record is still in the log, it is :class:`~zapnb.errors.CorruptionError`."""
    try:
        return read_rows(root, lsn, ref)
    except FileNotFoundError as err:
        first = log.first_lsn()
        if lsn < first:
            raise truncated_error(lsn - 1, first) from err
        raise CorruptionError(
            f"The side file {err} of the bulk insert committed at LSN {lsn} is missing, so that commit "
            "cannot be applied. Restore the data directory from a backup.",
            file=str(err),
            offset=0,
        ) from err


def remove_unreferenced(root: Path, log: CommitLog) -> list[Path]:
    """Remove the side files no record in ``log`` names, and temporary ones nobody is writing.

    Published files are judged inside the log's writer section: a file whose LSN is before the first record
    the log still holds, or after its last, is named by no record (a commit that crashed between publishing
    and appending, or one truncated since). Returns what was removed.
    """
    directory = root / DIRECTORY
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    removed = _remove_temporary(directory, [n for n in names if n.endswith(_TEMPORARY)])
    published = [(int(n.split("-", 1)[0]), n) for n in names if n.endswith(_SUFFIX) and n[:1].isdigit()]
    if published:
        with log.writer() as writer:
            first, last = log.first_lsn(), writer.base_lsn
            for lsn, name in published:
                if lsn < first or lsn > last:
                    (directory / name).unlink(missing_ok=True)
                    removed.append(directory / name)
    if removed:
        fsync_dir(directory)
    return removed


def _remove_temporary(directory: Path, names: list[str]) -> list[Path]:
    """Remove temporary files if no process is writing side files (nobody holds ``bulk/LOCK``)."""
    if not names:
        return []
    lock = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []
        for name in names:
            (directory / name).unlink(missing_ok=True)
        return [directory / name for name in names]
    finally:
        os.close(lock)

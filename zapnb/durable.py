"""Durable files: the Arrow IPC base snapshots, small files replaced atomically, and fsyncs.

Responsibilities:

- write a table as an uncompressed Arrow IPC file that replaces the old one atomically and durably, with a
  checksum per block (:func:`write_base`, or batch by batch :func:`write_base_batches`), and map it back in
  milliseconds, refusing a damaged file with :class:`~zapnb.errors.CorruptionError` (:func:`read_base`);
- let go of the pages of mapped base files that a whole-file read made resident in this process
  (:func:`release_pages`): they stay in the operating system's page cache, and the next read maps them again;
- replace a small file atomically and durably (:func:`atomic_write_bytes`), for ``checkpoint.json``;
- fsync files and directories (:func:`fsync_tree`, and the helpers :mod:`zapnb.storage` uses).

Everything here returns once what it wrote is on disk, directory entries included. A failure of the operating
system is a :class:`~zapnb.errors.StorageIOError` that leaves the old file in place.

Measured here (a 1M-row messages table, 507 MB): :func:`write_base` 0.5-0.8 s (writing 0.34 s, fsync 0.19 s,
checksums 0.2 s); :func:`read_base` 3 ms, or 0.3 s when it checks every byte.

A mapped file's pages count in the process's resident memory once read, and stay counted while the mapping
lives: checking every byte of a 300 MB base file, or writing a checkpoint from it, made 300 MB more of it
resident (a 1M-message table's checkpoint after ten patches peaked at 1.54 GB of resident memory). Base files
are therefore mapped with Python's :mod:`mmap`, which can ``madvise(MADV_DONTNEED)``: for a read-only file
mapping that only drops the process's page-table entries, so data read afterwards is the same.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> import pyarrow as pa
>>> with tempfile.TemporaryDirectory() as data:
...     written = write_base(Path(data) / "base" / "notes-7.arrow", pa.table({"_id": ["a", "b"]}))
...     read_base(written.path, expected=written).num_rows, written.rows
(2, 2)
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import mmap
import os
import threading
import weakref
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from zapnb.errors import CorruptionError, StorageIOError
from zapnb.faults import kill_point

__all__ = [
    "BATCH_ROWS",
    "CHECKSUM_BLOCK",
    "WRITE_BUFFER",
    "BaseFile",
    "atomic_write_bytes",
    "fsync_dir",
    "fsync_file",
    "fsync_tree",
    "io_error",
    "make_dirs",
    "map_read_only",
    "read_base",
    "release_pages",
    "released",
    "write_base",
    "write_base_batches",
    "write_ipc",
    "write_new_synced",
]

BATCH_ROWS: Final = 65_536
"""Rows per record batch in a base file."""

WRITE_BUFFER: Final = 16 << 20
"""Bytes a base file is written in at a time. The page cache keeps what one write makes as large folios, and a
mapping then maps a whole folio per page fault: reading a 95 MB base through its mapping took 1,017 page
faults when the file had been written Arrow buffer by buffer, and 86 when written 16 MB at a time (Linux 6.18,
ext4)."""

CHECKSUM_BLOCK: Final = 8 << 20
"""Bytes per checksum of a base file (so damage is located to within 8 MiB)."""

_IPC_MAGIC: Final = b"ARROW1"


# --- base files ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BaseFile:
    """A written base file: its size, rows and a CRC-32 per :data:`CHECKSUM_BLOCK` bytes.

    Keep it (:meth:`to_json`) to let :func:`read_base` check every byte later.
    """

    path: str
    size: int
    rows: int
    checksums: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description; :meth:`from_json` reads it back."""
        return {"path": self.path, "size": self.size, "rows": self.rows, "checksums": list(self.checksums)}

    @staticmethod
    def from_json(data: dict[str, Any]) -> BaseFile:
        """Read back what :meth:`to_json` wrote."""
        return BaseFile(str(data["path"]), int(data["size"]), int(data["rows"]), tuple(data["checksums"]))


def write_base(path: str | os.PathLike[str], arrow_table: pa.Table) -> BaseFile:
    """Write ``arrow_table`` as an uncompressed Arrow IPC file at ``path``, durably and atomically.

    The file is written under a temporary name, fsynced, renamed over ``path`` and its directory fsynced,
    so ``path`` always holds either the old file or the whole new one.

    Raises
    ------
    StorageIOError
        The disk refused the write (full, I/O error...); ``path`` is unchanged.
    """
    return write_base_batches(path, arrow_table.schema, arrow_table.to_batches())


def write_base_batches(
    path: str | os.PathLike[str], schema: pa.Schema, batches: Iterable[pa.RecordBatch]
) -> BaseFile:
    """:func:`write_base` of the table made of ``batches`` (each of ``schema``), consumed one at a time, so a
    table larger than memory can be written from a generator.

    Raises
    ------
    StorageIOError
        The disk refused the write (full, I/O error...); ``path`` is unchanged.
    """
    path = Path(path)
    make_dirs(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        rows = write_ipc(temporary, schema, batches)
        fsync_file(temporary)
        checksums = _checksums(temporary)
        kill_point("durable.before_base_rename")
        os.replace(temporary, path)
        fsync_dir(path.parent)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise io_error(err, path, "write a base file") from err
    return BaseFile(str(path), sum(n for n, _ in checksums), rows, tuple(c for _, c in checksums))


def write_ipc(path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    """Write ``batches`` as an uncompressed Arrow IPC file at ``path`` (not fsynced), in record batches of at
    most :data:`BATCH_ROWS` rows and writes of :data:`WRITE_BUFFER` bytes; return the rows written. Raises
    ``OSError`` when the disk refuses."""
    options = pa.ipc.IpcWriteOptions(compression=None)
    rows = 0
    with (
        pa.OSFile(str(path), "wb") as file,
        pa.BufferedOutputStream(file, WRITE_BUFFER) as sink,
        pa.ipc.new_file(sink, schema, options=options) as w,
    ):
        for batch in batches:
            for start in range(0, batch.num_rows, BATCH_ROWS):
                w.write_batch(batch.slice(start, BATCH_ROWS))
            rows += batch.num_rows
    return rows


def read_base(path: str | os.PathLike[str], *, expected: BaseFile | None = None) -> pa.Table:
    """The Arrow table in the base file at ``path``, memory-mapped (milliseconds whatever its size).

    The file's structure is checked (its magic, footer and record batch headers); with ``expected`` (what
    :func:`write_base` returned) every byte is checked against its checksums and every buffer validated,
    which reads the whole file (about 0.3 s per 500 MB).

    Raises
    ------
    CorruptionError
        The file is missing, cut short or damaged; ``offset`` is where, when known.
    """
    path = Path(path)
    try:
        mapped = _map(path)
        table = pa.ipc.open_file(pa.BufferReader(pa.py_buffer(mapped))).read_all()
        table.validate()
    except (OSError, ValueError, pa.ArrowException) as err:
        offset = _ipc_damage_offset(path)
        raise CorruptionError(
            f"The base file {path} is damaged near byte {offset} ({err}). The table can be rebuilt from its "
            "Lance dataset and the commit log: move the file aside and open the database again.",
            file=str(path),
            offset=offset,
        ) from err
    if expected is not None:
        _verify_base(path, table, expected)
    # Reading the batches' headers maps whole large folios of the page cache (2 MB each for files written
    # 16 MB at a time), and the check reads every byte: none of it need stay resident.
    release_pages(mapped)
    return table


_MAPPED: weakref.WeakSet[mmap.mmap] = weakref.WeakSet()
_MAPPED_LOCK = threading.Lock()


def map_read_only(fd: int) -> mmap.mmap:
    """The whole file open at ``fd`` mapped read-only (an empty file raises ``ValueError``), remembered for
    :func:`release_pages` while anything uses the mapping."""
    mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    with _MAPPED_LOCK:
        _MAPPED.add(mapped)
    return mapped


def _map(path: Path) -> mmap.mmap:
    with open(path, "rb") as file:
        return map_read_only(file.fileno())


def release_pages(mapped: mmap.mmap | None = None) -> None:
    """Drop from this process's resident memory the pages of ``mapped``, or of every file mapped with
    :func:`map_read_only` (base and index files). The files stay mapped and readable: reading a page again
    maps it again, from the page cache. Call it after reading whole files, so that they are not all resident
    at once."""
    if mapped is None:
        with _MAPPED_LOCK:
            every = list(_MAPPED)
    else:
        every = [mapped]
    for one in every:
        if hasattr(mmap, "MADV_DONTNEED") and not one.closed:  # where there is none, pages stay resident
            with contextlib.suppress(OSError, ValueError):  # only a saving: a refusal leaves them resident
                one.madvise(mmap.MADV_DONTNEED)


def released(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``batches`` one at a time, letting go of the mapped pages read (:func:`release_pages`) after each has
    been used: a whole pass over a large mapped table does not make all of it resident."""
    for batch in batches:
        yield batch
        release_pages()


def _checksums(path: Path) -> list[tuple[int, int]]:
    """(length, CRC-32) of each :data:`CHECKSUM_BLOCK` bytes of the file."""
    out = []
    with open(path, "rb", buffering=0) as file:
        while block := file.read(CHECKSUM_BLOCK):
            out.append((len(block), zlib.crc32(block)))
    return out


def _verify_base(path: Path, table: pa.Table, expected: BaseFile) -> None:
    offset: int | None = None
    try:
        found = _checksums(path)
    except OSError:
        found = []
    size = sum(n for n, _ in found)
    for i, ((_, crc), want) in enumerate(zip(found, expected.checksums, strict=False)):
        if crc != want:
            offset = i * CHECKSUM_BLOCK
            break
    else:
        if size != expected.size or table.num_rows != expected.rows:
            offset = min(size, expected.size)
    if offset is None:
        try:
            table.validate(full=True)
        except pa.ArrowException:
            offset = 0
    if offset is not None:
        raise CorruptionError(
            f"The base file {path} does not hold what was written (damage from byte {offset}). The table "
            "can be rebuilt from its Lance dataset and the commit log: move the file aside and open the "
            "database again.",
            file=str(path),
            offset=offset,
        )


def _ipc_damage_offset(path: Path) -> int:
    """Where an Arrow IPC file is damaged, as far as its magic and footer tell: its start, its end or its
    footer."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(0)
            head = file.read(len(_IPC_MAGIC))
            file.seek(max(size - 10, 0))
            tail = file.read(10)
    except OSError:
        return 0
    if size < 2 * len(_IPC_MAGIC) + 4 or head != _IPC_MAGIC:
        return 0
    if tail[4:] != _IPC_MAGIC:
        return size
    footer = int.from_bytes(tail[:4], "little", signed=True)
    return max(size - 10 - footer, 0) if 0 < footer < size else size - 10


# --- durable files ------------------------------------------------------------------------------------------


def write_new_synced(path: Path, data: bytes, *, exclusive: bool = True) -> None:
    """Write ``data`` as the whole file ``path`` and fsync it (``exclusive``: the file must not exist yet)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    descriptor = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file at ``path`` with ``data``, durably and atomically (temporary file, fsync, rename).

    Raises
    ------
    StorageIOError
        The disk refused the write; ``path`` is unchanged.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as data:
    ...     atomic_write_bytes(Path(data) / "checkpoint.json", b'{"lsn": 7}')
    ...     (Path(data) / "checkpoint.json").read_bytes()
    b'{"lsn": 7}'
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_new_synced(temporary, data, exclusive=False)
        os.replace(temporary, path)
        fsync_dir(path.parent)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise io_error(err, path, "write") from err


def fsync_tree(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Make each path durable: a file's data, a directory's entries and everything below it, and the entry
    that names each path in its parent directory.

    Raises
    ------
    StorageIOError
        An fsync failed.
    """
    for path in map(Path, paths):
        try:
            if path.is_dir():
                for root, dirs, files in os.walk(path):
                    for name in files:
                        fsync_file(Path(root) / name)
                    for name in dirs:
                        fsync_dir(Path(root) / name)
                fsync_dir(path)
            else:
                fsync_file(path)
            fsync_dir(path.parent)
        except OSError as err:
            raise io_error(err, path, "fsync") from err


def fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, fsyncing the directory that names each one created."""
    missing = []
    for parent in (path, *path.parents):
        if parent.exists():
            break
        missing.append(parent)
    try:
        path.mkdir(parents=True, exist_ok=True)
        for created in reversed(missing):
            fsync_dir(created.parent)
    except OSError as err:
        raise io_error(err, path, "create") from err


def io_error(err: Exception, path: Path, operation: str) -> StorageIOError:
    code = getattr(err, "errno", None) or 0
    if not code and "No space left" in str(err):
        code = errno_codes.ENOSPC
    hint = "free some space" if code == errno_codes.ENOSPC else "check the disk and the permissions"
    return StorageIOError(
        f"Could not {operation} at {path}: {err}. Nothing acknowledged is lost (the commit log holds it); "
        f"{hint}, then try again.",
        path=str(path),
        operation=operation,
        errno=code,
    )

"""Index files: an index's base on disk, replaced atomically and memory-mapped on open.

Responsibilities:

- write one file per index base (``<name>.zidx``): under a temporary name, fsynced, renamed into place, the
  directory fsynced, so a crash leaves either the old file or the new one;
- open it by mapping it (``mmap``): a million 86-byte keys open in well under a millisecond, and only the
  pages that searches touch are ever read;
- refuse a damaged file loudly with :class:`~zapnb.errors.CorruptionError` naming the file and the offset.

The format (little-endian): a 128-byte header, then three sections, each starting at a multiple of 64::

    magic "ZAPNBIDX", format version (u32), layout (u32: 1 fixed, 2 var), key count (u64),
    width (u64: the longest key), base LSN (i64), file size (u64),
    three (offset, length) pairs (u64), the CRC-32 of each section (u32), the CRC-32 of all the above (u32)

    fixed layout: keys as count x width bytes (zero-padded) | lengths (u32) | row positions (i64)
    var layout:   keys end to end                           | offsets (i64, count + 1) | row positions (i64)

Opening checks the header's checksum, the file's size against the header and every section's bounds, which
catches a short, truncated or overwritten header. It does not checksum the sections: that reads the whole
file (CRC-32 runs at about 4 GB/s here, 25 ms per 100 MB once cached, and a cold read costs the disk's time
for every byte), defeating the lazy mapping that makes opening fast. ``verify=True`` checks them on demand.
Files are only ever written whole and renamed into place, so damage inside a section means a failing disk,
which the checkpoint's Lance copy of the table lets zapnb rebuild from.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> import numpy as np
>>> from zapnb.indexbase import sort_keys
>>> keys, order = sort_keys([b"b\\x00", b"a\\x00"])
>>> with tempfile.TemporaryDirectory() as directory:
...     path = save_index(Path(directory), "demo", keys, order, base_lsn=7)
...     loaded, positions, lsn = load_index(Path(directory), "demo", verify=True)
...     (path.name, loaded.keys(0, 2), positions.tolist(), lsn)
('demo.zidx', [b'a\\x00', b'b\\x00'], [1, 0], 7)
"""

from __future__ import annotations

import contextlib
import mmap as _mmap
import os
import struct
import zlib
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from zapnb.durable import fsync_dir, map_read_only, release_pages
from zapnb.errors import CorruptionError, FormatVersionError
from zapnb.faults import kill_point
from zapnb.indexbase import FixedKeys, SortedKeys, VarKeys
from zapnb.logformat import io_error

__all__ = ["FORMAT_VERSION", "SUFFIX", "index_path", "load_index", "save_index"]

FORMAT_VERSION: Final = 1
SUFFIX: Final = ".zidx"
_MAGIC: Final = b"ZAPNBIDX"
_HEADER: Final = struct.Struct("<8sIIQQqQ6Q3I")
_CRC: Final = struct.Struct("<I")
_HEADER_SIZE: Final = 128
_ALIGN: Final = 64
_LAYOUT_CODE: Final = {"fixed": 1, "var": 2}
_SECTION_NAMES: Final = ("keys", "lengths or offsets", "positions")


def index_path(directory: Path, name: str) -> Path:
    """The file holding index ``name`` in ``directory``."""
    return Path(directory) / f"{name}{SUFFIX}"


def _align(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _bytes_of(array: npt.NDArray[np.generic]) -> memoryview:
    return np.ascontiguousarray(array).view(np.uint8).data


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def save_index(
    directory: Path, name: str, keys: SortedKeys, positions: npt.NDArray[np.int64], base_lsn: int
) -> Path:
    """Write (or atomically replace) the file of index ``name``; returns its path.

    Raises
    ------
    StorageIOError
        If the operating system refuses a write, fsync or rename (the previous file, if any, is unchanged).
    """
    path = index_path(directory, name)
    first, second = keys.arrays()
    second = second.astype("<u4" if keys.layout == "fixed" else "<i8", copy=False)
    sections = [_bytes_of(first), _bytes_of(second), _bytes_of(positions.astype("<i8", copy=False))]
    starts = [_HEADER_SIZE]
    for section in sections[:-1]:
        starts.append(_align(starts[-1] + section.nbytes))
    size = starts[-1] + sections[-1].nbytes
    bounds = [value for start, s in zip(starts, sections, strict=True) for value in (start, s.nbytes)]
    crcs = [zlib.crc32(section) for section in sections]
    code = _LAYOUT_CODE[keys.layout]
    head = _HEADER.pack(_MAGIC, FORMAT_VERSION, code, len(keys), keys.width, base_lsn, size, *bounds, *crcs)
    head += _CRC.pack(zlib.crc32(head))
    temp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            for start, section in zip(starts, sections, strict=True):
                _write_all(fd, section, start)
            _write_all(fd, memoryview(head.ljust(_HEADER_SIZE, b"\x00")), 0)
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
        kill_point("index.before_rename")
        os.replace(temp, path)
        fsync_dir(path.parent)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise io_error(err, path, "write", "The index file was not replaced.") from err
    return path


def _damaged(path: Path, offset: int, reason: str) -> CorruptionError:
    return CorruptionError(
        f"The index file {path} is damaged at byte {offset}: {reason}. zapnb does not read a damaged index. "
        "Restore the data directory from a backup (the index can also be rebuilt from its table, which the "
        "checkpoint's Lance version and the commit log hold).",
        file=str(path),
        offset=offset,
    )


def _parse_header(path: Path, head: bytes, size: int) -> tuple[int, ...]:
    if len(head) < _HEADER_SIZE:
        raise _damaged(path, size, f"the file is {size} bytes, shorter than its {_HEADER_SIZE}-byte header")
    fields = _HEADER.unpack_from(head)
    if fields[0] != _MAGIC:
        raise _damaged(path, 0, "it does not start with a zapnb index header")
    if fields[1] != FORMAT_VERSION:
        raise FormatVersionError(
            f"{path} is in index format version {fields[1]}, and this zapnb reads version {FORMAT_VERSION}. "
            "Open the data directory with the zapnb release that wrote it (or newer).",
            file=str(path),
            found=fields[1],
            supported=FORMAT_VERSION,
        )
    if _CRC.unpack_from(head, _HEADER.size)[0] != zlib.crc32(head[: _HEADER.size]):
        raise _damaged(path, _HEADER.size, "the header checksum does not match")
    if fields[6] != size:
        raise _damaged(
            path, min(size, fields[6]), f"the file is {size} bytes and its header says {fields[6]}"
        )
    return fields


def _check_sections(path: Path, fields: tuple[int, ...]) -> None:
    _, _, code, count, width, _, size, *rest = fields
    bounds = list(zip(rest[0:6:2], rest[1:6:2], strict=True))
    expected = (
        (count * width, count * 4, count * 8) if code == 1 else (bounds[0][1], (count + 1) * 8, count * 8)
    )
    if code not in (1, 2) or width < 1:
        raise _damaged(path, 12, f"unknown layout {code} or width {width}")
    for (start, length), wanted, what in zip(bounds, expected, _SECTION_NAMES, strict=True):
        if start % 8 or start < _HEADER_SIZE or start + length > size or length != wanted:
            raise _damaged(path, start, f"the {what} section lies outside the file or has the wrong size")


def _read(fd: int, size: int, use_mmap: bool) -> _mmap.mmap | bytes:
    if use_mmap:
        return map_read_only(fd)
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 30), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def load_index(
    directory: Path, name: str, *, mmap: bool = True, verify: bool = False
) -> tuple[SortedKeys, npt.NDArray[np.int64], int]:
    """Open the file of index ``name``: its sorted keys, row positions and base LSN (read-only arrays).

    Parameters
    ----------
    mmap:
        Map the file (the default: fast, lazy) rather than read it into memory.
    verify:
        Also check every section's checksum (reads the whole file).

    Raises
    ------
    CorruptionError
        If the file is missing, short, or its header or (with ``verify``) a section is damaged.
    FormatVersionError
        If a newer zapnb wrote it.
    """
    path = index_path(directory, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _damaged(path, 0, "the file is missing") from None
    except OSError as err:
        raise io_error(err, path, "open", "The index was not loaded.") from err
    try:
        size = os.fstat(fd).st_size
        fields = _parse_header(path, os.pread(fd, _HEADER_SIZE, 0), size)
        _check_sections(path, fields)
        buffer = _read(fd, size, mmap)
    except OSError as err:
        raise io_error(err, path, "read", "The index was not loaded.") from err
    finally:
        os.close(fd)
    return _arrays(path, buffer, fields, verify)


def _arrays(
    path: Path, buffer: _mmap.mmap | bytes, fields: tuple[int, ...], verify: bool
) -> tuple[SortedKeys, npt.NDArray[np.int64], int]:
    _, _, code, count, width, base_lsn, _, *rest = fields
    (k_start, k_len), (s_start, _), (p_start, _) = zip(rest[0:6:2], rest[1:6:2], strict=True)
    if verify:
        for start, length, crc, what in zip(rest[0:6:2], rest[1:6:2], rest[6:9], _SECTION_NAMES, strict=True):
            if zlib.crc32(memoryview(buffer)[start : start + length]) != crc:
                raise _damaged(path, start, f"the {what} section's checksum does not match")
        if isinstance(buffer, _mmap.mmap):
            release_pages(buffer)  # the check read every byte: none of it need stay resident
    positions = np.frombuffer(buffer, "<i8", count, p_start)
    keys: SortedKeys
    if code == 1:
        keys = FixedKeys(
            np.frombuffer(buffer, f"S{width}", count, k_start), np.frombuffer(buffer, "<u4", count, s_start)
        )
    else:
        offsets = np.frombuffer(buffer, "<i8", count + 1, s_start)
        if offsets[0] != 0 or offsets[-1] != k_len:
            raise _damaged(path, s_start, "the key offsets do not span the keys section")
        keys = VarKeys(np.frombuffer(buffer, np.uint8, k_len, k_start), offsets)
    return keys, positions, base_lsn

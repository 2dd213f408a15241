"""The data directory and its marker file, ``zapnb.json``: the format version the directory is written in.

Responsibilities: create a data directory (:func:`make_directory`), mark a new one (:func:`write_marker`), and
check at open that a directory is one this zapnb reads (:func:`check_format`). The commit log, index files and
base files carry format versions of their own, checked where they are read.

What makes a directory a zapnb data directory: its marker file, or (for a directory whose marker was lost) a
``log/`` holding a zapnb commit log segment (``*.zlog`` starting with the log's header). Anything else that
is not empty is refused, and nothing is written into it.

Several processes may open a new directory at once. Each writes the marker under a temporary name of its own
(``.zapnb.json.<pid>.<token>.tmp``), fsyncs it and links it to ``zapnb.json``: the first link wins and the
others, finding the same marker in place, use it. Temporary markers are never taken for foreign content, and
once the marker exists those left by a crash are removed.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as data:
...     check_format(Path(data))
...     sorted(p.name for p in Path(data).iterdir())
['zapnb.json']
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Final

from zapnb.durable import fsync_dir, io_error, make_dirs, write_new_synced
from zapnb.errors import CorruptionError, FormatVersionError, InvalidValueError, StorageIOError
from zapnb.faults import kill_point
from zapnb.logformat import SEGMENT_MAGIC, list_segments, segment_name

__all__ = ["FORMAT_VERSION", "MARKER", "check_format", "make_directory", "write_marker"]

FORMAT_VERSION: Final = 1
MARKER: Final = "zapnb.json"
_TEMPORARY: Final = re.compile(r"^\.zapnb\.json\.[\w.-]+\.tmp$")
"""Temporary markers: ``.zapnb.json.<pid>.tmp`` (earlier releases) and ``.zapnb.json.<pid>.<token>.tmp``."""
_UNLINKABLE: Final = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP)
"""What ``os.link`` raises on a filesystem without hard links."""


def make_directory(root: Path) -> None:
    """Create the data directory ``root`` if it is missing (fsyncing the directories that name it).

    Raises :class:`~zapnb.errors.InvalidValueError` when ``root`` (or a directory above it) is a file, and
    :class:`~zapnb.errors.StorageIOError` when the operating system refuses.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as data:
    ...     make_directory(Path(data) / "a" / "b")
    ...     (Path(data) / "a" / "b").is_dir()
    True
    """
    try:
        make_dirs(root)
    except StorageIOError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTDIR):
            raise
        raise InvalidValueError(
            f"{root} is not a directory (it, or a path above it, is a file). Give zapnb a data directory: "
            "a new path, or one that already holds a zapnb database.",
            value=str(root),
        ) from err


def check_format(root: Path) -> None:
    """Check the data directory's format version, or mark a new (or empty) directory as this version's.

    Raises :class:`~zapnb.errors.FormatVersionError` for another version, or for a non-empty directory that
    is not a zapnb data directory (nothing is written into it then); :class:`~zapnb.errors.CorruptionError`
    for a marker file that cannot be read as one.
    """
    marker = root / MARKER
    if not os.path.lexists(marker):
        _refuse_foreign(root, marker)
        _create_marker(marker)
    found = _read_format(marker)
    if found != FORMAT_VERSION:
        raise FormatVersionError(
            f"{root} holds a zapnb database in format {found}; this zapnb reads format {FORMAT_VERSION}. "
            "Open it with the zapnb release that wrote it (this release cannot convert it in place), or "
            "open a new data directory here.",
            file=str(marker),
            found=found,
            supported=FORMAT_VERSION,
        )
    _remove_temporaries(root)


def write_marker(marker: Path) -> None:
    """Write the marker file, unless one is already there (in which case it is left as it is).

    The marker is written under a temporary name, fsynced and then linked into place, so it appears whole
    or not at all, and of several processes writing it at once the first one's stays.
    """
    _create_marker(marker)


# --- recognising a data directory ---------------------------------------------------------------------------


def _refuse_foreign(root: Path, marker: Path) -> None:
    """Raise unless ``root`` is empty (but for temporary markers) or holds a zapnb data directory."""
    try:
        names = sorted(name for name in os.listdir(root) if not _TEMPORARY.match(name))
    except OSError as err:
        raise io_error(err, root, "list the files") from err
    if not names or os.path.lexists(marker) or _holds_commit_log(root / "log"):
        return  # the marker may have appeared since it was looked for: another process is creating it
    existing = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise FormatVersionError(
        f"{root} is not empty ({existing}) and is not a zapnb data directory (it has no {MARKER} and no "
        "zapnb commit log in log/). Nothing was written into it. Choose an empty or new directory.",
        file=str(marker),
        found=0,
        supported=FORMAT_VERSION,
    )


def _holds_commit_log(log_dir: Path) -> bool:
    """Whether ``log_dir`` holds a segment file of a zapnb commit log (of any format version)."""
    try:
        starts = list_segments(log_dir)
    except OSError:
        return False
    return any(_starts_with_log_header(log_dir / segment_name(start)) for start in starts)


def _starts_with_log_header(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(len(SEGMENT_MAGIC)) == SEGMENT_MAGIC
    except OSError:
        return False


# --- the marker file ----------------------------------------------------------------------------------------


def _create_marker(marker: Path) -> None:
    """Write the marker under a temporary name of this call's own and link it into place (first one wins)."""
    temporary = marker.with_name(f".{marker.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    content = json.dumps({"format": FORMAT_VERSION, "created": time.time()}).encode()
    try:
        write_new_synced(temporary, content)
        kill_point("datadir.before_marker_link")
        _link_into_place(temporary, marker)
        fsync_dir(marker.parent)
    except OSError as err:
        raise io_error(err, marker, "write") from err
    finally:
        temporary.unlink(missing_ok=True)


def _link_into_place(temporary: Path, marker: Path) -> None:
    """Give the complete ``temporary`` the name ``marker``, unless a marker is already there."""
    try:
        os.link(temporary, marker)
    except FileExistsError:
        return  # another process's marker: the same format, written whole the same way
    except FileNotFoundError:
        if not os.path.lexists(marker):  # temporaries are only removed once the marker exists
            raise
    except OSError as err:
        if err.errno not in _UNLINKABLE:
            raise
        if not os.path.lexists(marker):  # a filesystem without hard links: rename (atomic, may replace)
            os.replace(temporary, marker)


def _read_format(marker: Path) -> int:
    """The format version in the marker file; :class:`~zapnb.errors.CorruptionError` if it holds none."""
    try:
        raw = marker.read_bytes()
    except IsADirectoryError as err:
        raise _damaged(marker, "it is a directory") from err
    except OSError as err:
        raise io_error(err, marker, "read") from err
    try:
        content = json.loads(raw)
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError among them
        raise _damaged(marker, f"it is not JSON ({err})") from err
    found = content.get("format") if isinstance(content, dict) else None
    if not isinstance(found, int) or isinstance(found, bool):
        shown = raw[:80].decode(errors="replace")
        raise _damaged(marker, f"it holds {shown!r}, with no integer under 'format'")
    return found


def _damaged(marker: Path, why: str) -> CorruptionError:
    return CorruptionError(
        f"The marker file {marker} is damaged: {why}. It should hold "
        f'{{"format": {FORMAT_VERSION}}}. If {marker.parent} is a zapnb data directory, delete {marker.name} '
        "and open it again: zapnb recognises its commit log (log/*.zlog) and writes a new marker. Otherwise "
        "choose an empty or new directory.",
        file=str(marker),
        offset=0,
    )


def _remove_temporaries(root: Path) -> None:
    """Remove temporary markers: the marker exists, so they are left over (by a crash, or a lost race)."""
    for name in os.listdir(root):
        if _TEMPORARY.match(name):
            with contextlib.suppress(OSError):  # removed by another process, or not ours: ignored anyway
                os.unlink(root / name)

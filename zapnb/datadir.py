"""The data directory's marker file, ``zapnb.json``: the format version the directory is written in.

Responsibilities: mark a new data directory (:func:`write_marker`), and check at open that a directory is one
this zapnb reads (:func:`check_format`). The commit log, index files and base files carry format versions of
their own, checked where they are read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Final

from zapnb.durable import atomic_write_bytes
from zapnb.errors import FormatVersionError

__all__ = ["FORMAT_VERSION", "MARKER", "check_format", "write_marker"]

FORMAT_VERSION: Final = 1
MARKER: Final = "zapnb.json"


def check_format(root: Path) -> None:
    """Check the data directory's format version, or mark a new (or empty) directory as this version's.

    Raises :class:`~zapnb.errors.FormatVersionError` for another version, or for a non-empty directory that
    is not a zapnb data directory.
    """
    marker = root / MARKER
    if not marker.exists():
        if any(root.iterdir()):
            existing = ", ".join(sorted(p.name for p in root.iterdir())[:5])
            if not (root / "log").exists():
                raise FormatVersionError(
                    f"{root} is not empty ({existing}) and is not a zapnb data directory. Choose an empty "
                    "or new directory.",
                    file=str(marker),
                    found=0,
                    supported=FORMAT_VERSION,
                )
        write_marker(marker)
        return
    found = int(json.loads(marker.read_text()).get("format", 0))
    if found != FORMAT_VERSION:
        raise FormatVersionError(
            f"{root} holds a zapnb database in format {found}; this zapnb reads format {FORMAT_VERSION}. "
            "Open it with the zapnb release that wrote it (this release cannot convert it in place), or "
            "open a new data directory here.",
            file=str(marker),
            found=found,
            supported=FORMAT_VERSION,
        )


def write_marker(marker: Path) -> None:
    """Write the marker file (atomically)."""
    atomic_write_bytes(marker, json.dumps({"format": FORMAT_VERSION, "created": time.time()}).encode())

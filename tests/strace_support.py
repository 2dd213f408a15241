"""A commit log in a child process whose fsync the kernel is made to fail, through strace's fault injection.

The child appends 20 records, each made durable before the next, with the ``write`` it is given; it prints the
failing operation and how many records were acknowledged, then ``refused`` if a further append is refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import sys
from zapnb.errors import StorageIOError
from zapnb.log import CommitLog
log = CommitLog.open(sys.argv[1])


def write(i):
{write}


acked = []
try:
    for i in range(20):
        acked.append(write(i))
except StorageIOError as err:
    print(err.operation, len(acked))
try:
    log.append(b"after the failure")
except StorageIOError:
    print("refused")
"""


def run_with_failing_fsync(directory: Path, inject: str, write: str) -> list[str]:
    """The lines the child prints, run on the log at ``directory`` with strace's ``inject`` (such as
    ``fdatasync:error=EIO:when=6``); ``write`` is the body of ``write(i)``, indented by four spaces, returning
    the record's LSN. Skips the test where strace is missing."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    child = _CHILD.replace("{write}", write)
    args = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"inject={inject}"]
    done = subprocess.run(
        [*args, sys.executable, "-c", child, str(directory)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split("\n")

#!/usr/bin/env python3
"""zapnb's two everyday commands, runnable from a fresh clone with nothing but Python 3.11+.

    python3 dev.py lab     set up .venv and open JupyterLab on the tutorial notebook
    python3 dev.py test    set up .venv and run every check: lint, types, unit tests, notebooks, slow tiers

Both create the virtual environment ``.venv`` on first use and reinstall only when ``pyproject.toml`` changes.
``python3 dev.py test --quick`` skips the tests marked slow; extra arguments after ``--`` go to pytest.
The full test command also runs the browser test, which needs Chromium: when it is missing and this runs as
root on a machine with apt-get, it installs Debian's ``chromium`` package first (see docs/testing.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".zapnb-install-stamp"
TUTORIAL = "01-getting-started.ipynb"
# tests/browser_support.py reads these: "required" turns a missing Chromium into a failure instead of a skip.
BROWSER_TESTS_ENV = "ZAPNB_BROWSER_TESTS"
CHROMIUM_ENV = "ZAPNB_CHROMIUM"


def _say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def _run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    command = [str(a) for a in args]
    _say(" ".join(command))
    completed = subprocess.run(command, cwd=ROOT, env=env, check=False)
    if completed.returncode != 0:
        _say(f"failed with exit code {completed.returncode}: {' '.join(command)}")
        sys.exit(completed.returncode)


def _install_fingerprint() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def ensure_environment() -> None:
    """Create ``.venv`` and install zapnb with its notebook and test extras, once per pyproject change."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit(f"zapnb needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        _say(f"creating a virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    fingerprint = _install_fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip", env=env)
    _run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[test,bench]", env=env)
    STAMP.write_text(fingerprint)


def _has_chromium() -> bool:
    return bool(os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser"))


def ensure_chromium() -> None:
    """Install Debian's Chromium for the browser test when it is missing and this can: as root, with apt-get.

    The browser test drives it through Playwright's Python package (in the ``test`` extra), which never
    downloads a browser of its own here. Elsewhere, say what to install and let the browser test report it.
    """
    if _has_chromium():
        return
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not as_root or shutil.which("apt-get") is None:
        _say(
            "Chromium is missing, so the browser test will fail: install it (Debian/Ubuntu: apt-get install "
            f"chromium), point {CHROMIUM_ENV} at a Chromium or Chrome executable, or let the test skip with "
            f"{BROWSER_TESTS_ENV}=optional"
        )
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        _say(" ".join(command))
        if subprocess.run(command, env=env, check=False).returncode != 0:
            _say(f"{' '.join(command)} failed: the browser test will report Chromium as missing")
            return


def lab() -> None:
    """Open JupyterLab on the tutorial notebook, with the embedded data directory under ``notebooks/``."""
    env = {**os.environ, "ZAPNB_DATA_DIR": str(ROOT / "notebooks" / "zapnb-data")}
    # Jupyter refuses to start as root unless told to; containers and Binder-like machines often run as root.
    as_root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    notebooks = ROOT / "notebooks"
    _run(BIN / "jupyter", "lab", f"--ServerApp.root_dir={notebooks}", *as_root, notebooks / TUTORIAL, env=env)


def test(quick: bool, pytest_args: list[str]) -> None:
    """Run ruff, mypy --strict, the unit tests and doctests, the notebooks under nbval, and the slow tiers."""
    if not quick:  # the browser test is marked slow
        ensure_chromium()
    _run(BIN / "ruff", "check", ".")
    _run(BIN / "ruff", "format", "--check", ".")
    _run(BIN / "mypy")
    marker = ["-m", "not slow"] if quick else []
    sanitize = ["--nbval-sanitize-with", "notebooks/sanitize.cfg"]
    with tempfile.TemporaryDirectory(prefix="zapnb-notebooks-") as data_dir:  # the notebooks start empty
        # here a missing Chromium fails the browser test rather than skipping it (unless set otherwise)
        required = os.environ.get(BROWSER_TESTS_ENV, "required")
        env = {**os.environ, "ZAPNB_DATA_DIR": data_dir, BROWSER_TESTS_ENV: required}
        _run(
            PYTHON,
            "-m",
            "pytest",
            "--nbval",
            *sanitize,
            *marker,
            "tests",
            "zapnb",
            "notebooks",
            *pytest_args,
            env=env,
        )


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"lab", "test"}:
        sys.exit(__doc__)
    pytest_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    ensure_environment()
    if argv[0] == "lab":
        lab()
    else:
        test(quick="--quick" in argv, pytest_args=pytest_args)


if __name__ == "__main__":
    main(sys.argv[1:])

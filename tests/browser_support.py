"""A real JupyterLab server and a headless Chromium, for the tests that look at zapnb in a browser.

Responsibilities:

- find Chromium and Playwright, and skip with the reason when either is missing (or fail, when
  ``ZAPNB_BROWSER_TESTS=required``, as ``python3 dev.py test`` sets it);
- run JupyterLab on 127.0.0.1 with no token, in its own process group, with every Jupyter directory in a
  temporary directory, and always stop it and its kernels;
- drive a notebook through JupyterLab's own UI: open it, run all cells from the Run menu, wait until every
  cell ran and the kernel is idle, and report a failing cell's traceback.

No Node and no ``playwright install``: Playwright's Python package drives the system Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

#: ``required`` makes a missing Chromium or Playwright a failure instead of a skip.
REQUIRED_ENV = "ZAPNB_BROWSER_TESTS"
#: Path to a Chromium executable, instead of looking for ``chromium`` on ``PATH``.
CHROMIUM_ENV = "ZAPNB_CHROMIUM"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
SERVER_START_TIMEOUT = 60.0
KERNEL_TIMEOUT = 60.0
# JupyterLab user settings: no news or update checks (they reach the network), no toasts over screenshots.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRED_ENV) == "required":
        pytest.fail(f"{reason} ({REQUIRED_ENV}=required: the browser tests must run here)", pytrace=False)
    pytest.skip(reason)


def chromium_executable() -> str:
    """The Chromium to drive, with Playwright importable; skips (or fails when required) otherwise."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright is not installed: pip install -e '.[test]' (never `playwright install`)")
    chosen = os.environ.get(CHROMIUM_ENV)
    if chosen:
        if not os.access(chosen, os.X_OK):
            _unavailable(f"{CHROMIUM_ENV}={chosen} is not an executable file")
        return chosen
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        _unavailable(
            "Chromium is not installed: `apt-get install chromium` (python3 dev.py test does it as root), "
            f"or set {CHROMIUM_ENV} to a Chromium executable"
        )
    return found


@dataclass(frozen=True)
class LabServer:
    """A running JupyterLab: its address and the file its output goes to."""

    url: str
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the server wrote (for failure messages)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def _write_settings(settings_dir: Path) -> None:
    for name, values in LAB_SETTINGS.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@contextmanager
def jupyterlab(root: Path, scratch: Path, env: Mapping[str, str]) -> Iterator[LabServer]:
    """Run JupyterLab serving ``root`` until the block ends; Jupyter's own files go under ``scratch``.

    ``env`` is added to the server's environment, which its kernels inherit (``ZAPNB_DATA_DIR``, say).
    """
    dirs = {
        name: scratch / name.lower()
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "JUPYTERLAB_WORKSPACES_DIR")
    }
    dirs["JUPYTERLAB_SETTINGS_DIR"] = scratch / "lab-settings"
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    _write_settings(dirs["JUPYTERLAB_SETTINGS_DIR"])
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        "--ServerApp.allow_root=True",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    full_env = {**os.environ, **{k: str(v) for k, v in dirs.items()}, **env}
    server = LabServer(url=f"http://127.0.0.1:{port}", log=scratch / "jupyterlab.log")
    with server.log.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=root, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_server(server, process)
        yield server
    finally:
        _stop(server, process)


def _wait_for_server(server: LabServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"JupyterLab exited with code {process.returncode} at start:\n{server.log_tail()}"
            )
        with suppress(OSError):
            if json.loads(_get(f"{server.url}/api/status")).get("started"):
                return
        time.sleep(0.2)
    raise AssertionError(f"JupyterLab did not answer in {SERVER_START_TIMEOUT:.0f} s:\n{server.log_tail()}")


def _stop(server: LabServer, process: subprocess.Popen[bytes]) -> None:
    """Ask the server to shut down (it stops its kernels), then end its process group whatever happens."""
    with suppress(OSError):
        request = urllib.request.Request(f"{server.url}/api/shutdown", method="POST")
        urllib.request.urlopen(request, timeout=5).close()
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
            break


@contextmanager
def chromium_page(executable: str, *, width: int = 1280, height: int = 900) -> Iterator[Page]:
    """A page in a headless Chromium; the browser is closed when the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


# The notebook panel JupyterLab shows, through ``window.jupyterapp`` (expose_app_in_browser).
_PANEL = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
_KERNEL_IDLE = f"""() => {{
    const panel = {_PANEL};
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return Boolean(kernel && kernel.status === "idle" && panel.context.isReady);
}}"""
# Every code cell ran (it has an execution count) and the kernel is idle, or some cell failed.
_ALL_RAN = f"""() => {{
    const panel = {_PANEL};
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    const cells = panel.content.widgets.map(cell => cell.model).filter(model => model.type === "code");
    const failed = cells.some(model => model.outputs.toJSON().some(o => o.output_type === "error"));
    const ran = cells.every(model => model.executionCount !== null);
    return failed || (ran && kernel && kernel.status === "idle");
}}"""
_ERRORS = f"""() => {{
    const panel = {_PANEL};
    return panel.content.widgets.map(cell => cell.model).filter(model => model.type === "code")
        .flatMap(model => model.outputs.toJSON().filter(o => o.output_type === "error")
        .map(o => model.sharedModel.getSource() + "\\n" + o.ename + ": " + o.evalue));
}}"""


_PENDING = f"""() => {{
    const panel = {_PANEL};
    return panel.content.widgets.map(cell => cell.model)
        .filter(model => model.type === "code" && model.executionCount === null)
        .map(model => model.sharedModel.getSource().split("\\n")[0]);
}}"""


def open_notebook(page: Page, server: LabServer, name: str) -> None:
    """Open notebook ``name`` (relative to the server's root) and wait until its kernel is idle."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page.goto(f"{server.url}/lab/tree/{name}")
    try:
        page.wait_for_function(_KERNEL_IDLE, timeout=KERNEL_TIMEOUT * 1000)
    except PlaywrightTimeoutError:
        raise AssertionError(
            f"{name}: no idle kernel after {KERNEL_TIMEOUT:.0f} s; the server said:\n{server.log_tail()}"
        ) from None


def run_all_cells(page: Page, server: LabServer, timeout: float) -> None:
    """Run every cell from JupyterLab's Run menu and wait for the kernel to finish; fail on a cell's error."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    try:
        page.wait_for_function(_ALL_RAN, timeout=timeout * 1000)
    except PlaywrightTimeoutError:
        pending: list[str] = page.evaluate(_PENDING)
        raise AssertionError(
            f"the notebook did not finish in {timeout:.0f} s; cells not run: {pending}; the server said:\n"
            + server.log_tail()
        ) from None
    errors: list[str] = page.evaluate(_ERRORS)
    if errors:
        raise AssertionError("a notebook cell failed in JupyterLab:\n\n" + "\n\n".join(errors))

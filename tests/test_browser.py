"""The live-tables tutorial in a real JupyterLab and a real Chromium (``browser_support`` runs both).

The tutorial ``notebooks/03-live-tables.ipynb`` runs through JupyterLab's UI on a fresh data directory (its
own writer process changes the data meanwhile); then another process inserts a document and the table shows it
without any cell running again; a click selects that row; header clicks sort in the kernel and keep the
selection. Assertions read the live table's DOM (class ``zapnb-livetable``, header cells
``th.zapnb-header[data-column]`` with ``data-sort``, rows ``tr.zapnb-row[data-id]`` marked ``zapnb-selected``,
the status ``.zapnb-status``). A screenshot is left in ``artifacts/browser/live-table.png`` for people to see.

Needs Chromium and Playwright's Python package: without them the test skips, unless
``ZAPNB_BROWSER_TESTS=required`` (``python3 dev.py test`` sets it) makes it fail. See ``docs/testing.md``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser_support import chromium_executable, chromium_page, jupyterlab, open_notebook, run_all_cells

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "notebooks" / "03-live-tables.ipynb"
WRITER = ROOT / "notebooks" / "writer.py"
SCREENSHOT = ROOT / "artifacts" / "browser" / "live-table.png"
# What the tutorial's table holds once its teammate process is done.
TUTORIAL_TASKS = [
    "Sketch the schema",
    "Import last year's data",
    "Review the dashboard",
    "Fix the login bug",
    "Write the release notes",
]
# Run by another process: insert one task into the data directory the notebook uses; print its ID at once.
INSERT_TASK = """
import sys, zapnb
with zapnb.connect(sys.argv[1]) as db:
    print(db.insert("tasks", {"text": sys.argv[2], "owner": "browser test", "done": False}), flush=True)
"""
SHOWS_WITHIN = 2.0  # seconds from another process's commit to the row in the browser
# The texts of one column, in the order the table's rows are in the DOM.
COLUMN_TEXTS = """(root, column) => {
    const index = root.querySelector(`th.zapnb-header[data-column="${column}"]`).cellIndex;
    return Array.from(root.querySelectorAll("tr.zapnb-row"), row => row.cells[index].textContent.trim());
}"""
COLUMN_IS = f"""([root, column, expected]) => {{
    const texts = ({COLUMN_TEXTS})(root, column);
    return JSON.stringify(texts) === JSON.stringify(expected);
}}"""


def copy_without_outputs(root: Path) -> str:
    """Put the tutorial (as a user would open it: no outputs yet) and its writer script into ``root``."""
    notebook = json.loads(TUTORIAL.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    (root / TUTORIAL.name).write_text(json.dumps(notebook))
    shutil.copy(WRITER, root / WRITER.name)
    return TUTORIAL.name


def column(table: Locator, name: str) -> list[str]:
    """The texts of column ``name``, from the top row down."""
    texts: list[str] = table.evaluate(COLUMN_TEXTS, name)
    return texts


def wait_for_column(page: Page, table: Locator, name: str, expected: list[str]) -> None:
    """Wait until column ``name`` shows ``expected``, top to bottom (the kernel sorts, then sends rows)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        page.wait_for_function(COLUMN_IS, arg=[table.element_handle(), name, expected], timeout=10_000)
    except PlaywrightTimeoutError:
        shown = column(table, name)
        raise AssertionError(f"column {name!r} shows {shown}, expected {expected}") from None


def insert_from_another_process(data: Path, text: str) -> tuple[str, float]:
    """Insert a task from a new Python process; return its ID and the moment the commit had returned."""
    with subprocess.Popen(
        [sys.executable, "-c", INSERT_TASK, str(data), text], stdout=subprocess.PIPE, text=True
    ) as writer:
        assert writer.stdout is not None
        task_id = writer.stdout.readline().strip()
        committed = time.monotonic()
        assert writer.wait(timeout=60) == 0
    return task_id, committed


def test_live_table_follows_another_process_and_sorts_in_jupyterlab(tmp_path: Path) -> None:
    chromium = chromium_executable()
    root, data, scratch = tmp_path / "root", tmp_path / "data", tmp_path / "jupyter"
    root.mkdir()
    notebook = copy_without_outputs(root)
    with (
        jupyterlab(root, scratch, {"ZAPNB_DATA_DIR": str(data)}) as server,
        chromium_page(chromium) as page,
    ):
        open_notebook(page, server, notebook)
        run_all_cells(page, server, timeout=120)
        tables = page.locator(".zapnb-livetable")
        table = tables.first
        shows_the_tutorial_result(table, open_of_ann=tables.nth(1))
        new_row, text = shows_a_row_from_another_process(table, data)
        sorts_by_a_header_click(page, table, new_row, [*TUTORIAL_TASKS, text])
        save_screenshot(page, table)
    print(f"screenshot: {SCREENSHOT}")


def shows_the_tutorial_result(table: Locator, open_of_ann: Locator) -> None:
    """Every task the tutorial and its teammate process wrote; ann's open tasks, all done, are gone."""
    from playwright.sync_api import expect

    expect(table.locator("tr.zapnb-row")).to_have_count(len(TUTORIAL_TASKS))
    assert column(table, "text") == TUTORIAL_TASKS
    expect(table.locator(".zapnb-status")).to_have_text(re.compile(rf"^{len(TUTORIAL_TASKS)} rows\b"))
    expect(open_of_ann.locator("tr.zapnb-row")).to_have_count(0)
    expect(open_of_ann.locator(".zapnb-status")).to_have_text(re.compile(r"^0 rows\b"))


def shows_a_row_from_another_process(table: Locator, data: Path) -> tuple[Locator, str]:
    """A task inserted by a new process appears within :data:`SHOWS_WITHIN` seconds, and can be selected."""
    from playwright.sync_api import expect

    text = f"Check the browser {uuid.uuid4().hex[:8]}"
    task_id, committed = insert_from_another_process(data, text)
    new_row = table.locator(f'tr.zapnb-row[data-id="{task_id}"]')
    expect(new_row).to_have_count(1, timeout=SHOWS_WITHIN * 1000)
    shown_after = time.monotonic() - committed
    assert shown_after < SHOWS_WITHIN, f"the row showed {shown_after:.2f} s after the commit"
    print(f"a row from another process showed {shown_after:.2f} s after its commit")
    expect(new_row).to_contain_text(text)
    expect(table.locator(".zapnb-status")).to_have_text(re.compile(rf"^{len(TUTORIAL_TASKS) + 1} rows\b"))
    assert column(table, "text") == [*TUTORIAL_TASKS, text]
    new_row.click()
    expect(new_row).to_have_class(re.compile(r"\bzapnb-selected\b"))
    return new_row, text


def sorts_by_a_header_click(page: Page, table: Locator, selected: Locator, texts: list[str]) -> None:
    """One click on the text header sorts ascending, the next descending; the selection stays."""
    from playwright.sync_api import expect

    header = table.locator('th.zapnb-header[data-column="text"]')
    header.click()
    expect(header).to_have_attribute("data-sort", "asc")
    wait_for_column(page, table, "text", sorted(texts))
    header.click()
    expect(header).to_have_attribute("data-sort", "desc")
    wait_for_column(page, table, "text", sorted(texts, reverse=True))
    expect(table.locator("th.zapnb-header[data-sort]")).to_have_count(1)
    expect(table.locator("tr.zapnb-selected")).to_have_count(1)
    expect(selected).to_have_class(re.compile(r"\bzapnb-selected\b"))


def save_screenshot(page: Page, table: Locator) -> None:
    """Leave a picture of the notebook around the table in ``artifacts/browser/`` (gitignored)."""
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    table.scroll_into_view_if_needed()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 0

"""Re-execute the tutorial notebooks in place so their stored outputs are current (nbval compares them).

Run with the project's environment: ``.venv/bin/python scripts/execute_notebooks.py [notebook ...]``.
Widget state, which changes on every run, is stripped from the notebook metadata before saving.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as data_dir:
        resources = {"metadata": {"path": str(path.parent)}}
        client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources=resources)
        os.environ["ZAPNB_DATA_DIR"] = (
            data_dir  # the kernel inherits it: every run starts from an empty database
        )
        client.execute()
    notebook.metadata.pop("widgets", None)
    for number, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{number}"
    nbformat.write(notebook, path)
    print(f"executed {path.name}")


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in paths:
        execute(path)


if __name__ == "__main__":
    main(sys.argv[1:])

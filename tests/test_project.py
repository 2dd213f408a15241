"""The package's public surface and the project's promises about itself."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import zapnb
from zapnb import errors

ROOT = Path(__file__).resolve().parent.parent


def test_every_public_name_resolves() -> None:
    for name in zapnb.__all__:
        assert getattr(zapnb, name) is not None, name
    assert set(zapnb.__all__) <= set(dir(zapnb))


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        zapnb.nope  # noqa: B018


def test_every_error_derives_from_zaperror_and_is_exported() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) > 5
    for cls in classes:
        assert issubclass(cls, zapnb.ZapError) or issubclass(cls, zapnb.ZapWarning), cls
        assert cls.__doc__, f"{cls.__name__} has no docstring"
        assert getattr(zapnb, cls.__name__) is cls, f"{cls.__name__} is not exported from zapnb"


def test_import_is_cheap_and_has_no_side_effects() -> None:
    code = (
        "import sys, zapnb; heavy = {'polars', 'pyarrow', 'lance', 'IPython', 'anywidget', 'numpy'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_readme_quick_start_has_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["python3 dev.py lab", "python3 dev.py test"]


def test_ci_runs_the_readme_test_command() -> None:
    assert "python3 dev.py test" in (ROOT / ".ci" / "run").read_text()


def test_changelog_has_an_unreleased_section() -> None:
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()


def test_binder_installs_the_package_with_the_notebook_extra() -> None:
    requirements = (ROOT / "binder" / "requirements.txt").read_text()
    assert re.search(r"^-e \.\[notebook\]$", requirements, re.M)
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"


def test_readme_example_prints_what_the_readme_shows(capsys: pytest.CaptureFixture[str]) -> None:
    section = (ROOT / "README.md").read_text().split("## A first look", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    shown = re.search(r"```text\n(.*?)```", section, re.S)
    assert code is not None
    assert shown is not None
    exec(compile(code.group(1), "README.md", "exec"), {})
    assert capsys.readouterr().out == shown.group(1)

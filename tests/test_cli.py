"""The ``zapnb`` command line (:mod:`zapnb.cli`), run as a real subprocess on data directories in tmp_path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import zapnb
from zapnb import v
from zapnb.cli import COMMANDS, FILE_MODULE, CommandLineError, load_schema
from zapnb.schema import Schema

ROOT = Path(__file__).resolve().parent.parent

NOTES_SOURCE = """\
import zapnb
from zapnb import v

schema = zapnb.define_schema({"notes": zapnb.define_table({"text": v.string()}).index("by_text", ["text"])})
with_title = zapnb.define_schema(
    {"notes": zapnb.define_table({"text": v.string(), "title": v.string()}).index("by_text", ["text"])}
)
optional_title = zapnb.define_schema(
    {
        "notes": zapnb.define_table({"text": v.string(), "title": v.optional(v.string())})
        .index("by_text", ["text"])
        .index("by_title", ["title"])
    }
)
label = "not a schema"
"""
NOTES = zapnb.define_schema({"notes": zapnb.define_table({"text": v.string()}).index("by_text", ["text"])})
REPORT = re.compile(r"Deployed in \d+\.\d\d s: ")


def run_cli(*args: str, cwd: Path, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m zapnb ARGS`` in ``cwd``, with ``$ZAPNB_DATA_DIR`` set to ``data_dir`` (else unset)."""
    env = {name: value for name, value in os.environ.items() if name != "ZAPNB_DATA_DIR"}
    if data_dir is not None:
        env["ZAPNB_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-m", "zapnb", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def notes_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes_schema.py"
    path.write_text(NOTES_SOURCE)
    return path


# --- deploy -------------------------------------------------------------------------------------------------


def test_deploy_prints_the_report_and_makes_the_schema_active(tmp_path: Path, notes_file: Path) -> None:
    done = run_cli("deploy", "notes_schema.py", "--data", "data", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert REPORT.sub("Deployed in X s: ", done.stdout) == (
        "Deployed in X s: tables created: notes; indexes created: notes.by_text; indexes removed: none; "
        "0 documents checked.\n"
    )
    with zapnb.connect(tmp_path / "data") as db:
        assert db.schema == NOTES


def test_deploy_checks_existing_documents_and_builds_indexes(
    tmp_path: Path, notes_file: Path, deployed: Callable[[Schema], zapnb.Database]
) -> None:
    db = deployed(NOTES)
    db.insert_many("notes", [{"text": "a"}, {"text": "b"}])
    done = run_cli("deploy", f"{notes_file}:optional_title", "--data", str(db.path), cwd=ROOT)
    assert (done.returncode, done.stderr) == (0, "")
    assert "indexes created: notes.by_title; indexes removed: none; 2 documents checked.\n" in done.stdout
    assert db.schema is not None
    assert "by_title" in [index.name for index in db.schema.tables["notes"].indexes]


def test_a_refused_deploy_exits_1_and_keeps_the_old_schema(
    tmp_path: Path, notes_file: Path, deployed: Callable[[Schema], zapnb.Database]
) -> None:
    db = deployed(NOTES)
    note = db.insert("notes", {"text": "no title"})
    done = run_cli("deploy", "notes_schema.py:with_title", "--data", str(db.path), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("zapnb deploy: error: Schema validation failed.\n")
    assert f'Document with ID "{note}" in table "notes" does not match the schema: ' in done.stderr
    assert "Traceback" not in done.stderr
    assert db.schema == NOTES
    with zapnb.connect(db.path) as again:
        assert again.schema == NOTES


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("missing_module_for_cli:schema", "no module named 'missing_module_for_cli'."),
        ("notes_schema.py:nope", "notes_schema.py has no attribute 'nope'. notes_schema.py defines "),
        ("notes_schema.py:label", "notes_schema.py:label is a str, not a zapnb.Schema."),
        ("absent.py", "no file "),
        ("broken.py", "broken.py, line 2: ZeroDivisionError: division by zero\n"),
        ("notes_schema.py:not-a-name", "not a schema name."),
    ],
)
def test_a_bad_schema_argument_exits_2_and_creates_nothing(
    tmp_path: Path, notes_file: Path, schema: str, message: str
) -> None:
    (tmp_path / "broken.py").write_text("import zapnb\nschema = 1 / 0\n")
    done = run_cli("deploy", schema, "--data", "data", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"zapnb deploy: error: SCHEMA {schema!r}: ")
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("args", [[], ["deploy"], ["frobnicate"], ["deploy", "x:schema", "--bogus"]])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: zapnb")


def test_the_installed_script_deploys_a_module_from_the_current_directory(
    tmp_path: Path, notes_file: Path
) -> None:
    script = Path(sys.executable).parent / "zapnb"  # made by `pip install -e .` from [project.scripts]
    done = subprocess.run(
        [str(script), "deploy", "notes_schema", "--data", "data"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "tables created: notes;" in done.stdout


# --- info ---------------------------------------------------------------------------------------------------


def test_info_describes_the_default_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    table = zapnb.define_table({"text": v.string(), "tag": v.string(), "embedding": v.array(v.float64())})
    schema = zapnb.define_schema(
        {
            "notes": table.index("by_text", ["text"])
            .index("by_tag_text", ["tag", "text"], staged=True)
            .search_index("search_text", search_field="text", filter_fields=["tag"])
            .vector_index("by_embedding", vector_field="embedding", dimensions=2),
            "empty": zapnb.define_table({}),
        }
    )
    with zapnb.connect(data) as db:
        db.insert("scratch", {"anything": 1})
        db.deploy(schema, progress=False)
        db.insert("notes", {"text": "a", "tag": "t", "embedding": [1.0, 0.0]})
        tx = db.transaction()
        lsn = tx.snapshot.lsn
        tx.discard()
    done = run_cli("info", cwd=tmp_path, data_dir=data)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"Data directory: {data.resolve()}\n"
        "Format version: 1\n"
        f"Last LSN: {lsn}\n"
        "Schema: 2 tables, 4 indexes\n"
        "Tables:\n"
        "  empty: 0 documents\n"
        "  notes: 1 document\n"
        "    by_text: text\n"
        "    by_tag_text: tag, text (staged)\n"
        "    search_text: search text (filter: tag)\n"
        "    by_embedding: vector embedding, 2 dimensions\n"
        "  scratch: 1 document, not in the schema\n"
    )


def test_info_refuses_a_directory_without_a_database(tmp_path: Path) -> None:
    done = run_cli("info", "--data", "nowhere", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("zapnb info: error: No zapnb database in nowhere.")
    assert not (tmp_path / "nowhere").exists()


# --- loading a schema in this process -----------------------------------------------------------------------


def test_a_schema_file_imports_its_neighbours_and_leaves_sys_path_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "cli_test_tables.py").write_text(
        "import zapnb\nfrom zapnb import v\nnotes = zapnb.define_table({'text': v.string()})\n"
    )
    (tmp_path / "app.py").write_text(
        "import zapnb\nfrom cli_test_tables import notes\n"
        "class Holder:\n    schema = zapnb.define_schema({'notes': notes})\n"
    )
    path_before = list(sys.path)
    try:
        schema = load_schema(f"{tmp_path / 'app.py'}:Holder.schema")
    finally:
        sys.modules.pop("cli_test_tables", None)
    assert list(schema.tables) == ["notes"]
    assert sys.path == path_before
    assert FILE_MODULE not in sys.modules


def test_a_load_error_names_the_argument() -> None:
    with pytest.raises(CommandLineError, match="defines schema: name one after a colon") as info:
        load_schema("zapnb.examples.zapdev:scheme")
    assert info.value.argument == "zapnb.examples.zapdev:scheme"


# --- documentation ------------------------------------------------------------------------------------------


def test_every_command_and_option_is_documented(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "storage.md").read_text().split("## Command line", 1)[1]
    listed = run_cli("--help", cwd=tmp_path).stdout
    assert re.findall(r"^    (\w+)\s{2,}", listed, flags=re.MULTILINE) == list(COMMANDS)
    for command in COMMANDS:
        assert f"`zapnb {command} " in docs, command
        options = set(re.findall(r"--[a-z][a-z-]+", run_cli(command, "--help", cwd=tmp_path).stdout))
        for option in options - {"--help"}:
            assert option in docs, (command, option)
    assert "$ZAPNB_DATA_DIR" in docs

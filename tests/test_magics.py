"""The IPython extension (zapnb.magics): %load_ext zapnb, the %zapnb magics and the display of queries.

Every test drives a real IPython shell (reset between tests) against a real database in tmp_path.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import polars as pl
import pytest
from IPython.core.interactiveshell import InteractiveShell
from polars.testing import assert_frame_equal
from traitlets.config import Config

import zapnb
from zapnb import v
from zapnb.db import Database
from zapnb.errors import ClosedError, FilterExpressionError, IndexNotFoundError, InvalidQueryError
from zapnb.magics import USAGE, QueryText, ZapnbMagics, parse_query

ROOT = Path(__file__).resolve().parent.parent

SCHEMA = zapnb.define_schema(
    {
        "messages": zapnb.define_table({"text": v.string(), "project": v.string(), "n": v.int64()})
        .index("by_project_n", ["project", "n"])
        .index("by_n", ["n"], staged=True),
        "projects": zapnb.define_table({"name": v.string()}),
    }
)


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A fresh IPython shell working in tmp_path, torn down (and its databases closed) after the test."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("ZAPNB_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    try:
        yield shell
    finally:
        for value in list(shell.user_ns.values()):
            if isinstance(value, Database):
                value.close()
        InteractiveShell.clear_instance()


def run_cell(ip: InteractiveShell, source: str) -> Any:
    """``ip.run_cell(source)``: its ExecutionResult."""
    return cast("Callable[[str], Any]", ip.run_cell)(source)


def formatter(ip: InteractiveShell) -> Any:
    """The shell's display formatter."""
    assert ip.display_formatter is not None
    return ip.display_formatter


def run(ip: InteractiveShell, source: str) -> Any:
    """Run a cell that must succeed; return its value."""
    result = run_cell(ip, source)
    result.raise_error()
    return result.result


def fails(ip: InteractiveShell, source: str, error: type[BaseException]) -> BaseException:
    """Run a cell that must fail with ``error``; return the exception."""
    result = run_cell(ip, source)
    assert isinstance(result.error_in_exec, error), result.error_in_exec
    return result.error_in_exec


@pytest.fixture
def loaded(ip: InteractiveShell, tmp_path: Path) -> InteractiveShell:
    """A shell with the extension loaded and a database holding messages, projects and a schemaless table."""
    run(ip, "%load_ext zapnb")
    run(ip, f"%zapnb connect {tmp_path / 'data'}")
    db = ip.user_ns["db"]
    db.deploy(SCHEMA, progress=False)
    db.insert_many("messages", [{"text": f"m{i}", "project": "ab"[i % 2], "n": i} for i in range(5)])
    db.insert("notes", {"body": "no schema"})
    return ip


def texts(frame: pl.DataFrame) -> list[str]:
    return list(frame["text"])


# --- loading and unloading ----------------------------------------------------------------------------------


def registered(ip: InteractiveShell) -> dict[str, bool]:
    bundles = formatter(ip).mimebundle_formatter
    printers = {
        **bundles.deferred_printers,
        **{(c.__module__, c.__name__): f for c, f in bundles.type_printers.items()},
    }
    return {
        "line": "zapnb" in ip.magics_manager.magics["line"],
        "cell": "zapnb" in ip.magics_manager.magics["cell"],
        "formatter": ("zapnb.queries", "Query") in printers,
        "config": any(isinstance(c, ZapnbMagics) for c in ip.configurables),
    }


def test_load_ext_registers_the_magics_and_the_display_and_unload_ext_removes_them(
    ip: InteractiveShell,
) -> None:
    assert registered(ip) == {"line": False, "cell": False, "formatter": False, "config": False}
    run(ip, "%load_ext zapnb")
    assert registered(ip) == {"line": True, "cell": True, "formatter": True, "config": True}
    run(ip, "%unload_ext zapnb")
    assert registered(ip) == {"line": False, "cell": False, "formatter": False, "config": False}
    assert "ZapnbMagics" not in ip.magics_manager.registry
    run(ip, "%load_ext zapnb")
    assert registered(ip) == {"line": True, "cell": True, "formatter": True, "config": True}
    run(ip, "%reload_ext zapnb")
    assert sum(isinstance(c, ZapnbMagics) for c in ip.configurables) == 1


def test_unload_ext_forgets_the_current_database_but_leaves_it_open_and_bound(
    ip: InteractiveShell, tmp_path: Path
) -> None:
    run(ip, "%load_ext zapnb")
    db = run(ip, f"%zapnb connect {tmp_path / 'data'}")
    run(ip, "%unload_ext zapnb")
    assert ip.user_ns["db"] is db
    assert db.insert("notes", {"text": "still open"})
    run(ip, "%load_ext zapnb")
    error = fails(ip, "%zapnb tables", InvalidQueryError)
    assert "needs a database" in str(error)


def test_loading_the_extension_imports_nothing_heavy(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_cell('%load_ext zapnb').raise_error()\n"
        "ip.run_cell('%zapnb help').raise_error()\n"
        "heavy = {'polars', 'pyarrow', 'lance', 'anywidget', 'ipywidgets', 'numpy', 'zapnb.db'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    env = {"IPYTHONDIR": str(tmp_path / "ipython"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path, env=env
    ).stdout
    assert out.splitlines()[-1] == "[]"


def test_help_prints_the_usage_and_is_the_magic_docstring(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "%load_ext zapnb")
    run(ip, "%zapnb")
    run(ip, "%zapnb help")
    assert capsys.readouterr().out == USAGE + "\n" + USAGE + "\n"
    assert ip.magics_manager.magics["line"]["zapnb"].__doc__ == USAGE


# --- connect and use ----------------------------------------------------------------------------------------


def test_connect_opens_binds_db_and_becomes_current(loaded: InteractiveShell, tmp_path: Path) -> None:
    db = loaded.user_ns["db"]
    assert isinstance(db, Database)
    assert db.path == tmp_path / "data"
    assert run(loaded, "%zapnb query messages.count()") == 5


def test_connect_as_binds_another_name_and_switches_the_current_database(
    loaded: InteractiveShell, tmp_path: Path
) -> None:
    other = run(loaded, f"%zapnb connect {tmp_path / 'other'} --as other")
    assert loaded.user_ns["other"] is other
    assert loaded.user_ns["db"] is not other
    fails(loaded, "%zapnb query messages", InvalidQueryError)  # the other database has no messages
    run(loaded, "%zapnb use db")
    assert run(loaded, "%zapnb query messages.count()") == 5


def test_connect_ignores_a_trailing_comment(loaded: InteractiveShell, tmp_path: Path) -> None:
    other = run(loaded, f"%zapnb connect {tmp_path / 'c#1'} --as other   # a comment, as in the docs")
    assert loaded.user_ns["other"] is other
    assert other.path == tmp_path / "c#1"  # a # inside a word is part of it


def test_connect_again_to_the_same_directory_reuses_the_open_database(
    loaded: InteractiveShell, tmp_path: Path
) -> None:
    first = loaded.user_ns["db"]
    again = run(loaded, f"%zapnb connect {tmp_path / 'data'} --as again")
    assert again is first
    separate = run(loaded, f"%zapnb connect {tmp_path / 'data'} --as fast --durability process")
    assert separate is not first
    assert separate.query("messages").count() == 5
    first.close()
    reopened = run(loaded, f"%zapnb connect {tmp_path / 'data'}")
    assert reopened is not first
    assert reopened.query("messages").count() == 5


def test_connect_without_a_path_uses_zapnb_data_dir_then_zapnb_data(
    ip: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(ip, "%load_ext zapnb")
    assert run(ip, "%zapnb connect").path == Path("zapnb-data")
    assert (tmp_path / "zapnb-data").is_dir()
    monkeypatch.setenv("ZAPNB_DATA_DIR", str(tmp_path / "from-env"))
    assert run(ip, "%zapnb connect --as env").path == tmp_path / "from-env"


def test_connect_expands_variables_and_home(
    ip: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(ip, "%load_ext zapnb")
    ip.user_ns["where"] = str(tmp_path / "expanded")
    assert run(ip, "%zapnb connect {where}").path == tmp_path / "expanded"
    assert run(ip, "%zapnb connect $where --as second").path == tmp_path / "expanded"
    ip.user_ns["name"] = "spaced"
    assert run(ip, f"%zapnb connect '{tmp_path / 'a b'}' --as {{name}}").path == tmp_path / "a b"
    assert "spaced" in ip.user_ns
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert run(ip, "%zapnb connect ~/data --as homed").path == tmp_path / "home" / "data"


def test_settings_come_from_the_ipython_configuration(ip: InteractiveShell, tmp_path: Path) -> None:
    ip.config.ZapnbMagics.connect_as = "configured"
    ip.config.ZapnbMagics.short_errors = False
    run(ip, "%load_ext zapnb")
    magics = ip.magics_manager.registry["ZapnbMagics"]
    assert (magics.connect_as, magics.live_tables, magics.short_errors) == ("configured", True, False)
    db = run(ip, f"%zapnb connect {tmp_path / 'data'}")
    assert ip.user_ns["configured"] is db


def test_config_connect_as_changes_the_default_name(ip: InteractiveShell, tmp_path: Path) -> None:
    run(ip, "%load_ext zapnb")
    run(ip, "%config ZapnbMagics.connect_as = 'store'")
    db = run(ip, f"%zapnb connect {tmp_path / 'data'}")
    assert ip.user_ns["store"] is db
    assert "db" not in ip.user_ns


def test_connect_argument_mistakes_are_usage_errors(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    from IPython.core.error import UsageError

    run(ip, "%load_ext zapnb")
    fails(ip, "%zapnb connect --durability fast", UsageError)
    fails(ip, "%zapnb connect a b", UsageError)
    err = capsys.readouterr().err
    assert "UsageError: %zapnb connect: argument --durability: invalid choice: 'fast'" in err
    assert "UsageError: %zapnb connect: unrecognized arguments: b" in err
    error = fails(ip, "%zapnb connect data --as 2x", InvalidQueryError)
    assert str(error) == "%zapnb connect takes a Python variable name, not '2x'."


def test_use_picks_a_database_opened_in_python(ip: InteractiveShell, tmp_path: Path) -> None:
    run(ip, "%load_ext zapnb")
    run(
        ip,
        f"import zapnb\nmine = zapnb.connect({str(tmp_path / 'mine')!r})\nmine.insert('notes', {{'a': 1}})",
    )
    assert run(ip, "%zapnb use mine") is None
    assert run(ip, "%zapnb query notes.count()") == 1
    assert "db" not in ip.user_ns


def test_use_of_something_else_says_what_to_pass(ip: InteractiveShell) -> None:
    run(ip, "%load_ext zapnb\nnumber = 3")
    error = fails(ip, "%zapnb use number", InvalidQueryError)
    assert str(error) == (
        "number holds a int: %zapnb use takes the name of a variable holding a database, as in "
        "number = zapnb.connect(PATH), or open one with %zapnb connect PATH --as number."
    )
    error = fails(ip, "%zapnb use nothing", InvalidQueryError)
    assert str(error).startswith("nothing is not defined: %zapnb use takes")


# --- tables -------------------------------------------------------------------------------------------------


def test_tables_lists_schema_and_schemaless_tables_with_counts_and_indexes(loaded: InteractiveShell) -> None:
    frame = run(loaded, "%zapnb tables")
    expected = pl.DataFrame(
        {
            "table": ["messages", "notes", "projects"],
            "documents": [5, 1, 0],
            "indexes": [["by_n (staged)", "by_project_n"], [], []],
        },
        schema={"table": pl.String, "documents": pl.Int64, "indexes": pl.List(pl.String)},
    )
    assert_frame_equal(frame, expected)
    loaded.user_ns["db"].delete(loaded.user_ns["db"].query("notes").first()["_id"])
    assert run(loaded, "%zapnb tables")["documents"].to_list() == [5, 0, 0]


def test_tables_of_an_empty_database_is_an_empty_typed_frame(ip: InteractiveShell, tmp_path: Path) -> None:
    run(ip, f"%load_ext zapnb\n%zapnb connect {tmp_path / 'empty'}")
    frame = run(ip, "%zapnb tables")
    assert frame.schema == pl.Schema(
        {"table": pl.String(), "documents": pl.Int64(), "indexes": pl.List(pl.String())}
    )
    assert frame.height == 0


def test_tables_sees_commits_from_another_process(loaded: InteractiveShell, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    code = f"import zapnb\nwith zapnb.connect({data!r}) as db: db.insert('projects', {{'name': 'x'}})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert run(loaded, "%zapnb tables")["documents"].to_list() == [5, 1, 1]


# --- query --------------------------------------------------------------------------------------------------


def test_query_runs_the_chain_in_the_user_namespace_and_stores_the_result(loaded: InteractiveShell) -> None:
    run(loaded, "who = 'a'")
    result = run(
        loaded,
        "%zapnb query recent = messages.with_index('by_project_n', lambda q: q.eq('project', who))"
        ".order('desc').take(2)",
    )
    assert texts(result) == ["m4", "m2"]
    assert loaded.user_ns["recent"] is result


def test_query_collects_a_chain_that_ends_in_a_query(loaded: InteractiveShell) -> None:
    everything = run(loaded, "%zapnb query messages")
    assert texts(everything) == ["m0", "m1", "m2", "m3", "m4"]
    assert everything.columns == ["_id", "_creationTime", "text", "project", "n"]
    newest = run(loaded, "%zapnb query newest = messages.order('desc')")
    assert texts(newest) == ["m4", "m3", "m2", "m1", "m0"]
    assert texts(loaded.user_ns["newest"]) == texts(newest)


def test_query_returns_any_terminal_result(loaded: InteractiveShell) -> None:
    assert run(loaded, "%zapnb query messages.filter(lambda q: q.gte(q.field('n'), 3)).count()") == 2
    first = run(loaded, "%zapnb query top = messages.order('desc').first()")
    assert first["text"] == "m4"
    assert loaded.user_ns["top"] is first
    assert run(loaded, "%zapnb query projects.first()") is None
    assert run(loaded, "%zapnb query notes.first()")["body"] == "no schema"
    page = run(loaded, "%zapnb query page = messages.paginate(num_items=2)")
    assert texts(page.page) == ["m0", "m1"]
    assert not page.is_done


def test_query_in_an_assignment_and_with_a_trailing_semicolon(loaded: InteractiveShell) -> None:
    assert run(loaded, "frame = %zapnb query messages.take(1)") is None
    assert texts(loaded.user_ns["frame"]) == ["m0"]
    result = run_cell(loaded, "%zapnb query last = messages.order('desc').take(1);")
    result.raise_error()
    assert texts(loaded.user_ns["last"]) == ["m4"]


def test_query_does_not_expand_braces_in_the_chain(loaded: InteractiveShell) -> None:
    loaded.user_ns["n"] = 99
    # {n} would be 99 if IPython expanded the line; it stays a set literal (of 99), which a filter rejects
    error = fails(
        loaded, "%zapnb query messages.filter(lambda q: q.eq(q.field('n'), {n}))", FilterExpressionError
    )
    assert "not set {99}" in str(error)


def test_cell_query_takes_the_chain_over_several_lines(loaded: InteractiveShell) -> None:
    cell = (
        "%%zapnb query mine\n"
        "messages  # every message of project a\n"
        "    .with_index('by_project_n', lambda q: q.eq('project', 'a').gte('n', 1))\n"
        "\n"
        "    .order('desc')  # newest first\n"
    )
    assert texts(run(loaded, cell)) == ["m4", "m2"]
    assert texts(loaded.user_ns["mine"]) == ["m4", "m2"]
    assert texts(run(loaded, "%%zapnb query also =\nmessages.take(1)")) == ["m0"]
    assert texts(loaded.user_ns["also"]) == ["m0"]
    assert run(loaded, "%%zapnb query\nmessages\n.count()") == 5


def test_parse_query_reads_the_variable_the_table_and_the_chain() -> None:
    assert parse_query(" x = t.take(1) ") == QueryText("x", "t", ".take(1)")
    assert parse_query("t.filter(lambda q: q.eq(q.field('a'), 1))") == QueryText(
        None, "t", ".filter(lambda q: q.eq(q.field('a'), 1))"
    )
    assert parse_query("t\n  .take(2);", "y") == QueryText("y", "t", ".take(2)")
    assert parse_query("t  # all") == QueryText(None, "t", "# all")


# --- errors -------------------------------------------------------------------------------------------------


def test_magics_before_connect_say_how_to_connect(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "%load_ext zapnb")
    fails(ip, "%zapnb tables", InvalidQueryError)
    error = fails(ip, "%zapnb query messages", InvalidQueryError)
    assert isinstance(error, InvalidQueryError)
    assert error.method == "query"
    assert capsys.readouterr().out == (
        "InvalidQueryError: %zapnb tables needs a database: run %zapnb connect [PATH] first, or %zapnb use "
        "NAME for one opened with NAME = zapnb.connect(PATH).\n"
        "InvalidQueryError: %zapnb query needs a database: run %zapnb connect [PATH] first, or %zapnb use "
        "NAME for one opened with NAME = zapnb.connect(PATH).\n"
    )


def test_a_closed_current_database_says_how_to_reopen_it(loaded: InteractiveShell, tmp_path: Path) -> None:
    loaded.user_ns["db"].close()
    error = fails(loaded, "%zapnb tables", ClosedError)
    path = tmp_path / "data"
    assert str(error) == f"The current database, {path}, is closed: open it again with %zapnb connect {path}."


def test_unknown_table_suggests_the_closest_name(
    loaded: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    error = fails(loaded, "%zapnb query mesages.take(2)", InvalidQueryError)
    path = loaded.user_ns["db"].path
    assert str(error) == (
        f"Table 'mesages' not found in the database at {path} (did you mean 'messages'?). "
        "Its tables: messages, notes, projects. %zapnb tables lists them."
    )
    assert capsys.readouterr().out == f"InvalidQueryError: {error}\n"


def test_bad_chains_are_invalid_query_errors(loaded: InteractiveShell) -> None:
    error = fails(loaded, "%zapnb query messages.colect()", InvalidQueryError)
    assert str(error).startswith("Queries have no method 'colect' (did you mean 'collect'?). A chain reads")
    error = fails(loaded, "%zapnb query messages.take(", InvalidQueryError)
    assert str(error).startswith("The query 'messages.take(' is not valid Python ('(' was never closed).")
    error = fails(loaded, "%zapnb query messages.take(nope)", InvalidQueryError)
    assert str(error).startswith(
        "The query 'messages.take(nope)' failed: NameError: name 'nope' is not defined."
    )
    assert isinstance(error.__cause__, NameError)
    error = fails(loaded, "%zapnb query messages.take(1, 2)", InvalidQueryError)
    assert "failed: TypeError: " in str(error)
    error = fails(loaded, "%zapnb query recent messages", InvalidQueryError)
    assert str(error).startswith(
        "After the table 'recent' comes 'messages'; the chain goes on with .method(...)"
    )
    error = fails(loaded, "%%zapnb query a\nb = messages", InvalidQueryError)
    assert (
        str(error)
        == "The result already goes to 'a' (named after %%zapnb query); remove 'b =' from the cell."
    )
    error = fails(loaded, "%%zapnb query x =\n# only a comment", InvalidQueryError)
    assert (
        str(error)
        == "%zapnb query needs a table name, then an optional method chain; got '# only a comment'."
    )
    assert "recent" not in loaded.user_ns


def test_zapnb_errors_from_the_chain_pass_through(loaded: InteractiveShell) -> None:
    error = fails(loaded, "%zapnb query messages.with_index('by_x')", IndexNotFoundError)
    assert str(error) == "Index messages.by_x not found."


def test_errors_are_shown_in_one_line_unless_short_errors_is_off(
    loaded: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    fails(loaded, "%zapnb query messages.with_index('by_x')", IndexNotFoundError)
    assert capsys.readouterr().out == "IndexNotFoundError: Index messages.by_x not found.\n"
    run(loaded, "%config ZapnbMagics.short_errors = False")
    fails(loaded, "%zapnb query messages.with_index('by_x')", IndexNotFoundError)
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    assert "Traceback (most recent call last)" in out
    assert "queries.py" in out
    assert out.rstrip().endswith("IndexNotFoundError: Index messages.by_x not found.")


def test_unknown_commands_and_misplaced_cell_bodies_are_usage_errors(
    loaded: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    from IPython.core.error import UsageError

    fails(loaded, "%zapnb bogus", UsageError)
    fails(loaded, "%zapnb tabels", UsageError)
    fails(loaded, "%%zapnb tables\nmessages", UsageError)
    fails(loaded, "%zapnb tables now", UsageError)
    assert capsys.readouterr().err == (
        "UsageError: Unknown command %zapnb bogus: use connect, use, tables or query (%zapnb help).\n"
        "UsageError: Unknown command %zapnb tabels (did you mean 'tables'?): use connect, use, tables or "
        "query (%zapnb help).\n"
        "UsageError: Only %%zapnb query takes a cell body, not 'tables'.\n"
        "UsageError: %zapnb tables takes no arguments, not 'now'.\n"
    )


# --- display of queries -------------------------------------------------------------------------------------


def test_queries_show_as_text_when_live_tables_are_off(loaded: InteractiveShell) -> None:
    run(loaded, "%config ZapnbMagics.live_tables = False")
    query = run(loaded, "db.query('messages').order('desc')")
    data, _ = formatter(loaded).format(query)
    assert data == {"text/plain": "query('messages').order('desc')"}


def test_queries_show_as_text_where_html_cannot_be_shown(loaded: InteractiveShell) -> None:
    formatter(loaded).active_types = ["text/plain"]
    data, _ = formatter(loaded).format(loaded.user_ns["db"].query("messages"))
    assert data == {"text/plain": "query('messages')"}


def test_a_query_inside_a_transaction_shows_as_text(loaded: InteractiveShell) -> None:
    with loaded.user_ns["db"].transaction() as tx:
        data, _ = formatter(loaded).format(tx.query("messages"))
    assert data == {"text/plain": "query('messages')"}


@pytest.fixture
def widgets(loaded: InteractiveShell) -> Iterator[InteractiveShell]:
    """The loaded shell; every widget shown during the test is closed after it."""
    import ipywidgets

    try:
        yield loaded
    finally:
        ipywidgets.Widget.close_all()


def shown_widget(data: dict[str, Any]) -> Any:
    """The widget whose view a display bundle holds."""
    from ipywidgets import widget_serialization

    model_id = data["application/vnd.jupyter.widget-view+json"]["model_id"]
    return widget_serialization["from_json"](f"IPY_MODEL_{model_id}", None)


def test_a_query_in_a_cell_shows_as_a_live_table(
    widgets: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    from zapnb.widgets import LiveTable

    query = run(widgets, "db.query('messages').order('desc')")
    assert capsys.readouterr().out == "Out[0]: LiveTable(messages: 5 rows × 5 columns, sorted by none)\n"
    data, _ = formatter(widgets).format(query)
    assert set(data) == {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"}
    assert data["text/plain"] == "LiveTable(messages: 5 rows × 5 columns, sorted by none)"
    html = data["text/html"]
    assert "5 rows" in html
    assert [html.index(f"m{i}") for i in (4, 3, 2, 1, 0)] == sorted(html.index(f"m{i}") for i in range(5))
    table = shown_widget(data)
    assert isinstance(table, LiveTable)
    assert texts(table.frame) == ["m4", "m3", "m2", "m1", "m0"]


def test_the_live_table_follows_commits(widgets: InteractiveShell) -> None:
    db = widgets.user_ns["db"]
    data, _ = formatter(widgets).format(
        db.query("messages").with_index("by_project_n", lambda q: q.eq("project", "a"))
    )
    table = shown_widget(data)
    assert texts(table.frame) == ["m0", "m2", "m4"]
    db.insert("messages", {"text": "m5", "project": "a", "n": 5})
    deadline = time.monotonic() + 10
    while texts(table.frame) != ["m0", "m2", "m4", "m5"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert texts(table.frame) == ["m0", "m2", "m4", "m5"]


def test_a_query_that_fails_when_shown_reports_the_error_in_one_line(
    widgets: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    query = widgets.user_ns["db"].query("messages").filter(lambda q: q.add(q.field("text"), 1))
    data, _ = formatter(widgets).format(query)
    assert data == {"text/plain": repr(query)}
    out = capsys.readouterr().out
    assert out.startswith("FilterExpressionError: Cannot add")
    assert "Traceback" not in out


def test_live_tables_watch_through_the_database_the_query_came_from(
    ip: InteractiveShell, tmp_path: Path
) -> None:
    run(ip, f"%load_ext zapnb\nimport zapnb\nmine = zapnb.connect({str(tmp_path / 'mine')!r})")
    magics = ip.magics_manager.registry["ZapnbMagics"]
    mine = ip.user_ns["mine"]
    assert magics.database_of(mine._engine) is mine  # found in the notebook's variables
    run(ip, f"%zapnb connect {tmp_path / 'data'} --as current")
    current = ip.user_ns["current"]
    del ip.user_ns["current"]
    assert magics.database_of(current._engine) is current  # the current database
    with zapnb.connect(tmp_path / "elsewhere") as hidden:
        view = magics.database_of(hidden._engine)  # known nowhere: one view, kept for the next query
        assert view is not hidden
        assert view.path == hidden.path
        assert magics.database_of(hidden._engine) is view


# --- documentation ------------------------------------------------------------------------------------------


def test_every_command_option_and_setting_is_documented() -> None:
    docs = (ROOT / "docs" / "magics.md").read_text()
    for text in [
        "%load_ext zapnb",
        "%unload_ext zapnb",
        "%zapnb connect",
        "--as",
        "--durability",
        "%zapnb use",
        "%zapnb tables",
        "%zapnb query",
        "%%zapnb query",
        "%zapnb help",
        "$ZAPNB_DATA_DIR",
    ]:
        assert text in docs, text
    for name in ZapnbMagics.class_own_traits(config=True):
        assert f"ZapnbMagics.{name}" in docs, name


# --- in a real kernel ---------------------------------------------------------------------------------------


def test_in_a_kernel_queries_show_as_widgets_and_errors_in_one_line(tmp_path: Path) -> None:
    import os

    from jupyter_client.manager import start_new_kernel

    env = {
        **os.environ,
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "run"),
    }
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path), env=env)

    def execute(code: str) -> tuple[str, list[dict[str, Any]]]:
        outputs: list[dict[str, Any]] = []

        def keep(message: dict[str, Any]) -> None:
            if message["msg_type"] in ("execute_result", "display_data", "error", "stream"):
                outputs.append({"type": message["msg_type"], **message["content"]})

        reply = client.execute_interactive(code, output_hook=keep, timeout=60)
        return reply["content"]["status"], outputs

    try:
        assert execute("%load_ext zapnb") == ("ok", [])
        status, outputs = execute("%zapnb connect data;\ndb.insert('notes', {'text': 'hi'})\n%zapnb tables")
        assert status == "ok"
        assert (tmp_path / "data").is_dir()
        assert outputs[0]["data"]["text/plain"].startswith("shape: (1, 3)")
        status, outputs = execute("db.query('notes')")
        assert status == "ok"
        data = outputs[0]["data"]
        assert data["text/plain"] == "LiveTable(notes: 1 row × 3 columns, sorted by none)"
        assert "application/vnd.jupyter.widget-view+json" in data
        assert "<td>hi</td>" in data["text/html"]
        message = (
            "Table 'nope' not found in the database at data (did you mean 'notes'?). Its tables: notes. "
            "%zapnb tables lists them."
        )
        assert execute("%zapnb query nope") == (
            "error",
            [
                {
                    "type": "error",
                    "ename": "InvalidQueryError",
                    "evalue": message,
                    "traceback": [f"InvalidQueryError: {message}"],
                }
            ],
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

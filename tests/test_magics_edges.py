"""Edge cases of the IPython extension (zapnb.magics): live tables that pile up, quoting in %zapnb connect,
any Python error of a query chain, and comments in a %%zapnb query body.

Every test drives a real IPython shell against a real database in tmp_path (the fixtures of test_magics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from test_magics import fails, formatter, ip, loaded, run, shown_widget, texts, widgets

from zapnb.errors import InvalidQueryError
from zapnb.magics import LIVE_TABLE_LIMIT

__all__ = ["ip", "loaded", "widgets"]  # fixtures, used by name


def active_subscriptions(shell: InteractiveShell) -> int:
    """How many watched queries the database of ``db`` re-runs on a commit."""
    return len(shell.user_ns["db"]._shared.reactor()._subscriptions)


def show(shell: InteractiveShell, value: Any) -> Any:
    """Display ``value`` as a cell would; the widget shown."""
    data, _ = formatter(shell).format(value)
    return shown_widget(data)


# --- live tables are bounded --------------------------------------------------------------------------------


def test_only_the_most_recent_live_tables_keep_following(widgets: InteractiveShell) -> None:
    db = widgets.user_ns["db"]
    before = active_subscriptions(widgets)
    tables = [show(widgets, db.query("messages")) for _ in range(20)]
    assert active_subscriptions(widgets) == before + LIVE_TABLE_LIMIT
    stopped, kept = tables[:-LIVE_TABLE_LIMIT], tables[-LIVE_TABLE_LIMIT:]
    assert not any(table.following for table in stopped)
    assert all(table.following for table in kept)
    assert all(table.comm is not None for table in tables)  # the stopped ones' views stay on the page
    assert texts(stopped[0].frame) == ["m0", "m1", "m2", "m3", "m4"]


def test_the_limit_is_a_setting_and_zero_means_no_limit(widgets: InteractiveShell) -> None:
    db = widgets.user_ns["db"]
    before = active_subscriptions(widgets)
    run(widgets, "%config ZapnbMagics.live_table_limit = 2")
    for _ in range(5):
        show(widgets, db.query("messages"))
    assert active_subscriptions(widgets) == before + 2
    run(widgets, "%config ZapnbMagics.live_table_limit = 0")
    for _ in range(5):
        show(widgets, db.query("messages"))
    assert active_subscriptions(widgets) == before + 7


def test_showing_the_same_query_again_reuses_its_live_table(widgets: InteractiveShell) -> None:
    before = active_subscriptions(widgets)
    run(widgets, "recent = db.query('messages').order('desc')")
    first = show(widgets, widgets.user_ns["recent"])
    again = show(widgets, widgets.user_ns["recent"])
    assert again is first
    assert active_subscriptions(widgets) == before + 1
    first.close()  # closed by the user: the next display makes a new one
    third = show(widgets, widgets.user_ns["recent"])
    assert third is not first
    assert texts(third.frame) == ["m4", "m3", "m2", "m1", "m0"]


# --- quoting in %zapnb connect ------------------------------------------------------------------------------


def test_an_unbalanced_quote_is_a_usage_error(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "%load_ext zapnb")
    fails(ip, "%zapnb connect 'unbalanced", UsageError)
    err = capsys.readouterr().err
    assert 'UsageError: %zapnb connect: cannot read "\'unbalanced" (No closing quotation).' in err
    assert "Traceback" not in err


def test_a_variable_path_with_spaces_needs_quotes_and_says_so(
    ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "%load_ext zapnb")
    ip.user_ns["folder"] = str(tmp_path / "with spaces")
    fails(ip, "%zapnb connect {folder} --as archive", UsageError)
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err
    assert 'needs quotes around it, as in %zapnb connect "{folder}"' in err
    ip.user_ns["quoted"] = "it's"
    fails(ip, "%zapnb connect $quoted", UsageError)
    assert 'as in %zapnb connect "{folder}"' in capsys.readouterr().err
    db = run(ip, '%zapnb connect "{folder}" --as archive')
    assert db.path == tmp_path / "with spaces"
    assert run(ip, '%zapnb connect "$quoted" --as other').path.name == "it's"


# --- any Python error of the chain --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chain", "cause"),
    [
        ('messages.first()["nope"]', "KeyError"),
        ("messages.take(1/0)", "ZeroDivisionError"),
        ("messages.collect()[99]", "IndexError"),
    ],
)
def test_any_python_error_of_the_chain_is_an_invalid_query_error(
    loaded: InteractiveShell, chain: str, cause: str
) -> None:
    error = fails(loaded, f"%zapnb query {chain}", InvalidQueryError)
    assert str(error).startswith(f"The query {chain!r} failed: ")
    assert error.__cause__ is not None
    assert cause in [kind.__name__ for kind in type(error.__cause__).__mro__]


# --- comments in a %%zapnb query body -----------------------------------------------------------------------


def test_a_cell_query_may_start_with_comments_and_blank_lines(loaded: InteractiveShell) -> None:
    run(loaded, "%%zapnb query first =\n# comment first\n\n   # indented\nmessages.take(1)\n")
    assert texts(loaded.user_ns["first"]) == ["m0"]
    body = '# which\nmessages  # all\n  # of them\n  .filter(lambda q: q.neq(q.field("text"), "#m1"))\n'
    run(loaded, f"%%zapnb query rest\n{body}")
    assert texts(loaded.user_ns["rest"]) == ["m0", "m1", "m2", "m3", "m4"]
    run(loaded, '%%zapnb query hashed\nmessages.filter(lambda q: q.eq(q.field("text"),\n"#m1"))\n')
    assert texts(loaded.user_ns["hashed"]) == []

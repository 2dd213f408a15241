"""The IPython extension: ``%load_ext zapnb`` to explore a database from a notebook.

Responsibilities:

- :class:`ZapnbMagics`, the ``%zapnb`` line magic and ``%%zapnb`` cell magic: ``connect`` opens a database and
  binds it in the notebook, ``use`` picks one already open, ``tables`` lists tables with their document counts
  and indexes, ``query`` runs a query chain into a variable;
- showing a ``db.query(...)`` evaluated in a cell as a live table (:class:`zapnb.widgets.LiveTable`), through
  a display formatter registered by class name, so nothing heavy is imported until a query is shown;
- showing the zapnb errors of the magics as one message instead of a traceback (``short_errors``);
- :func:`load` and :func:`unload`, behind ``%load_ext zapnb`` and ``%unload_ext zapnb``.

Settings are traitlets, set with ``%config ZapnbMagics.<name> = <value>`` (see ``docs/magics.md``).

Examples
--------
The text after ``%zapnb query`` is read as an optional variable, a table and a method chain:

>>> parse_query("recent = messages.order('desc').take(5)")
QueryText(variable='recent', table='messages', chain=".order('desc').take(5)")
>>> parse_query("messages")
QueryText(variable=None, table='messages', chain='')
"""

from __future__ import annotations

import argparse
import difflib
import keyword
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Int, Unicode

from zapnb.errors import ClosedError, InvalidQueryError, ZapError
from zapnb.schema import table_definition

if TYPE_CHECKING:
    import polars as pl
    from IPython.core.interactiveshell import InteractiveShell

    from zapnb.db import Database
    from zapnb.engine import Engine, Snapshot
    from zapnb.queries import Query
    from zapnb.schema import Schema
    from zapnb.widgets import LiveTable

__all__ = ["QueryText", "ZapnbMagics", "load", "parse_query", "unload"]

MAGIC: Final = "zapnb"
QUERY_CLASS: Final = ("zapnb.queries", "Query")
QUERY_NAME: Final = "__zapnb_query__"
LIVE_TABLE_LIMIT: Final = 8
COMMANDS: Final = ("connect", "use", "tables", "query", "help")
QUERY_METHODS: Final = (
    "with_index",
    "order",
    "filter",
    "collect",
    "take",
    "first",
    "unique",
    "count",
    "paginate",
    "explain",
)

USAGE: Final = """Explore a zapnb database: %zapnb <command> ...

  %zapnb connect [PATH] [--as NAME] [--durability full|process]
      Open the database in PATH (default: $ZAPNB_DATA_DIR, else ./zapnb-data), bind it to NAME
      (default: db) and make it the current database of the other commands.
  %zapnb use NAME
      Make the database in variable NAME (from zapnb.connect()) the current one.
  %zapnb tables
      A Polars frame of the tables: table, documents (counted by the index), indexes.
  %zapnb query [NAME =] TABLE[.method(...)...]
      Run db.query(TABLE).method(...)... in the notebook's namespace and store the result in NAME.
      A chain that ends in a query (no terminal) is collected into a frame.
  %%zapnb query [NAME]
      The same with TABLE and the chain in the cell body, over as many lines as you like.
  %zapnb help
      This text.

Settings: %config ZapnbMagics (connect_as, live_tables, live_table_limit, short_errors).
More in docs/magics.md."""


@dataclass(frozen=True)
class QueryText:
    """The parts of a ``%zapnb query`` text: where to store the result, the table and the method chain."""

    variable: str | None
    table: str
    chain: str


_QUERY_TEXT = re.compile(r"\s*(?:(?P<variable>\w+)\s*=(?!=))?\s*(?P<table>\w+)(?P<chain>.*)", re.DOTALL)


def parse_query(text: str, variable: str | None = None) -> QueryText:
    """Split ``[NAME =] TABLE[.method(...)...]`` into its parts (``variable`` is the cell magic's NAME).

    Raises :class:`~zapnb.errors.InvalidQueryError` when the text does not have that shape.
    """
    match = _QUERY_TEXT.fullmatch(_without_comment_lines(text))
    if match is None:
        _bad_query(f"%zapnb query needs a table name, then an optional method chain; got {text.strip()!r}.")
    if match["variable"] is not None:
        if variable is not None:
            _bad_query(
                f"The result already goes to {variable!r} (named after %%zapnb query); "
                f"remove '{match['variable']} =' from the cell."
            )
        variable = _check_name(match["variable"], "query")
    chain = match["chain"].strip().removesuffix(";").rstrip()  # a trailing ; only hides the result
    if chain and not chain.startswith((".", "#")):
        _bad_query(
            f"After the table {match['table']!r} comes {chain!r}; the chain goes on with .method(...), as in "
            f"{match['table']}.take(5). To store the result, write %zapnb query NAME = table..."
        )
    return QueryText(variable, match["table"], chain)


def _without_comment_lines(text: str) -> str:
    """``text`` without its blank lines and the lines that hold only a ``# comment`` (a ``#`` after code, or
    inside a string, stays: Python reads the chain)."""
    lines = text.splitlines()
    return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#"))


@magics_class
class ZapnbMagics(Magics):
    """The ``%zapnb`` magics and the live display of queries, for one IPython shell.

    Responsibilities: parse each command, keep the current database (and the ones ``connect`` opened, to
    reuse them), run query chains in the user's namespace, and make typed errors short to read.
    """

    connect_as = Unicode("db", help="The variable that %zapnb connect binds when no --as NAME is given.").tag(
        config=True
    )
    live_tables = Bool(
        True, help="Show a zapnb query evaluated in a cell as a live table (False: its text form)."
    ).tag(config=True)
    live_table_limit = Int(
        LIVE_TABLE_LIMIT,
        min=0,
        help="How many queries shown as live tables keep following commits; showing one more closes the "
        "oldest (0: no limit).",
    ).tag(config=True)
    short_errors = Bool(
        True, help="Show zapnb errors of the magics and of query display as one message, without a traceback."
    ).tag(config=True)

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.ip = shell
        self.current: Database | None = None
        self._opened: dict[tuple[Path, str], Database] = {}
        self._wrappers: dict[int, Database] = {}
        self._live: dict[int, tuple[Query, LiveTable]] = {}  # by id of the query, oldest shown first

    @no_var_expand
    @line_cell_magic
    def zapnb(self, line: str, cell: str | None = None) -> Any:
        try:
            return self._dispatch(line, cell)
        except ZapError as err:
            self.shorten(err)
            raise

    zapnb.__doc__ = USAGE

    def _dispatch(self, line: str, cell: str | None) -> Any:
        line = line.rstrip().removesuffix(";")  # a trailing ; only hides the result, as for any cell
        words = line.split(None, 1)
        command, rest = (words[0], words[1] if len(words) > 1 else "") if words else ("", "")
        if cell is not None and command != "query":
            raise UsageError(f"Only %%zapnb query takes a cell body, not {command or 'an empty command'!r}.")
        if command == "connect":
            return self.connect(rest)
        if command == "use":
            return self.use(rest.strip())
        if command == "tables":
            if rest.strip():
                raise UsageError(f"%zapnb tables takes no arguments, not {rest.strip()!r}.")
            return self.tables()
        if command == "query":
            return self.query(rest, cell)
        if command in ("", "help"):
            print(USAGE)
            return None
        raise UsageError(
            f"Unknown command %zapnb {command}{_did_you_mean(command, COMMANDS)}: use connect, use, tables "
            "or query (%zapnb help)."
        )

    def _expand(self, text: str) -> str:
        """``text`` with ``$name`` and ``{expression}`` filled in from the notebook's namespace."""
        from IPython.utils.text import DollarFormatter

        try:
            expanded: str = DollarFormatter().vformat(text, args=[], kwargs=self.ip.user_ns)
        except Exception:  # as IPython's own var_expand: text that does not expand stays as written
            return text
        return expanded

    # --- commands -------------------------------------------------------------------------------------------

    def connect(self, written: str) -> Database:
        """``%zapnb connect [PATH] [--as NAME] [--durability full|process]``.

        ``written`` is the line as typed: ``$name`` and ``{expression}`` are filled in here."""
        from zapnb.db import connect

        arguments = self._expand(written)

        words = _split(_without_comment(arguments), written)
        try:
            parsed = _connect_parser().parse_args(words)
        except UsageError as err:
            if arguments == written:
                raise
            raise UsageError(f"{err} (the line read {arguments!r}). {_quoting(written)}") from None
        name = _check_name(parsed.name or self.connect_as, "connect")
        path = None if parsed.path is None else Path(parsed.path).expanduser()
        key = (_resolved(path), parsed.durability)
        db = self._opened.get(key)
        if db is None or db.closed:
            db = connect(path, durability=parsed.durability)
            self._opened[key] = db
        self.current = db
        self.ip.user_ns[name] = db
        return db

    def use(self, name: str) -> None:
        """``%zapnb use NAME``: make the database in the variable ``NAME`` the current one."""
        from zapnb.db import Database

        value = self.ip.user_ns.get(_check_name(name, "use"))
        if not isinstance(value, Database):
            kind = f"holds a {type(value).__name__}" if name in self.ip.user_ns else "is not defined"
            raise InvalidQueryError(
                f"{name} {kind}: %zapnb use takes the name of a variable holding a database, as in "
                f"{name} = zapnb.connect(PATH), or open one with %zapnb connect PATH --as {name}.",
                method="use",
            )
        self.current = value

    def tables(self) -> pl.DataFrame:
        """``%zapnb tables``: table, documents and indexes of every table, counted at one snapshot."""
        import polars as pl

        tx = self.database("tables").transaction()
        try:
            schema = tx.snapshot.catalog.schema
            names = _table_names(tx.snapshot)
            counts = [tx.query(name).count() for name in names]
        finally:
            tx.discard()
        indexes = [_index_names(schema, name) for name in names]
        columns = pl.Schema({"table": pl.String(), "documents": pl.Int64(), "indexes": pl.List(pl.String())})
        return pl.DataFrame({"table": names, "documents": counts, "indexes": indexes}, schema=columns)

    def query(self, line: str, cell: str | None) -> Any:
        """``%zapnb query [NAME =] TABLE.chain`` or ``%%zapnb query [NAME]`` with the chain in the body."""
        if cell is None:
            text = parse_query(line)
        else:
            variable = line.strip().removesuffix("=").strip()
            text = parse_query(cell, _check_name(variable, "query") if variable else None)
        db = self.database("query")
        _check_table(db, text.table)
        result = self._evaluate(db, text)
        if text.variable is not None:
            self.ip.user_ns[text.variable] = result
        return result

    def _evaluate(self, db: Database, text: QueryText) -> Any:
        from zapnb.queries import Query

        written = f"{text.table}{text.chain}"
        try:
            code = compile(f"({QUERY_NAME}{text.chain}\n)", "<%zapnb query>", "eval")
        except SyntaxError as err:
            _bad_query(f"The query {written!r} is not valid Python ({err.msg}). {_EXAMPLE}")
        try:
            result = eval(code, self.ip.user_ns, {QUERY_NAME: db.query(text.table)})
        except ZapError:
            raise
        except AttributeError as err:
            if isinstance(err.obj, Query):
                hint = _did_you_mean(err.name or "", QUERY_METHODS)
                _bad_query(f"Queries have no method {err.name!r}{hint}. {_CHAIN}")
            _bad_query(f"The query {written!r} failed: AttributeError: {err}. {_FIX}", err)
        except Exception as err:  # any Python error of the chain: KeyError, ZeroDivisionError, Polars'...
            _bad_query(f"The query {written!r} failed: {type(err).__name__}: {err}. {_FIX}", err)
        return result.collect() if isinstance(result, Query) else result

    # --- the current database -------------------------------------------------------------------------------

    def database(self, command: str) -> Database:
        """The current database, or a typed error saying how to get one."""
        db = self.current
        if db is None:
            raise InvalidQueryError(
                f"%zapnb {command} needs a database: run %zapnb connect [PATH] first, or %zapnb use NAME "
                "for one opened with NAME = zapnb.connect(PATH).",
                method=command,
            )
        if db.closed:
            raise ClosedError(
                f"The current database, {db.path}, is closed: open it again with %zapnb connect {db.path}.",
                resource=f"database {db.path}",
            )
        return db

    def database_of(self, engine: Engine) -> Database:
        """The open :class:`~zapnb.Database` on ``engine``: the current one, one ``connect`` opened, or one
        in the user's namespace; else a new view of the engine, kept for the next query shown."""
        from zapnb.db import Database

        known = [self.current, *self._opened.values(), *list(self.ip.user_ns.values())]
        for candidate in known:
            if isinstance(candidate, Database) and candidate._engine is engine:
                return candidate
        if id(engine) not in self._wrappers:
            self._wrappers[id(engine)] = Database(engine)
        return self._wrappers[id(engine)]

    # --- display --------------------------------------------------------------------------------------------

    def show_query(self, query: Query) -> dict[str, Any] | tuple[dict[str, Any], dict[str, Any]] | None:
        """The display of a query evaluated in a cell: a live table (``None``: its text form)."""
        from zapnb.engine import Engine

        shown = "text/html" in getattr(self.ip.display_formatter, "active_types", ())
        if not (self.live_tables and shown and isinstance(query._source, Engine)):
            return None  # a query inside a transaction, a terminal, or live tables turned off
        table = self._live_table(query, query._source)
        bundle: dict[str, Any] | tuple[dict[str, Any], dict[str, Any]] = table._repr_mimebundle_()
        return bundle

    def _live_table(self, query: Query, engine: Engine) -> LiveTable:
        """The live table of ``query``: the one already showing this query object, else a new one; the
        oldest beyond ``live_table_limit`` are closed (they stop following commits)."""
        from zapnb.widgets import LiveTable

        shown = self._live.pop(id(query), None)
        if shown is not None and shown[1].comm is not None:
            self._live[id(query)] = shown  # the most recent again
            return shown[1]
        try:
            table = LiveTable(self.database_of(engine), query)
        except ZapError as err:
            self.shorten(err)
            raise
        self._live[id(query)] = (query, table)  # the query too, so that its id is not reused
        self._close_live_tables(self.live_table_limit)
        return table

    def _close_live_tables(self, keep: int) -> None:
        """Stop the live tables shown first from following their queries until ``keep`` remain (``0``: keep
        them all); their views stay, showing their last result."""
        while keep and len(self._live) > keep:
            _, table = self._live.pop(next(iter(self._live)))
            table.stop()

    def shorten(self, err: ZapError) -> None:
        """Make IPython show ``err`` as one message (``ZapnbMagics.short_errors``); ``%tb`` shows the same."""
        if self.short_errors:
            vars(err)["_render_traceback_"] = lambda: [f"{type(err).__name__}: {err}"]

    def close(self) -> None:
        """Forget the databases (they stay open: variables in the notebook may still hold them)."""
        self.current = None
        self._opened.clear()
        self._wrappers.clear()


_CHAIN = (
    "A chain reads .with_index(...), .order(...), .filter(...), then collect, take, first, unique, count..."
)
_FIX = "Fix the chain: it runs in the notebook's namespace, so its names are the notebook's variables."
_EXAMPLE = (
    "Write %zapnb query [NAME =] table.method(...)..., as in "
    "%zapnb query recent = messages.order('desc').take(5)."
)


def _bad_query(message: str, cause: BaseException | None = None) -> NoReturn:
    raise InvalidQueryError(message, method="query") from cause


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_name(name: str, command: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise InvalidQueryError(
            f"%zapnb {command} takes a Python variable name, not {name!r}.", method=command
        )
    return name


def _table_names(snapshot: Snapshot) -> list[str]:
    """Every table at ``snapshot``: those of the active schema and those that exist without one."""
    schema = snapshot.catalog.schema
    return sorted(set(snapshot.catalog.numbers) | set(() if schema is None else schema.tables))


def _check_table(db: Database, table: str) -> None:
    names = _table_names(db.transaction().snapshot)
    if table in names:
        return
    known = f"Its tables: {', '.join(names)}." if names else "It has no tables yet."
    raise InvalidQueryError(
        f"Table {table!r} not found in the database at {db.path}{_did_you_mean(table, names)}. {known} "
        "%zapnb tables lists them.",
        method="query",
    )


def _index_names(schema: Schema | None, table: str) -> list[str]:
    definition = table_definition(schema, table)
    if definition is None:
        return []
    return sorted(index.name + (" (staged)" if index.staged else "") for index in definition.indexes)


def _without_comment(arguments: str) -> str:
    """``arguments`` without a trailing ``# comment`` (one after whitespace, holding no quote), as a notebook
    line would have: ``data/shop  # the shop`` is ``data/shop``, but ``data#1`` and ``"a # b"`` stay."""
    return _COMMENT.sub("", arguments)


_COMMENT = re.compile(r"(^|\s)#[^'\"]*$")


def _resolved(path: Path | None) -> Path:
    from zapnb.db import data_path

    return data_path(path).resolve()


def _split(arguments: str, written: str) -> list[str]:
    """The words of ``arguments``, split as a shell does; a :class:`UsageError` if a quote is not closed."""
    try:
        return shlex.split(arguments)
    except ValueError as err:
        raise UsageError(f"%zapnb connect: cannot read {arguments!r} ({err}). {_quoting(written)}") from None


def _quoting(written: str) -> str:
    """How to quote a path: a ``{expression}`` or ``$name`` is filled in before the words are split."""
    if "{" in written or "$" in written:
        return (
            "A path from a variable holding spaces or quotes needs quotes around it, as in "
            '%zapnb connect "{folder}" (or without the magic: folder_db = zapnb.connect(folder)).'
        )
    return 'Quote a path holding spaces or quotes, as in %zapnb connect "data/with spaces".'


class _ArgumentParser(argparse.ArgumentParser):
    """Arguments of a magic: a mistake is a :class:`UsageError` (IPython shows it in one line)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _connect_parser() -> _ArgumentParser:
    parser = _ArgumentParser(prog="%zapnb connect", add_help=False)
    parser.add_argument("path", nargs="?", default=None, help="the data directory")
    parser.add_argument("--as", dest="name", default=None, help="the variable to bind (default: db)")
    parser.add_argument("--durability", choices=("full", "process"), default="full")
    return parser


# --- the extension ------------------------------------------------------------------------------------------


def load(ipython: Any) -> None:
    """Register the ``%zapnb`` magics and the live display of queries in ``ipython`` (``%load_ext zapnb``)."""
    if isinstance(ipython.magics_manager.registry.get(ZapnbMagics.__name__), ZapnbMagics):
        return
    magics = ZapnbMagics(ipython)
    ipython.register_magics(magics)
    ipython.display_formatter.mimebundle_formatter.for_type_by_name(*QUERY_CLASS, magics.show_query)


def unload(ipython: Any) -> None:
    """Remove what :func:`load` registered (``%unload_ext zapnb``). Open databases stay open and bound."""
    magics = ipython.magics_manager.registry.pop(ZapnbMagics.__name__, None)
    if not isinstance(magics, ZapnbMagics):
        return
    for kind in ("line", "cell"):
        table = ipython.magics_manager.magics[kind]
        if getattr(table.get(MAGIC), "__self__", None) is magics:
            del table[MAGIC]
    formatter = ipython.display_formatter.mimebundle_formatter
    registered = formatter.pop(".".join(QUERY_CLASS), None)
    if registered is not None and registered != magics.show_query:
        formatter.for_type_by_name(*QUERY_CLASS, registered)  # someone else's since: leave it
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
    magics.close()

"""The ``zapnb`` command line: ``zapnb deploy SCHEMA`` and ``zapnb info`` (also ``python -m zapnb``).

Responsibilities: parse the command line (argparse), load the schema a SCHEMA argument names
(:func:`load_schema`), call the public API (``zapnb.connect``, ``db.deploy``, queries' ``count``) and print
what it returns. Exit statuses: 0 done; 1 a zapnb error (its message on standard error, no traceback) or an
operating-system error; 2 a command line that cannot run (bad arguments, a SCHEMA that does not load, no data
directory for ``info``). Lance loads only when a command runs, so ``zapnb --help`` is quick. Documented in
``docs/storage.md`` ("Command line").
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from zapnb.errors import ZapError

if TYPE_CHECKING:
    from zapnb.schema import AnyIndex, Schema
    from zapnb.transaction import Transaction

__all__ = ["COMMANDS", "CommandLineError", "build_parser", "load_schema", "main"]

COMMANDS: Final = ("deploy", "info")
DEFAULT_ATTRIBUTE: Final = "schema"
FILE_MODULE: Final = "_zapnb_schema_file"  # a schema file's module name while it runs
HOW: Final = (
    "Name a schema as package.module:attribute or path/to/file.py:attribute "
    "(the attribute defaults to schema)."
)
DATA_HELP: Final = "the data directory (default: $ZAPNB_DATA_DIR, else ./zapnb-data)"


class CommandLineError(ZapError):
    """A command line that cannot run: a SCHEMA that does not load or is not a schema, no data directory.

    ``zapnb`` prints its message on standard error and exits with status 2.

    Attributes
    ----------
    argument:
        The command-line argument at fault, as given.
    """

    def __init__(self, message: str, *, argument: str) -> None:
        super().__init__(message)
        self.argument = argument


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zapnb`` command with ``argv`` (default: ``sys.argv[1:]``) and return its exit status.

    Usage errors and ``--help`` exit through argparse (``SystemExit`` with status 2 and 0).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except CommandLineError as err:
        return _fail(args.prog, err, 2)
    except (ZapError, OSError) as err:
        return _fail(args.prog, err, 1)
    except KeyboardInterrupt:
        return _fail(args.prog, "interrupted.", 130)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``zapnb`` and its subcommands (each sets ``run`` and ``prog`` defaults)."""
    parser = argparse.ArgumentParser(
        prog="zapnb",
        description="Manage a zapnb data directory from a terminal.",
        epilog="Exit status: 0 done, 1 a zapnb error, 2 a usage error. More in docs/storage.md.",
    )
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    deploy = commands.add_parser(
        "deploy",
        help="make a schema active: check existing documents, build and drop indexes",
        description="Deploy SCHEMA to the data directory (created if missing) and print the report. If an "
        "existing document does not match, nothing changes: the old schema stays active (exit status 1).",
    )
    deploy.add_argument("schema", metavar="SCHEMA", help=f"the schema to deploy. {HOW}")
    deploy.add_argument("--data", metavar="DIR", help=DATA_HELP)
    deploy.add_argument(
        "--no-progress", action="store_true", help="no progress bars for long checks and index builds"
    )
    deploy.set_defaults(run=_deploy, prog=deploy.prog)
    info = commands.add_parser(
        "info",
        help="describe a data directory: format, last LSN, tables, documents, indexes",
        description="Print the data directory, its format version, the last LSN (the newest commit), and "
        "every table with its document count and indexes.",
    )
    info.add_argument("--data", metavar="DIR", help=DATA_HELP)
    info.set_defaults(run=_info, prog=info.prog)
    return parser


def _fail(prog: str, error: BaseException | str, status: int) -> int:
    print(f"{prog}: error: {error}", file=sys.stderr)
    return status


# --- commands -----------------------------------------------------------------------------------------------


def _deploy(args: argparse.Namespace) -> int:
    schema = load_schema(args.schema)  # before connecting: a bad SCHEMA creates no data directory
    from zapnb.db import connect

    with connect(_data_path(args.data)) as db:
        report = db.deploy(schema, progress=not args.no_progress)
    print(report)
    return 0


def _info(args: argparse.Namespace) -> int:
    from zapnb.datadir import MARKER
    from zapnb.db import connect

    path = _data_path(args.data)
    if not (path / MARKER).is_file() and not (path / "log").is_dir():
        raise CommandLineError(
            f"No zapnb database in {path}. Give its data directory with --data DIR (default: "
            "$ZAPNB_DATA_DIR, else ./zapnb-data).",
            argument=str(path),
        )
    with connect(path) as db:
        tx = db.transaction()
        try:
            lines = _describe(db.path, tx)
        finally:
            tx.discard()
    print("\n".join(lines))
    return 0


def _data_path(data: str | None) -> Path:
    """``--data``, else what ``zapnb.connect()`` opens with no argument."""
    from zapnb.db import data_path

    return data_path(data)


def _describe(path: Path, tx: Transaction) -> list[str]:
    from zapnb.datadir import FORMAT_VERSION

    snapshot = tx.snapshot
    schema = snapshot.catalog.schema
    summary = "none deployed" if schema is None else f"{_plural(len(schema.tables), 'table')}, "
    if schema is not None:
        summary += _plural(schema.index_count(), "index", "indexes")
    lines = [
        f"Data directory: {path.resolve()}",
        f"Format version: {FORMAT_VERSION}",
        f"Last LSN: {snapshot.lsn}",
        f"Schema: {summary}",
    ]
    names = sorted(set(snapshot.catalog.numbers) | set(() if schema is None else schema.tables))
    lines.append("Tables:" if names else "Tables: none")
    for name in names:
        definition = None if schema is None else schema.tables.get(name)
        outside = ", not in the schema" if definition is None else ""
        lines.append(f"  {name}: {_plural(tx.query(name).count(), 'document')}{outside}")
        indexes = () if definition is None else definition.all_indexes()
        lines += [f"    {_index_line(index)}" for index in indexes]
    return lines


def _index_line(index: AnyIndex) -> str:
    from zapnb.schema import Index, SearchIndex

    if isinstance(index, Index):
        shown = ", ".join(index.fields)
    elif isinstance(index, SearchIndex):
        shown = f"search {index.search_field}"
    else:
        shown = f"vector {index.vector_field}, {index.dimensions} dimensions"
    filters = () if isinstance(index, Index) else index.filter_fields
    shown += f" (filter: {', '.join(filters)})" if filters else ""
    return f"{index.name}: {shown}{' (staged)' if index.staged else ''}"


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


# --- loading a schema ---------------------------------------------------------------------------------------


def load_schema(reference: str) -> Schema:
    """The schema ``reference`` names: ``package.module:attribute`` or ``path/to/file.py:attribute``.

    The attribute (dotted names allowed) defaults to ``schema``. A module is imported with the current
    directory on ``sys.path``; a file is run as a module with its own directory on ``sys.path``. Both
    additions last only for the import, and a file's module is not left in ``sys.modules``.

    Raises
    ------
    CommandLineError
        If the module or file does not load (its error and line in the message), lacks the attribute, or
        the attribute is not a :class:`~zapnb.Schema`.

    Examples
    --------
    >>> schema = load_schema("zapnb.examples.zapdev")
    >>> len(schema.tables), schema.index_count()
    (14, 33)
    """
    from zapnb.schema import Schema

    target, attribute = _split(reference)
    module = _import_file(target, reference) if _is_file(target) else _import_module(target, reference)
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise CommandLineError(
                f"SCHEMA {reference!r}: {target} has no attribute {part!r}. {_schemas_in(module, target)}",
                argument=reference,
            )
        value = getattr(value, part)
    if not isinstance(value, Schema):
        raise CommandLineError(
            f"SCHEMA {reference!r}: {target}:{attribute} is a {type(value).__name__}, not a zapnb.Schema. "
            f"{_schemas_in(module, target)}",
            argument=reference,
        )
    return value


def _split(reference: str) -> tuple[str, str]:
    target, colon, attribute = reference.rpartition(":")
    if not colon or (len(target) == 1 and target.isalpha()):  # no attribute, or a Windows drive letter
        target, attribute = reference, DEFAULT_ATTRIBUTE
    if not target or not all(part.isidentifier() for part in attribute.split(".")):
        raise CommandLineError(f"SCHEMA {reference!r}: not a schema name. {HOW}", argument=reference)
    return target, attribute


def _is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _import_module(target: str, reference: str) -> ModuleType:
    with _on_sys_path(Path.cwd()):
        importlib.invalidate_caches()
        try:
            return importlib.import_module(target)
        except ModuleNotFoundError as err:
            if err.name is None or not (target + ".").startswith(err.name + "."):
                raise _import_error(err, target, reference) from err
            raise CommandLineError(
                f"SCHEMA {reference!r}: no module named {err.name!r}. A module is looked for in the current "
                f"directory, then among installed packages. {HOW}",
                argument=reference,
            ) from None
        except Exception as err:
            raise _import_error(err, target, reference) from err


def _import_file(target: str, reference: str) -> ModuleType:
    path = Path(target).resolve()
    spec = importlib.util.spec_from_file_location(FILE_MODULE, path) if path.is_file() else None
    if spec is None or spec.loader is None:
        raise CommandLineError(f"SCHEMA {reference!r}: no file {path}. {HOW}", argument=reference)
    module = importlib.util.module_from_spec(spec)
    with _on_sys_path(path.parent):
        sys.modules[FILE_MODULE] = module  # dataclasses look their module up while it runs
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            raise _import_error(err, target, reference) from err
        finally:
            sys.modules.pop(FILE_MODULE, None)
    return module


@contextmanager
def _on_sys_path(directory: Path) -> Iterator[None]:
    entry = str(directory)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(entry)  # the first occurrence: the one inserted above


def _import_error(err: Exception, target: str, reference: str) -> CommandLineError:
    return CommandLineError(
        f"SCHEMA {reference!r}: loading {target} failed{_where(err)}: {type(err).__name__}: {err}\n"
        "Fix it and run the command again.",
        argument=reference,
    )


def _where(err: Exception) -> str:
    """Where in the user's code ``err`` was raised: its deepest frame in a file outside zapnb."""
    package = str(Path(__file__).parent) + os.sep
    frames = [
        frame
        for frame in traceback.extract_tb(err.__traceback__)
        if not frame.filename.startswith(("<", package))  # "<frozen importlib...>", "<string>"
    ]
    return f" at {frames[-1].filename}, line {frames[-1].lineno}" if frames else ""


def _schemas_in(module: ModuleType, target: str) -> str:
    from zapnb.schema import Schema

    names = sorted(name for name, value in vars(module).items() if isinstance(value, Schema))
    if not names:
        return f"{target} defines no zapnb.Schema at module level: build one with zapnb.define_schema(...)."
    return f"{target} defines {', '.join(names)}: name one after a colon, as in {target}:{names[0]}."

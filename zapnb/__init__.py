"""zapnb: a typed, transactional, reactive document database for Python and Jupyter, embedded.

Public names are imported lazily, so ``import zapnb`` stays cheap (Lance, IPython and anywidget load
on first use).

Examples
--------
>>> import zapnb
>>> from zapnb import v
>>> schema = zapnb.define_schema({"notes": zapnb.define_table({"text": v.string()})})
>>> sorted(schema.tables)
['notes']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zapnb.errors import (
    ArgumentValidationError,
    ClosedError,
    ConflictError,
    CorruptionError,
    DeployValidationError,
    DocumentLimitError,
    FilterExpressionError,
    FilterScanWarning,
    FormatVersionError,
    FunctionDefinitionError,
    IndexConsistencyError,
    IndexNotFoundError,
    IndexStagedError,
    InvalidCursorError,
    InvalidFieldNameError,
    InvalidIdError,
    InvalidIndexRangeError,
    InvalidJsonError,
    InvalidKeyError,
    InvalidQueryError,
    InvalidValueError,
    LogTruncatedError,
    NestedWriteError,
    NonexistentDocumentError,
    NotUniqueError,
    ReadOnlyError,
    SchemaDefinitionError,
    SchemaValidationError,
    StorageIOError,
    UsedAfterForkError,
    ZapError,
    ZapWarning,
)

if TYPE_CHECKING:
    from zapnb.cli import CommandLineError
    from zapnb.db import Database, connect
    from zapnb.deploy import DeleteTableReport, DeployReport, TableDeletionError
    from zapnb.functions import UserIdentity, mutation, query
    from zapnb.ids import Id
    from zapnb.jsonvalues import decode_json, encode_json
    from zapnb.reactive import Subscription
    from zapnb.schema import Schema, TableDefinition, define_schema, define_table
    from zapnb.transaction import Transaction
    from zapnb.validators import v
    from zapnb.values import MISSING, UNSET
    from zapnb.widgets import LiveTable

__version__ = "0.1.0.dev0"

_LAZY: dict[str, tuple[str, str | None]] = {
    "v": ("zapnb.validators", "v"),
    "connect": ("zapnb.db", "connect"),
    "Database": ("zapnb.db", "Database"),
    "DeployReport": ("zapnb.deploy", "DeployReport"),
    "DeleteTableReport": ("zapnb.deploy", "DeleteTableReport"),
    "TableDeletionError": ("zapnb.deploy", "TableDeletionError"),
    "CommandLineError": ("zapnb.cli", "CommandLineError"),
    "query": ("zapnb.functions", "query"),
    "mutation": ("zapnb.functions", "mutation"),
    "UserIdentity": ("zapnb.functions", "UserIdentity"),
    "Transaction": ("zapnb.transaction", "Transaction"),
    "Id": ("zapnb.ids", "Id"),
    "decode_json": ("zapnb.jsonvalues", "decode_json"),
    "encode_json": ("zapnb.jsonvalues", "encode_json"),
    "Subscription": ("zapnb.reactive", "Subscription"),
    "LiveTable": ("zapnb.widgets", "LiveTable"),
    "Schema": ("zapnb.schema", "Schema"),
    "TableDefinition": ("zapnb.schema", "TableDefinition"),
    "define_schema": ("zapnb.schema", "define_schema"),
    "define_table": ("zapnb.schema", "define_table"),
    "MISSING": ("zapnb.values", "MISSING"),
    "UNSET": ("zapnb.values", "UNSET"),
}

__all__ = [
    "MISSING",
    "UNSET",
    "ArgumentValidationError",
    "ClosedError",
    "CommandLineError",
    "ConflictError",
    "CorruptionError",
    "Database",
    "DeleteTableReport",
    "DeployReport",
    "DeployValidationError",
    "DocumentLimitError",
    "FilterExpressionError",
    "FilterScanWarning",
    "FormatVersionError",
    "FunctionDefinitionError",
    "Id",
    "IndexConsistencyError",
    "IndexNotFoundError",
    "IndexStagedError",
    "InvalidCursorError",
    "InvalidFieldNameError",
    "InvalidIdError",
    "InvalidIndexRangeError",
    "InvalidJsonError",
    "InvalidKeyError",
    "InvalidQueryError",
    "InvalidValueError",
    "LiveTable",
    "LogTruncatedError",
    "NestedWriteError",
    "NonexistentDocumentError",
    "NotUniqueError",
    "ReadOnlyError",
    "Schema",
    "SchemaDefinitionError",
    "SchemaValidationError",
    "StorageIOError",
    "Subscription",
    "TableDefinition",
    "TableDeletionError",
    "Transaction",
    "UsedAfterForkError",
    "UserIdentity",
    "ZapError",
    "ZapWarning",
    "connect",
    "decode_json",
    "define_schema",
    "define_table",
    "encode_json",
    "mutation",
    "query",
    "v",
]


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'zapnb' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext zapnb``: register the magics and show queries as live tables (:mod:`zapnb.magics`)."""
    from zapnb.magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext zapnb``: remove what :func:`load_ipython_extension` registered."""
    from zapnb.magics import unload

    unload(ipython)

"""The errors zapnb raises on purpose.

Every one derives from :class:`ZapError`, carries the facts of the failure as attributes, and its message
says what to do next. Code that wants to handle any zapnb failure catches ``ZapError``; code that wants one
kind catches its subclass.

Examples
--------
>>> import zapnb
>>> try:
...     zapnb.Id.decode("not-an-id")
... except zapnb.ZapError as err:
...     print(type(err).__name__)
InvalidIdError
"""

from __future__ import annotations

from typing import Any


class ZapError(Exception):
    """Root of every error zapnb raises on purpose."""


# --- values, documents and schemas ---


class InvalidValueError(ZapError):
    """A value that zapnb cannot store: an unsupported Python type, a bad field name, a broken limit.

    Attributes
    ----------
    path:
        Where the value sits in the document, as ``.a.b[3]`` (empty for the document itself).
    value:
        The offending value (or a short description of it for very large values).
    """

    def __init__(self, message: str, *, path: str = "", value: Any = None) -> None:
        super().__init__(message)
        self.path = path
        self.value = value


class InvalidFieldNameError(InvalidValueError):
    """A field name that breaks the naming rules: printable ASCII, 1 to 1024 characters, no leading ``$``."""


class DocumentLimitError(InvalidValueError):
    """A document over one of the per-document limits (size, nesting depth, array length, fields per object).

    Attributes
    ----------
    limit:
        Which limit: ``"size"``, ``"depth"``, ``"array_length"`` or ``"fields"``.
    maximum:
        The limit's value.
    actual:
        What the document has.
    """

    def __init__(self, message: str, *, limit: str, maximum: int, actual: int, path: str = "") -> None:
        super().__init__(message, path=path, value=None)
        self.limit = limit
        self.maximum = maximum
        self.actual = actual


class InvalidIdError(ZapError):
    """A string that is not a valid document ID: bad characters, a bad length or a wrong checksum.

    Attributes
    ----------
    value:
        The string that failed to decode.
    reason:
        Why it failed.
    """

    def __init__(self, message: str, *, value: str, reason: str) -> None:
        super().__init__(message)
        self.value = value
        self.reason = reason


class SchemaDefinitionError(ZapError):
    """A schema that cannot be deployed: a reserved or invalid name, a duplicate or conflicting index."""


class SchemaValidationError(ZapError):
    """A document (or value) that does not match its table's validators.

    Attributes
    ----------
    table:
        The table written to (``None`` outside a table, for example when checking function arguments).
    path:
        The path of the failing value, as ``.a.b[3]``.
    value:
        The failing value.
    validator:
        The validator it failed, as source text such as ``v.string()``.
    """

    def __init__(self, message: str, *, table: str | None, path: str, value: Any, validator: str) -> None:
        super().__init__(message)
        self.table = table
        self.path = path
        self.value = value
        self.validator = validator


class ArgumentValidationError(ZapError):
    """Arguments to a query or mutation function that do not match its ``args`` validators.

    Attributes
    ----------
    function:
        The function's name.
    path, value, validator:
        As for :class:`SchemaValidationError`.
    """

    def __init__(self, message: str, *, function: str, path: str, value: Any, validator: str) -> None:
        super().__init__(message)
        self.function = function
        self.path = path
        self.value = value
        self.validator = validator


class InvalidJsonError(ZapError):
    """Text that is not zapnb's (or Convex's) JSON encoding of a value.

    Attributes
    ----------
    text:
        The offending JSON text, or its first 200 characters.
    """

    def __init__(self, message: str, *, text: str) -> None:
        super().__init__(message)
        self.text = text[:200]


# --- storage ---


class CorruptionError(ZapError):
    """Damaged data found where zapnb relies on it: never silently skipped.

    Attributes
    ----------
    file:
        The damaged file.
    offset:
        The byte offset of the damage in that file.
    """

    def __init__(self, message: str, *, file: str, offset: int) -> None:
        super().__init__(message)
        self.file = file
        self.offset = offset


# --- index keys (zapnb.keys) --------------------------------------------------------------------------------


class InvalidKeyError(ZapError):
    """Bytes that are not a zapnb index key (see ``zapnb.keys``): cut short, an unknown tag, bad UTF-8.

    Attributes
    ----------
    data:
        The bytes that failed to decode (at most their first 200).
    offset:
        Where in ``data`` decoding failed.
    """

    def __init__(self, message: str, *, data: bytes, offset: int) -> None:
        super().__init__(message)
        self.data = data[:200]
        self.offset = offset


# --- commit log (zapnb.log) ---------------------------------------------------------------------------------


class FormatVersionError(ZapError):
    """A file written in an on-disk format version that this zapnb does not read.

    Attributes
    ----------
    file:
        The file.
    found:
        The format version written in it.
    supported:
        The format version this zapnb reads and writes.
    """

    def __init__(self, message: str, *, file: str, found: int, supported: int) -> None:
        super().__init__(message)
        self.file = file
        self.found = found
        self.supported = supported


class LogTruncatedError(ZapError):
    """Log records asked for that a checkpoint has already removed from the log.

    Attributes
    ----------
    requested:
        The first log position (LSN) asked for.
    first_available:
        The lowest LSN still in the log.
    """

    def __init__(self, message: str, *, requested: int, first_available: int) -> None:
        super().__init__(message)
        self.requested = requested
        self.first_available = first_available


class UsedAfterForkError(ZapError):
    """An object opened by one process, used in a child made with ``os.fork()`` (it shares its file locks).

    Attributes
    ----------
    owner_pid:
        The process that opened it.
    pid:
        The process that tried to use it.
    """

    def __init__(self, message: str, *, owner_pid: int, pid: int) -> None:
        super().__init__(message)
        self.owner_pid = owner_pid
        self.pid = pid


class StorageIOError(ZapError):
    """A write, read or sync that the operating system refused (disk full, I/O error, permissions).

    Attributes
    ----------
    path:
        The file or directory.
    operation:
        What zapnb was doing: ``"write"``, ``"fsync"``, ``"truncate"``, ``"create"``...
    errno:
        The operating system's error number (``errno.ENOSPC`` for a full disk).
    """

    def __init__(self, message: str, *, path: str, operation: str, errno: int) -> None:
        super().__init__(message)
        self.path = path
        self.operation = operation
        self.errno = errno


class ClosedError(ZapError):
    """Something used after its ``close()``.

    Attributes
    ----------
    resource:
        What was closed, for example ``"commit log /data/log"``.
    """

    def __init__(self, message: str, *, resource: str) -> None:
        super().__init__(message)
        self.resource = resource


class NestedWriteError(ZapError):
    """A log write started inside a ``log.writer()`` block of the same thread (it would wait for itself).

    Attributes
    ----------
    operation:
        The call that was refused, for example ``"append"``.
    """

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(message)
        self.operation = operation


# --- transactions ---


class ConflictError(ZapError):
    """A transaction that read something another commit changed before it could commit.

    Serializable isolation refuses to commit it; a ``@zapnb.mutation`` is re-run automatically first, so this
    reaches you only after the retries ran out (or from a ``db.transaction()`` block, which is not re-run).

    Attributes
    ----------
    attempts:
        How many times the transaction ran.
    table:
        A table whose change caused the conflict (``None`` for a schema change).
    """

    def __init__(self, message: str, *, attempts: int, table: str | None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.table = table


class NonexistentDocumentError(ZapError):
    """A patch, replace or delete of a document that does not exist (or no longer does).

    Attributes
    ----------
    id:
        The document ID written to.
    """

    def __init__(self, message: str, *, id: str) -> None:
        super().__init__(message)
        self.id = id


class DeployValidationError(SchemaValidationError):
    """A deploy refused because an existing document does not match the new schema (the old one stays active).

    Attributes
    ----------
    document_id:
        The first document found that does not match.
    table, path, value, validator:
        As for :class:`SchemaValidationError`, for that document.
    """

    def __init__(self, message: str, *, document_id: str, cause: SchemaValidationError) -> None:
        super().__init__(
            message, table=cause.table, path=cause.path, value=cause.value, validator=cause.validator
        )
        self.document_id = document_id


# --- indexes (zapnb.index) ----------------------------------------------------------------------------------


class IndexConsistencyError(ZapError):
    """An index asked for something its own state contradicts, so it refuses instead of going wrong silently.

    For example: removing a key it does not hold, adding a key it already holds, a commit older than one it
    has applied, a read at a snapshot older than its base, duplicate keys in a build, or a merge told that a
    live document has no row in the new table base. It means a bug or a damaged data directory; reopening
    rebuilds the in-memory indexes from the last checkpoint and the commit log.

    Attributes
    ----------
    index:
        The index's name (its file name for a loaded one; may be empty for an unnamed one).
    problem:
        What was contradicted, in a few words.
    lsn:
        The commit or snapshot LSN involved, if any.
    key:
        The index key involved, if any.
    """

    def __init__(self, message: str, *, index: str, problem: str, lsn: int | None, key: bytes | None) -> None:
        super().__init__(message)
        self.index = index
        self.problem = problem
        self.lsn = lsn
        self.key = key


# --- warnings (zapnb.storage) -------------------------------------------------------------------------------


class ZapWarning(ZapError, UserWarning):  # noqa: N818 (a warning: raised only when warnings are errors)
    """Something zapnb recovered from on its own, which its user should still know about (a warning).

    For example a damaged newest Lance version of a table (a manifest left empty by a hard stop of the
    machine), read past by falling back to the version before it and replaying more of the commit log.
    Filter it with ``warnings.filterwarnings("ignore", category=zapnb.errors.ZapWarning)``; turn it into an
    error with ``"error"`` to stop at the first one instead (it is then raised, as a ``ZapError``).
    """


# --- functions (zapnb.functions) ----------------------------------------------------------------------------


class FunctionDefinitionError(ZapError):
    """A ``@zapnb.query`` or ``@zapnb.mutation`` that cannot be defined: bad ``args`` validators, or ``args``
    that do not match the handler's parameters.

    Attributes
    ----------
    function:
        The function's name.
    """

    def __init__(self, message: str, *, function: str) -> None:
        super().__init__(message)
        self.function = function


class ReadOnlyError(ZapError):
    """A write (``insert``, ``patch``...) attempted through ``ctx.db`` inside a query, which only reads.

    Attributes
    ----------
    function:
        The query's name.
    operation:
        The write that was refused, for example ``"insert"``.
    """

    def __init__(self, message: str, *, function: str, operation: str) -> None:
        super().__init__(message)
        self.function = function
        self.operation = operation


# --- queries (zapnb.queries, zapnb.ranges, zapnb.filters) ---


class IndexNotFoundError(ZapError):
    """A query on an index its table does not have (message: ``Index projects.by_x not found.``).

    Attributes
    ----------
    table:
        The table queried.
    index:
        The index name asked for.
    available:
        The indexes the table does have, built-in ones included.
    """

    def __init__(self, message: str, *, table: str, index: str, available: tuple[str, ...]) -> None:
        super().__init__(message)
        self.table = table
        self.index = index
        self.available = available


class IndexStagedError(ZapError):
    """A query on a ``staged=True`` index, which cannot be queried until a deploy enables it.

    Attributes
    ----------
    table:
        The table queried.
    index:
        The staged index.
    """

    def __init__(self, message: str, *, table: str, index: str) -> None:
        super().__init__(message)
        self.table = table
        self.index = index


class InvalidIndexRangeError(ZapError):
    """An index range that its index cannot answer (see ``.with_index``): zero or more ``eq`` on the first
    index fields in order, then at most one lower and one upper bound on the next field.

    Attributes
    ----------
    index:
        The index, as ``table.index``.
    index_fields:
        The fields the index orders by, ending with ``_creationTime`` (``_id`` may follow it in a range).
    query_fields:
        The fields the range used, equalities first (in index order), then the bounded field.
    field:
        The first field that breaks the rule.
    reason:
        Convex's name for the rule broken: ``"InvalidIndexRange"``, ``"FieldNotInIndex"``,
        ``"AlreadyDefinedBound"`` or ``"BoundsOnMultipleFields"``.
    """

    def __init__(
        self,
        message: str,
        *,
        index: str,
        index_fields: tuple[str, ...],
        query_fields: tuple[str, ...],
        field: str,
        reason: str,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.index_fields = index_fields
        self.query_fields = query_fields
        self.field = field
        self.reason = reason


class FilterExpressionError(ZapError):
    """A filter expression that cannot be built or evaluated: arithmetic mixing int64 and float64 or on
    values that are not numbers, an int64 division by zero, ``and_``/``or_``/``not_`` or a whole filter on a
    value that is not a boolean, or an argument that is neither an expression nor a zapnb value.

    Attributes
    ----------
    operation:
        The operation, for example ``"add"`` or ``"filter"``.
    values:
        The values it was given (empty when building failed).
    """

    def __init__(self, message: str, *, operation: str, values: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.operation = operation
        self.values = values


class NotUniqueError(ZapError):
    """``unique()`` on a query that matched more than one document.

    Attributes
    ----------
    table:
        The table queried.
    ids:
        The IDs of the first two documents that matched.
    """

    def __init__(self, message: str, *, table: str, ids: tuple[str, ...]) -> None:
        super().__init__(message)
        self.table = table
        self.ids = ids


class InvalidCursorError(ZapError):
    """A pagination cursor that is not one, or that another query made.

    Attributes
    ----------
    cursor:
        The cursor given.
    reason:
        ``"malformed"`` or ``"other query"``.
    """

    def __init__(self, message: str, *, cursor: str, reason: str) -> None:
        super().__init__(message)
        self.cursor = cursor
        self.reason = reason


class InvalidQueryError(ZapError):
    """A query built or called the wrong way: ``with_index`` twice, an order other than ``"asc"``/``"desc"``,
    a negative ``take``, a range or filter function that returns the wrong thing...

    Attributes
    ----------
    method:
        The method called wrongly, for example ``"take"``.
    """

    def __init__(self, message: str, *, method: str) -> None:
        super().__init__(message)
        self.method = method


class FilterScanWarning(ZapWarning):
    """A filter that read many documents for each one it returned: an index range would read only those.

    Attributes
    ----------
    table:
        The table queried.
    index:
        The index scanned (``by_creation_time`` for a query without ``with_index``).
    scanned:
        The documents read.
    returned:
        The documents that passed the filter.
    """

    def __init__(self, message: str, *, table: str, index: str, scanned: int, returned: int) -> None:
        super().__init__(message)
        self.table = table
        self.index = index
        self.scanned = scanned
        self.returned = returned

"""Pagination: pages of a query, and the cursors that continue them.

Responsibilities:

- :class:`PaginationResult`, what ``query.paginate(...)`` returns;
- cursors: opaque strings holding a position (the index key of the last document a page read, or the start
  of the range) and a fingerprint of the query (table, index and its fields, range, order, filters), so a
  cursor given to another query raises :class:`~zapnb.errors.InvalidCursorError`;
- :func:`cursor_bounds`: the key range a page reads, between its cursor and its end cursor.

A page starts strictly after its cursor's key. Index keys are unique and ordered, so across inserts,
patches and deletes between pages no document is returned twice and none is skipped, except one whose
index key a patch moves across the cursor between two pages: like in Convex, it is then seen twice (moved
ahead of the cursor) or not at all (moved behind it).

Read limits: a page examines at most ``maximum_rows_read`` documents (default 16,384). When a filter
rejects so many that the page reaches the limit before ``num_items`` rows, the page ends there, short:
``is_done`` is false, ``continue_cursor`` continues after the last document examined, and ``page_status``
is ``"SplitRecommended"`` with a ``split_cursor`` at the middle of what it examined, so a caller re-reading
that stretch (``cursor`` to ``end_cursor``) can split it into two pages. With ``end_cursor`` a page must
reach its end; when the limit stops it first, it is incomplete: ``page_status`` is ``"SplitRequired"``.
A page that examined more than half the limit is ``"SplitRecommended"`` too. Otherwise both are ``None``.

Examples
--------
>>> from zapnb.keys import encode_key
>>> cursor = make_cursor("f00d", encode_key(["a"]))
>>> read_cursor(cursor, "f00d") == encode_key(["a"]), read_cursor(make_cursor("f00d", None), "f00d")
(True, None)
>>> read_cursor(cursor, "beef")
Traceback (most recent call last):
...
zapnb.errors.InvalidCursorError: Tried to run a query starting from a cursor, but it looks like this ...
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from zapnb.errors import InvalidCursorError, InvalidQueryError

if TYPE_CHECKING:
    import polars as pl

    from zapnb.ranges import KeyRange

__all__ = [
    "DEFAULT_MAXIMUM_ROWS_READ",
    "PageStatus",
    "PaginationResult",
    "after",
    "check_page_arguments",
    "cursor_bounds",
    "fingerprint",
    "make_cursor",
    "read_cursor",
]

DEFAULT_MAXIMUM_ROWS_READ: Final = 16_384
"""The documents a page examines at most, unless ``paginate(maximum_rows_read=...)`` says otherwise."""

PageStatus = Literal["SplitRecommended", "SplitRequired"] | None
_PREFIX: Final = "zc1"


@dataclass(frozen=True)
class PaginationResult:
    """One page of a query.

    Attributes
    ----------
    page:
        The page's rows, a typed frame in index order.
    is_done:
        Whether the page reached the end of the query.
    continue_cursor:
        The cursor of the next page (after the last document this page read).
    split_cursor:
        When ``page_status`` is set: a cursor in the middle of what this page read, to split it in two.
    page_status:
        ``None``, ``"SplitRecommended"`` (the page read many documents, or stopped short at the read limit)
        or ``"SplitRequired"`` (with ``end_cursor``: the read limit stopped the page before its end).
    """

    page: pl.DataFrame
    is_done: bool
    continue_cursor: str
    split_cursor: str | None = None
    page_status: PageStatus = None


def after(key: bytes) -> bytes:
    """The smallest byte string greater than ``key``: a range from it starts just after ``key``."""
    return key + b"\x00"


def fingerprint(
    table: str, index: str, fields: Sequence[str], keys: KeyRange, order: str, filters: Sequence[str]
) -> str:
    """A short hash naming a query, kept in its cursors.

    Examples
    --------
    >>> from zapnb.index import IndexSpec
    >>> from zapnb.ranges import IndexRangeBuilder, compile_range
    >>> keys = compile_range("t", IndexSpec.by_creation_time(), IndexRangeBuilder())
    >>> len(fingerprint("t", "by_creation_time", (), keys, "asc", []))
    16
    """
    body = json.dumps(
        [
            table,
            index,
            list(fields),
            None if keys.lo is None else keys.lo.hex(),
            None if keys.hi is None else keys.hi.hex(),
            order,
            list(filters),
        ]
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def make_cursor(query_fingerprint: str, key: bytes | None) -> str:
    """A cursor at ``key`` (``None``: the start of the range) for the query with this fingerprint."""
    body = f"{query_fingerprint}:{'' if key is None else key.hex()}"
    sealed = f"{body}:{_check(body)}".encode()
    return _PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def _check(body: str) -> str:
    """A checksum of a cursor's body: an edited or truncated cursor is refused, not read at another key."""
    return f"{zlib.crc32(body.encode()):08x}"


def _malformed(cursor: str) -> InvalidCursorError:
    return InvalidCursorError(
        f"{cursor!r} is not a zapnb cursor. Pass None for the first page, then the continue_cursor (or "
        "split_cursor) of the page before.",
        cursor=str(cursor),
        reason="malformed",
    )


def read_cursor(cursor: str, query_fingerprint: str) -> bytes | None:
    """The key a cursor holds (``None``: the start of the range).

    Raises
    ------
    InvalidCursorError
        If ``cursor`` is not a cursor, or another query made it.
    """
    if not isinstance(cursor, str) or not cursor.startswith(_PREFIX):
        raise _malformed(cursor)
    text = cursor[len(_PREFIX) :]
    try:
        sealed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        body, _, check = sealed.rpartition(":")
        found, _, key = body.partition(":")
        position = bytes.fromhex(key) if key else None
    except (binascii.Error, ValueError):
        raise _malformed(cursor) from None
    if not body or check != _check(body):
        raise _malformed(cursor)
    if found != query_fingerprint:
        raise InvalidCursorError(
            "Tried to run a query starting from a cursor, but it looks like this cursor is from a different "
            "query. Pass each query only the cursors its own pages returned (or None to start over).",
            cursor=cursor,
            reason="other query",
        )
    return position


def _larger(a: bytes | None, b: bytes) -> bytes:
    return b if a is None or b > a else a


def _smaller(a: bytes | None, b: bytes) -> bytes:
    return b if a is None or b < a else a


def cursor_bounds(
    keys: KeyRange,
    query_fingerprint: str,
    cursor: str | None,
    end_cursor: str | None,
    reverse: bool,
) -> tuple[tuple[bytes | None, bytes | None], bytes | None, bytes | None]:
    """The keys a page reads (``(lo, hi)``), and the keys its cursor and end cursor hold.

    Raises
    ------
    InvalidCursorError
        If a cursor is not one, or another query made it.
    """
    lo, hi = keys.lo, keys.hi
    start = None if cursor is None else read_cursor(cursor, query_fingerprint)
    end = None if end_cursor is None else read_cursor(end_cursor, query_fingerprint)
    if end_cursor is not None and end is None:
        return (b"", b""), start, end  # a page that ends where the range starts is empty
    if start is not None:
        if reverse:
            hi = _smaller(hi, start)
        else:
            lo = _larger(lo, after(start))
    if end is not None:
        if reverse:
            lo = _larger(lo, end)
        else:
            hi = _smaller(hi, after(end))
    return (lo, hi), start, end


def check_page_arguments(num_items: int, maximum_rows_read: int, end_cursor: str | None) -> None:
    """Refuse ``paginate()`` arguments that cannot make a page, with :class:`~zapnb.errors.InvalidQueryError`
    (``num_items`` may be anything when an ``end_cursor`` fixes where the page ends)."""
    if end_cursor is None and (type(num_items) is not int or num_items < 1):
        raise InvalidQueryError(
            f"paginate() takes num_items, a whole number of rows >= 1, not {num_items!r}.", method="paginate"
        )
    if type(maximum_rows_read) is not int or maximum_rows_read < 1:
        raise InvalidQueryError(
            f"paginate() takes maximum_rows_read >= 1, not {maximum_rows_read!r}.", method="paginate"
        )

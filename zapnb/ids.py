"""Document IDs in Convex's current ID format, so IDs move between zapnb and Convex unchanged.

An ID is the lowercase base32 text of these bytes:

``[ table number as a VInt ] [ 16-byte internal id ] [ 2-byte footer ]``

- The table number (1 .. 2**32 - 1) is a variable-length integer: seven bits per byte, least significant
  group first, the high bit set on every byte but the last; one to five bytes. User tables are numbered
  from :data:`FIRST_USER_TABLE_NUMBER` (10001), so their IDs take two bytes here and are 32 characters long.
- The internal id is 14 random bytes followed by the number of days since the Unix epoch as a big-endian
  16-bit integer (as Convex makes them; the day is informational, nothing relies on it).
- The footer is the Fletcher-16 checksum (modulus 256) of everything before it, little-endian, XOR the
  format version (0).
- The base32 alphabet is Crockford's in lowercase, ``0123456789abcdefghjkmnpqrstvwxyz``; bytes are packed
  into characters most significant bit first and the last character is padded with zero bits.

Decoding is stricter than Convex's own decoder in one way: the text must be the canonical encoding of what
it decodes to (the right length for its bytes, zero padding bits, the shortest VInt). Convex ignores the
padding bits, so there a change to the last character of some IDs, or an extra character after a 32-character
ID, still decodes. Here, replacing any one character of a valid ID by any other character always fails to
decode: a change inside the checksummed bytes touches at most two adjacent bytes, which Fletcher-16 always
detects, and a change in the footer or the padding bits no longer matches. Inserting or deleting a character
changes the length: 33 and 35 characters are never valid, and between two valid lengths (31 and 32, 36 and
37) the checksum alone lets through at most about one such variant in 65,536 (the length and VInt rules
fewer still). Every ID Convex makes is canonical, so every real Convex ID decodes here.

Examples
--------
>>> from zapnb.ids import Id
>>> doc_id = Id("kd70hswas0vt0z9b7kxmmcwcd97ed1rj", "sentences")
>>> doc_id.table, doc_id.table_number
('sentences', 10011)
>>> doc_id == "kd70hswas0vt0z9b7kxmmcwcd97ed1rj"
True
>>> Id.encode(doc_id.table_number, doc_id.internal_id) == doc_id
True
>>> is_valid_id("kd70hswas0vt0z9b7kxmmcwcd97ed1rk")
False
"""

from __future__ import annotations

import functools
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate, repeat
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol, overload

from zapnb.base32 import ALPHABET, base32, base32_160, base32_rows
from zapnb.errors import InvalidIdError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "ALPHABET",
    "FIRST_USER_TABLE_NUMBER",
    "MAX_TABLE_NUMBER",
    "DecodedId",
    "Id",
    "is_valid_id",
    "labeller",
    "new_ids",
    "plain_ids",
    "table_number_of",
    "varint",
]


FIRST_USER_TABLE_NUMBER: Final = 10001
"""The number of the first user table, as in Convex (numbers below it are left to system tables)."""

MAX_TABLE_NUMBER: Final = 2**32 - 1
"""The largest table number an ID can hold (table numbers are unsigned 32-bit integers, never 0)."""

_INTERNAL_ID_LEN: Final = 16
_RANDOM_LEN: Final = 14
_FOOTER_LEN: Final = 2
_VERSION: Final = 0
_MS_PER_DAY: Final = 86_400_000
_EXAMPLE: Final = "kd70hswas0vt0z9b7kxmmcwcd97ed1rj"

# Characters in the text for each byte length: the text is ceil(8 * n / 5) characters.
_TEXT_LEN_OF_BYTES: Final = {n: (8 * n + 4) // 5 for n in range(19, 24)}
_BYTES_OF_TEXT_LEN: Final = {chars: n for n, chars in _TEXT_LEN_OF_BYTES.items()}
# Python's int(text, 32) reads digits 0-9a-v: map each alphabet byte to its digit, every other byte to "!".
_INT_DIGITS: Final = bytes(
    ord("0123456789abcdefghijklmnopqrstuv"[ALPHABET.index(chr(b))]) if chr(b) in ALPHABET else ord("!")
    for b in range(256)
)
_VALID_TABLE_NUMBERS: Final = f"1 to {MAX_TABLE_NUMBER}"
_str_new: Final = str.__new__


@dataclass(frozen=True, slots=True)
class DecodedId:
    """What an ID holds: its table number and its 16-byte internal id.

    Examples
    --------
    >>> Id.decode("kd70hswas0vt0z9b7kxmmcwcd97ed1rj").table_number
    10011
    """

    table_number: int
    internal_id: bytes


@functools.lru_cache(maxsize=1024)
def varint(number: int) -> bytes:
    """``number`` as a little-endian base-128 varint, the table number's form inside an ID."""
    out = bytearray()
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _fletcher16(data: bytes) -> int:
    # c0 is the sum of the bytes; c1 the sum of the running sums (each modulo 256).
    return ((sum(accumulate(data)) & 0xFF) << 8) | (sum(data) & 0xFF)


def _footer(data: bytes) -> bytes:
    return (_fletcher16(data) ^ _VERSION).to_bytes(2, "little")


def _invalid(text: object, reason: str) -> InvalidIdError:
    shown = repr(text) if len(repr(text)) <= 80 else repr(text)[:77] + "..."
    return InvalidIdError(
        f"{shown} is not a valid document ID: {reason}. A document ID is 31 to 37 characters from "
        f"{ALPHABET!r} with a checksum, like {_EXAMPLE!r} (32 characters for user tables); use the "
        "ID exactly as insert() returned it or as it appears in a document's '_id' field.",
        value=text if isinstance(text, str) else repr(text),
        reason=reason,
    )


def _decode(text: object) -> tuple[int, bytes]:
    """Decode ``text`` to (table number, internal id), or raise InvalidIdError saying why not."""
    if not isinstance(text, str):
        raise _invalid(text, f"it is a {type(text).__name__}, not a str")
    size = _BYTES_OF_TEXT_LEN.get(len(text))
    if size is None:
        raise _invalid(text, f"it has {len(text)} characters, and an ID has 31, 32, 34, 36 or 37")
    try:
        # Characters outside the alphabet become "!", which int() refuses (as it does any non-ASCII).
        value = int(str.encode(text, "ascii").translate(_INT_DIGITS), 32)
    except (UnicodeEncodeError, ValueError):
        position, char = next((i, c) for i, c in enumerate(text) if c not in ALPHABET)
        raise _invalid(text, f"character {char!r} at position {position} is not in the ID alphabet") from None
    padding = 5 * len(text) - 8 * size
    if value & ((1 << padding) - 1):
        raise _invalid(text, "its last character has padding bits set, so it was altered")
    data = (value >> padding).to_bytes(size, "big")
    if size == 20 and data[0] >= 0x80 and 0 < data[1] < 0x80:  # a two-byte table number: user tables
        table_len, table_number = 2, (data[0] & 0x7F) | (data[1] << 7)
    else:
        table_len = size - _INTERNAL_ID_LEN - _FOOTER_LEN
        table_number = _table_number_of(data, table_len, text)
    body = data[:-_FOOTER_LEN]
    if data[-2] | (data[-1] << 8) != _fletcher16(body) ^ _VERSION:
        raise _invalid(text, "its checksum does not match, so it was mistyped or altered")
    return table_number, body[table_len:]


_DECODED_CACHE_LIMIT: Final = 4096
# Recently decoded ID texts (IDs recur: foreign keys, lookups); bounded, cleared when full.
_decoded: dict[str, tuple[int, bytes]] = {}


def _decode_cached(text: object) -> tuple[int, bytes]:
    if type(text) is str or type(text) is Id:  # an Id hashes and compares as its text
        parts = _decoded.get(text)
        if parts is None:
            parts = _decode(text)
            if len(_decoded) >= _DECODED_CACHE_LIMIT:
                _decoded.clear()
            _decoded[text] = parts
        return parts
    return _decode(text)


def _table_number_of(data: bytes, table_len: int, text: str) -> int:
    number = 0
    for i in range(table_len):
        byte = data[i]
        number |= (byte & 0x7F) << (7 * i)
        if (byte < 0x80) != (i == table_len - 1):
            raise _invalid(text, "its table number does not fit its length, so it was altered")
    if table_len > 1 and data[table_len - 1] == 0:
        raise _invalid(text, "its table number is not in shortest form, so it was altered")
    if not 1 <= number <= MAX_TABLE_NUMBER:
        raise _invalid(text, f"its table number {number} is outside {_VALID_TABLE_NUMBERS}")
    return number


def _check_table_number(table_number: object) -> int:
    if type(table_number) is not int or not 1 <= table_number <= MAX_TABLE_NUMBER:
        raise InvalidIdError(
            f"Cannot make an ID for table number {table_number!r}: table numbers are ints from "
            f"{_VALID_TABLE_NUMBERS} (user tables start at {FIRST_USER_TABLE_NUMBER}); pass the number "
            "the table has in this database.",
            value=repr(table_number),
            reason="invalid table number",
        )
    return table_number


def _text_of(body: bytes) -> str:
    """The text of the ID whose bytes before the footer are ``body`` (the table number's varint, then the
    internal id)."""
    data = body + _footer(body)
    if len(data) == 20:  # user tables: 32 characters
        return base32_160(int.from_bytes(data, "big"))
    return base32(data)


def _day_suffix(now_ms: float | None) -> bytes:
    ms = time.time() * 1000.0 if now_ms is None else now_ms
    return (int(ms // _MS_PER_DAY) % 0x10000).to_bytes(2, "big")


def _encode_id(table_number: int, internal_id: bytes, table: str | None = None) -> Id:
    """The ID of the document ``internal_id`` in table number ``table_number`` (this is ``Id.encode``).

    Parameters
    ----------
    table_number:
        The table's number, 1 to 2**32 - 1.
    internal_id:
        The document's 16-byte internal id.
    table:
        The table's name, to label the ``Id`` with.

    Examples
    --------
    >>> Id.encode(1017, bytes(range(16)))
    Id(1017, 'z43g00820c20a1g7104gm2rc1m70yy51')
    >>> Id.encode(10001, bytes(16), "projects").encode("ascii")
    b'j5700000000000000000000000001qv0'
    """
    table_number = _check_table_number(table_number)
    if type(internal_id) is not bytes or len(internal_id) != _INTERNAL_ID_LEN:
        raise InvalidIdError(
            f"Cannot make an ID from internal id {internal_id!r}: it must be exactly 16 bytes.",
            value=repr(internal_id),
            reason="invalid internal id",
        )
    return _labelled(_text_of(varint(table_number) + internal_id), table)


class _EncodeId(Protocol):
    def __call__(self, table_number: int, internal_id: bytes, table: str | None = None) -> Id: ...


class _StrEncode(Protocol):
    def __call__(self, encoding: str = "utf-8", errors: str = "strict") -> bytes: ...


class _IdEncode:
    """``Id.encode`` on the class makes an ID (:func:`_encode_id`); on an ``Id`` it is ``str.encode``.

    An ``Id`` is a ``str``, and code everywhere calls ``text.encode("utf-8")`` on strings, so the
    instance method must stay the ``str`` one.
    """

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> _EncodeId: ...

    @overload
    def __get__(self, instance: str, owner: type[Any]) -> _StrEncode: ...

    def __get__(self, instance: str | None, owner: type[Any]) -> _EncodeId | _StrEncode:
        if instance is None:
            return _encode_id
        return functools.partial(str.encode, instance)


class Id(str):
    """A document ID: a ``str`` that knows its table.

    ``Id(text, table)`` checks that ``text`` is a valid ID and raises :class:`~zapnb.InvalidIdError`
    otherwise. An ``Id`` equals, hashes and serializes (``json.dumps``) exactly like its text; ``table``
    is the table name when known and ``None`` when not (it does not take part in equality). An ``Id`` is
    immutable: its table and table number never change, and setting or deleting any attribute raises
    ``AttributeError`` (:meth:`with_table` makes another ``Id``). Stored documents share their ``Id``
    objects with the code that wrote them, so this is what keeps one caller from relabelling another's.

    Parameters
    ----------
    text:
        The ID text.
    table:
        The name of the table the ID belongs to, when known.

    Examples
    --------
    >>> Id("jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "exercises")
    Id('exercises', 'jx73xh1f86gz7s9zgchp6wzbed7ec7aj')
    >>> Id("jx73xh1f86gz7s9zgchp6wzbed7ec7aj")
    Id(10007, 'jx73xh1f86gz7s9zgchp6wzbed7ec7aj')
    >>> import json
    >>> json.dumps({"_id": Id("jx73xh1f86gz7s9zgchp6wzbed7ec7aj")})
    '{"_id": "jx73xh1f86gz7s9zgchp6wzbed7ec7aj"}'
    >>> Id("jx73xh1f86gz7s9zgchp6wzbed7ec7aj", "exercises")._table = "sentences"
    Traceback (most recent call last):
    ...
    AttributeError: Id objects are immutable: cannot set '_table'; use with_table() for an Id labelled ...
    """

    # An Id holds nothing but its text. A labelled one's attribute dict is the one every Id of its table
    # shares (:func:`_label`), so a million labelled IDs cost what a million strings cost; the table number
    # and internal id are decoded from the text when asked for.
    _table: str | None = None

    def __new__(cls, text: str, table: str | None = None) -> Id:
        if type(text) is Id and cls is Id:
            return text if table is None else text.with_table(table)
        _decode_cached(text)
        doc_id = _str_new(cls, text)
        if table is not None:
            _set_dict(doc_id, "__dict__", _label(table))
        return doc_id

    def __setattr__(self, name: str, value: Any) -> None:
        # Stored documents and the caller share their Id objects: a label set here would change later reads.
        raise AttributeError(
            f"Id objects are immutable: cannot set {name!r}; use with_table() for an Id labelled with "
            "another table, or a dict to annotate IDs."
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Id objects are immutable: cannot delete {name!r}.")

    @property
    def table(self) -> str | None:
        """The table's name, or ``None`` when this ``Id`` was made without it."""
        return self._table

    @property
    def table_number(self) -> int:
        """The table's number, as encoded in the ID."""
        return _decode_cached(self)[0]

    @property
    def internal_id(self) -> bytes:
        """The 16-byte internal id: 14 random bytes, then the day of creation (big-endian)."""
        return _decode_cached(self)[1]

    def with_table(self, table: str | None) -> Id:
        """This ID labelled with ``table`` (the text and table number are unchanged).

        Examples
        --------
        >>> Id("jx73xh1f86gz7s9zgchp6wzbed7ec7aj").with_table("exercises").table
        'exercises'
        """
        if table == self._table:
            return self
        return _labelled(self, table)

    def __repr__(self) -> str:
        label = self._table if self._table is not None else self.table_number
        return f"Id({label!r}, {str.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Id, (str(self), self._table))

    def __copy__(self) -> Id:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Id:
        return self

    @staticmethod
    def decode(text: str) -> DecodedId:
        """Decode ``text``, raising :class:`~zapnb.InvalidIdError` with the reason when it is not an ID.

        Examples
        --------
        >>> Id.decode("jx73xh1f86gz7s9zgchp6wzbed7ec7aj").table_number
        10007
        >>> Id.decode("jx73xh1f86gz7s9zgchp6wzbed7ec7ak")
        Traceback (most recent call last):
        ...
        zapnb.errors.InvalidIdError: 'jx73xh1f86gz7s9zgchp6wzbed7ec7ak' is not a valid document ID: ...
        """
        table_number, internal_id = _decode_cached(text)
        return DecodedId(table_number, internal_id)

    encode = _IdEncode()
    """``Id.encode(table_number, internal_id, table=None)`` makes an ID; ``an_id.encode()`` stays str's."""

    @staticmethod
    def new(table_number: int, table: str | None = None, *, now_ms: float | None = None) -> Id:
        """A fresh random ID for a new document in table number ``table_number``.

        Parameters
        ----------
        table_number:
            The table's number.
        table:
            The table's name, to label the ``Id`` with.
        now_ms:
            The creation time in milliseconds since the epoch (default: now); only its day is encoded.

        Examples
        --------
        >>> first = Id.new(10001, "projects", now_ms=0.0)
        >>> first.table, first.table_number, len(first), first.internal_id[14:]
        ('projects', 10001, 32, b'\\x00\\x00')
        >>> Id.new(10001) != Id.new(10001)
        True
        """
        body = varint(_check_table_number(table_number)) + os.urandom(_RANDOM_LEN) + _day_suffix(now_ms)
        return _labelled(_text_of(body), table)


class _Label(dict[str, str]):
    """The attribute dict that the labelled Ids of one table share; read-only, since every Id of the table
    sees it (``vars(an_id)`` returns it)."""

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("the label of an Id is shared by every Id of its table and cannot be changed")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type[dict[str, str]], tuple[dict[str, str]]]:
        return dict, (dict(self),)  # a copy is a plain dict of its own


_set_dict: Final = object.__setattr__
# Per table name, the attribute dict that its labelled Ids share (never written through an Id).
_labels: dict[str, _Label] = {}


def _label(table: str) -> _Label:
    shared = _labels.get(table)
    if shared is None:
        shared = _labels.setdefault(table, _Label(_table=table))
    return shared


def labeller(table: str) -> Callable[[str], Id]:
    """A function that makes an :class:`Id` labelled with ``table`` of a text already known to be a valid ID
    (read back from storage, for example), without checking it again.

    Examples
    --------
    >>> label = labeller("exercises")
    >>> label("jx73xh1f86gz7s9zgchp6wzbed7ec7aj")
    Id('exercises', 'jx73xh1f86gz7s9zgchp6wzbed7ec7aj')
    """
    shared = _label(table)

    def label(text: str) -> Id:
        doc_id = _str_new(Id, text)
        _set_dict(doc_id, "__dict__", shared)
        return doc_id

    return label


def _labelled(text: str, table: str | None) -> Id:
    """An ``Id`` of ``text`` (known to be valid), labelled with ``table`` when it is not ``None``."""
    doc_id = _str_new(Id, text)
    if table is not None:
        _set_dict(doc_id, "__dict__", _label(table))
    return doc_id


def table_number_of(text: object) -> int | None:
    """The table number ``text`` carries if it is an ID, else ``None`` (a lookup's check, not raising).

    >>> table_number_of("jx73xh1f86gz7s9zgchp6wzbed7ec7aj"), table_number_of("not an id")
    (10007, None)
    """
    try:
        return _decode_cached(text)[0]
    except InvalidIdError:
        return None


def table_number_for_lookup(text: object) -> int | None:
    """The table to look ``text`` up in, for a lookup that then matches the whole text exactly.

    For the text of an ID with a one- or two-byte table number (tables 1 to 16,383: 31 or 32 characters),
    the number is read from the first four characters without checking the rest (0.3 µs instead of 2 for an
    ID not seen before). The exact match then finds nothing for a text that is not a stored ID, as the full
    check would have. Any other text gets :func:`table_number_of`.

    >>> table_number_for_lookup("jx73xh1f86gz7s9zgchp6wzbed7ec7aj"), table_number_for_lookup("not an id")
    (10007, None)
    """
    if (type(text) is str or type(text) is Id) and len(text) in _SHORT_TEXT_LENS:
        try:  # the first 20 bits: two bytes and half of the third (read as _decode reads a whole ID)
            bits = int(str.encode(text[:4], "ascii").translate(_INT_DIGITS), 32)
        except (UnicodeEncodeError, ValueError):
            return None  # not in the ID alphabet: not an ID, as table_number_of would say
        first, second = bits >> 12, (bits >> 4) & 0xFF
        if len(text) == _SHORT_TEXT_LENS[0] and 0 < first < 0x80:
            return first
        if len(text) == _SHORT_TEXT_LENS[1] and first >= 0x80 and 0 < second < 0x80:
            return (first & 0x7F) | second << 7
    return table_number_of(text)


_SHORT_TEXT_LENS: Final = (31, 32)  # IDs whose table number is one byte long, then two bytes


def is_valid_id(text: object) -> bool:
    """Whether ``text`` is a valid document ID (of any table).

    Examples
    --------
    >>> is_valid_id("kd70hswas0vt0z9b7kxmmcwcd97ed1rj"), is_valid_id("kd70hswas0vt0z9b7kxmmcwcd97ed1r")
    (True, False)
    """
    try:
        _decode_cached(text)
    except InvalidIdError:
        return False
    return True


_BULK_THRESHOLD: Final = 64
_CHUNK_ROWS: Final = 65_536


def new_ids(table_number: int, count: int, table: str | None = None) -> list[Id]:
    """``count`` fresh random IDs for table number ``table_number``, made in bulk (for imports).

    The same as ``[Id.new(table_number, table) for _ in range(count)]``, several times faster for large
    ``count`` (the checksums and base32 text are computed with numpy). A million labelled IDs take about
    0.7 s and 170 MB (their table is shared, not stored per ID).

    Examples
    --------
    >>> ids = new_ids(10001, 1000, "projects")
    >>> len(set(ids)), all(Id(i).table_number == 10001 for i in ids), ids[0].table
    (1000, True, 'projects')
    """
    table_number = _check_table_number(table_number)
    if type(count) is not int or count < 0:
        raise InvalidIdError(
            f"Cannot make {count!r} IDs: pass a count that is an int of 0 or more.",
            value=repr(count),
            reason="invalid count",
        )
    prefix, day = varint(table_number), _day_suffix(None)
    if count < _BULK_THRESHOLD:
        return [_labelled(_text_of(prefix + os.urandom(_RANDOM_LEN) + day), table) for _ in range(count)]
    chars = _TEXT_LEN_OF_BYTES[len(prefix) + _INTERNAL_ID_LEN + _FOOTER_LEN]
    text = str(_bulk_texts(prefix, day, count).data, "ascii")  # every ID's text, one after another
    ids = [_str_new(Id, text[start : start + chars]) for start in range(0, chars * count, chars)]
    if table is not None:
        deque(map(_set_dict, ids, repeat("__dict__"), repeat(_label(table))), maxlen=0)
    return ids


def _bulk_texts(prefix: bytes, day: bytes, count: int) -> npt.NDArray[np.uint8]:
    """The ASCII text of ``count`` fresh IDs, one row each, in chunks (a few MB of temporaries at most)."""
    import numpy as np

    body_len = len(prefix) + _INTERNAL_ID_LEN
    chars = _TEXT_LEN_OF_BYTES[body_len + _FOOTER_LEN]
    random = np.frombuffer(os.urandom(_RANDOM_LEN * count), np.uint8).reshape(count, _RANDOM_LEN)
    # Fletcher-16 modulo 256 as a uint8 matrix product (it wraps modulo 256 as the sums do): byte k of the
    # body counts once in the first sum and body_len - k times in the second.
    weights = np.stack([np.ones(body_len), np.arange(body_len, 0, -1)], axis=1).astype(np.uint8)
    texts = np.empty((count, chars), np.uint8)
    rows = np.zeros((min(count, _CHUNK_ROWS), (body_len + _FOOTER_LEN + 4) // 5 * 5), np.uint8)
    rows[:, : len(prefix)] = np.frombuffer(prefix, np.uint8)
    rows[:, body_len - 2 : body_len] = np.frombuffer(day, np.uint8)
    for start in range(0, count, _CHUNK_ROWS):
        chunk = rows[: min(_CHUNK_ROWS, count - start)]
        chunk[:, len(prefix) : len(prefix) + _RANDOM_LEN] = random[start : start + len(chunk)]
        chunk[:, body_len : body_len + _FOOTER_LEN] = chunk[:, :body_len] @ weights
        texts[start : start + len(chunk)] = base32_rows(chunk)[:, :chars]
    return texts


def plain_ids(value: Any) -> Any:
    """``value`` with every :class:`~zapnb.Id` in it (dict keys too) as a plain ``str``."""
    if isinstance(value, Id):
        return str(value)
    if isinstance(value, dict):
        return {plain_ids(k): plain_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_ids(item) for item in value]
    return value

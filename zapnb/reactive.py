"""Watched queries: results that stay true while the data changes (``db.watch``).

Responsibilities:

- run a watched query (a ``db.query(...)`` builder, a ``@zapnb.query`` function or a plain ``handler(ctx)``)
  at one snapshot, recording its read set as index key ranges (:mod:`zapnb.queries` records them);
- listen to the change set of every commit, this process's and other processes' alike
  (:meth:`~zapnb.engine.Engine.add_listener`), find the subscriptions whose read set holds an old or new
  index key of a written document (:class:`~zapnb.rangeindex.RangeIndex`), and re-run only those, all of
  one batch at the same snapshot;
- hand a result to the subscription's callback only when it differs from the last one, off the commit path
  (:mod:`zapnb.delivery`), and report a failing query or callback without stopping;
- hold subscriptions weakly: a subscription whose owner dropped it stops.

The commit path only appends the change set to a list and wakes the re-run thread; matching, re-running and
callbacks happen on zapnb's own threads. See ``docs/reactivity.md``.

Examples
--------
>>> import tempfile, zapnb
>>> with tempfile.TemporaryDirectory() as data, zapnb.connect(data) as db:
...     _ = db.insert("notes", {"text": "one"})
...     sub = db.watch(db.query("notes"), callback=lambda frame: print(frame["text"].to_list()))
...     _ = db.insert("notes", {"text": "two"})
...     sub.wait()
...     sub.unsubscribe()
['one']
['one', 'two']
True
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from zapnb.changes import BulkChange, ChangeSet, ReadRange
from zapnb.delivery import Deliverer, report
from zapnb.errors import ClosedError, InvalidQueryError
from zapnb.functions import Function, UserIdentity, query
from zapnb.queries import Query
from zapnb.rangeindex import RangeIndex
from zapnb.runner import Runner
from zapnb.transaction import Transaction
from zapnb.values import float_order

if TYPE_CHECKING:
    import polars as pl
    from polars._typing import PolarsDataType

    from zapnb.engine import Engine, Snapshot

__all__ = ["HISTORY", "Reactor", "Subscription", "same_result"]

#: How many recent change sets a new subscription is checked against (commits that landed while its first
#: result was computed); a subscription older than all of them simply re-runs once.
HISTORY: Final = 4_096
#: How long re-runs wait, at most, for this process's commits in flight to finish. Re-runs and commits share
#: the interpreter: during a burst of commits, waiting matches the burst as one batch and re-runs once,
#: instead of slowing every commit of the burst down. A lone commit is re-run at once.
YIELD_TO_COMMITS: Final = 0.005

Callback = Callable[[Any], None]
ErrorHandler = Callable[[BaseException], None]

_SIGN_BIT: Final = np.uint64(1 << 63)
_QUIET_NAN_BITS: Final = np.uint64(0x7FF8_0000_0000_0000)


class Subscription:
    """A watched query: its latest result, kept current by the database until :meth:`unsubscribe`.

    Made by :meth:`zapnb.Database.watch`. The database holds it weakly: keep a reference for as long as it
    should run (a subscription that is garbage-collected stops).

    Attributes
    ----------
    result:
        The latest result (a typed frame for a watched ``db.query(...)``).
    lsn:
        The commit position the result reflects.
    runs:
        How many times the query ran (the first run included): a commit that does not touch what the
        query read does not re-run it.
    deliveries:
        How many results the callback was handed (an unchanged result is not handed again).
    """

    def __init__(
        self,
        reactor: Reactor,
        watched: Callable[[Transaction], Any],
        name: str,
        callback: Callback | None,
        on_error: ErrorHandler | None,
    ) -> None:
        self._reactor = reactor
        self._watched = watched
        self.name = name
        self._callback = callback
        self._on_error = on_error
        self.result: Any = None
        self.lsn = 0
        self.reads: tuple[ReadRange, ...] = ()  # what a commit must touch to run the query again
        self._good_reads: tuple[ReadRange, ...] = ()  # the read set of the last run that returned
        self.runs = 0
        self.deliveries = 0
        self._active = True
        self._lock = threading.Lock()
        self._pending: list[Any] = []  # the newest result not yet handed to the callback
        self._handing = False  # the callback is running

    @property
    def active(self) -> bool:
        """Whether the subscription still follows commits."""
        return self._active and not self._reactor.closed

    def unsubscribe(self) -> None:
        """Stop following commits. Idempotent; a callback already running finishes."""
        self._active = False
        self._reactor.forget(id(self))

    def wait(self, lsn: int | None = None, timeout: float = 10.0) -> bool:
        """Block until the result reflects commit ``lsn`` (default: every commit made so far) or later.

        Returns ``False`` if ``timeout`` seconds pass first. Handy in scripts and tests, after a write: the
        callback has then been handed the result and returned. A commit that does not change the result
        counts once the subscription has seen it.
        """
        if lsn is None:
            lsn = self._reactor.engine.snapshot().lsn
        return self._reactor.wait(self, lsn, timeout)

    def run(self, snapshot: Snapshot) -> bool:
        """Run the query at ``snapshot``; ``True`` (and the result queued for the callback) if it changed.

        A run that raises keeps the last result, and its read set joins the last good run's (see
        ``docs/reactivity.md``), so a commit to what either read runs the query again.
        """
        tx = Transaction(self._reactor.engine, snapshot)
        try:
            result = self._watched(tx)
        except BaseException:
            with self._lock:
                self.reads = tuple(dict.fromkeys((*self._good_reads, *tx.reads)))
            raise
        finally:
            tx.discard()
        with self._lock:
            self.runs += 1
            first, self.lsn, self.reads = self.runs == 1, snapshot.lsn, tx.reads
            self._good_reads = self.reads
            changed = first or not same_result(self.result, result)
            if changed:
                self.result = result
                self._pending[:] = [result]
        return changed

    def deliver(self, *, first: bool = False) -> None:
        """Hand the newest pending result to the callback (on a delivery thread, one call at a time).

        The ``first`` delivery runs in the caller of ``db.watch`` and lets the callback's error propagate.
        """
        with self._lock:
            if not self._pending:
                return
            result = self._pending.pop()
            self.deliveries += 1
            self._handing = True
        try:
            if self._callback is None or not (self._active or first):
                return
            if first:
                self._callback(result)
                return
            try:
                self._callback(result)
            except BaseException as err:  # reported, even SystemExit: the subscription and its thread go on
                self.fail(err, "its callback raised")
        finally:
            with self._lock:
                self._handing = False
            self._reactor.progressed()

    @property
    def settled(self) -> bool:
        """Whether the callback has been handed the latest result (and returned)."""
        with self._lock:
            return not self._pending and not self._handing

    def fail(self, err: BaseException, what: str) -> None:
        """Report an error of this subscription: to ``on_error`` if given, else on standard error."""
        if self._on_error is not None:
            try:
                self._on_error(err)
                return
            except BaseException as handler_error:
                err = handler_error
                what = "its on_error handler raised"
        report(f"zapnb: watched query {self.name!r}: {what}", err)

    def __repr__(self) -> str:
        state = "active" if self.active else "stopped"
        return f"<zapnb Subscription {self.name!r} {state}, runs={self.runs}, at commit {self.lsn}>"


class Reactor:
    """The watched queries of one connection, and the thread that re-runs them.

    Responsibilities: register subscriptions, receive change sets from the engine, decide which
    subscriptions a batch of commits touched, re-run those at one snapshot and queue changed results for
    delivery.
    """

    def __init__(self, runner: Runner) -> None:
        self.engine: Engine = runner.engine
        self.runner = runner
        self._lock = threading.Condition()
        self._subscriptions: dict[int, weakref.ref[Subscription]] = {}
        self._ranges = RangeIndex()
        self._incoming: list[ChangeSet] = []
        self._due: set[int] = set()  # subscriptions to re-run at the next pass
        self._running: set[int] = set()  # ...and the ones being re-run now
        self._history: collections.deque[ChangeSet] = collections.deque(maxlen=HISTORY)
        self._seen = 0  # every change set up to here was matched, and the re-runs it caused are done
        self._progress = threading.Condition()
        self._closed = False
        self._deliverer = Deliverer()
        self._remove_listener = self.engine.add_listener(self._receive)
        self._thread = threading.Thread(target=self._loop, name="zapnb-watch", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        """Whether the database closed (subscriptions no longer follow commits)."""
        return self._closed or self.engine.closed

    def watch(
        self,
        target: Any,
        args: Mapping[str, Any] | None,
        callback: Callback | None,
        on_error: ErrorHandler | None,
        identity: UserIdentity | None,
    ) -> Subscription:
        """Subscribe to ``target`` (what ``db.watch`` takes); the callback gets the first result at once."""
        self.engine.check_usable()
        name, watched = self._compile(target, dict(args or {}), identity)
        sub = Subscription(self, watched, name, callback, on_error)
        sub.run(self.engine.snapshot())  # errors here (bad query, bad args) reach the caller
        sub.deliver(first=True)
        key = id(sub)
        with self._lock:
            if self._closed:
                raise ClosedError("The database is closed; connect again to watch.", resource="database")
            self._subscriptions[key] = weakref.ref(sub)
            weakref.finalize(sub, self.forget, key)
            self._ranges.set(key, sub.reads)
            if self._missed(sub):
                self._due.add(key)
                self._lock.notify()
        return sub

    def forget(self, key: int) -> None:
        """Drop subscription ``key`` (unsubscribed or garbage-collected)."""
        with self._lock:
            if self._subscriptions.pop(key, None) is not None:
                self._ranges.discard(key)
                self._due.discard(key)

    def wait(self, sub: Subscription, lsn: int, timeout: float) -> bool:
        """Block until ``sub``'s result reflects commit ``lsn``: it ran there or later, or the reactor matched
        every commit up to ``lsn`` and re-ran what they touched."""

        key = id(sub)

        def caught_up() -> bool:
            matched = self._seen >= lsn and key not in self._due and key not in self._running
            return ((sub.lsn >= lsn or matched) and sub.settled) or self.closed

        with self._progress:
            self._progress.wait_for(caught_up, timeout)
            return caught_up() and not self.closed

    def progressed(self) -> None:
        """Wake :meth:`wait` callers (a callback returned)."""
        with self._progress:
            self._progress.notify_all()

    def close(self) -> None:
        """Stop following commits and stop the threads (the database is closing)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify_all()
        with self._progress:
            self._progress.notify_all()
        self._remove_listener()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._deliverer.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    # --- compiling what to watch --------------------------------------------------------------------------

    def _compile(
        self, target: Any, args: dict[str, Any], identity: UserIdentity | None
    ) -> tuple[str, Callable[[Transaction], Any]]:
        if isinstance(target, Query):
            self._check_source(target)
            if args:
                raise InvalidQueryError(
                    f"db.watch({target!r}, args) got args {sorted(args)}; a query built with db.query takes "
                    "none. Put the values into the query, or watch a @zapnb.query function with args.",
                    method="watch",
                )
            return repr(target), lambda tx: target.within(tx).collect()
        if isinstance(target, Function):
            if target.kind != "query":
                raise InvalidQueryError(
                    f"db.watch() takes a query, and {target!r} is a mutation: watch a @zapnb.query function "
                    "(or a db.query(...)) that reads what the mutation writes.",
                    method="watch",
                )
            checked = self.runner.checked_args(target, (), args)
            return target.name, lambda tx: self.runner.run_query_in(tx, target, checked, identity)
        if callable(target):
            fn = query(target)
            return fn.name, lambda tx: self.runner.run_query_in(tx, fn, args, identity)
        raise InvalidQueryError(
            "db.watch() takes a db.query(...), a @zapnb.query function or a function of ctx, not "
            f"{target!r}.",
            method="watch",
        )

    def _check_source(self, target: Query) -> None:
        """Refuse a query of another database or of a transaction (``watch`` would silently run it here)."""
        source = target.source
        if source is self.engine:
            return
        where = "a transaction" if isinstance(source, Transaction) else "another database"
        raise InvalidQueryError(
            f"db.watch({target!r}) got a query built from {where}; a watched query re-runs on the database "
            "it is watched on. Watch a query built from the same database: db.query(...) of the database "
            "whose watch you call, not tx.query(...) or another connection's db.query(...).",
            method="watch",
        )

    # --- following commits ----------------------------------------------------------------------------------

    def _receive(self, changes: ChangeSet) -> None:
        """The engine's listener: runs on the committing thread, so it only queues the change set."""
        with self._lock:
            self._incoming.append(changes)
            self._lock.notify()

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._closed or bool(self._incoming or self._due))
                if self._closed:
                    return
                batch, self._incoming = self._incoming, []
                self._running = self._touched(batch) | self._due
                self._due = set()
                subs = [s for key in sorted(self._running) if (s := self._alive(key)) is not None]
            if subs:
                self._rerun(subs)
            with self._progress:
                self._running = set()
                self._seen = max([self._seen, *(changes.lsn for changes in batch)])
                self._progress.notify_all()

    def _touched(self, batch: list[ChangeSet]) -> set[int]:
        """The subscriptions a batch of change sets touched (each only by a commit newer than its result)."""
        due: set[int] = set()
        for changes in batch:
            self._history.append(changes)
            if changes.everything:
                keys: Iterable[int] = list(self._subscriptions)
            else:
                keys = itertools.chain(
                    itertools.chain.from_iterable(
                        self._ranges.stab(change.table, index, key)
                        for change in changes.changes
                        for index, key in change.touched
                    ),
                    (owner for part in changes.bulk for owner in self._bulk_touched(part)),
                )
            for key in keys:
                if key not in due and (sub := self._alive(key)) is not None and sub.lsn < changes.lsn:
                    due.add(key)
        return due

    def _bulk_touched(self, part: BulkChange) -> Iterator[int]:
        """The subscriptions a bulk insert touched: each recorded range of its table's indexes is looked up in
        the insert's sorted keys (two bisections), rather than each of its keys in the ranges."""
        for index in part.keys:
            for owner, read in self._ranges.ranges_of(part.table, index):
                if part.touches(read):
                    yield owner

    def _missed(self, sub: Subscription) -> bool:
        """Whether a commit after ``sub``'s first run was already matched before ``sub`` was registered."""
        if self._history and len(self._history) == HISTORY and self._history[0].lsn > sub.lsn + 1:
            return True
        return any(c.lsn > sub.lsn and c.touches(sub.reads) is not None for c in self._history)

    def _alive(self, key: int) -> Subscription | None:
        ref = self._subscriptions.get(key)
        return None if ref is None else ref()

    def _rerun(self, subs: list[Subscription]) -> None:
        """Re-run ``subs`` at one snapshot, so every subscription a commit touched sees that same commit."""
        deadline = time.monotonic() + YIELD_TO_COMMITS
        while self.engine.committing and time.monotonic() < deadline:
            time.sleep(0.0002)
        try:
            snapshot = self.engine.snapshot()
        except ClosedError:
            return
        for sub in subs:
            if not sub.active:
                continue
            try:
                changed = sub.run(snapshot)
            except BaseException as err:  # keep the last result; a commit to what it read tries again
                changed = False
                sub.fail(err, "re-running it failed")
            with self._lock:
                if id(sub) in self._subscriptions:
                    self._ranges.set(id(sub), sub.reads)
            if changed:
                self._deliverer.submit(sub)


def same_result(old: Any, new: Any) -> bool:
    """Whether a re-run's result equals the previous one (then it is not handed to the callback again).

    Exact in zapnb's total order: types must match (``1`` and ``1.0`` differ, as they do in the database),
    floats compare by their bits with NaN payloads dropped (``-0.0`` differs from ``0.0``, ``-nan`` from
    ``nan``), frames by schema, values and the bits of their float values (nested in lists, arrays and
    structs too), and dicts, lists, tuples and dataclasses (such as a ``PaginationResult``) element by
    element. A value whose ``==`` raises counts as changed.

    Examples
    --------
    >>> from zapnb.reactive import same_result
    >>> same_result({"x": [1.0, float("nan")]}, {"x": [1.0, float("nan")]})
    True
    >>> same_result(0.0, -0.0), same_result(1, 1.0)
    (False, False)
    """
    try:
        return _same(old, new)
    except Exception:  # a value whose == raises or is ambiguous: treat it as changed
        return False


def _same(old: Any, new: Any) -> bool:
    if type(old) is not type(new):
        return False
    if isinstance(new, float):
        return float_order(old) == float_order(new)
    if isinstance(new, dict):
        return old.keys() == new.keys() and all(_same(old[k], new[k]) for k in new)
    if isinstance(new, list | tuple):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new, strict=True))
    if dataclasses.is_dataclass(new) and not isinstance(new, type):
        fields = [f.name for f in dataclasses.fields(new) if f.compare]
        return all(_same(getattr(old, name), getattr(new, name)) for name in fields)
    if type(new).__module__.startswith("polars"):
        return _same_polars(old, new)
    return bool(old == new)


def _same_polars(old: Any, new: Any) -> bool:
    import polars as pl

    if isinstance(new, pl.DataFrame):
        if not (old.schema == new.schema and old.equals(new, null_equal=True)):
            return False
        return all(_same_floats(old.get_column(name), new.get_column(name)) for name in new.columns)
    if isinstance(new, pl.Series):
        if not (old.dtype == new.dtype and old.equals(new, check_names=True, null_equal=True)):
            return False
        return _same_floats(old, new)
    return False  # a lazy frame or an expression: no cheap equality


def _same_floats(old: pl.Series, new: pl.Series) -> bool:
    """Whether the float values in two series that ``equals`` already found equal have the same bits."""
    import polars as pl

    dtype = new.dtype
    if dtype.is_float():
        return bool(np.array_equal(_float_bits(old), _float_bits(new)))
    if not _holds_floats(dtype):
        return True
    if isinstance(dtype, pl.List):
        return _same_floats(old.list.explode(), new.list.explode())
    if isinstance(dtype, pl.Array):
        return _same_floats(old.arr.explode(), new.arr.explode())
    if isinstance(dtype, pl.Struct):
        names = [field.name for field in dtype.fields]
        return all(_same_floats(old.struct.field(name), new.struct.field(name)) for name in names)
    return True


def _holds_floats(dtype: PolarsDataType) -> bool:
    import polars as pl

    if dtype.is_float():
        return True
    if isinstance(dtype, pl.List | pl.Array):
        return _holds_floats(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return any(_holds_floats(field.dtype) for field in dtype.fields)
    return False


def _float_bits(series: pl.Series) -> npt.NDArray[np.uint64]:
    """The bits of a float series as float64 (nulls as 0.0, NaNs as the quiet NaN of their sign)."""
    import polars as pl

    values = series.cast(pl.Float64).fill_null(0.0).to_numpy()
    bits: npt.NDArray[np.uint64] = values.view(np.uint64)
    nan = np.isnan(values)
    if nan.any():
        bits = np.where(nan, (bits & _SIGN_BIT) | _QUIET_NAN_BITS, bits)
    return bits

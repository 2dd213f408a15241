"""What a handler may not do: write around ``ctx.db``, be ``async``; and ``db.run`` of an undecorated one."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

import zapnb
from zapnb.functions import MutationContext, QueryContext
from zapnb.runner import running_function

Write = Callable[[zapnb.Database, zapnb.Id], object]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[zapnb.Database]:
    with zapnb.connect(tmp_path / "data") as database:
        yield database


@zapnb.mutation
def add_note(ctx: MutationContext, *, text: str) -> zapnb.Id:
    return ctx.db.insert("notes", {"text": text})


@zapnb.query
def count_notes(ctx: QueryContext) -> int:
    return ctx.db.query("notes").count()


def _open_transaction(db: zapnb.Database, _: zapnb.Id) -> None:
    with db.transaction() as tx:
        tx.insert("notes", {"text": "through a transaction"})


#: Every writing entry point of ``Database``, called as a handler would call it on the outer ``db``.
WRITES: list[tuple[str, Write]] = [
    ("insert", lambda db, note: db.insert("notes", {"text": "around"})),
    ("insert_many", lambda db, note: db.insert_many("notes", [{"text": "around"}])),
    ("patch", lambda db, note: db.patch(note, {"text": "around"})),
    ("replace", lambda db, note: db.replace(note, {"text": "around"})),
    ("delete", lambda db, note: db.delete(note)),
    ("run", lambda db, note: db.run(add_note, text="around")),
    ("transaction", _open_transaction),
]


def _texts(db: zapnb.Database) -> list[str]:
    return sorted(doc["text"] for doc in db.query("notes"))


# --- writing through the outer db from a handler ------------------------------------------------------------


@pytest.mark.parametrize(("operation", "write"), WRITES, ids=[name for name, _ in WRITES])
def test_a_query_cannot_write_through_the_outer_db(db: zapnb.Database, operation: str, write: Write) -> None:
    note = db.insert("notes", {"text": "before"})

    @zapnb.query
    def sneaky(ctx: QueryContext) -> None:
        write(db, note)

    with pytest.raises(zapnb.NestedWriteError) as caught:
        db.run(sneaky)
    assert caught.value.operation == operation
    message = str(caught.value)
    assert "inside query 'sneaky' through the database object instead of ctx.db" in message
    assert "a query is read-only" in message
    assert _texts(db) == ["before"]
    last = db.logs().row(-1, named=True)
    assert (last["function"], last["outcome"], last["error_type"]) == ("sneaky", "error", "NestedWriteError")


@pytest.mark.parametrize(("operation", "write"), WRITES, ids=[name for name, _ in WRITES])
def test_a_mutation_cannot_write_through_the_outer_db(
    db: zapnb.Database, operation: str, write: Write
) -> None:
    note = db.insert("notes", {"text": "before"})

    @zapnb.mutation
    def around(ctx: MutationContext) -> None:
        ctx.db.insert("notes", {"text": "own"})
        write(db, note)

    with pytest.raises(zapnb.NestedWriteError) as caught:
        db.run(around)
    assert caught.value.operation == operation
    message = str(caught.value)
    assert "inside mutation 'around' through the database object instead of ctx.db" in message
    assert "once per attempt when the mutation is re-run after a conflict, and stay if it fails" in message
    assert _texts(db) == ["before"]  # neither the outer write nor the mutation's own one committed


def test_a_retried_mutation_commits_its_writes_once(db: zapnb.Database) -> None:
    """A nested ``db.run`` used to commit once per attempt; ``ctx.db`` and a direct call commit once."""
    counter = db.insert("counters", {"n": 0})
    attempts: list[int] = []
    refused: list[zapnb.NestedWriteError] = []

    @zapnb.mutation
    def bump(ctx: MutationContext) -> None:
        attempts.append(len(attempts) + 1)
        doc = ctx.db.get(counter)
        assert doc is not None
        try:
            db.run(add_note, text="through db.run")
        except zapnb.NestedWriteError as err:
            refused.append(err)
        add_note(ctx, text="bump")  # the advised way: a direct call, writing through this ctx.db
        if len(attempts) < 3:  # another thread changes what this attempt read: its commit conflicts
            writer = threading.Thread(target=db.patch, args=(counter, {"n": doc["n"] + 100}))
            writer.start()
            writer.join()
        ctx.db.patch(counter, {"n": doc["n"] + 1})

    db.run(bump)
    assert len(attempts) == len(refused) == 3
    assert "Call the other function directly instead, other(ctx, **args)" in str(refused[0])
    assert _texts(db) == ["bump"]
    assert (db.get(counter) or {}).get("n") == 201


def test_another_connection_on_the_handlers_thread_is_refused_too(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path / "data") as db, zapnb.connect(tmp_path / "data") as other:

        @zapnb.mutation
        def elsewhere(ctx: MutationContext) -> None:
            other.insert("notes", {"text": "through another connection"})

        with pytest.raises(zapnb.NestedWriteError, match="inside mutation 'elsewhere'"):
            db.run(elsewhere)
        assert _texts(other) == []


def test_a_handler_does_not_block_writes_from_other_threads(db: zapnb.Database) -> None:
    started, proceed = threading.Event(), threading.Event()
    results: list[int] = []

    @zapnb.query
    def waiting(ctx: QueryContext) -> int:
        started.set()
        assert proceed.wait(10)
        return ctx.db.query("notes").count()

    reader = threading.Thread(target=lambda: results.append(db.run(waiting)))
    reader.start()
    assert started.wait(10)
    try:
        db.insert("notes", {"text": "from another thread"})  # while the query's handler runs on `reader`
        assert db.run(add_note, text="run from another thread")
        with db.transaction() as tx:
            tx.insert("notes", {"text": "in a transaction"})
    finally:
        proceed.set()
        reader.join()
    assert results == [0]  # the query reads its own snapshot, taken before those commits
    assert len(_texts(db)) == 3


def test_a_thread_started_by_a_handler_may_write(db: zapnb.Database) -> None:
    @zapnb.mutation
    def spawn(ctx: MutationContext) -> None:
        writer = threading.Thread(target=db.insert, args=("notes", {"text": "other thread"}))
        writer.start()
        writer.join()

    db.run(spawn)
    assert _texts(db) == ["other thread"]


def test_the_outer_db_writes_again_once_a_handler_returns_or_raises(db: zapnb.Database) -> None:
    @zapnb.mutation
    def fails(ctx: MutationContext) -> None:
        assert running_function() is fails
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        db.run(fails)
    assert running_function() is None
    db.insert("notes", {"text": "after a failed run"})
    assert db.run(count_notes) == 1
    db.insert("notes", {"text": "after a query"})
    assert _texts(db) == ["after a failed run", "after a query"]


def test_reads_through_the_outer_db_see_the_newest_commit(db: zapnb.Database) -> None:
    """Documented: outer reads are allowed, but outside the function's snapshot and its own writes."""
    note = db.insert("notes", {"text": "committed"})

    @zapnb.mutation
    def peek(ctx: MutationContext) -> tuple[int, int, str]:
        ctx.db.patch(note, {"text": "uncommitted"})
        ctx.db.insert("notes", {"text": "new"})
        outer = db.get(note)
        assert outer is not None
        return ctx.db.query("notes").count(), db.query("notes").count(), outer["text"]

    assert db.run(peek) == (2, 1, "committed")


# --- async handlers -----------------------------------------------------------------------------------------


def test_an_async_handler_is_refused_when_declared() -> None:
    async def fetch(ctx: QueryContext) -> None:
        return None

    async def stream(ctx: QueryContext) -> AsyncIterator[int]:
        yield 1

    declarations: list[Callable[[Any], Any]] = [
        zapnb.query,
        zapnb.mutation,
        zapnb.query(args={}),
        zapnb.mutation(name="named"),
    ]
    for declare in declarations:
        for handler in (fetch, stream):
            with pytest.raises(zapnb.FunctionDefinitionError) as caught:
                declare(handler)
            assert caught.value.function in {handler.__name__, "named"}
            assert "is an async def, and zapnb runs functions synchronously" in str(caught.value)
            assert "Write it as a plain def, without async and await" in str(caught.value)


def test_a_handler_returning_an_awaitable_fails_and_writes_nothing(db: zapnb.Database) -> None:
    async def later() -> int:
        return 1

    @zapnb.mutation
    def sneaky_async(ctx: MutationContext) -> Coroutine[Any, Any, int]:
        ctx.db.insert("notes", {"text": "discarded"})
        return later()  # a coroutine, never awaited (filterwarnings=error would catch its warning)

    with pytest.raises(zapnb.FunctionDefinitionError) as caught:
        _ = db.run(sneaky_async)
    assert caught.value.function == "sneaky_async"
    assert str(caught.value).startswith(
        "Mutation 'sneaky_async' returned a coroutine, which would have to be awaited, and zapnb runs "
        "functions synchronously"
    )
    assert _texts(db) == []
    last = db.logs().row(-1, named=True)
    assert (last["outcome"], last["error_type"]) == ("error", "FunctionDefinitionError")


# --- running something that is not a function ---------------------------------------------------------------


def test_running_an_undecorated_handler_or_none_is_refused(db: zapnb.Database) -> None:
    def plain(ctx: QueryContext) -> int:
        return 1

    for target, name in ((plain, "plain"), (None, "None")):
        with pytest.raises(zapnb.FunctionDefinitionError) as caught:
            db.run(target)  # type: ignore[arg-type]
        assert caught.value.function == name
        assert str(caught.value).startswith(
            "db.run() takes a function declared with @zapnb.query or @zapnb.mutation, not "
        )
        assert "Put @zapnb.query (it reads) or @zapnb.mutation (it writes) above" in str(caught.value)
    assert db.logs().height == 0

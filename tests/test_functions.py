"""Tests of zapnb.functions: declaring queries and mutations, running them, auth, and the run log."""

from __future__ import annotations

import importlib
import multiprocessing
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import zapnb
from zapnb import v
from zapnb.documents import document_size, value_size
from zapnb.functions import MUTATION_ATTEMPTS, MutationContext, QueryContext
from zapnb.monitoring import RunLog, RunRecord, log_schema


@pytest.fixture
def db(tmp_path: Path) -> Iterator[zapnb.Database]:
    with zapnb.connect(tmp_path / "data") as database:
        yield database


# --- functions used by the tests (module level, so spawned processes can import them) ----------------------


@zapnb.mutation(args={"counter": v.id("counters")})
def increment(ctx: MutationContext, *, counter: str) -> None:
    doc = ctx.db.get(counter)
    assert doc is not None
    ctx.db.patch(counter, {"n": doc["n"] + 1})


@zapnb.mutation(args={"text": v.string(), "priority": v.optional(v.number())})
def add_note(ctx: MutationContext, *, text: str, priority: float = 0.0) -> zapnb.Id:
    return ctx.db.insert("notes", {"text": text, "priority": priority})


@zapnb.query(args={"id": v.id("notes")})
def get_note(ctx: QueryContext, *, id: str) -> dict[str, Any] | None:
    return ctx.db.get(id)


def _increment_in_child(path: str, counter: str, times: int) -> None:
    with zapnb.connect(path) as db:
        for _ in range(times):
            db.run(increment, counter=counter)


# --- arguments ----------------------------------------------------------------------------------------------


def test_valid_arguments_are_normalized_and_passed_by_name(db: zapnb.Database) -> None:
    note = db.run(add_note, text="hello", priority=2)
    doc = db.run(get_note, id=str(note))
    assert doc is not None
    assert (doc["text"], doc["priority"]) == ("hello", 2.0)
    assert type(doc["priority"]) is float  # v.number() takes an int as a float
    assert db.run(get_note, id=note) == doc
    left_out = db.run(add_note, text="default priority")
    assert db.get(left_out) == {**db.get(left_out), "priority": 0.0}  # type: ignore[dict-item]


def test_a_value_of_the_wrong_type_is_refused_with_convexs_message(db: zapnb.Database) -> None:
    with pytest.raises(zapnb.ArgumentValidationError) as caught:
        db.run(add_note, text=3)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "ArgumentValidationError: Value does not match validator.\n"
        "Path: .text\n"
        "Value: 3\n"
        "Validator: v.string()\n"
        "Called as db.run(add_note, ...): pass arguments that match the args validators of mutation "
        "'add_note'."
    )
    err = caught.value
    assert (err.function, err.path, err.value, err.validator) == ("add_note", ".text", 3, "v.string()")
    assert "notes" not in db._engine.snapshot().catalog.numbers  # nothing ran, nothing was written


def test_missing_and_extra_arguments_are_refused_with_convexs_message(db: zapnb.Database) -> None:
    with pytest.raises(zapnb.ArgumentValidationError) as missing:
        db.run(add_note)  # type: ignore[call-arg]
    assert str(missing.value).splitlines()[:3] == [
        "ArgumentValidationError: Object is missing the required field `text`. Consider wrapping the field "
        "validator in `v.optional(...)` if this is expected.",
        "Object: {}",
        "Validator: v.object({text: v.string(), priority: v.optional(v.number())})",
    ]
    with pytest.raises(zapnb.ArgumentValidationError) as extra:
        db.run(add_note, text="x", colour="red")  # type: ignore[call-arg]
    assert str(extra.value).splitlines()[:3] == [
        "ArgumentValidationError: Object contains extra field `colour` that is not in the validator.",
        'Object: {"text":"x","colour":"red"}',
        "Validator: v.object({text: v.string(), priority: v.optional(v.number())})",
    ]
    assert (extra.value.path, extra.value.value) == ("", {"text": "x", "colour": "red"})


def test_an_id_of_another_table_and_positional_arguments_are_refused(db: zapnb.Database) -> None:
    counter = db.insert("counters", {"n": 0})
    with pytest.raises(zapnb.ArgumentValidationError, match=r"^ArgumentValidationError: Found ID") as caught:
        db.run(get_note, id=counter)
    assert caught.value.path == ".id"
    with pytest.raises(zapnb.ArgumentValidationError, match="takes its arguments by name") as positional:
        db.run(get_note, counter)  # type: ignore[call-arg]
    assert positional.value.value == [counter]


def test_a_bare_decorator_passes_any_arguments_unchecked(db: zapnb.Database) -> None:
    @zapnb.query
    def echo(ctx: QueryContext, /, **args: Any) -> dict[str, Any]:
        return args

    assert db.run(echo, a=1, b=[2]) == {"a": 1, "b": [2]}
    assert (echo.kind, echo.args, echo.name, repr(echo)) == ("query", None, "echo", "<zapnb query 'echo'>")


@pytest.mark.parametrize(
    ("args", "handler", "problem"),
    [
        ({"a": v.string()}, lambda ctx: None, "args declares 'a' but its handler has no such parameter"),
        ({"a": v.optional(v.string())}, lambda ctx, a: None, "the optional argument 'a' needs a default"),
        ({}, lambda ctx, a: None, "its handler requires 'a', which args does not declare"),
        (None, lambda: None, "its handler must take the context as first parameter"),
        ({"a": "string"}, lambda ctx, a: None, "are not validators"),
    ],
)
def test_args_that_do_not_fit_the_handler_are_refused_at_definition(
    args: dict[str, Any] | None, handler: Any, problem: str
) -> None:
    with pytest.raises(zapnb.FunctionDefinitionError, match=problem) as caught:
        zapnb.mutation(args=args, name="f")(handler)
    assert caught.value.function == "f"


def test_a_function_can_be_called_directly_with_a_context_of_ones_own() -> None:
    class Store:
        def __init__(self) -> None:
            self.inserted: list[dict[str, Any]] = []

        def insert(self, table: str, doc: dict[str, Any]) -> str:
            self.inserted.append(doc)
            return "id1"

    ctx = types.SimpleNamespace(db=Store(), auth=zapnb.functions.Auth())
    assert add_note(ctx, text="direct") == "id1"
    assert ctx.db.inserted == [{"text": "direct", "priority": 0.0}]


# --- queries ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "call"),
    [
        ("insert", lambda db, i: db.insert("notes", {"text": "x"})),
        ("insert_many", lambda db, i: db.insert_many("notes", [{"text": "x"}])),
        ("patch", lambda db, i: db.patch(i, {"text": "x"})),
        ("replace", lambda db, i: db.replace(i, {"text": "x"})),
        ("delete", lambda db, i: db.delete(i)),
    ],
)
def test_a_query_cannot_write(db: zapnb.Database, operation: str, call: Any) -> None:
    note = db.insert("notes", {"text": "before"})

    @zapnb.query
    def sneaky(ctx: QueryContext) -> None:
        call(ctx.db, note)

    with pytest.raises(zapnb.ReadOnlyError) as caught:
        db.run(sneaky)
    assert str(caught.value) == (
        f"ctx.db.{operation}(...) is not allowed in query 'sneaky': a query only reads the database. Write "
        "from a @zapnb.mutation instead, and run it with db.run(...)."
    )
    assert (caught.value.function, caught.value.operation) == ("sneaky", operation)
    assert db.get(note) == {**db.get(note), "text": "before"}  # type: ignore[dict-item]


def test_a_query_reads_at_one_snapshot(db: zapnb.Database) -> None:
    note = db.insert("notes", {"text": "old"})

    @zapnb.query
    def read_twice(ctx: QueryContext) -> tuple[str, str, zapnb.Id | None]:
        first = ctx.db.get(note)
        writer = threading.Thread(target=db.patch, args=(note, {"text": "new"}))
        writer.start()  # a commit made (on another thread) while the query runs
        writer.join()
        second = ctx.db.get(note)
        assert first is not None
        assert second is not None
        return first["text"], second["text"], ctx.db.normalize_id("notes", str(note))

    assert db.run(read_twice) == ("old", "old", note)
    assert db.run(read_twice)[:2] == ("new", "new")


def test_queries_through_ctx_db_count_the_documents_they_return(db: zapnb.Database) -> None:
    db.insert_many("notes", [{"text": text} for text in "abc"])

    @zapnb.query
    def reads(ctx: QueryContext) -> dict[str, Any]:
        notes = ctx.db.query("notes")
        assert (notes.table, notes.index, repr(notes)) == ("notes", "by_creation_time", "query('notes')")
        return {
            "frame": notes.collect(),
            "take": notes.order("desc").take(1),
            "first": notes.first(),
            "unique": notes.filter(lambda q: q.eq(q.field("text"), "b")).unique(),
            "listed": list(notes.filter(lambda q: q.neq(q.field("text"), "b"))),
            "page": notes.paginate(2).page,
            "count": notes.count(),
            "explained": notes.explain().returned,
        }

    out = db.run(reads)
    assert (out["count"], out["explained"], out["frame"]["text"].to_list()) == (3, 3, ["a", "b", "c"])
    row = db.logs().row(-1, named=True)
    assert row["documents_read"] == 3 + 1 + 1 + 1 + 2 + 2
    frames = sum(out[name].estimated_size() for name in ("frame", "take", "page"))
    documents = sum(value_size(doc) for doc in [out["first"], out["unique"], *out["listed"]])
    assert row["bytes_read"] == frames + documents


def test_a_mutations_queries_see_its_own_writes(db: zapnb.Database) -> None:
    db.insert("notes", {"text": "a"})

    @zapnb.mutation
    def add_and_count(ctx: MutationContext) -> tuple[int, int]:
        ctx.db.insert("notes", {"text": "b"})
        return ctx.db.query("notes").count(), len(ctx.db.query("notes").with_index("by_id").collect())

    assert db.run(add_and_count) == (2, 2)


# --- mutations ----------------------------------------------------------------------------------------------


def test_a_mutation_commits_everything_or_nothing(db: zapnb.Database) -> None:
    written: list[zapnb.Id] = []
    keep = db.insert("notes", {"text": "keep"})

    @zapnb.mutation
    def half_done(ctx: MutationContext, *, fail: bool) -> list[zapnb.Id]:
        written.extend(ctx.db.insert_many("notes", [{"text": "a"}, {"text": "b"}]))
        ctx.db.patch(keep, {"text": "changed"})
        if fail:
            raise ValueError("stop here")
        ctx.db.delete(written[0])
        return written[1:]

    with pytest.raises(ValueError, match="stop here"):
        db.run(half_done, fail=True)
    assert [db.get(i) for i in written] == [None, None]
    assert db.get(keep) == {**db.get(keep), "text": "keep"}  # type: ignore[dict-item]
    written.clear()
    survivors = db.run(half_done, fail=False)
    assert db.get(written[0]) is None
    assert [doc["text"] for doc in map(db.get, survivors) if doc is not None] == ["b"]


def test_a_mutation_replaces_and_sees_its_own_writes(db: zapnb.Database) -> None:
    @zapnb.mutation
    def create_and_rewrite(ctx: MutationContext) -> dict[str, Any] | None:
        note = ctx.db.insert("notes", {"text": "draft"})
        ctx.db.replace(note, {"text": "final", "words": 1})
        return ctx.db.get(note)

    doc = db.run(create_and_rewrite)
    assert doc is not None
    assert db.get(doc["_id"]) == doc
    assert (doc["text"], doc["words"]) == ("final", 1)


def test_twenty_threads_incrementing_one_counter_end_at_twenty(db: zapnb.Database) -> None:
    counter = db.insert("counters", {"n": 0})
    start = threading.Barrier(20)
    failures: list[BaseException] = []

    @zapnb.mutation(args={"counter": v.id("counters")})
    def slow_increment(ctx: MutationContext, *, counter: str) -> None:
        doc = ctx.db.get(counter)
        assert doc is not None
        time.sleep(0.002)  # widen the window between the read and the commit, so threads surely overlap
        ctx.db.patch(counter, {"n": doc["n"] + 1})

    def work() -> None:
        start.wait()
        try:
            db.run(slow_increment, counter=counter)
        except BaseException as err:  # pragma: no cover - reported by the assertion below
            failures.append(err)

    threads = [threading.Thread(target=work) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert db.get(counter) == {**db.get(counter), "n": 20}  # type: ignore[dict-item]
    logs = db.logs()
    assert logs.height == 20
    assert logs["outcome"].to_list() == ["success"] * 20
    assert logs["attempts"].sum() > 20  # some of them conflicted and ran again


def test_twenty_increments_from_four_processes_end_at_twenty(tmp_path: Path) -> None:
    path = str(tmp_path / "data")
    with zapnb.connect(path) as db:
        counter = db.insert("counters", {"n": 0})
        context = multiprocessing.get_context("spawn")
        children = [
            context.Process(target=_increment_in_child, args=(path, str(counter), 5)) for _ in range(4)
        ]
        for child in children:
            child.start()
        for child in children:
            child.join(120)
        assert [child.exitcode for child in children] == [0, 0, 0, 0]
        assert (db.get(counter) or {}).get("n") == 20
        db.run(increment, counter=counter)  # this process's view follows theirs
        assert (db.get(counter) or {}).get("n") == 21


def test_a_mutation_that_always_conflicts_raises_after_its_attempts(db: zapnb.Database) -> None:
    counter = db.insert("counters", {"n": 0})
    runs: list[int] = []

    @zapnb.mutation
    def contended(ctx: MutationContext) -> None:
        doc = ctx.db.get(counter)
        assert doc is not None
        writer = threading.Thread(target=db.patch, args=(counter, {"n": doc["n"] + 1}))
        writer.start()  # another thread changes what this mutation read, before it commits
        writer.join()
        ctx.db.insert("marks", {"run": len(runs)})
        runs.append(doc["n"])

    with pytest.raises(zapnb.ConflictError) as caught:
        db.run(contended)
    assert caught.value.attempts == MUTATION_ATTEMPTS == len(runs)
    assert caught.value.table == "counters"
    assert str(caught.value).startswith(
        f"Mutation 'contended' conflicted with other commits {len(runs)} times"
    )
    assert runs == list(range(MUTATION_ATTEMPTS))  # each attempt read a fresh snapshot
    assert "marks" not in (db._engine.snapshot().catalog.numbers)  # no attempt's write was committed
    last = db.logs().row(-1, named=True)
    assert (last["outcome"], last["attempts"], last["error_type"]) == ("conflict", len(runs), "ConflictError")
    assert last["documents_written"] == 0


# --- auth ---------------------------------------------------------------------------------------------------


@zapnb.query
def who(ctx: QueryContext) -> zapnb.UserIdentity | None:
    return ctx.auth.get_user_identity()


def test_as_user_sets_the_identity_functions_see(db: zapnb.Database) -> None:
    assert db.run(who) is None
    alice = db.as_user({"subject": "alice", "issuer": "https://auth.example", "email": "a@example.com"})
    identity = alice.run(who)
    assert identity == zapnb.UserIdentity(
        subject="alice",
        issuer="https://auth.example",
        token_identifier="https://auth.example|alice",
        claims={"email": "a@example.com"},
    )
    assert identity is not None
    assert identity.claims["email"] == "a@example.com"
    assert db.run(who) is None  # the original database has no user
    assert db.as_user("bob").run(who) == zapnb.UserIdentity("bob", "zapnb", "zapnb|bob", {})
    camel = db.as_user({"subject": "c", "tokenIdentifier": "tok"}).run(who)
    assert camel is not None
    assert (camel.token_identifier, dict(camel.claims)) == ("tok", {})
    assert len({camel, zapnb.UserIdentity.of(camel), zapnb.UserIdentity("c", token_identifier="tok")}) == 1
    assert alice.as_user(None).run(who) is None
    assert db.logs()["function"].to_list() == ["who"] * 6  # the views share the run log


def test_an_identity_needs_a_subject(db: zapnb.Database) -> None:
    with pytest.raises(zapnb.InvalidValueError, match="needs a subject") as caught:
        db.as_user({"email": "x@example.com"})
    assert caught.value.path == ".subject"
    with pytest.raises(zapnb.InvalidValueError):
        db.as_user("")


# --- the run log --------------------------------------------------------------------------------------------


def test_the_run_log_records_names_outcomes_and_counts(db: zapnb.Database) -> None:
    note = db.run(add_note, text="hello")
    read = db.run(get_note, id=note)
    assert read is not None
    with pytest.raises(zapnb.ArgumentValidationError):
        db.run(get_note, id=3)  # type: ignore[arg-type]

    @zapnb.mutation
    def fails(ctx: MutationContext) -> None:
        ctx.db.insert("notes", {"text": "never"})
        raise KeyError("boom")

    with pytest.raises(KeyError):
        db.run(fails)
    logs = db.logs()
    assert logs.select("function", "kind", "outcome", "attempts", "error_type").rows() == [
        ("add_note", "mutation", "success", 1, None),
        ("get_note", "query", "success", 1, None),
        ("get_note", "query", "error", 0, "ArgumentValidationError"),
        ("fails", "mutation", "error", 1, "KeyError"),
    ]
    counts = logs.select("documents_read", "bytes_read", "documents_written", "bytes_written").rows()
    assert counts == [(0, 0, 1, document_size(read)), (1, value_size(read), 0, 0), (0, 0, 0, 0), (0, 0, 0, 0)]
    messages = logs["error_message"].to_list()
    assert messages[:2] == [None, None]
    assert messages[2].startswith("ArgumentValidationError: Value does not match validator.\nPath: .id\n")
    assert messages[3] == "'boom'"
    assert logs["duration_ms"].min() > 0  # type: ignore[operator]
    assert logs["started_at"].is_sorted()


def test_an_empty_run_log_has_its_schema(db: zapnb.Database) -> None:
    logs = db.logs()
    assert logs.height == 0
    assert dict(logs.schema) == log_schema()
    assert logs.schema["started_at"] == pl.Datetime("us", "UTC")
    assert logs.schema["outcome"] == pl.Enum(["success", "error", "conflict"])


def test_the_run_log_keeps_only_the_most_recent_runs() -> None:
    log = RunLog(size=3)
    for n in range(5):
        log.append(RunRecord(f"f{n}", "query", 1.0 + n, 1.0, 0, 0, 0, 0, "success", 1, None, None))
    assert log.frame()["function"].to_list() == ["f2", "f3", "f4"]
    assert len(log) == 3
    assert repr(log) == "<zapnb.RunLog 3 runs (keeps 3)>"


# --- the package --------------------------------------------------------------------------------------------


def test_the_decorators_are_package_attributes_after_the_query_builder_loads() -> None:
    importlib.import_module("zapnb.queries")  # the query builder's module has its own name
    assert zapnb.query is zapnb.functions.query
    assert zapnb.mutation is zapnb.functions.mutation
    assert zapnb.UserIdentity is zapnb.functions.UserIdentity


@pytest.mark.parametrize("identity", [5, 2.5, ["alice"], b"alice"])
def test_as_user_refuses_what_is_not_an_identity(db: zapnb.Database, identity: Any) -> None:
    with pytest.raises(zapnb.InvalidValueError) as caught:
        db.as_user(identity)
    assert caught.value.value == identity
    assert str(caught.value).startswith(
        "db.as_user() takes a subject (a str such as 'alice'), a dict of claims"
    )

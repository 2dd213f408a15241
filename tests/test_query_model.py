"""Queries against a plain Python model: random writes, transactions, reopens and queries agree exactly."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import zapnb
from zapnb import v
from zapnb.filters import FilterBuilder
from zapnb.jsonvalues import encode_json
from zapnb.queries import Query
from zapnb.values import MISSING, UNSET, compare, values_equal

SCHEMA = zapnb.define_schema(
    {
        "items": zapnb.define_table({"g": v.int64(), "n": v.optional(v.number()), "x": v.optional(v.any())})
        .index("by_g_n", ["g", "n"])
        .index("by_x", ["x"])
    }
)
INDEXES: dict[str | None, tuple[str, ...]] = {None: (), "by_g_n": ("g", "n"), "by_x": ("x",)}

G = st.integers(0, 2)
N = st.sampled_from([MISSING, 0, 1, 2, -1.5, 0.5, 1.0, -0.0])
X = st.sampled_from([MISSING, None, 0, 1, 1.0, -0.0, "a", "b", True, False, b"z", [1], {"k": 1}])
LITERALS = {"g": G, "n": N.filter(lambda x: x is not MISSING), "x": X.filter(lambda x: x is not MISSING)}

Doc = dict[str, Any]
KEEP = object()  # in a patch: leave the field as it is


def _stored(value: Any, field: str) -> Any:
    """A value as the schema stores it: ``n`` is a number, so an int becomes a float."""
    return float(value) if field == "n" and type(value) is int else value


def _get(doc: Doc, field: str) -> Any:
    return doc.get(field, MISSING)


def _passes(value: Any, op: str, literal: Any) -> bool:
    order = compare(value, literal)
    return {"eq": order == 0, "neq": order != 0, "gt": order > 0, "gte": order >= 0, "lt": order < 0}.get(
        op, order <= 0
    )


class QueryModel(RuleBasedStateMachine):
    """The database and a dict of documents, changed together; every query must see the model."""

    @initialize()
    def open(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="zapnb-model-"))
        self.db = zapnb.connect(self.directory)
        self.db.deploy(SCHEMA, progress=False)
        self.model: dict[str, Doc] = {}

    def teardown(self) -> None:
        if hasattr(self, "db"):
            self.db.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    # --- writes ---------------------------------------------------------------------------------------------

    @staticmethod
    def _fields(g: int, n: Any, x: Any) -> Doc:
        doc: Doc = {"g": g}
        if n is not MISSING:
            doc["n"] = n
        if x is not MISSING:
            doc["x"] = x
        return doc

    def _insert(self, writer: Any, model: dict[str, Doc], fields: Doc) -> None:
        doc_id = writer.insert("items", fields)
        stored = writer.get(doc_id)
        model[str(doc_id)] = {k: _stored(val, k) for k, val in fields.items()} | {
            "_id": str(doc_id),
            "_creationTime": stored["_creationTime"],
        }

    @staticmethod
    def _patch(writer: Any, model: dict[str, Doc], doc_id: str, g: Any, n: Any, x: Any) -> None:
        changes = {name: value for name, value in (("g", g), ("n", n), ("x", x)) if value is not KEEP}
        writer.patch(doc_id, changes)
        doc = dict(model[doc_id])
        for name, value in changes.items():
            if value is UNSET:
                doc.pop(name, None)
            else:
                doc[name] = _stored(value, name)
        model[doc_id] = doc

    @rule(g=G, n=N, x=X)
    def insert(self, g: int, n: Any, x: Any) -> None:
        self._insert(self.db, self.model, self._fields(g, n, x))

    @precondition(lambda self: self.model)
    @rule(
        data=st.data(),
        g=st.one_of(st.just(KEEP), G),
        n=st.one_of(st.just(KEEP), st.just(UNSET), LITERALS["n"]),
        x=st.one_of(st.just(KEEP), st.just(UNSET), LITERALS["x"]),
    )
    def patch(self, data: st.DataObject, g: Any, n: Any, x: Any) -> None:
        doc_id = data.draw(st.sampled_from(sorted(self.model)))
        self._patch(self.db, self.model, doc_id, g, n, x)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        doc_id = data.draw(st.sampled_from(sorted(self.model)))
        self.db.delete(doc_id)
        del self.model[doc_id]

    @rule(checkpoint=st.booleans())
    def reopen(self, checkpoint: bool) -> None:
        if checkpoint:
            self.db._engine.checkpoint()
        self.db.close()
        self.db = zapnb.connect(self.directory)

    @rule(data=st.data())
    def transaction(self, data: st.DataObject) -> None:
        model = dict(self.model)
        with self.db.transaction() as tx:
            for _ in range(data.draw(st.integers(1, 4))):
                if bool(model) and data.draw(st.booleans()):
                    doc_id = data.draw(st.sampled_from(sorted(model)))
                    if data.draw(st.booleans()):
                        tx.delete(doc_id)
                        del model[doc_id]
                    else:
                        n = data.draw(st.one_of(st.just(UNSET), LITERALS["n"]))
                        self._patch(tx, model, doc_id, data.draw(G), n, KEEP)
                else:
                    self._insert(tx, model, self._fields(data.draw(G), data.draw(N), data.draw(X)))
            self._check(data, lambda table: tx.query(table), model)
        self.model = model

    # --- queries --------------------------------------------------------------------------------------------

    @rule(data=st.data())
    def query(self, data: st.DataObject) -> None:
        self._check(data, self.db.query, self.model)

    @invariant()
    def counts_agree(self) -> None:
        if hasattr(self, "db"):
            assert self.db.query("items").count() == len(self.model)

    def _check(self, data: st.DataObject, query_of: Any, model: dict[str, Doc]) -> None:
        index = data.draw(st.sampled_from([None, "by_g_n", "by_x"]))
        fields = INDEXES[index]
        ops = self._draw_range(data, fields)
        order = data.draw(st.sampled_from(["asc", "desc"]))
        drawn = data.draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["g", "n", "x"]),
                    st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte"]),
                    st.data(),
                ),
                max_size=2,
            )
        )
        filters = [(f, op, d.draw(LITERALS[f])) for f, op, d in drawn]
        query: Query = query_of("items")
        if index is not None:
            query = query.with_index(index, functools.partial(_build_range, ops))
        query = query.order("desc" if order == "desc" else "asc")
        for field, op, literal in filters:
            query = query.filter(functools.partial(_build_filter, field, op, literal))
        expected = _expected(model, fields, ops, order, filters)
        terminal = data.draw(st.sampled_from(["collect", "take", "count", "first", "paginate", "iterate"]))
        _run_terminal(data, query, terminal, expected)

    @staticmethod
    def _draw_range(data: st.DataObject, fields: tuple[str, ...]) -> list[tuple[str, str, Any]]:
        ops: list[tuple[str, str, Any]] = []
        equalities = data.draw(st.integers(0, len(fields)))
        for field in fields[:equalities]:
            ops.append(("eq", field, data.draw(LITERALS[field] | st.just(MISSING))))
        if equalities < len(fields):
            field = fields[equalities]
            for side in (["gt", "gte"], ["lt", "lte"]):
                if data.draw(st.booleans()):
                    ops.append((data.draw(st.sampled_from(side)), field, data.draw(LITERALS[field])))
        return ops


def _build_range(ops: list[tuple[str, str, Any]], q: Any) -> Any:
    for op, field, value in ops:
        q = getattr(q, op)(field, value)
    return q


def _build_filter(field: str, op: str, literal: Any, q: FilterBuilder) -> Any:
    return getattr(q, op)(q.field(field), literal)


def _expected(
    model: dict[str, Doc],
    fields: tuple[str, ...],
    ops: list[tuple[str, str, Any]],
    order: str,
    filters: list[tuple[str, str, Any]],
) -> list[Doc]:
    def in_range(doc: Doc) -> bool:
        return all(_passes(_get(doc, f), op, _stored(value, f)) for op, f, value in ops)

    def kept(doc: Doc) -> bool:
        return all(_passes(_get(doc, f), op, _stored(value, f)) for f, op, value in filters)

    def key(doc: Doc) -> list[Any]:
        return [_get(doc, f) for f in fields] + [doc["_creationTime"], doc["_id"]]

    docs = [doc for doc in model.values() if in_range(doc) and kept(doc)]
    docs.sort(key=lambda doc: functools.cmp_to_key(compare)(key(doc)), reverse=order == "desc")
    return docs


def _same_frame(frame: Any, expected: list[Doc]) -> None:
    assert frame["_id"].to_list() == [doc["_id"] for doc in expected]
    assert frame["g"].to_list() == [doc["g"] for doc in expected]
    for got, doc in zip(frame["n"].to_list(), expected, strict=True):
        assert values_equal(got, doc.get("n")) or (got is None and "n" not in doc)
    assert frame["x"].to_list() == [encode_json(doc["x"]) if "x" in doc else None for doc in expected]


def _run_terminal(data: st.DataObject, query: Query, terminal: str, expected: list[Doc]) -> None:
    if terminal == "collect":
        _same_frame(query.collect(), expected)
    elif terminal == "take":
        n = data.draw(st.integers(0, 4))
        _same_frame(query.take(n), expected[:n])
    elif terminal == "count":
        assert query.count() == len(expected)
    elif terminal == "first":
        first = query.first()
        assert (first is None) == (not expected)
        assert first is None or values_equal(dict(first), expected[0])
    elif terminal == "iterate":
        docs = list(query)
        assert len(docs) == len(expected)
        assert all(values_equal(dict(got), doc) for got, doc in zip(docs, expected, strict=True))
    else:
        size = data.draw(st.integers(1, 3))
        seen: list[str] = []
        cursor = None
        while True:
            result = query.paginate(size, cursor)
            ids = result.page["_id"].to_list()
            assert len(ids) == size or result.is_done
            seen += ids
            if result.is_done:
                break
            cursor = result.continue_cursor
        assert seen == [doc["_id"] for doc in expected]


QueryModel.TestCase.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
TestQueryModel = QueryModel.TestCase

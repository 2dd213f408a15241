"""Deploys and checkpoints together: a table's files must always fit the schema its checkpoint records.

A deploy can change a table's columns or its indexes without writing a document to it; the checkpoint after it
must still rewrite the table, or the next open maps files of the old shape under the new schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import zapnb
from zapnb import define_schema, define_table, v
from zapnb.errors import SchemaDefinitionError
from zapnb.schema import Schema, TableDefinition

OTHER = define_table({"m": v.string()})


def _reopen(db: zapnb.Database, path: Path) -> zapnb.Database:
    db.close()
    return zapnb.connect(path)


def _rows(db: zapnb.Database, table: str, index: str | None = None) -> list[dict[str, Any]]:
    query = db.query(table) if index is None else db.query(table).with_index(index)
    return [{k: val for k, val in doc.items() if not k.startswith("_")} for doc in query]


def test_a_new_optional_field_survives_reopen_after_a_checkpoint_of_another_table(tmp_path: Path) -> None:
    db = zapnb.connect(tmp_path)
    db.deploy(define_schema({"a": define_table({"x": v.string()}), "b": OTHER}), progress=False)
    db.insert("a", {"x": "hello"})
    db.checkpoint()
    wider = define_table({"x": v.string(), "z": v.optional(v.int64())})
    db.deploy(define_schema({"a": wider, "b": OTHER}), progress=False)
    db.insert("b", {"m": "only this table is written"})
    db = _reopen(db, tmp_path)
    assert _rows(db, "a") == [{"x": "hello"}]
    assert db.query("a").collect()["z"].to_list() == [None]
    db.insert("a", {"x": "new", "z": 3})
    db = _reopen(db, tmp_path)
    assert _rows(db, "a") == [{"x": "hello"}, {"x": "new", "z": 3}]
    db.close()


def test_an_index_deployed_after_a_checkpoint_is_kept_by_the_next_one(tmp_path: Path) -> None:
    tasks = define_table({"title": v.string(), "prio": v.int64()})
    db = zapnb.connect(tmp_path)
    db.deploy(define_schema({"tasks": tasks, "log": OTHER}), progress=False)
    for i in range(5):
        db.insert("tasks", {"title": f"t{i}", "prio": i % 2})
    db.checkpoint()
    db.deploy(define_schema({"tasks": tasks.index("by_prio", ["prio"]), "log": OTHER}), progress=False)
    db.insert("log", {"m": "deployed"})
    db = _reopen(db, tmp_path)
    by_prio = db.query("tasks").with_index("by_prio", lambda q: q.eq("prio", 1))
    assert by_prio.count() == 2
    assert [row["title"] for row in by_prio.collect().to_dicts()] == ["t1", "t3"]
    db.close()


def test_an_index_redefined_under_its_name_is_rewritten(tmp_path: Path) -> None:
    base = define_table({"a": v.string(), "b": v.string()})
    db = zapnb.connect(tmp_path)
    db.deploy(define_schema({"t": base.index("by_k", ["a"]), "log": OTHER}), progress=False)
    for i in range(4):
        db.insert("t", {"a": f"a{i}", "b": f"b{3 - i}"})
    db.checkpoint()
    db.deploy(define_schema({"t": base.index("by_k", ["b"]), "log": OTHER}), progress=False)
    db.insert("log", {"m": "x"})
    db = _reopen(db, tmp_path)
    assert [row["b"] for row in _rows(db, "t", "by_k")] == ["b0", "b1", "b2", "b3"]
    db.close()


def test_a_table_removed_from_the_schema_keeps_its_data_across_checkpoints(tmp_path: Path) -> None:
    db = zapnb.connect(tmp_path)
    db.deploy(define_schema({"t": define_table({"n": v.int64()}), "log": OTHER}), progress=False)
    db.insert("t", {"n": 1})
    db.checkpoint()
    db.deploy(define_schema({"log": OTHER}), progress=False)
    db.insert("log", {"m": "x"})
    assert db.checkpoint()
    db = _reopen(db, tmp_path)
    assert _rows(db, "t") == [{"n": 1}]
    db.close()


def test_unvalidated_documents_that_do_not_fit_the_declared_columns_checkpoint(tmp_path: Path) -> None:
    loose = define_schema({"t": define_table({"a": v.string(), "n": v.number()})}, schema_validation=False)
    db = zapnb.connect(tmp_path)
    db.deploy(loose, progress=False)
    docs = [{"a": "x", "n": 1}, {"a": 5, "zz": [1]}, {"a": "y", "n": 2.5}]
    for doc in docs:
        db.insert("t", doc)
    assert db.checkpoint()
    db = _reopen(db, tmp_path)
    assert [{k: val for k, val in d.items() if not k.startswith("_")} for d in db.query("t")] == docs
    db.close()


def test_turning_validation_on_rewrites_the_table_in_its_declared_columns(tmp_path: Path) -> None:
    table = define_table({"a": v.string()})
    db = zapnb.connect(tmp_path)
    db.deploy(define_schema({"t": table, "log": OTHER}, schema_validation=False), progress=False)
    db.insert("t", {"a": "x"})
    db.checkpoint()
    db.deploy(define_schema({"t": table, "log": OTHER}), progress=False)
    db.insert("log", {"m": "x"})
    db = _reopen(db, tmp_path)
    assert db.query("t").collect().schema["a"] == zapnb_string_dtype()
    assert _rows(db, "t") == [{"a": "x"}]
    db.close()


def zapnb_string_dtype() -> Any:
    import polars as pl

    return pl.String


def test_a_base_in_the_declared_columns_of_an_unvalidated_table_still_opens(tmp_path: Path) -> None:
    """Checkpoints stored unvalidated tables in their declared columns before; such a base still opens, and
    the next checkpoint rewrites it."""
    table = define_table({"a": v.string()})
    db = zapnb.connect(tmp_path)
    db.deploy(define_schema({"t": table}), progress=False)
    db.insert("t", {"a": "x"})
    db.close()
    info_path = tmp_path / "checkpoint.json"
    info = json.loads(info_path.read_bytes())
    info["schema"]["schemaValidation"] = False
    info_path.write_text(json.dumps(info))
    db = zapnb.connect(tmp_path)
    assert _rows(db, "t") == [{"a": "x"}]
    db.insert("t", {"a": 7})
    db = _reopen(db, tmp_path)
    assert _rows(db, "t") == [{"a": "x"}, {"a": 7}]
    db.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda: TableDefinition(v.string()),
        lambda: TableDefinition(v.object({"_secret": v.string()})),
        lambda: Schema({"t": define_table({"a": v.int64()}).index("by_id", ["a"])}),
    ],
    ids=["not-an-object", "reserved-field", "reserved-index"],
)
def test_definitions_built_directly_are_checked_like_define_schema(make: Any) -> None:
    with pytest.raises(SchemaDefinitionError):
        make()


def test_deploy_refuses_what_is_not_a_schema_and_changes_nothing(tmp_path: Path) -> None:
    db = zapnb.connect(tmp_path)
    db.deploy(define_schema({"t": define_table({"a": v.int64()})}), progress=False)
    for bad in ({"t": define_table({"a": v.string()})}, None):
        with pytest.raises(SchemaDefinitionError, match="define_schema"):
            db.deploy(bad, progress=False)  # type: ignore[arg-type]
    db.insert("t", {"a": 1})
    db = _reopen(db, tmp_path)
    assert _rows(db, "t") == [{"a": 1}]
    db.close()


def test_the_report_names_indexes_redefined_and_staged_indexes_enabled(tmp_path: Path) -> None:
    base = define_table({"a": v.string(), "b": v.string(), "c": v.string()})
    db = zapnb.connect(tmp_path)
    db.deploy(
        define_schema({"t": base.index("by_k", ["a"]).index("by_b", ["b"], staged=True)}), progress=False
    )
    after = define_schema({"t": base.index("by_k", ["c"]).index("by_b", ["b"])})
    report = db.deploy(after, progress=False)
    assert report.indexes_created == ("t.by_b", "t.by_k")
    assert report.indexes_removed == ("t.by_k",)
    same = db.deploy(after, progress=False)
    assert (same.indexes_created, same.indexes_removed) == ((), ())
    db.close()


def test_progress_false_hides_the_bars_of_index_builds(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import polars as pl

    table = define_table({"a": v.int64()})
    db = zapnb.connect(tmp_path)
    db.deploy(define_schema({"t": table}), progress=False)
    db.insert_many("t", pl.DataFrame({"a": list(range(12_000))}))
    capfd.readouterr()
    db.deploy(define_schema({"t": table.index("by_a", ["a"])}), progress=False)
    assert "building t.by_a" not in capfd.readouterr().err
    db.deploy(define_schema({"t": table.index("by_a2", ["a"])}), progress=True)
    assert "building t.by_a2" in capfd.readouterr().err
    db.close()


def test_tables_and_indexes_keep_their_definition_order_across_reopen(tmp_path: Path) -> None:
    table = define_table({"z": v.string(), "a": v.string()}).index("by_z", ["z"]).index("by_a", ["a"])
    schema = define_schema({"zeta": table, "alpha": OTHER})
    db = zapnb.connect(tmp_path)
    db.deploy(schema, progress=False)
    db.insert("zeta", {"z": "1", "a": "2"})
    db = _reopen(db, tmp_path)  # read back from the checkpoint
    assert db.schema is not None
    assert list(db.schema.tables) == ["zeta", "alpha"]
    assert [index.name for index in db.schema.tables["zeta"].indexes] == ["by_z", "by_a"]
    db.close()


def test_fields_named_with_dots_are_checkpointed_under_escaped_lance_names(tmp_path: Path) -> None:
    import lance

    from zapnb.storage import read_table_version, table_path

    table = define_table({"a.b": v.string(), "%2E": v.int64(), "o": v.object({"x.y": v.string()})})
    db = zapnb.connect(tmp_path)
    db.deploy(define_schema({"t": table}), progress=False)
    doc = {"a.b": "dot", "%2E": 7, "o": {"x.y": "nested"}}
    db.insert("t", doc)
    assert db.checkpoint()
    db = _reopen(db, tmp_path)
    assert _rows(db, "t") == [doc]
    db.close()
    assert lance.dataset(str(table_path(tmp_path, "t"))).schema.names[2:] == ["a%2Eb", "%252E", "o"]
    stored, _ = read_table_version(tmp_path, "t")
    assert stored.column_names[2:] == ["a.b", "%2E", "o"]

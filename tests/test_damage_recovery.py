"""Damage the checkpoint or the log the ways a disk or an operator can, and open again: nothing committed is
lost, and new commits are kept (real files, real Lance datasets)."""

from __future__ import annotations

import json
import struct
import threading
import warnings
from pathlib import Path

import pytest

import zapnb
from zapnb import define_schema, define_table, v
from zapnb.engine import Engine
from zapnb.errors import ClosedError
from zapnb.log import CommitLog
from zapnb.storage import table_path, table_versions

SCHEMA = define_schema({"a": define_table({"n": v.int64()}), "b": define_table({"s": v.string()})})
SEGMENT_HEAD, RECORD_HEAD = 24, 24


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def _record_offset(segment: Path, index: int) -> int:
    """Where record ``index`` (0 = the segment's first) starts in ``segment``."""
    data = segment.read_bytes()
    position = SEGMENT_HEAD
    for _ in range(index):
        position += RECORD_HEAD + struct.unpack_from("<I", data, position)[0]
    return position


def test_new_commits_are_kept_after_a_repair_cut_the_log_below_the_checkpoint(tmp_path: Path) -> None:
    db = zapnb.connect(tmp_path)
    db.deploy(SCHEMA, progress=False)
    for n in range(20):
        db.insert("a", {"n": n})
    db.checkpoint()
    for n in range(20, 30):
        db.insert("a", {"n": n})
    db._engine.halt()  # stop as a crash would: no checkpoint of the last ten
    checkpoint_lsn = json.loads((tmp_path / "checkpoint.json").read_bytes())["lsn"]
    segment = next((tmp_path / "log").glob("*.zlog"))
    _flip(segment, _record_offset(segment, 9) + RECORD_HEAD + 4)  # record 10, held by the checkpoint
    with pytest.raises(zapnb.CorruptionError):
        zapnb.connect(tmp_path)
    with CommitLog.open(tmp_path, repair=True) as log:
        assert log.last_lsn() == 9 < checkpoint_lsn
    with pytest.warns(zapnb.ZapWarning, match="continues after the checkpoint"):
        db = zapnb.connect(tmp_path)
    assert db.query("a").count() == 20  # the checkpoint's; the ten after it were cut by the repair
    new = db.insert("a", {"n": 1000})
    assert db.get(new) is not None
    db.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        db = zapnb.connect(tmp_path)
    assert db.get(new) is not None
    assert db.query("a").count() == 21
    db.close()


def test_a_damaged_base_of_a_table_unchanged_for_several_checkpoints_is_rebuilt(tmp_path: Path) -> None:
    db = zapnb.Database(Engine.open(tmp_path, segment_size=4096))  # small segments: the log moves on
    db.deploy(SCHEMA, progress=False)
    for n in range(5):
        db.insert("a", {"n": n})
    db.checkpoint()
    for _ in range(3):  # the log moves past table a's last write
        for i in range(50):
            db.insert("b", {"s": f"s{i}"})
        db.checkpoint()
    db.close()
    info = json.loads((tmp_path / "checkpoint.json").read_bytes())
    assert info["tables"]["a"]["lsn"] < min(int(p.stem) for p in (tmp_path / "log").glob("*.zlog"))
    base = tmp_path / info["tables"]["a"]["base"]["path"]
    _flip(base, base.stat().st_size // 2)
    with pytest.warns(zapnb.ZapWarning, match="rebuilt from its Lance dataset"):
        db = zapnb.connect(tmp_path)
    assert sorted(doc["n"] for doc in db.query("a")) == [0, 1, 2, 3, 4]
    assert db.checkpoint()  # writes the damaged files anew, though nothing changed
    db.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        db = zapnb.connect(tmp_path)
    assert db.query("a").count() == 5
    assert db.query("b").count() == 150
    db.close()


def test_a_checkpoint_moves_a_newest_manifest_lance_cannot_read_aside(tmp_path: Path) -> None:
    db = zapnb.connect(tmp_path)
    db.deploy(SCHEMA, progress=False)
    db.insert("a", {"n": 1})
    db.checkpoint()
    db.insert("a", {"n": 2})
    db.checkpoint()
    newest = max(
        (table_path(tmp_path, "a") / "_versions").glob("*.manifest"), key=lambda p: p.stat().st_mtime
    )
    _flip(newest, newest.stat().st_size // 2)  # whole, but no longer a manifest Lance can decode
    db.insert("a", {"n": 3})
    with pytest.warns(zapnb.ZapWarning, match="cannot be read"):
        assert db.checkpoint()
    db.close()
    versions = table_versions(tmp_path, "a")
    assert versions[-1].lsn == json.loads((tmp_path / "checkpoint.json").read_bytes())["lsn"]
    db = zapnb.connect(tmp_path)
    assert sorted(doc["n"] for doc in db.query("a")) == [1, 2, 3]
    db.close()


def _race_close(path: Path) -> list[BaseException]:
    """Close a database while a thread commits and another checkpoints; what the checkpoint raised."""
    db = zapnb.connect(path)
    db.deploy(SCHEMA, progress=False)
    errors: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            try:
                db.insert("a", {"n": 1})
            except ClosedError:
                return

    def checkpoint() -> None:
        try:
            db.checkpoint()
        except BaseException as err:
            errors.append(err)

    writer = threading.Thread(target=write)
    writer.start()
    racer = threading.Timer(0.05, checkpoint)
    racer.start()
    db.close()
    racer.join()
    stop.set()
    writer.join()
    return errors


def test_a_checkpoint_racing_close_raises_the_databases_closed_error(tmp_path: Path) -> None:
    for round_ in range(3):
        errors = _race_close(tmp_path / str(round_))
        assert all(isinstance(err, ClosedError) and "zapnb.connect" in str(err) for err in errors), errors
        zapnb.connect(tmp_path / str(round_)).close()


def test_a_log_missing_its_first_segment_without_a_checkpoint_is_damage(tmp_path: Path) -> None:
    db = zapnb.Database(Engine.open(tmp_path, segment_size=4096))
    db.deploy(SCHEMA, progress=False)
    for n in range(200):
        db.insert("a", {"n": n})
    db._engine.halt()  # no checkpoint: the log holds everything
    segments = sorted((tmp_path / "log").glob("*.zlog"))
    assert len(segments) > 2
    segments[0].unlink()
    with pytest.raises(zapnb.CorruptionError, match="segment files are missing") as info:
        zapnb.connect(tmp_path)
    assert info.value.file == str(tmp_path / "log")

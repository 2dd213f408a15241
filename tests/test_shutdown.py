"""A process that exits without ``close()`` while a checkpoint is being written exits cleanly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import zapnb
from zapnb import v

CHILD = textwrap.dedent(
    """
    import sys, time
    import polars as pl
    import zapnb
    from zapnb import v

    db = zapnb.connect(sys.argv[1])
    db.deploy(zapnb.define_schema({"rows": zapnb.define_table({"n": v.int64(), "text": v.string()})}))
    count = int(sys.argv[2])
    db.insert_many("rows", pl.DataFrame({"n": range(count), "text": ["x" * 100] * count}))
    engine = db._engine
    deadline = time.monotonic() + 30
    while not engine._checkpoint_mutex.locked() and time.monotonic() < deadline:
        time.sleep(0.001)  # the watcher starts the checkpoint: 50,000 writes are due
    print("checkpointing" if engine._checkpoint_mutex.locked() else "no checkpoint", flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::zapnb.FilterScanWarning")
def test_exit_during_a_background_checkpoint_is_clean(tmp_path: Path) -> None:
    count = 120_000
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(count)], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "checkpointing"
    assert done.returncode == 0, done.stderr
    assert "terminate" not in done.stderr
    with zapnb.connect(tmp_path) as db:
        assert db.query("rows").count() == count
        assert db.query("rows").filter(lambda q: q.eq(q.field("n"), count - 1)).count() == 1


def test_close_after_halt_does_nothing(tmp_path: Path) -> None:
    db = zapnb.connect(tmp_path)
    db.deploy(zapnb.define_schema({"rows": zapnb.define_table({"n": v.int64()})}))
    db.insert("rows", {"n": 1})
    db._engine.halt()
    db.close()
    with zapnb.connect(tmp_path) as again:
        assert again.query("rows").count() == 1

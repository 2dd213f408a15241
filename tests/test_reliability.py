"""The database survives every fault named here with nothing acknowledged lost, in real processes.

Tiers (``docs/storage.md`` states the promises; the log's own crash tests are in ``test_log.py``):

- SIGKILL at random moments, during opening and recovery, commits and checkpoints (slow);
- named kill points inside commits, checkpoints and log truncation, each one reached;
- a full disk during commits and during checkpoints, then space returning without reopening;
- damage: a flipped byte in the commit log, a truncated newest Lance manifest;
- serializability across processes: the bank invariant, a counter, the two doctors on call.

Crash-test children run ``reliability_child.py`` and come from a fork server that has already imported zapnb
and Lance, so a child starts in about 0.1 s rather than 1 s; some start from a fresh interpreter instead.
``reliability_check.py`` checks what they leave behind.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest
import reliability_workers as workers
from reliability_check import Seen, check
from reliability_child import CHECKPOINTING, OPENING, PHASES, Plan, documents, one_transaction, run

import zapnb
from zapnb import checkpoint as checkpoints
from zapnb import v
from zapnb.engine import Engine
from zapnb.errors import CorruptionError, StorageIOError, ZapWarning
from zapnb.log import DEFAULT_SEGMENT_SIZE
from zapnb.logformat import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE
from zapnb.storage import _manifests, read_table_version, table_path

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "reliability_child.py"
KILLED = -signal.SIGKILL
KILL_POINT_EXIT = 137


@pytest.fixture(scope="module")
def forkserver() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    # The server imports these before forking; it cannot import this directory's modules (it does not get
    # the test's sys.path), so each child imports the small child program itself.
    context.set_forkserver_preload(["zapnb.db", "zapnb.deploy", "zapnb.checkpoint", "zapnb.storage", "lance"])
    return context


@pytest.fixture(scope="module")
def spawn() -> SpawnContext:
    return multiprocessing.get_context("spawn")


def run_child(context: ForkServerContext, plan: Plan) -> int | None:
    """Run ``plan`` in a child process to its end (or its kill point); return the exit code."""
    process = context.Process(target=run, args=(plan,))
    process.start()
    process.join(120)
    return process.exitcode


def after(forkserver: ForkServerContext, data: Path, acked: Path, seen: Seen | None, run_: int) -> Seen:
    """Check, then prove the database goes on: a child writes and checkpoints, the parent writes and closes
    (which checkpoints), and the database is checked again after each."""
    seen = check(data, acked, seen)
    plan = Plan(str(data), str(acked), run_, count=6, checkpoint_every=3, segment_size=4096)
    assert run_child(forkserver, plan) == 0
    seen = check(data, acked, seen)
    with zapnb.connect(data) as db:
        live, rng, line, i = [str(d["_id"]) for d in documents(db, "docs")], random.Random(run_), None, 0
        while line is None:  # a discarded transaction acknowledges nothing: go on to the next
            line, i = one_transaction(db, rng, live, run_ + 1, i), i + 1
        with open(acked, "a") as side:
            side.write(line)
    return check(data, acked, seen)


# --- SIGKILL at random moments ------------------------------------------------------------------------------

KILLS = 200
FRESH_EVERY = 10  # every tenth child starts from a fresh interpreter: imports, opening, recovery


def _wait_for(status: Any, phase: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while status[0] != phase and time.monotonic() < deadline:
        time.sleep(0.001)


def _kill_forked(forkserver: ForkServerContext, plan: Plan, rng: random.Random) -> str:
    """Start a child, kill it at a random moment aimed at opening, a checkpoint or anywhere; say where."""
    status = forkserver.RawArray("q", 3)
    process = forkserver.Process(target=run, args=(plan, status))
    process.start()
    aim = rng.random()
    if aim < 0.2:
        _wait_for(status, OPENING, 5)
        time.sleep(rng.uniform(0, 0.03))
    elif aim < 0.45:
        _wait_for(status, CHECKPOINTING, 5)
        time.sleep(rng.uniform(0, 0.25))
    else:
        time.sleep(rng.uniform(0, 0.9))
    process.kill()
    process.join()
    assert process.exitcode == KILLED, f"the child ended by itself ({process.exitcode}) before the kill"
    return PHASES[status[0]]


def _kill_fresh(plan: Plan, rng: random.Random) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ZAPNB_KILL_AT", None)
    process = subprocess.Popen([sys.executable, str(CHILD), plan.to_json()], env=env)
    time.sleep(rng.uniform(0.2, 2.0))
    process.kill()
    assert process.wait() == KILLED, "the child ended by itself before the kill"
    return "fresh interpreter"


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_acknowledged(
    tmp_path: Path, forkserver: ForkServerContext
) -> None:
    data, acked = tmp_path / "data", tmp_path / "acked"
    rng = random.Random(2026)
    where: Counter[str] = Counter()
    seen: Seen | None = None
    started = time.monotonic()
    for kill in range(KILLS):
        plan = Plan(str(data), str(acked), kill, checkpoint_every=rng.choice([10, 25, 50]))
        if kill % FRESH_EVERY == FRESH_EVERY - 1:
            where[_kill_fresh(plan, rng)] += 1
        else:
            where[_kill_forked(forkserver, plan, rng)] += 1
        if kill % 3 == 2:  # in between, the next child recovers from the crash on its own
            seen = check(data, acked, seen)
    seen = after(forkserver, data, acked, seen, KILLS)
    elapsed = time.monotonic() - started
    print(
        f"\n{KILLS} kills in {elapsed:.0f} s ({dict(where)}); {seen.acknowledged} transactions "
        f"acknowledged, {len(seen.committed)} multi-document transactions and {seen.documents} documents "
        "standing, none lost"
    )
    assert where["opening"] >= 10
    assert where["checkpointing"] >= 20
    assert seen.acknowledged >= 5 * KILLS


# --- named kill points --------------------------------------------------------------------------------------

KILL_POINTS = [
    "engine.after_append_before_apply@7",
    "log.during_write@7",
    "log.after_write_before_fsync@7",
    "log.after_fsync@7",
    "log.during_rollover@2",
    "log.after_rollover@2",
    "log.before_segment_rename@2",
    "log.during_truncate@1",
    "durable.before_base_rename@3",
    "index.before_rename@4",
    "storage.after_lance_commit@3",
    "checkpoint.after_base_write@3",
    "checkpoint.after_index_write@3",
    "checkpoint.after_lance_commit@3",
    "checkpoint.before_info_write@2",
    "checkpoint.after_info_write_before_truncate@2",
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_each_step_loses_nothing_acknowledged(
    tmp_path: Path, forkserver: ForkServerContext, point: str
) -> None:
    data, acked = tmp_path / "data", tmp_path / "acked"
    plan = Plan(str(data), str(acked), 0, count=80, checkpoint_every=6, segment_size=4096, kill_at=point)
    assert run_child(forkserver, plan) == KILL_POINT_EXIT, f"the kill point {point} was never reached"
    assert check(data, acked).acknowledged > 0
    after(forkserver, data, acked, None, 1)


# --- a full disk --------------------------------------------------------------------------------------------

PAD = "x" * 2000
NOTES = zapnb.define_schema(
    {"notes": zapnb.define_table({"n": v.int64(), "pad": v.string()}).index("by_n", ["n"])}
)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small tmpfs file systems (``tmpfs("256k")``); unmounted at the end."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        try:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            pytest.skip("no mount command here: the full-disk tests mount a small tmpfs")
        if result.returncode:
            pytest.skip(f"mounting a tmpfs is not permitted here ({result.stderr.strip()}); it needs root")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=True)


def remount(point: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(point)], check=True)


def fill(point: Path, leave: int) -> None:
    """Fill the file system at ``point`` until ``leave`` bytes are free."""
    status = os.statvfs(point)
    size = status.f_bavail * status.f_frsize - leave
    if size > 0:
        descriptor = os.open(point / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.posix_fallocate(descriptor, 0, size)
        finally:
            os.close(descriptor)


def contents(db: zapnb.Database, table: str = "notes") -> dict[str, dict[str, Any]]:
    return {str(doc["_id"]): doc for doc in documents(db, table)}


def _commit_until_full(db: zapnb.Database, acked: dict[str, int]) -> tuple[StorageIOError, list[str]]:
    """Commit three documents at a time until a commit fails; return the error and the failed IDs."""
    for n in range(len(acked), len(acked) + 1000):
        try:
            with db.transaction() as tx:
                pending = [str(tx.insert("notes", {"n": 3 * n + j, "pad": PAD})) for j in range(3)]
        except StorageIOError as err:
            return err, pending
        acked.update((doc_id, 3 * n + j) for j, doc_id in enumerate(pending))
    raise AssertionError("the disk never filled")


@pytest.mark.parametrize("segment_size", [DEFAULT_SEGMENT_SIZE, 16 * 1024], ids=["one segment", "rollovers"])
def test_a_full_disk_fails_the_commit_whole_and_writes_resume_without_reopening(
    tmpfs: Callable[[str], Path], segment_size: int
) -> None:
    point = tmpfs("256k")
    data = point / "data"
    acked: dict[str, int] = {}
    with zapnb.Database(Engine.open(data, segment_size=segment_size)) as db:
        db.deploy(NOTES, progress=False)
        failure, pending = _commit_until_full(db, acked)
        assert failure.errno == errno.ENOSPC
        assert "free" in str(failure)
        assert pending
        assert all(db.get(doc_id) is None for doc_id in pending)  # nothing of the failed commit
        assert {k: d["n"] for k, d in contents(db).items()} == acked
        failure, pending = _commit_until_full(db, acked)  # still full: refused again, whole
        assert failure.errno == errno.ENOSPC
        assert all(db.get(doc_id) is None for doc_id in pending)
        remount(point, "64m")
        for n in range(20):  # the same open database goes on
            acked[str(db.insert("notes", {"n": 10_000 + n, "pad": PAD}))] = 10_000 + n
        assert {k: d["n"] for k, d in contents(db).items()} == acked
    with zapnb.connect(data) as db:
        assert {k: d["n"] for k, d in contents(db).items()} == acked
        assert len(acked) > 60


def test_a_close_that_cannot_checkpoint_loses_nothing_and_a_full_disk_still_opens(
    tmpfs: Callable[[str], Path],
) -> None:
    point = tmpfs("64m")
    data = point / "data"
    acked: dict[str, int] = {}
    db = zapnb.connect(data)
    for n in range(30):
        acked[str(db.insert("notes", {"n": n, "pad": PAD}))] = n
    fill(point, 0)
    failure, _pending = _commit_until_full(db, acked)
    assert failure.errno == errno.ENOSPC
    with pytest.raises(StorageIOError) as info:
        db.close()  # its checkpoint does not fit
    assert info.value.errno == errno.ENOSPC
    assert db._engine.closed
    with zapnb.connect(data) as db:  # opening a full disk writes nothing
        assert {k: d["n"] for k, d in contents(db).items()} == acked
        (point / "filler").unlink()
        acked[str(db.insert("notes", {"n": -1, "pad": PAD}))] = -1
    with zapnb.connect(data) as db:
        assert {k: d["n"] for k, d in contents(db).items()} == acked


def _write_notes(db: zapnb.Database, start: int, count: int) -> None:
    ids = db.insert_many("notes", [{"n": start + i, "pad": PAD} for i in range(count)])
    for doc_id in ids[: count // 4]:
        db.patch(doc_id, {"n": -start - 1})
    for doc_id in ids[count // 4 : count // 4 + 5]:
        db.delete(doc_id)


def _failed_checkpoint(point: Path, leave: int) -> str | None:
    """Fill the disk to ``leave`` free bytes during a checkpoint; check nothing is lost and that it recovers
    once space returns, without reopening. Returns the file the checkpoint failed on (``None``: it fit)."""
    data = point / "data"
    shutil.rmtree(data, ignore_errors=True)
    failed: str | None = None
    with zapnb.connect(data) as db:
        db.deploy(NOTES, progress=False)
        _write_notes(db, 0, 100)
        assert db._engine.checkpoint()
        _write_notes(db, 1000, 100)
        expected, before = contents(db), checkpoints.read_info(data)
        fill(point, leave)
        try:
            db._engine.checkpoint()
        except StorageIOError as err:
            failed, code = err.path, err.errno
            assert code == errno.ENOSPC
        assert contents(db) == expected  # the states were not half swapped
        if failed is not None:
            assert checkpoints.read_info(data) == before
        (point / "filler").unlink(missing_ok=True)  # space returns
        _write_notes(db, 2000, 20)
        assert db._engine.checkpoint()
        expected = contents(db)
    with zapnb.connect(data) as db:
        assert contents(db) == expected
        table, lsn = read_table_version(data, "notes")
        assert (table.num_rows, lsn) == (len(expected), db._engine.snapshot().lsn)
    return failed


def _step(path: str) -> str:
    for part, step in (("/base/", "base file"), ("/indexes/", "index file"), (".lance", "Lance version")):
        if part in path:
            return step
    return Path(path).name


def test_a_full_disk_during_a_checkpoint_loses_nothing_and_the_next_one_succeeds(
    tmpfs: Callable[[str], Path],
) -> None:
    assert _step(_failed_checkpoint(tmpfs("64m"), 0) or "it fit") == "base file"


@pytest.mark.slow
def test_a_full_disk_at_every_step_of_a_checkpoint_loses_nothing(tmpfs: Callable[[str], Path]) -> None:
    point = tmpfs("64m")
    steps: list[str] = []
    for leave in range(0, 4 << 20, 8192):  # from no space at all to enough, a page or two at a time
        failed = _failed_checkpoint(point, leave)
        if failed is None:
            break
        steps.append(_step(failed))
    print(f"\ncheckpoints failing on a full disk, by the file that failed: {dict(Counter(steps))}")
    assert {"base file", "index file", "Lance version"} <= set(steps)


# --- damage -------------------------------------------------------------------------------------------------


def _records(segment: Path) -> list[tuple[int, int, int]]:
    """(LSN, offset, payload length) of each record in a log segment."""
    data, offset, out = segment.read_bytes(), SEGMENT_HEADER_SIZE, []
    while offset + RECORD_HEADER_SIZE <= len(data):
        length, lsn = struct.unpack_from("<IQ", data, offset)
        if length == 0xFFFF_FFFF or lsn == 0:  # an end mark, or the zeros written ahead of the records
            break
        out.append((lsn, offset, length))
        offset += RECORD_HEADER_SIZE + length
    return out


def _crashed_database(forkserver: ForkServerContext, tmp_path: Path) -> tuple[Path, Path]:
    """A database whose writer died with commits in the log after its last checkpoint."""
    data, acked = tmp_path / "data", tmp_path / "acked"
    plan = Plan(str(data), str(acked), 0, count=60, checkpoint_every=10, segment_size=1 << 20)
    assert run_child(forkserver, replace(plan, kill_at="log.after_fsync@30")) == KILL_POINT_EXIT
    return data, acked


@pytest.mark.parametrize("sabotage", ["lost commits", "a write outside any transaction"])
def test_the_check_notices_what_it_must(tmp_path: Path, forkserver: ForkServerContext, sabotage: str) -> None:
    """The crash tests can fail: a log cut short by three commits, or a stray write, is noticed."""
    data, acked = _crashed_database(forkserver, tmp_path)
    seen = check(data, acked)
    if sabotage == "lost commits":
        (segment,) = sorted((data / "log").glob("*.zlog"))
        os.truncate(segment, _records(segment)[-3][1])
        message = "lost|disappeared"
    else:
        with zapnb.connect(data) as db:
            db.insert("docs", {"k": 0.5, "tx": "t:0:1", "pad": ""})
        message = "written by no committed transaction"
    with pytest.raises(AssertionError, match=message):
        check(data, acked, seen)


@pytest.mark.parametrize(("where", "at"), [("payload", RECORD_HEADER_SIZE + 7), ("header", 5)])
def test_a_flipped_byte_before_the_last_record_is_a_corruption_error_naming_file_and_offset(
    tmp_path: Path, forkserver: ForkServerContext, where: str, at: int
) -> None:
    data, _acked = _crashed_database(forkserver, tmp_path)
    (segment,) = sorted((data / "log").glob("*.zlog"))
    records = _records(segment)
    lsn, offset, _length = records[-3]
    assert lsn > checkpoints.read_info(data).lsn  # type: ignore[union-attr]  # not yet in any checkpoint
    damaged = bytearray(segment.read_bytes())
    damaged[offset + at] ^= 0x10
    segment.write_bytes(bytes(damaged))
    with pytest.raises(CorruptionError) as info:
        zapnb.connect(data)
    assert (info.value.file, info.value.offset) == (str(segment), offset)
    assert f"byte {offset} of {segment}" in str(info.value)
    assert segment.read_bytes() == damaged  # opening did not cut the history short


@pytest.mark.parametrize("damage", ["empty", "cut in half"])
def test_a_damaged_newest_lance_manifest_still_opens_and_the_next_checkpoint_sets_it_aside(
    tmp_path: Path, forkserver: ForkServerContext, damage: str
) -> None:
    data, acked = _crashed_database(forkserver, tmp_path)
    uri = table_path(data, "docs")
    (_newest, manifest), *_older = _manifests(uri)
    body = manifest.read_bytes()
    manifest.write_bytes(b"" if damage == "empty" else body[: len(body) // 2])
    seen = check(data, acked)  # opens without reading Lance: the base files and the log hold everything
    with zapnb.connect(data) as db:
        db.insert("notes", {"after": damage})
        with pytest.warns(ZapWarning, match="damaged"):
            assert db._engine.checkpoint()
        lsn = db._engine.snapshot().lsn
    table, version_lsn = read_table_version(data, "docs")
    assert version_lsn == lsn
    assert table.num_rows == seen.documents
    assert list((uri.parent / "docs.damaged").iterdir())
    check(data, acked, seen)


@pytest.mark.parametrize("damage", ["empty", "cut in half"])
def test_a_damaged_base_file_and_newest_lance_manifest_fall_back_to_the_older_version_and_the_log(
    tmp_path: Path, forkserver: ForkServerContext, damage: str
) -> None:
    data, acked = _crashed_database(forkserver, tmp_path)
    info = checkpoints.read_info(data)
    assert info is not None
    base = data / info.tables["docs"]["base"]["path"]
    base.write_bytes(base.read_bytes()[:100])
    (_newest, manifest), *_older = _manifests(table_path(data, "docs"))
    body = manifest.read_bytes()
    manifest.write_bytes(b"" if damage == "empty" else body[: len(body) // 2])
    with pytest.warns(ZapWarning) as caught:
        check(data, acked)
    assert any("rebuilt" in str(w.message) for w in caught)
    assert any("damaged" in str(w.message) for w in caught)


def test_opening_while_another_process_checkpoints_reports_no_damage(
    tmp_path: Path, forkserver: ForkServerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, acked = tmp_path / "data", tmp_path / "acked"
    assert run_child(forkserver, Plan(str(data), str(acked), 0, count=12, checkpoint_every=6)) == 0
    read_info, calls = checkpoints.read_info, []

    def read_info_then_checkpoint_elsewhere(root: Path) -> checkpoints.CheckpointInfo | None:
        info = read_info(root)
        calls.append(root)
        if len(calls) == 1:  # another process checkpoints before the files this one names are mapped
            assert run_child(forkserver, Plan(str(data), str(acked), 1, count=3, checkpoint_every=3)) == 0
        return info

    monkeypatch.setattr(checkpoints, "read_info", read_info_then_checkpoint_elsewhere)
    check(data, acked)


# --- serializable across processes --------------------------------------------------------------------------

ACCOUNTS, BALANCE = 100, 1_000


def _join(processes: Sequence[BaseProcess], timeout: float = 180) -> None:
    for process in processes:
        process.join(timeout)
    assert [process.exitcode for process in processes] == [0] * len(processes)


def test_bank_transfers_from_processes_and_threads_keep_every_snapshots_total(
    tmp_path: Path, spawn: SpawnContext
) -> None:
    data = tmp_path / "data"
    with zapnb.connect(data) as db:
        accounts = [str(i) for i in db.insert_many("accounts", [{"balance": BALANCE}] * ACCOUNTS)]
        expected = ACCOUNTS * BALANCE
        out = spawn.Queue()
        processes = [
            spawn.Process(target=workers.bank, args=(str(data), accounts, expected, 2, 25, out))
            for _ in range(4)
        ]
        for process in processes:
            process.start()
        snapshots = 0
        while any(process.is_alive() for process in processes):  # this process reads along
            with db.transaction() as tx:
                assert workers.total(tx, accounts) == expected
            snapshots += 1
        _join(processes)
        counts = [out.get(timeout=5) for _ in processes]
        with db.transaction() as tx:
            balances = [int(workers.field(tx, account, "balance")) for account in accounts]
    assert sum(balances) == expected
    assert min(balances) >= 0
    assert sum(c["transfers"] for c in counts) == 4 * 2 * 25
    assert all(c["snapshots"] > 0 for c in counts)
    assert snapshots > 0


def test_a_counter_incremented_from_four_processes_ends_exact(tmp_path: Path, spawn: SpawnContext) -> None:
    data = tmp_path / "data"
    with zapnb.connect(data) as db:
        counter = str(db.insert("counters", {"n": 0}))
    out = spawn.Queue()
    processes = [spawn.Process(target=workers.counter, args=(str(data), counter, 50, out)) for _ in range(4)]
    for process in processes:
        process.start()
    _join(processes)
    conflicts = sum(out.get(timeout=5) for _ in processes)
    with zapnb.connect(data) as db:
        assert db.get(counter)["n"] == 200  # type: ignore[index]
    assert conflicts >= 0


def test_two_doctors_in_two_processes_never_both_go_off_call(tmp_path: Path, spawn: SpawnContext) -> None:
    data, rounds = tmp_path / "data", 5
    with zapnb.connect(data) as db:
        alice, bob = (str(db.insert("doctors", {"name": n, "on_call": True})) for n in ("alice", "bob"))
    out, barrier = spawn.Queue(), spawn.Barrier(2)
    processes = [
        spawn.Process(target=workers.doctor, args=(str(data), me, other, rounds, barrier, out))
        for me, other in ((alice, bob), (bob, alice))
    ]
    for process in processes:
        process.start()
    _join(processes)
    results = [out.get(timeout=5) for _ in range(3 * rounds)]
    for round_ in range(rounds):
        outcomes = sorted(str(r[2]) for r in results if r[0] == round_ and r[1] != "on call after")
        assert outcomes == ["conflict", "off call"], f"round {round_}: {outcomes}"
        (on_call,) = [r[2] for r in results if r[0] == round_ and r[1] == "on call after"]
        assert on_call == 1
    with zapnb.connect(data) as db:
        assert db.get(alice)["on_call"]  # type: ignore[index]
        assert db.get(bob)["on_call"]  # type: ignore[index]

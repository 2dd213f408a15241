"""Tests for zapnb.datadir and for what ``zapnb.connect()`` checks before opening: creating a data directory
(also from several processes at once), recognising one, refusing what is not one, and damaged markers."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import zapnb
from zapnb.datadir import FORMAT_VERSION, MARKER, check_format, write_marker
from zapnb.faults import ENV_VAR, EXIT_CODE

OPENER = """
import os, sys, time
import zapnb
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
db = zapnb.connect(sys.argv[1])
db.insert("t", {"pid": os.getpid()})
db.close()
"""


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with the bytes of each file (``None`` for a directory)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env.update(extra)
    return env


# --- several processes creating one directory ---------------------------------------------------------------


MARKER_RACER = """
import os, sys, time
from pathlib import Path
from zapnb.datadir import check_format
base, go = Path(sys.argv[1]), sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.0005)
for n in range(int(sys.argv[3])):
    os.makedirs(base / str(n), exist_ok=True)
    check_format(base / str(n))
"""


def _race(code: str, args: list[str], go: Path, processes: int = 8) -> list[str]:
    """Start ``processes`` children running ``code``, release them together; return the failures' stderr."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True, env=_child_env()
        )
        for _ in range(processes)
    ]
    time.sleep(0.5)  # let them import zapnb
    go.touch()
    outcomes = [(child.communicate(timeout=120)[1], child.returncode) for child in children]
    return [err for err, code in outcomes if code]


def test_processes_marking_the_same_new_directories_at_once_all_succeed(tmp_path: Path) -> None:
    rounds = 25
    assert (
        _race(MARKER_RACER, [str(tmp_path / "d"), str(tmp_path / "go"), str(rounds)], tmp_path / "go") == []
    )
    for n in range(rounds):
        assert [p.name for p in (tmp_path / "d" / str(n)).iterdir()] == [MARKER]


@pytest.mark.parametrize("round_", range(2))
def test_processes_connecting_to_a_new_directory_at_once_all_succeed(tmp_path: Path, round_: int) -> None:
    data, go = tmp_path / "new" / "data", tmp_path / "go"
    assert _race(OPENER, [str(data), str(go)], go) == []
    assert sorted(p.name for p in data.iterdir() if p.name.startswith(".")) == []  # no temporary markers
    with zapnb.connect(data) as db:
        assert db.query("t").count() == 8


def test_concurrent_first_opens_by_threads_agree(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def check() -> None:
        try:
            check_format(tmp_path)
        except BaseException as err:  # pragma: no cover - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=check) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == [MARKER]
    assert json.loads((tmp_path / MARKER).read_text())["format"] == FORMAT_VERSION


def test_another_process_temporary_marker_is_not_foreign_content(tmp_path: Path) -> None:
    (tmp_path / f".{MARKER}.18506.tmp").write_text('{"form')  # another process is writing its marker
    with zapnb.connect(tmp_path) as db:
        db.insert("t", {"a": 1})
    assert not (tmp_path / f".{MARKER}.18506.tmp").exists()
    assert json.loads((tmp_path / MARKER).read_text())["format"] == FORMAT_VERSION


def test_a_crash_while_marking_a_new_directory_leaves_one_that_opens(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code = "import sys, zapnb; zapnb.connect(sys.argv[1])"
    env = _child_env(**{ENV_VAR: "datadir.before_marker_link"})
    crashed = subprocess.run(
        [sys.executable, "-c", code, str(data)], env=env, capture_output=True, timeout=120
    )
    assert crashed.returncode == EXIT_CODE, crashed.stderr
    left = [p.name for p in data.iterdir()]
    assert len(left) == 1
    assert left[0].startswith(f".{MARKER}.")
    assert left[0].endswith(".tmp")

    with zapnb.connect(data) as db:
        db.insert("t", {"a": 1})
    assert not any(p.name.endswith(".tmp") for p in data.iterdir())


def test_a_marker_already_there_is_kept(tmp_path: Path) -> None:
    check_format(tmp_path)
    first = (tmp_path / MARKER).read_bytes()
    check_format(tmp_path)
    write_marker(tmp_path / MARKER)
    assert (tmp_path / MARKER).read_bytes() == first


# --- what is a data directory -------------------------------------------------------------------------------


def test_a_directory_with_a_foreign_log_folder_is_refused_untouched(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "app.log").write_text("2024 started\n")
    (tmp_path / "README.md").write_text("my project")
    before = _tree(tmp_path)
    with pytest.raises(zapnb.FormatVersionError, match=r"is not empty \(README.md, log\)") as info:
        zapnb.connect(tmp_path)
    assert "Nothing was written" in str(info.value)
    assert info.value.file == str(tmp_path / MARKER)
    assert _tree(tmp_path) == before


def test_a_log_folder_of_files_named_like_segments_is_not_enough(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "00000000000000000001.zlog").write_bytes(b"not a zapnb log")
    before = _tree(tmp_path)
    with pytest.raises(zapnb.FormatVersionError, match="not a zapnb data directory"):
        zapnb.connect(tmp_path)
    assert _tree(tmp_path) == before


def test_a_data_directory_that_lost_its_marker_opens(tmp_path: Path) -> None:
    with zapnb.connect(tmp_path) as db:
        note = db.insert("t", {"a": 1})
    (tmp_path / MARKER).unlink()
    with zapnb.connect(tmp_path) as db:
        assert (db.get(note) or {}).get("a") == 1
    assert json.loads((tmp_path / MARKER).read_text())["format"] == FORMAT_VERSION


def test_a_non_empty_directory_without_a_log_is_refused_untouched(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(zapnb.FormatVersionError, match=r"not empty \(notes.txt\)"):
        zapnb.connect(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# --- damaged markers and bad arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"format": "x"}', b"[]", b"", b"\xff\xfe", b"{}", b'{"format": true}']
)
def test_a_damaged_marker_is_a_corruption_error_that_says_what_to_do(tmp_path: Path, content: bytes) -> None:
    with zapnb.connect(tmp_path) as db:
        note = db.insert("t", {"a": 1})
    (tmp_path / MARKER).write_bytes(content)
    with pytest.raises(zapnb.CorruptionError, match=f"delete {MARKER} and open it again") as info:
        zapnb.connect(tmp_path)
    assert info.value.file == str(tmp_path / MARKER)

    (tmp_path / MARKER).unlink()  # the advice works
    with zapnb.connect(tmp_path) as db:
        assert db.get(note) is not None


def test_a_marker_that_is_a_directory_is_a_corruption_error(tmp_path: Path) -> None:
    (tmp_path / MARKER).mkdir()
    with pytest.raises(zapnb.CorruptionError, match="it is a directory"):
        zapnb.connect(tmp_path)


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_file_is_refused_as_a_data_directory(tmp_path: Path, below: str) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    path = file / below if below else file
    with pytest.raises(zapnb.InvalidValueError, match=f"{path} is not a directory") as info:
        zapnb.connect(path)
    assert info.value.value == str(path)
    assert file.read_text() == "mine"


def test_bad_durability_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    with pytest.raises(zapnb.InvalidValueError, match="durability is 'full' or 'process', not 'none'"):
        zapnb.connect(tmp_path / "data", durability="none")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_filesystem_without_hard_links_still_gets_a_whole_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)  # as on FAT or some network mounts
    check_format(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [MARKER]
    assert json.loads((tmp_path / MARKER).read_text())["format"] == FORMAT_VERSION

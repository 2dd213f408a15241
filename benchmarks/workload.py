"""The benchmark workload: ZapDev's ``projects`` and ``messages``, generated columnar and seeded.

Every run makes the same data: 10,000 users, 50,000 projects and N messages (1,000,000; 100,000 for a quick
run), 3 of whose projects are hot with 20,000 messages each; the rest of the messages go to the other projects
uniformly at random. Rows are in creation order (``createdAt`` ascending), as an application would have
inserted them. Generation is vectorized (numpy and Polars): 1M messages take a few seconds, most of it
making the IDs.

IDs are real zapnb IDs made with :func:`zapnb.ids.new_ids`, with the table numbers the zapnb engine gives
the ZapDev schema's tables in schema order: ``projects`` is 10001 and ``messages`` 10002 (user tables are
numbered from 10001). Every peer stores the same ID strings as ``_id`` and ``projectId``. The ID text is the
one part that differs between runs: ``new_ids`` draws the 14 random bytes of each ID from the operating
system, as the engine does. Which row each ID belongs to, and everything else, is seeded.

``_creationTime`` equals ``createdAt`` (milliseconds since the epoch, as floats), so every peer stores the
system fields zapnb returns in its frames.

    python benchmarks/workload.py [--quick]      # generate and print a summary
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zapnb.examples.zapdev import FRAMEWORKS, MESSAGE_ROLES, MESSAGE_STATUSES, MESSAGE_TYPES
from zapnb.ids import new_ids

__all__ = [
    "FULL_MESSAGES",
    "HOT_MESSAGES",
    "HOT_PROJECTS",
    "MESSAGES_TABLE_NUMBER",
    "PROJECTS",
    "PROJECTS_TABLE_NUMBER",
    "QUICK_MESSAGES",
    "SAMPLES",
    "SEED",
    "USERS",
    "Workload",
    "generate",
]

SEED: Final = 20_240_601
USERS: Final = 10_000
PROJECTS: Final = 50_000
FULL_MESSAGES: Final = 1_000_000
QUICK_MESSAGES: Final = 100_000
HOT_PROJECTS: Final = 3
HOT_MESSAGES: Final = 20_000
SAMPLES: Final = 2_000
"""Operations per sampled measurement (W2, W3, Q1, Q2, Q5)."""
PROJECTS_TABLE_NUMBER: Final = 10001
MESSAGES_TABLE_NUMBER: Final = 10002

_START_MS: Final = 1_704_067_200_000.0  # 2024-01-01T00:00:00Z
_SPAN_MS: Final = 540 * 86_400_000.0
_MESSAGE_DELAY_MS: Final = 20 * 86_400_000.0  # mean time from a project's creation to one of its messages
_CONTENT_MIN: Final = 180
_CONTENT_MAX: Final = 220
_ROLE_WEIGHTS: Final = (0.5, 0.5)
_TYPE_WEIGHTS: Final = (0.85, 0.05, 0.10)
_STATUS_WEIGHTS: Final = (0.10, 0.10, 0.80)  # PENDING, STREAMING, COMPLETE
_TEXT: Final = (
    "the a an build page button layout error fix add remove update component state render props hook "
    "route server client query cache fetch data table index schema deploy test style color theme dark "
    "light mobile screen header footer sidebar modal form input submit validate user login logout auth "
    "token session project message stream result agent model prompt code file import export function "
    "react vue svelte angular next tailwind css html api json async await promise return value type"
)
_WORDS: Final = tuple(_TEXT.split())
_ADJECTIVES: Final = (
    "brave",
    "calm",
    "eager",
    "fuzzy",
    "gentle",
    "happy",
    "jolly",
    "kind",
    "lively",
    "proud",
)
_NOUNS: Final = (
    "otter",
    "falcon",
    "maple",
    "river",
    "comet",
    "lantern",
    "harbor",
    "meadow",
    "ember",
    "quartz",
)


@dataclass(frozen=True)
class Workload:
    """The generated data and the seeded operation arguments every system runs with.

    Attributes
    ----------
    projects, messages:
        The tables, with ``_id`` and ``_creationTime`` first, in creation order.
    hot_projects:
        The IDs of the hot projects (20,000 messages each).
    q1_projects, q2_users, q5_ids:
        Arguments of the Q1, Q2 and Q5 samples (project IDs, user IDs, message IDs).
    w2_docs:
        Message documents for W2 (without system fields).
    w3_patches:
        ``(message ID, field, value)`` for W3.
    """

    projects: pl.DataFrame
    messages: pl.DataFrame
    hot_projects: tuple[str, ...]
    q1_projects: tuple[str, ...]
    q2_users: tuple[str, ...]
    q5_ids: tuple[str, ...]
    w2_docs: tuple[dict[str, Any], ...]
    w3_patches: tuple[tuple[str, str, str], ...]

    @property
    def rows(self) -> int:
        """Rows in both tables (what W1 loads)."""
        return self.projects.height + self.messages.height

    def save(self, directory: Path) -> None:
        """Write the workload to ``directory`` (Arrow IPC frames and a JSON file of arguments)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.projects.write_ipc(directory / "projects.arrow", compression="uncompressed")
        self.messages.write_ipc(directory / "messages.arrow", compression="uncompressed")
        arguments = {name: getattr(self, name) for name in _ARGUMENT_FIELDS}
        (directory / "arguments.json").write_text(json.dumps(arguments))

    @classmethod
    def read(cls, directory: Path) -> Workload:
        """Read a workload that :meth:`save` wrote."""
        arguments = json.loads((directory / "arguments.json").read_text())
        return cls(
            projects=pl.read_ipc(directory / "projects.arrow"),
            messages=pl.read_ipc(directory / "messages.arrow"),
            hot_projects=tuple(arguments["hot_projects"]),
            q1_projects=tuple(arguments["q1_projects"]),
            q2_users=tuple(arguments["q2_users"]),
            q5_ids=tuple(arguments["q5_ids"]),
            w2_docs=tuple(arguments["w2_docs"]),
            w3_patches=tuple(tuple(patch) for patch in arguments["w3_patches"]),
        )


_ARGUMENT_FIELDS: Final = ("hot_projects", "q1_projects", "q2_users", "q5_ids", "w2_docs", "w3_patches")


def generate(messages: int = FULL_MESSAGES, *, seed: int = SEED) -> Workload:
    """Generate the workload with ``messages`` messages (at least the hot projects' 60,000).

    Examples
    --------
    >>> w = generate(70_000)
    >>> w.projects.height, w.messages.height, len(w.q1_projects)
    (50000, 70000, 2000)
    """
    if messages < HOT_PROJECTS * HOT_MESSAGES:
        raise ValueError(f"messages must be at least {HOT_PROJECTS * HOT_MESSAGES}, not {messages}")
    rng = np.random.default_rng(seed)
    projects = _projects(rng)
    hot = rng.choice(PROJECTS, HOT_PROJECTS, replace=False)
    owner = _message_projects(rng, messages, hot)
    message_frame = _messages(rng, owner, projects)
    return Workload(
        projects=projects,
        messages=message_frame,
        hot_projects=tuple(projects["_id"].gather(hot).to_list()),
        **_arguments(rng, projects, message_frame),
    )


def _projects(rng: np.random.Generator) -> pl.DataFrame:
    created = _START_MS + np.sort(rng.integers(0, int(_SPAN_MS), PROJECTS)).astype(np.float64)
    updated = created + rng.integers(0, 30 * 86_400_000, PROJECTS)
    number = pl.Series(rng.integers(0, 1000, PROJECTS))
    name = pl.concat_str(
        pl.Series(_ADJECTIVES).gather(rng.integers(0, len(_ADJECTIVES), PROJECTS)),
        pl.lit("-"),
        pl.Series(_NOUNS).gather(rng.integers(0, len(_NOUNS), PROJECTS)),
        pl.lit("-"),
        number.cast(pl.String),
    )
    user = _user_ids(rng.integers(0, USERS, PROJECTS))
    return pl.select(
        _id=pl.Series(new_ids(PROJECTS_TABLE_NUMBER, PROJECTS), dtype=pl.String),
        _creationTime=pl.Series(created),
        name=name,
        userId=user,
        framework=_enum(rng, FRAMEWORKS, PROJECTS),
        createdAt=pl.Series(created),
        updatedAt=pl.Series(updated.astype(np.float64)),
    )


def _user_ids(numbers: npt.NDArray[np.int64]) -> pl.Expr:
    return pl.concat_str(pl.lit("user_"), pl.lit(pl.Series(numbers)).cast(pl.String).str.zfill(5))


def _message_projects(
    rng: np.random.Generator, count: int, hot: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The project (row number) of each message: the hot ones' 20,000 each, the rest uniformly."""
    cold = np.setdiff1d(np.arange(PROJECTS), hot)
    rest = cold[rng.integers(0, cold.size, count - HOT_PROJECTS * HOT_MESSAGES)]
    owner: npt.NDArray[np.int64] = np.concatenate([np.repeat(hot, HOT_MESSAGES), rest])
    return owner


def _messages(rng: np.random.Generator, owner: npt.NDArray[np.int64], projects: pl.DataFrame) -> pl.DataFrame:
    count = owner.size
    project_created = projects["createdAt"].to_numpy()[owner]
    delay = np.floor(rng.exponential(_MESSAGE_DELAY_MS, count))
    created = np.minimum(project_created + delay, _START_MS + _SPAN_MS + 60 * 86_400_000.0)
    order = np.argsort(created, kind="stable")  # rows in creation order
    created, owner = created[order], owner[order]
    updated = created + np.floor(rng.exponential(5_000.0, count))
    return pl.select(
        _id=pl.Series(new_ids(MESSAGES_TABLE_NUMBER, count), dtype=pl.String),
        _creationTime=pl.Series(created),
        content=pl.Series(_contents(rng, count)),
        role=_enum(rng, MESSAGE_ROLES, count, _ROLE_WEIGHTS),
        type=_enum(rng, MESSAGE_TYPES, count, _TYPE_WEIGHTS),
        status=_enum(rng, MESSAGE_STATUSES, count, _STATUS_WEIGHTS),
        projectId=projects["_id"].gather(owner),
        createdAt=pl.Series(created),
        updatedAt=pl.Series(updated),
    )


def _enum(
    rng: np.random.Generator, values: tuple[str, ...], count: int, weights: tuple[float, ...] | None = None
) -> pl.Series:
    codes = rng.choice(len(values), count, p=weights)
    return pl.Series(values, dtype=pl.String).gather(codes)


def _contents(rng: np.random.Generator, count: int) -> pa.StringArray:
    """``count`` texts of 180-220 ASCII characters, each a window of a seeded text starting at a word."""
    words = [_WORDS[i] for i in rng.integers(0, len(_WORDS), 200_000)]
    text = " ".join(words) + " "
    pool = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    starts = np.flatnonzero(pool[:-_CONTENT_MAX] == ord(" ")) + 1
    begin = starts[rng.integers(0, starts.size, count)]
    length = rng.integers(_CONTENT_MIN, _CONTENT_MAX + 1, count)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    step = np.arange(_CONTENT_MAX, dtype=np.int64)
    for lo in range(0, count, 50_000):
        hi = min(count, lo + 50_000)
        window = pool[begin[lo:hi, None] + step]
        data[offsets[lo] : offsets[hi]] = window[step < length[lo:hi, None]]
    return pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))


def _arguments(rng: np.random.Generator, projects: pl.DataFrame, messages: pl.DataFrame) -> dict[str, Any]:
    project_ids = projects["_id"]
    message_ids = messages["_id"]
    users = pl.select(_user_ids(rng.integers(0, USERS, SAMPLES))).to_series()
    picked = random.Random(int(rng.integers(0, 2**32)))
    last = float(messages["createdAt"].to_numpy().max())
    docs = tuple(
        {
            "content": " ".join(picked.choices(_WORDS, k=36))[:200],
            "role": picked.choice(MESSAGE_ROLES),
            "type": picked.choice(MESSAGE_TYPES),
            "status": "PENDING",
            "projectId": project_ids[int(rng.integers(0, PROJECTS))],
            "createdAt": last + 1000.0 * (i + 1),
            "updatedAt": last + 1000.0 * (i + 1),
        }
        for i in range(SAMPLES)
    )
    targets = message_ids.gather(rng.integers(0, messages.height, SAMPLES)).to_list()
    patches = tuple((target, "status", MESSAGE_STATUSES[i % 3]) for i, target in enumerate(targets))
    return {
        "q1_projects": tuple(project_ids.gather(rng.integers(0, PROJECTS, SAMPLES)).to_list()),
        "q2_users": tuple(users.to_list()),
        "q5_ids": tuple(message_ids.gather(rng.integers(0, messages.height, SAMPLES)).to_list()),
        "w2_docs": docs,
        "w3_patches": patches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MESSAGES:,} messages")
    args = parser.parse_args()
    began = time.perf_counter()
    workload = generate(QUICK_MESSAGES if args.quick else FULL_MESSAGES)
    seconds = time.perf_counter() - began
    print(f"generated {workload.rows:,} rows in {seconds:.2f} s")
    print(workload.projects.head(3))
    print(workload.messages.head(3))
    sizes = workload.messages.group_by("projectId").len()["len"].to_numpy()
    print(f"messages per project: max {sizes.max()}, median {np.median(sizes)}, in {sizes.size:,} projects")


if __name__ == "__main__":
    main()

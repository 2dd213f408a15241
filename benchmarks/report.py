"""The results of one run as Markdown tables: one per operation, each system with its ratio to SQLite.

A ratio is speed relative to the baseline measured in the same run (above 1 means faster, or less memory):
SQLite WAL with ``synchronous=NORMAL`` for loads, reads, opening and memory; with ``synchronous=FULL`` for
the durable single writes (W2, W3), as zapnb's commits fsync. The ``check`` column compares what each system
returned with the baseline's answer (digests of the returned IDs and values): ``same`` or ``DIFFERS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["TABLES", "Column", "Table", "problems", "render", "summary"]

Results = dict[str, dict[str, Any]]  # system key -> {"label", "durable", "ops": {op: metrics}}


@dataclass(frozen=True)
class Column:
    """One metric shown in a table: its key in the results, its header and its format."""

    key: str
    header: str
    fmt: str


@dataclass(frozen=True)
class Table:
    """One operation's table: which results it shows and which metric the ratio compares."""

    op: str
    title: str
    primary: Column
    higher_is_better: bool
    baseline: str
    extra: tuple[Column, ...] = ()


_N = Column("n", "n", "{:,}")
_P99 = Column("p99_us", "p99 us", "{:,.0f}")
_ROWS = Column("rows", "rows", "{:,.0f}")
_P50 = Column("p50_us", "p50 us", "{:,.0f}")
_OPS = Column("ops_per_s", "ops/s", "{:,.0f}")

TABLES: Final = (
    Table("W1", "W1 bulk load of both tables, validated (`then`: the work the load left for later, untimed)",
          Column("rows_per_s", "rows/s", "{:,.0f}"), True, "sqlite",
          (Column("seconds", "s", "{:,.2f}"), Column("finish_s", "then s", "{:,.2f}"))),
    Table("W1", "Peak resident memory of the loading process, through the work the load left for later (MB; "
          "`load`: the peak of the load itself; `run`: through every operation measured after; `before`: "
          "only the workload in memory)",
          Column("peak_rss_mb", "peak MB", "{:,.0f}"), False, "sqlite",
          (Column("load_peak_rss_mb", "load", "{:,.0f}"), Column("run_peak_rss_mb", "run", "{:,.0f}"),
           Column("rss_before_mb", "before", "{:,.0f}"))),
    Table("Open", "Open: open the loaded database in a fresh process and get one document (ms; `process`: "
          "the whole process, imports included)", Column("open_ms", "open ms", "{:,.1f}"), False, "sqlite",
          (Column("process_ms", "process ms", "{:,.0f}"),)),
    Table("Q1", "Q1 a project's messages by (projectId, createdAt), ascending, take 50, as a Polars frame",
          _P50, False, "sqlite", (_P99, _N, _ROWS)),
    Table("Q2", "Q2 a user's projects by (userId, createdAt), descending, all, as a Polars frame",
          _P50, False, "sqlite", (_P99, _N, _ROWS)),
    Table("Q3", "Q3 paginate a hot project's messages, 100 per page, by cursor (total)",
          Column("total_ms", "total ms", "{:,.1f}"), False, "sqlite",
          (Column("pages", "pages", "{:,}"), Column("ms_per_page", "ms/page", "{:,.3f}"), _ROWS)),
    Table("Q4", "Q4 unindexed filter (status PENDING and role USER), collect as a Polars frame",
          Column("collect_ms", "collect ms", "{:,.1f}"), False, "sqlite", (_ROWS,)),
    Table("Q4", "Q4 the same filter, count", Column("count_ms", "count ms", "{:,.1f}"), False, "sqlite",
          (_ROWS,)),
    Table("Q5", "Q5 get one document by ID, as a dict", _P50, False, "sqlite", (_P99, _N)),
    Table("W2", "W2 single-document inserts, each durable before the next", _OPS, True, "sqlite-full",
          (_P50, _P99, _N)),
    Table("W3", "W3 patches of one field of one document, each durable before the next", _OPS, True,
          "sqlite-full", (_P50, _P99, _N)),
)  # fmt: skip


def _ratio(value: float, base: float, higher_is_better: bool) -> str:
    if not value or not base:
        return "-"
    ratio = value / base if higher_is_better else base / value
    if ratio >= 10:
        return f"{ratio:,.0f}x"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


def _cell(metrics: dict[str, Any], column: Column) -> str:
    value = metrics.get(column.key)
    return "-" if value is None else column.fmt.format(value)


def _check(metrics: dict[str, Any], base: dict[str, Any] | None) -> str:
    digest = metrics.get("digest")
    if digest is None or base is None or base.get("digest") is None:
        return "" if "verified" not in metrics else ("verified" if metrics["verified"] else "NOT FOUND")
    return "same" if digest == base["digest"] else "DIFFERS"


def _row(table: Table, result: dict[str, Any], base: dict[str, Any] | None) -> str:
    metrics = result["ops"].get(table.op)
    label = result["label"] + ("" if result["durable"] or table.op not in ("W2", "W3") else " (not durable)")
    if metrics is None:
        return ""
    problem = metrics.get("error") or metrics.get("skipped")
    if problem:
        return f"| {label} | {'error' if 'error' in metrics else 'skipped'}: {problem} |"
    cells = [_cell(metrics, column) for column in (table.primary, *table.extra)]
    base_value = None if base is None else base.get(table.primary.key)
    ratio = _ratio(metrics[table.primary.key], base_value or 0.0, table.higher_is_better)
    return "| " + " | ".join([label, *cells, ratio, _check(metrics, base)]) + " |"


def render(results: Results, order: Sequence[str], ops: Sequence[str]) -> str:
    """The per-operation tables for the systems in ``order`` and the operations in ``ops``."""
    blocks = []
    for table in TABLES:
        if table.op not in ops:
            continue
        baseline = results.get(table.baseline, {}).get("ops", {}).get(table.op)
        if baseline is not None and ("error" in baseline or "skipped" in baseline):
            baseline = None
        rows = [_row(table, results[key], baseline) for key in order if key in results]
        rows = [row for row in rows if row]
        if not rows:
            continue
        headers = ["system", table.primary.header, *(c.header for c in table.extra), "vs SQLite", "check"]
        blocks.append(
            "\n".join(
                [
                    f"### {table.title}",
                    "",
                    "| " + " | ".join(headers) + " |",
                    "|---|" + "---:|" * (len(headers) - 2) + "---|",
                    *rows,
                ]
            )
        )
    return "\n\n".join(blocks)


def problems(results: Results, order: Sequence[str]) -> list[str]:
    """One line per operation that failed or was skipped, naming the system and the reason."""
    lines = []
    for key in order:
        for op, metrics in results.get(key, {}).get("ops", {}).items():
            for kind in ("error", "skipped"):
                if kind in metrics:
                    lines.append(f"{results[key]['label']}: {op} {kind} ({metrics[kind]})")
    return lines


_SUMMARY: Final = (  # header, operation, metric, format, higher is better
    ("W1 rows/s", "W1", "rows_per_s", "{:,.0f}", True),
    ("W2 ops/s", "W2", "ops_per_s", "{:,.0f}", True),
    ("W2 p50 us", "W2", "p50_us", "{:,.0f}", False),
    ("W3 ops/s", "W3", "ops_per_s", "{:,.0f}", True),
    ("Q1 p50 us", "Q1", "p50_us", "{:,.0f}", False),
    ("Q2 p50 us", "Q2", "p50_us", "{:,.0f}", False),
    ("Q3 ms", "Q3", "total_ms", "{:,.0f}", False),
    ("Q4 ms", "Q4", "collect_ms", "{:,.1f}", False),
    ("Q5 p50 us", "Q5", "p50_us", "{:,.0f}", False),
    ("open ms", "Open", "open_ms", "{:,.0f}", False),
    ("peak RSS MB", "W1", "peak_rss_mb", "{:,.0f}", False),
)


def summary(results: Results, order: Sequence[str], *, ratios: bool = False) -> str:
    """One row per system with its headline numbers (medians), as in the workload's table of peers; with
    ``ratios``, each number's ratio to SQLite's instead (WAL FULL for W2 and W3, NORMAL otherwise)."""
    lines = [
        "| system | " + " | ".join(name for name, *_ in _SUMMARY) + " |",
        "|---|" + "---:|" * len(_SUMMARY),
    ]
    for key in order:
        if key not in results:
            continue
        cells = []
        for _, op, metric, fmt, higher in _SUMMARY:
            value = results[key]["ops"].get(op, {}).get(metric)
            if value is None:
                cells.append("-")
            elif ratios:
                base = results.get("sqlite-full" if op in ("W2", "W3") else "sqlite", {}).get("ops", {})
                cells.append(_ratio(value, base.get(op, {}).get(metric) or 0.0, higher))
            else:
                cells.append(fmt.format(value))
        lines.append(f"| {results[key]['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

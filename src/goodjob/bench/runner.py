"""Runs the scenarios in order, compares goodjob with the baseline, and reports.

Output: one JSON line per scenario as it finishes (``{"scenario": ..., "goodjob": {...},
"baseline": {...}, "ratio": ..., "target": ..., "met": ...}``), then one table of every figure
with its ratio to the baseline measured in the same run. Ratios are what count on a noisy
machine; the absolute figures say what this machine did once.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from goodjob.bench import recovery
from goodjob.bench import scenarios as sc
from goodjob.bench.environment import WorkerConfig, fresh_database, server_facts

ALL = ("enqueue", "drain", "latency", "history", "recovery")
Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Options:
    url: str
    sizes: sc.Sizes
    best: WorkerConfig
    scenarios: tuple[str, ...] = ALL


def _ratio(a: float, b: float) -> float | None:
    if not b or math.isinf(a) or math.isinf(b):
        return None
    return round(a / b, 2)


def _line(
    scenario: str,
    goodjob: dict[str, Any],
    baseline: dict[str, Any] | None,
    ratio: float | None,
    target: str,
    met: bool,
) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "goodjob": goodjob,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


class Run:
    """One ``goodjob bench`` run: measures, emits JSON lines, keeps rows for the table."""

    def __init__(self, options: Options, emit: Emit, progress: Callable[[str], None]) -> None:
        self.options = options
        self.emit = emit
        self.progress = progress
        self.lines: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def _say(self, text: str) -> None:
        self.progress(f"[{time.monotonic() - self.started:6.1f}s] {text}")

    def _add(self, line: dict[str, Any]) -> None:
        self.lines.append(line)
        self.emit(line)

    def _on_fresh(self, label: str, fn: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        self._say(f"{label} ...")
        with fresh_database(self.options.url, label.replace("-", "_")) as url:
            return fn(url)

    def machine(self) -> dict[str, Any]:
        facts = server_facts(self.options.url)
        line = {"scenario": "machine", **facts}
        self.emit(line)
        return line

    def run(self) -> list[dict[str, Any]]:
        o, s = self.options, self.options.sizes
        if "enqueue" in o.scenarios:
            base = self._on_fresh("baseline-enqueue", lambda u: sc.baseline_enqueue(u, s))
            mine = self._on_fresh("goodjob-enqueue", lambda u: sc.goodjob_enqueue(u, s))
            ratio = _ratio(mine["single_jobs_per_s"], base["single_jobs_per_s"])
            self._add(
                _line(
                    "enqueue_single",
                    {"jobs_per_s": round(mine["single_jobs_per_s"]), "jobs": s.jobs},
                    {"jobs_per_s": round(base["single_jobs_per_s"]), "jobs": s.jobs},
                    ratio,
                    ">= 0.8x baseline",
                    ratio is not None and ratio >= 0.8,
                )
            )
            self._add(
                _line(
                    "enqueue_bulk",
                    {"jobs_per_s": round(mine["bulk_jobs_per_s"]), "chunk": s.chunk},
                    {"jobs_per_s": round(base["bulk_jobs_per_s"]), "chunk": s.chunk},
                    _ratio(mine["bulk_jobs_per_s"], base["bulk_jobs_per_s"]),
                    ">= 100,000 jobs/s",
                    mine["bulk_jobs_per_s"] >= 100_000,
                )
            )
        empty_drain: dict[str, Any] | None = None
        if "drain" in o.scenarios or "history" in o.scenarios:
            base = self._on_fresh("baseline-drain", lambda u: sc.baseline_drain(u, s))
            default = self._on_fresh(
                "goodjob-drain",
                lambda u: sc.goodjob_drain(u, s, WorkerConfig(), "drain"),
            )
            empty_drain = default
            drains = [("drain_default", default)]
            if "drain" in o.scenarios:
                drains.append(
                    (
                        "drain_best",
                        self._on_fresh(
                            "goodjob-drain-best",
                            lambda u: sc.goodjob_drain(u, s, o.best, "drain-best"),
                        ),
                    )
                )
            for name, mine in drains:
                ratio = _ratio(mine["jobs_per_s"], base["jobs_per_s"])
                self._add(
                    _line(
                        name,
                        _rounded(mine),
                        _rounded(base),
                        ratio,
                        ">= 2.0x baseline, exactly once",
                        ratio is not None and ratio >= 2.0 and mine["exactly_once"],
                    )
                )
        if "latency" in o.scenarios:
            base = self._on_fresh("baseline-latency", lambda u: sc.baseline_latency(u, s))
            mine = self._on_fresh("goodjob-latency", lambda u: sc.goodjob_latency(u, s))
            self._add(
                _line(
                    "latency",
                    mine,
                    base,
                    _ratio(mine["p50_ms"], base["p50_ms"]),
                    "p50 <= baseline p50 + 1 ms, p99 < 10 ms",
                    mine["p50_ms"] <= base["p50_ms"] + 1 and mine["p99_ms"] < 10,
                )
            )
            self._add(
                _line(
                    "idle_worker",
                    {
                        "rss_mb": mine["idle_rss_mb"],
                        "connections": mine["worker_connections"],
                        "threads": 10,
                    },
                    {"rss_mb": base["idle_rss_mb"], "connections": 11, "threads": 10},
                    _ratio(mine["idle_rss_mb"], base["idle_rss_mb"]),
                    "<= 80 MB resident, fixed connections",
                    mine["idle_rss_mb"] <= 80,
                )
            )
        if "history" in o.scenarios and empty_drain is not None:
            mine = self._on_fresh("goodjob-history", lambda u: self._history(u))
            ratio = _ratio(mine["jobs_per_s"], empty_drain["jobs_per_s"])
            self._add(
                _line(
                    "history",
                    _rounded(mine),
                    {"empty_table_jobs_per_s": round(empty_drain["jobs_per_s"])},
                    ratio,
                    ">= 0.9x the empty-table drain",
                    ratio is not None and ratio >= 0.9 and mine["exactly_once"],
                )
            )
        if "recovery" in o.scenarios:
            mine = self._on_fresh("goodjob-recovery", lambda u: recovery.goodjob_recovery(u, s))
            self._add(
                _line(
                    "recovery",
                    mine,
                    None,
                    None,
                    "median <= 2 s, worst <= 5 s, exactly once",
                    mine["median_s"] <= 2 and mine["worst_s"] <= 5 and mine["exactly_once"],
                )
            )
        self._say("done")
        return self.lines

    def _history(self, url: str) -> dict[str, Any]:
        s = self.options.sizes
        # The schema first (the seed writes goodjob_jobs), then the drain enqueues on top.
        from goodjob.bench.environment import migrated_app

        migrated_app(url).close()
        seeded = sc.seed_history(url, s.history_finished, s.history_future)
        self._say(f"seeded {s.history_finished:,} finished + {s.history_future:,} future jobs")
        result = sc.goodjob_drain(url, s, WorkerConfig(), "history")
        result["seed_seconds"] = round(seeded, 1)
        result["finished_rows"] = s.history_finished
        result["future_rows"] = s.history_future
        return result


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v) if k == "jobs_per_s" else v for k, v in figures.items()}


def _figure(scenario: str, figures: dict[str, Any] | None) -> str:
    if not figures:
        return "-"
    if scenario == "latency":
        return (
            f"p50 {figures['p50_ms']:.2f} / p95 {figures['p95_ms']:.2f}"
            f" / p99 {figures['p99_ms']:.2f} ms"
        )
    if scenario == "recovery":
        return f"median {figures['median_s']:.2f} s, worst {figures['worst_s']:.2f} s"
    if scenario == "idle_worker":
        return f"{figures['rss_mb']:.0f} MB, {figures['connections']} connections"
    if "empty_table_jobs_per_s" in figures:
        return f"{figures['empty_table_jobs_per_s']:,} jobs/s (empty table)"
    text = f"{figures['jobs_per_s']:,} jobs/s"
    if "config" in figures:
        text += f" ({figures['config']})"
    if "exactly_once" in figures:
        text += ", exactly once" if figures["exactly_once"] else ", [red]NOT exactly once[/]"
    return text


def table(machine: dict[str, Any], lines: list[dict[str, Any]]) -> Table:
    title = (
        f"goodjob bench — Postgres {machine['server_version']}, fsync={machine['fsync']},"
        f" synchronous_commit={machine['synchronous_commit']}, {machine['cores']} cores"
    )
    result = Table("scenario", "goodjob", "baseline", "ratio", "target", "met", title=title)
    for line in lines:
        name = line["scenario"]
        result.add_row(
            name,
            _figure(name, line["goodjob"]),
            _figure(name, line["baseline"]),
            "-" if line["ratio"] is None else f"{line['ratio']:.2f}x",
            line["target"],
            "[green]yes[/]" if line["met"] else "[red]no[/]",
        )
    return result


def run(options: Options, console: Console, err: Console) -> list[dict[str, Any]]:
    """Run every selected scenario; print JSON lines and the table to ``console``."""

    def emit(line: dict[str, Any]) -> None:
        console.out(json.dumps(line, default=str), highlight=False)

    bench = Run(options, emit, lambda text: err.print(text, highlight=False))
    machine = bench.machine()
    lines = bench.run()
    console.print(table(machine, lines))
    return lines

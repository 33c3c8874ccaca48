"""Runs the scenarios in order, compares goodjob with the baseline, and reports.

Output: one JSON line per scenario as it finishes (``{"scenario": ..., "goodjob": {...},
"baseline": {...}, "ratio": ..., "target": ..., "met": ...}``), then one table of every figure
with its ratio to the baseline measured in the same run. Ratios are what count on a noisy
machine, so the throughput figures come from rounds that alternate with the baseline's (see
:mod:`goodjob.bench.rounds`); the absolute figures say what this machine did in this run.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from goodjob.bench import dashboard, dashboard_seed, history, recovery, rounds, seeding
from goodjob.bench import scenarios as sc
from goodjob.bench.environment import WorkerConfig, fresh_database, migrated_app, server_facts
from goodjob.bench.workload import BATCHES, KEYS, PERFORM_LIMIT

ALL = ("enqueue", "drain", "latency", "history", "recovery")
# Not in ALL, "dashboard": seeding ten million rows takes minutes (--scenario dashboard).
Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Options:
    url: str
    sizes: sc.Sizes
    best: WorkerConfig
    scenarios: tuple[str, ...] = ALL
    pooler_url: str | None = None  # the drains go through it (WorkerConfig.pooler_url)
    dashboard_factory: str = dashboard.FACTORY  # module:function, called as f(gj, read_only=True)
    dashboard_keep: bool = False  # keep the seeded database (its URL is printed)


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

    def _on_fresh(
        self, label: str, fn: Callable[[str], dict[str, Any]], note: str = ""
    ) -> dict[str, Any]:
        self._say(f"{label} {note} ..." if note else f"{label} ...")
        with fresh_database(self.options.url, label.replace("-", "_")) as url:
            return fn(url)

    def machine(self) -> dict[str, Any]:
        facts = server_facts(self.options.url)
        line = {"scenario": "machine", **facts, "pooler": self.options.pooler_url is not None}
        self.emit(line)
        return line

    def run(self) -> list[dict[str, Any]]:
        o = self.options
        if "enqueue" in o.scenarios:
            self._enqueue()
        if "drain" in o.scenarios or "history" in o.scenarios:
            self._drains()
        if "latency" in o.scenarios:
            self._latency()
        if "recovery" in o.scenarios:
            s = o.sizes
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
        if "dashboard" in o.scenarios:
            self._dashboard()
        self._say("done")
        return self.lines

    def _dashboard(self) -> None:
        o, s = self.options, self.options.sizes
        factory = dashboard.load_factory(o.dashboard_factory)  # before minutes of seeding
        with fresh_database(o.url, "dashboard", keep=o.dashboard_keep) as url:
            migrated_app(url).close()  # the schema first: the seed writes goodjob_jobs
            self._say(f"dashboard: seeding {s.dashboard_rows:,} jobs ...")
            seeded = dashboard_seed.seed(url, s.dashboard_rows, self._say)
            self._say(
                f"dashboard: seeded {seeded.rows:,} jobs and {seeded.executions:,} executions in"
                f" {seeded.seconds:.1f}s ({seeded.rows_per_s:,.0f} jobs/s), then vacuumed and"
                f" analyzed in {seeded.settle_seconds:.1f}s"
            )
            dashboard_seed.heartbeat(url)
            figures = dashboard.measure(
                url,
                factory,
                warmup=s.dashboard_warmup,
                requests=s.dashboard_requests,
                progress=self._say,
            )
            if o.dashboard_keep:
                self._say(f"dashboard: the seeded database is kept: {url}")
        mine = {
            "rows": seeded.rows,
            "executions": seeded.executions,
            "seed_s": round(seeded.seconds, 1),
            "seed_jobs_per_s": round(seeded.rows_per_s),
            "settle_s": round(seeded.settle_seconds, 1),
            **figures,
        }
        target = f"every page p95 <= {dashboard.TARGET_MS:.0f} ms, every page 200"
        self._add(_line("dashboard", mine, None, None, target, dashboard.met(mine)))

    def _enqueue(self) -> None:
        o, s = self.options, self.options.sizes
        self._say(f"enqueue, baseline and goodjob taking turns, {s.rounds} block(s) each ...")
        with (
            fresh_database(o.url, "baseline_enqueue") as base_url,
            fresh_database(o.url, "goodjob_enqueue") as mine_url,
        ):
            base, mine = sc.enqueue(base_url, mine_url, s)

        def figures(side: dict[str, Any], kind: str, **extra: int) -> dict[str, Any]:
            blocks = side[f"{kind}_rounds_jobs_per_s"]
            return {
                "jobs_per_s": rounds.whole(side[f"{kind}_jobs_per_s"]),
                "jobs": s.jobs,
                **extra,
                # Fewer than asked when there are fewer chunks (or jobs) than rounds.
                "rounds": len(blocks),
                "rounds_jobs_per_s": blocks,
            }

        ratio = _ratio(mine["single_jobs_per_s"], base["single_jobs_per_s"])
        self._add(
            _line(
                "enqueue_single",
                figures(mine, "single"),
                figures(base, "single"),
                ratio,
                ">= 0.8x baseline",
                ratio is not None and ratio >= 0.8,
            )
        )
        self._add(
            _line(
                "enqueue_bulk",
                figures(
                    mine,
                    "bulk",
                    chunk=s.chunk,
                    statement_only_jobs_per_s=int(rounds.whole(mine["bulk_statement_jobs_per_s"])),
                ),
                figures(base, "bulk", chunk=s.chunk),
                _ratio(mine["bulk_jobs_per_s"], base["bulk_jobs_per_s"]),
                ">= 100,000 jobs/s",
                mine["bulk_jobs_per_s"] >= 100_000,
            )
        )

    def _drains(self) -> None:
        """The default drain against the baseline, the history drain, then the best settings.

        Rounds interleave: baseline, goodjob on an empty table, goodjob on the history table,
        goodjob with limits on 100 keys, then again, so that the ratios compare medians measured
        close together in time. Each baseline round gets a fresh database. goodjob's empty-table
        rounds share one database, its history rounds another (seeding a million rows takes
        longer than a drain) and its limited rounds a third, all settled before every round in
        the same way: the series differ only by the seeded rows, or by the limits. (A table
        drained before can be slower to drain again than a new one: vacuumed free space spreads
        the next jobs over old pages, whose first change after the checkpoint writes a full page
        to the WAL. Comparing a reused history table with new empty tables would count that as
        the history's cost.) The limited drain is reported in the default drain's line, as a
        share of its throughput.
        """
        o, s = self.options, self.options.sizes
        base_rounds: list[dict[str, Any]] = []
        empty_rounds: list[dict[str, Any]] = []
        history_rounds: list[dict[str, Any]] = []
        limited_rounds: list[dict[str, Any]] = []
        batched_rounds: list[dict[str, Any]] = []
        seed_seconds = 0.0
        plain = WorkerConfig(pooler_url=o.pooler_url)
        with contextlib.ExitStack() as stack:
            empty_url = stack.enter_context(fresh_database(o.url, "goodjob_drain"))
            migrated_app(empty_url).close()
            history_url = None
            if "history" in o.scenarios:
                history_url = stack.enter_context(fresh_database(o.url, "goodjob_history"))
                seed_seconds = self._seed(history_url)
            limited_url = batched_url = None
            if "drain" in o.scenarios:
                limited_url = stack.enter_context(fresh_database(o.url, "goodjob_limited"))
                migrated_app(limited_url).close()
                batched_url = stack.enter_context(fresh_database(o.url, "goodjob_batched"))
                migrated_app(batched_url).close()
            for r in range(1, s.rounds + 1):
                of = f"round {r}/{s.rounds}"
                base_rounds.append(
                    self._on_fresh(
                        "baseline-drain", lambda u: sc.baseline_drain(u, s, o.pooler_url), of
                    )
                )
                self._say(f"goodjob-drain {of} ...")
                seeding.settle(empty_url)
                empty_rounds.append(sc.goodjob_drain(empty_url, s, plain, "drain"))
                if history_url is not None:
                    self._say(f"goodjob-history {of} ...")
                    seeding.settle(history_url)
                    history_rounds.append(sc.goodjob_drain(history_url, s, plain, "history"))
                if limited_url is not None:
                    self._say(f"goodjob-drain-limited {of} ...")
                    seeding.settle(limited_url)
                    limited_rounds.append(
                        sc.goodjob_drain(limited_url, s, plain, "drain-limited", KEYS)
                    )
                if batched_url is not None:
                    self._say(f"goodjob-drain-batched {of} ...")
                    seeding.settle(batched_url)
                    batched_rounds.append(
                        sc.goodjob_drain(batched_url, s, plain, "drain-batched", batches=BATCHES)
                    )
        base = rounds.combine(base_rounds)
        empty = rounds.combine(empty_rounds)
        line = _drain_line("drain_default", empty, base)
        if limited_rounds:
            limited = rounds.combine(limited_rounds)
            line["goodjob"]["limited"] = {
                **_rounded(limited),
                "keys": KEYS,
                "perform_limit": PERFORM_LIMIT,
                "ratio_to_unlimited": _ratio(limited["jobs_per_s"], empty["jobs_per_s"]),
            }
        if batched_rounds:
            batched = rounds.combine(batched_rounds)
            line["goodjob"]["batched"] = {
                **_rounded(batched),
                "batches": BATCHES,
                "ratio_to_unbatched": _ratio(batched["jobs_per_s"], empty["jobs_per_s"]),
            }
        self._add(line)
        if history_rounds:
            mine = rounds.combine(history_rounds)
            mine.update(
                seed_seconds=round(seed_seconds, 1),
                finished_rows=s.history_finished,
                future_rows=s.history_future,
            )
            ratio = _ratio(mine["jobs_per_s"], empty["jobs_per_s"])
            self._add(
                _line(
                    "history",
                    _rounded(mine),
                    {
                        "empty_table_jobs_per_s": rounds.whole(empty["jobs_per_s"]),
                        "rounds": empty["rounds"],
                        "rounds_jobs_per_s": empty["rounds_jobs_per_s"],
                    },
                    ratio,
                    ">= 0.9x the empty-table drain",
                    ratio is not None and ratio >= 0.9 and mine["exactly_once"],
                )
            )
        if "drain" in o.scenarios:
            # One run: its target (2x the baseline) is far from its figures (5x and more).
            best = self._on_fresh(
                "goodjob-drain-best", lambda u: sc.goodjob_drain(u, s, o.best, "drain-best")
            )
            self._add(_drain_line("drain_best", best, base))

    def _seed(self, url: str) -> float:
        s = self.options.sizes
        self._say(f"goodjob-history: seeding {s.history_finished:,} + {s.history_future:,} jobs")
        migrated_app(url).close()  # the schema first: the seed writes goodjob_jobs
        seconds = history.seed(url, s.history_finished, s.history_future)
        self._say(f"seeded in {seconds:.1f}s")
        return seconds

    def _latency(self) -> None:
        s = self.options.sizes
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


def _drain_line(name: str, mine: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    ratio = _ratio(mine["jobs_per_s"], base["jobs_per_s"])
    return _line(
        name,
        _rounded(mine),
        _rounded(base),
        ratio,
        ">= 2.0x baseline, exactly once",
        ratio is not None and ratio >= 2.0 and mine["exactly_once"],
    )


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: rounds.whole(v) if k == "jobs_per_s" else v for k, v in figures.items()}


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
    if scenario == "dashboard":
        return dashboard.describe(figures)
    if scenario == "idle_worker":
        return f"{figures['rss_mb']:.0f} MB, {figures['connections']} connections"
    if "empty_table_jobs_per_s" in figures:
        text = f"{figures['empty_table_jobs_per_s']:,} jobs/s (empty table)"
        return text + _rounds_note(scenario, figures)
    text = f"{figures['jobs_per_s']:,} jobs/s"
    if "statement_only_jobs_per_s" in figures:
        text += f" (the statement alone: {figures['statement_only_jobs_per_s']:,})"
    if "config" in figures:
        text += f" ({figures['config']})"
    if "exactly_once" in figures:
        text += ", exactly once" if figures["exactly_once"] else ", [red]NOT exactly once[/]"
    text += _rounds_note(scenario, figures)
    # The default drain's variants, each on a line of its own, as a share of its throughput.
    if "limited" in figures:
        limited = figures["limited"]
        what = f"limits on {limited['keys']} keys (perform_limit {limited['perform_limit']})"
        text += _variant(scenario, what, limited, limited["ratio_to_unlimited"])
    if "batched" in figures:
        batched = figures["batched"]
        what = f"in {batched['batches']} batches"
        text += _variant(scenario, what, batched, batched["ratio_to_unbatched"])
    return text


def _variant(scenario: str, what: str, figures: dict[str, Any], ratio: float | None) -> str:
    return f"\n{what}, {'-' if ratio is None else f'{ratio:.2f}x'}: {_figure(scenario, figures)}"


def _rounds_note(scenario: str, figures: dict[str, Any]) -> str:
    """How a repeated figure was made: the median of drain rounds, the total of enqueue blocks."""
    count = figures.get("rounds")
    if count is None:
        return ""
    if scenario.startswith("enqueue"):
        return f", {count} alternating blocks" if count > 1 else ", 1 block"
    return f", median of {count} rounds" if count > 1 else ", 1 round"


def table(machine: dict[str, Any], lines: list[dict[str, Any]]) -> Table:
    title = (
        f"goodjob bench — Postgres {machine['server_version']}, fsync={machine['fsync']},"
        f" synchronous_commit={machine['synchronous_commit']}, {machine['cores']} cores"
        + (", drains through the pooler" if machine.get("pooler") else "")
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
    for line in lines:
        if line["scenario"] == "dashboard":
            console.print(dashboard.page_table(line["goodjob"]))
    return lines

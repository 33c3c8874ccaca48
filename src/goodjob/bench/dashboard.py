"""The dashboard scenario: every page of the dashboard timed on a seeded ten-million-job table.

Issue 17's target: every page's server time at most 200 ms at p95 with 10,000,000 rows in
``goodjob_jobs`` (the seed: :mod:`goodjob.bench.dashboard_seed`). The app is built as a user
mounts it, ``create_app(gj, read_only=True)``, and requested in-process through httpx's ASGI
transport: a page's time is from the request to the last byte of its response, with no network
and no server process in between. Each page is asked for as HTML and as JSON
(``?format=json``), with the filters a user would use on such a table; each is warmed up, then
timed ``requests`` times, one request at a time. A page that does not answer 200 is reported as
an error, not as a figure.

The dashboard is imported only when the scenario runs (``goodjob.dashboard`` may not be there:
it is built on its own branch), or another app is measured in its place
(``--dashboard-factory module:function``, as the tests do with a stub).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from goodjob.app import GoodJob
from goodjob.bench.dashboard_seed import RARE_LABEL, TASKS
from goodjob.bench.environment import BenchError, sql
from goodjob.bench.scenarios import percentiles

FACTORY = "goodjob.dashboard:create_app"
TARGET_MS = 200.0  # issue 17: every page's server time at p95
STATES = ("scheduled", "queued", "running", "succeeded", "retried", "discarded")
BASE_URL = "http://goodjob-bench"
FORMATS = ("html", "json")
CRON = {
    task.cron_key: {"cron": "0 * * * *" if i % 2 else "30 * * * *", "task": task.name}
    for i, task in enumerate(TASKS)
    if task.cron_key
}


def load_factory(spec: str) -> Callable[..., Any]:
    """The app factory named ``module:function``; BenchError saying so when it is not there."""
    module_name, _, attribute = spec.partition(":")
    if spec != FACTORY and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # found from here, as ``--app`` modules are
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the module is there, one of its own imports is not
        if spec == FACTORY:
            raise BenchError(
                "the dashboard scenario measures goodjob's dashboard, and goodjob.dashboard is"
                " not in this installation (issue 17 builds it); merge it, or measure another"
                " app with --dashboard-factory module:function"
            ) from None
        raise BenchError(f"--dashboard-factory {spec}: no module {module_name!r}") from None
    factory = getattr(module, attribute or "create_app", None)
    if not callable(factory):
        raise BenchError(f"--dashboard-factory {spec}: {module_name} has no function {attribute!r}")
    return factory  # type: ignore[no-any-return]


def dashboard_app(url: str) -> GoodJob:
    """The app the dashboard shows: the seeded tasks registered, the cron entries declared."""
    app = GoodJob(url, cron=CRON)
    for task in TASKS:
        app.task(name=task.name, queue=task.queue, priority=task.priority)(_noop)
    return app


def _noop() -> None:
    """Stands for every seeded task: the dashboard reads their names, it never runs them."""


@dataclass(frozen=True)
class Page:
    """One page to time: ``name`` in the report, ``path`` requested."""

    name: str
    path: str

    def url(self, fmt: str) -> str:
        if fmt == "html":
            return self.path
        return self.path + ("&" if "?" in self.path else "?") + "format=json"


def _jobs(name: str | None = None, **params: str) -> Page:
    path = "/jobs" + ("?" + urllib.parse.urlencode(params) if params else "")
    return Page(name or path, path)


def pages(url: str) -> list[Page]:
    """The pages, with filters a user would apply to the seeded table (ids read from it)."""
    # Newest first along the primary key: each stops after a few rows.
    job_id = _first(url, "SELECT id FROM goodjob_jobs WHERE executions_count >= 3 ORDER BY id DESC")
    batch_id = _first(url, "SELECT id FROM goodjob_batches ORDER BY created_at DESC, id DESC")
    email = _first(
        url,
        "SELECT arguments->'kwargs'->>'email' FROM goodjob_jobs WHERE task_name = %s"
        " ORDER BY id DESC",
        (TASKS[0].name,),
    )
    batched = next(task.name for task in TASKS if task.batched)
    return [
        Page("/", "/"),
        _jobs(),
        *(_jobs(state=state) for state in STATES),
        _jobs(state="queued", order="oldest"),
        _jobs(queue="mail"),
        _jobs(task=batched),
        _jobs(label="email"),
        _jobs(label=RARE_LABEL),
        _jobs("/jobs?q=<id>", q=job_id),
        _jobs("/jobs?q=<email>", q=email),
        Page("/jobs/<id>", f"/jobs/{job_id}"),
        Page("/processes", "/processes"),
        Page("/cron", "/cron"),
        Page("/batches", "/batches"),
        Page("/batches/<id>", f"/batches/{batch_id}"),
        Page("/pauses", "/pauses"),
        Page("/performance?window=1h", "/performance?window=1h"),
        Page("/performance?window=24h", "/performance?window=24h"),
        Page("/errors", "/errors"),
    ]


def _first(url: str, statement: str, params: Any = None) -> str:
    rows = sql(url, statement + " LIMIT 1", params)
    if not rows or rows[0][0] is None:
        raise BenchError(f"the seeded table has no row for: {statement}")
    return str(rows[0][0])


def find_cursor(document: Any) -> str | None:
    """The next page's cursor in a JSON listing: the value of a key naming a cursor (one
    naming the next page first), at the top or in a nested object; None when there is none."""
    found: list[tuple[int, str]] = []

    def walk(node: Any, depth: int) -> None:
        if not isinstance(node, dict) or depth > 3:
            return
        for key, value in node.items():
            name = str(key).lower()
            if "cursor" in name and isinstance(value, str | int) and str(value):
                found.append((0 if "next" in name else 1, str(value)))
            walk(value, depth + 1)

    walk(document, 0)
    return min(found)[1] if found else None


@dataclass
class Timing:
    """One page in one format: its timed requests, or why it has no figures."""

    page: str
    fmt: str
    durations_ms: list[float]
    status: int
    error: str | None = None

    def figures(self) -> dict[str, Any]:
        if self.error is not None:
            return {"status": self.status, "error": self.error}
        cuts = percentiles(self.durations_ms)
        return {
            "p50_ms": round(cuts["p50_ms"], 1),
            "p95_ms": round(cuts["p95_ms"], 1),
            "max_ms": round(max(self.durations_ms), 1),
            "status": self.status,
        }


async def _time(
    client: httpx.AsyncClient, page: Page, fmt: str, warmup: int, requests: int
) -> tuple[Timing, Any]:
    """Warm ``page`` up, then time it; also returns its last JSON document (None for HTML)."""
    durations: list[float] = []
    document: Any = None
    for i in range(warmup + requests):
        started = time.perf_counter()
        response = await client.get(page.url(fmt))
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            text = " ".join(response.text.split())[:300]
            return Timing(page.name, fmt, [], response.status_code, text or "(empty body)"), None
        if fmt == "json" and i == warmup + requests - 1:
            try:
                document = response.json()
            except ValueError:
                error = f"not JSON: {response.text[:200]!r}"
                return Timing(page.name, fmt, [], response.status_code, error), None
        if i >= warmup:
            durations.append(elapsed)
    return Timing(page.name, fmt, durations, 200), document


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Run the app's startup and shutdown around the requests, as a server would (httpx's ASGI
    transport does not); Starlette apps only, others are requested as they are."""
    context = getattr(getattr(app, "router", None), "lifespan_context", None)
    if context is None:
        yield
        return
    async with context(app):
        yield


async def _measure(
    app: Any, targets: list[Page], warmup: int, requests: int, progress: Callable[[str], None]
) -> list[Timing]:
    timings: list[Timing] = []
    transport = httpx.ASGITransport(app=app)
    async with (
        _lifespan(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=120) as client,
    ):
        for page in targets:
            for fmt in FORMATS:
                timing, document = await _time(client, page, fmt, warmup, requests)
                timings.append(timing)
                progress(f"dashboard: {page.name} {fmt}: {_summary(timing)}")
                if page.path == "/jobs?state=succeeded" and fmt == "json":
                    cursor = None if document is None else find_cursor(document)
                    follow = _next_page(cursor)
                    if follow is None:
                        timings += [
                            Timing(f"{page.name}&cursor=<next>", f, [], 0, "no cursor in the JSON")
                            for f in FORMATS
                        ]
                    else:  # timed next, by this very loop
                        targets.insert(targets.index(page) + 1, follow)
    return timings


def _next_page(cursor: str | None) -> Page | None:
    if cursor is None:
        return None
    query = urllib.parse.urlencode({"state": "succeeded", "cursor": cursor})
    return Page("/jobs?state=succeeded&cursor=<next>", f"/jobs?{query}")


def _summary(timing: Timing) -> str:
    figures = timing.figures()
    if timing.error is not None:
        return f"error (HTTP {timing.status}): {timing.error}"
    return f"p50 {figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms"


def measure(
    url: str,
    factory: Callable[..., Any],
    *,
    warmup: int,
    requests: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Time every page of ``factory(gj, read_only=True)`` on the seeded database at ``url``."""
    targets = pages(url)
    gj = dashboard_app(url)
    # httpx logs every request at INFO: a thousand lines between the scenario's own
    quiet = logging.getLogger("httpx")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        app = factory(gj, read_only=True)
        timings = asyncio.run(_measure(app, targets, warmup, requests, progress))
    finally:
        quiet.setLevel(level)
        gj.close()
    return summarize(timings, requests)


def summarize(timings: list[Timing], requests: int) -> dict[str, Any]:
    """The scenario's figures: the worst page, those over the target, every page's figures."""
    by_page: dict[str, dict[str, Any]] = {}
    for timing in timings:
        by_page.setdefault(timing.page, {})[timing.fmt] = timing.figures()
    timed = [t for t in timings if t.error is None]
    worst = max(timed, key=lambda t: t.figures()["p95_ms"], default=None)
    return {
        "requests_per_page": requests,
        "pages": len(by_page),
        "timed": len(timed),
        "worst_p95_ms": worst.figures()["p95_ms"] if worst else None,
        "worst_page": f"{worst.page} ({worst.fmt})" if worst else None,
        "over_target": [f"{t.page} ({t.fmt})" for t in timed if t.figures()["p95_ms"] > TARGET_MS],
        "errors": [f"{t.page} ({t.fmt}): HTTP {t.status}: {t.error}" for t in timings if t.error],
        "per_page": by_page,
    }


def met(figures: dict[str, Any]) -> bool:
    """Every page answered, each within the target at p95."""
    return bool(figures["timed"]) and not figures["errors"] and not figures["over_target"]


def page_table(figures: dict[str, Any]) -> Table:
    """One row per page and format: p50, p95, max, status; p95 over the target in red."""
    title = (
        f"goodjob bench: dashboard, {figures['rows']:,} jobs,"
        f" {figures['requests_per_page']} requests per page (target: p95 <= {TARGET_MS:.0f} ms)"
    )
    table = Table("page", "format", "p50 ms", "p95 ms", "max ms", "status", title=title)
    for page, formats in figures["per_page"].items():
        for fmt, row in formats.items():
            if "error" in row:
                table.add_row(page, fmt, "-", "-", "-", f"[red]{row['status']}: {row['error']}[/]")
                continue
            p95 = f"{row['p95_ms']:.1f}"
            if row["p95_ms"] > TARGET_MS:
                p95 = f"[red]{p95} (> {TARGET_MS:.0f})[/]"
            table.add_row(
                page, fmt, f"{row['p50_ms']:.1f}", p95, f"{row['max_ms']:.1f}", str(row["status"])
            )
    return table


def describe(figures: dict[str, Any]) -> str:
    """The scenario's cell in the summary table."""
    text = f"{figures['timed']} page views timed on {figures['rows']:,} jobs"
    if figures["worst_p95_ms"] is not None:
        text += f", worst p95 {figures['worst_p95_ms']:.1f} ms ({figures['worst_page']})"
    if figures["over_target"]:
        text += f", [red]{len(figures['over_target'])} over {TARGET_MS:.0f} ms[/]"
    if figures["errors"]:
        text += f", [red]{len(figures['errors'])} error(s)[/]"
    return text + f"; seeded at {figures['seed_jobs_per_s']:,.0f} jobs/s"

"""The dashboard's other pages: overview, processes, cron, batches, pauses, performance and
errors, with their actions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from goodjob.dashboard import present
from goodjob.dashboard.jobs import _act_on_many
from goodjob.records import dashboard as records
from goodjob.records import pauses as pause_records
from goodjob.records import processes as process_records

if TYPE_CHECKING:
    from goodjob.dashboard.handling import Dashboard

CHART_MINUTES = 60


def _minutes(now: dt.datetime) -> list[dt.datetime]:
    last = now.replace(second=0, microsecond=0)
    return [last - dt.timedelta(minutes=n) for n in range(CHART_MINUTES - 1, -1, -1)]


def routes(dash: Dashboard) -> list[BaseRoute]:
    gj = dash.gj
    db = gj.database

    async def overview(request: Request) -> Response:
        def build() -> dict[str, Any]:
            now = db.now()
            minutes = _minutes(now)
            charts = records.charts(db)
            processes = [present.process(p, now) for p in process_records.all_processes(db)]
            alive = [p for p in processes if p["alive"]]
            return {
                "now": now,
                "counts": records.state_counts(db),
                "queues": records.queues(db),
                "concurrency_keys": records.concurrency_keys(db),
                "paused": gj.paused(),
                "processes": {
                    "alive": len(alive),
                    "busy_threads": sum(p["busy_threads"] for p in alive),
                    "available_threads": sum(p["available_threads"] for p in alive),
                },
                "chart": {
                    "minutes": minutes,
                    **{name: present.series(s, minutes) for name, s in charts.items()},
                },
            }

        return await dash.page(request, "overview.html", build)

    async def processes(request: Request) -> Response:
        def build() -> dict[str, Any]:
            now = db.now()
            return {
                "now": now,
                "processes": [present.process(p, now) for p in process_records.all_processes(db)],
            }

        return await dash.page(request, "processes.html", build)

    async def cron(request: Request) -> Response:
        def build() -> dict[str, Any]:
            return {"entries": [present.cron(entry) for entry in gj.cron_entries()]}

        return await dash.page(request, "cron.html", build)

    async def cron_action(request: Request) -> Response:
        key: str = request.path_params["key"]
        action: str = request.path_params["action"]

        def act(form: FormData) -> tuple[str, str | None]:
            if action == "enable":
                gj.enable_cron_entry(key)
                return f"cron entry {key} enabled", None
            if action == "disable":
                gj.disable_cron_entry(key)
                return f"cron entry {key} disabled", None
            if action == "run":
                job = gj.run_cron_entry(key)
                return f"cron entry {key} enqueued job {job.id}", None
            raise ValueError(f"no cron action {action!r}: enable, disable or run")

        return await dash.action(request, act)

    async def batches(request: Request) -> Response:
        def build() -> dict[str, Any]:
            after = _batch_cursor(request.query_params.get("cursor"))
            rows = records.batches_page(db, after, records.BATCHES_PAGE + 1)
            shown = rows[: records.BATCHES_PAGE]
            more = len(rows) > records.BATCHES_PAGE
            last = shown[-1] if shown else None
            return {
                "batches": [
                    {
                        **present.batch(row),
                        "jobs": row["jobs"],
                        "unfinished": row["unfinished"],
                        "discarded": row["discarded"],
                    }
                    for row in shown
                ],
                "next_cursor": f"{last['created_at'].isoformat()}|{last['id']}"
                if more and last
                else None,
            }

        return await dash.page(request, "batches.html", build)

    async def batch(request: Request) -> Response:
        batch_id: uuid.UUID = request.path_params["batch_id"]

        def build() -> dict[str, Any]:
            found = gj.batch_by_id(batch_id)
            jobs = gj.batch_jobs(batch_id, limit=records.PAGE_SIZE * 2)
            return {
                "batch": present.batch(found),
                "jobs": [present.job(job) for job in jobs],
                "jobs_limit": records.PAGE_SIZE * 2,
            }

        return await dash.page(request, "batch.html", build)

    async def batch_retry(request: Request) -> Response:
        batch_id: uuid.UUID = request.path_params["batch_id"]

        def act(form: FormData) -> tuple[str, str | None]:
            count = gj.retry_batch(batch_id)
            return f"batch {batch_id}: retried {count} job{'s' if count != 1 else ''}", None

        return await dash.action(request, act)

    async def pauses(request: Request) -> Response:
        def build() -> dict[str, Any]:
            return {"paused": gj.paused(), "kinds": list(pause_records.KINDS)}

        return await dash.page(request, "pauses.html", build)

    def _pause_args(form: FormData) -> tuple[str, str]:
        kind, name = str(form.get("kind", "")), str(form.get("name", "")).strip()
        if kind not in pause_records.KINDS:
            raise ValueError(f"pause a queue, a task or a label, not {kind!r}")
        return kind, name

    async def pause(request: Request) -> Response:
        def act(form: FormData) -> tuple[str, str | None]:
            kind, name = _pause_args(form)
            gj.pause(**{kind: name})
            return f"{kind} {name} paused", None

        return await dash.action(request, act)

    async def unpause(request: Request) -> Response:
        def act(form: FormData) -> tuple[str, str | None]:
            kind, name = _pause_args(form)
            was = gj.unpause(**{kind: name})
            return f"{kind} {name} {'unpaused' if was else 'was not paused'}", None

        return await dash.action(request, act)

    async def performance(request: Request) -> Response:
        def build() -> dict[str, Any]:
            window = request.query_params.get("window", "1h")
            if window not in records.WINDOWS:
                raise ValueError(f"window {window!r} is not one of {', '.join(records.WINDOWS)}")
            found = records.performance(db, records.WINDOWS[window])
            return {
                "window": window,
                "windows": list(records.WINDOWS),
                "tasks": found.tasks,
                "total": found.total,
                "complete_since": found.complete_since,
                "cap": records.PERFORMANCE_CAP,
            }

        return await dash.page(request, "performance.html", build)

    async def errors(request: Request) -> Response:
        def build() -> dict[str, Any]:
            found = records.errors(db)
            return {
                "groups": found.groups,
                "read": found.read,
                "capped": found.capped,
                "bulk_limit": records.BULK_LIMIT,
            }

        return await dash.page(request, "errors.html", build)

    async def errors_retry(request: Request) -> Response:
        def act(form: FormData) -> tuple[str, str | None]:
            error_class = str(form.get("error_class", ""))
            if not error_class:
                raise ValueError("name the error class to retry")
            ids = records.error_class_ids(db, error_class)
            return f"{error_class}: " + _act_on_many(gj, "retry", ids), None

        return await dash.action(request, act)

    return [
        Route("/", overview, name="overview"),
        Route("/processes", processes, name="processes"),
        Route("/cron", cron, name="cron"),
        Route("/cron/{key}/{action}", cron_action, name="cron_action", methods=["POST"]),
        Route("/batches", batches, name="batches"),
        Route("/batches/{batch_id:uuid}", batch, name="batch"),
        Route("/batches/{batch_id:uuid}/retry", batch_retry, name="batch_retry", methods=["POST"]),
        Route("/pauses", pauses, name="pauses", methods=["GET"]),
        Route("/pauses", pause, name="pause", methods=["POST"]),
        Route("/pauses/delete", unpause, name="unpause", methods=["POST"]),
        Route("/performance", performance, name="performance"),
        Route("/errors", errors, name="errors"),
        Route("/errors/retry", errors_retry, name="errors_retry", methods=["POST"]),
    ]


def _batch_cursor(value: str | None) -> tuple[dt.datetime, uuid.UUID] | None:
    if not value:
        return None
    at, _, batch_id = value.partition("|")
    try:
        return dt.datetime.fromisoformat(at), uuid.UUID(batch_id)
    except ValueError:
        raise ValueError("the cursor is not one this dashboard made") from None

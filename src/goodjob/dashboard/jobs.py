"""The jobs pages: the list (state tabs, filters, keyset pages), one job, and their actions.

Bulk actions act on the jobs selected on a page, or on every job matching the filters: the
latter is a GET that counts them and asks for confirmation, then a POST that carries the count
confirmed and acts on at most that many (never more than the person agreed to), at most
``BULK_LIMIT`` at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from goodjob.dashboard import present
from goodjob.dashboard.security import Refused
from goodjob.errors import DatabaseError, JobNotFound, JobStateError
from goodjob.records import dashboard as records
from goodjob.records.jobs import STATUSES

if TYPE_CHECKING:
    from goodjob.app import GoodJob
    from goodjob.dashboard.handling import Dashboard

ACTIONS = ("retry", "discard", "reschedule", "cancel", "destroy")
# What each action is for, so a page offers only those that apply.
ACTIONS_FOR = {
    "retry": ("discarded",),
    "discard": ("scheduled", "queued", "retried"),
    "reschedule": ("scheduled", "queued", "retried"),
    "cancel": ("scheduled", "queued", "retried", "running"),
    "destroy": ("succeeded", "discarded"),
}
PAST = {
    "retry": "retried",
    "discard": "discarded",
    "reschedule": "rescheduled",
    "cancel": "cancelled",
    "destroy": "destroyed",
}


def filters_from(values: Any) -> records.JobFilter:
    """The list's filters from a query string or a form (ValueError for a bad one)."""

    def text(name: str) -> str | None:
        value = values.get(name)
        if not isinstance(value, str):
            return None
        return value.replace("\x00", "").strip()[:500] or None  # Postgres text holds no NUL

    return records.JobFilter(
        state=text("state"),
        queue=text("queue"),
        task=text("task"),
        label=text("label"),
        text=text("q"),
        order=text("order") or "newest",
    )


def _act(gj: GoodJob, action: str, job_id: uuid.UUID) -> None:
    calls: dict[str, Callable[[uuid.UUID], Any]] = {
        "retry": gj.retry_job,
        "discard": gj.discard_job,
        "reschedule": gj.reschedule_job,
        "cancel": gj.cancel_job,
        "destroy": gj.destroy_job,
    }
    calls[action](job_id)


def _act_on_many(gj: GoodJob, action: str, ids: list[uuid.UUID]) -> str:
    """Act on each job; what happened, in one line. Jobs whose state changed meanwhile (or that
    are gone) are skipped and counted; a database error ends the action, saying how far it got
    (each job's action is its own transaction: those done stay done)."""
    done, skipped = 0, 0
    for job_id in ids:
        try:
            _act(gj, action, job_id)
        except (JobStateError, JobNotFound):
            skipped += 1
            continue
        except DatabaseError as exc:
            raise DatabaseError(f"{PAST[action]} {done} of {len(ids)} jobs, then: {exc}") from exc
        done += 1
    notice = f"{PAST[action]} {done} job{'s' if done != 1 else ''}"
    return notice + (f"; {skipped} skipped (their state had changed)" if skipped else "")


def routes(dash: Dashboard) -> list[BaseRoute]:
    gj = dash.gj

    async def jobs_list(request: Request) -> Response:
        def build() -> dict[str, Any]:
            filters = filters_from(request.query_params)
            cursor = request.query_params.get("cursor") or None
            page = records.jobs_page(gj.database, filters, cursor)
            return {
                "filters": filters.params(),
                "counts": records.state_counts(gj.database),
                "states": list(STATUSES),
                "jobs": [present.job(job) for job in page.jobs],
                "next_cursor": page.next_cursor,
                "scan_limited": page.scan_limited,
                "scan_limit": records.SCAN_LIMIT,
                "id_match": page.id_match,
                "actions": [a for a in ACTIONS if filters.state in (None, *ACTIONS_FOR[a])],
            }

        return await dash.page(request, "jobs.html", build)

    async def job_page(request: Request) -> Response:
        job_id: uuid.UUID = request.path_params["job_id"]

        def build() -> dict[str, Any]:
            job = gj.job(job_id)
            return {
                "job": present.job(job, executions=True),
                "actions": [a for a in ACTIONS if job.status in ACTIONS_FOR[a]],
            }

        return await dash.page(request, "job.html", build)

    async def job_action(request: Request) -> Response:
        job_id: uuid.UUID = request.path_params["job_id"]
        action: str = request.path_params["action"]
        if action not in ACTIONS:
            return dash.refusal(request, _not_found(action))

        def act(form: FormData) -> tuple[str, str | None]:
            _act(gj, action, job_id)
            if action == "destroy":
                return f"job {job_id} destroyed", dash.path(request, "jobs")
            return f"job {job_id} {PAST[action]}", None

        return await dash.action(request, act)

    async def bulk_confirm(request: Request) -> Response:
        def build() -> dict[str, Any]:
            action = request.query_params.get("action", "")
            if action not in ACTIONS:
                raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
            filters = filters_from(request.query_params)
            ids, complete = records.matching_ids(gj.database, filters)
            return {
                "action": action,
                "filters": filters.params(),
                "count": len(ids),
                "complete": complete,
                "bulk_limit": records.BULK_LIMIT,
            }

        return await dash.page(request, "bulk_confirm.html", build)

    async def bulk(request: Request) -> Response:
        def act(form: FormData) -> tuple[str, str | None]:
            action = str(form.get("action", ""))
            if action not in ACTIONS:
                raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
            if form.get("scope") == "all":
                confirmed = _confirmed(form.get("confirmed"))
                ids, _ = records.matching_ids(gj.database, filters_from(form), confirmed)
            else:
                ids = [_uuid(value) for value in form.getlist("ids")][: records.BULK_LIMIT]
                if not ids:
                    raise ValueError("no job selected")
            return _act_on_many(gj, action, ids), None

        return await dash.action(request, act)

    return [
        Route("/jobs", jobs_list, name="jobs"),
        Route("/jobs/bulk", bulk_confirm, name="jobs_bulk_confirm", methods=["GET"]),
        Route("/jobs/bulk", bulk, name="jobs_bulk", methods=["POST"]),
        Route("/jobs/{job_id:uuid}", job_page, name="job"),
        Route("/jobs/{job_id:uuid}/{action}", job_action, name="job_action", methods=["POST"]),
    ]


def _confirmed(value: object) -> int:
    """The number of jobs the person confirmed acting on."""
    try:
        confirmed = int(str(value))
    except ValueError:
        raise ValueError("acting on all matching jobs needs the count you confirmed") from None
    if not 0 < confirmed <= records.BULK_LIMIT:
        raise ValueError(f"the confirmed count must be between 1 and {records.BULK_LIMIT}")
    return confirmed


def _uuid(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a job id") from None


def _not_found(what: str) -> Refused:
    return Refused(404, f"no action {what!r}")

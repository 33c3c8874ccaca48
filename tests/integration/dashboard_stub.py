"""A stand-in for goodjob's dashboard (issue 17) with its URL scheme and trivial queries.

Not shipped: ``goodjob bench --scenario dashboard --dashboard-factory
tests.integration.dashboard_stub:create_app`` measures it, so the scenario's harness is tested
without the dashboard. Every page answers as HTML, or as JSON with ``?format=json``; ``/jobs``
gives a next-page cursor, as a keyset-paginated listing does.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from goodjob.app import GoodJob


def create_app(gj: GoodJob, *, read_only: bool = False, authorize: Any = None) -> Starlette:
    def page(request: Request, document: dict[str, Any]) -> Response:
        if request.query_params.get("format") == "json":
            return JSONResponse(document)
        return HTMLResponse(f"<html><body><pre>{sorted(document)}</pre></body></html>")

    def overview(request: Request) -> Response:
        return page(request, {"jobs": len(gj.jobs(limit=10))})

    def jobs(request: Request) -> Response:
        params = request.query_params
        found = gj.jobs(
            status=params.get("state"),
            queue=params.get("queue"),
            task=params.get("task"),
            label=params.get("label"),
            limit=50,
        )
        ids = [str(job.id) for job in found]
        return page(request, {"jobs": ids, "pagination": {"next_cursor": ids[-1] if ids else None}})

    def job(request: Request) -> Response:
        return page(request, {"id": str(gj.job(request.path_params["id"]).id)})

    def batches(request: Request) -> Response:
        return page(request, {"batches": [str(b.id) for b in gj.batches(limit=20)]})

    def batch(request: Request) -> Response:
        return page(request, {"id": str(gj.batch_by_id(request.path_params["id"]).id)})

    def cron(request: Request) -> Response:
        return page(request, {"entries": [entry.key for entry in gj.cron_entries()]})

    def pauses(request: Request) -> Response:
        return page(request, {"pauses": gj.paused()})

    def constant(request: Request) -> Response:
        return page(request, {"read_only": read_only})

    return Starlette(
        routes=[
            Route("/", overview),
            Route("/jobs", jobs),
            Route("/jobs/{id}", job),
            Route("/processes", constant),
            Route("/cron", cron),
            Route("/batches", batches),
            Route("/batches/{id}", batch),
            Route("/pauses", pauses),
            Route("/performance", constant),
            Route("/errors", constant),
        ]
    )

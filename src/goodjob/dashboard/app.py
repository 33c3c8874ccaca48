"""The dashboard's ASGI app: :func:`create_app` assembles the pages, the actions and the
static files (uPlot, the stylesheet, the script) under one Starlette app."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from goodjob.dashboard import jobs, pages, security
from goodjob.dashboard.handling import Dashboard

if TYPE_CHECKING:
    from goodjob.app import GoodJob


def create_app(
    gj: GoodJob,
    *,
    read_only: bool = False,
    authorize: security.Authorize | None = None,
    secret: bytes | str | None = None,
) -> Starlette:
    """The dashboard of ``gj`` as an ASGI app, to serve alone or mount under a prefix.

    ``authorize(request)`` (sync or async) is asked for every request; anything but True
    answers 403 (it may also raise ``starlette.exceptions.HTTPException``, e.g. a 401 asking
    for basic auth). ``read_only=True`` hides every action and refuses every POST.
    ``secret`` keys the CSRF tokens: give the same one to every process serving the
    dashboard behind one address (a random one per app by default).
    """
    if isinstance(secret, str):
        secret = secret.encode()
    dashboard = Dashboard(
        gj,
        read_only=read_only,
        authorize=authorize,
        secret=secret or security.new_secret(),
    )
    static = StaticFiles(directory=str(resources.files("goodjob.dashboard") / "static"))
    routes: list[BaseRoute] = [
        *pages.routes(dashboard),
        *jobs.routes(dashboard),
        Mount("/static", app=static, name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return Response(exc.detail, exc.status_code, headers=exc.headers)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.dashboard = dashboard
    return app

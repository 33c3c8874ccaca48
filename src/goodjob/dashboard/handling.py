"""The two shapes of a dashboard request, and rendering.

Every page is a GET rendered from one dict, as HTML (Jinja2, autoescaped) or, with
``?format=json``, as that dict in JSON. Every action is a POST that passes the guards of
:mod:`goodjob.dashboard.security`, runs one call of the app's API in a worker thread and
redirects (303) back with a notice. Links and form actions are built from the request's root
path, so the app works mounted under any prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from goodjob.dashboard import present, security
from goodjob.errors import (
    BatchNotFound,
    ConfigurationError,
    DatabaseError,
    JobNotFound,
    JobStateError,
)

if TYPE_CHECKING:
    from goodjob.app import GoodJob

logger = logging.getLogger("goodjob.dashboard")

NOTICE_COOKIE = "goodjob_notice"
# What the pages may load: their own scripts and styles only (uPlot sets inline styles from
# script, which CSP allows). No inline script can run, so an escaping slip is not an XSS.
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
NAV = (
    ("overview", "Overview"),
    ("jobs", "Jobs"),
    ("processes", "Processes"),
    ("cron", "Cron"),
    ("batches", "Batches"),
    ("pauses", "Pauses"),
    ("performance", "Performance"),
    ("errors", "Errors"),
)
Build = Callable[[], dict[str, Any]]
# Does it; returns a notice and where to go then (None: back where the form said, its
# ``next`` field, or the overview).
Act = Callable[[FormData], tuple[str, str | None]]


class Dashboard:
    """One dashboard on one app: its settings, templates and the two request shapes."""

    def __init__(
        self,
        gj: GoodJob,
        *,
        read_only: bool,
        authorize: security.Authorize | None,
        secret: bytes,
    ) -> None:
        self.gj = gj
        self.read_only = read_only
        self.authorize = authorize
        self.secret = secret
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("goodjob.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            json=present.pretty_json,
            seconds=present.seconds,
            when=present.when,
            short_id=present.short_id,
        )

    # -- the two request shapes -----------------------------------------------------------

    async def page(self, request: Request, template: str, build: Build) -> Response:
        """A GET: guarded by ``authorize``; ``build`` runs in a worker thread (it reads the
        database), its dict is rendered as HTML or JSON."""
        try:
            await security.check_authorized(self.authorize, request)
            data = await run_in_threadpool(self._checked, build)
        except security.Refused as refused:
            return self.refusal(request, refused)
        except ValueError as exc:
            return self.refusal(request, security.Refused(400, str(exc)))
        except (JobNotFound, BatchNotFound, ConfigurationError) as exc:
            return self.refusal(request, security.Refused(404, str(exc)))
        except DatabaseError as exc:  # unreachable, not migrated: say so, not a traceback
            logger.warning("dashboard: %s %s: %s", request.method, request.url.path, exc)
            return self.refusal(request, security.Refused(503, str(exc)))
        if request.query_params.get("format") == "json":
            return JSONResponse(present.to_json(data), headers=HEADERS)
        return self.render(request, template, data)

    async def action(self, request: Request, act: Act) -> Response:
        """A POST: refused when read-only, cross-site, without its CSRF token, or not
        authorized; else ``act`` runs in a worker thread and the browser is sent back."""
        try:
            if self.read_only:
                raise security.Refused(403, "this dashboard is read-only")
            security.check_origin(request)
            await security.check_authorized(self.authorize, request)
            form = await request.form()
            token = form.get(security.CSRF_FIELD)
            security.check_token(request, self.secret, token if isinstance(token, str) else None)
        except security.Refused as refused:
            return self.refusal(request, refused)
        back = self.safe_back(request, form.get("next")) or self.path(request, "overview")
        try:
            notice, where = await run_in_threadpool(self._checked_act, act, form)
        except (JobStateError, ConfigurationError, JobNotFound, BatchNotFound, ValueError) as exc:
            notice, where = f"error: {exc}", None
        except DatabaseError as exc:
            logger.warning("dashboard: %s %s: %s", request.method, request.url.path, exc)
            notice, where = f"error: {exc}", None
        return self.redirect(request, where or back, notice)

    def _checked(self, build: Build) -> dict[str, Any]:
        self.gj.check_schema()
        return build()

    def _checked_act(self, act: Act, form: FormData) -> tuple[str, str | None]:
        self.gj.check_schema()
        return act(form)

    # -- responses ------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, data: Mapping[str, Any], status: int = 200
    ) -> Response:
        cookie = security.cookie_value(request)
        new_cookie = cookie is None
        if cookie is None:
            cookie = security.new_cookie_value()
        notice = request.cookies.get(NOTICE_COOKIE)
        context = {
            **data,
            "data": data,
            "request": request,
            "url": lambda name, query=None, **params: self.path(request, name, query, **params),
            "static": lambda file: self.path(request, "static", path=file),
            "csrf_field": security.CSRF_FIELD,
            "csrf_token": security.token_for(self.secret, cookie),
            "read_only": self.read_only,
            "notice": unquote(notice)[:500] if notice else None,
            "nav": NAV,
            "here": request.url.path,
            "here_full": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        }
        html = self.templates.get_template(template).render(context)
        response = HTMLResponse(html, status, headers=HEADERS)
        root = _cookie_path(request)
        if new_cookie:
            response.set_cookie(
                security.CSRF_COOKIE,
                cookie,
                path=root,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        if notice:
            response.delete_cookie(NOTICE_COOKIE, path=root)
        return response

    def redirect(self, request: Request, where: str, notice: str | None) -> Response:
        """A 303 to ``where``, with a notice the next page shows once (a cookie under this
        dashboard's path, which that page deletes)."""
        response = RedirectResponse(where, status_code=303, headers=HEADERS)
        if notice:
            response.set_cookie(
                NOTICE_COOKIE,
                quote(notice[:500]),
                max_age=60,
                path=_cookie_path(request),
                httponly=True,
                samesite="strict",
            )
        return response

    def refusal(self, request: Request, refused: security.Refused) -> Response:
        if refused.status not in (403, 503):
            logger.info("dashboard: %s %s: %s", request.method, request.url.path, refused.reason)
        if request.query_params.get("format") == "json" or request.method == "POST":
            if request.method == "POST" and "text/html" in request.headers.get("accept", ""):
                return self.render(request, "refused.html", {"reason": refused}, refused.status)
            return JSONResponse({"error": refused.reason}, refused.status, headers=HEADERS)
        return self.render(request, "refused.html", {"reason": refused}, refused.status)

    # -- links ----------------------------------------------------------------------------

    def path(
        self, request: Request, name: str, query: Mapping[str, Any] | None = None, **params: Any
    ) -> str:
        """The path of route ``name`` under this app's mount point, with a query string."""
        path = request.url_for(name, **{k: str(v) for k, v in params.items()}).path
        given = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        return f"{path}?{urlencode(given)}" if given else path

    def safe_back(self, request: Request, value: object) -> str | None:
        """A ``next`` field's path, when it is a path inside this dashboard (never another
        site: an open redirect would make a trusted link lead anywhere)."""
        if not isinstance(value, str):
            return None
        root = request.scope.get("root_path", "")
        if value.startswith("/") and not value.startswith("//") and "\\" not in value:
            return value if value.startswith(root + "/") or value == root else None
        return None


def _cookie_path(request: Request) -> str:
    """The path of the dashboard's cookies: its mount point, so they go to it alone."""
    return str(request.scope.get("root_path", "")) or "/"

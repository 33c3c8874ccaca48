"""The dashboard's guards: the ``authorize`` hook, read-only mode, and CSRF protection.

Every state change is a POST, and a POST is accepted only when all of these hold:

1. the browser does not say it comes from another site (``Sec-Fetch-Site: cross-site``), and an
   ``Origin`` header, when sent, names this host (what Sidekiq's web UI checks);
2. it carries the CSRF token: the HMAC, under this app's secret, of a random value the
   dashboard set in a ``SameSite=Strict`` cookie (a double-submit cookie that a sibling
   subdomain cannot forge, since it does not know the secret);
3. the dashboard is not read-only, and ``authorize(request)`` allowed the request (it is asked
   for every request, GET or POST).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request

CSRF_COOKIE = "goodjob_csrf"
CSRF_FIELD = "csrf_token"

Authorize = Callable[[Request], bool | Awaitable[bool]]


class Refused(Exception):
    """A request the guards turned away: its status code and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def cookie_value(request: Request) -> str | None:
    value = request.cookies.get(CSRF_COOKIE)
    return value if value and len(value) <= 100 else None


def new_cookie_value() -> str:
    return secrets.token_urlsafe(32)


def token_for(secret: bytes, cookie: str) -> str:
    """The CSRF token forms carry for this cookie value."""
    return hmac.new(secret, cookie.encode(), hashlib.sha256).hexdigest()


def check_origin(request: Request) -> None:
    """Refuse a request a browser says comes from another site."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise Refused(403, "cross-site request refused (Sec-Fetch-Site)")
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
        raise Refused(403, "cross-origin request refused (Origin does not match Host)")


def check_token(request: Request, secret: bytes, given: str | None) -> None:
    """Refuse a POST whose token does not match its cookie."""
    cookie = cookie_value(request)
    if cookie is None or not given:
        raise Refused(403, "CSRF token missing: reload the page and try again")
    if not hmac.compare_digest(token_for(secret, cookie), given):
        raise Refused(403, "CSRF token invalid: reload the page and try again")


async def check_authorized(authorize: Authorize | None, request: Request) -> None:
    """Ask the hook (sync or async); refuse on anything but True."""
    if authorize is None:
        return
    answer = authorize(request)
    if inspect.isawaitable(answer):
        answer = await answer
    if answer is not True:
        raise Refused(403, "not authorized")

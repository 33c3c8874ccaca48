"""Async execution mode for ASGI apps: run a worker Capsule for the web process's lifetime.

FastAPI / Starlette::

    app = FastAPI(lifespan=goodjob.contrib.asgi.lifespan(gj))

Any ASGI app (answers the ``lifespan`` protocol itself and passes everything else through; the
wrapped app sees no lifespan events, so an app with its own lifespan should use ``lifespan``)::

    app = goodjob.contrib.asgi.GoodJobLifespan(app, gj)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from goodjob.app import GoodJob

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def lifespan(gj: GoodJob) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan function (``FastAPI(lifespan=...)``) that starts and stops ``gj``'s worker."""

    @contextlib.asynccontextmanager
    async def run(_app: Any) -> AsyncIterator[None]:
        await asyncio.to_thread(gj.start)
        try:
            yield
        finally:
            await asyncio.to_thread(gj.shutdown)

    return run


class GoodJobLifespan:
    """ASGI middleware: starts the worker on ``lifespan.startup``, stops it on shutdown."""

    def __init__(self, app: ASGIApp | None, gj: GoodJob) -> None:
        self.app = app
        self.gj = gj

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            if self.app is None:
                raise RuntimeError("GoodJobLifespan has no app to pass requests to")
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(self.gj.start)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.gj.shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

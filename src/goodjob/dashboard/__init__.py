"""The web dashboard (issue 17): every job, process, cron entry, batch and pause at a glance.

An ASGI app on Starlette with server-rendered Jinja2 pages, each also as JSON
(``?format=json``); serve it alone (``goodjob dashboard``) or mount it in a FastAPI, Starlette,
Django (ASGI) or Flask (through a WSGI adapter) project::

    from goodjob.dashboard import create_app
    app.mount("/goodjob", create_app(gj, authorize=is_admin))

Needs the ``dashboard`` extra: ``pip install 'goodjob[dashboard]'``.
"""

from __future__ import annotations

from goodjob.dashboard.app import create_app

__all__ = ["create_app"]

"""The dashboard mounted in a FastAPI app at /goodjob, for the admin only (HTTP basic auth)
(`uvicorn dashboard_app:app`, then open http://127.0.0.1:8000/goodjob/)."""

import base64
import binascii
import os
import secrets

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request

import goodjob
from goodjob.dashboard import create_app

gj = goodjob.GoodJob()  # DATABASE_URL from the environment
ADMIN = f"admin:{os.environ['DASHBOARD_PASSWORD']}".encode()


def admin_only(request: Request) -> bool:
    """Ask the browser for a password (401), and let the admin in."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            given = b""
        if secrets.compare_digest(given, ADMIN):
            return True
    raise HTTPException(401, headers={"WWW-Authenticate": 'Basic realm="goodjob"'})


app = FastAPI()
app.mount("/goodjob", create_app(gj, authorize=admin_only))

"""The ``goodjob`` command line."""

from __future__ import annotations

from goodjob.cli.main import main

__all__ = ["main"]

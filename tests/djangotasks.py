"""Django tasks of tests/integration/test_django.py, besides the example project's (imported
once Django is set up: defining a task asks Django for its backend)."""

from __future__ import annotations

import asyncio
from typing import Any

from django_tasks import task


@task
def fails(n: int) -> None:
    raise ValueError(f"no {n}")


@task(takes_context=True)
def with_context(context: Any) -> list[Any]:
    return [context.attempt, context.task_result.id]


@task
async def in_async(n: int) -> int:
    await asyncio.sleep(0)
    return n * 2

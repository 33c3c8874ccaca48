"""Records as the dashboard shows them: plain dicts for JSON, and the templates' filters.

The JSON views and the HTML pages get the same dicts; JSON encodes datetimes as ISO 8601
strings, ids as strings and durations as seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from goodjob.cron import CronStatus
from goodjob.records.batches import Batch
from goodjob.records.dashboard import Count, Series
from goodjob.records.jobs import Execution, Job
from goodjob.records.processes import ProcessRecord


def job(job: Job, *, executions: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "task_name": job.task_name,
        "queue_name": job.queue_name,
        "priority": job.priority,
        "status": job.status,
        "arguments": job.arguments,
        "labels": list(job.labels),
        "scheduled_at": job.scheduled_at,
        "created_at": job.created_at,
        "performed_at": job.performed_at,
        "finished_at": job.finished_at,
        "cancelled_at": job.cancelled_at,
        "error": job.error,
        "error_event": job.error_event,
        "attempts": job.executions_count,
        "locked_by_id": job.locked_by_id,
        "concurrency_key": job.concurrency_key,
        "batch_id": job.batch_id,
        "result": job.raw_result,
    }
    if executions:
        data["executions"] = [execution(e) for e in job.executions]
    return data


def execution(e: Execution) -> dict[str, Any]:
    return {
        "attempt": e.attempt,
        "process_id": e.process_id,
        "performed_at": e.performed_at,
        "finished_at": e.finished_at,
        "duration": e.duration,
        "error": e.error,
        "error_event": e.error_event,
        "error_backtrace": e.error_backtrace,
    }


def process(p: ProcessRecord, now: dt.datetime) -> dict[str, Any]:
    state = p.state if isinstance(p.state, dict) else {}
    found = state.get("schedulers")
    schedulers: list[Any] = found if isinstance(found, list) else []
    pools = [
        {
            "queues": s.get("queues"),
            "max_threads": s.get("max_threads"),
            "busy_threads": s.get("busy_threads"),
            "available_threads": s.get("available_threads"),
            "succeeded": s.get("succeeded"),
            "failed": s.get("failed"),
            "claims": s.get("claims"),
        }
        for s in schedulers
        if isinstance(s, dict)
    ]
    return {
        "id": p.id,
        "hostname": state.get("hostname"),
        "pid": state.get("pid"),
        "proctitle": state.get("proctitle"),
        "version": state.get("version"),
        "memory_kb": state.get("memory"),
        "lock_type": p.lock_type,
        "alive": p.alive,
        "listening": state.get("listening"),
        "cron_enabled": (state.get("cron") or {}).get("enabled")
        if isinstance(state.get("cron"), dict)
        else None,
        "pools": pools,
        "busy_threads": sum(int(s["busy_threads"] or 0) for s in pools),
        "available_threads": sum(int(s["available_threads"] or 0) for s in pools),
        "succeeded": state.get("succeeded"),
        "failed": state.get("failed"),
        "started_at": p.created_at,
        "heartbeat_at": p.updated_at,
        "heartbeat_age": (now - p.updated_at).total_seconds(),
    }


def cron(entry: CronStatus) -> dict[str, Any]:
    return {
        "key": entry.key,
        "expression": entry.expression,
        "task_name": entry.task_name,
        "description": entry.description,
        "enabled": entry.enabled,
        "next_at": entry.next_at,
        "last_at": entry.last_at,
    }


def batch(b: Batch | dict[str, Any]) -> dict[str, Any]:
    if isinstance(b, dict):
        b = Batch.from_row(b)
    return {
        "id": b.id,
        "description": b.description,
        "status": b.status,
        "properties": b.properties,
        "on_finish": b.on_finish,
        "on_success": b.on_success,
        "on_discard": b.on_discard,
        "callback_queue_name": b.callback_queue_name,
        "enqueued_at": b.enqueued_at,
        "discarded_at": b.discarded_at,
        "jobs_finished_at": b.jobs_finished_at,
        "finished_at": b.finished_at,
        "created_at": b.created_at,
        "counts": b.counts,
        "total": b.total,
    }


def series(s: Series, minutes: list[dt.datetime]) -> dict[str, Any]:
    return {
        "values": [s.values.get(m, 0.0) for m in minutes],
        "complete_since": s.complete_since,
    }


def to_json(value: Any) -> Any:
    """``value`` with goodjob's and Python's types made JSON-ready."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Count):
        return value.as_json()
    return value


# -- the templates' filters ---------------------------------------------------------------


def pretty_json(value: Any) -> str:
    return json.dumps(to_json(value), indent=2, sort_keys=True, ensure_ascii=False)


def seconds(value: float | dt.timedelta | None) -> str:
    """A duration for people: 850 ms, 12.3 s, 4 min 5 s, 2 h 3 min."""
    if value is None:
        return ""
    total = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    if total < 1:
        return f"{total * 1000:.0f} ms"
    if total < 60:
        return f"{total:.1f} s"
    if total < 3600:
        return f"{int(total // 60)} min {int(total % 60)} s"
    if total < 86400:
        return f"{int(total // 3600)} h {int(total % 3600 // 60)} min"
    return f"{int(total // 86400)} d {int(total % 86400 // 3600)} h"


def short_id(value: object) -> str:
    """An id shortened for tables: a UUIDv7 starts with its time, so keep both ends."""
    text = str(value or "")
    return f"{text[:8]}…{text[-6:]}" if len(text) > 16 else text


def when(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")

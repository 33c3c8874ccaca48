"""What the dashboard reads: pages of jobs, counts, charts and aggregates, each bounded.

The dashboard must answer in well under 200 ms with ten million rows of history, so no
statement here reads a number of rows that grows with the history (issue 17):

- lists are keyset pages, each state read through its own index in that index's order (ids are
  UUIDv7, so id order is creation order); a filter the index cannot serve (queue, task, label,
  text) reads at most :data:`SCAN_LIMIT` rows of the state's order per page, and the page says
  where its scan stopped so the next one goes on from there;
- counts stop at a cap; past it the planner's estimate is shown, marked as one;
- charts and aggregates read at most a capped number of the newest rows of their window, and
  say which part of the window that covered.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from goodjob.db import Database
from goodjob.records import jobs as job_records
from goodjob.records.jobs import STATUSES, Job

PAGE_SIZE = 50  # jobs a page of the list shows
SCAN_LIMIT = 10_000  # rows a filtered page of the list reads at most
COUNT_CAP = 10_000  # index entries a state's exact count reads at most; past it, an estimate
WAITING_COUNT_CAP = 1_000  # rows the count of a waiting state reads (they need the row itself)
QUEUE_COUNT_CAP = 1_000  # due jobs counted per queue and per concurrency key
QUEUES_LIMIT = 100  # queues the overview lists
KEYS_LIMIT = 50  # concurrency keys the overview lists
CHART_CAP = 50_000  # index entries a chart of the last hour reads at most
LATENCY_CAP = 20_000  # attempts the latency chart reads at most (from the rows themselves)
PERFORMANCE_CAP = 20_000  # attempts the performance page reads at most
ERRORS_CAP = 50_000  # discarded jobs the errors page groups at most
BULK_LIMIT = 1_000  # jobs one bulk action acts on at most
BULK_SCANS = 10  # filtered pages a bulk action reads at most to find them (SCAN_LIMIT rows each)
BATCHES_PAGE = 50
BATCH_COUNT_CAP = 1_000  # a listed batch's jobs counted at most
WINDOWS = {"15m": 900, "1h": 3_600, "24h": 86_400, "7d": 604_800}
ORDERS = ("newest", "oldest")

# The order of each state's list: its index's columns (the last one is the id, so the order is
# total) with their types, for the keyset cursor.
_ID = (("id", "uuid"),)
KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "all": _ID,
    "running": _ID,
    "succeeded": (("finished_at", "timestamptz"), ("id", "uuid")),
    "discarded": (("finished_at", "timestamptz"), ("id", "uuid")),
    "scheduled": (("scheduled_at", "timestamptz"), ("id", "uuid")),
    "retried": (("scheduled_at", "timestamptz"), ("id", "uuid")),
    "queued": (("priority", "integer"), ("scheduled_at", "timestamptz"), ("id", "uuid")),
}


@dataclass(frozen=True)
class Count:
    """A number of jobs: exact, at least (an exact count stopped at its cap), or estimated."""

    value: int
    kind: str = "exact"  # exact | at_least | estimate

    @property
    def label(self) -> str:
        if self.kind == "exact":
            return f"{self.value:,}"
        if self.kind == "at_least":
            return f"{self.value:,}+"
        return "≈" + humanize(self.value)

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "kind": self.kind, "label": self.label}


def humanize(value: int) -> str:
    """1234 -> 1.2k, 1234567 -> 1.2M."""
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if value >= size:
            text = f"{value / size:.1f}".removesuffix(".0")
            return text + suffix
    return str(value)


@dataclass(frozen=True)
class JobFilter:
    """The jobs list's filters, as the URL gives them."""

    state: str | None = None
    queue: str | None = None
    task: str | None = None
    label: str | None = None
    text: str | None = None
    order: str = "newest"

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in STATUSES:
            raise ValueError(f"state {self.state!r} is not one of {', '.join(STATUSES)}")
        if self.order not in ORDERS:
            raise ValueError(f"order {self.order!r} is not one of {', '.join(ORDERS)}")

    @property
    def narrowed(self) -> bool:
        """Whether a filter beyond the state is given (the list then scans, bounded)."""
        return any((self.queue, self.task, self.label, self.text))

    def params(self) -> dict[str, str | None]:
        """The filters as URL parameters (None: not given)."""
        return {
            "state": self.state,
            "queue": self.queue,
            "task": self.task,
            "label": self.label,
            "q": self.text,
            "order": self.order,
        }


@dataclass(frozen=True)
class JobPage:
    """One page of the jobs list."""

    jobs: list[Job]
    next_cursor: str | None  # the next page, or None at the end
    scan_limited: bool  # the page stopped after SCAN_LIMIT rows: more may match further on
    id_match: bool = False  # the text was a job's id: that job alone


@functools.lru_cache(maxsize=128)
def _rendered(template: str, source: str, state: str, order: str, after: bool) -> str:
    keys = KEYS[state]
    desc = order == "newest"
    order_sql = ", ".join(f"j.{column}{' DESC' if desc else ''}" for column, _ in keys)
    after_sql = "TRUE"
    if after:
        op = "<" if desc else ">"
        columns = ", ".join(f"j.{column}" for column, _ in keys)
        values = ", ".join(f"%(k{i})s::{kind}" for i, (_, kind) in enumerate(keys))
        # The leading column's bound alone lets an index on that column only (scheduled_at)
        # start its scan at the cursor.
        first, kind = keys[0]
        after_sql = f"({columns}) {op} ({values}) AND j.{first} {op}= %(k0)s::{kind}"
    text = template.replace("{source}", source)
    return text.replace("{order}", order_sql).replace("{after}", after_sql)


def _statement(db: Database, name: str, state: str, order: str, after: bool) -> str:
    source = db.sql(f"dashboard_source_{state}")
    return _rendered(db.sql(name), source, state, order, after)


def encode_cursor(state: str, order: str, row: dict[str, Any]) -> str:
    values = [state, order, *(_key_text(row[column]) for column, _ in KEYS[state])]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _key_text(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def decode_cursor(cursor: str, state: str, order: str) -> dict[str, Any]:
    """The keyset parameters of a cursor made by :func:`encode_cursor` for this state and
    order; ValueError for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error) as exc:
        raise ValueError("the cursor is not one this dashboard made") from exc
    keys = KEYS[state]
    if not isinstance(values, list) or values[:2] != [state, order]:
        raise ValueError("the cursor belongs to another list: start from the first page")
    if len(values) != 2 + len(keys):
        raise ValueError("the cursor is not one this dashboard made")
    params: dict[str, Any] = {}
    for i, ((_, kind), value) in enumerate(zip(keys, values[2:], strict=True)):
        try:
            if kind == "uuid":
                params[f"k{i}"] = uuid.UUID(str(value))
            elif kind == "timestamptz":
                params[f"k{i}"] = dt.datetime.fromisoformat(str(value))
            else:
                params[f"k{i}"] = int(value)
        except (TypeError, ValueError) as exc:
            raise ValueError("the cursor is not one this dashboard made") from exc
    return params


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _as_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


def jobs_page(
    db: Database,
    filters: JobFilter,
    cursor: str | None = None,
    *,
    limit: int = PAGE_SIZE,
    scan: int = SCAN_LIMIT,
) -> JobPage:
    """A page of jobs matching ``filters`` after ``cursor`` (see the module docstring)."""
    if filters.text and (job_id := _as_id(filters.text)) is not None:
        job = job_records.get(db, job_id, with_executions=False)
        if job is not None:
            return JobPage([job], None, False, id_match=True)
    state = filters.state or "all"
    params: dict[str, Any] = {
        "queue": filters.queue or None,
        "task": filters.task or None,
        "label": filters.label or None,
        "text": _like(filters.text) if filters.text else None,
        "limit": limit + 1,
        "scan": scan,
    }
    if cursor:
        params.update(decode_cursor(cursor, state, filters.order))
    page = _statement(db, "dashboard_jobs_page", state, filters.order, bool(cursor))
    rows = db.execute_text(page, params)
    jobs = [Job.from_row(row) for row in rows[:limit]]
    if len(rows) > limit:
        return JobPage(jobs, encode_cursor(state, filters.order, rows[limit - 1]), False)
    if not filters.narrowed:
        return JobPage(jobs, None, False)  # every row read matched: the list is complete
    end = _statement(db, "dashboard_jobs_scan_end", state, filters.order, bool(cursor))
    last = db.execute_text(end, params)
    if not last:
        return JobPage(jobs, None, False)
    return JobPage(jobs, encode_cursor(state, filters.order, last[0]), True)


def matching_ids(
    db: Database, filters: JobFilter, limit: int = BULK_LIMIT
) -> tuple[list[uuid.UUID], bool]:
    """The ids of up to ``limit`` jobs matching ``filters``, in the list's order, and whether
    that is all of them (at most BULK_SCANS filtered pages are read)."""
    found: list[uuid.UUID] = []
    cursor = None
    for _ in range(BULK_SCANS):
        page = jobs_page(db, filters, cursor, limit=limit - len(found))
        found.extend(job.id for job in page.jobs)
        if page.id_match or page.next_cursor is None:
            return found, True
        if len(found) >= limit:
            more = jobs_page(db, filters, page.next_cursor, limit=1)
            return found, not more.jobs and more.next_cursor is None
        cursor = page.next_cursor
    return found, False


def _estimate(db: Database, state: str) -> int:
    plan = db.execute(f"dashboard_estimate_{state}")[0]["QUERY PLAN"]
    return int(plan[0]["Plan"]["Plan Rows"])


def state_counts(db: Database) -> dict[str, Count]:
    """Jobs by state: exact through each state's partial index up to a cap (COUNT_CAP for
    running and discarded jobs, read index only; WAITING_COUNT_CAP for waiting ones, whose
    state needs the row), then the planner's estimate; succeeded (most of the history, no index
    of its own) exact only while the whole table is smaller than COUNT_CAP."""
    params = {"cap": COUNT_CAP, "waiting_cap": WAITING_COUNT_CAP}
    row = db.execute("dashboard_state_counts", params)[0]
    counts: dict[str, Count] = {}
    small = row["sampled"] < COUNT_CAP
    for state in STATUSES:
        cap = COUNT_CAP if state in ("running", "discarded") else WAITING_COUNT_CAP
        if state == "succeeded":
            counts[state] = (
                Count(row["succeeded"]) if small else Count(_estimate(db, state), "estimate")
            )
        elif row[state] >= cap:
            estimate = _estimate(db, state)
            counts[state] = (
                Count(estimate, "estimate") if estimate > row[state] else Count(cap, "at_least")
            )
        else:
            counts[state] = Count(row[state])
    counts["all"] = Count(row["sampled"]) if small else Count(_estimate(db, "all"), "estimate")
    return counts


@dataclass(frozen=True)
class Series:
    """Per-minute figures of the last hour; ``complete_since`` is set when the cap cut the
    read short: the figures before it are missing."""

    values: dict[dt.datetime, float]
    complete_since: dt.datetime | None


def _series(rows: Sequence[dict[str, Any]], column: str, cap: int) -> Series:
    values = {row["minute"]: float(row[column] or 0) for row in rows}
    read = sum(int(row["n"]) for row in rows)
    since = min((row["oldest"] for row in rows), default=None) if read >= cap else None
    return Series(values, since)


def charts(db: Database, cap: int = CHART_CAP) -> dict[str, Series]:
    """The overview's charts of the last hour, per minute: jobs enqueued, finished and
    discarded, and the average and longest wait of the attempts started (queue latency)."""
    latency_cap = min(cap, LATENCY_CAP)
    latency = db.execute("dashboard_chart_latency", {"cap": latency_cap})
    return {
        "enqueued": _series(db.execute("dashboard_chart_enqueued", {"cap": cap}), "n", cap),
        "finished": _series(db.execute("dashboard_chart_finished", {"cap": cap}), "n", cap),
        "discarded": _series(db.execute("dashboard_chart_discarded", {"cap": cap}), "n", cap),
        "latency_avg": _series(latency, "avg", latency_cap),
        "latency_max": _series(latency, "max", latency_cap),
    }


def queues(db: Database) -> list[dict[str, Any]]:
    """Queues with waiting or running jobs: due jobs (counted up to QUEUE_COUNT_CAP), running
    jobs, and how long the next job in claim order has been due."""
    rows = db.execute("dashboard_queues", {"cap": QUEUE_COUNT_CAP, "limit": QUEUES_LIMIT})
    for row in rows:
        capped = row.pop("keyed_capped") or row["queued"] >= QUEUE_COUNT_CAP
        row["queued"] = Count(row["queued"], "at_least" if capped else "exact")
    return rows


def concurrency_keys(db: Database) -> list[dict[str, Any]]:
    """Concurrency keys in use, with their limits, running and waiting jobs."""
    rows = db.execute("dashboard_concurrency", {"cap": QUEUE_COUNT_CAP, "limit": KEYS_LIMIT})
    for row in rows:
        row["waiting"] = _capped(row["waiting"], QUEUE_COUNT_CAP)
    return rows


@dataclass(frozen=True)
class Performance:
    """Per task over a window: attempts, failures, duration percentiles (seconds)."""

    tasks: list[dict[str, Any]]
    total: dict[str, Any] | None
    complete_since: dt.datetime | None  # the cap cut the window short: figures since then


def performance(db: Database, seconds: int, cap: int = PERFORMANCE_CAP) -> Performance:
    rows = db.execute("dashboard_performance", {"seconds": seconds, "cap": cap})
    total = next((row for row in rows if row["task_name"] is None), None)
    tasks = [row for row in rows if row["task_name"] is not None]
    for row in [*tasks, *([total] if total else [])]:
        finished = row["attempts"] - row["unfinished"]
        row["failure_rate"] = row["failed"] / finished if finished else 0.0
    tasks.sort(key=lambda row: (-row["attempts"], row["task_name"]))
    capped = total is not None and total["attempts"] >= cap
    return Performance(tasks, total, total["oldest"] if capped and total else None)


@dataclass(frozen=True)
class ErrorGroups:
    groups: list[dict[str, Any]]
    read: int  # discarded jobs grouped
    capped: bool  # ERRORS_CAP of them: older ones are not counted


def errors(db: Database, cap: int = ERRORS_CAP) -> ErrorGroups:
    """Discarded jobs grouped by error class, most frequent first."""
    rows = db.execute("dashboard_errors", {"cap": cap})
    read = sum(int(row["jobs"]) for row in rows)
    return ErrorGroups(rows, read, read >= cap)


def error_class_ids(db: Database, error_class: str, limit: int = BULK_LIMIT) -> list[uuid.UUID]:
    """The newest discarded jobs of one error class, at most ``limit``."""
    params = {"error_class": error_class, "limit": limit, "cap": ERRORS_CAP}
    return [row["id"] for row in db.execute("dashboard_errors_ids", params)]


def batches_page(
    db: Database, after: tuple[dt.datetime, uuid.UUID] | None = None, limit: int = BATCHES_PAGE
) -> list[dict[str, Any]]:
    """Batches, newest first, after ``after`` (a batch's created_at and id)."""
    params = {
        "after_at": after[0] if after else None,
        "after_id": after[1] if after else None,
        "limit": limit,
        "cap": BATCH_COUNT_CAP,
    }
    rows = db.execute("dashboard_batches", params)
    for row in rows:
        for name in ("jobs", "unfinished", "discarded"):
            row[name] = _capped(row[name], BATCH_COUNT_CAP)
    return rows


def _capped(value: int, cap: int) -> Count:
    return Count(min(value, cap), "at_least" if value >= cap else "exact")

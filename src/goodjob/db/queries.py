"""Loads the named statements of ``queries.sql`` and qualifies their tables with the schema."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^-- name: (\w+)\n((?:--.*\n)*)", re.MULTILINE)
# Bare table and function names; an index name such as goodjob_jobs_dequeue_any does not match.
_TABLE = re.compile(
    r"(?<![\w.\"])(goodjob_(?:jobs|executions|processes|settings|batches|migrations|lock_key"
    r"|concurrency|running_jobs))\b(?!_)"
)

# The job states of GoodJob's dashboard, derived from the row so they never disagree with it.
STATUS_SQL = """CASE
        WHEN j.finished_at IS NOT NULL AND j.error IS NULL THEN 'succeeded'
        WHEN j.finished_at IS NOT NULL THEN 'discarded'
        WHEN j.locked_by_id IS NOT NULL THEN 'running'
        WHEN j.error IS NOT NULL THEN 'retried'
        WHEN j.scheduled_at > now() THEN 'scheduled'
        ELSE 'queued'
    END"""

# Each state as a predicate on ``j`` (the dashboard's lists and counts): the same cases as
# STATUS_SQL, one at a time, written out so the planner can match a state's partial index.
# Statements say ``{is:discarded}``.
STATE_SQL = {
    "succeeded": "j.finished_at IS NOT NULL AND j.error IS NULL",
    "discarded": "j.finished_at IS NOT NULL AND j.error IS NOT NULL",
    "running": "j.finished_at IS NULL AND j.locked_by_id IS NOT NULL",
    "retried": "j.finished_at IS NULL AND j.locked_by_id IS NULL AND j.error IS NOT NULL",
    "scheduled": (
        "j.finished_at IS NULL AND j.locked_by_id IS NULL AND j.error IS NULL"
        " AND j.scheduled_at > now()"
    ),
    "queued": (
        "j.finished_at IS NULL AND j.locked_by_id IS NULL AND j.error IS NULL"
        " AND j.scheduled_at <= now()"
    ),
}
_STATE = re.compile(r"\{is:(\w+)\}")


def qualify(sql: str, schema: str) -> str:
    """Prefix goodjob's tables and functions in ``sql`` with ``schema``."""
    return _TABLE.sub(lambda m: f'"{schema}".{m.group(1)}', sql)


def read_sql(name: str) -> str:
    """A packaged SQL file (``schema.sql``, ``migrations/0001_initial.sql``)."""
    return resources.files("goodjob.db").joinpath(name).read_text()


@cache
def _parse() -> dict[str, str]:
    text = read_sql("queries.sql")
    matches = list(_HEADER.finditer(text))
    statements: dict[str, str] = {}
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following else len(text)
        body = text[match.end() : end].strip()
        body = _STATE.sub(lambda m: f"({STATE_SQL[m.group(1)]})", body)
        statements[match.group(1)] = body.replace("{status}", STATUS_SQL)
    return statements


@cache
def query(name: str, schema: str) -> str:
    """The statement ``name``, tagged for pg_stat_activity and qualified with ``schema``."""
    try:
        body = _parse()[name]
    except KeyError:
        raise KeyError(f"no SQL statement named {name!r} in queries.sql") from None
    return f"/* goodjob:{name} */ " + qualify(body, schema)


def names() -> list[str]:
    """The name of every statement in queries.sql, in file order."""
    return list(_parse())

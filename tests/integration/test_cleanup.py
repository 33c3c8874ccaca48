"""Cleanup of preserved records: exactly the old finished jobs go, with their executions."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys

from goodjob import GoodJob
from goodjob.records import jobs as job_records
from tests.helpers import sql


def age(url: str, job_ids: list[object], days: int) -> None:
    """Pretend these jobs finished ``days`` ago."""
    sql(
        url,
        "UPDATE goodjob_jobs SET finished_at = now() - make_interval(days => %s)"
        " WHERE id = ANY(%s)",
        [days, job_ids],
    )


def remaining(url: str) -> tuple[set[str], int]:
    names = {r[0] for r in sql(url, "SELECT arguments->'args'->>0 FROM goodjob_jobs")}
    return names, int(sql(url, "SELECT count(*) FROM goodjob_executions")[0][0])


def populate(gj: GoodJob, url: str) -> None:
    @gj.task(name="ok")
    def ok(tag: str) -> None: ...

    @gj.task(name="bad")
    def bad(tag: str) -> None:
        raise ValueError

    old = [ok.enqueue(f"old-ok-{i}").id for i in range(7)] + [bad.enqueue("old-bad").id]
    ok.enqueue("new-ok")
    ok.using(wait=3600).enqueue("old-unfinished")
    gj.performer().drain()
    age(url, old, 30)
    # an unfinished job however old is never cleaned up
    sql(
        url,
        "UPDATE goodjob_jobs SET created_at = now() - interval '60 days' WHERE finished_at IS NULL",
    )


def test_cleanup_deletes_old_finished_jobs_in_chunks(gj: GoodJob, database_url: str) -> None:
    populate(gj, database_url)
    deleted = job_records.cleanup(
        gj.database, older_than=14 * 86400, include_discarded=True, chunk=3
    )
    assert deleted == 8
    names, executions = remaining(database_url)
    assert names == {"new-ok", "old-unfinished"}
    assert executions == 1  # new-ok's; the deleted jobs' executions went with them


def test_cleanup_can_keep_discarded_jobs(make_app: type[GoodJob], database_url: str) -> None:
    gj = make_app(cleanup_discarded_jobs=False)
    populate(gj, database_url)
    assert gj.cleanup_preserved_jobs(dt.timedelta(days=14)) == 7
    assert remaining(database_url)[0] == {"new-ok", "old-unfinished", "old-bad"}
    assert gj.cleanup_preserved_jobs(0, include_discarded=True) == 2


def test_cleanup_command(gj: GoodJob, database_url: str) -> None:
    populate(gj, database_url)
    env = {**os.environ, "GOODJOB_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "goodjob", "cleanup-preserved-jobs"]
    out = subprocess.run(
        [*command, "--before-seconds-ago", str(14 * 86400), "--keep-discarded"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "deleted 7 jobs" in out.stdout
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "deleted 1 job" in out.stdout  # the default age (14 days) and discarded ones too
    assert remaining(database_url)[0] == {"new-ok", "old-unfinished"}


def test_jobs_and_retry_commands(gj: GoodJob, database_url: str) -> None:
    @gj.task(name="bad")
    def bad() -> None:
        raise ValueError("broken")

    job = bad.enqueue()
    gj.performer().drain()
    env = {**os.environ, "GOODJOB_DATABASE_URL": database_url, "COLUMNS": "200"}
    listing = subprocess.run(
        [sys.executable, "-m", "goodjob", "jobs", "--status", "discarded"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert str(job.id) in listing.stdout
    assert "ValueError: broken" in listing.stdout
    retried = subprocess.run(
        [sys.executable, "-m", "goodjob", "retry", str(job.id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"job {job.id} is retried" in retried.stdout
    assert gj.job(job.id).finished_at is None


def test_the_jobs_command_lists_as_many_as_gj_jobs_by_default(
    gj: GoodJob, database_url: str
) -> None:
    @gj.task(name="noop")
    def noop(n: int) -> None: ...

    gj.enqueue_all(noop.prepare(n) for n in range(job_records.LIST_LIMIT + 5))
    listing = subprocess.run(
        [sys.executable, "-m", "goodjob", "jobs"],
        env={**os.environ, "GOODJOB_DATABASE_URL": database_url, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listed = re.findall(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", listing.stdout
    )
    assert job_records.LIST_LIMIT == 100
    assert listed == [str(job.id) for job in gj.jobs()]
    assert len(listed) == 100

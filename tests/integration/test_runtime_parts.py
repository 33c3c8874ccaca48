"""Runtime parts in-process: background cleanup, the ASGI lifespan, `goodjob start`'s flags."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from click.testing import CliRunner

from goodjob import GoodJob
from goodjob.cli.main import main
from goodjob.cli.options import DATABASE_SETTINGS
from goodjob.config import Settings, env_name
from goodjob.contrib.asgi import GoodJobLifespan, lifespan
from goodjob.records import processes
from tests.helpers import sql, wait_until


def test_background_cleanup_deletes_old_preserved_jobs_after_n_jobs(
    make_app: Any, database_url: str
) -> None:
    gj: GoodJob = make_app(
        poll_interval=30,
        cleanup_interval_jobs=5,
        cleanup_interval_seconds=0,
        cleanup_preserved_jobs_before_seconds_ago=0,
    )

    @gj.task
    def noop() -> None:
        pass

    gj.start()
    try:
        first = gj.enqueue_all(noop.prepare() for _ in range(10))
        ids = [job.id for job in first]
        unfinished = "SELECT count(*) FROM goodjob_jobs WHERE finished_at IS NULL AND id = ANY(%s)"
        wait_until(lambda: sql(database_url, unfinished, (ids,)) == [(0,)], timeout=10)
        # Five more recorded jobs trigger a run that starts after the first ten finished.
        gj.enqueue_all(noop.prepare() for _ in range(5))
        wait_until(lambda: not any(_exists(database_url, i) for i in ids), timeout=10)
        assert gj._capsule.cleaner.runs >= 1
        left = sql(
            database_url, "SELECT count(*) FROM goodjob_executions WHERE job_id = ANY(%s)", (ids,)
        )
        assert left == [(0,)]
    finally:
        gj.shutdown()


def _exists(url: str, job_id: Any) -> bool:
    return bool(sql(url, "SELECT 1 FROM goodjob_jobs WHERE id = %s", (job_id,)))


def test_cleanup_keeps_unfinished_recent_and_discarded_when_asked(
    make_app: Any, database_url: str
) -> None:
    gj: GoodJob = make_app(cleanup_discarded_jobs=False)

    @gj.task
    def ok() -> None:
        pass

    @gj.task
    def boom() -> None:
        raise ValueError("no")

    ok.enqueue()
    boom.enqueue()
    gj.perform_inline()
    waiting = ok.using(wait=3600).enqueue()
    assert gj.cleanup_preserved_jobs(3600) == 0  # both finished just now
    assert gj.cleanup_preserved_jobs(0) == 1  # the succeeded one only
    left = {r[0] for r in sql(database_url, "SELECT task_name FROM goodjob_jobs")}
    assert left == {boom.name, ok.name}
    assert gj.job(waiting.id).status == "scheduled"


def test_asgi_lifespan_runs_a_worker_for_the_app_lifetime(make_app: Any) -> None:
    gj: GoodJob = make_app(poll_interval=30)
    ran: list[int] = []

    @gj.task
    def mark(n: int) -> None:
        ran.append(n)

    async def scenario() -> None:
        async with lifespan(gj)(None):
            assert len(processes.all_processes(gj.database)) == 1
            await mark.aenqueue(1)
            while not ran:
                await asyncio.sleep(0.01)
        assert processes.all_processes(gj.database) == []

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert ran == [1]


def test_asgi_middleware_answers_the_lifespan_protocol(make_app: Any) -> None:
    gj: GoodJob = make_app(poll_interval=30)
    sent: list[str] = []
    inbox = ["lifespan.startup", "lifespan.shutdown"]
    seen_rows: list[int] = []

    async def receive() -> dict[str, Any]:
        if sent:  # started: look at the process table before asking to stop
            seen_rows.append(len(await asyncio.to_thread(processes.all_processes, gj.database)))
        return {"type": inbox.pop(0)}

    async def send(message: Any) -> None:
        sent.append(message["type"])

    asyncio.run(GoodJobLifespan(None, gj)({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert seen_rows == [1]
    assert processes.all_processes(gj.database) == []


def test_start_has_a_flag_naming_the_variable_for_every_setting() -> None:
    result = CliRunner().invoke(main, ["start", "--help"], terminal_width=200)
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    for f in dataclasses.fields(Settings):
        assert f"--{f.name.replace('_', '-')}" in help_text, f.name
        assert env_name(f.name) in help_text, f.name
    assert "--processes" in help_text
    assert "--app" in help_text


@pytest.mark.parametrize(
    "command", ["migrate", "processes", "jobs", "retry", "cleanup-preserved-jobs"]
)
def test_database_commands_have_the_database_flags(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    for name in DATABASE_SETTINGS:
        assert f"--{name.replace('_', '-')}" in help_text, name
        assert env_name(name) in help_text, name

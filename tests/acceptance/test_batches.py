"""Batches with real worker processes (issue 16): each callback enqueued exactly once, with a
worker killed (SIGKILL) while the batches drain."""

from __future__ import annotations

import signal
import textwrap

from goodjob import Batch, GoodJob
from tests.acceptance.conftest import Workers
from tests.helpers import sql, wait_until

BATCH_TASKS = textwrap.dedent(
    '''
    """Batch tasks for the acceptance tests (written by tests/acceptance/test_batches.py)."""
    import os
    import pathlib
    import time

    from goodjob import Batch, GoodJob

    gj = GoodJob()
    OUT = pathlib.Path(os.environ["GJ_TEST_OUT"])


    class Boom(Exception):
        pass


    @gj.task(name="part", discard_on=Boom)
    def part(batch: int, n: int, fail: bool) -> None:
        time.sleep(0.003)
        if fail:
            raise Boom(f"batch {batch} job {n}")


    @gj.task(name="done", queue="callbacks")
    def done(batch: Batch, event: str) -> None:
        with open(OUT / "callbacks.log", "a") as log:
            log.write(f"{batch.id} {event} {batch.description}\\n")
    '''
)
BATCHES = 100
JOBS = 50


def client(url: str) -> GoodJob:
    gj = GoodJob(url)

    @gj.task(name="part")
    def part(batch: int, n: int, fail: bool) -> None: ...

    @gj.task(name="done", queue="callbacks")
    def done(batch: Batch, event: str) -> None: ...

    return gj


def test_100_batches_drained_by_3_workers_one_killed_run_each_callback_once(
    workers: Workers, database_url: str
) -> None:
    """Every tenth batch has a failing job: it gets on_discard and on_finish, not on_success."""
    gj = client(database_url)
    part, done = gj.tasks["part"], gj.tasks["done"]
    failing = set()
    try:
        for b in range(BATCHES):
            with gj.batch(
                on_finish=done, on_success=done, on_discard=done, description=str(b)
            ) as batch:
                gj.enqueue_all([part.prepare(b, n, b % 10 == 0 and n == 7) for n in range(JOBS)])
            if b % 10 == 0:
                failing.add(batch.id)
        (workers.root / "gjbatches.py").write_text(BATCH_TASKS)
        procs = [workers.start("--max-threads", "10", app="gjbatches:gj") for _ in range(3)]

        def finished_jobs() -> int:
            return sql(
                database_url,
                "SELECT count(*) FROM goodjob_jobs WHERE batch_id IS NOT NULL"
                " AND finished_at IS NOT NULL",
            )[0][0]

        wait_until(lambda: finished_jobs() >= BATCHES * JOBS // 3, timeout=60, interval=0.05)
        procs[0].send_signal(signal.SIGKILL)  # midway, with jobs and completions in flight
        procs[0].wait(10)
        wait_until(
            lambda: all(b.status == "finished" for b in gj.batches(limit=BATCHES)),
            timeout=90,
            interval=0.2,
            message="every batch to finish",
        )
        # Retried, the failing batches reopen; their job fails again, and each of their
        # callbacks runs once more (on_discard too: the retry cleared discarded_at).
        assert sum(gj.batch_by_id(batch_id).retry() for batch_id in failing) == len(failing)
        wait_until(
            lambda: all(b.status == "finished" for b in gj.batches(limit=BATCHES)),
            timeout=60,
            interval=0.2,
            message="the retried batches to finish again",
        )
    finally:
        gj.close()

    batches = {
        row[0]: row[1:]
        for row in sql(
            database_url,
            "SELECT id, discarded_at IS NOT NULL, finished_at IS NOT NULL FROM goodjob_batches",
        )
    }
    assert len(batches) == BATCHES
    assert {batch_id for batch_id, (discarded, _) in batches.items() if discarded} == failing
    # Enqueued exactly once: one callback job per batch and event, no more, no fewer.
    enqueued = sql(
        database_url,
        "SELECT batch_callback_id, arguments->'args'->>1, count(*) FROM goodjob_jobs"
        " WHERE batch_callback_id IS NOT NULL GROUP BY 1, 2",
    )
    expected = {
        (batch_id, event)
        for batch_id in batches
        for event in (("discard", "finish") if batch_id in failing else ("finish", "success"))
    }
    assert {(batch_id, event) for batch_id, event, _ in enqueued} == expected
    # Once per opening: twice for the retried batches, once for the others.
    assert {(b, e): n for b, e, n in enqueued} == {
        (b, e): 2 if b in failing else 1 for b, e in expected
    }
    # And they ran (a callback interrupted by the kill runs again: at least once each).
    ran = {
        tuple(line.split()[:2]) for line in (workers.out / "callbacks.log").read_text().splitlines()
    }
    assert {(str(batch_id), event) for batch_id, event in expected} == ran
    # Every job of every batch finished exactly once.
    rows = sql(
        database_url,
        "SELECT count(*), count(DISTINCT j.id) FROM goodjob_executions e"
        " JOIN goodjob_jobs j ON j.id = e.job_id"
        " WHERE j.batch_id IS NOT NULL AND e.error_event IS DISTINCT FROM 'interrupted'",
    )
    retried = len(failing)  # their failing job ran once more
    assert rows == [(BATCHES * JOBS + retried, BATCHES * JOBS)]

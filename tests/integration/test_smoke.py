"""End to end in one process: enqueue, claim, perform, record."""

from __future__ import annotations

from goodjob import GoodJob


def test_enqueue_perform_and_read_back(gj: GoodJob) -> None:
    @gj.task
    def add(a: int, b: int) -> int:
        return a + b

    job = add.enqueue(2, 3)
    assert gj.job(job.id).status == "queued"
    assert gj.perform_inline() == 1
    done = gj.job(job.id)
    assert done.status == "succeeded"
    assert done.result == 5
    assert [e.attempt for e in done.executions] == [1]
    assert done.executions[0].finished_at is not None

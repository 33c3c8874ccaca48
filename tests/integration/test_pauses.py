"""Pauses by queue, task and label (issue 14): held in the claim, at once, in every process."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from goodjob import ConfigurationError, GoodJob, current_job
from tests.helpers import wait_until


def _app(make_app: Any) -> tuple[GoodJob, dict[str, float]]:
    gj: GoodJob = make_app(poll_interval=30)
    started: dict[str, float] = {}

    @gj.task(name="mark")
    def mark(name: str) -> None:
        started[name] = time.monotonic()

    @gj.task(name="other")
    def other(name: str) -> None:
        started[name] = time.monotonic()

    return gj, started


@pytest.mark.parametrize(
    ("pause", "held", "free"),
    [
        ({"queue": "mail"}, {"queue": "mail"}, {"queue": "default"}),
        ({"task": "other"}, {}, {}),
        ({"label": "email"}, {"labels": ["email", "x"]}, {"labels": ["x"]}),
    ],
    ids=["queue", "task", "label"],
)
def test_paused_jobs_wait_while_others_run_and_start_at_once_when_unpaused(
    make_app: Any, pause: dict[str, str], held: dict[str, Any], free: dict[str, Any]
) -> None:
    gj, started = _app(make_app)
    gj.pause(**pause)
    task = gj.tasks["other"] if "task" in pause else gj.tasks["mark"]
    gj.start()
    try:
        held_jobs = [task.using(**held).enqueue(f"held{n}") for n in range(3)]
        free_jobs = [gj.tasks["mark"].using(**free).enqueue(f"free{n}") for n in range(3)]
        wait_until(lambda: all(gj.job(j.id).status == "succeeded" for j in free_jobs))
        gj.tracker.renew()  # a sweep and a heartbeat: time passes, the paused jobs still wait
        assert [gj.job(j.id).status for j in held_jobs] == ["queued"] * 3
        assert gj.paused()[next(iter(pause))] == [next(iter(pause.values()))]
        unpaused_at = time.monotonic()
        assert gj.unpause(**pause) is True
        # Polls are 30 s apart: the unpause woke the workers itself.
        wait_until(lambda: all(gj.job(j.id).status == "succeeded" for j in held_jobs), timeout=5)
    finally:
        gj.shutdown()
    assert max(started[f"held{n}"] for n in range(3)) - unpaused_at < 1.0
    assert gj.paused() == {"queue": [], "task": [], "label": []}
    assert gj.unpause(**pause) is False


def test_a_running_job_finishes_when_its_queue_is_paused(make_app: Any) -> None:
    gj: GoodJob = make_app(poll_interval=30)
    inside, release = threading.Event(), threading.Event()

    @gj.task(queue="mail")
    def long() -> None:
        inside.set()
        release.wait(10)

    gj.start()
    try:
        job = long.enqueue()
        assert inside.wait(10)
        gj.pause(queue="mail")
        waiting = long.enqueue()
        release.set()
        wait_until(lambda: gj.job(job.id).status == "succeeded")
        assert gj.job(waiting.id).status == "queued"
    finally:
        gj.unpause(queue="mail")
        gj.shutdown()


def test_a_running_job_sees_its_labels(gj: GoodJob) -> None:
    seen: list[tuple[str, ...]] = []

    @gj.task(labels=["email"])
    def send() -> None:
        job = current_job()
        assert job is not None
        seen.append(job.labels)

    send.using(labels=["email", "vip"]).enqueue()
    gj.perform_inline()
    assert seen == [("email", "vip")]


def test_a_pause_names_one_thing(gj: GoodJob) -> None:
    with pytest.raises(ConfigurationError, match="name one of"):
        gj.pause()
    with pytest.raises(ConfigurationError, match="name one of"):
        gj.pause(queue="a", label="b")
    with pytest.raises(ConfigurationError, match="not valid"):
        gj.pause(queue="")

"""Acceptance fixtures: real ``goodjob start`` processes on a tasks module written to tmp_path.

The tasks write marker files into ``$GJ_TEST_OUT`` so a test can see, from outside, which
process ran which attempt and when. Every process a test starts is SIGKILLed at teardown if it
is still alive, before the database fixture checks for leaked advisory locks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from goodjob import GoodJob

TASKS = textwrap.dedent(
    '''
    """Tasks for the acceptance tests (written by tests/acceptance/conftest.py)."""
    import os
    import pathlib
    import time

    from goodjob import GoodJob, current_job

    gj = GoodJob()
    OUT = pathlib.Path(os.environ["GJ_TEST_OUT"])


    def _mark(name: str, what: str) -> None:
        job = current_job()
        path = OUT / f"{name}.{job.attempt}.{what}"
        # Written aside, then renamed: a test polling for the file never reads it half-written.
        aside = OUT / f".{path.name}.tmp"
        aside.write_text(f"{os.getpid()} {time.time()}")
        aside.rename(path)


    @gj.task(name="crashy")
    def crashy(name: str) -> int:
        """The first attempt hangs (to be killed); later ones succeed."""
        _mark(name, "started")
        if current_job().attempt == 1:
            time.sleep(600)
        _mark(name, "done")
        return os.getpid()


    @gj.task(name="sleepy")
    def sleepy(name: str, seconds: float) -> int:
        _mark(name, "started")
        time.sleep(seconds)
        _mark(name, "done")
        return os.getpid()


    @gj.task(name="mark")
    def mark(name: str) -> int:
        _mark(name, "started")
        return os.getpid()


    @gj.task(name="count")
    def count(n: int) -> None:
        with open(OUT / "count.log", "a") as log:
            log.write(f"{n}\\n")
    '''
)


@dataclass
class Workers:
    """Starts ``goodjob start`` processes against the test database."""

    root: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.root / "out"

    def start(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        new_session: bool = False,
        app: str = "gjtasks:gj",
    ) -> subprocess.Popen[bytes]:
        log = open(self.root / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "goodjob", "start", "--app", app, *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def run(
        self, *args: str, timeout: float = 30, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a goodjob command to completion (for the CLI's error paths)."""
        return subprocess.run(
            [sys.executable, "-m", "goodjob", *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.root / f"worker-{self.procs.index(proc)}.log").read_text()

    def marker(self, name: str) -> list[str]:
        return sorted(p.name for p in self.out.glob(f"{name}.*"))

    def marker_data(self, filename: str) -> tuple[int, float]:
        pid, at = (self.out / filename).read_text().split()
        return int(pid), float(at)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(10)


CRON_TASKS = textwrap.dedent(
    '''
    """A cron app for the acceptance tests: its entries come from $GJ_CRON (JSON)."""
    import json
    import os
    import pathlib

    from goodjob import GoodJob, current_job

    OUT = pathlib.Path(os.environ["GJ_TEST_OUT"])
    gj = GoodJob(cron=json.loads(os.environ.get("GJ_CRON", "{}")))


    @gj.task(name="tick")
    def tick(name: str) -> None:
        """Notes which job ran in which process (appends are atomic under PIPE_BUF)."""
        with open(OUT / f"{name}.log", "a") as log:
            log.write(f"{current_job().id} {os.getpid()}\\n")
    '''
)


def worker_env(root: Path, database_url: str) -> dict[str, str]:
    (root / "out").mkdir(exist_ok=True)
    (root / "gjtasks.py").write_text(TASKS)
    (root / "gjcron.py").write_text(CRON_TASKS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODJOB_")}
    env.update(
        GOODJOB_DATABASE_URL=database_url,
        GJ_TEST_OUT=str(root / "out"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def workers(tmp_path: Path, database_url: str) -> Iterator[Workers]:
    w = Workers(tmp_path, worker_env(tmp_path, database_url))
    yield w
    w.kill_all()


def client_app(database_url: str, **settings: Any) -> GoodJob:
    """An app that enqueues the tasks of ``gjtasks`` by name (without importing it)."""
    gj = GoodJob(database_url, **settings)
    for name, params in (
        ("crashy", "name"),
        ("sleepy", "name, seconds"),
        ("mark", "name"),
        ("count", "n"),
    ):
        namespace: dict[str, Any] = {}
        exec(f"def {name}({params}): pass", namespace)  # a stub with the same signature
        gj.task(name=name)(namespace[name])
    return gj


@pytest.fixture
def client(database_url: str) -> Iterator[GoodJob]:
    gj = client_app(database_url)
    yield gj
    gj.close()

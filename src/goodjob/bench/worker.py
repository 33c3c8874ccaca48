"""A stand-in worker process: goodjob's Performer in a plain thread loop.

Used by ``goodjob bench --worker performer`` (and when ``goodjob start`` is not available): N
threads each claim one job, run it and record it through :class:`goodjob.performer.Performer`;
one dedicated connection LISTENs and holds the process's advisory lock; one thread sweeps dead
processes every ``sweep_interval``. It is what the runtime does, without its cache, cron or
supervisor, so its figures are labelled ``performer-loop`` in the benchmark's output.

Run: ``GOODJOB_DATABASE_URL=... python -m goodjob.bench.worker --threads 5``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Sequence

from goodjob.bench.workload import gj
from goodjob.errors import Error
from goodjob.performer import Performer
from goodjob.records import processes

logger = logging.getLogger("goodjob.bench.worker")


class PerformerLoop:
    def __init__(self, threads: int, poll_interval: float, batch: int = 1) -> None:
        self.threads = threads
        self.batch = batch
        self.poll_interval = poll_interval
        self.stop = threading.Event()
        self.wake = threading.Condition()
        self.generation = 0
        self.performer = Performer(gj, shutdown=self.stop)

    def _notify_all(self) -> None:
        with self.wake:
            self.generation += 1
            self.wake.notify_all()

    def loop(self) -> None:
        while not self.stop.is_set():
            with self.wake:
                seen = self.generation
            try:
                claimed = self.performer.claim(self.batch)
            except Error:
                logger.exception("claim failed")
                self.stop.wait(1.0)
                continue
            if not claimed:
                with self.wake:
                    if self.generation == seen:
                        self.wake.wait(self.poll_interval)
                continue
            self.performer.complete([self.performer.perform(job) for job in claimed])

    def sweep(self) -> None:
        while not self.stop.wait(gj.settings.sweep_interval):
            with contextlib.suppress(Error):
                if processes.sweep(gj.database).released_jobs:
                    self._notify_all()

    def run(self) -> None:
        listener = gj.database.dedicated("notifier")
        listener.listen()
        with gj.tracker.register(with_advisory_lock=True, connection=listener):
            workers = [threading.Thread(target=self.loop) for _ in range(self.threads)]
            sweeper = threading.Thread(target=self.sweep, daemon=True)
            for thread in [*workers, sweeper]:
                thread.start()
            print(f"performer-loop worker {os.getpid()} ready", flush=True)
            while not self.stop.is_set():
                if listener.notifies(timeout=0.5):
                    self._notify_all()
            self._notify_all()
            for thread in workers:
                thread.join()
        listener.close()
        gj.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="goodjob bench: a Performer thread loop")
    parser.add_argument("--threads", type=int, default=gj.settings.max_threads)
    parser.add_argument("--poll-interval", type=float, default=gj.settings.poll_interval)
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="jobs per claim and per complete statement (a prototype of batched claiming)",
    )
    options = parser.parse_args(argv)
    loop = PerformerLoop(options.threads, options.poll_interval, options.batch)
    signal.signal(signal.SIGTERM, lambda *_: loop.stop.set())
    signal.signal(signal.SIGINT, lambda *_: loop.stop.set())
    loop.run()


if __name__ == "__main__":
    main()

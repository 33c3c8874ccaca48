"""Running a worker: one Capsule in this process, or N forked capsule processes (supervisor).

:func:`run_worker` is what ``goodjob start`` runs in each worker process: start the Capsule,
wait for SIGTERM/SIGINT (or the idle timeout), shut down gracefully; a second signal exits at
once (the advisory lock dies with the process, so other workers pick its jobs up within seconds).

:class:`Supervisor` (``--processes N``) forks N such processes, restarts one that dies
unexpectedly (with back-off when they die quickly), forwards signals, and exits once every child
has. The parent opens no database connection and runs no thread before forking: each child
builds its own pool and CapsuleTracker (fork safety: the child starts clean).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

from goodjob.probe import ProbeServer, SystemdNotifier

if TYPE_CHECKING:
    from goodjob.app import GoodJob
    from goodjob.runtime import Capsule

logger = logging.getLogger("goodjob.supervisor")

RESTART_BACKOFF_MAX = 10.0  # seconds between restarts of a child that keeps dying
QUICK_DEATH = 5.0  # a child dying within this many seconds of its start counts as crashing
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_worker(
    gj: GoodJob,
    *,
    probe: bool = True,
    status: mmap.mmap | None = None,
    slot: int = 0,
    parent: int | None = None,
) -> int:
    """Run one Capsule until a signal or the idle timeout; returns the exit code."""
    from goodjob.runtime import Capsule

    capsule = Capsule(gj)
    signals = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            logger.warning("second signal: exiting now")
            os._exit(1)
        logger.info("received %s: shutting down", signal.Signals(signum).name)
        capsule.stop_requested.set()

    for signum in SIGNALS:
        signal.signal(signum, on_signal)
    server: ProbeServer | None = None
    if probe and gj.settings.probe_port is not None:
        server = ProbeServer(
            gj.settings.probe_port,
            started=lambda: capsule.started and not capsule.stopped,
            connected=lambda: capsule.connected,
            host=gj.settings.probe_host,
            metrics=gj.metrics.exposition if gj.metrics is not None else None,
        )
        server.start()
    systemd = SystemdNotifier(connected=lambda: capsule.connected)
    try:
        capsule.start()
        systemd.ready()
        while not capsule.stop_requested.wait(0.5):
            if status is not None:
                _set_status(status, slot, capsule)
            if parent is not None and os.getppid() != parent:
                logger.warning("the supervisor is gone: shutting down")
                capsule.stop_requested.set()
        if status is not None:
            status[slot] = 0
        systemd.stopping()
        capsule.shutdown()
    finally:
        if server is not None:
            server.stop()
        gj.close()
    return 0


def _set_status(status: mmap.mmap, slot: int, capsule: Capsule) -> None:
    status[slot] = 2 if capsule.connected else 1


class Supervisor:
    """Forks ``processes`` workers and keeps that many running until told to stop."""

    def __init__(self, gj: GoodJob, processes: int) -> None:
        self.gj = gj
        self.processes = processes
        self.children: dict[int, int] = {}  # pid -> slot
        self.started_at: dict[int, float] = {}
        self.failures = [0] * processes
        self.stopping = False
        self.signals = 0
        # One byte per child, shared across fork: 0 down, 1 started, 2 started and connected.
        self.status = mmap.mmap(-1, processes)
        self.pid = os.getpid()

    def run(self) -> int:
        for signum in SIGNALS:
            signal.signal(signum, self._on_signal)
        self.gj.close()  # no connection or pool thread may cross the fork
        server: ProbeServer | None = None
        systemd = SystemdNotifier(connected=self._all_connected)
        for slot in range(self.processes):
            self._spawn(slot)
        if self.gj.settings.probe_port is not None:
            server = ProbeServer(
                self.gj.settings.probe_port,
                started=self._all_started,
                connected=self._all_connected,
                host=self.gj.settings.probe_host,
                # The supervisor runs no jobs: the database-wide figures only.
                metrics=self.gj.metrics.exposition if self.gj.metrics is not None else None,
            )
            server.start()
        ready_sent = False
        exit_code = 0
        while self.children:
            if not ready_sent and self._all_started():
                systemd.ready()
                ready_sent = True
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.1)
                continue
            slot = self.children.pop(pid)
            self.status[slot] = 0
            code = os.waitstatus_to_exitcode(wait_status)
            if self.stopping:
                if code != 0:
                    exit_code = 1
                continue
            if code == 0:
                # A clean exit not asked for by us is the idle timeout: do not restart.
                logger.info("worker %d exited", pid)
                continue
            lived = time.monotonic() - self.started_at.pop(pid, 0.0)
            self.failures[slot] = self.failures[slot] + 1 if lived < QUICK_DEATH else 0
            delay = min(RESTART_BACKOFF_MAX, 0.5 * (2 ** self.failures[slot]) - 0.5)
            logger.warning(
                "worker %d died (exit %d); restarting in %.1fs",
                pid,
                code,
                delay,
                extra={"action": "restart"},
            )
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.1)
            if not self.stopping:
                self._spawn(slot)
        systemd.stopping()
        if server is not None:
            server.stop()
        return exit_code

    def _spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for signum in SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                # A group of its own: Ctrl-C in a terminal signals the whole foreground group,
                # and the child would count the supervisor's forwarded copy as a second signal
                # (exit at once). The supervisor forwards every signal itself.
                os.setpgid(0, 0)
                # Only the supervisor talks to systemd (NotifyAccess=main ignores children).
                os.environ.pop("NOTIFY_SOCKET", None)
                self.gj.database.reset_after_fork()
                code = run_worker(
                    self.gj, probe=False, status=self.status, slot=slot, parent=self.pid
                )
            except BaseException:
                logger.exception("worker failed")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = slot
        self.started_at[pid] = time.monotonic()
        logger.info("started worker %d", pid, extra={"action": "spawn", "pid": pid})

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)  # a second signal reaches the children as their second

    def _all_started(self) -> bool:
        return not self.stopping and all(self.status[i] >= 1 for i in range(self.processes))

    def _all_connected(self) -> bool:
        return not self.stopping and all(self.status[i] == 2 for i in range(self.processes))

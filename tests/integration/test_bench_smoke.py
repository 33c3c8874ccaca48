"""``goodjob bench`` end to end with tiny sizes: it runs every scenario and reports them.

Only the report's shape and the exactly-once counts are asserted; timing figures never are.
Two rounds, not ``--quick``'s one, so that the history rounds share their seeded database and
each must count only its own jobs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

SCENARIOS = {
    "enqueue_single",
    "enqueue_bulk",
    "drain_default",
    "drain_best",
    "latency",
    "idle_worker",
    "history",
    "recovery",
}
JOBS = 200
ROUNDS = 2


@pytest.mark.timeout(300)
def test_bench_quick_reports_every_scenario(database_url: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "goodjob",
            "bench",
            "--database-url",
            database_url,
            "--jobs",
            str(JOBS),
            "--quick",
            "--rounds",
            str(ROUNDS),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines: list[dict[str, Any]] = [
        json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")
    ]
    by_name = {line["scenario"]: line for line in lines}
    assert set(by_name) == SCENARIOS | {"machine"}
    assert len(lines) == len(by_name), "one JSON line per scenario"

    machine = by_name["machine"]
    assert machine["fsync"] == "on"
    assert machine["synchronous_commit"] == "on"
    assert machine["server_version"]
    assert machine["cores"] >= 1

    for name in ("drain_default", "drain_best", "history"):
        goodjob = by_name[name]["goodjob"]
        runs = 1 if name == "drain_best" else ROUNDS
        assert goodjob["jobs"] == JOBS
        assert goodjob["executions"] == JOBS * runs, f"{name}: every job ran exactly once"
        assert goodjob["exactly_once"] is True
        assert goodjob["jobs_per_s"] > 0
        assert goodjob.get("rounds", 1) == runs
        assert len(goodjob.get("rounds_jobs_per_s", [0])) == runs
    for name in ("drain_default", "drain_best"):
        assert by_name[name]["baseline"]["exactly_once"] is True
        assert by_name[name]["baseline"]["rounds"] == ROUNDS
        assert by_name[name]["ratio"] is not None
    history = by_name["history"]
    assert history["baseline"]["rounds"] == ROUNDS
    assert (
        history["baseline"]["empty_table_jobs_per_s"]
        == (by_name["drain_default"]["goodjob"]["jobs_per_s"])
    )
    assert history["ratio"] is not None
    single = by_name["enqueue_single"]
    for side in ("goodjob", "baseline"):
        assert single[side]["jobs"] == JOBS
        assert single[side]["rounds"] == ROUNDS  # 200 jobs in two blocks per side
        assert len(single[side]["rounds_jobs_per_s"]) == ROUNDS
        assert by_name["enqueue_bulk"][side]["rounds"] == 1  # one chunk of 200: one block
    assert by_name["recovery"]["goodjob"]["exactly_once"] is True
    assert by_name["recovery"]["goodjob"]["runs"] == 1
    assert by_name["latency"]["goodjob"]["jobs"] == by_name["latency"]["baseline"]["jobs"] == 50
    for line in lines[1:]:
        assert isinstance(line["met"], bool)
        assert line["target"]

    # The table: a header and one row per scenario, after the JSON lines.
    table = done.stdout[done.stdout.rindex("}") :]
    assert "goodjob bench" in table
    assert "ratio" in table
    assert f"median of {ROUNDS} rounds" in table
    for name in SCENARIOS:
        assert name in table

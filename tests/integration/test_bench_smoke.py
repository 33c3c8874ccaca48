"""``goodjob bench`` end to end with tiny sizes: it runs every scenario and reports them.

Only the report's shape and the exactly-once counts are asserted; timing figures never are.
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
        assert goodjob["jobs"] == JOBS
        assert goodjob["executions"] == JOBS, f"{name}: every job ran exactly once"
        assert goodjob["exactly_once"] is True
        assert goodjob["jobs_per_s"] > 0
    for name in ("drain_default", "drain_best"):
        assert by_name[name]["baseline"]["exactly_once"] is True
        assert by_name[name]["ratio"] is not None
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
    for name in SCENARIOS:
        assert name in table

"""``goodjob bench --scenario dashboard`` end to end at a tiny size, against a stub dashboard.

The real dashboard is built on its own branch (issue 17); :mod:`tests.integration.dashboard_stub`
stands in for it with the same URLs. Only the report's shape is asserted, never a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = 2_000
REQUESTS = 3
PAGES = 25  # the scenario's pages, the cursor's next page among them


@pytest.mark.timeout(60)
def test_bench_dashboard_times_every_page_of_a_stub(database_url: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "goodjob",
            "bench",
            "--database-url",
            database_url,
            "--scenario",
            "dashboard",
            "--quick",
            "--dashboard-rows",
            str(ROWS),
            "--dashboard-requests",
            str(REQUESTS),
            "--dashboard-factory",
            "tests.integration.dashboard_stub:create_app",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines: list[dict[str, Any]] = [
        json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")
    ]
    assert [line["scenario"] for line in lines] == ["machine", "dashboard"]
    figures = lines[1]["goodjob"]
    assert figures["rows"] == ROWS
    assert figures["executions"] > ROWS * 0.9  # one per attempt; queued jobs have none
    assert figures["seed_jobs_per_s"] > 0
    assert figures["errors"] == []
    assert figures["pages"] == PAGES
    assert figures["timed"] == 2 * PAGES
    assert figures["requests_per_page"] == REQUESTS
    assert "/jobs?state=succeeded&cursor=<next>" in figures["per_page"]
    for page, formats in figures["per_page"].items():
        assert set(formats) == {"html", "json"}, page
        for row in formats.values():
            assert row["status"] == 200
            assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"]
    assert isinstance(lines[1]["met"], bool)
    assert "worker" not in done.stderr  # no worker process: the pages are requested in-process

    table = done.stdout[done.stdout.rindex("}") :]
    assert "dashboard" in table
    assert "p95 ms" in table
    assert "/jobs?state=discarded" in table


def test_bench_dashboard_says_when_the_dashboard_is_missing(database_url: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "goodjob",
            "bench",
            "--database-url",
            database_url,
            "--scenario",
            "dashboard",
            "--dashboard-factory",
            "tests.integration.no_such_dashboard:create_app",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "no module 'tests.integration.no_such_dashboard'" in done.stderr
    assert "seeding" not in done.stderr  # said before any row is written

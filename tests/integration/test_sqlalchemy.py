"""Transactional enqueue on SQLAlchemy 2 sessions and connections (psycopg 3): the job commits
or rolls back with them. The README's example is ``examples/sqlalchemy_orders.py``."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from goodjob import ConfigurationError, GoodJob
from tests.helpers import load_example, sql


def count_jobs(url: str) -> int:
    return int(sql(url, "SELECT count(*) FROM goodjob_jobs")[0][0])


def sa_url(url: str, driver: str = "psycopg") -> str:
    return url.replace("postgresql://", f"postgresql+{driver}://", 1)


@pytest.fixture
def example(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    monkeypatch.delenv("GOODJOB_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    sql(database_url, "CREATE TABLE orders (id int PRIMARY KEY)")
    module = load_example("sqlalchemy_orders")
    yield module
    module.engine.dispose()
    module.gj.close()


def test_the_readme_example_commits_the_job_with_the_order_and_rolls_it_back_with_it(
    example: types.ModuleType, database_url: str
) -> None:
    example.place_order(1)
    [job] = example.gj.jobs()
    assert (job.task_name, job.args) == ("sqlalchemy_orders.send_receipt", [1])

    # The same order again: the insert fails, the session rolls back, and the job with it.
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        example.place_order(1)
    assert count_jobs(database_url) == 1
    assert sql(database_url, "SELECT id FROM orders") == [(1,)]


def test_a_connection_and_a_scoped_session_join_their_transaction(
    gj: GoodJob, database_url: str
) -> None:
    @gj.task
    def noop(n: int) -> None: ...

    engine = sqlalchemy.create_engine(sa_url(database_url))
    try:
        with engine.connect() as conn:
            noop.using(connection=conn).enqueue(1)
            assert count_jobs(database_url) == 0  # not committed yet
            conn.rollback()
            noop.using(connection=conn).enqueue(2)
            conn.commit()
        session = scoped_session(sessionmaker(engine))
        gj.enqueue_all([noop.prepare(3), noop.prepare(4)], connection=session)
        session.rollback()
        with gj.batch(connection=session):
            noop.enqueue(5)
        session.commit()
        session.remove()
    finally:
        engine.dispose()
    assert sorted(job.args[0] for job in gj.jobs()) == [2, 5]


def test_an_async_session_joins_its_transaction(gj: GoodJob, database_url: str) -> None:
    @gj.task
    def noop(n: int) -> None: ...

    async def scenario() -> None:
        engine = create_async_engine(sa_url(database_url))
        try:
            async with AsyncSession(engine) as session:
                await noop.using(connection=session).aenqueue(1)
                await session.rollback()
                await noop.using(connection=session).aenqueue(2)
                await session.commit()
            with pytest.raises(ConfigurationError, match="aenqueue"):
                async with AsyncSession(engine) as session:
                    noop.using(connection=session).enqueue(3)
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert [job.args for job in gj.jobs()] == [[2]]


def test_a_session_on_another_driver_is_refused_naming_it(gj: GoodJob) -> None:
    @gj.task
    def noop() -> None: ...

    engine = sqlalchemy.create_engine("sqlite://")
    with Session(engine) as session, pytest.raises(ConfigurationError, match="sqlite3 driver"):
        noop.using(connection=session).enqueue()
    engine.dispose()
    with pytest.raises(ConfigurationError, match="SQLAlchemy Session"):
        noop.using(connection="postgresql://").enqueue()
    with Session(engine) as session:
        assert session.execute(text("SELECT 1")).scalar() == 1  # the session still works

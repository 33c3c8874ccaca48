"""Enqueueing: options, async, bulk with one NOTIFY per queue, transactional, argument checks."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goodjob import ConfigurationError, DatabaseError, GoodJob, SerializationError
from goodjob.db import Database
from goodjob.records import enqueue
from tests.helpers import sql
from tests.strategies import any_text, same, values

# The COPY path is taken from this many jobs on in these tests (the real threshold is far higher,
# and tests of both paths should stay quick).
COPY_THRESHOLD = 500
# A batch that goes out as two pipelined parts (below the COPY threshold of these tests).
MULTI_PART = COPY_THRESHOLD - 1
assert MULTI_PART > enqueue.PIPELINE_PART


@pytest.fixture(autouse=True)
def small_copy_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enqueue, "COPY_THRESHOLD", COPY_THRESHOLD)


@pytest.fixture
def listener(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A separate connection listening on goodjob's channel, as a worker's notifier does."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute('LISTEN "goodjob"')
        yield conn


def received(conn: psycopg.Connection[Any], timeout: float = 0.5) -> list[dict[str, Any]]:
    """Every notification that arrives within ``timeout`` seconds (a bounded look, not a wait
    for a condition: tests of absence need to look for a while)."""
    return [json.loads(n.payload) for n in conn.notifies(timeout=timeout)]


def count_jobs(url: str) -> int:
    return int(sql(url, "SELECT count(*) FROM goodjob_jobs")[0][0])


def test_enqueue_returns_a_handle_and_stores_the_options(gj: GoodJob, database_url: str) -> None:
    @gj.task(queue="mail", priority=-5, labels=["email"])
    def send(user_id: int) -> None: ...

    job = send.enqueue(42)
    assert job.status == "queued"
    stored = gj.job(job.id)
    assert (stored.task_name, stored.queue_name, stored.priority) == (send.name, "mail", -5)
    assert stored.labels == ("email",)
    assert stored.args == [42]
    assert send.name.endswith("test_enqueue_returns_a_handle_and_stores_the_options.<locals>.send")

    urgent = send.using(queue="urgent", priority=-10, wait=30, labels=["vip"]).enqueue(1)
    row = gj.job(urgent.id)
    assert (row.queue_name, row.priority, row.labels, row.status) == (
        "urgent",
        -10,
        ("vip",),
        "scheduled",
    )
    assert row.created_at is not None
    assert row.scheduled_at is not None
    # the wait is measured with the database clock
    assert dt.timedelta(seconds=29) < row.scheduled_at - row.created_at < dt.timedelta(seconds=31)

    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert gj.job(send.using(run_at=at).enqueue(2).id).scheduled_at == at
    # using() returns a copy: the task itself is unchanged
    assert gj.job(send.enqueue(3).id).queue_name == "mail"


def test_bad_options_are_refused(gj: GoodJob) -> None:
    @gj.task
    def noop() -> None: ...

    with pytest.raises(ConfigurationError, match="unknown enqueue option 'queeue'"):
        noop.using(queeue="x")
    with pytest.raises(ConfigurationError, match="queue name"):
        noop.using(queue="a,b")
    with pytest.raises(ConfigurationError, match="time zone"):
        noop.using(run_at=dt.datetime(2030, 1, 1))
    with pytest.raises(ConfigurationError, match="timeout"):
        gj.task(timeout=0)(lambda: None)
    with pytest.raises(ConfigurationError, match="not an exception class"):
        gj.task(discard_on=[int])(lambda: None)  # type: ignore[list-item]


def test_a_connection_of_the_wrong_kind_is_refused(gj: GoodJob, database_url: str) -> None:
    @gj.task
    def noop() -> None: ...

    with pytest.raises(ConfigurationError, match="psycopg Connection"):
        noop.using(connection=object()).enqueue()

    async def sync_enqueue_on_async_connection() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            noop.using(connection=conn).enqueue()

    with pytest.raises(ConfigurationError, match="aenqueue"):
        asyncio.run(sync_enqueue_on_async_connection())
    assert count_jobs(database_url) == 0


def test_aenqueue(gj: GoodJob) -> None:
    @gj.task
    def noop(x: int) -> None: ...

    job = asyncio.run(noop.using(priority=3).aenqueue(7))
    assert gj.job(job.id).priority == 3
    assert gj.job(job.id).args == [7]


def test_bulk_enqueue_sends_one_notify_per_queue(
    gj: GoodJob, database_url: str, listener: psycopg.Connection[Any]
) -> None:
    @gj.task
    def noop(i: int) -> None: ...

    requests = [noop.using(queue="even" if i % 2 else "odd").prepare(i) for i in range(10_000)]
    jobs = gj.enqueue_all(requests)
    assert len({j.id for j in jobs}) == 10_000
    assert count_jobs(database_url) == 10_000
    notes = received(listener)
    assert sorted(n["queue"] for n in notes) == ["even", "odd"]


def test_small_batches_also_notify_once_per_queue(
    gj: GoodJob, listener: psycopg.Connection[Any]
) -> None:
    @gj.task
    def noop() -> None: ...

    # below COPY_THRESHOLD: the single unnest statement
    gj.enqueue_all([noop.using(queue=q).prepare() for q in ["a", "b", "a", "c"] * 5])
    assert sorted(n["queue"] for n in received(listener)) == ["a", "b", "c"]


@pytest.mark.parametrize("mixed", [True, False])
@pytest.mark.parametrize("size", [2, 7, COPY_THRESHOLD - 1, COPY_THRESHOLD + 1])
def test_every_column_of_a_batch_is_stored_per_row(gj: GoodJob, size: int, mixed: bool) -> None:
    """Columns shared by every row and columns that differ are stored alike (jobs_insert sends
    a shared column as one value)."""

    @gj.task
    def first(i: int) -> None: ...

    @gj.task
    def second(i: int) -> None: ...

    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    def request(i: int) -> Any:
        if not mixed:
            return first.using(queue="same", priority=2, labels=["x"], wait=60).prepare(i)
        task = first if i % 2 else second
        return task.using(
            queue=f"q{i % 2}",
            priority=i % 3,
            labels=["x", "y"] if i % 2 else [],
            run_at=at if i % 3 == 0 else None,
            wait=60 if i % 3 == 1 else 0,
        ).prepare(i)

    requests = [request(i) for i in range(size)]
    handles = gj.enqueue_all(requests)
    for i, (req, handle) in enumerate(zip(requests, handles, strict=True)):
        job = gj.job(handle.id)
        options = req.options
        assert (job.task_name, job.queue_name, job.priority, job.args) == (
            req.task_name,
            options.queue,
            options.priority,
            [i],
        )
        assert job.labels == options.labels
        assert job.scheduled_at is not None
        assert job.created_at is not None
        if options.run_at is not None:
            assert job.scheduled_at == options.run_at
        else:
            delay = (job.scheduled_at - job.created_at).total_seconds()
            assert options.wait - 1 < delay < options.wait + 1


@pytest.mark.parametrize("size", [3, COPY_THRESHOLD + 1])
def test_bulk_enqueue_joins_the_callers_transaction(
    gj: GoodJob, database_url: str, listener: psycopg.Connection[Any], size: int
) -> None:
    @gj.task
    def noop() -> None: ...

    with psycopg.connect(database_url) as conn:
        try:
            with conn.transaction():
                gj.enqueue_all([noop.prepare() for _ in range(size)], connection=conn)
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        assert count_jobs(database_url) == 0
        with conn.transaction():
            jobs = gj.enqueue_all(
                [noop.using(wait=60).prepare() for _ in range(size)], connection=conn
            )
            assert received(listener, 0.1) == []
    assert count_jobs(database_url) == size
    [note] = received(listener)
    # the wake-up names the earliest start, computed with the database clock
    scheduled = gj.job(jobs[0].id).scheduled_at
    assert scheduled is not None
    assert note["scheduled_at"] == pytest.approx(scheduled.timestamp(), abs=0.001)
    assert gj.job(jobs[-1].id).status == "scheduled"


def test_async_bulk_enqueue_with_copy(gj: GoodJob, database_url: str) -> None:
    @gj.task
    def noop(i: int) -> None: ...

    async def scenario() -> None:
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn, conn.transaction():
            await gj.aenqueue_all(
                [noop.using(labels=["bulk"]).prepare(i) for i in range(COPY_THRESHOLD)],
                connection=conn,
            )

    asyncio.run(scenario())
    jobs = gj.jobs(label="bulk", limit=10_000)
    assert len(jobs) == COPY_THRESHOLD
    assert sorted(j.args[0] for j in jobs) == list(range(COPY_THRESHOLD))


@pytest.mark.parametrize("size", [1, MULTI_PART, COPY_THRESHOLD + 1])
def test_a_batchs_handles_are_its_jobs_in_order_each_with_its_own_arguments(
    gj: GoodJob, size: int
) -> None:
    """The handles (built when first read) are the jobs stored, in the order of the requests.
    Calls without arguments share one encoded value inside a batch, never through a handle."""

    @gj.task
    def bare() -> None: ...

    @gj.task
    def numbered(i: int) -> None: ...

    requests = [numbered.prepare(i) if i % 3 == 0 else bare.prepare() for i in range(size)]
    handles = gj.enqueue_all(requests)
    assert len(handles) == size
    stored = {job.id: job for job in gj.jobs(limit=10_000)}
    assert len(stored) == size
    for i, handle in enumerate(handles):
        job = stored[handle.id]
        assert (handle.task_name, handle.arguments) == (job.task_name, job.arguments)
        assert handle.args == ([i] if i % 3 == 0 else [])
    assert handles == list(handles) == handles[:]
    if size > 1:
        handles[1].arguments["args"].append("mutated")  # a caller's mistake stays its own
        assert gj.enqueue_all([bare.prepare()])[0].arguments == {"args": [], "kwargs": {}}
        assert enqueue.NO_ARGUMENTS == {"args": [], "kwargs": {}}
        assert stored[handles[1].id].arguments == {"args": [], "kwargs": {}}


def test_enqueue_all_of_nothing_is_nothing(gj: GoodJob, listener: psycopg.Connection[Any]) -> None:
    assert gj.enqueue_all([]) == []
    assert received(listener, 0.2) == []


def test_transactional_enqueue_commit_and_rollback(
    gj: GoodJob, database_url: str, listener: psycopg.Connection[Any]
) -> None:
    @gj.task
    def noop() -> None: ...

    with psycopg.connect(database_url) as conn:
        with conn.transaction():
            job = noop.using(connection=conn).enqueue()
            # Not visible to anyone else, and no worker woken, before the commit.
            assert count_jobs(database_url) == 0
            assert received(listener, 0.2) == []
        assert gj.job(job.id).status == "queued"
        assert [n["queue"] for n in received(listener)] == ["default"]

        try:
            with conn.transaction():
                gj.enqueue_all([noop.prepare(), noop.prepare()], connection=conn)
                raise RuntimeError("the caller's work failed")
        except RuntimeError:
            pass
    assert count_jobs(database_url) == 1
    assert received(listener, 0.3) == []


def test_transactional_enqueue_with_async_connection(
    gj: GoodJob, database_url: str, listener: psycopg.Connection[Any]
) -> None:
    @gj.task
    def noop() -> None: ...

    async def scenario() -> uuid.UUID:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            async with conn.transaction():
                job = await noop.using(connection=conn).aenqueue()
                assert count_jobs(database_url) == 0
            try:
                async with conn.transaction():
                    await noop.using(connection=conn, queue="lost").aenqueue()
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass
            return job.id

    job_id = asyncio.run(scenario())
    assert gj.job(job_id).status == "queued"
    assert count_jobs(database_url) == 1
    assert [n["queue"] for n in received(listener)] == ["default"]


def test_arguments_round_trip_through_the_database(gj: GoodJob) -> None:
    @gj.task
    def echo(*args: Any, **kwargs: Any) -> Any:
        return [args, kwargs]

    args = (
        dt.datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        dt.date(2026, 3, 4),
        dt.time(12, 30),
        uuid.UUID(int=99),
        decimal.Decimal("0.1"),
        (1, 2),
        {"nested": [{"deep": (dt.date(2000, 1, 1),)}]},
    )
    job = echo.enqueue(*args, amount=decimal.Decimal("12.50"))
    stored = gj.job(job.id)
    assert tuple(stored.args) == args
    assert stored.kwargs == {"amount": decimal.Decimal("12.50")}
    gj.perform_inline()
    # the task received the same values, and its result came back through JSON too
    assert gj.job(job.id).result == [args, {"amount": decimal.Decimal("12.50")}]
    tz = gj.job(job.id).result[0][0].utcoffset()
    assert tz == dt.timedelta(hours=-3)


class Opaque:
    pass


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (({1},), {}, "argument 0 is of type builtins.set"),
        ((b"x",), {}, "argument 0 is of type builtins.bytes"),
        ((), {"o": Opaque()}, "argument 'o' is of type tests.integration.test_enqueue.Opaque"),
        ((float("nan"),), {}, "argument 0 is nan"),
        (({1: 2},), {}, "argument 0 has a key 1 of type int"),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_inserted(
    gj: GoodJob, database_url: str, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    @gj.task
    def noop(*args: Any, **kwargs: Any) -> None: ...

    with pytest.raises(SerializationError) as info:
        # a good job before the bad one in the same batch: the batch is all or nothing
        gj.enqueue_all([noop.prepare(1), noop.prepare(*args, **kwargs)])
    assert message in str(info.value)
    assert count_jobs(database_url) == 0


@pytest.mark.parametrize("size", [10, MULTI_PART])
def test_a_batch_the_server_refuses_stores_nothing_and_the_pool_recovers(
    gj: GoodJob, database_url: str, size: int
) -> None:
    # A batch is sent in pipeline mode, in parts (the server inserts one while the client
    # encodes the next): the server's error, here on the last job, must still reach the caller
    # as goodjob's error, with nothing of the batch stored.
    @gj.task
    def noop(n: int) -> None: ...

    last = json.dumps({"args": [size - 1], "kwargs": {}})
    sql(
        database_url,
        f"ALTER TABLE goodjob_jobs ADD CONSTRAINT no_last CHECK (arguments <> '{last}')",
    )
    with pytest.raises(DatabaseError) as info:
        gj.enqueue_all([noop.prepare(n) for n in range(size)])
    assert "no_last" in str(info.value)
    assert count_jobs(database_url) == 0

    sql(database_url, "ALTER TABLE goodjob_jobs DROP CONSTRAINT no_last")
    handles = gj.enqueue_all([noop.prepare(n) for n in range(size)])
    assert count_jobs(database_url) == size
    assert [gj.job(h.id).args for h in handles[-3:]] == [[n] for n in range(size - 3, size)]


def test_a_bad_argument_in_a_later_part_rolls_back_the_parts_already_sent(
    gj: GoodJob, database_url: str
) -> None:
    @gj.task
    def noop(value: Any) -> None: ...

    size = MULTI_PART
    requests = [noop.prepare(n) for n in range(size - 1)] + [noop.prepare(object())]
    with pytest.raises(SerializationError):
        gj.enqueue_all(requests)
    assert count_jobs(database_url) == 0


def test_without_pipeline_mode_a_batch_is_one_statement(
    gj: GoodJob, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An older system libpq has no pipeline mode: the batch then goes out as one statement.
    def no_pipeline(self: Database) -> None:
        raise AssertionError("pipeline mode used where libpq has none")

    monkeypatch.setattr(Database, "pipelines", False)
    monkeypatch.setattr(Database, "pipeline", no_pipeline)

    @gj.task
    def noop(n: int) -> None: ...

    handles = gj.enqueue_all([noop.prepare(n) for n in range(MULTI_PART)])
    assert count_jobs(database_url) == MULTI_PART
    assert gj.job(handles[-1].id).args == [MULTI_PART - 1]


def _accept_anything(*args: Any, **kwargs: Any) -> None: ...


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(args=st.lists(values, max_size=3), kwargs=st.dictionaries(any_text, values, max_size=3))
def test_any_arguments_come_back_from_the_database_or_are_refused_at_enqueue(
    gj: GoodJob, args: list[Any], kwargs: dict[str, Any]
) -> None:
    """Issue 11: through a real enqueue and jsonb, arguments round-trip or the enqueue raises
    SerializationError; never another exception, never a DatabaseError with Postgres's text."""

    target = gj.tasks.get("property") or gj.task(name="property")(_accept_anything)
    try:
        job = target.enqueue(*args, **kwargs)
    except SerializationError:
        return
    stored = gj.job(job.id)
    assert same(stored.args, list(args))
    assert same(stored.kwargs, kwargs)

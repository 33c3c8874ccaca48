"""OpenTelemetry tracing (issue 19), with the SDK's in-memory exporter: one trace from a parent
span through enqueue into every attempt of the job."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from goodjob import GoodJob, Retry, current_job
from goodjob.tracing import OpenTelemetry
from tests.helpers import wait_until


def _tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_one_trace_from_a_parent_span_through_enqueue_into_each_attempt(make_app: Any) -> None:
    provider, exporter = _tracing()
    gj: GoodJob = make_app(middleware=[OpenTelemetry(tracer_provider=provider)])

    @gj.task(name="flaky", queue="mail", retry=Retry(attempts=2, wait=0))
    def flaky() -> None:
        if current_job().attempt == 1:
            raise ConnectionError("try again")

    tracer = provider.get_tracer("the web app")
    with tracer.start_as_current_span("POST /signup") as request_span:
        job = flaky.enqueue()
    gj.start()
    try:
        wait_until(lambda: gj.job(job.id).status == "succeeded", timeout=10, message="2 tries")
    finally:
        gj.shutdown()

    spans: list[ReadableSpan] = list(exporter.get_finished_spans())
    trace_id = request_span.get_span_context().trace_id
    assert {span.context.trace_id for span in spans} == {trace_id}  # one trace
    [send] = [s for s in spans if s.kind == SpanKind.PRODUCER]
    attempts = sorted(
        (s for s in spans if s.kind == SpanKind.CONSUMER),
        key=lambda s: s.attributes["goodjob.attempt"] if s.attributes else 0,
    )
    assert send.name == "send mail"
    assert send.parent is not None
    assert send.parent.span_id == request_span.get_span_context().span_id
    assert dict(send.attributes or {}) == {
        "messaging.system": "goodjob",
        "messaging.destination.name": "mail",
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "messaging.message.id": str(job.id),
        "goodjob.task": "flaky",
    }
    assert [s.name for s in attempts] == ["process mail", "process mail"]
    for number, span in enumerate(attempts, start=1):
        assert span.parent is not None
        assert span.parent.span_id == send.context.span_id  # restored from the job's headers
        attributes = span.attributes or {}
        assert attributes["messaging.system"] == "goodjob"
        assert attributes["messaging.destination.name"] == "mail"
        assert attributes["messaging.operation.type"] == "process"
        assert attributes["messaging.message.id"] == str(job.id)
        assert attributes["goodjob.attempt"] == number
    assert attempts[0].attributes is not None
    assert attempts[0].attributes["goodjob.outcome"] == "retried"
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert attempts[1].status.status_code != StatusCode.ERROR


def test_jobs_enqueued_without_tracing_carry_no_headers(gj: GoodJob, database_url: str) -> None:
    from tests.helpers import sql

    @gj.task(name="plain")
    def plain(n: int) -> None:
        pass

    job = plain.enqueue(1)
    [(arguments,)] = sql(
        database_url, "SELECT arguments FROM goodjob_jobs WHERE id = %s", (job.id,)
    )
    assert arguments == {"args": [1], "kwargs": {}}


def test_each_producer_span_names_the_job_it_enqueued(make_app: Any) -> None:
    provider, exporter = _tracing()
    gj: GoodJob = make_app(middleware=[OpenTelemetry(tracer_provider=provider)])

    @gj.task(name="each")
    def each(n: int) -> None:
        pass

    handles = list(gj.enqueue_all([each.prepare(n) for n in range(5)]))  # one statement
    handles.append(each.enqueue(5))
    with gj.batch() as batch:
        each.enqueue(6)
    handles.extend(batch.jobs)

    sends = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    named = [(s.attributes or {})["messaging.message.id"] for s in sends]
    assert sorted(named) == sorted(str(h.id) for h in handles)
    assert len(set(named)) == 7

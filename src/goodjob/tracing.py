"""OpenTelemetry tracing (issue 19): a producer span for each job enqueued, a consumer span for
each attempt, one trace from the code that enqueued a job into every attempt of it.

Add ``OpenTelemetry()`` to the app's middleware (it needs ``goodjob[otel]``; spans go wherever
the application's OpenTelemetry SDK sends them, or nowhere without one). At enqueue, the span's
context is stored with the job (the W3C ``traceparent`` in the job's ``headers``, beside its
arguments); each attempt's span continues it, so retries show up in the same trace. Spans follow
OpenTelemetry's messaging conventions: ``messaging.system`` ``goodjob``, the queue as
``messaging.destination.name``, ``send`` or ``process`` as ``messaging.operation.type``, and the
job id as ``messaging.message.id`` (minted here, before the insert, so the producer span names
it; an enqueue that ``enqueue_limit`` deduplicates hands back the job already queued instead).
"""

from __future__ import annotations

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from goodjob.ids import new_ids
from goodjob.middleware import Middleware, Perform
from goodjob.options import JobRequest
from goodjob.records.claims import ClaimedJob, Outcome

SYSTEM = "goodjob"
# An outcome's kind, as the goodjob.outcome attribute of the consumer span.
OUTCOMES = {
    "succeeded": "succeeded",
    "retry": "retried",
    "discarded": "discarded",
    "release": "interrupted",
}


class OpenTelemetry(Middleware):
    """Spans around enqueue and perform, the trace context carried in the job's headers."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("goodjob", tracer_provider=tracer_provider)

    def before_enqueue(self, requests: list[JobRequest]) -> list[JobRequest]:
        traced = []
        ids = new_ids(len(requests))
        for request, new_id in zip(requests, ids, strict=True):
            queue = request.options.queue
            job_id = request.id or new_id
            with self._tracer.start_as_current_span(
                f"send {queue}",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": SYSTEM,
                    "messaging.destination.name": queue,
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "enqueue",
                    "messaging.message.id": str(job_id),
                    "goodjob.task": request.task_name,
                },
            ):
                headers = dict(request.headers or {})
                propagate.inject(headers)  # this span's context, as traceparent (and baggage)
            traced.append(request._replace(headers=headers, id=job_id))
        return traced

    def around_perform(self, job: ClaimedJob, perform: Perform) -> Outcome:
        with self._tracer.start_as_current_span(
            f"process {job.queue_name}",
            context=propagate.extract(job.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.destination.name": job.queue_name,
                "messaging.operation.type": "process",
                "messaging.operation.name": "perform",
                "messaging.message.id": str(job.id),
                "goodjob.task": job.task_name,
                "goodjob.attempt": job.attempt,
            },
        ) as span:
            outcome = perform()
            span.set_attribute("goodjob.outcome", OUTCOMES.get(outcome.kind, outcome.kind))
            if outcome.exception is not None:
                span.record_exception(outcome.exception)
            if outcome.failed:
                span.set_status(Status(StatusCode.ERROR, (outcome.error or "")[:200]))
            return outcome

"""goodjob: Postgres-backed background jobs for Python, on the design of GoodJob."""

from goodjob.app import GoodJob
from goodjob.capsule_tracker import CapsuleTracker
from goodjob.config import Settings
from goodjob.context import JobContext, current_job
from goodjob.errors import (
    BatchNotFound,
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailable,
    EmbeddedPostgresError,
    EnqueueRefused,
    Error,
    JobCancelled,
    JobFailed,
    JobInterrupted,
    JobNotFound,
    JobStateError,
    JobTimeout,
    QueueStringError,
    SchemaNotMigrated,
    SchemaTooNew,
    SerializationError,
    UnknownTaskError,
    WaitTimeout,
)
from goodjob.middleware import Middleware
from goodjob.options import Concurrency, JobRequest
from goodjob.records.batches import Batch, NewBatch
from goodjob.records.claims import ClaimedJob, Outcome
from goodjob.records.jobs import Execution, Job
from goodjob.retry import Retry
from goodjob.task import Task

__all__ = [
    "Batch",
    "BatchNotFound",
    "CapsuleTracker",
    "ClaimedJob",
    "Concurrency",
    "ConfigurationError",
    "DatabaseError",
    "DatabaseUnavailable",
    "EmbeddedPostgresError",
    "EnqueueRefused",
    "Error",
    "Execution",
    "GoodJob",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobInterrupted",
    "JobNotFound",
    "JobRequest",
    "JobStateError",
    "JobTimeout",
    "Middleware",
    "NewBatch",
    "Outcome",
    "QueueStringError",
    "Retry",
    "SchemaNotMigrated",
    "SchemaTooNew",
    "SerializationError",
    "Settings",
    "Task",
    "UnknownTaskError",
    "WaitTimeout",
    "current_job",
]

"""goodjob's exceptions, all rooted at :class:`Error`.

::

    Error
    ├── ConfigurationError          a setting, queue string or option has a bad value
    │   └── QueueStringError        a malformed ``--queues`` string
    ├── DatabaseError               the database refused or failed a statement
    │   ├── DatabaseUnavailable     it cannot be reached (down, restarting, network cut)
    │   ├── SchemaNotMigrated       the tables are missing or older than this version
    │   └── SchemaTooNew            the tables are from a newer version of goodjob
    ├── EmbeddedPostgresError       the zero-setup server cannot be found, started or stopped
    ├── EnqueueRefused              a middleware refused to enqueue the jobs
    ├── SerializationError          a job argument or result is not JSON-representable
    ├── UnknownTaskError            a job names a task the worker does not know
    ├── JobNotFound                 no job has that id
    ├── BatchNotFound               no batch has that id
    ├── JobStateError               the operation does not fit the job's state
    ├── JobFailed                   ``job.wait()`` saw the job end discarded
    ├── JobCancelled                the running job was cancelled (``check_cancelled()``)
    ├── JobTimeout                  a job ran longer than its task's timeout (a TimeoutError)
    └── WaitTimeout                 ``job.wait()`` ran out of time

    BaseException
    └── JobInterrupted              raised inside a running job to stop it (timeout, shutdown)

``JobInterrupted`` derives from ``BaseException`` on purpose: a task's own ``except Exception``
must not swallow the signal that its time is up, or the worker could never reclaim the thread.
"""

from __future__ import annotations


class Error(Exception):
    """Root of every error goodjob raises on purpose."""


class ConfigurationError(Error, ValueError):
    """A setting has a value goodjob cannot use; the message names it and what is allowed."""


class QueueStringError(ConfigurationError):
    """A queue string (``"mail:2;*"``) is malformed; the message quotes the bad part."""


class DatabaseError(Error):
    """The database failed a statement."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached."""


class SchemaNotMigrated(DatabaseError):
    """goodjob's tables are missing or out of date."""

    def __init__(self, detail: str = "") -> None:
        message = "goodjob's tables are missing or out of date: run `goodjob migrate`"
        super().__init__(f"{message} ({detail})" if detail else message)


class SchemaTooNew(DatabaseError):
    """goodjob's tables have migrations this version of goodjob does not know."""

    def __init__(self, detail: str = "") -> None:
        message = (
            "goodjob's tables are from a newer goodjob than this one: upgrade goodjob here"
            " (or migrate a database of your own for this version)"
        )
        super().__init__(f"{message} ({detail})" if detail else message)


class EmbeddedPostgresError(Error):
    """The embedded Postgres server cannot be found, initialised or started."""


class EnqueueRefused(Error):
    """A middleware's ``before_enqueue`` refused the jobs: nothing was inserted."""


class SerializationError(Error, TypeError):
    """A value cannot be stored as JSON; the message names the argument and its type."""


class UnknownTaskError(Error):
    """The job's task name is not registered on the worker's app."""


class JobNotFound(Error, LookupError):
    """No job has the given id."""


class BatchNotFound(Error, LookupError):
    """No batch has the given id."""


class JobStateError(Error):
    """The operation does not fit the job's current state."""


class JobFailed(Error):
    """A waited-for job ended discarded; ``.job`` holds its final record."""

    def __init__(self, message: str, job: object) -> None:
        super().__init__(message)
        self.job = job


class JobTimeout(Error, TimeoutError):
    """A job ran longer than its task's ``timeout``; recorded as the attempt's error."""


class JobCancelled(Error):
    """Raised by ``current_job().check_cancelled()`` once the job was cancelled
    (``job.cancel()``); the job is already recorded discarded as cancelled."""


class WaitTimeout(Error, TimeoutError):
    """A wait for a job's result ran out of time."""


class JobInterrupted(BaseException):
    """Raised inside a running job to stop it: its timeout passed or the worker is shutting down.

    A BaseException so that a task's ``except Exception`` cannot swallow it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

"""The public API is exactly ``goodjob.__all__``: nothing public is missing, nothing extra leaks."""

from __future__ import annotations

import importlib.resources

import goodjob

PUBLIC_API = {
    "Batch",
    "BatchNotFound",
    "CapsuleTracker",
    "ClaimedJob",
    "ConfigurationError",
    "DatabaseError",
    "DatabaseUnavailable",
    "EmbeddedPostgresError",
    "EnqueueRefused",
    "Error",
    "Execution",
    "GoodJob",
    "Job",
    "JobContext",
    "JobCancelled",
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
    "Concurrency",
    "SchemaNotMigrated",
    "SchemaTooNew",
    "SerializationError",
    "Settings",
    "Task",
    "UnknownTaskError",
    "WaitTimeout",
    "current_job",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(goodjob.__all__) == PUBLIC_API
    assert len(goodjob.__all__) == len(PUBLIC_API), "duplicates in __all__"
    assert goodjob.__all__ == sorted(goodjob.__all__, key=lambda name: (name[0].islower(), name))


def test_every_name_in_all_exists() -> None:
    for name in goodjob.__all__:
        assert getattr(goodjob, name) is not None, name


def test_no_other_public_names_are_exported() -> None:
    public = {
        name
        for name, value in vars(goodjob).items()
        if not name.startswith("_") and not isinstance(value, type(goodjob))  # submodules
    }
    assert public == PUBLIC_API


def test_errors_share_one_root() -> None:
    for name in goodjob.__all__:
        value = getattr(goodjob, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, goodjob.Error) or name == "JobInterrupted", name
    assert not issubclass(goodjob.JobInterrupted, Exception)  # a task's except cannot catch it


def test_the_package_ships_its_type_marker() -> None:
    assert importlib.resources.files("goodjob").joinpath("py.typed").is_file()

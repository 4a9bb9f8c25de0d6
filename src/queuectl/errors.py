"""Errors a user can cause. Each carries its exit code; the CLI prints it on one line.

A bug is not a QueuectlError and still gets a traceback.
"""

from __future__ import annotations


class QueuectlError(Exception):
    """Something went wrong."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class UsageError(QueuectlError):
    """Invalid input."""

    exit_code = 2


class FieldError(UsageError):
    """A field of a job spec or a config value is invalid."""

    def __init__(self, field: str, problem: str, line: int | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{field}: {problem}")
        self.field = field
        self.problem = problem
        self.line = line


class NotFound(QueuectlError):
    """No such job."""


class DuplicateJob(QueuectlError):
    """A job with this id already exists."""

    def __init__(self, job_id: str, line: int | None = None, index: int | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(
            f'{where}id: a job with id "{job_id}" already exists (choose another id, or omit it)'
        )
        self.job_id = job_id
        self.index = index  # the job's position in its batch


class StoreUnavailable(QueuectlError):
    """The store cannot be opened or used."""

"""The error tree and the exit codes: the contract every later module keeps.

Owns: `ExitCode`, the one table of process exit codes, and the exceptions that carry one.
Must not: import anything of ours, or any third-party module.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes. 1 is never returned on purpose (it means an unexpected crash)."""

    OK = 0  # promoted, initialised, skipped, or nothing to do
    USAGE = 2  # usage error or invalid spec
    ROLLED_BACK = 3  # analysis failed, traffic rolled back to the primary
    INFRASTRUCTURE = 4  # API server / metrics unreachable or permission refused; traffic on the primary
    ROLLBACK_FAILED = 5  # the rollback itself failed: the Service may be split, a person must look
    INTERRUPTED_INT = 130  # SIGINT, after restoring the primary
    INTERRUPTED_TERM = 143  # SIGTERM, after restoring the primary


class StepError(Exception):
    """Base of every error canary-step raises on purpose."""

    exit_code: ExitCode = ExitCode.INFRASTRUCTURE


class SpecError(StepError):
    """The Canary spec (or a file that should hold one) is not usable."""

    exit_code = ExitCode.USAGE


class InfrastructureError(StepError):
    """Something we depend on failed after retries; the canary itself was not judged."""

    exit_code = ExitCode.INFRASTRUCTURE


class APIError(InfrastructureError):
    """The Kubernetes API answered with an error, or could not be reached."""

    def __init__(
        self, message: str, *, status: int | None = None, verb: str = "", resource: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.verb = verb
        self.resource = resource


class NotFound(APIError):
    """404 from the API server."""


class Conflict(APIError):
    """409 from the API server: the object changed since it was read."""


class Forbidden(APIError):
    """401 or 403: the credentials may not do this. Never retried."""


class Invalid(APIError):
    """400 or 422: the API server (or its admission) rejected the object."""


class TrafficNotConverged(InfrastructureError):
    """The Service did not report the traffic split we wrote within the allowed time."""


class MetricError(InfrastructureError):
    """A metrics provider could not answer (unreachable, bad query, bad response)."""


class NoValuesFound(MetricError):
    """The metrics provider answered with no data (empty vector or NaN), as Flagger's ErrNoValuesFound."""


class RollbackFailed(StepError):
    """Restoring the primary failed: traffic may be split."""

    exit_code = ExitCode.ROLLBACK_FAILED

"""The error tree and the exit codes: the contract every later module keeps.

Owns: `ExitCode`, the one table of process exit codes, the exceptions that carry one,
`ErrorInfo`, an error as plain data that maps back to its exit code, and `one_line`, how a caught
library exception is quoted in our messages.
Must not: import anything of ours, or any third-party module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


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


# The errors an `ErrorInfo` can name, by class name; an unknown kind is an infrastructure error.
_KINDS: dict[str, type[StepError]] = {
    cls.__name__: cls
    for cls in (
        StepError,
        SpecError,
        InfrastructureError,
        APIError,
        NotFound,
        Conflict,
        Forbidden,
        Invalid,
        TrafficNotConverged,
        MetricError,
        NoValuesFound,
        RollbackFailed,
    )
}


@dataclass(frozen=True, kw_only=True)
class ErrorInfo:
    """An error as plain data, so that a saved analysis state can hold one and another process read it.

    `kind` is the error's class name, or its nearest one of this module (`Forbidden`, `RollbackFailed`,
    ...), which gives back the exit code; `verb`, `resource` and
    `status` are set where the Kubernetes API refused something.
    """

    kind: str
    message: str
    verb: str = ""
    resource: str = ""
    status: int | None = None

    @classmethod
    def of(cls, error: StepError) -> ErrorInfo:
        known = next(c.__name__ for c in type(error).__mro__ if c.__name__ in _KINDS)
        return cls(
            kind=known,
            message=str(error),
            verb=getattr(error, "verb", "") or "",
            resource=getattr(error, "resource", "") or "",
            status=getattr(error, "status", None),
        )

    @property
    def exit_code(self) -> ExitCode:
        return _KINDS.get(self.kind, InfrastructureError).exit_code

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "message": self.message,
            "verb": self.verb,
            "resource": self.resource,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ErrorInfo:
        status = data.get("status")
        return cls(
            kind=str(data["kind"]),
            message=str(data["message"]),
            verb=str(data.get("verb") or ""),
            resource=str(data.get("resource") or ""),
            status=status if isinstance(status, int) else None,
        )


def one_line(err: BaseException) -> str:
    """An exception as one line of a message: its text (else its type's name), whitespace collapsed."""
    return " ".join((str(err) or type(err).__name__).split())

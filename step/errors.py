"""The error tree and the exit codes: the contract every later module keeps.

Owns: `ExitCode`, the one table of process exit codes, the exceptions that carry one (and the
`reason` result that goes with it, so the reason and the code always agree), the taxonomy
(`UsageError`, exit 2: a mistake that no retry can fix; `InfrastructureError`, exit 4: only what a
retry can fix), `ErrorInfo`, an error as plain data that maps back to its exit code, and `one_line`,
how a caught library exception is quoted in our messages.
Must not: import anything of ours, or any third-party module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urlsplit


class ExitCode(enum.IntEnum):
    """Process exit codes. 1 is never returned on purpose (it means an unexpected crash)."""

    OK = 0  # promoted, initialised, skipped, or nothing to do
    USAGE = 2  # a mistake no retry can fix (usage, spec, missing file or object, context, URL); untouched
    ROLLED_BACK = 3  # analysis failed, traffic rolled back to the primary
    INFRASTRUCTURE = 4  # what a retry can fix (network, 5xx, 429, timeouts, a lock); traffic on the primary
    ROLLBACK_FAILED = 5  # the rollback itself failed: the Service may be split, a person must look
    INTERRUPTED_INT = 130  # SIGINT, after restoring the primary
    INTERRUPTED_TERM = 143  # SIGTERM, after restoring the primary


class StepError(Exception):
    """Base of every error canary-step raises on purpose; `reason`: the `reason` result it ends a run with."""

    exit_code: ExitCode = ExitCode.INFRASTRUCTURE
    reason: str = "infrastructure-error"


class UsageError(StepError):
    """A mistake that no retry can fix (exit 2): a bad option, a missing file, a wrong kubeconfig
    context, a container that does not resolve, a malformed URL. Found before anything is written."""

    exit_code = ExitCode.USAGE
    reason = "usage-error"


class SpecError(UsageError):
    """The Canary spec (or a file that should hold one) is not usable."""

    reason = "invalid-spec"


class MissingObject(UsageError):
    """An object the run needs does not exist: the Knative Service, the Canary, a MetricTemplate, a Secret."""

    reason = "not-found"


class InfrastructureError(StepError):
    """Something we depend on failed after retries and a retry may fix it; the canary was not judged."""

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
    """The Service did not report the traffic split we wrote within the allowed time, or its Route
    refused it for a reason no waiting fixes (Knative's `ErrorConfig`, `NotOwned`)."""


class RevisionFailed(TrafficNotConverged):
    """A Revision the write routes to has Ready False: Knative will not route (more) traffic to it.

    `resource` is `revisions.serving.knative.dev/<name>`, so the error as data still names the Revision.
    """

    def __init__(self, message: str, *, revision: str) -> None:
        super().__init__(message)
        self.revision = revision
        self.resource = f"revisions.serving.knative.dev/{revision}"


class MetricError(InfrastructureError):
    """A metrics provider could not answer (unreachable, bad query, bad response).

    `status`: the HTTP status it answered with, when it answered (a 4xx other than 429 is a mistake
    in the address or the credentials that no retry fixes; the preflight says so)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MetricsServerUnreachable(MetricError):
    """The metrics server did not answer its online check before the analysis (a retry may fix it)."""

    reason = "metrics-server-unreachable"


class NoValuesFound(MetricError):
    """The metrics provider answered with no data (empty vector or NaN), as Flagger's ErrNoValuesFound."""


class RollbackFailed(StepError):
    """Restoring the primary failed: traffic may be split."""

    exit_code = ExitCode.ROLLBACK_FAILED
    reason = "rollback-failed"


# The errors an `ErrorInfo` can name, by class name; an unknown kind is an infrastructure error.
_KINDS: dict[str, type[StepError]] = {
    cls.__name__: cls
    for cls in (
        StepError,
        UsageError,
        SpecError,
        MissingObject,
        InfrastructureError,
        APIError,
        NotFound,
        Conflict,
        Forbidden,
        Invalid,
        TrafficNotConverged,
        RevisionFailed,
        MetricError,
        MetricsServerUnreachable,
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

    @property
    def reason(self) -> str:
        """The `reason` result that agrees with `exit_code`."""
        return _KINDS.get(self.kind, InfrastructureError).reason

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


def is_http_url(url: str) -> bool:
    """`http://host[:port][/path]` or https: a scheme we speak and a host; anything else is a mistake."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def connection_failure(err: BaseException) -> str:
    """Why a connection failed, in a few words, from a library's exception chain (never its text)."""
    seen: set[int] = set()
    todo: list[BaseException] = [err]
    names: list[str] = []
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        names.append(type(current).__name__)
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, ConnectionResetError):
            return "connection reset"
        if isinstance(current, TimeoutError):
            return "connection timed out"
        for attr in ("reason", "__cause__", "__context__"):
            nxt = getattr(current, attr, None)
            if isinstance(nxt, BaseException):
                todo.append(nxt)
        todo.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
    if any("NameResolution" in n or n == "gaierror" for n in names):
        return "its host name does not resolve"
    if any("Protocol" in n or "RemoteDisconnected" in n for n in names):
        return "the connection was closed without an answer"
    if any("SSL" in n for n in names):
        return "the TLS handshake failed"
    return "the connection failed"


def one_line(err: BaseException) -> str:
    """An exception as one line of a message: its text (else its type's name), whitespace collapsed."""
    return " ".join((str(err) or type(err).__name__).split())

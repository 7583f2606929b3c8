"""From an API server answer (or the lack of one) to canary-step's error tree.

Owns: the one table from HTTP status to `APIError` subclass (and which statuses are transient), and
the messages: a 403 names the verb and the resource the ServiceAccount needs, a 400/422 carries the
API server's own message (verbatim, and naming the admission webhook when one refused it).
Must not: perform I/O, retry, or import `kubernetes`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from step.errors import APIError, Conflict, Forbidden, Invalid, NotFound
from step.kube.resources import Resource


@dataclass(frozen=True, kw_only=True)
class Target:
    """What one request was about: enough to say what was refused."""

    verb: str  # the RBAC verb: get, list, watch, create, patch, update
    resource: Resource
    namespace: str
    name: str | None = None
    subresource: str | None = None

    def describe(self) -> str:
        what = self.resource.qualified + (f"/{self.subresource}" if self.subresource else "")
        named = f' "{self.name}"' if self.name else ""
        return f'{what}{named} in namespace "{self.namespace}"'


class TransientAPIError(APIError):
    """A failure worth another attempt (no answer, 429, 5xx). Only `step.kube` sees it retried."""

    def __init__(
        self, message: str, *, status: int | None, target: Target, retry_after: float | None
    ) -> None:
        super().__init__(message, status=status, verb=target.verb, resource=target.resource.qualified)
        self.retry_after = retry_after


def server_message(body: bytes) -> str:
    """The `message` of a `Status` object, or the start of whatever text came back."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        return str(decoded["message"])
    return text[:300] if text else "(empty body)"


def is_json_patch_test_failure(message: str) -> bool:
    """The API server answers a failed JSON-patch `test` op with 422 "testing value ... failed"."""
    return "testing value" in message.lower() and "failed" in message.lower()


# kube-apiserver's whole message for a JSON patch it could not apply (RFC 6902 `test` failed, or a
# path is missing): HTTP 422, reason Invalid, no details (observed on kube-apiserver 1.3x).
JSON_PATCH_NOT_APPLICABLE = "the server rejected our request due to an error in our request"


def is_json_patch_not_applicable(message: str) -> bool:
    return message.rstrip().endswith(JSON_PATCH_NOT_APPLICABLE) or is_json_patch_test_failure(message)


# kube-apiserver's words when a validating or mutating admission webhook refuses a request
# (k8s.io/apiserver webhookerrors: `admission webhook "<name>" denied the request: <its message>`).
_WEBHOOK_DENIED = re.compile(r'admission webhook "([^"]+)" denied the request')


def admission_webhook(message: str) -> str | None:
    """The name of the admission webhook that refused the request, if the message says one did."""
    found = _WEBHOOK_DENIED.search(message)
    return found.group(1) if found else None


def is_transient_status(status: int | None) -> bool:
    """Answers worth another attempt: none at all (None), 429, and any 5xx."""
    return status is None or status == 429 or 500 <= status <= 599


def error_for(
    status: int,
    *,
    target: Target,
    message: str,
    retry_after: float | None = None,
) -> APIError:
    """The error for a non-2xx answer. 429 and 5xx come back as `TransientAPIError`."""
    verb, res = target.verb, target.resource.qualified
    if status == 401:
        return Forbidden(
            f"unauthorized: the API server did not accept the credentials for {verb} {target.describe()}"
            f" ({message})",
            status=status,
            verb=verb,
            resource=res,
        )
    if status == 403:
        return Forbidden(
            f"forbidden: cannot {verb} {target.describe()} — the ServiceAccount needs verb"
            f' "{verb}" on {target.resource.rbac(target.subresource)}',
            status=status,
            verb=verb,
            resource=res,
        )
    if status == 404:
        return NotFound(f"{target.describe()} not found ({message})", status=status, verb=verb, resource=res)
    if status == 409 or (status == 422 and is_json_patch_test_failure(message)):
        return Conflict(
            f"conflict: {target.describe()} changed while we wrote it ({message})",
            status=status,
            verb=verb,
            resource=res,
        )
    webhook = admission_webhook(message)
    if status in (400, 422) and webhook is not None:
        return Invalid(
            f'the admission webhook "{webhook}" refused {verb} {target.describe()} (HTTP {status}). A'
            " webhook sees the whole object on every write, so a field it no longer accepts (a feature"
            " turned off since, a changed default) refuses even a traffic-only change: fix the object or"
            f" the webhook's configuration, then run again. The API server's answer, verbatim: {message}",
            status=status,
            verb=verb,
            resource=res,
        )
    if status in (400, 422):
        return Invalid(
            f"the API server rejected {verb} {target.describe()}: {message}",
            status=status,
            verb=verb,
            resource=res,
        )
    if is_transient_status(status):
        return TransientAPIError(
            f"the API server answered {status} to {verb} {target.describe()}: {message}",
            status=status,
            target=target,
            retry_after=retry_after,
        )
    return APIError(
        f"the API server answered {status} to {verb} {target.describe()}: {message}",
        status=status,
        verb=verb,
        resource=res,
    )

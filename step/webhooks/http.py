"""Webhook calls as Flagger makes them: JSON POST, per-attempt timeout, go-retryablehttp's retries.

Owns: `HttpWebhookCaller`, the `ports.WebhookCaller` over HTTP. The payload is Flagger's
`CanaryWebhookPayload` (`name`, `namespace`, `phase`, `checksum`, and `metadata` only when it is
not empty; no `type`), plus our `canaryUrl` once the canary revision has a tagged URL. `retries`
extra attempts follow go-retryablehttp v0.7.8's DefaultRetryPolicy (connection errors and timeouts,
429, and 5xx except 501) and DefaultBackoff (`GO_RETRYABLEHTTP`: 1 s doubling to 30 s, no jitter;
`Retry-After` honoured on 429 and 503, up to 30 s), run by `step.retrying`. Success is 200..202.
Error texts are Flagger's: `POST <url> giving up after N attempt(s)` once retries are spent, else the
response body.
Must not: decide what a failed hook means (gate, check, rollback signal) or raise for a failed call.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import requests
import tenacity
import urllib3

from step.clock import MonotonicClock
from step.errors import one_line
from step.ports import Clock, WebhookPayload, WebhookResult
from step.retrying import RetryPolicy, parse_retry_after, retrying
from step.spec.model import Webhook

MAX_ERROR_BODY = 64 * 1024

# go-retryablehttp's DefaultBackoff (RetryWaitMin 1 s, RetryWaitMax 30 s, no jitter). The attempts
# come from each hook (`retries` + 1). go-retryablehttp would wait out any Retry-After; Flagger bounds
# the whole call by the hook's timeout instead, and we bound one wait by the backoff's own maximum.
GO_RETRYABLEHTTP = RetryPolicy(
    attempts=1, backoff_base=1.0, backoff_cap=30.0, jitter=0.0, deadline=math.inf, retry_after_cap=30.0
)


def payload_json(payload: WebhookPayload) -> bytes:
    """The body Flagger sends: fields in Go struct order, `metadata` omitted when empty."""
    body: dict[str, object] = {
        "name": payload.name,
        "namespace": payload.namespace,
        "phase": payload.phase,
        "checksum": payload.checksum,
    }
    if payload.metadata:
        body["metadata"] = dict(payload.metadata)
    if payload.canary_url:  # ours: where the canary revision answers on its own (its `canary` tag)
        body["canaryUrl"] = payload.canary_url
    return json.dumps(body).encode("utf-8")


def is_retryable_status(status: int) -> bool:
    """go-retryablehttp DefaultRetryPolicy: 429, and 5xx except 501 (Not Implemented)."""
    return status == 429 or (500 <= status <= 599 and status != 501)


def honoured_retry_after(status: int | None, retry_after: str | None, *, now: float) -> float | None:
    """go-retryablehttp DefaultBackoff reads `Retry-After` on 429 and 503 only."""
    return parse_retry_after(retry_after, now=now) if status in (429, 503) else None


@dataclass(frozen=True)
class _Attempt:
    status: int | None
    body: str
    retry_after: str | None
    error: str  # a connection-level failure, or ""
    final: bool = False  # a failure go-retryablehttp does not retry (TLS certificate, bad URL)

    @property
    def retryable(self) -> bool:
        if self.error:
            return not self.final
        return self.status is not None and is_retryable_status(self.status)


class HttpWebhookCaller:
    """POSTs Flagger's webhook payload; returns a `WebhookResult`, never raises for a failed call."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        policy: RetryPolicy = GO_RETRYABLEHTTP,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`policy` is the backoff schedule; each hook's `retries` + 1 replaces its `attempts`."""
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._policy = policy
        self._wall = wall  # Unix time, for a Retry-After given as an HTTP date
        self._session = requests.Session()
        self._session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
        self._session.mount("https://", requests.adapters.HTTPAdapter(max_retries=0))

    def close(self) -> None:
        self._session.close()

    def call(self, hook: Webhook, payload: WebhookPayload) -> WebhookResult:
        body = payload_json(payload)
        started = self._clock.now()

        def retry_after(state: tenacity.RetryCallState) -> float | None:
            last: _Attempt = state.outcome.result() if state.outcome else _Attempt(None, "", None, "")
            return honoured_retry_after(last.status, last.retry_after, now=self._wall())

        loop = retrying(
            self._policy.with_attempts(max(0, hook.retries) + 1),
            retry=tenacity.retry_if_result(lambda attempt: bool(attempt.retryable)),
            sleep=self._clock.sleep,
            retry_after=retry_after,
            on_give_up=lambda state: state.outcome.result() if state.outcome else None,
        )
        attempt: _Attempt = loop(self._post, hook, body)
        used = int(loop.statistics.get("attempt_number", 1))
        seconds = self._clock.now() - started
        if attempt.status is not None and 200 <= attempt.status <= 202:
            return WebhookResult(ok=True, status=attempt.status, message="", attempts=used, seconds=seconds)
        if attempt.error and attempt.final:
            message = f"POST {hook.url}: {attempt.error}"
        elif attempt.error:
            message = f"POST {hook.url} giving up after {used} attempt(s): {attempt.error}"
        elif attempt.retryable:
            # go-retryablehttp drops the status error: the body is not part of the message.
            message = f"POST {hook.url} giving up after {used} attempt(s)"
        else:
            message = attempt.body
        return WebhookResult(ok=False, status=attempt.status, message=message, attempts=used, seconds=seconds)

    def _post(self, hook: Webhook, body: bytes) -> _Attempt:
        try:
            with warnings.catch_warnings():
                # disableTLS was asked for explicitly; urllib3 need not warn on every call.
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                response = self._session.post(
                    hook.url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=(hook.timeout_seconds, hook.timeout_seconds),
                    verify=not hook.disable_tls,
                    stream=True,
                )
        except (
            requests.exceptions.SSLError,
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ) as err:
            # go-retryablehttp does not retry certificate errors or unusable URLs either.
            return _Attempt(None, "", None, one_line(err), final=True)
        except requests.Timeout:
            return _Attempt(None, "", None, f"timeout: no answer within {hook.timeout_seconds:g}s")
        except requests.RequestException as err:
            return _Attempt(None, "", None, one_line(err))
        try:
            raw = response.raw.read(MAX_ERROR_BODY, decode_content=True) or b""
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raw = f"(reading the body failed: {err})".encode()
        finally:
            response.close()
        return _Attempt(
            response.status_code,
            raw.decode("utf-8", errors="replace"),
            response.headers.get("Retry-After"),
            "",
        )

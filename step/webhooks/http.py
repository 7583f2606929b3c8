"""Webhook calls as Flagger makes them: JSON POST, per-attempt timeout, go-retryablehttp's retries.

Owns: `HttpWebhookCaller`, the `ports.WebhookCaller` over HTTP. The payload is Flagger's
`CanaryWebhookPayload` (`name`, `namespace`, `phase`, `checksum`, and `metadata` only when it is
not empty; no `type`). `retries` extra attempts follow go-retryablehttp v0.7.8's DefaultRetryPolicy
(connection errors and timeouts, 429, and 5xx except 501) and DefaultBackoff (1 s doubling to 30 s,
`Retry-After` honoured on 429 and 503). Success is 200..202. Error texts are Flagger's:
`POST <url> giving up after N attempt(s)` once retries are spent, else the response body.
Must not: decide what a failed hook means (gate, check, rollback signal) or raise for a failed call.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
import warnings
from dataclasses import dataclass
from typing import Protocol

import requests
import urllib3

from step.ports import Clock, WebhookPayload, WebhookResult
from step.spec.model import Webhook

BACKOFF_MIN_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
MAX_ERROR_BODY = 64 * 1024


class _MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


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
    return json.dumps(body).encode("utf-8")


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Retry-After as delta-seconds or an HTTP date (as go-retryablehttp 0.7.8 reads it); None if absent."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def is_retryable_status(status: int) -> bool:
    """go-retryablehttp DefaultRetryPolicy: 429, and 5xx except 501 (Not Implemented)."""
    return status == 429 or (500 <= status <= 599 and status != 501)


def default_backoff(
    attempt: int, *, status: int | None, retry_after: str | None, now: float | None = None
) -> float:
    """go-retryablehttp DefaultBackoff: min * 2**attempt (attempt from 0), capped; Retry-After on 429/503."""
    if status in (429, 503):
        seconds = parse_retry_after(retry_after, now=now if now is not None else time.time())
        if seconds is not None:
            return seconds
    return min(BACKOFF_MAX_SECONDS, BACKOFF_MIN_SECONDS * 2.0 ** min(attempt, 30))


class Backoff(Protocol):
    """How long to wait before retry number `attempt` + 1, given the previous answer."""

    def __call__(self, attempt: int, *, status: int | None, retry_after: str | None) -> float: ...


@dataclass(frozen=True)
class _Attempt:
    status: int | None
    body: str
    retry_after: str | None
    error: str  # a connection-level failure, or ""
    final: bool = False  # a failure go-retryablehttp does not retry (TLS certificate, bad URL)


class HttpWebhookCaller:
    """POSTs Flagger's webhook payload; returns a `WebhookResult`, never raises for a failed call."""

    def __init__(self, *, clock: Clock | None = None, backoff: Backoff = default_backoff) -> None:
        self._clock: Clock = clock if clock is not None else _MonotonicClock()
        self._backoff = backoff
        self._session = requests.Session()
        self._session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
        self._session.mount("https://", requests.adapters.HTTPAdapter(max_retries=0))

    def close(self) -> None:
        self._session.close()

    def call(self, hook: Webhook, payload: WebhookPayload) -> WebhookResult:
        body = payload_json(payload)
        started = self._clock.now()
        attempts_allowed = max(0, hook.retries) + 1
        attempt: _Attempt | None = None
        for number in range(attempts_allowed):
            if number > 0 and attempt is not None:
                self._clock.sleep(
                    self._backoff(number - 1, status=attempt.status, retry_after=attempt.retry_after)
                )
            attempt = self._post(hook, body)
            retryable = (attempt.error != "" and not attempt.final) or (
                attempt.status is not None and is_retryable_status(attempt.status)
            )
            if not retryable:
                break
        assert attempt is not None
        seconds = self._clock.now() - started
        used = number + 1
        if attempt.status is not None and 200 <= attempt.status <= 202:
            return WebhookResult(ok=True, status=attempt.status, message="", attempts=used, seconds=seconds)
        if attempt.error and attempt.final:
            message = f"POST {hook.url}: {attempt.error}"
        elif attempt.error:
            message = f"POST {hook.url} giving up after {used} attempt(s): {attempt.error}"
        elif attempt.status is not None and is_retryable_status(attempt.status):
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
            return _Attempt(None, "", None, " ".join(str(err).split()), final=True)
        except requests.Timeout:
            return _Attempt(None, "", None, f"timeout: no answer within {hook.timeout_seconds:g}s")
        except requests.RequestException as err:
            return _Attempt(None, "", None, " ".join((str(err) or type(err).__name__).split()))
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

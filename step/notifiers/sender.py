"""POSTing one chat message within a small time budget, retried, and never quoting the address.

Owns: `ChatSender.post` (JSON POST, through the AlertProvider's `proxy` when it has one, each attempt
bounded by `ATTEMPT_TIMEOUT_SECONDS` and all of them by the caller's budget), `NOTIFY_POLICY` (what is
retried: connection errors, timeouts, 429 and 5xx; `Retry-After` honoured up to 2 s), run by
`step.retrying`, and `Delivery`, what happened, as data. Flagger sends once with a 5 s timeout and
only logs a failure; we retry a little, and report.
An AlertProvider's address is a secret (a Slack webhook URL grants posting): no message of this
module contains it, its path, or a proxy's credentials; an answer's body is quoted with them masked.
Must not: raise for a failed POST, build payloads, or choose who gets an alert.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from step.clock import MonotonicClock
from step.ports import Clock
from step.retrying import RetryPolicy, parse_retry_after, retrying

ATTEMPT_TIMEOUT_SECONDS = 2.0
# Up to 3 attempts, 0.25-0.5 s then 0.5-1 s apart, none started after 4 s: a receiver that is down costs
# one event at most ~5 s (3 attempts of at most 2 s when it hangs are cut by the caller's budget).
NOTIFY_POLICY = RetryPolicy(
    attempts=3, backoff_base=0.5, backoff_cap=1.0, jitter=0.5, deadline=4.0, retry_after_cap=2.0
)
MAX_BODY_QUOTED = 200


@dataclass(frozen=True, kw_only=True)
class Delivery:
    ok: bool
    status: int | None  # None: no HTTP answer
    attempts: int
    seconds: float
    error: str = ""  # why it failed, without the address


@dataclass(frozen=True)
class _Attempt:
    status: int | None
    body: str
    retry_after: str | None
    error: str  # a connection-level failure, or ""
    final: bool = False  # not worth another attempt (an unusable URL)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status <= 299

    @property
    def transient(self) -> bool:
        if self.error:
            return not self.final
        return self.status is not None and (
            self.status == 429 or (500 <= self.status <= 599 and self.status != 501)
        )


def secrets_of(address: str, proxy: str | None) -> tuple[str, ...]:
    """The strings no message may contain: the address, its path and query, a proxy's credentials."""
    found = [address]
    parts = urllib.parse.urlsplit(address)
    if parts.path not in ("", "/"):
        found.append(parts.path)
    if parts.query:
        found.append(parts.query)
    if proxy:
        proxy_parts = urllib.parse.urlsplit(proxy)
        if proxy_parts.password:
            found += [proxy, proxy_parts.password]
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def mask(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "<address>")
    return text


class ChatSender:
    """POSTs a JSON body; returns a `Delivery`, never raises for a failed call."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        policy: RetryPolicy = NOTIFY_POLICY,
        attempt_timeout: float = ATTEMPT_TIMEOUT_SECONDS,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._policy = policy
        self._attempt_timeout = attempt_timeout
        self._wall = wall
        self._session = requests.Session()
        self._session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
        self._session.mount("https://", requests.adapters.HTTPAdapter(max_retries=0))

    def close(self) -> None:
        self._session.close()

    def post(
        self, address: str, body: Mapping[str, Any], *, proxy: str | None = None, budget: float
    ) -> Delivery:
        """POST `body` to `address`; every attempt and wait ends within `budget` seconds."""
        secrets = secrets_of(address, proxy)
        data = json.dumps(body).encode("utf-8")
        started = self._clock.now()
        policy = RetryPolicy(
            attempts=self._policy.attempts,
            backoff_base=self._policy.backoff_base,
            backoff_cap=self._policy.backoff_cap,
            jitter=self._policy.jitter,
            deadline=min(self._policy.deadline, budget),
            retry_after_cap=self._policy.retry_after_cap,
        )

        def attempt() -> _Attempt:
            left = budget - (self._clock.now() - started)
            if left <= 0:
                return _Attempt(None, "", None, f"no time left of the {budget:g}s budget")
            return self._post(address, data, proxy=proxy, timeout=min(self._attempt_timeout, left))

        def retry_after(state: tenacity.RetryCallState) -> float | None:
            last: _Attempt | None = state.outcome.result() if state.outcome else None
            if last is None or last.status not in (429, 503):
                return None
            return parse_retry_after(last.retry_after, now=self._wall())

        def worth_retrying(last: _Attempt) -> bool:
            return not last.ok and last.transient and self._clock.now() - started < budget

        loop = retrying(
            policy,
            retry=tenacity.retry_if_result(worth_retrying),
            sleep=self._clock.sleep,
            retry_after=retry_after,
            on_give_up=lambda state: state.outcome.result() if state.outcome else None,
        )
        last: _Attempt = loop(attempt)
        used = int(loop.statistics.get("attempt_number", 1))
        seconds = self._clock.now() - started
        if last.ok:
            return Delivery(ok=True, status=last.status, attempts=used, seconds=seconds)
        if last.error:
            error = last.error
        else:
            quoted = mask(last.body.strip(), secrets)[:MAX_BODY_QUOTED]
            error = f"HTTP {last.status}" + (f": {quoted}" if quoted else "")
        return Delivery(
            ok=False, status=last.status, attempts=used, seconds=seconds, error=mask(error, secrets)
        )

    def _post(self, address: str, data: bytes, *, proxy: str | None, timeout: float) -> _Attempt:
        proxies = {"http": proxy, "https": proxy} if proxy else None
        try:
            response = self._session.post(
                address,
                data=data,
                headers={"Content-Type": "application/json"},
                timeout=(timeout, timeout),
                proxies=proxies,
            )
        # The library's texts quote the URL: say what happened in our own words instead.
        except requests.exceptions.ProxyError:
            return _Attempt(None, "", None, "the proxy refused or could not be reached")
        except requests.exceptions.SSLError:
            return _Attempt(None, "", None, "TLS handshake failed")
        except requests.Timeout:
            return _Attempt(None, "", None, f"no answer within {timeout:.1f}s")
        except requests.ConnectionError:
            return _Attempt(None, "", None, "connection failed (receiver down or unreachable)")
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ):
            return _Attempt(None, "", None, "the address is not a usable http(s) URL", final=True)
        except requests.RequestException as err:
            return _Attempt(None, "", None, f"request failed ({type(err).__name__})")
        try:
            return _Attempt(
                response.status_code, response.text[:4096], response.headers.get("Retry-After"), ""
            )
        finally:
            response.close()

"""Retries of the step's HTTP calls, as data: the policy, its arithmetic, `Retry-After`, and the one loop.

Owns: `RetryPolicy` (how many attempts, the backoff schedule, jitter, an overall deadline, how far a
server's `Retry-After` is honoured), `parse_retry_after` (the one reading of that header, RFC 9110
section 10.2.3), and `retrying()`, the one way a policy becomes a tenacity loop. The Kubernetes
client, the webhook caller and the Prometheus provider each pass their own policy and their own rule
of what is worth another attempt.
Must not: perform I/O, sleep or read the clock itself (the caller injects `sleep` and passes `now`);
import `kubernetes`, `requests` or anything of ours above `step.errors`.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import tenacity

_DELAY_SECONDS = re.compile(r"[0-9]+")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How one call is retried when the failure is transient.

    `attempts` counts the first try: 1 means no retries (what tests use). Retry n (1-based) waits
    `min(cap, base * 2**(n-1))`, scaled down by up to `jitter` (0.5 → a factor in [0.5, 1]), unless
    the server sent `Retry-After`, which is honoured up to `retry_after_cap`. No retry starts once
    `deadline` seconds have passed since the first attempt (`math.inf`: no deadline).
    """

    attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    jitter: float = 0.5
    deadline: float = 30.0
    retry_after_cap: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"RetryPolicy.jitter must be within [0, 1], got {self.jitter}")
        if self.backoff_base < 0 or self.backoff_cap < 0 or self.deadline < 0 or self.retry_after_cap < 0:
            raise ValueError(
                "RetryPolicy backoff_base, backoff_cap, deadline and retry_after_cap must not be negative"
            )

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        """One attempt, no waiting: for tests and for calls where the caller retries itself."""
        return cls(attempts=1, backoff_base=0.0, backoff_cap=0.0, jitter=0.0, deadline=0.0)

    def with_attempts(self, attempts: int) -> RetryPolicy:
        """The same schedule with another number of attempts (a webhook's own `retries` + 1)."""
        return replace(self, attempts=attempts)

    def backoff(self, retry: int) -> float:
        """The un-jittered wait before retry number `retry` (1-based)."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        # 2**(retry-1) overflows floats only for absurd attempt counts; cap the exponent anyway.
        return min(self.backoff_cap, self.backoff_base * 2.0 ** min(retry - 1, 60))

    def delay(
        self,
        retry: int,
        *,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """The wait before retry number `retry`: the server's Retry-After if given, else jittered backoff."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.retry_after_cap))
        return self.backoff(retry) * (1.0 - self.jitter * rand())

    def schedule(self) -> tuple[float, ...]:
        """The un-jittered waits between the attempts, for documentation and tests."""
        return tuple(self.backoff(n) for n in range(1, self.attempts))


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header; None when absent or not what RFC 9110 allows.

    The header is delay-seconds (ASCII digits only: no sign, no fraction, as go-retryablehttp and
    client-go read it too) or an HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms,
    all in GMT), which counts from `now` (Unix time) and is 0 once past. The result may be `inf`
    for an absurd number of digits: callers cap it (`RetryPolicy.retry_after_cap`).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)  # asctime and "-0000" carry no zone; HTTP dates are GMT
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retrying(
    policy: RetryPolicy,
    *,
    retry: tenacity.retry_base,
    sleep: Callable[[float], None],
    retry_after: Callable[[tenacity.RetryCallState], float | None] = lambda _state: None,
    before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
    on_give_up: Callable[[tenacity.RetryCallState], Any] | None = None,
) -> tenacity.Retrying:
    """The tenacity loop for `policy`: stop after its attempts or its deadline, wait its delay.

    `retry` says which outcomes are worth another attempt; `retry_after` reads the server's
    `Retry-After` (in seconds, already parsed) from the failed attempt. When retries run out, the last
    exception is raised again, or `on_give_up(state)` is returned (for outcomes that are results).
    """
    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(policy.attempts)
    if math.isfinite(policy.deadline):
        stop = stop | tenacity.stop_after_delay(policy.deadline)

    def wait(state: tenacity.RetryCallState) -> float:
        return policy.delay(state.attempt_number, retry_after=retry_after(state))

    return tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=retry,
        sleep=sleep,
        reraise=True,
        before_sleep=before_sleep,
        retry_error_callback=on_give_up,
    )

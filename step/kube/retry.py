"""The retry policy for Kubernetes API requests, as data, and its pure arithmetic.

Owns: `RetryPolicy` (how many attempts, the backoff schedule, jitter, an overall deadline), the
decision which HTTP statuses are transient, and parsing `Retry-After`. `step.kube.client` feeds these
to tenacity in its one request function.
Must not: perform I/O, sleep, or read the clock; import `kubernetes`.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How one API request is retried when the failure is transient.

    `attempts` counts the first try: 1 means no retries (what tests use). Retry n (1-based) waits
    `min(cap, base * 2**(n-1))`, scaled down by up to `jitter` (0.5 → a factor in [0.5, 1]), unless
    the server sent `Retry-After`, which is honoured up to `retry_after_cap`. No retry starts once
    `deadline` seconds have passed since the first attempt.
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
        if self.backoff_base < 0 or self.backoff_cap < 0 or self.deadline < 0:
            raise ValueError("RetryPolicy backoff_base, backoff_cap and deadline must not be negative")

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        """One attempt, no waiting: for tests and for calls where the caller retries itself."""
        return cls(attempts=1, backoff_base=0.0, backoff_cap=0.0, jitter=0.0, deadline=0.0)

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


def is_transient_status(status: int | None) -> bool:
    """Statuses worth another attempt: no answer at all (None), 429, and any 5xx."""
    return status is None or status == 429 or 500 <= status <= 599


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if absent/bad.

    `now` is the current Unix time, needed only for the HTTP-date form.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if now is None:
        return None
    return max(0.0, when.timestamp() - now)

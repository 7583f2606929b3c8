"""The real clock: `time.monotonic` and `time.sleep`, behind `ports.Clock`.

Owns: the one place the running program reads and waits on time. Tests inject a fake instead.
Must not: be imported by `step.analysis`, `step.spec` or `step.ports` (they take time as data).
"""

from __future__ import annotations

import time


class MonotonicClock:
    """`ports.Clock` on the process's monotonic clock."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    @staticmethod
    def wall() -> float:
        """Seconds since the epoch, for timestamps that people read (never for scheduling)."""
        return time.time()

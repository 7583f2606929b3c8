"""The outcome of one run: the decision, the reason, where traffic is, and the exit code.

Owns: `Outcome`, the one object from which the results, the JSON report, the job summary and the
process exit code are all derived. The exit code comes from `step.contract.DEFAULT_EXIT_CODES`,
unless an error (rollback failed: 5; bad input: 2) or a signal (130/143) says otherwise.
Must not: decide anything about the canary (the state machine does), or do I/O.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from step.contract import DEFAULT_EXIT_CODES, Decision
from step.errors import ExitCode, RollbackFailed, StepError

_SIGNAL_EXIT_CODES = {
    int(signal.SIGINT): ExitCode.INTERRUPTED_INT,
    int(signal.SIGTERM): ExitCode.INTERRUPTED_TERM,
}


@dataclass(frozen=True, kw_only=True)
class Outcome:
    decision: Decision
    reason: str  # one word, e.g. failed-checks-threshold
    message: str  # one line a person reads
    canary_revision: str | None = None
    primary_revision: str | None = None
    canary_weight: int = 0  # the last canary weight reached
    failed_checks: int = 0
    iterations: int = 0
    traffic: str = "untouched"  # where traffic is now, in words
    error: StepError | None = None
    signal: int | None = None  # the signal that interrupted the run
    service: Mapping[str, Any] | None = field(default=None)  # the Service as it is now (exit 5)

    @property
    def exit_code(self) -> ExitCode:
        if isinstance(self.error, RollbackFailed):
            return self.error.exit_code  # traffic may be split: that outranks an interruption
        if self.signal is not None:
            return _SIGNAL_EXIT_CODES.get(self.signal, ExitCode.INTERRUPTED_TERM)
        if self.error is not None:
            return self.error.exit_code
        return DEFAULT_EXIT_CODES[self.decision]

    def headline(self) -> str:
        """The last line on stderr: the decision, why, where traffic is, the exit code."""
        return (
            f"{self.decision.value} ({self.reason}): {self.message.rstrip('.')}. Traffic: {self.traffic}. "
            f"Exit {int(self.exit_code)}."
        )


def describe_traffic(percent_by_revision: Mapping[str, int]) -> str:
    """`100% on podinfo-00001` or `90% on podinfo-00001, 10% on podinfo-00002`."""
    parts = [f"{pct}% on {rev}" for rev, pct in sorted(percent_by_revision.items(), key=lambda kv: -kv[1])]
    return ", ".join(parts) if parts else "no traffic reported"

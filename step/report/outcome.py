"""The outcome of one run: the decision, the reason, where traffic is, and the exit code.

Owns: `Outcome`, the one object from which the results, the JSON report, the job summary and the
process exit code are all derived. The exit code comes from `step.contract.DEFAULT_EXIT_CODES`,
unless an error (rollback failed: 5; bad input: 2) or a signal (130/143) says otherwise. Also building
it from the machine's `Finish` (`outcome_of`), and the Service described for people (`traffic_of`,
`service_state`).
Must not: decide anything about the canary (the state machine does), or do I/O.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from step.analysis.protocol import Finish
from step.contract import DEFAULT_EXIT_CODES, Decision
from step.errors import ErrorInfo, ExitCode, RollbackFailed
from step.ports import ServiceView, TrafficTarget, describe_traffic

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
    error: ErrorInfo | None = None
    signal: int | None = None  # the signal that interrupted the run
    service: Mapping[str, Any] | None = field(default=None)  # the Service as it is now (exit 5)

    @property
    def exit_code(self) -> ExitCode:
        if self.error is not None and self.error.kind == RollbackFailed.__name__:
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


def traffic_of(view: ServiceView) -> str:
    """Where the Service's status says traffic goes, in words."""
    return describe_traffic(view.status_traffic)


def service_state(view: ServiceView) -> dict[str, Any]:
    """The Service as a person needs to see it when traffic may be split."""

    def targets(ts: tuple[TrafficTarget, ...]) -> list[dict[str, Any]]:
        return [
            {
                "revisionName": t.revision_name,
                "latestRevision": t.latest_revision,
                "tag": t.tag,
                "percent": t.percent,
            }
            for t in ts
        ]

    return {
        "name": view.name,
        "namespace": view.namespace,
        "generation": view.generation,
        "observedGeneration": view.observed_generation,
        "primaryRevision": view.primary_revision,
        "latestCreatedRevision": view.latest_created_revision,
        "latestReadyRevision": view.latest_ready_revision,
        "ready": view.ready,
        "readyReason": view.ready_reason,
        "readyMessage": view.ready_message,
        "specTraffic": targets(view.spec_traffic),
        "statusTraffic": targets(view.status_traffic),
    }


def outcome_of(
    done: Finish,
    *,
    failed_checks: int,
    iterations: int,
    canary_weight: int,
    view: ServiceView | None,
    service: Mapping[str, Any] | None = None,
) -> Outcome:
    """The outcome of a run the machine finished; `service` is the Service shown when `done.show_service`."""
    traffic = traffic_of(view) if view is not None else "untouched"
    if done.show_service:
        traffic = f"possibly split, the Service shows {traffic}"
    return Outcome(
        decision=done.decision,
        reason=done.reason.value,
        message=done.message,
        canary_revision=done.canary_revision,
        primary_revision=done.primary_revision,
        canary_weight=canary_weight,
        failed_checks=failed_checks,
        iterations=iterations,
        traffic=traffic,
        error=done.error,
        signal=done.signal,
        service=service,
    )

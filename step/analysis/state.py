"""The analysis state: plain data that another process can read back, and the words it is told in.

Owns: `Phase` (Flagger's Canary phases), `Reason` (every `reason` result a run can end with), `Stage`
(which answer the machine waits for), `Config` (the Canary spec and the run's options; never saved)
and `State` with its versioned JSON form (`State.to_json()`, `State.from_json(data, config)`), plus
the two ways to start: `initial_state` and `resume` (from a saved state, at its weight, with its
failed checks, without repeating the pre-rollout hooks).
Times are wall-clock seconds (epoch), so a saved state means the same in another process.
Must not: decide anything (the machine does), do I/O, or read the clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from step.analysis.evaluate import DEFAULT_SCRAPE_INTERVAL
from step.analysis.records import CheckRecord, EventRecord, HookRecord
from step.spec.model import Canary

if TYPE_CHECKING:
    from step.analysis.protocol import Finish, ServiceFacts

# Argo Rollouts' DefaultConsecutiveErrorLimit: the run stops on the 5th provider error in a row.
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4

STATE_FORMAT_VERSION = 1


class Phase(enum.StrEnum):
    """Flagger's Canary phases that a Knative run passes through (Promoting/Finalising collapse)."""

    INITIALIZED = "Initialized"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    WAITING_PROMOTION = "WaitingPromotion"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Reason(enum.StrEnum):
    """The `reason` result: one word for why the run ended as it did. Every reason is here."""

    INITIALIZED = "initialized"
    UNANALYSED_REVISION = "newest-revision-already-serving"
    NO_NEW_REVISION = "no-new-revision"
    ANALYSIS_PASSED = "analysis-passed"
    ANALYSIS_SKIPPED = "analysis-skipped"
    SUSPENDED = "suspended"
    FAILED_CHECKS = "failed-checks-threshold"
    PROGRESS_DEADLINE = "progress-deadline"
    CANARY_UNHEALTHY = "canary-unhealthy"  # the canary revision failed after it was Ready
    MANUAL_ROLLBACK = "manual-rollback"
    METRIC_ERRORS = "metrics-provider-errors"
    METRICS_OFFLINE = "metrics-server-unreachable"
    INFRASTRUCTURE = "infrastructure-error"
    INVALID_SPEC = "invalid-spec"
    USAGE = "usage-error"  # a mistake no retry can fix: an option, a file, a context, a container, a URL
    NOT_FOUND = "not-found"  # the Knative Service, the Canary, a MetricTemplate or a Secret does not exist
    NO_SERVING_REVISION = "no-serving-revision"
    TIMEOUT = "timeout"
    ROLLBACK_FAILED = "rollback-failed"
    INTERRUPTED_SIGTERM = "interrupted-sigterm"
    INTERRUPTED_SIGINT = "interrupted-sigint"
    CRASHED = "crashed"
    LEASE_LOST = "lease-lost"
    LOCKED = "locked"
    ALREADY_PROMOTED = "already-promoted"
    # Written by the shipped launchers (Tekton, Argo, the action) before canary-step starts, so a usage
    # error or a kill still leaves results; canary-step itself never ends with it.
    NO_RESULTS_WRITTEN = "no-results-written"

    @classmethod
    def interrupted_by(cls, signal_name: str) -> Reason:
        """`interrupted-sigterm` for SIGTERM, `interrupted-sigint` for SIGINT; `crashed` otherwise."""
        return {"SIGTERM": cls.INTERRUPTED_SIGTERM, "SIGINT": cls.INTERRUPTED_SIGINT}.get(
            signal_name, cls.CRASHED
        )


class Stage(enum.Enum):
    """Which answer the machine waits for."""

    START = "start"  # an Observed: a new tick
    PREFLIGHT = "preflight"  # a ProvidersChecked, before the first tick acts
    DEPLOYED = "deployed"  # an Observed after Deploy
    CONFIRM_ROLLOUT = "confirm-rollout"
    ROLLBACK_HOOKS = "rollback-hooks"
    TAGGED = "tagged"  # an Observed after Tag: the canary revision's tagged URL (blue/green)
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT_HOOKS = "rollout-hooks"
    METRICS = "metrics"
    CONFIRM_TRAFFIC = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    DONE = "done"


@dataclass(frozen=True, kw_only=True)
class Config:
    """What the run was asked to do. Not part of the saved state: the resuming run brings its own."""

    canary: Canary
    deploy: bool = False  # --image was given: pin first, then ask the driver to deploy
    consecutive_error_limit: int = DEFAULT_CONSECUTIVE_ERROR_LIMIT
    timeout_seconds: float | None = None  # the run's overall --timeout
    # The canary revision this run came for, seen before it waited for the Service's lease (None when
    # there was none): if it is the primary by the time the run may act, another run promoted it.
    came_for: str | None = None
    rollback_resumed: bool = False  # --on-interrupted rollback: roll a resumed analysis back at once
    scrape_interval_seconds: float = DEFAULT_SCRAPE_INTERVAL  # Prometheus's, for the no-data grace
    # The run's preflight (`step.preflight`) already found every metrics provider answering: the
    # machine does not ask again before the first tick.
    providers_checked: bool = False


@dataclass(frozen=True, kw_only=True)
class State:
    config: Config
    started_at: float  # wall-clock seconds: when this run started
    stage: Stage = Stage.START
    phase: Phase | None = None  # None until the first tick has looked at the Service
    primary: str | None = None
    canary: str | None = None
    canary_weight: int = 0
    failed_checks: int = 0
    iterations: int = 0  # analysis ticks run (ticks that ran pre-rollout hooks or the analysis)
    consecutive_errors: int = 0
    progressing_since: float | None = None  # wall-clock seconds
    not_ready_reported: bool = False
    pinned_this_run: bool = False
    traffic_moved: bool = False  # whether a write may have sent traffic to the canary
    promoted: bool = False  # a Promote was issued
    # Blue/green: the iterations passed this analysis (Flagger's status.iterations for Blue/Green);
    # the canary strategy leaves it at 0.
    iterations_passed: int = 0
    canary_url: str | None = None  # the canary revision's tagged URL, as Knative reports it
    interrupted: int | None = None  # the signal that is ending the run
    metric_index: int = 0
    pending_finish: Finish | None = None
    stashed_facts: ServiceFacts | None = None  # the tick's facts while an answer is due before acting
    outcome: Finish | None = None
    resumed_from: int | None = None  # the tick index of the saved state this run resumed
    first_traffic_at: float | None = None  # wall-clock seconds: the canary's first traffic this analysis
    measured_with_traffic: bool = False  # a tick has measured since then (the no-data grace's first tick)
    # the tick being recorded
    tick_index: int = 0
    tick_started: float = 0.0  # wall-clock seconds
    checks: tuple[CheckRecord, ...] = ()
    hooks: tuple[HookRecord, ...] = ()
    events: tuple[EventRecord, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.stage is Stage.DONE

    def to_json(self) -> dict[str, Any]:
        """The state as JSON-ready data, with a `version`; the config is not in it."""
        return {
            "version": STATE_FORMAT_VERSION,
            "startedAt": self.started_at,
            "stage": self.stage.value,
            "phase": self.phase.value if self.phase else None,
            "primaryRevision": self.primary,
            "canaryRevision": self.canary,
            "canaryWeight": self.canary_weight,
            "failedChecks": self.failed_checks,
            "iterations": self.iterations,
            "consecutiveErrors": self.consecutive_errors,
            "progressingSince": self.progressing_since,
            "notReadyReported": self.not_ready_reported,
            "pinnedThisRun": self.pinned_this_run,
            "trafficMoved": self.traffic_moved,
            "promoted": self.promoted,
            "iterationsPassed": self.iterations_passed,
            "canaryUrl": self.canary_url,
            "interrupted": self.interrupted,
            "metricIndex": self.metric_index,
            "pendingFinish": self.pending_finish.to_json() if self.pending_finish else None,
            "stashedFacts": self.stashed_facts.to_json() if self.stashed_facts else None,
            "outcome": self.outcome.to_json() if self.outcome else None,
            "resumedFrom": self.resumed_from,
            "firstTrafficAt": self.first_traffic_at,
            "measuredWithTraffic": self.measured_with_traffic,
            "tickIndex": self.tick_index,
            "tickStarted": self.tick_started,
            "checks": [c.to_json() for c in self.checks],
            "hooks": [h.to_json() for h in self.hooks],
            "events": [e.to_json() for e in self.events],
            "errors": list(self.errors),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], config: Config) -> State:
        """Read back `to_json`'s data. Raises ValueError on another version or a malformed state."""
        from step.analysis.protocol import Finish, ServiceFacts  # noqa: PLC0415 (protocol imports this module)

        if data.get("version") != STATE_FORMAT_VERSION:
            raise ValueError(
                f"saved analysis state has version {data.get('version')!r}, not {STATE_FORMAT_VERSION}"
            )
        try:
            return cls(
                config=config,
                started_at=float(data["startedAt"]),
                stage=Stage(data["stage"]),
                phase=Phase(data["phase"]) if data["phase"] else None,
                primary=data["primaryRevision"],
                canary=data["canaryRevision"],
                canary_weight=int(data["canaryWeight"]),
                failed_checks=int(data["failedChecks"]),
                iterations=int(data["iterations"]),
                consecutive_errors=int(data["consecutiveErrors"]),
                progressing_since=data["progressingSince"],
                not_ready_reported=bool(data["notReadyReported"]),
                pinned_this_run=bool(data["pinnedThisRun"]),
                traffic_moved=bool(data["trafficMoved"]),
                promoted=bool(data["promoted"]),
                iterations_passed=int(data.get("iterationsPassed", 0)),
                canary_url=data.get("canaryUrl"),
                interrupted=data["interrupted"],
                metric_index=int(data["metricIndex"]),
                pending_finish=Finish.from_json(data["pendingFinish"]) if data["pendingFinish"] else None,
                stashed_facts=ServiceFacts.from_json(data["stashedFacts"]) if data["stashedFacts"] else None,
                outcome=Finish.from_json(data["outcome"]) if data["outcome"] else None,
                resumed_from=data["resumedFrom"],
                first_traffic_at=data.get("firstTrafficAt"),
                measured_with_traffic=bool(data.get("measuredWithTraffic", True)),
                tick_index=int(data["tickIndex"]),
                tick_started=float(data["tickStarted"]),
                checks=tuple(CheckRecord.from_json(c) for c in data["checks"]),
                hooks=tuple(HookRecord.from_json(h) for h in data["hooks"]),
                events=tuple(EventRecord.from_json(e) for e in data["events"]),
                errors=tuple(str(e) for e in data["errors"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"saved analysis state is malformed: {err!r}") from None


def initial_state(config: Config, *, now: float) -> State:
    return State(config=config, started_at=now, tick_started=now)


def resume(saved: State, *, now: float) -> State:
    """Go on with a saved analysis in a new run, from the start of its next tick.

    The weight, the failed checks, the iterations and the revisions are kept, so the next tick is an
    analysis tick at the saved weight (pre-rollout hooks ran already); `started_at` is this run's
    start, so `--timeout` counts from it. A state saved mid-tick restarts that tick.
    """
    if saved.done:
        raise ValueError("the saved analysis has finished; there is nothing to resume")
    if saved.phase is None or saved.primary is None:
        return replace(initial_state(saved.config, now=now), resumed_from=saved.tick_index)
    return replace(
        saved,
        started_at=now,
        stage=Stage.START,
        metric_index=0,
        pending_finish=None,
        stashed_facts=None,
        interrupted=None,
        resumed_from=saved.tick_index,
        tick_started=now,
        checks=(),
        hooks=(),
        events=(),
        errors=(),
    )

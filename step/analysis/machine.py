"""The canary analysis as a pure state machine: `step(state, observation, now) -> (state, actions)`.

Owns: every decision of one run, with Flagger's semantics for Knative (flagger-semantics.md 1.3-1.7):
initialisation, the confirm-rollout gate (phase Waiting), the progress deadline for the canary
revision, pre-rollout hooks and the first step on the first Progressing tick, then per tick rollback
hooks -> threshold -> rollout hooks -> built-in metrics -> MetricTemplate metrics (the first failure
ends the tick), confirm-traffic-increase before each step, confirm-promotion at max weight (phase
WaitingPromotion), promotion on the tick after max weight, rollback, post-rollout hooks, a restart
when a newer revision appears, and metric-provider errors counted apart from failed checks.

The protocol: each call returns actions for the driver to perform in order. The last action may be a
request (`RunHooks`, `Measure`, `Deploy`, `Wait`); its answer is the next observation. Any action that
fails is answered with `ActionFailed` instead, and the remaining actions are dropped. `Finish` ends
the run.

Must not: do I/O, read the clock (time arrives as `now`), sleep, or import anything that does.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

from step.analysis import messages as msg
from step.analysis.evaluate import Reading, Verdict, judge
from step.analysis.schedule import TOTAL_WEIGHT, max_weight, next_step_weight
from step.contract import Decision
from step.errors import RollbackFailed, StepError
from step.ports import CanaryStatus, EventType, RevisionPhase
from step.spec.model import Canary, Metric, WebhookType

# Argo Rollouts' DefaultConsecutiveErrorLimit: the run stops on the 5th provider error in a row.
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4


class Phase(enum.StrEnum):
    """Flagger's Canary phases that a Knative run passes through (Promoting/Finalising collapse)."""

    INITIALIZED = "Initialized"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    WAITING_PROMOTION = "WaitingPromotion"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Reason(enum.StrEnum):
    """The `reason` result: one word for why the run ended as it did."""

    INITIALIZED = "initialized"
    UNANALYSED_REVISION = "newest-revision-already-serving"
    NO_NEW_REVISION = "no-new-revision"
    ANALYSIS_PASSED = "analysis-passed"
    ANALYSIS_SKIPPED = "analysis-skipped"
    FAILED_CHECKS = "failed-checks-threshold"
    PROGRESS_DEADLINE = "progress-deadline"
    MANUAL_ROLLBACK = "manual-rollback"
    METRIC_ERRORS = "metrics-provider-errors"
    INFRASTRUCTURE = "infrastructure-error"
    NO_SERVING_REVISION = "no-serving-revision"
    TIMEOUT = "timeout"
    ROLLBACK_FAILED = "rollback-failed"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, kw_only=True)
class Config:
    canary: Canary
    deploy: bool = False  # --image was given: pin first, then ask the driver to deploy
    consecutive_error_limit: int = DEFAULT_CONSECUTIVE_ERROR_LIMIT
    timeout_seconds: float | None = None  # the run's overall --timeout

    @property
    def threshold(self) -> int:
        """Flagger's GetAnalysisThreshold: 0 or less means 1."""
        return max(1, self.canary.analysis.threshold)


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True, kw_only=True)
class ServiceFacts:
    """What the driver saw on the Knative Service at the start of a tick."""

    primary_revision: str | None  # the flagger.app/primary-revision annotation
    latest_created_revision: str | None
    serving_revision: str | None  # the revision holding the most of status.traffic
    canary_phase: RevisionPhase | None = None  # readiness of latest_created_revision
    canary_reason: str = ""


@dataclass(frozen=True, kw_only=True)
class Observed:
    """A fresh look at the Service: the start of a tick (or the answer to `Deploy`/`Wait`)."""

    facts: ServiceFacts


@dataclass(frozen=True, kw_only=True)
class HookRun:
    name: str
    ok: bool
    status: int | None = None
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class HooksRan:
    """The answer to `RunHooks`: the hooks that ran, in order (the driver stops as `stops_after` says)."""

    kind: WebhookType
    results: tuple[HookRun, ...]


@dataclass(frozen=True, kw_only=True)
class Measured:
    """The answer to `Measure`."""

    metric: str
    reading: Reading


@dataclass(frozen=True, kw_only=True)
class ActionFailed:
    """An action raised an infrastructure error after its retries."""

    action: Action
    message: str


Observation = Observed | HooksRan | Measured | ActionFailed


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, kw_only=True)
class Emit:
    type: EventType
    message: str


@dataclass(frozen=True, kw_only=True)
class WriteStatus:
    status: CanaryStatus


@dataclass(frozen=True, kw_only=True)
class Pin:
    """Set the annotation to `primary` and route 100 % to it."""

    primary: str


@dataclass(frozen=True, kw_only=True)
class Deploy:
    """Set the image (request; answered with `Observed` once the new revision exists)."""


@dataclass(frozen=True, kw_only=True)
class Route:
    primary: str
    canary: str
    canary_weight: int


@dataclass(frozen=True, kw_only=True)
class Promote:
    canary: str


@dataclass(frozen=True, kw_only=True)
class Restore:
    """Route 100 % back to the primary (a rollback); `canary` keeps its 0 % entry."""

    primary: str
    canary: str | None


@dataclass(frozen=True, kw_only=True)
class RunHooks:
    """Request: call the hooks of `kind` in list order with payload phase `phase`."""

    kind: WebhookType
    phase: Phase


@dataclass(frozen=True, kw_only=True)
class Measure:
    """Request: measure `metric` with `{{ route }}` = `canary_revision`."""

    metric: Metric
    canary_revision: str


@dataclass(frozen=True, kw_only=True)
class EndTick:
    record: TickRecord


@dataclass(frozen=True, kw_only=True)
class Wait:
    """Request: wait until `until` (monotonic seconds), or until the Service changes if asked."""

    until: float
    wake_on_change: bool = False


@dataclass(frozen=True, kw_only=True)
class Finish:
    decision: Decision
    reason: Reason
    message: str
    error: StepError | None = None  # set when the exit code is not the decision's own (rollback failed)
    primary_revision: str | None = None  # the revision that serves all traffic now
    canary_revision: str | None = None  # the revision that was analysed


Action = (
    Emit
    | WriteStatus
    | Pin
    | Deploy
    | Route
    | Promote
    | Restore
    | RunHooks
    | Measure
    | EndTick
    | Wait
    | Finish
)


def stops_after(kind: WebhookType, result: HookRun) -> bool:
    """Flagger runs hooks of one type in order and stops at the first failure, except rollback
    hooks, which stop at the first success (a success there *is* the rollback signal)."""
    return result.ok if kind is WebhookType.ROLLBACK else not result.ok


# --------------------------------------------------------------------------- the timeline


@dataclass(frozen=True, kw_only=True)
class CheckRecord:
    metric: str
    verdict: Verdict
    value: float | None = None
    threshold_min: float | None = None
    threshold_max: float | None = None
    message: str = ""
    query: str = ""


@dataclass(frozen=True, kw_only=True)
class HookRecord:
    name: str
    type: str
    ok: bool
    status: int | None = None
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    type: EventType
    message: str


@dataclass(frozen=True, kw_only=True)
class TickRecord:
    """One tick of the run, as the report shows it."""

    index: int
    at: float  # seconds since the run started
    phase: str
    primary_revision: str | None
    canary_revision: str | None
    canary_weight: int
    failed_checks: int
    consecutive_errors: int
    checks: tuple[CheckRecord, ...] = ()
    hooks: tuple[HookRecord, ...] = ()
    events: tuple[EventRecord, ...] = ()
    errors: tuple[str, ...] = ()


# --------------------------------------------------------------------------- state


class Stage(enum.Enum):
    """Which answer the machine waits for."""

    START = "start"  # an Observed: a new tick
    DEPLOYED = "deployed"  # an Observed after Deploy
    CONFIRM_ROLLOUT = "confirm-rollout"
    ROLLBACK_HOOKS = "rollback-hooks"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT_HOOKS = "rollout-hooks"
    METRICS = "metrics"
    CONFIRM_TRAFFIC = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    DONE = "done"


@dataclass(frozen=True, kw_only=True)
class State:
    config: Config
    started_at: float
    stage: Stage = Stage.START
    phase: Phase | None = None  # None until the first tick has looked at the Service
    primary: str | None = None
    canary: str | None = None
    canary_weight: int = 0
    failed_checks: int = 0
    iterations: int = 0  # analysis ticks run (ticks that ran pre-rollout hooks or the analysis)
    consecutive_errors: int = 0
    progressing_since: float | None = None
    not_ready_reported: bool = False
    pinned_this_run: bool = False
    traffic_moved: bool = False  # whether a write may have sent traffic to the canary
    metric_index: int = 0
    pending_finish: Finish | None = None
    stashed_facts: ServiceFacts | None = None  # the tick's facts while a confirm-rollout answer is due
    outcome: Finish | None = None
    # the tick being recorded
    tick_index: int = 0
    tick_started: float = 0.0
    checks: tuple[CheckRecord, ...] = ()
    hooks: tuple[HookRecord, ...] = ()
    events: tuple[EventRecord, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.stage is Stage.DONE


def initial_state(config: Config, *, now: float) -> State:
    return State(config=config, started_at=now, tick_started=now)


# --------------------------------------------------------------------------- the step function


class _Step:
    """One call of `step`: a working copy of the state and the actions produced so far."""

    def __init__(self, state: State, now: float) -> None:
        self.s = state
        self.now = now
        self.actions: list[Action] = []

    # ---- small helpers

    @property
    def canary_spec(self) -> Canary:
        return self.s.config.canary

    @property
    def who(self) -> tuple[str, str]:
        return self.canary_spec.name, self.canary_spec.namespace

    @property
    def target(self) -> tuple[str, str]:
        return self.canary_spec.target_name, self.canary_spec.namespace

    def set(self, **changes: object) -> None:
        self.s = replace(self.s, **changes)  # type: ignore[arg-type]

    def emit(self, type_: EventType, message: str) -> None:
        self.actions.append(Emit(type=type_, message=message))
        self.set(events=(*self.s.events, EventRecord(type=type_, message=message)))

    def info(self, message: str) -> None:
        self.emit("Normal", message)

    def warn(self, message: str) -> None:
        self.emit("Warning", message)

    def status(self) -> None:
        phase = self.s.phase or Phase.INITIALIZED
        self.actions.append(
            WriteStatus(
                status=CanaryStatus(
                    phase=phase.value,
                    canary_weight=self.s.canary_weight,
                    failed_checks=self.s.failed_checks,
                    iterations=self.s.iterations,
                    message=_PHASE_MESSAGES[phase],
                )
            )
        )

    def request(self, action: Action, stage: Stage) -> None:
        self.actions.append(action)
        self.set(stage=stage)

    def hooks(self, kind: WebhookType) -> bool:
        return bool(self.canary_spec.analysis.hooks(kind))

    def record_hooks(self, ran: HooksRan) -> None:
        recs = tuple(
            HookRecord(name=r.name, type=ran.kind.value, ok=r.ok, status=r.status, message=r.message)
            for r in ran.results
        )
        self.set(hooks=self.s.hooks + recs)

    def start_tick(self) -> None:
        self.set(
            tick_index=self.s.tick_index + 1,
            tick_started=self.now,
            checks=(),
            hooks=(),
            events=(),
            errors=(),
        )

    def end_tick(self, *, wake_on_change: bool = False, until: float | None = None) -> None:
        """Close the tick's record and wait for the next tick, `interval` after this one started."""
        self.close_record()
        interval = self.canary_spec.analysis.interval_seconds
        wake = self.s.tick_started + interval if until is None else until
        timeout = self.s.config.timeout_seconds
        if timeout is not None:
            wake = min(wake, self.s.started_at + timeout)
        self.request(Wait(until=wake, wake_on_change=wake_on_change), Stage.START)

    def close_record(self) -> None:
        record = TickRecord(
            index=self.s.tick_index,
            at=round(self.s.tick_started - self.s.started_at, 3),
            phase=(self.s.phase or Phase.INITIALIZED).value,
            primary_revision=self.s.primary,
            canary_revision=self.s.canary,
            canary_weight=self.s.canary_weight,
            failed_checks=self.s.failed_checks,
            consecutive_errors=self.s.consecutive_errors,
            checks=self.s.checks,
            hooks=self.s.hooks,
            events=self.s.events,
            errors=self.s.errors,
        )
        self.actions.append(EndTick(record=record))
        self.set(checks=(), hooks=(), events=(), errors=())

    def finish(
        self, decision: Decision, reason: Reason, message: str, error: StepError | None = None
    ) -> None:
        primary = self.s.canary if decision is Decision.PROMOTED else self.s.primary
        done = Finish(
            decision=decision,
            reason=reason,
            message=message,
            error=error,
            primary_revision=primary,
            canary_revision=self.s.canary,
        )
        self.close_record()
        self.actions.append(done)
        self.set(stage=Stage.DONE, outcome=done)

    def finish_after_post_rollout(self, done: Finish) -> None:
        """Run post-rollout hooks (phase Succeeded or Failed), then finish with `done`."""
        if self.hooks(WebhookType.POST_ROLLOUT):
            self.set(pending_finish=done)
            phase = self.s.phase or Phase.FAILED
            self.request(RunHooks(kind=WebhookType.POST_ROLLOUT, phase=phase), Stage.POST_ROLLOUT)
            return
        self.after_post_rollout(done)

    def after_post_rollout(self, done: Finish) -> None:
        if done.decision is Decision.PROMOTED and done.reason is Reason.ANALYSIS_PASSED:
            self.info(msg.promotion_completed(*self.target))
        elif done.decision is Decision.PROMOTED:
            self.info(msg.promotion_skipped(*self.target))
        self.finish(done.decision, done.reason, done.message, done.error)

    # ---- outcomes

    def rollback(self, reason: Reason, message: str, *, decision: Decision = Decision.ROLLED_BACK) -> None:
        """Flagger's rollback (scheduler.go:948-998): 100 % to the primary, Failed, post-rollout hooks."""
        assert self.s.primary is not None
        if reason is Reason.FAILED_CHECKS:
            self.warn(msg.threshold_reached(*self.who, self.s.failed_checks))
        self.actions.append(Restore(primary=self.s.primary, canary=self.s.canary))
        self.warn(msg.canary_failed(*self.who))
        self.set(phase=Phase.FAILED, canary_weight=0, traffic_moved=False)
        self.status()
        self.finish_after_post_rollout(Finish(decision=decision, reason=reason, message=message))

    def abort(self, reason: Reason, message: str, *, failed_action: Action | None = None) -> None:
        """Stop without judging the canary: restore the primary if traffic may have moved; decision failed."""
        self.set(errors=(*self.s.errors, message))
        moved = self.s.traffic_moved or isinstance(failed_action, Route | Promote)
        if self.s.primary is None or self.s.phase not in _ANALYSING or not moved:
            if self.s.phase in _ANALYSING:
                self.set(phase=Phase.FAILED, canary_weight=0)
                self.status()
            self.finish(Decision.FAILED, reason, message)
            return
        self.rollback(reason, message, decision=Decision.FAILED)

    # ---- the tick

    def on_observed(self, facts: ServiceFacts) -> None:
        self.start_tick()
        timeout = self.s.config.timeout_seconds
        if timeout is not None and self.now - self.s.started_at >= timeout:
            text = msg.timed_out(*self.who, timeout)
            self.warn(text)
            self.abort(Reason.TIMEOUT, text)
            return
        if self.s.phase is None:
            self.first_tick(facts)
        elif self.s.phase in (Phase.INITIALIZED, Phase.WAITING):
            self.detect(facts)
        else:
            self.progressing(facts)

    def first_tick(self, facts: ServiceFacts) -> None:
        self.set(phase=Phase.INITIALIZED)
        if facts.primary_revision is None:
            serving = facts.serving_revision
            if serving is None:
                self.finish(
                    Decision.FAILED,
                    Reason.NO_SERVING_REVISION,
                    f"Knative Service {self.target[0]}.{self.target[1]} has no revision serving traffic "
                    "yet; nothing to pin as the primary",
                )
                return
            self.actions.append(Pin(primary=serving))
            self.set(primary=serving, pinned_this_run=True)
            self.info(msg.initialization_done(*self.who))
            self.status()
        else:
            self.set(primary=facts.primary_revision)
        if self.s.config.deploy:
            self.request(Deploy(), Stage.DEPLOYED)
            return
        self.detect(facts)

    def on_deployed(self, facts: ServiceFacts) -> None:
        self.detect(facts)

    def detect(self, facts: ServiceFacts) -> None:
        """Initialized or Waiting: is there a new revision to analyse? (checkCanaryStatus)"""
        assert self.s.primary is not None
        latest = facts.latest_created_revision
        if latest is None or latest == self.s.primary:
            if self.s.pinned_this_run and _revision_number(self.s.primary) > 1 and not self.s.config.deploy:
                text = msg.unanalysed_revision_serving(self.s.primary)
                self.warn(text)
                self.finish(Decision.INITIALIZED, Reason.UNANALYSED_REVISION, text)
            elif self.s.pinned_this_run:
                self.finish(
                    Decision.INITIALIZED,
                    Reason.INITIALIZED,
                    f"Pinned {self.s.primary} as the primary; there is no newer revision to analyse",
                )
            else:
                self.finish(
                    Decision.SKIPPED,
                    Reason.NO_NEW_REVISION,
                    f"No new revision: {self.s.primary} is the primary and the latest revision",
                )
            return
        self.set(canary=latest)
        if self.hooks(WebhookType.CONFIRM_ROLLOUT):
            self.set(stashed_facts=facts)
            phase = self.s.phase or Phase.INITIALIZED
            self.request(RunHooks(kind=WebhookType.CONFIRM_ROLLOUT, phase=phase), Stage.CONFIRM_ROLLOUT)
            return
        self.begin_progressing(facts)

    def on_confirm_rollout(self, ran: HooksRan) -> None:
        self.record_hooks(ran)
        facts = self.s.stashed_facts
        assert facts is not None
        for result in ran.results:
            if not result.ok:
                if self.s.phase is not Phase.WAITING:  # Flagger records the halt once, on entering Waiting
                    self.set(phase=Phase.WAITING)
                    self.status()
                    self.warn(msg.waiting_for_approval(*self.who, result.name))
                self.end_tick()
                return
            self.info(msg.confirm_rollout_passed(result.name))
        self.begin_progressing(facts)

    def begin_progressing(self, facts: ServiceFacts) -> None:
        """Flagger spends a tick on this; we go on into the first Progressing tick at once."""
        self.info(msg.new_revision_scaling_up(*self.target))
        self.set(
            phase=Phase.PROGRESSING,
            canary_weight=0,
            failed_checks=0,
            iterations=0,
            consecutive_errors=0,
            progressing_since=self.now,
            not_ready_reported=False,
        )
        self.status()
        self.progressing(facts)

    def progressing(self, facts: ServiceFacts) -> None:
        assert self.s.primary is not None and self.s.canary is not None
        latest = facts.latest_created_revision
        if latest is not None and latest not in (self.s.canary, self.s.primary):
            self.restart(latest)
            return
        if facts.canary_phase is not RevisionPhase.READY:
            self.not_ready(facts)
            return
        self.set(not_ready_reported=False)
        if self.canary_spec.skip_analysis:
            self.actions.append(Promote(canary=self.s.canary))
            self.set(phase=Phase.SUCCEEDED, canary_weight=TOTAL_WEIGHT)
            self.status()
            self.finish_after_post_rollout(
                Finish(
                    decision=Decision.PROMOTED,
                    reason=Reason.ANALYSIS_SKIPPED,
                    message=f"skipAnalysis: promoted {self.s.canary} without analysis",
                )
            )
            return
        if self.hooks(WebhookType.ROLLBACK):
            self.request(
                RunHooks(kind=WebhookType.ROLLBACK, phase=self.s.phase or Phase.PROGRESSING),
                Stage.ROLLBACK_HOOKS,
            )
            return
        self.after_rollback_hooks()

    def restart(self, latest: str) -> None:
        assert self.s.primary is not None
        self.info(msg.new_revision_restarting(*self.target))
        if self.s.canary_weight > 0 or self.s.traffic_moved:
            self.actions.append(Restore(primary=self.s.primary, canary=self.s.canary))
        self.set(
            canary=latest,
            phase=Phase.PROGRESSING,
            canary_weight=0,
            failed_checks=0,
            iterations=0,
            consecutive_errors=0,
            progressing_since=self.now,
            not_ready_reported=False,
            traffic_moved=False,
        )
        self.status()
        self.end_tick()

    def not_ready(self, facts: ServiceFacts) -> None:
        assert self.s.canary is not None and self.s.progressing_since is not None
        deadline = self.s.progressing_since + self.canary_spec.progress_deadline_seconds
        state = (facts.canary_phase or RevisionPhase.MISSING).value
        detail = f"revision {self.s.canary} is {state}"
        if facts.canary_reason:
            detail += f": {facts.canary_reason}"
        if self.now >= deadline:
            text = msg.progress_deadline(*self.who, detail)
            self.warn(text)
            self.rollback(Reason.PROGRESS_DEADLINE, text)
            return
        if not self.s.not_ready_reported:
            self.warn(msg.revision_not_ready(self.s.canary, self.canary_spec.namespace, facts.canary_reason))
            self.set(not_ready_reported=True)
        interval_end = self.s.tick_started + self.canary_spec.analysis.interval_seconds
        self.end_tick(wake_on_change=True, until=min(interval_end, deadline))

    def on_rollback_hooks(self, ran: HooksRan) -> None:
        self.record_hooks(ran)
        for result in ran.results:
            if result.ok:
                self.warn(msg.rollback_check_passed(result.name))
                text = msg.manual_rollback(*self.who)
                self.warn(text)
                self.rollback(Reason.MANUAL_ROLLBACK, text)
                return
            self.info(msg.rollback_not_signaling(result.name))
        self.after_rollback_hooks()

    def after_rollback_hooks(self) -> None:
        if self.s.failed_checks >= self.s.config.threshold:
            self.rollback(
                Reason.FAILED_CHECKS,
                f"{self.s.failed_checks} failed checks reached the threshold of {self.s.config.threshold}",
            )
            return
        self.set(iterations=self.s.iterations + 1)
        if self.s.canary_weight == 0:
            # Flagger's first analysis tick: pre-rollout hooks, no metrics, then the first step.
            self.info(msg.starting_analysis(*self.target))
            if self.hooks(WebhookType.PRE_ROLLOUT):
                hooks = RunHooks(kind=WebhookType.PRE_ROLLOUT, phase=Phase.PROGRESSING)
                self.request(hooks, Stage.PRE_ROLLOUT)
                return
            self.advance()
            return
        if self.hooks(WebhookType.ROLLOUT):
            self.request(RunHooks(kind=WebhookType.ROLLOUT, phase=Phase.PROGRESSING), Stage.ROLLOUT_HOOKS)
            return
        self.set(metric_index=0)
        self.next_metric()

    def failed_check(self) -> None:
        self.set(failed_checks=self.s.failed_checks + 1)
        self.status()
        self.end_tick()

    def on_pre_rollout(self, ran: HooksRan) -> None:
        self.record_hooks(ran)
        for result in ran.results:
            if not result.ok:
                self.warn(msg.pre_rollout_failed(*self.who, result.name, result.message))
                self.failed_check()
                return
            self.info(msg.pre_rollout_passed(result.name))
        self.advance()

    def on_rollout_hooks(self, ran: HooksRan) -> None:
        self.record_hooks(ran)
        for result in ran.results:
            if not result.ok:
                self.warn(msg.external_check_failed(*self.who, result.name, result.message))
                self.failed_check()
                return
        self.set(metric_index=0)
        self.next_metric()

    def next_metric(self) -> None:
        metrics = self.canary_spec.analysis.metrics
        # Flagger: built-in metrics (and inline queries) first, then MetricTemplate metrics.
        ordered = [m for m in metrics if m.template_ref is None] + [m for m in metrics if m.template_ref]
        if self.s.metric_index >= len(ordered):
            self.advance()
            return
        assert self.s.canary is not None
        metric = ordered[self.s.metric_index]
        self.request(Measure(metric=metric, canary_revision=self.s.canary), Stage.METRICS)

    def on_measured(self, measured: Measured) -> None:
        metrics = self.canary_spec.analysis.metrics
        ordered = [m for m in metrics if m.template_ref is None] + [m for m in metrics if m.template_ref]
        metric = ordered[self.s.metric_index]
        reading = measured.reading
        judgement = judge(
            metric,
            reading,
            canary_name=self.canary_spec.name,
            namespace=self.canary_spec.namespace,
            target_name=self.canary_spec.target_name,
        )
        self.set(
            checks=(
                *self.s.checks,
                CheckRecord(
                    metric=metric.name,
                    verdict=judgement.verdict,
                    value=reading.value,
                    threshold_min=metric.threshold_min,
                    threshold_max=metric.threshold_max,
                    message=judgement.message or reading.error,
                    query=reading.query,
                ),
            )
        )
        if judgement.verdict is Verdict.ERROR:
            errors = self.s.consecutive_errors + 1
            self.set(consecutive_errors=errors, errors=(*self.s.errors, judgement.message))
            self.warn(judgement.message)
            limit = self.s.config.consecutive_error_limit
            if errors > limit:
                text = msg.provider_errors(*self.who, errors, limit)
                self.warn(text)
                self.abort(Reason.METRIC_ERRORS, text)
                return
            self.status()
            self.end_tick()
            return
        self.set(consecutive_errors=0)
        if judgement.verdict is Verdict.FAIL:
            self.warn(judgement.message)
            self.failed_check()
            return
        if judgement.verdict is Verdict.IGNORED:
            self.info(judgement.message)
        self.set(metric_index=self.s.metric_index + 1)
        self.next_metric()

    def advance(self) -> None:
        analysis = self.canary_spec.analysis
        if next_step_weight(analysis, self.s.canary_weight) <= 0:
            self.status()
            self.end_tick()  # Flagger sits in Progressing forever; --timeout ends it
            return
        if self.s.phase is not Phase.WAITING_PROMOTION and self.hooks(WebhookType.CONFIRM_TRAFFIC_INCREASE):
            self.request(
                RunHooks(kind=WebhookType.CONFIRM_TRAFFIC_INCREASE, phase=Phase.PROGRESSING),
                Stage.CONFIRM_TRAFFIC,
            )
            return
        self.step_or_promote()

    def on_confirm_traffic(self, ran: HooksRan) -> None:
        self.record_hooks(ran)
        for result in ran.results:
            if not result.ok:
                self.warn(msg.waiting_for_traffic_increase(*self.who, result.name))
                self.status()
                self.end_tick()
                return
            self.info(msg.confirm_traffic_increase_passed(result.name))
        self.step_or_promote()

    def step_or_promote(self) -> None:
        assert self.s.primary is not None and self.s.canary is not None
        analysis = self.canary_spec.analysis
        weight = self.s.canary_weight
        if weight < max_weight(analysis):
            new_weight = min(TOTAL_WEIGHT, weight + next_step_weight(analysis, weight))
            self.actions.append(Route(primary=self.s.primary, canary=self.s.canary, canary_weight=new_weight))
            self.set(canary_weight=new_weight, traffic_moved=True)
            self.info(msg.advance(*self.who, new_weight))
            self.status()
            self.end_tick()
            return
        if self.hooks(WebhookType.CONFIRM_PROMOTION):
            self.request(
                RunHooks(kind=WebhookType.CONFIRM_PROMOTION, phase=Phase.PROGRESSING), Stage.CONFIRM_PROMOTION
            )
            return
        self.promote()

    def on_confirm_promotion(self, ran: HooksRan) -> None:
        self.record_hooks(ran)
        for result in ran.results:
            if not result.ok:
                if self.s.phase is not Phase.WAITING_PROMOTION:
                    self.set(phase=Phase.WAITING_PROMOTION)
                    self.warn(msg.waiting_for_promotion(*self.who, result.name))
                self.status()
                self.end_tick()
                return
            self.info(msg.confirm_promotion_passed(result.name))
        self.promote()

    def promote(self) -> None:
        """Flagger's Promoting and Finalising ticks do nothing useful for Knative; we do it now."""
        assert self.s.canary is not None
        canary = self.s.canary
        self.actions.append(Promote(canary=canary))
        self.info(msg.routing_all_traffic_to_primary())
        self.set(phase=Phase.SUCCEEDED, canary_weight=TOTAL_WEIGHT)
        self.status()
        self.finish_after_post_rollout(
            Finish(
                decision=Decision.PROMOTED,
                reason=Reason.ANALYSIS_PASSED,
                message=f"Promoted {canary} after {self.s.iterations} analysis ticks",
            )
        )

    def on_post_rollout(self, ran: HooksRan) -> None:
        self.record_hooks(ran)
        for result in ran.results:
            if result.ok:
                self.info(msg.post_rollout_passed(result.name))
            else:
                self.warn(msg.post_rollout_failed(result.name, result.message))
        done = self.s.pending_finish
        assert done is not None
        self.set(pending_finish=None)
        self.after_post_rollout(done)

    def on_failed(self, failed: ActionFailed) -> None:
        if self.s.stage is Stage.DONE:
            self.set(stage=Stage.START, outcome=None, pending_finish=None)
            self.start_tick()
        if isinstance(failed.action, Restore):
            text = f"Rollback failed: {failed.message}"
            self.set(errors=(*self.s.errors, text))
            self.finish(Decision.FAILED, Reason.ROLLBACK_FAILED, text, error=RollbackFailed(text))
            return
        text = msg.infrastructure_error(*self.who, failed.message)
        self.warn(text)
        self.abort(Reason.INFRASTRUCTURE, text, failed_action=failed.action)


_ANALYSING = (Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.SUCCEEDED)

# Flagger's Promoted condition messages (canary/status.go), for the Canary status.
_PHASE_MESSAGES: dict[Phase, str] = {
    Phase.INITIALIZED: "Service initialization completed.",
    Phase.WAITING: "Waiting for approval.",
    Phase.WAITING_PROMOTION: "Waiting for approval.",
    Phase.PROGRESSING: "New revision detected, progressing canary analysis.",
    Phase.SUCCEEDED: "Canary analysis completed successfully, promotion finished.",
    Phase.FAILED: "Canary analysis failed, Service scaled to zero.",
}


_REVISION_NUMBER = re.compile(r"-(\d+)$")


def _revision_number(revision: str) -> int:
    """Knative names revisions `<config>-<generation, 5 digits>`; 0 when the name has no number."""
    match = _REVISION_NUMBER.search(revision)
    return int(match.group(1)) if match else 0


_HANDLERS = {
    Stage.CONFIRM_ROLLOUT: _Step.on_confirm_rollout,
    Stage.ROLLBACK_HOOKS: _Step.on_rollback_hooks,
    Stage.PRE_ROLLOUT: _Step.on_pre_rollout,
    Stage.ROLLOUT_HOOKS: _Step.on_rollout_hooks,
    Stage.CONFIRM_TRAFFIC: _Step.on_confirm_traffic,
    Stage.CONFIRM_PROMOTION: _Step.on_confirm_promotion,
    Stage.POST_ROLLOUT: _Step.on_post_rollout,
}


def step(state: State, observation: Observation, now: float) -> tuple[State, tuple[Action, ...]]:
    """Advance the run by one observation. Pure: the same inputs always give the same outputs."""
    if isinstance(observation, ActionFailed):
        # A failed action can come from the batch that also finished the run (a Promote or Restore
        # before Finish): the driver drops the rest of the batch, so the run is not finished yet.
        work = _Step(state, now)
        work.on_failed(observation)
        return work.s, tuple(work.actions)
    if state.done:
        return state, ()
    work = _Step(state, now)
    if state.stage is Stage.START and isinstance(observation, Observed):
        work.on_observed(observation.facts)
    elif state.stage is Stage.DEPLOYED and isinstance(observation, Observed):
        work.on_deployed(observation.facts)
    elif state.stage is Stage.METRICS and isinstance(observation, Measured):
        work.on_measured(observation)
    elif isinstance(observation, HooksRan) and state.stage in _HANDLERS:
        _HANDLERS[state.stage](work, observation)
    else:
        name = type(observation).__name__
        raise ValueError(f"observation {name} does not answer stage {state.stage.value}")
    return work.s, tuple(work.actions)

"""The canary analysis's decisions: `step(state, observation, now) -> (state, actions)`.

Owns: every decision of one run, with Flagger's semantics for Knative (flagger-semantics.md 1.3-1.7):
`suspend`, the metrics-server check before the first tick, initialisation, the confirm-rollout gate
(phase Waiting), the progress deadline for the canary revision, pre-rollout hooks and the first step
on the first Progressing tick, then per tick rollback hooks -> threshold -> rollout hooks -> built-in
metrics -> MetricTemplate metrics (the first failure ends the tick), confirm-traffic-increase before
each step, confirm-promotion at max weight (phase WaitingPromotion), promotion on the tick after max
weight, rollback, post-rollout hooks, a restart when a newer revision appears, metric-provider errors
counted apart from failed checks, and how a run ends on a failed action, a signal or a lost lease.
Blue/green (`iterations`) runs the same ticks with the canary revision at 0 %: it is tagged before the
first tick's hooks (`Tag`, whose answer brings its URL), each passing tick counts an iteration, and the
tick after the last promotes 100 % at once; a rollback drops the tag.
Which weight comes next and when to promote is the strategy's (`strategy`); the protocol types are
`protocol`'s, the state `state`'s, the records `records`'.
Must not: do I/O, read the clock (time arrives as `now`, wall-clock seconds), sleep, or import
anything that does.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from dataclasses import replace

from step.analysis import messages as msg
from step.analysis.evaluate import NoDataGrace, Verdict, judge
from step.analysis.judge import SCORE_METRIC, Classification, tick_score
from step.analysis.protocol import (
    Action,
    ActionFailed,
    CheckProviders,
    Deploy,
    Emit,
    EndTick,
    Finish,
    HookRun,
    HooksRan,
    Interrupted,
    LeaseLost,
    Measure,
    Measured,
    Observation,
    Observed,
    Pin,
    Promote,
    ProvidersChecked,
    Restore,
    Route,
    RunHooks,
    ServiceFacts,
    Tag,
    Wait,
    WriteStatus,
)
from step.analysis.records import CheckRecord, EventRecord, HookRecord, TickRecord
from step.analysis.schedule import TOTAL_WEIGHT
from step.analysis.state import Phase, Reason, Stage, State
from step.analysis.strategy import Strategy, strategy_for
from step.contract import Decision
from step.errors import ErrorInfo, ExitCode
from step.ports import CanaryStatus, EventType, RevisionPhase, Severity
from step.spec.model import Canary, Metric, WebhookType

_ANALYSING = (Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.SUCCEEDED)

# Flagger's Promoted condition messages (canary/status.go), for the Canary status, made true for
# Knative: nothing is scaled to zero, the traffic goes back to the primary revision.
PHASE_MESSAGES: dict[Phase, str] = {
    Phase.INITIALIZED: "Service initialization completed.",
    Phase.WAITING: "Waiting for approval.",
    Phase.WAITING_PROMOTION: "Waiting for approval.",
    Phase.PROGRESSING: "New revision detected, progressing canary analysis.",
    Phase.SUCCEEDED: "Canary analysis completed successfully, promotion finished.",
    Phase.FAILED: "Canary analysis failed, all traffic routed back to the primary revision.",
}


def stopped_message(why: str, *, restored: bool) -> str:
    """The Failed phase's message when the run stopped without judging the canary (an error, a signal)."""
    where = "all traffic routed back to the primary revision" if restored else "no traffic had moved"
    return f"Canary analysis stopped ({why.rstrip('.')}), {where}."


_REVISION_NUMBER = re.compile(r"-(\d+)$")


def _revision_number(revision: str) -> int:
    """Knative names revisions `<config>-<generation, 5 digits>`; 0 when the name has no number."""
    match = _REVISION_NUMBER.search(revision)
    return int(match.group(1)) if match else 0


def ordered_metrics(canary: Canary) -> tuple[Metric, ...]:
    """Flagger's order: built-in metrics (and inline queries) first, then MetricTemplate metrics."""
    metrics = canary.analysis.metrics
    return tuple(m for m in metrics if m.template_ref is None) + tuple(m for m in metrics if m.template_ref)


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
    def strategy(self) -> Strategy:
        return strategy_for(self.canary_spec)

    @property
    def who(self) -> tuple[str, str]:
        return self.canary_spec.name, self.canary_spec.namespace

    @property
    def target(self) -> tuple[str, str]:
        return self.canary_spec.target_name, self.canary_spec.namespace

    def set(self, **changes: object) -> None:
        self.s = replace(self.s, **changes)  # type: ignore[arg-type]

    def emit(
        self, type_: EventType, message: str, *, alert: Severity | None = None, urgent: bool = False
    ) -> None:
        phase = self.s.phase or Phase.INITIALIZED
        event = Emit(
            type=type_,
            message=message,
            phase=phase,
            canary_revision=self.s.canary,
            alert=alert,
            urgent=urgent,
        )
        self.actions.append(event)
        self.set(events=(*self.s.events, EventRecord(type=type_, message=message)))

    def info(self, message: str, *, alert: bool = False) -> None:
        self.emit("Normal", message, alert=Severity.INFO if alert else None)

    def warn(self, message: str, *, alert: Severity | None = None) -> None:
        self.emit("Warning", message, alert=alert)

    def status(self, message: str = "") -> None:
        """The Canary status as the state says now; `message` replaces the phase's own text."""
        phase = self.s.phase or Phase.INITIALIZED
        status = CanaryStatus(
            phase=phase.value,
            # Flagger's Succeeded status has canaryWeight 0: the promoted revision is the primary now
            # (the tick record keeps the 100 % the promotion routed).
            canary_weight=0 if phase is Phase.SUCCEEDED else self.s.canary_weight,
            failed_checks=self.s.failed_checks,
            iterations=self.s.iterations,
            message=message or PHASE_MESSAGES[phase],
        )
        self.actions.append(WriteStatus(status=status))

    def request(self, action: Action, stage: Stage) -> None:
        self.actions.append(action)
        self.set(stage=stage)

    def run_hooks(self, kind: WebhookType, phase: Phase, stage: Stage) -> None:
        hooks = RunHooks(kind=kind, phase=phase, canary_revision=self.s.canary, canary_url=self.s.canary_url)
        self.request(hooks, stage)

    def first_failure(self, ran: HooksRan, *, passed: Callable[[str], str] | None = None) -> HookRun | None:
        """Record the hooks that ran; the first that failed (Flagger stops there), after an event for
        each that passed before it when `passed` gives its text."""
        self.record_hooks(ran)
        for result in ran.results:
            if not result.ok:
                return result
            if passed is not None:
                self.info(passed(result.name))
        return None

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
            tick_index=self.s.tick_index + 1, tick_started=self.now, checks=(), hooks=(), events=(), errors=()
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
        measured = bool(self.s.checks) and self.s.first_traffic_at is not None
        self.set(
            checks=(),
            hooks=(),
            events=(),
            errors=(),
            measured_with_traffic=self.s.measured_with_traffic or measured,
        )

    def finish(self, done: Finish) -> None:
        primary = self.s.canary if done.decision is Decision.PROMOTED else self.s.primary
        done = replace(done, primary_revision=primary, canary_revision=self.s.canary)
        self.close_record()
        self.actions.append(done)
        self.set(stage=Stage.DONE, outcome=done)

    def reopen(self) -> None:
        """A failure or a signal came from the batch that finished the run: it is not finished yet."""
        if self.s.stage is Stage.DONE:
            self.set(stage=Stage.START, outcome=None, pending_finish=None)
            self.start_tick()

    def finish_after_post_rollout(self, done: Finish) -> None:
        """Run post-rollout hooks (phase Succeeded or Failed), then finish with `done`."""
        if self.hooks(WebhookType.POST_ROLLOUT):
            self.set(pending_finish=done)
            self.run_hooks(WebhookType.POST_ROLLOUT, self.s.phase or Phase.FAILED, Stage.POST_ROLLOUT)
            return
        self.after_post_rollout(done)

    def after_post_rollout(self, done: Finish) -> None:
        if done.decision is Decision.PROMOTED and done.reason is Reason.ANALYSIS_PASSED:
            self.info(msg.promotion_completed(*self.target), alert=True)
        elif done.decision is Decision.PROMOTED:
            self.info(msg.promotion_skipped(*self.target), alert=True)
        self.finish(done)

    # ---- outcomes

    def rollback(
        self,
        reason: Reason,
        message: str,
        *,
        decision: Decision = Decision.ROLLED_BACK,
        error: ErrorInfo | None = None,
    ) -> None:
        """Flagger's rollback (scheduler.go:948-998): 100 % to the primary, Failed, post-rollout hooks."""
        assert self.s.primary is not None
        if reason is Reason.FAILED_CHECKS:
            self.warn(msg.threshold_reached(*self.who, self.s.failed_checks), alert=Severity.ERROR)
        self.actions.append(Restore(primary=self.s.primary, canary=self.s.canary))
        self.warn(msg.canary_failed(*self.who), alert=Severity.ERROR)
        self.set(phase=Phase.FAILED, canary_weight=0, traffic_moved=False)
        self.status("" if decision is Decision.ROLLED_BACK else stopped_message(message, restored=True))
        self.finish_after_post_rollout(Finish(decision=decision, reason=reason, message=message, error=error))

    def abort(
        self,
        reason: Reason,
        message: str,
        *,
        failed_action: Action | None = None,
        error: ErrorInfo | None = None,
    ) -> None:
        """Stop without judging the canary: restore the primary if traffic may have moved; decision failed."""
        self.set(errors=(*self.s.errors, message))
        moved = self.s.traffic_moved or isinstance(failed_action, Route | Tag | Promote)
        if self.s.primary is None or self.s.phase not in _ANALYSING or not moved:
            if self.s.phase in _ANALYSING:
                self.set(phase=Phase.FAILED, canary_weight=0)
                self.status(stopped_message(message, restored=False))
            self.finish(Finish(decision=Decision.FAILED, reason=reason, message=message, error=error))
            return
        self.rollback(reason, message, decision=Decision.FAILED, error=error)

    # ---- the first tick

    def on_observed(self, facts: ServiceFacts) -> None:
        self.start_tick()
        timeout = self.s.config.timeout_seconds
        if timeout is not None and self.now - self.s.started_at >= timeout:
            text = msg.timed_out(*self.who, timeout)
            self.warn(text)
            self.abort(Reason.TIMEOUT, text)
            return
        if self.s.config.rollback_resumed and self.s.resumed_from is not None and self.s.phase in _ANALYSING:
            text = (
                f"Rolling back {self.who[0]}.{self.who[1]}: the interrupted analysis of {self.s.canary}"
                " is rolled back (--on-interrupted rollback)"
            )
            self.warn(text)
            self.rollback(Reason.MANUAL_ROLLBACK, text)
            return
        if self.s.phase is None:
            self.preflight(facts)
        elif self.s.phase in (Phase.INITIALIZED, Phase.WAITING):
            self.detect(facts)
        else:
            self.progressing(facts)

    def preflight(self, facts: ServiceFacts) -> None:
        """Before anything moves: `suspend`, then whether the metrics server answers at all."""
        if self.canary_spec.suspend:
            self.finish(
                Finish(
                    decision=Decision.SKIPPED,
                    reason=Reason.SUSPENDED,
                    message=f"Canary {self.who[0]}.{self.who[1]} has spec.suspend: true; "
                    "nothing was analysed and no traffic was touched",
                )
            )
            return
        checked = self.s.config.providers_checked
        if self.canary_spec.analysis.metrics and not self.canary_spec.skip_analysis and not checked:
            self.set(stashed_facts=facts)
            self.request(CheckProviders(), Stage.PREFLIGHT)
            return
        self.first_tick(facts)

    def on_providers_checked(self, checked: ProvidersChecked) -> None:
        facts = self.s.stashed_facts
        assert facts is not None
        self.set(stashed_facts=None)
        if checked.offline:
            text = "metrics server unreachable before the analysis started: " + "; ".join(checked.offline)
            self.set(errors=(*self.s.errors, text))
            self.finish(Finish(decision=Decision.FAILED, reason=Reason.METRICS_OFFLINE, message=text))
            return
        self.first_tick(facts)

    def first_tick(self, facts: ServiceFacts) -> None:
        self.set(phase=Phase.INITIALIZED)
        if facts.primary_revision is None:
            serving = facts.serving_revision
            if serving is None:
                text = (
                    f"Knative Service {self.target[0]}.{self.target[1]} has no revision serving traffic "
                    "yet; nothing to pin as the primary"
                )
                self.finish(Finish(decision=Decision.FAILED, reason=Reason.NO_SERVING_REVISION, message=text))
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

    def detect(self, facts: ServiceFacts) -> None:
        """Initialized or Waiting: is there a new revision to analyse? (checkCanaryStatus)"""
        assert self.s.primary is not None
        latest = facts.latest_created_revision
        if latest is None or latest == self.s.primary:
            self.nothing_to_analyse()
            return
        self.set(canary=latest)
        if self.hooks(WebhookType.CONFIRM_ROLLOUT):
            self.set(stashed_facts=facts)
            self.run_hooks(
                WebhookType.CONFIRM_ROLLOUT, self.s.phase or Phase.INITIALIZED, Stage.CONFIRM_ROLLOUT
            )
            return
        self.begin_progressing(facts)

    def nothing_to_analyse(self) -> None:
        primary = self.s.primary
        assert primary is not None
        if primary == self.s.config.came_for or (self.s.config.deploy and not self.s.pinned_this_run):
            text = f"{primary} is already the primary: another run promoted it; nothing to analyse"
            if self.s.config.deploy:
                text = f"the image is already the primary's ({primary}): nothing to deploy or analyse"
            done = Finish(decision=Decision.SKIPPED, reason=Reason.ALREADY_PROMOTED, message=text)
        elif self.s.pinned_this_run and _revision_number(primary) > 1 and not self.s.config.deploy:
            text = msg.unanalysed_revision_serving(primary)
            self.warn(text)
            done = Finish(decision=Decision.INITIALIZED, reason=Reason.UNANALYSED_REVISION, message=text)
        elif self.s.pinned_this_run:
            text = f"Pinned {primary} as the primary; there is no newer revision to analyse"
            done = Finish(decision=Decision.INITIALIZED, reason=Reason.INITIALIZED, message=text)
        else:
            text = f"No new revision: {primary} is the primary and the latest revision"
            done = Finish(decision=Decision.SKIPPED, reason=Reason.NO_NEW_REVISION, message=text)
        self.finish(done)

    def on_confirm_rollout(self, ran: HooksRan) -> None:
        facts = self.s.stashed_facts
        assert facts is not None
        failed = self.first_failure(ran, passed=msg.confirm_rollout_passed)
        if failed is not None:
            if self.s.phase is not Phase.WAITING:  # Flagger records the halt once, on entering Waiting
                self.set(phase=Phase.WAITING)
                self.status()
                self.warn(msg.waiting_for_approval(*self.who, failed.name), alert=Severity.INFO)
            self.end_tick()
            return
        self.set(stashed_facts=None)
        self.begin_progressing(facts)

    def begin_progressing(self, facts: ServiceFacts) -> None:
        """Flagger spends a tick on this; we go on into the first Progressing tick at once."""
        self.info(msg.new_revision_scaling_up(*self.target), alert=True)
        self.fresh_analysis()
        self.status()
        self.progressing(facts)

    def fresh_analysis(self, **changes: object) -> None:
        """Progressing from 0 %, every count at zero, the progress deadline counting from now."""
        self.set(
            phase=Phase.PROGRESSING,
            canary_weight=0,
            failed_checks=0,
            iterations=0,
            consecutive_errors=0,
            progressing_since=self.now,
            not_ready_reported=False,
            first_traffic_at=None,
            measured_with_traffic=False,
            iterations_passed=0,
            canary_url=None,
            **changes,
        )

    # ---- an analysis tick

    def progressing(self, facts: ServiceFacts) -> None:
        assert self.s.primary is not None and self.s.canary is not None
        if facts.primary_revision is not None and facts.primary_revision != self.s.primary:
            self.primary_moved(facts.primary_revision)
            return
        latest = facts.latest_created_revision
        if latest is not None and latest not in (self.s.canary, self.s.primary):
            self.restart(latest)
            return
        if facts.canary_phase is RevisionPhase.FAILED and (self.s.traffic_moved or self.s.canary_weight > 0):
            self.canary_unhealthy(facts.canary_reason)  # it was Ready (it got traffic) and has failed since
            return
        if facts.canary_phase is not RevisionPhase.READY:
            self.not_ready(facts)
            return
        self.set(not_ready_reported=False)
        if self.s.traffic_moved and facts.canary_url and not self.strategy.counts_iterations:
            self.set(canary_url=facts.canary_url)  # blue/green learns it from its own Tag only
        if self.canary_spec.skip_analysis:
            self.actions.append(Promote(canary=self.s.canary))
            self.set(phase=Phase.SUCCEEDED, canary_weight=TOTAL_WEIGHT, promoted=True)
            self.status()
            text = f"skipAnalysis: promoted {self.s.canary} without analysis"
            self.finish_after_post_rollout(
                Finish(decision=Decision.PROMOTED, reason=Reason.ANALYSIS_SKIPPED, message=text)
            )
            return
        if self.hooks(WebhookType.ROLLBACK):
            self.run_hooks(WebhookType.ROLLBACK, self.s.phase or Phase.PROGRESSING, Stage.ROLLBACK_HOOKS)
            return
        self.after_rollback_hooks()

    def primary_moved(self, primary: str) -> None:
        """Someone else changed the primary: the primary only moves forward, so never route back to ours."""
        canary, before = self.s.canary, self.s.primary
        assert canary is not None and before is not None
        if primary == canary:
            text = f"{canary} became the primary while this run analysed it (another run promoted it)"
            self.warn(text + "; this run writes no traffic")
            self.set(primary=primary, phase=Phase.SUCCEEDED, canary_weight=0, traffic_moved=False)
            self.finish(Finish(decision=Decision.SKIPPED, reason=Reason.ALREADY_PROMOTED, message=text))
            return
        self.warn(f"the primary changed from {before} to {primary} while this run analysed {canary}")
        self.set(primary=primary)
        if _revision_number(canary) > _revision_number(primary):
            self.end_tick()  # go on against the new primary: the next step routes it, a rollback restores it
            return
        text = f"{canary} is not newer than the primary {primary}: nothing to analyse"
        if self.s.canary_weight > 0 or self.s.traffic_moved:
            self.actions.append(Restore(primary=primary, canary=canary))
        self.set(phase=Phase.FAILED, canary_weight=0, traffic_moved=False)
        self.finish(Finish(decision=Decision.SKIPPED, reason=Reason.NO_NEW_REVISION, message=text))

    def restart(self, latest: str) -> None:
        assert self.s.primary is not None
        self.info(msg.new_revision_restarting(*self.target), alert=True)
        if self.s.canary_weight > 0 or self.s.traffic_moved:
            self.actions.append(Restore(primary=self.s.primary, canary=self.s.canary))
        self.fresh_analysis(canary=latest, traffic_moved=False)
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
            self.warn(text, alert=Severity.ERROR)
            self.rollback(Reason.PROGRESS_DEADLINE, text)
            return
        if not self.s.not_ready_reported:
            self.warn(msg.revision_not_ready(self.s.canary, self.canary_spec.namespace, facts.canary_reason))
            self.set(not_ready_reported=True)
        interval_end = self.s.tick_started + self.canary_spec.analysis.interval_seconds
        self.end_tick(wake_on_change=True, until=min(interval_end, deadline))

    def canary_unhealthy(self, why: str) -> None:
        """The canary revision failed after it was Ready (Knative keeps it as latestReady and routes no
        more traffic to it): a failed canary, rolled back at once (exit 3), whatever the threshold."""
        assert self.s.canary is not None
        text = msg.canary_unhealthy(*self.who, self.s.canary, why)
        self.warn(text, alert=Severity.ERROR)
        self.rollback(Reason.CANARY_UNHEALTHY, text)

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
        threshold = self.canary_spec.analysis.threshold  # `<= 0 means 1` is resolved in spec.build
        if self.s.failed_checks >= threshold:
            text = f"{msg.plural(self.s.failed_checks, 'failed check')} reached the threshold of {threshold}"
            self.rollback(Reason.FAILED_CHECKS, text)
            return
        self.set(iterations=self.s.iterations + 1)
        strategy = self.strategy
        if strategy.first_tick(
            canary_weight=self.s.canary_weight, iterations_passed=self.s.iterations_passed
        ):
            tagged = self.s.canary_url is not None and self.s.traffic_moved and self.s.canary_weight == 0
            if strategy.counts_iterations and not tagged:
                # Blue/green: the canary revision gets its tag (and URL) at 0 % before any hook needs it;
                # again after a restart, which may have found another split (a stepped run's) in place.
                assert self.s.primary is not None and self.s.canary is not None
                self.request(Tag(primary=self.s.primary, canary=self.s.canary), Stage.TAGGED)
                return
            self.start_analysis()
            return
        if self.hooks(WebhookType.ROLLOUT):
            self.run_hooks(WebhookType.ROLLOUT, Phase.PROGRESSING, Stage.ROLLOUT_HOOKS)
            return
        self.set(metric_index=0)
        self.next_metric()

    def on_tagged(self, facts: ServiceFacts) -> None:
        """The canary revision is tagged at 0 %: the no-data grace starts, then Flagger's first tick."""
        assert self.s.canary is not None
        self.set(traffic_moved=True, canary_url=facts.canary_url, canary_weight=0)
        if self.s.first_traffic_at is None:
            self.set(first_traffic_at=self.now)
        self.info(msg.canary_tagged(self.s.canary, self.canary_spec.namespace, facts.canary_url))
        self.start_analysis()

    def start_analysis(self) -> None:
        """Flagger's first analysis tick: pre-rollout hooks, no metrics, then the first advance."""
        self.info(msg.starting_analysis(*self.target))
        if self.hooks(WebhookType.PRE_ROLLOUT):
            self.run_hooks(WebhookType.PRE_ROLLOUT, Phase.PROGRESSING, Stage.PRE_ROLLOUT)
            return
        self.advance()

    def failed_check(self) -> None:
        self.set(failed_checks=self.s.failed_checks + 1)
        self.status()
        self.end_tick()

    def on_pre_rollout(self, ran: HooksRan) -> None:
        failed = self.first_failure(ran, passed=msg.pre_rollout_passed)
        if failed is not None:
            self.warn(msg.pre_rollout_failed(*self.who, failed.name, failed.message))
            self.failed_check()
            return
        self.advance()

    def on_rollout_hooks(self, ran: HooksRan) -> None:
        failed = self.first_failure(ran)
        if failed is not None:
            self.warn(msg.external_check_failed(*self.who, failed.name, failed.message))
            self.failed_check()
            return
        self.set(metric_index=0)
        self.next_metric()

    def next_metric(self) -> None:
        ordered = ordered_metrics(self.canary_spec)
        if self.s.metric_index >= len(ordered):
            if not self.score_failed():
                self.advance()
            return
        assert self.s.canary is not None
        metric = ordered[self.s.metric_index]
        measure = Measure(metric=metric, canary_revision=self.s.canary, primary_revision=self.s.primary or "")
        self.request(measure, Stage.METRICS)

    def score_failed(self) -> bool:
        """The tick's score over its compared (-vs-primary) metrics; a failing one is a failed check."""
        relative = {m.name: m for m in ordered_metrics(self.canary_spec) if m.is_relative}
        judged = [
            (relative[c.metric], Classification(c.classification))
            for c in self.s.checks
            if c.classification and c.metric in relative
        ]
        promoting = self.strategy.ready_to_promote(
            canary_weight=self.s.canary_weight, iterations_passed=self.s.iterations_passed
        )
        scored = tick_score(judged, promoting=promoting)
        if scored is None or scored.score.value is None:
            return False
        check = CheckRecord(
            metric=SCORE_METRIC,
            verdict=Verdict.FAIL if scored.failed else Verdict.PASS,
            value=scored.score.value,
            threshold_min=scored.marginal_threshold,
            message=scored.message,
        )
        self.set(checks=(*self.s.checks, check))
        if not scored.failed:
            return False
        self.warn(f"Halt {self.who[0]}.{self.who[1]} advancement {scored.message}")
        self.failed_check()
        return True

    def on_measured(self, measured: Measured) -> None:
        metric = ordered_metrics(self.canary_spec)[self.s.metric_index]
        reading = measured.reading
        spec = self.canary_spec
        judgement = judge(
            metric,
            reading,
            canary_name=spec.name,
            namespace=spec.namespace,
            target_name=spec.target_name,
            grace=self.no_data_grace(),
        )
        check = CheckRecord(
            metric=metric.name,
            verdict=judgement.verdict,
            value=judgement.comparison.ratio if judgement.comparison else reading.value,
            threshold_min=metric.threshold_min,
            threshold_max=metric.threshold_max,
            message=judgement.message or reading.error,
            query=reading.query,
            classification=judgement.comparison.classification.value if judgement.comparison else "",
            primary_query=reading.primary_query,
        )
        self.set(checks=(*self.s.checks, check))
        if judgement.verdict is Verdict.ERROR:
            self.provider_error(judgement.message)
            return
        self.set(consecutive_errors=0)
        scored = judgement.comparison is not None and judgement.comparison.classification in (
            Classification.HIGH,
            Classification.LOW,
        )
        if judgement.verdict is Verdict.FAIL and not scored:  # High or Low: the tick's score decides
            self.warn(judgement.message)
            self.failed_check()
            return
        if judgement.verdict is Verdict.IGNORED and judgement.event:
            self.info(judgement.message)
        self.set(metric_index=self.s.metric_index + 1)
        self.next_metric()

    def no_data_grace(self) -> NoDataGrace | None:
        since = self.s.first_traffic_at
        if since is None:
            return None
        return NoDataGrace(
            traffic_seconds=max(0.0, self.now - since),
            first_measuring_tick=not self.s.measured_with_traffic,
            scrape_interval=self.s.config.scrape_interval_seconds,
        )

    def provider_error(self, message: str) -> None:
        errors = self.s.consecutive_errors + 1
        self.set(consecutive_errors=errors, errors=(*self.s.errors, message))
        self.warn(message)
        limit = self.s.config.consecutive_error_limit
        if errors > limit:
            text = msg.provider_errors(*self.who, errors, limit)
            self.warn(text)
            self.abort(Reason.METRIC_ERRORS, text)
            return
        self.status()
        self.end_tick()

    # ---- advancing

    def advance(self) -> None:
        if self.strategy.next_weight(self.s.canary_weight) is None:
            self.status()
            self.end_tick()  # Flagger sits in Progressing forever; --timeout ends it
            return
        gate = self.s.phase is not Phase.WAITING_PROMOTION and not self.strategy.counts_iterations
        if gate and self.hooks(WebhookType.CONFIRM_TRAFFIC_INCREASE):
            self.run_hooks(WebhookType.CONFIRM_TRAFFIC_INCREASE, Phase.PROGRESSING, Stage.CONFIRM_TRAFFIC)
            return
        self.step_or_promote()

    def on_confirm_traffic(self, ran: HooksRan) -> None:
        failed = self.first_failure(ran, passed=msg.confirm_traffic_increase_passed)
        if failed is not None:
            self.warn(msg.waiting_for_traffic_increase(*self.who, failed.name))
            self.status()
            self.end_tick()
            return
        self.step_or_promote()

    def step_or_promote(self) -> None:
        assert self.s.primary is not None and self.s.canary is not None
        weight = self.s.canary_weight
        strategy = self.strategy
        new_weight = strategy.next_weight(weight)
        ready = strategy.ready_to_promote(canary_weight=weight, iterations_passed=self.s.iterations_passed)
        if new_weight is not None and not ready and strategy.counts_iterations:
            # Blue/green: no traffic moves; the tick counts one iteration (runBlueGreen).
            passed = self.s.iterations_passed + 1
            self.set(iterations_passed=passed)
            self.info(msg.advance_iteration(*self.who, passed, self.canary_spec.analysis.iterations))
            self.status()
            self.end_tick()
            return
        if new_weight is not None and not ready:
            self.actions.append(Route(primary=self.s.primary, canary=self.s.canary, canary_weight=new_weight))
            self.set(canary_weight=new_weight, traffic_moved=True)
            if self.s.first_traffic_at is None:
                self.set(first_traffic_at=self.now)
            self.info(msg.advance(*self.who, new_weight))
            self.status()
            self.end_tick()
            return
        if self.hooks(WebhookType.CONFIRM_PROMOTION):
            self.run_hooks(WebhookType.CONFIRM_PROMOTION, Phase.PROGRESSING, Stage.CONFIRM_PROMOTION)
            return
        self.promote()

    def on_confirm_promotion(self, ran: HooksRan) -> None:
        failed = self.first_failure(ran, passed=msg.confirm_promotion_passed)
        if failed is not None:
            if self.s.phase is not Phase.WAITING_PROMOTION:
                self.set(phase=Phase.WAITING_PROMOTION)
                self.warn(msg.waiting_for_promotion(*self.who, failed.name), alert=Severity.INFO)
            self.status()
            self.end_tick()
            return
        self.promote()

    def promote(self) -> None:
        """Flagger's Promoting and Finalising ticks do nothing useful for Knative; we do it now."""
        assert self.s.canary is not None
        canary = self.s.canary
        self.actions.append(Promote(canary=canary))
        self.info(msg.routing_all_traffic_to_primary())
        self.set(phase=Phase.SUCCEEDED, canary_weight=TOTAL_WEIGHT, promoted=True)
        self.status()
        text = f"Promoted {canary} after {msg.plural(self.s.iterations, 'analysis tick')}"
        self.finish_after_post_rollout(
            Finish(decision=Decision.PROMOTED, reason=Reason.ANALYSIS_PASSED, message=text)
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

    # ---- failures, signals, a lost lease

    def on_failed(self, failed: ActionFailed) -> None:
        self.reopen()
        if failed.error.kind == "NotFound" and failed.error.resource == "services.serving.knative.dev":
            self.service_gone(failed.error)
            return
        if isinstance(failed.action, Restore):
            self.restore_failed(failed.error)
            return
        if (
            isinstance(failed.action, Route)
            and failed.error.kind == "RevisionFailed"
            and failed.error.resource.endswith(f"/{failed.action.canary}")
        ):
            self.canary_unhealthy(failed.message)  # it failed between the tick's look and the write
            return
        text = msg.infrastructure_error(*self.who, failed.message)
        self.warn(text)
        # The reason agrees with the exit code: a mistake (exit 2) says which; all else is infrastructure.
        usage = failed.error.exit_code == ExitCode.USAGE
        reason = Reason(failed.error.reason) if usage else Reason.INFRASTRUCTURE
        if isinstance(failed.action, Pin):
            # The run's first write: nothing after it in the batch happened, so no traffic moved.
            self.set(errors=(*self.s.errors, text), canary_weight=0, traffic_moved=False)
            self.finish(Finish(decision=Decision.FAILED, reason=reason, message=text, error=failed.error))
            return
        self.abort(reason, text, failed_action=failed.action, error=failed.error)

    def service_gone(self, error: ErrorInfo) -> None:
        """The Knative Service was deleted under us: nothing is left to route or restore (exit 4, not 5)."""
        text = (
            f"the Knative Service {self.target[0]}.{self.target[1]} was deleted during the analysis;"
            f" there is no traffic left to route or restore ({error.message})"
        )
        was_analysing = self.s.phase in _ANALYSING
        self.set(errors=(*self.s.errors, text), phase=Phase.FAILED, canary_weight=0, traffic_moved=False)
        if was_analysing:
            self.status(
                f"Canary analysis stopped: the Knative Service {self.target[0]}.{self.target[1]} was deleted."
            )
        self.finish(Finish(decision=Decision.FAILED, reason=Reason.INFRASTRUCTURE, message=text, error=error))

    def restore_failed(self, error: ErrorInfo) -> None:
        if self.s.interrupted is not None:
            name = _signal_name(self.s.interrupted)
            text = f"restoring the primary after {name} failed: {error.message}"
            reason = Reason.interrupted_by(name)
        else:
            text = f"Rollback failed: {error.message}"
            reason = Reason.ROLLBACK_FAILED
        self.set(errors=(*self.s.errors, text))
        failure = ErrorInfo(kind="RollbackFailed", message=text, verb=error.verb, resource=error.resource)
        done = Finish(
            decision=Decision.FAILED,
            reason=reason,
            message=text if self.s.interrupted is None else f"interrupted by {name}",
            error=failure,
            signal=self.s.interrupted or None,
            show_service=True,
        )
        self.finish(done)

    def on_interrupted(self, obs: Interrupted) -> None:
        """A signal (or a crash): put 100 % back on the primary unless promoted, then end the run."""
        self.reopen()
        pending = obs.unperformed
        promoted = self.s.promoted and not any(isinstance(a, Promote) for a in pending)
        in_flight = pending[0] if pending else None
        moved = (
            self.s.traffic_moved
            or self.s.canary_weight > 0
            or isinstance(in_flight, Route | Tag | Promote)
            or any(isinstance(a, Restore) for a in pending)
        )
        name = obs.signal_name or "an unexpected error"
        restore = self.s.primary is not None and self.s.canary is not None and not promoted and moved
        message = f"interrupted by {name}" + (" after the promotion" if promoted else "")
        self.set(interrupted=obs.signal if obs.signal is not None else 0)
        note = "restoring traffic to the primary" if restore else "no traffic to restore"
        self.set(errors=(*self.s.errors, f"{name} received: {note}"))
        if restore:
            assert self.s.primary is not None
            self.actions.append(Restore(primary=self.s.primary, canary=self.s.canary))
            self.set(canary_weight=0, traffic_moved=False)
            self.emit("Warning", f"canary-step interrupted by {name}; 100% on {self.s.primary}", urgent=True)
        if not promoted and self.s.phase in _ANALYSING and self.s.phase is not Phase.SUCCEEDED:
            # The status must not stay Progressing (kubectl wait would hang on a run that is over).
            self.set(phase=Phase.FAILED, canary_weight=0)
            self.status(stopped_message(f"interrupted by {name}", restored=restore))
        decision = Decision.PROMOTED if promoted else Decision.FAILED
        reason = Reason.interrupted_by(obs.signal_name)
        self.finish(Finish(decision=decision, reason=reason, message=message, signal=obs.signal))

    def on_lease_lost(self, lost: LeaseLost) -> None:
        """Another run owns the Service now: touch nothing more (not even to restore), exit 4."""
        self.reopen()
        text = f"lost the lease on the Service: {lost.message}; this run writes nothing more"
        self.set(errors=(*self.s.errors, text))
        error = ErrorInfo(kind="InfrastructureError", message=text)
        self.finish(Finish(decision=Decision.FAILED, reason=Reason.LEASE_LOST, message=text, error=error))


def _signal_name(signum: int) -> str:
    """`SIGTERM` for 15; 0 stands for a crash."""
    return signal.Signals(signum).name if signum else "an unexpected error"


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
    work = _Step(state, now)
    # A failure, a signal or a lost lease can come from the batch that also finished the run (a
    # Promote or Restore before Finish): the driver drops the rest of the batch, so it is not over.
    if isinstance(observation, ActionFailed):
        work.on_failed(observation)
    elif isinstance(observation, Interrupted):
        work.on_interrupted(observation)
    elif isinstance(observation, LeaseLost):
        work.on_lease_lost(observation)
    elif state.done:
        return state, ()
    elif state.stage is Stage.START and isinstance(observation, Observed):
        work.on_observed(observation.facts)
    elif state.stage is Stage.PREFLIGHT and isinstance(observation, ProvidersChecked):
        work.on_providers_checked(observation)
    elif state.stage is Stage.DEPLOYED and isinstance(observation, Observed):
        work.detect(observation.facts)
    elif state.stage is Stage.TAGGED and isinstance(observation, Observed):
        work.on_tagged(observation.facts)
    elif state.stage is Stage.METRICS and isinstance(observation, Measured):
        work.on_measured(observation)
    elif isinstance(observation, HooksRan) and state.stage in _HANDLERS:
        _HANDLERS[state.stage](work, observation)
    else:
        name = type(observation).__name__
        raise ValueError(f"observation {name} does not answer stage {state.stage.value}")
    return work.s, tuple(work.actions)

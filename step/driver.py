"""The driver: runs the analysis state machine by performing its actions through the ports.

Owns: the loop (observe the Service, feed the observation to `step.analysis.machine.step`, perform
the actions in order, sleep until the next tick measured from the start of the last one), webhook
payloads as Flagger sends them (event hooks get eventMessage/eventType/timestamp), rendering metric
queries with `{{ route }}` = the canary revision, and the safety net: SIGTERM/SIGINT at any moment
(also inside an API call) restore 100 % to the primary before the run ends; infrastructure errors
are handed to the state machine as `ActionFailed`; a failed restore ends with the Service's state.
Must not: make decisions about the canary (the state machine does), pick exit codes (the outcome
does), or import `kubernetes` or `click`.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from step.analysis.evaluate import Reading
from step.analysis.machine import (
    Action,
    ActionFailed,
    Config,
    Deploy,
    Emit,
    EndTick,
    Finish,
    HookRun,
    HooksRan,
    Measure,
    Measured,
    Observation,
    Observed,
    Pin,
    Promote,
    Restore,
    Route,
    RunHooks,
    ServiceFacts,
    State,
    Wait,
    WriteStatus,
    initial_state,
    step,
    stops_after,
)
from step.contract import Decision
from step.errors import MetricError, NoValuesFound, RollbackFailed, SpecError, StepError
from step.metrics.queries import BUILTIN_QUERIES, TemplateError, render
from step.ports import (
    Clock,
    EventSink,
    EventType,
    MetricsProvider,
    RevisionPhase,
    Router,
    ServiceView,
    StatusSink,
    WebhookCaller,
    WebhookPayload,
)
from step.report.outcome import Outcome, describe_traffic
from step.report.timeline import Timeline
from step.spec.model import Metric, SpecBundle, WebhookType


class Interrupted(BaseException):
    """Raised by our signal handler at whatever the main thread is doing, even a blocking API call.

    A BaseException, so that no `except Exception` on the way (retry loops, clients) swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True, kw_only=True)
class Ports:
    """Everything the driver acts through; the CLI builds the real ones, tests may build others."""

    router: Router
    metrics: MetricsProvider  # the metrics server: built-in metrics and inline queries
    webhooks: WebhookCaller
    events: EventSink
    status: StatusSink
    clock: Clock
    template_metrics: Mapping[tuple[str, str], MetricsProvider] = field(default_factory=dict)  # by (ns, name)
    wall: Callable[[], float] = time.time  # event-hook timestamps only
    request_count: Callable[[], int] | None = None  # API requests sent so far, for the report


def revision_checksum(revision: str) -> str:
    """Flagger's ComputeHash of a string (FNV-32a of spew's `(string)<value>`, SafeEncodeString).

    Flagger's payload checksum hashes its tracked configs and lastAppliedSpec; receivers treat it as
    opaque. Ours is the hash of the canary revision, which is what lastAppliedSpec stands for on Knative.
    """
    digest = 0x811C9DC5
    for byte in f"(string){revision}".encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[ord(c) % 27] for c in str(digest))


def facts_of(view: ServiceView, router: Router) -> ServiceFacts:
    """What the state machine needs from the Service; reads the canary Revision only if not Ready."""
    latest = view.latest_created_revision
    served: dict[str, int] = {}
    for target in view.status_traffic:
        if target.revision_name:
            served[target.revision_name] = served.get(target.revision_name, 0) + target.percent
    serving = max(served, key=lambda r: served[r]) if served else None
    phase: RevisionPhase | None = None
    reason = ""
    if latest is not None and latest != view.primary_revision:
        if view.latest_ready_revision == latest:
            phase = RevisionPhase.READY
        else:
            state = router.revision(latest)
            phase, reason = state.phase, state.reason or state.message
    return ServiceFacts(
        primary_revision=view.primary_revision,
        latest_created_revision=latest,
        serving_revision=serving,
        canary_phase=phase,
        canary_reason=reason,
    )


def traffic_of(view: ServiceView) -> str:
    served: dict[str, int] = {}
    for target in view.status_traffic:
        if target.revision_name and target.percent:
            served[target.revision_name] = served.get(target.revision_name, 0) + target.percent
    return describe_traffic(served)


def service_state(view: ServiceView) -> dict[str, Any]:
    """The Service as a person needs to see it when traffic may be split."""

    def targets(ts: tuple[Any, ...]) -> list[dict[str, Any]]:
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


SignalHandler = Callable[[int, FrameType | None], None]


@contextmanager
def handling_signals(handler: SignalHandler, *, enabled: bool = True) -> Iterator[None]:
    """SIGTERM and SIGINT go to `handler` inside the block; the previous handlers come back after it.

    Python delivers signals only to the main thread, so elsewhere (and when not `enabled`) this does nothing.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler_before in previous.items():
            signal.signal(s, handler_before)


class Driver:
    """Runs one analysis to its outcome. `run()` returns the `Outcome`; it never exits the process."""

    def __init__(
        self,
        bundle: SpecBundle,
        *,
        ports: Ports,
        timeline: Timeline,
        image: str | None = None,
        container: str | None = None,
        timeout: float | None = None,
        consecutive_error_limit: int | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.bundle = bundle
        self.canary = bundle.canary
        self.ports = ports
        self.timeline = timeline
        self.image = image
        self.container = container
        extra: dict[str, Any] = {}
        if consecutive_error_limit is not None:
            extra["consecutive_error_limit"] = consecutive_error_limit
        self.config = Config(canary=self.canary, deploy=image is not None, timeout_seconds=timeout, **extra)
        self.handle_signals = handle_signals
        self.state: State | None = None
        self.view: ServiceView | None = None  # the newest Service view seen
        self.weight_reached = 0  # the canary weight the analysis last set
        self.promoted = False
        self.in_flight: Action | None = None
        self.last_error: StepError | None = None
        self._signal_seen: int | None = None

    # ------------------------------------------------------------------ the loop

    def run(self) -> Outcome:
        with self._signals():
            try:
                return self._loop()
            except Interrupted as sig:
                with self._deferred_signals():
                    return self._interrupted(sig.signum)
            except BaseException:
                with self._deferred_signals():
                    self._emergency_restore()
                raise

    def _loop(self) -> Outcome:
        clock = self.ports.clock
        now = clock.now()
        self.state = initial_state(self.config, now=now)
        obs: Observation = self._observe_or_fail(Wait(until=now))
        while True:
            self.state, actions = step(self.state, obs, now)
            answer: Observation | None = None
            for action in actions:
                self.in_flight = action
                try:
                    answer = self._perform(action)
                except StepError as err:
                    self.last_error = err
                    answer = ActionFailed(action=action, message=str(err))
                    break
                finally:
                    self.in_flight = None
                if isinstance(action, Finish):
                    return self._outcome(action)
            if answer is None:
                raise RuntimeError(f"the state machine asked for nothing to wait on: {actions}")
            obs = answer
            now = self._answer_time if isinstance(answer, Observed) else clock.now()

    _answer_time: float = 0.0
    _needs_restore_before = False

    def _observe_or_fail(self, action: Action) -> Observation:
        try:
            return self._observe()
        except StepError as err:
            self.last_error = err
            return ActionFailed(action=action, message=str(err))

    def _observe(self) -> Observed:
        self._answer_time = self.ports.clock.now()
        self.view = self.ports.router.observe()
        return Observed(facts=facts_of(self.view, self.ports.router))

    # ------------------------------------------------------------------ actions

    def _perform(self, action: Action) -> Observation | None:
        router = self.ports.router
        match action:
            case Emit(type=type_, message=message):
                self._emit(type_, message)
            case WriteStatus(status=status):
                try:
                    self.ports.status.write(status)
                except StepError as err:
                    self.timeline.note(f"could not update the Canary status: {err}")
            case Pin(primary=primary):
                self.view = router.pin_primary(primary)
            case Deploy():
                assert self.image is not None
                self.timeline.note(f"setting the image to {self.image}")
                self.view = router.set_image(image=self.image, container=self.container)
                return self._observe()
            case Route(primary=primary, canary=canary, canary_weight=weight):
                self.view = router.route(primary=primary, canary=canary, canary_weight=weight)
                self.weight_reached = weight
            case Promote(canary=canary):
                self.view = router.promote(canary)
                self.promoted = True
            case Restore(primary=primary):
                try:
                    self.view = router.pin_primary(primary)
                except StepError as err:
                    raise RollbackFailed(f"restoring 100% to {primary} failed: {err}") from err
            case RunHooks(kind=kind, phase=phase):
                return self._run_hooks(kind, phase.value)
            case Measure(metric=metric, canary_revision=revision):
                return Measured(metric=metric.name, reading=self._measure(metric, revision))
            case EndTick(record=record):
                self.timeline.tick(record, api_requests=self._requests_since_last_tick())
            case Wait(until=until, wake_on_change=wake):
                self._wait(until, wake_on_change=wake)
                return self._observe()
            case Finish():
                pass
        return None

    def _requests_since_last_tick(self) -> int | None:
        if self.ports.request_count is None:
            return None
        total = self.ports.request_count()
        delta, self._requests_seen = total - self._requests_seen, total
        return delta

    _requests_seen = 0

    def _wait(self, until: float, *, wake_on_change: bool) -> None:
        clock = self.ports.clock
        remaining = until - clock.now()
        if remaining <= 0:
            return
        if wake_on_change:
            self.view = self.ports.router.wait_for_change(timeout=remaining)
        else:
            clock.sleep(remaining)

    def _payload(self, phase: str, metadata: Mapping[str, str]) -> WebhookPayload:
        revision = (self.state.canary if self.state else None) or ""
        return WebhookPayload(
            name=self.canary.name,
            namespace=self.canary.namespace,
            phase=phase,
            checksum=revision_checksum(revision),
            metadata=dict(metadata),
        )

    def _run_hooks(self, kind: WebhookType, phase: str) -> HooksRan:
        results: list[HookRun] = []
        for hook in self.canary.analysis.hooks(kind):
            answer = self.ports.webhooks.call(hook, self._payload(phase, hook.metadata))
            run = HookRun(name=hook.name, ok=answer.ok, status=answer.status, message=answer.message)
            results.append(run)
            if stops_after(kind, run):
                break
        return HooksRan(kind=kind, results=tuple(results))

    def _emit(self, type_: EventType, message: str) -> None:
        try:
            self.ports.events.emit(type=type_, message=message)
        except StepError as err:
            self.timeline.note(f"could not record the event {message!r}: {err}")
        hooks = self.canary.analysis.hooks(WebhookType.EVENT)
        if not hooks:
            return
        phase = self.state.phase.value if self.state and self.state.phase else "Initialized"
        stamp = str(int(self.ports.wall() * 1000))
        for hook in hooks:
            metadata = {**hook.metadata, "eventMessage": message, "eventType": type_, "timestamp": stamp}
            answer = self.ports.webhooks.call(hook, self._payload(phase, metadata))
            if not answer.ok:
                self.timeline.note(f"event webhook {hook.name} failed: {answer.message}")

    def _measure(self, metric: Metric, revision: str) -> Reading:
        provider = self.ports.metrics
        if metric.template_ref is not None:
            template = self.bundle.template_for(metric)
            if template is None:
                ns = metric.template_ref.namespace or self.canary.namespace
                return Reading.failed(f"Metric template {metric.template_ref.name}.{ns} error: not found")
            source = template.query
            provider = self.ports.template_metrics.get((template.namespace, template.name), provider)
        elif metric.query is not None:
            source = metric.query
        elif metric.name in BUILTIN_QUERIES:
            source = BUILTIN_QUERIES[metric.name]
        else:
            return Reading.failed("no usable metrics template and query were configured")
        target = self.canary.target_name
        try:
            query = render(
                source,
                name=self.canary.name,
                namespace=self.canary.namespace,
                target=target,
                service=self.canary.service_name or target,
                ingress=self.canary.ingress_name or target,
                route=revision,
                interval=metric.interval,
                variables=metric.template_variables,
            )
        except TemplateError as err:
            return Reading.failed(f"query render error: {err}")
        try:
            return Reading.of(provider.query(query), query=query)
        except NoValuesFound as err:
            return Reading.empty(str(err) or "no values found", query=query)
        except MetricError as err:
            return Reading.failed(str(err), query=query)
        except StepError as err:
            return Reading.failed(str(err), query=query)

    # ------------------------------------------------------------------ ending

    def _outcome(self, done: Finish) -> Outcome:
        state = self.state
        assert state is not None
        error: StepError | None = done.error
        if error is None and isinstance(self.last_error, SpecError):
            error = self.last_error
        service: dict[str, Any] | None = None
        if isinstance(error, RollbackFailed):
            service = self._service_now()
        traffic = traffic_of(self.view) if self.view is not None else "untouched"
        outcome = Outcome(
            decision=done.decision,
            reason=done.reason.value,
            message=done.message,
            canary_revision=done.canary_revision,
            primary_revision=done.primary_revision,
            canary_weight=self.weight_reached,
            failed_checks=state.failed_checks,
            iterations=state.iterations,
            traffic=traffic if service is None else f"possibly split, the Service shows {traffic}",
            error=error,
            service=service,
        )
        self.timeline.finished(outcome)
        return outcome

    def _service_now(self) -> dict[str, Any] | None:
        try:
            self.view = self.ports.router.observe()
        except StepError as err:
            self.timeline.note(f"cannot read the Service to show its state: {err}")
            return None if self.view is None else service_state(self.view)
        state = service_state(self.view)
        self.timeline.note(f"the Knative Service now: {json.dumps(state, separators=(',', ':'))}")
        return state

    def _needs_restore(self) -> bool:
        state = self.state
        if state is None or state.primary is None or state.canary is None or self.promoted:
            return False
        return state.traffic_moved or state.canary_weight > 0 or isinstance(self.in_flight, Route | Promote)

    def _emergency_restore(self) -> str | None:
        """Put 100 % back on the primary; the error text if that failed."""
        if not self._needs_restore():
            return None
        assert self.state is not None and self.state.primary is not None
        try:
            self.view = self.ports.router.pin_primary(self.state.primary)
        except StepError as err:
            return str(err)
        return None

    def _interrupted(self, signum: int) -> Outcome:
        name = signal.Signals(signum).name
        self._needs_restore_before = self._needs_restore()
        self.timeline.note(
            f"{name} received: "
            + ("restoring traffic to the primary" if self._needs_restore_before else "no traffic to restore")
        )
        failed = self._emergency_restore()
        state = self.state
        error: StepError | None = None
        service: dict[str, Any] | None = None
        if failed is not None:
            error = RollbackFailed(f"restoring the primary after {name} failed: {failed}")
            service = self._service_now()
        decision = Decision.PROMOTED if self.promoted else Decision.FAILED
        primary = state.canary if self.promoted and state else (state.primary if state else None)
        traffic = traffic_of(self.view) if self.view is not None else "untouched"
        message = f"interrupted by {name}" + (" after the promotion" if self.promoted else "")
        restored = failed is None and self._needs_restore_before
        if restored:  # only then is the API known to answer; an event must not delay the exit
            with suppress(StepError):
                self.ports.events.emit(
                    type="Warning", message=f"canary-step interrupted by {name}; {traffic}"
                )
        outcome = Outcome(
            decision=decision,
            reason=f"interrupted-{name.lower()}",
            message=message,
            canary_revision=state.canary if state else None,
            primary_revision=primary,
            canary_weight=self.weight_reached,
            failed_checks=state.failed_checks if state else 0,
            iterations=state.iterations if state else 0,
            traffic=traffic if service is None else f"possibly split, the Service shows {traffic}",
            error=error,
            signal=signum,
            service=service,
        )
        self.timeline.finished(outcome)
        return outcome

    # ------------------------------------------------------------------ signals

    @contextmanager
    def _signals(self) -> Iterator[None]:
        def raise_interrupted(signum: int, frame: FrameType | None) -> None:
            first = self._signal_seen is None
            self._signal_seen = signum
            if first:  # a second signal must not cut the restore short
                raise Interrupted(signum)

        with handling_signals(raise_interrupted, enabled=self.handle_signals):
            yield

    @contextmanager
    def _deferred_signals(self) -> Iterator[None]:
        """While restoring, a second signal must not cut the restore short: note it and go on."""

        def note(signum: int, frame: FrameType | None) -> None:
            self._signal_seen = signum

        with handling_signals(note, enabled=self.handle_signals):
            yield

"""The driver: runs the analysis state machine by performing its actions through the ports.

Owns: the loop (observe the Service, feed the observation to `step.analysis.machine.step`, perform
the actions in order, sleep until the time the machine asked for), turning what happens while
performing into observations (an error after retries: `ActionFailed` with the error as data; SIGTERM
or SIGINT at any moment, also inside an API call: `Interrupted`, naming the actions not yet done),
and what the machine needs from the Service (`facts_of`). Measuring is `step.metrics.measure`'s,
webhook payloads `step.webhooks.payload`'s, the outcome `step.report.outcome`'s.
Must not: make decisions about the canary (the state machine does), pick exit codes (the outcome
does), or import `kubernetes` or `click`.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from step.analysis.interrupted import record_of
from step.analysis.machine import step
from step.analysis.protocol import (
    Action,
    ActionFailed,
    CheckProviders,
    Deploy,
    Emit,
    EndTick,
    Finish,
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
from step.analysis.state import Config, State, initial_state
from step.errors import ErrorInfo, StepError
from step.kube.lease import Lease
from step.kube.lease import LeaseLost as LostLease
from step.metrics.measure import measure, uses_metrics_server
from step.ports import (
    Clock,
    EventPublisher,
    MetricsProvider,
    RevisionPhase,
    Router,
    ServiceView,
    StatusSink,
    WebhookCaller,
)
from step.report.outcome import Outcome, outcome_of, service_state
from step.report.timeline import Timeline
from step.spec.knative import CANARY_TAG
from step.spec.model import SpecBundle
from step.webhooks.payload import run_hooks


class SignalInterrupt(BaseException):
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
    events: EventPublisher  # the one composed sink: Kubernetes Events, event webhooks, notifiers
    status: StatusSink
    clock: Clock  # monotonic: sleeping and timeouts
    template_metrics: Mapping[tuple[str, str], MetricsProvider] = field(default_factory=dict)  # by (ns, name)
    wall: Callable[[], float] = time.time  # the analysis state's time (seconds since the epoch)
    request_count: Callable[[], int] | None = None  # API requests sent so far, for the report
    # The Service's lease, held by this run: renewed with the saved state at the end of each tick,
    # and checked before each traffic write (fencing). None: no lease (tests with in-memory ports).
    lease: Lease | None = None


def facts_of(view: ServiceView, router: Router) -> ServiceFacts:
    """What the state machine needs from the Service; reads the canary Revision only if it, or the
    Service, is not Ready."""
    latest = view.latest_created_revision
    revisions = list(dict.fromkeys(t.revision_name for t in view.status_traffic if t.revision_name))
    serving = max(revisions, key=view.weight_of) if revisions else None
    phase: RevisionPhase | None = None
    reason = ""
    if latest is not None and latest != view.primary_revision:
        # Knative keeps latestReadyRevisionName when that revision later fails (its pods crash): a
        # Service that is not Ready may hide it, so only then read the Revision (no request otherwise).
        if view.latest_ready_revision == latest and view.ready is not False:
            phase = RevisionPhase.READY
        else:
            state = router.revision(latest)
            phase, reason = state.phase, state.reason or state.message
    tagged = (t.url for t in view.status_traffic if t.tag == CANARY_TAG and t.revision_name == latest)
    return ServiceFacts(
        primary_revision=view.primary_revision,
        latest_created_revision=latest,
        serving_revision=serving,
        canary_phase=phase,
        canary_reason=reason,
        canary_url=next((url for url in tagged if url), None) if latest is not None else None,
    )


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
        start: State | None = None,
        came_for: str | None = None,
        scrape_interval: float | None = None,
        providers_checked: bool = False,
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
        if scrape_interval is not None:
            extra["scrape_interval_seconds"] = scrape_interval
        if providers_checked:  # the run's preflight asked every provider already
            extra["providers_checked"] = True
        self.config = Config(
            canary=self.canary, deploy=image is not None, timeout_seconds=timeout, came_for=came_for, **extra
        )
        self.handle_signals = handle_signals
        self.state: State | None = start  # a saved state to go on from (`step.analysis.state.resume`)
        self.view: ServiceView | None = None  # the newest Service view seen
        # The canary weight the Service actually had: what the analysis routed, or what the Service
        # showed (a resumed analysis, a write that landed as a signal arrived).
        self.weight_reached = 0
        self._weight_of: str | None = None  # the canary revision `weight_reached` is about
        self._signal_seen: int | None = None
        self._requests_seen = 0

    # ------------------------------------------------------------------ the loop

    def run(self) -> Outcome:
        with handling_signals(self._on_signal, enabled=self.handle_signals):
            try:
                return self._loop()
            except BaseException:
                self._crashed()
                raise

    def _loop(self) -> Outcome:
        now = self.ports.wall()
        if self.state is None:
            self.state = initial_state(self.config, now=now)
        elif self.state.canary is not None:  # resumed: the Service is where the saved analysis left it
            self._weight_of, self.weight_reached = self.state.canary, self.state.canary_weight
        obs: Observation | None = None
        pending: tuple[Action, ...] = ()
        while True:
            try:
                if obs is None:
                    now, obs = self.ports.wall(), self._observe_or_fail(Wait(until=now))
                self.state, actions = step(self.state, obs, now)
                obs = None
                for i, action in enumerate(actions):
                    pending = actions[i:]
                    try:
                        obs = self._perform(action)
                    except LostLease as err:  # another run holds the Service now: nothing more is written
                        obs = LeaseLost(message=str(err))
                        break
                    except StepError as err:
                        obs = ActionFailed(action=action, error=ErrorInfo.of(err))
                        break
                    if isinstance(action, Finish):
                        return self._outcome(action)
                pending = ()
                if obs is None:
                    raise RuntimeError(f"the state machine asked for nothing to wait on: {actions}")
                now = self._observed_at if isinstance(obs, Observed) else self.ports.wall()
            except SignalInterrupt as sig:
                name = signal.Signals(sig.signum).name
                self.timeline.note(f"{name} received")
                if pending and isinstance(pending[0], Route):  # the write may have landed: look
                    self._saw_service()
                obs = Interrupted(signal=sig.signum, signal_name=name, unperformed=pending)
                now, pending = self.ports.wall(), ()

    _observed_at: float = 0.0

    def _observe_or_fail(self, action: Action) -> Observation:
        try:
            return self._observe()
        except StepError as err:
            return ActionFailed(action=action, error=ErrorInfo.of(err))

    def _observe(self) -> Observed:
        self._observed_at = self.ports.wall()
        self.view = self.ports.router.observe_reconciled()
        return Observed(facts=facts_of(self.view, self.ports.router))

    # ------------------------------------------------------------------ actions

    def _perform(self, action: Action) -> Observation | None:
        router = self.ports.router
        match action:
            case Emit():
                self.ports.events.publish(action.event())
            case WriteStatus(status=status):
                try:
                    self.ports.status.write(status)
                except StepError as err:
                    self.timeline.note(f"could not update the Canary status: {err}")
            case Pin(primary=primary) | Restore(primary=primary):
                self._fence()
                self.view = router.pin_primary(primary)
            case Deploy():
                assert self.image is not None
                self._fence()
                self.timeline.note(f"setting the image to {self.image}")
                self.view = router.set_image(image=self.image, container=self.container)
                return self._observe()
            case CheckProviders():
                return self._check_providers()
            case Route(primary=primary, canary=canary, canary_weight=weight):
                self._fence()
                self.view = router.route(primary=primary, canary=canary, canary_weight=weight)
                self._weight_of, self.weight_reached = canary, weight
            case Tag(primary=primary, canary=canary):  # blue/green: 0 % with the canary tag
                self._fence()
                self.view = router.route(primary=primary, canary=canary, canary_weight=0)
                self._weight_of, self.weight_reached = canary, 0
                return self._observe()
            case Promote(canary=canary):
                self._fence()
                self.view = router.promote(canary)
            case RunHooks(kind=kind, phase=phase, canary_revision=revision, canary_url=url):
                return run_hooks(
                    self.ports.webhooks,
                    self.canary,
                    kind,
                    phase=phase.value,
                    canary_revision=revision,
                    canary_url=url,
                )
            case Measure(metric=metric, canary_revision=revision, primary_revision=primary):
                reading = measure(
                    self.canary,
                    metric,
                    canary_revision=revision,
                    primary_revision=primary,
                    templates=self.bundle.metric_templates,
                    metrics_server=self.ports.metrics,
                    template_providers=self.ports.template_metrics,
                )
                return Measured(metric=metric.name, reading=reading)
            case EndTick(record=record):
                self._record()  # the renewal and the record: one write, counted in this tick
                self.timeline.tick(record, api_requests=self._requests_since_last_tick())
            case Wait(until=until, wake_on_change=wake):
                self._wait(until, wake_on_change=wake)
                self._fence()  # a run paused past its lease learns here that it lost it
                return self._observe()
            case Finish():
                pass
        return None

    def _saw_service(self) -> None:
        """Count in the canary weight the Service shows now (no request: the router's watch)."""
        canary = self.state.canary if self.state is not None else None
        if canary is None:
            return
        try:
            view = self.ports.router.observe()
        except (StepError, SignalInterrupt):
            return
        if canary != self._weight_of:
            self._weight_of, self.weight_reached = canary, 0
        self.weight_reached = max(self.weight_reached, view.weight_of(canary))

    def _fence(self) -> None:
        """Raise `LostLease` unless this run still holds the Service's lease (see `Lease.fence`)."""
        if self.ports.lease is not None:
            self.ports.lease.fence()

    def _record(self) -> None:
        """Renew the lease with the state after this tick, so a run that finds it expired can resume."""
        lease, state = self.ports.lease, self.state
        if lease is None or not lease.held or state is None or state.done:
            return
        lease.renew(record_of(state, run=lease.identity, now=self.ports.wall()))

    def _check_providers(self) -> ProvidersChecked:
        if not uses_metrics_server(self.canary) or self.ports.metrics.is_online():
            return ProvidersChecked()
        why = getattr(self.ports.metrics, "last_error", None)
        return ProvidersChecked(offline=(str(why) if why else "the metrics server did not answer vector(1)",))

    def _requests_since_last_tick(self) -> int | None:
        if self.ports.request_count is None:
            return None
        total = self.ports.request_count()
        delta, self._requests_seen = total - self._requests_seen, total
        return delta

    def _wait(self, until: float, *, wake_on_change: bool) -> None:
        remaining = until - self.ports.wall()
        if remaining <= 0:
            return
        if wake_on_change:
            self.view = self.ports.router.wait_for_change(timeout=remaining)
        else:
            self.ports.clock.sleep(remaining)

    # ------------------------------------------------------------------ ending

    def _outcome(self, done: Finish) -> Outcome:
        state = self.state
        assert state is not None
        service = self._service_now() if done.show_service else None
        outcome = outcome_of(
            done,
            failed_checks=state.failed_checks,
            iterations=state.iterations,
            canary_weight=self.weight_reached,
            view=self.view,
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

    def _crashed(self) -> None:
        """A bug: let the machine say what to restore, do only that, and let the exception go on."""
        if self.state is None:
            return
        with handling_signals(self._on_signal, enabled=self.handle_signals):
            try:
                _, actions = step(self.state, Interrupted(signal=None), self.ports.wall())
                for action in actions:
                    if isinstance(action, Restore):
                        self._fence()
                        self.view = self.ports.router.pin_primary(action.primary)
            except (StepError, SignalInterrupt):
                pass

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        first = self._signal_seen is None
        self._signal_seen = signum
        if first:  # a second signal must not cut the restore short
            raise SignalInterrupt(signum)

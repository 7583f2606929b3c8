"""The driver with in-memory ports: the loop, the signal path and the metrics-server check, no subprocess.

The ports here are plain objects that keep what a Knative Service would show; the clock is fake and
fast-forwards, so a whole run takes milliseconds. A signal is a real SIGTERM/SIGINT sent to this
process from inside the fake clock, at the moment the test chooses.
"""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from step.analysis.state import Reason
from step.contract import Decision
from step.driver import Driver, Ports
from step.errors import APIError, ExitCode, MetricError
from step.ports import (
    CanaryStatus,
    Event,
    FanOut,
    RevisionPhase,
    RevisionState,
    ServiceView,
    TrafficTarget,
    WebhookPayload,
    WebhookResult,
)
from step.report.timeline import Timeline
from step.spec.model import Analysis, Canary, Metric, SpecBundle, Webhook, WebhookType
from step.webhooks.payload import EventWebhooks


@dataclass
class FakeClock:
    t: float = 0.0
    on_sleep: Callable[[float], None] = lambda t: None

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.on_sleep(self.t)


@dataclass
class MemoryRouter:
    """A Knative Service in memory: podinfo-00001 pinned, podinfo-00002 created and Ready."""

    clock: FakeClock
    primary: str = "podinfo-00001"
    latest: str = "podinfo-00002"
    split: dict[str, int] = field(default_factory=lambda: {"podinfo-00001": 100})
    writes: list[str] = field(default_factory=list)
    fail_pin: bool = False

    def observe_reconciled(self) -> ServiceView:
        return self.observe()

    def observe(self) -> ServiceView:
        return ServiceView(
            name="podinfo",
            namespace="test",
            generation=1,
            observed_generation=1,
            primary_revision=self.primary,
            latest_created_revision=self.latest,
            latest_ready_revision=self.latest,
            ready=True,
            status_traffic=tuple(TrafficTarget(revision_name=r, percent=p) for r, p in self.split.items()),
        )

    def revision(self, name: str) -> RevisionState:
        return RevisionState(name=name, phase=RevisionPhase.READY)

    def pin_primary(self, primary: str) -> ServiceView:
        self.writes.append(f"pin {primary}")
        if self.fail_pin:
            raise APIError("the API server refused", status=500, verb="patch", resource="services")
        self.primary, self.split = primary, {primary: 100}
        return self.observe()

    def route(self, *, primary: str, canary: str, canary_weight: int) -> ServiceView:
        self.writes.append(f"route {canary_weight}")
        self.split = {primary: 100 - canary_weight, canary: canary_weight}
        return self.observe()

    def promote(self, canary: str) -> ServiceView:
        self.writes.append(f"promote {canary}")
        self.primary, self.split = canary, {canary: 100}
        return self.observe()

    def set_image(self, *, image: str, container: str | None) -> ServiceView:
        raise AssertionError("not deployed in these tests")

    def wait_for_change(self, *, timeout: float) -> ServiceView:
        self.clock.sleep(timeout)
        return self.observe()


@dataclass
class Prometheus:
    online: bool = True
    value: float = 100.0
    queries: list[str] = field(default_factory=list)
    last_error: MetricError | None = None

    def query(self, promql: str) -> float:
        self.queries.append(promql)
        return self.value

    def is_online(self) -> bool:
        if not self.online:
            self.last_error = MetricError(
                "Prometheus at http://127.0.0.1:1 is unreachable: connection refused"
            )
        return self.online


@dataclass
class Hooks:
    calls: list[tuple[str, WebhookPayload]] = field(default_factory=list)

    def call(self, hook: Webhook, payload: WebhookPayload) -> WebhookResult:
        self.calls.append((hook.name, payload))
        return WebhookResult(ok=True, status=200, message="")


@dataclass
class Recorder:
    events: list[tuple[str, str]] = field(default_factory=list)
    statuses: list[CanaryStatus] = field(default_factory=list)
    notified: list[Event] = field(default_factory=list)

    def emit(self, *, type: str, message: str) -> None:
        self.events.append((type, message))

    def write(self, status: CanaryStatus) -> None:
        self.statuses.append(status)

    def notify(self, event: Event) -> None:
        self.notified.append(event)


def canary(**analysis: object) -> Canary:
    fields: dict[str, object] = {
        "interval_seconds": 10.0,
        "threshold": 2,
        "max_weight": 30,
        "step_weight": 10,
        "metrics": (Metric(name="request-success-rate", threshold_min=99),),
        "webhooks": (Webhook(name="notify", url="http://127.0.0.1:9/", type=WebhookType.EVENT),),
    }
    fields.update(analysis)
    return Canary(name="podinfo", namespace="test", target_name="podinfo", analysis=Analysis(**fields))  # type: ignore[arg-type]


@dataclass
class Rig:
    canary: Canary
    clock: FakeClock = field(default_factory=FakeClock)
    prometheus: Prometheus = field(default_factory=Prometheus)
    hooks: Hooks = field(default_factory=Hooks)
    recorder: Recorder = field(default_factory=Recorder)
    stderr: io.StringIO = field(default_factory=io.StringIO)

    def __post_init__(self) -> None:
        self.router = MemoryRouter(self.clock)

    def run(self, **driver: object):  # type: ignore[no-untyped-def]
        timeline = Timeline(canary=self.canary, stream=self.stderr)
        ports = Ports(
            router=self.router,
            metrics=self.prometheus,
            webhooks=self.hooks,
            events=FanOut(events=self.recorder, notifiers=(self.recorder,), on_error=timeline.note),
            status=self.recorder,
            clock=self.clock,
            wall=self.clock.wall,
        )
        return Driver(SpecBundle(canary=self.canary), ports=ports, timeline=timeline, **driver).run()  # type: ignore[arg-type]


def test_a_whole_run_through_the_ports() -> None:
    rig = Rig(canary())
    outcome = rig.run()
    assert (outcome.decision, outcome.exit_code) == (Decision.PROMOTED, ExitCode.OK)
    assert rig.router.writes == ["route 10", "route 20", "route 30", "promote podinfo-00002"]
    assert rig.clock.t == 30  # promotion on the tick after max weight, 3 intervals after the start
    assert rig.prometheus.queries[0].startswith(" sum( rate( envoy_cluster_upstream_rq{")
    assert 'envoy_cluster_name=~"test/podinfo-00002"' in rig.prometheus.queries[0]
    assert outcome.traffic == "100% on podinfo-00002" and outcome.canary_weight == 30
    # every event reached the Kubernetes Event sink and the notifiers (here: the same recorder)
    assert [m for _, m in rig.recorder.events] == [e.message for e in rig.recorder.notified]
    # the phase when the event happened, as Flagger sends it: detection happens while Initialized
    assert [(e.message, e.phase) for e in rig.recorder.notified[:2]] == [
        ("New revision detected! Scaling up podinfo.test", "Initialized"),
        ("Starting canary analysis for podinfo.test", "Progressing"),
    ]


def test_event_webhooks_are_one_notifier_of_the_composed_sink() -> None:
    rig = Rig(canary())
    hooks = EventWebhooks(caller=rig.hooks, canary=rig.canary, wall=rig.clock.wall)
    sink = FanOut(events=rig.recorder, notifiers=(hooks,))
    sink.publish(Event(type="Normal", message="hello", phase="Progressing", canary_revision="podinfo-00002"))
    sink.publish(Event(type="Warning", message="bye", phase="Failed", urgent=True))
    assert [(name, p.metadata["eventMessage"], p.phase) for name, p in rig.hooks.calls] == [
        ("notify", "hello", "Progressing")
    ]
    assert rig.hooks.calls[0][1].checksum == "547d5765b7"  # ComputeHash("podinfo-00002")
    assert rig.recorder.events == [("Normal", "hello"), ("Warning", "bye")]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_analysis_restores_the_primary_before_the_outcome(signum: int, code: int) -> None:
    rig = Rig(canary())
    rig.clock.on_sleep = lambda t: os.kill(os.getpid(), signum) if t >= 15 else None
    outcome = rig.run()
    name = signal.Signals(signum).name
    assert int(outcome.exit_code) == code and outcome.signal == signum
    assert (outcome.decision, outcome.reason) == (Decision.FAILED, f"interrupted-{name.lower()}")
    assert rig.router.writes == ["route 10", "route 20", "pin podinfo-00001"]
    assert rig.router.split == {"podinfo-00001": 100}
    assert outcome.traffic == "100% on podinfo-00001" and outcome.canary_weight == 20
    assert ("Warning", f"canary-step interrupted by {name}; 100% on podinfo-00001") in rig.recorder.events
    # the urgent event went to the Kubernetes Event only, never to a notifier that could delay the exit
    assert not any(e.urgent for e in rig.recorder.notified)
    assert f"{name} received" in rig.stderr.getvalue()
    assert signal.getsignal(signum) is not None  # the handlers came back


def test_canary_weight_is_the_weight_the_service_had_when_a_signal_lands_inside_a_write() -> None:
    # SIGINT arrives while the route to 20 % waits for convergence: the write landed (the Service
    # showed 20 %), so the result says 20, not the 10 the analysis last saw confirmed (issue 14).
    rig = Rig(canary())
    route = rig.router.route

    def route_then_signal(*, primary: str, canary: str, canary_weight: int) -> ServiceView:
        view = route(primary=primary, canary=canary, canary_weight=canary_weight)
        if canary_weight == 20:
            os.kill(os.getpid(), signal.SIGINT)
        return view

    rig.router.route = route_then_signal  # type: ignore[method-assign]
    outcome = rig.run()
    assert int(outcome.exit_code) == 130
    assert rig.router.writes == ["route 10", "route 20", "pin podinfo-00001"]
    assert outcome.canary_weight == 20 and outcome.traffic == "100% on podinfo-00001"


def test_a_signal_whose_restore_fails_is_exit_5_with_the_service_shown() -> None:
    rig = Rig(canary())

    def interrupt(t: float) -> None:
        if t >= 15:
            rig.router.fail_pin = True
            os.kill(os.getpid(), signal.SIGTERM)

    rig.clock.on_sleep = interrupt
    outcome = rig.run()
    assert outcome.exit_code is ExitCode.ROLLBACK_FAILED and outcome.signal == signal.SIGTERM
    assert outcome.reason == "interrupted-sigterm" and outcome.error is not None
    assert outcome.error.verb == "patch" and outcome.error.resource == "services"
    assert outcome.service is not None and outcome.traffic.startswith("possibly split")


def test_an_unreachable_metrics_server_fails_with_exit_4_before_any_traffic_moves() -> None:
    rig = Rig(canary())
    rig.prometheus.online = False
    outcome = rig.run()
    assert (outcome.decision, outcome.reason) == (Decision.FAILED, Reason.METRICS_OFFLINE.value)
    assert outcome.exit_code is ExitCode.INFRASTRUCTURE
    assert "connection refused" in outcome.message
    assert rig.router.writes == [] and rig.prometheus.queries == []


def test_suspend_skips_with_exit_0_and_touches_nothing() -> None:
    rig = Rig(replace(canary(), suspend=True))
    outcome = rig.run()
    assert (outcome.decision, outcome.reason, outcome.exit_code) == (
        Decision.SKIPPED,
        "suspended",
        ExitCode.OK,
    )
    assert rig.router.writes == [] and rig.recorder.events == []
    assert "spec.suspend: true" in rig.stderr.getvalue()


def test_an_api_error_is_handed_to_the_machine_as_data_and_a_failed_first_pin_restores_nothing() -> None:
    rig = Rig(canary())
    rig.router.fail_pin = True
    rig.router.primary = None  # type: ignore[assignment]
    outcome = rig.run()
    assert (outcome.decision, outcome.reason) == (Decision.FAILED, "infrastructure-error")
    assert outcome.error is not None and outcome.error.kind == "APIError" and outcome.error.status == 500
    assert outcome.exit_code is ExitCode.INFRASTRUCTURE
    assert rig.router.writes == ["pin podinfo-00001"]  # no restore of a pin that never happened


def test_a_crash_mid_analysis_restores_the_primary_and_lets_the_bug_show() -> None:
    rig = Rig(canary())
    route = rig.router.route

    def broken(*, primary: str, canary: str, canary_weight: int) -> ServiceView:
        if canary_weight == 30:
            raise RuntimeError("a bug in the router")
        return route(primary=primary, canary=canary, canary_weight=canary_weight)

    rig.router.route = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="a bug in the router"):
        rig.run()
    assert rig.router.writes == ["route 10", "route 20", "pin podinfo-00001"]
    assert rig.router.split == {"podinfo-00001": 100}

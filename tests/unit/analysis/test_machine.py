"""The state machine, tick by tick, with a fake clock: Flagger's semantics and our differences."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from step.analysis.evaluate import Reading
from step.analysis.machine import step
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
    stops_after,
)
from step.analysis.records import TickRecord
from step.analysis.state import Config, Phase, Reason, State, initial_state
from step.contract import Decision
from step.errors import ErrorInfo, ExitCode
from step.ports import RevisionPhase
from step.spec.build import build_analysis
from step.spec.model import Analysis, Canary, Metric, OnNoData, TemplateRef, Webhook, WebhookType

INTERVAL = 10.0

SR = Metric(name="request-success-rate", threshold_min=99)
RD = Metric(name="request-duration", threshold_max=500)


def seed(**analysis: object) -> Canary:
    """The seed's Canary: interval 10s (in fake time), threshold 5, maxWeight 50, stepWeight 10."""
    fields: dict[str, object] = {
        "interval_seconds": INTERVAL,
        "threshold": 5,
        "max_weight": 50,
        "step_weight": 10,
        "metrics": (SR, RD),
    }
    fields.update(analysis)
    return Canary(name="podinfo", namespace="test", target_name="podinfo", analysis=Analysis(**fields))  # type: ignore[arg-type]


def hook(name: str, kind: WebhookType) -> Webhook:
    return Webhook(name=name, url=f"http://loadtester/{name}", type=kind)


HookScript = Callable[[Webhook, int], bool]  # (hook, how many times it was called before) -> ok
ReadingScript = Callable[[Metric, int], Reading]  # (metric, analysis tick index) -> reading
FactsScript = Callable[["World"], ServiceFacts]


CANARY_URL = "http://canary-podinfo.test.svc.cluster.local"


def ready_canary(world: World) -> ServiceFacts:
    return ServiceFacts(
        primary_revision=world.annotation,
        latest_created_revision=world.latest,
        serving_revision=world.annotation or "podinfo-00001",
        canary_phase=RevisionPhase.READY,
        canary_url=CANARY_URL if world.tagged else None,
    )


@dataclass
class World:
    """Plays the driver: answers requests from scripts and keeps what a real Service would show."""

    canary: Canary
    annotation: str | None = "podinfo-00001"
    latest: str = "podinfo-00002"
    hooks_ok: HookScript = lambda hook, n: True
    readings: ReadingScript = lambda metric, tick: Reading.of(100.0)
    facts: FactsScript = ready_canary
    deploy: bool = False
    timeout: float | None = None
    error_limit: int = 4
    fail_action: Callable[[Action], str | None] = lambda action: None
    now: float = 1000.0
    weight: int = 0  # the canary's observed weight
    tagged: bool = False  # the canary revision has the `canary` tag (a Route or a Tag put it there)
    tags: list[float] = field(default_factory=list)  # (seconds since start) of each Tag
    hook_urls: list[tuple[str, str | None]] = field(default_factory=list)  # (hook type, canary_url sent)
    events: list[tuple[str, str]] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    hook_calls: list[tuple[str, str]] = field(default_factory=list)  # (hook name, payload phase)
    measured: list[tuple[float, str]] = field(default_factory=list)
    weights: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, new weight)
    ticks: list[TickRecord] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    on_wait: Callable[[World], None] = lambda world: None
    start: float = 0.0
    state: State | None = None
    offline: tuple[str, ...] = ()  # what the metrics-server check answers
    states: list[State] = field(default_factory=list)  # every state the machine returned
    start_state: Callable[[Config, float], State] | None = None  # e.g. a resumed state
    scrape_interval: float = 1.0  # Prometheus's, for the no-data grace

    def t(self) -> float:
        return self.now - self.start

    def run(self, max_steps: int = 2000) -> Finish:
        config = Config(
            canary=self.canary,
            deploy=self.deploy,
            timeout_seconds=self.timeout,
            consecutive_error_limit=self.error_limit,
            scrape_interval_seconds=self.scrape_interval,
        )
        self.start = self.now
        state = initial_state(config, now=self.now)
        if self.start_state is not None:
            state = self.start_state(config, self.now)
        obs: Observation = Observed(facts=self.facts(self))
        for _ in range(max_steps):
            state, actions = step(state, obs, self.now)
            self.state = state
            self.states.append(state)
            answer: Observation | None = None
            for action in actions:
                self.actions.append(action)
                failure = self.fail_action(action)
                if failure is not None:
                    answer = ActionFailed(action=action, error=ErrorInfo(kind="APIError", message=failure))
                    break
                answer = self.perform(action)
                if isinstance(action, Finish):
                    assert action is actions[-1]
                    return action
            assert answer is not None, f"no request among {actions}"
            obs = answer
        raise AssertionError("the run did not finish")

    def perform(self, action: Action) -> Observation | None:
        match action:
            case Emit(type=type_, message=message):
                self.events.append((type_, message))
            case Pin(primary=primary):
                self.annotation = primary
                self.weight = 0
            case Route(canary_weight=weight):
                self.weight = weight
                self.tagged = True
                self.weights.append((self.t(), weight))
            case Tag():
                self.weight = 0
                self.tagged = True
                self.tags.append(self.t())
                return Observed(facts=self.facts(self))
            case Promote(canary=canary):
                self.annotation = canary
                self.weight = 0
                self.tagged = False
                self.weights.append((self.t(), 100))
            case Restore():
                self.weight = 0
                self.tagged = False
                self.weights.append((self.t(), 0))
            case CheckProviders():
                return ProvidersChecked(offline=self.offline)
            case Deploy():
                self.latest = "podinfo-00002"
                return Observed(facts=self.facts(self))
            case RunHooks(kind=kind, phase=phase, canary_url=url):
                self.hook_urls.append((kind.value, url))
                results = []
                for h in self.canary.analysis.hooks(kind):
                    n = self.calls.get(h.name, 0)
                    self.calls[h.name] = n + 1
                    self.hook_calls.append((h.name, phase.value))
                    result = HookRun(
                        name=h.name,
                        ok=self.hooks_ok(h, n),
                        status=200,
                        message="" if self.hooks_ok(h, n) else "403 closed",
                    )
                    results.append(result)
                    if stops_after(kind, result):
                        break
                return HooksRan(kind=kind, results=tuple(results))
            case Measure(metric=metric, canary_revision=revision):
                self.measured.append((self.t(), metric.name))
                assert revision == self.latest
                return Measured(metric=metric.name, reading=self.readings(metric, self.analysis_tick()))
            case EndTick(record=record):
                self.ticks.append(record)
            case Wait(until=until):
                assert until >= self.now
                self.now = until
                self.on_wait(self)
                return Observed(facts=self.facts(self))
            case WriteStatus() | Finish():
                pass
        return None

    def analysis_tick(self) -> int:
        """Ticks since the first advance (0 = the tick that set the first weight, or the tag)."""
        first = next((t for t, _ in self.weights), None) if not self.tags else self.tags[0]
        return -1 if first is None else round((self.t() - first) / INTERVAL)

    def messages(self) -> list[str]:
        return [m for _, m in self.events]


def weight_times(world: World) -> list[tuple[float, int]]:
    return [(round(t, 3), w) for t, w in world.weights]


# --------------------------------------------------------------------------- promotion


def test_seed_promotes_five_intervals_after_the_analysis_starts() -> None:
    world = World(seed())
    done = world.run()
    assert done.decision is Decision.PROMOTED and done.reason is Reason.ANALYSIS_PASSED
    assert weight_times(world) == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 100)]
    assert world.annotation == "podinfo-00002"
    assert world.messages() == [
        "New revision detected! Scaling up podinfo.test",
        "Starting canary analysis for podinfo.test",
        "Advance podinfo.test canary weight 10",
        "Advance podinfo.test canary weight 20",
        "Advance podinfo.test canary weight 30",
        "Advance podinfo.test canary weight 40",
        "Advance podinfo.test canary weight 50",
        "Routing all traffic to primary",
        "Promotion completed! Scaling down podinfo.test",
    ]
    assert world.state is not None and world.state.iterations == 6


def test_the_first_tick_runs_no_metrics_and_the_promotion_tick_runs_them_again() -> None:
    world = World(seed())
    world.run()
    times = sorted({t for t, _ in world.measured})
    assert times == [10, 20, 30, 40, 50]  # not at 0 (first tick), yes at 50 (max weight, one more analysis)
    assert [name for t, name in world.measured if t == 10] == ["request-success-rate", "request-duration"]


@pytest.mark.parametrize(
    ("analysis", "expected"),
    [
        ({"step_weight": 30, "max_weight": 50}, [30, 60, 100]),  # overshoot: the cap is 100, not maxWeight
        ({"step_weight": 20, "max_weight": 100}, [20, 40, 60, 80, 100, 100]),
        ({"step_weight": 100, "max_weight": 0}, [100, 100]),
        ({"step_weight": 0, "step_weights": (1, 20, 80)}, [1, 20, 80, 100]),
        ({"step_weight": 0, "step_weights": (5, 10, 50, 100)}, [5, 10, 50, 100, 100]),
        ({"step_weight": 0, "step_weights": (25, 30, 40), "max_weight": 90}, [25, 30, 40, 100]),
    ],
)
def test_weight_schedules(analysis: dict[str, object], expected: list[int]) -> None:
    if (
        "max_weight" in analysis
    ):  # as `spec.build` reads maxWeight (the one place `<= 0 means 100` is decided)
        analysis = {
            **analysis,
            "max_weight": build_analysis({"maxWeight": analysis["max_weight"]}).max_weight,
        }
    world = World(seed(**analysis))
    assert world.run().decision is Decision.PROMOTED
    assert [w for _, w in world.weights] == expected
    assert [t for t, _ in world.weights] == [i * INTERVAL for i in range(len(expected))]


def test_skip_analysis_promotes_at_once_with_post_rollout_hooks() -> None:
    canary = replace(seed(webhooks=(hook("notify", WebhookType.POST_ROLLOUT),)), skip_analysis=True)
    world = World(canary)
    done = world.run()
    assert (done.decision, done.reason) == (Decision.PROMOTED, Reason.ANALYSIS_SKIPPED)
    assert weight_times(world) == [(0, 100)]
    assert world.measured == []
    assert world.hook_calls == [("notify", "Succeeded")]
    assert world.messages()[-1] == "Promotion completed! Canary analysis was skipped for podinfo.test"


# --------------------------------------------------------------------------- rollback


def always(value: float) -> ReadingScript:
    return lambda metric, tick: Reading.of(value if metric.name == "request-success-rate" else 100.0)


@pytest.mark.parametrize(("threshold", "rollback_at"), [(0, 20), (1, 20), (2, 30), (5, 60)])
def test_rollback_on_the_tick_after_the_nth_failed_check(threshold: int, rollback_at: float) -> None:
    # the spec's threshold as `spec.build` reads it (the one place `<= 0 means 1` is decided)
    world = World(seed(threshold=build_analysis({"threshold": threshold}).threshold), readings=always(50.0))
    done = world.run()
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.FAILED_CHECKS)
    # the first tick (no metrics) advanced to 10; every later tick failed and held the weight
    assert weight_times(world) == [(0, 10), (rollback_at, 0)]
    n = max(1, threshold)
    halts = [m for m in world.messages() if m.startswith("Halt")]
    assert halts == ["Halt podinfo.test advancement success rate 50.00% < 99%"] * n
    assert world.messages()[-2:] == [
        f"Rolling back podinfo.test failed checks threshold reached {n}",
        "Canary failed! Scaling down podinfo.test",
    ]
    assert world.annotation == "podinfo-00001" and world.weight == 0


def test_failed_checks_accumulate_across_passing_ticks() -> None:
    # fail at analysis ticks 1 and 3, pass otherwise: threshold 2 rolls back at tick 4
    world = World(
        seed(threshold=2),
        readings=lambda metric, tick: Reading.of(50.0 if tick in (1, 3) else 100.0),
    )
    done = world.run()
    assert done.reason is Reason.FAILED_CHECKS
    assert weight_times(world) == [(0, 10), (20, 20), (40, 0)]


def test_first_failure_short_circuits_the_tick() -> None:
    world = World(seed(threshold=1), readings=always(0.0))
    world.run()
    assert [name for t, name in world.measured] == ["request-success-rate"]


def test_no_values_found_fails_by_default_and_on_no_data_ignore_passes() -> None:
    failing = World(seed(threshold=1), readings=lambda metric, tick: Reading.empty())
    assert failing.run().reason is Reason.FAILED_CHECKS
    lenient = seed(
        metrics=(replace(SR, on_no_data=OnNoData.IGNORE), replace(RD, on_no_data=OnNoData.IGNORE)),
        threshold=1,
    )
    world = World(lenient, readings=lambda metric, tick: Reading.empty())
    assert world.run().decision is Decision.PROMOTED
    assert any("ignore" in m for m in world.messages())


def no_data_at(*ticks: int) -> ReadingScript:
    """No values on the given analysis ticks (1 = the first measuring tick), 100 % success otherwise."""
    return lambda metric, tick: Reading.empty() if tick in ticks else Reading.of(100.0)


def test_no_data_on_the_first_measuring_tick_is_not_a_failed_check_by_default() -> None:
    # The load test starts with the first step: the first tick that measures finds no series yet.
    world = World(seed(threshold=1), readings=no_data_at(1))
    done = world.run()
    assert done.decision is Decision.PROMOTED
    # the ideal 5 intervals: no tick is held for the missing data
    assert weight_times(world) == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 100)]
    graced = [c for t in world.ticks for c in t.checks if c.verdict == "ignored"]
    assert [c.metric for c in graced] == ["request-success-rate", "request-duration"]
    assert graced[0].message.startswith("No values found for metric request-success-rate yet: the canary has")
    assert "not counted" in graced[0].message
    assert not any("No values found" in m for m in world.messages())  # the tick line says it, no Event
    assert world.state is not None and world.state.failed_checks == 0


def test_on_no_data_fail_immediately_keeps_flaggers_failed_check() -> None:
    metrics = (replace(SR, on_no_data=OnNoData.FAIL_IMMEDIATELY), RD)
    world = World(seed(threshold=1, metrics=metrics), readings=no_data_at(1))
    done = world.run()
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.FAILED_CHECKS)
    assert weight_times(world) == [(0, 10), (20, 0)]
    assert any(m.startswith("Halt advancement no values found for knative metric") for m in world.messages())


def test_after_the_grace_no_data_is_a_failed_check() -> None:
    # scrapes every 1 s, interval 10 s: the grace is the first measuring tick only
    world = World(seed(threshold=1), readings=no_data_at(1, 2))
    done = world.run()
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.FAILED_CHECKS)
    assert weight_times(world) == [(0, 10), (10, 20), (30, 0)]


def test_the_grace_lasts_two_scrapes_of_traffic() -> None:
    # scrapes every 15 s: traffic for 10 s and 20 s is less than two scrapes; 30 s is not
    world = World(seed(threshold=1), readings=no_data_at(1, 2, 3), scrape_interval=15.0)
    done = world.run()
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.FAILED_CHECKS)
    assert weight_times(world) == [(0, 10), (10, 20), (20, 30), (40, 0)]


def test_the_grace_starts_again_with_a_restarted_analysis() -> None:
    def newer_at_20(world: World) -> None:
        if world.t() == 20:
            world.latest = "podinfo-00003"

    def readings(metric: Metric, tick: int) -> Reading:
        return Reading.empty() if tick in (1, 4) else Reading.of(100.0)

    world = World(seed(threshold=1), readings=readings, on_wait=newer_at_20)
    done = world.run()
    assert done.decision is Decision.PROMOTED
    assert world.state is not None and world.state.failed_checks == 0


def test_metric_templates_are_measured_after_the_builtins() -> None:
    custom = Metric(name="errors", template_ref=TemplateRef(name="errors"), threshold_max=1)
    inline = Metric(name="inline", query="sum(x)", threshold_max=1)
    world = World(
        seed(metrics=(custom, SR, inline)), readings=lambda m, t: Reading.of(1.0 if m.query else 100.0)
    )
    world.run()
    assert [n for t, n in world.measured if t == 10] == ["request-success-rate", "inline", "errors"]


def test_rollback_hook_success_triggers_a_manual_rollback() -> None:
    hooks = (hook("rollback-gate", WebhookType.ROLLBACK), hook("load", WebhookType.POST_ROLLOUT))
    world = World(seed(webhooks=hooks), hooks_ok=lambda h, n: h.name != "rollback-gate" or n >= 2)
    done = world.run()
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.MANUAL_ROLLBACK)
    assert weight_times(world) == [(0, 10), (10, 20), (20, 0)]
    assert world.messages()[-4:] == [
        "Rollback check rollback-gate passed",
        "Rolling back podinfo.test manual webhook invoked",
        "Canary failed! Scaling down podinfo.test",
        "Post-rollout check load passed",
    ]
    assert world.messages().count("Rollback hook rollback-gate not signaling a rollback") == 2
    assert ("load", "Failed") in world.hook_calls


def test_pre_rollout_failure_counts_and_is_retried_on_the_next_tick() -> None:
    hooks = (hook("smoke", WebhookType.PRE_ROLLOUT),)
    world = World(seed(webhooks=hooks, threshold=3), hooks_ok=lambda h, n: n >= 1)
    done = world.run()
    assert done.decision is Decision.PROMOTED
    assert weight_times(world)[0] == (10, 10)
    assert world.messages()[:4] == [
        "New revision detected! Scaling up podinfo.test",
        "Starting canary analysis for podinfo.test",
        "Halt podinfo.test advancement pre-rollout check smoke failed 403 closed",
        "Starting canary analysis for podinfo.test",
    ]
    assert world.state is not None and world.state.failed_checks == 1


def test_rollout_hook_failure_is_a_failed_check() -> None:
    hooks = (hook("acceptance", WebhookType.ROLLOUT),)
    world = World(seed(webhooks=hooks, threshold=1), hooks_ok=lambda h, n: False)
    done = world.run()
    assert done.reason is Reason.FAILED_CHECKS
    assert "Halt podinfo.test advancement external check acceptance failed 403 closed" in world.messages()
    assert world.measured == []  # the hook failure short-circuits the metrics


# --------------------------------------------------------------------------- gates


def test_confirm_rollout_holds_in_waiting_then_releases() -> None:
    hooks = (hook("gate", WebhookType.CONFIRM_ROLLOUT),)
    world = World(seed(webhooks=hooks), hooks_ok=lambda h, n: n >= 2)
    assert world.run().decision is Decision.PROMOTED
    assert world.hook_calls[:3] == [("gate", "Initialized"), ("gate", "Waiting"), ("gate", "Waiting")]
    assert world.weights[0] == (20, 10)  # nothing moved while the gate was closed
    assert world.messages()[:3] == [
        "Halt podinfo.test advancement waiting for approval gate",  # once, on entering Waiting
        "Confirm-rollout check gate passed",
        "New revision detected! Scaling up podinfo.test",
    ]
    assert [t.phase for t in world.ticks[:3]] == ["Waiting", "Waiting", "Progressing"]


def test_confirm_traffic_increase_holds_the_weight_then_releases() -> None:
    hooks = (hook("more", WebhookType.CONFIRM_TRAFFIC_INCREASE),)
    # open on the first call, closed on the 2nd and 3rd, open afterwards
    world = World(seed(webhooks=hooks), hooks_ok=lambda h, n: n not in (1, 2))
    assert world.run().decision is Decision.PROMOTED
    assert weight_times(world) == [(0, 10), (30, 20), (40, 30), (50, 40), (60, 50), (70, 100)]
    assert (
        world.messages().count("Halt podinfo.test advancement waiting for traffic increase approval more")
        == 2
    )


def test_confirm_promotion_holds_in_waiting_promotion_while_the_analysis_goes_on() -> None:
    hooks = (hook("promote", WebhookType.CONFIRM_PROMOTION),)
    world = World(seed(webhooks=hooks), hooks_ok=lambda h, n: n >= 3)
    assert world.run().decision is Decision.PROMOTED
    assert weight_times(world)[-2:] == [(40, 50), (80, 100)]
    assert {t for t, _ in world.measured} >= {50, 60, 70, 80}  # metrics keep running while waiting
    assert world.messages().count("Halt podinfo.test advancement waiting for promotion approval promote") == 1
    assert "Confirm-promotion check promote passed" in world.messages()
    assert [t.phase for t in world.ticks if t.at in (50, 60, 70)] == ["WaitingPromotion"] * 3


def test_waiting_promotion_still_rolls_back_on_failed_checks() -> None:
    hooks = (hook("promote", WebhookType.CONFIRM_PROMOTION),)
    world = World(
        seed(webhooks=hooks, threshold=2),
        hooks_ok=lambda h, n: False,
        readings=lambda metric, tick: Reading.of(50.0 if tick >= 6 else 100.0),
    )
    done = world.run()
    assert done.reason is Reason.FAILED_CHECKS
    assert weight_times(world)[-1] == (80, 0)


# --------------------------------------------------------------------------- errors, deadlines, restarts


def test_consecutive_provider_errors_stop_with_failed_and_restore_the_primary() -> None:
    world = World(seed(threshold=1), readings=lambda metric, tick: Reading.failed("connection refused"))
    done = world.run()
    assert (done.decision, done.reason) == (Decision.FAILED, Reason.METRIC_ERRORS)
    assert done.error is None and done.decision is Decision.FAILED  # exit 4 via DEFAULT_EXIT_CODES
    # ticks 1-5 error (5 > limit 4); no failed check was counted even with threshold 1
    assert weight_times(world) == [(0, 10), (50, 0)]
    assert world.state is not None and world.state.failed_checks == 0
    assert world.messages().count("Prometheus query failed: connection refused") == 5


def test_an_answer_resets_the_consecutive_error_count() -> None:
    world = World(
        seed(),
        readings=lambda metric, tick: Reading.of(100.0) if tick % 3 == 0 else Reading.failed("timeout"),
    )
    assert world.run().decision is Decision.PROMOTED


def test_progress_deadline_rolls_back_a_canary_that_never_becomes_ready() -> None:
    canary = replace(seed(), progress_deadline_seconds=25)
    world = World(
        canary,
        facts=lambda w: replace(
            ready_canary(w), canary_phase=RevisionPhase.PENDING, canary_reason="ContainerMissing"
        ),
    )
    done = world.run()
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.PROGRESS_DEADLINE)
    assert world.t() == 25  # waited up to the deadline exactly
    assert world.messages() == [
        "New revision detected! Scaling up podinfo.test",
        "Knative Revision podinfo-00002.test is not ready: ContainerMissing",
        "Rolling back podinfo.test progress deadline exceeded "
        "revision podinfo-00002 is pending: ContainerMissing",
        "Canary failed! Scaling down podinfo.test",
    ]
    assert world.weights == [(25, 0)]


def test_analysis_starts_as_soon_as_the_canary_becomes_ready() -> None:
    def facts(world: World) -> ServiceFacts:
        phase = RevisionPhase.READY if world.t() >= 3 else RevisionPhase.PENDING
        return replace(ready_canary(world), canary_phase=phase)

    def wake_early(world: World) -> None:
        # a real driver wakes on the Service's change; the fake jumps to the readiness moment
        if world.t() > 3 and not world.weights:
            world.now = world.start + 3

    world = World(seed(), facts=facts, on_wait=wake_early)
    assert world.run().decision is Decision.PROMOTED
    assert world.weights[0] == (3, 10)
    wait = next(a for a in world.actions if isinstance(a, Wait))
    assert wait.wake_on_change


def test_a_new_revision_restarts_the_analysis_on_it() -> None:
    def new_revision(world: World) -> None:
        if world.t() == 20:
            world.latest = "podinfo-00003"

    world = World(seed(), on_wait=new_revision)
    done = world.run()
    assert done.decision is Decision.PROMOTED
    assert world.annotation == "podinfo-00003"
    assert weight_times(world) == [
        (0, 10),
        (10, 20),
        (20, 0),
        (30, 10),
        (40, 20),
        (50, 30),
        (60, 40),
        (70, 50),
        (80, 100),
    ]
    assert "New revision detected! Restarting analysis for podinfo.test" in world.messages()
    restores = [a for a in world.actions if isinstance(a, Restore)]
    assert restores == [Restore(primary="podinfo-00001", canary="podinfo-00002")]


def test_a_failed_route_write_restores_the_primary_and_fails() -> None:
    world = World(
        seed(),
        fail_action=lambda a: (
            "API server unreachable" if isinstance(a, Route) and a.canary_weight == 30 else None
        ),
    )
    done = world.run()
    assert (done.decision, done.reason) == (Decision.FAILED, Reason.INFRASTRUCTURE)
    assert isinstance(world.actions[-1], Finish)
    assert any(isinstance(a, Restore) for a in world.actions)
    assert "Stopping podinfo.test analysis: API server unreachable" in world.messages()


def test_a_failed_restore_is_a_rollback_failure() -> None:
    world = World(
        seed(threshold=1),
        readings=always(0.0),
        fail_action=lambda a: "409 forever" if isinstance(a, Restore) else None,
    )
    done = world.run()
    assert done.reason is Reason.ROLLBACK_FAILED
    assert done.error is not None and done.error.exit_code is ExitCode.ROLLBACK_FAILED


def test_an_api_failure_before_traffic_moved_needs_no_restore() -> None:
    hooks = (hook("gate", WebhookType.CONFIRM_ROLLOUT),)
    world = World(
        seed(webhooks=hooks),
        hooks_ok=lambda h, n: False,
        fail_action=lambda a: "boom" if isinstance(a, RunHooks) and world.t() >= 20 else None,
    )
    done = world.run()
    assert (done.decision, done.reason) == (Decision.FAILED, Reason.INFRASTRUCTURE)
    assert not any(isinstance(a, Restore) for a in world.actions)


def test_the_overall_timeout_stops_the_run() -> None:
    hooks = (hook("promote", WebhookType.CONFIRM_PROMOTION),)
    world = World(seed(webhooks=hooks), hooks_ok=lambda h, n: False, timeout=75)
    done = world.run()
    assert (done.decision, done.reason) == (Decision.FAILED, Reason.TIMEOUT)
    assert world.t() == 75
    assert world.weights[-1] == (75, 0)


# --------------------------------------------------------------------------- initialisation


def test_no_annotation_and_no_new_revision_initializes() -> None:
    world = World(seed(), annotation=None, latest="podinfo-00001")
    done = world.run()
    assert (done.decision, done.reason) == (Decision.INITIALIZED, Reason.INITIALIZED)
    assert world.annotation == "podinfo-00001"
    assert world.messages() == ["Initialization done! podinfo.test"]


def test_an_unpinned_deploy_that_already_serves_is_reported_plainly() -> None:
    world = World(
        seed(),
        annotation=None,
        latest="podinfo-00003",
        facts=lambda w: replace(ready_canary(w), serving_revision="podinfo-00003"),
    )
    done = world.run()
    assert (done.decision, done.reason) == (Decision.INITIALIZED, Reason.UNANALYSED_REVISION)
    assert done.message.startswith("No analysis was possible: podinfo-00003 already served all traffic")
    assert world.annotation == "podinfo-00003"


def test_no_annotation_with_a_newer_revision_pins_then_analyses() -> None:
    world = World(
        seed(), annotation=None, facts=lambda w: replace(ready_canary(w), serving_revision="podinfo-00001")
    )
    assert world.run().decision is Decision.PROMOTED
    # the metrics-server check asks only; the pin is the first thing done
    assert isinstance(world.actions[0], CheckProviders)
    assert isinstance(world.actions[1], Pin) and world.actions[1].primary == "podinfo-00001"
    assert world.messages()[:2] == [
        "Initialization done! podinfo.test",
        "New revision detected! Scaling up podinfo.test",
    ]


def test_pinned_and_no_new_revision_is_nothing_to_do() -> None:
    done = World(seed(), latest="podinfo-00001").run()
    assert (done.decision, done.reason) == (Decision.SKIPPED, Reason.NO_NEW_REVISION)


def test_deploy_pins_first_then_deploys() -> None:
    world = World(seed(), annotation=None, latest="podinfo-00001", deploy=True)
    assert world.run().decision is Decision.PROMOTED
    kinds = [type(a).__name__ for a in world.actions[:5]]
    assert kinds == ["CheckProviders", "Pin", "Emit", "WriteStatus", "Deploy"]


def test_no_serving_revision_fails_clearly() -> None:
    world = World(seed(), annotation=None, facts=lambda w: replace(ready_canary(w), serving_revision=None))
    done = world.run()
    assert (done.decision, done.reason) == (Decision.FAILED, Reason.NO_SERVING_REVISION)


# --------------------------------------------------------------------------- hooks and the record


def test_hook_order_and_payload_phases_over_a_whole_run() -> None:
    kinds = [
        WebhookType.CONFIRM_ROLLOUT,
        WebhookType.PRE_ROLLOUT,
        WebhookType.ROLLBACK,
        WebhookType.ROLLOUT,
        WebhookType.CONFIRM_TRAFFIC_INCREASE,
        WebhookType.CONFIRM_PROMOTION,
        WebhookType.POST_ROLLOUT,
    ]
    canary = seed(webhooks=tuple(hook(k.value, k) for k in kinds), step_weight=50, max_weight=50)
    world = World(canary, hooks_ok=lambda h, n: h.type is not WebhookType.ROLLBACK)
    assert world.run().decision is Decision.PROMOTED
    assert world.hook_calls == [
        ("confirm-rollout", "Initialized"),
        ("rollback", "Progressing"),
        ("pre-rollout", "Progressing"),
        ("confirm-traffic-increase", "Progressing"),
        ("rollback", "Progressing"),
        ("rollout", "Progressing"),
        ("confirm-traffic-increase", "Progressing"),
        ("confirm-promotion", "Progressing"),
        ("post-rollout", "Succeeded"),
    ]


def test_tick_records_carry_weights_checks_and_events() -> None:
    world = World(
        seed(threshold=2), readings=lambda m, t: Reading.of(42.0 if t == 2 else 100.0, query=f"q-{m.name}")
    )
    world.run()
    by_at = {t.at: t for t in world.ticks}
    assert by_at[0].canary_weight == 10 and by_at[0].checks == ()
    failed = by_at[20]
    assert failed.failed_checks == 1 and failed.canary_weight == 20
    assert [(c.metric, c.verdict.value, c.value, c.query) for c in failed.checks] == [
        ("request-success-rate", "fail", 42.0, "q-request-success-rate")
    ]
    assert failed.events[0].message == "Halt podinfo.test advancement success rate 42.00% < 99%"
    assert [t.index for t in world.ticks] == list(range(1, len(world.ticks) + 1))


def test_stops_after() -> None:
    ok, bad = HookRun(name="a", ok=True), HookRun(name="a", ok=False)
    assert stops_after(WebhookType.ROLLBACK, ok) and not stops_after(WebhookType.ROLLBACK, bad)
    assert stops_after(WebhookType.ROLLOUT, bad) and not stops_after(WebhookType.ROLLOUT, ok)


def test_an_observation_that_answers_nothing_is_a_programming_error() -> None:
    state = initial_state(Config(canary=seed()), now=0)
    with pytest.raises(ValueError, match="does not answer"):
        step(state, Measured(metric="x", reading=Reading.of(1)), 0)


def test_phase_values_are_flaggers() -> None:
    assert [p.value for p in Phase] == [
        "Initialized",
        "Waiting",
        "Progressing",
        "WaitingPromotion",
        "Succeeded",
        "Failed",
    ]

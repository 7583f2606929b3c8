"""How a run ends other than by its analysis: suspend, an unreachable metrics server, a signal, a lost
lease. Each reaches the machine as an observation, and the machine decides."""

from __future__ import annotations

import contextlib
import signal
from dataclasses import replace

from step.analysis.machine import step
from step.analysis.protocol import (
    Action,
    ActionFailed,
    CheckProviders,
    Emit,
    Finish,
    Interrupted,
    LeaseLost,
    Pin,
    Promote,
    Restore,
    Route,
    Wait,
)
from step.analysis.state import Reason, Stage, State, initial_state
from step.contract import Decision
from step.errors import ErrorInfo, ExitCode
from step.ports import Severity
from step.spec.model import WebhookType
from tests.unit.analysis.test_machine import World, always, hook, seed


def traffic_writes(actions: list[Action]) -> list[Action]:
    return [a for a in actions if isinstance(a, Pin | Route | Promote | Restore)]


def test_suspend_does_nothing_and_says_why() -> None:
    world = World(replace(seed(), suspend=True), annotation=None)
    done = world.run()
    assert (done.decision, done.reason) == (Decision.SKIPPED, Reason.SUSPENDED)
    assert "spec.suspend: true" in done.message and "no traffic was touched" in done.message
    assert traffic_writes(world.actions) == [] and world.events == []


def test_an_unreachable_metrics_server_fails_before_any_traffic_moves() -> None:
    world = World(seed(), annotation=None, offline=("connection refused",))
    done = world.run()
    assert (done.decision, done.reason) == (Decision.FAILED, Reason.METRICS_OFFLINE)
    assert "connection refused" in done.message and done.error is None  # exit 4: the decision's own
    assert traffic_writes(world.actions) == []


def test_after_the_runs_preflight_the_machine_does_not_ask_the_providers_again() -> None:
    world = World(seed(), offline=("would fail if asked",))
    world.start_state = lambda config, now: initial_state(replace(config, providers_checked=True), now=now)
    assert world.run().decision is Decision.PROMOTED
    assert not any(isinstance(a, CheckProviders) for a in world.actions)


def test_no_metrics_means_no_metrics_server_check() -> None:
    world = World(seed(metrics=()), offline=("unreachable",))
    assert world.run().decision is Decision.PROMOTED


class Stop(Exception):
    pass


def run_until(world: World, weight: int, *, seconds: float | None = None) -> State:
    """Run until the machine has routed `weight` (or `seconds` passed); the state at that wait."""

    def stop(w: World) -> None:
        if w.weight >= weight or (seconds is not None and w.t() >= seconds):
            raise Stop

    world.on_wait = stop
    with contextlib.suppress(Stop):
        world.run()
    assert world.state is not None and world.state.stage is Stage.START
    return world.state


def test_a_signal_mid_analysis_restores_the_primary_and_ends_with_the_signal() -> None:
    state = run_until(World(seed()), 20)
    obs = Interrupted(signal=int(signal.SIGTERM), signal_name="SIGTERM")
    state, actions = step(state, obs, 2000)
    assert actions[0] == Restore(primary="podinfo-00001", canary="podinfo-00002")
    assert [a.message for a in actions if isinstance(a, Emit)] == [
        "canary-step interrupted by SIGTERM; 100% on podinfo-00001"
    ]
    assert all(a.urgent for a in actions if isinstance(a, Emit))
    done = actions[-1]
    assert isinstance(done, Finish)
    assert (done.decision, done.reason, done.signal) == (Decision.FAILED, Reason.INTERRUPTED_SIGTERM, 15)
    assert done.primary_revision == "podinfo-00001" and state.done


def test_a_signal_before_traffic_moved_restores_nothing() -> None:
    world = World(seed(webhooks=(hook("gate", WebhookType.CONFIRM_ROLLOUT),)), hooks_ok=lambda h, n: False)
    state = run_until(world, 200, seconds=20)
    _, actions = step(state, Interrupted(signal=int(signal.SIGINT), signal_name="SIGINT"), 2000)
    assert traffic_writes(list(actions)) == []
    done = actions[-1]
    assert isinstance(done, Finish) and done.reason is Reason.INTERRUPTED_SIGINT


def test_a_signal_during_the_promotion_write_restores_and_after_it_keeps_the_promotion() -> None:
    world = World(seed(webhooks=(hook("notify", WebhookType.POST_ROLLOUT),)))
    world.run()
    promoting = next(s for s in world.states if s.stage is Stage.POST_ROLLOUT)
    during = Interrupted(signal=15, signal_name="SIGTERM", unperformed=(Promote(canary="podinfo-00002"),))
    _, actions = step(replace(promoting, stage=Stage.START), during, 2000)
    assert isinstance(actions[0], Restore)
    after = Interrupted(signal=15, signal_name="SIGTERM")
    _, actions = step(promoting, after, 2000)
    done = actions[-1]
    assert traffic_writes(list(actions)) == []
    assert isinstance(done, Finish) and done.decision is Decision.PROMOTED
    assert done.primary_revision == "podinfo-00002" and "after the promotion" in done.message


def test_a_signal_during_the_rollback_write_does_the_restore_again() -> None:
    world = World(seed(threshold=1), readings=always(0.0))
    world.run()
    rolling_back = world.states[-1]
    restore = Restore(primary="podinfo-00001", canary="podinfo-00002")
    _, actions = step(
        rolling_back, Interrupted(signal=15, signal_name="SIGTERM", unperformed=(restore,)), 2000
    )
    assert actions[0] == restore


def test_a_failed_restore_after_a_signal_is_exit_5_with_the_signal() -> None:
    state = run_until(World(seed()), 20)
    state, actions = step(state, Interrupted(signal=15, signal_name="SIGTERM"), 2000)
    failed = ActionFailed(action=actions[0], error=ErrorInfo(kind="APIError", message="refused"))
    _, actions = step(state, failed, 2001)
    done = actions[-1]
    assert isinstance(done, Finish) and done.reason is Reason.INTERRUPTED_SIGTERM and done.signal == 15
    assert done.error is not None and done.error.exit_code is ExitCode.ROLLBACK_FAILED and done.show_service


def test_a_lost_lease_writes_nothing_more_and_fails() -> None:
    state = run_until(World(seed()), 30)
    _, actions = step(state, LeaseLost(message="held by run B since 12:00"), 2000)
    assert traffic_writes(list(actions)) == []
    assert not any(isinstance(a, Wait) for a in actions)
    done = actions[-1]
    assert isinstance(done, Finish) and (done.decision, done.reason) == (Decision.FAILED, Reason.LEASE_LOST)
    assert done.error is not None and done.error.exit_code is ExitCode.INFRASTRUCTURE


def test_alerts_are_marked_where_flagger_alerts() -> None:
    world = World(seed(threshold=1), readings=always(0.0))
    world.run()
    alerts = [(a.message, a.alert) for a in world.actions if isinstance(a, Emit) and a.alert is not None]
    assert alerts == [
        ("New revision detected! Scaling up podinfo.test", Severity.INFO),
        ("Rolling back podinfo.test failed checks threshold reached 1", Severity.ERROR),
        ("Canary failed! Scaling down podinfo.test", Severity.ERROR),
    ]
    promoted = World(seed())
    promoted.run()
    assert [a.message for a in promoted.actions if isinstance(a, Emit) and a.alert is not None] == [
        "New revision detected! Scaling up podinfo.test",
        "Promotion completed! Scaling down podinfo.test",
    ]

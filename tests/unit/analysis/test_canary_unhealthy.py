"""A canary revision that fails after it was Ready (Knative keeps it as latestReady; ContainerHealthy and
Ready False on the Revision): a failed canary, rolled back at once with reason `canary-unhealthy`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from step.analysis.machine import step
from step.analysis.protocol import ActionFailed, Finish, Restore, Route, ServiceFacts
from step.analysis.state import Reason
from step.contract import Decision
from step.errors import ErrorInfo, ExitCode
from step.ports import RevisionPhase
from tests.unit.analysis.test_machine import World, ready_canary, seed, weight_times


def crashes_at(seconds: float) -> Callable[[World], ServiceFacts]:
    def facts(world: World) -> ServiceFacts:
        if world.t() >= seconds:
            return replace(ready_canary(world), canary_phase=RevisionPhase.FAILED, canary_reason="ExitCode1")
        return ready_canary(world)

    return facts


def test_a_canary_that_fails_after_it_got_traffic_is_rolled_back_at_once() -> None:
    world = World(seed(threshold=100), facts=crashes_at(20))
    done = world.run()
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.CANARY_UNHEALTHY)
    assert weight_times(world) == [(0, 10), (10, 20), (20, 0)]  # the tick that saw it restores
    assert world.messages()[-2:] == [
        "Rolling back podinfo.test canary revision podinfo-00002 is no longer healthy: ExitCode1",
        "Canary failed! Scaling down podinfo.test",
    ]
    assert done.error is None  # a judged canary: exit 3


def test_a_canary_that_fails_before_any_traffic_still_gets_its_progress_deadline() -> None:
    canary = replace(seed(), progress_deadline_seconds=25)
    world = World(canary, facts=crashes_at(0))
    done = world.run()
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.PROGRESS_DEADLINE)
    assert world.t() == 25


def test_a_route_write_refused_because_the_canary_failed_meanwhile_is_canary_unhealthy() -> None:
    world = World(seed())
    world.run()
    at_20 = next(s for s in world.states if s.canary_weight == 20 and not s.done)
    route = Route(primary="podinfo-00001", canary="podinfo-00002", canary_weight=30)
    error = ErrorInfo(
        kind="RevisionFailed",
        message="Knative Service test/podinfo cannot route to Revision podinfo-00002: it is no longer Ready",
        resource="revisions.serving.knative.dev/podinfo-00002",
    )
    state, actions = step(replace(at_20, canary_weight=30), ActionFailed(action=route, error=error), 2000.0)
    assert Restore(primary="podinfo-00001", canary="podinfo-00002") in actions
    done = actions[-1]
    assert isinstance(done, Finish)
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.CANARY_UNHEALTHY)
    assert state.done


def test_a_route_write_refused_for_another_revision_is_an_infrastructure_error() -> None:
    world = World(seed())
    world.run()
    at_20 = next(s for s in world.states if s.canary_weight == 20 and not s.done)
    route = Route(primary="podinfo-00001", canary="podinfo-00002", canary_weight=30)
    error = ErrorInfo(
        kind="RevisionFailed",
        message="cannot route to Revision podinfo-00001: it is no longer Ready",
        resource="revisions.serving.knative.dev/podinfo-00001",
    )
    _, actions = step(replace(at_20, canary_weight=30), ActionFailed(action=route, error=error), 2000.0)
    done = actions[-1]
    assert isinstance(done, Finish) and done.reason is Reason.INFRASTRUCTURE
    assert done.error is not None and done.error.exit_code is ExitCode.INFRASTRUCTURE

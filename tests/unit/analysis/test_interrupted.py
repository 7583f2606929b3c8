"""One analysis per Service, as pure logic: the lease record, resuming it, and the primary moving forward."""

from __future__ import annotations

import pytest

from step.analysis.evaluate import Reading
from step.analysis.interrupted import (
    FoundAnalysis,
    OnInterrupted,
    continue_from,
    read_record,
    record_of,
)
from step.analysis.machine import step
from step.analysis.protocol import (
    ActionFailed,
    Deploy,
    Finish,
    Observed,
    Pin,
    Restore,
    Route,
    RunHooks,
    ServiceFacts,
)
from step.analysis.state import Config, Phase, Reason, Stage, State
from step.contract import Decision
from step.errors import ErrorInfo, ExitCode
from step.ports import RevisionPhase
from step.spec.model import WebhookType
from tests.unit.analysis.test_machine import World, hook, seed

HOOKS = (hook("load", WebhookType.PRE_ROLLOUT),)


def _saved_at_20_with_a_failed_check() -> State:
    first = World(seed(webhooks=HOOKS), readings=lambda m, t: Reading.of(50.0 if t == 2 else 100.0))
    first.run()
    saved = next(s for s in first.states if s.stage is Stage.START and s.failed_checks == 1)
    assert saved.canary_weight == 20 and saved.phase is Phase.PROGRESSING
    return saved


def _found(saved: State, *, recorded_at: float = 880.0) -> FoundAnalysis:
    text = record_of(saved, run="pod release-x uid 1 run ab12", now=recorded_at)
    return read_record(text, saved.config)


def test_the_record_round_trips_and_says_what_was_found() -> None:
    saved = _saved_at_20_with_a_failed_check()
    found = _found(saved)
    assert found.state == saved
    assert found.run == "pod release-x uid 1 run ab12" and found.recorded_at == 880.0
    assert found.describe(now=1000.0) == (
        f"found an analysis of podinfo-00002 interrupted at 20 %, 1 failed check, tick {saved.tick_index},"
        " run pod release-x uid 1 run ab12, 2m ago"
    )
    assert found.unfinished


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ('{"version": 9}', "version 9"),
        ('{"version": 1}', "no state"),
        ('{"version": 1, "state": {}, "recordedAt": 1}', "version None"),
        ('{"version": 1, "state": {}}', "recordedAt"),
    ],
)
def test_a_record_that_cannot_be_read_is_refused_plainly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_record(text, Config(canary=seed()))


def test_resume_goes_on_at_the_same_weight_with_the_failed_checks() -> None:
    saved = _saved_at_20_with_a_failed_check()
    going_on = continue_from(_found(saved), how=OnInterrupted.RESUME, primary_now="podinfo-00001", now=1000)
    assert going_on.says == "resuming it at 20 % with 1 failed check (--on-interrupted resume)"
    world = World(seed(webhooks=HOOKS), start_state=lambda config, now: going_on.state)  # type: ignore[arg-type,return-value]
    assert world.run().decision is Decision.PROMOTED
    assert [w for _, w in world.weights] == [30, 40, 50, 100]
    assert not any(isinstance(a, RunHooks) and a.kind is WebhookType.PRE_ROLLOUT for a in world.actions)


def test_restart_starts_from_zero_and_replaces_the_split_it_found() -> None:
    saved = _saved_at_20_with_a_failed_check()
    going_on = continue_from(_found(saved), how=OnInterrupted.RESTART, primary_now="podinfo-00001", now=1000)
    assert going_on.state is not None and going_on.state.traffic_moved
    world = World(seed(webhooks=HOOKS), start_state=lambda config, now: going_on.state)  # type: ignore[arg-type,return-value]
    assert world.run().decision is Decision.PROMOTED
    assert [w for _, w in world.weights] == [10, 20, 30, 40, 50, 100]
    assert world.calls["load"] == 1  # pre-rollout hooks again: it is a new analysis


def test_restart_that_fails_before_its_first_step_still_restores_the_primary() -> None:
    saved = _saved_at_20_with_a_failed_check()
    going_on = continue_from(_found(saved), how=OnInterrupted.RESTART, primary_now="podinfo-00001", now=1000)
    world = World(
        seed(webhooks=HOOKS),
        start_state=lambda config, now: going_on.state,  # type: ignore[arg-type,return-value]
        fail_action=lambda action: "boom" if isinstance(action, RunHooks) else None,
    )
    done = world.run()
    assert done.decision is Decision.FAILED
    assert any(isinstance(a, Restore) and a.primary == "podinfo-00001" for a in world.actions)


def test_rollback_restores_the_primary_at_once() -> None:
    saved = _saved_at_20_with_a_failed_check()
    going_on = continue_from(_found(saved), how=OnInterrupted.ROLLBACK, primary_now="podinfo-00001", now=1000)
    world = World(seed(webhooks=HOOKS), start_state=lambda config, now: going_on.state)  # type: ignore[arg-type,return-value]
    done = world.run()
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.MANUAL_ROLLBACK)
    assert [a for a in world.actions if isinstance(a, Restore | Route)] == [
        Restore(primary="podinfo-00001", canary="podinfo-00002")
    ]
    assert not world.measured


@pytest.mark.parametrize(
    ("primary_now", "says"),
    [
        ("podinfo-00002", "podinfo-00002 has become the primary since: starting afresh"),
        ("podinfo-00003", "the primary is podinfo-00003 now, not podinfo-00001: starting afresh"),
    ],
)
def test_an_analysis_whose_primary_changed_is_not_continued(primary_now: str, says: str) -> None:
    saved = _saved_at_20_with_a_failed_check()
    going_on = continue_from(_found(saved), how=OnInterrupted.RESUME, primary_now=primary_now, now=1000)
    assert going_on.state is None and going_on.says == says


def test_a_newer_canary_revision_starts_over_on_it_from_the_primary() -> None:
    saved = _saved_at_20_with_a_failed_check()
    going_on = continue_from(_found(saved), how=OnInterrupted.RESUME, primary_now="podinfo-00001", now=1000)
    world = World(seed(), latest="podinfo-00003", start_state=lambda config, now: going_on.state)  # type: ignore[arg-type,return-value]
    world.measured.clear()
    done = world.run()
    assert done.decision is Decision.PROMOTED and done.canary_revision == "podinfo-00003"
    assert isinstance(world.actions[0], Restore) or any(isinstance(a, Restore) for a in world.actions[:3])
    assert [w for _, w in world.weights][:2] == [0, 10]  # back to the primary, then from the first step


# --------------------------------------------------------------------------- the primary only moves forward


def _facts_with_primary(primary: str) -> ServiceFacts:
    return ServiceFacts(
        primary_revision=primary,
        latest_created_revision="podinfo-00002",
        serving_revision=primary,
        canary_phase=RevisionPhase.READY,
    )


def test_a_canary_promoted_by_someone_else_ends_the_run_with_no_write() -> None:
    """The issue's bug: the second run put 100 % back on podinfo-00001 after the first promoted 00002."""
    world = World(seed())

    def promote_elsewhere(w: World) -> None:
        if w.weight == 30:
            w.annotation = "podinfo-00002"

    world.on_wait = promote_elsewhere
    done = world.run()
    assert (done.decision, done.reason) == (Decision.SKIPPED, Reason.ALREADY_PROMOTED)
    assert done.primary_revision == "podinfo-00002"
    assert done.message.startswith("podinfo-00002 became the primary while this run analysed it")
    last_write = max(i for i, a in enumerate(world.actions) if isinstance(a, Route | Restore | Pin))
    assert world.actions[last_write] == Route(
        primary="podinfo-00001", canary="podinfo-00002", canary_weight=30
    )
    assert not any(isinstance(a, Restore) for a in world.actions)
    assert not any("is missing" in m for m in world.messages())


def test_a_newer_primary_is_adopted_and_a_rollback_goes_to_it() -> None:
    world = World(seed(), latest="podinfo-00004", readings=lambda m, t: Reading.of(100.0 if t < 4 else 50.0))

    def new_primary(w: World) -> None:
        if w.weight == 20:
            w.annotation = "podinfo-00003"

    world.on_wait = new_primary
    done = world.run()
    assert done.decision is Decision.ROLLED_BACK
    restores = [a for a in world.actions if isinstance(a, Restore)]
    assert restores == [Restore(primary="podinfo-00003", canary="podinfo-00004")]  # never back to 00001
    routes = [a for a in world.actions if isinstance(a, Route)]
    assert routes[-1].primary == "podinfo-00003"
    assert (
        "the primary changed from podinfo-00001 to podinfo-00003 while this run analysed podinfo-00004"
        in (world.messages())
    )


def test_a_canary_older_than_a_new_primary_is_not_analysed_and_its_split_goes_to_the_new_primary() -> None:
    world = World(seed())
    world.on_wait = lambda w: setattr(w, "annotation", "podinfo-00003") if w.weight == 20 else None
    done = world.run()
    assert (done.decision, done.reason) == (Decision.SKIPPED, Reason.NO_NEW_REVISION)
    assert [a for a in world.actions if isinstance(a, Restore)] == [
        Restore(primary="podinfo-00003", canary="podinfo-00002")
    ]


def test_came_for_a_revision_that_another_run_promoted_meanwhile() -> None:
    config = Config(canary=seed(), came_for="podinfo-00002")
    world = World(
        seed(), annotation="podinfo-00002", start_state=lambda c, now: State(config=config, started_at=now)
    )
    done = world.run()
    assert (done.decision, done.reason) == (Decision.SKIPPED, Reason.ALREADY_PROMOTED)
    assert not any(isinstance(a, Route | Restore | Pin) for a in world.actions)


def test_deploying_an_image_that_is_already_the_primary_is_already_promoted() -> None:
    world = World(seed(), annotation="podinfo-00002", latest="podinfo-00002", deploy=True)
    world.perform = _no_new_revision_on_deploy(world)  # type: ignore[method-assign]
    done = world.run()
    assert (done.decision, done.reason) == (Decision.SKIPPED, Reason.ALREADY_PROMOTED)
    assert done.message == "the image is already the primary's (podinfo-00002): nothing to deploy or analyse"


def _no_new_revision_on_deploy(world: World):  # type: ignore[no-untyped-def]
    original = World.perform

    def perform(action):  # type: ignore[no-untyped-def]
        if isinstance(action, Deploy):
            return Observed(facts=_facts_with_primary("podinfo-00002"))
        return original(world, action)

    return perform


def test_the_service_deleted_mid_analysis_is_exit_4_not_a_failed_rollback() -> None:
    gone = ErrorInfo(
        kind="NotFound",
        message='services.serving.knative.dev "podinfo" in namespace "test" not found',
        verb="patch",
        resource="services.serving.knative.dev",
    )
    saved = _saved_at_20_with_a_failed_check()
    route = Route(primary="podinfo-00001", canary="podinfo-00002", canary_weight=30)
    _, actions = step(saved, ActionFailed(action=route, error=gone), 1000.0)
    assert not any(isinstance(a, Restore) for a in actions)
    finish = actions[-1]
    assert isinstance(finish, Finish)
    assert (finish.decision, finish.reason) == (Decision.FAILED, Reason.INFRASTRUCTURE)
    assert "was deleted during the analysis" in finish.message
    assert finish.error is not None and finish.error.exit_code is ExitCode.INFRASTRUCTURE


def test_a_run_whose_rollback_failed_leaves_it_to_the_next_run_to_roll_back() -> None:
    world = World(
        seed(),
        readings=lambda m, t: Reading.of(50.0),
        fail_action=lambda action: "API down" if isinstance(action, Restore) else None,
    )
    done = world.run()
    assert done.reason is Reason.ROLLBACK_FAILED and world.state is not None and world.state.done
    found = _found(world.state)
    going_on = continue_from(found, how=OnInterrupted.RESUME, primary_now="podinfo-00001", now=1000)
    assert going_on.says == "its rollback had failed: rolling back to podinfo-00001 again"
    again = World(seed(), start_state=lambda config, now: going_on.state)  # type: ignore[arg-type,return-value]
    retried = again.run()
    assert (retried.decision, retried.reason) == (Decision.ROLLED_BACK, Reason.MANUAL_ROLLBACK)
    assert [a for a in again.actions if isinstance(a, Restore | Route)] == [
        Restore(primary="podinfo-00001", canary="podinfo-00002")
    ]


def test_a_blue_green_analysis_is_resumed_at_its_iteration_and_restarted_from_the_first() -> None:
    canary = seed(step_weight=0, iterations=3, webhooks=HOOKS)
    first = World(canary, readings=lambda m, t: Reading.of(50.0 if t == 2 else 100.0))
    first.run()
    saved = next(s for s in first.states if s.stage is Stage.START and s.failed_checks == 1)
    assert saved.iterations_passed == 2
    found = _found(saved)
    assert "interrupted at 0 %, iteration 2/3, 1 failed check" in found.describe(now=1000.0)
    resumed = continue_from(found, how=OnInterrupted.RESUME, primary_now="podinfo-00001", now=1000)
    assert resumed.says == "resuming it at 0 %, iteration 2/3 with 1 failed check (--on-interrupted resume)"
    restarted = continue_from(found, how=OnInterrupted.RESTART, primary_now="podinfo-00001", now=1000)
    world = World(canary, tagged=True, start_state=lambda config, now: restarted.state)  # type: ignore[arg-type,return-value]
    assert world.run().decision is Decision.PROMOTED
    # a new analysis: the tag written again, the pre-rollout hooks again, every iteration from 1
    assert world.tags == [0.0] and world.calls["load"] == 1
    assert [m for m in world.messages() if m.startswith("Advance")] == [
        f"Advance podinfo.test canary iteration {n}/3" for n in (1, 2, 3)
    ]

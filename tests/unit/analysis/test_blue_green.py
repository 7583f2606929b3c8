"""Blue/green (`iterations`) tick by tick with a fake clock: the canary revision tagged at 0 %, checked
on every iteration, promoted 100 % at once after the last, or rolled back by dropping its tag."""

from __future__ import annotations

import json
from dataclasses import replace

from step.analysis.evaluate import Reading
from step.analysis.machine import step
from step.analysis.protocol import (
    Interrupted,
    Observed,
    Promote,
    Restore,
    Route,
    ServiceFacts,
    Tag,
)
from step.analysis.simulator import simulate
from step.analysis.state import Config, Phase, Reason, Stage, State, initial_state, resume
from step.contract import Decision
from step.ports import RevisionPhase
from step.spec.model import Canary, WebhookType
from tests.unit.analysis.test_machine import (
    CANARY_URL,
    INTERVAL,
    World,
    always,
    hook,
    seed,
    weight_times,
)

ITERATIONS = 3


def blue_green(**analysis: object) -> Canary:
    fields: dict[str, object] = {"step_weight": 0, "max_weight": 100, "iterations": ITERATIONS}
    fields.update(analysis)
    return seed(**fields)


def traffic_writes(world: World) -> list[object]:
    return [a for a in world.actions if isinstance(a, Route | Tag | Promote | Restore)]


def test_the_canary_is_tagged_checked_for_n_iterations_then_promoted_at_once() -> None:
    load = hook("load", WebhookType.PRE_ROLLOUT)
    world = World(blue_green(webhooks=(load,)))
    done = world.run()
    assert (done.decision, done.reason) == (Decision.PROMOTED, Reason.ANALYSIS_PASSED)
    # one write before the promotion: the tag at 0 %; no user traffic moves until the switch
    writes = traffic_writes(world)
    assert writes == [Tag(primary="podinfo-00001", canary="podinfo-00002"), Promote(canary="podinfo-00002")]
    assert world.tags == [0.0]
    assert weight_times(world) == [(ITERATIONS * INTERVAL, 100)]
    assert world.messages() == [
        "New revision detected! Scaling up podinfo.test",
        f"Routing no traffic to podinfo-00002.test: tag canary, reachable at {CANARY_URL}",
        "Starting canary analysis for podinfo.test",
        "Pre-rollout check load passed",
        "Advance podinfo.test canary iteration 1/3",
        "Advance podinfo.test canary iteration 2/3",
        "Advance podinfo.test canary iteration 3/3",
        "Routing all traffic to primary",
        "Promotion completed! Scaling down podinfo.test",
    ]
    # the first tick measures nothing; each of the N iterations after it measures the canary revision
    assert sorted({t for t, _ in world.measured}) == [10, 20, 30]
    # the pre-rollout hook was sent the tagged URL
    assert world.hook_urls == [("pre-rollout", CANARY_URL)]
    assert world.annotation == "podinfo-00002" and not world.tagged
    assert world.state is not None and world.state.iterations == ITERATIONS + 1
    assert world.state.iterations_passed == ITERATIONS and world.state.canary_url == CANARY_URL


def test_every_tick_status_keeps_the_canary_weight_at_zero_until_the_promotion() -> None:
    world = World(blue_green())
    world.run()
    assert [t.canary_weight for t in world.ticks] == [0, 0, 0, 100]


def test_failed_checks_roll_back_by_dropping_the_tag_and_never_route_the_canary() -> None:
    world = World(blue_green(threshold=2), readings=always(50.0))
    done = world.run()
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.FAILED_CHECKS)
    assert traffic_writes(world) == [
        Tag(primary="podinfo-00001", canary="podinfo-00002"),
        Restore(primary="podinfo-00001", canary="podinfo-00002"),
    ]
    # tick 1 (t=0) counts iteration 1; ticks at 10 and 20 fail; the threshold is reached at 30
    assert weight_times(world) == [(30, 0)]
    assert "Advance podinfo.test canary iteration 2/3" not in world.messages()
    assert world.messages()[-2:] == [
        "Rolling back podinfo.test failed checks threshold reached 2",
        "Canary failed! Scaling down podinfo.test",
    ]
    assert world.annotation == "podinfo-00001" and not world.tagged


def test_a_failed_tick_counts_no_iteration() -> None:
    # analysis tick 2 fails: the promotion comes one interval later than with every check passing
    world = World(blue_green(threshold=5), readings=lambda m, tick: Reading.of(50.0 if tick == 2 else 100.0))
    done = world.run()
    assert done.decision is Decision.PROMOTED
    assert weight_times(world) == [((ITERATIONS + 1) * INTERVAL, 100)]
    assert world.state is not None and world.state.failed_checks == 1
    iterations = [m for m in world.messages() if m.startswith("Advance")]
    assert iterations == [f"Advance podinfo.test canary iteration {n}/3" for n in (1, 2, 3)]


def test_a_failing_pre_rollout_hook_repeats_on_the_next_tick_and_tags_once() -> None:
    load = hook("load", WebhookType.PRE_ROLLOUT)
    world = World(blue_green(webhooks=(load,)), hooks_ok=lambda h, n: n > 0)
    done = world.run()
    assert done.decision is Decision.PROMOTED
    assert world.calls == {"load": 2}
    assert world.tags == [0.0]  # the tag is written once; the repeated first tick does not write again
    assert weight_times(world) == [((ITERATIONS + 1) * INTERVAL, 100)]


def test_no_confirm_traffic_increase_and_confirm_promotion_holds_after_the_last_iteration() -> None:
    hooks = (
        hook("step-gate", WebhookType.CONFIRM_TRAFFIC_INCREASE),
        hook("promote-gate", WebhookType.CONFIRM_PROMOTION),
    )
    world = World(blue_green(webhooks=hooks), hooks_ok=lambda h, n: h.name != "promote-gate" or n >= 2)
    done = world.run()
    assert done.decision is Decision.PROMOTED
    assert "step-gate" not in world.calls
    assert world.calls["promote-gate"] == 3
    assert "Halt podinfo.test advancement waiting for promotion approval promote-gate" in world.messages()
    assert weight_times(world) == [((ITERATIONS + 2) * INTERVAL, 100)]


def test_a_failed_tag_write_restores_the_primary_and_ends_failed() -> None:
    world = World(blue_green(), fail_action=lambda a: "conflict" if isinstance(a, Tag) else None)
    done = world.run()
    assert (done.decision, done.reason) == (Decision.FAILED, Reason.INFRASTRUCTURE)
    # the tag may have half landed: the restore removes it
    assert [type(a) for a in traffic_writes(world)] == [Tag, Restore]


def test_a_signal_after_the_tag_drops_it() -> None:
    config = Config(canary=blue_green(), providers_checked=True)
    state = initial_state(config, now=0.0)
    facts = ServiceFacts(
        primary_revision="podinfo-00001",
        latest_created_revision="podinfo-00002",
        serving_revision="podinfo-00001",
        canary_phase=RevisionPhase.READY,
    )
    state, actions = step(state, Observed(facts=facts), 0.0)
    assert isinstance(actions[-1], Tag) and state.stage is Stage.TAGGED
    state, _ = step(state, Observed(facts=replace(facts, canary_url=CANARY_URL)), 0.5)
    state, actions = step(state, Interrupted(signal=15, signal_name="SIGTERM"), 1.0)
    assert [a for a in actions if isinstance(a, Restore)] == [
        Restore(primary="podinfo-00001", canary="podinfo-00002")
    ]
    assert state.outcome is not None and state.outcome.reason is Reason.INTERRUPTED_SIGTERM


def test_resume_goes_on_at_the_saved_iteration_without_tagging_again() -> None:
    first = World(blue_green(threshold=1), readings=lambda m, tick: Reading.of(50.0 if tick == 2 else 100.0))
    first.run()
    saved = next(s for s in first.states if s.stage is Stage.START and s.iterations_passed == 2)
    data = json.loads(json.dumps(saved.to_json()))
    second = World(
        blue_green(threshold=1),
        tagged=True,
        start_state=lambda config, now: resume(State.from_json(data, config), now=now),
    )
    done = second.run()
    assert done.decision is Decision.PROMOTED
    assert second.tags == []  # the tag is still there: not written again
    assert [m for m in second.messages() if m.startswith("Advance")] == [
        "Advance podinfo.test canary iteration 3/3"
    ]


def test_a_newer_revision_restarts_on_it_and_tags_it_instead() -> None:
    def newer_at_20(world: World) -> None:
        if world.t() >= 20 and world.latest == "podinfo-00002":
            world.latest = "podinfo-00003"

    world = World(blue_green(), on_wait=newer_at_20)
    done = world.run()
    assert done.decision is Decision.PROMOTED and world.annotation == "podinfo-00003"
    tags_and_restores = [a for a in traffic_writes(world) if isinstance(a, Tag | Restore)]
    assert tags_and_restores == [
        Tag(primary="podinfo-00001", canary="podinfo-00002"),
        Restore(primary="podinfo-00001", canary="podinfo-00002"),
        Tag(primary="podinfo-00001", canary="podinfo-00003"),
    ]


def test_the_simulation_plan_reads_is_the_machines_blue_green_run() -> None:
    passing = simulate(blue_green())
    assert passing.promoted_at == ITERATIONS * INTERVAL and passing.tagged_at == 0.0
    assert passing.weights == ((ITERATIONS * INTERVAL, 100),)
    failing = simulate(blue_green(threshold=2), failing=lambda state: True)
    assert failing.rolled_back_at == 3 * INTERVAL
    late = simulate(blue_green(threshold=2), failing=lambda state: state.iterations_passed >= ITERATIONS)
    assert late.rolled_back_at == (ITERATIONS + 2) * INTERVAL


def test_the_phase_passes_through_progressing_to_succeeded() -> None:
    world = World(blue_green())
    world.run()
    phases = [s.phase for s in world.states if s.phase is not None]
    assert Phase.PROGRESSING in phases and phases[-1] is Phase.SUCCEEDED


def test_a_stepped_split_left_by_an_earlier_spec_is_replaced_by_the_tag_at_zero() -> None:
    # A canary-strategy analysis killed at 20 %, resumed after the Canary was changed to blue/green:
    # the first blue/green tick writes the tag at 0 % before anything else reaches the canary.
    stepped = World(seed(), readings=lambda m, tick: Reading.of(100.0))
    stepped.run()
    saved = next(s for s in stepped.states if s.stage is Stage.START and s.canary_weight == 20)
    data = json.loads(json.dumps(saved.to_json()))
    world = World(
        blue_green(),
        weight=20,
        tagged=True,
        start_state=lambda config, now: resume(State.from_json(data, config), now=now),
    )
    done = world.run()
    assert done.decision is Decision.PROMOTED
    writes = traffic_writes(world)
    assert writes[0] == Tag(primary="podinfo-00001", canary="podinfo-00002") and world.tags == [0.0]

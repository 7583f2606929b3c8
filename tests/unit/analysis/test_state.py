"""The saved analysis state: a JSON round trip at every stage, and resuming from one."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from step.analysis.evaluate import Reading
from step.analysis.protocol import Restore, RunHooks
from step.analysis.state import STATE_FORMAT_VERSION, Config, Stage, State, resume
from step.contract import Decision
from step.spec.model import WebhookType
from tests.unit.analysis.test_machine import World, always, hook, seed


def round_trip(state: State) -> State:
    return State.from_json(json.loads(json.dumps(state.to_json())), state.config)


def every_hook() -> tuple[object, ...]:
    kinds = [
        WebhookType.CONFIRM_ROLLOUT,
        WebhookType.PRE_ROLLOUT,
        WebhookType.ROLLBACK,
        WebhookType.ROLLOUT,
        WebhookType.CONFIRM_TRAFFIC_INCREASE,
        WebhookType.CONFIRM_PROMOTION,
        WebhookType.POST_ROLLOUT,
    ]
    return tuple(hook(k.value, k) for k in kinds)


@pytest.mark.parametrize(
    "world",
    [
        pytest.param(lambda: World(seed()), id="seed-promotion"),
        pytest.param(
            lambda: World(
                seed(webhooks=every_hook()), hooks_ok=lambda h, n: h.type is not WebhookType.ROLLBACK
            ),
            id="every-hook",
        ),
        pytest.param(lambda: World(seed(threshold=2), readings=always(50.0)), id="rollback"),
        pytest.param(
            lambda: World(
                seed(), fail_action=lambda a: "gone" if isinstance(a, Restore) else None, readings=always(0)
            ),
            id="rollback-failed",
        ),
        pytest.param(
            lambda: World(seed(), annotation=None, deploy=True, latest="podinfo-00001"), id="deploy"
        ),
    ],
)
def test_every_state_of_a_run_survives_a_json_round_trip(world: object) -> None:
    w = world()  # type: ignore[operator]
    w.run()
    stages = {s.stage for s in w.states}
    assert Stage.DONE in stages and Stage.START in stages
    for state in w.states:
        assert round_trip(state) == state
        assert state.to_json()["version"] == STATE_FORMAT_VERSION
        assert "config" not in state.to_json()


def test_the_seed_run_passes_through_every_stage_it_can() -> None:
    world = World(seed(webhooks=every_hook()), hooks_ok=lambda h, n: h.type is not WebhookType.ROLLBACK)
    world.run()
    stages = {s.stage for s in world.states}
    assert stages >= set(Stage) - {Stage.DEPLOYED, Stage.TAGGED}
    blue_green = World(
        seed(step_weight=0, iterations=2, webhooks=every_hook()),
        hooks_ok=lambda h, n: h.type is not WebhookType.ROLLBACK,
    )
    blue_green.run()
    assert Stage.TAGGED in {s.stage for s in blue_green.states}


def test_another_version_or_garbage_is_refused_clearly() -> None:
    config = Config(canary=seed())
    data = State(config=config, started_at=0).to_json()
    with pytest.raises(ValueError, match="version 99"):
        State.from_json({**data, "version": 99}, config)
    with pytest.raises(ValueError, match="malformed"):
        State.from_json({**data, "failedChecks": "many"}, config)
    del data["stage"]
    with pytest.raises(ValueError, match="malformed"):
        State.from_json(data, config)


def test_resume_goes_on_at_the_saved_weight_with_the_failed_checks_and_no_pre_rollout_hooks() -> None:
    hooks = (hook("load", WebhookType.PRE_ROLLOUT),)
    first = World(seed(webhooks=hooks), readings=lambda m, t: Reading.of(50.0 if t == 2 else 100.0))
    first.run()
    # the state saved at the end of the tick that failed a check at weight 20 (the run then went on)
    saved = next(s for s in first.states if s.stage is Stage.START and s.failed_checks == 1)
    assert saved.canary_weight == 20
    data = json.loads(json.dumps(saved.to_json()))

    second = World(
        seed(webhooks=hooks),
        start_state=lambda config, now: resume(State.from_json(data, config), now=now),
    )
    done = second.run()
    assert done.decision is Decision.PROMOTED
    assert not any(isinstance(a, RunHooks) and a.kind is WebhookType.PRE_ROLLOUT for a in second.actions)
    assert [w for _, w in second.weights] == [30, 40, 50, 100]
    assert second.ticks[0].failed_checks == 1 and second.ticks[0].canary_weight == 30
    assert second.state is not None and second.state.resumed_from == saved.tick_index


def test_a_finished_state_cannot_be_resumed() -> None:
    world = World(seed())
    world.run()
    assert world.state is not None and world.state.done
    with pytest.raises(ValueError, match="nothing to resume"):
        resume(world.state, now=0)
    fresh = resume(replace(world.state, stage=Stage.START, phase=None, primary=None), now=5)
    assert fresh.phase is None and fresh.started_at == 5

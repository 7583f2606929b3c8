"""The simulator `plan` predicts from: the machine's own run against a scripted world."""

from __future__ import annotations

from step.analysis.simulator import simulate
from tests.unit.analysis.test_machine import INTERVAL, World, always, seed, weight_times


def test_a_passing_simulation_is_the_machines_run() -> None:
    world = World(seed())
    world.run()
    passing = simulate(seed())
    assert [(round(t, 3), w) for t, w in passing.weights] == [(t, w) for t, w in weight_times(world)]
    assert passing.promoted_at == 5 * INTERVAL and passing.rolled_back_at is None


def test_failing_simulations_give_the_rollback_times() -> None:
    world = World(seed(threshold=2), readings=always(0.0))
    world.run()
    failing = simulate(seed(threshold=2), failing=lambda state: True)
    assert failing.rolled_back_at == weight_times(world)[-1][0] == 3 * INTERVAL
    late = simulate(seed(threshold=2), failing=lambda state: state.canary_weight >= 50)
    assert late.rolled_back_at == (5 + 2) * INTERVAL


def test_a_schedule_that_never_promotes_stops_at_the_tick_bound() -> None:
    held = simulate(seed(step_weight=0), max_ticks=20)
    assert held.finish is None and held.weights == ()

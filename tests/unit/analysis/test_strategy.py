"""The strategy seam: the weight-stepping canary answers what the machine, plan and simulator ask."""

from __future__ import annotations

from step.analysis.strategy import BlueGreenStrategy, CanaryStrategy, strategy_for
from tests.unit.analysis.test_machine import seed


def test_the_canary_strategy_steps_then_promotes() -> None:
    strategy = strategy_for(seed())
    assert isinstance(strategy, CanaryStrategy) and strategy.name == "canary"
    assert strategy.schedule() == (0, 10, 20, 30, 40, 50)
    assert [strategy.next_weight(w) for w in (0, 10, 40)] == [10, 20, 50]
    assert not strategy.ready_to_promote(canary_weight=40, iterations_passed=0)
    assert strategy.ready_to_promote(canary_weight=50, iterations_passed=0)
    assert strategy.first_tick(canary_weight=0, iterations_passed=0)
    assert not strategy.first_tick(canary_weight=10, iterations_passed=0)
    assert not strategy.counts_iterations


def test_a_schedule_with_no_step_never_advances() -> None:
    strategy = strategy_for(seed(step_weight=0))
    assert strategy.next_weight(0) is None and strategy.schedule() == ()


def test_step_weights_overshooting_max_weight_are_capped_at_100() -> None:
    strategy = strategy_for(seed(step_weight=30, max_weight=50))
    assert strategy.schedule() == (0, 30, 60) and strategy.next_weight(90) == 100


def test_iterations_are_blue_green_at_zero_percent_then_promotion() -> None:
    strategy = strategy_for(seed(step_weight=0, iterations=3))
    assert isinstance(strategy, BlueGreenStrategy) and strategy.name == "blue-green"
    assert strategy.counts_iterations
    assert strategy.schedule() == (0, 0, 0, 0)
    assert strategy.next_weight(0) == 0
    assert strategy.first_tick(canary_weight=0, iterations_passed=0)
    assert not strategy.first_tick(canary_weight=0, iterations_passed=1)
    assert [strategy.ready_to_promote(canary_weight=0, iterations_passed=n) for n in (0, 2, 3)] == [
        False,
        False,
        True,
    ]

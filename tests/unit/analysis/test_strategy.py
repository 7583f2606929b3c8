"""The strategy seam: the weight-stepping canary answers what the machine, plan and simulator ask."""

from __future__ import annotations

from step.analysis.strategy import CanaryStrategy, strategy_for
from tests.unit.analysis.test_machine import seed


def test_the_canary_strategy_steps_then_promotes() -> None:
    strategy = strategy_for(seed())
    assert isinstance(strategy, CanaryStrategy) and strategy.name == "canary"
    assert strategy.schedule() == (0, 10, 20, 30, 40, 50)
    assert [strategy.next_weight(w) for w in (0, 10, 40)] == [10, 20, 50]
    assert not strategy.ready_to_promote(40) and strategy.ready_to_promote(50)


def test_a_schedule_with_no_step_never_advances() -> None:
    strategy = strategy_for(seed(step_weight=0))
    assert strategy.next_weight(0) is None and strategy.schedule() == ()


def test_step_weights_overshooting_max_weight_are_capped_at_100() -> None:
    strategy = strategy_for(seed(step_weight=30, max_weight=50))
    assert strategy.schedule() == (0, 30, 60) and strategy.next_weight(90) == 100

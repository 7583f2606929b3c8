"""The weight schedule: Flagger's `maxWeight` and `nextStepWeight`, as pure functions.

Owns: which canary weight follows which (flagger-semantics.md 1.4), and the whole schedule that
`plan` prints and the state machine walks.
Must not: do I/O, read the clock, or know about Knative.
"""

from __future__ import annotations

from step.spec.model import Analysis

TOTAL_WEIGHT = 100


def max_weight(analysis: Analysis) -> int:
    """The weight at which the next tick promotes (stepWeights' last entry wins over maxWeight)."""
    if analysis.step_weights:
        return min(TOTAL_WEIGHT, analysis.step_weights[-1])
    return analysis.max_weight  # `<= 0 means 100` is resolved once, in spec.build


def next_step_weight(analysis: Analysis, canary_weight: int) -> int:
    """How much the canary weight grows on the next advancing tick (0: never advances)."""
    if analysis.step_weight > 0 or not analysis.step_weights:
        return analysis.step_weight
    max_step = TOTAL_WEIGHT - canary_weight
    if max_step == 0:
        return 1
    steps = analysis.step_weights
    if canary_weight == 0:
        return min(max_step, steps[0])
    for i, weight in enumerate(steps[:-1]):
        if canary_weight == weight:
            return min(max_step, steps[i + 1] - canary_weight)
    return max_step


def advance(analysis: Analysis, canary_weight: int) -> int:
    """The canary weight after one advancing tick, capped at 100 (not at maxWeight, as in Flagger)."""
    return min(TOTAL_WEIGHT, canary_weight + next_step_weight(analysis, canary_weight))


def weight_schedule(analysis: Analysis) -> tuple[int, ...]:
    """The canary weights from 0 up to the weight that promotes on the following tick.

    Empty when the schedule can never reach promotion (no step). Bounded at 101 steps, which any
    schedule that can promote stays within.
    """
    weights = [0]
    target = max_weight(analysis)
    while weights[-1] < target:
        if next_step_weight(analysis, weights[-1]) <= 0 or len(weights) > TOTAL_WEIGHT:
            return ()
        weights.append(advance(analysis, weights[-1]))
    return tuple(weights)

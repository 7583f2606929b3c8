"""The deployment strategy behind the analysis: what an advancing tick does, and when to promote.

Owns: the `Strategy` seam (Flagger's runCanary / runBlueGreen split, `strategy_for`) and its two
strategies for a Knative Service:

- `CanaryStrategy`, progressive traffic shifting over `schedule`'s maxWeight and nextStepWeight;
- `BlueGreenStrategy`, Flagger's `iterations` carried out through Knative's tags: the canary revision
  is routed at 0 % with the `canary` tag before the first tick's hooks (webhooks and load tests reach
  it at its tagged URL), each passing tick counts one iteration, and the tick after the last one
  promotes 100 % at once (flagger-semantics.md 1.3 step 25; Flagger's Knative router never tags, so
  its Blue/Green measures nothing).

The machine, `plan` and the simulator ask the strategy, never the schedule. `spec.rules` refuses
what neither carries out (A/B `match`, `mirror`, `stepWeightPromotion`).
Must not: do I/O, read the clock, or know about Knative beyond "a tag gives the canary a URL".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from step.analysis.schedule import advance, max_weight, next_step_weight, weight_schedule
from step.spec.model import Analysis, Canary


class Strategy(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def counts_iterations(self) -> bool:
        """Blue/green: the canary stays at 0 % on its tag (written before the first tick's hooks),
        advancing ticks count iterations, and no confirm-traffic-increase gate runs."""
        ...

    def first_tick(self, *, canary_weight: int, iterations_passed: int) -> bool:
        """Whether the next analysis tick is Flagger's first: pre-rollout hooks, no metrics."""
        ...

    def next_weight(self, canary_weight: int) -> int | None:
        """The canary weight the next advancing tick routes; None if it can never advance."""
        ...

    def ready_to_promote(self, *, canary_weight: int, iterations_passed: int) -> bool:
        """Whether the next advancing tick promotes instead of stepping."""
        ...

    def schedule(self) -> tuple[int, ...]:
        """The canary weight of each tick up to the one the promotion follows; () if it never promotes."""
        ...


@dataclass(frozen=True)
class CanaryStrategy:
    """Progressive traffic shifting: stepWeight or stepWeights up to maxWeight, then promotion."""

    analysis: Analysis
    name: str = "canary"
    counts_iterations: bool = False

    def first_tick(self, *, canary_weight: int, iterations_passed: int) -> bool:
        return canary_weight == 0

    def next_weight(self, canary_weight: int) -> int | None:
        if next_step_weight(self.analysis, canary_weight) <= 0:
            return None  # Flagger sits in Progressing forever; --timeout ends it
        return advance(self.analysis, canary_weight)

    def ready_to_promote(self, *, canary_weight: int, iterations_passed: int) -> bool:
        return canary_weight >= max_weight(self.analysis)

    def schedule(self) -> tuple[int, ...]:
        return weight_schedule(self.analysis)


@dataclass(frozen=True)
class BlueGreenStrategy:
    """`iterations` ticks of checks on the canary revision at 0 % (reached through its tag), then 100 %.

    As Flagger's runBlueGreen: the first tick (pre-rollout hooks) is iteration 1, each later tick
    whose checks pass counts one more (a failed check does not), and the tick after iteration N runs
    the checks once more and, if they pass, confirm-promotion and the promotion. No
    confirm-traffic-increase: no traffic is increased.
    """

    iterations: int
    name: str = "blue-green"
    counts_iterations: bool = True

    def first_tick(self, *, canary_weight: int, iterations_passed: int) -> bool:
        return iterations_passed == 0

    def next_weight(self, canary_weight: int) -> int | None:
        return 0 if self.iterations > 0 else None

    def ready_to_promote(self, *, canary_weight: int, iterations_passed: int) -> bool:
        return iterations_passed >= self.iterations

    def schedule(self) -> tuple[int, ...]:
        return (0,) * (self.iterations + 1) if self.iterations > 0 else ()


def strategy_for(canary: Canary) -> Strategy:
    """The strategy a Canary asks for: `iterations` > 0 is Blue/Green (as in Flagger), else the canary."""
    if canary.analysis.iterations > 0:
        return BlueGreenStrategy(canary.analysis.iterations)
    return CanaryStrategy(canary.analysis)

"""The deployment strategy behind the analysis: what to route on the next advancing tick, when to promote.

Owns: the `Strategy` seam (Flagger's runCanary / runBlueGreen split) and the weight-stepping canary,
the one strategy a Knative run does today (`CanaryStrategy`, over `schedule`'s maxWeight and
nextStepWeight). The machine, `plan` and the simulator ask the strategy, never the schedule.
Blue/green (iterations at 0 % with the canary reached through its tag) goes here as a second class.
Must not: do I/O, read the clock, or know about Knative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from step.analysis.schedule import advance, max_weight, next_step_weight, weight_schedule
from step.spec.model import Analysis, Canary


class Strategy(Protocol):
    @property
    def name(self) -> str: ...

    def next_weight(self, canary_weight: int) -> int | None:
        """The canary weight the next advancing tick routes; None if it can never advance."""
        ...

    def ready_to_promote(self, canary_weight: int) -> bool:
        """Whether the next advancing tick promotes instead of stepping."""
        ...

    def schedule(self) -> tuple[int, ...]:
        """The weights from 0 to the one the promoting tick follows; () if it never promotes."""
        ...


@dataclass(frozen=True)
class CanaryStrategy:
    """Progressive traffic shifting: stepWeight or stepWeights up to maxWeight, then promotion."""

    analysis: Analysis
    name: str = "canary"

    def next_weight(self, canary_weight: int) -> int | None:
        if next_step_weight(self.analysis, canary_weight) <= 0:
            return None  # Flagger sits in Progressing forever; --timeout ends it
        return advance(self.analysis, canary_weight)

    def ready_to_promote(self, canary_weight: int) -> bool:
        return canary_weight >= max_weight(self.analysis)

    def schedule(self) -> tuple[int, ...]:
        return weight_schedule(self.analysis)


def strategy_for(canary: Canary) -> Strategy:
    """The strategy a Canary asks for. Only the canary one exists; `spec.rules` refuses the others."""
    return CanaryStrategy(canary.analysis)

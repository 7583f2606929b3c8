"""The machine run against a scripted world, without a cluster: what `plan` predicts from.

Owns: `simulate`, which plays the driver for the pure state machine on a Service whose canary
revision is Ready at once, whose gates are open and whose rollback hooks never signal; the pre-rollout
hooks, rollout hooks and metrics pass or fail as the script says (by the machine's state: its canary
weight, its blue/green iterations). A `Tag` is answered with the canary's tagged URL. Because the
prediction is the machine's own run, `plan`'s schedule and timing cannot drift from `run`'s.
Must not: do I/O, read the clock (time is simulated), or decide anything itself (the machine does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from step.analysis.evaluate import Reading
from step.analysis.machine import step
from step.analysis.protocol import (
    Action,
    CheckProviders,
    Finish,
    HookRun,
    HooksRan,
    Measure,
    Measured,
    Observation,
    Observed,
    Promote,
    ProvidersChecked,
    Restore,
    Route,
    RunHooks,
    ServiceFacts,
    Tag,
    Wait,
    stops_after,
)
from step.analysis.state import Config, State, initial_state
from step.ports import RevisionPhase
from step.spec.model import Canary, Metric, WebhookType

PRIMARY, CANARY = "primary-revision", "canary-revision"
CANARY_URL = "http://canary-<service>.<namespace>.<domain>"  # Knative's tag URL, as a plan shows it
Failing = Callable[[State], bool]  # the machine's state -> whether the checks fail in it

_CHECKS = (WebhookType.PRE_ROLLOUT, WebhookType.ROLLOUT)


@dataclass(frozen=True, kw_only=True)
class Simulation:
    """What the machine did, with times in seconds from the first analysis tick."""

    weights: tuple[tuple[float, int], ...]  # each write: (when, canary weight); promotion 100, rollback 0
    tagged_at: float | None = None  # blue/green: when the canary revision got its tag at 0 %
    finish: Finish | None  # None: still running when the simulation stopped
    at: float  # when it finished (or stopped)

    @property
    def promoted_at(self) -> float | None:
        return self.at if self.finish is not None and self.finish.decision.value == "promoted" else None

    @property
    def rolled_back_at(self) -> float | None:
        return self.at if self.finish is not None and self.finish.decision.value == "rolled-back" else None


def _reading(metric: Metric, *, fail: bool) -> Reading:
    if metric.threshold_min is not None:
        return Reading.of(metric.threshold_min - 1 if fail else metric.threshold_min)
    if metric.threshold_max is not None:
        return Reading.of(metric.threshold_max + 1 if fail else metric.threshold_max)
    return Reading.empty() if fail else Reading.of(0.0)


class _World:
    def __init__(self, canary: Canary, failing: Failing) -> None:
        self.canary = canary
        self.failing = failing
        self.now = 0.0
        self.weight = 0
        self.weights: list[tuple[float, int]] = []
        self.tagged_at: float | None = None
        self.tagged = False
        self.state: State | None = None  # the machine's newest state, for the script

    def facts(self) -> Observed:
        return Observed(
            facts=ServiceFacts(
                primary_revision=PRIMARY,
                latest_created_revision=CANARY,
                serving_revision=PRIMARY,
                canary_phase=RevisionPhase.READY,
                canary_url=CANARY_URL if self.tagged else None,
            )
        )

    def fails(self) -> bool:
        assert self.state is not None
        return self.failing(self.state)

    def answer(self, action: Action) -> Observation | None:
        match action:
            case Route(canary_weight=weight):
                self.tagged = True
                self.write(weight)
            case Tag():
                self.tagged = True
                if self.tagged_at is None:
                    self.tagged_at = self.now
                return self.facts()
            case Promote():
                self.tagged = False
                self.write(100)
            case Restore():
                self.tagged = False
                self.write(0)
            case CheckProviders():
                return ProvidersChecked()
            case RunHooks(kind=kind):
                return self.hooks(kind)
            case Measure(metric=metric):
                return Measured(metric=metric.name, reading=_reading(metric, fail=self.fails()))
            case Wait(until=until):
                self.now = max(self.now, until)
                return self.facts()
        return None

    def write(self, weight: int) -> None:
        self.weight = weight
        self.weights.append((self.now, weight))

    def hooks(self, kind: WebhookType) -> HooksRan:
        results = []
        for hook in self.canary.analysis.hooks(kind):
            ok = not self.fails() if kind in _CHECKS else kind is not WebhookType.ROLLBACK
            result = HookRun(name=hook.name, ok=ok)
            results.append(result)
            if stops_after(kind, result):
                break
        return HooksRan(kind=kind, results=tuple(results))


def simulate(canary: Canary, *, failing: Failing = lambda state: False, max_ticks: int = 1000) -> Simulation:
    """Run the machine on `canary` until it finishes or `max_ticks` ticks have passed."""
    world = _World(canary, failing)
    state = initial_state(Config(canary=canary), now=0.0)
    obs: Observation = world.facts()
    while state.tick_index <= max_ticks:
        state, actions = step(state, obs, world.now)
        world.state = state
        answer: Observation | None = None
        for action in actions:
            answer = world.answer(action)
            if isinstance(action, Finish):
                return Simulation(
                    weights=tuple(world.weights), finish=action, at=world.now, tagged_at=world.tagged_at
                )
        assert answer is not None, f"the machine asked for nothing to wait on: {actions}"
        obs = answer
    return Simulation(weights=tuple(world.weights), finish=None, at=world.now, tagged_at=world.tagged_at)

"""The Canary status the machine writes tells the truth on every path a run can end by: promotion,
rollback, an error that stops it, a signal, the Service deleted (issue 14, item 4). Flagger's phases,
messages true for Knative (nothing is "scaled to zero"), canaryWeight 0 once traffic is off the canary."""

from __future__ import annotations

import signal

from step.analysis.machine import PHASE_MESSAGES, step
from step.analysis.protocol import Action, ActionFailed, Interrupted, Route, Wait, WriteStatus
from step.analysis.state import Phase
from step.contract import Decision
from step.errors import ErrorInfo
from step.ports import CanaryStatus
from tests.unit.analysis.test_endings import run_until
from tests.unit.analysis.test_machine import World, always, seed


def statuses(actions: list[Action] | tuple[Action, ...]) -> list[CanaryStatus]:
    return [a.status for a in actions if isinstance(a, WriteStatus)]


def test_no_phase_message_speaks_of_scaling_to_zero() -> None:
    assert all("scaled to zero" not in m for m in PHASE_MESSAGES.values())
    assert PHASE_MESSAGES[Phase.FAILED] == (
        "Canary analysis failed, all traffic routed back to the primary revision."
    )


def test_after_a_promotion_the_status_is_succeeded_with_canary_weight_0() -> None:
    world = World(seed())
    assert world.run().decision is Decision.PROMOTED
    last = statuses(world.actions)[-1]
    assert (last.phase, last.canary_weight, last.failed_checks) == ("Succeeded", 0, 0)
    assert last.message == PHASE_MESSAGES[Phase.SUCCEEDED]
    # the tick record keeps the 100 % the promotion routed
    assert world.ticks[-1].canary_weight == 100


def test_after_a_rollback_the_status_is_failed_with_canary_weight_0() -> None:
    world = World(seed(threshold=2), readings=always(50.0))
    assert world.run().decision is Decision.ROLLED_BACK
    last = statuses(world.actions)[-1]
    assert (last.phase, last.canary_weight, last.failed_checks) == ("Failed", 0, 2)
    assert last.message == "Canary analysis failed, all traffic routed back to the primary revision."


def test_after_a_signal_mid_analysis_the_status_is_failed_and_says_so() -> None:
    state = run_until(World(seed()), 20)
    assert state.phase is Phase.PROGRESSING and state.canary_weight == 20
    _, actions = step(state, Interrupted(signal=int(signal.SIGINT), signal_name="SIGINT"), 2000)
    (written,) = statuses(actions)
    assert (written.phase, written.canary_weight) == ("Failed", 0)
    assert written.message == (
        "Canary analysis stopped (interrupted by SIGINT), all traffic routed back to the primary revision."
    )


def test_after_an_error_mid_analysis_the_status_is_failed_and_names_the_error() -> None:
    world = World(
        seed(),
        fail_action=lambda a: (
            "the API server did not answer" if isinstance(a, Route) and a.canary_weight == 30 else None
        ),
    )
    done = world.run()
    assert done.decision is Decision.FAILED
    last = statuses(world.actions)[-1]
    assert (last.phase, last.canary_weight) == ("Failed", 0)
    assert last.message.startswith("Canary analysis stopped (Stopping podinfo.test analysis: the API server")
    assert last.message.endswith("all traffic routed back to the primary revision.")


def test_when_the_service_is_deleted_the_status_says_so() -> None:
    state = run_until(World(seed()), 20)
    error = ErrorInfo(
        kind="NotFound", message="gone", status=404, verb="get", resource="services.serving.knative.dev"
    )
    _, actions = step(state, ActionFailed(action=Wait(until=0), error=error), 2000)
    (written,) = statuses(actions)
    assert (written.phase, written.canary_weight) == ("Failed", 0)
    assert written.message == "Canary analysis stopped: the Knative Service podinfo.test was deleted."

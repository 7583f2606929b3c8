"""`canary-step run`'s side of the Service's lease: take it before anything moves, say what was found.

Owns: building the `Lease` for the run (its duration from the analysis interval, this process's
identity), noting the revision the run came for before it waits, waiting for another run with a
line on stderr, reading an analysis that another run left unfinished and choosing, through
`step.analysis.interrupted`, the state this run starts from, and what the report says about it.
Must not: decide anything about the canary (the machine and `analysis.interrupted` do), exit, or
import `kubernetes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from step.analysis.interrupted import OnInterrupted, continue_from, read_record
from step.analysis.state import Config, State
from step.clock import MonotonicClock
from step.kube import Kube
from step.kube.lease import Lease, LeaseState, holder_identity
from step.ports import Router
from step.spec.model import Canary

MIN_LEASE_SECONDS = 15


def default_lease_seconds(canary: Canary) -> int:
    """Three intervals (renewed once a tick, so two ticks may be slow), and never under 15 s."""
    return max(MIN_LEASE_SECONDS, math.ceil(3 * canary.analysis.interval_seconds))


@dataclass
class Held:
    """The lease this run holds, and what it found when it took it."""

    lease: Lease
    came_for: str | None  # the canary revision seen before waiting (None when there was none)
    waited: float
    left_record: str | None  # an analysis record left on the lease by another run
    report: dict[str, Any] = field(default_factory=dict)  # the JSON report's `lease` section


def take_lease(
    kube: Kube,
    *,
    canary: Canary,
    router: Router,
    clock: MonotonicClock,
    wait: float,
    duration: int | None,
    note: Callable[[str], None],
) -> Held:
    """Note the revision this run came for, then wait for the Service's lease (raises `LeaseHeld`)."""
    before = router.observe()
    latest, primary = before.latest_created_revision, before.primary_revision
    came_for = latest if primary is not None and latest is not None and latest != primary else None
    lease = Lease(
        kube,
        namespace=canary.namespace,
        service=canary.target_name,
        identity=holder_identity(),
        duration_seconds=duration or default_lease_seconds(canary),
        clock=clock,
    )

    def waiting(state: LeaseState) -> None:
        note(f"waiting for the Service's lease: {state.describe(clock.wall())}")

    acquired = lease.acquire(wait=wait, on_wait=waiting)
    report: dict[str, Any] = {
        "name": lease.name,
        "holder": lease.identity,
        "durationSeconds": lease.duration_seconds,
        "waitedSeconds": round(acquired.waited, 3),
        "tookOverFrom": acquired.previous.holder if acquired.took_over and acquired.previous else None,
    }
    return Held(
        lease=lease,
        came_for=came_for,
        waited=acquired.waited,
        left_record=acquired.left_record,
        report=report,
    )


def start_state(
    held: Held, *, config: Config, router: Router, how: OnInterrupted, now: float, note: Callable[[str], None]
) -> State | None:
    """The state to start from when another run left an analysis on the lease (None: afresh).

    Says on stderr what was found and what this run does with it, before anything else about the run.
    """
    if held.left_record is None:
        return None
    try:
        found = read_record(held.left_record, config)
    except ValueError as err:
        note(f"found an analysis record on the Service's lease that cannot be read ({err}): starting afresh")
        return None
    primary_now = router.observe().primary_revision
    going_on = continue_from(found, how=how, primary_now=primary_now, now=now)
    note(f"{found.describe(now=now)}; {going_on.says}")
    held.report["interrupted"] = {
        "run": found.run,
        "canaryRevision": found.state.canary,
        "canaryWeight": found.state.canary_weight,
        "failedChecks": found.state.failed_checks,
        "tick": found.state.tick_index,
        "recordedAt": found.recorded_at,
        "gapSeconds": round(now - found.recorded_at, 3),
        "continued": how.value if going_on.state is not None else "afresh",
    }
    return going_on.state

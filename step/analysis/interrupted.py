"""An analysis another run left unfinished: the record on the Service's lease, and how to go on from it.

Owns: the record's JSON text (the saved `State` plus the run that wrote it and when), reading it
back, the line that tells a person what was found ("found an analysis of podinfo-00002 interrupted at
20 %, 1 failed check, tick 3, run X, 2m ago"), and the choice `--on-interrupted` makes: resume it
(same weight, failed checks carried over, pre-rollout hooks not repeated), restart it from 0 % on the
same canary, or roll it back. An analysis is only continued while the Service's primary is still the
one it was analysed against; a newer canary revision makes the resumed machine start over on it.
Must not: do I/O, read the clock (time arrives as `now`, wall-clock seconds), or know where the
record is kept (the lease is `step.kube.lease`'s).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from typing import Any

from step.analysis.state import Config, Phase, Reason, Stage, State, resume

RECORD_VERSION = 1

_ANALYSING = (Phase.PROGRESSING, Phase.WAITING_PROMOTION)


class OnInterrupted(enum.StrEnum):
    """What to do with an analysis of the same canary that another run left unfinished."""

    RESUME = "resume"
    RESTART = "restart"
    ROLLBACK = "rollback"


def record_of(state: State, *, run: str, now: float) -> str:
    """The text kept on the lease after each tick: the state, who wrote it, and when."""
    return json.dumps(
        {"version": RECORD_VERSION, "run": run, "recordedAt": now, "state": state.to_json()},
        separators=(",", ":"),
    )


@dataclass(frozen=True, kw_only=True)
class FoundAnalysis:
    """An analysis read back from a record another run left."""

    state: State
    run: str
    recorded_at: float

    def describe(self, *, now: float) -> str:
        """`found an analysis of podinfo-00002 interrupted at 20 %, 1 failed check, tick 3, run X, 2m ago`."""
        s = self.state
        checks = _failed_checks(s.failed_checks)
        revision = s.canary or "no canary revision yet"
        return (
            f"found an analysis of {revision} interrupted at {_where(s)}, {checks},"
            f" tick {s.tick_index}, run {self.run}, {_ago(now - self.recorded_at)}"
        )

    @property
    def unfinished(self) -> bool:
        return not self.state.done and self.state.phase in _ANALYSING and self.state.primary is not None


def read_record(text: str, config: Config) -> FoundAnalysis:
    """Read `record_of`'s text back. Raises ValueError when it is not a record this version can read."""
    try:
        data: Any = json.loads(text)
    except ValueError as err:
        raise ValueError(f"the analysis record is not JSON: {err}") from None
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
        version = data.get("version") if isinstance(data, dict) else None
        raise ValueError(f"the analysis record has version {version!r}, not {RECORD_VERSION}")
    state = data.get("state")
    if not isinstance(state, dict):
        raise ValueError("the analysis record holds no state")
    try:
        recorded_at = float(data["recordedAt"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("the analysis record has no recordedAt time") from None
    return FoundAnalysis(
        state=State.from_json(state, config), run=str(data.get("run") or "?"), recorded_at=recorded_at
    )


@dataclass(frozen=True, kw_only=True)
class Continuation:
    """How this run starts after finding a record: from `state` (None: afresh), and why, for people."""

    state: State | None
    says: str


def continue_from(
    found: FoundAnalysis, *, how: OnInterrupted, primary_now: str | None, now: float
) -> Continuation:
    """The state this run starts from, given what the Service's primary is now."""
    saved = found.state
    if saved.outcome is not None and saved.outcome.reason is Reason.ROLLBACK_FAILED and saved.primary:
        # Left on purpose by a run whose rollback failed (exit 5): the split may still be there.
        retry = replace(saved, stage=Stage.START, outcome=None, pending_finish=None, phase=Phase.PROGRESSING)
        retry = replace(retry, traffic_moved=True, config=replace(saved.config, rollback_resumed=True))
        return Continuation(
            state=resume(retry, now=now),
            says=f"its rollback had failed: rolling back to {saved.primary} again",
        )
    if not found.unfinished:
        return Continuation(state=None, says="it had not started moving traffic: starting afresh")
    if primary_now != saved.primary:
        if primary_now is not None and primary_now == saved.canary:
            says = f"{saved.canary} has become the primary since: starting afresh"
        else:
            says = f"the primary is {primary_now or 'unset'} now, not {saved.primary}: starting afresh"
        return Continuation(state=None, says=says)
    resumed = resume(saved, now=now)
    if how is OnInterrupted.RESUME:
        return Continuation(
            state=resumed,
            says=f"resuming it at {_where(saved)} with {_failed_checks(saved.failed_checks)}"
            " (--on-interrupted resume)",
        )
    if how is OnInterrupted.RESTART:
        restarted = replace(
            resumed,
            phase=Phase.PROGRESSING,
            canary_weight=0,
            failed_checks=0,
            iterations=0,
            consecutive_errors=0,
            progressing_since=now,
            not_ready_reported=False,
            traffic_moved=True,  # the split it left is still there until the first step replaces it
            iterations_passed=0,  # blue/green: from iteration 1, tagging the canary again
            canary_url=None,
        )
        return Continuation(state=restarted, says="restarting it from 0 % (--on-interrupted restart)")
    rollback = replace(resumed, config=replace(resumed.config, rollback_resumed=True))
    return Continuation(
        state=rollback, says=f"rolling it back to {saved.primary} (--on-interrupted rollback)"
    )


def _where(state: State) -> str:
    """`20 %`, or for blue/green (0 %, on the tag) `0 %, iteration 2/5`."""
    iterations = state.config.canary.analysis.iterations
    if iterations > 0 and state.canary_weight == 0:
        return f"0 %, iteration {state.iterations_passed}/{iterations}"
    return f"{state.canary_weight} %"


def _failed_checks(count: int) -> str:
    return f"{count} failed check" + ("" if count == 1 else "s")


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    minutes = round(seconds / 60)
    return f"{minutes}m ago" if minutes < 90 else f"{minutes // 60}h{minutes % 60:02d}m ago"

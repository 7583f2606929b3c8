"""The protocol between the state machine and the driver: observations in, actions out.

Owns: the observation types (what the driver saw or what an action answered, including a signal, a
lost lease and a failed action, each as data) and the action types (what the machine asks the driver
to do), and `stops_after`, Flagger's rule for where a run of hooks of one type stops.

Each `machine.step` call returns actions for the driver to perform in order. The last action may be a
request (`RunHooks`, `Measure`, `CheckProviders`, `Deploy`, `Tag`, `Wait`); its answer is the next
observation. Any action that fails is answered with `ActionFailed` instead, and the remaining actions
are dropped. A signal is answered with `Interrupted`, naming the actions not yet done. `Finish` ends
the run.
Must not: decide anything, do I/O, or read the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from step.analysis.evaluate import Reading
from step.analysis.records import TickRecord
from step.analysis.state import Phase, Reason
from step.contract import Decision
from step.errors import ErrorInfo
from step.ports import CanaryStatus, Event, EventType, RevisionPhase, Severity
from step.spec.model import Metric, WebhookType

# --------------------------------------------------------------------------- observations


@dataclass(frozen=True, kw_only=True)
class ServiceFacts:
    """What the driver saw on the Knative Service at the start of a tick."""

    primary_revision: str | None  # the flagger.app/primary-revision annotation
    latest_created_revision: str | None
    serving_revision: str | None  # the revision holding the most of status.traffic
    canary_phase: RevisionPhase | None = None  # readiness of latest_created_revision
    canary_reason: str = ""
    canary_url: str | None = None  # status.traffic's URL of latest_created_revision's `canary` tag

    def to_json(self) -> dict[str, Any]:
        return {
            "primaryRevision": self.primary_revision,
            "latestCreatedRevision": self.latest_created_revision,
            "servingRevision": self.serving_revision,
            "canaryPhase": self.canary_phase.value if self.canary_phase else None,
            "canaryReason": self.canary_reason,
            "canaryUrl": self.canary_url,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceFacts:
        phase = data["canaryPhase"]
        return cls(
            primary_revision=data["primaryRevision"],
            latest_created_revision=data["latestCreatedRevision"],
            serving_revision=data["servingRevision"],
            canary_phase=RevisionPhase(phase) if phase else None,
            canary_reason=data["canaryReason"],
            canary_url=data.get("canaryUrl"),
        )


@dataclass(frozen=True, kw_only=True)
class Observed:
    """A fresh look at the Service: the start of a tick (or the answer to `Deploy`/`Wait`)."""

    facts: ServiceFacts


@dataclass(frozen=True, kw_only=True)
class ProvidersChecked:
    """The answer to `CheckProviders`: the metrics servers that did not answer, with why."""

    offline: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class HookRun:
    name: str
    ok: bool
    status: int | None = None
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class HooksRan:
    """The answer to `RunHooks`: the hooks that ran, in order (the driver stops as `stops_after` says)."""

    kind: WebhookType
    results: tuple[HookRun, ...]


@dataclass(frozen=True, kw_only=True)
class Measured:
    """The answer to `Measure`."""

    metric: str
    reading: Reading


@dataclass(frozen=True, kw_only=True)
class ActionFailed:
    """An action raised an error after its retries; the error as data."""

    action: Action
    error: ErrorInfo

    @property
    def message(self) -> str:
        return self.error.message


@dataclass(frozen=True, kw_only=True)
class Interrupted:
    """The run must end now: a signal (SIGTERM/SIGINT), or `signal` None for an unexpected crash.

    `unperformed` are the actions of the last batch that were not done; the first of them was in
    flight when the signal came and may have half happened.
    """

    signal: int | None
    signal_name: str = ""  # e.g. SIGTERM
    unperformed: tuple[Action, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LeaseLost:
    """Another run holds the Service's lease now: this run must write nothing more."""

    message: str


Observation = Observed | ProvidersChecked | HooksRan | Measured | ActionFailed | Interrupted | LeaseLost


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, kw_only=True)
class Emit:
    """An event for the Service (Kubernetes Event, event webhooks, notifiers).

    `alert` is set at the moments Flagger alerts (notifiers see only those). `urgent` events go to the
    Kubernetes Event alone: the run is ending on a signal and nothing may delay the exit.
    """

    type: EventType
    message: str
    phase: Phase = Phase.INITIALIZED  # the Canary phase when it was emitted (event webhook payload)
    canary_revision: str | None = None  # for the event webhook payload's checksum
    alert: Severity | None = None
    urgent: bool = False

    def event(self) -> Event:
        """The event as every channel of the composed sink receives it."""
        return Event(
            type=self.type,
            message=self.message,
            phase=self.phase.value,
            canary_revision=self.canary_revision,
            alert=self.alert,
            urgent=self.urgent,
        )


@dataclass(frozen=True, kw_only=True)
class WriteStatus:
    status: CanaryStatus


@dataclass(frozen=True, kw_only=True)
class Pin:
    """Set the annotation to `primary` and route 100 % to it."""

    primary: str


@dataclass(frozen=True, kw_only=True)
class Deploy:
    """Set the image (request; answered with `Observed` once the new revision exists)."""


@dataclass(frozen=True, kw_only=True)
class CheckProviders:
    """Request: ask the metrics server whether it answers (Flagger's IsOnline); `ProvidersChecked`."""


@dataclass(frozen=True, kw_only=True)
class Route:
    primary: str
    canary: str
    canary_weight: int


@dataclass(frozen=True, kw_only=True)
class Tag:
    """Request: route `canary` at 0 % with the `canary` tag, beside 100 % on `primary` (blue/green).

    Answered with `Observed` once Knative shows it, so that the machine learns the tagged URL.
    """

    primary: str
    canary: str


@dataclass(frozen=True, kw_only=True)
class Promote:
    canary: str


@dataclass(frozen=True, kw_only=True)
class Restore:
    """Route 100 % back to the primary (a rollback); `canary` keeps its 0 % entry."""

    primary: str
    canary: str | None


@dataclass(frozen=True, kw_only=True)
class RunHooks:
    """Request: call the hooks of `kind` in list order with payload phase `phase`."""

    kind: WebhookType
    phase: Phase
    canary_revision: str | None = None  # for the payload's checksum
    canary_url: str | None = None  # the canary revision's tagged URL: `canaryUrl`, `{{ canary_url }}`


@dataclass(frozen=True, kw_only=True)
class Measure:
    """Request: measure `metric` with `{{ route }}` = `canary_revision` (`{{ primary }}` and, for a
    compared metric, its second query: `primary_revision`)."""

    metric: Metric
    canary_revision: str
    primary_revision: str = ""


@dataclass(frozen=True, kw_only=True)
class EndTick:
    record: TickRecord


@dataclass(frozen=True, kw_only=True)
class Wait:
    """Request: wait until `until` (wall-clock seconds), or until the Service changes if asked."""

    until: float
    wake_on_change: bool = False


@dataclass(frozen=True, kw_only=True)
class Finish:
    decision: Decision
    reason: Reason
    message: str
    error: ErrorInfo | None = None  # set when the exit code is not the decision's own
    primary_revision: str | None = None  # the revision that serves all traffic now
    canary_revision: str | None = None  # the revision that was analysed
    signal: int | None = None  # the signal that ended the run
    show_service: bool = False  # traffic may be split: the outcome shows the Service as it is

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "reason": self.reason.value,
            "message": self.message,
            "error": self.error.to_json() if self.error else None,
            "primaryRevision": self.primary_revision,
            "canaryRevision": self.canary_revision,
            "signal": self.signal,
            "showService": self.show_service,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finish:
        return cls(
            decision=Decision(data["decision"]),
            reason=Reason(data["reason"]),
            message=data["message"],
            error=ErrorInfo.from_json(data["error"]) if data["error"] else None,
            primary_revision=data["primaryRevision"],
            canary_revision=data["canaryRevision"],
            signal=data["signal"],
            show_service=bool(data["showService"]),
        )


Action = (
    Emit
    | WriteStatus
    | Pin
    | Deploy
    | CheckProviders
    | Route
    | Tag
    | Promote
    | Restore
    | RunHooks
    | Measure
    | EndTick
    | Wait
    | Finish
)

# Actions that change where traffic goes.
TRAFFIC_WRITES = (Pin, Route, Tag, Promote, Restore)


def stops_after(kind: WebhookType, result: HookRun) -> bool:
    """Flagger runs hooks of one type in order and stops at the first failure, except rollback
    hooks, which stop at the first success (a success there *is* the rollback signal)."""
    return result.ok if kind is WebhookType.ROLLBACK else not result.ok

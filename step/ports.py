"""The ports the driver performs its work through, and the plain data they exchange.

Owns: the Protocols that `router/`, `metrics/`, `webhooks/`, the event/status writers and the
clock implement, and the value types they return. Tests and the real program plug in
implementations; the driver never knows which.
Must not: import kube, click, requests, tenacity, or do any I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from step.errors import StepError
from step.spec.model import Webhook

EventType = Literal["Normal", "Warning"]


# --------------------------------------------------------------------------- time


class Clock(Protocol):
    """The one place time is read and waited on. Tests inject a fake that fast-forwards."""

    def now(self) -> float:
        """Monotonic seconds: what waits and timeouts count on (wall-clock time comes separately)."""
        ...

    def sleep(self, seconds: float) -> None: ...


# --------------------------------------------------------------------------- traffic


@dataclass(frozen=True, kw_only=True)
class TrafficTarget:
    """One `spec.traffic` / `status.traffic` entry of a Knative Service."""

    percent: int
    revision_name: str | None = None
    latest_revision: bool = False
    tag: str | None = None
    url: str | None = None  # status only


def describe_traffic(
    targets: Sequence[TrafficTarget], *, by: Literal["revision", "entry"] = "revision"
) -> str:
    """Where traffic goes, in words: the one way every message and result says it.

    `by="revision"`, what a person reads (the headline, the results): the percent each revision
    serves, largest first, `90% on podinfo-00001, 10% on podinfo-00002` (`no traffic reported` when
    none). `by="entry"`, for diagnosing a write that did not take: each entry in order with its tag,
    `latest` for `latestRevision: true`, `[podinfo-00001=90% tag=primary, latest=10%]`.
    """
    if by == "entry":
        parts = []
        for t in targets:
            who = "latest" if t.latest_revision else (t.revision_name or "?")
            parts.append(f"{who}={t.percent}%" + (f" tag={t.tag}" if t.tag else ""))
        return "[" + ", ".join(parts) + "]"
    served: dict[str, int] = {}
    for t in targets:
        if t.revision_name and t.percent:
            served[t.revision_name] = served.get(t.revision_name, 0) + t.percent
    ranked = sorted(served.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{pct}% on {rev}" for rev, pct in ranked) if ranked else "no traffic reported"


class RevisionPhase(enum.StrEnum):
    PENDING = "pending"  # Ready Unknown, or not yet observed
    READY = "ready"
    FAILED = "failed"  # Ready False: it will not become ready by waiting
    MISSING = "missing"


@dataclass(frozen=True, kw_only=True)
class RevisionState:
    name: str
    phase: RevisionPhase
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class ServiceView:
    """What the Knative Service says about itself right now."""

    name: str
    namespace: str
    generation: int
    observed_generation: int
    primary_revision: str | None  # the flagger.app/primary-revision annotation
    latest_created_revision: str | None
    latest_ready_revision: str | None
    ready: bool | None  # the Ready condition: True, False, or None for Unknown/absent
    ready_reason: str = ""
    ready_message: str = ""
    spec_traffic: tuple[TrafficTarget, ...] = ()
    status_traffic: tuple[TrafficTarget, ...] = ()
    images: Mapping[str, str] = field(default_factory=dict)  # container name -> image
    url: str | None = None  # status.url: the Service's own host, `http://<name>.<namespace>.<domain>`

    def weight_of(self, revision: str) -> int:
        """The percent of observed traffic (status.traffic) that reaches `revision`."""
        return sum(t.percent for t in self.status_traffic if t.revision_name == revision)


class Router(Protocol):
    """Moves traffic on one Knative Service and verifies that Knative reports it back.

    Every write patches only `spec.traffic` or the annotation, retries 409 after re-reading, and
    returns only once `status` shows what was asked (or raises TrafficNotConverged).
    """

    def observe(self) -> ServiceView: ...

    def observe_reconciled(self) -> ServiceView:
        """The Service once Knative has acted on its latest spec (so `latest_created_revision` names the
        revision of the newest template); raises TrafficNotConverged if it has not in time."""
        ...

    def revision(self, name: str) -> RevisionState: ...

    def pin_primary(self, primary: str) -> ServiceView:
        """Set the annotation to `primary` and route 100 % to it."""
        ...

    def route(self, *, primary: str, canary: str, canary_weight: int) -> ServiceView:
        """Split traffic between two pinned revisions (never `latestRevision: true`)."""
        ...

    def promote(self, canary: str) -> ServiceView:
        """Route 100 % to `canary` and move the annotation to it."""
        ...

    def set_image(self, *, image: str, container: str | None) -> ServiceView:
        """Patch the template's image (deploy-and-verify); returns once a new revision exists."""
        ...

    def wait_for_change(self, *, timeout: float) -> ServiceView:
        """Block until the Service changes or `timeout` passes (a watch, not a poll)."""
        ...


# --------------------------------------------------------------------------- metrics


class MetricsProvider(Protocol):
    """Measures; never judges. Raises NoValuesFound or MetricError."""

    def query(self, promql: str) -> float: ...

    def is_online(self) -> bool: ...


# --------------------------------------------------------------------------- webhooks


@dataclass(frozen=True, kw_only=True)
class WebhookPayload:
    name: str
    namespace: str
    phase: str
    checksum: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    canary_url: str | None = None  # ours: the canary revision's tagged URL (`canaryUrl`)


@dataclass(frozen=True, kw_only=True)
class WebhookResult:
    ok: bool  # HTTP 200..202
    status: int | None  # None when no HTTP answer came
    message: str  # the error text Flagger would show, or ""
    attempts: int = 1
    seconds: float = 0.0


class WebhookCaller(Protocol):
    def call(self, hook: Webhook, payload: WebhookPayload) -> WebhookResult: ...


# --------------------------------------------------------------------------- visibility


class EventSink(Protocol):
    """Kubernetes Events on the Knative Service (reason `Synced`, as Flagger records them)."""

    def emit(self, *, type: EventType, message: str) -> None: ...


class Severity(enum.StrEnum):
    """Flagger's alert severities (an AlertProvider with `info` gets all, `warn` warn and error)."""

    INFO = "info"
    WARN = "warn"
    ERROR = "error"


def alert_matches(subscribed: str, severity: Severity) -> bool:
    """Flagger's alert filter (events.go): an Alert of severity `info` gets every alert, `warn` gets
    warn and error, `error` only error; an empty severity gets nothing."""
    order = [Severity.INFO, Severity.WARN, Severity.ERROR]
    return subscribed in order and order.index(severity) >= order.index(Severity(subscribed))


@dataclass(frozen=True, kw_only=True)
class Event:
    """One event of the run, as every channel receives it."""

    type: EventType
    message: str
    phase: str  # the Canary phase when it happened
    canary_revision: str | None = None
    alert: Severity | None = None  # set at the moments Flagger alerts
    urgent: bool = False  # the run is ending on a signal: the Kubernetes Event only


class Notifier(Protocol):
    """A channel beside the Kubernetes Events: event webhooks, chat. Raises StepError when it failed."""

    def notify(self, event: Event) -> None: ...


class EventPublisher(Protocol):
    """Where the driver sends every event; never raises."""

    def publish(self, event: Event) -> None: ...


@dataclass(frozen=True, kw_only=True)
class FanOut:
    """The one composed event sink: the Kubernetes Event first, then each notifier (not for urgent
    events). A channel that fails is reported through `on_error` and does not stop the others."""

    events: EventSink
    notifiers: Sequence[Notifier] = ()
    on_error: Callable[[str], None] = lambda text: None

    def publish(self, event: Event) -> None:
        try:
            self.events.emit(type=event.type, message=event.message)
        except StepError as err:
            self.on_error(f"could not record the event {event.message!r}: {err}")
        if event.urgent:
            return
        for notifier in self.notifiers:
            try:
                notifier.notify(event)
            except StepError as err:
                self.on_error(str(err))


@dataclass(frozen=True, kw_only=True)
class CanaryStatus:
    phase: str
    canary_weight: int
    failed_checks: int
    iterations: int
    message: str = ""


class StatusSink(Protocol):
    """The Canary resource's status, where the CRD and the resource exist; a no-op elsewhere."""

    def write(self, status: CanaryStatus) -> None: ...

"""Which events of the run are chat alerts, and what each says: Flagger's alert texts and fields.

Owns: `alert_of(event, canary, ticks)`, which turns an event the state machine marked as an alert
(`Event.alert`) into Flagger's alert (controller/events.go and scheduler.go): its text, which differs
from the Kubernetes Event's (`New revision detected, progressing canary analysis.`, `Canary is
waiting for approval.`, `Failed checks threshold reached 2`, `Progress deadline exceeded ...`,
`Canary analysis completed successfully, promotion finished.`), the canary's fields on the
new-revision alert (`alertMetadata`: target, threshold, progress deadline, traffic routing), and —
ours, not Flagger's — the timeline's headline on the promotion and rollback alerts (the weights
reached, the failed checks, the check that failed). An alert Flagger has no text for keeps the
event's text.
Must not: send anything, choose who receives an alert (`channels` does), or decide when an alert is
due (the state machine does, through `Event.alert`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from step.analysis import messages as msg
from step.analysis.evaluate import Verdict
from step.analysis.records import TickRecord
from step.notifiers.payloads import Field
from step.ports import Event, Severity
from step.spec.model import Canary


@dataclass(frozen=True, kw_only=True)
class Alert:
    message: str
    severity: Severity
    fields: tuple[Field, ...] = ()
    ending: bool = False  # the promotion or rollback alert: it carries the headline


def canary_fields(canary: Canary) -> tuple[Field, ...]:
    """Flagger's alertMetadata: what the new-revision alert shows about the Canary."""
    analysis = canary.analysis
    fields = [
        Field("Target", f"{canary.target_kind}/{canary.target_name}.{canary.namespace}"),
        Field("Failed checks threshold", str(analysis.threshold)),
        Field("Progress deadline", f"{canary.progress_deadline_seconds}s"),
    ]
    if analysis.step_weight > 0:
        fields.append(
            Field("Traffic routing", f"Weight step: {analysis.step_weight} max: {analysis.max_weight}")
        )
    elif analysis.step_weights:
        steps = ",".join(str(w) for w in analysis.step_weights)
        fields.append(Field("Traffic routing", f"Weight steps: {steps} max: {analysis.max_weight}"))
    elif analysis.iterations > 0:
        fields.append(Field("Traffic routing", "Blue/Green"))
    return tuple(fields)


def headline_fields(ticks: Sequence[TickRecord], *, threshold: int) -> tuple[Field, ...]:
    """Ours: the run in three lines for the promotion and rollback alerts."""
    if not ticks:
        return ()
    weights: list[int] = []
    for tick in ticks:
        if tick.canary_weight and (not weights or weights[-1] != tick.canary_weight):
            weights.append(tick.canary_weight)
    fields = [
        Field("Weights reached", " -> ".join(f"{w}%" for w in weights) if weights else "none (0%)"),
        Field("Failed checks", f"{max(t.failed_checks for t in ticks)}/{threshold}"),
    ]
    failed = [c for t in ticks for c in t.checks if c.verdict is Verdict.FAIL]
    if failed:
        last = failed[-1]
        shown = last.message or (
            f"{last.metric} {last.value:.2f}" if last.value is not None else f"{last.metric} no data"
        )
        fields.append(Field("Failed check", shown))
    return tuple(fields)


def alert_of(event: Event, canary: Canary, *, ticks: Sequence[TickRecord] = ()) -> Alert | None:
    """The alert for `event`, or None when the state machine did not mark it as one."""
    if event.alert is None:
        return None
    who = (canary.name, canary.namespace)
    target = (canary.target_name, canary.namespace)
    text = event.message
    headline = headline_fields(ticks, threshold=canary.analysis.threshold)
    if text in (msg.new_revision_scaling_up(*target), msg.new_revision_restarting(*target)):
        message = "New revision detected, progressing canary analysis."
        return Alert(message=message, severity=event.alert, fields=canary_fields(canary))
    approval = msg.waiting_for_approval(*who, "")
    if text.startswith(approval):
        hook = text[len(approval) :]
        if any(h.name == hook and h.mute_alert for h in canary.analysis.webhooks):
            return None  # Flagger: a confirm-rollout hook with muteAlert halts without alerting
        return Alert(message="Canary is waiting for approval.", severity=event.alert)
    threshold_prefix = msg.threshold_reached(*who, 0)[:-1]
    if text.startswith(threshold_prefix):
        count = text[len(threshold_prefix) :]
        return Alert(message=f"Failed checks threshold reached {count}", severity=event.alert)
    deadline_prefix = msg.progress_deadline(*who, "")
    if text.startswith(deadline_prefix):
        return Alert(
            message=f"Progress deadline exceeded {text[len(deadline_prefix) :]}", severity=event.alert
        )
    if text == msg.promotion_completed(*target):
        message = "Canary analysis completed successfully, promotion finished."
        return Alert(message=message, severity=event.alert, fields=headline, ending=True)
    if text == msg.promotion_skipped(*target):
        message = "Canary analysis was skipped, promotion finished."
        return Alert(message=message, severity=event.alert, ending=True)
    if text == msg.canary_failed(*who):
        return Alert(message=text, severity=event.alert, fields=headline, ending=True)
    return Alert(message=text, severity=event.alert)

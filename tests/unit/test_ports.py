"""The ports' own logic: the composed event sink and Flagger's alert filter."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from step.errors import InfrastructureError
from step.ports import Event, FanOut, Severity, alert_matches


@pytest.mark.parametrize(
    ("subscribed", "gets"),
    [
        ("info", {Severity.INFO, Severity.WARN, Severity.ERROR}),
        ("warn", {Severity.WARN, Severity.ERROR}),
        ("error", {Severity.ERROR}),
        ("", set()),
    ],
)
def test_alert_severity_filter_is_flaggers(subscribed: str, gets: set[Severity]) -> None:
    assert {s for s in Severity if alert_matches(subscribed, s)} == gets


@dataclass
class Channel:
    fail: bool = False
    seen: list[str] = field(default_factory=list)

    def emit(self, *, type: str, message: str) -> None:
        self.notify(Event(type="Normal", message=message, phase=""))

    def notify(self, event: Event) -> None:
        if self.fail:
            raise InfrastructureError(f"down: {event.message}")
        self.seen.append(event.message)


def test_a_failing_channel_is_reported_and_the_others_still_get_the_event() -> None:
    errors: list[str] = []
    kube, broken, chat = Channel(fail=True), Channel(fail=True), Channel()
    sink = FanOut(events=kube, notifiers=(broken, chat), on_error=errors.append)
    sink.publish(Event(type="Warning", message="Halt", phase="Progressing", alert=Severity.WARN))
    assert chat.seen == ["Halt"]
    assert errors == ["could not record the event 'Halt': down: Halt", "down: Halt"]
    sink.publish(Event(type="Warning", message="bye", phase="Failed", urgent=True))
    assert chat.seen == ["Halt"]  # urgent: the Kubernetes Event only

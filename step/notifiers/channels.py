"""Who receives an alert: the Canary's `analysis.alerts` routed by severity, or the global notifier.

Owns: `Channel` (one resolved AlertProvider: type, address, proxy, channel, username, and the
severity it subscribed to), `channels_for` (Flagger's events.go: with `analysis.alerts`, each alert's
AlertProvider, its address from the spec or from its Secret's `address` key, username `flagger` and
channel `general` by default; without them, the global notifier of `--alert-url` if there is one),
and `ChatNotifier`, the `ports.Notifier` that sends each alert to every channel whose severity
matches (`ports.alert_matches`), all channels at once, within one budget per event.
A failed alert changes nothing in the run: it is kept for the report (`deliveries`), recorded as a
warning Event on the Service, and raised as one `InfrastructureError` for the composed event sink to
print. No text of this module contains an address.
Must not: read Secrets itself (the caller passes a reader), build payloads, or send HTTP itself.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from step.analysis.records import TickRecord
from step.errors import InfrastructureError, SpecError, StepError
from step.notifiers.alerts import alert_of
from step.notifiers.payloads import NOTIFIER_TYPES, payload, post_address
from step.notifiers.preview import DEFAULT_CHANNEL, DEFAULT_USERNAME
from step.notifiers.sender import ChatSender, Delivery
from step.ports import Event, EventSink, alert_matches
from step.spec.model import AlertProvider, Canary

EVENT_BUDGET_SECONDS = 5.0  # the most one event's alerts may delay the run (all channels at once)

SecretReader = Callable[[str, str], Mapping[str, str]]  # (namespace, name) -> data; raises NotFound


@dataclass(frozen=True, kw_only=True)
class Channel:
    label: str  # how messages name it: `AlertProvider test/on-call` or `--alert-url`; never the address
    kind: str  # slack, msteams, discord, rocket, gchat
    address: str = field(repr=False)
    proxy: str | None = field(default=None, repr=False)
    channel: str = DEFAULT_CHANNEL
    username: str = DEFAULT_USERNAME
    severity: str | None = None  # the alert's severity; None: the global notifier, which gets every alert
    address_from: str = "spec"  # where the address came from: "spec", "secret <name>", "--alert-url"

    def describe(self) -> dict[str, Any]:
        """What `plan` and the report may show: everything but the address and the proxy."""
        return {
            "provider": self.label,
            "type": self.kind,
            "severity": self.severity or "all (global notifier)",
            "channel": self.channel,
            "username": self.username,
            "address": f"<from {self.address_from}>",
            "proxy": "<set>" if self.proxy else None,
        }


@dataclass(frozen=True, kw_only=True)
class GlobalNotifier:
    """The CLI's `--alert-url`, `--alert-type`, `--alert-channel` (Flagger's `-slack-url` and the rest)."""

    url: str = field(repr=False)
    kind: str = "slack"
    channel: str = DEFAULT_CHANNEL
    username: str = DEFAULT_USERNAME


def _check_kind(kind: str, where: str) -> None:
    if kind not in NOTIFIER_TYPES:
        raise SpecError(
            f"{where}: type {kind!r} is not one canary-step can send to"
            f" (supported: {', '.join(NOTIFIER_TYPES)})"
        )


def channels_for(
    canary: Canary,
    providers: Mapping[tuple[str, str], AlertProvider],
    *,
    secrets: SecretReader,
    global_notifier: GlobalNotifier | None = None,
) -> tuple[Channel, ...]:
    """The channels the Canary's alerts go to. Raises SpecError (nothing has moved yet) for a missing
    AlertProvider, Secret or `address` key, or a type we cannot send to."""
    alerts = canary.analysis.alerts
    if not alerts:
        if global_notifier is None:
            return ()
        _check_kind(global_notifier.kind, "--alert-type")
        return (
            Channel(
                label="--alert-url",
                address_from="--alert-url",
                kind=global_notifier.kind,
                address=global_notifier.url,
                channel=global_notifier.channel or DEFAULT_CHANNEL,
                username=global_notifier.username or DEFAULT_USERNAME,
            ),
        )
    channels = []
    for alert in alerts:
        ns = alert.provider_ref.namespace or canary.namespace
        name = alert.provider_ref.name
        where = f"alert {alert.name}: AlertProvider {ns}/{name}"
        provider = providers.get((ns, name))
        if provider is None:
            raise SpecError(
                f"{where} is not in the spec files given (canary-step reads AlertProviders from them)"
            )
        _check_kind(provider.type, where)
        address = provider.address
        label = f"AlertProvider {ns}/{name}"
        address_from = "spec"
        if provider.secret_ref is not None:
            secret = provider.secret_ref.name
            try:
                data = secrets(ns, secret)
            except InfrastructureError as err:
                raise SpecError(f"{where}: secret {secret!r} could not be read: {err}") from None
            if not data.get("address"):
                raise SpecError(f'{where}: secret "{secret}" has no "address" key')
            address = data["address"]
            address_from = f"secret {secret}"
        if not address:
            raise SpecError(f"{where}: neither spec.address nor spec.secretRef is set")
        channels.append(
            Channel(
                label=label,
                kind=provider.type,
                address=address,
                proxy=provider.proxy,
                channel=provider.channel or DEFAULT_CHANNEL,
                username=provider.username or DEFAULT_USERNAME,
                severity=alert.severity,
                address_from=address_from,
            )
        )
    return tuple(channels)


@dataclass(frozen=True, kw_only=True)
class DeliveryRecord:
    """One alert to one channel, for the report."""

    provider: str
    type: str
    severity: str
    message: str
    ok: bool
    attempts: int
    seconds: float
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "type": self.type,
            "severity": self.severity,
            "message": self.message,
            "ok": self.ok,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


class ChatNotifier:
    """Sends the alerts among the run's events to the chat channels (`ports.Notifier`)."""

    def __init__(
        self,
        *,
        canary: Canary,
        channels: Sequence[Channel],
        sender: ChatSender,
        ticks: Callable[[], Sequence[TickRecord]] = lambda: (),
        warnings: EventSink | None = None,
        budget: float = EVENT_BUDGET_SECONDS,
    ) -> None:
        self.canary = canary
        self.channels = tuple(channels)
        self.sender = sender
        self.ticks = ticks
        self.warnings = warnings
        self.budget = budget
        self.deliveries: list[DeliveryRecord] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, len(self.channels)), thread_name_prefix="notify"
        )

    def report(self) -> dict[str, Any]:
        """The report's `notifications` section: the channels (no address) and every alert sent."""
        return {
            "channels": [c.describe() for c in self.channels],
            "sent": [d.to_json() for d in self.deliveries],
            "failed": sum(1 for d in self.deliveries if not d.ok),
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.sender.close()

    def notify(self, event: Event) -> None:
        alert = alert_of(event, self.canary, ticks=self.ticks())
        if alert is None:
            return
        chosen = [c for c in self.channels if c.severity is None or alert_matches(c.severity, alert.severity)]
        if not chosen:
            return

        def send(channel: Channel) -> Delivery:
            body = payload(
                channel.kind,
                workload=self.canary.name,
                namespace=self.canary.namespace,
                message=alert.message,
                fields=alert.fields,
                severity=alert.severity.value,
                channel=channel.channel,
                username=channel.username,
            )
            return self.sender.post(
                post_address(channel.kind, channel.address), body, proxy=channel.proxy, budget=self.budget
            )

        futures = [self._pool.submit(send, c) for c in chosen]
        failed = []
        for channel, future in zip(chosen, futures, strict=True):
            try:
                # The sender keeps within the budget; the margin covers a thread that starts late.
                delivery = future.result(timeout=self.budget + 1.0)
            except concurrent.futures.TimeoutError:
                delivery = Delivery(
                    ok=False,
                    status=None,
                    attempts=0,
                    seconds=self.budget,
                    error="no answer within the budget",
                )
            self.deliveries.append(
                DeliveryRecord(
                    provider=channel.label,
                    type=channel.kind,
                    severity=alert.severity.value,
                    message=alert.message,
                    ok=delivery.ok,
                    attempts=delivery.attempts,
                    seconds=delivery.seconds,
                    error=delivery.error,
                )
            )
            if not delivery.ok:
                failed.append(
                    f"alert {alert.message!r} to {channel.label} ({channel.kind}) failed after "
                    f"{delivery.attempts} attempt(s): {delivery.error}"
                )
        if not failed:
            return
        if self.warnings is not None:
            for text in failed:
                # If even the Event fails, the composed sink still prints the failure below.
                with contextlib.suppress(StepError):
                    self.warnings.emit(type="Warning", message=f"Notification {text}")
        raise InfrastructureError("; ".join(f"canary-step: {text}" for text in failed))

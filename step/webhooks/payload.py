"""Webhook payloads as Flagger sends them, and running the hooks of one type.

Owns: the payload (name, namespace, phase, checksum, metadata; event hooks add eventMessage,
eventType and timestamp), Flagger's ComputeHash checksum, `run_hooks` (the hooks of one type in list
order, stopping where `stops_after` says), and `EventWebhooks`, the `type: event` hooks as a
`Notifier` of the composed event sink.
Must not: decide what a hook's failure means (the analysis does), or send HTTP itself (the caller does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from step.analysis.protocol import HookRun, HooksRan, stops_after
from step.errors import InfrastructureError
from step.ports import Event, WebhookCaller, WebhookPayload
from step.spec.model import Canary, WebhookType


def revision_checksum(revision: str) -> str:
    """Flagger's ComputeHash of a string (FNV-32a of spew's `(string)<value>`, SafeEncodeString).

    Flagger's payload checksum hashes its tracked configs and lastAppliedSpec; receivers treat it as
    opaque. Ours is the hash of the canary revision, which is what lastAppliedSpec stands for on Knative.
    """
    digest = 0x811C9DC5
    for byte in f"(string){revision}".encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[ord(c) % 27] for c in str(digest))


def payload(
    canary: Canary, *, phase: str, canary_revision: str | None, metadata: Mapping[str, str]
) -> WebhookPayload:
    return WebhookPayload(
        name=canary.name,
        namespace=canary.namespace,
        phase=phase,
        checksum=revision_checksum(canary_revision or ""),
        metadata=dict(metadata),
    )


def run_hooks(
    caller: WebhookCaller, canary: Canary, kind: WebhookType, *, phase: str, canary_revision: str | None
) -> HooksRan:
    """Call the hooks of `kind` in list order; Flagger stops at the first failure (rollback: success)."""
    results: list[HookRun] = []
    for hook in canary.analysis.hooks(kind):
        sent = payload(canary, phase=phase, canary_revision=canary_revision, metadata=hook.metadata)
        answer = caller.call(hook, sent)
        run = HookRun(name=hook.name, ok=answer.ok, status=answer.status, message=answer.message)
        results.append(run)
        if stops_after(kind, run):
            break
    return HooksRan(kind=kind, results=tuple(results))


@dataclass(frozen=True, kw_only=True)
class EventWebhooks:
    """The Canary's `type: event` webhooks, each called with every event (Flagger's event hooks)."""

    caller: WebhookCaller
    canary: Canary
    wall: Callable[[], float]  # seconds since the epoch, for the payload's timestamp

    def notify(self, event: Event) -> None:
        stamp = str(int(self.wall() * 1000))
        failed = []
        for hook in self.canary.analysis.hooks(WebhookType.EVENT):
            metadata = {
                **hook.metadata,
                "eventMessage": event.message,
                "eventType": event.type,
                "timestamp": stamp,
            }
            sent = payload(
                self.canary, phase=event.phase, canary_revision=event.canary_revision, metadata=metadata
            )
            answer = self.caller.call(hook, sent)
            if not answer.ok:
                failed.append(f"event webhook {hook.name} failed: {answer.message}")
        if failed:
            raise InfrastructureError("; ".join(failed))

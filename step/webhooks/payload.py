"""Webhook payloads as Flagger sends them, and running the hooks of one type.

Owns: the payload (name, namespace, phase, checksum, metadata; event hooks add eventMessage,
eventType and timestamp; ours: `canaryUrl` once the canary revision has a tagged URL, and
`{{ canary_url }}` in metadata values rendered to it), Flagger's ComputeHash checksum, `run_hooks`
(the hooks of one type in list order, stopping where `stops_after` says), and `EventWebhooks`, the
`type: event` hooks as a `Notifier` of the composed event sink.
Must not: decide what a hook's failure means (the analysis does), or send HTTP itself (the caller does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from step.analysis.protocol import HookRun, HooksRan, stops_after
from step.errors import InfrastructureError
from step.ports import Event, WebhookCaller, WebhookPayload
from step.spec.model import CANARY_URL_VARIABLE, Canary, WebhookType


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


def render_metadata(metadata: Mapping[str, str], *, canary_url: str | None) -> dict[str, str]:
    """`{{ canary_url }}` replaced by the canary revision's tagged URL in every value; nothing else is
    touched (Flagger sends metadata as written). Raises ValueError when a value uses it and no URL is
    known yet."""
    keys = [key for key, value in metadata.items() if CANARY_URL_VARIABLE.search(value)]
    if keys and canary_url is None:
        raise ValueError(
            f"metadata {', '.join(keys)} uses {{{{ canary_url }}}}, but the canary revision has no tagged URL"
            " yet (blue/green tags it before the pre-rollout hooks; the canary strategy with its first"
            " weight step)"
        )
    return {
        key: CANARY_URL_VARIABLE.sub(lambda _: canary_url or "", value) if key in keys else value
        for key, value in metadata.items()
    }


def payload(
    canary: Canary,
    *,
    phase: str,
    canary_revision: str | None,
    metadata: Mapping[str, str],
    canary_url: str | None = None,
) -> WebhookPayload:
    return WebhookPayload(
        name=canary.name,
        namespace=canary.namespace,
        phase=phase,
        checksum=revision_checksum(canary_revision or ""),
        metadata=dict(metadata),
        canary_url=canary_url,
    )


def run_hooks(
    caller: WebhookCaller,
    canary: Canary,
    kind: WebhookType,
    *,
    phase: str,
    canary_revision: str | None,
    canary_url: str | None = None,
) -> HooksRan:
    """Call the hooks of `kind` in list order; Flagger stops at the first failure (rollback: success).

    A hook whose metadata needs `{{ canary_url }}` before the canary revision has one is not called:
    it fails with the reason.
    """
    results: list[HookRun] = []
    for hook in canary.analysis.hooks(kind):
        try:
            metadata = render_metadata(hook.metadata, canary_url=canary_url)
        except ValueError as err:
            run = HookRun(name=hook.name, ok=False, message=str(err))
        else:
            sent = payload(
                canary, phase=phase, canary_revision=canary_revision, metadata=metadata, canary_url=canary_url
            )
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

"""Webhook payloads: the canary revision's tagged URL as `canaryUrl` and as `{{ canary_url }}` in metadata."""

from __future__ import annotations

import json

import pytest

from step.ports import WebhookPayload, WebhookResult
from step.spec.model import Analysis, Canary, Webhook, WebhookType
from step.webhooks.http import payload_json
from step.webhooks.payload import render_metadata, run_hooks

URL = "http://canary-podinfo.test.svc.cluster.local"


class Recorder:
    def __init__(self) -> None:
        self.sent: list[WebhookPayload] = []

    def call(self, hook: Webhook, payload: WebhookPayload) -> WebhookResult:
        self.sent.append(payload)
        return WebhookResult(ok=True, status=200, message="")


def canary(*hooks: Webhook) -> Canary:
    return Canary(name="podinfo", namespace="test", target_name="podinfo", analysis=Analysis(webhooks=hooks))


LOAD = Webhook(
    name="load",
    url="http://loadtester/",
    type=WebhookType.PRE_ROLLOUT,
    metadata={"type": "cmd", "cmd": "hey -z 1m -q 10 -c 2 {{ canary_url }}/status/200"},
)


@pytest.mark.parametrize("spelling", ["{{ canary_url }}", "{{canary_url}}", "{{- canary_url -}}"])
def test_canary_url_is_rendered_in_every_metadata_value(spelling: str) -> None:
    rendered = render_metadata({"cmd": f"hey {spelling}/", "other": "{{ name }}"}, canary_url=URL)
    assert rendered == {"cmd": f"hey {URL}/", "other": "{{ name }}"}  # nothing else is templated


def test_hooks_get_the_url_in_metadata_and_in_the_payload() -> None:
    recorder = Recorder()
    ran = run_hooks(
        recorder,
        canary(LOAD),
        WebhookType.PRE_ROLLOUT,
        phase="Progressing",
        canary_revision="p-2",
        canary_url=URL,
    )
    assert [r.ok for r in ran.results] == [True]
    (sent,) = recorder.sent
    assert sent.metadata == {"type": "cmd", "cmd": f"hey -z 1m -q 10 -c 2 {URL}/status/200"}
    body = json.loads(payload_json(sent))
    assert list(body) == ["name", "namespace", "phase", "checksum", "metadata", "canaryUrl"]
    assert body["canaryUrl"] == URL


def test_without_a_url_the_payload_is_flaggers_and_a_hook_that_needs_it_fails_unsent() -> None:
    recorder = Recorder()
    plain = Webhook(name="plain", url="http://h/", type=WebhookType.PRE_ROLLOUT, metadata={"cmd": "x"})
    ran = run_hooks(
        recorder, canary(plain, LOAD), WebhookType.PRE_ROLLOUT, phase="Progressing", canary_revision="p-2"
    )
    assert [(r.name, r.ok) for r in ran.results] == [("plain", True), ("load", False)]
    assert "metadata cmd uses {{ canary_url }}, but the canary revision has no tagged URL yet" in (
        ran.results[1].message
    )
    assert [s.metadata for s in recorder.sent] == [{"cmd": "x"}]  # the load hook was not called
    assert list(json.loads(payload_json(recorder.sent[0]))) == [
        "name",
        "namespace",
        "phase",
        "checksum",
        "metadata",
    ]

"""Chat alerts against real HTTP receivers on loopback: each type's exact JSON body, severity routing,
the address from a Secret, a proxy, a receiver that is down, failing or slow.

The expected bodies are written out by hand from Flagger's notifier structs (pkg/notifier), field by
field, so a change of shape shows here.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from step.analysis import messages as msg
from step.analysis.evaluate import Verdict
from step.analysis.records import CheckRecord, TickRecord
from step.errors import InfrastructureError, SpecError
from step.notifiers.alerts import alert_of
from step.notifiers.channels import Channel, ChatNotifier, GlobalNotifier, channels_for
from step.notifiers.payloads import post_address
from step.notifiers.sender import ChatSender
from step.ports import Event, EventType, FanOut, Severity
from step.retrying import RetryPolicy
from step.spec.model import (
    Alert,
    AlertProvider,
    Analysis,
    Canary,
    SecretRef,
    TemplateRef,
    Webhook,
    WebhookType,
)

CANARY = Canary(
    name="podinfo",
    namespace="test",
    target_name="podinfo",
    progress_deadline_seconds=60,
    analysis=Analysis(interval_seconds=1, threshold=2, max_weight=50, step_weight=10),
)
SECRET_PATH = "/services/T0000/B0000/XXXXXXXXXXXXXXXX"


@dataclass
class Receiver:
    """A chat webhook receiver answering from a script of statuses; the last one repeats."""

    statuses: list[int] = field(default_factory=lambda: [200])
    received: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    hang: threading.Event | None = None  # set: answer; unset: hold the request (a slow receiver)
    url: str = ""

    def bodies(self) -> list[Any]:
        return [body for _, _, body in self.received]


def _handler(rx: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rx.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw)))
            if rx.hang is not None:
                rx.hang.wait(10)
            status = rx.statuses.pop(0) if len(rx.statuses) > 1 else rx.statuses[0]
            answer = b"ok" if status == 200 else f"no_service {self.path}".encode()
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []
    receivers: list[Receiver] = []

    def start(rx: Receiver | None = None) -> Receiver:
        rx = rx or Receiver()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rx))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        rx.url = f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}"
        servers.append(server)
        receivers.append(rx)
        return rx

    yield start
    for rx in receivers:
        if rx.hang is not None:
            rx.hang.set()
    for server in servers:
        server.shutdown()
        server.server_close()


class FakeClock:
    """Time moves when something sleeps (the backoffs), and with the real clock otherwise."""

    def __init__(self) -> None:
        self.slept = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return time.monotonic() + self.slept

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.slept += seconds


@dataclass
class Events:
    emitted: list[tuple[EventType, str]] = field(default_factory=list)

    def emit(self, *, type: EventType, message: str) -> None:
        self.emitted.append((type, message))


def notifier(channels: list[Channel], *, ticks: list[TickRecord] | None = None, **kw: Any) -> ChatNotifier:
    sender = ChatSender(clock=FakeClock(), **kw.pop("sender", {}))
    return ChatNotifier(canary=CANARY, channels=channels, sender=sender, ticks=lambda: ticks or [], **kw)


def event(message: str, alert: Severity | None, type_: EventType = "Normal") -> Event:
    return Event(
        type=type_, message=message, phase="Progressing", canary_revision="podinfo-00002", alert=alert
    )


NEW_REVISION = event(msg.new_revision_scaling_up("podinfo", "test"), Severity.INFO)
THRESHOLD = event(msg.threshold_reached("podinfo", "test", 2), Severity.ERROR, "Warning")
CANARY_FIELDS_SLACK = [
    {"title": "Target", "value": "Service/podinfo.test", "short": False},
    {"title": "Failed checks threshold", "value": "2", "short": False},
    {"title": "Progress deadline", "value": "60s", "short": False},
    {"title": "Traffic routing", "value": "Weight step: 10 max: 50", "short": False},
]


# ----------------------------------------------------------------------------- each type's body


def test_slack_body_is_flaggers_attachment_with_the_canarys_fields(serve: Any) -> None:
    rx = serve()
    n = notifier([Channel(label="x", kind="slack", address=rx.url, channel="deploys", username="bot")])
    n.notify(NEW_REVISION)
    n.notify(THRESHOLD)
    (path, headers, new), (_, _, failed) = rx.received
    assert path == SECRET_PATH
    assert headers["content-type"] == "application/json"
    assert new == {
        "channel": "deploys",
        "username": "bot",
        "icon_url": "",
        "icon_emoji": ":rocket:",
        "attachments": [
            {
                "color": "good",
                "author_name": "podinfo.test",
                "text": "New revision detected, progressing canary analysis.",
                "mrkdwn_in": ["text"],
                "fields": CANARY_FIELDS_SLACK,
            }
        ],
    }
    assert failed["attachments"][0]["color"] == "danger"
    assert failed["attachments"][0]["text"] == "Failed checks threshold reached 2"
    assert failed["attachments"][0]["fields"] == []


def test_discord_gets_the_slack_body_on_its_slack_endpoint(serve: Any) -> None:
    rx = serve()
    n = notifier([Channel(label="x", kind="discord", address=rx.url, channel="c", username="u")])
    n.notify(THRESHOLD)
    path, _, body = rx.received[0]
    assert path == SECRET_PATH + "/slack"
    assert body["attachments"][0]["color"] == "danger"
    assert (body["channel"], body["username"], body["icon_emoji"]) == ("c", "u", ":rocket:")
    assert post_address("discord", "https://discord.com/api/webhooks/1/x/slack").endswith("/x/slack")


def test_rocket_uses_its_own_colours(serve: Any) -> None:
    rx = serve()
    n = notifier([Channel(label="x", kind="rocket", address=rx.url)])
    n.notify(NEW_REVISION)
    n.notify(THRESHOLD)
    colours = [b["attachments"][0]["color"] for b in rx.bodies()]
    assert colours == ["#0076D7", "#FF0000"]
    assert rx.bodies()[0]["attachments"][0]["fields"] == CANARY_FIELDS_SLACK
    assert (rx.bodies()[0]["channel"], rx.bodies()[0]["username"]) == ("general", "flagger")


def test_msteams_body_is_a_message_card(serve: Any) -> None:
    rx = serve()
    n = notifier([Channel(label="x", kind="msteams", address=rx.url)])
    n.notify(NEW_REVISION)
    n.notify(THRESHOLD)
    new, failed = rx.bodies()
    assert new == {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": "0076D7",
        "summary": "podinfo.test",
        "sections": [
            {
                "activityTitle": "New revision detected, progressing canary analysis.",
                "activitySubtitle": "podinfo.test",
                "facts": [{"name": f["title"], "value": f["value"]} for f in CANARY_FIELDS_SLACK],
            }
        ],
    }
    assert failed["themeColor"] == "FF0000"


def test_gchat_body_is_a_card(serve: Any) -> None:
    rx = serve()
    n = notifier([Channel(label="x", kind="gchat", address=rx.url)])
    n.notify(THRESHOLD)
    assert rx.bodies()[0] == {
        "cards": [
            {
                "header": {
                    "title": "Flagger",
                    "subtitle": "podinfo.test",
                    "imageUrl": "https://flagger.app/favicon.png",
                },
                "sections": [
                    {
                        "widgets": [
                            {
                                "textParagraph": {
                                    "text": "<font color=#848484><strong>Failed checks threshold reached 2"
                                    "</strong></font>"
                                }
                            }
                        ]
                    }
                ],
            }
        ]
    }


# ----------------------------------------------------------------------------- texts and routing


def test_alert_texts_are_flaggers_and_plain_events_are_not_alerts() -> None:
    def text(message: str, sev: Severity | None) -> str | None:
        found = alert_of(event(message, sev), CANARY)
        return found.message if found else None

    assert text(msg.advance("podinfo", "test", 10), None) is None
    assert text(msg.waiting_for_approval("podinfo", "test", "gate"), Severity.WARN) == (
        "Canary is waiting for approval."
    )
    assert text(msg.progress_deadline("podinfo", "test", "revision x is failed"), Severity.ERROR) == (
        "Progress deadline exceeded revision x is failed"
    )
    assert text(msg.promotion_completed("podinfo", "test"), Severity.INFO) == (
        "Canary analysis completed successfully, promotion finished."
    )
    assert text(msg.promotion_skipped("podinfo", "test"), Severity.INFO) == (
        "Canary analysis was skipped, promotion finished."
    )


def test_promotion_and_rollback_alerts_carry_the_headline(serve: Any) -> None:
    failing = CheckRecord(
        metric="request-success-rate",
        verdict=Verdict.FAIL,
        value=61.5,
        threshold_min=99,
        message="Halt podinfo.test advancement success rate 61.50% < 99%",
    )
    ticks = [
        TickRecord(
            index=i,
            at=i,
            phase="Progressing",
            primary_revision="p",
            canary_revision="c",
            canary_weight=w,
            failed_checks=f,
            consecutive_errors=0,
            checks=checks,
        )
        for i, (w, f, checks) in enumerate(
            [(10, 0, ()), (20, 0, ()), (20, 1, (failing,)), (20, 2, (failing,))]
        )
    ]
    rx = serve()
    n = notifier([Channel(label="x", kind="slack", address=rx.url)], ticks=ticks)
    n.notify(event(msg.canary_failed("podinfo", "test"), Severity.ERROR, "Warning"))
    fields = rx.bodies()[0]["attachments"][0]["fields"]
    assert fields == [
        {"title": "Weights reached", "value": "10% -> 20%", "short": False},
        {"title": "Failed checks", "value": "2/2", "short": False},
        {
            "title": "Failed check",
            "value": "Halt podinfo.test advancement success rate 61.50% < 99%",
            "short": False,
        },
    ]


def test_severity_routing_is_flaggers(serve: Any) -> None:
    info, warn, error, empty = serve(), serve(), serve(), serve()
    n = notifier(
        [
            Channel(label="i", kind="slack", address=info.url, severity="info"),
            Channel(label="w", kind="slack", address=warn.url, severity="warn"),
            Channel(label="e", kind="slack", address=error.url, severity="error"),
            Channel(label="0", kind="slack", address=empty.url, severity=""),
        ]
    )
    n.notify(NEW_REVISION)
    n.notify(event(msg.waiting_for_approval("podinfo", "test", "gate"), Severity.WARN, "Warning"))
    n.notify(THRESHOLD)
    n.notify(event(msg.advance("podinfo", "test", 10), None))
    texts = {
        name: [b["attachments"][0]["text"] for b in rx.bodies()]
        for name, rx in {"info": info, "warn": warn, "error": error, "empty": empty}.items()
    }
    assert texts == {
        "info": [
            "New revision detected, progressing canary analysis.",
            "Canary is waiting for approval.",
            "Failed checks threshold reached 2",
        ],
        "warn": ["Canary is waiting for approval.", "Failed checks threshold reached 2"],
        "error": ["Failed checks threshold reached 2"],
        "empty": [],
    }


def _provider(name: str, **kw: Any) -> AlertProvider:
    return AlertProvider(name=name, namespace="test", type=kw.pop("type", "slack"), **kw)


def test_channels_from_alerts_spec_address_or_secret_and_the_global_notifier_only_without_alerts() -> None:
    canary = Canary(
        name="podinfo",
        namespace="test",
        target_name="podinfo",
        analysis=Analysis(
            alerts=(
                Alert(name="a", provider_ref=TemplateRef(name="plain"), severity="info"),
                Alert(name="b", provider_ref=TemplateRef(name="hidden", namespace="ops"), severity="error"),
            )
        ),
    )
    providers = {
        ("test", "plain"): _provider(
            "plain", address="http://127.0.0.1:1/plain", channel="c1", username="u1"
        ),
        ("ops", "hidden"): AlertProvider(
            name="hidden",
            namespace="ops",
            type="msteams",
            secret_ref=SecretRef(name="teams"),
            proxy="http://127.0.0.1:3",
        ),
    }
    reads: list[tuple[str, str]] = []

    def secrets(ns: str, name: str) -> dict[str, str]:
        reads.append((ns, name))
        return {"address": "http://127.0.0.1:2/from-secret"}

    glob = GlobalNotifier(url="http://127.0.0.1:9/global")
    plain, hidden = channels_for(canary, providers, secrets=secrets, global_notifier=glob)
    assert (plain.kind, plain.address, plain.channel, plain.username, plain.severity) == (
        "slack",
        "http://127.0.0.1:1/plain",
        "c1",
        "u1",
        "info",
    )
    assert (hidden.kind, hidden.address, hidden.proxy, hidden.severity) == (
        "msteams",
        "http://127.0.0.1:2/from-secret",
        "http://127.0.0.1:3",
        "error",
    )
    assert reads == [("ops", "teams")]  # the Secret is read in the AlertProvider's namespace
    assert "from-secret" not in repr(hidden) and "from-secret" not in json.dumps(hidden.describe())

    bare = Canary(name="podinfo", namespace="test", target_name="podinfo")
    (only,) = channels_for(bare, {}, secrets=secrets, global_notifier=glob)
    assert (only.kind, only.channel, only.username, only.severity) == ("slack", "general", "flagger", None)
    assert channels_for(bare, {}, secrets=secrets) == ()

    with pytest.raises(SpecError, match=r'secret "teams" has no "address" key'):
        channels_for(canary, providers, secrets=lambda ns, name: {"token": "x"})
    with pytest.raises(SpecError, match=r"AlertProvider test/plain is not in the spec files"):
        channels_for(canary, {}, secrets=secrets)
    with pytest.raises(SpecError, match=r"type 'telegram' is not one canary-step can send to"):
        channels_for(
            bare, {}, secrets=secrets, global_notifier=GlobalNotifier(url="http://x", kind="telegram")
        )


# ----------------------------------------------------------------------------- failures


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_receiver_that_is_down_is_retried_reported_and_leaves_a_warning_event_without_the_address(
    serve: Any,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}{SECRET_PATH}"
    ok = serve()
    warnings = Events()
    n = notifier(
        [
            Channel(label="AlertProvider test/down", kind="slack", address=url),
            Channel(label="up", kind="slack", address=ok.url),
        ],
        warnings=warnings,
    )
    printed: list[str] = []
    kube_events = Events()
    sink = FanOut(events=kube_events, notifiers=(n,), on_error=printed.append)
    sink.publish(THRESHOLD)
    assert len(ok.received) == 1  # the other channel still got it
    (record_down, record_up) = n.deliveries
    assert (record_down.ok, record_down.attempts, record_up.ok) == (False, 3, True)
    assert record_down.error == "connection failed (receiver down or unreachable)"
    assert len(n.sender._clock.sleeps) == 2  # type: ignore[attr-defined]
    (warning,) = warnings.emitted
    assert warning[0] == "Warning"
    assert warning[1].startswith(
        "Notification alert 'Failed checks threshold reached 2' to AlertProvider test/down"
    )
    (line,) = printed
    assert "AlertProvider test/down" in line
    for text in (line, warning[1], json.dumps([d.to_json() for d in n.deliveries])):
        assert SECRET_PATH not in text and "T0000" not in text and url not in text
    assert kube_events.emitted == [("Warning", THRESHOLD.message)]  # the decision's own event is untouched


def test_a_failing_receiver_is_retried_and_its_body_quoted_without_the_address(serve: Any) -> None:
    rx = serve(Receiver(statuses=[500, 404]))
    n = notifier([Channel(label="x", kind="slack", address=rx.url)])
    with pytest.raises(InfrastructureError) as raised:
        n.notify(THRESHOLD)
    assert len(rx.received) == 2  # 500 is retried, 404 is not
    assert n.deliveries[0].error == "HTTP 404: no_service <address>"
    assert SECRET_PATH not in str(raised.value)


def test_a_transient_failure_then_success_is_delivered(serve: Any) -> None:
    rx = serve(Receiver(statuses=[503, 429, 200]))
    n = notifier([Channel(label="x", kind="slack", address=rx.url)])
    n.notify(NEW_REVISION)
    assert [d.ok for d in n.deliveries] == [True] and n.deliveries[0].attempts == 3


def test_a_slow_receiver_costs_the_budget_at_most(serve: Any) -> None:
    rx = serve(Receiver(hang=threading.Event()))
    budget = 1.5
    n = notifier(
        [Channel(label="slow", kind="slack", address=rx.url)],
        budget=budget,
        sender={
            "attempt_timeout": 0.5,
            "policy": RetryPolicy(attempts=10, backoff_base=0.0, jitter=0.0, deadline=60),
        },
    )
    started = time.monotonic()
    with pytest.raises(InfrastructureError, match=r"no answer within 0\.[45]s"):
        n.notify(THRESHOLD)
    assert time.monotonic() - started < budget + 1.0  # the per-event budget bounds the whole call
    assert 1 <= n.deliveries[0].attempts < 10


def test_the_proxy_is_used(serve: Any) -> None:
    proxy = serve()
    target = "http://127.0.0.1:9/hooks/secret-path"  # nothing listens there: only the proxy answers
    n = notifier([Channel(label="x", kind="slack", address=target, proxy=proxy.url.split("/services")[0])])
    n.notify(NEW_REVISION)
    ((path, _, body),) = proxy.received
    assert path == target  # a forward proxy gets the absolute URI
    assert body["attachments"][0]["text"] == "New revision detected, progressing canary analysis."


def test_a_muted_confirm_rollout_hook_halts_without_an_alert() -> None:
    hooks = (
        Webhook(
            name="quiet-gate", url="http://127.0.0.1:1/", type=WebhookType.CONFIRM_ROLLOUT, mute_alert=True
        ),
        Webhook(name="loud-gate", url="http://127.0.0.1:1/", type=WebhookType.CONFIRM_ROLLOUT),
    )
    canary = Canary(
        name="podinfo", namespace="test", target_name="podinfo", analysis=Analysis(webhooks=hooks)
    )
    quiet = event(msg.waiting_for_approval("podinfo", "test", "quiet-gate"), Severity.WARN, "Warning")
    loud = event(msg.waiting_for_approval("podinfo", "test", "loud-gate"), Severity.WARN, "Warning")
    assert alert_of(quiet, canary) is None
    found = alert_of(loud, canary)
    assert found is not None and found.message == "Canary is waiting for approval."

"""HttpWebhookCaller against real HTTP(S) servers on loopback; the backoff waits go to a fake clock."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from step.ports import WebhookPayload
from step.retrying import RetryPolicy
from step.spec.model import Webhook, WebhookType
from step.webhooks.http import (
    GO_RETRYABLEHTTP,
    HttpWebhookCaller,
    honoured_retry_after,
    is_retryable_status,
    payload_json,
)

PAYLOAD = WebhookPayload(name="podinfo", namespace="test", phase="Progressing", checksum="5498f4fcd6")


class FakeClock:
    """Time moves only when something sleeps: backoffs are recorded, never waited."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@dataclass
class Hook:
    """A webhook receiver answering from a script of (status, headers, body); the last answer repeats."""

    answers: list[tuple[int, dict[str, str], bytes]]
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    hold: threading.Event | None = None  # set: answer; unset: hang (a slow server)
    url: str = ""


def _handler(hook: Hook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            if hook.hold is not None:
                hook.hold.wait(10)
            status, headers, payload = hook.answers.pop(0) if len(hook.answers) > 1 else hook.answers[0]
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up (the timeout test)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _serve(hook: Hook, *, tls: ssl.SSLContext | None = None) -> Iterator[Hook]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hook))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    hook.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield hook
    finally:
        if hook.hold is not None:
            hook.hold.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    yield from _serve(Hook(answers=[(200, {}, b"ok")]))


def _webhook(url: str, **kw: object) -> Webhook:
    return Webhook(name="check", url=url, type=WebhookType.ROLLOUT, **kw)  # type: ignore[arg-type]


def test_posts_flaggers_payload_as_json(hook: Hook) -> None:
    clock = FakeClock()
    result = HttpWebhookCaller(clock=clock).call(_webhook(hook.url), PAYLOAD)
    assert (result.ok, result.status, result.message, result.attempts) == (True, 200, "", 1)
    headers, body = hook.received[0]
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "checksum": "5498f4fcd6",
    }
    assert list(json.loads(body)) == ["name", "namespace", "phase", "checksum"]


def test_metadata_is_sent_when_present(hook: Hook) -> None:
    payload = WebhookPayload(
        name="p", namespace="n", phase="Progressing", checksum="c", metadata={"cmd": "hey"}
    )
    HttpWebhookCaller(clock=FakeClock()).call(_webhook(hook.url), payload)
    assert json.loads(hook.received[0][1])["metadata"] == {"cmd": "hey"}
    assert "type" not in json.loads(hook.received[0][1])


@pytest.mark.parametrize(
    ("status", "ok"), [(200, True), (201, True), (202, True), (203, False), (204, False)]
)
def test_success_is_200_to_202(hook: Hook, status: int, ok: bool) -> None:
    hook.answers[:] = [(status, {}, b"" if status == 204 else b"body text")]
    result = HttpWebhookCaller(clock=FakeClock()).call(_webhook(hook.url, retries=2), PAYLOAD)
    assert result.ok is ok and result.status == status and result.attempts == 1
    if not ok:
        assert result.message == ("" if status == 204 else "body text")


@pytest.mark.parametrize("status", [400, 403, 404, 501])
def test_other_failures_are_not_retried_and_carry_the_body(hook: Hook, status: int) -> None:
    hook.answers[:] = [(status, {}, b"gate closed")]
    clock = FakeClock()
    result = HttpWebhookCaller(clock=clock).call(_webhook(hook.url, retries=3), PAYLOAD)
    assert (result.ok, result.status, result.message, result.attempts) == (False, status, "gate closed", 1)
    assert len(hook.received) == 1 and clock.sleeps == []


def test_5xx_is_retried_with_exponential_backoff_then_gives_up(hook: Hook) -> None:
    hook.answers[:] = [(500, {}, b"boom")]
    clock = FakeClock()
    result = HttpWebhookCaller(clock=clock).call(_webhook(hook.url, retries=3), PAYLOAD)
    assert result.ok is False and result.status == 500 and result.attempts == 4
    assert result.message == f"POST {hook.url} giving up after 4 attempt(s)"
    assert len(hook.received) == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert result.seconds == 7.0


def test_no_retries_means_one_attempt(hook: Hook) -> None:
    hook.answers[:] = [(503, {}, b"")]
    result = HttpWebhookCaller(clock=FakeClock()).call(_webhook(hook.url), PAYLOAD)
    assert result.message == f"POST {hook.url} giving up after 1 attempt(s)" and len(hook.received) == 1


def test_retry_after_is_honoured_and_a_later_success_counts(hook: Hook) -> None:
    hook.answers[:] = [(429, {"Retry-After": "3"}, b""), (503, {"Retry-After": "5"}, b""), (200, {}, b"")]
    clock = FakeClock()
    result = HttpWebhookCaller(clock=clock).call(_webhook(hook.url, retries=5), PAYLOAD)
    assert (result.ok, result.attempts) == (True, 3)
    assert clock.sleeps == [3.0, 5.0]


def test_a_slow_server_times_out_per_attempt(hook: Hook) -> None:
    hook.hold = threading.Event()
    result = HttpWebhookCaller(clock=FakeClock()).call(
        _webhook(hook.url, timeout_seconds=0.2, retries=1), PAYLOAD
    )
    assert result.ok is False and result.status is None and result.attempts == 2
    assert result.message.startswith(f"POST {hook.url} giving up after 2 attempt(s): timeout")
    assert len(hook.received) == 2


def test_connection_refused_is_retried_then_given_up() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    clock = FakeClock()
    result = HttpWebhookCaller(clock=clock).call(_webhook(url, retries=2), PAYLOAD)
    assert result.ok is False and result.status is None and result.attempts == 3
    assert result.message.startswith(f"POST {url} giving up after 3 attempt(s): ")
    assert clock.sleeps == [1.0, 2.0]


@pytest.fixture
def tls_hook(tmp_path: Path) -> Iterator[Hook]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl CLI")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    yield from _serve(Hook(answers=[(200, {}, b"ok")]), tls=context)


def test_disable_tls_skips_certificate_verification(tls_hook: Hook) -> None:
    caller = HttpWebhookCaller(clock=FakeClock())
    refused = caller.call(_webhook(tls_hook.url, retries=2), PAYLOAD)
    assert refused.ok is False and refused.attempts == 1  # certificate errors are not retried
    assert "certificate" in refused.message.lower()
    assert caller.call(_webhook(tls_hook.url, disable_tls=True), PAYLOAD).ok is True


def test_backoff_and_retry_policy_arithmetic() -> None:
    assert GO_RETRYABLEHTTP.with_attempts(8).schedule() == (1, 2, 4, 8, 16, 30, 30)
    assert GO_RETRYABLEHTTP.delay(3, retry_after=None) == 4.0  # no jitter, as go-retryablehttp
    assert honoured_retry_after(429, "12", now=0.0) == 12.0
    assert honoured_retry_after(503, "12", now=0.0) == 12.0
    assert honoured_retry_after(500, "12", now=0.0) is None  # Retry-After only on 429/503
    assert GO_RETRYABLEHTTP.delay(1, retry_after=honoured_retry_after(429, "86400", now=0.0)) == 30.0
    assert [s for s in (429, 500, 501, 502, 503, 400, 404) if is_retryable_status(s)] == [429, 500, 502, 503]


def test_a_retry_after_date_counts_from_the_wall_clock(hook: Hook) -> None:
    hook.answers[:] = [(503, {"Retry-After": "Thu, 01 Jan 1970 00:00:07 GMT"}, b""), (200, {}, b"")]
    clock = FakeClock()
    result = HttpWebhookCaller(clock=clock, wall=lambda: 3.0).call(_webhook(hook.url, retries=1), PAYLOAD)
    assert result.ok is True and clock.sleeps == [4.0]


def test_a_retry_after_that_is_not_rfc_9110_falls_back_to_the_backoff(hook: Hook) -> None:
    hook.answers[:] = [(429, {"Retry-After": "1.5"}, b""), (429, {"Retry-After": "-2"}, b""), (200, {}, b"")]
    clock = FakeClock()
    result = HttpWebhookCaller(clock=clock).call(_webhook(hook.url, retries=2), PAYLOAD)
    assert result.ok is True and clock.sleeps == [1.0, 2.0]


def test_the_schedule_is_a_policy_the_caller_can_change(hook: Hook) -> None:
    hook.answers[:] = [(500, {}, b"boom")]
    clock = FakeClock()
    caller = HttpWebhookCaller(
        clock=clock, policy=RetryPolicy(backoff_base=0.25, backoff_cap=0.5, jitter=0.0)
    )
    result = caller.call(_webhook(hook.url, retries=3), PAYLOAD)
    assert result.attempts == 4 and clock.sleeps == [0.25, 0.5, 0.5]  # the hook's retries set the attempts


def test_payload_json_omits_empty_metadata() -> None:
    assert json.loads(payload_json(PAYLOAD)) == {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "checksum": "5498f4fcd6",
    }


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hook", "no-scheme/hook", "http://"])
def test_an_unusable_url_fails_at_once(url: str) -> None:
    clock = FakeClock()
    result = HttpWebhookCaller(clock=clock).call(_webhook(url, retries=3), PAYLOAD)
    assert result.ok is False and result.status is None and result.attempts == 1
    assert result.message.startswith(f"POST {url}: ")
    assert clock.sleeps == []

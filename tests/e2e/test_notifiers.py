"""Chat alerts from a real `canary-step run` on the local control plane: AlertProviders with the
address in the spec or in a real Secret on the API server, severity routing, a receiver that is down,
and the global notifier; the address never shows on stderr, stdout, in the report or in the Events.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import ControlPlane
from tests.e2e.test_run import PODINFO, Step, canary_spec

pytestmark = pytest.mark.cluster

SECRET_PATH = "/services/T0SECRET/B0SECRET/hushhushhush"


class Receiver:
    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append((self.path, json.loads(raw)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def texts(self) -> list[str]:
        return [body["attachments"][0]["text"] for _, body in self.posts]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def step(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Step]:
    """podinfo 6.0.0 serving and pinned as the primary, as in test_run."""
    control_plane.create_podinfo(namespace)
    control_plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    runner = Step(control_plane, namespace, tmp_path)
    first = runner.run(canary_spec(namespace))
    assert first.code == 0, first.stderr
    yield runner
    if runner.process is not None and runner.process.poll() is None:
        runner.process.kill()
        runner.process.wait()


def _provider(ns: str, name: str, kind: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "AlertProvider",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": kind, **spec},
    }


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _no_address(step: Step, result: Any, *secrets: str) -> None:
    outputs = {
        "stderr": result.stderr,
        "stdout": result.stdout,
        "report": json.dumps(result.report),
        "results": json.dumps(result.results),
        "events": json.dumps(step.events()),
    }
    for secret in secrets:
        for where, text in outputs.items():
            assert secret not in text, f"{secret!r} shows in {where}"


def test_alerts_routed_by_severity_address_from_a_secret_and_a_receiver_down(step: Step) -> None:
    ns = step.namespace
    slack, teams = Receiver(), Receiver()
    down = f"http://127.0.0.1:{_closed_port()}{SECRET_PATH}/down"
    try:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "slack-url", "namespace": ns},
            "stringData": {"address": slack.url},
        }
        status, body = step.cp.api.request("POST", f"/api/v1/namespaces/{ns}/secrets", body=secret)
        assert status == 201, body
        alerts = [
            {"name": "on-call", "severity": "info", "providerRef": {"name": "slack"}},
            {"name": "errors", "severity": "error", "providerRef": {"name": "teams"}},
            {"name": "broken", "severity": "info", "providerRef": {"name": "down"}},
        ]
        canary = canary_spec(ns, interval="2s", step_weight=25)
        canary["spec"]["analysis"]["alerts"] = alerts
        step.deploy(f"{PODINFO}:6.0.1")
        result = step.run(
            canary,
            _provider(ns, "slack", "slack", channel="deploys", secretRef={"name": "slack-url"}),
            _provider(ns, "teams", "msteams", address=teams.url),
            _provider(ns, "down", "gchat", address=down),
        )
    finally:
        slack.stop()
        teams.stop()
    assert result.code == 0, result.stderr  # a receiver that is down changes nothing
    assert step.traffic() == {"podinfo-00002": 100}
    assert slack.texts() == [
        "New revision detected, progressing canary analysis.",
        "Canary analysis completed successfully, promotion finished.",
    ]
    assert all(path == SECRET_PATH and body["channel"] == "deploys" for path, body in slack.posts)
    headline = {f["title"]: f["value"] for f in slack.posts[-1][1]["attachments"][0]["fields"]}
    assert headline["Weights reached"] == "25% -> 50%", headline
    assert teams.posts == []  # severity error: nothing failed
    notifications = result.report["notifications"]
    assert notifications["failed"] == 2  # both alerts to the gchat receiver that is down
    assert {d["provider"] for d in notifications["sent"] if not d["ok"]} == {f"AlertProvider {ns}/down"}
    warnings = [m for m in step.events() if m.startswith("Notification alert")]
    assert len(warnings) == 2 and all(f"AlertProvider {ns}/down (gchat)" in m for m in warnings), warnings
    assert f"AlertProvider {ns}/down (gchat) failed" in result.stderr
    _no_address(step, result, SECRET_PATH, slack.url, teams.url, down)


def test_the_global_notifier_gets_every_alert_of_a_rollback(step: Step) -> None:
    ns = step.namespace
    discord = Receiver()
    try:
        step.deploy(f"{PODINFO}:6.0.2-fault-5xx-60")
        env = {"CANARY_STEP_ALERT_URL": discord.url, "CANARY_STEP_ALERT_TYPE": "discord"}
        result = step.run(canary_spec(ns, interval="2s", threshold=2), env=env)
    finally:
        discord.stop()
    assert result.code == 3, result.stderr
    assert discord.texts() == [
        "New revision detected, progressing canary analysis.",
        "Failed checks threshold reached 2",
        f"Canary failed! Scaling down podinfo.{ns}",
    ]
    assert all(path == SECRET_PATH + "/slack" for path, _ in discord.posts)
    last = discord.posts[-1][1]["attachments"][0]
    assert last["color"] == "danger"
    fields = {f["title"]: f["value"] for f in last["fields"]}
    assert fields["Failed checks"] == "2/2" and "success rate" in fields["Failed check"], fields
    _no_address(step, result, SECRET_PATH, discord.url)

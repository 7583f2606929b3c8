"""A real `canary-step run` gated on a Datadog MetricTemplate: the Secret with Flagger's key names on
the API server, the preflight's online check, the query sent over 10 x the metric's interval, and
the value read; the Datadog API is a local contract server (it checks the documented request and
answers documented shapes), not the real service."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import ControlPlane
from tests.e2e.test_run import PODINFO, Step, canary_spec

pytestmark = pytest.mark.cluster


class FakeDatadog:
    """Answers /api/v1/validate and /api/v1/query as Datadog documents them, when the keys match."""

    def __init__(self, *, value: float) -> None:
        self.queries: list[dict[str, str]] = []
        self.refused = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                keys = (self.headers.get("DD-API-KEY"), self.headers.get("DD-APPLICATION-KEY"))
                if keys != ("api-key-1", "app-key-1"):
                    api.refused += 1
                    self._send(403, {"errors": ["Forbidden"]})
                elif parts.path == "/api/v1/validate":
                    self._send(200, {"valid": True})
                elif parts.path == "/api/v1/query":
                    params = dict(urllib.parse.parse_qsl(parts.query))
                    api.queries.append(params)
                    series = [{"metric": "m", "pointlist": [[float(params["from"]) * 1000, value]]}]
                    self._send(200, {"status": "ok", "series": series})
                else:
                    self._send(404, {"errors": ["Not found"]})

            def _send(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def step(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Step]:
    control_plane.create_podinfo(namespace)
    control_plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    runner = Step(control_plane, namespace, tmp_path)
    first = runner.run(canary_spec(namespace))
    assert first.code == 0, first.stderr
    yield runner
    if runner.process is not None and runner.process.poll() is None:
        runner.process.kill()
        runner.process.wait()


def _datadog_run(step: Step, *, value: float) -> tuple[Any, FakeDatadog]:
    ns = step.namespace
    datadog = FakeDatadog(value=value)
    try:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "datadog", "namespace": ns},
            "stringData": {"datadog_api_key": "api-key-1", "datadog_application_key": "app-key-1"},
        }
        status, body = step.cp.api.request("POST", f"/api/v1/namespaces/{ns}/secrets", body=secret)
        assert status == 201, body
        template = {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "not-found-percentage", "namespace": ns},
            "spec": {
                "provider": {"type": "datadog", "address": datadog.url, "secretRef": {"name": "datadog"}},
                "query": "sum:requests.404{revision:{{ route }}}.as_count()",
            },
        }
        metrics = [
            {
                "name": "not-found-percentage",
                "templateRef": {"name": "not-found-percentage"},
                "thresholdRange": {"max": 5},
                "interval": "30s",
            }
        ]
        step.deploy(f"{PODINFO}:6.0.1")
        result = step.run(
            canary_spec(ns, interval="1s", step_weight=50, metrics=metrics, load=False), template
        )
    finally:
        datadog.stop()
    return result, datadog


def test_a_datadog_gated_canary_is_promoted(step: Step) -> None:
    result, datadog = _datadog_run(step, value=1.5)
    assert result.code == 0, result.stderr
    assert step.traffic() == {"podinfo-00002": 100}
    assert datadog.refused == 0 and datadog.queries
    first = datadog.queries[0]
    assert first["query"] == "sum:requests.404{revision:podinfo-00002}.as_count()"
    assert int(first["to"]) - int(first["from"]) == 300  # 10 x the metric's 30s, as Flagger's fromDelta
    values = [c["value"] for t in result.report["ticks"] for c in t["checks"]]
    assert 1.5 in values
    assert "api-key-1" not in result.stderr + json.dumps(result.report)


def test_a_datadog_value_over_the_threshold_rolls_back(step: Step) -> None:
    result, _ = _datadog_run(step, value=42.0)
    assert result.code == 3, result.stderr
    assert step.traffic() == {"podinfo-00001": 100}
    assert any("not-found-percentage 42" in m for m in step.events()), step.events()

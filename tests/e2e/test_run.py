"""`canary-step run` end to end on the local control plane: a real API server, the Knative simulator,
the data plane with fault-injecting image tags, a real Prometheus scraping every second, the loadtester.

Each test runs the real command in a subprocess, with 1-2 s intervals, and checks the exit code, the
results files, the Service's traffic and annotation, and the Events.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import ControlPlane, wait_for
from tests.cluster.prom import Prometheus

pytestmark = [pytest.mark.cluster, pytest.mark.knative("real")]

CANARY_STEP = str(Path(sys.executable).with_name("canary-step"))
PODINFO = "ghcr.io/stefanprodan/podinfo"
ANNOTATION = "flagger.app/primary-revision"


# --------------------------------------------------------------------------- helpers


def canary_spec(
    namespace: str,
    *,
    interval: str = "1s",
    threshold: int = 5,
    max_weight: int = 50,
    step_weight: int = 10,
    metrics: list[dict[str, Any]] | None = None,
    webhooks: list[dict[str, Any]] | None = None,
    load: bool = True,
    concurrency: int = 2,
    **spec: Any,
) -> dict[str, Any]:
    """The seed's Canary, fast: the load starts on the first tick (pre-rollout) and keeps going (rollout)."""
    hey = f"hey -z 2m -q 20 -c {concurrency} http://podinfo.{namespace}/"
    load_hooks = [
        {"name": "load-start", "type": "pre-rollout", "url": "LOADTESTER", "metadata": {"cmd": hey}},
        {"name": "load-test", "url": "LOADTESTER", "timeout": "5s", "metadata": {"type": "cmd", "cmd": hey}},
    ]
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "provider": "knative",
            "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            **spec,
            "analysis": {
                "interval": interval,
                "threshold": threshold,
                "maxWeight": max_weight,
                "stepWeight": step_weight,
                "metrics": metrics
                if metrics is not None
                else [
                    {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                    {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "1m"},
                ],
                "webhooks": (load_hooks if load else []) + (webhooks or []),
            },
        },
    }


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    results: dict[str, str]
    report: dict[str, Any]


class Step:
    """Runs `canary-step run` for one test: writes the spec, starts the command, reads its outputs."""

    def __init__(self, cp: ControlPlane, namespace: str, tmp: Path) -> None:
        self.cp = cp
        self.namespace = namespace
        self.tmp = tmp
        self.results_dir = tmp / "results"
        self.report = tmp / "report.json"
        self.process: subprocess.Popen[str] | None = None

    def write(self, *docs: dict[str, Any]) -> Path:
        text = yaml.safe_dump_all(docs).replace("LOADTESTER", self.cp.loadtester_url + "/")
        path = self.tmp / "canary.yaml"
        path.write_text(text)
        return path

    def command(self, spec: Path, *args: str) -> list[str]:
        return [
            CANARY_STEP,
            "run",
            str(spec),
            "--kubeconfig",
            str(self.cp.kubeconfig),
            "--metrics-server",
            self.cp.prometheus_url,
            "--results-dir",
            str(self.results_dir),
            "--report",
            str(self.report),
            *args,
        ]

    def start(
        self, *docs: dict[str, Any], args: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> None:
        spec = self.write(*docs)
        self.process = subprocess.Popen(
            self.command(spec, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def wait(self, timeout: float = 120) -> Result:
        assert self.process is not None
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
            raise AssertionError(f"canary-step did not finish within {timeout}s; stderr:\n{stderr}") from None
        results = (
            {p.name: p.read_text() for p in self.results_dir.iterdir()} if self.results_dir.exists() else {}
        )
        report = json.loads(self.report.read_text()) if self.report.exists() else {}
        return Result(self.process.returncode, stdout, stderr, results, report)

    def run(
        self,
        *docs: dict[str, Any],
        args: tuple[str, ...] = (),
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> Result:
        self.start(*docs, args=args, env=env)
        return self.wait(timeout)

    # ---- the cluster's view

    def service(self) -> dict[str, Any]:
        return self.cp.get_service(self.namespace, "podinfo")

    def traffic(self) -> dict[str, int]:
        status = self.service().get("status") or {}
        split: dict[str, int] = {}
        for target in status.get("traffic") or []:
            if target.get("percent"):
                split[target["revisionName"]] = split.get(target["revisionName"], 0) + target["percent"]
        return split

    def annotation(self) -> str | None:
        return (self.service()["metadata"].get("annotations") or {}).get(ANNOTATION)

    def events(self) -> list[str]:
        """canary-step's Events, oldest first (real Knative and Kubernetes write their own there too)."""
        status, body = self.cp.api.request("GET", f"/api/v1/namespaces/{self.namespace}/events")
        assert status == 200, body
        items = sorted(
            (e for e in body.get("items") or [] if (e.get("source") or {}).get("component") == "canary-step"),
            key=lambda e: (
                e.get("eventTime") or e.get("firstTimestamp") or "",
                e["metadata"].get("creationTimestamp", ""),
            ),
        )
        return [e["message"] for e in items]

    def event_counts(self) -> dict[str, int]:
        """How often each event happened: a repeat is counted on its first Event, as client-go does."""
        status, body = self.cp.api.request("GET", f"/api/v1/namespaces/{self.namespace}/events")
        assert status == 200, body
        items = body.get("items") or []
        ours = [e for e in items if (e.get("source") or {}).get("component") == "canary-step"]
        return {e["message"]: int(e.get("count") or 1) for e in ours}

    def deploy(self, image: str) -> None:
        self.cp.set_image(self.namespace, "podinfo", image)


def pinned_step(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, first: dict[str, Any]
) -> Iterator[Step]:
    """podinfo 6.0.0 serving, pinned as the primary by a first run of `first` (`initialized`); a run
    still going at the end of the test is killed. The body of every e2e module's `step` fixture."""
    control_plane.create_podinfo(namespace)
    control_plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    runner = Step(control_plane, namespace, tmp_path)
    result = runner.run(first)
    assert result.code == 0, result.stderr
    assert result.results["decision"] == "initialized"
    yield runner
    if runner.process is not None and runner.process.poll() is None:
        runner.process.kill()
        runner.process.wait()


@pytest.fixture
def step(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Step]:
    """podinfo 6.0.0 serving, pinned as the primary by a first run (`initialized`)."""
    yield from pinned_step(control_plane, namespace, tmp_path, canary_spec(namespace))


def advances(events: list[str]) -> list[int]:
    return [int(m.rsplit(" ", 1)[1]) for m in events if m.startswith("Advance ")]


# --------------------------------------------------------------------------- the seed's story


def test_initialization_pins_the_serving_revision(step: Step) -> None:
    assert step.annotation() == "podinfo-00001"
    assert step.traffic() == {"podinfo-00001": 100}
    assert step.events()[0] == f"Initialization done! podinfo.{step.namespace}"


def test_seed_promotion(step: Step) -> None:
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.1")
    events_hook = {"name": "events", "type": "event", "url": "LOADTESTERevents"}
    result = step.run(canary_spec(ns, interval="2s", webhooks=[events_hook]))
    assert result.code == 0, result.stderr
    assert result.results["decision"] == "promoted"
    assert result.results["canary-revision"] == "podinfo-00002"
    assert result.results["primary-revision"] == "podinfo-00002"
    assert result.results["canary-weight"] == "50"
    assert step.annotation() == "podinfo-00002"
    assert step.traffic() == {"podinfo-00002": 100}
    events = step.events()
    assert advances(events) == [10, 20, 30, 40, 50]
    assert events[-1] == f"Promotion completed! Scaling down podinfo.{ns}"
    assert f"New revision detected! Scaling up podinfo.{ns}" in events
    assert f"Starting canary analysis for podinfo.{ns}" in events
    assert "Pre-rollout check load-start passed" in events
    # the report: a timeline whose weights climb and whose checks carry values
    # (a tick may hold the weight: waiting for the revision to be Ready, or "no values found" while
    # Prometheus has seen fewer than two samples of the canary's series, a failed check as in Flagger)
    weights = [t["canaryWeight"] for t in result.report["ticks"]]
    assert weights == sorted(weights) and sorted(set(weights) - {0}) == [10, 20, 30, 40, 50, 100], weights
    assert int(result.results["failed-checks"]) < 5
    measured = [c for t in result.report["ticks"] for c in t["checks"] if c["value"] is not None]
    assert measured and all(
        c["query"].startswith(" sum(") or "histogram_quantile" in c["query"] for c in measured
    )
    assert "tick" in result.stderr and "Traffic: 100% on podinfo-00002. Exit 0." in result.stderr
    # every event also went to the event webhook, with Flagger's payload
    posted = [c["body"] for c in step.cp.loadtester.calls("/events") if c["body"]["namespace"] == ns]
    messages = [p["metadata"]["eventMessage"] for p in posted]
    assert list(dict.fromkeys(messages)) == events[1:], (posted, events)
    counts = step.event_counts()
    assert all(messages.count(m) == counts[m] for m in messages), (messages, counts)
    first = posted[0]
    assert set(first) == {"name", "namespace", "phase", "checksum", "metadata"}
    assert first["name"] == "podinfo" and first["metadata"]["eventType"] == "Normal"
    assert first["metadata"]["timestamp"].isdigit()


def test_seed_rollback_on_5xx(step: Step) -> None:
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.2-fault-5xx-60")
    summary, output = step.tmp / "summary.md", step.tmp / "github-output"
    env = {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)}
    # 2 s, not 1 s: at 1 s the first measuring tick may find fewer than two scrapes of the canary's
    # new series ("no values found", also a failed check), and this test is about the 5xx halts.
    result = step.run(canary_spec(ns, interval="2s", threshold=2), env=env)
    assert result.code == 3, result.stderr
    assert result.results["decision"] == "rolled-back"
    assert result.results["reason"] == "failed-checks-threshold"
    assert step.annotation() == "podinfo-00001"
    assert step.traffic() == {"podinfo-00001": 100}
    events = step.events()
    halts = [m for m in events if m.startswith(f"Halt podinfo.{ns} advancement success rate")]
    assert halts, events
    assert f"Rolling back podinfo.{ns} failed checks threshold reached 2" in events
    assert events[-1] == f"Canary failed! Scaling down podinfo.{ns}"
    assert "Traffic: 100% on podinfo-00001. Exit 3." in result.stderr
    # the GitHub job summary and outputs
    markdown = summary.read_text()
    assert "```mermaid\nxychart-beta" in markdown and "| decision | `rolled-back` |" in markdown
    # The weight line is the report's weights. The weight stops at the first failed check, is held for
    # both failed checks (threshold 2), then drops to 0. Which weight it stops at (10 or 20) depends
    # on whether Prometheus has seen the canary's first 5xx by the first measuring tick.
    ticks = result.report["ticks"]
    weights = [tick["canaryWeight"] for tick in ticks]
    assert f"line [{', '.join(map(str, weights))}]" in markdown
    first_failure = next(i for i, tick in enumerate(ticks) if tick["failedChecks"] > 0)
    held = weights[first_failure - 1 : -1]
    assert len(held) == 3 and len(set(held)) == 1 and held[0] > 0, weights
    assert weights[-1] == 0, weights
    assert "decision=rolled-back" in output.read_text().splitlines()


def test_latency_fault_is_caught_by_request_duration(step: Step) -> None:
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.2-fault-latency-800ms")
    duration = [{"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "1m"}]
    # 800 ms per request: more concurrent clients, so that the canary's 10 % gets requests every tick
    result = step.run(canary_spec(ns, interval="2s", threshold=3, metrics=duration, concurrency=20))
    assert result.code == 3, result.stderr
    events = step.events()
    halts = [m for m in events if m.startswith(f"Halt podinfo.{ns} advancement request duration")]
    assert halts and all(m.endswith("> 500ms") for m in halts), events
    assert step.traffic() == {"podinfo-00001": 100}


def test_a_canary_that_never_becomes_ready_rolls_back_at_the_progress_deadline(step: Step) -> None:
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.2-broken")
    result = step.run(canary_spec(ns, progressDeadlineSeconds=4))
    assert result.code == 3, result.stderr
    assert result.results["reason"] == "progress-deadline"
    assert result.results["canary-weight"] == "0"
    events = step.events()
    assert any(m.startswith(f"Rolling back podinfo.{ns} progress deadline exceeded") for m in events)
    assert step.traffic() == {"podinfo-00001": 100}
    assert 4 <= result.report["durationSeconds"] < 15


def test_deploy_and_verify_in_one_step(step: Step) -> None:
    result = step.run(
        canary_spec(step.namespace, interval="1s", step_weight=25), args=("--image", f"{PODINFO}:6.0.1")
    )
    assert result.code == 0, result.stderr
    assert result.results["decision"] == "promoted"
    assert step.annotation() == "podinfo-00002"
    images = [c["image"] for c in step.service()["spec"]["template"]["spec"]["containers"]]
    assert images == [f"{PODINFO}:6.0.1"]


# --------------------------------------------------------------------------- gates


def _gate(kind: str, path: str) -> dict[str, Any]:
    return {"name": f"{kind}-gate", "type": kind, "url": f"LOADTESTER{path}"}


def _gate_checks(step: Step, path: str) -> int:
    return len(
        [
            c
            for c in step.cp.loadtester.calls()
            if c.get("path") == path and (c.get("body") or {}).get("namespace") == step.namespace
        ]
    )


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("confirm-rollout", "gate/check"),
        ("confirm-traffic-increase", "gate/check"),
        ("confirm-promotion", "gate/check"),
    ],
)
def test_gates_hold_then_release(step: Step, kind: str, path: str) -> None:
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.1")
    step.start(canary_spec(ns, step_weight=25, webhooks=[_gate(kind, path)]))
    wait_for(lambda: _gate_checks(step, "/" + path) >= 3, timeout=30, what=f"{kind} gate checked 3 times")
    held = step.traffic()
    if kind == "confirm-promotion":
        assert held == {"podinfo-00001": 50, "podinfo-00002": 50}
        assert step.annotation() == "podinfo-00001"
    else:
        assert held == {"podinfo-00001": 100}
    step.cp.loadtester.open_gate("podinfo", ns)
    result = step.wait()
    assert result.code == 0, result.stderr
    assert step.annotation() == "podinfo-00002"
    halt = {
        "confirm-rollout": f"Halt podinfo.{ns} advancement waiting for approval {kind}-gate",
        "confirm-traffic-increase": (
            f"Halt podinfo.{ns} advancement waiting for traffic increase approval {kind}-gate"
        ),
        "confirm-promotion": f"Halt podinfo.{ns} advancement waiting for promotion approval {kind}-gate",
    }[kind]
    assert halt in step.events()


def test_rollback_gate_rolls_back_when_opened(step: Step) -> None:
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.1")
    step.start(canary_spec(ns, step_weight=5, max_weight=50, webhooks=[_gate("rollback", "rollback/check")]))
    wait_for(lambda: step.traffic().get("podinfo-00002", 0) >= 10, timeout=30, what="canary at 10%")
    step.cp.loadtester.open_gate("podinfo", ns, rollback=True)
    result = step.wait()
    assert result.code == 3, result.stderr
    assert result.results["reason"] == "manual-rollback"
    assert f"Rolling back podinfo.{ns} manual webhook invoked" in step.events()
    assert step.traffic() == {"podinfo-00001": 100}


# --------------------------------------------------------------------------- safety


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_analysis_restores_the_primary(step: Step, signum: int, code: int) -> None:
    step.deploy(f"{PODINFO}:6.0.1")
    step.start(canary_spec(step.namespace, interval="2s", max_weight=80))
    wait_for(lambda: step.traffic().get("podinfo-00002", 0) >= 20, timeout=30, what="canary at 20%")
    assert step.process is not None
    step.process.send_signal(signum)
    result = step.wait(timeout=30)
    assert result.code == code, result.stderr
    assert step.traffic() == {"podinfo-00001": 100}
    assert step.annotation() == "podinfo-00001"
    assert result.results["decision"] == "failed"
    assert result.results["reason"] == f"interrupted-{signal.Signals(signum).name.lower()}"
    assert "Traffic: 100% on podinfo-00001" in result.stderr


def test_prometheus_stopped_mid_analysis_exits_4_with_the_primary_restored(
    control_plane: ControlPlane, step: Step, tmp_path: Path
) -> None:
    private = Prometheus(
        workdir=tmp_path / "prometheus", targets=[control_plane.metrics_url.split("//")[1].split("/")[0]]
    )
    private.start()
    try:
        step.deploy(f"{PODINFO}:6.0.1")
        step.start(canary_spec(step.namespace, max_weight=90, step_weight=10, metricsServer=private.url))
        wait_for(lambda: step.traffic().get("podinfo-00002", 0) >= 30, timeout=30, what="canary at 30%")
        private.stop()
        result = step.wait(timeout=60)
    finally:
        private.stop()
    assert result.code == 4, result.stderr
    assert result.results["decision"] == "failed"
    assert result.results["reason"] == "metrics-provider-errors"
    assert step.traffic() == {"podinfo-00001": 100}
    assert any(m.startswith("Prometheus query failed") for m in step.events())


# --------------------------------------------------------------------------- MetricTemplate with basic auth


class BasicAuthProxy:
    """A tiny reverse proxy that demands HTTP basic auth before forwarding to the real Prometheus."""

    def __init__(self, upstream: str, *, username: str, password: str) -> None:
        expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.authorized = 0
        self.refused = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != expected:
                    proxy.refused += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="prometheus"')
                    self.end_headers()
                    return
                proxy.authorized += 1
                with urllib.request.urlopen(upstream + self.path, timeout=5) as answer:
                    body = answer.read()
                    status = answer.status
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("password", "code"), [("s3cret", 0), ("wrong", 2)])
def test_metric_template_with_basic_auth(step: Step, password: str, code: int) -> None:
    ns = step.namespace
    proxy = BasicAuthProxy(step.cp.prometheus_url, username="canary", password="s3cret")
    try:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "prom-auth", "namespace": ns},
            "stringData": {"username": "canary", "password": password},
        }
        status, body = step.cp.api.request("POST", f"/api/v1/namespaces/{ns}/secrets", body=secret)
        assert status == 201, body
        template = {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "error-rate", "namespace": ns},
            "spec": {
                "provider": {"type": "prometheus", "address": proxy.url, "secretRef": {"name": "prom-auth"}},
                "query": (
                    'sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"{{ namespace }}/{{ route }}",'
                    'envoy_response_code=~"5.*"}[{{ interval }}])) or vector(0)'
                ),
            },
        }
        metrics = [
            {
                "name": "error-rate",
                "templateRef": {"name": "error-rate"},
                "thresholdRange": {"max": 1},
                "interval": "30s",
            }
        ]
        step.deploy(f"{PODINFO}:6.0.1")
        events_before = step.events()
        result = step.run(canary_spec(ns, step_weight=25, metrics=metrics), template)
    finally:
        proxy.stop()
    assert result.code == code, result.stderr
    if code == 0:
        assert proxy.authorized >= 2 and proxy.refused == 0
        assert step.annotation() == "podinfo-00002"
    else:  # the preflight finds the refused credentials: a mistake no retry fixes, nothing written
        assert proxy.refused >= 1 and proxy.authorized == 0
        assert result.results["reason"] == "usage-error"
        assert f"MetricTemplate {ns}/error-rate: error response: Status 401" in result.stderr
        assert "the credentials were refused: check the secretRef" in result.stderr
        assert result.stderr.rstrip().endswith("Traffic: untouched. Exit 2.")
        assert step.annotation() == "podinfo-00001" and step.events() == events_before
        assert step.traffic() == {"podinfo-00001": 100}


# ---------------------------------------------------------------- --canary-ref and the Canary status


def test_canary_ref_reads_the_canary_and_keeps_its_status(step: Step) -> None:
    ns = step.namespace
    canary = yaml.safe_load(
        yaml.safe_dump(canary_spec(ns, step_weight=50)).replace("LOADTESTER", step.cp.loadtester_url + "/")
    )
    status, body = step.cp.api.request(
        "POST", f"/apis/flagger.app/v1beta1/namespaces/{ns}/canaries", body=canary
    )
    assert status == 201, body
    step.deploy(f"{PODINFO}:6.0.1")
    step.results_dir.mkdir(exist_ok=True)
    process = subprocess.run(
        [
            CANARY_STEP,
            "run",
            "--canary-ref",
            f"{ns}/podinfo",
            "--kubeconfig",
            str(step.cp.kubeconfig),
            "--metrics-server",
            step.cp.prometheus_url,
            "--report",
            str(step.report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout)["decision"] == "promoted"
    status, body = step.cp.api.request("GET", f"/apis/flagger.app/v1beta1/namespaces/{ns}/canaries/podinfo")
    assert status == 200, body
    assert body["status"]["phase"] == "Succeeded"
    promoted = [c for c in body["status"]["conditions"] if c["type"] == "Promoted"]
    assert promoted and promoted[0]["status"] == "True"


def test_a_rollback_that_fails_exits_5_and_shows_the_service(step: Step) -> None:
    """The primary revision disappears mid-analysis: no write can converge, so the restore fails."""
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.2-fault-5xx-60")
    step.start(canary_spec(ns, threshold=3), args=("--traffic-timeout", "3s"))
    wait_for(lambda: step.traffic().get("podinfo-00002", 0) >= 10, timeout=30, what="canary at 10%")
    step.cp.knative.delete("revisions", ns, "podinfo-00001")
    result = step.wait(timeout=60)
    assert result.code == 5, result.stderr
    assert result.results["decision"] == "failed"
    assert result.results["reason"] == "rollback-failed"
    assert "the Knative Service now:" in result.stderr
    assert "Traffic: possibly split" in result.stderr
    service = result.report["service"]
    assert service["primaryRevision"] == "podinfo-00001"
    assert any(t["revisionName"] == "podinfo-00002" and t["percent"] > 0 for t in service["statusTraffic"])


def test_an_unpinned_deploy_is_reported_plainly(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """Nothing pinned a primary before 6.0.1 went out: it already serves all traffic, nothing to analyse."""
    control_plane.create_podinfo(namespace)
    control_plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    control_plane.set_image(namespace, "podinfo", f"{PODINFO}:6.0.1")
    control_plane.wait_ready(namespace, "podinfo", "podinfo-00002")
    runner = Step(control_plane, namespace, tmp_path)
    result = runner.run(canary_spec(namespace))
    assert result.code == 0, result.stderr
    assert result.results["decision"] == "initialized"
    assert result.results["reason"] == "newest-revision-already-serving"
    assert "No analysis was possible: podinfo-00002 already served all traffic" in result.stderr
    assert runner.annotation() == "podinfo-00002"
    assert runner.traffic() == {"podinfo-00002": 100}

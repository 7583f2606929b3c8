"""What real Knative does to a run that the step must answer at once (issue 10, item 6), end to end.

Each case runs on the backend the session uses (`KNATIVE=real` for Knative Serving's own controller and
webhook, else the simulator, which reproduces each of them):

- a Service whose tag hosts Knative cannot name (`primary-<name>` over 63 characters) is refused before
  any write, by `validate` and by `run` (exit 2), and a router write to it ends at once on the Route's
  `ErrorConfig` instead of a 60 s wait;
- a Kubernetes Service `canary-<name>` the Route does not own (`NotOwned`): the first step fails at once
  (exit 4), with the primary restored;
- a canary revision whose container starts crashing after it was Ready (`ControlPlane.crash_revision`):
  rolled back at once, reason `canary-unhealthy` (exit 3);
- an admission webhook that refuses a traffic write (a real validating webhook on loopback, registered with
  the API server): its answer verbatim, naming it, exit 4; exit 5 when it refuses the rollback too.
"""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from step.clock import MonotonicClock
from step.errors import TrafficNotConverged
from step.kube import RetryPolicy, connect
from step.router.knative import KnativeRouter
from tests.cluster import ControlPlane, wait_for
from tests.e2e.test_run import CANARY_STEP, PODINFO, Step, canary_spec, pinned_step
from tests.kube_clients import opened, watching

pytestmark = [pytest.mark.cluster, pytest.mark.knative("real")]

LONG_NAME = "podinfo-" + "x" * 48  # 56 characters: `primary-<name>` has 64


@pytest.fixture(name="step")
def _step(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Step]:
    """podinfo 6.0.0 serving, pinned as the primary by a first run (as test_run.py's `step`)."""
    yield from pinned_step(control_plane, namespace, tmp_path, canary_spec(namespace, load=False, metrics=[]))


def _spec_for(namespace: str, name: str) -> dict[str, Any]:
    spec = canary_spec(namespace, load=False, metrics=[])
    spec["metadata"]["name"] = name
    spec["spec"]["targetRef"]["name"] = name
    return spec


def _weight(runner: Step, revision: str) -> int:
    return runner.traffic().get(revision, 0)


# --------------------------------------------------------------------------- tag hosts


def test_a_service_whose_tag_hosts_knative_cannot_name_is_refused_before_any_write(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    control_plane.create_podinfo(namespace, LONG_NAME)
    control_plane.wait_ready(namespace, LONG_NAME, f"{LONG_NAME}-00001")
    before = control_plane.get_service(namespace, LONG_NAME)
    runner = Step(control_plane, namespace, tmp_path)
    spec = _spec_for(namespace, LONG_NAME)

    result = runner.run(spec)

    assert result.code == 2, result.stderr
    assert result.results["reason"] == "invalid-spec"
    expected = (
        f"spec.targetRef.name: '{LONG_NAME}' has 56 characters: Knative names the host of traffic tag"
        f" 'primary' 'primary-{LONG_NAME}' (64 characters)"
    )
    assert expected in result.stderr, result.stderr
    assert "Expected a Service name of at most 55 characters" in result.stderr
    after = control_plane.get_service(namespace, LONG_NAME)
    assert after["spec"]["traffic"] == before["spec"]["traffic"]  # nothing written
    assert "flagger.app/primary-revision" not in (after["metadata"].get("annotations") or {})

    validate = subprocess.run(
        [CANARY_STEP, "validate", str(runner.write(spec))], capture_output=True, text=True, check=False
    )
    assert validate.returncode == 2, validate.stderr
    assert "spec.targetRef.name: " in validate.stdout and "at most 55 characters" in validate.stdout


def test_a_route_knative_refuses_with_error_config_fails_the_write_at_once(
    control_plane: ControlPlane, namespace: str
) -> None:
    """The router alone (the preflight would refuse this Service): Knative's ErrorConfig ends the wait."""
    control_plane.create_podinfo(namespace, LONG_NAME)
    control_plane.wait_ready(namespace, LONG_NAME, f"{LONG_NAME}-00001")
    kube = opened(
        connect(
            kubeconfig=str(control_plane.kubeconfig), context=None, retry=RetryPolicy(attempts=3, deadline=10)
        )
    )
    router = KnativeRouter(
        kube, namespace=namespace, name=LONG_NAME, clock=MonotonicClock(), converge_timeout=60.0
    )
    watching(router)  # its watch is stopped when the test ends
    started = time.monotonic()
    with pytest.raises(TrafficNotConverged) as raised:
        router.pin_primary(f"{LONG_NAME}-00001")
    took = time.monotonic() - started
    message = str(raised.value)
    assert "RoutesReady False, reason ErrorConfig" in message, message
    assert f'invalid domain name "primary-{LONG_NAME}.{namespace}.svc.cluster.local"' in message, message
    assert "must be no more than 63 characters" in message, message
    assert took < 20, f"the write took {took:.1f} s: it waited instead of reading the Route's refusal"


# --------------------------------------------------------------------------- NotOwned


def test_a_tag_host_service_the_route_does_not_own_fails_the_first_step_at_once(step: Step) -> None:
    ns = step.namespace
    placeholder = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "canary-podinfo", "namespace": ns},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
    }
    status, body = step.cp.api.request("POST", f"/api/v1/namespaces/{ns}/services", body=placeholder)
    assert status == 201, body
    step.deploy(f"{PODINFO}:6.0.1")

    result = step.run(canary_spec(ns, load=False, metrics=[]), timeout=90)

    assert result.code == 4, result.stderr
    assert result.results["reason"] == "infrastructure-error"
    assert "RoutesReady False, reason NotOwned" in result.stderr, result.stderr
    assert 'There is an existing placeholder Service \\"canary-podinfo\\"' in result.stderr or (
        'existing placeholder Service "canary-podinfo"' in result.stderr
    ), result.stderr
    assert result.report["durationSeconds"] < 30, "it waited for the write instead of reading the refusal"
    assert step.traffic() == {"podinfo-00001": 100}
    assert "Traffic: 100% on podinfo-00001" in result.stderr


# --------------------------------------------------------------------------- unhealthy after Ready


def test_a_canary_that_crashes_after_it_was_ready_is_rolled_back_at_once(step: Step) -> None:
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.1")
    step.cp.wait_ready(ns, "podinfo", "podinfo-00002")
    # A slow analysis (threshold 100): only the crash can end it before max weight.
    step.start(canary_spec(ns, interval="2s", threshold=100, load=False, metrics=[]))
    wait_for(lambda: _weight(step, "podinfo-00002") >= 20, timeout=60, what="the canary at 20 %")
    crashed_at = time.monotonic()
    step.cp.crash_revision(ns, "podinfo-00002", "panic: database unreachable")

    result = step.wait(timeout=90)

    took = time.monotonic() - crashed_at
    assert result.code == 3, result.stderr
    assert result.results["decision"] == "rolled-back"
    assert result.results["reason"] == "canary-unhealthy"
    assert step.traffic() == {"podinfo-00001": 100}
    assert step.annotation() == "podinfo-00001"
    events = step.events()
    unhealthy = [
        m for m in events if m.startswith(f"Rolling back podinfo.{ns} canary revision podinfo-00002")
    ]
    assert unhealthy and "no longer healthy" in unhealthy[0], events
    assert "ExitCode1" in unhealthy[0] or "database unreachable" in unhealthy[0], unhealthy
    assert events[-1] == f"Canary failed! Scaling down podinfo.{ns}"
    assert took < 30, f"{took:.1f} s from the crash to the rollback: it waited for a write to time out"


# --------------------------------------------------------------------------- an admission webhook's 400

WEBHOOK_NAME = "deny-canary.harness.canary-step.dev"


class DenyingWebhook:
    """A validating admission webhook on 127.0.0.1 (TLS with the API server's own serving certificate,
    whose SAN is 127.0.0.1), registered for updates of Knative Services in one namespace. It refuses a
    Service whose spec.traffic gives the canary tag `deny_from` % or more; `deny_all` refuses every update."""

    def __init__(self, plane: ControlPlane, namespace: str, *, deny_from: int) -> None:
        self.plane = plane
        self.namespace = namespace
        self.deny_from = deny_from
        self.deny_all = False
        self.denied = 0
        pki = plane.api.workdir / "pki"
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = review["request"]
                traffic = ((request.get("object") or {}).get("spec") or {}).get("traffic") or []
                canary = sum(int(t.get("percent") or 0) for t in traffic if t.get("tag") == "canary")
                response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
                if hook.deny_all or canary >= hook.deny_from:
                    hook.denied += 1
                    why = "every update is frozen" if hook.deny_all else f"canary at {canary}%"
                    response = {
                        "uid": request["uid"],
                        "allowed": False,
                        "status": {"code": 400, "message": f"change freeze for this namespace: {why}"},
                    }
                body = json.dumps(
                    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.config_name = f"deny-canary-{namespace}"
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.config_name},
            "webhooks": [
                {
                    "name": WEBHOOK_NAME,
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{self.server.server_address[1]}/validate",
                        "caBundle": base64.b64encode((pki / "ca.crt").read_bytes()).decode(),
                    },
                    "rules": [
                        {
                            "apiGroups": ["serving.knative.dev"],
                            "apiVersions": ["v1"],
                            "operations": ["UPDATE"],
                            "resources": ["services"],
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 5,
                }
            ],
        }
        status, body = plane.api.request(
            "POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", body=config
        )
        assert status == 201, body

    def stop(self) -> None:
        self.plane.api.request(
            "DELETE",
            f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{self.config_name}",
        )
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def denying_webhook(step: Step) -> Iterator[DenyingWebhook]:
    hook = DenyingWebhook(step.cp, step.namespace, deny_from=30)
    yield hook
    hook.stop()


@pytest.mark.parametrize("rollback_refused", [False, True], ids=["step-refused", "rollback-refused-too"])
def test_an_admission_webhook_refusal_is_reported_verbatim(
    step: Step, denying_webhook: DenyingWebhook, rollback_refused: bool
) -> None:
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.1")
    step.cp.wait_ready(ns, "podinfo", "podinfo-00002")
    spec = canary_spec(ns, interval="2s", threshold=100, load=False, metrics=[])
    if rollback_refused:
        step.start(spec)
        wait_for(lambda: _weight(step, "podinfo-00002") >= 20, timeout=60, what="the canary at 20 %")
        denying_webhook.deny_all = True  # the step to 30 % and the rollback after it are refused
        result = step.wait(timeout=90)
    else:
        result = step.run(spec, timeout=90)

    verbatim = (
        f'admission webhook "{WEBHOOK_NAME}" denied the request: change freeze for this namespace: '
        + ("every update is frozen" if rollback_refused else "canary at 30%")
    )
    assert verbatim in result.stderr, result.stderr
    assert (
        f'the admission webhook "{WEBHOOK_NAME}" refused patch services.serving.knative.dev' in result.stderr
    )
    assert "timed out" not in result.stderr and "within 60s" not in result.stderr
    assert denying_webhook.denied >= 1
    assert result.report["durationSeconds"] < 40
    if rollback_refused:
        assert result.code == 5, result.stderr
        assert result.results["reason"] == "rollback-failed"
        assert step.traffic() == {"podinfo-00001": 80, "podinfo-00002": 20}  # as the refusals left it
        assert "a person must look" in result.stderr.lower() or "possibly split" in result.stderr.lower()
    else:
        assert result.code == 4, result.stderr
        assert result.results["reason"] == "infrastructure-error"
        assert result.results["canary-weight"] == "20"
        assert step.traffic() == {"podinfo-00001": 100}  # the restore was allowed

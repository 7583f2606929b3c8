"""The real-Knative backend (issue 10): Knative Serving 1.17's own controller and webhook on the local plane.

In ``make test`` on the session's real plane (the ``knative`` marker, tests/conftest.py); with
``KNATIVE=sim`` they are reported as skipped, saying so.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.cluster import ControlPlane, condition, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.knative("real")]


@pytest.fixture
def real_plane(control_plane: ControlPlane) -> ControlPlane:
    if control_plane.backend != "real":
        pytest.skip("they check the real backend itself; KNATIVE=sim puts every test on the simulator")
    return control_plane


def test_knative_creates_the_deployment_and_the_service_becomes_ready(real_plane: ControlPlane) -> None:
    namespace = real_plane.create_namespace("real-podinfo")
    real_plane.create_podinfo(namespace)
    service = real_plane.wait_ready(namespace, "podinfo", "podinfo-00001", timeout=90)
    assert service["status"]["traffic"] == [
        {"latestRevision": True, "percent": 100, "revisionName": "podinfo-00001"}
    ]
    status, deployment = real_plane.api.request(
        "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/podinfo-00001-deployment"
    )
    assert status == 200, deployment
    owners = deployment["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o.get("controller")) for o in owners] == [
        ("Revision", "podinfo-00001", True)
    ]
    revision = real_plane.get_revision(namespace, "podinfo-00001")
    assert condition(revision, "Ready")["status"] == "True"
    # The router serves it once the KIngress is programmed.
    real_plane.wait_routed(namespace, "podinfo", service["status"]["traffic"], timeout=30)
    out = subprocess.run(
        ["curl", "-s", "-H", f"Host: podinfo.{namespace}", real_plane.router_url + "/version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    assert "6.0.0" in out.stdout, out


def test_the_webhook_refuses_traffic_summing_to_90_with_knatives_message(real_plane: ControlPlane) -> None:
    namespace = real_plane.create_namespace("real-webhook")
    body: dict[str, Any] = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "ninety", "namespace": namespace},
        "spec": {
            "template": {"spec": {"containers": [{"image": "ghcr.io/stefanprodan/podinfo:6.0.0"}]}},
            "traffic": [{"latestRevision": True, "percent": 90}],
        },
    }
    status, answer = real_plane.api.request(
        "POST", f"/apis/serving.knative.dev/v1/namespaces/{namespace}/services", body=body
    )
    assert status == 400, answer
    assert answer["message"].startswith(
        'admission webhook "validation.webhook.serving.knative.dev" denied the request: '
    ), answer
    assert "Traffic targets sum to 90, want 100: spec.traffic" in answer["message"], answer


def test_every_component_runs_and_stops(real_plane: ControlPlane) -> None:
    names = set(real_plane.real.processes)
    assert names == {
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "controller",
        "autoscaler-hpa",
        "webhook",
    }
    for name, process in real_plane.real.processes.items():
        assert process.poll() is None, name
    wait_for(lambda: len(real_plane.real.pids()) == len(names), timeout=5, what="all components running")

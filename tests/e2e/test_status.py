"""The Canary status and the results tell the truth on every path (issue 14, item 4), on the local
control plane through --canary-ref: after a promotion (Succeeded, canaryWeight 0, Promoted True) and
after SIGINT mid-analysis (Failed, canaryWeight 0, Promoted False, a message that says what happened,
so `kubectl wait --for=condition=Promoted=False` returns), and `canary-weight` is the weight the
Service actually had."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import ControlPlane, wait_for
from tests.e2e.test_run import CANARY_STEP, PODINFO, Step, canary_spec

pytestmark = pytest.mark.cluster


@pytest.fixture
def pinned(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Step]:
    """podinfo 6.0.0 serving, pinned as the primary by a first run (`initialized`)."""
    control_plane.create_podinfo(namespace)
    control_plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    runner = Step(control_plane, namespace, tmp_path)
    first = runner.run(canary_spec(namespace))
    assert first.code == 0, first.stderr
    yield runner


def _create_canary(step: Step, **spec: Any) -> None:
    ns = step.namespace
    canary = yaml.safe_load(
        yaml.safe_dump(canary_spec(ns, **spec)).replace("LOADTESTER", step.cp.loadtester_url + "/")
    )
    status, body = step.cp.api.request(
        "POST", f"/apis/flagger.app/v1beta1/namespaces/{ns}/canaries", body=canary
    )
    assert status == 201, body


def _status(step: Step) -> dict[str, Any]:
    ns = step.namespace
    status, body = step.cp.api.request("GET", f"/apis/flagger.app/v1beta1/namespaces/{ns}/canaries/podinfo")
    assert status == 200, body
    found: dict[str, Any] = body.get("status") or {}
    return found


def _command(step: Step) -> list[str]:
    return [
        CANARY_STEP,
        "run",
        "--canary-ref",
        f"{step.namespace}/podinfo",
        "--kubeconfig",
        str(step.cp.kubeconfig),
        "--metrics-server",
        step.cp.prometheus_url,
        "--scrape-interval",
        "1s",
        "--results-dir",
        str(step.results_dir),
        "--report",
        str(step.report),
    ]


def test_after_a_promotion_the_status_is_succeeded_with_canary_weight_0(pinned: Step) -> None:
    step = pinned
    _create_canary(step, step_weight=50)
    step.deploy(f"{PODINFO}:6.0.1")
    done = subprocess.run(_command(step), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    status = _status(step)
    assert (status["phase"], status["canaryWeight"]) == ("Succeeded", 0)
    (promoted,) = [c for c in status["conditions"] if c["type"] == "Promoted"]
    assert promoted["status"] == "True"
    assert (step.results_dir / "canary-weight").read_text() == "50"  # the last weight before promotion


def test_after_sigint_mid_analysis_the_status_is_failed_and_says_so(pinned: Step) -> None:
    step = pinned
    _create_canary(step, interval="2s", max_weight=80, step_weight=20)
    step.deploy(f"{PODINFO}:6.0.1")
    process = subprocess.Popen(_command(step), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: step.traffic().get("podinfo-00002", 0) >= 40, timeout=40, what="canary at 40%")
        reached = step.traffic().get("podinfo-00002", 0)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert step.traffic() == {"podinfo-00001": 100}
    status = _status(step)
    assert (status["phase"], status["canaryWeight"]) == ("Failed", 0), status
    (promoted,) = [c for c in status["conditions"] if c["type"] == "Promoted"]
    assert promoted["status"] == "False"
    assert promoted["message"] == (
        "Canary analysis stopped (interrupted by SIGINT), all traffic routed back to the primary revision."
    )
    results = json.loads(stdout)
    assert results["reason"] == "interrupted-sigint"
    assert int(results["canary-weight"]) >= reached  # what the Service had, not an earlier step

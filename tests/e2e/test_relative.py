"""The relative check end to end on the local control plane: a canary 40 % slower than the primary,
under an absolute threshold that passes it, is rolled back by request-duration-vs-primary.

Every revision of the namespace gets the same 200 ms (`DataPlane.set_fault`); the canary's image tag
adds 40 % (`-fault-latency-40pct`): mean durations of about 200 and 280 ms, p99s (interpolated in
Envoy's buckets) under the absolute 1000 ms.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import ControlPlane
from tests.cluster.dataplane import NO_FAULT, Fault
from tests.e2e.test_run import PODINFO, Step, canary_spec

pytestmark = pytest.mark.cluster

ABSOLUTE = {"name": "request-duration", "thresholdRange": {"max": 1000}, "interval": "10s"}
RELATIVE = {
    "name": "request-duration-vs-primary",
    "thresholdRange": {"max": 1.1},
    "interval": "10s",
    "templateVariables": {"step": "2s"},  # a rate over two of the harness's 1 s scrapes per sample
    "onNoData": "ignore",  # the canary's first seconds: too few samples is not a verdict
}


@pytest.fixture
def step(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Step]:
    control_plane.create_podinfo(namespace)
    control_plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    control_plane.dataplane.set_fault(namespace, Fault(latency_ms=200))
    runner = Step(control_plane, namespace, tmp_path)
    first = runner.run(canary_spec(namespace))
    assert first.code == 0, first.stderr
    yield runner
    control_plane.dataplane.set_fault(namespace, NO_FAULT)
    if runner.process is not None and runner.process.poll() is None:
        runner.process.kill()
        runner.process.wait()


def test_a_forty_percent_slower_canary_is_rolled_back_by_the_relative_check(step: Step) -> None:
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.2-fault-latency-40pct")
    summary = step.tmp / "summary.md"
    spec = canary_spec(
        ns, interval="2s", threshold=1, step_weight=5, metrics=[ABSOLUTE, RELATIVE], concurrency=10
    )
    result = step.run(spec, args=("--scrape-interval", "1s"), env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.code == 3, result.stderr
    assert result.results["reason"] == "failed-checks-threshold"
    assert step.traffic() == {"podinfo-00001": 100}
    events = step.events()
    assert any(m.startswith(f"Halt podinfo.{ns} advancement canary score 0 < 75") for m in events), events
    assert not any("advancement request duration" in m for m in events), events  # the absolute check passed
    checks = [c for t in result.report["ticks"] for c in t["checks"]]
    absolute = [c for c in checks if c["metric"] == "request-duration" and c["value"] is not None]
    assert absolute and all(c["verdict"] == "pass" for c in absolute)
    high = [c for c in checks if c.get("classification") == "High"]
    assert high and high[-1]["value"] > 1.1, high
    assert 'envoy_cluster_name=~"' + ns + '/podinfo-00001"' in high[-1]["primaryQuery"]
    assert "request-duration-vs-primary: canary median" in result.stderr
    assert "| request-duration-vs-primary | High |" in summary.read_text()

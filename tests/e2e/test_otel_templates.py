"""examples/podinfo-canary-otel.yaml's MetricTemplates (Knative 1.19+'s queue-proxy names) against the data
plane and a real Prometheus: `canary-step run` judges a 5xx canary with them and rolls it back, and each
template's query, rendered as `run` renders it, has a value for the canary revision."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from step.metrics.measure import render_metric
from step.spec.loader import bundle_from_objects
from step.spec.model import Metric, TemplateRef
from tests.cluster import ControlPlane
from tests.e2e.test_run import PODINFO, Step, canary_spec, pinned_step

pytestmark = pytest.mark.cluster

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "podinfo-canary-otel.yaml"


def _templates(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """The example's MetricTemplates, pointed at this run's Prometheus and namespace."""
    templates = []
    for doc in yaml.safe_load_all(EXAMPLE.read_text()):
        if doc["kind"] == "MetricTemplate":
            doc["metadata"]["namespace"] = namespace
            doc["spec"]["provider"]["address"] = plane.prometheus_url
            templates.append(doc)
    assert [t["metadata"]["name"] for t in templates] == [
        "queue-proxy-error-rate",
        "queue-proxy-p99-latency",
        "queue-proxy-p99-latency-v1-19",
    ]
    return templates


@pytest.fixture(name="step")
def _step(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Step]:
    yield from pinned_step(control_plane, namespace, tmp_path, canary_spec(namespace, load=False, metrics=[]))


def test_the_queue_proxy_templates_roll_back_a_5xx_canary_and_each_measures_it(step: Step) -> None:
    ns = step.namespace
    templates = _templates(step.cp, ns)
    step.deploy(f"{PODINFO}:6.0.2-fault-5xx-60")
    step.cp.wait_ready(ns, "podinfo", "podinfo-00002")
    metrics = [
        {"name": name, "templateRef": {"name": name}, "thresholdRange": {"max": limit}, "interval": "1m"}
        for name, limit in (("queue-proxy-error-rate", 1), ("queue-proxy-p99-latency", 500))
    ]
    canary = canary_spec(ns, threshold=2, metrics=metrics)

    result = step.run(*templates, canary)

    assert result.code == 3, result.stderr
    assert result.results["reason"] == "failed-checks-threshold"
    halts = [
        m for m in step.events() if m.startswith(f"Halt podinfo.{ns} advancement queue-proxy-error-rate")
    ]
    assert halts, step.events()
    assert step.traffic() == {"podinfo-00001": 100}

    quiet = canary_spec(ns, threshold=2, metrics=metrics, load=False)  # the same, without LOADTESTER
    bundle = bundle_from_objects([*templates, quiet], source="test", default_namespace=ns)
    values = {}
    for metric in (*bundle.canary.analysis.metrics, _metric("queue-proxy-p99-latency-v1-19")):
        rendered = render_metric(
            bundle.canary, metric, templates=bundle.metric_templates, canary_revision="podinfo-00002"
        )
        assert rendered.query is not None
        values[metric.name] = step.cp.prometheus.query_value(rendered.query)
    assert values["queue-proxy-error-rate"] is not None and 40 <= values["queue-proxy-error-rate"] <= 80
    assert values["queue-proxy-p99-latency"] is not None and 0 < values["queue-proxy-p99-latency"] < 500
    # Knative 1.19-1.20 record whole seconds: every fast request is in the first bucket (5 ms).
    assert (
        values["queue-proxy-p99-latency-v1-19"] is not None and values["queue-proxy-p99-latency-v1-19"] <= 5
    )


def _metric(template: str) -> Metric:
    return Metric(name=template, template_ref=TemplateRef(name=template), threshold_max=1000, interval="1m")

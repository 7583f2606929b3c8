"""The seed's Canary (examples/podinfo-canary.yaml), adapted to the local control plane.

Owns: one way for the demo and the benchmark to get the seed's Canary, read from the example itself so
the two never drift from it: the interval and threshold sped up as asked, the load test pointed at the
local load tester, and the same load also started by a pre-rollout hook so the canary has traffic from
its first step.
Must not: change the analysis beyond that (weights, metrics and thresholds stay the seed's).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SEED_CANARY = Path(__file__).resolve().parents[2] / "examples" / "podinfo-canary.yaml"


def seed_canary(
    namespace: str,
    *,
    loadtester_url: str,
    interval: str,
    threshold: int | None = None,
    load_seconds: int = 120,
    rate: int = 10,
) -> dict[str, Any]:
    """The seed's Canary in `namespace`, ticking every `interval`, its load test on `loadtester_url`."""
    canary: dict[str, Any] = copy.deepcopy(yaml.safe_load(SEED_CANARY.read_text()))
    canary["metadata"]["namespace"] = namespace
    analysis = canary["spec"]["analysis"]
    analysis["interval"] = interval
    if threshold is not None:
        analysis["threshold"] = threshold
    hey = f"hey -z {load_seconds}s -q {rate} -c 2 http://podinfo.{namespace}/"
    load_test = next(h for h in analysis["webhooks"] if h["name"] == "load-test")
    load_test["url"] = loadtester_url
    load_test["metadata"]["cmd"] = hey
    start = {"name": "load-start", "type": "pre-rollout", "url": loadtester_url, "metadata": {"cmd": hey}}
    analysis["webhooks"] = [start, *analysis["webhooks"]]
    return canary

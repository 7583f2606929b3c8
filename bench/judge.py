"""The relative judge's rates, measured on the local control plane at a 2 s interval (issue 12).

    .venv/bin/python bench/judge.py [--runs 20] [--scenarios detection,false-positives,incident]

Each run is the real `canary-step run` (a subprocess) on a fresh namespace: podinfo 6.0.0 pinned as
the primary, every revision given the same 200 ms (`DataPlane.set_fault`), then a new revision:

- detection: the canary's tag adds 40 % (`-fault-latency-40pct`); request-duration <= 1000 ms (passes
  it) and request-duration-vs-primary (max x1.1). Counted: rolled back by the score.
- false-positives: the canary is healthy (6.0.1), same metrics. Counted: promoted.
- incident: every revision answers 20 % 5xx (`Fault(error_percent=20)`), the canary is healthy.
  Twice: judged relatively (request-success-rate-vs-primary, min x0.99) — counted: promoted — and with
  the seed's absolute request-success-rate >= 99 — counted: rolled back.

Also printed per scenario: how many runs had at least one tick whose compared metrics had enough
samples to be classified (a run promoted on NoData alone would not have tested the judge), and how many
were rolled back with a High or Low classification (a rollback by the absolute check alone is not a
detection by the judge).

Must not: be a test (rates live here, not in the suite), or leave a process behind.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster import ControlPlane
from tests.cluster.dataplane import NO_FAULT, Fault
from tests.e2e.test_run import PODINFO, Step, canary_spec

DURATION_ABSOLUTE = {"name": "request-duration", "thresholdRange": {"max": 1000}, "interval": "10s"}
# 6 samples per revision, each a rate over its own 2 s (two of the harness's 1 s scrapes): independent.
SAMPLED = {"interval": "10s", "templateVariables": {"step": "2s"}, "onNoData": "ignore"}
DURATION_RELATIVE = {"name": "request-duration-vs-primary", "thresholdRange": {"max": 1.1}, **SAMPLED}
SUCCESS_RELATIVE = {"name": "request-success-rate-vs-primary", "thresholdRange": {"min": 0.99}, **SAMPLED}
SUCCESS_ABSOLUTE = {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}


@dataclass(frozen=True)
class Scenario:
    name: str
    image: str
    fault: Fault
    metrics: tuple[dict[str, Any], ...]
    expected: str  # the decision that counts as right


SCENARIOS = {
    "detection": (
        Scenario(
            "40 % slower canary, absolute 1000 ms + relative",
            f"{PODINFO}:6.0.2-fault-latency-40pct",
            Fault(latency_ms=200),
            (DURATION_ABSOLUTE, DURATION_RELATIVE),
            "rolled-back",
        ),
    ),
    "false-positives": (
        Scenario(
            "identical canary, absolute 1000 ms + relative",
            f"{PODINFO}:6.0.1",
            Fault(latency_ms=200),
            (DURATION_ABSOLUTE, DURATION_RELATIVE),
            "promoted",
        ),
    ),
    "incident": (
        Scenario(
            "incident (20 % 5xx everywhere), relative success rate",
            f"{PODINFO}:6.0.1",
            Fault(error_percent=20),
            (SUCCESS_RELATIVE,),
            "promoted",
        ),
        Scenario(
            "incident (20 % 5xx everywhere), seed's absolute success rate >= 99",
            f"{PODINFO}:6.0.1",
            Fault(error_percent=20),
            (SUCCESS_ABSOLUTE,),
            "rolled-back",
        ),
    ),
}


def one_run(plane: ControlPlane, scenario: Scenario, work: Path, index: int) -> tuple[str, bool, bool, float]:
    """(decision, whether any tick classified a compared metric, whether one was High or Low, seconds)."""
    namespace = plane.create_namespace(f"judge-{index}")
    plane.create_podinfo(namespace)
    plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    plane.dataplane.set_fault(namespace, scenario.fault)
    tmp = work / namespace
    tmp.mkdir()
    step = Step(plane, namespace, tmp)
    try:
        first = step.run(canary_spec(namespace))
        assert first.code == 0, first.stderr
        step.deploy(scenario.image)
        spec = canary_spec(
            namespace,
            interval="2s",
            threshold=1,
            step_weight=5,
            metrics=list(scenario.metrics),
            concurrency=10,
        )
        started = time.monotonic()
        result = step.run(spec, args=("--scrape-interval", "1s"), timeout=300)
        seconds = time.monotonic() - started
        ticks = result.report.get("ticks", [])
        judged = any(c.get("classification") in ("Pass", "High", "Low") for t in ticks for c in t["checks"])
        moved = any(c.get("classification") in ("High", "Low") for t in ticks for c in t["checks"])
        decision = result.results.get("decision", f"exit {result.code}")
        if decision != scenario.expected:  # say why, so a wrong decision can be looked into
            for tick in ticks:
                for check in tick["checks"]:
                    if check["verdict"] in ("fail", "error"):
                        weight = tick.get("canaryWeight")
                        print(f"  run {index} tick {tick.get('index')} at {weight}%: {check}", flush=True)
        return decision, judged, moved, seconds
    finally:
        plane.dataplane.set_fault(namespace, NO_FAULT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args(argv)
    chosen = [s for name in args.scenarios.split(",") for s in SCENARIOS[name]]
    index = 0
    with ControlPlane.start() as plane, tempfile.TemporaryDirectory(prefix="canary-step-judge-") as tmp:
        for scenario in chosen:
            decisions, judged, by_judge, seconds = [], 0, 0, []
            for _ in range(args.runs):
                index += 1
                decision, classified, moved, took = one_run(plane, scenario, Path(tmp), index)
                decisions.append(decision)
                judged += classified
                by_judge += decision == "rolled-back" and moved
                seconds.append(took)
            right = decisions.count(scenario.expected)
            print(
                f"{scenario.name}: {scenario.expected} {right}/{args.runs} "
                f"(decisions {sorted(set(decisions))}; runs with a classified tick {judged}/{args.runs}; "
                f"rolled back with the judge's High or Low {by_judge}/{args.runs}; "
                f"median run {sorted(seconds)[len(seconds) // 2]:.0f}s)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

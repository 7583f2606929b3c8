"""Blue/green through the canary tag, measured on the local control plane (the blue/green example).

Prints, for the real ``canary-step run`` at a 1 s interval by default:

- the promotion: from the canary's tag appearing in the Service's status (at 0 %) to 100 % on the canary,
  against the ideal (iterations x interval: the tick after the last iteration promotes);
- the rollback of a 60 % 5xx revision: from the tag appearing to the tag gone and 100 % on the primary,
  against the ideal ((threshold + 1) x interval: tick 1 counts iteration 1 without metrics, the next
  `threshold` ticks fail, the one after rolls back);
- the canary's largest share of status.traffic before the switch (must be 0), and Kubernetes API requests
  on an iteration tick and for the whole promotion (from the JSON report).

The example's smoke test becomes the load test, so the load starts on tick 1, as ``make bench`` starts the
seed's. The Service's status is sampled every 10 ms from this script's own client, so the times are what the
cluster shows, not what canary-step says about itself.

Must not: be a test (timing goals live here), or leave a process behind.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PODINFO, TrafficSampler, run_step  # noqa: E402
from tests.cluster import ControlPlane  # noqa: E402

EXAMPLE = ROOT / "examples" / "podinfo-bluegreen.yaml"

Sample = tuple[float, dict[str, int], set[str]]  # (monotonic, {revision: percent incl. 0}, tags)


class Sampler(TrafficSampler):
    """status.traffic every 10 ms: each revision's percent (0 % entries kept) and the tags present."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        super().__init__(plane, namespace)
        self.samples: list[Sample] = []  # type: ignore[assignment]

    def record(self, traffic: list[dict[str, Any]]) -> None:
        split: dict[str, int] = {}
        for t in traffic:
            split[t["revisionName"]] = split.get(t["revisionName"], 0) + int(t.get("percent") or 0)
        self.samples.append((time.monotonic(), split, {t["tag"] for t in traffic if t.get("tag")}))

    def first(self, predicate: Any, *, after: float = 0.0) -> float | None:
        return next((t for t, split, tags in self.samples if t >= after and predicate(split, tags)), None)


def bench_spec(namespace: str, *, loadtester: str, interval: float, threshold: int) -> dict[str, Any]:
    canary: dict[str, Any] = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    canary["metadata"]["namespace"] = namespace
    analysis = canary["spec"]["analysis"]
    analysis["interval"], analysis["threshold"] = f"{interval:g}s", threshold
    for hook in analysis["webhooks"]:
        hook["url"] = loadtester + ("/gate/approve" if hook.get("type") == "confirm-promotion" else "/")
        if hook["name"] in ("smoke-test", "load-test"):
            # as `make bench` does for the seed: the load starts on tick 1 (pre-rollout), not on tick 2
            hook["metadata"]["cmd"] = "hey -z 300s -q 20 -c 2 {{ canary_url }}/"
    return canary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=float, default=1.0, help="analysis interval, seconds")
    parser.add_argument("--threshold", type=int, default=2, help="failed checks before rollback (example: 2)")
    args = parser.parse_args(argv)
    interval, threshold = args.interval, args.threshold
    with ControlPlane.start() as plane, tempfile.TemporaryDirectory(prefix="canary-step-bench-bg-") as tmp:
        work = Path(tmp)
        ns = plane.create_namespace("bench-bg")
        plane.create_podinfo(ns)
        plane.wait_ready(ns, "podinfo", "podinfo-00001")
        canary = bench_spec(ns, loadtester=plane.loadtester_url, interval=interval, threshold=threshold)
        iterations = canary["spec"]["analysis"]["iterations"]
        spec = work / "canary.yaml"
        spec.write_text(yaml.safe_dump(canary))
        code, _, _, _ = run_step(plane, spec, work / "init.json")
        assert code == 0, "initialisation failed"

        def deploy(image: str, revision: str) -> None:
            plane.set_image(ns, "podinfo", f"{PODINFO}:{image}")
            plane.wait_service(
                ns, "podinfo", lambda s: (s.get("status") or {}).get("latestCreatedRevisionName") == revision
            )

        deploy("6.0.1", "podinfo-00002")
        with Sampler(plane, ns) as sampler:
            code, promote_wall, promote, _ = run_step(plane, spec, work / "promote.json")
        assert code == 0, f"promotion failed: exit {code}"
        tagged = sampler.first(lambda split, tags: "canary" in tags)
        done = sampler.first(lambda split, tags: split == {"podinfo-00002": 100})
        assert tagged is not None and done is not None
        before = [s.get("podinfo-00002", 0) for t, s, _ in sampler.samples if t < done]
        held = sum(1 for t in promote["ticks"] if any(c["verdict"] == "fail" for c in t["checks"]))
        iteration_ticks = [
            t["apiRequests"]
            for t in promote["ticks"][1:]
            if t["apiRequests"] is not None and any(" canary iteration " in e["message"] for e in t["events"])
        ]

        deploy("6.0.2-fault-5xx-60", "podinfo-00003")
        with Sampler(plane, ns) as sampler:
            code, rollback_wall, rollback, _ = run_step(plane, spec, work / "rollback.json")
        assert code == 3, f"rollback expected, got exit {code}"
        onset = sampler.first(lambda split, tags: "canary" in tags)
        assert onset is not None
        restored = sampler.first(lambda split, tags: split == {"podinfo-00002": 100}, after=onset)
        assert restored is not None
        during = [s.get("podinfo-00003", 0) for t, s, _ in sampler.samples if onset <= t <= restored]

    ideal_promotion, ideal_rollback = iterations * interval, (threshold + 1) * interval
    rows = [
        ("interval; iterations", f"{interval:g} s; {iterations}", ""),
        (
            "promotion: tag at 0 % -> 100 % on 6.0.1",
            f"{done - tagged:.2f} s",
            f"ideal {ideal_promotion:g} s ({iterations} iterations x {interval:g} s); "
            f"{((done - tagged) / ideal_promotion - 1) * 100:+.1f} %; {held} tick(s) failed a check",
        ),
        ("  canary's largest share before the switch", f"{max(before)} %", f"{len(before)} samples"),
        ("promotion: whole command", f"{promote_wall:.2f} s", ""),
        (
            "rollback: tag at 0 % -> tag gone, 100 % on the primary",
            f"{restored - onset:.2f} s",
            f"ideal {ideal_rollback:g} s ((threshold {threshold} + 1) x {interval:g} s); "
            f"{((restored - onset) / ideal_rollback - 1) * 100:+.1f} %",
        ),
        ("  canary's largest share meanwhile", f"{max(during)} %", f"{len(during)} samples"),
        ("rollback: whole command", f"{rollback_wall:.2f} s", f"{len(rollback['ticks'])} ticks"),
        (
            "API requests on an iteration tick",
            f"max {max(iteration_ticks)}",
            f"mean {statistics.mean(iteration_ticks):.1f} over {len(iteration_ticks)} ticks",
        ),
        (
            "API requests, whole promotion",
            str(promote["apiRequests"]["total"]),
            json.dumps(promote["apiRequests"]["byVerb"]),
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

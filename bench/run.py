"""``make bench``: the seed's scenario at a 1 s interval, measured on the local control plane.

Prints, for the real ``canary-step run`` (a subprocess, as a pipeline runs it):

- the promotion's wall time, from the canary's first traffic to 100 % on it as the Service's status shows
  it, against the ideal (weight steps x interval: 10, 20, 30, 40, 50, then promote = 5 intervals);
- the time from fault onset (the faulty canary's first traffic) to 100 % back on the primary, against the
  ideal ((threshold + 1) x interval: the threshold is checked at the start of the tick after the N-th
  failed check);
- Kubernetes API requests per tick (the adapters' request counter, per tick in the JSON report) and for
  the whole promotion;
- peak RSS of the canary-step process (``ru_maxrss`` from ``os.wait4`` on it);
- the Service's lease after a SIGKILL at a weight: how long the split goes without an owner once a rerun
  starts (its wait for the expired lease, against ``--lease-duration``) and until the rerun writes again.

The request figures include the lease: its renewal with the analysis record is one write per tick.

The Service's status is sampled every 10 ms by this script, from its own API client, so the times are
what the cluster shows, not what canary-step says about itself.

Must not: be a test (timing goals live here, not in the test suite), or leave a process behind.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster import PODINFO_IMAGE, ControlPlane
from tests.cluster.seed import seed_canary

PODINFO = PODINFO_IMAGE.rsplit(":", 1)[0]
CANARY_STEP = str(Path(sys.executable).with_name("canary-step"))


class TrafficSampler:
    """Samples the Service's status.traffic every 10 ms in a thread: (monotonic time, {revision: percent})."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TrafficSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.01):
            service = self.plane.get_service(self.namespace, "podinfo")
            self.record((service.get("status") or {}).get("traffic") or [])

    def record(self, traffic: list[dict[str, Any]]) -> None:
        """Keep one sample of status.traffic (a subclass may keep more of it)."""
        split: dict[str, int] = {}
        for t in traffic:
            if t.get("percent"):
                split[t["revisionName"]] = split.get(t["revisionName"], 0) + t["percent"]
        self.samples.append((time.monotonic(), split))

    def first(self, predicate: Any, *, after: float = 0.0) -> float | None:
        return next((t for t, split in self.samples if t >= after and predicate(split)), None)


def run_step(
    plane: ControlPlane, spec: Path, report: Path, *, extra: tuple[str, ...] = ()
) -> tuple[int, float, dict[str, Any], float]:
    """Run canary-step; (exit code, wall seconds, the JSON report, peak RSS in MB of that process)."""
    command = [
        CANARY_STEP,
        "run",
        str(spec),
        "--kubeconfig",
        str(plane.kubeconfig),
        "--metrics-server",
        plane.prometheus_url,
        "--scrape-interval",
        "1s",  # the harness's Prometheus scrapes every second: the no-data grace is as short as it can be
        "--report",
        str(report),
        *extra,
    ]
    log = report.with_suffix(".stderr")
    started = time.monotonic()
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    if code not in (0, 3):
        print(log.read_text(), file=sys.stderr)
    return code, wall, json.loads(report.read_text()), usage.ru_maxrss / 1024


def sigkill_then_rerun(
    plane: ControlPlane, namespace: str, spec: Path, work: Path, *, lease_seconds: int
) -> dict[str, Any]:
    """SIGKILL a promotion at 20 %, rerun it at once; what the rerun waited and when it moved traffic."""
    plane.set_image(namespace, "podinfo", f"{PODINFO}:6.0.3")
    plane.wait_service(
        namespace,
        "podinfo",
        lambda s: (s.get("status") or {}).get("latestCreatedRevisionName") == "podinfo-00004",
    )
    base = [CANARY_STEP, "run", str(spec), "--kubeconfig", str(plane.kubeconfig)]
    base += ["--metrics-server", plane.prometheus_url, "--lease-duration", f"{lease_seconds}s"]
    with TrafficSampler(plane, namespace) as sampler:
        killed = subprocess.Popen(
            [*base, "--report", str(work / "killed.json")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not sampler.first(lambda s: s.get("podinfo-00004", 0) >= 20):
            assert time.monotonic() < deadline and killed.poll() is None, "the canary never reached 20 %"
            time.sleep(0.01)
        killed.kill()
        killed.wait()
        killed_at = time.monotonic()
        split = next(s for t, s in reversed(sampler.samples) if t <= killed_at)
        code, wall, report, _ = run_step(
            plane, spec, work / "rerun.json", extra=("--lease-duration", f"{lease_seconds}s")
        )
        moved = sampler.first(lambda s: s != split, after=killed_at)
    assert code == 0, f"the rerun did not promote: exit {code}"
    return {
        "split": split,
        "waited": report["lease"]["waitedSeconds"],
        "moved": None if moved is None else moved - killed_at,
        "resumedAt": (report["lease"].get("interrupted") or {}).get("canaryWeight"),
        "wall": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=float, default=1.0, help="analysis interval, seconds")
    parser.add_argument("--threshold", type=int, default=15, help="failed checks before rollback (seed: 15)")
    args = parser.parse_args(argv)
    interval, threshold = args.interval, args.threshold

    with ControlPlane.start() as plane, tempfile.TemporaryDirectory(prefix="canary-step-bench-") as tmp:
        work = Path(tmp)
        namespace = plane.create_namespace("bench")
        plane.create_podinfo(namespace)
        plane.wait_ready(namespace, "podinfo", "podinfo-00001")
        spec = work / "canary.yaml"
        spec.write_text(
            yaml.safe_dump(
                seed_canary(
                    namespace,
                    loadtester_url=plane.loadtester_url + "/",
                    interval=f"{interval:g}s",
                    threshold=threshold,
                    load_seconds=300,
                    rate=20,
                )
            )
        )
        code, _, _, rss_init = run_step(plane, spec, work / "init.json")
        assert code == 0, "initialisation failed"

        # --- promotion of 6.0.1
        plane.set_image(namespace, "podinfo", f"{PODINFO}:6.0.1")
        plane.wait_service(
            namespace,
            "podinfo",
            lambda s: (s.get("status") or {}).get("latestCreatedRevisionName") == "podinfo-00002",
        )
        with TrafficSampler(plane, namespace) as sampler:
            code, promote_wall, promote, rss_promote = run_step(plane, spec, work / "promote.json")
        assert code == 0, f"promotion failed: exit {code}"
        start = sampler.first(lambda s: s.get("podinfo-00002", 0) > 0)
        done = sampler.first(lambda s: s == {"podinfo-00002": 100})
        assert start is not None and done is not None
        promotion = done - start
        steps = len({t["canaryWeight"] for t in promote["ticks"] if 0 < t["canaryWeight"] < 100})
        ideal_promotion = steps * interval
        held = sum(1 for t in promote["ticks"] if any(c["verdict"] == "fail" for c in t["checks"]))

        per_tick = [t["apiRequests"] for t in promote["ticks"] if t["apiRequests"] is not None]
        advancing = [
            t["apiRequests"]
            for t in promote["ticks"][1:]
            if t["apiRequests"] is not None and any(e["message"].startswith("Advance ") for e in t["events"])
        ]
        total_requests = promote["apiRequests"]["total"]

        # --- rollback of a faulty 6.0.2
        plane.set_image(namespace, "podinfo", f"{PODINFO}:6.0.2-fault-5xx-60")
        plane.wait_service(
            namespace,
            "podinfo",
            lambda s: (s.get("status") or {}).get("latestCreatedRevisionName") == "podinfo-00003",
        )
        with TrafficSampler(plane, namespace) as sampler:
            code, rollback_wall, rollback, rss_rollback = run_step(plane, spec, work / "rollback.json")
        assert code == 3, f"rollback expected, got exit {code}"
        onset = sampler.first(lambda s: s.get("podinfo-00003", 0) > 0)
        assert onset is not None
        restored = sampler.first(lambda s: s == {"podinfo-00002": 100}, after=onset)
        assert restored is not None
        to_primary = restored - onset
        ideal_rollback = (threshold + 1) * interval

        # --- the lease: SIGKILL a promotion of 6.0.3 at 20 %, rerun at once
        lease_seconds = 5
        kill = sigkill_then_rerun(plane, namespace, spec, work, lease_seconds=lease_seconds)

    peak_rss_mb = max(rss_init, rss_promote, rss_rollback)
    rows = [
        ("interval", f"{interval:g} s", ""),
        (
            "promotion: first canary traffic -> 100 % on 6.0.1",
            f"{promotion:.2f} s",
            f"ideal {ideal_promotion:g} s ({steps} steps x {interval:g} s); "
            f"{(promotion / ideal_promotion - 1) * 100:+.1f} %",
        ),
        (
            "  ticks that held the weight on a failed check",
            str(held),
            f"ideal with them {(steps + held) * interval:g} s; "
            f"{(promotion / ((steps + held) * interval) - 1) * 100:+.1f} %",
        ),
        ("promotion: whole command (process start to exit)", f"{promote_wall:.2f} s", ""),
        (
            "rollback: fault onset -> 100 % on the primary",
            f"{to_primary:.2f} s",
            f"ideal {ideal_rollback:g} s ((threshold {threshold} + 1) x {interval:g} s); "
            f"{(to_primary / ideal_rollback - 1) * 100:+.1f} %",
        ),
        (
            "rollback: ticks",
            str(len(rollback["ticks"])),
            "verdicts: "
            + " ".join(
                "/".join(c["verdict"] for c in t["checks"]) or f"{t['phase']}@{t['canaryWeight']}"
                for t in rollback["ticks"]
            ),
        ),
        ("rollback: whole command", f"{rollback_wall:.2f} s", ""),
        (
            "API requests on a tick that advances the weight",
            f"max {max(advancing)}",
            f"target <= 3 incl. the lease renewal; mean {statistics.mean(advancing):.1f} over"
            f" {len(advancing)} ticks (first tick excluded: {per_tick[0]}, includes start-up reads, the"
            " lease and the watch)",
        ),
        (
            "API requests, whole promotion",
            str(total_requests),
            "target <= 30; " + json.dumps(promote["apiRequests"]["byVerb"]),
        ),
        (
            "lease: SIGKILL at a weight, rerun at once: its wait",
            f"{kill['waited']:.2f} s",
            f"lease duration {lease_seconds} s; split at the kill {json.dumps(kill['split'])};"
            f" resumed at {kill['resumedAt']} %",
        ),
        (
            "  kill -> the rerun's first traffic write",
            "-" if kill["moved"] is None else f"{kill['moved']:.2f} s",
            f"the rerun promoted; whole rerun {kill['wall']:.2f} s",
        ),
        ("peak RSS of canary-step", f"{peak_rss_mb:.1f} MB", "max ru_maxrss of the three runs (os.wait4)"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: the seed's story on the local control plane, told as it happens.

Owns the demo: it starts a :class:`tests.cluster.ControlPlane`, creates namespace ``test`` with podinfo
6.0.0, then runs the real ``canary-step run`` three times with the seed's Canary (sped up to a 2 s
interval): once to pin podinfo-00001 as the primary, once after deploying 6.0.1 (promoted), and once
after deploying a faulty 6.0.2 that answers 60 % of requests with 500 (rolled back). canary-step's own
stderr (one line per tick) streams through; between the runs the demo prints the Service's traffic.

Must not: contain product logic (it only drives the CLI and the harness), or leave a process behind.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.cluster import PODINFO_IMAGE, SEED_NAMESPACE, ControlPlane
from tests.cluster.seed import seed_canary

PODINFO = PODINFO_IMAGE.rsplit(":", 1)[0]
CANARY_STEP = str(Path(sys.executable).with_name("canary-step"))
INTERVAL = "2s"


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def traffic(plane: ControlPlane, namespace: str) -> str:
    service = plane.get_service(namespace, "podinfo")
    split = [
        f"{t['percent']}% {t['revisionName']}" + (f" (tag {t['tag']})" if t.get("tag") else "")
        for t in (service.get("status") or {}).get("traffic") or []
    ]
    primary = (service["metadata"].get("annotations") or {}).get("flagger.app/primary-revision")
    return f"traffic: {', '.join(split) or '-'}; primary-revision annotation: {primary}"


def run_step(plane: ControlPlane, spec: Path, workdir: Path, label: str) -> int:
    command = [
        CANARY_STEP,
        "run",
        str(spec),
        "--kubeconfig",
        str(plane.kubeconfig),
        "--metrics-server",
        plane.prometheus_url,
        "--results-dir",
        str(workdir / label),
        "--report",
        str(workdir / f"{label}.json"),
    ]
    say(f"canary-step run {spec.name}  ({label})")
    started = time.monotonic()
    completed = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
    decision = (workdir / label / "decision").read_text()
    print(
        f"    exit {completed.returncode}, decision {decision}, {time.monotonic() - started:.1f} s; "
        f"results in {workdir / label}, report {workdir / label}.json",
        flush=True,
    )
    return completed.returncode


def main() -> int:
    say("starting the local control plane (kube-apiserver + etcd, Knative simulator, data plane, Prometheus)")
    workdir = Path(tempfile.mkdtemp(prefix="canary-step-demo-"))  # kept: the reports are worth reading
    with ControlPlane.start() as plane:
        print(f"    ready in {plane.started_in:.1f} s; kubeconfig {plane.kubeconfig}", flush=True)
        namespace = plane.create_namespace(SEED_NAMESPACE)
        plane.create_podinfo(namespace)
        plane.wait_ready(namespace, "podinfo", "podinfo-00001")
        say(f"podinfo 6.0.0 is serving in namespace {namespace}; {traffic(plane, namespace)}")
        spec = workdir / "podinfo-canary.yaml"
        spec.write_text(
            yaml.safe_dump(
                seed_canary(
                    namespace, loadtester_url=plane.loadtester_url + "/", interval=INTERVAL, threshold=5
                )
            )
        )

        codes = [run_step(plane, spec, workdir, "1-initialize")]
        print(f"    {traffic(plane, namespace)}", flush=True)

        say(f"deploying {PODINFO}:6.0.1 (a new revision, podinfo-00002)")
        plane.set_image(namespace, "podinfo", f"{PODINFO}:6.0.1")
        codes.append(run_step(plane, spec, workdir, "2-promote-6.0.1"))
        print(f"    {traffic(plane, namespace)}", flush=True)

        say(f"deploying {PODINFO}:6.0.2, which answers 60 % of requests with HTTP 500 (podinfo-00003)")
        plane.set_image(namespace, "podinfo", f"{PODINFO}:6.0.2-fault-5xx-60")
        codes.append(run_step(plane, spec, workdir, "3-rollback-6.0.2"))
        print(f"    {traffic(plane, namespace)}", flush=True)

    expected = [0, 0, 3]
    say(f"exit codes {codes} (expected {expected}: initialised, promoted, rolled back); reports in {workdir}")
    return 0 if codes == expected else 1


if __name__ == "__main__":
    sys.exit(main())

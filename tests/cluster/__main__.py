"""``python -m tests.cluster`` (``make cluster``): start the local control plane, print how to reach it, wait.

Owns the manual entry point: it starts a :class:`tests.cluster.ControlPlane`, creates the seed namespace
``test`` with the seed's podinfo Service (unless ``--no-seed``), prints the kubeconfig path and the URLs on
stdout, then waits for Ctrl-C or SIGTERM and tears everything down. The last line it prints before waiting
is ``ready {json}`` with the URLs and the child process ids, for scripts and for the teardown test.

Must not: run an analysis (that is the product), or leave a process behind.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from tests.cluster import BACKENDS, PODINFO_IMAGE, SEED_NAMESPACE, ControlPlane


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="keep state here (default: a temp dir)")
    parser.add_argument("--ready-delay", type=float, default=None, help="seconds until a revision is Ready")
    parser.add_argument("--no-seed", action="store_true", help="do not create namespace test and podinfo")
    parser.add_argument(
        "--knative",
        choices=BACKENDS,
        default=os.environ.get("KNATIVE") or "sim",
        help="Knative's simulator or the real Knative Serving (default: $KNATIVE, else sim)",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    # Installed before the control plane starts, so the API server module leaves these signals to us.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)

    plane = ControlPlane.start(args.workdir, ready_delay=args.ready_delay, knative=args.knative)
    try:
        if not args.no_seed:
            plane.create_namespace(SEED_NAMESPACE)
            plane.create_podinfo(SEED_NAMESPACE, "podinfo", PODINFO_IMAGE)
            plane.wait_ready(SEED_NAMESPACE, "podinfo", timeout=30.0 if args.knative == "sim" else 90.0)
        print(f"control plane up in {plane.started_in:.1f} s ({plane.timings})", file=sys.stderr)
        print(f"kubeconfig:     {plane.kubeconfig}")
        print(f"api server:     {plane.api.url}")
        print(f"router:         {plane.router_url}   (curl -H 'Host: podinfo.test' {plane.router_url}/)")
        print(f"prometheus:     {plane.prometheus_url}")
        print(f"loadtester:     {plane.loadtester_url}")
        print(f"metrics:        {plane.metrics_url}")
        print(f"try:            kubectl --kubeconfig {plane.kubeconfig} get ksvc,rev -n {SEED_NAMESPACE}")
        ready = {
            "knative": plane.backend,
            "kubeconfig": str(plane.kubeconfig),
            "router_url": plane.router_url,
            "prometheus_url": plane.prometheus_url,
            "loadtester_url": plane.loadtester_url,
            "pids": plane.pids(),
            "started_in": round(plane.started_in, 2),
        }
        print("ready " + json.dumps(ready), flush=True)
        print("Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop.wait(3600):
            pass
    finally:
        started = time.monotonic()
        plane.stop()
        stops = {key: value for key, value in plane.timings.items() if key.startswith("stop")}
        print(f"stopped in {time.monotonic() - started:.1f} s {stops}", file=sys.stderr, flush=True)
    return 128 + received[0] if received and received[0] != signal.SIGINT else 0


if __name__ == "__main__":
    sys.exit(main())

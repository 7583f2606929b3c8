"""``make bench-flagger``: Flagger v1.44 and canary-step side by side on the same control plane, measured.

The same three scenarios run at once for both, on identical podinfo Knative Services in two namespaces
(``vs-flagger``, watched by a Flagger controller; ``vs-step``, run by ``canary-step run``), with the seed's
Canary at a 10 s interval (Flagger's floor), the same Prometheus and the same load tester:

1. **promotion**: podinfo 6.0.1 deployed; promoted;
2. **rollback**: 6.0.2 answering 60 % of requests with 500 deployed; rolled back at the threshold;
3. **newer revision mid-analysis**: 6.0.3 deployed; once its canary has 20 % of the traffic, 6.0.4 is
   deployed; the analysis restarts on it and promotes it.

Before them each side initialises its Service (Flagger on the Canary's creation; canary-step with a first
run), and the benchmark waits until Flagger's Canary has settled (it reports what Flagger does meanwhile).

Printed, side by side: API requests per client (counted from kube-apiserver's audit log, by user: each
client has its own ServiceAccount token) per tick of each kind and per scenario; the time from the new
revision to 100 % promoted and from fault onset to 100 % on the primary, in seconds and intervals, as a
watcher of the Services saw it; the peak RSS of each process; then, per scenario, the sequence of
traffic states the watcher saw and the Events each wrote, and the Revisions each namespace has at the end
(with their images).

Backend: real Knative Serving (``tests.cluster.knative_real``) when its binaries are built and the run
is root, else the simulator; ``--knative`` forces one. The output says which.

Must not: be a test (it asserts no goal), copy anything of Flagger's (it runs the binary that
``tests.cluster.flagger_binaries`` builds), or leave a process behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster import PODINFO_IMAGE, ControlPlane
from tests.cluster import flagger_audit as audit
from tests.cluster.flagger import FLAGGER_USER, FlaggerController
from tests.cluster.flagger_binaries import FLAGGER_VERSION
from tests.cluster.flagger_binaries import ensure as ensure_flagger
from tests.cluster.knative_sim import Informer, api_client_for, close_api_client
from tests.cluster.seed import seed_canary

PODINFO = PODINFO_IMAGE.rsplit(":", 1)[0]
CANARY_STEP = str(Path(sys.executable).with_name("canary-step"))
FLAGGER_NS, STEP_NS = "vs-flagger", "vs-step"
# ``--step-ref REF``: run canary-step from ``git archive REF step`` in the work directory rather than the
# editable install (whose import finder wins over sys.path): a shared working tree may be mid-edit.
STEP_LAUNCHER = (
    "import sys; source = sys.argv.pop(1); "
    "sys.meta_path = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '') "
    "and 'editable' not in type(f).__module__]; "
    "sys.path.insert(0, source); sys.argv[0] = 'canary-step'; from step.cli import main; sys.exit(main())"
)
STEP_ACCOUNT = "canary-step"
STEP_USER = f"system:serviceaccount:{STEP_NS}:{STEP_ACCOUNT}"
CANARIES = "/apis/flagger.app/v1beta1/namespaces/{ns}/canaries"
SETTLED_PHASES = ("Initialized", "Succeeded", "Failed")

Split = dict[str, int]


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ the watcher


@dataclass
class Sample:
    t: float  # epoch seconds
    latest: str
    split: Split
    primary: str


class Watcher:
    """Watches both namespaces' Services (one informer) and Revisions; keeps every distinct state seen."""

    def __init__(self, plane: ControlPlane) -> None:
        self._client = api_client_for(plane.kubeconfig)
        self.samples: dict[str, list[Sample]] = {FLAGGER_NS: [], STEP_NS: []}
        self.images: dict[tuple[str, str], str] = {}  # (namespace, revision) -> image
        self.created: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._services = Informer(self._client, "services", self._on_service)
        self._revisions = Informer(self._client, "revisions", self._on_revision)

    def __enter__(self) -> Watcher:
        self._revisions.start()
        self._services.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._services.stop()
        self._revisions.stop()
        close_api_client(self._client)

    def _on_revision(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if kind == "DELETED" or meta["namespace"] not in self.samples:
            return
        containers = (obj.get("spec") or {}).get("containers") or [{}]
        with self._lock:
            self.images[(meta["namespace"], meta["name"])] = containers[0].get("image", "?")
            self.created.setdefault((meta["namespace"], meta["name"]), time.time())

    def _on_service(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if kind == "DELETED" or meta.get("name") != "podinfo" or meta["namespace"] not in self.samples:
            return
        status = obj.get("status") or {}
        split: Split = {}
        for target in status.get("traffic") or []:
            if target.get("percent"):
                name = target.get("revisionName", "?")
                split[name] = split.get(name, 0) + target["percent"]
        sample = Sample(
            t=time.time(),
            latest=status.get("latestCreatedRevisionName", ""),
            split=split,
            primary=(meta.get("annotations") or {}).get("flagger.app/primary-revision", ""),
        )
        with self._lock:
            seen = self.samples[meta["namespace"]]
            if not seen or (seen[-1].latest, seen[-1].split, seen[-1].primary) != (
                sample.latest,
                sample.split,
                sample.primary,
            ):
                seen.append(sample)

    def image_of(self, namespace: str, revision: str) -> str:
        with self._lock:
            return self.images.get((namespace, revision), "?")

    def first(
        self, namespace: str, predicate: Callable[[Sample], bool], *, after: float = 0.0
    ) -> float | None:
        with self._lock:
            samples = list(self.samples[namespace])
        return next((s.t for s in samples if s.t >= after and predicate(s)), None)

    def wait(
        self, namespace: str, predicate: Callable[[Sample], bool], *, after: float, timeout: float, what: str
    ) -> float:
        deadline = time.monotonic() + timeout
        while (found := self.first(namespace, predicate, after=after)) is None:
            if time.monotonic() > deadline:
                with self._lock:
                    last = self.samples[namespace][-1:] if self.samples[namespace] else []
                raise TimeoutError(f"{namespace}: {what}: not within {timeout:.0f} s; last seen {last}")
            time.sleep(0.05)  # poll interval of a condition wait with a deadline
        return found

    def on_image(self, namespace: str, image: str) -> Callable[[Sample], bool]:
        """All traffic on revisions of ``image``."""
        return lambda s: bool(s.split) and all(self.image_of(namespace, r) == image for r in s.split)

    def some_on_image(self, namespace: str, image: str, at_least: int = 1) -> Callable[[Sample], bool]:
        return lambda s: (
            sum(p for r, p in s.split.items() if self.image_of(namespace, r) == image) >= at_least
        )

    def states(self, namespace: str, start: float, end: float) -> list[str]:
        """The distinct traffic states seen in ``[start, end]``: ``rev:percent``, revisions by number."""
        with self._lock:
            samples = list(self.samples[namespace])
        before = [s for s in samples if s.t < start][-1:]
        shown: list[str] = []
        for sample in [*before, *(s for s in samples if start <= s.t <= end)]:
            text = " ".join(f"{r.rsplit('-', 1)[-1]}:{p}" for r, p in sorted(sample.split.items())) or "-"
            if not shown or shown[-1] != text:
                shown.append(text)
        return shown


# ------------------------------------------------------------------------------------------ the two sides


@dataclass
class Outcome:
    scenario: str
    side: str
    start: float  # the image change (epoch s)
    end: float  # the side's decision seen done (epoch s)
    result: str
    seconds: float | None = None  # new revision (or fault onset) -> 100 % promoted (or back on the primary)
    detail: str = ""


@dataclass
class Side:
    name: str
    namespace: str
    user: str
    plane: ControlPlane
    watcher: Watcher
    interval: float
    peak_rss_mb: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)

    def deploy(self, image: str) -> tuple[float, str]:
        """Set the image; (time of the change, the new revision's name once created)."""
        before = self.plane.get_service(self.namespace)["status"].get("latestCreatedRevisionName")
        changed = time.time()
        self.plane.set_image(self.namespace, "podinfo", image)
        found = self.watcher.wait(
            self.namespace,
            lambda s: s.latest != before and self.watcher.image_of(self.namespace, s.latest) == image,
            after=changed,
            timeout=30,
            what=f"a revision of {image}",
        )
        del found
        latest = self.plane.get_service(self.namespace)["status"]["latestCreatedRevisionName"]
        return changed, latest


class FlaggerSide(Side):
    def canary(self) -> dict[str, Any]:
        status, body = self.plane.api.request("GET", CANARIES.format(ns=self.namespace) + "/podinfo")
        return body if status == 200 else {}

    def phase(self) -> str:
        return str((self.canary().get("status") or {}).get("phase", ""))

    def settle(self, *, since: float, timeout: float) -> list[str]:
        """Wait until the Canary's phase is settled and stays so for 2.5 intervals; the phases seen."""
        phases: list[str] = []
        stable_since = time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            phase = self.phase()
            if not phases or phases[-1] != phase:
                phases.append(phase)
                stable_since = time.monotonic()
            if phase in SETTLED_PHASES and time.monotonic() - stable_since >= 2.5 * self.interval:
                return phases
            time.sleep(0.25)  # poll interval of a condition wait with a deadline
        raise TimeoutError(f"Flagger's Canary did not settle within {timeout:.0f} s (phases {phases})")

    def wait_done(self, terminal: str, *, since: float, timeout: float) -> float:
        """Wait for the Canary to leave its settled phase and reach ``terminal``; when it did."""
        moved = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            phase = self.phase()
            moved = moved or phase not in SETTLED_PHASES
            if moved and phase in SETTLED_PHASES:
                if phase != terminal:
                    raise AssertionError(f"Flagger ended {phase}, expected {terminal}")
                return time.time()
            time.sleep(0.1)  # poll interval of a condition wait with a deadline
        raise TimeoutError(f"Flagger's Canary did not reach {terminal} within {timeout:.0f} s")


@dataclass
class StepSide(Side):
    spec: Path = Path()
    kubeconfig: Path = Path()
    workdir: Path = Path()
    source: Path | None = None
    launched: list[float] = field(default_factory=list)  # when each run's process was started

    def start_run(self, label: str) -> tuple[subprocess.Popen[bytes], list[Any]]:
        self.launched.append(time.time())
        launcher = (
            [CANARY_STEP] if self.source is None else [sys.executable, "-c", STEP_LAUNCHER, str(self.source)]
        )
        command = [
            *launcher,
            "run",
            str(self.spec),
            "--kubeconfig",
            str(self.kubeconfig),
            "--metrics-server",
            self.plane.prometheus_url,
            "--scrape-interval",
            "1s",
            "--report",
            str(self.workdir / f"{label}.json"),
        ]
        stderr = (self.workdir / f"{label}.stderr").open("w")
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        result: list[Any] = []

        def reap() -> None:
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            stderr.close()
            self.peak_rss_mb = max(self.peak_rss_mb, usage.ru_maxrss / 1024)
            result.append(time.time())

        threading.Thread(target=reap, daemon=True).start()
        return process, result

    def run(self, label: str, *, timeout: float) -> tuple[int, float]:
        process, ended = self.start_run(label)
        deadline = time.monotonic() + timeout
        while not ended:
            if time.monotonic() > deadline:
                process.kill()
                raise TimeoutError(f"canary-step run ({label}) did not end within {timeout:.0f} s")
            time.sleep(0.1)  # poll interval of a condition wait with a deadline
        return int(process.returncode), float(ended[0])


# ------------------------------------------------------------------------------------------ the scenarios


CONVERGE_S = 30.0  # a decision's traffic write shows in status.traffic within this


def converged(side: Side, predicate: Callable[[Sample], bool], *, after: float) -> float | None:
    """When the watcher saw ``predicate`` hold after ``after``, waiting for it: a controller may mark its
    Canary Failed or Succeeded before Knative's status shows the traffic it wrote."""
    try:
        return side.watcher.wait(side.namespace, predicate, after=after, timeout=CONVERGE_S, what="converged")
    except TimeoutError:
        return None


def promotion(side: Side, image: str, scenario: str, *, timeout: float) -> Outcome:
    changed, revision = side.deploy(image)
    if isinstance(side, StepSide):
        code, end = side.run(scenario, timeout=timeout)
        result = {0: "promoted", 3: "rolled back"}.get(code, f"exit {code}")
    else:
        assert isinstance(side, FlaggerSide)
        end = side.wait_done("Succeeded", since=changed, timeout=timeout)
        result = "Succeeded"
    created = side.watcher.first(side.namespace, lambda s: s.latest == revision, after=changed) or changed
    done = converged(side, side.watcher.on_image(side.namespace, image), after=changed)
    end = max(end, done or end)
    return Outcome(scenario, side.name, changed, end, result, None if done is None else done - created)


def rollback(side: Side, image: str, primary_image: str, scenario: str, *, timeout: float) -> Outcome:
    changed, _ = side.deploy(image)
    if isinstance(side, StepSide):
        code, end = side.run(scenario, timeout=timeout)
        result = {0: "promoted", 3: "rolled back"}.get(code, f"exit {code}")
    else:
        assert isinstance(side, FlaggerSide)
        end = side.wait_done("Failed", since=changed, timeout=timeout)
        result = "Failed"
    watcher, ns = side.watcher, side.namespace
    onset = watcher.first(ns, watcher.some_on_image(ns, image), after=changed)
    back = None if onset is None else converged(side, watcher.on_image(ns, primary_image), after=onset)
    seconds = None if onset is None or back is None else back - onset
    end = max(end, back or end)
    return Outcome(scenario, side.name, changed, end, result, seconds)


def newer_mid_analysis(side: Side, first: str, newer: str, scenario: str, *, timeout: float) -> Outcome:
    changed, _ = side.deploy(first)
    process: subprocess.Popen[bytes] | None = None
    ended: list[Any] = []
    if isinstance(side, StepSide):
        process, ended = side.start_run(scenario)
    deadline = time.monotonic() + timeout
    while (
        side.watcher.first(
            side.namespace, side.watcher.some_on_image(side.namespace, first, 20), after=changed
        )
        is None
    ):
        if ended or time.monotonic() > deadline:
            raise TimeoutError(f"{side.name}: 20 % on {first} not seen (the run ended: {bool(ended)})")
        time.sleep(0.05)  # poll interval of a condition wait with a deadline
    newer_at, revision = side.deploy(newer)
    if isinstance(side, StepSide):
        assert process is not None
        deadline = time.monotonic() + timeout
        while not ended and time.monotonic() < deadline:
            time.sleep(0.1)  # poll interval of a condition wait with a deadline
        if not ended:
            process.kill()
            raise TimeoutError("canary-step did not end")
        end, code = float(ended[0]), process.returncode
        result = {0: "promoted", 3: "rolled back"}.get(code, f"exit {code}")
    else:
        assert isinstance(side, FlaggerSide)
        end = side.wait_done("Succeeded", since=changed, timeout=timeout)
        result = "Succeeded"
    created = side.watcher.first(side.namespace, lambda s: s.latest == revision, after=newer_at) or newer_at
    done = converged(side, side.watcher.on_image(side.namespace, newer), after=newer_at)
    end = max(end, done or end)
    return Outcome(scenario, side.name, changed, end, result, None if done is None else done - created)


def both(flagger: FlaggerSide, step: StepSide, run: Callable[[Side], Outcome]) -> None:
    """Run a scenario on both sides at once; each outcome goes to its side."""
    errors: list[BaseException] = []

    def one(side: Side) -> None:
        try:
            side.outcomes.append(run(side))
        except BaseException as error:  # reported after both ended
            errors.append(error)

    # Daemon threads: an interrupted bench must not wait for a side's timeout before it exits.
    threads = [threading.Thread(target=one, args=(side,), daemon=True) for side in (flagger, step)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


# ------------------------------------------------------------------------------------------ set-up


def backend_to_use(requested: str) -> str:
    """``auto``: real Knative when its binaries are built (``make tools KNATIVE=real``) and we are root."""
    if requested != "auto":
        return requested
    from tests.cluster.binaries import cache_dir  # noqa: PLC0415
    from tests.cluster.knative_binaries import KNATIVE_COMMANDS, KNATIVE_SERVING_VERSION, KUBE_COMMANDS  # noqa: PLC0415

    built = [cache_dir() / "bin" / name for name in (*KNATIVE_COMMANDS, *KUBE_COMMANDS, "kwok", "etcd")]
    source = cache_dir() / "src" / f"serving@{KNATIVE_SERVING_VERSION}" / ".complete"
    if os.geteuid() == 0 and source.is_file() and all(path.is_file() for path in built):
        return "real"
    return "sim"


def step_account(plane: ControlPlane, workdir: Path) -> Path:
    """canary-step's own ServiceAccount (cluster-admin: the counts do not depend on it) and kubeconfig."""
    plane.api.create_service_account(STEP_NS, STEP_ACCOUNT)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "vs-flagger-canary-step"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": STEP_ACCOUNT, "namespace": STEP_NS}],
    }
    status, body = plane.api.request(
        "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", body=binding
    )
    assert status in (201, 409), body
    token = plane.api.token_for(STEP_NS, STEP_ACCOUNT, expiration_seconds=6 * 3600)
    return plane.api.kubeconfig_for_token(token, workdir / "canary-step.kubeconfig")


# ------------------------------------------------------------------------------------------ the report


def fmt_seconds(seconds: float | None, interval: float) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s ({seconds / interval:.1f} intervals)"


def report(
    *,
    backend: str,
    interval: float,
    threshold: int,
    sides: tuple[FlaggerSide, StepSide],
    requests: list[audit.Request],
    watcher: Watcher,
    bench_start: float,
    bench_end: float,
    init_window: dict[str, tuple[float, float]],
    settle_phases: list[str],
    flagger_log: Path,
) -> dict[str, Any]:
    flagger, step = sides
    gap = interval * 0.4
    messages = audit.event_messages(requests)
    # Flagger's events from its own log: client-go's EventRecorder drops Events past its spam filter's burst
    # (25 per object, then one per 5 minutes), so the API sees fewer than Flagger records.
    timeline = audit.flagger_events(flagger_log.read_text(errors="replace").splitlines())
    per_side: dict[str, dict[str, Any]] = {}
    for side in sides:
        mine = audit.of_user(requests, side.user, start=bench_start, end=bench_end)
        own_log = timeline if side is flagger else None
        side_ticks = audit.ticks(mine, gap_s=gap, messages=messages, timeline=own_log)
        windows = {"initialisation": init_window[side.name]}
        windows.update({o.scenario: (o.start, o.end + 1.0) for o in side.outcomes})
        per_side[side.name] = {
            "total": len(mine),
            "ticks": audit.per_kind(side_ticks),
            "windows": {
                name: audit.of_user(requests, side.user, start=start, end=end)
                for name, (start, end) in windows.items()
            },
            "window_bounds": windows,
            "verbs": audit.verbs(mine),
        }
    names = [f"Flagger {FLAGGER_VERSION}", "canary-step"]
    rows: list[list[str]] = []
    for kind in audit.KINDS:
        cells = [per_side[s.name]["ticks"].get(kind) for s in sides]
        if any(cells):
            rows.append([f"API requests per tick: {kind}", *(c.cell() if c else "-" for c in cells)])
    for scenario in ["initialisation", *(o.scenario for o in step.outcomes)]:
        rows.append(
            [
                f"API requests: {scenario}",
                *(str(len(per_side[s.name]["windows"].get(scenario, []))) for s in sides),
            ]
        )
    rows.append(
        ["API requests: whole bench (start-up, idle ticks)", *(str(per_side[s.name]["total"]) for s in sides)]
    )
    labels = {
        "promotion": "promotion: new revision -> 100 % on it",
        "rollback": "rollback: fault onset -> 100 % on the primary",
        "newer revision mid-analysis": "newer revision mid-analysis: it -> 100 % on it",
    }
    for index, outcome in enumerate(step.outcomes):
        theirs = flagger.outcomes[index]
        rows.append(
            [
                labels.get(outcome.scenario, outcome.scenario),
                f"{fmt_seconds(theirs.seconds, interval)}, {theirs.result}",
                f"{fmt_seconds(outcome.seconds, interval)}, {outcome.result}",
            ]
        )
    mine = audit.of_user(requests, step.user)
    firsts = [next((r.received - at for r in mine if r.received >= at), None) for at in step.launched]
    startup = [f for f in firsts if f is not None]
    if startup:
        rows.append(
            [
                "canary-step: process start -> its first API request",
                "-",
                f"{min(startup):.1f}-{max(startup):.1f} s over {len(startup)} runs",
            ]
        )
    rows.append(
        [
            "peak RSS",
            f"{flagger.peak_rss_mb:.1f} MB (VmHWM, whole bench)",
            f"{step.peak_rss_mb:.1f} MB (max ru_maxrss of its runs)",
        ]
    )
    title = (
        f"backend: {'real Knative Serving v0.44.0' if backend == 'real' else 'the Knative simulator'}; "
        f"interval {interval:g} s, threshold {threshold}; "
        "API requests counted from kube-apiserver's audit log by user"
    )
    print(f"\n{title}\n")
    print(audit.table(["measure", *names], rows))
    print(f"\nFlagger's phases after its Canary was created: {' -> '.join(settle_phases)}")
    for scenario, (start, end) in per_side[step.name]["window_bounds"].items():
        print(f"\n== {scenario}")
        for side in sides:
            bounds = per_side[side.name]["window_bounds"].get(scenario, (start, end))
            print(f"  {side.name} traffic: {' | '.join(watcher.states(side.namespace, *bounds))}")
        for side in sides:
            window = per_side[side.name]["windows"].get(scenario, [])
            written = audit.events_of(window, messages)
            if side is flagger:
                first, last = per_side[side.name]["window_bounds"][scenario]
                logged = [message for at, message in timeline if first <= at <= last]
                print(f"  {side.name} events ({len(logged)} logged, {len(written)} Event writes):")
                shown = logged
            else:
                print(f"  {side.name} events ({len(written)} Event writes):")
                shown = written
            for message in shown:
                print(f"    {message}")
    print("\nRevisions at the end (name: image, tag only):")
    revisions: dict[str, dict[str, str]] = {}
    for side in sides:
        with watcher._lock:
            found = sorted((n, i) for (ns, n), i in watcher.images.items() if ns == side.namespace)
        revisions[side.name] = {n: i.rsplit(":", 1)[-1] for n, i in found}
        print(f"  {side.name}: " + ", ".join(f"{n}: {tag}" for n, tag in revisions[side.name].items()))
    print("\nRequests by verb and resource, whole bench:")
    for side in sides:
        print(f"  {side.name}: {json.dumps(per_side[side.name]['verbs'])}")
    return {
        "backend": backend,
        "interval": interval,
        "threshold": threshold,
        "rows": rows,
        "settlePhases": settle_phases,
        "revisions": revisions,
        "peakRssMb": {s.name: round(s.peak_rss_mb, 1) for s in sides},
        "outcomes": [dataclasses.asdict(o) for s in sides for o in s.outcomes],
        "verbs": {s.name: per_side[s.name]["verbs"] for s in sides},
        "traffic": {
            s.name: {
                scenario: watcher.states(s.namespace, *bounds)
                for scenario, bounds in per_side[s.name]["window_bounds"].items()
            }
            for s in sides
        },
        "events": {
            s.name: {
                scenario: audit.events_of(window, messages)
                for scenario, window in per_side[s.name]["windows"].items()
            }
            for s in sides
        },
        "flaggerLoggedEvents": [[at, message] for at, message in timeline],
    }


# ------------------------------------------------------------------------------------------ compare


def compare(first: dict[str, Any], second: dict[str, Any]) -> list[str]:
    """What differs between two runs' JSON (``--json``) for each client: its revisions, the phases Flagger
    went through after its Canary was created, the traffic states and the logged events of each scenario.
    Run on the two backends, this is a differential test of the simulator by a client we did not write."""
    found = []
    for key in ("revisions", "traffic"):
        for side, theirs in first.get(key, {}).items():
            ours = second.get(key, {}).get(side)
            if isinstance(theirs, dict) and isinstance(ours, dict):
                for name in sorted(set(theirs) | set(ours)):
                    if theirs.get(name) != ours.get(name):
                        found.append(f"{side} {key} {name}: {theirs.get(name)} != {ours.get(name)}")
            elif theirs != ours:
                found.append(f"{side} {key}: {theirs} != {ours}")
    # "Initializing" is seen or not depending on when the first poll came; measured values vary by run.
    phases = [[p for p in run.get("settlePhases", []) if p != "Initializing"] for run in (first, second)]
    if phases[0] != phases[1]:
        found.append(f"flagger phases after creation: {phases[0]} != {phases[1]}")
    logged = [
        [re.sub(r"\d+(\.\d+)?%", "N%", m) for _, m in run.get("flaggerLoggedEvents", [])]
        for run in (first, second)
    ]
    for index, (theirs, ours) in enumerate(zip(logged[0], logged[1], strict=False)):
        if theirs != ours:
            found.append(f"flagger's event {index + 1}: {theirs!r} != {ours!r}")
            break
    if len(logged[0]) != len(logged[1]):
        found.append(f"flagger logged {len(logged[0])} events, then {len(logged[1])}")
    return found


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--knative", choices=["auto", "real", "sim"], default="auto")
    parser.add_argument(
        "--interval", type=float, default=10.0, help="analysis interval, s (Flagger's floor: 10)"
    )
    parser.add_argument("--threshold", type=int, default=15, help="failed checks before rollback (seed: 15)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--keep", type=Path, help="keep the run's files (audit log, logs, reports) here")
    parser.add_argument(
        "--step-ref", help="run canary-step as committed at this git ref (git archive), not the working tree"
    )
    parser.add_argument(
        "--scenarios", default="promotion,rollback,newer", help="comma-separated: promotion, rollback, newer"
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A.json", "B.json"),
        help="print what differs between two runs' --json output (real Knative, the simulator) and exit",
    )
    args = parser.parse_args(argv)
    if args.compare:
        runs = [json.loads(path.read_text()) for path in args.compare]
        differences = compare(*runs)
        print(f"{runs[0]['backend']} vs {runs[1]['backend']}: " + ("the same" if not differences else ""))
        for line in differences:
            print(f"  {line}")
        return 1 if differences else 0
    interval, threshold = args.interval, args.threshold
    wanted = set(args.scenarios.split(","))
    backend = backend_to_use(args.knative)
    log(f"backend: {backend}")
    found = ensure_flagger()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="canary-step-vs-flagger-"))
    workdir.mkdir(parents=True, exist_ok=True)
    step_source = None
    if args.step_ref:
        step_source = workdir / "step-source"
        step_source.mkdir(exist_ok=True)
        repo = Path(__file__).resolve().parent.parent
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", args.step_ref, "step"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(step_source)], input=archive.stdout, check=True)
        log(f"canary-step from git {args.step_ref} ({step_source})")
    timeout = (threshold + 12) * interval + 120

    with ControlPlane.start(workdir / "cluster", knative=backend, audit=True) as plane:
        assert plane.api.audit_log is not None
        log(f"control plane up in {plane.started_in:.1f} s; work dir {workdir}")
        for ns in (FLAGGER_NS, STEP_NS):
            plane.create_namespace(ns)
            plane.create_podinfo(ns)
        for ns in (FLAGGER_NS, STEP_NS):
            plane.wait_ready(ns, "podinfo", timeout=60)
        kubeconfig = step_account(plane, workdir)
        loadtester = plane.loadtester_url + "/"
        spec = workdir / "canary.yaml"
        spec.write_text(
            yaml.safe_dump(
                seed_canary(
                    STEP_NS,
                    loadtester_url=loadtester,
                    interval=f"{interval:g}s",
                    threshold=threshold,
                    load_seconds=600,
                    rate=20,
                )
            )
        )
        with Watcher(plane) as watcher:
            controller = FlaggerController(plane, workdir / "flagger", watch_namespace=FLAGGER_NS)
            bench_start = time.time()
            controller.start(found)
            log(f"Flagger started in {controller.started_in:.1f} s (log {controller.log_file})")
            try:
                flagger = FlaggerSide("flagger", FLAGGER_NS, FLAGGER_USER, plane, watcher, interval)
                step = StepSide(
                    "canary-step",
                    STEP_NS,
                    STEP_USER,
                    plane,
                    watcher,
                    interval,
                    spec=spec,
                    kubeconfig=kubeconfig,
                    workdir=workdir,
                    source=step_source,
                )
                canary = seed_canary(
                    FLAGGER_NS,
                    loadtester_url=loadtester,
                    interval=f"{interval:g}s",
                    threshold=threshold,
                    load_seconds=600,
                    rate=20,
                )
                init_start = time.time()
                status, body = plane.api.request("POST", CANARIES.format(ns=FLAGGER_NS), body=canary)
                assert status == 201, body
                code, step_init_end = step.run("initialisation", timeout=120)
                assert code == 0, f"canary-step's initialisation: exit {code}"
                log("waiting for Flagger's Canary to settle after its initialisation")
                phases = flagger.settle(since=init_start, timeout=(threshold + 20) * interval + 120)
                init_window = {
                    "flagger": (init_start, time.time()),
                    "canary-step": (init_start, step_init_end + 1),
                }
                log(f"Flagger's phases: {phases}")
                if "promotion" in wanted:
                    log("scenario: promotion of 6.0.1")
                    both(
                        flagger,
                        step,
                        lambda s: promotion(s, f"{PODINFO}:6.0.1", "promotion", timeout=timeout),
                    )
                if "rollback" in wanted:
                    log("scenario: rollback of 6.0.2 (60 % 5xx)")
                    primary = f"{PODINFO}:6.0.1" if "promotion" in wanted else PODINFO_IMAGE
                    both(
                        flagger,
                        step,
                        lambda s: rollback(
                            s, f"{PODINFO}:6.0.2-fault-5xx-60", primary, "rollback", timeout=timeout
                        ),
                    )
                if "newer" in wanted:
                    log("scenario: 6.0.3, then 6.0.4 at 20 %")
                    both(
                        flagger,
                        step,
                        lambda s: newer_mid_analysis(
                            s,
                            f"{PODINFO}:6.0.3",
                            f"{PODINFO}:6.0.4",
                            "newer revision mid-analysis",
                            timeout=timeout,
                        ),
                    )
                bench_end = time.time()
                flagger.peak_rss_mb = controller.peak_rss_mb()
            finally:
                controller.stop()
                log(f"Flagger's log: {controller.log_file}")
            time.sleep(1.0)  # the audit log's last lines (blocking mode writes before answering; margin)
            requests = audit.read(plane.api.audit_log)
            figures = report(
                backend=backend,
                interval=interval,
                threshold=threshold,
                sides=(flagger, step),
                requests=requests,
                watcher=watcher,
                bench_start=bench_start,
                bench_end=bench_end,
                init_window=init_window,
                settle_phases=phases,
                flagger_log=controller.log_file,
            )
        if args.keep:
            audit_copy = workdir / "audit.log"
            audit_copy.write_bytes(plane.api.audit_log.read_bytes())
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

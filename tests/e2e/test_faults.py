"""The fault matrix of one-analysis-per-Service, on the local control plane, with the real command.

Each case ends with 100 % of the traffic on the right revision, and the results and the report saying
what happened: concurrent runs (the second finds its revision promoted; three runs deploying three
images promote them in turn), SIGKILL at a weight and a rerun that resumes, SIGKILL inside the pin and the
rollback writes (killed the moment the write lands, while the step waits for the status), a paused run
whose lease was taken over (it writes nothing after it wakes), kube-apiserver killed and restarted, etcd
restarted, the Service deleted and the primary Revision deleted mid-analysis.
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import ControlPlane, wait_for
from tests.cluster.prom import Prometheus
from tests.e2e.test_run import PODINFO, Result, Step, advances, canary_spec

pytestmark = pytest.mark.cluster


class LoggedStep(Step):
    """A `Step` whose stderr goes to a file, so a test can wait for a line while the run goes on."""

    def start(
        self, *docs: dict[str, Any], args: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> None:
        spec = self.write(*docs)
        self.log = self.tmp / "stderr.log"
        with self.log.open("w") as stderr:
            self.process = subprocess.Popen(
                self.command(spec, *args), stdout=subprocess.PIPE, stderr=stderr, text=True
            )

    def wait(self, timeout: float = 120) -> Result:
        result = super().wait(timeout)
        result.stderr = self.log.read_text()
        return result

    def said(self, text: str) -> bool:
        return text in self.log.read_text()


GATE = {"name": "approve", "type": "confirm-promotion", "url": "LOADTESTERgate/check"}


class Runs:
    """Several `canary-step run` processes on one Service, each with its own results and report."""

    def __init__(self, cp: ControlPlane, namespace: str, tmp: Path) -> None:
        self.cp = cp
        self.namespace = namespace
        self.tmp = tmp
        self.steps: list[Step] = []
        cp.create_podinfo(namespace)
        cp.wait_ready(namespace, "podinfo", "podinfo-00001")
        first = self.new("init").run(canary_spec(namespace))
        assert first.code == 0 and first.results["decision"] == "initialized", first.stderr

    def new(self, name: str) -> LoggedStep:
        work = self.tmp / name
        work.mkdir()
        step = LoggedStep(self.cp, self.namespace, work)
        self.steps.append(step)
        return step

    def lease(self) -> dict[str, object] | None:
        status, body = self.cp.api.request(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/canary-step.podinfo"
        )
        return body if status == 200 else None

    def holder(self) -> str | None:
        lease = self.lease()
        spec = lease.get("spec") if lease else None
        return spec.get("holderIdentity") if isinstance(spec, dict) else None

    def stop_all(self) -> None:
        for step in self.steps:
            if step.process is not None and step.process.poll() is None:
                os.kill(step.process.pid, signal.SIGCONT)
                step.process.kill()
                step.process.communicate()


@pytest.fixture
def runs(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Runs]:
    """podinfo 6.0.0 serving, pinned as the primary by a first run."""
    together = Runs(control_plane, namespace, tmp_path)
    yield together
    together.stop_all()


def _lines(result: Result) -> list[str]:
    return result.stderr.splitlines()


def test_a_second_run_waits_and_finds_its_revision_promoted(runs: Runs) -> None:
    """Two quick merges start two runs 3 s apart for podinfo-00002: one promotes, the other says so."""
    ns = runs.namespace
    runs.steps[0].deploy(f"{PODINFO}:6.0.1")
    spec = canary_spec(ns, interval="1s", webhooks=[GATE])  # the first holds at max weight until approved
    first, second = runs.new("first"), runs.new("second")
    first.start(spec)
    wait_for(lambda: first.said("waiting for promotion approval"), timeout=60, what="the first at max weight")
    second.start(spec)
    wait_for(lambda: second.said("waiting for the Service's lease"), timeout=60, what="the second waiting")
    runs.cp.loadtester.open_gate("podinfo", ns)
    one, two = first.wait(), second.wait()

    assert one.code == 0 and one.results["decision"] == "promoted", one.stderr
    assert two.code == 0, two.stderr
    assert (two.results["decision"], two.results["reason"]) == ("skipped", "already-promoted"), two.stderr
    assert two.results["primary-revision"] == "podinfo-00002"
    assert any(
        line.startswith(f"waiting for the Service's lease: Lease {ns}/canary-step.podinfo held by host ")
        and " since " in line
        for line in _lines(two)
    ), two.stderr
    assert first.traffic() == {"podinfo-00002": 100} and first.annotation() == "podinfo-00002"
    assert advances(first.events()) == [10, 20, 30, 40, 50]  # one analysis, nothing undone
    assert two.report["lease"]["waitedSeconds"] > 0
    assert runs.holder() is None  # both released it


def test_three_runs_deploying_three_images_promote_them_in_turn(runs: Runs) -> None:
    ns = runs.namespace
    spec = canary_spec(ns, interval="1s")
    started = []
    for i, tag in enumerate(("6.0.1", "6.0.2", "6.0.3")):
        step = runs.new(f"run-{tag}")
        step.start(spec, args=("--image", f"{PODINFO}:{tag}"))
        started.append(step)
        if i == 0:
            wait_for(lambda: runs.holder() is not None, timeout=30, what="the first run holds the lease")
    results = [s.wait(timeout=180) for s in started]

    for result in results:
        assert result.code == 0, result.stderr
        assert result.results["decision"] == "promoted", result.stderr
    promoted = sorted(r.results["primary-revision"] for r in results)
    assert promoted == ["podinfo-00002", "podinfo-00003", "podinfo-00004"]
    assert results[0].results["primary-revision"] == "podinfo-00002"  # the first run went first
    final = runs.steps[0]
    assert final.traffic() == {"podinfo-00004": 100} and final.annotation() == "podinfo-00004"
    # each analysis ran alone: the weights climbed 10..50 three times, never interleaved
    assert advances(final.events()) == [10, 20, 30, 40, 50] * 3
    assert sum(1 for m in final.events() if m.startswith("Promotion completed!")) == 3


def test_sigkill_at_a_weight_then_a_rerun_resumes_it(runs: Runs) -> None:
    ns = runs.namespace
    runs.steps[0].deploy(f"{PODINFO}:6.0.1")
    spec = canary_spec(ns, interval="2s")
    killed, rerun = runs.new("killed"), runs.new("rerun")
    killed.start(spec, args=("--lease-duration", "4s"))
    wait_for(lambda: killed.traffic().get("podinfo-00002", 0) >= 20, timeout=60, what="canary at 20%")
    assert killed.process is not None
    killed.process.kill()  # SIGKILL: no restore, no release
    assert killed.wait(timeout=10).code == -signal.SIGKILL
    split = killed.traffic()
    weight = split.get("podinfo-00002", 0)
    assert 0 < weight < 100, split  # the split is left without an owner...

    result = rerun.run(spec, args=("--lease-duration", "4s"), timeout=120)  # ...until the rerun takes it

    assert result.code == 0, result.stderr
    assert result.results["decision"] == "promoted"
    assert rerun.traffic() == {"podinfo-00002": 100} and rerun.annotation() == "podinfo-00002"
    first = next(line for line in _lines(result) if not line.startswith("waiting for the Service's lease"))
    found = re.fullmatch(
        r"found an analysis of podinfo-00002 interrupted at (\d+) %, (\d+) failed checks?, tick (\d+),"
        r" run host \S+ pid \d+ run [0-9a-f]+, \d+s ago; resuming it at \1 % with \2 failed checks?"
        r" \(--on-interrupted resume\)",
        first,
    )
    assert found, result.stderr
    resumed_at = int(found.group(1))
    assert resumed_at in (weight, weight - 10)  # the record is written at the end of each tick
    events = rerun.events()
    # The killed run's Events: one per weight it reached, except that the kill may land between the traffic
    # write and its Event (seen under load); then the rerun's advance to that weight is the only one.
    resumed = list(range(resumed_at + 10, 60, 10))
    expected = [list(range(10, weight + 10, 10)) + resumed]
    if resumed_at == weight - 10:
        expected.append(list(range(10, weight, 10)) + resumed)
    assert advances(events) in expected, (weight, resumed_at)
    assert events.count("Pre-rollout check load-start passed") == 1  # not repeated
    assert sum(1 for m in events if m.startswith("Starting canary analysis")) == 1
    interrupted = result.report["lease"]["interrupted"]
    assert interrupted["canaryWeight"] == resumed_at and interrupted["continued"] == "resume"
    assert interrupted["gapSeconds"] > 0  # the report shows the gap
    assert result.report["ticks"][0]["index"] == interrupted["tick"] + 1
    assert result.report["lease"]["waitedSeconds"] <= 4 + 2  # the split had an owner again within the lease


def test_a_paused_run_whose_lease_was_taken_over_writes_nothing_after_it_wakes(runs: Runs) -> None:
    ns = runs.namespace
    runs.steps[0].deploy(f"{PODINFO}:6.0.1")
    spec = canary_spec(ns, interval="2s")
    paused, taker = runs.new("paused"), runs.new("taker")
    paused.start(spec, args=("--lease-duration", "3s"))
    wait_for(lambda: paused.traffic().get("podinfo-00002", 0) >= 20, timeout=60, what="canary at 20%")
    assert paused.process is not None
    os.kill(paused.process.pid, signal.SIGSTOP)  # a long GC pause, a frozen node, a stopped container

    taken = taker.run(spec, args=("--lease-duration", "3s"), timeout=120)
    assert taken.code == 0 and taken.results["decision"] == "promoted", taken.stderr
    assert taken.report["lease"]["tookOverFrom"] is not None
    assert taker.traffic() == {"podinfo-00002": 100}

    os.kill(paused.process.pid, signal.SIGCONT)
    woke = paused.wait(timeout=60)
    assert woke.code == 4, woke.stderr
    assert (woke.results["decision"], woke.results["reason"]) == ("failed", "lease-lost"), woke.stderr
    assert "writes nothing more" in woke.stderr
    # the promotion the other run made stands
    assert taker.traffic() == {"podinfo-00002": 100} and taker.annotation() == "podinfo-00002"


def test_the_service_deleted_mid_analysis(runs: Runs) -> None:
    ns = runs.namespace
    runs.steps[0].deploy(f"{PODINFO}:6.0.1")
    step = runs.new("deleted")
    step.start(canary_spec(ns, interval="2s"))
    wait_for(lambda: step.traffic().get("podinfo-00002", 0) >= 20, timeout=60, what="canary at 20%")
    path = f"/apis/serving.knative.dev/v1/namespaces/{ns}/services/podinfo"
    status, body = runs.cp.api.request("DELETE", path)
    assert status in (200, 202), body
    result = step.wait(timeout=120)
    assert result.code == 4, result.stderr
    assert result.results["decision"] == "failed", result.stderr
    assert "not found" in result.results["reason"] or "not found" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert runs.holder() is None  # released


def test_a_run_that_cannot_get_the_lease_in_time_touches_nothing(runs: Runs) -> None:
    ns = runs.namespace
    runs.steps[0].deploy(f"{PODINFO}:6.0.1")
    spec = canary_spec(ns, interval="1s", webhooks=[GATE])
    holder, locked = runs.new("holder"), runs.new("locked")
    holder.start(spec)
    wait_for(
        lambda: holder.said("waiting for promotion approval"), timeout=60, what="the holder at max weight"
    )
    result = locked.run(spec, args=("--lock-wait", "2s"), timeout=60)
    runs.cp.loadtester.open_gate("podinfo", ns)
    assert result.code == 4, result.stderr
    assert (result.results["decision"], result.results["reason"]) == ("failed", "locked")
    last = _lines(result)[-1]
    assert last.startswith(f"failed (locked): Lease {ns}/canary-step.podinfo held by host "), last
    assert "gave up after waiting 2." in last and last.endswith("Exit 4."), last
    done = holder.wait()
    assert done.code == 0 and done.results["decision"] == "promoted", done.stderr
    assert advances(holder.events()) == [10, 20, 30, 40, 50]  # the locked run moved nothing


def test_sigkill_then_a_rerun_told_to_roll_back(runs: Runs) -> None:
    ns = runs.namespace
    runs.steps[0].deploy(f"{PODINFO}:6.0.1")
    spec = canary_spec(ns, interval="2s")
    killed, rerun = runs.new("killed"), runs.new("rollback")
    killed.start(spec, args=("--lease-duration", "3s"))
    wait_for(lambda: killed.traffic().get("podinfo-00002", 0) >= 20, timeout=60, what="canary at 20%")
    assert killed.process is not None
    killed.process.kill()
    killed.wait(timeout=10)
    result = rerun.run(spec, args=("--lease-duration", "3s", "--on-interrupted", "rollback"), timeout=60)
    assert result.code == 3, result.stderr
    assert (result.results["decision"], result.results["reason"]) == ("rolled-back", "manual-rollback")
    assert "rolling it back to podinfo-00001 (--on-interrupted rollback)" in result.stderr
    assert rerun.traffic() == {"podinfo-00001": 100} and rerun.annotation() == "podinfo-00001"


def test_the_api_server_paused_for_20s_mid_analysis(runs: Runs, control_plane: ControlPlane) -> None:
    """SIGSTOP/SIGCONT of kube-apiserver at 20 %: the run rides it out on its retries and its lease."""
    ns = runs.namespace
    runs.steps[0].deploy(f"{PODINFO}:6.0.1")
    step = runs.new("api-paused")
    step.start(canary_spec(ns, interval="2s"))
    wait_for(lambda: step.traffic().get("podinfo-00002", 0) >= 20, timeout=60, what="canary at 20%")
    _, apiserver = control_plane.api.pids
    os.kill(apiserver, signal.SIGSTOP)
    try:
        time.sleep(20)  # the fault itself lasts 20 s; nothing is awaited here
    finally:
        os.kill(apiserver, signal.SIGCONT)
    result = step.wait(timeout=180)
    assert "Traceback" not in result.stderr
    assert result.code in (0, 4), result.stderr
    if result.code == 0:
        assert result.results["decision"] == "promoted", result.stderr
        assert step.traffic() == {"podinfo-00002": 100} and step.annotation() == "podinfo-00002"
    else:
        assert result.results["decision"] == "failed", result.stderr
        assert step.traffic() == {"podinfo-00001": 100} and step.annotation() == "podinfo-00001"
    assert runs.holder() is None


def test_a_concurrent_writer_patching_the_service_every_100ms(
    runs: Runs, control_plane: ControlPlane
) -> None:
    """Someone else's controller edits the Service all along: none of its edits is lost, the analysis ends."""
    ns = runs.namespace
    runs.steps[0].deploy(f"{PODINFO}:6.0.1")
    step = runs.new("writer")
    written: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        ends = time.monotonic() + 30
        while not stop.wait(0.1) and time.monotonic() < ends:
            n += 1
            edit = {"annotations": {"example.com/writer": str(n)}, "labels": {"w": str(n)}}
            control_plane.patch_service(ns, "podinfo", {"metadata": edit})
            written.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = step.run(canary_spec(ns, interval="1s"), timeout=120)
    finally:
        stop.set()
        thread.join()
    assert result.code == 0 and result.results["decision"] == "promoted", result.stderr
    assert len(written) > 20
    service = step.service()
    assert service["metadata"]["annotations"]["example.com/writer"] == str(written[-1])  # no edit lost
    assert service["metadata"]["labels"]["w"] == str(written[-1])
    assert step.traffic() == {"podinfo-00002": 100} and step.annotation() == "podinfo-00002"


def test_prometheus_restarted_mid_analysis(runs: Runs, control_plane: ControlPlane, tmp_path: Path) -> None:
    """Prometheus down for a few seconds: provider errors, counted apart from failed checks; it goes on."""
    private = Prometheus(
        workdir=tmp_path / "prometheus-data", targets=[control_plane.metrics_url.split("//")[1].split("/")[0]]
    )
    private.start()
    try:
        ns = runs.namespace
        runs.steps[0].deploy(f"{PODINFO}:6.0.1")
        step = runs.new("prometheus")
        step.start(canary_spec(ns, interval="2s", threshold=10, metricsServer=private.url))
        wait_for(lambda: step.traffic().get("podinfo-00002", 0) >= 20, timeout=60, what="canary at 20%")
        private.stop()
        wait_for(
            lambda: any(m.startswith("Prometheus query failed") for m in step.events()),
            timeout=30,
            what="a provider error while Prometheus is down",
        )
        private.start()  # the same port, the same data directory
        result = step.wait(timeout=120)
    finally:
        private.stop()
    assert result.code == 0, result.stderr
    assert result.results["decision"] == "promoted", result.stderr
    assert step.traffic() == {"podinfo-00002": 100}
    errors = [t["consecutiveErrors"] for t in result.report["ticks"]]
    assert max(errors) >= 1 and errors[-1] == 0, errors  # counted apart, reset once Prometheus answered
    assert int(result.results["failed-checks"]) < 10


class HangingServer:
    """An HTTP server that accepts every request and never answers (until the test ends)."""

    def __init__(self) -> None:
        release = self.release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                release.wait(60)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hang"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1})
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_a_webhook_that_hangs_past_its_timeout_is_a_failed_check(runs: Runs) -> None:
    hanging = HangingServer()
    try:
        ns = runs.namespace
        runs.steps[0].deploy(f"{PODINFO}:6.0.1")
        step = runs.new("hanging")
        hook = {"name": "acceptance", "type": "rollout", "url": hanging.url, "timeout": "1s"}
        result = step.run(canary_spec(ns, interval="1s", threshold=2, webhooks=[hook]), timeout=120)
    finally:
        hanging.close()
    assert result.code == 3, result.stderr
    outcome = (result.results["decision"], result.results["reason"])
    assert outcome == ("rolled-back", "failed-checks-threshold")
    assert step.traffic() == {"podinfo-00001": 100}
    hooks = [h for t in result.report["ticks"] for h in t["webhooks"] if h["name"] == "acceptance"]
    assert hooks and not any(h["ok"] for h in hooks), hooks
    assert runs.holder() is None


def test_the_load_tester_down(runs: Runs) -> None:
    """The pre-rollout hook cannot reach the load tester: no traffic moves, rolled back at the threshold."""
    ns = runs.namespace
    runs.steps[0].deploy(f"{PODINFO}:6.0.1")
    step = runs.new("no-loadtester")
    down = {"name": "load-start", "type": "pre-rollout", "url": "http://127.0.0.1:1/", "timeout": "1s"}
    result = step.run(canary_spec(ns, interval="1s", threshold=2, load=False, webhooks=[down]), timeout=120)
    assert result.code == 3, result.stderr
    assert result.results["reason"] == "failed-checks-threshold"
    assert result.results["canary-weight"] == "0"
    assert step.traffic() == {"podinfo-00001": 100}
    halt = f"Halt podinfo.{ns} advancement pre-rollout check load-start failed"
    assert any(m.startswith(halt) for m in step.events()), step.events()


def test_sigkill_right_after_the_promotion_write_then_a_rerun(runs: Runs) -> None:
    """Killed while its post-rollout hook hangs: the promotion is written, the lease still held. The rerun
    finds the analysis, sees its canary is the primary now, and undoes nothing."""
    hanging = HangingServer()
    try:
        ns = runs.namespace
        runs.steps[0].deploy(f"{PODINFO}:6.0.1")
        spec = canary_spec(
            ns,
            interval="1s",
            webhooks=[{"name": "notify", "type": "post-rollout", "url": hanging.url, "timeout": "60s"}],
        )
        killed, rerun = runs.new("killed"), runs.new("rerun")
        killed.start(spec, args=("--lease-duration", "3s"))
        wait_for(lambda: killed.annotation() == "podinfo-00002", timeout=90, what="the promotion written")
        assert killed.process is not None
        killed.process.kill()
        killed.wait(timeout=10)
        assert runs.holder() is not None  # a SIGKILL releases nothing
        result = rerun.run(spec, args=("--lease-duration", "3s"), timeout=60)
    finally:
        hanging.close()
    assert result.code == 0, result.stderr
    assert result.results["decision"] == "skipped", result.stderr
    assert "podinfo-00002 has become the primary since: starting afresh" in result.stderr
    assert rerun.traffic() == {"podinfo-00002": 100} and rerun.annotation() == "podinfo-00002"
    assert runs.holder() is None


def _killed_mid_analysis(runs: Runs, name: str) -> LoggedStep:
    runs.steps[0].deploy(f"{PODINFO}:6.0.1")
    step = runs.new(name)
    step.start(canary_spec(runs.namespace, interval="2s"))
    wait_for(lambda: step.traffic().get("podinfo-00002", 0) >= 20, timeout=60, what="canary at 20%")
    return step


def _ends_on_one_revision(runs: Runs, step: LoggedStep, result: Result) -> None:
    """Promoted, or failed with the primary restored; never a traceback, never a split, the lease released."""
    assert "Traceback" not in result.stderr
    assert result.code in (0, 4), result.stderr
    if result.code == 0:
        assert result.results["decision"] == "promoted", result.stderr
        assert step.traffic() == {"podinfo-00002": 100} and step.annotation() == "podinfo-00002"
    else:
        assert result.results["decision"] == "failed", result.stderr
        assert step.traffic() == {"podinfo-00001": 100} and step.annotation() == "podinfo-00001"
    assert runs.holder() is None


def test_the_api_server_killed_and_restarted_mid_analysis(runs: Runs, control_plane: ControlPlane) -> None:
    """SIGKILL of kube-apiserver at 20 %, restarted on the same etcd, port and certificates."""
    step = _killed_mid_analysis(runs, "api-restarted")
    control_plane.api.restart_apiserver()
    result = step.wait(timeout=180)
    _ends_on_one_revision(runs, step, result)


def test_etcd_restarted_mid_analysis(runs: Runs, control_plane: ControlPlane) -> None:
    """SIGKILL of etcd at 20 %, restarted on the same data directory; kube-apiserver stays up."""
    step = _killed_mid_analysis(runs, "etcd-restarted")
    control_plane.api.restart_etcd()
    result = step.wait(timeout=180)
    _ends_on_one_revision(runs, step, result)


def _spec_traffic(step: Step) -> dict[str, int]:
    """What the Service asks for (spec), which a write changes at once; the status follows later."""
    split: dict[str, int] = {}
    for target in step.service()["spec"].get("traffic") or []:
        if target.get("percent"):
            name = target.get("revisionName") or "latest"
            split[name] = split.get(name, 0) + target["percent"]
    return split


def _kill_once(step: LoggedStep, landed: Any, what: str) -> None:
    """SIGKILL the step the moment its write has landed, while it still waits for the status to follow."""
    wait_for(landed, timeout=90, interval=0.005, what=what)
    assert step.process is not None
    step.process.kill()
    assert step.wait(timeout=10).code == -signal.SIGKILL  # it was still inside the write


def test_sigkill_inside_the_pin_write_then_a_rerun(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """An unpinned Service, a run that deploys (`--image`): killed once its pin of podinfo-00001 landed,
    before the deploy. The rerun finds the Service pinned, deploys, analyses and promotes."""
    control_plane.create_podinfo(namespace)
    control_plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    killed, rerun = LoggedStep(control_plane, namespace, tmp_path / "killed"), None
    (tmp_path / "killed").mkdir()
    spec = canary_spec(namespace, interval="1s")
    args = ("--image", f"{PODINFO}:6.0.1", "--lease-duration", "3s")
    killed.start(spec, args=args)
    _kill_once(killed, lambda: _spec_traffic(killed) == {"podinfo-00001": 100}, "the pin written")
    assert killed.annotation() == "podinfo-00001"
    assert control_plane.get_revision(namespace, "podinfo-00002") is None  # killed before the deploy

    (tmp_path / "rerun").mkdir()
    rerun = LoggedStep(control_plane, namespace, tmp_path / "rerun")
    result = rerun.run(spec, args=args, timeout=120)
    assert result.code == 0 and result.results["decision"] == "promoted", result.stderr
    assert rerun.traffic() == {"podinfo-00002": 100} and rerun.annotation() == "podinfo-00002"
    assert result.report["lease"]["waitedSeconds"] <= 3 + 2  # an owner again within the lease duration
    assert result.report["lease"]["tookOverFrom"] is not None


def test_sigkill_inside_the_rollback_write_then_a_rerun(runs: Runs) -> None:
    """A failing canary: killed once its rollback (100 % back on podinfo-00001) landed. The rerun says what
    it found and ends with everything on the primary."""
    ns = runs.namespace
    runs.steps[0].deploy(f"{PODINFO}:6.0.2-fault-5xx-60")
    spec = canary_spec(ns, interval="1s", threshold=2)
    killed, rerun = runs.new("killed"), runs.new("rerun")
    killed.start(spec, args=("--lease-duration", "3s"))
    wait_for(lambda: killed.traffic().get("podinfo-00002", 0) >= 10, timeout=60, what="canary at 10%")
    _kill_once(killed, lambda: _spec_traffic(killed) == {"podinfo-00001": 100}, "the rollback written")
    before = advances(killed.events())

    result = rerun.run(spec, args=("--lease-duration", "3s"), timeout=120)
    assert advances(rerun.events()) == before  # the failing canary got no traffic again
    assert "Traceback" not in result.stderr
    first = next(line for line in _lines(result) if not line.startswith("waiting for the Service's lease"))
    assert first.startswith("found an analysis of podinfo-00002 interrupted at "), result.stderr
    assert result.code == 3, result.stderr
    assert result.results["decision"] == "rolled-back", result.stderr
    assert rerun.traffic() == {"podinfo-00001": 100} and rerun.annotation() == "podinfo-00001"
    assert result.report["lease"]["waitedSeconds"] <= 3 + 2
    assert runs.holder() is None


def test_the_primary_revision_deleted_mid_analysis(runs: Runs, control_plane: ControlPlane) -> None:
    """The primary Revision deleted at 20 %: the next write cannot converge and neither can the restore.
    The step says so at once (not after two traffic timeouts) and exits 5: a person must choose."""
    step = _killed_mid_analysis(runs, "primary-deleted")
    control_plane.knative.delete("revisions", runs.namespace, "podinfo-00001")
    result = step.wait(timeout=120)
    assert "Traceback" not in result.stderr
    assert result.code == 5, result.stderr
    assert (result.results["decision"], result.results["reason"]) == ("failed", "rollback-failed")
    last = _lines(result)[-1]
    assert "cannot route to Revision podinfo-00001: it no longer exists" in last, last
    assert "Traffic: possibly split" in last and last.endswith("Exit 5."), last
    # read from Knative's RevisionMissing at once, not after a 60 s traffic timeout per write
    # nothing routed to the unanalysed canary beyond the weight it had reached; the primary not moved
    assert step.annotation() == "podinfo-00001"
    assert step.traffic().get("podinfo-00002", 0) <= 30
    assert result.report["service"]["readyReason"] == "RevisionMissing"
    assert runs.holder() is None

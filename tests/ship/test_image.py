"""The image, built here and run as Tekton and Argo run it, against the local control plane.

The image is the Dockerfile built with podman on the local Debian base (tests/ship/image.py; the same
lines as with the default base). Each run is `podman run --user <random uid> --read-only --network host`
with a kubeconfig mounted read-only, /tmp an emptyDir-like tmpfs (the Task's), HOME left on it, and the
results directory and the report's directory mounted writable: the pod of the Tekton Task and of the
Argo template. The API server, Prometheus and the load tester are on loopback, so `--network host` reaches
them and nothing else.

Checked: --help and --version as the default command; the seed's initialise, promote, rollback (0, 0, 3)
with results and report in the mounts; `podman stop` (SIGTERM to PID 1) mid-analysis exits 143 with the
primary restored before the container is gone; `podman kill -s KILL` leaves the analysis record that a
rerun resumes.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import step
from tests.cluster import ControlPlane, wait_for
from tests.cluster.binaries import BinaryError
from tests.e2e.test_run import PODINFO, canary_spec
from tests.ship.image import RUNTIME, ULIMITS, build, podman


@pytest.fixture(scope="session")
def image() -> str:
    """canary-step:local, built once per session (warm: every layer cached by podman)."""
    try:
        return build(base="local").ref
    except BinaryError as error:
        pytest.fail(str(error), pytrace=False)


def _random_uid() -> int:
    return 100_000 + secrets.randbelow(900_000)


def _podman_run(image: str, *args: str, name: str | None = None, mounts: tuple[str, ...] = ()) -> list[str]:
    cmd = [podman(), "run", "--rm", *RUNTIME, *ULIMITS, "--network", "host", "--read-only"]
    cmd += [
        "--read-only-tmpfs=false",
        "--tmpfs",
        "/tmp:rw,mode=1777",
        "--user",
        f"{_random_uid()}:{_random_uid()}",
    ]
    if name:
        cmd += ["--name", name]
    for mount in mounts:
        cmd += ["-v", mount]
    return [*cmd, image, *args]


def test_help_and_version_as_the_default_command(image: str) -> None:
    default = subprocess.run(_podman_run(image), capture_output=True, text=True, check=False, timeout=120)
    assert default.returncode == 0, default.stderr
    for command in ("run", "validate", "plan", "crds"):
        assert f"  {command} " in default.stdout, default.stdout
    version = subprocess.run(
        _podman_run(image, "--version"), capture_output=True, text=True, check=False, timeout=120
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"canary-step, version {step.__version__}"


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    results: dict[str, str]
    report: dict[str, Any]


class Container:
    """`canary-step run` in the image for one test: the spec, kubeconfig and outputs in a shared dir."""

    def __init__(self, cp: ControlPlane, namespace: str, image: str) -> None:
        self.cp, self.namespace, self.image = cp, namespace, image
        # Not under pytest's 0700 basetemp: the container's random UID must reach these.
        self.dir = Path(tempfile.mkdtemp(prefix="canary-step-image-"))
        self.dir.chmod(0o755)
        self.results, self.out = self.dir / "results", self.dir / "out"
        for writable in (self.results, self.out):
            writable.mkdir()
            writable.chmod(0o777)
        ca = base64.b64encode(cp.api.ca_file.read_bytes()).decode()
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "local", "cluster": {"server": cp.api.url, "certificate-authority-data": ca}}
            ],
            "users": [{"name": "admin", "user": {"token": cp.api.admin_token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        }
        (self.dir / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        (self.dir / "kubeconfig").chmod(0o644)
        self.name = f"canary-step-{secrets.token_hex(4)}"
        self.process: subprocess.Popen[str] | None = None

    def command(self, spec: dict[str, Any], *args: str) -> list[str]:
        text = yaml.safe_dump(spec).replace("LOADTESTER", self.cp.loadtester_url + "/")
        (self.dir / "canary.yaml").write_text(text)
        (self.dir / "canary.yaml").chmod(0o644)
        mounts = (
            f"{self.dir / 'kubeconfig'}:/var/run/kube/config:ro",
            f"{self.dir / 'canary.yaml'}:/workspace/canary.yaml:ro",
            f"{self.results}:/tekton/results:rw",
            f"{self.out}:/workspace/out:rw",
        )
        run_args = [
            "run", "/workspace/canary.yaml", "--kubeconfig", "/var/run/kube/config",
            "--metrics-server", self.cp.prometheus_url, "--results-dir", "/tekton/results",
            "--report", "/workspace/out/report.json", *args,
        ]  # fmt: skip
        return _podman_run(self.image, *run_args, name=self.name, mounts=mounts)

    def start(self, spec: dict[str, Any], *args: str) -> None:
        for stale in self.results.iterdir():
            stale.unlink()
        self.name = f"canary-step-{secrets.token_hex(4)}"
        cmd = self.command(spec, *args)
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float = 180) -> Ran:
        assert self.process is not None
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            subprocess.run([podman(), "kill", self.name], capture_output=True, check=False)
            stdout, stderr = self.process.communicate()
            raise AssertionError(f"the container did not finish within {timeout}s:\n{stderr}") from None
        results = {p.name: p.read_text() for p in self.results.iterdir()}
        report_path = self.out / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        return Ran(self.process.returncode, stdout, stderr, results, report)

    def run(self, spec: dict[str, Any], *args: str, timeout: float = 180) -> Ran:
        self.start(spec, *args)
        return self.wait(timeout)

    def running(self) -> bool:
        inspected = subprocess.run(
            [podman(), "container", "inspect", "--format", "{{.State.Running}}", self.name],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return inspected.returncode == 0 and inspected.stdout.strip() == "true"

    def traffic(self) -> dict[str, int]:
        split: dict[str, int] = {}
        for target in (self.cp.get_service(self.namespace, "podinfo").get("status") or {}).get(
            "traffic"
        ) or []:
            if target.get("percent"):
                split[target["revisionName"]] = split.get(target["revisionName"], 0) + target["percent"]
        return split

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            subprocess.run([podman(), "kill", self.name], capture_output=True, check=False)
            self.process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def container(control_plane: ControlPlane, namespace: str, image: str) -> Iterator[Container]:
    """podinfo 6.0.0 serving, and the first run of the image initialises it (exit 0, `initialized`)."""
    control_plane.create_podinfo(namespace)
    control_plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    runner = Container(control_plane, namespace, image)
    try:
        first = runner.run(canary_spec(namespace))
        assert first.code == 0, first.stderr
        assert first.results["decision"] == "initialized"
        assert first.results["primary-revision"] == "podinfo-00001"
        yield runner
    finally:
        runner.cleanup()


@pytest.mark.cluster
def test_seed_promote_then_rollback_in_the_container(container: Container) -> None:
    ns = container.namespace
    container.cp.set_image(ns, "podinfo", f"{PODINFO}:6.0.1")
    promoted = container.run(canary_spec(ns, interval="2s"))
    assert promoted.code == 0, promoted.stderr
    assert promoted.results["decision"] == "promoted"
    assert promoted.results["canary-revision"] == promoted.results["primary-revision"] == "podinfo-00002"
    assert promoted.report["decision"] == "promoted"
    assert container.traffic() == {"podinfo-00002": 100}
    container.cp.set_image(ns, "podinfo", f"{PODINFO}:6.0.2-fault-5xx-60")
    rolled_back = container.run(canary_spec(ns, interval="2s", threshold=2))
    assert rolled_back.code == 3, rolled_back.stderr
    assert (rolled_back.results["decision"], rolled_back.results["reason"]) == (
        "rolled-back",
        "failed-checks-threshold",
    )
    assert rolled_back.report["decision"] == "rolled-back"
    assert container.traffic() == {"podinfo-00002": 100}
    assert "Exit 3." in rolled_back.stderr


@pytest.mark.cluster
def test_podman_stop_mid_analysis_exits_143_with_the_primary_restored(container: Container) -> None:
    ns = container.namespace
    container.cp.set_image(ns, "podinfo", f"{PODINFO}:6.0.1")
    container.start(canary_spec(ns, interval="2s", max_weight=80))
    wait_for(lambda: container.traffic().get("podinfo-00002", 0) >= 20, timeout=90, what="canary at 20%")
    stopped = subprocess.run(
        [podman(), "stop", "--time", "60", container.name],
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    assert stopped.returncode == 0, stopped.stderr
    # `podman stop` returns once the container has exited: the primary is already restored by then.
    assert container.traffic() == {"podinfo-00001": 100}
    ran = container.wait(timeout=30)
    assert ran.code == 143, ran.stderr
    assert (ran.results["decision"], ran.results["reason"]) == ("failed", "interrupted-sigterm")
    assert "Traffic: 100% on podinfo-00001" in ran.stderr


@pytest.mark.cluster
def test_podman_kill_leaves_what_a_rerun_resumes(container: Container) -> None:
    ns = container.namespace
    container.cp.set_image(ns, "podinfo", f"{PODINFO}:6.0.1")
    spec = canary_spec(ns, interval="2s")
    container.start(spec, "--lease-duration", "4s")
    wait_for(lambda: container.traffic().get("podinfo-00002", 0) >= 20, timeout=90, what="canary at 20%")
    killed = subprocess.run(
        [podman(), "kill", "-s", "KILL", container.name], capture_output=True, text=True, check=False
    )
    assert killed.returncode == 0, killed.stderr
    assert container.wait(timeout=60).code == 137
    weight = container.traffic().get("podinfo-00002", 0)
    assert 0 < weight < 100  # left without an owner until the rerun takes it
    rerun = container.run(spec, "--lease-duration", "4s")
    assert rerun.code == 0, rerun.stderr
    assert rerun.results["decision"] == "promoted"
    assert "found an analysis of podinfo-00002 interrupted at" in rerun.stderr
    assert container.traffic() == {"podinfo-00002": 100}

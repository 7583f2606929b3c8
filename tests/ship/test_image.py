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
import hashlib
import http.server
import json
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
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
from tests.ship.conftest import env_value
from tests.ship.image import (
    DEFAULT_BASE_SIZE,
    RUNTIME,
    SIZE_GOAL,
    ULIMITS,
    added_to_base,
    build,
    local_base,
    podman,
)

# Every test here needs podman and builds the image (minutes when cold), so all run with the cluster tests
# (`make test`), none with `make unit`.
pytestmark = pytest.mark.cluster


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


def test_the_labels_name_the_base_and_version(image: str) -> None:
    inspected = subprocess.run(
        [podman(), "image", "inspect", "--format", "{{json .Labels}}", image],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert inspected.returncode == 0, inspected.stderr
    labels = json.loads(inspected.stdout)
    assert labels["org.opencontainers.image.base.name"] == local_base()
    assert labels["org.opencontainers.image.version"] == step.__version__


def _python_in(image: str, code: str) -> subprocess.CompletedProcess[str]:
    cmd = _podman_run(image, "-c", code)
    cmd[cmd.index(image) : cmd.index(image)] = ["--entrypoint", "python"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)


def _step_digest(files: list[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, data in sorted(files):
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def test_the_image_runs_the_code_of_this_checkout(image: str) -> None:
    """Every module of the installed `step` package is this checkout's: a layer cache that reused an
    older install (buildah did, before the Dockerfile copied the wheel) would test stale code."""
    probe = (
        "import hashlib, pathlib, step;"
        "root = pathlib.Path(step.__file__).parent;"
        "d = hashlib.sha256();"
        "[d.update(str(p.relative_to(root)).encode() + b'\\0' + p.read_bytes() + b'\\0')"
        " for p in sorted(root.rglob('*.py'), key=lambda p: str(p.relative_to(root)))];"
        "print(d.hexdigest())"
    )
    done = _python_in(image, probe)
    assert done.returncode == 0, done.stderr
    root = Path(step.__file__).parent
    local = _step_digest([(str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*.py")])
    assert done.stdout.strip() == local


def test_the_trimmed_kubernetes_client_works_and_pips_record_agrees(image: str) -> None:
    """The Dockerfile deletes the client's asyncio copy and keeps its generated API and models as
    bytecode only, rewriting the package's RECORD: nothing of `kubernetes.aio` is importable, no source
    is left under client/api and client/models, every file the record lists exists and every file of
    the package is listed, the models load without their source, and the watch still reads a method's
    return type from its docstring (which a docstring-stripping compile would break)."""
    probe = (
        "import importlib.metadata as md, importlib.util as u, importlib.machinery as m, pathlib;"
        "from kubernetes import client, watch;"
        "d = md.distribution('kubernetes');"
        "listed = {pathlib.Path(d.locate_file(f)).resolve() for f in d.files};"
        "top = pathlib.Path(d.locate_file('kubernetes')).resolve();"
        "present = {p.resolve() for p in top.rglob('*') if p.is_file()};"
        "gen = [top / 'client' / 'api', top / 'client' / 'models'];"
        "print(u.find_spec('kubernetes.aio'),"
        " sum(1 for g in gen for _ in g.rglob('*.py')),"
        " sum(not p.exists() for p in listed), len(present - listed),"
        " type(u.find_spec('kubernetes.client.models.v1_pod').loader) is m.SourcelessFileLoader,"
        " client.V1Pod(metadata=client.V1ObjectMeta(name='p')).metadata.name,"
        " watch.Watch().get_return_type(client.CoreV1Api().list_namespaced_pod).__name__)"
    )
    done = _python_in(image, probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "0", "0", "0", "True", "p", "V1Pod"]


def test_aiohttp_is_gone_and_pip_check_names_only_that(image: str) -> None:
    """aiohttp and what only it needs are uninstalled (the client needs them for kubernetes.aio alone):
    none is importable, and `pip check` reports the kubernetes client's two requirements on them and
    nothing else, so a real dependency conflict would still show."""
    probe = (
        "import importlib.util as u, subprocess, sys;"
        "gone = ['aiohttp', 'aiohttp_retry', 'aiohappyeyeballs', 'aiosignal', 'frozenlist', 'multidict',"
        " 'propcache', 'yarl'];"
        "print([m for m in gone if u.find_spec(m)]);"
        "sys.stdout.flush();"
        "subprocess.run([sys.executable, '-m', 'pip', 'check'])"
    )
    done = _python_in(image, probe)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "[]", done.stdout + done.stderr
    assert sorted(line.split(" requires ")[1] for line in lines[1:]) == [
        "aiohttp, which is not installed.",
        "aiohttp-retry, which is not installed.",
    ], done.stdout
    assert all(line.startswith("kubernetes ") for line in lines[1:]), done.stdout


def test_the_standard_library_canary_step_imports_is_byte_compiled(image: str) -> None:
    """The local base has no .pyc files, like the python slim base: with a read-only root every module
    without one would be compiled again at each start. The Dockerfile compiles those canary-step
    imports."""
    probe = (
        "import importlib, importlib.util as u, os, pkgutil, step, sys, sysconfig;"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(step.__path__, 'step.')];"
        "lib = sysconfig.get_path('stdlib') + '/';"
        "files = {f for f in (getattr(m, '__file__', None) or '' for m in list(sys.modules.values()))"
        " if f.startswith(lib) and f.endswith('.py')};"
        "print(len(files), sorted(f for f in files if not os.path.exists(u.cache_from_source(f)))[:5])"
    )
    done = _python_in(image, probe)
    assert done.returncode == 0, done.stderr
    count, missing = done.stdout.split(" ", 1)
    assert int(count) > 100, done.stdout
    assert missing.strip() == "[]", done.stdout


def test_what_the_dockerfile_adds_to_its_base_fits_the_size_goal(image: str) -> None:
    """Under 200 MB on the default base, which cannot be pulled here: what the final stage adds to the
    local base must stay under the goal minus the default base's published size (tests/ship/image.py)."""
    added = added_to_base(image, local_base())
    assert added + DEFAULT_BASE_SIZE < SIZE_GOAL, f"{added} bytes added to the base"


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


# --- under Tekton's own entrypoint --------------------------------------------------------------------

TASK = Path(__file__).resolve().parents[2] / "tekton" / "knative-canary.yaml"


def _task() -> dict[str, Any]:
    task: dict[str, Any] = yaml.safe_load(TASK.read_text())
    return task


def _task_step(name: str) -> dict[str, Any]:
    step_: dict[str, Any] = next(s for s in _task()["spec"]["steps"] if s["name"] == name)
    return step_


def _tekton_env(step_name: str, workspaces: dict[str, str], **extra: str) -> dict[str, str]:
    """The step's env as Tekton substitutes it: params by their defaults, workspaces by their paths."""
    params = {p["name"]: str(p.get("default", "")) for p in _task()["spec"]["params"]}
    env = {}
    for item in _task_step(step_name).get("env", []):
        value = env_value(item)
        for name, default in params.items():
            value = value.replace(f"$(params.{name})", default)
        for name, path in workspaces.items():
            value = value.replace(f"$(workspaces.{name}.path)", path)
        env[item["name"]] = value
    return {**env, **extra}


def _entrypoint_args(command: list[str]) -> list[str]:
    """The arguments Tekton's controller gives the entrypoint of the analyse step (pkg/pod/entrypoint.go)."""
    results = ",".join(r["name"] for r in _task()["spec"]["results"])
    return [
        "-post_file", "/tekton/run/0/out", "-termination_path", "/tekton/termination",
        "-step_metadata_dir", "/tekton/run/0/status", "-results", results,
        "-on_error", _task_step("analyse")["onError"], "-entrypoint", command[0], "--", *command[1:],
    ]  # fmt: skip


@dataclass
class UnderTekton:
    container_exit: int
    message: str
    # What the entrypoint left in the step's metadata dir, $(steps.analyse.exitCode.path).
    step_exit_code: str
    stderr: str


def _under_entrypoint(
    image: str,
    entrypoint: Path,
    work: Path,
    command: list[str],
    *,
    env: dict[str, str],
    mounts: tuple[str, ...],
) -> UnderTekton:
    # A fresh /tekton/run per run, as each pod gets its own emptyDir (each run has another random UID).
    shutil.rmtree(work / "run", ignore_errors=True)
    for sub in ("results", "run"):
        (work / sub).mkdir(exist_ok=True)
        (work / sub).chmod(0o777)
    termination = work / "termination"
    termination.write_text("")
    termination.chmod(0o666)
    all_mounts = (
        f"{entrypoint}:/tekton/bin/entrypoint:ro",
        f"{work / 'results'}:/tekton/results:rw",
        f"{work / 'run'}:/tekton/run:rw",
        f"{termination}:/tekton/termination:rw",
        *mounts,
    )
    cmd = _podman_run(image, *_entrypoint_args(command), mounts=all_mounts)
    at = cmd.index(image)
    cmd[at:at] = ["--entrypoint", "/tekton/bin/entrypoint", *[f"--env={k}={v}" for k, v in env.items()]]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    exit_file = work / "run" / "0" / "status" / "exitCode"
    return UnderTekton(
        container_exit=done.returncode,
        message=termination.read_text(),
        step_exit_code=exit_file.read_text().strip() if exit_file.exists() else "",
        stderr=done.stderr,
    )


def _taskrun_status(tool: Path, steps: list[dict[str, Any]]) -> dict[str, Any]:
    out = subprocess.run(
        [str(tool)], input=json.dumps({"task": str(TASK), "steps": steps}), capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    answer: dict[str, Any] = json.loads(out.stdout)
    return answer


def _exit_step(step_exit_code_file: Path) -> int:
    """The Task's `exit` step: its script, with /bin/sh, on the exit code the entrypoint recorded."""
    env = {
        "PATH": "/usr/bin:/bin",
        **_tekton_env("exit", {}, CANARY_STEP_EXIT_CODE_FILE=str(step_exit_code_file)),
    }
    done = subprocess.run(
        ["/bin/sh", "-c", _task_step("exit")["script"]], env=env, capture_output=True, check=False
    )
    return done.returncode


@pytest.mark.cluster
def test_under_tektons_entrypoint_results_reach_the_taskrun(
    container: Container, go_tools: dict[str, Path]
) -> None:
    """The analyse step's script, in the image, under Tekton's entrypoint, as the Task declares it: a
    promotion and a rollback, each read back with Tekton's own MakeTaskRunStatus; the rollback's exit 3
    is a failed step (onError: continue) whose results are still there, and the TaskRun fails on it."""
    ns = container.namespace
    work = container.dir / "tekton"
    work.mkdir()
    work.chmod(0o755)
    (work / "script").write_text(_task_step("analyse")["script"])
    (work / "script").chmod(0o755)
    source = work / "source"
    source.mkdir()
    source.chmod(0o755)
    (source / "kubeconfig").write_text((container.dir / "kubeconfig").read_text())
    (source / "kubeconfig").chmod(0o644)
    workspaces = {
        "source": "/workspace/source",
        "kubeconfig": "/workspace/source",
        "report": "/workspace/out",
    }
    mounts = (
        f"{work / 'script'}:/tekton/scripts/script-0-analyse:ro",
        f"{source}:/workspace/source:ro",
        f"{container.out}:/workspace/out:rw",
    )
    for image_tag, threshold, expected_code, decision in (
        ("6.0.1", 5, 0, "promoted"),
        ("6.0.2-fault-5xx-60", 2, 3, "rolled-back"),
    ):
        container.cp.set_image(ns, "podinfo", f"{PODINFO}:{image_tag}")
        spec = yaml.safe_dump(canary_spec(ns, interval="2s", threshold=threshold))
        (source / "canary.yaml").write_text(spec.replace("LOADTESTER", container.cp.loadtester_url + "/"))
        (source / "canary.yaml").chmod(0o644)
        env = _tekton_env(
            "analyse",
            workspaces,
            CANARY_STEP_SPEC="canary.yaml",
            CANARY_STEP_METRICS_SERVER=container.cp.prometheus_url,
        )
        ran = _under_entrypoint(
            container.image,
            go_tools["tekton-entrypoint"],
            work,
            ["/tekton/scripts/script-0-analyse"],
            env=env,
            mounts=mounts,
        )
        assert ran.container_exit == 0, "onError: continue: the container itself succeeds"
        assert ran.step_exit_code == str(expected_code), ran
        assert len(ran.message.encode()) <= 4096
        exit_code = _exit_step(work / "run" / "0" / "status" / "exitCode")
        status = _taskrun_status(
            go_tools["taskrunstatus"],
            [
                {"name": "analyse", "exitCode": 0, "message": ran.message},
                {"name": "exit", "exitCode": exit_code, "message": ""},
            ],
        )
        files = {p.name: p.read_text() for p in (work / "results").iterdir()}
        assert status["results"] == files, (status, files)
        assert status["results"]["decision"] == decision
        assert status["results"]["report"] == "/workspace/out/canary-step-report.json"
        assert json.loads((container.out / "canary-step-report.json").read_text())["decision"] == decision
        analyse = next(s for s in status["steps"] if s["name"] == "analyse")
        assert analyse["exitCode"] == expected_code, status
        assert status["succeeded"] == ("True" if expected_code == 0 else "False"), status
        for stale in (work / "results").iterdir():
            stale.unlink()


def test_worst_case_results_fit_the_termination_message_under_tektons_entrypoint(
    image: str, go_tools: dict[str, Path]
) -> None:
    """Long revision names and long reasons, fitted by canary-step's writer in the image and written by
    Tekton's entrypoint: within 4096 bytes, every result read back by MakeTaskRunStatus, exit 3 kept."""
    work = Path(tempfile.mkdtemp(prefix="canary-step-tekton-"))
    work.chmod(0o755)
    try:
        code = (
            "import sys\n"
            "from step.contract import RESULT_NAMES, TERMINATION_MESSAGE_BUDGET\n"
            "from step.report.results import fit, write_results_dir\n"
            "long = {n: sys.argv[1] * 3000 for n in RESULT_NAMES}\n"
            "write_results_dir('/tekton/results', fit(long, budget=TERMINATION_MESSAGE_BUDGET))\n"
            "sys.exit(3)\n"
        )
        for unit in ("r", "<&>", 'é"\\\n'):
            ran = _under_entrypoint(
                image, go_tools["tekton-entrypoint"], work, ["python", "-c", code, unit], env={}, mounts=()
            )
            assert ran.step_exit_code == "3", ran
            assert 3000 < len(ran.message.encode()) <= 4096, len(ran.message.encode())
            status = _taskrun_status(
                go_tools["taskrunstatus"], [{"name": "analyse", "exitCode": 0, "message": ran.message}]
            )
            files = {p.name: p.read_text() for p in (work / "results").iterdir()}
            assert status["results"] == files and len(files) == len(_task()["spec"]["results"])
            assert all(v.startswith(unit[:1]) for v in files.values())
            assert next(s for s in status["steps"] if s["name"] == "analyse")["exitCode"] == 3
            for stale in (work / "results").iterdir():
                stale.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- Argo's output parameters -------------------------------------------------------------------------

TEMPLATE = Path(__file__).resolve().parents[2] / "argo" / "workflowtemplate.yaml"


def _argo_template() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    (template,) = [t for t in doc["spec"]["templates"] if "container" in t]
    return template


def _argo_outputs(template: dict[str, Any], tmp_dir: Path) -> dict[str, str]:
    """What Argo's wait container saves: each output parameter's file (under the /tmp emptyDir), or its
    default when the file is missing."""
    values = {}
    for parameter in template["outputs"]["parameters"]:
        path = Path(parameter["valueFrom"]["path"])
        assert path.is_relative_to("/tmp"), "the outputs live in the /tmp emptyDir"
        on_host = tmp_dir / path.relative_to("/tmp")
        values[parameter["name"]] = (
            on_host.read_text() if on_host.exists() else parameter["valueFrom"]["default"]
        )
    return values


@pytest.mark.cluster
def test_argo_output_parameters_after_promote_rollback_and_exit_4(container: Container) -> None:
    """The template's container (its command, args and env, inputs at their defaults) in the image, /tmp an
    emptyDir: after exit 0, 3 and 4 every outputs.parameters[].valueFrom.path holds the right value."""
    template = _argo_template()
    ns = container.namespace
    defaults = {p["name"]: str(p.get("value", "")) for p in template["inputs"]["parameters"]}
    workspace = container.dir / "argo-workspace"
    workspace.mkdir()
    workspace.chmod(0o755)
    for image_tag, threshold, metrics, code, decision, reason in (
        ("6.0.1", 5, container.cp.prometheus_url, 0, "promoted", None),
        ("6.0.2-fault-5xx-60", 2, container.cp.prometheus_url, 3, "rolled-back", "failed-checks-threshold"),
        ("6.0.3", 5, "http://127.0.0.1:1", 4, "failed", None),
    ):
        container.cp.set_image(ns, "podinfo", f"{PODINFO}:{image_tag}")
        spec = yaml.safe_dump(canary_spec(ns, interval="2s", threshold=threshold))
        (workspace / "canary.yaml").write_text(spec.replace("LOADTESTER", container.cp.loadtester_url + "/"))
        (workspace / "canary.yaml").chmod(0o644)
        inputs = {**defaults, "canary": "canary.yaml", "metrics-server": metrics}
        env = {}
        for item in template["container"]["env"]:
            value = env_value(item)
            for name, given in inputs.items():
                value = value.replace(f"{{{{inputs.parameters.{name}}}}}", given)
            env[item["name"]] = value
        # Argo runs it in-cluster with its ServiceAccount; here the API server is reached by a kubeconfig.
        env["CANARY_STEP_KUBECONFIG"] = "/var/run/kube/config"
        tmp_dir = Path(tempfile.mkdtemp(prefix="canary-step-argo-tmp-", dir=container.dir))
        tmp_dir.chmod(0o1777)
        cmd = _podman_run(
            container.image,
            *template["container"]["args"],
            mounts=(
                f"{container.dir / 'kubeconfig'}:/var/run/kube/config:ro",
                f"{workspace}:/workspace:ro",
                f"{tmp_dir}:/tmp:rw",
            ),
        )
        cmd.remove("--tmpfs")
        cmd.remove("/tmp:rw,mode=1777")
        at = cmd.index(container.image)
        entry = template["container"]["command"]
        cmd[at:at] = ["--entrypoint", json.dumps(entry), *[f"--env={k}={v}" for k, v in env.items()]]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
        assert done.returncode == code, done.stderr
        outputs = _argo_outputs(template, tmp_dir)
        assert outputs["decision"] == decision, (outputs, done.stderr)
        if reason:
            assert outputs["reason"] == reason
        assert outputs["report"] == "/tmp/canary-step/canary-step-report.json"
        report = tmp_dir / "canary-step" / "canary-step-report.json"
        assert json.loads(report.read_text())["decision"] == decision
        if code == 0:
            assert outputs["primary-revision"] == outputs["canary-revision"] != ""
            assert outputs["canary-weight"] == "50"
        if code == 4:
            assert outputs["reason"] not in ("", "no-results-written"), outputs
            assert container.traffic() == {"podinfo-00002": 100}, "exit 4: traffic on the primary"
        for name, value in outputs.items():
            assert value == (tmp_dir / "canary-step" / "results" / name).read_text(), name


# --- measured: benchmarks, not tests (`make bench-image` prints them; the goals are in docs/pipelines.md) ---


class _FirstRequest(http.server.BaseHTTPRequestHandler):
    first: float | None = None

    def do_GET(self) -> None:
        if _FirstRequest.first is None:
            _FirstRequest.first = time.monotonic()
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.bench
def test_measure_container_start_to_first_api_request(image: str, tmp_path: Path) -> None:
    """`podman run` to the first request on an API server stand-in on loopback (it answers 503)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FirstRequest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = Path(tempfile.mkdtemp(prefix="canary-step-start-"))
    work.chmod(0o755)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": url}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
        (work / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        (work / "canary.yaml").write_text(yaml.safe_dump(canary_spec("default", load=False)))
        for name in ("kubeconfig", "canary.yaml"):
            (work / name).chmod(0o644)
        timings = []
        for _ in range(3):
            _FirstRequest.first = None
            cmd = _podman_run(
                image, "run", "/w/canary.yaml", "--kubeconfig", "/w/kubeconfig", "--metrics-server", url,
                mounts=(f"{work}:/w:ro",),
            )  # fmt: skip
            started = time.monotonic()
            process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: _FirstRequest.first is not None, timeout=60, what="the first API request")
            assert _FirstRequest.first is not None
            timings.append(_FirstRequest.first - started)
            process.wait(timeout=120)
        print(f"\ncontainer start to first API request: {', '.join(f'{t:.2f}' for t in timings)} s")
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(work, ignore_errors=True)


_PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(['canary-step', *sys.argv[1:]])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
    "print(f'peak RSS {peak:.0f} MiB', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


@pytest.mark.cluster
@pytest.mark.bench
def test_measure_peak_memory_of_a_promotion_in_the_container(container: Container) -> None:
    container.cp.set_image(container.namespace, "podinfo", f"{PODINFO}:6.0.1")
    cmd = container.command(canary_spec(container.namespace, interval="1s"))
    at = cmd.index(container.image)
    cmd[at:at] = ["--entrypoint", json.dumps(["python", "-c", _PEAK_RSS])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    print(f"\npromotion in the container: {done.stderr.strip().splitlines()[-1]}")

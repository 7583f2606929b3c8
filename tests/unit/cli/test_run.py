"""`canary-step run` at the edge, without a cluster: usage errors, bad specs and an unreachable API
server all exit with the contract's code, say why on stderr, and still write every result."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from step.cli import cli
from step.contract import RESULT_NAMES

ISTIO_CANARY = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: istio
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis: {interval: 1m, threshold: 5, maxWeight: 50, stepWeight: 10}
"""

KNATIVE_CANARY = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: knative
  targetRef: {apiVersion: serving.knative.dev/v1, kind: Service, name: podinfo}
  analysis: {interval: 1s, threshold: 5, maxWeight: 50, stepWeight: 10}
"""


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["run", *args], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def results(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in directory.iterdir()}


def test_help_explains_every_option_with_its_variable() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    for option in (
        "--canary-ref",
        "--kubeconfig",
        "--context",
        "--namespace",
        "--metrics-server",
        "--image",
        "--container",
        "--results-dir",
        "--report",
        "--log-format",
        "--timeout",
        "--consecutive-error-limit",
    ):
        assert option in out
        assert "CANARY_STEP_" + option.lstrip("-").upper().replace("-", "_") in out.replace("\n", "").replace(
            " ", ""
        )
    assert "http://prometheus:9090" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either FILE or --canary-ref"),
        (("x.yaml", "--canary-ref", "test/podinfo"), "exactly one of them"),
        (("--canary-ref", "podinfo"), "is not NAMESPACE/NAME"),
        (("--canary-ref", "test/podinfo", "--container", "app"), "--container needs --image"),
        (("--canary-ref", "test/podinfo", "--timeout", "soon"), "is not a duration"),
        (("--canary-ref", "test/podinfo", "--log-format", "xml"), "'xml' is not one of"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    code, _, err = invoke(*args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_an_invalid_spec_exits_2_and_still_writes_the_results(tmp_path: Path) -> None:
    code, out, err = invoke(
        "examples/invalid/schedule.yaml",
        "--results-dir",
        str(tmp_path / "r"),
        "--report",
        str(tmp_path / "report.json"),
    )
    assert code == 2
    assert "examples/invalid/schedule.yaml:" in err and "Traceback" not in err
    written = results(tmp_path / "r")
    assert set(written) == set(RESULT_NAMES)
    assert written["decision"] == "failed" and written["reason"] == "invalid-spec"
    assert json.loads(out)["decision"] == "failed"
    assert json.loads((tmp_path / "report.json").read_text())["exitCode"] == 2


def test_a_non_knative_provider_is_refused_with_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "istio.yaml"
    spec.write_text(ISTIO_CANARY)
    code, _, err = invoke(
        str(spec), "--results-dir", str(tmp_path / "r"), "--report", str(tmp_path / "r.json")
    )
    assert code == 2
    assert "analyses Knative Services only" in err and "'istio'" in err
    assert results(tmp_path / "r")["reason"] == "invalid-spec"


def test_a_missing_kubeconfig_exits_2_and_says_traffic_is_untouched(tmp_path: Path) -> None:
    # a mistake no retry can fix (issue 14): exit 2, not 4
    spec = tmp_path / "canary.yaml"
    spec.write_text(KNATIVE_CANARY)
    env = {"CANARY_STEP_RESULTS_DIR": str(tmp_path / "r"), "CANARY_STEP_REPORT": str(tmp_path / "r.json")}
    code, _, err = invoke(str(spec), "--kubeconfig", str(tmp_path / "missing"), env=env)
    assert code == 2
    assert f"the kubeconfig file {tmp_path / 'missing'} (--kubeconfig) does not exist" in err
    assert "Traffic: untouched. Exit 2." in err
    written = results(tmp_path / "r")
    assert written["decision"] == "failed" and written["reason"] == "usage-error"
    assert written["report"] == str(tmp_path / "r.json")


def test_the_github_outputs_are_written_when_asked(tmp_path: Path) -> None:
    spec = tmp_path / "canary.yaml"
    spec.write_text(KNATIVE_CANARY)
    out, summary = tmp_path / "out", tmp_path / "summary.md"
    env = {
        "GITHUB_OUTPUT": str(out),
        "GITHUB_STEP_SUMMARY": str(summary),
        "CANARY_STEP_REPORT": str(tmp_path / "r.json"),
    }
    code, _, _ = invoke(str(spec), "--kubeconfig", str(tmp_path / "missing"), env=env)
    assert code == 2
    lines = out.read_text().splitlines()
    assert "decision=failed" in lines and "reason=usage-error" in lines
    assert "| decision | `failed` |" in summary.read_text()


class SilentServer:
    """Accepts TCP connections and never answers: an API server that hangs mid-request."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()
        self.thread.join(timeout=5)


def kubeconfig_for(port: int, path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


@pytest.mark.parametrize("source", ["file", "canary-ref"])
def test_sigterm_while_an_api_call_hangs_exits_143_with_results(tmp_path: Path, source: str) -> None:
    """With a file the hang is in the driver's first read; with --canary-ref it is before the driver."""
    server = SilentServer()
    try:
        spec = tmp_path / "canary.yaml"
        spec.write_text(KNATIVE_CANARY)
        where = [str(spec)] if source == "file" else ["--canary-ref", "test/podinfo"]
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("canary-step")),
                "run",
                *where,
                "--kubeconfig",
                str(kubeconfig_for(server.port, tmp_path / "kubeconfig")),
                "--results-dir",
                str(tmp_path / "r"),
                "--report",
                str(tmp_path / "r.json"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert server.accepted.wait(timeout=30), "canary-step never called the API server"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        server.close()
    assert process.returncode == 143, stderr
    assert "Traffic: untouched. Exit 143." in stderr
    written = results(tmp_path / "r")
    assert written["decision"] == "failed" and written["reason"] == "interrupted-sigterm"


@pytest.mark.parametrize(
    ("analysis", "field"),
    [
        (
            "{interval: 1s, threshold: 5, iterations: 5, match: [{headers: {x-canary: {exact: insider}}}]}",
            "spec.analysis.iterations: A/B testing (iterations with match)",
        ),
        (
            "{interval: 1s, threshold: 5, maxWeight: 50, stepWeight: 10, stepWeightPromotion: 10}",
            "spec.analysis.stepWeightPromotion: a stepped promotion",
        ),
        (
            "{interval: 1s, threshold: 5, maxWeight: 50, stepWeight: 10, mirror: true}",
            "spec.analysis.mirror: traffic mirroring",
        ),
    ],
)
def test_strategies_knative_cannot_do_are_refused_with_exit_2(
    tmp_path: Path, analysis: str, field: str
) -> None:
    spec = tmp_path / "strategy.yaml"
    spec.write_text(
        KNATIVE_CANARY.replace("{interval: 1s, threshold: 5, maxWeight: 50, stepWeight: 10}", analysis)
    )
    code, _, err = invoke(str(spec), "--report", str(tmp_path / "r.json"))
    assert code == 2, err
    # the same finding, with file and line, as `validate` and `plan` report it (spec.rules)
    assert f"{spec}:" in err and f"{field} cannot be carried out for a Knative Service" in err

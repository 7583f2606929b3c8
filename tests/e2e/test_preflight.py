"""The preflight and the exit-code taxonomy, per cause, on the local control plane (issue 14).

Each row is one mistake or one outage, run through the real `canary-step run` against a Service that
was never pinned: the exit code (2: a mistake no retry fixes; 4: what a retry may fix), the `reason`
result that agrees with it, the message a person acts on, the last line "Traffic: untouched", and
nothing written (no annotation, no Event). `plan --check` runs the same preflight without writing.
"""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import ControlPlane
from tests.e2e.test_run import CANARY_STEP, PODINFO, Step, canary_spec

pytestmark = pytest.mark.cluster


class Answering503:
    """A metrics server that answers every request with 503 (an outage a retry may outlast)."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Cause:
    name: str
    code: int
    reason: str
    says: str  # in the last line (the headline)
    args: Callable[[Step, dict[str, str]], tuple[str, ...]] = lambda step, extra: ()
    # a lambda, not the function: a function default would bind as a method
    spec: Callable[[str], dict[str, Any]] = lambda ns: canary_spec(ns)  # noqa: PLW0108


def _webhook(url: str) -> Callable[[str], dict[str, Any]]:
    return lambda ns: canary_spec(ns, webhooks=[{"name": "gate", "type": "confirm-rollout", "url": url}])


CAUSES = [
    Cause(
        "missing kubeconfig",
        2,
        "usage-error",
        "(--kubeconfig) does not exist; pass --kubeconfig PATH or set KUBECONFIG",
        args=lambda step, _: ("--kubeconfig", str(step.tmp / "no-such-kubeconfig")),
    ),
    Cause(
        "wrong context",
        2,
        "usage-error",
        'has no context "nope"',
        args=lambda step, _: ("--context", "nope"),
    ),
    Cause(
        "a namespace that has no such Service",
        2,
        "not-found",
        'there is no Knative Service "podinfo" in namespace "shopp"; namespace "shopp" has no Knative '
        "Services at all",
        args=lambda step, _: ("--namespace", "shopp"),
    ),
    Cause(
        "a misspelt Service",
        2,
        "not-found",
        'there is no Knative Service "podinf" in namespace "NS"; did you mean \'podinfo\'?',
        spec=lambda ns: {
            **canary_spec(ns),
            "spec": {
                **canary_spec(ns)["spec"],
                "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinf"},
            },
        },
    ),
    Cause(
        "an unresolvable container",
        2,
        "usage-error",
        'has no container named "app"',
        args=lambda step, _: ("--image", f"{PODINFO}:6.0.1", "--container", "app"),
    ),
    Cause(
        "a metrics URL without a scheme",
        2,
        "usage-error",
        "Prometheus address 'prometheus:9090' is not a URL",
        args=lambda step, _: ("--metrics-server", "prometheus:9090"),
    ),
    Cause(
        "a metrics URL that is not Prometheus's",
        2,
        "usage-error",
        "error response: Status 404",
        args=lambda step, _: ("--metrics-server", step.cp.prometheus_url + "/not-prometheus"),
    ),
    Cause(
        "a malformed webhook URL",
        2,
        "invalid-spec",
        "spec.analysis.webhooks[2].url: 'http://:8080/gate' is not an absolute http:// or https:// URL",
        spec=_webhook("http://:8080/gate"),
    ),
    Cause(
        "an unreachable metrics server",
        4,
        "metrics-server-unreachable",
        "Prometheus at http://127.0.0.1:1 is unreachable: connection refused; check the address "
        "(--metrics-server",
        args=lambda step, _: ("--metrics-server", "http://127.0.0.1:1"),
    ),
    Cause(
        "a metrics server answering 503",
        4,
        "metrics-server-unreachable",
        "error response: Status 503",
        args=lambda step, extra: ("--metrics-server", extra["503"]),
    ),
]


@pytest.fixture
def fresh(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Step]:
    """podinfo serving one Ready revision, never pinned: any write would show."""
    control_plane.create_podinfo(namespace)
    control_plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    yield Step(control_plane, namespace, tmp_path)


@pytest.fixture(scope="module")
def answering_503() -> Iterator[Answering503]:
    server = Answering503()
    yield server
    server.stop()


@pytest.mark.parametrize("cause", CAUSES, ids=[c.name for c in CAUSES])
def test_each_cause_has_its_exit_code_and_reason_and_writes_nothing(
    fresh: Step, cause: Cause, answering_503: Answering503
) -> None:
    step, ns = fresh, fresh.namespace
    result = step.run(cause.spec(ns), args=cause.args(step, {"503": answering_503.url}), timeout=60)
    last = result.stderr.rstrip().splitlines()[-1]
    assert result.code == cause.code, result.stderr
    assert result.results["decision"] == "failed"
    assert result.results["reason"] == cause.reason, result.stderr
    assert cause.says.replace("NS", ns) in last, result.stderr
    assert last.startswith(f"failed ({cause.reason}): ")
    assert last.endswith(f"Traffic: untouched. Exit {cause.code}."), last
    assert "Traceback" not in result.stderr
    # nothing was written: no annotation, no Event (not even on a Service that does not exist)
    assert step.annotation() is None
    assert step.events() == []
    assert step.traffic() == {"podinfo-00001": 100}


def test_a_missing_canary_ref_is_exit_2_not_found(fresh: Step) -> None:
    ns = fresh.namespace
    command = [
        CANARY_STEP,
        "run",
        "--canary-ref",
        f"{ns}/nope",
        "--kubeconfig",
        str(fresh.cp.kubeconfig),
        "--results-dir",
        str(fresh.results_dir),
        "--report",
        str(fresh.report),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert (fresh.results_dir / "reason").read_text() == "not-found"
    assert done.stderr.rstrip().endswith("Traffic: untouched. Exit 2.")
    assert f'there is no Canary "nope" in namespace "{ns}"' in done.stderr


def test_plan_check_runs_the_same_preflight_and_writes_nothing(fresh: Step) -> None:
    ns = fresh.namespace
    spec = fresh.write(canary_spec(ns))
    base = [CANARY_STEP, "plan", str(spec), "--check", "--kubeconfig", str(fresh.cp.kubeconfig)]
    good = subprocess.run(
        [*base, "--metrics-server", fresh.cp.prometheus_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert "Preflight (against the cluster; nothing was written):" in good.stdout
    assert f"  Knative Service {ns}/podinfo: ok (Ready)" in good.stdout
    assert f"  metrics server {fresh.cp.prometheus_url}: ok (answers)" in good.stdout
    assert "  lease canary-step.podinfo: ok (free)" in good.stdout
    bad = subprocess.run(
        [*base, "--metrics-server", "http://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 4, bad.stderr
    assert (
        "  metrics server http://127.0.0.1:1: Prometheus at http://127.0.0.1:1 is unreachable" in bad.stdout
    )
    assert bad.stderr.rstrip().endswith("Traffic: untouched. Exit 4.")
    assert fresh.annotation() is None and fresh.events() == []


@pytest.mark.parametrize("command", ["plan --check", "run"])
def test_the_api_connection_is_closed_on_the_way_out(
    fresh: Step, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process (as a library user or a test calls it), `run` and `plan --check` close their pooled
    API connections before returning, an early exit's too: none is left for the garbage collector."""
    from click.testing import CliRunner  # noqa: PLC0415

    import step.cli.run as run_module  # noqa: PLC0415
    from step.cli import cli  # noqa: PLC0415

    made: list[Any] = []
    real_connect = run_module.connect

    def connect(**kwargs: Any) -> Any:
        made.append(real_connect(**kwargs))
        return made[-1]

    monkeypatch.setattr(run_module, "connect", connect)
    spec = fresh.write(canary_spec(fresh.namespace))
    args = [*command.split(), str(spec), "--kubeconfig", str(fresh.cp.kubeconfig)]
    args += ["--metrics-server", "http://127.0.0.1:1"]  # unreachable: exit 4 after the Service was read
    if command == "run":
        args += ["--results-dir", str(fresh.results_dir), "--report", str(fresh.report)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 4, result.output
    assert len(made) == 1
    kube = made[0]
    assert kube.requests.total > 0  # it did talk to the API server
    assert len(kube._api.rest_client.pool_manager.pools) == 0  # and kept no connection open
    # nor a watch thread, which would go on retrying once the API server is gone
    watching = f"watch {fresh.namespace}/podinfo"
    assert not [t.name for t in threading.enumerate() if t.name == watching]

"""Flagger v1.44 as a controller on the local control plane: the other client of ``make bench-flagger``.

Owns :class:`FlaggerController`, which, on a running :class:`tests.cluster.ControlPlane`:

1. installs **Flagger's own** CRDs (``artifacts/flagger/crd.yaml`` of the module; they replace the ones the
   harness generates from our schema, which carry the same names);
2. creates namespace ``flagger-system`` with ServiceAccount ``flagger``, the ClusterRole Flagger's Helm chart
   grants (``charts/flagger/templates/rbac.yaml``, its template lines dropped, named ``flagger``) and a
   ClusterRoleBinding; Flagger authenticates with a TokenRequest token of that ServiceAccount, so the API
   server's audit log tells its requests apart (user ``system:serviceaccount:flagger-system:flagger``);
3. runs ``flagger -mesh-provider knative -metrics-server <the plane's Prometheus>`` in a network namespace
   of its own with loopback only (:mod:`tests.cluster.netns`): Flagger's HTTP server binds ``:8080`` on
   every interface, which there is that namespace's loopback; relays on the namespace's 127.0.0.1 reach the
   API server, Prometheus and the load tester on the root namespace's loopback at the same ports, so the
   URLs Flagger is given are the ones every other client uses.

The binary is built by :mod:`tests.cluster.flagger_binaries`; nothing of Flagger's code is in the project.

Must not: run without root (the network namespace needs it), touch objects other than its namespace, its
RBAC objects and the Flagger CRDs, or leave a process or a namespace behind (:meth:`FlaggerController.stop`).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.cluster.apiserver import STOP_GRACE_S, ApiError, ApiServerError, _spawn, _stop_process, _tail
from tests.cluster.flagger_binaries import FLAGGER_VERSION, FlaggerBinaries, ensure
from tests.cluster.netns import Forwarder, PodNetwork

if TYPE_CHECKING:
    from tests.cluster import ControlPlane

FLAGGER_NAMESPACE = "flagger-system"
FLAGGER_ACCOUNT = "flagger"
FLAGGER_USER = f"system:serviceaccount:{FLAGGER_NAMESPACE}:{FLAGGER_ACCOUNT}"
CRD_BASE = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
ESTABLISHED_TIMEOUT_S = 30.0
START_TIMEOUT_S = 30.0
TOKEN_SECONDS = 6 * 3600


def flagger_crds(found: FlaggerBinaries) -> list[dict[str, Any]]:
    """Flagger's CRDs as the module ships them."""
    return [doc for doc in yaml.safe_load_all(found.crds.read_text()) if doc]


def chart_cluster_role(found: FlaggerBinaries, *, name: str = FLAGGER_ACCOUNT) -> dict[str, Any]:
    """The ClusterRole of Flagger's chart: the template's lines (``{{ ... }}``) dropped, named ``name``."""
    text = "\n".join(line for line in found.chart_rbac.read_text().splitlines() if "{{" not in line)
    for doc in yaml.safe_load_all(text):
        if doc and doc.get("kind") == "ClusterRole":
            return {**doc, "metadata": {"name": name}}
    raise ApiServerError(f"{found.chart_rbac} has no ClusterRole")


def _create_or_replace(plane: ControlPlane, path: str, manifest: dict[str, Any]) -> None:
    api = plane.api
    status, body = api.request("POST", path, body=manifest)
    if status == 409:
        item = f"{path}/{manifest['metadata']['name']}"
        _, current = api.request("GET", item)
        version = current.get("metadata", {}).get("resourceVersion")
        replacement = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": version}}
        status, body = api.request("PUT", item, body=replacement)
    if status not in (200, 201):
        raise ApiError(status, body, f"creating {path} {manifest['metadata']['name']}")


def install_flagger_crds(plane: ControlPlane, found: FlaggerBinaries) -> list[str]:
    """Create or replace Flagger's CRDs and wait until each is Established."""
    names = []
    for manifest in flagger_crds(found):
        _create_or_replace(plane, CRD_BASE, manifest)
        names.append(manifest["metadata"]["name"])
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    for name in names:
        while True:
            status, body = plane.api.request("GET", f"{CRD_BASE}/{name}")
            conditions = (body.get("status") or {}).get("conditions") or []
            if status == 200 and any(
                c.get("type") == "Established" and c.get("status") == "True" for c in conditions
            ):
                break
            if time.monotonic() > deadline:
                raise ApiServerError(f"Flagger's CRD {name} not Established within {ESTABLISHED_TIMEOUT_S} s")
            time.sleep(0.05)  # poll interval of a condition wait with a deadline
    return names


class FlaggerController:
    """Flagger running against ``plane``; :meth:`start`, then :meth:`stop` (idempotent)."""

    def __init__(self, plane: ControlPlane, workdir: Path, *, watch_namespace: str, log_level: str = "info"):
        self.plane = plane
        self.workdir = workdir
        self.watch_namespace = watch_namespace
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0
        self._network: PodNetwork | None = None
        self._relays: list[Forwarder] = []
        self._peak_rss_kb = 0

    @property
    def log_file(self) -> Path:
        return self.workdir / "flagger.log"

    def start(self, found: FlaggerBinaries | None = None) -> FlaggerController:
        found = found or ensure()
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            install_flagger_crds(self.plane, found)
            kubeconfig = self._account(found)
            self._network = PodNetwork.create(veth=False)
            for url in (self.plane.api.url, self.plane.prometheus_url, self.plane.loadtester_url):
                port = urllib.parse.urlsplit(url).port
                assert port is not None, url
                self._relays.append(Forwarder(self._network, port, port, address="127.0.0.1"))
            command = [
                *self._network.exec_prefix(),
                str(found.flagger),
                f"-kubeconfig={kubeconfig}",
                "-mesh-provider=knative",
                f"-metrics-server={self.plane.prometheus_url}",
                f"-namespace={self.watch_namespace}",
                f"-log-level={self.log_level}",
                "-zap-encoding=console",
                "-enable-leader-election=false",
            ]
            self.process = _spawn(command, self.log_file)
            self._wait_started(deadline=started + START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - started
        return self

    def _account(self, found: FlaggerBinaries) -> Path:
        api = self.plane.api
        with contextlib.suppress(ApiError):
            api.create_namespace(FLAGGER_NAMESPACE)
        api.create_service_account(FLAGGER_NAMESPACE, FLAGGER_ACCOUNT)
        _create_or_replace(
            self.plane, "/apis/rbac.authorization.k8s.io/v1/clusterroles", chart_cluster_role(found)
        )
        _create_or_replace(
            self.plane,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": FLAGGER_ACCOUNT},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": FLAGGER_ACCOUNT,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": FLAGGER_ACCOUNT, "namespace": FLAGGER_NAMESPACE}
                ],
            },
        )
        token = api.token_for(FLAGGER_NAMESPACE, FLAGGER_ACCOUNT, expiration_seconds=TOKEN_SECONDS)
        return api.kubeconfig_for_token(token, self.workdir / "flagger.kubeconfig")

    def _wait_started(self, *, deadline: float) -> None:
        # Flagger logs this once its informers have synced and its workers run.
        while "Started operator workers" not in self.log_file.read_text(errors="replace"):
            assert self.process is not None
            if self.process.poll() is not None:
                raise ApiServerError(
                    f"flagger exited with code {self.process.returncode}:\n{_tail(self.log_file)}"
                )
            if time.monotonic() > deadline:
                raise ApiServerError(
                    f"flagger did not start within {START_TIMEOUT_S} s:\n{_tail(self.log_file)}"
                )
            time.sleep(0.1)  # poll interval of a condition wait with a deadline

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def peak_rss_mb(self) -> float:
        """Flagger's peak resident set (VmHWM of its process) so far, in MB."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self._peak_rss_kb = max(self._peak_rss_kb, int(line.split()[1]))
        return self._peak_rss_kb / 1024

    def version(self) -> str:
        return FLAGGER_VERSION

    def stop(self) -> None:
        if self.process is not None:
            self.peak_rss_mb()
            _stop_process(self.process, STOP_GRACE_S)
        for relay in self._relays:
            relay.stop()
        self._relays.clear()
        if self._network is not None:
            self._network.delete()
            self._network = None

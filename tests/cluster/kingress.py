"""The data plane as a Knative networking layer: a KIngress reconciler of its own ingress class, like Kourier.

Owns :class:`KIngressReconciler`, used by the real-Knative backend (:mod:`tests.cluster.knative_real`) in
place of :func:`tests.cluster.dataplane.watch_services`. It watches
``ingresses.networking.internal.knative.dev`` whose ``networking.knative.dev/ingress.class`` annotation is
:data:`tests.cluster.knative_real.INGRESS_CLASS` and, for each generation:

- after the programming delay (a knob, default 0 s; Kourier's is its xDS push plus its status probe),
  programs the router by the KIngress rules: the rule whose hosts are ``<route>.<ns>...`` gives the split
  (each split's ``serviceName`` is a Revision's name), and each rule whose hosts are
  ``<tag>-<route>.<ns>...`` gives a tag's revision;
- then writes the Ingress status: ``observedGeneration``, Ready, LoadBalancerReady and NetworkConfigured
  True, and the public and private load balancers (:data:`LOAD_BALANCER`, a name nothing resolves).

Until then Knative's Route keeps IngressReady Unknown, the window the simulator never showed.

Must not: read Knative Services or Routes (the KIngress is the whole contract), dial anything, or decide
revision readiness (Knative does).
"""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Any, cast

from tests.cluster.dataplane import DataPlane, Target

log = logging.getLogger(__name__)

GROUP = "networking.internal.knative.dev"
VERSION = "v1alpha1"
PLURAL = "ingresses"
CLASS_ANNOTATION = "networking.knative.dev/ingress.class"
ROUTE_LABEL = "serving.knative.dev/route"
LOAD_BALANCER = "canary-step-router.canary-step-system.svc.cluster.local"
CLUSTER_SUFFIXES = ("", ".svc", ".svc.cluster.local")

Obj = dict[str, Any]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def targets_from_kingress(ingress: Obj) -> tuple[str, list[Target]]:
    """(the route's name, the routing targets) of a KIngress: the split, then one 0 % entry per tag."""
    meta = ingress["metadata"]
    namespace = meta["namespace"]
    route = (meta.get("labels") or {}).get(ROUTE_LABEL) or meta["name"]
    main_hosts = {f"{route}.{namespace}{suffix}" for suffix in CLUSTER_SUFFIXES}
    split: dict[str, int] = {}
    tags: dict[str, str] = {}
    for rule in (ingress.get("spec") or {}).get("rules") or []:
        hosts = {str(host).lower() for host in rule.get("hosts") or []}
        paths = (rule.get("http") or {}).get("paths") or []
        splits = (paths[0].get("splits") or []) if paths else []
        if hosts & main_hosts:
            split = {}
            for entry in splits:
                name = str(entry.get("serviceName"))
                split[name] = split.get(name, 0) + int(entry.get("percent") or 0)
            continue
        for host in hosts:
            label = host.split(".", 1)[0]
            rest = host.split(".", 1)[1] if "." in host else ""
            if label.endswith("-" + route) and rest.startswith(namespace) and splits:
                tags[label[: -len(route) - 1]] = str(splits[0].get("serviceName"))
    targets = [Target(revision=name, percent=percent) for name, percent in sorted(split.items())]
    targets += [Target(revision=revision, percent=0, tag=tag) for tag, revision in sorted(tags.items())]
    return route, targets


class KIngressReconciler:
    """Programs the data plane's router from KIngresses and writes their status; see the module docstring."""

    def __init__(
        self, dataplane: DataPlane, api_client: Any, *, ingress_class: str, delay: float = 0.0
    ) -> None:
        from kubernetes import client  # noqa: PLC0415 - heavy import, only for the real backend

        from tests.cluster.knative_sim import Informer  # noqa: PLC0415

        self.dataplane = dataplane
        self.ingress_class = ingress_class
        self.delay = delay
        self.errors: list[str] = []
        self._objects = client.CustomObjectsApi(api_client)
        self._timers: dict[tuple[str, str], threading.Timer] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self._informer = Informer(api_client, PLURAL, self._on_event, group=GROUP, version=VERSION)

    def start(self, *, timeout: float = 10.0) -> None:
        self._informer.start()
        if not self._informer.synced.wait(timeout):
            raise RuntimeError(f"KIngress reconciler: ingresses not listed within {timeout} s")

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            timers = list(self._timers.values())
            self._timers.clear()
        for timer in timers:
            timer.cancel()
        self._informer.stop()

    def _on_event(self, kind: str, ingress: Obj) -> None:
        meta = ingress["metadata"]
        if (meta.get("annotations") or {}).get(CLASS_ANNOTATION) != self.ingress_class:
            return
        key = (meta["namespace"], meta["name"])
        if kind == "DELETED":
            route, _ = targets_from_kingress(ingress)
            self.dataplane.routing.remove(meta["namespace"], route)
            return
        status = ingress.get("status") or {}
        if status.get("observedGeneration") == meta.get("generation") and self._ready(status):
            return
        with self._lock:
            if self._stopped:
                return
            previous = self._timers.pop(key, None)
            if previous is not None:
                previous.cancel()
            timer = threading.Timer(self.delay, self._program, args=(key,))
            timer.daemon = True
            self._timers[key] = timer
        timer.start()

    @staticmethod
    def _ready(status: Obj) -> bool:
        return any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )

    def _program(self, key: tuple[str, str]) -> None:
        namespace, name = key
        try:
            ingress = cast(
                Obj, self._objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            )
            route, targets = targets_from_kingress(ingress)
            self.dataplane.routing.set_traffic(namespace, route, targets)
            now = _now()
            conditions = [
                {"type": kind, "status": "True", "lastTransitionTime": now}
                for kind in ("LoadBalancerReady", "NetworkConfigured", "Ready")
            ]
            balancer = {"ingress": [{"domainInternal": LOAD_BALANCER}]}
            self._objects.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name,
                {"status": {
                    "observedGeneration": ingress["metadata"]["generation"],
                    "conditions": conditions,
                    "publicLoadBalancer": balancer,
                    "privateLoadBalancer": balancer,
                }},
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        except Exception as error:  # recorded for the harness's timeouts
            self.errors.append(f"{namespace}/{name}: {error}")
            log.debug("KIngress %s/%s: %s", namespace, name, error)
        finally:
            with self._lock:
                self._timers.pop(key, None)

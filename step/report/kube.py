"""Visibility in the cluster: Kubernetes Events on the Knative Service and the Canary's status.

Owns: `KubeEventSink` (core/v1 Events on the Knative Service, reason `Synced` as Flagger records
them, source component `canary-step`, so `kubectl describe ksvc` lists them; a repeated event is
counted on the first one, as client-go's event correlator does, so an hour of halts is one Event
"x240 over 1h", not 240) and
`CanaryStatusSink` (Flagger's status fields and its single `Promoted` condition, written through the
Canary's `/status` subresource where the CRD and the resource exist).
Must not: fail the run. Every error here is logged and swallowed: visibility is never worth a
rollback. Must not decide phases or messages either; they come from the state machine.
"""

from __future__ import annotations

import datetime
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from step.errors import Forbidden, NotFound, StepError
from step.kube import SERVICES, Kube
from step.ports import CanaryStatus, EventType

log = logging.getLogger(__name__)

COMPONENT = "canary-step"
EVENT_REASON = "Synced"  # Flagger's recorder uses this one reason for every event
MAX_RECORDED = 4096  # events remembered for counting repeats (client-go's LRU cache holds as many)
KNATIVE_SERVICE_API_VERSION = "serving.knative.dev/v1"

# flagger-semantics 1.9: Promoted is True for Initialized/Succeeded, False for Failed, else Unknown.
_PROMOTED_STATUS = {"Initialized": "True", "Succeeded": "True", "Failed": "False"}


def _rfc3339(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Recorded:
    """An Event this sink created, for counting its repeats on it."""

    name: str
    first_timestamp: str
    count: int


class KubeEventSink:
    """`ports.EventSink`: core/v1 Events on the Knative Service, repeats aggregated. Never raises.

    The first occurrence of an event (same type, reason and message) is created; each repeat is one
    merge patch of its `count` and `lastTimestamp` (no GET: the sink remembers the name it created).
    A repeat whose Event is gone (the API server's event TTL) creates it again with the count so far.
    Without RBAC `patch` on events, it warns once and creates one Event per occurrence instead.
    """

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        service_name: str,
        wall: Callable[[], float] = time.time,
        instance: str | None = None,
    ) -> None:
        self._kube = kube
        self._namespace = namespace
        self._service = service_name
        self._wall = wall
        self._instance = instance or socket.gethostname()
        self._uid: str | None = None
        self._uid_looked_up = False
        self._recorded: OrderedDict[tuple[str, str, str], _Recorded] = OrderedDict()
        self._can_patch = True
        self._last_ns = 0  # the newest timestamp an Event name carried
        self.failures = 0

    def emit(self, *, type: EventType, message: str) -> None:
        now = self._wall()
        key = (type, EVENT_REASON, message)
        recorded = self._recorded.get(key) if self._can_patch else None
        try:
            if recorded is None:
                self._create(key, now=now)
            else:
                self._count_again(key, recorded, now=now)
        except StepError as err:
            self.failures += 1
            level = logging.WARNING if isinstance(err, Forbidden) or self.failures == 1 else logging.DEBUG
            log.log(
                level,
                "could not record the event %r on %s/%s: %s",
                message,
                self._namespace,
                self._service,
                err,
            )

    def _create(
        self,
        key: tuple[str, str, str],
        *,
        now: float,
        name: str | None = None,
        first: str | None = None,
        count: int = 1,
    ) -> None:
        type, reason, message = key
        involved: dict[str, Any] = {
            "apiVersion": KNATIVE_SERVICE_API_VERSION,
            "kind": "Service",
            "name": self._service,
            "namespace": self._namespace,
        }
        uid = self._service_uid()
        if uid:
            involved["uid"] = uid  # kubectl describe selects events by the object's uid
        if name is None:
            # client-go's naming, <object>.<unix nanoseconds in hex>, made unique within this run: two
            # events read the same clock value when the wall clock is coarse (or a test's).
            self._last_ns = max(int(now * 1e9), self._last_ns + 1)
            name = f"{self._service}.{self._last_ns:x}"
        first = first or _rfc3339(now)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": self._namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": first,
            "lastTimestamp": _rfc3339(now),
            "count": count,
        }
        self._kube.create_event(namespace=self._namespace, event=event)
        self._recorded[key] = _Recorded(name=name, first_timestamp=first, count=count)
        self._recorded.move_to_end(key)
        while len(self._recorded) > MAX_RECORDED:
            self._recorded.popitem(last=False)

    def _count_again(self, key: tuple[str, str, str], recorded: _Recorded, *, now: float) -> None:
        recorded.count += 1  # an occurrence counts even when recording it fails: the next patch says it
        self._recorded.move_to_end(key)
        patch = {"count": recorded.count, "lastTimestamp": _rfc3339(now)}
        try:
            self._kube.patch_event(namespace=self._namespace, name=recorded.name, patch=patch)
        except NotFound:
            # Expired (the API server's --event-ttl, 1 h by default) or deleted: as client-go does,
            # create it again under its name, with the count and first time so far.
            self._create(
                key, now=now, name=recorded.name, first=recorded.first_timestamp, count=recorded.count
            )
        except Forbidden as err:
            self._can_patch = False
            log.warning(
                "repeated events on %s/%s are recorded one by one, not counted: %s",
                self._namespace,
                self._service,
                err,
            )
            self._create(key, now=now)

    def _service_uid(self) -> str | None:
        if self._uid is None:
            # Usually known already: the router read the Service before anything was worth an event.
            self._uid = self._kube.known_uid(SERVICES, namespace=self._namespace, name=self._service)
        if self._uid is None and not self._uid_looked_up:
            self._uid_looked_up = True
            try:
                service = self._kube.get_service(namespace=self._namespace, name=self._service)
                self._uid = (service.get("metadata") or {}).get("uid")
            except StepError as err:
                log.warning("events on %s/%s will carry no uid: %s", self._namespace, self._service, err)
        return self._uid


class CanaryStatusSink:
    """`ports.StatusSink` on a Flagger Canary resource; a no-op where there is none (found out once)."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._kube = kube
        self._namespace = namespace
        self._name = name
        self._wall = wall
        self._enabled: bool | None = None  # None until the first write looks for the resource
        self._condition: Mapping[str, Any] | None = None  # the Promoted condition as last known
        self._last: CanaryStatus | None = None

    @property
    def enabled(self) -> bool | None:
        return self._enabled

    def write(self, status: CanaryStatus) -> None:
        if self._enabled is None:
            self._enabled = self._discover()  # None again after a transient error: look next time
        if not self._enabled or status == self._last:
            return
        now = _rfc3339(self._wall())
        condition_status = _PROMOTED_STATUS.get(status.phase, "Unknown")
        previous = self._condition or {}
        condition = {
            "type": "Promoted",
            "status": condition_status,
            "reason": status.phase,
            "message": status.message,  # Flagger's text for the phase, chosen by the state machine
            "lastUpdateTime": now,
            "lastTransitionTime": (
                previous["lastTransitionTime"]
                if previous.get("status") == condition_status and previous.get("lastTransitionTime")
                else now
            ),
        }
        patch = {
            "status": {
                "phase": status.phase,
                "canaryWeight": status.canary_weight,
                "failedChecks": status.failed_checks,
                "iterations": status.iterations,
                "lastTransitionTime": now,
                "conditions": [condition],
            }
        }
        try:
            self._kube.patch_canary_status(namespace=self._namespace, name=self._name, patch=patch)
        except NotFound:
            log.info("Canary %s/%s is gone; its status is no longer written", self._namespace, self._name)
            self._enabled = False
            return
        except StepError as err:
            log.warning("could not write the status of Canary %s/%s: %s", self._namespace, self._name, err)
            return
        self._condition = condition
        self._last = status

    def _discover(self) -> bool | None:
        try:
            canary = self._kube.get_canary(namespace=self._namespace, name=self._name)
        except NotFound:
            log.info(
                "no Canary %s/%s in the cluster (or no Canary CRD): status is not written",
                self._namespace,
                self._name,
            )
            return False
        except Forbidden as err:
            log.warning("the Canary's status is not written: %s", err)
            return False
        except StepError as err:
            log.warning("could not look up Canary %s/%s: %s", self._namespace, self._name, err)
            return None
        for entry in (canary.get("status") or {}).get("conditions") or []:
            if isinstance(entry, Mapping) and entry.get("type") == "Promoted":
                self._condition = dict(entry)
        return True

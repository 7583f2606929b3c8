"""One run per Knative Service: a `coordination.k8s.io/v1` Lease, acquired, renewed, fenced and released.

Owns: the Lease's name for a Service (`canary-step.<service>`), this process's holder identity, acquiring
(create it, or take over a released or expired one with a resourceVersion precondition), waiting for a
held one up to a deadline (telling the caller who holds it and since when), renewing it together with
the caller's record in ONE conditional write (an update that carries the last resourceVersion, so a
409 means another run changed it: the lease is lost, which is the fence), and releasing it. The record
is opaque text kept in the Lease's `canary-step/analysis` annotation.
Must not: know what the record means or what a canary is; decide what to do when the lease is held or
lost (the caller does); read time or sleep except through the injected clock; send a request except
through `Kube`'s one request function.

Why `canary-step.<service>`: a Knative Service's name is a DNS-1035 label, which has no dot, so no two
Services map to one Lease name, and nothing else names a Lease after a Service with our prefix and a dot
(Knative and client-go leader election use their own names, in their own namespaces).

When a Lease has expired: its `renewTime + leaseDurationSeconds` is in the past by our wall clock, or
(should the holder's clock run ahead of ours) we have seen it unchanged, by resourceVersion, for a whole
`leaseDurationSeconds` on our monotonic clock, as client-go's leader election judges it.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from step.errors import Conflict, InfrastructureError, NotFound
from step.kube.client import Kube, Obj
from step.kube.mapping import Target
from step.kube.resources import LEASES

NAME_PREFIX = "canary-step."
RECORD_ANNOTATION = "canary-step/analysis"
SERVICE_ANNOTATION = "canary-step/service"  # which Knative Service the Lease guards, for people
MANAGED_BY = {"app.kubernetes.io/managed-by": "canary-step"}

# The downward API variables a pipeline sets so that `holderIdentity` names the pod (see docs/run.md).
POD_NAME_ENV = "POD_NAME"
POD_UID_ENV = "POD_UID"


class LeaseClock(Protocol):
    """Monotonic time for deadlines and waits, wall time for what the Lease records."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wall(self) -> float: ...


def lease_name(service: str) -> str:
    """The Lease that guards the Knative Service `service` (in the Service's namespace)."""
    return NAME_PREFIX + service


def holder_identity(
    env: Mapping[str, str] | None = None, *, host: str | None = None, pid: int | None = None
) -> str:
    """Who this run is: the pod and its uid where the downward API says so, else host and pid.

    A random run id always ends it, so two runs in one pod (or one host) are never taken for one.
    """
    env = os.environ if env is None else env
    run = secrets.token_hex(4)
    pod, uid = env.get(POD_NAME_ENV, "").strip(), env.get(POD_UID_ENV, "").strip()
    if pod:
        return f"pod {pod}" + (f" uid {uid}" if uid else "") + f" run {run}"
    return f"host {host or socket.gethostname()} pid {pid or os.getpid()} run {run}"


# --------------------------------------------------------------------------- what a Lease says


@dataclass(frozen=True, kw_only=True)
class LeaseState:
    """A Lease as last read: who holds it, since when, until when (wall clock), and the record."""

    namespace: str
    name: str
    holder: str | None  # None when released (or never held)
    acquired_at: float | None
    renewed_at: float | None
    duration_seconds: int
    transitions: int
    record: str | None
    resource_version: str

    @classmethod
    def of(cls, obj: Obj) -> LeaseState:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        annotations = meta.get("annotations") or {}
        holder = spec.get("holderIdentity")
        record = annotations.get(RECORD_ANNOTATION)
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            holder=str(holder) if holder else None,
            acquired_at=_parse_time(spec.get("acquireTime")),
            renewed_at=_parse_time(spec.get("renewTime")),
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            record=str(record) if isinstance(record, str) and record else None,
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    @property
    def expires_at(self) -> float | None:
        """Wall time at which the holder's lease runs out, if it did not renew (None: never renewed)."""
        stamp = self.renewed_at if self.renewed_at is not None else self.acquired_at
        return None if stamp is None else stamp + self.duration_seconds

    def expired(self, wall: float) -> bool:
        expires = self.expires_at
        return expires is None or expires <= wall

    def describe(self, wall: float) -> str:
        """`held by pod x run y since 21:47:12Z (renewed 3s ago, expires in 12s)`, for a person."""
        if self.holder is None:
            return f"Lease {self.namespace}/{self.name} is free"
        since = f" since {_clock_time(self.acquired_at)}" if self.acquired_at is not None else ""
        parts = []
        if self.renewed_at is not None:
            parts.append(f"renewed {_ago(wall - self.renewed_at)}")
        expires = self.expires_at
        if expires is not None:
            parts.append(
                f"expires in {_seconds(expires - wall)}"
                if expires > wall
                else f"expired {_ago(wall - expires)}"
            )
        detail = f" ({', '.join(parts)})" if parts else ""
        return f"Lease {self.namespace}/{self.name} held by {self.holder}{since}{detail}"


class LeaseHeld(InfrastructureError):
    """Another run held the Lease for longer than we were allowed to wait. Nothing was touched."""

    def __init__(self, message: str, *, state: LeaseState, waited: float) -> None:
        super().__init__(message)
        self.state = state
        self.waited = waited


class LeaseLost(InfrastructureError):
    """The Lease is no longer ours (taken over after it expired, or deleted): write nothing more."""

    def __init__(self, message: str, *, state: LeaseState | None) -> None:
        super().__init__(message)
        self.state = state  # the Lease as it is now; None if it was deleted


@dataclass(frozen=True, kw_only=True)
class Acquired:
    """How the Lease became ours."""

    previous: LeaseState | None  # the Lease as we found it; None if we created it
    waited: float  # seconds spent waiting for another holder
    took_over: bool  # it was held by a run that neither renewed nor released it (expired)

    @property
    def interrupted_record(self) -> str | None:
        """The record a previous run left behind without releasing: an interrupted analysis, if any."""
        return self.previous.record if self.previous is not None and self.took_over else None

    @property
    def left_record(self) -> str | None:
        """Any record on the Lease as found (an expired holder's, or one left on purpose at release)."""
        return self.previous.record if self.previous is not None else None


# --------------------------------------------------------------------------- holding one


class Lease:
    """The Lease guarding one Knative Service, from this run's side. Not thread-safe."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        service: str,
        identity: str,
        duration_seconds: int,
        clock: LeaseClock,
        poll_interval: float = 1.0,
    ) -> None:
        if duration_seconds < 1:
            raise ValueError(f"a Lease lasts at least 1 s, got {duration_seconds}")
        self.kube = kube
        self.namespace = namespace
        self.service = service
        self.name = lease_name(service)
        self.identity = identity
        self.duration_seconds = duration_seconds
        self.clock = clock
        self.poll_interval = poll_interval
        self._obj: Obj | None = None  # the Lease as our last successful write left it
        self._renewed_mono: float | None = None  # monotonic time just before that write was sent

    # ------------------------------------------------------------------ questions, no request

    @property
    def held(self) -> bool:
        return self._obj is not None

    @property
    def state(self) -> LeaseState | None:
        return LeaseState.of(self._obj) if self._obj is not None else None

    def remaining(self) -> float:
        """Seconds our hold lasts by our own clock, counted from when the last write was sent; 0 if none."""
        if self._obj is None or self._renewed_mono is None:
            return 0.0
        return max(0.0, self._renewed_mono + self.duration_seconds - self.clock.now())

    def peek(self) -> LeaseState | None:
        """The Lease as the API server has it now (None: there is none). Writes nothing."""
        current = self._get()
        return LeaseState.of(current) if current is not None else None

    # ------------------------------------------------------------------ acquire

    def acquire(self, *, wait: float, on_wait: Callable[[LeaseState], None] | None = None) -> Acquired:
        """Make the Lease ours, waiting up to `wait` seconds while another run holds it.

        `on_wait` is told the holder when we start waiting and whenever the holder changes.
        Raises `LeaseHeld` when the wait runs out, `APIError` (e.g. `Forbidden`) when the API refuses.
        """
        if self._obj is not None:
            raise RuntimeError(f"Lease {self.namespace}/{self.name} is already held by this run")
        started = self.clock.now()
        deadline = started + max(0.0, wait)
        unchanged_since: tuple[str, float] | None = None  # (resourceVersion, first seen, monotonic)
        told: str | None = None
        while True:
            current = self._get()
            if current is None:
                if self._create():
                    return Acquired(previous=None, waited=self.clock.now() - started, took_over=False)
                continue  # someone created it first: read it
            found = LeaseState.of(current)
            now = self.clock.now()
            if unchanged_since is None or unchanged_since[0] != found.resource_version:
                unchanged_since = (found.resource_version, now)
            stale = now - unchanged_since[1] >= found.duration_seconds > 0
            if found.holder == self.identity:  # our own create or takeover, retried after a lost answer
                age = self.clock.wall() - (found.renewed_at or self.clock.wall())
                self._hold(current, sent=now - max(0.0, age))
                return Acquired(previous=None, waited=now - started, took_over=False)
            if found.holder is None or found.expired(self.clock.wall()) or stale:
                if self._take_over(current):
                    return Acquired(
                        previous=found, waited=self.clock.now() - started, took_over=found.holder is not None
                    )
                continue  # another run got there first: read it again
            if now >= deadline:
                raise LeaseHeld(
                    f"{found.describe(self.clock.wall())}; gave up after waiting {_seconds(now - started)}",
                    state=found,
                    waited=now - started,
                )
            if on_wait is not None and told != found.holder:
                on_wait(found)
                told = found.holder
            self.clock.sleep(self._pause(found, now=now, deadline=deadline, seen=unchanged_since[1]))

    def _pause(self, found: LeaseState, *, now: float, deadline: float, seen: float) -> float:
        """Poll again after `poll_interval`, or sooner when the lease expires or the wait ends."""
        wall = self.clock.wall()
        expires = found.expires_at
        until_expiry = (expires - wall) if expires is not None else 0.0
        until_stale = seen + found.duration_seconds - now
        soonest = min(self.poll_interval, max(until_expiry, 0.0), max(until_stale, 0.0), deadline - now)
        return max(0.01, soonest + 0.01)

    def _create(self) -> bool:
        wall = self.clock.wall()
        body: Obj = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": dict(MANAGED_BY),
                "annotations": {SERVICE_ANNOTATION: self.service},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration_seconds,
                "acquireTime": _format_time(wall),
                "renewTime": _format_time(wall),
                "leaseTransitions": 0,
            },
        }
        sent = self.clock.now()
        try:
            created = self._send("create", method="POST", body=body)
        except Conflict:  # AlreadyExists: another run created it between our read and our write
            return False
        self._hold(created, sent=sent)
        return True

    def _take_over(self, current: Obj) -> bool:
        wall = self.clock.wall()
        body = _copy(current)
        spec = body.setdefault("spec", {})
        spec.update(
            {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration_seconds,
                "acquireTime": _format_time(wall),
                "renewTime": _format_time(wall),
                "leaseTransitions": int(spec.get("leaseTransitions") or 0) + 1,  # as client-go counts
            }
        )
        sent = self.clock.now()
        try:
            updated = self._send("update", method="PUT", body=body)
        except (Conflict, NotFound):  # changed (or deleted) since we read it: start over
            return False
        self._hold(updated, sent=sent)
        return True

    # ------------------------------------------------------------------ renew: the fence

    def renew(self, record: str | None = None, *, keep_record: bool = False) -> LeaseState:
        """Renew the hold and write `record` (None: remove it; `keep_record`: leave it) in ONE update.

        The update carries the resourceVersion of our last write, so it succeeds only if nobody
        changed the Lease since: a `LeaseLost` here means another run holds it now, or it was deleted.
        """
        if self._obj is None:
            raise LeaseLost(f"Lease {self.namespace}/{self.name} is not held by this run", state=None)
        wall = self.clock.wall()
        body = _copy(self._obj)
        body.setdefault("spec", {})["renewTime"] = _format_time(wall)
        if not keep_record:
            _set_record(body, record)
        sent = self.clock.now()
        try:
            updated = self._send("update", method="PUT", body=body)
        except Conflict:
            updated = self._confirm_own_write(body)
        except NotFound:
            self._drop()
            raise LeaseLost(
                f"Lease {self.namespace}/{self.name} was deleted while this run held it", state=None
            ) from None
        self._hold(updated, sent=sent)
        return LeaseState.of(updated)

    def ensure(self, margin: float) -> None:
        """Renew (keeping the record) unless our hold lasts at least `margin` more seconds by our clock.

        Call it before a write that must be fenced: it costs no request while the hold is fresh.
        """
        if self.remaining() < margin:
            self.renew(keep_record=True)

    def fence(self) -> None:
        """Before a traffic write: raise `LeaseLost` unless this run surely still holds the Lease.

        Sure means: half of the lease duration is left since our last write was sent (no request),
        else a renewal that carries our resourceVersion succeeded just now.
        """
        self.ensure(self.duration_seconds / 2)

    def _confirm_own_write(self, sent: Obj) -> Obj:
        """After a 409: was it our own update, retried after its answer was lost? Else the Lease is lost."""
        current = self._get()
        if current is None:
            self._drop()
            raise LeaseLost(
                f"Lease {self.namespace}/{self.name} was deleted while this run held it", state=None
            )
        found = LeaseState.of(current)
        ours = (sent.get("spec") or {}).get("renewTime")
        if found.holder == self.identity and (current.get("spec") or {}).get("renewTime") == ours:
            return current
        self._drop()
        holder = found.holder or "nobody"
        raise LeaseLost(
            f"Lease {self.namespace}/{self.name} was taken over: it is held by {holder} now"
            f" ({found.describe(self.clock.wall())}); this run writes nothing more",
            state=found,
        )

    # ------------------------------------------------------------------ release

    def release(self, record: str | None = None) -> None:
        """Give the Lease up: no holder, and `record` left on it (None: the record is removed).

        Nothing to do if we do not hold it; if another run took it meanwhile, it stays theirs.
        """
        if self._obj is None:
            return
        body = _copy(self._obj)
        spec = body.setdefault("spec", {})
        spec.pop("holderIdentity", None)
        spec["renewTime"] = _format_time(self.clock.wall())
        _set_record(body, record)
        try:
            self._send("update", method="PUT", body=body)
        except (Conflict, NotFound):
            pass  # no longer ours: nothing to give up
        finally:
            self._drop()

    # ------------------------------------------------------------------ requests

    def _hold(self, obj: Obj, *, sent: float | None = None) -> None:
        self._obj = obj
        self._renewed_mono = self.clock.now() if sent is None else sent

    def _drop(self) -> None:
        self._obj = None
        self._renewed_mono = None

    def _get(self) -> Obj | None:
        try:
            return self._send("get", method="GET")
        except NotFound:
            return None

    def _send(self, verb: str, *, method: str, body: Obj | None = None) -> Obj:
        target = Target(
            verb=verb,
            resource=LEASES,
            namespace=self.namespace,
            name=None if verb == "create" else self.name,
        )
        # The package's one request function: retries, error mapping and request counting.
        return self.kube._object(target, method=method, body=body)


# --------------------------------------------------------------------------- helpers


def _copy(obj: Obj) -> Obj:
    copied: Obj = json.loads(json.dumps(obj))
    return copied


def _set_record(body: Obj, record: str | None) -> None:
    annotations: dict[str, Any] = body.setdefault("metadata", {}).setdefault("annotations", {}) or {}
    if record is None:
        annotations.pop(RECORD_ANNOTATION, None)
    else:
        annotations[RECORD_ANNOTATION] = record
    body["metadata"]["annotations"] = annotations


def _format_time(wall: float) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return datetime.datetime.fromtimestamp(wall, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _clock_time(wall: float | None) -> str:
    if wall is None:
        return "?"
    return datetime.datetime.fromtimestamp(wall, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _ago(seconds: float) -> str:
    return f"{_seconds(seconds)} ago"

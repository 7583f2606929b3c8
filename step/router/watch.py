"""A live copy of one Knative Service, kept current by a single long-running watch.

Owns: `ServiceWatch` — one background thread holding one watch request open (renewed every few
minutes from the last resourceVersion, re-read after 410 Gone), the newest object seen, and waiting
on a condition with a deadline. The router reads the Service from here instead of polling, so a tick
that advances the weight costs one PATCH, and waiting for status or for a change costs no request.
Must not: write anything, decide anything, or import `kubernetes`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from step.errors import NotFound, StepError
from step.kube import Kube, Obj, WatchStream
from step.ports import Clock

log = logging.getLogger(__name__)

RENEW_SECONDS = 300.0  # each watch request asks the server to close after this; then it is reopened
QUIET_END_SECONDS = 1.0  # a watch that ends this fast with no event is not reopened at once
QUIET_ENDS_ALLOWED = 3  # ... and after this many in a row the watch gives up (readers fall back to GET)


def resource_version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def is_newer(candidate: Obj, than: Obj | None) -> bool:
    """Whether `candidate` is a later version than `than`.

    resourceVersions are opaque to clients in general; for one object served by one API server they
    are etcd revisions, so integers compare. Anything else counts as newer (arrival order).
    """
    if than is None:
        return True
    new, old = resource_version(candidate), resource_version(than)
    if new.isdigit() and old.isdigit():
        return int(new) >= int(old)
    return True


class ServiceWatch:
    """The newest state of one Service; `wait()` blocks until a predicate holds or a deadline passes."""

    def __init__(self, kube: Kube, *, namespace: str, name: str, clock: Clock) -> None:
        self._kube = kube
        self._namespace = namespace
        self._name = name
        self._clock = clock
        self._cond = threading.Condition()
        self._obj: Obj | None = None
        self._seq = 0  # bumped on every new object
        self._error: StepError | None = None
        self._thread: threading.Thread | None = None
        self._stream: WatchStream | None = None
        self._stopped = False
        self._closing = threading.Event()

    # ------------------------------------------------------------------ reading

    @property
    def live(self) -> bool:
        """Whether the watch is running, so `current()` is as fresh as the API server's own state."""
        return self._thread is not None and self._thread.is_alive() and self._error is None

    def current(self) -> Obj:
        """The newest object; reads it (and starts the watch) when there is no live watch."""
        return self.snapshot()[0]

    def snapshot(self) -> tuple[Obj, int]:
        """The newest object and its sequence number, taken together."""
        with self._cond:
            if self.live and self._obj is not None:
                return self._obj, self._seq
        self.refresh()
        with self._cond:
            assert self._obj is not None
            return self._obj, self._seq

    def refresh(self) -> Obj:
        """GET the Service now, keep it if newer, and make sure the watch runs."""
        obj = self._kube.get_service(namespace=self._namespace, name=self._name)
        self.offer(obj)
        self._ensure_running()
        with self._cond:
            assert self._obj is not None
            return self._obj

    def offer(self, obj: Obj) -> None:
        """A version seen elsewhere (a GET, a PATCH response): kept if it is not older than ours."""
        with self._cond:
            if is_newer(obj, self._obj):
                self._obj = obj
                self._seq += 1
                self._cond.notify_all()

    @property
    def seq(self) -> int:
        with self._cond:
            return self._seq

    def wait(self, check: Callable[[Obj], object], *, timeout: float) -> object:
        """The first truthy `check(obj)` over the current and following versions; None at the deadline."""
        deadline = self._clock.now() + timeout
        self.current()
        with self._cond:
            while True:
                if self._obj is not None:
                    found = check(self._obj)
                    if found:
                        return found
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                remaining = deadline - self._clock.now()
                if remaining <= 0:
                    return None
                if not self.live:
                    break
                self._cond.wait(remaining)
        # The watch stopped (an error was reported, or it could not start): read and try again.
        self.refresh()
        return self.wait(check, timeout=max(0.0, deadline - self._clock.now()))

    def close(self) -> None:
        self._closing.set()
        with self._cond:
            self._stopped = True
            stream = self._stream
        if stream is not None:
            stream.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    # ------------------------------------------------------------------ the watch thread

    def _ensure_running(self) -> None:
        with self._cond:
            if self._stopped or (self._thread is not None and self._thread.is_alive()):
                return
            self._error = None
            self._thread = threading.Thread(
                target=self._run, name=f"watch {self._namespace}/{self._name}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        try:
            self._follow()
        except StepError as err:
            log.info("watch on Knative Service %s/%s stopped: %s", self._namespace, self._name, err)
            with self._cond:
                self._error = err
                self._cond.notify_all()
        except Exception as err:  # a bug must not leave waiters hanging until their deadline
            log.exception("watch on Knative Service %s/%s failed", self._namespace, self._name)
            with self._cond:
                self._error = StepError(
                    f"watch on Knative Service {self._namespace}/{self._name} failed: {err}"
                )
                self._cond.notify_all()

    def _follow(self) -> None:
        with self._cond:
            version = resource_version(self._obj) if self._obj is not None else ""
        quiet_ends = 0
        while True:
            with self._cond:
                if self._stopped:
                    return
            stream = self._kube.watch_service(
                namespace=self._namespace, name=self._name, resource_version=version, timeout=RENEW_SECONDS
            )
            with self._cond:
                self._stream = stream
                if self._stopped:
                    stream.close()
                    return
            expired = False
            opened, events = self._clock.now(), 0
            for event in stream:
                events += 1
                if event.type in ("ADDED", "MODIFIED"):
                    version = resource_version(event.object) or version
                    self.offer(event.object)
                elif event.type == "BOOKMARK":
                    version = resource_version(event.object) or version
                elif event.type == "DELETED":
                    raise NotFound(
                        f"Knative Service {self._namespace}/{self._name} was deleted",
                        status=404,
                        verb="watch",
                        resource="services.serving.knative.dev",
                    )
                else:  # ERROR: 410 Gone (our resourceVersion is too old), or another Status
                    expired = True
                    break
            with self._cond:
                if self._stopped:
                    return
            if expired:
                obj = self._kube.get_service(namespace=self._namespace, name=self._name)
                self.offer(obj)
                version = resource_version(obj)
            elif events == 0 and self._clock.now() - opened < QUIET_END_SECONDS:
                quiet_ends += 1
                if quiet_ends >= QUIET_ENDS_ALLOWED:
                    raise StepError(
                        f"watch on Knative Service {self._namespace}/{self._name} keeps ending at once"
                    )
                self._closing.wait(QUIET_END_SECONDS)  # back off before reopening
                continue
            quiet_ends = 0

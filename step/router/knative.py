"""The Knative traffic router: moves traffic on one Knative Service and verifies that it took.

Owns: `KnativeRouter`, the `ports.Router` for a `serving.knative.dev/v1` Service. Every write is a
JSON patch of `spec.traffic` (and the `flagger.app/primary-revision` annotation when pinning or
promoting) made conditional by `test` ops on exactly those fields, retried after re-reading when
someone else changed them. The Service is read from one long-running watch (`ServiceWatch`), not
polled. After each write it waits on that watch until `status` shows what was written
(observedGeneration, RoutesReady, status.traffic), or raises `TrafficNotConverged`.
Must not: choose weights or timing, decide promotion or rollback, or import `kubernetes`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

from step.errors import Conflict, NotFound, RevisionFailed, TrafficNotConverged, UsageError
from step.kube import SERVICES, Kube, Obj
from step.ports import Clock, RevisionPhase, RevisionState, ServiceView, TrafficTarget, describe_traffic
from step.router.traffic import (
    ROUTE_REFUSALS,
    converged,
    describe_view,
    desired_traffic,
    revision_state,
    route_refusal,
    traffic_matches,
    traffic_patch,
    view_of,
)
from step.router.watch import ServiceWatch
from step.spec.knative import TAGS
from step.spec.model import PRIMARY_REVISION_ANNOTATION
from step.spec.schema import suggest

log = logging.getLogger(__name__)

CONFLICT_ATTEMPTS = 5


class KnativeRouter:
    """Pins revisions by name (tags `primary` and `canary`), never `latestRevision: true`."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        clock: Clock,
        converge_timeout: float = 60.0,
    ) -> None:
        self._kube = kube
        self._namespace = namespace
        self._name = name
        self._clock = clock
        self._converge_timeout = converge_timeout
        # The newest Service object, kept current by one long-running watch (no polling).
        self._service = ServiceWatch(kube, namespace=namespace, name=name, clock=clock)
        self._seen = -1  # the watch's sequence number of the newest view handed out

    def close(self) -> None:
        """Stop the background watch (the process ending stops it too)."""
        self._service.close()

    # ------------------------------------------------------------------ reading

    def observe(self) -> ServiceView:
        """The Service as it is now: from the live watch, or one GET when no watch is running yet."""
        obj, self._seen = self._service.snapshot()
        return view_of(obj)

    def observe_reconciled(self) -> ServiceView:
        """The Service once Knative has acted on its latest spec: `status.observedGeneration` has reached
        `metadata.generation` and its Configuration is not OutOfDate, so `latestCreatedRevisionName` is the
        revision of the newest template. A pipeline may apply a new image a moment before the run starts; a
        stale status would read as "no new revision". From the watch, no polling; at once when current."""
        return self._watch_or_fail(
            _reconciled,
            failure=f" was not reconciled by Knative within {self._converge_timeout:g}s"
            " (status.observedGeneration behind metadata.generation, or ConfigurationsReady OutOfDate)",
        )

    def revision(self, name: str) -> RevisionState:
        try:
            obj = self._kube.get_revision(namespace=self._namespace, name=name)
        except NotFound:
            return revision_state(name, None)
        return revision_state(name, obj)

    # ------------------------------------------------------------------ traffic writes

    def pin_primary(self, primary: str) -> ServiceView:
        return self._write(primary=primary, canary=None, canary_weight=0, annotation=primary)

    def route(self, *, primary: str, canary: str, canary_weight: int) -> ServiceView:
        return self._write(primary=primary, canary=canary, canary_weight=canary_weight, annotation=None)

    def promote(self, canary: str) -> ServiceView:
        return self._write(primary=canary, canary=None, canary_weight=0, annotation=canary)

    def _write(
        self, *, primary: str, canary: str | None, canary_weight: int, annotation: str | None
    ) -> ServiceView:
        desired: tuple[TrafficTarget, ...] = ()

        def ops_for(obj: Obj) -> list[Obj] | None:
            nonlocal desired
            view = view_of(obj)
            desired = desired_traffic(
                view.spec_traffic, primary=primary, canary=canary, canary_weight=canary_weight
            )
            annotations: dict[str, str] | None = obj["metadata"].get("annotations")
            wants_annotation = (
                annotation is not None and (annotations or {}).get(PRIMARY_REVISION_ANNOTATION) != annotation
            )
            if not wants_annotation and _same_spec(desired, view.spec_traffic):
                return None  # nothing to write: only make sure the status shows it
            return traffic_patch(
                current_raw=(obj.get("spec") or {}).get("traffic"),
                desired=desired,
                annotations=annotations,
                primary_annotation=annotation if wants_annotation else None,
            )

        read, written = self._conditional_patch(ops_for, doing="wrote its traffic")
        generation = (read if written is None else written)["metadata"].get("generation")
        return self._await(generation=int(generation or 0), desired=desired)

    def _conditional_patch(
        self, ops_for: Callable[[Obj], list[Obj] | None], *, doing: str
    ) -> tuple[Obj, Obj | None]:
        """Patch with the ops built from the newest object, re-reading and rebuilding on a conflict.

        Returns the object the ops were built from and the object written, or None for it when
        `ops_for` found nothing to write. After `CONFLICT_ATTEMPTS` conflicts in a row: `Conflict`.
        """
        for _ in range(CONFLICT_ATTEMPTS):
            obj = self._current()
            ops = ops_for(obj)
            if ops is None:
                return obj, None
            try:
                written = self._kube.patch_service(namespace=self._namespace, name=self._name, patch=ops)
            except Conflict as err:
                log.info(
                    "Knative Service %s/%s changed under us, re-reading: %s", self._namespace, self._name, err
                )
                self._service.refresh()
                continue
            self._service.offer(written)
            return obj, written
        raise Conflict(
            f"Knative Service {self._namespace}/{self._name} kept changing while we {doing};"
            f" gave up after {CONFLICT_ATTEMPTS} attempts",
            status=409,
            verb="patch",
            resource=SERVICES.qualified,
        )

    def _await(self, *, generation: int, desired: Sequence[TrafficTarget]) -> ServiceView:
        """Wait until the status shows `desired`; fail at once if it names a Revision that is gone.

        Knative reports a route to a deleted Revision as Ready False, reason RevisionMissing, and keeps
        the last status.traffic: that never converges, so waiting the whole timeout (twice, with the
        restore that follows) would only hide what happened.
        """
        suspect = False
        refused: tuple[str, str] | None = None

        def done(obj: Obj) -> ServiceView | None:
            nonlocal suspect, refused
            view = converged(obj, generation=generation, desired=desired)
            if view is not None:
                return view
            refused = route_refusal(obj, generation=generation)
            if refused is not None:
                return view_of(obj)  # the Route's last word: stop waiting
            if _route_names_a_missing_revision(obj, generation=generation):
                suspect = True
                return view_of(obj)  # stop waiting: look at the revisions below
            return None

        asked = f"asked {describe_traffic(desired, by='entry')} at generation {generation}"
        failure = f" did not show the traffic we wrote within {self._converge_timeout:g}s: {asked}"
        found = self._watch_or_fail(done, failure=failure)
        service = f"Knative Service {self._namespace}/{self._name}"
        if refused is not None:
            reason, message = refused
            raise TrafficNotConverged(
                f"{service}: Knative's Route refused the traffic we wrote: RoutesReady False, reason"
                f" {reason}: {message} ({ROUTE_REFUSALS[reason]}); {asked}"
            )
        if not suspect:
            return found
        names = dict.fromkeys(t.revision_name for t in desired if t.revision_name and t.percent)
        states = {name: self.revision(name) for name in names}
        gone = [name for name, state in states.items() if state.phase is RevisionPhase.MISSING]
        if gone:
            raise TrafficNotConverged(
                f"{service} cannot route to"
                f" {' and '.join(f'Revision {name}' for name in gone)}: it no longer exists"
                f" (deleted during the analysis); {asked};"
                f" it shows {describe_view(view_of(self._current()))}"
            )
        failed = [state for state in states.values() if state.phase is RevisionPhase.FAILED]
        if failed:
            first = failed[0]
            why = f"{first.reason}: {first.message}" if first.reason else first.message or "Ready False"
            shows = describe_view(view_of(self._current()))
            raise RevisionFailed(
                f"{service} cannot route to Revision {first.name}: its Ready condition is False ({why}),"
                f" so Knative routes no traffic to it; {asked}; it shows {shows}",
                revision=first.name,
            )
        # The revisions exist after all (a transient report): wait as usual, without the shortcut.
        return self._watch_or_fail(
            lambda obj: converged(obj, generation=generation, desired=desired), failure=failure
        )

    def _watch_or_fail(self, predicate: Callable[[Obj], ServiceView | None], *, failure: str) -> ServiceView:
        """The first view the watch finds `predicate` true of, or TrafficNotConverged with what it shows."""
        found = self._watch_until(predicate, timeout=self._converge_timeout)
        if found is not None:
            return found
        raise TrafficNotConverged(
            f"Knative Service {self._namespace}/{self._name}{failure};"
            f" it shows {describe_view(view_of(self._current()))}"
        )

    # ------------------------------------------------------------------ template writes

    def set_image(self, *, image: str, container: str | None) -> ServiceView:
        written = self._write_image(image=image, container=container)
        if written is None:
            return view_of(self._current())
        before, generation = written

        def created(obj: Obj) -> ServiceView | None:
            view = view_of(obj)
            fresh = view.latest_created_revision not in (None, before)
            return view if view.observed_generation >= generation and fresh else None

        return self._watch_or_fail(
            created,
            failure=f": no new revision appeared within {self._converge_timeout:g}s"
            f" of setting the image to {image}",
        )

    def _write_image(self, *, image: str, container: str | None) -> tuple[str | None, int] | None:
        """Patch the image; (latest created revision before, written generation), or None if unchanged."""

        def ops_for(obj: Obj) -> list[Obj] | None:
            containers: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
            names = [str(c.get("name") or "") for c in containers]
            index = container_index(names, container, service=f"{self._namespace}/{self._name}")
            if containers[index].get("image") == image:
                return None
            path = f"/spec/template/spec/containers/{index}"
            ops: list[Obj] = []
            if "name" in containers[index]:
                ops.append({"op": "test", "path": f"{path}/name", "value": containers[index]["name"]})
            return [
                *ops,
                {"op": "test", "path": f"{path}/image", "value": containers[index].get("image")},
                {"op": "replace", "path": f"{path}/image", "value": image},
            ]

        read, written = self._conditional_patch(ops_for, doing="set its image")
        if written is None:
            return None
        return view_of(read).latest_created_revision, int(written["metadata"].get("generation") or 0)

    # ------------------------------------------------------------------ waiting

    def wait_for_change(self, *, timeout: float) -> ServiceView:
        """Returns when the Service has changed since the last view this router handed out."""
        if self._seen < 0:
            self.observe()
        seen = self._seen
        self._service.wait(lambda _obj: self._service.seq > seen, timeout=timeout)
        return self.observe()

    def _watch_until(
        self, check: Callable[[Obj], ServiceView | None], *, timeout: float
    ) -> ServiceView | None:
        """The first view for which `check` holds, from the live watch; None after `timeout`."""
        found = self._service.wait(check, timeout=timeout)
        if isinstance(found, ServiceView):
            self._seen = self._service.seq
            return found
        return None

    def _current(self) -> Obj:
        """A private copy of the newest Service object (callers edit what they build patches from)."""
        return copy.deepcopy(self._service.current())


def _reconciled(obj: Obj) -> ServiceView | None:
    """The view if Knative has reconciled the Service's latest spec (knative-semantics: a Service shows
    ConfigurationsReady Unknown OutOfDate while its Configuration has not observed the new template)."""
    view = view_of(obj)
    if view.observed_generation < view.generation:
        return None
    conditions = (obj.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "ConfigurationsReady" and c.get("reason") == "OutOfDate" for c in conditions):
        return None
    return view


def _route_names_a_missing_revision(obj: Obj, *, generation: int) -> bool:
    """RoutesReady (else Ready) False with reason RevisionMissing at (or past) the written generation: a
    named Revision is gone or failed (a Revision not ready yet is Unknown, not False; knative-semantics
    2.7). RoutesReady, because Ready may show ConfigurationsReady's RevisionFailed instead."""
    view = view_of(obj)
    conditions = {str(c.get("type")): c for c in (obj.get("status") or {}).get("conditions") or []}
    chosen = conditions.get("RoutesReady") or conditions.get("Ready") or {}
    return (
        view.observed_generation >= generation
        and chosen.get("status") == "False"
        and chosen.get("reason") == "RevisionMissing"
    )


def _same_spec(desired: Sequence[TrafficTarget], spec: Sequence[TrafficTarget]) -> bool:
    return traffic_matches(desired, spec) and all(t.latest_revision is False for t in spec if t.tag in TAGS)


def container_index(names: Sequence[str], container: str | None, *, service: str) -> int:
    """Which of the template's containers `--image` updates (`--container`, or the only one); else a
    `UsageError` that names the containers there are."""
    if container is not None:
        if container in names:
            return list(names).index(container)
        raise UsageError(
            f'Knative Service {service} has no container named "{container}"{suggest(container, names)};'
            f" its containers are {', '.join(repr(n) for n in names) or '(none)'} (--container)"
        )
    if len(names) == 1:
        return 0
    raise UsageError(
        f"Knative Service {service} has {len(names)} containers"
        f" ({', '.join(repr(n) for n in names)}); name the one to update with --container"
    )

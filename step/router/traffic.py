"""Pure traffic arithmetic for a Knative Service: reading it, building what to write, checking it took.

Owns: parsing a Service object into `ServiceView`, building the `spec.traffic` list for a pinned
primary/canary split (tags `primary` and `canary`, other 0 % tagged entries kept, never duplicate
untagged entries), the JSON patch that writes it conditionally, and the convergence check of
knative-semantics 2.7 (observedGeneration, RoutesReady, status.traffic equal to what was asked).
Must not: perform I/O, choose weights, or read the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from step.errors import APIError
from step.ports import RevisionPhase, RevisionState, ServiceView, TrafficTarget, describe_traffic
from step.spec.knative import CANARY_TAG, PRIMARY_TAG, TAGS
from step.spec.model import PRIMARY_REVISION_ANNOTATION

OUR_TAGS = frozenset(TAGS)

Obj = Mapping[str, Any]


def _conditions(obj: Obj) -> dict[str, Mapping[str, Any]]:
    status = obj.get("status") or {}
    return {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}


def _tristate(value: Any) -> bool | None:
    return True if value == "True" else False if value == "False" else None


def parse_target(entry: Mapping[str, Any]) -> TrafficTarget:
    revision = entry.get("revisionName") or None
    latest = entry.get("latestRevision")
    return TrafficTarget(
        percent=int(entry.get("percent") or 0),
        revision_name=str(revision) if revision else None,
        latest_revision=bool(latest) if latest is not None else revision is None,
        tag=str(entry["tag"]) if entry.get("tag") else None,
        url=str(entry["url"]) if entry.get("url") else None,
    )


def to_entry(target: TrafficTarget) -> dict[str, Any]:
    """A `spec.traffic` entry as Knative stores it after defaulting (explicit latestRevision, percent)."""
    entry: dict[str, Any] = {}
    if target.tag:
        entry["tag"] = target.tag
    if target.revision_name and not target.latest_revision:
        entry["revisionName"] = target.revision_name
    entry["latestRevision"] = target.latest_revision
    entry["percent"] = target.percent
    return entry


def view_of(obj: Obj) -> ServiceView:
    """What a Service object says about itself. Raises APIError if it is not a Service object."""
    try:
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        ready = _conditions(obj).get("Ready", {})
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        return ServiceView(
            name=str(meta["name"]),
            namespace=str(meta.get("namespace") or ""),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            primary_revision=(meta.get("annotations") or {}).get(PRIMARY_REVISION_ANNOTATION) or None,
            latest_created_revision=status.get("latestCreatedRevisionName") or None,
            latest_ready_revision=status.get("latestReadyRevisionName") or None,
            ready=_tristate(ready.get("status")),
            ready_reason=str(ready.get("reason") or ""),
            ready_message=str(ready.get("message") or ""),
            spec_traffic=tuple(parse_target(t) for t in spec.get("traffic") or []),
            status_traffic=tuple(parse_target(t) for t in status.get("traffic") or []),
            images={str(c.get("name") or ""): str(c.get("image") or "") for c in containers},
            url=str(status["url"]) if status.get("url") else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise APIError(
            f"the Knative Service object is not what serving.knative.dev/v1 describes: {err}"
        ) from None


def revision_state(name: str, obj: Obj | None) -> RevisionState:
    """READY when Ready=True at the current generation; FAILED when Ready=False; else PENDING."""
    if obj is None:
        return RevisionState(name=name, phase=RevisionPhase.MISSING)
    ready = _conditions(obj).get("Ready", {})
    reason, message = str(ready.get("reason") or ""), str(ready.get("message") or "")
    state = _tristate(ready.get("status"))
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if state is True and (generation is None or observed == generation):
        return RevisionState(name=name, phase=RevisionPhase.READY, reason=reason, message=message)
    if state is False:
        return RevisionState(name=name, phase=RevisionPhase.FAILED, reason=reason, message=message)
    return RevisionState(name=name, phase=RevisionPhase.PENDING, reason=reason, message=message)


def kept_entries(current: Sequence[TrafficTarget]) -> tuple[TrafficTarget, ...]:
    """The user's own 0 % tagged entries, which every write carries over unchanged."""
    return tuple(t for t in current if t.tag and t.tag not in OUR_TAGS and t.percent == 0)


def desired_traffic(
    current: Sequence[TrafficTarget], *, primary: str, canary: str | None, canary_weight: int
) -> tuple[TrafficTarget, ...]:
    """`spec.traffic` for a split pinned by revision name, never `latestRevision: true`.

    With no canary, or canary == primary (after promotion), one entry takes 100 %.
    """
    if not 0 <= canary_weight <= 100:
        raise ValueError(f"canary weight must be within 0..100, got {canary_weight}")
    ours: list[TrafficTarget] = []
    if canary is None or canary == primary:
        ours.append(TrafficTarget(revision_name=primary, percent=100, tag=PRIMARY_TAG))
    else:
        ours.append(TrafficTarget(revision_name=primary, percent=100 - canary_weight, tag=PRIMARY_TAG))
        ours.append(TrafficTarget(revision_name=canary, percent=canary_weight, tag=CANARY_TAG))
    return (*ours, *kept_entries(current))


def traffic_patch(
    *,
    current_raw: Sequence[Any] | None,
    desired: Sequence[TrafficTarget],
    annotations: Mapping[str, str] | None,
    primary_annotation: str | None = None,
) -> list[dict[str, Any]]:
    """A JSON patch that replaces spec.traffic (and the annotation) only if they are as we last read them.

    The `test` ops make the write conditional on exactly the fields we own, so status updates by
    Knative do not cause conflicts but a concurrent edit of the traffic or the annotation does.
    """
    ops: list[dict[str, Any]] = []
    if primary_annotation is not None:
        key = "/metadata/annotations/" + PRIMARY_REVISION_ANNOTATION.replace("~", "~0").replace("/", "~1")
        if annotations is None:
            ops.append(
                {
                    "op": "add",
                    "path": "/metadata/annotations",
                    "value": {PRIMARY_REVISION_ANNOTATION: primary_annotation},
                }
            )
        elif PRIMARY_REVISION_ANNOTATION in annotations:
            ops.append({"op": "test", "path": key, "value": annotations[PRIMARY_REVISION_ANNOTATION]})
            ops.append({"op": "replace", "path": key, "value": primary_annotation})
        else:
            ops.append({"op": "add", "path": key, "value": primary_annotation})
    entries = [to_entry(t) for t in desired]
    if current_raw is None:
        ops.append({"op": "add", "path": "/spec/traffic", "value": entries})
    else:
        ops.append({"op": "test", "path": "/spec/traffic", "value": list(current_raw)})
        ops.append({"op": "replace", "path": "/spec/traffic", "value": entries})
    return ops


def _key(target: TrafficTarget) -> tuple[str, int, str]:
    # A latestRevision entry resolves to some revision in status; match it by tag and percent only.
    revision = "*" if target.latest_revision else (target.revision_name or "")
    return (target.tag or "", target.percent, revision)


def traffic_matches(desired: Sequence[TrafficTarget], observed: Sequence[TrafficTarget]) -> bool:
    """status.traffic shows what was asked: same (tag, percent, revisionName), url and order ignored."""
    if len(desired) != len(observed):
        return False
    return sorted(_key(t) for t in desired) == sorted(_key(t) for t in observed)


def routes_ready(obj: Obj) -> bool | None:
    """The Service's RoutesReady condition (Ready where a Service reports no RoutesReady).

    RoutesReady, not Ready, says whether the traffic is where spec.traffic asks: Ready also folds in
    ConfigurationsReady, which stays False while the newest revision is broken, even after all traffic
    went back to a healthy pinned revision (knative-semantics 1.3, 2.7).
    """
    conditions = _conditions(obj)
    chosen = conditions.get("RoutesReady") or conditions.get("Ready") or {}
    return _tristate(chosen.get("status"))


# RoutesReady False for these reasons is the Route's last word on what was written: waiting changes
# nothing until someone changes the cluster. Knative 1.17: `ErrorConfig` when a host it must name is not a
# valid domain name (route.go, domains.ErrDomainName), `NotOwned` when a placeholder Kubernetes Service (or
# its Endpoints) named for the Route or one of its tags exists and belongs to someone else
# (reconcile_resources.go).
ROUTE_REFUSALS: Mapping[str, str] = {
    "ErrorConfig": "Knative cannot name a host of this Route (a tag host is not a valid DNS name)",
    "NotOwned": (
        "a Kubernetes Service (or Endpoints) with the name Knative gives a tag's host exists and is not"
        " the Route's: delete or rename it, then run again"
    ),
}


def route_refusal(obj: Obj, *, generation: int) -> tuple[str, str] | None:
    """(reason, message) when, at `generation` or later, the Service reports RoutesReady False for a
    reason in `ROUTE_REFUSALS`; None otherwise (converged, still working, or another failure)."""
    view = view_of(obj)
    if view.observed_generation < generation:
        return None
    conditions = _conditions(obj)
    chosen = conditions.get("RoutesReady") or conditions.get("Ready") or {}
    reason = str(chosen.get("reason") or "")
    if _tristate(chosen.get("status")) is False and reason in ROUTE_REFUSALS:
        return reason, str(chosen.get("message") or "")
    return None


def converged(obj: Obj, *, generation: int, desired: Sequence[TrafficTarget]) -> ServiceView | None:
    """knative-semantics 2.7: observedGeneration caught up, routes ready, status.traffic as asked.

    Returns the view when converged, else None.
    """
    view = view_of(obj)
    if (
        view.observed_generation >= generation
        and routes_ready(obj) is True
        and traffic_matches(desired, view.status_traffic)
    ):
        return view
    return None


def describe_view(view: ServiceView) -> str:
    ready = {True: "True", False: "False", None: "Unknown"}[view.ready]
    why = f" {view.ready_reason}" if view.ready_reason else ""
    msg = f": {view.ready_message}" if view.ready_message else ""
    return (
        f"status.traffic {describe_traffic(view.status_traffic, by='entry')},"
        f" spec.traffic {describe_traffic(view.spec_traffic, by='entry')},"
        f" observedGeneration {view.observed_generation} of {view.generation}, Ready {ready}{why}{msg}"
    )

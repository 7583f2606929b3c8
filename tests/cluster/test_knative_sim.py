"""The Knative simulator's pure parts: defaulting, revision names, condition sets; no API server, except
the one cluster test of a typed client's GET-then-PUT (marked ``cluster``)."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest

from tests.cluster import ControlPlane, podinfo_service
from tests.cluster.knative_sim import (
    Conditions,
    WorkQueue,
    child_name,
    default_template,
    default_traffic,
)


def test_no_traffic_defaults_to_all_on_the_latest_revision() -> None:
    assert default_traffic(None) == [{"latestRevision": True, "percent": 100}]
    assert default_traffic([]) == [{"latestRevision": True, "percent": 100}]


def test_each_target_gets_latest_revision_and_percent() -> None:
    assert default_traffic(
        [{"revisionName": "a", "percent": 90}, {"percent": 10}, {"tag": "x", "revisionName": "b"}]
    ) == [
        {"revisionName": "a", "percent": 90, "latestRevision": False},
        {"percent": 10, "latestRevision": True},
        {"tag": "x", "revisionName": "b", "latestRevision": False, "percent": 0},
    ]
    stored = [{"revisionName": "a", "latestRevision": False, "percent": 100}]
    assert default_traffic(stored) == stored  # already defaulted: nothing to write back


def test_revision_names_follow_kmeta_child_name() -> None:
    assert child_name("podinfo", "-00002") == "podinfo-00002"
    parent = "a" * 60
    name = child_name(parent, "-00001")
    assert len(name) == 63
    assert (
        name
        == "a" * (63 - 6 - 32) + hashlib.md5(parent.encode(), usedforsecurity=False).hexdigest() + "-00001"
    )


def test_ready_copies_the_most_recently_changed_unhappy_dependent_false_first() -> None:
    changed: dict[str, float] = {}
    conditions = Conditions(None, dependents=("ConfigurationsReady", "RoutesReady"), changed_at=changed)
    conditions.set("ConfigurationsReady", "True")
    conditions.set("RoutesReady", "True")
    conditions.recompute_ready()
    assert conditions.status("Ready") == "True"
    conditions.set("ConfigurationsReady", "False", "RevisionFailed", "m1")
    conditions.set("RoutesReady", "Unknown", "RevisionMissing", "m2")
    conditions.recompute_ready()
    assert conditions.get("Ready") is not None
    assert (conditions.get("Ready") or {}).get("reason") == "RevisionFailed"  # False beats a newer Unknown
    conditions.set("RoutesReady", "False", "RevisionMissing", "m3")
    conditions.recompute_ready()
    assert (conditions.get("Ready") or {}).get("reason") == "RevisionMissing"  # the newer of two False
    # A later pass that changes nothing keeps the choice, although both stored times have whole seconds.
    again = Conditions(
        conditions.as_list(), dependents=("ConfigurationsReady", "RoutesReady"), changed_at=changed
    )
    again.recompute_ready()
    assert (again.get("Ready") or {}).get("reason") == "RevisionMissing"
    assert [c["type"] for c in again.as_list()] == ["ConfigurationsReady", "Ready", "RoutesReady"]


def test_an_unchanged_condition_keeps_its_transition_time() -> None:
    conditions = Conditions(
        [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    )
    conditions.set("Ready", "True")
    assert (conditions.get("Ready") or {})["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    conditions.set("Ready", "Unknown", "Deploying")
    assert (conditions.get("Ready") or {})["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_the_work_queue_deduplicates_and_honours_due_times() -> None:
    queue = WorkQueue()
    queue.add(("ns", "b"), after=0.2)
    queue.add(("ns", "a"))
    queue.add(("ns", "a"))
    assert queue.get() == ("ns", "a")
    assert queue.get() == ("ns", "b")
    queue.close()
    assert queue.get() is None


def _go_round_trip(template: dict[str, Any]) -> dict[str, Any]:
    """What a typed Go client (Flagger's knative clientset) writes back of a template it read: Go's encoding
    always writes ``metadata`` and each container's ``name`` and ``resources`` (seen in the audit of Flagger's
    first PUT on the simulator before it defaulted the template: ``"metadata": {}``, ``"name": ""``,
    ``"resources": {}``)."""
    written = copy.deepcopy(template)
    written.setdefault("metadata", {})
    for container in written["spec"]["containers"]:
        container.setdefault("name", "")
        container.setdefault("resources", {})
    return written


def test_the_template_is_defaulted_as_knatives_webhook_stores_it() -> None:
    template = podinfo_service("podinfo", "ns", "ghcr.io/stefanprodan/podinfo:6.0.0")["spec"]["template"]
    defaulted = default_template(template)
    (container,) = defaulted["spec"]["containers"]
    assert defaulted["metadata"] == {}
    assert container["name"] == "user-container"
    assert container["resources"] == {}
    assert container["readinessProbe"] == {"successThreshold": 1, "tcpSocket": {"port": 0}}
    assert (defaulted["spec"]["timeoutSeconds"], defaulted["spec"]["containerConcurrency"]) == (300, 0)
    assert defaulted["spec"]["enableServiceLinks"] is False
    assert default_template(defaulted) == defaulted  # stored: nothing to write back
    assert container["image"] == "ghcr.io/stefanprodan/podinfo:6.0.0"
    assert template["spec"]["containers"][0].get("name") is None  # the input is not changed


def test_a_typed_clients_round_trip_leaves_the_defaulted_template_as_it_was() -> None:
    template = podinfo_service("podinfo", "ns", "ghcr.io/stefanprodan/podinfo:6.0.0")["spec"]["template"]
    assert _go_round_trip(template) != template  # undefaulted, a GET-then-PUT changed the template
    stored = default_template(template)
    assert _go_round_trip(stored) == stored
    assert default_template(_go_round_trip(template)) == stored


def test_several_containers_get_numbered_names_around_the_users_own() -> None:
    template = {"spec": {"containers": [{"image": "a", "ports": [{"containerPort": 80}]}, {"image": "b"},
                                        {"name": "user-container-0", "image": "c"}]}}  # fmt: skip
    containers = default_template(template)["spec"]["containers"]
    assert [c["name"] for c in containers] == ["user-container-1", "user-container-2", "user-container-0"]
    assert "readinessProbe" in containers[0]  # the serving container (it has a port)
    assert "readinessProbe" not in containers[1] and "readinessProbe" not in containers[2]


@pytest.mark.cluster
def test_a_get_then_put_of_the_service_makes_no_revision(control_plane: ControlPlane, namespace: str) -> None:
    """Flagger's ``Update`` of a Service it read (annotation + traffic) must not change the template."""
    plane = control_plane
    plane.create_podinfo(namespace)
    service = plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    service["metadata"].setdefault("annotations", {})["flagger.app/primary-revision"] = "podinfo-00001"
    service["spec"]["template"] = _go_round_trip(service["spec"]["template"])
    service["spec"]["traffic"] = [
        {"latestRevision": True, "percent": 0},
        {"revisionName": "podinfo-00001", "percent": 100},
    ]
    plane.knative.replace("services", namespace, service)
    # Ready at the PUT's generation (not only observed: the interim OutOfDate status is observed first).
    plane.wait_ready(namespace, "podinfo")
    assert [r["metadata"]["name"] for r in plane.knative.list("revisions", namespace)] == ["podinfo-00001"]
    assert plane.get_service(namespace)["status"]["latestCreatedRevisionName"] == "podinfo-00001"

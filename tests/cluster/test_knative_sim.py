"""The Knative simulator's pure parts: defaulting, revision names, condition sets. No API server."""

from __future__ import annotations

import hashlib

from tests.cluster.knative_sim import Conditions, WorkQueue, child_name, default_traffic


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

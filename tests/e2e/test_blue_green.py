"""Blue/green (`iterations`) end to end on the local control plane, through the canary tag.

The real `canary-step run` against the API server, the Knative simulator, the data plane, a real
Prometheus and the load tester. While it runs, a user client sends requests to the Service's own host
and a watcher reads the Service's status: the canary revision must get no user request before the
switch, every user request must be answered by the primary while the analysis runs, and the canary
must still be measured, on the load test's requests to its tagged URL. Prometheus' own counters are
checked against both clients' counts, so "the primary served every user request" is read from the
same series the built-in checks read.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import ControlPlane, wait_for
from tests.e2e.test_run import PODINFO, Step, canary_spec, pinned_step

pytestmark = pytest.mark.cluster

ITERATIONS = 4


def blue_green_spec(namespace: str, *, threshold: int = 2) -> dict[str, Any]:
    """The seed's Canary as blue/green: 4 iterations at 2 s, the load test on `{{ canary_url }}`."""
    hey = "hey -z 30s -q 20 -c 2 {{ canary_url }}/"
    hooks = [
        {"name": "load-start", "type": "pre-rollout", "url": "LOADTESTER", "metadata": {"cmd": hey}},
        {"name": "load-test", "url": "LOADTESTER", "timeout": "5s", "metadata": {"type": "cmd", "cmd": hey}},
    ]
    spec = canary_spec(namespace, interval="2s", threshold=threshold, load=False, webhooks=hooks)
    analysis = spec["spec"]["analysis"]
    del analysis["maxWeight"], analysis["stepWeight"]
    analysis["iterations"] = ITERATIONS
    return spec


@dataclass
class Users:
    """Users of the Service: requests to its own host through the ingress, one at a time, ~20 per second."""

    router: str
    host: str
    answers: list[tuple[float, int, str]] = field(default_factory=list)  # (monotonic, status, revision)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        address = urllib.parse.urlsplit(self.router)
        connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=10)
        try:
            while not self.stop.wait(0.05):
                connection.request("GET", "/", headers={"Host": self.host})
                response = connection.getresponse()
                body = response.read()
                revision = json.loads(body).get("revision", "") if response.status == 200 else ""
                self.answers.append((time.monotonic(), response.status, revision))
        finally:
            connection.close()


@dataclass
class Watcher:
    """The Service's status.traffic and annotation, read every 100 ms."""

    step: Step
    seen: list[tuple[str | None, dict[str, int], dict[str, str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.1):
            service = self.step.service()
            annotation = (service["metadata"].get("annotations") or {}).get("flagger.app/primary-revision")
            split: dict[str, int] = {}
            urls: dict[str, str] = {}
            for target in (service.get("status") or {}).get("traffic") or []:
                revision = target.get("revisionName", "")
                split[revision] = split.get(revision, 0) + int(target.get("percent") or 0)
                if target.get("tag"):
                    urls[target["tag"]] = target.get("url", "")
            self.seen.append((annotation, split, urls))


@pytest.fixture
def step(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Step]:
    """podinfo serving podinfo-00001, pinned as the primary by a first run (`initialized`)."""
    yield from pinned_step(control_plane, namespace, tmp_path, blue_green_spec(namespace))


def run_with_users(step: Step, spec: dict[str, Any]) -> tuple[Any, Users, Watcher]:
    users = Users(router=step.cp.router_url, host=f"podinfo.{step.namespace}")
    watcher = Watcher(step)
    threads = [
        threading.Thread(target=users.run, daemon=True),
        threading.Thread(target=watcher.run, daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        # The harness's Prometheus scrapes every second: the no-data grace is as short as it can be, so a
        # faulty canary cannot pass its few iterations on "no values found" (the default grace is 30 s).
        result = step.run(spec, args=("--scrape-interval", "1s"), timeout=180)
    finally:
        users.stop.set()
        watcher.stop.set()
        for thread in threads:
            thread.join(timeout=15)
    return result, users, watcher


def envoy_requests(step: Step, revision: str, *, codes: str = ".*") -> float:
    """Prometheus' count of the requests Envoy sent to `revision` (the built-in checks' series)."""
    query = (
        f'sum(envoy_cluster_upstream_rq{{envoy_cluster_name="{step.namespace}/{revision}",'
        f'envoy_response_code=~"{codes}"}})'
    )
    return step.cp.prometheus.query_value(query) or 0.0


def answered_by_tag(step: Step, url: str) -> int:
    """Requests of the load tester's runs at the tagged URL that a revision answered (404: no route)."""
    total = 0
    for run in step.cp.loadtester.runs():
        if url in run["cmd"]:
            total += sum(n for code, n in run["codes"].items() if code != "404")
    return total


def test_a_good_revision_is_promoted_after_n_iterations_with_no_user_traffic_before_the_switch(
    step: Step,
) -> None:
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.1")
    result, users, watcher = run_with_users(step, blue_green_spec(ns, threshold=5))
    assert result.code == 0, result.stderr
    assert (result.results["decision"], result.results["reason"]) == ("promoted", "analysis-passed")
    assert result.results["primary-revision"] == "podinfo-00002"
    assert result.results["canary-weight"] == "0"  # no user traffic was ever routed to it before the switch
    assert step.traffic() == {"podinfo-00002": 100} and step.annotation() == "podinfo-00002"

    # The canary revision was tagged, at 0 %, and its URL is the one Knative reported.
    tagged = [urls["canary"] for annotation, _, urls in watcher.seen if "canary" in urls]
    assert tagged, watcher.seen
    url = tagged[0]
    assert url.startswith(f"http://canary-podinfo.{ns}.")
    events = step.events()
    assert f"Routing no traffic to podinfo-00002.{ns}: tag canary, reachable at {url}" in events
    iterations = [m for m in events if m.startswith(f"Advance podinfo.{ns} canary iteration")]
    assert iterations == [f"Advance podinfo.{ns} canary iteration {n}/{ITERATIONS}" for n in range(1, 5)]
    assert not any(m.startswith(f"Advance podinfo.{ns} canary weight") for m in events)
    assert events[-1] == f"Promotion completed! Scaling down podinfo.{ns}"

    # While podinfo-00001 was the primary, the canary's share of status.traffic was 0 every time.
    before = [split for annotation, split, _ in watcher.seen if annotation == "podinfo-00001"]
    assert before and all(split.get("podinfo-00002", 0) == 0 for split in before), before
    # The report's ticks: 0 % until the promotion, and the checks measured the canary's tag traffic.
    ticks = result.report["ticks"]
    assert [t["canaryWeight"] for t in ticks[:-1]] == [0] * (len(ticks) - 1) and ticks[-1][
        "canaryWeight"
    ] == 100
    measured = [c["value"] for t in ticks for c in t["checks"] if c["metric"] == "request-success-rate"]
    assert any(value == 100.0 for value in measured), ticks

    # The load test was sent the URL, in its command and as canaryUrl.
    posted = [c["body"] for c in step.cp.loadtester.calls("/") if (c["body"] or {}).get("namespace") == ns]
    assert posted and all(p["canaryUrl"] == url for p in posted)
    assert {p["metadata"]["cmd"] for p in posted} == {f"hey -z 30s -q 20 -c 2 {url}/"}

    # The users: every answer came from podinfo-00001 until the switch, then from podinfo-00002.
    revisions = [revision for _, status, revision in users.answers]
    assert all(status == 200 for _, status, _ in users.answers)
    switch = revisions.index("podinfo-00002") if "podinfo-00002" in revisions else len(revisions)
    assert revisions[:switch] == ["podinfo-00001"] * switch and switch > 20
    assert set(revisions[switch:]) <= {"podinfo-00002"}

    # Prometheus agrees: podinfo-00001 served exactly the users' requests, and podinfo-00002 exactly
    # the load test's requests at its tag plus the users' after the switch.
    by_primary, by_canary = switch, len(revisions) - switch
    wait_for(
        lambda: (
            envoy_requests(step, "podinfo-00001") == by_primary
            and envoy_requests(step, "podinfo-00002") == by_canary + answered_by_tag(step, url)
        ),
        timeout=20,
        what="Prometheus' counts equal the users' and the load test's",
        describe=lambda: (
            envoy_requests(step, "podinfo-00001"),
            by_primary,
            envoy_requests(step, "podinfo-00002"),
            by_canary,
            answered_by_tag(step, url),
        ),
    )
    assert answered_by_tag(step, url) > 0


def test_a_faulty_revision_is_rolled_back_with_the_primary_at_100_percent_throughout(step: Step) -> None:
    ns = step.namespace
    step.deploy(f"{PODINFO}:6.0.2-fault-5xx-60")
    result, users, watcher = run_with_users(step, blue_green_spec(ns, threshold=2))
    assert result.code == 3, result.stderr
    assert (result.results["decision"], result.results["reason"]) == (
        "rolled-back",
        "failed-checks-threshold",
    )
    assert result.results["canary-weight"] == "0"
    assert "Traffic: 100% on podinfo-00001. Exit 3." in result.stderr
    # The rollback dropped the tag: only the primary's entry is left.
    status = step.service()["status"]["traffic"]
    assert [(t["revisionName"], t["percent"], t.get("tag")) for t in status] == [
        ("podinfo-00001", 100, "primary")
    ]
    events = step.events()
    assert any(m.startswith(f"Halt podinfo.{ns} advancement success rate") for m in events), events
    assert f"Rolling back podinfo.{ns} failed checks threshold reached 2" in events
    assert not any(m.startswith(f"Advance podinfo.{ns} canary iteration {ITERATIONS}/") for m in events)

    # status.traffic: 100 % on the primary every time the watcher looked.
    assert watcher.seen and all(
        split in ({"podinfo-00001": 100}, {"podinfo-00001": 100, "podinfo-00002": 0})
        for _, split, _ in watcher.seen
    ), watcher.seen
    tagged = [urls["canary"] for _, _, urls in watcher.seen if "canary" in urls]
    assert tagged, watcher.seen
    url = tagged[0]

    # The users never saw the fault: every answer 200, every one from the primary.
    assert len(users.answers) > 20
    assert {(status, revision) for _, status, revision in users.answers} == {(200, "podinfo-00001")}
    # Prometheus: the primary served exactly the users' requests, none of them a 5xx; every request
    # the canary revision served came from the load test at its tag, and its 5xx are what failed it.
    wait_for(
        lambda: (
            envoy_requests(step, "podinfo-00001") == len(users.answers)
            and envoy_requests(step, "podinfo-00002") == answered_by_tag(step, url)
        ),
        timeout=20,
        what="Prometheus' counts equal the users' and the load test's",
        describe=lambda: (
            envoy_requests(step, "podinfo-00001"),
            len(users.answers),
            envoy_requests(step, "podinfo-00002"),
            answered_by_tag(step, url),
        ),
    )
    assert envoy_requests(step, "podinfo-00001", codes="5.*") == 0
    assert envoy_requests(step, "podinfo-00002", codes="5.*") > 0

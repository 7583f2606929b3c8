"""The audit-log reading of ``make bench-flagger`` (tests.cluster.flagger_audit): pure, no API server."""

from __future__ import annotations

import json
from typing import Any

from tests.cluster import flagger_audit as audit

FLAGGER = "system:serviceaccount:flagger-system:flagger"
STEP = "system:serviceaccount:vs-step:canary-step"


def line(
    audit_id: str,
    at: float,
    *,
    user: str = FLAGGER,
    verb: str = "get",
    resource: str = "services",
    group: str = "serving.knative.dev",
    name: str = "podinfo",
    stage: str = "ResponseComplete",
    body: dict[str, Any] | None = None,
) -> str:
    seconds = f"{at:09.6f}"
    entry: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Request" if body else "Metadata",
        "auditID": audit_id,
        "stage": stage,
        "requestURI": f"/apis/{group}/v1/namespaces/ns/{resource}/{name}",
        "verb": verb,
        "user": {"username": user},
        "objectRef": {"resource": resource, "namespace": "ns", "name": name, "apiGroup": group},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": f"2026-12-03T07:00:{seconds}Z",
    }
    if body is not None:
        entry["requestObject"] = body
    return json.dumps(entry)


def event(audit_id: str, at: float, message: str, *, verb: str = "create", name: str = "e1") -> str:
    body = {"message": message, "reason": "Synced"} if verb == "create" else {"count": 2}
    return line(audit_id, at, verb=verb, resource="events", group="", name=name, body=body)


LOG = [
    line("w", 0.0, verb="watch", resource="canaries", group="flagger.app", stage="ResponseStarted"),
    line("a", 0.1),
    event("b", 0.2, "Initialization done! podinfo.ns"),
    line("c", 10.0),
    event("d", 10.1, "Advance podinfo.ns canary weight 10", name="e2"),
    line("e", 20.0),
    event("f", 20.1, "Advance podinfo.ns canary weight 10", verb="patch", name="e2"),
    line("g", 30.0),
    event(
        "h", 30.2, "(combined from similar events): Promotion completed! Scaling down podinfo.ns", name="e3"
    ),
    line("i", 40.0),
    line("j", 20.5, user=STEP, verb="patch"),
    "not json",
    json.dumps({"kind": "EventList"}),
    line("w", 0.0, verb="watch", resource="canaries", group="flagger.app", stage="ResponseComplete"),
]


def test_one_request_per_audit_id_in_the_order_received() -> None:
    requests = audit.parse(LOG)
    assert [r.audit_id for r in requests] == ["w", "a", "b", "c", "d", "e", "f", "j", "g", "h", "i"]
    watch = requests[0]
    assert (watch.verb, watch.resource, watch.user) == ("watch", "flagger.app/canaries", FLAGGER)
    assert requests[2].is_event_write and requests[2].event_message == "Initialization done! podinfo.ns"
    assert requests[1].resource == "serving.knative.dev/services" and not requests[1].is_event_write


def test_requests_are_told_apart_by_user_and_window() -> None:
    requests = audit.parse(LOG)
    assert [r.audit_id for r in audit.of_user(requests, STEP)] == ["j"]
    assert len(audit.of_user(requests, FLAGGER)) == 10
    assert [
        r.audit_id for r in audit.of_user(requests, FLAGGER, start=10.0 + _base(), end=20.0 + _base())
    ] == [
        "c",
        "d",
    ]


def _base() -> float:
    return audit.parse([line("x", 0.0)])[0].received


def test_ticks_are_bursts_named_by_their_events_and_a_repeat_keeps_its_first_text() -> None:
    mine = audit.of_user(audit.parse(LOG), FLAGGER)
    ticks = audit.ticks(mine, gap_s=4.0)
    assert [len(t.requests) for t in ticks] == [3, 2, 2, 2, 1]
    assert [t.kind for t in ticks] == ["initialise", "advance", "advance", "promote", "no event"]
    renewal = audit.Tick(requests=[audit.parse([line("r", 50.0, verb="watch", resource="canaries")])[0]])
    assert renewal.kind == "list/watch only"  # a watch renewal is not a tick of the loop
    assert ticks[2].events == ["Advance podinfo.ns canary weight 10"]  # the patch of e2, named by its create
    summary = audit.per_kind(ticks)
    assert list(summary) == ["promote", "advance", "initialise", "no event"]
    assert summary["advance"].cell() == "2.0 (2; 2 ticks)"
    assert summary["initialise"].cell() == "3.0 (3; 1 ticks)"


def test_kinds_follow_flaggers_texts_with_start_before_advance() -> None:
    assert audit.kind_of(["Starting canary analysis for a.b", "Advance a.b canary weight 10"]) == "start"
    assert audit.kind_of(["Halt a.b advancement success rate 40.00% < 99%"]) == "hold"
    assert (
        audit.kind_of(["Rolling back a.b failed checks threshold reached 5", "Canary failed!"]) == "rollback"
    )
    assert audit.kind_of(["New revision detected! Scaling up a.b"]) == "detect"
    assert audit.kind_of(["all the metrics providers are available!"]) == "other event"
    assert audit.kind_of([]) == "no event"


def test_verbs_and_the_table() -> None:
    assert audit.verbs(audit.of_user(audit.parse(LOG), STEP)) == {"patch serving.knative.dev/services": 1}
    text = audit.table(["measure", "Flagger", "canary-step"], [["requests", 113, 27]])
    assert text.splitlines() == [
        "measure   Flagger  canary-step",
        "--------  -------  -----------",
        "requests  113      27",
    ]


FLAGGER_LOG = [
    "\t".join(fields)
    for fields in (
        ("2026-12-03T07:00:00.100Z", "info", "controller/controller.go:204", "Started operator workers"),
        (
            "2026-12-03T07:00:00.250Z",
            "info",
            "controller/events.go:33",
            "Initialization done! podinfo.ns",
            "{}",
        ),
        (
            "2026-12-03T07:00:10.050Z",
            "info",
            "controller/events.go:33",
            "Advance podinfo.ns canary weight 10",
        ),
        ("2026-12-03T07:00:20.150Z", "info", "controller/events.go:45", "Halt podinfo.ns advancement", "{}"),
    )
]


def test_flaggers_logged_events_name_its_ticks_even_when_its_event_writes_were_dropped() -> None:
    timeline = audit.flagger_events(FLAGGER_LOG)
    assert [message for _, message in timeline] == [
        "Initialization done! podinfo.ns",
        "Advance podinfo.ns canary weight 10",
        "Halt podinfo.ns advancement",
    ]
    mine = audit.of_user(audit.parse(LOG), FLAGGER)
    ticks = audit.ticks(mine, gap_s=4.0, timeline=timeline)
    # The third burst (t=20) wrote only a patch of e2, but the log says it halted.
    assert [t.kind for t in ticks] == ["initialise", "advance", "hold", "no event", "no event"]

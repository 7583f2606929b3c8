"""The flagger-loadtester look-alike: its HTTP API, hey parsing without a shell, load through the router."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import wait_for
from tests.cluster.dataplane import DataPlane, RevisionInfo, Target
from tests.cluster.loadtester import HeyCommand, HeyUsageError, LoadTester, parse_go_duration, parse_hey


def _lookup(namespace: str, name: str) -> RevisionInfo | None:
    return RevisionInfo(namespace, name, "podinfo", "podinfo", "ghcr.io/stefanprodan/podinfo:6.0.0")


@pytest.fixture
def dataplane() -> Iterator[DataPlane]:
    plane = DataPlane(revision_lookup=_lookup)
    plane.routing.set_traffic("test", "podinfo", [Target("podinfo-00001", 100, "primary")])
    yield plane
    plane.stop()


@pytest.fixture
def tester(dataplane: DataPlane) -> Iterator[LoadTester]:
    server = LoadTester(resolve=lambda _host: ("127.0.0.1", dataplane.router.port), max_duration_s=30)
    yield server
    server.stop()


def _post(url: str, payload: Any) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        body = error.read().decode()
        error.close()
        return error.code, body


def _canary(**metadata: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "checksum": "x",
    }
    if metadata:
        payload["metadata"] = metadata
    return payload


def test_hey_flags_are_parsed_without_a_shell() -> None:
    assert parse_hey("hey -z 1m -q 5 -c 2 http://podinfo.test") == HeyCommand(
        url="http://podinfo.test", duration_s=60, rate_per_worker=5, workers=2
    )
    parsed = parse_hey(
        "hey -n 10 -c 1 -m POST -H 'X-Canary: yes' -d '{\"a\": 1}' http://podinfo-canary.test/echo"
    )
    assert parsed == HeyCommand(
        url="http://podinfo-canary.test/echo",
        requests=10,
        workers=1,
        method="POST",
        headers=(("X-Canary", "yes"),),
        body='{"a": 1}',
    )
    assert parse_go_duration("1m30s") == 90
    assert parse_go_duration("500ms") == 0.5


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("curl http://podinfo.test", "only hey commands"),
        ("hey -z 1m http://podinfo.test; rm -rf /", "more than one URL"),
        ("hey -z soon http://podinfo.test", "invalid duration"),
        ("hey -c 1000 http://podinfo.test", "-c must be 1..100"),
        ("hey -z 1m", "no URL"),
        ("hey --bogus http://podinfo.test", "unknown hey flag"),
    ],
)
def test_what_is_not_a_runnable_hey_command_is_refused(command: str, message: str) -> None:
    with pytest.raises(HeyUsageError, match=message):
        parse_hey(command)


def test_missing_metadata_is_a_400_with_flaggers_message(tester: LoadTester) -> None:
    assert _post(tester.url + "/", _canary()) == (400, "metadata not found in payload")


def test_a_shell_command_is_a_400(tester: LoadTester) -> None:
    status, body = _post(tester.url + "/", _canary(type="bash", cmd="echo hi"))
    assert status == 400 and "runs no shell" in body
    status, body = _post(tester.url + "/", _canary(cmd="curl -s http://podinfo.test"))
    assert status == 400 and "only hey commands" in body


def test_hey_load_goes_through_the_router_and_stops_by_itself(
    tester: LoadTester, dataplane: DataPlane
) -> None:
    command = "hey -n 12 -c 3 http://primary-podinfo.test/"
    assert _post(tester.url + "/", _canary(cmd=command)) == (202, "Accepted")
    assert _post(tester.url + "/", _canary(cmd=command))[0] == 202  # deduplicated while the first runs
    runs = wait_for(
        lambda: [run for run in tester.runs() if run["finished"] is not None],
        timeout=10,
        what="the hey run to finish",
    )
    assert len(tester.runs()) == 1
    assert runs[0]["sent"] == 12 and runs[0]["codes"] == {"200": 12}
    assert (
        'envoy_cluster_upstream_rq{envoy_cluster_name="test/podinfo-00001",envoy_response_code="200"} 12'
        in dataplane.metrics.exposition()
    )
    assert tester.running() == 0


def test_a_duration_run_paces_itself_and_stop_ends_it(tester: LoadTester) -> None:
    started = time.monotonic()
    assert _post(tester.url + "/", _canary(cmd="hey -z 20s -q 10 -c 1 http://podinfo.test/"))[0] == 202
    wait_for(lambda: tester.runs() and tester.runs()[0]["sent"] >= 5, timeout=10, what="5 requests")
    sent = tester.runs()[0]["sent"]
    elapsed = time.monotonic() - started
    assert sent <= 10 * elapsed + 2  # -q 10 per worker, one worker
    tester.stop()
    wait_for(lambda: tester.running() == 0, timeout=5, what="the run to stop")


def test_ending_a_namespaces_runs_leaves_the_others_running(tester: LoadTester) -> None:
    command = "hey -z 20s -q 10 -c 1 http://podinfo.test/"
    assert _post(tester.url + "/", _canary(cmd=command))[0] == 202
    other = {**_canary(cmd=command), "namespace": "test-2"}
    assert _post(tester.url + "/", other)[0] == 202
    wait_for(lambda: tester.running() == 2, timeout=10, what="two runs")
    tester.end_runs("test")
    wait_for(lambda: tester.running() == 1, timeout=5, what="the run of namespace test to end")
    (still,) = [run for run in tester.runs() if run["finished"] is None]
    assert still["canary"] == "podinfo.test-2"


def test_gates_open_close_and_check_by_canary(tester: LoadTester) -> None:
    payload = _canary()
    assert _post(tester.url + "/gate/approve", payload) == (200, "Approved")
    assert _post(tester.url + "/gate/halt", payload) == (403, "Forbidden")
    assert _post(tester.url + "/gate/check", payload)[0] == 403
    assert _post(tester.url + "/gate/open", payload)[0] == 202
    assert _post(tester.url + "/gate/check", payload)[0] == 200
    assert _post(tester.url + "/gate/check", {**payload, "namespace": "other"})[0] == 403
    assert _post(tester.url + "/gate/close", payload)[0] == 202
    assert _post(tester.url + "/gate/check", payload)[0] == 403
    assert _post(tester.url + "/rollback/check", payload)[0] == 403
    assert _post(tester.url + "/rollback/open", payload)[0] == 202
    assert _post(tester.url + "/rollback/check", payload)[0] == 200
    assert _post(tester.url + "/gate/check", payload)[0] == 403  # separate keys
    assert _post(tester.url + "/rollback/close", payload)[0] == 202
    assert _post(tester.url + "/rollback/check", payload)[0] == 403


def test_every_call_is_recorded_in_order(tester: LoadTester) -> None:
    _post(tester.url + "/gate/check", _canary())
    _post(tester.url + "/", _canary(cmd="hey -n 1 -c 1 http://podinfo.test/"))
    with urllib.request.urlopen(tester.url + "/_calls", timeout=5) as response:
        calls = json.loads(response.read())
    assert [(call["path"], call["body"]) for call in calls] == [
        ("/gate/check", _canary()),
        ("/", _canary(cmd="hey -n 1 -c 1 http://podinfo.test/")),
    ]
    assert tester.calls("/gate/check")[0]["method"] == "POST"

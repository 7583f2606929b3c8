"""The data plane without an API server: image tags, routing by host, the split, podinfo, the metrics text."""

from __future__ import annotations

import http.client
import json
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.cluster.dataplane import DataPlane, RevisionInfo, RoutingTable, Target, targets_from_status
from tests.cluster.images import Failure, behaviour_of

NS = "demo"
IMAGES = {
    "podinfo-00001": "ghcr.io/stefanprodan/podinfo:6.0.0",
    "podinfo-00002": "ghcr.io/stefanprodan/podinfo:6.0.2-fault-5xx-30",
    "podinfo-00003": "ghcr.io/stefanprodan/podinfo:6.0.3-fault-latency-120ms",
}


def _lookup(namespace: str, name: str) -> RevisionInfo | None:
    if namespace != NS or name not in IMAGES:
        return None
    return RevisionInfo(
        namespace=NS, name=name, configuration="podinfo", service="podinfo", image=IMAGES[name]
    )


@pytest.fixture
def dataplane() -> Iterator[DataPlane]:
    plane = DataPlane(revision_lookup=_lookup)
    yield plane
    plane.stop()


def _get(plane: DataPlane, host: str, path: str = "/") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", plane.router.port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _metrics(plane: DataPlane) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", plane.metrics_server.port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("image", "version", "errors", "latency", "failure"),
    [
        ("ghcr.io/stefanprodan/podinfo:6.0.1", "6.0.1", 0, 0, Failure.NONE),
        ("ghcr.io/stefanprodan/podinfo:6.0.2-fault-5xx-60", "6.0.2", 60, 0, Failure.NONE),
        ("ghcr.io/stefanprodan/podinfo:6.0.2-fault-latency-800ms", "6.0.2", 0, 800, Failure.NONE),
        ("ghcr.io/stefanprodan/podinfo:6.0.2-fault-5xx-10-fault-latency-2s", "6.0.2", 10, 2000, Failure.NONE),
        ("ghcr.io/stefanprodan/podinfo:6.0.2-broken", "6.0.2", 0, 0, Failure.CONTAINER_MISSING),
        ("ghcr.io/stefanprodan/podinfo:6.0.2-crash", "6.0.2", 0, 0, Failure.EXIT_CODE),
        ("ghcr.io/stefanprodan/podinfo:6.0.2-pending", "6.0.2", 0, 0, Failure.PENDING),
        ("localhost:5000/podinfo", "latest", 0, 0, Failure.NONE),
    ],
)
def test_image_tags_give_behaviours(
    image: str, version: str, errors: int, latency: int, failure: Failure
) -> None:
    behaviour = behaviour_of(image)
    assert (behaviour.version, behaviour.error_percent, behaviour.latency_ms, behaviour.failure) == (
        version,
        errors,
        latency,
        failure,
    )
    assert behaviour.becomes_ready is (failure is Failure.NONE)


def test_a_fault_rate_above_100_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        behaviour_of("podinfo:1-fault-5xx-150")


def test_hosts_resolve_as_knative_names_them() -> None:
    table = RoutingTable()
    table.set_traffic(
        NS,
        "podinfo",
        [Target("podinfo-00001", 100, "primary"), Target("podinfo-00002", 0, "canary")],
    )
    for host in ("podinfo.demo", "podinfo.demo.svc", "podinfo.demo.svc.cluster.local", "podinfo.demo:80"):
        destination = table.route(host)
        assert destination is not None and destination.revision == "podinfo-00001", host
    canary = table.route("canary-podinfo.demo.svc.cluster.local")
    assert canary is not None and canary.revision == "podinfo-00002"
    assert table.route("podinfo.other") is None
    assert table.route("nightly-podinfo.demo") is None
    assert table.route("127.0.0.1:8080") is None


def test_the_split_is_exact_over_every_ten_requests() -> None:
    table = RoutingTable()
    table.set_traffic(NS, "podinfo", targets_from_status(
        [
            {"revisionName": "podinfo-00001", "percent": 90, "latestRevision": False},
            {"revisionName": "podinfo-00002", "percent": 10, "latestRevision": True},
        ]
    ))  # fmt: skip
    picks = []
    for _ in range(100):
        destination = table.route("podinfo.demo")
        assert destination is not None
        picks.append(destination.revision)
    for start in range(0, 100, 10):
        assert Counter(picks[start : start + 10]) == {"podinfo-00001": 9, "podinfo-00002": 1}


def test_duplicate_entries_for_one_revision_add_up() -> None:
    table = RoutingTable()
    table.set_traffic(NS, "podinfo", [Target("podinfo-00001", 50), Target("podinfo-00001", 50, "primary")])
    assert {table.route("podinfo.demo").revision for _ in range(5)} == {"podinfo-00001"}  # type: ignore[union-attr]


def test_router_serves_podinfo_by_status_traffic(dataplane: DataPlane) -> None:
    dataplane.routing.set_traffic(NS, "podinfo", [Target("podinfo-00001", 100)])
    status, body = _get(dataplane, "podinfo.demo")
    assert status == 200
    document = json.loads(body)
    assert document["version"] == "6.0.0"
    assert document["message"] == "greetings from podinfo v6.0.0"
    assert _get(dataplane, "podinfo.demo", "/status/418")[0] == 418
    assert json.loads(_get(dataplane, "podinfo.demo", "/delay/0.01")[1]) == {"delay": 0.01}
    assert _get(dataplane, "podinfo.demo", "/healthz")[0] == 200
    assert _get(dataplane, "podinfo.demo", "/readyz")[0] == 200
    assert _get(dataplane, "unknown.demo")[0] == 404


def test_a_revision_that_does_not_exist_answers_503(dataplane: DataPlane) -> None:
    dataplane.routing.set_traffic(NS, "podinfo", [Target("podinfo-00009", 100)])
    assert _get(dataplane, "podinfo.demo")[0] == 503
    assert (
        'envoy_cluster_upstream_rq{envoy_cluster_name="demo/podinfo-00009",envoy_response_code="503"} 1'
        in (_metrics(dataplane))
    )


def test_an_injected_5xx_rate_is_exact_and_counted_under_envoy_and_queue_proxy_names(
    dataplane: DataPlane,
) -> None:
    dataplane.routing.set_traffic(NS, "podinfo", [Target("podinfo-00002", 100)])
    codes = Counter(_get(dataplane, "podinfo.demo")[0] for _ in range(50))
    assert codes == {200: 35, 500: 15}
    text = _metrics(dataplane)
    assert (
        'envoy_cluster_upstream_rq{envoy_cluster_name="demo/podinfo-00002",envoy_response_code="200"} 35'
        in text
    )
    assert (
        'envoy_cluster_upstream_rq{envoy_cluster_name="demo/podinfo-00002",envoy_response_code="500"} 15'
        in text
    )
    assert 'envoy_cluster_upstream_rq_time_count{envoy_cluster_name="demo/podinfo-00002"} 50' in text
    assert (
        'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="demo/podinfo-00002",le="+Inf"} 50' in text
    )
    queue_proxy = (
        'revision_request_count{configuration_name="podinfo",container_name="queue-proxy",namespace_name="demo",'
        'pod_name="{pod}",response_code="500",response_code_class="5xx",revision_name="podinfo-00002",'
        'route_tag="disabled",service_name="podinfo"} 15'
    )
    backend = dataplane.backend(NS, "podinfo-00002")
    assert backend is not None
    assert queue_proxy.replace("{pod}", backend.pod) in text
    assert "# TYPE revision_request_latencies histogram" in text
    assert "# HELP revision_request_latencies The response time in millisecond" in text


def test_forgetting_a_namespace_drops_its_series_and_backends_and_keeps_the_others() -> None:
    names = {"demo": "podinfo-00001", "other": "podinfo-00001", "demo-2": "podinfo-00001"}

    def lookup(namespace: str, name: str) -> RevisionInfo | None:
        image = "ghcr.io/stefanprodan/podinfo:6.0.0"
        return RevisionInfo(namespace, name, "podinfo", "podinfo", image) if names.get(namespace) else None

    plane = DataPlane(revision_lookup=lookup)
    try:
        for namespace in names:
            plane.routing.set_traffic(namespace, "podinfo", [Target("podinfo-00001", 100)])
            assert _get(plane, f"podinfo.{namespace}")[0] == 200
        before = _metrics(plane)
        assert all(f'"{ns}/podinfo-00001"' in before and f'namespace_name="{ns}"' in before for ns in names)
        plane.forget("demo")
        after = _metrics(plane)
        # Envoy's cluster name, queue-proxy's and the OpenTelemetry names' labels: all of demo's are gone,
        # and only demo's: "demo-2" starts with "demo" but is another namespace.
        assert '"demo/' not in after and '="demo"' not in after
        for kept in ("other", "demo-2"):
            assert f'"{kept}/podinfo-00001"' in after and f'namespace_name="{kept}"' in after
            assert f'k8s_namespace_name="{kept}"' in after
        assert plane.backend("demo", "podinfo-00001") is not None  # a new one, started on demand
        assert len(after.splitlines()) < len(before.splitlines())
    finally:
        plane.stop()


def test_injected_latency_lands_in_the_millisecond_buckets(dataplane: DataPlane) -> None:
    dataplane.routing.set_traffic(NS, "podinfo", [Target("podinfo-00003", 100)])
    for _ in range(3):
        assert _get(dataplane, "podinfo.demo")[0] == 200
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in _metrics(dataplane).splitlines()
        if line[:1] != "#"
    }
    cluster = 'envoy_cluster_name="demo/podinfo-00003"'
    assert lines[f'envoy_cluster_upstream_rq_time_bucket{{{cluster},le="100"}}'] == 0
    assert lines[f'envoy_cluster_upstream_rq_time_bucket{{{cluster},le="250"}}'] == 3
    assert lines[f"envoy_cluster_upstream_rq_time_sum{{{cluster}}}"] >= 360


def _series(text: str, name: str, **labels: str) -> float:
    """The value of the one series of metric `name` whose labels include `labels`."""
    found = []
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        series, value = line.rsplit(" ", 1)
        pairs = dict(item.split("=", 1) for item in series[len(name) + 1 : -1].split(","))
        if all(pairs.get(key) == f'"{wanted}"' for key, wanted in labels.items()):
            found.append(float(value))
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_knative_1_19_opentelemetry_names_are_exported_too(dataplane: DataPlane) -> None:
    """http.server.request.duration (otelhttp), kn.queueproxy.app.duration (1.19-1.20: whole seconds) and
    kn.serving.invocation.duration (1.21+), as Knative's Prometheus exporter writes them."""
    dataplane.routing.set_traffic(NS, "podinfo", [Target("podinfo-00003", 100)])
    for _ in range(3):
        assert _get(dataplane, "podinfo.demo")[0] == 200
    dataplane.routing.set_traffic(NS, "podinfo", [Target("podinfo-00002", 100)])
    codes = Counter(_get(dataplane, "podinfo.demo")[0] for _ in range(10))
    assert codes == {200: 7, 500: 3}
    text = _metrics(dataplane)
    slow = dataplane.backend(NS, "podinfo-00003")
    faulty = dataplane.backend(NS, "podinfo-00002")
    assert slow is not None and faulty is not None
    resource = {
        "container_name": "queue-proxy",
        "k8s_namespace_name": "demo",
        "kn_configuration_name": "podinfo",
        "kn_service_name": "podinfo",
        "service_name": "podinfo",
    }
    slow_ok = {**resource, "k8s_pod_name": slow.pod, "kn_revision_name": "podinfo-00003"}
    slow_ok["http_response_status_code"] = "200"
    server = "http_server_request_duration_seconds"
    http = {"http_request_method": "GET", "network_protocol_name": "http", "url_scheme": "http"}
    assert _series(text, f"{server}_bucket", **slow_ok, **http, le="0.1") == 0
    assert _series(text, f"{server}_bucket", **slow_ok, **http, le="0.25") == 3
    invocation = "kn_serving_invocation_duration_seconds"
    assert _series(text, f"{invocation}_bucket", **slow_ok, le="0.1") == 0
    assert _series(text, f"{invocation}_bucket", **slow_ok, le="0.25") == 3
    assert _series(text, f"{invocation}_sum", **slow_ok) >= 0.36
    app = "kn_queueproxy_app_duration_seconds"
    assert _series(text, f"{app}_bucket", **slow_ok, le="0.005") == 3  # whole seconds: 0.12 s counts as 0
    assert _series(text, f"{app}_sum", **slow_ok) == 0
    faulty_5xx = {**resource, "k8s_pod_name": faulty.pod, "kn_revision_name": "podinfo-00002"}
    assert _series(text, f"{server}_count", **faulty_5xx, **http, http_response_status_code="500") == 3
    assert _series(text, f"{invocation}_count", **faulty_5xx, http_response_status_code="200") == 7
    assert "# TYPE kn_serving_invocation_duration_seconds histogram" in text


def test_a_harness_servers_errors_never_reach_the_current_sys_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An in-process CLI test swaps sys.stderr; a server thread's traceback must not land there."""
    import threading  # noqa: PLC0415
    from http.server import BaseHTTPRequestHandler  # noqa: PLC0415

    from tests.cluster.dataplane import HarnessServer  # noqa: PLC0415

    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            raise ConnectionResetError if self.path == "/reset" else ValueError("a harness bug")

    server = HarnessServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for path in ("/reset", "/bug"):
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
            conn.request("GET", path)
            with pytest.raises(http.client.RemoteDisconnected):
                conn.getresponse()
            conn.close()
    finally:
        server.shutdown()
        server.server_close()
    assert capsys.readouterr().err == ""

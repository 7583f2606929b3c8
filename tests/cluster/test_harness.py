"""The harness itself, on the real API server: Knative's behaviour, the data plane, Prometheus, teardown.

A differential test: in `make test` each test runs on the simulator (`[sim]`) and on real Knative Serving
(`[real]`) with the same assertions (the ``knative`` marker, tests/conftest.py). Where the two backends
differ, the expectation is per backend and the reason is written beside it (docs/harness.md, "Differential
run"): each difference is one the step's own tests cover on both backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.cluster import SHORT_PROGRESS_DEADLINE, ControlPlane, condition, pull_failure_reason, wait_for
from tests.cluster.knative_sim import READY_DELAY_ANNOTATION, Informer, api_client_for, close_api_client

pytestmark = [pytest.mark.cluster, pytest.mark.knative("sim", "real")]

ROOT = Path(__file__).resolve().parents[2]
HEALTHY = "ghcr.io/stefanprodan/podinfo:6.0.1"
BROKEN = "ghcr.io/stefanprodan/podinfo:6.0.2-broken"

# Flagger's rendered request-success-rate and request-duration queries for Knative, verbatim from its
# knative_test.go (flagger-semantics.md 3.1); the tests only swap in their own namespace/revision.
FLAGGER_SUCCESS_RATE = (
    ' sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"default/podinfo-00001", '
    'envoy_response_code!~"5.*" }[1m] ) ) / sum( rate( envoy_cluster_upstream_rq{ '
    'envoy_cluster_name=~"default/podinfo-00001", }[1m] ) ) * 100'
)
FLAGGER_DURATION = (
    " histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ "
    'envoy_cluster_name=~"default/podinfo-00001", }[1m] ) ) by (le) )'
)


def _get(plane: ControlPlane, host: str, path: str = "/") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(plane.router_url + path, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        body = error.read()
        error.close()
        return error.code, json.loads(body) if body.startswith(b"{") else {}


def _post_json(url: str, payload: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


class StatusRecorder:
    """Every status a Service shows, in watch order (the real watch, not polling)."""

    def __init__(self, plane: ControlPlane, namespace: str, name: str) -> None:
        self.statuses: list[dict[str, Any]] = []
        self._lock = threading.Lock()

        def on_event(_kind: str, obj: dict[str, Any]) -> None:
            meta = obj["metadata"]
            if (meta["namespace"], meta["name"]) == (namespace, name):
                with self._lock:
                    self.statuses.append({"generation": meta["generation"], **(obj.get("status") or {})})

        self._client = api_client_for(plane.kubeconfig)
        self._informer = Informer(self._client, "services", on_event)

    def __enter__(self) -> StatusRecorder:
        self._informer.start()
        assert self._informer.synced.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._informer.stop()
        close_api_client(self._client)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.statuses)


def _ready(status: dict[str, Any]) -> str:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"), "")


def test_defaulting_is_written_back_and_children_carry_knatives_names(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    created = plane.create_podinfo(namespace)
    default = [{"latestRevision": True, "percent": 100}]
    # Knative's webhook defaults spec.traffic at admission, so the create's answer has it already; the
    # simulator, having no webhook, writes the same default back from its reconciler. Either way the
    # stored Service has it once Ready (below), which is all a client of the Service sees; the step
    # never creates one.
    assert created["spec"].get("traffic") == (default if plane.backend == "real" else None)
    service = plane.wait_ready(namespace, "podinfo", "podinfo-00001")
    assert service["spec"]["traffic"] == default
    assert service["status"]["traffic"] == [
        {"latestRevision": True, "percent": 100, "revisionName": "podinfo-00001"}
    ]
    assert service["status"]["url"] == f"http://podinfo.{namespace}.svc.cluster.local"
    assert service["status"]["address"] == {"url": f"http://podinfo.{namespace}.svc.cluster.local"}
    assert service["status"]["observedGeneration"] == service["metadata"]["generation"]

    configuration = plane.knative.get("configurations", namespace, "podinfo")
    route = plane.knative.get("routes", namespace, "podinfo")
    # Active is an Info condition, outside Ready: real Knative propagates it from the PodAutoscaler a
    # moment after the Revision is Ready; the simulator sets both together.
    revision = wait_for(
        lambda: (
            r
            if (r := plane.get_revision(namespace, "podinfo-00001"))
            and condition(r, "Active").get("status") == "True"
            else None
        ),
        timeout=30,
        what="podinfo-00001 Active",
    )
    assert configuration is not None and route is not None and revision is not None
    owner = {"kind": "Service", "name": "podinfo", "uid": service["metadata"]["uid"], "controller": True}
    for child in (configuration, route):
        (ref,) = child["metadata"]["ownerReferences"]
        assert {key: ref[key] for key in owner} == owner
    assert configuration["metadata"]["labels"]["serving.knative.dev/service"] == "podinfo"
    assert route["spec"]["traffic"] == [
        {"configurationName": "podinfo", "latestRevision": True, "percent": 100}
    ]
    labels = revision["metadata"]["labels"]
    assert labels["serving.knative.dev/configuration"] == "podinfo"
    assert labels["serving.knative.dev/configurationGeneration"] == "1"
    assert labels["serving.knative.dev/configurationUID"] == configuration["metadata"]["uid"]
    assert labels["serving.knative.dev/service"] == "podinfo"
    assert labels["serving.knative.dev/serviceUID"] == service["metadata"]["uid"]
    assert labels["serving.knative.dev/routingState"] == "active"
    assert revision["metadata"]["ownerReferences"][0]["kind"] == "Configuration"
    assert {c["type"]: c["status"] for c in revision["status"]["conditions"]} == {
        "Active": "True",
        "ContainerHealthy": "True",
        "Ready": "True",
        "ResourcesAvailable": "True",
    }
    assert condition(revision, "Active")["severity"] == "Info"


def test_a_template_patch_yields_the_next_revision_in_knatives_order(
    control_plane: ControlPlane, namespace: str, podinfo: dict[str, Any]
) -> None:
    plane = control_plane
    with StatusRecorder(plane, namespace, "podinfo") as recorder:
        patched = plane.set_image(namespace, "podinfo", HEALTHY)
        plane.wait_ready(namespace, "podinfo", "podinfo-00002")
        statuses = wait_for(
            lambda: (
                [s for s in recorder.snapshot() if s.get("latestReadyRevisionName") == "podinfo-00002"]
                and recorder.snapshot()
            ),
            timeout=5,
            what="the watch to see podinfo-00002 Ready",
        )
    generation = patched["metadata"]["generation"]
    mine = [s for s in statuses if s.get("observedGeneration") == generation]

    def first(predicate: Any) -> int:
        return next(index for index, status in enumerate(mine) if predicate(status))

    out_of_date = first(lambda s: any(c.get("reason") == "OutOfDate" for c in s["conditions"]))
    created = first(
        lambda s: (
            s.get("latestCreatedRevisionName") == "podinfo-00002"
            and s.get("latestReadyRevisionName") == "podinfo-00001"
            and _ready(s) == "Unknown"
        )
    )
    ready = first(lambda s: s.get("latestReadyRevisionName") == "podinfo-00002" and _ready(s) == "True")
    assert out_of_date < created < ready
    configurations_ready = next(
        c for c in mine[out_of_date]["conditions"] if c["type"] == "ConfigurationsReady"
    )
    assert configurations_ready["message"] == (
        "The Configuration is still working to reflect the latest desired specification."
    )
    # While 00002 deploys, the latestRevision target still resolves to the latest *ready* revision.
    assert mine[created]["traffic"] == [
        {"latestRevision": True, "percent": 100, "revisionName": "podinfo-00001"}
    ]
    assert mine[ready]["traffic"] == [
        {"latestRevision": True, "percent": 100, "revisionName": "podinfo-00002"}
    ]
    configuration = plane.knative.get("configurations", namespace, "podinfo")
    assert configuration is not None and configuration["metadata"]["generation"] == 2
    # A traffic-only change bumps the Service's generation but makes no revision.
    plane.patch_service(
        namespace, "podinfo", {"spec": {"traffic": [{"revisionName": "podinfo-00001", "percent": 100}]}}
    )
    service = plane.wait_service(
        namespace,
        "podinfo",
        lambda s: (
            (s.get("status") or {}).get("traffic", [{}])[0].get("revisionName") == "podinfo-00001"
            and _ready(s.get("status") or {}) == "True"
        ),
    )
    assert service["spec"]["traffic"] == [
        {"revisionName": "podinfo-00001", "latestRevision": False, "percent": 100}
    ]
    assert service["status"]["latestCreatedRevisionName"] == "podinfo-00002"


def test_an_invalid_traffic_patch_is_rejected_with_knatives_message(
    control_plane: ControlPlane, namespace: str, podinfo: dict[str, Any]
) -> None:
    traffic = [{"revisionName": "podinfo-00001", "percent": 100}, {"latestRevision": True, "percent": 50}]
    with pytest.raises(ApiException) as raised:
        control_plane.patch_service(namespace, "podinfo", {"spec": {"traffic": traffic}})
    message = json.loads(raised.value.body or "{}")["message"]
    if control_plane.backend == "real":
        # Knative's validating webhook: a 400 in the admission envelope, naming the webhook.
        assert raised.value.status == 400
        assert message == (
            'admission webhook "validation.webhook.serving.knative.dev" denied the request: '
            "validation failed: Traffic targets sum to 150, want 100: spec.traffic"
        )
    else:
        # The simulator's CRD carries Knative's rule as CEL: a 422 with the same words. The step treats
        # both codes as a refused write (step.kube Invalid) and reports the message verbatim.
        assert raised.value.status == 422
        assert "Traffic targets sum to 150, want 100" in message


@pytest.mark.parametrize(
    "case",
    [
        (
            "ghcr.io/stefanprodan/podinfo:6.0.2-pending",
            "Unknown",
            'Revision "podinfo-00002" is not yet ready.',
        ),
        (BROKEN, "False", 'Revision "podinfo-00002" failed to become ready.'),
        (None, "False", 'Revision "podinfo-00002" referenced in traffic not found.'),
    ],
    ids=["pending", "broken", "missing"],
)
def test_status_traffic_keeps_its_last_value_while_a_pinned_revision_is_not_ready(
    control_plane: ControlPlane, namespace: str, podinfo: dict[str, Any], case: tuple[str | None, str, str]
) -> None:
    image, status, message = case
    plane = control_plane
    if image is not None:
        # Only the broken image gets the short deadline: a pending revision must stay Unknown.
        plane.set_image(
            namespace, "podinfo", image, annotations=SHORT_PROGRESS_DEADLINE if image == BROKEN else None
        )
        plane.wait_service(
            namespace,
            "podinfo",
            lambda s: (
                (s.get("status") or {}).get("latestCreatedRevisionName") == "podinfo-00002"
                # a broken revision fails after the ready delay; wait for that, so the reason is final
                and (status != "False" or condition(s, "ConfigurationsReady").get("status") == "False")
            ),
        )
    before = plane.get_service(namespace, "podinfo")["status"]["traffic"]
    patched = plane.patch_service(
        namespace,
        "podinfo",
        {
            "spec": {
                "traffic": [
                    {"revisionName": "podinfo-00001", "percent": 50},
                    {"revisionName": "podinfo-00002", "percent": 50},
                ]
            }
        },
    )
    generation = patched["metadata"]["generation"]
    service = plane.wait_service(
        namespace,
        "podinfo",
        lambda s: (
            (s.get("status") or {}).get("observedGeneration", 0) >= generation
            and condition(s, "RoutesReady").get("reason") == "RevisionMissing"
        ),
    )
    routes_ready = condition(service, "RoutesReady")
    assert (routes_ready["status"], routes_ready["message"]) == (status, message)
    assert (condition(service, "Ready")["status"], condition(service, "Ready")["reason"]) == (
        status,
        "RevisionMissing",
    )
    assert service["status"]["traffic"] == before
    assert service["status"]["latestReadyRevisionName"] == "podinfo-00001"
    # The data plane keeps serving the old split.
    assert {_get(plane, f"podinfo.{namespace}")[1]["revision"] for _ in range(5)} == {"podinfo-00001"}


def test_a_broken_revision_fails_with_knatives_reasons(
    control_plane: ControlPlane, namespace: str, podinfo: dict[str, Any]
) -> None:
    plane = control_plane
    plane.set_image(namespace, "podinfo", BROKEN, annotations=SHORT_PROGRESS_DEADLINE)
    service = plane.wait_service(
        namespace, "podinfo", lambda s: condition(s, "ConfigurationsReady").get("status") == "False"
    )
    revision = plane.get_revision(namespace, "podinfo-00002")
    assert revision is not None
    reason = pull_failure_reason(plane.backend)
    if plane.backend == "real":
        # No digest resolution here: the pull fails in the pod (ErrImagePull, from our kwok stage), and
        # Knative reports the waiting reason once the Deployment's progress deadline has passed.
        failed, message = "ResourcesAvailable", "failed to pull image: not found"
    else:
        # Knative's tag-to-digest resolution failing, as with a tag that does not exist in a registry.
        failed, message = "ContainerHealthy", f'Unable to fetch image "{BROKEN}": '
    assert condition(revision, failed)["status"] == "False"
    assert condition(revision, failed)["reason"] == reason
    assert condition(revision, "Ready")["reason"] == reason
    assert condition(revision, "Ready")["message"].startswith(message)
    configurations_ready = condition(service, "ConfigurationsReady")
    assert configurations_ready["reason"] == "RevisionFailed"
    assert configurations_ready["message"].startswith(
        f'Revision "podinfo-00002" failed with message: {message}'
    )
    assert service["status"]["latestReadyRevisionName"] == "podinfo-00001"
    assert service["status"]["traffic"][0]["revisionName"] == "podinfo-00001"


def test_the_ready_delay_annotation_holds_a_revision_back(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    started = time.monotonic()
    plane.create_podinfo(namespace, annotations={READY_DELAY_ANNOTATION: "1.5s"})
    plane.wait_service(
        namespace,
        "podinfo",
        lambda s: (s.get("status") or {}).get("latestCreatedRevisionName") == "podinfo-00001",
    )
    assert _ready(plane.get_service(namespace, "podinfo")["status"]) != "True"
    plane.wait_ready(namespace, "podinfo", "podinfo-00001", timeout=10)
    assert time.monotonic() - started >= 1.5


def test_tagged_targets_get_their_own_host_and_url(
    control_plane: ControlPlane, namespace: str, podinfo: dict[str, Any]
) -> None:
    plane = control_plane
    plane.set_image(namespace, "podinfo", HEALTHY)
    plane.wait_ready(namespace, "podinfo", "podinfo-00002")
    traffic = [
        {"revisionName": "podinfo-00001", "percent": 100, "tag": "primary"},
        {"revisionName": "podinfo-00002", "percent": 0, "tag": "canary"},
    ]
    plane.patch_service(namespace, "podinfo", {"spec": {"traffic": traffic}})
    service = plane.wait_service(
        namespace,
        "podinfo",
        lambda s: (
            len((s.get("status") or {}).get("traffic", [])) == 2 and _ready(s.get("status") or {}) == "True"
        ),
    )
    assert service["status"]["traffic"][1] == {
        "tag": "canary",
        "revisionName": "podinfo-00002",
        "percent": 0,
        "latestRevision": False,
        "url": f"http://canary-podinfo.{namespace}.svc.cluster.local",
    }
    plane.wait_routed(namespace, "podinfo", service["status"]["traffic"])
    assert _get(plane, f"canary-podinfo.{namespace}")[1]["revision"] == "podinfo-00002"
    assert _get(plane, f"primary-podinfo.{namespace}.svc.cluster.local")[1]["revision"] == "podinfo-00001"
    assert _get(plane, f"podinfo.{namespace}")[1]["version"] == "6.0.0"
    assert _get(plane, f"nightly-podinfo.{namespace}")[0] == 404


def test_a_90_10_split_under_load_shows_about_10_percent_on_the_canary_in_prometheus(
    control_plane: ControlPlane, namespace: str, podinfo: dict[str, Any]
) -> None:
    plane = control_plane
    plane.set_image(namespace, "podinfo", HEALTHY)
    plane.wait_ready(namespace, "podinfo", "podinfo-00002")
    split = [
        {"revisionName": "podinfo-00001", "percent": 90},
        {"revisionName": "podinfo-00002", "percent": 10},
    ]
    plane.patch_service(namespace, "podinfo", {"spec": {"traffic": split}})
    service = plane.wait_service(
        namespace,
        "podinfo",
        lambda s: [t["percent"] for t in (s.get("status") or {}).get("traffic", [])] == [90, 10],
    )
    plane.wait_routed(namespace, "podinfo", service["status"]["traffic"])
    hey = f"hey -z 15s -q 20 -c 2 http://podinfo.{namespace}/"
    payload = {"name": "podinfo", "namespace": namespace, "phase": "Progressing", "metadata": {"cmd": hey}}
    assert _post_json(plane.loadtester_url + "/", payload) == 202

    selector = f'envoy_cluster_name=~"{namespace}/.*"'
    # Wait until both series have 6 one-second samples, so a 5 s rate window lies inside the load.
    wait_for(
        lambda: (
            (
                plane.prometheus.query_value(
                    f"min(count_over_time(envoy_cluster_upstream_rq_total{{{selector}}}[6s]))"
                )
                or 0
            )
            >= 6
            and len(plane.prometheus.query(f"envoy_cluster_upstream_rq_total{{{selector}}}")) == 2
        ),
        timeout=20,
        what="6 scrapes of both revisions under load",
    )
    result = plane.prometheus.query(
        f"sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq{{{selector}}}[5s]))"
    )
    rates = {sample["metric"]["envoy_cluster_name"]: float(sample["value"][1]) for sample in result}
    canary_share = rates[f"{namespace}/podinfo-00002"] / sum(rates.values())
    # The router's smooth weighted round robin makes every 10 consecutive requests exactly 9:1, and both
    # series come from the same scrape, so the window can only cut at most one request per series at each
    # end: about 1 in 150 (40 rps x 4 s between first and last sample). ±2 points covers that with margin,
    # while a 80/20 or 95/5 mistake would still fail.
    assert 0.08 <= canary_share <= 0.12, rates
    assert plane.loadtester.calls("/")[-1]["body"] == payload


def test_an_injected_5xx_rate_shows_in_flaggers_success_rate_query(
    control_plane: ControlPlane, namespace: str, podinfo: dict[str, Any]
) -> None:
    plane = control_plane
    plane.set_image(namespace, "podinfo", "ghcr.io/stefanprodan/podinfo:6.0.2-fault-5xx-30")
    canary = plane.wait_ready(namespace, "podinfo", "podinfo-00002")["status"]["latestCreatedRevisionName"]
    plane.wait_routed(namespace, "podinfo", plane.get_service(namespace, "podinfo")["status"]["traffic"])
    hey = f"hey -n 200 -q 25 -c 2 http://podinfo.{namespace}/"
    payload = {"name": "podinfo", "namespace": namespace, "phase": "Progressing", "metadata": {"cmd": hey}}
    assert _post_json(plane.loadtester_url + "/", payload) == 202
    cluster = f'envoy_cluster_name="{namespace}/{canary}"'
    # All 200 requests sent and scraped: the counters' last samples are final.
    wait_for(
        lambda: plane.prometheus.query_value(f"sum(envoy_cluster_upstream_rq{{{cluster}}})") == 200,
        timeout=30,
        what="200 requests in Prometheus",
    )
    assert (
        plane.prometheus.query_value(f'sum(envoy_cluster_upstream_rq{{{cluster},envoy_response_code="500"}})')
        == 60
    )
    query = FLAGGER_SUCCESS_RATE.replace("default/podinfo-00001", f"{namespace}/{canary}")
    success_rate = plane.prometheus.query_value(query)
    # 30 % of the canary's requests fail, exactly (the backend spreads them evenly), so the rate is 70 %.
    # rate() sees only increases between the first and last scrape in the window and extrapolates each
    # series a little differently at the edges: a few points of slack, far from Flagger's usual min 99.
    assert success_rate is not None and 65 <= success_rate <= 75, success_rate
    queue_proxy = (
        f'sum(rate(revision_request_count{{namespace_name="{namespace}",revision_name="{canary}",'
        f'response_code_class!="5xx"}}[1m])) / sum(rate(revision_request_count{{namespace_name="{namespace}",'
        f'revision_name="{canary}"}}[1m])) * 100'
    )
    queue_proxy_rate = plane.prometheus.query_value(queue_proxy)
    assert queue_proxy_rate is not None and 65 <= queue_proxy_rate <= 75


def test_injected_latency_shows_in_flaggers_request_duration_query(
    control_plane: ControlPlane, namespace: str, podinfo: dict[str, Any]
) -> None:
    plane = control_plane
    plane.set_image(namespace, "podinfo", "ghcr.io/stefanprodan/podinfo:6.0.2-fault-latency-300ms")
    canary = plane.wait_ready(namespace, "podinfo", "podinfo-00002")["status"]["latestCreatedRevisionName"]
    plane.wait_routed(namespace, "podinfo", plane.get_service(namespace, "podinfo")["status"]["traffic"])
    hey = f"hey -n 20 -c 4 http://podinfo.{namespace}/"
    payload = {"name": "podinfo", "namespace": namespace, "metadata": {"type": "cmd", "cmd": hey}}
    assert _post_json(plane.loadtester_url + "/", payload) == 202
    cluster = f'envoy_cluster_name="{namespace}/{canary}"'
    wait_for(
        lambda: plane.prometheus.query_value(f"sum(envoy_cluster_upstream_rq_time_count{{{cluster}}})") == 20,
        timeout=30,
        what="20 timed requests in Prometheus",
    )
    flaggers = FLAGGER_DURATION.replace("default/podinfo-00001", f"{namespace}/{canary}")
    assert "histogram_quantile( 0.99," in flaggers
    p99 = plane.prometheus.query_value(flaggers)
    p50 = plane.prometheus.query_value(
        flaggers.replace("histogram_quantile( 0.99,", "histogram_quantile( 0.5,")
    )
    # Every request takes 300 ms and a little more, so Flagger's p99 is above Envoy's 250 ms bucket bound,
    # and the median request falls in the (250, 500] ms bucket (250 + 0.5 * 250 = 375 when all do): a
    # latency applied twice, or in the wrong unit, lands elsewhere. Not p99 <= 500: on a loaded machine
    # (seen on real Knative beside a cold CI run) a few requests take 200 ms more than their 300.
    assert p99 is not None and p99 > 250, p99
    assert p50 is not None and 250 < p50 <= 500, p50


def test_prometheus_stops_and_starts_again_on_the_same_url(control_plane: ControlPlane) -> None:
    prometheus = control_plane.prometheus
    url = prometheus.url
    prometheus.stop()
    try:
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url + "/-/ready", timeout=2).close()
    finally:
        prometheus.start()
    assert prometheus.url == url
    assert prometheus.query_value("vector(1)") == 1
    assert prometheus.query_value('up{job="knative-dataplane"}') == 1


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_teardown_leaves_no_process_behind(
    signum: signal.Signals, knative_backend: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    stderr = tmp_path / "stderr.log"
    with stderr.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.cluster",
                "--no-seed",
                "--knative",
                knative_backend,
                "--workdir",
                str(tmp_path / "plane"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        assert process.stdout is not None
        ready: dict[str, Any] = {}
        for line in process.stdout:
            if line.startswith("ready "):
                ready = json.loads(line[len("ready ") :])
                break
        assert ready, f"the control plane did not come up:\n{stderr.read_text()[-3000:]}"
        pids: list[int] = ready["pids"]
        # etcd, kube-apiserver and Prometheus; on real Knative also its controller, webhook and
        # autoscaler-hpa, kube-controller-manager, kube-scheduler and kwok.
        assert ready["knative"] == knative_backend
        assert len(pids) == {"sim": 3, "real": 9}[ready["knative"]]
        assert all(_alive(pid) for pid in pids)
        process.send_signal(signum)
        process.wait(timeout=30)
        wait_for(
            lambda: not any(_alive(pid) for pid in pids),
            timeout=15,
            what=f"no child alive after {signum.name}",
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert Counter(_alive(pid) for pid in pids) == {False: len(pids)}

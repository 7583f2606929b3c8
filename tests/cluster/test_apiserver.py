"""Tests of the API-server part of the harness: Knative's traffic rules in CEL, RBAC, TokenRequest, teardown.

Everything runs against a real etcd + kube-apiserver started by ``start_apiserver``; the binaries tests at
the bottom need no control plane.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import apiserver, binaries
from tests.cluster.apiserver import ApiServer, ApiServerError, start_apiserver
from tests.cluster.binaries import Binaries, BinaryError
from tests.cluster.crds import flagger_crds, install_crds

REPO = Path(__file__).resolve().parents[2]
SERVICES = "/apis/serving.knative.dev/v1/namespaces/{ns}/services"
MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with start_apiserver(tmp_path_factory.mktemp("apiserver")) as server:
        install_crds(server)
        yield server


@pytest.fixture
def namespace(api: ApiServer, request: pytest.FixtureRequest) -> str:
    # Each test gets its own namespace; the random suffix keeps parametrized cases apart.
    name = (
        f"t-{request.node.originalname.removeprefix('test_').replace('_', '-')[:40]}-{secrets.token_hex(3)}"
    )
    api.create_namespace(name)
    return name


def _create_service(api: ApiServer, namespace: str, name: str = "hello") -> None:
    status, body = api.request(
        "POST",
        SERVICES.format(ns=namespace),
        body={
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"template": {"spec": {"containers": [{"image": "ghcr.io/stefanprodan/podinfo:6.0.0"}]}}},
        },
    )
    assert status == 201, body


def _patch_traffic(
    api: ApiServer, namespace: str, traffic: list[dict[str, Any]]
) -> tuple[int, dict[str, Any]]:
    return api.request(
        "PATCH",
        SERVICES.format(ns=namespace) + "/hello",
        body={"spec": {"traffic": traffic}},
        content_type=MERGE_PATCH,
    )


INVALID_TRAFFIC = [
    pytest.param(
        [{"revisionName": "hello-00001", "percent": 100}, {"latestRevision": True, "percent": 50}],
        'spec.traffic: Invalid value: "array": Traffic targets sum to 150, want 100',
        id="sum-150",
    ),
    pytest.param(
        [{"revisionName": "hello-00001", "latestRevision": False, "percent": 101}],
        'spec.traffic[0].percent: Invalid value: "object": expected 0 <= 101 <= 100',
        id="percent-101",
    ),
    pytest.param(
        [{"revisionName": "hello-00001", "latestRevision": False, "percent": -5}, {"percent": 105}],
        "expected 0 <= -5 <= 100",
        id="percent-negative",
    ),
    pytest.param(
        [{"revisionName": "hello-00001", "latestRevision": True, "percent": 100}],
        'spec.traffic[0].latestRevision: Invalid value: "object": '
        'may not set revisionName "hello-00001" when latestRevision is true',
        id="revision-with-latest-true",
    ),
    pytest.param(
        [{"latestRevision": False, "percent": 100}],
        'may not set revisionName "" when latestRevision is false',
        id="no-revision-with-latest-false",
    ),
    pytest.param(
        [
            {"tag": "canary", "revisionName": "hello-00001", "percent": 50},
            {"tag": "canary", "latestRevision": True, "percent": 50},
        ],
        'spec.traffic: Invalid value: "array": Multiple definitions for "canary"',
        id="duplicate-tags",
    ),
    pytest.param(
        [{"configurationName": "hello", "percent": 100}],
        "spec.traffic[0].configurationName: Forbidden: must not set the field(s)",
        id="configuration-name",
    ),
    pytest.param(
        [{"url": "http://hello.example", "latestRevision": True, "percent": 100}],
        "spec.traffic[0].url: Forbidden: must not set the field(s)",
        id="url-in-spec",
    ),
    pytest.param(
        [{"tag": "Canary_1", "latestRevision": True, "percent": 100}],
        "invalid value: not a DNS 1035 label",
        id="tag-not-dns-1035",
    ),
]


@pytest.mark.cluster
@pytest.mark.parametrize(("traffic", "message"), INVALID_TRAFFIC)
def test_invalid_traffic_is_rejected_with_knatives_message(
    api: ApiServer, namespace: str, traffic: list[dict[str, Any]], message: str
) -> None:
    _create_service(api, namespace)

    status, body = _patch_traffic(api, namespace, traffic)

    assert status == 422, body
    assert body["reason"] == "Invalid"
    assert message in body["message"]


VALID_TRAFFIC = [
    pytest.param(
        [
            {"tag": "primary", "revisionName": "hello-00001", "latestRevision": False, "percent": 90},
            {"tag": "canary", "latestRevision": True, "percent": 10},
        ],
        id="defaulted-90-10",
    ),
    # What a client may send before Knative's defaulting: no latestRevision, a missing percent is 0.
    pytest.param([{"revisionName": "hello-00001"}, {"percent": 100}], id="undefaulted"),
    pytest.param([], id="empty"),
    pytest.param(
        [{"revisionName": "hello-00001", "percent": 50}, {"revisionName": "hello-00001", "percent": 50}],
        id="duplicate-revisions-without-tags",
    ),
]


@pytest.mark.cluster
@pytest.mark.parametrize("traffic", VALID_TRAFFIC)
def test_valid_traffic_is_stored_as_sent(
    api: ApiServer, namespace: str, traffic: list[dict[str, Any]]
) -> None:
    _create_service(api, namespace)

    status, body = _patch_traffic(api, namespace, traffic)

    assert status == 200, body
    assert body["spec"].get("traffic", []) == traffic
    assert body["metadata"]["generation"] == 2


@pytest.mark.cluster
def test_route_allows_configuration_name_but_not_both(api: ApiServer, namespace: str) -> None:
    routes = f"/apis/serving.knative.dev/v1/namespaces/{namespace}/routes"
    route: dict[str, Any] = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Route",
        "metadata": {"name": "hello"},
        "spec": {"traffic": [{"configurationName": "hello", "latestRevision": True, "percent": 100}]},
    }
    status, body = api.request("POST", routes, body=route)
    assert status == 201, body

    route["metadata"]["name"] = "both"
    route["spec"]["traffic"] = [
        {"configurationName": "hello", "revisionName": "hello-00001", "latestRevision": False, "percent": 100}
    ]
    status, body = api.request("POST", routes, body=route)
    assert status == 422
    assert "expected exactly one, got both" in body["message"]


@pytest.mark.cluster
def test_revision_spec_is_immutable_but_labels_and_status_are_not(api: ApiServer, namespace: str) -> None:
    revisions = f"/apis/serving.knative.dev/v1/namespaces/{namespace}/revisions"
    revision = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": {"name": "hello-00001"},
        "spec": {"containers": [{"image": "podinfo:6.0.0"}]},
    }
    assert api.request("POST", revisions, body=revision)[0] == 201

    status, body = api.request(
        "PATCH",
        f"{revisions}/hello-00001",
        body={"spec": {"containers": [{"image": "podinfo:6.0.1"}]}},
        content_type=MERGE_PATCH,
    )
    assert status == 422
    assert 'spec: Invalid value: "object": Immutable fields changed' in body["message"]

    status, body = api.request(
        "PATCH",
        f"{revisions}/hello-00001",
        body={"metadata": {"labels": {"serving.knative.dev/routingState": "active"}}},
        content_type=MERGE_PATCH,
    )
    assert status == 200, body
    body["status"] = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}
    status, body = api.request("PUT", f"{revisions}/hello-00001/status", body=body)
    assert status == 200, body


@pytest.mark.cluster
def test_unknown_fields_are_pruned_and_status_is_a_subresource(api: ApiServer, namespace: str) -> None:
    path = SERVICES.format(ns=namespace)
    status, body = api.request(
        "POST",
        path,
        body={
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "hello"},
            "spec": {
                "template": {
                    "metadata": {"annotations": {"kept": "yes"}, "anything": {"kept": True}},
                    "spec": {"containers": [{"image": "podinfo", "unknownField": 1}]},
                },
                "bogus": True,
            },
            "status": {"url": "http://ignored"},
        },
    )
    assert status == 201, body
    assert body["spec"] == {
        "template": {
            "metadata": {"annotations": {"kept": "yes"}, "anything": {"kept": True}},
            "spec": {"containers": [{"image": "podinfo"}]},
        }
    }
    assert "status" not in body or "url" not in body["status"]

    body["status"] = {"url": "http://hello.t.svc.cluster.local", "observedGeneration": 1}
    status, written = api.request("PUT", f"{path}/hello/status", body=body)
    assert status == 200, written
    assert written["status"]["url"] == "http://hello.t.svc.cluster.local"


@pytest.mark.cluster
def test_discovery_shows_short_names_categories_and_printer_columns(api: ApiServer, namespace: str) -> None:
    status, discovery = api.request("GET", "/apis/serving.knative.dev/v1")
    assert status == 200
    by_name = {r["name"]: r for r in discovery["resources"]}
    assert set(by_name["services"]["shortNames"]) == {"ksvc", "kservice"}
    assert set(by_name["configurations"]["shortNames"]) == {"config", "cfg"}
    assert by_name["revisions"]["shortNames"] == ["rev"]
    assert by_name["routes"]["shortNames"] == ["rt"]
    assert set(by_name["services"]["categories"]) == {"all", "knative", "serving"}
    assert "services/status" in by_name

    _create_service(api, namespace)
    table = _table(api, SERVICES.format(ns=namespace))
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "URL",
        "LatestCreated",
        "LatestReady",
        "Ready",
        "Reason",
    ]


def _table(api: ApiServer, path: str) -> dict[str, Any]:
    # The Table media type is what kubectl asks for; http.client lets us set Accept directly.
    import http.client  # noqa: PLC0415
    import ssl  # noqa: PLC0415
    import urllib.parse  # noqa: PLC0415

    url = urllib.parse.urlsplit(api.url)
    connection = http.client.HTTPSConnection(
        url.hostname or "", url.port, context=ssl.create_default_context(cafile=str(api.ca_file)), timeout=10
    )
    try:
        connection.request(
            "GET",
            path,
            headers={
                "Authorization": f"Bearer {api.admin_token}",
                "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
            },
        )
        response = connection.getresponse()
        assert response.status == 200
        table: dict[str, Any] = json.loads(response.read())
        return table
    finally:
        connection.close()


@pytest.mark.cluster
def test_flagger_crds_come_from_the_projects_schema(api: ApiServer) -> None:
    generated = flagger_crds()
    names = {crd["metadata"]["name"] for crd in generated}
    assert names == {"canaries.flagger.app", "metrictemplates.flagger.app", "alertproviders.flagger.app"}

    status, discovery = api.request("GET", "/apis/flagger.app/v1beta1")
    assert status == 200, discovery
    assert {"canaries", "metrictemplates", "alertproviders"} <= {r["name"] for r in discovery["resources"]}


PLURALS = {
    "Service": "services",
    "Canary": "canaries",
    "MetricTemplate": "metrictemplates",
    "Secret": "secrets",
}


@pytest.mark.cluster
@pytest.mark.parametrize(
    "example", ["podinfo-ksvc.yaml", "podinfo-canary.yaml", "podinfo-canary-basic-auth.yaml"]
)
def test_the_examples_are_stored_without_pruning(api: ApiServer, namespace: str, example: str) -> None:
    for document in yaml.safe_load_all((REPO / "examples" / example).read_text()):
        group_version = document["apiVersion"]
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        document["metadata"]["namespace"] = namespace
        path = f"{prefix}/namespaces/{namespace}/{PLURALS[document['kind']]}"

        status, stored = api.request("POST", path, body=document)

        assert status == 201, stored
        for field in ("spec", "data", "stringData"):
            if field in document and field in stored:
                assert stored[field] == document[field]


@pytest.mark.cluster
def test_rbac_denies_a_service_account_without_a_binding(api: ApiServer, namespace: str) -> None:
    api.create_service_account(namespace, "canary-step")
    token = api.token_for(namespace, "canary-step", expiration_seconds=600)

    status, body = api.request("GET", SERVICES.format(ns=namespace), token=token)
    assert status == 403, body
    assert f"system:serviceaccount:{namespace}:canary-step" in body["message"]

    role = {
        "metadata": {"name": "ksvc-reader"},
        "rules": [
            {"apiGroups": ["serving.knative.dev"], "resources": ["services"], "verbs": ["get", "list"]}
        ],
    }
    binding = {
        "metadata": {"name": "ksvc-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ksvc-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "canary-step", "namespace": namespace}],
    }
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    assert api.request("POST", f"{rbac}/roles", body=role)[0] == 201
    assert api.request("POST", f"{rbac}/rolebindings", body=binding)[0] == 201

    status, body = api.request("GET", SERVICES.format(ns=namespace), token=token)
    assert status == 200, body
    status, body = api.request("PATCH", SERVICES.format(ns=namespace) + "/x", body={}, token=token)
    assert status == 403


@pytest.mark.cluster
def test_token_request_issues_a_token_the_server_authenticates(api: ApiServer, namespace: str) -> None:
    token = api.token_for(namespace, "default")

    status, review = api.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        token=token,
    )

    assert status == 201, review
    user = review["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:default"
    assert f"system:serviceaccounts:{namespace}" in user["groups"]


@pytest.mark.cluster
def test_token_request_for_a_missing_service_account_fails_clearly(api: ApiServer, namespace: str) -> None:
    with pytest.raises(ApiServerError, match=r"HTTP 404: serviceaccounts \"nobody\" not found"):
        api.token_for(namespace, "nobody")


@pytest.mark.cluster
def test_kubeconfigs_work_with_the_kubernetes_client(api: ApiServer, namespace: str, tmp_path: Path) -> None:
    from kubernetes import client, config  # noqa: PLC0415 - only this test needs the client

    admin = client.CoreV1Api(config.new_client_from_config(str(api.kubeconfig), context="local"))  # type: ignore[no-untyped-call]
    assert namespace in {ns.metadata.name for ns in admin.list_namespace().items if ns.metadata}

    token = api.token_for(namespace, "default")
    kubeconfig = api.kubeconfig_for_token(token, tmp_path / "sa.kubeconfig")
    as_sa = client.CoreV1Api(config.new_client_from_config(str(kubeconfig), context="local"))  # type: ignore[no-untyped-call]
    with pytest.raises(client.ApiException) as denied:
        as_sa.list_namespace()
    assert denied.value.status == 403


def _gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.cluster
def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    server = start_apiserver(tmp_path)
    pids = server.pids
    assert not any(_gone(pid) for pid in pids)

    server.stop()
    server.stop()  # idempotent

    assert all(_gone(pid) for pid in pids)


_CHILD = textwrap.dedent(
    """
    import json, signal, sys
    from pathlib import Path
    from tests.cluster.apiserver import start_apiserver
    server = start_apiserver(Path(sys.argv[1]))
    print(json.dumps(server.pids), flush=True)
    signal.pause()
    """
)


@pytest.mark.cluster
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_an_interrupted_run_leaves_no_process_behind(tmp_path: Path, signum: signal.Signals) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as child:
        try:
            assert child.stdout is not None
            pids = json.loads(child.stdout.readline())
            assert not any(_gone(pid) for pid in pids)

            child.send_signal(signum)
            child.wait(timeout=30)

            deadline = time.monotonic() + 15
            while not all(_gone(pid) for pid in pids):
                assert time.monotonic() < deadline, f"still running after the parent died: {pids}"
                time.sleep(0.05)
        finally:
            child.kill()


@pytest.mark.cluster
def test_a_port_taken_between_choosing_and_binding_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_ports = apiserver._free_ports
        calls: list[int] = []

        def clash_first(count: int) -> list[int]:
            calls.append(count)
            return [taken, *real_free_ports(count - 1)] if len(calls) == 1 else real_free_ports(count)

        monkeypatch.setattr(apiserver, "_free_ports", clash_first)

        with start_apiserver(tmp_path) as server:
            assert server.request("GET", "/readyz")[0] == 200
        assert len(calls) == 2  # etcd could not bind the taken port; the second choice worked


@pytest.mark.cluster
def test_a_failed_start_reports_the_log_tail(tmp_path: Path) -> None:
    found = binaries.ensure(build=False)
    broken = Binaries(
        kube_apiserver=found.kube_apiserver, etcd=Path("/bin/false"), prometheus=found.prometheus
    )

    with pytest.raises(ApiServerError, match=r"etcd: etcd exited with code 1"):
        start_apiserver(tmp_path, binaries=broken)


# -- binaries lookup (no control plane) ----------------------------------------------------------------


def _fake_binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_kubebuilder_assets_come_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assets = tmp_path / "assets"
    _fake_binary(assets / "kube-apiserver")
    _fake_binary(assets / "etcd")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    monkeypatch.setenv("CANARY_STEP_CACHE", str(tmp_path / "cache"))

    found = binaries.ensure(build=False)

    assert found.kube_apiserver == assets / "kube-apiserver"
    assert found.etcd == assets / "etcd"


def test_kubebuilder_assets_without_kube_apiserver_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))

    with pytest.raises(BinaryError, match="has no executable kube-apiserver"):
        binaries.ensure()


def test_a_cached_build_with_the_current_key_is_reused_without_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("CANARY_STEP_CACHE", str(tmp_path))
    cached = _fake_binary(tmp_path / "bin" / "kube-apiserver")
    (tmp_path / "bin" / "kube-apiserver.key").write_text(binaries.build_key() + "\n")
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "go" else f"/usr/bin/{name}")

    assert binaries.ensure().kube_apiserver == cached


def test_a_stale_cache_entry_needs_a_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("CANARY_STEP_CACHE", str(tmp_path))
    _fake_binary(tmp_path / "bin" / "kube-apiserver")
    (tmp_path / "bin" / "kube-apiserver.key").write_text("built-from-another-go.mod\n")

    with pytest.raises(BinaryError, match="run `make tools`"):
        binaries.ensure(build=False)


def test_the_cli_reports_a_missing_tool_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.cluster.binaries", "ensure"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "KUBEBUILDER_ASSETS": str(tmp_path), "PYTHONPATH": str(REPO)},
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("error: KUBEBUILDER_ASSETS=")
    assert "Traceback" not in result.stderr

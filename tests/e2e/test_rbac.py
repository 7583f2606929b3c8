"""The shipped RBAC (tekton/rbac.yaml, argo/rbac.yaml) is enough and is no more than enough, proven on the
real API server of the local control plane (RBAC authorizer on).

The manifests are applied as they ship (their namespace rewritten), a token is minted for their
ServiceAccount with the TokenRequest API, and `canary-step run` runs in a subprocess with a kubeconfig
holding only that token:

- with the whole Role, the seed's promotion (deploy-and-verify, read from a Canary resource whose
  MetricTemplate authenticates with a Secret) and the seed's rollback both pass;
- with each verb of each rule removed in turn, the same run shows a "forbidden" message naming that verb
  and resource; for the calls without which no analysis is possible the run stops with exit 4 and
  traffic on the primary. Recording Events and the Canary's status are visibility, never a reason to
  stop a release, so there the run completes and the message is a warning on stderr.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import ControlPlane

pytestmark = [pytest.mark.cluster, pytest.mark.knative("real")]

ROOT = Path(__file__).resolve().parents[2]
CANARY_STEP = str(Path(sys.executable).with_name("canary-step"))
PODINFO = "ghcr.io/stefanprodan/podinfo"
ANNOTATION = "flagger.app/primary-revision"
SERVICE_ACCOUNT = "knative-canary"
RBAC_FILES = {"tekton": ROOT / "tekton" / "rbac.yaml", "argo": ROOT / "argo" / "rbac.yaml"}

# What happens without each permission. "fatal": the run stops with exit 4 (infrastructure: permission
# refused) before or while it moves traffic, and the primary serves everything. "warning": the run
# completes; stderr says what could not be recorded.
EXPECTED = {
    ("serving.knative.dev", "services", "get"): "fatal",
    ("serving.knative.dev", "services", "patch"): "fatal",
    ("serving.knative.dev", "services", "watch"): "fatal",
    ("serving.knative.dev", "revisions", "get"): "fatal",
    ("", "events", "create"): "warning",
    # Only a repeated event needs it. What happens without it (a warning, and each repeat becomes its own
    # Event) is proven by test_without_patch_on_events_each_repeat_is_its_own_event in tests/e2e/test_kube.py.
    ("", "events", "patch"): "repeats",
    ("flagger.app", "canaries", "get"): "fatal",  # --canary-ref reads the spec from the Canary
    ("flagger.app", "canaries/status", "patch"): "warning",
    ("flagger.app", "metrictemplates", "get"): "fatal",
    ("", "secrets", "get"): "fatal",
    # the Service's Lease: without it no run may touch the Service (read, create, take over / renew)
    ("coordination.k8s.io", "leases", "get"): "fatal",
    ("coordination.k8s.io", "leases", "create"): "fatal",
    ("coordination.k8s.io", "leases", "update"): "fatal",
}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _role(path: Path) -> dict[str, Any]:
    (role,) = [d for d in _docs(path) if d["kind"] == "Role" and d["metadata"]["name"] == SERVICE_ACCOUNT]
    return role


def _permissions() -> list[tuple[str, str, str]]:
    return [
        (group, resource, verb)
        for rule in _role(RBAC_FILES["tekton"])["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]


def _without(role: dict[str, Any], permission: tuple[str, str, str]) -> dict[str, Any]:
    group, resource, verb = permission
    reduced = copy.deepcopy(role)
    rules = []
    for rule in reduced["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            assert rule["apiGroups"] == [group] and rule["resources"] == [resource], rule
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
            if not rule["verbs"]:
                continue
        rules.append(rule)
    reduced["rules"] = rules
    return reduced


# --------------------------------------------------------------------------- applying manifests as admin


def _path(doc: dict[str, Any], namespace: str) -> str:
    api = doc["apiVersion"]
    prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
    plural = {
        "ServiceAccount": "serviceaccounts",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "Secret": "secrets",
        "Canary": "canaries",
        "MetricTemplate": "metrictemplates",
    }[doc["kind"]]
    return f"{prefix}/namespaces/{namespace}/{plural}"


def _apply(cp: ControlPlane, namespace: str, docs: list[dict[str, Any]]) -> None:
    for original in docs:
        doc = copy.deepcopy(original)
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            if subject.get("kind") == "ServiceAccount":
                subject["namespace"] = namespace
        base = _path(doc, namespace)
        status, body = cp.api.request("POST", base, body=doc)
        if status == 409:
            name = doc["metadata"]["name"]
            _, current = cp.api.request("GET", f"{base}/{name}")
            doc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            status, body = cp.api.request("PUT", f"{base}/{name}", body=doc)
        assert status in (200, 201), body


# --------------------------------------------------------------------------- the scenario


def _cluster_objects(cp: ControlPlane, namespace: str, *, threshold: int) -> list[dict[str, Any]]:
    """A Canary resource (read with --canary-ref) whose MetricTemplate authenticates with a Secret."""
    hey = f"hey -z 2m -q 20 -c 2 http://podinfo.{namespace}/"
    loadtester = cp.loadtester_url + "/"
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "prometheus-basic-auth"},
            "type": "Opaque",
            "stringData": {"username": "canary-step", "password": "not-checked-by-this-prometheus"},
        },
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "always-fine"},
            "spec": {
                "provider": {
                    "type": "prometheus",
                    "address": cp.prometheus_url,
                    "secretRef": {"name": "prometheus-basic-auth"},
                },
                "query": "vector(0)",
            },
        },
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo"},
            "spec": {
                "provider": "knative",
                "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"},
                "progressDeadlineSeconds": 60,
                "analysis": {
                    # 2 s, not 1 s: Prometheus (scraping every second) needs two samples of the canary's
                    # series before the success rate exists; faster ticks count "no values found".
                    "interval": "2s",
                    "threshold": threshold,
                    "maxWeight": 50,
                    "stepWeight": 25,
                    "metrics": [
                        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                        {
                            "name": "templated",
                            "templateRef": {"name": "always-fine"},
                            "thresholdRange": {"max": 1},
                            "interval": "1m",
                        },
                    ],
                    "webhooks": [
                        {
                            "name": "load-start",
                            "type": "pre-rollout",
                            "url": loadtester,
                            "metadata": {"cmd": hey},
                        },
                        {
                            "name": "load-test",
                            "url": loadtester,
                            "timeout": "5s",
                            "metadata": {"type": "cmd", "cmd": hey},
                        },
                    ],
                },
            },
        },
    ]


@dataclass
class Run:
    code: int
    stderr: str
    results: dict[str, str]


class Scenario:
    """podinfo 6.0.0 Ready, the shipped RBAC applied, and `canary-step run` with only its token."""

    def __init__(
        self, cp: ControlPlane, namespace: str, tmp: Path, rbac: Path, *, threshold: int = 5
    ) -> None:
        self.cp = cp
        self.namespace = namespace
        self.tmp = tmp
        self.rbac = rbac
        cp.create_podinfo(namespace)
        cp.wait_ready(namespace, "podinfo", "podinfo-00001")
        _apply(cp, namespace, _docs(rbac))
        _apply(cp, namespace, _cluster_objects(cp, namespace, threshold=threshold))
        token = cp.api.token_for(namespace, SERVICE_ACCOUNT)
        self.kubeconfig = cp.api.kubeconfig_for_token(token, tmp / "kubeconfig")

    def set_role(self, role: dict[str, Any]) -> None:
        _apply(self.cp, self.namespace, [role])

    def set_threshold(self, threshold: int) -> None:
        path = f"/apis/flagger.app/v1beta1/namespaces/{self.namespace}/canaries/podinfo"
        patch = {"spec": {"analysis": {"threshold": threshold}}}
        status, body = self.cp.api.request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json"
        )
        assert status == 200, body

    def run(self, *args: str, name: str, timeout: float = 120) -> Run:
        results_dir = self.tmp / name
        proc = subprocess.run(
            [
                CANARY_STEP,
                "run",
                "--canary-ref",
                f"{self.namespace}/podinfo",
                "--kubeconfig",
                str(self.kubeconfig),
                "--metrics-server",
                self.cp.prometheus_url,
                "--results-dir",
                str(results_dir),
                "--report",
                str(self.tmp / f"{name}.json"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        results = {p.name: p.read_text() for p in results_dir.iterdir()} if results_dir.exists() else {}
        return Run(proc.returncode, proc.stderr, results)

    def traffic(self) -> dict[str, int]:
        split: dict[str, int] = {}
        for target in (self.cp.get_service(self.namespace).get("status") or {}).get("traffic") or []:
            if target.get("percent"):
                split[target["revisionName"]] = split.get(target["revisionName"], 0) + target["percent"]
        return split

    def annotation(self) -> str | None:
        return (self.cp.get_service(self.namespace)["metadata"].get("annotations") or {}).get(ANNOTATION)


def test_every_permission_has_an_expectation() -> None:
    assert sorted(_permissions()) == sorted(EXPECTED), "tekton/rbac.yaml and EXPECTED disagree"
    for path in RBAC_FILES.values():
        assert _role(path)["rules"] == _role(RBAC_FILES["tekton"])["rules"]


@pytest.mark.parametrize("platform", sorted(RBAC_FILES))
def test_the_shipped_role_is_enough_for_promotion_and_rollback(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, platform: str
) -> None:
    scenario = Scenario(control_plane, namespace, tmp_path, RBAC_FILES[platform], threshold=5)

    promoted = scenario.run("--image", f"{PODINFO}:6.0.1", name="promote")
    assert promoted.code == 0, promoted.stderr
    assert promoted.results["decision"] == "promoted", promoted.stderr
    assert scenario.annotation() == "podinfo-00002"
    assert scenario.traffic() == {"podinfo-00002": 100}
    assert "forbidden" not in promoted.stderr.lower(), promoted.stderr

    scenario.set_threshold(2)
    rolled_back = scenario.run("--image", f"{PODINFO}:6.0.2-fault-5xx-60", name="rollback")
    assert rolled_back.code == 3, rolled_back.stderr
    assert rolled_back.results["decision"] == "rolled-back", rolled_back.stderr
    assert rolled_back.results["reason"] == "failed-checks-threshold"
    assert scenario.annotation() == "podinfo-00002"
    assert scenario.traffic() == {"podinfo-00002": 100}
    assert "forbidden" not in rolled_back.stderr.lower(), rolled_back.stderr


@pytest.mark.parametrize(
    "permission", sorted(p for p, e in EXPECTED.items() if e != "repeats"), ids=lambda p: f"{p[1]}-{p[2]}"
)
def test_each_permission_is_needed(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, permission: tuple[str, str, str]
) -> None:
    group, resource, verb = permission
    scenario = Scenario(control_plane, namespace, tmp_path, RBAC_FILES["tekton"])
    scenario.set_role(_without(_role(RBAC_FILES["tekton"]), permission))

    result = scenario.run("--image", f"{PODINFO}:6.0.1", name="without")

    rbac_name = f"{group}/{resource}" if group else f'""/{resource}'
    lines = [line for line in result.stderr.splitlines() if "forbidden" in line.lower()]
    assert lines, f"no forbidden message without {verb} {rbac_name}; exit {result.code}:\n{result.stderr}"
    assert any(f'"{verb}"' in line and rbac_name in line for line in lines), "\n".join(lines)
    if EXPECTED[permission] == "fatal":
        assert result.code == 4, result.stderr
        assert result.results.get("decision") == "failed", result.results
        assert scenario.traffic() == {"podinfo-00001": 100}
    else:
        assert result.code == 0, result.stderr
        assert result.results["decision"] == "promoted"
        assert scenario.traffic() == {"podinfo-00002": 100}

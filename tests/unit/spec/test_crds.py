"""The CRDs generated from our schema: structural and accepted by a real API server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from step.spec.crds import generate_crds, openapi_schema

ROOT = Path(__file__).resolve().parents[3]
INT_OR_STRING = "x-kubernetes-int-or-string"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def _value_validation_only(junctor: Any) -> bool:
    """Kubernetes allows junctors (as Flagger's `oneOf`s of `required`) that hold no type or structure."""
    branches = junctor if isinstance(junctor, list) else [junctor]
    for branch in branches:
        if not isinstance(branch, dict) or not set(branch) <= {"required", "properties", *JUNCTORS}:
            return False
        if not all(_value_validation_only(sub) for sub in branch.get("properties", {}).values()):
            return False
        if not all(_value_validation_only(branch[j]) for j in JUNCTORS if j in branch):
            return False
    return True


def _schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for crd in generate_crds():
        yield crd["spec"]["names"]["kind"], crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_three_crds_with_flaggers_names() -> None:
    crds = generate_crds()
    assert [c["metadata"]["name"] for c in crds] == [
        "canaries.flagger.app",
        "metrictemplates.flagger.app",
        "alertproviders.flagger.app",
    ]
    for crd in crds:
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["spec"]["scope"] == "Namespaced"
        assert "shortNames" not in crd["spec"]["names"]  # Flagger 1.44 defines none
        assert crd["spec"]["names"]["categories"] == ["all"]
        (version,) = crd["spec"]["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1beta1", True, True)
        assert version["subresources"] == {"status": {}}


def test_every_node_is_structural() -> None:
    for kind, schema in _schemas():
        assert "$ref" not in repr(schema) and "$defs" not in repr(schema), kind
        for path, node in _nodes(schema):
            where = f"{kind}{path}"
            assert "type" in node or node.get(INT_OR_STRING) is True, where
            if INT_OR_STRING in node:
                assert "type" not in node, where
            assert node.get("additionalProperties") is not False, where
            assert not ("properties" in node and "additionalProperties" in node), where
            for junctor in JUNCTORS:
                if junctor in node:
                    assert _value_validation_only(node[junctor]), f"{where} {junctor}"
            if node.get("type") == "array":
                assert "items" in node, where
            for keyword in ("$schema", "$id", "$comment", "const", "examples"):
                assert keyword not in node, where


def test_int_or_string_and_free_form_objects() -> None:
    canary = openapi_schema("Canary")
    service = canary["properties"]["spec"]["properties"]["service"]["properties"]
    assert service["targetPort"] == {INT_OR_STRING: True, "description": service["targetPort"]["description"]}
    # Istio's traffic policy is typed as in Flagger's CRD (it was free-form, and so accepted what Flagger's
    # CRD refuses); no object of ours is free-form any more.
    tls = service["trafficPolicy"]["properties"]["tls"]
    assert PRESERVE not in tls
    assert tls["properties"]["mode"]["enum"] == ["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]
    assert PRESERVE not in repr(canary)
    assert canary["properties"]["metadata"] == {"type": "object"}


def test_canary_printer_columns_are_flaggers() -> None:
    canary = generate_crds()[0]["spec"]["versions"][0]
    columns = [(c["name"], c["jsonPath"], c.get("priority", 0)) for c in canary["additionalPrinterColumns"]]
    assert columns == [
        ("Status", ".status.phase", 0),
        ("Weight", ".status.canaryWeight", 0),
        ("Suspended", ".spec.suspend", 1),
        ("FailedChecks", ".status.failedChecks", 1),
        ("Interval", ".spec.analysis.interval", 1),
        ("Mirror", ".spec.analysis.mirror", 1),
        ("StepWeight", ".spec.analysis.stepWeight", 1),
        ("StepWeights", ".spec.analysis.stepWeights", 1),
        ("MaxWeight", ".spec.analysis.maxWeight", 1),
        ("LastTransitionTime", ".status.lastTransitionTime", 0),
    ]


def test_canary_status_lets_the_step_write_what_flagger_writes() -> None:
    status = openapi_schema("Canary")["properties"]["status"]["properties"]
    for field in (
        "phase",
        "canaryWeight",
        "failedChecks",
        "iterations",
        "lastAppliedSpec",
        "lastPromotedSpec",
        "lastTransitionTime",
        "trackedConfigs",
        "conditions",
    ):
        assert field in status
    assert "WaitingPromotion" in status["phase"]["enum"]
    condition = status["conditions"]["items"]
    assert condition["required"] == ["type", "status", "reason"]
    assert condition["properties"]["lastTransitionTime"]["format"] == "date-time"


@pytest.mark.cluster
def test_a_real_api_server_accepts_the_crds_and_prunes_unknown_fields(tmp_path: Path) -> None:
    from tests.cluster.apiserver import start_apiserver  # noqa: PLC0415 - only the cluster tests need it

    with start_apiserver(tmp_path) as api:
        for crd in generate_crds():
            status, body = api.request(
                "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd
            )
            assert status == 201, body
        deadline = time.monotonic() + 30
        while True:
            _, body = api.request(
                "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/canaries.flagger.app"
            )
            status_of = body.get("status") or {}
            conditions = {c["type"]: c["status"] for c in status_of.get("conditions") or []}
            if conditions.get("Established") == "True":
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
        assert conditions.get("NonStructuralSchema") is None
        api.create_namespace("test")
        canary = yaml.safe_load((ROOT / "examples" / "podinfo-canary.yaml").read_text())
        canary["spec"]["analysis"]["stepweight"] = 10  # a typo the API server drops without a word
        base = "/apis/flagger.app/v1beta1/namespaces/test/canaries"
        while True:  # the new resource is served a moment after Established
            status, created = api.request("POST", base, body=canary)
            if status != 404 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 201, created
        assert "stepweight" not in created["spec"]["analysis"]
        assert created["spec"]["analysis"]["stepWeight"] == 10
        condition = {
            "type": "Promoted",
            "status": "Unknown",
            "reason": "Progressing",
            "message": "New revision detected, progressing canary analysis.",
        }
        patch = {
            "status": {
                "phase": "Progressing",
                "canaryWeight": 10,
                "failedChecks": 1,
                "iterations": 2,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "conditions": [condition],
            }
        }
        status, patched = api.request(
            "PATCH", f"{base}/podinfo/status", body=patch, content_type="application/merge-patch+json"
        )
        assert status == 200, patched
        assert patched["status"]["canaryWeight"] == 10
        assert patched["status"]["conditions"][0]["type"] == "Promoted"
        bad = {**canary, "metadata": {"name": "bad"}}
        bad["spec"] = {**canary["spec"], "analysis": {**canary["spec"]["analysis"], "stepWeight": -5}}
        status, body = api.request("POST", base, body=bad)
        assert status == 422 and "spec.analysis.stepWeight" in body["message"], body
        template = yaml.safe_load_all((ROOT / "examples" / "podinfo-canary-basic-auth.yaml").read_text())
        metric_template = next(d for d in template if d["kind"] == "MetricTemplate")
        status, body = api.request(
            "POST", "/apis/flagger.app/v1beta1/namespaces/test/metrictemplates", body=metric_template
        )
        assert status == 201, body

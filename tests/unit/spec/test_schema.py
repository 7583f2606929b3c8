"""Our JSON Schema: valid Draft 2020-12, every field Flagger documents, closed where Kubernetes prunes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import yaml

from step.spec.durations import format_duration, parse_duration
from step.spec.schema import load_schema
from tests.reference import FLAGGER

REFERENCE = FLAGGER


def _defs() -> dict[str, Any]:
    defs: dict[str, Any] = load_schema()["$defs"]
    return defs


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return _resolve(_defs()[node["$ref"].removeprefix("#/$defs/")])
    return node


def _field_paths(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    node = _resolve(node)
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        resolved = _resolve(sub)
        if resolved.get("type") == "array":
            yield from _field_paths(resolved["items"], path + "[]")
        else:
            yield from _field_paths(resolved, path)


def _flagger_paths(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        if sub.get("type") == "array" and "items" in sub:
            yield from _flagger_paths(sub["items"], path + "[]")
        else:
            yield from _flagger_paths(sub, path)


def test_the_schema_is_valid_draft_2020_12() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


ISSUE_FIELDS = [
    "spec.targetRef", "spec.provider", "spec.metricsServer", "spec.progressDeadlineSeconds",
    "spec.skipAnalysis", "spec.suspend", "spec.revertOnDeletion", "spec.service", "spec.analysis.interval",
    "spec.analysis.threshold", "spec.analysis.maxWeight", "spec.analysis.stepWeight",
    "spec.analysis.stepWeights", "spec.analysis.stepWeightPromotion", "spec.analysis.iterations",
    "spec.analysis.mirror", "spec.analysis.mirrorWeight", "spec.analysis.match",
    "spec.analysis.primaryReadyThreshold", "spec.analysis.canaryReadyThreshold",
    "spec.analysis.sessionAffinity", "spec.analysis.metrics", "spec.analysis.webhooks",
    "spec.analysis.alerts",
]  # fmt: skip


def test_every_field_the_issue_lists_is_in_the_canary_schema() -> None:
    ours = set(_field_paths(_defs()["Canary"]))
    assert [f for f in ISSUE_FIELDS if f not in ours] == []


@pytest.mark.parametrize(
    ("crd", "kind"),
    [
        ("canaries.flagger.app.crd.yaml", "Canary"),
        ("metrictemplates.flagger.app.crd.yaml", "MetricTemplate"),
        ("alertproviders.flagger.app.crd.yaml", "AlertProvider"),
    ],
)
def test_every_field_of_flaggers_crd_is_in_ours(crd: str, kind: str) -> None:
    flagger = yaml.safe_load((REFERENCE / crd).read_text())
    theirs = set(_flagger_paths(flagger["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))
    ours = set(_field_paths(_defs()[kind]))
    # Deep Istio structures (trafficPolicy's insides, match's string matches) are free-form in ours.
    free_form = ("spec.service.trafficPolicy.", "spec.service.match[].")
    missing = sorted(p for p in theirs - ours if not p.startswith(free_form))
    assert missing == []


def _closed_objects(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, bool]]:
    node = _resolve(node)
    if node.get("type") == "object" and "properties" in node:
        yield path, node.get("additionalProperties") is False
    for name, sub in node.get("properties", {}).items():
        yield from _closed_objects(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _closed_objects(node[key], f"{path}[{key}]")


@pytest.mark.parametrize("kind", ["Canary", "MetricTemplate", "AlertProvider"])
def test_objects_with_fields_are_closed_except_metadata(kind: str) -> None:
    open_objects = [p for p, closed in _closed_objects(_defs()[kind]) if not closed]
    assert open_objects == [".metadata"]


def test_on_no_data_is_our_extension_and_documented_as_such() -> None:
    metric = _defs()["Canary"]["properties"]["spec"]["properties"]["analysis"]["properties"]["metrics"][
        "items"
    ]
    on_no_data = metric["properties"]["onNoData"]
    assert on_no_data["enum"] == ["fail", "fail-immediately", "ignore"]
    assert "extension" in on_no_data["description"]


def test_webhook_types_are_flaggers_nine() -> None:
    hook = _defs()["Canary"]["properties"]["spec"]["properties"]["analysis"]["properties"]["webhooks"][
        "items"
    ]
    assert sorted(hook["properties"]["type"]["enum"]) == sorted(
        [
            "", "confirm-rollout", "pre-rollout", "rollout", "confirm-promotion", "post-rollout", "event",
            "rollback", "confirm-traffic-increase",
        ]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15),
        ("1m", 60),
        ("1m30s", 90),
        ("500ms", 0.5),
        ("1h", 3600),
        ("1.5m", 90),
        ("2h1m1s500ms", 7261.5),
        ("1.s", 1),  # Go accepts digits before the dot with none after
        (".5s", 0.5),
        ("1m30h", 108060),
    ],
)
def test_durations_parse_as_go_does(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "15", "1 m", "m", "1d", "-1s", "15S", "1m 30s", ".s", "1e3s", "9999999999h"]
)
def test_durations_go_would_refuse(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(0.5, "500ms"), (15, "15s"), (75, "1m15s"), (3600, "1h0m0s")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text

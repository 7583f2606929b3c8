"""The CustomResourceDefinitions of Canary, MetricTemplate and AlertProvider, derived from our schema.

Owns: `generate_crds()`, the only source of the CRDs the test control plane installs, and the
conversion of our JSON Schema (Draft 2020-12) into a structural OpenAPI v3 schema as Kubernetes
accepts it: `$ref`s inlined, `type` on every node, `x-kubernetes-int-or-string` for
`type: [integer, string]`, no `additionalProperties: false` (Kubernetes prunes unknown fields
instead), open objects marked `x-kubernetes-preserve-unknown-fields`.
Must not: hold a second copy of any field, or import kube, click, tenacity, requests.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from step.spec.schema import API_VERSION, load_schema

GROUP, VERSION = API_VERSION.split("/")

# Keywords Kubernetes' JSONSchemaProps has no field for, or that a structural schema forbids.
_DROPPED = {"$schema", "$id", "$defs", "$comment", "examples", "title"}

_NAMES: Mapping[str, dict[str, Any]] = {
    "Canary": {
        "kind": "Canary",
        "listKind": "CanaryList",
        "plural": "canaries",
        "singular": "canary",
        "categories": ["all"],
    },
    "MetricTemplate": {
        "kind": "MetricTemplate",
        "listKind": "MetricTemplateList",
        "plural": "metrictemplates",
        "singular": "metrictemplate",
        "categories": ["all"],
    },
    "AlertProvider": {
        "kind": "AlertProvider",
        "listKind": "AlertProviderList",
        "plural": "alertproviders",
        "singular": "alertprovider",
        "categories": ["all"],
    },
}


def _column(name: str, type_: str, json_path: str, *, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": json_path}
    if priority:
        column["priority"] = priority
    return column


# As Flagger 1.44 prints them, so `kubectl get canaries` reads the same.
_PRINTER_COLUMNS: Mapping[str, list[dict[str, Any]]] = {
    "Canary": [
        _column("Status", "string", ".status.phase"),
        _column("Weight", "string", ".status.canaryWeight"),
        _column("Suspended", "boolean", ".spec.suspend", priority=1),
        _column("FailedChecks", "string", ".status.failedChecks", priority=1),
        _column("Interval", "string", ".spec.analysis.interval", priority=1),
        _column("Mirror", "boolean", ".spec.analysis.mirror", priority=1),
        _column("StepWeight", "string", ".spec.analysis.stepWeight", priority=1),
        _column("StepWeights", "string", ".spec.analysis.stepWeights", priority=1),
        _column("MaxWeight", "string", ".spec.analysis.maxWeight", priority=1),
        _column("LastTransitionTime", "string", ".status.lastTransitionTime"),
    ],
    "MetricTemplate": [_column("Provider", "string", ".spec.provider.type")],
    "AlertProvider": [_column("Type", "string", ".spec.type")],
}


def generate_crds() -> list[dict[str, Any]]:
    """The three apiextensions.k8s.io/v1 CustomResourceDefinition manifests, as plain data."""
    schema = load_schema()
    defs: Mapping[str, Any] = schema["$defs"]
    return [_crd(kind, defs) for kind in ("Canary", "MetricTemplate", "AlertProvider")]


def openapi_schema(kind: str) -> dict[str, Any]:
    """The structural openAPIV3Schema of one kind."""
    defs: Mapping[str, Any] = load_schema()["$defs"]
    return _openapi(kind, defs)


def _openapi(kind: str, defs: Mapping[str, Any]) -> dict[str, Any]:
    root = _convert(defs[kind], defs)
    # Kubernetes owns ObjectMeta: a CRD may only say it is an object.
    root["properties"]["metadata"] = {"type": "object"}
    for key in ("apiVersion", "kind"):
        root["properties"][key] = {"type": "string"}
    root["required"] = [r for r in root.get("required", []) if r not in ("apiVersion", "kind", "metadata")]
    return root


def _crd(kind: str, defs: Mapping[str, Any]) -> dict[str, Any]:
    names = copy.deepcopy(_NAMES[kind])
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names['plural']}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(_PRINTER_COLUMNS[kind]),
                    "schema": {"openAPIV3Schema": _openapi(kind, defs)},
                }
            ],
        },
    }


def _convert(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """One JSON Schema node -> a structural OpenAPI v3 node."""
    if "$ref" in node:
        target = str(node["$ref"]).removeprefix("#/$defs/")
        resolved = {**defs[target], **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(resolved, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, Mapping):
                out[key] = _convert(value, defs)
            # `false` is dropped: Kubernetes prunes unknown fields wherever properties are listed.
        elif key == "type" and isinstance(value, list):
            if sorted(value) != ["integer", "string"]:
                raise ValueError(f"no structural form for type {value}")
            out["x-kubernetes-int-or-string"] = True
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = copy.deepcopy(value)
    closed = node.get("additionalProperties") is False or isinstance(
        node.get("additionalProperties"), Mapping
    )
    if out.get("type") == "object" and not closed:
        # An open object in our schema (free-form, or metadata): keep what the user wrote.
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out

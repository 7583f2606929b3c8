"""The CustomResourceDefinitions the local control plane serves, and :func:`install_crds`.

Owns:
- ``serving.knative.dev/v1`` Service, Configuration, Revision and Route, shaped like Knative v1.17's
  ``config/core/300-resources/*.yaml`` (names, short names, categories, status subresource, printer columns,
  typed schemas that prune unknown fields, ``x-kubernetes-preserve-unknown-fields`` only where Knative has it;
  see knative-semantics.md section 4). The PodSpec part is typed for what the step and the simulator use,
  not every PodSpec field.
- Knative's ``spec.traffic`` rules, which in Knative live in the validating webhook
  (``pkg/apis/serving/v1/route_validation.go``), as CEL ``x-kubernetes-validations`` so that the API
  server itself rejects a bad patch with Knative's message text. The rules follow the webhook's view of a
  *defaulted* object while accepting an undefaulted one, because no mutating webhook runs here: a missing
  ``latestRevision`` is not checked, a missing ``percent`` counts as 0, an empty or missing list is accepted
  (the simulator applies Knative's defaulting on its side).
- ``flagger.app/v1beta1`` Canary, MetricTemplate, AlertProvider: taken from ``step.spec.crds`` (generated from
  the project's own JSON Schema) when that module exists; never written a second time here.

Must not: start processes (that is ``tests.cluster.apiserver``), or change objects other than CRDs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.cluster.apiserver import ApiServer

Schema = dict[str, Any]

GROUP = "serving.knative.dev"
CATEGORIES = ["all", "knative", "serving"]
ESTABLISHED_TIMEOUT_S = 30.0
# CEL cost estimates grow with list and string bounds; Knative sets none, so we pick generous ones that
# keep the quadratic tag-uniqueness rule within the API server's per-expression budget.
MAX_TRAFFIC_TARGETS = 100
MAX_NAME_LENGTH = 253
MAX_TAG_LENGTH = 63
DNS1035_MESSAGE = (
    "invalid value: not a DNS 1035 label: [a DNS-1035 label must consist of lower case alphanumeric "
    "characters or '-', start with an alphabetic character, and end with an alphanumeric character "
    "(e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')]"
)


def _string(max_length: int | None = None) -> Schema:
    schema: Schema = {"type": "string"}
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


def _obj(properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "properties": properties, **extra}


def _array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def _preserve() -> Schema:
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _string_map() -> Schema:
    return {"type": "object", "additionalProperties": {"type": "string"}}


INT32: Schema = {"type": "integer", "format": "int32"}
INT64: Schema = {"type": "integer", "format": "int64"}
INT_OR_STRING: Schema = {
    "x-kubernetes-int-or-string": True,
    "anyOf": [{"type": "integer"}, {"type": "string"}],
}
QUANTITY_MAP: Schema = {
    "type": "object",
    "additionalProperties": {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",  # noqa: E501 - the Quantity pattern
    },
}

# -- the PodSpec subset of a Revision -----------------------------------------------------------------------

_KEY_REF = _obj({"name": _string(), "key": _string(), "optional": {"type": "boolean"}}, required=["key"])
_HTTP_GET = _obj(
    {
        "path": _string(),
        "port": INT_OR_STRING,
        "host": _string(),
        "scheme": _string(),
        "httpHeaders": _array(_obj({"name": _string(), "value": _string()}, required=["name", "value"])),
    }
)
_PROBE = _obj(
    {
        "httpGet": _HTTP_GET,
        "tcpSocket": _obj({"host": _string(), "port": INT_OR_STRING}),
        "exec": _obj({"command": _array(_string())}),
        "grpc": _obj({"port": INT32, "service": _string()}),
        "initialDelaySeconds": INT32,
        "timeoutSeconds": INT32,
        "periodSeconds": INT32,
        "successThreshold": INT32,
        "failureThreshold": INT32,
    }
)
_CONTAINER = _obj(
    {
        "name": _string(),
        "image": _string(),
        "imagePullPolicy": _string(),
        "command": _array(_string()),
        "args": _array(_string()),
        "workingDir": _string(),
        "env": _array(
            _obj(
                {
                    "name": _string(),
                    "value": _string(),
                    "valueFrom": _obj(
                        {
                            "configMapKeyRef": _KEY_REF,
                            "secretKeyRef": _KEY_REF,
                            # Knative keeps these two open.
                            "fieldRef": _preserve(),
                            "resourceFieldRef": _preserve(),
                        }
                    ),
                },
                required=["name"],
            )
        ),
        "envFrom": _array(
            _obj(
                {
                    "prefix": _string(),
                    "configMapRef": _obj({"name": _string(), "optional": {"type": "boolean"}}),
                    "secretRef": _obj({"name": _string(), "optional": {"type": "boolean"}}),
                }
            )
        ),
        "ports": _array(
            _obj(
                {"name": _string(), "containerPort": INT32, "protocol": _string()},
                required=["containerPort"],
            )
        ),
        "resources": _obj({"limits": QUANTITY_MAP, "requests": QUANTITY_MAP}),
        "readinessProbe": _PROBE,
        "livenessProbe": _PROBE,
        "startupProbe": _PROBE,
        "securityContext": _obj(
            {
                "allowPrivilegeEscalation": {"type": "boolean"},
                "capabilities": _obj({"add": _array(_string()), "drop": _array(_string())}),
                "readOnlyRootFilesystem": {"type": "boolean"},
                "runAsGroup": INT64,
                "runAsNonRoot": {"type": "boolean"},
                "runAsUser": INT64,
                "seccompProfile": _obj({"type": _string(), "localhostProfile": _string()}, required=["type"]),
            }
        ),
        "volumeMounts": _array(
            _obj(
                {
                    "name": _string(),
                    "mountPath": _string(),
                    "readOnly": {"type": "boolean"},
                    "subPath": _string(),
                },
                required=["mountPath", "name"],
            )
        ),
        "terminationMessagePath": _string(),
        "terminationMessagePolicy": _string(),
    }
)
_KEY_TO_PATH = _obj({"key": _string(), "path": _string(), "mode": INT32}, required=["key", "path"])
_VOLUME = _obj(
    {
        "name": _string(),
        "secret": _obj(
            {
                "secretName": _string(),
                "items": _array(_KEY_TO_PATH),
                "defaultMode": INT32,
                "optional": {"type": "boolean"},
            }
        ),
        "configMap": _obj(
            {
                "name": _string(),
                "items": _array(_KEY_TO_PATH),
                "defaultMode": INT32,
                "optional": {"type": "boolean"},
            }
        ),
        "projected": _preserve(),
        # Knative keeps these open.
        "emptyDir": _preserve(),
        "hostPath": _preserve(),
        "persistentVolumeClaim": _preserve(),
    },
    required=["name"],
)
REVISION_SPEC: Schema = _obj(
    {
        "containers": _array(_CONTAINER),
        "containerConcurrency": INT64,
        "timeoutSeconds": INT64,
        "responseStartTimeoutSeconds": INT64,
        "idleTimeoutSeconds": INT64,
        "serviceAccountName": _string(),
        "automountServiceAccountToken": {"type": "boolean"},
        "enableServiceLinks": {"type": "boolean"},
        "imagePullSecrets": _array(_obj({"name": _string()})),
        "nodeSelector": _string_map(),
        "runtimeClassName": _string(),
        "priorityClassName": _string(),
        "schedulerName": _string(),
        "volumes": _array(_VOLUME),
        # Knative keeps these PodSpec parts open (grep of the 1.17 CRDs).
        "affinity": _preserve(),
        "securityContext": _preserve(),
        "dnsConfig": _preserve(),
        "dnsPolicy": _string(),
        "hostAliases": _array(_preserve()),
        "initContainers": _array(_preserve()),
        "tolerations": _array(_preserve()),
        "topologySpreadConstraints": _array(_preserve()),
    },
    required=["containers"],
)
TEMPLATE: Schema = _obj({"metadata": _preserve(), "spec": REVISION_SPEC})

# -- traffic ------------------------------------------------------------------------------------------------

_PINNED = "(has(self.revisionName) && self.revisionName != '')"
_PERCENT_OF_T = "(has(t.percent) ? t.percent : 0)"
_DUPLICATE_TAGS = (
    "self.filter(t, has(t.tag) && t.tag != '' && self.filter(u, has(u.tag) && u.tag == t.tag).size() > 1)"
)


def _target_rules(*, in_service: bool) -> list[Schema]:
    """Per-entry rules of ``TrafficTarget.Validate`` (route_validation.go:100) for spec."""
    rules: list[Schema] = [
        {
            "rule": "!has(self.percent) || (self.percent >= 0 && self.percent <= 100)",
            "messageExpression": "'expected 0 <= %d <= 100'.format([self.percent])",
            "fieldPath": ".percent",
            "reason": "FieldValueInvalid",
        },
        {
            # Checked only when set: an undefaulted entry gets latestRevision = (revisionName == "").
            "rule": f"!has(self.latestRevision) || self.latestRevision != {_PINNED}",
            "messageExpression": (
                "'may not set revisionName \"%s\" when latestRevision is %s'.format("
                "[has(self.revisionName) ? self.revisionName : '', self.latestRevision])"
            ),
            "fieldPath": ".latestRevision",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": "!has(self.url)",
            "message": "must not set the field(s)",
            "fieldPath": ".url",
            "reason": "FieldValueForbidden",
        },
        {
            "rule": "!has(self.tag) || self.tag == '' || self.tag.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            "message": DNS1035_MESSAGE,
            "fieldPath": ".tag",
            "reason": "FieldValueInvalid",
        },
    ]
    if in_service:
        rules.append(
            {
                # A Service's traffic names its own configuration implicitly (WithDefaultConfigurationName).
                "rule": "!has(self.configurationName) || self.configurationName == ''",
                "message": "must not set the field(s)",
                "fieldPath": ".configurationName",
                "reason": "FieldValueForbidden",
            }
        )
    else:
        rules.append(
            {
                "rule": f"!({_PINNED} && has(self.configurationName) && self.configurationName != '')",
                "message": "expected exactly one, got both",
                "reason": "FieldValueInvalid",
            }
        )
    return rules


def _list_rules() -> list[Schema]:
    """List-wide rules of ``validateTrafficList`` (route_validation.go:48)."""
    return [
        {
            "rule": f"size(self) == 0 || self.map(t, {_PERCENT_OF_T}).sum() == 100",
            "messageExpression": (
                f"'Traffic targets sum to %d, want 100'.format([self.map(t, {_PERCENT_OF_T}).sum()])"
            ),
            "reason": "FieldValueInvalid",
        },
        {
            "rule": f"size({_DUPLICATE_TAGS}) == 0",
            "messageExpression": f"'Multiple definitions for \"%s\"'.format([{_DUPLICATE_TAGS}[0].tag])",
            "reason": "FieldValueInvalid",
        },
    ]


def traffic_target(*, for_spec: bool, in_service: bool = False) -> Schema:
    properties: dict[str, Schema] = {
        "tag": _string(MAX_TAG_LENGTH),
        "revisionName": _string(MAX_NAME_LENGTH),
        "configurationName": _string(MAX_NAME_LENGTH),
        "latestRevision": {"type": "boolean"},
        "percent": INT64,
        "url": _string(),
    }
    schema = _obj(properties)
    if for_spec:
        schema["x-kubernetes-validations"] = _target_rules(in_service=in_service)
    return schema


def traffic_list(*, in_service: bool) -> Schema:
    return _array(
        traffic_target(for_spec=True, in_service=in_service),
        maxItems=MAX_TRAFFIC_TARGETS,
        **{"x-kubernetes-validations": _list_rules()},
    )


# -- status -----------------------------------------------------------------------------------------------

CONDITION: Schema = _obj(
    {
        "type": _string(),
        "status": _string(),
        "severity": _string(),
        "lastTransitionTime": _string(),
        "reason": _string(),
        "message": _string(),
    },
    required=["type", "status"],
)


def _status(extra: dict[str, Schema]) -> Schema:
    return _obj(
        {
            "observedGeneration": INT64,
            "conditions": _array(CONDITION),
            "annotations": _string_map(),
            **extra,
        }
    )


_ADDRESS = _obj({"name": _string(), "url": _string(), "CACerts": _string(), "audience": _string()})
_CONFIGURATION_STATUS = {"latestCreatedRevisionName": _string(), "latestReadyRevisionName": _string()}
_ROUTE_STATUS = {
    "url": _string(),
    "address": _ADDRESS,
    "traffic": _array(traffic_target(for_spec=False)),
}

# -- CRDs -------------------------------------------------------------------------------------------------

_READY = ".status.conditions[?(@.type=='Ready')].status"
_REASON = ".status.conditions[?(@.type=='Ready')].reason"


def _column(name: str, json_path: str, kind: str = "string") -> Schema:
    return {"name": name, "type": kind, "jsonPath": json_path}


def _crd(
    *, kind: str, plural: str, short_names: list[str], spec: Schema, status: Schema, columns: list[Schema]
) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {
                "serving.knative.dev/release": "v1.17.0",
                "knative.dev/crd-install": "true",
                "app.kubernetes.io/name": "knative-serving",
            },
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
                "shortNames": short_names,
                "categories": CATEGORIES,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": _obj(
                            {
                                "apiVersion": _string(),
                                "kind": _string(),
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            }
                        )
                    },
                }
            ],
        },
    }


def knative_crds() -> list[Schema]:
    """The four serving.knative.dev/v1 CRDs as manifests."""
    return [
        _crd(
            kind="Service",
            plural="services",
            short_names=["kservice", "ksvc"],
            spec=_obj({"template": TEMPLATE, "traffic": traffic_list(in_service=True)}),
            status=_status({**_CONFIGURATION_STATUS, **_ROUTE_STATUS}),
            columns=[
                _column("URL", ".status.url"),
                _column("LatestCreated", ".status.latestCreatedRevisionName"),
                _column("LatestReady", ".status.latestReadyRevisionName"),
                _column("Ready", _READY),
                _column("Reason", _REASON),
            ],
        ),
        _crd(
            kind="Configuration",
            plural="configurations",
            short_names=["config", "cfg"],
            spec=_obj({"template": TEMPLATE}),
            status=_status(_CONFIGURATION_STATUS),
            columns=[
                _column("LatestCreated", ".status.latestCreatedRevisionName"),
                _column("LatestReady", ".status.latestReadyRevisionName"),
                _column("Ready", _READY),
                _column("Reason", _REASON),
            ],
        ),
        _crd(
            kind="Revision",
            plural="revisions",
            short_names=["rev"],
            spec={
                **REVISION_SPEC,
                # Knative: "Immutable fields changed (-old +new)" plus a diff, which CEL cannot print.
                "x-kubernetes-validations": [
                    {"rule": "self == oldSelf", "message": "Immutable fields changed"}
                ],
            },
            status=_status(
                {
                    "logUrl": _string(),
                    "containerStatuses": _array(_obj({"name": _string(), "imageDigest": _string()})),
                    "initContainerStatuses": _array(_obj({"name": _string(), "imageDigest": _string()})),
                    "actualReplicas": INT32,
                    "desiredReplicas": INT32,
                }
            ),
            columns=[
                _column("Config Name", ".metadata.labels['serving\\.knative\\.dev/configuration']"),
                _column("Generation", ".metadata.labels['serving\\.knative\\.dev/configurationGeneration']"),
                _column("Ready", _READY),
                _column("Reason", _REASON),
                _column("Actual Replicas", ".status.actualReplicas", "integer"),
                _column("Desired Replicas", ".status.desiredReplicas", "integer"),
            ],
        ),
        _crd(
            kind="Route",
            plural="routes",
            short_names=["rt"],
            spec=_obj({"traffic": traffic_list(in_service=False)}),
            status=_status(_ROUTE_STATUS),
            columns=[
                _column("URL", ".status.url"),
                _column("Ready", _READY),
                _column("Reason", _REASON),
            ],
        ),
    ]


def flagger_crds() -> list[Schema]:
    """Canary, MetricTemplate, AlertProvider from ``step.spec.crds.generate_crds()``."""
    from step.spec.crds import generate_crds  # noqa: PLC0415 - the harness imports step only here

    crds: list[Schema] = generate_crds()
    return crds


def _established(crd: Schema) -> bool:
    # A fresh CRD may have `status: null` or `conditions: null` until the API server fills them in.
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def install_crds(api: ApiServer, *, knative: bool = True) -> list[str]:
    """Create (or replace) every CRD and wait until each is Established; returns their names.

    ``knative=False`` installs Flagger's only: the real-Knative backend installs Knative's own CRDs.
    """
    from tests.cluster.apiserver import ApiError, ApiServerError  # noqa: PLC0415 - avoid an import cycle

    manifests = (knative_crds() if knative else []) + flagger_crds()
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    names = []
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        status, body = api.request("POST", base, body=manifest)
        if status == 409:
            # Already there (a reused etcd, or a second install): replace it with this definition.
            _, current = api.request("GET", f"{base}/{name}")
            version = current.get("metadata", {}).get("resourceVersion")
            replacement = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": version}}
            status, body = api.request("PUT", f"{base}/{name}", body=replacement)
        if status not in (200, 201):
            raise ApiError(status, body, f"installing CRD {name}")
        names.append(name)
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    for name in names:
        while True:
            status, body = api.request("GET", f"{base}/{name}")
            if status == 200 and _established(body):
                break
            if time.monotonic() > deadline:
                raise ApiServerError(
                    f"CRD {name} not Established within {ESTABLISHED_TIMEOUT_S:.0f} s: {body.get('status')}"
                )
            time.sleep(0.05)  # poll interval of a condition wait with a deadline
    # The API server holds the first custom-resource write after a CRD install for about 2 s (measured; it
    # does not depend on the kind or the namespace). Pay that here, with a dry run, so that callers' first
    # real write is as fast as every later one.
    if not knative:
        return names
    status, body = api.request(
        "POST", f"/apis/{GROUP}/v1/namespaces/default/revisions?dryRun=All", body=_WARM_UP_REVISION
    )
    if status != 201:
        raise ApiError(status, body, "dry-run create of a Revision after installing the CRDs")
    return names


_WARM_UP_REVISION: Schema = {
    "apiVersion": f"{GROUP}/v1",
    "kind": "Revision",
    "metadata": {"name": "warm-up-00001"},
    "spec": {"containers": [{"image": "warm-up"}]},
}

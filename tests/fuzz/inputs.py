"""Spec inputs for the Flagger-CRD differential test and the fuzzing of `validate` and `plan`.

Owns: hypothesis strategies compiled from Flagger's own CRD schemas (shared/reference/flagger/crd.yaml),
the published specs (examples/ and Flagger's published Canaries), and mutations of them (each field
removed, retyped, out of range, an off-pattern duration, both fields of a `oneOf`, an unknown field).
Must not: read our own schema to generate from Flagger's (the oracle must not be built from what it
checks), talk to a server, or run `validate`.

Why a small compiler instead of hypothesis-jsonschema for Flagger's CRDs: hypothesis-jsonschema takes
50-80 ms per Canary drawn from the full CRD (measured: 300 in 25 s) and fills open objects with random
keys; this one draws a Canary in well under a millisecond and biases values towards the edges that
matter (durations near the pattern, weights near 0 and 100, whole and fractional numbers).
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from tests.reference import FLAGGER, FLAGGER_CANARIES

ROOT = Path(__file__).resolve().parents[2]
API_VERSION = "flagger.app/v1beta1"
PLURALS = {"Canary": "canaries", "MetricTemplate": "metrictemplates", "AlertProvider": "alertproviders"}
KNATIVE_TARGET = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"}

# Durations around Flagger's pattern ^[0-9]+(m|s) and Go's time.ParseDuration.
DURATIONS = (
    "15s", "1m", "1m30s", "500ms", "10s", "2m", "30s", "5m", "60m", "1m1.5s", "1m30h",  # accepted
    "0s", "0m",  # accepted by Flagger, refused by us (not above 0)
    "1h", "2h", "1.5m", "0.5s", ".5s", "90", "15", "1 m", "1m 30s", "15S", "1d", "-1s", "m", "",  # refused
    "1s500", "5mx", "1m30", "9999999999999m",  # pass the pattern, not Go
)  # fmt: skip
NUMBERS = (0, 1, 2, 5, 10, 50, 99, 100, 101, -1, 1.5, 0.5, 2.0, 65535, 65536, 2**31, 2**53, 10**12)
STRINGS = ("podinfo", "a", "", "http://loadtester.test/", "x-canary", "Service", "1", "true", "é ü")
URLS = (
    "http://flagger-loadtester.test/",
    "https://hooks.example.com/services/x",
    "http://prometheus.monitoring:9090",
    "http://h:99999/",
    "not a url",
    "ftp://x/",
    "",
)
QUERIES = (
    "sum(rate(http_requests_total{namespace='{{ namespace }}'}[{{ interval }}]))",
    "up",
    "{{ nonsense }}",
    "{{ variables.missing }}",
    "",
)
API_VERSIONS = ("serving.knative.dev/v1", "apps/v1", "v1", "autoscaling/v2", "keda.sh/v1alpha1", "")
_BY_NAME: Mapping[str, tuple[Any, ...]] = {
    "url": URLS,
    "address": URLS,
    "metricsServer": URLS,
    "proxy": URLS,
    "query": QUERIES,
    "apiVersion": API_VERSIONS,
    "name": ("podinfo", "request-success-rate", "request-duration", "error-rate", "a", "", "Bad_Name"),
    "namespace": ("test", "flagger-system", "", "Bad_NS"),
    "cookieName": ("flagger-cookie", "c", ""),
    "primaryCookieName": ("flagger-cookie", "primary", "c"),
}


@functools.cache
def flagger_crds() -> dict[str, dict[str, Any]]:
    """Flagger's three CRD manifests, by kind, exactly as published."""
    crds = [d for d in yaml.safe_load_all((FLAGGER / "crd.yaml").read_text()) if d]
    return {crd["spec"]["names"]["kind"]: crd for crd in crds}


def flagger_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = flagger_crds()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _string(name: str, rng: random.Random) -> str:
    if rng.random() < 0.8:
        return rng.choice(_BY_NAME.get(name, STRINGS))
    return "".join(rng.choice("abc-.:/0189 Zé") for _ in range(rng.randrange(9)))


def _number(node: Mapping[str, Any], rng: random.Random, *, integer: bool) -> Any:
    edges: list[Any] = [n for n in NUMBERS if not integer or isinstance(n, int)]
    for bound in ("minimum", "maximum"):
        if bound in node:
            edges += [node[bound], node[bound] + (-1 if bound == "minimum" else 1)]
    return rng.choice(edges) if rng.random() < 0.7 else rng.randint(-3, 120)


def value_for(node: Mapping[str, Any], rng: random.Random, *, name: str = "", depth: int = 0) -> Any:
    """A value shaped by one node of a CRD schema: mostly what it allows, with the edges just outside."""
    if "enum" in node:
        return rng.choice([*node["enum"], "Knative", "bogus"] if rng.random() < 0.1 else node["enum"])
    if node.get("x-kubernetes-int-or-string"):
        return rng.choice((8080, 0, 70000, "http", "9898", ""))
    kind = node.get("type")
    if kind == "string":
        if "pattern" in node and name in ("interval", "timeout"):
            return rng.choice(DURATIONS)
        return _string(name, rng)
    if kind in ("number", "integer"):
        return _number(node, rng, integer=kind == "integer")
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "array":
        items = node.get("items", {})
        return [value_for(items, rng, name=name, depth=depth + 1) for _ in range(rng.randrange(3))]
    if kind == "object" or "properties" in node:
        return _object(node, rng, depth=depth)
    return None


def _object(node: Mapping[str, Any], rng: random.Random, *, depth: int) -> dict[str, Any]:
    properties: Mapping[str, Any] = node.get("properties", {})
    if not properties:
        values = node.get("additionalProperties")
        if not isinstance(values, Mapping):
            return {}
        keys = rng.sample(("x-canary", "user-agent", "app", "a"), rng.randrange(3))
        return {key: value_for(values, rng, depth=depth + 1) for key in keys}
    out = {}
    for key, sub in properties.items():
        required = key in node.get("required", ())
        # Optional fields: often near the top, rarely deep down (Istio's trafficPolicy stays small).
        if required or (depth < 5 and rng.random() < 0.5 / (depth + 1)):
            out[key] = value_for(sub, rng, name=key, depth=depth + 1)
    return out


def schema_paths(
    node: Mapping[str, Any], path: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, schema node) under `node`: list items at index 0, map values under one key."""
    yield path, node
    if len(path) >= 8:
        return
    for key, sub in node.get("properties", {}).items():
        yield from schema_paths(sub, (*path, key))
    if isinstance(node.get("items"), Mapping):
        yield from schema_paths(node["items"], (*path, 0))
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from schema_paths(node["additionalProperties"], (*path, "x-canary"))


def _edit(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """`doc` with `value` at `path`, creating the mappings and lists on the way (a copy)."""
    out = copy.deepcopy(doc)
    parent: Any = out
    for part, following in zip(path, (*path[1:], None), strict=True):
        if following is None:
            break
        fresh: Any = [] if isinstance(following, int) else {}
        if isinstance(parent, list):
            if not parent:
                parent.append(fresh)
            if not isinstance(parent[0], type(fresh)):
                parent[0] = fresh
            parent = parent[0]
        else:
            if not isinstance(parent.get(part), type(fresh)):
                parent[part] = fresh
            parent = parent[part]
    last = path[-1]
    if isinstance(parent, list):
        if parent:
            parent[0] = value
        else:
            parent.append(value)
    else:
        parent[last] = value
    return out


@functools.cache
def _bases(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in _published() if d.get("kind") == kind]


@functools.cache
def _edits(kind: str) -> list[tuple[tuple[Any, ...], Any]]:
    schema = flagger_schema(kind)["properties"]["spec"]
    return [(("spec", *path), node) for path, node in schema_paths(schema) if path]


def build_document(seed: int) -> dict[str, Any]:
    """One document from `random.Random(seed)`: a published Canary, MetricTemplate or AlertProvider
    with one to four fields set to values drawn from Flagger's CRD schema for that field."""
    rng = random.Random(seed)
    kind = rng.choice(("Canary", "Canary", "Canary", "MetricTemplate", "AlertProvider"))
    doc = copy.deepcopy(rng.choice(_bases(kind)))
    paths = _edits(kind)
    for _ in range(rng.randint(1, 4)):
        path, node = rng.choice(paths)
        doc = _edit(doc, path, value_for(node, rng, name=str(path[-1]), depth=2))
    return doc


def generated_documents(count: int = 100) -> st.SearchStrategy[list[dict[str, Any]]]:
    """`count` documents generated from Flagger's CRDs, from one seed hypothesis draws (see
    `build_document`). Drawing every value with hypothesis strategies cost 9-40 ms a document on the
    shared 2-core machine (measured), and hypothesis replays its favourite small choices, so that most
    documents repeated (1 665 distinct in 11 000); one seed per batch costs well under 1 ms a document."""

    def batch(seed: int) -> list[dict[str, Any]]:
        rng = random.Random(seed)
        return [build_document(rng.getrandbits(64)) for _ in range(count)]

    return st.builds(batch, st.integers(0, 2**64 - 1))


def document(kind: str, spec: Any, *, name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


# -- published specs and their mutations -----------------------------------------------------------------


@functools.cache
def _published() -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple(published())


def published() -> list[tuple[str, dict[str, Any]]]:
    """(label, document) for every flagger.app document in examples/ and Flagger's published Canaries."""
    out = []
    for path in [*sorted((ROOT / "examples").glob("*.yaml")), *FLAGGER_CANARIES]:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("flagger.app/"):
                out.append((f"{path.name}#{i}", doc))
    assert len(out) >= 17, out
    return out


_DELETE = object()


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _paths(sub, (*path, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _paths(sub, (*path, i))


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    parent = out
    for part in path[:-1]:
        parent = parent[part]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def _retyped(value: Any) -> list[Any]:
    """Another type, and for numbers the values just out of range, fractional and huge."""
    if isinstance(value, bool):
        return ["true"]
    if isinstance(value, int | float):
        return [str(value), -1, 101, 1.5, 2**31]
    if isinstance(value, str):
        return [7, ""]
    if isinstance(value, list):
        return [{}]
    if isinstance(value, dict):
        return [[]]
    return ["x"]


# Durations for the mutations: accepted, not above 0, off Flagger's pattern, on it but not Go's.
MUTATION_DURATIONS = ("1m30s", "500ms", "0s", "1h", "1.5m", "90", "1m 30s", "1s500")


# Pairs Flagger's CRD accepts one of, and where: (path of the object, field set, field added).
_ONE_OF_PAIRS = (
    (("spec", "analysis"), "stepWeight", ("iterations", 5)),
    (("spec", "analysis"), "stepWeights", ("stepWeight", 10)),
    (("spec", "analysis"), "iterations", ("stepWeights", [10, 20])),
    (("spec",), "address", ("secretRef", {"name": "url"})),
    (("spec",), "secretRef", ("address", "https://hooks.example.com/x")),
)


def mutations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, mutated document): each spec field removed, retyped, out of range, off-pattern, and more."""
    for path, value in list(_paths(doc.get("spec")))[1:]:
        full = ("spec", *path)
        shown = ".".join(map(str, full))
        yield f"remove {shown}", _set(doc, full, _DELETE)
        for i, other in enumerate(_retyped(value)):
            yield f"retype {shown} #{i}", _set(doc, full, other)
        if path[-1] in ("interval", "timeout"):
            for duration in MUTATION_DURATIONS:
                yield f"duration {shown}={duration!r}", _set(doc, full, duration)
        if isinstance(value, dict):
            yield f"unknown field in {shown}", _set(doc, (*full, "stepweight"), 1)
            if path[-1] in ("headers", "queryParams") or (len(path) > 1 and path[-2] in ("headers",)):
                yield f"oneOf {shown}", _set(doc, full, {"exact": "a", "regex": "b"})
    for where, present, (field, value) in _ONE_OF_PAIRS:
        parent: Any = doc
        for part in where:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and present in parent and field not in parent:
            yield f"oneOf {'.'.join(where)} {present}+{field}", _set(doc, (*where, field), value)
    match = {"headers": {"x-canary": {"exact": "insider", "regex": "^insider"}}}
    if doc.get("kind") == "Canary" and isinstance(doc.get("spec"), dict):
        analysis = doc["spec"].get("analysis")
        if isinstance(analysis, dict):
            yield "oneOf header match exact+regex", _set(doc, ("spec", "analysis", "match"), [match])

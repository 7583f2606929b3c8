"""Our schema (through the CRDs generated from it) says everything Flagger 1.44's own CRDs say.

Rule by rule, at every field of `spec` in Flagger's CRDs: the field exists in ours, and its pattern,
enum, `oneOf`, required fields and ranges are the same or stricter (a stricter one is in the table of
intended stricter rules in docs/spec.md; the differential test checks that against the API server).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from step.spec.crds import openapi_schema
from tests.fuzz.inputs import PLURALS, flagger_schema

Node = Mapping[str, Any]


def _pairs(theirs: Node, ours: Node, path: str) -> Iterator[tuple[str, Node, Node | None]]:
    yield path, theirs, ours
    for name, sub in theirs.get("properties", {}).items():
        mine = (ours.get("properties") or {}).get(name) if ours else None
        if mine is None:
            yield f"{path}.{name}", sub, None
            continue
        yield from _pairs(sub, mine, f"{path}.{name}")
    for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(theirs.get(key), Mapping):
            mine = ours.get(key) if ours else None
            yield from _pairs(theirs[key], mine if isinstance(mine, Mapping) else {}, f"{path}{suffix}")


def _required(node: Node) -> set[str]:
    """Fields the node requires, its own and those every branch of its `oneOf` requires."""
    if node.get("type") == "array":
        return set()  # `required` on an array (Flagger's mirror has one) has no effect
    branches = [set(b.get("required", [])) for b in node.get("oneOf", []) if "not" not in b]
    return set(node.get("required", [])) | (set.intersection(*branches) if branches else set())


def _one_of(node: Node) -> list[tuple[str, ...]]:
    """A `oneOf`'s branches as the fields each adds to the node's required ones."""
    common = _required(node)
    out = []
    for branch in node.get("oneOf", []):
        if "not" in branch:
            out.append(("<none of them>",))
        elif "properties" in branch:
            out.append(("<properties>", *sorted(branch.get("required", []))))
        else:
            out.append(tuple(sorted(set(branch.get("required", [])) - common)))
    return sorted(out)


def _differences(theirs: Node, ours: Node) -> list[str]:
    out = []
    for keyword in ("pattern", "enum"):
        if keyword in theirs and theirs[keyword] != ours.get(keyword):
            out.append(f"{keyword}: Flagger {theirs[keyword]!r}, ours {ours.get(keyword)!r}")
    missing = _required(theirs) - _required(ours)
    if missing:
        out.append(f"required: Flagger also requires {sorted(missing)}")
    if _one_of(theirs) != _one_of(ours):
        out.append(f"oneOf: Flagger {_one_of(theirs)}, ours {_one_of(ours)}")
    for low in ("minimum", "minLength", "minItems"):
        if low in theirs and ours.get(low, float("-inf")) < theirs[low]:
            out.append(f"{low}: Flagger {theirs[low]}, ours {ours.get(low)}")
    for high in ("maximum", "maxLength", "maxItems"):
        if high in theirs and ours.get(high, float("inf")) > theirs[high]:
            out.append(f"{high}: Flagger {theirs[high]}, ours {ours.get(high)}")
    if theirs.get("x-kubernetes-validations") and not ours.get("x-kubernetes-validations"):
        # A CEL rule of Flagger's (Gateway API's backendRef port) is a rule in step/spec/rules.py.
        out.append("CEL rule (checked in step/spec/rules.py; see test_cel_rules_are_rules_of_ours)")
    return out


CEL_CHECKED_IN_RULES = {"Canary.spec.service.mirror[].backendRef"}


@pytest.mark.parametrize("kind", list(PLURALS))
def test_every_rule_of_flaggers_crd_is_ours(kind: str) -> None:
    theirs = flagger_schema(kind)["properties"]["spec"]
    ours = openapi_schema(kind)["properties"]["spec"]
    problems = []
    compared = 0
    for path, their_node, our_node in _pairs(theirs, ours, f"{kind}.spec"):
        if our_node is None:
            problems.append(f"{path}: a field of Flagger's that our schema does not have")
            continue
        compared += 1
        for difference in _differences(their_node, our_node):
            if difference.startswith("CEL rule") and path in CEL_CHECKED_IN_RULES:
                continue
            problems.append(f"{path}: {difference}")
    assert not problems, "\n".join(problems)
    assert compared > (200 if kind == "Canary" else 5)


def test_cel_rules_are_rules_of_ours() -> None:
    from step.spec.rules import canary_rules  # noqa: PLC0415 - the rule that stands for the CEL one

    canary = {"spec": {"service": {"mirror": [{"backendRef": {"name": "podinfo"}}]}}}
    assert list(canary_rules(canary)) == [
        (("spec", "service", "mirror", 0, "backendRef"), "Must have port for Service reference")
    ]
    canary["spec"]["service"]["mirror"][0]["backendRef"]["port"] = 80  # type: ignore[index]
    assert list(canary_rules(canary)) == []

"""Checks Argo Workflows YAML against hera's models of Argo's API (generated from Argo's OpenAPI spec).

hera's models ignore unknown fields, so each document is also dumped back and compared with its input:
a field the models do not know (a typo such as `continueon`) is reported. Run with a Python that has
hera installed: `python argo_check.py FILE...`; exit 1 if any document is invalid.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from hera.workflows.models.io.argoproj.workflow import v1alpha1
from pydantic import ValidationError


def differences(given: Any, known: Any, path: str = "") -> list[str]:
    if isinstance(given, dict) and isinstance(known, dict):
        out = []
        for key, value in given.items():
            if key not in known:
                out.append(f"{path}.{key}: unknown field")
            else:
                out += differences(value, known[key], f"{path}.{key}")
        return out
    if isinstance(given, list) and isinstance(known, list):
        if len(given) != len(known):
            return [f"{path}: {len(given)} items became {len(known)}"]
        return [
            d
            for i, (a, b) in enumerate(zip(given, known, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    if given != known and str(given) != str(known):
        return [f"{path}: {given!r} became {known!r}"]
    return []


# Fields Argo accepts that hera 7.1's models (generated from Argo 4's API) no longer have, with the shape
# each must have. `synchronization.mutex` is the only form Argo 3.5 knows; 3.6 deprecated it for `mutexes`
# and still reads it.
DEPRECATED_IN_ARGO = {("spec", "synchronization", "mutex"): {"name"}}


def take_deprecated(doc: dict[str, Any]) -> list[str]:
    """Remove the DEPRECATED_IN_ARGO fields from doc, checking their keys; returns the problems."""
    problems = []
    for path, keys in DEPRECATED_IN_ARGO.items():
        node: Any = doc
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or path[-1] not in node:
            continue
        value = node.pop(path[-1])
        where = "." + ".".join(path)
        if not isinstance(value, dict) or not value or set(value) - keys:
            problems.append(f"{where}: expected a mapping with only {sorted(keys)}, got {value!r}")
        elif not all(isinstance(v, str) and v for v in value.values()):
            problems.append(f"{where}: values must be non-empty strings")
    return problems


def main(paths: list[str]) -> int:
    failed = False
    for path in paths:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for i, doc in enumerate(docs):
            kind = doc.get("kind", "")
            if doc.get("apiVersion") != "argoproj.io/v1alpha1":
                print(f"{path}#{i} {kind}: skipped")
                continue
            model = getattr(v1alpha1, kind, None)
            if model is None:
                print(f"{path}#{i} {kind}: INVALID: unknown kind")
                failed = True
                continue
            deprecated = take_deprecated(doc)
            if deprecated:
                print(f"{path}#{i} {kind}: INVALID: {'; '.join(deprecated)}")
                failed = True
                continue
            try:
                obj = model.model_validate(doc)
            except ValidationError as e:
                print(f"{path}#{i} {kind}: INVALID: {e}".replace("\n", "; "))
                failed = True
                continue
            problems = differences(doc, obj.model_dump(by_alias=True, exclude_unset=True, mode="json"))
            if problems:
                print(f"{path}#{i} {kind}: INVALID: {'; '.join(problems)}")
                failed = True
            else:
                print(f"{path}#{i} {kind}: valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

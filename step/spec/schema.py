"""The JSON Schema (package data `schema.json`) and the messages a person reads when it fails.

Owns: loading the one schema, validating one document against the definition for its kind, and
rewriting jsonschema's messages into `Problem`s (unknown fields with a "did you mean", missing fields,
types, bounds, enums, durations).
Must not: know rules beyond the schema (see `rules.py`), or import kube, click, tenacity, requests.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from step.spec.problems import JsonPath, Problem
from step.spec.source import Document

API_VERSION = "flagger.app/v1beta1"
KINDS = ("Canary", "MetricTemplate", "AlertProvider")


@functools.cache
def load_schema() -> Mapping[str, Any]:
    """The schema as shipped in the package (`step/spec/schema.json`)."""
    text = resources.files("step.spec").joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(kind: str) -> jsonschema.Draft202012Validator:
    root = dict(load_schema())
    root.pop("oneOf", None)
    root["$ref"] = f"#/$defs/{kind}"
    return jsonschema.Draft202012Validator(root)


def duration_pattern() -> str:
    pattern: str = load_schema()["$defs"]["duration"]["pattern"]
    return pattern


def validate_document(doc: Document, *, kind: str) -> list[Problem]:
    """Every schema problem of one document whose apiVersion and kind were already checked."""
    problems = []
    for error in _leaf_errors(_validator(kind).iter_errors(doc.data)):
        path, message = _explain(error)
        problems.append(Problem(file=doc.file, line=doc.line_of(path), path=path, message=message))
    return problems


def _leaf_errors(errors: Iterator[ValidationError]) -> Iterator[ValidationError]:
    for error in errors:
        if error.context:
            yield from _leaf_errors(iter(error.context))
        else:
            yield error


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def describe_value(value: Any) -> str:
    """A short description of a YAML value for messages: `-5`, `'abc'`, `a list`, `a mapping`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null (empty)"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} ({value!s:.40})"


def suggest(word: str, candidates: Sequence[str]) -> str:
    """`; did you mean 'stepWeight'?` or an empty string."""
    lowered = {c.lower(): c for c in candidates}
    if word.lower() in lowered:
        return f"; did you mean '{lowered[word.lower()]}'?"
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _explain(error: ValidationError) -> tuple[JsonPath, str]:
    path: JsonPath = tuple(error.absolute_path)
    keyword = error.validator
    value = error.validator_value
    instance = error.instance
    if keyword == "additionalProperties" and isinstance(instance, dict):
        properties = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        known = [str(k) for k in properties]
        extra = [k for k in instance if k not in known]
        key = str(extra[0]) if extra else "?"
        hint = suggest(key, known)
        if not hint and known:
            hint = f"; allowed here: {', '.join(known)}"
        return (*path, key), f"unknown field{hint}"
    if keyword == "required" and isinstance(value, list):
        missing = [k for k in value if isinstance(instance, dict) and k not in instance]
        name = missing[0] if missing else "?"
        return path, f"missing required field '{name}'"
    if (
        keyword == "type"
        and isinstance(error.schema, Mapping)
        and error.schema.get("pattern") == duration_pattern()
    ):
        return path, f"expected a duration such as 15s, 1m, 1m30s or 500ms, got {describe_value(instance)}"
    if keyword == "type":
        wanted = value if isinstance(value, list) else [value]
        words = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in wanted)
        return path, f"expected {words}, got {describe_value(instance)}"
    if keyword == "minimum":
        return path, f"{describe_value(instance)} is less than the minimum of {value}"
    if keyword == "maximum":
        return path, f"{describe_value(instance)} is greater than the maximum of {value}"
    if keyword == "minLength":
        return path, "must not be empty"
    if keyword == "maxLength":
        return path, f"is longer than {value} characters"
    if keyword == "minItems":
        return path, f"must have at least {value} item{'s' if value != 1 else ''}"
    if keyword == "maxItems":
        return path, f"must have at most {value} items"
    if keyword == "enum" and isinstance(value, list):
        allowed = [str(v) for v in value if v != ""]
        shown = ", ".join(allowed)
        hint = suggest(str(instance), allowed) if isinstance(instance, str) else ""
        return path, f"{describe_value(instance)} is not one of: {shown}{hint}"
    if keyword == "pattern":
        if value == duration_pattern():
            return path, (
                f"{describe_value(instance)} is not a duration: use whole or decimal numbers with "
                "the units h, m, s or ms (e.g. 15s, 1m, 1m30s, 500ms)"
            )
        if path and path[-1] == "name":
            return path, (
                f"{describe_value(instance)} is not a valid Kubernetes name: lower-case letters, "
                "digits, '-' and '.', starting and ending with a letter or digit"
            )
        if path and path[-1] == "namespace":
            return path, (
                f"{describe_value(instance)} is not a valid namespace: lower-case letters, digits "
                "and '-', starting and ending with a letter or digit, at most 63 characters"
            )
        return path, f"{describe_value(instance)} does not match {value}"
    return path, error.message

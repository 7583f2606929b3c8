"""The JSON Schema (package data `schema.json`) and the messages a person reads when it fails.

Owns: loading the one schema, validating one document against the definition for its kind, and
rewriting jsonschema's messages into `Problem`s (unknown fields with a "did you mean", missing fields,
types, bounds, enums, durations).
Must not: know rules beyond the schema (see `rules.py`), or import kube, click, tenacity, requests.
"""

from __future__ import annotations

import ast
import difflib
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from step.spec.durations import FLAGGER_DURATION_PATTERN, flagger_duration_problem
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


def validate_document(doc: Document, *, kind: str) -> list[Problem]:
    """Every schema problem of one document whose apiVersion and kind were already checked."""
    problems = []
    for path, message in _explained(_validator(kind).iter_errors(doc.data)):
        problems.append(Problem(file=doc.file, line=doc.line_of(path), path=path, message=message))
    return problems


def _explained(errors: Iterator[ValidationError]) -> Iterator[tuple[JsonPath, str]]:
    """Each error in words; a `oneOf` is explained as a whole (which fields clash, or which is missing)."""
    for error in errors:
        if error.validator == "oneOf":
            explained = _explain_one_of(error)
            if explained is not None:
                yield from explained
                continue
        if error.context:
            yield from _explained(iter(error.context))
        else:
            yield _explain(error)


def _alternatives(branches: Sequence[Any]) -> list[str]:
    """The fields a `oneOf` chooses between: those some branch requires and not every branch does."""
    required: list[list[str]] = []
    for branch in branches:
        if isinstance(branch, Mapping) and isinstance(branch.get("required"), list):
            required.append([str(f) for f in branch["required"]])
    common = set.intersection(*(set(r) for r in required)) if required else set()
    out: list[str] = []
    for fields in required:
        out.extend(f for f in fields if f not in common and f not in out)
    return out


def _explain_one_of(error: ValidationError) -> list[tuple[JsonPath, str]] | None:
    """The `oneOf` in words, or None when what fails is inside the one alternative that is set."""
    instance = error.instance
    branches = error.validator_value if isinstance(error.validator_value, list) else []
    alternatives = _alternatives(branches)
    if not isinstance(instance, dict) or not alternatives:
        return None
    path: JsonPath = tuple(error.absolute_path)
    present = [f for f in alternatives if f in instance]
    may_omit = any(isinstance(b, Mapping) and "not" in b for b in branches)
    listed = ", ".join(alternatives[:-1]) + f" or {alternatives[-1]}"
    if len(present) > 1:
        both = " and ".join(f"'{f}'" for f in present)
        limit = "at most one" if may_omit else "exactly one"
        # At the last one set: the line a person edits.
        return [((*path, present[-1]), f"{both} are both set; Flagger's CRD accepts {limit} of {listed}")]
    if not present and not may_omit:
        known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        if any(suggest(str(key), alternatives) for key in instance if key not in known):
            return []  # a misspelt alternative: the unknown field's "did you mean" says it
        return [(path, f"set one of {listed} (Flagger's CRD requires exactly one)")]
    return None


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


def _missing_field(error: ValidationError) -> str:
    """jsonschema reports each missing field as its own error, naming it only in the message."""
    quoted = error.message.removesuffix(" is a required property")
    try:
        name = ast.literal_eval(quoted)
    except (ValueError, SyntaxError):
        return quoted
    return str(name)


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
    if keyword == "required":
        return path, f"missing required field '{_missing_field(error)}'"
    if (
        keyword == "type"
        and isinstance(error.schema, Mapping)
        and error.schema.get("pattern") == FLAGGER_DURATION_PATTERN
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
        if value == FLAGGER_DURATION_PATTERN and isinstance(instance, str):
            return path, flagger_duration_problem(instance) or f"{instance!r} is not a duration"
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

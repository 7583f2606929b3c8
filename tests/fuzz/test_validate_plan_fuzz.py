"""Fuzzing `validate` and `plan` (issue 9 item 7): no traceback, exit 0 or 2 only, whatever the input.

Inputs: documents drawn from our own schema with hypothesis-jsonschema, documents generated from
Flagger's CRDs (tests.fuzz.inputs, shared with the differential test), mutations of the published specs,
and hand-made hostile files: wrong types, unknown fields, huge numbers, unicode, deep nesting, YAML alias
bombs, files over 1 MiB, duplicate keys. Fixed seeds; each test checks its own time budget.
"""

from __future__ import annotations

import functools
import json
import resource
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from step.cli import cli
from step.spec.schema import load_schema
from tests.fuzz.inputs import generated_documents, mutations, published

SEED = 20261202
GENERATED = 10_000
PER_FILE = 100  # documents per `validate` call
# libyaml's emitter where PyYAML has it: the pure-Python one took half of this module's time writing inputs.
_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(*docs: Any) -> str:
    return yaml.dump_all(docs, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        f"{args}: {result.exception!r}"
    )
    assert result.exit_code in (0, 2), (args, result.exit_code, result.stderr[-2000:])
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def _check(path: Path, *, every_mode: bool = False) -> None:
    """`plan` (which loads a file as `validate` does: parse, schema, rules; then plans); with `every_mode`,
    `validate` in both modes too."""
    if every_mode:
        _run("validate", "--against", "flagger", "--templates-from-cluster", "-o", "json", str(path))
        _run("validate", str(path))
    _run("plan", "--templates-from-cluster", str(path))


@functools.cache
def _our_metric_strategy() -> st.SearchStrategy[Any]:
    """A metric drawn from our own schema (hypothesis-jsonschema), the part with the most rules."""
    defs = load_schema()["$defs"]
    metric = defs["Canary"]["properties"]["spec"]["properties"]["analysis"]["properties"]["metrics"]["items"]
    return from_schema({**metric, "$defs": defs})


def _collect(strategy: st.SearchStrategy[Any], count: int, per_example: int) -> list[Any]:
    drawn: list[Any] = []

    @settings(
        max_examples=count // per_example,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @seed(SEED)
    @given(st.lists(strategy, min_size=per_example, max_size=per_example))
    def collect(items: list[Any]) -> None:
        drawn.extend(items)

    collect()
    return drawn


@pytest.mark.long
def test_ten_thousand_generated_inputs_through_validate_and_plan(tmp_path: Path) -> None:
    started = time.monotonic()
    documents = [
        doc for batch in _collect(generated_documents(50), (GENERATED - 500) // 50, 1) for doc in batch
    ]
    canary = next(
        d for _, d in published() if d["kind"] == "Canary" and d["spec"].get("provider") == "knative"
    )
    for metric in _collect(_our_metric_strategy(), 500, 10):
        documents.append(
            {
                **canary,
                "spec": {**canary["spec"], "analysis": {**canary["spec"]["analysis"], "metrics": [metric]}},
            }
        )
    assert len(documents) >= GENERATED
    for start in range(0, len(documents), PER_FILE):
        path = tmp_path / f"fuzz-{start}.yaml"
        chunk = documents[start : start + PER_FILE]
        path.write_text(_dump(*chunk), encoding="utf-8")
        # `plan` only: `validate --against flagger` over 10 000 documents from this same generator is
        # the Flagger CRD oracle's work (tests/e2e/test_flagger_crd_oracle.py), which checks its exit
        # code and JSON as well as its verdicts; repeating it here cost about 40 % of this test.
        _check(path)
        # Each Canary alone as well, in every mode: `plan` shows one Canary's plan only when a file holds one.
        for i, doc in enumerate(chunk[:2]):
            single = tmp_path / f"single-{start}-{i}.yaml"
            single.write_text(_dump(doc), encoding="utf-8")
            _check(single, every_mode=True)
    elapsed = time.monotonic() - started
    print(f"fuzz: {len(documents)} generated documents through validate and plan in {elapsed:.1f}s")


def test_mutations_of_the_published_specs_each_through_plan(tmp_path: Path) -> None:
    count = 0
    for label, base in published():
        for what, doc in list(mutations(base))[::7]:
            path = tmp_path / "m.yaml"
            path.write_text(_dump(doc), encoding="utf-8")
            code, _, _ = _run("plan", "--templates-from-cluster", str(path))
            assert code in (0, 2), (label, what)
            count += 1
    assert count > 300


CANARY = """apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
spec:
  provider: knative
  targetRef: {apiVersion: serving.knative.dev/v1, kind: Service, name: podinfo}
  analysis:
    interval: 15s
    threshold: 5
    stepWeight: 10
"""

HOSTILE = {
    "wrong-types": CANARY.replace("threshold: 5", "threshold: [5]").replace("15s", "{a: b}"),
    "unknown-fields": CANARY + "  stepweight: 10\n  zzz: {a: [1, 2]}\n",
    "huge-numbers": CANARY.replace("threshold: 5", "threshold: " + "9" * 5000).replace("10\n", "1e400\n"),
    "unicode": CANARY.replace("podinfo\nspec", "p\u00f6dinfo\u202e\nspec").replace("15s", "1５s")
    + "  ✓: \U0001f600\n",
    "deep-nesting": CANARY + "  service: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep-mapping": CANARY + "  service: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    "duplicate-keys": CANARY + "  analysis: {interval: 1m}\n",
    "binary": "\x00\x01\x02",
    "latin-1": "kind: Canary\nname: caf\xe9\n",
    "tabs-and-garbage": "\t- : : {[}\n",
    "scalar": "just a string\n",
    "list-of-lists": "- [1, [2, [3]]]\n",
    "kind-list": "apiVersion: v1\nkind: List\nitems: [1, null, {kind: Canary}, "
    + CANARY.replace("\n", " ")[:0]
    + "[]]\n",
    "merge-keys": "base: &b {a: 1}\nother: {<<: *b, c: 2}\n" + "---\n" + CANARY,
    "many-documents": "---\n".join([CANARY] * 200),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_are_refused_with_exit_2_and_no_traceback(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    text = HOSTILE[name]
    path.write_bytes(text.encode("latin-1") if name == "latin-1" else text.encode("utf-8"))
    for args in (["validate", str(path)], ["validate", "-o", "json", str(path)], ["plan", str(path)]):
        code, out, _ = _run(*args)
        if name not in ("many-documents", "merge-keys"):
            assert code == 2, (name, args, out[:500])
        if "-o" in args:
            assert json.loads(out)["valid"] is (code == 0)


def _alias_bomb(levels: int = 12, width: int = 10) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + f"\nkind: Canary\napiVersion: flagger.app/v1beta1\nspec: *a{levels - 1}\n"


def test_an_alias_bomb_is_refused_fast_and_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())  # 10**11 nodes once expanded; a few hundred bytes on disk
    assert path.stat().st_size < 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    code, out, _ = _run("validate", str(path))
    elapsed = time.monotonic() - started
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(f"alias bomb: refused in {elapsed * 1000:.0f} ms, peak RSS grew by {grown_kib} KiB")
    assert code == 2
    assert "document too large: more than 100000 YAML nodes (anchors expanded)" in out
    assert elapsed < 0.5
    assert grown_kib < 64 * 1024
    code, _, _ = _run("plan", str(path))
    assert code == 2


def test_files_over_one_mebibyte_are_refused_without_being_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(CANARY + "# " + "x" * (1024 * 1024) + "\n")
    started = time.monotonic()
    code, out, _ = _run("validate", str(path))
    assert code == 2
    assert "a spec file must be at most 1024 KiB" in out
    assert time.monotonic() - started < 0.5
    assert _run("plan", str(path))[0] == 2

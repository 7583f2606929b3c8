"""Loading spec files: line numbers, several documents, Flagger's defaults, and hostile input."""

from __future__ import annotations

from pathlib import Path

import pytest

from step.errors import ExitCode, SpecError
from step.spec.loader import bundle_from_objects, load_bundle, load_files
from step.spec.model import OnNoData, WebhookType
from step.spec.problems import InvalidSpecError
from step.spec.source import MAX_FILE_BYTES, parse_documents
from tests.reference import FLAGGER_CANARIES

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
REFERENCE_CANARIES = FLAGGER_CANARIES


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def messages(path: Path, **kwargs: bool) -> list[str]:
    loaded = load_files([path], **kwargs)
    return [str(p).removeprefix(f"{path}:") for p in loaded.problems]


def test_the_seed_canary_loads_with_flaggers_defaults_resolved() -> None:
    bundle = load_bundle([EXAMPLES / "podinfo-canary.yaml"])
    canary = bundle.canary
    assert (canary.namespace, canary.name, canary.target_name, canary.provider) == (
        "test",
        "podinfo",
        "podinfo",
        "knative",
    )
    assert canary.progress_deadline_seconds == 60
    analysis = canary.analysis
    assert (analysis.interval_seconds, analysis.threshold, analysis.max_weight, analysis.step_weight) == (
        15.0,
        15,
        50,
        10,
    )
    success, duration = analysis.metrics
    assert (success.name, success.threshold_min, success.threshold_max, success.interval) == (
        "request-success-rate",
        99.0,
        None,
        "1m",
    )
    assert (duration.threshold_min, duration.threshold_max) == (None, 500.0)
    assert success.is_builtin and success.on_no_data is OnNoData.FAIL
    (hook,) = analysis.webhooks
    assert hook.type is WebhookType.ROLLOUT  # no type means rollout
    assert hook.timeout_seconds == 5.0 and hook.retries == 0
    assert hook.metadata["cmd"] == "hey -z 1m -q 5 -c 2 http://podinfo.test"


def test_defaults_when_fields_are_absent(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: app}
spec:
  provider: knative
  targetRef: {apiVersion: serving.knative.dev/v1, kind: Service, name: app}
  analysis:
    interval: 1m30s
    threshold: 0
    stepWeight: 25
    metrics:
      - name: request-success-rate
        threshold: 95
      - name: request-duration
      - name: custom
        query: vector(1)
    webhooks:
      - {name: hook, url: "http://hook/", type: ""}
""",
    )
    bundle = load_bundle([path], default_namespace="ns1")
    canary = bundle.canary
    assert canary.namespace == "ns1"
    assert canary.progress_deadline_seconds == 600
    assert canary.analysis.interval_seconds == 90.0
    assert canary.analysis.threshold == 1  # Flagger: threshold <= 0 means 1
    assert canary.analysis.max_weight == 100
    success, duration, custom = canary.analysis.metrics
    # Flagger's deprecated `threshold` (0 when absent): a minimum for the success rate, else a maximum.
    assert (success.threshold_min, success.threshold_max) == (95.0, None)
    assert (duration.threshold_min, duration.threshold_max) == (None, 0.0)
    assert (custom.threshold_min, custom.threshold_max, custom.interval) == (None, 0.0, "1m")
    (hook,) = canary.analysis.webhooks
    assert hook.type is WebhookType.ROLLOUT and hook.timeout_seconds == 10.0


def test_a_file_with_a_canary_its_template_and_a_secret(tmp_path: Path) -> None:
    loaded = load_files([EXAMPLES / "podinfo-canary-basic-auth.yaml"])
    assert loaded.ok
    (item,) = loaded.canaries
    bundle = loaded.bundle(item)
    (error_rate, _duration) = bundle.canary.analysis.metrics
    template = bundle.template_for(error_rate)
    assert template is not None
    assert (template.namespace, template.name, template.provider_type) == ("test", "error-rate", "prometheus")
    assert template.secret_ref is not None and template.secret_ref.name == "prometheus-basic-auth"
    assert error_rate.on_no_data is OnNoData.IGNORE
    assert [str(n).split(": ", 1)[1] for n in loaded.notes] == [
        "skipped v1 Secret 'prometheus-basic-auth': not a flagger.app resource"
    ]


@pytest.mark.parametrize("path", REFERENCE_CANARIES, ids=lambda p: p.name)
def test_every_canary_published_by_flagger_validates(path: Path) -> None:
    loaded = load_files([path], templates_from_cluster=True)
    assert [str(p) for p in loaded.problems] == []
    assert len(loaded.canaries) == 1


def test_reference_canaries_exist() -> None:
    assert len(REFERENCE_CANARIES) >= 14


def test_line_numbers_point_at_the_key_across_documents(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: t}
spec:
  provider: {type: prometheus}
  query: up
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: app
spec:
  provider: knative
  targetRef: {apiVersion: serving.knative.dev/v1, kind: Service, name: app}
  analysis:
    interval: 15s
    threshold: 2
    stepWeight: -5
    metrics:
      - name: m
        templateRef: {name: t}
        thresholdRange:
          max: 1
        extra: true
""",
    )
    assert messages(path) == [
        "19: spec.analysis.stepWeight: -5 is less than the minimum of 0",
        "25: spec.analysis.metrics[0].extra: unknown field; allowed here: name, interval, threshold, "
        "thresholdRange, query, templateRef, templateVariables, onNoData",
    ]


def test_unknown_fields_suggest_the_known_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: app}
spec:
  provider: knative
  targetref: {apiVersion: serving.knative.dev/v1, kind: Service, name: app}
  analysis: {interval: 15s, threshold: 1, stepWeight: 10, maxweight: 20}
""",
    )
    assert messages(path) == [
        "4: spec: missing required field 'targetRef'",
        "6: spec.targetref: unknown field; did you mean 'targetRef'?",
        "7: spec.analysis.maxweight: unknown field; did you mean 'maxWeight'?",
    ]


def test_templates_resolve_across_files_and_in_the_canary_namespace(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        """apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: errors, namespace: prod}
spec: {provider: {type: prometheus, address: "http://prom:9090"}, query: "up{ns='{{ namespace }}'}"}
""",
        "template.yaml",
    )
    canary = write(
        tmp_path,
        """apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: app, namespace: prod}
spec:
  provider: knative
  targetRef: {apiVersion: serving.knative.dev/v1, kind: Service, name: app}
  analysis:
    interval: 15s
    threshold: 1
    stepWeight: 10
    metrics: [{name: errors, templateRef: {name: errors}, thresholdRange: {max: 1}}]
""",
        "canary.yaml",
    )
    assert messages(canary) == [
        "11: spec.analysis.metrics[0].templateRef: MetricTemplate prod/errors is not in the given files: "
        "add it, or pass --templates-from-cluster to leave it to the cluster"
    ]
    bundle = load_bundle([canary, template])
    assert bundle.template_for(bundle.canary.analysis.metrics[0]) is not None
    left = load_files([canary], templates_from_cluster=True)
    assert left.ok and len(left.canaries) == 1
    assert "left to the cluster" in str(left.notes[0])


def test_two_templates_of_one_name_are_ambiguous(tmp_path: Path) -> None:
    text = """apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: t, namespace: a}
spec: {provider: {type: prometheus}, query: up}
"""
    first, second = write(tmp_path, text, "one.yaml"), write(tmp_path, text, "two.yaml")
    loaded = load_files([first, second])
    assert [p.message for p in loaded.problems] == [f"duplicate MetricTemplate a/t (first at {first}:1)"]


def test_load_bundle_wants_exactly_one_canary(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        load_bundle([EXAMPLES / "podinfo-ksvc.yaml"])
    assert "no Canary, MetricTemplate or AlertProvider" in str(caught.value)
    with pytest.raises(InvalidSpecError) as caught:
        load_bundle([EXAMPLES / "invalid" / "wrong-provider.yaml"])
    assert isinstance(caught.value, SpecError) and caught.value.exit_code == ExitCode.USAGE
    assert len(caught.value.problems) == 3
    text = (EXAMPLES / "podinfo-canary.yaml").read_text()
    two = write(
        tmp_path, text + "---\n" + text.replace("name: podinfo\n  namespace", "name: other\n  namespace")
    )
    with pytest.raises(InvalidSpecError, match="expected exactly one Canary, found 2"):
        load_bundle([two])


def test_objects_from_the_api_server_validate_with_status_and_server_metadata() -> None:
    obj = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "uid": "1",
            "resourceVersion": "7",
            "generation": 2,
        },
        "spec": {
            "provider": "knative",
            "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"},
            "analysis": {"interval": "15s", "threshold": 3, "stepWeight": 20},
        },
        "status": {"phase": "Progressing", "canaryWeight": 20, "failedChecks": 0, "iterations": 1},
    }
    bundle = bundle_from_objects([obj], source="canary test/podinfo")
    assert bundle.canary.analysis.step_weight == 20
    obj["spec"]["analysis"]["stepWeight"] = -1  # type: ignore[index]
    with pytest.raises(InvalidSpecError) as caught:
        bundle_from_objects([obj], source="canary test/podinfo")
    assert str(caught.value) == (
        "canary test/podinfo: spec.analysis.stepWeight: -1 is less than the minimum of 0"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty: expected a Canary, MetricTemplate or AlertProvider"),
        (b"---\n---\n# nothing\n", "is empty: expected a Canary, MetricTemplate or AlertProvider"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "is a binary file, not YAML"),
        (b"kind: Canary\nname: caf\xe9\n", "is not UTF-8 text"),
        (
            b"a: [1, 2\n",
            "invalid YAML: while parsing a flow sequence expected ',' or ']', but got '<stream end>'",
        ),
        (b"- 1\n- 2\n", "expected a mapping (a Kubernetes object), got a list"),
        (b"just a string\n", "expected a mapping (a Kubernetes object), got 'just a string'"),
        (
            b"apiVersion: v1\nkind: ConfigMap\n",
            "no Canary, MetricTemplate or AlertProvider (flagger.app/v1beta1) found",
        ),
        (b"kind: Canary\n", "missing required field 'apiVersion'"),
        (b"apiVersion: 3\nkind: [Canary]\n", "apiVersion: expected a string, got 3"),
        (
            b"apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata: {name: x}\nspec: []\n",
            "spec: expected a mapping, got a list",
        ),
        (b"apiVersion: flagger.app/v1beta1\nkind: Canary\n1: 2\nmetadata: {name: x}\n", "1: unknown field"),
    ],
)
def test_hostile_input_gives_a_problem_not_a_traceback(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "in.yaml"
    path.write_bytes(content)
    loaded = load_files([path])
    assert loaded.problems, "expected a problem"
    assert any(expected in str(p) for p in loaded.problems), [str(p) for p in loaded.problems]


def test_missing_files_and_directories(tmp_path: Path) -> None:
    loaded = load_files([tmp_path / "nope.yaml", tmp_path])
    assert sorted(str(p) for p in loaded.problems) == sorted(
        [f"{tmp_path / 'nope.yaml'}: no such file", f"{tmp_path}: is a directory, not a spec file"]
    )


def test_a_10_mb_file_is_refused_by_its_size_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# padding\n" * (1024 * 1024))
    loaded = load_files([path])
    assert [str(p) for p in loaded.problems] == [
        f"{path}: file is 10.0 MiB; a spec file must be at most {MAX_FILE_BYTES // 1024} KiB"
    ]


def test_anchor_expansion_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    # 10 * 5**11 leaves if expanded; the walk stops at MAX_NODES instead.
    documents, problems = parse_documents("\n".join(lines).encode(), file="bomb.yaml")
    assert documents == []
    assert "document too large" in problems[0].message


def test_duplicate_keys_are_reported_with_both_lines(tmp_path: Path) -> None:
    assert messages(EXAMPLES / "invalid" / "duplicate-key.yaml") == [
        "17: spec.analysis.threshold: duplicate key (first at line 15)"
    ]

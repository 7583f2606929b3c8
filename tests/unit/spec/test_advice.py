"""validate and plan warn about the no-data traps of issue 14: a threshold one no-data tick can reach,
and a ratio query with no `or on() vector(0)`. Notes only: the exit code does not change."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from step.cli import cli
from step.spec.advice import is_bare_ratio, no_data_advice
from step.spec.loader import load_files

RATIO = (
    'sum(rate(http_requests_total{status="404", revision="{{ target }}"}[{{ interval }}])) / '
    'sum(rate(http_requests_total{revision="{{ target }}"}[{{ interval }}])) * 100'
)


def spec(tmp_path: Path, *, threshold: int, metric: str) -> Path:
    path = tmp_path / "checkout.yaml"
    path.write_text(
        "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata: {name: checkout, namespace: shop}\n"
        "spec:\n  provider: knative\n"
        "  targetRef: {apiVersion: serving.knative.dev/v1, kind: Service, name: checkout}\n"
        f"  analysis:\n    interval: 1m\n    threshold: {threshold}\n    stepWeights: [5, 25, 50]\n"
        f"    metrics:\n{metric}"
    )
    return path


SUCCESS_RATE = "      - {name: request-success-rate, thresholdRange: {min: 99}, interval: 1m}\n"


@pytest.mark.parametrize(
    ("query", "bare"),
    [
        (RATIO, True),
        (f"({RATIO.split(' / ', maxsplit=1)[0]} or on() vector(0)) / {RATIO.split(' / ')[1]}", False),
        ("sum(rate(x[1m])) or vector(0)", False),
        ("sum(rate(x[1m]))", False),
        ("histogram_quantile(0.99, sum(rate(x_bucket[1m])) by (le))", False),
    ],
)
def test_bare_ratio(query: str, bare: bool) -> None:
    assert is_bare_ratio(query) is bare


def test_a_threshold_one_no_data_tick_can_reach_is_a_note(tmp_path: Path) -> None:
    loaded = load_files([str(spec(tmp_path, threshold=1, metric=SUCCESS_RATE))])
    (note,) = no_data_advice(loaded)
    assert str(note).startswith(f"{tmp_path}/checkout.yaml:9: spec.analysis.threshold: threshold 1 is low: ")
    assert "can roll a good canary back" in str(note)


def test_threshold_2_is_low_only_with_fail_immediately(tmp_path: Path) -> None:
    assert no_data_advice(load_files([str(spec(tmp_path, threshold=2, metric=SUCCESS_RATE))])) == []
    immediate = SUCCESS_RATE.replace("interval: 1m}", "interval: 1m, onNoData: fail-immediately}")
    (note,) = no_data_advice(load_files([str(spec(tmp_path, threshold=2, metric=immediate))]))
    assert "onNoData: fail-immediately counts the first tick's data as a failed check" in str(note)


def test_a_ratio_query_without_or_vector_0_is_a_note_in_validate_and_plan(tmp_path: Path) -> None:
    metric = (
        f"      - name: not-found-percentage\n        thresholdRange: {{max: 5}}\n        query: '{RATIO}'\n"
    )
    path = spec(tmp_path, threshold=2, metric=metric)
    (note,) = no_data_advice(load_files([str(path)]))
    assert "metric not-found-percentage: its query is a ratio that returns no series at all" in str(note)
    assert "add `or on() vector(0)` to the numerator" in str(note)
    for command in (["validate", str(path)], ["plan", str(path)]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 0, result.stderr
        assert f"note: {note}" in result.stderr
    ignored = metric.replace("thresholdRange", "onNoData: ignore\n        thresholdRange")
    assert no_data_advice(load_files([str(spec(tmp_path, threshold=2, metric=ignored))])) == []


@pytest.mark.parametrize(
    ("cmd", "noted"),
    [("hey -z 1m http://checkout.shop/", True), ("hey -z 1m {{ canary_url }}/", False)],
)
def test_blue_green_with_no_load_on_the_canary_url_is_a_note(tmp_path: Path, cmd: str, noted: bool) -> None:
    path = spec(tmp_path, threshold=3, metric=SUCCESS_RATE)
    text = path.read_text().replace("stepWeights: [5, 25, 50]", "iterations: 5")
    path.write_text(
        text + f"    webhooks:\n      - {{name: load, url: 'http://t/', metadata: {{cmd: '{cmd}'}}}}\n"
    )
    notes = [str(n) for n in no_data_advice(load_files([str(path)]))]
    expected = (
        f"{path}:10: spec.analysis.iterations: blue/green keeps the users' traffic off the canary revision "
        "until the promotion, so its metrics see only the requests webhooks send to its tagged URL, and no "
        "webhook's metadata uses {{ canary_url }}: every tick may find no data"
    )
    assert [n.startswith(expected) for n in notes] == ([True] if noted else []), notes

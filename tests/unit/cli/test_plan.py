"""`canary-step plan`: the schedule, Flagger's timing rules, webhook order and rendered queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from step.cli import cli
from tests.reference import FLAGGER_CANARIES, TEMPLATEREF_CANARY

ROOT = Path(__file__).resolve().parents[3]

SEED_PLAN = """\
Canary test/podinfo: serving.knative.dev/v1 Service podinfo, provider knative
Strategy:          canary
Weight schedule:   0 -> 10 -> 20 -> 30 -> 40 -> 50 -> promote
Interval:          15s; threshold 15 failed checks
Analysis ticks:    6 (5 evaluate metrics; the first does not)
Before tick 1:     the canary revision must be Ready within 60s (progressDeadlineSeconds), else rollback
Times below count from t = 0, tick 1 (the first analysis tick), with every gate open:
  earliest promotion: 1m15s (tick 6)
  earliest rollback:  4m0s (tick 17)
  latest rollback:    5m0s (tick 21)
Webhooks, in the order they fire:
  1. load-test (rollout) http://flagger-loadtester.test/
     on every tick after the first, before the metrics; a failure is a failed check
Metrics (canary revision podinfo-00002):
  request-success-rate: >= 99 over 1m (builtin; no data: fail)
     sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"test/podinfo-00002", envoy_response_code!~"5.*" }[1m] ) ) / sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"test/podinfo-00002", }[1m] ) ) * 100
  request-duration: <= 500 over 1m (builtin; no data: fail)
     histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ envoy_cluster_name=~"test/podinfo-00002", }[1m] ) ) by (le) )
"""  # noqa: E501


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("CANARY_STEP_CANARY_REVISION", "CANARY_STEP_OUTPUT", "CANARY_STEP_TEMPLATES_FROM_CLUSTER"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["plan", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def plan_json(tmp_path: Path, analysis: str, *, extra: str = "") -> dict[str, object]:
    path = tmp_path / "canary.yaml"
    path.write_text(
        "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata: {name: app, namespace: ns}\nspec:\n"
        "  provider: knative\n"
        "  targetRef: {apiVersion: serving.knative.dev/v1, kind: Service, name: app}\n"
        f"{extra}  analysis:\n" + "".join(f"    {line}\n" for line in analysis.strip().splitlines())
    )
    code, out, err = run("-o", "json", str(path))
    assert code == 0, err
    data: dict[str, object] = json.loads(out)
    return data


def test_the_seed_plan() -> None:
    code, out, err = run("examples/podinfo-canary.yaml", "--canary-revision", "podinfo-00002")
    assert code == 0
    assert out == SEED_PLAN
    assert err == ""


def test_the_seed_plan_as_json() -> None:
    code, out, _ = run("examples/podinfo-canary.yaml", "--output", "json")
    assert code == 0
    data = json.loads(out)
    assert data["schedule"] == [0, 10, 20, 30, 40, 50]
    assert data["scheduleText"] == "0 -> 10 -> 20 -> 30 -> 40 -> 50 -> promote"
    assert (data["ticks"], data["metricTicks"]) == (6, 5)
    assert data["earliestPromotionSeconds"] == 75.0
    assert (data["earliestRollbackSeconds"], data["latestRollbackSeconds"]) == (240.0, 300.0)
    assert data["canaryRevision"] == "<canary-revision>"
    assert [m["name"] for m in data["metrics"]] == ["request-success-rate", "request-duration"]
    assert 'envoy_cluster_name=~"test/<canary-revision>"' in data["metrics"][0]["query"]
    assert data["webhooks"][0]["type"] == "rollout"


def test_the_canary_revision_comes_from_the_environment() -> None:
    _, out, _ = run(
        "examples/podinfo-canary.yaml", "-o", "json", env={"CANARY_STEP_CANARY_REVISION": "podinfo-00009"}
    )
    assert 'envoy_cluster_name=~"test/podinfo-00009"' in json.loads(out)["metrics"][1]["query"]


METRIC = "metrics: [{name: request-duration}]"


@pytest.mark.parametrize(
    ("analysis", "expected"),
    [
        # stepWeight 100 reaches 100 on tick 0 and promotes on tick 1.
        (f"{{interval: 10s, threshold: 2, stepWeight: 100, {METRIC}}}", ([0, 100], 2, 10, 30, 30)),
        # The weight overshoots maxWeight (cap 100, not maxWeight): 30 -> 60 -> promote.
        (
            f"{{interval: 10s, threshold: 1, stepWeight: 30, maxWeight: 50, {METRIC}}}",
            ([0, 30, 60], 3, 20, 20, 30),
        ),
        # Threshold 0 means 1.
        (f"{{interval: 1m, threshold: 0, stepWeights: [20, 80], {METRIC}}}", ([0, 20, 80], 3, 120, 120, 180)),
        # Nothing can fail: no rollback by failed checks.
        ("{interval: 5s, threshold: 3, stepWeight: 50}", ([0, 50, 100], 3, 10, None, None)),
    ],
)
def test_timing_follows_flaggers_rules(tmp_path: Path, analysis: str, expected: tuple[object, ...]) -> None:
    data = plan_json(tmp_path, analysis)
    assert (
        data["schedule"],
        data["ticks"],
        data["earliestPromotionSeconds"],
        data["earliestRollbackSeconds"],
        data["latestRollbackSeconds"],
    ) == expected


def test_pre_rollout_hooks_can_fail_on_tick_0(tmp_path: Path) -> None:
    data = plan_json(
        tmp_path,
        "{interval: 10s, threshold: 3, stepWeight: 25, maxWeight: 50,"
        " webhooks: [{name: smoke, type: pre-rollout, url: 'http://t/'}]}",
    )
    # Only the pre-rollout hook can fail: N failures on ticks 0..N-1, rollback on tick N.
    assert (data["earliestRollbackSeconds"], data["latestRollbackSeconds"]) == (30.0, 30.0)
    data = plan_json(
        tmp_path,
        "{interval: 10s, threshold: 3, stepWeight: 25, maxWeight: 50, metrics: [{name: request-duration}],"
        " webhooks: [{name: smoke, type: pre-rollout, url: 'http://t/'}]}",
    )
    assert (data["earliestRollbackSeconds"], data["latestRollbackSeconds"]) == (30.0, 50.0)


def test_blue_green_and_skip_analysis(tmp_path: Path) -> None:
    data = plan_json(
        tmp_path, "{interval: 10s, threshold: 2, iterations: 4, metrics: [{name: request-duration}]}"
    )
    assert (data["strategy"], data["scheduleText"]) == ("blue-green", "0 for 4 iterations -> promote")
    assert (data["ticks"], data["earliestPromotionSeconds"], data["latestRollbackSeconds"]) == (
        5,
        40.0,
        60.0,
    )
    # the machine's own blue/green run: every check failing rolls back on the tick after the N-th
    assert (data["metricTicks"], data["earliestRollbackSeconds"], data["schedule"]) == (4, 30.0, [0] * 5)
    assert data["canaryUrl"] == "http://canary-app.ns.<domain>"
    data = plan_json(
        tmp_path,
        "{interval: 10s, threshold: 2, iterations: 4, webhooks: [{name: load, type: pre-rollout, url: 'http://t/',"
        " metadata: {cmd: 'hey {{ canary_url }}'}}, {name: gate, type: confirm-traffic-increase, url: 'http://t/'}]}",
    )
    assert [h["when"] for h in data["webhooks"]] == [  # type: ignore[union-attr]
        "on the first tick, once the canary revision is tagged at 0 %; a failure is a failed check",
        "never: blue/green moves no traffic before the promotion",
    ]
    # a failing pre-rollout hook repeats the first tick: the earliest rollback is N intervals in
    assert (data["earliestRollbackSeconds"], data["latestRollbackSeconds"]) == (20.0, 20.0)
    data = plan_json(
        tmp_path, "{interval: 10s, threshold: 2, stepWeight: 10}", extra="  skipAnalysis: true\n"
    )
    assert (data["strategy"], data["earliestPromotionSeconds"], data["earliestRollbackSeconds"]) == (
        "skip-analysis",
        0.0,
        None,
    )


def test_webhooks_are_listed_in_the_order_they_fire(tmp_path: Path) -> None:
    hooks = [
        ("post", "post-rollout"),
        ("load", ""),
        ("promote-gate", "confirm-promotion"),
        ("events", "event"),
        ("smoke", "pre-rollout"),
        ("step-gate", "confirm-traffic-increase"),
        ("start-gate", "confirm-rollout"),
        ("abort", "rollback"),
        ("load-2", "rollout"),
    ]
    listed = ", ".join(f"{{name: {n}, type: '{t}', url: 'http://h/'}}" for n, t in hooks)
    data = plan_json(tmp_path, f"{{interval: 10s, threshold: 1, stepWeight: 50, webhooks: [{listed}]}}")
    webhooks = data["webhooks"]
    assert isinstance(webhooks, list)
    assert [h["name"] for h in webhooks] == [
        "start-gate",
        "smoke",
        "abort",
        "load",
        "load-2",
        "step-gate",
        "promote-gate",
        "post",
        "events",
    ]


def test_template_metrics_are_rendered_with_their_variables(tmp_path: Path) -> None:
    code, out, _ = run(
        "-o", "json", "examples/podinfo-canary-basic-auth.yaml", "--canary-revision", "podinfo-00002"
    )
    assert code == 0
    error_rate = json.loads(out)["metrics"][0]
    assert error_rate["source"] == "template test/error-rate"
    assert error_rate["onNoData"] == "ignore"
    assert error_rate["query"].startswith(
        '100 - sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"test/podinfo-00002"'
    )


def test_templates_left_to_the_cluster_have_no_query() -> None:
    path = TEMPLATEREF_CANARY
    code, out, err = run("--templates-from-cluster", path)
    assert code == 0
    assert "latency: <= 500 over 1m (cluster istio-system/latency; no data: fail)" in out
    assert "(query read from the cluster)" in out
    assert "`canary-step run` supports Knative Services only; built-in metric queries are not shown" in err
    # The Knative built-in query would be wrong for this (Istio) Canary: none is shown.
    assert "request-success-rate: >= 99 over 1m (builtin; no data: fail)\n    (not shown:" in out
    assert "note: " in err and "spec.targetRef: `canary-step run` analyses Knative Services only" in err


def test_iterations_with_match_is_ab_testing_as_flagger_names_it() -> None:
    abtest = next(p for p in FLAGGER_CANARIES if p.name == "artifacts-examples-istio-abtest.yaml")
    code, out, _ = run("--templates-from-cluster", str(abtest))
    assert code == 0
    assert "Strategy:          ab-testing" in out
    bluegreen = next(p for p in FLAGGER_CANARIES if "bluegreen" in p.name)
    code, out, _ = run("--templates-from-cluster", str(bluegreen))
    assert code == 0
    assert "Strategy:          blue-green" in out


def test_an_invalid_spec_exits_2_with_problems_on_stderr() -> None:
    code, out, err = run("examples/invalid/out-of-range.yaml")
    assert (code, out) == (2, "")
    assert (
        "examples/invalid/out-of-range.yaml:18: spec.analysis.stepWeight: -5 is less than the minimum of 0"
        in err
    )
    code, out, _ = run("-o", "json", "examples/invalid/unknown-field.yaml")
    assert code == 2
    assert json.loads(out)["problems"][0]["path"] == "spec.analysis.stepweight"


def test_plan_needs_exactly_one_canary() -> None:
    code, out, err = run("examples/podinfo-ksvc.yaml")
    assert (code, out) == (2, "")
    assert "no Canary, MetricTemplate or AlertProvider" in err
    code, _, err = run("examples/podinfo-canary.yaml", "examples/podinfo-canary-basic-auth.yaml")
    assert code == 2
    assert "plan needs exactly one Canary, found 2 (test/podinfo, test/podinfo)" in err


def test_a_query_that_cannot_render_is_a_spec_problem() -> None:
    code, _, err = run("examples/invalid/templates.yaml", "--templates-from-cluster")
    assert code == 2
    assert (
        "examples/invalid/templates.yaml:30: spec.analysis.metrics[2].query: line 1: {{ variables.app }}: "
        "no key 'app' in templateVariables (given: none)"
    ) in err


def test_blue_green_beyond_the_simulated_ticks_gives_no_times(tmp_path: Path) -> None:
    data = plan_json(tmp_path, "{interval: 1s, threshold: 2, iterations: 100000000000}")
    assert data["scheduleText"] == "0 for 100000000000 iterations -> promote (not simulated: over 1000 ticks)"
    assert (data["simulated"], data["ticks"], data["earliestPromotionSeconds"]) == (False, 100000000001, None)
    # the canary strategy with a huge threshold is simulated as before
    data = plan_json(tmp_path, "{interval: 1s, threshold: 100000, stepWeight: 50}")
    assert (data["simulated"], data["earliestPromotionSeconds"]) == (True, 2.0)


@pytest.mark.parametrize(
    "path",
    [p for p in sorted((ROOT / "examples").glob("*.yaml")) if "kind: Canary" in p.read_text()],
    ids=lambda p: p.name,
)
def test_every_example_canary_plans_cleanly(path: Path) -> None:
    code, out, err = run(str(path.relative_to(ROOT)))
    assert code == 0, err
    assert "cannot be carried out" not in err and "Strategy:" in out


def test_the_blue_green_example_plans_its_iterations_on_the_tag() -> None:
    code, out, _ = run("examples/podinfo-bluegreen.yaml", "--canary-revision", "podinfo-00002")
    assert code == 0
    lines = out.splitlines()
    assert lines[1:5] == [
        "Strategy:          blue-green",
        "Weight schedule:   0 for 5 iterations -> promote",
        "Interval:          30s; threshold 2 failed checks",
        "Analysis ticks:    6 (5 evaluate metrics; the first does not)",
    ]
    assert "webhooks reach it at http://canary-podinfo.test.<domain> ({{ canary_url }}" in lines[5]
    assert "  earliest promotion: 2m30s (tick 6)" in lines
    assert "  earliest rollback:  1m0s (tick 3)" in lines  # the smoke test can fail on tick 1
    assert "  latest rollback:    3m30s (tick 8)" in lines  # 5 iterations pass, then 2 failed checks

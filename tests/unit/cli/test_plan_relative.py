"""`plan` and `validate` on a Canary with -vs-primary metrics (examples/podinfo-canary-relative.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from step.cli import cli

EXAMPLE = str(Path(__file__).parents[3] / "examples" / "podinfo-canary-relative.yaml")


def test_validate_accepts_the_example() -> None:
    result = CliRunner().invoke(cli, ["validate", EXAMPLE])
    assert result.exit_code == 0, result.output


def test_plan_renders_both_queries_and_the_minimum_samples() -> None:
    result = CliRunner().invoke(cli, ["plan", EXAMPLE, "--canary-revision", "podinfo-00002"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert 'envoy_cluster_name=~"test/podinfo-00002"' in out
    assert (
        "against the primary revision:  sum( rate( envoy_cluster_upstream_rq_time_sum{ "
        'envoy_cluster_name=~"test/<primary-revision>", }[30s] ) ) / sum( rate( '
        'envoy_cluster_upstream_rq_time_count{ envoy_cluster_name=~"test/<primary-revision>", }[30s] ) )'
    ) in out
    assert (
        "canary vs primary (Mann-Whitney U): may not go up by more than x1.1 at 0.98 confidence; "
        "7 samples per revision (every 30s over 3m0s), at least 5 needed; score pass 95, marginal 75"
    ) in out
    assert "may not go down below x0.99" in out


def test_plan_json_has_the_comparison() -> None:
    result = CliRunner().invoke(cli, ["plan", EXAMPLE, "--output", "json"])
    assert result.exit_code == 0, result.output
    metrics = {m["name"]: m for m in json.loads(result.stdout)["metrics"]}
    assert metrics["request-duration-vs-primary"]["minSamples"] == 5
    assert "<primary-revision>" in metrics["request-duration-vs-primary"]["primaryQuery"]
    assert metrics["request-duration"]["comparison"] is None


def test_validate_and_plan_refuse_a_misconfigured_comparison_with_its_line(tmp_path: Path) -> None:
    spec = Path(EXAMPLE).read_text().replace("max: 1.1", "max: 0.9")
    path = tmp_path / "canary.yaml"
    path.write_text(spec)
    expected = (
        f"{path}:36: spec.analysis.metrics[2].thresholdRange: thresholdRange.max 0.9 of a -vs-primary "
        "metric is the allowed ratio canary/primary: at least 1 (e.g. 1.1 allows 10 % more)"
    )
    for command in ("validate", "plan"):
        result = CliRunner().invoke(cli, [command, str(path)])
        assert result.exit_code == 2, result.output
        assert expected in result.output
        assert "Traceback" not in result.output

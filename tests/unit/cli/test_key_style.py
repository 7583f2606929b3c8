"""One numbering and one key style (issue 14, item 6): every JSON document canary-step writes for
machines (plan --output json, the JSON report) uses camelCase keys, as Kubernetes objects do; the
results are named in kebab-case, as Tekton results and Argo outputs are; ticks are numbered from 1 in
plan, in run's tick lines and in the report, and `iterations` counts the analysis ticks plan predicts."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from step.analysis.evaluate import Verdict
from step.analysis.records import CheckRecord, TickRecord
from step.cli import cli
from step.contract import RESULT_NAMES, Decision
from step.report.outcome import Outcome
from step.report.timeline import Timeline
from step.spec.loader import load_bundle
from tests.unit.analysis.test_machine import World

ROOT = Path(__file__).resolve().parents[3]
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
USER_DATA = {"request", "alerts", "byVerb", "service"}  # values whose keys are not ours to name


def keys(value: Any, *, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            found.append(f"{path}.{key}")
            if key not in USER_DATA:
                found += keys(inner, path=f"{path}.{key}")
    elif isinstance(value, list):
        for inner in value:
            found += keys(inner, path=f"{path}[]")
    return found


def test_plan_json_keys_are_camel_case() -> None:
    result = CliRunner().invoke(cli, ["plan", "-o", "json", str(ROOT / "examples/podinfo-canary.yaml")])
    assert result.exit_code == 0, result.stderr
    bad = [k for k in keys(json.loads(result.stdout)) if not CAMEL.match(k.rsplit(".", 1)[1])]
    assert bad == []


def test_report_keys_are_camel_case_and_result_names_kebab_case() -> None:
    bundle = load_bundle([str(ROOT / "examples/podinfo-canary.yaml")])
    timeline = Timeline(canary=bundle.canary, stream=io.StringIO())
    check = CheckRecord(
        metric="request-success-rate",
        verdict=Verdict.PASS,
        value=100.0,
        threshold_min=99,
        threshold_max=None,
        message="",
        query="q",
    )
    timeline.tick(
        TickRecord(
            index=1,
            at=0.0,
            phase="Progressing",
            primary_revision="podinfo-00001",
            canary_revision="podinfo-00002",
            canary_weight=10,
            failed_checks=0,
            consecutive_errors=0,
            checks=(check,),
            hooks=(),
            events=(),
            errors=(),
        ),
        api_requests=2,
    )
    outcome = Outcome(decision=Decision.PROMOTED, reason="analysis-passed", message="Promoted", iterations=1)
    report = timeline.report(outcome, started_wall=0.0, finished_wall=1.0, api_requests={"get": 1})
    bad = [k for k in keys(report) if not CAMEL.match(k.rsplit(".", 1)[1])]
    assert bad == []
    assert all(KEBAB.match(name) for name in RESULT_NAMES)


def test_ticks_are_numbered_from_1_and_plan_counts_what_run_counts() -> None:
    bundle = load_bundle([str(ROOT / "examples/podinfo-canary.yaml")])
    world = World(bundle.canary)  # the machine's own run, every check passing
    assert world.run().decision is Decision.PROMOTED
    assert world.state is not None
    result = CliRunner().invoke(cli, ["plan", "-o", "json", str(ROOT / "examples/podinfo-canary.yaml")])
    planned = json.loads(result.stdout)
    text = CliRunner().invoke(cli, ["plan", str(ROOT / "examples/podinfo-canary.yaml")]).stdout
    # the promotion happens on the 6th tick (t = 5 intervals): run prints "tick 6", plan says "(tick 6)"
    interval = bundle.canary.analysis.interval_seconds
    promotion_tick = round(planned["earliestPromotionSeconds"] / interval) + 1
    assert f"earliest promotion: 1m15s (tick {promotion_tick})" in text and promotion_tick == 6
    assert planned["ticks"] == world.state.iterations == 6  # the `iterations` result of that run
    assert [t.index for t in world.ticks] == [1, 2, 3, 4, 5, 6]  # run's tick lines and the report's
    assert world.ticks[-1].index == promotion_tick


def test_plan_counts_what_run_counts_for_the_blue_green_example() -> None:
    path = str(ROOT / "examples/podinfo-bluegreen.yaml")
    bundle = load_bundle([path])
    world = World(bundle.canary)  # the machine's own run, every check passing
    assert world.run().decision is Decision.PROMOTED
    assert world.state is not None
    planned = json.loads(CliRunner().invoke(cli, ["plan", "-o", "json", path]).stdout)
    interval = bundle.canary.analysis.interval_seconds
    promotion_tick = round(planned["earliestPromotionSeconds"] / interval) + 1
    assert planned["ticks"] == world.state.iterations == promotion_tick == 6
    assert [t.index for t in world.ticks] == [1, 2, 3, 4, 5, 6]
    # plan's schedule is the starting weight, then each tick's until the promotion: 0 on the tag throughout
    assert planned["schedule"] == [0, *(t.canary_weight for t in world.ticks[:-1])] == [0] * 6


def test_help_and_docs_agree_on_what_the_traffic_wait_waits_for() -> None:
    help_text = " ".join(CliRunner().invoke(cli, ["run", "--help"]).stdout.split())
    assert "(observedGeneration at the written generation, RoutesReady True, status.traffic as written)" in (
        help_text
    )
    adapters = " ".join((ROOT / "docs/adapters.md").read_text().split())
    assert "`RoutesReady=True`, and `status.traffic` equal to" in adapters

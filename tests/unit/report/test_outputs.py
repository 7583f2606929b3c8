"""Outcome -> exit code, results files within the termination budget, report, text lines, job summary."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import pytest

from step.analysis.evaluate import Verdict
from step.analysis.records import CheckRecord, EventRecord, HookRecord, TickRecord
from step.contract import RESULT_NAMES, TERMINATION_MESSAGE_BUDGET, Decision
from step.errors import ErrorInfo, ExitCode, RollbackFailed, SpecError
from step.ports import TrafficTarget, describe_traffic
from step.report.outcome import Outcome
from step.report.results import (
    fit,
    result_values,
    termination_message_size,
    write_github_output,
    write_results_dir,
)
from step.report.summary import render
from step.report.timeline import Timeline, tick_line, write_json
from step.spec.model import Analysis, Canary

CANARY = Canary(name="podinfo", namespace="test", target_name="podinfo", analysis=Analysis(threshold=5))


def outcome(**changes: object) -> Outcome:
    fields: dict[str, object] = {
        "decision": Decision.PROMOTED,
        "reason": "analysis-passed",
        "message": "Promoted podinfo-00002 after 6 analysis ticks",
        "canary_revision": "podinfo-00002",
        "primary_revision": "podinfo-00002",
        "canary_weight": 50,
        "failed_checks": 0,
        "iterations": 6,
        "traffic": "100% on podinfo-00002",
    }
    fields.update(changes)
    return Outcome(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({}, ExitCode.OK),
        ({"decision": Decision.INITIALIZED}, ExitCode.OK),
        ({"decision": Decision.SKIPPED}, ExitCode.OK),
        ({"decision": Decision.ROLLED_BACK}, ExitCode.ROLLED_BACK),
        ({"decision": Decision.FAILED}, ExitCode.INFRASTRUCTURE),
        ({"decision": Decision.FAILED, "error": ErrorInfo.of(RollbackFailed("x"))}, ExitCode.ROLLBACK_FAILED),
        ({"decision": Decision.FAILED, "error": ErrorInfo.of(SpecError("x"))}, ExitCode.USAGE),
        ({"decision": Decision.FAILED, "signal": int(signal.SIGTERM)}, ExitCode.INTERRUPTED_TERM),
        ({"decision": Decision.FAILED, "signal": int(signal.SIGINT)}, ExitCode.INTERRUPTED_INT),
    ],
)
def test_exit_codes(changes: dict[str, object], code: ExitCode) -> None:
    assert outcome(**changes).exit_code is code


def test_headline_always_says_where_traffic_is() -> None:
    text = outcome(
        decision=Decision.ROLLED_BACK, reason="failed-checks-threshold", traffic="100% on podinfo-00001"
    )
    assert text.headline().endswith("Traffic: 100% on podinfo-00001. Exit 3.")
    split = (TrafficTarget(revision_name="a", percent=10), TrafficTarget(revision_name="b", percent=90))
    assert describe_traffic(split) == "90% on b, 10% on a"


def test_results_are_one_file_per_name(tmp_path: Path) -> None:
    values = result_values(outcome(), report_path="/tmp/r.json")
    write_results_dir(tmp_path / "results", values)
    files = {p.name: p.read_text() for p in (tmp_path / "results").iterdir()}
    assert set(files) == set(RESULT_NAMES)
    assert files["decision"] == "promoted"
    assert files["canary-weight"] == "50"
    assert files["report"] == "/tmp/r.json"


def test_long_values_are_shortened_to_fit_the_termination_message_budget(tmp_path: Path) -> None:
    long = outcome(
        reason="r" * 5000,
        canary_revision="c" * 3000,
        primary_revision="p" * 300,
        message="m" * 100_000,
    )
    values = result_values(long, report_path="/very/long/" + "x" * 4000 + ".json")
    assert termination_message_size(values) <= TERMINATION_MESSAGE_BUDGET
    assert values["decision"] == "promoted"  # short values are never touched
    assert values["primary-revision"] == "p" * 300
    assert values["reason"].startswith("rrr") and values["reason"].endswith("...")
    write_results_dir(tmp_path, values)
    total = sum(len((tmp_path / n).read_bytes()) for n in RESULT_NAMES)
    assert total < TERMINATION_MESSAGE_BUDGET


def test_fit_handles_multibyte_values() -> None:
    values = fit({"a": "é" * 5000, "b": "ok"}, budget=200)
    assert termination_message_size(values) <= 200
    assert values["b"] == "ok"


def test_github_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("earlier=1\n")
    write_github_output(out, {"decision": "rolled-back", "reason": "two\nlines"})
    text = out.read_text().splitlines()
    assert text[:2] == ["earlier=1", "decision=rolled-back"]
    assert text[2].startswith("reason<<ghadelimiter_") and text[3] == "two" and text[4] == "lines"
    assert text[5] == text[2].split("<<")[1]


def _tick(index: int, at: float, weight: int, rate: float | None, *, failed: int = 0) -> TickRecord:
    checks = ()
    if rate is not None:
        checks = (
            CheckRecord(
                metric="request-success-rate",
                verdict=Verdict.PASS if rate >= 99 else Verdict.FAIL,
                value=rate,
                threshold_min=99,
            ),
            CheckRecord(metric="request-duration", verdict=Verdict.PASS, value=12.5, threshold_max=500),
        )
    return TickRecord(
        index=index,
        at=at,
        phase="Progressing",
        primary_revision="podinfo-00001",
        canary_revision="podinfo-00002",
        canary_weight=weight,
        failed_checks=failed,
        consecutive_errors=0,
        checks=checks,
        hooks=(HookRecord(name="load", type="rollout", ok=True, status=202),),
        events=(EventRecord(type="Normal", message=f"Advance podinfo.test canary weight {weight}"),),
    )


TICKS = [_tick(1, 0, 10, None), _tick(2, 1, 20, 100.0), _tick(3, 2, 20, 42.5, failed=1)]


def test_text_line_per_tick() -> None:
    line = tick_line(TICKS[2], threshold=5)
    assert "tick   3" in line and "weight  20%" in line
    assert "request-success-rate 42.50 (>= 99) FAIL" in line
    assert "request-duration 12.50 (<= 500) ok" in line
    assert "failed checks 1/5" in line


def test_timeline_prints_as_it_goes_in_text_and_json() -> None:
    text = io.StringIO()
    timeline = Timeline(canary=CANARY, stream=text)
    timeline.tick(TICKS[1])
    assert "Advance podinfo.test canary weight 20" in text.getvalue()
    js = io.StringIO()
    timeline = Timeline(canary=CANARY, stream=js, log_format="json")
    for t in TICKS:
        timeline.tick(t)
    timeline.finished(outcome())
    lines = [json.loads(x) for x in js.getvalue().splitlines()]
    assert [x["kind"] for x in lines] == ["tick", "tick", "tick", "outcome"]
    assert lines[2]["checks"][0] == {
        "metric": "request-success-rate",
        "verdict": "fail",
        "value": 42.5,
        "thresholdMin": 99,
        "thresholdMax": None,
        "message": "",
        "query": "",
    }
    assert lines[3]["exitCode"] == 0


def test_json_report(tmp_path: Path) -> None:
    timeline = Timeline(canary=CANARY, stream=io.StringIO())
    for t in TICKS:
        timeline.tick(t)
    doc = timeline.report(
        outcome(), started_wall=1_700_000_000.0, finished_wall=1_700_000_006.5, api_requests={"get": 3}
    )
    write_json(tmp_path / "report.json", doc)
    loaded = json.loads((tmp_path / "report.json").read_text())
    assert loaded["decision"] == "promoted" and loaded["exitCode"] == 0
    assert loaded["startedAt"] == "2023-11-14T22:13:20.000Z" and loaded["durationSeconds"] == 6.5
    assert [t["canaryWeight"] for t in loaded["ticks"]] == [10, 20, 20]
    assert loaded["ticks"][1]["webhooks"][0] == {
        "name": "load",
        "type": "rollout",
        "ok": True,
        "status": 202,
        "message": "",
    }
    assert loaded["apiRequests"] == {"total": 3, "byVerb": {"get": 3}}


def test_job_summary_has_a_mermaid_chart_and_the_timeline() -> None:
    md = render(
        CANARY,
        TICKS,
        outcome(decision=Decision.ROLLED_BACK, reason="failed-checks-threshold"),
        report_path="/r.json",
    )
    assert "```mermaid\nxychart-beta" in md
    assert '    x-axis ["0s", "1s", "2s"]' in md
    assert "    line [10, 20, 20]" in md
    assert "    line [100, 100, 42.5]" in md  # the first tick had no measurement: filled from the next
    assert "| decision | `rolled-back` |" in md
    assert "| exit code | 3 |" in md
    assert md.count("| Progressing |") == 3


def test_job_summary_without_ticks_or_success_rate() -> None:
    md = render(
        CANARY, [], outcome(decision=Decision.INITIALIZED, reason="initialized"), report_path="/r.json"
    )
    assert "mermaid" not in md and "initialized" in md
    md = render(CANARY, [TICKS[0]], outcome(), report_path="/r.json")
    assert md.count("    line [") == 1 and "(not measured)" in md


def test_job_summary_stays_small_for_long_runs() -> None:
    ticks = [_tick(i, float(i), 10, 99.5) for i in range(1, 2001)]
    md = render(CANARY, ticks, outcome(), report_path="/r.json")
    assert len(md.encode()) < 1024 * 1024
    assert "1800 earlier ticks in the JSON report" in md

"""What people see of a compared metric: the tick line, the report's check, the job summary's table."""

from __future__ import annotations

from step.analysis.evaluate import Verdict
from step.analysis.records import CheckRecord, TickRecord
from step.report.summary import comparison_table
from step.report.timeline import check_text, record_json

COMPARED = CheckRecord(
    metric="request-duration-vs-primary",
    verdict=Verdict.FAIL,
    value=1.39,
    threshold_max=1.1,
    message="request-duration-vs-primary: canary median 287.3 vs primary 206.1 (x1.39, p=3.6e-05): High",
    query="q-canary",
    classification="High",
    primary_query="q-primary",
)
SCORE = CheckRecord(
    metric="canary-score",
    verdict=Verdict.FAIL,
    value=0.0,
    threshold_min=75,
    message="canary score 0 < 75 (request-duration-vs-primary High)",
)
PLAIN = CheckRecord(metric="request-duration", verdict=Verdict.PASS, value=300.0, threshold_max=1000)


def _tick(*checks: CheckRecord) -> TickRecord:
    return TickRecord(
        index=3,
        at=6.0,
        phase="Progressing",
        primary_revision="podinfo-00001",
        canary_revision="podinfo-00002",
        canary_weight=10,
        failed_checks=1,
        consecutive_errors=0,
        checks=checks,
    )


def test_the_tick_line_shows_the_comparison() -> None:
    assert check_text(COMPARED) == COMPARED.message
    assert check_text(SCORE) == "canary-score 0.00 (>= 75) FAIL"
    assert check_text(PLAIN) == "request-duration 300.00 (<= 1000) ok"


def test_the_report_keeps_classification_and_primary_query_only_for_compared_metrics() -> None:
    checks = record_json(_tick(PLAIN, COMPARED))["checks"]
    assert "classification" not in checks[0]
    assert checks[1]["classification"] == "High" and checks[1]["primaryQuery"] == "q-primary"
    assert CheckRecord.from_json(COMPARED.to_json()) == COMPARED


def test_the_summary_table_of_the_last_compared_tick() -> None:
    rows = comparison_table([_tick(PLAIN, COMPARED, SCORE), _tick(PLAIN)])
    assert rows[:4] == [
        "### Canary against primary",
        "",
        "| metric | result | canary vs primary |",
        "| --- | --- | --- |",
    ]
    assert rows[4] == (
        "| request-duration-vs-primary | High | "
        "canary median 287.3 vs primary 206.1 (x1.39, p=3.6e-05): High |"
    )
    assert rows[5] == "| canary-score | 0 | canary score 0 < 75 (request-duration-vs-primary High) |"
    assert comparison_table([_tick(PLAIN)]) == []

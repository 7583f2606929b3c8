"""The evaluator judges values as Flagger does, with Flagger's texts."""

from __future__ import annotations

import pytest

from step.analysis.evaluate import Reading, Verdict, go_duration_ms, go_float, judge
from step.spec.model import Metric, OnNoData, TemplateRef


def _judge(metric: Metric, reading: Reading) -> tuple[Verdict, str]:
    j = judge(metric, reading, canary_name="podinfo", namespace="test", target_name="podinfo-svc")
    return j.verdict, j.message


SR = Metric(name="request-success-rate", threshold_min=99)
RD = Metric(name="request-duration", threshold_max=500)


@pytest.mark.parametrize(
    ("metric", "value", "verdict", "message"),
    [
        (SR, 100.0, Verdict.PASS, ""),
        (SR, 99.0, Verdict.PASS, ""),  # inclusive
        (SR, 98.999, Verdict.FAIL, "Halt podinfo.test advancement success rate 99.00% < 99%"),
        (SR, 69.1666, Verdict.FAIL, "Halt podinfo.test advancement success rate 69.17% < 99%"),
        (
            Metric(name="request-success-rate", threshold_max=99.5),
            99.6,
            Verdict.FAIL,
            "Halt podinfo.test advancement success rate 99.60% > 99.5%",
        ),
        (RD, 500.9, Verdict.PASS, ""),  # truncated to 500ms, inclusive
        (RD, 501.2, Verdict.FAIL, "Halt podinfo.test advancement request duration 501ms > 500ms"),
        (
            Metric(name="request-duration", threshold_max=1500),
            2750.0,
            Verdict.FAIL,
            "Halt podinfo.test advancement request duration 2.75s > 1.5s",
        ),
        (
            Metric(name="request-duration", threshold_min=10),
            9.99,
            Verdict.FAIL,
            "Halt podinfo.test advancement request duration 9ms < 10ms",
        ),
        (
            Metric(name="errors", query="sum(x)", threshold_max=1),
            1.5,
            Verdict.FAIL,
            "Halt podinfo.test advancement errors 1.50 > 1",
        ),
        (
            Metric(name="ratio", template_ref=TemplateRef(name="t"), threshold_min=0.5),
            0.25,
            Verdict.FAIL,
            "Halt podinfo.test advancement ratio 0.25 < 0.5",
        ),
        (Metric(name="ratio", query="q", threshold_min=0.5, threshold_max=2), 2.0, Verdict.PASS, ""),
    ],
)
def test_threshold_range(metric: Metric, value: float, verdict: Verdict, message: str) -> None:
    got_verdict, got_message = _judge(metric, Reading.of(value))
    assert got_verdict is verdict
    assert got_message == message


def test_no_values_found_is_a_failed_check_with_flaggers_texts() -> None:
    assert _judge(SR, Reading.empty()) == (
        Verdict.FAIL,
        "Halt advancement no values found for knative metric request-success-rate probably "
        "podinfo-svc.test is not receiving traffic: no values found",
    )
    assert _judge(RD, Reading.empty()) == (
        Verdict.FAIL,
        "Halt advancement no values found for knative metric request-duration probably "
        "podinfo-svc.test is not receiving traffic",
    )
    custom = Metric(name="errors", query="q", threshold_max=1)
    assert _judge(custom, Reading.empty()) == (
        Verdict.FAIL,
        "Halt advancement no values found for custom metric: errors: no values found",
    )


def test_on_no_data_ignore_is_a_pass_with_a_note() -> None:
    metric = Metric(name="request-success-rate", threshold_min=99, on_no_data=OnNoData.IGNORE)
    verdict, message = _judge(metric, Reading.empty())
    assert verdict is Verdict.IGNORED
    assert "ignore" in message


def test_provider_errors_are_errors_not_failures() -> None:
    assert _judge(SR, Reading.failed("connection refused")) == (
        Verdict.ERROR,
        "Prometheus query failed: connection refused",
    )
    custom = Metric(name="errors", template_ref=TemplateRef(name="t"), threshold_max=1)
    assert _judge(custom, Reading.failed("bad_data")) == (
        Verdict.ERROR,
        "Metric query failed for errors: bad_data",
    )


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (1, "1ms"),
        (512, "512ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (60_000, "1m0s"),
        (61_250, "1m1.25s"),
        (3_600_000, "1h0m0s"),
    ],
)
def test_go_duration_strings(ms: int, text: str) -> None:
    assert go_duration_ms(ms) == text


@pytest.mark.parametrize(("value", "text"), [(99.0, "99"), (99.5, "99.5"), (0.1, "0.1"), (-3.0, "-3")])
def test_go_float(value: float, text: str) -> None:
    assert go_float(value) == text

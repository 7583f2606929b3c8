"""The statistical judge (step.analysis.judge): the U test against published worked examples, then
the classification, the minimum samples and the score."""

from __future__ import annotations

import pytest

import step.analysis.judge as judge_module
from step.analysis.evaluate import Reading
from step.analysis.judge import (
    Classification,
    Direction,
    ScoreVerdict,
    classify,
    mann_whitney_u,
    min_samples,
    score,
)
from step.analysis.state import Reason
from step.contract import Decision
from step.spec.model import Metric, OnNoData
from tests.unit.analysis.test_machine import RD, World, seed

# SciPy's documentation of mannwhitneyu (ages of male and female students, after Conover):
# U1 = 17, exact two-sided p = 0.1111..., asymptotic (with continuity correction) p = 0.11134688...
MALES = [19.0, 22.0, 16.0, 29.0, 24.0]
FEMALES = [20.0, 11.0, 17.0, 12.0]

# R's ?wilcox.test (Hollander & Wolfe, p. 69): W = 35, one-sided exact p = 0.1272 (two-sided 0.2544).
X_HW = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
Y_HW = [1.15, 0.88, 0.90, 0.74, 1.21]


def test_exact_scipy_example() -> None:
    result = mann_whitney_u(MALES, FEMALES)
    assert result.exact
    assert result.u == 17
    assert result.p_value == pytest.approx(1 / 9)


def test_asymptotic_scipy_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(judge_module, "EXACT_MAX_PAIRS", 0)
    result = mann_whitney_u(MALES, FEMALES)
    assert not result.exact
    assert result.p_value == pytest.approx(0.11134688653314041, rel=1e-9)


def test_exact_r_example() -> None:
    result = mann_whitney_u(X_HW, Y_HW)
    assert result.u == 35
    assert result.p_value / 2 == pytest.approx(0.1272, abs=5e-5)


def test_u_of_y_is_the_complement_and_p_is_symmetric() -> None:
    forward, backward = mann_whitney_u(X_HW, Y_HW), mann_whitney_u(Y_HW, X_HW)
    assert forward.u + backward.u == len(X_HW) * len(Y_HW)
    assert forward.p_value == pytest.approx(backward.p_value)


def test_ties_use_midranks_and_the_tie_corrected_normal_approximation() -> None:
    # Every value tied: no evidence at all.
    assert mann_whitney_u([1.0] * 6, [1.0] * 6).p_value == 1.0
    # Two tie groups fully separated: U = 36 of 36, p tiny but the test is not exact.
    separated = mann_whitney_u([2.0] * 6, [1.0] * 6)
    assert separated.u == 36 and not separated.exact
    # sigma^2 = 36/12 * (13 - 2 * (6^3 - 6) / (12 * 11)) = 29.45; z = (18 - 0.5) / 5.43 = 3.22
    assert separated.p_value == pytest.approx(0.0012619, rel=1e-4)


def test_empty_sample_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        mann_whitney_u([], [1.0])


def test_min_samples_is_the_smallest_size_that_can_reject() -> None:
    # 2 / C(8, 4) = 0.0286 >= 0.02, 2 / C(10, 5) = 0.0079 < 0.02
    assert min_samples(0.98) == 5
    assert min_samples(0.95) == 4  # 2 / C(6, 3) = 0.1, 2 / C(8, 4) = 0.029 < 0.05


PRIMARY = [100.0, 102.0, 98.0, 101.0, 99.0, 100.5, 101.5, 99.5, 100.2, 99.8]
SLOWER = [v * 1.4 for v in PRIMARY]


def test_a_forty_percent_slower_canary_is_high_and_fails_an_increase_metric() -> None:
    result = classify(SLOWER, PRIMARY, direction=Direction.INCREASE)
    assert result.classification is Classification.HIGH
    assert result.ratio == pytest.approx(1.4)
    assert result.p_value is not None and result.p_value < 0.02
    assert "canary median 140" in result.text and "High" in result.text


def test_within_the_allowed_effect_size_is_a_pass() -> None:
    result = classify(SLOWER, PRIMARY, direction=Direction.INCREASE, allowed_increase=1.5)
    assert result.classification is Classification.PASS


def test_a_move_in_the_allowed_direction_is_a_pass() -> None:
    # A success rate that went up; the metric only may not go down.
    assert classify(SLOWER, PRIMARY, direction=Direction.DECREASE).classification is Classification.PASS
    lower = [v * 0.5 for v in PRIMARY]
    assert classify(lower, PRIMARY, direction=Direction.DECREASE).classification is Classification.LOW
    assert classify(lower, PRIMARY, direction=Direction.EITHER).classification is Classification.LOW


def test_identical_samples_pass() -> None:
    shuffled = PRIMARY[::-1]
    assert classify(shuffled, PRIMARY, direction=Direction.EITHER).classification is Classification.PASS


def test_too_few_samples_is_nodata_not_a_guess() -> None:
    result = classify(SLOWER[:3], PRIMARY, direction=Direction.INCREASE)
    assert result.classification is Classification.NODATA
    assert result.needed == 5
    assert "not enough data: 3 canary and 10 primary samples, 5 of each needed" in result.text
    assert classify(SLOWER, PRIMARY, direction=Direction.INCREASE, needed=12).classification is (
        Classification.NODATA
    )


def test_score_against_kayenta_thresholds() -> None:
    p, h, n = Classification.PASS, Classification.HIGH, Classification.NODATA
    assert score([p, p]).verdict is ScoreVerdict.PASS
    assert score([p, p, p, h]).value == 75.0
    assert score([p, p, p, h]).verdict is ScoreVerdict.MARGINAL
    assert score([p, h]).verdict is ScoreVerdict.FAIL
    assert score([p, n]).verdict is ScoreVerdict.PASS  # NoData is left out
    assert score([n]).verdict is ScoreVerdict.NODATA
    assert score([p, h], pass_threshold=50).verdict is ScoreVerdict.PASS


# ----------------------------------------------------------------------------- in the state machine


RD_VS = Metric(name="request-duration-vs-primary", threshold_max=1.1, interval="1m")


def _sampled(canary_factor: float, *, canary_count: int = 10) -> Reading:
    primary = tuple(PRIMARY)
    canary = tuple(v * canary_factor for v in PRIMARY)[:canary_count]
    return Reading.sampled(canary, primary, query="q-canary", primary_query="q-primary")


def test_a_slower_canary_under_a_passing_absolute_threshold_is_rolled_back_by_the_score() -> None:
    def readings(metric: Metric, tick: int) -> Reading:
        return _sampled(1.4) if metric.is_relative else Reading.of(300.0)  # 300 ms <= 500: passes

    world = World(canary=seed(metrics=(RD, RD_VS)), readings=readings)
    done = world.run()
    assert (done.decision, done.reason) == (Decision.ROLLED_BACK, Reason.FAILED_CHECKS)
    tick = next(t for t in world.ticks if any(c.classification for c in t.checks))
    by_metric = {c.metric: c for c in tick.checks}
    assert by_metric["request-duration"].verdict.value == "pass"
    compared = by_metric["request-duration-vs-primary"]
    assert compared.classification == "High" and compared.value == pytest.approx(1.4)
    assert compared.primary_query == "q-primary"
    assert by_metric["canary-score"].value == 0 and by_metric["canary-score"].verdict.value == "fail"
    assert any("advancement canary score 0 < 75" in m for m in world.messages())


def test_an_identical_canary_is_promoted_with_a_score_of_100() -> None:
    def readings(metric: Metric, tick: int) -> Reading:
        return _sampled(1.0) if metric.is_relative else Reading.of(300.0)

    world = World(canary=seed(metrics=(RD, RD_VS)), readings=readings)
    assert world.run().decision is Decision.PROMOTED
    scores = [c.value for t in world.ticks for c in t.checks if c.metric == "canary-score"]
    assert scores and set(scores) == {100.0}


def test_too_few_canary_samples_follow_on_no_data() -> None:
    ignored = Metric(name="request-duration-vs-primary", threshold_max=1.1, on_no_data=OnNoData.IGNORE)
    world = World(canary=seed(metrics=(ignored,)), readings=lambda m, t: _sampled(1.4, canary_count=3))
    assert world.run().decision is Decision.PROMOTED
    assert any("not enough data: 3 canary and 10 primary samples" in m for m in world.messages())
    failing = Metric(
        name="request-duration-vs-primary", threshold_max=1.1, on_no_data=OnNoData.FAIL_IMMEDIATELY
    )
    world = World(canary=seed(metrics=(failing,)), readings=lambda m, t: _sampled(1.0, canary_count=3))
    assert world.run().decision is Decision.ROLLED_BACK


def test_a_misconfigured_compared_metric_is_an_error_not_a_failed_check() -> None:
    bad = Metric(name="request-duration-vs-primary", threshold_max=0.5)
    world = World(canary=seed(metrics=(bad,)), readings=lambda m, t: _sampled(1.0))
    done = world.run()
    assert done.decision is Decision.FAILED
    assert any(
        "thresholdRange.max 0.5 of a -vs-primary metric is the allowed ratio" in m for m in world.messages()
    )

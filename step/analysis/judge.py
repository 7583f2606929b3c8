"""The statistical judge: the canary's samples against the primary's, as Kayenta's NetflixACAJudge does.

Owns: the two-sided Mann-Whitney U test (exact distribution for small samples without ties, the normal
approximation with tie and continuity correction otherwise, as R's `wilcox.test` and SciPy's
`mannwhitneyu` compute them); the classification of one metric (Pass, High, Low or NoData) at a
stated confidence and allowed effect size, with the direction the metric may not move in; the
minimum number of samples a test at that confidence can ever reject with (`min_samples`); and the
score of a tick's classifications against Kayenta-style pass and marginal thresholds; and
`relative_check`, the one reading of a `-vs-primary` metric's configuration from what a pruning CRD
keeps (its name, thresholdRange and templateVariables).
Written here rather than taken from SciPy: the test is ~60 lines, and SciPy (with NumPy) would add
~100 MB to an image whose whole Python environment is smaller than that.
Must not: do I/O, read the clock, query anything, or count failed checks (the state machine does).
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from step.spec.durations import format_duration, parse_duration
from step.spec.model import REQUEST_DURATION_VS_PRIMARY, SUCCESS_RATE_VS_PRIMARY, Metric

# Kayenta's NetflixACAJudge classifies at a 98 % confidence level.
DEFAULT_CONFIDENCE = 0.98
# Kayenta's default scoreThresholds for a canary config (pass 95, marginal 75).
DEFAULT_SCORE_PASS = 95.0
DEFAULT_SCORE_MARGINAL = 75.0
# Above this many pairs (m x n), or with ties, the normal approximation is used.
EXACT_MAX_PAIRS = 400


class Direction(enum.StrEnum):
    """Which way the canary may not move: latency may not go up, a success rate may not go down."""

    INCREASE = "increase"  # only High fails
    DECREASE = "decrease"  # only Low fails
    EITHER = "either"  # High and Low fail


# Per metric, ours: the keys of templateVariables the judge reads (everything else is the query's).
VARIABLES = ("direction", "confidence", "step", "minSamples", "scorePass", "scoreMarginal")
# Steps per window when templateVariables.step is not given: 6 samples (both ends), 5 needed at 98 %.
# Each sample is a rate over its own step (step.metrics.measure), so a step must span two scrapes.
DEFAULT_SAMPLES_PER_WINDOW = 5


class Classification(enum.StrEnum):
    PASS = "Pass"
    HIGH = "High"
    LOW = "Low"
    NODATA = "NoData"


@dataclass(frozen=True, kw_only=True)
class UTest:
    """The Mann-Whitney U test of x against y."""

    u: float  # U of x: the number of pairs (x_i, y_j) with x_i > y_j, ties counting one half
    p_value: float  # two-sided
    exact: bool


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Mid-ranks (1-based) of `values`, and the sizes of the tie groups."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = mid
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@cache
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orderings give each U = 0..m*n (no ties)."""
    if m == 0 or n == 0:
        return (1,)
    with_x_last = _u_counts(m - 1, n)  # the largest value is an x: it beats all n y's
    with_y_last = _u_counts(m, n - 1)
    counts = [0] * (m * n + 1)
    for u, c in enumerate(with_x_last):
        counts[u + n] += c
    for u, c in enumerate(with_y_last):
        counts[u] += c
    return tuple(counts)


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> UTest:
    """Two-sided Mann-Whitney U test. Both samples must be non-empty."""
    m, n = len(x), len(y)
    if m == 0 or n == 0:
        raise ValueError("the Mann-Whitney U test needs at least one value in each sample")
    ranks, ties = _ranks([*x, *y])
    u = sum(ranks[:m]) - m * (m + 1) / 2
    if not ties and m * n <= EXACT_MAX_PAIRS:
        counts = _u_counts(m, n)
        total = math.comb(m + n, m)
        k = round(u)
        below = sum(counts[: k + 1]) / total
        above = sum(counts[k:]) / total
        return UTest(u=u, p_value=min(1.0, 2 * min(below, above)), exact=True)
    big_n = m + n
    tie_term = sum(t**3 - t for t in ties) / (big_n * (big_n - 1))
    variance = m * n / 12 * ((big_n + 1) - tie_term)
    if variance <= 0:  # every value equal: no evidence of any difference
        return UTest(u=u, p_value=1.0, exact=False)
    delta = u - m * n / 2
    z = (abs(delta) - 0.5) / math.sqrt(variance)
    return UTest(u=u, p_value=min(1.0, 2 * _normal_sf(max(z, 0.0))), exact=False)


def min_samples(confidence: float = DEFAULT_CONFIDENCE) -> int:
    """The fewest samples per revision with which the test can reject at `confidence` at all:
    the smallest k with 2 / C(2k, k) < 1 - confidence (the most extreme ordering of k against k)."""
    alpha = 1 - confidence
    k = 1
    while 2 / math.comb(2 * k, k) >= alpha:
        k += 1
    return k


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """One metric's classification of the canary against the primary."""

    classification: Classification
    canary_median: float | None
    primary_median: float | None
    ratio: float | None  # mean(canary) / mean(primary): Kayenta's effect size
    p_value: float | None
    canary_samples: int
    primary_samples: int
    needed: int  # the minimum samples per revision

    @property
    def text(self) -> str:
        """`canary 120 vs primary 85 (x1.41, p=0.0004): High`, or why there is no data."""
        if self.classification is Classification.NODATA:
            return (
                f"not enough data: {self.canary_samples} canary and {self.primary_samples} primary "
                f"samples, {self.needed} of each needed: NoData"
            )
        assert self.canary_median is not None and self.primary_median is not None
        ratio = "x?" if self.ratio is None else f"x{self.ratio:.3g}"
        return (
            f"canary median {self.canary_median:.4g} vs primary {self.primary_median:.4g} "
            f"({ratio}, p={self.p_value:.2g}): {self.classification}"
        )


def _ratio(canary: Sequence[float], primary: Sequence[float]) -> float | None:
    c, p = statistics.fmean(canary), statistics.fmean(primary)
    if p == 0:
        return 1.0 if c == 0 else None
    return c / p


def classify(
    canary: Sequence[float],
    primary: Sequence[float],
    *,
    direction: Direction,
    confidence: float = DEFAULT_CONFIDENCE,
    allowed_increase: float = 1.0,
    allowed_decrease: float = 1.0,
    needed: int | None = None,
) -> Comparison:
    """Classify the canary's samples against the primary's.

    High: the canary is significantly above the primary (p < 1 - confidence, the shift of location
    positive) and its mean more than `allowed_increase` times the primary's; Low likewise below
    `allowed_decrease`. A classification in a direction the metric may move in is a Pass. Fewer than
    `needed` samples of either revision (default `min_samples(confidence)`) is NoData.
    """
    need = max(needed or 0, min_samples(confidence))
    if len(canary) < need or len(primary) < need:
        return Comparison(
            classification=Classification.NODATA,
            canary_median=statistics.median(canary) if canary else None,
            primary_median=statistics.median(primary) if primary else None,
            ratio=None,
            p_value=None,
            canary_samples=len(canary),
            primary_samples=len(primary),
            needed=need,
        )
    test = mann_whitney_u(canary, primary)
    ratio = _ratio(canary, primary)
    significant = test.p_value < 1 - confidence
    shift = test.u - len(canary) * len(primary) / 2  # > 0: the canary tends to be higher
    result = Classification.PASS
    if significant and shift > 0 and (ratio is None or ratio > allowed_increase):
        result = Classification.HIGH
    elif significant and shift < 0 and ratio is not None and ratio < allowed_decrease:
        result = Classification.LOW
    if (result is Classification.HIGH and direction is Direction.DECREASE) or (
        result is Classification.LOW and direction is Direction.INCREASE
    ):
        result = Classification.PASS
    return Comparison(
        classification=result,
        canary_median=statistics.median(canary),
        primary_median=statistics.median(primary),
        ratio=ratio,
        p_value=test.p_value,
        canary_samples=len(canary),
        primary_samples=len(primary),
        needed=need,
    )


class ScoreVerdict(enum.StrEnum):
    PASS = "pass"
    MARGINAL = "marginal"
    FAIL = "fail"
    NODATA = "nodata"


@dataclass(frozen=True, kw_only=True)
class Score:
    value: float | None  # 0-100; None when no metric had data
    verdict: ScoreVerdict


def score(
    classifications: Sequence[Classification],
    *,
    pass_threshold: float = DEFAULT_SCORE_PASS,
    marginal_threshold: float = DEFAULT_SCORE_MARGINAL,
) -> Score:
    """Kayenta's score: the percentage of metrics with data that passed, read against the thresholds
    (>= pass: pass; >= marginal: marginal; below: fail). NoData metrics are left out, as in Kayenta."""
    judged = [c for c in classifications if c is not Classification.NODATA]
    if not judged:
        return Score(value=None, verdict=ScoreVerdict.NODATA)
    value = 100.0 * sum(c is Classification.PASS for c in judged) / len(judged)
    if value >= pass_threshold:
        return Score(value=value, verdict=ScoreVerdict.PASS)
    if value >= marginal_threshold:
        return Score(value=value, verdict=ScoreVerdict.MARGINAL)
    return Score(value=value, verdict=ScoreVerdict.FAIL)


@dataclass(frozen=True, kw_only=True)
class RelativeCheck:
    """How one `-vs-primary` metric is compared, resolved from the spec."""

    direction: Direction
    confidence: float
    allowed_increase: float  # the canary's mean may be this many times the primary's (thresholdRange.max)
    allowed_decrease: float  # ... and at least this many times (thresholdRange.min)
    window_seconds: float  # the metric's interval: samples over the last window
    step_seconds: float
    min_samples: int  # per revision, below it: NoData
    score_pass: float
    score_marginal: float

    @property
    def samples_per_window(self) -> int:
        return int(self.window_seconds // self.step_seconds) + 1

    @property
    def text(self) -> str:
        """For plan: `latency may not go up more than x1.1 at 98 % confidence; 7 samples (every 10s
        over 1m), at least 5 per revision`."""
        moves = {
            Direction.INCREASE: f"may not go up by more than x{self.allowed_increase:g}",
            Direction.DECREASE: f"may not go down below x{self.allowed_decrease:g}",
            Direction.EITHER: (
                f"may not go up by more than x{self.allowed_increase:g} "
                f"nor down below x{self.allowed_decrease:g}"
            ),
        }[self.direction]
        return (
            f"canary vs primary (Mann-Whitney U): {moves} at {self.confidence:.4g} confidence; "
            f"{self.samples_per_window} samples per revision (every {format_duration(self.step_seconds)} "
            f"over {format_duration(self.window_seconds)}), at least {self.min_samples} needed; "
            f"score pass {self.score_pass:g}, marginal {self.score_marginal:g}"
        )


def _number(variables: dict[str, str], key: str, default: float, *, low: float, high: float) -> float:
    raw = variables.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"templateVariables.{key} {raw!r} is not a number") from None
    if not low <= value <= high:
        raise ValueError(f"templateVariables.{key} {raw} is outside {low:g}..{high:g}")
    return value


def relative_check(metric: Metric) -> RelativeCheck:
    """The comparison `metric` asks for (it must be `is_relative`). ValueError says what is wrong.

    thresholdRange is the allowed effect size, as a ratio of the canary's mean to the primary's: max
    (>= 1) for an increase, min (<= 1) for a decrease. The direction is the built-in's (duration may
    not go up, success rate may not go down), else `templateVariables.direction`, else the bound given.
    """
    variables = dict(metric.template_variables)
    lo, hi = metric.threshold_min, metric.threshold_max
    if hi is not None and hi < 1:
        raise ValueError(
            f"thresholdRange.max {hi:g} of a -vs-primary metric is the allowed ratio canary/primary: "
            "at least 1 (e.g. 1.1 allows 10 % more)"
        )
    if lo is not None and not 0 <= lo <= 1:
        raise ValueError(
            f"thresholdRange.min {lo:g} of a -vs-primary metric is the allowed ratio canary/primary: "
            "between 0 and 1 (e.g. 0.99 allows 1 % less)"
        )
    if "direction" in variables:
        try:
            direction = Direction(variables["direction"])
        except ValueError:
            choices = ", ".join(d.value for d in Direction)
            raise ValueError(
                f"templateVariables.direction {variables['direction']!r} is not one of {choices}"
            ) from None
    elif metric.name == REQUEST_DURATION_VS_PRIMARY:
        direction = Direction.INCREASE
    elif metric.name == SUCCESS_RATE_VS_PRIMARY:
        direction = Direction.DECREASE
    elif hi is not None and lo is None:
        direction = Direction.INCREASE
    elif lo is not None and hi is None:
        direction = Direction.DECREASE
    else:
        direction = Direction.EITHER
    try:
        window = parse_duration(metric.interval)
    except ValueError as err:
        raise ValueError(f"interval: {err}") from None
    if window <= 0:
        raise ValueError(f"interval {metric.interval!r} must be positive to take samples over it")
    if "step" in variables:
        try:
            step = parse_duration(variables["step"])
        except ValueError as err:
            raise ValueError(f"templateVariables.step: {err}") from None
        if not 0 < step <= window:
            raise ValueError(
                f"templateVariables.step {variables['step']!r} must be positive and at most the "
                f"interval {metric.interval!r}"
            )
    else:
        step = window / DEFAULT_SAMPLES_PER_WINDOW
    confidence = _number(variables, "confidence", DEFAULT_CONFIDENCE, low=0.5, high=0.9999)
    floor = min_samples(confidence)
    needed = int(_number(variables, "minSamples", floor, low=1, high=10_000))
    score_pass = _number(variables, "scorePass", DEFAULT_SCORE_PASS, low=0, high=100)
    score_marginal = _number(variables, "scoreMarginal", DEFAULT_SCORE_MARGINAL, low=0, high=100)
    if score_marginal > score_pass:
        raise ValueError(
            f"templateVariables.scoreMarginal {score_marginal:g} is above scorePass {score_pass:g}"
        )
    check = RelativeCheck(
        direction=direction,
        confidence=confidence,
        allowed_increase=1.0 if hi is None else hi,
        allowed_decrease=1.0 if lo is None else lo,
        window_seconds=window,
        step_seconds=step,
        min_samples=max(floor, needed),
        score_pass=score_pass,
        score_marginal=score_marginal,
    )
    if check.samples_per_window < check.min_samples:
        raise ValueError(
            f"{check.samples_per_window} samples (every {format_duration(step)} over "
            f"{format_duration(window)}) can never reach the {check.min_samples} needed at "
            f"{confidence:g} confidence: lower templateVariables.step or lengthen the interval"
        )
    return check


def compare(metric: Metric, canary: Sequence[float], primary: Sequence[float]) -> Comparison:
    """Classify `metric`'s samples as its configuration says. ValueError: a bad configuration."""
    check = relative_check(metric)
    return classify(
        canary,
        primary,
        direction=check.direction,
        confidence=check.confidence,
        allowed_increase=check.allowed_increase,
        allowed_decrease=check.allowed_decrease,
        needed=check.min_samples,
    )


# The name a tick's score is recorded under, beside the metrics it scores.
SCORE_METRIC = "canary-score"


@dataclass(frozen=True, kw_only=True)
class TickScore:
    """A tick's score over its compared metrics, and whether it is a failed check."""

    score: Score
    pass_threshold: float
    marginal_threshold: float
    failed: bool
    message: str


def tick_score(judged: Sequence[tuple[Metric, Classification]], *, promoting: bool) -> TickScore | None:
    """Kayenta's rule for one interval: a score below marginal fails; a marginal score fails only
    where the run would end (`promoting`: the tick that would promote must reach pass). The
    thresholds are the strictest any compared metric asks for. None: no compared metric this tick."""
    if not judged:
        return None
    checks = []
    for metric, _ in judged:
        try:
            checks.append(relative_check(metric))
        except ValueError:
            continue  # misconfigured metrics were errors, never classified
    pass_threshold = max((c.score_pass for c in checks), default=DEFAULT_SCORE_PASS)
    marginal_threshold = max((c.score_marginal for c in checks), default=DEFAULT_SCORE_MARGINAL)
    result = score(
        [c for _, c in judged], pass_threshold=pass_threshold, marginal_threshold=marginal_threshold
    )
    which = ", ".join(f"{m.name} {c}" for m, c in judged)
    if result.value is None:
        return TickScore(
            score=result,
            pass_threshold=pass_threshold,
            marginal_threshold=marginal_threshold,
            failed=False,
            message=f"canary score: no compared metric had data ({which})",
        )
    failed = result.verdict is ScoreVerdict.FAIL or (result.verdict is ScoreVerdict.MARGINAL and promoting)
    bound = marginal_threshold if result.verdict is ScoreVerdict.FAIL else pass_threshold
    if failed:
        message = f"canary score {result.value:.0f} < {bound:g} ({which})"
    else:
        message = f"canary score {result.value:.0f}: {result.verdict} ({which})"
    return TickScore(
        score=result,
        pass_threshold=pass_threshold,
        marginal_threshold=marginal_threshold,
        failed=failed,
        message=message,
    )

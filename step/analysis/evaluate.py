"""The evaluator: judges one measured value against a metric's threshold, as Flagger does.

Owns: `thresholdRange` semantics (min fails when val < min, max fails when val > max, both bounds
inclusive-OK), request-duration in milliseconds truncated like Go's `time.Duration`, the
"no values found" policy (`onNoData`, with its grace while the canary's series is new:
`in_no_data_grace`), and Flagger's exact halt texts for each kind of metric. A `-vs-primary` metric's
samples go to the statistical judge (`step.analysis.judge`); this module applies onNoData to its
NoData the same way.
Providers only measure (`step.metrics`); this module only judges.
Must not: do I/O, read the clock, or count failed checks (the state machine does).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from step.analysis.judge import Classification, Comparison, compare
from step.spec.model import REQUEST_DURATION, SUCCESS_RATE, Metric, OnNoData

# Flagger's metrics provider name for Knative targets, used in its "no values found" text.
KNATIVE_OBSERVER = "knative"


class Verdict(enum.StrEnum):
    """One measurement's judgement (after Argo Rollouts: error is never a failure)."""

    PASS = "pass"
    FAIL = "fail"  # a failed check: the value broke the threshold, or no data under onNoData: fail
    IGNORED = "ignored"  # no data under onNoData: ignore, or within the grace: a pass with a note
    ERROR = "error"  # the provider could not answer: counted apart from failed checks


@dataclass(frozen=True, kw_only=True)
class Reading:
    """What a provider returned for one metric: a value, "no values found", or an error."""

    value: float | None = None
    no_data: bool = False
    error: str = ""
    query: str = ""
    # A compared (`-vs-primary`) metric's samples: the canary's (`query`) and the primary's.
    canary_samples: tuple[float, ...] | None = None
    primary_samples: tuple[float, ...] = ()
    primary_query: str = ""

    @classmethod
    def sampled(
        cls, canary: tuple[float, ...], primary: tuple[float, ...], *, query: str, primary_query: str
    ) -> Reading:
        return cls(canary_samples=canary, primary_samples=primary, query=query, primary_query=primary_query)

    @classmethod
    def of(cls, value: float, *, query: str = "") -> Reading:
        return cls(value=value, query=query)

    @classmethod
    def empty(cls, message: str = "no values found", *, query: str = "") -> Reading:
        return cls(no_data=True, error=message, query=query)

    @classmethod
    def failed(cls, message: str, *, query: str = "") -> Reading:
        return cls(error=message, query=query)


@dataclass(frozen=True, kw_only=True)
class Judgement:
    verdict: Verdict
    message: str  # the event text (Flagger's where Flagger has one), "" for a plain pass
    event: bool = True  # False: the tick's record says it, no Kubernetes Event (the no-data grace)
    comparison: Comparison | None = None  # a compared metric's classification


def go_float(value: float) -> str:
    """Go's `%v` for a float64 (shortest representation; integers without a decimal point)."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e21:
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def bounds_text(threshold_min: float | None, threshold_max: float | None, *, unbounded: str) -> str:
    """A metric's thresholdRange for people: `>= 99`, `<= 500`, `>= 1 and <= 5`, else `unbounded`."""
    bounds = []
    if threshold_min is not None:
        bounds.append(f">= {go_float(threshold_min)}")
    if threshold_max is not None:
        bounds.append(f"<= {go_float(threshold_max)}")
    return " and ".join(bounds) or unbounded


def go_duration_ms(milliseconds: int) -> str:
    """Go's `time.Duration.String()` for a whole number of milliseconds (`512ms`, `1.5s`, `1m0s`)."""
    if milliseconds == 0:
        return "0s"
    sign = "-" if milliseconds < 0 else ""
    ms = abs(milliseconds)
    if ms < 1000:
        return f"{sign}{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    sec = str(seconds) if millis == 0 else f"{seconds}.{millis:03d}".rstrip("0")
    if hours:
        return f"{sign}{hours}h{minutes}m{sec}s"
    if minutes:
        return f"{sign}{minutes}m{sec}s"
    return f"{sign}{sec}s"


def truncate_ms(value: float) -> int:
    """`time.Duration(int64(value))`: Go truncates toward zero."""
    return int(value)


# Prometheus's default scrape interval in most installations (kube-prometheus, Knative's and
# Flagger's own charts scrape every 15-30 s): `run --scrape-interval` says what it really is.
DEFAULT_SCRAPE_INTERVAL = 15.0


@dataclass(frozen=True, kw_only=True)
class NoDataGrace:
    """How long the canary has had traffic, for the `onNoData: fail` grace (see `in_no_data_grace`)."""

    traffic_seconds: float  # since the canary first got traffic in this analysis
    first_measuring_tick: bool  # no tick has measured since the canary first got traffic
    scrape_interval: float = DEFAULT_SCRAPE_INTERVAL

    @property
    def applies(self) -> bool:
        return self.first_measuring_tick or self.traffic_seconds < 2 * self.scrape_interval


def in_no_data_grace(grace: NoDataGrace | None) -> bool:
    """No data is not yet a failed check: on the first tick that measures after the canary first got
    traffic, and while it has had traffic for less than two scrapes (a rate over the metric's window
    needs two samples of the canary's new series). `None`: the canary has had no traffic."""
    return grace is not None and grace.applies


def judge(
    metric: Metric,
    reading: Reading,
    *,
    canary_name: str,
    namespace: str,
    target_name: str,
    grace: NoDataGrace | None = None,
) -> Judgement:
    """Judge one reading of `metric`. The texts are Flagger's (scheduler_metrics.go)."""
    if metric.is_relative and reading.canary_samples is not None:
        return _judge_compared(metric, reading, grace=grace)
    who = f"{canary_name}.{namespace}"
    builtin = metric.is_builtin
    if reading.no_data:
        if metric.on_no_data is OnNoData.IGNORE:
            return Judgement(
                verdict=Verdict.IGNORED,
                message=f"No values found for metric {metric.name}: ignored (onNoData: ignore)",
            )
        if metric.on_no_data is OnNoData.FAIL and grace is not None and in_no_data_grace(grace):
            return Judgement(
                verdict=Verdict.IGNORED,
                message=(
                    f"No values found for metric {metric.name} yet: the canary has had traffic for "
                    f"{grace.traffic_seconds:.0f}s, less than two scrapes of its new series; not counted "
                    "(onNoData: fail counts it from the next tick, fail-immediately at once)"
                ),
                event=False,
            )
        if builtin and metric.name == SUCCESS_RATE:
            text = (
                f"Halt advancement no values found for {KNATIVE_OBSERVER} metric {metric.name} "
                f"probably {target_name}.{namespace} is not receiving traffic: {reading.error}"
            )
        elif builtin:
            text = (
                f"Halt advancement no values found for {KNATIVE_OBSERVER} metric {metric.name} "
                f"probably {target_name}.{namespace} is not receiving traffic"
            )
        else:
            text = f"Halt advancement no values found for custom metric: {metric.name}: {reading.error}"
        return Judgement(verdict=Verdict.FAIL, message=text)
    if reading.value is None:
        if builtin:
            return Judgement(verdict=Verdict.ERROR, message=f"Prometheus query failed: {reading.error}")
        text = f"Metric query failed for {metric.name}: {reading.error}"
        return Judgement(verdict=Verdict.ERROR, message=text)

    value = reading.value
    lo, hi = metric.threshold_min, metric.threshold_max
    if builtin and metric.name == SUCCESS_RATE:
        if lo is not None and value < lo:
            return _fail(f"Halt {who} advancement success rate {value:.2f}% < {go_float(lo)}%")
        if hi is not None and value > hi:
            return _fail(f"Halt {who} advancement success rate {value:.2f}% > {go_float(hi)}%")
        return _PASS
    if builtin and metric.name == REQUEST_DURATION:
        val_ms = truncate_ms(value)
        if lo is not None and val_ms < truncate_ms(lo):
            return _fail(
                f"Halt {who} advancement request duration {go_duration_ms(val_ms)} "
                f"< {go_duration_ms(truncate_ms(lo))}"
            )
        if hi is not None and val_ms > truncate_ms(hi):
            return _fail(
                f"Halt {who} advancement request duration {go_duration_ms(val_ms)} "
                f"> {go_duration_ms(truncate_ms(hi))}"
            )
        return _PASS
    if lo is not None and value < lo:
        return _fail(f"Halt {who} advancement {metric.name} {value:.2f} < {go_float(lo)}")
    if hi is not None and value > hi:
        return _fail(f"Halt {who} advancement {metric.name} {value:.2f} > {go_float(hi)}")
    return _PASS


_PASS = Judgement(verdict=Verdict.PASS, message="")


def _judge_compared(metric: Metric, reading: Reading, *, grace: NoDataGrace | None) -> Judgement:
    """A `-vs-primary` metric: Pass is a pass; High or Low is FAIL with its comparison (the tick's
    score decides whether that is a failed check: the state machine asks `judge.score`); NoData
    follows onNoData as "no values found" does."""
    assert reading.canary_samples is not None
    try:
        comparison = compare(metric, reading.canary_samples, reading.primary_samples)
    except ValueError as err:
        return Judgement(verdict=Verdict.ERROR, message=f"Metric {metric.name} is misconfigured: {err}")
    text = f"{metric.name}: {comparison.text}"
    if comparison.classification is Classification.PASS:
        return Judgement(verdict=Verdict.PASS, message=text, comparison=comparison)
    if comparison.classification is not Classification.NODATA:
        return Judgement(verdict=Verdict.FAIL, message=text, comparison=comparison)
    if metric.on_no_data is OnNoData.IGNORE:
        return Judgement(
            verdict=Verdict.IGNORED, message=f"{text}: ignored (onNoData: ignore)", comparison=comparison
        )
    if metric.on_no_data is OnNoData.FAIL and grace is not None and in_no_data_grace(grace):
        return Judgement(
            verdict=Verdict.IGNORED,
            message=f"{text}: not counted yet, the canary has had traffic for {grace.traffic_seconds:.0f}s",
            comparison=comparison,
        )
    return Judgement(verdict=Verdict.FAIL, message=f"Halt advancement {text}", comparison=comparison)


def _fail(message: str) -> Judgement:
    return Judgement(verdict=Verdict.FAIL, message=message)

"""Measuring a metric: one rule for the query (run and plan), the provider chosen without fallback."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from step.analysis.evaluate import Reading
from step.cli import _common
from step.errors import MetricError, NoValuesFound
from step.metrics.measure import measure, render_metric, uses_metrics_server
from step.metrics.queries import TemplateError
from step.spec.loader import LoadedSpec
from step.spec.model import Analysis, Canary, Metric, MetricTemplate, TemplateRef

TEMPLATE = MetricTemplate(
    name="errors", namespace="test", provider_type="prometheus", query='errors{route="{{ route }}"}'
)
BUILTIN = Metric(name="request-success-rate", threshold_min=99)
INLINE = Metric(name="custom", query='up{ns="{{ namespace }}"}', threshold_min=1)
FROM_TEMPLATE = Metric(name="errors", template_ref=TemplateRef(name="errors"), threshold_max=1)


def canary(*metrics: Metric) -> Canary:
    return Canary(name="podinfo", namespace="test", target_name="podinfo", analysis=Analysis(metrics=metrics))


@dataclass
class Provider:
    answer: float | Exception = 1.0
    queries: list[str] = field(default_factory=list)

    def query(self, promql: str) -> float:
        self.queries.append(promql)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def is_online(self) -> bool:
        return True


def run(
    metric: Metric, *, server: Provider, templates: dict[tuple[str, str], Provider] | None = None
) -> Reading:
    return measure(
        canary(metric),
        metric,
        canary_revision="podinfo-00002",
        templates={("test", "errors"): TEMPLATE},
        metrics_server=server,
        template_providers=templates or {},
    )


@pytest.mark.parametrize("metric", [BUILTIN, INLINE, FROM_TEMPLATE])
def test_plan_shows_exactly_the_query_run_sends(metric: Metric) -> None:
    server, own = Provider(), Provider()
    reading = run(metric, server=server, templates={("test", "errors"): own})
    sent = (server.queries + own.queries)[0]
    loaded = LoadedSpec(metric_templates={("test", "errors"): TEMPLATE})
    planned = _common.render_metric(loaded, canary(metric), metric, canary_revision="podinfo-00002")
    assert planned.query == sent == reading.query


def test_a_template_metric_goes_to_its_own_provider_and_builtins_to_the_metrics_server() -> None:
    server, own = Provider(), Provider()
    run(FROM_TEMPLATE, server=server, templates={("test", "errors"): own})
    run(BUILTIN, server=server, templates={("test", "errors"): own})
    assert own.queries == ['errors{route="podinfo-00002"}']
    assert len(server.queries) == 1 and "test/podinfo-00002" in server.queries[0]


def test_no_silent_fallback_to_the_metrics_server_for_a_template_without_provider() -> None:
    server = Provider()
    reading = run(FROM_TEMPLATE, server=server)
    assert reading.error == "Metric template errors.test error: no provider was built for it"
    assert server.queries == []


def test_an_unknown_builtin_is_an_error_not_a_guess() -> None:
    reading = run(Metric(name="request-rate"), server=Provider())
    assert "not a built-in metric" in reading.error
    with pytest.raises(TemplateError, match="not a built-in metric"):
        render_metric(canary(), Metric(name="request-rate"), templates={}, canary_revision="r")


def test_provider_answers_become_readings() -> None:
    assert run(BUILTIN, server=Provider(NoValuesFound("no values found"))).no_data
    failed = run(BUILTIN, server=Provider(MetricError("connection refused")))
    assert failed.error == "connection refused" and failed.value is None and not failed.no_data
    assert run(BUILTIN, server=Provider(42.0)).value == 42.0


def test_which_metrics_need_the_metrics_server() -> None:
    assert uses_metrics_server(canary(BUILTIN)) and uses_metrics_server(canary(INLINE, FROM_TEMPLATE))
    assert not uses_metrics_server(canary(FROM_TEMPLATE)) and not uses_metrics_server(canary())


@dataclass
class Sampler(Provider):
    """A provider that takes samples too (a range query), recording the window and step it was given."""

    taken: list[tuple[str, float, float]] = field(default_factory=list)

    def samples(self, promql: str, *, window_seconds: float, step_seconds: float) -> list[float]:
        self.taken.append((promql, window_seconds, step_seconds))
        return [1.0] * 6


@pytest.mark.parametrize(("step", "window"), [("2s", "2s"), ("1500ms", "1500ms"), (None, "2s")])
def test_each_sample_of_a_compared_metric_is_a_rate_over_its_own_step(step: str | None, window: str) -> None:
    """Samples of a rate over the whole interval taken every step would share scrapes (dependent
    samples make the U test over-confident): {{ interval }} is the step, for the canary and the primary."""
    variables = {"step": step} if step else {}
    metric = Metric(
        name="request-duration-vs-primary", interval="10s", threshold_max=1.1, template_variables=variables
    )
    server = Sampler()
    reading = measure(
        canary(metric),
        metric,
        canary_revision="podinfo-00002",
        primary_revision="podinfo-00001",
        templates={},
        metrics_server=server,
        template_providers={},
    )
    assert reading.query is not None and f"[{window}]" in reading.query and "[10s]" not in reading.query
    _, (primary_query, *_) = server.taken
    assert f"[{window}]" in primary_query and "podinfo-00001" in primary_query
    assert {(w, s) for _, w, s in server.taken} == {(10.0, 1.5 if step == "1500ms" else 2.0)}

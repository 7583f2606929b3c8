"""Measuring one metric of the analysis: choosing its query, rendering it, asking the right provider.

Owns: the one rule for which query a metric sends (a MetricTemplate's, an inline query, or a built-in
one) and with which values Flagger's template functions render (`render_metric`, used by `run` and by
`plan`/`validate`, so a plan never shows a query a run would not send); which provider answers it
(the metrics server for built-in and inline queries, the template's own provider otherwise, never a
silent fallback); and `measure`, which turns the provider's answer or error into a `Reading` — for a
compared (`-vs-primary`) metric, the samples of the same query rendered once per revision
(`render_comparison`), taken with the provider's range query at the judge's step.
Must not: judge the value (the analysis does), count failures, or retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from step.analysis.evaluate import Reading
from step.analysis.judge import relative_check
from step.errors import MetricError, NoValuesFound, StepError
from step.metrics.queries import BUILTIN_QUERIES, TemplateError, render
from step.metrics.request import windowed
from step.ports import MetricsProvider
from step.spec.model import KNATIVE_API_VERSION, Canary, Metric, MetricTemplate

Templates = Mapping[tuple[str, str], MetricTemplate]

# What `plan` shows for `{{ primary }}` before a run has pinned a primary revision.
PRIMARY_REVISION_PLACEHOLDER = "<primary-revision>"


@runtime_checkable
class SamplingProvider(Protocol):
    """A provider that can take a series' values over a window (Prometheus' range query)."""

    def samples(self, promql: str, *, window_seconds: float, step_seconds: float) -> list[float]: ...


@dataclass(frozen=True, kw_only=True)
class RenderedQuery:
    """One metric's query as it would be sent, or why there is none."""

    source: str  # "builtin", "inline", "template <ns>/<name>", "cluster <ns>/<name>"
    query: str | None  # None: the MetricTemplate is read from the cluster at run time
    template: tuple[str, str] | None = None  # (namespace, name) of the MetricTemplate


def template_values(
    canary: Canary, *, canary_revision: str, interval: str, primary_revision: str = ""
) -> dict[str, str]:
    """The values of Flagger's template functions for one canary (and metric interval)."""
    knative = canary.target_kind == "Service" and canary.target_api_version == KNATIVE_API_VERSION
    route = (
        canary_revision
        if knative or canary.provider == "knative"
        else (canary.route_name or canary.target_name)
    )
    return {
        "name": canary.name,
        "namespace": canary.namespace,
        "target": canary.target_name,
        "service": canary.service_name or canary.target_name,
        "ingress": canary.ingress_name or canary.target_name,
        "route": route,
        "interval": interval,
        "primary": primary_revision,
    }


def render_metric(
    canary: Canary,
    metric: Metric,
    *,
    templates: Templates,
    canary_revision: str,
    primary_revision: str = PRIMARY_REVISION_PLACEHOLDER,
) -> RenderedQuery:
    """The metric's query rendered as Flagger renders it. Raises TemplateError.

    In a compared (`-vs-primary`) metric, `{{ interval }}` is the judge's step, not the metric's
    interval: each sample is then a rate over its own step, so no two samples share a scrape. Samples
    of a rate over the whole interval, taken every step, overlap and are not independent, and the
    Mann-Whitney U test would be over-confident on them.
    """
    values = template_values(
        canary,
        canary_revision=canary_revision,
        interval=_rate_window(metric),
        primary_revision=primary_revision,
    )
    variables = dict(metric.template_variables)
    if metric.template_ref is not None:
        key = (metric.template_ref.namespace or canary.namespace, metric.template_ref.name)
        template = templates.get(key)
        if template is None:
            return RenderedQuery(source=f"cluster {key[0]}/{key[1]}", query=None, template=key)
        query = render(template.query, **values, variables=variables)
        return RenderedQuery(source=f"template {key[0]}/{key[1]}", query=query, template=key)
    if metric.query is not None:
        return RenderedQuery(source="inline", query=render(metric.query, **values, variables=variables))
    builtin = BUILTIN_QUERIES.get(metric.name)
    if builtin is None:
        raise TemplateError(
            f"metric {metric.name!r} is not a built-in metric and has no query or templateRef"
        )
    return RenderedQuery(source="builtin", query=render(builtin, **values, variables=variables))


def _rate_window(metric: Metric) -> str:
    """What `{{ interval }}` renders to: the metric's interval, or a compared metric's step (whole ms,
    as PromQL durations must be; a misconfigured comparison keeps the interval and fails when measured)."""
    if not metric.is_relative:
        return metric.interval
    try:
        step = relative_check(metric).step_seconds
    except ValueError:
        return metric.interval
    ms = round(step * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def render_comparison(
    canary: Canary, metric: Metric, *, templates: Templates, canary_revision: str, primary_revision: str
) -> tuple[RenderedQuery, RenderedQuery]:
    """A compared metric's two queries: `{{ route }}` the canary revision, then the primary revision."""
    for_canary = render_metric(
        canary,
        metric,
        templates=templates,
        canary_revision=canary_revision,
        primary_revision=primary_revision,
    )
    for_primary = render_metric(
        canary,
        metric,
        templates=templates,
        canary_revision=primary_revision,
        primary_revision=primary_revision,
    )
    return for_canary, for_primary


def uses_metrics_server(canary: Canary) -> bool:
    """Whether any metric is answered by the metrics server (built-in or inline queries)."""
    return any(m.template_ref is None for m in canary.analysis.metrics)


def measure(
    canary: Canary,
    metric: Metric,
    *,
    canary_revision: str,
    templates: Templates,
    metrics_server: MetricsProvider,
    template_providers: Mapping[tuple[str, str], MetricsProvider],
    primary_revision: str = "",
) -> Reading:
    """Measure one metric for `canary_revision`; every failure is a `Reading`, never an exception."""
    try:
        if metric.is_relative:
            rendered, for_primary = render_comparison(
                canary,
                metric,
                templates=templates,
                canary_revision=canary_revision,
                primary_revision=primary_revision,
            )
        else:
            rendered = render_metric(
                canary,
                metric,
                templates=templates,
                canary_revision=canary_revision,
                primary_revision=primary_revision,
            )
    except TemplateError as err:
        return Reading.failed(f"query render error: {err}")
    if rendered.query is None:
        assert rendered.template is not None
        ns, name = rendered.template
        return Reading.failed(f"Metric template {name}.{ns} error: not found")
    provider = metrics_server
    if rendered.template is not None:
        found = template_providers.get(rendered.template)
        if found is None:
            ns, name = rendered.template
            return Reading.failed(f"Metric template {name}.{ns} error: no provider was built for it")
        provider = windowed(found, metric.interval)  # Datadog & co. query over N x the interval
    query = rendered.query
    if metric.is_relative:
        assert for_primary.query is not None
        return _sample(metric, provider, query=query, primary_query=for_primary.query)
    try:
        return Reading.of(provider.query(query), query=query)
    except NoValuesFound as err:
        return Reading.empty(str(err) or "no values found", query=query)
    except (MetricError, StepError) as err:
        return Reading.failed(str(err), query=query)


def _sample(metric: Metric, provider: MetricsProvider, *, query: str, primary_query: str) -> Reading:
    """Both revisions' samples over the metric's interval, at the judge's step."""
    try:
        check = relative_check(metric)
    except ValueError as err:
        return Reading.failed(f"Metric {metric.name} is misconfigured: {err}", query=query)
    if not isinstance(provider, SamplingProvider):
        return Reading.failed(
            f"Metric {metric.name}: its provider cannot take samples over a window (range queries); "
            "a -vs-primary metric needs Prometheus",
            query=query,
        )
    window, step = check.window_seconds, check.step_seconds
    try:
        canary_samples = provider.samples(query, window_seconds=window, step_seconds=step)
        primary_samples = provider.samples(primary_query, window_seconds=window, step_seconds=step)
    except (MetricError, StepError) as err:
        return Reading.failed(str(err), query=query)
    return Reading.sampled(
        tuple(canary_samples), tuple(primary_samples), query=query, primary_query=primary_query
    )

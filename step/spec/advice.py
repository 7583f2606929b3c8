"""Advice on "no data" traps: what `validate` and `plan` warn about before a good canary rolls back.

Owns: three warnings: a threshold so low that one tick without data can roll the canary back, a ratio
query that returns no series at all while its numerator is empty (no 404s yet: the division has
nothing to divide), which counts as "no values found" (the fix is `or on() vector(0)`) (issue 14), and
a blue/green Canary whose metrics can only see what its webhooks send to the canary's tagged URL while
none of them uses `{{ canary_url }}` (issue 11).
Must not: refuse anything (these are notes, exit codes do not change), do I/O, or decide what a run
does with no data (`step.analysis.evaluate` does).
"""

from __future__ import annotations

import re

from step.spec.loader import LoadedSpec
from step.spec.model import Metric, OnNoData, WebhookType
from step.spec.problems import JsonPath, Problem

# `or vector(0)` / `or on() vector(0)`: an empty side becomes 0 instead of no series.
_OR_VECTOR = re.compile(r"\bor\s+(?:on\s*\(\s*\)\s*)?vector\s*\(")
# A division whose left side is an aggregation or a call: `sum(...) / sum(...)`.
_RATIO = re.compile(r"\)\s*/\s*[a-z(]", re.IGNORECASE)


def is_bare_ratio(query: str) -> bool:
    """A ratio of aggregations with no `or ... vector(0)` anywhere: empty numerator, no series."""
    return bool(_RATIO.search(query)) and not _OR_VECTOR.search(query)


def no_data_advice(loaded: LoadedSpec) -> list[Problem]:
    """The warnings for every valid Canary `loaded` holds, with file and line."""
    notes: list[Problem] = []
    for item in loaded.canaries:
        canary, doc = item.canary, item.document
        counted = [m for m in canary.analysis.metrics if m.on_no_data is not OnNoData.IGNORE]
        threshold = canary.analysis.threshold
        immediate = [m for m in counted if m.on_no_data is OnNoData.FAIL_IMMEDIATELY]
        if counted and not canary.skip_analysis and (threshold <= 1 or (threshold <= 2 and immediate)):
            what = "onNoData: fail-immediately counts the first tick's" if immediate else "a tick without"
            notes.append(
                Problem(
                    file=doc.file,
                    line=doc.line_of(("spec", "analysis", "threshold")),
                    path=("spec", "analysis", "threshold"),
                    message=(
                        f"threshold {threshold} is low: {what} data as a failed check, so one tick "
                        "without data (the load test not started yet, a new series not scraped twice) "
                        "can roll a good canary back; use a threshold of at least 2 (3 with "
                        "fail-immediately) or onNoData: ignore on metrics that may be empty"
                    ),
                )
            )
        hooks = [
            h for kind in WebhookType for h in canary.analysis.hooks(kind) if kind is not WebhookType.EVENT
        ]
        blue_green = canary.analysis.iterations > 0 and counted and not canary.skip_analysis
        if blue_green and not any(h.uses_canary_url() for h in hooks):
            iterations: JsonPath = ("spec", "analysis", "iterations")
            notes.append(
                Problem(
                    file=doc.file,
                    line=doc.line_of(iterations),
                    path=iterations,
                    message=(
                        "blue/green keeps the users' traffic off the canary revision until the promotion, "
                        "so its metrics see only the requests webhooks send to its tagged URL, and no "
                        "webhook's metadata uses {{ canary_url }}: every tick may find no data; point the "
                        'load test at it, e.g. cmd: "hey -z 1m -q 10 -c 2 {{ canary_url }}/"'
                    ),
                )
            )
        for i, metric in enumerate(canary.analysis.metrics):
            query = _query_of(metric, loaded, namespace=canary.namespace)
            if query is None or not is_bare_ratio(query) or metric.on_no_data is OnNoData.IGNORE:
                continue
            where = "query" if metric.query else "templateRef"
            path = ("spec", "analysis", "metrics", i, where)
            source = (
                "its query"
                if metric.query
                else f"MetricTemplate {metric.template_ref.name if metric.template_ref else '?'}'s query"
            )
            notes.append(
                Problem(
                    file=doc.file,
                    line=doc.line_of(path),
                    path=path,
                    message=(
                        f"metric {metric.name}: {source} is a ratio that returns no series at all while "
                        "its numerator is empty (e.g. no 404s yet), which counts as no data; add "
                        "`or on() vector(0)` to the numerator, e.g. (sum(rate(...)) or on() vector(0)) / "
                        "sum(rate(...))"
                    ),
                )
            )
    return notes


def _query_of(metric: Metric, loaded: LoadedSpec, *, namespace: str) -> str | None:
    if metric.query:
        return metric.query
    ref = metric.template_ref
    if ref is None:
        return None  # built in: Flagger's own queries
    template = loaded.metric_templates.get((ref.namespace or namespace, ref.name))
    if template is None or template.provider_type != "prometheus":
        return None  # PromQL only: other providers' query languages treat an empty side their own way
    return template.query

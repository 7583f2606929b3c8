"""The built-in Knative queries, as data, and rendering query templates the way Flagger does.

Owns: `BUILTIN_QUERIES` (Flagger 1.44's Knative observer templates: Kourier's envoy cluster
`<namespace>/<revision>`; ours, the same two under their `-vs-primary` names), `render` (Go
text/template semantics for the functions Flagger defines and our `primary`, missing keys are
errors) and `trim_query` (every run of whitespace becomes one space, as Flagger's Prometheus provider
does before sending a query).
Must not: run queries, apply thresholds, or import kube, click, tenacity, requests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from step.spec.model import (
    REQUEST_DURATION,
    REQUEST_DURATION_VS_PRIMARY,
    SUCCESS_RATE,
    SUCCESS_RATE_VS_PRIMARY,
)

# Written out as Flagger writes them (pkg/metrics/observers/knative.go); only the collapsed form is sent,
# so the layout here is free but the tokens are not. Each starts with a newline: the sent query starts
# with one space, as Flagger's tests assert.
BUILTIN_QUERIES: Mapping[str, str] = {
    SUCCESS_RATE: """
sum(
  rate(
    envoy_cluster_upstream_rq{
      envoy_cluster_name=~"{{ namespace }}/{{ route }}",
      envoy_response_code!~"5.*"
    }[{{ interval }}]
  )
)
/
sum(
  rate(
    envoy_cluster_upstream_rq{
      envoy_cluster_name=~"{{ namespace }}/{{ route }}",
    }[{{ interval }}]
  )
)
* 100""",
    REQUEST_DURATION: """
histogram_quantile(
  0.99,
  sum(
    rate(
      envoy_cluster_upstream_rq_time_bucket{
        envoy_cluster_name=~"{{ namespace }}/{{ route }}",
      }[{{ interval }}]
    )
  ) by (le)
)""",
}

# Ours: the compared built-ins, sent once per revision (`{{ route }}` = that revision). The success
# rate is Flagger's query; the duration is the mean (ms), not Flagger's p99: a p99 interpolated in
# Envoy's coarse buckets moves in steps (248.5 -> 497.5 between the 250 and 500 ms bounds) and follows
# the slowest 1 % of requests, so two revisions' p99 samples tie or jump together; the mean is exact.
BUILTIN_QUERIES = {
    **BUILTIN_QUERIES,
    SUCCESS_RATE_VS_PRIMARY: BUILTIN_QUERIES[SUCCESS_RATE],
    REQUEST_DURATION_VS_PRIMARY: """
sum(
  rate(
    envoy_cluster_upstream_rq_time_sum{
      envoy_cluster_name=~"{{ namespace }}/{{ route }}",
    }[{{ interval }}]
  )
)
/
sum(
  rate(
    envoy_cluster_upstream_rq_time_count{
      envoy_cluster_name=~"{{ namespace }}/{{ route }}",
    }[{{ interval }}]
  )
)""",
}

# `primary` is ours: the primary revision's name (Flagger has no such function).
FUNCTIONS = ("name", "namespace", "target", "service", "ingress", "route", "interval", "primary")

_ACTION = re.compile(r"{{(-\s)?(.*?)(\s-)?}}", re.DOTALL)
_VARIABLE = re.compile(r"variables\.([A-Za-z_][A-Za-z0-9_]*)")
_WHITESPACE = re.compile(r"\s+")


class TemplateError(ValueError):
    """A query template that Flagger would refuse to render (unknown function, missing variable...)."""


def trim_query(query: str) -> str:
    """Flagger's trimQuery: each run of whitespace becomes one space (nothing is stripped)."""
    return _WHITESPACE.sub(" ", query)


def render(
    template: str,
    *,
    name: str,
    namespace: str,
    target: str,
    service: str,
    ingress: str,
    route: str,
    interval: str,
    primary: str = "",
    variables: Mapping[str, str] | None = None,
) -> str:
    """The query Flagger sends for `template`: rendered, then whitespace-collapsed.

    Supports what Flagger's templates use: `{{ name }}`, `{{ namespace }}`, `{{ target }}`,
    `{{ service }}`, `{{ ingress }}`, `{{ route }}`, `{{ interval }}`, `{{ variables.<key> }}`, ours
    `{{ primary }}` (the primary revision, so one query can divide the canary by the primary), comments
    `{{/* ... */}}` and the trim markers `{{-` / `-}}`. Anything else raises `TemplateError`.
    """
    values = {
        "name": name,
        "namespace": namespace,
        "target": target,
        "service": service,
        "ingress": ingress,
        "route": route,
        "interval": interval,
        "primary": primary,
    }
    given = dict(variables or {})
    out: list[str] = []
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos : match.start()]
        if match.group(1):
            text = text.rstrip()
        out.append(text)
        action = match.group(2).strip()
        out.append(_evaluate(action, values=values, variables=given, where=_line(template, match.start())))
        pos = match.end()
        if match.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip())
    tail = template[pos:]
    if "{{" in tail or "}}" in tail:
        raise TemplateError(f"unclosed action at line {_line(template, pos + tail.find('{{'))}")
    out.append(tail)
    return trim_query("".join(out))


def _line(template: str, offset: int) -> int:
    return template.count("\n", 0, max(offset, 0)) + 1


def _evaluate(action: str, *, values: Mapping[str, str], variables: Mapping[str, str], where: int) -> str:
    """One action's value; `where` is its line in the template, for messages."""
    if action.startswith("/*") and action.endswith("*/"):
        return ""
    if action in values:
        return values[action]
    var = _VARIABLE.fullmatch(action)
    if var is not None:
        key = var.group(1)
        if key not in variables:
            have = ", ".join(sorted(variables)) or "none"
            raise TemplateError(
                f"line {where}: {{{{ {action} }}}}: no key {key!r} in templateVariables (given: {have})"
            )
        return variables[key]
    if action == "variables":
        raise TemplateError(f"line {where}: {{{{ variables }}}} needs a key, e.g. {{{{ variables.app }}}}")
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", action):
        raise TemplateError(
            f'line {where}: function "{action}" not defined '
            f"(available: {', '.join(FUNCTIONS)}, variables.<key>)"
        )
    raise TemplateError(
        f"line {where}: {{{{ {action} }}}} is not supported: canary-step renders only the functions Flagger "
        f"defines ({', '.join(FUNCTIONS)}, variables.<key>)"
    )

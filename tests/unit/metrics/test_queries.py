"""Query rendering: Flagger's built-in Knative queries, exactly, and Go text/template semantics."""

from __future__ import annotations

import pytest

from step.metrics.queries import BUILTIN_QUERIES, TemplateError, render, trim_query
from step.spec.model import BUILTIN_METRICS

MODEL = {
    "name": "podinfo",
    "namespace": "default",
    "target": "podinfo",
    "service": "podinfo",
    "ingress": "podinfo",
    "route": "podinfo-00001",
    "interval": "1m",
}


def test_request_success_rate_is_rendered_as_flagger_sends_it() -> None:
    # Flagger 1.44, pkg/metrics/observers/knative_test.go: the expected query, leading space included.
    assert render(BUILTIN_QUERIES["request-success-rate"], **MODEL) == (
        ' sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"default/podinfo-00001", '
        'envoy_response_code!~"5.*" }[1m] ) ) / sum( rate( envoy_cluster_upstream_rq{ '
        'envoy_cluster_name=~"default/podinfo-00001", }[1m] ) ) * 100'
    )


def test_request_duration_is_rendered_as_flagger_sends_it() -> None:
    assert render(BUILTIN_QUERIES["request-duration"], **MODEL) == (
        " histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ "
        'envoy_cluster_name=~"default/podinfo-00001", }[1m] ) ) by (le) )'
    )


def test_the_seed_canary_queries_with_its_revision_and_interval() -> None:
    query = render(
        BUILTIN_QUERIES["request-duration"], **{**MODEL, "namespace": "test", "route": "podinfo-00002"}
    )
    assert 'envoy_cluster_name=~"test/podinfo-00002"' in query


def test_every_function_flagger_defines() -> None:
    template = (
        "{{ name }}|{{ namespace }}|{{ target }}|{{ service }}|{{ ingress }}|{{ route }}|{{ interval }}"
    )
    values = dict(name="n", namespace="ns", target="t", service="s", ingress="i", route="r", interval="30s")
    assert render(template, **values) == "n|ns|t|s|i|r|30s"
    assert render("{{name}}-{{  route  }}", **values) == "n-r"


def test_variables_and_missing_keys() -> None:
    template = 'rate(x{app="{{ variables.app }}"}[{{ interval }}])'
    assert render(template, **MODEL, variables={"app": "web"}) == 'rate(x{app="web"}[1m])'
    with pytest.raises(TemplateError, match=r"no key 'app' in templateVariables \(given: other\)"):
        render(template, **MODEL, variables={"other": "x"})


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ revision }}", 'function "revision" not defined'),
        ("{{ .Name }}", "is not supported"),
        ("{{ if true }}x{{ end }}", "is not supported"),
        ("{{ name | printf }}", "is not supported"),
        ("{{ variables }}", "needs a key"),
        ("x\n{{ name", "unclosed action at line 2"),
    ],
)
def test_what_flagger_would_refuse_is_an_error(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(template, **MODEL)


def test_trim_markers_and_comments() -> None:
    assert render("a   {{- name -}}   b", **MODEL) == "apodinfob"
    assert render("a {{/* why */}}b", **MODEL) == "a b"


def test_trim_query_collapses_every_whitespace_run_without_stripping() -> None:
    assert trim_query("\n  sum(\n\trate(x[1m])\n  )\n") == " sum( rate(x[1m]) ) "


def test_every_builtin_metric_has_its_query_and_no_other() -> None:
    assert tuple(BUILTIN_QUERIES) == BUILTIN_METRICS

"""The rules beyond the schema, one case each: the finding's path and message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from step.spec.loader import load_files
from step.spec.problems import format_path

BASE = {
    "apiVersion": "flagger.app/v1beta1",
    "kind": "Canary",
    "metadata": {"name": "app", "namespace": "ns"},
    "spec": {
        "provider": "knative",
        "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "app"},
        "analysis": {"interval": "15s", "threshold": 2, "stepWeight": 10},
    },
}


def problems_of(tmp_path: Path, spec: dict[str, object], *extra: dict[str, object]) -> list[tuple[str, str]]:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump_all([{**BASE, "spec": spec}, *extra], sort_keys=False))
    return [(format_path(p.path), p.message) for p in load_files([path]).problems]


def analysis(**changes: object) -> dict[str, object]:
    merged = {**BASE["spec"]["analysis"], **changes}  # type: ignore[dict-item]
    return {k: v for k, v in merged.items() if v is not None}


def spec(**changes: object) -> dict[str, object]:
    merged = {**BASE["spec"], **changes}  # type: ignore[dict-item]
    return {k: v for k, v in merged.items() if v is not None}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            spec(provider=None),
            [
                (
                    "spec.provider",
                    "can't use Knative Service as target without provider: knative "
                    "(Flagger checks spec.provider, not its -mesh-provider flag)",
                )
            ],
        ),
        (
            spec(provider="linkerd"),
            [
                (
                    "spec.provider",
                    "can't use linkerd provider with Knative Service as target; set provider: knative",
                )
            ],
        ),
        (
            spec(targetRef={"apiVersion": "v1", "kind": "Service", "name": "app"}),
            [
                (
                    "spec.targetRef",
                    "can't use v1/Service as target if provider is set to knative; the target must be "
                    "a serving.knative.dev/v1 Service",
                )
            ],
        ),
        (
            spec(provider="istio", targetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}),
            [],
        ),
        (
            spec(analysis=analysis(stepWeight=None, iterations=0)),
            [("spec.analysis.iterations", "0 iterations never promote; use 1 or more, or a stepWeight")],
        ),
        (
            spec(analysis=analysis(stepWeight=None, stepWeights=[10, 10])),
            [
                (
                    "spec.analysis.stepWeights[1]",
                    "10 is not greater than the step before it (10): stepWeights must be strictly ascending",
                )
            ],
        ),
        (spec(analysis=analysis(stepWeight=None, stepWeights=[100])), []),
        (spec(skipAnalysis=True, analysis=analysis(stepWeight=0)), []),
        (spec(analysis=analysis(interval="0s")), [("spec.analysis.interval", "'0s' must be greater than 0")]),
        (
            spec(analysis=analysis(interval="15x")),
            [
                (
                    "spec.analysis.interval",
                    "'15x' is not a duration Flagger accepts: its CRD requires a whole number of "
                    "minutes or seconds first (pattern ^[0-9]+(m|s)) (e.g. 15s, 1m, 1m30s, 500ms)",
                )
            ],
        ),
        *[
            (
                spec(analysis=analysis(interval=given)),
                [
                    (
                        "spec.analysis.interval",
                        f"{given!r} is not a duration Flagger accepts: its CRD requires a whole number of "
                        f"minutes or seconds first (pattern ^[0-9]+(m|s)); use {suggested!r}",
                    )
                ],
            )
            for given, suggested in [("1h", "60m"), ("1.5m", "1m30s"), ("1h30m", "90m"), ("0.5s", "500ms")]
        ],
        (
            spec(analysis=analysis(metrics=[{"name": "request-success-rate", "interval": "2h"}])),
            [
                (
                    "spec.analysis.metrics[0].interval",
                    "'2h' is not a duration Flagger accepts: its CRD requires a whole number of minutes "
                    "or seconds first (pattern ^[0-9]+(m|s)); use '120m'",
                )
            ],
        ),
        (
            spec(analysis=analysis(webhooks=[{"name": "h", "url": "http://h/", "timeout": "1h"}])),
            [
                (
                    "spec.analysis.webhooks[0].timeout",
                    "'1h' is not a duration Flagger accepts: its CRD requires a whole number of minutes "
                    "or seconds first (pattern ^[0-9]+(m|s)); use '60m'",
                )
            ],
        ),
        (
            spec(analysis=analysis(interval="1m 30s")),
            [
                (
                    "spec.analysis.interval",
                    "'1m 30s' is not a duration: unknown unit 'm ' (e.g. 15s, 1m, 1m30s, 500ms); Flagger "
                    "parses it with Go's time.ParseDuration",
                )
            ],
        ),
        (spec(analysis=analysis(interval="1m30s")), []),
        (spec(analysis=analysis(interval="500ms")), []),
        (
            spec(analysis=analysis(sessionAffinity={"cookieName": "c", "primaryCookieName": "c"})),
            [("spec.analysis.sessionAffinity.primaryCookieName", "must differ from cookieName")],
        ),
        (
            spec(
                analysis=analysis(
                    alerts=[
                        {"name": "a", "providerRef": {"name": "p"}},
                        {"name": "a", "providerRef": {"name": "q"}},
                    ]
                )
            ),
            [("spec.analysis.alerts[1].name", "duplicate alert name 'a' (also alerts[0])")],
        ),
        (
            spec(analysis=analysis(webhooks=[{"name": "h", "url": "http://h:99999/"}])),
            [("spec.analysis.webhooks[0].url", "'http://h:99999/' is not a valid URL")],
        ),
        (
            spec(
                analysis=analysis(
                    metrics=[{"name": "m", "query": "up", "thresholdRange": {"min": 1, "max": 1}}]
                )
            ),
            [],
        ),
    ],
)
def test_rule(tmp_path: Path, case: dict[str, object], expected: list[tuple[str, str]]) -> None:
    assert problems_of(tmp_path, case) == expected


def test_a_rule_does_not_repeat_what_the_schema_said(tmp_path: Path) -> None:
    # stepWeight -5 is a schema error; "can never promote" would only say it again.
    assert problems_of(tmp_path, spec(analysis=analysis(stepWeight=-5))) == [
        ("spec.analysis.stepWeight", "-5 is less than the minimum of 0")
    ]


def test_metric_template_address_must_be_a_url(tmp_path: Path) -> None:
    template = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"provider": {"type": "prometheus", "address": "prometheus:9090"}, "query": "up"},
    }
    assert problems_of(tmp_path, spec(), template) == [
        ("spec.provider.address", "'prometheus:9090' is not an absolute http:// or https:// URL")
    ]


def test_canary_url_where_the_canary_has_no_tagged_url_yet_is_refused_for_run() -> None:
    from step.spec.rules import run_support_findings  # noqa: PLC0415

    def hooks_for(**analysis: object) -> list[tuple[object, ...]]:
        hooks = [
            {
                "name": "gate",
                "type": "confirm-rollout",
                "url": "http://t/",
                "metadata": {"x": "{{ canary_url }}"},
            },
            {
                "name": "smoke",
                "type": "pre-rollout",
                "url": "http://t/",
                "metadata": {"cmd": "hey {{canary_url}}/"},
            },
            {"name": "load", "url": "http://t/", "metadata": {"cmd": "hey {{ canary_url }}/"}},
            {"name": "events", "type": "event", "url": "http://t/", "metadata": {"to": "{{ canary_url }}"}},
        ]
        canary = {
            "spec": {
                "provider": "knative",
                "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"},
                "analysis": {**analysis, "webhooks": hooks},
            }
        }
        return [path for path, _ in run_support_findings(canary)]

    webhooks = ("spec", "analysis", "webhooks")
    # the canary strategy tags the canary with its first step, after the pre-rollout hooks
    assert hooks_for(stepWeight=10) == [
        (*webhooks, 0, "metadata", "x"),
        (*webhooks, 1, "metadata", "cmd"),
        (*webhooks, 3, "metadata", "to"),
    ]
    # blue/green tags it before them; rollout hooks have it in both strategies
    assert hooks_for(iterations=3) == [(*webhooks, 0, "metadata", "x"), (*webhooks, 3, "metadata", "to")]

"""From valid YAML data to the frozen models, with Flagger's defaults resolved.

Owns: the one place where a default is chosen (threshold <= 0 means 1, interval 60s, metric interval
1m, webhook timeout 10s, the deprecated metric `threshold`, AlertProvider username and channel).
Must not: validate (the schema and `rules.py` ran before), or import kube, click, tenacity, requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from step.spec.durations import parse_duration
from step.spec.model import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_METRIC_INTERVAL,
    DEFAULT_PROGRESS_DEADLINE_SECONDS,
    DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
    KNATIVE_API_VERSION,
    SUCCESS_RATE,
    Alert,
    AlertProvider,
    Analysis,
    Canary,
    Metric,
    MetricTemplate,
    OnNoData,
    SecretRef,
    TemplateRef,
    Webhook,
    WebhookType,
)

DEFAULT_ALERT_USERNAME = "flagger"
DEFAULT_ALERT_CHANNEL = "general"


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> Mapping[str, str]:
    return MappingProxyType({str(k): str(v) for k, v in _map(value).items()})


def namespace_of(obj: Mapping[str, Any], *, default_namespace: str) -> str:
    namespace = _map(obj.get("metadata")).get("namespace")
    return namespace if isinstance(namespace, str) and namespace else default_namespace


def build_canary(obj: Mapping[str, Any], *, default_namespace: str) -> Canary:
    """A Canary model from a document that passed the schema and the rules."""
    spec = _map(obj.get("spec"))
    target = _map(spec.get("targetRef"))
    return Canary(
        name=str(_map(obj.get("metadata"))["name"]),
        namespace=namespace_of(obj, default_namespace=default_namespace),
        target_name=str(target["name"]),
        target_api_version=str(target.get("apiVersion", KNATIVE_API_VERSION)),
        target_kind=str(target.get("kind", "Service")),
        provider=str(spec.get("provider") or ""),
        service_name=_map(spec.get("service")).get("name"),
        ingress_name=_map(spec.get("ingressRef")).get("name"),
        route_name=_map(spec.get("routeRef")).get("name"),
        metrics_server=spec.get("metricsServer") or None,
        progress_deadline_seconds=int(spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_SECONDS)),
        skip_analysis=bool(spec.get("skipAnalysis", False)),
        suspend=bool(spec.get("suspend", False)),
        analysis=build_analysis(_map(spec.get("analysis"))),
    )


def build_analysis(analysis: Mapping[str, Any]) -> Analysis:
    interval = analysis.get("interval")
    threshold = int(analysis.get("threshold", 1))
    max_weight = int(analysis.get("maxWeight", 100))
    return Analysis(
        interval_seconds=parse_duration(interval) if isinstance(interval, str) else DEFAULT_INTERVAL_SECONDS,
        threshold=threshold if threshold > 0 else 1,
        max_weight=max_weight if max_weight > 0 else 100,
        step_weight=int(analysis.get("stepWeight", 0)),
        step_weights=tuple(int(w) for w in analysis.get("stepWeights", ())),
        step_weight_promotion=int(analysis.get("stepWeightPromotion", 0)),
        iterations=int(analysis.get("iterations", 0)),
        metrics=tuple(build_metric(_map(m)) for m in analysis.get("metrics", ())),
        webhooks=tuple(build_webhook(_map(h)) for h in analysis.get("webhooks", ())),
        alerts=tuple(build_alert(_map(a)) for a in analysis.get("alerts", ())),
        mirror=bool(analysis.get("mirror", False)),
    )


def build_metric(metric: Mapping[str, Any]) -> Metric:
    name = str(metric["name"])
    low: float | None = None
    high: float | None = None
    if "thresholdRange" in metric:
        bounds = _map(metric["thresholdRange"])
        low = float(bounds["min"]) if "min" in bounds else None
        high = float(bounds["max"]) if "max" in bounds else None
    else:
        # Flagger's deprecated `threshold` (0 when absent): a minimum for the success rate, else a maximum.
        legacy = float(metric.get("threshold", 0))
        if name == SUCCESS_RATE and "query" not in metric and "templateRef" not in metric:
            low = legacy
        else:
            high = legacy
    ref = metric.get("templateRef")
    return Metric(
        name=name,
        interval=str(metric.get("interval") or DEFAULT_METRIC_INTERVAL),
        threshold_min=low,
        threshold_max=high,
        query=metric.get("query"),
        template_ref=_ref(ref) if isinstance(ref, dict) else None,
        template_variables=_strings(metric.get("templateVariables")),
        on_no_data=OnNoData(metric.get("onNoData", OnNoData.FAIL.value)),
    )


def _ref(ref: Mapping[str, Any]) -> TemplateRef:
    namespace = ref.get("namespace")
    return TemplateRef(name=str(ref["name"]), namespace=namespace if namespace else None)


def build_webhook(hook: Mapping[str, Any]) -> Webhook:
    timeout = hook.get("timeout")
    return Webhook(
        name=str(hook["name"]),
        url=str(hook["url"]),
        type=WebhookType(hook.get("type") or WebhookType.ROLLOUT.value),
        timeout_seconds=parse_duration(timeout) if timeout else DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
        retries=int(hook.get("retries", 0)),
        mute_alert=bool(hook.get("muteAlert", False)),
        disable_tls=bool(hook.get("disableTLS", False)),
        metadata=_strings(hook.get("metadata")),
    )


def build_alert(alert: Mapping[str, Any]) -> Alert:
    return Alert(
        name=str(alert["name"]),
        provider_ref=_ref(_map(alert.get("providerRef"))),
        severity=str(alert.get("severity", "")),
    )


def _secret(value: Any) -> SecretRef | None:
    return SecretRef(name=str(value["name"])) if isinstance(value, dict) and "name" in value else None


def build_metric_template(obj: Mapping[str, Any], *, default_namespace: str) -> MetricTemplate:
    spec = _map(obj.get("spec"))
    provider = _map(spec.get("provider"))
    headers = {str(k): tuple(str(v) for v in vs) for k, vs in _map(provider.get("headers")).items()}
    return MetricTemplate(
        name=str(_map(obj.get("metadata"))["name"]),
        namespace=namespace_of(obj, default_namespace=default_namespace),
        provider_type=str(provider["type"]),
        query=str(spec["query"]),
        address=provider.get("address") or None,
        headers=MappingProxyType(headers),
        secret_ref=_secret(provider.get("secretRef")),
        insecure_skip_verify=bool(provider.get("insecureSkipVerify", False)),
        region=provider.get("region") or None,
    )


def build_alert_provider(obj: Mapping[str, Any], *, default_namespace: str) -> AlertProvider:
    spec = _map(obj.get("spec"))
    return AlertProvider(
        name=str(_map(obj.get("metadata"))["name"]),
        namespace=namespace_of(obj, default_namespace=default_namespace),
        type=str(spec["type"]),
        channel=spec.get("channel") or DEFAULT_ALERT_CHANNEL,
        username=spec.get("username") or DEFAULT_ALERT_USERNAME,
        address=spec.get("address") or None,
        secret_ref=_secret(spec.get("secretRef")),
        proxy=spec.get("proxy") or None,
    )

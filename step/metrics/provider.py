"""The factory from a MetricTemplate (plus its Secret's data) to a metrics provider.

Owns: the one table of supported provider types — Prometheus only — and reading the credentials
Flagger's Prometheus provider reads (`token`, or `username` and `password`). An unknown or
unsupported type is refused with a clear message; Flagger falls back to Prometheus silently, we
do not.
Must not: read Secrets itself (the caller passes the data), render queries, or judge values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from step.errors import SpecError
from step.metrics.prometheus import DEFAULT_TIMEOUT_SECONDS, PrometheusProvider
from step.ports import MetricsProvider
from step.spec.model import MetricTemplate

# Flagger's MetricTemplate enum (flagger-semantics 3.5), for a precise message about what we lack.
FLAGGER_PROVIDER_TYPES = frozenset(
    {
        "prometheus",
        "influxdb",
        "datadog",
        "externalmetrics",
        "stackdriver",
        "cloudwatch",
        "newrelic",
        "graphite",
        "dynatrace",
        "keptn",
        "splunk",
    }
)


def _prometheus(
    template: MetricTemplate, secret: Mapping[str, str], default_address: str | None, timeout: float
) -> MetricsProvider:
    address = template.address or default_address
    where = f"MetricTemplate {template.namespace}/{template.name}"
    if not address:
        raise SpecError(f"{where}: spec.provider.address is not set and no metrics server was given")
    token = secret.get("token") or None
    username, password = secret.get("username"), secret.get("password")
    if token is None and (username is None) != (password is None):
        missing = "password" if password is None else "username"
        ref = template.secret_ref.name if template.secret_ref else "?"
        raise SpecError(f'{where}: secret "{ref}" has no "{missing}" key (basic auth needs both)')
    headers = {key: ", ".join(values) for key, values in template.headers.items()}
    return PrometheusProvider(
        address,
        token=token,
        username=username if token is None else None,
        password=password if token is None else None,
        headers=headers,
        timeout=timeout,
        insecure_skip_verify=template.insecure_skip_verify,
    )


_FACTORIES: Mapping[
    str, Callable[[MetricTemplate, Mapping[str, str], str | None, float], MetricsProvider]
] = {
    "prometheus": _prometheus,
}

SUPPORTED_PROVIDER_TYPES = tuple(sorted(_FACTORIES))


def provider_for(
    template: MetricTemplate,
    *,
    secret: Mapping[str, str] | None = None,
    default_address: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> MetricsProvider:
    """The provider a MetricTemplate names. `secret` is its secretRef's data, already decoded."""
    factory = _FACTORIES.get(template.provider_type)
    if factory is None:
        supported = ", ".join(SUPPORTED_PROVIDER_TYPES)
        kind = (
            "is not supported by canary-step"
            if template.provider_type in FLAGGER_PROVIDER_TYPES
            else "is unknown"
        )
        raise SpecError(
            f"MetricTemplate {template.namespace}/{template.name}: provider type {template.provider_type!r}"
            f" {kind} (supported: {supported}); Flagger would silently query Prometheus instead, we refuse"
        )
    if template.secret_ref is not None and secret is None:
        raise SpecError(
            f"MetricTemplate {template.namespace}/{template.name}: secretRef {template.secret_ref.name!r}"
            " was given but its data was not passed to the provider factory"
        )
    return factory(template, secret or {}, default_address, timeout)


def builtin_provider(address: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> MetricsProvider:
    """The provider for built-in metrics and inline queries: the metrics server, no credentials."""
    return PrometheusProvider(address, timeout=timeout)

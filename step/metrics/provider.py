"""The factory from a MetricTemplate (plus its Secret's data) to a metrics provider, and its preview.

Owns: the one table of supported provider types — Flagger's prometheus, datadog, newrelic, dynatrace,
graphite, influxdb, splunk, stackdriver and cloudwatch, one module each — reading the credentials
Flagger's Prometheus provider reads (`token`, or `username` and `password`; each other module reads
its own keys), and `preview`, the exact request a template's query is sent as, credentials masked,
for `plan`. An unknown or unsupported type is refused with a clear message; Flagger falls back to
Prometheus silently, we do not.
Must not: read Secrets itself (the caller passes the data), render queries, or judge values.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from step.errors import MetricError, SpecError
from step.metrics import cloudwatch, datadog, dynatrace, graphite, influxdb, newrelic, splunk, stackdriver
from step.metrics.prometheus import DEFAULT_TIMEOUT_SECONDS, PrometheusProvider
from step.metrics.remote import Spec, Window, interval_seconds, secret_marker
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


def _module(
    build: Callable[..., MetricsProvider],
) -> Callable[[MetricTemplate, Mapping[str, str], str | None, float], MetricsProvider]:
    def factory(
        template: MetricTemplate, secret: Mapping[str, str], default_address: str | None, timeout: float
    ) -> MetricsProvider:
        # Flagger's other providers never fall back to the metrics server: their address is their own.
        return build(template, secret, timeout=timeout, wall=time.time)

    return factory


_FACTORIES: Mapping[
    str, Callable[[MetricTemplate, Mapping[str, str], str | None, float], MetricsProvider]
] = {
    "prometheus": _prometheus,
    "datadog": _module(datadog.build),
    "newrelic": _module(newrelic.build),
    "dynatrace": _module(dynatrace.build),
    "graphite": _module(graphite.build),
    "influxdb": _module(influxdb.build),
    "splunk": _module(splunk.build),
    "stackdriver": _module(stackdriver.build),
    "cloudwatch": _module(cloudwatch.build),
}

# The secret keys each provider reads (Flagger's names); `preview` shows them masked.
SECRET_KEYS: Mapping[str, tuple[str, ...]] = {
    "prometheus": ("token",),
    "datadog": datadog.SECRET_KEYS,
    "newrelic": newrelic.SECRET_KEYS,
    "dynatrace": dynatrace.SECRET_KEYS,
    "graphite": graphite.SECRET_KEYS,
    "influxdb": influxdb.SECRET_KEYS,
    "splunk": splunk.SECRET_KEYS,
    "stackdriver": ("project", "serviceAccountKey"),
    "cloudwatch": (),
}
_SPECS: Mapping[str, tuple[Callable[[MetricTemplate, Mapping[str, str]], Spec], float]] = {
    "datadog": (datadog.spec, datadog.WINDOW_FACTOR),
    "newrelic": (newrelic.spec, newrelic.WINDOW_FACTOR),
    "dynatrace": (dynatrace.spec, dynatrace.WINDOW_FACTOR),
    "graphite": (graphite.spec, graphite.WINDOW_FACTOR),
    "influxdb": (influxdb.spec, influxdb.WINDOW_FACTOR),
    "splunk": (splunk.spec, splunk.WINDOW_FACTOR),
    "stackdriver": (stackdriver.spec, stackdriver.WINDOW_FACTOR),
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


def preview(
    template: MetricTemplate, query: str, *, interval: str, default_address: str | None
) -> dict[str, Any]:
    """The request `run` sends for `query` (already rendered), as `plan` shows it: exact, except that each
    credential reads `<secret KEY>` and the times are relative to `<now>`. Raises SpecError."""
    kind = template.provider_type
    if kind not in _FACTORIES:
        provider_for(template, secret={}, default_address=default_address)  # raises the factory's refusal
    if kind == "prometheus":
        address = (template.address or default_address or "<metrics server>").rstrip("/")
        params = urllib.parse.urlencode({"query": query})
        shown: dict[str, Any] = {"method": "GET", "url": f"{address}/api/v1/query?{params}"}
        headers = {key: ", ".join(values) for key, values in template.headers.items()}
        if template.secret_ref is not None:
            headers["Authorization"] = f"Bearer {secret_marker('token')} (or basic auth: username, password)"
        if headers:
            shown["headers"] = headers
        return {"provider": kind, "request": shown}
    if kind == "cloudwatch":
        return {"provider": kind, "request": cloudwatch.preview(template, query, interval=interval).shown()}
    build, factor = _SPECS[kind]
    placeholders = {key: secret_marker(key) for key in SECRET_KEYS[kind]}
    try:
        seconds = factor * interval_seconds(interval)
    except MetricError as err:
        raise SpecError(str(err)) from None
    request = build(template, placeholders).request(query, Window(seconds=seconds, now=None))
    shown = request.shown()
    if kind == "stackdriver":
        shown.setdefault("headers", {})["Authorization"] = "Bearer <token for serviceAccountKey>"
    return {"provider": kind, "request": shown}

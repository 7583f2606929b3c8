"""Which MetricTemplate provider types canary-step measures with, and the request each sends, for `plan`.

Owns: the one table of provider types (`PROVIDER_TYPES`, Flagger's names; `FLAGGER_PROVIDER_TYPES`
for a precise refusal of the ones we lack), the HTTP providers' shapes (`HTTP_SPECS`: each module's
`spec` and how many metric intervals its query covers), the secret keys each reads (Flagger's
names), the refusal of an unknown or unsupported type (`refuse_unknown`), and `preview`: the exact
request `run` sends for a rendered query, each credential shown as `<secret KEY>` and the times
relative to `<now>`.
Must not: import requests or any client (`plan` and `validate` import it), read Secrets, send anything.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from step.errors import MetricError, SpecError
from step.metrics import cloudwatch, datadog, dynatrace, graphite, influxdb, newrelic, splunk, stackdriver
from step.metrics.request import Spec, Window, interval_seconds, secret_marker, where
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

HTTP_SPECS: Mapping[str, tuple[Callable[[MetricTemplate, Mapping[str, str]], Spec], float]] = {
    "datadog": (datadog.spec, datadog.WINDOW_FACTOR),
    "newrelic": (newrelic.spec, newrelic.WINDOW_FACTOR),
    "dynatrace": (dynatrace.spec, dynatrace.WINDOW_FACTOR),
    "graphite": (graphite.spec, graphite.WINDOW_FACTOR),
    "influxdb": (influxdb.spec, influxdb.WINDOW_FACTOR),
    "splunk": (splunk.spec, splunk.WINDOW_FACTOR),
    "stackdriver": (stackdriver.spec, stackdriver.WINDOW_FACTOR),
}
PROVIDER_TYPES = tuple(sorted({"prometheus", "cloudwatch", *HTTP_SPECS}))

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


def refuse_unknown(template: MetricTemplate) -> None:
    """SpecError for a type we do not measure with; Flagger would silently query Prometheus instead."""
    kind = template.provider_type
    if kind in PROVIDER_TYPES:
        return
    why = "is not supported by canary-step" if kind in FLAGGER_PROVIDER_TYPES else "is unknown"
    raise SpecError(
        f"{where(template)}: provider type {kind!r} {why} (supported: {', '.join(PROVIDER_TYPES)});"
        " Flagger would silently query Prometheus instead, we refuse"
    )


def preview(
    template: MetricTemplate, query: str, *, interval: str, default_address: str | None
) -> dict[str, Any]:
    """The request `run` sends for `query` (already rendered), as `plan` shows it. Raises SpecError."""
    refuse_unknown(template)
    kind = template.provider_type
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
    spec, factor = HTTP_SPECS[kind]
    placeholders = {key: secret_marker(key) for key in SECRET_KEYS[kind]}
    try:
        seconds = factor * interval_seconds(interval)
    except MetricError as err:
        raise SpecError(str(err)) from None
    shown = spec(template, placeholders).request(query, Window(seconds=seconds, now=None)).shown()
    if kind == "stackdriver":
        shown.setdefault("headers", {})["Authorization"] = "Bearer <token for serviceAccountKey>"
    return {"provider": kind, "request": shown}

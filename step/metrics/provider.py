"""The factory from a MetricTemplate (plus its Secret's data) to a metrics provider.

Owns: building the provider a template names — Prometheus with the credentials Flagger's Prometheus
provider reads (`token`, or `username` and `password`), the HTTP providers over their module's
shapes (`preview.HTTP_SPECS`), CloudWatch through its SDK — and the metrics server's provider for
built-in metrics. Which types exist, and the refusal of the others, is `preview`'s table: Flagger
falls back to Prometheus silently, we do not.
Must not: read Secrets itself (the caller passes the data), render queries, or judge values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from step.errors import SpecError
from step.metrics import cloudwatch, stackdriver
from step.metrics.preview import HTTP_SPECS, PROVIDER_TYPES, refuse_unknown
from step.metrics.prometheus import DEFAULT_TIMEOUT_SECONDS, PrometheusProvider
from step.metrics.remote import HttpProvider
from step.metrics.request import Wall, where
from step.ports import MetricsProvider
from step.spec.model import MetricTemplate

SUPPORTED_PROVIDER_TYPES = PROVIDER_TYPES


def _prometheus(
    template: MetricTemplate, secret: Mapping[str, str], default_address: str | None, timeout: float
) -> MetricsProvider:
    address = template.address or default_address
    if not address:
        raise SpecError(
            f"{where(template)}: spec.provider.address is not set and no metrics server was given"
        )
    token = secret.get("token") or None
    username, password = secret.get("username"), secret.get("password")
    if token is None and (username is None) != (password is None):
        missing = "password" if password is None else "username"
        ref = template.secret_ref.name if template.secret_ref else "?"
        raise SpecError(f'{where(template)}: secret "{ref}" has no "{missing}" key (basic auth needs both)')
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


def build_provider(
    template: MetricTemplate, secret: Mapping[str, str], *, timeout: float, wall: Wall = time.time
) -> MetricsProvider:
    """Any provider but Prometheus: their address is their own, never the metrics server."""
    kind = template.provider_type
    if kind == "cloudwatch":
        return cloudwatch.build(template, secret, timeout=timeout, wall=wall)
    spec, factor = HTTP_SPECS[kind]
    shapes = spec(template, secret)
    auth: Callable[[], Sequence[tuple[str, str]]] | None = None
    if kind == "stackdriver":
        auth = stackdriver.token_headers(secret.get("serviceAccountKey"), where(template))
    return HttpProvider(
        shapes,
        address=getattr(shapes, "address", template.address or ""),
        window_factor=factor,
        timeout=timeout,
        insecure_skip_verify=template.insecure_skip_verify,
        wall=wall,
        auth=auth,
    )


def provider_for(
    template: MetricTemplate,
    *,
    secret: Mapping[str, str] | None = None,
    default_address: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> MetricsProvider:
    """The provider a MetricTemplate names. `secret` is its secretRef's data, already decoded."""
    refuse_unknown(template)
    if template.secret_ref is not None and secret is None:
        raise SpecError(
            f"{where(template)}: secretRef {template.secret_ref.name!r}"
            " was given but its data was not passed to the provider factory"
        )
    if template.provider_type == "prometheus":
        return _prometheus(template, secret or {}, default_address, timeout)
    return build_provider(template, secret or {}, timeout=timeout)


def builtin_provider(address: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> MetricsProvider:
    """The provider for built-in metrics and inline queries: the metrics server, no credentials."""
    return PrometheusProvider(address, timeout=timeout)

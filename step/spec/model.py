"""Frozen models of a validated spec, with Flagger's defaults already resolved.

Owns: the typed view of `Canary`, `MetricTemplate` and `AlertProvider` that the rest of the
program reads. Built only by `step.spec` after the JSON Schema and the extra rules passed.
Must not: import kube, click, tenacity, requests, or do any I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

KNATIVE_API_VERSION = "serving.knative.dev/v1"
PRIMARY_REVISION_ANNOTATION = "flagger.app/primary-revision"

# Flagger's defaults (flagger-semantics.md section 7).
DEFAULT_INTERVAL_SECONDS = 60.0
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_METRIC_INTERVAL = "1m"
DEFAULT_WEBHOOK_TIMEOUT_SECONDS = 10.0

# The built-in metrics (Flagger's Knative observer); their queries are in step.metrics.queries.
SUCCESS_RATE = "request-success-rate"
REQUEST_DURATION = "request-duration"
# Ours: the same two, judged against the primary revision (step.analysis.judge). A metric whose name
# ends in RELATIVE_SUFFIX is compared; for these two the query is the built-in one's.
RELATIVE_SUFFIX = "-vs-primary"
SUCCESS_RATE_VS_PRIMARY = SUCCESS_RATE + RELATIVE_SUFFIX
REQUEST_DURATION_VS_PRIMARY = REQUEST_DURATION + RELATIVE_SUFFIX
BUILTIN_METRICS = (SUCCESS_RATE, REQUEST_DURATION, SUCCESS_RATE_VS_PRIMARY, REQUEST_DURATION_VS_PRIMARY)


class WebhookType(enum.StrEnum):
    """Flagger's webhook types. An empty type in the spec means ROLLOUT."""

    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    ROLLBACK = "rollback"
    EVENT = "event"


class OnNoData(enum.StrEnum):
    """What a metric with no values means (our extension; Flagger always fails the check).

    `fail`: a failed check, after a grace while the canary's series is too new to have two scrapes
    (`step.analysis.evaluate.in_no_data_grace`); `fail-immediately`: Flagger's behaviour, no grace;
    `ignore`: a pass with a note.
    """

    FAIL = "fail"
    FAIL_IMMEDIATELY = "fail-immediately"
    IGNORE = "ignore"


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, kw_only=True)
class TemplateRef:
    name: str
    namespace: str | None = None  # None: the canary's namespace


@dataclass(frozen=True, kw_only=True)
class Metric:
    name: str
    interval: str = DEFAULT_METRIC_INTERVAL  # substituted as-is into {{ interval }}
    threshold_min: float | None = None
    threshold_max: float | None = None
    query: str | None = None
    template_ref: TemplateRef | None = None
    template_variables: Mapping[str, str] = field(default_factory=_frozen)
    on_no_data: OnNoData = OnNoData.FAIL

    @property
    def is_builtin(self) -> bool:
        return self.template_ref is None and self.query is None and self.name in BUILTIN_METRICS

    @property
    def is_relative(self) -> bool:
        """Judged against the primary revision by the statistical judge (ours, opt-in by name)."""
        return self.name.endswith(RELATIVE_SUFFIX)


@dataclass(frozen=True, kw_only=True)
class Webhook:
    name: str
    url: str
    type: WebhookType = WebhookType.ROLLOUT
    timeout_seconds: float = DEFAULT_WEBHOOK_TIMEOUT_SECONDS
    retries: int = 0
    mute_alert: bool = False
    disable_tls: bool = False
    metadata: Mapping[str, str] = field(default_factory=_frozen)

    def uses_canary_url(self) -> list[str]:
        """The metadata keys whose values use `{{ canary_url }}` (ours: the canary revision's tagged URL)."""
        return [key for key, value in self.metadata.items() if CANARY_URL_VARIABLE.search(value)]


# Ours: the canary revision's tagged URL, offered to a webhook's metadata values (a load test's `cmd`);
# `step.webhooks.payload` renders it, `spec.rules` refuses it where no URL can exist yet.
CANARY_URL_VARIABLE = re.compile(r"{{-?\s*canary_url\s*-?}}")


@dataclass(frozen=True, kw_only=True)
class Alert:
    """An alert of the analysis: which AlertProvider gets events of which severity."""

    name: str
    provider_ref: TemplateRef  # name and namespace (None: the canary's namespace) of the AlertProvider
    severity: str = ""  # "", "info", "warn" or "error"; Flagger matches nothing on ""


@dataclass(frozen=True, kw_only=True)
class Analysis:
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    threshold: int = 1  # Flagger: <= 0 means 1
    max_weight: int = 100  # Flagger: <= 0 means 100; ignored when step_weights is set
    step_weight: int = 0
    step_weights: tuple[int, ...] = ()
    step_weight_promotion: int = 0
    iterations: int = 0
    metrics: tuple[Metric, ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    alerts: tuple[Alert, ...] = ()
    mirror: bool = False

    def hooks(self, kind: WebhookType) -> tuple[Webhook, ...]:
        """The webhooks of one type, in list order (the order Flagger calls them)."""
        return tuple(h for h in self.webhooks if h.type == kind)


@dataclass(frozen=True, kw_only=True)
class Canary:
    name: str
    namespace: str
    target_name: str  # the Knative Service
    target_api_version: str = KNATIVE_API_VERSION
    target_kind: str = "Service"
    provider: str = "knative"
    # For {{ service }}, {{ ingress }} and {{ route }} in query templates (each defaults to target_name).
    service_name: str | None = None
    ingress_name: str | None = None
    route_name: str | None = None
    metrics_server: str | None = None
    progress_deadline_seconds: int = DEFAULT_PROGRESS_DEADLINE_SECONDS
    skip_analysis: bool = False
    suspend: bool = False
    analysis: Analysis = field(default_factory=Analysis)


@dataclass(frozen=True, kw_only=True)
class SecretRef:
    name: str


@dataclass(frozen=True, kw_only=True)
class MetricTemplate:
    name: str
    namespace: str
    provider_type: str  # "prometheus" is the only one `run` measures with
    query: str
    address: str | None = None
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    secret_ref: SecretRef | None = None
    insecure_skip_verify: bool = False
    region: str | None = None


@dataclass(frozen=True, kw_only=True)
class AlertProvider:
    name: str
    namespace: str
    type: str
    channel: str | None = None
    username: str | None = None
    address: str | None = None
    secret_ref: SecretRef | None = None
    proxy: str | None = None


@dataclass(frozen=True, kw_only=True)
class SpecBundle:
    """Everything one spec file (or several) held: one Canary and what it refers to."""

    canary: Canary
    metric_templates: Mapping[tuple[str, str], MetricTemplate] = field(
        default_factory=lambda: MappingProxyType({})
    )  # keyed by (namespace, name)
    alert_providers: Mapping[tuple[str, str], AlertProvider] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def template_for(self, metric: Metric) -> MetricTemplate | None:
        if metric.template_ref is None:
            return None
        ns = metric.template_ref.namespace or self.canary.namespace
        return self.metric_templates.get((ns, metric.template_ref.name))

"""The preflight's checks one by one, with in-memory parts: which failure is a mistake (exit 2) and
which a retry may fix (exit 4), and what each says. The real run is in tests/e2e/test_preflight.py."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest

from step.errors import ExitCode, MetricError, NotFound, UsageError
from step.ports import ServiceView, TrafficTarget
from step.preflight import Preflight, PreflightFailed
from step.spec.model import Analysis, Canary, Metric, TemplateRef, Webhook, WebhookType


def canary(*webhooks: Webhook, metrics: tuple[Metric, ...] = ()) -> Canary:
    analysis = Analysis(
        interval_seconds=1.0, threshold=2, max_weight=50, step_weight=10, metrics=metrics, webhooks=webhooks
    )
    return Canary(name="checkout", namespace="shop", target_name="checkout", analysis=analysis)


VIEW = ServiceView(
    name="checkout",
    namespace="shop",
    generation=1,
    observed_generation=1,
    primary_revision=None,
    latest_created_revision="checkout-00001",
    latest_ready_revision="checkout-00001",
    ready=True,
    status_traffic=(TrafficTarget(revision_name="checkout-00001", percent=100),),
    images={"app": "shop/checkout:1", "sidecar": "envoy:1"},
)


@dataclass
class Router:
    view: ServiceView | None = VIEW

    def observe(self) -> ServiceView:
        if self.view is None:
            raise NotFound("not found", status=404, verb="get", resource="services.serving.knative.dev")
        return self.view


@dataclass
class Provider:
    error: MetricError | None = None

    @property
    def last_error(self) -> MetricError | None:
        return self.error

    def is_online(self) -> bool:
        return self.error is None

    def query(self, promql: str) -> float:
        return 1.0


HOSTS = {"flagger-loadtester.test": "127.0.0.1"}


def resolver(host: str, port: int) -> Sequence[Any]:
    """A hosts table instead of DNS (tests send nothing beyond loopback)."""
    if host in HOSTS or host.replace(".", "").isdigit():
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (HOSTS.get(host, host), port))]
    if host.endswith(".again"):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_a_missing_service_is_a_mistake_with_did_you_mean() -> None:
    checks = Preflight(canary())
    assert checks.service(Router(view=None), names=lambda: ["checkin", "payments"]) is None
    with pytest.raises(PreflightFailed) as caught:
        checks.raise_if_failed()
    assert caught.value.exit_code == ExitCode.USAGE and caught.value.reason == "not-found"
    assert str(caught.value) == (
        'Knative Service shop/checkout: there is no Knative Service "checkout" in namespace "shop"; '
        "did you mean 'checkin'? (spec.targetRef.name)"
    )


def test_a_missing_service_in_an_empty_namespace_blames_the_namespace() -> None:
    checks = Preflight(canary())
    checks.service(Router(view=None), names=lambda: [])
    (finding,) = checks.findings
    assert 'namespace "shop" has no Knative Services at all: is the namespace right' in str(finding.error)


def test_a_service_with_no_ready_revision_is_worth_a_retry() -> None:
    checks = Preflight(canary())
    checks.service(Router(view=replace(VIEW, latest_ready_revision=None, status_traffic=())))
    (finding,) = checks.findings
    assert finding.error is not None and finding.error.exit_code == ExitCode.INFRASTRUCTURE
    assert "has no Ready revision serving traffic yet" in str(finding.error)


@pytest.mark.parametrize(
    ("container", "ok", "says"),
    [
        ("app", True, "--image shop/checkout:2 goes to container 'app'"),
        (
            "ap",
            False,
            "has no container named \"ap\"; did you mean 'app'?; its containers are 'app', 'sidecar'",
        ),
        (None, False, "has 2 containers ('app', 'sidecar'); name the one to update with --container"),
    ],
)
def test_the_container_resolves_or_is_a_mistake(container: str | None, ok: bool, says: str) -> None:
    checks = Preflight(canary())
    checks.container(VIEW, image="shop/checkout:2", container=container)
    (finding,) = checks.findings
    assert finding.ok is ok
    assert says in (finding.note if ok else str(finding.error))
    if not ok:
        assert isinstance(finding.error, UsageError)


def test_without_image_the_container_is_not_checked() -> None:
    checks = Preflight(canary())
    checks.container(VIEW, image=None, container=None)
    assert checks.findings == []


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (
            MetricError("Prometheus at http://p:9090 is unreachable: connection refused"),
            4,
            "metrics-server-unreachable",
        ),
        (
            MetricError("error response: Status 503: (GET http://p:9090/api/v1/query)", status=503),
            4,
            "metrics-server-unreachable",
        ),
        (MetricError("error response: Status 429: slow down", status=429), 4, "metrics-server-unreachable"),
        (
            MetricError("error response: Status 405: method not allowed (GET http://p/x)", status=405),
            2,
            "usage-error",
        ),
        (MetricError("error response: Status 401: Unauthorized", status=401), 2, "usage-error"),
    ],
)
def test_the_metrics_server_check(error: MetricError, code: int, reason: str) -> None:
    checks = Preflight(canary(metrics=(Metric(name="request-success-rate", threshold_min=99),)))
    checks.metrics(metrics_server=Provider(error), address="http://p:9090", template_metrics={})
    with pytest.raises(PreflightFailed) as caught:
        checks.raise_if_failed()
    assert (int(caught.value.exit_code), caught.value.reason) == (code, reason)
    assert str(caught.value).startswith(f"metrics server http://p:9090: {error}")


def test_a_compared_metric_needs_two_scrapes_per_step() -> None:
    """Each sample is a rate over one step: a step under two scrapes is a mistake (exit 2) that names
    the settings that would work; two scrapes or more passes, and an absolute metric is not concerned."""
    compared = Metric(
        name="request-duration-vs-primary",
        interval="2m",
        threshold_max=1.1,
        template_variables={"step": "20s"},
    )
    absolute = Metric(name="request-duration", interval="1m", threshold_max=500)
    checks = Preflight(canary(metrics=(absolute, compared)))
    checks.comparisons(scrape_interval=15)
    with pytest.raises(PreflightFailed) as caught:
        checks.raise_if_failed()
    assert int(caught.value.exit_code) == int(ExitCode.USAGE)
    assert str(caught.value) == (
        "metric request-duration-vs-primary: samples every 20s, but Prometheus scrapes every 15s "
        "(--scrape-interval) and each sample is a rate over its step, which needs two scrapes: set "
        "templateVariables.step to at least 30s and the interval to at least 2m0s (5 samples)"
    )
    fine = Preflight(canary(metrics=(absolute, compared)))
    fine.comparisons(scrape_interval=10)
    assert not fine.failed and fine.findings == []


def test_each_template_provider_is_checked_with_its_own_provider() -> None:
    errors = Metric(name="errors", template_ref=TemplateRef(name="errors"), threshold_max=1)
    checks = Preflight(canary(metrics=(errors,)))
    down = Provider(MetricError("datadog at https://api.datadoghq.com: Status 403", status=403))
    checks.metrics(
        metrics_server=Provider(), address="http://p:9090", template_metrics={("shop", "errors"): down}
    )
    (finding,) = checks.findings  # the metrics server is not used by a template-only Canary
    assert finding.check == "MetricTemplate shop/errors"
    assert str(finding.error).endswith("the credentials were refused: check the secretRef")


def test_webhooks_are_resolved_never_called() -> None:
    hooks = (
        Webhook(name="load-test", url="http://flagger-loadtester.test/", type=WebhookType.ROLLOUT),
        Webhook(
            name="gate", url="http://flagger-loadtester.tset/gate/check", type=WebhookType.CONFIRM_PROMOTION
        ),
        Webhook(name="flaky", url="http://dns.again/", type=WebhookType.ROLLOUT),
        Webhook(name="local", url="http://127.0.0.1:9/", type=WebhookType.EVENT),
    )
    checks = Preflight(canary(*hooks), resolve=resolver)
    checks.webhooks()
    by_name = {f.check: f for f in checks.findings}
    assert by_name["webhook load-test"].ok and by_name["webhook local"].ok
    gate = by_name["webhook gate"].error
    assert isinstance(gate, UsageError)
    assert str(gate) == (
        "http://flagger-loadtester.tset/gate/check: the host flagger-loadtester.tset does not resolve; "
        "is the URL right, and is the service installed (e.g. flagger-loadtester for the load tests)?"
    )
    flaky = by_name["webhook flaky"].error
    assert flaky is not None and flaky.exit_code == ExitCode.INFRASTRUCTURE
    with pytest.raises(PreflightFailed) as caught:
        checks.raise_if_failed()
    assert caught.value.exit_code == ExitCode.USAGE  # a mistake outranks an outage
    assert caught.value.check == "webhook gate"


def test_a_malformed_webhook_url_is_a_mistake() -> None:
    checks = Preflight(
        canary(Webhook(name="w", url="flagger-loadtester/", type=WebhookType.ROLLOUT)), resolve=resolver
    )
    checks.webhooks()
    (finding,) = checks.findings
    assert isinstance(finding.error, UsageError)
    assert str(finding.error) == "URL 'flagger-loadtester/' is not an http(s) URL with a host"


def test_a_held_lease_is_worth_a_retry() -> None:
    checks = Preflight(canary())
    checks.lease(lambda: "held by pod a run 1 since 21:47:12Z (expires in 12s)")
    with pytest.raises(PreflightFailed) as caught:
        checks.raise_if_failed()
    assert caught.value.exit_code == ExitCode.INFRASTRUCTURE
    free = Preflight(canary())
    free.lease(lambda: None)
    assert [f.line() for f in free.findings] == ["preflight: lease canary-step.checkout: ok (free)"]

"""The Route's refusals that end a traffic write at once (step.router.traffic.route_refusal), and an
admission webhook's 400 as the step reports it (step.kube.mapping)."""

from __future__ import annotations

from typing import Any

import pytest

from step.errors import Invalid
from step.kube.mapping import Target, admission_webhook, error_for
from step.kube.resources import SERVICES
from step.router.traffic import route_refusal

ERROR_CONFIG = (
    'domain name error: invalid domain name "primary-x.test.svc.cluster.local": url: Invalid value:'
    ' "primary-x": must be no more than 63 characters'
)


def _service(*, observed: int, routes_ready: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "podinfo", "namespace": "test", "generation": 4},
        "spec": {},
        "status": {
            "observedGeneration": observed,
            "conditions": [
                {"type": "ConfigurationsReady", "status": "True"},
                {"type": "Ready", **routes_ready},
                {"type": "RoutesReady", **routes_ready},
            ],
        },
    }


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("ErrorConfig", ERROR_CONFIG),
        ("NotOwned", 'There is an existing placeholder Service "canary-podinfo" that we do not own.'),
    ],
)
def test_error_config_and_not_owned_at_the_written_generation_end_the_wait(reason: str, message: str) -> None:
    refused = _service(observed=4, routes_ready={"status": "False", "reason": reason, "message": message})
    assert route_refusal(refused, generation=4) == (reason, message)


def test_an_older_generation_or_another_reason_is_not_a_refusal() -> None:
    stale = _service(observed=3, routes_ready={"status": "False", "reason": "NotOwned", "message": "m"})
    assert route_refusal(stale, generation=4) is None  # the Route has not seen our write yet
    missing = _service(observed=4, routes_ready={"status": "False", "reason": "RevisionMissing"})
    assert route_refusal(missing, generation=4) is None  # the router looks at the Revisions instead
    working = _service(observed=4, routes_ready={"status": "Unknown", "reason": "IngressNotConfigured"})
    assert route_refusal(working, generation=4) is None


KNATIVE_400 = (
    'admission webhook "validation.webhook.serving.knative.dev" denied the request: validation failed:'
    " must not set the field(s): spec.template.spec.affinity"
)


def test_an_admission_webhooks_refusal_names_the_webhook_and_keeps_its_answer_verbatim() -> None:
    assert admission_webhook(KNATIVE_400) == "validation.webhook.serving.knative.dev"
    target = Target(verb="patch", resource=SERVICES, namespace="test", name="podinfo")
    error = error_for(400, target=target, message=KNATIVE_400)
    assert isinstance(error, Invalid) and error.status == 400
    text = str(error)
    assert text.startswith(
        'the admission webhook "validation.webhook.serving.knative.dev" refused patch'
        ' services.serving.knative.dev "podinfo" in namespace "test" (HTTP 400)'
    )
    assert KNATIVE_400 in text


def test_a_400_from_the_api_server_itself_names_no_webhook() -> None:
    message = 'Service.serving.knative.dev "podinfo" is invalid: spec.traffic: Invalid value'
    assert admission_webhook(message) is None
    target = Target(verb="patch", resource=SERVICES, namespace="test", name="podinfo")
    assert "admission webhook" not in str(error_for(422, target=target, message=message))

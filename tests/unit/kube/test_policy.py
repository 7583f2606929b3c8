"""Pure parts of step.kube: which answers are transient, and the error table."""

from __future__ import annotations

import pytest

from step.errors import APIError, Conflict, Forbidden, Invalid, NotFound
from step.kube.mapping import Target, TransientAPIError, error_for, is_transient_status, server_message
from step.kube.resources import CANARIES, EVENTS, SECRETS, SERVICES


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (None, True),
        (429, True),
        (500, True),
        (503, True),
        (400, False),
        (403, False),
        (404, False),
        (409, False),
    ],
)
def test_transient_statuses(status: int | None, transient: bool) -> None:
    assert is_transient_status(status) is transient


PATCH_KSVC = Target(verb="patch", resource=SERVICES, namespace="test", name="podinfo")


def test_403_names_the_verb_and_the_resource() -> None:
    err = error_for(403, target=PATCH_KSVC, message="services.serving.knative.dev is forbidden")
    assert isinstance(err, Forbidden)
    assert str(err) == (
        'forbidden: cannot patch services.serving.knative.dev "podinfo" in namespace "test"'
        ' — the ServiceAccount needs verb "patch" on serving.knative.dev/services'
    )
    assert (err.verb, err.resource, err.status) == ("patch", "services.serving.knative.dev", 403)


def test_403_on_a_subresource_and_on_the_core_group() -> None:
    status = Target(verb="patch", resource=CANARIES, namespace="ns", name="c", subresource="status")
    assert 'needs verb "patch" on flagger.app/canaries/status' in str(
        error_for(403, target=status, message="")
    )
    event = Target(verb="create", resource=EVENTS, namespace="ns")
    assert str(error_for(403, target=event, message="")) == (
        'forbidden: cannot create events in namespace "ns" — the ServiceAccount needs verb "create"'
        ' on ""/events (core API group)'
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, Forbidden), (404, NotFound), (409, Conflict), (400, Invalid), (422, Invalid), (418, APIError)],
)
def test_status_table(status: int, kind: type[APIError]) -> None:
    err = error_for(status, target=Target(verb="get", resource=SECRETS, namespace="n", name="s"), message="m")
    assert type(err) is kind
    assert not isinstance(err, TransientAPIError)


def test_invalid_carries_the_api_servers_message() -> None:
    msg = (
        'admission webhook "validation.webhook.serving.knative.dev" denied the request: validation failed:'
        " Traffic targets sum to 150, want 100: spec.traffic"
    )
    err = error_for(400, target=PATCH_KSVC, message=msg)
    assert isinstance(err, Invalid)
    assert str(err).endswith(msg)


def test_a_failed_json_patch_test_is_a_conflict() -> None:
    err = error_for(
        422, target=PATCH_KSVC, message="the server rejected our request: testing value /spec/traffic failed"
    )
    assert isinstance(err, Conflict)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_answers_carry_retry_after(status: int) -> None:
    err = error_for(status, target=PATCH_KSVC, message="busy", retry_after=2.0)
    assert isinstance(err, TransientAPIError)
    assert err.retry_after == 2.0


def test_server_message_reads_status_objects_and_plain_text() -> None:
    assert server_message(b'{"kind":"Status","message":"nope","code":403}') == "nope"
    assert server_message(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert server_message(b"") == "(empty body)"

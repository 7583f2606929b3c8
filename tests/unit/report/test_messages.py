"""Message snapshots for the mistakes of a platform engineer's first hour (issue 14, item 5): one line,
a cause and a next step, correct plurals, a closed gate that names its URL and how to open it."""

from __future__ import annotations

import io

from step.analysis import messages as msg
from step.analysis.evaluate import Verdict
from step.analysis.records import CheckRecord, HookRecord, TickRecord
from step.report.timeline import Timeline, check_text
from step.spec.model import Analysis, Canary, Webhook, WebhookType


def test_plurals() -> None:
    assert msg.plural(1, "failed check") == "1 failed check"
    assert msg.plural(2, "failed check") == "2 failed checks"
    assert msg.provider_errors("podinfo", "test", 1, 0) == (
        "Stopping podinfo.test analysis: 1 consecutive metric provider error (more than the limit of 0); "
        "the canary was not judged"
    )
    assert "5 consecutive metric provider errors" in msg.provider_errors("podinfo", "test", 5, 4)


def _timeline(url: str) -> tuple[Timeline, io.StringIO]:
    gate = Webhook(name="promotion-gate", url=url, type=WebhookType.CONFIRM_PROMOTION)
    analysis = Analysis(interval_seconds=1.0, threshold=2, max_weight=50, step_weight=25, webhooks=(gate,))
    stream = io.StringIO()
    canary = Canary(name="checkout", namespace="shop", target_name="checkout", analysis=analysis)
    return Timeline(canary=canary, stream=stream), stream


def _closed_tick(index: int) -> TickRecord:
    hook = HookRecord(name="promotion-gate", type="confirm-promotion", ok=False, status=403, message="403")
    return TickRecord(
        index=index,
        at=float(index),
        phase="WaitingPromotion",
        primary_revision="checkout-00001",
        canary_revision="checkout-00002",
        canary_weight=50,
        failed_checks=0,
        consecutive_errors=0,
        checks=(),
        hooks=(hook,),
        events=(),
        errors=(),
    )


def test_a_closed_loadtester_gate_names_its_url_and_the_open_call_once() -> None:
    timeline, stream = _timeline("http://flagger-loadtester.test/gate/check")
    timeline.tick(_closed_tick(4))
    timeline.tick(_closed_tick(5))
    gates = [line.strip() for line in stream.getvalue().splitlines() if line.strip().startswith("Gate")]
    assert gates == [
        "Gate    promotion-gate is closed: http://flagger-loadtester.test/gate/check answered 403; the run "
        "waits and asks again every interval. Open it with: curl -d "
        '\'{"name": "checkout", "namespace": "shop"}\' http://flagger-loadtester.test/gate/open'
    ]


def test_another_gate_says_what_opens_it() -> None:
    timeline, _ = _timeline("https://approvals.example/checkout")
    assert timeline.gate_text("promotion-gate", 409, "") == (
        "promotion-gate is closed: https://approvals.example/checkout answered 409; the run waits and asks "
        "again every interval. It opens when it answers 200"
    )


def test_a_provider_error_is_said_once_per_tick() -> None:
    error = CheckRecord(
        metric="request-success-rate",
        verdict=Verdict.ERROR,
        value=None,
        threshold_min=99,
        threshold_max=None,
        message="Prometheus query failed: Prometheus at http://p:9090 is unreachable: connection refused",
        query="",
    )
    assert check_text(error) == "request-success-rate error"

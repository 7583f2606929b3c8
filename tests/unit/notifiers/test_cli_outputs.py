"""An AlertProvider's address is a secret: `validate` and `plan` (text and JSON) never print it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from step.cli import cli

SPEC = """\
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: knative
  targetRef: {apiVersion: serving.knative.dev/v1, kind: Service, name: podinfo}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    alerts:
      - {name: on-call, severity: error, providerRef: {name: on-call}}
    metrics:
      - {name: request-success-rate, thresholdRange: {min: 99}, interval: 1m}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {name: on-call, namespace: test}
spec:
  type: slack
  channel: on-call
  address: https://hooks.slack.com/services/TSECRET/BSECRET/hush
  proxy: http://user:proxypass@127.0.0.1:3128
"""


@pytest.mark.parametrize(
    "args", [["validate"], ["plan"], ["plan", "--output", "json"]], ids=["validate", "plan", "plan-json"]
)
def test_no_command_prints_the_address(tmp_path: Path, args: list[str]) -> None:
    spec = tmp_path / "canary.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(cli, [*args, str(spec)])
    assert result.exit_code == 0, result.output
    for secret in ("TSECRET", "hooks.slack.com", "proxypass"):
        assert secret not in result.output
        assert secret not in (result.stderr if result.stderr_bytes is not None else "")


def test_plan_shows_the_alert_routing(tmp_path: Path) -> None:
    spec = tmp_path / "canary.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(cli, ["plan", str(spec)])
    assert (
        "  on-call: error -> AlertProvider test/on-call (slack, channel on-call, username flagger, proxy set;"
        " address in the spec)"
    ) in result.output.splitlines()

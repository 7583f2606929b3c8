"""Knative's tag hosts: which Service names the Route can tag (step.spec.knative), and that `validate`
reports the rule with its path (run_support_findings, what `run` refuses before any write)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from step.spec.knative import MAX_SERVICE_NAME, tag_host_problem
from step.spec.loader import load_files
from step.spec.rules import run_support_problems


def test_the_longest_name_is_63_less_primary_and_its_dash() -> None:
    assert MAX_SERVICE_NAME == 55
    assert tag_host_problem("p" * 55) is None
    problem = tag_host_problem("p" * 56)
    assert problem is not None
    assert f"'primary-{'p' * 56}' (64 characters)" in problem
    assert "a DNS label holds at most 63" in problem
    assert "Expected a Service name of at most 55 characters" in problem


def test_the_whole_host_is_checked_against_253_characters_when_the_domain_is_known() -> None:
    domain = "ns." + ".".join(["d" * 60] * 4) + ".example.com"  # labels fine, the whole name too long
    problem = tag_host_problem("podinfo", domain=domain)
    assert problem is not None and "a host name holds at most 253" in problem
    assert tag_host_problem("podinfo", domain="test.svc.cluster.local") is None


@pytest.mark.parametrize("name", ["Podinfo", "podinfo-", "pod_info"])
def test_a_name_that_makes_no_dns_label_is_refused(name: str) -> None:
    problem = tag_host_problem(name)
    assert problem is not None and "is not a DNS label" in problem


def _canary(name: str) -> dict[str, object]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "provider": "knative",
            "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name},
            "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
        },
    }


def test_validate_reports_the_name_with_its_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(_canary("p" * 56), sort_keys=False))
    problems = run_support_problems(
        load_files([path], templates_from_cluster=False, default_namespace="test")
    )
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "name: ppp" in text)
    assert [(p.path, p.line) for p in problems] == [(("spec", "targetRef", "name"), line)]
    assert "Expected a Service name of at most 55 characters" in problems[0].message
    path.write_text(yaml.safe_dump(_canary("p" * 55), sort_keys=False))
    assert (
        run_support_problems(load_files([path], templates_from_cluster=False, default_namespace="test")) == []
    )

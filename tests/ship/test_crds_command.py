"""`canary-step crds`: what it prints is the generator's CRDs, and a real API server takes them.

The unit part compares the printed YAML and JSON with step.spec.crds.generate_crds (one source); the
cluster part pipes the output into `kubectl apply` on the local control plane, as the README tells
users to, and then stores the example Canary under the applied definitions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from step.cli import cli
from step.spec.crds import generate_crds
from tests.cluster import ControlPlane

ROOT = Path(__file__).resolve().parents[2]


def _crds(*args: str) -> str:
    result = CliRunner().invoke(cli, ["crds", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_crds_prints_the_generated_definitions_as_yaml_and_json() -> None:
    documents = list(yaml.safe_load_all(_crds()))
    assert documents == generate_crds()
    assert [d["spec"]["names"]["kind"] for d in documents] == ["Canary", "MetricTemplate", "AlertProvider"]
    listed = json.loads(_crds("--output", "json"))
    assert listed == {"apiVersion": "v1", "kind": "List", "items": generate_crds()}


def test_crds_rejects_an_unknown_output_with_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["crds", "--output", "xml"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.cluster
def test_crds_apply_with_kubectl_and_hold_the_example_canary(
    control_plane: ControlPlane, namespace: str
) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to apply the CRDs as users do"
    base = [kubectl, "--kubeconfig", str(control_plane.kubeconfig)]
    applied = subprocess.run(
        [*base, "apply", "--server-side", "--force-conflicts", "--field-manager=canary-step-crds", "-f", "-"],
        input=_crds(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    for plural in ("canaries", "metrictemplates", "alertproviders"):
        assert (
            f"customresourcedefinition.apiextensions.k8s.io/{plural}.flagger.app serverside-applied"
            in applied.stdout
        )
    established = subprocess.run(
        [
            *base,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/canaries.flagger.app",
            "crd/metrictemplates.flagger.app",
            "crd/alertproviders.flagger.app",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    assert established.returncode == 0, established.stderr
    canary = yaml.safe_load((ROOT / "examples" / "podinfo-canary.yaml").read_text())
    canary["metadata"]["namespace"] = namespace
    created = subprocess.run(
        [*base, "create", "-f", "-", "-o", "json"],
        input=json.dumps(canary),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    stored = json.loads(created.stdout)
    assert stored["spec"]["analysis"] == canary["spec"]["analysis"]
    listed = subprocess.run(
        [*base, "get", "canaries", "-n", namespace, "-o", "name"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert listed.stdout.split() == ["canary.flagger.app/podinfo"]

"""The release: its workflow (.github/workflows/release.yaml) and the pins that must follow its tag.

A release is the tag v<step.__version__>; the workflow pushes ghcr.io/<repository>:<version> (the
repository of the image's source label) and publishes the wheel of that version. Every reference users
copy must name that same release: the README's and docs' `uses: canary-step/canary-step@v…` and
`ghcr.io/canary-step/canary-step:…`, the Tekton Task's and the Argo template's step-image defaults, the
examples, and the Dockerfile's VERSION (the action builds the Dockerfile). The release workflow's
`check` job runs this file with CANARY_STEP_RELEASE_TAG set to the pushed tag.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

import step
from tests.ship.tools import tool_run

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / ".github" / "workflows" / "release.yaml"
REPOSITORY = "canary-step/canary-step"
PINNED_FILES = [
    ROOT / "README.md",
    ROOT / "docs" / "pipelines.md",
    *sorted((ROOT / "tekton").glob("*.yaml")),
    *sorted((ROOT / "argo").glob("*.yaml")),
    ROOT / "action.yml",
]
IMAGE_REF = re.compile(rf"ghcr\.io/{REPOSITORY}(?P<sep>[:@])(?P<ref>[\w.\-]+)")
ACTION_REF = re.compile(rf"uses:\s*{REPOSITORY}@(?P<ref>[\w.\-]+)")


def _tag() -> str:
    return os.environ.get("CANARY_STEP_RELEASE_TAG") or f"v{step.__version__}"


def _workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(RELEASE.read_text())
    return loaded


def test_the_tag_is_the_packages_version() -> None:
    assert _tag() == f"v{step.__version__}"


def test_every_image_and_action_reference_follows_the_release_tag() -> None:
    version = _tag().removeprefix("v")
    found = 0
    for path in PINNED_FILES:
        text = path.read_text()
        for match in IMAGE_REF.finditer(text):
            found += 1
            assert (match["sep"], match["ref"]) == (":", version), f"{path.relative_to(ROOT)}: {match[0]}"
        for match in ACTION_REF.finditer(text):
            found += 1
            assert match["ref"] == _tag(), f"{path.relative_to(ROOT)}: {match[0]}"
    assert found >= 6, "the Task, the template, the examples and the README pin the release"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG VERSION={version}\n" in dockerfile
    assert f'org.opencontainers.image.source="https://github.com/{REPOSITORY}"' in dockerfile


def test_the_release_workflow_publishes_what_the_pins_name() -> None:
    workflow = _workflow()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"push"} and triggers["push"] == {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}
    assert re.fullmatch(r"v[0-9]+\.[0-9]+\.[0-9]+", _tag())
    jobs = workflow["jobs"]
    assert jobs["image"]["needs"] == jobs["wheel"]["needs"] == "check", (
        "nothing is published before the check"
    )
    assert jobs["image"]["env"]["IMAGE"] == "ghcr.io/${{ github.repository }}"
    steps = {s.get("uses", "").split("@")[0]: s for s in jobs["image"]["steps"] if "uses" in s}
    build = steps["docker/build-push-action"]["with"]
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["push"] is True and build["sbom"] is True and build["provenance"] == "mode=max"
    assert build["tags"] == "${{ env.IMAGE }}:${{ env.VERSION }}"
    assert "VERSION=${{ env.VERSION }}" in build["build-args"]
    assert "sigstore/cosign-installer" in steps
    runs = " ".join(s.get("run", "") for s in jobs["image"]["steps"])
    assert 'cosign sign --yes "${IMAGE}@${DIGEST}"' in runs, "the pushed digest is signed"
    assert jobs["image"]["permissions"]["id-token"] == "write", "keyless signing needs the OIDC token"
    wheel_uses = [s.get("uses", "") for s in jobs["wheel"]["steps"]]
    assert "pypa/gh-action-pypi-publish@release/v1" in wheel_uses
    check_runs = " ".join(s.get("run", "") for s in jobs["check"]["steps"])
    assert "tests/ship/test_release.py" in check_runs


def test_actionlint_accepts_the_release_workflow(go_tools: dict[str, Path]) -> None:
    out = tool_run([go_tools["actionlint"], "-no-color", RELEASE])
    assert out.returncode == 0, out.stdout

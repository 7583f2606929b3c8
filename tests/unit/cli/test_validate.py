"""`canary-step validate`: exit codes, both streams, the examples' documented results, and start-up cost."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from step.cli import cli
from step.cli.plan import plan
from step.cli.validate import validate
from tests.reference import FLAGGER_CANARIES, TEMPLATEREF_CANARY

ROOT = Path(__file__).resolve().parents[3]
INVALID = sorted((ROOT / "examples" / "invalid").glob("*.yaml"))
REFERENCE_CANARIES = FLAGGER_CANARIES


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in (
        "CANARY_STEP_TEMPLATES_FROM_CLUSTER",
        "CANARY_STEP_NAMESPACE",
        "CANARY_STEP_OUTPUT",
        "CANARY_STEP_AGAINST",
    ):
        monkeypatch.delenv(name, raising=False)


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["validate", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def documented_block(name: str) -> str:
    """A fenced block in docs/spec.md that follows `<!-- name -->`."""
    text = (ROOT / "docs" / "spec.md").read_text()
    match = re.search(rf"<!-- {name} -->\n```[a-z]*\n(.*?)```", text, re.DOTALL)
    assert match, f"docs/spec.md has no block {name}"
    return match.group(1)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_each_invalid_example_gives_exactly_its_recorded_errors(path: Path) -> None:
    relative = str(path.relative_to(ROOT))
    expected = path.with_suffix(".errors").read_text().splitlines()
    code, out, err = run(relative)
    assert code == 2
    assert out.splitlines() == expected
    count = len(expected)
    assert err.splitlines()[-1] == f"invalid: {count} problem{'s' if count != 1 else ''} in 1 file"
    assert "Traceback" not in out + err


def test_every_invalid_example_has_its_errors_file_and_no_errors_file_is_orphaned() -> None:
    examples = {p.stem for p in INVALID}
    errors = {p.stem for p in (ROOT / "examples" / "invalid").glob("*.errors")}
    assert examples == errors
    assert len(examples) >= 10


def test_the_valid_examples_give_exactly_the_documented_result() -> None:
    command = documented_block("validate-examples").splitlines()[0].removeprefix("$ ")
    assert command == "canary-step validate examples/*.yaml"
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml"))
    code, out, err = run(*files)
    assert (code, out) == (0, "")
    assert err.splitlines() == documented_block("validate-examples").splitlines()[1:]


def test_the_documented_example_line_from_the_issue() -> None:
    code, out, _ = run("examples/invalid/out-of-range.yaml")
    assert code == 2
    assert (
        "examples/invalid/out-of-range.yaml:18: spec.analysis.stepWeight: -5 is less than the minimum of 0"
        in out
    )


def test_errors_from_several_files_are_all_reported_in_file_order() -> None:
    code, out, err = run("examples/invalid/webhooks.yaml", "examples/podinfo-canary.yaml", "missing.yaml")
    assert code == 2
    lines = out.splitlines()
    assert lines[0] == (
        "examples/invalid/webhooks.yaml:19: spec.analysis.webhooks[0].type: 'pre-rolout' is not one of: "
        "confirm-rollout, pre-rollout, rollout, confirm-promotion, post-rollout, event, rollback, "
        "confirm-traffic-increase; did you mean 'pre-rollout'?"
    )
    assert lines[-1] == "missing.yaml: no such file"
    assert err.splitlines()[-1] == "invalid: 5 problems in 2 files"


def test_json_output_is_the_payload_on_stdout() -> None:
    code, out, err = run("--output", "json", "examples/invalid/unknown-field.yaml")
    assert code == 2
    payload = json.loads(out)
    assert payload["valid"] is False
    assert payload["problems"] == [
        {
            "file": "examples/invalid/unknown-field.yaml",
            "line": 17,
            "path": "spec.analysis.stepweight",
            "message": "unknown field; did you mean 'stepWeight'?",
            "text": "examples/invalid/unknown-field.yaml:17: spec.analysis.stepweight: unknown field; "
            "did you mean 'stepWeight'?",
        }
    ]
    assert err == "invalid: 1 problem in 1 file\n"
    code, out, _ = run("-o", "json", "examples/podinfo-canary.yaml")
    assert code == 0
    assert json.loads(out) == {
        "valid": True,
        "problems": [],
        "unsupported": [],
        "notes": [],
        "resources": {"Canary": 1},
    }


@pytest.mark.parametrize("path", REFERENCE_CANARIES, ids=lambda p: p.name)
def test_flaggers_published_canaries_validate_with_templates_left_to_the_cluster(path: Path) -> None:
    code, out, err = run("--templates-from-cluster", "--against", "flagger", str(path))
    assert (code, out) == (0, ""), out
    assert err.splitlines()[-1] == "valid: 1 Canary"
    # What `run` cannot carry out is said, as a note, never passed over in silence.
    knative = "knative" in path.name
    code, out, err = run("--templates-from-cluster", str(path))
    if knative:
        assert (code, out) == (0, ""), out
    else:
        assert code == 2
        assert "`canary-step run` analyses Knative Services only" in out
        assert "`canary-step run` analyses Knative Services only" not in err


def test_what_run_cannot_carry_out_is_a_problem_with_its_line(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "podinfo-canary.yaml").read_text()
    assert "    stepWeight: 10\n" in text
    # Blue/green (iterations) is carried out; mirroring and a stepped promotion are not.
    blue_green = text.replace(
        "    stepWeight: 10\n", "    iterations: 10\n    mirror: true\n    stepWeightPromotion: 20\n"
    )
    path = tmp_path / "bg.yaml"
    path.write_text(blue_green)
    line_of = {
        key: blue_green.splitlines().index(f"    {key}") + 1
        for key in ("mirror: true", "stepWeightPromotion: 20")
    }
    code, out, _ = run(str(path))
    assert code == 2
    assert out.splitlines() == [
        f"{path}:{line_of['mirror: true']}: spec.analysis.mirror: traffic mirroring cannot be carried out "
        "for a Knative Service: a Knative Route sends each request to one revision (spec.traffic has "
        "percents and tags, no mirror), so nothing can copy the primary's requests to the canary; "
        "Blue/Green (iterations) with a load test on {{ canary_url }} is the nearest Knative can do",
        f"{path}:{line_of['stepWeightPromotion: 20']}: spec.analysis.stepWeightPromotion: a stepped "
        "promotion cannot be carried out for a Knative Service: the primary of a Knative Service is a "
        "pinned revision, not a Deployment that takes the canary's spec, so after the promotion there "
        "is no second revision to shift weight back from (Flagger's Knative router then writes splits "
        "that Knative rejects); `canary-step run` promotes 100 % in one write",
    ]
    code, out, err = run("--against", "flagger", "-o", "json", str(path))
    assert code == 0
    payload = json.loads(out)
    assert payload["valid"] is True
    assert [p["path"] for p in payload["unsupported"]] == [
        "spec.analysis.mirror",
        "spec.analysis.stepWeightPromotion",
    ]
    assert "note: " in err and "spec.analysis.mirror" in err
    # Blue/green alone is valid for `run`; with `match` it is A/B testing, which Knative cannot route.
    path.write_text(text.replace("    stepWeight: 10\n", "    iterations: 10\n"))
    assert run(str(path))[:2] == (0, "")
    ab = text.replace(
        "    stepWeight: 10\n",
        "    iterations: 10\n    match:\n      - headers:\n          x-canary:\n            exact: insider\n",
    )
    path.write_text(ab)
    code, out, _ = run(str(path))
    assert code == 2
    assert "spec.analysis.iterations: A/B testing (iterations with match) cannot be carried out for a " in out
    assert "Knative routes by percent and tag only, not by header or cookie" in out


def test_suspend_says_the_run_will_do_nothing(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "podinfo-canary.yaml").read_text()
    path = tmp_path / "suspended.yaml"
    path.write_text(text.replace("spec:\n", "spec:\n  suspend: true\n", 1))
    code, out, err = run(str(path))
    assert (code, out) == (0, "")
    assert f"note: {path}:" in err
    assert "suspend: true: `canary-step run` will do nothing (decision skipped, exit 0)" in err


def test_options_come_from_the_environment() -> None:
    path = TEMPLATEREF_CANARY
    assert run(path, "--against", "flagger")[0] == 2
    assert run(path, "--against", "flagger", env={"CANARY_STEP_TEMPLATES_FROM_CLUSTER": "1"})[0] == 0
    assert (
        run(path, env={"CANARY_STEP_TEMPLATES_FROM_CLUSTER": "1", "CANARY_STEP_AGAINST": "flagger"})[0] == 0
    )
    code, out, _ = run("examples/podinfo-canary.yaml", env={"CANARY_STEP_OUTPUT": "json"})
    assert code == 0 and json.loads(out)["valid"] is True


def test_the_namespace_option_places_objects_without_one(tmp_path: Path) -> None:
    canary = (ROOT / "examples" / "invalid" / "templates.yaml").read_text()
    assert "namespace: test" in canary
    code, _, _ = run("examples/podinfo-canary-basic-auth.yaml", "--namespace", "other")
    assert code == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\x02binary", "is a binary file, not YAML"),
        (b"", "is empty"),
        (b"apiVersion: [\n", "invalid YAML"),
        (b"- a\n- b\n", "expected a mapping (a Kubernetes object), got a list"),
    ],
)
def test_hostile_files_exit_2_without_a_traceback(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(content)
    code, out, err = run(str(path))
    assert code == 2
    assert message in out
    assert "Traceback" not in out + err


def test_a_directory_a_missing_file_and_a_huge_file(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"a: b\n" * (2 * 1024 * 1024))
    code, out, _ = run(str(tmp_path), str(tmp_path / "nope.yaml"), str(huge))
    assert code == 2
    assert sorted(out.splitlines()) == sorted(
        [
            f"{tmp_path}: is a directory, not a spec file",
            f"{tmp_path / 'nope.yaml'}: no such file",
            f"{huge}: file is 10.0 MiB; a spec file must be at most 1024 KiB",
        ]
    )


def test_no_file_is_a_usage_error() -> None:
    code, out, err = run()
    assert code == 2 and out == ""
    assert "Missing argument 'FILE...'" in err


@pytest.mark.parametrize("command", [validate, plan], ids=["validate", "plan"])
def test_every_option_is_explained_and_settable_from_the_environment(command: click.Command) -> None:
    result = CliRunner().invoke(cli, [command.name or "", "--help"], terminal_width=200)
    assert result.exit_code == 0
    options = [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]
    assert options
    for option in options:
        assert option.help, option.name
        assert option.envvar == f"CANARY_STEP_{(option.name or '').upper()}"
        assert option.show_envvar
        assert f"CANARY_STEP_{(option.name or '').upper()}" in result.stdout
    assert "Exit codes" in result.stdout


def test_the_group_help_lists_validate_and_plan() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "validate" in result.stdout and "plan" in result.stdout


def test_validate_does_not_import_the_kubernetes_client() -> None:
    probe = (
        "import sys\n"
        "from step.cli import main\n"
        "try:\n"
        "    main(['validate', 'examples/podinfo-canary.yaml', 'examples/podinfo-ksvc.yaml'])\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "heavy = sorted(m for m in ('kubernetes', 'urllib3', 'requests', 'tenacity') if m in sys.modules)\n"
        "print(code, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "0 []", done.stderr

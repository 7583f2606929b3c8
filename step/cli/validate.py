"""`canary-step validate FILE...`: every problem of the given spec files, each with file and line.

Owns: the validate command (options, output, exit code 0 valid / 2 invalid).
Must not: import `kubernetes` or anything that does (a test checks it), or talk to a cluster.
"""

from __future__ import annotations

import json
from collections import Counter

import click

from step.cli._common import (
    echo_err,
    files_argument,
    namespace_option,
    output_option,
    problem_json,
    query_problems,
    templates_from_cluster_option,
)
from step.errors import ExitCode
from step.spec.advice import no_data_advice
from step.spec.loader import load_files
from step.spec.problems import sort_key
from step.spec.rules import extension_problems, run_notes, run_support_problems

_PLURALS = {"Canary": "Canaries", "MetricTemplate": "MetricTemplates", "AlertProvider": "AlertProviders"}


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    short_help="Check spec files; every problem as FILE:LINE: path: message.",
)
@files_argument
@templates_from_cluster_option
@namespace_option
@output_option
@click.option(
    "--against",
    type=click.Choice(["run", "flagger"]),
    default="run",
    envvar="CANARY_STEP_AGAINST",
    show_envvar=True,
    help="`run`: a spec is valid when `canary-step run` can carry it out (Knative, the progressive "
    "canary or Blue/Green strategy). `flagger`: valid when Flagger would act on it; what `run` cannot "
    "carry out is then a note on stderr, and our extensions (onNoData) are problems.",
)
@click.pass_context
def validate(
    ctx: click.Context,
    *,
    files: tuple[str, ...],
    templates_from_cluster: bool,
    namespace: str,
    output: str,
    against: str,
) -> None:
    """Check Canary, MetricTemplate and AlertProvider specs without a cluster.

    FILE may hold several YAML documents. Documents of other kinds (a Knative Service, say) are
    skipped with a note; a flagger.app document of a wrong version or kind is a problem. Every
    templateRef must name a MetricTemplate in one of the FILEs unless --templates-from-cluster. A
    `kind: List` (kubectl get -o yaml) is checked item by item. What Flagger accepts but `canary-step
    run` cannot carry out (a non-Knative target, A/B match, mirror, stepWeightPromotion) is a problem,
    or with --against flagger a note.

    \b
    stdout: one line per problem, FILE:LINE: <path>: <what is wrong> (nothing when valid);
            with --output json, {"valid", "problems", "unsupported", "notes", "resources"}.
    stderr: notes (skipped documents, templates left to the cluster) and a summary.
    Exit codes: 0 valid, 2 invalid (or a usage error).
    """
    loaded = load_files(files, templates_from_cluster=templates_from_cluster, default_namespace=namespace)
    unsupported = run_support_problems(loaded)
    notes = sorted([*loaded.notes, *run_notes(loaded), *no_data_advice(loaded)], key=sort_key)
    problems = [*loaded.problems, *query_problems(loaded)]
    if against == "run":
        problems.extend(unsupported)
    else:
        notes = sorted([*notes, *unsupported], key=sort_key)
        problems.extend(extension_problems(loaded))
    problems.sort(key=sort_key)
    kinds = Counter(["Canary"] * len(loaded.canaries))
    kinds["MetricTemplate"] = len(loaded.metric_templates)
    kinds["AlertProvider"] = len(loaded.alert_providers)

    if output == "json":
        payload = {
            "valid": not problems,
            "problems": [problem_json(p) for p in problems],
            "unsupported": [problem_json(p) for p in unsupported],
            "notes": [problem_json(n) for n in notes],
            "resources": {k: v for k, v in kinds.items() if v},
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        for problem in problems:
            click.echo(str(problem))
    for note in notes:
        echo_err(f"note: {note}")
    if problems:
        bad_files = len({p.file for p in problems})
        echo_err(
            f"invalid: {len(problems)} problem{'s' if len(problems) != 1 else ''} in "
            f"{bad_files} file{'s' if bad_files != 1 else ''}"
        )
        ctx.exit(ExitCode.USAGE)
    found = ", ".join(f"{v} {_PLURALS[k] if v != 1 else k}" for k, v in kinds.items() if v)
    echo_err(f"valid: {found}")
    ctx.exit(ExitCode.OK)

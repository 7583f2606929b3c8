"""What `validate` and `plan` share: their options, loading the files, and query checks.

Owns: the `FILE...` argument and the options both commands take (each with its CANARY_STEP_* variable),
turning `Problem`s into output, and rendering every metric's query once (with `run`'s own rule,
`step.metrics.measure`) so a template error is a spec problem with its line.
Must not: decide anything about a canary run, or import `kubernetes` (validate must start fast).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from step.analysis.judge import relative_check
from step.metrics import measure
from step.metrics.measure import RenderedQuery
from step.metrics.queries import TemplateError
from step.spec.loader import DEFAULT_NAMESPACE, LoadedCanary, LoadedSpec
from step.spec.model import Canary, Metric
from step.spec.problems import Problem, format_path

F = TypeVar("F", bound=Callable[..., Any])

CANARY_REVISION_PLACEHOLDER = "<canary-revision>"


def files_argument(func: F) -> F:
    return click.argument("files", nargs=-1, required=True, metavar="FILE...")(func)


def templates_from_cluster_option(func: F) -> F:
    return click.option(
        "--templates-from-cluster",
        is_flag=True,
        default=False,
        envvar="CANARY_STEP_TEMPLATES_FROM_CLUSTER",
        show_envvar=True,
        help="Accept metric templateRefs to MetricTemplates that are not in the given files: `run` "
        "reads them from the cluster. Without it, every templateRef must resolve within the files.",
    )(func)


def namespace_option(func: F) -> F:
    return click.option(
        "--namespace",
        "-n",
        default=DEFAULT_NAMESPACE,
        metavar="NAMESPACE",
        envvar="CANARY_STEP_NAMESPACE",
        show_envvar=True,
        help="Namespace of objects whose metadata has none (as kubectl's current namespace would be).",
    )(func)


def output_option(func: F) -> F:
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["text", "json"]),
        default="text",
        envvar="CANARY_STEP_OUTPUT",
        show_envvar=True,
        help="Format of stdout: `text` for people, `json` for machines. Messages for people "
        "always go to stderr.",
    )(func)


def render_metric(
    loaded: LoadedSpec, canary: Canary, metric: Metric, *, canary_revision: str
) -> RenderedQuery:
    """The metric's query exactly as `run` sends it (`step.metrics.measure`). Raises TemplateError."""
    return measure.render_metric(
        canary, metric, templates=loaded.metric_templates, canary_revision=canary_revision
    )


def query_problems(loaded: LoadedSpec) -> list[Problem]:
    """A problem for each metric whose query Flagger could not render (unknown function, missing key)."""
    problems = []
    for item in loaded.canaries:
        problems.extend(_canary_query_problems(loaded, item))
    return problems


def _canary_query_problems(loaded: LoadedSpec, item: LoadedCanary) -> list[Problem]:
    out = []
    for i, metric in enumerate(item.canary.analysis.metrics):
        try:
            render_metric(loaded, item.canary, metric, canary_revision=CANARY_REVISION_PLACEHOLDER)
        except TemplateError as exc:
            if metric.template_ref is not None:
                path: tuple[str | int, ...] = ("spec", "analysis", "metrics", i, "templateRef")
                ns = metric.template_ref.namespace or item.canary.namespace
                message = f"MetricTemplate {ns}/{metric.template_ref.name}: query {exc}"
            else:
                path = ("spec", "analysis", "metrics", i, "query")
                message = str(exc)
            doc = item.document
            out.append(Problem(file=doc.file, line=doc.line_of(path), path=path, message=message))
        if metric.is_relative:
            try:
                relative_check(metric)
            except ValueError as exc:
                field = str(exc).split(".", 1)[0].split(" ", 1)[0]
                where: tuple[str | int, ...] = ("spec", "analysis", "metrics", i)
                if field in ("thresholdRange", "templateVariables", "interval"):
                    where = (*where, field)
                doc = item.document
                out.append(Problem(file=doc.file, line=doc.line_of(where), path=where, message=str(exc)))
    return out


def problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "path": format_path(problem.path),
        "message": problem.message,
        "text": str(problem),
    }


def echo_err(message: str) -> None:
    click.echo(message, err=True)

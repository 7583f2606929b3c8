"""`canary-step plan FILE...`: what a run of this spec would do, computed without a cluster.

Owns: the plan command and `build_plan`, a pure prediction from a `SpecBundle`: the weight schedule,
the tick count, the earliest promotion and the earliest and latest rollback — all read off the state
machine's own run against a scripted world (`step.analysis.simulator`: every check passing, then
every check failing, then failing only at max weight), so the plan cannot drift from `run` — the
webhooks in firing order, and each metric's query as `run` renders it (`step.metrics.measure`).
Must not: import `kubernetes`, talk to a cluster, or make decisions for a run (the state machine in
`step.analysis` does; see docs/spec.md).

What comes out, with I the analysis interval, N the threshold (<= 0 means 1) and k the advancing ticks (the
weight steps to max weight, or `iterations`); t = 0 is the first analysis tick, once the canary revision
is Ready (we wait up to progressDeadlineSeconds for that, and roll back if it is not). Ticks are numbered
from 1, as `run` prints them and the report and the `iterations` result count them:
  - tick 1 runs the pre-rollout hooks and the first weight step, no metrics;
  - promotion comes on the tick after max weight: earliest promotion at k*I, after k+1 ticks, k of
    which evaluate metrics;
  - the threshold is checked at the start of a tick, so rollback comes on the tick after the N-th
    failed check, and a failed tick does not advance: earliest rollback N*I if pre-rollout hooks can
    fail on tick 1, else (N+1)*I; latest (k+N)*I (all k steps pass, then N failures at max weight).
JSON keys are camelCase, as in the JSON report and in Kubernetes objects (`_plan_json`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import click

from step.analysis.evaluate import bounds_text
from step.analysis.judge import relative_check
from step.analysis.simulator import simulate
from step.analysis.strategy import strategy_for
from step.cli._common import (
    CANARY_REVISION_PLACEHOLDER,
    echo_err,
    files_argument,
    namespace_option,
    output_option,
    problem_json,
    query_problems,
    render_metric,
    templates_from_cluster_option,
)
from step.errors import ExitCode, SpecError
from step.metrics.measure import PRIMARY_REVISION_PLACEHOLDER, render_comparison
from step.metrics.preview import preview
from step.notifiers.preview import planned_alerts
from step.spec.advice import no_data_advice
from step.spec.durations import format_duration
from step.spec.loader import LoadedSpec, load_files
from step.spec.model import Canary, Metric, WebhookType
from step.spec.problems import Problem, sort_key
from step.spec.rules import is_knative_target, run_notes, run_support_problems

# When each webhook type fires, in the order a run reaches them (flagger-semantics.md 1.3, 1.6, 4.1).
WEBHOOK_STAGES: tuple[tuple[WebhookType, str], ...] = (
    (WebhookType.CONFIRM_ROLLOUT, "before anything moves; a failure holds the rollout (gate)"),
    (WebhookType.PRE_ROLLOUT, "on the first tick, before the first weight step; a failure is a failed check"),
    (WebhookType.ROLLBACK, "at the start of every tick; a success rolls back (manual rollback)"),
    (WebhookType.ROLLOUT, "on every tick after the first, before the metrics; a failure is a failed check"),
    (WebhookType.CONFIRM_TRAFFIC_INCREASE, "before each weight step; a failure holds the step (gate)"),
    (WebhookType.CONFIRM_PROMOTION, "at max weight, before promoting; a failure holds promotion (gate)"),
    (WebhookType.POST_ROLLOUT, "after promotion or rollback; a failure is only reported"),
    (WebhookType.EVENT, "on every event"),
)
# Blue/green reaches them at other moments: nothing moves until the promotion.
BLUE_GREEN_STAGES: dict[WebhookType, str] = {
    WebhookType.PRE_ROLLOUT: "on the first tick, once the canary revision is tagged at 0 %; a failure is a "
    "failed check",
    WebhookType.CONFIRM_TRAFFIC_INCREASE: "never: blue/green moves no traffic before the promotion",
    WebhookType.CONFIRM_PROMOTION: "after the last iteration, before promoting; a failure holds promotion "
    "(gate)",
}


@dataclass(frozen=True, kw_only=True)
class PlannedWebhook:
    name: str
    type: str
    url: str
    when: str


@dataclass(frozen=True, kw_only=True)
class PlannedMetric:
    name: str
    source: str
    interval: str
    threshold_min: float | None
    threshold_max: float | None
    on_no_data: str
    query: str | None
    # A MetricTemplate's provider and the exact request `run` sends for it, credentials masked.
    provider: str | None = None
    request: dict[str, Any] | None = None
    # A compared (-vs-primary) metric: the query for the primary revision, how it is judged, and the
    # samples each revision needs (fewer: no data), or why the comparison is misconfigured.
    primary_query: str | None = None
    comparison: str | None = None
    min_samples: int | None = None


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A run's shape, predicted. Times are seconds from the first analysis tick (None: cannot happen)."""

    canary: str
    target: str
    provider: str
    strategy: str  # "canary", "ab-testing", "blue-green" or "skip-analysis"
    canary_revision: str
    interval_seconds: float
    threshold: int
    progress_deadline_seconds: int
    schedule: tuple[int, ...]
    schedule_text: str
    ticks: int | None  # None: the schedule never promotes
    metric_ticks: int | None
    earliest_promotion_seconds: float | None
    earliest_rollback_seconds: float | None
    latest_rollback_seconds: float | None
    webhooks: tuple[PlannedWebhook, ...]
    metrics: tuple[PlannedMetric, ...]
    alerts: tuple[dict[str, str], ...] = ()  # analysis.alerts routed, without any address
    # Blue/green: where webhooks reach the canary revision (`{{ canary_url }}`), as Knative forms it.
    canary_url: str | None = None
    simulated: bool = True  # False: more ticks than plan simulates, so no times (blue/green only)


def build_plan(loaded: LoadedSpec, canary: Canary, *, canary_revision: str) -> Plan:
    """The plan of one canary; `loaded` supplies its MetricTemplates. Raises TemplateError."""
    analysis = canary.analysis
    interval = analysis.interval_seconds
    threshold = analysis.threshold
    strategy = "skip-analysis" if canary.skip_analysis else strategy_for(canary).name
    if analysis.iterations > 0 and _has_match(loaded, canary):
        # Flagger: iterations with match is A/B testing (`run` refuses it, spec.rules); its ticks are
        # Blue/Green's, which is what the machine simulates.
        strategy = "ab-testing"
    schedule, steps, text, promotion, earliest_rollback, latest_rollback = _simulated_timing(canary)

    blue_green = strategy_for(canary).counts_iterations and not canary.skip_analysis
    stages = {**dict(WEBHOOK_STAGES), **(BLUE_GREEN_STAGES if blue_green else {})}
    planned_hooks = tuple(
        PlannedWebhook(name=h.name, type=kind.value, url=h.url, when=stages[kind])
        for kind, _ in WEBHOOK_STAGES
        for h in analysis.hooks(kind)
    )
    planned_metrics = tuple(
        _planned_metric(loaded, canary, m, canary_revision=canary_revision) for m in analysis.metrics
    )
    return Plan(
        canary=f"{canary.namespace}/{canary.name}",
        target=f"{canary.target_api_version} {canary.target_kind} {canary.target_name}",
        provider=canary.provider,
        strategy=strategy,
        canary_revision=canary_revision,
        interval_seconds=interval,
        threshold=threshold,
        progress_deadline_seconds=canary.progress_deadline_seconds,
        schedule=schedule,
        schedule_text=text,
        ticks=None if steps is None else steps + 1,
        metric_ticks=None if steps is None or strategy == "skip-analysis" else steps,
        earliest_promotion_seconds=promotion,
        earliest_rollback_seconds=earliest_rollback,
        latest_rollback_seconds=latest_rollback,
        webhooks=planned_hooks,
        metrics=planned_metrics,
        alerts=tuple(planned_alerts(canary, loaded.alert_providers)),
        canary_url=f"http://canary-{canary.target_name}.{canary.namespace}.<domain>" if blue_green else None,
        simulated=simulated(canary),
    )


SIMULATED_TICKS = 1000
_Timing = tuple[tuple[int, ...], int | None, str, float | None, float | None, float | None]


def _simulated_timing(canary: Canary) -> _Timing:
    """Schedule, advancing ticks, schedule text, promotion and rollback times: the machine's own run.

    The earliest rollback: every check fails from the start. The latest: every check passes until
    the weight the promotion follows, then fails (a pre-rollout failure can only come early).
    """
    strategy = strategy_for(canary)
    iterations = canary.analysis.iterations if strategy.counts_iterations else 0
    if not simulated(canary):
        text = f"0 for {iterations} iterations -> promote (not simulated: over {SIMULATED_TICKS} ticks)"
        return (), iterations, text, None, None, None
    bound = SIMULATED_TICKS
    passing = simulate(canary, max_ticks=bound)
    promotion = passing.promoted_at
    routed = tuple(w for _, w in passing.weights[:-1])  # the last write is the promotion
    if promotion is None:
        schedule: tuple[int, ...] = ()
        text = "never promotes"
    elif canary.skip_analysis:
        schedule, text = (), "promote (analysis skipped)"
    elif strategy.counts_iterations:
        schedule = strategy.schedule()
        text = f"0 for {iterations} iterations -> promote"
    else:
        schedule = (0, *routed)
        text = " -> ".join(str(w) for w in schedule) + " -> promote"
    steps = None if promotion is None else (len(schedule) - 1 if schedule else len(routed))
    early = simulate(canary, failing=lambda state: True, max_ticks=bound).rolled_back_at
    late = simulate(
        canary,
        failing=lambda state: strategy.ready_to_promote(
            canary_weight=state.canary_weight, iterations_passed=state.iterations_passed
        ),
        max_ticks=bound,
    ).rolled_back_at
    found = [t for t in (early, late) if t is not None]
    latest = None if promotion is None else max(found, default=None)
    return schedule, steps, text, promotion, min(found, default=None), latest


def simulated(canary: Canary) -> bool:
    """Whether plan simulates the run: blue/green takes `iterations` + 1 ticks to promote and up to
    `threshold` more to roll back, and the simulation stops at `SIMULATED_TICKS` (0.7 ms each)."""
    analysis = canary.analysis
    if canary.skip_analysis or not strategy_for(canary).counts_iterations:
        return True  # the weight schedule promotes within 101 ticks
    return analysis.iterations + analysis.threshold + 2 <= SIMULATED_TICKS


def _has_match(loaded: LoadedSpec, canary: Canary) -> bool:
    document = next((c.document for c in loaded.canaries if c.canary is canary), None)
    data = document.data if document is not None else {}
    return bool(data.get("spec", {}).get("analysis", {}).get("match"))


def _planned_metric(
    loaded: LoadedSpec, canary: Canary, metric: Metric, *, canary_revision: str
) -> PlannedMetric:
    rendered = render_metric(loaded, canary, metric, canary_revision=canary_revision)
    if rendered.source == "builtin" and not is_knative_target(
        {"apiVersion": canary.target_api_version, "kind": canary.target_kind}
    ):
        # Our built-in queries are Flagger's Knative ones; for another provider they would be wrong.
        rendered = dataclasses.replace(rendered, query=None)
    template = loaded.metric_templates.get(rendered.template) if rendered.template else None
    provider, request = None, None
    if template is not None and rendered.query is not None:
        provider = template.provider_type
        try:
            request = preview(
                template, rendered.query, interval=metric.interval, default_address=canary.metrics_server
            )["request"]
        except SpecError:
            request = None  # validate reports the template; plan shows the query alone
    primary_query, comparison, needed = None, None, None
    if metric.is_relative:
        _, for_primary = render_comparison(
            canary,
            metric,
            templates=loaded.metric_templates,
            canary_revision=canary_revision,
            primary_revision=PRIMARY_REVISION_PLACEHOLDER,
        )
        primary_query = for_primary.query
        try:
            check = relative_check(metric)
            comparison, needed = check.text, check.min_samples
        except ValueError as err:
            comparison = f"misconfigured: {err}"
    return PlannedMetric(
        primary_query=primary_query,
        comparison=comparison,
        min_samples=needed,
        provider=provider,
        request=request,
        name=metric.name,
        source=rendered.source,
        interval=metric.interval,
        threshold_min=metric.threshold_min,
        threshold_max=metric.threshold_max,
        on_no_data=metric.on_no_data.value,
        query=rendered.query,
    )


def _when(seconds: float | None, interval: float) -> str:
    if seconds is None:
        return "never"
    tick = (round(seconds / interval) if interval else 0) + 1  # numbered from 1, as `run` prints ticks
    return f"{format_duration(seconds) if seconds else '0s'} (tick {tick})"


def _bounds(metric: PlannedMetric) -> str:
    return bounds_text(metric.threshold_min, metric.threshold_max, unbounded="any value")


def format_plan(plan: Plan) -> str:
    """The plan for people (what `plan` prints on stdout)."""
    interval = plan.interval_seconds
    lines = [
        f"Canary {plan.canary}: {plan.target}, provider {plan.provider or '(none)'}",
        f"Strategy:          {plan.strategy}",
        f"Weight schedule:   {plan.schedule_text}",
        f"Interval:          {format_duration(interval)}; threshold {plan.threshold} failed checks",
    ]
    if plan.ticks is not None:
        lines.append(
            f"Analysis ticks:    {plan.ticks} ({plan.metric_ticks} evaluate metrics; the first does not)"
        )
    if plan.canary_url is not None:
        lines.append(
            "Canary revision:   0 % of the traffic until the promotion, tag `canary`: webhooks reach it at "
            f"{plan.canary_url} ({{{{ canary_url }}}} in their metadata, canaryUrl in the payload)"
        )
    lines.append(
        f"Before tick 1:     the canary revision must be Ready within {plan.progress_deadline_seconds}s "
        "(progressDeadlineSeconds), else rollback"
    )
    if plan.simulated:
        lines += [
            "Times below count from t = 0, tick 1 (the first analysis tick), with every gate open:",
            f"  earliest promotion: {_when(plan.earliest_promotion_seconds, interval)}",
            f"  earliest rollback:  {_when(plan.earliest_rollback_seconds, interval)}",
            f"  latest rollback:    {_when(plan.latest_rollback_seconds, interval)}",
        ]
    else:
        lines.append(f"Times:             not simulated (the run may take more than {SIMULATED_TICKS} ticks)")
    lines.append("Webhooks, in the order they fire:" if plan.webhooks else "Webhooks: none")
    for i, hook in enumerate(plan.webhooks, 1):
        lines.append(f"  {i}. {hook.name} ({hook.type}) {hook.url}")
        lines.append(f"     {hook.when}")
    lines.append(f"Metrics (canary revision {plan.canary_revision}):" if plan.metrics else "Metrics: none")
    for metric in plan.metrics:
        lines.append(
            f"  {metric.name}: {_bounds(metric)} over {metric.interval} ({metric.source}; "
            f"no data: {metric.on_no_data})"
        )
        if metric.query is not None:
            lines.append(f"    {metric.query}")
        elif metric.source == "builtin":
            lines.append(
                "    (not shown: the built-in queries are Knative's, and `run` supports Knative only)"
            )
        else:
            lines.append("    (query read from the cluster)")
        if metric.comparison is not None:
            lines.append(
                f"    against the primary revision: {metric.primary_query or '(query read from the cluster)'}"
            )
            lines.append(f"    {metric.comparison}")
        if metric.request is not None:
            call = metric.request.get("api") or f"{metric.request['method']} {metric.request['url']}"
            lines.append(f"    {metric.provider}: {call}")
            lines += [f"      {key}: {value}" for key, value in (metric.request.get("headers") or {}).items()]
            if metric.request.get("body") is not None:
                lines.append(f"      body: {metric.request['body']}")
            if "params" in metric.request:  # an SDK call (cloudwatch)
                lines.append(f"      {json.dumps(metric.request['params'])}")
    if plan.alerts:
        lines.append("Alerts (Flagger's severity routing: info gets all, warn warn and error, error error):")
        for alert in plan.alerts:
            where = ", ".join(f"{k} {v}" for k, v in alert.items() if k in ("channel", "username", "proxy"))
            lines.append(
                f"  {alert['name']}: {alert['severity']} -> {alert['provider']} ({alert['type']}"
                + (f", {where}" if where else "")
                + (f"; address {alert['address']})" if "address" in alert else ")")
            )
    return "\n".join(lines)


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    short_help="Dry run: weight schedule, timing, webhooks and queries.",
)
@files_argument
@click.option(
    "--canary-revision",
    default=CANARY_REVISION_PLACEHOLDER,
    metavar="NAME",
    envvar="CANARY_STEP_CANARY_REVISION",
    show_envvar=True,
    help="The Knative Revision to put in the queries' {{ route }} (Flagger's latest created "
    "revision, e.g. podinfo-00002). The default is a placeholder.",
)
@templates_from_cluster_option
@namespace_option
@output_option
@click.option(
    "--check",
    is_flag=True,
    default=False,
    envvar="CANARY_STEP_CHECK",
    show_envvar=True,
    help="Also run `run`'s preflight against the cluster, writing nothing: the Knative Service exists "
    "with a Ready revision serving, --container resolves, the metrics server and each MetricTemplate's "
    "provider answer, the webhook URLs resolve, the Service's lease is free. Exit 2 or 4 as `run` would.",
)
@click.option(
    "--kubeconfig",
    envvar="CANARY_STEP_KUBECONFIG",
    show_envvar=True,
    metavar="PATH",
    help="With --check: as `run --kubeconfig`.",
)
@click.option(
    "--context",
    envvar="CANARY_STEP_CONTEXT",
    show_envvar=True,
    metavar="NAME",
    help="With --check: as `run --context`.",
)
@click.option(
    "--metrics-server",
    envvar="CANARY_STEP_METRICS_SERVER",
    show_envvar=True,
    metavar="URL",
    default="http://prometheus:9090",
    help="With --check: as `run --metrics-server`.",
)
@click.option(
    "--image",
    envvar="CANARY_STEP_IMAGE",
    show_envvar=True,
    metavar="IMAGE",
    help="With --check: as `run --image` (checks that --container resolves; sets nothing).",
)
@click.option(
    "--container",
    envvar="CANARY_STEP_CONTAINER",
    show_envvar=True,
    metavar="NAME",
    help="With --check: as `run --container`.",
)
@click.pass_context
def plan(
    ctx: click.Context,
    *,
    files: tuple[str, ...],
    canary_revision: str,
    templates_from_cluster: bool,
    namespace: str,
    output: str,
    check: bool,
    kubeconfig: str | None,
    context: str | None,
    metrics_server: str,
    image: str | None,
    container: str | None,
) -> None:
    """Show what `run` would do with the one Canary in FILE..., without a cluster.

    FILE... may also hold the MetricTemplates the Canary refers to. Prints the weight schedule
    (e.g. 0 -> 10 -> 20 -> 30 -> 40 -> 50 -> promote), the analysis ticks, the earliest promotion and
    the earliest and latest rollback, the webhooks in the order they fire and each metric's query as
    Flagger renders it.

    \b
    Times count from t = 0, tick 1: the first analysis tick (once the canary revision is Ready);
    ticks are numbered from 1, as `run` prints them and the report counts them; with
    I = interval, N = threshold and k = weight steps to max weight (or iterations):
      earliest promotion  k*I   (promotion comes on the tick after max weight)
      earliest rollback   N*I with pre-rollout hooks (they can fail on tick 1), else (N+1)*I
      latest rollback     (k+N)*I   (the threshold is checked at the start of a tick)
    Gates (confirm-*) are assumed open. Before tick 1, `run` waits up to
    progressDeadlineSeconds for the canary revision to be Ready and rolls back if
    it is not (Flagger ignores that deadline for Knative; we honour it).

    \b
    stdout: the plan (--output json: the same as one JSON object), then with --check one line
            per preflight check (JSON: `preflight`).
    stderr: problems with the spec, as `validate` prints them.
    Exit codes: 0 planned (and, with --check, every check passed), 2 invalid spec, not exactly one
    Canary, or a check found a mistake no retry fixes, 4 a check failed that a retry may fix.
    """
    loaded = load_files(files, templates_from_cluster=templates_from_cluster, default_namespace=namespace)
    problems: list[Problem] = sorted([*loaded.problems, *query_problems(loaded)], key=sort_key)
    if not problems and len(loaded.canaries) != 1:
        found = ", ".join(f"{c.canary.namespace}/{c.canary.name}" for c in loaded.canaries) or "none"
        problems.append(
            Problem(
                file=", ".join(files),
                line=0,
                path=(),
                message=f"plan needs exactly one Canary, found {len(loaded.canaries)} ({found})",
            )
        )
    for note in [*loaded.notes, *no_data_advice(loaded)]:
        echo_err(f"note: {note}")
    if problems:
        for problem in problems:
            echo_err(str(problem))
        if output == "json":
            click.echo(json.dumps({"problems": [problem_json(p) for p in problems]}, indent=2))
        ctx.exit(ExitCode.USAGE)
    canary = loaded.canaries[0].canary
    # What `run` cannot carry out (spec.rules, as validate reports it), and suspend / skipAnalysis.
    for note in [*run_support_problems(loaded), *run_notes(loaded)]:
        echo_err(f"note: {note}")
    if not is_knative_target({"apiVersion": canary.target_api_version, "kind": canary.target_kind}):
        echo_err(
            "note: `canary-step run` supports Knative Services only; built-in metric queries are not shown "
            f"(Flagger's for provider {canary.provider or '(none)'} differ from the Knative ones)"
        )
    result = build_plan(loaded, canary, canary_revision=canary_revision)
    lines: list[str] = []
    failure: Any = None
    if check:
        from step.cli.run import _Run  # noqa: PLC0415 (the Kubernetes client only with --check)

        runner = _Run(
            ctx=ctx,
            namespace=None,
            results_dir=None,
            report_path=None,
            log_format="text",
            traffic_timeout=60.0,
        )
        lines, failure = runner.check(
            files=files,
            kubeconfig=kubeconfig,
            context=context,
            metrics_server=metrics_server,
            image=image,
            container=container,
        )
    if output == "json":
        data = _plan_json(result)
        if check:
            data["preflight"] = {"ok": failure is None, "checks": lines}
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(format_plan(result))
        if check:
            click.echo("Preflight (against the cluster; nothing was written):")
            click.echo("\n".join(f"  {line.removeprefix('preflight: ')}" for line in lines))
    if failure is not None:
        code = int(failure.exit_code)
        said = str(failure).rstrip(".")
        echo_err(f"preflight failed ({failure.reason}): {said}. Traffic: untouched. Exit {code}.")
        ctx.exit(code)
    ctx.exit(ExitCode.OK)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _json_of(value: Any) -> Any:
    """Our dataclasses with camelCase keys; mappings (requests, alerts) keep their own keys."""
    if is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): _json_of(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_json_of(v) for v in value]
    return value


def _plan_json(plan: Plan) -> dict[str, Any]:
    """The plan for machines: one key style with the JSON report (camelCase)."""
    data: dict[str, Any] = _json_of(plan)
    return data

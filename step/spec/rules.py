"""The rules a JSON Schema cannot say: Flagger's own checks, and ours that make a run able to finish.

Owns: per-document rules (`canary_rules`, `metric_template_rules`, `alert_provider_rules`), and what
`canary-step run` can carry out for a Knative Service (`run_support_findings`, `run_support_problems`,
`run_notes`), so that `validate`, `plan` and `run` report the same findings.
Must not: repeat what the schema already reports, or import kube, click, tenacity, requests.

Every rule reads the plain YAML data defensively: a value of the wrong type is the schema's to report,
so a rule skips it rather than fail.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from step.spec.durations import flagger_duration_problem, parse_duration
from step.spec.knative import tag_host_problem
from step.spec.model import BUILTIN_METRICS, CANARY_URL_VARIABLE, KNATIVE_API_VERSION
from step.spec.problems import JsonPath, Problem

if TYPE_CHECKING:  # the loader imports this module
    from step.spec.loader import LoadedSpec

Finding = tuple[JsonPath, str]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def is_knative_target(target_ref: Mapping[str, Any]) -> bool:
    """Flagger's `IsKnativeService`: kind Service and apiVersion serving.knative.dev/v1, exactly."""
    return target_ref.get("kind") == "Service" and target_ref.get("apiVersion") == KNATIVE_API_VERSION


def canary_rules(canary: Mapping[str, Any]) -> Iterator[Finding]:
    spec = _map(canary.get("spec"))
    target = _map(spec.get("targetRef"))
    provider = spec.get("provider")
    if target and isinstance(provider, str | None):
        knative = is_knative_target(target)
        if knative and provider != "knative":
            if provider:
                message = (
                    f"can't use {provider} provider with Knative Service as target; set provider: knative"
                )
            else:
                message = (
                    "can't use Knative Service as target without provider: knative (Flagger checks "
                    "spec.provider, not its -mesh-provider flag)"
                )
            yield ("spec", "provider"), message
        if not knative and provider == "knative":
            message = (
                f"can't use {target.get('apiVersion')}/{target.get('kind')} as target if provider is set "
                f"to knative; the target must be a {KNATIVE_API_VERSION} Service"
            )
            yield ("spec", "targetRef"), message
        if knative and "autoscalerRef" in spec:
            yield ("spec", "autoscalerRef"), "can't use autoscaler with Knative Service"
    for i, mirror in enumerate(_list(_map(spec.get("service")).get("mirror"))):
        ref = _map(_map(mirror).get("backendRef"))
        if (
            ref
            and ref.get("group", "") == ""
            and ref.get("kind", "Service") == "Service"
            and "port" not in ref
        ):
            # Flagger's CRD has this as a CEL rule (x-kubernetes-validations), Gateway API's own.
            yield ("spec", "service", "mirror", i, "backendRef"), "Must have port for Service reference"
    analysis = _map(spec.get("analysis"))
    yield from _schedule_rules(analysis, skip_analysis=spec.get("skipAnalysis") is True)
    yield from _duration_rule(analysis.get("interval"), ("spec", "analysis", "interval"))
    yield from _metric_rules(_list(analysis.get("metrics")))
    yield from _webhook_rules(_list(analysis.get("webhooks")))
    yield from _unique_names(_list(analysis.get("alerts")), ("spec", "analysis", "alerts"), "alert")
    affinity = _map(analysis.get("sessionAffinity"))
    if affinity.get("cookieName") and affinity.get("cookieName") == affinity.get("primaryCookieName"):
        yield ("spec", "analysis", "sessionAffinity", "primaryCookieName"), "must differ from cookieName"


def _schedule_rules(analysis: Mapping[str, Any], *, skip_analysis: bool) -> Iterator[Finding]:
    # Exactly one of iterations, stepWeight and stepWeights is the schema's `oneOf`, as in Flagger's CRD.
    base: JsonPath = ("spec", "analysis")
    given = [k for k in ("iterations", "stepWeight", "stepWeights") if k in analysis]
    if len(given) != 1:
        return
    previous = 0
    for i, weight in enumerate(_int(w) for w in _list(analysis.get("stepWeights"))):
        if weight is None:
            return
        if weight <= previous and i > 0:
            message = (
                f"{weight} is not greater than the step before it ({previous}): stepWeights must be "
                "strictly ascending"
            )
            yield (*base, "stepWeights", i), message
            return
        previous = weight
    if skip_analysis:
        return
    if _int(analysis.get("stepWeight")) == 0:
        message = "0 never moves traffic, so the canary can never be promoted; use a step above 0"
        yield (*base, "stepWeight"), message
    elif _int(analysis.get("iterations")) == 0:
        yield (*base, "iterations"), "0 iterations never promote; use 1 or more, or a stepWeight"


def _duration_rule(value: Any, path: JsonPath) -> Iterator[Finding]:
    # The schema checks Flagger's CRD pattern; Flagger then reads the value with Go's time.ParseDuration.
    if not isinstance(value, str):
        return
    problem = flagger_duration_problem(value)
    if problem is not None:
        yield path, problem
    elif parse_duration(value) <= 0:
        yield path, f"{value!r} must be greater than 0"


def _metric_rules(metrics: Sequence[Any]) -> Iterator[Finding]:
    base: JsonPath = ("spec", "analysis", "metrics")
    yield from _unique_names(metrics, base, "metric")
    for i, metric in enumerate(metrics):
        if not isinstance(metric, dict):
            continue
        yield from _duration_rule(metric.get("interval"), (*base, i, "interval"))
        bounds = _map(metric.get("thresholdRange"))
        low, high = _num(bounds.get("min")), _num(bounds.get("max"))
        if low is not None and high is not None and low > high:
            message = f"min {bounds['min']} is greater than max {bounds['max']}: no value can pass"
            yield (*base, i, "thresholdRange"), message
        name = metric.get("name")
        if "query" in metric and "templateRef" in metric:
            yield (*base, i), "set either query or templateRef, not both"
        elif (
            "query" not in metric
            and "templateRef" not in metric
            and isinstance(name, str)
            and name not in BUILTIN_METRICS
        ):
            message = (
                f"{name!r} is not a built-in metric ({', '.join(BUILTIN_METRICS)}): give it a "
                "query or a templateRef"
            )
            yield (*base, i, "name"), message


def _webhook_rules(webhooks: Sequence[Any]) -> Iterator[Finding]:
    base: JsonPath = ("spec", "analysis", "webhooks")
    yield from _unique_names(webhooks, base, "webhook")
    for i, hook in enumerate(webhooks):
        if not isinstance(hook, dict):
            continue
        yield from _duration_rule(hook.get("timeout"), (*base, i, "timeout"))
        url = hook.get("url")
        if isinstance(url, str) and url:
            yield from _url_rule(url, (*base, i, "url"))


def _url_rule(url: str, path: JsonPath) -> Iterator[Finding]:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        yield path, f"{url!r} is not a valid URL"
        return
    if parts.scheme not in ("http", "https") or not parts.hostname:
        yield path, f"{url!r} is not an absolute http:// or https:// URL"


def _unique_names(items: Sequence[Any], base: JsonPath, what: str) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            yield (*base, i, "name"), f"duplicate {what} name {name!r} (also {base[-1]}[{seen[name]}])"
        else:
            seen[name] = i


def metric_template_rules(template: Mapping[str, Any]) -> Iterator[Finding]:
    provider = _map(_map(template.get("spec")).get("provider"))
    address = provider.get("address")
    if isinstance(address, str) and address:
        yield from _url_rule(address, ("spec", "provider", "address"))


def alert_provider_rules(alert_provider: Mapping[str, Any]) -> Iterator[Finding]:
    # address or secretRef, exactly one, is the schema's `oneOf` (as in Flagger's CRD).
    return iter(())


# -- what `canary-step run` can carry out --------------------------------------------------------------------
# Flagger accepts these, but for a Knative Service its Knative path does not do them meaningfully
# (flagger-semantics.md section 2): A/B ignores `match`, mirroring loops at weight 0, and a promotion step
# writes splits Knative rejects. `run` refuses them (exit 2) rather than run something other than asked;
# `validate` and `plan` report the same findings from here. Blue/Green (iterations without match), which
# Flagger's Knative path leaves at 0 % with nothing to measure, `run` carries out through the canary tag.


def run_support_findings(canary: Mapping[str, Any]) -> Iterator[Finding]:
    """What in one valid Canary (plain data) `canary-step run` cannot carry out, each with its path."""
    spec = _map(canary.get("spec"))
    target = _map(spec.get("targetRef"))
    if not is_knative_target(target) and spec.get("provider") != "knative":
        shown = f"provider {spec.get('provider')!r}" if "provider" in spec else "no provider"
        message = (
            f"`canary-step run` analyses Knative Services only (provider: knative, targetRef "
            f"{KNATIVE_API_VERSION} Service); this Canary has {shown} and targetRef "
            f"{target.get('apiVersion')} {target.get('kind')}"
        )
        yield ("spec", "targetRef"), message
        return
    name = target.get("name")
    problem = tag_host_problem(name) if isinstance(name, str) and name else None
    if problem is not None:
        yield ("spec", "targetRef", "name"), problem
    analysis = _map(spec.get("analysis"))
    iterations = _int(analysis.get("iterations"))
    if iterations is not None and iterations > 0 and analysis.get("match"):
        message = (
            "A/B testing (iterations with match) cannot be carried out for a Knative Service: Knative "
            "routes by percent and tag only, not by header or cookie; drop `match` for Blue/Green "
            "(iterations at 0 % on the canary tag)"
        )
        yield ("spec", "analysis", "iterations"), message
    if analysis.get("mirror") is True:
        message = (
            "traffic mirroring cannot be carried out for a Knative Service: a Knative Route sends each "
            "request to one revision (spec.traffic has percents and tags, no mirror), so nothing can copy "
            "the primary's requests to the canary; Blue/Green (iterations) with a load test on "
            "{{ canary_url }} is the nearest Knative can do"
        )
        yield ("spec", "analysis", "mirror"), message
    promotion = _int(analysis.get("stepWeightPromotion"))
    if promotion is not None and promotion > 0:
        message = (
            "a stepped promotion cannot be carried out for a Knative Service: the primary of a Knative "
            "Service is a pinned revision, not a Deployment that takes the canary's spec, so after the "
            "promotion there is no second revision to shift weight back from (Flagger's Knative router "
            "then writes splits that Knative rejects); `canary-step run` promotes 100 % in one write"
        )
        yield ("spec", "analysis", "stepWeightPromotion"), message
    blue_green = iterations is not None and iterations > 0
    yield from _canary_url_findings(_list(analysis.get("webhooks")), blue_green=blue_green)


def _canary_url_findings(webhooks: Sequence[Any], *, blue_green: bool) -> Iterator[Finding]:
    """`{{ canary_url }}` where the canary revision can have no tagged URL yet, or is never given it."""
    for i, hook in enumerate(webhooks):
        if not isinstance(hook, dict):
            continue
        kind = hook.get("type") or "rollout"
        if kind == "confirm-rollout":
            why = "confirm-rollout hooks run before the canary revision is tagged"
        elif kind == "pre-rollout" and not blue_green:
            why = (
                "with the canary strategy the canary revision is tagged by its first weight step, after "
                "the pre-rollout hooks (blue/green, `iterations`, tags it before them)"
            )
        elif kind == "event":
            why = "event hooks are sent the event, not the canary's URL"
        else:
            continue
        for key, value in _map(hook.get("metadata")).items():
            if isinstance(value, str) and CANARY_URL_VARIABLE.search(value):
                message = f"{{{{ canary_url }}}} has no value here: {why}"
                yield ("spec", "analysis", "webhooks", i, "metadata", key), message


def run_support_problems(loaded: LoadedSpec) -> list[Problem]:
    """Every finding of `run_support_findings` for the valid Canaries `loaded` holds, with file and line."""
    problems = []
    for item in loaded.canaries:
        doc = item.document
        for path, message in run_support_findings(doc.data):
            problems.append(Problem(file=doc.file, line=doc.line_of(path), path=path, message=message))
    return problems


def run_notes(loaded: LoadedSpec) -> list[Problem]:
    """What `run` will do differently from a full analysis, without refusing: `suspend`, `skipAnalysis`."""
    notes = []
    for item in loaded.canaries:
        doc = item.document
        if item.canary.suspend:
            message = "suspend: true: `canary-step run` will do nothing (decision skipped, exit 0)"
            notes.append(
                Problem(file=doc.file, line=doc.line_of(("spec", "suspend")), path=(), message=message)
            )
        elif item.canary.skip_analysis:
            message = "skipAnalysis: true: `canary-step run` will promote without analysis"
            notes.append(
                Problem(file=doc.file, line=doc.line_of(("spec", "skipAnalysis")), path=(), message=message)
            )
    return notes


def extension_findings(canary: Mapping[str, Any]) -> Iterator[Finding]:
    """Our extensions to Flagger's Canary (plain data): fields Flagger's CRD does not know."""
    metrics = _list(_map(_map(canary.get("spec")).get("analysis")).get("metrics"))
    for i, metric in enumerate(metrics):
        if isinstance(metric, dict) and "onNoData" in metric:
            message = (
                "onNoData is a canary-step extension: Flagger's CRD does not know it (a strict apply "
                "refuses it; otherwise Kubernetes drops it)"
            )
            yield ("spec", "analysis", "metrics", i, "onNoData"), message


def extension_problems(loaded: LoadedSpec) -> list[Problem]:
    """Every finding of `extension_findings` for the valid Canaries `loaded` holds, with file and line."""
    problems = []
    for item in loaded.canaries:
        doc = item.document
        for path, message in extension_findings(doc.data):
            problems.append(Problem(file=doc.file, line=doc.line_of(path), path=path, message=message))
    return problems

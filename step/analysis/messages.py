"""Flagger's event texts, word for word (flagger-semantics.md 1.3-1.8), plus the few of our own.

Owns: every message the state machine records as a Kubernetes Event, so that `kubectl describe
ksvc` reads like Flagger's `describe canary`. Texts that Flagger does not have are marked "ours".
Must not: do I/O or decide anything.
"""

from __future__ import annotations


def initialization_done(name: str, ns: str) -> str:
    return f"Initialization done! {name}.{ns}"


def new_revision_scaling_up(target: str, ns: str) -> str:
    return f"New revision detected! Scaling up {target}.{ns}"


def new_revision_restarting(target: str, ns: str) -> str:
    return f"New revision detected! Restarting analysis for {target}.{ns}"


def starting_analysis(target: str, ns: str) -> str:
    return f"Starting canary analysis for {target}.{ns}"


def advance(name: str, ns: str, weight: int) -> str:
    return f"Advance {name}.{ns} canary weight {weight}"


def advance_iteration(name: str, ns: str, iteration: int, iterations: int) -> str:
    return f"Advance {name}.{ns} canary iteration {iteration}/{iterations}"


def canary_tagged(revision: str, ns: str, url: str | None) -> str:
    """Ours: blue/green's canary revision is reachable at its tag, with no traffic of its own."""
    where = f"reachable at {url}" if url else "Knative reports no URL for the tag yet"
    return f"Routing no traffic to {revision}.{ns}: tag canary, {where}"


def revision_not_ready(revision: str, ns: str, reason: str) -> str:
    text = f"Knative Revision {revision}.{ns} is not ready"
    return f"{text}: {reason}" if reason else text


def progress_deadline(name: str, ns: str, detail: str) -> str:
    return f"Rolling back {name}.{ns} progress deadline exceeded {detail}"


def canary_unhealthy(name: str, ns: str, revision: str, why: str) -> str:
    """Ours: the canary revision turned unhealthy after it was Ready (Knative routes no more to it)."""
    return f"Rolling back {name}.{ns} canary revision {revision} is no longer healthy: {why}"


def threshold_reached(name: str, ns: str, failed_checks: int) -> str:
    return f"Rolling back {name}.{ns} failed checks threshold reached {failed_checks}"


def canary_failed(name: str, ns: str) -> str:
    return f"Canary failed! Scaling down {name}.{ns}"


def promotion_completed(target: str, ns: str) -> str:
    return f"Promotion completed! Scaling down {target}.{ns}"


def promotion_skipped(target: str, ns: str) -> str:
    return f"Promotion completed! Canary analysis was skipped for {target}.{ns}"


def routing_all_traffic_to_primary() -> str:
    return "Routing all traffic to primary"


# --- gates and hooks (scheduler_hooks.go)


def waiting_for_approval(name: str, ns: str, hook: str) -> str:
    return f"Halt {name}.{ns} advancement waiting for approval {hook}"


def confirm_rollout_passed(hook: str) -> str:
    return f"Confirm-rollout check {hook} passed"


def waiting_for_traffic_increase(name: str, ns: str, hook: str) -> str:
    return f"Halt {name}.{ns} advancement waiting for traffic increase approval {hook}"


def confirm_traffic_increase_passed(hook: str) -> str:
    return f"Confirm-traffic-increase check {hook} passed"


def waiting_for_promotion(name: str, ns: str, hook: str) -> str:
    return f"Halt {name}.{ns} advancement waiting for promotion approval {hook}"


def confirm_promotion_passed(hook: str) -> str:
    return f"Confirm-promotion check {hook} passed"


def pre_rollout_failed(name: str, ns: str, hook: str, error: str) -> str:
    return f"Halt {name}.{ns} advancement pre-rollout check {hook} failed {error}"


def pre_rollout_passed(hook: str) -> str:
    return f"Pre-rollout check {hook} passed"


def external_check_failed(name: str, ns: str, hook: str, error: str) -> str:
    return f"Halt {name}.{ns} advancement external check {hook} failed {error}"


def post_rollout_failed(hook: str, error: str) -> str:
    return f"Post-rollout hook {hook} failed {error}"


def post_rollout_passed(hook: str) -> str:
    return f"Post-rollout check {hook} passed"


def rollback_check_passed(hook: str) -> str:
    return f"Rollback check {hook} passed"


def rollback_not_signaling(hook: str) -> str:
    return f"Rollback hook {hook} not signaling a rollback"


def manual_rollback(name: str, ns: str) -> str:
    return f"Rolling back {name}.{ns} manual webhook invoked"


# --- ours


def unanalysed_revision_serving(revision: str) -> str:
    """Ours: nothing pinned a primary before the deploy, so the new revision went live unanalysed."""
    return (
        f"No analysis was possible: {revision} already served all traffic before canary-step pinned a "
        f"primary (nothing pinned it before the deploy). {revision} is now pinned as the primary; the "
        f"next deploy will be analysed. Run canary-step before deploying, or deploy with --image."
    )


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 failed check`, `2 failed checks`: the count with the word in the number it needs."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def provider_errors(name: str, ns: str, errors: int, limit: int) -> str:
    """Ours: Flagger counts a provider error as a failed check; we count errors apart (Argo)."""
    return (
        f"Stopping {name}.{ns} analysis: {plural(errors, 'consecutive metric provider error')} "
        f"(more than the limit of {limit}); the canary was not judged"
    )


def infrastructure_error(name: str, ns: str, error: str) -> str:
    """Ours: an API call failed after its retries."""
    return f"Stopping {name}.{ns} analysis: {error}"


def timed_out(name: str, ns: str, seconds: float) -> str:
    """Ours: the run's overall --timeout passed."""
    return f"Stopping {name}.{ns} analysis: the overall timeout of {seconds:g}s passed"

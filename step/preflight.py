"""The preflight: what a run needs, checked before anything is written.

Owns: the one implementation of the checks that `run` makes before its first write and that
`plan --check` makes against a cluster without writing anything: the Knative Service exists (else a
"did you mean" among the namespace's Services) and has a Ready revision serving traffic; `--container`
resolves on the Service's template; the metrics server answers `vector(1)` with its auth; each
MetricTemplate's provider answers; each compared (`-vs-primary`) metric's step spans two scrapes
(a rate over one step needs two points); each webhook URL is an http(s) URL whose host resolves; the
Service's lease is free (or expired). Each check gives a `Finding`; a failed one carries the error
that decides the exit code and the reason: a mistake no retry fixes (`UsageError`, exit 2: a missing
Service, an unknown container, a malformed URL, a 4xx from a provider, a host that does not exist)
or what a retry may fix (`InfrastructureError`, exit 4: the network, 5xx, timeouts, 429, a held lease).
Must not: write anything, or send a request that could have side effects (webhooks are resolved,
never called; providers get their own `is_online` query); decide anything about the canary; import
`kubernetes` or `click`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from step.analysis.judge import relative_check
from step.errors import (
    APIError,
    Forbidden,
    InfrastructureError,
    MetricError,
    MetricsServerUnreachable,
    MissingObject,
    NotFound,
    SpecError,
    StepError,
    UsageError,
    is_http_url,
    one_line,
)
from step.metrics.measure import uses_metrics_server
from step.ports import MetricsProvider, Router, ServiceView
from step.router.knative import container_index
from step.spec.durations import format_duration
from step.spec.knative import tag_host_problem
from step.spec.model import Canary
from step.spec.schema import suggest

# socket.getaddrinfo's shape: (host, port) -> addresses; raises socket.gaierror when it cannot.
Resolver = Callable[[str, int], Sequence[Any]]


def _resolve(host: str, port: int) -> Sequence[Any]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One check: what was checked, and the error when it failed (None: it passed)."""

    check: str  # e.g. `Knative Service shop/checkout`, `webhook load-test`
    error: StepError | None = None
    note: str = ""  # a remark on a passed check

    @property
    def ok(self) -> bool:
        return self.error is None

    def line(self) -> str:
        if self.error is not None:
            return f"preflight: {self.check}: {self.error}"
        return f"preflight: {self.check}: ok" + (f" ({self.note})" if self.note else "")


class PreflightFailed(StepError):
    """At least one check failed; nothing was written. `error` decides the exit code and the reason:
    the first mistake (exit 2) if there is one, else the first failure (exit 4)."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        failed = [f for f in findings if f.error is not None]
        assert failed, "PreflightFailed needs a failed finding"
        mistakes = [f for f in failed if isinstance(f.error, UsageError)]
        chosen = (mistakes or failed)[0]
        assert chosen.error is not None
        super().__init__(f"{chosen.check}: {chosen.error}")
        self.findings = tuple(findings)
        self.failed = tuple(failed)
        self.error: StepError = chosen.error
        self.check = chosen.check
        self.exit_code = chosen.error.exit_code
        self.reason = chosen.error.reason


class Preflight:
    """The checks of one run, in the order a run needs them; `findings` collects every result."""

    def __init__(self, canary: Canary, *, resolve: Resolver = _resolve) -> None:
        self.canary = canary
        self._resolve = resolve
        self.findings: list[Finding] = []

    @property
    def failed(self) -> bool:
        return any(not f.ok for f in self.findings)

    def raise_if_failed(self) -> None:
        if self.failed:
            raise PreflightFailed(self.findings)

    def _add(self, finding: Finding) -> Finding:
        self.findings.append(finding)
        return finding

    # ------------------------------------------------------------------ the Service

    def service(self, router: Router, *, names: Callable[[], list[str]] | None = None) -> ServiceView | None:
        """The Service as it is now, or None (a failed finding) when it cannot be read or is not there.

        `names` lists the namespace's Knative Services for a "did you mean" (skipped when refused).
        """
        namespace, name = self.canary.namespace, self.canary.target_name
        check = f"Knative Service {namespace}/{name}"
        try:
            view = router.observe()
        except NotFound:
            self._add(Finding(check=check, error=MissingObject(_missing_service(namespace, name, names))))
            return None
        except StepError as err:
            self._add(Finding(check=check, error=err))
            return None
        if view.latest_ready_revision is None or not any(t.percent for t in view.status_traffic):
            why = f": {view.ready_reason}: {view.ready_message}" if view.ready_reason else ""
            self._add(
                Finding(
                    check=check,
                    error=InfrastructureError(
                        f"has no Ready revision serving traffic yet{why}; wait until "
                        f"`kubectl get ksvc -n {namespace} {name}` shows READY True, then run again"
                    ),
                )
            )
            return None
        problem = tag_host_problem(name, domain=_domain_of(view.url))
        if problem is not None:
            self._add(Finding(check=check, error=SpecError(f"spec.targetRef.name: {problem}")))
            return None
        note = "Ready" if view.ready else f"serving {view.latest_ready_revision}"
        if view.ready is False and view.latest_created_revision != view.latest_ready_revision:
            note += (
                f"; its newest revision {view.latest_created_revision} is not Ready yet "
                "(the analysis waits up to progressDeadlineSeconds for it)"
            )
        self._add(Finding(check=check, note=note))
        return view

    def container(self, view: ServiceView, *, image: str | None, container: str | None) -> None:
        """With --image: the container it updates resolves on the Service's template."""
        if image is None:
            return
        service = f"{view.namespace}/{view.name}"
        names = list(view.images)
        try:
            index = container_index(names, container, service=service)
        except UsageError as err:
            self._add(Finding(check="--container", error=err))
            return
        self._add(Finding(check="--container", note=f"--image {image} goes to container {names[index]!r}"))

    # ------------------------------------------------------------------ metrics

    def metrics(
        self,
        *,
        metrics_server: MetricsProvider | None,
        address: str,
        template_metrics: Mapping[tuple[str, str], MetricsProvider],
    ) -> None:
        """The metrics server (when a built-in metric or inline query needs it) and each template's
        provider answer their own `is_online` query, with their own auth."""
        canary = self.canary
        if not canary.analysis.metrics or canary.skip_analysis:
            return
        if uses_metrics_server(canary) and metrics_server is not None:
            found = self._online(f"metrics server {address}", metrics_server)
            if isinstance(found.error, MetricError) and not isinstance(found.error, UsageError):
                found = Finding(check=found.check, error=MetricsServerUnreachable(str(found.error)))
            self._add(found)
        used = {
            (m.template_ref.namespace or canary.namespace, m.template_ref.name)
            for m in canary.analysis.metrics
            if m.template_ref is not None
        }
        for key in sorted(used):
            provider = template_metrics.get(key)
            if provider is not None:
                self._add(self._online(f"MetricTemplate {key[0]}/{key[1]}", provider))

    def comparisons(self, *, scrape_interval: float) -> None:
        """Each compared metric samples a rate over its step: a step shorter than two scrapes of
        Prometheus (`--scrape-interval`) gives samples with one point or none, which is no data."""
        if self.canary.skip_analysis:
            return
        for metric in self.canary.analysis.metrics:
            if not metric.is_relative:
                continue
            try:
                check = relative_check(metric)
            except ValueError:
                continue  # validate names it; a run's reading of it fails with the same words
            shortest = 2 * scrape_interval
            if check.step_seconds >= shortest:
                continue
            wanted = format_duration(shortest * (check.min_samples - 1))
            self._add(
                Finding(
                    check=f"metric {metric.name}",
                    error=UsageError(
                        f"samples every {format_duration(check.step_seconds)}, but Prometheus scrapes every "
                        f"{format_duration(scrape_interval)} (--scrape-interval) and each sample is a rate "
                        f"over its step, which needs two scrapes: set templateVariables.step to at least "
                        f"{format_duration(shortest)} and the interval to at least {wanted} "
                        f"({check.min_samples} samples)"
                    ),
                )
            )

    @staticmethod
    def _online(check: str, provider: MetricsProvider) -> Finding:
        try:
            online = provider.is_online()
        except StepError as err:
            return Finding(check=check, error=err)
        if online:
            return Finding(check=check, note="answers")
        why = getattr(provider, "last_error", None)
        status = getattr(why, "status", None)
        text = str(why) if why else "it did not answer its online check"
        if isinstance(status, int) and 400 <= status < 500 and status != 429:
            hint = (
                "the credentials were refused: check the secretRef"
                if status in (401, 403)
                else "is this the provider's API? check --metrics-server or spec.provider.address"
            )
            return Finding(check=check, error=UsageError(f"{text}; {hint}"))
        return Finding(check=check, error=why if isinstance(why, MetricError) else MetricError(text))

    # ------------------------------------------------------------------ webhooks

    def webhooks(self) -> None:
        """Each webhook URL is an http(s) URL and its host resolves. No request is sent to it."""
        for hook in self.canary.analysis.webhooks:
            check = f"webhook {hook.name}"
            if not is_http_url(hook.url):
                error = UsageError(f"URL {hook.url!r} is not an http(s) URL with a host")
                self._add(Finding(check=check, error=error))
                continue
            parts = urlsplit(hook.url)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                self._resolve(host, port)
            except socket.gaierror as err:
                if err.errno in (socket.EAI_AGAIN,):
                    failure: StepError = InfrastructureError(
                        f"{hook.url}: looking up {host} failed for now ({one_line(err)}); try again"
                    )
                else:
                    failure = UsageError(
                        f"{hook.url}: the host {host} does not resolve; is the URL right, and is the "
                        "service installed (e.g. flagger-loadtester for the load tests)?"
                    )
                self._add(Finding(check=check, error=failure))
                continue
            except (OSError, UnicodeError) as err:
                self._add(Finding(check=check, error=UsageError(f"{hook.url}: {one_line(err)}")))
                continue
            self._add(Finding(check=check, note=f"{host} resolves"))

    # ------------------------------------------------------------------ the lease

    def lease(self, holder: Callable[[], str | None]) -> None:
        """The Service's lease is free or expired: `holder` describes who holds it now, None if nobody."""
        check = f"lease canary-step.{self.canary.target_name}"
        try:
            held_by = holder()
        except Forbidden as err:
            self._add(Finding(check=check, error=err))
            return
        except APIError as err:
            self._add(Finding(check=check, error=err))
            return
        if held_by:
            message = f"{held_by}; run waits for it up to --lock-wait"
            self._add(Finding(check=check, error=InfrastructureError(message)))
            return
        self._add(Finding(check=check, note="free"))


def _domain_of(url: str | None) -> str | None:
    """What follows the Service's own first label in its URL (`test.svc.cluster.local`), if it has one."""
    host = urlsplit(url).hostname if url else None
    return host.split(".", 1)[1] if host and "." in host else None


def _missing_service(namespace: str, name: str, names: Callable[[], list[str]] | None) -> str:
    """`no Knative Service "x" in namespace "y"`, with a "did you mean" or what the namespace has."""
    text = f'there is no Knative Service "{name}" in namespace "{namespace}"'
    if names is None:
        return text + "; check spec.targetRef.name and --namespace"
    try:
        found = names()
    except StepError:
        return text + "; check spec.targetRef.name and --namespace"
    if not found:
        return (
            text + f'; namespace "{namespace}" has no Knative Services at all: is the namespace right '
            "(--namespace, the Canary's metadata.namespace)?"
        )
    hint = suggest(name, found)
    listed = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "")
    return text + (hint or f"; it has {listed}") + " (spec.targetRef.name)"

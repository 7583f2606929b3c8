"""`canary-step run`: one canary analysis of a Knative Service, from new revision to promotion or rollback.

Owns: the run command's options (each also from a CANARY_STEP_* variable), building the real
dependencies (Kubernetes connection, router, metrics providers with their Secrets, webhook caller,
event and status writers, clock), and writing what the outcome says: the results files, the JSON
report, `$GITHUB_OUTPUT`, the `$GITHUB_STEP_SUMMARY` job summary, then `ctx.exit(outcome.exit_code)`.
Must not: decide anything about the canary (the state machine does) or choose exit codes (the
outcome does); import `kubernetes` itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

import click

from step.analysis.interrupted import OnInterrupted, record_of
from step.analysis.state import Reason
from step.cli._lease import Held, default_lease_seconds, start_state, take_lease
from step.clock import MonotonicClock
from step.contract import Decision
from step.driver import Driver, Ports, SignalInterrupt, handling_signals
from step.errors import ErrorInfo, ExitCode, MissingObject, NotFound, SpecError, StepError
from step.kube import RetryPolicy, connect
from step.kube.lease import Lease, LeaseHeld, holder_identity
from step.metrics.provider import builtin_provider, provider_for
from step.notifiers.channels import ChatNotifier, GlobalNotifier, channels_for
from step.notifiers.payloads import NOTIFIER_TYPES
from step.notifiers.sender import ChatSender
from step.ports import FanOut, Notifier
from step.preflight import Preflight, PreflightFailed
from step.report.kube import CanaryStatusSink, KubeEventSink
from step.report.outcome import Outcome
from step.report.results import result_values, write_github_output, write_results_dir
from step.report.summary import append_summary, render
from step.report.timeline import LogFormat, Timeline, outcome_json, write_json
from step.router.knative import KnativeRouter
from step.spec.build import build_metric_template
from step.spec.durations import parse_duration
from step.spec.loader import DEFAULT_NAMESPACE, bundle_from_objects, load_bundle, load_files
from step.spec.model import Canary, MetricTemplate, SpecBundle
from step.spec.problems import InvalidSpecError, Problem
from step.spec.rules import run_support_findings, run_support_problems
from step.webhooks.http import HttpWebhookCaller
from step.webhooks.payload import EventWebhooks

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_METRICS_SERVER = "http://prometheus:9090"  # Flagger's -metrics-server default


def _opt(*names: str, envvar: str, **kwargs: Any) -> Callable[[F], F]:
    return click.option(*names, envvar=f"CANARY_STEP_{envvar}", show_envvar=True, **kwargs)


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parse_duration(value)
        except ValueError as err:
            raise click.BadParameter(str(err)) from None
    if seconds <= 0:
        raise click.BadParameter(f"{value!r} must be more than 0")
    return seconds


def _canary_ref(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise click.BadParameter(f"{value!r} is not NAMESPACE/NAME")
    return namespace, name


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    short_help="Run one canary analysis; exit 0 promoted, 3 rolled back.",
)
@click.argument("files", nargs=-1, metavar="[FILE]...", type=click.Path(dir_okay=False))
@_opt(
    "--canary-ref",
    envvar="CANARY_REF",
    metavar="NAMESPACE/NAME",
    callback=_canary_ref,
    help="Read the Canary from the cluster instead of FILE (MetricTemplates it refers to are read "
    "from the cluster too).",
)
@_opt(
    "--kubeconfig",
    envvar="KUBECONFIG",
    metavar="PATH",
    help="Kubeconfig to use. Default: the in-cluster service account when running in a pod, "
    "else $KUBECONFIG or ~/.kube/config.",
)
@_opt("--context", envvar="CONTEXT", metavar="NAME", help="Kubeconfig context. Default: the current one.")
@_opt(
    "--namespace",
    "-n",
    envvar="NAMESPACE",
    metavar="NAMESPACE",
    help="Namespace of the Canary and its Knative Service, overriding the spec's metadata.namespace.",
)
@_opt(
    "--metrics-server",
    envvar="METRICS_SERVER",
    metavar="URL",
    default=DEFAULT_METRICS_SERVER,
    help="Prometheus for the built-in metrics and inline queries (Flagger's -metrics-server); the "
    "Canary's spec.metricsServer overrides it.",
)
@_opt(
    "--image",
    envvar="IMAGE",
    metavar="IMAGE",
    help="Deploy and verify in one step: pin the revision that serves now, then set this image on "
    "the Service's template and analyse the revision it creates.",
)
@_opt(
    "--container",
    envvar="CONTAINER",
    metavar="NAME",
    help="With --image: the container to update (needed when the template has several).",
)
@_opt(
    "--results-dir",
    envvar="RESULTS_DIR",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Write one file per result here (Tekton's /tekton/results, Argo output files): decision, "
    "reason, canary-revision, primary-revision, canary-weight, failed-checks, iterations, report.",
)
@_opt(
    "--report",
    "report_path",
    envvar="REPORT",
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="Where to write the JSON report (the timeline of every tick). Default: "
    "$TMPDIR/canary-step/<namespace>.<name>.json.",
)
@_opt(
    "--log-format",
    envvar="LOG_FORMAT",
    type=click.Choice(["text", "json"]),
    default="text",
    help="stderr format: `text`, one readable line per tick; `json`, one JSON object per line.",
)
@_opt(
    "--timeout",
    envvar="TIMEOUT",
    metavar="DURATION",
    callback=_duration,
    help="Overall limit for the run (e.g. 30m, or seconds). When it passes, traffic goes back to "
    "the primary and the decision is `failed` (exit 4). Default: none.",
)
@_opt(
    "--consecutive-error-limit",
    envvar="CONSECUTIVE_ERROR_LIMIT",
    type=click.IntRange(min=0),
    default=4,
    help="Metric provider errors in a row (Prometheus down, a bad query) that are tolerated; one "
    "more stops the run with decision `failed` (exit 4). Errors are never failed checks.",
)
@_opt(
    "--scrape-interval",
    envvar="SCRAPE_INTERVAL",
    metavar="DURATION",
    callback=_duration,
    default="15s",
    help="How often Prometheus scrapes the canary's metrics. A metric with `onNoData: fail` (the "
    'default) does not count "no values found" as a failed check on the first tick that measures '
    "after the canary first gets traffic, nor until the canary has had traffic for two scrapes; "
    "`onNoData: fail-immediately` counts it at once, as Flagger does.",
)
@_opt(
    "--traffic-timeout",
    envvar="TRAFFIC_TIMEOUT",
    metavar="DURATION",
    callback=_duration,
    default="60s",
    help="How long to wait, after each traffic write, for the Service's status to show the split "
    "(observedGeneration at the written generation, RoutesReady True, status.traffic as written) "
    "before the write counts as failed.",
)
@_opt(
    "--lock-wait",
    envvar="LOCK_WAIT",
    metavar="DURATION",
    callback=_duration,
    help="One analysis per Service: while another run holds the Service's lease "
    "(coordination.k8s.io Lease canary-step.<service>), wait this long for it, printing who holds it, "
    "then give up with decision `failed`, reason `locked`, exit 4, nothing touched. Default: as long "
    "as --timeout allows (without --timeout, until the pipeline's own timeout).",
)
@_opt(
    "--lease-duration",
    envvar="LEASE_DURATION",
    metavar="DURATION",
    callback=_duration,
    help="How long the Service's lease lasts unless renewed (it is renewed after every tick, with the "
    "analysis state); a run killed mid-analysis is taken over by the next one after this long. "
    "Default: 3 analysis intervals, at least 15s.",
)
@_opt(
    "--on-interrupted",
    envvar="ON_INTERRUPTED",
    type=click.Choice([c.value for c in OnInterrupted]),
    default=OnInterrupted.RESUME.value,
    help="When another run left an unfinished analysis of the same canary revision on the lease "
    "(it was killed): `resume` it (same weight, failed checks carried over, pre-rollout hooks not "
    "repeated), `restart` it from 0 %, or `rollback` (100 % to the primary, exit 3).",
)
@_opt(
    "--alert-url",
    envvar="ALERT_URL",
    metavar="URL",
    help="The global notifier (Flagger's -slack-url): a chat webhook that gets every alert when the "
    "Canary has no analysis.alerts. A secret: pass it as the variable, it is never printed.",
)
@_opt(
    "--alert-type",
    envvar="ALERT_TYPE",
    type=click.Choice(NOTIFIER_TYPES),
    default="slack",
    help="With --alert-url: the kind of chat it is.",
)
@_opt(
    "--alert-channel",
    envvar="ALERT_CHANNEL",
    metavar="NAME",
    default="general",
    help="With --alert-url: the channel (slack, discord, rocket; the others have none in the body).",
)
@click.pass_context
def run(
    ctx: click.Context,
    *,
    files: tuple[str, ...],
    canary_ref: tuple[str, str] | None,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    metrics_server: str,
    image: str | None,
    container: str | None,
    results_dir: str | None,
    report_path: str | None,
    log_format: LogFormat,
    timeout: float | None,
    consecutive_error_limit: int,
    traffic_timeout: float,
    scrape_interval: float,
    lock_wait: float | None,
    lease_duration: float | None,
    on_interrupted: str,
    alert_url: str | None,
    alert_type: str,
    alert_channel: str,
) -> None:
    """Run ONE canary analysis of a Knative Service with Flagger's semantics, then promote or roll back.

    The Canary comes from FILE (with any MetricTemplates it refers to, in the same or other files)
    or, with --canary-ref, from the cluster. Only `provider: knative` is supported.

    \b
    stdout: the results as one JSON object, at the end.
    stderr: one line per tick (weight, each metric against its threshold, failed checks), the
            events, and a last line saying the decision and where traffic is.
    Exit codes: 0 promoted/initialised/nothing to do, 2 usage error or invalid spec,
    3 rolled back, 4 infrastructure error (traffic on the primary, safe to retry),
    5 the rollback failed (a person must look), 130/143 interrupted (primary restored).
    """
    if bool(files) == bool(canary_ref):
        raise click.UsageError("give either FILE or --canary-ref NAMESPACE/NAME (exactly one of them)")
    if container and not image:
        raise click.UsageError("--container needs --image")
    runner = _Run(
        ctx=ctx,
        namespace=namespace,
        results_dir=results_dir,
        report_path=report_path,
        log_format=log_format,
        traffic_timeout=traffic_timeout,
    )
    runner.execute(
        files=files,
        canary_ref=canary_ref,
        kubeconfig=kubeconfig,
        context=context,
        metrics_server=metrics_server,
        image=image,
        container=container,
        timeout=timeout,
        consecutive_error_limit=consecutive_error_limit,
        scrape_interval=scrape_interval,
        lock_wait=lock_wait,
        lease_duration=math.ceil(lease_duration) if lease_duration else None,
        on_interrupted=OnInterrupted(on_interrupted),
        global_notifier=(
            GlobalNotifier(url=alert_url, kind=alert_type, channel=alert_channel) if alert_url else None
        ),
    )


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Until the driver takes over: SIGTERM/SIGINT raise `SignalInterrupt`, so the results get written."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise SignalInterrupt(signum)

    with handling_signals(interrupt):
        yield


class _Run:
    """One invocation: builds the dependencies, runs the driver, writes every output, exits."""

    def __init__(
        self,
        *,
        ctx: click.Context,
        namespace: str | None,
        results_dir: str | None,
        report_path: str | None,
        log_format: LogFormat,
        traffic_timeout: float,
    ) -> None:
        self.ctx = ctx
        self.traffic_timeout = traffic_timeout
        self.namespace = namespace
        self.results_dir = results_dir
        self.report_path = report_path
        self.log_format = log_format
        self.clock = MonotonicClock()
        self.started_wall = self.clock.wall()
        self.kube: Any = None
        self.held: Held | None = None
        self.notifier: ChatNotifier | None = None
        self.routers: list[KnativeRouter] = []  # each one's watch thread is stopped on the way out
        # Every way out of `run` and `plan --check` ends the click context, an exit's too.
        ctx.call_on_close(self._disconnect)

    def _disconnect(self) -> None:
        """Stop the routers' watches (an early exit's too: in-process, a watch left running would retry
        against a server that may be gone) and close the Kube client's pooled connections (after the
        results, which count its requests)."""
        routers, self.routers = self.routers, []
        for router in routers:
            with contextlib.suppress(Exception):
                router.close()
        kube, self.kube = self.kube, None
        if kube is not None:
            with contextlib.suppress(Exception):
                kube.close()

    def execute(
        self,
        *,
        files: tuple[str, ...],
        canary_ref: tuple[str, str] | None,
        kubeconfig: str | None,
        context: str | None,
        metrics_server: str,
        image: str | None,
        container: str | None,
        timeout: float | None,
        consecutive_error_limit: int,
        scrape_interval: float | None = None,
        lock_wait: float | None = None,
        lease_duration: int | None = None,
        on_interrupted: OnInterrupted = OnInterrupted.RESUME,
        global_notifier: GlobalNotifier | None = None,
    ) -> None:
        bundle: SpecBundle | None = None
        if files:
            try:
                bundle = self._load_files(files)
            except SpecError as err:
                self._fail_early(err, bundle=None)
        try:
            with _interruptible():
                self.kube = connect(kubeconfig=kubeconfig, context=context, retry=RetryPolicy())
                if bundle is None:
                    assert canary_ref is not None
                    bundle = self._load_ref(canary_ref)
                _, bundle, ports, timeline = self.prepare(
                    bundle,
                    metrics_server=metrics_server,
                    image=image,
                    container=container,
                    global_notifier=global_notifier,
                    scrape_interval=scrape_interval,
                )
                wait = min(x for x in (lock_wait, timeout, math.inf) if x is not None)
                self.held = take_lease(
                    self.kube,
                    canary=bundle.canary,
                    router=ports.router,
                    clock=self.clock,
                    wait=wait,
                    duration=lease_duration,
                    note=timeline.note,
                )
                ports = dataclasses.replace(ports, lease=self.held.lease)
        except LeaseHeld as err:
            self._fail_early(err, reason=Reason.LOCKED, bundle=bundle)
        except PreflightFailed as err:
            for finding in err.failed:
                if finding.error is not err.error:
                    click.echo(finding.line(), err=True)
            self._fail_early(err.error, bundle=bundle, what=err.check)
        except StepError as err:
            self._fail_early(err, bundle=bundle)
        except SignalInterrupt as sig:
            self._interrupted_early(sig.signum, bundle=bundle)
        held = self.held
        driver = Driver(
            bundle,
            ports=ports,
            timeline=timeline,
            image=image,
            container=container,
            timeout=None if timeout is None else max(1.0, timeout - held.waited),
            consecutive_error_limit=consecutive_error_limit,
            came_for=held.came_for,
            scrape_interval=scrape_interval,
            providers_checked=True,  # by the preflight (`prepare`)
        )
        with _interruptible():
            try:
                driver.state = start_state(
                    held,
                    config=driver.config,
                    router=ports.router,
                    how=on_interrupted,
                    now=self.clock.wall(),
                    note=timeline.note,
                )
            except StepError as err:
                held.lease.release(held.left_record)
                self._fail_early(err, bundle=bundle)
            except SignalInterrupt as sig:
                held.lease.release(held.left_record)
                self._interrupted_early(sig.signum, bundle=bundle)
        timeline.note(
            f"canary-step: analysing Knative Service {bundle.canary.namespace}/{bundle.canary.target_name}"
            f" (Canary {bundle.canary.name}, interval {bundle.canary.analysis.interval_seconds:g}s,"
            f" threshold {bundle.canary.analysis.threshold})"
        )
        outcome: Outcome | None = None
        try:
            outcome = driver.run()
        finally:
            self._close(ports)
            if self.notifier is not None:
                self.notifier.close()
            self._release(held, driver, outcome)
        self._finish(outcome, bundle=bundle, timeline=timeline)

    def prepare(
        self,
        bundle: SpecBundle,
        *,
        metrics_server: str,
        image: str | None,
        container: str | None,
        global_notifier: GlobalNotifier | None = None,
        scrape_interval: float | None = None,
    ) -> tuple[Preflight, SpecBundle, Ports, Timeline]:
        """The preflight and the ports, before anything is written (`run`, and `plan --check`).

        The Service first (a missing one is named before any MetricTemplate is looked up), then what
        the run will call. Raises `PreflightFailed` with every failed check.
        """
        checks = Preflight(bundle.canary)
        router = self._router(bundle.canary)
        view = checks.service(router, names=self._service_names(bundle.canary))
        checks.raise_if_failed()
        assert view is not None
        bundle = self._with_cluster_templates(bundle)
        timeline = Timeline(canary=bundle.canary, stream=sys.stderr, log_format=self.log_format)
        ports = self._ports(
            bundle,
            metrics_server=metrics_server,
            timeline=timeline,
            global_notifier=global_notifier,
            router=router,
        )
        checks.container(view, image=image, container=container)
        checks.metrics(
            metrics_server=ports.metrics,
            address=bundle.canary.metrics_server or metrics_server,
            template_metrics=ports.template_metrics,
        )
        if scrape_interval is not None:  # `plan --check` does not know it
            checks.comparisons(scrape_interval=scrape_interval)
        checks.webhooks()
        checks.raise_if_failed()
        return checks, bundle, ports, timeline

    def check(
        self,
        *,
        files: tuple[str, ...],
        kubeconfig: str | None,
        context: str | None,
        metrics_server: str,
        image: str | None,
        container: str | None,
    ) -> tuple[list[str], StepError | None]:
        """`plan --check`: the run's own preflight and the lease, against the cluster; nothing is written.

        The lines to print (one per check) and the error that decides the exit code (None: all passed).
        """
        ports: Ports | None = None
        checks: Preflight | None = None
        try:
            bundle = self._load_files(files)
            self.kube = connect(kubeconfig=kubeconfig, context=context, retry=RetryPolicy())
            checks, bundle, ports, _ = self.prepare(
                bundle, metrics_server=metrics_server, image=image, container=container
            )
            canary = bundle.canary
            lease = Lease(
                self.kube,
                namespace=canary.namespace,
                service=canary.target_name,
                identity=holder_identity(),
                duration_seconds=default_lease_seconds(canary),
                clock=self.clock,
            )

            def holder() -> str | None:
                state = lease.peek()
                wall = self.clock.wall()
                if state is None or state.holder is None or state.expired(wall):
                    return None
                return state.describe(wall)

            checks.lease(holder)
            checks.raise_if_failed()
        except PreflightFailed as err:
            return [f.line() for f in err.findings], err
        except StepError as err:
            return [str(err)], err
        finally:
            if ports is not None:
                self._close(ports)
        return [f.line() for f in checks.findings], None

    def _release(self, held: Held, driver: Driver, outcome: Outcome | None) -> None:
        """Give the lease up; after a failed rollback (exit 5) the analysis stays on it for the next run."""
        record = None
        if outcome is not None and outcome.exit_code == ExitCode.ROLLBACK_FAILED and driver.state is not None:
            record = record_of(driver.state, run=held.lease.identity, now=self.clock.wall())
        try:
            held.lease.release(record)
        except StepError as err:
            click.echo(
                f"canary-step: could not release the Service's lease (it expires by itself): {err}", err=True
            )

    @staticmethod
    def _close(ports: Ports) -> None:
        """Close the HTTP sessions (the process is about to end anyway); the router's watch is stopped
        by `_disconnect`, which owns every router this run made."""
        for part in (ports.metrics, ports.webhooks, *ports.template_metrics.values()):
            close = getattr(part, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()

    # ------------------------------------------------------------------ inputs

    def _load_files(self, files: tuple[str, ...]) -> SpecBundle:
        """The one Canary of the files, refused with file and line if `run` cannot carry it out."""
        namespace = self.namespace or DEFAULT_NAMESPACE
        loaded = load_files(list(files), templates_from_cluster=True, default_namespace=namespace)
        if not loaded.ok or len(loaded.canaries) != 1:  # load_bundle says what is wrong
            return self._override_namespace(
                load_bundle(list(files), templates_from_cluster=True, default_namespace=namespace)
            )
        unsupported = run_support_problems(loaded)
        if unsupported:
            raise InvalidSpecError(unsupported)
        return self._override_namespace(loaded.bundle(loaded.canaries[0]))

    def _override_namespace(self, bundle: SpecBundle) -> SpecBundle:
        if self.namespace is None or bundle.canary.namespace == self.namespace:
            return bundle
        return dataclasses.replace(
            bundle, canary=dataclasses.replace(bundle.canary, namespace=self.namespace)
        )

    def _load_ref(self, ref: tuple[str, str]) -> SpecBundle:
        namespace, name = ref
        try:
            obj = self.kube.get_canary(namespace=namespace, name=name)
        except NotFound:
            raise MissingObject(
                f'there is no Canary "{name}" in namespace "{namespace}" (--canary-ref NAMESPACE/NAME)'
            ) from None
        source = f"canary {namespace}/{name}"
        bundle = bundle_from_objects([obj], source=source, default_namespace=namespace)
        unsupported = [
            Problem(file=source, line=0, path=path, message=message)
            for path, message in run_support_findings(obj)
        ]
        if unsupported:
            raise InvalidSpecError(unsupported)
        return self._override_namespace(bundle)

    def _with_cluster_templates(self, bundle: SpecBundle) -> SpecBundle:
        templates: dict[tuple[str, str], MetricTemplate] = dict(bundle.metric_templates)
        for metric in bundle.canary.analysis.metrics:
            ref = metric.template_ref
            if ref is None:
                continue
            key = (ref.namespace or bundle.canary.namespace, ref.name)
            if key in templates:
                continue
            try:
                obj = self.kube.get_metric_template(namespace=key[0], name=key[1])
            except NotFound:
                raise MissingObject(
                    f"metric {metric.name}: MetricTemplate {key[0]}/{key[1]} is neither in the spec files "
                    "nor in the cluster"
                ) from None
            try:
                templates[key] = build_metric_template(obj, default_namespace=key[0])
            except (KeyError, TypeError, ValueError) as err:
                raise SpecError(
                    f"MetricTemplate {key[0]}/{key[1]} in the cluster is malformed: {err}"
                ) from None
        return dataclasses.replace(bundle, metric_templates=templates)

    def _ports(
        self,
        bundle: SpecBundle,
        *,
        metrics_server: str,
        timeline: Timeline,
        global_notifier: GlobalNotifier | None = None,
        router: KnativeRouter | None = None,
    ) -> Ports:
        canary = bundle.canary
        address = canary.metrics_server or metrics_server
        template_metrics = {}
        for key, template in bundle.metric_templates.items():
            secret: Mapping[str, str] | None = None
            if template.secret_ref is not None:
                try:
                    secret = self.kube.get_secret_data(
                        namespace=template.namespace, name=template.secret_ref.name
                    )
                except NotFound:
                    raise MissingObject(
                        f"MetricTemplate {template.namespace}/{template.name}: secret "
                        f"{template.secret_ref.name!r} was not found in namespace {template.namespace}"
                    ) from None
            template_metrics[key] = provider_for(template, secret=secret, default_address=address)
        webhooks = HttpWebhookCaller(clock=self.clock)
        kube_events = KubeEventSink(self.kube, namespace=canary.namespace, service_name=canary.target_name)
        channels = channels_for(
            canary,
            bundle.alert_providers,
            secrets=lambda ns, name: self.kube.get_secret_data(namespace=ns, name=name),
            global_notifier=global_notifier,
        )
        notifiers: list[Notifier] = [EventWebhooks(caller=webhooks, canary=canary, wall=self.clock.wall)]
        if channels:
            self.notifier = ChatNotifier(
                canary=canary,
                channels=channels,
                sender=ChatSender(clock=self.clock),
                ticks=lambda: timeline.ticks,
                warnings=kube_events,
            )
            notifiers.append(self.notifier)
        return Ports(
            router=router or self._router(canary),
            metrics=builtin_provider(address),
            webhooks=webhooks,
            # The one composed event sink: Kubernetes Events, then the `type: event` webhooks and chats.
            events=FanOut(events=kube_events, notifiers=tuple(notifiers), on_error=timeline.note),
            status=CanaryStatusSink(self.kube, namespace=canary.namespace, name=canary.name),
            clock=self.clock,
            template_metrics=template_metrics,
            wall=self.clock.wall,
            request_count=lambda: int(self.kube.requests.total),
        )

    def _router(self, canary: Canary) -> KnativeRouter:
        router = KnativeRouter(
            self.kube,
            namespace=canary.namespace,
            name=canary.target_name,
            clock=self.clock,
            converge_timeout=self.traffic_timeout,
        )
        self.routers.append(router)
        return router

    def _service_names(self, canary: Canary) -> Callable[[], list[str]]:
        return lambda: self.kube.list_service_names(namespace=canary.namespace)

    # ------------------------------------------------------------------ outputs

    def _default_report(self, bundle: SpecBundle | None) -> str:
        if self.report_path:
            return self.report_path
        base = Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "canary-step"
        name = f"{bundle.canary.namespace}.{bundle.canary.name}" if bundle else "canary"
        return str(base / f"{name}.json")

    def _fail_early(
        self, err: StepError, *, bundle: SpecBundle | None, reason: Reason | None = None, what: str = ""
    ) -> NoReturn:
        """Before the analysis started: nothing moved. Say why, write the results, exit.

        The reason is the error's own (`StepError.reason`), so it always agrees with the exit code.
        """
        message = str(err)
        if "\n" in message:  # every problem of an invalid spec, one per line
            click.echo(message, err=True)
        if what:
            message = f"{what}: {message}"
        why = reason or Reason(err.reason)
        outcome = Outcome(
            decision=Decision.FAILED,
            reason=why.value,
            message=message.splitlines()[0] if message else why.value,
            error=ErrorInfo.of(err),
            traffic="untouched",
        )
        canary = bundle.canary if bundle else None
        timeline = Timeline(canary=canary, stream=sys.stderr, log_format=self.log_format) if canary else None
        if timeline is not None:
            timeline.finished(outcome)
        else:
            click.echo(outcome.headline(), err=True)
        self._write(outcome, bundle=bundle, timeline=timeline)
        self.ctx.exit(int(outcome.exit_code))

    def _interrupted_early(self, signum: int, *, bundle: SpecBundle | None) -> NoReturn:
        """A signal before the analysis started: nothing moved. Write the results and exit 130/143."""
        name = signal.Signals(signum).name
        outcome = Outcome(
            decision=Decision.FAILED,
            reason=Reason.interrupted_by(name).value,
            message=f"interrupted by {name} before the analysis started",
            signal=signum,
            traffic="untouched",
        )
        click.echo(outcome.headline(), err=True)
        self._write(outcome, bundle=bundle, timeline=None)
        self.ctx.exit(int(outcome.exit_code))

    def _finish(self, outcome: Outcome, *, bundle: SpecBundle, timeline: Timeline) -> NoReturn:
        self._write(outcome, bundle=bundle, timeline=timeline)
        self.ctx.exit(int(outcome.exit_code))

    def _write(self, outcome: Outcome, *, bundle: SpecBundle | None, timeline: Timeline | None) -> None:
        report = self._default_report(bundle)
        values = result_values(outcome, report_path=report)
        requests = self.kube.requests.snapshot() if self.kube is not None else None
        finished = self.clock.wall()
        document: dict[str, Any]
        if timeline is not None:
            document = timeline.report(
                outcome,
                started_wall=self.started_wall,
                finished_wall=finished,
                api_requests=requests,
                extra={
                    **({"lease": self.held.report} if self.held is not None else {}),
                    **({"notifications": self.notifier.report()} if self.notifier is not None else {}),
                },
            )
        else:
            document = {"formatVersion": 1, **outcome_json(outcome), "ticks": []}
        steps: list[tuple[str, Callable[[], None]]] = [
            ("the JSON report", lambda: write_json(report, document)),
        ]
        if self.results_dir:
            results_dir = self.results_dir
            steps.append(("the results", lambda: write_results_dir(results_dir, values)))
        github_output = os.environ.get("GITHUB_OUTPUT")
        if github_output:
            steps.append(("$GITHUB_OUTPUT", lambda: write_github_output(github_output, values)))
        summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_path and bundle is not None:
            ticks = timeline.ticks if timeline is not None else []
            markdown = render(bundle.canary, ticks, outcome, report_path=report)
            steps.append(("the job summary", lambda: append_summary(summary_path, markdown)))
        for what, write in steps:
            try:
                write()
            except OSError as err:
                click.echo(f"canary-step: could not write {what}: {err}", err=True)
        click.echo(json.dumps(values))

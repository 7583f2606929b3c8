"""The simulated Knative data plane: per-revision podinfo backends, a Kourier-like router, their metrics.

Owns:

- :class:`Backend`: one HTTP server per revision on 127.0.0.1, behaving like podinfo (``/``,
  ``/status/{code}``, ``/delay/{seconds}``, ``/healthz``, ``/readyz``, ``/version``, ``/headers``) with the
  faults its image tag asks for (:mod:`tests.cluster.images`), and recording the queue-proxy metrics
  ``revision_request_count`` / ``revision_request_latencies`` (Knative v1.17, OpenCensus names, ms buckets)
  and Knative 1.19+'s OpenTelemetry names (:func:`record_queue_proxy_otel`).
- :class:`RoutingTable`: each Service's **status.traffic** (the observed split, as Kourier programs it),
  resolved by Host header as Knative names hosts: ``<svc>.<ns>``, ``<svc>.<ns>.svc``,
  ``<svc>.<ns>.svc.cluster.local`` to the split, ``<tag>-<svc>.<ns>[.svc[.cluster.local]]`` to the tagged
  revision. The split is smooth weighted round robin (nginx's), so 90/10 is exactly 9 to 1 over every ten
  requests, which keeps the tests' tolerances honest.
- :class:`Router`: the ingress, an HTTP proxy on 127.0.0.1 that picks a revision per request and records
  Envoy's cluster metrics ``envoy_cluster_upstream_rq{envoy_cluster_name="<ns>/<rev>",envoy_response_code}``
  and ``envoy_cluster_upstream_rq_time`` (ms histogram, Envoy's default buckets), the names Flagger's
  built-in Knative queries use.
- :class:`DataPlane`: all of the above plus a ``/metrics`` server on its own port for Prometheus, and (with
  an API client) a watch of Knative Services that keeps the routing table equal to their status.traffic.

Must not: write to the API server, decide readiness (that is the simulator's job), or import pytest.
"""

from __future__ import annotations

import bisect
import http.client
import json
import logging
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.cluster.images import Behaviour, behaviour_of

log = logging.getLogger(__name__)

# Envoy's default histogram buckets (ms), as Kourier's gateway exposes them.
ENVOY_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
    3600000,
)  # fmt: skip
# queue-proxy's buckets (ms), pkg/queue/request_metric.go:37-39 at knative-v1.17.0.
QUEUE_PROXY_BUCKETS_MS: tuple[float, ...] = (
    5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 900, 1000, 2000, 5000,
    10000, 20000, 50000, 100000,
)  # fmt: skip
# Knative 1.19+'s queue-proxy histograms (OpenTelemetry, seconds): its own latency bounds
# (pkg/queue/request_metric.go) equal otelhttp's defaults for http.server.request.duration.
OTEL_BUCKETS_S: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
)
CLUSTER_DOMAIN = "svc.cluster.local"
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)


# --------------------------------------------------------------------------------------------- metrics


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)
        index = bisect.bisect_left(self.bounds, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1


LabelSet = tuple[tuple[str, str], ...]


class Metrics:
    """A thread-safe registry of counters and histograms, written out in Prometheus' text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, dict[LabelSet, float]] = {}
        self._histograms: dict[str, dict[LabelSet, _Histogram]] = {}

    def _declare(self, name: str, kind: str, help_text: str) -> None:
        self._help.setdefault(name, (kind, help_text))

    def inc(self, name: str, labels: LabelSet, *, help_text: str, amount: float = 1) -> None:
        with self._lock:
            self._declare(name, "counter", help_text)
            series = self._counters.setdefault(name, {})
            series[labels] = series.get(labels, 0) + amount

    def observe(
        self, name: str, labels: LabelSet, value: float, *, bounds: tuple[float, ...], help_text: str
    ) -> None:
        with self._lock:
            self._declare(name, "histogram", help_text)
            series = self._histograms.setdefault(name, {})
            histogram = series.get(labels)
            if histogram is None:
                histogram = series[labels] = _Histogram(bounds)
            histogram.observe(value)

    def forget(self, namespace: str) -> int:
        """Drop every series of ``namespace`` (a label equal to it, or Envoy's ``<namespace>/<revision>``
        cluster name); returns how many. A long session otherwise renders every earlier test's series on
        each scrape: 28 000 lines, 170 ms of CPU a second, after 50 tests of three revisions."""
        prefix = namespace + "/"

        def of_namespace(labels: LabelSet) -> bool:
            return any(value == namespace or value.startswith(prefix) for _, value in labels)

        dropped = 0
        with self._lock:
            for family in (*self._counters.values(), *self._histograms.values()):
                for labels in [labels for labels in family if of_namespace(labels)]:
                    del family[labels]
                    dropped += 1
        return dropped

    def exposition(self) -> str:
        """The whole registry in the Prometheus text exposition format 0.0.4.

        Copied under the lock, written out after it: the router records every request under the same lock,
        so a scrape that formats the text while holding it makes requests wait for it (the formatting took
        170 ms of CPU for a large registry, more under load)."""
        with self._lock:
            described = dict(self._help)
            counters = {name: dict(series) for name, series in self._counters.items()}
            histograms = {
                name: {
                    labels: _Histogram(h.bounds, list(h.counts), h.total, h.count)
                    for labels, h in series.items()
                }
                for name, series in self._histograms.items()
            }
        lines: list[str] = []
        for name in sorted(described):
            kind, help_text = described[name]
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            if kind == "counter":
                for labels, value in sorted(counters[name].items()):
                    lines.append(f"{name}{_labels(labels)} {_number(value)}")
                continue
            for labels, histogram in sorted(histograms[name].items()):
                cumulative = 0
                for bound, bucket in zip(histogram.bounds, histogram.counts, strict=True):
                    cumulative += bucket
                    lines.append(f"{name}_bucket{_labels((*labels, ('le', _number(bound))))} {cumulative}")
                lines.append(f"{name}_bucket{_labels((*labels, ('le', '+Inf')))} {histogram.count}")
                lines.append(f"{name}_sum{_labels(labels)} {_number(histogram.total)}")
                lines.append(f"{name}_count{_labels(labels)} {histogram.count}")
        return "\n".join(lines) + "\n"


def record_envoy(metrics: Metrics, *, namespace: str, revision: str, code: int, millis: float) -> None:
    """What Kourier's Envoy counts for one upstream request to cluster ``<ns>/<revision>``."""
    cluster = (("envoy_cluster_name", f"{namespace}/{revision}"),)
    metrics.inc(
        "envoy_cluster_upstream_rq",
        (*cluster, ("envoy_response_code", str(code))),
        help_text="Total requests to the upstream cluster, by response code",
    )
    metrics.inc(
        "envoy_cluster_upstream_rq_xx",
        (*cluster, ("envoy_response_code_class", str(code // 100))),
        help_text="Total requests to the upstream cluster, by response code class",
    )
    metrics.inc(
        "envoy_cluster_upstream_rq_total", cluster, help_text="Total requests to the upstream cluster"
    )
    metrics.observe(
        "envoy_cluster_upstream_rq_time",
        cluster,
        millis,
        bounds=ENVOY_BUCKETS_MS,
        help_text="Request time to the upstream cluster, milliseconds",
    )


@dataclass(frozen=True)
class RevisionInfo:
    """What the data plane needs to know about a revision: its names and its image."""

    namespace: str
    name: str
    configuration: str
    service: str
    image: str


def record_queue_proxy(
    metrics: Metrics, *, revision: RevisionInfo, pod: str, code: int, millis: float
) -> None:
    """What Knative v1.17's queue-proxy counts for one request (pkg/queue/request_metric.go)."""
    labels: LabelSet = (
        ("configuration_name", revision.configuration),
        ("container_name", "queue-proxy"),
        ("namespace_name", revision.namespace),
        ("pod_name", pod),
        ("response_code", str(code)),
        ("response_code_class", f"{code // 100}xx"),
        ("revision_name", revision.name),
        ("route_tag", "disabled"),
        ("service_name", revision.service or "unknown"),
    )
    metrics.inc(
        "revision_request_count", labels, help_text="The number of requests that are routed to queue-proxy"
    )
    # OpenCensus records whole milliseconds (latency.Milliseconds()).
    metrics.observe(
        "revision_request_latencies",
        labels,
        float(int(millis)),
        bounds=QUEUE_PROXY_BUCKETS_MS,
        help_text="The response time in millisecond",
    )


def record_queue_proxy_otel(
    metrics: Metrics, *, revision: RevisionInfo, pod: str, code: int, seconds: float, method: str
) -> None:
    """What Knative 1.19+'s queue-proxy exports for one request, OpenTelemetry instruments through its
    Prometheus exporter (dots become underscores, the unit `s` a `_seconds` suffix; the resource attributes
    are labels on every series). Three histograms, one per name family:

    - ``http_server_request_duration_seconds``: otelhttp's HTTP-server metric
      (``http.server.request.duration``), every request into the queue-proxy, with ``http_request_method``
      and ``http_response_status_code``;
    - ``kn_queueproxy_app_duration_seconds`` (Knative 1.19 and 1.20: ``kn.queueproxy.app.duration``), the time
      in the user's container, with ``http_response_status_code``; these releases record **whole seconds**
      (``float64(latency / time.Second)``), so a 0.8 s request counts as 0 (fixed in 1.21, knative/serving
      #16358);
    - ``kn_serving_invocation_duration_seconds`` (1.21 renamed it, knative/serving #16290), sub-second.
    """
    resource: LabelSet = (
        ("container_name", "queue-proxy"),
        ("k8s_namespace_name", revision.namespace),
        ("k8s_pod_name", pod),
        ("kn_configuration_name", revision.configuration),
        ("kn_revision_name", revision.name),
        ("kn_service_name", revision.service or ""),
        ("service_name", revision.service or revision.configuration),
    )
    status = (("http_response_status_code", str(code)),)
    server = (
        ("http_request_method", method),
        *status,
        ("network_protocol_name", "http"),
        ("network_protocol_version", "1.1"),
        ("url_scheme", "http"),
    )
    metrics.observe(
        "http_server_request_duration_seconds",
        tuple(sorted((*resource, *server))),
        seconds,
        bounds=OTEL_BUCKETS_S,
        help_text="Duration of HTTP server requests.",
    )
    metrics.observe(
        "kn_queueproxy_app_duration_seconds",
        tuple(sorted((*resource, *status))),
        float(int(seconds)),
        bounds=OTEL_BUCKETS_S,
        help_text="The duration of task execution",
    )
    metrics.observe(
        "kn_serving_invocation_duration_seconds",
        tuple(sorted((*resource, *status))),
        seconds,
        bounds=OTEL_BUCKETS_S,
        help_text="The duration of task execution",
    )


# --------------------------------------------------------------------------------------------- backends


class HarnessServer(ThreadingHTTPServer):
    """A harness HTTP server. A client that hangs up mid-request (Prometheus at shutdown, a killed load
    test) is no error; any other error goes to the process's own stderr, never to whatever `sys.stderr`
    is at that moment (an in-process CLI test captures it, and a traceback there fails that test)."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5. Under load (hey's concurrency, the router's connections,
    # Prometheus) a full backlog dropped SYNs (TcpExtListenDrops counted them on this machine), and the
    # client's retransmission one second later showed as ~1 s requests: healthy canaries failed their
    # request-duration check (p99 ~950 ms, fading as the burst left the 1m window). Envoy and podinfo (Go)
    # listen with the system's maximum.
    request_queue_size = socket.SOMAXCONN

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        stream = sys.__stderr__
        if stream is not None:
            print(f"harness server: request from {client_address}:", file=stream)
            traceback.print_exc(file=stream)


def _serve(server: HarnessServer, name: str) -> threading.Thread:
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
    )
    thread.start()
    return thread


class _JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections go away on their own

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.server.server_address, *args)

    def _send(self, code: int, body: bytes, *, content_type: str = "application/json; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, code: int, payload: object) -> None:
        self._send(code, json.dumps(payload, indent=2).encode() + b"\n")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""


@dataclass(frozen=True)
class Fault:
    """A fault of every revision of a namespace at once (an incident, a slow dependency): added to
    what each image's tag asks for. Errors use their own exact count, so both revisions fail alike."""

    latency_ms: int = 0
    error_percent: int = 0


NO_FAULT = Fault()


class Backend:
    """One revision's pod: queue-proxy metrics in front of a podinfo-like app, on its own loopback port."""

    def __init__(
        self, revision: RevisionInfo, metrics: Metrics, shared: Callable[[], Fault] = lambda: NO_FAULT
    ) -> None:
        self.revision = revision
        self.behaviour: Behaviour = behaviour_of(revision.image)
        self.metrics = metrics
        self._shared = shared
        self._shared_served = 0
        self.pod = f"{revision.name}-deployment-{abs(hash(revision.image)) % 10**8:08d}-local"
        self._lock = threading.Lock()
        self._served = 0
        backend = self

        class Handler(_JsonHandler):
            def do_GET(self) -> None:
                backend._handle(self)

            def do_POST(self) -> None:
                backend._handle(self)

            def do_PUT(self) -> None:
                backend._handle(self)

            def do_DELETE(self) -> None:
                backend._handle(self)

            def do_HEAD(self) -> None:
                backend._handle(self)

        self._server = HarnessServer(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = _serve(self._server, f"backend-{revision.namespace}-{revision.name}")

    def _inject_error(self) -> bool:
        """Exactly ``error_percent`` of every hundred requests fail (Bresenham), instead of a coin toss."""
        percent = self.behaviour.error_percent
        with self._lock:
            n = self._served
            self._served += 1
        return (n + 1) * percent // 100 > n * percent // 100

    def _inject_shared_error(self, percent: int) -> bool:
        with self._lock:
            n = self._shared_served
            self._shared_served += 1
        return (n + 1) * percent // 100 > n * percent // 100

    def _handle(self, request: _JsonHandler) -> None:
        started = time.monotonic()
        body = request._read_body()
        path = urllib.parse.urlsplit(request.path).path
        code, payload = self._app(request, path, body)
        # Recorded before the answer is sent, so a client that has its answer finds it counted (a test
        # reading /metrics right after its last request raced the recording under load).
        seconds = time.monotonic() - started
        record_queue_proxy(
            self.metrics, revision=self.revision, pod=self.pod, code=code, millis=seconds * 1000
        )
        record_queue_proxy_otel(
            self.metrics,
            revision=self.revision,
            pod=self.pod,
            code=code,
            seconds=seconds,
            method=request.command,
        )
        request._send_json(code, payload)

    def _app(self, request: _JsonHandler, path: str, body: bytes) -> tuple[int, object]:
        behaviour = self.behaviour
        if path in ("/healthz", "/readyz"):
            return 200, {"status": "OK"}
        shared = self._shared()
        latency_ms = (shared.latency_ms + behaviour.latency_ms) * (1 + behaviour.latency_percent / 100)
        if latency_ms:
            time.sleep(latency_ms / 1000)  # the injected fault: this app is slow
        if self._inject_error():
            return 500, {"code": 500, "message": f"injected fault ({behaviour.error_percent} % 5xx)"}
        if shared.error_percent and self._inject_shared_error(shared.error_percent):
            return 500, {"code": 500, "message": f"injected incident ({shared.error_percent} % 5xx)"}
        parts = [part for part in path.split("/") if part]
        if parts[:1] == ["status"] and len(parts) == 2 and parts[1].isdigit():
            return int(parts[1]), {"status": int(parts[1])}
        if parts[:1] == ["delay"] and len(parts) == 2:
            try:
                seconds = min(float(parts[1]), 60.0)
            except ValueError:
                return 400, {"code": 400, "message": f"invalid delay {parts[1]!r}"}
            time.sleep(seconds)  # the endpoint's job, as in podinfo
            return 200, {"delay": seconds}
        if path == "/version":
            return 200, {"version": behaviour.version, "commit": "local"}
        if path == "/headers":
            return 200, {key: [value] for key, value in request.headers.items()}
        if path == "/echo" or request.command in ("POST", "PUT"):
            return 202, {"echo": body.decode(errors="replace")}
        if path in ("/", ""):
            return 200, {
                "hostname": self.pod,
                "version": behaviour.version,
                "revision": self.revision.name,
                "color": "#34577c",
                "logo": "https://raw.githubusercontent.com/stefanprodan/podinfo/gh-pages/cuddle_clap.gif",
                "message": f"greetings from podinfo v{behaviour.version}",
                "goos": "linux",
                "goarch": "amd64",
                "runtime": "go1.16.5",
                "num_goroutine": "8",
                "num_cpu": "2",
            }
        return 404, {"code": 404, "message": "page not found"}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class Target:
    """One entry of a Service's status.traffic."""

    revision: str
    percent: int
    tag: str | None = None


class _SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin: exact proportions, well interleaved."""

    def __init__(self, weights: list[tuple[str, int]]) -> None:
        self._weights = [(name, weight) for name, weight in weights if weight > 0]
        self._current = [0] * len(self._weights)
        self._total = sum(weight for _, weight in self._weights)

    def pick(self) -> str | None:
        if not self._weights:
            return None
        best = 0
        for index, (_, weight) in enumerate(self._weights):
            self._current[index] += weight
            if self._current[index] > self._current[best]:
                best = index
        self._current[best] -= self._total
        return self._weights[best][0]


@dataclass(frozen=True)
class Destination:
    namespace: str
    service: str
    revision: str


class RoutingTable:
    """Host names to revisions, from each Service's status.traffic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._traffic: dict[tuple[str, str], tuple[Target, ...]] = {}
        self._balancers: dict[tuple[str, str], _SmoothWeightedRoundRobin] = {}

    def set_traffic(self, namespace: str, service: str, targets: Iterable[Target]) -> None:
        key = (namespace, service)
        new = tuple(targets)
        with self._lock:
            if self._traffic.get(key) == new:
                return
            self._traffic[key] = new
            merged: dict[str, int] = {}
            for target in new:
                merged[target.revision] = merged.get(target.revision, 0) + target.percent
            self._balancers[key] = _SmoothWeightedRoundRobin(sorted(merged.items()))

    def remove(self, namespace: str, service: str) -> None:
        with self._lock:
            self._traffic.pop((namespace, service), None)
            self._balancers.pop((namespace, service), None)

    def traffic(self, namespace: str, service: str) -> tuple[Target, ...] | None:
        with self._lock:
            return self._traffic.get((namespace, service))

    @staticmethod
    def _split_host(host: str) -> tuple[str, str] | None:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        host = host.lower().rstrip(".")
        for suffix in ("." + CLUSTER_DOMAIN, ".svc"):
            if host.endswith(suffix):
                host = host[: -len(suffix)]
                break
        parts = host.split(".")
        if len(parts) != 2:
            return None
        return parts[0], parts[1]

    def route(self, host: str) -> Destination | None:
        """The revision that serves a request for ``host``, or None when nothing is routed there."""
        split = self._split_host(host)
        if split is None:
            return None
        name, namespace = split
        with self._lock:
            if (namespace, name) in self._balancers:
                revision = self._balancers[(namespace, name)].pick()
                return Destination(namespace, name, revision) if revision else None
            for (ns, service), targets in self._traffic.items():
                if ns != namespace or not name.endswith("-" + service):
                    continue
                tag = name[: -len(service) - 1]
                for target in targets:
                    if target.tag == tag:
                        return Destination(namespace, service, target.revision)
        return None


def targets_from_status(traffic: Iterable[Mapping[str, Any]]) -> list[Target]:
    """status.traffic entries as routing targets (entries without a revisionName cannot be routed)."""
    return [
        Target(
            revision=str(entry["revisionName"]), percent=int(entry.get("percent") or 0), tag=entry.get("tag")
        )
        for entry in traffic
        if entry.get("revisionName")
    ]


def routing_view(
    targets: Iterable[Target] | None,
) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]] | None:
    """What the router does with ``targets``: each revision's total weight (0 left out), each tag's revision.

    Two target lists with the same view route every request alike: status.traffic (the simulator's source)
    and a KIngress (the real backend's) spell the same routing differently.
    """
    if targets is None:
        return None
    weights: dict[str, int] = {}
    tags: dict[str, str] = {}
    for target in targets:
        if target.percent:
            weights[target.revision] = weights.get(target.revision, 0) + target.percent
        if target.tag:
            tags[target.tag] = target.revision
    return tuple(sorted(weights.items())), tuple(sorted(tags.items()))


RevisionLookup = Callable[[str, str], RevisionInfo | None]


class Router:
    """The ingress: an HTTP proxy that sends each request to the revision the routing table picks."""

    def __init__(
        self, *, routing: RoutingTable, backend_for: Callable[[str, str], Backend | None], metrics: Metrics
    ):
        self.routing = routing
        self._backend_for = backend_for
        self.metrics = metrics
        router = self

        class Handler(_JsonHandler):
            def do_GET(self) -> None:
                router._handle(self)

            def do_POST(self) -> None:
                router._handle(self)

            def do_PUT(self) -> None:
                router._handle(self)

            def do_PATCH(self) -> None:
                router._handle(self)

            def do_DELETE(self) -> None:
                router._handle(self)

            def do_HEAD(self) -> None:
                router._handle(self)

            def finish(self) -> None:
                for upstream in self.__dict__.pop("upstreams", {}).values():
                    upstream.close()
                super().finish()

        self._server = HarnessServer(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = _serve(self._server, "router")

    @staticmethod
    def _connection(request: _JsonHandler, port: int) -> http.client.HTTPConnection:
        # One upstream keep-alive connection per downstream connection and backend, closed with it.
        pool: dict[int, http.client.HTTPConnection] = request.__dict__.setdefault("upstreams", {})
        connection = pool.get(port)
        if connection is None:
            connection = pool[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        return connection

    def _forward(
        self, port: int, request: _JsonHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {key: value for key, value in request.headers.items() if key.lower() not in _HOP_BY_HOP}
        headers["Host"] = request.headers.get("Host", "")
        for attempt in (1, 2):  # a pooled keep-alive connection may have been closed by the backend
            connection = self._connection(request, port)
            try:
                connection.request(request.command, request.path, body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
                return response.status, response.getheaders(), data
            except (ConnectionError, http.client.HTTPException, OSError):
                connection.close()
                request.__dict__.get("upstreams", {}).pop(port, None)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _handle(self, request: _JsonHandler) -> None:
        started = time.monotonic()
        body = request._read_body()
        host = request.headers.get("Host", "")
        destination = self.routing.route(host)
        if destination is None:
            request._send(404, b"", content_type="text/plain")  # Envoy: no route (NR)
            return
        backend = self._backend_for(destination.namespace, destination.revision)
        code: int
        if backend is None:
            code, headers, data = 503, [("Content-Type", "text/plain")], b"no healthy upstream"
        else:
            try:
                code, headers, data = self._forward(backend.port, request, body)
            except (ConnectionError, http.client.HTTPException, OSError) as error:
                code, headers, data = (
                    503,
                    [("Content-Type", "text/plain")],
                    f"upstream error: {error}".encode(),
                )
        millis = (time.monotonic() - started) * 1000
        # Counted when the upstream has answered, before the client gets the answer (as Envoy's upstream
        # stats are), so a client that has its answer finds it in /metrics.
        namespace, revision = destination.namespace, destination.revision
        record_envoy(self.metrics, namespace=namespace, revision=revision, code=code, millis=millis)
        request.send_response(code)
        for key, value in headers:
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.send_header("x-envoy-upstream-service-time", str(int(millis)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class MetricsServer:
    """``GET /metrics`` on its own loopback port: what Prometheus scrapes (Envoy's and queue-proxy's)."""

    def __init__(self, metrics: Metrics) -> None:
        class Handler(_JsonHandler):
            def do_GET(self) -> None:
                if urllib.parse.urlsplit(self.path).path != "/metrics":
                    self._send(404, b"not found\n", content_type="text/plain")
                    return
                self._send(200, metrics.exposition().encode(), content_type="text/plain; version=0.0.4")

        self._server = HarnessServer(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self._thread = _serve(self._server, "metrics")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------------- assembly


class DataPlane:
    """Backends, router and metrics endpoint, fed by a routing table and a revision lookup."""

    def __init__(self, *, revision_lookup: RevisionLookup) -> None:
        self.metrics = Metrics()
        self.routing = RoutingTable()
        self._revision_lookup = revision_lookup
        self._backends: dict[tuple[str, str], Backend] = {}
        self._faults: dict[str, Fault] = {}  # by namespace: every revision at once
        self._lock = threading.Lock()
        self.router = Router(routing=self.routing, backend_for=self.backend, metrics=self.metrics)
        self.metrics_server = MetricsServer(self.metrics)
        self._stoppers: list[Callable[[], None]] = []

    @property
    def router_url(self) -> str:
        return self.router.url

    @property
    def metrics_url(self) -> str:
        return self.metrics_server.url

    def set_fault(self, namespace: str, fault: Fault = NO_FAULT) -> None:
        """Apply `fault` to every revision of `namespace` from the next request on (NO_FAULT clears it)."""
        with self._lock:
            self._faults[namespace] = fault

    def fault(self, namespace: str) -> Fault:
        with self._lock:
            return self._faults.get(namespace, NO_FAULT)

    def backend(self, namespace: str, revision: str) -> Backend | None:
        """The running backend of a revision, started on first use; None for an unknown revision."""
        with self._lock:
            backend = self._backends.get((namespace, revision))
            if backend is not None:
                return backend
        info = self._revision_lookup(namespace, revision)
        if info is None:
            return None
        with self._lock:
            backend = self._backends.get((namespace, revision))
            if backend is None:
                backend = self._backends[(namespace, revision)] = Backend(
                    info, self.metrics, shared=lambda: self.fault(namespace)
                )
            return backend

    def forget(self, namespace: str) -> None:
        """A test's namespace is done with: stop its revisions' backends, drop its fault and its series."""
        with self._lock:
            keys = [key for key in self._backends if key[0] == namespace]
            backends = [self._backends.pop(key) for key in keys]
            self._faults.pop(namespace, None)
        for backend in backends:
            backend.stop()
        self.metrics.forget(namespace)

    def on_stop(self, stopper: Callable[[], None]) -> None:
        self._stoppers.append(stopper)

    def stop(self) -> None:
        for stopper in reversed(self._stoppers):
            stopper()
        self.router.stop()
        self.metrics_server.stop()
        with self._lock:
            backends = list(self._backends.values())
            self._backends.clear()
        for backend in backends:
            backend.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------------- cluster


def revision_lookup_from_cluster(api_client: Any) -> RevisionLookup:
    """Read a Revision once (its spec is immutable) and remember it."""
    from tests.cluster.knative_sim import L_CONFIGURATION, L_SERVICE, Kube  # noqa: PLC0415 - kubernetes import

    kube = Kube(api_client, field_manager="dataplane")
    cache: dict[tuple[str, str], RevisionInfo] = {}
    lock = threading.Lock()

    def lookup(namespace: str, name: str) -> RevisionInfo | None:
        with lock:
            if (namespace, name) in cache:
                return cache[(namespace, name)]
        revision = kube.get("revisions", namespace, name)
        if revision is None:
            return None
        labels = revision["metadata"].get("labels") or {}
        containers = (revision.get("spec") or {}).get("containers") or [{}]
        info = RevisionInfo(
            namespace=namespace,
            name=name,
            configuration=str(labels.get(L_CONFIGURATION, "")),
            service=str(labels.get(L_SERVICE, "")),
            image=str(containers[0].get("image", "")),
        )
        with lock:
            cache[(namespace, name)] = info
        return info

    return lookup


def watch_services(dataplane: DataPlane, api_client: Any) -> Callable[[], None]:
    """Keep the routing table equal to every Knative Service's status.traffic (a watch, as Kourier's).

    Returns the watch's stop function (also called by :meth:`DataPlane.stop`). Stop it before the API server:
    kube-apiserver waits for open watches before it exits.
    """
    from tests.cluster.knative_sim import Informer  # noqa: PLC0415 - kubernetes import

    def on_event(kind: str, service: dict[str, Any]) -> None:
        meta = service["metadata"]
        if kind == "DELETED":
            dataplane.routing.remove(meta["namespace"], meta["name"])
            return
        traffic = (service.get("status") or {}).get("traffic") or []
        dataplane.routing.set_traffic(meta["namespace"], meta["name"], targets_from_status(traffic))

    informer = Informer(api_client, "services", on_event)
    informer.start()
    dataplane.on_stop(informer.stop)
    if not informer.synced.wait(10):
        raise RuntimeError("data plane: Knative Services not listed within 10 s")
    return informer.stop

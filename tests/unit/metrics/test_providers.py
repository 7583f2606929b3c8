"""Contract tests of Flagger's other HTTP metrics providers: not the real services (Datadog, New Relic,
Dynatrace, InfluxDB, Splunk Observability, Cloud Monitoring cannot run here), but a local HTTP server
that checks each request against the provider's documented API (method, path, parameters, headers,
body) and answers with the documented response shapes. Graphite and CloudWatch also run against real
servers (test_graphite.py, test_cloudwatch.py).
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from step.errors import MetricError, NoValuesFound, SpecError
from step.metrics import datadog, dynatrace, graphite, influxdb, newrelic, splunk, stackdriver
from step.metrics.measure import measure
from step.metrics.preview import preview
from step.metrics.provider import build_provider, provider_for
from step.spec.model import Analysis, Canary, Metric, MetricTemplate, SecretRef, TemplateRef

NOW = 1_700_000_000.0


@dataclass
class Seen:
    method: str
    path: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Api:
    """Answers (status, content type, body) per path; records every request."""

    answers: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def answer(
        self, path: str, body: Any, *, status: int = 200, content_type: str = "application/json"
    ) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.answers[path] = (status, content_type, text)


def _handler(api: Api) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            api.seen.append(
                Seen(
                    self.command,
                    parts.path,
                    urllib.parse.parse_qsl(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            status, kind, text = api.answers.get(parts.path, (404, "text/plain", "not found"))
            raw = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            self._any()

        def do_POST(self) -> None:
            self._any()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def template(kind: str, address: str | None, *, secret: bool = True, query: str = "q") -> MetricTemplate:
    return MetricTemplate(
        name="t",
        namespace="ns",
        provider_type=kind,
        query=query,
        address=address,
        secret_ref=SecretRef(name="creds") if secret else None,
    )


def build(module: Any, tpl: MetricTemplate, secret: dict[str, str]) -> Any:
    """The provider `run` builds for `tpl` (the module names which one the test is about)."""
    assert tpl.provider_type == module.KIND
    return build_provider(tpl, secret, timeout=2.0, wall=lambda: NOW)


# ----------------------------------------------------------------------------- Datadog


DD = {"datadog_api_key": "ddapi", "datadog_application_key": "ddapp"}


def test_datadog_request_and_answer(api: Api) -> None:
    api.answer("/api/v1/query", {"status": "ok", "series": [{"pointlist": [[1.69e12, 1.5], [1.69e12, 9.0]]}]})
    provider = build(datadog, template("datadog", api.url), DD).for_interval("1m")
    assert provider.query("sum:requests{env:prod}.as_count()") == 1.5  # the oldest point: a whole bucket
    (seen,) = api.seen
    assert (seen.method, seen.path) == ("GET", "/api/v1/query")
    assert seen.params == [
        ("from", str(int(NOW) - 600)),
        ("query", "sum:requests{env:prod}.as_count()"),
        ("to", str(int(NOW))),
    ]
    assert seen.headers["dd-api-key"] == "ddapi" and seen.headers["dd-application-key"] == "ddapp"


def test_datadog_no_series_is_no_data_and_errors_are_provider_errors(api: Api) -> None:
    provider = build(datadog, template("datadog", api.url), DD)
    api.answer("/api/v1/query", {"status": "ok", "series": []})
    with pytest.raises(NoValuesFound):
        provider.query("q")
    api.answer("/api/v1/query", {"errors": ["Forbidden"]}, status=403)
    with pytest.raises(
        MetricError, match=r"Datadog at http://127\.0\.0\.1:\d+ refused the credentials: HTTP 403"
    ) as err:
        provider.query("q")
    assert not isinstance(err.value, NoValuesFound)
    api.answer("/api/v1/query", {"errors": ["Rate limit"]}, status=429)
    with pytest.raises(MetricError, match="is rate limiting: HTTP 429"):
        provider.query("q")
    api.answer("/api/v1/query", {"errors": ["Error parsing query: unable to parse q"]}, status=400)
    with pytest.raises(MetricError, match=r"error response: Status 400: .*unable to parse q"):
        provider.query("q")
    api.answer("/api/v1/validate", {"valid": True})
    assert provider.is_online()
    with pytest.raises(SpecError, match="datadog credentials do not contain datadog_application_key"):
        build(datadog, template("datadog", api.url), {"datadog_api_key": "x"})


# ----------------------------------------------------------------------------- New Relic


def test_newrelic_request_and_answer(api: Api) -> None:
    secret = {"newrelic_account_id": "1234", "newrelic_query_key": "nrkey"}
    provider = build(newrelic, template("newrelic", api.url), secret).for_interval("30s")
    api.answer("/v1/accounts/1234/query", {"results": [{"result": 2.5}]})
    assert provider.query("SELECT percentage(count(*), WHERE error IS true) FROM Transaction") == 2.5
    (seen,) = api.seen
    assert seen.method == "GET" and seen.headers["x-query-key"] == "nrkey"
    assert seen.params == [
        ("nrql", "SELECT percentage(count(*), WHERE error IS true) FROM Transaction SINCE 30 seconds ago")
    ]
    api.answer("/v1/accounts/1234/query", {"results": [{"result": None}]})
    with pytest.raises(NoValuesFound):
        provider.query("q")


# ----------------------------------------------------------------------------- Dynatrace


def test_dynatrace_request_and_answer(api: Api) -> None:
    provider = build(dynatrace, template("dynatrace", api.url), {"dynatrace_token": "dt0c01.x"}).for_interval(
        "2m"
    )
    api.answer(
        "/api/v2/metrics/query",
        {
            "totalCount": 1,
            "resolution": "Inf",
            "result": [
                {
                    "metricId": "builtin:service.response.time",
                    "data": [{"dimensions": [], "timestamps": [1], "values": [312.5]}],
                }
            ],
        },
    )
    assert provider.query("builtin:service.response.time:avg") == 312.5
    (seen,) = api.seen
    ms = int(NOW * 1000)
    assert seen.params == [
        ("from", str(ms - 1_200_000)),
        ("metricSelector", "builtin:service.response.time:avg"),
        ("resolution", "Inf"),
        ("to", str(ms)),
    ]
    assert seen.headers["authorization"] == "Api-Token dt0c01.x"
    api.answer("/api/v2/metrics/query", {"totalCount": 0, "result": [{"metricId": "m", "data": []}]})
    with pytest.raises(NoValuesFound):
        provider.query("m")
    with pytest.raises(SpecError, match=r"dynatrace needs spec\.provider\.address"):
        build(dynatrace, template("dynatrace", None), {"dynatrace_token": "x"})


# ----------------------------------------------------------------------------- Graphite (contract)


def test_graphite_request_and_answer(api: Api) -> None:
    provider = build(
        graphite, template("graphite", api.url + "/graphite"), {"username": "u", "password": "p"}
    )
    api.answer(
        "/graphite/render",
        [
            {"target": "a", "datapoints": [[1.0, 1700000000], [None, 1700000010]]},
            {"target": "b", "datapoints": [[2.0, 1700000000], [None, 1700000010]]},
        ],
    )
    query = "target=sumSeries(app.{{ x }}.errors)\n   &from=-5min"
    assert provider.query(query) == 2.0  # the last non-null point over every target
    (seen,) = api.seen
    # Flagger collapses whitespace to one space (not removes it): the target keeps a trailing space
    assert seen.params == [
        ("format", "json"),
        ("from", "-5min"),
        ("target", "sumSeries(app.{{ x }}.errors) "),
    ]
    assert seen.headers["authorization"] == "Basic dTpw"
    api.answer("/graphite/render", [{"target": "a", "datapoints": [[None, 1]]}])
    with pytest.raises(NoValuesFound):
        provider.query("target=a")


# ----------------------------------------------------------------------------- InfluxDB


CSV = (
    "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string\r\n"
    "#group,false,false,true,true,false,false,true\r\n"
    "#default,_result,,,,,,\r\n"
    ",result,table,_start,_stop,_time,_value,_field\r\n"
    ",,0,2023-11-14T22:00:00Z,2023-11-14T22:13:20Z,2023-11-14T22:13:20Z,0.25,error_rate\r\n"
    "\r\n"
)


def test_influxdb_request_and_answer(api: Api) -> None:
    provider = build(influxdb, template("influxdb", api.url), {"token": "tok", "org": "my-org"})
    api.answer("/api/v2/query", CSV, content_type="text/csv; charset=utf-8")
    flux = 'from(bucket: "app") |> range(start: -1m) |> mean()'
    assert provider.query(flux) == 0.25
    (seen,) = api.seen
    assert (seen.method, seen.params) == ("POST", [("org", "my-org")])
    assert seen.headers["authorization"] == "Token tok"
    assert seen.headers["accept"] == "application/csv" and seen.headers["content-type"] == "application/json"
    assert json.loads(seen.body) == {
        "query": flux,
        "type": "flux",
        "dialect": {"annotations": ["datatype", "group", "default"], "delimiter": ",", "header": True},
    }
    api.answer("/api/v2/query", "\r\n", content_type="text/csv")
    with pytest.raises(NoValuesFound):  # Flagger answers 0 here; we let onNoData decide
        provider.query(flux)
    api.answer(
        "/api/v2/query", {"code": "invalid", "message": "compilation failed: error at @1:1"}, status=400
    )
    with pytest.raises(MetricError, match="compilation failed"):
        provider.query("bad")
    api.answer("/api/v2/query", {"code": "unauthorized", "message": "unauthorized access"}, status=401)
    with pytest.raises(MetricError, match="refused the credentials: HTTP 401"):
        provider.query(flux)


# ----------------------------------------------------------------------------- Splunk


def test_splunk_request_and_answer(api: Api) -> None:
    provider = build(splunk, template("splunk", api.url), {"sf_token_key": "sftok"}).for_interval("1m")
    stream = (
        'event: control-message\ndata: {"event": "STREAM_START", "timestampMs": 1}\n\n'
        'event: metadata\ndata: {"tsId": "AAAA", "properties": {}}\n\n'
        'event: data\ndata: {"type": "data", "logicalTimestampMs": 1, '
        '"data": [{"tsId": "AAAA", "value": 0.5}]}\n\n'
        'event: data\ndata: {"type": "data", "logicalTimestampMs": 2, '
        '"data": [{"tsId": "AAAA", "value": 0.75}]}\n\n'
        'event: control-message\ndata: {"event": "END_OF_CHANNEL"}\n\n'
    )
    api.answer("/v2/signalflow/execute", stream, content_type="text/event-stream")
    program = "data('requests.errors').sum().publish()"
    assert provider.query(program) == 0.75
    (seen,) = api.seen
    ms = int(NOW * 1000)
    assert seen.method == "POST" and seen.body.decode() == program
    assert seen.params == [("start", str(ms - 600_000)), ("stop", str(ms)), ("immediate", "true")]
    assert seen.headers["x-sf-token"] == "sftok" and seen.headers["content-type"] == "text/plain"
    two = stream.replace('"tsId": "AAAA", "value": 0.75', '"tsId": "BBBB", "value": 0.75')
    api.answer("/v2/signalflow/execute", two, content_type="text/event-stream")
    with pytest.raises(MetricError, match="multiple values"):
        provider.query(program)
    api.answer(
        "/v2/signalflow/execute",
        'event: control-message\ndata: {"event": "END_OF_CHANNEL"}\n\n',
        content_type="text/event-stream",
    )
    with pytest.raises(NoValuesFound):
        provider.query(program)


# ----------------------------------------------------------------------------- Cloud Monitoring


def test_stackdriver_token_from_the_service_account_key_then_the_query(api: Api) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "canary@my-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{api.url}/token",
    }
    api.answer("/token", {"access_token": "ya29.local", "expires_in": 3600, "token_type": "Bearer"})
    api.answer(
        "/v3/projects/my-project/timeSeries:query",
        {
            "timeSeriesDescriptor": {},
            "timeSeriesData": [{"labelValues": [], "pointData": [{"values": [{"doubleValue": 0.991}]}]}],
        },
    )
    secret = {"project": "my-project", "serviceAccountKey": json.dumps(account)}
    provider = build(stackdriver, template("stackdriver", api.url), secret)
    mql = "fetch k8s_container | metric 'x' | within 1m"
    assert provider.query(mql) == 0.991
    token, query = api.seen
    assert token.path == "/token" and b"jwt-bearer" in token.body
    assert query.method == "POST" and query.headers["authorization"] == "Bearer ya29.local"
    assert json.loads(query.body) == {"query": mql}
    api.answer("/v3/projects/my-project/timeSeries:query", {})
    with pytest.raises(NoValuesFound):
        provider.query(mql)
    api.answer(
        "/v3/projects/my-project/timeSeries:query",
        {"error": {"code": 400, "message": "Query is empty", "status": "INVALID_ARGUMENT"}},
        status=400,
    )
    assert provider.is_online()  # Flagger's check: the empty query refused as invalid
    with pytest.raises(SpecError, match="stackdriver credentials do not contain project"):
        build(stackdriver, template("stackdriver", api.url), {})


# ----------------------------------------------------------------------------- measure, plan and the factory


def test_measure_binds_the_metrics_interval_and_keeps_provider_errors_apart(api: Api) -> None:
    tpl = template("datadog", api.url, query="avg:latency{service:{{ target }}}")
    canary = Canary(name="podinfo", namespace="ns", target_name="podinfo", analysis=Analysis())
    metric = Metric(name="latency", interval="5m", threshold_max=500, template_ref=TemplateRef(name="t"))
    provider = provider_for(tpl, secret=DD)
    api.answer("/api/v1/query", {"series": [{"pointlist": [[1, 120.0]]}]})
    reading = measure(
        canary,
        metric,
        canary_revision="podinfo-00002",
        templates={("ns", "t"): tpl},
        metrics_server=provider,
        template_providers={("ns", "t"): provider},
    )
    assert reading.value == 120.0
    (seen,) = api.seen
    params = dict(seen.params)
    assert params["query"] == "avg:latency{service:podinfo}"
    assert int(params["to"]) - int(params["from"]) == 3000  # 10 x 5m, as Flagger's fromDelta
    api.answer("/api/v1/query", {}, status=500)
    failed = measure(
        canary,
        metric,
        canary_revision="podinfo-00002",
        templates={("ns", "t"): tpl},
        metrics_server=provider,
        template_providers={("ns", "t"): provider},
    )
    assert failed.value is None and "Status 500" in failed.error and not failed.no_data


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            "datadog",
            {
                "method": "GET",
                "url": "https://api.datadoghq.com/api/v1/query?from=%3Cnow-600s%3E&query=q&to=%3Cnow%3E",
                "headers": {
                    "DD-API-KEY": "<secret datadog_api_key>",
                    "DD-APPLICATION-KEY": "<secret datadog_application_key>",
                },
            },
        ),
        (
            "newrelic",
            {
                "method": "GET",
                "url": "https://insights-api.newrelic.com/v1/accounts/<secret newrelic_account_id>/query"
                "?nrql=q+SINCE+60+seconds+ago",
                "headers": {"X-Query-Key": "<secret newrelic_query_key>"},
            },
        ),
    ],
)
def test_plan_preview_is_the_request_with_credentials_masked(kind: str, expected: dict[str, Any]) -> None:
    shown = preview(template(kind, None), "q", interval="1m", default_address=None)
    assert shown == {"provider": kind, "request": expected}


def test_plan_preview_of_every_provider_names_no_secret_value() -> None:
    for kind, address in [
        ("dynatrace", "https://abc.live.dynatrace.com"),
        ("graphite", "http://graphite"),
        ("influxdb", "http://influx:8086"),
        ("splunk", "https://api.us1.signalfx.com"),
        ("stackdriver", None),
        ("cloudwatch", None),
        ("prometheus", "http://prom:9090"),
    ]:
        shown = json.dumps(
            preview(template(kind, address), '[{"Id": "a"}]', interval="1m", default_address=None)
        )
        assert kind in shown
    splunk_shown = preview(
        template("splunk", "https://api.us1.signalfx.com"), "p", interval="1m", default_address=None
    )
    assert splunk_shown["request"]["url"].startswith("https://stream.us1.signalfx.com/v2/signalflow/execute?")


def test_an_unreachable_provider_is_a_provider_error_that_quotes_no_credential() -> None:

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = {"newrelic_account_id": "7777777", "newrelic_query_key": "nrkey"}
    provider = build(newrelic, template("newrelic", f"http://127.0.0.1:{port}"), secret)
    with pytest.raises(MetricError, match="is unreachable") as caught:
        provider.query("SELECT 1")
    assert "7777777" not in str(caught.value) and "<secret newrelic_account_id>" in str(caught.value)
    assert not provider.is_online() and provider.last_error is not None


def test_online_checks_as_flagger_reads_them(api: Api) -> None:
    """Cloud Monitoring's empty query is refused with 400 when it answers; InfluxDB without the
    `default` bucket answers 404; a refused key is offline with the status kept for the preflight."""
    influx = build(influxdb, template("influxdb", api.url), {"token": "tok", "org": "o"})
    api.answer("/api/v2/query", {"code": "not found", "message": 'bucket "default" not found'}, status=404)
    assert influx.is_online()
    api.answer("/api/v1/validate", {"errors": ["Forbidden"]}, status=403)
    dd = build(datadog, template("datadog", api.url), DD)
    assert not dd.is_online()
    assert dd.last_error is not None and dd.last_error.status == 403
    assert "refused the credentials" in str(dd.last_error)
    api.answer("/api/v1/validate", {}, status=500)
    assert not dd.is_online() and dd.last_error is not None and dd.last_error.status == 500

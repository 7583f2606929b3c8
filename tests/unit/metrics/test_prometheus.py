"""PrometheusProvider against a real Prometheus process (Debian's /usr/bin/prometheus) on loopback.

Basic auth is Prometheus' own: `--web.config.file` with a bcrypt hash (made once with
`crypt.crypt(pw, crypt.mksalt(crypt.METHOD_BLOWFISH))` and pasted here as data).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest
import requests

from step.errors import MetricError, NoValuesFound, SpecError, UsageError
from step.metrics.prometheus import PrometheusProvider
from step.metrics.provider import builtin_provider, provider_for
from step.spec.model import MetricTemplate, SecretRef

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's prometheus package (make tools)")

USER, PASSWORD = "canary", "s3cr3t"
PASSWORD_BCRYPT = "$2b$04$zYJGZLUx1cK8AkVLB4emueBnisM2vaTyCHgpQmmR/5HNRtOIUPSWC"  # bcrypt("s3cr3t")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: BinaryIO

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _start(workdir: Path, *, basic_auth: bool = False) -> Prometheus:
    assert PROMETHEUS is not None
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs: []\n")
    args = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    if basic_auth:
        web = workdir / "web.yml"
        web.write_text(f'basic_auth_users:\n  {USER}: "{PASSWORD_BCRYPT}"\n')
        args.append(f"--web.config.file={web}")
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    prom = Prometheus(url=f"http://127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + 30
    auth = (USER, PASSWORD) if basic_auth else None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-2000:]}")
        try:
            if requests.get(f"{prom.url}/-/ready", timeout=1, auth=auth).status_code == 200:
                return prom
        except requests.ConnectionError:
            pass
        time.sleep(0.05)  # polling a readiness condition, with a deadline
    prom.stop()
    raise RuntimeError("prometheus did not become ready within 30s")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = _start(tmp_path_factory.mktemp("prom"))
    yield prom
    prom.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = _start(tmp_path_factory.mktemp("prom-auth"), basic_auth=True)
    yield prom
    prom.stop()


def test_a_query_with_data(prometheus: Prometheus) -> None:
    assert PrometheusProvider(prometheus.url).query("vector(99.5)") == 99.5


def test_the_last_series_wins(prometheus: Prometheus) -> None:
    query = 'label_replace(vector(1), "s", "a", "", "") or label_replace(vector(2), "s", "b", "", "")'
    assert PrometheusProvider(prometheus.url).query(query) == 2.0


def test_a_scalar_result(prometheus: Prometheus) -> None:
    assert PrometheusProvider(prometheus.url).query("scalar(vector(3))") == 3.0


def test_an_empty_result_is_no_values_found(prometheus: Prometheus) -> None:
    with pytest.raises(NoValuesFound, match=r"^no values found$"):
        PrometheusProvider(prometheus.url).query('up{job="nothing-here"}')


def test_nan_is_no_values_found(prometheus: Prometheus) -> None:
    with pytest.raises(NoValuesFound):
        PrometheusProvider(prometheus.url).query("vector(0) / 0")


def test_a_range_vector_is_an_error(prometheus: Prometheus) -> None:
    # A sub-query yields a matrix for an instant query, whether or not any target is scraped.
    with pytest.raises(MetricError, match="multiple values") as caught:
        PrometheusProvider(prometheus.url).query("vector(1)[5s:1s]")
    assert not isinstance(caught.value, NoValuesFound)


def test_a_bad_query_is_an_error_response(prometheus: Prometheus) -> None:
    with pytest.raises(MetricError, match=r"^error response: Status 400: bad_data: .*parse error") as caught:
        PrometheusProvider(prometheus.url).query("sum(")
    assert not isinstance(caught.value, NoValuesFound)


def test_is_online(prometheus: Prometheus) -> None:
    provider = PrometheusProvider(prometheus.url)
    assert provider.is_online() is True
    assert provider.last_error is None


def test_basic_auth_against_prometheus_own_web_config(guarded: Prometheus) -> None:
    assert PrometheusProvider(guarded.url, username=USER, password=PASSWORD).query("vector(7)") == 7.0
    with pytest.raises(MetricError, match=r"^error response: Status 401"):
        PrometheusProvider(guarded.url, username=USER, password="wrong").query("vector(7)")
    with pytest.raises(MetricError, match=r"^error response: Status 401"):
        PrometheusProvider(guarded.url).query("vector(7)")


def test_a_template_with_a_basic_auth_secret(guarded: Prometheus) -> None:
    template = MetricTemplate(
        name="latency",
        namespace="test",
        provider_type="prometheus",
        query="vector(5)",
        address=guarded.url,
        secret_ref=SecretRef(name="prom-auth"),
    )
    provider = provider_for(template, secret={"username": USER, "password": PASSWORD})
    assert provider.query(template.query) == 5.0


def test_a_stopped_prometheus_is_a_metric_error_naming_the_address(tmp_path: Path) -> None:
    prom = _start(tmp_path / "short-lived")
    provider = PrometheusProvider(prom.url)
    assert provider.query("vector(1)") == 1.0
    prom.stop()
    with pytest.raises(MetricError) as caught:
        provider.query("vector(1)")
    assert str(caught.value).startswith(f"Prometheus at {prom.url} is unreachable")
    assert not isinstance(caught.value, NoValuesFound)
    assert caught.value.__cause__ is None
    assert provider.is_online() is False
    assert provider.last_error is not None and prom.url in str(provider.last_error)


def test_headers_and_bearer_token_reach_the_server(prometheus: Prometheus) -> None:
    # Prometheus ignores them without a web config; what matters is the request still succeeds.
    provider = PrometheusProvider(prometheus.url, token="abc", headers={"X-Scope-OrgID": "team-a"})
    assert provider.query("vector(1)") == 1.0


# ----------------------------------------------------------------------------- the factory


def _template(provider_type: str, **kw: object) -> MetricTemplate:
    return MetricTemplate(name="t", namespace="ns", provider_type=provider_type, query="q", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "words"), [("keptn", "is not supported"), ("bogus", "is unknown")])
def test_the_factory_refuses_other_provider_types(kind: str, words: str) -> None:
    with pytest.raises(SpecError, match=rf"MetricTemplate ns/t: provider type '{kind}' {words}") as caught:
        provider_for(_template(kind, address="http://x:9090"))
    supported = (
        "cloudwatch, datadog, dynatrace, graphite, influxdb, newrelic, prometheus, splunk, stackdriver"
    )
    assert f"supported: {supported})" in str(caught.value)


def test_the_factory_needs_an_address() -> None:
    with pytest.raises(SpecError, match="address is not set"):
        provider_for(_template("prometheus"))
    provider = provider_for(_template("prometheus"), default_address="http://prom:9090")
    assert isinstance(provider, PrometheusProvider) and provider.address == "http://prom:9090"


def test_the_factory_needs_both_halves_of_basic_auth() -> None:
    template = _template("prometheus", address="http://x:9090", secret_ref=SecretRef(name="s"))
    with pytest.raises(SpecError, match='secret "s" has no "password" key'):
        provider_for(template, secret={"username": "u"})
    with pytest.raises(SpecError, match="data was not passed"):
        provider_for(template)


def test_builtin_provider_and_bad_addresses() -> None:
    assert isinstance(builtin_provider("http://prom:9090/"), PrometheusProvider)
    with pytest.raises(UsageError, match="is not a URL"):  # a mistake no retry fixes: exit 2
        PrometheusProvider("prometheus:9090")

"""The CloudWatch provider against moto's CloudWatch in server mode (a real HTTP endpoint on loopback
that boto3 signs requests for): Flagger's GetMetricData call, the first value, no data, a query the
API refuses, and a provider error when the endpoint is down."""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from step.errors import MetricError, NoValuesFound, SpecError
from step.metrics import cloudwatch
from step.spec.model import MetricTemplate

NOW = dt.datetime.now(tz=dt.UTC).replace(microsecond=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }.items():
        monkeypatch.setenv(name, value)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _template(address: str | None, region: str | None = "eu-west-1") -> MetricTemplate:
    return MetricTemplate(
        name="t", namespace="ns", provider_type="cloudwatch", query="", address=address, region=region
    )


QUERY = json.dumps(
    [
        {
            "Id": "errors",
            "MetricStat": {
                "Metric": {
                    "Namespace": "App",
                    "MetricName": "5xx",
                    "Dimensions": [{"Name": "Service", "Value": "podinfo"}],
                },
                "Period": 60,
                "Stat": "Sum",
            },
            "ReturnData": True,
        }
    ]
)


def test_get_metric_data_answers_the_first_value(endpoint: str) -> None:
    client = boto3.client("cloudwatch", region_name="eu-west-1", endpoint_url=endpoint)
    client.put_metric_data(
        Namespace="App",
        MetricData=[
            {
                "MetricName": "5xx",
                "Dimensions": [{"Name": "Service", "Value": "podinfo"}],
                "Timestamp": NOW - dt.timedelta(seconds=30),
                "Value": 7.0,
            }
        ],
    )
    provider = cloudwatch.build(_template(endpoint), {}, timeout=5.0, wall=NOW.timestamp).for_interval("1m")
    assert provider.query(QUERY) == 7.0
    assert provider.is_online()
    other = QUERY.replace("podinfo", "nobody")
    with pytest.raises(NoValuesFound):
        provider.query(other)


def test_errors_are_provider_errors(endpoint: str) -> None:
    provider = cloudwatch.build(_template(endpoint), {}, timeout=2.0, wall=NOW.timestamp)
    with pytest.raises(MetricError, match="error unmarshaling query") as caught:
        provider.query("not json")
    assert not isinstance(caught.value, NoValuesFound)
    down = f"http://127.0.0.1:{_free_port()}"
    offline = cloudwatch.build(_template(down), {}, timeout=1.0, wall=NOW.timestamp)
    with pytest.raises(MetricError, match="error requesting cloudwatch") as caught:
        offline.query(QUERY)
    assert not isinstance(caught.value, NoValuesFound)
    assert not offline.is_online()


def test_a_region_is_required() -> None:
    with pytest.raises(SpecError, match=r"cloudwatch needs spec\.provider\.region"):
        cloudwatch.build(_template(None, region=None), {}, timeout=1.0, wall=lambda: 0.0)

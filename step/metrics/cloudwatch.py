"""The AWS CloudWatch provider (Flagger's `cloudwatch`): `GetMetricData`.

Owns: the call Flagger makes — the query is a JSON list of `MetricDataQuery` (`Id`, `MetricStat` or
`Expression`, ...: the API's own field names), sent as `GetMetricData(MetricDataQueries=<it>,
StartTime=now - 10 x the metric's interval, EndTime=now, MaxDatapoints=20)` in the template's
`region` (required), with the AWS SDK's default credentials (environment, web identity / IRSA,
instance role: Flagger reads no Secret for CloudWatch); a template's `provider.address` is the
endpoint URL (a VPC endpoint, or a local one) — and its reading of the answer: the first result's
first value, none is `NoValuesFound`. AWS errors stay provider errors (denied, throttled,
unreachable, a query the API refuses). `is_online` sends an empty query; 400 means reachable.
It signs with boto3, the optional extra `canary-step[aws]` (about 100 MB with botocore's data); without
it this provider is refused at start with that advice.
Must not: judge values or retry beyond the SDK's own 3 retries (Flagger's `WithMaxRetries(3)`).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from step.errors import MetricError, NoValuesFound, SpecError, one_line
from step.metrics.request import Wall, interval_seconds, where
from step.spec.model import DEFAULT_METRIC_INTERVAL, MetricTemplate

KIND = "cloudwatch"
WINDOW_FACTOR = 10
MAX_DATAPOINTS = 20
MAX_RETRIES = 3


def parse_query(query: str) -> list[Any]:
    try:
        queries = json.loads(query)
    except ValueError as err:
        raise MetricError(f"error unmarshaling query: {err}") from None
    if not isinstance(queries, list) or not all(isinstance(q, dict) for q in queries):
        raise MetricError("error unmarshaling query: expected a JSON list of MetricDataQuery objects")
    return queries


@dataclass(frozen=True, kw_only=True)
class AwsCall:
    """The GetMetricData call as `plan` shows it (times symbolic)."""

    region: str
    endpoint: str | None
    params: dict[str, Any]

    def shown(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "api": "cloudwatch:GetMetricData",
            "region": self.region,
            "params": self.params,
        }
        if self.endpoint:
            shown["endpoint"] = self.endpoint
        return shown


def preview(template: MetricTemplate, query: str, *, interval: str) -> AwsCall:
    window = WINDOW_FACTOR * interval_seconds(interval)
    try:
        queries: Any = parse_query(query)
    except MetricError as err:
        queries = f"<{err}>"
    return AwsCall(
        region=template.region or "<region not set>",
        endpoint=template.address,
        params={
            "MetricDataQueries": queries,
            "StartTime": f"<now-{window:g}s>",
            "EndTime": "<now>",
            "MaxDatapoints": MAX_DATAPOINTS,
        },
    )


class CloudWatchProvider:
    """Measures with CloudWatch GetMetricData; never judges."""

    def __init__(
        self, *, client: Any, errors: Any, interval: str = DEFAULT_METRIC_INTERVAL, wall: Wall = time.time
    ) -> None:
        self._client = client
        self._errors = errors  # botocore.exceptions
        self.interval = interval
        self._window = WINDOW_FACTOR * interval_seconds(interval)
        self._wall = wall
        self.last_error: MetricError | None = None

    def for_interval(self, interval: str) -> CloudWatchProvider:
        if interval == self.interval:
            return self
        return CloudWatchProvider(
            client=self._client, errors=self._errors, interval=interval, wall=self._wall
        )

    def close(self) -> None:
        close: Callable[[], None] | None = getattr(self._client, "close", None)
        if close is not None:
            close()

    def _call(self, **params: Any) -> Any:
        errors = self._errors
        try:
            return self._client.get_metric_data(**params)
        except errors.ClientError as err:
            error = err.response.get("Error", {})
            code, text = error.get("Code", "?"), error.get("Message", "")
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if (
                code in ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException")
                or status == 403
            ):
                raise MetricError(f"CloudWatch refused the credentials: {code}: {text}") from None
            if code in ("Throttling", "ThrottlingException", "TooManyRequestsException") or status == 429:
                raise MetricError(f"CloudWatch is rate limiting: {code}: {text}") from None
            raise MetricError(f"error requesting cloudwatch: {code}: {text}") from None
        except errors.NoCredentialsError:
            raise MetricError(
                "CloudWatch: no AWS credentials found (environment, web identity or role)"
            ) from None
        except errors.BotoCoreError as err:
            raise MetricError(f"error requesting cloudwatch: {one_line(err)}") from None

    def query(self, promql: str) -> float:
        queries = parse_query(promql)
        end = dt.datetime.fromtimestamp(self._wall(), tz=dt.UTC)
        start = end - dt.timedelta(seconds=self._window)
        answer = self._call(
            MetricDataQueries=queries, StartTime=start, EndTime=end, MaxDatapoints=MAX_DATAPOINTS
        )
        results = answer.get("MetricDataResults") or []
        values = results[0].get("Values") or [] if results else []
        if not values:
            raise NoValuesFound("no values found")
        return float(values[0])

    def is_online(self) -> bool:
        epoch = dt.datetime.fromtimestamp(0, tz=dt.UTC)
        try:
            self._call(MetricDataQueries=[], StartTime=epoch, EndTime=epoch)
        except MetricError as err:
            if "ValidationError" in str(err) or "InvalidParameter" in str(err):
                self.last_error = None
                return True  # refused as a bad request: reachable and allowed (Flagger's check)
            self.last_error = err
            return False
        self.last_error = None
        return True


def build(template: MetricTemplate, secret: object, *, timeout: float, wall: Wall) -> CloudWatchProvider:
    here = where(template)
    if not template.region:
        raise SpecError(f"{here}: cloudwatch needs spec.provider.region")
    try:  # the optional extra canary-step[aws], imported only when a template asks for it
        boto3: Any = importlib.import_module("boto3")
        config: Any = importlib.import_module("botocore.config")
        errors: Any = importlib.import_module("botocore.exceptions")
    except ImportError:
        raise SpecError(f"{here}: the cloudwatch provider needs boto3: install canary-step[aws]") from None
    settings = config.Config(
        retries={"max_attempts": MAX_RETRIES + 1, "mode": "standard"},
        connect_timeout=timeout,
        read_timeout=timeout,
    )
    try:
        client = boto3.client(
            "cloudwatch",
            region_name=template.region,
            endpoint_url=template.address or None,
            verify=not template.insecure_skip_verify,
            config=settings,
        )
    except (errors.BotoCoreError, ValueError) as err:
        raise SpecError(f"{here}: could not set up the CloudWatch client: {one_line(err)}") from None
    return CloudWatchProvider(client=client, errors=errors, wall=wall)

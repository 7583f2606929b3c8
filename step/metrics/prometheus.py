"""The Prometheus metrics provider: one instant query, one number, as Flagger's provider reads it.

Owns: `PrometheusProvider` — `GET <address>/api/v1/query?query=...` with a timeout, bearer or basic
auth and extra headers; Flagger's result handling (flagger-semantics 3.3): the last vector value
wins, a range vector is an error, an empty result or NaN is `NoValuesFound`, HTTP >= 400 is
`MetricError("error response: Status N ...")`; `is_online()` (`vector(1)` must return 1); and
`samples`, the values of one series over a window at a fixed step (`/api/v1/query_range`, for the
statistical judge: NaN points dropped, an empty result is no samples).
Must not: apply thresholds, count failures, render query templates, or retry more than one quick
reconnect (`RECONNECT_ONCE`, run by `step.retrying`; the engine counts consecutive provider errors
itself).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping
from typing import Any

import requests
import tenacity
import urllib3

from step.errors import MetricError, NoValuesFound, UsageError, connection_failure, is_http_url, one_line
from step.retrying import RetryPolicy, retrying

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 5.0  # Flagger's Prometheus client timeout
# One immediate reconnect on a refused or reset connection, no more, and none after a connect timeout.
RECONNECT_ONCE = RetryPolicy(
    attempts=2, backoff_base=0.0, backoff_cap=0.0, jitter=0.0, deadline=math.inf, retry_after_cap=0.0
)


def _worth_reconnecting(err: BaseException) -> bool:
    return isinstance(err, requests.ConnectionError) and not isinstance(err, requests.ConnectTimeout)


class PrometheusProvider:
    """Measures with Prometheus' instant-query API; never judges."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        insecure_skip_verify: bool = False,
        retry: RetryPolicy = RECONNECT_ONCE,
    ) -> None:
        if not is_http_url(address):
            raise UsageError(
                f"Prometheus address {address!r} is not a URL (expected e.g. http://prometheus:9090)"
            )
        self.address = address.rstrip("/")
        self._timeout = timeout
        self._verify = not insecure_skip_verify
        self._retry = retry
        self._session = requests.Session()
        # Our own policy owns the (single) reconnect; requests/urllib3 must not retry behind it.
        self._session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
        self._session.mount("https://", requests.adapters.HTTPAdapter(max_retries=0))
        self._session.headers.update(dict(headers or {}))
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"
        elif username is not None or password is not None:
            self._session.auth = (username or "", password or "")
        self.last_error: MetricError | None = None

    def close(self) -> None:
        self._session.close()

    def query(self, promql: str) -> float:
        """The query's value. Raises NoValuesFound (empty, NaN) or MetricError (anything else)."""
        payload = self._get(promql)
        return _value_of(payload)

    def samples(self, promql: str, *, window_seconds: float, step_seconds: float) -> list[float]:
        """The query's values over the last `window_seconds`, one every `step_seconds` (a range query
        ending now). An empty result is `[]`; NaN points (0/0 while a revision had no requests) are
        dropped; more than one series is a MetricError, as for `query`."""
        if window_seconds <= 0 or step_seconds <= 0:
            raise MetricError(
                f"a range query needs a positive window and step ({window_seconds}, {step_seconds})"
            )
        end = time.time()
        payload = self._get(
            promql,
            path="query_range",
            extra={"start": f"{end - window_seconds:.3f}", "end": f"{end:.3f}", "step": f"{step_seconds:g}"},
        )
        return _values_of(payload)

    def is_online(self) -> bool:
        """Flagger's check: `vector(1)` answers 1. The reason for a False is kept in `last_error`."""
        try:
            value = self.query("vector(1)")
        except MetricError as err:
            self.last_error = err
            return False
        if value != 1:
            self.last_error = MetricError(f"Prometheus at {self.address} answered vector(1) with {value}")
            return False
        self.last_error = None
        return True

    def _get(
        self, promql: str, *, path: str = "query", extra: Mapping[str, str] | None = None
    ) -> Mapping[str, Any]:
        url = f"{self.address}/api/v1/{path}"
        params = {"query": promql, **(extra or {})}

        def send() -> requests.Response:
            with warnings.catch_warnings():
                # insecureSkipVerify was asked for explicitly; urllib3 need not warn on every query.
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return self._session.get(url, params=params, timeout=self._timeout, verify=self._verify)

        loop = retrying(
            self._retry,
            retry=tenacity.retry_if_exception(_worth_reconnecting),
            sleep=time.sleep,
            before_sleep=lambda state: log.debug(
                "Prometheus at %s: %s; reconnecting",
                self.address,
                state.outcome.exception() if state.outcome else "?",
            ),
        )
        try:
            response = loop(send)
        except requests.ConnectionError as err:
            raise MetricError(
                f"Prometheus at {self.address} is unreachable: {connection_failure(err)}; check the "
                "address (--metrics-server, or the Canary's spec.metricsServer)"
            ) from None
        except requests.Timeout:
            raise MetricError(
                f"Prometheus at {self.address} did not answer within {self._timeout:g}s"
            ) from None
        except requests.RequestException as err:
            raise MetricError(f"Prometheus at {self.address}: request failed: {one_line(err)}") from None
        try:
            if response.status_code >= 400:
                raise MetricError(
                    f"error response: Status {response.status_code}: {_error_text(response)} (GET {url})",
                    status=response.status_code,
                )
            try:
                payload = response.json()
            except ValueError:
                raise MetricError(
                    f"Prometheus at {self.address} answered with something that is not JSON:"
                    f" {response.text[:200]!r}"
                ) from None
        finally:
            response.close()
        if not isinstance(payload, Mapping):
            raise MetricError(f"Prometheus at {self.address} answered with unexpected JSON: {payload!r:.200}")
        return payload


def _value_of(payload: Mapping[str, Any]) -> float:
    data = payload.get("data")
    if payload.get("status") not in (None, "success") or not isinstance(data, Mapping):
        raise MetricError(f"unexpected Prometheus answer: {dict(payload)!r:.300}")
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list) and len(result) == 2:
        value = _float(result[1])
    elif isinstance(result, list):
        value = None
        for series in result:
            if not isinstance(series, Mapping):
                raise MetricError(f"unexpected Prometheus result entry: {series!r:.200}")
            if "values" in series:
                raise MetricError(
                    "multiple values returned (a range vector); the query must return one value"
                )
            pair = series.get("value")
            if not isinstance(pair, list) or len(pair) != 2:
                raise MetricError(f"unexpected Prometheus result entry: {dict(series)!r:.200}")
            value = _float(pair[1])  # the last one wins, as in Flagger
    else:
        raise MetricError(f"unexpected Prometheus result: {result!r:.200}")
    if value is None or math.isnan(value):
        raise NoValuesFound("no values found")
    return value


def _values_of(payload: Mapping[str, Any]) -> list[float]:
    """A range query's values (a matrix of at most one series), NaN dropped."""
    data = payload.get("data")
    if payload.get("status") not in (None, "success") or not isinstance(data, Mapping):
        raise MetricError(f"unexpected Prometheus answer: {dict(payload)!r:.300}")
    result = data.get("result")
    if data.get("resultType") != "matrix" or not isinstance(result, list):
        raise MetricError(f"unexpected Prometheus range result: {result!r:.200}")
    if len(result) > 1:
        raise MetricError(
            f"{len(result)} series returned; a compared query must return one series per revision"
        )
    if not result:
        return []
    series = result[0]
    points = series.get("values") if isinstance(series, Mapping) else None
    if not isinstance(points, list):
        raise MetricError(f"unexpected Prometheus result entry: {series!r:.200}")
    values = []
    for point in points:
        if not isinstance(point, list) or len(point) != 2:
            raise MetricError(f"unexpected Prometheus sample: {point!r:.100}")
        value = _float(point[1])
        if not math.isnan(value):
            values.append(value)
    return values


def _float(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise MetricError(f"Prometheus returned a value that is not a number: {raw!r:.100}") from None


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and body.get("error"):
        kind = f"{body['errorType']}: " if body.get("errorType") else ""
        return f"{kind}{body['error']}"
    return response.text.strip()[:300] or response.reason or ""

"""Sending a provider's request and mapping its failures: the HTTP metrics providers other than Prometheus.

Owns: `HttpProvider` (the `ports.MetricsProvider` over a `request.Spec`: a per-attempt timeout, one
quick reconnect like Prometheus', the metric's interval bound with `for_interval`), and the one
mapping of HTTP failures to provider errors: unreachable, timed out, auth refused (401/403), rate
limited (429), other >= 400, a body that is not what the provider documents — each with its status,
never quoting a credential. No answer is ever a failed check: only `NoValuesFound` (which follows
`onNoData`) is.
Must not: render templates, judge values, count errors, or retry beyond one reconnect.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence

import requests
import tenacity
import urllib3

from step.errors import MetricError, one_line
from step.metrics.request import HttpQuery, Spec, Window, interval_seconds, secret_marker
from step.retrying import RetryPolicy, retrying
from step.spec.model import DEFAULT_METRIC_INTERVAL

DEFAULT_TIMEOUT_SECONDS = 5.0  # Flagger's providers' client timeout
RECONNECT_ONCE = RetryPolicy(
    attempts=2, backoff_base=0.0, backoff_cap=0.0, jitter=0.0, deadline=math.inf, retry_after_cap=0.0
)
MAX_QUOTED = 300


def _worth_reconnecting(err: BaseException) -> bool:
    return isinstance(err, requests.ConnectionError) and not isinstance(err, requests.ConnectTimeout)


class HttpProvider:
    """A metrics provider over HTTP; `window_factor` x the metric's interval is the range it queries."""

    def __init__(
        self,
        spec: Spec,
        *,
        address: str,
        window_factor: float = 0,
        interval: str = DEFAULT_METRIC_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        insecure_skip_verify: bool = False,
        wall: Callable[[], float] = time.time,
        session: requests.Session | None = None,
        auth: Callable[[], Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        self.spec = spec
        self.address = address
        self.window_factor = window_factor
        self.interval = interval
        self._window_seconds = window_factor * interval_seconds(interval)
        self._timeout = timeout
        self._verify = not insecure_skip_verify
        self._wall = wall
        self._auth = auth  # extra headers fetched per request (an OAuth token)
        if session is None:
            session = requests.Session()
            session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
            session.mount("https://", requests.adapters.HTTPAdapter(max_retries=0))
        self._session = session
        self.last_error: MetricError | None = None

    def for_interval(self, interval: str) -> HttpProvider:
        """The same provider querying over `interval` (Flagger builds its providers per metric interval)."""
        if interval == self.interval:
            return self
        bound = HttpProvider.__new__(HttpProvider)
        bound.__dict__.update(self.__dict__)
        bound.interval = interval
        bound._window_seconds = self.window_factor * interval_seconds(interval)
        return bound

    def request_for(self, query: str, *, now: float | None) -> HttpQuery:
        return self.spec.request(query, Window(seconds=self._window_seconds, now=now))

    def close(self) -> None:
        self._session.close()

    def query(self, promql: str) -> float:
        response = self._send(self.request_for(promql, now=self._wall()))
        try:
            return self.spec.value(response)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise MetricError(
                f"{self.spec.name} answered with something it does not document: {err}; "
                f"{response.text.strip()[:MAX_QUOTED]!r}"
            ) from None

    def is_online(self) -> bool:
        """The provider's own online check (Flagger's `IsOnline`); `ONLINE_ALSO` statuses count as an
        answer: Cloud Monitoring refuses the empty query with 400, InfluxDB may lack the bucket."""
        try:
            self._send(self.spec.online_request())
        except MetricError as err:
            if err.status is not None and err.status in getattr(self.spec, "ONLINE_ALSO", ()):
                self.last_error = None
                return True
            self.last_error = err
            return False
        self.last_error = None
        return True

    def _send(self, request: HttpQuery) -> requests.Response:
        where = f"{self.spec.name} at {self.address}"
        headers = dict(request.headers)
        if self._auth is not None:
            headers.update(dict(self._auth()))

        def send() -> requests.Response:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return self._session.request(
                    request.method,
                    request.url,
                    params=list(request.params),
                    headers=headers,
                    data=request.body.encode() if request.body is not None else None,
                    timeout=self._timeout,
                    verify=self._verify,
                )

        def masked(text: str) -> str:  # a library's message quotes the URL, which may hold a credential
            for key, value in request.secrets.items():
                if value:
                    text = text.replace(value, secret_marker(key))
            return text

        loop = retrying(
            RECONNECT_ONCE, retry=tenacity.retry_if_exception(_worth_reconnecting), sleep=time.sleep
        )
        try:
            response = loop(send)
        except requests.Timeout:
            raise MetricError(f"{where} did not answer within {self._timeout:g}s") from None
        except requests.ConnectionError as err:
            raise MetricError(f"{where} is unreachable: {masked(one_line(err))}") from None
        except requests.RequestException as err:
            raise MetricError(f"{where}: request failed: {masked(one_line(err))}") from None
        status = response.status_code
        if status < 400:
            return response
        body = masked(response.text.strip()[:MAX_QUOTED])
        if status in (401, 403):
            raise MetricError(f"{where} refused the credentials: HTTP {status}: {body}", status=status)
        if status == 429:
            after = response.headers.get("Retry-After")
            text = f"{where} is rate limiting: HTTP 429" + (f" (Retry-After {after})" if after else "")
            raise MetricError(text, status=status)
        raise MetricError(f"error response: Status {status}: {body}", status=status)

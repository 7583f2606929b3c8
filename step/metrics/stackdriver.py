"""The Google Cloud Monitoring provider (Flagger's `stackdriver`): an MQL query, `timeSeries:query`.

Owns: the request Flagger's Go client makes, over REST — `POST <address>/v3/projects/<project>/
timeSeries:query` with the body `{"query": <MQL>}` (address `https://monitoring.googleapis.com`; a
template's `provider.address` overrides it, for a private endpoint), the project from the secret's
`project` (required), a bearer token from its `serviceAccountKey` (a service-account JSON key) or,
without one, from the application default credentials — and its reading of the answer: the first time
series' first point's first value (`doubleValue`, or `int64Value`), none is `NoValuesFound`.
`is_online` sends the empty query, which the API refuses with 400 when it is reachable and we may
ask (Flagger's check).
The token comes from `google-auth`, the optional extra `canary-step[gcp]`; without it this provider is
refused at start with that advice. The query itself is plain `requests`.
Must not: judge values or retry (see `remote`).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from step.errors import MetricError, NoValuesFound, SpecError, one_line
from step.metrics.request import HttpQuery, Window, where
from step.spec.model import MetricTemplate

if TYPE_CHECKING:
    import requests

KIND = "stackdriver"
DEFAULT_ADDRESS = "https://monitoring.googleapis.com"
WINDOW_FACTOR = 0  # MQL queries carry their own time range
SCOPES = ("https://www.googleapis.com/auth/monitoring.read",)


@dataclass(frozen=True, kw_only=True)
class Stackdriver:
    ONLINE_ALSO: ClassVar[tuple[int, ...]] = (
        400,
    )  # the empty query is refused with 400 when the API is reachable and allows us
    address: str
    project: str
    name: str = "Cloud Monitoring"

    def _post(self, mql: str) -> HttpQuery:
        return HttpQuery(
            method="POST",
            url=f"{self.address}/v3/projects/{self.project}/timeSeries:query",
            headers=(("Content-Type", "application/json"),),
            body=json.dumps({"query": mql}),
        )

    def request(self, query: str, window: Window) -> HttpQuery:
        return self._post(query)

    def online_request(self) -> HttpQuery:
        return self._post("")

    def value(self, response: requests.Response) -> float:
        series = response.json().get("timeSeriesData") or []
        points = series[0].get("pointData") or [] if series else []
        values = points[0].get("values") or [] if points else []
        if not values:
            raise NoValuesFound("no values found")
        first: dict[str, Any] = values[0]
        if "doubleValue" in first:
            return float(first["doubleValue"])
        if "int64Value" in first:
            return float(first["int64Value"])
        raise MetricError(f"invalid response: the value is not a number: {first!r:.200}")


class _Token:
    """Bearer headers from google-auth credentials, refreshed when they expire."""

    def __init__(self, credentials: Any, request: Any) -> None:
        self._credentials = credentials
        self._request = request

    def __call__(self) -> Sequence[tuple[str, str]]:
        if not self._credentials.valid:
            try:
                self._credentials.refresh(self._request)
            except Exception as err:  # google-auth's own errors; none may leak as a traceback
                raise MetricError(
                    f"Cloud Monitoring: could not get an access token: {one_line(err)}"
                ) from None
        return (("Authorization", f"Bearer {self._credentials.token}"),)


def token_headers(key: str | None, where_: str) -> Callable[[], Sequence[tuple[str, str]]]:
    try:  # the optional extra canary-step[gcp], imported only when a template asks for it
        auth: Any = importlib.import_module("google.auth")
        transport: Any = importlib.import_module("google.auth.transport.requests")
        service_account: Any = importlib.import_module("google.oauth2.service_account")
    except ImportError:
        raise SpecError(
            f"{where_}: the stackdriver provider needs google-auth: install canary-step[gcp]"
        ) from None
    try:
        if key:
            credentials = service_account.Credentials.from_service_account_info(
                json.loads(key), scopes=list(SCOPES)
            )
        else:
            credentials, _ = auth.default(scopes=list(SCOPES))
    except (ValueError, KeyError, auth.exceptions.GoogleAuthError) as err:
        raise SpecError(f"{where_}: stackdriver credentials are not usable: {one_line(err)}") from None
    return _Token(credentials, transport.Request())


def spec(template: MetricTemplate, secret: Mapping[str, str]) -> Stackdriver:
    """The request and answer shapes for `template`, with its Secret's `project`."""
    project = secret.get("project")
    if not project:
        raise SpecError(
            f"{where(template)}: stackdriver credentials do not contain project (the secretRef's keys)"
        )
    return Stackdriver(address=(template.address or DEFAULT_ADDRESS).rstrip("/"), project=project)

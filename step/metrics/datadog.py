"""The Datadog provider (Flagger's `datadog`): the v1 timeseries query API.

Owns: the request Flagger sends — `GET <address>/api/v1/query?from=&query=&to=` (default address
`https://api.datadoghq.com`), headers `DD-API-KEY` and `DD-APPLICATION-KEY` from the secret's
`datadog_api_key` and `datadog_application_key`, a window of 10 x the metric's interval ending now —
and its reading of the answer: the first series' first point (the oldest, a complete bucket), none is
`NoValuesFound`. `is_online` is `GET /api/v1/validate`.
Must not: judge values or retry (see `remote`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from step.errors import NoValuesFound
from step.metrics.request import HttpQuery, Window, required, where
from step.spec.model import MetricTemplate

if TYPE_CHECKING:
    import requests

KIND = "datadog"
DEFAULT_ADDRESS = "https://api.datadoghq.com"
SECRET_KEYS = ("datadog_api_key", "datadog_application_key")
WINDOW_FACTOR = 10


@dataclass(frozen=True, kw_only=True)
class Datadog:
    address: str
    credentials: Mapping[str, str] = field(repr=False)
    name: str = "Datadog"

    def _headers(self) -> tuple[tuple[str, str], ...]:
        return (
            ("DD-API-KEY", self.credentials["datadog_api_key"]),
            ("DD-APPLICATION-KEY", self.credentials["datadog_application_key"]),
        )

    def request(self, query: str, window: Window) -> HttpQuery:
        return HttpQuery(
            method="GET",
            url=f"{self.address}/api/v1/query",
            params=(("from", window.start()), ("query", query), ("to", window.end())),
            headers=self._headers(),
            secrets=self.credentials,
        )

    def online_request(self) -> HttpQuery:
        return HttpQuery(
            method="GET",
            url=f"{self.address}/api/v1/validate",
            headers=self._headers(),
            secrets=self.credentials,
        )

    def value(self, response: requests.Response) -> float:
        series = response.json().get("series") or []
        points = series[0].get("pointlist") or [] if series else []
        if not points or len(points[0]) < 2 or points[0][1] is None:
            raise NoValuesFound("no values found")
        return float(points[0][1])


def spec(template: MetricTemplate, secret: Mapping[str, str]) -> Datadog:
    """The request and answer shapes for `template`, with its Secret's credentials (Flagger's keys)."""
    address = (template.address or DEFAULT_ADDRESS).rstrip("/")
    return Datadog(
        address=address, credentials=required(secret, SECRET_KEYS, kind=KIND, where=where(template))
    )

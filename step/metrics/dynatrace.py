"""The Dynatrace provider (Flagger's `dynatrace`): the metrics API v2.

Owns: the request Flagger sends — `GET <address>/api/v2/metrics/query?from=&metricSelector=<query>
&resolution=Inf&to=` (times in milliseconds, a window of 10 x the metric's interval ending now; the
address is required), header `Authorization: Api-Token <dynatrace_token>` — and its reading of the
answer: the first result's last data entry's first value, none (or null) is `NoValuesFound`.
`is_online` is `GET /api/v2/metrics?pageSize=1`.
Must not: judge values or retry (see `remote`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from step.errors import NoValuesFound
from step.metrics.request import HttpQuery, Window, address_of, required, where
from step.spec.model import MetricTemplate

if TYPE_CHECKING:
    import requests

KIND = "dynatrace"
SECRET_KEYS = ("dynatrace_token",)
WINDOW_FACTOR = 10


@dataclass(frozen=True, kw_only=True)
class Dynatrace:
    address: str
    credentials: Mapping[str, str] = field(repr=False)
    name: str = "Dynatrace"

    def _auth(self) -> tuple[tuple[str, str], ...]:
        return (("Authorization", f"Api-Token {self.credentials['dynatrace_token']}"),)

    def request(self, query: str, window: Window) -> HttpQuery:
        return HttpQuery(
            method="GET",
            url=f"{self.address}/api/v2/metrics/query",
            params=(
                ("from", window.start(scale=1000)),
                ("metricSelector", query),
                ("resolution", "Inf"),
                ("to", window.end(scale=1000)),
            ),
            headers=self._auth(),
            secrets=self.credentials,
        )

    def online_request(self) -> HttpQuery:
        return HttpQuery(
            method="GET",
            url=f"{self.address}/api/v2/metrics",
            params=(("pageSize", "1"),),
            headers=self._auth(),
            secrets=self.credentials,
        )

    def value(self, response: requests.Response) -> float:
        results = response.json().get("result") or []
        data = results[0].get("data") or [] if results else []
        values = data[-1].get("values") or [] if data else []
        if not values or values[0] is None:
            raise NoValuesFound("no values found")
        return float(values[0])


def spec(template: MetricTemplate, secret: Mapping[str, str]) -> Dynatrace:
    """The request and answer shapes for `template`, with its Secret's credentials (Flagger's keys)."""
    address = address_of(template, KIND)
    return Dynatrace(
        address=address, credentials=required(secret, SECRET_KEYS, kind=KIND, where=where(template))
    )

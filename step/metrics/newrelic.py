"""The New Relic provider (Flagger's `newrelic`): the Insights NRQL query API.

Owns: the request Flagger sends — `GET <address>/v1/accounts/<newrelic_account_id>/query?nrql=<query>
SINCE <interval seconds> seconds ago` (default address `https://insights-api.newrelic.com`), header
`X-Query-Key` from `newrelic_query_key` — and its reading of the answer: exactly one `results[]` entry
with a non-null `result`, else `NoValuesFound`. `is_online` queries `SELECT * FROM Metric`.
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

KIND = "newrelic"
DEFAULT_ADDRESS = "https://insights-api.newrelic.com"
SECRET_KEYS = ("newrelic_account_id", "newrelic_query_key")

WINDOW_FACTOR = 1  # the query covers this many metric intervals, ending now


@dataclass(frozen=True, kw_only=True)
class NewRelic:
    address: str
    credentials: Mapping[str, str] = field(repr=False)
    name: str = "New Relic"

    def _get(self, nrql: str) -> HttpQuery:
        return HttpQuery(
            method="GET",
            url=f"{self.address}/v1/accounts/{self.credentials['newrelic_account_id']}/query",
            params=(("nrql", nrql),),
            headers=(("X-Query-Key", self.credentials["newrelic_query_key"]),),
            secrets=self.credentials,
        )

    def request(self, query: str, window: Window) -> HttpQuery:
        return self._get(f"{query} SINCE {int(window.seconds)} seconds ago")

    def online_request(self) -> HttpQuery:
        return self._get("SELECT * FROM Metric")

    def value(self, response: requests.Response) -> float:
        results = response.json().get("results") or []
        if len(results) != 1 or results[0].get("result") is None:
            raise NoValuesFound("no values found")
        return float(results[0]["result"])


def spec(template: MetricTemplate, secret: Mapping[str, str]) -> NewRelic:
    """The request and answer shapes for `template`, with its Secret's credentials (Flagger's keys)."""
    address = (template.address or DEFAULT_ADDRESS).rstrip("/")
    return NewRelic(
        address=address, credentials=required(secret, SECRET_KEYS, kind=KIND, where=where(template))
    )

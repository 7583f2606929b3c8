"""The Graphite provider (Flagger's `graphite`): the render URL API.

Owns: the request Flagger sends — the query is the render API's own query string
(`target=...&from=-5min`), whitespace collapsed, sent as `GET <address>/render?<its parameters and
format=json, keys sorted as Go's url.Values.Encode sorts them>`, with basic auth when the template
has a secretRef (`username`, `password`, both required) — and its reading of the answer: the last
non-null datapoint over every target, none is `NoValuesFound`. `{{ interval }}` is for the query to
use (`from=-{{ interval }}` does not parse in Graphite: write minutes, e.g. `from=-5min`).
`is_online` queries `target=test`; no data is online.
Must not: judge values or retry (see `remote`).
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from step.errors import MetricError, NoValuesFound
from step.metrics.request import HttpQuery, Window, address_of, required, where
from step.spec.model import MetricTemplate

if TYPE_CHECKING:
    import requests

KIND = "graphite"
SECRET_KEYS = ("username", "password")
_SPACE = re.compile(r"\s+")

WINDOW_FACTOR = 0  # the query carries its own time range


@dataclass(frozen=True, kw_only=True)
class Graphite:
    address: str
    credentials: Mapping[str, str] = field(repr=False)
    name: str = "Graphite"

    def _get(self, query: str) -> HttpQuery:
        pairs = [(k, v) for k, v in urllib.parse.parse_qsl(_SPACE.sub(" ", query), keep_blank_values=True)]
        pairs = [(k, v) for k, v in pairs if k != "format"] + [("format", "json")]
        pairs.sort(key=lambda kv: kv[0])  # stable: repeated keys (several targets) keep their order
        headers: tuple[tuple[str, str], ...] = ()
        secrets = dict(self.credentials)
        if self.credentials:
            token = base64.b64encode(
                f"{self.credentials['username']}:{self.credentials['password']}".encode()
            ).decode()
            headers = (("Authorization", f"Basic {token}"),)
            secrets["username:password"] = token
        return HttpQuery(
            method="GET", url=f"{self.address}/render", params=tuple(pairs), headers=headers, secrets=secrets
        )

    def request(self, query: str, window: Window) -> HttpQuery:
        return self._get(query)

    def online_request(self) -> HttpQuery:
        return self._get("target=test")

    def value(self, response: requests.Response) -> float:
        value: float | None = None
        for target in response.json():
            for point in target.get("datapoints") or []:
                if not isinstance(point, list) or len(point) != 2:
                    raise MetricError(f"error unmarshaling data point: {point!r:.100}")
                if point[0] is not None:
                    value = float(point[0])
        if value is None:
            raise NoValuesFound("no values found")
        return value


def spec(template: MetricTemplate, secret: Mapping[str, str]) -> Graphite:
    """The request and answer shapes for `template`, with its Secret's credentials (Flagger's keys)."""
    address = address_of(template, KIND)
    return Graphite(
        address=address,
        credentials=required(secret, SECRET_KEYS, kind=KIND, where=where(template))
        if template.secret_ref
        else {},
    )

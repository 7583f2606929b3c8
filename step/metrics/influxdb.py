"""The InfluxDB provider (Flagger's `influxdb`): a Flux query through the v2 query API.

Owns: the request influxdb-client-go's QueryAPI sends for Flagger — `POST <address>/api/v2/query?org=
<org>`, `Authorization: Token <token>` (the secret's `token` and `org`, both required with a
secretRef), `Content-Type: application/json`, `Accept: application/csv`, the body `{"query": <flux>,
"type": "flux", "dialect": {annotations datatype/group/default, delimiter ",", header true}}` — and
its reading of the annotated CSV answer: the first record's `_value`, which must be a number (an
empty `_value` is `NoValuesFound`). Where Flagger answers 0 for a query that returns no record, we
answer `NoValuesFound`, so `onNoData` decides. `is_online` runs `from(bucket: "default") |>
range(start: -2h)`.
Must not: judge values or retry (see `remote`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from step.errors import MetricError, NoValuesFound
from step.metrics.request import HttpQuery, Window, address_of, required, where
from step.spec.model import MetricTemplate

if TYPE_CHECKING:
    import requests

KIND = "influxdb"
SECRET_KEYS = ("token", "org")
DIALECT = {"annotations": ["datatype", "group", "default"], "delimiter": ",", "header": True}
NUMBER_TYPES = frozenset({"double", "long", "unsignedLong"})

WINDOW_FACTOR = 0  # the query carries its own time range


@dataclass(frozen=True, kw_only=True)
class InfluxDB:
    ONLINE_ALSO: ClassVar[tuple[int, ...]] = (
        404,
    )  # a missing `default` bucket still shows the API answers our token
    address: str
    credentials: Mapping[str, str] = field(repr=False)
    name: str = "InfluxDB"

    def _post(self, flux: str) -> HttpQuery:
        headers = [("Content-Type", "application/json"), ("Accept", "application/csv")]
        if self.credentials.get("token"):
            headers.insert(0, ("Authorization", f"Token {self.credentials['token']}"))
        return HttpQuery(
            method="POST",
            url=f"{self.address}/api/v2/query",
            params=(("org", self.credentials.get("org", "")),),
            headers=tuple(headers),
            body=json.dumps({"query": flux, "type": "flux", "dialect": DIALECT}),
            secrets={"token": self.credentials.get("token", "")},
        )

    def request(self, query: str, window: Window) -> HttpQuery:
        return self._post(query)

    def online_request(self) -> HttpQuery:
        return self._post('from(bucket: "default") |> range(start: -2h)')

    def value(self, response: requests.Response) -> float:
        datatypes: list[str] = []
        header: list[str] | None = None
        for row in csv.reader(io.StringIO(response.text)):
            if not row or not any(row):
                header = None  # a blank line ends a table; the next one brings its own annotations
                continue
            if row[0] == "#datatype":
                datatypes = row
                continue
            if row[0].startswith("#"):
                continue
            if header is None:
                header = row
                continue
            if "_value" not in header:
                raise MetricError(f"invalid response: no _value column in {header!r:.200}")
            column = header.index("_value")
            raw = row[column] if column < len(row) else ""
            if raw == "":
                raise NoValuesFound("no values found")
            kind = datatypes[column] if column < len(datatypes) else "double"
            if kind not in NUMBER_TYPES:
                raise MetricError(f"invalid response: _value is a {kind}, not a number: {raw!r:.100}")
            return float(raw)
        raise NoValuesFound("no values found")


def spec(template: MetricTemplate, secret: Mapping[str, str]) -> InfluxDB:
    """The request and answer shapes for `template`, with its Secret's credentials (Flagger's keys)."""
    address = address_of(template, KIND)
    return InfluxDB(
        address=address,
        credentials=required(secret, SECRET_KEYS, kind=KIND, where=where(template))
        if template.secret_ref
        else {},
    )

"""The Splunk Observability (SignalFx) provider (Flagger's `splunk`): a SignalFlow program.

Owns: the request — `POST <stream address>/v2/signalflow/execute?start=&stop=&immediate=true`
(milliseconds, a window of 10 x the metric's interval ending now), `X-SF-Token` from the secret's
`sf_token_key`, the program as a `text/plain` body — and its reading of the answer (server-sent
events): the data messages' values, the last one wins, more than one time series is an error (as in
Flagger), none is `NoValuesFound`; an `error` event is a provider error. The address is the API's
(`https://api.<realm>.signalfx.com`); as Flagger does, an `api.` host becomes `stream.` for the
query and stays `api.` for `is_online` (`GET /v2/metric?limit=1`).
Flagger runs the same SignalFlow execute call over the WebSocket transport (signalflow-client-go);
we use the API's HTTP transport of the same call, so that no WebSocket client is needed.
Must not: judge values or retry (see `remote`).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from step.errors import MetricError, NoValuesFound
from step.metrics.request import HttpQuery, Window, address_of, required, where
from step.spec.model import MetricTemplate

if TYPE_CHECKING:
    import requests

KIND = "splunk"
SECRET_KEYS = ("sf_token_key",)
WINDOW_FACTOR = 10


def _host(address: str, *, stream: bool) -> str:
    parts = urllib.parse.urlsplit(address)
    host = parts.netloc
    if stream and host.startswith("api."):
        host = "stream." + host[len("api.") :]
    elif not stream and host.startswith("stream."):
        host = "api." + host[len("stream.") :]
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urllib.parse.urlunsplit(parts._replace(scheme=scheme, netloc=host)).rstrip("/")


def events(text: str) -> list[tuple[str, str]]:
    """Server-sent events as (event, data) pairs."""
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        kind, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                kind = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].lstrip())
        if data:
            found.append((kind, "\n".join(data)))
    return found


@dataclass(frozen=True, kw_only=True)
class Splunk:
    address: str
    credentials: Mapping[str, str] = field(repr=False)
    name: str = "Splunk Observability"

    def request(self, query: str, window: Window) -> HttpQuery:
        return HttpQuery(
            method="POST",
            url=f"{_host(self.address, stream=True)}/v2/signalflow/execute",
            params=(
                ("start", window.start(scale=1000)),
                ("stop", window.end(scale=1000)),
                ("immediate", "true"),
            ),
            headers=(("X-SF-Token", self.credentials["sf_token_key"]), ("Content-Type", "text/plain")),
            body=query,
            secrets=self.credentials,
        )

    def online_request(self) -> HttpQuery:
        return HttpQuery(
            method="GET",
            url=f"{_host(self.address, stream=False)}/v2/metric",
            params=(("limit", "1"),),
            headers=(("X-SF-Token", self.credentials["sf_token_key"]),),
            secrets=self.credentials,
        )

    def value(self, response: requests.Response) -> float:
        values: list[tuple[str, float]] = []
        for kind, data in events(response.text):
            message: Any = json.loads(data)
            if kind == "error" or message.get("type") == "error":
                raise MetricError(f"error executing query: {message.get('message') or data[:200]}")
            if kind != "data" and message.get("type") != "data":
                continue
            for point in message.get("data") or []:
                if point.get("value") is not None:
                    values.append((str(point.get("tsId")), float(point["value"])))
        if not values:
            raise NoValuesFound("no values found")
        if len({ts for ts, _ in values}) > 1:
            raise MetricError("invalid response: multiple values returned (more than one time series)")
        return values[-1][1]


def spec(template: MetricTemplate, secret: Mapping[str, str]) -> Splunk:
    """The request and answer shapes for `template`, with its Secret's credentials (Flagger's keys)."""
    address = address_of(template, KIND)
    return Splunk(
        address=address, credentials=required(secret, SECRET_KEYS, kind=KIND, where=where(template))
    )

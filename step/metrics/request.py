"""A metrics provider's request as data: what `run` sends and `plan` shows, without sending anything.

Owns: `HttpQuery` (one request exactly as it is sent: method, URL, parameters, headers, body; and
`shown()`, the same with every credential replaced by `<secret KEY>`), `Window` (the time range a
query covers, symbolic for `plan`), `Spec` (what each provider module supplies: how a query becomes
a request, how an answer becomes a number), and the small rules every provider module shares: the
template's name in messages, a required address, required secret keys (Flagger's names), a metric
interval in seconds, and `windowed` (how `measure` binds a provider to a metric's interval).
Must not: import requests or send anything (`plan` and `validate` import it), judge values.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from step.errors import MetricError, SpecError
from step.ports import MetricsProvider
from step.spec.durations import parse_duration
from step.spec.model import MetricTemplate

if TYPE_CHECKING:
    import requests

Wall = Callable[[], float]  # seconds since the epoch: where a query's time window ends


def where(template: MetricTemplate) -> str:
    return f"MetricTemplate {template.namespace}/{template.name}"


def address_of(template: MetricTemplate, kind: str) -> str:
    """The template's `provider.address`, required by the providers that have no default."""
    if not template.address:
        raise SpecError(f"{where(template)}: {kind} needs spec.provider.address")
    if "://" not in template.address:
        raise SpecError(f"{where(template)}: {kind} address {template.address!r} is not a URL")
    return template.address.rstrip("/")


def secret_marker(key: str) -> str:
    """What a credential's value is replaced by where it may be shown."""
    return f"<secret {key}>"


@dataclass(frozen=True, kw_only=True)
class HttpQuery:
    method: str
    url: str  # without the query string
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # key -> value, to mask

    @property
    def full_url(self) -> str:
        return self.url + ("?" + urllib.parse.urlencode(self.params) if self.params else "")

    def shown(self) -> dict[str, Any]:
        """The request as `plan` shows it: exact, with each credential replaced by `<secret KEY>`."""

        def mask(text: str) -> str:
            for key, value in sorted(self.secrets.items(), key=lambda kv: -len(kv[1])):
                if value:
                    text = text.replace(value, secret_marker(key))
            return text

        shown: dict[str, Any] = {"method": self.method, "url": mask(self.full_url)}
        if self.headers:
            shown["headers"] = {k: mask(v) for k, v in self.headers}
        if self.body is not None:
            shown["body"] = mask(self.body)
        return shown


@dataclass(frozen=True, kw_only=True)
class Window:
    """The time range a query covers: `now` minus `seconds`, as each provider's API wants it."""

    seconds: float
    now: float | None  # None: for `plan`, where the times are shown symbolically

    def start(self, *, scale: int = 1) -> str:
        if self.now is None:
            return f"<now-{self.seconds:g}s>" if scale == 1 else f"<now-{self.seconds:g}s in ms>"
        return str(int(self.now * scale) - int(self.seconds * scale))

    def end(self, *, scale: int = 1) -> str:
        if self.now is None:
            return "<now>" if scale == 1 else "<now in ms>"
        return str(int(self.now * scale))


class Spec(Protocol):
    """One provider's request and answer shapes."""

    @property
    def name(self) -> str:
        """How messages name the provider: `Datadog`."""
        ...

    def request(self, query: str, window: Window) -> HttpQuery: ...

    def online_request(self) -> HttpQuery: ...

    def value(self, response: requests.Response) -> float:
        """The number in an OK answer. Raises NoValuesFound or MetricError."""
        ...


def interval_seconds(interval: str) -> float:
    try:
        return parse_duration(interval)
    except ValueError as err:
        raise MetricError(f"error parsing metric interval: {err}") from None


def required(secret: Mapping[str, str], keys: Sequence[str], *, kind: str, where: str) -> dict[str, str]:
    """The credentials `keys` (Flagger's key names) from a template's Secret, or a SpecError."""
    missing = [k for k in keys if not secret.get(k)]
    if missing:
        raise SpecError(
            f"{where}: {kind} credentials do not contain {', '.join(missing)} (the secretRef's keys)"
        )
    return {k: secret[k] for k in keys}


def windowed(provider: MetricsProvider, interval: str) -> MetricsProvider:
    """The provider bound to a metric's interval, for providers whose request covers a time range."""
    bind = getattr(provider, "for_interval", None)
    if callable(bind):
        bound: MetricsProvider = bind(interval)
        return bound
    return provider

"""Reading kube-apiserver's audit log for ``make bench-flagger``: requests per client, per tick, per kind.

Owns the pure part of the comparison with Flagger (issue 16): parsing the JSON-lines audit log that
``start_apiserver(audit=True)`` writes, one :class:`Request` per audit ID (the last stage seen wins: a watch
logs ResponseStarted, then ResponseComplete when it ends), filtering by user, splitting one client's
requests into ticks (a controller's tick is a burst; ticks are an interval apart), naming each tick's kind
from the Events it wrote (Flagger's texts, which canary-step reuses), and the side-by-side table.

Must not: do I/O other than reading the log file it is given, talk to the API server, or know which process
is which (the caller passes the users).
"""

from __future__ import annotations

import datetime
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The tick kinds, in the order a tick is named by the first that matches one of its Events.
# "start" before "advance": the first tick of an analysis also sets the first weight, and in canary-step's
# case it also pays for the run's start-up reads, so it is kept apart from the ticks that only advance.
KIND_PREFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rollback", ("Rolling back", "Canary failed")),
    ("promote", ("Copying ", "Routing all traffic to primary", "Promotion completed")),
    ("start", ("Starting canary analysis",)),
    ("advance", ("Advance ",)),
    ("hold", ("Halt ",)),
    ("detect", ("New revision detected",)),
    ("initialise", ("Initialization done",)),
)
KINDS = (*(kind for kind, _ in KIND_PREFIXES), "other event", "no event", "list/watch only")
# client-go's EventRecorder (Flagger's) rewrites the 11th and later similar Events within 10 minutes (same
# object and reason, another message) into one Event with this prefix (EventAggregator).
COMBINED = "(combined from similar events): "


def _timestamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Request:
    """One API request as the audit log records it."""

    audit_id: str
    user: str
    verb: str
    resource: str  # "group/resource[/subresource]" ("" group for the core API), or the non-resource path
    namespace: str
    name: str
    code: int
    received: float  # epoch seconds, requestReceivedTimestamp
    event_message: str = ""  # for Event writes logged at Request level: the message (or note)
    event_reason: str = ""

    @property
    def is_event_write(self) -> bool:
        return self.resource in ("/events", "events.k8s.io/events") and self.verb in (
            "create",
            "patch",
            "update",
        )


def parse_line(line: str) -> Request | None:
    """One audit event (a JSON line) as a :class:`Request`; None for anything else."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(entry, dict) or entry.get("kind") != "Event" or "auditID" not in entry:
        return None
    ref = entry.get("objectRef") or {}
    if ref:
        resource = f"{ref.get('apiGroup', '')}/{ref.get('resource', '')}"
        if ref.get("subresource"):
            resource += f"/{ref['subresource']}"
    else:
        resource = str(entry.get("requestURI", "")).split("?", 1)[0]
    body = entry.get("requestObject") or {}
    return Request(
        audit_id=entry["auditID"],
        user=(entry.get("user") or {}).get("username", ""),
        verb=entry.get("verb", ""),
        resource=resource,
        namespace=ref.get("namespace", ""),
        name=ref.get("name", ""),
        code=int((entry.get("responseStatus") or {}).get("code") or 0),
        received=_timestamp(entry["requestReceivedTimestamp"]),
        event_message=str(body.get("message") or body.get("note") or "") if isinstance(body, dict) else "",
        event_reason=str(body.get("reason") or "") if isinstance(body, dict) else "",
    )


def parse(lines: Iterable[str]) -> list[Request]:
    """Requests in the order received, one per audit ID (a later stage replaces an earlier one)."""
    found: dict[str, Request] = {}
    for line in lines:
        request = parse_line(line)
        if request is not None:
            found[request.audit_id] = request
    return sorted(found.values(), key=lambda r: r.received)


def read(path: Path) -> list[Request]:
    with path.open(errors="replace") as handle:
        return parse(handle)


def of_user(
    requests: Iterable[Request], user: str, *, start: float = 0.0, end: float = float("inf")
) -> list[Request]:
    """The requests of ``user`` received in ``[start, end)``."""
    return [r for r in requests if r.user == user and start <= r.received < end]


def event_messages(requests: Iterable[Request]) -> dict[tuple[str, str], str]:
    """(namespace, Event name) -> message, from the Event creates; a repeat is a patch without the text."""
    return {(r.namespace, r.name): r.event_message for r in requests if r.is_event_write and r.event_message}


def events_of(requests: Iterable[Request], messages: dict[tuple[str, str], str] | None = None) -> list[str]:
    """The messages of the Events written, in order (a repeated Event's patch is named by its first text)."""
    requests = list(requests)
    known = {**event_messages(requests), **(messages or {})}
    return [
        r.event_message or known.get((r.namespace, r.name), f"(patch of Event {r.name})")
        for r in requests
        if r.is_event_write
    ]


@dataclass
class Tick:
    """A burst of one client's requests: what a controller does on one tick."""

    requests: list[Request] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.requests[0].received

    @property
    def kind(self) -> str:
        kind = kind_of(self.events)
        if kind == "no event" and any(r.verb in ("list", "watch") for r in self.requests):
            return "list/watch only"  # a client's start-up or a watch renewal, not a tick of its loop
        return kind


def kind_of(events: Sequence[str]) -> str:
    """The kind of a tick that wrote ``events``: the first of ``KIND_PREFIXES`` one of them starts with."""
    messages = [message.removeprefix(COMBINED) for message in events]
    for kind, prefixes in KIND_PREFIXES:
        if any(message.startswith(prefixes) for message in messages):
            return kind
    return "other event" if events else "no event"


def ticks(
    requests: Sequence[Request],
    *,
    gap_s: float,
    messages: dict[tuple[str, str], str] | None = None,
    timeline: Sequence[tuple[float, str]] | None = None,
) -> list[Tick]:
    """Split one client's requests into bursts separated by more than ``gap_s`` of silence.

    Each tick's events are the Events its requests wrote, or, given a ``timeline`` of (time, message) (the
    client's own log, where it drops Events before they reach the API), the messages logged within the tick.
    """
    known = {**event_messages(requests), **(messages or {})}
    found: list[Tick] = []
    last = float("-inf")
    for request in requests:
        if request.received - last > gap_s or not found:
            found.append(Tick())
        found[-1].requests.append(request)
        last = request.received
    for tick in found:
        if timeline is None:
            tick.events = events_of(tick.requests, known)
        else:
            start, end = tick.start - TIMELINE_SLACK_S, tick.requests[-1].received + TIMELINE_SLACK_S
            tick.events = [message for at, message in timeline if start <= at <= end]
    return found


# A logged event and the requests of its tick are apart by the time the request takes (well under this).
TIMELINE_SLACK_S = 0.5


def flagger_events(lines: Iterable[str]) -> list[tuple[float, str]]:
    """(time, message) of every event Flagger logged (``controller/events.go`` lines, console encoding)."""
    found = []
    for line in lines:
        fields = line.rstrip("\n").split("\t")
        if len(fields) >= 4 and fields[2].startswith("controller/events.go:"):
            found.append((_timestamp(fields[0]), fields[3]))
    return found


@dataclass(frozen=True)
class KindSummary:
    kind: str
    ticks: int
    mean: float
    low: int
    high: int

    def cell(self) -> str:
        if not self.ticks:
            return "-"
        spread = f"{self.low}" if self.low == self.high else f"{self.low}-{self.high}"
        return f"{self.mean:.1f} ({spread}; {self.ticks} ticks)"


def per_kind(all_ticks: Iterable[Tick]) -> dict[str, KindSummary]:
    """Requests per tick, for each kind of tick seen."""
    counts: dict[str, list[int]] = {}
    for tick in all_ticks:
        counts.setdefault(tick.kind, []).append(len(tick.requests))
    return {
        kind: KindSummary(kind, len(values), statistics.mean(values), min(values), max(values))
        for kind in KINDS
        if (values := counts.get(kind))
    }


def verbs(requests: Iterable[Request]) -> dict[str, int]:
    """Requests by ``verb resource`` (for the detail under the table)."""
    counted: dict[str, int] = {}
    for request in requests:
        key = f"{request.verb} {request.resource}"
        counted[key] = counted.get(key, 0) + 1
    return dict(sorted(counted.items(), key=lambda item: (-item[1], item[0])))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with the first column left-aligned and a rule under the header."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)

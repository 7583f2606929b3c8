"""The run's timeline: the human line per tick on stderr, and the JSON report.

Owns: `Timeline`, which receives each tick's record from the driver, prints it at once (`text`: one
readable line per tick plus its events; `json`: one JSON object per line), and at the end builds the
JSON report (a timeline of ticks: weight, each metric's value against its threshold, webhook results,
failed checks, errors, events) next to the outcome.
Must not: decide anything, choose exit codes, or read the clock (times arrive as arguments).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from step.analysis.evaluate import Verdict, bounds_text
from step.analysis.records import CheckRecord, TickRecord
from step.report.outcome import Outcome
from step.spec.model import Canary

LogFormat = Literal["text", "json"]
_GATES = frozenset({"confirm-rollout", "confirm-traffic-increase", "confirm-promotion"})
REPORT_FORMAT_VERSION = 1


def _threshold(check: CheckRecord) -> str:
    return bounds_text(check.threshold_min, check.threshold_max, unbounded="no bound")


def check_text(check: CheckRecord) -> str:
    """`request-success-rate 98.50 (>= 99) FAIL`; a compared metric: its comparison
    (`request-duration-vs-primary: canary median 140 vs primary 100 (x1.4, p=0.0002): High`)."""
    if check.classification and check.verdict is not Verdict.ERROR:
        return check.message
    if check.verdict is Verdict.ERROR:
        return f"{check.metric} error"  # the why is the tick's Warning line, printed once
    if check.value is None:
        label = "no data" if check.verdict is Verdict.FAIL else "no data, ignored"
        return f"{check.metric} {label}"
    verdict = {Verdict.PASS: "ok", Verdict.FAIL: "FAIL", Verdict.IGNORED: "ignored"}[check.verdict]
    return f"{check.metric} {check.value:.2f} ({_threshold(check)}) {verdict}"


def tick_line(record: TickRecord, *, threshold: int) -> str:
    """One readable line: when, phase, weight, each metric against its threshold, failed checks."""
    parts = [
        f"[{record.at:7.1f}s] tick {record.index:>3} {record.phase:<16}",
        f"canary {record.canary_revision or '-'} weight {record.canary_weight:>3}%",
    ]
    if record.checks:
        parts.append("; ".join(check_text(c) for c in record.checks))
    hooks = [f"{h.name} {'ok' if h.ok else 'failed'}" for h in record.hooks]
    if hooks:
        parts.append("hooks: " + ", ".join(hooks))
    parts.append(f"failed checks {record.failed_checks}/{threshold}")
    if record.consecutive_errors:
        parts.append(f"provider errors in a row {record.consecutive_errors}")
    return " | ".join(parts)


def record_json(record: TickRecord) -> dict[str, Any]:
    return {
        "index": record.index,
        "at": record.at,
        "phase": record.phase,
        "primaryRevision": record.primary_revision,
        "canaryRevision": record.canary_revision,
        "canaryWeight": record.canary_weight,
        "failedChecks": record.failed_checks,
        "consecutiveErrors": record.consecutive_errors,
        "checks": [
            {
                "metric": c.metric,
                "verdict": c.verdict.value,
                "value": c.value,
                "thresholdMin": c.threshold_min,
                "thresholdMax": c.threshold_max,
                "message": c.message,
                "query": c.query,
                **(
                    {"classification": c.classification, "primaryQuery": c.primary_query}
                    if c.classification
                    else {}
                ),
            }
            for c in record.checks
        ],
        "webhooks": [
            {"name": h.name, "type": h.type, "ok": h.ok, "status": h.status, "message": h.message}
            for h in record.hooks
        ],
        "events": [{"type": e.type, "message": e.message} for e in record.events],
        "errors": list(record.errors),
    }


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "decision": outcome.decision.value,
        "reason": outcome.reason,
        "message": outcome.message,
        "exitCode": int(outcome.exit_code),
        "canaryRevision": outcome.canary_revision,
        "primaryRevision": outcome.primary_revision,
        "canaryWeight": outcome.canary_weight,
        "failedChecks": outcome.failed_checks,
        "iterations": outcome.iterations,
        "traffic": outcome.traffic,
        "error": str(outcome.error) if outcome.error is not None else None,
        "signal": outcome.signal,
        "service": dict(outcome.service) if outcome.service is not None else None,
    }


def _iso(wall: float) -> str:
    return (
        dt.datetime.fromtimestamp(wall, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass
class Timeline:
    """Collects the ticks as they happen and prints each at once on `stream` (stderr)."""

    canary: Canary
    stream: TextIO
    log_format: LogFormat = "text"
    ticks: list[TickRecord] = field(default_factory=list)
    api_requests: list[int | None] = field(default_factory=list)  # Kubernetes API requests per tick
    gates_told: set[str] = field(default_factory=set)  # the closed gates already explained

    @property
    def threshold(self) -> int:
        return self.canary.analysis.threshold

    def tick(self, record: TickRecord, *, api_requests: int | None = None) -> None:
        self.ticks.append(record)
        self.api_requests.append(api_requests)
        if self.log_format == "json":
            self._json({"kind": "tick", **record_json(record), "apiRequests": api_requests})
            return
        line = tick_line(record, threshold=self.threshold)
        if api_requests is not None:
            line += f" | api requests {api_requests}"
        lines = [line]
        lines += [f"    {e.type:<7} {e.message}" for e in record.events]
        lines += [
            f"    Error   {e}" for e in record.errors if not any(e == ev.message for ev in record.events)
        ]
        for hook in record.hooks:
            if not hook.ok and hook.type in _GATES and hook.name not in self.gates_told:
                self.gates_told.add(hook.name)
                lines.append(f"    Gate    {self.gate_text(hook.name, hook.status, hook.message)}")
        self._write("\n".join(lines))

    def gate_text(self, name: str, status: int | None, message: str) -> str:
        """A closed gate, once: its URL, what it answered, and how to open it."""
        hook = next((h for h in self.canary.analysis.webhooks if h.name == name), None)
        url = hook.url if hook is not None else "?"
        answered = f"answered {status}" if status else (message or "did not answer")
        text = f"{name} is closed: {url} {answered}; the run waits and asks again every interval"
        if url.rstrip("/").endswith("/gate/check"):
            body = json.dumps({"name": self.canary.name, "namespace": self.canary.namespace})
            opener = url.rstrip("/")[: -len("check")] + "open"
            return f"{text}. Open it with: curl -d '{body}' {opener}"
        return f"{text}. It opens when it answers 200"

    def note(self, text: str) -> None:
        """A line that belongs to no tick (starting up, restoring traffic, the Service's state)."""
        if self.log_format == "json":
            self._json({"kind": "note", "message": text})
        else:
            self._write(text)

    def finished(self, outcome: Outcome) -> None:
        if self.log_format == "json":
            self._json({"kind": "outcome", **outcome_json(outcome)})
        else:
            self._write(outcome.headline())

    def _json(self, obj: Mapping[str, Any]) -> None:
        self._write(json.dumps(obj, separators=(",", ":")))

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not stop the restore of traffic

    def report(
        self,
        outcome: Outcome,
        *,
        started_wall: float,
        finished_wall: float,
        api_requests: Mapping[str, int] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The JSON report: the outcome, then every tick."""
        return {
            "formatVersion": REPORT_FORMAT_VERSION,
            "canary": {
                "name": self.canary.name,
                "namespace": self.canary.namespace,
                "targetRef": self.canary.target_name,
                "interval": self.canary.analysis.interval_seconds,
                "threshold": self.threshold,
            },
            "startedAt": _iso(started_wall),
            "finishedAt": _iso(finished_wall),
            "durationSeconds": round(finished_wall - started_wall, 3),
            **outcome_json(outcome),
            "apiRequests": (
                {"total": sum(api_requests.values()), "byVerb": dict(api_requests)} if api_requests else None
            ),
            **(dict(extra) if extra else {}),
            "ticks": [
                {**record_json(t), "apiRequests": n}
                for t, n in zip(self.ticks, self.api_requests, strict=True)
            ],
        }


def write_json(path: str | os.PathLike[str], document: Mapping[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)

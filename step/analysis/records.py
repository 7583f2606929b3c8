"""What one tick of the analysis leaves behind for the report: plain, frozen records.

Owns: `TickRecord` and the check, hook and event records inside it, and their JSON form for a saved
state (the report's own JSON layout is `step.report.timeline`'s).
Must not: decide anything, do I/O, or read the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from step.analysis.evaluate import Verdict
from step.ports import EventType


@dataclass(frozen=True, kw_only=True)
class CheckRecord:
    metric: str
    verdict: Verdict
    value: float | None = None
    threshold_min: float | None = None
    threshold_max: float | None = None
    message: str = ""
    query: str = ""
    # A compared (-vs-primary) metric's: Pass, High, Low or NoData; its primary query; "" otherwise.
    classification: str = ""
    primary_query: str = ""

    def to_json(self) -> dict[str, Any]:
        data = {
            "metric": self.metric,
            "verdict": self.verdict.value,
            "value": self.value,
            "thresholdMin": self.threshold_min,
            "thresholdMax": self.threshold_max,
            "message": self.message,
            "query": self.query,
        }
        if self.classification:
            data["classification"] = self.classification
            data["primaryQuery"] = self.primary_query
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckRecord:
        return cls(
            metric=data["metric"],
            verdict=Verdict(data["verdict"]),
            value=data["value"],
            threshold_min=data["thresholdMin"],
            threshold_max=data["thresholdMax"],
            message=data["message"],
            query=data["query"],
            classification=data.get("classification", ""),
            primary_query=data.get("primaryQuery", ""),
        )


@dataclass(frozen=True, kw_only=True)
class HookRecord:
    name: str
    type: str
    ok: bool
    status: int | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "ok": self.ok,
            "status": self.status,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HookRecord:
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    type: EventType
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventRecord:
        return cls(type=cast(EventType, data["type"]), message=data["message"])


@dataclass(frozen=True, kw_only=True)
class TickRecord:
    """One tick of the run, as the report shows it."""

    index: int
    at: float  # seconds since the run started
    phase: str
    primary_revision: str | None
    canary_revision: str | None
    canary_weight: int
    failed_checks: int
    consecutive_errors: int
    checks: tuple[CheckRecord, ...] = ()
    hooks: tuple[HookRecord, ...] = ()
    events: tuple[EventRecord, ...] = ()
    errors: tuple[str, ...] = ()

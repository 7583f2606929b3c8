"""The Markdown job summary for `$GITHUB_STEP_SUMMARY`: the outcome, a chart, and the timeline.

Owns: rendering the outcome and the ticks as GitHub-flavoured Markdown with a Mermaid `xychart-beta`
(canary weight and success rate over time; GitHub renders Mermaid blocks), kept well under GitHub's
1 MiB summary cap.
Must not: decide anything or do I/O beyond appending to the file it is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from step.analysis.judge import SCORE_METRIC
from step.analysis.records import TickRecord
from step.report.outcome import Outcome
from step.report.timeline import check_text
from step.spec.model import SUCCESS_RATE, Canary

MAX_ROWS = 200  # timeline rows shown; the JSON report has them all
MAX_CELL = 300

_ICONS = {
    "promoted": "✅",
    "initialized": "ℹ️",
    "skipped": "ℹ️",
    "rolled-back": "❌",
    "failed": "⚠️",
}


def _cell(text: str) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def success_rates(ticks: Sequence[TickRecord]) -> list[float | None]:
    out: list[float | None] = []
    for tick in ticks:
        values = [c.value for c in tick.checks if c.metric == SUCCESS_RATE and c.value is not None]
        out.append(values[-1] if values else None)
    return out


def _filled(values: list[float | None]) -> list[float] | None:
    """Gaps take the previous value (leading gaps the first one); None when there is no value at all."""
    first = next((v for v in values if v is not None), None)
    if first is None:
        return None
    filled: list[float] = []
    last = first
    for v in values:
        last = v if v is not None else last
        filled.append(last)
    return filled


def chart(canary: Canary, ticks: Sequence[TickRecord]) -> str:
    """A Mermaid xychart: canary weight (first line) and success rate (second line) per tick."""
    if not ticks:
        return ""
    xs = ", ".join(f'"{_num(t.at)}s"' for t in ticks)
    weights = ", ".join(str(t.canary_weight) for t in ticks)
    lines = [
        "```mermaid",
        "xychart-beta",
        f'    title "{canary.name}.{canary.namespace}: canary weight and success rate (%)"',
        f"    x-axis [{xs}]",
        '    y-axis "percent" 0 --> 100',
        f"    line [{weights}]",
    ]
    rates = _filled(success_rates(ticks))
    if rates is not None:
        lines.append(f"    line [{', '.join(_num(max(0.0, min(100.0, r))) for r in rates)}]")
    lines.append("```")
    legend = "First line: canary weight. Second line: request success rate" + (
        " (a tick without a measurement repeats the previous value)."
        if rates is not None
        else " (not measured)."
    )
    return "\n".join(lines) + "\n\n" + legend + "\n"


def comparison_table(ticks: Sequence[TickRecord]) -> list[str]:
    """The compared (-vs-primary) metrics of the last tick that compared any: one row each, and the
    tick's score. Nothing when no metric is compared."""
    for tick in reversed(ticks):
        compared = [c for c in tick.checks if c.classification]
        if not compared:
            continue
        rows = [
            "### Canary against primary",
            "",
            "| metric | result | canary vs primary |",
            "| --- | --- | --- |",
        ]
        for c in compared:
            detail = c.message.removeprefix(f"{c.metric}: ")
            rows.append(f"| {_cell(c.metric)} | {c.classification} | {_cell(detail)} |")
        rows += [
            f"| {_cell(c.metric)} | {_num(c.value or 0)} | {_cell(c.message)} |"
            for c in tick.checks
            if c.metric == SCORE_METRIC
        ]
        return [*rows, ""]
    return []


def render(canary: Canary, ticks: Sequence[TickRecord], outcome: Outcome, *, report_path: str) -> str:
    icon = _ICONS.get(outcome.decision.value, "")
    parts = [
        f"## {icon} canary-step: {canary.name}.{canary.namespace} {outcome.decision.value}",
        "",
        f"**{_cell(outcome.message)}**",
        "",
        "| result | value |",
        "| --- | --- |",
        f"| decision | `{outcome.decision.value}` |",
        f"| reason | `{outcome.reason}` |",
        f"| canary revision | `{outcome.canary_revision or '-'}` |",
        f"| primary revision | `{outcome.primary_revision or '-'}` |",
        f"| canary weight reached | {outcome.canary_weight}% |",
        f"| failed checks | {outcome.failed_checks} |",
        f"| analysis ticks | {outcome.iterations} |",
        f"| traffic now | {_cell(outcome.traffic)} |",
        f"| exit code | {int(outcome.exit_code)} |",
        f"| report | `{_cell(report_path)}` |",
        "",
    ]
    parts += comparison_table(ticks)
    if ticks:
        parts += [chart(canary, ticks), "### Timeline", ""]
        parts += [
            "| t | phase | weight | checks | failed | events |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        shown = list(ticks)[-MAX_ROWS:]
        if len(ticks) > MAX_ROWS:
            parts.append(f"| ... | {len(ticks) - MAX_ROWS} earlier ticks in the JSON report | | | | |")
        for t in shown:
            checks = "<br>".join(_cell(check_text(c)) for c in t.checks) or "-"
            events = "<br>".join(_cell(e.message) for e in t.events) or "-"
            row = [f"{_num(t.at)}s", t.phase, f"{t.canary_weight}%", checks, str(t.failed_checks), events]
            parts.append("| " + " | ".join(row) + " |")
        parts.append("")
    return "\n".join(parts) + "\n"


def append_summary(path: str | os.PathLike[str], markdown: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(markdown)

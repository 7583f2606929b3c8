"""The results of the contract: one file per name under `--results-dir`, and `$GITHUB_OUTPUT`.

Owns: turning an `Outcome` into the values of `RESULT_NAMES`, keeping them all within Tekton's
termination-message budget (measured as Tekton's entrypoint serialises them: Go's `json.Marshal` of an
array of `{"key", "value", "type"}`, which escapes `<`, `>`, `&`, U+2028 and U+2029; the entrypoint then
appends its own entries, which the budget leaves room for), and writing them out.
Must not: choose what the values mean (the outcome does), or raise on a value that is too long.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from step.contract import RESULT_NAMES, TERMINATION_MESSAGE_BUDGET
from step.report.outcome import Outcome

ELLIPSIS = "..."


def result_values(outcome: Outcome, *, report_path: str) -> dict[str, str]:
    """Every result, as the strings written to the files, fitted within the budget."""
    values = {
        "decision": outcome.decision.value,
        "reason": outcome.reason,
        "canary-revision": outcome.canary_revision or "",
        "primary-revision": outcome.primary_revision or "",
        "canary-weight": str(outcome.canary_weight),
        "failed-checks": str(outcome.failed_checks),
        "iterations": str(outcome.iterations),
        "report": report_path,
    }
    assert tuple(values) == RESULT_NAMES
    return fit(values, budget=TERMINATION_MESSAGE_BUDGET)


# What Go's encoding/json escapes beyond what Python's json.dumps(ensure_ascii=False) does: HTML-safe
# escaping (on by default in json.Marshal) and the two JavaScript line terminators.
_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def termination_message_size(values: dict[str, str]) -> int:
    """The bytes these results take in Tekton's termination message, as Go's json.Marshal writes them."""
    entries = [{"key": k, "value": v, "type": 1} for k, v in values.items()]
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).translate(_GO_ESCAPES)
    # A lone surrogate counts 3 bytes, as the U+FFFD Go writes for invalid UTF-8 does.
    return len(text.encode("utf-8", errors="surrogatepass"))


def fit(values: dict[str, str], *, budget: int) -> dict[str, str]:
    """Shorten the longest values fairly (a common cap, keeping each value's start, marked `...`).

    The cap is the largest one under which everything fits, so short values are never touched.
    """
    if termination_message_size(values) <= budget:
        return dict(values)
    low, high = 0, max(len(v) for v in values.values())
    best = {k: _shorten(v, 0) for k, v in values.items()}
    while low <= high:
        cap = (low + high) // 2
        trial = {k: _shorten(v, cap) for k, v in values.items()}
        if termination_message_size(trial) <= budget:
            best, low = trial, cap + 1
        else:
            high = cap - 1
    return best


def _shorten(value: str, cap: int) -> str:
    if len(value) <= cap:
        return value
    return value[: max(0, cap - len(ELLIPSIS))] + ELLIPSIS if cap >= len(ELLIPSIS) else value[:cap]


def write_results_dir(directory: str | os.PathLike[str], values: dict[str, str]) -> None:
    """One file per result, no trailing newline (Tekton and Argo read the file as the value)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (path / name).write_text(value, encoding="utf-8")


def write_github_output(path: str | os.PathLike[str], values: dict[str, str]) -> None:
    """Append `name=value` lines to `$GITHUB_OUTPUT` (the heredoc form for a multi-line value)."""
    lines: list[str] = []
    for name, value in values.items():
        if "\n" in value or "\r" in value:
            delimiter = f"ghadelimiter_{secrets.token_hex(8)}"
            lines += [f"{name}<<{delimiter}", value, delimiter]
        else:
            lines.append(f"{name}={value}")
    with open(path, "a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")

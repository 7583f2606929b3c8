"""Durations as Go's `time.ParseDuration` reads them, for the units a canary spec uses.

Owns: `parse_duration` (`15s`, `1m`, `1m30s`, `500ms`, `1.5h` -> seconds) and `format_duration`.
Must not: accept what Go would refuse, or import anything of ours.
"""

from __future__ import annotations

import re

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in `text`, a sequence of number+unit pairs (h, m, s, ms). ValueError otherwise."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"{text!r} is not a duration")
    pos = 0
    total = 0.0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise ValueError(f"{text!r} is not a duration (e.g. 15s, 1m, 1m30s, 500ms)")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total


def format_duration(seconds: float) -> str:
    """`75.0` -> `1m15s`, `0.5` -> `500ms`, `3600` -> `1h0m0s` (Go's String form, whole ms)."""
    ms = round(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = rest / 1000
    sec_text = f"{secs:g}s"
    if hours:
        return f"{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{minutes}m{sec_text}"
    return sec_text

"""Durations as Flagger reads them: its CRD's pattern, then Go's `time.ParseDuration`.

Owns: `FLAGGER_DURATION_PATTERN` (the CRD's `^[0-9]+(m|s)`, not anchored at the end, so `1m30s` and
`500ms` pass), `parse_duration` (Go's `time.ParseDuration` for non-negative durations -> seconds),
`flagger_duration_problem` (why Flagger would refuse a spec duration, with the equivalent it accepts:
`1h` -> `60m`) and `format_duration`.
Must not: accept what Go or Flagger's CRD would refuse, or import anything of ours.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Flagger 1.44's CRD, on analysis.interval, metrics[].interval and webhooks[].timeout.
FLAGGER_DURATION_PATTERN = "^[0-9]+(m|s)"
_FLAGGER_DURATION = re.compile(FLAGGER_DURATION_PATTERN)

# Go's time.unitMap, in nanoseconds.
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_NS = (1 << 63) - 1  # Go's time.Duration is an int64 of nanoseconds
_EXAMPLES = "e.g. 15s, 1m, 1m30s, 500ms"


def _parse_ns(text: str) -> Fraction:
    """Go's `time.ParseDuration` (src/time/format.go) without the sign: nanoseconds, or ValueError."""
    bad = ValueError(f"{text!r} is not a duration ({_EXAMPLES})")
    if not isinstance(text, str) or not text:
        raise bad
    if text == "0":
        return Fraction(0)
    total = Fraction(0)
    rest = text
    while rest:
        number = re.match(r"([0-9]*)(?:\.([0-9]*))?", rest)
        assert number is not None  # the pattern matches the empty string
        whole, fraction = number.group(1), number.group(2)
        if not whole and not fraction:  # Go: neither digits before nor after the dot
            raise bad
        rest = rest[number.end() :]
        unit_end = 0
        while unit_end < len(rest) and rest[unit_end] != "." and not rest[unit_end].isdigit():
            unit_end += 1
        unit = rest[:unit_end]
        if unit not in _UNIT_NS:
            missing = "missing unit" if not unit else f"unknown unit {unit!r}"
            raise ValueError(f"{text!r} is not a duration: {missing} ({_EXAMPLES})")
        rest = rest[unit_end:]
        value = Fraction(int(whole or "0"))
        if fraction:
            value += Fraction(int(fraction), 10 ** len(fraction))
        total += value * _UNIT_NS[unit]
        if total > _MAX_NS:
            raise ValueError(f"{text!r} is not a duration: it overflows Go's time.Duration (about 2562047h)")
    return Fraction(int(total))  # Go truncates to whole nanoseconds


def parse_duration(text: str) -> float:
    """Seconds in `text` as Go's `time.ParseDuration` reads it (no sign). ValueError otherwise."""
    return float(_parse_ns(text) / 1_000_000_000)


def equivalent(text: str) -> str | None:
    """The same duration in a form Flagger's CRD accepts (`1h` -> `60m`, `1.5m` -> `90s`), if one exists."""
    try:
        ns = int(_parse_ns(text))
    except ValueError:
        return None
    minutes, rest_ns = divmod(ns, _UNIT_NS["m"])
    if rest_ns == 0:
        return f"{minutes}m" if minutes else "0s"
    seconds, rest_ns = divmod(rest_ns, _UNIT_NS["s"])
    if rest_ns == 0:
        return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"
    if minutes or seconds:
        digits = f"{rest_ns:09d}".rstrip("0")
        return f"{minutes}m{seconds}.{digits}s" if minutes else f"{seconds}.{digits}s"
    if rest_ns % _UNIT_NS["ms"] == 0:
        return f"{rest_ns // _UNIT_NS['ms']}ms"
    return None


def flagger_duration_problem(text: str) -> str | None:
    """Why Flagger refuses `text` as a spec duration, or None when both its CRD and Go accept it."""
    if _FLAGGER_DURATION.match(text) is None:
        better = equivalent(text)
        hint = f"; use {better!r}" if better else f" ({_EXAMPLES})"
        return (
            f"{text!r} is not a duration Flagger accepts: its CRD requires a whole number of minutes "
            f"or seconds first (pattern {FLAGGER_DURATION_PATTERN}){hint}"
        )
    try:
        _parse_ns(text)
    except ValueError as err:
        return f"{err}; Flagger parses it with Go's time.ParseDuration"
    return None


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

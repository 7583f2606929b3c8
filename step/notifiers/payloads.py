"""The JSON body each AlertProvider type receives, in the shape Flagger's notifier package sends.

Owns: `Field` (a name and a value shown under the alert), `payload(kind, ...)` for `slack`, `discord`
and `rocket` (Slack's attachment with the canary's fields, `channel`, `username`, `:rocket:`),
`msteams` (an Office 365 MessageCard) and `gchat` (a Google Chat card), the colour each uses for an
error, and `post_address` (Discord is reached through its Slack-compatible `/slack` endpoint).
Must not: send anything, read secrets, or choose which alert goes where.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NOTIFIER_TYPES = ("slack", "msteams", "discord", "rocket", "gchat")
CHANNEL_TYPES = frozenset({"slack", "discord", "rocket"})  # the types that send `channel` and `username`


@dataclass(frozen=True)
class Field:
    name: str
    value: str


def post_address(kind: str, address: str) -> str:
    """Where the body is POSTed: Discord's webhook URL gets `/slack` appended (its Slack-style endpoint)."""
    if kind != "discord" or address.endswith("/slack"):
        return address
    parts = urllib.parse.urlsplit(address)
    path = parts.path.rstrip("/") + "/slack"
    return urllib.parse.urlunsplit(parts._replace(path=path))


def payload(
    kind: str,
    *,
    workload: str,
    namespace: str,
    message: str,
    fields: Sequence[Field],
    severity: str,
    channel: str,
    username: str,
) -> dict[str, Any]:
    """The body for one alert. `workload.namespace` names the Canary; an `error` alert is coloured red."""
    who = f"{workload}.{namespace}"
    error = severity == "error"
    if kind in CHANNEL_TYPES:
        colour = ("#FF0000" if error else "#0076D7") if kind == "rocket" else ("danger" if error else "good")
        return {
            "channel": channel,
            "username": username,
            "icon_url": "",
            "icon_emoji": ":rocket:",
            "attachments": [
                {
                    "color": colour,
                    "author_name": who,
                    "text": message,
                    "mrkdwn_in": ["text"],
                    "fields": [{"title": f.name, "value": f.value, "short": False} for f in fields],
                }
            ],
        }
    if kind == "msteams":
        return {
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": "FF0000" if error else "0076D7",
            "summary": who,
            "sections": [
                {
                    "activityTitle": message,
                    "activitySubtitle": who,
                    "facts": [{"name": f.name, "value": f.value} for f in fields],
                }
            ],
        }
    if kind == "gchat":
        grey = "<font color=#848484><strong>{}</strong></font>"
        sections = [{"widgets": [{"textParagraph": {"text": grey.format(message)}}]}]
        sections += [
            {"widgets": [{"textParagraph": {"text": f"{f.name}<br>{grey.format(f.value)}"}}]} for f in fields
        ]
        return {
            "cards": [
                {
                    "header": {
                        "title": "Flagger",
                        "subtitle": who,
                        "imageUrl": "https://flagger.app/favicon.png",
                    },
                    "sections": sections,
                }
            ]
        }
    raise ValueError(f"unknown AlertProvider type {kind!r} (known: {', '.join(NOTIFIER_TYPES)})")

"""What `plan` shows of a Canary's alerts: who gets which severity, and where each address comes from.

Owns: `planned_alerts`, and the defaults Flagger gives an AlertProvider (username `flagger`, channel
`general`), which `channels` applies too.
Must not: import requests or read Secrets (`plan` imports it), or show any address.
"""

from __future__ import annotations

from collections.abc import Mapping

from step.notifiers.payloads import CHANNEL_TYPES
from step.spec.model import AlertProvider, Canary

DEFAULT_USERNAME = "flagger"  # Flagger's -slack-user default and the AlertProvider default
DEFAULT_CHANNEL = "general"


def planned_alerts(
    canary: Canary, providers: Mapping[tuple[str, str], AlertProvider]
) -> list[dict[str, str]]:
    """What `plan` shows of `analysis.alerts`: who gets which severity, where its address comes from —
    never the address itself."""
    planned = []
    for alert in canary.analysis.alerts:
        ns = alert.provider_ref.namespace or canary.namespace
        provider = providers.get((ns, alert.provider_ref.name))
        entry = {
            "name": alert.name,
            "severity": alert.severity or "(empty: gets nothing, as in Flagger)",
            "provider": f"AlertProvider {ns}/{alert.provider_ref.name}",
        }
        if provider is None:
            entry["type"] = "(not in the files: `run` refuses it)"
        else:
            entry["type"] = provider.type
            if provider.type in CHANNEL_TYPES:
                entry["channel"] = provider.channel or DEFAULT_CHANNEL
                entry["username"] = provider.username or DEFAULT_USERNAME
            entry["address"] = (
                f"from secret {provider.secret_ref.name} (key address)"
                if provider.secret_ref
                else "in the spec"
            )
            if provider.proxy:
                entry["proxy"] = "set"
        planned.append(entry)
    return planned

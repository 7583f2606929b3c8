"""Webhooks: Flagger's payload, POSTed with timeouts and go-retryablehttp's retries, as a result object.

Owns: `HttpWebhookCaller` (the `ports.WebhookCaller`).
Must not: decide what a failure means for the canary.
"""

from step.webhooks.http import HttpWebhookCaller

__all__ = ["HttpWebhookCaller"]

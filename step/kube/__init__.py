"""The Kubernetes API, narrowed to what canary-step needs; the only place `kubernetes` is imported.

Owns: `connect()`, `Kube` (typed calls with timeouts, one request function with retries, a
per-verb request counter), the mapping of API answers to `step.errors`; re-exports `RetryPolicy`
(which lives in `step.retrying`, shared with the webhooks and the metrics provider).
Must not: know what a canary is or decide anything about one.
"""

from step.kube.client import (
    JSON_PATCH,
    MERGE_PATCH,
    Kube,
    Obj,
    RequestCounter,
    WatchEvent,
    WatchStream,
    connect,
)
from step.kube.resources import (
    CANARIES,
    EVENTS,
    METRIC_TEMPLATES,
    REVISIONS,
    SECRETS,
    SERVICES,
    Resource,
)
from step.retrying import RetryPolicy

__all__ = [
    "CANARIES",
    "EVENTS",
    "JSON_PATCH",
    "MERGE_PATCH",
    "METRIC_TEMPLATES",
    "REVISIONS",
    "SECRETS",
    "SERVICES",
    "Kube",
    "Obj",
    "RequestCounter",
    "Resource",
    "RetryPolicy",
    "WatchEvent",
    "WatchStream",
    "connect",
]

"""Traffic routers: the Knative implementation of `ports.Router` and its pure traffic arithmetic.

Owns: reading, writing and verifying a Knative Service's traffic split.
Must not: choose weights or timing, or import `kubernetes` (it talks through `step.kube`).
"""

from step.router.knative import KnativeRouter

__all__ = ["KnativeRouter"]

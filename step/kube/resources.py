"""The API resources canary-step touches, as data: group, version, plural, and how to name them.

Owns: the `Resource` table (Knative Services and Revisions, Secrets, core Events, Flagger Canaries
and MetricTemplates, coordination Leases), URL paths, and the exact RBAC wording used in "forbidden"
messages.
Must not: perform I/O or import `kubernetes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True, kw_only=True)
class Resource:
    group: str  # "" for the core API group
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """As kubectl and the API server name it: `services.serving.knative.dev`, or `secrets`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def rbac(self, subresource: str | None = None) -> str:
        """As a Role names it: `serving.knative.dev/services`, `flagger.app/canaries/status`, `""/events`."""
        resource = f"{self.plural}/{subresource}" if subresource else self.plural
        return f"{self.group}/{resource}" if self.group else f'""/{resource} (core API group)'

    def path(self, *, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        path = f"{prefix}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        if name is not None:
            path += f"/{quote(name, safe='')}"
            if subresource:
                path += f"/{subresource}"
        return path


SERVICES = Resource(group="serving.knative.dev", version="v1", plural="services", kind="Service")
REVISIONS = Resource(group="serving.knative.dev", version="v1", plural="revisions", kind="Revision")
SECRETS = Resource(group="", version="v1", plural="secrets", kind="Secret")
EVENTS = Resource(group="", version="v1", plural="events", kind="Event")
CANARIES = Resource(group="flagger.app", version="v1beta1", plural="canaries", kind="Canary")
METRIC_TEMPLATES = Resource(
    group="flagger.app", version="v1beta1", plural="metrictemplates", kind="MetricTemplate"
)
LEASES = Resource(group="coordination.k8s.io", version="v1", plural="leases", kind="Lease")

"""What a container image tag makes a simulated revision do: become Ready or fail, serve errors, add latency.

Owns the tag grammar, in one place, for the Knative simulator (readiness) and the data plane (serving).
Markers are appended to the tag with ``-`` and can be combined; everything before the first marker is the
version podinfo reports::

    ghcr.io/stefanprodan/podinfo:6.0.1                         healthy
    ghcr.io/stefanprodan/podinfo:6.0.2-fault-5xx-60            60 % of requests answer 500
    ghcr.io/stefanprodan/podinfo:6.0.2-fault-latency-800ms     every request takes 800 ms more
    ghcr.io/stefanprodan/podinfo:6.0.2-fault-5xx-10-fault-latency-1s   both
    ghcr.io/stefanprodan/podinfo:6.0.2-fault-latency-40pct     every request takes 40 % longer than the
                                                               others' (of the namespace's shared latency,
                                                               `DataPlane.set_fault`, plus its own)
    ghcr.io/stefanprodan/podinfo:6.0.2-broken                  never Ready: ContainerMissing (image pull)
    ghcr.io/stefanprodan/podinfo:6.0.2-crash                   never Ready: ExitCode1 (container exits)
    ghcr.io/stefanprodan/podinfo:6.0.2-pending                 never Ready: Unknown forever (Deploying)

Must not: import the kubernetes client, do I/O, or know about Services and traffic.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_FAULT_5XX = re.compile(r"-fault-5xx-(\d{1,3})(?=-|$)")
_FAULT_LATENCY = re.compile(r"-fault-latency-(\d+)(ms|s)(?=-|$)")
_FAULT_LATENCY_PERCENT = re.compile(r"-fault-latency-(\d{1,4})pct(?=-|$)")
_FAILURE = re.compile(r"-(broken|crash|pending)(?=-|$)")
_FIRST_MARKER = re.compile(r"-(fault-|broken|crash|pending)")


class Failure(enum.Enum):
    """How a revision fails to become Ready, as Knative reports it on the Revision's conditions."""

    NONE = "none"
    CONTAINER_MISSING = "broken"  # ContainerHealthy=False, reason ContainerMissing
    EXIT_CODE = "crash"  # ContainerHealthy=False, reason ExitCode1
    PENDING = "pending"  # Ready stays Unknown, reason Deploying


@dataclass(frozen=True)
class Behaviour:
    """What one image does when run as a Knative revision."""

    image: str
    version: str
    error_percent: int = 0
    latency_ms: int = 0
    latency_percent: int = 0  # slower than the others by this percentage of their latency
    failure: Failure = Failure.NONE

    @property
    def becomes_ready(self) -> bool:
        return self.failure is Failure.NONE


def tag_of(image: str) -> str:
    """The tag of an image reference (``latest`` when there is none; a digest counts as the tag)."""
    name = image.rsplit("/", 1)[-1]
    if "@" in name:
        return name.split("@", 1)[1]
    if ":" in name:
        return name.split(":", 1)[1]
    return "latest"


def behaviour_of(image: str) -> Behaviour:
    """Parse the markers of ``image``'s tag. Unknown text in the tag is part of the version."""
    tag = tag_of(image)
    first = _FIRST_MARKER.search(tag)
    version = tag[: first.start()] if first else tag
    error_percent = 0
    if match := _FAULT_5XX.search(tag):
        error_percent = int(match.group(1))
        if error_percent > 100:
            raise ValueError(f"image {image!r}: fault-5xx percent must be 0..100, got {error_percent}")
    latency_ms = 0
    if match := _FAULT_LATENCY.search(tag):
        latency_ms = int(match.group(1)) * (1000 if match.group(2) == "s" else 1)
    latency_percent = 0
    if match := _FAULT_LATENCY_PERCENT.search(tag):
        latency_percent = int(match.group(1))
    failure = Failure.NONE
    if match := _FAILURE.search(tag):
        failure = Failure(match.group(1))
    return Behaviour(
        image=image,
        version=version,
        error_percent=error_percent,
        latency_ms=latency_ms,
        latency_percent=latency_percent,
        failure=failure,
    )

"""The step's Kube clients and Knative routers a test opened in-process, closed after the test
(tests/conftest.py).

A client left to the garbage collector still holds its pooled sockets; under ``-W error`` each one becomes a
ResourceWarning raised in whichever later test the collector happens to run in. A router's Service watch is
stopped before any client is closed: a watch still running when its client's pool is closed opens a new
connection that nothing closes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from step.kube.client import Kube
    from step.router.knative import KnativeRouter

_OPEN: list[Kube] = []
_ROUTERS: list[KnativeRouter] = []


def opened(kube: Kube) -> Kube:
    """Remember `kube` so that it is closed when the test ends; returns it."""
    _OPEN.append(kube)
    return kube


def watching(router: KnativeRouter) -> KnativeRouter:
    """Remember `router` so that its watch is stopped when the test ends, before the clients close."""
    _ROUTERS.append(router)
    return router


def close_all() -> None:
    while _ROUTERS:
        _ROUTERS.pop().close()
    while _OPEN:
        _OPEN.pop().close()

"""The step's Kube clients a test opened in-process, closed after the test (tests/conftest.py).

A client left to the garbage collector still holds its pooled sockets; under ``-W error`` each one becomes a
ResourceWarning raised in whichever later test the collector happens to run in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from step.kube.client import Kube

_OPEN: list[Kube] = []


def opened(kube: Kube) -> Kube:
    """Remember `kube` so that it is closed when the test ends; returns it."""
    _OPEN.append(kube)
    return kube


def close_all() -> None:
    while _OPEN:
        _OPEN.pop().close()

"""A network namespace of the test run's own: the only non-loopback addresses the real-Knative backend uses.

Owns :class:`PodNetwork`: ``ip netns add csk-<index>-<pid>`` with a veth pair, ``10.213.<index>.1/30`` on
the root end and ``10.213.<index>.2/30`` inside, and two routes in the root namespace that send the pod CIDR
(``10.214.<index>.0/24``, kwok's pod IPs) and the Service CIDR the API server allocates from into that
namespace (that route is shared by concurrent runs, all with the same Service CIDR: the newest takes it
over and a stopping run hands it to a live one). Nothing listens there but :class:`Forwarder`, so
whatever dials a pod or a ClusterIP ends in the test's own namespace (a refused connection), never on the
machine's network.

``PodNetwork.create(veth=False)`` makes a namespace with loopback only (the Knative components that bind
fixed ports each run in one).

And :class:`Forwarder`: a TCP relay whose listening socket lives *inside* the namespace (on the inner veth
address, or on the namespace's own 127.0.0.1: a process run there reaches the API server on the root
namespace's loopback through it) and whose outgoing connections are made from the root namespace to
``127.0.0.1``. That is how
kube-apiserver reaches Knative's webhook: an EndpointSlice cannot hold a loopback address, so the webhook
Service's endpoint is the inner address; kube-apiserver (``--enable-aggregator-routing``) dials it, the
relay passes the bytes (TLS untouched) to the webhook listening on 127.0.0.1.

The addresses dialled, all of them: the inner veth address (in our namespace) by kube-apiserver, and
127.0.0.1 by the relay. The root end's address only answers.

Stale namespaces of killed runs (their pid is gone) are deleted when the next one is made.

Must not: touch any interface, route or namespace it did not create, or use an address outside
``10.213.0.0/16`` / ``10.214.0.0/16``; needs root (``ip`` from iproute2).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import socket
import subprocess
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_CLONE_NEWNET = 0x40000000
_PREFIX = "csk-"


class NetnsError(RuntimeError):
    """The namespace could not be made; the message says what failed."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise NetnsError("`ip` (iproute2) is not installed; the real-Knative backend needs it") from error
    if check and result.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def _existing() -> list[tuple[str, int, int]]:
    """Our namespaces, as (name, index, pid of the run that made it)."""
    listed = _ip("netns", "list", check=False).stdout
    found = []
    for fields in (line.split() for line in listed.splitlines()):
        match = re.fullmatch(rf"({_PREFIX}(\d+)-(\d+))", fields[0]) if fields else None
        if match:
            found.append((match.group(1), int(match.group(2)), int(match.group(3))))
    return found


def _host_link(index: int) -> str:
    return f"csk{index}h"


def _inner_address(index: int) -> str:
    return f"10.213.{index}.2"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete(name: str, index: int) -> None:
    _ip("route", "del", f"10.214.{index}.0/24", check=False)
    _ip("link", "del", _host_link(index), check=False)
    _ip("netns", "del", name, check=False)


def clean_stale() -> None:
    """Delete the namespaces (and routes) of runs whose process is gone."""
    for name, index, pid in _existing():
        if not _alive(pid):
            _delete(name, index)


def _hand_over(cidr: str, leaving: str) -> None:
    """Point the shared Service-CIDR route at another live run's veth namespace, if there is one.

    Every real plane's API server allocates from the same Service CIDR, so the route is shared: the last
    run to make its namespace took it over (``route replace``). When the run it points at stops, another
    live run keeps it, so a ClusterIP dialled by that run still ends in a namespace of ours.
    """
    for name, index, pid in _existing():
        if (
            name != leaving
            and _alive(pid)
            and _ip("link", "show", _host_link(index), check=False).returncode == 0
        ):
            _ip("route", "replace", cidr, "via", _inner_address(index), check=False)
            return


@dataclass
class PodNetwork:
    """Our namespace: see the module docstring."""

    name: str
    index: int
    service_cidr: str | None
    veth: bool = True
    _routes: list[str] = field(default_factory=list)

    @property
    def host_address(self) -> str:
        return f"10.213.{self.index}.1"

    @property
    def inner_address(self) -> str:
        return _inner_address(self.index)

    @property
    def pod_cidr(self) -> str:
        return f"10.214.{self.index}.0/24"

    @classmethod
    def create(cls, *, service_cidr: str | None = None, veth: bool = True) -> PodNetwork:
        """A namespace with loopback up and, when ``veth``, the veth pair and the routes into it."""
        if os.geteuid() != 0:
            raise NetnsError("the real-Knative backend makes a network namespace: run as root")
        clean_stale()
        taken = {index for _, index, _ in _existing()}
        for index in range(1, 250):
            if index in taken:
                continue
            name = f"{_PREFIX}{index}-{os.getpid()}"
            if _ip("netns", "add", name, check=False).returncode == 0:
                break
        else:
            raise NetnsError("no free 10.213.<n>.0/30 for a network namespace (250 in use)")
        network = cls(name=name, index=index, service_cidr=service_cidr, veth=veth)
        try:
            network._wire()
        except BaseException:
            network.delete()
            raise
        return network

    def _wire(self) -> None:
        _ip("-n", self.name, "link", "set", "lo", "up")
        if not self.veth:
            return
        host, inner = _host_link(self.index), f"csk{self.index}n"
        _ip("link", "add", host, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", self.name)
        _ip("addr", "add", f"{self.host_address}/30", "dev", host)
        _ip("link", "set", host, "up")
        _ip("-n", self.name, "addr", "add", f"{self.inner_address}/30", "dev", inner)
        _ip("-n", self.name, "link", "set", inner, "up")
        _ip("-n", self.name, "route", "add", "default", "via", self.host_address)
        for cidr in (self.pod_cidr, *([self.service_cidr] if self.service_cidr else [])):
            # replace: another run's Service-CIDR route (same CIDR) is taken over, not an error.
            _ip("route", "replace", cidr, "via", self.inner_address)
            self._routes.append(cidr)

    def exec_prefix(self) -> list[str]:
        """Run a command in the namespace: ``[*network.exec_prefix(), command, ...]``."""
        return ["ip", "netns", "exec", self.name]

    def delete(self) -> None:
        for cidr in self._routes:
            deleted = _ip("route", "del", cidr, "via", self.inner_address, check=False).returncode == 0
            if deleted and cidr == self.service_cidr:
                _hand_over(cidr, self.name)
        self._routes.clear()
        _delete(self.name, self.index)

    def listen(self, port: int, address: str | None = None) -> socket.socket:
        """A TCP socket listening inside the namespace, on ``address`` (default: the inner veth address)."""
        address = self.inner_address if address is None else address
        made: list[socket.socket] = []
        failed: list[BaseException] = []

        def enter_and_listen() -> None:
            # setns(2) moves only this thread; the socket keeps its namespace after the thread ends.
            libc = ctypes.CDLL(None, use_errno=True)
            try:
                with open(f"/var/run/netns/{self.name}") as handle:
                    if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                        raise NetnsError(f"setns({self.name}): {os.strerror(ctypes.get_errno())}")
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((address, port))
                listener.listen(64)
                made.append(listener)
            except BaseException as error:
                failed.append(error)

        thread = threading.Thread(target=enter_and_listen, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        if failed:
            raise NetnsError(f"listening on {address}:{port} in {self.name}: {failed[0]}")
        return made[0]


class Forwarder:
    """Relay ``address:port`` inside the namespace to ``127.0.0.1:target_port`` in the root namespace.

    ``address`` defaults to the inner veth address; ``127.0.0.1`` gives a process run in the namespace its
    own loopback path to a server on the root namespace's loopback (the API server).
    """

    def __init__(
        self, network: PodNetwork, port: int, target_port: int, *, address: str | None = None
    ) -> None:
        self.port = port
        self.target_port = target_port
        self._listener = network.listen(port, address)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"forward-{port}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while chunk := source.recv(65536):
                    sink.sendall(chunk)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

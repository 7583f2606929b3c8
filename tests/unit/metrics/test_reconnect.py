"""PrometheusProvider's one reconnect, against a real TCP server on loopback that drops connections."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from step.errors import MetricError
from step.metrics.prometheus import RECONNECT_ONCE, PrometheusProvider
from step.retrying import RetryPolicy

ANSWER = json.dumps(
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "42"]}]}}
).encode()


@dataclass
class Dropper:
    """Resets the first `drops` connections without a byte, then answers every request with ANSWER."""

    drops: int
    url: str = ""
    connections: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


def _serve(dropper: Dropper, listener: socket.socket) -> None:
    while not dropper.stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        dropper.connections += 1
        with conn:
            if dropper.connections <= dropper.drops:
                # SO_LINGER 0: close with a RST, as a crashing or restarting server does.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                continue
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                request += chunk
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(ANSWER)}\r\n\r\n".encode()
                + ANSWER
            )


@pytest.fixture
def dropper(request: pytest.FixtureRequest) -> Iterator[Dropper]:
    drops: int = request.param
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    found = Dropper(drops=drops, url=f"http://127.0.0.1:{listener.getsockname()[1]}")
    thread = threading.Thread(target=_serve, args=(found, listener), daemon=True)
    thread.start()
    yield found
    found.stop.set()
    listener.close()
    thread.join(timeout=5)


@pytest.mark.parametrize("dropper", [1], indirect=True)
def test_one_dropped_connection_is_reconnected_at_once(dropper: Dropper) -> None:
    assert PrometheusProvider(dropper.url).query("up") == 42.0
    assert dropper.connections == 2


@pytest.mark.parametrize("dropper", [5], indirect=True)
def test_the_second_drop_is_an_error_naming_the_address(dropper: Dropper) -> None:
    with pytest.raises(MetricError, match=rf"^Prometheus at {dropper.url} is unreachable: "):
        PrometheusProvider(dropper.url).query("up")
    assert dropper.connections == RECONNECT_ONCE.attempts == 2


@pytest.mark.parametrize("dropper", [1], indirect=True)
def test_the_reconnect_is_a_policy_tests_can_switch_off(dropper: Dropper) -> None:
    with pytest.raises(MetricError, match="is unreachable"):
        PrometheusProvider(dropper.url, retry=RetryPolicy.no_retries()).query("up")
    assert dropper.connections == 1

"""ServiceWatch's recovery paths against a small chunked-HTTP stand-in for the API server.

The real API server is used by tests/e2e/test_router_knative.py; these cases (410 Gone, the
Service deleted) are hard to provoke there on demand.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from step.clock import MonotonicClock
from step.errors import NotFound
from step.kube import Kube, RetryPolicy, connect
from step.router.watch import ServiceWatch, is_newer
from tests.kube_clients import opened


def _service(rv: str, **annotations: str) -> dict[str, object]:
    return {
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "resourceVersion": rv,
            "annotations": annotations,
        }
    }


class Script:
    def __init__(self, *, then_delete: bool = False) -> None:
        self.rv = "1"
        self.then_delete = then_delete
        self.release = threading.Event()
        self.watches: list[str] = []


def _serve(script: Script) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            if "watch" not in query:
                body = json.dumps(_service(script.rv)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            version = query["resourceVersion"][0]
            script.watches.append(version)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if version == "1":  # too old: the server says 410 Gone, and the next read is at 5
                script.rv = "5"
                self._chunk({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}})
            elif script.then_delete:
                self._chunk({"type": "DELETED", "object": _service("6")})
            else:
                self._chunk({"type": "MODIFIED", "object": _service("6", seen="yes")})
                script.release.wait(10)  # keep the watch open, as the API server does
            self.wfile.write(b"0\r\n\r\n")

        def _chunk(self, event: dict[str, object]) -> None:
            data = json.dumps(event).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        script.release.set()
        server.shutdown()
        server.server_close()


def _watch(tmp_path: Path, url: str) -> tuple[ServiceWatch, Kube]:
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "clusters": [{"name": "c", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    kube = opened(connect(kubeconfig=str(config), context=None, retry=RetryPolicy.no_retries()))
    return ServiceWatch(kube, namespace="test", name="podinfo", clock=MonotonicClock()), kube


def test_an_expired_watch_is_reread_and_resumed(tmp_path: Path) -> None:
    script = Script()
    for url in _serve(script):
        watch, kube = _watch(tmp_path, url)
        try:
            assert watch.current()["metadata"]["resourceVersion"] == "1"
            found = watch.wait(lambda obj: obj["metadata"]["annotations"].get("seen") == "yes", timeout=5)
            assert found is True
            assert watch.current()["metadata"]["resourceVersion"] == "6"
            assert script.watches == ["1", "5"]
            assert kube.requests.snapshot() == {"get": 2, "watch": 2}
        finally:
            watch.close()


def test_a_deleted_service_is_reported_to_the_waiter(tmp_path: Path) -> None:
    script = Script(then_delete=True)
    for url in _serve(script):
        watch, _ = _watch(tmp_path, url)
        try:
            with pytest.raises(NotFound, match="was deleted"):
                watch.wait(lambda obj: False, timeout=5)
        finally:
            watch.close()


def test_newer_compares_resource_versions_as_numbers_when_they_are() -> None:
    assert is_newer(_service("10"), _service("9"))
    assert not is_newer(_service("9"), _service("10"))
    assert is_newer(_service("abc"), _service("10"))  # opaque: arrival order
    assert is_newer(_service("1"), None)

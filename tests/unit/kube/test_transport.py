"""step.kube's one request function against real (small) HTTP servers on loopback.

These servers stand in for an API server that is down, overloaded, or broken; the real API server
is exercised by the cluster tests. What is checked: retries happen only for transient failures,
Retry-After is honoured, requests are counted, and no urllib3/kubernetes exception ever escapes.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from step.errors import APIError, Conflict, Forbidden, Invalid, NotFound, UsageError
from step.kube import Kube, RetryPolicy, connect
from tests.kube_clients import opened


@dataclass
class Scripted:
    """An HTTP server that answers from a script of (status, headers, body), then repeats the last."""

    answers: list[tuple[int, dict[str, str], bytes]]
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


def _serve(script: Scripted) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            script.seen.append(
                (self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            status, headers, payload = script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._answer()

        def do_PATCH(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _kubeconfig(tmp_path: Path, url: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return str(path)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _kube(tmp_path: Path, url: str, *, retry: RetryPolicy, sleeps: Sleeps | None = None) -> Kube:
    return opened(
        connect(
            kubeconfig=_kubeconfig(tmp_path, url),
            context=None,
            retry=retry,
            sleep=sleeps if sleeps is not None else Sleeps(),
        )
    )


STATUS_403 = json.dumps({"kind": "Status", "message": "forbidden by RBAC", "code": 403}).encode()
KSVC = json.dumps({"metadata": {"name": "podinfo", "resourceVersion": "7"}}).encode()
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def scripted() -> Iterator[tuple[Scripted, str]]:
    script = Scripted(answers=[(200, JSON, KSVC)])
    yield from ((script, url) for url in _serve(script))


def test_get_sends_the_bearer_token_and_returns_the_object(
    tmp_path: Path, scripted: tuple[Scripted, str]
) -> None:
    script, url = scripted
    kube = _kube(tmp_path, url, retry=RetryPolicy.no_retries())
    obj = kube.get_service(namespace="test", name="podinfo")
    assert obj["metadata"]["resourceVersion"] == "7"
    method, path, headers, _ = script.seen[0]
    assert (method, path) == ("GET", "/apis/serving.knative.dev/v1/namespaces/test/services/podinfo")
    assert headers["authorization"] == "Bearer t0ken"
    assert kube.requests.snapshot() == {"get": 1}


def test_patches_use_the_right_content_types(tmp_path: Path, scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    kube = _kube(tmp_path, url, retry=RetryPolicy.no_retries())
    kube.patch_service(namespace="test", name="podinfo", patch={"spec": {"traffic": []}})
    kube.patch_service(namespace="test", name="podinfo", patch=[{"op": "test", "path": "/a", "value": 1}])
    kube.patch_canary_status(namespace="test", name="podinfo", patch={"status": {"phase": "Progressing"}})
    kinds = [(m, p, h["content-type"], json.loads(b)) for m, p, h, b in script.seen]
    assert kinds[0][2] == "application/merge-patch+json"
    assert kinds[1][2] == "application/json-patch+json"
    assert kinds[1][3] == [{"op": "test", "path": "/a", "value": 1}]
    assert kinds[2][:3] == (
        "PATCH",
        "/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo/status",
        "application/merge-patch+json",
    )
    assert kube.requests.snapshot() == {"patch": 3}


def test_5xx_is_retried_honouring_retry_after_then_succeeds(
    tmp_path: Path, scripted: tuple[Scripted, str]
) -> None:
    script, url = scripted
    script.answers[:0] = [(503, {"Retry-After": "2"}, b"busy"), (429, {"Retry-After": "3"}, b"slow down")]
    sleeps = Sleeps()
    kube = _kube(tmp_path, url, retry=RetryPolicy(attempts=4, backoff_base=0.1), sleeps=sleeps)
    assert kube.get_service(namespace="test", name="podinfo")["metadata"]["name"] == "podinfo"
    assert sleeps == [2.0, 3.0]
    assert kube.requests.snapshot() == {"get": 3}


def test_retries_are_bounded_and_jittered(tmp_path: Path, scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    script.answers[:] = [(500, JSON, b'{"message":"etcd is sad"}')]
    sleeps = Sleeps()
    kube = _kube(tmp_path, url, retry=RetryPolicy(attempts=3, backoff_base=1.0, jitter=0.5), sleeps=sleeps)
    with pytest.raises(APIError) as caught:
        kube.get_service(namespace="test", name="podinfo")
    assert type(caught.value) is APIError
    assert "500" in str(caught.value) and "etcd is sad" in str(caught.value)
    assert "gave up after 3 attempt(s)" in str(caught.value)
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    assert len(script.seen) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_forbidden_is_never_retried(tmp_path: Path, scripted: tuple[Scripted, str], status: int) -> None:
    script, url = scripted
    script.answers[:] = [(status, JSON, STATUS_403)]
    sleeps = Sleeps()
    kube = _kube(tmp_path, url, retry=RetryPolicy(attempts=5), sleeps=sleeps)
    with pytest.raises(Forbidden) as caught:
        kube.patch_service(namespace="test", name="podinfo", patch={"spec": {}})
    assert len(script.seen) == 1 and sleeps == []
    if status == 403:
        assert 'needs verb "patch" on serving.knative.dev/services' in str(caught.value)


@pytest.mark.parametrize(
    ("status", "kind"), [(404, NotFound), (409, Conflict), (422, Invalid), (400, Invalid)]
)
def test_client_errors_map_without_retry(
    tmp_path: Path, scripted: tuple[Scripted, str], status: int, kind: type[APIError]
) -> None:
    script, url = scripted
    script.answers[:] = [(status, JSON, b'{"kind":"Status","message":"server says no"}')]
    kube = _kube(tmp_path, url, retry=RetryPolicy(attempts=5))
    with pytest.raises(kind, match="server says no"):
        kube.get_revision(namespace="test", name="podinfo-00001")
    assert len(script.seen) == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_closed_port_gives_an_api_error_after_bounded_retries(tmp_path: Path) -> None:
    sleeps = Sleeps()
    kube = _kube(tmp_path, f"http://127.0.0.1:{_closed_port()}", retry=RetryPolicy(attempts=3), sleeps=sleeps)
    with pytest.raises(APIError) as caught:
        kube.get_service(namespace="test", name="podinfo")
    assert type(caught.value) is APIError
    assert "cannot reach the API server at http://127.0.0.1:" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert len(sleeps) == 2
    assert kube.requests.snapshot() == {"get": 3}


class _Garbage(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(b"\x00\x01 this is not HTTP at all\r\n\r\n")


def test_a_server_speaking_garbage_gives_an_api_error(tmp_path: Path) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        kube = _kube(tmp_path, f"http://127.0.0.1:{server.server_address[1]}", retry=RetryPolicy.no_retries())
        with pytest.raises(APIError) as caught:
            kube.get_service(namespace="test", name="podinfo")
        assert "cannot reach the API server" in str(caught.value)
        assert caught.value.__cause__ is None
    finally:
        server.shutdown()
        server.server_close()


def test_a_2xx_that_is_not_json_gives_an_api_error(tmp_path: Path, scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    script.answers[:] = [(200, {"Content-Type": "text/html"}, b"<html>proxy login</html>")]
    kube = _kube(tmp_path, url, retry=RetryPolicy.no_retries())
    with pytest.raises(APIError, match="not JSON"):
        kube.get_canary(namespace="test", name="podinfo")


def test_secret_data_is_decoded(tmp_path: Path, scripted: tuple[Scripted, str]) -> None:
    script, url = scripted
    script.answers[:] = [(200, JSON, b'{"data":{"username":"YWRtaW4=","password":"czNjcjN0"}}')]
    kube = _kube(tmp_path, url, retry=RetryPolicy.no_retries())
    assert kube.get_secret_data(namespace="test", name="prom") == {"username": "admin", "password": "s3cr3t"}


def test_watch_streams_events_and_sends_the_resource_version(
    tmp_path: Path, scripted: tuple[Scripted, str]
) -> None:
    script, url = scripted
    lines = [
        {"type": "MODIFIED", "object": {"metadata": {"resourceVersion": "8"}}},
        {"type": "ERROR", "object": {"kind": "Status", "code": 410}},
    ]
    script.answers[:] = [(200, JSON, b"".join(json.dumps(x).encode() + b"\n" for x in lines))]
    kube = _kube(tmp_path, url, retry=RetryPolicy.no_retries())
    events = list(kube.watch_service(namespace="test", name="podinfo", resource_version="7", timeout=3))
    assert [e.type for e in events] == ["MODIFIED", "ERROR"]
    _, path, _, _ = script.seen[0]
    assert path.startswith("/apis/serving.knative.dev/v1/namespaces/test/services?")
    for part in (
        "watch=true",
        "resourceVersion=7",
        "timeoutSeconds=3",
        "fieldSelector=metadata.name%3Dpodinfo",
    ):
        assert part in path
    assert kube.requests.snapshot() == {"watch": 1}


def test_a_missing_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    # a mistake no retry fixes (exit 2), and the message says the file does not exist
    with pytest.raises(UsageError, match=r"the kubeconfig file \S+/nope \(--kubeconfig\) does not exist"):
        connect(kubeconfig=str(tmp_path / "nope"), context=None, retry=RetryPolicy.no_retries())


def test_a_missing_kubeconfig_from_the_environment_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "a"))
    with pytest.raises(UsageError, match=r"\S+/a \(\$KUBECONFIG\) does not exist"):
        connect(kubeconfig=None, context="x", retry=RetryPolicy.no_retries())


def test_an_unknown_context_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match='has no context "elsewhere"; its contexts are ctx'):
        connect(
            kubeconfig=_kubeconfig(tmp_path, "http://127.0.0.1:1"), context="elsewhere", retry=RetryPolicy()
        )

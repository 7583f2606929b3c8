"""A flagger-loadtester look-alike on loopback: the webhook API, ``hey`` load without a shell, gates.

Follows ``fluxcd/flagger pkg/loadtester/server.go`` (flagger-semantics.md 4.3):

- ``POST /`` takes a webhook payload. No or empty ``metadata`` → 400 ``metadata not found in payload``.
  ``metadata.type`` defaults to ``cmd``. A ``cmd`` must be a ``hey`` command (parsed with :mod:`shlex`; flags
  ``-z -n -c -q -m -H -t -d -T -A -a -host``; the other hey flags are accepted and ignored) and answers 202 at
  once; the load runs in the background, deduplicated by hash(canary + cmd) as Flagger's task runner does (a
  command already running is skipped). The target URL's host is sent to the data-plane router with that
  Host header, as cluster DNS + Kourier would. Anything else (``bash``, ``helm``, a non-hey ``cmd``) → 400:
  this server runs no shell.
- ``/gate/approve`` 200, ``/gate/halt`` 403, ``/gate/check`` 200 when open else 403, ``/gate/open`` and
  ``/gate/close`` 202, keyed ``<name>.<namespace>`` from the payload; ``/rollback/check|open|close`` the same
  with key ``rollback.<name>.<namespace>``; ``/healthz``.
- For tests: every request (method, path, JSON body, time) is kept in order, ``GET /_calls`` returns them
  (``DELETE /_calls`` forgets them); ``GET /_runs`` lists hey runs and their request counts.

Load is bounded: a run stops at its ``-z`` duration or ``-n`` count, and never later than
``max_duration_s`` (default 600 s, Flagger's loadtester has ``-timeout 1h``); :meth:`LoadTester.stop` ends
all runs.

Must not: spawn processes or shells, or talk to the API server.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import re
import shlex
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.cluster.dataplane import HarnessServer

DEFAULT_MAX_DURATION_S = 600.0
MAX_WORKERS = 100
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class HeyUsageError(ValueError):
    """The command is not a hey command we can run; the message says why."""


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration for the units hey users write (``1m``, ``30s``, ``1m30s``, ``500ms``)."""
    if text in ("0", ""):
        return 0.0
    position, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        raise HeyUsageError(f"invalid duration {text!r}")
    return total


@dataclass(frozen=True)
class HeyCommand:
    """A parsed ``hey`` invocation (github.com/rakyll/hey flags and defaults)."""

    url: str
    requests: int = 200  # -n
    workers: int = 50  # -c
    rate_per_worker: float = 0.0  # -q, 0 = unlimited
    duration_s: float = 0.0  # -z, 0 = use -n
    method: str = "GET"  # -m
    headers: tuple[tuple[str, str], ...] = ()  # -H, repeatable
    timeout_s: float = 20.0  # -t
    body: str = ""  # -d
    host: str = ""  # -host


_VALUE_FLAGS = {
    "-n",
    "-c",
    "-q",
    "-z",
    "-m",
    "-H",
    "-t",
    "-d",
    "-T",
    "-A",
    "-a",
    "-host",
    "-o",
    "-cpus",
    "-x",
    "-D",
}
_BOOL_FLAGS = {"-h2", "-disable-compression", "-disable-keepalive", "-disable-redirects"}


def parse_hey(command: str) -> HeyCommand:
    """Parse a ``hey ...`` command line without a shell; raises :class:`HeyUsageError`."""
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise HeyUsageError(f"cannot parse command {command!r}: {error}") from error
    if not argv or argv[0].rsplit("/", 1)[-1] != "hey":
        program = argv[0] if argv else "(empty)"
        raise HeyUsageError(f"only hey commands run here (this load tester runs no shell), got {program!r}")
    values: dict[str, Any] = {"headers": []}
    url: str | None = None
    index = 1
    while index < len(argv):
        arg = argv[index]
        flag, _, inline = arg.partition("=") if arg.startswith("-") else (arg, "", "")
        if flag.startswith("--"):
            flag = flag[1:]
        if flag in _BOOL_FLAGS:
            index += 1
            continue
        if flag in _VALUE_FLAGS:
            if inline:
                value = inline
            else:
                index += 1
                if index >= len(argv):
                    raise HeyUsageError(f"flag {flag} needs a value")
                value = argv[index]
            index += 1
            try:
                if flag == "-n":
                    values["requests"] = int(value)
                elif flag == "-c":
                    values["workers"] = int(value)
                elif flag == "-q":
                    values["rate_per_worker"] = float(value)
                elif flag == "-z":
                    values["duration_s"] = parse_go_duration(value)
                elif flag == "-t":
                    values["timeout_s"] = float(value)
                elif flag == "-m":
                    values["method"] = value.upper()
                elif flag == "-H":
                    name, sep, header_value = value.partition(":")
                    if not sep:
                        raise HeyUsageError(f"invalid header {value!r}, want 'Name: value'")
                    values["headers"].append((name.strip(), header_value.strip()))
                elif flag == "-d":
                    values["body"] = value
                elif flag == "-T":
                    values["headers"].append(("Content-Type", value))
                elif flag == "-A":
                    values["headers"].append(("Accept", value))
                elif flag == "-host":
                    values["host"] = value
                elif flag == "-x":
                    raise HeyUsageError("-x (proxy) is not supported")
                elif flag == "-D":
                    raise HeyUsageError("-D (body from file) is not supported")
                # -a, -o, -cpus: accepted, no effect here
            except ValueError as error:
                if isinstance(error, HeyUsageError):
                    raise
                raise HeyUsageError(f"invalid value {value!r} for {flag}") from error
            continue
        if arg.startswith("-"):
            raise HeyUsageError(f"unknown hey flag {arg!r}")
        if url is not None:
            raise HeyUsageError(f"more than one URL: {url!r} and {arg!r}")
        url = arg
        index += 1
    if url is None:
        raise HeyUsageError("no URL in the hey command")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise HeyUsageError(f"invalid URL {url!r}")
    workers = values.get("workers", 50)
    if not 1 <= workers <= MAX_WORKERS:
        raise HeyUsageError(f"-c must be 1..{MAX_WORKERS}, got {workers}")
    headers = tuple(values.pop("headers"))
    return HeyCommand(url=url, headers=headers, **values)


@dataclass
class Run:
    """One hey run in the background."""

    key: str
    canary: str
    command: str
    hey: HeyCommand
    started: float = field(default_factory=time.time)
    finished: float | None = None
    sent: int = 0
    errors: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    ended: threading.Event = field(default_factory=threading.Event)

    def summary(self) -> dict[str, Any]:
        return {
            "canary": self.canary,
            "cmd": self.command,
            "started": self.started,
            "finished": self.finished,
            "sent": self.sent,
            "errors": self.errors,
            "codes": {str(code): count for code, count in sorted(self.codes.items())},
        }


Resolve = Callable[[str], tuple[str, int]]


class LoadTester:
    """The HTTP server; ``resolve(host)`` gives the address that serves a URL's host (the router)."""

    def __init__(
        self, *, resolve: Resolve, max_duration_s: float = DEFAULT_MAX_DURATION_S, port: int = 0
    ) -> None:
        self._resolve = resolve
        self.max_duration_s = max_duration_s
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []
        self._gates: set[str] = set()
        self._running: dict[str, Run] = {}
        self._runs: list[Run] = []
        self._stop = threading.Event()
        tester = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                tester._handle(self)

            def do_POST(self) -> None:
                tester._handle(self)

            def do_DELETE(self) -> None:
                tester._handle(self)

        self._server = HarnessServer(("127.0.0.1", port), Handler)
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="loadtester", daemon=True
        )
        self._thread.start()

    # -- test helpers

    def calls(self, path: str | None = None) -> list[dict[str, Any]]:
        """Received requests, oldest first (optionally only those to ``path``)."""
        with self._lock:
            return [dict(call) for call in self._calls if path is None or call["path"] == path]

    def runs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [run.summary() for run in self._runs]

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def open_gate(self, name: str, namespace: str, *, rollback: bool = False) -> None:
        with self._lock:
            self._gates.add(("rollback." if rollback else "") + f"{name}.{namespace}")

    def close_gate(self, name: str, namespace: str, *, rollback: bool = False) -> None:
        with self._lock:
            self._gates.discard(("rollback." if rollback else "") + f"{name}.{namespace}")

    def end_runs(self, namespace: str) -> None:
        """End the hey runs of canaries in ``namespace`` (its test is over; a run lasts its ``-z``)."""
        with self._lock:
            for run in self._running.values():
                if run.canary.endswith(f".{namespace}"):
                    run.ended.set()

    def stop(self) -> None:
        """End every hey run, then the server."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- HTTP

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler, code: int, text: str, *, content_type: str = "text/plain"
    ) -> None:
        body = text.encode()
        request.send_response(code)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = urllib.parse.urlsplit(request.path).path
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length > 0 else b""
        if path == "/_calls":
            if request.command == "DELETE":
                with self._lock:
                    self._calls.clear()
                self._reply(request, 200, "[]", content_type="application/json")
            else:
                self._reply(request, 200, json.dumps(self.calls()), content_type="application/json")
            return
        if path == "/_runs":
            self._reply(request, 200, json.dumps(self.runs()), content_type="application/json")
            return
        payload: Any = None
        if raw:
            try:
                payload = json.loads(raw)
            except json.JSONDecodeError:
                payload = None
        with self._lock:
            self._calls.append(
                {
                    "method": request.command,
                    "path": path,
                    "body": payload,
                    "raw": raw.decode(errors="replace"),
                    "time": time.time(),
                }
            )
        if path in ("/healthz", "/readyz"):
            self._reply(request, 200, "OK")
            return
        if request.command != "POST":
            self._reply(request, 405, "method not allowed")
            return
        if raw and payload is None:
            self._reply(request, 400, "reading the request body failed: invalid JSON")
            return
        if not isinstance(payload, dict):
            payload = {}
        if path in ("/", ""):
            self._task(request, payload)
        elif path.startswith(("/gate/", "/rollback/")):
            self._gate(request, path, payload)
        else:
            self._reply(request, 404, "404 page not found")

    def _gate(self, request: BaseHTTPRequestHandler, path: str, payload: dict[str, Any]) -> None:
        kind, _, action = path.strip("/").partition("/")
        if kind == "gate" and action == "approve":
            self._reply(request, 200, "Approved")
            return
        if kind == "gate" and action == "halt":
            self._reply(request, 403, "Forbidden")
            return
        name, namespace = payload.get("name"), payload.get("namespace")
        if not name or not namespace:
            self._reply(request, 400, "name and namespace not found in payload")
            return
        key = ("rollback." if kind == "rollback" else "") + f"{name}.{namespace}"
        with self._lock:
            if action == "check":
                is_open = key in self._gates
            elif action == "open":
                self._gates.add(key)
            elif action == "close":
                self._gates.discard(key)
            else:
                self._reply(request, 404, "404 page not found")
                return
        if action == "check":
            self._reply(request, 200 if is_open else 403, "Approved" if is_open else "Forbidden")
        else:
            self._reply(request, 202, "Gate opened" if action == "open" else "Gate closed")

    def _task(self, request: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        metadata = payload.get("metadata")
        if not metadata or not isinstance(metadata, dict):
            self._reply(request, 400, "metadata not found in payload")
            return
        task_type = str(metadata.get("type") or "cmd")
        if task_type != "cmd":
            self._reply(
                request, 400, f"task type {task_type!r} is not supported: this load tester runs no shell"
            )
            return
        command = str(metadata.get("cmd") or "")
        if not command:
            self._reply(request, 400, "cmd not found in metadata")
            return
        try:
            hey = parse_hey(command)
        except HeyUsageError as error:
            self._reply(request, 400, str(error))
            return
        canary = f"{payload.get('name', '')}.{payload.get('namespace', '')}"
        key = hashlib.sha256(f"{canary}{command}".encode()).hexdigest()
        with self._lock:
            if key not in self._running:
                run = Run(key=key, canary=canary, command=command, hey=hey)
                self._running[key] = run
                self._runs.append(run)
                threading.Thread(
                    target=self._execute, args=(run,), name=f"hey-{key[:8]}", daemon=True
                ).start()
        self._reply(request, 202, "Accepted")

    # -- hey

    def _address(self, url: str) -> tuple[str, int]:
        parsed = urllib.parse.urlsplit(url)
        host = parsed.hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                return self._resolve(host)
        return host, parsed.port or 80

    def _execute(self, run: Run) -> None:
        hey = run.hey
        try:
            address = self._address(hey.url)
        except Exception:
            address = None
        duration = min(hey.duration_s or self.max_duration_s, self.max_duration_s)
        deadline = time.monotonic() + duration
        budget = [hey.requests] if not hey.duration_s else None
        threads = [
            threading.Thread(target=self._worker, args=(run, address, deadline, budget), daemon=True)
            for _ in range(hey.workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with self._lock:
            run.finished = time.time()
            self._running.pop(run.key, None)

    def _take(self, budget: list[int] | None) -> bool:
        if budget is None:
            return True
        with self._lock:
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            return True

    def _worker(
        self, run: Run, address: tuple[str, int] | None, deadline: float, budget: list[int] | None
    ) -> None:
        hey = run.hey
        parsed = urllib.parse.urlsplit(hey.url)
        target = parsed.path or "/"
        if parsed.query:
            target += "?" + parsed.query
        headers = {"User-Agent": "hey/0.0.1", **dict(hey.headers)}
        headers["Host"] = hey.host or parsed.netloc
        interval = 1.0 / hey.rate_per_worker if hey.rate_per_worker > 0 else 0.0
        connection: http.client.HTTPConnection | None = None
        next_at = time.monotonic()
        while (
            not self._stop.is_set()
            and not run.ended.is_set()
            and time.monotonic() < deadline
            and self._take(budget)
        ):
            if interval:
                # hey's -q: this worker's pace; waits on the stop event so stop() is immediate
                if self._stop.wait(max(next_at - time.monotonic(), 0)):
                    break
                next_at = max(next_at + interval, time.monotonic() - interval)
            code: int | None = None
            if address is not None:
                try:
                    if connection is None:
                        connection = http.client.HTTPConnection(*address, timeout=hey.timeout_s)
                    connection.request(hey.method, target, body=hey.body.encode() or None, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    code = response.status
                except (OSError, http.client.HTTPException):
                    if connection is not None:
                        connection.close()
                    connection = None
            with self._lock:
                run.sent += 1
                if code is None:
                    run.errors += 1
                else:
                    run.codes[code] = run.codes.get(code, 0) + 1
            # hey keeps going on errors; without a pace, do not spin on a dead address
            if (address is None or code is None) and self._stop.wait(0.05):
                break
        if connection is not None:
            connection.close()

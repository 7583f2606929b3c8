"""How long one chat alert holds the run up, by how the receiver behaves: answering, refusing
connections, answering 503, hanging. The goal: never more than the per-alert budget
(`step.notifiers.channels.EVENT_BUDGET_SECONDS`, 5 s), whatever the receiver does.

    .venv/bin/python bench/notify.py [--runs 3]

Receivers are local HTTP servers on loopback. Prints the median wall time of `ChatNotifier.notify`
for one alert and the attempts it made.

Must not: be a test (timing goals live in benchmarks), or leave a process behind.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from step.errors import StepError
from step.notifiers.channels import EVENT_BUDGET_SECONDS, Channel, ChatNotifier
from step.notifiers.sender import ChatSender
from step.ports import Event, Severity
from step.spec.model import Canary

CANARY = Canary(name="podinfo", namespace="test", target_name="podinfo")
ALERT = Event(
    type="Warning",
    message="Rolling back podinfo.test failed checks threshold reached 2",
    phase="Progressing",
    alert=Severity.ERROR,
)


def _server(status: int | None) -> ThreadingHTTPServer:
    """`status` None: read the request and never answer (until the server stops)."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if status is None:
                stop.wait(30)
                return
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.stop_event = stop  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    servers = {"answers 200": _server(200), "answers 503": _server(503), "hangs": _server(None)}
    urls = {name: f"http://127.0.0.1:{s.server_address[1]}/hook" for name, s in servers.items()}
    urls["refuses connections"] = f"http://127.0.0.1:{_closed_port()}/hook"
    print(f"one alert, per-alert budget {EVENT_BUDGET_SECONDS:g}s, median of {runs}")
    try:
        for name, url in urls.items():
            seconds, attempts = [], 0
            for _ in range(runs):
                notifier = ChatNotifier(
                    canary=CANARY,
                    channels=[Channel(label=name, kind="slack", address=url)],
                    sender=ChatSender(),
                )
                started = time.monotonic()
                with contextlib.suppress(StepError):  # a failed alert is what is being timed
                    notifier.notify(ALERT)
                seconds.append(time.monotonic() - started)
                attempts = notifier.deliveries[0].attempts
                notifier.close()
            print(f"  receiver {name:<20} {statistics.median(seconds):5.2f}s  {attempts} attempt(s)")
    finally:
        for server in servers.values():
            server.stop_event.set()  # type: ignore[attr-defined]
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    main()

"""A real Prometheus process (Debian's ``prometheus``) on loopback, scraping the data plane every second.

Owns the process: its configuration (one job, ``scrape_interval: 1s``), a storage directory that survives a
restart, a fixed port chosen once (so :attr:`Prometheus.url` stays valid across :meth:`stop` and
:meth:`start`, which the step's tests use to take the metrics server away mid-analysis), readiness
(``/-/ready`` and every target ``up``), and teardown: SIGTERM, then SIGKILL; ``PR_SET_PDEATHSIG`` (through
``setpriv``) so that the process dies with its parent, and an ``atexit`` hook.

Must not: know what is scraped beyond the target addresses, or poll without a deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

STARTUP_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1


class PrometheusError(RuntimeError):
    """Prometheus did not start, or a query failed; the message carries the log tail."""


def _die_with_parent() -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def find_binary() -> Path:
    """The prometheus binary: from :func:`tests.cluster.binaries.ensure` when it exists, else PATH."""
    try:
        from tests.cluster.binaries import ensure  # noqa: PLC0415 - optional until that module lands

        return ensure(build=False).prometheus
    except Exception:
        found = shutil.which("prometheus")
        if found is None:
            raise PrometheusError("prometheus is not on PATH: `apt-get install prometheus`") from None
        return Path(found)


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Prometheus:
    """One Prometheus server; ``start()`` waits until it is ready and has scraped every target."""

    def __init__(
        self,
        *,
        workdir: Path,
        targets: list[str],
        binary: Path | None = None,
        scrape_interval: str = "1s",
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary or find_binary()
        self.targets = targets
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = workdir / "prometheus.log"
        self.config_file = workdir / "prometheus.yml"
        self.config_file.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": scrape_interval,
                        "scrape_timeout": scrape_interval,
                        "evaluation_interval": scrape_interval,
                    },
                    "scrape_configs": [
                        {
                            "job_name": "knative-dataplane",
                            "metrics_path": "/metrics",
                            "static_configs": [{"targets": targets}],
                        }
                    ],
                }
            )
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._may_move = 0 if port else 3  # attempts at another port, until the first successful start
        self._lock = threading.Lock()
        atexit.register(self.stop)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, *, wait: bool = True, timeout: float = STARTUP_TIMEOUT_S) -> Prometheus:
        """Start the process (same port, same storage as before); by default wait until targets are up."""
        with self._lock:
            if self.running:
                return self
            command = [
                str(self.binary),
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                "--storage.tsdb.retention.time=2h",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ]
            # util-linux's setpriv sets the death signal and execs (the pid stays Prometheus'); a preexec_fn
            # is only the fallback, because forking with a callback can deadlock in a threaded parent.
            setpriv = shutil.which("setpriv")
            with self.log_file.open("ab") as log:
                if setpriv is not None:
                    self._process = subprocess.Popen(
                        [setpriv, "--pdeathsig", "KILL", "--", *command],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                else:
                    self._process = subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=_die_with_parent(),  # noqa: PLW1509 - only prctl; fallback without setpriv
                    )
        if wait:
            self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, *, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait for ``/-/ready`` and for every scrape target to be ``up``."""
        deadline = time.monotonic() + timeout
        last = "not started"
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                if self._may_move and "address already in use" in self.log_tail():
                    # The free port we picked was taken before Prometheus bound it (parallel runs): move once
                    # per attempt, only before the first successful start, so the URL never changes later.
                    self._may_move -= 1
                    self.port = _free_port()
                    self.url = f"http://127.0.0.1:{self.port}"
                    self._process = None
                    self.start(wait=False)
                    continue
                raise PrometheusError(f"prometheus exited ({last}); log tail:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        targets = self._get("/api/v1/targets")["data"]["activeTargets"]
                        health = [target.get("health") for target in targets]
                        if health and all(h == "up" for h in health):
                            self._may_move = 0
                            return
                        last = f"targets {health}"
            except (OSError, urllib.error.URLError, KeyError, ValueError) as error:
                last = str(error)
            time.sleep(0.1)  # poll interval of a condition wait with a deadline
        raise PrometheusError(
            f"prometheus not ready within {timeout} s ({last}); log tail:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL; idempotent. Data stays for the next :meth:`start`."""
        with self._lock:
            process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_S)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
            decoded: dict[str, Any] = json.loads(response.read())
            return decoded

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; returns ``data.result`` (a list of ``{metric, value}``)."""
        try:
            answer = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        except urllib.error.HTTPError as error:
            raise PrometheusError(f"query {promql!r}: HTTP {error.code}: {error.read().decode()}") from error
        if answer.get("status") != "success":
            raise PrometheusError(f"query {promql!r}: {answer}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def query_value(self, promql: str) -> float | None:
        """The last sample's value, as Flagger reads it (None for no result or NaN)."""
        result = self.query(promql)
        if not result:
            return None
        value = float(result[-1]["value"][1])
        return None if math.isnan(value) else value

"""A real Kubernetes API server on loopback: etcd plus kube-apiserver, with TLS, token auth and RBAC.

Owns: the two processes (their flags, ports, certificates, logs and teardown), the admin kubeconfig, and the
few calls that stand in for the controller-manager that is not running (a namespace's ``default``
ServiceAccount) plus TokenRequest, so that tests can act as a ServiceAccount the way a pipeline step does.

Security set-up, all generated per start in the work directory with the ``openssl`` CLI:
- a throw-away CA and a serving certificate for 127.0.0.1/localhost (clients verify with
  :attr:`ApiServer.ca_file`);
- static token authentication: an admin token in group ``system:masters``;
- ``--authorization-mode=RBAC``;
- a service-account key pair and issuer, so that the TokenRequest API issues tokens that the server accepts.

Opt-in (``start_apiserver(audit=True)``, off by default, so the tests pay nothing): kube-apiserver's audit
log, JSON lines in the work directory, with the policy :data:`AUDIT_POLICY` written there; benchmarks count
each client's requests from it by user (``make bench-flagger``).

Teardown: both processes run in their own session (process group). :meth:`ApiServer.stop` terminates the
groups, waits, then kills; it runs from the context manager, from ``atexit`` and on SIGTERM/SIGHUP (turned
into SystemExit, so that ``finally`` blocks and fixtures run). The children also get ``PR_SET_PDEATHSIG``
(through util-linux ``setpriv``, else a preexec_fn), so that they die with the Python process even if it is
SIGKILLed. Call :func:`start_apiserver` from a thread that lives as long as the server (the main thread):
the kernel sends the death signal when that thread exits.

``python -m tests.cluster.apiserver [--runs N]`` times start-up, the CRD install and teardown.

Must not: know about Knative or Flagger (CRDs live in ``tests.cluster.crds``; only the timing CLI installs
them), mock anything, or leave a process behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import yaml

from tests.cluster.binaries import Binaries, ensure

STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
LOG_TAIL_LINES = 40

_PR_SET_PDEATHSIG = 1


class ApiServerError(RuntimeError):
    """The control plane did not start, or a call to it failed; the message carries the evidence."""


class ApiError(ApiServerError):
    """The API server answered a request with an error status."""

    def __init__(self, status: int, body: dict[str, Any], what: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{what}: HTTP {status}: {body.get('message', body)}")


class _PortTakenError(ApiServerError):
    """A port chosen as free was taken by someone else before our process bound it; worth a retry."""


PORT_ATTEMPTS = 3


def _free_ports(count: int) -> list[int]:
    # Hold all sockets open until every port is chosen, so that the same port is not handed out twice.
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ApiServerError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def _make_pki(pki: Path) -> None:
    """A CA, a serving certificate signed by it, and the service-account key pair (all ECDSA P-256)."""
    pki.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=canary-step test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=pki,
    )  # fmt: skip
    _openssl(
        "req", "-x509", *ec, "-keyout", "apiserver.key", "-out", "apiserver.crt", "-days", "2",
        "-CA", "ca.crt", "-CAkey", "ca.key",
        "-subj", "/CN=kube-apiserver",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc",
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "keyUsage=critical,digitalSignature",
        "-addext", "extendedKeyUsage=serverAuth",
        cwd=pki,
    )  # fmt: skip
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key", cwd=pki)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in ("ca.key", "apiserver.key", "sa.key"):
        (pki / key).chmod(0o600)


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn that asks the kernel to SIGKILL the child when its parent thread exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _spawn(command: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    # util-linux's setpriv (essential on Debian) sets the death signal and execs, so the pid is the
    # server's; it avoids a preexec_fn, which can deadlock when the parent already runs other threads.
    setpriv = shutil.which("setpriv")
    with log_file.open("wb") as log:  # a retry after a port clash starts a fresh log
        if setpriv is not None:
            return subprocess.Popen(
                [setpriv, "--pdeathsig", "KILL", "--", *command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),  # noqa: PLW1509 - only prctl; the fallback without setpriv
        )


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process's group (a crash, not a shutdown) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=STOP_GRACE_S)


def _respawn(command: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    """Spawn a restarted process; the log of its previous life moves to ``<log>.previous``."""
    with contextlib.suppress(OSError):
        log_file.replace(log_file.with_name(log_file.name + ".previous"))
    return _spawn(command, log_file)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(process: subprocess.Popen[bytes], grace_s: float) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_s)
    # The group may hold helpers the leader started; none should outlive it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


_live: set[ApiServer] = set()
_live_lock = threading.Lock()
_handlers_installed = False


def _stop_all() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        server.stop()


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds the main thread, so context managers, fixtures and atexit all run.
    raise SystemExit(128 + signum)


def _install_cleanup() -> None:
    global _handlers_installed  # noqa: PLW0603 - one-time process-wide set-up
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            # Only take over signals nobody else handles (pytest and the CLI leave these at default).
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, _exit_on_signal)


class ApiServer:
    """A running etcd + kube-apiserver pair from :func:`start_apiserver`; ``stop()`` or ``with`` ends it."""

    def __init__(
        self,
        *,
        workdir: Path,
        url: str,
        ca_file: Path,
        admin_token: str,
        kubeconfig: Path,
        etcd: subprocess.Popen[bytes],
        kube_apiserver: subprocess.Popen[bytes],
        etcd_command: list[str],
        apiserver_command: list[str],
        etcd_port: int,
    ) -> None:
        self.workdir = workdir
        self.url = url
        self.ca_file = ca_file
        self.admin_token = admin_token
        self.kubeconfig = kubeconfig
        self._etcd = etcd
        self._kube_apiserver = kube_apiserver
        self._etcd_command = etcd_command
        self._apiserver_command = apiserver_command
        self._etcd_port = etcd_port
        self._ssl = ssl.create_default_context(cafile=str(ca_file))
        self._stopped = False
        self._stop_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def pids(self) -> tuple[int, int]:
        """(etcd, kube-apiserver) process ids; each is also its process group id."""
        return (self._etcd.pid, self._kube_apiserver.pid)

    @property
    def audit_log(self) -> Path | None:
        """The audit log (JSON lines) when started with ``audit=True``, else None."""
        path = self.workdir / AUDIT_LOG
        return path if any(a.startswith("--audit-log-path=") for a in self._apiserver_command) else None

    @property
    def logs(self) -> tuple[Path, Path]:
        return (self.workdir / "etcd.log", self.workdir / "kube-apiserver.log")

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd; idempotent, safe from atexit and signal handlers."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            _stop_process(self._kube_apiserver, STOP_GRACE_S)
        finally:
            _stop_process(self._etcd, STOP_GRACE_S)
            with _live_lock:
                _live.discard(self)

    def restart_apiserver(self) -> float:
        """SIGKILL kube-apiserver and start it again: the same etcd, port, certificates and flags.

        Returns the seconds until /readyz answered again. Raises :class:`ApiServerError` (with the log's
        tail) if it does not come back within ``STARTUP_TIMEOUT_S``: a test must not go on with a dead
        control plane that other tests share.
        """
        started = time.monotonic()
        _kill(self._kube_apiserver)
        self._kube_apiserver = _respawn(self._apiserver_command, self.logs[1])
        self.wait_ready(started)
        return time.monotonic() - started

    def restart_etcd(self) -> float:
        """SIGKILL etcd and start it again on the same data directory and ports; kube-apiserver stays up.

        Returns the seconds until etcd is healthy and kube-apiserver's /readyz answers again; raises
        :class:`ApiServerError` if either does not within ``STARTUP_TIMEOUT_S``.
        """
        started = time.monotonic()
        _kill(self._etcd)
        self._etcd = _respawn(self._etcd_command, self.logs[0])
        self.wait_ready(started)
        return time.monotonic() - started

    def wait_ready(self, started: float | None = None) -> None:
        """Wait until etcd is healthy and kube-apiserver's /readyz says 200 (both processes alive)."""
        deadline = (time.monotonic() if started is None else started) + STARTUP_TIMEOUT_S
        port = urllib.parse.urlsplit(self.url).port or 443
        _wait(
            lambda: _etcd_healthy(self._etcd_port) and _apiserver_ready(port, self._ssl, self.admin_token),
            deadline=deadline,
            processes={"etcd": self._etcd, "kube-apiserver": self._kube_apiserver},
            what="the restarted control plane",
            logs=(self.logs[1], self.logs[0]),
        )

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_tails(self) -> str:
        return "\n".join(f"--- last lines of {log} ---\n{_tail(log)}" for log in self.logs)

    # -- raw API access --------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: object | None = None,
        token: str | None = None,
        content_type: str = "application/json",
        timeout_s: float = 10.0,
    ) -> tuple[int, dict[str, Any]]:
        """One HTTPS call as the admin (or as ``token``); returns (status, decoded JSON body)."""
        parsed = urllib.parse.urlsplit(self.url)
        connection = http.client.HTTPSConnection(
            parsed.hostname or "127.0.0.1", parsed.port, context=self._ssl, timeout=timeout_s
        )
        headers = {"Authorization": f"Bearer {token or self.admin_token}", "Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except OSError as error:
            raise ApiServerError(f"{method} {self.url}{path} failed: {error}") from error
        finally:
            connection.close()
        try:
            decoded = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            decoded = {"message": raw.decode(errors="replace")}
        return response.status, decoded if isinstance(decoded, dict) else {"items": decoded}

    def _call(
        self, method: str, path: str, *, body: object | None = None, ok: tuple[int, ...]
    ) -> dict[str, Any]:
        status, decoded = self.request(method, path, body=body)
        if status not in ok:
            raise ApiError(status, decoded, f"{method} {path}")
        return decoded

    # -- what the missing controller-manager would do, and TokenRequest ------------------------------------

    def create_namespace(self, name: str) -> None:
        """Create a namespace with its ``default`` ServiceAccount (no controller-manager runs to add it)."""
        self._call("POST", "/api/v1/namespaces", body={"metadata": {"name": name}}, ok=(201,))
        self.create_service_account(name, "default")

    def create_service_account(self, namespace: str, name: str) -> None:
        """Create a ServiceAccount; an existing one is fine."""
        self._call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            body={"metadata": {"name": name}},
            ok=(201, 409),
        )

    def token_for(self, namespace: str, service_account: str, expiration_seconds: int = 3600) -> str:
        """A bound token for the ServiceAccount from the TokenRequest API (the server's minimum is 600 s)."""
        answer = self._call(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
            ok=(200, 201),
        )
        token = answer.get("status", {}).get("token")
        if not isinstance(token, str) or not token:
            raise ApiServerError(
                f"TokenRequest for {namespace}/{service_account} returned no token: {answer}"
            )
        return token

    def kubeconfig_for_token(self, token: str, path: Path) -> Path:
        """Write a kubeconfig (context ``local``) that authenticates with ``token``; returns ``path``."""
        return _write_kubeconfig(path, url=self.url, ca_file=self.ca_file, token=token, user="token")


def _write_kubeconfig(path: Path, *, url: str, ca_file: Path, token: str, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": url, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def _wait(
    ready: Callable[[], bool],
    *,
    deadline: float,
    processes: dict[str, subprocess.Popen[bytes]],
    what: str,
    logs: tuple[Path, ...],
) -> None:
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                tails = "\n".join(f"--- last lines of {log} ---\n{_tail(log)}" for log in logs)
                error = _PortTakenError if "address already in use" in tails else ApiServerError
                raise error(f"{what}: {name} exited with code {process.returncode}\n{tails}")
        if ready():
            return
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- last lines of {log} ---\n{_tail(log)}" for log in logs)
            raise ApiServerError(f"{what}: not ready within {STARTUP_TIMEOUT_S:.0f} s\n{tails}")
        # A short poll interval: each probe is one loopback request, and readiness takes seconds.
        time.sleep(0.1)


def _etcd_healthy(client_port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", client_port, timeout=2)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status == 200 and b'"true"' in response.read()
    except OSError:
        return False
    finally:
        connection.close()


def _apiserver_ready(port: int, context: ssl.SSLContext, token: str) -> bool:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
    try:
        connection.request("GET", "/readyz", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()


# What ``audit=True`` logs: every request at Metadata level (who, verb, resource, name, when), and the
# request body of Event writes too, so that a benchmark can tell which tick of a controller wrote what.
AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Request",
            "verbs": ["create", "patch", "update"],
            "resources": [
                {"group": "", "resources": ["events"]},
                {"group": "events.k8s.io", "resources": ["events"]},
            ],
        },
        {"level": "Metadata"},
    ],
}
AUDIT_LOG = "audit.log"


def _audit_args(workdir: Path) -> tuple[str, ...]:
    """kube-apiserver flags for the opt-in audit log: the policy file written here, the log in ``workdir``."""
    policy = workdir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))
    return (
        f"--audit-policy-file={policy}",
        f"--audit-log-path={workdir / AUDIT_LOG}",
        "--audit-log-format=json",
        # Written as requests complete, so a reader sees a request's line once the client has its answer.
        "--audit-log-mode=blocking",
        "--audit-log-maxsize=0",
    )


def start_apiserver(
    workdir: Path,
    *,
    binaries: Binaries | None = None,
    extra_args: tuple[str, ...] = (),
    audit: bool = False,
) -> ApiServer:
    """Start etcd and kube-apiserver on free loopback ports, wait for /readyz, return the handle.

    Everything (certificates, etcd data, logs, the admin kubeconfig) goes under ``workdir``. On failure the
    processes are stopped and the error carries the tail of both logs. ``audit=True`` (opt-in, for
    benchmarks) writes kube-apiserver's audit log to :attr:`ApiServer.audit_log` (``AUDIT_POLICY``).
    """
    found = binaries or ensure()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if audit:
        extra_args = (*extra_args, *_audit_args(workdir))
    pki = workdir / "pki"
    _make_pki(pki)
    admin_token = secrets.token_hex(24)
    token_file = pki / "tokens.csv"
    token_file.write_text(f'{admin_token},canary-step-admin,canary-step-admin,"system:masters"\n')
    token_file.chmod(0o600)
    _install_cleanup()
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            server = _start_processes(
                workdir, found=found, admin_token=admin_token, token_file=token_file, extra_args=extra_args
            )
        except _PortTakenError:
            if attempt == PORT_ATTEMPTS:
                raise
            shutil.rmtree(workdir / "etcd-data", ignore_errors=True)
        else:
            with _live_lock:
                _live.add(server)
            return server
    raise AssertionError("unreachable")


def _start_processes(
    workdir: Path, *, found: Binaries, admin_token: str, token_file: Path, extra_args: tuple[str, ...] = ()
) -> ApiServer:
    pki = workdir / "pki"
    etcd_client, etcd_peer, secure_port = _free_ports(3)
    etcd_log, apiserver_log = workdir / "etcd.log", workdir / "kube-apiserver.log"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    etcd_command = [
            str(found.etcd),
            "--name=default",
            f"--data-dir={workdir / 'etcd-data'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
            # Test data is thrown away; fsync only costs time.
            "--unsafe-no-fsync",
            "--log-level=warn",
    ]  # fmt: skip
    etcd = _spawn(etcd_command, etcd_log)
    kube_apiserver: subprocess.Popen[bytes] | None = None
    try:
        _wait(
            lambda: _etcd_healthy(etcd_client),
            deadline=deadline,
            processes={"etcd": etcd},
            what="etcd",
            logs=(etcd_log,),
        )
        apiserver_command = [
                str(found.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={secure_port}",
                f"--cert-dir={workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--token-auth-file={token_file}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
                "--service-cluster-ip-range=10.0.0.0/24",
                # No kubelet, no nodes, no Endpoints consumers: skip the work.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=0",
                *extra_args,  # the real-Knative backend's (tests.cluster.knative_real)
        ]  # fmt: skip
        kube_apiserver = _spawn(apiserver_command, apiserver_log)
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        _wait(
            lambda: _apiserver_ready(secure_port, context, admin_token),
            deadline=deadline,
            processes={"etcd": etcd, "kube-apiserver": kube_apiserver},
            what="kube-apiserver",
            logs=(apiserver_log, etcd_log),
        )
    except BaseException:
        if kube_apiserver is not None:
            _stop_process(kube_apiserver, STOP_GRACE_S)
        _stop_process(etcd, STOP_GRACE_S)
        raise
    url = f"https://127.0.0.1:{secure_port}"
    kubeconfig = _write_kubeconfig(
        workdir / "admin.kubeconfig", url=url, ca_file=pki / "ca.crt", token=admin_token, user="admin"
    )
    return ApiServer(
        workdir=workdir,
        url=url,
        ca_file=pki / "ca.crt",
        admin_token=admin_token,
        kubeconfig=kubeconfig,
        etcd=etcd,
        kube_apiserver=kube_apiserver,
        etcd_command=etcd_command,
        apiserver_command=apiserver_command,
        etcd_port=etcd_client,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.cluster.apiserver [--runs N]``: time start-up, the CRD install and teardown."""
    import argparse  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from tests.cluster.binaries import BinaryError  # noqa: PLC0415
    from tests.cluster.crds import install_crds  # noqa: PLC0415 - only the timing CLI installs CRDs

    parser = argparse.ArgumentParser(prog="python -m tests.cluster.apiserver", description=main.__doc__)
    parser.add_argument("--runs", type=int, default=3, help="how many start/stop cycles to time (default 3)")
    args = parser.parse_args(argv)
    try:
        found = ensure()
        for run in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory(prefix="canary-step-apiserver-") as workdir:
                started = time.monotonic()
                server = start_apiserver(Path(workdir), binaries=found)
                ready = time.monotonic()
                install_crds(server)
                installed = time.monotonic()
                server.stop()
                stopped = time.monotonic()
            print(
                f"run {run}: ready {ready - started:.2f} s, CRDs established {installed - ready:.2f} s, "
                f"stopped {stopped - installed:.2f} s"
            )
    except (BinaryError, ApiServerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

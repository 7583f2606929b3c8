"""The container image, built here: the local Python base, the wheelhouse, and `podman build`.

Owns: making the local base (a Debian bookworm rootfs from `mmdebstrap --variant=minbase`, imported as
an image), the wheelhouse the build installs from, building the Dockerfile on either base, the podman
flags this machine needs, and printing the image's size and layers (`make image`).
Must not: change a line of the Dockerfile for the local build (only the build argument BASE differs),
or reach any network but loopback (the build runs with `--network none`).

Why a local base: no registry image can be pulled here. The Dockerfile assumes of its base what the
official python:3.11-slim image gives: `python` and `pip` on PATH, pip allowed to install as root into
the system Python, `canary-step` landing on PATH, a writable /tmp. The local base gives the same from
Debian packages (python3, python3-pip, python3-venv, python-is-python3; the PEP 668 marker removed;
no .pyc files, as in the official image).
PyPI cannot be reached from inside a build here, so the base sets PIP_NO_INDEX and PIP_FIND_LINKS to a
directory that the build mounts read-only (`podman build -v`): the wheelhouse, downloaded on the host
with the host's pip (binary wheels only). Both are cached under $CANARY_STEP_CACHE, keyed by what they
are made from.

Quirks of this machine (see issue 13): crun refuses the hybrid cgroup layout, so `--runtime runc`;
root lacks CAP_SYS_RESOURCE, so ulimits are set explicitly, no higher than the current ones.

    python -m tests.ship.image            # build canary-step:local on the local base, print sizes
    python -m tests.ship.image --base default   # on the pinned python:…-slim base (needs a registry)
    python -m tests.ship.image base       # only the local base
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.binaries import BinaryError, cache_dir, locked

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "python-is-python3", "ca-certificates")
WHEELHOUSE_IN_BUILD = "/opt/wheelhouse"
LOCAL_BASE = "localhost/canary-step-base"
IMAGE = "localhost/canary-step"
# The build tools the Dockerfile's first stage installs (`build`) and the wheel's build backend.
BUILD_REQUIREMENTS = ("build>=1.2",)
RUNTIME = ("--runtime", "runc")
# The goal (issue 13): under 200 MB uncompressed on the default base. That base cannot be pulled here;
# python:3.11.16-slim-bookworm is "~ 130.01 Mb" on disk (docker-library/repo-info,
# repos/python/local/3.11-slim-bookworm.md), so what the Dockerfile adds to its base must stay under
# the difference. The local base is larger (Debian's python3), but what is added on top is the same.
SIZE_GOAL = 200_000_000
DEFAULT_BASE_SIZE = 130_010_000
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def _log(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def podman() -> str:
    found = shutil.which("podman")
    if not found:
        raise BinaryError("podman is not installed (make image installs it: apt-get install podman runc)")
    return found


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload, no-any-return]


def _checked(cmd: list[str], what: str, **kw: object) -> subprocess.CompletedProcess[str]:
    done = _run(cmd, **kw)
    if done.returncode != 0:
        raise BinaryError(
            f"{what} failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done


def _image_exists(ref: str) -> bool:
    return _run([podman(), "image", "exists", ref]).returncode == 0


# --- the local base ---------------------------------------------------------------------------------


def base_key() -> str:
    recipe = json.dumps(
        {"suite": SUITE, "packages": BASE_PACKAGES, "wheelhouse": WHEELHOUSE_IN_BUILD, "v": 2}
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def local_base() -> str:
    """The local base image (built once; the rootfs tarball is cached under $CANARY_STEP_CACHE/image)."""
    ref = f"{LOCAL_BASE}:{base_key()}"
    if _image_exists(ref):
        return ref
    with locked(cache_dir() / "image" / ".base.lock"):
        if not _image_exists(ref):
            _make_local_base(ref)
    return ref


def _make_local_base(ref: str) -> None:
    cache = cache_dir() / "image"
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"base-{SUITE}-{base_key()}.tar"
    if not tarball.exists():
        mmdebstrap = shutil.which("mmdebstrap")
        if not mmdebstrap:
            raise BinaryError("mmdebstrap is not installed (make image installs it)")
        _log(f"building the local base with mmdebstrap ({', '.join(BASE_PACKAGES)}); once, then cached")
        started = time.monotonic()
        partial = tarball.with_suffix(".partial.tar")
        _checked(
            [
                mmdebstrap,
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                '--customize-hook=rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
                # As the python slim images do (they delete every .pyc under /usr/local): the image's
                # start then shows what the Dockerfile leaves to compile at run time on that base.
                '--customize-hook=find "$1"/usr/lib/python3* -name __pycache__ -prune -exec rm -rf {} +',
                '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
                SUITE,
                str(partial),
            ],
            "mmdebstrap",
            timeout=1800,
        )
        partial.rename(tarball)
        _log(f"local base rootfs built in {time.monotonic() - started:.0f} s: {tarball}")
    _checked(
        [
            podman(),
            "import",
            "--change",
            "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV PIP_NO_INDEX=1",
            "--change",
            f"ENV PIP_FIND_LINKS={WHEELHOUSE_IN_BUILD}",
            "--change",
            'CMD ["python3"]',
            str(tarball),
            ref,
        ],
        "podman import",
        timeout=600,
    )


# --- the wheelhouse -------------------------------------------------------------------------------


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [
        *project["build-system"]["requires"],
        *BUILD_REQUIREMENTS,
        *project["project"]["dependencies"],
    ]


def wheelhouse() -> Path:
    """Binary wheels for everything the Dockerfile's pip commands install, downloaded once with the
    host's pip and cached by requirement. The host runs CPython 3.11 on Debian bookworm, as the local
    base does, so its wheel tags fit the base."""
    requirements = _requirements()
    key = hashlib.sha256(json.dumps(requirements).encode()).hexdigest()[:12]
    target = cache_dir() / "image" / f"wheelhouse-{key}"
    if target.is_dir():
        return target
    with locked(cache_dir() / "image" / ".wheelhouse.lock"):
        if not target.is_dir():
            _download_wheels(requirements, target)
    return target


def _download_wheels(requirements: list[str], target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _log(f"downloading wheels for the image build: {', '.join(requirements)}")
    _checked(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            "-d",
            str(partial),
            *requirements,
        ],
        "pip download",
        timeout=900,
    )
    partial.rename(target)


# --- the image -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    ref: str
    base: str
    seconds: float


def build(*, base: str = "local", tag: str = "local") -> Built:
    """`podman build` of the Dockerfile as it is; `base` is "local" or "default" (the pinned one)."""
    ref = f"{IMAGE}:{tag}"
    cmd = [
        podman(),
        "build",
        *RUNTIME,
        *ULIMITS,
        "--network",
        "none",
        "--layers",
        "-t",
        ref,
        "-f",
        "Dockerfile",
    ]
    if base == "local":
        base_ref = local_base()
        cmd += [
            "--build-arg",
            f"BASE={base_ref}",
            "--pull=never",
            "-v",
            f"{wheelhouse()}:{WHEELHOUSE_IN_BUILD}:ro",
        ]
    elif base == "default":
        base_ref = "the Dockerfile's default"
        cmd[cmd.index("none")] = "host"
    else:
        raise BinaryError(f"unknown base {base!r}: local or default")
    started = time.monotonic()
    with locked(cache_dir() / "image" / ".build.lock"):  # two sessions building at once would race
        _checked([*cmd, "."], "podman build", cwd=ROOT, timeout=1800)
    return Built(ref=ref, base=base_ref, seconds=time.monotonic() - started)


def sizes(ref: str) -> tuple[int, list[tuple[int, str]]]:
    """The image's uncompressed size and (size, created by) per layer, oldest first."""
    inspected = json.loads(_checked([podman(), "image", "inspect", ref], "podman image inspect").stdout)[0]
    history = json.loads(
        _checked([podman(), "history", "--format", "json", "--no-trunc", ref], "podman history").stdout
    )
    layers = [
        (int(h.get("size", 0)), str(h.get("CreatedBy") or h.get("createdBy") or ""))
        for h in reversed(history)
    ]
    return int(inspected["Size"]), layers


def added_to_base(ref: str, base_ref: str) -> int:
    """Bytes the Dockerfile's final stage adds on top of its base (uncompressed)."""
    return sizes(ref)[0] - sizes(base_ref)[0]


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.ship.image", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", choices=["image", "base"], default="image")
    parser.add_argument("--base", choices=["local", "default"], default=os.environ.get("IMAGE_BASE", "local"))
    parser.add_argument("--tag", default="local")
    args = parser.parse_args(argv)
    try:
        if args.what == "base":
            started = time.monotonic()
            print(local_base(), f"({time.monotonic() - started:.1f} s)")
            return 0
        built = build(base=args.base, tag=args.tag)
        total, layers = sizes(built.ref)
    except BinaryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{built.ref} on {built.base}: {_mb(total)} uncompressed (built in {built.seconds:.0f} s)")
    for size, created in layers:
        print(f"  {_mb(size):>10}  {' '.join(created.split())[:110]}")
    if args.base == "local":
        added = added_to_base(built.ref, built.base)
        estimate = DEFAULT_BASE_SIZE + added
        verdict = "met" if estimate < SIZE_GOAL else "MISSED"
        print(
            f"added to the base: {_mb(added)}; on the default base ({_mb(DEFAULT_BASE_SIZE)}, not pullable "
            f"here) about {_mb(estimate)}: goal under {_mb(SIZE_GOAL)} {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

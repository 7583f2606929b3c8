"""The package as it ships: the wheel, installed into a clean virtualenv, and the Dockerfile that
installs the same wheel into the image.

No Docker engine runs here, so the image is covered in two parts: the wheel is built (`python -m build
--wheel`, as `make wheel` and the Dockerfile's first stage do), installed into a fresh virtualenv with
its dependencies from PyPI, and run from there, also as an unprivileged UID with HOME=/tmp as in the
image; and the Dockerfile is checked for what the image must be (pinned base, exec-form ENTRYPOINT, no
USER, OCI labels, no pip cache, no compiler).

The installed size is measured and printed (`pytest -s tests/ship/test_wheel.py -k size`); docs/pipelines.md
quotes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest

import step

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
RUNTIME_DEPENDENCIES = {"click", "kubernetes", "requests", "tenacity", "jsonschema", "pyyaml"}
UNPRIVILEGED_UID = 65532


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    site_packages: Path
    baseline_bytes: int  # site-packages of the empty virtualenv (made without pip)
    wheels: Path  # the wheelhouse of the Dockerfile's `pip wheel`
    wheel_args: list[str]  # its arguments, as the Dockerfile has them (paths made local)
    install_args: list[str]  # the final stage's `pip install` arguments (paths made local)

    @property
    def exe(self) -> Path:
        return self.venv / "bin" / "canary-step"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _run(cmd: list[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload, no-any-return]


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    """The wheel built here, installed into a fresh virtualenv by the Dockerfile's own two pip commands:
    stage 1's `pip wheel` (binary wheels only) and the final stage's index-less `pip install`."""
    # Not under pytest's 0700 basetemp: the unprivileged UID must be able to reach the virtualenv.
    work = Path(tempfile.mkdtemp(prefix="canary-step-wheel-"))
    work.chmod(0o755)
    try:
        dist = work / "dist"
        build = _run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT], timeout=600)
        assert build.returncode == 0, build.stdout + build.stderr
        (wheel,) = dist.glob("canary_step-*.whl")
        wheels = work / "wheels"
        wheel_args = [
            a.replace("/wheels", str(wheels)) for a in _pip_args("wheel", 0) if not a.startswith("/dist/")
        ]
        built = _run([sys.executable, "-m", "pip", "wheel", *wheel_args, wheel], timeout=600)
        assert built.returncode == 0, built.stdout + built.stderr
        venv = work / "venv"
        # Without a pip of its own (ensurepip took 7 s): this environment's pip installs into it
        # (`pip --python`), with the final stage's arguments.
        made = _run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=300)
        assert made.returncode == 0, made.stderr
        (site_packages,) = (venv / "lib").glob("python3*/site-packages")
        baseline = _tree_bytes(site_packages)
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        env.pop("PYTHONPATH", None)
        env.pop("PIP_FIND_LINKS", None)  # only the wheelhouse, as in the image
        local = {"/wheels": str(wheels), "/tmp/dist": str(dist)}  # the Dockerfile's paths, made local
        install_args = []
        for arg in _pip_args("install", -1):
            made_local = arg
            for image_path, here in local.items():
                made_local = made_local.replace(image_path, here)
            install_args.append(made_local)
        into = ["--python", venv / "bin" / "python"]
        pip = _run(
            [sys.executable, "-m", "pip", *into, "install", "-q", *install_args],
            env=env,
            timeout=600,
        )
        assert pip.returncode == 0, pip.stdout + pip.stderr
        for p in [work, *work.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        yield Installed(
            wheel=wheel,
            venv=venv,
            site_packages=site_packages,
            baseline_bytes=baseline,
            wheels=wheels,
            wheel_args=wheel_args,
            install_args=install_args,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of the image: no PYTHONPATH leaking this checkout, HOME on /tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CANARY_STEP_"))}
    return {**env, "HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", **extra}


def test_wheel_holds_the_package_data_and_nothing_else(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        metadata = Parser().parsestr(
            whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        )
    schemas = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "step" / "spec").glob("*.json"))
    assert schemas, "step/spec holds no JSON schema"
    assert set(schemas) <= names, f"package data missing from the wheel: {set(schemas) - names}"
    assert "step/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "examples/", "tekton/", "argo/"))]
    assert metadata["Version"] == step.__version__
    requires = {
        re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower()
        for r in metadata.get_all("Requires-Dist") or []
        if "extra ==" not in r
    }
    assert requires == RUNTIME_DEPENDENCIES
    assert "canary-step = step.cli:main" in _entry_points(installed)


def _entry_points(installed: Installed) -> str:
    (dist_info,) = installed.site_packages.glob("canary_step-*.dist-info")
    return (dist_info / "entry_points.txt").read_text()


def test_installed_console_script_reports_version_and_help(installed: Installed) -> None:
    version = _run([installed.exe, "--version"], env=_clean_env(), cwd="/")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip().endswith(step.__version__)
    assert "canary-step" in version.stdout
    helped = _run([installed.exe, "--help"], env=_clean_env(), cwd="/")
    assert helped.returncode == 0, helped.stderr
    for command in ("run", "validate", "plan"):
        assert re.search(rf"^\s+{command}\b", helped.stdout, re.MULTILINE), helped.stdout
    # The installed copy is what runs, not this checkout.
    where = _run(
        [installed.python, "-c", "import step, json; print(json.dumps(step.__file__))"],
        env=_clean_env(),
        cwd="/",
    )
    assert Path(json.loads(where.stdout)).is_relative_to(installed.site_packages)


def test_installed_schema_is_loadable_as_package_data(installed: Installed) -> None:
    code = (
        "import importlib.resources as r, json\n"
        "files = [f for f in r.files('step.spec').iterdir() if f.name.endswith('.json')]\n"
        "assert files, 'no schema in the installed package'\n"
        "print(json.dumps(sorted(f.name for f in files)))\n"
        "for f in files: json.loads(f.read_text())\n"
    )
    out = _run([installed.python, "-c", code], env=_clean_env(), cwd="/")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == sorted(p.name for p in (ROOT / "step" / "spec").glob("*.json"))


def test_runs_as_an_unprivileged_uid_with_home_on_tmp(installed: Installed, tmp_path: Path) -> None:
    """As in the image under Tekton/Argo: UID 65532, files owned by root, HOME=/tmp."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another UID")
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run as another UID"
    cmd = [setpriv, f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}", "--clear-groups"]
    before = {p: p.stat().st_mtime_ns for p in installed.site_packages.rglob("*")}
    out = _run([*cmd, installed.exe, "--version"], env=_clean_env(), cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(step.__version__)
    helped = _run([*cmd, installed.exe, "validate", "--help"], env=_clean_env(), cwd="/")
    assert helped.returncode == 0, helped.stderr
    after = {p: p.stat().st_mtime_ns for p in installed.site_packages.rglob("*")}
    assert after == before, "running canary-step wrote into the installation"


def test_installed_size(installed: Installed) -> None:
    total = _tree_bytes(installed.site_packages) - installed.baseline_bytes
    (dist_info,) = installed.site_packages.glob("canary_step-*.dist-info")
    own = 0
    for line in (dist_info / "RECORD").read_text().splitlines():
        size = line.rsplit(",", 1)[-1]  # RECORD rows are path,hash,size (size empty for RECORD itself)
        if size:
            own += int(size)
    print(
        f"\ninstalled size: canary-step {own / 1024:.0f} KiB; with its dependencies "
        f"{total / 1024 / 1024:.1f} MiB (site-packages of a fresh venv without pip); "
        f"wheel {installed.wheel.stat().st_size / 1024:.0f} KiB"
    )
    assert own > 0
    # A guard against a heavy dependency creeping in. Measured 2026-11: about 160 MiB, of which the
    # kubernetes client is 126 MiB (68 MiB of it its asyncio copy, kubernetes/aio, which we never import).
    assert total < 250 * 1024 * 1024


# --- the Dockerfile -----------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    out = []
    for line in logical:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _pip_args(subcommand: str, stage: int) -> list[str]:
    """The arguments of `python -m pip <subcommand> ...` in one stage of the Dockerfile (-1: the last)."""
    found = []
    for word, args in _stages()[stage]:
        if word != "RUN":
            continue
        for command in args.split("&&"):
            words = command.split()
            if "python" in words and words[words.index("python") :][:4] == [
                "python",
                "-m",
                "pip",
                subcommand,
            ]:
                found.append(words[words.index("python") + 4 :])
    assert len(found) == 1, f"expected one `pip {subcommand}` in stage {stage}: {found}"
    return found[0]


def test_the_dockerfiles_two_pip_commands_work_here(installed: Installed) -> None:
    """Stage 1's `pip wheel` and the final stage's index-less `pip install` (the `installed` fixture runs
    them with the Dockerfile's own flags) on this machine's platform: every dependency comes as a binary
    wheel, nothing is compiled, and the installed command runs."""
    assert "--only-binary=:all:" in installed.wheel_args
    assert all(p.suffix == ".whl" for p in installed.wheels.iterdir())
    assert any(p.name.startswith("kubernetes-") for p in installed.wheels.iterdir())
    assert "--no-index" in installed.install_args and installed.install_args[-1] == "canary-step"
    version = _run([installed.exe, "--version"], env=_clean_env(), cwd="/")
    assert version.returncode == 0 and version.stdout.strip().endswith(step.__version__), version.stderr


def _global_args() -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults (what FROM lines may use)."""
    found: dict[str, str] = {}
    for word, args in _instructions():
        if word == "FROM":
            break
        if word == "ARG":
            name, _, default = args.partition("=")
            found[name] = default
    return found


def test_dockerfile_base_is_pinned_by_tag_and_digest() -> None:
    """The base is the build argument BASE; its default (what users and the release build) is pinned."""
    froms = [args for word, args in _instructions() if word == "FROM"]
    assert len(froms) == 2, "a build stage and a final stage"
    images = {f.split()[0] for f in froms}
    assert images == {"${BASE}"}, "both stages on the same base, the build argument"
    image = _global_args()["BASE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?@sha256:[0-9a-f]{64}", image), image
    assert "latest" not in DOCKERFILE.read_text()
    # A `# syntax=` directive pulls a frontend image: it would have to be pinned too.
    for line in DOCKERFILE.read_text().splitlines():
        if re.match(r"#\s*syntax\s*=", line):
            assert "@sha256:" in line, line


def test_dockerfile_entrypoint_user_and_labels() -> None:
    instructions = _instructions()
    words = [w for w, _ in instructions]
    assert "USER" not in words, "GitHub Docker actions must run as root: leave USER unset"
    assert "WORKDIR" not in [w for w, _ in _stages()[-1]], "GitHub sets the working directory"
    (entrypoint,) = [a for w, a in instructions if w == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["canary-step"], "exec-form ENTRYPOINT"
    final = _stages()[-1]
    labels = " ".join(a for w, a in final if w == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    (version_arg,) = [a for w, a in final if w == "ARG" and a.startswith("VERSION=")]
    assert version_arg == f"VERSION={step.__version__}"
    env = " ".join(a for w, a in final if w == "ENV")
    for setting in ("HOME=/tmp", "TMPDIR=/tmp", "PYTHONDONTWRITEBYTECODE=1", "PIP_NO_CACHE_DIR=1"):
        assert setting in env, setting


def test_dockerfile_installs_the_wheel_without_cache_or_compiler() -> None:
    build, final = _stages()
    build_runs = " ".join(a for w, a in build if w == "RUN")
    assert "python -m build --wheel" in build_runs
    final_runs = " ".join(a for w, a in final if w == "RUN")
    assert "--no-cache-dir" in final_runs and "--no-index" in final_runs
    assert "from=build" in final_runs, "the final stage installs the wheels built in stage 1"
    for forbidden in ("apt-get", "apk ", "gcc", "build-essential", "make "):
        assert forbidden not in final_runs, forbidden
    # Nothing but the wheels reaches the final stage: the dependencies' are mounted, canary-step's own is
    # copied (so that buildah's layer cache follows the source) and removed by the install's RUN.
    copies = [a for w, a in final if w in {"COPY", "ADD"}]
    assert copies == ["--from=build /dist/ /tmp/dist/"], copies
    assert "rm -r /tmp/dist" in final_runs


def test_dockerignore_lets_through_exactly_what_the_build_copies() -> None:
    lines = [
        ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = set()
    for word, args in _stages()[0]:
        if word == "COPY":
            copied.update(p.rstrip("/") for p in args.split()[:-1] if not p.startswith("--"))
    assert copied == allowed
    for path in allowed:
        assert (ROOT / path).exists(), path

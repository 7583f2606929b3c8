"""Finds, or builds once, Flagger itself for ``make bench-flagger`` (issue 16), next to the other binaries.

Owns the build of ``github.com/fluxcd/flagger/cmd/flagger`` at :data:`FLAGGER_VERSION` (``go install``
through the Go module proxy; the module has no ``replace`` directives) into ``$CANARY_STEP_CACHE/bin``,
under a file lock and with a key file, as :mod:`tests.cluster.knative_binaries` builds kwok; and the
module's source directory in the read-only Go module cache, which carries Flagger's own CRDs
(``artifacts/flagger/crd.yaml``) and its Helm chart (``charts/flagger/templates/rbac.yaml``: the ClusterRole
the chart grants).

Flagger is a dependency of the benchmark only: nothing of its code is copied into the project; the
benchmark runs the binary it builds and reads those two YAML files from the module cache.

Must not: fetch anything except through ``go`` (the Go module proxy), start anything but the Go toolchain,
or print a traceback for a missing tool (:class:`tests.cluster.binaries.BinaryError`).

CLI: ``python -m tests.cluster.flagger_binaries ensure`` builds what is missing and prints the paths.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.binaries import BinaryError, _stderr, cache_dir, ensure_command
from tests.cluster.knative_binaries import Log, _cached_build, _go, _module_dir

FLAGGER_MODULE = "github.com/fluxcd/flagger"
FLAGGER_VERSION = "v1.44.0"
# The build is CPU-heavy and the machine is shared: two packages at a time.
BUILD_PARALLELISM = "2"


@dataclass(frozen=True)
class FlaggerBinaries:
    flagger: Path
    source: Path  # the module's directory in the Go module cache (read-only)

    @property
    def crds(self) -> Path:
        return self.source / "artifacts" / "flagger" / "crd.yaml"

    @property
    def chart_rbac(self) -> Path:
        return self.source / "charts" / "flagger" / "templates" / "rbac.yaml"


def _build_command(output: Path) -> list[str]:
    # go install writes into GOBIN; a per-build directory keeps the rename atomic (as for kwok).
    install = [
        "env",
        f"GOBIN={output}.d",
        _go(),
        "install",
        "-p",
        BUILD_PARALLELISM,
        "-trimpath",
        "-ldflags",
        "-s -w",
        f"{FLAGGER_MODULE}/cmd/flagger@{FLAGGER_VERSION}",
    ]
    return ["sh", "-c", '"$@" && mv "$0.d/flagger" "$0" && rmdir "$0.d"', str(output), *install]


def ensure(*, log: Log = _stderr) -> FlaggerBinaries:
    """Return the Flagger binary and its module source, building the binary if it is missing."""
    work = cache_dir() / "src"
    work.mkdir(parents=True, exist_ok=True)
    flagger = _cached_build("flagger", _build_command, cwd=work, key_inputs=(), log=log)
    source = _module_dir(
        f"{FLAGGER_MODULE}@{FLAGGER_VERSION}", cwd=work, log_file=work / "flagger.download.log"
    )
    found = FlaggerBinaries(flagger=flagger, source=source)
    for path in (found.crds, found.chart_rbac):
        if not path.is_file():
            raise BinaryError(f"{FLAGGER_MODULE}@{FLAGGER_VERSION} has no {path.relative_to(source)}")
    return found


def main(argv: list[str] | None = None) -> int:
    return ensure_command(
        argv,
        module="tests.cluster.flagger_binaries",
        doc=__doc__ or "",
        ensure=ensure,
        what=f"Flagger {FLAGGER_VERSION}",
    )


if __name__ == "__main__":
    sys.exit(main())

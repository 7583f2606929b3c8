"""Wall time of `canary-step validate` against `python -c pass`, the floor of any Python CLI.

Owns: the start-up measurement quoted in docs/spec.md. Runs each command N times in a fresh process
(subprocess, output discarded), interleaved so that machine noise hits all of them alike, and prints
the median and the minimum of each, plus what importing the Kubernetes client alone would add.

    .venv/bin/python bench/validate_time.py [--runs 30]

Must not: be a test (timing goals live in benchmarks, not in tests).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commands() -> dict[str, list[str]]:
    python = sys.executable
    cli = str(Path(python).parent / "canary-step")
    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml"))
    return {
        "python -c pass": [python, "-c", "pass"],
        "canary-step validate examples/*.yaml": [cli, "validate", *examples],
        "canary-step validate (1 invalid file)": [cli, "validate", "examples/invalid/schedule.yaml"],
        "python -c 'import kubernetes.client'": [python, "-c", "import kubernetes.client"],
    }


def measure(runs: int) -> dict[str, list[float]]:
    todo = commands()
    times: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(runs):
        for name, argv in todo.items():
            started = time.perf_counter()
            subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times[name].append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    times = measure(args.runs)
    floor = statistics.median(times["python -c pass"])
    print(f"{'command':<42} {'median':>9} {'min':>9} {'over python -c pass':>20}")
    for name, samples in times.items():
        median = statistics.median(samples)
        over = (median - floor) * 1000
        print(f"{name:<42} {median * 1000:7.0f}ms {min(samples) * 1000:7.0f}ms {over:17.0f}ms")
    print(f"({args.runs} runs each, interleaved; Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

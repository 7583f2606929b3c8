"""What the step imports of its dependencies: the image deletes `kubernetes/aio` (Dockerfile), so no
module of the step may import it, directly or through the kubernetes package."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import importlib, json, pkgutil, sys
import step
for info in pkgutil.walk_packages(step.__path__, "step."):
    importlib.import_module(info.name)
import kubernetes, kubernetes.config, kubernetes.watch  # what the step's client uses, fully loaded
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("step", "kubernetes"))))
"""


def test_no_module_of_the_step_imports_kubernetes_aio() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "step.cli.run" in loaded and "kubernetes.client" in loaded  # the probe sees what is imported
    assert [m for m in loaded if m == "kubernetes.aio" or m.startswith("kubernetes.aio.")] == []

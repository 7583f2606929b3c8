"""Where the shared reference material is: Flagger's CRDs and its published Canary manifests.

The project's repository sits beside `shared/` (as in CI: a clone with `shared/` next to it); a
checkout elsewhere can point at it with CANARY_STEP_SHARED. A missing reference is an error, never an
empty list of cases, so the tests that read it cannot pass by checking nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def _shared() -> Path:
    candidates = [Path(p) for p in (os.environ.get("CANARY_STEP_SHARED"),) if p]
    candidates += [_ROOT.parent / "shared", Path("/work/shared")]
    for candidate in candidates:
        if (candidate / "reference" / "flagger").is_dir():
            return candidate
    raise RuntimeError(
        "the shared reference (shared/reference/flagger) was not found beside the repository "
        f"or at /work/shared; tried {', '.join(map(str, candidates))}; set CANARY_STEP_SHARED"
    )


SHARED = _shared()
FLAGGER = SHARED / "reference" / "flagger"
FLAGGER_CANARIES = sorted((FLAGGER / "canaries").glob("*.yaml"))
assert len(FLAGGER_CANARIES) >= 14, f"expected Flagger's published Canaries in {FLAGGER / 'canaries'}"
TEMPLATEREF_CANARY = str(FLAGGER / "canaries" / "test-istio-canary-templateref.yaml")

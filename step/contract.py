"""The pipeline-facing contract: decisions and result names, the same on every platform.

Owns: `Decision`, `RESULT_NAMES`, the termination-message budget.
Must not: import anything of ours except `step.errors`, or any third-party module.
"""

from __future__ import annotations

import enum

from step.errors import ExitCode


class Decision(enum.StrEnum):
    """The outcome of one run, written as the `decision` result."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    INITIALIZED = "initialized"
    SKIPPED = "skipped"
    FAILED = "failed"


# Written before exit, one file each under --results-dir (Tekton /tekton/results, Argo output files).
RESULT_NAMES: tuple[str, ...] = (
    "decision",
    "reason",
    "canary-revision",
    "primary-revision",
    "canary-weight",
    "failed-checks",
    "iterations",
    "report",
)

# Tekton's termination message holds every result of a step together; keep all of ours within it.
TERMINATION_MESSAGE_BUDGET = 3900  # 4096 less the entrypoint's StartedAt, ExitCode, Reason entries

DEFAULT_EXIT_CODES: dict[Decision, ExitCode] = {
    Decision.PROMOTED: ExitCode.OK,
    Decision.INITIALIZED: ExitCode.OK,
    Decision.SKIPPED: ExitCode.OK,
    Decision.ROLLED_BACK: ExitCode.ROLLED_BACK,
    Decision.FAILED: ExitCode.INFRASTRUCTURE,
}

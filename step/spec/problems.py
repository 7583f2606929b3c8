"""Problems found in a spec: where (file, line, JSON path) and what is wrong, in words a person acts on.

Owns: `Problem`, its one-line rendering `FILE:LINE: <path>: <message>`, and `InvalidSpecError`, the
`SpecError` that carries every problem found.
Must not: import anything but `step.errors`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from step.errors import SpecError

JsonPath = tuple[str | int, ...]


def format_path(path: JsonPath) -> str:
    """`("spec", "analysis", "metrics", 0, "name")` -> `spec.analysis.metrics[0].name`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing wrong with a spec. `line` 0 means the file as a whole; an empty path, the document."""

    file: str
    line: int
    path: JsonPath
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        shown = format_path(self.path)
        return f"{where}: {shown}: {self.message}" if shown else f"{where}: {self.message}"


def sort_key(problem: Problem) -> tuple[str, int, str]:
    """File, then line, then path: the order a person reads a file in."""
    return (problem.file, problem.line, format_path(problem.path))


class InvalidSpecError(SpecError):
    """The spec has problems; `problems` holds every one, in file and line order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid spec")

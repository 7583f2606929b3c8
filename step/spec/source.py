"""Reading spec files: bytes to YAML documents, with the line of every JSON path.

Owns: the size, node-count and nesting limits, refusing binary and non-UTF-8 input, YAML parse errors
with their line, duplicate
keys, and `Document`: one parsed YAML document plus a map from JSON path to line.
Must not: know what a Canary is, or import kube, click, tenacity, requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from step.spec.problems import JsonPath, Problem

# Kubernetes stores an object in etcd within about 1.5 MB; a spec file is a few kilobytes.
MAX_FILE_BYTES = 1024 * 1024
# libyaml's parser when PyYAML was built with it (it keeps the marks that give us lines), else PyYAML's.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Bounds the work on anchors and aliases (a "billion laughs" file stays small on disk).
MAX_NODES = 100_000
# Bounds the nesting (a Canary is about 8 levels deep); deeper input would exhaust Python's stack.
MAX_DEPTH = 64


@dataclass(frozen=True, kw_only=True)
class Document:
    """One YAML document of a file, as plain data, with the line (1-based) of each path in it."""

    file: str
    index: int  # 0-based position among the file's non-empty documents
    line: int  # where the document starts
    data: Any
    lines: dict[JsonPath, int] = field(default_factory=dict)

    def line_of(self, path: JsonPath) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return self.line


def read_documents(path: str | Path, *, display: str | None = None) -> tuple[list[Document], list[Problem]]:
    """The non-empty YAML documents of one file, or the problems that stop it from being read."""
    name = display if display is not None else str(path)
    p = Path(path)
    try:
        if p.is_dir():
            return [], [Problem(file=name, line=0, path=(), message="is a directory, not a spec file")]
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            return [], [
                Problem(
                    file=name,
                    line=0,
                    path=(),
                    message=f"file is {size / (1024 * 1024):.1f} MiB; a spec file must be at most "
                    f"{MAX_FILE_BYTES // 1024} KiB",
                )
            ]
        raw = p.read_bytes()
    except FileNotFoundError:
        return [], [Problem(file=name, line=0, path=(), message="no such file")]
    except PermissionError:
        return [], [Problem(file=name, line=0, path=(), message="permission denied")]
    except OSError as exc:
        return [], [Problem(file=name, line=0, path=(), message=f"cannot read: {exc.strerror or exc}")]
    return parse_documents(raw, file=name)


def parse_documents(raw: bytes, *, file: str) -> tuple[list[Document], list[Problem]]:
    """Parse bytes already read (see `read_documents`) into documents with line maps."""
    if len(raw) > MAX_FILE_BYTES:
        return [], [Problem(file=file, line=0, path=(), message=f"larger than {MAX_FILE_BYTES // 1024} KiB")]
    if b"\x00" in raw:
        return [], [Problem(file=file, line=0, path=(), message="is a binary file, not YAML")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return [], [Problem(file=file, line=line, path=(), message="is not UTF-8 text")]
    try:
        nodes = list(_compose_all(text, _Loader))
    except yaml.YAMLError:
        nodes = None
    except RecursionError:  # PyYAML's pure-Python composer on very deep input (libyaml's is not recursive)
        return [], [Problem(file=file, line=0, path=(), message=f"nested deeper than {MAX_DEPTH} levels")]
    if nodes is None:
        return [], [_parse_problem(text, file=file)]

    documents: list[Document] = []
    problems: list[Problem] = []
    for node in nodes:
        if _is_empty(node):
            continue
        line = node.start_mark.line + 1
        if _expanded_size(node, {}, depth=0) > MAX_NODES:
            # Counted once per distinct node, so an alias bomb is refused before anything is expanded.
            message = f"document too large: more than {MAX_NODES} YAML nodes (anchors expanded)"
            problems.append(Problem(file=file, line=line, path=(), message=message))
            continue
        walker = _Walker(file=file)
        walker.walk(node, ())
        if walker.problems:
            problems.extend(walker.problems)
            continue
        try:
            data = _Loader(text).construct_document(node)
        except yaml.YAMLError as exc:
            problems.append(Problem(file=file, line=line, path=(), message=f"invalid YAML: {exc}"))
            continue
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            problems.append(Problem(file=file, line=line, path=(), message=f"invalid value: {exc}"))
            continue
        documents.append(
            Document(
                file=file,
                index=len(documents),
                line=node.start_mark.line + 1,
                data=data,
                lines=walker.lines,
            )
        )
    if not documents and not problems:
        problems.append(
            Problem(
                file=file,
                line=0,
                path=(),
                message="is empty: expected a Canary, MetricTemplate or AlertProvider",
            )
        )
    return documents, problems


def _parse_problem(text: str, *, file: str) -> Problem:
    """The parse error as PyYAML's own parser words it (libyaml's words differ; ours stay the same)."""
    try:
        for _ in _compose_all(text, yaml.SafeLoader):
            pass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        return Problem(file=file, line=line, path=(), message=f"invalid YAML: {what}")
    except yaml.YAMLError as exc:
        return Problem(file=file, line=0, path=(), message=f"invalid YAML: {exc}")
    except RecursionError:  # PyYAML's parser recurses once per nesting level
        return Problem(
            file=file, line=0, path=(), message=f"invalid YAML: nested deeper than {MAX_DEPTH} levels"
        )
    return Problem(file=file, line=0, path=(), message="invalid YAML")


def _compose_all(text: str, loader_class: type[yaml.SafeLoader]) -> Iterator[yaml.Node]:
    loader = loader_class(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                yield node
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, memo: dict[int, int], *, depth: int) -> int:
    """Nodes in `node` with every alias expanded, counting each distinct node's subtree once."""
    known = memo.get(id(node))
    if known is not None:
        return known
    size = 1
    if depth <= MAX_DEPTH and isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        children = (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        )
        for child in children:
            size += _expanded_size(child, memo, depth=depth + 1)
            if size > MAX_NODES:
                break
    memo[id(node)] = size
    return size


def _is_empty(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


class _Walker:
    """Maps each path to the line of its key (mappings) or item (sequences); finds duplicate keys."""

    def __init__(self, *, file: str) -> None:
        self.file = file
        self.lines: dict[JsonPath, int] = {}
        self.problems: list[Problem] = []
        self.visited = 0

    def walk(self, node: yaml.Node, path: JsonPath) -> None:
        if len(path) > MAX_DEPTH:
            if not self.problems:
                self.problems.append(
                    Problem(
                        file=self.file,
                        line=node.start_mark.line + 1,
                        path=path[:4],
                        message=f"nested deeper than {MAX_DEPTH} levels",
                    )
                )
            return
        self.visited += 1
        if self.visited > MAX_NODES:
            if not self.problems:
                self.problems.append(
                    Problem(
                        file=self.file,
                        line=node.start_mark.line + 1,
                        path=path,
                        message=f"document too large: more than {MAX_NODES} YAML nodes (anchors expanded)",
                    )
                )
            return
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.walk(value_node, path)
                    continue
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in first:
                    self.problems.append(
                        Problem(
                            file=self.file,
                            line=line,
                            path=(*path, key),
                            message=f"duplicate key (first at line {first[key]})",
                        )
                    )
                    continue
                first[key] = line
                self.lines[(*path, key)] = line
                self.walk(value_node, (*path, key))
                self.lines[(*path, key)] = line
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.lines[(*path, i)] = item.start_mark.line + 1
                self.walk(item, (*path, i))

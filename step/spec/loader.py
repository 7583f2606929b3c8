"""Loading spec files into a `SpecBundle`: read, check kind, schema, rules, references, build models.

Owns: `load_files` (every problem of every file, never raises on bad input), `load_bundle` (exactly
one Canary, or `InvalidSpecError`), and `bundle_from_objects` (objects read from the API server).
Must not: print, exit, or import kube, click, tenacity, requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from step.spec import rules
from step.spec.build import (
    build_alert_provider,
    build_canary,
    build_metric_template,
    namespace_of,
)
from step.spec.model import AlertProvider, Canary, MetricTemplate, SpecBundle
from step.spec.problems import InvalidSpecError, JsonPath, Problem, sort_key
from step.spec.schema import API_VERSION, KINDS, describe_value, suggest, validate_document
from step.spec.source import Document, read_documents

DEFAULT_NAMESPACE = "default"
FLAGGER_GROUP = API_VERSION.split("/", 1)[0]


@dataclass(frozen=True, kw_only=True)
class LoadedCanary:
    canary: Canary
    document: Document


@dataclass(frozen=True, kw_only=True)
class LoadedSpec:
    """What a set of files held: valid objects, every problem, and notes (skipped documents etc.)."""

    canaries: tuple[LoadedCanary, ...] = ()
    metric_templates: Mapping[tuple[str, str], MetricTemplate] = field(
        default_factory=lambda: MappingProxyType({})
    )
    alert_providers: Mapping[tuple[str, str], AlertProvider] = field(
        default_factory=lambda: MappingProxyType({})
    )
    problems: tuple[Problem, ...] = ()
    notes: tuple[Problem, ...] = ()
    resources: int = 0  # flagger.app documents seen, valid or not

    @property
    def ok(self) -> bool:
        return not self.problems

    def bundle(self, loaded: LoadedCanary) -> SpecBundle:
        return SpecBundle(
            canary=loaded.canary,
            metric_templates=self.metric_templates,
            alert_providers=self.alert_providers,
        )


def load_files(
    paths: Sequence[str | Path],
    *,
    templates_from_cluster: bool = False,
    default_namespace: str = DEFAULT_NAMESPACE,
) -> LoadedSpec:
    """Read and check every document of every file; templateRefs resolve across all of them."""
    documents: list[Document] = []
    problems: list[Problem] = []
    for path in paths:
        docs, found = read_documents(path)
        documents.extend(docs)
        problems.extend(found)
    return _check(
        documents,
        problems,
        templates_from_cluster=templates_from_cluster,
        default_namespace=default_namespace,
        require_resources=not problems,
    )


def load_bundle(
    paths: Sequence[str | Path],
    *,
    templates_from_cluster: bool = False,
    default_namespace: str = DEFAULT_NAMESPACE,
) -> SpecBundle:
    """The one Canary the files hold, with its templates and alert providers. `InvalidSpecError` otherwise."""
    loaded = load_files(
        paths, templates_from_cluster=templates_from_cluster, default_namespace=default_namespace
    )
    return _single(loaded, where=", ".join(str(p) for p in paths))


def bundle_from_objects(
    objects: Sequence[Any],
    *,
    source: str = "<api>",
    templates_from_cluster: bool = True,
    default_namespace: str = DEFAULT_NAMESPACE,
) -> SpecBundle:
    """The same checks for objects that did not come from a file (e.g. read from the API server).

    Problems name `source` with line 0. `status` and server-set metadata are accepted.
    """
    documents = [Document(file=source, index=i, line=0, data=_plain(obj)) for i, obj in enumerate(objects)]
    loaded = _check(
        documents,
        [],
        templates_from_cluster=templates_from_cluster,
        default_namespace=default_namespace,
        require_resources=True,
    )
    return _single(loaded, where=source)


def _single(loaded: LoadedSpec, *, where: str) -> SpecBundle:
    if loaded.problems:
        raise InvalidSpecError(loaded.problems)
    if len(loaded.canaries) != 1:
        found = ", ".join(
            f"{c.canary.namespace}/{c.canary.name} ({c.document.file}:{c.document.line})"
            for c in loaded.canaries
        )
        raise InvalidSpecError(
            [
                Problem(
                    file=where,
                    line=0,
                    path=(),
                    message=f"expected exactly one Canary, found {len(loaded.canaries)}"
                    + (f": {found}" if found else ""),
                )
            ]
        )
    return loaded.bundle(loaded.canaries[0])


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _check(
    documents: Iterable[Document],
    problems: list[Problem],
    *,
    templates_from_cluster: bool,
    default_namespace: str,
    require_resources: bool,
) -> LoadedSpec:
    notes: list[Problem] = []
    canaries: list[LoadedCanary] = []
    templates: dict[tuple[str, str], MetricTemplate] = {}
    providers: dict[tuple[str, str], AlertProvider] = {}
    first_seen: dict[tuple[str, str, str, str], Document] = {}
    canary_docs: list[tuple[Document, Canary]] = []
    resources = 0

    for doc in _expand_lists(documents):
        kind = _classify(doc, problems, notes)
        if kind is None:
            continue
        resources += 1
        found = validate_document(doc, kind=kind)
        found.extend(_rule_problems(doc, kind=kind, schema_problems=found))
        if found:
            problems.extend(found)
            continue
        namespace = namespace_of(doc.data, default_namespace=default_namespace)
        # Canaries in different files may be alternatives of one another (validate them side by side);
        # two templates or providers with one name would make a reference ambiguous.
        key = (kind, namespace, doc.data["metadata"]["name"], doc.file if kind == "Canary" else "")
        if key in first_seen:
            first = first_seen[key]
            problems.append(
                Problem(
                    file=doc.file,
                    line=doc.line_of(("metadata", "name")),
                    path=("metadata", "name"),
                    message=f"duplicate {kind} {key[1]}/{key[2]} (first at {first.file}:{first.line})",
                )
            )
            continue
        first_seen[key] = doc
        if kind == "Canary":
            canary_docs.append((doc, build_canary(doc.data, default_namespace=default_namespace)))
        elif kind == "MetricTemplate":
            template = build_metric_template(doc.data, default_namespace=default_namespace)
            templates[(template.namespace, template.name)] = template
        else:
            provider = build_alert_provider(doc.data, default_namespace=default_namespace)
            providers[(provider.namespace, provider.name)] = provider

    for doc, canary in canary_docs:
        unresolved = _unresolved_templates(canary, templates)
        for path, ref in unresolved:
            if templates_from_cluster:
                notes.append(
                    _at(doc, path, f"MetricTemplate {ref} is left to the cluster (--templates-from-cluster)")
                )
            else:
                problems.append(
                    _at(
                        doc,
                        path,
                        f"MetricTemplate {ref} is not in the given files: add it, or pass "
                        "--templates-from-cluster to leave it to the cluster",
                    )
                )
        # Kept even when a template is missing (that is a problem already), so its queries are checked.
        canaries.append(LoadedCanary(canary=canary, document=doc))

    if require_resources and resources == 0 and not problems:
        files = sorted({n.file for n in notes})
        problems.append(
            Problem(
                file=", ".join(files) or "<input>",
                line=0,
                path=(),
                message="no Canary, MetricTemplate or AlertProvider (flagger.app/v1beta1) found",
            )
        )
    return LoadedSpec(
        canaries=tuple(canaries),
        metric_templates=MappingProxyType(templates),
        alert_providers=MappingProxyType(providers),
        problems=tuple(sorted(problems, key=sort_key)),
        notes=tuple(sorted(notes, key=sort_key)),
        resources=resources,
    )


def _expand_lists(documents: Iterable[Document]) -> Iterator[Document]:
    """Each item of a `kind: List` (or `CanaryList`, as `kubectl get -o yaml` prints) as a document."""
    for doc in documents:
        data = doc.data
        kind = data.get("kind") if isinstance(data, dict) else None
        items = data.get("items") if isinstance(data, dict) else None
        if not (isinstance(kind, str) and kind.endswith("List") and isinstance(items, list)):
            yield doc
            continue
        for i, item in enumerate(items):
            prefix = ("items", i)
            yield Document(
                file=doc.file,
                index=doc.index,
                line=doc.line_of(prefix),
                data=item,
                lines={path[2:]: line for path, line in doc.lines.items() if path[:2] == prefix},
            )


def _classify(doc: Document, problems: list[Problem], notes: list[Problem]) -> str | None:
    """The kind to validate `doc` as, or None (a problem or a note was recorded)."""
    data = doc.data
    if not isinstance(data, dict):
        problems.append(
            Problem(
                file=doc.file,
                line=doc.line,
                path=(),
                message=f"expected a mapping (a Kubernetes object), got {describe_value(data)}",
            )
        )
        return None
    api_version, kind = data.get("apiVersion"), data.get("kind")
    found = len(problems)
    for key, value in (("apiVersion", api_version), ("kind", kind)):
        if key not in data:
            problems.append(_at(doc, (), f"missing required field '{key}'"))
        elif not isinstance(value, str):
            problems.append(_at(doc, (key,), f"expected a string, got {describe_value(value)}"))
    if len(problems) > found:
        return None
    assert isinstance(api_version, str) and isinstance(kind, str)
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    flagger_like = group == FLAGGER_GROUP or bool(suggest(group, [FLAGGER_GROUP])) or kind in KINDS
    if not flagger_like:
        name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
        shown = f" {name!r}" if isinstance(name, str) else ""
        notes.append(_at(doc, (), f"skipped {api_version} {kind}{shown}: not a flagger.app resource"))
        return None
    if api_version != API_VERSION:
        problems.append(_at(doc, ("apiVersion",), f"{api_version!r} is not supported: use {API_VERSION}"))
        return None
    if kind not in KINDS:
        problems.append(
            _at(doc, ("kind",), f"{kind!r} is not one of: {', '.join(KINDS)}{suggest(kind, KINDS)}")
        )
        return None
    return kind


def _at(doc: Document, path: JsonPath, message: str) -> Problem:
    return Problem(file=doc.file, line=doc.line_of(path), path=path, message=message)


def _rule_problems(doc: Document, *, kind: str, schema_problems: Sequence[Problem]) -> list[Problem]:
    checks = {
        "Canary": rules.canary_rules,
        "MetricTemplate": rules.metric_template_rules,
        "AlertProvider": rules.alert_provider_rules,
    }[kind]
    # A finding about a value the schema already reported on (at it or inside it) would say it twice.
    reported = [p.path for p in schema_problems if not p.message.startswith("missing required field")]
    out = []
    for path, message in checks(doc.data):
        if any(r[: len(path)] == path for r in reported):
            continue
        out.append(_at(doc, path, message))
    return out


def _unresolved_templates(
    canary: Canary, templates: Mapping[tuple[str, str], MetricTemplate]
) -> list[tuple[JsonPath, str]]:
    out: list[tuple[JsonPath, str]] = []
    for i, metric in enumerate(canary.analysis.metrics):
        ref = metric.template_ref
        if ref is None:
            continue
        namespace = ref.namespace or canary.namespace
        if (namespace, ref.name) not in templates:
            out.append((("spec", "analysis", "metrics", i, "templateRef"), f"{namespace}/{ref.name}"))
    return out

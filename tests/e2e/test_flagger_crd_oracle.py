"""`validate` against Flagger's own CRDs on a real API server: the differential test of issue 15.

A second kube-apiserver (apart from the control plane, which serves *our* CRDs) gets Flagger 1.44's
CRDs exactly as published (shared/reference/flagger/crd.yaml). Every document is dry-run created there
with `fieldValidation=Strict` and checked by `canary-step validate --against flagger`, and the two
verdicts are compared:

- both accept, or both refuse: an agreement;
- validate refuses what Flagger's CRD accepts: allowed only when every problem validate reports is one of
  the intended stricter rules (the table in docs/spec.md, each justified by what Flagger does at run
  time); each such document counts as a hit of those rules;
- validate accepts what Flagger's CRD refuses: always a failure (a false acceptance).

Inputs: the published specs (examples/ and Flagger's published Canaries), their mutations, and at
least 10 000 documents generated from Flagger's CRD schemas with hypothesis (fixed seed). The counts are
printed. The whole module must stay within its time budget on the shared 2-core machine.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, seed, settings

from step.cli import cli
from tests.cluster.apiserver import ApiServer, start_apiserver
from tests.fuzz.inputs import PLURALS, flagger_crds, generated_documents, mutations, published

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "oracle"
GENERATED = 10_000
GENERATED_EXAMPLES = 125  # hypothesis examples of 100 documents each; some repeat, 10 000+ are distinct
SEED = 20261202
# The whole module (server start, CRDs, generation, both verdicts for every document) on the shared
# 2-core machine. Measured with five sessions sharing it (load average 10): 36 s for the published specs
# and their mutations, 246 s for the generated ones (about 22 ms a document, both verdicts).
BATCH = 400  # documents per `validate` call (one file of many YAML documents)
CONNECTIONS = 4
ESTABLISHED_TIMEOUT_S = 30.0
DRY_RUN_STRICT = "dryRun=All&fieldValidation=Strict"
_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# The intended stricter rules: id -> what validate says. Each id is a row of the table in docs/spec.md.
STRICTER: dict[str, re.Pattern[str]] = {
    rule: re.compile(pattern)
    for rule, pattern in {
        "whole-numbers": r"expected an integer, got -?[0-9.e+]+$",
        "ranges": r"is (less|greater) than the (minimum|maximum) of|must have at least 1 item",
        "non-empty": r"must not be empty$",
        "duration-go": r"Flagger parses it with Go's time\.ParseDuration$",
        "duration-positive": r"must be greater than 0$",
        "knative-provider": r"can't use .*(Knative Service|knative|autoscaler)",
        "schedule-promotes": r"never moves traffic|iterations never promote",
        "step-weights-ascending": r"stepWeights must be strictly ascending$",
        "metric-source": r"is not a built-in metric|set either query or templateRef, not both$",
        "threshold-range": r"no value can pass$",
        "unique-names": r"^duplicate (metric|webhook|alert) name",
        "urls": r"is not (a valid URL|an absolute http:// or https:// URL)$",
        "cookie-names": r"must differ from cookieName$",
        "query-template": r"^(MetricTemplate \S+: query )?(line [0-9]+: )?(template|function|unknown|"
        r"undefined|missing|no value|variable|.*\{\{)",
        "relative-metric": r"of a -vs-primary metric is the allowed ratio|can never reach the [0-9]+ needed",
    }.items()
}


@dataclass
class Tally:
    compared: int = 0
    agreements: int = 0
    stricter_documents: int = 0
    stricter_rules: Counter[str] | None = None
    false_acceptances: list[str] | None = None
    unexplained: list[str] | None = None

    def __post_init__(self) -> None:
        self.stricter_rules = Counter()
        self.false_acceptances = []
        self.unexplained = []


class Oracle:
    """Strict dry-run creates on the API server with Flagger's CRDs, over a few kept-alive connections."""

    def __init__(self, api: ApiServer) -> None:
        self.api = api
        parsed = urllib.parse.urlsplit(api.url)
        self._host, self._port = parsed.hostname or "127.0.0.1", parsed.port
        self._ssl = ssl.create_default_context(cafile=str(api.ca_file))

    def _connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self._host, self._port, context=self._ssl, timeout=30)

    def _verdicts(self, docs: list[dict[str, Any]]) -> list[tuple[bool, str]]:
        connection = self._connection()
        headers = {"Authorization": f"Bearer {self.api.admin_token}", "Content-Type": "application/json"}
        out = []
        try:
            for doc in docs:
                plural = PLURALS[doc["kind"]]
                path = f"/apis/flagger.app/v1beta1/namespaces/{NAMESPACE}/{plural}?{DRY_RUN_STRICT}"
                connection.request("POST", path, body=json.dumps(doc).encode(), headers=headers)
                response = connection.getresponse()
                body = json.loads(response.read() or b"{}")
                if response.status not in (201, 400, 422):
                    raise AssertionError(f"dry-run create answered {response.status}: {body}")
                out.append((response.status == 201, str(body.get("message", ""))))
        finally:
            connection.close()
        return out

    def verdicts(self, docs: list[dict[str, Any]]) -> list[tuple[bool, str]]:
        chunks = [docs[i::CONNECTIONS] for i in range(CONNECTIONS)]
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            answers = list(pool.map(self._verdicts, chunks))
        out: list[tuple[bool, str]] = [(False, "")] * len(docs)
        for i, chunk in enumerate(answers):
            for j, verdict in enumerate(chunk):
                out[i + j * CONNECTIONS] = verdict
        return out


def _install_flagger_crds(api: ApiServer) -> None:
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for crd in flagger_crds().values():
        status, body = api.request("POST", base, body=crd)
        assert status == 201, body
    deadline = time.monotonic() + ESTABLISHED_TIMEOUT_S
    for crd in flagger_crds().values():
        while True:
            _, body = api.request("GET", f"{base}/{crd['metadata']['name']}")
            conditions = (body.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                break
            assert time.monotonic() < deadline, f"{crd['metadata']['name']} not Established: {body}"
            time.sleep(0.05)  # poll interval of a condition wait with a deadline
    status, body = api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
    assert status == 201, body


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    started = time.monotonic()
    api = start_apiserver(tmp_path_factory.mktemp("flagger-oracle"))
    try:
        _install_flagger_crds(api)
        oracle = Oracle(api)
        # The first custom-resource write after a CRD install waits about 2 s; pay it here.
        oracle.verdicts([_placed(published()[0][1], 0)])
        sys.stderr.write(f"\nFlagger CRD oracle ready in {time.monotonic() - started:.1f}s\n")
        yield oracle
    finally:
        api.stop()


def _placed(doc: dict[str, Any], index: int) -> dict[str, Any]:
    """The document in the oracle's namespace under a name of its own (one file holds many)."""
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return {**doc, "metadata": {**metadata, "name": f"d{index}", "namespace": NAMESPACE}}


def _validate(docs: list[dict[str, Any]], tmp: Path) -> list[list[tuple[str, str]]]:
    """`validate --against flagger` on files of BATCH documents: each document's (path, message) list."""
    out: list[list[tuple[str, str]]] = []
    runner = CliRunner()
    for start in range(0, len(docs), BATCH):
        chunk = docs[start : start + BATCH]
        texts = [yaml.dump(doc, Dumper=_DUMPER, sort_keys=False, allow_unicode=True) for doc in chunk]
        starts, line = [], 1
        for text in texts:
            starts.append(line)
            line += text.count("\n") + 1  # the `---` separator
        path = tmp / f"batch-{start}.yaml"
        path.write_text("---\n".join(texts), encoding="utf-8")
        result = runner.invoke(
            cli, ["validate", "--against", "flagger", "--templates-from-cluster", "-o", "json", str(path)]
        )
        # The fuzz test's guarantee for `validate --against flagger` (it leaves this mode to the oracle).
        assert result.exit_code in (0, 2), (result.exit_code, result.stderr, result.exception)
        assert "Traceback" not in result.stdout + result.stderr
        found: list[list[tuple[str, str]]] = [[] for _ in chunk]
        for problem in json.loads(result.stdout)["problems"]:
            assert problem["line"] > 0, problem
            index = max(i for i, s in enumerate(starts) if s <= problem["line"])
            found[index].append((problem["path"], problem["message"]))
        out.extend(found)
    return out


def _rules_of(problems: list[tuple[str, str]]) -> list[str | None]:
    return [next((r for r, pattern in STRICTER.items() if pattern.search(m)), None) for _, m in problems]


def _distinct(labelled: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Each document once (generation and mutation both produce some twice)."""
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for label, doc in labelled:
        seen.setdefault(json.dumps(doc, sort_keys=True), (label, doc))
    return list(seen.values())


def _compare(labelled: list[tuple[str, dict[str, Any]]], oracle: Oracle, tmp: Path, tally: Tally) -> None:
    docs = [_placed(doc, i) for i, (_, doc) in enumerate(labelled)]
    # The API server works while validate runs here: the two verdicts are computed side by side.
    with ThreadPoolExecutor(1) as pool:
        asked = pool.submit(oracle.verdicts, docs)
        ours = _validate(docs, tmp)
        theirs = asked.result()
    assert tally.stricter_rules is not None and tally.false_acceptances is not None
    assert tally.unexplained is not None
    for (label, doc), (accepted, why), problems in zip(labelled, theirs, ours, strict=True):
        tally.compared += 1
        if accepted == (not problems):
            tally.agreements += 1
        elif accepted:
            rules = _rules_of(problems)
            if None in rules:
                tally.unexplained.append(f"{label}: validate refuses, Flagger's CRD accepts: {problems}")
            else:
                tally.stricter_documents += 1
                tally.stricter_rules.update(set(r for r in rules if r))
        else:
            shown = json.dumps(doc.get("spec"))[:300]
            tally.false_acceptances.append(
                f"{label}: Flagger's CRD refuses ({why[-300:]}); validate accepts {shown}"
            )


def _generated() -> list[dict[str, Any]]:
    drawn: list[dict[str, Any]] = []

    @settings(
        max_examples=GENERATED_EXAMPLES,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @seed(SEED)
    @given(generated_documents(100))
    def collect(docs: list[dict[str, Any]]) -> None:
        drawn.extend(docs)

    collect()
    return drawn


def _report(name: str, tally: Tally, elapsed: float) -> None:
    assert tally.stricter_rules is not None
    hits = ", ".join(f"{rule} {count}" for rule, count in tally.stricter_rules.most_common()) or "none"
    sys.stderr.write(
        f"\n{name}: {tally.compared} documents compared with Flagger's CRD in {elapsed:.1f}s: "
        f"{tally.agreements} agreements, {tally.stricter_documents} refused by intended stricter rules "
        f"({hits})\n"
    )


def _assert_clean(tally: Tally) -> None:
    assert tally.false_acceptances is not None and tally.unexplained is not None
    problems = tally.false_acceptances + tally.unexplained
    # One example of each kind of disagreement (documents differ only in the d<N> name they carry).
    kinds = {re.sub(r'"d[0-9]+"|#[0-9]+', "#", p.split(" validate accepts ")[0]): p for p in problems}
    assert not problems, (
        f"{len(tally.false_acceptances)} false acceptances, {len(tally.unexplained)} unexplained "
        f"refusals, {len(kinds)} kinds:\n" + "\n".join(list(kinds.values())[:30])
    )


def test_documented_stricter_rules_are_the_ones_checked() -> None:
    text = (ROOT / "docs" / "spec.md").read_text()
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", text, re.MULTILINE))
    assert documented == set(STRICTER), documented ^ set(STRICTER)


@pytest.mark.long
def test_published_specs_and_their_mutations_agree_with_flaggers_crd(
    oracle: Oracle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    tally = Tally()
    documents = published()
    _compare(documents, oracle, tmp_path, tally)
    # Every published spec is accepted by both.
    assert tally.agreements == len(documents) and tally.stricter_documents == 0, (
        tally.false_acceptances,
        tally.unexplained,
    )
    mutated = _distinct([(f"{label}: {what}", d) for label, base in documents for what, d in mutations(base)])
    _compare(mutated, oracle, tmp_path, tally)
    with capsys.disabled():
        _report("published specs and mutations", tally, time.monotonic() - started)
    assert tally.compared >= 3_000
    _assert_clean(tally)


@pytest.mark.long
def test_specs_generated_from_flaggers_crd_agree_with_it(
    oracle: Oracle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    drawn = _distinct([(f"generated #{i}", doc) for i, doc in enumerate(_generated())])
    assert len(drawn) >= GENERATED, len(drawn)
    tally = Tally()
    _compare(drawn, oracle, tmp_path, tally)
    with capsys.disabled():
        _report(f"generated (seed {SEED})", tally, time.monotonic() - started)
    _assert_clean(tally)
    # Both sides must see both verdicts often, or the comparison says little.
    assert tally.agreements > GENERATED // 4 and tally.stricter_documents > 100

# canary-step: every target sets up what it needs, so each works on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export CANARY_STEP_CACHE ?= $(HOME)/.cache/canary-step

.PHONY: help setup tools knative-tools test test-tools unit lint typecheck imports demo cluster bench bench-flagger bench-image test-real validate-examples wheel image container-tools clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(PY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(PY)

setup: $(PY) ## create .venv with the package and its test extras

tools: setup ## install Prometheus and Graphite (Debian) and build kube-apiserver and etcd (cached)
	@command -v prometheus >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	@test -x /usr/bin/carbon-cache -a -f /usr/lib/python3/dist-packages/graphite/wsgi.py || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphite-carbon graphite-web >/dev/null; }
	$(PY) -m tests.cluster.binaries ensure

lint: setup ## ruff
	$(VENV)/bin/ruff check step tests bench
	$(VENV)/bin/ruff format --check step

typecheck: setup ## mypy --strict on step/
	$(VENV)/bin/mypy

imports: setup ## the architecture, as import contracts
	$(VENV)/bin/lint-imports

test: tools knative-tools container-tools test-tools image lint typecheck imports ## everything CI runs: lint, types, import contracts, all tests (the image's too; the e2e tests of `run` and the RBAC proof on real Knative)
	$(PY) -m pytest

test-tools: setup ## the shipping tests' tools, before pytest so no test's set-up builds them: Tekton's validation and entrypoint, the Tekton/Argo evaluator, actionlint (Go), hera (PyPI), action-validator (npm); cached
	$(PY) -m tests.ship.tools ensure

knative-tools: setup ## real Knative Serving 1.17 for the tests: its controller, webhook, autoscaler-hpa, kube-controller-manager, kube-scheduler, kwok, etcd 3.6, built from Go modules (cached; KNATIVE=sim: nothing, every test on the simulator)
	@if [ "$(KNATIVE)" != sim ]; then $(PY) -m tests.cluster.knative_binaries ensure; fi

test-real: tools knative-tools container-tools ## the cluster tests that depend on Knative's behaviour, all on real Knative Serving 1.17 (make test runs the e2e tests of `run`, the RBAC proof, the real-Knative faults and the harness's differential tests on it, the rest on the simulator)
	KNATIVE=real $(PY) -m pytest -n 0 tests/cluster/test_knative_real.py tests/cluster/test_harness.py tests/e2e/test_run.py tests/e2e/test_knative_faults.py tests/e2e/test_otel_templates.py tests/e2e/test_blue_green.py tests/e2e/test_rbac.py tests/e2e/test_status.py tests/e2e/test_preflight.py tests/e2e/test_router_knative.py tests/e2e/test_lease.py

unit: setup ## the tests that need no control plane
	$(PY) -m pytest -m 'not cluster and not bench'

validate-examples: setup ## validate and plan the examples (no cluster)
	-$(VENV)/bin/canary-step validate examples/*.yaml
	$(VENV)/bin/canary-step plan examples/podinfo-canary.yaml
	$(VENV)/bin/canary-step plan examples/podinfo-bluegreen.yaml

demo: tools ## start the local control plane and tell the seed's story: promote 6.0.1, roll back 6.0.2
	$(PY) -m tests.cluster.demo

cluster: tools $(if $(filter real,$(KNATIVE)),knative-tools) ## start the local control plane and wait; prints the kubeconfig path (KNATIVE=real: real Knative Serving)
	$(PY) -m tests.cluster --knative $(or $(KNATIVE),sim)

bench: tools ## the seed's scenario at a 1 s interval: wall time, API requests per tick, peak RSS
	$(PY) bench/run.py

bench-flagger: tools ## Flagger v1.44 beside canary-step at a 10 s interval: API requests (audit log), times, memory, traffic, Events; real Knative if built, else the simulator
	$(PY) -m tests.cluster.flagger_binaries ensure >/dev/null
	$(PY) bench/vs_flagger.py $(BENCH_FLAGGER_ARGS)

bench-image: tools container-tools ## the image: container start to the first API request, peak memory of a promotion
	$(PY) -m pytest -n 0 -s -m bench tests/ship/test_image.py

wheel: setup ## build the wheel into dist/
	$(PY) -m build --wheel --outdir dist .

container-tools: ## install podman, buildah, runc and mmdebstrap (Debian) for the image and its tests
	@command -v podman >/dev/null && command -v buildah >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc mmdebstrap >/dev/null; }

image: setup container-tools ## build the image with podman on the local Debian base (cached; IMAGE_BASE=default: the pinned python:…-slim), print its size and layers
	$(PY) -m tests.ship.image --base $(or $(IMAGE_BASE),local)

clean:
	rm -rf $(VENV) dist build *.egg-info .mypy_cache .ruff_cache .pytest_cache

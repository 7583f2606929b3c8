# canary-step as a container image: one Flagger-style canary analysis of a Knative Service, run as a
# pipeline step (Tekton Task, Argo Workflows template, GitHub Docker action).
#
# The base is a build argument, BASE. Its default, what users and the release get, is pinned by exact tag
# AND digest. The digest is the one public Dockerfiles agree on for this tag; it was not checked against
# the registry from here (no registry access on our CI): refresh both together, e.g.
# `docker buildx imagetools inspect python:3.11.13-slim-bookworm`. The tests build the same lines on a
# local base made from Debian packages (tests/ship/image.py: `python` and `pip` on PATH, pip allowed to
# install as root, wheels from a mounted directory instead of PyPI), since no registry can be reached
# there; nothing after FROM differs between the two builds.
#
# Stage 1 builds the wheel (as `make wheel` does) and collects wheels for every dependency; the final
# stage installs them from that directory without an index, without a pip cache and without a compiler
# (the slim base has none, and none is installed), so a dependency without a wheel fails the build
# instead of compiling. `RUN --mount` needs BuildKit (Docker's default builder since 23.0); there is no
# `# syntax=` line, so no unpinned frontend image is pulled.
#
# USER is deliberately left unset: GitHub runs Docker actions as root ("do not use the USER
# instruction"). The Tekton Task and the Argo template run it as UID 65532 with runAsNonRoot; the image
# works as any UID because it writes only to /tmp (HOME, TMPDIR) and to the results directory it is given.

ARG BASE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

FROM ${BASE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY step ./step
RUN python -m pip install "build>=1.2" \
 && python -m build --wheel --outdir /dist . \
 && python -m pip wheel --only-binary=:all: --wheel-dir /wheels /dist/*.whl

FROM ${BASE}

# Declared again to be read here: the base's reference for the base.name label.
ARG BASE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="canary-step" \
      org.opencontainers.image.description="One Flagger-style canary analysis of a Knative Service, as a pipeline step that exits non-zero on rollback." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/canary-step/canary-step" \
      org.opencontainers.image.documentation="https://github.com/canary-step/canary-step/blob/main/docs/pipelines.md" \
      org.opencontainers.image.base.name="${BASE}"

# HOME and TMPDIR on /tmp: the kubernetes client writes CA/cert temp files, and nothing else may be
# written when the root filesystem is read-only and the UID is arbitrary.
ENV HOME=/tmp \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The wheels are bind-mounted from stage 1, so they never become a layer of the final image. pip
# byte-compiles at install time (as root, readable by every UID), so runs write no .pyc files. In the
# same layer, three cuts and one addition, tested in tests/ship/test_image.py, which also runs whole
# analyses on the result:
# - `kubernetes/aio`, the client's asyncio copy (68 MiB), is removed: canary-step never imports it
#   (tests/unit/test_imports.py). Its RECORD lines go with it, so pip's record matches the files.
# - aiohttp, aiohttp-retry and what only they need (13 MiB) are uninstalled: the kubernetes client
#   requires them for `kubernetes.aio` alone. `pip check` then names exactly these two requirements of
#   kubernetes, and image scanners no longer report aiohttp's advisories for code that is not there.
# - The generated `client/api` and `client/models` (845 models; 33 MiB of source and 24 MiB of
#   bytecode beside it) are kept as bytecode only (`compileall -b`, 23 MiB), the RECORD rewritten to
#   match: `import kubernetes.client` loads every one of them at each start, never their source. A
#   traceback through them shows no source line. Their docstrings stay: the client's watch reads a
#   method's return type from its docstring.
# - The standard library modules canary-step imports are byte-compiled: the python slim base deletes
#   every .pyc, and with a read-only root each start would compile them again (about 190 modules,
#   seconds on a small node).
# The wheel (about 100 KB) is copied, not only mounted: the layer cache must follow the source. BuildKit
# keys a RUN on its `--mount`'s source; buildah (`podman build`, what the tests use) does not, and reused an
# image with the old code after a change to step/ (tests/ship/test_image.py now checks the image's code).
COPY --from=build /dist/ /tmp/dist/
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/tmp/dist --find-links=/wheels canary-step \
 && rm -r /tmp/dist \
 && python -m pip uninstall -y -q aiohttp aiohttp-retry aiohappyeyeballs aiosignal frozenlist multidict propcache yarl \
 && site="$(python -c 'import kubernetes, pathlib; print(pathlib.Path(kubernetes.__file__).parent.parent)')" \
 && record="$(echo "$site"/kubernetes-*.dist-info/RECORD)" \
 && cd "$site" \
 && rm -r kubernetes/aio \
 && python -m compileall -q -b -j 0 "$site/kubernetes/client/api" "$site/kubernetes/client/models" \
 && find kubernetes/client/api kubernetes/client/models -name __pycache__ -prune -exec rm -r {} + \
 && find kubernetes/client/api kubernetes/client/models -name '*.py' -delete \
 && sed -i -E '\#^kubernetes/(aio|client/api|client/models)/#d' "$record" \
 && find kubernetes/client/api kubernetes/client/models -name '*.pyc' -printf '%p,,\n' | sort >> "$record" \
 && cd / \
 && python -c "import importlib, pkgutil, step, sys, sysconfig; [importlib.import_module(m.name) for m in pkgutil.walk_packages(step.__path__, 'step.')]; lib = sysconfig.get_path('stdlib') + '/'; print('\n'.join(sorted({f for f in (getattr(m, '__file__', None) or '' for m in list(sys.modules.values())) if f.startswith(lib) and f.endswith('.py')})))" > /tmp/stdlib-imported \
 && xargs -r python -m compileall -q < /tmp/stdlib-imported \
 && rm /tmp/stdlib-imported \
 && canary-step --version

ENTRYPOINT ["canary-step"]
CMD ["--help"]

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
# byte-compiles at install time (as root, readable by every UID), so runs write no .pyc files.
# `kubernetes/aio`, the client's asyncio copy (68 MiB of the 126 MiB client, with its bytecode), is
# removed in the same layer, with its lines of the package's RECORD so that pip's record still matches
# the files: canary-step never imports it (tests/unit/test_imports.py), and the image's tests run whole
# analyses without it (tests/ship/test_image.py).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels canary-step \
 && site="$(python -c 'import kubernetes, pathlib; print(pathlib.Path(kubernetes.__file__).parent.parent)')" \
 && rm -r "$site/kubernetes/aio" \
 && sed -i '\#^kubernetes/aio/#d' "$site"/kubernetes-*.dist-info/RECORD \
 && canary-step --version

ENTRYPOINT ["canary-step"]
CMD ["--help"]

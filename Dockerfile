# syntax=docker/dockerfile:1
# cce-exporter container image: a wheel built in one stage, installed into a virtual environment
# in a second, and only that environment copied onto a slim Python runtime (no compilers, no pip
# cache, no sources). Build and run:
#
#   docker build -t cce-exporter:dev .
#   docker run --rm -p 9877:9877 --env-file cce.env cce-exporter:dev
#
# Reproducible builds: pin the base image by digest. Look the digest up where a registry is
# reachable, then pass it (or write it into the default below):
#
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> -t cce-exporter .
#
# The tag alone (the default) is convenient but moves with every Debian and Python patch release.
# Python dependencies are pinned by requirements/constraints.txt (`python -m deploy.generate
# constraints`), so only the base image can change between two builds of one commit.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from, so edits to tests or docs do not invalidate the layer cache.
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
COPY exporter exporter
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/cce-exporter \
 && /opt/cce-exporter/bin/pip install --only-binary=:all: -c requirements/constraints.txt /dist/*.whl \
 && /opt/cce-exporter/bin/pip uninstall --yes pip setuptools \
 && /opt/cce-exporter/bin/cce-exporter --version

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="cce-exporter" \
      org.opencontainers.image.description="Prometheus exporter and hibernation scheduler for Huawei Cloud CCE" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/cce-exporter/cce-exporter" \
      org.opencontainers.image.url="https://github.com/cce-exporter/cce-exporter" \
      org.opencontainers.image.documentation="https://github.com/cce-exporter/cce-exporter/blob/main/docs/deployment.md" \
      org.opencontainers.image.base.name="python:3.11-slim-bookworm"

# A fixed UID/GID, so Kubernetes' runAsUser/fsGroup and volume permissions can name it. The state
# directory is a volume: the root filesystem is meant to be read-only.
RUN groupadd --system --gid 10001 cce-exporter \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin cce-exporter \
 && mkdir -p /var/lib/cce-exporter \
 && chown 10001:10001 /var/lib/cce-exporter

COPY --from=build /opt/cce-exporter /opt/cce-exporter

ENV PATH="/opt/cce-exporter/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CCE_EXPORTER_LISTEN="0.0.0.0:9877"

USER 10001:10001
WORKDIR /var/lib/cce-exporter
VOLUME ["/var/lib/cce-exporter"]
EXPOSE 9877
ENTRYPOINT ["cce-exporter"]
CMD ["run"]

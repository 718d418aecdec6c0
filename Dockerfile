# cph-exporter container image.
#   docker build -t cph-exporter --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm -p 9852:9852 cph-exporter --simulate
# Credentials come only at run time, from the environment (HUAWEICLOUD_SDK_AK,
# HUAWEICLOUD_SDK_SK, HUAWEICLOUD_SDK_PROJECT_ID); none are baked into the image.

ARG PYTHON_IMAGE=python:3.12-slim

# Build stage: install the package and its dependencies into a virtualenv.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY cph_exporter ./cph_exporter
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir .

# Runtime stage: the same base image, the virtualenv only, no build tools.
FROM ${PYTHON_IMAGE}
# The release in pyproject.toml; `docker build --build-arg VERSION=...` when it changes.
ARG VERSION=0.1.0
# The git commit built: `--build-arg REVISION=$(git rev-parse HEAD)`; cph_exporter_build_info
# shows it (the image holds no .git to read it from).
ARG REVISION=""
LABEL org.opencontainers.image.title="cph-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Huawei Cloud Cloud Phone Host (CPH) servers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/cph-exporter/cph-exporter" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/opt/venv/bin:$PATH \
    CPH_EXPORTER_REVISION=${REVISION} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CPH_EXPORTER_HEALTHCHECK_URL=http://127.0.0.1:9852/-/healthy
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin cph
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 9852
# slim has no curl: probe with Python. Override CPH_EXPORTER_HEALTHCHECK_URL when
# --web.listen-address moves the port, or with https:// under --web.config.file TLS (the probe
# talks to itself on loopback, so it skips certificate checks; probes need no basic auth).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request; urllib.request.urlopen(os.environ['CPH_EXPORTER_HEALTHCHECK_URL'], timeout=4, context=ssl._create_unverified_context())"]
ENTRYPOINT ["cph-exporter"]

# syntax=docker/dockerfile:1
# splade-serve images (see docs/operations.md).
#
#   docker build -t splade-serve .                                       # CPU service (default target: runtime)
#   docker build -t splade-serve:gpu --build-arg VARIANT=gpu .           # GPU service: CUDA base + onnxruntime-gpu
#   docker build -t splade-serve-builder --target builder .              # model fetch + index build (torch, CPU)
#
# Model artifacts and indexes are never baked into an image: they live in the /data volume, filled by the
# builder (docker-compose.yml runs it once before the api). Dependency layers come before source layers, so
# editing the code rebuilds only the last few small layers.

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.5.11

FROM ${UV_IMAGE} AS uv

# ---- The interpreter: the CPU base ships CPython 3.11; the CUDA base gets a standalone CPython 3.11 from uv
# (the project requires 3.11, which the CUDA images' Ubuntu does not package).
FROM ${PYTHON_IMAGE} AS python-cpu

FROM ${CUDA_IMAGE} AS python-gpu
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python
RUN uv python install 3.11 \
    && ln -s "$(uv python find 3.11)" /usr/local/bin/python3.11 \
    && ln -s /usr/local/bin/python3.11 /usr/local/bin/python \
    && chmod -R a+rX /opt/python

# (python-cpu or python-gpu above, so no tag: hadolint cannot see that it names a stage)
# hadolint ignore=DL3006
FROM python-${VARIANT} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- Dependency layers: only pyproject.toml is copied, so they are rebuilt when dependencies change.
FROM base AS deps
ARG VARIANT
WORKDIR /build
COPY pyproject.toml deploy/docker/requirements.py ./
RUN python3.11 -m venv /opt/venv \
    && python3.11 requirements.py --variant "${VARIANT}" > requirements.txt \
    && /opt/venv/bin/pip install -r requirements.txt

FROM deps AS builder-deps
# The builder exports and encodes on CPU: the CPU-only torch wheels are a fraction of the default ones' size.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python3.11 requirements.py --no-runtime --extra export > requirements-export.txt \
    && /opt/venv/bin/pip install --extra-index-url "${TORCH_INDEX_URL}" -r requirements-export.txt

# ---- What every image shares: a non-root user and the data volume's mount point, owned by that user so a
# fresh named volume is writable by the builder.
FROM base AS app-base
RUN groupadd --system --gid 10001 splade \
    && useradd --system --uid 10001 --gid splade --create-home --home-dir /home/splade splade \
    && mkdir -p /data /tmp/numba-cache \
    && chown splade:splade /data /tmp/numba-cache
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONPATH=/app \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    SPLADE_MODEL_DIR=/data/models/splade-tiny \
    SPLADE_INDEX_DIR=/data/indexes/default
WORKDIR /app

# ---- One-shot builder: fetch the default model, make the corpus, build the index into /data.
FROM app-base AS builder
COPY --from=builder-deps /opt/venv /opt/venv
COPY storage/ storage/
COPY models/ models/
COPY engine/ engine/
COPY index_builder/ index_builder/
COPY deploy/docker/prepare_data.py deploy/docker/prepare_data.py
USER 10001:10001
VOLUME ["/data"]
CMD ["python", "deploy/docker/prepare_data.py"]

# ---- The service (default target). It never imports torch, which this image does not contain.
FROM app-base AS runtime
COPY --from=deps /opt/venv /opt/venv
COPY storage/ storage/
COPY models/ models/
COPY engine/ engine/
COPY service/ service/
COPY deploy/docker/healthcheck.py deploy/docker/healthcheck.py
USER 10001:10001
VOLUME ["/data"]
# Inside a container the service must listen on every interface (its default is 127.0.0.1).
ENV SPLADE_HOST=0.0.0.0 \
    SPLADE_PORT=8000
EXPOSE 8000
# /readyz is 503 until the model and index are loaded and the JIT is warm: allow a generous start period.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "deploy/docker/healthcheck.py"]
CMD ["python", "-m", "service"]

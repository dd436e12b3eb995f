# syntax=docker/dockerfile:1
# Fit-AD: one image for every Kubeflow step (`fitad <stage>`), the MLflow tracking server (`mlflow server`) and the
# ad service (`fitad serve`). No model weights inside: they come from the hub / MLflow at run time and are kept on a
# volume at /cache.
#
#   make image                     # ghcr.io/fit-ad/fitad:<version>        (CPU torch wheel, python:3.11-slim)
#   make image VARIANT=cuda        # ghcr.io/fit-ad/fitad:<version>-cuda   (CUDA torch wheel, nvidia/cuda base)
#
# The base is picked by name (`FROM base-${VARIANT}`): BuildKit builds only the stage the target depends on.
ARG VARIANT=cpu
ARG UV_VERSION=0.13.9

# uv, only to install a standalone CPython 3.11 on the CUDA base (named stage: COPY --from takes no build args)
FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---------------------------------------------------------------- cpu: Debian slim with CPython 3.11
FROM python:3.11-slim-bookworm AS base-cpu
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu \
    FITAD_VARIANT_EXTRAS=""
# libglib2.0-0: opencv-python-headless loads libgthread from it (the headless wheel needs no libGL);
# libgomp1: OpenMP for onnxruntime and scikit-image.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/venv

# ---------------------------------------------------------------- cuda: CUDA runtime + cuDNN, CPython 3.11 via uv
# Keep the CUDA base and the torch wheel's CUDA (TORCH_CUDA) on the same major.minor when changing either.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS base-cuda
ARG TORCH_CUDA=cu128
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_CUDA} \
    FITAD_VARIANT_EXTRAS=",cuda" \
    UV_PYTHON_INSTALL_DIR=/opt/python
# Ubuntu 24.04 ships Python 3.12 only: uv installs a standalone CPython 3.11 (no PPA), then the same /opt/venv as cpu.
COPY --from=uv /uv /usr/local/bin/uv
# The same libraries as cpu (Ubuntu 24.04 names glib's package libglib2.0-0t64: the 64-bit time_t transition).
# The base's own uid-1000 user ("ubuntu") is removed: the fitad user needs that uid.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libglib2.0-0t64 libgomp1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && uv python install 3.11 \
 && uv venv --seed --python 3.11 /opt/venv \
 && rm /usr/local/bin/uv \
 && (userdel --remove ubuntu 2>/dev/null || true)

# ---------------------------------------------------------------- the image
FROM base-${VARIANT}
ARG TORCH_VERSION=2.13.0
ARG VERSION=0.1.0
LABEL org.opencontainers.image.ref.name="ghcr.io/fit-ad/fitad" \
      org.opencontainers.image.title="fitad" \
      org.opencontainers.image.description="Fit-AD: LoRA training steps, MLflow server and the ad service" \
      org.opencontainers.image.source="https://github.com/fit-ad/fitad" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (layer cache): only pyproject.toml, README.md (the package's readme) and src/ change them.
# torch first from its own index (CPU or CUDA build); the constraint keeps the project install from replacing it.
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install --upgrade "pip>=24" \
 && pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && echo "torch==${TORCH_VERSION}" > /tmp/torch.txt \
 && PIP_CONSTRAINT=/tmp/torch.txt pip install ".[train,prep,track,pipeline,serve,cluster${FITAD_VARIANT_EXTRAS}]" \
 && rm -rf /tmp/torch.txt build src/*.egg-info \
 && fitad --help >/dev/null

# The project files the CLI, the service and the pipeline read at run time (project_root() is the folder with
# params.yaml, so /app is the project); components/ and pipelines/ are the Kubeflow definitions.
COPY params.yaml dvc.yaml ./
COPY serving/ serving/
COPY components/ components/
COPY pipelines/ pipelines/

# Model caches on a volume, never in the image. The hub is NOT forced offline: a cluster may download.
# FITAD_HOME: fitad's own cache (tiny models, served adapters, the quota database).
ENV HF_HOME=/cache/huggingface \
    U2NET_HOME=/cache/u2net \
    TORCH_HOME=/cache/torch \
    FITAD_HOME=/cache/fitad \
    NUMBA_CACHE_DIR=/cache/numba \
    FITAD_PARAMS=/app/params.yaml \
    BENTOML_DO_NOT_TRACK=true \
    DO_NOT_TRACK=1

# Non-root user; /cache is created and owned before VOLUME so a fresh volume starts writable by uid 1000.
# /gcs /minio /s3 /oci: Kubeflow's v2 launcher puts a step's local artifact copies there (kfp's artifact_types), and
# a non-root step cannot create folders at the filesystem root itself.
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin fitad \
 && mkdir -p /cache/huggingface /cache/u2net /cache/torch /cache/fitad /cache/numba /gcs /minio /s3 /oci \
 && chown -R fitad:fitad /cache /gcs /minio /s3 /oci
VOLUME /cache
# numeric, so the kubelet can verify runAsNonRoot
USER 1000:1000

EXPOSE 3000
# `fitad serve` forwards SIGTERM/SIGINT to bentoml itself; Kubernetes and Kubeflow set their own command.
ENTRYPOINT ["fitad"]
CMD ["--help"]

# syntax=docker/dockerfile:1
#
# The offline ASR service (web app + HTTP API) with the pinned models baked in.
#
#   docker build -t asr-service .                                   # needs ModelScope, or:
#   docker build --build-arg MODELSCOPE_ENDPOINT=https://mirror.example -t asr-service .
#   docker run --gpus all -p 127.0.0.1:6006:6006 -v asr-state:/var/lib/asr asr-service
#
# The image never touches the network at run time. It binds 0.0.0.0 *inside* the container so
# that the published port works; publish it on the host's loopback only (127.0.0.1:6006) and
# reach it through an SSH tunnel, as with the systemd service. See docs/DEPLOYMENT.md.
# Browsers reach it as localhost, which the service answers to; under any other name (a reverse
# proxy's), list that name: -e ASR_SERVER__ALLOWED_HOSTS='["asr.example.org"]'.
#
# torch 2.13.0 from PyPI is built for CUDA 13.0 (it brings its own CUDA 13.0 and cuDNN 9 libraries
# as wheels), so the base is the CUDA 13.0 runtime with cuDNN: the host needs an NVIDIA driver
# for CUDA 13 and the NVIDIA container toolkit. Without a GPU the same image runs on the CPU.

ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# ---- build: a virtualenv with torch and the project ---------------------------------------------
FROM ${CUDA_IMAGE} AS build

ARG TORCH_SPEC="torch==2.13.0"
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/asr/venv/bin:$PATH

# Ubuntu's own python3 (3.12 on 24.04); versions follow the base image's pinned snapshot.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/asr/venv

# torch first and on its own, so that installing the project never swaps the build.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ${TORCH_SPEC}

COPY pyproject.toml README.md /src/
COPY asr /src/asr
RUN pip install --no-cache-dir /src \
    && python -c "import asr, app; print('asr', asr.__version__)"

# ---- models: `asr download` of the pinned revisions, as an unprivileged user ----------------------
FROM build AS models

# A ModelScope mirror for the build (empty: ModelScope's default endpoint).
ARG MODELSCOPE_ENDPOINT=""
ENV MODELSCOPE_CACHE=/opt/asr/models \
    ASR_CONFIG=/etc/asr/config.yaml

COPY config.yaml /etc/asr/config.yaml
# A home of its own: modelscope keeps a few files of its own under ~ while downloading.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/asr --shell /usr/sbin/nologin asr \
    && install -d -o asr -g asr /opt/asr/models
USER 10001:10001
ENV HOME=/home/asr
# Download, then verify every sha256 offline; both fail the build with a message that says why.
RUN MODELSCOPE_ENDPOINT="${MODELSCOPE_ENDPOINT}" asr download \
    && asr verify

# ---- runtime ---------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS runtime

ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin asr \
    && install -d -o asr -g asr -m 0700 /var/lib/asr /var/cache/asr \
    && install -d -m 0755 /opt/asr/run

COPY --from=build /opt/asr/venv /opt/asr/venv
# Root-owned and read-only for the service: a compromised process cannot alter the weights.
COPY --from=models --chown=0:0 /opt/asr/models /opt/asr/models
COPY config.yaml /etc/asr/config.yaml
# The web UI: not a Python module of the installed package; asr serve loads it from server.ui_path.
COPY app.py /opt/asr/app.py
COPY static /opt/asr/static

# Offline at run time: no hub look-ups, no telemetry. Settings come from the config file and
# ASR_* variables (e.g. -e ASR_QUEUE__MAX_SIZE=16, -e ASR_SERVER__AUTH='["alice:secret"]').
ENV PATH=/opt/asr/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ASR_CONFIG=/etc/asr/config.yaml \
    MODELSCOPE_CACHE=/opt/asr/models \
    ASR_SERVER__HOST=0.0.0.0 \
    ASR_SERVER__PORT=6006 \
    ASR_SERVER__UI_PATH=/opt/asr/app.py \
    ASR_STORAGE__STATE_DIR=/var/lib/asr \
    ASR_STORAGE__CACHE_DIR=/var/cache/asr \
    HOME=/var/cache/asr \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    DO_NOT_TRACK=1 \
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True

USER 10001:10001
# Gradio serves files from its working directory: give it an empty one.
WORKDIR /opt/asr/run
# The job history and results survive a new container; uploads and temp files need not.
VOLUME ["/var/lib/asr"]
EXPOSE 6006

# Healthy = the models are loaded and warmed (/readyz answers 200); a cold start may take minutes.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request as u; port = os.environ.get('ASR_SERVER__PORT', '6006'); sys.exit(0 if u.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=8).status == 200 else 1)"]

CMD ["asr", "serve"]

# The ESI image: every Kubeflow component, the PyTorchJob/TrainJob training pods, the MLflow server and the
# batch-scoring CronJob run it (k8s/, pipelines/). CUDA build of torch; runs as a non-root user and works with a
# read-only root filesystem (writes go to /tmp and the /data PVC).
#
#   docker build -t ghcr.io/esi-project/esi:0.1.0 .            # then push, and compile with ESI_IMAGE if renamed
#
# The serving image is not built here: it is the bento, containerized by BentoML after the pipeline built it:
#   bentoml containerize esi:latest -t ghcr.io/esi-project/esi-serving:0.1.0   (see docs/kubeflow.md)
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG PYTHON=3.11
ARG TORCH=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common ca-certificates \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends python${PYTHON} python${PYTHON}-venv libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && python${PYTHON} -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --upgrade pip uv

# torch first, from the CUDA index, so the project install below keeps it (and never pulls another build).
RUN uv pip install --python /opt/venv/bin/python "torch==${TORCH}" --index-url ${TORCH_INDEX}

WORKDIR /opt/esi
COPY pyproject.toml README.md ./
COPY .ci/constraints.txt .ci/constraints.txt
COPY esi esi
COPY components components
COPY pipelines pipelines
# The real sample records esi_full scores at its end (tests/fixtures/real, see its PROVENANCE.md).
COPY tests/fixtures/real tests/fixtures/real
# The real-ECG benchmark: prepare-real reads it, and pretraining reads its split.csv to leave its evaluation part out
COPY tests/fixtures/real_benchmark tests/fixtures/real_benchmark
# Editable install: components/, pipelines/ and the sample records resolve next to the package.
RUN uv pip install --python /opt/venv/bin/python --constraint .ci/constraints.txt -e . psycopg2-binary \
 && python -m compileall -q esi components pipelines

RUN useradd --uid 1000 --create-home --home-dir /home/esi esi && mkdir -p /data && chown esi /data
USER 1000
ENV HOME=/tmp \
    ESI_HOME=/data/esi/home \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true BENTOML_DO_NOT_TRACK=True \
    ANONYMIZED_TELEMETRY=False GX_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
CMD ["esi", "--help"]

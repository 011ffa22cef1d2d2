# Nightlab image: one image for both workers.
#   docker build -t nightlab .
#   docker run --rm nightlab --help
#   docker run --rm -e TEMPORAL_ADDRESS=host:7233 nightlab worker           # orchestrator worker
#   docker run --rm --gpus all --shm-size 16g -e TEMPORAL_ADDRESS=host:7233 \
#     --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#     --security-opt systempaths=unconfined nightlab gpu-worker --gpus all
#
# The --security-opt flags let bubblewrap (the sandbox of proposers and runs) make its namespaces
# and /proc inside the container (docker-compose.yml explains them); without them the workers run
# unsandboxed and say so. The training command a GPU worker runs is whatever the target repository
# needs, so this image ships what the bundled example target needs (python3 + numpy) and uv, which
# the autoresearch preset's `uv sync` and `uv run` use to install the target's own dependencies.
# To train with CUDA / PyTorch, build on top of your own stack: the runtime stage starts FROM
# ${BASE_IMAGE} (any Debian/Ubuntu glibc image with apt-get), and Node is copied in from the node
# image:
#
#   docker build -t nightlab-cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 .
#
# then install the target's Python deps in a derived image (FROM nightlab-cuda, RUN pip
# install torch ...) or point the campaign's run.command at `uv run ...`.
# Secrets (ANTHROPIC_API_KEY) are never baked in: pass them at run time (see
# docker-compose.yml), and only to the orchestrator worker.

ARG NODE_IMAGE=node:20-bookworm-slim
ARG BASE_IMAGE=node:20-bookworm-slim
# uv from PyPI (its wheel is the official static binary), pinned.
ARG UV_VERSION=0.13.8

# --- dependencies: production node_modules only (tsx is a runtime dependency) ---
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# --- node runtime, copied into BASE_IMAGE (a no-op when BASE_IMAGE is the node image) ---
FROM ${NODE_IMAGE} AS node

FROM ${BASE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# bubblewrap: the sandbox of proposers and runs. It needs user namespaces in the container
# (docker-compose.yml's x-sandbox); where it cannot run, `nightlab doctor` says so, every log
# header says `sandbox: NONE`, `nightlab status` raises an alarm, and `sandbox: required`
# refuses to run at all.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates git python3 python3-pip python3-venv python3-numpy tini bubblewrap \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
# uv and uvx into /usr/local/bin, a system folder every sandbox shows (a venv under /tmp would
# not be): installed with pip in a throwaway venv, so no system Python package is touched.
ARG UV_VERSION
RUN python3 -m venv /tmp/uv \
 && /tmp/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}" \
 && install -m 0755 /tmp/uv/bin/uv /tmp/uv/bin/uvx /usr/local/bin/ \
 && rm -rf /tmp/uv \
 && uv --version

# Campaign repos arrive on volumes that may be owned by another uid (or another host's
# worker): trust them, and give commits a fallback identity (the engine may set its own).
RUN git config --system --add safe.directory '*' \
 && git config --system user.name 'Nightlab' \
 && git config --system user.email 'nightlab@localhost'

WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY . .
# `nightlab` on PATH: `docker compose exec orchestrator nightlab status <tag>`.
RUN ln -s /app/bin/nightlab.mjs /usr/local/bin/nightlab

# Non-root by numeric uid (works whether or not BASE_IMAGE has a user 1000).
# /data is NIGHTLAB_HOME (campaign records, GPU worktree cache); /campaigns holds the
# campaign git repos; ~/.cache holds datasets and the uv and Hugging Face caches. All three
# are volumes in docker-compose.yml, which take their owner (uid 1000) from these folders.
RUN mkdir -p /data /campaigns /home/nightlab/.cache \
 && chown 1000:1000 /data /campaigns /home/nightlab /home/nightlab/.cache
ENV NODE_ENV=production \
    HOME=/home/nightlab \
    NIGHTLAB_HOME=/data \
    TEMPORAL_ADDRESS=127.0.0.1:7233 \
    TEMPORAL_NAMESPACE=default
USER 1000:1000

# An absolute path: `docker compose run -w /campaigns/<repo> ...` runs it from another folder.
ENTRYPOINT ["tini", "--", "node", "/app/bin/nightlab.mjs"]
CMD ["--help"]

# Nightlab image: one image for both workers.
#   docker build -t nightlab .
#   docker run --rm nightlab --help
#   docker run --rm -e TEMPORAL_ADDRESS=host:7233 nightlab worker           # orchestrator worker
#   docker run --rm --gpus all -e TEMPORAL_ADDRESS=host:7233 nightlab gpu-worker --gpus all
#
# The training command a GPU worker runs is whatever the target repository needs, so this
# image ships only what the bundled example target needs (python3 + numpy). To train with
# CUDA / PyTorch, build on top of your own stack: the runtime stage starts FROM ${BASE_IMAGE}
# (any Debian/Ubuntu glibc image with apt-get), and Node is copied in from the node image:
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
# (e.g. a seccomp profile that allows them); where it cannot run, `nightlab doctor` says so,
# every log header says `sandbox: NONE`, `nightlab status` raises an alarm, and `sandbox: required`
# refuses to run at all.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates git python3 python3-pip python3-venv python3-numpy tini bubblewrap \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node

# Campaign repos arrive on volumes that may be owned by another uid (or another host's
# worker): trust them, and give commits a fallback identity (the engine may set its own).
RUN git config --system --add safe.directory '*' \
 && git config --system user.name 'Nightlab' \
 && git config --system user.email 'nightlab@localhost'

WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY . .

# Non-root by numeric uid (works whether or not BASE_IMAGE has a user 1000).
# /data is NIGHTLAB_HOME (campaign records, GPU worktree cache); /campaigns holds the
# campaign git repos. Both are volumes in docker-compose.yml.
RUN mkdir -p /data /campaigns /home/nightlab \
 && chown 1000:1000 /data /campaigns /home/nightlab
ENV NODE_ENV=production \
    HOME=/home/nightlab \
    NIGHTLAB_HOME=/data \
    TEMPORAL_ADDRESS=127.0.0.1:7233 \
    TEMPORAL_NAMESPACE=default
USER 1000:1000

ENTRYPOINT ["tini", "--", "node", "bin/nightlab.mjs"]
CMD ["--help"]

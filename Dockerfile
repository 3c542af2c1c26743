# syntax=docker/dockerfile:1
# The twin bot. Two final targets, each with only the node-llama-cpp binaries it can use:
#   docker build --target cpu  -t twin-bot:cpu  .   # CPU inference (x64 or arm64)
#   docker build --target cuda -t twin-bot:cuda .   # NVIDIA GPU (x64): a 7B model at a human pace
# docker-compose.yml builds one of them (TWIN_BOT_TARGET). Both run `node bin/twin.js bot` as a
# non-root user, keep their state in the /data volume, and read models from wherever TWIN_MODEL
# points (compose mounts ./models at /models).
#
# The install and the pruning are one script, scripts/docker/install-app.sh; test/container.test.ts
# runs the same script in a scratch folder and checks what is left, since CI has no Docker engine.

ARG NODE_IMAGE=node:20.20.2-bookworm-slim
# CUDA 12: node-llama-cpp's CUDA 12 backend (@node-llama-cpp/linux-x64-cuda-ext) runs on NVIDIA
# drivers >= 525; its CUDA 13 one needs >= 580. Set CUDA_MAJOR=13 with a 13.x image to use that.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu22.04
ARG CUDA_MAJOR=12
# The npm the lockfile is written with (npm 11 honours package.json's "allowScripts").
ARG NPM_VERSION=11.19.1

# ── dependencies ────────────────────────────────────────────────────────────────────────────────
FROM ${NODE_IMAGE} AS deps
ARG NPM_VERSION
RUN npm install --global "npm@${NPM_VERSION}" && npm cache clean --force
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/docker/install-app.sh scripts/docker/install-app.sh

FROM deps AS deps-cpu
RUN --mount=type=cache,target=/root/.npm scripts/docker/install-app.sh cpu

FROM deps AS deps-cuda
ARG CUDA_MAJOR
RUN --mount=type=cache,target=/root/.npm CUDA_MAJOR="${CUDA_MAJOR}" scripts/docker/install-app.sh cuda

# ── cpu ─────────────────────────────────────────────────────────────────────────────────────────
FROM ${NODE_IMAGE} AS cpu
# bin/twin.js sets UV_THREADPOOL_SIZE=1 itself (see there why): leave it unset.
ENV NODE_ENV=production \
    NODE_LLAMA_CPP_POSTINSTALL=skip \
    TWIN_DATA_DIR=/data
WORKDIR /app
# Planning a run (/train, twin train) asks the trainer for its resolved config
# (`python -m twin_trainer config`): that needs Python and PyYAML only, never torch.
# openssh-client: `twin worker remote` (training on a rented GPU) uses the system `ssh`.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends openssh-client python3 python3-yaml \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown node:node /data
ENV TWIN_TRAINER_PYTHON=/usr/bin/python3
COPY --from=deps-cpu /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY migrations ./migrations
COPY src ./src
COPY trainer/configs ./trainer/configs
COPY trainer/twin_trainer ./trainer/twin_trainer
# The node image's own unprivileged user, "node", by number (Kubernetes' runAsNonRoot checks it).
USER 1000:1000
VOLUME ["/data"]
CMD ["node", "bin/twin.js", "bot"]

# ── cuda ────────────────────────────────────────────────────────────────────────────────────────
FROM ${NODE_IMAGE} AS node-binary

FROM ${CUDA_IMAGE} AS cuda
# Node itself is one self-contained binary (glibc >= 2.28); npm is not needed at run time.
COPY --from=node-binary /usr/local/bin/node /usr/local/bin/node
# A GPU newer than the build's targets compiles its kernels from PTX at first use; the compiled
# kernels are kept in the data volume, so only the first start after an upgrade pays for it.
ENV NODE_ENV=production \
    NODE_LLAMA_CPP_POSTINSTALL=skip \
    TWIN_DATA_DIR=/data \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUDA_CACHE_PATH=/data/cuda-cache \
    CUDA_CACHE_MAXSIZE=4294967296
# Python and PyYAML for planning runs, and the ssh client for remote workers, as in the cpu target.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends openssh-client python3 python3-yaml \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 twin \
    && useradd --uid 1000 --gid twin --create-home --shell /usr/sbin/nologin twin \
    && mkdir /data && chown twin:twin /data
ENV TWIN_TRAINER_PYTHON=/usr/bin/python3
WORKDIR /app
COPY --from=deps-cuda /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY migrations ./migrations
COPY src ./src
COPY trainer/configs ./trainer/configs
COPY trainer/twin_trainer ./trainer/twin_trainer
USER 1000:1000
VOLUME ["/data"]
CMD ["node", "bin/twin.js", "bot"]

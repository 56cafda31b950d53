# Container image of the SDXL LoRA service: one Dockerfile, two variants.
#
#   CPU (the default; Debian bookworm's libtorch 1.13, the one CI tests):
#     docker build -t sdxl-lora-service:0.1.0 .
#
#   CUDA (NVIDIA's CUDA runtime image and the libtorch of a PyTorch 2.x CUDA build):
#     docker build --build-arg VARIANT=cuda -t sdxl-lora-service:0.1.0-cuda .
#   (the Helm chart's tags: the version for CPU, version-cuda for CUDA; IMAGE_VERSION labels it)
#     optional: --build-arg CUDA_VERSION=12.8.1 --build-arg CUDA_UBUNTU=ubuntu24.04
#               --build-arg LIBTORCH_URL=<a libtorch shared-with-deps zip> --build-arg LIBTORCH_SHA256=<its sha256>
#               --build-arg TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
#
#   Run (ROLE=all: API and workers in one process; api / worker split them):
#     docker run -d --name sdxl -p 3000:3000 --stop-timeout 30 \
#       -v sdxl-data:/data -v sdxl-models:/models \
#       -e DATABASE_URL=postgres://user:pass@db:5432/sdxl sdxl-lora-service:0.1.0
#     docker run --rm -e DATABASE_URL=... sdxl-lora-service:0.1.0 node dist/src/cli/migrate.js
#     docker run --rm -e DATABASE_URL=... sdxl-lora-service:0.1.0 node dist/src/cli/create-api-key.js --tenant NAME
#     CUDA: add --gpus all (NVIDIA Container Toolkit on the host).
#   --stop-timeout must exceed SHUTDOWN_GRACE_MS (10 s by default), or Docker kills the
#   process before it has handed back its training runs and generations.
#
# Layout (needs BuildKit, Docker's builder since 23.0: it builds only the stages the
# chosen variant reaches; the legacy builder would build both variants):
#   node24        node:24-bookworm, where the CUDA stages take Node 24 from
#   build-cpu     node:24-bookworm + CI's apt packages (the toolchain)
#   build-cuda    nvidia/cuda …-cudnn-devel + Node 24 + a libtorch zip (the toolchain)
#   runtime-cpu   node:24-bookworm-slim + libtorch1.13, OpenBLAS, tini (no compiler, no -dev)
#   runtime-cuda  nvidia/cuda …-cudnn-runtime + Node 24 + libtorch's lib/ + tini
#   build         build-${VARIANT} + npm ci, the addon, tsc, npm prune
#   runtime       runtime-${VARIANT} + the app (last: the image)
# test/deploy/dockerfile.test.ts checks this layout, the runtime stages and .dockerignore.

ARG VARIANT=cpu
# CUDA 12.8 is the newest whose toolkit still ships libnvToolsExt: the CMake files of
# libtorch 2.x fall back to it when they find no NVTX3, and CUDA 12.9 removed it.
ARG CUDA_VERSION=12.8.1
ARG CUDA_UBUNTU=ubuntu24.04

# ---- Node 24 (LTS, like the CPU stages' bases): where the CUDA stages take node from ----
FROM node:24-bookworm AS node24

# ---- toolchain, CPU: exactly CI's packages (README's test command, less its test-only tools) ----
FROM node:24-bookworm AS build-cpu
# ARG, not ENV: it reaches apt-get in RUN without staying in the image's environment.
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y cmake g++ libtorch-dev nlohmann-json3-dev libgloo-dev libopenblas0-pthread \
 && rm -rf /var/lib/apt/lists/*
# Debian's libtorch-dev: the folder holding TorchConfig.cmake (scripts/build-native.mjs).
ENV LIBTORCH_DIR=/usr/lib/x86_64-linux-gnu/cmake/Torch

# ---- toolchain, CUDA: NVIDIA's devel image (nvcc, cuDNN headers), Node 24, libtorch ----
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-${CUDA_UBUNTU} AS build-cuda
# libtorch of PyTorch 2.x for CUDA 12.8 (cxx11 ABI: since 2.8 the only one, and the zip
# lost the "cxx11-abi-" in its name). Its CUDA minor must not exceed CUDA_VERSION's.
ARG LIBTORCH_URL=https://download.pytorch.org/libtorch/cu128/libtorch-shared-with-deps-2.8.0%2Bcu128.zip
# Optional: the zip's sha256, checked when given.
ARG LIBTORCH_SHA256=
# GPU architectures libtorch's CMake files compile CUDA code for (there is no GPU to
# detect during a build): A100, A10/RTX 30, L4/L40/RTX 40, H100/H200. native/CMakeLists.txt
# compiles our own kernels (native/kernels) for SDXL_CUDA_ARCHITECTURES (80;90) as well.
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake make g++ nlohmann-json3-dev ca-certificates curl unzip \
 && rm -rf /var/lib/apt/lists/*
# Node 24 from the official image: the binary, its headers (include/node, beside the
# binary, where build-native.mjs looks) and npm.
COPY --from=node24 /usr/local/bin/node /usr/local/bin/node
COPY --from=node24 /usr/local/include/node /usr/local/include/node
COPY --from=node24 /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && node --version && npm --version
RUN curl -fsSL --retry 3 -o /tmp/libtorch.zip "${LIBTORCH_URL}" \
 && if [ -n "${LIBTORCH_SHA256}" ]; then echo "${LIBTORCH_SHA256}  /tmp/libtorch.zip" | sha256sum -c -; fi \
 && unzip -q /tmp/libtorch.zip -d /opt \
 && rm /tmp/libtorch.zip \
 && test -f /opt/libtorch/share/cmake/Torch/TorchConfig.cmake
ENV LIBTORCH_DIR=/opt/libtorch \
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST}

# ---- runtime, CPU: Node 24 slim + the shared libraries of Debian's libtorch, no -dev ----
FROM node:24-bookworm-slim AS runtime-cpu
ARG DEBIAN_FRONTEND=noninteractive
# libtorch1.13 is what libtorch-dev (build-cpu) depends on; OpenBLAS takes over
# libblas.so.3 from the reference BLAS, about 30 times slower on a UNet. tini is PID 1.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libtorch1.13 libopenblas0-pthread tini \
 && rm -rf /var/lib/apt/lists/*

# ---- runtime, CUDA: NVIDIA's runtime image (CUDA and cuDNN libraries, no nvcc) ----
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-${CUDA_UBUNTU} AS runtime-cuda
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node24 /usr/local/bin/node /usr/local/bin/node
# Only libtorch's shared libraries: not its headers or CMake files.
COPY --from=build-cuda /opt/libtorch/lib /opt/libtorch/lib
# The CUDA driver caches JIT-compiled kernels under $HOME by default; there is no home,
# and Kubernetes mounts the root filesystem read-only with a writable /tmp.
ENV LD_LIBRARY_PATH=/opt/libtorch/lib:${LD_LIBRARY_PATH} \
    CUDA_CACHE_PATH=/tmp/cuda-cache

# ---- build: the same steps on either toolchain ----
FROM build-${VARIANT} AS build
WORKDIR /src
# Dependencies first: this layer is rebuilt only when package.json or the lockfile change.
COPY package.json package-lock.json ./
RUN npm ci
# The addon next (minutes of C++): rebuilt only when native/ or the build scripts change,
# not on every TypeScript change. It needs node-addon-api from node_modules and Node's
# headers, which build-native.mjs finds beside the node binary (/usr/local/include/node).
COPY scripts/ scripts/
COPY native/ native/
RUN node scripts/build-native.mjs --addon-only
COPY tsconfig.json tsconfig.build.json ./
# The web console is built against the typed client of the OpenAPI document.
COPY openapi/openapi.json openapi/openapi.json
COPY openapi/client/ openapi/client/
COPY src/ src/
# tsc writes dist/src/…, esbuild the console's dist/console/…; then devDependencies go,
# so node_modules is what production needs.
RUN npm run build \
 && npm prune --omit=dev


FROM runtime-${VARIANT} AS runtime
ARG VARIANT
ARG IMAGE_VERSION=dev
LABEL org.opencontainers.image.title="sdxl-lora-service" \
      org.opencontainers.image.description="Self-hosted REST service that trains SDXL LoRA adapters from a few photos and serves images from them (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${IMAGE_VERSION}"
# HOST: the service listens on 127.0.0.1 unless told otherwise, unreachable from outside
# a container. DATA_DIR and MODELS_DIR are the volumes below; /tmp is the only other
# place written, so a read-only root filesystem works.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/data \
    MODELS_DIR=/models
# An unprivileged user with a fixed numeric id (no login shell, no home); the volumes'
# folders are its own, so a plain `docker run` can write them. Kubernetes sets fsGroup.
RUN groupadd --gid 10001 sdxl \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --no-log-init sdxl \
 && mkdir -p /data /models \
 && chown 10001:10001 /data /models
# The app folder, owned by root and read-only to the service. The engine finds the
# addon at native/build/sdxl_engine.node below the folder of package.json, and
# src/paths.ts the project root as the folder holding package.json and migrations/.
WORKDIR /app
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/native/build/sdxl_engine.node ./native/build/sdxl_engine.node
# Every shared library the addon needs resolves in this image, and it loads; its build
# info (libtorch version; CUDA: false here, there is no GPU while building) goes to the log.
RUN if ldd native/build/sdxl_engine.node | grep 'not found'; then exit 1; fi \
 && node -e "const a = require('/app/native/build/sdxl_engine.node'); console.log(typeof a.buildInfo === 'function' ? a.buildInfo() : Object.keys(a))"
COPY package.json ./
COPY migrations/ ./migrations/
COPY openapi/openapi.json ./openapi/openapi.json
COPY --from=build /src/dist ./dist
VOLUME ["/data", "/models"]
EXPOSE 3000
# Liveness for plain Docker (Kubernetes uses the chart's probes). Slim images have no
# curl: Node's fetch does it, in exec form, so no shell is needed either.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# tini as PID 1 forwards SIGTERM to Node (which then hands back its work) and reaps zombies.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/src/server.js"]

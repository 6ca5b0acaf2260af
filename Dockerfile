# The feature store image: production dependencies installed from the lock file in a Node stage,
# the runtime on the official Bun image, as its non-root `bun` user.
#
# Base images are pinned by digest, with the tag kept beside it for the reader. The digests are
# build arguments because none could be read where this file was written (no Docker engine and
# no registry access there); they have no default, so an unpinned build fails instead of pulling
# whatever the tag points at today. Read them once, commit them to your build script, bump them
# deliberately:
#
#   docker buildx imagetools inspect node:20-bookworm-slim   # "Digest: sha256:..." (the index)
#   docker buildx imagetools inspect oven/bun:1.4.5-slim
#   docker build -t featurestore \
#     --build-arg NODE_DIGEST=sha256:<node index digest> \
#     --build-arg BUN_DIGEST=sha256:<bun index digest> .
#
# Use the digest of the multi-platform index (the first "Digest:" line), not of one platform's
# manifest, so the same pin builds on amd64 and arm64.
#
# No `# syntax=` line: it would pull the docker/dockerfile frontend image by an unpinned tag;
# nothing here needs more than the builder's built-in frontend.
ARG NODE_DIGEST
ARG BUN_DIGEST

# Stage 1: production dependencies only (prom-client, protobufjs and theirs), from the lock file.
FROM node:20-bookworm-slim@${NODE_DIGEST:?} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# `npm ci` installs exactly the locked versions, checks their integrity hashes and fails if the
# lock does not satisfy package.json. It checks that for devDependencies too, even with
# --omit=dev: a lock missing one dev tool's optional binary for another platform (as this one
# once lacked biome's and buf's darwin/win32/musl builds) fails the image build. The dev tools
# are never installed here, so they are dropped from this stage's package.json first; every
# production package still comes from the lock, verified.
RUN npm pkg delete devDependencies \
 && npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# Stage 2: the runtime.
FROM oven/bun:1.4.5-slim@${BUN_DIGEST:?} AS runtime
WORKDIR /app
ENV NODE_ENV=production \
    TCP_PORT=50051 \
    HTTP_PORT=8081 \
    GRPC_PORT=50052 \
    DATA_DIR=/app/data
COPY --from=deps --chown=bun:bun /app/node_modules ./node_modules
COPY --chown=bun:bun package.json ./
COPY --chown=bun:bun proto ./proto
COPY --chown=bun:bun src ./src
# The durable store (STORE=sqlite, the default) keeps features.db and its WAL in DATA_DIR, which
# the non-root user must own; mount a volume there (-v featurestore-data:/app/data) to keep the
# data across containers. One server per directory: the file is locked while a server runs.
RUN mkdir -p /app/data && chown bun:bun /app/data
VOLUME ["/app/data"]
USER bun
EXPOSE 50051 50052 8081
# Liveness: /health is 200 while the process serves, so Docker marks a hung or dead server
# unhealthy. It is not readiness: /ready (503 while loading or draining) is for load balancers
# and orchestrators deciding where to send traffic; a draining server is still healthy.
# The start period covers opening, checking and warming the cache from DATA_DIR, during which
# the listeners are not open yet (WARM_ENTITIES, default 100,000).
HEALTHCHECK --interval=10s --timeout=2s --start-period=60s --retries=3 \
  CMD ["bun", "-e", "fetch('http://127.0.0.1:'+(process.env.HTTP_PORT||8081)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: bun is PID 1 and receives SIGTERM itself; it drains and exits 0 within SHUTDOWN_TIMEOUT_MS.
STOPSIGNAL SIGTERM
ENTRYPOINT ["bun", "src/main.ts"]

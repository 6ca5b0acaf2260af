# syntax=docker/dockerfile:1
# Stage 1: production dependencies only (prom-client, protobufjs), installed from the lock file.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --omit=dev --ignore-scripts --no-audit --no-fund

# Stage 2: the runtime, on the official Bun image, as the image's non-root `bun` user.
FROM oven/bun:1.4.5-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production \
    TCP_PORT=50051 \
    HTTP_PORT=8081
COPY --from=deps --chown=bun:bun /app/node_modules ./node_modules
COPY --chown=bun:bun package.json ./
COPY --chown=bun:bun proto ./proto
COPY --chown=bun:bun src ./src
USER bun
EXPOSE 50051 8081
# The readiness endpoint is 200 only while the store serves and the server is not draining.
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD ["bun", "-e", "fetch('http://127.0.0.1:'+(process.env.HTTP_PORT||8081)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: bun is PID 1 and receives SIGTERM itself; it drains and exits 0 within SHUTDOWN_TIMEOUT_MS.
STOPSIGNAL SIGTERM
ENTRYPOINT ["bun", "src/main.ts"]

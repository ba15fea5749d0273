# assistd: the API, its workers and the code_interpreter sandbox in one image. See README.md, "Container image".
# The image is not built in CI (no Docker daemon there); test/ops/container.test.ts checks this file against the code.

# Build: every dependency (TypeScript, native modules built for this Debian), then only the production ones kept.
FROM node:24-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# The playground: bundled into dist/playground by scripts/build-playground.mjs.
COPY playground ./playground
COPY scripts/build-playground.mjs ./scripts/
RUN npm run build && npm prune --omit=dev

# Runtime: the same Debian release as the build (better-sqlite3's and sqlite-vec's binaries), no compiler.
FROM node:24-bookworm-slim
# code_interpreter runs Debian's Python (ASSISTD_SANDBOX_PYTHON=/usr/bin/python3) inside bubblewrap. The container
# must allow user namespaces for it (README.md, "Container image"); without them the server still runs and says
# why code cannot run (/healthz).
RUN apt-get update \
  && apt-get install -y --no-install-recommends bubblewrap python3 python3-numpy python3-pandas python3-matplotlib \
    python3-openpyxl python3-seaborn \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The official schema, served as GET /v1/openapi.json (read from ../../../spec relative to dist/api/routes).
COPY spec ./spec
ENV NODE_ENV=production \
  HOST=0.0.0.0 \
  PORT=8787 \
  ASSISTD_DATA_DIR=/data
RUN mkdir -p /data && chown node:node /data
VOLUME /data
USER node
EXPOSE 8787
# Processes without HTTP (`worker`) have nothing to answer: compose.yaml disables this check for them.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve"]

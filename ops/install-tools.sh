#!/usr/bin/env bash
# Installs the external servers glyphscan needs for its dev stack and tests:
# nats-server, redis-server, a MongoDB-wire server (FerretDB, or mongod if
# present) and Chromium. Idempotent: only what is missing is installed.
#
# Usage:
#   bash ops/install-tools.sh            install whatever is missing
#   bash ops/install-tools.sh paths      install if missing, then print KEY=path
#                                        lines on stdout (the only stdout output)
#   bash ops/install-tools.sh compose    only Docker Compose v2+ (for ops/deploy), then
#                                        print DOCKER_COMPOSE=path on stdout
#
# `install` also tries Docker Compose (ops/deploy/compose.yaml, test/ops/deploy.test.ts):
# when `docker compose` is missing it is built with Go and linked as the docker CLI plugin
# ${DOCKER_CONFIG:-~/.docker}/cli-plugins/docker-compose. A failure there is only a warning
# (the servers above do not need it); `compose` makes it an error.
#
# Progress and errors go to stderr. Safe to run concurrently (flock).
#
# Environment:
#   GLYPHSCAN_TOOLS       where built binaries live (default ~/.cache/glyphscan/bin)
#   GLYPHSCAN_MONGO_KIND  force "ferretdb" or "mongod" (default: mongod if on PATH)
set -euo pipefail

# Pinned versions. Binaries are stored with the version in their name, so
# bumping one of these rebuilds that tool on the next run.
NATS_VERSION=v2.15.2
FERRETDB_VERSION=v1.24.2
# Minimum Go needed to build them (the "go" lines of their go.mod files).
NATS_MIN_GO=1.26
FERRETDB_MIN_GO=1.24
# Our patch to FerretDB's SQLite backend (see install_mongo); a new name rebuilds the binary.
FERRETDB_PATCH=id-index
# An unpinned nats-server on PATH is accepted only from this version on
# (JetStream features we rely on); Debian bookworm ships 2.9, which is too old.
NATS_MIN_SYSTEM=2.10
# Docker Compose for ops/deploy (built only when `docker compose` is missing). Its go.mod has
# exclude directives, so it is built from a copy of the module source, not with `go install`.
COMPOSE_VERSION=v5.6.0
COMPOSE_MODULE=github.com/docker/compose/v5
COMPOSE_MIN_GO=1.26.8
# kustomize builds ops/deploy/k8s (base + one overlay per region) in test/ops/deploy.test.ts.
KUSTOMIZE_VERSION=v5.8.2
KUSTOMIZE_MIN_GO=1.26

TOOLS_DIR="${GLYPHSCAN_TOOLS:-$HOME/.cache/glyphscan/bin}"

log() { printf 'install-tools: %s\n' "$*" >&2; }

# Failures are collected so one run reports everything that is missing.
FAILURES=()
fail() {
  FAILURES+=("$*")
  log "ERROR: $*"
}

# version_ge A B: true when dotted version A >= B (a leading "v" is ignored).
version_ge() {
  local a="${1#v}" b="${2#v}"
  [[ "$(printf '%s\n%s\n' "$b" "$a" | sort -V | head -n1)" == "$b" ]]
}

go_version() {
  # "go1.26.8" -> "1.26.8"; empty when go is unavailable.
  command -v go >/dev/null 2>&1 || return 0
  local v
  v="$(go env GOVERSION 2>/dev/null || true)"
  printf '%s' "${v#go}"
}

# go_problem MIN WHAT: prints why Go cannot build WHAT (nothing when it can).
go_problem() {
  local min="$1" what="$2" gv
  gv="$(go_version)"
  if [[ -z "$gv" ]]; then
    printf 'go not found: install Go >= %s to build %s' "$min" "$what"
  elif ! version_ge "$gv" "$min"; then
    printf 'go %s is too old to build %s (needs Go >= %s): upgrade Go' "$gv" "$what" "$min"
  fi
}

# Scratch dirs live inside TOOLS_DIR so the final mv is an atomic rename.
SCRATCH=()
cleanup() {
  local d
  for d in "${SCRATCH[@]+"${SCRATCH[@]}"}"; do
    chmod -R u+w "$d" 2>/dev/null || true
    rm -rf "$d"
  done
}
trap cleanup EXIT

# Sets SCRATCH_DIR (not printed: a $(...) subshell would lose the SCRATCH entry).
SCRATCH_DIR=""
new_scratch() {
  SCRATCH_DIR="$(mktemp -d "$TOOLS_DIR/.build.XXXXXX")"
  SCRATCH+=("$SCRATCH_DIR")
}

# Go builds must not pick up a go.work or VCS info from wherever we happen to be.
go_env() {
  env GOWORK=off GOFLAGS=-buildvcs=false "$@"
}

NATS_SERVER=""
install_nats() {
  local target="$TOOLS_DIR/nats-server-$NATS_VERSION"
  if [[ -x "$target" ]]; then
    NATS_SERVER="$target"
    return 0
  fi
  local problem sys v
  problem="$(go_problem "$NATS_MIN_GO" "nats-server $NATS_VERSION")"
  if [[ -n "$problem" ]]; then
    # Without a usable Go, a recent enough nats-server already on PATH will do.
    sys="$(command -v nats-server || true)"
    if [[ -n "$sys" ]]; then
      v="$("$sys" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p' | head -n1)"
      if [[ -n "$v" ]] && version_ge "$v" "$NATS_MIN_SYSTEM"; then
        log "using nats-server $v from PATH ($sys) instead of building $NATS_VERSION"
        NATS_SERVER="$sys"
        return 0
      fi
      problem+=" (the nats-server on PATH, $sys, is v${v:-unknown}: too old)"
    fi
    fail "$problem, or put nats-server >= $NATS_MIN_SYSTEM on PATH"
    return 0
  fi
  log "building nats-server $NATS_VERSION with $(go env GOVERSION) (takes a minute or two)..."
  local tmp
  new_scratch
  tmp="$SCRATCH_DIR"
  if ! go_env GOBIN="$tmp" go install "github.com/nats-io/nats-server/v2@$NATS_VERSION" >"$tmp/build.log" 2>&1; then
    tail -n 30 "$tmp/build.log" >&2
    fail "could not build nats-server $NATS_VERSION with go install (see the output above)"
    return 0
  fi
  mv -f "$tmp/nats-server" "$target"
  NATS_SERVER="$target"
  log "installed $target"
}

KUSTOMIZE=""
install_kustomize() {
  local target="$TOOLS_DIR/kustomize-$KUSTOMIZE_VERSION"
  if [[ -x "$target" ]]; then
    KUSTOMIZE="$target"
    return 0
  fi
  local problem
  problem="$(go_problem "$KUSTOMIZE_MIN_GO" "kustomize $KUSTOMIZE_VERSION")"
  if [[ -n "$problem" ]]; then
    fail "$problem"
    return 0
  fi
  log "building kustomize $KUSTOMIZE_VERSION with $(go env GOVERSION) (takes a minute or two)..."
  local tmp
  new_scratch
  tmp="$SCRATCH_DIR"
  if ! go_env GOBIN="$tmp" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >"$tmp/build.log" 2>&1; then
    tail -n 30 "$tmp/build.log" >&2
    fail "could not build kustomize $KUSTOMIZE_VERSION with go install (see the output above)"
    return 0
  fi
  mv -f "$tmp/kustomize" "$target"
  KUSTOMIZE="$target"
  log "installed $target"
}

MONGO_KIND=""
MONGO_SERVER=""
install_mongo() {
  local kind="${GLYPHSCAN_MONGO_KIND:-}"
  if [[ -z "$kind" ]]; then
    if command -v mongod >/dev/null 2>&1; then kind=mongod; else kind=ferretdb; fi
  fi
  case "$kind" in
    mongod)
      MONGO_SERVER="$(command -v mongod || true)"
      if [[ -z "$MONGO_SERVER" ]]; then
        fail "GLYPHSCAN_MONGO_KIND=mongod but mongod is not on PATH"
        return 0
      fi
      MONGO_KIND=mongod
      log "using mongod from PATH ($MONGO_SERVER); FerretDB is not needed"
      return 0
      ;;
    ferretdb) ;;
    *)
      fail "GLYPHSCAN_MONGO_KIND must be 'ferretdb' or 'mongod', not '$kind'"
      return 0
      ;;
  esac

  local target="$TOOLS_DIR/ferretdb-$FERRETDB_VERSION-$FERRETDB_PATCH"
  if [[ -x "$target" ]]; then
    MONGO_KIND=ferretdb
    MONGO_SERVER="$target"
    return 0
  fi
  local problem
  problem="$(go_problem "$FERRETDB_MIN_GO" "ferretdb $FERRETDB_VERSION")"
  if [[ -n "$problem" ]]; then
    fail "$problem, or install MongoDB so that mongod is on PATH"
    return 0
  fi

  # A plain `go install .../cmd/ferretdb@version` builds a binary that panics at
  # start-up: FerretDB's build/version/version.txt is generated by its release
  # tooling and is not part of the module. So we build from a writable copy of
  # the module source with that file filled in.
  log "building ferretdb $FERRETDB_VERSION with $(go env GOVERSION) (takes a minute or two)..."
  local tmp src dir
  new_scratch
  tmp="$SCRATCH_DIR"
  if ! dir="$(go_env go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" 2>"$tmp/build.log" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')" || [[ -z "$dir" ]]; then
    tail -n 30 "$tmp/build.log" >&2
    fail "could not download the FerretDB $FERRETDB_VERSION module (is the Go module proxy reachable?)"
    return 0
  fi
  src="$tmp/src"
  cp -R "$dir" "$src"
  chmod -R u+w "$src" # the module cache is read-only
  printf '%s\n' "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  # The SQLite backend looks documents up by `_ferretdb_sjson->'$._id'`, but builds the _id
  # index on `_ferretdb_sjson->"_id"`; SQLite matches index expressions literally, so every
  # find/update/delete by _id scanned the whole table. Same value, indexable expression:
  local meta="$src/internal/backends/sqlite/metadata/metadata.go"
  if ! grep -q "IDColumn = DefaultColumn + \"->'\$._id'\"" "$meta"; then
    fail "ferretdb $FERRETDB_VERSION: the _id column expression moved; review the $FERRETDB_PATCH patch in ops/install-tools.sh"
    return 0
  fi
  sed -i "s|IDColumn = DefaultColumn + \"->'\$._id'\"|IDColumn = DefaultColumn + \`->\"_id\"\`|" "$meta"
  if ! (cd "$src" && go_env go build -trimpath -o "$tmp/ferretdb" ./cmd/ferretdb) >>"$tmp/build.log" 2>&1; then
    tail -n 30 "$tmp/build.log" >&2
    fail "could not build ferretdb $FERRETDB_VERSION (see the output above)"
    return 0
  fi
  # Refuse to install a binary that cannot even report its version.
  if ! "$tmp/ferretdb" --version >/dev/null 2>&1; then
    fail "the freshly built ferretdb $FERRETDB_VERSION does not run: $("$tmp/ferretdb" --version 2>&1 | head -n3)"
    return 0
  fi
  mv -f "$tmp/ferretdb" "$target"
  MONGO_KIND=ferretdb
  MONGO_SERVER="$target"
  log "installed $target"
}

# Debian packages: installed only when their command is missing.
APT_UPDATED=0
apt_install() {
  local pkg="$1" cmd="$2" sudo=()
  if ! command -v apt-get >/dev/null 2>&1; then
    fail "$cmd not found and apt-get is unavailable: install $pkg so that $cmd is on PATH"
    return 1
  fi
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      fail "$cmd not found and apt-get needs root: run 'sudo apt-get install $pkg'"
      return 1
    fi
  fi
  if [[ "$APT_UPDATED" -eq 0 ]]; then
    log "apt-get update..."
    if ! "${sudo[@]+"${sudo[@]}"}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2; then
      fail "apt-get update failed, so $pkg could not be installed"
      return 1
    fi
    APT_UPDATED=1
  fi
  log "apt-get install $pkg..."
  if ! "${sudo[@]+"${sudo[@]}"}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$pkg" >&2; then
    fail "apt-get install $pkg failed"
    return 1
  fi
  if ! command -v "$cmd" >/dev/null 2>&1; then
    fail "apt-get installed $pkg but $cmd is still not on PATH"
    return 1
  fi
}

REDIS_SERVER=""
install_redis() {
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server redis-server || return 0
    # The Debian package starts a system redis on 6379; we never use it, but
    # leave it alone rather than guess whether the user wants it.
  fi
  REDIS_SERVER="$(command -v redis-server)"
}

CHROMIUM=""
install_chromium() {
  if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium chromium || return 0
  fi
  CHROMIUM="$(command -v chromium)"
}

# Docker Compose: `docker compose` if it already works, else our build linked as the CLI plugin.
# Problems go to COMPOSE_PROBLEM, not FAILURES: only the deploy files need Compose.
DOCKER_COMPOSE=""
COMPOSE_PROBLEM=""
compose_problem() {
  COMPOSE_PROBLEM="$*"
  log "WARNING: $*"
}
install_compose() {
  local target="$TOOLS_DIR/docker-compose-$COMPOSE_VERSION" v
  if command -v docker >/dev/null 2>&1 && v="$(docker compose version --short 2>/dev/null)" && [[ -n "$v" ]]; then
    if version_ge "$v" 2; then
      # Ours (linked earlier) or the system's plugin: either way nothing to build.
      DOCKER_COMPOSE="$(readlink -f "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose" 2>/dev/null || true)"
      [[ -x "$DOCKER_COMPOSE" ]] || DOCKER_COMPOSE="docker compose"
      return 0
    fi
  fi
  if [[ ! -x "$target" ]]; then
    local problem
    problem="$(go_problem "$COMPOSE_MIN_GO" "docker compose $COMPOSE_VERSION")"
    if [[ -n "$problem" ]]; then
      compose_problem "$problem, or install the Docker Compose plugin (docker-compose-plugin)"
      return 0
    fi
    log "building docker compose $COMPOSE_VERSION with $(go env GOVERSION) (takes a few minutes)..."
    local tmp src dir
    new_scratch
    tmp="$SCRATCH_DIR"
    if ! dir="$(go_env go mod download -json "$COMPOSE_MODULE@$COMPOSE_VERSION" 2>"$tmp/build.log" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')" || [[ -z "$dir" ]]; then
      tail -n 30 "$tmp/build.log" >&2
      compose_problem "could not download the $COMPOSE_MODULE@$COMPOSE_VERSION module (is the Go module proxy reachable?)"
      return 0
    fi
    src="$tmp/src"
    cp -R "$dir" "$src"
    chmod -R u+w "$src" # the module cache is read-only
    if ! (cd "$src" && go_env go build -trimpath \
      -ldflags "-s -w -X $COMPOSE_MODULE/internal.Version=$COMPOSE_VERSION" \
      -o "$tmp/docker-compose" ./cmd) >>"$tmp/build.log" 2>&1; then
      tail -n 30 "$tmp/build.log" >&2
      compose_problem "could not build docker compose $COMPOSE_VERSION (see the output above)"
      return 0
    fi
    if ! "$tmp/docker-compose" version >/dev/null 2>&1; then
      compose_problem "the freshly built docker compose $COMPOSE_VERSION does not run"
      return 0
    fi
    mv -f "$tmp/docker-compose" "$target"
    log "installed $target"
  fi
  DOCKER_COMPOSE="$target"
  # Link it as the docker CLI plugin, unless a plugin of someone else's is there already.
  local plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins" link
  link="$plugins/docker-compose"
  if [[ -e "$link" && ! -L "$link" ]]; then
    log "leaving $link alone (not ours); $target runs standalone as well"
    return 0
  fi
  if mkdir -p "$plugins" && ln -sfn "$target" "$link"; then
    log "docker compose plugin: $link -> $target"
  else
    log "WARNING: could not link $link; $target runs standalone as well"
  fi
}

main() {
  local cmd="${1:-install}"
  case "$cmd" in
    install | paths | compose) ;;
    -h | --help)
      sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0" >&2
      return 0
      ;;
    *)
      log "unknown subcommand '$cmd' (expected: install | paths)"
      return 2
      ;;
  esac

  mkdir -p "$TOOLS_DIR"
  # Two test workers (or a test run and `stack.sh up`) may install at once:
  # serialise on a lock in the tools dir so builds and apt runs never overlap.
  exec 9>"$TOOLS_DIR/.install.lock"
  if ! flock -n 9; then
    log "waiting for another install-tools.sh run to finish..."
    if ! flock -w 1800 9; then
      log "ERROR: timed out waiting for the lock $TOOLS_DIR/.install.lock"
      return 1
    fi
  fi

  if [[ "$cmd" == compose ]]; then
    install_compose
    flock -u 9
    if [[ -z "$DOCKER_COMPOSE" ]]; then
      log "ERROR: docker compose is not available: ${COMPOSE_PROBLEM:-unknown problem}"
      return 1
    fi
    printf 'DOCKER_COMPOSE=%s\n' "$DOCKER_COMPOSE"
    return 0
  fi

  install_nats
  install_mongo
  install_redis
  install_chromium
  install_kustomize
  # Only an explicit install builds Compose: `paths` runs before every test and stack start.
  if [[ "$cmd" == install ]]; then install_compose; fi

  flock -u 9

  if [[ "${#FAILURES[@]}" -gt 0 ]]; then
    log "could not install everything (${#FAILURES[@]} problem(s)):"
    local f
    for f in "${FAILURES[@]}"; do log "  - $f"; done
    return 1
  fi

  if [[ "$cmd" == paths ]]; then
    printf 'NATS_SERVER=%s\n' "$NATS_SERVER"
    printf 'REDIS_SERVER=%s\n' "$REDIS_SERVER"
    printf 'MONGO_KIND=%s\n' "$MONGO_KIND"
    printf 'MONGO_SERVER=%s\n' "$MONGO_SERVER"
    printf 'CHROMIUM=%s\n' "$CHROMIUM"
    printf 'KUSTOMIZE=%s\n' "$KUSTOMIZE"
  fi
}

main "$@"

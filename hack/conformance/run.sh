#!/usr/bin/env bash
# `make conformance`: pgx's own test suite against PostgreSQL 15 directly and through dbproxy.
#
# Downloads github.com/jackc/pgx/v5 at PGX_VERSION with `go mod download` from the Go module proxy
# into a module cache outside the repository, keyed by version:
#
#   ${DBPROXY_CACHE:-$HOME/.cache/dbproxy}/pgx/<version>/src     a writable copy of the module
#   ${DBPROXY_CACHE:-$HOME/.cache/dbproxy}/pgx/<version>/certs   pgx's test CA and certificates
#   ${DBPROXY_CACHE:-$HOME/.cache/dbproxy}/gomod                 the Go module cache used for it
#
# then runs hack/conformance/conformance.ts (compiled), which starts the clusters and dbproxy and
# runs `go test -json` twice. The whole run is bounded by CONFORMANCE_TIMEOUT (default 60m).
#
# Environment: PGX_VERSION (default below), CONFORMANCE_TIMEOUT, CONFORMANCE_ARGS (extra
# arguments for the helper, e.g. "--modes proxy --packages pgconn --run TestConnect").
# Output: the report on stdout; .tmp/conformance/{report.txt,results.json,direct.jsonl,proxy.jsonl}.
set -euo pipefail

# Pinned: the newest release the Go module proxy served when this was written
# (`go list -m -versions github.com/jackc/pgx/v5`).
PGX_VERSION="${PGX_VERSION:-v5.13.0}"
CONFORMANCE_TIMEOUT="${CONFORMANCE_TIMEOUT:-60m}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
log() { printf '[conformance] %s\n' "$*" >&2; }
die() { printf '[conformance] ERROR: %s\n' "$*" >&2; exit 2; }

command -v go >/dev/null || die "go is not installed (needed to build and run pgx's tests)"
command -v flock >/dev/null || die "flock (util-linux) is not installed"

cache_root="${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}"
base="$cache_root/pgx/$PGX_VERSION"
export GOMODCACHE="$cache_root/gomod"
export GOFLAGS=-modcacherw
export GOTOOLCHAIN=local
mkdir -p "$base"
exec 9>"$base/.lock"
flock 9

if [[ ! -f "$base/src/.complete" ]]; then
  log "downloading github.com/jackc/pgx/v5@$PGX_VERSION from the Go module proxy"
  tmpmod="$(mktemp -d)"
  ( cd "$tmpmod" && go mod init conformance.local >/dev/null 2>&1 \
      && go mod download -json "github.com/jackc/pgx/v5@$PGX_VERSION" >"$tmpmod/download.json" ) \
    || die "go mod download github.com/jackc/pgx/v5@$PGX_VERSION failed"
  dir="$(sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p' "$tmpmod/download.json")"
  [[ -d "$dir" ]] || die "no module directory in go mod download's answer"
  rm -rf "$base/src" "$tmpmod"
  cp -r "$dir" "$base/src"
  chmod -R u+w "$base/src"
  # Its test dependencies (testify, puddle, x/text, ...) are checked against pgx's own go.sum.
  ( cd "$base/src" && go mod download ) || die "downloading pgx's dependencies failed"
  touch "$base/src/.complete"
fi

if [[ ! -f "$base/certs/.complete" ]]; then
  # pgx's testsetup/generate_certs.go, as its CI runs it: a CA, a localhost server certificate and
  # an encrypted client certificate (password certpw) for pgx_sslcert.
  log "generating pgx's test certificates"
  rm -rf "$base/certs"
  mkdir -p "$base/certs"
  ( cd "$base/certs" && go run "$base/src/testsetup/generate_certs.go" ) || die "generate_certs.go failed"
  chmod 644 "$base/certs"/*.pem "$base/certs"/*.crt
  chmod 600 "$base/certs"/*.key
  touch "$base/certs/.complete"
fi
flock -u 9

log "building pgx's test binaries (cached by go after the first run)"
( cd "$base/src" && go test -count=1 -run '^$' ./... >/dev/null ) || die "building pgx's tests failed"

bash "$root/hack/install-postgres.sh"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

cd "$root"
# shellcheck disable=SC2086
node="$root/node_modules/.bin/node"   # Node 24 from the node devDependency
[[ -x "$node" ]] || die "node_modules/.bin/node missing: run npm ci"
exec timeout --kill-after=30s "$CONFORMANCE_TIMEOUT" \
  "$node" dist/hack/conformance/conformance.js \
  --pgx-dir "$base/src" --certs "$base/certs" --pgx-version "$PGX_VERSION" ${CONFORMANCE_ARGS:-}

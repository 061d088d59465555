#!/usr/bin/env bash
# Builds pgbouncer-scrape (hack/pgbouncer-scrape/main.go: reads a PgBouncer-compatible admin
# console as prometheus-community's pgbouncer_exporter does, with the same driver, lib/pq) from Go
# modules and caches it outside the repo:
#
#   ${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}/pgbouncer-scrape/lib-pq-<version>/bin/pgbouncer-scrape
#
# Instant when the cached binary is current (a stamp holds a hash of go.mod, go.sum, main.go and
# the build flags). The last line on stdout is the binary's path:
# `SCRAPE=$(hack/pgbouncer-scrape/install.sh)`.
#
#   --print-path   print where the binary is (or would be) and exit
#   --quiet        say nothing when the binary is already up to date
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[pgbouncer-scrape/install] %s\n' "$*" >&2; }
die() { printf '[pgbouncer-scrape/install] ERROR: %s\n' "$*" >&2; exit 1; }

PQ_VERSION="$(sed -nE 's/^[[:space:]]*(require[[:space:]]+)?github\.com\/lib\/pq (v[^ ]+).*$/\2/p' "$here/go.mod")"
[[ -n "$PQ_VERSION" ]] || die "hack/pgbouncer-scrape/go.mod does not require github.com/lib/pq"
cache_root="${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}"
base="$cache_root/pgbouncer-scrape/lib-pq-$PQ_VERSION"
bin="$base/bin"
stamp="$base/stamp"

quiet=0
for arg in "$@"; do
  case "$arg" in
    --print-path) echo "$bin/pgbouncer-scrape"; exit 0 ;;
    --quiet) quiet=1 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

build_flags=(-trimpath -mod=readonly -ldflags "-s -w")
want_stamp="$({ cat "$here/go.mod" "$here/go.sum" "$here/main.go"; echo "cgo=0 ${build_flags[*]}"; } | sha256sum | cut -d' ' -f1)"
up_to_date() { [[ -x "$bin/pgbouncer-scrape" && -f "$stamp" && "$(cat "$stamp")" == "$want_stamp" ]]; }

if up_to_date; then
  [[ $quiet == 1 ]] || log "up to date: $bin/pgbouncer-scrape (lib/pq $PQ_VERSION)"
  echo "$bin/pgbouncer-scrape"
  exit 0
fi
command -v go >/dev/null || die "go is not installed (needed to build pgbouncer-scrape)"
mkdir -p "$base"
exec 9>"$base/.lock"
flock 9
if up_to_date; then
  echo "$bin/pgbouncer-scrape"
  exit 0
fi
log "building pgbouncer-scrape with lib/pq $PQ_VERSION and $(go version)"
t0=$SECONDS
staging="$base/bin.partial"
rm -rf "$staging" "$stamp"
mkdir -p "$staging"
(cd "$here" && CGO_ENABLED=0 GOWORK=off go build "${build_flags[@]}" -o "$staging/pgbouncer-scrape" .) || die "building pgbouncer-scrape failed"
# Sanity check: it runs and refuses a bad argument list.
set +e; "$staging/pgbouncer-scrape" >/dev/null 2>&1; rc=$?; set -e
[[ $rc == 2 ]] || die "pgbouncer-scrape without arguments exited $rc, not 2"
rm -rf "$bin"
mv "$staging" "$bin"
echo "$want_stamp" >"$stamp"
log "built $bin/pgbouncer-scrape in $((SECONDS - t0))s"
echo "$bin/pgbouncer-scrape"

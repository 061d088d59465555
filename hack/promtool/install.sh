#!/usr/bin/env bash
# Builds promtool (github.com/prometheus/prometheus/cmd/promtool, pinned by hack/promtool/go.mod's
# tool directive and go.sum) from Go modules and caches it outside the repo:
#
#   ${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}/promtool/prometheus-<module version>/bin/promtool
#
# Built with -tags remove_all_sd: promtool checks rules, queries and tests without any service
# discovery plugin, and leaving the cloud SDKs out makes the cold build minutes shorter. Instant
# when the cached binary is current. The last line on stdout is the binary's path:
# `PROMTOOL=$(hack/promtool/install.sh)`.
#
#   --print-path   print where the binary is (or would be) and exit
#   --quiet        say nothing when the binary is already up to date
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[promtool/install] %s\n' "$*" >&2; }
die() { printf '[promtool/install] ERROR: %s\n' "$*" >&2; exit 1; }

PROM_VERSION="$(sed -nE 's/^[[:space:]]*(require[[:space:]]+)?github\.com\/prometheus\/prometheus (v[^ ]+).*$/\2/p' "$here/go.mod")"
[[ -n "$PROM_VERSION" ]] || die "hack/promtool/go.mod does not require github.com/prometheus/prometheus"
cache_root="${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}"
base="$cache_root/promtool/prometheus-$PROM_VERSION"
bin="$base/bin"
stamp="$base/stamp"

quiet=0
for arg in "$@"; do
  case "$arg" in
    --print-path) echo "$bin/promtool"; exit 0 ;;
    --quiet) quiet=1 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

# The module version v0.X.Y is Prometheus 3.X.Y; stamped into `promtool --version`.
rest="${PROM_VERSION#v0.}"
minor="${rest%%.*}"
release="3.${minor#3}.${rest#*.}"
build_flags=(-tags remove_all_sd -trimpath -mod=readonly -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release")
want_stamp="$({ cat "$here/go.mod" "$here/go.sum"; echo "cgo=0 ${build_flags[*]}"; } | sha256sum | cut -d' ' -f1)"
up_to_date() { [[ -x "$bin/promtool" && -f "$stamp" && "$(cat "$stamp")" == "$want_stamp" ]]; }

if up_to_date; then
  [[ $quiet == 1 ]] || log "up to date: $bin/promtool (prometheus $PROM_VERSION)"
  echo "$bin/promtool"
  exit 0
fi
command -v go >/dev/null || die "go is not installed (needed to build promtool)"
mkdir -p "$base"
exec 9>"$base/.lock"
flock 9
if up_to_date; then
  echo "$bin/promtool"
  exit 0
fi
log "building promtool from github.com/prometheus/prometheus $PROM_VERSION with $(go version) (a cold build takes several minutes)"
t0=$SECONDS
staging="$base/bin.partial"
rm -rf "$staging" "$stamp"
mkdir -p "$staging"
(cd "$here" && CGO_ENABLED=0 GOWORK=off go build "${build_flags[@]}" -o "$staging/promtool" github.com/prometheus/prometheus/cmd/promtool) || die "building promtool failed"
got="$("$staging/promtool" --version 2>&1)" || die "promtool --version failed: $got"
[[ "$got" == *"$release"* ]] || die "promtool reports '$got', expected $release"
rm -rf "$bin"
mv "$staging" "$bin"
echo "$want_stamp" >"$stamp"
log "built $bin/promtool in $((SECONDS - t0))s"
echo "$bin/promtool"

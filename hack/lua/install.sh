#!/usr/bin/env bash
# Builds luahealth (hack/lua/main.go: Argo CD's Lua health-check sandbox on gopher-lua, pinned in
# hack/lua/go.mod to the versions Argo CD itself pins) and caches it outside the repo:
#
#   ${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}/lua/gopher-lua-<GOPHER_LUA_VERSION>/bin/luahealth
#
# Instant when the cached binary is current (a stamp file holds a hash of go.mod, go.sum,
# main.go and the build flags); a cold build takes a few seconds once the two small modules are
# in the Go module cache. The last line on stdout is the path of the binary:
# `LUAHEALTH=$(hack/lua/install.sh)`.
#
#   --print-path   print where the binary is (or would be) and exit
#   --quiet        say nothing when the binary is already up to date
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[lua/install] %s\n' "$*" >&2; }
die() { printf '[lua/install] ERROR: %s\n' "$*" >&2; exit 1; }

# The cache directory is named after the gopher-lua version go.mod requires, so the two cannot drift.
GOPHER_LUA_VERSION="$(sed -nE 's/^[[:space:]]*(require[[:space:]]+)?github\.com\/yuin\/gopher-lua (v[^ ]+).*$/\2/p' "$here/go.mod")"
[[ -n "$GOPHER_LUA_VERSION" ]] || die "hack/lua/go.mod does not require github.com/yuin/gopher-lua"

cache_root="${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}"
base="$cache_root/lua/gopher-lua-$GOPHER_LUA_VERSION"
bin="$base/bin"
stamp="$base/stamp"

quiet=0
for arg in "$@"; do
  case "$arg" in
    --print-path) echo "$bin/luahealth"; exit 0 ;;
    --quiet) quiet=1 ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

build_flags=(-trimpath -mod=readonly -ldflags "-s -w")
want_stamp="$(
  { cat "$here/go.mod" "$here/go.sum" "$here/main.go"; echo "cgo=0 ${build_flags[*]}"; } | sha256sum | cut -d' ' -f1
)"

up_to_date() { [[ -x "$bin/luahealth" && -f "$stamp" && "$(cat "$stamp")" == "$want_stamp" ]]; }

if up_to_date; then
  [[ $quiet == 1 ]] || log "up to date: $bin/luahealth (gopher-lua $GOPHER_LUA_VERSION)"
  echo "$bin/luahealth"
  exit 0
fi

command -v go >/dev/null || die "go is not installed (needed to build luahealth)"
command -v flock >/dev/null || die "flock (util-linux) is not installed"
mkdir -p "$base"
exec 9>"$base/.lock"
flock 9
# Another process may have finished the build while we waited.
if up_to_date; then
  echo "$bin/luahealth"
  exit 0
fi

log "building luahealth with gopher-lua $GOPHER_LUA_VERSION and $(go version)"
t0=$SECONDS
staging="$base/bin.partial"
rm -rf "$staging" "$stamp"
mkdir -p "$staging"
(cd "$here" && CGO_ENABLED=0 GOWORK=off go build "${build_flags[@]}" -o "$staging/luahealth" .) \
  || die "building luahealth failed (see the Go errors above)"
# Sanity check: the sandbox runs a script and has no string library, as in Argo CD.
got="$(echo '{"kind":"Probe"}' | "$staging/luahealth" <(echo 'return {status = "Healthy", message = obj.kind .. tostring(string)}'))" \
  || die "luahealth does not run a script"
[[ "$got" == '{"status":"Healthy","message":"Probenil"}' ]] || die "luahealth printed '$got'"
rm -rf "$bin"
mv "$staging" "$bin"
echo "$want_stamp" >"$stamp"
log "built $bin/luahealth in $((SECONDS - t0))s"
echo "$bin/luahealth"

#!/usr/bin/env bash
# `make conformance-asyncpg`: asyncpg's own test suite against PostgreSQL 15 directly and through
# dbproxy. asyncpg is the Python asyncio driver issue 17 measured besides pgx.
#
# From PyPI, pinned, into a cache outside the repository keyed by version:
#
#   ${DBPROXY_CACHE:-$HOME/.cache/dbproxy}/asyncpg/<version>/src    the source distribution (its tests/)
#   ${DBPROXY_CACHE:-$HOME/.cache/dbproxy}/asyncpg/<version>/venv   the released wheel, pytest, distro
#
# then runs hack/conformance/asyncpg.ts (compiled). Bounded by CONFORMANCE_TIMEOUT (default 30m).
# Environment: ASYNCPG_VERSION, CONFORMANCE_TIMEOUT, CONFORMANCE_ARGS (e.g. "--modes proxy -k listen").
# Output: the report on stdout; .tmp/conformance-asyncpg/{report.txt,direct.xml,proxy.xml,*.log}.
set -euo pipefail

# Pinned: the newest release on PyPI when this was written.
ASYNCPG_VERSION="${ASYNCPG_VERSION:-0.32.0}"
CONFORMANCE_TIMEOUT="${CONFORMANCE_TIMEOUT:-30m}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
log() { printf '[conformance-asyncpg] %s\n' "$*" >&2; }
die() { printf '[conformance-asyncpg] ERROR: %s\n' "$*" >&2; exit 2; }

command -v python3 >/dev/null || die "python3 is not installed"
command -v flock >/dev/null || die "flock (util-linux) is not installed"

cache_root="${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}"
base="$cache_root/asyncpg/$ASYNCPG_VERSION"
mkdir -p "$base"
exec 9>"$base/.lock"
flock 9

if [[ ! -f "$base/src/.complete" ]]; then
  log "downloading asyncpg $ASYNCPG_VERSION's source distribution from PyPI"
  tmp="$(mktemp -d)"
  # PyPI's simple index (PEP 503) names the file and its sha256, which is checked.
  python3 - "$ASYNCPG_VERSION" "$tmp/asyncpg.tar.gz" <<'PY' || die "downloading asyncpg $ASYNCPG_VERSION's sdist from PyPI failed"
import hashlib, re, sys, urllib.request
version, dest = sys.argv[1], sys.argv[2]
index = urllib.request.urlopen("https://pypi.org/simple/asyncpg/", timeout=60).read().decode()
m = re.search(r'href="([^"#]*/asyncpg-' + re.escape(version) + r'\.tar\.gz)#sha256=([0-9a-f]{64})"', index)
if not m:
    sys.exit(f"asyncpg {version}: no sdist in PyPI's index")
data = urllib.request.urlopen(m.group(1), timeout=300).read()
if hashlib.sha256(data).hexdigest() != m.group(2):
    sys.exit("sha256 mismatch")
open(dest, "wb").write(data)
PY
  rm -rf "$base/src"
  mkdir -p "$base/src"
  tar -xzf "$tmp/asyncpg.tar.gz" -C "$base/src" --strip-components=1
  rm -rf "$tmp"
  # The tests must import the released wheel (compiled), not this source tree's package.
  mv "$base/src/asyncpg" "$base/src/asyncpg.source"
  touch "$base/src/.complete"
fi

if [[ ! -f "$base/venv/.complete" ]]; then
  log "installing asyncpg==$ASYNCPG_VERSION, pytest and distro into a virtualenv"
  rm -rf "$base/venv"
  python3 -m venv "$base/venv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  "$base/venv/bin/pip" install -q --disable-pip-version-check "asyncpg==$ASYNCPG_VERSION" pytest 'distro~=1.9.0' \
    || die "pip install failed"
  touch "$base/venv/.complete"
fi
flock -u 9

bash "$root/hack/install-postgres.sh"
cd "$root"
node="$root/node_modules/.bin/node"   # Node 24 from the node devDependency
[[ -x "$node" ]] || die "node_modules/.bin/node missing: run npm ci"
# shellcheck disable=SC2086
exec timeout --kill-after=30s "$CONFORMANCE_TIMEOUT" \
  "$node" dist/hack/conformance/asyncpg.js \
  --tests-dir "$base/src" --python "$base/venv/bin/python" --asyncpg-version "$ASYNCPG_VERSION" ${CONFORMANCE_ARGS:-}

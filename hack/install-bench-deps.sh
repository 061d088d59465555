#!/usr/bin/env bash
# Installs what `make bench` needs on Debian bookworm. Idempotent: does nothing when all is there.
#
#  1. From the machine's own apt sources: pgbouncer (bookworm: 1.18) and postgresql-15 (pgbench).
#  2. PgBouncer 1.24 from Debian trixie, for the pgbench -M prepared comparison (1.18 cannot do
#     prepared statements in transaction mode). It is not installed: its .deb and the library
#     packages the loader reports it needs (libc6 first, then whatever `ldd`/`ld.so --list` still
#     resolves outside the folder) are unpacked with `dpkg-deb -x` into a cache folder outside the
#     repository, and it runs through that folder's own ld-linux loader with --library-path.
#     The trixie packages come from the same Debian mirror the machine's apt sources name, read at
#     run time; apt verifies them with the machine's debian-archive-keyring. Nothing is added to
#     /etc/apt: a private sources list and lists directory live in the cache folder.
#
# Cache folder: $DBPROXY_CACHE_DIR, else /var/cache/dbproxy as root (pgbouncer runs as the
# postgres user, who cannot read /root), else ${XDG_CACHE_HOME:-~/.cache}/dbproxy.
# Result: $CACHE/pgbouncer-1.24/pgbouncer.json {binary, loader, libraryPath, version}, read by
# hack/pgbouncer.ts. Set DBPROXY_SKIP_PGBOUNCER_124=1 to skip step 2.
set -euo pipefail

log() { printf 'install-bench-deps: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
  as_root() { sudo "$@"; }
else
  as_root() { die "need root (or sudo) to run: $*"; }
fi

# ---------------------------------------------------------------------------------------------
# 1. Debian packages from the machine's own sources.
missing=()
[ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
[ -x /usr/lib/postgresql/15/bin/pgbench ] || missing+=(postgresql-15)
[ -x /usr/lib/postgresql/15/bin/psql ] || missing+=(postgresql-client-15)
command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Debian's pgbouncer package enables its own service on 127.0.0.1:6432 where services can start;
  # the benchmark starts its own instances on other ports and does not use it.
else
  log "pgbouncer $(/usr/sbin/pgbouncer --version 2>/dev/null | head -n1 | awk '{print $2}') and postgresql-15 already installed"
fi

# ---------------------------------------------------------------------------------------------
# 2. PgBouncer 1.24 from trixie, unpacked into the cache folder.
[ "${DBPROXY_SKIP_PGBOUNCER_124:-}" = 1 ] && { log "DBPROXY_SKIP_PGBOUNCER_124=1: skipping PgBouncer 1.24"; exit 0; }

if [ -n "${DBPROXY_CACHE_DIR:-}" ]; then
  cache="$DBPROXY_CACHE_DIR"
elif [ "$(id -u)" -eq 0 ]; then
  cache=/var/cache/dbproxy
else
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy"
fi
dest="$cache/pgbouncer-1.24"
want_version='1.24'

# The loader and library path of an unpacked root (merged /usr: libraries live under usr/lib).
multiarch() {
  case "$(dpkg --print-architecture)" in
    amd64) echo x86_64-linux-gnu ;;
    arm64) echo aarch64-linux-gnu ;;
    *) die "unsupported architecture $(dpkg --print-architecture)" ;;
  esac
}
loader_of() {
  local root=$1 f
  for f in "$root"/usr/lib64/ld-linux-x86-64.so.2 "$root/usr/lib/$(multiarch)"/ld-linux-*.so.* "$root"/lib64/ld-linux-x86-64.so.2 "$root/lib/$(multiarch)"/ld-linux-*.so.*; do
    [ -e "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}
libpath_of() {
  local root=$1 ma
  ma=$(multiarch)
  echo "$root/usr/lib/$ma:$root/lib/$ma:$root/usr/lib:$root/lib"
}

installed_ok() {
  [ -f "$dest/pgbouncer.json" ] || return 1
  local loader
  loader=$(loader_of "$dest/root") || return 1
  "$loader" --library-path "$(libpath_of "$dest/root")" "$dest/root/usr/sbin/pgbouncer" --version 2>/dev/null | grep -q "PgBouncer $want_version"
}

if installed_ok; then
  log "PgBouncer $want_version already unpacked in $dest"
  exit 0
fi

# The Debian mirror apt uses here: first apt's own view of its targets, else the source files.
debian_mirror() {
  local uri
  uri=$(apt-get indextargets --format '$(TARGET_OF) $(REPO_URI) $(RELEASE)' 2>/dev/null |
    awk '$1 == "deb" && $3 !~ /-/ && $2 ~ /\/debian\/?$/ { print $2; exit }')
  if [ -z "$uri" ]; then
    # One-line sources: "deb [opts] URI suite components".
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed -e 's/#.*//' -e 's/\[[^]]*\]//' |
      awk '$1 == "deb" && $2 ~ /\/debian\/?$/ && $3 !~ /-/ { print $2; exit }')
  fi
  if [ -z "$uri" ]; then
    # deb822 sources: stanzas with Types/URIs/Suites.
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
      function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no" && suites ~ /(^| )[a-z]+( |$)/) { n = split(uris, u, " "); for (i = 1; i <= n; i++) if (u[i] ~ /\/debian\/?$/) { print u[i]; found = 1; exit } } types = uris = suites = ""; enabled = "" }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:" { $1 = ""; types = $0 }
      tolower($1) == "uris:" { $1 = ""; uris = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      END { if (!found) flush() }')
  fi
  [ -n "$uri" ] || return 1
  echo "${uri%/}/"
}

mirror=$(debian_mirror) || die "cannot find a Debian mirror in the apt sources (/etc/apt/sources.list*)"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || die "$keyring missing (apt-get install debian-archive-keyring)"
log "fetching PgBouncer $want_version from trixie at $mirror into $dest"

work="$dest.tmp"
rm -rf "$work"
mkdir -p "$work/apt/lists/partial" "$work/apt/sources.list.d" "$work/apt/cache/archives/partial" "$work/debs" "$work/cand" "$work/root"
echo "deb [signed-by=$keyring target=Packages] $mirror trixie main" >"$work/apt/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$work/apt/sources.list"
  -o "Dir::Etc::SourceParts=$work/apt/sources.list.d"
  -o "Dir::State::Lists=$work/apt/lists"
  -o "Dir::Cache=$work/apt/cache"
  -o "Dir::State::status=/dev/null"
  -o "Acquire::Languages=none"
  -o "APT::Sandbox::User=$(id -un)"
  -o "Debug::NoLocking=1"
)
apt-get "${apt_opts[@]}" -q update >"$work/update.log" 2>&1 || { cat "$work/update.log" >&2; die "apt-get update for trixie failed"; }

candidate=$(apt-cache "${apt_opts[@]}" policy pgbouncer | awk '/Candidate:/ { print $2 }')
case "$candidate" in
  "$want_version".*) log "trixie pgbouncer candidate: $candidate" ;;
  *) die "trixie offers pgbouncer '${candidate:-none}', not $want_version.x" ;;
esac

# Downloads packages into $2 (a directory), quietly.
download() {
  local dir=$1
  shift
  (cd "$dir" && apt-get "${apt_opts[@]}" -q download "$@" >>"$work/download.log" 2>&1) || { cat "$work/download.log" >&2; die "apt-get download $* failed"; }
}

declare -A have=()
unpack() { # unpack DEB: extract and record the package
  local deb=$1 name
  name=$(dpkg-deb -f "$deb" Package)
  dpkg-deb -x "$deb" "$work/root"
  have[$name]=1
  log "  unpacked $(basename "$deb")"
}

download "$work/debs" pgbouncer libc6
for deb in "$work"/debs/*.deb; do unpack "$deb"; done

binary="$work/root/usr/sbin/pgbouncer"
[ -x "$binary" ] || die "pgbouncer binary missing from the package"
log "ldd names: $(ldd "$binary" 2>/dev/null | awk '/=>/ { printf "%s ", $1 }')"

# Libraries the unpacked loader resolves outside the folder (or not at all): what is still needed.
# `ld.so --list` is what ldd runs; here it runs with the folder's own loader and library path.
still_needed() {
  local loader
  loader=$(loader_of "$work/root") || die "no ld-linux loader in the unpacked libc6"
  "$loader" --library-path "$(libpath_of "$work/root")" --list "$binary" 2>&1 |
    awk -v root="$work/root/" '
      /=> not found/ { print $1; next }
      /=>/ { if (index($3, root) != 1) print $1 }'
}

for round in 1 2 3 4 5 6 7 8; do
  mapfile -t need < <(still_needed | sort -u)
  [ "${#need[@]}" -eq 0 ] && break
  log "round $round: still needed: ${need[*]}"
  # Candidates: library packages (Section: libs) the unpacked packages depend on, not yet unpacked.
  mapfile -t cands < <(apt-cache "${apt_opts[@]}" depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "${!have[@]}" 2>/dev/null |
    awk '$1 == "Depends:" || $1 == "PreDepends:" { print $2 }' | tr -d '<>' | sort -u)
  todo=()
  for c in "${cands[@]}"; do
    [ -n "${have[$c]:-}" ] && continue
    section=$(apt-cache "${apt_opts[@]}" show --no-all-versions "$c" 2>/dev/null | awk '$1 == "Section:" { print $2; exit }')
    case "$section" in libs | oldlibs) todo+=("$c") ;; esac
  done
  [ "${#todo[@]}" -eq 0 ] && die "cannot find packages for: ${need[*]}"
  rm -f "$work"/cand/*.deb
  download "$work/cand" "${todo[@]}"
  progress=0
  for deb in "$work"/cand/*.deb; do
    files=$(dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's#.*/##')
    for so in "${need[@]}"; do
      if grep -qxF "$so" <<<"$files"; then
        mv "$deb" "$work/debs/"
        unpack "$work/debs/$(basename "$deb")"
        progress=1
        break
      fi
    done
  done
  [ "$progress" -eq 1 ] || die "none of ${todo[*]} provides ${need[*]}"
done
mapfile -t need < <(still_needed | sort -u)
[ "${#need[@]}" -eq 0 ] || die "libraries still resolved outside the folder: ${need[*]}"

loader=$(loader_of "$work/root")
version=$("$loader" --library-path "$(libpath_of "$work/root")" "$binary" --version | head -n1)
case "$version" in
  "PgBouncer $want_version"*) ;;
  *) die "unpacked pgbouncer does not run: '$version'" ;;
esac

# Move into place; keep the .debs (provenance), drop apt's lists.
rm -rf "$work/apt" "$work/cand" "$dest"
mv "$work" "$dest"
chmod -R go+rX "$dest"
loader=$(loader_of "$dest/root")
cat >"$dest/pgbouncer.json" <<EOF
{
  "binary": "$dest/root/usr/sbin/pgbouncer",
  "loader": "$loader",
  "libraryPath": "$(libpath_of "$dest/root")",
  "version": "$version",
  "package": "pgbouncer $candidate (Debian trixie)",
  "packages": "$(cd "$dest/debs" && ls *.deb | tr '\n' ' ' | sed 's/ $//')"
}
EOF
log "PgBouncer ready: $version via $loader"

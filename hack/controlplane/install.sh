#!/usr/bin/env bash
# Builds the binaries of the test control plane from Go modules and caches them outside the repo:
#
#   kube-apiserver, kube-controller-manager, kubectl   from k8s.io/kubernetes  (build/kubernetes)
#   etcd                                               from go.etcd.io/etcd/server/v3 (build/etcd)
#
# Versions are pinned in versions.env and in the two build modules' go.mod/go.sum (which this
# script checks agree). Binaries go to
#
#   ${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}/controlplane/k8s-<KUBE_VERSION>/bin
#
# next to a stamp file (a hash of the pins and build flags). When the stamp matches and every
# binary is present the script does nothing, so running it again is instant. Concurrent runs
# serialise on a lock file. Progress goes to stderr; the last line on stdout is the bin
# directory, so callers can do `BIN=$(hack/controlplane/install.sh)`.
#
# Options / environment:
#   --print-bin-dir     print the bin directory and exit (no build, no check)
#   --force             rebuild even when the stamp matches
#   --quiet             say nothing when the binaries are already up to date
#   DBPROXY_BUILD_JOBS  parallel Go package builds (default 2: the build is memory and CPU heavy)
#
# A cold build takes a while (tens of minutes on 2 cores: kube-apiserver alone compiles ~2000
# packages); the Go build cache makes later rebuilds much faster.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache_root="${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}"
base="$cache_root/controlplane/k8s-$KUBE_VERSION"
bin="$base/bin"
stamp="$base/stamp"
jobs="${DBPROXY_BUILD_JOBS:-2}"
binaries=(etcd kube-apiserver kube-controller-manager kubectl)

log() { printf '[controlplane/install] %s\n' "$*" >&2; }
die() { printf '[controlplane/install] ERROR: %s\n' "$*" >&2; exit 1; }

force=0
quiet=0
for arg in "$@"; do
  case "$arg" in
    --print-bin-dir) echo "$bin"; exit 0 ;;
    --force) force=1 ;;
    --quiet) quiet=1 ;;
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

kube_mod="$here/build/kubernetes"
etcd_mod="$here/build/etcd"

# The pins in versions.env and go.mod must agree, or the stamp would lie about what was built.
grep -qE "^[[:space:]]*(require[[:space:]]+)?k8s\.io/kubernetes $KUBE_VERSION( |$)" "$kube_mod/go.mod" \
  || die "build/kubernetes/go.mod does not require k8s.io/kubernetes $KUBE_VERSION (versions.env)"
staging_version="v0.${KUBE_VERSION#v1.}"
if grep -E '=> k8s\.io/[a-z0-9-]+ v' "$kube_mod/go.mod" | grep -vq " $staging_version\$"; then
  die "build/kubernetes/go.mod replaces some k8s.io staging module with a version other than $staging_version"
fi
grep -qE "^[[:space:]]*(require[[:space:]]+)?go\.etcd\.io/etcd/server/v3 $ETCD_VERSION( |$)" "$etcd_mod/go.mod" \
  || die "build/etcd/go.mod does not require go.etcd.io/etcd/server/v3 $ETCD_VERSION (versions.env)"

kube_minor="${KUBE_VERSION#v1.}"; kube_minor="${kube_minor%%.*}"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor"
  version_ldflags+=" -X $pkg.gitCommit=$KUBE_GIT_COMMIT -X $pkg.gitTreeState=clean -X $pkg.buildDate=$KUBE_BUILD_DATE"
done
kube_ldflags="-s -w$version_ldflags"
etcd_ldflags="-s -w"
build_flags=(-p "$jobs" -trimpath -mod=readonly)

want_stamp="$(
  {
    cat "$here/versions.env" "$kube_mod/go.mod" "$kube_mod/go.sum" "$etcd_mod/go.mod" "$etcd_mod/go.sum"
    echo "kube_ldflags=$kube_ldflags etcd_ldflags=$etcd_ldflags cgo=0 flags=-trimpath"
  } | sha256sum | cut -d' ' -f1
)"

up_to_date() {
  [[ $force == 0 && -f "$stamp" && "$(cat "$stamp")" == "$want_stamp" ]] || return 1
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}

if up_to_date; then
  [[ $quiet == 1 ]] || log "up to date: $bin (kubernetes $KUBE_VERSION, etcd $ETCD_VERSION)"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || die "go is not installed (needed to build the control plane binaries)"
command -v flock >/dev/null || die "flock (util-linux) is not installed"

mkdir -p "$base"
exec 9>"$base/.lock"
log "waiting for the build lock $base/.lock" 
flock 9
# Another process may have finished the build while we waited.
if up_to_date; then
  log "up to date: $bin (built by a concurrent run)"
  echo "$bin"
  exit 0
fi

log "building kubernetes $KUBE_VERSION and etcd $ETCD_VERSION into $bin with $(go version) (-p $jobs)"
export CGO_ENABLED=0
staging="$base/bin.partial"
rm -rf "$staging"
mkdir -p "$staging"
rm -f "$stamp"

build() { # build <module dir> <package> <output name> <ldflags>
  local dir="$1" pkg="$2" out="$3" ldflags="$4" t0=$SECONDS
  log "go build $pkg -> $out"
  (cd "$dir" && go build "${build_flags[@]}" -ldflags "$ldflags" -o "$staging/$out" "$pkg") \
    || die "building $pkg failed (see the Go errors above)"
  log "built $out in $((SECONDS - t0))s ($(du -h "$staging/$out" | cut -f1))"
}

t_start=$SECONDS
(cd "$kube_mod" && go mod download) || die "go mod download failed in $kube_mod (is GOPROXY reachable?)"
(cd "$etcd_mod" && go mod download) || die "go mod download failed in $etcd_mod (is GOPROXY reachable?)"
build "$etcd_mod" go.etcd.io/etcd/server/v3 etcd "$etcd_ldflags"
build "$kube_mod" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$kube_ldflags"
build "$kube_mod" k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager "$kube_ldflags"
build "$kube_mod" k8s.io/kubernetes/cmd/kubectl kubectl "$kube_ldflags"

# Sanity checks: the binaries run and report the pinned versions.
got="$("$staging/kube-apiserver" --version 2>&1)" || die "kube-apiserver --version failed: $got"
[[ "$got" == *"$KUBE_VERSION"* ]] || die "kube-apiserver reports '$got', expected $KUBE_VERSION"
got="$("$staging/kubectl" version --client 2>&1)" || die "kubectl version --client failed: $got"
[[ "$got" == *"$KUBE_VERSION"* ]] || die "kubectl reports '$got', expected $KUBE_VERSION"
got="$("$staging/etcd" --version 2>&1)" || die "etcd --version failed: $got"
[[ "$got" == *"${ETCD_VERSION#v}"* ]] || die "etcd reports '$got', expected $ETCD_VERSION"

rm -rf "$bin"
mv "$staging" "$bin"
echo "$want_stamp" >"$stamp"
log "done in $((SECONDS - t_start))s: $bin"
echo "$bin"

#!/usr/bin/env bash
# Builds helm from Go modules (helm.sh/helm/v3/cmd/helm at a pinned version) and caches it outside
# the repo, next to the test control plane:
#
#   ${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}/helm/helm-<HELM_VERSION>/bin/helm
#
# Instant when the cached binary is current (a stamp file records the version and build flags).
# A cold build takes about a minute when the Go module cache already holds the Kubernetes
# modules (hack/controlplane/install.sh fetches most of them), a few minutes otherwise. The last
# line on stdout is the path of the helm binary: `HELM=$(hack/helm/install.sh)`.
#
#   --print-path   print where the binary is (or would be) and exit
#   --quiet        say nothing when the binary is already up to date
set -euo pipefail

HELM_VERSION=v3.19.5

cache_root="${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}"
base="$cache_root/helm/helm-$HELM_VERSION"
bin="$base/bin"
stamp="$base/stamp"

log() { printf '[helm/install] %s\n' "$*" >&2; }
die() { printf '[helm/install] ERROR: %s\n' "$*" >&2; exit 1; }

quiet=0
for arg in "$@"; do
  case "$arg" in
    --print-path) echo "$bin/helm"; exit 0 ;;
    --quiet) quiet=1 ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

# The Kubernetes version helm assumes without a cluster (helm template, helm lint): helm's own
# Makefile stamps the minor of the k8s.io modules it builds with (v0.34 for helm 3.19).
K8S_MINOR=34
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$K8S_MINOR"
done
want_stamp="helm.sh/helm/v3/cmd/helm@$HELM_VERSION cgo=0 -trimpath ldflags=$ldflags"

up_to_date() { [[ -x "$bin/helm" && -f "$stamp" && "$(cat "$stamp")" == "$want_stamp" ]]; }

if up_to_date; then
  [[ $quiet == 1 ]] || log "up to date: $bin/helm ($HELM_VERSION)"
  echo "$bin/helm"
  exit 0
fi

command -v go >/dev/null || die "go is not installed (needed to build helm)"
command -v flock >/dev/null || die "flock (util-linux) is not installed"
mkdir -p "$base"
exec 9>"$base/.lock"
flock 9
if up_to_date; then
  echo "$bin/helm"
  exit 0
fi

log "building helm $HELM_VERSION with $(go version)"
t0=$SECONDS
staging="$base/bin.partial"
rm -rf "$staging" "$stamp"
mkdir -p "$staging"
# `go install pkg@version` builds in module mode from helm's own go.mod/go.sum (checked against
# the Go checksum database), outside any workspace of ours.
(cd "$base" && GOBIN="$staging" CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off \
  go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") \
  || die "building helm failed (see the Go errors above)"
got="$("$staging/helm" version --short 2>&1)" || die "helm version failed: $got"
[[ "$got" == "$HELM_VERSION"* ]] || die "helm reports '$got', expected $HELM_VERSION"
rm -rf "$bin"
mv "$staging" "$bin"
echo "$want_stamp" >"$stamp"
log "built $bin/helm in $((SECONDS - t0))s"
echo "$bin/helm"

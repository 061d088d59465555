# Shared by hack/kind/install.sh and hack/kind/cluster.sh (sourced, not run).
#
# Two ways to run kind, chosen once per run (DBPROXY_KIND_PROVIDER=docker|podman overrides):
#
#   docker  a Docker daemon answers `docker info`: stock kind, its released node image, images
#           pulled from their registries (a laptop with Docker, the GitHub workflow).
#   podman  no Docker daemon (this project's build machine): Debian's podman + runc, kind's
#           podman provider, and a node image and stand-in images that hack/kind/install.sh
#           builds locally without any container registry. podman keeps its own configuration,
#           storage and networks under the cache directory below, apart from any other podman
#           use on the machine.

kind_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kind_repo="$(cd "$kind_here/../.." && pwd)"
# shellcheck source=versions.env
source "$kind_here/versions.env"
# shellcheck source=../controlplane/versions.env
source "$kind_repo/hack/controlplane/versions.env"

kind_cache_root="${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}"
# Everything the podman path builds lives here, keyed by the kind and Kubernetes versions.
KIND_BASE="$kind_cache_root/kind/kind-$KIND_VERSION-k8s-$KUBE_VERSION"
KIND_BIN="$KIND_BASE/bin"
# The node image the podman path builds (podman's storage under $KIND_BASE/containers).
KIND_OFFLINE_NODE_IMAGE="localhost/dbproxy-kind/node:$KUBE_VERSION"

kind_log() { printf '[kind/%s] %s\n' "${kind_script:-lib}" "$*" >&2; }
kind_die() {
  printf '[kind/%s] ERROR: %s\n' "${kind_script:-lib}" "$*" >&2
  exit 1
}

# docker or podman (see the top of this file).
kind_provider() {
  case "${DBPROXY_KIND_PROVIDER:-}" in
    docker | podman) echo "$DBPROXY_KIND_PROVIDER"; return ;;
    "") ;;
    *) kind_die "DBPROXY_KIND_PROVIDER must be docker or podman, not '$DBPROXY_KIND_PROVIDER'" ;;
  esac
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker; else echo podman; fi
}

# The private podman configuration of the podman path: written on first use, then exported for
# this shell and everything it starts (kind runs podman itself and must see the same settings).
#
#  - runc, not crun: crun refuses the hybrid cgroup v1 layout of machines like this one.
#  - cgroupfs: PID 1 is not systemd here.
#  - rlimits below the hard limits: without CAP_SYS_RESOURCE podman's defaults (RLIMIT_NPROC
#    above the hard limit) make every container fail with "error setting rlimit type 6".
#  - its own storage, run directory and network configuration: nothing shared with other
#    podman users of the machine, and a network this project creates is visible to no one else.
#  - short names resolve to docker.io/library/..., the way Docker and containerd resolve them,
#    so `FROM node:24-bookworm` finds the local stand-in (builds never pull: --pull=never).
kind_podman_env() {
  local dir="$KIND_BASE/containers"
  local run_dir
  run_dir="/run/dbproxy-kind-$(printf '%s' "$KIND_BASE" | sha256sum | cut -c1-12)"
  mkdir -p "$dir/networks" "$dir/storage" "$run_dir"
  local nofile nproc
  nofile="$(ulimit -Hn)"; [[ "$nofile" == unlimited || "$nofile" -gt 20000 ]] && nofile=20000
  nproc="$(ulimit -Hu)"; [[ "$nproc" == unlimited || "$nproc" -gt 20000 ]] && nproc=20000
  local want
  want="$(cat <<EOF
# Written by hack/kind/lib.sh: podman settings of the dbproxy kind runs (see there).
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
tmp_dir = "$run_dir/libpod"
volume_path = "$dir/storage/volumes"

[network]
network_backend = "netavark"
network_config_dir = "$dir/networks"
EOF
)"
  [[ -f "$dir/containers.conf" && "$(cat "$dir/containers.conf")" == "$want" ]] || printf '%s\n' "$want" >"$dir/containers.conf"
  cat >"$dir/storage.conf" <<EOF
# Written by hack/kind/lib.sh.
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$run_dir/storage"
EOF
  cat >"$dir/registries.conf" <<'EOF'
# Written by hack/kind/lib.sh. Nothing is pulled (builds use --pull=never); short names resolve
# as Docker resolves them.
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
  export CONTAINERS_CONF="$dir/containers.conf"
  export CONTAINERS_STORAGE_CONF="$dir/storage.conf"
  export CONTAINERS_REGISTRIES_CONF="$dir/registries.conf"
  export KIND_EXPERIMENTAL_PROVIDER=podman
}

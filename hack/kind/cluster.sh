#!/usr/bin/env bash
# A throwaway kind cluster for `make e2e-kind` (hack/kind/e2e.sh) and the kind end-to-end tests
# (test/kind), with Docker or, without it, podman (hack/kind/lib.sh says which and why).
#
#   cluster.sh up --dir DIR [--name NAME] [--owner-pid PID]
#       Makes what is missing (hack/kind/install.sh, cached), then creates a network of the
#       cluster's own, the kind cluster on it and DIR/kubeconfig (never the user's kubeconfig),
#       and waits until the node and CoreDNS are ready. DIR/state.env records everything created,
#       so that `down` removes exactly that. With --owner-pid, a watcher in its own session runs
#       `down` when that process ends without doing so itself (killed, Ctrl-C, a crashed test run).
#   cluster.sh images --dir DIR [--no-client]
#       Builds the image from the repository's Dockerfile (unchanged) as $DBPROXY_IMAGE (default
#       dbproxy:e2e) and, unless --no-client, its build stage as $DBPROXY_CLIENT_IMAGE (default
#       dbproxy-e2e-client:e2e: Node 24, node-postgres and the compiled tests, for client pods),
#       and loads them into the cluster.
#   cluster.sh down --dir DIR
#       Deletes the cluster, its network, and /lib/modules if `up` had to create it; idempotent.
#
# Networks. podman: an internal network (no route off the machine, no DNS forwarding) with a
# 10.251.N.0/24 subnet that no other network here uses and its own bridge name; pods get no IP
# masquerade either, so nothing the cluster runs can send traffic anywhere but this machine. The
# kubeconfig talks to the API server at the node's address on that bridge. docker: a network of
# the cluster's own (Docker picks a free subnet), and the API server on 127.0.0.1 as kind does;
# images are pulled from their registries there.
#
# Environment: KIND_NODE_IMAGE (docker only; default: kind's), DBPROXY_KIND_PROVIDER,
# DBPROXY_IMAGE, DBPROXY_CLIENT_IMAGE.
set -euo pipefail
kind_script=cluster
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
self="$kind_here/cluster.sh"

cmd="${1:-}"
[[ -n "$cmd" ]] || kind_die "usage: cluster.sh up|images|down --dir DIR [--name NAME] [--owner-pid PID]"
shift
dir="" name="" owner="" client=1
while (($# > 0)); do
  case "$1" in
    --no-client) client=0; shift ;;
    --dir) dir="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    --owner-pid) owner="$2"; shift 2 ;;
    *) kind_die "unknown argument: $1" ;;
  esac
done
[[ -n "$dir" ]] || kind_die "--dir is required"

IMAGE="${DBPROXY_IMAGE:-dbproxy:e2e}"
CLIENT_IMAGE="${DBPROXY_CLIENT_IMAGE:-dbproxy-e2e-client:e2e}"
[[ "$IMAGE" == *:* && "$CLIENT_IMAGE" == *:* ]] || kind_die "DBPROXY_IMAGE and DBPROXY_CLIENT_IMAGE must be name:tag"

# What `up` created, one variable a line; `down` reads it back.
state="$dir/state.env"
record() { printf '%s=%q\n' "$1" "$2" >>"$state"; }

provider_env() { # PROVIDER: PATH with kind and kubectl; podman's private configuration
  export PATH="$KIND_BIN:$PATH"
  [[ "$1" == podman ]] && kind_podman_env
  return 0
}

# A loopback port below 32768 that nothing listens on, for the API server's port mapping (empty
# without ss, as on macOS: kind then picks one).
free_port() {
  local p
  command -v ss >/dev/null || return 0
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 12000))
    ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
  kind_die "no free loopback port found between 20000 and 32000"
}

up() {
  [[ ! -e "$state" ]] || kind_die "$state exists: this directory already holds a cluster (cluster.sh down --dir $dir)"
  command -v kubectl >/dev/null || [[ "$(kind_provider)" == podman ]] \
    || kind_die "kubectl is not installed (https://kubernetes.io/docs/tasks/tools/)"
  local provider t0=$SECONDS
  provider="$(kind_provider)"
  mkdir -p "$dir"
  : >"$state"
  record PROVIDER "$provider"
  bash "$kind_here/install.sh" --quiet >/dev/null || kind_die "hack/kind/install.sh failed"
  provider_env "$provider"
  local suffix
  suffix="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
  name="${name:-dbproxy-$suffix}"
  [[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]] || kind_die "cluster name must be lower-case letters, digits and dashes: '$name'"
  if kind get clusters 2>/dev/null | grep -qx "$name"; then
    kind_die "a kind cluster named $name already exists; delete it (kind delete cluster --name $name) or choose another name"
  fi
  local network="kind-$name"
  record NAME "$name"
  record NETWORK "$network"
  if [[ -n "$owner" ]]; then start_watcher; fi

  # A network of the cluster's own.
  if [[ "$provider" == podman ]]; then
    local n subnet created=0
    for n in $(shuf -i 0-255 -n 32); do
      subnet="10.251.$n.0/24"
      if podman network create --internal --disable-dns --subnet "$subnet" --gateway "${subnet%.0/24}.1" \
        --label dbproxy.io/kind-cluster="$name" "$network" >/dev/null 2>"$dir/network.err"; then
        created=1
        break
      fi
      grep -qiE 'already|in use|overlap' "$dir/network.err" || kind_die "podman network create failed: $(cat "$dir/network.err")"
    done
    [[ $created == 1 ]] || kind_die "no free 10.251.N.0/24 subnet for the cluster network"
    record NETWORK_CREATED 1
    # A bridge name of its own (podman 4.3 has no --interface-name; this configuration directory
    # is private to these runs, and no container has used the network yet).
    sed -i "s/\"network_interface\": \"[^\"]*\"/\"network_interface\": \"dbpk$suffix\"/" "$KIND_BASE/containers/networks/$network.json"
    [[ "$(podman network inspect "$network" --format '{{.NetworkInterface}}')" == "dbpk$suffix" ]] \
      || kind_die "could not name the bridge of $network dbpk$suffix"
    export KIND_EXPERIMENTAL_PODMAN_NETWORK="$network"
    kind_log "network $network: $subnet, internal (bridge dbpk$suffix)"
  else
    docker network create --label dbproxy.io/kind-cluster="$name" "$network" >/dev/null \
      || kind_die "docker network create $network failed"
    record NETWORK_CREATED 1
    export KIND_EXPERIMENTAL_DOCKER_NETWORK="$network"
    kind_log "network $network: $(docker network inspect "$network" --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}')"
  fi

  # kind bind-mounts /lib/modules from the host; a machine without kernel modules lacks it.
  if [[ ! -e /lib/modules ]]; then
    mkdir /lib/modules
    record LIB_MODULES_CREATED 1
  fi

  local port
  port="$(free_port)"
  cat >"$dir/kind-config.yaml" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  apiServerAddress: 127.0.0.1
${port:+  apiServerPort: $port}
nodes:
  - role: control-plane
EOF
  local image_args=()
  if [[ "$provider" == podman ]]; then
    image_args=(--image "$KIND_OFFLINE_NODE_IMAGE")
  elif [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
    image_args=(--image "$KIND_NODE_IMAGE")
  fi
  record CLUSTER_CREATED 1
  kind_log "creating kind cluster $name ($provider)"
  kind create cluster --name "$name" --config "$dir/kind-config.yaml" --kubeconfig "$dir/kubeconfig" \
    --wait 240s "${image_args[@]}" || kind_die "kind create cluster failed"

  if [[ "$provider" == podman ]]; then
    # The internal network has no port mapping to 127.0.0.1: talk to the node on the bridge.
    local ip
    ip="$(podman inspect "$name-control-plane" --format "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}")"
    [[ -n "$ip" ]] || kind_die "cannot find the address of $name-control-plane on $network"
    kubectl --kubeconfig "$dir/kubeconfig" config set-cluster "kind-$name" --server "https://$ip:6443" >/dev/null
  fi
  local kc=(kubectl --kubeconfig "$dir/kubeconfig")
  "${kc[@]}" wait node --all --for=condition=Ready --timeout=180s >/dev/null || kind_die "the node did not become Ready"
  "${kc[@]}" -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null || kind_die "CoreDNS did not become ready"
  record KUBECTL "$(command -v kubectl)"
  kind_log "cluster $name ready in $((SECONDS - t0))s: KUBECONFIG=$dir/kubeconfig"
}

images() {
  [[ -f "$state" ]] || kind_die "$state is missing: run cluster.sh up --dir $dir first"
  # shellcheck disable=SC1090
  source "$state"
  provider_env "$PROVIDER"
  local t0=$SECONDS
  cd "$kind_repo"
  if [[ "$PROVIDER" == podman ]]; then
    # Built under names of this cluster's own, so that runs from other checkouts sharing the
    # podman storage cannot swap images; in the node they are then tagged with the names pods ask
    # for, read as Docker and containerd read short names (docker.io/library/NAME:TAG).
    local wanted=("$IMAGE") built=("localhost/dbproxy-kind-build/${IMAGE%:*}:$NAME")
    podman build --pull=never --network=host -t "${built[0]}" . >"$dir/build.log" 2>&1 \
      || { tail -40 "$dir/build.log" >&2; kind_die "podman build of the Dockerfile failed (log: $dir/build.log)"; }
    if [[ $client == 1 ]]; then
      wanted+=("$CLIENT_IMAGE")
      built+=("localhost/dbproxy-kind-build/${CLIENT_IMAGE%:*}:$NAME")
      podman build --pull=never --network=host --target build -t "${built[1]}" . >>"$dir/build.log" 2>&1 \
        || { tail -40 "$dir/build.log" >&2; kind_die "podman build --target build failed (log: $dir/build.log)"; }
    fi
    kind_log "built ${wanted[*]} from the Dockerfile in $((SECONDS - t0))s"
    local archive="$dir/images.tar" i
    podman save -q --format docker-archive -m -o "$archive" "${built[@]}" >/dev/null
    podman rmi "${built[@]}" >/dev/null
    kind load image-archive "$archive" --name "$NAME" >>"$dir/build.log" 2>&1 || kind_die "kind load image-archive failed (log: $dir/build.log)"
    rm -f "$archive"
    for i in "${!built[@]}"; do
      podman exec "$NAME-control-plane" ctr --namespace k8s.io images tag --force "${built[$i]}" "docker.io/library/${wanted[$i]}" >/dev/null \
        || kind_die "could not tag ${built[$i]} as ${wanted[$i]} in the node"
    done
  else
    local names=("$IMAGE")
    docker build -t "$IMAGE" . >"$dir/build.log" 2>&1 \
      || { tail -40 "$dir/build.log" >&2; kind_die "docker build failed (log: $dir/build.log)"; }
    if [[ $client == 1 ]]; then
      names+=("$CLIENT_IMAGE")
      docker build --target build -t "$CLIENT_IMAGE" . >>"$dir/build.log" 2>&1 \
        || { tail -40 "$dir/build.log" >&2; kind_die "docker build --target build failed (log: $dir/build.log)"; }
    fi
    kind_log "built ${names[*]} from the Dockerfile in $((SECONDS - t0))s"
    kind load docker-image "${names[@]}" --name "$NAME" >>"$dir/build.log" 2>&1 || kind_die "kind load docker-image failed (log: $dir/build.log)"
  fi
  kind_log "images built and loaded in $((SECONDS - t0))s"
}

down() {
  [[ -f "$state" ]] || return 0
  # shellcheck disable=SC1090
  source "$state"
  provider_env "$PROVIDER"
  # The watcher leads its own process group (setsid): end it and its `tail`.
  if [[ -n "${WATCHER_PID:-}" && "$WATCHER_PID" != "$$" ]]; then kill -- "-$WATCHER_PID" 2>/dev/null || true; fi
  if [[ "${CLUSTER_CREATED:-0}" == 1 ]]; then
    kind_log "deleting kind cluster $NAME"
    kind delete cluster --name "$NAME" >/dev/null 2>&1 || kind_log "kind delete cluster --name $NAME failed"
  fi
  if [[ "${NETWORK_CREATED:-0}" == 1 ]]; then
    if [[ "$PROVIDER" == podman ]]; then
      podman network rm -f "$NETWORK" >/dev/null 2>&1 || kind_log "podman network rm $NETWORK failed"
    else
      docker network rm "$NETWORK" >/dev/null 2>&1 || kind_log "docker network rm $NETWORK failed"
    fi
  fi
  if [[ "${LIB_MODULES_CREATED:-0}" == 1 ]]; then
    # Another cluster of this machine may still use it.
    local others=""
    if [[ "$PROVIDER" == podman ]]; then others="$(podman ps -aq --filter label=io.x-k8s.kind.role)"; fi
    [[ -n "$others" ]] || rmdir /lib/modules 2>/dev/null || true
  fi
  rm -rf "$dir"
}

# The watcher: `down` once the owner process is gone, unless `down` ran first (it kills this).
start_watcher() {
  if ! command -v setsid >/dev/null || ! tail --pid=$$ -f /dev/null --help >/dev/null 2>&1; then
    kind_log "no setsid or tail --pid here (util-linux, GNU coreutils): the cluster is removed on normal exit and Ctrl-C only"
    return 0
  fi
  setsid bash "$self" watch --dir "$dir" --owner-pid "$owner" </dev/null >>"$dir/watcher.log" 2>&1 &
  record WATCHER_PID "$!"
}
watch() {
  tail --pid="$owner" -f /dev/null
  kind_log "owner process $owner ended without cleaning up: removing the cluster"
  down
}

case "$cmd" in
  up) up ;;
  images) images ;;
  down) down ;;
  watch) watch ;;
  *) kind_die "unknown command: $cmd (up, images, down)" ;;
esac

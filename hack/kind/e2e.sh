#!/usr/bin/env bash
# `make e2e-kind`: dbproxy end to end on a throwaway kind cluster.
#
#   1. create a kind cluster on a network of its own (hack/kind/cluster.sh; its own kubeconfig,
#      never the user's)
#   2. build the image from the Dockerfile and load it into the cluster
#   3. helm install charts/dbproxy with that image
#   4. run PostgreSQL 15 in the cluster (hack/kind/postgres.yaml)
#   5. apply a DatabaseProxy (hack/kind/databaseproxy.yaml) and wait for condition Ready
#   6. psql from a pod through app-db.dbproxy-e2e.svc:5432 (hack/kind/psql-pod.yaml)
#   7. print `kubectl get dbp` and the Argo CD health (docs/argocd/health.lua)
#   8. delete the cluster and its network on exit, also on failure and Ctrl-C
#
# With Docker (a laptop, the GitHub workflow): stock kind, its node image, postgres:15 pulled from
# Docker Hub. Without Docker (this project's build machine): podman, and a node image and
# stand-in images built locally by hack/kind/install.sh (cached; the first run takes a while).
# hack/kind/lib.sh explains the choice. kind is built from the Go module proxy when missing,
# helm by hack/helm/install.sh, the Argo CD check by hack/lua/install.sh (both need Go).
#
# Environment:
#   KIND_CLUSTER_NAME   cluster name (default dbproxy-e2e); an existing cluster of that name is an error
#   KIND_NODE_IMAGE     node image with Docker (default: the one the kind release pins)
#   DBPROXY_IMAGE       image name:tag to build and load (default dbproxy:e2e)
#   DBPROXY_E2E_KEEP=1  keep the cluster afterwards (its kubeconfig path is printed)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

CLUSTER="${KIND_CLUSTER_NAME:-dbproxy-e2e}"
IMAGE="${DBPROXY_IMAGE:-dbproxy:e2e}"
KEEP="${DBPROXY_E2E_KEEP:-0}"
SYSTEM_NS=dbproxy-system
NS=dbproxy-e2e
DBP=app-db

log() { printf '\n[kind/e2e] %s\n' "$*" >&2; }
die() { printf '[kind/e2e] ERROR: %s\n' "$*" >&2; exit 1; }
t_start=$SECONDS
t_phase=$SECONDS
phase_name=""
phase() { # phase NAME: report the time of the previous phase, start the next
  [[ -z "$phase_name" ]] || printf '[kind/e2e] %s: %ss\n' "$phase_name" "$((SECONDS - t_phase))" >&2
  phase_name="$1"
  t_phase=$SECONDS
  [[ "$1" == done ]] || log "$1"
}

[[ "$IMAGE" == *:* ]] || die "DBPROXY_IMAGE must be name:tag, got '$IMAGE'"
command -v go >/dev/null || die "go is not installed: kind, helm and the Argo CD check are built from Go modules"
HELM="$(command -v helm || bash hack/helm/install.sh --quiet | tail -1)"
LUAHEALTH="$(bash hack/lua/install.sh --quiet | tail -1)"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/dbproxy-e2e-kind.XXXXXX")"
export KUBECONFIG="$workdir/kubeconfig"

diagnose() {
  log "diagnostics"
  kubectl get dbp,deploy,rs,pods,svc,pdb -n "$NS" -o wide || true
  kubectl describe dbp "$DBP" -n "$NS" || true
  kubectl get events -n "$NS" --sort-by=.lastTimestamp | tail -40 || true
  kubectl get pods -A -o wide || true
  kubectl logs -n "$SYSTEM_NS" -l app.kubernetes.io/component=operator --tail=80 --prefix || true
  kubectl logs -n "$NS" -l app.kubernetes.io/instance="$DBP" --tail=40 --prefix || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -f "$workdir/state.env" ]]; then
    [[ $status -eq 0 ]] || diagnose
    if [[ "$KEEP" == 1 ]]; then
      log "keeping cluster $CLUSTER: export KUBECONFIG=$KUBECONFIG; remove it with: bash hack/kind/cluster.sh down --dir $workdir"
      exit $status
    fi
    bash hack/kind/cluster.sh down --dir "$workdir" || true
  fi
  rm -rf "$workdir"
  log "end to end on kind: $([[ $status -eq 0 ]] && echo passed || echo FAILED) in $((SECONDS - t_start))s"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

phase "creating kind cluster $CLUSTER"
owner=(--owner-pid $$)
[[ "$KEEP" != 1 ]] || owner=()
bash hack/kind/cluster.sh up --dir "$workdir" --name "$CLUSTER" "${owner[@]}"
# kind and kubectl as cluster.sh found or built them.
# shellcheck disable=SC1091
source "$workdir/state.env"
PATH="$(dirname "$KUBECTL"):$(bash hack/kind/install.sh --print-bin-dir):$PATH"

phase "building $IMAGE from the Dockerfile and loading it"
DBPROXY_IMAGE="$IMAGE" bash hack/kind/cluster.sh images --dir "$workdir" --no-client

phase "installing charts/dbproxy with $IMAGE"
# pullPolicy Never: the image exists only on the kind node. The operator hands the same image to
# the proxy pods (--default-image); with a tag other than latest their pull policy defaults to
# IfNotPresent, which finds it there too.
"$HELM" install dbproxy charts/dbproxy --namespace "$SYSTEM_NS" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set replicaCount=1 --wait --timeout 5m

phase "starting PostgreSQL 15"
kubectl apply -f hack/kind/postgres.yaml
kubectl rollout status deployment/postgres -n "$NS" --timeout 300s

phase "applying DatabaseProxy $NS/$DBP"
kubectl apply -f hack/kind/databaseproxy.yaml
kubectl wait "dbp/$DBP" -n "$NS" --for=condition=Ready --timeout 300s

phase "psql through $DBP.$NS.svc:5432"
kubectl apply -f hack/kind/psql-pod.yaml
if ! kubectl wait pod/psql-through-dbproxy -n "$NS" --for=jsonpath='{.status.phase}'=Succeeded --timeout 180s; then
  kubectl logs psql-through-dbproxy -n "$NS" || true
  die "the psql pod did not succeed (phase $(kubectl get pod psql-through-dbproxy -n "$NS" -o jsonpath='{.status.phase}'))"
fi
out="$(kubectl logs psql-through-dbproxy -n "$NS")"
printf '%s\n' "$out"
grep -q 'written through dbproxy' <<<"$out" || die "psql did not read back the row it wrote through the proxy"

phase "kubectl get dbp"
kubectl get dbp -A -o wide
kubectl get dbp "$DBP" -n "$NS" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

phase "Argo CD health (docs/argocd/health.lua in gopher-lua, hack/lua)"
health="$(kubectl get dbp "$DBP" -n "$NS" -o json | "$LUAHEALTH" docs/argocd/health.lua)"
printf '%s\n' "$health"
[[ "$health" == '{"status":"Healthy"'* ]] || die "Argo CD would not call the Ready DatabaseProxy Healthy"
phase "done"

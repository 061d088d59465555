#!/usr/bin/env bash
# `make e2e-kind`: dbproxy end to end on a throwaway kind cluster.
#
#   1. create a kind cluster (its own kubeconfig, never the user's)
#   2. docker build the image (Dockerfile) and kind load it
#   3. helm install charts/dbproxy with that image
#   4. run PostgreSQL 15 in the cluster (hack/kind/postgres.yaml)
#   5. apply a DatabaseProxy (hack/kind/databaseproxy.yaml) and wait for condition Ready
#   6. psql from a pod through app-db.dbproxy-e2e.svc:5432 (hack/kind/psql-pod.yaml)
#   7. print `kubectl get dbp` and, when Go is installed, the Argo CD health (docs/argocd/health.lua)
#   8. delete the cluster on exit
#
# Needs docker (with a running daemon), kind and kubectl; helm from PATH, else hack/helm/install.sh
# builds it (needs Go). Cannot run on this project's own build machine (no Docker there).
#
# Environment:
#   KIND_CLUSTER_NAME   cluster name (default dbproxy-e2e); an existing cluster of that name is an error
#   KIND_NODE_IMAGE     node image (default: the one the installed kind release pins)
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

# --- tools: fail before creating anything
command -v docker >/dev/null || die "docker is not installed; this end-to-end run needs Docker (it cannot run without it)"
docker info >/dev/null 2>&1 || die "docker is installed but its daemon is not reachable (is it running, may this user use it?)"
command -v kind >/dev/null || die "kind is not installed: go install sigs.k8s.io/kind@v0.33.0 (or see https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
command -v kubectl >/dev/null || die "kubectl is not installed (https://kubernetes.io/docs/tasks/tools/)"
if command -v helm >/dev/null; then
  HELM=helm
else
  log "helm is not on PATH: building it with hack/helm/install.sh"
  HELM="$(bash hack/helm/install.sh --quiet | tail -1)"
fi
[[ "$IMAGE" == *:* ]] || die "DBPROXY_IMAGE must be name:tag, got '$IMAGE'"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  die "a kind cluster named $CLUSTER already exists; delete it (kind delete cluster --name $CLUSTER) or set KIND_CLUSTER_NAME"
fi

workdir="$(mktemp -d)"
export KUBECONFIG="$workdir/kubeconfig"
created=0

diagnose() {
  log "diagnostics"
  kubectl get dbp,deploy,rs,pods,svc,pdb -n "$NS" -o wide || true
  kubectl describe dbp "$DBP" -n "$NS" || true
  kubectl get events -n "$NS" --sort-by=.lastTimestamp | tail -40 || true
  kubectl get pods -n "$SYSTEM_NS" -o wide || true
  kubectl logs -n "$SYSTEM_NS" -l app.kubernetes.io/component=operator --tail=80 --prefix || true
  kubectl logs -n "$NS" -l app.kubernetes.io/instance="$DBP" --tail=40 --prefix || true
}

cleanup() {
  local status=$?
  [[ $status -eq 0 || $created -eq 0 ]] || diagnose
  if [[ $created -eq 1 ]]; then
    if [[ "$KEEP" == 1 ]]; then
      log "keeping cluster $CLUSTER: export KUBECONFIG=$KUBECONFIG; delete it with: kind delete cluster --name $CLUSTER"
    else
      log "deleting cluster $CLUSTER"
      kind delete cluster --name "$CLUSTER" || true
      rm -rf "$workdir"
    fi
  else
    rm -rf "$workdir"
  fi
  exit $status
}
trap cleanup EXIT

log "creating kind cluster $CLUSTER"
created=1
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}

log "building $IMAGE"
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "installing charts/dbproxy with $IMAGE"
# pullPolicy Never: the image exists only on the kind node. The operator hands the same image to
# the proxy pods (--default-image); with a tag other than latest their pull policy defaults to
# IfNotPresent, which finds it there too.
"$HELM" install dbproxy charts/dbproxy --namespace "$SYSTEM_NS" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set replicaCount=1 --wait --timeout 5m

log "starting PostgreSQL 15"
kubectl apply -f hack/kind/postgres.yaml
kubectl rollout status deployment/postgres -n "$NS" --timeout 300s

log "applying DatabaseProxy $NS/$DBP"
kubectl apply -f hack/kind/databaseproxy.yaml
kubectl wait "dbp/$DBP" -n "$NS" --for=condition=Ready --timeout 300s

log "psql through $DBP.$NS.svc:5432"
kubectl apply -f hack/kind/psql-pod.yaml
phase=""
for _ in $(seq 1 120); do
  phase="$(kubectl get pod psql-through-dbproxy -n "$NS" -o jsonpath='{.status.phase}')"
  [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
  sleep 2
done
out="$(kubectl logs psql-through-dbproxy -n "$NS" || true)"
printf '%s\n' "$out"
[[ "$phase" == Succeeded ]] || die "the psql pod ended in phase '${phase:-unknown}'"
grep -q 'written through dbproxy' <<<"$out" || die "psql did not read back the row it wrote through the proxy"

log "kubectl get dbp"
kubectl get dbp -A -o wide
kubectl get dbp "$DBP" -n "$NS" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

if command -v go >/dev/null; then
  log "Argo CD health (docs/argocd/health.lua in gopher-lua, hack/lua)"
  luahealth="$(bash hack/lua/install.sh --quiet | tail -1)"
  health="$(kubectl get dbp "$DBP" -n "$NS" -o json | "$luahealth" docs/argocd/health.lua)"
  printf '%s\n' "$health"
  [[ "$health" == '{"status":"Healthy"'* ]] || die "Argo CD would not call the Ready DatabaseProxy Healthy"
else
  log "Go is not installed: skipping the Argo CD health check (hack/lua builds it)"
fi

log "end to end on kind: passed"

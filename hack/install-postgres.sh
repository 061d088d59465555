#!/usr/bin/env bash
# PostgreSQL 15 server binaries and psql from Debian's packages, when missing. Used by .ci/run and
# `make demo`; quiet and instant when they are installed.
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v psql >/dev/null || need+=(postgresql-client-15)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (apt)" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "hack/install-postgres.sh: ${need[*]} missing and not root; install them with apt-get" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

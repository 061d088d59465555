#!/usr/bin/env bash
# Entrypoint of the postgres:15 stand-in (Containerfile beside this file). Written for this
# project; it follows the Docker library image's documented behaviour for what the project uses:
#
#  - `postgres [args]` (or only `-flags`): on an empty $PGDATA, initdb with POSTGRES_USER
#    (default postgres) as superuser and POSTGRES_PASSWORD, SCRAM for TCP connections from
#    anywhere, trust on the local socket; a server on the socket only runs POSTGRES_DB's CREATE
#    DATABASE and /docker-entrypoint-initdb.d/*.sh (sourced) and *.sql (psql); then the server
#    starts in the foreground.
#  - as root it drops to the postgres user (uid 999); as any other user it runs as that user.
#  - anything else is run as given (psql, pg_basebackup, bash, ...).
set -Eeuo pipefail

if [[ "${1:-}" == -* ]]; then set -- postgres "$@"; fi
[[ "${1:-}" == postgres ]] || exec "$@"

if [[ "$(id -u)" == 0 ]]; then
  install -d -o postgres -g postgres -m 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  if [[ -z "${POSTGRES_PASSWORD:-}" ]]; then
    echo 'docker-entrypoint.sh: POSTGRES_PASSWORD is empty; set it (this stand-in has no trust mode for TCP)' >&2
    exit 1
  fi
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of arguments, as in the library image
  initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-}
  printf '\n# added by docker-entrypoint.sh\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  export PGUSER="$user" PGDATABASE=postgres PGHOST=/var/run/postgresql PGPORT=5432
  if [[ "$db" != postgres ]]; then
    psql -v ON_ERROR_STOP=1 --no-psqlrc -q --set db="$db" <<<'CREATE DATABASE :"db"'
  fi
  export PGDATABASE="$db"
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "docker-entrypoint.sh: running $f"; # shellcheck disable=SC1090
        . "$f" ;;
      *.sql) echo "docker-entrypoint.sh: running $f"; psql -v ON_ERROR_STOP=1 --no-psqlrc -f "$f" ;;
      *) if [[ -e "$f" ]]; then echo "docker-entrypoint.sh: ignoring $f"; fi ;;
    esac
  done
  unset PGUSER PGDATABASE PGHOST PGPORT
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo 'docker-entrypoint.sh: PostgreSQL init process complete; ready for start up.'
fi

exec "$@"

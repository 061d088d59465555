#!/usr/bin/env bash
# A Python venv with psycopg 3 for the driver tests, cached outside the repo by version.
set -euo pipefail
PSYCOPG_VERSION=3.3.9
cache="${DBPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbproxy}"
venv="$cache/pyenv-psycopg-$PSYCOPG_VERSION"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import psycopg; assert psycopg.__version__ == '$PSYCOPG_VERSION'" 2>/dev/null; then
  exit 0
fi
echo "installing psycopg $PSYCOPG_VERSION into $venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "psycopg[binary]==$PSYCOPG_VERSION"
"$venv/bin/python" -c "import psycopg; print('psycopg', psycopg.__version__)"

#!/usr/bin/env bash
# Start one production process in the foreground: deploy/run.sh daemon|webserver|mlflow
# Reads deploy/env (made from deploy/env.example). Run each under a supervisor
# (systemd, supervisord, a container) so it restarts on failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
set -a; . "$here/env"; set +a
export DAGSTER_HOME="${DAGSTER_HOME:-$here}"
bin="${VENV:-.venv}/bin"
case "${1:-}" in
  daemon)    exec "$bin/dagster-daemon" run -w workspace.yaml ;;
  webserver) exec "$bin/dagster-webserver" -h "${HOST:-127.0.0.1}" -p "${PORT:-3000}" -w workspace.yaml ;;
  mlflow)    exec "$bin/mlflow" server --host "${HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}" \
               --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
               --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" ;;
  *) echo "usage: $0 daemon|webserver|mlflow" >&2; exit 2 ;;
esac

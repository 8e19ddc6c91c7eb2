#!/usr/bin/env bash
# Serves the CRM with a Celery worker and beat beside it; Ctrl-C stops all three.
set -euo pipefail
BIN="${BIN:-.venv/bin}"
pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT
"$BIN/celery" -A config worker --loglevel=WARNING --concurrency=1 --pool=solo &
pids+=($!)
"$BIN/celery" -A config beat --loglevel=WARNING --schedule var/celerybeat-schedule &
pids+=($!)
echo "Serving on http://${HOST:-127.0.0.1}:${PORT:-8000}/  (Ctrl-C stops the server, worker and beat)"
"$BIN/python" manage.py runserver "${HOST:-127.0.0.1}:${PORT:-8000}" &
pids+=($!)
wait -n "${pids[@]}"

#!/usr/bin/env bash
# Usage: scripts/with-services.sh COMMAND [ARGS...]
# Starts a private PostgreSQL cluster and a private Redis server on free loopback ports,
# exports DATABASE_URL and CELERY_BROKER_URL for COMMAND, runs it, and stops both servers
# whatever COMMAND's outcome. PostgreSQL refuses to run as root, so as root the cluster runs
# as the unprivileged user "nobody". Missing server packages are installed with apt-get when
# running as root; otherwise the script says exactly what is missing.
# Set KEEP_PGDATA=dir to reuse a cluster directory between runs (make bench does), and
# PG_DURABLE=1 to keep PostgreSQL's durable defaults (fsync, synchronous_commit and
# full_page_writes on, as in production) instead of turning them off for speed.
set -euo pipefail

log() { echo "[services] $*" >&2; }

need_apt=()
command -v initdb >/dev/null 2>&1 || [ -x "$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -n1)/initdb" ] || need_apt+=(postgresql postgresql-contrib)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${need_apt[*]} with apt-get"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
  else
    echo "Missing server packages: ${need_apt[*]}. Install them (Debian/Ubuntu: sudo apt-get install ${need_apt[*]}) and run again." >&2
    exit 2
  fi
fi
PGBIN=""
if ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)/"
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

RUN_AS=()
PG_OWNER="$(id -un)"
if [ "$(id -u)" = 0 ]; then
  PG_OWNER=nobody
  RUN_AS=(runuser -u nobody --)
fi

WORK="$(mktemp -d /tmp/crm-services.XXXXXX)"
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown nobody "$WORK"
PGDATA="${KEEP_PGDATA:-$WORK/pgdata}"
PGPORT="$(free_port)"
REDIS_PORT="$(free_port)"
PG_PID_STARTED=0
REDIS_PID=""

cleanup() {
  set +e
  if [ "$PG_PID_STARTED" = 1 ]; then
    "${RUN_AS[@]}" "${PGBIN}pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1
  fi
  if [ -n "$REDIS_PID" ]; then
    kill "$REDIS_PID" 2>/dev/null
    wait "$REDIS_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  [ "$(id -u)" = 0 ] && chown "$PG_OWNER" "$PGDATA"
  "${RUN_AS[@]}" "${PGBIN}initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log" >&2; exit 1; }
fi
[ "$(id -u)" = 0 ] && chown -R "$PG_OWNER" "$PGDATA"
# Settings for a throwaway cluster: durability off (tests and benchmarks only; PG_DURABLE=1
# keeps it on), memory for 2 cores.
DURABILITY="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
[ "${PG_DURABLE:-0}" = 1 ] && DURABILITY=""
"${RUN_AS[@]}" "${PGBIN}pg_ctl" -D "$PGDATA" -w -l "$WORK/postgres.log" \
  -o "-h 127.0.0.1 -p $PGPORT -k $WORK $DURABILITY \
      -c shared_buffers=${PG_SHARED_BUFFERS:-512MB} -c work_mem=${PG_WORK_MEM:-64MB} -c maintenance_work_mem=1GB \
      -c max_wal_size=8GB -c max_connections=200 -c max_parallel_workers_per_gather=2" \
  start >/dev/null || { cat "$WORK/postgres.log" >&2; exit 1; }
PG_PID_STARTED=1
log "PostgreSQL on 127.0.0.1:$PGPORT (data in $PGDATA)"

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize no \
  --dir "$WORK" --logfile "$WORK/redis.log" &
REDIS_PID=$!
for _ in $(seq 1 50); do
  if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1', $REDIS_PORT)))"; then break; fi
  sleep 0.1
done
log "Redis on 127.0.0.1:$REDIS_PORT"

export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/${PG_DBNAME:-crm}"
export CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"
export REDIS_URL="$CELERY_BROKER_URL"
"${RUN_AS[@]}" "${PGBIN}psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -qc "CREATE DATABASE ${PG_DBNAME:-crm}" >/dev/null 2>&1 || true

set +e
"$@"
status=$?
exit $status

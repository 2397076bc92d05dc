#!/usr/bin/env bash
# Schemathesis (PyPI schemathesis, pinned) over onepane's whole OpenAPI, against a real
# `onepane up` with an admin token, for a bounded time: every generated request must get a 4xx
# or a success, never a 5xx.
#
#   conformance/fuzz.sh [SECONDS]        default 300; FUZZ_DB=postgres to run on PostgreSQL
#
# Schemathesis lives in its own venv (.cache/schemathesis) so its dependencies never touch
# onepane's. The last line is `RESULT fuzz_server_errors N count target <= 0`; the failures
# (with curl commands reproducing them) are in the printed report.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SECONDS_BUDGET=${1:-300}
ST_VERSION=4.32.5
VENV=$ROOT/.cache/schemathesis
if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$ST_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
fi
WORK=$(mktemp -d /tmp/onepane-fuzz.XXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  if [ -n "${PGDATA:-}" ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$ROOT/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

DB_URL=""
if [ "${FUZZ_DB:-sqlite}" = postgres ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PGDATA=$WORK/pg
  PGPORT=$(free_port)
  mkdir -p "$PGDATA"; chown postgres "$WORK" "$PGDATA"; chmod 700 "$PGDATA"
  runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync -E UTF8 \
    --locale=C.UTF-8 >/dev/null
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/pg.log" -w -t 30 -o \
    "-c listen_addresses=127.0.0.1 -p $PGPORT -k $WORK -c fsync=off" start >/dev/null
  runuser -u postgres -- "$PGBIN/createdb" -h "$WORK" -p "$PGPORT" onepane_fuzz
  DB_URL="postgresql+psycopg://postgres@127.0.0.1:$PGPORT/onepane_fuzz"
fi

PORT=$(free_port)
STATE=$WORK/state
mkdir -p "$STATE"
printf 'dns_port = 0\n%s\n' "${DB_URL:+database_url = \"$DB_URL\"}" > "$WORK/onepane.toml"
"$ROOT/.venv/bin/onepane" up --config "$WORK/onepane.toml" --state-dir "$STATE" --port "$PORT" \
  > "$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
TOKEN=$(cat "$STATE/admin.token")

echo "schemathesis $ST_VERSION over http://127.0.0.1:$PORT/openapi.json (${FUZZ_DB:-sqlite}, ${SECONDS_BUDGET}s)"
set +e
cd "$WORK"  # schemathesis keeps a cache (.schemathesis/) where it runs: not in the repository
"$VENV/bin/st" run "http://127.0.0.1:$PORT/openapi.json" -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance --max-time "$SECONDS_BUDGET" --workers 1 \
  --phases examples,coverage,fuzzing --report junit --report-junit-path "$WORK/junit.xml" \
  --warnings off | tail -40
set -e
ERRORS=$(grep -c "Server error" "$WORK/junit.xml" 2>/dev/null || true)
UNDOCUMENTED=$(grep -c "Undocumented" "$WORK/junit.xml" 2>/dev/null || true)
echo "responses the schema does not document: ${UNDOCUMENTED:-0}"
FIVE=$(grep -c '" 500 \|" 50[0-9] ' "$WORK/server.log" 2>/dev/null || true)
echo "server log: ${FIVE:-0} lines with a 5xx status"
echo "RESULT fuzz_server_errors ${ERRORS:-0} count target <= 0"

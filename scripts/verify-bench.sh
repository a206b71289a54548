#!/usr/bin/env bash
# Times `rtsync task verify` on a PostgreSQL table of ROWS rows (default 1,000,000) while the
# source takes writes. Needs the services (scripts/services.sh start postgres; eval "$(scripts/services.sh env)")
# and a built binary (cargo build --bin rtsync); RTSYNC_BIN overrides its path.
#
#   scripts/verify-bench.sh [ROWS]
#
# Creates schema verify_bench_<pid>, a daemon in a temporary directory on a free port, one task;
# waits for the snapshot, starts a writer (one insert, one update, one delete every ~20 ms),
# runs verify three times and prints each wall time and verdict; then drops everything.
set -euo pipefail

ROWS=${1:-1000000}
BIN=${RTSYNC_BIN:-${CARGO_TARGET_DIR:-target}/debug/rtsync}
: "${RTSYNC_PG_URL:?run: eval \"\$(scripts/services.sh env)\"}"
SCHEMA=verify_bench_$$
DIR=$(mktemp -d)
PORT=$((20000 + $$ % 20000))
export RTSYNC_SERVER=http://127.0.0.1:$PORT
PSQL=(psql -qAtX "$RTSYNC_PG_URL" -v ON_ERROR_STOP=1)

cleanup() {
  [[ -n ${WRITER:-} ]] && kill "$WRITER" 2>/dev/null || true
  "$BIN" task undeploy bench -y >/dev/null 2>&1 || true
  [[ -n ${DAEMON:-} ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
  "${PSQL[@]}" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" || true
  rm -rf "$DIR"
}
trap cleanup EXIT

"${PSQL[@]}" <<SQL
CREATE SCHEMA $SCHEMA;
CREATE TABLE $SCHEMA.items (id bigint PRIMARY KEY, name text, qty integer, price numeric(12,2), at timestamptz, flag boolean);
INSERT INTO $SCHEMA.items SELECT g, 'item-' || g, g % 100, g * 0.25, timestamptz '2024-01-01' + g * interval '1 second', g % 2 = 0
  FROM generate_series(1, $ROWS) g;
ANALYZE $SCHEMA.items;
SQL

RTSYNC_LOG=${RTSYNC_LOG:-warn} "$BIN" serve --data-dir "$DIR/data" --listen "127.0.0.1:$PORT" >"$DIR/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 50); do curl -sf "$RTSYNC_SERVER/health" >/dev/null && break; sleep 0.2; done
"$BIN" datasource create pg --type postgresql --set "url=$RTSYNC_PG_URL" >/dev/null
"$BIN" task create bench >/dev/null
"$BIN" task configure bench --source pg --source-schema "$SCHEMA" --source-table items >/dev/null
"$BIN" task deploy bench -y >/dev/null
start=$(date +%s)
until "$BIN" task show bench --format json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if (d["status"]["rows_synced"] or 0) >= '"$ROWS"' else 1)'; do sleep 2; done
echo "snapshot of $ROWS rows synced in $(( $(date +%s) - start ))s"

( n=0; while true; do n=$((n + 1)); "${PSQL[@]}" -c "INSERT INTO $SCHEMA.items (id, name, qty) VALUES ($((ROWS + n)), 'live', $n);
  UPDATE $SCHEMA.items SET qty = qty + 1, at = now() WHERE id = $(( (n * 7919) % ROWS + 1 ));
  DELETE FROM $SCHEMA.items WHERE id = $((ROWS + n - 3));"; sleep 0.02; done ) &
WRITER=$!
sleep 2
for i in 1 2 3; do
  t0=$(date +%s.%N)
  "$BIN" task verify bench --format json >"$DIR/verify.json" 2>"$DIR/verify.err" || true
  t1=$(date +%s.%N)
  [[ -s $DIR/verify.json ]] || { cat "$DIR/verify.err"; exit 1; }
  python3 - "$DIR/verify.json" "$t0" "$t1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"verify: {float(sys.argv[3]) - float(sys.argv[2]):.1f}s wall, equal={r['equal']}, source_rows={r['source_rows']}, "
      f"target_rows={r['target_rows']}, ranges={len(r['ranges'])} (differing {r['ranges_differing']}), "
      f"lag differences resolved on re-check={r['resolved_on_recheck']}, persisting={r['differences_total']}")
PY
done
echo "--- the table form:"
"$BIN" task verify bench || true
grep -h "verify:" "$DIR/daemon.log" | sed "s/^.*verify:/verify:/" | tail -20 || true

#!/usr/bin/env bash
# `make demo`: a sample database replicated by the real litestream to a file:// replica in a
# temporary directory, then queried through ltxvfs from the stock sqlite3 shell. Stops
# litestream and removes the directory when done (or interrupted).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lib="$root/target/release/libltxvfs"
litestream="$root/.tools/litestream-0.5.17/bin/litestream"
work=$(mktemp -d -t ltxvfs-demo-XXXXXX)
pid=
cleanup() {
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_txid() {  # until litestream has shipped TXID $1
    local name; name=$(printf '%016x-%016x.ltx' "$1" "$1")
    for _ in $(seq 300); do [[ -f "$work/replica/ltx/0/$name" ]] && return; sleep 0.1; done
    echo "litestream did not ship TXID $1; its log:" >&2; cat "$work/litestream.log" >&2; exit 1
}
replica_shell() {  # runs sqlite3 on the replica with the SQL on stdin, showing what is typed
    local sql open
    sql=$(cat)
    open=".open 'file:app.db?vfs=ltx&replica=file://$work/replica'"
    printf '%s\n' "\$ sqlite3" ".load ./target/release/libltxvfs" "${open//$work/\$DEMO}" "$sql" \
        | sed 's/^/    /'
    echo "  output:"
    printf '%s\n' ".load $lib" "$open" ".headers on" ".mode box" "$sql" \
        | sqlite3 -batch 2>&1 | sed 's/^/    /' || true
}

step "1. A primary database, app.db, with 1000 orders (in $work)"
sqlite3 "$work/app.db" > /dev/null <<'SQL'
PRAGMA journal_mode = WAL;
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, amount_cents INTEGER, placed_at TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO orders(customer, amount_cents, placed_at)
SELECT 'customer-' || (i % 37), 500 + (i * 7919) % 20000, date('2026-01-01', '+' || (i % 300) || ' days') FROM n;
SQL
echo "1000 rows written."

step "2. litestream replicate copies it to a file:// replica"
cat > "$work/litestream.yml" <<YAML
dbs:
  - path: $work/app.db
    monitor-interval: 100ms
    replica: {type: file, path: $work/replica, sync-interval: 200ms}
YAML
env -u AWS_CA_BUNDLE "$litestream" replicate -config "$work/litestream.yml" > "$work/litestream.log" 2>&1 &
pid=$!
wait_txid 1
(cd "$work" && find replica -name '*.ltx' | sort | sed 's/^/  /')

step "3. The sqlite3 shell loads ltxvfs and opens the replica (no local copy, no daemon)"
echo "  (\$DEMO is $work)"
replica_shell <<'SQL'
SELECT count(*) AS orders, sum(amount_cents) / 100.0 AS revenue FROM orders;
SELECT customer, count(*) AS orders FROM orders GROUP BY customer ORDER BY orders DESC, customer LIMIT 3;
.headers off
.mode list
PRAGMA ltx_txid;
SQL

step "4. The primary commits 250 more orders; litestream ships them as TXID 2"
sqlite3 "$work/app.db" <<'SQL'
WITH RECURSIVE n(i) AS (SELECT 1001 UNION ALL SELECT i + 1 FROM n WHERE i < 1250)
INSERT INTO orders(customer, amount_cents, placed_at) SELECT 'customer-new', 1000, '2026-11-21' FROM n;
SQL
wait_txid 2
echo "shipped."

step "5. A new connection to the replica sees the new rows; the replica is read-only"
replica_shell <<'SQL'
SELECT count(*) AS orders FROM orders;
INSERT INTO orders(customer) VALUES ('not allowed');
.headers off
.mode list
PRAGMA ltx_txid;
PRAGMA ltx_stats;
SQL

step "Done. litestream stopped, $work removed."

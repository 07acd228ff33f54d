#!/usr/bin/env bash
# Writes sql-tests/replica/ with the real litestream: schema.sql as the first transaction
# (a snapshot), changes.sql as the second. Checked in, so that the golden outputs are exact;
# run again (`make sql-replica`) only when the scenario changes, then UPDATE_EXPECTED=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
litestream=${1:?usage: make_replica.sh PATH/TO/litestream}
out="$here/../replica"
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT

sqlite3 "$tmp/app.db" < "$here/schema.sql" > /dev/null
cat > "$tmp/litestream.yml" <<YAML
dbs:
  - path: $tmp/app.db
    monitor-interval: 100ms
    replica:
      type: file
      path: $tmp/replica
      sync-interval: 200ms
YAML
env -u AWS_CA_BUNDLE "$litestream" replicate -config "$tmp/litestream.yml" > "$tmp/log" 2>&1 &
pid=$!
wait_txid() {  # waits for an L0 file with max TXID $1
    local name; name=$(printf '%016x-%016x.ltx' "$1" "$1")
    for _ in $(seq 600); do
        [[ -f "$tmp/replica/ltx/0/$name" ]] && return 0
        sleep 0.1
    done
    echo "timed out waiting for TXID $1" >&2; cat "$tmp/log" >&2; exit 1
}
wait_txid 1
sqlite3 "$tmp/app.db" < "$here/changes.sql"
wait_txid 2
kill "$pid"; wait "$pid" 2>/dev/null || true
rm -rf "$out"; mkdir -p "$out"
cp -r "$tmp/replica/ltx" "$out/"
find "$out" -name '*.tmp' -delete
echo "wrote $(find "$out" -name '*.ltx' | wc -l) LTX files to $out"

#!/usr/bin/env bash
# `make demo`: the whole stack with no daemon. A writer process (the stock sqlite3 shell with
# ltxvfs, write=1) stores each COMMIT as an LTX file in a file:// replica; a reader process
# (another sqlite3 shell, polling every 10 s) follows it; a bookmark makes the reader see a
# write at once; the real `litestream restore` reads back what the writer stored. No
# litestream process runs. Removes its directory when done (or interrupted).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lib="$root/target/release/libltxvfs"
litestream="$root/.tools/litestream-0.5.17/bin/litestream"
work=$(mktemp -d -t ltxvfs-demo-XXXXXX)
reader_pid=
cleanup() {
    if [[ -n "$reader_pid" ]]; then
        kill "$reader_pid" 2>/dev/null || true
        wait "$reader_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
replica="file://$work/replica"
mkdir -p "$work/replica"

shown() {  # prints what is typed, with $DEMO for the temporary directory
    printf '%s\n' "$@" | sed "s|$work|\$DEMO|g; s/^/    /"
}

writer() {  # one writer process: sqlite3 with ltxvfs, write=1; SQL on stdin
    local sql open
    sql=$(cat)
    open=".open 'file:app.db?vfs=ltx&write=1&replica=$replica'"
    shown "\$ sqlite3   # the writer" ".load ./target/release/libltxvfs" "$open" "$sql"
    echo "  output:"
    printf '%s\n' ".load $lib" "$open" ".headers off" ".mode list" "$sql" \
        | sqlite3 -batch 2>&1 | sed 's/^/    /'
}

# The reader: one sqlite3 process that stays open (a coprocess), polling every 10 s.
coproc READER { stdbuf -o0 -e0 sqlite3 -batch 2>&1; }
reader_pid=$READER_PID
reader() {  # SQL on stdin to the running reader; prints its answers
    local sql line
    sql=$(cat)
    shown "$sql"
    echo "  output:"
    printf '%s\n.print --done--\n' "$sql" >&"${READER[1]}"
    while IFS= read -r line <&"${READER[0]}"; do
        [[ "$line" == "--done--" ]] && break
        printf '    %s\n' "$line"
    done
}

step "1. A writer process creates app.db in a file:// replica (no litestream running)"
echo "  (\$DEMO is $work)"
writer <<'SQL'
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, amount_cents INTEGER);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO orders(customer, amount_cents) SELECT 'customer-' || (i % 37), 500 + (i * 7919) % 20000 FROM n;
SELECT ltx_txid();
SQL
(cd "$work" && find replica -name '*.ltx' | sort | sed 's/^/  /')

step "2. A reader process opens the replica, following it every 10 s"
printf '%s\n' ".load $lib" ".open 'file:app.db?vfs=ltx&replica=$replica&poll=10s'" \
    ".headers off" ".mode list" >&"${READER[1]}"
shown "\$ sqlite3   # the reader, still running" ".load ./target/release/libltxvfs" \
    ".open 'file:app.db?vfs=ltx&replica=$replica&poll=10s'"
reader <<'SQL'
SELECT count(*) AS orders, sum(amount_cents) / 100.0 AS revenue FROM orders;
SQL

step "3. The writer commits 250 more orders; its ltx_txid() is the bookmark"
bookmark=$(printf '%s\n' ".load $lib" \
    ".open 'file:app.db?vfs=ltx&write=1&replica=$replica'" \
    "INSERT INTO orders(customer, amount_cents) SELECT 'customer-new', 1000 FROM orders LIMIT 250;" \
    "SELECT ltx_txid();" | sqlite3 -batch)
shown "\$ sqlite3   # the writer again" \
    "INSERT INTO orders(customer, amount_cents) SELECT 'customer-new', 1000 FROM orders LIMIT 250;" \
    "SELECT ltx_txid();"
echo "  output:"
echo "    $bookmark"

step "4. The reader, a poll behind, then with the bookmark: sees the write at once"
reader <<SQL
SELECT count(*) AS orders_before_the_next_poll FROM orders;
SELECT ltx_wait_txid('$bookmark') AS reached;
SELECT count(*) AS orders FROM orders;
SQL

step "5. The reader is read-only; the real litestream restore reads what the writer stored"
reader <<'SQL'
INSERT INTO orders(customer) VALUES ('not allowed');
SQL
cat > "$work/litestream.yml" <<YAML
dbs:
  - path: $work/app.db
    replica: {type: file, path: $work/replica}
YAML
shown "\$ litestream restore -config litestream.yml -o restored.db app.db"
env -u AWS_CA_BUNDLE "$litestream" restore -config "$work/litestream.yml" -o "$work/restored.db" "$work/app.db"
shown "\$ sqlite3 restored.db 'SELECT count(*) FROM orders; PRAGMA integrity_check;'"
echo "  output:"
sqlite3 "$work/restored.db" 'SELECT count(*) FROM orders; PRAGMA integrity_check;' | sed 's/^/    /'

step "Done. No daemon ran; $work removed."

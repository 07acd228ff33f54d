#!/usr/bin/env bash
# The README's client recipes, each built as a user would and run on the replica of the
# golden SQL tests (sql-tests/replica): C against Debian's libsqlite3 (libsqlite3-dev), Go
# with Debian's mattn/go-sqlite3 (golang-github-mattn-go-sqlite3-dev, offline, GOPATH mode),
# Rust with rusqlite `bundled` and a path dependency on ltxvfs; Rust with sqlx, loading the
# extension file. Each prints the replica's TXID and row count, then the sentence behind a
# failed open; both are checked here.
# scripts/install-tools.sh installs the Debian packages when missing.
#
#   tests/clients/run.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
lib="$root/target/release/libltxvfs"
out="$root/target/clients"
url="file://$root/sql-tests/replica"
[[ -f "$lib.so" ]] || { echo "clients: $lib.so not built (make build)" >&2; exit 1; }
mkdir -p "$out"

expect() {  # expect NAME OUTPUT: the lines every recipe prints
    local name=$1 output=$2
    local want=(
        "txid 0000000000000002, 1980 orders"
        "open: unable to open database file"
        "why: ltxvfs: cannot open app.db: replica file:///nonexistent/app.db: /nonexistent/app.db is not a directory"
    )
    for line in "${want[@]}"; do
        if ! grep -qF -- "$line" <<< "$output"; then
            echo "FAILED $name: no line ${line@Q} in:"; echo "$output"; exit 1
        fi
    done
    echo "ok     $name"
}

cd "$root"
cc -Wall -Wextra -Werror -o "$out/replica-c" tests/clients/replica.c -lsqlite3
expect c "$("$out/replica-c" "$lib" "$url")"

(cd tests/clients/go && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE="$out/go-cache" go build -o "$out/replica-go" .)
expect go "$("$out/replica-go" "$lib" "$url")"

cargo build --quiet -p ltxvfs-client-rusqlite
expect rust "$("$root/target/debug/ltxvfs-client-rusqlite" "$url")"

# sqlx links its own SQLite, so it is a workspace of its own (and its own target directory).
(cd tests/clients/sqlx && CARGO_TARGET_DIR="$root/target/clients-sqlx" cargo build --quiet --locked)
expect sqlx "$("$root/target/clients-sqlx/debug/ltxvfs-client-sqlx" "$lib" "$url")"

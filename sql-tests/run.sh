#!/usr/bin/env bash
# Golden SQL tests: each sql-tests/NAME.sql runs in a fresh `sqlite3` shell (the system's:
# 3.40 on Debian 12) that has loaded target/release/libltxvfs and opened the checked-in
# replica (sql-tests/replica/) through the ltx VFS. The script's own lines are echoed; the
# output, then "exit code: N", is diffed against NAME.expected. Scripts write the replica's
# URL as file://@REPLICA@ and the library as @LIB@ (replaced by the real paths, and back in
# the output). Scripts named s3*.sql read the same replica from a bucket of the S3 server
# that scripts/with-stores.sh starts, as @S3REPLICA@.
#
#   sql-tests/run.sh                    run all
#   UPDATE_EXPECTED=1 sql-tests/run.sh  rewrite the .expected files
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lib="$here/../target/release/libltxvfs"
[[ -f "$lib.so" ]] || { echo "sql-tests: $lib.so not built (make build)" >&2; exit 1; }
command -v sqlite3 > /dev/null || { echo "sql-tests: no sqlite3 shell (apt-get install sqlite3)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

s3_url=
if [[ -n "${LTXVFS_TEST_S3_ENDPOINT:-}" ]]; then
    "$here/../.tools/moto/bin/python" "$here/setup/upload_s3.py" \
        "$LTXVFS_TEST_S3_ENDPOINT" sql-tests app.db "$here/replica"
    s3_url="s3://sql-tests/app.db?endpoint=$LTXVFS_TEST_S3_ENDPOINT%26region=us-east-1%26forcePathStyle=true"
fi

passed=0 failed=0
for script in "$here"/${ONLY:-*}.sql; do
    name=$(basename "$script" .sql)
    if [[ "$name" == s3* && -z "$s3_url" ]]; then
        echo "FAILED $name: needs an S3 server (run through scripts/with-stores.sh, as make test does)"
        failed=$((failed + 1))
        continue
    fi
    actual="$work/$name.out"
    {
        # Not echoed: machine-specific paths.
        printf '.load @LIB@\n'
        # poll=0: the replica is static, and a poll would change ltx_stats's counts; warm=off:
        # a warm-up under way would too.
        printf ".open 'file:app.db?vfs=ltx&replica=file://@REPLICA@&poll=0&warm=off'\n"
        printf '.headers off\n.mode list\n.echo on\n'
        cat "$script"
    } | sed "s|@REPLICA@|$here/replica|g; s|@LIB@|$lib|g; s|@S3REPLICA@|$s3_url|g; s|@S3ENDPOINT@|${LTXVFS_TEST_S3_ENDPOINT:-}|g" \
      | (cd "$work" && stdbuf -o0 -e0 sqlite3 -batch -init /dev/null 2>&1; echo "exit code: $?") \
      | sed "s|$here/replica|@REPLICA@|g; s|$lib|@LIB@|g; s|$work|@WORK@|g" \
      | { if [[ -n "$s3_url" ]]; then sed "s|$s3_url|@S3REPLICA@|g; s|${LTXVFS_TEST_S3_ENDPOINT:-}|@S3ENDPOINT@|g"; else cat; fi; } \
      > "$actual"
    expected="$here/$name.expected"
    if [[ -n "${UPDATE_EXPECTED:-}" ]]; then
        cp "$actual" "$expected"
        echo "updated $name.expected"
    elif diff -u "$expected" "$actual" > "$work/$name.diff"; then
        echo "ok     $name"
        passed=$((passed + 1))
    else
        echo "FAILED $name"
        cat "$work/$name.diff"
        failed=$((failed + 1))
    fi
done
echo "sql-tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]

#!/usr/bin/env bash
# Runs a command with a real S3-compatible server (moto, from .tools/moto) on a free port of
# 127.0.0.1, and stops the server afterwards, whatever the command did.
#
#   scripts/with-s3.sh CMD [ARGS...]
#
# The command sees LTXVFS_TEST_S3_ENDPOINT (http://127.0.0.1:PORT) and test credentials in
# the standard AWS variables (moto accepts any).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
moto="$root/.tools/moto/bin/moto_server"
[[ -x "$moto" ]] || { echo "with-s3: $moto missing (make tools)" >&2; exit 1; }
port=$("$root/.tools/moto/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$moto" -H 127.0.0.1 -p "$port" > "$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    kill -0 "$pid" 2>/dev/null || { echo "with-s3: moto_server exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
done
unset AWS_CA_BUNDLE AWS_PROFILE AWS_SESSION_TOKEN
export LTXVFS_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=ltxvfs-test AWS_SECRET_ACCESS_KEY=ltxvfs-test-secret AWS_REGION=us-east-1
# Never let a test reach a cloud metadata service for credentials.
export AWS_EC2_METADATA_DISABLED=true
"$@"

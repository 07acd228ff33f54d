#!/usr/bin/env bash
# Runs a command with real object-store servers on free ports of 127.0.0.1, and stops them
# afterwards, whatever the command did: S3 (moto, .tools/moto), Azure Blob (Azurite,
# .tools/azurite, telemetry off) and GCS (fake-gcs-server, .tools/fake-gcs, in memory).
#
#   scripts/with-stores.sh CMD [ARGS...]
#
# The command sees:
#   LTXVFS_TEST_S3_ENDPOINT       an S3 server that accepts any credentials (moto's default)
#   LTXVFS_TEST_S3_AUTH_ENDPOINT  one that checks them and knows none, so every request is
#                                 refused as with wrong credentials
#   AZURITE_BLOB_STORAGE_URL, AZURE_STORAGE_USE_EMULATOR=true
#                                 Azurite, as object_store's Azure client finds it
#   LTXVFS_TEST_GCS_ENDPOINT      fake-gcs-server over http, for gs://bucket/path?endpoint=
#                                 (it takes any credentials, or none; its buckets are made
#                                 with the JSON API: POST /storage/v1/b)
# and test credentials in the standard AWS variables; no Google credentials, and a GCE
# metadata server on a closed port of 127.0.0.1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
moto="$root/.tools/moto/bin/moto_server"
azurite="$root/.tools/azurite/node_modules/.bin/azurite-blob"
fake_gcs="$root/.tools/fake-gcs/bin/fake-gcs-server"
[[ -x "$moto" && -x "$azurite" && -x "$fake_gcs" ]] || { echo "with-stores: servers missing (make tools)" >&2; exit 1; }
free_port() {
    "$root/.tools/moto/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {  # wait_port PORT LOG: until something listens on PORT (the last server started)
    for _ in $(seq 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
        kill -0 "${pids[-1]}" 2>/dev/null || { echo "with-stores: server exited:" >&2; cat "$2" >&2; exit 1; }
        sleep 0.1
    done
    echo "with-stores: server on port $1 did not start" >&2; cat "$2" >&2; exit 1
}
pids=() logs=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "${logs[@]}" "${azurite_dir:-}"' EXIT

start_moto() {  # start_moto VAR [ENV=VALUE...]: starts a server, exports its URL as VAR
    local var=$1 port log; shift
    port=$(free_port)
    log=$(mktemp); logs+=("$log")
    env "$@" "$moto" -H 127.0.0.1 -p "$port" > "$log" 2>&1 &
    pids+=($!)
    wait_port "$port" "$log"
    export "$var=http://127.0.0.1:$port"
}

start_moto LTXVFS_TEST_S3_ENDPOINT
start_moto LTXVFS_TEST_S3_AUTH_ENDPOINT INITIAL_NO_AUTH_ACTION_COUNT=0

azurite_dir=$(mktemp -d); logs+=("$azurite_dir/log")
port=$(free_port)
"$azurite" --blobHost 127.0.0.1 --blobPort "$port" --location "$azurite_dir" --silent \
    --disableTelemetry > "$azurite_dir/log" 2>&1 &
pids+=($!)
wait_port "$port" "$azurite_dir/log"
export AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:$port" AZURE_STORAGE_USE_EMULATOR=true
# -public-host without a port: the XML API (which object_store uses) answers requests for
# any port of 127.0.0.1, so also through a proxy in front of it.
port=$(free_port)
log=$(mktemp); logs+=("$log")
"$fake_gcs" -scheme http -host 127.0.0.1 -port "$port" -public-host 127.0.0.1 \
    -backend memory -log-level warn > "$log" 2>&1 &
pids+=($!)
wait_port "$port" "$log"
export LTXVFS_TEST_GCS_ENDPOINT="http://127.0.0.1:$port"

unset AWS_CA_BUNDLE AWS_PROFILE AWS_SESSION_TOKEN
export AWS_ACCESS_KEY_ID=ltxvfs-test AWS_SECRET_ACCESS_KEY=ltxvfs-test-secret AWS_REGION=us-east-1
# Never let a test reach a cloud metadata service for credentials.
export AWS_EC2_METADATA_DISABLED=true
export GCE_METADATA_HOST=127.0.0.1:9 GCE_METADATA_IP=127.0.0.1:9
unset GOOGLE_APPLICATION_CREDENTIALS GOOGLE_SERVICE_ACCOUNT GOOGLE_SERVICE_ACCOUNT_PATH \
    GOOGLE_SERVICE_ACCOUNT_KEY SERVICE_ACCOUNT STORAGE_EMULATOR_HOST
"$@"

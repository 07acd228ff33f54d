#!/usr/bin/env bash
# Runs a command with real object-store servers on free ports of 127.0.0.1, and stops them
# afterwards, whatever the command did: S3 (moto, .tools/moto) and Azure Blob (Azurite,
# .tools/azurite, telemetry off).
#
#   scripts/with-stores.sh CMD [ARGS...]
#
# The command sees:
#   LTXVFS_TEST_S3_ENDPOINT       an S3 server that accepts any credentials (moto's default)
#   LTXVFS_TEST_S3_AUTH_ENDPOINT  one that checks them and knows none, so every request is
#                                 refused as with wrong credentials
#   AZURITE_BLOB_STORAGE_URL, AZURE_STORAGE_USE_EMULATOR=true
#                                 Azurite, as object_store's Azure client finds it
# and test credentials in the standard AWS variables.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
moto="$root/.tools/moto/bin/moto_server"
azurite="$root/.tools/azurite/node_modules/.bin/azurite-blob"
[[ -x "$moto" && -x "$azurite" ]] || { echo "with-stores: servers missing (make tools)" >&2; exit 1; }
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
unset AWS_CA_BUNDLE AWS_PROFILE AWS_SESSION_TOKEN
export AWS_ACCESS_KEY_ID=ltxvfs-test AWS_SECRET_ACCESS_KEY=ltxvfs-test-secret AWS_REGION=us-east-1
# Never let a test reach a cloud metadata service for credentials.
export AWS_EC2_METADATA_DISABLED=true
"$@"

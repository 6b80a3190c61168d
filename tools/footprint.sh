#!/bin/sh
# tools/footprint.sh [native|arm64|armhf] - the footprint figures of
# docs/PERFORMANCE.md for one target, from the tree built for it (build/ or
# build/cross-ARCH, by `make lib examples` or `make cross-test`):
#   libfaas.a stripped of debug info, libfaas.so stripped, a minimal host
#   (examples/readme) linked statically and stripped, the heap of one
#   queued async event and one idempotency record (tools/footprint/records.c),
#   the idle resident set of the reference gateway and of its warm worker,
#   and of a bare evhttp server as the floor (tools/footprint/floor.c).
# On arm64 and armhf the programs run under qemu-user: the heap figures are
# the target's own. VmRSS there is the emulator's process; the target's own
# resident set is the Rss of the mappings inside the guest's address space,
# which qemu keeps in the low 4 GiB of the process (armhf always; arm64 with
# QEMU_RESERVED_VA set below), read from /proc/PID/smaps.
set -eu
arch="${1:-native}"
case "$arch" in
native) t=""; b=build; run="" ;;
arm64) t=aarch64-linux-gnu-; b=build/cross-arm64; run=qemu-aarch64 ;;
armhf) t=arm-linux-gnueabihf-; b=build/cross-armhf; run=qemu-arm ;;
*) echo "usage: tools/footprint.sh native|arm64|armhf" >&2; exit 1 ;;
esac
if [ -n "$t" ]; then
    PKG_CONFIG_LIBDIR="$(pwd)/$b/sysroot/usr/lib/${t%-}/pkgconfig:/usr/lib/${t%-}/pkgconfig:/usr/share/pkgconfig"
    export PKG_CONFIG_LIBDIR
fi
cc="${t}gcc"
[ -z "$t" ] && cc="${CC:-cc}"
out="$b/footprint"
mkdir -p "$out"
size() { stat -c %s "$1"; }
kib() { awk -v n="$1" 'BEGIN { printf "%.0f KiB", n / 1024 }'; }

cp "$b/libfaas.a" "$out/libfaas.a" && "${t}strip" -g "$out/libfaas.a"
cp "$b/libfaas.so.0.1.0" "$out/libfaas.so" && "${t}strip" "$out/libfaas.so"
"$cc" -std=c11 -O2 -static -Iinclude -o "$out/readme-static" examples/readme/main.c \
    "$b/libfaas.a" $(pkg-config --static --libs libevent jansson libsodium) -pthread -ldl \
    2>"$out/static.log" || { cat "$out/static.log"; exit 1; }
"${t}strip" "$out/readme-static"
"$cc" -std=c11 -D_GNU_SOURCE -O2 -Iinclude -o "$out/records" tools/footprint/records.c \
    "$b/libfaas.a" $(pkg-config --libs libevent jansson libsodium) -pthread -ldl
"$cc" -std=c11 -D_GNU_SOURCE -O2 $(pkg-config --cflags libevent) -o "$out/floor" \
    tools/footprint/floor.c $(pkg-config --libs libevent)

echo "== footprint on $arch ($(${cc} -dumpmachine))"
echo "libfaas.a, strip -g:          $(kib "$(size "$out/libfaas.a")")"
echo "libfaas.so, strip:            $(kib "$(size "$out/libfaas.so")")"
echo "examples/readme, -static, strip: $(kib "$(size "$out/readme-static")")"
$run "$out/records"

# arm64: the guest in the low 4 GiB too, so that its mappings are known.
[ "$arch" = arm64 ] && export QEMU_RESERVED_VA=0x100000000
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
# The Rss of mappings that start below 4 GiB (8 hex digits in smaps).
guest_rss() {
    awk '/^[0-9a-f]+-[0-9a-f]+ / { split($1, r, "-"); low = length(r[1]) <= 8; next }
         /^Rss:/ && low { kb += $2 } END { print kb + 0 }' "/proc/$1/smaps"
}
descendants() {
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do echo "$c"; descendants "$c"; done
}
resident() {
    if [ -z "$run" ]; then
        echo "$(rss "$1") kB"
    else
        echo "$(guest_rss "$1") kB, the target's (the $run process: $(rss "$1") kB)"
    fi
}

# Starts a server (the gateway or the floor), sends it ten requests for
# $path, lets it idle a second and prints the resident sets of it and of
# its warm worker (if any).
measure() {
    label="$1"; path="$2"; shift 2
    $run "$@" >"$out/$label.log" 2>&1 &
    pid=$!
    port=""
    for _ in $(seq 1 200); do
        port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$out/$label.log" | head -n 1)
        [ -n "$port" ] && break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        kill "$pid" 2>/dev/null || true
        cat "$out/$label.log"; echo "$label did not start" >&2; exit 1
    fi
    for _ in 1 2 3 4 5 6 7 8 9 10; do curl -fsS -o /dev/null "http://127.0.0.1:$port$path"; done
    sleep 1
    worker=""
    for p in $(descendants "$pid"); do
        [ "$(cat /proc/"$p"/comm 2>/dev/null)" = faas-worker ] && worker="$p" && break
    done
    printf '%-30s %s\n' "$label idle:" "$(resident "$pid")"
    [ -n "$worker" ] && printf '%-30s %s\n' "its warm worker idle:" "$(resident "$worker")"
    kill -TERM "$pid"
    { wait "$pid"; } 2>/dev/null || true
}

# The gateway on a small config: one PROCESS function from a shared object,
# kept warm, on a port of its own.
cfg="$out/gateway.json"
cat >"$cfg" <<JSON
{ "listen": "127.0.0.1:0",
  "runtime": { "thread_workers": 1 },
  "functions": { "hello": { "library": "$(pwd)/$b/examples/faas-gateway-functions/hello.so",
                            "symbol": "hello", "isolation": "process", "min_warm": 1 } },
  "mappings": [ { "source": "api:GET /hello", "function": "hello" } ] }
JSON
measure gateway /hello "$b/examples/faas-gateway" "$cfg"
measure "floor (bare evhttp)" / "$out/floor"

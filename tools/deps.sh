#!/bin/sh
# Installs the build and test dependencies that are missing (Debian packages).
# Quiet and quick when everything is present.
# curl: the bash custom runtime of the gateway's demo (a Lambda bootstrap).
#
# WITH_CROSS=arm64|armhf: the cross compiler, qemu-user and the target's
# libraries from Debian's multiarch archive instead. libevent-dev is not
# Multi-Arch: same (its event-config.h differs per architecture), so the
# target's copy cannot sit beside the host's: it is unpacked under
# build/cross-ARCH/sysroot with a libevent.pc that points there.
pkgs="libevent-dev libjansson-dev libsodium-dev libsqlite3-dev libhiredis-dev libcmocka-dev pkg-config curl"
# redis-server: the suites start one of their own for the Redis engine.
pkgs="$pkgs redis-server"
[ "${WITH_CHECK_TOOLS:-0}" = 1 ] && pkgs="$pkgs valgrind"
[ "${WITH_FUZZ_TOOLS:-0}" = 1 ] && pkgs="$pkgs clang libclang-rt-14-dev"
cross="${WITH_CROSS:-}"
if [ -n "$cross" ]; then
    case "$cross" in
    arm64) triplet=aarch64-linux-gnu ;;
    armhf) triplet=arm-linux-gnueabihf ;;
    *) echo "WITH_CROSS=$cross: arm64 or armhf" >&2; exit 1 ;;
    esac
    # libevent-2.1-7 and friends: what the unpacked libevent-dev links to.
    pkgs="pkg-config curl qemu-user gcc-$triplet libc6-dev-$cross-cross"
    for p in libjansson-dev libsodium-dev libsqlite3-dev libcmocka-dev libevent-2.1-7 \
             libevent-core-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7; do
        pkgs="$pkgs $p:$cross"
    done
fi
# Installed for the architecture that counts: the one a name gives
# (libjansson-dev:arm64), else the machine's own (or "all"). A plain
# dpkg-query NAME also answers for another architecture's copy, so a
# machine with only libjansson-dev:arm64 would seem to have the host's.
native=$(dpkg --print-architecture 2>/dev/null)
installed() {
    case "$1" in
    *:*) want=${1#*:} ;;
    *) want=$native ;;
    esac
    dpkg-query -W -f='${Status} ${Architecture}\n' "$1" 2>/dev/null |
        grep -Eq "ok installed ($want|all)\$"
}
missing=""
for p in $pkgs; do
    installed "$p" || missing="$missing $p"
done
sysroot="build/cross-$cross/sysroot"
if [ -n "$cross" ] && [ ! -f "$sysroot/libevent.pc" ]; then
    need_libevent=1
else
    need_libevent=0
fi
[ -z "$missing" ] && [ "$need_libevent" = 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
else
    [ -n "$cross" ] && [ -n "$missing" ] &&
        echo "first: sudo dpkg --add-architecture $cross" >&2
    echo "libfaas needs:$missing${cross:+ and libevent-dev:$cross unpacked in $sysroot}" >&2
    echo "run: sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
if [ -n "$missing" ]; then
    echo "installing:$missing"
    if [ -n "$cross" ] && ! dpkg --print-foreign-architectures | grep -qx "$cross"; then
        $sudo dpkg --add-architecture "$cross" || exit 1
    fi
    $sudo apt-get update -qq || exit 1
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends$missing ||
        exit 1
fi
[ "$need_libevent" = 0 ] && exit 0

echo "unpacking libevent-dev:$cross in $sysroot"
rm -rf "$sysroot" && mkdir -p "$sysroot/deb" || exit 1
top=$(pwd)
# apt's download sandbox user cannot write into the tree.
(cd /tmp && apt-get download -qq "libevent-dev:$cross" 2>/dev/null) || {
    $sudo apt-get update -qq && (cd /tmp && apt-get download -qq "libevent-dev:$cross" 2>/dev/null)
} || exit 1
deb=$(ls -t /tmp/libevent-dev_*_"$cross".deb | head -n 1)
mv "$deb" "$sysroot/deb/" && dpkg-deb -x "$sysroot/deb/$(basename "$deb")" "$sysroot" || exit 1
libdir="$sysroot/usr/lib/$triplet"
# The package's libevent*.so links point at the runtime libraries beside
# them; those were installed under /usr/lib/$triplet.
for l in "$libdir"/libevent*.so; do
    ln -sf "/usr/lib/$triplet/$(readlink "$l")" "$l" || exit 1
done
sed -e "s|^prefix=.*|prefix=$top/$sysroot/usr|" "$libdir/pkgconfig/libevent.pc" >"$sysroot/libevent.pc.tmp" &&
    mv "$sysroot/libevent.pc.tmp" "$libdir/pkgconfig/libevent.pc" &&
    touch "$sysroot/libevent.pc"

#!/bin/sh
# Installs the build and test dependencies that are missing (Debian packages).
# Quiet and quick when everything is present.
# curl: the bash custom runtime of the gateway's demo (a Lambda bootstrap).
pkgs="libevent-dev libjansson-dev libsodium-dev libcmocka-dev pkg-config curl"
[ "${WITH_CHECK_TOOLS:-0}" = 1 ] && pkgs="$pkgs valgrind"
[ "${WITH_FUZZ_TOOLS:-0}" = 1 ] && pkgs="$pkgs clang libclang-rt-14-dev"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
else
    echo "libfaas needs:$missing" >&2
    echo "run: sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing"
$sudo apt-get update -qq || exit 1
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq$missing || exit 1

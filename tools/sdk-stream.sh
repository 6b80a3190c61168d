#!/bin/sh
# tools/sdk-stream.sh - response streaming checked with a real client: the
# AWS SDK for JavaScript v3 (@aws-sdk/client-lambda, from npm) calls
# InvokeWithResponseStream on the faas-gateway, whose demo countdown
# function streams (tests/sdk/invoke_stream.mjs says what is checked).
#
#   make sdk-test     (builds the gateway, then runs this)
#
# Needs node (18 or later) and npm with access to the npm registry; the SDK
# is installed once into $B/sdk. SKIP (exit 0) when node or npm is missing,
# unless SDK_REQUIRED=1.
set -eu
B=${B:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
case "$B" in /*) ;; *) B="$root/$B" ;; esac

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "sdk-stream: SKIP: node and npm are needed" >&2
    [ "${SDK_REQUIRED:-0}" = 1 ] && exit 1
    exit 0
fi
sdk="$B/sdk"
if [ ! -d "$sdk/node_modules/@aws-sdk/client-lambda" ]; then
    mkdir -p "$sdk"
    npm install --prefix "$sdk" --no-audit --no-fund --silent @aws-sdk/client-lambda@3
fi

tmp=$(mktemp -d)
gw_pid=""
cleanup() {
    [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
fns="$B/examples/faas-gateway-functions"
cat >"$tmp/sdk.json" <<JSON
{
  "listen": "127.0.0.1:$port",
  "runtime": { "thread_workers": 2, "region": "local", "invoke_api": true },
  "functions": {
    "countdown": { "library": "$fns/countdown.so", "symbol": "countdown",
                   "isolation": "process", "timeout_ms": 10000 },
    "hello": { "library": "$fns/hello.so", "symbol": "hello", "isolation": "process" }
  }
}
JSON
"$B/examples/faas-gateway" "$tmp/sdk.json" >"$tmp/gw.log" 2>&1 &
gw_pid=$!
i=0
until node -e "require('net').connect($port,'127.0.0.1').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1))" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 100 ] || ! kill -0 "$gw_pid" 2>/dev/null; then
        echo "sdk-stream: the gateway did not start:" >&2
        cat "$tmp/gw.log" >&2
        exit 1
    fi
    sleep 0.1
done
# An ES module finds its imports from where it lies: beside the SDK.
cp "$root/tests/sdk/invoke_stream.mjs" "$sdk/"
node "$sdk/invoke_stream.mjs" "http://127.0.0.1:$port" ||
    { cat "$tmp/gw.log" >&2; exit 1; }

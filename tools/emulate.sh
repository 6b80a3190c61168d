#!/bin/sh
# tools/emulate.sh SECONDS QEMU PROGRAM: runs one cross-built suite under
# qemu-user within a time bound (exit 124 past it) and says how long it took.
secs="$1"; qemu="$2"; shift 2
t0=$(date +%s)
rc=0
timeout -k 5 "$secs" "$qemu" "$@" || rc=$?
[ "$rc" = 124 ] && echo "$1: stopped after the bound of $secs s under $qemu"
echo "($1: $(( $(date +%s) - t0 )) s under $qemu, exit $rc)"
exit "$rc"

#!/bin/sh
# Runs each test program (optionally under a runner such as valgrind) and
# prints a closing "N passed, N failed" line counting suites.
runner="$1"; shift
pass=0; fail=0; failed=""
for t in "$@"; do
    echo "== $t"
    if $runner "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); failed="$failed $t"; fi
done
[ -n "$failed" ] && echo "failed suites:$failed"
echo "suites: $pass passed, $fail failed"
[ "$fail" = 0 ]

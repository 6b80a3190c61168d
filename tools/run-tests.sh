#!/bin/sh
# Runs each cmocka suite (optionally under a runner such as valgrind), then
# prints one closing line that counts the tests: "tests: N passed, N failed".
# A suite that dies before cmocka's summary counts as one failed test.
runner="$1"; shift
pass=0; fail=0; failed=""
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
for t in "$@"; do
    echo "== $t"
    if $runner "$t" >"$out" 2>&1; then ok=1; else ok=0; failed="$failed $t"; fi
    cat "$out"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    pass=$((pass + ${p:-0}))
    if [ -n "$f" ]; then
        fail=$((fail + f))
    elif [ "$ok" = 0 ]; then
        fail=$((fail + 1))
    fi
done
[ -n "$failed" ] && echo "failed suites:$failed"
echo "tests: $pass passed, $fail failed"
[ -z "$failed" ]

#!/bin/sh
# Runs each cmocka suite (optionally under a runner such as valgrind), then
# prints one closing line that counts the tests: "tests: N passed, N failed".
# A suite that dies before cmocka's summary counts as one failed test.
runner="$1"; shift
pass=0; fail=0; failed=""
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
# The suites named in DURABLE_SUITES (basenames) run a second time with
# their runtimes on a SQLite file (FAAS_TEST_DURABLE=sqlite, testutil.h),
# and those in REDIS_SUITES once more on a redis-server of their own
# (FAAS_TEST_DURABLE=redis).
runs=""
for t in "$@"; do
    runs="$runs $t"
    for d in $DURABLE_SUITES; do
        [ "$(basename "$t")" = "$d" ] && runs="$runs sqlite:$t"
    done
    for d in $REDIS_SUITES; do
        [ "$(basename "$t")" = "$d" ] && runs="$runs redis:$t"
    done
done
for r in $runs; do
    t=${r#*:}
    if [ "$r" != "$t" ]; then
        echo "== $t (FAAS_TEST_DURABLE=${r%%:*})"
        export FAAS_TEST_DURABLE="${r%%:*}"
    else
        echo "== $t"
        unset FAAS_TEST_DURABLE
    fi
    if $runner "$t" >"$out" 2>&1; then ok=1; else ok=0; failed="$failed $r"; fi
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

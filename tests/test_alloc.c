/*
 * test_alloc.c - out-of-memory paths. Every allocation of the library (and
 * of jansson, whose allocator the suite swaps for the library's counting
 * one) is made to fail in turn, the n-th one for n = 0, 1, 2, ... until a
 * whole scenario runs without reaching the injected failure. Each run must
 * keep the contract: a call either succeeds or returns an error code; a
 * successful faas_invoke gets exactly one callback, a failed one none; and
 * nothing leaks (the suite runs under ASan and valgrind in make check).
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "faas_int.h"
#include "testutil.h"

#ifndef TEST_B
#define TEST_B "build"
#endif

struct scenario {
    int invoked;  /* faas_invoke calls that returned 0 */
    int results;  /* callbacks */
    int errors;   /* callbacks with a non-zero status */
};

static int echo(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    faas_ctx_log(ctx, "echo %s", faas_ctx_request_id(ctx));
    *result = json_pack("{s:O,s:s}", "event", event, "id", faas_ctx_request_id(ctx));
    return 0;
}

static int failing(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    return faas_ctx_fail(ctx, "Boom", "failed with %d", 42);
}

static int init_state(struct faas_ctx *ctx, void **state)
{
    (void)ctx;
    *state = malloc(16);
    return *state ? 0 : -1;
}

static void fini_state(void *state)
{
    free(state);
}

static void on_result(const struct faas_result *res, void *arg)
{
    struct scenario *sc = arg;
    char line[512];
    sc->results++;
    if (faas_result_status(res) != 0)
        sc->errors++;
    assert_true(faas_result_report(res, line, sizeof line) > 0);
}

static void on_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    assert_non_null(rec->request_id);
}

/* One scenario run; returns 1 when the injected failure was never reached. */
static int run_once(long fail_at)
{
    struct event_base *base = event_base_new();
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts inl = FAAS_FUNCTION_OPTS_INIT, thr = FAAS_FUNCTION_OPTS_INIT;
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    struct faas_runtime *rt = NULL;
    struct scenario sc = { 0, 0, 0 };
    struct faas_stats st;
    struct faas_result *res = NULL;
    struct evbuffer *buf;
    const char *names[] = { "inl", "thr", "bad" };
    int registered[3] = { 0, 0, 0 };
    json_t *event;
    int i, rc, untouched;

    assert_non_null(base);
    event = json_pack("{s:s,s:[i,i]}", "k", "v", "list", 1, 2);
    assert_non_null(event);
    buf = evbuffer_new();
    ro.thread_workers = 2;
    ro.log = on_log;
    inl.isolation = FAAS_ISOLATION_INLINE;
    inl.init = init_state;
    inl.fini = fini_state;
    inl.min_warm = 1;
    thr.init = init_state;
    thr.fini = fini_state;
    thr.max_uses = 2;
    io.trace_id = "Root=1-abc";

    atomic_store(&faas_alloc_fail_countdown, fail_at);
    rc = faas_runtime_new(&rt, base, &ro);
    if (rc != 0) {
        assert_int_equal(rc, FAAS_ENOMEM);
        assert_null(rt);
        goto out;
    }
    rc = faas_register(rt, "inl", echo, &inl);
    registered[0] = rc == 0;
    if (rc)
        assert_true(rc == FAAS_ENOMEM || rc == FAAS_ESYS);
    rc = faas_register(rt, "thr", echo, &thr);
    registered[1] = rc == 0;
    if (rc)
        assert_true(rc == FAAS_ENOMEM || rc == FAAS_ESYS);
    rc = faas_register(rt, "bad", failing, &thr);
    registered[2] = rc == 0;
    if (rc)
        assert_true(rc == FAAS_ENOMEM || rc == FAAS_ESYS);

    for (i = 0; i < 9; i++) {
        int f = i % 3;
        rc = faas_invoke(rt, names[f], event, &io, on_result, &sc);
        if (rc == 0)
            sc.invoked++;
        else if (registered[f])
            assert_int_equal(rc, FAAS_ENOMEM);
        else
            assert_int_equal(rc, FAAS_ENOENT);
    }
    assert_true(tu_run_until(base, &sc.results, sc.invoked, 10000));
    assert_int_equal(sc.results, sc.invoked);

    if (registered[1]) {
        rc = faas_invoke_sync(rt, "thr", event, NULL, &res);
        if (rc == 0) {
            assert_non_null(res);
            faas_result_free(res);
        } else {
            assert_int_equal(rc, FAAS_ENOMEM);
        }
    }
    assert_int_equal(faas_stats(rt, NULL, &st), 0);
    /* The sync call may have run its function and then failed to copy the
     * result out: counted, yet FAAS_ENOMEM. */
    assert_true(st.invocations >= (uint64_t)sc.results + (registered[1] && rc == 0));
    assert_true(st.invocations <= (uint64_t)sc.results + (uint64_t)registered[1]);
    rc = faas_metrics_write(rt, buf);
    assert_true(rc == 0 || rc == FAAS_ENOMEM);

    /* Leave one invocation in flight for faas_runtime_free to cancel. */
    if (registered[1] && faas_invoke(rt, "thr", event, NULL, on_result, &sc) == 0)
        sc.invoked++;
    faas_runtime_free(rt);
    assert_int_equal(sc.results, sc.invoked);
out:
    untouched = atomic_load(&faas_alloc_fail_countdown) >= 0;
    atomic_store(&faas_alloc_fail_countdown, -1);
    evbuffer_free(buf);
    json_decref(event);
    event_base_free(base);
    return untouched;
}

/* The same for PROCESS functions: the host's side of workers, channels and
 * the zygote (the workers' own allocations are theirs). */
static int run_once_process(long fail_at)
{
    struct event_base *base = event_base_new();
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts po = FAAS_FUNCTION_OPTS_INIT;
    struct faas_runtime *rt = NULL;
    struct scenario sc = { 0, 0, 0 };
    struct faas_result *res = NULL;
    const char *names[] = { "proc", "lib" };
    int registered[2] = { 0, 0 };
    json_t *event;
    int i, rc, untouched;

    assert_non_null(base);
    event = json_pack("{s:s}", "k", "v");
    assert_non_null(event);
    ro.log = on_log;
    po.isolation = FAAS_ISOLATION_PROCESS;
    po.init = init_state;
    po.fini = fini_state;
    po.min_warm = 1;

    atomic_store(&faas_alloc_fail_countdown, fail_at);
    rc = faas_runtime_new(&rt, base, &ro);
    if (rc != 0) {
        assert_int_equal(rc, FAAS_ENOMEM);
        goto out;
    }
    rc = faas_register(rt, "proc", echo, &po);
    registered[0] = rc == 0;
    if (rc)
        assert_int_equal(rc, FAAS_ENOMEM);
    po.init = NULL;
    po.fini = NULL;
    po.min_warm = 0;
    po.max_uses = 1;
    rc = faas_register_library(rt, "lib", TEST_B "/tests/so/fns.so", "echo", &po);
    registered[1] = rc == 0;
    if (rc)
        assert_int_equal(rc, FAAS_ENOMEM);
    for (i = 0; i < 6; i++) {
        int f = i % 2;
        rc = faas_invoke(rt, names[f], event, NULL, on_result, &sc);
        if (rc == 0)
            sc.invoked++;
        else if (registered[f])
            assert_int_equal(rc, FAAS_ENOMEM);
        else
            assert_int_equal(rc, FAAS_ENOENT);
    }
    assert_true(tu_run_until(base, &sc.results, sc.invoked, 20000));
    assert_int_equal(sc.results, sc.invoked);
    if (registered[0]) {
        rc = faas_invoke_sync(rt, "proc", event, NULL, &res);
        if (rc == 0)
            faas_result_free(res);
        else
            assert_int_equal(rc, FAAS_ENOMEM);
    }
    if (registered[0] && faas_invoke(rt, "proc", event, NULL, on_result, &sc) == 0)
        sc.invoked++;
    faas_runtime_free(rt);
    assert_int_equal(sc.results, sc.invoked);
out:
    untouched = atomic_load(&faas_alloc_fail_countdown) >= 0;
    atomic_store(&faas_alloc_fail_countdown, -1);
    json_decref(event);
    event_base_free(base);
    return untouched;
}

static void test_process_allocations_fail_in_turn(void **state)
{
    long n;
    (void)state;
    for (n = 0; n < 5000; n++)
        if (run_once_process(n))
            break;
    print_message("allocations in the process scenario: %ld\n", n);
    assert_true(n > 20);
    assert_true(n < 5000);
}

static void test_every_allocation_fails_in_turn(void **state)
{
    long n;
    (void)state;
    for (n = 0; n < 5000; n++)
        if (run_once(n))
            break;
    print_message("allocations in the scenario: %ld\n", n);
    /* The scenario makes a few hundred allocations: it must have ended. */
    assert_true(n > 20);
    assert_true(n < 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_fails_in_turn),
        cmocka_unit_test(test_process_allocations_fail_in_turn),
    };
    json_set_alloc_funcs(faas_malloc, free);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_exec_thread.c - THREAD execution: handlers run on worker threads, the
 * workers run handlers at the same time, many invocations complete exactly
 * once with their own payloads, the event is deep-copied, and
 * faas_runtime_free waits for running handlers and cancels their callbacks.
 *
 * Handlers that must stay busy wait on a gate (mutex + condition variable)
 * that the test opens from the loop thread; every wait is bounded. Counters
 * touched by handlers are atomics.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

#define BOUND_MS 8000u
#define GATE_MS 8000u
#define NREC 16
#define NMANY 2000
#define NFUNCS 4
#define BATCH 250

struct rec {
    int calls;
    int status;
    json_t *payload;
    char etype[64];
};

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static struct rec g_rec[NREC];
static int g_cb_total;

/* the many-invocations test */
struct slot {
    int calls;
    int ok;
};
static struct slot g_slot[NMANY];
static int g_many_total;

/* handler side (atomics) */
static pthread_t g_loop_tid;
static int g_where;          /* 1: on the loop thread, 2: elsewhere */
static int g_started;
static int g_returned;
static int g_saw_cancel;
static int g_handler_runs;
static int g_init_calls;
static int g_fini_calls;
static json_t *g_seen_event;

/* gate */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static int g_open;    /* guarded by g_mu */
static int g_arrived; /* guarded by g_mu */

static void gate_open(void)
{
    tu_gate_open(&g_mu, &g_cv, &g_open);
}

/* 1: opened, 2: ctx cancelled, 0: the bound passed. */
static int gate_wait(const struct faas_ctx *ctx, unsigned bound_ms)
{
    return tu_gate_wait(&g_mu, &g_cv, &g_open, ctx, bound_ms);
}

static struct faas_stats get_stats(const char *name)
{
    return tu_stats(g_rt, name);
}

static void on_result(const struct faas_result *res, void *arg)
{
    struct rec *r = arg;
    const char *s;
    r->calls++;
    r->status = faas_result_status(res);
    json_decref(r->payload);
    r->payload = json_incref(faas_result_payload(res));
    s = faas_result_error_type(res);
    snprintf(r->etype, sizeof r->etype, "%s", s ? s : "");
    g_cb_total++;
}

static int init_fn(struct faas_ctx *ctx, void **state)
{
    int *s = malloc(sizeof *s);
    (void)ctx;
    AINC(&g_init_calls);
    if (s == NULL)
        return 1;
    *s = 7;
    *state = s;
    return 0;
}

static void fini_fn(void *state)
{
    AINC(&g_fini_calls);
    free(state);
}

/* Says where it ran. */
static int where_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    ASTORE(&g_where, pthread_equal(pthread_self(), g_loop_tid) ? 1 : 2);
    AINC(&g_handler_runs);
    *result = json_true();
    return 0;
}

/* Waits until two handlers are in at the same time (bounded). */
static int barrier_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    struct timespec end, now;
    int met = 0;
    (void)event;
    clock_gettime(CLOCK_MONOTONIC, &end);
    tu_ts_add_ms(&end, GATE_MS);
    pthread_mutex_lock(&g_mu);
    g_arrived++;
    pthread_cond_broadcast(&g_cv);
    for (;;) {
        if (g_arrived >= 2) {
            met = 1;
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!tu_ts_before(&now, &end))
            break;
        tu_ts_add_ms(&now, 5);
        pthread_cond_timedwait(&g_cv, &g_mu, &now);
    }
    pthread_mutex_unlock(&g_mu);
    if (!met)
        return faas_ctx_fail(ctx, "Barrier", "alone");
    *result = json_true();
    return 0;
}

static int echo_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    AINC(&g_handler_runs);
    *result = json_deep_copy(event);
    return 0;
}

/* Records the event pointer it was given. */
static int ptr_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    ASTORE(&g_seen_event, event);
    *result = json_deep_copy(event);
    return 0;
}

/* Waits for the gate (or cancellation), then returns its event. */
static int gate_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    int r;
    AINC(&g_started);
    r = gate_wait(ctx, GATE_MS);
    if (r == 2)
        AINC(&g_saw_cancel);
    *result = json_deep_copy(event);
    AINC(&g_returned);
    return r == 0 ? 99 : 0;
}

static int setup(void **state)
{
    (void)state;
    memset(g_rec, 0, sizeof g_rec);
    memset(g_slot, 0, sizeof g_slot);
    g_cb_total = 0;
    g_many_total = 0;
    ASTORE(&g_where, 0);
    ASTORE(&g_started, 0);
    ASTORE(&g_returned, 0);
    ASTORE(&g_saw_cancel, 0);
    ASTORE(&g_handler_runs, 0);
    ASTORE(&g_init_calls, 0);
    ASTORE(&g_fini_calls, 0);
    ASTORE(&g_seen_event, NULL);
    pthread_mutex_lock(&g_mu);
    g_open = 0;
    g_arrived = 0;
    pthread_mutex_unlock(&g_mu);
    g_rt = NULL;
    g_base = event_base_new();
    return g_base == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    size_t i;
    (void)state;
    gate_open();
    tu_rt_free(&g_rt, &g_base);
    for (i = 0; i < NREC; i++) {
        json_decref(g_rec[i].payload);
        g_rec[i].payload = NULL;
    }
    return 0;
}

static void start_rt(unsigned workers)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    ro.thread_workers = workers;
    ro.zygote = 0;
    assert_int_equal(faas_runtime_new(&g_rt, g_base, &ro), 0);
    assert_non_null(g_rt);
}

static struct faas_function_opts fopts(enum faas_isolation iso)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    fo.isolation = iso;
    fo.timeout_ms = 20000;
    return fo;
}

/* ---- tests ---- */

static void test_handler_runs_off_loop(void **state)
{
    struct faas_function_opts th = fopts(FAAS_ISOLATION_THREAD);
    struct faas_function_opts in = fopts(FAAS_ISOLATION_INLINE);
    (void)state;
    start_rt(2);
    assert_int_equal(faas_register(g_rt, "th", where_handler, &th), 0);
    assert_int_equal(faas_register(g_rt, "in", where_handler, &in), 0);

    assert_int_equal(faas_invoke(g_rt, "th", NULL, NULL, on_result, &g_rec[0]), 0);
    assert_true(tu_run_until(g_base, &g_rec[0].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[0].status, 0);
    assert_true(json_is_true(g_rec[0].payload));
    assert_int_equal(ALOAD(&g_where), 2);

    /* the contrast: INLINE runs on the loop thread, later, from the loop */
    ASTORE(&g_where, 0);
    assert_int_equal(faas_invoke(g_rt, "in", NULL, NULL, on_result, &g_rec[1]), 0);
    assert_int_equal(ALOAD(&g_handler_runs), 1);
    assert_true(tu_run_until(g_base, &g_rec[1].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[1].status, 0);
    assert_int_equal(ALOAD(&g_where), 1);
    assert_int_equal(g_cb_total, 2);
}

static void test_two_workers_run_together(void **state)
{
    struct faas_function_opts fo = fopts(FAAS_ISOLATION_THREAD);
    (void)state;
    start_rt(2);
    assert_int_equal(faas_register(g_rt, "bar", barrier_handler, &fo), 0);
    assert_int_equal(faas_invoke(g_rt, "bar", NULL, NULL, on_result, &g_rec[0]), 0);
    assert_int_equal(faas_invoke(g_rt, "bar", NULL, NULL, on_result, &g_rec[1]), 0);
    assert_true(tu_run_until(g_base, &g_cb_total, 2, GATE_MS + BOUND_MS));
    assert_int_equal(g_rec[0].calls, 1);
    assert_int_equal(g_rec[1].calls, 1);
    assert_string_equal(g_rec[0].etype, "");
    assert_string_equal(g_rec[1].etype, "");
    assert_int_equal(g_rec[0].status, 0);
    assert_int_equal(g_rec[1].status, 0);
    assert_true(json_is_true(g_rec[0].payload));
    assert_true(json_is_true(g_rec[1].payload));
}

static void on_many(const struct faas_result *res, void *arg)
{
    struct slot *s = arg;
    int i = (int)(s - g_slot);
    json_t *p = faas_result_payload(res);
    char want[16];
    snprintf(want, sizeof want, "e%d", i % NFUNCS);
    s->calls++;
    s->ok = faas_result_status(res) == 0 && json_is_object(p) &&
            json_integer_value(json_object_get(p, "i")) == i &&
            json_equal(json_object_get(p, "tag"), json_object_get(p, "tag2")) &&
            strcmp(faas_result_function_name(res), want) == 0;
    g_many_total++;
}

static void test_many_invocations(void **state)
{
    struct faas_stats st;
    char name[16];
    int i, f, b;
    (void)state;
    start_rt(4);
    for (f = 0; f < NFUNCS; f++) {
        struct faas_function_opts fo = fopts(FAAS_ISOLATION_THREAD);
        if (f >= 2) {
            fo.max_concurrency = 2;
            fo.max_queue = BATCH;
        }
        snprintf(name, sizeof name, "e%d", f);
        assert_int_equal(faas_register(g_rt, name, echo_handler, &fo), 0);
    }
    for (b = 0; b < NMANY / BATCH; b++) {
        for (i = b * BATCH; i < (b + 1) * BATCH; i++) {
            json_t *ev = json_pack("{s:i}", "i", i);
            snprintf(name, sizeof name, "e%d", i % NFUNCS);
            assert_non_null(ev);
            json_object_set_new(ev, "tag", json_sprintf("t%d", i));
            json_object_set_new(ev, "tag2", json_sprintf("t%d", i));
            assert_int_equal(faas_invoke(g_rt, name, ev, NULL, on_many, &g_slot[i]), 0);
            json_decref(ev);
        }
        assert_true(tu_run_until(g_base, &g_many_total, (b + 1) * BATCH, 30000));
    }
    tu_run_for(g_base, 30);
    assert_int_equal(g_many_total, NMANY);
    for (i = 0; i < NMANY; i++) {
        assert_int_equal(g_slot[i].calls, 1);
        assert_int_equal(g_slot[i].ok, 1);
    }
    assert_int_equal(ALOAD(&g_handler_runs), NMANY);
    st = get_stats(NULL);
    assert_int_equal(st.invocations, NMANY);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.throttles, 0);
    assert_int_equal(st.concurrency, 0);
    assert_int_equal(st.queued, 0);
    st = get_stats("e2");
    assert_int_equal(st.invocations, NMANY / NFUNCS);
    assert_true(st.instances <= 2);
}

static void test_event_deep_copied(void **state)
{
    struct faas_function_opts fo = fopts(FAAS_ISOLATION_THREAD);
    json_t *ev, *want, *junk;
    int i;
    (void)state;
    start_rt(2);
    assert_int_equal(faas_register(g_rt, "ptr", ptr_handler, &fo), 0);
    assert_int_equal(faas_register(g_rt, "late", gate_handler, &fo), 0);

    /* the handler gets a copy, not the caller's object */
    ev = json_pack("{s:s,s:[i,i,i]}", "k", "value", "arr", 1, 2, 3);
    assert_non_null(ev);
    assert_int_equal(faas_invoke(g_rt, "ptr", ev, NULL, on_result, &g_rec[0]), 0);
    assert_true(tu_run_until(g_base, &g_rec[0].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[0].status, 0);
    assert_non_null(ALOAD(&g_seen_event));
    assert_ptr_not_equal(ALOAD(&g_seen_event), ev);
    assert_true(json_equal(g_rec[0].payload, ev));
    assert_int_equal(ev->refcount, 1); /* no reference kept */
    json_decref(ev);

    /* the caller drops its only reference at once; the handler reads later */
    want = json_pack("{s:s,s:[i,i,i],s:{s:n}}", "k", "value", "arr", 1, 2, 3, "o", "x");
    ev = json_deep_copy(want);
    assert_int_equal(faas_invoke(g_rt, "late", ev, NULL, on_result, &g_rec[1]), 0);
    json_decref(ev);
    ev = NULL;
    assert_true(tu_run_until_atomic(g_base, &g_started, 1, BOUND_MS));
    /* reuse the freed memory */
    junk = json_array();
    for (i = 0; i < 32; i++)
        json_array_append_new(junk, json_pack("{s:s,s:[i,i,i]}", "k", "junk!", "arr", 9, 9, 9));
    gate_open();
    assert_true(tu_run_until(g_base, &g_rec[1].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[1].status, 0);
    assert_true(json_equal(g_rec[1].payload, want));
    json_decref(junk);
    json_decref(want);
    assert_int_equal(g_cb_total, 2);
}

static void test_free_waits_and_cancels(void **state)
{
    struct faas_function_opts busy = fopts(FAAS_ISOLATION_THREAD);
    struct faas_function_opts q1 = fopts(FAAS_ISOLATION_THREAD);
    int i;
    (void)state;
    start_rt(3);
    busy.init = init_fn;
    busy.fini = fini_fn;
    q1.init = init_fn;
    q1.fini = fini_fn;
    q1.max_concurrency = 1;
    q1.max_queue = 1;
    assert_int_equal(faas_register(g_rt, "busy", gate_handler, &busy), 0);
    assert_int_equal(faas_register(g_rt, "q1", gate_handler, &q1), 0);
    assert_int_equal(faas_invoke(g_rt, "busy", NULL, NULL, on_result, &g_rec[0]), 0);
    assert_int_equal(faas_invoke(g_rt, "busy", NULL, NULL, on_result, &g_rec[1]), 0);
    assert_int_equal(faas_invoke(g_rt, "q1", NULL, NULL, on_result, &g_rec[2]), 0);
    assert_int_equal(faas_invoke(g_rt, "q1", NULL, NULL, on_result, &g_rec[3]), 0);
    assert_true(tu_run_until_atomic(g_base, &g_started, 3, BOUND_MS));
    assert_int_equal(g_cb_total, 0);

    /* the gate stays shut: the handlers return only when cancelled */
    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_int_equal(ALOAD(&g_returned), 3);
    assert_int_equal(ALOAD(&g_saw_cancel), 3);
    assert_int_equal(ALOAD(&g_started), 3); /* the queued one never ran */
    assert_int_equal(g_cb_total, 4);
    for (i = 0; i < 4; i++) {
        assert_int_equal(g_rec[i].calls, 1);
        assert_int_equal(g_rec[i].status, FAAS_ECANCELED);
    }
    assert_int_equal(ALOAD(&g_init_calls), 3);
    assert_int_equal(ALOAD(&g_fini_calls), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handler_runs_off_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_workers_run_together, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_invocations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_deep_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_waits_and_cancels, setup, teardown),
    };
    g_loop_tid = pthread_self();
    tu_cond_init_monotonic(&g_cv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_pool.c - the warm pool policy, for INLINE and THREAD functions: cold
 * and warm starts, max_concurrency + max_queue throttling (FIFO queue),
 * min_warm, idle reaping, max_uses recycling, init failures and unregister.
 *
 * Handlers that must stay busy wait on a gate (mutex + condition variable)
 * that the test opens from the loop thread; every wait is bounded. Counters
 * touched by handlers, init and fini are atomics.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "faas_int.h" /* faas_fn_lookup: a min_warm init still running */
#include "testutil.h"

#define BOUND_MS 8000u
#define GATE_MS 8000u
#define NREC 16

static enum faas_isolation iso_inline = FAAS_ISOLATION_INLINE;
static enum faas_isolation iso_thread = FAAS_ISOLATION_THREAD;

/* ---- what the loop thread records (result callbacks) ---- */

struct rec {
    int calls;
    int status;
    int cold;
    uint64_t init_us;
    json_t *payload;
    char etype[64];
    char emsg[128];
};

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static struct rec g_rec[NREC];
static int g_cb_total;
static int g_cb_order[64];

/* ---- what handlers, init and fini record (atomics) ---- */

static int g_init_calls;
static int g_init_done;      /* inits that succeeded and returned */
static int g_fini_calls;
static int g_handler_runs;
static int g_started;
static int g_returned;
static int g_saw_cancel;
static int g_init_fail_left; /* > 0: the next init calls fail */
static int g_init_fail_kind; /* 1: faas_ctx_fail, 2: plain non-zero */
static void *g_init_state;   /* the last state init made */
static void *g_seen_state;   /* the last state a handler saw */

/* ---- the gate: handlers wait on it, the test opens it ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static int g_open;           /* guarded by g_mu */
static int g_start_order[NREC]; /* guarded by g_mu */
static int g_nstart;         /* guarded by g_mu */

static void gate_open(void)
{
    tu_gate_open(&g_mu, &g_cv, &g_open);
}

/* 1: opened, 2: ctx cancelled, 0: the bound passed. */
static int gate_wait(const struct faas_ctx *ctx, unsigned bound_ms)
{
    return tu_gate_wait(&g_mu, &g_cv, &g_open, ctx, bound_ms);
}

/* ---- driving the loop ---- */

enum stat_field { ST_INSTANCES, ST_CONCURRENCY, ST_QUEUED };

struct stat_want {
    const char *name;
    enum stat_field field;
    uint32_t want;
};

static int pred_stat(const void *arg)
{
    const struct stat_want *w = arg;
    struct faas_stats st;
    memset(&st, 0, sizeof st);
    if (faas_stats(g_rt, w->name, &st) != 0)
        return 0;
    switch (w->field) {
    case ST_INSTANCES:
        return st.instances == w->want;
    case ST_CONCURRENCY:
        return st.concurrency == w->want;
    case ST_QUEUED:
        return st.queued == w->want;
    }
    return 0;
}

/* Runs the loop until the stat equals want (bounded). */
static int run_until_stat(const char *name, enum stat_field field, uint32_t want,
                          unsigned bound_ms)
{
    struct stat_want w = { name, field, want };
    return tu_run_until_pred(g_base, pred_stat, &w, bound_ms);
}

static struct faas_stats get_stats(const char *name)
{
    return tu_stats(g_rt, name);
}

/* ---- callbacks ---- */

static void on_result(const struct faas_result *res, void *arg)
{
    struct rec *r = arg;
    const char *s;
    r->calls++;
    r->status = faas_result_status(res);
    r->cold = faas_result_cold_start(res);
    r->init_us = faas_result_init_duration_us(res);
    json_decref(r->payload);
    r->payload = json_incref(faas_result_payload(res));
    s = faas_result_error_type(res);
    snprintf(r->etype, sizeof r->etype, "%s", s ? s : "");
    s = faas_result_error_message(res);
    snprintf(r->emsg, sizeof r->emsg, "%s", s ? s : "");
    if (g_cb_total < (int)(sizeof g_cb_order / sizeof g_cb_order[0]))
        g_cb_order[g_cb_total] = (int)(r - g_rec);
    g_cb_total++;
}

static void spin_us(unsigned us)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do {
        clock_gettime(CLOCK_MONOTONIC, &b);
    } while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000L < (long)us);
}

static int init_fn(struct faas_ctx *ctx, void **state)
{
    int *s;
    AINC(&g_init_calls);
    spin_us(300); /* a measurable init duration on the real clock */
    if (ALOAD(&g_init_fail_left) > 0) {
        __atomic_sub_fetch(&g_init_fail_left, 1, __ATOMIC_SEQ_CST);
        if (ALOAD(&g_init_fail_kind) == 1)
            return faas_ctx_fail(ctx, "InitBoom", "no db %d", 3);
        return 7;
    }
    s = malloc(sizeof *s);
    if (s == NULL)
        return 1;
    *s = 42;
    ASTORE(&g_init_state, (void *)s);
    *state = s;
    AINC(&g_init_done);
    return 0;
}

static void fini_fn(void *state)
{
    AINC(&g_fini_calls);
    free(state);
}

static int event_n(json_t *event)
{
    return (int)json_integer_value(json_object_get(event, "n"));
}

/* Returns its event; records the state it saw. */
static int echo_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    AINC(&g_handler_runs);
    ASTORE(&g_seen_state, faas_ctx_state(ctx));
    *result = json_deep_copy(event);
    return 0;
}

/* Records its start, waits for the gate (or cancellation), returns its event. */
static int gate_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    int n = event_n(event);
    int r;
    AINC(&g_handler_runs);
    pthread_mutex_lock(&g_mu);
    if (g_nstart < NREC)
        g_start_order[g_nstart++] = n;
    pthread_mutex_unlock(&g_mu);
    AINC(&g_started);
    r = gate_wait(ctx, GATE_MS);
    if (r == 2)
        AINC(&g_saw_cancel);
    *result = json_deep_copy(event);
    AINC(&g_returned);
    return r == 0 ? 99 : 0;
}

/* ---- fixture ---- */

static int setup(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    (void)state;
    memset(g_rec, 0, sizeof g_rec);
    memset(g_cb_order, 0, sizeof g_cb_order);
    g_cb_total = 0;
    ASTORE(&g_init_calls, 0);
    ASTORE(&g_init_done, 0);
    ASTORE(&g_fini_calls, 0);
    ASTORE(&g_handler_runs, 0);
    ASTORE(&g_started, 0);
    ASTORE(&g_returned, 0);
    ASTORE(&g_saw_cancel, 0);
    ASTORE(&g_init_fail_left, 0);
    ASTORE(&g_init_fail_kind, 1);
    ASTORE(&g_init_state, NULL);
    ASTORE(&g_seen_state, NULL);
    pthread_mutex_lock(&g_mu);
    g_open = 0;
    g_nstart = 0;
    memset(g_start_order, 0, sizeof g_start_order);
    pthread_mutex_unlock(&g_mu);

    g_base = event_base_new();
    if (g_base == NULL)
        return -1;
    ro.thread_workers = 4;
    ro.zygote = 0;
    g_rt = NULL;
    if (faas_runtime_new(&g_rt, g_base, &ro) != 0 || g_rt == NULL)
        return -1;
    return 0;
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

/* Frees the runtime inside a test (to check fini counts and cancellations). */
static void free_runtime(void)
{
    gate_open();
    faas_runtime_free(g_rt);
    g_rt = NULL;
}

static enum faas_isolation iso_of(void **state)
{
    return *(const enum faas_isolation *)*state;
}

static int invoke_n(const char *name, int n, const struct faas_invoke_opts *io)
{
    json_t *ev = json_pack("{s:i}", "n", n);
    int rc;
    assert_non_null(ev);
    rc = faas_invoke(g_rt, name, ev, io, on_result, &g_rec[n]);
    json_decref(ev);
    return rc;
}

/* Invokes and drives the loop until the one result arrived. */
static void invoke_wait(const char *name, int n)
{
    assert_int_equal(invoke_n(name, n, NULL), 0);
    assert_int_equal(g_rec[n].calls, 0); /* never inside faas_invoke */
    assert_true(tu_run_until(g_base, &g_rec[n].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[n].calls, 1);
}

static void assert_payload_n(int i)
{
    assert_non_null(g_rec[i].payload);
    assert_true(json_is_object(g_rec[i].payload));
    assert_int_equal(event_n(g_rec[i].payload), i);
}

static struct faas_function_opts base_opts(enum faas_isolation iso)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    fo.isolation = iso;
    fo.timeout_ms = 20000;
    return fo;
}

/* ---- tests ---- */

static void test_cold_then_warm(void **state)
{
    struct faas_function_opts fo = base_opts(iso_of(state));
    struct faas_stats st;
    void *init_state;

    fo.init = init_fn;
    fo.fini = fini_fn;
    assert_int_equal(faas_register(g_rt, "cw", echo_handler, &fo), 0);

    invoke_wait("cw", 0);
    assert_int_equal(g_rec[0].status, 0);
    assert_payload_n(0);
    assert_int_equal(g_rec[0].cold, 1);
    assert_true(g_rec[0].init_us > 0);
    assert_int_equal(ALOAD(&g_init_calls), 1);
    init_state = ALOAD(&g_init_state);
    assert_non_null(init_state);
    assert_ptr_equal(ALOAD(&g_seen_state), init_state);

    ASTORE(&g_seen_state, NULL);
    invoke_wait("cw", 1);
    assert_int_equal(g_rec[1].status, 0);
    assert_payload_n(1);
    assert_int_equal(g_rec[1].cold, 0);
    assert_int_equal(g_rec[1].init_us, 0);
    assert_int_equal(ALOAD(&g_init_calls), 1);
    assert_ptr_equal(ALOAD(&g_seen_state), init_state);
    assert_int_equal(*(int *)ALOAD(&g_seen_state), 42);

    st = get_stats("cw");
    assert_int_equal(st.invocations, 2);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.cold_starts, 1);
    assert_int_equal(st.instances, 1);
    assert_int_equal(st.concurrency, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(g_cb_total, 2);

    assert_int_equal(ALOAD(&g_fini_calls), 0);
    free_runtime();
    assert_int_equal(ALOAD(&g_fini_calls), 1);
    assert_int_equal(g_cb_total, 2);
}

static void test_throttle_concurrency_and_queue(void **state)
{
    struct faas_function_opts fo = base_opts(FAAS_ISOLATION_THREAD);
    struct faas_stats st;
    int i;
    (void)state;

    fo.max_concurrency = 3;
    fo.max_queue = 1;
    assert_int_equal(faas_register(g_rt, "thr", gate_handler, &fo), 0);

    for (i = 0; i < 4; i++)
        assert_int_equal(invoke_n("thr", i, NULL), 0);
    /* 3 running + 1 waiting: the 5th is refused at once */
    assert_int_equal(invoke_n("thr", 4, NULL), FAAS_ETHROTTLED);
    st = get_stats("thr");
    assert_int_equal(st.throttles, 1);

    /* three handlers are busy at the same time, the fourth waits */
    assert_true(tu_run_until_atomic(g_base, &g_started, 3, BOUND_MS));
    tu_run_for(g_base, 60);
    assert_int_equal(ALOAD(&g_started), 3);
    st = get_stats("thr");
    assert_int_equal(st.concurrency, 3);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.instances, 3);
    assert_int_equal(g_cb_total, 0);

    assert_int_equal(invoke_n("thr", 5, NULL), FAAS_ETHROTTLED);
    st = get_stats("thr");
    assert_int_equal(st.throttles, 2);
    assert_int_equal(st.queued, 1);

    gate_open();
    assert_true(tu_run_until(g_base, &g_cb_total, 4, BOUND_MS));
    for (i = 0; i < 4; i++) {
        assert_int_equal(g_rec[i].calls, 1);
        assert_int_equal(g_rec[i].status, 0);
        assert_payload_n(i);
    }
    assert_int_equal(ALOAD(&g_started), 4);
    tu_run_for(g_base, 30);
    assert_int_equal(g_cb_total, 4);
    assert_int_equal(g_rec[4].calls, 0);
    assert_int_equal(g_rec[5].calls, 0);

    st = get_stats("thr");
    assert_int_equal(st.invocations, 4);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.throttles, 2);
    assert_int_equal(st.queued, 0);
    assert_true(run_until_stat("thr", ST_CONCURRENCY, 0, BOUND_MS));
    st = get_stats(NULL);
    assert_int_equal(st.throttles, 2);

    free_runtime();
    assert_int_equal(g_cb_total, 4); /* throttled calls never call back */
    assert_int_equal(g_rec[4].calls, 0);
    assert_int_equal(g_rec[5].calls, 0);
}

static void test_queue_fifo(void **state)
{
    struct faas_function_opts fo = base_opts(FAAS_ISOLATION_THREAD);
    struct faas_stats st;
    int order[NREC];
    int i, nstart;
    (void)state;

    fo.max_concurrency = 1;
    fo.max_queue = 3;
    assert_int_equal(faas_register(g_rt, "fifo", gate_handler, &fo), 0);

    for (i = 0; i < 4; i++)
        assert_int_equal(invoke_n("fifo", i, NULL), 0);
    assert_int_equal(invoke_n("fifo", 4, NULL), FAAS_ETHROTTLED);

    assert_true(tu_run_until_atomic(g_base, &g_started, 1, BOUND_MS));
    tu_run_for(g_base, 40);
    assert_int_equal(ALOAD(&g_started), 1);
    st = get_stats("fifo");
    assert_int_equal(st.concurrency, 1);
    assert_int_equal(st.queued, 3);
    assert_int_equal(st.instances, 1);
    assert_int_equal(st.throttles, 1);

    gate_open();
    assert_true(tu_run_until(g_base, &g_cb_total, 4, BOUND_MS));
    pthread_mutex_lock(&g_mu); /* copy, then assert: never fail holding it */
    nstart = g_nstart;
    memcpy(order, g_start_order, sizeof order);
    pthread_mutex_unlock(&g_mu);
    assert_int_equal(nstart, 4);
    for (i = 0; i < 4; i++)
        assert_int_equal(order[i], i);
    for (i = 0; i < 4; i++) {
        assert_int_equal(g_cb_order[i], i);
        assert_int_equal(g_rec[i].calls, 1);
        assert_int_equal(g_rec[i].status, 0);
        assert_payload_n(i);
    }
    assert_int_equal(g_rec[0].cold, 1);
    for (i = 1; i < 4; i++)
        assert_int_equal(g_rec[i].cold, 0);
    assert_int_equal(g_rec[4].calls, 0);

    st = get_stats("fifo");
    assert_int_equal(st.invocations, 4);
    assert_int_equal(st.cold_starts, 1);
    assert_int_equal(st.instances, 1);
    assert_int_equal(st.queued, 0);
}

static void test_queue_zero_throttles_second(void **state)
{
    struct faas_function_opts fo = base_opts(FAAS_ISOLATION_THREAD);
    struct faas_stats st;
    (void)state;

    fo.max_concurrency = 1;
    fo.max_queue = 0;
    assert_int_equal(faas_register(g_rt, "mq0", gate_handler, &fo), 0);

    assert_int_equal(invoke_n("mq0", 0, NULL), 0);
    assert_int_equal(invoke_n("mq0", 1, NULL), FAAS_ETHROTTLED);
    assert_true(tu_run_until_atomic(g_base, &g_started, 1, BOUND_MS));
    assert_int_equal(invoke_n("mq0", 2, NULL), FAAS_ETHROTTLED);
    st = get_stats("mq0");
    assert_int_equal(st.throttles, 2);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.concurrency, 1);

    gate_open();
    assert_true(tu_run_until(g_base, &g_rec[0].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[0].status, 0);
    assert_true(run_until_stat("mq0", ST_CONCURRENCY, 0, BOUND_MS));

    /* the instance is free again: the next one runs, warm */
    invoke_wait("mq0", 3);
    assert_int_equal(g_rec[3].status, 0);
    assert_int_equal(g_rec[3].cold, 0);
    assert_payload_n(3);
    tu_run_for(g_base, 20);
    assert_int_equal(g_rec[1].calls, 0);
    assert_int_equal(g_rec[2].calls, 0);
    assert_int_equal(g_cb_total, 2);
    st = get_stats("mq0");
    assert_int_equal(st.throttles, 2);
    assert_int_equal(st.invocations, 2);
}

static void test_min_warm(void **state)
{
    struct faas_function_opts fo = base_opts(iso_of(state));
    struct faas_stats st;

    fo.min_warm = 2;
    fo.idle_timeout_ms = 50;
    fo.init = init_fn;
    fo.fini = fini_fn;
    assert_int_equal(faas_register(g_rt, "warm", echo_handler, &fo), 0);

    assert_true(tu_run_until_atomic(g_base, &g_init_done, 2, BOUND_MS));
    assert_true(run_until_stat("warm", ST_INSTANCES, 2, BOUND_MS));

    /* well past idle_timeout_ms: min_warm instances are never reaped */
    tu_run_for(g_base, 300);
    assert_int_equal(ALOAD(&g_fini_calls), 0);
    assert_int_equal(ALOAD(&g_init_calls), 2);
    st = get_stats("warm");
    assert_int_equal(st.instances, 2);
    assert_int_equal(st.concurrency, 0);
    assert_int_equal(g_cb_total, 0);

    /* an invocation finds a warm instance */
    invoke_wait("warm", 0);
    assert_int_equal(g_rec[0].status, 0);
    assert_int_equal(g_rec[0].cold, 0);
    assert_int_equal(g_rec[0].init_us, 0);
    assert_non_null(ALOAD(&g_seen_state));
    assert_int_equal(*(int *)ALOAD(&g_seen_state), 42);
    assert_int_equal(ALOAD(&g_init_calls), 2);
    st = get_stats("warm");
    assert_int_equal(st.instances, 2);

    free_runtime();
    assert_int_equal(ALOAD(&g_fini_calls), 2);
}

static void test_idle_reap_to_zero(void **state)
{
    struct faas_function_opts fo = base_opts(iso_of(state));
    struct faas_stats st;

    fo.idle_timeout_ms = 50;
    fo.init = init_fn;
    fo.fini = fini_fn;
    assert_int_equal(faas_register(g_rt, "idle", echo_handler, &fo), 0);

    invoke_wait("idle", 0);
    assert_int_equal(g_rec[0].status, 0);
    assert_int_equal(g_rec[0].cold, 1);

    assert_true(tu_run_until_atomic(g_base, &g_fini_calls, 1, BOUND_MS));
    assert_true(run_until_stat("idle", ST_INSTANCES, 0, BOUND_MS));
    assert_int_equal(ALOAD(&g_fini_calls), 1);

    invoke_wait("idle", 1);
    assert_int_equal(g_rec[1].status, 0);
    assert_int_equal(g_rec[1].cold, 1);
    assert_true(g_rec[1].init_us > 0);
    assert_int_equal(ALOAD(&g_init_calls), 2);
    st = get_stats("idle");
    assert_int_equal(st.cold_starts, 2);
    assert_int_equal(st.invocations, 2);

    free_runtime();
    /* the reaped instance is not finalised twice */
    assert_int_equal(ALOAD(&g_fini_calls), 2);
}

static void test_idle_reap_keeps_min_warm(void **state)
{
    struct faas_function_opts fo = base_opts(FAAS_ISOLATION_THREAD);
    struct faas_stats st;
    int i, cold = 0;
    (void)state;

    fo.min_warm = 1;
    fo.idle_timeout_ms = 50;
    /* whether the first call finds the min_warm instance ready or still
     * initialising, three calls make exactly two more instances */
    fo.max_concurrency = 3;
    fo.max_queue = 3;
    fo.init = init_fn;
    fo.fini = fini_fn;
    assert_int_equal(faas_register(g_rt, "reap", gate_handler, &fo), 0);
    assert_true(tu_run_until_atomic(g_base, &g_init_done, 1, BOUND_MS));
    assert_true(run_until_stat("reap", ST_INSTANCES, 1, BOUND_MS));

    /* three busy at once: the warm one and two new ones */
    for (i = 0; i < 3; i++)
        assert_int_equal(invoke_n("reap", i, NULL), 0);
    assert_true(tu_run_until_atomic(g_base, &g_started, 3, BOUND_MS));
    st = get_stats("reap");
    assert_int_equal(st.instances, 3);
    assert_int_equal(st.concurrency, 3);
    assert_int_equal(ALOAD(&g_init_calls), 3);

    gate_open();
    assert_true(tu_run_until(g_base, &g_cb_total, 3, BOUND_MS));
    for (i = 0; i < 3; i++) {
        assert_int_equal(g_rec[i].status, 0);
        cold += g_rec[i].cold;
    }
    assert_int_equal(cold, 2);

    /* the two above min_warm are reaped, the last one stays */
    assert_true(tu_run_until_atomic(g_base, &g_fini_calls, 2, BOUND_MS));
    assert_true(run_until_stat("reap", ST_INSTANCES, 1, BOUND_MS));
    tu_run_for(g_base, 250);
    assert_int_equal(ALOAD(&g_fini_calls), 2);
    st = get_stats("reap");
    assert_int_equal(st.instances, 1);
    assert_int_equal(g_cb_total, 3);

    free_runtime();
    assert_int_equal(ALOAD(&g_fini_calls), 3);
}

static void test_max_uses(void **state)
{
    struct faas_function_opts fo = base_opts(iso_of(state));
    struct faas_stats st;

    fo.max_uses = 2;
    fo.init = init_fn;
    fo.fini = fini_fn;
    assert_int_equal(faas_register(g_rt, "uses", echo_handler, &fo), 0);

    invoke_wait("uses", 0);
    assert_int_equal(g_rec[0].status, 0);
    assert_int_equal(g_rec[0].cold, 1);
    assert_int_equal(ALOAD(&g_fini_calls), 0);

    invoke_wait("uses", 1);
    assert_int_equal(g_rec[1].status, 0);
    assert_int_equal(g_rec[1].cold, 0);
    assert_payload_n(1);
    /* used twice: finalised */
    assert_true(tu_run_until_atomic(g_base, &g_fini_calls, 1, BOUND_MS));
    assert_true(run_until_stat("uses", ST_INSTANCES, 0, BOUND_MS));

    invoke_wait("uses", 2);
    assert_int_equal(g_rec[2].status, 0);
    assert_int_equal(g_rec[2].cold, 1);
    assert_true(g_rec[2].init_us > 0);
    assert_int_equal(ALOAD(&g_init_calls), 2);
    assert_int_equal(ALOAD(&g_fini_calls), 1);
    st = get_stats("uses");
    assert_int_equal(st.cold_starts, 2);
    assert_int_equal(st.invocations, 3);
    assert_int_equal(st.instances, 1);

    free_runtime();
    assert_int_equal(ALOAD(&g_fini_calls), 2);
}

static void test_init_failure_retries(void **state)
{
    struct faas_function_opts fo = base_opts(iso_of(state));
    struct faas_stats st;

    fo.init = init_fn;
    fo.fini = fini_fn;
    ASTORE(&g_init_fail_left, 2);
    ASTORE(&g_init_fail_kind, 1); /* first faas_ctx_fail, then plain 7 */
    assert_int_equal(faas_register(g_rt, "ifail", echo_handler, &fo), 0);

    invoke_wait("ifail", 0);
    assert_int_equal(g_rec[0].status, FAAS_EINIT);
    assert_string_equal(g_rec[0].etype, "InitBoom");
    assert_string_equal(g_rec[0].emsg, "no db 3");
    assert_int_equal(ALOAD(&g_init_calls), 1);
    assert_int_equal(ALOAD(&g_handler_runs), 0);
    assert_true(run_until_stat("ifail", ST_INSTANCES, 0, BOUND_MS));

    /* the next invocation retries init; it fails again, without ctx_fail */
    ASTORE(&g_init_fail_kind, 2);
    invoke_wait("ifail", 1);
    assert_int_equal(g_rec[1].status, FAAS_EINIT);
    assert_string_equal(g_rec[1].etype, "Runtime.InitError");
    assert_int_equal(ALOAD(&g_init_calls), 2);
    assert_int_equal(ALOAD(&g_handler_runs), 0);

    /* and the third succeeds: a cold start */
    invoke_wait("ifail", 2);
    assert_int_equal(g_rec[2].status, 0);
    assert_int_equal(g_rec[2].cold, 1);
    assert_payload_n(2);
    assert_int_equal(ALOAD(&g_init_calls), 3);
    assert_int_equal(ALOAD(&g_handler_runs), 1);

    st = get_stats("ifail");
    assert_int_equal(st.invocations, 3);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.instances, 1);

    free_runtime();
    /* failed instances are not finalised */
    assert_int_equal(ALOAD(&g_fini_calls), 1);
    assert_int_equal(g_cb_total, 3);
}

static void test_unregister_cancels_thread(void **state)
{
    struct faas_function_opts fo = base_opts(FAAS_ISOLATION_THREAD);
    struct faas_stats st;
    int i;
    (void)state;

    fo.max_concurrency = 1;
    fo.max_queue = 2;
    fo.init = init_fn;
    fo.fini = fini_fn;
    assert_int_equal(faas_register(g_rt, "unreg", gate_handler, &fo), 0);
    for (i = 0; i < 3; i++)
        assert_int_equal(invoke_n("unreg", i, NULL), 0);
    assert_true(tu_run_until_atomic(g_base, &g_started, 1, BOUND_MS));

    assert_int_equal(faas_unregister(g_rt, "unreg"), 0);
    assert_int_equal(g_cb_total, 0); /* from the loop, not inside unregister */
    assert_int_equal(faas_stats(g_rt, "unreg", &st), FAAS_ENOENT);

    assert_true(tu_run_until(g_base, &g_cb_total, 3, BOUND_MS));
    for (i = 0; i < 3; i++) {
        assert_int_equal(g_rec[i].calls, 1);
        assert_int_equal(g_rec[i].status, FAAS_ECANCELED);
    }
    /* the running handler was flagged cancelled and its instance finalised */
    assert_true(tu_run_until_atomic(g_base, &g_returned, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_saw_cancel), 1);
    assert_true(tu_run_until_atomic(g_base, &g_fini_calls, 1, BOUND_MS));
    tu_run_for(g_base, 50);
    assert_int_equal(g_cb_total, 3);
    for (i = 0; i < 3; i++)
        assert_int_equal(g_rec[i].calls, 1);
    assert_int_equal(ALOAD(&g_started), 1); /* the waiting ones never ran */

    /* the name can be registered again at once */
    assert_int_equal(faas_register(g_rt, "unreg", echo_handler, NULL), 0);
    free_runtime();
    assert_int_equal(g_cb_total, 3);
    assert_int_equal(ALOAD(&g_fini_calls), 1);
}

static void test_unregister_cancels_inline(void **state)
{
    struct faas_function_opts fo = base_opts(FAAS_ISOLATION_INLINE);
    (void)state;

    assert_int_equal(faas_register(g_rt, "unregi", echo_handler, &fo), 0);
    assert_int_equal(invoke_n("unregi", 0, NULL), 0);
    assert_int_equal(invoke_n("unregi", 1, NULL), 0);
    assert_int_equal(faas_unregister(g_rt, "unregi"), 0);
    assert_int_equal(g_cb_total, 0);
    assert_true(tu_run_until(g_base, &g_cb_total, 2, BOUND_MS));
    assert_int_equal(g_rec[0].status, FAAS_ECANCELED);
    assert_int_equal(g_rec[1].status, FAAS_ECANCELED);
    tu_run_for(g_base, 30);
    assert_int_equal(g_rec[0].calls, 1);
    assert_int_equal(g_rec[1].calls, 1);
    assert_int_equal(ALOAD(&g_handler_runs), 0);
    assert_int_equal(invoke_n("unregi", 2, NULL), FAAS_ENOENT);
}

/* ---- review regressions ---- */

/* 1 when no min_warm init of the function is still running. */
static int pred_no_prewarm_running(const void *arg)
{
    const struct faas_fn *fn = faas_fn_lookup(g_rt, (const char *)arg);
    return fn != NULL && fn->nstarting == 0;
}

/*
 * Review r2: min_warm 1, max_concurrency 1. An invocation made while the
 * min_warm init runs waits for that instance (its place in the queue). The
 * init fails: the waiter must get an instance of its own, a cold start that
 * runs init again, instead of waiting forever.
 */
static void test_failed_prewarm_starts_waiter(void **state)
{
    struct faas_function_opts fo = base_opts(FAAS_ISOLATION_THREAD);
    struct faas_stats st;
    (void)state;

    fo.min_warm = 1;
    fo.max_concurrency = 1;
    fo.init = init_fn;
    fo.fini = fini_fn;
    ASTORE(&g_init_fail_left, 1);
    ASTORE(&g_init_fail_kind, 2);
    assert_int_equal(faas_register(g_rt, "pwfail", echo_handler, &fo), 0);

    /* the loop has not run: the min_warm init has not come back yet */
    assert_int_equal(invoke_n("pwfail", 0, NULL), 0);
    st = get_stats("pwfail");
    assert_int_equal(st.instances, 1);
    assert_int_equal(st.queued, 1);

    assert_true(tu_run_until(g_base, &g_rec[0].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[0].calls, 1);
    assert_int_equal(g_rec[0].status, 0);
    assert_int_equal(g_rec[0].cold, 1);
    assert_true(g_rec[0].init_us > 0);
    assert_payload_n(0);
    assert_int_equal(ALOAD(&g_init_calls), 2);
    assert_int_equal(ALOAD(&g_init_done), 1);
    assert_int_equal(ALOAD(&g_handler_runs), 1);
    assert_ptr_equal(ALOAD(&g_seen_state), ALOAD(&g_init_state));
    st = get_stats("pwfail");
    assert_int_equal(st.invocations, 1);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.instances, 1);
    assert_int_equal(st.concurrency, 0);
    assert_int_equal(st.queued, 0);

    free_runtime();
    /* the failed instance has no state to finalise */
    assert_int_equal(ALOAD(&g_fini_calls), 1);
    assert_int_equal(g_cb_total, 1);
}

/*
 * Review r3: min_warm 2 and the first init fails, so a min_warm instance is
 * missing (no retry loop: INLINE stops at the failure, THREAD has the other
 * init running already). Once an invocation succeeded, the pool tops up to
 * min_warm again.
 */
static void test_min_warm_refilled_after_failed_init(void **state)
{
    struct faas_function_opts fo = base_opts(iso_of(state));
    int thread = iso_of(state) == FAAS_ISOLATION_THREAD;
    struct faas_stats st;

    fo.min_warm = 2;
    fo.init = init_fn;
    fo.fini = fini_fn;
    ASTORE(&g_init_fail_left, 1);
    ASTORE(&g_init_fail_kind, 2);
    assert_int_equal(faas_register(g_rt, "refill", echo_handler, &fo), 0);

    /* the min_warm inits came back: one short of min_warm, not retried */
    assert_true(tu_run_until_pred(g_base, pred_no_prewarm_running, "refill", BOUND_MS));
    assert_int_equal(ALOAD(&g_init_calls), thread ? 2 : 1);
    assert_int_equal(ALOAD(&g_init_done), thread ? 1 : 0);
    st = get_stats("refill");
    assert_int_equal(st.instances, thread ? 1 : 0);

    /* THREAD: a warm start on the instance there is; INLINE: a cold one */
    invoke_wait("refill", 0);
    assert_int_equal(g_rec[0].status, 0);
    assert_int_equal(g_rec[0].cold, thread ? 0 : 1);
    assert_payload_n(0);

    /* and back to min_warm: one more init, which succeeds */
    assert_true(run_until_stat("refill", ST_INSTANCES, 2, BOUND_MS));
    assert_true(tu_run_until_atomic(g_base, &g_init_done, 2, BOUND_MS));
    assert_true(tu_run_until_pred(g_base, pred_no_prewarm_running, "refill", BOUND_MS));
    assert_int_equal(ALOAD(&g_init_calls), 3);
    st = get_stats("refill");
    assert_int_equal(st.instances, 2);
    assert_int_equal(st.concurrency, 0);
    assert_int_equal(st.invocations, 1);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.cold_starts, thread ? 0 : 1);
    assert_int_equal(g_cb_total, 1);

    free_runtime();
    assert_int_equal(ALOAD(&g_fini_calls), 2);
}

static int g_late_fini; /* fini calls that got the late init's state */

/* init_fn, but the first call works 250 ms first, over an init_timeout_ms
 * of 100, and marks the state it makes (43 instead of 42). */
static int init_late_first(struct faas_ctx *ctx, void **state)
{
    int first = ALOAD(&g_init_calls) == 0;
    int rc;
    if (first)
        spin_us(250000);
    rc = init_fn(ctx, state);
    if (first && rc == 0)
        *(int *)*state = 43;
    return rc;
}

static void fini_count_late(void *state)
{
    if (state != NULL && *(int *)state == 43)
        AINC(&g_late_fini);
    fini_fn(state);
}

/* Returns the number in the instance's state, or -1 without one. */
static int state_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const int *s = faas_ctx_state(ctx);
    (void)event;
    AINC(&g_handler_runs);
    *result = json_integer(s ? *s : -1);
    return 0;
}

/*
 * Review r8: a min_warm init that returns after init_timeout_ms has timed
 * out: its instance is not used (fini runs for the state it made), so the
 * first invocation is a cold start with a fresh init. max_concurrency 1
 * makes a THREAD invocation wait for the late instance.
 */
static void test_late_min_warm_init_not_used(void **state)
{
    struct faas_function_opts fo = base_opts(iso_of(state));
    struct faas_stats st;

    ASTORE(&g_late_fini, 0);
    fo.min_warm = 1;
    fo.max_concurrency = 1;
    fo.init_timeout_ms = 100;
    fo.init = init_late_first;
    fo.fini = fini_count_late;
    assert_int_equal(faas_register(g_rt, "late", state_handler, &fo), 0);

    invoke_wait("late", 0);
    assert_int_equal(g_rec[0].cold, 1);
    if (g_rec[0].status == 0) {
        /* a fresh init, and its state, not the late one */
        assert_int_equal(ALOAD(&g_init_calls), 2);
        assert_int_equal(ALOAD(&g_handler_runs), 1);
        assert_int_equal(json_integer_value(g_rec[0].payload), 42);
    } else {
        /* or the late init's own failure: the handler never ran */
        assert_int_equal(g_rec[0].status, FAAS_EINIT);
        assert_int_equal(ALOAD(&g_handler_runs), 0);
    }
    /* the late state was finalised, once, and nothing else yet */
    assert_true(tu_run_until_atomic(g_base, &g_late_fini, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_fini_calls), 1);
    st = get_stats("late");
    assert_int_equal(st.invocations, 1);
    assert_int_equal(st.cold_starts, 1);

    free_runtime();
    assert_int_equal(ALOAD(&g_late_fini), 1);
    assert_int_equal(ALOAD(&g_fini_calls), ALOAD(&g_init_done));
    assert_int_equal(g_cb_total, 1);
}

/* ---- the executor seam: the pool reaches instances only through fn->exec ---- */

static int g_op_start, g_op_prewarm, g_op_cancel, g_op_destroy;

static void counting_start(struct faas_inv *inv)
{
    g_op_start++;
    faas_exec_inline.start(inv);
}

static void counting_prewarm(struct faas_instance *inst)
{
    g_op_prewarm++;
    faas_exec_inline.prewarm(inst);
}

static void counting_cancel(struct faas_inv *inv, int status, const char *etype,
                            const char *emsg)
{
    g_op_cancel++;
    faas_exec_inline.cancel(inv, status, etype, emsg);
}

static int counting_destroy(struct faas_instance *inst)
{
    g_op_destroy++;
    return faas_exec_inline.destroy(inst);
}

static const struct faas_exec_ops counting_ops = {
    .name = "counting",
    .self_starting = 0,
    .start = counting_start,
    .prewarm = counting_prewarm,
    .cancel = counting_cancel,
    .destroy = counting_destroy,
};

static void test_pool_calls_the_executor_table(void **state)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_fn *fn;
    (void)state;
    g_op_start = g_op_prewarm = g_op_cancel = g_op_destroy = 0;
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.init = init_fn;
    fo.fini = fini_fn;
    assert_int_equal(faas_register(g_rt, "seam", echo_handler, &fo), 0);
    fn = faas_fn_lookup(g_rt, "seam");
    assert_non_null(fn);
    assert_ptr_equal(fn->exec, &faas_exec_inline); /* chosen at registration */
    fn->exec = &counting_ops;

    invoke_wait("seam", 0); /* cold: a new instance, started by the table */
    invoke_wait("seam", 1); /* warm: the same instance */
    assert_int_equal(g_rec[0].status, 0);
    assert_int_equal(g_rec[1].status, 0);
    assert_int_equal(g_rec[0].cold, 1);
    assert_int_equal(g_rec[1].cold, 0);
    assert_int_equal(g_op_start, 2);
    assert_int_equal(ALOAD(&g_init_calls), 1);

    fn->opts.min_warm = 2; /* one more instance: made through prewarm */
    faas_pool_prewarm(fn);
    assert_int_equal(g_op_prewarm, 1);
    assert_int_equal(ALOAD(&g_init_calls), 2);
    assert_int_equal(fn->ninstances, 2);

    assert_int_equal(faas_unregister(g_rt, "seam"), 0);
    assert_int_equal(g_op_destroy, 2); /* both idle instances, fini each */
    assert_int_equal(ALOAD(&g_fini_calls), 2);
    assert_int_equal(g_op_cancel, 0);  /* nothing was running */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_cold_then_warm, setup, teardown,
                                                 (void *)&iso_inline),
        cmocka_unit_test_prestate_setup_teardown(test_cold_then_warm, setup, teardown,
                                                 (void *)&iso_thread),
        cmocka_unit_test_setup_teardown(test_throttle_concurrency_and_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_zero_throttles_second, setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_min_warm, setup, teardown,
                                                 (void *)&iso_inline),
        cmocka_unit_test_prestate_setup_teardown(test_min_warm, setup, teardown,
                                                 (void *)&iso_thread),
        cmocka_unit_test_prestate_setup_teardown(test_idle_reap_to_zero, setup, teardown,
                                                 (void *)&iso_inline),
        cmocka_unit_test_prestate_setup_teardown(test_idle_reap_to_zero, setup, teardown,
                                                 (void *)&iso_thread),
        cmocka_unit_test_setup_teardown(test_idle_reap_keeps_min_warm, setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_max_uses, setup, teardown,
                                                 (void *)&iso_inline),
        cmocka_unit_test_prestate_setup_teardown(test_max_uses, setup, teardown,
                                                 (void *)&iso_thread),
        cmocka_unit_test_prestate_setup_teardown(test_init_failure_retries, setup, teardown,
                                                 (void *)&iso_inline),
        cmocka_unit_test_prestate_setup_teardown(test_init_failure_retries, setup, teardown,
                                                 (void *)&iso_thread),
        cmocka_unit_test_setup_teardown(test_unregister_cancels_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unregister_cancels_inline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_calls_the_executor_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_prewarm_starts_waiter, setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_min_warm_refilled_after_failed_init, setup,
                                                 teardown, (void *)&iso_inline),
        cmocka_unit_test_prestate_setup_teardown(test_min_warm_refilled_after_failed_init, setup,
                                                 teardown, (void *)&iso_thread),
        cmocka_unit_test_prestate_setup_teardown(test_late_min_warm_init_not_used, setup,
                                                 teardown, (void *)&iso_inline),
        cmocka_unit_test_prestate_setup_teardown(test_late_min_warm_init_not_used, setup,
                                                 teardown, (void *)&iso_thread),
    };
    tu_cond_init_monotonic(&g_cv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_async.c - asynchronous invocation: faas_invoke_async returns at once
 * and the event runs later from the loop with one request id for every
 * attempt; retries with exponential backoff and jitter, driven by a fake
 * clock and faas_async_poll (no real waiting for a backoff); event age;
 * queue overflow (reject, drop oldest); throttled attempts that do not count;
 * destination records; dead letters; unregister and teardown with queued
 * and in-flight events. Every accepted event must end exactly once: the
 * final callbacks count per request id.
 *
 * Handlers run on worker threads (THREAD): what they record is guarded by a
 * mutex or atomic. Result, dead-letter and log callbacks run on the loop.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "durable.h"  /* settle: the engine's pending writes */
#include "faas_int.h" /* faas_async_poll: the retry timer, on demand */
#include "testutil.h"

#define BOUND_MS 8000u
#define GATE_MS 8000u
#define NFIN 128
#define NSEEN 256
#define NDEST 32
#define MS 1000000ull

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static struct tu_clock g_clock;

/* ---- final results, per request id (loop thread) ---- */

struct fin {
    char id[FAAS_REQUEST_ID_SIZE];
    int completes;
    int deads;
    int status;
    int dead_status;
    uint32_t attempts;
    char etype[64];
    json_t *event;
    json_t *payload;
};

static struct fin g_fin[NFIN];
static int g_nfin;
static int g_completes; /* on_complete calls, all events */
static int g_deads;     /* dead_letter calls, all events */

/* ---- log records (loop thread) ---- */

static int g_log_retry, g_log_throttled, g_log_success, g_log_failure, g_log_dead,
    g_log_overflow;

/* ---- what handlers record (worker threads) ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static int g_open;                              /* guarded by g_mu */
static char g_seen[NSEEN][FAAS_REQUEST_ID_SIZE]; /* guarded by g_mu */
static int g_seen_n[NSEEN];                     /* guarded by g_mu: event "n" */
static int g_nseen;                             /* guarded by g_mu */
static json_t *g_dest[NDEST];                   /* guarded by g_mu */
static int g_ndest;                             /* guarded by g_mu */
static int g_runs;                              /* atomic */
static int g_started;                           /* atomic */
static int g_fail_first;                        /* atomic: fail this many runs */
static int g_dest_runs;                         /* atomic */

/* ---- helpers ---- */

static struct fin *fin_for(const char *id)
{
    int i;
    for (i = 0; i < g_nfin; i++)
        if (strcmp(g_fin[i].id, id) == 0)
            return &g_fin[i];
    assert_true(g_nfin < NFIN);
    snprintf(g_fin[g_nfin].id, sizeof g_fin[g_nfin].id, "%s", id);
    return &g_fin[g_nfin++];
}

static void on_complete(const struct faas_result *res, void *arg)
{
    struct fin *f = fin_for(faas_result_request_id(res));
    const char *et = faas_result_error_type(res);
    assert_ptr_equal(arg, &g_completes);
    f->completes++;
    f->status = faas_result_status(res);
    f->attempts = faas_result_attempts(res);
    snprintf(f->etype, sizeof f->etype, "%s", et ? et : "");
    assert_non_null(faas_result_event(res));
    json_decref(f->event);
    f->event = json_incref(faas_result_event(res));
    json_decref(f->payload);
    f->payload = json_incref(faas_result_payload(res));
    g_completes++;
}

static void on_dead(const struct faas_result *res, void *arg)
{
    struct fin *f = fin_for(faas_result_request_id(res));
    assert_ptr_equal(arg, &g_deads);
    assert_int_not_equal(faas_result_status(res), 0);
    f->deads++;
    f->dead_status = faas_result_status(res);
    g_deads++;
}

static void on_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind != FAAS_LOG_ASYNC)
        return;
    assert_non_null(rec->action);
    assert_non_null(rec->line);
    assert_non_null(rec->function);
    if (strcmp(rec->action, "retry") == 0)
        g_log_retry++;
    else if (strcmp(rec->action, "throttled") == 0)
        g_log_throttled++;
    else if (strcmp(rec->action, "success") == 0)
        g_log_success++;
    else if (strcmp(rec->action, "failure") == 0)
        g_log_failure++;
    else if (strcmp(rec->action, "dead-letter") == 0)
        g_log_dead++;
    else if (strcmp(rec->action, "overflow") == 0)
        g_log_overflow++;
    else
        fail_msg("unknown action %s", rec->action);
}

static void gate_open(void)
{
    tu_gate_open(&g_mu, &g_cv, &g_open);
}

/* 1: opened, 2: cancelled, 0: the bound passed. */
static int gate_wait(const struct faas_ctx *ctx)
{
    return tu_gate_wait(&g_mu, &g_cv, &g_open, ctx, GATE_MS);
}

static int event_n(json_t *event)
{
    return (int)json_integer_value(json_object_get(event, "n"));
}

static void seen(const struct faas_ctx *ctx, json_t *event)
{
    pthread_mutex_lock(&g_mu);
    if (g_nseen < NSEEN) {
        snprintf(g_seen[g_nseen], sizeof g_seen[g_nseen], "%s", faas_ctx_request_id(ctx));
        g_seen_n[g_nseen] = event_n(event);
        g_nseen++;
    }
    pthread_mutex_unlock(&g_mu);
}

static int seen_count(const char *id)
{
    int i, n = 0;
    pthread_mutex_lock(&g_mu);
    for (i = 0; i < g_nseen; i++)
        if (strcmp(g_seen[i], id) == 0)
            n++;
    pthread_mutex_unlock(&g_mu);
    return n;
}

/* ---- handlers ---- */

static int echo_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    seen(ctx, event);
    AINC(&g_runs);
    *result = json_pack("{s:O, s:s}", "echo", event, "fn", faas_ctx_function_name(ctx));
    return 0;
}

/* Fails the first g_fail_first runs (all events together), then succeeds. */
static int flaky_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    int run = AINC(&g_runs);
    seen(ctx, event);
    if (run <= ALOAD(&g_fail_first))
        return faas_ctx_fail(ctx, "Boom", "run %d failed", run);
    *result = json_pack("{s:b}", "ok", 1);
    return 0;
}

/* Fails events whose "n" is odd, every time. */
static int odd_fail_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    AINC(&g_runs);
    seen(ctx, event);
    if (event_n(event) % 2)
        return faas_ctx_fail(ctx, "Odd", "n=%d", event_n(event));
    *result = json_incref(event);
    return 0;
}

static int gate_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    int r;
    seen(ctx, event);
    AINC(&g_started);
    r = gate_wait(ctx);
    AINC(&g_runs);
    *result = json_incref(event);
    return r == 0 ? 99 : 0;
}

/* A destination: keeps the record it receives. */
static int dest_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    pthread_mutex_lock(&g_mu);
    if (g_ndest < NDEST)
        g_dest[g_ndest++] = json_deep_copy(event);
    pthread_mutex_unlock(&g_mu);
    AINC(&g_dest_runs);
    *result = NULL;
    return 0;
}

/* ---- driving the loop ---- */

static int run_until_atomic(int *p, int want, unsigned bound_ms)
{
    uint64_t end = tu_now_ms() + bound_ms;
    struct timeval tick = { 0, 10000 };
    struct event *ev = event_new(g_base, -1, 0, tu_tick_cb, NULL);
    int ok = 1;
    while (ALOAD(p) < want) {
        if (tu_now_ms() > end) {
            ok = 0;
            break;
        }
        event_add(ev, &tick);
        event_base_loop(g_base, EVLOOP_ONCE);
    }
    event_free(ev);
    return ok;
}

/* Runs what is active now (INLINE work is driven by active events). */
/* A few passes of the loop; on a durable engine (make test's second run),
 * first until what was written has committed and come back, as it comes
 * back at once without one. */
static void settle(void)
{
    uint64_t end = tu_now_ms() + BOUND_MS;
    int i;
    for (i = 0; i < 8; i++)
        event_base_loop(g_base, EVLOOP_NONBLOCK);
    while (g_rt && g_rt->durable && tu_now_ms() < end) {
        struct faas_durable_stats ds;
        faas_durable_stats_get(g_rt->durable, &ds);
        if (ds.pending == 0)
            break;
        event_base_loop(g_base, EVLOOP_ONCE);
    }
    for (i = 0; i < 8; i++)
        event_base_loop(g_base, EVLOOP_NONBLOCK);
}

static void advance_ms(uint64_t ms)
{
    tu_clock_advance(&g_clock, ms * MS);
    faas_async_poll(g_rt);
}

static struct faas_stats stats(const char *name)
{
    struct faas_stats st;
    memset(&st, 0, sizeof st);
    assert_int_equal(faas_stats(g_rt, name, &st), 0);
    return st;
}

/* ---- fixture ---- */

static int setup(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    int i;
    (void)state;
    for (i = 0; i < NFIN; i++) {
        json_decref(g_fin[i].event);
        json_decref(g_fin[i].payload);
    }
    memset(g_fin, 0, sizeof g_fin);
    g_nfin = g_completes = g_deads = 0;
    g_log_retry = g_log_throttled = g_log_success = g_log_failure = g_log_dead =
        g_log_overflow = 0;
    pthread_mutex_lock(&g_mu);
    g_open = 0;
    g_nseen = 0;
    for (i = 0; i < g_ndest; i++)
        json_decref(g_dest[i]);
    g_ndest = 0;
    pthread_mutex_unlock(&g_mu);
    ASTORE(&g_runs, 0);
    ASTORE(&g_started, 0);
    ASTORE(&g_fail_first, 0);
    ASTORE(&g_dest_runs, 0);
    ASTORE(&g_clock.ns, 5000000000ull); /* 5 s */

    g_base = event_base_new();
    if (!g_base)
        return -1;
    ro.thread_workers = 4;
    ro.zygote = 0;
    ro.log = on_log;
    ro.clock.now_ns = tu_clock_now;
    ro.clock.wall_ns = tu_clock_wall;
    ro.clock.arg = &g_clock;
    tu_durable_apply(&ro); /* make test runs the suite on SQLite too */
    g_rt = NULL;
    if (faas_runtime_new(&g_rt, g_base, &ro) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gate_open();
    tu_rt_free(&g_rt, &g_base);
    return 0;
}

static struct faas_async_opts async_opts(void)
{
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    ao.on_complete = on_complete;
    ao.on_complete_arg = &g_completes;
    ao.dead_letter = on_dead;
    ao.dead_letter_arg = &g_deads;
    return ao;
}

static void reg(const char *name, enum faas_isolation iso, faas_handler_fn h,
                const struct faas_async_opts *ao, uint32_t max_concurrency)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    fo.isolation = iso;
    fo.timeout_ms = 0; /* the fake clock jumps by minutes */
    fo.max_concurrency = max_concurrency;
    fo.async = ao;
    assert_int_equal(faas_register(g_rt, name, h, &fo), 0);
}

static void reg_dest(void)
{
    reg("dst", FAAS_ISOLATION_INLINE, dest_handler, NULL, 0);
}

static int invoke_n(const char *name, int n, char id[FAAS_REQUEST_ID_SIZE])
{
    json_t *ev = json_pack("{s:i}", "n", n);
    int rc;
    assert_non_null(ev);
    rc = faas_invoke_async(g_rt, name, ev, NULL, id);
    json_decref(ev);
    return rc;
}

static json_t *dest_record(int i)
{
    json_t *r;
    pthread_mutex_lock(&g_mu);
    r = i < g_ndest ? g_dest[i] : NULL;
    pthread_mutex_unlock(&g_mu);
    return r;
}

static const char *jstr(json_t *o, const char *path1, const char *path2)
{
    json_t *v = json_object_get(o, path1);
    if (path2)
        v = json_object_get(v, path2);
    return json_string_value(v);
}

/* ---- tests ---- */

static void test_args(void **state)
{
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    char id[FAAS_REQUEST_ID_SIZE];
    (void)state;
    reg("f", FAAS_ISOLATION_INLINE, echo_handler, NULL, 0);
    assert_int_equal(faas_invoke_async(NULL, "f", NULL, NULL, id), FAAS_EINVAL);
    assert_int_equal(faas_invoke_async(g_rt, NULL, NULL, NULL, id), FAAS_EINVAL);
    io.version = 99;
    assert_int_equal(faas_invoke_async(g_rt, "f", NULL, &io, id), FAAS_EINVAL);
    assert_int_equal(faas_invoke_async(g_rt, "nope", NULL, NULL, id), FAAS_ENOENT);
    /* NULL event and NULL id are fine */
    assert_int_equal(faas_invoke_async(g_rt, "f", NULL, NULL, NULL), 0);
    assert_true(run_until_atomic(&g_runs, 1, BOUND_MS));
    settle();
    assert_int_equal(stats("f").invocations, 1);
}

static void test_returns_at_once(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct faas_async_opts ao = async_opts();
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    char id[FAAS_REQUEST_ID_SIZE] = "";
    json_t *ev = json_pack("{s:i, s:s}", "n", 7, "s", "x");
    struct fin *f;

    reg("f", iso, echo_handler, &ao, 0);
    io.trace_id = "Root=1-abc";
    assert_int_equal(faas_invoke_async(g_rt, "f", ev, &io, id), 0);
    assert_int_equal(strlen(id), 36);
    assert_int_equal(id[14], '4');
    /* nothing ran inside the call */
    assert_int_equal(ALOAD(&g_runs), 0);
    assert_int_equal(g_completes, 0);
    /* a deep copy was queued: the caller may change its event at once */
    json_object_set_new(ev, "n", json_integer(8));

    assert_true(tu_run_until(g_base, &g_completes, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_runs), 1);
    assert_int_equal(seen_count(id), 1);
    f = fin_for(id);
    assert_int_equal(f->completes, 1);
    assert_int_equal(f->deads, 0);
    assert_int_equal(f->status, 0);
    assert_int_equal(f->attempts, 1);
    assert_int_equal(event_n(f->event), 7);
    assert_int_equal(event_n(json_object_get(f->payload, "echo")), 7);
    assert_int_equal(g_log_success, 1);
    assert_int_equal(g_log_failure, 0);
    json_decref(ev);
    tu_run_for(g_base, 20);
    assert_int_equal(g_completes, 1);
    assert_int_equal(g_nfin, 1);
}

static void test_success_destination(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct faas_async_opts ao = async_opts();
    char id[FAAS_REQUEST_ID_SIZE];
    json_t *rec, *rc_, *resp;

    ao.on_success = "dst";
    ao.on_failure = "dst";
    reg("src", iso, echo_handler, &ao, 0);
    reg_dest();
    assert_int_equal(invoke_n("src", 3, id), 0);
    assert_true(run_until_atomic(&g_dest_runs, 1, BOUND_MS));
    assert_int_equal(g_completes, 1);
    assert_int_equal(g_deads, 0);

    rec = dest_record(0);
    assert_non_null(rec);
    assert_string_equal(jstr(rec, "version", NULL), "1.0");
    /* wall clock: 1700000000 s + the fake 5 s */
    assert_string_equal(jstr(rec, "timestamp", NULL), "2023-11-14T22:13:25.000Z");
    rc_ = json_object_get(rec, "requestContext");
    assert_string_equal(jstr(rc_, "requestId", NULL), id);
    assert_string_equal(jstr(rc_, "functionArn", NULL),
                        "arn:aws:lambda:local:000000000000:function:src:$LATEST");
    assert_string_equal(jstr(rc_, "condition", NULL), "Success");
    assert_int_equal(json_integer_value(json_object_get(rc_, "approximateInvokeCount")), 1);
    assert_int_equal(event_n(json_object_get(rec, "requestPayload")), 3);
    resp = json_object_get(rec, "responseContext");
    assert_int_equal(json_integer_value(json_object_get(resp, "statusCode")), 200);
    assert_string_equal(jstr(resp, "executedVersion", NULL), "$LATEST");
    assert_null(json_object_get(resp, "functionError"));
    assert_int_equal(event_n(json_object_get(json_object_get(rec, "responsePayload"), "echo")),
                     3);
    assert_string_equal(jstr(rec, "responsePayload", "fn"), "src");

    tu_run_for(g_base, 20);
    assert_int_equal(ALOAD(&g_dest_runs), 1);
    assert_int_equal(g_completes, 1);
}

static void test_retry_then_success(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct faas_async_opts ao = async_opts();
    char id[FAAS_REQUEST_ID_SIZE];
    struct faas_stats st;
    struct fin *f;

    ao.max_retries = 2;
    ao.retry_base_ms = 1000;
    reg("flaky", iso, flaky_handler, &ao, 0);
    ASTORE(&g_fail_first, 2);
    assert_int_equal(invoke_n("flaky", 1, id), 0);

    assert_true(tu_run_until(g_base, &g_log_retry, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_runs), 1);
    advance_ms(1000); /* the first backoff is at most retry_base_ms */
    assert_true(tu_run_until(g_base, &g_log_retry, 2, BOUND_MS));
    assert_int_equal(ALOAD(&g_runs), 2);
    advance_ms(2000);
    assert_true(tu_run_until(g_base, &g_completes, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_runs), 3);

    f = fin_for(id);
    assert_int_equal(f->completes, 1);
    assert_int_equal(f->status, 0);
    assert_int_equal(f->attempts, 3);
    assert_int_equal(f->deads, 0);
    /* every attempt kept the request id */
    assert_int_equal(seen_count(id), 3);
    st = stats("flaky");
    assert_int_equal(st.invocations, 3);
    assert_int_equal(st.errors, 2);
    assert_int_equal(g_log_success, 1);
}

static void test_always_fail(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct faas_async_opts ao = async_opts();
    char id[FAAS_REQUEST_ID_SIZE];
    json_t *rec, *resp;
    struct fin *f;
    int i;

    ao.max_retries = 2;
    ao.retry_base_ms = 100;
    ao.on_failure = "dst";
    ao.on_success = "nowhere";
    reg("bad", iso, flaky_handler, &ao, 0);
    reg_dest();
    ASTORE(&g_fail_first, 1000);
    assert_int_equal(invoke_n("bad", 5, id), 0);
    for (i = 1; i <= 2; i++) {
        assert_true(tu_run_until(g_base, &g_log_retry, i, BOUND_MS));
        advance_ms(1000);
    }
    assert_true(tu_run_until(g_base, &g_deads, 1, BOUND_MS));
    assert_true(run_until_atomic(&g_dest_runs, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_runs), 3);

    f = fin_for(id);
    assert_int_equal(f->completes, 1);
    assert_int_equal(f->deads, 1);
    assert_int_equal(f->status, FAAS_EHANDLER);
    assert_int_equal(f->dead_status, FAAS_EHANDLER);
    assert_int_equal(f->attempts, 3);
    assert_string_equal(f->etype, "Boom");
    assert_int_equal(g_log_dead, 1);

    rec = dest_record(0);
    assert_non_null(rec);
    assert_string_equal(jstr(rec, "requestContext", "condition"), "RetriesExhausted");
    assert_string_equal(jstr(rec, "requestContext", "requestId"), id);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(rec, "requestContext"),
                                           "approximateInvokeCount")),
        3);
    resp = json_object_get(rec, "responseContext");
    assert_string_equal(jstr(resp, "functionError", NULL), "Unhandled");
    assert_int_equal(json_integer_value(json_object_get(resp, "statusCode")), 200);
    assert_string_equal(jstr(rec, "responsePayload", "errorType"), "Boom");
    assert_int_equal(event_n(json_object_get(rec, "requestPayload")), 5);

    /* no more attempts, however long we wait */
    advance_ms(3600000);
    settle();
    tu_run_for(g_base, 20);
    assert_int_equal(ALOAD(&g_runs), 3);
    assert_int_equal(g_completes, 1);
    assert_int_equal(g_deads, 1);
}

/* The retry does not start before its backoff; the second backoff is longer
 * than the first's lower bound (jitter keeps each in [base/2, base] *
 * 2^(attempt-1)). */
static void test_backoff_times(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct faas_async_opts ao = async_opts();
    char id[FAAS_REQUEST_ID_SIZE];

    ao.max_retries = 3;
    ao.retry_base_ms = 1000;
    reg("bo", iso, flaky_handler, &ao, 0);
    ASTORE(&g_fail_first, 1000);
    assert_int_equal(invoke_n("bo", 1, id), 0);
    assert_true(tu_run_until(g_base, &g_log_retry, 1, BOUND_MS));
    settle();
    assert_int_equal(stats("bo").concurrency, 0);

    advance_ms(499);
    settle();
    assert_int_equal(stats("bo").concurrency, 0);
    assert_int_equal(stats("bo").invocations, 1);
    assert_int_equal(ALOAD(&g_runs), 1);

    advance_ms(501); /* 1000 ms: the first backoff is over for sure */
    assert_true(tu_run_until(g_base, &g_log_retry, 2, BOUND_MS));
    assert_int_equal(ALOAD(&g_runs), 2);
    settle();

    advance_ms(999); /* the second backoff is at least 1000 ms */
    settle();
    assert_int_equal(stats("bo").concurrency, 0);
    assert_int_equal(stats("bo").invocations, 2);
    assert_int_equal(ALOAD(&g_runs), 2);

    advance_ms(1001); /* 2000 ms: over */
    assert_true(tu_run_until(g_base, &g_log_retry, 3, BOUND_MS));
    assert_int_equal(ALOAD(&g_runs), 3);

    advance_ms(1999); /* the third is at least 2000 ms */
    settle();
    assert_int_equal(ALOAD(&g_runs), 3);
    advance_ms(2001);
    assert_true(tu_run_until(g_base, &g_deads, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_runs), 4);
    assert_int_equal(fin_for(id)->attempts, 4);
    assert_int_equal(seen_count(id), 4);
}

static void test_event_age_retry(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct faas_async_opts ao = async_opts();
    char id[FAAS_REQUEST_ID_SIZE];
    json_t *rec;
    struct fin *f;

    ao.max_retries = 10;
    ao.retry_base_ms = 1000;
    ao.max_event_age_ms = 1500;
    ao.on_failure = "dst";
    reg("old", iso, flaky_handler, &ao, 0);
    reg_dest();
    ASTORE(&g_fail_first, 1000);
    assert_int_equal(invoke_n("old", 1, id), 0);
    assert_true(tu_run_until(g_base, &g_log_retry, 1, BOUND_MS));
    advance_ms(1000);
    /* the second backoff (>= 1000 ms) would pass the age (1500 ms) */
    assert_true(tu_run_until(g_base, &g_deads, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_runs), 2);
    f = fin_for(id);
    assert_int_equal(f->dead_status, FAAS_EHANDLER);
    assert_int_equal(f->attempts, 2);
    assert_int_equal(f->completes, 1);
    assert_true(run_until_atomic(&g_dest_runs, 1, BOUND_MS));
    rec = dest_record(0);
    assert_string_equal(jstr(rec, "requestContext", "condition"), "EventAgeExceeded");
    assert_int_equal(g_log_retry, 1);
}

/* Events that wait for an instance longer than their age end with
 * FAAS_ETHROTTLED; the one in flight is not touched. */
static void test_event_age_waiting(void **state)
{
    struct faas_async_opts ao = async_opts();
    char id[3][FAAS_REQUEST_ID_SIZE];
    json_t *rec;
    int i;
    (void)state;

    ao.max_event_age_ms = 60000;
    ao.on_failure = "dst";
    reg("busy", FAAS_ISOLATION_THREAD, gate_handler, &ao, 1);
    reg_dest();
    assert_int_equal(invoke_n("busy", 0, id[0]), 0);
    assert_true(run_until_atomic(&g_started, 1, BOUND_MS));
    assert_int_equal(invoke_n("busy", 1, id[1]), 0);
    assert_int_equal(invoke_n("busy", 2, id[2]), 0);
    settle();
    assert_int_equal(g_deads, 0);

    advance_ms(59000);
    settle();
    assert_int_equal(g_deads, 0);
    advance_ms(1000);
    settle();
    if (faas_durable_shared(g_rt->durable)) {
        /* A fleet's queue: the events wait in Redis, not on this host
         * (max_concurrency 1 takes one at a time); their age is checked
         * when a host takes them, once the instance is free. */
        assert_int_equal(g_deads, 0);
        gate_open();
        assert_true(tu_run_until(g_base, &g_deads, 2, BOUND_MS));
    }
    assert_int_equal(g_deads, 2);
    for (i = 1; i < 3; i++) {
        assert_int_equal(fin_for(id[i])->dead_status, FAAS_ETHROTTLED);
        assert_int_equal(fin_for(id[i])->completes, 1);
        assert_int_equal(seen_count(id[i]), 0);
    }
    assert_true(run_until_atomic(&g_dest_runs, 2, BOUND_MS));
    rec = dest_record(0);
    assert_string_equal(jstr(rec, "requestContext", "condition"), "EventAgeExceeded");

    gate_open();
    assert_true(tu_run_until(g_base, &g_completes, 3, BOUND_MS));
    assert_int_equal(fin_for(id[0])->status, 0);
    assert_int_equal(fin_for(id[0])->deads, 0);
    assert_int_equal(ALOAD(&g_started), 1);
}

static void test_overflow_reject(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct faas_async_opts ao = async_opts();
    char id[4][FAAS_REQUEST_ID_SIZE];
    int i;

    ao.max_queue = 2;
    reg("q", iso, echo_handler, &ao, 0);
    assert_int_equal(invoke_n("q", 0, id[0]), 0);
    assert_int_equal(invoke_n("q", 1, id[1]), 0);
    strcpy(id[2], "untouched");
    assert_int_equal(invoke_n("q", 2, id[2]), FAAS_ETHROTTLED);
    assert_string_equal(id[2], "untouched");
    assert_true(tu_run_until(g_base, &g_completes, 2, BOUND_MS));
    for (i = 0; i < 2; i++)
        assert_int_equal(fin_for(id[i])->status, 0);
    /* room again */
    assert_int_equal(invoke_n("q", 3, id[3]), 0);
    assert_true(tu_run_until(g_base, &g_completes, 3, BOUND_MS));
    tu_run_for(g_base, 20);
    assert_int_equal(ALOAD(&g_runs), 3);
    assert_int_equal(g_deads, 0);
    assert_int_equal(g_nfin, 3);
}

static void test_overflow_drop_oldest(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct faas_async_opts ao = async_opts();
    char id[3][FAAS_REQUEST_ID_SIZE];
    json_t *rec;
    int i;

    ao.max_queue = 2;
    ao.overflow = FAAS_OVERFLOW_DROP_OLDEST;
    ao.on_failure = "dst";
    if (faas_durable_shared(g_rt->durable)) {
        /* A fleet's queue refuses instead (FAAS_OVERFLOW_REJECT): one host
         * does not drop the fleet's events (test_durable_queue's bound). */
        print_message("  drop-oldest (one host's queue): skipped on a fleet's queue\n");
        skip();
    }
    reg("q", iso, echo_handler, &ao, 0);
    reg_dest();
    for (i = 0; i < 3; i++)
        assert_int_equal(invoke_n("q", i, id[i]), 0);
    /* the drop is decided now but delivered from the loop */
    assert_int_equal(g_deads, 0);
    assert_int_equal(g_log_overflow, 1);
    assert_true(tu_run_until(g_base, &g_completes, 3, BOUND_MS));
    assert_int_equal(g_deads, 1);
    assert_int_equal(fin_for(id[0])->dead_status, FAAS_ETHROTTLED);
    assert_int_equal(fin_for(id[0])->status, FAAS_ETHROTTLED);
    assert_string_equal(fin_for(id[0])->etype, "TooManyRequestsException");
    assert_int_equal(seen_count(id[0]), 0);
    for (i = 1; i < 3; i++) {
        assert_int_equal(fin_for(id[i])->status, 0);
        assert_int_equal(seen_count(id[i]), 1);
    }
    assert_true(run_until_atomic(&g_dest_runs, 1, BOUND_MS));
    rec = dest_record(0);
    assert_string_equal(jstr(rec, "requestContext", "condition"), "Throttled");
    assert_string_equal(jstr(rec, "requestContext", "requestId"), id[0]);
    tu_run_for(g_base, 20);
    assert_int_equal(g_completes, 3);
    assert_int_equal(g_deads, 1);
}

/* The byte count of an event is the size of its compact serialisation. */
static void test_json_bytes_exact(void **state)
{
    static const char *const texts[] = {
        "null", "true", "false", "0", "-1", "9223372036854775807", "-9223372036854775808",
        "1.5", "-2.25e-300", "\"\"", "\"plain\"", "\"q\\\"b\\\\s\\/\"",
        "\"\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\\u0000\"", "\"\\u00e9\\u20ac\\ud83d\\ude00 caf\xc3\xa9\"",
        "[]", "{}", "[1]", "[1,\"a\",[],{}]", "{\"a\":1}", "{\"k\\n\":{\"x\":[true,null]},\"b\":-3}",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        json_error_t err;
        json_t *j = json_loads(texts[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        size_t want;
        assert_non_null(j);
        want = json_dumpb(j, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
        assert_int_equal(faas_json_bytes(j), want);
        json_decref(j);
    }
    assert_int_equal(faas_json_bytes(NULL), 4);
}

static const char g_xs[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/* The bytes of one {"n": N, "s": "..."} event (slen <= 64). */
static size_t event_bytes(int n, size_t slen)
{
    json_t *ev = json_pack("{s:i, s:s%}", "n", n, "s", g_xs, slen);
    size_t b = json_dumpb(ev, NULL, 0, JSON_COMPACT);
    json_decref(ev);
    return b;
}

static int invoke_sized(const char *name, int n, size_t slen, char id[FAAS_REQUEST_ID_SIZE])
{
    json_t *ev = json_pack("{s:i, s:s%}", "n", n, "s", g_xs, slen);
    int rc = faas_invoke_async(g_rt, name, ev, NULL, id);
    json_decref(ev);
    return rc;
}

static struct faas_async_stats astats(const char *name)
{
    struct faas_async_stats st;
    faas_async_stats_get(faas_fn_lookup(g_rt, name), 0, &st);
    return st;
}

/* max_queue_bytes: the event that would cross it is refused, one larger
 * than the bound alone is FAAS_ETOOBIG, and the bytes return to 0 once the
 * queue has drained. */
static void test_queue_bytes_reject(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct faas_async_opts ao = async_opts();
    size_t b = event_bytes(1, 10);
    char id[4][FAAS_REQUEST_ID_SIZE];

    ao.max_queue_bytes = 3 * b + b / 2;
    reg("q", iso, echo_handler, &ao, 0);
    assert_int_equal(invoke_sized("q", 1, 10, id[0]), 0);
    assert_int_equal(invoke_sized("q", 2, 10, id[1]), 0);
    assert_int_equal(invoke_sized("q", 3, 10, id[2]), 0);
    assert_int_equal(astats("q").bytes, 3 * b);
    assert_int_equal(astats("q").depth, 3);
    assert_int_equal(invoke_sized("q", 4, 10, id[3]), FAAS_ETHROTTLED);
    assert_int_equal(astats("q").bytes, 3 * b);
    assert_int_equal(astats("q").dropped, 1);
    assert_true(tu_run_until(g_base, &g_completes, 3, BOUND_MS));
    assert_int_equal(astats("q").bytes, 0);
    assert_int_equal(astats("q").depth, 0);
    /* room again */
    assert_int_equal(invoke_sized("q", 6, 10, id[3]), 0);
    assert_int_equal(astats("q").bytes, b);
    assert_true(tu_run_until(g_base, &g_completes, 4, BOUND_MS));
    assert_int_equal(astats("q").bytes, 0);
    assert_int_equal(g_deads, 0);
}

/* A bound smaller than an event: FAAS_ETOOBIG, even when dropping the
 * oldest is allowed. */
static void test_queue_bytes_toobig(void **state)
{
    struct faas_async_opts ao = async_opts();
    char id[FAAS_REQUEST_ID_SIZE];

    (void)state;
    ao.max_queue_bytes = event_bytes(1, 10) - 1;
    ao.overflow = FAAS_OVERFLOW_DROP_OLDEST;
    reg("q", FAAS_ISOLATION_INLINE, echo_handler, &ao, 0);
    assert_int_equal(invoke_sized("q", 1, 10, id), FAAS_ETOOBIG);
    assert_int_equal(invoke_sized("q", 1, 9, id), 0); /* one byte less fits */
    assert_true(tu_run_until(g_base, &g_completes, 1, BOUND_MS));
    assert_int_equal(astats("q").bytes, 0);
}

/* FAAS_OVERFLOW_DROP_OLDEST with bytes: the oldest events are dropped until
 * the new one fits. */
static void test_queue_bytes_drop_oldest(void **state)
{
    struct faas_async_opts ao = async_opts();
    size_t b = event_bytes(1, 10), big = event_bytes(4, 10 + b);
    char id[4][FAAS_REQUEST_ID_SIZE];
    int i;

    (void)state;
    assert_true(big == 2 * b); /* {"n":4,"s":"..."} with b more string bytes */
    if (faas_durable_shared(g_rt->durable)) {
        /* A fleet's queue refuses instead (FAAS_OVERFLOW_REJECT): one host
         * does not drop the fleet's events (test_durable_queue's bound). */
        print_message("  drop-oldest (one host's queue): skipped on a fleet's queue\n");
        skip();
    }
    ao.max_queue_bytes = 3 * b;
    ao.overflow = FAAS_OVERFLOW_DROP_OLDEST;
    reg("q", FAAS_ISOLATION_INLINE, echo_handler, &ao, 0);
    for (i = 0; i < 3; i++)
        assert_int_equal(invoke_sized("q", i + 1, 10, id[i]), 0);
    assert_int_equal(invoke_sized("q", 4, 10 + b, id[3]), 0);
    assert_int_equal(g_log_overflow, 2);
    assert_int_equal(astats("q").bytes, b + big);
    assert_int_equal(astats("q").depth, 2);
    assert_true(tu_run_until(g_base, &g_completes, 4, BOUND_MS));
    assert_int_equal(fin_for(id[0])->status, FAAS_ETHROTTLED);
    assert_int_equal(fin_for(id[1])->status, FAAS_ETHROTTLED);
    assert_int_equal(fin_for(id[2])->status, 0);
    assert_int_equal(fin_for(id[3])->status, 0);
    assert_int_equal(astats("q").bytes, 0);
    assert_int_equal(astats("q").dropped, 2);
    assert_int_equal(astats("q").dead_letters, 2);
}

/* max_concurrency 1 and a busy handler: the queued events are throttled by
 * the pool, do not count as attempts, and all run, in order, once the
 * instance is free. */
static void test_throttled_not_counted(void **state)
{
    struct faas_async_opts ao = async_opts();
    char id[5][FAAS_REQUEST_ID_SIZE];
    int i;
    (void)state;

    ao.max_retries = 0; /* a counted throttle would be a failure */
    reg("one", FAAS_ISOLATION_THREAD, gate_handler, &ao, 1);
    for (i = 0; i < 5; i++)
        assert_int_equal(invoke_n("one", i, id[i]), 0);
    assert_true(run_until_atomic(&g_started, 1, BOUND_MS));
    tu_run_for(g_base, 30);
    assert_int_equal(ALOAD(&g_started), 1);
    /* A fleet's queue delivers no more than max_concurrency at once: the
     * pool never throttles them. */
    assert_true(g_log_throttled >= 1 || faas_durable_shared(g_rt->durable));
    assert_int_equal(g_completes, 0);
    assert_int_equal(stats("one").concurrency, 1);

    gate_open();
    assert_true(tu_run_until(g_base, &g_completes, 5, BOUND_MS));
    assert_int_equal(g_deads, 0);
    for (i = 0; i < 5; i++) {
        struct fin *f = fin_for(id[i]);
        assert_int_equal(f->status, 0);
        assert_int_equal(f->attempts, 1);
        assert_int_equal(f->completes, 1);
        assert_int_equal(seen_count(id[i]), 1);
    }
    pthread_mutex_lock(&g_mu);
    for (i = 0; i < 5; i++)
        assert_int_equal(g_seen_n[i], i); /* FIFO */
    pthread_mutex_unlock(&g_mu);
    assert_int_equal(stats("one").invocations, 5);
}

static void test_toobig(void **state)
{
    char *big = malloc(300 * 1024);
    char id[FAAS_REQUEST_ID_SIZE];
    json_t *ev;
    (void)state;

    assert_non_null(big);
    reg("f", FAAS_ISOLATION_INLINE, echo_handler, NULL, 0);
    memset(big, 'a', 300 * 1024 - 1);
    big[300 * 1024 - 1] = '\0';
    ev = json_pack("{s:s}", "b", big);
    assert_int_equal(faas_invoke_async(g_rt, "f", ev, NULL, id), FAAS_ETOOBIG);
    json_decref(ev);
    big[200 * 1024] = '\0';
    ev = json_pack("{s:s}", "b", big);
    assert_int_equal(faas_invoke_async(g_rt, "f", ev, NULL, id), 0);
    json_decref(ev);
    free(big);
    assert_true(run_until_atomic(&g_runs, 1, BOUND_MS));
    settle();
    assert_int_equal(stats("f").invocations, 1);
}

/* Queued, in-flight and retry-waiting events at faas_runtime_free: each
 * ends once, in the dead letter, with FAAS_ECANCELED, before it returns. */
static void count_dead(const struct faas_result *res, void *arg)
{
    (void)res;
    (*(int *)arg)++;
}

static void test_free_pending(void **state)
{
    struct faas_async_opts ao = async_opts();
    struct faas_async_opts af = async_opts();
    struct faas_async_opts dst = FAAS_ASYNC_OPTS_INIT;
    int dst_deads = 0;
    char id[4][FAAS_REQUEST_ID_SIZE];
    int i;
    (void)state;
    if (g_rt->durable) {
        /* On a durable engine events do not end with FAAS_ECANCELED: they
         * stay for the next start (test_durable_async tests that). */
        print_message("  memory semantics (events cancelled): skipped on a durable engine\n");
        skip();
    }

    ao.on_failure = "dst";
    af.on_failure = "dst";
    af.retry_base_ms = 1000;
    dst.dead_letter = count_dead;
    dst.dead_letter_arg = &dst_deads;
    reg("busy", FAAS_ISOLATION_THREAD, gate_handler, &ao, 1);
    reg("flaky", FAAS_ISOLATION_INLINE, flaky_handler, &af, 0);
    /* dst comes last: a destination record queued at teardown would end
     * in its dead letter */
    reg("dst", FAAS_ISOLATION_INLINE, dest_handler, &dst, 0);
    ASTORE(&g_fail_first, 1000);
    assert_int_equal(invoke_n("flaky", 9, id[3]), 0);
    assert_true(tu_run_until(g_base, &g_log_retry, 1, BOUND_MS));
    for (i = 0; i < 3; i++)
        assert_int_equal(invoke_n("busy", i, id[i]), 0);
    assert_true(run_until_atomic(&g_started, 1, BOUND_MS));
    settle();
    assert_int_equal(g_deads, 0);

    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_int_equal(g_deads, 4);
    assert_int_equal(g_completes, 4);
    for (i = 0; i < 4; i++) {
        struct fin *f = fin_for(id[i]);
        assert_int_equal(f->deads, 1);
        assert_int_equal(f->completes, 1);
        assert_int_equal(f->dead_status, FAAS_ECANCELED);
    }
    assert_int_equal(fin_for(id[3])->attempts, 1);
    assert_int_equal(g_nfin, 4);
    /* no destinations at teardown */
    assert_int_equal(ALOAD(&g_dest_runs), 0);
    assert_int_equal(dst_deads, 0);
}

/* Unregister: waiting events end at once, in-flight ones when the pool's
 * FAAS_ECANCELED comes back; each once; on_failure gets "Canceled". */
static void test_unregister_pending(void **state)
{
    struct faas_async_opts ao = async_opts();
    char id[3][FAAS_REQUEST_ID_SIZE];
    json_t *rec;
    int i;
    (void)state;
    if (g_rt->durable) {
        /* On a durable engine events do not end with FAAS_ECANCELED: they
         * stay for the next start (test_durable_async tests that). */
        print_message("  memory semantics (events cancelled): skipped on a durable engine\n");
        skip();
    }

    ao.on_failure = "dst";
    reg("busy", FAAS_ISOLATION_THREAD, gate_handler, &ao, 1);
    reg_dest();
    for (i = 0; i < 3; i++)
        assert_int_equal(invoke_n("busy", i, id[i]), 0);
    assert_true(run_until_atomic(&g_started, 1, BOUND_MS));
    settle();

    assert_int_equal(faas_unregister(g_rt, "busy"), 0);
    assert_int_equal(invoke_n("busy", 9, NULL), FAAS_ENOENT);
    assert_true(tu_run_until(g_base, &g_deads, 3, BOUND_MS));
    assert_true(run_until_atomic(&g_dest_runs, 3, BOUND_MS));
    for (i = 0; i < 3; i++) {
        struct fin *f = fin_for(id[i]);
        assert_int_equal(f->deads, 1);
        assert_int_equal(f->completes, 1);
        assert_int_equal(f->dead_status, FAAS_ECANCELED);
    }
    for (i = 0; i < 3; i++) {
        rec = dest_record(i);
        assert_string_equal(jstr(rec, "requestContext", "condition"), "Canceled");
    }
    gate_open();
    tu_run_for(g_base, 30);
    assert_int_equal(g_deads, 3);
    assert_int_equal(g_completes, 3);
    assert_int_equal(ALOAD(&g_started), 1);
}

/* Many events, half failing for good: each ends exactly once. */
static void test_exactly_once_many(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct faas_async_opts ao = async_opts();
    char id[40][FAAS_REQUEST_ID_SIZE];
    int i, guard;

    ao.max_retries = 1;
    ao.retry_base_ms = 10;
    reg("many", iso, odd_fail_handler, &ao, 3);
    for (i = 0; i < 40; i++)
        assert_int_equal(invoke_n("many", i, id[i]), 0);
    for (guard = 0; g_completes < 40 && guard < 400; guard++) {
        tu_run_until(g_base, &g_completes, 40, 5);
        advance_ms(20);
    }
    assert_int_equal(g_completes, 40);
    assert_int_equal(g_deads, 20);
    assert_int_equal(g_nfin, 40);
    for (i = 0; i < 40; i++) {
        struct fin *f = fin_for(id[i]);
        assert_int_equal(f->completes, 1);
        assert_int_equal(f->deads, i % 2);
        assert_int_equal(f->attempts, i % 2 ? 2 : 1);
        assert_int_equal(seen_count(id[i]), i % 2 ? 2 : 1);
    }
    advance_ms(1000);
    tu_run_for(g_base, 20);
    assert_int_equal(g_completes, 40);
    assert_int_equal(ALOAD(&g_runs), 60);
}

/* Idempotency composes: a duplicate key in flight (FAAS_EINPROGRESS) is
 * retried without counting, then replayed without running the handler; a
 * required key that is missing is refused at once. */
static void test_idempotent(void **state)
{
    struct faas_async_opts ao = async_opts();
    struct faas_idempotency_opts id_o = FAAS_IDEMPOTENCY_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    char id[2][FAAS_REQUEST_ID_SIZE];
    json_t *ev;
    struct fin *f;
    int i;
    (void)state;

    ao.max_retries = 0; /* an in-progress retry must not use up a retry */
    ao.retry_base_ms = 1000;
    id_o.key_path = "k";
    id_o.required = 1;
    fo.isolation = FAAS_ISOLATION_THREAD;
    fo.timeout_ms = 0;
    fo.idempotency = &id_o;
    fo.async = &ao;
    assert_int_equal(faas_register(g_rt, "idem", gate_handler, &fo), 0);

    ev = json_pack("{s:i}", "n", 5);
    assert_int_equal(faas_invoke_async(g_rt, "idem", ev, NULL, NULL), FAAS_ENOKEY);
    json_decref(ev);

    for (i = 0; i < 2; i++) {
        ev = json_pack("{s:i, s:s}", "n", i, "k", "order-1");
        assert_int_equal(faas_invoke_async(g_rt, "idem", ev, NULL, id[i]), 0);
        json_decref(ev);
    }
    assert_true(run_until_atomic(&g_started, 1, BOUND_MS));
    assert_true(tu_run_until(g_base, &g_log_retry, 1, BOUND_MS));
    assert_int_equal(g_completes, 0);

    gate_open();
    assert_true(tu_run_until(g_base, &g_completes, 1, BOUND_MS));
    assert_int_equal(fin_for(id[0])->status, 0);
    advance_ms(1000);
    assert_true(tu_run_until(g_base, &g_completes, 2, BOUND_MS));
    f = fin_for(id[1]);
    assert_int_equal(f->status, 0);
    assert_int_equal(f->deads, 0);
    assert_int_equal(f->attempts, 1);
    assert_int_equal(event_n(f->payload), 0); /* the first one's result */
    assert_int_equal(event_n(f->event), 1);
    assert_int_equal(seen_count(id[1]), 0);
    assert_int_equal(ALOAD(&g_started), 1);
    assert_int_equal(stats("idem").replays, 1);
}

/* A dead-letter callback that frees the runtime: the free waits until the
 * callback returns, and the other events still end once. */
static void free_in_dead(const struct faas_result *res, void *arg)
{
    on_dead(res, arg);
    faas_runtime_free(g_rt);
}

static void test_free_inside_dead_letter(void **state)
{
    struct faas_async_opts ao = async_opts();
    char id[3][FAAS_REQUEST_ID_SIZE];
    int i;
    (void)state;
    if (g_rt->durable) {
        /* On a durable engine events do not end with FAAS_ECANCELED: they
         * stay for the next start (test_durable_async tests that). */
        print_message("  memory semantics (events cancelled): skipped on a durable engine\n");
        skip();
    }

    ao.max_retries = 0;
    ao.dead_letter = free_in_dead;
    reg("bad", FAAS_ISOLATION_INLINE, flaky_handler, &ao, 1);
    ASTORE(&g_fail_first, 1000);
    for (i = 0; i < 3; i++)
        assert_int_equal(invoke_n("bad", i, id[i]), 0);
    assert_true(tu_run_until(g_base, &g_deads, 3, BOUND_MS));
    g_rt = NULL; /* freed by the callback */
    assert_int_equal(g_completes, 3);
    for (i = 0; i < 3; i++)
        assert_int_equal(fin_for(id[i])->deads, 1);
    assert_int_equal(fin_for(id[0])->dead_status, FAAS_EHANDLER);
}

/* ---- review regressions ---- */

static struct faas_runtime *g_overflow_rt;
static int g_overflow_frees;

/* The fixture's counting, and a faas_runtime_free from the "overflow"
 * record, which is delivered inside faas_invoke_async. */
static void free_on_overflow(const struct faas_log_record *rec, void *arg)
{
    on_log(rec, arg);
    if (rec->kind == FAAS_LOG_ASYNC && strcmp(rec->action, "overflow") == 0 && g_overflow_rt) {
        struct faas_runtime *rt = g_overflow_rt;
        g_overflow_rt = NULL;
        g_overflow_frees++;
        faas_runtime_free(rt);
    }
}

/* The host calls faas_invoke_async from top level and frees the runtime in
 * the overflow's log record: the free waits until the call is done, and
 * every accepted event ends once. */
static void test_free_in_overflow_log(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = async_opts();
    struct faas_runtime *rt;
    char id[2][FAAS_REQUEST_ID_SIZE];
    json_t *ev = json_pack("{s:i}", "n", 0);
    int i;
    (void)state;

    ro.log = free_on_overflow;
    ro.clock.now_ns = tu_clock_now;
    ro.clock.wall_ns = tu_clock_wall;
    ro.clock.arg = &g_clock;
    g_overflow_frees = 0;
    assert_int_equal(faas_runtime_new(&rt, g_base, &ro), 0);
    g_overflow_rt = rt;
    fo.isolation = FAAS_ISOLATION_INLINE;
    ao.max_queue = 1;
    ao.overflow = FAAS_OVERFLOW_DROP_OLDEST;
    fo.async = &ao;
    assert_int_equal(faas_register(rt, "a", echo_handler, &fo), 0);
    assert_int_equal(faas_invoke_async(rt, "a", ev, NULL, id[0]), 0);
    assert_int_equal(g_log_overflow, 0);
    assert_int_equal(faas_invoke_async(rt, "a", ev, NULL, id[1]), 0);
    assert_null(g_overflow_rt); /* freed inside the call */
    assert_int_equal(g_overflow_frees, 1);
    assert_int_equal(g_log_overflow, 1);
    tu_run_for(g_base, 20);
    assert_int_equal(g_completes, 2);
    assert_int_equal(g_nfin, 2);
    for (i = 0; i < 2; i++)
        assert_int_equal(fin_for(id[i])->completes, 1);
    assert_int_equal(fin_for(id[0])->status, FAAS_ETHROTTLED);
    assert_int_equal(fin_for(id[1])->status, FAAS_ECANCELED);
    assert_int_equal(ALOAD(&g_runs), 0);
    json_decref(ev);
}

/* ---- out of memory: every allocation fails in turn ---- */

static void fin_reset(void)
{
    int i;
    for (i = 0; i < NFIN; i++) {
        json_decref(g_fin[i].event);
        json_decref(g_fin[i].payload);
    }
    memset(g_fin, 0, sizeof g_fin);
    g_nfin = g_completes = g_deads = 0;
    pthread_mutex_lock(&g_mu);
    for (i = 0; i < g_ndest; i++)
        json_decref(g_dest[i]);
    g_ndest = 0;
    g_nseen = 0;
    pthread_mutex_unlock(&g_mu);
}

/* One scenario; returns 1 when the injected failure was never reached. */
static int oom_run(long fail_at)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_async_opts ao = async_opts();
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    json_t *events[4];
    char id[FAAS_REQUEST_ID_SIZE];
    int i, rc, accepted = 0, registered, untouched;

    fin_reset();
    for (i = 0; i < 4; i++) {
        events[i] = json_pack("{s:i, s:[s]}", "n", i, "l", "x");
        assert_non_null(events[i]);
    }
    g_base = event_base_new();
    assert_non_null(g_base);
    ro.thread_workers = 2;
    ro.zygote = 0;
    ro.clock.now_ns = tu_clock_now;
    ro.clock.wall_ns = tu_clock_wall;
    ro.clock.arg = &g_clock;
    ao.max_retries = 1;
    ao.retry_base_ms = 10;
    ao.on_success = "d";
    ao.on_failure = "d";
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.async = &ao;

    atomic_store(&faas_alloc_fail_countdown, fail_at);
    g_rt = NULL;
    rc = faas_runtime_new(&g_rt, g_base, &ro);
    if (rc != 0) {
        assert_int_equal(rc, FAAS_ENOMEM);
        goto out;
    }
    rc = faas_register(g_rt, "a", odd_fail_handler, &fo);
    registered = rc == 0;
    if (rc)
        assert_int_equal(rc, FAAS_ENOMEM);
    fo.async = NULL;
    rc = faas_register(g_rt, "d", dest_handler, &fo);
    if (rc)
        assert_int_equal(rc, FAAS_ENOMEM);
    for (i = 0; i < 4; i++) {
        rc = faas_invoke_async(g_rt, "a", events[i], NULL, id);
        if (rc == 0) {
            accepted++;
            assert_int_equal(fin_for(id)->completes, 0);
        } else {
            assert_int_equal(rc, registered ? FAAS_ENOMEM : FAAS_ENOENT);
        }
    }
    for (i = 0; i < 40 && g_completes < accepted; i++) {
        settle();
        advance_ms(20);
    }
    settle();
    faas_runtime_free(g_rt);
    g_rt = NULL;
    /* every accepted event ended once, failures in the dead letter too */
    assert_int_equal(g_completes, accepted);
    assert_int_equal(g_nfin, accepted);
    for (i = 0; i < g_nfin; i++) {
        assert_int_equal(g_fin[i].completes, 1);
        assert_int_equal(g_fin[i].deads, g_fin[i].status != 0);
    }
out:
    untouched = atomic_load(&faas_alloc_fail_countdown) >= 0;
    atomic_store(&faas_alloc_fail_countdown, -1);
    event_base_free(g_base);
    g_base = NULL;
    for (i = 0; i < 4; i++)
        json_decref(events[i]);
    return untouched;
}

static void test_out_of_memory(void **state)
{
    long n;
    (void)state;
    json_set_alloc_funcs(faas_malloc, free);
    for (n = 0; n < 5000; n++)
        if (oom_run(n))
            break;
    json_set_alloc_funcs(malloc, free);
    fin_reset();
    print_message("allocations in the scenario: %ld\n", n);
    assert_true(n > 20);
    assert_true(n < 5000);
}

#define ISO_TEST(t)                                                                      \
    cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)&tu_iso_inline),   \
        cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)&tu_iso_thread)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_args, setup, teardown),
        ISO_TEST(test_returns_at_once),
        ISO_TEST(test_success_destination),
        ISO_TEST(test_retry_then_success),
        ISO_TEST(test_always_fail),
        ISO_TEST(test_backoff_times),
        ISO_TEST(test_event_age_retry),
        cmocka_unit_test_setup_teardown(test_event_age_waiting, setup, teardown),
        ISO_TEST(test_overflow_reject),
        ISO_TEST(test_queue_bytes_reject),
        ISO_TEST(test_overflow_drop_oldest),
        cmocka_unit_test_setup_teardown(test_throttled_not_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_toobig, setup, teardown),
        cmocka_unit_test(test_json_bytes_exact),
        cmocka_unit_test_setup_teardown(test_queue_bytes_toobig, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_bytes_drop_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unregister_pending, setup, teardown),
        ISO_TEST(test_exactly_once_many),
        cmocka_unit_test_setup_teardown(test_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_overflow_log, setup, teardown),
        cmocka_unit_test(test_out_of_memory),
    };
    int rc, i;
    tu_cond_init_monotonic(&g_cv);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (i = 0; i < NFIN; i++) {
        json_decref(g_fin[i].event);
        json_decref(g_fin[i].payload);
    }
    for (i = 0; i < g_ndest; i++)
        json_decref(g_dest[i]);
    return rc;
}

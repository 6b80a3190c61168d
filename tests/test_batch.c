/*
 * test_batch.c - event-source-mapping semantics of host-fed sources
 * (batch.c), through faas_map and faas_emit: batch size and window,
 * per-key ordering with parallelization, partial batch responses, bisect
 * on error, max_retries with backoff, max_record_age, the on-failure
 * destination record, FunctionNotFound, unmap with queued and in-flight
 * batches, and faas_runtime_free with everything in flight.
 *
 * Time is the fake clock: windows and backoffs are passed by advancing it
 * and calling faas_batcher_poll (no real waiting). "proc" and "dlq" are
 * INLINE (they run on the loop, in order); "slow" is THREAD and blocks on a
 * gate, to hold batches in flight. Counts are exact.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "faas_int.h" /* faas_batcher_poll: windows and retries, on demand */
#include "testutil.h"

#define BOUND_MS 5000u
#define MS 1000000ull
#define NCALLS 64

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static struct tu_clock g_clock;

/* ---- "proc": INLINE, on the loop ---- */

enum mode { M_OK = 0, M_FAIL, M_FAIL_IF_BAD, M_ITEMS, M_ITEMS_BOGUS };

static enum mode g_mode;
static json_t *g_calls[NCALLS]; /* the events proc got */
static int g_ncalls;
static const char *g_item_tags[8]; /* M_ITEMS: records to name, first call only */

/* ---- "dlq": the on-failure destination ---- */

static json_t *g_dlq[NCALLS];
static int g_ndlq;

/* ---- log ---- */

static int g_log_failures;
static int g_log_refused;         /* FAAS_LOG_WARNING "record-refused" */
static char g_refused_fn[FAAS_NAME_MAX + 1];

/* ---- "slow": THREAD, gated ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_open;              /* guarded by g_mu */
static int g_started;           /* guarded by g_mu */
static int g_finished;          /* guarded by g_mu; read on the loop via g_done */
static int g_running;           /* guarded by g_mu */
static int g_max_running;       /* guarded by g_mu */
static int g_key_running[26];   /* guarded by g_mu */
static int g_key_violation;     /* guarded by g_mu */
static char g_order[64][8];     /* guarded by g_mu: tags in start order */
static int g_done;              /* loop: slow results */

/* A record's tag: an SQS body, or the decoded Kinesis data. */
static const char *tag_of(json_t *rec, char *buf, size_t size)
{
    const char *body = json_string_value(json_object_get(rec, "body"));
    const char *b64 = json_string_value(json_object_get(json_object_get(rec, "kinesis"), "data"));
    size_t n = 0;
    if (body)
        return body;
    if (!b64 || sodium_base642bin((unsigned char *)buf, size - 1, b64, strlen(b64), NULL, &n,
                                  NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
        return "";
    buf[n] = '\0';
    return buf;
}

static json_t *find_tag(json_t *event, const char *tag)
{
    json_t *recs = json_object_get(event, "Records"), *r;
    size_t i;
    char buf[64];
    json_array_foreach(recs, i, r) {
        if (strcmp(tag_of(r, buf, sizeof buf), tag) == 0)
            return r;
    }
    return NULL;
}

static const char *item_id(json_t *r)
{
    const char *id = json_string_value(json_object_get(r, "messageId"));
    return id ? id : json_string_value(json_object_get(json_object_get(r, "kinesis"),
                                                       "sequenceNumber"));
}

static int proc(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    int first = g_ncalls == 0;
    (void)ctx;
    if (g_ncalls < NCALLS)
        g_calls[g_ncalls] = json_deep_copy(event);
    g_ncalls++;
    if (g_mode == M_FAIL)
        return 1;
    if (g_mode == M_FAIL_IF_BAD && find_tag(event, "bad"))
        return faas_ctx_fail(ctx, "Poison", "bad record");
    if (g_mode == M_ITEMS && first) {
        json_t *list = json_array();
        int i;
        for (i = 0; g_item_tags[i]; i++) {
            json_t *r = find_tag(event, g_item_tags[i]);
            assert_non_null(r);
            json_array_append_new(list, json_pack("{s:s}", "itemIdentifier", item_id(r)));
        }
        *result = json_pack("{s:o}", "batchItemFailures", list);
    }
    if (g_mode == M_ITEMS_BOGUS && first)
        *result = json_pack("{s:[{s:s}]}", "batchItemFailures", "itemIdentifier", "nope");
    return 0;
}

static int dlq(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)result;
    if (g_ndlq < NCALLS)
        g_dlq[g_ndlq] = json_deep_copy(event);
    g_ndlq++;
    return 0;
}

static int slow(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *recs = json_object_get(event, "Records"), *r;
    size_t i;
    char buf[64];
    int keys[26] = { 0 };
    struct timespec ts;

    (void)result;
    pthread_mutex_lock(&g_mu);
    json_array_foreach(recs, i, r) {
        const char *t = tag_of(r, buf, sizeof buf);
        int k = t[0] >= 'A' && t[0] <= 'Z' ? t[0] - 'A' : 0;
        if (g_started < 64)
            snprintf(g_order[g_started], sizeof g_order[0], "%s", t);
        g_started++;
        if (!keys[k]++ && g_key_running[k]++)
            g_key_violation = 1;
    }
    if (++g_running > g_max_running)
        g_max_running = g_running;
    while (!g_open && !faas_ctx_cancelled(ctx)) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&g_cv, &g_mu, &ts);
    }
    for (i = 0; i < 26; i++)
        if (keys[i])
            g_key_running[i]--;
    g_running--;
    g_finished++;
    pthread_mutex_unlock(&g_mu);
    return 0;
}

static void on_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind == FAAS_LOG_ASYNC && strcmp(rec->action, "failure") == 0 &&
        strcmp(rec->function, "dlq") != 0)
        g_log_failures++;
    if (rec->kind == FAAS_LOG_REPORT && strcmp(rec->function, "slow") == 0)
        g_done++;
    if (rec->kind == FAAS_LOG_WARNING && strcmp(rec->action, "record-refused") == 0) {
        g_log_refused++;
        snprintf(g_refused_fn, sizeof g_refused_fn, "%s", rec->function ? rec->function : "");
    }
}

static int locked_int(int *p)
{
    int v;
    pthread_mutex_lock(&g_mu);
    v = *p;
    pthread_mutex_unlock(&g_mu);
    return v;
}

static void gate_open(void)
{
    pthread_mutex_lock(&g_mu);
    g_open = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* Runs the loop until locked *p >= want (worker-side counters). */
static int run_until_locked(int *p, int want)
{
    uint64_t end = tu_now_ms() + BOUND_MS;
    while (locked_int(p) < want) {
        if (tu_now_ms() > end)
            return 0;
        tu_run_for(g_base, 2);
    }
    return 1;
}

static int setup(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts in = FAAS_FUNCTION_OPTS_INIT, th = FAAS_FUNCTION_OPTS_INIT;
    (void)state;
    memset(g_calls, 0, sizeof g_calls);
    memset(g_dlq, 0, sizeof g_dlq);
    memset(g_item_tags, 0, sizeof g_item_tags);
    memset(g_key_running, 0, sizeof g_key_running);
    g_ncalls = g_ndlq = g_log_failures = g_log_refused = 0;
    g_refused_fn[0] = '\0';
    g_mode = M_OK;
    g_open = g_started = g_finished = g_running = g_max_running = g_key_violation = 0;
    g_done = 0;
    g_clock.ns = 1000 * MS;
    o.clock.now_ns = tu_clock_now;
    o.clock.wall_ns = tu_clock_wall;
    o.clock.arg = &g_clock;
    o.log = on_log;
    o.thread_workers = 4;
    o.region = "us-east-2";
    g_base = event_base_new();
    tu_durable_apply(&o); /* make test runs the suite on SQLite too */
    if (!g_base || faas_runtime_new(&g_rt, g_base, &o) != 0)
        return -1;
    in.isolation = FAAS_ISOLATION_INLINE;
    in.timeout_ms = 0;
    th.timeout_ms = 0;
    if (faas_register(g_rt, "proc", proc, &in) != 0 || faas_register(g_rt, "dlq", dlq, &in) != 0 ||
        faas_register(g_rt, "slow", slow, &th) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    int i;
    (void)state;
    gate_open();
    tu_rt_free(&g_rt, &g_base);
    for (i = 0; i < NCALLS; i++) {
        json_decref(g_calls[i]);
        json_decref(g_dlq[i]);
    }
    return 0;
}

/* ---- helpers ---- */

static void emit_q(const char *queue, const char *body)
{
    char src[64];
    json_t *parts = json_pack("{s:s}", "body", body);
    snprintf(src, sizeof src, "queue:%s", queue);
    assert_int_equal(faas_emit(g_rt, src, parts), 1);
    json_decref(parts);
}

/* Stream records: the tag's first letter is the partition key. */
static void emit_s(const char *tag)
{
    char pk[2] = { tag[0], 0 };
    json_t *parts = json_pack("{s:s, s:s}", "partitionKey", pk, "data", tag);
    assert_int_equal(faas_emit(g_rt, "stream:orders", parts), 1);
    json_decref(parts);
}

/* The tags of call i, joined by ','. */
static const char *call_tags(json_t **calls, int i)
{
    static char out[512];
    json_t *recs = json_object_get(calls[i], "Records"), *r;
    size_t j, o = 0;
    char buf[64];
    out[0] = '\0';
    json_array_foreach(recs, j, r) {
        o += (size_t)snprintf(out + o, sizeof out - o, "%s%s", j ? "," : "",
                              tag_of(r, buf, sizeof buf));
    }
    return out;
}

static void advance_poll(uint64_t ms)
{
    tu_clock_advance(&g_clock, ms * MS);
    faas_batcher_poll(g_rt);
}

static void settle(void)
{
    tu_run_for(g_base, 20);
}

static int map_q(const char *queue, struct faas_map_opts *o)
{
    char src[64];
    int id;
    snprintf(src, sizeof src, "queue:%s", queue);
    id = faas_map(g_rt, src, "proc", o);
    assert_true(id >= 0);
    return id;
}

/* ---- batch size and window ---- */

static void test_batch_size(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    int i;
    char b[16];
    (void)state;
    o.batch_size = 3;
    map_q("jobs", &o);
    for (i = 1; i <= 7; i++) {
        snprintf(b, sizeof b, "m%d", i);
        emit_q("jobs", b);
    }
    assert_int_equal(g_ncalls, 0); /* never inside faas_emit */
    assert_true(tu_run_until(g_base, &g_ncalls, 3, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 3);
    assert_string_equal(call_tags(g_calls, 0), "m1,m2,m3");
    assert_string_equal(call_tags(g_calls, 1), "m4,m5,m6");
    assert_string_equal(call_tags(g_calls, 2), "m7");
    assert_int_equal(g_ndlq, 0);
    assert_int_equal(g_log_failures, 0);
}

static void test_batch_size_default_one(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    (void)state;
    map_q("jobs", &o);
    emit_q("jobs", "a");
    emit_q("jobs", "b");
    assert_true(tu_run_until(g_base, &g_ncalls, 2, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 2);
    assert_string_equal(call_tags(g_calls, 0), "a");
    assert_string_equal(call_tags(g_calls, 1), "b");
    assert_true(json_is_array(json_object_get(g_calls[0], "Records")));
    assert_int_equal(json_object_size(g_calls[0]), 1);
}

static void test_batch_window(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    int i;
    char b[16];
    (void)state;
    o.batch_size = 10;
    o.batch_window_ms = 500;
    map_q("jobs", &o);
    emit_q("jobs", "a");
    advance_poll(100);
    emit_q("jobs", "b");
    emit_q("jobs", "c");
    settle();
    assert_int_equal(g_ncalls, 0);
    advance_poll(399); /* 499 ms since the first record */
    settle();
    assert_int_equal(g_ncalls, 0);
    advance_poll(1);
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    assert_string_equal(call_tags(g_calls, 0), "a,b,c");
    /* a full batch goes at once, whatever the window */
    for (i = 0; i < 10; i++) {
        snprintf(b, sizeof b, "f%d", i);
        emit_q("jobs", b);
    }
    assert_true(tu_run_until(g_base, &g_ncalls, 2, BOUND_MS));
    assert_int_equal(json_array_size(json_object_get(g_calls[1], "Records")), 10);
    /* the window counts from the first record of the next batch */
    emit_q("jobs", "z");
    advance_poll(499);
    settle();
    assert_int_equal(g_ncalls, 2);
    advance_poll(1);
    assert_true(tu_run_until(g_base, &g_ncalls, 3, BOUND_MS));
    assert_string_equal(call_tags(g_calls, 2), "z");
}

/* ---- ordering and parallelization ---- */

/* A copy of what the handlers recorded, taken under their lock: the test
 * asserts on the copy, never with the lock held (a failed assertion leaves
 * the test function at once, and a handler still running would wait for
 * the lock for ever). */
struct order_snap {
    char order[64][8];
    int key_violation, max_running;
};

static void snap_order(struct order_snap *s)
{
    pthread_mutex_lock(&g_mu);
    memcpy(s->order, g_order, sizeof s->order);
    s->key_violation = g_key_violation;
    s->max_running = g_max_running;
    pthread_mutex_unlock(&g_mu);
}

static void test_ordering_parallel_keys(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    static const char *const tags[] = { "A1", "A2", "B1", "A3", "B2", "C1", "C2" };
    struct order_snap sn;
    size_t i;
    int a = 0, b = 0, c = 0;
    (void)state;
    o.parallelization = 2;
    assert_true(faas_map(g_rt, "stream:orders", "slow", &o) >= 0);
    for (i = 0; i < sizeof tags / sizeof *tags; i++)
        emit_s(tags[i]);
    assert_true(run_until_locked(&g_started, 2));
    tu_run_for(g_base, 30);
    /* two keys in parallel, the oldest first; nothing more meanwhile */
    assert_int_equal(locked_int(&g_started), 2);
    /* The oldest record of each of the first two keys, on two threads:
     * which of the two starts first is the scheduler's choice. */
    snap_order(&sn);
    assert_true((strcmp(sn.order[0], "A1") == 0 && strcmp(sn.order[1], "B1") == 0) ||
                (strcmp(sn.order[0], "B1") == 0 && strcmp(sn.order[1], "A1") == 0));
    gate_open();
    assert_true(tu_run_until(g_base, &g_done, 7, BOUND_MS));
    settle();
    assert_int_equal(g_done, 7);
    snap_order(&sn);
    assert_int_equal(sn.key_violation, 0);
    assert_true(sn.max_running <= 2);
    for (i = 0; i < 7; i++) {
        /* each key's records in emit order */
        char k = sn.order[i][0], n = sn.order[i][1];
        int *seen = k == 'A' ? &a : k == 'B' ? &b : &c;
        assert_int_equal(n - '0', *seen + 1);
        (*seen)++;
    }
    assert_int_equal(a, 3);
    assert_int_equal(b, 2);
    assert_int_equal(c, 2);
}

static void test_one_key_one_batch_in_flight(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    struct order_snap sn;
    (void)state;
    o.parallelization = 3;
    assert_true(faas_map(g_rt, "stream:orders", "slow", &o) >= 0);
    emit_s("K1");
    emit_s("K2");
    emit_s("K3");
    assert_true(run_until_locked(&g_started, 1));
    tu_run_for(g_base, 30);
    assert_int_equal(locked_int(&g_started), 1);
    gate_open();
    assert_true(tu_run_until(g_base, &g_done, 3, BOUND_MS));
    snap_order(&sn);
    assert_string_equal(sn.order[0], "K1");
    assert_string_equal(sn.order[1], "K2");
    assert_string_equal(sn.order[2], "K3");
    assert_int_equal(sn.max_running, 1);
}

static void test_unordered_parallel(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    (void)state;
    o.parallelization = 3;
    assert_true(faas_map(g_rt, "queue:jobs", "slow", &o) >= 0);
    emit_q("jobs", "K1");
    emit_q("jobs", "K2");
    emit_q("jobs", "K3");
    emit_q("jobs", "K4");
    assert_true(run_until_locked(&g_started, 3));
    tu_run_for(g_base, 30);
    assert_int_equal(locked_int(&g_started), 3); /* parallelization bounds it */
    gate_open();
    assert_true(tu_run_until(g_base, &g_done, 4, BOUND_MS));
    assert_int_equal(locked_int(&g_max_running), 3);
}

static void test_dynamodb_default_key(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    json_error_t je;
    json_t *p1 = json_loads("{\"Keys\":{\"id\":{\"S\":\"1\"},\"sk\":{\"N\":\"2\"}}}", 0, &je);
    json_t *p2 = json_loads("{\"Keys\":{\"sk\":{\"N\":\"2\"},\"id\":{\"S\":\"1\"}}}", 0, &je);
    json_t *p3 = json_loads("{\"Keys\":{\"id\":{\"S\":\"9\"}}}", 0, &je);
    (void)state;
    o.parallelization = 5;
    assert_true(faas_map(g_rt, "dynamodb:*", "slow", &o) >= 0);
    assert_int_equal(faas_emit(g_rt, "dynamodb:INSERT", p1), 1);
    assert_int_equal(faas_emit(g_rt, "dynamodb:MODIFY", p2), 1); /* same key, other order */
    assert_int_equal(faas_emit(g_rt, "dynamodb:INSERT", p3), 1);
    assert_true(run_until_locked(&g_started, 2));
    tu_run_for(g_base, 30);
    assert_int_equal(locked_int(&g_started), 2); /* p2 waits for p1 */
    gate_open();
    assert_true(tu_run_until(g_base, &g_done, 3, BOUND_MS));
    json_decref(p1);
    json_decref(p2);
    json_decref(p3);
}

/* ---- partial batch responses ---- */

static void test_partial_queue(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    (void)state;
    o.batch_size = 5;
    o.batch_window_ms = 100;
    o.report_batch_item_failures = 1;
    map_q("jobs", &o);
    g_mode = M_ITEMS;
    g_item_tags[0] = "m2";
    g_item_tags[1] = "m4";
    emit_q("jobs", "m1");
    emit_q("jobs", "m2");
    emit_q("jobs", "m3");
    emit_q("jobs", "m4");
    emit_q("jobs", "m5");
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 1);
    advance_poll(999); /* backoff: 1 s */
    settle();
    assert_int_equal(g_ncalls, 1);
    advance_poll(1);
    assert_true(tu_run_until(g_base, &g_ncalls, 2, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 2);
    assert_string_equal(call_tags(g_calls, 1), "m2,m4"); /* only those */
    advance_poll(60000);
    settle();
    assert_int_equal(g_ncalls, 2);
    assert_int_equal(g_ndlq, 0);
}

static void test_partial_stream_resumes_from_first_failed(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    (void)state;
    o.batch_size = 5;
    o.report_batch_item_failures = 1;
    o.partition_key_path = "eventSource"; /* one key for all */
    assert_true(faas_map(g_rt, "stream:orders", "proc", &o) >= 0);
    g_mode = M_ITEMS;
    g_item_tags[0] = "E4";
    g_item_tags[1] = "C3";
    emit_s("A1");
    emit_s("B2");
    emit_s("C3");
    emit_s("D4");
    emit_s("E4");
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    assert_string_equal(call_tags(g_calls, 0), "A1,B2,C3,D4,E4");
    advance_poll(1000);
    assert_true(tu_run_until(g_base, &g_ncalls, 2, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 2);
    assert_string_equal(call_tags(g_calls, 1), "C3,D4,E4");
}

static void test_partial_bogus_identifier_fails_all(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    (void)state;
    o.batch_size = 2;
    o.batch_window_ms = 100;
    o.report_batch_item_failures = 1;
    map_q("jobs", &o);
    g_mode = M_ITEMS_BOGUS;
    emit_q("jobs", "a");
    emit_q("jobs", "b");
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    advance_poll(1000);
    assert_true(tu_run_until(g_base, &g_ncalls, 2, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 2);
    assert_string_equal(call_tags(g_calls, 1), "a,b");
}

static void test_items_ignored_without_option(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    (void)state;
    o.batch_size = 2;
    o.batch_window_ms = 100;
    map_q("jobs", &o);
    g_mode = M_ITEMS;
    g_item_tags[0] = "a";
    emit_q("jobs", "a");
    emit_q("jobs", "b");
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    advance_poll(60000);
    settle();
    assert_int_equal(g_ncalls, 1);
}

/* ---- failures: bisect, retries, age, destination ---- */

static void test_bisect(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    json_t *d;
    (void)state;
    o.batch_size = 4;
    o.batch_window_ms = 100;
    o.bisect_on_error = 1;
    o.max_retries = 2;
    o.on_failure = "dlq";
    map_q("jobs", &o);
    g_mode = M_FAIL_IF_BAD;
    emit_q("jobs", "ok1");
    emit_q("jobs", "ok2");
    emit_q("jobs", "bad");
    emit_q("jobs", "ok3");
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    assert_string_equal(call_tags(g_calls, 0), "ok1,ok2,bad,ok3");
    advance_poll(1000); /* retry 1: both halves */
    assert_true(tu_run_until(g_base, &g_ncalls, 3, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 3);
    assert_string_equal(call_tags(g_calls, 1), "ok1,ok2");
    assert_string_equal(call_tags(g_calls, 2), "bad,ok3");
    advance_poll(1999); /* retry 2 after 2 s */
    settle();
    assert_int_equal(g_ncalls, 3);
    advance_poll(1);
    assert_true(tu_run_until(g_base, &g_ncalls, 5, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 5);
    assert_string_equal(call_tags(g_calls, 3), "bad");
    assert_string_equal(call_tags(g_calls, 4), "ok3");
    /* "bad" failed its last retry: exhausted, to the destination */
    assert_true(tu_run_until(g_base, &g_ndlq, 1, BOUND_MS));
    settle();
    assert_int_equal(g_ndlq, 1);
    d = g_dlq[0];
    assert_string_equal(json_string_value(json_object_get(json_object_get(d, "requestContext"),
                                                          "condition")),
                        "RetryAttemptsExhausted");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "requestContext"),
                                                        "approximateInvokeCount")),
                     3);
    assert_string_equal(call_tags(g_dlq, 0), "bad");
    assert_int_equal(g_log_failures, 1);
    advance_poll(120000);
    settle();
    assert_int_equal(g_ncalls, 5);
}

static void test_max_retries_and_destination_record(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    json_t *d, *rc, *resp;
    const char *rid;
    (void)state;
    o.batch_size = 2;
    o.batch_window_ms = 100;
    o.max_retries = 3;
    o.on_failure = "dlq";
    map_q("jobs", &o);
    g_mode = M_FAIL;
    emit_q("jobs", "x");
    emit_q("jobs", "y");
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    /* backoff 1 s, 2 s, 4 s */
    advance_poll(1000);
    assert_true(tu_run_until(g_base, &g_ncalls, 2, BOUND_MS));
    advance_poll(1999);
    settle();
    assert_int_equal(g_ncalls, 2);
    advance_poll(1);
    assert_true(tu_run_until(g_base, &g_ncalls, 3, BOUND_MS));
    advance_poll(3999);
    settle();
    assert_int_equal(g_ncalls, 3);
    assert_int_equal(g_ndlq, 0);
    advance_poll(1);
    assert_true(tu_run_until(g_base, &g_ndlq, 1, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 4);
    assert_int_equal(g_ndlq, 1);
    assert_int_equal(g_log_failures, 1);
    d = g_dlq[0];
    rc = json_object_get(d, "requestContext");
    rid = json_string_value(json_object_get(rc, "requestId"));
    assert_non_null(rid);
    assert_int_equal(strlen(rid), 36);
    assert_string_equal(json_string_value(json_object_get(rc, "functionArn")),
                        "arn:aws:lambda:us-east-2:000000000000:function:proc");
    assert_string_equal(json_string_value(json_object_get(rc, "condition")),
                        "RetryAttemptsExhausted");
    assert_int_equal(json_integer_value(json_object_get(rc, "approximateInvokeCount")), 4);
    resp = json_object_get(d, "responseContext");
    assert_int_equal(json_integer_value(json_object_get(resp, "statusCode")), 200);
    assert_string_equal(json_string_value(json_object_get(resp, "executedVersion")), "$LATEST");
    assert_string_equal(json_string_value(json_object_get(resp, "functionError")), "Unhandled");
    assert_string_equal(json_string_value(json_object_get(d, "version")), "1.0");
    assert_true(json_is_string(json_object_get(d, "timestamp")));
    assert_string_equal(call_tags(g_dlq, 0), "x,y");
    /* the records themselves, as delivered */
    assert_true(json_equal(json_array_get(json_object_get(d, "Records"), 0),
                           json_array_get(json_object_get(g_calls[0], "Records"), 0)));
    advance_poll(120000);
    settle();
    assert_int_equal(g_ncalls, 4);
}

static void test_max_retries_zero(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    (void)state;
    o.max_retries = 0;
    map_q("jobs", &o); /* no destination: the log still says it */
    g_mode = M_FAIL;
    emit_q("jobs", "x");
    assert_true(tu_run_until(g_base, &g_log_failures, 1, BOUND_MS));
    advance_poll(120000);
    settle();
    assert_int_equal(g_ncalls, 1);
    assert_int_equal(g_log_failures, 1);
}

static void test_max_record_age(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    json_t *d;
    (void)state;
    o.max_retries = -1;
    o.max_record_age_ms = 5000;
    o.on_failure = "dlq";
    map_q("jobs", &o);
    g_mode = M_FAIL;
    emit_q("jobs", "x");
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    advance_poll(1000); /* t=1: retry 1 */
    assert_true(tu_run_until(g_base, &g_ncalls, 2, BOUND_MS));
    advance_poll(2000); /* t=3: retry 2 */
    assert_true(tu_run_until(g_base, &g_ncalls, 3, BOUND_MS));
    advance_poll(4000); /* t=7: older than 5 s, not retried */
    assert_true(tu_run_until(g_base, &g_ndlq, 1, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 3);
    d = g_dlq[0];
    assert_string_equal(json_string_value(json_object_get(json_object_get(d, "requestContext"),
                                                          "condition")),
                        "RecordAgeExceeded");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "requestContext"),
                                                        "approximateInvokeCount")),
                     3);
    assert_string_equal(call_tags(g_dlq, 0), "x");
}

static void test_age_before_first_send(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    json_t *resp;
    (void)state;
    o.batch_size = 10;
    o.batch_window_ms = 10000;
    o.max_record_age_ms = 5000;
    o.on_failure = "dlq";
    map_q("jobs", &o);
    emit_q("jobs", "old");
    advance_poll(6000);
    emit_q("jobs", "new");
    advance_poll(4000); /* window of "old" ends: it is too old to send */
    assert_true(tu_run_until(g_base, &g_ndlq, 1, BOUND_MS));
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    settle();
    assert_string_equal(call_tags(g_calls, 0), "new");
    assert_string_equal(call_tags(g_dlq, 0), "old");
    resp = json_object_get(g_dlq[0], "responseContext");
    assert_int_equal(json_integer_value(json_object_get(resp, "statusCode")), 0);
    assert_null(json_object_get(resp, "functionError"));
}

static void test_stream_destination_batch_info(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    json_t *info;
    (void)state;
    o.batch_size = 2;
    o.max_retries = 0;
    o.on_failure = "dlq";
    assert_true(faas_map(g_rt, "stream:orders", "proc", &o) >= 0);
    g_mode = M_FAIL;
    emit_s("A1");
    emit_s("A2");
    assert_true(tu_run_until(g_base, &g_ndlq, 1, BOUND_MS));
    info = json_object_get(g_dlq[0], "KinesisBatchInfo");
    assert_non_null(info);
    assert_int_equal(json_integer_value(json_object_get(info, "batchSize")), 2);
    assert_string_equal(json_string_value(json_object_get(info, "streamArn")),
                        "arn:aws:kinesis:us-east-2:000000000000:stream/orders");
    assert_string_equal(json_string_value(json_object_get(info, "startSequenceNumber")),
                        item_id(json_array_get(json_object_get(g_calls[0], "Records"), 0)));
    assert_string_equal(json_string_value(json_object_get(info, "endSequenceNumber")),
                        item_id(json_array_get(json_object_get(g_calls[0], "Records"), 1)));
}

static void test_function_not_found(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    (void)state;
    o.on_failure = "dlq";
    map_q("jobs", &o);
    assert_int_equal(faas_unregister(g_rt, "proc"), 0);
    emit_q("jobs", "x");
    assert_true(tu_run_until(g_base, &g_ndlq, 1, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 0);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(g_dlq[0], "requestContext"), "condition")),
                        "FunctionNotFound");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(g_dlq[0],
                                                                        "responseContext"),
                                                        "statusCode")),
                     404);
    assert_int_equal(g_log_failures, 1);
}

/* ---- unmap and teardown ---- */

static void test_unmap_with_queued_records(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    int id;
    (void)state;
    o.batch_size = 10;
    o.batch_window_ms = 10000;
    o.on_failure = "dlq";
    id = map_q("jobs", &o);
    emit_q("jobs", "a");
    emit_q("jobs", "b");
    emit_q("jobs", "c");
    assert_int_equal(faas_unmap(g_rt, id), 0);
    assert_true(tu_run_until(g_base, &g_ndlq, 1, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 0);
    assert_int_equal(g_ndlq, 1);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(g_dlq[0], "requestContext"), "condition")),
                        "MappingRemoved");
    assert_string_equal(call_tags(g_dlq, 0), "a,b,c");
    advance_poll(20000);
    settle();
    assert_int_equal(g_ncalls, 0);
}

static void test_unmap_with_retry_waiting(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    int id;
    (void)state;
    o.on_failure = "dlq";
    id = map_q("jobs", &o);
    g_mode = M_FAIL;
    emit_q("jobs", "a");
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    settle();
    assert_int_equal(faas_unmap(g_rt, id), 0);
    assert_true(tu_run_until(g_base, &g_ndlq, 1, BOUND_MS));
    settle();
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(g_dlq[0], "requestContext"), "approximateInvokeCount")),
                     1);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(g_dlq[0], "requestContext"), "condition")),
                        "MappingRemoved");
    advance_poll(120000);
    settle();
    assert_int_equal(g_ncalls, 1);
}

static void test_unmap_with_batch_in_flight(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    int id;
    (void)state;
    o.on_failure = "dlq";
    id = faas_map(g_rt, "stream:orders", "slow", &o);
    assert_true(id >= 0);
    emit_s("A1");
    emit_s("A2"); /* waits behind A1 */
    assert_true(run_until_locked(&g_started, 1));
    assert_int_equal(faas_unmap(g_rt, id), 0);
    assert_true(tu_run_until(g_base, &g_ndlq, 1, BOUND_MS));
    assert_string_equal(call_tags(g_dlq, 0), "A2");
    gate_open();
    assert_true(tu_run_until(g_base, &g_done, 1, BOUND_MS));
    settle();
    /* the in-flight result is dropped: no retry, no destination */
    assert_int_equal(locked_int(&g_started), 1);
    assert_int_equal(g_ndlq, 1);
}

static void test_free_with_everything_in_flight(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT, q = FAAS_MAP_OPTS_INIT;
    (void)state;
    o.on_failure = "dlq";
    o.parallelization = 2;
    assert_true(faas_map(g_rt, "stream:orders", "slow", &o) >= 0);
    q.on_failure = "dlq";
    q.batch_size = 5;
    q.batch_window_ms = 60000;
    assert_true(faas_map(g_rt, "queue:jobs", "proc", &q) >= 0);
    assert_true(faas_map(g_rt, "queue:fails", "proc", &q) >= 0);
    emit_s("A1");
    emit_s("A2");
    emit_s("B1");
    emit_s("B2");
    emit_q("jobs", "queued");
    assert_true(run_until_locked(&g_started, 2));
    g_mode = M_FAIL;
    q.batch_window_ms = 0;
    assert_true(faas_map(g_rt, "queue:now", "proc", &q) >= 0);
    emit_q("now", "fails");
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS)); /* now waits for a retry */
    faas_runtime_free(g_rt); /* the gate stays shut: cancellation ends "slow" */
    g_rt = NULL;
    assert_int_equal(g_ndlq, 0); /* nothing to destinations while closing */
    assert_int_equal(locked_int(&g_finished), 2);
}

static int g_free_in_log;

static void log_frees(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind == FAAS_LOG_ASYNC && strcmp(rec->action, "failure") == 0 &&
        strcmp(rec->function, "proc") == 0 && g_rt) {
        g_free_in_log++;
        faas_runtime_free(g_rt); /* deferred: we are inside the loop */
    }
}

static void test_free_from_a_failure_log(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    int i, durable = g_rt->durable != NULL;
    (void)state;
    g_rt->opts.log = log_frees;
    o.max_retries = 0;
    o.on_failure = "dlq";
    map_q("jobs", &o);
    g_mode = M_FAIL;
    for (i = 0; i < 3; i++)
        emit_q("jobs", "x");
    assert_true(tu_run_until(g_base, &g_free_in_log, 1, BOUND_MS));
    /* the runtime is gone: teardown must not free it again */
    g_rt = NULL;
    tu_run_for(g_base, 20);
    /* one exhausted batch, then the two still queued, dropped (logged, no
     * destination) when the deferred free ran; on a durable engine they
     * stay kept for the next start, quietly */
    assert_int_equal(g_free_in_log, durable ? 1 : 3);
    assert_int_equal(g_ncalls, 1);
    assert_int_equal(g_ndlq, 0);
}

/* A complete SQS record, kept as given. */
static json_t *sqs_record(const char *body)
{
    return json_pack("{s:s, s:s, s:s}", "eventSource", "aws:sqs", "messageId", body, "body",
                     body);
}

/* A mapping's records are bounded in bytes: the record that would cross
 * the bound is refused for that mapping (FAAS_ETHROTTLED when no other took
 * it), with a log record; the bytes return to 0 once the batch ran. */
/* The bound counts the record the mapping holds, as shaped: S3 parts of
 * a few bytes become a record of several hundred. */
static void test_backlog_bytes_shaped(void **state)
{
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    json_t *parts = json_pack("{s:s, s:s}", "bucket", "b", "key", "k");
    struct faas_mapping_stats st;
    int id;

    (void)state;
    mo.batch_size = 100;
    mo.batch_window_ms = 10000;
    id = faas_map(g_rt, "s3:ObjectCreated:*", "proc", &mo);
    assert_true(id >= 0);
    assert_int_equal(faas_emit(g_rt, "s3:ObjectCreated:Put", parts), 1);
    faas_batcher_stats_get(faas_mapping_find(g_rt, id), 0, &st);
    assert_int_equal(st.backlog, 1);
    assert_true(st.bytes > 5 * faas_json_bytes(parts));
    assert_int_equal(faas_unmap(g_rt, id), 0);
    json_decref(parts);
}

static void test_backlog_bytes_bound(void **state)
{
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    json_t *r[3] = { sqs_record("a1"), sqs_record("a2"), sqs_record("a3") };
    /* a complete record is held as given: its compact JSON is the count */
    size_t b = faas_json_bytes(r[0]);
    struct faas_mapping_stats st;
    int id, i;

    (void)state;
    mo.batch_size = 100;
    mo.batch_window_ms = 10000;
    faas_mapping_max_bytes = 2 * b + b / 2;
    id = faas_map(g_rt, "queue:jobs", "proc", &mo);
    faas_mapping_max_bytes = FAAS_MAPPING_MAX_BYTES;
    assert_true(id >= 0);
    assert_int_equal(faas_emit(g_rt, "queue:jobs", r[0]), 1);
    assert_int_equal(faas_emit(g_rt, "queue:jobs", r[1]), 1);
    assert_int_equal(g_log_refused, 0);
    assert_int_equal(faas_emit(g_rt, "queue:jobs", r[2]), FAAS_ETHROTTLED);
    assert_int_equal(g_log_refused, 1);
    assert_string_equal(g_refused_fn, "proc");
    faas_batcher_stats_get(faas_mapping_find(g_rt, id), 0, &st);
    assert_int_equal(st.bytes, 2 * b);
    assert_int_equal(st.backlog, 2);
    assert_int_equal(st.records, 2);

    advance_poll(10000);
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    assert_string_equal(call_tags(g_calls, 0), "a1,a2");
    faas_batcher_stats_get(faas_mapping_find(g_rt, id), 0, &st);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.backlog, 0);
    /* room again */
    assert_int_equal(faas_emit(g_rt, "queue:jobs", r[2]), 1);
    faas_batcher_stats_get(faas_mapping_find(g_rt, id), 0, &st);
    assert_int_equal(st.bytes, b);
    for (i = 0; i < 3; i++)
        json_decref(r[i]);
}

static void test_bad_options(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    (void)state;
    o.batch_size = 10001;
    assert_true(faas_map(g_rt, "queue:jobs", "proc", &o) < 0);
    o.batch_size = 10000;
    o.parallelization = 11;
    assert_true(faas_map(g_rt, "queue:jobs", "proc", &o) < 0);
    o.parallelization = 10;
    o.max_retries = -2;
    assert_true(faas_map(g_rt, "queue:jobs", "proc", &o) < 0);
    o.max_retries = -1;
    assert_true(faas_map(g_rt, "queue:jobs", "proc", &o) >= 0);
}

/* ---- review regressions ---- */

/* Each allocation of a faas_map of a queue mapping with on_failure and
 * partition_key_path fails in turn: each attempt returns FAAS_ENOMEM and
 * leaves nothing behind, until one allocates everything and maps. */
static void test_map_out_of_memory(void **state)
{
    struct faas_map_opts o = FAAS_MAP_OPTS_INIT;
    int rc = FAAS_ENOMEM, id;
    long n;
    (void)state;
    o.on_failure = "dlq";
    o.partition_key_path = "group";
    for (n = 0; n < 64 && rc == FAAS_ENOMEM; n++) {
        atomic_store(&faas_alloc_fail_countdown, n);
        rc = faas_map(g_rt, "queue:jobs", "proc", &o);
        assert_true(atomic_load(&faas_alloc_fail_countdown) < 0 || rc >= 0);
        atomic_store(&faas_alloc_fail_countdown, -1);
        assert_true(rc == FAAS_ENOMEM || rc >= 0);
    }
    assert_true(rc >= 0);
    assert_true(n >= 4); /* the mapping, on_failure, the key path, the buckets */
    id = rc;
    /* the one that mapped works; the failed attempts left no mapping */
    emit_q("jobs", "m1");
    assert_true(tu_run_until(g_base, &g_ncalls, 1, BOUND_MS));
    settle();
    assert_int_equal(g_ncalls, 1);
    assert_string_equal(call_tags(g_calls, 0), "m1");
    assert_int_equal(faas_unmap(g_rt, id), 0);
    {
        json_t *parts = json_pack("{s:s}", "body", "m2");
        assert_int_equal(faas_emit(g_rt, "queue:jobs", parts), 0);
        json_decref(parts);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batch_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_size_default_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backlog_bytes_shaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backlog_bytes_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ordering_parallel_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_key_one_batch_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unordered_parallel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dynamodb_default_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_stream_resumes_from_first_failed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_partial_bogus_identifier_fails_all, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_items_ignored_without_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bisect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_retries_and_destination_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_max_retries_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_record_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_age_before_first_send, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_destination_batch_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_function_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmap_with_queued_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmap_with_retry_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmap_with_batch_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_everything_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_a_failure_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_out_of_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

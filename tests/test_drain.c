/*
 * test_drain.c - faas_drain: new work refused with FAAS_EDRAINING
 * (faas_invoke, faas_invoke_sync, faas_invoke_async, faas_emit, with the
 * refusal logged), batch windows flushed at once (records waiting in a 10 s
 * window are delivered, not lost), queued and running invocations and async
 * events (a retry, a destination) finish, the callback runs exactly once
 * from the loop (never inside faas_drain): 0 when nothing is left, or
 * FAAS_ETIMEDOUT with what remains at the deadline, or FAAS_ECANCELED from
 * faas_runtime_free.
 *
 * The system clock: the drain's deadline and the batch window are libevent
 * timers. "gated" is THREAD and waits on a gate the test opens (or until its
 * invocation is cancelled); the others are INLINE.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durable.h" /* a fleet's queue (Redis) differs by design */
#include "faas_int.h"
#include "testutil.h"

#define BOUND_MS 5000u

static struct event_base *g_base;
static struct faas_runtime *g_rt;

/* ---- the drain's callback ---- */

static int g_drains;
static int g_drain_rc;
static uint64_t g_drain_remaining;
static int g_results_at_drain; /* g_results when the drain called back */
static int g_free_in_drain;    /* the callback frees the runtime */

static int g_results; /* results of invocations, any function */
static int g_result_status[16];

static void on_drain(int rc, uint64_t remaining, void *arg)
{
    (void)arg;
    g_drains++;
    g_drain_rc = rc;
    g_drain_remaining = remaining;
    g_results_at_drain = g_results;
    if (g_free_in_drain) {
        faas_runtime_free(g_rt);
        g_rt = NULL;
    }
}

static void on_result(const struct faas_result *res, void *arg)
{
    (void)arg;
    if (g_results < 16)
        g_result_status[g_results] = faas_result_status(res);
    g_results++;
}

/* ---- log ---- */

static int g_refused;      /* FAAS_LOG_WARNING "record-refused" */
static char g_refused_line[256];
static int g_skipped_fire; /* FAAS_LOG_WARNING "drain" */

static void on_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind != FAAS_LOG_WARNING)
        return;
    if (strcmp(rec->action, "record-refused") == 0) {
        g_refused++;
        snprintf(g_refused_line, sizeof g_refused_line, "%s", rec->line ? rec->line : "");
    } else if (strcmp(rec->action, "drain") == 0) {
        g_skipped_fire++;
    }
}

/* ---- functions ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static int g_open;    /* guarded by g_mu */
static int g_started; /* atomic: gated handlers that began */

static int gated(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    __atomic_add_fetch(&g_started, 1, __ATOMIC_SEQ_CST);
    /* Returns when opened, or cancelled (faas_runtime_free). */
    tu_gate_wait(&g_mu, &g_cv, &g_open, ctx, 3 * BOUND_MS);
    return 0;
}

static int g_batches;
static int g_batch_records;

static int batch_fn(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)result;
    g_batches++;
    g_batch_records += (int)json_array_size(json_object_get(event, "Records"));
    return 0;
}

static int g_flaky_calls;
static int g_dest_calls;

/* Fails its first attempt, succeeds on the retry. */
static int flaky(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    if (g_flaky_calls++ == 0)
        return faas_ctx_fail(ctx, "Flaky", "first attempt");
    return 0;
}

static int dest(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    g_dest_calls++;
    return 0;
}

static int g_ticks;

static int tick(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    g_ticks++;
    return 0;
}

static int setup(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts go = FAAS_FUNCTION_OPTS_INIT;
    struct faas_function_opts io = FAAS_FUNCTION_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;

    (void)state;
    g_drains = g_results = g_refused = g_skipped_fire = 0;
    g_drain_rc = 1;
    g_drain_remaining = 12345;
    g_results_at_drain = -1;
    g_free_in_drain = 0;
    g_open = 0;
    g_started = 0;
    g_batches = g_batch_records = 0;
    g_flaky_calls = g_dest_calls = g_ticks = 0;
    g_refused_line[0] = '\0';
    tu_cond_init_monotonic(&g_cv);

    g_base = event_base_new();
    assert_non_null(g_base);
    ro.log = on_log;
    tu_durable_apply(&ro);
    assert_int_equal(faas_runtime_new(&g_rt, g_base, &ro), 0);

    go.isolation = FAAS_ISOLATION_THREAD;
    go.timeout_ms = 0;
    go.max_concurrency = 1;
    go.max_queue = 8;
    assert_int_equal(faas_register(g_rt, "gated", gated, &go), 0);
    io.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(g_rt, "batch", batch_fn, &io), 0);
    assert_int_equal(faas_register(g_rt, "dest", dest, &io), 0);
    assert_int_equal(faas_register(g_rt, "tick", tick, &io), 0);
    fo.isolation = FAAS_ISOLATION_INLINE;
    ao.max_retries = 2;
    ao.retry_base_ms = 40;
    ao.on_success = "dest";
    fo.async = &ao;
    assert_int_equal(faas_register(g_rt, "flaky", flaky, &fo), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_gate_open(&g_mu, &g_cv, &g_open);
    tu_rt_free(&g_rt, &g_base);
    pthread_cond_destroy(&g_cv);
    return 0;
}

static void test_args(void **state)
{
    (void)state;
    assert_int_equal(faas_drain(NULL, 0, on_drain, NULL), FAAS_EINVAL);
    assert_int_equal(faas_drain(g_rt, 0, NULL, NULL), FAAS_EINVAL);
    assert_int_equal(faas_drain(g_rt, 0, on_drain, NULL), 0);
    assert_int_equal(faas_drain(g_rt, 0, on_drain, NULL), FAAS_EBUSY);
    assert_true(tu_run_until(g_base, &g_drains, 1, BOUND_MS));
    assert_int_equal(faas_drain(g_rt, 0, on_drain, NULL), FAAS_EBUSY);
}

/* Nothing pending: the callback comes on the next turn of the loop. */
static void test_nothing_pending(void **state)
{
    (void)state;
    assert_int_equal(faas_drain(g_rt, 1000, on_drain, NULL), 0);
    assert_int_equal(g_drains, 0); /* never inside the call */
    event_base_loop(g_base, EVLOOP_NONBLOCK);
    assert_int_equal(g_drains, 1);
    assert_int_equal(g_drain_rc, 0);
    assert_int_equal(g_drain_remaining, 0);
    /* Once: the deadline passing later changes nothing. */
    tu_run_for(g_base, 1100);
    assert_int_equal(g_drains, 1);
}

/* Every entry point that makes new work refuses it; the refusal of a record
 * is logged with its reason. */
static void test_new_work_refused(void **state)
{
    struct faas_result *res = NULL;
    char id[FAAS_REQUEST_ID_SIZE];
    json_t *rec = json_pack("{s:s}", "body", "x");

    (void)state;
    assert_true(faas_map(g_rt, "queue:jobs", "batch", NULL) >= 0);
    assert_int_equal(faas_drain(g_rt, 0, on_drain, NULL), 0);
    assert_int_equal(faas_invoke(g_rt, "batch", NULL, NULL, on_result, NULL), FAAS_EDRAINING);
    assert_int_equal(faas_invoke_async(g_rt, "flaky", NULL, NULL, id), FAAS_EDRAINING);
    assert_int_equal(faas_invoke_sync(g_rt, "batch", NULL, NULL, &res), FAAS_EDRAINING);
    assert_null(res);
    assert_int_equal(faas_emit(g_rt, "queue:jobs", rec), FAAS_EDRAINING);
    assert_int_equal(g_refused, 1);
    assert_non_null(strstr(g_refused_line, "draining"));
    assert_non_null(strstr(g_refused_line, "queue:jobs"));
    json_decref(rec);
    assert_true(tu_run_until(g_base, &g_drains, 1, BOUND_MS));
    assert_int_equal(g_drain_rc, 0);
    assert_int_equal(g_results, 0);
    assert_int_equal(g_batches, 0);
}

/* Nine records for a mapping with a 10 s batch window; then, after
 * `settle_ms` of the loop (0: none), a drain, and its answer well before the
 * window would have closed, with every record in a batch. Returns the
 * number of batches they took. */
static int drain_a_window(unsigned settle_ms)
{
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    uint64_t start;
    int i;

    mo.batch_size = 100;
    mo.batch_window_ms = 10000;
    assert_true(faas_map(g_rt, "queue:jobs", "batch", &mo) >= 0);
    for (i = 0; i < 9; i++) {
        json_t *rec = json_pack("{s:i}", "body", i);
        assert_int_equal(faas_emit(g_rt, "queue:jobs", rec), 1);
        json_decref(rec);
    }
    if (settle_ms) {
        tu_run_for(g_base, settle_ms);
        assert_int_equal(g_batches, 0); /* the window holds them */
    }
    start = tu_now_ms();
    assert_int_equal(faas_drain(g_rt, 0, on_drain, NULL), 0);
    assert_true(tu_run_until(g_base, &g_drains, 1, BOUND_MS));
    assert_true(tu_now_ms() - start < 5000); /* well before the window */
    assert_int_equal(g_batch_records, 9);
    assert_int_equal(g_drain_rc, 0);
    assert_int_equal(g_drain_remaining, 0);
    return g_batches;
}

/* Records waiting in a 10 s batch window are delivered at once, all of
 * them, and the drain ends when their batch has. */
static void test_batch_window_flushed(void **state)
{
    (void)state;
    assert_int_equal(drain_a_window(50), 1);
}

/* The same, with the drain called before the records are even kept by a
 * durable engine (their writes still queued): they must not wait for the
 * window once they are. Kept in more than one commit, they may leave in
 * more than one batch. */
static void test_batch_window_drain_at_once(void **state)
{
    int batches;

    (void)state;
    batches = drain_a_window(0);
    if (g_rt->durable)
        assert_true(batches >= 1);
    else
        assert_int_equal(batches, 1);
}

static int g_fired_before;

/* Queued and running invocations finish; the callback comes after the
 * last result. */
static void test_queued_invocations_finish(void **state)
{
    int i;

    (void)state;
    for (i = 0; i < 3; i++)
        assert_int_equal(faas_invoke(g_rt, "gated", NULL, NULL, on_result, NULL), 0);
    assert_true(tu_run_until_atomic(g_base, &g_started, 1, BOUND_MS));
    assert_int_equal(faas_drain(g_rt, 0, on_drain, NULL), 0);
    tu_run_for(g_base, 100);
    g_fired_before = g_drains;
    assert_int_equal(g_fired_before, 0); /* one running, two waiting */
    tu_gate_open(&g_mu, &g_cv, &g_open);
    assert_true(tu_run_until(g_base, &g_drains, 1, BOUND_MS));
    assert_int_equal(g_results, 3);
    assert_int_equal(g_results_at_drain, 3);
    for (i = 0; i < 3; i++)
        assert_int_equal(g_result_status[i], 0);
    assert_int_equal(g_drain_rc, 0);
    assert_int_equal(g_drain_remaining, 0);
    tu_run_for(g_base, 50);
    assert_int_equal(g_drains, 1);
}

/* A handler that hangs past the deadline: FAAS_ETIMEDOUT, with the running
 * invocation and the async event waiting behind it left. */
static void on_accepted(int rc, const char *request_id, void *arg)
{
    (void)request_id;
    assert_int_equal(rc, 0);
    ++*(int *)arg;
}

static void test_deadline(void **state)
{
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    int accepted = 0;

    (void)state;
    io.on_accepted = on_accepted;
    io.accepted_arg = &accepted;
    assert_int_equal(faas_invoke(g_rt, "gated", NULL, NULL, on_result, NULL), 0);
    assert_int_equal(faas_invoke_async(g_rt, "gated", NULL, &io, NULL), 0);
    assert_true(tu_run_until_atomic(g_base, &g_started, 1, BOUND_MS));
    assert_true(tu_run_until(g_base, &accepted, 1, BOUND_MS));
    if (faas_durable_shared(g_rt->durable)) {
        /* A fleet's queue: the accepted event counts once this host took
         * it from Redis. */
        struct faas_fn *fn = faas_fn_lookup(g_rt, "gated");
        uint64_t end = tu_now_ms() + BOUND_MS;
        while (faas_async_pending(fn) == 0 && tu_now_ms() < end)
            event_base_loop(g_base, EVLOOP_ONCE);
        assert_int_equal(faas_async_pending(fn), 1);
    }
    assert_int_equal(faas_drain(g_rt, 150, on_drain, NULL), 0);
    assert_true(tu_run_until(g_base, &g_drains, 1, BOUND_MS));
    assert_int_equal(g_drain_rc, FAAS_ETIMEDOUT);
    assert_int_equal(g_drain_remaining, 2);
    assert_int_equal(g_results, 0);
    /* The work goes on after the deadline; the callback does not come
     * again. */
    tu_gate_open(&g_mu, &g_cv, &g_open);
    assert_true(tu_run_until(g_base, &g_results, 1, BOUND_MS));
    assert_true(tu_run_until_atomic(g_base, &g_started, 2, BOUND_MS));
    tu_run_for(g_base, 50);
    assert_int_equal(g_drains, 1);
}

/* faas_runtime_free during a drain: the callback runs once, inside the
 * free, with FAAS_ECANCELED and what was left. */
static void test_free_during_drain(void **state)
{
    (void)state;
    assert_int_equal(faas_invoke(g_rt, "gated", NULL, NULL, on_result, NULL), 0);
    assert_int_equal(faas_invoke(g_rt, "gated", NULL, NULL, on_result, NULL), 0);
    assert_true(tu_run_until_atomic(g_base, &g_started, 1, BOUND_MS));
    assert_int_equal(faas_drain(g_rt, 0, on_drain, NULL), 0);
    tu_run_for(g_base, 30);
    assert_int_equal(g_drains, 0);
    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_int_equal(g_drains, 1);
    assert_int_equal(g_drain_rc, FAAS_ECANCELED);
    assert_int_equal(g_drain_remaining, 2);
    assert_int_equal(g_results, 2); /* both cancelled */
    assert_int_equal(g_result_status[0], FAAS_ECANCELED);
    assert_int_equal(g_result_status[1], FAAS_ECANCELED);
}

/* The callback may free the runtime: it runs once, and not again. */
static void test_free_inside_callback(void **state)
{
    (void)state;
    g_free_in_drain = 1;
    assert_int_equal(faas_drain(g_rt, 0, on_drain, NULL), 0);
    assert_true(tu_run_until(g_base, &g_drains, 1, BOUND_MS));
    assert_null(g_rt);
    tu_run_for(g_base, 20);
    assert_int_equal(g_drains, 1);
    assert_int_equal(g_drain_rc, 0);
}

static int count_kept(const struct faas_durable_event *ev, void *arg)
{
    (void)ev;
    ++*(int *)arg;
    return 0;
}

/* An async event whose first attempt failed is retried during the drain,
 * with its backoff, and its on_success destination (an event the runtime
 * makes) is not refused: the drain waits for both. */
static void test_async_retry_and_destination(void **state)
{
    char id[FAAS_REQUEST_ID_SIZE];

    (void)state;
    assert_int_equal(faas_invoke_async(g_rt, "flaky", NULL, NULL, id), 0);
    assert_true(tu_run_until(g_base, &g_flaky_calls, 1, BOUND_MS));
    assert_int_equal(faas_drain(g_rt, 0, on_drain, NULL), 0);
    assert_true(tu_run_until(g_base, &g_drains, 1, BOUND_MS));
    assert_int_equal(g_drain_rc, 0);
    if (faas_durable_shared(g_rt->durable)) {
        /* A fleet's queue: the retry waits in Redis for any host, and a
         * draining host takes no more; the event is kept, not lost. */
        int kept = 0;
        assert_int_equal(g_flaky_calls, 1);
        assert_int_equal(g_dest_calls, 0);
        assert_int_equal(faas_durable_events_load(g_rt->durable, count_kept, &kept), 0);
        assert_int_equal(kept, 1);
        return;
    }
    assert_int_equal(g_flaky_calls, 2);
    assert_int_equal(g_dest_calls, 1);
}

/* A schedule that comes due during a drain does not fire (a runtime with a
 * fake clock: the fire is looked for with faas_schedule_poll). */
static void test_schedule_not_fired(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts io = FAAS_FUNCTION_OPTS_INIT;
    struct tu_clock clock = { 0 };
    struct faas_runtime *rt;

    (void)state;
    ro.log = on_log;
    ro.clock.now_ns = tu_clock_now;
    ro.clock.wall_ns = tu_clock_wall;
    ro.clock.arg = &clock;
    assert_int_equal(faas_runtime_new(&rt, g_base, &ro), 0);
    io.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(rt, "tick", tick, &io), 0);
    assert_true(faas_map(rt, "schedule:rate(1 minute)", "tick", NULL) >= 0);
    assert_int_equal(faas_drain(rt, 0, on_drain, NULL), 0);
    tu_clock_advance(&clock, 61ull * 1000000000ull);
    faas_schedule_poll(rt);
    assert_int_equal(g_skipped_fire, 1);
    assert_true(tu_run_until(g_base, &g_drains, 1, BOUND_MS));
    assert_int_equal(g_ticks, 0);
    assert_int_equal(g_drain_rc, 0);
    faas_runtime_free(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_work_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_window_flushed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_window_drain_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queued_invocations_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_during_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_retry_and_destination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule_not_fired, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

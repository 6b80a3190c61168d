/*
 * test_timer.c - deadlines: THREAD timeouts (the reply at the deadline, the
 * cancel flag, the instance busy until the handler returns, one callback),
 * per-call timeouts that only shorten, timeout 0 = none, INLINE overruns
 * measured on the runtime clock, init timeouts, faas_ctx_remaining_ms.
 *
 * Real-clock tests measure wall time with generous upper bounds; fake-clock
 * tests advance struct tu_clock from inside the handler.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "faas_int.h" /* struct faas_timer: the timer itself */
#include "testutil.h"

#define BOUND_MS 8000u
#define GATE_MS 8000u
#define SPIN_MS 5000u
#define NREC 8
/* the deadline is 100 ms after the handler started, which is after
 * faas_invoke was called: the result cannot come sooner */
#define TIMEOUT_LOW_US 100000u
#define TIMEOUT_HIGH_US 2000000u

static enum faas_isolation iso_inline = FAAS_ISOLATION_INLINE;
static enum faas_isolation iso_thread = FAAS_ISOLATION_THREAD;

struct rec {
    int calls;
    int status;
    int cold;
    uint64_t duration_us;
    json_t *payload;
    char etype[64];
    char emsg[128];
};

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static struct tu_clock g_clk;
static struct rec g_rec[NREC];
static int g_cb_total;

/* handler side (atomics) */
static int g_started;
static int g_returned;
static int g_saw_cancel;
static int g_init_calls;
static int g_init_returned;
static int g_init_slow;
static int g_fini_calls;
static int64_t g_remaining;
static int g_cancelled_seen;

/* gate */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static int g_open; /* guarded by g_mu */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void gate_open(void)
{
    tu_gate_open(&g_mu, &g_cv, &g_open);
}

/* 1: opened, 2: ctx cancelled, 0: the bound passed. */
static int gate_wait(const struct faas_ctx *ctx, unsigned bound_ms)
{
    return tu_gate_wait(&g_mu, &g_cv, &g_open, ctx, bound_ms);
}

static int pred_idle(const void *arg)
{
    struct faas_stats st;
    memset(&st, 0, sizeof st);
    return faas_stats(g_rt, (const char *)arg, &st) == 0 && st.concurrency == 0;
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
    r->cold = faas_result_cold_start(res);
    r->duration_us = faas_result_duration_us(res);
    json_decref(r->payload);
    r->payload = json_incref(faas_result_payload(res));
    s = faas_result_error_type(res);
    snprintf(r->etype, sizeof r->etype, "%s", s ? s : "");
    s = faas_result_error_message(res);
    snprintf(r->emsg, sizeof r->emsg, "%s", s ? s : "");
    g_cb_total++;
}

/*
 * Spins until cancelled (bounded); then, if the event says "hold", waits for
 * the gate before returning a (late, discarded) result.
 */
static int spin_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    uint64_t end = now_us() + (uint64_t)SPIN_MS * 1000u;
    int cancelled = 0;
    AINC(&g_started);
    while (now_us() < end) {
        if (faas_ctx_cancelled(ctx)) {
            cancelled = 1;
            break;
        }
        sched_yield();
    }
    if (cancelled)
        AINC(&g_saw_cancel);
    if (json_is_true(json_object_get(event, "hold")))
        gate_wait(NULL, GATE_MS);
    *result = json_string("late");
    AINC(&g_returned);
    return 0;
}

/* Records remaining_ms and the cancel flag, waits for the gate (or cancel). */
static int wait_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    int r;
    (void)event;
    ASTORE(&g_remaining, faas_ctx_remaining_ms(ctx));
    ASTORE(&g_cancelled_seen, faas_ctx_cancelled(ctx));
    AINC(&g_started);
    r = gate_wait(ctx, GATE_MS);
    *result = json_integer(r);
    AINC(&g_returned);
    return 0;
}

/* Advances the fake clock by event.advance_ms, reading remaining_ms around it. */
static int clock_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    int64_t r1, r2;
    json_int_t adv = json_integer_value(json_object_get(event, "advance_ms"));
    r1 = faas_ctx_remaining_ms(ctx);
    tu_clock_advance(&g_clk, (uint64_t)adv * 1000000u);
    r2 = faas_ctx_remaining_ms(ctx);
    *result = json_pack("{s:I,s:I}", "r1", (json_int_t)r1, "r2", (json_int_t)r2);
    return 0;
}

static int echo_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_deep_copy(event);
    return 0;
}

/* Slow (blocked on the gate, ignoring cancellation) while g_init_slow. */
static int init_fn(struct faas_ctx *ctx, void **state)
{
    int *s;
    (void)ctx;
    AINC(&g_init_calls);
    if (ALOAD(&g_init_slow)) {
        gate_wait(NULL, GATE_MS);
        AINC(&g_init_returned);
        return 5;
    }
    s = malloc(sizeof *s);
    if (s == NULL)
        return 1;
    *s = 1;
    *state = s;
    AINC(&g_init_returned);
    return 0;
}

static void fini_fn(void *state)
{
    AINC(&g_fini_calls);
    free(state);
}

static int setup(void **state)
{
    (void)state;
    memset(g_rec, 0, sizeof g_rec);
    g_cb_total = 0;
    ASTORE(&g_clk.ns, (uint64_t)1000000000u);
    ASTORE(&g_started, 0);
    ASTORE(&g_returned, 0);
    ASTORE(&g_saw_cancel, 0);
    ASTORE(&g_init_calls, 0);
    ASTORE(&g_init_returned, 0);
    ASTORE(&g_init_slow, 0);
    ASTORE(&g_fini_calls, 0);
    ASTORE(&g_remaining, (int64_t)0);
    ASTORE(&g_cancelled_seen, -1);
    pthread_mutex_lock(&g_mu);
    g_open = 0;
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

static void start_rt(int fake_clock)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    ro.thread_workers = 4;
    ro.zygote = 0;
    if (fake_clock) {
        ro.clock.now_ns = tu_clock_now;
        ro.clock.wall_ns = tu_clock_wall;
        ro.clock.arg = &g_clk;
    }
    assert_int_equal(faas_runtime_new(&g_rt, g_base, &ro), 0);
    assert_non_null(g_rt);
}

static struct faas_function_opts fopts(enum faas_isolation iso, uint32_t timeout_ms)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    fo.isolation = iso;
    fo.timeout_ms = timeout_ms;
    return fo;
}

static enum faas_isolation iso_of(void **state)
{
    return *(const enum faas_isolation *)*state;
}

/* Invokes the spin handler; returns the wall time to the result in us. */
static uint64_t invoke_timed(const char *name, int i, int hold, uint32_t call_timeout_ms)
{
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    json_t *ev = json_pack("{s:b}", "hold", hold);
    uint64_t t0;
    io.timeout_ms = call_timeout_ms;
    t0 = now_us();
    assert_int_equal(faas_invoke(g_rt, name, ev, &io, on_result, &g_rec[i]), 0);
    json_decref(ev);
    assert_true(tu_run_until(g_base, &g_rec[i].calls, 1, BOUND_MS));
    return now_us() - t0;
}

static void assert_timed_out(int i, const char *msg)
{
    assert_int_equal(g_rec[i].calls, 1);
    assert_int_equal(g_rec[i].status, FAAS_ETIMEDOUT);
    assert_string_equal(g_rec[i].etype, "Sandbox.Timedout");
    assert_string_equal(g_rec[i].emsg, msg);
    assert_non_null(g_rec[i].payload);
    assert_string_equal(json_string_value(json_object_get(g_rec[i].payload, "errorType")),
                        "Sandbox.Timedout");
    assert_string_equal(json_string_value(json_object_get(g_rec[i].payload, "errorMessage")),
                        msg);
}

/* ---- tests ---- */

static void test_thread_timeout(void **state)
{
    struct faas_function_opts fo = fopts(FAAS_ISOLATION_THREAD, 100);
    struct faas_stats st;
    uint64_t el;
    (void)state;
    start_rt(0);
    assert_int_equal(faas_register(g_rt, "to", spin_handler, &fo), 0);

    el = invoke_timed("to", 0, 1, 0);
    assert_timed_out(0, "Task timed out after 0.10 seconds");
    assert_true(el >= TIMEOUT_LOW_US);
    assert_true(el < TIMEOUT_HIGH_US);

    /* the handler sees the flag; it has not returned: the instance is busy */
    assert_true(tu_run_until_atomic(g_base, &g_saw_cancel, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_returned), 0);
    st = get_stats("to");
    assert_int_equal(st.concurrency, 1);
    assert_int_equal(st.instances, 1);
    assert_int_equal(st.invocations, 1);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.errors, 1);

    /* let it return: its late result is discarded */
    gate_open();
    assert_true(tu_run_until_atomic(g_base, &g_returned, 1, BOUND_MS));
    assert_true(tu_run_until_pred(g_base, pred_idle, "to", BOUND_MS));
    tu_run_for(g_base, 50);
    assert_int_equal(g_rec[0].calls, 1);
    assert_int_equal(g_rec[0].status, FAAS_ETIMEDOUT);
    assert_int_equal(g_cb_total, 1);
    st = get_stats("to");
    assert_int_equal(st.invocations, 1);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.concurrency, 0);
}

static void test_call_timeout_cannot_lengthen(void **state)
{
    struct faas_function_opts fo = fopts(FAAS_ISOLATION_THREAD, 100);
    uint64_t el;
    (void)state;
    start_rt(0);
    assert_int_equal(faas_register(g_rt, "short", spin_handler, &fo), 0);
    el = invoke_timed("short", 0, 0, 5000);
    assert_timed_out(0, "Task timed out after 0.10 seconds");
    assert_true(el >= TIMEOUT_LOW_US);
    assert_true(el < TIMEOUT_HIGH_US);
    assert_true(tu_run_until_atomic(g_base, &g_returned, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_saw_cancel), 1);
    tu_run_for(g_base, 20);
    assert_int_equal(g_cb_total, 1);
}

static void test_call_timeout_shortens(void **state)
{
    struct faas_function_opts fo = fopts(FAAS_ISOLATION_THREAD, 3000);
    uint64_t el;
    (void)state;
    start_rt(0);
    assert_int_equal(faas_register(g_rt, "long", spin_handler, &fo), 0);
    el = invoke_timed("long", 0, 0, 100);
    assert_timed_out(0, "Task timed out after 0.10 seconds");
    assert_true(el >= TIMEOUT_LOW_US);
    assert_true(el < TIMEOUT_HIGH_US);
    assert_true(tu_run_until_atomic(g_base, &g_returned, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_saw_cancel), 1);

    /* another value, another message: the function's own timeout is intact */
    el = invoke_timed("long", 1, 0, 250);
    assert_timed_out(1, "Task timed out after 0.25 seconds");
    assert_true(el >= 250000u);
    assert_true(el < TIMEOUT_HIGH_US);
    assert_true(tu_run_until_atomic(g_base, &g_returned, 2, BOUND_MS));
    tu_run_for(g_base, 20);
    assert_int_equal(g_cb_total, 2);
}

static void test_timeout_zero_is_none(void **state)
{
    struct faas_function_opts fo = fopts(FAAS_ISOLATION_THREAD, 0);
    struct faas_stats st;
    (void)state;
    start_rt(0);
    assert_int_equal(faas_register(g_rt, "none", wait_handler, &fo), 0);
    assert_int_equal(faas_invoke(g_rt, "none", NULL, NULL, on_result, &g_rec[0]), 0);
    assert_true(tu_run_until_atomic(g_base, &g_started, 1, BOUND_MS));
    assert_true(ALOAD(&g_remaining) == INT64_MAX);
    assert_int_equal(ALOAD(&g_cancelled_seen), 0);
    tu_run_for(g_base, 250);
    assert_int_equal(g_cb_total, 0);
    assert_int_equal(ALOAD(&g_returned), 0);

    gate_open();
    assert_true(tu_run_until(g_base, &g_rec[0].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[0].status, 0);
    assert_int_equal(json_integer_value(g_rec[0].payload), 1); /* gate, not cancel */
    st = get_stats("none");
    assert_int_equal(st.timeouts, 0);
    assert_int_equal(st.errors, 0);
}

static void test_call_timeout_with_no_function_timeout(void **state)
{
    struct faas_function_opts fo = fopts(FAAS_ISOLATION_THREAD, 0);
    uint64_t el;
    (void)state;
    start_rt(0);
    assert_int_equal(faas_register(g_rt, "none2", spin_handler, &fo), 0);
    el = invoke_timed("none2", 0, 0, 100);
    assert_timed_out(0, "Task timed out after 0.10 seconds");
    assert_true(el >= TIMEOUT_LOW_US);
    assert_true(el < TIMEOUT_HIGH_US);
    assert_true(tu_run_until_atomic(g_base, &g_returned, 1, BOUND_MS));
}

static void test_inline_overrun_fake_clock(void **state)
{
    struct faas_function_opts fo = fopts(FAAS_ISOLATION_INLINE, 100);
    struct faas_stats st;
    json_t *ev;
    (void)state;
    start_rt(1);
    assert_int_equal(faas_register(g_rt, "slowi", clock_handler, &fo), 0);

    /* 150 ms on the runtime clock: over the 100 ms timeout */
    ev = json_pack("{s:i}", "advance_ms", 150);
    assert_int_equal(faas_invoke(g_rt, "slowi", ev, NULL, on_result, &g_rec[0]), 0);
    json_decref(ev);
    assert_true(tu_run_until(g_base, &g_rec[0].calls, 1, BOUND_MS));
    assert_timed_out(0, "Task timed out after 0.10 seconds");

    /* 50 ms: within it, and the duration is the runtime clock's */
    ev = json_pack("{s:i}", "advance_ms", 50);
    assert_int_equal(faas_invoke(g_rt, "slowi", ev, NULL, on_result, &g_rec[1]), 0);
    json_decref(ev);
    assert_true(tu_run_until(g_base, &g_rec[1].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[1].status, 0);
    assert_int_equal(g_rec[1].duration_us, 50000);

    tu_run_for(g_base, 20);
    assert_int_equal(g_cb_total, 2);
    st = get_stats("slowi");
    assert_int_equal(st.invocations, 2);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.errors, 1);
}

static void test_init_timeout_thread(void **state)
{
    struct faas_function_opts fo = fopts(FAAS_ISOLATION_THREAD, 3000);
    struct faas_stats st;
    uint64_t t0, el;
    (void)state;
    start_rt(0);
    fo.init = init_fn;
    fo.fini = fini_fn;
    fo.init_timeout_ms = 100;
    assert_int_equal(faas_register(g_rt, "islow", echo_handler, &fo), 0);

    ASTORE(&g_init_slow, 1);
    t0 = now_us();
    assert_int_equal(faas_invoke(g_rt, "islow", NULL, NULL, on_result, &g_rec[0]), 0);
    assert_true(tu_run_until(g_base, &g_rec[0].calls, 1, BOUND_MS));
    el = now_us() - t0;
    assert_int_equal(g_rec[0].status, FAAS_EINIT);
    assert_true(el >= TIMEOUT_LOW_US);
    assert_true(el < TIMEOUT_HIGH_US);
    /* the deadline answered, not init's own failure: init is still blocked */
    assert_int_equal(ALOAD(&g_init_calls), 1);
    assert_int_equal(ALOAD(&g_init_returned), 0);

    ASTORE(&g_init_slow, 0);
    gate_open();
    assert_true(tu_run_until_atomic(g_base, &g_init_returned, 1, BOUND_MS));
    tu_run_for(g_base, 20);
    assert_int_equal(g_rec[0].calls, 1);

    /* the failed instance was dropped: the next call is a fresh cold start */
    assert_int_equal(faas_invoke(g_rt, "islow", NULL, NULL, on_result, &g_rec[1]), 0);
    assert_true(tu_run_until(g_base, &g_rec[1].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[1].status, 0);
    assert_int_equal(g_rec[1].cold, 1);
    assert_int_equal(ALOAD(&g_init_calls), 2);
    st = get_stats("islow");
    assert_int_equal(st.invocations, 2);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.instances, 1);

    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_int_equal(ALOAD(&g_fini_calls), 1);
    assert_int_equal(g_cb_total, 2);
}

static void test_remaining_ms_fake_clock(void **state)
{
    struct faas_function_opts fo = fopts(iso_of(state), 1000);
    json_t *ev;
    json_int_t r1, r2;
    start_rt(1);
    assert_int_equal(faas_register(g_rt, "rem", clock_handler, &fo), 0);

    ev = json_pack("{s:i}", "advance_ms", 250);
    assert_int_equal(faas_invoke(g_rt, "rem", ev, NULL, on_result, &g_rec[0]), 0);
    json_decref(ev);
    assert_true(tu_run_until(g_base, &g_rec[0].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[0].status, 0);
    r1 = json_integer_value(json_object_get(g_rec[0].payload, "r1"));
    r2 = json_integer_value(json_object_get(g_rec[0].payload, "r2"));
    assert_true(r1 <= 1000);
    assert_true(r1 >= 990); /* the fake clock did not move before the handler */
    assert_true(r1 - r2 >= 249);
    assert_true(r1 - r2 <= 251);

    /* no timeout: INT64_MAX, whatever the clock does */
    fo.timeout_ms = 0;
    assert_int_equal(faas_register(g_rt, "rem0", clock_handler, &fo), 0);
    ev = json_pack("{s:i}", "advance_ms", 5000);
    assert_int_equal(faas_invoke(g_rt, "rem0", ev, NULL, on_result, &g_rec[1]), 0);
    json_decref(ev);
    assert_true(tu_run_until(g_base, &g_rec[1].calls, 1, BOUND_MS));
    assert_int_equal(g_rec[1].status, 0);
    assert_true(json_integer_value(json_object_get(g_rec[1].payload, "r1")) == INT64_MAX);
    assert_true(json_integer_value(json_object_get(g_rec[1].payload, "r2")) == INT64_MAX);
    assert_int_equal(g_cb_total, 2);
}

/* ---- review regressions ---- */

/* Ignores cancellation: waits for the gate, 1.5 s at most, then returns. */
static int deaf_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    AINC(&g_started);
    gate_wait(NULL, 1500);
    *result = json_string("late");
    AINC(&g_returned);
    return 0;
}

/*
 * Review r4: a cold start with a quick init, and a handler that overruns its
 * 100 ms timeout without looking at the cancel flag. The first look at the
 * deadline must not wait for init_timeout_ms (10 s here): the timeout
 * arrives at about 100 ms, long before the handler returns (1.5 s unless
 * the test opens the gate).
 */
static void test_cold_start_timeout_on_time(void **state)
{
    struct faas_function_opts fo = fopts(FAAS_ISOLATION_THREAD, 100);
    struct faas_stats st;
    uint64_t t0, el;
    (void)state;
    start_rt(0);
    fo.init = init_fn;
    fo.fini = fini_fn;
    fo.init_timeout_ms = 10000;
    assert_int_equal(faas_register(g_rt, "coldto", deaf_handler, &fo), 0);

    t0 = now_us();
    assert_int_equal(faas_invoke(g_rt, "coldto", NULL, NULL, on_result, &g_rec[0]), 0);
    assert_true(tu_run_until(g_base, &g_rec[0].calls, 1, BOUND_MS));
    el = now_us() - t0;
    assert_timed_out(0, "Task timed out after 0.10 seconds");
    assert_int_equal(g_rec[0].cold, 1);
    assert_true(el >= TIMEOUT_LOW_US);
    assert_true(el < 1000000u);
    /* the answer did not wait for the handler */
    assert_int_equal(ALOAD(&g_returned), 0);
    assert_int_equal(ALOAD(&g_init_calls), 1);

    gate_open();
    assert_true(tu_run_until_atomic(g_base, &g_returned, 1, BOUND_MS));
    assert_true(tu_run_until_pred(g_base, pred_idle, "coldto", BOUND_MS));
    assert_int_equal(g_rec[0].calls, 1);
    assert_int_equal(g_cb_total, 1);
    st = get_stats("coldto");
    assert_int_equal(st.invocations, 1);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.cold_starts, 1);

    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_int_equal(ALOAD(&g_fini_calls), 1);
    assert_int_equal(g_cb_total, 1);
}

/* Works 300 ms (simulated, nanosleep), then succeeds without state. */
static int init_300ms(struct faas_ctx *ctx, void **state)
{
    struct timespec ts = { 0, 300000000L };
    (void)ctx;
    AINC(&g_init_calls);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    *state = NULL;
    AINC(&g_init_returned);
    return 0;
}

/*
 * Review r5: init_timeout_ms 0 (no init deadline) with a 100 ms handler
 * timeout, and a 300 ms cold init. While init runs the deadline timer must
 * not re-arm every millisecond: count how often one pass of the loop
 * returns until the result is in. A correct runtime looks a few times (once
 * per timeout_ms at most) plus the completion; a 1 ms poll makes ~300.
 */
static void test_no_poll_during_untimed_init(void **state)
{
    struct faas_function_opts fo = fopts(FAAS_ISOLATION_THREAD, 100);
    struct event *guard;
    struct timeval tv = { 0, 500000 };
    uint64_t end;
    int passes = 0;
    (void)state;
    start_rt(0);
    fo.init = init_300ms;
    fo.init_timeout_ms = 0;
    assert_int_equal(faas_register(g_rt, "untimed", echo_handler, &fo), 0);

    /* keeps each pass bounded (500 ms) without waking the loop any sooner */
    guard = event_new(g_base, -1, 0, tu_tick_cb, NULL);
    assert_non_null(guard);
    assert_int_equal(faas_invoke(g_rt, "untimed", NULL, NULL, on_result, &g_rec[0]), 0);
    end = tu_now_ms() + BOUND_MS;
    while (g_rec[0].calls == 0 && tu_now_ms() < end) {
        event_add(guard, &tv);
        event_base_loop(g_base, EVLOOP_ONCE);
        passes++;
    }
    event_free(guard);

    assert_int_equal(g_rec[0].calls, 1);
    assert_int_equal(g_rec[0].status, 0);
    assert_int_equal(g_rec[0].cold, 1);
    assert_int_equal(ALOAD(&g_init_calls), 1);
    assert_int_equal(ALOAD(&g_init_returned), 1);
    if (passes >= 50)
        print_error("%d loop passes during a 300 ms init\n", passes);
    assert_true(passes < 50);
    tu_run_for(g_base, 20);
    assert_int_equal(g_cb_total, 1);
}

/* ---- the timer itself: it only fires the callback it was given ---- */

static int g_fired;
static void *g_fired_arg;

static void count_fire(void *arg)
{
    g_fired++;
    g_fired_arg = arg;
}

static void test_timer_fires_given_callback(void **state)
{
    struct faas_timer t;
    int token;
    (void)state;
    memset(&t, 0, sizeof t);
    g_fired = 0;
    g_fired_arg = NULL;
    start_rt(1); /* the fake clock: delays are computed from its reading */

    /* arm_at keeps the earlier time: a later request does not move it */
    assert_int_equal(faas_timer_arm_at(g_rt, &t, tu_clock_now(&g_clk) + 1000000u, count_fire,
                                       &token), 0);
    assert_int_not_equal(t.at_ns, 0);
    {
        uint64_t at = t.at_ns;
        assert_int_equal(faas_timer_arm_at(g_rt, &t, at + 60000000000u, count_fire, &token),
                         0);
        assert_true(t.at_ns == at);
    }
    assert_true(tu_run_until(g_base, &g_fired, 1, BOUND_MS));
    assert_int_equal(g_fired, 1);
    assert_ptr_equal(g_fired_arg, &token);
    assert_true(t.at_ns == 0); /* fired: not armed any more */

    /* re-arming replaces the time: one more fire, not two */
    assert_int_equal(faas_timer_arm(g_rt, &t, 60000000000u, count_fire, NULL), 0);
    assert_int_equal(faas_timer_arm(g_rt, &t, 1000000u, count_fire, NULL), 0);
    assert_true(tu_run_until(g_base, &g_fired, 2, BOUND_MS));
    assert_int_equal(g_fired, 2);
    assert_null(g_fired_arg);

    /* freed while armed: it never fires */
    assert_int_equal(faas_timer_arm(g_rt, &t, 1000000u, count_fire, NULL), 0);
    faas_timer_free(&t);
    assert_null(t.ev);
    assert_false(tu_run_until(g_base, &g_fired, 3, 50));
    assert_int_equal(g_fired, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thread_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_timeout_cannot_lengthen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_timeout_shortens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_zero_is_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_timeout_with_no_function_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_inline_overrun_fake_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_timeout_thread, setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_remaining_ms_fake_clock, setup, teardown,
                                                 &iso_inline),
        cmocka_unit_test_prestate_setup_teardown(test_remaining_ms_fake_clock, setup, teardown,
                                                 &iso_thread),
        cmocka_unit_test_setup_teardown(test_cold_start_timeout_on_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_poll_during_untimed_init, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_fires_given_callback, setup, teardown),
    };
    tu_cond_init_monotonic(&g_cv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

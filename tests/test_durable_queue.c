/*
 * test_durable_queue.c - the fleet's queue of the Redis engine
 * (lib/durable_redis_queue.c) seen through the public API, against a real
 * redis-server of the suite's own (tests/redis_util.h): an event one host
 * accepted runs on another; a host that dies holding an event loses it to
 * the others after the function's timeout plus the 5 s margin, and the cut
 * attempt counts; a host freed while it holds events gives them back at
 * once; a retry waits in Redis and runs on whichever host takes it; a
 * fleet-wide queue bound refuses through on_accepted.
 * Skipped, with the reason printed, when redis-server is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "faas.h"
#include "testutil.h"

#if FAAS_WITH_REDIS
#include "redis_util.h"

#define BOUND_MS 20000

static struct tu_redis srv;
static int have_srv;

/* What the hosts of one test saw end (this process's hosts share it). */
struct seen {
    int accepted, refused, ends, recovered, failures;
    int ended_unaccepted; /* on_complete before its on_accepted */
    char acc[256][FAAS_REQUEST_ID_SIZE];
    int host_ends[3];
    unsigned attempts[64];
    char rid[64][FAAS_REQUEST_ID_SIZE];
    int n;
};
static struct seen g;

struct host {
    struct event_base *base;
    struct faas_runtime *rt;
    int index;
};

static atomic_int g_calls;

static int work(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    atomic_fetch_add(&g_calls, 1);
    *result = json_pack("{s:b}", "ok", 1);
    return 0;
}

/* Fails its first call, succeeds after. */
static int fail_once(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    if (atomic_fetch_add(&g_calls, 1) == 0)
        return FAAS_EHANDLER;
    *result = json_null();
    return 0;
}

static void on_complete(const struct faas_result *res, void *arg)
{
    struct host *h = arg;
    int i = g.n < 64 ? g.n++ : 63, j, known = 0;

    for (j = 0; j < g.accepted && j < 256; j++)
        known |= strcmp(g.acc[j], faas_result_request_id(res)) == 0;
    g.ended_unaccepted += !known;
    g.ends++;
    g.host_ends[h->index]++;
    g.recovered += faas_result_recovered(res);
    g.failures += faas_result_status(res) != 0;
    g.attempts[i] = faas_result_attempts(res);
    snprintf(g.rid[i], sizeof g.rid[i], "%s", faas_result_request_id(res));
}

static void on_accepted(int rc, const char *request_id, void *arg)
{
    (void)arg;
    if (rc == 0) {
        if (g.accepted < 256)
            snprintf(g.acc[g.accepted], sizeof g.acc[0], "%s", request_id);
        g.accepted++;
    } else
        g.refused++;
}

static void host_new(struct host *h, int index, const char *node, faas_handler_fn fn,
                     uint32_t timeout_ms, uint32_t max_queue)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;

    memset(h, 0, sizeof *h);
    h->index = index;
    o.zygote = 0;
    o.durable = srv.url;
    o.node_id = node;
    tu_rt_new(&h->base, &h->rt, &o);
    ao.on_complete = on_complete;
    ao.on_complete_arg = h;
    ao.max_retries = 2;
    ao.retry_base_ms = 20;
    ao.max_queue = max_queue;
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.timeout_ms = timeout_ms;
    fo.async = &ao;
    assert_int_equal(faas_register(h->rt, "work", fn, &fo), 0);
}

static void accept_n(struct host *h, int n)
{
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    char id[FAAS_REQUEST_ID_SIZE];
    int i;

    io.on_accepted = on_accepted;
    for (i = 0; i < n; i++) {
        json_t *ev = json_pack("{s:i}", "n", i);
        assert_int_equal(faas_invoke_async(h->rt, "work", ev, &io, id), 0);
        json_decref(ev);
    }
}

/* Runs the loops of `n` hosts until *counter >= want (bounded). */
static int run_hosts(struct host *h, int n, const int *counter, int want, int bound_ms)
{
    uint64_t end = tu_now_ms() + (uint64_t)bound_ms;
    while (*counter < want && tu_now_ms() < end)
        for (int i = 0; i < n; i++)
            event_base_loop(h[i].base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
    return *counter >= want;
}

static int drained;
static void on_drained(int rc, uint64_t remaining, void *arg)
{
    (void)arg;
    assert_int_equal(rc, 0);
    assert_int_equal(remaining, 0);
    drained++;
}

static int group_setup(void **state)
{
    (void)state;
    return tu_redis_suite_start(&srv, &have_srv, "the fleet queue's tests are");
}

static int group_teardown(void **state)
{
    (void)state;
    if (have_srv)
        tu_redis_stop(&srv);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    if (!have_srv)
        skip();
    assert_int_equal(tu_redis_cmd(&srv, "FLUSHALL"), 0);
    memset(&g, 0, sizeof g);
    atomic_store(&g_calls, 0);
    drained = 0;
    return 0;
}

/*
 * Host A accepts 20 events and drains at once: its drain takes none from
 * the queue, so all wait in Redis; host B, started after, runs every one,
 * each with faas_result_recovered() (accepted by another process).
 */
static void test_other_host_runs(void **state)
{
    struct host h[2];
    (void)state;

    host_new(&h[0], 0, "a", work, 1000, 0);
    accept_n(&h[0], 20);
    assert_int_equal(faas_drain(h[0].rt, 10000, on_drained, NULL), 0);
    assert_true(run_hosts(h, 1, &drained, 1, BOUND_MS));
    assert_int_equal(g.accepted, 20);
    assert_int_equal(g.ends, 0);
    host_new(&h[1], 1, "b", work, 1000, 0);
    assert_true(run_hosts(h, 2, &g.ends, 20, BOUND_MS));
    assert_int_equal(g.host_ends[1], 20);
    assert_int_equal(g.recovered, 20);
    assert_int_equal(g.failures, 0);
    assert_int_equal(atomic_load(&g_calls), 20);
    tu_rt_free(&h[0].rt, &h[0].base);
    tu_rt_free(&h[1].rt, &h[1].base);
}

/* A host's own events: each one's on_accepted comes before its on_complete,
 * although Redis may answer the read that delivers it before the put. */
static void test_accepted_before_complete(void **state)
{
    struct host h[1];
    (void)state;

    host_new(&h[0], 0, "a", work, 1000, 0);
    accept_n(&h[0], 200);
    assert_true(run_hosts(h, 1, &g.ends, 200, BOUND_MS));
    assert_int_equal(g.accepted, 200);
    assert_int_equal(g.ended_unaccepted, 0);
    assert_int_equal(g.recovered, 0); /* the accepting process ran them */
    tu_rt_free(&h[0].rt, &h[0].base);
}

/* A host freed while it holds events (accepted, taken, not run: its loop
 * never ran them) gives them back: another host runs them at once, long
 * before a lease would run out. */
static void test_free_gives_back(void **state)
{
    struct host h[2];
    uint64_t t0;
    (void)state;

    host_new(&h[0], 0, "a", work, 60000, 0);
    host_new(&h[1], 1, "b", work, 60000, 0);
    accept_n(&h[0], 10);
    /* only a's loop: its puts commit, its reader may take some */
    assert_true(run_hosts(h, 1, &g.accepted, 10, BOUND_MS));
    tu_rt_free(&h[0].rt, &h[0].base);
    t0 = tu_now_ms();
    assert_true(run_hosts(&h[1], 1, &g.ends, 10 - g.host_ends[0], BOUND_MS));
    assert_int_equal(g.ends, 10);
    assert_true(tu_now_ms() - t0 < 30000); /* not a 65 s lease */
    tu_rt_free(&h[1].rt, &h[1].base);
}

/* A failed attempt's retry waits in Redis; it runs again (on any host)
 * with its attempts counted by the fleet. */
static void test_retry_through_redis(void **state)
{
    struct host h[2];
    (void)state;

    host_new(&h[0], 0, "a", fail_once, 1000, 0);
    host_new(&h[1], 1, "b", fail_once, 1000, 0);
    accept_n(&h[0], 1);
    assert_true(run_hosts(h, 2, &g.ends, 1, BOUND_MS));
    assert_int_equal(g.failures, 0);
    assert_int_equal(g.attempts[0], 2);
    assert_int_equal(atomic_load(&g_calls), 2);
    tu_rt_free(&h[0].rt, &h[0].base);
    tu_rt_free(&h[1].rt, &h[1].base);
}

static atomic_int g_open;

/* Holds its thread until the test opens the gate (bounded by the test). */
static int gated(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    uint64_t end = tu_now_ms() + BOUND_MS;
    (void)ctx;
    (void)event;
    atomic_fetch_add(&g_calls, 1);
    while (!atomic_load(&g_open) && tu_now_ms() < end)
        usleep(1000); /* a worker thread waits for the test's gate */
    *result = json_null();
    return 0;
}

/* max_queue with FAAS_OVERFLOW_REJECT bounds the events waiting fleet-wide
 * (taken or not): a put past it is refused through on_accepted with
 * FAAS_ETHROTTLED, and that event never runs. */
static void test_fleet_bound(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    char id[FAAS_REQUEST_ID_SIZE];
    struct host h;
    int i;
    (void)state;

    memset(&h, 0, sizeof h);
    atomic_store(&g_open, 0);
    o.zygote = 0;
    o.durable = srv.url;
    tu_rt_new(&h.base, &h.rt, &o);
    ao.max_queue = 3;
    ao.on_complete = on_complete;
    ao.on_complete_arg = &h;
    fo.isolation = FAAS_ISOLATION_THREAD;
    fo.max_concurrency = 1;
    fo.timeout_ms = 60000;
    fo.async = &ao;
    assert_int_equal(faas_register(h.rt, "work", gated, &fo), 0);
    io.on_accepted = on_accepted;
    /* one at a time, so this host's own bound (what it is still writing)
     * never decides: the fleet's does */
    for (i = 0; i < 4; i++) {
        json_t *ev = json_pack("{s:i}", "n", i);
        int want = g.accepted + g.refused + 1;
        assert_int_equal(faas_invoke_async(h.rt, "work", ev, &io, id), 0);
        json_decref(ev);
        uint64_t end = tu_now_ms() + BOUND_MS;
        while (g.accepted + g.refused < want && tu_now_ms() < end)
            event_base_loop(h.base, EVLOOP_ONCE);
        assert_int_equal(g.accepted + g.refused, want);
    }
    assert_int_equal(g.accepted, 3);
    assert_int_equal(g.refused, 1);
    atomic_store(&g_open, 1);
    assert_true(run_hosts(&h, 1, &g.ends, 3, BOUND_MS));
    tu_run_for(h.base, 300);
    assert_int_equal(g.ends, 3);
    assert_int_equal(atomic_load(&g_calls), 3);
    tu_rt_free(&h.rt, &h.base);
}

static int sync_results;
static void on_sync(const struct faas_result *res, void *arg)
{
    (void)arg;
    assert_int_equal(faas_result_status(res), 0);
    sync_results++;
}

/*
 * A wait that is not an attempt stays on the host that holds the event:
 * an async event whose idempotency key is in progress (a synchronous call
 * of the same key holds it) waits here, its lease renewed, and when the
 * key completes it replays the stored result. It ends once, the handler
 * having run once: a wait written to Redis as a retry would also run it
 * from the fleet's queue, a second time.
 */
static void test_wait_stays_on_host(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *ev = json_pack("{s:s}", "order", "K-1");
    struct host h;
    uint64_t end;
    (void)state;

    memset(&h, 0, sizeof h);
    atomic_store(&g_open, 0);
    sync_results = 0;
    o.zygote = 0;
    o.durable = srv.url;
    tu_rt_new(&h.base, &h.rt, &o);
    ao.on_complete = on_complete;
    ao.on_complete_arg = &h;
    ao.retry_base_ms = 50;
    io.key_path = "order";
    fo.isolation = FAAS_ISOLATION_THREAD;
    fo.timeout_ms = 60000;
    fo.async = &ao;
    fo.idempotency = &io;
    assert_int_equal(faas_register(h.rt, "work", gated, &fo), 0);
    assert_int_equal(faas_invoke(h.rt, "work", ev, NULL, on_sync, NULL), 0);
    end = tu_now_ms() + BOUND_MS;
    while (atomic_load(&g_calls) < 1 && tu_now_ms() < end)
        event_base_loop(h.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(atomic_load(&g_calls), 1);
    {
        struct faas_invoke_opts iv = FAAS_INVOKE_OPTS_INIT;
        char id[FAAS_REQUEST_ID_SIZE];
        iv.on_accepted = on_accepted;
        assert_int_equal(faas_invoke_async(h.rt, "work", ev, &iv, id), 0);
    }
    /* the key stays in progress for a while: several waits of 50 ms and
     * more, each of which a retry through Redis would have moved */
    tu_run_for(h.base, 1500);
    assert_int_equal(g.ends, 0);
    atomic_store(&g_open, 1);
    assert_true(run_hosts(&h, 1, &g.ends, 1, BOUND_MS));
    tu_run_for(h.base, 1500); /* a second run would end within this */
    assert_int_equal(sync_results, 1);
    assert_int_equal(g.ends, 1);
    assert_int_equal(g.failures, 0);
    assert_int_equal(atomic_load(&g_calls), 1); /* replayed, not run again */
    json_decref(ev);
    tu_rt_free(&h.rt, &h.base);
}

/*
 * A host killed (SIGKILL) in the middle of an attempt: the event's lease
 * runs out after the function's timeout (1 s) plus the 5 s margin, another
 * host takes it over, and the cut attempt counts (attempts 2).
 */
static void test_dead_host_taken_over(void **state)
{
    int fds[2];
    pid_t pid;
    struct host h[1];
    char c;
    uint64_t t0;
    (void)state;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct host a;
        close(fds[0]);
        host_new(&a, 0, "dies", work, 1000, 0);
        accept_n(&a, 1);
        /* run until the attempt is about to start, then stop still */
        while (atomic_load(&g_calls) == 0)
            event_base_loop(a.base, EVLOOP_ONCE);
        if (write(fds[1], "s", 1) != 1)
            _exit(1);
        for (;;)
            pause(); /* the parent kills it */
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    t0 = tu_now_ms();
    host_new(&h[0], 1, "lives", work, 1000, 0);
    assert_true(run_hosts(h, 1, &g.ends, 1, BOUND_MS));
    assert_int_equal(g.failures, 0);
    assert_int_equal(g.recovered, 1);
    assert_int_equal(g.attempts[0], 2); /* the cut attempt counted */
    assert_true(tu_now_ms() - t0 >= 4000); /* a lease, not at once */
    tu_rt_free(&h[0].rt, &h[0].base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_other_host_runs, setup),
        cmocka_unit_test_setup(test_free_gives_back, setup),
        cmocka_unit_test_setup(test_accepted_before_complete, setup),
        cmocka_unit_test_setup(test_retry_through_redis, setup),
        cmocka_unit_test_setup(test_fleet_bound, setup),
        cmocka_unit_test_setup(test_wait_stays_on_host, setup),
        cmocka_unit_test_setup(test_dead_host_taken_over, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

#else

int main(void)
{
    printf("built without the Redis engine (WITH_REDIS=0): nothing to test\n");
    return 0;
}

#endif

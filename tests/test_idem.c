/*
 * test_idem.c - idempotency: keys from paths and per call, the INPROGRESS /
 * COMPLETED / expired states, failures dropping their record, validation,
 * LRU eviction, the byte bound of the function's store, log records, and a
 * store that answers later.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faas_int.h"
#include "testutil.h"

struct fx {
    struct event_base *base;
    struct faas_runtime *rt;
    struct tu_clock clk;
    int results;
    int last_status;
    int last_replayed;
    json_t *last_payload;
    char last_id[FAAS_REQUEST_ID_SIZE];
    int logs_store, logs_complete, logs_replay, logs_delete, logs_evict, logs_inprogress;
    int logs_drop;
    char last_key[65];
    char dir[32];  /* with_sqlite: the database's directory */
    char url[64];
};

static atomic_int runs;
static atomic_int fail_next;
static atomic_int release_gate;
static atomic_int started;

static int counting(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    int n = atomic_fetch_add(&runs, 1) + 1;
    (void)event;
    if (atomic_exchange(&fail_next, 0))
        return faas_ctx_fail(ctx, "Flaky", "failing once");
    *result = json_pack("{s:i,s:s}", "run", n, "id", faas_ctx_request_id(ctx));
    return 0;
}

/* Waits (bounded) until the test opens the gate, or the invocation ends. */
static int gated(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    uint64_t end = tu_now_ms() + 5000;
    atomic_store(&started, 1);
    while (!atomic_load(&release_gate) && !faas_ctx_cancelled(ctx) && tu_now_ms() < end)
        sched_yield();
    return counting(ctx, event, result);
}

static void on_log(const struct faas_log_record *rec, void *arg)
{
    struct fx *f = arg;
    if (rec->kind != FAAS_LOG_IDEMPOTENCY)
        return;
    assert_non_null(rec->key);
    assert_int_equal(strlen(rec->key), 64);
    strcpy(f->last_key, rec->key);
    if (!strcmp(rec->action, "store"))
        f->logs_store++;
    else if (!strcmp(rec->action, "complete"))
        f->logs_complete++;
    else if (!strcmp(rec->action, "replay"))
        f->logs_replay++;
    else if (!strcmp(rec->action, "delete"))
        f->logs_delete++;
    else if (!strcmp(rec->action, "evict"))
        f->logs_evict++;
    else if (!strcmp(rec->action, "inprogress"))
        f->logs_inprogress++;
    else if (!strcmp(rec->action, "drop")) {
        assert_non_null(rec->line); /* why */
        f->logs_drop++;
    }
}

static void on_result(const struct faas_result *res, void *arg)
{
    struct fx *f = arg;
    f->results++;
    f->last_status = faas_result_status(res);
    f->last_replayed = faas_result_replayed(res);
    json_decref(f->last_payload);
    f->last_payload = json_incref(faas_result_payload(res));
    strcpy(f->last_id, faas_result_request_id(res));
}

/* The second run of the suite: the runtime keeps its default stores in a
 * SQLite database in a temporary directory of its own. With
 * FAAS_TEST_DURABLE=redis the suite runs once, on a redis-server
 * (testutil.h), whose shared store answers later too. */
static int with_sqlite;
static int with_redis;

/* The store answers later, from the loop, not inside the call. */
#define ANSWERS_LATER (with_sqlite || with_redis)

/* The shared store (Redis) has no count bound and no LRU: Redis' TTLs and
 * memory policy bound it. Cases of those bounds skip there. */
#define SKIP_ON_REDIS()                                                               \
    do {                                                                              \
        if (with_redis) {                                                             \
            printf("  the shared Redis store has no count bound or LRU: skipped\n"); \
            skip();                                                                   \
        }                                                                             \
    } while (0)

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    if (with_sqlite) {
        strcpy(f->dir, "/tmp/faas-idem-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->url, sizeof f->url, "sqlite:%s/state.db", f->dir);
        ro.durable = f->url;
        ro.durable_sync = 0;
    }
    f->base = event_base_new();
    f->clk.ns = 1000000000ull;
    ro.thread_workers = 2;
    ro.log = on_log;
    ro.log_arg = f;
    ro.clock.now_ns = tu_clock_now;
    ro.clock.wall_ns = tu_clock_wall;
    ro.clock.arg = &f->clk;
    if (with_redis)
        assert_int_equal(tu_durable_apply(&ro), 1);
    assert_int_equal(faas_runtime_new(&f->rt, f->base, &ro), 0);
    atomic_store(&runs, 0);
    atomic_store(&fail_next, 0);
    atomic_store(&release_gate, 0);
    atomic_store(&started, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    faas_runtime_free(f->rt);
    event_base_free(f->base);
    tu_durable_remove();
    json_decref(f->last_payload);
    if (f->dir[0]) {
        char p[sizeof f->dir + 16];
        snprintf(p, sizeof p, "%s/state.db", f->dir);
        unlink(p);
        rmdir(f->dir);
    }
    free(f);
    return 0;
}

static void reg(struct fx *f, const char *name, faas_handler_fn h, enum faas_isolation iso,
                const struct faas_idempotency_opts *io)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    fo.isolation = iso;
    fo.idempotency = io;
    assert_int_equal(faas_register(f->rt, name, h, &fo), 0);
}

/* Invokes and runs the loop until the result; returns its status. */
static int call(struct fx *f, const char *name, json_t *event, const char *key)
{
    struct faas_invoke_opts o = FAAS_INVOKE_OPTS_INIT;
    int want = f->results + 1;
    o.idempotency_key = key;
    assert_int_equal(faas_invoke(f->rt, name, event, &o, on_result, f), 0);
    assert_int_equal(f->results, want - 1); /* never inside faas_invoke */
    assert_true(tu_run_until(f->base, &f->results, want, 5000));
    return f->last_status;
}

static void replay_case(struct fx *f, enum faas_isolation iso)
{
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *ev = json_pack("{s:{s:s}}", "body", "order_id", "A-1");
    json_t *first;
    struct faas_stats st;
    char first_id[FAAS_REQUEST_ID_SIZE];

    io.key_path = "body.order_id";
    reg(f, "orders", counting, iso, &io);
    assert_int_equal(call(f, "orders", ev, NULL), 0);
    assert_false(f->last_replayed);
    first = json_incref(f->last_payload);
    strcpy(first_id, f->last_id);
    assert_int_equal(call(f, "orders", ev, NULL), 0);
    assert_true(f->last_replayed);
    assert_int_equal(atomic_load(&runs), 1);
    assert_true(json_equal(first, f->last_payload));
    assert_string_not_equal(first_id, f->last_id); /* a new invocation, replayed */
    assert_int_equal(f->logs_store, 1);
    assert_int_equal(f->logs_complete, 1);
    assert_int_equal(f->logs_replay, 1);
    assert_int_equal(faas_stats(f->rt, "orders", &st), 0);
    assert_int_equal(st.replays, 1);
    assert_int_equal(st.invocations, 2);
    json_decref(first);
    json_decref(ev);
}

static void test_replay_inline(void **state)
{
    replay_case(*state, FAAS_ISOLATION_INLINE);
}

static void test_replay_thread(void **state)
{
    replay_case(*state, FAAS_ISOLATION_THREAD);
}

static void test_different_keys_and_functions(void **state)
{
    struct fx *f = *state;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *a = json_pack("{s:s}", "id", "a"), *b = json_pack("{s:s}", "id", "b");

    io.key_path = "id";
    reg(f, "one", counting, FAAS_ISOLATION_INLINE, &io);
    reg(f, "two", counting, FAAS_ISOLATION_INLINE, &io);
    call(f, "one", a, NULL);
    call(f, "one", b, NULL);
    call(f, "two", a, NULL); /* same key, other function: its own record */
    assert_int_equal(atomic_load(&runs), 3);
    assert_false(f->last_replayed);
    call(f, "two", a, NULL);
    assert_true(f->last_replayed);
    assert_int_equal(atomic_load(&runs), 3);
    json_decref(a);
    json_decref(b);
}

static void test_missing_key(void **state)
{
    struct fx *f = *state;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *ev = json_pack("{s:s}", "other", "x"), *nul = json_pack("{s:n}", "id");

    io.key_path = "id";
    reg(f, "lax", counting, FAAS_ISOLATION_INLINE, &io);
    io.required = 1;
    reg(f, "strict", counting, FAAS_ISOLATION_INLINE, &io);
    call(f, "lax", ev, NULL);
    call(f, "lax", ev, NULL);
    assert_int_equal(atomic_load(&runs), 2); /* no key: runs every time */
    assert_int_equal(faas_invoke(f->rt, "strict", ev, NULL, on_result, f), FAAS_ENOKEY);
    assert_int_equal(faas_invoke(f->rt, "strict", nul, NULL, on_result, f), FAAS_ENOKEY);
    assert_int_equal(faas_invoke(f->rt, "strict", NULL, NULL, on_result, f), FAAS_ENOKEY);
    tu_run_for(f->base, 20);
    assert_int_equal(f->results, 2);
    /* An explicit key satisfies `required`. */
    assert_int_equal(call(f, "strict", ev, "k-1"), 0);
    assert_int_equal(call(f, "strict", ev, "k-1"), 0);
    assert_true(f->last_replayed);
    assert_int_equal(atomic_load(&runs), 3);
    json_decref(ev);
    json_decref(nul);
}

static void test_explicit_key_equals_path_string(void **state)
{
    struct fx *f = *state;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *ev = json_pack("{s:s}", "id", "same");

    io.key_path = "id";
    reg(f, "fn", counting, FAAS_ISOLATION_INLINE, &io);
    call(f, "fn", ev, NULL);
    call(f, "fn", NULL, "same"); /* the per-call key overrides the path */
    assert_true(f->last_replayed);
    call(f, "fn", ev, "different");
    assert_false(f->last_replayed);
    assert_int_equal(atomic_load(&runs), 2);
    json_decref(ev);
}

static void test_paths(void **state)
{
    struct fx *f = *state;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *r1 = json_pack("{s:[{s:s},{s:s}]}", "Records", "messageId", "m1", "messageId", "m2");
    json_t *r2 = json_pack("{s:[{s:s,s:i}]}", "Records", "messageId", "m1", "extra", 5);
    json_t *h1 = json_pack("{s:{s:s}}", "headers", "idempotency-key", "H");
    json_t *b1 = json_pack("{s:s}", "body", "{\"order_id\": 7, \"x\": 1}");
    json_t *b2 = json_pack("{s:s}", "body", "{\"x\": 2, \"order_id\": 7}");
    json_t *o1 = json_pack("{s:{s:i,s:i}}", "k", "a", 1, "b", 2);
    json_t *o2 = json_pack("{s:{s:i,s:i}}", "k", "b", 2, "a", 1);

    io.key_path = "Records.0.messageId";
    reg(f, "sqs", counting, FAAS_ISOLATION_INLINE, &io);
    call(f, "sqs", r1, NULL);
    call(f, "sqs", r2, NULL);
    assert_true(f->last_replayed);

    io.key_path = "headers.Idempotency-Key"; /* headers arrive lower-cased */
    reg(f, "http", counting, FAAS_ISOLATION_INLINE, &io);
    call(f, "http", h1, NULL);
    call(f, "http", h1, NULL);
    assert_true(f->last_replayed);

    io.key_path = "body.order_id"; /* inside a body that is a JSON string */
    reg(f, "apigw", counting, FAAS_ISOLATION_INLINE, &io);
    call(f, "apigw", b1, NULL);
    call(f, "apigw", b2, NULL);
    assert_true(f->last_replayed);

    io.key_path = "k"; /* an object: its canonical form, key order aside */
    reg(f, "obj", counting, FAAS_ISOLATION_INLINE, &io);
    call(f, "obj", o1, NULL);
    call(f, "obj", o2, NULL);
    assert_true(f->last_replayed);
    assert_int_equal(atomic_load(&runs), 4);
    json_decref(r1);
    json_decref(r2);
    json_decref(h1);
    json_decref(b1);
    json_decref(b2);
    json_decref(o1);
    json_decref(o2);
}

static void test_failure_deletes_record(void **state)
{
    struct fx *f = *state;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *ev = json_pack("{s:s}", "id", "x");

    io.key_path = "id";
    reg(f, "flaky", counting, FAAS_ISOLATION_THREAD, &io);
    atomic_store(&fail_next, 1);
    assert_int_equal(call(f, "flaky", ev, NULL), FAAS_EHANDLER);
    /* logged when the store answers: a durable store's answer comes later */
    assert_true(tu_run_until(f->base, &f->logs_delete, 1, 5000));
    assert_int_equal(call(f, "flaky", ev, NULL), 0); /* the retry runs */
    assert_false(f->last_replayed);
    assert_int_equal(call(f, "flaky", ev, NULL), 0);
    assert_true(f->last_replayed);
    assert_int_equal(atomic_load(&runs), 2);
    json_decref(ev);
}

static void test_concurrent_duplicate_in_progress(void **state)
{
    struct fx *f = *state;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *ev = json_pack("{s:s}", "id", "dup");
    int dup_status;

    io.key_path = "id";
    reg(f, "slow", gated, FAAS_ISOLATION_THREAD, &io);
    assert_int_equal(faas_invoke(f->rt, "slow", ev, NULL, on_result, f), 0);
    assert_int_equal(call(f, "slow", ev, NULL), FAAS_EINPROGRESS);
    dup_status = f->last_status;
    assert_int_equal(dup_status, FAAS_EINPROGRESS);
    assert_int_equal(f->logs_inprogress, 1);
    atomic_store(&release_gate, 1);
    assert_true(tu_run_until(f->base, &f->results, 2, 5000));
    assert_int_equal(f->last_status, 0);
    assert_int_equal(call(f, "slow", ev, NULL), 0);
    assert_true(f->last_replayed);
    assert_int_equal(atomic_load(&runs), 1);
    json_decref(ev);
}

static void test_timeout_frees_key(void **state)
{
    struct fx *f = *state;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    json_t *ev = json_pack("{s:s}", "id", "t");
    uint64_t end;

    io.key_path = "id";
    fo.idempotency = &io;
    fo.timeout_ms = 50;
    assert_int_equal(faas_register(f->rt, "hang", gated, &fo), 0);
    assert_int_equal(faas_invoke(f->rt, "hang", ev, NULL, on_result, f), 0);
    /* Once the handler runs, move the fake clock past its deadline: the
     * deadline timer then finds it passed. */
    end = tu_now_ms() + 5000;
    while (!atomic_load(&started) && tu_now_ms() < end)
        event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_true(atomic_load(&started));
    tu_clock_advance(&f->clk, 60000000ull);
    assert_true(tu_run_until(f->base, &f->results, 1, 5000));
    assert_int_equal(f->last_status, FAAS_ETIMEDOUT);
    /* The record went with the timeout: the retry runs, not "in progress". */
    atomic_store(&release_gate, 1);
    assert_int_equal(call(f, "hang", ev, NULL), 0);
    assert_false(f->last_replayed);
    json_decref(ev);
}

static void test_ttl_expiry(void **state)
{
    struct fx *f = *state;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *ev = json_pack("{s:s}", "id", "ttl");

    io.key_path = "id";
    io.ttl_s = 2;
    reg(f, "ttl", counting, FAAS_ISOLATION_INLINE, &io);
    call(f, "ttl", ev, NULL);
    tu_clock_advance(&f->clk, 1999000000ull);
    call(f, "ttl", ev, NULL);
    assert_true(f->last_replayed);
    tu_clock_advance(&f->clk, 1000000ull); /* exactly the TTL: expired */
    call(f, "ttl", ev, NULL);
    assert_false(f->last_replayed);
    assert_int_equal(atomic_load(&runs), 2);
    json_decref(ev);
}

static void test_validation_mismatch(void **state)
{
    struct fx *f = *state;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *a = json_pack("{s:s,s:i}", "id", "v", "amount", 10);
    json_t *b = json_pack("{s:s,s:i}", "id", "v", "amount", 11);

    io.key_path = "id";
    io.validate_path = "amount";
    reg(f, "pay", counting, FAAS_ISOLATION_INLINE, &io);
    assert_int_equal(call(f, "pay", a, NULL), 0);
    assert_int_equal(call(f, "pay", b, NULL), FAAS_EIDEMPOTENCY_MISMATCH);
    assert_string_equal(
        json_string_value(json_object_get(f->last_payload, "errorType")),
        "IdempotencyValidationError");
    assert_int_equal(call(f, "pay", a, NULL), 0);
    assert_true(f->last_replayed);
    assert_int_equal(atomic_load(&runs), 1);
    json_decref(a);
    json_decref(b);
}

static void test_lru_eviction(void **state)
{
    struct fx *f = *state;
    SKIP_ON_REDIS();
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    const char *keys[] = { "a", "b", "c" };
    int i;

    io.max_entries = 2;
    reg(f, "lru", counting, FAAS_ISOLATION_INLINE, &io);
    for (i = 0; i < 3; i++)
        call(f, "lru", NULL, keys[i]);
    assert_int_equal(f->logs_evict, 1); /* "a" went */
    call(f, "lru", NULL, "c");
    assert_true(f->last_replayed);
    call(f, "lru", NULL, "a");
    assert_false(f->last_replayed);
    assert_int_equal(atomic_load(&runs), 4);
}

static void on_result_status(const struct faas_result *res, void *arg)
{
    int *statuses = arg;
    int i;
    for (i = 0; statuses[i] != 1; i++)
        ;
    statuses[i] = faas_result_status(res);
    statuses[i + 1] = 1;
}

static int three_results(const void *arg)
{
    const int *statuses = arg;
    return statuses[3] == 1 && statuses[2] != 1;
}

/* A bounded store never evicts a record in progress: that would let a
 * duplicate run at the same time. */
static void test_lru_spares_in_progress(void **state)
{
    struct fx *f = *state;
    SKIP_ON_REDIS();
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    struct faas_invoke_opts o = FAAS_INVOKE_OPTS_INIT;
    int statuses[8] = { 1 }, done = 0, i;
    const char *keys[] = { "a", "b", "a" };

    io.max_entries = 1;
    reg(f, "tight", counting, FAAS_ISOLATION_INLINE, &io);
    for (i = 0; i < 3; i++) { /* all admitted before any runs */
        o.idempotency_key = keys[i];
        assert_int_equal(faas_invoke(f->rt, "tight", NULL, &o, on_result_status, statuses), 0);
    }
    (void)done;
    assert_true(tu_run_until_pred(f->base, three_results, statuses, 5000));
    assert_int_equal(f->logs_evict, 0);
    assert_int_equal(atomic_load(&runs), 2);
    /* The duplicate "a" was refused while the first waited to run. */
    assert_int_equal(statuses[0], 0);
    assert_int_equal(statuses[1], 0);
    assert_int_equal(statuses[2], FAAS_EINPROGRESS);
    /* Completed now: the next key brings the store back to its bound. */
    call(f, "tight", NULL, "c");
    assert_int_equal(f->logs_evict, 2);
    call(f, "tight", NULL, "b");
    assert_false(f->last_replayed); /* evicted */
}


/* Returns a JSON string of event.n bytes. */
static int sized(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    size_t n = (size_t)json_integer_value(json_object_get(event, "n"));
    char *buf = malloc(n + 1);
    (void)ctx;
    atomic_fetch_add(&runs, 1);
    if (!buf)
        return 1;
    memset(buf, 'y', n);
    buf[n] = '\0';
    *result = json_string(buf);
    free(buf);
    return 0;
}

static void store_ignore(int rc, const struct faas_store_record *rec, void *arg)
{
    (void)rc;
    (void)rec;
    (void)arg;
}

/* What a record in progress costs a memory store. */
static size_t node_cost(void)
{
    static const char key[] = "0000000000000000000000000000000000000000000000000000000000000000";
    struct faas_store *st = NULL;
    struct faas_store_record r;
    size_t n;

    memset(&r, 0, sizeof r);
    r.state = FAAS_STORE_INPROGRESS;
    r.expires_ms = INT64_MAX;
    assert_int_equal(faas_store_memory_new(&st, 0), 0);
    assert_int_equal(faas_store_put_if_absent(st, key, &r, 0, store_ignore, NULL), 0);
    n = faas_store_memory_bytes(st);
    faas_store_free(st);
    assert_true(n > 0);
    return n;
}

/* 400 large results into the function's own store bounded by max_bytes:
 * exactly what fits is kept (the rest evicted, oldest first, each logged),
 * every result is delivered, and the newest replays. */
static void test_byte_bound_own_store(void **state)
{
    struct fx *f = *state;
    SKIP_ON_REDIS();
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    const size_t limit = 64 * 1024, psize = 4000;
    size_t cost = node_cost() + psize + 2, fit = limit / cost;
    json_t *ev;
    int i;

    io.key_path = "id";
    io.max_bytes = limit;
    reg(f, "orders", sized, FAAS_ISOLATION_INLINE, &io);
    for (i = 0; i < 400; i++) {
        ev = json_pack("{s:i,s:i}", "id", i, "n", (int)psize);
        assert_int_equal(call(f, "orders", ev, NULL), 0);
        assert_int_equal(json_string_length(f->last_payload), psize);
        json_decref(ev);
    }
    assert_int_equal(f->logs_evict, (int)(400 - fit));
    assert_int_equal(f->logs_drop, 0);
    ev = json_pack("{s:i,s:i}", "id", 399, "n", (int)psize);
    assert_int_equal(call(f, "orders", ev, NULL), 0);
    assert_true(f->last_replayed);
    json_decref(ev);
    ev = json_pack("{s:i,s:i}", "id", (int)(400 - fit - 1), "n", (int)psize);
    assert_int_equal(call(f, "orders", ev, NULL), 0);
    assert_false(f->last_replayed); /* evicted: it ran again */
    json_decref(ev);
    assert_int_equal(atomic_load(&runs), 401);
}

/* A result bigger than the store's bound reaches the caller; the store
 * drops the record (logged "drop"), so the same key runs again. */
static void test_byte_bound_oversize_result(void **state)
{
    struct fx *f = *state;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *big = json_pack("{s:s,s:i}", "id", "big", "n", 100000);
    json_t *small = json_pack("{s:s,s:i}", "id", "small", "n", 10);

    io.key_path = "id";
    io.max_bytes = 64 * 1024;
    reg(f, "orders", sized, FAAS_ISOLATION_THREAD, &io);
    assert_int_equal(call(f, "orders", small, NULL), 0);
    assert_int_equal(call(f, "orders", big, NULL), 0);
    assert_int_equal(json_string_length(f->last_payload), 100000);
    assert_true(tu_run_until(f->base, &f->logs_drop, 1, 5000));
    assert_int_equal(f->logs_evict, 0); /* nothing was evicted for it */
    assert_int_equal(call(f, "orders", big, NULL), 0);
    assert_false(f->last_replayed);
    assert_int_equal(json_string_length(f->last_payload), 100000);
    assert_int_equal(call(f, "orders", small, NULL), 0);
    assert_true(f->last_replayed);
    assert_int_equal(atomic_load(&runs), 3);
    json_decref(big);
    json_decref(small);
}

static int two_ends_logged(const void *arg)
{
    const struct fx *f = arg;
    return f->logs_complete + f->logs_drop >= 2;
}

/* A store refusal: faas_invoke returns it when the store answered inside
 * the call (memory), the callback gets it when the store answers later
 * (SQLite); the handler does not run. */
static void invoke_refused(struct fx *f, const char *name, const struct faas_invoke_opts *o,
                           int code)
{
    int results = f->results;
    int rc = faas_invoke(f->rt, name, NULL, o, on_result, f);
    if (!ANSWERS_LATER) {
        assert_int_equal(rc, code);
        tu_run_for(f->base, 10);
        assert_int_equal(f->results, results);
        return;
    }
    assert_int_equal(rc, 0);
    assert_true(tu_run_until(f->base, &f->results, results + 1, 5000));
    assert_int_equal(f->last_status, code);
}

/* An INPROGRESS record the store refuses fails the invocation with the
 * store's code, and the handler never runs: FAAS_ETOOBIG when one record is
 * over the bound, FAAS_ETHROTTLED when records in progress fill it. */
static void test_byte_bound_refuses_in_progress(void **state)
{
    struct fx *f = *state;
    SKIP_ON_REDIS();
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    struct faas_invoke_opts o = FAAS_INVOKE_OPTS_INIT;
    size_t node = node_cost();

    int base = f->results;

    io.max_bytes = 1;
    reg(f, "tiny", counting, FAAS_ISOLATION_INLINE, &io);
    o.idempotency_key = "a";
    invoke_refused(f, "tiny", &o, FAAS_ETOOBIG);
    assert_int_equal(atomic_load(&runs), 0);

    io.max_bytes = 2 * node; /* two attempts in progress, no more */
    reg(f, "two", gated, FAAS_ISOLATION_THREAD, &io);
    o.idempotency_key = "a";
    assert_int_equal(faas_invoke(f->rt, "two", NULL, &o, on_result, f), 0);
    o.idempotency_key = "b";
    assert_int_equal(faas_invoke(f->rt, "two", NULL, &o, on_result, f), 0);
    assert_true(tu_run_until(f->base, &f->logs_store, 2, 5000));
    o.idempotency_key = "c";
    invoke_refused(f, "two", &o, FAAS_ETHROTTLED);
    assert_int_equal(f->logs_store, 2);
    atomic_store(&release_gate, 1);
    assert_true(tu_run_until(f->base, &f->results, base + 2 + 2 * ANSWERS_LATER, 5000));
    tu_run_for(f->base, 10);
    assert_int_equal(f->results, base + 2 + 2 * ANSWERS_LATER);
    /* the store's answers to the two completes */
    assert_true(tu_run_until_pred(f->base, two_ends_logged, f, 5000));
    assert_int_equal(atomic_load(&runs), 2);
    /* Their results did not fit beside each other: delivered, one or both
     * not kept; the store has room for the next attempt again. */
    assert_true(f->logs_complete + f->logs_drop == 2 && f->logs_drop >= 1);
    assert_int_equal(call(f, "two", NULL, "c"), 0);
    assert_int_equal(atomic_load(&runs), 3);
}

static void test_bad_options(void **state)
{
    struct fx *f = *state;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;

    fo.idempotency = &io;
    io.key_path = "a..b";
    assert_int_equal(faas_register(f->rt, "x", counting, &fo), FAAS_EINVAL);
    io.key_path = ".a";
    assert_int_equal(faas_register(f->rt, "x", counting, &fo), FAAS_EINVAL);
    io.key_path = "a";
    io.ttl_s = 0;
    assert_int_equal(faas_register(f->rt, "x", counting, &fo), FAAS_EINVAL);
    io.ttl_s = 10;
    io.version = 99;
    assert_int_equal(faas_register(f->rt, "x", counting, &fo), FAAS_EINVAL);
    io.version = FAAS_IDEMPOTENCY_OPTS_VERSION;
    assert_int_equal(faas_register(f->rt, "x", counting, &fo), 0);
}

/* ---- a store that answers later, from the loop ---------------------- */

struct later {
    struct faas_store *inner; /* does the real work */
    struct event_base *base;
    struct pending {
        faas_store_cb cb;
        void *arg;
        int rc;
        struct faas_store_record rec;
        char validation[33];
        int has_rec;
    } q[16];
    int nq;
    int destroyed;
};

static void later_capture(int rc, const struct faas_store_record *rec, void *arg)
{
    struct pending *p = arg;
    p->rc = rc;
    p->has_rec = rec != NULL;
    if (rec) {
        p->rec = *rec;
        json_incref(p->rec.payload);
        if (rec->validation) {
            strcpy(p->validation, rec->validation);
            p->rec.validation = p->validation;
        }
        p->rec.owner = NULL; /* not kept past the callback */
    }
}

static int later_put(void *impl, const char *key, const struct faas_store_record *rec,
                     int64_t now, faas_store_cb cb, void *arg)
{
    struct later *l = impl;
    struct pending *p = &l->q[l->nq++];
    p->cb = cb;
    p->arg = arg;
    return faas_store_put_if_absent(l->inner, key, rec, now, later_capture, p);
}

static int later_complete(void *impl, const char *key, const struct faas_store_record *rec,
                          int64_t now, faas_store_cb cb, void *arg)
{
    struct later *l = impl;
    return faas_store_complete(l->inner, key, rec, now, cb, arg);
}

static int later_remove(void *impl, const char *key, const char *owner, int64_t now,
                        faas_store_cb cb, void *arg)
{
    struct later *l = impl;
    return faas_store_remove(l->inner, key, owner, now, cb, arg);
}

static int later_get(void *impl, const char *key, int64_t now, faas_store_cb cb, void *arg)
{
    struct later *l = impl;
    return faas_store_get(l->inner, key, now, cb, arg);
}

static void later_destroy(void *impl)
{
    struct later *l = impl;
    l->destroyed++;
}

/* Answers every pending put now. */
static void later_flush(struct later *l)
{
    int i;
    for (i = 0; i < l->nq; i++) {
        struct pending *p = &l->q[i];
        p->cb(p->rc, p->has_rec ? &p->rec : NULL, p->arg);
        json_decref(p->rec.payload);
    }
    l->nq = 0;
}

static const struct faas_store_ops later_ops = { FAAS_STORE_OPS_VERSION, later_get, later_put,
                                                 later_complete, later_remove,
                                                 later_destroy };

static void test_store_answering_later(void **state)
{
    struct fx *f = *state;
    struct later l;
    struct faas_store *st;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    json_t *ev = json_pack("{s:s}", "id", "L");

    memset(&l, 0, sizeof l);
    assert_int_equal(faas_store_memory_new(&l.inner, 0), 0);
    assert_int_equal(faas_store_new(&st, &later_ops, &l), 0);
    io.key_path = "id";
    io.store = st;
    reg(f, "later", counting, FAAS_ISOLATION_INLINE, &io);
    assert_int_equal(faas_invoke(f->rt, "later", ev, NULL, on_result, f), 0);
    tu_run_for(f->base, 20);
    assert_int_equal(f->results, 0); /* waiting for the store */
    assert_int_equal(atomic_load(&runs), 0);
    later_flush(&l);
    assert_true(tu_run_until(f->base, &f->results, 1, 5000));
    assert_int_equal(f->last_status, 0);
    assert_int_equal(atomic_load(&runs), 1);
    assert_int_equal(faas_invoke(f->rt, "later", ev, NULL, on_result, f), 0);
    later_flush(&l);
    assert_true(tu_run_until(f->base, &f->results, 2, 5000));
    assert_true(f->last_replayed);

    /* Freed while a store answer is pending: the callback runs once,
     * cancelled, and the late answer finds nobody. */
    assert_int_equal(faas_invoke(f->rt, "later", ev, NULL, on_result, f), 0);
    faas_runtime_free(f->rt);
    f->rt = NULL;
    assert_int_equal(f->results, 3);
    assert_int_equal(f->last_status, FAAS_ECANCELED);
    later_flush(&l);
    assert_int_equal(f->results, 3);
    faas_store_free(st);
    assert_int_equal(l.destroyed, 1);
    faas_store_free(l.inner);
    json_decref(ev);
}

/* ---- review regressions ---- */

struct free_in_log {
    struct faas_runtime *rt;
    int store_logs;
    int frees;
    int results;
    int status;
};

/* Frees the runtime from the "store" record, delivered inside faas_invoke
 * (the memory store answers at once). */
static void free_on_store(const struct faas_log_record *rec, void *arg)
{
    struct free_in_log *s = arg;
    if (rec->kind != FAAS_LOG_IDEMPOTENCY || strcmp(rec->action, "store") != 0)
        return;
    s->store_logs++;
    if (s->rt) {
        struct faas_runtime *rt = s->rt;
        s->rt = NULL;
        s->frees++;
        faas_runtime_free(rt);
    }
}

static void free_in_log_result(const struct faas_result *res, void *arg)
{
    struct free_in_log *s = arg;
    s->results++;
    s->status = faas_result_status(res);
}

/* The host calls faas_invoke from top level (no libfaas callback on the
 * stack) and its log callback frees the runtime inside that call: the free
 * waits until faas_invoke is done, and the invocation ends once, cancelled. */
static void test_free_in_log_inside_invoke(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    struct free_in_log s;
    struct event_base *base = event_base_new();
    json_t *ev = json_pack("{s:s}", "id", "k1");
    (void)state;

    memset(&s, 0, sizeof s);
    s.status = 1;
    ro.log = free_on_store;
    ro.log_arg = &s;
    assert_int_equal(faas_runtime_new(&s.rt, base, &ro), 0);
    fo.isolation = FAAS_ISOLATION_INLINE;
    io.key_path = "id";
    fo.idempotency = &io;
    assert_int_equal(faas_register(s.rt, "f", counting, &fo), 0);
    assert_int_equal(faas_invoke(s.rt, "f", ev, NULL, free_in_log_result, &s), 0);
    assert_null(s.rt); /* freed inside the call */
    assert_int_equal(s.frees, 1);
    assert_int_equal(s.store_logs, 1);
    assert_int_equal(s.results, 1);
    assert_int_equal(s.status, FAAS_ECANCELED);
    tu_run_for(base, 20);
    assert_int_equal(s.results, 1);
    assert_int_equal(atomic_load(&runs), 0);
    json_decref(ev);
    event_base_free(base);
}

static int g_nested;
static int g_nested_rc = 1;
static int g_nested_status[2];
static int g_nested_results;

static void nested_result(const struct faas_result *res, void *arg)
{
    int *slot = arg;
    *slot = faas_result_status(res);
    g_nested_results++;
}

/* The fixture's counting, and on the first "evict" a second invocation
 * with the key being inserted ("b"). */
static void invoke_on_evict(const struct faas_log_record *rec, void *arg)
{
    struct fx *f = arg;
    struct faas_invoke_opts o = FAAS_INVOKE_OPTS_INIT;
    on_log(rec, arg);
    if (rec->kind != FAAS_LOG_IDEMPOTENCY || strcmp(rec->action, "evict") != 0 || g_nested)
        return;
    g_nested = 1;
    o.idempotency_key = "b";
    g_nested_rc = faas_invoke(f->rt, "tight", NULL, &o, nested_result, &g_nested_status[1]);
}

/* A bounded memory store evicts "a" to insert "b"; the host's log callback
 * of that eviction invokes again with "b". The eviction is reported once
 * the insert is done, so the second invocation finds "b" in progress: the
 * handler runs once for the key. */
static void test_evict_log_reentry(void **state)
{
    struct fx *f = *state;
    SKIP_ON_REDIS();
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    struct faas_invoke_opts o = FAAS_INVOKE_OPTS_INIT;

    io.max_entries = 1;
    reg(f, "tight", counting, FAAS_ISOLATION_INLINE, &io);
    assert_int_equal(call(f, "tight", NULL, "a"), 0);
    assert_int_equal(atomic_load(&runs), 1);
    g_nested = 0;
    g_nested_rc = 1;
    g_nested_results = 0;
    g_nested_status[0] = g_nested_status[1] = 1;
    f->rt->opts.log = invoke_on_evict;
    o.idempotency_key = "b";
    assert_int_equal(faas_invoke(f->rt, "tight", NULL, &o, nested_result, &g_nested_status[0]),
                     0);
    assert_int_equal(g_nested, 1);
    assert_int_equal(g_nested_rc, 0);
    assert_true(tu_run_until(f->base, &g_nested_results, 2, 5000));
    tu_run_for(f->base, 20);
    assert_int_equal(g_nested_results, 2);
    assert_int_equal(g_nested_status[0], 0);
    assert_int_equal(g_nested_status[1], FAAS_EINPROGRESS);
    assert_int_equal(atomic_load(&runs), 2); /* "a" once, "b" once */
    assert_int_equal(f->logs_evict, 1);
    assert_int_equal(f->logs_inprogress, 1);
    assert_int_equal(f->logs_store, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_inline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_different_keys_and_functions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explicit_key_equals_path_string, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_deletes_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_duplicate_in_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_frees_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_eviction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_spares_in_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_bound_own_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_bound_oversize_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_bound_refuses_in_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_answering_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_log_inside_invoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evict_log_reentry, setup, teardown),
    };
    int failed;
    const char *durable = tu_durable_kind();

    if (durable && strcmp(durable, "redis") == 0) {
        with_redis = 1;
        return cmocka_run_group_tests_name("redis", tests, NULL, NULL);
    }
    failed = cmocka_run_group_tests_name("memory", tests, NULL, NULL);
#if FAAS_WITH_SQLITE
    with_sqlite = 1;
    failed += cmocka_run_group_tests_name("sqlite", tests, NULL, NULL);
#endif
    return failed;
}

/*
 * test_durable_map.c - event-source mappings on a durable engine (a SQLite
 * file in a fresh temporary directory): the records a host-fed mapping
 * holds survive the runtime's end and a SIGKILL, come back under the
 * mapping's name in order per partition key, and are forgotten once their
 * batch ends; faas_emit_with's on_accepted answers once they are committed;
 * a schedule's missed fire fires once after a restart, with its due time,
 * and never again.
 *
 * Each "run" is a runtime of its own on the same file, as a host that
 * restarts; the clocks are one fake clock that goes on between runs.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "durable.h"
#include "faas_int.h"
#include "testutil.h"

#if FAAS_WITH_SQLITE
/* Everything up to main needs the SQLite engine; a build without it runs
 * one test that says so. */

#define MAXGOT 256

struct fx {
    char dir[64];
    char url[160];
    struct tu_clock clk;
    struct event_base *base;
    struct faas_runtime *rt;
    int fail;              /* the handler fails while set */
    int runs;              /* handler runs */
    int ngot;              /* records (or events) the handler got */
    char got[MAXGOT][64];  /* "key:n" of each record, or an event's time */
    int accepted, accepted_rc[MAXGOT];
    int refused_logs;      /* "record-refused" warnings */
    const char *fresh_key; /* records of this key from n = fresh_from on */
    int fresh_from;        /* were emitted by this run, one mapping each */
};

static struct fx *g;

static void on_log(const struct faas_log_record *rec, void *arg)
{
    struct fx *f = arg;
    if (rec->kind == FAAS_LOG_WARNING && rec->action &&
        strcmp(rec->action, "record-refused") == 0)
        f->refused_logs++;
}

/* Keeps "key:n" of every stream record ({"partitionKey", "data": {"n"}}),
 * or the time of a Scheduled Event. */
static int handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *recs = json_object_get(event, "Records");
    size_t i;

    (void)result;
    g->runs++;
    if (g->fail)
        return faas_ctx_fail(ctx, "Nope", "failing on purpose");
    if (!recs) {
        assert_true(g->ngot < MAXGOT);
        snprintf(g->got[g->ngot++], sizeof g->got[0], "%s",
                 json_string_value(json_object_get(event, "time")));
        return 0;
    }
    for (i = 0; i < json_array_size(recs); i++) {
        json_t *k = json_object_get(json_array_get(recs, i), "kinesis");
        const char *b64 = json_string_value(json_object_get(k, "data"));
        unsigned char raw[128];
        size_t n = 0;
        json_t *data;
        assert_non_null(b64);
        assert_int_equal(sodium_base642bin(raw, sizeof raw - 1, b64, strlen(b64), NULL, &n, NULL,
                                           sodium_base64_VARIANT_ORIGINAL),
                         0);
        data = json_loadb((const char *)raw, n, 0, NULL);
        /* Emitted in this run: batched only once durable, and the host
         * was told before (on_accepted runs first). */
        if (g->fresh_key &&
            strcmp(json_string_value(json_object_get(k, "partitionKey")), g->fresh_key) == 0 &&
            json_integer_value(json_object_get(data, "n")) >= g->fresh_from)
            assert_true(g->accepted >=
                        json_integer_value(json_object_get(data, "n")) - g->fresh_from + 1);
        assert_true(g->ngot < MAXGOT);
        snprintf(g->got[g->ngot++], sizeof g->got[0], "%s:%lld",
                 json_string_value(json_object_get(k, "partitionKey")),
                 (long long)json_integer_value(json_object_get(data, "n")));
        json_decref(data);
    }
    return 0;
}

/* A new runtime on the file, with the fixture's clock and "fn". */
static void run_start(struct fx *f)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;

    o.zygote = 0;
    o.durable = f->url;
    o.durable_sync = 0;
    o.log = on_log;
    o.log_arg = f;
    o.clock.now_ns = tu_clock_now;
    o.clock.wall_ns = tu_clock_wall;
    o.clock.arg = &f->clk;
    tu_rt_new(&f->base, &f->rt, &o);
    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(f->rt, "fn", handler, &fo), 0);
    f->runs = f->ngot = f->accepted = f->refused_logs = 0;
    f->fresh_key = NULL;
}

static void run_end(struct fx *f)
{
    tu_rt_free(&f->rt, &f->base);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->dir, "/tmp/faas-dmap-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->url, sizeof f->url, "sqlite:%s/state.db", f->dir);
    /* 2026-11-27T20:00:00Z */
    f->clk.ns = (1795809600ull - 1700000000ull) * 1000000000ull;
    g = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->rt)
        run_end(f);
    tu_rmdir_files(f->dir);
    free(f);
    return 0;
}

static void on_accepted(int rc, void *arg)
{
    struct fx *f = arg;
    assert_true(f->accepted < MAXGOT);
    f->accepted_rc[f->accepted++] = rc;
}

/* Emits {"partitionKey": key, "data": {"n": n}} to stream:orders. */
static int emit(struct fx *f, const char *key, int n)
{
    struct faas_emit_opts eo = FAAS_EMIT_OPTS_INIT;
    json_t *r = json_pack("{s:s, s:{s:i}}", "partitionKey", key, "data", "n", n);
    int rc;
    eo.on_accepted = on_accepted;
    eo.accepted_arg = f;
    rc = faas_emit_with(f->rt, "stream:orders", r, &eo);
    json_decref(r);
    return rc;
}

static void advance_s(struct fx *f, uint64_t seconds)
{
    tu_clock_advance(&f->clk, seconds * 1000000000ull);
}

/* A mapping that holds what it gets: a window no test waits for. */
static int map_holding(struct fx *f, const char *name)
{
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    mo.batch_size = 1000;
    mo.batch_window_ms = 600000;
    mo.name = name;
    return faas_map(f->rt, "stream:orders", "fn", &mo);
}

static int map_sending(struct fx *f, const char *name)
{
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    mo.batch_size = 3;
    mo.name = name;
    return faas_map(f->rt, "stream:orders", "fn", &mo);
}

/* Records kept under `name`, read from the file (no runtime has it open). */
static int count_each(const struct faas_durable_record *rec, void *arg)
{
    (void)rec;
    (*(int *)arg)++;
    return 0;
}

static int kept_records(struct fx *f, const char *name)
{
    struct event_base *base = event_base_new();
    struct faas_runtime *rt = NULL;
    struct faas_durable *d = NULL;
    int n = 0;

    assert_int_equal(faas_runtime_new(&rt, base, NULL), 0);
    assert_int_equal(faas_durable_open(&d, rt, f->url, 0, NULL), 0);
    assert_int_equal(faas_durable_records_load(d, name, count_each, &n), 0);
    faas_durable_close(d);
    faas_runtime_free(rt);
    event_base_free(base);
    return n;
}

/* The records of `key` in f->got are n = first, first+1, ... in order;
 * returns how many there were. */
static int in_order(const struct fx *f, const char *key, int first)
{
    char want[64];
    int i, n = 0;
    size_t kl = strlen(key);
    for (i = 0; i < f->ngot; i++) {
        if (strncmp(f->got[i], key, kl) != 0 || f->got[i][kl] != ':')
            continue;
        snprintf(want, sizeof want, "%s:%d", key, first + n);
        assert_string_equal(f->got[i], want);
        n++;
    }
    return n;
}

/* ---- host-fed records ------------------------------------------------------ */

/* Records accepted, the runtime freed before any batch ran: the next run
 * delivers them under the same name, in order per key, before and with
 * what it gets itself; once their batches ended a third run gets nothing. */
static void test_records_survive_free(void **state)
{
    struct fx *f = *state;
    int i;

    run_start(f);
    assert_true(map_holding(f, NULL) >= 0);
    for (i = 0; i < 12; i++)
        assert_int_equal(emit(f, i % 3 == 0 ? "a" : "b", i), 1);
    assert_int_equal(f->accepted, 0); /* never inside the call */
    assert_true(tu_run_until(f->base, &f->accepted, 12, 10000));
    for (i = 0; i < 12; i++)
        assert_int_equal(f->accepted_rc[i], 1);
    assert_int_equal(f->runs, 0);
    run_end(f);
    assert_int_equal(kept_records(f, "stream:orders fn"), 12);
    assert_int_equal(kept_records(f, "stream:orders other"), 0);

    /* Another name does not see them; the mapping's own name does. */
    run_start(f);
    assert_true(map_sending(f, "elsewhere") >= 0);
    tu_run_for(f->base, 50);
    assert_int_equal(f->runs, 0);
    assert_true(map_sending(f, NULL) >= 0);
    /* New records go after the kept ones of their key. */
    assert_int_equal(emit(f, "a", 100), 2);
    assert_true(tu_run_until(f->base, &f->ngot, 14, 10000));
    tu_run_for(f->base, 50);
    assert_int_equal(f->ngot, 14); /* 12 kept and the new one... */
    /* ...which "elsewhere" got too: 13 to the default name, 1 to the other */
    {
        int a = 0, b = 0;
        for (i = 0; i < f->ngot; i++) {
            a += f->got[i][0] == 'a';
            b += f->got[i][0] == 'b';
        }
        assert_int_equal(a, 6);
        assert_int_equal(b, 8);
    }
    run_end(f);
    assert_int_equal(kept_records(f, "stream:orders fn"), 0);
    assert_int_equal(kept_records(f, "elsewhere"), 0);

    run_start(f);
    assert_true(map_sending(f, NULL) >= 0);
    tu_run_for(f->base, 100);
    assert_int_equal(f->runs, 0);
    run_end(f);
}

/* Per-key order across a restart, checked record by record. */
static void test_order_per_key(void **state)
{
    struct fx *f = *state;
    int i;

    run_start(f);
    assert_true(map_holding(f, "orders") >= 0);
    for (i = 0; i < 30; i++)
        assert_int_equal(emit(f, i % 2 ? "odd" : "even", i / 2), 1);
    assert_true(tu_run_until(f->base, &f->accepted, 30, 10000));
    run_end(f);

    run_start(f);
    assert_true(map_sending(f, "orders") >= 0);
    f->fresh_key = "odd";
    f->fresh_from = 15;
    for (i = 15; i < 20; i++)
        assert_int_equal(emit(f, "odd", i), 1);
    assert_true(tu_run_until(f->base, &f->ngot, 35, 10000));
    assert_int_equal(in_order(f, "even", 0), 15);
    assert_int_equal(in_order(f, "odd", 0), 20);
    run_end(f);
    assert_int_equal(kept_records(f, "orders"), 0);
}

static int g_queue_bodies;

static int count_bodies(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)result;
    g_queue_bodies += (int)json_array_size(json_object_get(event, "Records"));
    return 0;
}

/* An unordered kind (queue:) keeps its records the same way; plain
 * faas_emit, without a callback, keeps them too. */
static void test_queue_records_survive(void **state)
{
    struct fx *f = *state;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    json_t *msg = json_pack("{s:s}", "body", "job");
    int i;

    run_start(f);
    mo.batch_size = 100;
    mo.batch_window_ms = 600000;
    assert_true(faas_map(f->rt, "queue:jobs", "fn", &mo) >= 0);
    for (i = 0; i < 7; i++)
        assert_int_equal(faas_emit(f->rt, "queue:jobs", msg), 1);
    run_end(f); /* the engine commits what is queued when it closes */
    assert_int_equal(kept_records(f, "queue:jobs fn"), 7);

    run_start(f);
    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(f->rt, "count", count_bodies, &fo), 0);
    g_queue_bodies = 0;
    mo.batch_window_ms = 0;
    mo.name = "queue:jobs fn";
    assert_true(faas_map(f->rt, "queue:jobs", "count", &mo) >= 0);
    assert_true(tu_run_until(f->base, &g_queue_bodies, 7, 10000));
    run_end(f);
    assert_int_equal(g_queue_bodies, 7);
    assert_int_equal(kept_records(f, "queue:jobs fn"), 0);
    json_decref(msg);
}

/* A host killed with SIGKILL after its records were accepted: a new host
 * on the file delivers every one of them, in order per key. */
static void test_records_survive_sigkill(void **state)
{
    struct fx *f = *state;
    int fds[2], status, i;
    pid_t pid;
    char c;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        run_start(f);
        if (map_holding(f, "k") < 0)
            _exit(2);
        for (i = 0; i < 200; i++)
            if (emit(f, i % 2 ? "x" : "y", i / 2) != 1)
                _exit(3);
        if (!tu_run_until(f->base, &f->accepted, 200, 20000))
            _exit(4);
        for (i = 0; i < 200; i++)
            if (f->accepted_rc[i] != 1)
                _exit(5);
        if (write(fds[1], "k", 1) != 1)
            _exit(6);
        for (;;)
            event_base_loop(f->base, EVLOOP_ONCE); /* until killed */
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));

    run_start(f);
    assert_true(map_sending(f, "k") >= 0);
    assert_true(tu_run_until(f->base, &f->ngot, 200, 20000));
    assert_int_equal(in_order(f, "x", 0), 100);
    assert_int_equal(in_order(f, "y", 0), 100);
    run_end(f);
    assert_int_equal(kept_records(f, "k"), 0);
}

static void on_drain(int rc, uint64_t remaining, void *arg)
{
    int *out = arg;
    out[0] = 1;
    out[1] = rc;
    out[2] = (int)remaining;
}

/* What a drain leaves (a batch waiting for its retry) stays for the next
 * start, quietly: no failure, no on_failure. */
static void test_drain_leaves_records(void **state)
{
    struct fx *f = *state;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    int drain[3] = { 0, 0, 0 };

    run_start(f);
    f->fail = 1;
    mo.name = "retrying";
    mo.on_failure = "fn";
    assert_true(faas_map(f->rt, "stream:orders", "fn", &mo) >= 0);
    assert_int_equal(emit(f, "a", 0), 1);
    assert_true(tu_run_until(f->base, &f->runs, 1, 10000));
    /* It failed once and waits for a retry on the fake clock, which stays. */
    assert_int_equal(faas_drain(f->rt, 100, on_drain, drain), 0);
    assert_true(tu_run_until(f->base, &drain[0], 1, 10000));
    assert_int_equal(drain[1], FAAS_ETIMEDOUT);
    assert_int_equal(drain[2], 1);
    assert_int_equal(emit(f, "a", 1), FAAS_EDRAINING);
    run_end(f);
    assert_int_equal(f->runs, 1); /* no on_failure event ran */
    f->fail = 0;
    assert_int_equal(kept_records(f, "retrying"), 1);

    run_start(f);
    assert_true(map_sending(f, "retrying") >= 0);
    assert_true(tu_run_until(f->base, &f->ngot, 1, 10000));
    assert_string_equal(f->got[0], "a:0");
    run_end(f);
    assert_int_equal(kept_records(f, "retrying"), 0);
}

/* Records that end badly end all the same: failed for good (to on_failure)
 * or dropped by faas_unmap, they are forgotten. */
static void test_failed_and_unmapped_forgotten(void **state)
{
    struct fx *f = *state;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    int id;

    run_start(f);
    f->fail = 1;
    mo.name = "failing";
    mo.max_retries = 0;
    assert_true(faas_map(f->rt, "stream:orders", "fn", &mo) >= 0);
    id = map_holding(f, "unmapped");
    assert_true(id >= 0);
    assert_int_equal(emit(f, "a", 0), 2);
    assert_int_equal(emit(f, "a", 1), 2);
    assert_true(tu_run_until(f->base, &f->accepted, 2, 10000));
    assert_true(tu_run_until(f->base, &f->runs, 1, 10000));
    assert_int_equal(faas_unmap(f->rt, id), 0);
    tu_run_for(f->base, 50);
    run_end(f);
    f->fail = 0;
    assert_int_equal(kept_records(f, "failing"), 0);
    assert_int_equal(kept_records(f, "unmapped"), 0);
}

/* Unmapped and mapped again under its name in the same run, before the
 * engine has committed what the unmapping dropped: the new mapping loads
 * none of it and numbers its records after it; nothing is left. */
static void test_remap_in_same_run(void **state)
{
    struct fx *f = *state;
    int id, round;

    run_start(f);
    for (round = 0; round < 20; round++) {
        id = map_holding(f, "again");
        assert_true(id >= 0);
        assert_int_equal(emit(f, "a", 2 * round), 1);
        if (round % 2)
            assert_true(tu_run_until(f->base, &f->accepted, round + 1, 10000));
        assert_int_equal(faas_unmap(f->rt, id), 0); /* drops it */
    }
    assert_true(tu_run_until(f->base, &f->accepted, 20, 10000));
    assert_true(map_sending(f, "again") >= 0);
    assert_int_equal(emit(f, "b", 100), 1);
    assert_true(tu_run_until(f->base, &f->ngot, 1, 10000));
    tu_run_for(f->base, 100);
    assert_int_equal(f->ngot, 1);
    assert_string_equal(f->got[0], "b:100");
    run_end(f);
    assert_int_equal(kept_records(f, "again"), 0);
}

static int g_dlq;
static char g_dlq_condition[64];

static int dlq(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *rc = json_object_get(event, "requestContext");
    (void)ctx;
    (void)result;
    g_dlq += (int)json_array_size(json_object_get(event, "Records"));
    snprintf(g_dlq_condition, sizeof g_dlq_condition, "%s",
             json_string_value(json_object_get(rc, "condition")));
    return 0;
}

/* A kept record's age counts from its first faas_emit, on the wall clock:
 * two hours down, a mapping with a one-hour age limit fails it for good
 * (RecordAgeExceeded, to on_failure) without running it, and forgets it. */
static void test_age_survives_restart(void **state)
{
    struct fx *f = *state;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;

    run_start(f);
    assert_true(map_holding(f, "aging") >= 0);
    assert_int_equal(emit(f, "a", 0), 1);
    assert_int_equal(emit(f, "b", 0), 1);
    assert_true(tu_run_until(f->base, &f->accepted, 2, 10000));
    run_end(f);

    advance_s(f, 2 * 3600);
    run_start(f);
    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(f->rt, "dlq", dlq, &fo), 0);
    g_dlq = 0;
    mo.name = "aging";
    mo.max_record_age_ms = 3600 * 1000;
    mo.on_failure = "dlq";
    assert_true(faas_map(f->rt, "stream:orders", "fn", &mo) >= 0);
    assert_true(tu_run_until(f->base, &g_dlq, 2, 10000));
    assert_string_equal(g_dlq_condition, "RecordAgeExceeded");
    assert_int_equal(f->runs, 0);
    run_end(f);
    assert_int_equal(kept_records(f, "aging"), 0);
}

/* A full disk (here a file size limit on a child host): the record the
 * engine cannot keep is dropped, logged, and its on_accepted says
 * FAAS_EUNAVAILABLE; the records before and after it are kept and
 * delivered by the next host. */
static void test_full_disk_refuses_record(void **state)
{
    struct fx *f = *state;
    struct rlimit lim = { 256 * 1024, 256 * 1024 };
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        char *pad = malloc(200 * 1024);
        json_t *big;
        struct faas_emit_opts eo = FAAS_EMIT_OPTS_INIT;
        if (!pad)
            _exit(2);
        memset(pad, 'x', 200 * 1024 - 1);
        pad[200 * 1024 - 1] = '\0';
        run_start(f);
        if (map_holding(f, "full") < 0 || emit(f, "a", 0) != 1 ||
            !tu_run_until(f->base, &f->accepted, 1, 10000) || f->accepted_rc[0] != 1)
            _exit(3);
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
            _exit(4);
        big = json_pack("{s:s, s:{s:i, s:s}}", "partitionKey", "big", "data", "n", 0, "pad", pad);
        eo.on_accepted = on_accepted;
        eo.accepted_arg = f;
        if (faas_emit_with(f->rt, "stream:orders", big, &eo) != 1)
            _exit(5);
        json_decref(big);
        free(pad);
        /* Answered before the next one: a failed group refuses every
         * record in it. */
        if (!tu_run_until(f->base, &f->accepted, 2, 10000))
            _exit(9);
        if (emit(f, "a", 1) != 1 || !tu_run_until(f->base, &f->accepted, 3, 10000))
            _exit(6);
        if (f->accepted_rc[1] != FAAS_EUNAVAILABLE || f->accepted_rc[2] != 1)
            _exit(7);
        if (f->refused_logs != 1)
            _exit(8);
        run_end(f);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    run_start(f);
    assert_true(map_sending(f, "full") >= 0);
    assert_true(tu_run_until(f->base, &f->ngot, 2, 10000));
    tu_run_for(f->base, 50);
    assert_int_equal(f->ngot, 2);
    assert_int_equal(in_order(f, "a", 0), 2);
    run_end(f);
    assert_int_equal(kept_records(f, "full"), 0);
}

/* One run with the allocation after `fail_at` more failing: "held" loads
 * what is kept (or fails with FAAS_ENOMEM, leaving it kept); a mapping of
 * its own takes three records, each answered exactly once, *kept of them
 * kept. Returns 1 when the countdown was not reached. */
static int run_alloc_once(struct fx *f, long fail_at, const char *name, int *kept)
{
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    struct faas_emit_opts eo = FAAS_EMIT_OPTS_INIT;
    json_t *msg = json_pack("{s:s}", "body", "m");
    int i, rc, emitted = 0, untouched;

    run_start(f);
    mo.batch_size = 100;
    mo.batch_window_ms = 600000;
    mo.name = name;
    eo.on_accepted = on_accepted;
    eo.accepted_arg = f;
    atomic_store(&faas_alloc_fail_countdown, fail_at);
    rc = map_holding(f, "held");
    if (rc < 0)
        assert_int_equal(rc, FAAS_ENOMEM);
    rc = faas_map(f->rt, "queue:q", "fn", &mo);
    if (rc < 0)
        assert_int_equal(rc, FAAS_ENOMEM);
    for (i = 0; i < 3; i++) {
        rc = faas_emit_with(f->rt, "queue:q", msg, &eo);
        if (rc >= 0)
            emitted++;
        else
            assert_int_equal(rc, FAAS_ENOMEM);
    }
    assert_true(tu_run_until(f->base, &f->accepted, emitted, 10000));
    *kept = 0;
    for (i = 0; i < f->accepted; i++) {
        assert_true(f->accepted_rc[i] == 0 || f->accepted_rc[i] == 1);
        *kept += f->accepted_rc[i];
    }
    untouched = atomic_load(&faas_alloc_fail_countdown) >= 0;
    atomic_store(&faas_alloc_fail_countdown, -1);
    run_end(f);
    assert_int_equal(f->accepted, emitted);
    json_decref(msg);
    return untouched;
}

/* Allocation failures in turn on the durable paths (load, put, answers,
 * on_accepted): nothing kept is lost, nothing leaks, every accepted emit is
 * answered once and kept when it says so. */
static void test_allocations_fail_in_turn(void **state)
{
    struct fx *f = *state;
    char name[32];
    int kept, i, done = 0;
    long n;

    run_start(f);
    assert_true(map_holding(f, "held") >= 0);
    for (i = 0; i < 3; i++)
        assert_int_equal(emit(f, "n", i), 1);
    assert_true(tu_run_until(f->base, &f->accepted, 3, 10000));
    run_end(f);
    for (n = 0; n < 400 && !done; n++) {
        snprintf(name, sizeof name, "emits-%ld", n);
        done = run_alloc_once(f, n, name, &kept);
        assert_int_equal(kept_records(f, "held"), 3);
        assert_int_equal(kept_records(f, name), kept);
    }
    print_message("%ld allocations failed in turn\n", n - 1);
    assert_true(done && n > 10);
}

/* ---- schedules ------------------------------------------------------------ */

/* Fires what is due on the fake clock and lets the events run. */
static void poll_for(struct fx *f, unsigned ms)
{
    faas_schedule_poll(f->rt);
    tu_run_for(f->base, ms);
}

/* rate(): a fire kept, the host down four and a half periods: one fire at
 * once, for the latest due time; not again after another restart; the
 * period goes on from the kept fire. A schedule never kept starts as
 * without an engine. */
static void test_schedule_missed_fires_once(void **state)
{
    struct fx *f = *state;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;

    run_start(f); /* 20:00 */
    assert_true(faas_map(f->rt, "schedule:rate(1 hour)", "fn", NULL) >= 0);
    advance_s(f, 3600);
    poll_for(f, 0);
    assert_true(tu_run_until(f->base, &f->ngot, 1, 10000));
    assert_string_equal(f->got[0], "2026-11-27T21:00:00Z");
    run_end(f);

    advance_s(f, 4 * 3600 + 1800); /* 01:30: 22:00 ... 01:00 were missed */
    run_start(f);
    mo.name = "fresh";
    assert_true(faas_map(f->rt, "schedule:rate(1 hour)", "fn", &mo) >= 0);
    assert_true(faas_map(f->rt, "schedule:rate(1 hour)", "fn", NULL) >= 0);
    assert_true(tu_run_until(f->base, &f->ngot, 1, 10000));
    poll_for(f, 100);
    assert_int_equal(f->ngot, 1);
    assert_string_equal(f->got[0], "2026-11-28T01:00:00Z");
    run_end(f);

    advance_s(f, 600); /* 01:40 */
    run_start(f);
    assert_true(faas_map(f->rt, "schedule:rate(1 hour)", "fn", NULL) >= 0);
    poll_for(f, 100);
    assert_int_equal(f->ngot, 0);
    advance_s(f, 1200); /* 02:00: the next period of the kept fire */
    poll_for(f, 0);
    assert_true(tu_run_until(f->base, &f->ngot, 1, 10000));
    assert_string_equal(f->got[0], "2026-11-28T02:00:00Z");
    run_end(f);

    advance_s(f, 60);
    run_start(f);
    assert_true(faas_map(f->rt, "schedule:rate(1 hour)", "fn", NULL) >= 0);
    poll_for(f, 100);
    assert_int_equal(f->ngot, 0);
    run_end(f);
}

/* cron() and at(): the latest missed due time of a cron, once; an at()
 * that fired never fires again. */
static void test_schedule_cron_and_at_restart(void **state)
{
    struct fx *f = *state;

    run_start(f); /* 2026-11-27T20:00 */
    assert_true(faas_map(f->rt, "schedule:cron(0 12 * * ? *)", "fn", NULL) >= 0);
    assert_true(faas_map(f->rt, "schedule:at(2026-11-27T21:00:00)", "fn", NULL) >= 0);
    advance_s(f, 3600);
    poll_for(f, 0);
    assert_true(tu_run_until(f->base, &f->ngot, 1, 10000));
    advance_s(f, 15 * 3600); /* 12:00 on the 28th */
    poll_for(f, 0);
    assert_true(tu_run_until(f->base, &f->ngot, 2, 10000));
    assert_string_equal(f->got[0], "2026-11-27T21:00:00Z");
    assert_string_equal(f->got[1], "2026-11-28T12:00:00Z");
    run_end(f);

    advance_s(f, 3 * 86400 + 3 * 3600); /* 15:00 on December 1st */
    run_start(f);
    assert_true(faas_map(f->rt, "schedule:cron(0 12 * * ? *)", "fn", NULL) >= 0);
    assert_true(faas_map(f->rt, "schedule:at(2026-11-27T21:00:00)", "fn", NULL) >= 0);
    assert_true(tu_run_until(f->base, &f->ngot, 1, 10000));
    poll_for(f, 100);
    assert_int_equal(f->ngot, 1);
    assert_string_equal(f->got[0], "2026-12-01T12:00:00Z");
    run_end(f);
}

#endif /* FAAS_WITH_SQLITE */

static void test_without_sqlite(void **state)
{
    (void)state;
#if !FAAS_WITH_SQLITE
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_without_sqlite),
#if FAAS_WITH_SQLITE
        cmocka_unit_test_setup_teardown(test_records_survive_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_per_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_records_survive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_survive_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_leaves_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_and_unmapped_forgotten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remap_in_same_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_age_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_refuses_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allocations_fail_in_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule_missed_fires_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule_cron_and_at_restart, setup, teardown),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

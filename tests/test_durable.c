/*
 * test_durable.c - the durable engine (durable.h) through the real SQLite
 * engine on a database in a fresh temporary directory: bad URLs and the
 * memory engine, every operation, what a reopen loads, completion order
 * and group commit, close (what is queued, what completions queue, a
 * runtime freed inside a completion), and the runtime's own engine
 * (faas_runtime_opts.durable). Hostile conditions are test_durable_faults.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "tu_durable.h"

/* ---- URLs ---------------------------------------------------------------- */

static void test_null_url_is_memory(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = (struct faas_durable *)f; /* must be overwritten */
    struct faas_durable_stats st;

    assert_int_equal(faas_durable_open(&d, f->rt, NULL, 1, NULL), 0);
    assert_null(d);
    faas_durable_close(NULL);
    memset(&st, 0xff, sizeof st);
    faas_durable_stats_get(NULL, &st);
    assert_int_equal(st.commits, 0);
    assert_int_equal(st.pending, 0);
    assert_null(f->rt->durable);
}

static void test_bad_urls(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = NULL;

#if FAAS_WITH_REDIS
    /* the Redis engine's own URL checks are test_durable_redis.c's */
    assert_int_equal(faas_durable_open(&d, f->rt, "redis://127.0.0.1", 1, NULL), FAAS_EINVAL);
    assert_null(d);
    assert_string_equal(f->log_action, "durable");
    assert_non_null(strstr(f->log_line, "not a Redis URL"));
#else
    assert_int_equal(faas_durable_open(&d, f->rt, "redis://127.0.0.1:6379", 1, NULL),
                     FAAS_EINVAL);
    assert_null(d);
    assert_string_equal(f->log_action, "durable");
    assert_non_null(strstr(f->log_line, "no Redis engine"));
#endif
    assert_int_equal(faas_durable_open(&d, f->rt, "postgres://x", 1, NULL), FAAS_EINVAL);
    assert_non_null(strstr(f->log_line, "not a durable engine"));
    assert_int_equal(faas_durable_open(&d, f->rt, "", 1, NULL), FAAS_EINVAL);
#if FAAS_WITH_SQLITE
    assert_int_equal(faas_durable_open(&d, f->rt, "sqlite:", 1, NULL), FAAS_EINVAL);
    assert_non_null(strstr(f->log_line, "names no database"));
    assert_int_equal(faas_durable_open(&d, f->rt, f->url, 1, ""), FAAS_EINVAL);
#else
    assert_int_equal(faas_durable_open(&d, f->rt, f->url, 1, NULL), FAAS_EINVAL);
    assert_non_null(strstr(f->log_line, "no SQLite engine"));
#endif
    assert_null(d);
    assert_int_equal(faas_durable_open(NULL, f->rt, f->url, 1, NULL), FAAS_EINVAL);
    assert_int_equal(faas_durable_open(&d, NULL, f->url, 1, NULL), FAAS_EINVAL);
}

#if FAAS_WITH_SQLITE

/* ---- events --------------------------------------------------------------- */

static void test_events_roundtrip(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 1);
    struct done_log log = { 0 };
    struct done_arg a[8];
    struct sample_events x = sample_events();
    int i;

    for (i = 0; i < 8; i++)
        a[i] = (struct done_arg){ &log, i };
    assert_int_equal(strcmp(faas_durable_node(d), "node-a"), 0);
    assert_int_equal(faas_durable_event_put(d, &x.e1, on_done, &a[0]), 0);
    assert_int_equal(faas_durable_event_put(d, &x.e2, on_done, &a[1]), 0);
    assert_int_equal(faas_durable_event_put(d, &x.e3, on_done, &a[2]), 0);
    assert_int_equal(faas_durable_event_attempt(d, "id-1", 2, on_done, &a[3]), 0);
    assert_int_equal(faas_durable_event_retry(d, "id-2", 99999, on_done, &a[4]), 0);
    assert_int_equal(faas_durable_event_end(d, "id-3", &x.nx, on_done, &a[5]), 0);
    /* the same request id again: refused by the engine, the rest commits */
    assert_int_equal(faas_durable_event_put(d, &x.e1, on_done, &a[6]), 0);
    /* never inside the call */
    assert_int_equal(log.n, 0);
    assert_true(tu_run_until(f->base, &log.n, 7, 10000));
    for (i = 0; i < 7; i++)
        assert_int_equal(log.tag[i], i);
    for (i = 0; i < 6; i++)
        assert_int_equal(log.rc[i], 0);
    assert_int_equal(log.rc[6], FAAS_EEXIST);
    faas_durable_close(d);
    assert_int_equal(log.n, 7);

    d = open_ok(f, 1);
    check_sample_load(d);
    faas_durable_close(d);
}

/* ---- records and schedules ------------------------------------------------- */

struct seen_rec {
    int n;
    uint64_t seq[16];
    char key[16][16];
    int has_key[16];
    char rec[16][64];
    int64_t arrived[16];
};

static int each_record(const struct faas_durable_record *rec, void *arg)
{
    struct seen_rec *s = arg;
    assert_true(s->n < 16);
    assert_string_equal(rec->mapping, "stream:orders fn");
    assert_int_equal(rec->record_len, strlen(rec->record));
    s->seq[s->n] = rec->seq;
    copy_opt(s->key[s->n], sizeof s->key[0], rec->key, &s->has_key[s->n]);
    snprintf(s->rec[s->n], sizeof s->rec[0], "%s", rec->record);
    s->arrived[s->n] = rec->arrived_ms;
    s->n++;
    return 0;
}

static void test_records_and_schedules(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct done_log log = { 0 };
    struct done_arg a = { &log, 0 };
    struct faas_durable_record r;
    struct seen_rec s = { 0 };
    int64_t fired = 0;
    uint64_t seq;
    char text[32];

    for (seq = 1; seq <= 5; seq++) {
        memset(&r, 0, sizeof r);
        r.mapping = seq == 3 ? "queue:other fn" : "stream:orders fn";
        r.seq = seq * 10;
        r.key = seq % 2 ? "p1" : NULL;
        snprintf(text, sizeof text, "{\"r\":%llu}", (unsigned long long)seq);
        r.record = text;
        r.record_len = strlen(text);
        r.arrived_ms = (int64_t)seq * 100;
        assert_int_equal(faas_durable_record_put(d, &r, on_done, &a), 0);
    }
    assert_int_equal(faas_durable_record_del(d, "stream:orders fn", 20, on_done, &a), 0);
    assert_int_equal(faas_durable_schedule_get(d, "sched", &fired), FAAS_ENOENT);
    assert_int_equal(faas_durable_schedule_set(d, "sched", 60000, on_done, &a), 0);
    /* from memory, before the commit */
    assert_int_equal(faas_durable_schedule_get(d, "sched", &fired), 0);
    assert_int_equal(fired, 60000);
    assert_int_equal(faas_durable_schedule_set(d, "sched", 120000, on_done, &a), 0);
    assert_int_equal(faas_durable_schedule_set(d, "other", 5, on_done, &a), 0);
    assert_true(tu_run_until(f->base, &log.n, 9, 10000));
    faas_durable_close(d);
    for (int i = 0; i < 9; i++)
        assert_int_equal(log.rc[i], 0);

    d = open_ok(f, 0);
    assert_int_equal(faas_durable_records_load(d, "stream:orders fn", each_record, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seq[0], 10);
    assert_int_equal(s.seq[1], 40);
    assert_int_equal(s.seq[2], 50);
    assert_true(s.has_key[0]);
    assert_string_equal(s.key[0], "p1");
    assert_false(s.has_key[1]);
    assert_string_equal(s.rec[1], "{\"r\":4}");
    assert_int_equal(s.arrived[2], 500);
    assert_int_equal(faas_durable_schedule_get(d, "sched", &fired), 0);
    assert_int_equal(fired, 120000);
    assert_int_equal(faas_durable_schedule_get(d, "other", &fired), 0);
    assert_int_equal(fired, 5);
    assert_int_equal(faas_durable_schedule_get(d, "none", &fired), FAAS_ENOENT);
    faas_durable_close(d);
}

/* One host owns the file: every claim wins, and is kept as the last fire. */
static void test_schedule_claim_one_host(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct claim_log log = { 0 };
    int64_t fired = 0;
    int i;

    assert_int_equal(faas_durable_schedule_claim(d, "s", 60000, 0, on_claimed, &log),
                     FAAS_EINVAL);
    assert_int_equal(faas_durable_schedule_claim(d, "s", 60000, 1, NULL, &log), FAAS_EINVAL);
    assert_int_equal(faas_durable_schedule_claim(d, "s", 60000, 60000, on_claimed, &log), 0);
    assert_int_equal(faas_durable_schedule_claim(d, "s", 60000, 60000, on_claimed, &log), 0);
    assert_int_equal(faas_durable_schedule_claim(d, "s", 90000, 60000, on_claimed, &log), 0);
    assert_int_equal(log.n, 0);
    assert_true(tu_run_until(f->base, &log.n, 3, 10000));
    for (i = 0; i < 3; i++)
        assert_int_equal(log.rc[i], 0);
    assert_int_equal(log.fleet_ms[2], 90000);
    faas_durable_close(d);
    d = open_ok(f, 0);
    assert_int_equal(faas_durable_schedule_get(d, "s", &fired), 0);
    assert_int_equal(fired, 90000);
    faas_durable_close(d);
}

/* ---- group commit and order ------------------------------------------------ */

static void test_group_commit_order(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 1);
    static struct done_log log;
    static struct done_arg a[1000];
    struct faas_durable_stats st0, st1;
    char id[40];
    int i;

    memset(&log, 0, sizeof log);
    faas_durable_stats_get(d, &st0);
    /* 1000 operations queued in one turn of the loop: a handful of
     * transactions, not one each. */
    for (i = 0; i < 1000; i++) {
        struct faas_durable_event ev;
        a[i] = (struct done_arg){ &log, i };
        snprintf(id, sizeof id, "ev-%04d", i % 3 == 2 ? i - 1 : i);
        ev = mkevent(id, "fn", "{}", i);
        if (i % 3 == 2)
            assert_int_equal(faas_durable_event_end(d, id, NULL, on_done, &a[i]), 0);
        else
            assert_int_equal(faas_durable_event_put(d, &ev, on_done, &a[i]), 0);
    }
    faas_durable_stats_get(d, &st1);
    assert_true(st1.pending > 0 && st1.pending <= 1000);
    assert_true(tu_run_until(f->base, &log.n, 1000, 30000));
    faas_durable_stats_get(d, &st1);
    assert_int_equal(st1.pending, 0);
    assert_true(st1.commits - st0.commits >= 1);
    assert_true(st1.commits - st0.commits <= 10);
    assert_int_equal(st1.refused, 0);
    {
        uint64_t sum = 0;
        for (i = 0; i < 12; i++)
            sum += st1.commit_buckets[i];
        assert_int_equal(sum, st1.commits);
        assert_true(st1.commit_ns_sum > 0);
    }
    for (i = 0; i < 1000; i++) {
        assert_int_equal(log.tag[i], i);
        assert_int_equal(log.rc[i], 0);
    }
    faas_durable_close(d);
    d = open_ok(f, 1);
    /* every third was an end of the one put just before it */
    assert_int_equal(count_events(d), 1000 - 2 * 333);
    faas_durable_close(d);
}

static void test_close_commits_queued(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 1);
    struct done_log log = { 0 };
    struct done_arg a[50];
    static struct seen s;
    char id[40];
    int i;

    for (i = 0; i < 50; i++) {
        struct faas_durable_event ev;
        a[i] = (struct done_arg){ &log, i };
        snprintf(id, sizeof id, "q-%02d", i);
        ev = mkevent(id, "fn", "{}", i);
        assert_int_equal(faas_durable_event_put(d, &ev, on_done, &a[i]), 0);
    }
    /* close without running the loop: everything committed, every
     * completion run inside the call */
    faas_durable_close(d);
    assert_int_equal(log.n, 50);
    for (i = 0; i < 50; i++)
        assert_int_equal(log.rc[i], 0);
    d = open_ok(f, 1);
    assert_int_equal(faas_durable_events_load(d, each_event, &s), 0);
    assert_int_equal(s.n, 50);
    faas_durable_close(d);
}


/* A completion that queues the next step (as an async event's acceptance
 * queues its attempt). */
struct chain {
    struct faas_durable *d;
    struct done_log *log;
    struct done_arg next;
    int queued_rc;
};

static void on_done_chain(int rc, void *arg)
{
    struct chain *c = arg;
    struct done_arg self = { c->log, 100 };
    on_done(rc, &self);
    c->queued_rc = faas_durable_event_end(c->d, "chained", NULL, on_done, &c->next);
}

static void test_close_commits_what_completions_queue(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 1);
    struct done_log log = { 0 };
    struct chain c = { d, &log, { &log, 101 }, -1 };
    struct faas_durable_event ev = mkevent("chained", "fn", "{}", 1);

    assert_int_equal(faas_durable_event_put(d, &ev, on_done_chain, &c), 0);
    faas_durable_close(d);
    assert_int_equal(c.queued_rc, 0);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.tag[0], 100);
    assert_int_equal(log.tag[1], 101);
    assert_int_equal(log.rc[1], 0);
    d = open_ok(f, 1);
    assert_int_equal(count_events(d), 0);
    faas_durable_close(d);
}

/* A completion that frees the runtime, whose engine it came from. */
struct freeing {
    struct faas_runtime *rt;
    struct done_log *log;
};

static void on_done_free(int rc, void *arg)
{
    struct freeing *fr = arg;
    struct done_arg self = { fr->log, 0 };
    on_done(rc, &self);
    faas_runtime_free(fr->rt);
}

static void test_free_runtime_inside_completion(void **state)
{
    struct fx *f = *state;
    struct faas_runtime *rt = NULL;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct done_log log = { 0 };
    struct freeing fr = { NULL, &log };
    struct done_arg a[20];
    char id[40];
    int i;

    o.zygote = 0;
    o.durable = f->url;
    assert_int_equal(faas_runtime_new(&rt, f->base, &o), 0);
    fr.rt = rt;
    for (i = 0; i < 20; i++) {
        struct faas_durable_event ev;
        a[i] = (struct done_arg){ &log, i };
        snprintf(id, sizeof id, "fr-%02d", i);
        ev = mkevent(id, "fn", "{}", i);
        assert_int_equal(faas_durable_event_put(rt->durable, &ev,
                                                i == 0 ? on_done_free : on_done,
                                                i == 0 ? (void *)&fr : (void *)&a[i]),
                         0);
    }
    /* the first completion frees the runtime: the rest run once each,
     * in the batch or inside the engine's close */
    assert_true(tu_run_until(f->base, &log.n, 20, 10000));
    tu_run_for(f->base, 20);
    assert_int_equal(log.n, 20);
    for (i = 0; i < 20; i++) {
        assert_int_equal(log.tag[i], i);
        assert_int_equal(log.rc[i], 0);
    }
}

/* ---- the runtime's engine ----------------------------------------------------- */

static void test_runtime_opens_engine(void **state)
{
    struct fx *f = *state;
    struct faas_runtime *rt = NULL;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    char url[200];
    struct done_log log = { 0 };
    struct done_arg a = { &log, 0 };
    struct faas_durable_event ev = mkevent("rt-1", "fn", "{}", 1);
    struct faas_durable *d;

    o.zygote = 1;
    o.node_id = "gw-7";
    snprintf(url, sizeof url, "%s", f->url);
    o.durable = url;
    assert_int_equal(faas_runtime_new(&rt, f->base, &o), 0);
    /* the options' strings were copied */
    memset(url, 0, sizeof url);
    assert_non_null(rt->durable);
    assert_string_equal(faas_durable_node(rt->durable), "gw-7");
    assert_int_equal(faas_durable_event_put(rt->durable, &ev, on_done, &a), 0);
    /* freeing the runtime closes the engine: the completion runs inside */
    faas_runtime_free(rt);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.rc[0], 0);
    d = open_ok(f, 1);
    assert_int_equal(count_events(d), 1);
    faas_durable_close(d);

    /* default node id: hostname:pid */
    o.node_id = NULL;
    o.durable = f->url;
    rt = NULL;
    assert_int_equal(faas_runtime_new(&rt, f->base, &o), 0);
    {
        char want[32];
        const char *node = faas_durable_node(rt->durable);
        snprintf(want, sizeof want, ":%ld", (long)getpid());
        assert_true(strlen(node) > strlen(want));
        assert_string_equal(node + strlen(node) - strlen(want), want);
    }
    faas_runtime_free(rt);

    o.durable = "redis://127.0.0.1:1";
    rt = NULL;
#if FAAS_WITH_REDIS
    /* nothing listens there: refused after a bounded connect */
    assert_int_equal(faas_runtime_new(&rt, f->base, &o), FAAS_EUNAVAILABLE);
#else
    assert_int_equal(faas_runtime_new(&rt, f->base, &o), FAAS_EINVAL);
#endif
    assert_null(rt);
}

static void test_metrics_only_with_engine(void **state)
{
    struct fx *f = *state;
    struct evbuffer *b = evbuffer_new();
    size_t n;
    char *text;

    /* the fixture's runtime keeps state in memory: no durable figures */
    assert_int_equal(faas_metrics_write(f->rt, b), 0);
    n = evbuffer_get_length(b);
    text = calloc(1, n + 1);
    assert_non_null(text);
    evbuffer_remove(b, text, n);
    assert_null(strstr(text, "faas_durable"));
    free(text);
    evbuffer_free(b);
}

#endif /* FAAS_WITH_SQLITE */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_null_url_is_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
#if FAAS_WITH_SQLITE
        cmocka_unit_test_setup_teardown(test_events_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_and_schedules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule_claim_one_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_commits_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_commits_what_completions_queue, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_free_runtime_inside_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_opens_engine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_only_with_engine, setup, teardown),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

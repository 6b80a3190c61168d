/*
 * test_durable_redis.c - the Redis engine (lib/durable_redis.c) against a
 * real redis-server of the suite's own (tests/redis_util.h): operations and
 * reloads, key prefixes, close, bad URLs, a server stopped mid-run and
 * restarted on its port, a server that stops answering (SIGSTOP); hosts
 * sharing it: one idempotency key, schedule claims, a schedule mapped on
 * three runtimes (one fake clock) firing each due time once.
 * Skipped, with the reason printed, when redis-server is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "tu_durable.h"

#if FAAS_WITH_REDIS
#include "redis_util.h"

static struct tu_redis srv;
static int have_srv;

static int group_setup(void **state)
{
    (void)state;
    return tu_redis_suite_start(&srv, &have_srv, "the Redis engine's tests are");
}

static int group_teardown(void **state)
{
    (void)state;
    if (have_srv)
        tu_redis_stop(&srv);
    return 0;
}

static int rsetup(void **state)
{
    struct fx *f;
    if (!have_srv)
        skip();
    setup(state);
    f = *state;
    assert_int_equal(tu_redis_cmd(&srv, "FLUSHALL"), 0);
    snprintf(f->url, sizeof f->url, "%s", srv.url);
    return 0;
}

static struct done_arg *tags(struct done_log *log, struct done_arg *a, int n)
{
    int i;
    for (i = 0; i < n; i++)
        a[i] = (struct done_arg){ log, i };
    return a;
}

static void test_bad_urls(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = NULL;
    static const char *const bad[] = { "redis://host",          "redis://127.0.0.1:0",
                                       "redis://127.0.0.1:70000", "redis://u@127.0.0.1:1",
                                       "redis://127.0.0.1:1/x",   "redis://:6379",
                                       "redis://127.0.0.1:1?a=b" };
    char url[64];
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f->nlogs = 0;
        assert_int_equal(faas_durable_open(&d, f->rt, bad[i], 0, NULL), FAAS_EINVAL);
        assert_null(d);
        assert_int_equal(f->nlogs, 1);
        assert_string_equal(f->log_action, "durable");
    }
    /* nothing listens there: refused after a bounded connect */
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", tu_redis_free_port());
    f->nlogs = 0;
    assert_int_equal(faas_durable_open(&d, f->rt, url, 0, NULL), FAAS_EUNAVAILABLE);
    assert_null(d);
    assert_true(f->nlogs >= 1);
    assert_non_null(strstr(f->log_line, "cannot connect"));
}

static void test_events_roundtrip(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct done_log log = { 0 };
    struct done_arg a[6];
    struct sample_events x = sample_events();
    int i;

    tags(&log, a, 6);
    assert_int_equal(faas_durable_event_put(d, &x.e1, on_done, &a[0]), 0);
    assert_int_equal(faas_durable_event_put(d, &x.e2, on_done, &a[1]), 0);
    assert_int_equal(faas_durable_event_put(d, &x.e3, on_done, &a[2]), 0);
    assert_true(tu_run_until(f->base, &log.n, 3, 10000));
    /* this node takes id-2 from its function's queue, as its reader
     * would: a retry moves only an event its host holds */
    assert_int_equal(tu_redis_cmd(&srv, "XGROUP CREATE faas:q:fb workers 0 MKSTREAM"), 0);
    assert_int_equal(tu_redis_cmd(&srv, "XREADGROUP GROUP workers node-a STREAMS faas:q:fb >"),
                     0);
    assert_int_equal(faas_durable_event_attempt(d, "id-1", 2, on_done, &a[3]), 0);
    assert_int_equal(faas_durable_event_retry(d, "id-2", 99999, on_done, &a[4]), 0);
    assert_int_equal(faas_durable_event_end(d, "id-3", &x.nx, on_done, &a[5]), 0);
    /* Request ids are random: a put looks for an earlier copy of itself
     * only when sent again (test_resent_put_answers_as_before). */
    assert_int_equal(log.n, 3);
    assert_true(tu_run_until(f->base, &log.n, 6, 10000));
    for (i = 0; i < 6; i++) {
        assert_int_equal(log.tag[i], i);
        assert_int_equal(log.rc[i], 0);
    }
    faas_durable_close(d);

    d = open_ok(f, 0);
    check_sample_load(d);
    faas_durable_close(d);
}

static int each_rec(const struct faas_durable_record *rec, void *arg)
{
    int *n = arg;
    assert_int_equal(rec->seq, (uint64_t)(*n == 0 ? 10 : 30));
    assert_string_equal(rec->record, *n == 0 ? "{\"r\":1}" : "{\"r\":3}");
    assert_int_equal(rec->arrived_ms, *n == 0 ? 100 : 300);
    if (*n == 0)
        assert_string_equal(rec->key, "p1");
    else
        assert_null(rec->key);
    (*n)++;
    return 0;
}

static void test_records_schedules_prefix(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct done_log log = { 0 };
    struct done_arg a = { &log, 0 };
    struct faas_durable_record r;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct event_base *base2;
    struct faas_runtime *rt2;
    int64_t fired = 0;
    char text[32];
    uint64_t seq;
    int n = 0;

    for (seq = 1; seq <= 3; seq++) {
        memset(&r, 0, sizeof r);
        r.mapping = "stream:orders fn";
        r.seq = seq * 10;
        r.key = seq == 1 ? "p1" : NULL;
        snprintf(text, sizeof text, "{\"r\":%llu}", (unsigned long long)seq);
        r.record = text;
        r.record_len = strlen(text);
        r.arrived_ms = (int64_t)seq * 100;
        assert_int_equal(faas_durable_record_put(d, &r, on_done, &a), 0);
    }
    assert_int_equal(faas_durable_record_del(d, "stream:orders fn", 20, on_done, &a), 0);
    assert_int_equal(faas_durable_schedule_set(d, "sched", 60000, on_done, &a), 0);
    assert_int_equal(faas_durable_schedule_set(d, "sched", 120000, on_done, &a), 0);
    assert_true(tu_run_until(f->base, &log.n, 6, 10000));
    faas_durable_close(d);
    for (int i = 0; i < 6; i++)
        assert_int_equal(log.rc[i], 0);

    d = open_ok(f, 0);
    assert_int_equal(faas_durable_records_load(d, "stream:orders fn", each_rec, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(faas_durable_schedule_get(d, "sched", &fired), 0);
    assert_int_equal(fired, 120000);
    faas_durable_close(d);

    /* another prefix sees none of it */
    o.zygote = 0;
    o.durable_prefix = "other";
    tu_rt_new(&base2, &rt2, &o);
    assert_int_equal(faas_durable_open(&d, rt2, f->url, 0, NULL), 0);
    assert_int_equal(faas_durable_schedule_get(d, "sched", &fired), FAAS_ENOENT);
    assert_int_equal(count_events(d), 0);
    faas_durable_close(d);
    tu_rt_free(&rt2, &base2);
}

struct seen_idem {
    int n;
    char key[4][8];
    int state[4];
    char payload[4][32];
};

static int each_idem(const struct faas_durable_idem *rec, void *arg)
{
    struct seen_idem *s = arg;
    assert_true(s->n < 4);
    assert_string_equal(rec->scope, "fn");
    snprintf(s->key[s->n], sizeof s->key[0], "%s", rec->key);
    s->state[s->n] = rec->state;
    snprintf(s->payload[s->n], sizeof s->payload[0], "%s", rec->payload ? rec->payload : "-");
    s->n++;
    return 0;
}

static void test_idem_records(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct done_log log = { 0 };
    struct done_arg a = { &log, 0 };
    struct faas_durable_idem rec;
    struct seen_idem s = { 0 };

    memset(&rec, 0, sizeof rec);
    rec.scope = "fn";
    rec.key = "k1";
    rec.state = FAAS_STORE_INPROGRESS;
    rec.owner = "owner-1";
    rec.expires_ms = 100;
    assert_int_equal(faas_durable_idem_set(d, &rec, 1, on_done, &a), 0);
    rec.key = "k2";
    rec.expires_ms = 5000;
    assert_int_equal(faas_durable_idem_set(d, &rec, 1, on_done, &a), 0);
    rec.key = "k3";
    assert_int_equal(faas_durable_idem_set(d, &rec, 1, on_done, &a), 0);
    rec.key = "k2";
    rec.state = FAAS_STORE_COMPLETED;
    rec.payload = "{\"ok\":1}";
    rec.payload_len = 8;
    assert_int_equal(faas_durable_idem_set(d, &rec, 0, on_done, &a), 0);
    assert_int_equal(faas_durable_idem_del(d, "fn", "k3", 0, on_done, &a), 0);
    assert_int_equal(faas_durable_idem_del(d, "fn", NULL, 200, on_done, &a), 0); /* k1 */
    assert_int_equal(faas_durable_nop(d, on_done, &a), 0);
    assert_true(tu_run_until(f->base, &log.n, 7, 10000));
    for (int i = 0; i < 7; i++)
        assert_int_equal(log.rc[i], 0);
    assert_int_equal(faas_durable_idem_load(d, "fn", each_idem, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.key[0], "k2");
    assert_int_equal(s.state[0], FAAS_STORE_COMPLETED);
    assert_string_equal(s.payload[0], "{\"ok\":1}");
    faas_durable_close(d);
}

static void test_close_commits_queued(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct done_log log = { 0 };
    struct done_arg a[50];
    char id[40];
    int i;

    tags(&log, a, 50);
    for (i = 0; i < 50; i++) {
        struct faas_durable_event ev;
        snprintf(id, sizeof id, "q-%02d", i);
        ev = mkevent(id, "fn", "{}", i);
        assert_int_equal(faas_durable_event_put(d, &ev, on_done, &a[i]), 0);
    }
    faas_durable_close(d);
    assert_int_equal(log.n, 50);
    for (i = 0; i < 50; i++) {
        assert_int_equal(log.tag[i], i);
        assert_int_equal(log.rc[i], 0);
    }
    d = open_ok(f, 0);
    assert_int_equal(count_events(d), 50);
    faas_durable_close(d);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Drives the loop for `ms`. */
static void run_for(struct event_base *base, unsigned ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Puts one event and waits for its completion; returns its code. */
static int put_one(struct fx *f, struct faas_durable *d, const char *id)
{
    struct done_log log = { 0 };
    struct done_arg a = { &log, 0 };
    struct faas_durable_event ev = mkevent(id, "fn", "{}", 1);

    assert_int_equal(faas_durable_event_put(d, &ev, on_done, &a), 0);
    assert_true(tu_run_until(f->base, &log.n, 1, 15000));
    return log.rc[0];
}

static void test_server_lost_and_back(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct done_log log = { 0 };
    struct done_arg a[4];
    double cpu0, wall0, cpu, wall;

    tags(&log, a, 4);
    assert_int_equal(put_one(f, d, "before"), 0);
    tu_redis_kill(&srv);
    /* an adding operation is refused; a moving one is kept */
    assert_int_equal(put_one(f, d, "while-down"), FAAS_EUNAVAILABLE);
    assert_int_equal(faas_durable_schedule_set(d, "before", 3, on_done, &a[0]), 0);
    cpu0 = cpu_seconds();
    wall0 = tu_redis_now();
    run_for(f->base, 1500);
    cpu = cpu_seconds() - cpu0;
    wall = tu_redis_now() - wall0;
    assert_int_equal(log.n, 0);
    /* reconnects back off: no busy loop */
    assert_true(cpu < wall * 0.2);
    assert_true(strstr(f->log_line, "unreachable") != NULL);
    assert_int_equal(put_one(f, d, "still-down"), FAAS_EUNAVAILABLE);
    assert_int_equal(tu_redis_spawn(&srv), 0);
    /* the kept operation commits after the reconnect (within the backoff) */
    assert_true(tu_run_until(f->base, &log.n, 1, 15000));
    assert_int_equal(log.rc[0], 0);
    assert_non_null(strstr(f->log_line, "reachable again"));
    assert_int_equal(put_one(f, d, "after"), 0);
    faas_durable_close(d);
}

static void test_command_timeout(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct done_log log = { 0 };
    struct done_arg a[4];

    tags(&log, a, 4);
    assert_int_equal(put_one(f, d, "before"), 0);
    kill(srv.pid, SIGSTOP);
    assert_int_equal(faas_durable_event_attempt(d, "before", 2, on_done, &a[0]), 0);
    /* no answer: the put times out and is refused, the attempt is kept */
    assert_int_equal(put_one(f, d, "stopped"), FAAS_EUNAVAILABLE);
    assert_int_equal(log.n, 0);
    assert_non_null(strstr(f->log_line, "timed out"));
    kill(srv.pid, SIGCONT);
    assert_true(tu_run_until(f->base, &log.n, 1, 15000));
    assert_int_equal(log.rc[0], 0);
    assert_int_equal(put_one(f, d, "after"), 0);
    faas_durable_close(d);
}

/* One integer reply of `cmd` (a key's length), or -1. */
static long long redis_int(const char *cmd)
{
    redisContext *c = redisConnect("127.0.0.1", srv.port);
    redisReply *rep;
    long long n = -1;

    assert_non_null(c);
    rep = redisCommand(c, cmd);
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        n = rep->integer;
    freeReplyObject(rep);
    redisFree(c);
    return n;
}

/* An end and its destination, sent to a server that stopped answering
 * (SIGSTOP) and applied when it goes on: sent again after the reconnect, it
 * finds its destination already put and answers as the first would have;
 * the destination is in its function's stream once. */
static void test_resent_put_answers_as_before(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct done_log log = { 0 };
    struct done_arg a[1];
    struct faas_durable_event next = mkevent("dest-1", "fd", "{}", 2);

    tags(&log, a, 1);
    assert_int_equal(put_one(f, d, "src-1"), 0);
    kill(srv.pid, SIGSTOP);
    assert_int_equal(faas_durable_event_end(d, "src-1", &next, on_done, &a[0]), 0);
    assert_int_equal(put_one(f, d, "stopped"), FAAS_EUNAVAILABLE); /* the link drops */
    kill(srv.pid, SIGCONT);
    assert_true(tu_run_until(f->base, &log.n, 1, 15000));
    assert_int_equal(log.rc[0], 0);
    assert_int_equal(redis_int("XLEN faas:q:fd"), 1);
    assert_int_equal(redis_int("EXISTS faas:ev:dest-1"), 1);
    assert_int_equal(redis_int("EXISTS faas:ev:src-1"), 0);
    faas_durable_close(d);
}

/* An error reply (the script cache flushed by an operator) drops the link:
 * the moving operation is kept and commits after the reconnect, which
 * loads the script again. */
static void test_error_reply(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct done_log log = { 0 };
    struct done_arg a[2];
    struct seen s = { 0 };

    tags(&log, a, 2);
    assert_int_equal(put_one(f, d, "e1"), 0);
    assert_int_equal(tu_redis_cmd(&srv, "SCRIPT FLUSH"), 0);
    assert_int_equal(faas_durable_event_attempt(d, "e1", 4, on_done, &a[0]), 0);
    assert_true(tu_run_until(f->base, &log.n, 1, 15000));
    assert_int_equal(log.rc[0], 0);
    assert_non_null(strstr(f->log_line, "reachable again"));
    assert_int_equal(faas_durable_events_load(d, each_event, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ev[0].attempts, 4);
    assert_int_equal(put_one(f, d, "e2"), 0);
    faas_durable_close(d);
}

static void test_runtime_unreachable(void **state)
{
    struct fx *f = *state;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_runtime *rt = NULL;
    struct event_base *base = event_base_new();
    char url[64];

    (void)f;
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", tu_redis_free_port());
    o.zygote = 0;
    o.durable = url;
    assert_int_equal(faas_runtime_new(&rt, base, &o), FAAS_EUNAVAILABLE);
    assert_null(rt);
    o.durable = srv.url;
    assert_int_equal(faas_runtime_new(&rt, base, &o), 0);
    faas_runtime_free(rt);
    event_base_free(base);
}


/* ---- the shared idempotency store ------------------------------------------ */

struct sanswer {
    int calls, rc, has_rec;
    struct faas_store_record rec;
    json_t *payload;
    char validation[33], owner[40];
};

static void on_sanswer(int rc, const struct faas_store_record *rec, void *arg)
{
    struct sanswer *a = arg;
    a->calls++;
    a->rc = rc;
    a->has_rec = rec != NULL;
    if (rec) {
        a->rec = *rec;
        a->payload = json_incref(rec->payload);
        snprintf(a->validation, sizeof a->validation, "%s", rec->validation ? rec->validation : "");
        snprintf(a->owner, sizeof a->owner, "%s", rec->owner ? rec->owner : "");
        a->rec.validation = rec->validation ? a->validation : NULL;
        a->rec.owner = rec->owner ? a->owner : NULL;
    }
}

enum sop { S_GET, S_PUT, S_COMPLETE, S_REMOVE };

/* One store operation, answered later on the loop: returns its code. */
static int sop(struct fx *f, struct faas_store *st, enum sop what, const char *key,
               const struct faas_store_record *r, const char *owner, int64_t now,
               struct sanswer *a)
{
    int rc;
    json_decref(a->payload);
    memset(a, 0, sizeof *a);
    switch (what) {
    case S_GET:
        rc = faas_store_get(st, key, now, on_sanswer, a);
        break;
    case S_PUT:
        rc = faas_store_put_if_absent(st, key, r, now, on_sanswer, a);
        break;
    case S_COMPLETE:
        rc = faas_store_complete(st, key, r, now, on_sanswer, a);
        break;
    default:
        rc = faas_store_remove(st, key, owner, now, on_sanswer, a);
        break;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(a->calls, 0); /* never inside the call */
    assert_true(tu_run_until(f->base, &a->calls, 1, 10000));
    return a->rc;
}

static struct faas_store_record mkrec(enum faas_store_state state, int status, json_t *payload,
                                      const char *validation, int64_t expires_ms)
{
    struct faas_store_record r;
    memset(&r, 0, sizeof r);
    r.state = state;
    r.status = status;
    r.payload = payload;
    r.validation = validation;
    r.expires_ms = expires_ms;
    return r;
}

static const char k1[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char k2[] = "2222222222222222222222222222222222222222222222222222222222222222";

static void test_store_semantics(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct faas_store *st = NULL;
    json_t *payload = json_pack("{s:i}", "order", 42);
    const char *v1 = "00112233445566778899aabbccddeeff";
    const char *v2 = "ffeeddccbbaa99887766554433221100";
    struct faas_store_record r = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, v1, 5000);
    struct faas_store_record done = mkrec(FAAS_STORE_COMPLETED, 7, payload, v2, 9000);
    struct sanswer a = { 0 };

    assert_int_equal(faas_durable_shared(d), 1);
    assert_int_equal(faas_durable_shared_store_new(d, "fn", 0, &st), 0);
    assert_int_equal(sop(f, st, S_GET, k1, NULL, NULL, 100, &a), FAAS_ENOENT);
    assert_false(a.has_rec);
    assert_int_equal(sop(f, st, S_COMPLETE, k1, &done, NULL, 100, &a), FAAS_ENOENT);
    assert_int_equal(sop(f, st, S_REMOVE, k1, NULL, NULL, 100, &a), FAAS_ENOENT);
    /* put: the new record comes back */
    assert_int_equal(sop(f, st, S_PUT, k1, &r, NULL, 100, &a), 0);
    assert_true(a.has_rec);
    assert_int_equal(a.rec.state, FAAS_STORE_INPROGRESS);
    assert_null(a.rec.payload);
    assert_string_equal(a.rec.validation, v1);
    assert_int_equal(a.rec.expires_ms, 5000);
    /* a second put finds the live one and leaves it */
    assert_int_equal(sop(f, st, S_PUT, k1, &done, NULL, 200, &a), FAAS_EEXIST);
    assert_int_equal(a.rec.state, FAAS_STORE_INPROGRESS);
    assert_string_equal(a.rec.validation, v1);
    assert_int_equal(sop(f, st, S_GET, k2, NULL, NULL, 200, &a), FAAS_ENOENT);
    /* complete replaces everything */
    assert_int_equal(sop(f, st, S_COMPLETE, k1, &done, NULL, 300, &a), 0);
    assert_int_equal(a.rec.state, FAAS_STORE_COMPLETED);
    assert_int_equal(a.rec.status, 7);
    assert_true(json_equal(a.rec.payload, payload));
    assert_string_equal(a.rec.validation, v2);
    assert_int_equal(a.rec.expires_ms, 9000);
    assert_int_equal(sop(f, st, S_GET, k1, NULL, NULL, 400, &a), 0);
    assert_int_equal(a.rec.status, 7);
    assert_true(json_equal(a.rec.payload, payload));
    done.validation = NULL;
    assert_int_equal(sop(f, st, S_COMPLETE, k1, &done, NULL, 500, &a), 0);
    assert_null(a.rec.validation);
    assert_int_equal(sop(f, st, S_REMOVE, k1, NULL, NULL, 600, &a), 0);
    assert_false(a.has_rec);
    assert_int_equal(sop(f, st, S_GET, k1, NULL, NULL, 600, &a), FAAS_ENOENT);
    assert_int_equal(sop(f, st, S_REMOVE, k1, NULL, NULL, 600, &a), FAAS_ENOENT);
    assert_int_equal(sop(f, st, S_PUT, k1, &r, NULL, 700, &a), 0);

    /* expiry: the caller's clock decides */
    r.expires_ms = 1000;
    assert_int_equal(sop(f, st, S_PUT, k2, &r, NULL, 0, &a), 0);
    assert_int_equal(sop(f, st, S_GET, k2, NULL, NULL, 999, &a), 0);
    assert_int_equal(sop(f, st, S_PUT, k2, &done, NULL, 999, &a), FAAS_EEXIST);
    assert_int_equal(sop(f, st, S_GET, k2, NULL, NULL, 1000, &a), FAAS_ENOENT);
    assert_int_equal(sop(f, st, S_PUT, k2, &r, NULL, 0, &a), 0);
    assert_int_equal(sop(f, st, S_COMPLETE, k2, &done, NULL, 1000, &a), FAAS_ENOENT);
    assert_int_equal(sop(f, st, S_PUT, k2, &r, NULL, 0, &a), 0);
    assert_int_equal(sop(f, st, S_PUT, k2, &done, NULL, 1000, &a), 0); /* replaced */
    assert_int_equal(a.rec.status, 7);
    r.expires_ms = -5; /* negative times are just times */
    assert_int_equal(sop(f, st, S_REMOVE, k2, NULL, NULL, 1, &a), 0);
    assert_int_equal(sop(f, st, S_PUT, k2, &r, NULL, -10, &a), 0);
    assert_int_equal(sop(f, st, S_GET, k2, NULL, NULL, -6, &a), 0);
    assert_int_equal(sop(f, st, S_GET, k2, NULL, NULL, -5, &a), FAAS_ENOENT);

    /* owners: complete and remove act only on the owner's record */
    r = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, 5000);
    r.owner = "11111111-1111-4111-8111-111111111111";
    done.owner = "22222222-2222-4222-8222-222222222222";
    assert_int_equal(sop(f, st, S_REMOVE, k1, NULL, NULL, 800, &a), 0);
    assert_int_equal(sop(f, st, S_PUT, k1, &r, NULL, 800, &a), 0);
    assert_string_equal(a.rec.owner, r.owner);
    assert_int_equal(sop(f, st, S_COMPLETE, k1, &done, NULL, 800, &a), FAAS_ENOENT);
    assert_int_equal(sop(f, st, S_REMOVE, k1, NULL, done.owner, 800, &a), FAAS_ENOENT);
    done.owner = r.owner;
    assert_int_equal(sop(f, st, S_COMPLETE, k1, &done, NULL, 800, &a), 0);
    assert_int_equal(sop(f, st, S_REMOVE, k1, NULL, r.owner, 800, &a), 0);

    /* too big for the bound */
    faas_store_free(st);
    assert_int_equal(faas_durable_shared_store_new(d, "fn", 300, &st), 0);
    r.owner = NULL;
    assert_int_equal(sop(f, st, S_PUT, k1, &r, NULL, 900, &a), 0);
    json_decref(done.payload);
    {
        char big[301];
        memset(big, 'x', 300);
        big[300] = '\0';
        done.payload = json_pack("{s:s}", "big", big);
    }
    payload = done.payload;
    done.owner = NULL;
    /* a refused put keeps nothing; a refused complete drops the record */
    assert_int_equal(sop(f, st, S_PUT, k2, &done, NULL, 900, &a), FAAS_ETOOBIG);
    assert_false(a.has_rec);
    assert_int_equal(sop(f, st, S_GET, k2, NULL, NULL, 900, &a), FAAS_ENOENT);
    assert_int_equal(sop(f, st, S_COMPLETE, k1, &done, NULL, 900, &a), FAAS_ETOOBIG);
    assert_int_equal(sop(f, st, S_GET, k1, NULL, NULL, 900, &a), FAAS_ENOENT);
    json_decref(a.payload);
    faas_store_free(st);
    json_decref(payload);
    faas_durable_close(d);
}

/* A store freed with answers on the way still answers each once. */
static void test_store_freed_with_answers_owed(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct faas_store *st = NULL;
    struct faas_store_record r = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, 5000);
    struct sanswer a = { 0 }, b = { 0 };

    assert_int_equal(faas_durable_shared_store_new(d, "fn", 0, &st), 0);
    assert_int_equal(faas_store_put_if_absent(st, k1, &r, 1, on_sanswer, &a), 0);
    assert_int_equal(faas_store_put_if_absent(st, k1, &r, 1, on_sanswer, &b), 0);
    faas_store_free(st);
    assert_true(tu_run_until(f->base, &b.calls, 1, 10000));
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, FAAS_EEXIST);
    /* and an answer owed at close comes from the close */
    assert_int_equal(faas_durable_shared_store_new(d, "fn", 0, &st), 0);
    memset(&a, 0, sizeof a);
    assert_int_equal(faas_store_get(st, k1, 1, on_sanswer, &a), 0);
    faas_durable_close(d);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.rc, 0);
    faas_store_free(st);
}

/* ---- two hosts on one Redis -------------------------------------------------- */

static atomic_int fleet_runs;

static int fleet_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_pack("{s:i}", "run", atomic_fetch_add(&fleet_runs, 1) + 1);
    return 0;
}

struct host {
    struct event_base *base;
    struct faas_runtime *rt;
    int results, status, replayed;
    json_t *payload;
};

static void host_result(const struct faas_result *res, void *arg)
{
    struct host *h = arg;
    h->results++;
    h->status = faas_result_status(res);
    h->replayed = faas_result_replayed(res);
    json_decref(h->payload);
    h->payload = json_incref(faas_result_payload(res));
}

static void host_new(struct host *h, const char *url, const char *node)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;

    memset(h, 0, sizeof *h);
    o.zygote = 0;
    o.durable = url;
    o.node_id = node;
    tu_rt_new(&h->base, &h->rt, &o);
    io.key_path = "order";
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.idempotency = &io;
    assert_int_equal(faas_register(h->rt, "orders", fleet_handler, &fo), 0);
}

/* Runs base's loop until rt's engine holds no operation: every answer is
 * in. */
static void engine_settle(struct event_base *base, struct faas_runtime *rt)
{
    uint64_t end = tu_now_ms() + 10000;
    struct faas_durable_stats ds;

    for (;;) {
        faas_durable_stats_get(rt->durable, &ds);
        if (ds.pending == 0 || tu_now_ms() > end)
            break;
        event_base_loop(base, EVLOOP_ONCE);
    }
    assert_int_equal(ds.pending, 0);
}

/* The record's complete, sent after the result, is in Redis. */
static void host_settle(struct host *h)
{
    engine_settle(h->base, h->rt);
}

static int host_call(struct host *h, json_t *ev)
{
    int want = h->results + 1;
    assert_int_equal(faas_invoke(h->rt, "orders", ev, NULL, host_result, h), 0);
    assert_true(tu_run_until(h->base, &h->results, want, 10000));
    host_settle(h);
    return h->status;
}

static void test_two_hosts_one_key(void **state)
{
    struct fx *f = *state;
    struct host a, b;
    json_t *ev = json_pack("{s:s}", "order", "A-1");
    json_t *ev2 = json_pack("{s:s}", "order", "B-2");

    atomic_store(&fleet_runs, 0);
    host_new(&a, f->url, "host-a");
    host_new(&b, f->url, "host-b");
    /* run on a, replayed on b: the handler ran once */
    assert_int_equal(host_call(&a, ev), 0);
    assert_false(a.replayed);
    assert_int_equal(host_call(&b, ev), 0);
    assert_true(b.replayed);
    assert_true(json_equal(a.payload, b.payload));
    assert_int_equal(atomic_load(&fleet_runs), 1);

    /* both at once: one takes the key, the other finds it in progress */
    assert_int_equal(faas_invoke(a.rt, "orders", ev2, NULL, host_result, &a), 0);
    assert_int_equal(faas_invoke(b.rt, "orders", ev2, NULL, host_result, &b), 0);
    {
        uint64_t end = tu_now_ms() + 10000;
        while ((a.results < 2 || b.results < 2) && tu_now_ms() < end) {
            event_base_loop(a.base, EVLOOP_NONBLOCK);
            event_base_loop(b.base, EVLOOP_NONBLOCK);
            usleep(1000); /* two loops in one thread: bounded polling */
        }
    }
    assert_int_equal(a.results, 2);
    assert_int_equal(b.results, 2);
    assert_int_equal(atomic_load(&fleet_runs), 2);
    /* the loser either replayed the winner's result or was told it runs */
    assert_true((a.status == 0 && !a.replayed) != (b.status == 0 && !b.replayed));
    assert_true(a.status == FAAS_EINPROGRESS || b.status == FAAS_EINPROGRESS || a.replayed ||
                b.replayed);
    json_decref(a.payload);
    json_decref(b.payload);
    json_decref(ev);
    json_decref(ev2);
    tu_rt_free(&a.rt, &a.base);
    tu_rt_free(&b.rt, &b.base);
}


/* Claims of two nodes on one prefix: a due time is won once; a re-sent
 * claim of the winner wins again; a rate() claim closer than its period
 * to the fleet's last fire, or a claim before it, loses and says it. */
static void test_schedule_claims(void **state)
{
    struct fx *f = *state;
    struct faas_durable *a = open_ok(f, 0), *b = NULL;
    struct claim_log log = { 0 };
    int64_t fired = 0;
    static const struct {
        int node;
        const char *name;
        int64_t due_ms, gap_ms;
        int rc;
        int64_t fleet_ms;
    } steps[] = {
        { 0, "s", 60000, 60000, 0, 60000 },
        { 1, "s", 60000, 60000, FAAS_EEXIST, 60000 },  /* won once */
        { 0, "s", 60000, 60000, 0, 60000 },            /* re-sent by its winner */
        { 1, "s", 100000, 60000, FAAS_EEXIST, 60000 }, /* within the period */
        { 1, "s", 120000, 60000, 0, 120000 },
        { 0, "s", 90000, 1, FAAS_EEXIST, 120000 },     /* before the last */
        { 0, "c", 5000, 1, 0, 5000 },
        { 1, "c", 5000, 1, FAAS_EEXIST, 5000 },
        { 1, "c", 5001, 1, 0, 5001 },
    };
    size_t i;

    assert_int_equal(faas_durable_open(&b, f->rt, f->url, 0, "node-b"), 0);
    for (i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        assert_int_equal(faas_durable_schedule_claim(steps[i].node ? b : a, steps[i].name,
                                                     steps[i].due_ms, steps[i].gap_ms,
                                                     on_claimed, &log),
                         0);
        assert_true(tu_run_until(f->base, &log.n, (int)i + 1, 10000));
        assert_int_equal(log.rc[i], steps[i].rc);
        assert_int_equal(log.fleet_ms[i], steps[i].fleet_ms);
    }
    faas_durable_close(a);
    faas_durable_close(b);
    a = open_ok(f, 0);
    assert_int_equal(faas_durable_schedule_get(a, "s", &fired), 0);
    assert_int_equal(fired, 120000);
    faas_durable_close(a);
}

/* ---- schedules on three hosts --------------------------------------------- */

#define NTICK 3

/* Which host ran each fire, and the fire's time, in run order. */
static struct {
    int host[64];
    char time[64][32];
    atomic_int n;
} fires;

static void fire_note(int host, json_t *event)
{
    int i = atomic_load(&fires.n);
    const char *t = json_string_value(json_object_get(event, "time"));
    assert_true(i < 64);
    fires.host[i] = host;
    snprintf(fires.time[i], sizeof fires.time[i], "%s", t ? t : "?");
    atomic_store(&fires.n, i + 1);
}

#define TICK(i)                                                                \
    static int tick_##i(struct faas_ctx *ctx, json_t *event, json_t **result) \
    {                                                                          \
        (void)ctx;                                                             \
        (void)result;                                                          \
        fire_note(i, event);                                                   \
        return 0;                                                              \
    }
TICK(0)
TICK(1)
TICK(2)
static const faas_handler_fn ticks[NTICK] = { tick_0, tick_1, tick_2 };

struct ticker {
    struct event_base *base;
    struct faas_runtime *rt;
};

/* The tickers' warnings: fires skipped, and Redis back. */
static int ticker_skips, ticker_backs;

static void ticker_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind != FAAS_LOG_WARNING || !rec->line)
        return;
    if (strstr(rec->line, "not claimed, skipped"))
        ticker_skips++;
    if (strstr(rec->line, "reachable again"))
        ticker_backs++;
}

/* Host i ("host-i") on the shared fake clock, "tick" mapped to
 * rate(1 minute). */
static void ticker_new(struct ticker *h, int i, const char *url, struct tu_clock *clk)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    char node[16];

    snprintf(node, sizeof node, "host-%d", i);
    o.zygote = 0;
    o.log = ticker_log;
    o.durable = url;
    o.node_id = node;
    o.clock.now_ns = tu_clock_now;
    o.clock.wall_ns = tu_clock_wall;
    o.clock.arg = clk;
    tu_rt_new(&h[i].base, &h[i].rt, &o);
    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(h[i].rt, "tick", ticks[i], &fo), 0);
    assert_true(faas_map(h[i].rt, "schedule:rate(1 minute)", "tick", NULL) >= 0);
}

static void tickers_new(struct ticker *h, const char *url, struct tu_clock *clk)
{
    for (int i = 0; i < NTICK; i++)
        ticker_new(h, i, url, clk);
}

static void tickers_free(struct ticker *h)
{
    for (int i = 0; i < NTICK; i++)
        tu_rt_free(&h[i].rt, &h[i].base);
}

/* Events kept in Redis and not ended yet, fleet-wide. */
static long long events_kept(void)
{
    redisContext *c = redisConnect("127.0.0.1", srv.port);
    redisReply *rep;
    long long n = -1;

    assert_non_null(c);
    assert_int_equal(c->err, 0);
    rep = redisCommand(c, "KEYS faas:ev:*");
    if (rep && rep->type == REDIS_REPLY_ARRAY)
        n = (long long)rep->elements;
    freeReplyObject(rep);
    redisFree(c);
    return n;
}

/* Operations the hosts' engines hold, after one pass of every loop. */
static uint64_t tickers_turn(struct ticker *h)
{
    struct faas_durable_stats ds;
    uint64_t pending = 0;

    for (int i = 0; i < NTICK; i++) {
        event_base_loop(h[i].base, EVLOOP_NONBLOCK);
        faas_durable_stats_get(h[i].rt->durable, &ds);
        pending += ds.pending;
    }
    return pending;
}

/*
 * Polls the schedules, `first` first and until its claims are answered,
 * then the others, and runs every loop until every claim is answered,
 * `want` fires ran and no event is left in Redis: a fire queued twice
 * would be counted.
 */
static void tickers_step(struct ticker *h, int first, int want)
{
    uint64_t end = tu_now_ms() + 10000, pending;

    faas_schedule_poll(h[first].rt);
    engine_settle(h[first].base, h[first].rt);
    for (int i = 0; i < NTICK; i++)
        if (i != first)
            faas_schedule_poll(h[i].rt);
    for (;;) {
        pending = tickers_turn(h);
        if ((atomic_load(&fires.n) >= want && pending == 0 && events_kept() == 0) ||
            tu_now_ms() > end)
            break;
        usleep(1000); /* several loops in one thread: bounded polling */
    }
    assert_int_equal(pending, 0);
    assert_int_equal(events_kept(), 0);
    assert_int_equal(atomic_load(&fires.n), want);
}

/* Runs every loop until *counter >= want (bounded). */
static void tickers_run_until(struct ticker *h, const int *counter, int want)
{
    uint64_t end = tu_now_ms() + 15000;
    while (*counter < want && tu_now_ms() < end) {
        tickers_turn(h);
        usleep(1000); /* several loops in one thread: bounded polling */
    }
    assert_true(*counter >= want);
}

/* The fake clock's wall time `s` seconds after the epoch of tu_clock_wall,
 * as a Scheduled Event's "time". */
static void iso_at(struct tu_clock *clk, int64_t after_s, char *buf, size_t size)
{
    time_t t = (time_t)(tu_clock_wall(clk) / 1000000000 + after_s);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * rate(1 minute) mapped on three hosts 20 s apart: the later ones fall
 * into the first's step, and from then on every due time fires on exactly
 * one of them, whichever asks first; after all went down for four and a
 * half periods, the latest missed due time fires once across them.
 */
static void test_schedule_fires_once_per_fleet(void **state)
{
    struct fx *f = *state;
    struct tu_clock clk = { 0 };
    struct ticker h[NTICK];
    char want[32];
    int i, won[NTICK] = { 0 };

    atomic_store(&fires.n, 0);
    ticker_new(h, 0, f->url, &clk); /* due at 60 */
    tu_clock_advance(&clk, 20000000000ull);
    ticker_new(h, 1, f->url, &clk); /* due at 80 */
    tu_clock_advance(&clk, 20000000000ull);
    ticker_new(h, 2, f->url, &clk); /* due at 100 */
    tu_clock_advance(&clk, 20000000000ull); /* 60: host 0 fires */
    tickers_step(h, 0, 1);
    assert_int_equal(fires.host[0], 0);
    iso_at(&clk, 0, want, sizeof want);
    assert_string_equal(fires.time[0], want);
    tu_clock_advance(&clk, 20000000000ull); /* 80: too close for host 1 */
    tickers_step(h, 1, 1);
    tu_clock_advance(&clk, 20000000000ull); /* 100: too close for host 2 */
    tickers_step(h, 2, 1);
    for (i = 0; i < 6; i++) { /* 120 ... 420: one fire each, on any */
        tu_clock_advance(&clk, (i ? 60u : 20u) * 1000000000ull);
        tickers_step(h, i % NTICK, 2 + i);
        iso_at(&clk, 0, want, sizeof want);
        assert_string_equal(fires.time[1 + i], want);
    }
    for (i = 0; i < atomic_load(&fires.n); i++)
        won[fires.host[i]]++;
    for (i = 0; i < NTICK; i++)
        assert_true(won[i] > 0);

    /* all down from 420 to 690: 660 was missed, and fires once */
    tickers_free(h);
    tu_clock_advance(&clk, 270000000000ull);
    atomic_store(&fires.n, 0);
    tickers_new(h, f->url, &clk);
    tickers_step(h, 0, 1);
    iso_at(&clk, -30, want, sizeof want);
    assert_string_equal(fires.time[0], want);
    for (i = 0; i < 3; i++) { /* then one fire a period again */
        tu_clock_advance(&clk, 60000000000ull);
        tickers_step(h, i % NTICK, 2 + i);
        assert_true(strcmp(fires.time[1 + i], fires.time[i]) > 0);
    }
    tickers_free(h);
}

static void on_drained(int rc, uint64_t remaining, void *arg)
{
    int *drained = arg;
    assert_int_equal(rc, 0);
    assert_int_equal(remaining, 0);
    *drained = 1;
}

/* A drain that begins while a fire's claim is asked keeps that fire: it
 * was decided before the drain, and its event waits in the fleet's queue,
 * which a draining host leaves to the others; another host runs it. The
 * next due time does not fire on the drained host. */
static void test_schedule_claim_then_drain(void **state)
{
    struct fx *f = *state;
    struct tu_clock clk = { 0 };
    struct ticker h[NTICK];
    int drained = 0;

    atomic_store(&fires.n, 0);
    ticker_new(h, 0, f->url, &clk);
    tu_clock_advance(&clk, 60000000000ull);
    faas_schedule_poll(h[0].rt);
    assert_int_equal(faas_drain(h[0].rt, 10000, on_drained, &drained), 0);
    assert_true(tu_run_until(h[0].base, &drained, 1, 10000));
    assert_int_equal(atomic_load(&fires.n), 0);
    assert_int_equal(events_kept(), 1);
    tu_clock_advance(&clk, 60000000000ull);
    faas_schedule_poll(h[0].rt);
    engine_settle(h[0].base, h[0].rt);
    assert_int_equal(events_kept(), 1);
    /* another host of the fleet takes the fire's event, and fires the due
     * time the drained host skipped */
    ticker_new(h, 1, f->url, &clk);
    {
        uint64_t end = tu_now_ms() + 15000;
        while (atomic_load(&fires.n) < 2 && tu_now_ms() < end) {
            event_base_loop(h[0].base, EVLOOP_NONBLOCK);
            event_base_loop(h[1].base, EVLOOP_NONBLOCK);
            usleep(1000); /* two loops in one thread: bounded polling */
        }
    }
    assert_int_equal(atomic_load(&fires.n), 2);
    assert_int_equal(fires.host[0], 1);
    assert_int_equal(fires.host[1], 1);
    engine_settle(h[1].base, h[1].rt);
    assert_int_equal(events_kept(), 0);
    assert_int_equal(atomic_load(&fires.n), 2);
    tu_rt_free(&h[0].rt, &h[0].base);
    tu_rt_free(&h[1].rt, &h[1].base);
}

static void test_schedule_redis_down_skips(void **state)
{
    struct fx *f = *state;
    struct tu_clock clk = { 0 };
    struct ticker h[NTICK];
    char want[32];
    int i, j;

    atomic_store(&fires.n, 0);
    ticker_skips = ticker_backs = 0;
    tickers_new(h, f->url, &clk);
    tu_clock_advance(&clk, 60000000000ull);
    tickers_step(h, 0, 1);
    tu_redis_kill(&srv);
    for (i = 1; i <= 2; i++) {
        tu_clock_advance(&clk, 60000000000ull);
        for (j = 0; j < NTICK; j++)
            faas_schedule_poll(h[j].rt);
        tickers_run_until(h, &ticker_skips, NTICK * i);
    }
    assert_int_equal(ticker_skips, 2 * NTICK);
    assert_int_equal(atomic_load(&fires.n), 1);
    assert_int_equal(tu_redis_spawn(&srv), 0);
    tickers_run_until(h, &ticker_backs, NTICK);
    tu_clock_advance(&clk, 60000000000ull);
    tickers_step(h, 1, 2);
    iso_at(&clk, 0, want, sizeof want);
    assert_string_equal(fires.time[1], want);
    assert_int_equal(ticker_skips, 2 * NTICK);
    tickers_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_urls, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_store_semantics, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_store_freed_with_answers_owed, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_two_hosts_one_key, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule_claims, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule_fires_once_per_fleet, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule_redis_down_skips, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule_claim_then_drain, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_events_roundtrip, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_records_schedules_prefix, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_idem_records, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_close_commits_queued, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_server_lost_and_back, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_command_timeout, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_resent_put_answers_as_before, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_error_reply, rsetup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_unreachable, rsetup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

#else

static void test_redis_left_out(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = NULL;
    assert_int_equal(faas_durable_open(&d, f->rt, "redis://127.0.0.1:6379", 0, NULL),
                     FAAS_EINVAL);
    assert_non_null(strstr(f->log_line, "WITH_REDIS=0"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_redis_left_out, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif

/*
 * test_source.c - event-source mappings: source keys, ids, unmapping,
 * schedules on a fake clock (the Scheduled Event, one fire for a missed
 * stretch, at() once), and faas_emit's routing to host-fed mappings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "faas_int.h"
#include "testutil.h"

struct fx {
    struct event_base *base;
    struct faas_runtime *rt;
    struct tu_clock clk;
    int runs;
    json_t *events; /* every event a handler got */
};

static struct fx *g;

/* FAAS_LOG_WARNING "record-refused": how many, and the last line. */
static int g_refused;
static char g_refused_line[256];

static void on_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind == FAAS_LOG_WARNING && strcmp(rec->action, "record-refused") == 0) {
        g_refused++;
        snprintf(g_refused_line, sizeof g_refused_line, "%s", rec->line ? rec->line : "");
    }
}

static int record(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)result;
    json_array_append(g->events, event);
    g->runs++;
    return 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;

    f->base = event_base_new();
    /* 2026-11-27T20:00:00Z, as the fake clock's wall time */
    f->clk.ns = (1795809600ull - 1700000000ull) * 1000000000ull;
    ro.clock.now_ns = tu_clock_now;
    ro.clock.wall_ns = tu_clock_wall;
    ro.clock.arg = &f->clk;
    ro.region = "eu-west-1";
    ro.log = on_log;
    g_refused = 0;
    g_refused_line[0] = '\0';
    assert_int_equal(faas_runtime_new(&f->rt, f->base, &ro), 0);
    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(f->rt, "fn", record, &fo), 0);
    assert_int_equal(faas_register(f->rt, "other", record, &fo), 0);
    f->events = json_array();
    g = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    faas_runtime_free(f->rt);
    event_base_free(f->base);
    json_decref(f->events);
    free(f);
    return 0;
}

static void test_map_errors(void **state)
{
    struct fx *f = *state;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;

    assert_int_equal(faas_map(NULL, "queue:q", "fn", NULL), FAAS_EINVAL);
    assert_int_equal(faas_map(f->rt, NULL, "fn", NULL), FAAS_EINVAL);
    assert_int_equal(faas_map(f->rt, "queue:q", NULL, NULL), FAAS_EINVAL);
    assert_int_equal(faas_map(f->rt, "ftp:x", "fn", NULL), FAAS_EPARSE);
    assert_int_equal(faas_map(f->rt, "queue:q", "nope", NULL), FAAS_ENOENT);
    assert_int_equal(faas_map(f->rt, "schedule:rate(5 minute)", "fn", NULL), FAAS_EPARSE);
    assert_int_equal(faas_map(f->rt, "schedule:cron(0 0 * * * *)", "fn", NULL), FAAS_EPARSE);
    assert_int_equal(faas_map(f->rt, "dynamodb:UPSERT", "fn", NULL), FAAS_EPARSE);
    assert_int_equal(faas_map(f->rt, "s3:Object Created", "fn", NULL), FAAS_EPARSE);
    assert_int_equal(faas_map(f->rt, "queue:", "fn", NULL), FAAS_EPARSE);
    assert_int_equal(faas_map(f->rt, "queue:a b", "fn", NULL), FAAS_EPARSE);
    mo.version = 7;
    assert_int_equal(faas_map(f->rt, "queue:q", "fn", &mo), FAAS_EINVAL);
    mo.version = FAAS_MAP_OPTS_VERSION;
    mo.batch_size = 10001;
    assert_int_equal(faas_map(f->rt, "queue:q", "fn", &mo), FAAS_EINVAL);
    mo.batch_size = 10;
    mo.parallelization = 11;
    assert_int_equal(faas_map(f->rt, "queue:q", "fn", &mo), FAAS_EINVAL);
    mo.parallelization = 1;
    mo.on_failure = "missing";
    assert_int_equal(faas_map(f->rt, "queue:q", "fn", &mo), FAAS_ENOENT);
    mo.on_failure = NULL;
    mo.filter = "{\"a\": 1}"; /* a leaf must be an array */
    assert_int_equal(faas_map(f->rt, "queue:q", "fn", &mo), FAAS_EPARSE);
    assert_int_equal(faas_unmap(f->rt, 12345), FAAS_ENOENT);
    assert_int_equal(faas_unmap(f->rt, -1), FAAS_EINVAL);
}

/* S3 patterns that match no S3 event would never fire: refused, by
 * faas_map and by faas_source_check alike; every other kind as faas_map. */
static void test_source_check(void **state)
{
    struct fx *f = *state;
    static const char *const good[] = {
        "api:GET /users/{id}", "api:/x/*", "schedule:rate(5 minutes)",
        "schedule:at(2001-01-01T00:00:00)", "s3:ObjectCreated:*", "s3:ObjectCreated",
        "s3:ObjectRemoved:Delete", "s3:*", "s3:Object*:Put", "dynamodb:INSERT", "dynamodb:*",
        "stream:orders", "queue:jobs.v2",
    };
    static const char *const bad[] = {
        "ftp:x", "api:GET users", "api:FETCH /x", "schedule:rate(5 minute)",
        "s3:Nope", "s3:ObjectCreated:Nope", "s3:Nope:*", "s3:Object Created", "s3:",
        "dynamodb:UPSERT", "stream:", "queue:a b",
    };
    size_t i;

    assert_int_equal(faas_source_check(NULL), FAAS_EINVAL);
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        int id = faas_map(f->rt, good[i], "fn", NULL);
        assert_int_equal(faas_source_check(good[i]), 0);
        assert_true(id >= 0);
        assert_int_equal(faas_unmap(f->rt, id), 0);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(faas_source_check(bad[i]), FAAS_EPARSE);
        assert_int_equal(faas_map(f->rt, bad[i], "fn", NULL), FAAS_EPARSE);
    }
}

static void test_ids_and_unmap(void **state)
{
    struct fx *f = *state;
    int a = faas_map(f->rt, "queue:q", "fn", NULL);
    int b = faas_map(f->rt, "s3:ObjectCreated:*", "fn", NULL);
    int c = faas_map(f->rt, "schedule:rate(1 minute)", "fn", NULL);

    assert_true(a >= 0);
    assert_true(b > a);
    assert_true(c > b);
    assert_non_null(faas_mapping_find(f->rt, b));
    assert_int_equal(faas_unmap(f->rt, b), 0);
    assert_null(faas_mapping_find(f->rt, b));
    assert_int_equal(faas_unmap(f->rt, b), FAAS_ENOENT);
    /* ids are not reused */
    assert_true(faas_map(f->rt, "queue:q2", "fn", NULL) > c);
}

/* Names: the default is "SOURCE FUNCTION"; two live mappings never share
 * one, whatever their kinds; an unmapped one lets its name go. */
static void test_names(void **state)
{
    struct fx *f = *state;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    struct faas_mapping *m;
    char longname[FAAS_MAPPING_NAME_MAX + 2];
    int a, b, c;

    a = faas_map(f->rt, "queue:q", "fn", NULL);
    assert_true(a >= 0);
    m = faas_mapping_find(f->rt, a);
    assert_string_equal(m->name, "queue:q fn");
    /* The same source and function: the same default name. */
    assert_int_equal(faas_map(f->rt, "queue:q", "fn", NULL), FAAS_EEXIST);
    b = faas_map(f->rt, "queue:q", "other", NULL);
    assert_true(b >= 0);
    assert_string_equal(faas_mapping_find(f->rt, b)->name, "queue:q other");
    /* A name of its own lets the same pair map twice; the name is copied. */
    {
        char name[] = "orders-a";
        mo.name = name;
        c = faas_map(f->rt, "queue:q", "fn", &mo);
        name[0] = 'X';
    }
    assert_true(c >= 0);
    assert_string_equal(faas_mapping_find(f->rt, c)->name, "orders-a");
    /* A chosen name is taken across kinds, and a default one can be chosen. */
    mo.name = "orders-a";
    assert_int_equal(faas_map(f->rt, "schedule:rate(1 hour)", "fn", &mo), FAAS_EEXIST);
    assert_int_equal(faas_map(f->rt, "api:GET /o", "other", &mo), FAAS_EEXIST);
    mo.name = "queue:q other";
    assert_int_equal(faas_map(f->rt, "stream:s", "fn", &mo), FAAS_EEXIST);
    assert_true(faas_map(f->rt, "schedule:rate(1 hour)", "fn", NULL) >= 0);
    assert_int_equal(faas_map(f->rt, "schedule:rate(1 hour)", "fn", NULL), FAAS_EEXIST);
    /* Empty and over-long names are refused. */
    mo.name = "";
    assert_int_equal(faas_map(f->rt, "stream:s", "fn", &mo), FAAS_EINVAL);
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    mo.name = longname;
    assert_int_equal(faas_map(f->rt, "stream:s", "fn", &mo), FAAS_EINVAL);
    longname[FAAS_MAPPING_NAME_MAX] = '\0';
    assert_true(faas_map(f->rt, "stream:s", "fn", &mo) >= 0);
    /* Version 1 options have no name: the default. */
    mo.version = 1;
    mo.name = "ignored";
    assert_int_equal(faas_map(f->rt, "queue:q", "other", &mo), FAAS_EEXIST);
    b = faas_map(f->rt, "queue:v1", "other", &mo);
    assert_string_equal(faas_mapping_find(f->rt, b)->name, "queue:v1 other");
    /* Unmapped, the name is free again; also inside a callback, where the
     * mapping is only marked dead until the callback returns. */
    assert_int_equal(faas_unmap(f->rt, a), 0);
    a = faas_map(f->rt, "queue:q", "fn", NULL);
    assert_true(a >= 0);
    faas_rt_enter(f->rt);
    assert_int_equal(faas_unmap(f->rt, a), 0);
    assert_int_equal(f->rt->dead_mappings, 1);
    b = faas_map(f->rt, "queue:q", "fn", NULL);
    assert_true(b > a);
    assert_int_equal(faas_map(f->rt, "queue:q", "fn", NULL), FAAS_EEXIST);
    faas_rt_leave(f->rt);
    assert_int_equal(f->rt->dead_mappings, 0);
    assert_string_equal(faas_mapping_find(f->rt, b)->name, "queue:q fn");
}

/* Advances the fake clock, fires what is due, runs the loop until `want`
 * handler runs (or a short bound). */
static void advance(struct fx *f, uint64_t seconds, int want)
{
    tu_clock_advance(&f->clk, seconds * 1000000000ull);
    faas_schedule_poll(f->rt);
    tu_run_until(f->base, &f->runs, want, 2000);
}

static void test_rate_schedule(void **state)
{
    struct fx *f = *state;
    json_t *ev;
    int id = faas_map(f->rt, "schedule:rate(5 minutes)", "fn", NULL);

    assert_true(id >= 0);
    advance(f, 299, 1);
    assert_int_equal(f->runs, 0); /* not yet */
    advance(f, 1, 1);
    assert_int_equal(f->runs, 1);
    ev = json_array_get(f->events, 0);
    assert_string_equal(json_string_value(json_object_get(ev, "detail-type")),
                        "Scheduled Event");
    assert_string_equal(json_string_value(json_object_get(ev, "source")), "aws.events");
    assert_string_equal(json_string_value(json_object_get(ev, "version")), "0");
    assert_string_equal(json_string_value(json_object_get(ev, "region")), "eu-west-1");
    assert_string_equal(json_string_value(json_object_get(ev, "time")), "2026-11-27T20:05:00Z");
    assert_int_equal(strlen(json_string_value(json_object_get(ev, "id"))), 36);
    assert_true(json_is_object(json_object_get(ev, "detail")));
    assert_int_equal(json_object_size(json_object_get(ev, "detail")), 0);
    assert_int_equal(json_array_size(json_object_get(ev, "resources")), 1);
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(ev, "resources"), 0)),
                           "arn:aws:events:eu-west-1:000000000000:rule/"));

    /* A stretch of 20 missed periods fires once, then the period resumes. */
    advance(f, 100 * 60, 2);
    assert_int_equal(f->runs, 2);
    advance(f, 60, 3);
    assert_int_equal(f->runs, 2);
    advance(f, 4 * 60, 3);
    assert_int_equal(f->runs, 3);

    assert_int_equal(faas_unmap(f->rt, id), 0);
    advance(f, 3600, 4);
    assert_int_equal(f->runs, 3);
}

static void test_cron_and_at(void **state)
{
    struct fx *f = *state;
    /* every day at 20:30 UTC; and once, at 21:00 */
    assert_true(faas_map(f->rt, "schedule:cron(30 20 * * ? *)", "fn", NULL) >= 0);
    assert_true(faas_map(f->rt, "schedule:at(2026-11-27T21:00:00)", "other", NULL) >= 0);
    /* an at() in the past maps, and never fires */
    assert_true(faas_map(f->rt, "schedule:at(2020-01-01T00:00:00)", "other", NULL) >= 0);
    advance(f, 29 * 60, 1);
    assert_int_equal(f->runs, 0);
    advance(f, 60, 1);
    assert_int_equal(f->runs, 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(f->events, 0), "time")),
                        "2026-11-27T20:30:00Z");
    advance(f, 30 * 60, 2);
    assert_int_equal(f->runs, 2);
    advance(f, 24 * 3600, 4);
    assert_int_equal(f->runs, 3); /* the cron again; the at() not */
}

/* The real timer path, on the system clock: an at() two seconds ahead. */
static void test_schedule_real_timer(void **state)
{
    struct fx *f = *state;
    struct event_base *base = event_base_new();
    struct faas_runtime *rt;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    char key[64];
    time_t t = time(NULL) + 2;
    struct tm tm;
    uint64_t start = tu_now_ms();

    gmtime_r(&t, &tm);
    strftime(key, sizeof key, "schedule:at(%Y-%m-%dT%H:%M:%S)", &tm);
    assert_int_equal(faas_runtime_new(&rt, base, NULL), 0);
    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(rt, "fn", record, &fo), 0);
    assert_true(faas_map(rt, key, "fn", NULL) >= 0);
    tu_run_for(base, 200);
    assert_int_equal(f->runs, 0);
    assert_true(tu_run_until(base, &f->runs, 1, 5000));
    assert_true(tu_now_ms() - start >= 900); /* not before its second */
    tu_run_for(base, 100);
    assert_int_equal(f->runs, 1); /* once */
    faas_runtime_free(rt);
    event_base_free(base);
}

/* A fire months ahead arms a timer of at most a day: libevent adds the delay
 * to its clock in a time_t, which a 32-bit time_t cannot hold for long
 * delays (the timer would fire at once). The daily look fires nothing. */
static void test_far_schedule_wakes_daily(void **state)
{
    struct fx *f = *state;
    struct faas_mapping *m;
    struct timeval at, now;

    assert_true(faas_map(f->rt, "schedule:at(2027-06-01T00:00:00)", "fn", NULL) >= 0);
    m = FAAS_CONTAINER_OF(f->rt->mappings.next, struct faas_mapping, link);
    assert_true(event_pending(m->timer, EV_TIMEOUT, &at));
    gettimeofday(&now, NULL);
    assert_true(at.tv_sec - now.tv_sec <= 86400 + 1);
    assert_true(at.tv_sec - now.tv_sec >= 86400 - 60);
    tu_clock_advance(&f->clk, 86400ull * 1000000000ull);
    faas_schedule_poll(f->rt);
    tu_run_for(f->base, 20);
    assert_int_equal(f->runs, 0);
    assert_true(event_pending(m->timer, EV_TIMEOUT, NULL));
}

static void test_emit_errors(void **state)
{
    struct fx *f = *state;
    json_t *r = json_pack("{s:s,s:s}", "bucket", "b", "key", "k");

    assert_int_equal(faas_emit(NULL, "queue:q", r), FAAS_EINVAL);
    assert_int_equal(faas_emit(f->rt, NULL, r), FAAS_EINVAL);
    assert_int_equal(faas_emit(f->rt, "queue:q", NULL), FAAS_EINVAL);
    assert_int_equal(faas_emit(f->rt, "api:/x", r), FAAS_EPARSE);
    assert_int_equal(faas_emit(f->rt, "schedule:rate(1 minute)", r), FAAS_EPARSE);
    assert_int_equal(faas_emit(f->rt, "s3:ObjectCreated:*", r), FAAS_EPARSE);
    assert_int_equal(faas_emit(f->rt, "s3:ObjectCreated", r), FAAS_EPARSE);
    assert_int_equal(faas_emit(f->rt, "dynamodb:*", r), FAAS_EPARSE);
    assert_int_equal(faas_emit(f->rt, "nope:x", r), FAAS_EPARSE);
    /* no mapping: taken by none */
    assert_int_equal(faas_emit(f->rt, "s3:ObjectCreated:Put", r), 0);
    json_decref(r);
}

static void test_emit_routing(void **state)
{
    struct fx *f = *state;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    json_t *obj = json_pack("{s:s,s:s,s:i}", "bucket", "photos", "key", "a.jpg", "size", 3);
    json_t *big = json_pack("{s:s,s:s,s:i}", "bucket", "photos", "key", "b.png", "size", 3000);
    json_t *ddb = json_pack("{s:{s:{s:s}}}", "Keys", "id", "S", "1");

    assert_true(faas_map(f->rt, "s3:ObjectCreated:*", "fn", NULL) >= 0);
    assert_true(faas_map(f->rt, "s3:ObjectCreated", "fn", NULL) >= 0);
    assert_true(faas_map(f->rt, "s3:ObjectRemoved:*", "fn", NULL) >= 0);
    mo.filter = "{\"s3\": {\"object\": {\"key\": [{\"suffix\": \".png\"}]}}}";
    assert_true(faas_map(f->rt, "s3:*", "other", &mo) >= 0);
    assert_true(faas_map(f->rt, "dynamodb:INSERT", "fn", NULL) >= 0);
    assert_true(faas_map(f->rt, "dynamodb:*", "fn", NULL) >= 0);

    assert_int_equal(faas_emit(f->rt, "s3:ObjectCreated:Put", obj), 2);  /* filter says no */
    assert_int_equal(faas_emit(f->rt, "s3:ObjectCreated:Copy", big), 3); /* png: yes */
    assert_int_equal(faas_emit(f->rt, "s3:ObjectRemoved:Delete", obj), 1);
    assert_int_equal(faas_emit(f->rt, "dynamodb:INSERT", ddb), 2);
    assert_int_equal(faas_emit(f->rt, "dynamodb:REMOVE", ddb), 1);
    assert_int_equal(faas_emit(f->rt, "queue:none", obj), FAAS_EINVAL); /* no body */
    /* each taken record becomes one batch of one: 9 invocations */
    assert_true(tu_run_until(f->base, &f->runs, 9, 3000));
    assert_int_equal(f->runs, 9);
    {
        json_t *ev = json_array_get(f->events, 0);
        json_t *rec = json_array_get(json_object_get(ev, "Records"), 0);
        assert_string_equal(json_string_value(json_object_get(rec, "eventSource")), "aws:s3");
        assert_string_equal(json_string_value(json_object_get(rec, "eventName")),
                            "ObjectCreated:Put");
    }
    json_decref(obj);
    json_decref(big);
    json_decref(ddb);
}

/* Every refusal of faas_emit is logged with its reason. */
static void test_emit_refusals_logged(void **state)
{
    struct fx *f = *state;
    json_t *r = json_pack("{s:s}", "bucket", "b");
    json_t *ddb = json_pack("{s:{}}", "Keys");

    assert_int_equal(faas_emit(f->rt, "nope:x", r), FAAS_EPARSE);
    assert_int_equal(g_refused, 1);
    assert_non_null(strstr(g_refused_line, "nope:x"));
    assert_int_equal(faas_emit(f->rt, "s3:ObjectCreated:Put", r), FAAS_EINVAL);
    assert_int_equal(g_refused, 2);
    assert_non_null(strstr(g_refused_line, "\"key\""));
    assert_int_equal(faas_emit(f->rt, "dynamodb:INSERT", ddb), FAAS_EINVAL);
    assert_int_equal(g_refused, 3);
    assert_non_null(strstr(g_refused_line, "\"Keys\" must be a non-empty object"));
    assert_int_equal(faas_emit(f->rt, "queue:q", NULL), FAAS_EINVAL);
    assert_int_equal(g_refused, 4);
    /* taken by no mapping is not a refusal */
    json_object_set_new(r, "key", json_string("k"));
    assert_int_equal(faas_emit(f->rt, "s3:ObjectCreated:Put", r), 0);
    assert_int_equal(g_refused, 4);
    json_decref(r);
    json_decref(ddb);
}

struct accepts {
    int n;       /* answers so far */
    int last_rc; /* the last one */
};

static void on_emit_accepted(int rc, void *arg)
{
    struct accepts *a = arg;
    a->n++;
    a->last_rc = rc;
}

/* Without a durable engine, faas_emit_with's on_accepted comes on the next
 * turn with the number of mappings that took the record; never inside the
 * call, never for a refused record; FAAS_ECANCELED when the runtime is
 * freed first. */
static void test_emit_accepted_memory(void **state)
{
    struct fx *f = *state;
    struct faas_emit_opts eo = FAAS_EMIT_OPTS_INIT;
    struct accepts a = { 0, 1 }, c = { 0, 1 };
    json_t *msg = json_pack("{s:s}", "body", "hello");
    struct event_base *base2 = event_base_new();
    struct faas_runtime *rt2;

    eo.on_accepted = on_emit_accepted;
    eo.accepted_arg = &a;
    assert_true(faas_map(f->rt, "queue:q", "fn", NULL) >= 0);
    assert_true(faas_map(f->rt, "queue:q", "other", NULL) >= 0);
    assert_int_equal(faas_emit_with(f->rt, "queue:q", msg, &eo), 2);
    assert_int_equal(a.n, 0); /* not inside the call */
    assert_true(tu_run_until(f->base, &a.n, 1, 2000));
    assert_int_equal(a.last_rc, 2);
    /* taken by nobody: still answered, with 0 */
    assert_int_equal(faas_emit_with(f->rt, "queue:none", msg, &eo), 0);
    assert_true(tu_run_until(f->base, &a.n, 2, 2000));
    assert_int_equal(a.last_rc, 0);
    /* refused: never answered */
    assert_int_equal(faas_emit_with(f->rt, "queue:q", NULL, &eo), FAAS_EINVAL);
    assert_int_equal(faas_emit_with(f->rt, "nope:q", msg, &eo), FAAS_EPARSE);
    eo.version = FAAS_EMIT_OPTS_VERSION + 1;
    assert_int_equal(faas_emit_with(f->rt, "queue:q", msg, &eo), FAAS_EINVAL);
    eo.version = FAAS_EMIT_OPTS_VERSION;
    tu_run_for(f->base, 50);
    assert_int_equal(a.n, 2);
    /* NULL options and no callback are plain faas_emit */
    assert_int_equal(faas_emit_with(f->rt, "queue:q", msg, NULL), 2);
    eo.on_accepted = NULL;
    assert_int_equal(faas_emit_with(f->rt, "queue:q", msg, &eo), 2);
    assert_true(tu_run_until(f->base, &f->runs, 6, 2000));
    assert_int_equal(a.n, 2);
    /* freed before the next turn: FAAS_ECANCELED, inside the free */
    assert_int_equal(faas_runtime_new(&rt2, base2, NULL), 0);
    eo.on_accepted = on_emit_accepted;
    eo.accepted_arg = &c;
    assert_int_equal(faas_emit_with(rt2, "queue:q", msg, &eo), 0);
    faas_runtime_free(rt2);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.last_rc, FAAS_ECANCELED);
    event_base_free(base2);
    json_decref(msg);
}

/* A DynamoDB Streams record without "eventSource", as the docs' examples
 * write it, is completed and delivered (it used to be refused). */
static void test_emit_dynamodb_record_form(void **state)
{
    struct fx *f = *state;
    json_t *rec = json_pack("{s:s, s:{s:{s:{s:s}}, s:{s:{s:s}, s:{s:s}}}}", "eventName",
                            "INSERT", "dynamodb", "Keys", "id", "S", "7", "NewImage", "id", "S",
                            "7", "msg", "S", "hi");
    json_t *got;

    assert_true(faas_map(f->rt, "dynamodb:INSERT", "fn", NULL) >= 0);
    assert_int_equal(faas_emit(f->rt, "dynamodb:INSERT", rec), 1);
    assert_int_equal(g_refused, 0);
    assert_true(tu_run_until(f->base, &f->runs, 1, 3000));
    got = json_array_get(json_object_get(json_array_get(f->events, 0), "Records"), 0);
    assert_string_equal(json_string_value(json_object_get(got, "eventSource")), "aws:dynamodb");
    assert_string_equal(json_string_value(json_object_get(got, "awsRegion")), "eu-west-1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(
                            json_object_get(json_object_get(got, "dynamodb"), "NewImage"),
                            "msg"), "S")),
                        "hi");
    json_decref(rec);
}

static void test_free_with_mappings(void **state)
{
    struct fx *f = *state;
    json_t *m = json_pack("{s:s}", "body", "hello");
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    mo.batch_size = 10;
    mo.batch_window_ms = 60000;
    assert_true(faas_map(f->rt, "schedule:rate(1 minute)", "fn", NULL) >= 0);
    assert_true(faas_map(f->rt, "queue:jobs", "fn", &mo) >= 0);
    assert_int_equal(faas_emit(f->rt, "queue:jobs", m), 1); /* waits for its window */
    json_decref(m);
    /* teardown frees the runtime with a timer armed and a record queued */
}

/* ---- review regressions ---- */

/* Advances the fake clock and fires what is due, for checks that nothing
 * runs: the loop then runs only briefly. */
static void advance_quiet(struct fx *f, uint64_t seconds)
{
    tu_clock_advance(&f->clk, seconds * 1000000000ull);
    faas_schedule_poll(f->rt);
    tu_run_for(f->base, 20);
}

static int g_unmap_id = -1;
static int g_unmap_rc = 1;
static int g_failure_logs;

/* Unmaps the schedule from inside the "failure" record of its own fire. */
static void unmap_on_failure(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind != FAAS_LOG_ASYNC || strcmp(rec->action, "failure") != 0)
        return;
    g_failure_logs++;
    if (g_unmap_id >= 0) {
        g_unmap_rc = faas_unmap(g->rt, g_unmap_id);
        g_unmap_id = -1;
    }
}

/* A schedule whose function is gone fails its fire; the log callback of
 * that failure unmaps the schedule. The fire must not touch the mapping
 * after host code ran, and the schedule stays silent afterwards. */
static void test_unmap_in_schedule_failure_log(void **state)
{
    struct fx *f = *state;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    int id;

    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(f->rt, "gone", record, &fo), 0);
    id = faas_map(f->rt, "schedule:rate(1 minute)", "gone", NULL);
    assert_true(id >= 0);
    assert_int_equal(faas_unregister(f->rt, "gone"), 0);
    g_unmap_id = id;
    g_unmap_rc = 1;
    g_failure_logs = 0;
    f->rt->opts.log = unmap_on_failure;
    advance_quiet(f, 60);
    assert_int_equal(g_failure_logs, 1);
    assert_int_equal(g_unmap_rc, 0);
    assert_null(faas_mapping_find(f->rt, id));
    assert_int_equal(faas_unmap(f->rt, id), FAAS_ENOENT);
    advance_quiet(f, 3600);
    assert_int_equal(g_failure_logs, 1); /* unmapped: no second fire */
    assert_int_equal(f->runs, 0);
}

/* rate(1 minute), then the wall clock steps back an hour: the schedule
 * keeps firing about every minute instead of staying silent for the hour. */
static void test_rate_after_clock_step_back(void **state)
{
    struct fx *f = *state;
    json_t *ev;
    int id = faas_map(f->rt, "schedule:rate(1 minute)", "fn", NULL);

    assert_true(id >= 0);
    __atomic_sub_fetch(&f->clk.ns, 3600ull * 1000000000ull, __ATOMIC_SEQ_CST);
    advance_quiet(f, 0);
    assert_int_equal(f->runs, 0);
    advance_quiet(f, 59);
    assert_int_equal(f->runs, 0);
    advance(f, 1, 1); /* a minute after the step */
    assert_int_equal(f->runs, 1);
    ev = json_array_get(f->events, 0);
    assert_string_equal(json_string_value(json_object_get(ev, "time")), "2026-11-27T19:01:00Z");
    advance(f, 60, 2);
    assert_int_equal(f->runs, 2);
    tu_run_for(f->base, 20);
    assert_int_equal(f->runs, 2);
}

static char g_seen_body[64];

/* Writes into the record it got, after noting the body it saw. */
static int writer(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *rec = json_array_get(json_object_get(event, "Records"), 0);
    (void)ctx;
    (void)result;
    snprintf(g_seen_body, sizeof g_seen_body, "%s",
             json_string_value(json_object_get(rec, "body")));
    json_object_set_new(rec, "body", json_string("written by the handler"));
    g->runs++;
    return 0;
}

/* faas_emit of a complete record (it has "eventSource"): the host keeps its
 * record and may change it once faas_emit returns; the handler gets the
 * record as it was, and its own changes stay its own. */
static void test_emit_complete_record_is_copied(void **state)
{
    struct fx *f = *state;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    json_t *rec = json_pack("{s:s, s:s, s:s}", "eventSource", "aws:sqs", "messageId", "m1",
                            "body", "original");

    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(f->rt, "writer", writer, &fo), 0);
    assert_true(faas_map(f->rt, "queue:q", "writer", NULL) >= 0);
    g_seen_body[0] = '\0';
    assert_int_equal(faas_emit(f->rt, "queue:q", rec), 1);
    json_object_set_new(rec, "body", json_string("changed by the host"));
    assert_true(tu_run_until(f->base, &f->runs, 1, 2000));
    tu_run_for(f->base, 20);
    assert_int_equal(f->runs, 1);
    assert_string_equal(g_seen_body, "original");
    assert_string_equal(json_string_value(json_object_get(rec, "body")), "changed by the host");
    assert_int_equal(rec->refcount, 1);
    json_decref(rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_map_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_and_unmap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_far_schedule_wakes_daily, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_schedule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cron_and_at, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule_real_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_refusals_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_dynamodb_record_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_accepted_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_mappings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmap_in_schedule_failure_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_after_clock_step_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_complete_record_is_copied, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

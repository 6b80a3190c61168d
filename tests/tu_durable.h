/*
 * tu_durable.h - the fixture the durable engine's suites share
 * (test_durable.c, test_durable_faults.c): a runtime on its own base whose
 * log records are kept, a fresh temporary directory for the database, and
 * helpers that record completions in order, make events and read back
 * what a load gives.
 */
#ifndef FAAS_TU_DURABLE_H
#define FAAS_TU_DURABLE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durable_engine.h"
#include "faas_int.h"
#include "testutil.h"

/* ---- fixture: a runtime on its own base, a temporary directory -------- */

struct fx {
    struct event_base *base;
    struct faas_runtime *rt;
    char dir[64];
    char url[160];  /* "sqlite:DIR/state.db" */
    char path[128]; /* DIR/state.db */
    char log_action[32];
    char log_line[512];
    int nlogs;
};

static inline void on_log(const struct faas_log_record *rec, void *arg)
{
    struct fx *f = arg;
    if (rec->kind != FAAS_LOG_WARNING)
        return;
    f->nlogs++;
    snprintf(f->log_action, sizeof f->log_action, "%s", rec->action ? rec->action : "");
    snprintf(f->log_line, sizeof f->log_line, "%s", rec->line ? rec->line : "");
}

static inline int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;

    assert_non_null(f);
    strcpy(f->dir, "/tmp/faas-durable-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
    snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
    o.zygote = 0;
    o.log = on_log;
    o.log_arg = f;
    tu_rt_new(&f->base, &f->rt, &o);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fx *f = *state;
    tu_rt_free(&f->rt, &f->base);
    tu_rmdir_files(f->dir);
    free(f);
    return 0;
}

#if FAAS_WITH_SQLITE || FAAS_WITH_REDIS
/* Completions, in the order they ran. */
#define MAXDONE 4096
struct done_log {
    int n;
    int rc[MAXDONE];
    int tag[MAXDONE];
};

struct done_arg {
    struct done_log *log;
    int tag;
};

static inline void on_done(int rc, void *arg)
{
    struct done_arg *a = arg;
    struct done_log *l = a->log;
    assert_true(l->n < MAXDONE);
    l->rc[l->n] = rc;
    l->tag[l->n] = a->tag;
    l->n++;
}

/* The answers of schedule claims, in order. */
struct claim_log {
    int n;
    int rc[MAXDONE];
    int64_t fleet_ms[MAXDONE];
};

static inline void on_claimed(int rc, int64_t fleet_ms, void *arg)
{
    struct claim_log *l = arg;
    assert_true(l->n < MAXDONE);
    l->rc[l->n] = rc;
    l->fleet_ms[l->n] = fleet_ms;
    l->n++;
}

static inline struct faas_durable *open_ok(struct fx *f, int sync)
{
    struct faas_durable *d = NULL;
    assert_int_equal(faas_durable_open(&d, f->rt, f->url, sync, "node-a"), 0);
    assert_non_null(d);
    return d;
}

static inline struct faas_durable_event mkevent(const char *id, const char *fn,
                                                const char *event, int64_t accepted_ms)
{
    struct faas_durable_event ev;
    size_t n = strlen(id) < sizeof ev.request_id - 1 ? strlen(id) : sizeof ev.request_id - 1;

    memset(&ev, 0, sizeof ev);
    memcpy(ev.request_id, id, n);
    ev.request_id[n] = '\0';
    ev.function = fn;
    ev.event = event;
    ev.event_len = strlen(event);
    ev.accepted_ms = accepted_ms;
    return ev;
}

/* What a load saw: copies of the fields. */
struct seen_event {
    char id[FAAS_REQUEST_ID_SIZE];
    char function[64], event[256], cc[64], trace[64], idem[64], origin[64];
    int has_cc, has_trace, has_idem;
    uint32_t timeout_ms, attempts;
    int64_t accepted_ms, due_ms;
};

struct seen {
    int n;
    int stop_at; /* return 7 from this row on; 0 = never */
    struct seen_event ev[64];
};

static inline void copy_opt(char *dst, size_t size, const char *s, int *has)
{
    *has = s != NULL;
    snprintf(dst, size, "%s", s ? s : "");
}

static inline int each_event(const struct faas_durable_event *ev, void *arg)
{
    struct seen *s = arg;
    struct seen_event *e = &s->ev[s->n];
    int dummy;

    if (s->stop_at && s->n + 1 >= s->stop_at)
        return 7;
    assert_true(s->n < 64);
    snprintf(e->id, sizeof e->id, "%s", ev->request_id);
    copy_opt(e->function, sizeof e->function, ev->function, &dummy);
    assert_int_equal(ev->event_len, strlen(ev->event));
    copy_opt(e->event, sizeof e->event, ev->event, &dummy);
    copy_opt(e->cc, sizeof e->cc, ev->client_context, &e->has_cc);
    copy_opt(e->trace, sizeof e->trace, ev->trace_id, &e->has_trace);
    copy_opt(e->idem, sizeof e->idem, ev->idem_key, &e->has_idem);
    copy_opt(e->origin, sizeof e->origin, ev->origin, &dummy);
    e->timeout_ms = ev->timeout_ms;
    e->attempts = ev->attempts;
    e->accepted_ms = ev->accepted_ms;
    e->due_ms = ev->due_ms;
    s->n++;
    return 0;
}

static inline int count_each(const struct faas_durable_event *ev, void *arg)
{
    (void)ev;
    (*(int *)arg)++;
    return 0;
}

static inline int count_events(struct faas_durable *d)
{
    int n = 0;
    assert_int_equal(faas_durable_events_load(d, count_each, &n), 0);
    return n;
}

/*
 * The sample events of the events round trip (every engine's suite writes
 * them): e1 with all its optional fields, e2 from another node, e3 ended
 * with nx put in its place.
 */
struct sample_events {
    struct faas_durable_event e1, e2, e3, nx;
};

static inline struct sample_events sample_events(void)
{
    struct sample_events x;
    x.e1 = mkevent("id-1", "fa", "{\"n\":1}", 1000);
    x.e2 = mkevent("id-2", "fb", "[1,2,3]", 500);
    x.e3 = mkevent("id-3", "fa", "null", 2000);
    x.nx = mkevent("id-4", "dest", "{\"next\":true}", 3000);
    x.e1.client_context = "{\"c\":1}";
    x.e1.trace_id = "Root=1-abc";
    x.e1.idem_key = "\"k1\"";
    x.e1.timeout_ms = 1500;
    x.e1.due_ms = 1200;
    x.e2.origin = "node-b";
    return x;
}

/*
 * Loads d after the sample events were put, id-1 attempted twice, id-2's
 * retry set to 99999 and id-3 ended with nx: checks every field, oldest
 * acceptance first, and that a callback's non-zero return stops the load.
 */
static inline void check_sample_load(struct faas_durable *d)
{
    struct seen s;

    memset(&s, 0, sizeof s);
    assert_int_equal(faas_durable_events_load(d, each_event, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.ev[0].id, "id-2");
    assert_string_equal(s.ev[0].function, "fb");
    assert_string_equal(s.ev[0].event, "[1,2,3]");
    assert_string_equal(s.ev[0].origin, "node-b");
    assert_int_equal(s.ev[0].due_ms, 99999);
    assert_false(s.ev[0].has_cc || s.ev[0].has_trace || s.ev[0].has_idem);
    assert_string_equal(s.ev[1].id, "id-1");
    assert_string_equal(s.ev[1].event, "{\"n\":1}");
    assert_string_equal(s.ev[1].cc, "{\"c\":1}");
    assert_string_equal(s.ev[1].trace, "Root=1-abc");
    assert_string_equal(s.ev[1].idem, "\"k1\"");
    assert_string_equal(s.ev[1].origin, "node-a"); /* NULL origin: this node */
    assert_int_equal(s.ev[1].timeout_ms, 1500);
    assert_int_equal(s.ev[1].attempts, 2);
    assert_int_equal(s.ev[1].accepted_ms, 1000);
    assert_int_equal(s.ev[1].due_ms, 1200);
    assert_string_equal(s.ev[2].id, "id-4"); /* id-3 ended, its next put */
    assert_string_equal(s.ev[2].function, "dest");
    memset(&s, 0, sizeof s);
    s.stop_at = 2;
    assert_int_equal(faas_durable_events_load(d, each_event, &s), 7);
    assert_int_equal(s.n, 1);
}

#endif /* FAAS_WITH_SQLITE || FAAS_WITH_REDIS */

#endif /* FAAS_TU_DURABLE_H */

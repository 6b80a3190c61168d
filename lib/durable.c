/*
 * durable.c - the durable engine's front (durable.h): the URL, the node id,
 * the operation records, the schedules' memory and the completions.
 *
 * faas_durable_open picks the engine by the URL's scheme from a table of
 * what this build has (durable_engine.h: SQLite unless built with
 * WITH_SQLITE=0, Redis unless built with WITH_REDIS=0). Every other call copies what it
 * is given into one struct faas_dop (one allocation: the record and its
 * strings) and submits it. The engine hands records back through
 * `report_done`, on the loop, in submission order; each completion runs
 * once, inside the callback guard (faas_rt_enter/leave), so a completion
 * that frees the runtime frees the engine only after the whole batch ran.
 *
 * Invariants: a call that returned 0 gets its completion exactly once
 * (committed, refused, or FAAS_ECANCELED at close); a call that failed gets
 * none and submitted nothing. schedule_get answers from `schedules`,
 * loaded at open and updated when a set or a claim is submitted.
 *
 * Owns struct faas_durable. Called by runtime.c (open, close), the layers
 * that keep state (async.c, batch.c, source.c, durable_store.c) and
 * metrics.c (stats). May call: the engines through their tables,
 * async_durable.c (a fleet engine's deliveries), alloc.c,
 * hash.c, metrics.c's log records, runtime.c's callback guard.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "durable_engine.h"

const double faas_durable_commit_bounds_s[12] = { 0.0001, 0.00025, 0.0005, 0.001,
                                                  0.0025, 0.005,   0.01,   0.025,
                                                  0.05,   0.1,     0.5,    INFINITY };

#define NODE_MAX 256

struct faas_durable {
    struct faas_runtime *rt;
    const struct faas_durable_engine *engine;
    void *impl;
    char node[NODE_MAX];
    struct faas_htable schedules; /* struct sched by name */
};

struct sched {
    struct faas_hnode hnode;
    int64_t fired_ms;
    char name[];
};

static const struct faas_durable_engine *const engines[] = {
#if FAAS_WITH_SQLITE
    &faas_durable_sqlite,
#endif
#if FAAS_WITH_REDIS
    &faas_durable_redis,
#endif
    NULL
};

unsigned faas_durable_bucket(double seconds)
{
    unsigned i = 0;
    while (i < 11 && seconds > faas_durable_commit_bounds_s[i])
        i++;
    return i;
}

void *faas_durable_impl(struct faas_durable *d)
{
    return d->impl;
}

static void durable_log(struct faas_runtime *rt, const char *what, const char *url)
{
    faas_log_event(rt, FAAS_LOG_WARNING, NULL, NULL, "durable", NULL, "%s: %s", url, what);
}

/* ---- schedules in memory --------------------------------------------- */

static int sched_eq(const struct faas_hnode *n, const void *name)
{
    return strcmp(FAAS_CONTAINER_OF(n, struct sched, hnode)->name, name) == 0;
}

static struct sched *sched_find(struct faas_durable *d, const char *name)
{
    struct faas_hnode *n = faas_htable_find(&d->schedules, faas_hash_str(name), sched_eq, name);
    return n ? FAAS_CONTAINER_OF(n, struct sched, hnode) : NULL;
}

/* Sets name's fire time, adding it if new. 0 or FAAS_ENOMEM. */
static int sched_note(struct faas_durable *d, const char *name, int64_t fired_ms)
{
    struct sched *s = sched_find(d, name);
    size_t n;

    if (!s) {
        if (faas_htable_reserve(&d->schedules) != 0)
            return FAAS_ENOMEM;
        n = strlen(name) + 1;
        s = faas_malloc(sizeof *s + n);
        if (!s)
            return FAAS_ENOMEM;
        memset(&s->hnode, 0, sizeof s->hnode);
        memcpy(s->name, name, n);
        faas_htable_insert(&d->schedules, &s->hnode, faas_hash_str(name));
    }
    s->fired_ms = fired_ms;
    return 0;
}

static int sched_load_each(const char *name, int64_t fired_ms, void *arg)
{
    return sched_note(arg, name, fired_ms);
}

static void sched_free_all(struct faas_durable *d)
{
    struct faas_hnode *n;
    if (!d->schedules.buckets)
        return;
    while ((n = faas_htable_first(&d->schedules)) != NULL) {
        faas_htable_remove(&d->schedules, n);
        free(FAAS_CONTAINER_OF(n, struct sched, hnode));
    }
    faas_htable_fini(&d->schedules);
}

/* ---- open and close --------------------------------------------------- */

static int report_done(void *ctx, struct faas_list *done)
{
    struct faas_durable *d = ctx;
    struct faas_runtime *rt = d->rt;
    struct faas_list *e;

    faas_rt_enter(rt);
    while ((e = faas_list_pop_head(done)) != NULL) {
        struct faas_dop *op = FAAS_CONTAINER_OF(e, struct faas_dop, link);
        if (op->kind == FAAS_DOP_DELIVER)
            faas_async_delivered(rt, &op->ev, op->recovered);
        else if (op->kind == FAAS_DOP_SCHEDULE_CLAIM)
            op->claimed(op->rc, op->when_ms, op->arg);
        else if (op->done)
            op->done(op->rc, op->arg);
        free(op);
    }
    return faas_rt_leave(rt);
}

static const struct faas_durable_engine *engine_for(const char *url)
{
    size_t i;
    for (i = 0; engines[i]; i++)
        if (strncmp(url, engines[i]->scheme, strlen(engines[i]->scheme)) == 0)
            return engines[i];
    return NULL;
}

/* Why a URL no engine of this build takes is refused, for the log. */
static const char *url_refusal(const char *url)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return "this build has no SQLite engine (built with WITH_SQLITE=0)";
    if (strncmp(url, "redis://", 8) == 0)
        return "this build has no Redis engine (built with WITH_REDIS=0)";
    return "not a durable engine's URL (sqlite:PATH or redis://HOST:PORT)";
}

static int node_default(char *out, size_t size)
{
    char host[200];
    if (gethostname(host, sizeof host) != 0)
        strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(out, size, "%s:%ld", host, (long)getpid());
    return 0;
}

int faas_durable_open(struct faas_durable **out, struct faas_runtime *rt, const char *url,
                      int sync, const char *node_id)
{
    struct faas_durable_engine_args args;
    struct faas_durable *d;
    const struct faas_durable_engine *eng;
    int rc;

    if (!out || !rt)
        return FAAS_EINVAL;
    if (!url) {
        *out = NULL;
        return 0;
    }
    eng = engine_for(url);
    if (!eng) {
        durable_log(rt, url_refusal(url), url);
        return FAAS_EINVAL;
    }
    if (!url[strlen(eng->scheme)]) {
        durable_log(rt, "the URL names no database", url);
        return FAAS_EINVAL;
    }
    if (node_id && (!node_id[0] || strlen(node_id) >= NODE_MAX)) {
        durable_log(rt, "node_id is empty or longer than 255 bytes", url);
        return FAAS_EINVAL;
    }
    d = faas_calloc(1, sizeof *d);
    if (!d)
        return FAAS_ENOMEM;
    d->rt = rt;
    d->engine = eng;
    if (node_id)
        strcpy(d->node, node_id);
    else
        node_default(d->node, sizeof d->node);
    if (faas_htable_init(&d->schedules, 16) != 0) {
        free(d);
        return FAAS_ENOMEM;
    }
    args.rt = rt;
    args.target = url + strlen(eng->scheme);
    args.sync = sync;
    args.prefix = rt->opts.durable_prefix ? rt->opts.durable_prefix : "faas";
    args.node = d->node;
    args.report = report_done;
    args.report_ctx = d;
    rc = eng->open(&d->impl, &args);
    if (rc == 0) {
        rc = eng->schedules_load(d->impl, sched_load_each, d);
        if (rc != 0) {
            eng->close(d->impl);
            rc = rc == FAAS_ENOMEM ? rc : FAAS_EUNAVAILABLE;
        }
    }
    if (rc != 0) {
        sched_free_all(d);
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void faas_durable_close(struct faas_durable *d)
{
    if (!d)
        return;
    d->engine->close(d->impl);
    sched_free_all(d);
    free(d);
}

const char *faas_durable_node(const struct faas_durable *d)
{
    return d->node;
}

void faas_durable_drain_done(int rc, void *arg)
{
    (void)rc;
    faas_drain_note(arg);
}

void faas_durable_stats_get(struct faas_durable *d, struct faas_durable_stats *out)
{
    memset(out, 0, sizeof *out);
    if (d)
        d->engine->stats(d->impl, out);
}

/* ---- operation records ------------------------------------------------ */

/* A record with `extra` bytes for its strings; *cur points at them. */
static struct faas_dop *dop_new(enum faas_dop_kind kind, size_t extra, faas_durable_done_fn done,
                                void *arg, char **cur)
{
    struct faas_dop *op = faas_calloc(1, sizeof *op + extra);
    if (!op)
        return NULL;
    op->kind = kind;
    op->done = done;
    op->arg = arg;
    *cur = op->buf;
    return op;
}

static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copies n bytes of s and a NUL to *cur; NULL stays NULL. */
static const char *copy_mem(char **cur, const char *s, size_t n)
{
    char *p = *cur;
    if (!s)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    *cur = p + n + 1;
    return p;
}

static const char *copy_str(char **cur, const char *s)
{
    return s ? copy_mem(cur, s, strlen(s)) : NULL;
}

static size_t event_size(const struct faas_durable_event *ev)
{
    return str_size(ev->function) + ev->event_len + 1 + str_size(ev->client_context) +
           str_size(ev->trace_id) + str_size(ev->idem_key) + str_size(ev->origin);
}

static void event_copy(struct faas_durable *d, struct faas_durable_event *to,
                       const struct faas_durable_event *from, char **cur)
{
    *to = *from;
    to->request_id[FAAS_REQUEST_ID_SIZE - 1] = '\0';
    to->function = copy_str(cur, from->function);
    to->event = copy_mem(cur, from->event, from->event_len);
    to->client_context = copy_str(cur, from->client_context);
    to->trace_id = copy_str(cur, from->trace_id);
    to->idem_key = copy_str(cur, from->idem_key);
    to->origin = from->origin ? copy_str(cur, from->origin) : d->node;
}

static int event_valid(const struct faas_durable_event *ev)
{
    return ev && ev->function && ev->event && ev->request_id[0];
}

static int submit(struct faas_durable *d, struct faas_dop *op)
{
    d->engine->submit(d->impl, op);
    return 0;
}

int faas_durable_event_put(struct faas_durable *d, const struct faas_durable_event *ev,
                           faas_durable_done_fn done, void *arg)
{
    struct faas_dop *op;
    char *cur;

    if (!d || !event_valid(ev))
        return FAAS_EINVAL;
    op = dop_new(FAAS_DOP_EVENT_PUT, event_size(ev), done, arg, &cur);
    if (!op)
        return FAAS_ENOMEM;
    op->adds = 1;
    event_copy(d, &op->ev, ev, &cur);
    return submit(d, op);
}

/* A record naming one row by a string (and numbers the caller sets). */
static struct faas_dop *named_op(enum faas_dop_kind kind, const char *name,
                                 faas_durable_done_fn done, void *arg)
{
    char *cur;
    struct faas_dop *op = dop_new(kind, str_size(name), done, arg, &cur);
    if (op)
        op->name = copy_str(&cur, name);
    return op;
}

int faas_durable_event_attempt(struct faas_durable *d, const char *request_id,
                               uint32_t attempts, faas_durable_done_fn done, void *arg)
{
    struct faas_dop *op;
    if (!d || !request_id)
        return FAAS_EINVAL;
    op = named_op(FAAS_DOP_EVENT_ATTEMPT, request_id, done, arg);
    if (!op)
        return FAAS_ENOMEM;
    op->attempts = attempts;
    return submit(d, op);
}

int faas_durable_event_retry(struct faas_durable *d, const char *request_id, int64_t due_ms,
                             faas_durable_done_fn done, void *arg)
{
    struct faas_dop *op;
    if (!d || !request_id)
        return FAAS_EINVAL;
    op = named_op(FAAS_DOP_EVENT_RETRY, request_id, done, arg);
    if (!op)
        return FAAS_ENOMEM;
    op->when_ms = due_ms;
    return submit(d, op);
}

int faas_durable_event_end(struct faas_durable *d, const char *request_id,
                           const struct faas_durable_event *next, faas_durable_done_fn done,
                           void *arg)
{
    struct faas_dop *op;
    char *cur;

    if (!d || !request_id || (next && !event_valid(next)))
        return FAAS_EINVAL;
    op = dop_new(FAAS_DOP_EVENT_END, str_size(request_id) + (next ? event_size(next) : 0), done,
                 arg, &cur);
    if (!op)
        return FAAS_ENOMEM;
    op->name = copy_str(&cur, request_id);
    if (next) {
        op->has_next = 1;
        event_copy(d, &op->ev, next, &cur);
    }
    return submit(d, op);
}

int faas_durable_event_release(struct faas_durable *d, const char *request_id,
                               uint32_t attempts, faas_durable_done_fn done, void *arg)
{
    struct faas_dop *op;
    if (!d || !request_id || !d->engine->shared)
        return FAAS_EINVAL;
    op = named_op(FAAS_DOP_EVENT_RELEASE, request_id, done, arg);
    if (!op)
        return FAAS_ENOMEM;
    op->attempts = attempts;
    return submit(d, op);
}

void faas_durable_queue_want(struct faas_durable *d, const char *function, int registered,
                             uint32_t credit, uint32_t lease_ms)
{
    if (d && function && d->engine->queue_want)
        d->engine->queue_want(d->impl, function, registered, credit, lease_ms);
}

void faas_durable_queue_stop(struct faas_durable *d)
{
    if (d && d->engine->queue_stop)
        d->engine->queue_stop(d->impl);
}

int faas_durable_events_load(struct faas_durable *d,
                             int (*each)(const struct faas_durable_event *ev, void *arg),
                             void *arg)
{
    if (!d || !each)
        return FAAS_EINVAL;
    return d->engine->events_load(d->impl, each, arg);
}

int faas_durable_record_put(struct faas_durable *d, const struct faas_durable_record *rec,
                            faas_durable_done_fn done, void *arg)
{
    struct faas_dop *op;
    char *cur;

    if (!d || !rec || !rec->mapping || !rec->record)
        return FAAS_EINVAL;
    op = dop_new(FAAS_DOP_RECORD_PUT,
                 str_size(rec->mapping) + str_size(rec->key) + rec->record_len + 1, done, arg,
                 &cur);
    if (!op)
        return FAAS_ENOMEM;
    op->adds = 1;
    op->rec = *rec;
    op->rec.mapping = copy_str(&cur, rec->mapping);
    op->rec.key = copy_str(&cur, rec->key);
    op->rec.record = copy_mem(&cur, rec->record, rec->record_len);
    return submit(d, op);
}

int faas_durable_record_del(struct faas_durable *d, const char *mapping, uint64_t seq,
                            faas_durable_done_fn done, void *arg)
{
    struct faas_dop *op;
    if (!d || !mapping)
        return FAAS_EINVAL;
    op = named_op(FAAS_DOP_RECORD_DEL, mapping, done, arg);
    if (!op)
        return FAAS_ENOMEM;
    op->seq = seq;
    return submit(d, op);
}

int faas_durable_records_load(struct faas_durable *d, const char *mapping,
                              int (*each)(const struct faas_durable_record *rec, void *arg),
                              void *arg)
{
    if (!d || !mapping || !each)
        return FAAS_EINVAL;
    return d->engine->records_load(d->impl, mapping, each, arg);
}

/* A schedule's operation for `fired_ms`, noted in memory first; NULL when
 * out of memory. */
static struct faas_dop *sched_op(struct faas_durable *d, enum faas_dop_kind kind,
                                 const char *name, int64_t fired_ms, faas_durable_done_fn done,
                                 void *arg)
{
    struct faas_dop *op = named_op(kind, name, done, arg);
    if (op && sched_note(d, name, fired_ms) != 0) {
        free(op);
        return NULL;
    }
    if (op)
        op->when_ms = fired_ms;
    return op;
}

int faas_durable_schedule_set(struct faas_durable *d, const char *name, int64_t fired_ms,
                              faas_durable_done_fn done, void *arg)
{
    struct faas_dop *op;
    if (!d || !name)
        return FAAS_EINVAL;
    op = sched_op(d, FAAS_DOP_SCHEDULE_SET, name, fired_ms, done, arg);
    return op ? submit(d, op) : FAAS_ENOMEM;
}

int faas_durable_schedule_claim(struct faas_durable *d, const char *name, int64_t due_ms,
                                int64_t gap_ms, faas_durable_claim_fn done, void *arg)
{
    struct faas_dop *op;
    if (!d || !name || !done || gap_ms < 1)
        return FAAS_EINVAL;
    op = sched_op(d, FAAS_DOP_SCHEDULE_CLAIM, name, due_ms, NULL, arg);
    if (!op)
        return FAAS_ENOMEM;
    op->claimed = done;
    op->adds = 1;
    op->seq = (uint64_t)gap_ms;
    return submit(d, op);
}

int faas_durable_schedule_get(struct faas_durable *d, const char *name, int64_t *fired_ms)
{
    struct sched *s;
    if (!d || !name || !fired_ms)
        return FAAS_EINVAL;
    s = sched_find(d, name);
    if (!s)
        return FAAS_ENOENT;
    *fired_ms = s->fired_ms;
    return 0;
}

/* ---- idempotency records (durable_store.c) ----------------------------- */

struct faas_runtime *faas_durable_runtime(struct faas_durable *d)
{
    return d->rt;
}

int faas_durable_idem_set(struct faas_durable *d, const struct faas_durable_idem *rec, int adds,
                          faas_durable_done_fn done, void *arg)
{
    struct faas_dop *op;
    char *cur;

    op = dop_new(FAAS_DOP_IDEM_SET,
                 str_size(rec->scope) + str_size(rec->key) +
                     (rec->payload ? rec->payload_len + 1 : 0) + str_size(rec->validation) +
                     str_size(rec->owner),
                 done, arg, &cur);
    if (!op)
        return FAAS_ENOMEM;
    op->adds = adds;
    op->idem = *rec;
    op->idem.scope = copy_str(&cur, rec->scope);
    op->idem.key = copy_str(&cur, rec->key);
    op->idem.payload = copy_mem(&cur, rec->payload, rec->payload_len);
    op->idem.validation = copy_str(&cur, rec->validation);
    op->idem.owner = copy_str(&cur, rec->owner);
    return submit(d, op);
}

int faas_durable_idem_del(struct faas_durable *d, const char *scope, const char *key,
                          int64_t expired_ms, faas_durable_done_fn done, void *arg)
{
    struct faas_dop *op;
    char *cur;

    op = dop_new(FAAS_DOP_IDEM_DEL, str_size(scope) + str_size(key), done, arg, &cur);
    if (!op)
        return FAAS_ENOMEM;
    op->idem.scope = copy_str(&cur, scope);
    op->idem.key = copy_str(&cur, key);
    op->when_ms = expired_ms;
    return submit(d, op);
}

void faas_durable_call(struct faas_durable *d, struct faas_dop *op)
{
    submit(d, op);
}

int faas_durable_shared(const struct faas_durable *d)
{
    return d && d->engine->shared;
}

int faas_durable_nop(struct faas_durable *d, faas_durable_done_fn done, void *arg)
{
    char *cur;
    struct faas_dop *op = dop_new(FAAS_DOP_NOP, 0, done, arg, &cur);
    if (!op)
        return FAAS_ENOMEM;
    return submit(d, op);
}

int faas_durable_idem_load(struct faas_durable *d, const char *scope,
                           int (*each)(const struct faas_durable_idem *rec, void *arg),
                           void *arg)
{
    return d->engine->idem_load(d->impl, scope, each, arg);
}

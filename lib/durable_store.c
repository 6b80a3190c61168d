/*
 * durable_store.c - an idempotency store over the durable engine
 * (faas_durable_store_new, durable.h).
 *
 * Decisions are the memory store's own: each durable store holds a memory
 * store (`mem`, store.c) with the function's bounds, loaded from the
 * engine when the store is made, and every operation is first decided
 * there, at once, so put-if-absent, owners, expiry, the LRU and byte bounds
 * and their refusals are exactly the memory store's. What the decision
 * changed is then written through the engine, and the answer waits for the
 * commit:
 *   put_if_absent taken   the record is written (an adding operation: when
 *                         the engine cannot keep it, the record is taken
 *                         back out of memory and the answer is
 *                         FAAS_EUNAVAILABLE);
 *   complete done         the record is written;
 *   complete refused      the record the memory store dropped is deleted;
 *   remove done           the record is deleted;
 *   evictions             each evicted record is deleted (the memory
 *                         store's on_evict hook, also forwarded to the
 *                         hook the runtime set on this store);
 *   anything else         nothing is written: the answer still comes back
 *                         through the engine, after what was queued before.
 * So every answer comes later, on the loop, in the order of the calls, and
 * a record is durable before its answer lets an invocation run. Records
 * that expired are skipped at load and swept from the engine at load and
 * every SWEEP_EVERY puts.
 *
 * Invariants: every operation that returned 0 has one `struct answer`
 * pending in the engine, counted in `pending`; the store's memory is freed
 * when it was destroyed and nothing is pending any more, so a store freed
 * inside one of its callbacks (or with answers on the way) still answers
 * each of them once. The engine must outlive the answers: the runtime
 * closes it (running every answer) before it frees its functions' stores,
 * and a store freed after that only frees memory.
 *
 * Owns struct dstore. Called through its store ops by idem.c (the default
 * store of a function while the runtime has a durable engine), hosts and
 * tests. May call: store.c (the memory store, the handle), durable.c's
 * idempotency operations, alloc.c, clock.c, jansson.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durable_engine.h"

#define SWEEP_EVERY 256u

struct dstore {
    struct faas_durable *d;
    struct faas_store *mem;   /* the decisions */
    struct faas_store *outer; /* this store's handle: its on_evict hook */
    char *scope;
    uint32_t pending;         /* answers in the engine */
    uint32_t puts;            /* since the last sweep */
    int destroyed;
};

/* One operation's answer, decided at the call and given after the commit. */
struct answer {
    struct dstore *s;
    faas_store_cb cb;
    void *arg;
    int rc;
    int has_rec;
    struct faas_store_record rec; /* payload: a reference; strings below */
    char validation[33];
    char owner[40];
    int undo;                     /* a put: taken back out if refused */
    char key[65];
    char undo_owner[40];
};

static void dstore_free(struct dstore *s)
{
    faas_store_free(s->mem);
    free(s->scope);
    free(s);
}

/* The memory store's answer, kept for later. */
static void capture(int rc, const struct faas_store_record *rec, void *arg)
{
    struct answer *a = arg;
    a->rc = rc;
    a->has_rec = rec != NULL;
    if (!rec)
        return;
    a->rec = *rec;
    a->rec.payload = json_incref(rec->payload);
    a->rec.validation = NULL;
    a->rec.owner = NULL;
    if (rec->validation) {
        memcpy(a->validation, rec->validation, 33);
        a->rec.validation = a->validation;
    }
    if (rec->owner) {
        snprintf(a->owner, sizeof a->owner, "%s", rec->owner);
        a->rec.owner = a->owner;
    }
}

static void ignore(int rc, const struct faas_store_record *rec, void *arg)
{
    (void)rc;
    (void)rec;
    (void)arg;
}

/* The engine committed (rc 0) or could not: the answer goes out. */
static void answer_done(int rc, void *arg)
{
    struct answer *a = arg;
    struct dstore *s = a->s;

    if (rc != 0) {
        if (a->undo && !s->destroyed)
            faas_store_remove(s->mem, a->key, a->undo_owner[0] ? a->undo_owner : NULL,
                              INT64_MIN, ignore, NULL);
        a->cb(rc == FAAS_ECANCELED ? rc : FAAS_EUNAVAILABLE, NULL, a->arg);
    } else {
        a->cb(a->rc, a->has_rec ? &a->rec : NULL, a->arg);
    }
    json_decref(a->rec.payload);
    free(a);
    if (--s->pending == 0 && s->destroyed)
        dstore_free(s);
}

static struct answer *answer_new(struct dstore *s, faas_store_cb cb, void *arg)
{
    struct answer *a = faas_calloc(1, sizeof *a);
    if (a) {
        a->s = s;
        a->cb = cb;
        a->arg = arg;
    }
    return a;
}

/* The record written for `key`: rec as the memory store took it. */
static int write_record(struct dstore *s, const char *key, const struct faas_store_record *rec,
                        int adds, struct answer *a)
{
    struct faas_durable_idem r;
    char *text = NULL;
    int rc;

    memset(&r, 0, sizeof r);
    r.scope = s->scope;
    r.key = key;
    r.state = (int)rec->state;
    r.status = rec->status;
    if (rec->payload) {
        text = json_dumps(rec->payload, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
            return FAAS_ENOMEM;
        r.payload = text;
        r.payload_len = strlen(text);
    }
    r.validation = rec->validation;
    r.owner = rec->owner;
    r.expires_ms = rec->expires_ms;
    rc = faas_durable_idem_set(s->d, &r, adds, answer_done, a);
    free(text);
    return rc;
}

/* Queues the answer behind a write (or nothing to write: op < 0). */
static int queue_answer(struct dstore *s, struct answer *a, int rc)
{
    if (rc != 0) {
        json_decref(a->rec.payload);
        free(a);
        return rc;
    }
    s->pending++;
    return 0;
}

static void on_mem_evict(void *arg, const char *key)
{
    struct dstore *s = arg;
    /* Best effort: a delete that cannot be queued leaves a row that the
     * next load evicts again. */
    faas_durable_idem_del(s->d, s->scope, key, 0, NULL, NULL);
    if (s->outer && s->outer->on_evict)
        s->outer->on_evict(s->outer->on_evict_arg, key);
}

/* ---- operations ----------------------------------------------------------- */

static int ds_get(void *impl, const char *key, int64_t now_ms, faas_store_cb cb, void *arg)
{
    struct dstore *s = impl;
    struct answer *a = answer_new(s, cb, arg);
    int rc;

    if (!a)
        return FAAS_ENOMEM;
    rc = faas_store_get(s->mem, key, now_ms, capture, a);
    if (rc == 0)
        rc = faas_durable_nop(s->d, answer_done, a);
    return queue_answer(s, a, rc);
}

static int ds_put_if_absent(void *impl, const char *key, const struct faas_store_record *rec,
                            int64_t now_ms, faas_store_cb cb, void *arg)
{
    struct dstore *s = impl;
    struct answer *a = answer_new(s, cb, arg);
    int rc;

    if (!a)
        return FAAS_ENOMEM;
    rc = faas_store_put_if_absent(s->mem, key, rec, now_ms, capture, a);
    if (rc == 0 && a->rc == 0) {
        a->undo = 1;
        memcpy(a->key, key, sizeof a->key);
        if (rec->owner)
            snprintf(a->undo_owner, sizeof a->undo_owner, "%s", rec->owner);
        rc = write_record(s, key, rec, 1, a);
        if (rc != 0)
            faas_store_remove(s->mem, key, rec->owner, INT64_MIN, ignore, NULL);
        if (rc == 0 && ++s->puts >= SWEEP_EVERY) {
            s->puts = 0;
            faas_durable_idem_del(s->d, s->scope, NULL, now_ms, NULL, NULL);
        }
    } else if (rc == 0) {
        rc = faas_durable_nop(s->d, answer_done, a);
    }
    return queue_answer(s, a, rc);
}

static int ds_complete(void *impl, const char *key, const struct faas_store_record *rec,
                       int64_t now_ms, faas_store_cb cb, void *arg)
{
    struct dstore *s = impl;
    struct answer *a = answer_new(s, cb, arg);
    int rc;

    if (!a)
        return FAAS_ENOMEM;
    rc = faas_store_complete(s->mem, key, rec, now_ms, capture, a);
    if (rc == 0 && a->rc == 0)
        rc = write_record(s, key, rec, 0, a);
    else if (rc == 0 && a->rc != FAAS_ENOENT) /* refused: the record was dropped */
        rc = faas_durable_idem_del(s->d, s->scope, key, 0, answer_done, a);
    else if (rc == 0)
        rc = faas_durable_nop(s->d, answer_done, a);
    return queue_answer(s, a, rc);
}

static int ds_remove(void *impl, const char *key, const char *owner, int64_t now_ms,
                     faas_store_cb cb, void *arg)
{
    struct dstore *s = impl;
    struct answer *a = answer_new(s, cb, arg);
    int rc;

    if (!a)
        return FAAS_ENOMEM;
    rc = faas_store_remove(s->mem, key, owner, now_ms, capture, a);
    if (rc == 0 && a->rc == 0)
        rc = faas_durable_idem_del(s->d, s->scope, key, 0, answer_done, a);
    else if (rc == 0)
        rc = faas_durable_nop(s->d, answer_done, a);
    return queue_answer(s, a, rc);
}

static void ds_destroy(void *impl)
{
    struct dstore *s = impl;
    s->outer = NULL;
    if (s->pending) {
        s->destroyed = 1; /* the last answer frees it */
        return;
    }
    dstore_free(s);
}

static const struct faas_store_ops ds_ops = {
    FAAS_STORE_OPS_VERSION, ds_get, ds_put_if_absent, ds_complete, ds_remove, ds_destroy
};

/* ---- making one ------------------------------------------------------------ */

struct load {
    struct dstore *s;
    int64_t now_ms;
};

/* A record kept by an earlier run goes back into memory, unless it
 * expired or is not well formed (the store's checks refuse it). */
static int load_each(const struct faas_durable_idem *r, void *arg)
{
    struct load *l = arg;
    struct faas_store_record rec;
    json_error_t err;

    if (r->expires_ms <= l->now_ms)
        return 0;
    memset(&rec, 0, sizeof rec);
    rec.state = (enum faas_store_state)r->state;
    rec.status = r->status;
    rec.validation = r->validation;
    rec.owner = r->owner;
    rec.expires_ms = r->expires_ms;
    if (r->payload) {
        rec.payload = json_loadb(r->payload, r->payload_len, JSON_DECODE_ANY, &err);
        if (!rec.payload)
            return 0;
    }
    if (faas_store_put_if_absent(l->s->mem, r->key, &rec, l->now_ms, ignore, NULL) == FAAS_ENOMEM) {
        json_decref(rec.payload);
        return FAAS_ENOMEM;
    }
    json_decref(rec.payload);
    return 0;
}

int faas_durable_store_new(struct faas_durable *d, const char *scope, uint32_t max_entries,
                           size_t max_bytes, struct faas_store **out)
{
    struct dstore *s;
    struct load l;
    int rc;

    if (!d || !scope || !out)
        return FAAS_EINVAL;
    s = faas_calloc(1, sizeof *s);
    if (!s)
        return FAAS_ENOMEM;
    s->d = d;
    s->scope = faas_strdup(scope);
    rc = s->scope ? faas_store_memory_new(&s->mem, max_entries) : FAAS_ENOMEM;
    if (rc != 0) {
        free(s->scope);
        free(s);
        return rc;
    }
    faas_store_memory_set_max_bytes(s->mem, max_bytes);
    s->mem->on_evict = on_mem_evict;
    s->mem->on_evict_arg = s;
    l.s = s;
    l.now_ms = faas_wall_ns(faas_durable_runtime(d)) / 1000000;
    rc = faas_durable_idem_load(d, scope, load_each, &l);
    if (rc == 0)
        rc = faas_durable_idem_del(d, scope, NULL, l.now_ms, NULL, NULL);
    if (rc == 0)
        rc = faas_store_new(&s->outer, &ds_ops, s);
    if (rc != 0) {
        dstore_free(s);
        return rc == FAAS_ENOMEM ? rc : FAAS_EUNAVAILABLE;
    }
    *out = s->outer;
    return 0;
}

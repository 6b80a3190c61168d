/*
 * durable_redis_store.c - the idempotency store shared by a fleet: records
 * live in Redis (the runtime's Redis engine, durable_redis.c), so the same
 * key invoked on two hosts runs once (faas_durable_shared_store_new).
 *
 * Every operation is one call of the engine's script, atomic in Redis, with
 * the semantics of the memory store (include/faas.h, ARCHITECTURE section
 * 5): a record whose expires_ms <= now_ms (the caller's clock) is absent
 * and is deleted when seen; put_if_absent takes the key only if no live
 * record holds it (else FAAS_EEXIST with the live record); complete
 * replaces a live record and remove deletes one, each only if an owner
 * given is the record's (else FAAS_ENOENT); get reads. Records are the
 * hash P:store:SCOPE:KEY (state, status, payload as compact JSON,
 * validation, owner, expires_ms), with a Redis TTL of expires_ms - now_ms
 * plus a minute, so Redis forgets what expired without a sweep.
 *
 * Bounds: a record bigger than max_bytes is refused (FAAS_ETOOBIG, through
 * the callback: a put fails the invocation; a complete delivers the result
 * unkept and drops the record, so the key runs again); the count
 * bound and the LRU of the memory store do not apply: Redis' own memory
 * policy and the TTLs bound the records (docs/durability.md).
 *
 * Answers come on the loop, in the order of the calls, through the engine
 * (never inside the call). When Redis cannot be reached, get and
 * put_if_absent answer FAAS_EUNAVAILABLE; complete and remove are kept by
 * the engine and re-sent after the reconnect (a re-sent remove may answer
 * FAAS_ENOENT). Each pending answer holds the store: freed when destroyed
 * and no answer is owed, so a store freed inside its own callback, or with
 * answers on the way, still answers each of them once.
 *
 * Owns struct rstore and the operations it makes. Called through its store
 * ops by idem.c (the default store while the runtime's engine is Redis),
 * hosts and tests. May call: durable.c (faas_durable_call), store.c (the
 * handle), alloc.c, jansson, hiredis' reply type.
 */
#if FAAS_WITH_REDIS

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "durable_engine.h"

struct rstore {
    struct faas_durable *d;
    char *scope;
    size_t max_bytes;
    uint32_t pending;
    int destroyed;
};

/* One operation: its answer, read from the reply before the completion. */
struct call {
    struct rstore *s;
    faas_store_cb cb;
    void *arg;
    int refused;                  /* FAAS_ETOOBIG: the answer, whatever Redis said */
    int has_rec;
    struct faas_store_record rec; /* payload: a new reference */
    char validation[33];
    char owner[40];
};

static void rstore_free(struct rstore *s)
{
    free(s->scope);
    free(s);
}

/* A reply element's string, or NULL (nil). */
static const char *elem(const redisReply *rep, size_t i)
{
    if (i >= rep->elements || rep->element[i]->type != REDIS_REPLY_STRING)
        return NULL;
    return rep->element[i]->str;
}

static void on_answer(struct faas_dop *op, const void *reply)
{
    const redisReply *rep = reply;
    struct call *c = op->arg;
    const char *s;

    if (rep->elements < 7 || !elem(rep, 1))
        return;
    c->has_rec = 1;
    c->rec.state = (enum faas_store_state)atoi(elem(rep, 1));
    c->rec.status = elem(rep, 2) ? atoi(elem(rep, 2)) : 0;
    s = elem(rep, 3);
    c->rec.payload = s ? json_loadb(s, rep->element[3]->len, JSON_DECODE_ANY, NULL) : NULL;
    s = elem(rep, 4);
    if (s && strlen(s) < sizeof c->validation) {
        strcpy(c->validation, s);
        c->rec.validation = c->validation;
    }
    s = elem(rep, 5);
    if (s && strlen(s) < sizeof c->owner) {
        strcpy(c->owner, s);
        c->rec.owner = c->owner;
    }
    c->rec.expires_ms = elem(rep, 6) ? strtoll(elem(rep, 6), NULL, 10) : 0;
}

static void on_done(int rc, void *arg)
{
    struct call *c = arg;
    struct rstore *s = c->s;

    if (c->refused && rc != FAAS_EUNAVAILABLE && rc != FAAS_ECANCELED)
        rc = c->refused;
    c->cb(rc, !c->refused && c->has_rec && (rc == 0 || rc == FAAS_EEXIST) ? &c->rec : NULL,
          c->arg);
    json_decref(c->rec.payload);
    free(c);
    if (--s->pending == 0 && s->destroyed)
        rstore_free(s);
}

/* An operation with room for `extra` bytes of strings. */
struct builder {
    struct faas_dop *op;
    char *cur;
};

static void put_arg(struct builder *b, const char *v, size_t len)
{
    struct faas_dop *op = b->op;
    memcpy(b->cur, v, len);
    b->cur[len] = '\0';
    op->call_argv[op->call_argc] = b->cur;
    op->call_len[op->call_argc] = len;
    op->call_argc++;
    b->cur += len + 1;
}

static void put_str(struct builder *b, const char *v)
{
    put_arg(b, v, strlen(v));
}

static void put_i64(struct builder *b, int64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)v);
    put_str(b, num);
}

/*
 * Queues one call: kind, scope, key, now_ms, then (when not NULL) `owner`
 * ("" for none) and the record's fields. 0, FAAS_ETOOBIG or FAAS_ENOMEM.
 */
static int call(struct rstore *s, const char *kind, const char *key, int64_t now_ms,
                const char *owner, const struct faas_store_record *rec, faas_store_cb cb,
                void *arg)
{
    char *payload = NULL;
    size_t plen = 0, extra;
    struct builder b;
    struct call *c;
    int pairs_at, refused = 0;
    char *slot;

    if (rec && rec->payload) {
        payload = json_dumps(rec->payload, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!payload)
            return FAAS_ENOMEM;
        plen = strlen(payload);
    }
    /* Too big to keep: refused through the callback, as the memory store
     * does; a refused complete drops the record (a retry runs again rather
     * than finding the attempt forever in progress), a refused put reads
     * nothing. */
    if (rec && plen + 256 > s->max_bytes) {
        free(payload);
        payload = NULL;
        plen = 0;
        kind = strcmp(kind, "sput") == 0 ? "sget" : "sremove";
        rec = NULL;
        refused = FAAS_ETOOBIG;
    }
    extra = strlen(kind) + strlen(s->scope) + strlen(key) + plen + 512;
    c = faas_calloc(1, sizeof *c);
    b.op = faas_calloc(1, sizeof *b.op + extra);
    if (!c || !b.op) {
        free(c);
        free(b.op);
        free(payload);
        return FAAS_ENOMEM;
    }
    b.cur = b.op->buf;
    b.op->kind = FAAS_DOP_CALL;
    b.op->adds = strcmp(kind, "sput") == 0 || strcmp(kind, "sget") == 0;
    b.op->done = on_done;
    b.op->arg = c;
    b.op->call_answer = on_answer;
    put_str(&b, kind);
    put_str(&b, s->scope);
    put_str(&b, key);
    put_i64(&b, now_ms);
    if (owner)
        put_str(&b, owner);
    if (rec) {
        pairs_at = b.op->call_argc;
        slot = b.cur;
        put_str(&b, "0000000"); /* a slot for the count, set below */
        put_str(&b, "state");
        put_i64(&b, rec->state);
        put_str(&b, "status");
        put_i64(&b, rec->status);
        put_str(&b, "expires_ms");
        put_i64(&b, rec->expires_ms);
        if (payload) {
            put_str(&b, "payload");
            put_arg(&b, payload, plen);
        }
        if (rec->validation) {
            put_str(&b, "validation");
            put_str(&b, rec->validation);
        }
        if (rec->owner) {
            put_str(&b, "owner");
            put_str(&b, rec->owner);
        }
        /* the count of the field arguments, written into its slot */
        snprintf(slot, 8, "%u", (unsigned)(b.op->call_argc - pairs_at - 1) % 100u);
        b.op->call_len[pairs_at] = strlen(slot);
    }
    free(payload);
    c->s = s;
    c->cb = cb;
    c->arg = arg;
    c->refused = refused;
    s->pending++;
    faas_durable_call(s->d, b.op);
    return 0;
}

static int rs_get(void *impl, const char *key, int64_t now_ms, faas_store_cb cb, void *arg)
{
    return call(impl, "sget", key, now_ms, NULL, NULL, cb, arg);
}

static int rs_put(void *impl, const char *key, const struct faas_store_record *rec,
                  int64_t now_ms, faas_store_cb cb, void *arg)
{
    return call(impl, "sput", key, now_ms, NULL, rec, cb, arg);
}

static int rs_complete(void *impl, const char *key, const struct faas_store_record *rec,
                       int64_t now_ms, faas_store_cb cb, void *arg)
{
    return call(impl, "scomplete", key, now_ms, rec->owner ? rec->owner : "", rec, cb, arg);
}

static int rs_remove(void *impl, const char *key, const char *owner, int64_t now_ms,
                     faas_store_cb cb, void *arg)
{
    return call(impl, "sremove", key, now_ms, owner ? owner : "", NULL, cb, arg);
}

static void rs_destroy(void *impl)
{
    struct rstore *s = impl;
    s->destroyed = 1;
    if (s->pending == 0)
        rstore_free(s);
}

int faas_durable_shared_store_new(struct faas_durable *d, const char *scope, size_t max_bytes,
                                  struct faas_store **out)
{
    static const struct faas_store_ops ops = { FAAS_STORE_OPS_VERSION, rs_get, rs_put,
                                               rs_complete, rs_remove, rs_destroy };
    struct rstore *s;
    size_t n;
    int rc;

    if (!d || !scope || !out)
        return FAAS_EINVAL;
    s = faas_calloc(1, sizeof *s);
    if (!s)
        return FAAS_ENOMEM;
    n = strlen(scope) + 1;
    s->scope = faas_malloc(n);
    if (!s->scope) {
        free(s);
        return FAAS_ENOMEM;
    }
    memcpy(s->scope, scope, n);
    s->d = d;
    s->max_bytes = max_bytes ? max_bytes : 64u * 1024u * 1024u;
    rc = faas_store_new(out, &ops, s);
    if (rc != 0)
        rstore_free(s);
    return rc;
}

#endif

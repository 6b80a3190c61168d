/*
 * idem.c - idempotency: the key of an invocation, and the state machine
 * around it.
 *
 * The key is a dotted path into the event ("body.order_id",
 * "headers.Idempotency-Key", "Records.0.messageId"; json_path.c walks it:
 * objects, case-insensitively after the exact name, arrays, and strings
 * that hold JSON) or an explicit string per call, and keys on the canonical
 * serialisation of what it finds (sorted keys, compact). The store key is
 * BLAKE2b-256 of the function's name and that text: keys of any size cost
 * the same, and two functions never share a record.
 *
 * States, per key, in the function's store:
 *   absent      -> the invocation takes an INPROGRESS record, then runs;
 *   INPROGRESS  -> a duplicate fails at once with FAAS_EINPROGRESS; the
 *                  record expires at the running invocation's deadline, so
 *                  an attempt that timed out or died never blocks a retry;
 *   COMPLETED   -> a duplicate gets the stored result, replayed, without
 *                  running (FAAS_EIDEMPOTENCY_MISMATCH if its validated part
 *                  differs); it expires after ttl_s.
 * A success completes the record; a failure deletes it, so a retry runs.
 * The function's own memory store is bounded in bytes too: a record it
 * cannot take fails the invocation (FAAS_ETOOBIG, FAAS_ETHROTTLED) before
 * the handler runs; a result it cannot keep is delivered and logged
 * "drop".
 *
 * Stores may answer inside the call or later. An invocation waiting for its
 * store sits on rt->store_wait behind a small token, so faas_runtime_free can
 * end it, and a late answer finds the token cancelled.
 *
 * Admission and delivery are not idem.c's: when the record is taken, inv
 * goes to the admission invoke.c gave faas_idem_begin (struct
 * faas_idem_caller), and a result decided here (replay, duplicate, refusal,
 * cancellation) goes back through the same table, whenever the store
 * answers.
 *
 * Owns each function's idempotency state (struct faas_idem: the options, the
 * store handle, the memory store it made) and the store-wait tokens on
 * rt->store_wait. Called by invoke.c (faas_idem_prepare, faas_idem_begin,
 * faas_idem_end), async.c (faas_idem_prepare: a key checked at enqueue) and
 * runtime.c (configure at registration, cancel the waits, orphan the ops,
 * free).
 *
 * May call: store.c, durable_store.c (faas_durable_store_new: the default
 * store while the runtime has a durable engine), durable_redis_store.c
 * (instead, on a Redis engine: the store shared by a fleet), json_path.c,
 * opts.c, json.c (error objects), clock.c, error.c, metrics.c (log
 * records), runtime.c's loop services (function references, the callback
 * guard), libsodium; the caller's table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "durable.h"
#include "faas_int.h"
#include "json_path.h"
#include "opts.h"

struct faas_idem {
    char *key_path;      /* NULL: explicit keys only */
    char *validate_path; /* NULL: no validation */
    uint32_t ttl_s;
    int required;
    struct faas_store *store;
    int owns_store;
    /* Keys the memory store evicted inside an operation, logged once the
     * operation is over: host code must not run inside the store. One
     * operation may evict many (the byte bound): the array grows. */
    char (*evicted)[65];
    size_t nevicted, evicted_cap;
};

struct idem_wait {
    struct faas_inv *inv; /* NULL once cancelled */
    const struct faas_idem_caller *caller; /* what faas_idem_begin was given */
};

static int64_t wall_ms(const struct faas_runtime *rt)
{
    return faas_wall_ns(rt) / 1000000;
}

static void on_evict(void *arg, const char *key)
{
    struct faas_fn *fn = arg;
    struct faas_idem *idem = fn->idem;
    if (idem->nevicted == idem->evicted_cap) {
        size_t cap = idem->evicted_cap ? idem->evicted_cap * 2 : 8;
        char(*a)[65] = faas_malloc(cap * sizeof *a);
        if (!a)
            return; /* the record is evicted all the same; its log line is lost */
        if (idem->nevicted)
            memcpy(a, idem->evicted, idem->nevicted * sizeof *a);
        free(idem->evicted);
        idem->evicted = a;
        idem->evicted_cap = cap;
    }
    memcpy(idem->evicted[idem->nevicted++], key, sizeof idem->evicted[0]);
}

/* Logs the evictions of the store operation that just returned, least
 * recently used first (callers hold the runtime: a free waits). The keys
 * are taken off first: a log callback that invokes again logs only its
 * own evictions. */
static void log_evictions(struct faas_fn *fn)
{
    struct faas_idem *idem = fn->idem;
    char(*keys)[65] = idem->evicted;
    size_t i, n = idem->nevicted, cap = idem->evicted_cap;

    if (n == 0)
        return;
    idem->evicted = NULL;
    idem->nevicted = idem->evicted_cap = 0;
    for (i = 0; i < n; i++)
        faas_log_event(fn->rt, FAAS_LOG_IDEMPOTENCY, fn->name, "", "evict", keys[i], NULL);
    if (idem->evicted == NULL) { /* the array again, for the next operation */
        idem->evicted = keys;
        idem->evicted_cap = cap;
    } else {
        free(keys);
    }
}

int faas_idem_configure(struct faas_fn *fn, const struct faas_idempotency_opts *host_opts)
{
    struct faas_idempotency_opts o, *opts = &o;
    struct faas_idem *idem;
    int rc;

    if (faas_idempotency_opts_read(&o, host_opts) != 0)
        return FAAS_EINVAL;
    if ((opts->key_path && !faas_json_path_valid(opts->key_path)) ||
        (opts->validate_path && !faas_json_path_valid(opts->validate_path)) || opts->ttl_s == 0)
        return FAAS_EINVAL;
    if (sodium_init() < 0)
        return FAAS_ESYS;
    idem = faas_calloc(1, sizeof *idem);
    if (!idem)
        return FAAS_ENOMEM;
    fn->idem = idem;
    idem->ttl_s = opts->ttl_s;
    idem->required = opts->required;
    if ((opts->key_path && !(idem->key_path = faas_strdup(opts->key_path))) ||
        (opts->validate_path && !(idem->validate_path = faas_strdup(opts->validate_path))))
        return FAAS_ENOMEM; /* faas_idem_free cleans up */
    if (opts->store) {
        idem->store = opts->store;
        return 0;
    }
    /* The default store: the runtime's durable engine when it has one
     * (its records survive a restart; on a shared engine, Redis, they
     * live in it and every host of the fleet sees them), else memory. */
#if FAAS_WITH_REDIS
    if (fn->rt->durable && faas_durable_shared(fn->rt->durable)) {
        rc = faas_durable_shared_store_new(fn->rt->durable, fn->name, opts->max_bytes,
                                           &idem->store);
        if (rc)
            return rc;
    } else
#endif
    if (fn->rt->durable) {
        rc = faas_durable_store_new(fn->rt->durable, fn->name, opts->max_entries,
                                    opts->max_bytes, &idem->store);
        if (rc)
            return rc;
    } else {
        rc = faas_store_memory_new(&idem->store, opts->max_entries);
        if (rc)
            return rc;
        faas_store_memory_set_max_bytes(idem->store, opts->max_bytes);
    }
    idem->owns_store = 1;
    idem->store->on_evict = on_evict;
    idem->store->on_evict_arg = fn;
    return 0;
}

void faas_idem_free(struct faas_fn *fn)
{
    struct faas_idem *idem = fn->idem;
    if (!idem)
        return;
    if (idem->owns_store)
        faas_store_free(idem->store);
    free(idem->evicted);
    free(idem->key_path);
    free(idem->validate_path);
    free(idem);
    fn->idem = NULL;
}

/*
 * What a key hashes: "s" and the bytes of a string, or "j" and the canonical
 * JSON (sorted keys, compact) of anything else. A string costs no
 * serialisation, and an explicit key equals a path that finds that string.
 */
struct keytext {
    char *buf; /* owned */
    size_t len;
};

static int keytext_of(json_t *v, struct keytext *out)
{
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        out->buf = faas_malloc(n + 1);
        if (!out->buf)
            return FAAS_ENOMEM;
        out->buf[0] = 's';
        memcpy(out->buf + 1, json_string_value(v), n);
        out->len = n + 1;
        return 0;
    }
    {
        size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (n == 0)
            return FAAS_EINVAL;
        out->buf = faas_malloc(n + 1);
        if (!out->buf)
            return FAAS_ENOMEM;
        out->buf[0] = 'j';
        json_dumpb(v, out->buf + 1, n, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        out->len = n + 1;
        return 0;
    }
}

/*
 * The key text of the value at `path` in `root` (json_path.c walks it).
 * Returns 0 (out->buf NULL when there is none: missing, or JSON null), or
 * FAAS_ENOMEM.
 */
static int path_key(json_t *root, const char *path, struct keytext *out)
{
    json_t *v = faas_json_path(root, path);
    int rc = 0;

    out->buf = NULL;
    out->len = 0;
    if (v && !json_is_null(v))
        rc = keytext_of(v, out);
    json_decref(v);
    return rc;
}

/* Hex BLAKE2b (outlen bytes) of the function's name, a NUL, and the text. */
static void key_hash(const struct faas_fn *fn, const struct keytext *t, size_t outlen,
                     char *out)
{
    crypto_generichash_state st;
    unsigned char h[crypto_generichash_BYTES_MAX];
    crypto_generichash_init(&st, NULL, 0, outlen);
    crypto_generichash_update(&st, (const unsigned char *)fn->name, strlen(fn->name) + 1);
    crypto_generichash_update(&st, (const unsigned char *)t->buf, t->len);
    crypto_generichash_final(&st, h, outlen);
    sodium_bin2hex(out, 2 * outlen + 1, h, outlen);
}

int faas_idem_prepare(struct faas_inv *inv, const char *explicit_key)
{
    struct faas_idem *idem = inv->fn->idem;
    struct keytext t = { NULL, 0 };
    int rc = 0;

    inv->idem_key[0] = '\0';
    inv->idem_validation[0] = '\0';
    if (explicit_key && *explicit_key) {
        size_t n = strlen(explicit_key);
        t.buf = faas_malloc(n + 1);
        if (!t.buf)
            return FAAS_ENOMEM;
        t.buf[0] = 's';
        memcpy(t.buf + 1, explicit_key, n);
        t.len = n + 1;
    } else if (idem->key_path) {
        rc = path_key(inv->event, idem->key_path, &t);
        if (rc)
            return rc;
    }
    if (!t.buf)
        return idem->required ? FAAS_ENOKEY : 0;
    key_hash(inv->fn, &t, 32, inv->idem_key);
    free(t.buf);
    if (idem->validate_path) {
        static const struct keytext none = { (char *)"n", 1 };
        rc = path_key(inv->event, idem->validate_path, &t);
        if (rc) {
            inv->idem_key[0] = '\0';
            return rc;
        }
        key_hash(inv->fn, t.buf ? &t : &none, 16, inv->idem_validation);
        free(t.buf);
    }
    return 0;
}

static void store_done(int rc, const struct faas_store_record *rec, void *arg)
{
    (void)rc;
    (void)rec;
    (void)arg;
}

/* A complete or remove in flight: logged when the store answers. */
struct idem_op {
    struct faas_list link; /* rt->store_ops until answered */
    struct faas_fn *fn;    /* a reference; NULL once the runtime is gone */
    const char *action;
    char key[65];
    char request_id[FAAS_REQUEST_ID_SIZE];
};

static void op_done(int rc, const struct faas_store_record *rec, void *arg)
{
    struct idem_op *op = arg;
    (void)rec;
    if (op->fn) {
        faas_list_remove(&op->link);
        /* "lost": the record was no longer this invocation's (it expired,
         * and a duplicate took the key). "drop": the store could not keep
         * the result (its byte bound); the caller has it all the same. */
        if (rc == 0 || rc == FAAS_ENOENT || strcmp(op->action, "complete") != 0)
            faas_log_event(op->fn->rt, FAAS_LOG_IDEMPOTENCY, op->fn->name, op->request_id,
                           rc == 0 ? op->action : "lost", op->key, NULL);
        else
            faas_log_event(op->fn->rt, FAAS_LOG_IDEMPOTENCY, op->fn->name, op->request_id,
                           "drop", op->key, "%s", faas_strerror(rc));
        faas_fn_unref(op->fn);
    }
    free(op);
}

/* Completes the record inv holds with its result, or drops it; only if inv
 * still owns it. */
static void end_record(struct faas_inv *inv, int complete, json_t *payload)
{
    struct faas_fn *fn = inv->fn;
    struct faas_runtime *rt = fn->rt;
    struct faas_idem *idem = fn->idem;
    struct idem_op *op = faas_malloc(sizeof *op);
    int64_t now = wall_ms(rt);
    faas_store_cb cb = store_done;
    int rc;

    inv->idem_held = 0;
    if (op) {
        op->fn = fn;
        faas_fn_ref(fn);
        op->action = complete ? "complete" : "delete";
        memcpy(op->key, inv->idem_key, sizeof op->key);
        memcpy(op->request_id, inv->res.request_id, sizeof op->request_id);
        faas_list_insert_tail(&rt->store_ops, &op->link);
        cb = op_done;
    }
    if (complete) {
        struct faas_store_record rec;
        memset(&rec, 0, sizeof rec);
        rec.state = FAAS_STORE_COMPLETED;
        rec.status = 0;
        rec.payload = payload;
        rec.validation = inv->idem_validation[0] ? inv->idem_validation : NULL;
        rec.owner = inv->res.request_id;
        rec.expires_ms = now + (int64_t)idem->ttl_s * 1000;
        rc = faas_store_complete(idem->store, inv->idem_key, &rec, now, cb, op);
        log_evictions(fn); /* room made for this result */
    } else {
        rc = faas_store_remove(idem->store, inv->idem_key, inv->res.request_id, now, cb, op);
    }
    if (rc && op) { /* no answer will come */
        faas_list_remove(&op->link);
        faas_fn_unref(fn);
        free(op);
    }
}

/* Decides the result without running, and delivers it from the loop. */
static void preset(struct faas_inv *inv, const struct faas_idem_caller *caller, int status,
                   const char *etype, const char *emsg)
{
    inv->preset = 1;
    inv->res.status = status;
    inv->res.payload = faas_error_object(etype, emsg);
    caller->defer(inv);
}

/* The store's answer to put_if_absent. Returns a code for faas_invoke to
 * return (only while inv->in_call), or 0 when inv was handed on. Admitting
 * and delivery are the caller's (invoke.c): what it gave faas_idem_begin. */
static int on_put(struct faas_inv *inv, int rc, const struct faas_store_record *rec,
                  const struct faas_idem_caller *caller)
{
    struct faas_fn *fn = inv->fn;

    if (rc == 0) {
        int arc;
        inv->idem_held = 1;
        faas_log_event(fn->rt, FAAS_LOG_IDEMPOTENCY, fn->name, inv->res.request_id, "store",
                       inv->idem_key, NULL);
        arc = caller->admit(inv);
        if (arc == 0)
            return 0;
        end_record(inv, 0, NULL);
        if (inv->in_call)
            return arc;
        preset(inv, caller, arc, "Runtime.Throttled", faas_strerror(arc));
        return 0;
    }
    if (rc == FAAS_EEXIST && rec && rec->state == FAAS_STORE_INPROGRESS) {
        faas_log_event(fn->rt, FAAS_LOG_IDEMPOTENCY, fn->name, inv->res.request_id, "inprogress",
                       inv->idem_key, NULL);
        preset(inv, caller, FAAS_EINPROGRESS, "IdempotencyAlreadyInProgressError",
               "an invocation with this idempotency key is in progress");
        return 0;
    }
    if (rc == FAAS_EEXIST && rec) {
        if (inv->idem_validation[0] && rec->validation &&
            strcmp(inv->idem_validation, rec->validation) != 0) {
            faas_log_event(fn->rt, FAAS_LOG_IDEMPOTENCY, fn->name, inv->res.request_id, "mismatch",
                           inv->idem_key, NULL);
            preset(inv, caller, FAAS_EIDEMPOTENCY_MISMATCH, "IdempotencyValidationError",
                   "the payload differs from the one stored for this idempotency key");
            return 0;
        }
        faas_log_event(fn->rt, FAAS_LOG_IDEMPOTENCY, fn->name, inv->res.request_id, "replay",
                       inv->idem_key, NULL);
        inv->preset = 1;
        inv->res.replayed = 1;
        inv->res.status = rec->status;
        inv->res.payload = rec->payload ? json_incref(rec->payload) : json_null();
        caller->defer(inv);
        return 0;
    }
    /* Refused (the byte bound: FAAS_ETOOBIG, FAAS_ETHROTTLED) or failed:
     * the handler does not run without its record. */
    if (!rc)
        rc = FAAS_ESYS;
    if (inv->in_call)
        return rc;
    preset(inv, caller, rc, rc == FAAS_ETHROTTLED ? "Runtime.Throttled" : "Runtime.StoreError",
           faas_strerror(rc));
    return 0;
}

static void put_cb(int rc, const struct faas_store_record *rec, void *arg)
{
    struct idem_wait *w = arg;
    struct faas_inv *inv = w->inv;
    const struct faas_idem_caller *caller = w->caller;
    struct faas_runtime *rt;

    free(w);
    if (!inv)
        return; /* ended meanwhile by faas_runtime_free */
    if (inv->in_call) {
        inv->store_answered = 1;
        inv->call_rc = on_put(inv, rc, rec, caller);
        return;
    }
    rt = inv->rt;
    faas_list_remove(&inv->link); /* rt->store_wait */
    inv->store_wait = NULL;
    faas_rt_enter(rt);
    if (inv->fn->unregistered) {
        if (rc == 0)
            end_record(inv, 0, NULL);
        preset(inv, caller, FAAS_ECANCELED, "Runtime.Canceled", "the function was unregistered");
    } else {
        on_put(inv, rc, rec, caller); /* outside the call it hands inv on, always */
    }
    faas_rt_leave(rt);
}

int faas_idem_begin(struct faas_inv *inv, const struct faas_idem_caller *caller)
{
    struct faas_fn *fn = inv->fn;
    struct faas_runtime *rt = fn->rt;
    struct faas_idem *idem = fn->idem;
    struct faas_store_record rec;
    struct idem_wait *w;
    int64_t now = wall_ms(rt), hold;
    int rc;

    /* INPROGRESS lasts as long as the attempt may: its deadline (with a
     * cold start's init), or the TTL when it has no timeout. */
    if (inv->timeout_ms)
        hold = (int64_t)inv->timeout_ms + (fn->opts.init ? (int64_t)fn->opts.init_timeout_ms : 0);
    else
        hold = (int64_t)idem->ttl_s * 1000;
    memset(&rec, 0, sizeof rec);
    rec.state = FAAS_STORE_INPROGRESS;
    rec.validation = inv->idem_validation[0] ? inv->idem_validation : NULL;
    rec.owner = inv->res.request_id;
    rec.expires_ms = now + hold;
    w = faas_malloc(sizeof *w);
    if (!w)
        return FAAS_ENOMEM;
    w->inv = inv;
    w->caller = caller;
    inv->store_answered = 0;
    rc = faas_store_put_if_absent(idem->store, inv->idem_key, &rec, now, put_cb, w);
    log_evictions(fn);
    if (rc) {
        free(w);
        return rc;
    }
    if (inv->store_answered)
        return inv->call_rc; /* w is gone */
    /* The store answers later: wait where teardown can find us. */
    faas_list_insert_tail(&rt->store_wait, &inv->link);
    inv->store_wait = w;
    return 0;
}

void faas_idem_end(struct faas_inv *inv, int status, json_t *payload)
{
    end_record(inv, status == 0, payload);
}

void faas_idem_cancel_waits(struct faas_runtime *rt)
{
    struct faas_list *e;
    while ((e = faas_list_pop_head(&rt->store_wait)) != NULL) {
        struct faas_inv *inv = FAAS_CONTAINER_OF(e, struct faas_inv, link);
        struct idem_wait *w = inv->store_wait;
        w->inv = NULL; /* a late answer finds nobody */
        inv->store_wait = NULL;
        w->caller->deliver_status(inv, FAAS_ECANCELED, "Runtime.Canceled",
                                  "the runtime was freed");
    }
}

void faas_idem_orphan_ops(struct faas_runtime *rt)
{
    struct faas_list *e;
    while ((e = faas_list_pop_head(&rt->store_ops)) != NULL) {
        struct idem_op *op = FAAS_CONTAINER_OF(e, struct idem_op, link);
        faas_fn_unref(op->fn);
        op->fn = NULL; /* a late answer only frees it */
    }
}

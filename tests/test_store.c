/*
 * test_store.c - idempotency stores: the handle's argument checks and
 * forwarding (a user-defined store that answers later, from the test), and
 * the memory store's semantics: put-if-absent / get / complete / remove,
 * expiry to the millisecond, LRU eviction and its hook, payload references,
 * re-entrant callbacks, allocation failures, random operations checked
 * against a plain reference model, and the byte bound (LRU eviction of
 * completed records, oversize and in-progress refusals).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faas_int.h"
#include "testutil.h"

#define FAR 1000000000000LL /* an expiry that never comes in these tests */

/* ------------------------------------------------------------------ */
/* helpers                                                              */
/* ------------------------------------------------------------------ */

/* The 64-hex key of a number: distinct numbers, distinct keys. */
static void key_of(unsigned long n, char out[65])
{
    snprintf(out, 65, "%016llx%016lx%016lx%016lx", n * 0x9e3779b97f4a7c15ull, n, ~n, n ^ 0xabcul);
}

/* What a callback saw. */
struct answer {
    int calls;
    int rc;
    int has_rec;
    struct faas_store_record rec; /* validation points into vbuf */
    char vbuf[33];
    size_t payload_refcount;      /* rec.payload's refcount during the call */
};

static void on_answer(int rc, const struct faas_store_record *rec, void *arg)
{
    struct answer *a = arg;
    a->calls++;
    a->rc = rc;
    a->has_rec = rec != NULL;
    if (rec != NULL) {
        a->rec = *rec;
        if (rec->validation != NULL) {
            assert_int_equal(strlen(rec->validation), 32);
            memcpy(a->vbuf, rec->validation, 33);
            a->rec.validation = a->vbuf;
        }
        a->rec.owner = NULL; /* not kept past the callback */
        a->payload_refcount = rec->payload ? rec->payload->refcount : 0;
    }
}

static struct faas_store_record mkrec(enum faas_store_state state, int status, json_t *payload,
                                      const char *validation, int64_t expires_ms)
{
    struct faas_store_record r;
    r.state = state;
    r.status = status;
    r.payload = payload;
    r.validation = validation;
    r.expires_ms = expires_ms;
    r.owner = NULL;
    return r;
}

static struct faas_store *mem_new(uint32_t max)
{
    struct faas_store *st = NULL;
    assert_int_equal(faas_store_memory_new(&st, max), 0);
    assert_non_null(st);
    return st;
}

/* One operation, answered inside the call: returns the callback's rc. */
static int op_get(struct faas_store *st, const char *key, int64_t now, struct answer *a)
{
    memset(a, 0, sizeof *a);
    assert_int_equal(faas_store_get(st, key, now, on_answer, a), 0);
    assert_int_equal(a->calls, 1);
    return a->rc;
}

static int op_put(struct faas_store *st, const char *key, const struct faas_store_record *r,
                  int64_t now, struct answer *a)
{
    memset(a, 0, sizeof *a);
    assert_int_equal(faas_store_put_if_absent(st, key, r, now, on_answer, a), 0);
    assert_int_equal(a->calls, 1);
    return a->rc;
}

static int op_complete(struct faas_store *st, const char *key, const struct faas_store_record *r,
                       int64_t now, struct answer *a)
{
    memset(a, 0, sizeof *a);
    assert_int_equal(faas_store_complete(st, key, r, now, on_answer, a), 0);
    assert_int_equal(a->calls, 1);
    return a->rc;
}

static int op_remove(struct faas_store *st, const char *key, int64_t now, struct answer *a)
{
    memset(a, 0, sizeof *a);
    assert_int_equal(faas_store_remove(st, key, NULL, now, on_answer, a), 0);
    assert_int_equal(a->calls, 1);
    assert_int_equal(a->has_rec, 0);
    return a->rc;
}

/* Evictions seen by the hook. */
struct evictions {
    int n;
    char keys[8][65];
};

static void on_evict(void *arg, const char *key)
{
    struct evictions *e = arg;
    assert_int_equal(strlen(key), 64);
    if (e->n < 8)
        memcpy(e->keys[e->n], key, 65);
    e->n++;
}

static void never_cb(int rc, const struct faas_store_record *rec, void *arg)
{
    (void)rc;
    (void)rec;
    (void)arg;
    fail_msg("a callback ran for a call that returned an error");
}

/* ------------------------------------------------------------------ */
/* the handle                                                           */
/* ------------------------------------------------------------------ */

static void test_args(void **state)
{
    struct faas_store *st = mem_new(0);
    struct faas_store_record r = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, FAR);
    struct faas_store_record bad;
    char k[65], up[65], shortk[65], longk[66];
    const char *bad_keys[5];
    size_t i;
    (void)state;

    key_of(1, k);
    memcpy(up, k, 65);
    up[0] = 'A';
    up[1] = 'B';
    memcpy(shortk, k, 63);
    shortk[63] = '\0';
    memcpy(longk, k, 64);
    longk[64] = '0';
    longk[65] = '\0';
    bad_keys[0] = up;
    bad_keys[1] = shortk;
    bad_keys[2] = longk;
    bad_keys[3] = "";
    bad_keys[4] = "g000000000000000000000000000000000000000000000000000000000000000";

    assert_int_equal(faas_store_get(NULL, k, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_get(st, NULL, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_get(st, k, 0, NULL, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_put_if_absent(NULL, k, &r, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_put_if_absent(st, NULL, &r, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_put_if_absent(st, k, NULL, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_put_if_absent(st, k, &r, 0, NULL, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_complete(NULL, k, &r, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_complete(st, NULL, &r, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_complete(st, k, NULL, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_complete(st, k, &r, 0, NULL, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_remove(NULL, k, NULL, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_remove(st, NULL, NULL, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_remove(st, k, NULL, 0, NULL, NULL), FAAS_EINVAL);

    for (i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
        assert_int_equal(faas_store_get(st, bad_keys[i], 0, never_cb, NULL), FAAS_EINVAL);
        assert_int_equal(faas_store_put_if_absent(st, bad_keys[i], &r, 0, never_cb, NULL),
                         FAAS_EINVAL);
        assert_int_equal(faas_store_complete(st, bad_keys[i], &r, 0, never_cb, NULL),
                         FAAS_EINVAL);
        assert_int_equal(faas_store_remove(st, bad_keys[i], NULL, 0, never_cb, NULL), FAAS_EINVAL);
    }

    /* Records: a known state, a validation of exactly 32 lowercase hex. */
    bad = mkrec((enum faas_store_state)0, 0, NULL, NULL, FAR);
    assert_int_equal(faas_store_put_if_absent(st, k, &bad, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_complete(st, k, &bad, 0, never_cb, NULL), FAAS_EINVAL);
    bad = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, "0123456789abcdef0123456789abcde", FAR);
    assert_int_equal(faas_store_put_if_absent(st, k, &bad, 0, never_cb, NULL), FAAS_EINVAL);
    bad.validation = "0123456789abcdef0123456789abcdef0";
    assert_int_equal(faas_store_put_if_absent(st, k, &bad, 0, never_cb, NULL), FAAS_EINVAL);
    bad.validation = "0123456789ABCDEF0123456789abcdef";
    assert_int_equal(faas_store_complete(st, k, &bad, 0, never_cb, NULL), FAAS_EINVAL);
    assert_int_equal(faas_store_memory_count(st), 0);

    /* Constructors and the no-ops. */
    assert_int_equal(faas_store_memory_new(NULL, 0), FAAS_EINVAL);
    assert_int_equal(faas_store_memory_count(NULL), 0);
    faas_store_free(NULL);
    faas_store_free(st);
}

/* A store that answers later: it keeps what it was given, the test answers. */
struct later {
    int gets, puts, completes, removes, destroyed;
    const char *key;
    int64_t now;
    const struct faas_store_record *rec;
    faas_store_cb cb;
    void *arg;
    int ret; /* what each operation returns */
};

static int later_get(void *impl, const char *key, int64_t now_ms, faas_store_cb cb, void *arg)
{
    struct later *l = impl;
    l->gets++;
    l->key = key;
    l->now = now_ms;
    l->rec = NULL;
    l->cb = cb;
    l->arg = arg;
    return l->ret;
}

static int later_put(void *impl, const char *key, const struct faas_store_record *rec,
                     int64_t now_ms, faas_store_cb cb, void *arg)
{
    struct later *l = impl;
    l->puts++;
    l->key = key;
    l->now = now_ms;
    l->rec = rec;
    l->cb = cb;
    l->arg = arg;
    return l->ret;
}

static int later_complete(void *impl, const char *key, const struct faas_store_record *rec,
                          int64_t now_ms, faas_store_cb cb, void *arg)
{
    struct later *l = impl;
    l->completes++;
    l->key = key;
    l->now = now_ms;
    l->rec = rec;
    l->cb = cb;
    l->arg = arg;
    return l->ret;
}

static int later_remove(void *impl, const char *key, const char *owner, int64_t now_ms,
                        faas_store_cb cb, void *arg)
{
    (void)owner;
    struct later *l = impl;
    l->removes++;
    l->key = key;
    l->now = now_ms;
    l->rec = NULL;
    l->cb = cb;
    l->arg = arg;
    return l->ret;
}

static void later_destroy(void *impl)
{
    ((struct later *)impl)->destroyed++;
}

static void test_user_store_later(void **state)
{
    struct faas_store_ops ops = { FAAS_STORE_OPS_VERSION, later_get, later_put, later_complete,
                                  later_remove, later_destroy };
    struct faas_store_ops bad;
    struct later l;
    struct faas_store *st = NULL, *untouched = (struct faas_store *)&l;
    struct faas_store_record r = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, 1234);
    struct faas_store_record answer_rec = mkrec(FAAS_STORE_COMPLETED, 0, NULL, NULL, 99);
    struct answer a;
    char k[65];
    (void)state;

    memset(&l, 0, sizeof l);
    key_of(7, k);

    /* Bad tables are refused and the out-parameter is left alone. */
    assert_int_equal(faas_store_new(NULL, &ops, &l), FAAS_EINVAL);
    assert_int_equal(faas_store_new(&untouched, NULL, &l), FAAS_EINVAL);
    bad = ops;
    bad.version = 2;
    assert_int_equal(faas_store_new(&untouched, &bad, &l), FAAS_EINVAL);
    bad = ops;
    bad.get = NULL;
    assert_int_equal(faas_store_new(&untouched, &bad, &l), FAAS_EINVAL);
    bad = ops;
    bad.remove = NULL;
    assert_int_equal(faas_store_new(&untouched, &bad, &l), FAAS_EINVAL);
    assert_ptr_equal(untouched, (struct faas_store *)&l);

    assert_int_equal(faas_store_new(&st, &ops, &l), 0);
    assert_non_null(st);
    ops.get = NULL; /* copied: the handle must not see this */
    assert_int_equal(faas_store_memory_count(st), 0);

    /* put: forwarded as given, nothing answered until the store answers. */
    memset(&a, 0, sizeof a);
    assert_int_equal(faas_store_put_if_absent(st, k, &r, 500, on_answer, &a), 0);
    assert_int_equal(l.puts, 1);
    assert_string_equal(l.key, k);
    assert_int_equal(l.now, 500);
    assert_ptr_equal(l.rec, &r);
    assert_ptr_equal(l.arg, &a);
    assert_int_equal(a.calls, 0);
    l.cb(FAAS_EEXIST, &answer_rec, l.arg);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.rc, FAAS_EEXIST);
    assert_int_equal(a.rec.state, FAAS_STORE_COMPLETED);
    assert_int_equal(a.rec.expires_ms, 99);

    memset(&a, 0, sizeof a);
    assert_int_equal(faas_store_get(st, k, 501, on_answer, &a), 0);
    assert_int_equal(l.gets, 1);
    assert_int_equal(l.now, 501);
    assert_int_equal(a.calls, 0);
    l.cb(FAAS_ENOENT, NULL, l.arg);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.rc, FAAS_ENOENT);
    assert_int_equal(a.has_rec, 0);

    memset(&a, 0, sizeof a);
    assert_int_equal(faas_store_complete(st, k, &r, 502, on_answer, &a), 0);
    assert_int_equal(l.completes, 1);
    assert_ptr_equal(l.rec, &r);
    l.cb(0, &answer_rec, l.arg);
    assert_int_equal(a.calls, 1);

    memset(&a, 0, sizeof a);
    assert_int_equal(faas_store_remove(st, k, NULL, 503, on_answer, &a), 0);
    assert_int_equal(l.removes, 1);
    assert_int_equal(l.now, 503);
    l.cb(0, NULL, l.arg);
    assert_int_equal(a.calls, 1);

    /* An implementation's error comes back as the call's return. */
    l.ret = FAAS_ENOMEM;
    assert_int_equal(faas_store_get(st, k, 504, on_answer, &a), FAAS_ENOMEM);
    assert_int_equal(l.gets, 2);
    /* Bad arguments never reach it. */
    assert_int_equal(faas_store_get(st, "nope", 504, on_answer, &a), FAAS_EINVAL);
    assert_int_equal(l.gets, 2);

    assert_int_equal(l.destroyed, 0);
    faas_store_free(st);
    assert_int_equal(l.destroyed, 1);

    /* destroy may be NULL. */
    ops.get = later_get;
    ops.destroy = NULL;
    assert_int_equal(faas_store_new(&st, &ops, &l), 0);
    faas_store_free(st);
    assert_int_equal(l.destroyed, 1);
}

/* ------------------------------------------------------------------ */
/* the memory store                                                     */
/* ------------------------------------------------------------------ */

static void test_semantics(void **state)
{
    struct faas_store *st = mem_new(0);
    json_t *payload = json_pack("{s:i}", "order", 42);
    const char *v1 = "00112233445566778899aabbccddeeff";
    const char *v2 = "ffeeddccbbaa99887766554433221100";
    struct faas_store_record r = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, v1, 5000);
    struct faas_store_record done = mkrec(FAAS_STORE_COMPLETED, 7, payload, v2, 9000);
    struct answer a;
    char k[65], k2[65];
    (void)state;

    key_of(1, k);
    key_of(2, k2);

    assert_int_equal(op_get(st, k, 100, &a), FAAS_ENOENT);
    assert_int_equal(a.has_rec, 0);
    assert_int_equal(op_complete(st, k, &done, 100, &a), FAAS_ENOENT);
    assert_int_equal(a.has_rec, 0);
    assert_int_equal(op_remove(st, k, 100, &a), FAAS_ENOENT);

    /* put: the new record comes back. */
    assert_int_equal(op_put(st, k, &r, 100, &a), 0);
    assert_int_equal(a.has_rec, 1);
    assert_int_equal(a.rec.state, FAAS_STORE_INPROGRESS);
    assert_null(a.rec.payload);
    assert_string_equal(a.rec.validation, v1);
    assert_int_equal(a.rec.expires_ms, 5000);
    assert_int_equal(faas_store_memory_count(st), 1);

    /* A second put finds the live one and leaves it as it was. */
    assert_int_equal(op_put(st, k, &done, 200, &a), FAAS_EEXIST);
    assert_int_equal(a.has_rec, 1);
    assert_int_equal(a.rec.state, FAAS_STORE_INPROGRESS);
    assert_null(a.rec.payload);
    assert_string_equal(a.rec.validation, v1);
    assert_int_equal(a.rec.expires_ms, 5000);
    assert_int_equal(faas_store_memory_count(st), 1);

    /* Another key is independent. */
    assert_int_equal(op_get(st, k2, 200, &a), FAAS_ENOENT);

    /* complete replaces everything. */
    assert_int_equal(op_complete(st, k, &done, 300, &a), 0);
    assert_int_equal(a.rec.state, FAAS_STORE_COMPLETED);
    assert_int_equal(a.rec.status, 7);
    assert_ptr_equal(a.rec.payload, payload);
    assert_string_equal(a.rec.validation, v2);
    assert_int_equal(a.rec.expires_ms, 9000);

    assert_int_equal(op_get(st, k, 400, &a), 0);
    assert_int_equal(a.rec.state, FAAS_STORE_COMPLETED);
    assert_int_equal(a.rec.status, 7);
    assert_ptr_equal(a.rec.payload, payload);
    assert_true(json_equal(a.rec.payload, payload));
    assert_string_equal(a.rec.validation, v2);
    assert_int_equal(a.rec.expires_ms, 9000);

    /* No validation: NULL comes back. */
    done.validation = NULL;
    assert_int_equal(op_complete(st, k, &done, 500, &a), 0);
    assert_null(a.rec.validation);
    assert_int_equal(op_get(st, k, 500, &a), 0);
    assert_null(a.rec.validation);

    assert_int_equal(op_remove(st, k, 600, &a), 0);
    assert_int_equal(faas_store_memory_count(st), 0);
    assert_int_equal(op_get(st, k, 600, &a), FAAS_ENOENT);
    assert_int_equal(op_remove(st, k, 600, &a), FAAS_ENOENT);

    /* After a remove the key is free again. */
    assert_int_equal(op_put(st, k, &r, 700, &a), 0);
    assert_int_equal(faas_store_memory_count(st), 1);

    faas_store_free(st);
    json_decref(payload);
}

static void test_expiry_ms(void **state)
{
    struct faas_store *st = mem_new(0);
    struct faas_store_record r = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, 1000);
    struct faas_store_record r2 = mkrec(FAAS_STORE_COMPLETED, 3, NULL, NULL, 2000);
    struct answer a;
    char k[65];
    (void)state;

    key_of(3, k);
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);

    /* One millisecond before: live, for every operation. */
    assert_int_equal(op_get(st, k, 999, &a), 0);
    assert_int_equal(op_put(st, k, &r2, 999, &a), FAAS_EEXIST);
    assert_int_equal(a.rec.expires_ms, 1000);

    /* At expires_ms: gone, and removed on the spot. */
    assert_int_equal(op_get(st, k, 1000, &a), FAAS_ENOENT);
    assert_int_equal(faas_store_memory_count(st), 0);

    /* complete and remove see an expired record as absent. */
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    assert_int_equal(op_complete(st, k, &r2, 1000, &a), FAAS_ENOENT);
    assert_int_equal(faas_store_memory_count(st), 0);
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    assert_int_equal(op_remove(st, k, 1001, &a), FAAS_ENOENT);
    assert_int_equal(faas_store_memory_count(st), 0);

    /* An expired record is replaced by a put. */
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    assert_int_equal(op_put(st, k, &r2, 1000, &a), 0);
    assert_int_equal(a.rec.state, FAAS_STORE_COMPLETED);
    assert_int_equal(a.rec.status, 3);
    assert_int_equal(a.rec.expires_ms, 2000);
    assert_int_equal(faas_store_memory_count(st), 1);
    assert_int_equal(op_get(st, k, 1999, &a), 0);
    assert_int_equal(a.rec.status, 3);

    /* complete sets the new expiry. */
    r.expires_ms = 2500;
    assert_int_equal(op_complete(st, k, &r, 1999, &a), 0);
    assert_int_equal(op_get(st, k, 2499, &a), 0);
    assert_int_equal(op_get(st, k, 2500, &a), FAAS_ENOENT);

    /* Negative times are just times. */
    r.expires_ms = -5;
    assert_int_equal(op_put(st, k, &r, -10, &a), 0);
    assert_int_equal(op_get(st, k, -6, &a), 0);
    assert_int_equal(op_get(st, k, -5, &a), FAAS_ENOENT);

    faas_store_free(st);
}

static void test_lru_eviction(void **state)
{
    struct faas_store *st = mem_new(3);
    struct faas_store_record r = mkrec(FAAS_STORE_COMPLETED, 0, NULL, NULL, FAR);
    struct evictions ev;
    struct answer a;
    char ka[65], kb[65], kc[65], kd[65], ke[65], kf[65];
    (void)state;

    memset(&ev, 0, sizeof ev);
    st->on_evict = on_evict;
    st->on_evict_arg = &ev;
    key_of(10, ka);
    key_of(11, kb);
    key_of(12, kc);
    key_of(13, kd);
    key_of(14, ke);
    key_of(15, kf);

    assert_int_equal(op_put(st, ka, &r, 1, &a), 0);
    assert_int_equal(op_put(st, kb, &r, 2, &a), 0);
    assert_int_equal(op_put(st, kc, &r, 3, &a), 0); /* LRU: c b a */
    assert_int_equal(ev.n, 0);
    assert_int_equal(op_get(st, ka, 4, &a), 0);     /* a c b */
    assert_int_equal(op_put(st, kd, &r, 5, &a), 0); /* d a c, b out */
    assert_int_equal(ev.n, 1);
    assert_string_equal(ev.keys[0], kb);
    assert_int_equal(faas_store_memory_count(st), 3);
    assert_int_equal(op_get(st, kb, 6, &a), FAAS_ENOENT);

    assert_int_equal(op_put(st, ke, &r, 7, &a), 0); /* e d a, c out */
    assert_int_equal(ev.n, 2);
    assert_string_equal(ev.keys[1], kc);

    /* A put that finds the record and a complete touch it too. */
    assert_int_equal(op_put(st, ka, &r, 8, &a), FAAS_EEXIST); /* a e d */
    assert_int_equal(op_complete(st, kd, &r, 9, &a), 0);      /* d a e */
    assert_int_equal(op_put(st, kf, &r, 10, &a), 0);          /* f d a, e out */
    assert_int_equal(ev.n, 3);
    assert_string_equal(ev.keys[2], ke);
    assert_int_equal(faas_store_memory_count(st), 3);

    /* A miss touches nothing; remove makes room without an eviction. */
    assert_int_equal(op_get(st, kb, 11, &a), FAAS_ENOENT);
    assert_int_equal(op_remove(st, kd, 12, &a), 0); /* f a */
    assert_int_equal(op_put(st, kb, &r, 13, &a), 0);  /* b f a */
    assert_int_equal(ev.n, 3);
    assert_int_equal(op_put(st, kc, &r, 14, &a), 0);  /* c b f, a out */
    assert_int_equal(ev.n, 4);
    assert_string_equal(ev.keys[3], ka);
    assert_int_equal(op_get(st, kf, 15, &a), 0);
    assert_int_equal(op_get(st, kb, 15, &a), 0);
    assert_int_equal(op_get(st, kc, 15, &a), 0);

    /* Without a hook eviction still happens. */
    st->on_evict = NULL;
    assert_int_equal(op_put(st, ka, &r, 16, &a), 0); /* a c b, f out */
    assert_int_equal(op_get(st, kf, 17, &a), FAAS_ENOENT);
    assert_int_equal(faas_store_memory_count(st), 3);
    assert_int_equal(ev.n, 4);

    faas_store_free(st);
}

/* An expired record making room is not reported as an eviction. */
static void test_expired_not_evicted(void **state)
{
    struct faas_store *st = mem_new(3);
    struct faas_store_record shortr = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, 100);
    struct faas_store_record r = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, FAR);
    struct evictions ev;
    struct answer a;
    char ka[65], kb[65], kc[65], kd[65];
    (void)state;

    memset(&ev, 0, sizeof ev);
    st->on_evict = on_evict;
    st->on_evict_arg = &ev;
    key_of(20, ka);
    key_of(21, kb);
    key_of(22, kc);
    key_of(23, kd);

    assert_int_equal(op_put(st, ka, &shortr, 1, &a), 0);
    assert_int_equal(op_put(st, kb, &r, 2, &a), 0);
    assert_int_equal(op_put(st, kc, &r, 3, &a), 0);
    assert_int_equal(op_put(st, kd, &r, 200, &a), 0);
    assert_int_equal(ev.n, 0);
    assert_int_equal(faas_store_memory_count(st), 3);
    assert_int_equal(op_get(st, kb, 201, &a), 0);
    assert_int_equal(op_get(st, kc, 201, &a), 0);
    assert_int_equal(op_get(st, kd, 201, &a), 0);

    faas_store_free(st);
}

static void test_payload_refcounts(void **state)
{
    struct faas_store *st = mem_new(1);
    json_t *p = json_pack("{s:s}", "result", "ok");
    json_t *q = json_pack("[i,i]", 1, 2);
    struct faas_store_record r = mkrec(FAAS_STORE_COMPLETED, 0, p, NULL, FAR);
    struct answer a;
    char k[65], k2[65];
    (void)state;

    key_of(30, k);
    key_of(31, k2);
    assert_int_equal(p->refcount, 1);

    /* Stored: one reference more, held across the callback too. */
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    assert_int_equal(p->refcount, 2);
    assert_true(a.payload_refcount >= 2);
    assert_int_equal(op_get(st, k, 0, &a), 0);
    assert_int_equal(p->refcount, 2);

    /* A put that finds the record takes no reference of the new payload. */
    r.payload = q;
    assert_int_equal(op_put(st, k, &r, 0, &a), FAAS_EEXIST);
    assert_int_equal(q->refcount, 1);

    /* complete swaps the references. */
    assert_int_equal(op_complete(st, k, &r, 0, &a), 0);
    assert_int_equal(p->refcount, 1);
    assert_int_equal(q->refcount, 2);

    /* complete with the same payload keeps exactly one. */
    assert_int_equal(op_complete(st, k, &r, 0, &a), 0);
    assert_int_equal(q->refcount, 2);

    /* remove drops it. */
    assert_int_equal(op_remove(st, k, 0, &a), 0);
    assert_int_equal(q->refcount, 1);

    /* Eviction (max 1) drops it. */
    r.payload = p;
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    assert_int_equal(p->refcount, 2);
    r.payload = q;
    assert_int_equal(op_put(st, k2, &r, 0, &a), 0);
    assert_int_equal(p->refcount, 1);
    assert_int_equal(q->refcount, 2);

    /* Expiry drops it. */
    r.expires_ms = 10;
    r.payload = p;
    assert_int_equal(op_remove(st, k2, 0, &a), 0);
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    assert_int_equal(p->refcount, 2);
    assert_int_equal(op_get(st, k, 10, &a), FAAS_ENOENT);
    assert_int_equal(p->refcount, 1);

    /* Freeing the store drops it. */
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    assert_int_equal(p->refcount, 2);
    faas_store_free(st);
    assert_int_equal(p->refcount, 1);

    json_decref(p);
    json_decref(q);
}

/* A callback that removes its own record still has a valid payload, and one
 * that frees the store has the free wait until the call returns. */
struct reentry {
    struct faas_store *st;
    const char *key;
    int calls;
    int free_store;
    size_t size_seen;
};

static void reentrant_cb(int rc, const struct faas_store_record *rec, void *arg)
{
    struct reentry *re = arg;
    struct answer a;
    re->calls++;
    assert_int_equal(rc, 0);
    assert_non_null(rec);
    assert_int_equal(op_remove(re->st, re->key, 0, &a), 0);
    assert_int_equal(faas_store_memory_count(re->st), 0);
    /* The record was freed above; its payload is still held for us. */
    re->size_seen = json_object_size(rec->payload);
    if (re->free_store) {
        faas_store_free(re->st);
        assert_int_equal(rec->status, 5); /* the stack copy is still there */
    }
}

static void test_reentrant_callbacks(void **state)
{
    struct faas_store *st = mem_new(0);
    json_t *p = json_pack("{s:i,s:i}", "a", 1, "b", 2);
    struct faas_store_record r = mkrec(FAAS_STORE_COMPLETED, 5, p, NULL, FAR);
    struct reentry re;
    struct answer a;
    char k[65];
    (void)state;

    key_of(40, k);
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    json_decref(p); /* the store holds the only reference now */

    memset(&re, 0, sizeof re);
    re.st = st;
    re.key = k;
    assert_int_equal(faas_store_get(st, k, 0, reentrant_cb, &re), 0);
    assert_int_equal(re.calls, 1);
    assert_int_equal(re.size_seen, 2);

    /* Again, freeing the store from inside the callback. */
    p = json_pack("{s:i}", "a", 1);
    r.payload = p;
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    json_decref(p);
    memset(&re, 0, sizeof re);
    re.st = st;
    re.key = k;
    re.free_store = 1;
    assert_int_equal(faas_store_get(st, k, 0, reentrant_cb, &re), 0);
    assert_int_equal(re.calls, 1);
    assert_int_equal(re.size_seen, 1);
    /* st is gone: valgrind and ASan check nothing leaked or was reused. */
}

static void test_alloc_failures(void **state)
{
    struct faas_store *st = NULL, *untouched = (struct faas_store *)&st;
    struct faas_store_record r = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, FAR);
    struct faas_store_ops ops = { FAAS_STORE_OPS_VERSION, later_get, later_put, later_complete,
                                  later_remove, later_destroy };
    struct answer a;
    char k[65];
    long n;
    unsigned long i;
    (void)state;

    /* Each allocation of faas_store_memory_new fails in turn. */
    for (n = 0;; n++) {
        int rc;
        untouched = (struct faas_store *)&st;
        atomic_store(&faas_alloc_fail_countdown, n);
        rc = faas_store_memory_new(&untouched, 0);
        atomic_store(&faas_alloc_fail_countdown, -1);
        if (rc == 0) {
            faas_store_free(untouched);
            break;
        }
        assert_int_equal(rc, FAAS_ENOMEM);
        assert_ptr_equal(untouched, (struct faas_store *)&st);
    }
    assert_int_equal(n, 3); /* impl, buckets, handle */

    atomic_store(&faas_alloc_fail_countdown, 0);
    assert_int_equal(faas_store_new(&st, &ops, NULL), FAAS_ENOMEM);
    atomic_store(&faas_alloc_fail_countdown, -1);

    /* A failed put: FAAS_ENOMEM, no callback, nothing changed or evicted. */
    st = mem_new(2);
    key_of(50, k);
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    key_of(51, k);
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    key_of(52, k);
    atomic_store(&faas_alloc_fail_countdown, 0);
    assert_int_equal(faas_store_put_if_absent(st, k, &r, 0, never_cb, NULL), FAAS_ENOMEM);
    atomic_store(&faas_alloc_fail_countdown, -1);
    assert_int_equal(faas_store_memory_count(st), 2);
    key_of(50, k);
    assert_int_equal(op_get(st, k, 0, &a), 0);
    key_of(51, k);
    assert_int_equal(op_get(st, k, 0, &a), 0);
    faas_store_free(st);

    /* A failed growth of the table loses nothing. */
    st = mem_new(0);
    for (i = 0; i < 16; i++) {
        key_of(100 + i, k);
        assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    }
    key_of(116, k);
    atomic_store(&faas_alloc_fail_countdown, 1); /* the node succeeds, the growth fails */
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    atomic_store(&faas_alloc_fail_countdown, -1);
    for (i = 117; i < 200; i++) {
        key_of(i, k);
        assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    }
    assert_int_equal(faas_store_memory_count(st), 100);
    for (i = 100; i < 200; i++) {
        key_of(i, k);
        assert_int_equal(op_get(st, k, 0, &a), 0);
    }
    faas_store_free(st);
}

/* 100,000 records through a store bounded at 50,000: the oldest go, in order. */
struct evict_order {
    unsigned long next;
    int bad;
};

static void on_evict_order(void *arg, const char *key)
{
    struct evict_order *eo = arg;
    char want[65];
    key_of(eo->next++, want);
    if (strcmp(want, key) != 0)
        eo->bad++;
}

static void test_churn_100k(void **state)
{
    struct faas_store *st = mem_new(50000);
    json_t *p = json_pack("{s:i}", "x", 1);
    struct faas_store_record r = mkrec(FAAS_STORE_COMPLETED, 0, p, NULL, FAR);
    struct evict_order eo = { 0, 0 };
    struct answer a;
    char k[65];
    unsigned long i;
    (void)state;

    st->on_evict = on_evict_order;
    st->on_evict_arg = &eo;
    for (i = 0; i < 100000; i++) {
        key_of(i, k);
        assert_int_equal(op_put(st, k, &r, (int64_t)i, &a), 0);
    }
    assert_int_equal(faas_store_memory_count(st), 50000);
    assert_int_equal(eo.next, 50000);
    assert_int_equal(eo.bad, 0);
    assert_int_equal(p->refcount, 50001);
    for (i = 0; i < 100000; i += 997) {
        key_of(i, k);
        assert_int_equal(op_get(st, k, 0, &a), i < 50000 ? FAAS_ENOENT : 0);
    }
    for (i = 50000; i < 100000; i++) {
        key_of(i, k);
        assert_int_equal(op_remove(st, k, 0, &a), 0);
    }
    assert_int_equal(faas_store_memory_count(st), 0);
    assert_int_equal(p->refcount, 1);
    faas_store_free(st);
    json_decref(p);
}

/* ------------------------------------------------------------------ */
/* random operations against a reference model                          */
/* ------------------------------------------------------------------ */

#define MODEL_KEYS 96
#define MODEL_MAX 40
#define MODEL_OPS 6000
/* store.c frees at most this many expired records off the LRU tail on an
 * insert before it evicts; the model does the same to agree on counts. */
#define MODEL_SWEEP 2

struct model_rec {
    int present;
    enum faas_store_state state;
    int status;
    json_t *payload;
    int has_validation;
    char validation[33];
    int64_t expires_ms;
    uint64_t stamp; /* last use: the LRU order */
};

struct model {
    struct model_rec r[MODEL_KEYS];
    size_t count;
    uint64_t clock;
    /* what the run went through, so it can check it covered the cases */
    int expired, swept, evicted, exists, hits;
};

static uint64_t rng_state = 0x243f6a8885a308d3u;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure repeats. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

static int model_lru(const struct model *m)
{
    int i, best = -1;
    for (i = 0; i < MODEL_KEYS; i++)
        if (m->r[i].present && (best < 0 || m->r[i].stamp < m->r[best].stamp))
            best = i;
    return best;
}

/* The eviction victim: the least recently used COMPLETED record among the
 * 1 + 32 least recently used ones (store.c passes over at most 32 records
 * in progress), or -1. */
static int model_victim(const struct model *m)
{
    uint64_t after = 0;
    int n, i;
    for (n = 0; n < 33; n++) {
        int best = -1;
        for (i = 0; i < MODEL_KEYS; i++)
            if (m->r[i].present && m->r[i].stamp > after &&
                (best < 0 || m->r[i].stamp < m->r[best].stamp))
                best = i;
        if (best < 0)
            return -1;
        if (m->r[best].state == FAAS_STORE_COMPLETED)
            return best;
        after = m->r[best].stamp;
    }
    return -1;
}

static void model_drop(struct model *m, int i)
{
    m->r[i].present = 0;
    m->count--;
}

/* The live record of i or -1 (an expired one is dropped). */
static int model_find(struct model *m, int i, int64_t now)
{
    if (!m->r[i].present)
        return -1;
    if (m->r[i].expires_ms <= now) {
        m->expired++;
        model_drop(m, i);
        return -1;
    }
    return i;
}

static void model_set(struct model_rec *mr, const struct faas_store_record *rec)
{
    mr->state = rec->state;
    mr->status = rec->status;
    mr->payload = rec->payload;
    mr->has_validation = rec->validation != NULL;
    if (rec->validation)
        memcpy(mr->validation, rec->validation, 33);
}

static void check_rec(const struct answer *a, const struct model_rec *mr)
{
    assert_int_equal(a->has_rec, 1);
    assert_int_equal(a->rec.state, mr->state);
    assert_int_equal(a->rec.status, mr->status);
    assert_ptr_equal(a->rec.payload, mr->payload);
    assert_int_equal(a->rec.expires_ms, mr->expires_ms);
    if (mr->has_validation)
        assert_string_equal(a->rec.validation, mr->validation);
    else
        assert_null(a->rec.validation);
}

static void test_random_vs_model(void **state)
{
    struct faas_store *st = mem_new(MODEL_MAX);
    struct model *m = calloc(1, sizeof *m);
    json_t *payloads[4];
    char keys[MODEL_KEYS][65];
    struct evictions ev;
    int64_t now = 1000;
    int op, i;
    (void)state;

    assert_non_null(m);
    for (i = 0; i < 4; i++)
        payloads[i] = json_integer(i);
    for (i = 0; i < MODEL_KEYS; i++)
        key_of((unsigned long)(1000 + i), keys[i]);
    st->on_evict = on_evict;
    st->on_evict_arg = &ev;

    for (op = 0; op < MODEL_OPS; op++) {
        struct faas_store_record rec;
        struct answer a;
        char vbuf[33];
        int k = (int)(rnd() % MODEL_KEYS), kind = (int)(rnd() % 8), j;

        now += (int64_t)(rnd() % 4); /* often the same millisecond */
        rec = mkrec(rnd() % 4 ? FAAS_STORE_COMPLETED : FAAS_STORE_INPROGRESS,
                    (int)(rnd() % 3), rnd() % 5 ? payloads[rnd() % 4] : NULL, NULL,
                    now + (int64_t)(rnd() % 2 ? rnd() % 40 : rnd() % 2000));
        if (rnd() % 2) {
            snprintf(vbuf, sizeof vbuf, "%016llx%016llx", (unsigned long long)rnd(),
                     (unsigned long long)rnd());
            rec.validation = vbuf;
        }
        memset(&ev, 0, sizeof ev);

        if (kind < 2) {
            j = model_find(m, k, now);
            if (j < 0) {
                assert_int_equal(op_get(st, keys[k], now, &a), FAAS_ENOENT);
                assert_int_equal(a.has_rec, 0);
            } else {
                assert_int_equal(op_get(st, keys[k], now, &a), 0);
                m->hits++;
                m->r[k].stamp = ++m->clock;
                check_rec(&a, &m->r[k]);
            }
        } else if (kind < 5) {
            j = model_find(m, k, now);
            if (j >= 0) {
                assert_int_equal(op_put(st, keys[k], &rec, now, &a), FAAS_EEXIST);
                m->exists++;
                m->r[k].stamp = ++m->clock;
                check_rec(&a, &m->r[k]);
                assert_int_equal(ev.n, 0);
            } else {
                int s, victim = -1, nvictims = 0;
                for (s = 0; s < MODEL_SWEEP; s++) {
                    int t = model_lru(m);
                    if (t < 0 || m->r[t].expires_ms > now)
                        break;
                    m->swept++;
                    model_drop(m, t);
                }
                /* Back to the bound, up to 4 evictions an insert (store.c's
                 * EVICT_CATCHUP); none while only records in progress are
                 * left to evict. The check below sees only the last. */
                for (s = 0; s < 4 && m->count >= MODEL_MAX; s++) {
                    victim = model_victim(m);
                    if (victim < 0)
                        break;
                    m->evicted++;
                    model_drop(m, victim);
                    nvictims++;
                }
                assert_int_equal(op_put(st, keys[k], &rec, now, &a), 0);
                m->r[k].present = 1;
                m->r[k].expires_ms = rec.expires_ms;
                m->r[k].stamp = ++m->clock;
                model_set(&m->r[k], &rec);
                m->count++;
                check_rec(&a, &m->r[k]);
                if (victim >= 0) {
                    assert_int_equal(ev.n, nvictims);
                    assert_string_equal(ev.keys[nvictims - 1], keys[victim]);
                } else {
                    assert_int_equal(ev.n, 0);
                }
            }
        } else if (kind < 7) {
            j = model_find(m, k, now);
            if (j < 0) {
                assert_int_equal(op_complete(st, keys[k], &rec, now, &a), FAAS_ENOENT);
                assert_int_equal(a.has_rec, 0);
            } else {
                assert_int_equal(op_complete(st, keys[k], &rec, now, &a), 0);
                m->r[k].expires_ms = rec.expires_ms;
                m->r[k].stamp = ++m->clock;
                model_set(&m->r[k], &rec);
                check_rec(&a, &m->r[k]);
            }
        } else {
            j = model_find(m, k, now);
            if (j < 0) {
                assert_int_equal(op_remove(st, keys[k], now, &a), FAAS_ENOENT);
            } else {
                assert_int_equal(op_remove(st, keys[k], now, &a), 0);
                model_drop(m, k);
            }
        }
        assert_int_equal(faas_store_memory_count(st), m->count);
    }

    assert_true(m->expired > 100 && m->swept > 50 && m->evicted > 100 && m->exists > 100 &&
                m->hits > 100);
    faas_store_free(st);
    for (i = 0; i < 4; i++) {
        assert_int_equal(payloads[i]->refcount, 1);
        json_decref(payloads[i]);
    }
    free(m);
}


/* ------------------------------------------------------------------ */
/* the byte bound                                                       */
/* ------------------------------------------------------------------ */

/* Evictions by number (key_of's second word), in order. */
struct evicted_nums {
    int n;
    unsigned long nums[1024];
};

static void on_evict_num(void *arg, const char *key)
{
    struct evicted_nums *e = arg;
    char word[17];
    memcpy(word, key + 16, 16);
    word[16] = '\0';
    assert_true(e->n < 1024);
    e->nums[e->n++] = strtoul(word, NULL, 16);
}

/* A JSON string of n bytes ("xxx..."): n + 2 bytes of compact JSON. */
static json_t *big_string(size_t n)
{
    char *buf = malloc(n + 1);
    json_t *j;
    assert_non_null(buf);
    memset(buf, 'x', n);
    buf[n] = '\0';
    j = json_string(buf);
    free(buf);
    assert_non_null(j);
    return j;
}

/* What a record in progress (no payload) costs this store. */
static size_t node_cost(void)
{
    struct faas_store *st = mem_new(0);
    struct faas_store_record r = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, FAR);
    struct answer a;
    char k[65];
    size_t n;
    key_of(1, k);
    assert_int_equal(op_put(st, k, &r, 0, &a), 0);
    n = faas_store_memory_bytes(st);
    faas_store_free(st);
    return n;
}

/* Hundreds of large results into a small bound: the bytes never exceed it,
 * the least recently used go first, a touch saves a record. */
static void test_bytes_bounded_lru(void **state)
{
    const size_t limit = 64 * 1024, psize = 4000;
    struct faas_store *st = mem_new(0);
    struct faas_store_record prog = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, FAR);
    struct faas_store_record done;
    struct evicted_nums *ev = calloc(1, sizeof *ev);
    size_t node = node_cost(), cost, peak = 0;
    json_t *payload = big_string(psize);
    struct answer a;
    char k[65];
    unsigned long i, fit;
    int e, before;
    (void)state;

    assert_non_null(ev);
    assert_true(node > 0 && node < 512);
    cost = node + psize + 2;
    fit = (unsigned long)(limit / cost);
    assert_int_equal(faas_store_memory_set_max_bytes(NULL, 1), FAAS_EINVAL);
    assert_int_equal(faas_store_memory_bytes(NULL), 0);
    assert_int_equal(faas_store_memory_set_max_bytes(st, limit), 0);
    st->on_evict = on_evict_num;
    st->on_evict_arg = ev;
    done = mkrec(FAAS_STORE_COMPLETED, 0, payload, NULL, FAR);

    for (i = 0; i < 400; i++) {
        key_of(i, k);
        assert_int_equal(op_put(st, k, &prog, (int64_t)i, &a), 0);
        assert_true(faas_store_memory_bytes(st) <= limit);
        assert_int_equal(op_complete(st, k, &done, (int64_t)i, &a), 0);
        assert_true(faas_store_memory_bytes(st) <= limit);
        if (faas_store_memory_bytes(st) > peak)
            peak = faas_store_memory_bytes(st);
    }
    /* Exactly what fits is kept, and the store was full, not just bounded. */
    assert_int_equal(faas_store_memory_count(st), fit);
    assert_int_equal(faas_store_memory_bytes(st), fit * cost);
    assert_true(peak + cost > limit);
    /* Evicted oldest first, each once: 0, 1, 2, ... */
    assert_int_equal(ev->n, (int)(400 - fit));
    for (e = 0; e < ev->n; e++)
        assert_int_equal(ev->nums[e], (unsigned long)e);
    key_of(400 - fit - 1, k);
    assert_int_equal(op_get(st, k, 500, &a), FAAS_ENOENT);
    key_of(400 - fit, k);
    assert_int_equal(op_get(st, k, 500, &a), 0); /* the oldest kept, touched now */
    assert_ptr_equal(a.rec.payload, payload);

    /* The touched one is now the most recent: the next-oldest goes. */
    before = ev->n;
    key_of(1000, k);
    assert_int_equal(op_put(st, k, &done, 501, &a), 0);
    assert_int_equal(ev->n, before + 1);
    assert_int_equal(ev->nums[before], 400 - fit + 1);
    assert_true(faas_store_memory_bytes(st) <= limit);

    /* Lowering the bound sheds at once, least recently used first. */
    before = ev->n;
    assert_int_equal(faas_store_memory_set_max_bytes(st, 2 * cost), 0);
    assert_int_equal(faas_store_memory_count(st), 2);
    assert_int_equal(faas_store_memory_bytes(st), 2 * cost);
    assert_int_equal(ev->nums[before], 400 - fit + 2);
    /* 0 is the default again: 64 MiB. */
    assert_int_equal(faas_store_memory_set_max_bytes(st, 0), 0);
    key_of(1001, k);
    assert_int_equal(op_put(st, k, &done, 502, &a), 0);
    assert_int_equal(faas_store_memory_count(st), 3);

    faas_store_free(st);
    assert_int_equal(payload->refcount, 1);
    json_decref(payload);
    free(ev);
}

/* A record bigger than the bound is refused (FAAS_ETOOBIG) and evicts
 * nothing; a complete that is refused drops its record. */
static void test_bytes_oversize(void **state)
{
    const size_t limit = 16 * 1024;
    struct faas_store *st = mem_new(0);
    struct faas_store_record prog = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, FAR);
    struct faas_store_record small, huge;
    struct evicted_nums ev;
    json_t *sp = big_string(1000), *hp = big_string(limit);
    struct answer a;
    char k[65];
    unsigned long i;
    size_t bytes;
    (void)state;

    memset(&ev, 0, sizeof ev);
    assert_int_equal(faas_store_memory_set_max_bytes(st, limit), 0);
    st->on_evict = on_evict_num;
    st->on_evict_arg = &ev;
    small = mkrec(FAAS_STORE_COMPLETED, 0, sp, NULL, FAR);
    huge = mkrec(FAAS_STORE_COMPLETED, 0, hp, NULL, FAR);
    for (i = 0; i < 10; i++) {
        key_of(i, k);
        assert_int_equal(op_put(st, k, &small, 1, &a), 0);
    }
    bytes = faas_store_memory_bytes(st);
    assert_int_equal(ev.n, 0);

    key_of(50, k);
    assert_int_equal(op_put(st, k, &huge, 2, &a), FAAS_ETOOBIG);
    assert_int_equal(a.has_rec, 0);
    assert_int_equal(op_get(st, k, 2, &a), FAAS_ENOENT);
    assert_int_equal(faas_store_memory_bytes(st), bytes);
    assert_int_equal(ev.n, 0);

    assert_int_equal(op_put(st, k, &prog, 3, &a), 0);
    assert_int_equal(op_complete(st, k, &huge, 3, &a), FAAS_ETOOBIG);
    assert_int_equal(op_get(st, k, 3, &a), FAAS_ENOENT); /* dropped */
    assert_int_equal(faas_store_memory_bytes(st), bytes);
    assert_int_equal(faas_store_memory_count(st), 10);
    assert_int_equal(ev.n, 0);
    assert_int_equal(hp->refcount, 1);

    faas_store_free(st);
    json_decref(sp);
    json_decref(hp);
}

/* Records in progress are never evicted: completed ones go first, and once
 * only records in progress are left, a put is refused (FAAS_ETHROTTLED)
 * and so is a complete that would not fit beside them. */
static void test_bytes_spare_in_progress(void **state)
{
    struct faas_store *st = mem_new(0);
    struct faas_store_record prog = mkrec(FAAS_STORE_INPROGRESS, 0, NULL, NULL, FAR);
    struct faas_store_record done;
    struct evicted_nums ev;
    size_t node = node_cost(), limit;
    json_t *payload = big_string(3 * 200);
    struct answer a;
    char k[65];
    unsigned long i;
    (void)state;

    /* Room for 10 records in progress, or fewer with payloads. */
    limit = 10 * node;
    memset(&ev, 0, sizeof ev);
    assert_int_equal(faas_store_memory_set_max_bytes(st, limit), 0);
    st->on_evict = on_evict_num;
    st->on_evict_arg = &ev;
    done = mkrec(FAAS_STORE_COMPLETED, 0, payload, NULL, FAR);

    key_of(100, k); /* one completed record, the least recently used */
    assert_int_equal(op_put(st, k, &done, 1, &a), 0);
    for (i = 0; i < 10; i++) {
        key_of(i, k);
        assert_int_equal(op_put(st, k, &prog, 2, &a), 0);
        assert_true(faas_store_memory_bytes(st) <= limit);
    }
    /* The completed one made room for the others, and only it went. */
    assert_int_equal(ev.n, 1);
    assert_int_equal(ev.nums[0], 100);
    assert_int_equal(faas_store_memory_count(st), 10);
    assert_int_equal(faas_store_memory_bytes(st), limit);

    key_of(11, k);
    assert_int_equal(op_put(st, k, &prog, 3, &a), FAAS_ETHROTTLED);
    assert_int_equal(a.has_rec, 0);
    assert_int_equal(op_get(st, k, 3, &a), FAAS_ENOENT);
    /* Completing one with a payload does not fit beside the other nine:
     * dropped, nothing evicted. */
    key_of(0, k);
    assert_int_equal(op_complete(st, k, &done, 3, &a), FAAS_ETHROTTLED);
    assert_int_equal(op_get(st, k, 3, &a), FAAS_ENOENT);
    assert_int_equal(ev.n, 1);
    for (i = 1; i < 10; i++) {
        key_of(i, k);
        assert_int_equal(op_get(st, k, 3, &a), 0);
        assert_int_equal(a.rec.state, FAAS_STORE_INPROGRESS);
    }
    /* Full again; attempts that expired give their room back. */
    key_of(11, k);
    assert_int_equal(op_put(st, k, &prog, 3, &a), 0);
    assert_int_equal(faas_store_memory_bytes(st), limit);
    key_of(12, k);
    assert_int_equal(op_put(st, k, &prog, FAR - 1, &a), FAAS_ETHROTTLED);
    assert_int_equal(op_put(st, k, &prog, FAR, &a), 0);
    assert_true(faas_store_memory_bytes(st) <= limit);
    assert_int_equal(ev.n, 1); /* expired, not evicted */

    faas_store_free(st);
    assert_int_equal(payload->refcount, 1);
    json_decref(payload);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_user_store_later),
        cmocka_unit_test(test_semantics),
        cmocka_unit_test(test_expiry_ms),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_expired_not_evicted),
        cmocka_unit_test(test_payload_refcounts),
        cmocka_unit_test(test_reentrant_callbacks),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_churn_100k),
        cmocka_unit_test(test_random_vs_model),
        cmocka_unit_test(test_bytes_bounded_lru),
        cmocka_unit_test(test_bytes_oversize),
        cmocka_unit_test(test_bytes_spare_in_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

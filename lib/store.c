/*
 * store.c - idempotency stores: the handle every store is reached through,
 * and the embedded memory store.
 *
 * The handle (struct faas_store, faas_int.h) is a copy of an ops table and
 * an opaque impl. faas_store_get/put_if_absent/complete/remove check their
 * arguments (a key is exactly 64 lowercase hex characters, a validation 32)
 * and forward to the ops, so an implementation only ever sees well-formed
 * input. idem.c calls them for each idempotent invocation; hosts and tests
 * may call them too.
 *
 * The memory store keeps each record in one node: the key and the
 * validation as binary (32 and 16 bytes), the payload as a jansson
 * reference, state, status and expiry. Nodes hang in a chained hash table
 * of a power-of-two number of buckets, doubled when the count exceeds it,
 * and on an intrusive LRU list, most recently used first; both are O(1) per
 * operation. Invariants:
 *   - every node is in exactly one bucket chain and on the LRU list once,
 *     and m->count is the number of nodes;
 *   - a node whose expires_ms <= now_ms is never answered: the access that
 *     finds it frees it, and an insert frees up to SWEEP expired nodes from
 *     the LRU tail so an unbounded store with a TTL does not only grow;
 *   - with max_entries > 0 an insert never leaves more than max_entries
 *     nodes: the least recently used node is evicted first, st->on_evict
 *     told its key before it is freed;
 *   - m->bytes is the sum of the nodes' costs (the node itself and the
 *     compact JSON size of its payload, measured once when it is set), and
 *     m->held_bytes that of the nodes in progress. An insert or a complete
 *     never takes m->bytes over max_bytes: it evicts least recently used
 *     COMPLETED records until the new one fits, or, when it cannot fit
 *     (bigger than the bound: FAAS_ETOOBIG; records in progress hold the
 *     rest: FAAS_ETHROTTLED), evicts nothing and is refused. A complete
 *     that is refused drops the record it would have completed. Records in
 *     progress are never evicted;
 *   - the store answers inside each call, after every change is made, and
 *     touches nothing of a node once its callback has run, so a callback may
 *     use the store again or free it (the free then waits for the outermost
 *     call to return). on_evict is the runtime's hook and must not call
 *     into the store.
 * The memory store is used from one thread (the loop's) only.
 *
 * Called by idem.c (every idempotent invocation, and the function's own
 * memory store), hosts and tests. Calls opts.c (faas_store_ops_read),
 * json.c (payload sizes), alloc.c and libsodium (randombytes_buf for the
 * hash seed, sodium_bin2hex); nothing above it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "faas_int.h"
#include "opts.h"

#define KEY_HEX 64
#define KEY_BYTES 32
#define VAL_HEX 32
#define VAL_BYTES 16
#define OWNER_CHARS 36 /* a request id: 8-4-4-4-12 hex digits */
#define OWNER_BYTES 16
#define EVICT_SCAN 32 /* records in progress passed over, at most, per eviction */
#define EVICT_CATCHUP 4 /* evictions, at most, per insert */
#define INITIAL_BUCKETS 16u
/* The byte bound a memory store starts with (and max_bytes 0 means). */
#define DEFAULT_MAX_BYTES ((size_t)64 * 1024 * 1024)
/* Expired nodes an insert frees from the LRU tail, at most. */
#define SWEEP 2

/* ---- the handle ----------------------------------------------------- */

/*
 * 1 + the value of each lowercase hex digit, 0 for every other byte. Keys
 * are random hex, so a comparison per character would mispredict about
 * half the time; a table does not branch on the digits.
 */
static const unsigned char hex_table[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
    ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* 1 when s is exactly n lowercase hex characters. */
static int hex_ok(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (hex_table[(unsigned char)s[i]] == 0) /* the NUL too: stops there */
            return 0;
    return s[n] == '\0';
}

/* 1 when s is a request id: 36 characters, lowercase hex in UUID form. */
static int owner_ok(const char *s)
{
    size_t i;
    for (i = 0; i < OWNER_CHARS; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (hex_table[(unsigned char)s[i]] == 0) {
            return 0;
        }
    }
    return s[OWNER_CHARS] == '\0';
}

static int record_ok(const struct faas_store_record *rec)
{
    if (rec == NULL)
        return 0;
    if (rec->state != FAAS_STORE_INPROGRESS && rec->state != FAAS_STORE_COMPLETED)
        return 0;
    if (rec->owner != NULL && !owner_ok(rec->owner))
        return 0;
    return rec->validation == NULL || hex_ok(rec->validation, VAL_HEX);
}

int faas_store_new(struct faas_store **out, const struct faas_store_ops *ops, void *impl)
{
    struct faas_store_ops o;
    struct faas_store *st;
    if (out == NULL || faas_store_ops_read(&o, ops) != 0 || o.get == NULL ||
        o.put_if_absent == NULL || o.complete == NULL || o.remove == NULL)
        return FAAS_EINVAL;
    st = faas_calloc(1, sizeof *st);
    if (st == NULL)
        return FAAS_ENOMEM;
    st->ops = o;
    st->impl = impl;
    *out = st;
    return 0;
}

int faas_store_get(struct faas_store *st, const char *key, int64_t now_ms, faas_store_cb cb,
                   void *arg)
{
    if (st == NULL || key == NULL || cb == NULL || !hex_ok(key, KEY_HEX))
        return FAAS_EINVAL;
    return st->ops.get(st->impl, key, now_ms, cb, arg);
}

int faas_store_put_if_absent(struct faas_store *st, const char *key,
                             const struct faas_store_record *rec, int64_t now_ms,
                             faas_store_cb cb, void *arg)
{
    if (st == NULL || key == NULL || cb == NULL || !hex_ok(key, KEY_HEX) || !record_ok(rec))
        return FAAS_EINVAL;
    return st->ops.put_if_absent(st->impl, key, rec, now_ms, cb, arg);
}

int faas_store_complete(struct faas_store *st, const char *key,
                        const struct faas_store_record *rec, int64_t now_ms, faas_store_cb cb,
                        void *arg)
{
    if (st == NULL || key == NULL || cb == NULL || !hex_ok(key, KEY_HEX) || !record_ok(rec))
        return FAAS_EINVAL;
    return st->ops.complete(st->impl, key, rec, now_ms, cb, arg);
}

int faas_store_remove(struct faas_store *st, const char *key, const char *owner,
                      int64_t now_ms, faas_store_cb cb, void *arg)
{
    if (st == NULL || key == NULL || cb == NULL || !hex_ok(key, KEY_HEX) ||
        (owner != NULL && !owner_ok(owner)))
        return FAAS_EINVAL;
    return st->ops.remove(st->impl, key, owner, now_ms, cb, arg);
}

/* ---- the memory store: layout and helpers --------------------------- */

/* 120 bytes on LP64, what max_bytes counts besides the payload; with
 * malloc's 16 and a bucket pointer share of 8-16, about 150 in memory. */
struct mem_node {
    struct mem_node *hnext;   /* bucket chain */
    struct faas_list lru;     /* m->lru, most recently used first */
    json_t *payload;          /* a reference, or NULL */
    int64_t expires_ms;
    size_t cost;              /* bytes counted against max_bytes */
    int status;
    unsigned char state;      /* enum faas_store_state */
    unsigned char has_validation;
    unsigned char has_owner;
    unsigned char key[KEY_BYTES];
    unsigned char validation[VAL_BYTES];
    unsigned char owner[OWNER_BYTES];
};

struct mem {
    struct faas_store *st;    /* its handle: on_evict, deferred free */
    struct mem_node **buckets;
    size_t nbuckets;          /* a power of two */
    size_t count;
    uint32_t max_entries;     /* 0 = unbounded */
    size_t bytes;             /* the nodes' costs */
    size_t held_bytes;        /* the costs of the nodes in progress */
    size_t max_bytes;
    uint64_t seed;
    struct faas_list lru;
    int depth;                /* operations in progress (callbacks may nest) */
    int free_requested;       /* faas_store_free came from inside one */
};

/* hex is known good (the handle checked it). */
static void hex_decode(const char *hex, unsigned char *out, size_t nbytes)
{
    size_t i;
    for (i = 0; i < nbytes; i++)
        out[i] = (unsigned char)((hex_table[(unsigned char)hex[2 * i]] - 1) << 4 |
                                 (hex_table[(unsigned char)hex[2 * i + 1]] - 1));
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/*
 * Keys are BLAKE2b outputs already, so any bits would spread well; the
 * seeded mix of all four words keeps a host's non-hashed keys spread too,
 * and keeps bucket collisions from being precomputed.
 */
static size_t mem_bucket(const struct mem *m, const unsigned char *key)
{
    uint64_t w[4], h;
    memcpy(w, key, sizeof w);
    h = mix64(m->seed ^ w[0]);
    h = mix64(h ^ w[1]);
    h = mix64(h ^ w[2]);
    h = mix64(h ^ w[3]);
    return (size_t)h & (m->nbuckets - 1);
}

/* The link that points at key's node, or at the NULL ending its chain. */
static struct mem_node **mem_slot(struct mem *m, const unsigned char *key)
{
    struct mem_node **p = &m->buckets[mem_bucket(m, key)];
    while (*p != NULL && memcmp((*p)->key, key, KEY_BYTES) != 0)
        p = &(*p)->hnext;
    return p;
}

static void mem_node_free(struct mem_node *n)
{
    json_decref(n->payload);
    free(n);
}

/* Takes the node at *slot out of the table and the LRU list. */
static struct mem_node *mem_unlink(struct mem *m, struct mem_node **slot)
{
    struct mem_node *n = *slot;
    *slot = n->hnext;
    faas_list_remove(&n->lru);
    m->count--;
    m->bytes -= n->cost;
    if (n->state == FAAS_STORE_INPROGRESS)
        m->held_bytes -= n->cost;
    return n;
}

static struct mem_node *mem_lru_tail(struct mem *m)
{
    if (faas_list_empty(&m->lru))
        return NULL;
    return FAAS_CONTAINER_OF(m->lru.prev, struct mem_node, lru);
}

/* The live node of key, or NULL; an expired one is freed on the spot. */
static struct mem_node *mem_find(struct mem *m, const unsigned char *key, int64_t now_ms)
{
    struct mem_node **slot = mem_slot(m, key);
    if (*slot == NULL)
        return NULL;
    if ((*slot)->expires_ms <= now_ms) {
        mem_node_free(mem_unlink(m, slot));
        return NULL;
    }
    return *slot;
}

static void mem_touch(struct mem *m, struct mem_node *n)
{
    faas_list_remove(&n->lru);
    faas_list_insert_head(&m->lru, &n->lru);
}

/* A request id's 32 hex digits as 16 bytes, and back. */
static void owner_decode(const char *id, unsigned char *out)
{
    char hex[OWNER_BYTES * 2];
    size_t i, o = 0;
    for (i = 0; i < OWNER_CHARS; i++)
        if (id[i] != '-')
            hex[o++] = id[i];
    hex_decode(hex, out, OWNER_BYTES);
}

static void owner_encode(const unsigned char *in, char *out)
{
    char hex[OWNER_BYTES * 2 + 1];
    size_t i, o = 0;
    sodium_bin2hex(hex, sizeof hex, in, OWNER_BYTES);
    for (i = 0; i < OWNER_BYTES * 2; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20)
            out[o++] = '-';
        out[o++] = hex[i];
    }
    out[o] = '\0';
}

/* 1 unless an owner is given and the node is held by another (or none). */
static int owner_matches(const struct mem_node *n, const char *owner)
{
    unsigned char o[OWNER_BYTES];
    if (owner == NULL)
        return 1;
    if (!n->has_owner)
        return 0;
    owner_decode(owner, o);
    return memcmp(o, n->owner, OWNER_BYTES) == 0;
}

/*
 * What a record costs: its node and its payload's compact JSON, measured
 * once (json_dumpb without a buffer only counts). A payload jansson cannot
 * serialise is counted by its upper bound.
 */
static size_t mem_cost(const struct faas_store_record *rec)
{
    size_t n = 0;
    if (rec->payload != NULL) {
        n = json_dumpb(rec->payload, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
        if (n == 0)
            n = faas_json_size(rec->payload, SIZE_MAX);
    }
    return n > SIZE_MAX - sizeof(struct mem_node) ? SIZE_MAX : sizeof(struct mem_node) + n;
}

/* Copies a (checked) record costing `cost` into a node that is in the
 * store (its old cost counted); the payload gets a reference. */
static void mem_set(struct mem *m, struct mem_node *n, const struct faas_store_record *rec,
                    size_t cost)
{
    json_t *old = n->payload;
    m->bytes -= n->cost;
    if (n->state == FAAS_STORE_INPROGRESS)
        m->held_bytes -= n->cost;
    n->cost = cost;
    m->bytes += cost;
    if (rec->state == FAAS_STORE_INPROGRESS)
        m->held_bytes += cost;
    n->payload = json_incref(rec->payload);
    json_decref(old); /* after the incref: rec->payload may be old */
    n->state = (unsigned char)rec->state;
    n->status = rec->status;
    n->expires_ms = rec->expires_ms;
    n->has_validation = rec->validation != NULL;
    if (rec->validation != NULL)
        hex_decode(rec->validation, n->validation, VAL_BYTES);
    else
        memset(n->validation, 0, VAL_BYTES);
    n->has_owner = rec->owner != NULL;
    if (rec->owner != NULL)
        owner_decode(rec->owner, n->owner);
    else
        memset(n->owner, 0, OWNER_BYTES);
}

/*
 * Calls cb with rc and n's record (NULL: none). The payload is held across
 * the call so it stays valid even if the callback changes the store.
 */
static void mem_answer(faas_store_cb cb, void *arg, int rc, const struct mem_node *n)
{
    struct faas_store_record rec;
    char vhex[VAL_HEX + 1], ohex[OWNER_CHARS + 1];
    json_t *pin;

    if (n == NULL) {
        cb(rc, NULL, arg);
        return;
    }
    rec.state = (enum faas_store_state)n->state;
    rec.status = n->status;
    rec.payload = n->payload;
    rec.expires_ms = n->expires_ms;
    rec.validation = NULL;
    if (n->has_validation) {
        sodium_bin2hex(vhex, sizeof vhex, n->validation, VAL_BYTES);
        rec.validation = vhex;
    }
    rec.owner = NULL;
    if (n->has_owner) {
        owner_encode(n->owner, ohex);
        rec.owner = ohex;
    }
    pin = json_incref(n->payload);
    cb(rc, &rec, arg);
    json_decref(pin);
}

/* Doubles the buckets. On allocation failure the table stays as it is:
 * chains grow longer, nothing is lost. */
static void mem_grow(struct mem *m)
{
    size_t n = m->nbuckets * 2, i;
    struct mem_node **nb, **old = m->buckets;

    if (n > SIZE_MAX / sizeof *nb)
        return;
    nb = faas_calloc(n, sizeof *nb);
    if (nb == NULL)
        return;
    m->buckets = nb;
    m->nbuckets = n;
    for (i = 0; i < n / 2; i++) {
        struct mem_node *e = old[i], *next;
        for (; e != NULL; e = next) {
            size_t b = mem_bucket(m, e->key);
            next = e->hnext;
            e->hnext = nb[b];
            nb[b] = e;
        }
    }
    free(old);
}

static void mem_destroy(void *impl)
{
    struct mem *m = impl;
    struct faas_list *e;
    if (m == NULL)
        return;
    while ((e = faas_list_pop_head(&m->lru)) != NULL)
        mem_node_free(FAAS_CONTAINER_OF(e, struct mem_node, lru));
    free(m->buckets);
    free(m);
}

static void mem_enter(struct mem *m)
{
    m->depth++;
}

/* Ends an operation; the outermost one carries out a deferred free. */
static int mem_leave(struct mem *m, int rc)
{
    if (--m->depth == 0 && m->free_requested) {
        struct faas_store *st = m->st;
        mem_destroy(m);
        free(st);
    }
    return rc;
}

/* ---- the memory store: operations ----------------------------------- */

static int mem_get(void *impl, const char *key, int64_t now_ms, faas_store_cb cb, void *arg)
{
    struct mem *m = impl;
    unsigned char k[KEY_BYTES];
    struct mem_node *n;

    mem_enter(m);
    hex_decode(key, k, KEY_BYTES);
    n = mem_find(m, k, now_ms);
    if (n != NULL) {
        mem_touch(m, n);
        mem_answer(cb, arg, 0, n);
    } else {
        mem_answer(cb, arg, FAAS_ENOENT, NULL);
    }
    return mem_leave(m, 0);
}

/* The node used just more recently than n, or NULL: n is the head. */
static struct mem_node *mem_prev(struct mem *m, struct mem_node *n)
{
    return n->lru.prev == &m->lru ? NULL : FAAS_CONTAINER_OF(n->lru.prev, struct mem_node, lru);
}

/* Evicts a live node: out of the table, the hook told, freed. */
static void mem_evict(struct mem *m, struct mem_node *t)
{
    mem_unlink(m, mem_slot(m, t->key));
    if (m->st->on_evict != NULL) {
        char hex[KEY_HEX + 1];
        sodium_bin2hex(hex, sizeof hex, t->key, KEY_BYTES);
        m->st->on_evict(m->st->on_evict_arg, hex);
    }
    mem_node_free(t);
}

/*
 * From the LRU tail, frees expired nodes and, with completed_too, evicts
 * COMPLETED ones (never `self`, never one in progress) until the other
 * nodes cost at most `target`, or the list ends; up to `scan` nodes looked
 * at (0: no limit).
 */
static void mem_shed(struct mem *m, const struct mem_node *self, size_t target, int64_t now_ms,
                     size_t scan, int completed_too)
{
    size_t self_cost = self != NULL ? self->cost : 0, seen = 0;
    struct mem_node *t = mem_lru_tail(m), *prev;

    while (t != NULL && m->bytes - self_cost > target && (scan == 0 || seen++ < scan)) {
        prev = mem_prev(m, t);
        if (t != self) {
            if (t->expires_ms <= now_ms)
                mem_node_free(mem_unlink(m, mem_slot(m, t->key)));
            else if (completed_too && t->state == FAAS_STORE_COMPLETED)
                mem_evict(m, t);
        }
        t = prev;
    }
}

/*
 * Makes room under max_bytes for a record costing `cost`, in place of
 * `self` (a complete) or as a new node (NULL). Evicts only when the record
 * will then fit. Returns 0, FAAS_ETOOBIG (it is bigger than the bound) or
 * FAAS_ETHROTTLED (records in progress hold the rest).
 */
static int mem_fit(struct mem *m, const struct mem_node *self, size_t cost, int64_t now_ms)
{
    size_t self_cost = self != NULL ? self->cost : 0, room;
    size_t self_held = self != NULL && self->state == FAAS_STORE_INPROGRESS ? self->cost : 0;

    if (cost > m->max_bytes)
        return FAAS_ETOOBIG;
    room = m->max_bytes - cost;
    if (m->bytes - self_cost <= room)
        return 0;
    if (m->held_bytes - self_held > room) {
        /* Attempts that timed out or died hold space until their records
         * expire: the oldest are near the tail. */
        mem_shed(m, self, room, now_ms, EVICT_SCAN, 0);
        self_held = self != NULL && self->state == FAAS_STORE_INPROGRESS ? self->cost : 0;
        if (m->held_bytes - self_held > room)
            return FAAS_ETHROTTLED;
    }
    /* The COMPLETED records cost enough: evicting them from the tail on
     * makes it fit, passing over the ones in progress. */
    mem_shed(m, self, room, now_ms, 0, 1);
    return 0;
}

/* Room for one more node: expired ones off the tail, then the LRU one. */
static void mem_make_room(struct mem *m, int64_t now_ms)
{
    struct mem_node *t;
    int i, e;

    for (i = 0; i < SWEEP; i++) {
        t = mem_lru_tail(m);
        if (t == NULL || t->expires_ms > now_ms)
            break;
        mem_node_free(mem_unlink(m, mem_slot(m, t->key)));
    }
    /* Full only if nothing was swept: evict the least recently used live
     * COMPLETED record. One in progress is an invocation running now:
     * dropping it would let a duplicate run at the same time. A store that
     * went over the bound while such records ran sheds up to EVICT_CATCHUP
     * records an insert, back to the bound. */
    for (e = 0; e < EVICT_CATCHUP && m->max_entries != 0 && m->count >= m->max_entries; e++) {
        t = mem_lru_tail(m);
        for (i = 0; t != NULL && t->state == FAAS_STORE_INPROGRESS && i < EVICT_SCAN; i++)
            t = t->lru.prev == &m->lru ? NULL
                                       : FAAS_CONTAINER_OF(t->lru.prev, struct mem_node, lru);
        if (t == NULL || t->state == FAAS_STORE_INPROGRESS)
            return; /* over the bound while these run */
        mem_evict(m, t);
    }
}

static int mem_put_if_absent(void *impl, const char *key, const struct faas_store_record *rec,
                             int64_t now_ms, faas_store_cb cb, void *arg)
{
    struct mem *m = impl;
    unsigned char k[KEY_BYTES];
    struct mem_node *n, **head;
    size_t cost;
    int rc;

    mem_enter(m);
    hex_decode(key, k, KEY_BYTES);
    n = mem_find(m, k, now_ms);
    if (n != NULL) {
        mem_touch(m, n);
        mem_answer(cb, arg, FAAS_EEXIST, n);
        return mem_leave(m, 0);
    }
    /* Allocate before evicting: a failure leaves every live record. */
    n = faas_malloc(sizeof *n);
    if (n == NULL)
        return mem_leave(m, FAAS_ENOMEM);
    cost = mem_cost(rec);
    rc = mem_fit(m, NULL, cost, now_ms);
    if (rc != 0) {
        free(n);
        mem_answer(cb, arg, rc, NULL);
        return mem_leave(m, 0);
    }
    memcpy(n->key, k, KEY_BYTES);
    n->payload = NULL;
    n->cost = 0;
    n->state = FAAS_STORE_COMPLETED; /* nothing counted yet: mem_set counts it */
    mem_set(m, n, rec, cost);
    mem_make_room(m, now_ms);

    head = &m->buckets[mem_bucket(m, k)];
    n->hnext = *head;
    *head = n;
    faas_list_insert_head(&m->lru, &n->lru);
    if (++m->count > m->nbuckets)
        mem_grow(m);
    mem_answer(cb, arg, 0, n);
    return mem_leave(m, 0);
}

static int mem_complete(void *impl, const char *key, const struct faas_store_record *rec,
                        int64_t now_ms, faas_store_cb cb, void *arg)
{
    struct mem *m = impl;
    unsigned char k[KEY_BYTES];
    struct mem_node *n;
    size_t cost;
    int rc;

    mem_enter(m);
    hex_decode(key, k, KEY_BYTES);
    n = mem_find(m, k, now_ms);
    if (n == NULL || !owner_matches(n, rec->owner)) {
        mem_answer(cb, arg, FAAS_ENOENT, NULL);
        return mem_leave(m, 0);
    }
    cost = mem_cost(rec);
    rc = mem_fit(m, n, cost, now_ms);
    if (rc != 0) {
        /* It cannot be kept: the record is dropped, so a retry runs again
         * rather than finding the attempt forever in progress. */
        mem_node_free(mem_unlink(m, mem_slot(m, k)));
        mem_answer(cb, arg, rc, NULL);
        return mem_leave(m, 0);
    }
    mem_set(m, n, rec, cost);
    mem_touch(m, n);
    mem_answer(cb, arg, 0, n);
    return mem_leave(m, 0);
}

static int mem_remove(void *impl, const char *key, const char *owner, int64_t now_ms,
                      faas_store_cb cb, void *arg)
{
    struct mem *m = impl;
    unsigned char k[KEY_BYTES];
    struct mem_node *n;

    mem_enter(m);
    hex_decode(key, k, KEY_BYTES);
    n = mem_find(m, k, now_ms);
    if (n == NULL || !owner_matches(n, owner)) {
        mem_answer(cb, arg, FAAS_ENOENT, NULL);
        return mem_leave(m, 0);
    }
    mem_node_free(mem_unlink(m, mem_slot(m, k)));
    mem_answer(cb, arg, 0, NULL);
    return mem_leave(m, 0);
}

static const struct faas_store_ops mem_ops = {
    FAAS_STORE_OPS_VERSION, mem_get, mem_put_if_absent, mem_complete, mem_remove, mem_destroy
};

/* A handle's ops are a copy: a memory store is recognised by its get. */
static struct mem *mem_of(const struct faas_store *st)
{
    return st != NULL && st->ops.get == mem_get ? st->impl : NULL;
}

static uint64_t mem_seed(const struct mem *m)
{
    uint64_t seed;
    struct timespec ts;
    if (sodium_init() >= 0) {
        randombytes_buf(&seed, sizeof seed);
        return seed;
    }
    /* No entropy source: still different per store and per run. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return mix64((uint64_t)(uintptr_t)m ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32));
}

int faas_store_memory_new(struct faas_store **out, uint32_t max_entries)
{
    struct faas_store *st = NULL;
    struct mem *m;
    int rc;

    if (out == NULL)
        return FAAS_EINVAL;
    m = faas_calloc(1, sizeof *m);
    if (m == NULL)
        return FAAS_ENOMEM;
    m->buckets = faas_calloc(INITIAL_BUCKETS, sizeof *m->buckets);
    if (m->buckets == NULL) {
        free(m);
        return FAAS_ENOMEM;
    }
    m->nbuckets = INITIAL_BUCKETS;
    m->max_entries = max_entries;
    m->max_bytes = DEFAULT_MAX_BYTES;
    faas_list_init(&m->lru);
    m->seed = mem_seed(m);
    rc = faas_store_new(&st, &mem_ops, m);
    if (rc != 0) {
        mem_destroy(m);
        return rc;
    }
    m->st = st;
    *out = st;
    return 0;
}

void faas_store_free(struct faas_store *st)
{
    struct mem *m;
    if (st == NULL)
        return;
    m = mem_of(st);
    if (m != NULL && m->depth > 0) {
        m->free_requested = 1; /* inside its callback: mem_leave frees */
        return;
    }
    if (st->ops.destroy != NULL)
        st->ops.destroy(st->impl);
    free(st);
}

size_t faas_store_memory_count(const struct faas_store *st)
{
    const struct mem *m = mem_of(st);
    return m != NULL ? m->count : 0;
}

int faas_store_memory_set_max_bytes(struct faas_store *st, size_t max_bytes)
{
    struct mem *m = mem_of(st);
    if (m == NULL)
        return FAAS_EINVAL;
    m->max_bytes = max_bytes != 0 ? max_bytes : DEFAULT_MAX_BYTES;
    /* Down to the new bound at once, as far as COMPLETED records allow;
     * nothing counts as expired here (there is no time). */
    mem_shed(m, NULL, m->max_bytes, INT64_MIN, 0, 1);
    return 0;
}

size_t faas_store_memory_bytes(const struct faas_store *st)
{
    const struct mem *m = mem_of(st);
    return m != NULL ? m->bytes : 0;
}

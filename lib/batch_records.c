/*
 * batch_records.c - the records a host-fed mapping's batcher holds: the
 * per-key FIFO queues and which keys are available (batch.c's prose block
 * says when), the held list with its byte count, and the records' keeping
 * in the durable engine: the put of a new record, its answer settled in
 * seq order, the load of what an earlier run kept, and the delete when a
 * record ends.
 *
 * Invariants: a record is on b->held from when the batcher takes it until
 * it ends or is dropped; while its put is unanswered it is on b->putting
 * and on no key's queue (KEEP_PUTTING), counted in its key's nputting; a
 * key is freed only when it holds nothing (queued, in batches, putting).
 * Only records the engine committed (KEEP_KEPT) are ever deleted from it,
 * and never while the runtime closes. A name unmapped in this process
 * leaves its last seq in rt->mapping_seqs: records up to it ended, whatever
 * the engine still holds of them, and new ones are numbered after it.
 *
 * Called by batch.c only, through batch_int.h. May call: the durable
 * engine (durable.h: record put, del, load), json_path.c, hash.c, clock.c,
 * metrics.c's log records, runtime.c's callback guard, and batch.c's timer
 * and reference (faas_batch_arm_timer, faas_batcher_unref).
 */
#include <stdlib.h>
#include <string.h>

#include "batch_int.h"
#include "durable.h"
#include "json_path.h"

#define MS 1000000u

/* ---- keys ----------------------------------------------------------- */

static int key_available(const struct faas_batcher *b, const struct bkey *k)
{
    return k->nqueued > 0 && (!b->ordered || k->outstanding == 0);
}

static uint64_t head_seq(const struct bkey *k)
{
    return FAAS_CONTAINER_OF(k->queue.next, struct brec, link)->seq;
}

void faas_bkey_avail_remove(struct faas_batcher *b, struct bkey *k)
{
    if (!k->in_avail)
        return;
    faas_list_remove(&k->avail_link);
    k->in_avail = 0;
    b->navail -= k->nqueued;
}

/* Puts k on avail, or takes it off, after its queue or batches changed. */
void faas_bkey_avail_update(struct faas_batcher *b, struct bkey *k)
{
    struct faas_list *e;
    uint64_t seq;

    if (!key_available(b, k)) {
        faas_bkey_avail_remove(b, k);
        return;
    }
    if (k->in_avail)
        return;
    /* Oldest head record first; a key coming back is usually older than
     * the newest ones, so search from the tail. */
    seq = head_seq(k);
    e = b->avail.prev;
    while (e != &b->avail &&
           head_seq(FAAS_CONTAINER_OF(e, struct bkey, avail_link)) > seq)
        e = e->prev;
    faas_list_insert_head(e, &k->avail_link); /* after e */
    k->in_avail = 1;
    b->navail += k->nqueued;
}

/* Drops an ordered key that holds nothing: keys do not pile up. */
void faas_bkey_maybe_free(struct faas_batcher *b, struct bkey *k)
{
    if (k == &b->all || k->nqueued || k->outstanding || k->nputting || k->in_avail)
        return;
    faas_htable_remove(&b->keys, &k->hnode);
    free(k);
}

static int key_name_eq(const struct faas_hnode *n, const void *name)
{
    return strcmp(FAAS_CONTAINER_OF(n, struct bkey, hnode)->name, name) == 0;
}

static struct bkey *key_get(struct faas_batcher *b, const char *name)
{
    uint32_t h = faas_hash_str(name);
    size_t len = strlen(name);
    struct faas_hnode *n = faas_htable_find(&b->keys, h, key_name_eq, name);
    struct bkey *k;

    if (n)
        return FAAS_CONTAINER_OF(n, struct bkey, hnode);
    if (faas_htable_reserve(&b->keys) != 0)
        return NULL;
    k = faas_calloc(1, sizeof *k + len + 1);
    if (!k)
        return NULL;
    memcpy((char *)(k + 1), name, len + 1);
    k->name = (const char *)(k + 1);
    faas_list_init(&k->queue);
    faas_list_init(&k->avail_link);
    faas_htable_insert(&b->keys, &k->hnode, h);
    return k;
}

/* The partition key of a record, as a string the caller frees, or NULL. */
static char *partition_key(const struct faas_batcher *b, json_t *rec)
{
    const char *path = b->key_path ? b->key_path
                       : b->kind == FAAS_SRC_STREAM ? "kinesis.partitionKey"
                                                    : "dynamodb.Keys";
    json_t *v = faas_json_path(rec, path);
    char *key;
    if (!v)
        return faas_strdup("");
    if (json_is_string(v))
        key = faas_strdup(json_string_value(v));
    else /* Sorted keys: the same DynamoDB key in any member order is one key. */
        key = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(v);
    return key;
}


/* Frees a record that was on b->held. */
void faas_brec_unhold(struct faas_batcher *b, struct brec *r)
{
    faas_list_remove(&r->held_link);
    b->nheld--;
    b->nbytes -= r->bytes;
    json_decref(r->rec);
    free(r);
}

/*
 * The engine forgets a record that ended. Not while the runtime closes:
 * what is dropped then was not ended, and stays for the next start. A
 * delete that cannot be queued leaves the record to be delivered again
 * after a restart (at least once), and says so.
 */
static void rec_forget(struct faas_batcher *b, const struct brec *r)
{
    struct faas_runtime *rt = b->rt;
    int rc;

    if (r->keep != KEEP_KEPT || faas_batch_stopping(rt) || !rt->durable)
        return;
    rc = faas_durable_record_del(rt->durable, b->name, r->seq, faas_durable_drain_done, rt);
    if (rc != 0)
        faas_log_event(rt, FAAS_LOG_WARNING, b->function, NULL, "durable", NULL,
                       "mapping \"%s\": record %llu ended but stays kept (%s): it runs "
                       "again after a restart",
                       b->name, (unsigned long long)r->seq, faas_batch_err_name(rc));
}

/* A record leaves its batch for good (delivered or failed). */
void faas_brec_end(struct faas_batcher *b, struct brec *r)
{
    struct bkey *k = r->key;
    k->outstanding--;
    rec_forget(b, r);
    faas_brec_unhold(b, r);
    if (b->m) {
        faas_bkey_avail_update(b, k);
        faas_bkey_maybe_free(b, k);
    }
    faas_drain_note(b->rt);
}

/* ---- records in and out ---------------------------------------------- */

/* A record of b for `record` (taken over) with its key, not yet held or
 * queued; NULL when out of memory (the record is then still the caller's). */
struct brec *faas_brec_new(struct faas_batcher *b, json_t *record, size_t bytes)
{
    struct bkey *k;
    struct brec *r;

    if (b->ordered) {
        char *name = partition_key(b, record);
        k = name ? key_get(b, name) : NULL;
        free(name);
    } else {
        k = &b->all;
    }
    r = k ? faas_calloc(1, sizeof *r) : NULL;
    if (!r) {
        if (k)
            faas_bkey_maybe_free(b, k);
        return NULL;
    }
    r->b = b;
    r->rec = record;
    r->key = k;
    r->bytes = bytes;
    return r;
}

void faas_brec_hold(struct faas_batcher *b, struct brec *r)
{
    faas_list_insert_tail(&b->held, &r->held_link);
    b->nheld++;
    b->nbytes += r->bytes;
}

/* A held record joins its key's queue: from now on it may be batched. */
void faas_brec_queue(struct faas_batcher *b, struct brec *r, uint64_t now)
{
    struct bkey *k = r->key;

    faas_list_insert_tail(&k->queue, &r->link);
    k->nqueued++;
    if (k->in_avail)
        b->navail++;
    else
        faas_bkey_avail_update(b, k);
    /* While draining windows are closed: a record kept after the drain
     * began leaves at once too. */
    if (b->window_ms == 0 || b->navail >= b->batch_size || b->rt->draining)
        faas_batcher_kick(b);
    else
        faas_batch_arm_timer(b, now);
}

/*
 * Records whose put was answered leave the head of b->putting in seq order
 * (answers come in that order; the list keeps it whatever happens): a
 * kept record is queued, a refused one dropped and logged. Once b is
 * detached or the runtime closes, nobody batches them: a record the
 * mapping's removal dropped is forgotten, one the runtime's end dropped
 * stays kept (rec_forget). The caller brackets user callbacks (the log).
 */
static void putting_settle(struct faas_batcher *b)
{
    struct faas_runtime *rt = b->rt;
    struct faas_list *e;

    while ((e = b->putting.next) != &b->putting) {
        struct brec *r = FAAS_CONTAINER_OF(e, struct brec, link);
        struct bkey *k = r->key;
        if (r->keep == KEEP_PUTTING)
            break;
        faas_list_remove(&r->link);
        k->nputting--;
        if (r->keep == KEEP_KEPT && b->m && !faas_batch_stopping(rt)) {
            faas_brec_queue(b, r, faas_now_ns(rt));
            continue;
        }
        if (r->keep == KEEP_KEPT)
            rec_forget(b, r);
        else
            faas_log_event(rt, FAAS_LOG_WARNING, b->function, NULL, "record-refused", NULL,
                           "mapping \"%s\": the durable engine could not keep a record "
                           "(%s): dropped",
                           b->name, faas_batch_err_name(r->refused_rc));
        faas_brec_unhold(b, r);
        if (b->m)
            faas_bkey_maybe_free(b, k);
        faas_drain_note(rt);
    }
}

static void put_done(int rc, void *arg)
{
    struct brec *r = arg;
    struct faas_batcher *b = r->b;
    struct faas_runtime *rt = b->rt;
    struct faas_emit_wait *w = r->wait;

    r->wait = NULL;
    if (rc == 0) {
        r->keep = KEEP_KEPT;
    } else {
        r->keep = KEEP_REFUSED;
        r->refused_rc = rc;
    }
    faas_rt_enter(rt);
    putting_settle(b);
    if (w)
        w->note(w, rc); /* the host's callback, maybe */
    faas_batcher_unref(b); /* the put's */
    faas_rt_leave(rt);
}

/* Hands a new record to the engine: it waits on b->putting, held (it
 * counts against the bound and for a drain), until the engine answers. */
int faas_brec_put(struct faas_batcher *b, struct brec *r, struct faas_emit_wait *w)
{
    struct faas_runtime *rt = b->rt;
    struct faas_durable_record dr;
    char *text = json_dumps(r->rec, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = FAAS_ENOMEM;

    if (text) {
        dr.mapping = b->name;
        dr.seq = r->seq;
        dr.key = b->ordered ? r->key->name : NULL;
        dr.record = text;
        dr.record_len = strlen(text);
        dr.arrived_ms = faas_wall_ns(rt) / 1000000;
        rc = faas_durable_record_put(rt->durable, &dr, put_done, r);
        free(text);
    }
    if (rc != 0) {
        struct bkey *k = r->key;
        json_decref(r->rec);
        free(r);
        faas_bkey_maybe_free(b, k);
        return rc;
    }
    r->keep = KEEP_PUTTING;
    r->wait = w;
    if (w)
        w->owed++;
    r->key->nputting++;
    faas_list_insert_tail(&b->putting, &r->link);
    faas_brec_hold(b, r);
    b->nrecords++;
    faas_batcher_ref(b);
    return 0;
}

/* ---- names let go in this process ---------------------------------- */

/*
 * A mapping unmapped in this process may leave, in writes the engine has not
 * committed yet, records it dropped (their deletes queued) or numbered (their
 * puts queued). A mapping made again under the name must neither load those
 * (they ended) nor number new records like them: the last seq of each name
 * let go is remembered here, for the runtime's life.
 */
struct seq_mark {
    struct faas_hnode hnode;   /* rt->mapping_seqs */
    uint64_t seq;
    char name[];
};

static int mark_eq(const struct faas_hnode *n, const void *name)
{
    return strcmp(FAAS_CONTAINER_OF(n, struct seq_mark, hnode)->name, name) == 0;
}

static struct seq_mark *mark_find(struct faas_runtime *rt, const char *name)
{
    struct faas_hnode *n;
    if (!rt->mapping_seqs.buckets)
        return NULL;
    n = faas_htable_find(&rt->mapping_seqs, faas_hash_str(name), mark_eq, name);
    return n ? FAAS_CONTAINER_OF(n, struct seq_mark, hnode) : NULL;
}

void faas_batch_mark_seq(struct faas_batcher *b)
{
    struct faas_runtime *rt = b->rt;
    struct seq_mark *mk;
    size_t len;

    if (!rt->durable || faas_batch_stopping(rt) || b->next_seq == 0)
        return;
    if ((mk = mark_find(rt, b->name)) != NULL) {
        if (b->next_seq > mk->seq)
            mk->seq = b->next_seq;
        return;
    }
    len = strlen(b->name);
    if ((!rt->mapping_seqs.buckets && faas_htable_init(&rt->mapping_seqs, 16) != 0) ||
        faas_htable_reserve(&rt->mapping_seqs) != 0 ||
        !(mk = faas_malloc(sizeof *mk + len + 1))) {
        faas_log_event(rt, FAAS_LOG_WARNING, b->function, NULL, "durable", NULL,
                       "mapping \"%s\": out of memory; mapped again in this process, it may "
                       "deliver records it dropped",
                       b->name);
        return;
    }
    memset(&mk->hnode, 0, sizeof mk->hnode);
    mk->seq = b->next_seq;
    memcpy(mk->name, b->name, len + 1);
    faas_htable_insert(&rt->mapping_seqs, &mk->hnode, faas_hash_str(mk->name));
}

void faas_batcher_marks_free(struct faas_runtime *rt)
{
    struct faas_hnode *n;
    if (!rt->mapping_seqs.buckets)
        return;
    while ((n = faas_htable_first(&rt->mapping_seqs)) != NULL) {
        faas_htable_remove(&rt->mapping_seqs, n);
        free(FAAS_CONTAINER_OF(n, struct seq_mark, hnode));
    }
    faas_htable_fini(&rt->mapping_seqs);
}

/* ---- loading what was kept ----------------------------------------- */

struct load {
    struct faas_batcher *b;
    uint64_t ended;            /* records up to this seq ended in this process */
};

/* One record kept under b's name by an earlier run: queued as it was, its
 * age on the wall clock carried over. faas_durable_records_load's `each`. */
static int load_one(const struct faas_durable_record *dr, void *arg)
{
    const struct load *ld = arg;
    struct faas_batcher *b = ld->b;
    struct faas_runtime *rt = b->rt;
    uint64_t now = faas_now_ns(rt), age_ns;
    int64_t age_ms = faas_wall_ns(rt) / 1000000 - dr->arrived_ms;
    json_t *rec = json_loadb(dr->record, dr->record_len, JSON_ALLOW_NUL, NULL);
    struct brec *r;

    if (dr->seq <= ld->ended) {
        json_decref(rec); /* its delete is queued */
        return 0;
    }
    if (!json_is_object(rec)) {
        /* Not written by this library: it can never be delivered. */
        json_decref(rec);
        faas_log_event(rt, FAAS_LOG_WARNING, b->function, NULL, "durable", NULL,
                       "mapping \"%s\": kept record %llu is not a JSON object: dropped",
                       b->name, (unsigned long long)dr->seq);
        faas_durable_record_del(rt->durable, b->name, dr->seq, faas_durable_drain_done, rt);
        return 0;
    }
    r = faas_brec_new(b, rec, dr->record_len);
    if (!r) {
        json_decref(rec);
        return FAAS_ENOMEM;
    }
    age_ns = age_ms > 0 ? (uint64_t)age_ms * MS : 0;
    r->emitted_ns = now > age_ns ? now - age_ns : 0;
    r->seq = dr->seq;
    r->keep = KEEP_KEPT;
    if (dr->seq > b->next_seq)
        b->next_seq = dr->seq;
    faas_brec_hold(b, r);
    faas_brec_queue(b, r, now);
    return 0;
}

int faas_batch_load(struct faas_batcher *b)
{
    struct seq_mark *mk = mark_find(b->rt, b->name);
    struct load ld = { b, mk ? mk->seq : 0 };

    b->next_seq = ld.ended;
    return faas_durable_records_load(b->rt->durable, b->name, load_one, &ld);
}

/* Undoes what load_one did, leaving the engine as it was (faas_map failed). */
void faas_batch_unload(struct faas_batcher *b)
{
    struct faas_list *e;
    while ((e = b->held.next) != &b->held) {
        struct brec *r = FAAS_CONTAINER_OF(e, struct brec, held_link);
        faas_list_remove(&r->link);
        r->key->nqueued--;
        faas_brec_unhold(b, r);
    }
}

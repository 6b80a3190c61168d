/*
 * batch_int.h - what batch.c and batch_records.c share: the batcher of a
 * host-fed mapping, its keys, records and batches, and the calls between
 * the two files. batch.c is the policy (batches formed, sent, retried,
 * bisected, failed; the interface in faas_int.h); batch_records.c holds the
 * records (queues, availability, the durable engine). Included by those two
 * files only.
 */
#ifndef FAAS_BATCH_INT_H
#define FAAS_BATCH_INT_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "faas_int.h"

struct bkey {
    struct faas_hnode hnode;     /* b->keys (not b->all) */
    struct faas_list avail_link; /* b->avail while in_avail */
    struct faas_list queue;      /* struct brec, arrival order */
    size_t nqueued;
    size_t outstanding;          /* its records in batches */
    size_t nputting;             /* its records not yet durable */
    int in_avail;
    const char *name;
};

/* Where a record is with a durable engine (without one: always MEMORY). */
enum brec_keep {
    KEEP_MEMORY = 0,             /* no engine: nothing to write */
    KEEP_PUTTING,                /* on b->putting, its put not answered */
    KEEP_REFUSED,                /* on b->putting, the engine refused it */
    KEEP_KEPT                    /* in the engine: deleted when it ends */
};

struct brec {
    struct faas_list link;       /* its key's queue while queued; b->putting */
    struct faas_list held_link;  /* b->held until it ends */
    struct faas_batcher *b;
    struct bkey *key;
    json_t *rec;
    size_t bytes;                /* serialised size */
    uint64_t emitted_ns;
    uint64_t seq;                /* arrival order in the mapping */
    int refused_rc;              /* KEEP_REFUSED: the engine's answer */
    enum brec_keep keep;
    struct faas_emit_wait *wait; /* KEEP_PUTTING: owed the put's answer */
};

struct bbatch {
    struct faas_list link;       /* b->retry (by wake time) or b->inflight */
    struct faas_batcher *b;
    struct bbatch *next;         /* ordered kinds: runs when this one ends */
    struct brec **recs;
    size_t n;
    uint32_t retries;            /* retries granted so far */
    uint32_t invokes;            /* invocations its records took part in */
    uint64_t wake_ns;
    int last_status;             /* of the last attempt; 0: partial failure */
    int ran;                     /* the last attempt produced a result */
    char request_id[FAAS_REQUEST_ID_SIZE];
};

struct faas_batcher {
    struct faas_runtime *rt;
    struct faas_mapping *m;      /* NULL once detached */
    unsigned refs;
    enum faas_src_kind kind;
    int ordered;
    int mapping_id;
    char function[FAAS_NAME_MAX + 1];
    char *on_failure;
    char *key_path;
    uint32_t batch_size, window_ms, parallel;
    int32_t max_retries;
    uint64_t max_age_ms;
    int bisect, report_items;

    struct faas_htable keys;     /* ordered kinds: struct bkey by name */
    struct bkey all;             /* unordered kinds: the one queue */
    struct faas_list avail;
    size_t navail;
    uint64_t next_seq;
    char *name;                  /* the mapping's durable name */
    struct faas_list putting;    /* records waiting for the engine, by seq */

    struct faas_list retry;      /* batches waiting for their wake time */
    struct faas_list inflight;
    uint32_t ninflight;

    struct faas_list held;       /* every record not yet ended, oldest first */
    uint64_t nheld;
    size_t nbytes;               /* serialised size of the held records */
    size_t max_bytes;            /* nbytes' bound */
    uint64_t nrecords, nfailed;  /* counters for faas_metrics_write */

    struct event *kick_ev, *timer_ev;
    int timer_armed;
    uint64_t timer_at;
};

static inline int faas_batch_stopping(const struct faas_runtime *rt)
{
    return rt->closing || rt->free_requested;
}

static inline void faas_batcher_ref(struct faas_batcher *b)
{
    b->refs++;
}

/* Has the loop look at b soon (never inside the caller). */
static inline void faas_batcher_kick(struct faas_batcher *b)
{
    if (b->kick_ev)
        event_active(b->kick_ev, EV_TIMEOUT, 1);
}

/* A status as a log record names it; 0 is a partial batch failure. */
static inline const char *faas_batch_err_name(int status)
{
    const char *n = faas_strerror_name(status);
    return status == 0 ? "partial batch failure" : n ? n : "EUNKNOWN";
}

/* When the head record of a non-empty queue was taken (runtime clock). */
static inline uint64_t faas_bkey_head_ns(const struct bkey *k)
{
    return FAAS_CONTAINER_OF(k->queue.next, struct brec, link)->emitted_ns;
}

/* ---- batch.c --------------------------------------------------------- */
/* Drops a reference; the last one frees b. */
void faas_batcher_unref(struct faas_batcher *b);
/* Arms b's timer for its next retry or batch window. */
void faas_batch_arm_timer(struct faas_batcher *b, uint64_t now);

/* ---- batch_records.c ------------------------------------------------- */
/* Takes k off b->avail (no-op when it is not on it). */
void faas_bkey_avail_remove(struct faas_batcher *b, struct bkey *k);
/* Puts k on b->avail, or takes it off, after its queue or batches changed. */
void faas_bkey_avail_update(struct faas_batcher *b, struct bkey *k);
/* Frees an ordered key that holds nothing. */
void faas_bkey_maybe_free(struct faas_batcher *b, struct bkey *k);
/* A record of b for `record` (taken over on success) with its key, not yet
 * held or queued; NULL when out of memory. */
struct brec *faas_brec_new(struct faas_batcher *b, json_t *record, size_t bytes);
void faas_brec_hold(struct faas_batcher *b, struct brec *r);
/* A held record joins its key's queue: from now on it may be batched. */
void faas_brec_queue(struct faas_batcher *b, struct brec *r, uint64_t now);
/* Hands a new record to the durable engine; w (or NULL) is owed the
 * answer. Returns 0, or FAAS_ENOMEM with r freed. */
int faas_brec_put(struct faas_batcher *b, struct brec *r, struct faas_emit_wait *w);
/* Frees a held record that was never queued again. */
void faas_brec_unhold(struct faas_batcher *b, struct brec *r);
/* A record leaves its batch for good (delivered, failed or dropped). */
void faas_brec_end(struct faas_batcher *b, struct brec *r);
/* Loads and queues what an earlier run kept under b's name: 0, or what
 * faas_durable_records_load returned (then faas_batch_unload undoes it). */
int faas_batch_load(struct faas_batcher *b);
void faas_batch_unload(struct faas_batcher *b);
/* b lets its name go (faas_unmap): its last seq is remembered for the next
 * mapping of the name in this process (batch_records.c says why). */
void faas_batch_mark_seq(struct faas_batcher *b);

#endif /* FAAS_BATCH_INT_H */

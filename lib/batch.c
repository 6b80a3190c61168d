/*
 * batch.c - Lambda's event-source-mapping semantics for host-fed sources
 * (s3:, dynamodb:, stream:, queue:): batching, per-key ordering, retries
 * with backoff, record age, bisection, partial batch responses and the
 * on-failure destination.
 *
 * Each host-fed mapping owns one struct faas_batcher. faas_emit() hands it
 * shaped, filtered records (faas_batcher_add); nothing is invoked inside
 * that call: batches leave from the loop (the kick event, the timer, and
 * faas_batcher_poll for tests), through faas_invoke (request/response) on
 * the mapped function, looked up by name at send time.
 *
 * Records wait in per-key FIFO queues. Stream and DynamoDB mappings key
 * each record by its partition key (opts.partition_key_path, walked by
 * json_path.c as an idempotency key_path is, or the source's own); a key
 * is available while none of its records is in a batch (in flight,
 * waiting for a retry, or waiting behind the other half of a bisected
 * batch), so one key has one batch at a time and its records stay in
 * order, while different keys run in parallel. S3 and queue
 * mappings have one queue that is always available. Available keys are on
 * `avail`, oldest head record first; navail counts their records. A batch
 * takes up to batch_size available records when that many are available,
 * or when the oldest has waited batch_window_ms; at most parallelization
 * invocations are in flight per mapping.
 *
 * A batch that fails is retried after a backoff (1 s doubling to 60 s, on
 * the runtime's clock) up to max_retries times (-1: no limit), split in two
 * first with bisect_on_error (for ordered kinds the second half waits for
 * the first: it is chained behind it and scheduled when the first ends).
 * Records older than max_record_age_ms are not sent or retried. With
 * report_batch_item_failures, a successful result may name the records that
 * failed: only those are retried (ordered kinds: from the first failed one
 * on). Records that fail for good go to the on_failure function with a
 * Lambda-style record, and always to the log as a FAAS_LOG_ASYNC "failure".
 *
 * Bounds and drain: a mapping holds at most faas_mapping_max_bytes (64 MiB)
 * of records, each counted as faas_emit measured it for the payload limit;
 * past it faas_emit is refused for that mapping. Every record is also on
 * `held`, in arrival order, until it ends, for the metrics' backlog and
 * oldest age.
 * While the runtime drains, batch windows are closed (a batch leaves as
 * soon as records are available), retries keep their backoff, batches are
 * invoked and their on-failure records sent even though the public entry
 * points refuse new work (this is work accepted before), and every record
 * that ends tells the drain (faas_drain_note).
 *
 * Durability (rt->durable, durable.h; the records' side is batch_records.c,
 * the structures are in batch_int.h): a new record is handed to the engine
 * (faas_durable_record_put, under the mapping's name, seq increasing per
 * mapping) and waits, held but not queued, on `putting` until the engine
 * answers; answers settle from the head of that list, so records reach
 * their keys' queues in seq order: committed, the record is queued (and
 * the faas_emit_wait of faas_emit_with, if any, is told); refused, it is
 * dropped and logged. A record that ends (delivered, failed for good,
 * dropped by unmapping) is deleted (faas_durable_record_del). At new, the
 * records an earlier run kept under the name are loaded and queued first,
 * with their seq and their age, and new ones number after them. When the
 * runtime closes, nothing is deleted and nothing logged as failed: what
 * waits stays kept for the next start. Without an engine none of this
 * runs: records are queued at once, as they always were.
 *
 * Lifetime: the mapping holds one reference, every batch in flight one,
 * every put not yet answered one, and an entry from the loop one.
 * faas_batcher_free() detaches the batcher from its mapping (b->m = NULL),
 * frees its events and ends what waits; results of batches still in flight
 * are then dropped when they arrive, and so are records whose put is still
 * unanswered. User code (log, on-failure enqueue, an idempotency store
 * answering inside faas_invoke) may unmap the mapping: every path moves its
 * batches onto the batcher's lists before it calls out, and checks for
 * detachment after.
 *
 * Called by source.c (a batcher per host-fed mapping: new, add, free, stats),
 * runtime.c (close the windows and count what is left for a drain) and
 * metrics.c (the backlog counters). May call: batch_records.c (the records,
 * batch_int.h), invoke.c's entry (faas_invoke_fn), async.c for on-failure
 * records (faas_async_invoke_internal), json_path.c, clock.c, json.c,
 * random.c, metrics.c's log records and runtime.c's loop services; jansson
 * and libevent's events. batch_records.c tells faas_emit_with's wait
 * through the `note` callback the wait carries.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "batch_int.h"
#include "faas_int.h"
#include "json_path.h"

#define BATCH_SIZE_MAX 10000u
#define PARALLEL_MAX 10u
#define BACKOFF_FIRST_MS 1000u
#define BACKOFF_CAP_MS 60000u
#define MS 1000000u

size_t faas_mapping_max_bytes = FAAS_MAPPING_MAX_BYTES;

enum fail_cond { C_RETRIES = 0, C_AGE, C_NOFN, C_REMOVED };

static const char *const cond_names[] = { "RetryAttemptsExhausted", "RecordAgeExceeded",
                                          "FunctionNotFound", "MappingRemoved" };

/* ---- small helpers -------------------------------------------------- */

static void destroy(struct faas_batcher *b)
{
    struct faas_hnode *n, *next;
    for (n = b->keys.buckets ? faas_htable_first(&b->keys) : NULL; n; n = next) {
        next = faas_htable_next(&b->keys, n);
        free(FAAS_CONTAINER_OF(n, struct bkey, hnode));
    }
    faas_htable_fini(&b->keys);
    free(b->name);
    free(b->on_failure);
    free(b->key_path);
    free(b);
}

void faas_batcher_unref(struct faas_batcher *b)
{
    if (--b->refs == 0)
        destroy(b);
}

/* The identifier batchItemFailures names a record by: a new reference to
 * a string, or NULL. */
static json_t *rec_id(const struct faas_batcher *b, json_t *rec)
{
    const char *path = b->kind == FAAS_SRC_QUEUE      ? "messageId"
                       : b->kind == FAAS_SRC_STREAM   ? "kinesis.sequenceNumber"
                       : b->kind == FAAS_SRC_DYNAMODB ? "dynamodb.SequenceNumber"
                                                      : "s3.object.sequencer";
    json_t *id = faas_json_path(rec, path);
    if (json_is_string(id))
        return id;
    json_decref(id);
    return NULL;
}

/* ---- batches ------------------------------------------------------- */

static struct bbatch *batch_alloc(struct faas_batcher *b, size_t cap)
{
    struct bbatch *bt = faas_calloc(1, sizeof *bt);
    if (!bt)
        return NULL;
    bt->recs = faas_malloc((cap ? cap : 1) * sizeof *bt->recs);
    if (!bt->recs) {
        free(bt);
        return NULL;
    }
    bt->b = b;
    faas_list_init(&bt->link);
    return bt;
}

static void batch_free(struct bbatch *bt)
{
    free(bt->recs);
    free(bt);
}

/* Drops a batch and what is chained behind it, records and all, quietly. */
static void batch_drop(struct faas_batcher *b, struct bbatch *bt)
{
    while (bt) {
        struct bbatch *next = bt->next;
        size_t i;
        for (i = 0; i < bt->n; i++)
            faas_brec_end(b, bt->recs[i]);
        batch_free(bt);
        bt = next;
    }
}

static void retry_insert(struct faas_batcher *b, struct bbatch *bt)
{
    struct faas_list *e = b->retry.prev;
    while (e != &b->retry && FAAS_CONTAINER_OF(e, struct bbatch, link)->wake_ns > bt->wake_ns)
        e = e->prev;
    faas_list_insert_head(e, &bt->link); /* after e */
}

static uint64_t backoff_ns(uint32_t retries)
{
    uint64_t ms = BACKOFF_FIRST_MS;
    uint32_t i;
    for (i = 1; i < retries && ms < BACKOFF_CAP_MS; i++)
        ms *= 2;
    return (ms > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : ms) * MS;
}

/* A batch ended: what was chained behind it may start now. */
static void batch_end(struct faas_batcher *b, struct bbatch *bt, uint64_t now)
{
    struct bbatch *next = bt->next;
    bt->next = NULL;
    batch_free(bt);
    if (!next)
        return;
    if (b->m) {
        next->wake_ns = now;
        retry_insert(b, next);
    } else {
        batch_drop(b, next);
    }
}

/* The statusCode of an attempt that did not produce a result. */
static int sync_status_code(int status)
{
    switch (status) {
    case FAAS_ENOENT:
        return 404;
    case FAAS_ETHROTTLED:
        return 429;
    case FAAS_ETOOBIG:
        return 413;
    default:
        return 500;
    }
}

/* Lambda's on-failure destination record. New reference, or NULL. */
static json_t *failure_record(struct faas_batcher *b, const struct bbatch *bt,
                              enum fail_cond cond, const char *request_id)
{
    struct faas_runtime *rt = b->rt;
    char ts[96], arn[FAAS_NAME_MAX + 128];
    json_t *rec, *resp, *records;
    size_t i;

    faas_iso_time_ms(faas_wall_ns(rt), ts, sizeof ts);
    snprintf(arn, sizeof arn, "arn:aws:lambda:%s:000000000000:function:%s",
             rt->opts.region, b->function);
    /* 200 for an attempt that ran (functionError says it failed), the
     * refusal's code for one that did not, 0 when none was made. */
    resp = json_pack("{s:i, s:s}", "statusCode",
                     bt->ran ? 200 : bt->last_status ? sync_status_code(bt->last_status) : 0,
                     "executedVersion", "$LATEST");
    if (resp && bt->ran && bt->last_status != 0)
        json_object_set_new(resp, "functionError", json_string("Unhandled"));
    records = json_array();
    for (i = 0; records && i < bt->n; i++)
        json_array_append(records, bt->recs[i]->rec);
    rec = json_pack("{s:{s:s, s:s, s:s, s:I}, s:o, s:s, s:s}", "requestContext", "requestId",
                    request_id, "functionArn", arn, "condition", cond_names[cond],
                    "approximateInvokeCount", (json_int_t)bt->invokes, "responseContext", resp,
                    "version", "1.0", "timestamp", ts);
    if (rec && bt->n && (b->kind == FAAS_SRC_STREAM || b->kind == FAAS_SRC_DYNAMODB)) {
        json_t *first = bt->recs[0]->rec, *last = bt->recs[bt->n - 1]->rec;
        json_t *info = json_pack("{s:s, s:o?, s:o?, s:I, s:s?}", "shardId",
                                 "shardId-000000000000", "startSequenceNumber",
                                 rec_id(b, first), "endSequenceNumber", rec_id(b, last),
                                 "batchSize", (json_int_t)bt->n, "streamArn",
                                 json_string_value(json_object_get(first, "eventSourceARN")));
        json_object_set_new(rec, b->kind == FAAS_SRC_STREAM ? "KinesisBatchInfo"
                                                            : "DDBStreamBatchInfo",
                            info);
    }
    if (rec && json_object_set_new(rec, "Records", records) == 0)
        return rec;
    if (!rec)
        json_decref(records);
    json_decref(rec);
    return NULL;
}

/*
 * The records of bt failed for good: the on-failure destination (not while
 * the runtime closes), a log record, then the records end. What was chained
 * behind bt is scheduled first, so user code finds consistent lists.
 */
static void fail_send(struct faas_batcher *b, struct bbatch *bt, enum fail_cond cond,
                      uint64_t now);

static void fail_final(struct faas_batcher *b, struct bbatch *bt, enum fail_cond cond,
                       uint64_t now)
{
    size_t i;

    fail_send(b, bt, cond, now);
    for (i = 0; i < bt->n; i++)
        faas_brec_end(b, bt->recs[i]);
    batch_free(bt);
}

/* fail_final's record to on_failure and its log line; the records stay. */
static void fail_send(struct faas_batcher *b, struct bbatch *bt, enum fail_cond cond,
                      uint64_t now)
{
    struct faas_runtime *rt = b->rt;
    char id[FAAS_REQUEST_ID_SIZE], dest_id[FAAS_REQUEST_ID_SIZE];
    struct bbatch *next = bt->next;
    const char *sent = "";
    char note[FAAS_NAME_MAX + 64] = "";
    json_t *rec;
    int rc;

    bt->next = NULL;
    if (next) {
        if (b->m) {
            next->wake_ns = now;
            retry_insert(b, next);
        } else {
            batch_drop(b, next);
        }
    }
    if (bt->ran)
        memcpy(id, bt->request_id, sizeof id);
    else
        faas_request_id(rt, id);
    b->nfailed += bt->n;
    if (b->on_failure && !faas_batch_stopping(rt)) {
        rec = failure_record(b, bt, cond, id);
        rc = rec ? faas_async_invoke_internal(rt, b->on_failure, rec, dest_id) : FAAS_ENOMEM;
        json_decref(rec);
        if (rc == 0)
            snprintf(note, sizeof note, "; sent to %s", b->on_failure);
        else
            snprintf(note, sizeof note, "; on_failure %s not invoked: %s", b->on_failure,
                     faas_batch_err_name(rc));
        sent = note;
    }
    faas_log_event(b->rt, FAAS_LOG_ASYNC, b->function, id, "failure", NULL,
                   "mapping %d: %zu record%s failed for good (%s, %s)%s", b->mapping_id, bt->n,
                   bt->n == 1 ? "" : "s", cond_names[cond],
                   bt->invokes ? faas_batch_err_name(bt->last_status) : "never invoked", sent);
}

/* Moves the records of bt whose age ran out into a new batch (or NULL). */
static struct bbatch *split_expired(struct faas_batcher *b, struct bbatch *bt, uint64_t now)
{
    struct bbatch *dead = NULL;
    uint64_t max = b->max_age_ms;
    size_t i, keep = 0;

    if (max == 0)
        return NULL;
    for (i = 0; i < bt->n; i++) {
        struct brec *r = bt->recs[i];
        int old = max <= (UINT64_MAX - r->emitted_ns) / MS && now >= r->emitted_ns + max * MS;
        if (old && !dead && !(dead = batch_alloc(b, bt->n)))
            old = 0; /* out of memory: it gets another attempt */
        if (old) {
            dead->recs[dead->n++] = r;
        } else {
            bt->recs[keep++] = r;
        }
    }
    bt->n = keep;
    if (dead) {
        dead->invokes = bt->invokes;
        dead->last_status = bt->last_status;
        dead->ran = bt->ran;
        memcpy(dead->request_id, bt->request_id, sizeof dead->request_id);
    }
    return dead;
}

/* A copy of bt's bookkeeping with recs[from..to). */
static struct bbatch *batch_slice(struct faas_batcher *b, struct bbatch *bt, size_t from,
                                  size_t to)
{
    struct bbatch *s = batch_alloc(b, to - from);
    if (!s)
        return NULL;
    memcpy(s->recs, bt->recs + from, (to - from) * sizeof *s->recs);
    s->n = to - from;
    s->retries = bt->retries;
    s->invokes = bt->invokes;
    s->last_status = bt->last_status;
    s->ran = bt->ran;
    memcpy(s->request_id, bt->request_id, sizeof s->request_id);
    return s;
}

/*
 * Splits bt in two halves, both scheduled at `wake`: for ordered kinds the
 * second waits behind the first. Returns 0, or FAAS_ENOMEM with bt intact.
 */
static int bisect(struct faas_batcher *b, struct bbatch *bt, uint64_t wake)
{
    size_t half = bt->n / 2;
    struct bbatch *h2 = batch_slice(b, bt, half, bt->n);

    if (!h2)
        return FAAS_ENOMEM;
    bt->n = half;
    bt->wake_ns = wake;
    h2->wake_ns = wake;
    if (b->ordered) {
        h2->next = bt->next;
        bt->next = h2;
        retry_insert(b, bt);
    } else {
        retry_insert(b, bt);
        retry_insert(b, h2);
    }
    return 0;
}

/*
 * An attempt of bt failed with `status` (0: named failures of a partial
 * batch response, in bt already). Retries after a backoff, bisecting first
 * if allowed, or fails the batch for good.
 */
static void batch_failed(struct faas_batcher *b, struct bbatch *bt, int status, int may_bisect,
                         uint64_t now)
{
    uint64_t wake;

    bt->last_status = status;
    if (b->max_retries >= 0 && bt->retries >= (uint32_t)b->max_retries) {
        fail_final(b, bt, C_RETRIES, now);
        return;
    }
    bt->retries++;
    wake = now + backoff_ns(bt->retries);
    if (may_bisect && b->bisect && bt->n > 1 && bisect(b, bt, wake) == 0)
        return;
    bt->wake_ns = wake;
    retry_insert(b, bt);
}

/* ---- results -------------------------------------------------------- */

/*
 * Reads {"batchItemFailures":[{"itemIdentifier":...}]} into flags. Returns
 * the number of failed records (0: all succeeded), or -1 for a response
 * that names no record of the batch, which fails the whole batch as Lambda
 * does.
 */
static int item_failures(const struct faas_batcher *b, const struct bbatch *bt, json_t *payload,
                         unsigned char *flags)
{
    json_t *list = json_is_object(payload) ? json_object_get(payload, "batchItemFailures") : NULL;
    size_t i, j;
    int nfailed = 0;

    if (!list || json_is_null(list))
        return 0;
    if (!json_is_array(list))
        return -1;
    for (i = 0; i < json_array_size(list); i++) {
        const char *want = json_string_value(json_object_get(json_array_get(list, i),
                                                             "itemIdentifier"));
        if (!want || !want[0])
            return -1;
        for (j = 0; j < bt->n; j++) {
            json_t *id = rec_id(b, bt->recs[j]->rec);
            int same = id && strcmp(json_string_value(id), want) == 0;
            json_decref(id);
            if (same)
                break;
        }
        if (j == bt->n)
            return -1;
        if (!flags[j]) {
            flags[j] = 1;
            nfailed++;
        }
    }
    return nfailed;
}

/* A partial batch response: the records it did not name are done. */
static void batch_partial(struct faas_batcher *b, struct bbatch *bt, const unsigned char *flags,
                          uint64_t now)
{
    size_t i, keep = 0, first = bt->n;

    for (i = 0; i < bt->n; i++)
        if (flags[i] && first == bt->n)
            first = i;
    for (i = 0; i < bt->n; i++) {
        /* Ordered sources resume from the first failed record, as Lambda
         * checkpoints a stream; others retry only what failed. */
        int retry = b->ordered ? i >= first : flags[i] != 0;
        if (retry)
            bt->recs[keep++] = bt->recs[i];
        else
            faas_brec_end(b, bt->recs[i]);
    }
    bt->n = keep;
    batch_failed(b, bt, 0, 0, now);
}

static void batch_done(const struct faas_result *res, void *arg)
{
    struct bbatch *bt = arg;
    struct faas_batcher *b = bt->b;
    struct faas_runtime *rt = b->rt;
    unsigned char *flags = NULL;
    uint64_t now;
    size_t i;
    int nfailed = 0;

    faas_list_remove(&bt->link);
    b->ninflight--;
    memcpy(bt->request_id, res->request_id, sizeof bt->request_id);
    bt->ran = 1;
    bt->last_status = res->status;
    if (!b->m || faas_batch_stopping(rt)) {
        /* Unmapped or closing: nobody wants the outcome any more. */
        batch_drop(b, bt);
        faas_batcher_unref(b);
        return;
    }
    now = faas_now_ns(rt);
    if (res->status != 0) {
        batch_failed(b, bt, res->status, 1, now);
    } else if (b->report_items && (flags = faas_calloc(bt->n, 1)) != NULL &&
               (nfailed = item_failures(b, bt, res->payload, flags)) != 0) {
        if (nfailed < 0)
            batch_failed(b, bt, 0, 0, now);
        else
            batch_partial(b, bt, flags, now);
    } else {
        /* Success (also when the flags could not be allocated: the result
         * cannot be read, and a retry would run what may have succeeded). */
        for (i = 0; i < bt->n; i++)
            faas_brec_end(b, bt->recs[i]);
        batch_end(b, bt, now);
    }
    free(flags);
    faas_batcher_kick(b);
    faas_batcher_unref(b);
}

/* ---- sending -------------------------------------------------------- */

/* faas_invoke for a batch, which is work accepted before: not refused
 * while the runtime drains. Takes nothing over. */
static int invoke_batch(struct faas_batcher *b, json_t *event, struct bbatch *bt)
{
    struct faas_runtime *rt = b->rt;
    size_t limit = rt->opts.max_sync_payload;
    struct faas_fn *fn = faas_fn_lookup(rt, b->function);
    json_t *ev;
    int rc;

    if (!fn)
        return FAAS_ENOENT;
    if (faas_json_size(event, limit) > limit)
        return FAAS_ETOOBIG;
    /* A worker must not share the records the batcher still holds. */
    ev = fn->opts.isolation == FAAS_ISOLATION_THREAD ? json_deep_copy(event)
                                                    : json_incref(event);
    if (!ev)
        return FAAS_ENOMEM;
    faas_rt_enter(rt); /* an idempotency store may answer inside */
    rc = faas_invoke_fn(rt, fn, ev, NULL, NULL, batch_done, bt);
    faas_rt_leave(rt);
    return rc;
}

/* Invokes the function with bt. The caller holds a reference to b. */
static void batch_send(struct faas_batcher *b, struct bbatch *bt, uint64_t now)
{
    struct faas_runtime *rt = b->rt;
    json_t *event = json_object(), *records = json_array();
    size_t i;
    int rc;

    for (i = 0; records && i < bt->n; i++)
        if (json_array_append(records, bt->recs[i]->rec) != 0)
            break;
    if (!event || !records || i < bt->n ||
        json_object_set_new(event, "Records", records) != 0) {
        if (!event)
            json_decref(records);
        json_decref(event);
        bt->invokes++;
        bt->ran = 0;
        batch_failed(b, bt, FAAS_ENOMEM, 0, now);
        return;
    }
    /* On the lists before the call: an idempotency store may answer inside
     * it, and the log callback may then unmap the mapping. */
    faas_list_insert_tail(&b->inflight, &bt->link);
    b->ninflight++;
    faas_batcher_ref(b);
    bt->invokes++;
    rc = invoke_batch(b, event, bt);
    json_decref(event);
    if (rc == 0)
        return;
    faas_list_remove(&bt->link);
    b->ninflight--;
    bt->invokes--;
    bt->ran = 0;
    bt->last_status = rc;
    if (!b->m || faas_batch_stopping(rt)) {
        batch_drop(b, bt);
    } else if (rc == FAAS_ENOENT) {
        fail_final(b, bt, C_NOFN, now);
    } else if (rc == FAAS_ETHROTTLED) {
        /* Nothing ran: wait without using up a retry. */
        bt->wake_ns = now + backoff_ns(1);
        retry_insert(b, bt);
    } else if (rc == FAAS_ETOOBIG && bt->n > 1) {
        /* Over the payload limit: halves go at once, no retry used. */
        if (bisect(b, bt, now) != 0)
            fail_final(b, bt, C_RETRIES, now);
    } else if (rc == FAAS_ETOOBIG) {
        fail_final(b, bt, C_RETRIES, now);
    } else {
        bt->invokes++; /* a refused attempt still counts against retries */
        batch_failed(b, bt, rc, 0, now);
    }
    faas_batcher_unref(b);
}

/* Takes up to batch_size available records into a new batch, or NULL. */
static struct bbatch *batch_form(struct faas_batcher *b)
{
    size_t cap = b->navail < b->batch_size ? b->navail : b->batch_size;
    struct bbatch *bt = batch_alloc(b, cap);

    if (!bt)
        return NULL;
    while (bt->n < cap && !faas_list_empty(&b->avail)) {
        struct bkey *k = FAAS_CONTAINER_OF(b->avail.next, struct bkey, avail_link);
        faas_bkey_avail_remove(b, k);
        while (k->nqueued > 0 && bt->n < cap) {
            struct brec *r = FAAS_CONTAINER_OF(faas_list_pop_head(&k->queue), struct brec, link);
            k->nqueued--;
            k->outstanding++;
            bt->recs[bt->n++] = r;
        }
        faas_bkey_avail_update(b, k);
    }
    return bt;
}

void faas_batch_arm_timer(struct faas_batcher *b, uint64_t now)
{
    uint64_t next = UINT64_MAX;

    if (!b->timer_ev)
        return;
    if (!faas_list_empty(&b->retry))
        next = FAAS_CONTAINER_OF(b->retry.next, struct bbatch, link)->wake_ns;
    if (b->navail > 0 && b->window_ms > 0 && b->navail < b->batch_size && !b->rt->draining) {
        uint64_t w = faas_bkey_head_ns(FAAS_CONTAINER_OF(b->avail.next, struct bkey, avail_link)) +
                     (uint64_t)b->window_ms * MS;
        if (w < next)
            next = w;
    }
    faas_timer_rearm(b->timer_ev, &b->timer_armed, &b->timer_at, next, now);
}

/* Starts due retries and due batches while there is room. The caller holds
 * a reference to b and brackets user callbacks. */
static void pump(struct faas_batcher *b)
{
    struct faas_runtime *rt = b->rt;
    uint64_t now;

    if (!b->m || faas_batch_stopping(rt))
        return;
    now = faas_now_ns(rt);
    while (b->ninflight < b->parallel) {
        struct bbatch *bt = NULL, *dead;
        if (!faas_list_empty(&b->retry) &&
            FAAS_CONTAINER_OF(b->retry.next, struct bbatch, link)->wake_ns <= now) {
            bt = FAAS_CONTAINER_OF(faas_list_pop_head(&b->retry), struct bbatch, link);
        } else if (b->navail > 0 &&
                   (b->navail >= b->batch_size || b->window_ms == 0 || rt->draining ||
                    faas_bkey_head_ns(FAAS_CONTAINER_OF(b->avail.next, struct bkey, avail_link)) +
                            (uint64_t)b->window_ms * MS <=
                        now)) {
            bt = batch_form(b);
            if (!bt) {
                /* Out of memory: look again in a second. */
                if (b->timer_ev)
                    faas_timer_rearm(b->timer_ev, &b->timer_armed, &b->timer_at,
                                     now + 1000u * MS, now);
                return;
            }
        } else {
            break;
        }
        dead = split_expired(b, bt, now);
        if (bt->n == 0)
            batch_end(b, bt, now);
        else
            batch_send(b, bt, now);
        if (dead && b->m)
            fail_final(b, dead, C_AGE, now);
        else if (dead)
            batch_drop(b, dead);
        if (!b->m || faas_batch_stopping(rt))
            return;
    }
    faas_batch_arm_timer(b, now);
}

static void pump_entry(struct faas_batcher *b)
{
    struct faas_runtime *rt = b->rt;
    faas_rt_enter(rt);
    faas_batcher_ref(b);
    pump(b);
    faas_batcher_unref(b);
    faas_rt_leave(rt);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump_entry(arg);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_batcher *b = arg;
    (void)fd;
    (void)what;
    b->timer_armed = 0;
    pump_entry(b);
}

/* ---- the interface -------------------------------------------------- */

int faas_batcher_new(struct faas_mapping *m)
{
    struct faas_runtime *rt;
    struct faas_batcher *b;
    const struct faas_map_opts *o;
    int rc;

    if (!m || !m->rt || m->batcher)
        return FAAS_EINVAL;
    rt = m->rt;
    o = &m->opts;
    if (m->kind != FAAS_SRC_S3 && m->kind != FAAS_SRC_DYNAMODB && m->kind != FAAS_SRC_STREAM &&
        m->kind != FAAS_SRC_QUEUE)
        return FAAS_EINVAL;
    if (o->batch_size > BATCH_SIZE_MAX || o->parallelization > PARALLEL_MAX ||
        o->max_retries < -1)
        return FAAS_EINVAL;
    b = faas_calloc(1, sizeof *b);
    if (!b)
        return FAAS_ENOMEM;
    b->rt = rt;
    b->m = m;
    b->refs = 1;
    b->kind = m->kind;
    b->ordered = m->kind == FAAS_SRC_STREAM || m->kind == FAAS_SRC_DYNAMODB;
    b->mapping_id = m->id;
    memcpy(b->function, m->function, sizeof b->function);
    b->function[FAAS_NAME_MAX] = '\0';
    b->batch_size = o->batch_size ? o->batch_size : 1;
    b->window_ms = o->batch_window_ms;
    b->parallel = o->parallelization ? o->parallelization : 1;
    b->max_retries = o->max_retries;
    b->max_age_ms = o->max_record_age_ms;
    b->bisect = o->bisect_on_error;
    b->report_items = o->report_batch_item_failures;
    b->max_bytes = faas_mapping_max_bytes;
    faas_list_init(&b->avail);
    faas_list_init(&b->retry);
    faas_list_init(&b->inflight);
    faas_list_init(&b->held);
    faas_list_init(&b->putting);
    faas_list_init(&b->all.queue);
    faas_list_init(&b->all.avail_link);
    b->all.name = "";
    if (!(b->name = faas_strdup(m->name)) ||
        (o->on_failure && !(b->on_failure = faas_strdup(o->on_failure))) ||
        (o->partition_key_path && !(b->key_path = faas_strdup(o->partition_key_path))) ||
        faas_htable_init(&b->keys, 16) != 0 ||
        !(b->kick_ev = event_new(rt->base, -1, 0, kick_cb, b)) ||
        !(b->timer_ev = event_new(rt->base, -1, 0, timer_cb, b))) {
        if (b->kick_ev)
            event_free(b->kick_ev);
        destroy(b);
        return FAAS_ENOMEM;
    }
    if (rt->durable && (rc = faas_batch_load(b)) != 0) {
        faas_batch_unload(b);
        event_free(b->kick_ev);
        event_free(b->timer_ev);
        destroy(b);
        return rc;
    }
    m->batcher = b;
    return 0;
}

int faas_batcher_add(struct faas_mapping *m, json_t *record)
{
    return faas_batcher_add_sized(m, record, record ? faas_json_bytes(record) : 0, NULL);
}

int faas_batcher_add_sized(struct faas_mapping *m, json_t *record, size_t bytes,
                           struct faas_emit_wait *w)
{
    struct faas_batcher *b = m ? m->batcher : NULL;
    struct brec *r;

    if (!b || !record) {
        json_decref(record);
        return FAAS_EINVAL;
    }
    /* Records kept from an earlier run may hold more than the bound. */
    if (b->nbytes > b->max_bytes || bytes > b->max_bytes - b->nbytes) {
        json_decref(record);
        return FAAS_ETHROTTLED;
    }
    b->mapping_id = m->id; /* faas_map may number the mapping after new */
    r = faas_brec_new(b, record, bytes);
    if (!r) {
        json_decref(record);
        return FAAS_ENOMEM;
    }
    r->emitted_ns = faas_now_ns(b->rt);
    r->seq = ++b->next_seq;
    if (b->rt->durable)
        return faas_brec_put(b, r, w);
    faas_brec_hold(b, r);
    b->nrecords++;
    faas_brec_queue(b, r, r->emitted_ns);
    return 0;
}

/* Chunks of up to batch_size queued records, as batches, onto `out`. */
static void drain_key(struct faas_batcher *b, struct bkey *k, struct faas_list *out)
{
    struct bbatch *bt = NULL;
    struct faas_list *e;

    faas_bkey_avail_remove(b, k);
    while ((e = faas_list_pop_head(&k->queue)) != NULL) {
        struct brec *r = FAAS_CONTAINER_OF(e, struct brec, link);
        k->nqueued--;
        k->outstanding++;
        if (bt && bt->n == b->batch_size)
            bt = NULL;
        if (!bt && (bt = batch_alloc(b, b->batch_size)) != NULL)
            faas_list_insert_tail(out, &bt->link);
        if (bt) {
            bt->recs[bt->n++] = r;
        } else {
            /* Out of memory: this record is dropped without a destination. */
            faas_brec_end(b, r);
        }
    }
}

/*
 * The mapping is removed while records wait for the engine to keep them:
 * they were taken (faas_emit said so), so they go to on_failure now, with
 * those that waited in a batch. They stay on b->putting; their answer only
 * makes the engine forget them (putting_settle, with b->m NULL).
 */
static void send_putting(struct faas_batcher *b, uint64_t now)
{
    struct bbatch *bt = NULL;
    struct faas_list *e;

    for (e = b->putting.next; e != &b->putting; e = e->next) {
        if (bt && bt->n == b->batch_size) {
            fail_send(b, bt, C_REMOVED, now);
            batch_free(bt);
            bt = NULL;
        }
        if (!bt && !(bt = batch_alloc(b, b->batch_size)))
            return; /* out of memory: they end without a destination */
        bt->recs[bt->n++] = FAAS_CONTAINER_OF(e, struct brec, link);
    }
    if (bt) {
        fail_send(b, bt, C_REMOVED, now);
        batch_free(bt);
    }
}

void faas_batcher_free(struct faas_mapping *m)
{
    struct faas_batcher *b = m ? m->batcher : NULL;
    struct faas_list dead, *e;
    struct faas_hnode *kn, *knext;
    uint64_t now;
    int keep;

    if (!b)
        return;
    faas_batch_mark_seq(b);
    m->batcher = NULL;
    b->m = NULL;
    b->mapping_id = m->id;
    if (b->kick_ev)
        event_free(b->kick_ev);
    if (b->timer_ev)
        event_free(b->timer_ev);
    b->kick_ev = b->timer_ev = NULL;
    b->timer_armed = 0;

    /* Everything that waits, onto one list, before any user code runs. */
    faas_list_init(&dead);
    faas_list_splice(&dead, &b->retry);
    for (e = dead.next; e != &dead; e = e->next) {
        struct bbatch *bt = FAAS_CONTAINER_OF(e, struct bbatch, link);
        while (bt->next) {
            struct bbatch *n = bt->next;
            bt->next = n->next;
            n->next = NULL;
            faas_list_insert_head(e, &n->link); /* right after bt */
        }
    }
    for (e = b->inflight.next; e != &b->inflight; e = e->next) {
        struct bbatch *bt = FAAS_CONTAINER_OF(e, struct bbatch, link);
        while (bt->next) {
            struct bbatch *n = bt->next;
            bt->next = n->next;
            n->next = NULL;
            faas_list_insert_tail(&dead, &n->link);
        }
    }
    drain_key(b, &b->all, &dead);
    for (kn = faas_htable_first(&b->keys); kn; kn = knext) {
        knext = faas_htable_next(&b->keys, kn);
        drain_key(b, FAAS_CONTAINER_OF(kn, struct bkey, hnode), &dead);
    }
    now = faas_now_ns(b->rt);
    faas_batcher_ref(b);
    /* With a durable engine, the runtime's end removes nothing: what waits
     * stays kept for the next start, quietly. */
    keep = b->rt->durable && faas_batch_stopping(b->rt);
    if (!keep)
        send_putting(b, now);
    while ((e = faas_list_pop_head(&dead)) != NULL) {
        struct bbatch *bt = FAAS_CONTAINER_OF(e, struct bbatch, link);
        if (keep)
            batch_drop(b, bt);
        else
            fail_final(b, bt, C_REMOVED, now);
    }
    faas_batcher_unref(b); /* the walk's */
    faas_batcher_unref(b); /* the mapping's: batches in flight keep the rest alive */
}

void faas_batcher_poll(struct faas_runtime *rt)
{
    struct faas_batcher **bs;
    struct faas_list *e;
    size_t n = 0, cap = 0, i;

    if (!rt || faas_batch_stopping(rt) || !rt->mappings.next)
        return;
    for (e = rt->mappings.next; e != &rt->mappings; e = e->next)
        cap++;
    if (cap == 0)
        return;
    /* A snapshot: callbacks may unmap while we walk. */
    bs = faas_calloc(cap, sizeof *bs);
    if (!bs)
        return;
    for (e = rt->mappings.next; e != &rt->mappings && n < cap; e = e->next) {
        struct faas_mapping *m = FAAS_CONTAINER_OF(e, struct faas_mapping, link);
        if (m->batcher) {
            faas_batcher_ref(m->batcher);
            bs[n++] = m->batcher;
        }
    }
    faas_rt_enter(rt);
    for (i = 0; i < n; i++)
        if (!faas_batch_stopping(rt))
            pump(bs[i]);
    for (i = 0; i < n; i++)
        faas_batcher_unref(bs[i]);
    free(bs);
    faas_rt_leave(rt);
}

void faas_batcher_drain(struct faas_runtime *rt)
{
    struct faas_list *e;
    for (e = rt->mappings.next; e != &rt->mappings; e = e->next) {
        struct faas_mapping *m = FAAS_CONTAINER_OF(e, struct faas_mapping, link);
        if (m->batcher && !m->dead)
            faas_batcher_kick(m->batcher);
    }
}

uint64_t faas_batcher_pending(const struct faas_mapping *m)
{
    const struct faas_batcher *b = m->batcher;
    const struct faas_list *e;
    uint64_t n;

    if (!b)
        return 0;
    n = b->nheld;
    /* Records in a running invocation count as that invocation. */
    for (e = b->inflight.next; e != &b->inflight; e = e->next) {
        const struct bbatch *bt = FAAS_CONTAINER_OF(e, struct bbatch, link);
        n -= bt->n;
    }
    return n;
}

void faas_batcher_stats_get(const struct faas_mapping *m, uint64_t now,
                            struct faas_mapping_stats *out)
{
    const struct faas_batcher *b = m->batcher;

    memset(out, 0, sizeof *out);
    if (!b)
        return;
    out->records = b->nrecords;
    out->failed = b->nfailed;
    out->backlog = b->nheld;
    out->bytes = b->nbytes;
    out->max_bytes = b->max_bytes;
    if (!faas_list_empty(&b->held)) {
        const struct brec *r = FAAS_CONTAINER_OF(b->held.next, struct brec, held_link);
        if (now > r->emitted_ns)
            out->oldest_age_ns = now - r->emitted_ns;
    }
}

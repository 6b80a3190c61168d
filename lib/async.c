/*
 * async.c - asynchronous (event) invocation, as Lambda's: per-function
 * queues, retries with backoff and jitter, event age, queue overflow,
 * destinations and dead letters.
 *
 * faas_invoke_async() checks the call, deep-copies the event, gives it the
 * request id every attempt will keep, queues it in its function's `struct
 * faas_async` and returns (Lambda's 202). It never starts anything itself:
 * attempts start from the loop (the kick event, the retry timer, and
 * faas_async_poll for tests) through the ordinary pipeline, faas_invoke_fn(),
 * so admission, throttling, idempotency, metrics and REPORT records are those
 * of any invocation.
 *
 * An accepted event is in exactly one place:
 *   ready    due to start, in acceptance order; while the pool throttles the
 *            function (a->blocked) the head waits for on_capacity (the
 *            hook it sets in fn->on_capacity: the pool released an
 *            instance) or the timer;
 *   delayed  waiting for its retry time, sorted by that time;
 *   running  one attempt in flight: attempt_cb brings it back;
 *   done     decided inside a host call (overflow) and delivered from the
 *            loop, so no callback runs inside faas_invoke_async;
 * and also on `all`, in acceptance order, to find the oldest for
 * FAAS_OVERFLOW_DROP_OLDEST. max_queue bounds ready + delayed, and
 * max_queue_bytes their serialised size (counted by the walk that copies
 * the event, json.c: no serialisation): an event that would cross
 * either bound is refused (FAAS_ETHROTTLED; FAAS_ETOOBIG if it alone is
 * over the byte bound), or with FAAS_OVERFLOW_DROP_OLDEST the oldest
 * waiting events are dropped until it fits.
 *
 * Every event ends exactly once, in end_event(): on_complete, then the
 * on_success / on_failure destination (a new async event on the named
 * function, carrying Lambda's destination record; none while the runtime is
 * being freed), then dead_letter for failures. Each event holds a reference
 * to its function, so the state lives as long as any event does; teardown
 * and unregister end waiting events through faas_async_cancel_fn, and
 * in-flight ones through the FAAS_ECANCELED result the pool delivers.
 *
 * Times come from the runtime's clock: an event's age counts from its first
 * enqueue, and the libevent timer only says when to look again. Jitter comes
 * from a splitmix64 generator per function, seeded once from the runtime's
 * request-id generator: no system call per retry. max_event_age_ms 0 means
 * no age limit.
 *
 * With a durable engine (rt->durable, async_durable.c) every step is
 * written: an accepted event waits W_PENDING until its put commits, then
 * becomes ready and its on_accepted runs; an attempt starts only once the
 * engine has counted it (W_STARTING: ev->dattempts runs ahead of
 * ev->attempts, and a throttled start keeps its counted attempt for the
 * next try), at most max_concurrency (or 1024) counted ahead at once; a
 * retry's due time is written; the end is written after the callbacks, in
 * one transaction with the destination event it sends. Nothing ends with
 * FAAS_ECANCELED there: at teardown and unregister, events leave without
 * ending (faas_async_leave) and wait for the next start, or for the
 * function to be registered again (parked, faas_async_adopt). Without an
 * engine, on_accepted runs on the loop's next turn (a->notes).
 *
 * While the runtime drains, faas_invoke_async refuses new events
 * (FAAS_EDRAINING) but what was accepted goes on as usual: retries keep
 * their backoff, destinations are still sent (they end accepted events),
 * and every end tells the drain (faas_drain_note).
 *
 * Called by the host (faas_invoke_async, faas_async_poll, the stats),
 * source.c (a schedule's fires), lambda_api.c (InvocationType Event),
 * batch.c (a mapping's on-failure record, faas_async_invoke_internal),
 * runtime.c (configure at registration, cancel at unregister, pending for a
 * drain, free) and metrics.c (the queue counters). May call: invoke.c's
 * entry (faas_invoke_check, faas_invoke_fn) and idem.c's key check
 * (faas_idem_prepare, so a missing key is refused at enqueue, not in a dead
 * letter); async_durable.c; opts.c, metrics.c's log records, random.c,
 * clock.c, json.c, error.c and runtime.c's loop services; jansson and
 * libevent's events.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "async_int.h"
#include "durable.h"
#include "faas_int.h"
#include "opts.h"

#define ASYNC_BACKOFF_CAP_MS (15u * 60u * 1000u)

/* Ended event records a function keeps for its next events, at most: a
 * burst of events then costs no allocation of records in steady state, and
 * an idle function holds at most this many (about 200 bytes each). */
#define ASYNC_SPARE_MAX 1024u

/* max_queue_bytes 0: the default bound of the events waiting. */
#define ASYNC_QUEUE_BYTES ((size_t)64u * 1024u * 1024u)

static const char *const cond_names[] = { "Success", "RetriesExhausted", "EventAgeExceeded",
                                          "Throttled", "Canceled" };

/* ---- small helpers -------------------------------------------------- */

static uint64_t rng_next(struct faas_async *a)
{
    uint64_t z = (a->rng += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

const char *faas_async_err_name(int status)
{
    const char *n = faas_strerror_name(status);
    return n ? n : "EUNKNOWN";
}

/* Function errors are worth retrying; anything else ends the event. */
static int retryable(int status)
{
    return status == FAAS_EHANDLER || status == FAAS_ETIMEDOUT || status == FAAS_ECRASHED ||
           status == FAAS_EMEMLIMIT || status == FAAS_EINIT || status == FAAS_ETOOBIG;
}

static enum async_cond cond_of(int status)
{
    if (status == 0)
        return COND_SUCCESS;
    if (status == FAAS_ECANCELED)
        return COND_CANCELED;
    return COND_RETRIES;
}

int faas_async_stopping(const struct faas_fn *fn)
{
    const struct faas_runtime *rt = fn->rt;
    return rt->closing || rt->free_requested || fn->unregistered;
}

static int has_age_limit(const struct faas_async *a)
{
    return a->opts.max_event_age_ms != 0;
}

static uint64_t age_deadline(const struct faas_async *a, const struct async_ev *ev)
{
    uint64_t max = a->opts.max_event_age_ms;
    if (max > (UINT64_MAX - ev->enqueued_ns) / 1000000u)
        return UINT64_MAX;
    return ev->enqueued_ns + max * 1000000u;
}

static int expired(const struct faas_async *a, const struct async_ev *ev, uint64_t now)
{
    return has_age_limit(a) && now >= age_deadline(a, ev);
}

/* The status an event ends with when its time runs out. */
static int last_status(const struct async_ev *ev)
{
    return ev->last ? ev->last->status : FAAS_ETHROTTLED;
}

/*
 * A deep copy without jansson's loop detection, which formats a pointer and
 * fills a hash table for every object and array (most of the cost of a small
 * event). A cycle is caught by the depth bound instead. New reference, or
 * NULL (out of memory, too deep).
 */
#define ASYNC_COPY_DEPTH 2048

/* With `bytes` (may be NULL), also adds the copy's serialised size to it,
 * counted as faas_json_bytes does, in the same walk. */
static json_t *copy_json_sized(json_t *j, int depth, size_t *bytes)
{
    json_t *c, *v;
    const char *key;
    size_t i, n, key_len;

    if (depth > ASYNC_COPY_DEPTH)
        return NULL;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        if (!(c = json_object()))
            return NULL;
        n = json_object_size(j);
        if (bytes)
            *bytes += 2 + (n > 1 ? n - 1 : 0);
        json_object_keylen_foreach(j, key, key_len, v) {
            if (bytes)
                *bytes += faas_json_string_bytes(key, key_len) + 1;
            if (json_object_setn_new_nocheck(c, key, key_len,
                                             copy_json_sized(v, depth + 1, bytes)) != 0) {
                json_decref(c);
                return NULL;
            }
        }
        return c;
    case JSON_ARRAY:
        if (!(c = json_array()))
            return NULL;
        n = json_array_size(j);
        if (bytes)
            *bytes += 2 + (n > 1 ? n - 1 : 0);
        for (i = 0; i < n; i++) {
            if (json_array_append_new(c, copy_json_sized(json_array_get(j, i), depth + 1,
                                                         bytes)) != 0) {
                json_decref(c);
                return NULL;
            }
        }
        return c;
    case JSON_STRING:
        if (bytes)
            *bytes += faas_json_string_bytes(json_string_value(j), json_string_length(j));
        return json_stringn_nocheck(json_string_value(j), json_string_length(j));
    default:
        if (bytes)
            *bytes += faas_json_bytes(j);
        return json_copy(j); /* numbers; true, false and null are singletons */
    }
}

static json_t *copy_json(json_t *j, int depth)
{
    return copy_json_sized(j, depth, NULL);
}

static void on_capacity(struct faas_fn *fn);

static struct faas_async *async_new(struct faas_fn *fn)
{
    static const struct faas_async_opts defaults = FAAS_ASYNC_OPTS_INIT;
    struct faas_async *a = faas_calloc(1, sizeof *a);
    char seed[FAAS_REQUEST_ID_SIZE];
    size_t i;

    if (!a)
        return NULL;
    a->fn = fn;
    fn->on_capacity = on_capacity; /* the pool calls back, never us by name */
    a->opts = defaults;
    if (a->opts.max_queue_bytes == 0)
        a->opts.max_queue_bytes = ASYNC_QUEUE_BYTES;
    faas_list_init(&a->ready);
    faas_list_init(&a->delayed);
    faas_list_init(&a->running);
    faas_list_init(&a->done);
    faas_list_init(&a->all);
    faas_list_init(&a->durable);
    faas_list_init(&a->notes);
    /* One draw from the runtime's seeded generator: no system call. */
    faas_request_id(fn->rt, seed);
    a->rng = fn->hnode.hash;
    for (i = 0; seed[i]; i++)
        a->rng = (a->rng ^ (unsigned char)seed[i]) * UINT64_C(0x100000001B3);
    return a;
}

/* The function's state, made with the defaults if registration did not. */
static struct faas_async *async_get(struct faas_fn *fn)
{
    if (!fn->async)
        fn->async = async_new(fn);
    return fn->async;
}

static void kick_cb(evutil_socket_t fd, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);

int faas_async_events(struct faas_async *a)
{
    struct event_base *base = a->fn->rt->base;
    if (!a->kick_ev && !(a->kick_ev = event_new(base, -1, 0, kick_cb, a)))
        return FAAS_ENOMEM;
    if (!a->timer_ev && !(a->timer_ev = event_new(base, -1, 0, timer_cb, a)))
        return FAAS_ENOMEM;
    return 0;
}

/* Once per loop pass at most: event_active takes the base's lock. */
void faas_async_kick(struct faas_async *a)
{
    if (a->kick_ev && !a->kicked) {
        a->kicked = 1;
        event_active(a->kick_ev, EV_TIMEOUT, 1);
    }
}

/* A zeroed event record: a spare one, or a new one. */
struct async_ev *faas_async_ev_alloc(struct faas_async *a)
{
    struct async_ev *ev = a->spare;
    if (!ev)
        return faas_calloc(1, sizeof *ev);
    a->spare = ev->spare_next;
    a->nspare--;
    memset(ev, 0, sizeof *ev);
    return ev;
}

void faas_async_ev_free(struct async_ev *ev)
{
    struct faas_fn *fn = ev->fn;
    struct faas_async *a = fn->async;
    json_decref(ev->event);
    json_decref(ev->client_context);
    free(ev->trace_id);
    free(ev->idem_key);
    if (ev->last) {
        json_decref(ev->last->payload);
        free(ev->last);
    }
    if (a && a->nspare < ASYNC_SPARE_MAX && !faas_async_stopping(fn)) {
        ev->spare_next = a->spare;
        a->spare = ev;
        a->nspare++;
    } else {
        free(ev);
    }
    faas_fn_unref(fn);
}

/* Takes ev off its list; the waiting count follows. */
void faas_async_ev_unlink(struct faas_async *a, struct async_ev *ev)
{
    if (ev->where == W_READY || ev->where == W_DELAYED || ev->where == W_PENDING) {
        a->nwaiting--;
        a->nbytes -= ev->bytes;
    }
    if (ev->where == W_STARTING)
        a->nstarting--;
    faas_list_remove(&ev->link);
    ev->where = 0;
}

/* Into ready at its place in acceptance order: a new event at the tail, a
 * due retry searched from the head (it is usually older than what waits). */
void faas_async_ev_ready(struct faas_async *a, struct async_ev *ev, int is_new)
{
    struct faas_list *e = a->ready.next;
    /* The tail when it is no older than the youngest there: new events,
     * and those the engine hands back in the order they were accepted. */
    if (is_new || faas_list_empty(&a->ready) ||
        FAAS_CONTAINER_OF(a->ready.prev, struct async_ev, link)->enqueued_ns <= ev->enqueued_ns)
        e = &a->ready;
    while (e != &a->ready &&
           FAAS_CONTAINER_OF(e, struct async_ev, link)->enqueued_ns <= ev->enqueued_ns)
        e = e->next;
    faas_list_insert_tail(e, &ev->link); /* before e */
    ev->where = W_READY;
    a->nwaiting++;
    a->nbytes += ev->bytes;
}

/* Into delayed, sorted by retry time (from the tail: later times are more
 * common). */
void faas_async_ev_delay(struct faas_async *a, struct async_ev *ev)
{
    struct faas_list *e = a->delayed.prev;
    while (e != &a->delayed && FAAS_CONTAINER_OF(e, struct async_ev, link)->wake_ns > ev->wake_ns)
        e = e->prev;
    faas_list_insert_head(e, &ev->link); /* after e */
    ev->where = W_DELAYED;
    a->nwaiting++;
    a->nbytes += ev->bytes;
}

/* ---- timer ---------------------------------------------------------- */

static void arm_timer(struct faas_async *a, uint64_t now)
{
    uint64_t next = UINT64_MAX;

    if (!a->timer_ev)
        return;
    if (!faas_list_empty(&a->delayed))
        next = FAAS_CONTAINER_OF(a->delayed.next, struct async_ev, link)->wake_ns;
    if (!faas_list_empty(&a->ready) && has_age_limit(a)) {
        uint64_t d = age_deadline(a, FAAS_CONTAINER_OF(a->ready.next, struct async_ev, link));
        if (d < next)
            next = d;
    }
    faas_timer_rearm(a->timer_ev, &a->timer_armed, &a->timer_at, next, now);
}

/* ---- the end of an event -------------------------------------------- */

/* Lambda's destination record. New reference, or NULL. */
static json_t *destination_record(struct faas_runtime *rt, const struct faas_result *res,
                                  enum async_cond cond)
{
    char ts[96], arn[FAAS_NAME_MAX + 64];
    json_t *rec, *resp;

    faas_iso_time_ms(faas_wall_ns(rt), ts, sizeof ts);
    snprintf(arn, sizeof arn, "arn:aws:lambda:%s:000000000000:function:%s:$LATEST",
             rt->opts.region, res->function);
    resp = json_pack("{s:i, s:s}", "statusCode", 200, "executedVersion", "$LATEST");
    if (resp && res->status != 0)
        json_object_set_new(resp, "functionError", json_string("Unhandled"));
    /* Deep copies: the destination may run on a worker thread while the host
     * still reads the final result's event and payload. */
    rec = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:I}, s:o, s:o, s:o}", "version", "1.0",
                    "timestamp", ts, "requestContext", "requestId", res->request_id,
                    "functionArn", arn, "condition", cond_names[cond],
                    "approximateInvokeCount", (json_int_t)(res->attempts),
                    "requestPayload", copy_json(res->event, 0), "responseContext", resp,
                    "responsePayload", copy_json(res->payload, 0));
    return rec;
}

static int enqueue(struct faas_runtime *rt, struct faas_fn *fn, json_t *event, size_t bytes,
                   const struct faas_invoke_opts *opts, char id_out[FAAS_REQUEST_ID_SIZE],
                   struct async_ev **held);

/*
 * Sends the destination record. With a durable engine the new event is
 * not written here: it is returned in *held, to be put in the transaction
 * that ends the event it comes from.
 */
static void send_destination(struct faas_async *a, const char *dest,
                             const struct faas_result *res, enum async_cond cond,
                             struct async_ev **held)
{
    struct faas_runtime *rt = a->fn->rt;
    struct faas_fn *target;
    json_t *rec;
    char id[FAAS_REQUEST_ID_SIZE];
    int rc;

    /* While the runtime is freed a durable engine still keeps it. */
    if (!rt->durable && (rt->closing || rt->free_requested))
        return;
    target = faas_fn_lookup(rt, dest);
    if (!target) {
        rc = FAAS_ENOENT;
    } else if (!(rec = destination_record(rt, res, cond))) {
        rc = FAAS_ENOMEM;
    } else {
        rc = enqueue(rt, target, rec, faas_json_bytes(rec), NULL, id, held);
        if (rc == 0)
            return;
    }
    faas_log_event(rt, FAAS_LOG_ASYNC, a->fn->name, res->request_id, "failure", NULL,
              "destination %s for condition %s not invoked: %s", dest, cond_names[cond],
              faas_async_err_name(rc));
}

static json_t *end_error_object(const struct faas_fn *fn, int status, enum async_cond cond)
{
    const struct faas_runtime *rt = fn->rt;
    char msg[160];

    if (status == FAAS_ECANCELED)
        return faas_error_object("Runtime.Canceled", rt->closing || rt->free_requested
                                                         ? "the runtime was freed"
                                                         : "the function was unregistered");
    if (status == FAAS_ETHROTTLED) {
        snprintf(msg, sizeof msg,
                 cond == COND_AGE ? "the event of %s expired before an instance was free"
                                  : "the async queue of %s is full",
                 fn->name);
        return faas_error_object("TooManyRequestsException", msg);
    }
    return faas_error_object(faas_async_err_name(status), faas_strerror(status));
}

/*
 * Ends an event: its final result to on_complete, the destination, and the
 * dead letter for failures. ev must be off every list but `all`. The event's
 * function reference is dropped last: callers that use the state afterwards
 * hold their own.
 */
static void end_event_with(struct faas_async *a, struct async_ev *ev, int status,
                           enum async_cond cond, const struct faas_result *attempt)
{
    struct faas_fn *fn = ev->fn;
    struct faas_runtime *rt = fn->rt;
    struct faas_result res;
    const char *dest;
    faas_result_fn dead_letter = a->opts.dead_letter;
    void *dead_letter_arg = a->opts.dead_letter_arg;
    struct async_ev *held = NULL;

    if (rt->durable && (status == FAAS_ECANCELED || status == FAAS_EUNAVAILABLE ||
                        status == FAAS_EDRAINING)) {
        faas_async_leave(ev); /* it stays for the next start */
        return;
    }
    faas_list_remove(&ev->all_link);
    memset(&res, 0, sizeof res);
    if (attempt) {
        res = *attempt;
        json_incref(res.payload);
    } else if (ev->last && ev->last->status == status) {
        res = *ev->last;
        ev->last->payload = NULL; /* moved */
    } else {
        res.status = status;
        if (ev->last) {
            res.duration_ns = ev->last->duration_ns;
            res.init_ns = ev->last->init_ns;
            res.max_memory_kb = ev->last->max_memory_kb;
            res.cold = ev->last->cold;
        }
        res.payload = status ? end_error_object(fn, status, cond) : json_null();
    }
    if (!res.payload)
        res.payload = json_null();
    memcpy(res.request_id, ev->request_id, sizeof res.request_id);
    memcpy(res.function, fn->name, sizeof res.function);
    res.memory_mb = fn->opts.memory_mb;
    res.event = ev->event;
    ev->event = NULL; /* moved */
    res.attempts = ev->attempts;
    res.recovered = ev->recovered;
    if (status != 0)
        a->ndead++;
    if (cond == COND_THROTTLED || cond == COND_AGE)
        a->ndropped++;

    if (status == 0)
        faas_log_event(rt, FAAS_LOG_ASYNC, fn->name, res.request_id, "success", NULL,
                       "succeeded after %u attempt%s", (unsigned)res.attempts,
                       res.attempts == 1 ? "" : "s");
    else
        faas_log_event(rt, FAAS_LOG_ASYNC, fn->name, res.request_id, "failure", NULL,
                       "%s after %u attempt%s: %s", cond_names[cond], (unsigned)res.attempts,
                       res.attempts == 1 ? "" : "s", faas_async_err_name(status));
    if (a->opts.on_complete)
        a->opts.on_complete(&res, a->opts.on_complete_arg);
    dest = status == 0 ? a->opts.on_success : a->opts.on_failure;
    if (dest)
        send_destination(a, dest, &res, cond, rt->durable ? &held : NULL);
    if (rt->durable)
        faas_async_durable_end(a, ev, held);
    if (status != 0 && dead_letter) {
        faas_log_event(rt, FAAS_LOG_ASYNC, fn->name, res.request_id, "dead-letter", NULL, "%s: %s",
                       cond_names[cond], faas_async_err_name(status));
        dead_letter(&res, dead_letter_arg);
    }
    json_decref(res.payload);
    json_decref(res.event);
    faas_async_ev_free(ev); /* may free a */
    faas_drain_note(rt);
}

static void end_event(struct faas_async *a, struct async_ev *ev, int status,
                      enum async_cond cond)
{
    end_event_with(a, ev, status, cond, NULL);
}

/* Reports acceptances owed without a durable engine (the next turn). */
static void deliver_notes(struct faas_async *a)
{
    struct faas_list *e;
    while ((e = faas_list_pop_head(&a->notes)) != NULL) {
        struct async_note *n = FAAS_CONTAINER_OF(e, struct async_note, link);
        n->cb(0, n->request_id, n->arg);
        free(n);
    }
}

/* Delivers what was decided inside host calls. */
static void deliver_done(struct faas_async *a)
{
    struct faas_list *e;
    while ((e = faas_list_pop_head(&a->done)) != NULL) {
        struct async_ev *ev = FAAS_CONTAINER_OF(e, struct async_ev, link);
        ev->where = 0;
        end_event(a, ev, ev->end_status, ev->end_cond);
    }
}

/* ---- attempts ------------------------------------------------------- */

static uint64_t backoff_ns(struct faas_async *a, uint32_t attempt)
{
    uint64_t ms = a->opts.retry_base_ms, half;
    uint32_t i;
    double u;

    for (i = 1; i < attempt && ms < ASYNC_BACKOFF_CAP_MS; i++)
        ms *= 2;
    if (ms > ASYNC_BACKOFF_CAP_MS)
        ms = ASYNC_BACKOFF_CAP_MS;
    /* Jitter: a factor in [0.5, 1.0], so retries of many events spread. */
    half = ms * 1000000u / 2u;
    u = (double)(rng_next(a) >> 11) / 9007199254740992.0; /* [0, 1) */
    return half + (uint64_t)((double)half * u);
}

/*
 * Waits for another attempt after a backoff, or ends the event if its age
 * would run out first. Retries that did not count still grow the backoff.
 */
static void schedule_retry(struct faas_async *a, struct async_ev *ev, uint64_t now, int status)
{
    struct faas_runtime *rt = a->fn->rt;
    uint32_t n = ev->attempts + ev->waits;
    uint64_t delay = backoff_ns(a, n ? n : 1);
    int wait = status == FAAS_EINPROGRESS || status == FAAS_ETHROTTLED;
    /* On a fleet's queue a retry waits in Redis for any host; a wait (no
     * attempt ran) stays on this host, which renews its lease. */
    int to_fleet = !wait && faas_durable_shared(rt->durable);

    if (has_age_limit(a) && (now >= age_deadline(a, ev) || delay >= age_deadline(a, ev) - now)) {
        end_event(a, ev, ev->last ? ev->last->status : status, COND_AGE);
        return;
    }
    if (!wait)
        a->nretries++; /* a retry of a failed attempt, not a wait */
    if (!to_fleet) {
        ev->wake_ns = now + delay;
        faas_async_ev_delay(a, ev);
    }
    if (to_fleet || (rt->durable && !faas_durable_shared(rt->durable)))
        (void)faas_durable_event_retry(rt->durable, ev->request_id,
                                       faas_wall_ns(rt) / 1000000 + (int64_t)(delay / 1000000u),
                                       faas_durable_drain_done,
                                       rt); /* lost: it runs sooner, or its lease runs out */
    faas_log_event(rt, FAAS_LOG_ASYNC, a->fn->name, ev->request_id, "retry", NULL,
                   "attempt %u: %s; next attempt in %llu ms%s", (unsigned)ev->attempts,
                   faas_async_err_name(status), (unsigned long long)(delay / 1000000u),
                   to_fleet ? ", on any host" : "");
    if (to_fleet) {
        faas_list_remove(&ev->all_link);
        faas_async_ev_free(ev); /* the caller holds a reference to the function */
        faas_drain_note(rt);
        return;
    }
    arm_timer(a, now);
}

static void keep_result(struct async_ev *ev, const struct faas_result *res)
{
    struct faas_result *copy = ev->last;
    if (!copy && !(copy = faas_malloc(sizeof *copy)))
        return; /* the end builds a result from the status instead */
    if (ev->last)
        json_decref(ev->last->payload);
    *copy = *res;
    copy->payload = json_incref(res->payload);
    copy->event = NULL;
    copy->attempts = 0;
    copy->log_tail = NULL;
    ev->last = copy;
}

static void attempt_end(const struct faas_result *res, void *arg)
{
    struct async_ev *ev = arg;
    struct faas_fn *fn = ev->fn;
    struct faas_async *a = fn->async;
    int status = res->status;

    faas_list_remove(&ev->link);
    ev->where = 0;
    a->nrunning--;
    if (status == 0) {
        end_event_with(a, ev, 0, COND_SUCCESS, res);
        return;
    }
    if (status == FAAS_EINPROGRESS || status == FAAS_ETHROTTLED) {
        /* Nothing ran: a duplicate of this key is running, or no room. */
        ev->attempts--;
        ev->waits++;
        if (!ev->last)
            keep_result(ev, res);
    } else {
        keep_result(ev, res);
    }
    if (faas_async_stopping(fn)) {
        end_event(a, ev, status, cond_of(status));
        return;
    }
    if (status == FAAS_EINPROGRESS || status == FAAS_ETHROTTLED ||
        (retryable(status) && ev->attempts <= a->opts.max_retries)) {
        schedule_retry(a, ev, faas_now_ns(fn->rt), status);
        return;
    }
    end_event(a, ev, status, cond_of(status));
}

/* An attempt's result, from the pool. */
static void attempt_cb(const struct faas_result *res, void *arg)
{
    struct async_ev *ev = arg;
    struct faas_fn *fn = ev->fn;

    faas_fn_ref(fn);
    attempt_end(res, arg);
    if (fn->async)
        faas_async_durable_want(fn->async); /* room for more */
    faas_fn_unref(fn);
}

/* Starts the head of ready. Returns 1 if the function is throttled. */
static int start_head(struct faas_async *a, uint64_t now)
{
    struct async_ev *ev = FAAS_CONTAINER_OF(a->ready.next, struct async_ev, link);
    struct faas_fn *fn = a->fn;
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    json_t *event;
    int rc;

    if (fn->rt->durable && ev->dattempts <= ev->attempts)
        return faas_async_durable_attempt(a, ev);
    faas_async_ev_unlink(a, ev);
    faas_list_insert_tail(&a->running, &ev->link);
    ev->where = W_RUNNING;
    ev->attempts++;
    io.timeout_ms = ev->timeout_ms;
    io.idempotency_key = ev->idem_key;
    io.trace_id = ev->trace_id;
    io.client_context = ev->client_context;
    /* A worker gets its own copy: a cancelled attempt may still run (and
     * touch its event's reference count) after the event has ended here. */
    event = fn->opts.isolation == FAAS_ISOLATION_INLINE ? json_incref(ev->event)
                                                        : copy_json(ev->event, 0);
    rc = event ? faas_invoke_fn(fn->rt, fn, event, &io, ev->request_id, attempt_cb, ev)
               : FAAS_ENOMEM;
    if (rc == 0) {
        a->nrunning++;
        return 0;
    }
    ev->attempts--;
    faas_list_remove(&ev->link);
    ev->where = 0;
    if (rc == FAAS_ETHROTTLED) {
        /* Back to the head: it keeps its turn. */
        faas_list_insert_head(&a->ready, &ev->link);
        ev->where = W_READY;
        a->nwaiting++;
        a->nbytes += ev->bytes;
        a->blocked = 1;
        if (!ev->throttle_logged) {
            ev->throttle_logged = 1;
            faas_log_event(fn->rt, FAAS_LOG_ASYNC, fn->name, ev->request_id, "throttled", NULL,
                      "no instance free; the event waits");
        }
        return 1;
    }
    if (rc == FAAS_EINPROGRESS && !faas_async_stopping(fn)) {
        ev->waits++;
        schedule_retry(a, ev, now, rc);
        return 0;
    }
    end_event(a, ev, rc, cond_of(rc));
    return 0;
}

/*
 * Delivers decided events, moves due retries to ready, ends events whose age
 * ran out, and starts ready events until the pool throttles. The caller
 * holds a reference to the function and brackets user callbacks.
 */
static void pump(struct faas_async *a, int unblock)
{
    struct faas_fn *fn = a->fn;
    struct faas_runtime *rt = fn->rt;
    struct faas_list *e;
    uint64_t now;

    deliver_notes(a);
    deliver_done(a);
    if (faas_async_stopping(fn))
        return;
    if (unblock)
        a->blocked = 0;
    now = faas_now_ns(rt);
    while (!faas_list_empty(&a->delayed)) {
        struct async_ev *ev = FAAS_CONTAINER_OF(a->delayed.next, struct async_ev, link);
        if (ev->wake_ns > now)
            break;
        faas_async_ev_unlink(a, ev);
        if (expired(a, ev, now))
            end_event(a, ev, last_status(ev), COND_AGE);
        else
            faas_async_ev_ready(a, ev, 0);
        if (faas_async_stopping(fn))
            return;
    }
    while ((e = a->ready.next) != &a->ready &&
           expired(a, FAAS_CONTAINER_OF(e, struct async_ev, link), now)) {
        struct async_ev *ev = FAAS_CONTAINER_OF(e, struct async_ev, link);
        faas_async_ev_unlink(a, ev);
        end_event(a, ev, last_status(ev), COND_AGE);
        if (faas_async_stopping(fn))
            return;
    }
    while (!a->blocked && !faas_list_empty(&a->ready) && !faas_async_stopping(fn))
        start_head(a, now);
    if (!faas_async_stopping(fn))
        arm_timer(a, now);
}

/* Runs pump from the loop, as an entry point into user code. */
static void pump_entry(struct faas_async *a, int unblock)
{
    struct faas_fn *fn = a->fn;
    struct faas_runtime *rt = fn->rt;

    faas_rt_enter(rt);
    faas_fn_ref(fn);
    pump(a, unblock);
    faas_async_durable_want(a);
    faas_fn_unref(fn); /* may free a */
    faas_rt_leave(rt);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_async *a = arg;
    (void)fd;
    (void)what;
    a->kicked = 0;
    pump_entry(a, 0);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_async *a = arg;
    (void)fd;
    (void)what;
    a->timer_armed = 0;
    pump_entry(a, 1);
}

/* ---- queueing ------------------------------------------------------- */

/* The oldest event that waits (not running, not decided), or NULL; with
 * `pending`, also one whose acceptance the engine is writing. */
static struct async_ev *oldest_waiting(struct faas_async *a, int pending)
{
    struct faas_list *e;
    for (e = a->all.next; e != &a->all; e = e->next) {
        struct async_ev *ev = FAAS_CONTAINER_OF(e, struct async_ev, all_link);
        if (ev->where == W_READY || ev->where == W_DELAYED ||
            (pending && ev->where == W_PENDING))
            return ev;
    }
    return NULL;
}

/* Would an event of `bytes` more overflow the queue? */
static int queue_full(const struct faas_async *a, size_t bytes)
{
    return (a->opts.max_queue && a->nwaiting >= a->opts.max_queue) ||
           a->nbytes > a->opts.max_queue_bytes || bytes > a->opts.max_queue_bytes - a->nbytes;
}

/* Drops the oldest waiting event: it ends (from the loop) as throttled; one
 * whose put the engine is writing ends once that commits (put_done). */
static int drop_oldest(struct faas_runtime *rt, struct faas_async *a, const char *why)
{
    struct async_ev *old = oldest_waiting(a, 1);
    if (!old)
        return 0;
    old->end_status = FAAS_ETHROTTLED;
    old->end_cond = COND_THROTTLED;
    if (old->where == W_PENDING) {
        a->nwaiting--;
        a->nbytes -= old->bytes;
        old->where = W_PENDING_DROPPED; /* stays on a->durable */
    } else {
        faas_async_ev_unlink(a, old);
        old->where = W_DONE;
        faas_list_insert_tail(&a->done, &old->link);
    }
    faas_log_event(rt, FAAS_LOG_ASYNC, a->fn->name, old->request_id, "overflow", NULL,
                   "the async queue is full (%s): the oldest event is dropped", why);
    return 1;
}

/* Queues `event` (taken over; `bytes` its serialised size) on fn. On error
 * nothing is queued. */
static int enqueue(struct faas_runtime *rt, struct faas_fn *fn, json_t *event, size_t bytes,
                   const struct faas_invoke_opts *opts, char id_out[FAAS_REQUEST_ID_SIZE],
                   struct async_ev **held)
{
    struct faas_async *a = async_get(fn);
    struct async_ev *ev = NULL;
    struct async_note *note = NULL;

    if (!event || !a || faas_async_events(a) != 0)
        goto nomem;
    if (opts && opts->on_accepted && !rt->durable && !(note = faas_malloc(sizeof *note)))
        goto nomem;
    if (bytes > a->opts.max_queue_bytes ||
        (queue_full(a, bytes) && (a->opts.overflow != FAAS_OVERFLOW_DROP_OLDEST ||
                                  faas_durable_shared(rt->durable)))) {
        json_decref(event);
        free(note);
        a->ndropped++;
        return bytes > a->opts.max_queue_bytes ? FAAS_ETOOBIG : FAAS_ETHROTTLED;
    }
    ev = faas_async_ev_alloc(a);
    if (!ev)
        goto nomem;
    ev->event = event;
    event = NULL;
    if (opts) {
        ev->timeout_ms = opts->timeout_ms;
        if (opts->trace_id && !(ev->trace_id = faas_strdup(opts->trace_id)))
            goto nomem;
        if (opts->idempotency_key && !(ev->idem_key = faas_strdup(opts->idempotency_key)))
            goto nomem;
        if (opts->client_context &&
            !(ev->client_context = copy_json(opts->client_context, 0)))
            goto nomem;
    }
    ev->fn = fn;
    faas_fn_ref(fn);
    faas_request_id(rt, ev->request_id);
    ev->enqueued_ns = faas_now_ns(rt);
    ev->bytes = bytes;

    while (a->opts.max_queue && a->nwaiting >= a->opts.max_queue) {
        char why[48];
        snprintf(why, sizeof why, "%u events", (unsigned)a->opts.max_queue);
        if (!drop_oldest(rt, a, why))
            break;
    }
    while (a->nbytes > a->opts.max_queue_bytes || bytes > a->opts.max_queue_bytes - a->nbytes) {
        char why[48];
        snprintf(why, sizeof why, "%zu bytes", a->opts.max_queue_bytes);
        if (!drop_oldest(rt, a, why))
            break;
    }
    faas_list_insert_tail(&a->all, &ev->all_link);
    if (rt->durable) {
        /* It waits for the engine: no attempt before the put commits. */
        faas_list_insert_tail(&a->durable, &ev->link);
        ev->where = W_PENDING;
        a->nwaiting++;
        a->nbytes += ev->bytes;
        if (held) {
            *held = ev;
        } else {
            int rc = faas_async_durable_put(a, ev);
            if (rc != 0) {
                faas_async_ev_unlink(a, ev);
                faas_list_remove(&ev->all_link);
                faas_async_ev_free(ev);
                return rc;
            }
            if (opts) {
                ev->on_accepted = opts->on_accepted;
                ev->accepted_arg = opts->accepted_arg;
            }
        }
    } else {
        faas_async_ev_ready(a, ev, 1);
        if (note) {
            note->cb = opts->on_accepted;
            note->arg = opts->accepted_arg;
            memcpy(note->request_id, ev->request_id, sizeof note->request_id);
            faas_list_insert_tail(&a->notes, &note->link);
            faas_async_kick(a);
        }
    }
    if (id_out)
        memcpy(id_out, ev->request_id, FAAS_REQUEST_ID_SIZE);
    if (!a->blocked || !faas_list_empty(&a->done))
        faas_async_kick(a);
    return 0;
nomem:
    free(note);
    json_decref(event);
    if (ev) {
        if (ev->fn) {
            faas_async_ev_free(ev);
        } else {
            json_decref(ev->event);
            free(ev->trace_id);
            free(ev->idem_key);
            json_decref(ev->client_context);
            free(ev);
        }
    }
    return FAAS_ENOMEM;
}

/* faas_invoke_async once the call is checked. */
static int invoke_async(struct faas_runtime *rt, struct faas_fn *fn, json_t *event,
                        const struct faas_invoke_opts *opts,
                        char request_id[FAAS_REQUEST_ID_SIZE])
{
    json_t *copy;
    size_t bytes = 0;
    int rc;

    copy = event ? copy_json_sized(event, 0, &bytes) : json_null();
    if (!event)
        bytes = 4;
    if (!copy)
        return FAAS_ENOMEM;
    if (fn->idem) {
        /* A required key that is absent is the caller's error: say it now
         * rather than in a dead letter. */
        struct faas_inv probe;
        memset(&probe, 0, sizeof probe);
        probe.rt = rt;
        probe.fn = fn;
        probe.event = copy;
        rc = faas_idem_prepare(&probe, opts ? opts->idempotency_key : NULL);
        if (rc) {
            json_decref(copy);
            return rc;
        }
    }
    faas_rt_enter(rt); /* an overflow's records reach the host here */
    rc = enqueue(rt, fn, copy, bytes, opts, request_id, NULL);
    faas_rt_leave(rt);
    return rc;
}

int faas_invoke_async(struct faas_runtime *rt, const char *name, json_t *event,
                      const struct faas_invoke_opts *opts, char request_id[FAAS_REQUEST_ID_SIZE])
{
    struct faas_invoke_opts o;
    struct faas_fn *fn;
    int rc;

    rc = faas_invoke_check(rt, name, event, opts, rt ? rt->opts.max_async_payload : 0, &fn);
    if (rc)
        return rc;
    faas_invoke_opts_read(&o, opts); /* checked above */
    return invoke_async(rt, fn, event, &o, request_id);
}

int faas_async_invoke_internal(struct faas_runtime *rt, const char *name, json_t *event,
                               char request_id[FAAS_REQUEST_ID_SIZE])
{
    size_t limit = rt->opts.max_async_payload;
    struct faas_fn *fn;

    if (rt->closing || rt->free_requested)
        return FAAS_ECANCELED;
    if (!(fn = faas_fn_lookup(rt, name)))
        return FAAS_ENOENT;
    if (event && faas_json_size(event, limit) > limit)
        return FAAS_ETOOBIG;
    return invoke_async(rt, fn, event, NULL, request_id);
}

/* ---- hooks of the other subsystems ---------------------------------- */

int faas_async_configure(struct faas_fn *fn, const struct faas_async_opts *host_opts)
{
    struct faas_async_opts o, *opts = &o;
    struct faas_async *a;
    char *on_success = NULL, *on_failure = NULL;

    if (!fn || faas_async_opts_read(&o, host_opts) != 0)
        return FAAS_EINVAL;
    if (opts->overflow != FAAS_OVERFLOW_REJECT && opts->overflow != FAAS_OVERFLOW_DROP_OLDEST)
        return FAAS_EINVAL;
    if ((opts->on_success && !(on_success = faas_strdup(opts->on_success))) ||
        (opts->on_failure && !(on_failure = faas_strdup(opts->on_failure))))
        goto nomem;
    a = fn->async ? fn->async : async_new(fn);
    if (!a)
        goto nomem;
    free((char *)a->opts.on_success);
    free((char *)a->opts.on_failure);
    a->opts = *opts;
    a->opts.on_success = on_success;
    a->opts.on_failure = on_failure;
    if (a->opts.max_queue_bytes == 0)
        a->opts.max_queue_bytes = ASYNC_QUEUE_BYTES;
    fn->async = a;
    faas_async_adopt(a);
    faas_async_durable_want(a); /* a fleet's queue: this host takes its events */
    return 0;
nomem:
    free(on_success);
    free(on_failure);
    return FAAS_ENOMEM;
}

/* fn->on_capacity: an instance of fn was released; start queued events
 * while there is room. */
static void on_capacity(struct faas_fn *fn)
{
    struct faas_async *a = fn->async;
    if (!a)
        return;
    a->blocked = 0;
    if (!faas_list_empty(&a->ready) || !faas_list_empty(&a->done))
        faas_async_kick(a);
}

void faas_async_cancel_fn(struct faas_fn *fn, int status)
{
    struct faas_async *a = fn->async;
    struct faas_runtime *rt = fn->rt;
    struct faas_list *e;

    if (!a)
        return;
    faas_fn_ref(fn);
    faas_rt_enter(rt);
    deliver_notes(a);
    deliver_done(a);
    while ((e = faas_list_pop_head(&a->ready)) != NULL ||
           (e = faas_list_pop_head(&a->delayed)) != NULL) {
        struct async_ev *ev = FAAS_CONTAINER_OF(e, struct async_ev, link);
        a->nwaiting--;
        a->nbytes -= ev->bytes;
        ev->where = 0;
        /* Kept by an engine, it does not end: it waits for the next start
         * (or a registration again, parked). Pending and starting ones
         * follow when the engine answers. */
        if (rt->durable)
            faas_async_leave(ev);
        else
            end_event(a, ev, status, cond_of(status));
        deliver_notes(a);
        deliver_done(a); /* overflow from inside the callbacks */
    }
    if (a->timer_armed)
        event_del(a->timer_ev);
    a->timer_armed = 0;
    faas_async_durable_want(a); /* no more events of the fleet's queue */
    faas_rt_leave(rt);
    faas_fn_unref(fn);
}

void faas_async_poll(struct faas_runtime *rt)
{
    struct faas_fn **fns;
    struct faas_list *e;
    size_t n = 0, i;

    if (!rt || rt->closing || rt->free_requested || rt->nfns == 0)
        return;
    /* A snapshot: callbacks may unregister functions while we walk. */
    fns = faas_calloc(rt->nfns, sizeof *fns);
    if (!fns)
        return;
    for (e = rt->fns.next; e != &rt->fns && n < rt->nfns; e = e->next) {
        struct faas_fn *fn = FAAS_CONTAINER_OF(e, struct faas_fn, link);
        if (fn->async) {
            faas_fn_ref(fn);
            fns[n++] = fn;
        }
    }
    faas_rt_enter(rt);
    for (i = 0; i < n; i++)
        if (!fns[i]->unregistered && !rt->free_requested)
            pump(fns[i]->async, 1);
    for (i = 0; i < n; i++)
        faas_fn_unref(fns[i]);
    free(fns);
    faas_rt_leave(rt);
}

void faas_async_free(struct faas_fn *fn)
{
    struct faas_async *a = fn->async;
    if (!a)
        return;
    /* Every event holds a reference to fn: none is left here. */
    fn->on_capacity = NULL;
    if (a->kick_ev)
        event_free(a->kick_ev);
    if (a->timer_ev)
        event_free(a->timer_ev);
    while (a->spare) {
        struct async_ev *ev = a->spare;
        a->spare = ev->spare_next;
        free(ev);
    }
    free((char *)a->opts.on_success);
    free((char *)a->opts.on_failure);
    free(a);
    fn->async = NULL;
}

uint64_t faas_async_pending(const struct faas_fn *fn)
{
    const struct faas_async *a = fn->async;
    const struct faas_list *e;
    uint64_t n;

    if (!a)
        return 0;
    n = a->nwaiting + a->nstarting;
    for (e = a->done.next; e != &a->done; e = e->next)
        n++;
    return n;
}

void faas_async_stats_get(const struct faas_fn *fn, uint64_t now, struct faas_async_stats *out)
{
    struct faas_async *a = fn->async;
    struct async_ev *old;

    memset(out, 0, sizeof *out);
    if (!a)
        return;
    out->depth = a->nwaiting;
    out->bytes = a->nbytes;
    out->retries = a->nretries;
    out->dead_letters = a->ndead;
    out->dropped = a->ndropped;
    old = oldest_waiting(a, 1);
    if (old && now > old->enqueued_ns)
        out->oldest_age_ns = now - old->enqueued_ns;
}

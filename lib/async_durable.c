/*
 * async_durable.c - what async events look like to the durable engine, and
 * the events it keeps that no function holds yet.
 *
 * async.c decides when an event is written (accepted, an attempt starts, a
 * retry waits, it ends); this file turns an event into the engine's record
 * (struct faas_durable_event: the event and client context as compact
 * JSON, wall-clock times) and back.
 *
 * Parked events: at faas_runtime_new the runtime loads what an earlier run
 * left (faas_async_recover); faas_unregister parks the waiting events of a
 * function when an engine keeps them (they are not ended: ARCHITECTURE
 * section 10). Either way an event waits on rt->async_parked, oldest first,
 * until a function of its name is registered; async.c then takes it
 * (faas_async_parked_take) into that function's queue. What is still parked
 * at faas_runtime_free stays in the engine only.
 *
 * Called by async.c and runtime.c (recover at start, clear at free). May
 * call: durable.h's load, json.c, clock.c, alloc.c; jansson.
 */
#include <stdlib.h>
#include <string.h>

#include "async_int.h"
#include "durable.h"
#include "faas_int.h"

/* Compact JSON of any value, NUL-terminated; new string or NULL. */
static char *dump(json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}

static int dev_fill(struct faas_runtime *rt, const struct faas_fn *fn, const struct async_ev *ev,
                    int64_t due_ms, struct faas_durable_event *dev, char **event_text,
                    char **cc_text)
{
    uint64_t now = faas_now_ns(rt);
    int64_t wall_ms = faas_wall_ns(rt) / 1000000;
    uint64_t age_ms = now > ev->enqueued_ns ? (now - ev->enqueued_ns) / 1000000u : 0;

    memset(dev, 0, sizeof *dev);
    *cc_text = NULL;
    if (!(*event_text = dump(ev->event)))
        return FAAS_ENOMEM;
    if (ev->client_context && !(*cc_text = dump(ev->client_context))) {
        free(*event_text);
        *event_text = NULL;
        return FAAS_ENOMEM;
    }
    memcpy(dev->request_id, ev->request_id, sizeof dev->request_id);
    dev->function = fn->name;
    /* A fleet's queue refuses what overflows it, whatever the overflow
     * policy: one host does not drop events that are the fleet's. */
    if (fn->async) {
        dev->queue_max = fn->async->opts.max_queue;
        dev->queue_max_bytes = fn->async->opts.max_queue_bytes;
    }
    dev->event = *event_text;
    dev->event_len = strlen(*event_text);
    dev->client_context = *cc_text;
    dev->trace_id = ev->trace_id;
    dev->idem_key = ev->idem_key;
    dev->timeout_ms = ev->timeout_ms;
    dev->attempts = ev->dattempts;
    dev->accepted_ms = wall_ms - (int64_t)age_ms;
    dev->due_ms = due_ms;
    dev->origin = faas_durable_node(rt->durable);
    return 0;
}

static void parked_free(struct faas_async_parked *p)
{
    if (!p)
        return;
    json_decref(p->event);
    json_decref(p->client_context);
    free(p->trace_id);
    free(p->idem_key);
    free(p);
}

static struct faas_async_parked *park_ev(struct faas_runtime *rt, struct async_ev *ev)
{
    uint64_t now = faas_now_ns(rt);
    uint64_t age_ms = now > ev->enqueued_ns ? (now - ev->enqueued_ns) / 1000000u : 0;
    struct faas_async_parked *p = faas_calloc(1, sizeof *p);

    if (!p)
        return NULL;
    memcpy(p->function, ev->fn->name, sizeof p->function);
    memcpy(p->request_id, ev->request_id, sizeof p->request_id);
    p->event = ev->event;
    p->client_context = ev->client_context;
    p->trace_id = ev->trace_id;
    p->idem_key = ev->idem_key;
    ev->event = NULL;
    ev->client_context = NULL;
    ev->trace_id = NULL;
    ev->idem_key = NULL;
    p->timeout_ms = ev->timeout_ms;
    p->attempts = ev->dattempts;
    p->accepted_ms = faas_wall_ns(rt) / 1000000 - (int64_t)age_ms;
    p->bytes = ev->bytes;
    p->recovered = ev->recovered;
    return p;
}

static void parked_add(struct faas_runtime *rt, struct faas_async_parked *p)
{
    p->next = NULL;
    if (!rt->async_parked_tail)
        rt->async_parked_tail = &rt->async_parked;
    *rt->async_parked_tail = p;
    rt->async_parked_tail = &p->next;
}

static struct faas_async_parked *parked_take(struct faas_runtime *rt, const char *function)
{
    struct faas_async_parked **pp, *p;

    for (pp = &rt->async_parked; (p = *pp) != NULL; pp = &p->next) {
        if (strcmp(p->function, function) != 0)
            continue;
        *pp = p->next;
        if (rt->async_parked_tail == &p->next)
            rt->async_parked_tail = pp;
        if (!rt->async_parked)
            rt->async_parked_tail = NULL;
        p->next = NULL;
        return p;
    }
    return NULL;
}

void faas_async_parked_clear(struct faas_runtime *rt)
{
    struct faas_async_parked *p;

    while ((p = rt->async_parked) != NULL) {
        rt->async_parked = p->next;
        parked_free(p);
    }
    rt->async_parked_tail = NULL;
}

/* Durable engine: attempts counted ahead of starting, per function, when
 * max_concurrency does not bound them. */
#define ASYNC_START_WINDOW 1024u

/*
 * An event the engine keeps leaves this runtime without ending (teardown,
 * unregister, drain): parked for a registration of its function in this
 * process, or left to the next start; on a fleet's queue, released to any
 * host. ev must be off its list.
 */
void faas_async_leave(struct async_ev *ev)
{
    struct faas_fn *fn = ev->fn;
    struct faas_runtime *rt = fn->rt;
    struct faas_async_parked *p;

    faas_list_remove(&ev->all_link);
    if (faas_durable_shared(rt->durable)) {
        /* The fleet's queue: back to the stream for any host. */
        (void)faas_durable_event_release(rt->durable, ev->request_id, ev->attempts,
                                         faas_durable_drain_done,
                                         rt); /* lost: its lease runs out instead */
    } else if (fn->unregistered && !rt->closing && !rt->free_requested &&
               (p = park_ev(rt, ev)) != NULL) {
        struct faas_fn *now = faas_fn_lookup(rt, p->function);
        parked_add(rt, p);
        /* Registered again meanwhile: it is the new function's at once. */
        if (now && now != fn && now->async)
            faas_async_adopt(now->async);
    }
    faas_async_ev_free(ev);
    faas_drain_note(rt);
}

/* An event's put committed (or failed): it may start, and its caller hears
 * of it. Also the end of an event's transaction, for the destination event
 * put with it. */
static void put_done(int rc, void *arg)
{
    struct async_ev *ev = arg;
    struct faas_fn *fn = ev->fn;
    struct faas_runtime *rt = fn->rt;
    struct faas_async *a = fn->async;
    faas_accept_fn cb = ev->on_accepted;
    void *cb_arg = ev->accepted_arg;
    char id[FAAS_REQUEST_ID_SIZE];
    int dropped;

    memcpy(id, ev->request_id, sizeof id);
    faas_rt_enter(rt);
    faas_fn_ref(fn);
    dropped = ev->where == W_PENDING_DROPPED;
    faas_async_ev_unlink(a, ev);
    if (rc == 0 && dropped && !faas_async_stopping(fn)) {
        /* Accepted, then pushed out by newer events: it ends as throttled. */
        ev->where = W_DONE;
        faas_list_insert_tail(&a->done, &ev->link);
        faas_async_kick(a);
    } else if (rc != 0) {
        faas_log_event(rt, FAAS_LOG_WARNING, fn->name, id, "durable", NULL,
                       "async event not accepted: the durable engine could not keep it: %s",
                       faas_async_err_name(rc));
        faas_list_remove(&ev->all_link);
        a->ndropped++;
        faas_async_ev_free(ev);
    } else if (faas_durable_shared(rt->durable)) {
        /* In the fleet's queue: it runs where the stream delivers it. */
        faas_list_remove(&ev->all_link);
        faas_async_ev_free(ev);
    } else if (faas_async_stopping(fn)) {
        faas_async_leave(ev);
    } else {
        faas_async_ev_ready(a, ev, 0);
        faas_async_kick(a);
    }
    if (cb)
        cb(rc, id, cb_arg);
    faas_drain_note(rt);
    faas_async_durable_want(a);
    faas_fn_unref(fn); /* may free a */
    faas_rt_leave(rt);
}

/* Writes ev's acceptance; put_done follows. 0 or FAAS_ENOMEM. */
int faas_async_durable_put(struct faas_async *a, struct async_ev *ev)
{
    struct faas_runtime *rt = a->fn->rt;
    struct faas_durable_event dev;
    char *text, *cc;
    int rc;

    if ((rc = dev_fill(rt, a->fn, ev, 0, &dev, &text, &cc)) != 0)
        return rc;
    rc = faas_durable_event_put(rt->durable, &dev, put_done, ev);
    free(text);
    free(cc);
    return rc;
}

/* The engine counted the attempt about to start: back to ready, where the
 * pump starts it. */
static void attempt_written(int rc, void *arg)
{
    struct async_ev *ev = arg;
    struct faas_fn *fn = ev->fn;
    struct faas_runtime *rt = fn->rt;
    struct faas_async *a = fn->async;

    faas_rt_enter(rt);
    faas_fn_ref(fn);
    faas_async_ev_unlink(a, ev);
    if (rc == 0)
        ev->dattempts = ev->attempts + 1;
    if (faas_async_stopping(fn) || rc != 0) {
        faas_async_leave(ev);
    } else {
        faas_async_ev_ready(a, ev, 0);
        a->blocked = 0;
        faas_async_kick(a);
    }
    faas_drain_note(rt);
    faas_fn_unref(fn);
    faas_rt_leave(rt);
}

/* Counts ev's next attempt in the engine before it starts. Returns 1 when
 * nothing more should start now (the window is full, or out of memory). */
int faas_async_durable_attempt(struct faas_async *a, struct async_ev *ev)
{
    struct faas_fn *fn = a->fn;
    uint32_t window = fn->opts.max_concurrency ? fn->opts.max_concurrency : ASYNC_START_WINDOW;

    /* Only as many as can run: a crash counts an attempt for each. */
    if (a->nstarting + a->nrunning >= window) {
        a->blocked = 1;
        return 1;
    }
    if (faas_durable_event_attempt(fn->rt->durable, ev->request_id, ev->attempts + 1,
                                   attempt_written, ev) != 0) {
        a->blocked = 1;
        return 1;
    }
    faas_async_ev_unlink(a, ev);
    faas_list_insert_tail(&a->durable, &ev->link);
    ev->where = W_STARTING;
    a->nstarting++;
    return 0;
}

/* The engine forgets ev (it ended) and keeps `dest` (or NULL) in the same
 * transaction. A failure to queue the write leaves ev to run again after a
 * restart (at least once) and drops dest. */
void faas_async_durable_end(struct faas_async *a, struct async_ev *ev, struct async_ev *dest)
{
    struct faas_runtime *rt = a->fn->rt;
    struct faas_durable_event dev;
    char *text = NULL, *cc = NULL;
    int rc = 0;

    if (dest)
        rc = dev_fill(rt, dest->fn, dest, 0, &dev, &text, &cc);
    if (rc == 0 && dest)
        rc = faas_durable_event_end(rt->durable, ev->request_id, &dev, put_done, dest);
    else if (rc == 0)
        rc = faas_durable_event_end(rt->durable, ev->request_id, NULL, faas_durable_drain_done,
                                    rt);
    free(text);
    free(cc);
    if (rc != 0) {
        faas_log_event(rt, FAAS_LOG_WARNING, a->fn->name, ev->request_id, "durable", NULL,
                       "the end of the event could not be written (%s): it may run again "
                       "after a restart", faas_async_err_name(rc));
        if (dest)
            put_done(rc, dest);
    }
}

/*
 * Takes the parked events of fn's name (recovered at start, or left by an
 * unregister) into its queue: due ones ready, others delayed to their retry
 * time. One whose counted attempts already reach max_retries + 1 was cut
 * short by a crash on its last attempt: it ends as crashed.
 */
void faas_async_adopt(struct faas_async *a)
{
    struct faas_fn *fn = a->fn;
    struct faas_runtime *rt = fn->rt;
    struct faas_async_parked *p;
    uint64_t now = faas_now_ns(rt);
    int64_t wall = faas_wall_ns(rt) / 1000000;

    if (!rt->async_parked || faas_async_events(a) != 0)
        return;
    while ((p = parked_take(rt, fn->name)) != NULL) {
        struct async_ev *ev = faas_async_ev_alloc(a);
        uint64_t age;

        if (!ev) {
            parked_add(rt, p); /* for a later registration */
            break;
        }
        age = wall > p->accepted_ms ? (uint64_t)(wall - p->accepted_ms) * 1000000u : 0;
        ev->event = p->event;
        ev->client_context = p->client_context;
        ev->trace_id = p->trace_id;
        ev->idem_key = p->idem_key;
        p->event = p->client_context = NULL;
        p->trace_id = p->idem_key = NULL;
        memcpy(ev->request_id, p->request_id, sizeof ev->request_id);
        ev->fn = fn;
        faas_fn_ref(fn);
        ev->enqueued_ns = now > age ? now - age : 0;
        ev->bytes = p->bytes;
        ev->timeout_ms = p->timeout_ms;
        ev->attempts = ev->dattempts = p->attempts;
        ev->recovered = p->recovered;
        faas_list_insert_tail(&a->all, &ev->all_link);
        if (p->attempts > a->opts.max_retries) {
            ev->end_status = FAAS_ECRASHED;
            ev->end_cond = COND_RETRIES;
            ev->where = W_DONE;
            faas_list_insert_tail(&a->done, &ev->link);
        } else if (p->due_ms > wall) {
            ev->wake_ns = now + (uint64_t)(p->due_ms - wall) * 1000000u;
            faas_async_ev_delay(a, ev);
        } else {
            faas_async_ev_ready(a, ev, 0);
        }
        parked_free(p);
    }
    faas_async_kick(a);
}

/* A string of the engine's, copied; NULL stays NULL. 0 or FAAS_ENOMEM. */
static int copy_str(char **dst, const char *src)
{
    *dst = NULL;
    return src && !(*dst = faas_strdup(src)) ? FAAS_ENOMEM : 0;
}

/* Parks a copy of the engine's event. 0, FAAS_EINVAL (not valid JSON:
 * logged, nothing parked) or FAAS_ENOMEM. */
static int park_dev(struct faas_runtime *rt, const struct faas_durable_event *dev,
                    int recovered)
{
    struct faas_async_parked *p;
    json_error_t err;

    if (!dev->function || strlen(dev->function) > FAAS_NAME_MAX)
        return 0; /* not a name this runtime can register: it stays */
    if (!(p = faas_calloc(1, sizeof *p)))
        return FAAS_ENOMEM;
    strcpy(p->function, dev->function);
    memcpy(p->request_id, dev->request_id, sizeof p->request_id);
    p->request_id[FAAS_REQUEST_ID_SIZE - 1] = '\0';
    p->event = json_loadb(dev->event, dev->event_len,
                          JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (p->event && dev->client_context)
        p->client_context = json_loads(dev->client_context, JSON_DECODE_ANY | JSON_ALLOW_NUL,
                                       &err);
    if (!p->event || (dev->client_context && !p->client_context) ||
        copy_str(&p->trace_id, dev->trace_id) != 0 ||
        copy_str(&p->idem_key, dev->idem_key) != 0) {
        int bad_json = !p->event || (dev->client_context && !p->client_context);
        parked_free(p);
        if (!bad_json)
            return FAAS_ENOMEM;
        faas_log_event(rt, FAAS_LOG_WARNING, dev->function, dev->request_id, "durable", NULL,
                       "a kept async event is not valid JSON: it stays in the database");
        return FAAS_EINVAL;
    }
    p->timeout_ms = dev->timeout_ms;
    p->attempts = dev->attempts;
    p->accepted_ms = dev->accepted_ms;
    p->due_ms = dev->due_ms;
    p->bytes = dev->event_len;
    p->recovered = recovered;
    parked_add(rt, p);
    return 0;
}

static int load_one(const struct faas_durable_event *dev, void *arg)
{
    int rc = park_dev(arg, dev, 1); /* accepted by an earlier process */
    return rc == FAAS_EINVAL ? 0 : rc;
}

int faas_async_recover(struct faas_runtime *rt)
{
    int rc;

    /* A fleet's queue delivers events as this host takes them instead. */
    if (!rt->durable || faas_durable_shared(rt->durable))
        return 0;
    rc = faas_durable_events_load(rt->durable, load_one, rt);
    if (rc)
        faas_async_parked_clear(rt);
    return rc;
}

/* ---- a fleet's queue ------------------------------------------------- */

/* Events a host holds per function, delivered and not ended, unless
 * max_concurrency says fewer: what is held waits little for an instance. */
#define ASYNC_SHARED_WINDOW 256u
/* A lease outlives the function's timeout by this margin (docs). */
#define ASYNC_LEASE_MARGIN_MS 5000u
/* The lease of a function without a timeout: Lambda's longest. */
#define ASYNC_LEASE_NO_TIMEOUT_MS 900000u

void faas_async_durable_want(struct faas_async *a)
{
    struct faas_fn *fn = a->fn;
    struct faas_runtime *rt = fn->rt;
    uint32_t window, held, credit;
    uint32_t timeout = fn->opts.timeout_ms ? fn->opts.timeout_ms : ASYNC_LEASE_NO_TIMEOUT_MS;

    if (!faas_durable_shared(rt->durable))
        return;
    window = fn->opts.max_concurrency ? fn->opts.max_concurrency : ASYNC_SHARED_WINDOW;
    held = a->nwaiting + a->nstarting + a->nrunning;
    credit = held < window ? window - held : 0;
    if (a->opts.max_queue) {
        uint32_t room = a->nwaiting < a->opts.max_queue ? a->opts.max_queue - a->nwaiting : 0;
        if (room < credit)
            credit = room;
    }
    if (a->nbytes >= a->opts.max_queue_bytes)
        credit = 0;
    faas_durable_queue_want(rt->durable, fn->name, !faas_async_stopping(fn), credit,
                            timeout + ASYNC_LEASE_MARGIN_MS);
}

void faas_async_delivered(struct faas_runtime *rt, const struct faas_durable_event *dev,
                          int recovered)
{
    struct faas_fn *fn = faas_fn_lookup(rt, dev->function);
    int rc;

    if (!fn || !fn->async || faas_async_stopping(fn) || rt->draining) {
        /* Nothing here runs it (unregistered meanwhile, freed, or a read
         * that was under way when a drain began): back for the others. */
        (void)faas_durable_event_release(rt->durable, dev->request_id, dev->attempts,
                                         faas_durable_drain_done, rt);
        return;
    }
    rc = park_dev(rt, dev, recovered);
    if (rc == FAAS_EINVAL) /* never runs anywhere: it ends */
        (void)faas_durable_event_end(rt->durable, dev->request_id, NULL, faas_durable_drain_done,
                                     rt);
    else if (rc != 0)
        (void)faas_durable_event_release(rt->durable, dev->request_id, dev->attempts,
                                         faas_durable_drain_done, rt);
    else
        faas_async_adopt(fn->async);
    faas_async_durable_want(fn->async); /* what it took is counted again */
}

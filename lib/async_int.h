/*
 * async_int.h - the records of async.c, shared with async_durable.c (the
 * glue between the async queues and the durable engine).
 */
#ifndef FAAS_ASYNC_INT_H
#define FAAS_ASYNC_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "faas_int.h"

struct faas_durable_event;

/* Why an event ended: the destination record's requestContext.condition. */
enum async_cond {
    COND_SUCCESS = 0,
    COND_RETRIES,   /* failed for good: retries exhausted or not retryable */
    COND_AGE,       /* max_event_age_ms ran out while it waited */
    COND_THROTTLED, /* overflowed the queue */
    COND_CANCELED   /* unregister, teardown */
};

/*
 * Where an event is. W_PENDING, W_PENDING_DROPPED and W_STARTING exist only with a durable
 * engine: the event's acceptance, or its next attempt, is being written.
 */
enum async_where {
    W_READY = 1, W_DELAYED, W_RUNNING, W_DONE, W_PENDING, W_STARTING,
    W_PENDING_DROPPED /* dropped by the queue's overflow while its put was
                         being written: it ends once the put commits */
};

struct async_ev {
    struct faas_list link;     /* a->ready, delayed, running, done or durable */
    struct faas_list all_link; /* a->all */
    struct faas_fn *fn;        /* a reference */
    json_t *event;             /* owned, never modified */
    json_t *client_context;    /* owned deep copy, or NULL */
    char *trace_id;
    char *idem_key;
    uint32_t timeout_ms;
    char request_id[FAAS_REQUEST_ID_SIZE];
    uint64_t enqueued_ns;      /* first enqueue (runtime clock) */
    uint64_t wake_ns;          /* delayed: the retry time */
    size_t bytes;              /* the event's serialised size */
    uint32_t attempts;         /* attempts that ran (throttles do not count) */
    uint32_t waits;            /* retries that did not count (in progress) */
    uint32_t dattempts;        /* durable: attempts the engine has counted;
                                  an attempt starts once this exceeds attempts */
    enum async_where where;
    int throttle_logged;
    int recovered;             /* accepted by another process (restart) */
    int end_status;            /* W_DONE: how it ends */
    enum async_cond end_cond;
    struct faas_result *last;  /* the last attempt's result, or NULL */
    faas_accept_fn on_accepted; /* durable: owed once the put commits */
    void *accepted_arg;
    struct async_ev *spare_next; /* a->spare */
};

/* An acceptance to report on the loop's next turn (no durable engine). */
struct async_note {
    struct faas_list link;
    faas_accept_fn cb;
    void *arg;
    char request_id[FAAS_REQUEST_ID_SIZE];
};

struct faas_async {
    struct faas_fn *fn;
    struct faas_async_opts opts; /* on_success / on_failure owned */
    struct faas_list ready, delayed, running, done, all;
    struct faas_list durable;    /* W_PENDING and W_STARTING events */
    struct faas_list notes;      /* struct async_note */
    uint32_t nwaiting;           /* ready + delayed + pending */
    size_t nbytes;               /* their events' serialised size */
    uint64_t nretries, ndead, ndropped; /* faas_async_stats */
    uint32_t nstarting;          /* W_STARTING events */
    uint32_t nrunning;           /* on `running` */
    int blocked;                 /* the pool throttled the head */
    struct event *kick_ev;       /* made active to start work from the loop */
    int kicked;                  /* kick_ev is active: kick_cb has yet to run */
    struct event *timer_ev;
    int timer_armed;
    uint64_t timer_at;
    uint64_t rng;                /* splitmix64 state, for jitter */
    struct async_ev *spare;      /* ended records for reuse */
    uint32_t nspare;
};

/*
 * An event kept by the engine that no function of this runtime holds yet:
 * loaded at start (recovered), or left by an unregistered function. It
 * waits on rt->async_parked until a function of its name is registered.
 */
struct faas_async_parked {
    struct faas_async_parked *next;
    char function[FAAS_NAME_MAX + 1];
    char request_id[FAAS_REQUEST_ID_SIZE];
    json_t *event;
    json_t *client_context;    /* or NULL */
    char *trace_id;
    char *idem_key;
    uint32_t timeout_ms;
    uint32_t attempts;         /* attempts the engine counted */
    int64_t accepted_ms;       /* wall clock */
    int64_t due_ms;            /* wall clock; 0 = at once */
    size_t bytes;
    int recovered;
};

/* ---- async.c: the queue's helpers, for async_durable.c ------------- */
const char *faas_async_err_name(int status);
/* The runtime is being freed, or fn unregistered. */
int faas_async_stopping(const struct faas_fn *fn);
/* The kick and timer events exist: 0 or FAAS_ENOMEM. */
int faas_async_events(struct faas_async *a);
/* Makes the kick event active (once per loop pass). */
void faas_async_kick(struct faas_async *a);
struct async_ev *faas_async_ev_alloc(struct faas_async *a);
/* Frees ev (kept as a spare) and drops its function reference. */
void faas_async_ev_free(struct async_ev *ev);
/* Takes ev off its list; the counts follow. */
void faas_async_ev_unlink(struct faas_async *a, struct async_ev *ev);
/* Into ready in acceptance order (is_new: at the tail). */
void faas_async_ev_ready(struct faas_async *a, struct async_ev *ev, int is_new);
/* Into delayed, at ev->wake_ns. */
void faas_async_ev_delay(struct faas_async *a, struct async_ev *ev);

/* ---- async_durable.c: the engine's side of the queue ----------------- */
/* ev (off its list, on `all`) leaves without ending: the engine keeps it;
 * parked if its function was unregistered. Frees ev. */
void faas_async_leave(struct async_ev *ev);
/* Writes a new event (on a->durable, W_PENDING); once committed it becomes
 * ready and ev->on_accepted runs. 0 or FAAS_ENOMEM (nothing written). */
int faas_async_durable_put(struct faas_async *a, struct async_ev *ev);
/* Counts ev's next attempt before it starts (ev, ready, goes W_STARTING
 * and comes back ready). Returns 1 when nothing more may start now. */
int faas_async_durable_attempt(struct faas_async *a, struct async_ev *ev);
/* ev ended: the engine forgets it and keeps `dest` (W_PENDING on its
 * function, or NULL) in one transaction. */
void faas_async_durable_end(struct faas_async *a, struct async_ev *ev, struct async_ev *dest);
/* Takes the parked events of a's function into its queue (registration). */
void faas_async_adopt(struct faas_async *a);
/* A fleet's queue: tells the engine how many more events a's function
 * takes now (none once it stops). A no-op on other engines. */
void faas_async_durable_want(struct faas_async *a);

#endif

/*
 * durable_engine.h - what sits behind durable.h: the operation record and
 * the table an engine (durable_sqlite.c, durable_redis.c) fills in.
 *
 * durable.c turns every durable.h call into one struct faas_dop, with the
 * caller's strings and JSON copied into the record's own buffer, and hands
 * it to the engine's `submit`. The engine keeps it, in submission order,
 * until it is committed (rc 0), refused (an adding operation the engine
 * cannot keep: FAAS_EUNAVAILABLE) or given up at close (FAAS_ECANCELED),
 * and then hands it back on the loop through the `report` callback it was
 * given at open, in the order the operations were submitted. durable.c runs
 * the completion and frees the record. The engine never calls durable.c,
 * or anything above it, by name.
 *
 * Loads read synchronously on the loop thread. The core includes this
 * header, never an engine's library headers.
 */
#ifndef FAAS_DURABLE_ENGINE_H
#define FAAS_DURABLE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "durable.h"
#include "faas_int.h"

enum faas_dop_kind {
    FAAS_DOP_EVENT_PUT = 1, /* ev */
    FAAS_DOP_EVENT_ATTEMPT, /* name = request id, attempts */
    FAAS_DOP_EVENT_RETRY,   /* name = request id, when_ms = due */
    FAAS_DOP_EVENT_END,     /* name = request id; ev when has_next */
    FAAS_DOP_RECORD_PUT,    /* rec */
    FAAS_DOP_RECORD_DEL,    /* name = mapping, seq */
    FAAS_DOP_SCHEDULE_SET,  /* name, when_ms = fired */
    FAAS_DOP_SCHEDULE_CLAIM, /* name, when_ms = due, seq = the gap in ms;
                                answered through `claimed`: rc 0 won, or
                                FAAS_EEXIST with when_ms = the fleet's
                                last fire */
    FAAS_DOP_IDEM_SET,      /* idem: the whole row, inserted or replaced */
    FAAS_DOP_IDEM_DEL,      /* idem.scope, idem.key; key NULL: every row of
                               the scope expired at when_ms (a sweep) */
    FAAS_DOP_NOP,           /* nothing: a completion in submission order */
    FAAS_DOP_CALL,          /* an engine's own store (durable_redis_store.c)
                               or queue: call_argv; adds when it may be
                               refused */
    FAAS_DOP_EVENT_RELEASE, /* name = request id, attempts: back to the
                               fleet's queue */
    FAAS_DOP_DELIVER        /* not submitted: an event the engine hands to
                               this host (ev; recovered), through report */
};

#define FAAS_DOP_CALL_ARGS 20

/* An idempotency record as the engine keeps it (durable_store.c). */
struct faas_durable_idem {
    const char *scope;      /* the function's name */
    const char *key;        /* 64 hex chars */
    int state;              /* enum faas_store_state */
    int status;             /* COMPLETED: the result's status */
    const char *payload;    /* COMPLETED: compact JSON, or NULL */
    size_t payload_len;
    const char *validation; /* or NULL */
    const char *owner;      /* or NULL */
    int64_t expires_ms;
};

struct faas_dop {
    struct faas_list link;   /* the engine's queues, then the done list */
    enum faas_dop_kind kind;
    int adds;                /* adds work: refused, not retried, on failure */
    int quiet;               /* the engine's own upkeep (a fleet's queue):
                                not among the pending a drain waits for */
    int resent;              /* the engine's: sent again after a lost link */
    int rc;                  /* the completion's code, set by the engine */
    uint64_t sent_ns;        /* the engine's: when it was sent (monotonic) */
    faas_durable_done_fn done;
    faas_durable_claim_fn claimed; /* FAAS_DOP_SCHEDULE_CLAIM's, not done */
    void *arg;
    /* What the kind needs (see the enum); strings point into buf or are
     * NULL. */
    struct faas_durable_event ev;
    int has_next;
    int recovered;           /* FAAS_DOP_DELIVER: taken from another
                                process (its origin, or a lease claimed) */
    const char *name;
    uint64_t seq;
    uint32_t attempts;
    int64_t when_ms;
    struct faas_durable_record rec;
    struct faas_durable_idem idem;
    /* FAAS_DOP_CALL: the engine's script arguments after its prefix, and
     * what reads the engine's answer (for Redis a redisReply) before the
     * completion runs; not called when the operation fails. */
    int call_argc;
    const char *call_argv[FAAS_DOP_CALL_ARGS];
    size_t call_len[FAAS_DOP_CALL_ARGS];
    void (*call_answer)(struct faas_dop *op, const void *reply);
    char buf[];
};

/* What an engine is given at open. Borrowed for the call; rt and the
 * report target outlive the engine. */
struct faas_durable_engine_args {
    struct faas_runtime *rt; /* its base carries the engine's events; logs */
    const char *target;      /* the URL after the engine's scheme */
    int sync;                /* faas_runtime_opts.durable_sync */
    const char *prefix;      /* faas_runtime_opts.durable_prefix, or "faas" */
    const char *node;        /* this process's node id */
    /* Hands completed operations back, on the loop, in submission order
     * (the list is emptied). Returns 1 when the runtime, and the engine with
     * it, was freed by a completion: the engine must not be touched. */
    int (*report)(void *ctx, struct faas_list *done);
    void *report_ctx;
};

struct faas_durable_engine {
    const char *scheme; /* "sqlite:" */
    /* 0, FAAS_EINVAL (a malformed target, logged), FAAS_EUNAVAILABLE
     * (logged, with why) or FAAS_ENOMEM. */
    int (*open)(void **impl, const struct faas_durable_engine_args *args);
    /* Takes the record over; it comes back through report. Never fails. */
    void (*submit)(void *impl, struct faas_dop *op);
    int (*events_load)(void *impl, int (*each)(const struct faas_durable_event *ev, void *arg),
                       void *arg);
    int (*records_load)(void *impl, const char *mapping,
                        int (*each)(const struct faas_durable_record *rec, void *arg),
                        void *arg);
    int (*schedules_load)(void *impl, int (*each)(const char *name, int64_t fired_ms, void *arg),
                          void *arg);
    int (*idem_load)(void *impl, const char *scope,
                     int (*each)(const struct faas_durable_idem *rec, void *arg), void *arg);
    void (*stats)(void *impl, struct faas_durable_stats *out);
    /* A fleet's queue (NULL on engines no fleet shares): as
     * faas_durable_queue_want and faas_durable_queue_stop. */
    void (*queue_want)(void *impl, const char *function, int registered, uint32_t credit,
                       uint32_t lease_ms);
    void (*queue_stop)(void *impl);
    /* 1: the engine is shared by a fleet and idempotency records live in
     * it (faas_durable_shared_store_new); 0: they are kept through
     * durable_store.c. */
    int shared;
    /* Commits what is queued, reports every record still held, frees. */
    void (*close)(void *impl);
};

#if FAAS_WITH_SQLITE
extern const struct faas_durable_engine faas_durable_sqlite;
/* Tests: runs `sql` on the engine's write connection between transactions
 * (a PRAGMA max_page_count to fill the disk). 0 or FAAS_EUNAVAILABLE. */
int faas_durable_sqlite_exec(struct faas_durable *d, const char *sql);
#endif

#if FAAS_WITH_REDIS
extern const struct faas_durable_engine faas_durable_redis;
#endif

/* ---- durable.c, for durable_store.c ---------------------------------- */
/* Keeps (inserts or replaces) an idempotency record; `adds`: the operation
 * adds work (a put), refused with FAAS_EUNAVAILABLE when the engine cannot
 * keep it. Returns 0 or FAAS_ENOMEM; the completion as durable.h's. */
int faas_durable_idem_set(struct faas_durable *d, const struct faas_durable_idem *rec, int adds,
                          faas_durable_done_fn done, void *arg);
/* Deletes scope's record `key`; key NULL: its records expired at
 * `expired_ms`. done may be NULL. Returns 0 or FAAS_ENOMEM. */
int faas_durable_idem_del(struct faas_durable *d, const char *scope, const char *key,
                          int64_t expired_ms, faas_durable_done_fn done, void *arg);
/* Submits an operation the caller made (FAAS_DOP_CALL, faas_calloc'd with
 * its strings in buf); it comes back through its completion. */
void faas_durable_call(struct faas_durable *d, struct faas_dop *op);
/* A completion after every operation queued before it. 0 or FAAS_ENOMEM. */
int faas_durable_nop(struct faas_durable *d, faas_durable_done_fn done, void *arg);
/* Calls `each` for scope's records, least recently written first. As
 * faas_durable_events_load. */
int faas_durable_idem_load(struct faas_durable *d, const char *scope,
                           int (*each)(const struct faas_durable_idem *rec, void *arg),
                           void *arg);
/* The runtime the engine was opened for. */
struct faas_runtime *faas_durable_runtime(struct faas_durable *d);

/* The engine's state behind a handle (tests reach engine hooks with it). */
void *faas_durable_impl(struct faas_durable *d);

/* Where durable.c keeps the bucket of one commit duration: the index i of
 * faas_durable_commit_bounds_s with seconds <= bound i, the first such. */
unsigned faas_durable_bucket(double seconds);

#endif

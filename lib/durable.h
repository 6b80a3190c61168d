/*
 * durable.h - the durable engine: what a runtime keeps across a crash
 * (docs/durability.md, ARCHITECTURE section 10).
 *
 * One engine per runtime, named by faas_runtime_opts.durable: NULL keeps
 * everything in memory (rt->durable is NULL and callers skip the engine);
 * "sqlite:PATH" is durable_sqlite.c; "redis://..." is the fleet engine.
 * The engine is opened by faas_runtime_new after the zygote fork, so no
 * worker ever inherits its file or socket, and closed by faas_runtime_free.
 *
 * What it keeps, each in its own table/keyspace:
 *   events     async events from accepted to ended, keyed by request id;
 *   records    records a host-fed mapping holds until their batch ends,
 *              keyed by (mapping name, sequence number);
 *   schedules  the last fire time of each schedule mapping, by name;
 *   idem       idempotency records of functions using the default store
 *              (faas_durable_store_new: a struct faas_store over the engine).
 *
 * Threading: every function here is called on the loop thread only. The
 * loop never waits on the disk: writes are queued and committed by the
 * engine (SQLite: one writer thread, many operations per transaction), and
 * each completion runs later, on the loop, never inside the call that
 * queued it. Operations commit in the order they were queued. The load
 * functions are the exception: they read synchronously, and are called
 * only where a host sets up (faas_runtime_new loads the events, faas_map a
 * mapping's records), never per event.
 *
 * Failures: an operation that adds work (event_put, record_put,
 * schedule_claim, a store's put_if_absent) completes with FAAS_EUNAVAILABLE when the engine cannot
 * keep it (disk full, I/O error): the caller refuses the work and nothing
 * of it is kept. An operation that moves or ends work already kept
 * (attempt, retry, end, record_del, schedule_set, a store's complete and
 * remove) is retried by the engine until it commits or the engine is
 * closed: work accepted is never dropped because the disk filled up.
 *
 * Strings and JSON passed in are copied before the call returns; nothing
 * passed to the load callbacks outlives the callback.
 */
#ifndef FAAS_DURABLE_H
#define FAAS_DURABLE_H

#include <stddef.h>
#include <stdint.h>

#include "faas.h"

struct faas_runtime;
struct faas_durable;

/* An operation's completion, on the loop: rc 0 once committed, or a FAAS_E*
 * code. Runs exactly once for every call that returned 0 (also at close:
 * see faas_durable_close), never for one that failed. */
typedef void (*faas_durable_done_fn)(int rc, void *arg);

/* An async event as the engine keeps it. */
struct faas_durable_event {
    char request_id[FAAS_REQUEST_ID_SIZE];
    const char *function;       /* the function's name */
    const char *event;          /* the event, compact JSON */
    size_t event_len;
    const char *client_context; /* compact JSON, or NULL */
    const char *trace_id;       /* or NULL */
    const char *idem_key;       /* the explicit idempotency key, or NULL */
    uint32_t timeout_ms;        /* the invocation's own timeout; 0 = the function's */
    uint32_t attempts;          /* attempts started (a crash mid-attempt counts) */
    int64_t accepted_ms;        /* wall clock, first acceptance: the age */
    int64_t due_ms;             /* wall clock: not to start before; 0 = at once */
    const char *origin;         /* node id of the accepting process */
    /* A fleet engine's bound on the function's queue, checked when the
     * event is put (0 = none): events waiting fleet-wide, their bytes. */
    uint32_t queue_max;
    uint64_t queue_max_bytes;
};

/* A record a host-fed mapping holds. */
struct faas_durable_record {
    const char *mapping;        /* the mapping's durable name */
    uint64_t seq;               /* per mapping, increasing in arrival order */
    const char *key;            /* partition key, or NULL (unordered kinds) */
    const char *record;         /* the shaped record, compact JSON */
    size_t record_len;
    int64_t arrived_ms;         /* wall clock: the record's age */
};

/* Engine figures for metrics.c. */
struct faas_durable_stats {
    uint64_t pending;           /* operations queued, not yet committed */
    uint64_t commits;           /* transactions committed */
    uint64_t commit_ns_sum;     /* their total duration */
    uint64_t commit_buckets[12]; /* histogram, not cumulative: commits that
                                    took <= bound i and more than bound i-1
                                    (faas_durable_commit_bounds_s; the last
                                    bound is +Inf) */
    uint64_t refused;           /* adding operations refused (EUNAVAILABLE) */
};
extern const double faas_durable_commit_bounds_s[12];

/*
 * Opens the engine named by `url` for `rt`. url NULL: *out = NULL, 0 (the
 * memory engine). `sync`: faas_runtime_opts.durable_sync. `node_id`: this
 * process's identity (NULL = hostname:pid), recorded as the origin of what
 * it accepts. Creates the schema of a new database; checks the schema
 * version of an existing one. Logs (FAAS_LOG_WARNING, action "durable")
 * why it failed.
 * Returns 0, FAAS_EINVAL (a URL no engine takes, or naming an engine this
 * build left out), FAAS_EUNAVAILABLE (cannot be opened or created, locked
 * by another process, not a database or corrupt, another schema version;
 * faas_runtime_last_errno is 0 for these) or FAAS_ENOMEM.
 */
int faas_durable_open(struct faas_durable **out, struct faas_runtime *rt, const char *url,
                      int sync, const char *node_id);

/*
 * Commits what is queued, runs every completion still owed (on the calling
 * loop thread, inside this call), stops the engine and frees it. NULL ok.
 */
void faas_durable_close(struct faas_durable *d);

/* This process's node id (never NULL). */
const char *faas_durable_node(const struct faas_durable *d);

/* Fills *out; d NULL gives zeroes. */
void faas_durable_stats_get(struct faas_durable *d, struct faas_durable_stats *out);

/* The completion of a write that moves or ends kept work, whose answer
 * needs nothing but to reach a drain, which counts uncommitted writes
 * (arg: the runtime). */
void faas_durable_drain_done(int rc, void *arg);

/* ---- async events --------------------------------------------------- */

/* Keeps a new event (all of *ev copied). FAAS_EUNAVAILABLE through `done`
 * when it cannot be kept. Returns 0 or FAAS_ENOMEM. */
int faas_durable_event_put(struct faas_durable *d, const struct faas_durable_event *ev,
                           faas_durable_done_fn done, void *arg);

/* An attempt starts: the event's attempts become `attempts`. The attempt
 * may run once this has committed. Returns 0 or FAAS_ENOMEM. */
int faas_durable_event_attempt(struct faas_durable *d, const char *request_id,
                               uint32_t attempts, faas_durable_done_fn done, void *arg);

/* The event waits for a retry until `due_ms` (wall clock). */
int faas_durable_event_retry(struct faas_durable *d, const char *request_id, int64_t due_ms,
                             faas_durable_done_fn done, void *arg);

/* The event ended: it is deleted and, in the same transaction, `next` (a
 * destination event, or NULL) is put. Returns 0 or FAAS_ENOMEM. */
int faas_durable_event_end(struct faas_durable *d, const char *request_id,
                           const struct faas_durable_event *next, faas_durable_done_fn done,
                           void *arg);

/*
 * The event leaves this host without ending: on a fleet engine (Redis) it
 * goes back to its function's queue for any host, with `attempts` (those
 * that ran: an attempt counted but never started is given back), unless
 * another host took it meanwhile. FAAS_EINVAL on an engine no fleet
 * shares. Returns 0, FAAS_EINVAL or FAAS_ENOMEM.
 */
int faas_durable_event_release(struct faas_durable *d, const char *request_id,
                               uint32_t attempts, faas_durable_done_fn done, void *arg);

/*
 * A fleet engine's queue (Redis): which functions this host runs events
 * of. The engine delivers events of `function` while it is `registered`,
 * at most `credit` more until the next call says otherwise, through
 * faas_async_delivered (async_durable.c), on the loop. `lease_ms`: an
 * event another host took and has not touched for that long is taken
 * over (the function's timeout plus a margin). A no-op on other engines.
 */
void faas_durable_queue_want(struct faas_durable *d, const char *function, int registered,
                             uint32_t credit, uint32_t lease_ms);

/* No more events are taken from a fleet engine's queue (a drain): what
 * this host holds it finishes, the rest stays for the others (an event a
 * read delivers after this goes back at once). */
void faas_durable_queue_stop(struct faas_durable *d);

/* Calls `each` for every event kept, oldest acceptance first; stops at a
 * non-zero return and returns it. `each` may queue operations, never load
 * (the engine's connection is held while it runs). 0, FAAS_EUNAVAILABLE
 * (read error) or what `each` returned. */
int faas_durable_events_load(struct faas_durable *d,
                             int (*each)(const struct faas_durable_event *ev, void *arg),
                             void *arg);

/* ---- mapping records ------------------------------------------------ */

/* Keeps a record; FAAS_EUNAVAILABLE through `done` when it cannot. */
int faas_durable_record_put(struct faas_durable *d, const struct faas_durable_record *rec,
                            faas_durable_done_fn done, void *arg);

/* The record's batch ended (success, or it went to on_failure). */
int faas_durable_record_del(struct faas_durable *d, const char *mapping, uint64_t seq,
                            faas_durable_done_fn done, void *arg);

/* Calls `each` for every record of `mapping`, in seq order. As events_load. */
int faas_durable_records_load(struct faas_durable *d, const char *mapping,
                              int (*each)(const struct faas_durable_record *rec, void *arg),
                              void *arg);

/* ---- schedules ------------------------------------------------------ */

/* The schedule `name` fired for its due time `fired_ms` (wall clock). */
int faas_durable_schedule_set(struct faas_durable *d, const char *name, int64_t fired_ms,
                              faas_durable_done_fn done, void *arg);

/* A claim's answer, on the loop: rc 0, this host won the due time, now the
 * schedule's last fire; FAAS_EEXIST, another host sharing the engine fired
 * it or a later one, and `fleet_ms` is the last fire the fleet kept;
 * FAAS_EUNAVAILABLE, the engine could not answer (the fire is skipped);
 * FAAS_ECANCELED at close. */
typedef void (*faas_durable_claim_fn)(int rc, int64_t fleet_ms, void *arg);

/*
 * Claims due time `due_ms` (wall clock) of schedule `name` for this host,
 * in one atomic operation of the engine: won when no host sharing it kept
 * a fire of `name` less than `gap_ms` (>= 1) before due_ms, or later; a
 * win keeps due_ms as the last fire, as schedule_set. `gap_ms` is the
 * least time between two fires: a rate()'s period (hosts whose rate()
 * started at different times then fall into the winner's step), 1 for
 * cron() and at(). An engine no fleet shares (SQLite) always answers won.
 * The claim adds work: refused (FAAS_EUNAVAILABLE) when the engine is
 * down, never kept for later, so an outage never fires a burst.
 * Returns 0, FAAS_EINVAL or FAAS_ENOMEM; the answer through `done`.
 */
int faas_durable_schedule_claim(struct faas_durable *d, const char *name, int64_t due_ms,
                                int64_t gap_ms, faas_durable_claim_fn done, void *arg);

/* The last fire kept for `name`: 0 and *fired_ms, or FAAS_ENOENT. Reads
 * what was loaded at open plus what was set since: never the disk. */
int faas_durable_schedule_get(struct faas_durable *d, const char *name, int64_t *fired_ms);

/* ---- idempotency ---------------------------------------------------- */

/*
 * A store over the engine, for a function registered with the default store
 * (store NULL) while the runtime has a durable engine: the memory store's
 * semantics (include/faas.h, section 5 of ARCHITECTURE), answers always on
 * the loop, later. `scope` (the function's name, copied) tags its records:
 * the bounds apply per scope, as the memory store's do per function, to
 * `max_entries` records (0 = none) and `max_bytes` of them (0 = 64 MiB),
 * least recently used COMPLETED records evicted first, expired ones swept.
 * The records an earlier run kept under `scope` are loaded (synchronously)
 * when the store is made. The store is the caller's (faas_store_free); it
 * must not be used once the engine is closed, and may be freed before or
 * after (closing runs every answer still owed).
 * Returns 0, FAAS_EINVAL, FAAS_EUNAVAILABLE (the records cannot be read) or
 * FAAS_ENOMEM.
 */
int faas_durable_store_new(struct faas_durable *d, const char *scope, uint32_t max_entries,
                           size_t max_bytes, struct faas_store **out);

/* 1 when the engine is shared by a fleet (Redis): the default store is then
 * faas_durable_shared_store_new's, and async events go through the fleet's
 * queue (faas_durable_queue_want). d NULL: 0. */
int faas_durable_shared(const struct faas_durable *d);

#if FAAS_WITH_REDIS
/*
 * A store whose records live in the engine itself, shared by every host on
 * it (durable_redis_store.c): the memory store's semantics, each operation
 * atomic in Redis, answers on the loop, later, in call order. Records
 * bigger than `max_bytes` (0 = 64 MiB) are refused with FAAS_ETOOBIG; no
 * count bound or LRU (Redis' TTLs and memory policy). The store is the
 * caller's (faas_store_free), used while the engine is open.
 * Returns 0, FAAS_EINVAL or FAAS_ENOMEM.
 */
int faas_durable_shared_store_new(struct faas_durable *d, const char *scope, size_t max_bytes,
                                  struct faas_store **out);
#endif

#endif

/*
 * faas.h - libfaas, an embeddable Functions-as-a-Service runtime.
 *
 * A host program creates a runtime on its own libevent event_base, registers
 * functions (a name, a handler and a policy), and invokes them. Every call in
 * this header is made on the thread that runs the base; every callback is
 * delivered on that thread, from the loop, never inside the call that started
 * the work.
 *
 * Conventions:
 *  - functions return 0 (or a non-negative id) on success and a negative
 *    FAAS_E* code on failure; faas_strerror() names the code;
 *  - strings and option structs passed in are copied;
 *  - json_t arguments are borrowed: the caller keeps its reference;
 *  - returned pointers say in their comment how long they stay valid;
 *  - option structs are versioned: start each from its _INIT macro (or its
 *    faas_*_opts_init() function). A struct's version says which fields the
 *    caller's copy of it has: every call accepts versions 1 to the current
 *    one, reads only the fields that version has (later fields take their
 *    defaults), and refuses a version from the future with FAAS_EINVAL.
 *
 * MIT licensed. See LICENSE.
 */
#ifndef FAAS_H
#define FAAS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FAAS_EXTERN
#elif defined(__GNUC__) || defined(__clang__)
#define FAAS_EXTERN __attribute__((visibility("default")))
#else
#define FAAS_EXTERN
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FAAS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FAAS_PRINTF(f, a)
#endif

/* The one place the version is written: the Makefile reads it from here. */
#define FAAS_VERSION_MAJOR 0
#define FAAS_VERSION_MINOR 1
#define FAAS_VERSION_PATCH 0
#define FAAS_VERSION_STR_(x) #x
#define FAAS_VERSION_XSTR_(x) FAAS_VERSION_STR_(x)
#define FAAS_VERSION_STRING                                                 \
    FAAS_VERSION_XSTR_(FAAS_VERSION_MAJOR) "." FAAS_VERSION_XSTR_(FAAS_VERSION_MINOR) "." \
        FAAS_VERSION_XSTR_(FAAS_VERSION_PATCH)

struct event_base;
struct evhttp;
struct evbuffer;

struct faas_runtime;
struct faas_ctx;
struct faas_result;

/* ------------------------------------------------------------------ */
/* Error codes                                                         */
/* ------------------------------------------------------------------ */

/*
 * The one table of error codes: XX(name, value, message). The values are
 * stable and negative; faas_strerror() returns the message.
 */
#define FAAS_ERRNO_MAP(XX)                                                  \
    XX(EINVAL, -1, "invalid argument")                                      \
    XX(ENOMEM, -2, "out of memory")                                         \
    XX(ENOENT, -3, "no such function")                                      \
    XX(EEXIST, -4, "function already exists")                               \
    XX(EBUSY, -5, "resource busy or called from inside the loop")           \
    XX(ETOOBIG, -6, "payload too large")                                    \
    XX(ETHROTTLED, -7, "rate exceeded: too many concurrent invocations")    \
    XX(ETIMEDOUT, -8, "task timed out")                                     \
    XX(EHANDLER, -9, "the function returned an error")                      \
    XX(ECRASHED, -10, "the function's instance died")                       \
    XX(EMEMLIMIT, -11, "the function exceeded its memory limit")            \
    XX(EINIT, -12, "function initialisation failed")                        \
    XX(ECANCELED, -13, "cancelled: runtime freed or function unregistered") \
    XX(EINPROGRESS, -14, "an invocation with this idempotency key is in progress") \
    XX(EIDEMPOTENCY_MISMATCH, -15, "idempotency key reused with a different payload") \
    XX(ENOKEY, -16, "idempotency key required and absent")                  \
    XX(EPARSE, -17, "parse error")                                          \
    XX(ESYS, -18, "system call failed")                                    \
    XX(EUNAVAILABLE, -19, "durable engine unreachable or failing")          \
    XX(EDRAINING, -20, "the runtime is draining")

enum faas_error {
#define FAAS_ERR_ENUM_(name, value, msg) FAAS_##name = (value),
    FAAS_ERRNO_MAP(FAAS_ERR_ENUM_)
#undef FAAS_ERR_ENUM_
    FAAS_OK = 0
};

/*
 * The message for an error code, or "unknown error" for a value that is not
 * in the table. 0 gives "success". Returns a static string.
 */
FAAS_EXTERN const char *faas_strerror(int err);

/* The code's name without the prefix ("ETIMEDOUT"), or NULL if unknown. */
FAAS_EXTERN const char *faas_strerror_name(int err);

/* The library's version, "MAJOR.MINOR.PATCH". Returns a static string. */
FAAS_EXTERN const char *faas_version(void);

/*
 * The errno of the system call behind the last FAAS_ESYS this runtime
 * returned (faas_register, faas_register_library, faas_register_command,
 * faas_http_bind, faas_watch_dir), so a host can tell EADDRINUSE from
 * EACCES; 0 when no call has failed with FAAS_ESYS. It is not reset by
 * calls that succeed. faas_runtime_new has no runtime to keep it in: when
 * it returns FAAS_ESYS, errno is as the failing system call left it. NULL
 * gives 0.
 */
FAAS_EXTERN int faas_runtime_last_errno(const struct faas_runtime *rt);

/* ------------------------------------------------------------------ */
/* Callbacks and clock                                                 */
/* ------------------------------------------------------------------ */

/*
 * A handler: reads `event` (borrowed, valid until the handler returns; it is
 * read-only: parts of it may be shared with other invocations) and
 * sets *result to a new reference (or leaves it NULL for JSON null), which
 * the runtime takes over. Returns 0 on success; anything else fails the
 * invocation with FAAS_EHANDLER. THREAD handlers run on a worker thread and
 * may only call the faas_ctx_* functions of the runtime.
 */
typedef int (*faas_handler_fn)(struct faas_ctx *ctx, json_t *event, json_t **result);

/*
 * Runs once when an instance is created (the cold start), on the thread the
 * instance runs on. Sets *state to whatever the handler should find with
 * faas_ctx_state(). Returns 0, or non-zero (or faas_ctx_fail()) to fail the
 * cold start with FAAS_EINIT.
 */
typedef int (*faas_init_fn)(struct faas_ctx *ctx, void **state);

/* Runs once when an instance is dropped, with the state init made. */
typedef void (*faas_fini_fn)(void *state);

/* Result callback: `res` is borrowed, valid until the callback returns. */
typedef void (*faas_result_fn)(const struct faas_result *res, void *arg);

/* Kinds of log record delivered to a faas_log_fn. */
enum faas_log_kind {
    FAAS_LOG_REPORT = 1, /* one invocation finished: see `result` */
    FAAS_LOG_LINE = 2,   /* a line logged with faas_ctx_log(): see `line` */
    FAAS_LOG_IDEMPOTENCY = 3, /* an idempotency event: see `action`, `key` */
    FAAS_LOG_ASYNC = 4,  /* an async event's retry or end: see `action`, `line` */
    FAAS_LOG_WARNING = 5 /* the runtime refused or dropped something, or a
                            resource ran out: see `action`, `line` */
};

/*
 * A log record. All pointers are borrowed, valid until the log callback
 * returns.
 */
struct faas_log_record {
    enum faas_log_kind kind;
    const char *function;             /* the function's name */
    const char *request_id;           /* the invocation's request id */
    const char *line;                 /* FAAS_LOG_LINE: the text, no newline */
    const struct faas_result *result; /* FAAS_LOG_REPORT: the result */
    /*
     * FAAS_LOG_IDEMPOTENCY: "store" (a record was taken), "complete",
     * "delete" (a failed invocation dropped its record), "lost" (its
     * record had expired and been taken by another), "replay",
     * "inprogress", "mismatch", "evict" (the memory store's LRU or byte
     * bound), "drop" (the store could not keep a result: line says why;
     * the result was delivered all the same).
     * FAAS_LOG_ASYNC: "retry", "throttled", "success", "failure",
     * "dead-letter", "overflow" (also from a directory watch whose inotify
     * queue overflowed: function and request_id NULL, line names the
     * watch).
     * FAAS_LOG_WARNING: "record-refused" (faas_emit: line says why),
     * "accept" (the HTTP gateway could not accept a connection: line has
     * the system's error; repeats are rate-limited), "connection-limit",
     * "drain", "runtime-api-peer" (a process other than a COMMAND
     * instance's own connected to its Runtime API endpoint and was
     * refused), "stream-cut" (a streamed response's HTTP client read too
     * slowly: the stream was cut), "stream-failed" (a function failed
     * after its streamed reply on an api: route had begun), "durable" (the
     * durable engine: why it cannot be opened, or that its writes started
     * failing, or work again; line says which).
     */
    const char *action;
    const char *key; /* FAAS_LOG_IDEMPOTENCY: the key's hash, hex */
};

typedef void (*faas_log_fn)(const struct faas_log_record *rec, void *arg);

/*
 * A replaceable clock, for tests. now_ns is monotonic; wall_ns is
 * nanoseconds since the Unix epoch. NULL members use the system's clocks.
 * Both may be called from worker threads and must be thread-safe.
 */
struct faas_clock {
    uint64_t (*now_ns)(void *arg);
    int64_t (*wall_ns)(void *arg);
    void *arg;
};

/* ------------------------------------------------------------------ */
/* Runtime                                                             */
/* ------------------------------------------------------------------ */

/*
 * Version 1 ends at secret_access_key; version 2 adds the HTTP limits and
 * runtime_api_allow_remote.
 */
#define FAAS_RUNTIME_OPTS_VERSION 3

struct faas_runtime_opts {
    unsigned int version;       /* FAAS_RUNTIME_OPTS_VERSION */
    unsigned int thread_workers; /* THREAD worker threads; 0 = CPU count */
    int zygote;                 /* 1: fork a zygote for PROCESS and COMMAND
                                   instances in faas_runtime_new; 0: the
                                   host forks them itself */
    size_t max_sync_payload;    /* bytes of serialised JSON; 6 MiB */
    size_t max_async_payload;   /* bytes of serialised JSON; 256 KiB */
    faas_log_fn log;            /* every invocation's record; NULL = none */
    void *log_arg;
    struct faas_clock clock;    /* zeroes: the system clocks */
    size_t http_max_body;       /* HTTP gateway request body; 0 = max_sync_payload */
    size_t http_max_headers;    /* HTTP gateway request headers, bytes; 16 KiB */
    const char *region;         /* awsRegion and ARNs in events; "local" */
    int invoke_api;             /* 1: the HTTP gateway also serves Lambda's
                                   Invoke API (POST /2015-03-31/functions/
                                   {name}/invocations); 0 (the default):
                                   routes only */
    const char *runtime_api_address; /* COMMAND functions' Runtime API
                                   endpoints listen here; "127.0.0.1" */
    const char *access_key_id;  /* Invoke API: with secret_access_key, only */
    const char *secret_access_key; /* requests SigV4-signed with this key
                                   pair are served; NULL = any request */
    uint32_t http_read_timeout_ms; /* HTTP gateway: a request must arrive
                                   whole within this, from its first byte;
                                   0 = 10000 */
    uint32_t http_idle_timeout_ms; /* HTTP gateway: an idle keep-alive
                                   connection is closed; 0 = 60000 */
    uint32_t http_max_connections; /* HTTP gateway: connections beyond this
                                   are accepted and closed at once; 0 = 1024 */
    int runtime_api_allow_remote; /* 1: runtime_api_address may be a
                                   non-loopback address, and peers whose
                                   process cannot be checked (remote ones)
                                   are served unchecked; local peers are
                                   still checked. 0: refused */
    const char *durable;        /* where accepted work survives a crash:
                                   NULL = memory only; "sqlite:PATH";
                                   "redis://HOST:PORT[/DB]" (docs/durability.md) */
    int durable_sync;           /* sqlite: 1 = synchronous FULL, survives a
                                   power loss (the default); 0 = NORMAL */
    const char *durable_prefix; /* redis: key prefix; NULL = "faas" */
    const char *node_id;        /* this host in a fleet; NULL = hostname:pid */
};

#define FAAS_RUNTIME_OPTS_INIT                                              \
    {                                                                       \
        FAAS_RUNTIME_OPTS_VERSION, 0, 1, 6u * 1024u * 1024u, 256u * 1024u,  \
            NULL, NULL, { NULL, NULL, NULL }, 0u, 16u * 1024u, NULL, 0,     \
            NULL, NULL, NULL, 10000u, 60000u, 1024u, 0, NULL, 1, NULL, NULL \
    }

/*
 * Fills *opts with the defaults of FAAS_RUNTIME_OPTS_INIT for the layout of
 * `version` (1..FAAS_RUNTIME_OPTS_VERSION; pass FAAS_RUNTIME_OPTS_VERSION):
 * only that version's fields are written, and opts->version = version.
 * Returns 0 or FAAS_EINVAL (NULL, or an unknown version).
 */
FAAS_EXTERN int faas_runtime_opts_init(struct faas_runtime_opts *opts, unsigned int version);

/*
 * Creates a runtime on the host's event base. The base is borrowed: it must
 * outlive the runtime, and libfaas only adds events to it. `opts` is copied;
 * NULL means the defaults. On success writes the runtime to *out; on failure
 * leaves *out untouched. With opts.zygote (the default) it forks the zygote
 * process, from which worker processes are forked later: call it before the
 * host starts threads, so the zygote is a single-threaded copy of the host.
 * With opts.durable set it opens the durable engine after that fork, and
 * the engine's database is the runtime's alone until it is freed.
 * Returns 0, FAAS_EINVAL (NULL out or base, an opts version from the
 * future, a durable URL no engine of this build takes), FAAS_ENOMEM,
 * FAAS_ESYS (the zygote could not be forked; errno is as the failing call
 * left it) or FAAS_EUNAVAILABLE (the durable engine cannot be used: its
 * database cannot be opened or created, is locked by another process, is
 * not a database or is corrupt, or has another schema version; Redis did
 * not answer within 2 s: the engine does not connect in the background; a
 * FAAS_LOG_WARNING record with action "durable" says which).
 */
FAAS_EXTERN int faas_runtime_new(struct faas_runtime **out, struct event_base *base,
                                 const struct faas_runtime_opts *opts);

/*
 * Frees the runtime: every pending result callback runs once with
 * FAAS_ECANCELED before this returns, worker threads are joined (a THREAD
 * handler that is still running is flagged cancelled and waited for), every
 * instance is finalised. Safe to call from inside a callback of this runtime:
 * the work then happens when that callback returns. NULL is a no-op.
 */
FAAS_EXTERN void faas_runtime_free(struct faas_runtime *rt);

/*
 * The callback of faas_drain(): rc is 0 when nothing was left, or
 * FAAS_ETIMEDOUT with `remaining` units of work (invocations queued or
 * running, async events, batched records) still pending at the deadline.
 */
typedef void (*faas_drain_fn)(int rc, uint64_t remaining, void *arg);

/*
 * Starts a clean shutdown: from now on new work is refused with
 * FAAS_EDRAINING (faas_invoke, faas_invoke_sync, faas_invoke_async,
 * faas_emit; the HTTP gateway answers 503 and closes idle connections;
 * schedules do not fire), batch windows are flushed at once, and queued and
 * running work goes on: invocations waiting for an instance, async events
 * (a retry keeps its backoff), records of mappings, and the destinations
 * and on-failure events the runtime sends as that work ends. `cb` runs
 * once, later, from the loop (never inside this call; with nothing pending,
 * on the next turn of the loop): rc 0 and remaining 0 when nothing is left,
 * or FAAS_ETIMEDOUT at the deadline `timeout_ms` (0 = none) with what
 * remains. faas_runtime_free before that runs `cb` once, inside the free,
 * with FAAS_ECANCELED and what it cancels. The runtime stays usable for
 * reading (faas_stats, metrics), keeps refusing new work after `cb`, and
 * must still be freed with faas_runtime_free, which cancels what is left.
 * Returns 0, FAAS_EINVAL (NULL rt or cb), FAAS_EBUSY (already draining),
 * FAAS_ECANCELED (the runtime is being freed) or FAAS_ENOMEM.
 */
FAAS_EXTERN int faas_drain(struct faas_runtime *rt, uint32_t timeout_ms, faas_drain_fn cb,
                           void *arg);

/* ------------------------------------------------------------------ */
/* Functions                                                           */
/* ------------------------------------------------------------------ */

enum faas_isolation {
    FAAS_ISOLATION_INLINE = 0,
    FAAS_ISOLATION_THREAD = 1,
    FAAS_ISOLATION_PROCESS = 2
};

/* Version 1 ends at store; version 2 adds max_bytes. */
#define FAAS_IDEMPOTENCY_OPTS_VERSION 2

struct faas_store;

struct faas_idempotency_opts {
    unsigned int version;      /* FAAS_IDEMPOTENCY_OPTS_VERSION */
    const char *key_path;      /* dotted path of the key in the event: exact
                                  member names, then ignoring case; array
                                  indices; into strings holding JSON */
    const char *validate_path; /* part that must match on a replay; NULL */
    uint32_t ttl_s;            /* how long a completed result is kept; 3600; > 0 */
    uint32_t max_entries;      /* LRU bound of the memory store; 0 = none */
    int required;              /* 1: a missing key is FAAS_ENOKEY */
    struct faas_store *store;  /* borrowed; NULL: a memory store of the function's own */
    size_t max_bytes;          /* the function's memory store: bytes of
                                  records (faas_store_memory_set_max_bytes);
                                  0 = 64 MiB */
};

#define FAAS_IDEMPOTENCY_OPTS_INIT                                          \
    { FAAS_IDEMPOTENCY_OPTS_VERSION, NULL, NULL, 3600u, 0u, 0, NULL,        \
      64u * 1024u * 1024u }

/* As faas_runtime_opts_init, for FAAS_IDEMPOTENCY_OPTS_INIT. */
FAAS_EXTERN int faas_idempotency_opts_init(struct faas_idempotency_opts *opts,
                                           unsigned int version);

/*
 * Idempotency stores. A store keeps one record per key: a key is the
 * BLAKE2b-256 hash, in 64 lowercase hex characters, of the function's name
 * and the canonical JSON of the idempotency key, so keys of any size cost the
 * same. Times are wall-clock milliseconds since the epoch; a record whose
 * expires_ms is <= now_ms is absent.
 */
enum faas_store_state {
    FAAS_STORE_INPROGRESS = 1,
    FAAS_STORE_COMPLETED = 2
};

struct faas_store_record {
    enum faas_store_state state;
    int status;             /* COMPLETED: the result's status (0) */
    json_t *payload;        /* COMPLETED: the result; borrowed */
    const char *validation; /* 32 hex chars of the validated part, or NULL */
    int64_t expires_ms;
    /*
     * The request id (a UUID string) of the invocation that took the record,
     * or NULL. complete and remove given an owner act only on a record that
     * the same owner holds: an attempt whose record expired (or was evicted)
     * and was taken again by a duplicate cannot complete or drop the
     * duplicate's record.
     */
    const char *owner;
};

/*
 * The answer of a store operation: rc is 0, FAAS_EEXIST (put_if_absent: a
 * live record exists, `rec` is it), FAAS_ENOENT (get, complete, remove: no
 * live record) or another FAAS_E* code. `rec` is borrowed, valid until the
 * callback returns, NULL when there is no record. A store may answer inside
 * the operation's call or later, from the loop.
 */
typedef void (*faas_store_cb)(int rc, const struct faas_store_record *rec, void *arg);

#define FAAS_STORE_OPS_VERSION 1

/*
 * A store implementation. Each operation returns 0 when its callback will
 * run (exactly once), or a FAAS_E* code when it will not. put_if_absent
 * takes the key only if no live record holds it; complete replaces the
 * record only if one exists; records are copied (payload: a reference).
 * A store that cannot keep a record answers FAAS_ETOOBIG (it is bigger than
 * the store allows) or FAAS_ETHROTTLED (records in progress fill the
 * store): a refused put fails the invocation with that code; a refused
 * complete still delivers the result, which is not kept.
 */
struct faas_store_ops {
    unsigned int version; /* FAAS_STORE_OPS_VERSION */
    int (*get)(void *impl, const char *key, int64_t now_ms, faas_store_cb cb, void *arg);
    int (*put_if_absent)(void *impl, const char *key, const struct faas_store_record *rec,
                         int64_t now_ms, faas_store_cb cb, void *arg);
    int (*complete)(void *impl, const char *key, const struct faas_store_record *rec,
                    int64_t now_ms, faas_store_cb cb, void *arg);
    int (*remove)(void *impl, const char *key, const char *owner, int64_t now_ms,
                  faas_store_cb cb, void *arg);
    void (*destroy)(void *impl); /* faas_store_free; NULL: nothing to do */
};

/* Zeroes *ops for the layout of `version` and sets ops->version. Returns 0
 * or FAAS_EINVAL (NULL, or a version outside 1..FAAS_STORE_OPS_VERSION). */
FAAS_EXTERN int faas_store_ops_init(struct faas_store_ops *ops, unsigned int version);

/*
 * Wraps an implementation in a store handle. `ops` is copied; `impl` is
 * borrowed until faas_store_free() calls ops->destroy(impl).
 * Returns 0, FAAS_EINVAL (also: a version from the future) or FAAS_ENOMEM.
 */
FAAS_EXTERN int faas_store_new(struct faas_store **out, const struct faas_store_ops *ops,
                               void *impl);

/*
 * The embedded store: a hash table with an LRU bound of max_entries records
 * (0 = unbounded) and a bound in bytes (64 MiB; see
 * faas_store_memory_set_max_bytes): the least recently used COMPLETED
 * record is evicted first; records in progress are never evicted (the count
 * bound is exceeded while that many invocations run). Expiry is checked on
 * every access. Answers inside each call. Used from one thread. The store
 * is the caller's, freed with faas_store_free(). Returns 0, FAAS_ENOMEM.
 */
FAAS_EXTERN int faas_store_memory_new(struct faas_store **out, uint32_t max_entries);

/*
 * Sets a memory store's bound in bytes; 0 restores the default, 64 MiB. A
 * record costs its payload's compact JSON size and its node, 120 bytes on
 * 64-bit systems (key, validation, owner). To stay under the bound,
 * put_if_absent and complete evict least recently used COMPLETED records; a
 * record that cannot fit is refused and nothing is evicted for it:
 * FAAS_ETOOBIG when it alone is over the bound, FAAS_ETHROTTLED when records
 * in progress hold the rest (a refused complete drops the record it would
 * have completed). Lowering the bound evicts COMPLETED records at once,
 * least recently used first. `st` is borrowed; loop thread only, like the
 * store. Returns 0, or FAAS_EINVAL when st is not a memory store.
 */
FAAS_EXTERN int faas_store_memory_set_max_bytes(struct faas_store *st, size_t max_bytes);

/* Frees a store. It must not be in use by a registered function. NULL ok. */
FAAS_EXTERN void faas_store_free(struct faas_store *st);

/* The store's operations, for hosts and tests: see struct faas_store_ops. */
FAAS_EXTERN int faas_store_get(struct faas_store *st, const char *key, int64_t now_ms,
                               faas_store_cb cb, void *arg);
FAAS_EXTERN int faas_store_put_if_absent(struct faas_store *st, const char *key,
                                         const struct faas_store_record *rec, int64_t now_ms,
                                         faas_store_cb cb, void *arg);
FAAS_EXTERN int faas_store_complete(struct faas_store *st, const char *key,
                                    const struct faas_store_record *rec, int64_t now_ms,
                                    faas_store_cb cb, void *arg);
FAAS_EXTERN int faas_store_remove(struct faas_store *st, const char *key, const char *owner,
                                  int64_t now_ms, faas_store_cb cb, void *arg);
/* Records held by a memory store (live or not yet swept); 0 for others. */
FAAS_EXTERN size_t faas_store_memory_count(const struct faas_store *st);
/* The bytes a memory store's records cost (as max_bytes counts them); 0
 * for other stores. Never more than the bound, except while records in
 * progress alone exceed a bound that was lowered. */
FAAS_EXTERN size_t faas_store_memory_bytes(const struct faas_store *st);

enum faas_overflow { FAAS_OVERFLOW_REJECT = 0, FAAS_OVERFLOW_DROP_OLDEST = 1 };

/* Version 1 ends at dead_letter_arg; version 2 adds max_queue_bytes. */
#define FAAS_ASYNC_OPTS_VERSION 2

struct faas_async_opts {
    unsigned int version;       /* FAAS_ASYNC_OPTS_VERSION */
    uint32_t max_retries;       /* 2 */
    uint32_t retry_base_ms;     /* 1000 */
    uint64_t max_event_age_ms;  /* 6 hours */
    uint32_t max_queue;         /* 100000 events; 0 = unbounded */
    enum faas_overflow overflow;
    const char *on_success;     /* destination function, NULL = none */
    const char *on_failure;     /* destination function, NULL = none */
    faas_result_fn on_complete; /* each event's final result */
    void *on_complete_arg;
    faas_result_fn dead_letter; /* events that failed for good */
    void *dead_letter_arg;
    size_t max_queue_bytes;     /* serialised JSON bytes of the events
                                   waiting; 0 = 64 MiB */
};

#define FAAS_ASYNC_OPTS_INIT                                                \
    {                                                                       \
        FAAS_ASYNC_OPTS_VERSION, 2u, 1000u, 6u * 3600u * 1000u, 100000u,    \
            FAAS_OVERFLOW_REJECT, NULL, NULL, NULL, NULL, NULL, NULL,       \
            64u * 1024u * 1024u                                             \
    }

/* As faas_runtime_opts_init, for FAAS_ASYNC_OPTS_INIT. */
FAAS_EXTERN int faas_async_opts_init(struct faas_async_opts *opts, unsigned int version);

#define FAAS_FUNCTION_OPTS_VERSION 1

struct faas_function_opts {
    unsigned int version;          /* FAAS_FUNCTION_OPTS_VERSION */
    enum faas_isolation isolation; /* THREAD */
    uint32_t timeout_ms;           /* 3000; 0 = none */
    uint32_t init_timeout_ms;      /* 10000; 0 = none */
    uint32_t memory_mb;            /* 128 */
    uint32_t min_warm;             /* instances kept warm; 0 */
    uint32_t max_concurrency;      /* instances at most; 0 = unlimited */
    uint32_t max_queue;            /* invocations that may wait; 0 */
    uint32_t idle_timeout_ms;      /* reap idle instances; 600000; 0 = never */
    uint32_t max_uses;             /* recycle after; 0 = unlimited */
    faas_init_fn init;             /* NULL: no init */
    faas_fini_fn fini;             /* NULL: no fini */
    const struct faas_idempotency_opts *idempotency; /* NULL: none */
    const struct faas_async_opts *async;             /* NULL: defaults */
    const char *handler;           /* COMMAND: _HANDLER */
    const char *task_root;         /* COMMAND: LAMBDA_TASK_ROOT, cwd */
    const char *const *env;        /* COMMAND: "KEY=VALUE", NULL-terminated */
};

#define FAAS_FUNCTION_OPTS_INIT                                             \
    {                                                                       \
        FAAS_FUNCTION_OPTS_VERSION, FAAS_ISOLATION_THREAD, 3000u, 10000u,   \
            128u, 0u, 0u, 0u, 600000u, 0u, NULL, NULL, NULL, NULL, NULL,    \
            NULL, NULL                                                      \
    }

/* As faas_runtime_opts_init, for FAAS_FUNCTION_OPTS_INIT. */
FAAS_EXTERN int faas_function_opts_init(struct faas_function_opts *opts, unsigned int version);

/* Longest function name accepted, in bytes (Lambda's limit). */
#define FAAS_NAME_MAX 64

/*
 * Registers a function under `name` (copied; 1..FAAS_NAME_MAX bytes of
 * letters, digits, '-' and '_'). `opts` is copied; NULL means the defaults.
 * Instances for min_warm are created at once, in the background.
 * FAAS_ISOLATION_PROCESS runs `fn` in worker processes forked from the
 * zygote, a copy of the host image: `fn`, init and fini must be in the
 * executable or in a library loaded before faas_runtime_new.
 * Returns 0, FAAS_EINVAL (NULL or bad arguments, an opts version from the
 * future, in opts or the idempotency and async options it points to, an
 * unknown isolation, min_warm above max_concurrency), FAAS_EEXIST,
 * FAAS_ENOMEM, FAAS_ESYS (a worker thread could not be started:
 * faas_runtime_last_errno says why) or FAAS_EUNAVAILABLE (an idempotent
 * function with the default store: the durable engine could not read the
 * records it kept for this function).
 */
FAAS_EXTERN int faas_register(struct faas_runtime *rt, const char *name,
                              faas_handler_fn fn, const struct faas_function_opts *opts);

/*
 * Registers a function whose handler is `symbol` (a faas_handler_fn) in the
 * shared object `so_path` (both copied). If the object also defines
 * `<symbol>_init` (a faas_init_fn) and `<symbol>_fini` (a faas_fini_fn) they
 * are the instance's init and fini, unless opts names its own. PROCESS
 * functions load the object in each worker (dlopen there, never in the
 * host); INLINE and THREAD ones load it into the host once, at
 * registration, and unload it when the function is gone.
 * Returns what faas_register returns, and FAAS_ENOENT when the object is
 * not readable, or (INLINE, THREAD) cannot be loaded or lacks the symbol.
 * For PROCESS a symbol missing in the object shows at a worker's first
 * cold start: FAAS_EINIT with errorType Runtime.HandlerNotFound.
 */
FAAS_EXTERN int faas_register_library(struct faas_runtime *rt, const char *name,
                                      const char *so_path, const char *symbol,
                                      const struct faas_function_opts *opts);

/*
 * Registers a COMMAND function: each instance is the external process
 * argv[0] (a path; argv is copied, NULL-terminated) speaking the AWS Lambda
 * Runtime API (2018-06-01) to a loopback endpoint of libfaas, with the
 * environment a Lambda custom runtime expects (AWS_LAMBDA_RUNTIME_API,
 * _HANDLER from opts->handler, LAMBDA_TASK_ROOT and the working directory
 * from opts->task_root, AWS_LAMBDA_FUNCTION_NAME, ..._VERSION,
 * ..._MEMORY_SIZE, AWS_LAMBDA_LOG_GROUP_NAME, ..._LOG_STREAM_NAME,
 * AWS_REGION, TZ) plus opts->env. Its stdout and stderr lines reach the log
 * callback. opts->isolation is ignored; init and fini must be NULL.
 * Timeouts, memory limits, crashes and the pool behave as for PROCESS.
 * Returns what faas_register returns; FAAS_EINVAL also for an empty argv,
 * or init/fini in opts.
 */
FAAS_EXTERN int faas_register_command(struct faas_runtime *rt, const char *name,
                                      const char *const argv[],
                                      const struct faas_function_opts *opts);

/*
 * Removes a function. Invocations still waiting for it complete with
 * FAAS_ECANCELED, from the loop; running ones are flagged cancelled and
 * complete with FAAS_ECANCELED; their instances are finalised when their
 * handlers return. Async events still queued end inside this call
 * (on_complete, dead_letter and on_failure with FAAS_ECANCELED). The name
 * can be registered again at once.
 * Returns 0, FAAS_EINVAL or FAAS_ENOENT.
 */
FAAS_EXTERN int faas_unregister(struct faas_runtime *rt, const char *name);

/* ------------------------------------------------------------------ */
/* Invocation                                                          */
/* ------------------------------------------------------------------ */

/* A request id: a UUIDv4 string and its terminating NUL. */
#define FAAS_REQUEST_ID_SIZE 37

/*
 * An async event's acceptance (faas_invoke_opts.on_accepted): on the loop,
 * never inside the call; rc 0 once the event is durable (without a durable
 * engine: on the loop's next turn), or a negative code when it was not
 * accepted after all (FAAS_EUNAVAILABLE: the engine could not keep it;
 * FAAS_ETHROTTLED: on Redis, the function's queue is full fleet-wide;
 * FAAS_EDRAINING). The caller may offer the event again after either of
 * the first two. `request_id` is the one the call wrote; borrowed.
 */
typedef void (*faas_accept_fn)(int rc, const char *request_id, void *arg);

/* Streamed bytes of a response (faas_invoke_opts.on_chunk): on the loop, in
 * order, before the result callback. `data` is borrowed for the call. */
typedef void (*faas_chunk_fn)(const void *data, size_t len, void *arg);

/* Version 1 ends at log_tail; version 2 adds on_accepted, accepted_arg,
 * on_chunk and chunk_arg. */
#define FAAS_INVOKE_OPTS_VERSION 2

struct faas_invoke_opts {
    unsigned int version;    /* FAAS_INVOKE_OPTS_VERSION */
    uint32_t timeout_ms;     /* 0 = the function's; may only shorten it */
    const char *idempotency_key; /* copied; NULL = from the event */
    const char *trace_id;    /* copied; NULL = none */
    json_t *client_context;  /* borrowed; NULL = none */
    int log_tail;            /* 1: the result keeps the last 4 KiB of the
                                invocation's log lines (faas_result_log_tail) */
    faas_accept_fn on_accepted; /* async only: runs exactly once for each
                                faas_invoke_async that returned 0; NULL = none */
    void *accepted_arg;
    faas_chunk_fn on_chunk;  /* streamed response bytes; NULL = none (a
                                streamed body then arrives whole in the
                                result) */
    void *chunk_arg;
};

#define FAAS_INVOKE_OPTS_INIT                                               \
    { FAAS_INVOKE_OPTS_VERSION, 0u, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL }

/* As faas_runtime_opts_init, for FAAS_INVOKE_OPTS_INIT. */
FAAS_EXTERN int faas_invoke_opts_init(struct faas_invoke_opts *opts, unsigned int version);

/*
 * Invokes a function, request/response. `event` is borrowed (NULL is JSON
 * null); the runtime keeps its own reference (INLINE) or a deep copy
 * (THREAD), so do not modify it until `cb` has run. `opts` may be NULL.
 * `cb` runs exactly once, later, from the loop, with the result; if this
 * call returns an error it never runs.
 * Returns 0, FAAS_EINVAL, FAAS_ENOENT, FAAS_ETOOBIG (event over the sync
 * payload limit), FAAS_ETHROTTLED (max_concurrency instances busy and
 * max_queue invocations waiting), FAAS_ENOKEY (idempotency key required and
 * absent), FAAS_ECANCELED (the runtime is being freed) or FAAS_ENOMEM.
 * Results an idempotency store decides come through `cb`: a replay (status
 * and payload of the stored result, faas_result_replayed() true),
 * FAAS_EINPROGRESS, FAAS_EIDEMPOTENCY_MISMATCH.
 */
FAAS_EXTERN int faas_invoke(struct faas_runtime *rt, const char *name, json_t *event,
                            const struct faas_invoke_opts *opts, faas_result_fn cb,
                            void *arg);

/*
 * Invokes a function and waits for its result by running the host's event
 * base (other events on it may run meanwhile). On success writes a result
 * that the caller owns and frees with faas_result_free(); the call succeeds
 * whenever a result was produced, so check faas_result_status().
 * Returns 0, FAAS_EBUSY (called from inside a callback of the loop; for a
 * callback of the host's own events libevent also logs a warning about a
 * nested loop), FAAS_ECANCELED (the runtime was freed meanwhile), or any
 * error of faas_invoke().
 */
FAAS_EXTERN int faas_invoke_sync(struct faas_runtime *rt, const char *name, json_t *event,
                                 const struct faas_invoke_opts *opts,
                                 struct faas_result **out);

/*
 * Invokes a function asynchronously, as Lambda's Event invocation type: the
 * event (borrowed; a deep copy is queued) waits in the function's async
 * queue and runs as soon as an instance is free; failures are retried per
 * the function's faas_async_opts, and each event ends exactly once: success
 * (on_complete, on_success), or failure (on_complete, on_failure,
 * dead_letter). Writes the request id, which every attempt keeps.
 * Returns 0, FAAS_EINVAL (also: an idempotency key that is not UTF-8),
 * FAAS_ENOENT, FAAS_ETOOBIG (event over the async payload limit),
 * FAAS_ETHROTTLED (queue full with FAAS_OVERFLOW_REJECT), FAAS_ENOKEY,
 * FAAS_ECANCELED (the runtime is being freed) or FAAS_ENOMEM. On error
 * nothing is queued. Attempts held back by a busy function count in
 * faas_stats' throttles, as Lambda counts them.
 * With a durable engine (faas_runtime_opts.durable) the event starts only
 * once it is kept, and opts->on_accepted says when (0) or that it could not
 * be (FAAS_EUNAVAILABLE: nothing of it is kept or run, except on Redis
 * when the connection broke after Redis applied the put; FAAS_ETHROTTLED:
 * on Redis, the fleet-wide queue is full); each event ends at least once,
 * possibly twice after a crash (docs/durability.md), never with
 * FAAS_ECANCELED: what the runtime's end or faas_unregister leaves stays
 * kept for the next start (on Redis, for any host of the fleet).
 */
FAAS_EXTERN int faas_invoke_async(struct faas_runtime *rt, const char *name, json_t *event,
                                  const struct faas_invoke_opts *opts,
                                  char request_id[FAAS_REQUEST_ID_SIZE]);

/* Frees a result returned by faas_invoke_sync(). NULL is a no-op. */
FAAS_EXTERN void faas_result_free(struct faas_result *res);

/* 0 on success, or the FAAS_E* code the invocation failed with. */
FAAS_EXTERN int faas_result_status(const struct faas_result *res);

/*
 * The payload: the handler's result on success, the error object
 * {"errorType":..., "errorMessage":...} on failure. Borrowed, valid as long
 * as the result; incref it to keep it.
 * A streamed response (faas_ctx_stream_write) that succeeded: JSON null
 * when the invocation had an on_chunk callback (the bytes went there);
 * without one, the bytes written, whole: a JSON string when they are UTF-8,
 * else {"body": BASE64, "isBase64Encoded": true}. Bytes collected that way
 * are bounded by max_sync_payload: past it the invocation fails with
 * FAAS_ETOOBIG (Function.ResponseSizeTooLarge).
 */
FAAS_EXTERN json_t *faas_result_payload(const struct faas_result *res);

/* Borrowed strings, valid as long as the result. */
FAAS_EXTERN const char *faas_result_request_id(const struct faas_result *res);
FAAS_EXTERN const char *faas_result_function_name(const struct faas_result *res);
FAAS_EXTERN const char *faas_result_error_type(const struct faas_result *res);    /* NULL on success */
FAAS_EXTERN const char *faas_result_error_message(const struct faas_result *res); /* NULL on success */

/* Time in the handler, and in init for a cold start (0 when warm). */
FAAS_EXTERN uint64_t faas_result_duration_us(const struct faas_result *res);
FAAS_EXTERN uint64_t faas_result_init_duration_us(const struct faas_result *res);
/* The duration rounded up to the next millisecond, at least 1 ms. */
FAAS_EXTERN uint64_t faas_result_billed_duration_ms(const struct faas_result *res);
FAAS_EXTERN uint32_t faas_result_memory_size_mb(const struct faas_result *res);
FAAS_EXTERN int faas_result_cold_start(const struct faas_result *res);
/*
 * Peak memory of the instance in KiB. INLINE and THREAD instances share the
 * host process: they report its peak resident size.
 */
FAAS_EXTERN uint64_t faas_result_max_memory_kb(const struct faas_result *res);
FAAS_EXTERN int faas_result_replayed(const struct faas_result *res);
/*
 * 1 when the result is delivered by a process other than the one that
 * accepted its event: after a restart on a durable engine (the event was
 * recovered), or by another host of a fleet. 0 in the accepting process,
 * and for NULL.
 */
FAAS_EXTERN int faas_result_recovered(const struct faas_result *res);

/* Size of the log tail a result keeps (Lambda's X-Amz-Log-Result). */
#define FAAS_LOG_TAIL_MAX 4096

/*
 * The last FAAS_LOG_TAIL_MAX bytes of the invocation's log lines, each
 * ending in a newline, when it was invoked with opts.log_tail; else NULL.
 * Borrowed, valid as long as the result.
 */
FAAS_EXTERN const char *faas_result_log_tail(const struct faas_result *res);
/*
 * The final result of an async event (on_complete, dead_letter) carries the
 * event (borrowed, valid as long as the result) and the number of attempts
 * that ran (0 when none did: overflow, age, cancellation); for other results
 * these are NULL and 1.
 */
FAAS_EXTERN json_t *faas_result_event(const struct faas_result *res);
FAAS_EXTERN uint32_t faas_result_attempts(const struct faas_result *res);

/*
 * Formats Lambda's REPORT line into buf (NUL-terminated, truncated to size):
 * "REPORT RequestId: <id>\tDuration: 1.23 ms\tBilled Duration: 2 ms\t
 * Memory Size: 128 MB\tMax Memory Used: 3 MB[\tInit Duration: 4.56 ms]".
 * Returns the length the whole line needs, like snprintf, or FAAS_EINVAL.
 */
FAAS_EXTERN int faas_result_report(const struct faas_result *res, char *buf, size_t size);

/* ------------------------------------------------------------------ */
/* Context (inside handlers and init)                                  */
/* ------------------------------------------------------------------ */

/* Borrowed strings, valid until the handler returns. */
FAAS_EXTERN const char *faas_ctx_request_id(const struct faas_ctx *ctx);
FAAS_EXTERN const char *faas_ctx_function_name(const struct faas_ctx *ctx);
/* The trace id given to the invocation, or NULL. */
FAAS_EXTERN const char *faas_ctx_trace_id(const struct faas_ctx *ctx);

/* Milliseconds until the deadline (negative past it); INT64_MAX if none. */
FAAS_EXTERN int64_t faas_ctx_remaining_ms(const struct faas_ctx *ctx);
FAAS_EXTERN uint32_t faas_ctx_memory_limit_mb(const struct faas_ctx *ctx);
/* Non-zero once the invocation timed out or was cancelled: stop and return. */
FAAS_EXTERN int faas_ctx_cancelled(const struct faas_ctx *ctx);
/* The state this instance's init made (NULL without init). */
FAAS_EXTERN void *faas_ctx_state(const struct faas_ctx *ctx);
/* The client context given to the invocation (borrowed), or NULL. */
FAAS_EXTERN json_t *faas_ctx_client_context(const struct faas_ctx *ctx);

/*
 * Fails the invocation with FAAS_EHANDLER (FAAS_EINIT inside init), whatever
 * the handler then returns. error_type NULL means "Error"; the message is
 * formatted like printf; the type is cut at 1 KiB and the message at
 * 64 KiB, each at a whole UTF-8 character. The first call wins. Returns
 * FAAS_EHANDLER, or
 * FAAS_EINIT inside init, so a handler can `return faas_ctx_fail(...)`.
 */
FAAS_EXTERN int faas_ctx_fail(struct faas_ctx *ctx, const char *error_type, const char *fmt,
                              ...) FAAS_PRINTF(3, 4);

/*
 * Logs a line for this invocation; it reaches the runtime's log callback as a
 * FAAS_LOG_LINE record tagged with the request id, before the invocation's
 * REPORT (for a THREAD invocation that timed out or was cancelled: when its
 * handler returns, after the REPORT). One call is one line: control
 * characters are escaped as C and JSON write them ("\n", "\r", "\t", other
 * bytes below 0x20 and 0x7f as "\u00XX"; UTF-8 stays as it is), trailing
 * newlines dropped. Lines over 4 KiB (escaped) are truncated. An invocation
 * keeps at most 1 MiB of lines; past that, one line says they were cut.
 */
FAAS_EXTERN void faas_ctx_log(struct faas_ctx *ctx, const char *fmt, ...) FAAS_PRINTF(2, 3);

/*
 * Streams `len` bytes of the response (Lambda's response streaming): the
 * caller gets them as they come, in order, before the result (invoke opts
 * on_chunk; an InvokeWithResponseStream client as PayloadChunk events; an
 * api: route caller as the chunked body). Once a handler has called it, the
 * response is the bytes written and nothing else: the JSON the handler
 * returns is dropped, and the result's payload is JSON null when the caller
 * took the bytes as chunks, or the bytes themselves when it did not
 * (faas_result_payload says how). `data` is copied before the call
 * returns; len 0 only marks the response as streamed. Call it from the
 * handler (any isolation mode), never from init.
 * Threading: the thread the handler runs on. INLINE: the caller's chunk
 * callback may run inside this call. THREAD: it may block while the loop
 * has not yet taken 1 MiB of earlier chunks (back-pressure).
 * Returns 0, FAAS_EINVAL (NULL ctx, NULL data with len > 0, inside init, or
 * a context that cannot stream) or FAAS_ECANCELED (the caller went away,
 * read too slowly, or the invocation ended: what is written is dropped).
 */
FAAS_EXTERN int faas_ctx_stream_write(struct faas_ctx *ctx, const void *data, size_t len);

/* ------------------------------------------------------------------ */
/* Event sources                                                       */
/* ------------------------------------------------------------------ */

/* Version 1 ends at on_failure; version 2 adds name. */
#define FAAS_MAP_OPTS_VERSION 2

/*
 * Event-source-mapping options. Batching, filters and failure handling apply
 * to host-fed sources (s3:, dynamodb:, stream:, queue:); api: and schedule:
 * mappings use none of them.
 */
struct faas_map_opts {
    unsigned int version;       /* FAAS_MAP_OPTS_VERSION */
    uint32_t batch_size;        /* records per invocation, 1..10000; 0 = 1 */
    uint32_t batch_window_ms;   /* wait this long for a batch to fill; 0 */
    const char *filter;         /* JSON: one EventBridge pattern or an array
                                   of up to 5 (OR); copied; NULL = all */
    int32_t max_retries;        /* -1: until max_record_age_ms runs out */
    uint64_t max_record_age_ms; /* 0: no age limit */
    int bisect_on_error;        /* split a failing batch in two and retry */
    int report_batch_item_failures; /* honour {"batchItemFailures": [...]} */
    uint32_t parallelization;   /* batches in flight per mapping, 1..10; 0 = 1 */
    const char *partition_key_path; /* dotted path, walked as key_path is:
                                   records with the same key run in order;
                                   NULL = the source's key */
    const char *on_failure;     /* function invoked async with records that
                                   failed for good; copied; NULL = none */
    const char *name;           /* the mapping's durable identity: records
                                   it holds and a schedule's last fire are
                                   kept under it; copied; NULL = "SOURCE
                                   FUNCTION" */
};

#define FAAS_MAP_OPTS_INIT                                                  \
    { FAAS_MAP_OPTS_VERSION, 0u, 0u, NULL, -1, 0u, 0, 0, 0u, NULL, NULL, NULL }

/* As faas_runtime_opts_init, for FAAS_MAP_OPTS_INIT. */
FAAS_EXTERN int faas_map_opts_init(struct faas_map_opts *opts, unsigned int version);

/*
 * Maps an event source to a function. Source keys: "api:[METHOD ]/path"
 * (an HTTP route: {name} segments, a {proxy+} tail, a trailing *; METHOD
 * ANY or none matches all), "schedule:rate(...)" / "schedule:cron(...)" /
 * "schedule:at(...)", "s3:ObjectCreated:*" and other S3 event names ("*"
 * globs the event type; "s3:ObjectCreated" alone means all of them),
 * "dynamodb:INSERT" / "MODIFY" / "REMOVE" / "*", "stream:NAME", "queue:NAME".
 * `source`, `function` and `opts` are copied; the function must exist when
 * the mapping is made, and a mapping whose function is later unregistered
 * drops what it has (to on_failure, if any).
 * Every mapping has a name, its durable identity: opts->name (1 to 1024
 * bytes), or "SOURCE FUNCTION" (the source key as given, a space, the
 * function's name). Two live mappings never share a name; an unmapped one
 * lets its name go. With a durable engine (faas_runtime_opts.durable), a
 * host-fed mapping keeps the records it holds under its name, and a
 * schedule its last fire: a mapping made with the name of one from an
 * earlier run takes over what that one left (the records, queued first,
 * in order; a fire missed while the host was down, fired once, for the
 * latest due time). docs/event-sources.md, "Durability".
 * Returns the mapping id (>= 0), FAAS_EINVAL (also an empty or over-long
 * name), FAAS_EPARSE (a bad source key, schedule or filter; an S3 pattern
 * that matches none of S3's event names), FAAS_ENOENT (no such function),
 * FAAS_EEXIST (a live mapping has the name; an identical api: route),
 * FAAS_EUNAVAILABLE (the durable engine could not read the records kept
 * under the name) or FAAS_ENOMEM.
 */
FAAS_EXTERN int faas_map(struct faas_runtime *rt, const char *source, const char *function,
                         const struct faas_map_opts *opts);

/*
 * Checks a source key as faas_map() would, without a runtime or a function:
 * for a host that validates its configuration before it starts. S3 patterns
 * must match at least one of S3's event names ("s3:Nope" never fires).
 * Returns 0, FAAS_EINVAL (NULL), FAAS_EPARSE or FAAS_ENOMEM.
 */
FAAS_EXTERN int faas_source_check(const char *source);

/*
 * Removes a mapping: its timer or route goes at once; records it had
 * batched are dropped (to on_failure, if any); invocations in flight end as
 * they would. Returns 0, FAAS_EINVAL or FAAS_ENOENT.
 */
FAAS_EXTERN int faas_unmap(struct faas_runtime *rt, int mapping_id);

/*
 * Feeds a record to the mappings of a host-fed source: `source` names one
 * concrete event ("s3:ObjectCreated:Put", "dynamodb:INSERT",
 * "stream:orders", "queue:jobs"). `record` (borrowed) is either a complete
 * record of that source (it has "eventSource") or the parts of one, which
 * the runtime completes into the shape Lambda delivers: s3: {"bucket",
 * "key", "size", "eTag"}; dynamodb: {"Keys", "NewImage", "OldImage"}; stream:
 * {"partitionKey", "data"} (data: any JSON, sent base64 as Kinesis does);
 * queue: {"body", "attributes", "messageAttributes"}. Each mapping's filter
 * runs first; matching records are queued per mapping and delivered in
 * {"Records": [...]} batches.
 * With a durable engine, each mapping that takes the record hands it to the
 * engine first, and batches it only once it is committed: a record is
 * durable within the engine's next group commit (milliseconds) after this
 * call returns, not at the return, so a host that dies in between can lose
 * it; a host that must know uses faas_emit_with() and its on_accepted. A
 * record the engine refuses (disk full) is dropped by that mapping, with a
 * FAAS_LOG_WARNING "record-refused" log record. The engine keeps it until
 * its batch ends (success, or failed for good and sent to on_failure).
 * Returns the number of mappings that took the record (0: none matched),
 * FAAS_EINVAL, FAAS_EPARSE (an unknown source kind), FAAS_ETOOBIG,
 * FAAS_ETHROTTLED (every matching mapping holds its byte bound of records
 * waiting), FAAS_EDRAINING or FAAS_ENOMEM. A refused record is also named,
 * with the reason, in a FAAS_LOG_WARNING "record-refused" log record.
 */
FAAS_EXTERN int faas_emit(struct faas_runtime *rt, const char *source, json_t *record);

/*
 * A record's acceptance (faas_emit_opts.on_accepted): on the loop, never
 * inside the call, exactly once for each faas_emit_with() that returned 0 or
 * more. rc is the number of mappings that keep the record: with a durable
 * engine, once each of them has it committed, so it survives a crash;
 * without one, on the loop's next turn, what the call returned. Or a
 * negative code: FAAS_EUNAVAILABLE when the engine could not keep it for at
 * least one mapping (that one dropped it; others may still deliver it, so
 * emitting it again can deliver it twice to them), FAAS_ECANCELED when the
 * runtime was freed first.
 */
typedef void (*faas_emit_accept_fn)(int rc, void *arg);

/* Version 1: on_accepted and accepted_arg. */
#define FAAS_EMIT_OPTS_VERSION 1

struct faas_emit_opts {
    unsigned int version;            /* FAAS_EMIT_OPTS_VERSION */
    faas_emit_accept_fn on_accepted; /* NULL = none */
    void *accepted_arg;
};

#define FAAS_EMIT_OPTS_INIT { FAAS_EMIT_OPTS_VERSION, NULL, NULL }

/* As faas_runtime_opts_init, for FAAS_EMIT_OPTS_INIT. */
FAAS_EXTERN int faas_emit_opts_init(struct faas_emit_opts *opts, unsigned int version);

/*
 * faas_emit() with options (NULL: faas_emit itself): opts->on_accepted
 * tells the host when the record is durable (see faas_emit_accept_fn), as
 * faas_invoke_opts.on_accepted does for an async event. `opts` is copied.
 * Returns what faas_emit returns, and FAAS_EINVAL also for an options
 * struct of an unknown version.
 */
FAAS_EXTERN int faas_emit_with(struct faas_runtime *rt, const char *source, json_t *record,
                               const struct faas_emit_opts *opts);

/*
 * Serves the api: routes and the Invoke API (runtime option invoke_api) on
 * the host's evhttp
 * server: libfaas sets its generic callback, so routes the host registered
 * with evhttp_set_cb keep theirs. The evhttp is borrowed and must outlive
 * the runtime; its allowed methods stay the host's (libevent refuses PATCH
 * and OPTIONS unless evhttp_set_allowed_methods allows them). The runtime's
 * HTTP limits (http_read_timeout_ms, http_idle_timeout_ms,
 * http_max_connections, and pausing on accept failures) apply to every
 * connection of that server: libfaas sets its bufferevent callback
 * (evhttp_set_bevcb) and its listeners' error callbacks, so a host must not
 * set its own (a host that needs TLS should bind its own server and proxy).
 * Returns 0, FAAS_EINVAL or FAAS_EBUSY (already attached).
 */
FAAS_EXTERN int faas_http_attach(struct faas_runtime *rt, struct evhttp *http);

/*
 * Creates an evhttp server of the runtime's own on address:port (port 0: a
 * free port; faas_http_port() tells which) and serves the routes on it.
 * Returns 0, FAAS_EINVAL, FAAS_EBUSY (already serving) or FAAS_ESYS (the
 * address could not be bound: faas_runtime_last_errno says why, e.g.
 * EADDRINUSE or EACCES).
 */
FAAS_EXTERN int faas_http_bind(struct faas_runtime *rt, const char *address, uint16_t port);

/* The port faas_http_bind() listens on, or 0. */
FAAS_EXTERN uint16_t faas_http_port(const struct faas_runtime *rt);

/*
 * Undoes faas_http_attach or faas_http_bind: the gateway stops serving.
 * Requests it holds are answered 503 at once (their invocations go on and
 * their results are dropped). An attached evhttp gets its generic callback
 * and bufferevent callback back unset (NULL) and its listeners' error
 * callbacks cleared; its connections stay open, the host's. A bound server
 * is freed, with its connections. Routes stay mapped: a later attach or
 * bind serves them again. Returns 0, FAAS_EINVAL (NULL), FAAS_ENOENT (not
 * serving) or FAAS_EBUSY (called from a callback the gateway itself is
 * running: a log record or an idempotency store of a request it admits).
 */
FAAS_EXTERN int faas_http_detach(struct faas_runtime *rt);

/*
 * Watches a directory (inotify, on the host's loop) and emits
 * "s3:ObjectCreated:Put" when a file is closed after writing or moved in,
 * and "s3:ObjectRemoved:Delete" when one is deleted or moved out, with
 * bucket = `bucket`, key = the path relative to `dir`, size and eTag.
 * Subdirectories are watched too, and those created or moved in are
 * scanned. eTag is the hex BLAKE2b-128 of the content (S3 uses MD5). Files
 * present when the watch starts are not emitted. A queue overflow rescans
 * the tree and is logged (FAAS_LOG_ASYNC, "overflow"). Watches last until
 * faas_unwatch or faas_runtime_free. Returns a watch id (>= 0), FAAS_EINVAL,
 * FAAS_ENOENT (no such directory) or FAAS_ESYS (faas_runtime_last_errno says
 * why: ENOSPC is the inotify watch limit).
 */
FAAS_EXTERN int faas_watch_dir(struct faas_runtime *rt, const char *bucket, const char *dir);

/*
 * Ends a watch of faas_watch_dir: nothing more is emitted for its directory
 * from this call on (records it already emitted stay with their mappings).
 * Safe inside a callback, even one running for a record of this watch.
 * Returns 0, FAAS_EINVAL or FAAS_ENOENT (no such watch, or already ended).
 */
FAAS_EXTERN int faas_unwatch(struct faas_runtime *rt, int watch_id);

/* ------------------------------------------------------------------ */
/* Schedules                                                           */
/* ------------------------------------------------------------------ */

/*
 * The first time strictly after `after` (seconds since the epoch, UTC) at
 * which the schedule expression fires: "rate(5 minutes)", "cron(0 12 ? *
 * MON-FRI *)" (EventBridge's six fields) or "at(2027-01-01T09:00:00)". For
 * rate() that is `after` plus the period. Pure: no clock, no allocation.
 * Returns 0 and writes *next, FAAS_EINVAL (NULL argument), FAAS_EPARSE (an
 * invalid expression) or FAAS_ENOENT (it never fires after `after`).
 */
FAAS_EXTERN int faas_schedule_next(const char *expr, time_t after, time_t *next);

/* ------------------------------------------------------------------ */
/* Metrics                                                             */
/* ------------------------------------------------------------------ */

/*
 * A function's counters. The struct grows at its end: a host compiled
 * against a later header passes its size to faas_stats_read(), which fills
 * what that size holds. faas_stats() fills the first version's fields only
 * (those below, up to `queued`), forever.
 */
struct faas_stats {
    uint64_t invocations; /* invocations that produced a result */
    uint64_t errors;      /* results with a non-zero status */
    uint64_t timeouts;    /* results with FAAS_ETIMEDOUT */
    uint64_t throttles;   /* invocations refused with FAAS_ETHROTTLED */
    uint64_t cold_starts; /* instances created for an invocation */
    uint64_t replays;     /* idempotent replays */
    uint32_t instances;   /* instances alive now */
    uint32_t concurrency; /* instances busy now */
    uint32_t queued;      /* invocations waiting for an instance now */
};

/*
 * Reads one function's counters, or the sum over all functions when
 * `function` is NULL. Writes the fields of the first version of struct
 * faas_stats only; use faas_stats_read() to get later ones.
 * Returns 0, FAAS_EINVAL or FAAS_ENOENT.
 */
FAAS_EXTERN int faas_stats(struct faas_runtime *rt, const char *function,
                           struct faas_stats *out);

/*
 * As faas_stats(), for a struct of `size` bytes: pass sizeof(struct
 * faas_stats) as the host sees it. The fields that fit in `size` are
 * written; nothing past `size` is touched.
 * Returns 0, FAAS_EINVAL (also: a size smaller than the first version's
 * struct, or larger than this library's) or FAAS_ENOENT.
 */
FAAS_EXTERN int faas_stats_read(struct faas_runtime *rt, const char *function,
                                struct faas_stats *out, size_t size);

/*
 * Appends the counters and duration histograms of every function to `out`
 * in the Prometheus text exposition format, labelled function="<name>".
 * With a durable engine it adds the engine's transactions
 * (faas_durable_commit_seconds, a histogram), the operations waiting for
 * one (faas_durable_pending) and the accepts it refused
 * (faas_durable_refused_total).
 * Returns 0, FAAS_EINVAL or FAAS_ENOMEM.
 */
FAAS_EXTERN int faas_metrics_write(struct faas_runtime *rt, struct evbuffer *out);

#ifdef __cplusplus
}
#endif

#endif /* FAAS_H */

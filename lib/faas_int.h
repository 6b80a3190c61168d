/*
 * faas_int.h - the private structures shared by the files of lib/.
 *
 * Ownership in one picture:
 *
 *   faas_runtime ─┬─ registry (hash of faas_fn by name) + list of all faas_fn
 *                 ├─ ready list: invocations the loop must run (INLINE) or
 *                 │  finish (results decided on the loop), one deferred event
 *                 ├─ thread pool (exec_thread.c) with its completion eventfd
 *                 └─ idle list of every idle instance, for the reaper
 *
 *   faas_fn ─┬─ idle instances (most recently used first)
 *            ├─ waiting invocations (FIFO, bounded by max_queue)
 *            └─ running invocations
 *
 * A faas_fn is reference counted: the registry holds one reference, and every
 * instance and every invocation holds one, so a function unregistered while
 * work is in flight lives until that work is gone.
 *
 * Everything here is touched only on the loop thread, except the fields a
 * worker thread uses while it runs a job: the job's instance state and the
 * invocation's context and outcome. The handoff through the pool's mutexes
 * orders those accesses.
 */
#ifndef FAAS_INT_H
#define FAAS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "faas.h"

/* The shared helpers, each in a file of its own. */
#include "clock.h" /* the runtime's clocks, timeouts, the calendar */
#include "exec.h"  /* the executor interface: ops and report tables */
#include "hash.h"  /* the intrusive hash table */
#include "json.h"  /* JSON sizes, text as JSON, the error object, output */
#include "text.h"  /* UTF-8, hex, percent-decoding, log escapes, strv */

struct event;

/* ---- timers (timer.c) ------------------------------------------------ */

/* A one-shot timer on the runtime's base, embedded in what it serves: the
 * owner gives the callback when it arms it, so timer.c only fires. */
struct faas_timer {
    struct event *ev;       /* made on first use; NULL: never armed */
    void (*cb)(void *arg);
    void *arg;
    uint64_t at_ns;         /* faas_timer_arm_at: the clock time armed for;
                               0: not armed */
};

/* ---- lists ---------------------------------------------------------- */

struct faas_list {
    struct faas_list *prev, *next;
};

#define FAAS_CONTAINER_OF(ptr, type, member)                                \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void faas_list_init(struct faas_list *l)
{
    l->prev = l->next = l;
}

static inline int faas_list_empty(const struct faas_list *l)
{
    return l->next == l;
}

static inline void faas_list_insert_tail(struct faas_list *l, struct faas_list *e)
{
    e->next = l;
    e->prev = l->prev;
    l->prev->next = e;
    l->prev = e;
}

static inline void faas_list_insert_head(struct faas_list *l, struct faas_list *e)
{
    e->prev = l;
    e->next = l->next;
    l->next->prev = e;
    l->next = e;
}

static inline void faas_list_remove(struct faas_list *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = e;
}

/* Moves every element of src to the tail of dst, leaving src empty. */
static inline void faas_list_splice(struct faas_list *dst, struct faas_list *src)
{
    if (faas_list_empty(src))
        return;
    src->next->prev = dst->prev;
    dst->prev->next = src->next;
    src->prev->next = dst;
    dst->prev = src->prev;
    faas_list_init(src);
}

static inline struct faas_list *faas_list_pop_head(struct faas_list *l)
{
    struct faas_list *e;
    if (faas_list_empty(l))
        return NULL;
    e = l->next;
    faas_list_remove(e);
    return e;
}

/* ---- metrics -------------------------------------------------------- */

#define FAAS_HIST_BUCKETS 12 /* the last one is +Inf */

struct faas_counters {
    uint64_t invocations, errors, timeouts, throttles, cold_starts, replays;
    uint64_t hist[FAAS_HIST_BUCKETS];
    uint64_t duration_sum_ns;
};

/* ---- jobs: what the thread pool runs --------------------------------- */

enum faas_job_kind {
    FAAS_JOB_INVOKE = 1, /* (init if cold, then) the handler */
    FAAS_JOB_INIT = 2,   /* init only: a min_warm instance */
    FAAS_JOB_FINI = 3    /* fini, then the instance is freed */
};

struct faas_job {
    struct faas_list link; /* pool queue, then pool completions */
    enum faas_job_kind kind;
    struct faas_instance *inst;
    struct faas_inv *inv; /* FAAS_JOB_INVOKE only */
};

/* ---- functions and instances ---------------------------------------- */

struct faas_idem;
struct faas_async;
struct faas_proc;     /* exec_process.c: a process instance */
struct faas_runtime_api; /* runtime_api.c: a COMMAND instance's endpoint */

/* Where a function's handler runs when it is a process. */
enum faas_proc_kind {
    FAAS_PROC_NONE = 0,   /* in the host: INLINE or THREAD */
    FAAS_PROC_NATIVE = 1, /* PROCESS: a worker forked from the zygote */
    FAAS_PROC_COMMAND = 2 /* COMMAND: an external runtime, Runtime API */
};

struct faas_fn {
    struct faas_runtime *rt;
    char name[FAAS_NAME_MAX + 1];
    struct faas_hnode hnode;  /* rt->registry, by name */
    struct faas_list link;    /* rt->fns, registration order */
    faas_handler_fn handler;
    struct faas_function_opts opts; /* copied; pointers to strings cleared */
    unsigned refs;
    int unregistered;

    struct faas_list idle;    /* idle instances, most recently used first */
    struct faas_list waiting; /* invocations waiting for an instance */
    struct faas_list running; /* invocations holding an instance */
    uint32_t ninstances;      /* alive, including starting and retiring */
    uint32_t nbusy;           /* instances running an invocation */
    uint32_t nstarting;       /* instances running a min_warm init */
    uint32_t nwaiting;
    int prewarm_blocked;      /* a min_warm init failed: wait for a good one */
    struct faas_idem *idem;   /* NULL: not idempotent (idem.c) */
    struct faas_async *async; /* NULL until configured or first used (async.c) */
    /* Set by a layer that waits for room (async.c): called after an
     * invocation released its instance, unless the function or the runtime
     * is going away. NULL: nobody waits. */
    void (*on_capacity)(struct faas_fn *fn);

    /* The executor of its isolation mode (exec.h), chosen at registration. */
    const struct faas_exec_ops *exec;

    /* where the handler comes from and runs */
    enum faas_proc_kind proc_kind;
    char *so_path;            /* faas_register_library: owned, else NULL */
    char *symbol;             /* owned, with so_path */
    void *dl;                 /* INLINE/THREAD library: the host's handle */
    char **argv;              /* COMMAND: owned, NULL-terminated */
    char **env;               /* COMMAND: opts.env, owned, NULL-terminated */
    char *cmd_handler;        /* COMMAND: opts.handler, owned or NULL */
    char *task_root;          /* COMMAND: opts.task_root, owned or NULL */

    struct faas_counters c;
};

struct faas_instance {
    struct faas_fn *fn;
    struct faas_list link;    /* fn->idle while idle */
    struct faas_list rt_link; /* rt->idle while idle */
    void *state;
    int initialized;          /* init ran and succeeded (or there is none) */
    int retire;               /* drop it when its current job is done */
    int prewarmed;            /* made for min_warm: its first use is warm */
    uint32_t uses;
    uint64_t idle_since_ns;
    struct faas_job job;      /* its INIT or FINI job */
    struct faas_proc *proc;   /* PROCESS, COMMAND: its process (exec_process.c) */
    struct faas_runtime_api *runtime_api; /* COMMAND: its endpoint (runtime_api.c) */
};

/* ---- invocations ---------------------------------------------------- */

#define FAAS_LOGLINE_MAX 4096
/* Bytes of log lines one invocation keeps until it ends; the rest is
 * dropped after one line that says so. */
#define FAAS_LOG_KEEP_MAX (1024u * 1024u)

struct faas_logline {
    struct faas_logline *next;
    size_t len;
    char text[];
};

struct faas_ctx {
    struct faas_runtime *rt;
    struct faas_fn *fn;
    const char *request_id;
    const char *trace_id;
    json_t *client_context;
    void *state;
    _Atomic uint64_t deadline_ns; /* 0: none */
    atomic_int cancelled;
    int in_init;
    int failed;
    char *error_type;         /* set by faas_ctx_fail, owned */
    char *error_message;
    struct faas_logline *log_head, **log_tail;
    size_t log_bytes;         /* kept so far (FAAS_LOG_KEEP_MAX) */
    /* A worker process sends each line at once instead of keeping it. */
    void (*log_hook)(struct faas_ctx *ctx, const char *line, size_t len);
    /* faas_ctx_stream_write hands the bytes to stream(stream_arg, ...)
     * when set: whoever runs the handler (the host's executors, a worker
     * process, a program that hosts handlers outside a runtime) owns the
     * writer.  It returns 0 or a FAAS_E code, passed back to the handler
     * unchanged (FAAS_ECANCELED: the caller went away).  NULL: streaming
     * is not available here and faas_ctx_stream_write returns FAAS_EINVAL. */
    int (*stream)(void *stream_arg, const void *data, size_t len);
    void *stream_arg;
};

enum faas_phase {
    FAAS_PHASE_QUEUED = 0,
    FAAS_PHASE_INIT = 1,
    FAAS_PHASE_RUN = 2,
    FAAS_PHASE_DONE = 3
};

struct faas_result {
    int status;
    json_t *payload;          /* owned */
    char request_id[FAAS_REQUEST_ID_SIZE];
    char function[FAAS_NAME_MAX + 1];
    uint64_t duration_ns;
    uint64_t init_ns;
    uint64_t max_memory_kb;
    uint32_t memory_mb;
    int cold;
    int replayed;
    int recovered;              /* faas_result_recovered */
    json_t *event;            /* async final results only: owned */
    uint32_t attempts;        /* async final results only; 0 means 1 */
    char *log_tail;           /* opts.log_tail: the last 4 KiB of lines, owned */
};

/* A gateway's consumer of streamed bytes (faas_invoke_stream). */
struct faas_stream_sink {
    /* On the loop, in order; len 0 once when the handler's first write is
     * empty. Returns 0, or FAAS_ECANCELED when it takes no more (its
     * client went or reads too slowly): the handler's later writes get
     * FAAS_ECANCELED. */
    int (*write)(void *arg, const void *data, size_t len);
    /* The invocation is done with the sink (its result is about to be
     * delivered, or it was cancelled): arg must forget the record. */
    void (*release)(void *arg);
};

struct faas_inv {
    struct faas_list link;    /* fn->waiting, fn->running or rt->ready */
    struct faas_runtime *rt;
    struct faas_fn *fn;
    struct faas_instance *inst;
    json_t *event;
    faas_result_fn cb;
    void *arg;
    char *trace_id;
    json_t *client_context;
    uint32_t timeout_ms;      /* effective; 0 = none */
    struct faas_job job;
    struct faas_ctx ctx;
    struct faas_timer deadline; /* THREAD: invoke.c watches it from the loop */

    /* outcome, written by whoever executes it */
    atomic_int phase;         /* enum faas_phase */
    int exec_status;          /* handler's code, already mapped */
    json_t *exec_payload;     /* handler result, owned */
    uint64_t run_start_ns;    /* when the handler started */
    uint64_t init_ns;         /* init time of a cold start */
    uint64_t duration_ns;     /* the handler's time */
    uint64_t end_ns;          /* clock when the handler returned; 0 if not run */
    uint64_t proc_maxrss_kb;  /* a process instance's peak memory; 0 = host's */
    int cold;                 /* a new instance: set at admission */

    int submitted;            /* a worker holds it until faas_job_done */
    int in_call;              /* still inside faas_invoke: errors are returned */
    int idem_held;            /* it holds an INPROGRESS record (idem.c) */
    int store_answered;       /* its store answered inside faas_invoke */
    int call_rc;              /* what that answer makes faas_invoke return */
    void *store_wait;         /* waiting for a store's later answer */
    char idem_key[65];        /* the record's key, hex; "" = not idempotent */
    char idem_validation[33]; /* hash of the validated part, hex, or "" */
    int preset;               /* the result was decided without running */
    int delivered;            /* the callback has run (timeout, cancel) */
    int log_tail;             /* keep the last lines in res.log_tail */
    struct faas_result res;

    /* streaming (stream.c): who takes the handler's faas_ctx_stream_write,
     * set at admission, and what the loop has seen of it */
    faas_chunk_fn on_chunk;   /* the host's (invoke opts), or NULL */
    void *chunk_arg;
    const struct faas_stream_sink *sink; /* a gateway's, or NULL */
    void *sink_arg;
    atomic_int stream_gone;   /* nobody takes more: writes get FAAS_ECANCELED */
    int streamed;             /* the handler wrote: its result is the bytes */
    int stream_over;          /* collected bytes went past max_sync_payload */
    char *stream_buf;         /* no consumer: the bytes, collected */
    size_t stream_len, stream_cap;
};

/* ---- the runtime ---------------------------------------------------- */

struct faas_tpool;
struct faas_http;
struct faas_proc_rt;

/* ---- event sources -------------------------------------------------- */

enum faas_src_kind {
    FAAS_SRC_API = 1,
    FAAS_SRC_SCHEDULE,
    FAAS_SRC_S3,
    FAAS_SRC_DYNAMODB,
    FAAS_SRC_STREAM,
    FAAS_SRC_QUEUE
};

struct faas_filter;  /* filter.c */
struct faas_batcher; /* batch.c */
struct faas_route;   /* route.c */

/*
 * One faas_emit_with call's on_accepted (source.c). A batcher that hands
 * the record to the durable engine owes it the put's answer (owed++, then
 * note); with nothing owed once the call is done, it is answered on the
 * next turn (ev, on rt->emit_waits), or with FAAS_ECANCELED at teardown.
 */
struct faas_emit_wait {
    struct faas_list link;
    struct faas_runtime *rt;
    faas_emit_accept_fn cb;
    void *arg;
    unsigned owed;              /* answers owed; one more while the call runs */
    int kept;                   /* mappings that keep the record */
    int refused;                /* the first put refused, or 0 */
    struct event *ev;
    void (*note)(struct faas_emit_wait *w, int rc);
};

struct faas_mapping {
    struct faas_list link;        /* rt->mappings */
    struct faas_runtime *rt;
    int id;
    enum faas_src_kind kind;
    char *source;                 /* the key as given, owned */
    char *name;                   /* durable identity, owned: opts.name or
                                     "SOURCE FUNCTION"; unique among live
                                     mappings */
    struct faas_hnode name_node;  /* rt->mapping_names while live */
    const char *pattern;          /* into source: what follows "kind:" */
    char function[FAAS_NAME_MAX + 1];
    struct faas_map_opts opts;    /* copied; its strings point at owned copies
                                     (opts.name at name) */
    struct faas_filter *filter;   /* NULL: every record */
    /* schedule: */
    struct event *timer;
    void *sched;                  /* struct faas_schedule (schedule.h), owned */
    int64_t last_fire_s;          /* the last fire time, UTC seconds */
    /* api: */
    struct faas_route *route;     /* route.c */
    /* host-fed: */
    struct faas_batcher *batcher; /* batch.c */
    int dead;                     /* unmapped inside a callback: freed later */
    uint64_t nfiltered;           /* host-fed: records its filter dropped */
};

struct faas_runtime {
    struct event_base *base;
    struct faas_runtime_opts opts;

    /* registry */
    struct faas_htable registry; /* faas_fn by name */
    size_t nfns;
    struct faas_list fns;

    /* the loop side */
    struct event *dispatch_ev; /* runs rt->ready */
    struct faas_list ready;
    struct faas_timer reaper;  /* pool.c: the next idle expiry */
    struct faas_list idle;     /* every idle instance */
    struct faas_list store_wait; /* invocations waiting for a store (idem.c) */
    struct faas_list store_ops;  /* completes and removes awaiting an answer */

    /* event sources */
    struct faas_list mappings;
    int next_mapping_id;
    unsigned dead_mappings;      /* unmapped inside callbacks, to sweep */
    struct faas_htable mapping_names; /* source.c: live mappings by name
                                    (no buckets until the first faas_map) */
    struct faas_htable mapping_seqs; /* batch_records.c: the last seq of each
                                    name unmapped with a durable engine */
    struct faas_http *http;      /* http.c; NULL until attached or bound */
    struct faas_list watches;    /* watch.c */
    struct faas_list emit_waits; /* source.c: faas_emit_wait answered on the
                                    next turn (zeroes until the first) */
    int next_watch_id;

    struct faas_tpool *pool;   /* NULL until a THREAD function exists */
    struct faas_durable *durable; /* durable.h; NULL: state in memory only */
    struct faas_proc_rt *proc_rt; /* exec_process.c: zygote and processes */

    /* request ids: xoshiro256** seeded once */
    uint64_t rng[4];

    /* max memory sampling */
    uint64_t rss_kb;
    uint64_t rss_at_ns;

    /* async_durable.c: events the durable engine keeps that no function
     * holds yet (recovered at start, or left by faas_unregister), oldest
     * first, until their function is registered. */
    struct faas_async_parked *async_parked;
    struct faas_async_parked **async_parked_tail; /* NULL while empty */

    struct faas_drain *drain;  /* runtime.c: NULL until faas_drain */
    /* Work ended (faas_drain_note); set by runtime.c while a drain is under
     * way, NULL otherwise. */
    void (*on_work_end)(struct faas_runtime *rt);
    /* Given to every executor: how it reports (exec.h). */
    const struct faas_exec_report *exec_report;

    int cb_depth;              /* inside a user callback */
    int free_requested;        /* faas_runtime_free was called in one */
    int closing;               /* faas_runtime_free is running */
    int draining;              /* faas_drain was called: new work is refused */
    int last_errno;            /* error.c: behind the last FAAS_ESYS returned */
};

/* ---- error.c -------------------------------------------------------- */
/* A public call's return path: when rc is FAAS_ESYS, keeps errno for
 * faas_runtime_last_errno. Returns rc. */
int faas_rt_sys_error(struct faas_runtime *rt, int rc);

/* ---- alloc.c -------------------------------------------------------- */
/* Test hook: the allocation after this many more fails (once); -1 = never. */
extern atomic_long faas_alloc_fail_countdown;
void *faas_malloc(size_t n);
void *faas_calloc(size_t n, size_t size);
char *faas_strdup(const char *s);

/* ---- random.c: the runtime's generator and request ids --------------- */
/* Seeds a xoshiro256** state from getrandom() (salt: any address that
 * differs between runtimes, used only without an entropy source). */
void faas_rng_seed(uint64_t rng[4], const void *salt);
/* The next 64 bits of the generator. */
uint64_t faas_rng_next(uint64_t s[4]);
/* A fresh UUIDv4 string from rt->rng (loop thread). */
void faas_request_id(struct faas_runtime *rt, char out[FAAS_REQUEST_ID_SIZE]);
/* 32 lowercase hex digits from a fresh request id (no system call). */
void faas_random_hex32(struct faas_runtime *rt, char out[33]);

/* ---- ctx.c ---------------------------------------------------------- */
/* Appends a log line (len bytes, cut at FAAS_LOGLINE_MAX) to the context's
 * list; a line that cannot be allocated is dropped. */
void faas_ctx_add_line(struct faas_ctx *ctx, const char *text, size_t len);

/* ---- runtime.c ------------------------------------------------------ */
struct faas_fn *faas_fn_lookup(struct faas_runtime *rt, const char *name);
void faas_fn_ref(struct faas_fn *fn);
void faas_fn_unref(struct faas_fn *fn);
/* Schedules rt->ready to run from the loop. */
void faas_rt_kick(struct faas_runtime *rt);
/* Callback guard: a faas_runtime_free requested inside runs on the way out. */
void faas_rt_enter(struct faas_runtime *rt);
/* Returns 1 if the runtime was freed and must not be touched any more. */
int faas_rt_leave(struct faas_runtime *rt);
/* Work ended (an instance released, an async event or a batch ended):
 * tells the listener runtime.c sets while a drain is under way, which
 * counts what is left from the loop. No listener, no cost but a test. */
static inline void faas_drain_note(struct faas_runtime *rt)
{
    if (rt->on_work_end)
        rt->on_work_end(rt);
}

/* ---- store.c -------------------------------------------------------- */
struct faas_store {
    struct faas_store_ops ops;
    void *impl;
    /* Set by the runtime on the memory stores it creates: LRU evictions. */
    void (*on_evict)(void *arg, const char *key);
    void *on_evict_arg;
};

/* ---- idem.c --------------------------------------------------------- */
/* Copies a function's idempotency options (at registration). */
int faas_idem_configure(struct faas_fn *fn, const struct faas_idempotency_opts *opts);
void faas_idem_free(struct faas_fn *fn);
/* Finds the key (explicit or from the event) and hashes it into inv.
 * Returns 0 (inv->idem_key "" when there is none and none is required),
 * FAAS_ENOKEY or FAAS_ENOMEM. */
int faas_idem_prepare(struct faas_inv *inv, const char *explicit_key);
/* What the idempotency check hands its decisions to (invoke.c's). */
struct faas_idem_caller {
    /* The record is taken: admit inv (an instance, the queue, or FAAS_E*). */
    int (*admit)(struct faas_inv *inv);
    /* A result decided without running (inv->preset): deliver it from the
     * loop. */
    void (*defer)(struct faas_inv *inv);
    /* Teardown: decide inv's result now and deliver it. */
    void (*deliver_status)(struct faas_inv *inv, int status, const char *etype,
                           const char *emsg);
};
/* Takes the INPROGRESS record, then has inv admitted, replays, or fails
 * it, through `caller` (borrowed: a static table), now or when the store
 * answers. Returns what faas_invoke returns while inv->in_call. */
int faas_idem_begin(struct faas_inv *inv, const struct faas_idem_caller *caller);
/* The invocation's outcome: complete the record (success) or drop it. */
void faas_idem_end(struct faas_inv *inv, int status, json_t *payload);
/* Ends every invocation still waiting for its store (teardown). */
void faas_idem_cancel_waits(struct faas_runtime *rt);
/* Detaches completes and removes still unanswered from the runtime, which
 * is going away (the last step of teardown). */
void faas_idem_orphan_ops(struct faas_runtime *rt);

/* ---- async.c -------------------------------------------------------- */
/* Copies a function's async options (at registration; NULL = defaults). */
int faas_async_configure(struct faas_fn *fn, const struct faas_async_opts *opts);
/* Ends every queued event of fn with `status` (unregister, teardown). */
void faas_async_cancel_fn(struct faas_fn *fn, int status);
/* Starts every event whose retry time has come (the timer; tests). */
void faas_async_poll(struct faas_runtime *rt);
void faas_async_free(struct faas_fn *fn);
/* faas_invoke_async for the runtime's own events (a mapping's on_failure
 * destination): accepted while draining, since they end accepted work. */
int faas_async_invoke_internal(struct faas_runtime *rt, const char *name, json_t *event,
                               char request_id[FAAS_REQUEST_ID_SIZE]);
/* Async events of fn not yet ended and not running (ready, waiting for a
 * retry, decided but not yet delivered): work a drain waits for. */
uint64_t faas_async_pending(const struct faas_fn *fn);
/* What faas_metrics_write shows of a function's async queue. */
struct faas_async_stats {
    uint64_t depth;         /* events waiting: ready and delayed */
    uint64_t bytes;         /* their serialised size */
    uint64_t oldest_age_ns; /* age of the oldest waiting event; 0: none */
    uint64_t retries;       /* retries scheduled after failed attempts */
    uint64_t dead_letters;  /* events that ended in failure */
    uint64_t dropped;       /* refused by the queue's bounds, dropped for a
                               newer one, or expired (max_event_age_ms) */
};
void faas_async_stats_get(const struct faas_fn *fn, uint64_t now, struct faas_async_stats *out);

/* ---- async_durable.c ------------------------------------------------ */
/* Loads the events an earlier run left in rt->durable (at faas_runtime_new):
 * each waits parked until its function is registered. Returns 0,
 * FAAS_EUNAVAILABLE or FAAS_ENOMEM. */
int faas_async_recover(struct faas_runtime *rt);
/* Frees what is still parked (teardown: it stays in the engine). */
void faas_async_parked_clear(struct faas_runtime *rt);
struct faas_durable_event;
/* An event a fleet engine hands to this host (durable.c, on the loop):
 * queued on its function, or released back when no function here takes
 * it. `recovered`: another process accepted it (faas_result_recovered). */
void faas_async_delivered(struct faas_runtime *rt, const struct faas_durable_event *dev,
                          int recovered);

/* ---- source.c ------------------------------------------------------- */
/* The mapping with this id, or NULL. */
struct faas_mapping *faas_mapping_find(struct faas_runtime *rt, int id);
/* Ends every mapping and watch (teardown, first step). */
void faas_sources_free(struct faas_runtime *rt);
/* Frees mappings unmapped inside callbacks (the outermost one returned). */
void faas_sources_sweep(struct faas_runtime *rt);
/* Fires every schedule whose time has come (tests with a fake clock). */
void faas_schedule_poll(struct faas_runtime *rt);

/* ---- filter.c: EventBridge patterns --------------------------------- */
/* Compiles one pattern (a JSON object) or an array of 1..5 (OR'ed); the text
 * is not kept. err (may be NULL) gets the reason on failure. Returns 0,
 * FAAS_EPARSE, FAAS_EINVAL (NULL text or out) or FAAS_ENOMEM; *out is
 * untouched on failure. */
int faas_filter_compile(const char *json_text, struct faas_filter **out, char *err,
                        size_t errlen);
/* 1 when the record matches (a NULL filter matches every record). Loop
 * thread; allocates only to decode a "body"/"data" a pattern looks inside. */
int faas_filter_match(const struct faas_filter *f, json_t *record);
void faas_filter_free(struct faas_filter *f);

/* ---- http.c: the HTTP gateway ---------------------------------------- */
/* Adds m's route (m->pattern: "[METHOD ]/path"): FAAS_EPARSE, FAAS_EEXIST. */
int faas_http_route_add(struct faas_runtime *rt, struct faas_mapping *m);
void faas_http_route_remove(struct faas_runtime *rt, struct faas_mapping *m);
/* Teardown: routes, the own server, pending requests answered 503. */
void faas_http_free(struct faas_runtime *rt);
/* http_conn.c. faas_drain began (rt->draining is set): close the
 * gateway's idle connections; from now on every new request is answered
 * 503. */
void faas_http_drain(struct faas_runtime *rt);

/* ---- shapes.c / batch.c: host-fed sources ---------------------------- */
/* The record as Lambda delivers it for `kind` and `name` (the S3 event name
 * "ObjectCreated:Put", the DynamoDB "INSERT", the stream or queue name),
 * from a complete record (kept as is) or its parts. New reference, or NULL
 * with *err set (FAAS_EINVAL for parts that do not fit, FAAS_ENOMEM). */
json_t *faas_shape_record(struct faas_runtime *rt, enum faas_src_kind kind, const char *name,
                          json_t *parts, int *err);
/* A mapping of a host-fed kind gets its batcher at faas_map. */
int faas_batcher_new(struct faas_mapping *m);
/* Queues a shaped, filtered record (a reference the call takes over).
 * Returns 0, FAAS_ENOMEM. */
int faas_batcher_add(struct faas_mapping *m, json_t *record);
/* Unmap or teardown: what is queued or waiting for a retry is dropped (to
 * on_failure unless the runtime is closing); in-flight batches finish. */
void faas_batcher_free(struct faas_mapping *m);
/* Runs due batch windows and retries now (timers; tests with a fake clock). */
void faas_batcher_poll(struct faas_runtime *rt);
/* Bytes of records a mapping may hold (queued or in batches), as
 * faas_json_size measures them, before faas_emit refuses more for it with
 * FAAS_ETHROTTLED. */
#define FAAS_MAPPING_MAX_BYTES (64u * 1024u * 1024u)
/* Bytes of a mapping name given in faas_map_opts.name. */
#define FAAS_MAPPING_NAME_MAX 1024u
/* The bound mappings made from now on get (tests lower it); starts at
 * FAAS_MAPPING_MAX_BYTES. */
extern size_t faas_mapping_max_bytes;
/* faas_batcher_add with the record's size (faas_emit: faas_json_size of
 * the emitted record); FAAS_ETHROTTLED when it would take the mapping's
 * records over its byte bound. */
int faas_batcher_add_sized(struct faas_mapping *m, json_t *record, size_t bytes,
                           struct faas_emit_wait *w);
/* The runtime drains: every batch window closes now (from the loop). */
void faas_batcher_drain(struct faas_runtime *rt);
/* Frees what the batchers remember of names unmapped (teardown). */
void faas_batcher_marks_free(struct faas_runtime *rt);
/* Records a mapping holds and are not in an invocation under way (queued,
 * or in a batch waiting for a retry): work a drain waits for. */
uint64_t faas_batcher_pending(const struct faas_mapping *m);
/* What faas_metrics_write shows of a host-fed mapping. */
struct faas_mapping_stats {
    uint64_t records;       /* records it took (past its filter) */
    uint64_t failed;        /* records that failed for good */
    uint64_t backlog;       /* records held, not yet ended */
    uint64_t bytes;         /* their serialised size */
    uint64_t max_bytes;     /* the mapping's bound of that size */
    uint64_t oldest_age_ns; /* age of the oldest held record; 0: none */
};
void faas_batcher_stats_get(const struct faas_mapping *m, uint64_t now,
                            struct faas_mapping_stats *out);

/* The record as faas_shape_record makes it; on failure `why` (may be NULL,
 * whylen bytes) says what is wrong with the record, for the log. */
json_t *faas_shape_record_why(struct faas_runtime *rt, enum faas_src_kind kind, const char *name,
                              json_t *parts, int *err, char *why, size_t whylen);

/* ---- watch.c --------------------------------------------------------- */
void faas_watch_free_all(struct faas_runtime *rt);

/* ---- invoke.c ------------------------------------------------------- */
/*
 * The pipeline behind faas_invoke and the async queue: takes over `event`
 * (a reference; NULL = JSON null) which must not change while the
 * invocation runs; request_id NULL = a new one. No payload size check.
 * Returns like faas_invoke.
 */
int faas_invoke_fn(struct faas_runtime *rt, struct faas_fn *fn, json_t *event,
                   const struct faas_invoke_opts *opts, const char *request_id,
                   faas_result_fn cb, void *arg);
/* faas_invoke_fn for a gateway that takes the streamed bytes itself: they
 * go to the sink instead of opts->on_chunk. On 0, *out is the record,
 * valid until sink->release (for faas_stream_cancel); never finished
 * inside this call. */
int faas_invoke_stream(struct faas_runtime *rt, struct faas_fn *fn, json_t *event,
                       const struct faas_invoke_opts *opts, const char *request_id,
                       const struct faas_stream_sink *sink, void *sink_arg,
                       faas_result_fn cb, void *arg, struct faas_inv **out);
/* The checks every invocation call starts with: arguments, teardown, the
 * function, the payload against `limit`. Returns 0 (and *fn) or FAAS_E*. */
int faas_invoke_check(struct faas_runtime *rt, const char *name, json_t *event,
                      const struct faas_invoke_opts *opts, size_t limit, struct faas_fn **fn);
/* Onto the loop's ready list: a result decided without running (replay,
 * duplicate; inv must hold no instance) to deliver, or an INLINE
 * invocation to run. */
void faas_inv_defer(struct faas_inv *inv);
/* Runs an INLINE invocation on the loop thread. */
void faas_inv_run_inline(struct faas_inv *inv);
/* Builds the result, delivers the log records and the callback, frees. */
void faas_inv_finish(struct faas_inv *inv);
/* Decides the result now (timeout, cancel) and delivers it. */
void faas_inv_deliver_status(struct faas_inv *inv, int status, const char *etype,
                             const char *emsg);
/* Cancels an invocation a worker holds: its callback gets `status` from the
 * loop, and its late outcome is dropped. */
void faas_inv_detach(struct faas_inv *inv, int status, const char *etype, const char *emsg);
void faas_inv_free(struct faas_inv *inv);
/* The table through which executors report (exec.h): runtime.c gives it
 * to them as rt->exec_report. */
extern const struct faas_exec_report faas_invoke_report;

/* ---- exec_inline.c: user code on the calling thread ------------------ */
/* The worker side of an INVOKE job (any thread): init if the instance is
 * new, then the handler; writes the outcome into inv. */
void faas_inv_execute(struct faas_inv *inv);
/* Runs init on an instance, filling ctx; returns 0 or FAAS_EINIT. */
int faas_instance_init(struct faas_instance *inst, struct faas_ctx *ctx, uint64_t *init_ns);
/* Runs a job's body (INVOKE, INIT or FINI) on the calling thread. */
void faas_job_run(struct faas_job *job);

/* ---- stream.c: streamed responses ------------------------------------ */
/* On the loop: bytes the handler of inv wrote, to its consumer (the sink,
 * on_chunk, or the collected buffer); dropped once the result was
 * delivered or the consumer took no more. */
void faas_stream_deliver(struct faas_inv *inv, const void *data, size_t len);
/* The INLINE writer (ctx->stream; arg: the record): on the loop, at once. */
int faas_stream_inline_write(void *arg, const void *data, size_t len);
/* The consumer is gone (its client closed): the handler's next write gets
 * FAAS_ECANCELED; a process worker is told (its executor's stream_closed). */
void faas_stream_cancel(struct faas_inv *inv);
/* Making the result of a streamed invocation (invoke.c's fill_result):
 * the payload the contract gives it, or FAAS_ETOOBIG when collected bytes
 * went over. */
void faas_stream_result(struct faas_inv *inv, struct faas_result *res);
/* The record is done with its sink (invoke.c: before the result's
 * callback, or when cancelled): sink->release, once. */
void faas_stream_release(struct faas_inv *inv);
/* Frees what streaming left on the record. */
void faas_stream_free(struct faas_inv *inv);
/* The most bytes a consumer may hold unread (a gateway's socket output, a
 * worker's chunks the loop has not taken): past it the stream is cut. */
#define FAAS_STREAM_BUFFER_MAX ((size_t)1024 * 1024)

/* ---- pool.c --------------------------------------------------------- */
/* Admission: binds inv to an instance, queues it, or FAAS_ETHROTTLED. */
int faas_pool_admit(struct faas_inv *inv);
/* An invocation is done with its instance. */
void faas_pool_release(struct faas_inv *inv);
/* A min_warm INIT job or a FINI job came back (executors: report->job_done). */
void faas_pool_job_done(struct faas_job *job);
/* An idle instance can serve no more: dropped now, min_warm refilled
 * (executors: report->retired). */
void faas_pool_retire(struct faas_instance *inst);
/* Creates instances up to min_warm. */
void faas_pool_prewarm(struct faas_fn *fn);
/* Drops one instance: fini where init ran (the executor), then free. */
void faas_instance_destroy(struct faas_instance *inst);
/* Unregistering: cancels waiting and running invocations, drops idle ones. */
void faas_pool_cancel_fn(struct faas_fn *fn, int status);

/* ---- exec_thread.c -------------------------------------------------- */
int faas_tpool_start(struct faas_runtime *rt, unsigned nthreads);
void faas_tpool_submit(struct faas_runtime *rt, struct faas_job *job);
/* Stops accepting work, lets the workers drain the queue, joins them, and
 * hands every completed job back to faas_job_done. */
void faas_tpool_stop(struct faas_runtime *rt);
/* Called on the loop for each job a worker finished: reports it. */
void faas_job_done(struct faas_runtime *rt, struct faas_job *job);
/* The THREAD writer (ctx->stream; arg: the record), on the worker: queues
 * a chunk for the loop, waiting while FAAS_STREAM_BUFFER_MAX bytes are
 * queued. 0, FAAS_ENOMEM or FAAS_ECANCELED. */
int faas_tpool_stream_write(void *arg, const void *data, size_t len);

/* ---- exec_process.c: instances that are processes -------------------- */
/*
 * PROCESS and COMMAND instances are processes: forked by the zygote (or by
 * the host when the runtime has none), watched through a pidfd and the
 * zygote's exit reports, never through SIGCHLD. This layer owns their
 * life: spawning, the init and invocation deadlines (SIGKILL), stdout and
 * stderr as log lines, exit status to error code (FAAS_ECRASHED,
 * FAAS_EMEMLIMIT), and the executor operations. The wire to the handler is the
 * framed channel of a native worker, or the Runtime API (runtime_api.c).
 */
/* faas_runtime_new: forks the zygote when rt->opts.zygote. 0 or FAAS_ESYS. */
int faas_zygote_start(struct faas_runtime *rt);
/* Teardown, after every instance is gone: ends and reaps the zygote. */
void faas_zygote_stop(struct faas_runtime *rt);
/* The pool reaches its instances only through faas_exec_process (exec.h):
 * start spawns the process first when the instance is new; destroy asks
 * the process to run fini and exit (or kills it) and it is reaped later,
 * no report coming from it after that; cancel kills the process. */
/* Teardown, last step: kills every process left and waits for them. */
void faas_proc_shutdown(struct faas_runtime *rt);
/* From runtime_api.c. The process is ready for its first event (status 0)
 * or reported an init error (FAAS_EINIT; `error` is the error object, taken
 * over, NULL = a generic one). */
void faas_proc_ready(struct faas_instance *inst, int status, json_t *error);
/* From runtime_api.c: the current invocation's outcome, status 0 with the
 * payload or FAAS_EHANDLER with the error object (taken over). */
void faas_proc_result(struct faas_instance *inst, int status, json_t *payload);
/* From runtime_api.c: bytes of the current invocation's streamed response
 * (faas_stream_deliver), as they come. */
void faas_proc_stream(struct faas_instance *inst, const void *data, size_t len);
/* faas_proc_result for a streamed response (streamed 1): its last bytes
 * (len may be 0) go first, then the outcome. */
void faas_proc_stream_result(struct faas_instance *inst, const void *data, size_t len,
                             int streamed, int status, json_t *payload);
/* The zygote's pid, 0 when there is none (tests). */
pid_t faas_proc_zygote_pid(const struct faas_runtime *rt);
/* The pid of inst's process (the leader of its process group): 0 while
 * the zygote has not said it yet, -1 when there is none. */
pid_t faas_proc_pid(const struct faas_instance *inst);

/* ---- exec_command.c: COMMAND instances ------------------------------- */
/* A new COMMAND instance (before its process is spawned): opens its
 * Runtime API endpoint, and writes the process's environment to *envp
 * (new, NULL-terminated "KEY=VALUE" strings: faas_strv_free). 0,
 * FAAS_ENOMEM or FAAS_ESYS. */
int faas_cmd_inst_new(struct faas_instance *inst, char ***envp);

/* ---- runtime_api.c: the Lambda Runtime API --------------------------- */
/*
 * Each COMMAND instance gets its own Runtime API listener on the loopback
 * address (rt->opts.runtime_api_address, default 127.0.0.1, port chosen by
 * the kernel), served by an evhttp of its own on the host's base;
 * AWS_LAMBDA_RUNTIME_API names it.
 */
/* Opens inst's endpoint on addr (inst->runtime_api; its port to *port).
 * 0, FAAS_ENOMEM or FAAS_ESYS. */
int faas_runtime_api_new(struct faas_instance *inst, const char *addr, uint16_t *port);
/* Hands inv (inst's current invocation: request id, deadline, event set)
 * to the runtime process: answers its pending GET /runtime/invocation/next,
 * or the next one that comes. */
void faas_runtime_api_send(struct faas_instance *inst, struct faas_inv *inv);
/* The instance is gone: closes its listener and connections (pending
 * requests are dropped, not answered); no callback comes after this. */
void faas_runtime_api_free(struct faas_instance *inst);

/* ---- lambda_api.c: the Invoke API on the HTTP gateway ---------------- */
struct evhttp_request;
struct evhttp_connection;
struct evbuffer;
struct faas_http_header;
/* http.c hands over every request whose path starts with
 * "/2015-03-31/functions/" when rt->opts.invoke_api; the call answers it
 * (now or from the loop later). */
void faas_invoke_api_request(struct faas_runtime *rt, struct evhttp_request *req);

/* Lambda's qualifiers (a version or an alias): 1..128 bytes. */
#define FAAS_QUALIFIER_MAX 128

/*
 * A request the gateway holds until its result (http.c, shared by the
 * routes and the Invoke API): it sits on the gateway's pending list with
 * its connection's close callback pointing at it, so a client that goes
 * away only clears `req`; at teardown the gateway answers it 503 (in the
 * Invoke API's shape when `api`) and orphans it (`h` NULL), and the
 * invocation's callback, which still comes, finds nobody to answer.
 * Records are recycled by the gateway.
 */
/* How a held request's reply may stream (http_stream.c). */
enum faas_http_stream_kind {
    FAAS_HTTP_STREAM_NONE = 0,
    FAAS_HTTP_STREAM_EVENTS,  /* InvokeWithResponseStream: an event stream */
    FAAS_HTTP_STREAM_CHUNKED  /* an api: route: the bytes, chunked */
};

struct faas_http_hold {
    struct faas_list link;           /* h->pending or h->spare; self-linked
                                        when orphaned */
    struct faas_http *h;             /* NULL: the gateway is gone */
    struct evhttp_request *req;      /* NULL: nobody to answer */
    struct evhttp_connection *evcon;
    int head;                        /* a HEAD request: no body in the reply */
    int api;                         /* an Invoke API request */
    int log_tail;                    /* Invoke API: X-Amz-Log-Type: Tail */
    char version[FAAS_QUALIFIER_MAX + 1]; /* Invoke API: the executed version */
    char request_id[FAAS_REQUEST_ID_SIZE];  /* Invoke API: the invocation's */
    /* a reply that may stream (http_stream.c) */
    enum faas_http_stream_kind stream;
    int started;                     /* its head is out: chunks follow */
    struct faas_inv *inv;            /* until its result: told when the
                                        client goes */
    /* The client went (http_conn.c, once req is cleared); NULL: nobody
     * needs to know. */
    void (*on_gone)(struct faas_http_hold *p);
};
/* Teardown answers p's request (held by the Invoke API) with a 503. */
void faas_invoke_api_unavailable(struct faas_http_hold *p, struct evhttp_request *req);
/* A zeroed record (h set), or NULL (out of memory, no gateway). */
struct faas_http_hold *faas_http_hold_new(struct faas_runtime *rt);
/* Holds req in p until faas_http_hold_take. */
void faas_http_hold_wait(struct faas_http_hold *p, struct evhttp_request *req);
/* Ends the hold: the request to answer now, or NULL when its client or the
 * gateway is gone. */
struct evhttp_request *faas_http_hold_take(struct faas_http_hold *p);
/* p (taken, or never held) back to the gateway's spares, or freed. */
void faas_http_hold_put(struct faas_http_hold *p);
/* Lets p's request go while p stays held (on the pending list, for its
 * result): the request to finish now, or NULL when its client went. */
struct evhttp_request *faas_http_hold_release(struct faas_http_hold *p);

/* ---- http_stream.c: replies that stream ------------------------------ */
/* Invokes fn for hold p (its fields set but req: faas_http_hold_wait
 * follows), its reply streaming as `kind` when the handler streams. Takes
 * ev. Returns like faas_invoke_fn. */
int faas_http_stream_invoke(struct faas_runtime *rt, struct faas_fn *fn, json_t *ev,
                            const struct faas_invoke_opts *o, const char *reqid,
                            struct faas_http_hold *p, enum faas_http_stream_kind kind,
                            faas_result_fn cb);
/* p's result came and req (taken) is to be answered: ends a started
 * reply, or (EVENTS) answers a result that did not stream as one chunk.
 * Events: an InvokeComplete, with ErrorCode and ErrorDetails on failure;
 * chunked: the last chunk, the failure logged. */
void faas_http_stream_finish(struct faas_http_hold *p, struct evhttp_request *req,
                             const struct faas_result *res);
/* Teardown: a started reply ends (events: an InvokeComplete saying so). */
void faas_http_stream_abort(struct faas_http_hold *p, struct evhttp_request *req);

/* ---- timer.c: one-shot timers on the runtime's clock ----------------- */
/* Arms t to call cb(arg) once, delay_ns from now (re-arming replaces the
 * time). Returns 0 or FAAS_ENOMEM (t stays unarmed). */
int faas_timer_arm(struct faas_runtime *rt, struct faas_timer *t, uint64_t delay_ns,
                   void (*cb)(void *arg), void *arg);
/* Arms t for the clock time at_ns, unless it is armed for that time or an
 * earlier one. Returns 0 or FAAS_ENOMEM (t stays unarmed). */
int faas_timer_arm_at(struct faas_runtime *rt, struct faas_timer *t, uint64_t at_ns,
                      void (*cb)(void *arg), void *arg);
/* Disarms t and frees its event; t may be armed again. */
void faas_timer_free(struct faas_timer *t);

/* ---- metrics.c ------------------------------------------------------ */
void faas_metrics_record(struct faas_fn *fn, const struct faas_result *res);
/* The host's peak RSS, sampled at most every 100 ms of `now`. */
uint64_t faas_metrics_max_rss_kb(struct faas_runtime *rt, uint64_t now);
void faas_log_lines(struct faas_runtime *rt, struct faas_ctx *ctx);
void faas_log_report(struct faas_runtime *rt, const struct faas_result *res);
/* A FAAS_LOG_IDEMPOTENCY or FAAS_LOG_ASYNC record; the line (fmt NULL:
 * none) is formatted only when the runtime has a log callback. */
void faas_log_event(struct faas_runtime *rt, enum faas_log_kind kind, const char *function,
                    const char *request_id, const char *action, const char *key,
                    const char *fmt, ...) FAAS_PRINTF(7, 8);

#endif /* FAAS_INT_H */

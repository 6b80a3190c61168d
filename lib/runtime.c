/*
 * runtime.c - the runtime's lifecycle, the function registry and the loop's
 * dispatch event.
 *
 * The registry is a hash table keyed by name (hash.c: FNV-1a, doubled when
 * it holds as many functions as buckets), so lookup stays O(1) from ten
 * functions to tens of thousands. Functions are also kept in registration
 * order, for metrics.
 *
 * The dispatch event is one event with no descriptor, made active with
 * event_active() (no system call) whenever the ready list gains work: INLINE
 * invocations to run and results decided on the loop (cancellations) to
 * deliver. One activation serves every invocation queued before it runs.
 *
 * Re-entrancy: every entry from the loop into user code is bracketed by
 * faas_rt_enter/faas_rt_leave. faas_runtime_free called inside only sets a
 * flag; the outermost faas_rt_leave does the real work.
 *
 * faas_drain: rt->draining makes the entry points refuse new work
 * (FAAS_EDRAINING); what was accepted goes on. The drain is two events of
 * its own: `check`, made active whenever work ends (the listener
 * rt->on_work_end, which faas_drain_note in the pool, the async queues, the
 * batchers and the dispatch event calls while a drain is under way), counts
 * what is left and calls back when nothing is; `deadline` calls back with
 * what is left when the time is up. Counting walks the functions and
 * mappings (counters, not their queues), and runs only while draining.
 * The callback runs once: from one of the two events, or from
 * faas_runtime_free with FAAS_ECANCELED.
 *
 * The runtime is where the layers are put together: it picks each
 * function's executor at registration (fn->exec, exec.h) and gives the
 * executors invoke.c's report table (rt->exec_report). It may call every
 * layer; none calls it but for the loop services (faas_rt_kick, the
 * callback guard, lookup and references).
 *
 * The durable engine (durable.h, rt->durable) is opened by
 * faas_runtime_new after the zygote fork, so no worker inherits it, and
 * closed by teardown once nothing can queue an operation any more, while
 * the functions its completions belong to are still alive.
 *
 * Owns struct faas_runtime (faas_int.h), the registry, the ready list, the
 * dispatch and drain events, and each function's dlopen handle (a handler
 * named by .so path and symbol). Called by the host (faas_runtime_*,
 * faas_register*, faas_drain) and, for the loop services, by every layer.
 * Calls libevent's events, dlopen(3), and every subsystem of lib/.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "durable.h"
#include "exec_command.h"
#include "faas_int.h"
#include "opts.h"

static void runtime_destroy(struct faas_runtime *rt);

struct faas_drain {
    faas_drain_fn cb;         /* NULL once it ran */
    void *arg;
    struct event *check;      /* counts what is left; made active */
    struct event *deadline;   /* NULL: no deadline */
    int check_active;
};

static int name_valid(const char *name)
{
    size_t n = 0;
    if (!name)
        return 0;
    for (; name[n]; n++) {
        char c = name[n];
        if (n >= FAAS_NAME_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return n > 0;
}

static int fn_name_eq(const struct faas_hnode *n, const void *name)
{
    return strcmp(FAAS_CONTAINER_OF(n, struct faas_fn, hnode)->name, name) == 0;
}

struct faas_fn *faas_fn_lookup(struct faas_runtime *rt, const char *name)
{
    struct faas_hnode *n = faas_htable_find(&rt->registry, faas_hash_str(name), fn_name_eq, name);
    return n ? FAAS_CONTAINER_OF(n, struct faas_fn, hnode) : NULL;
}

static void registry_remove(struct faas_runtime *rt, struct faas_fn *fn)
{
    faas_htable_remove(&rt->registry, &fn->hnode);
    faas_list_remove(&fn->link);
    rt->nfns--;
}

void faas_fn_ref(struct faas_fn *fn)
{
    fn->refs++;
}

void faas_fn_unref(struct faas_fn *fn)
{
    if (--fn->refs == 0) {
        faas_async_free(fn);
        faas_idem_free(fn);
        if (fn->dl)
            dlclose(fn->dl);
        free(fn->so_path);
        free(fn->symbol);
        faas_strv_free(fn->argv);
        faas_strv_free(fn->env);
        free(fn->cmd_handler);
        free(fn->task_root);
        free(fn);
    }
}

void faas_rt_enter(struct faas_runtime *rt)
{
    rt->cb_depth++;
}

int faas_rt_leave(struct faas_runtime *rt)
{
    if (--rt->cb_depth > 0 || rt->closing)
        return 0;
    if (rt->free_requested) {
        runtime_destroy(rt);
        return 1;
    }
    if (rt->dead_mappings)
        faas_sources_sweep(rt);
    return 0;
}

void faas_rt_kick(struct faas_runtime *rt)
{
    event_active(rt->dispatch_ev, EV_TIMEOUT, 1);
}

/* ---- faas_drain ---------------------------------------------------- */

/*
 * Units of work not yet ended: invocations waiting for an instance, for a
 * store, or running (an instance busy); results decided and not yet
 * delivered; async events that wait (their running attempt is an
 * invocation); records mappings hold outside a running invocation.
 */
static uint64_t drain_remaining(struct faas_runtime *rt)
{
    uint64_t n = 0;
    struct faas_list *e;

    for (e = rt->fns.next; e != &rt->fns; e = e->next) {
        const struct faas_fn *fn = FAAS_CONTAINER_OF(e, struct faas_fn, link);
        n += fn->nwaiting + fn->nbusy + faas_async_pending(fn);
    }
    /* INLINE invocations on the ready list hold an instance: counted. */
    for (e = rt->ready.next; e != &rt->ready; e = e->next)
        if (!FAAS_CONTAINER_OF(e, struct faas_inv, link)->inst)
            n++;
    for (e = rt->store_wait.next; e != &rt->store_wait; e = e->next)
        n++;
    /* Writes not yet committed (an event's end, say): a host killed after
     * the drain said 0 must not run anything again. */
    if (rt->durable) {
        struct faas_durable_stats ds;
        faas_durable_stats_get(rt->durable, &ds);
        n += ds.pending;
    }
    for (e = rt->mappings.next; e != &rt->mappings; e = e->next) {
        const struct faas_mapping *m = FAAS_CONTAINER_OF(e, struct faas_mapping, link);
        if (!m->dead && m->batcher)
            n += faas_batcher_pending(m);
    }
    return n;
}

/* Runs the drain's callback once, as an entry from the loop. */
static void drain_end(struct faas_runtime *rt, int rc, uint64_t remaining)
{
    struct faas_drain *d = rt->drain;
    faas_drain_fn cb = d->cb;

    d->cb = NULL;
    event_del(d->check);
    if (d->deadline)
        event_del(d->deadline);
    faas_rt_enter(rt);
    cb(rc, remaining, d->arg);
    faas_rt_leave(rt);
}

static void drain_check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_runtime *rt = arg;
    (void)fd;
    (void)what;
    rt->drain->check_active = 0;
    if (rt->drain->cb && drain_remaining(rt) == 0)
        drain_end(rt, 0, 0);
}

static void drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_runtime *rt = arg;
    uint64_t n;
    (void)fd;
    (void)what;
    if (!rt->drain->cb)
        return;
    n = drain_remaining(rt);
    drain_end(rt, n ? FAAS_ETIMEDOUT : 0, n);
}

/* rt->on_work_end while draining. */
static void drain_poke(struct faas_runtime *rt)
{
    struct faas_drain *d = rt->drain;
    if (d->cb && !d->check_active && !rt->closing) {
        d->check_active = 1;
        event_active(d->check, EV_TIMEOUT, 1);
    }
}

static void drain_free(struct faas_runtime *rt)
{
    struct faas_drain *d = rt->drain;
    if (!d)
        return;
    event_free(d->check);
    if (d->deadline)
        event_free(d->deadline);
    free(d);
    rt->drain = NULL;
    rt->on_work_end = NULL;
}

int faas_drain(struct faas_runtime *rt, uint32_t timeout_ms, faas_drain_fn cb, void *arg)
{
    struct faas_drain *d;

    if (!rt || !cb)
        return FAAS_EINVAL;
    if (rt->closing || rt->free_requested)
        return FAAS_ECANCELED;
    if (rt->draining)
        return FAAS_EBUSY;
    d = faas_calloc(1, sizeof *d);
    if (!d)
        return FAAS_ENOMEM;
    d->cb = cb;
    d->arg = arg;
    d->check = event_new(rt->base, -1, 0, drain_check_cb, rt);
    if (d->check && timeout_ms)
        d->deadline = event_new(rt->base, -1, 0, drain_deadline_cb, rt);
    if (!d->check || (timeout_ms && !d->deadline)) {
        if (d->check)
            event_free(d->check);
        free(d);
        return FAAS_ENOMEM;
    }
    if (d->deadline) {
        struct timeval tv = faas_ms_to_tv(timeout_ms);
        event_add(d->deadline, &tv);
    }
    rt->drain = d;
    rt->on_work_end = drain_poke;
    rt->draining = 1;
    if (rt->http)
        faas_http_drain(rt);
    faas_batcher_drain(rt);
    faas_durable_queue_stop(rt->durable); /* a fleet's queue: the others take it */
    /* Nothing pending: the callback comes on the next turn of the loop. */
    drain_poke(rt);
    return 0;
}

static void dispatch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_runtime *rt = arg;
    struct faas_list batch;
    struct faas_list *e;

    (void)fd;
    (void)what;
    faas_list_init(&batch);
    faas_list_splice(&batch, &rt->ready);
    faas_rt_enter(rt);
    while ((e = faas_list_pop_head(&batch)) != NULL) {
        struct faas_inv *inv = FAAS_CONTAINER_OF(e, struct faas_inv, link);
        if (inv->preset)
            faas_inv_finish(inv);
        else if (rt->free_requested)
            faas_inv_deliver_status(inv, FAAS_ECANCELED, "Runtime.Canceled",
                                    "the runtime was freed");
        else
            faas_inv_run_inline(inv);
    }
    faas_drain_note(rt); /* results delivered: perhaps the last work */
    faas_rt_leave(rt);
}

/* The option strings are copied, as every string passed in. */
#define OPT_STRINGS 7
static int copy_opt_strings(struct faas_runtime *rt)
{
    const char **f[OPT_STRINGS] = { &rt->opts.region,         &rt->opts.runtime_api_address,
                                    &rt->opts.access_key_id,  &rt->opts.secret_access_key,
                                    &rt->opts.durable,        &rt->opts.durable_prefix,
                                    &rt->opts.node_id };
    int i, rc = 0;
    for (i = 0; i < OPT_STRINGS; i++) {
        if (rc != 0) {
            *f[i] = NULL; /* not copied: not ours to free */
        } else if (*f[i]) {
            *f[i] = faas_strdup(*f[i]);
            if (!*f[i])
                rc = FAAS_ENOMEM;
        }
    }
    return rc;
}

static void free_opt_strings(struct faas_runtime *rt)
{
    free((char *)(uintptr_t)rt->opts.region);
    free((char *)(uintptr_t)rt->opts.runtime_api_address);
    free((char *)(uintptr_t)rt->opts.access_key_id);
    free((char *)(uintptr_t)rt->opts.secret_access_key);
    free((char *)(uintptr_t)rt->opts.durable);
    free((char *)(uintptr_t)rt->opts.durable_prefix);
    free((char *)(uintptr_t)rt->opts.node_id);
}

int faas_runtime_new(struct faas_runtime **out, struct event_base *base,
                     const struct faas_runtime_opts *opts)
{
    struct faas_runtime_opts o;
    struct faas_runtime *rt;
    int rc;

    if (!out || !base)
        return FAAS_EINVAL;
    if (faas_runtime_opts_read(&o, opts) != 0)
        return FAAS_EINVAL;
    if (o.max_sync_payload == 0 || o.max_async_payload == 0)
        return FAAS_EINVAL;
    if (faas_cmd_address_check(o.runtime_api_address, o.runtime_api_allow_remote) != 0)
        return FAAS_EINVAL;
    /* The one place the region's default is decided: every ARN and record
     * reads rt->opts.region as it is. */
    if (!o.region || !o.region[0])
        o.region = "local";
    rt = faas_calloc(1, sizeof *rt);
    if (!rt)
        return FAAS_ENOMEM;
    rt->opts = o;
    rt->base = base;
    rt->exec_report = &faas_invoke_report;
    if (copy_opt_strings(rt) != 0) {
        free_opt_strings(rt);
        free(rt);
        return FAAS_ENOMEM;
    }
    faas_htable_init(&rt->registry, 16);
    rt->dispatch_ev = event_new(base, -1, 0, dispatch_cb, rt);
    if (!rt->registry.buckets || !rt->dispatch_ev) {
        if (rt->dispatch_ev)
            event_free(rt->dispatch_ev);
        faas_htable_fini(&rt->registry);
        free_opt_strings(rt);
        free(rt);
        return FAAS_ENOMEM;
    }
    faas_list_init(&rt->fns);
    faas_list_init(&rt->ready);
    faas_list_init(&rt->idle);
    faas_list_init(&rt->store_wait);
    faas_list_init(&rt->store_ops);
    faas_list_init(&rt->mappings);
    faas_list_init(&rt->watches);
    faas_rng_seed(rt->rng, rt);
    /* Before any thread of ours exists: the zygote is a clean copy. */
    rc = faas_zygote_start(rt);
    /* After the fork: no worker inherits the engine's file or thread. */
    if (rc == 0) {
        rc = faas_durable_open(&rt->durable, rt, rt->opts.durable, rt->opts.durable_sync,
                               rt->opts.node_id);
        if (rc)
            faas_zygote_stop(rt);
    }
    /* What an earlier run left: kept until the functions are registered. */
    if (rc == 0 && (rc = faas_async_recover(rt)) != 0) {
        faas_durable_close(rt->durable);
        rt->durable = NULL;
        faas_zygote_stop(rt);
    }
    if (rc) {
        event_free(rt->dispatch_ev);
        faas_htable_fini(&rt->registry);
        free_opt_strings(rt);
        free(rt);
        return rc;
    }
    *out = rt;
    return 0;
}

static void runtime_destroy(struct faas_runtime *rt)
{
    struct faas_list *e, *next;
    struct faas_list batch;

    rt->closing = 1;
    rt->cb_depth++; /* user callbacks from here on cannot free us again */

    /* A drain still under way ends first: what it waited for is cancelled
     * now. */
    if (rt->drain && rt->drain->cb) {
        faas_drain_fn cb = rt->drain->cb;
        rt->drain->cb = NULL;
        cb(FAAS_ECANCELED, drain_remaining(rt), rt->drain->arg);
    }

    /* Producers first: no schedule, route, watch or batch starts anything
     * new from here on. */
    faas_sources_free(rt);

    /* Work the loop had not reached yet: cancel it, now. */
    faas_list_init(&batch);
    faas_list_splice(&batch, &rt->ready);
    while ((e = faas_list_pop_head(&batch)) != NULL) {
        struct faas_inv *inv = FAAS_CONTAINER_OF(e, struct faas_inv, link);
        if (inv->preset)
            faas_inv_finish(inv);
        else
            faas_inv_deliver_status(inv, FAAS_ECANCELED, "Runtime.Canceled",
                                    "the runtime was freed");
    }
    /* Invocations waiting for an idempotency store's answer. */
    faas_idem_cancel_waits(rt);
    /* Async events first: their ends may not start anything new. */
    for (e = rt->fns.next; e != &rt->fns; e = next) {
        struct faas_fn *fn = FAAS_CONTAINER_OF(e, struct faas_fn, link);
        next = e->next;
        faas_async_cancel_fn(fn, FAAS_ECANCELED);
    }
    /* Waiting and running invocations of every function. */
    for (e = rt->fns.next; e != &rt->fns; e = next) {
        struct faas_fn *fn = FAAS_CONTAINER_OF(e, struct faas_fn, link);
        next = e->next;
        faas_pool_cancel_fn(fn, FAAS_ECANCELED);
    }
    /* Results the cancellation put on the ready list. */
    faas_list_splice(&batch, &rt->ready);
    while ((e = faas_list_pop_head(&batch)) != NULL)
        faas_inv_finish(FAAS_CONTAINER_OF(e, struct faas_inv, link));

    /* Workers finish what they run (cancelled: they skip what they had not
     * started), and every job comes back through faas_job_done. */
    if (rt->pool)
        faas_tpool_stop(rt);

    /* Instances left: idle ones, and those whose jobs just came back. */
    while ((e = faas_list_pop_head(&rt->idle)) != NULL) {
        struct faas_instance *inst = FAAS_CONTAINER_OF(e, struct faas_instance, rt_link);
        faas_list_remove(&inst->link);
        faas_instance_destroy(inst);
    }
    /* Processes: fini where they can, then killed and reaped. */
    faas_proc_shutdown(rt);
    faas_zygote_stop(rt);
    /* Nothing runs any more that could queue a durable operation: commit
     * what is queued and run the completions owed, while the functions
     * their arguments belong to are still alive. */
    faas_durable_close(rt->durable);
    rt->durable = NULL;
    for (e = rt->fns.next; e != &rt->fns; e = next) {
        struct faas_fn *fn = FAAS_CONTAINER_OF(e, struct faas_fn, link);
        next = e->next;
        registry_remove(rt, fn);
        faas_fn_unref(fn);
    }
    faas_async_parked_clear(rt); /* the engine keeps them */
    faas_idem_orphan_ops(rt);
    drain_free(rt);
    faas_timer_free(&rt->reaper);
    event_free(rt->dispatch_ev);
    faas_htable_fini(&rt->registry);
    free_opt_strings(rt);
    free(rt);
}

void faas_runtime_free(struct faas_runtime *rt)
{
    if (!rt || rt->closing)
        return;
    if (rt->cb_depth > 0) {
        rt->free_requested = 1;
        return;
    }
    runtime_destroy(rt);
}

/* What a registration adds to a function: where its handler comes from. */
struct fn_source {
    faas_handler_fn handler;  /* a function of the host image, or NULL */
    const char *so_path;      /* faas_register_library */
    const char *symbol;
    const char *const *argv;  /* faas_register_command */
};

/* opts is already read into the current layout (faas_function_opts_read);
 * the structs it points to are the host's, of their own versions. */
static int check_opts(struct faas_runtime *rt, const char *name,
                      const struct faas_function_opts *opts)
{
    struct faas_idempotency_opts io;
    struct faas_async_opts ao;

    if (!rt || !name_valid(name) || rt->closing || rt->free_requested)
        return FAAS_EINVAL;
    if (opts->isolation != FAAS_ISOLATION_INLINE && opts->isolation != FAAS_ISOLATION_THREAD &&
        opts->isolation != FAAS_ISOLATION_PROCESS)
        return FAAS_EINVAL;
    if (opts->idempotency && faas_idempotency_opts_read(&io, opts->idempotency) != 0)
        return FAAS_EINVAL;
    if (opts->async && faas_async_opts_read(&ao, opts->async) != 0)
        return FAAS_EINVAL;
    if (opts->min_warm && opts->max_concurrency && opts->min_warm > opts->max_concurrency)
        return FAAS_EINVAL;
    if (faas_fn_lookup(rt, name))
        return FAAS_EEXIST;
    return 0;
}

/* Loads a library into the host (INLINE, THREAD): handler, init, fini. */
static int load_library(struct faas_fn *fn)
{
    char sym[FAAS_NAME_MAX + 256];
    void *p;

    fn->dl = dlopen(fn->so_path, RTLD_NOW | RTLD_LOCAL);
    if (!fn->dl)
        return FAAS_ENOENT;
    p = dlsym(fn->dl, fn->symbol);
    if (!p)
        return FAAS_ENOENT;
    *(void **)&fn->handler = p;
    if (!fn->opts.init && snprintf(sym, sizeof sym, "%s_init", fn->symbol) < (int)sizeof sym)
        *(void **)&fn->opts.init = dlsym(fn->dl, sym);
    if (!fn->opts.fini && snprintf(sym, sizeof sym, "%s_fini", fn->symbol) < (int)sizeof sym)
        *(void **)&fn->opts.fini = dlsym(fn->dl, sym);
    return 0;
}

/* The absolute form of a path (as given when it cannot be resolved). */
static char *abs_path(const char *p)
{
    char *r = realpath(p, NULL), *c;
    if (!r)
        return faas_strdup(p);
    c = faas_strdup(r);
    free(r);
    return c;
}

/* Copies where the handler comes from into fn. */
static int set_source(struct faas_fn *fn, const struct fn_source *src,
                      const struct faas_function_opts *opts)
{
    fn->handler = src->handler;
    if (src->argv) {
        fn->proc_kind = FAAS_PROC_COMMAND;
        fn->exec = &faas_exec_process; /* COMMAND's wire: runtime_api.c */
        if (!(fn->argv = faas_strv_dup(src->argv)) || !(fn->env = faas_strv_dup(opts->env)) ||
            (opts->handler && !(fn->cmd_handler = faas_strdup(opts->handler))) ||
            (opts->task_root && !(fn->task_root = abs_path(opts->task_root))))
            return FAAS_ENOMEM;
        if (strchr(fn->argv[0], '/')) {
            char *a = abs_path(fn->argv[0]);
            if (!a)
                return FAAS_ENOMEM;
            free(fn->argv[0]);
            fn->argv[0] = a;
        }
        return 0;
    }
    if (opts->isolation == FAAS_ISOLATION_PROCESS) {
        fn->proc_kind = FAAS_PROC_NATIVE;
        fn->exec = &faas_exec_process;
    } else {
        fn->exec = opts->isolation == FAAS_ISOLATION_THREAD ? &faas_exec_thread
                                                            : &faas_exec_inline;
    }
    if (!src->so_path)
        return 0;
    /* Absolute: a worker or the zygote may not share the host's cwd. */
    if (!(fn->so_path = abs_path(src->so_path)) || !(fn->symbol = faas_strdup(src->symbol)))
        return FAAS_ENOMEM;
    if (fn->proc_kind == FAAS_PROC_NATIVE)
        return 0; /* loaded in each worker, never in the host */
    return load_library(fn);
}

/* opts: the current layout, read by the caller. */
static int register_fn(struct faas_runtime *rt, const char *name, const struct fn_source *src,
                       const struct faas_function_opts *opts)
{
    struct faas_fn *fn;
    int rc;

    if ((rc = check_opts(rt, name, opts)) != 0)
        return rc;
    if (src->argv && (opts->init || opts->fini))
        return FAAS_EINVAL;
    if ((src->argv || opts->isolation == FAAS_ISOLATION_PROCESS) && !rt->proc_rt)
        return FAAS_EINVAL;
    if (!src->argv && opts->isolation == FAAS_ISOLATION_THREAD && !rt->pool) {
        rc = faas_tpool_start(rt, rt->opts.thread_workers);
        if (rc)
            return faas_rt_sys_error(rt, rc);
    }
    if ((rc = faas_htable_reserve(&rt->registry)) != 0)
        return rc;
    fn = faas_calloc(1, sizeof *fn);
    if (!fn)
        return FAAS_ENOMEM;
    fn->rt = rt;
    strcpy(fn->name, name);
    fn->opts = *opts;
    /* Pointers of the caller's are not kept: what is needed is copied. */
    fn->opts.idempotency = NULL;
    fn->opts.async = NULL;
    fn->opts.handler = NULL;
    fn->opts.task_root = NULL;
    fn->opts.env = NULL;
    fn->refs = 1;
    if ((rc = set_source(fn, src, opts)) != 0 ||
        (opts->idempotency && (rc = faas_idem_configure(fn, opts->idempotency)) != 0) ||
        (rc = faas_async_configure(fn, opts->async)) != 0) {
        faas_fn_unref(fn);
        return rc;
    }
    faas_list_init(&fn->idle);
    faas_list_init(&fn->waiting);
    faas_list_init(&fn->running);
    faas_htable_insert(&rt->registry, &fn->hnode, faas_hash_str(name));
    faas_list_insert_tail(&rt->fns, &fn->link);
    rt->nfns++;
    /* INLINE min_warm inits run here: user code, so guarded. */
    faas_rt_enter(rt);
    faas_pool_prewarm(fn);
    faas_rt_leave(rt);
    return 0;
}

int faas_register(struct faas_runtime *rt, const char *name, faas_handler_fn handler,
                  const struct faas_function_opts *opts)
{
    struct fn_source src = { handler, NULL, NULL, NULL };
    struct faas_function_opts o;
    if (!handler || faas_function_opts_read(&o, opts) != 0)
        return FAAS_EINVAL;
    return register_fn(rt, name, &src, &o);
}

int faas_register_library(struct faas_runtime *rt, const char *name, const char *so_path,
                          const char *symbol, const struct faas_function_opts *opts)
{
    struct fn_source src = { NULL, so_path, symbol, NULL };
    struct faas_function_opts o;
    if (!so_path || !symbol || !*symbol || strlen(symbol) > 255 ||
        faas_function_opts_read(&o, opts) != 0)
        return FAAS_EINVAL;
    if (access(so_path, R_OK) != 0)
        return FAAS_ENOENT;
    return register_fn(rt, name, &src, &o);
}

int faas_register_command(struct faas_runtime *rt, const char *name, const char *const argv[],
                          const struct faas_function_opts *opts)
{
    struct faas_function_opts o;
    struct fn_source src = { NULL, NULL, NULL, argv };

    if (!argv || !argv[0] || !argv[0][0] || faas_function_opts_read(&o, opts) != 0)
        return FAAS_EINVAL;
    if (strchr(argv[0], '/') && access(argv[0], X_OK) != 0)
        return FAAS_ENOENT;
    o.isolation = FAAS_ISOLATION_PROCESS; /* how its instances behave */
    return register_fn(rt, name, &src, &o);
}

int faas_unregister(struct faas_runtime *rt, const char *name)
{
    struct faas_fn *fn;

    if (!rt || !name)
        return FAAS_EINVAL;
    if (rt->closing)
        return FAAS_ECANCELED; /* teardown walks the functions: leave them */
    fn = faas_fn_lookup(rt, name);
    if (!fn)
        return FAAS_ENOENT;
    registry_remove(rt, fn);
    fn->unregistered = 1;
    faas_rt_enter(rt); /* INLINE fini and async ends are user code */
    faas_async_cancel_fn(fn, FAAS_ECANCELED);
    faas_pool_cancel_fn(fn, FAAS_ECANCELED);
    faas_fn_unref(fn);
    faas_rt_leave(rt);
    return 0;
}

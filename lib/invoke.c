/*
 * invoke.c - invocation records and results.
 *
 * One pipeline for every invocation: faas_invoke() checks the arguments and
 * the payload size, makes the record and hands it to the pool for admission
 * (an instance, a place in the queue, or FAAS_ETHROTTLED). The executor runs
 * init on a cold instance and then the handler (faas_inv_execute, on the loop
 * for INLINE, on a worker for THREAD), and faas_inv_finish() turns the
 * outcome into a faas_result on the loop: metrics, log records, the callback,
 * the instance back to the pool.
 *
 * A result can also be decided on the loop before the executor is done: a
 * deadline or a cancellation. Then the callback runs at once and the record
 * stays with the worker, marked delivered, until its late outcome comes back
 * and is dropped. Either way the callback runs exactly once.
 *
 * The pipeline runs one way: admission (here) -> pool.c -> the executor
 * (exec.h) -> finish (here) -> metrics.c. This file is both ends: it admits
 * (itself, or through the table it gives idem.c's check), and it fills
 * faas_invoke_report, the table through which every executor reports
 * (runtime.c hands it over). THREAD deadlines are decided here: the loop
 * watches them with a timer.c timer, since a worker cannot be interrupted.
 * A THREAD invocation has at most one timer. The worker publishes the phase
 * (queued, init, run) and the deadline of that phase; the timer compares it
 * with the clock and either re-arms or decides the result: FAAS_EINIT for
 * an init that overran, FAAS_ETIMEDOUT for a handler that did. The instance
 * stays busy until the worker returns, and the late result is discarded.
 *
 * Called by the host (faas_invoke, the faas_result_* accessors), the
 * sources (async.c, batch.c, http.c, lambda_api.c: faas_invoke_fn),
 * http_event.c and lambda_api.c (result accessors), and runtime.c (the
 * dispatch event: faas_inv_run_inline, faas_inv_finish,
 * faas_inv_deliver_status; the report table).
 *
 * May call: pool.c, idem.c, exec_inline.c (the job bodies), metrics.c,
 * timer.c, opts.c, random.c (request ids), runtime.c's loop services, and
 * the shared helpers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "faas_int.h"
#include "opts.h"

/* ---- records -------------------------------------------------------- */

void faas_inv_free(struct faas_inv *inv)
{
    struct faas_logline *l, *next;

    faas_timer_free(&inv->deadline);
    json_decref(inv->event);
    json_decref(inv->client_context);
    json_decref(inv->exec_payload);
    json_decref(inv->res.payload);
    free(inv->res.log_tail);
    free(inv->trace_id);
    free(inv->ctx.error_type);
    free(inv->ctx.error_message);
    faas_stream_free(inv);
    for (l = inv->ctx.log_head; l; l = next) {
        next = l->next;
        free(l);
    }
    faas_fn_unref(inv->fn);
    free(inv);
}

static struct faas_inv *inv_new(struct faas_runtime *rt, struct faas_fn *fn)
{
    struct faas_inv *inv = faas_calloc(1, sizeof *inv);
    if (!inv)
        return NULL;
    inv->rt = rt;
    inv->fn = fn;
    faas_fn_ref(fn);
    faas_list_init(&inv->link);
    inv->job.kind = FAAS_JOB_INVOKE;
    inv->job.inv = inv;
    inv->ctx.rt = rt;
    inv->ctx.fn = fn;
    inv->ctx.request_id = inv->res.request_id;
    inv->ctx.log_tail = &inv->ctx.log_head;
    return inv;
}

/* What idem.c's check hands its decisions to. */
static const struct faas_idem_caller idem_caller = {
    .admit = faas_pool_admit,
    .defer = faas_inv_defer,
    .deliver_status = faas_inv_deliver_status,
};

/* faas_invoke_fn and faas_invoke_stream: *out is the record on 0. */
static int invoke_fn(struct faas_runtime *rt, struct faas_fn *fn, json_t *event,
                     const struct faas_invoke_opts *opts, const char *request_id,
                     const struct faas_stream_sink *sink, void *sink_arg,
                     faas_result_fn cb, void *arg, struct faas_inv **out)
{
    struct faas_inv *inv = inv_new(rt, fn);
    int thread = fn->opts.isolation == FAAS_ISOLATION_THREAD;
    int rc = FAAS_ENOMEM;

    if (!inv) {
        json_decref(event);
        return FAAS_ENOMEM;
    }
    inv->cb = cb;
    inv->arg = arg;
    inv->sink = sink;
    inv->sink_arg = sink_arg;
    inv->event = event ? event : json_null();
    inv->timeout_ms = fn->opts.timeout_ms;
    if (opts) {
        inv->log_tail = opts->log_tail != 0;
        if (opts->version >= 2 && !sink) {
            inv->on_chunk = opts->on_chunk;
            inv->chunk_arg = opts->chunk_arg;
        }
        if (opts->timeout_ms && (inv->timeout_ms == 0 || opts->timeout_ms < inv->timeout_ms))
            inv->timeout_ms = opts->timeout_ms;
        if (opts->trace_id && !(inv->trace_id = faas_strdup(opts->trace_id)))
            goto fail;
        if (opts->client_context) {
            /* A worker must not share a value the caller may still change. */
            inv->client_context = thread ? json_deep_copy(opts->client_context)
                                         : json_incref(opts->client_context);
            if (!inv->client_context)
                goto fail;
        }
    }
    inv->ctx.trace_id = inv->trace_id;
    inv->ctx.client_context = inv->client_context;
    if (request_id)
        memcpy(inv->res.request_id, request_id, FAAS_REQUEST_ID_SIZE);
    else
        faas_request_id(rt, inv->res.request_id);
    inv->in_call = 1;
    if (fn->idem) {
        rc = faas_idem_prepare(inv, opts ? opts->idempotency_key : NULL);
        if (rc)
            goto fail;
    }
    /* The idempotency check decides; admission and delivery stay ours: it
     * calls back. */
    rc = inv->idem_key[0] ? faas_idem_begin(inv, &idem_caller) : faas_pool_admit(inv);
    if (rc)
        goto fail;
    /* Admitted, deferred or waiting for its store: never finished inside
     * this call, so inv is still there. */
    inv->in_call = 0;
    *out = inv;
    return 0;
fail:
    faas_inv_free(inv);
    return rc;
}

int faas_invoke_fn(struct faas_runtime *rt, struct faas_fn *fn, json_t *event,
                   const struct faas_invoke_opts *opts, const char *request_id,
                   faas_result_fn cb, void *arg)
{
    struct faas_inv *inv;
    return invoke_fn(rt, fn, event, opts, request_id, NULL, NULL, cb, arg, &inv);
}

int faas_invoke_stream(struct faas_runtime *rt, struct faas_fn *fn, json_t *event,
                       const struct faas_invoke_opts *opts, const char *request_id,
                       const struct faas_stream_sink *sink, void *sink_arg,
                       faas_result_fn cb, void *arg, struct faas_inv **out)
{
    return invoke_fn(rt, fn, event, opts, request_id, sink, sink_arg, cb, arg, out);
}

int faas_invoke_check(struct faas_runtime *rt, const char *name, json_t *event,
                      const struct faas_invoke_opts *opts, size_t limit, struct faas_fn **fn)
{
    if (!rt || !name)
        return FAAS_EINVAL;
    if (opts && (opts->version < 1 || opts->version > FAAS_INVOKE_OPTS_VERSION))
        return FAAS_EINVAL; /* a version from the future */
    if (rt->closing || rt->free_requested)
        return FAAS_ECANCELED;
    if (rt->draining)
        return FAAS_EDRAINING; /* faas_drain: no new work */
    *fn = faas_fn_lookup(rt, name);
    if (!*fn)
        return FAAS_ENOENT;
    if (event && faas_json_size(event, limit) > limit)
        return FAAS_ETOOBIG;
    return 0;
}

int faas_invoke(struct faas_runtime *rt, const char *name, json_t *event,
                const struct faas_invoke_opts *opts, faas_result_fn cb, void *arg)
{
    struct faas_invoke_opts o;
    struct faas_fn *fn;
    json_t *ev = NULL;
    int rc;

    if (!cb)
        return FAAS_EINVAL;
    rc = faas_invoke_check(rt, name, event, opts, rt ? rt->opts.max_sync_payload : 0, &fn);
    if (rc)
        return rc;
    faas_invoke_opts_read(&o, opts); /* checked above: the current layout */
    if (event) {
        /* A worker must not share a value the caller may still change. */
        ev = fn->opts.isolation == FAAS_ISOLATION_THREAD ? json_deep_copy(event)
                                                        : json_incref(event);
        if (!ev)
            return FAAS_ENOMEM;
    }
    /* Log records (idempotency) may reach the host inside this call: a
     * faas_runtime_free there waits until the call is done. */
    faas_rt_enter(rt);
    rc = faas_invoke_fn(rt, fn, ev, &o, NULL, cb, arg);
    faas_rt_leave(rt);
    return rc;
}

/* ---- execution: INLINE on the loop, THREAD deadlines ---------------- */

void faas_inv_run_inline(struct faas_inv *inv)
{
    if (inv->fn->unregistered) {
        faas_inv_deliver_status(inv, FAAS_ECANCELED, "Runtime.Canceled",
                                "the function was unregistered");
        return;
    }
    faas_inv_execute(inv);
    if (inv->fn->unregistered) {
        /* Unregistered by its own handler: cancelled, like any running one. */
        json_decref(inv->exec_payload);
        inv->exec_status = FAAS_ECANCELED;
        inv->exec_payload =
            faas_error_object("Runtime.Canceled", "the function was unregistered");
    }
    faas_inv_finish(inv);
}

/*
 * How long until the invocation's timer should look again, or UINT64_MAX
 * when there is nothing left to watch. Waiting and init are re-checked at
 * least every timeout_ms, so a handler that starts after a quick init still
 * meets its own deadline on time.
 */
static uint64_t next_look(const struct faas_inv *inv, int phase, uint64_t deadline,
                          uint64_t now)
{
    uint64_t period = (uint64_t)inv->timeout_ms * 1000000u, left = UINT64_MAX;
    uint64_t init_limit = (uint64_t)inv->fn->opts.init_timeout_ms * 1000000u;

    if (phase == FAAS_PHASE_RUN)
        return period == 0 ? UINT64_MAX : deadline > now ? deadline - now : period;
    if (phase == FAAS_PHASE_INIT && deadline)
        left = deadline > now ? deadline - now : 0;
    else if (phase == FAAS_PHASE_QUEUED && inv->cold && inv->fn->opts.init && init_limit)
        left = init_limit;
    if (period && left > period)
        left = period;
    return left;
}

static void deadline_cb(void *arg)
{
    struct faas_inv *inv = arg;
    struct faas_runtime *rt = inv->rt;
    /* The worker publishes a phase's deadline before the phase: read the
     * phase first, so a RUN phase always comes with its own deadline. */
    int phase = atomic_load(&inv->phase);
    uint64_t deadline = atomic_load(&inv->ctx.deadline_ns);
    uint64_t now = faas_now_ns(rt), left;
    char msg[96];

    if (phase == FAAS_PHASE_DONE || inv->delivered)
        return; /* the completion is on its way, or nobody waits for it */
    if (phase == FAAS_PHASE_QUEUED || deadline == 0 || now < deadline ||
        (phase == FAAS_PHASE_RUN && inv->timeout_ms == 0)) {
        left = next_look(inv, phase, deadline, now);
        if (left != UINT64_MAX) /* the event exists: no allocation, no failure */
            faas_timer_arm(rt, &inv->deadline, left ? left : 1000000u, deadline_cb, inv);
        return;
    }
    atomic_store(&inv->ctx.cancelled, 1);
    faas_rt_enter(rt);
    if (phase == FAAS_PHASE_INIT) {
        inv->inst->retire = 1;
        snprintf(msg, sizeof msg, "Init timed out after %.2f seconds",
                 (double)inv->fn->opts.init_timeout_ms / 1000.0);
        faas_inv_deliver_status(inv, FAAS_EINIT, "Runtime.InitError", msg);
    } else {
        snprintf(msg, sizeof msg, "Task timed out after %.2f seconds",
                 (double)inv->timeout_ms / 1000.0);
        faas_inv_deliver_status(inv, FAAS_ETIMEDOUT, "Sandbox.Timedout", msg);
    }
    faas_rt_leave(rt);
}

/* report->watch: the loop watches inv's init and run deadlines. */
static int watch_deadline(struct faas_inv *inv)
{
    uint64_t first = next_look(inv, FAAS_PHASE_QUEUED, 0, 0);

    if (first == UINT64_MAX)
        return 0; /* no deadline of any kind */
    return faas_timer_arm(inv->rt, &inv->deadline, first, deadline_cb, inv);
}

/* ---- results -------------------------------------------------------- */

static void fill_result(struct faas_inv *inv)
{
    struct faas_result *res = &inv->res;
    struct faas_fn *fn = inv->fn;

    if (!inv->preset) {
        res->status = inv->exec_status;
        res->payload = inv->exec_payload;
        inv->exec_payload = NULL;
        res->duration_ns = inv->duration_ns;
        res->init_ns = inv->init_ns;
        res->cold = inv->cold;
    }
    if (!res->payload)
        res->payload = json_null();
    faas_stream_result(inv, res);
    memcpy(res->function, fn->name, sizeof res->function);
    res->memory_mb = fn->opts.memory_mb;
    /* A preset result may be delivered while the worker still runs: only
     * an executed one may read what the worker wrote. */
    if (inv->proc_maxrss_kb)
        res->max_memory_kb = inv->proc_maxrss_kb; /* the process's own peak */
    else
        res->max_memory_kb = faas_metrics_max_rss_kb(
            inv->rt, !inv->preset && inv->end_ns ? inv->end_ns : faas_now_ns(inv->rt));
}

/* The last FAAS_LOG_TAIL_MAX bytes of the lines the invocation has logged. */
static void keep_log_tail(struct faas_inv *inv)
{
    const struct faas_logline *l;
    size_t total = 0, skip, o = 0;
    char *buf;

    for (l = inv->ctx.log_head; l; l = l->next)
        total += l->len + 1;
    skip = total > FAAS_LOG_TAIL_MAX ? total - FAAS_LOG_TAIL_MAX : 0;
    buf = faas_malloc(total - skip + 1);
    if (!buf)
        return;
    for (l = inv->ctx.log_head; l; l = l->next) {
        size_t n = l->len + 1, from = 0;
        if (skip >= n) {
            skip -= n;
            continue;
        }
        from = skip;
        skip = 0;
        if (from < l->len) {
            memcpy(buf + o, l->text + from, l->len - from);
            o += l->len - from;
        }
        buf[o++] = '\n';
    }
    buf[o] = '\0';
    free(inv->res.log_tail);
    inv->res.log_tail = buf;
}

static void deliver(struct faas_inv *inv)
{
    struct faas_runtime *rt = inv->rt;
    faas_result_fn cb = inv->cb;

    fill_result(inv);
    if (inv->log_tail && !inv->submitted)
        keep_log_tail(inv);
    if (inv->idem_held)
        faas_idem_end(inv, inv->res.status, inv->res.payload);
    faas_metrics_record(inv->fn, &inv->res);
    if (!inv->submitted)
        faas_log_lines(rt, &inv->ctx);
    faas_log_report(rt, &inv->res);
    faas_stream_release(inv); /* after fill_result: it reads the sink */
    inv->delivered = 1;
    inv->cb = NULL;
    if (cb)
        cb(&inv->res, inv->arg);
}

void faas_inv_finish(struct faas_inv *inv)
{
    faas_timer_free(&inv->deadline); /* the outcome is here: nothing to watch */
    if (inv->inst)
        faas_pool_release(inv);
    if (!inv->delivered)
        deliver(inv);
    else
        faas_log_lines(inv->rt, &inv->ctx); /* lines of a late outcome */
    faas_inv_free(inv);
}

void faas_inv_deliver_status(struct faas_inv *inv, int status, const char *etype,
                             const char *emsg)
{
    inv->preset = 1;
    inv->res.status = status;
    json_decref(inv->res.payload);
    inv->res.payload = faas_error_object(etype, emsg);
    if (status == FAAS_ETIMEDOUT)
        inv->res.duration_ns = (uint64_t)inv->timeout_ms * 1000000u;
    inv->res.cold = inv->cold;
    if (inv->submitted)
        deliver(inv); /* the worker still holds it: faas_job_done frees it */
    else
        faas_inv_finish(inv);
}

void faas_inv_defer(struct faas_inv *inv)
{
    faas_list_insert_tail(&inv->rt->ready, &inv->link);
    faas_rt_kick(inv->rt);
}

void faas_inv_detach(struct faas_inv *inv, int status, const char *etype, const char *emsg)
{
    struct faas_inv *n;

    atomic_store(&inv->ctx.cancelled, 1);
    if (inv->delivered)
        return;
    faas_stream_release(inv); /* its bytes go nowhere now */
    faas_timer_free(&inv->deadline);
    if (inv->idem_held)
        faas_idem_end(inv, status, NULL);
    n = inv_new(inv->rt, inv->fn);
    if (!n) {
        faas_inv_deliver_status(inv, status, etype, emsg); /* now, then */
        return;
    }
    n->cb = inv->cb;
    n->arg = inv->arg;
    n->cold = inv->cold;
    memcpy(n->res.request_id, inv->res.request_id, sizeof n->res.request_id);
    n->preset = 1;
    n->res.status = status;
    n->res.payload = faas_error_object(etype, emsg);
    n->res.cold = inv->cold;
    inv->cb = NULL;
    inv->delivered = 1;
    faas_list_insert_tail(&inv->rt->ready, &n->link);
    faas_rt_kick(inv->rt);
}

/* How every executor reports (exec.h); runtime.c gives it to them. */
const struct faas_exec_report faas_invoke_report = {
    .finished = faas_inv_finish,
    .job_done = faas_pool_job_done,
    .retired = faas_pool_retire,
    .defer = faas_inv_defer,
    .detach = faas_inv_detach,
    .watch = watch_deadline,
};

/* ---- faas_invoke_sync ----------------------------------------------- */

struct sync_wait {
    int done;
    int abandoned;
    struct faas_result *res;
};

static void sync_cb(const struct faas_result *res, void *arg)
{
    struct sync_wait *w = arg;
    struct faas_result *copy;

    if (w->abandoned) {
        free(w);
        return;
    }
    copy = faas_malloc(sizeof *copy);
    if (copy) {
        *copy = *res;
        json_incref(copy->payload);
        json_incref(copy->event);
        copy->log_tail = res->log_tail ? faas_strdup(res->log_tail) : NULL;
    }
    w->res = copy;
    w->done = 1;
}

int faas_invoke_sync(struct faas_runtime *rt, const char *name, json_t *event,
                     const struct faas_invoke_opts *opts, struct faas_result **out)
{
    struct event_base *base;
    struct sync_wait *w;
    int rc;

    if (!rt || !out)
        return FAAS_EINVAL;
    base = rt->base;
    /* Inside one of our callbacks, or inside any callback of the base: the
     * loop cannot be run again from here. libevent refuses a nested
     * event_base_loop with -1 (and a warning in its own log), so one pass
     * that would run anyway tells, before anything is invoked. */
    if (rt->cb_depth > 0)
        return FAAS_EBUSY;
    /* The pass may run callbacks that free the runtime: guard it. */
    faas_rt_enter(rt);
    rc = event_base_loop(base, EVLOOP_NONBLOCK);
    if (faas_rt_leave(rt))
        return FAAS_ECANCELED;
    if (rc < 0)
        return FAAS_EBUSY;
    if (rt->closing || rt->free_requested)
        return FAAS_ECANCELED;
    w = faas_calloc(1, sizeof *w);
    if (!w)
        return FAAS_ENOMEM;
    rc = faas_invoke(rt, name, event, opts, sync_cb, w);
    if (rc) {
        free(w);
        return rc;
    }
    /* rt may be freed by another callback meanwhile: only base is used. */
    while (!w->done) {
        if (event_base_loop(base, EVLOOP_ONCE) < 0) {
            w->abandoned = 1; /* the callback frees it when it comes */
            return FAAS_EBUSY;
        }
    }
    rc = w->res ? 0 : FAAS_ENOMEM;
    *out = w->res;
    free(w);
    return rc;
}

void faas_result_free(struct faas_result *res)
{
    if (!res)
        return;
    json_decref(res->payload);
    json_decref(res->event);
    free(res->log_tail);
    free(res);
}

/* ---- accessors ------------------------------------------------------ */

int faas_result_status(const struct faas_result *res)
{
    return res ? res->status : FAAS_EINVAL;
}

json_t *faas_result_payload(const struct faas_result *res)
{
    return res ? res->payload : NULL;
}

const char *faas_result_request_id(const struct faas_result *res)
{
    return res ? res->request_id : NULL;
}

const char *faas_result_function_name(const struct faas_result *res)
{
    return res ? res->function : NULL;
}

static const char *error_field(const struct faas_result *res, const char *key)
{
    if (!res || res->status == 0)
        return NULL;
    return json_string_value(json_object_get(res->payload, key));
}

const char *faas_result_error_type(const struct faas_result *res)
{
    return error_field(res, "errorType");
}

const char *faas_result_error_message(const struct faas_result *res)
{
    return error_field(res, "errorMessage");
}

uint64_t faas_result_duration_us(const struct faas_result *res)
{
    return res ? res->duration_ns / 1000u : 0;
}

uint64_t faas_result_init_duration_us(const struct faas_result *res)
{
    return res ? res->init_ns / 1000u : 0;
}

uint64_t faas_result_billed_duration_ms(const struct faas_result *res)
{
    uint64_t ms;
    if (!res)
        return 0;
    ms = (res->duration_ns + 999999u) / 1000000u;
    return ms ? ms : 1;
}

uint32_t faas_result_memory_size_mb(const struct faas_result *res)
{
    return res ? res->memory_mb : 0;
}

int faas_result_cold_start(const struct faas_result *res)
{
    return res ? res->cold : 0;
}

uint64_t faas_result_max_memory_kb(const struct faas_result *res)
{
    return res ? res->max_memory_kb : 0;
}

int faas_result_replayed(const struct faas_result *res)
{
    return res ? res->replayed : 0;
}

int faas_result_recovered(const struct faas_result *res)
{
    return res ? res->recovered : 0;
}

const char *faas_result_log_tail(const struct faas_result *res)
{
    return res ? res->log_tail : NULL;
}

json_t *faas_result_event(const struct faas_result *res)
{
    return res ? res->event : NULL;
}

uint32_t faas_result_attempts(const struct faas_result *res)
{
    if (!res)
        return 1;
    /* An async event's final result counts what ran: 0 if nothing did. */
    return res->event ? res->attempts : (res->attempts ? res->attempts : 1);
}

int faas_result_report(const struct faas_result *res, char *buf, size_t size)
{
    int n, m;
    if (!res || (!buf && size))
        return FAAS_EINVAL;
    n = snprintf(buf, size,
                 "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %llu ms\t"
                 "Memory Size: %u MB\tMax Memory Used: %llu MB",
                 res->request_id, (double)res->duration_ns / 1e6,
                 (unsigned long long)faas_result_billed_duration_ms(res), res->memory_mb,
                 (unsigned long long)((res->max_memory_kb + 1023u) / 1024u));
    if (n < 0 || !res->cold || res->init_ns == 0)
        return n;
    m = snprintf((size_t)n < size ? buf + n : NULL, (size_t)n < size ? size - (size_t)n : 0,
                 "\tInit Duration: %.2f ms", (double)res->init_ns / 1e6);
    return m < 0 ? m : n + m;
}

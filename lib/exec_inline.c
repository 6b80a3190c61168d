/*
 * exec_inline.c - running user code on the calling thread, and the INLINE
 * executor.
 *
 * The bodies here run init, the handler and fini where they are called:
 * on the loop thread for INLINE, on a worker thread for THREAD
 * (exec_thread.c), in the worker process for PROCESS (worker.c). They read
 * the invocation and its instance and write the outcome (exec_status,
 * exec_payload, times, phase); they never deliver it.
 *
 * The INLINE executor (exec.h): an invocation runs from the loop's ready
 * list, which runtime.c's dispatch event drains through invoke.c; init of a
 * min_warm instance runs at once, on the loop, as INLINE code does. It
 * reports through rt->exec_report, never by calling the pool.
 *
 * Called by invoke.c (faas_inv_execute, when the dispatch event runs an INLINE
 * invocation through faas_inv_run_inline), exec_thread.c (faas_job_run on a
 * worker), worker.c (faas_instance_init, faas_inv_execute in the worker
 * process) and, through the table, pool.c. Owns no state of its own: what
 * it writes belongs to the invocation and its instance. May call:
 * clock.c, json.c, ctx.c; the report table it is given.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faas_int.h"

/* ---- the bodies ----------------------------------------------------- */

static void set_outcome(struct faas_inv *inv, int status, json_t *payload)
{
    inv->exec_status = status;
    inv->exec_payload = payload;
}

static void fail_with(struct faas_inv *inv, int status, const char *dtype, const char *dmsg)
{
    struct faas_ctx *ctx = &inv->ctx;
    if (ctx->failed)
        set_outcome(inv, status, faas_error_object(ctx->error_type, ctx->error_message));
    else
        set_outcome(inv, status, faas_error_object(dtype, dmsg));
}

int faas_instance_init(struct faas_instance *inst, struct faas_ctx *ctx, uint64_t *init_ns)
{
    struct faas_fn *fn = inst->fn;
    struct faas_runtime *rt = fn->rt;
    uint64_t start = faas_now_ns(rt), limit;
    void *state = NULL;
    int rc;

    limit = (uint64_t)fn->opts.init_timeout_ms * 1000000u;
    atomic_store(&ctx->deadline_ns, limit ? start + limit : 0);
    ctx->in_init = 1;
    rc = fn->opts.init(ctx, &state);
    ctx->in_init = 0;
    *init_ns = faas_now_ns(rt) - start;
    if (rc != 0 || ctx->failed) {
        if (!ctx->failed)
            faas_ctx_fail(ctx, "Runtime.InitError", "init returned %d", rc);
        return FAAS_EINIT;
    }
    if (limit && *init_ns > limit) {
        /* It returned, late: the instance is not used. Its state is good,
         * so fini runs, here, where init ran. */
        if (fn->opts.fini)
            fn->opts.fini(state);
        ctx->failed = 0;
        faas_ctx_fail(ctx, "Runtime.InitError", "Init timed out after %.2f seconds",
                      (double)fn->opts.init_timeout_ms / 1000.0);
        return FAAS_EINIT;
    }
    inst->state = state;
    inst->initialized = 1;
    return 0;
}

void faas_inv_execute(struct faas_inv *inv)
{
    struct faas_runtime *rt = inv->rt;
    struct faas_fn *fn = inv->fn;
    struct faas_instance *inst = inv->inst;
    struct faas_ctx *ctx = &inv->ctx;
    json_t *result = NULL;
    uint64_t start, limit = (uint64_t)inv->timeout_ms * 1000000u;
    char msg[128];
    int rc;

    if (atomic_load(&ctx->cancelled)) {
        set_outcome(inv, FAAS_ECANCELED, json_null());
        goto done;
    }
    if (!inst->initialized) {
        atomic_store(&inv->phase, FAAS_PHASE_INIT);
        if (faas_instance_init(inst, ctx, &inv->init_ns) != 0) {
            fail_with(inv, FAAS_EINIT, "Runtime.InitError", "init failed");
            goto done;
        }
        if (atomic_load(&ctx->cancelled)) {
            set_outcome(inv, FAAS_ECANCELED, json_null());
            goto done;
        }
    }
    ctx->state = inst->state;
    start = faas_now_ns(rt);
    inv->run_start_ns = start;
    atomic_store(&ctx->deadline_ns, limit ? start + limit : 0);
    atomic_store(&inv->phase, FAAS_PHASE_RUN);
    rc = fn->handler(ctx, inv->event, &result);
    inv->end_ns = faas_now_ns(rt);
    inv->duration_ns = inv->end_ns - start;
    if (ctx->failed) {
        json_decref(result);
        fail_with(inv, FAAS_EHANDLER, NULL, NULL);
    } else if (rc != 0) {
        json_decref(result);
        snprintf(msg, sizeof msg, "handler returned %d", rc);
        set_outcome(inv, FAAS_EHANDLER, faas_error_object("Runtime.HandlerError", msg));
    } else if (limit && inv->duration_ns > limit) {
        json_decref(result);
        snprintf(msg, sizeof msg, "Task timed out after %.2f seconds",
                 (double)inv->timeout_ms / 1000.0);
        set_outcome(inv, FAAS_ETIMEDOUT, faas_error_object("Sandbox.Timedout", msg));
    } else {
        size_t max = rt->opts.max_sync_payload, n;
        if (!result)
            result = json_null();
        n = faas_json_size(result, max);
        if (n > max) {
            json_decref(result);
            snprintf(msg, sizeof msg,
                     "Response payload size (%zu bytes) exceeded maximum allowed payload "
                     "size (%zu bytes).",
                     n, max);
            set_outcome(inv, FAAS_ETOOBIG,
                        faas_error_object("Function.ResponseSizeTooLarge", msg));
        } else {
            set_outcome(inv, 0, result);
        }
    }
done:
    atomic_store(&inv->phase, FAAS_PHASE_DONE);
}

static void run_init_job(struct faas_job *job)
{
    struct faas_instance *inst = job->inst;
    struct faas_ctx ctx;
    struct faas_logline *l, *next;
    uint64_t ns;

    memset(&ctx, 0, sizeof ctx);
    ctx.rt = inst->fn->rt;
    ctx.fn = inst->fn;
    ctx.request_id = "";
    ctx.log_tail = &ctx.log_head;
    faas_instance_init(inst, &ctx, &ns);
    /* No invocation to report to: what init said is dropped. */
    free(ctx.error_type);
    free(ctx.error_message);
    for (l = ctx.log_head; l; l = next) {
        next = l->next;
        free(l);
    }
}

void faas_job_run(struct faas_job *job)
{
    switch (job->kind) {
    case FAAS_JOB_INVOKE:
        faas_inv_execute(job->inv);
        break;
    case FAAS_JOB_INIT:
        run_init_job(job);
        break;
    case FAAS_JOB_FINI:
        job->inst->fn->opts.fini(job->inst->state);
        break;
    }
}

/* ---- the INLINE executor -------------------------------------------- */

static void inline_start(struct faas_inv *inv)
{
    /* Not inside the caller's faas_invoke: from the loop's ready list. */
    inv->ctx.stream = faas_stream_inline_write;
    inv->ctx.stream_arg = inv;
    faas_list_remove(&inv->link);
    inv->rt->exec_report->defer(inv);
}

static void inline_prewarm(struct faas_instance *inst)
{
    /* init runs here, on the loop thread, as INLINE code does. */
    faas_job_run(&inst->job);
    inst->fn->rt->exec_report->job_done(&inst->job);
}

static void inline_cancel(struct faas_inv *inv, int status, const char *etype, const char *emsg)
{
    (void)status;
    (void)etype;
    (void)emsg;
    atomic_store(&inv->ctx.cancelled, 1); /* it finishes cancelled */
}

static int inline_destroy(struct faas_instance *inst)
{
    if (inst->initialized && inst->fn->opts.fini)
        inst->fn->opts.fini(inst->state);
    return 0;
}

const struct faas_exec_ops faas_exec_inline = {
    .name = "inline",
    .self_starting = 0,
    .start = inline_start,
    .prewarm = inline_prewarm,
    .cancel = inline_cancel,
    .destroy = inline_destroy,
};

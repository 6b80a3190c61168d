/*
 * pool.c - the warm pool: instances, admission, queueing, throttling,
 * recycling and reaping, for every isolation mode alike.
 *
 * Policy per function, as Lambda's:
 *  - an invocation takes the most recently used idle instance (warm start);
 *  - else, below max_concurrency instances, a new one (cold start: init runs
 *    first, on the thread that will run the handler);
 *  - else it waits, FIFO, if fewer than max_queue invocations wait (plus one
 *    place per min_warm instance still initialising);
 *  - else FAAS_ETHROTTLED, at once.
 * A released instance goes straight to the oldest waiter, or back to idle.
 * An instance is dropped after a failed init, after max_uses invocations,
 * when its function is unregistered, or when it stayed idle idle_timeout_ms
 * while its function has more than min_warm instances. min_warm instances
 * are made at registration and whenever the count falls below it.
 *
 * All of this runs on the loop thread; the only cross-thread handoff is the
 * thread pool's (exec_thread.c). Times come from the runtime's clock.
 *
 * Where an instance lives is its executor's business (exec.h): the pool
 * calls fn->exec's operations and nothing else of the executors. It hears
 * from them through rt->exec_report (faas_pool_job_done, faas_pool_retire).
 * It tells the layers that wait on it through hooks they set: a release
 * calls fn->on_capacity (async.c's queue) and faas_drain_note (the drain's
 * listener); the idle reaper is a timer.c timer with the pool's callback.
 *
 * Owns the pool's fields of struct faas_fn (idle, waiting, running and
 * their counts), struct faas_instance, and the runtime's idle list and
 * reaper timer. Invariants: an instance is on fn->idle (and rt->idle) only
 * while nothing runs on it; an invocation on fn->waiting holds no
 * instance, and one on fn->running holds exactly one.
 *
 * Called by invoke.c (faas_pool_admit, faas_pool_release; job_done and
 * retired through the report table it fills) and runtime.c (prewarm at
 * registration, cancel at unregister, destroy at free). May call: exec.h
 * operations, timer.c, clock.c, json.c (error objects), runtime.c's loop
 * services (faas_rt_kick, the callback guard).
 */
#include <stdlib.h>

#include "faas_int.h"

static struct faas_instance *instance_new(struct faas_fn *fn)
{
    struct faas_instance *inst = faas_calloc(1, sizeof *inst);
    if (!inst)
        return NULL;
    inst->fn = fn;
    faas_fn_ref(fn);
    faas_list_init(&inst->link);
    faas_list_init(&inst->rt_link);
    /* A process is ready once it said so, whether it has an init or not. */
    inst->initialized = fn->opts.init == NULL && !fn->exec->self_starting;
    inst->job.inst = inst;
    fn->ninstances++;
    return inst;
}

static void instance_free(struct faas_instance *inst)
{
    struct faas_fn *fn = inst->fn;
    free(inst);
    faas_fn_unref(fn);
}

void faas_instance_destroy(struct faas_instance *inst)
{
    struct faas_fn *fn = inst->fn;

    fn->ninstances--;
    /* fini runs where init ran; a FINI job comes back to faas_pool_job_done */
    if (fn->exec->destroy(inst) == 0)
        instance_free(inst);
}

static void start(struct faas_inv *inv, struct faas_instance *inst, int cold)
{
    struct faas_fn *fn = inv->fn;

    inv->inst = inst;
    inv->cold = cold;
    fn->nbusy++;
    faas_list_insert_tail(&fn->running, &inv->link);
    fn->exec->start(inv);
}

static void reap_cb(void *arg);

static void make_idle(struct faas_instance *inst, uint64_t now)
{
    struct faas_fn *fn = inst->fn;
    struct faas_runtime *rt = fn->rt;

    inst->idle_since_ns = now;
    faas_list_insert_head(&fn->idle, &inst->link);
    faas_list_insert_tail(&rt->idle, &inst->rt_link);
    if (fn->opts.idle_timeout_ms && fn->ninstances > fn->opts.min_warm)
        faas_timer_arm_at(rt, &rt->reaper,
                          inst->idle_since_ns + (uint64_t)fn->opts.idle_timeout_ms * 1000000u,
                          reap_cb, rt);
}

/* A usable instance: to the oldest waiter, or to idle since `now` (0: read
 * the clock). */
static void hand_over(struct faas_instance *inst, uint64_t now)
{
    struct faas_fn *fn = inst->fn;
    struct faas_list *e = faas_list_pop_head(&fn->waiting);
    if (e) {
        fn->nwaiting--;
        start(FAAS_CONTAINER_OF(e, struct faas_inv, link), inst, 0);
    } else {
        make_idle(inst, now ? now : faas_now_ns(fn->rt));
    }
}

/* Starts waiters on new instances while there is room, then tops up
 * min_warm. */
static void pump(struct faas_fn *fn)
{
    while (!faas_list_empty(&fn->waiting) &&
           (fn->opts.max_concurrency == 0 || fn->ninstances < fn->opts.max_concurrency)) {
        struct faas_instance *inst = instance_new(fn);
        struct faas_list *e;
        if (!inst)
            break; /* they wait for the next release */
        e = faas_list_pop_head(&fn->waiting);
        fn->nwaiting--;
        start(FAAS_CONTAINER_OF(e, struct faas_inv, link), inst, 1);
    }
    faas_pool_prewarm(fn);
}

int faas_pool_admit(struct faas_inv *inv)
{
    struct faas_fn *fn = inv->fn;
    struct faas_list *e = faas_list_pop_head(&fn->idle);
    struct faas_instance *inst;

    if (e) {
        inst = FAAS_CONTAINER_OF(e, struct faas_instance, link);
        faas_list_remove(&inst->rt_link);
        start(inv, inst, 0);
        return 0;
    }
    if (fn->opts.max_concurrency == 0 || fn->ninstances < fn->opts.max_concurrency) {
        inst = instance_new(fn);
        if (!inst)
            return FAAS_ENOMEM;
        start(inv, inst, 1);
        return 0;
    }
    if (fn->nwaiting < fn->opts.max_queue + fn->nstarting) {
        faas_list_insert_tail(&fn->waiting, &inv->link);
        fn->nwaiting++;
        return 0;
    }
    fn->c.throttles++;
    return FAAS_ETHROTTLED;
}

void faas_pool_release(struct faas_inv *inv)
{
    struct faas_instance *inst = inv->inst;
    struct faas_fn *fn = inv->fn; /* inv's reference keeps it alive */
    struct faas_runtime *rt = fn->rt;

    faas_list_remove(&inv->link);
    inv->inst = NULL;
    fn->nbusy--;
    faas_drain_note(rt);
    inst->uses++;
    if (inst->initialized)
        fn->prewarm_blocked = 0;
    if (!inst->initialized || inst->retire || fn->unregistered || rt->closing ||
        (fn->opts.max_uses && inst->uses >= fn->opts.max_uses)) {
        faas_instance_destroy(inst);
        if (!fn->unregistered && !rt->closing) {
            pump(fn);
            if (fn->on_capacity)
                fn->on_capacity(fn);
        }
        return;
    }
    hand_over(inst, inv->end_ns);
    if (fn->ninstances < fn->opts.min_warm)
        faas_pool_prewarm(fn); /* a failed min_warm init, now retried */
    if (fn->on_capacity && !fn->unregistered && !rt->closing)
        fn->on_capacity(fn);
}

void faas_pool_prewarm(struct faas_fn *fn)
{
    struct faas_runtime *rt = fn->rt;

    while (!fn->unregistered && !rt->closing && !fn->prewarm_blocked &&
           fn->ninstances < fn->opts.min_warm) {
        struct faas_instance *inst = instance_new(fn);
        if (!inst)
            return;
        inst->prewarmed = 1;
        if (inst->initialized) {
            hand_over(inst, 0); /* nothing to start */
        } else {
            fn->nstarting++;
            inst->job.kind = FAAS_JOB_INIT;
            fn->exec->prewarm(inst);
        }
    }
}

void faas_pool_job_done(struct faas_job *job)
{
    struct faas_instance *inst = job->inst;
    struct faas_fn *fn = inst->fn;
    struct faas_runtime *rt = fn->rt;

    if (job->kind == FAAS_JOB_FINI) {
        instance_free(inst);
        return;
    }
    /* FAAS_JOB_INIT */
    fn->nstarting--;
    if (!inst->initialized || fn->unregistered || rt->closing) {
        if (!inst->initialized)
            fn->prewarm_blocked = 1; /* no retry loop: the next invocation tries */
        faas_instance_destroy(inst);
        /* Waiters counted on this instance: give them their own. */
        if (!fn->unregistered && !rt->closing)
            pump(fn);
        return;
    }
    hand_over(inst, 0);
}

/* Drops idle instances whose idle time ran out; rearms the reaper. */
static void reap(struct faas_runtime *rt)
{
    uint64_t now = faas_now_ns(rt), next = 0;
    struct faas_list *e, *n;

    for (e = rt->idle.next; e != &rt->idle; e = n) {
        struct faas_instance *inst = FAAS_CONTAINER_OF(e, struct faas_instance, rt_link);
        struct faas_fn *fn = inst->fn;
        uint64_t expiry;
        n = e->next;
        if (fn->opts.idle_timeout_ms == 0 || fn->ninstances <= fn->opts.min_warm)
            continue;
        expiry = inst->idle_since_ns + (uint64_t)fn->opts.idle_timeout_ms * 1000000u;
        if (expiry <= now) {
            faas_list_remove(&inst->rt_link);
            faas_list_remove(&inst->link);
            faas_instance_destroy(inst);
        } else if (next == 0 || expiry < next) {
            next = expiry;
        }
    }
    if (next)
        faas_timer_arm_at(rt, &rt->reaper, next, reap_cb, rt);
}

static void reap_cb(void *arg)
{
    struct faas_runtime *rt = arg;
    faas_rt_enter(rt); /* fini is user code */
    reap(rt);
    faas_rt_leave(rt);
}

void faas_pool_retire(struct faas_instance *inst)
{
    struct faas_fn *fn = inst->fn;

    faas_fn_ref(fn);
    faas_list_remove(&inst->link);
    faas_list_remove(&inst->rt_link);
    faas_instance_destroy(inst);
    faas_pool_prewarm(fn); /* min_warm refilled */
    faas_fn_unref(fn);
}

void faas_pool_cancel_fn(struct faas_fn *fn, int status)
{
    struct faas_runtime *rt = fn->rt;
    struct faas_list *e, *n;
    const char *why = rt->closing ? "the runtime was freed" : "the function was unregistered";

    faas_fn_ref(fn);
    while ((e = faas_list_pop_head(&fn->waiting)) != NULL) {
        struct faas_inv *inv = FAAS_CONTAINER_OF(e, struct faas_inv, link);
        fn->nwaiting--;
        inv->preset = 1;
        inv->res.status = status;
        inv->res.payload = faas_error_object("Runtime.Canceled", why);
        faas_list_insert_tail(&rt->ready, &inv->link);
        faas_rt_kick(rt);
    }
    for (e = fn->running.next; e != &fn->running; e = n) {
        struct faas_inv *inv = FAAS_CONTAINER_OF(e, struct faas_inv, link);
        n = e->next;
        fn->exec->cancel(inv, status, "Runtime.Canceled", why);
    }
    while ((e = faas_list_pop_head(&fn->idle)) != NULL) {
        struct faas_instance *inst = FAAS_CONTAINER_OF(e, struct faas_instance, link);
        faas_list_remove(&inst->rt_link);
        faas_instance_destroy(inst);
    }
    faas_fn_unref(fn);
}

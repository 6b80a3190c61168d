/*
 * timer.c - invocation deadlines and the idle reaper, on the host's loop.
 *
 * Every duration, deadline and idle age is read from the runtime's clock
 * (clock.c), so tests can drive time.
 * libevent timers only decide when to look again: a deadline timer that
 * fires early (a fake clock that did not move, an invocation still queued
 * for a thread) re-arms itself for the time that is left.
 *
 * A THREAD invocation has at most one timer. The worker publishes the phase
 * (queued, init, run) and the deadline of that phase; the timer compares it
 * with the clock and either re-arms or decides the result: FAAS_EINIT for an
 * init that overran, FAAS_ETIMEDOUT for a handler that did. The instance
 * stays busy until the worker returns, and the late result is discarded.
 */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include <event2/event.h>

#include "faas_int.h"

static void timer_add(struct event *ev, uint64_t delay_ns)
{
    struct timeval tv = faas_ns_to_tv(delay_ns, 0);
    event_add(ev, &tv);
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

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_inv *inv = arg;
    struct faas_runtime *rt = inv->rt;
    /* The worker publishes a phase's deadline before the phase: read the
     * phase first, so a RUN phase always comes with its own deadline. */
    int phase = atomic_load(&inv->phase);
    uint64_t deadline = atomic_load(&inv->ctx.deadline_ns);
    uint64_t now = faas_now_ns(rt), left;
    char msg[96];

    (void)fd;
    (void)what;
    if (phase == FAAS_PHASE_DONE || inv->delivered)
        return; /* the completion is on its way, or nobody waits for it */
    if (phase == FAAS_PHASE_QUEUED || deadline == 0 || now < deadline ||
        (phase == FAAS_PHASE_RUN && inv->timeout_ms == 0)) {
        left = next_look(inv, phase, deadline, now);
        if (left != UINT64_MAX)
            timer_add(inv->timer, left ? left : 1000000u);
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

int faas_timer_arm_deadline(struct faas_inv *inv)
{
    uint64_t first = next_look(inv, FAAS_PHASE_QUEUED, 0, 0);

    if (first == UINT64_MAX)
        return 0; /* no deadline of any kind */
    if (!inv->timer) {
        inv->timer = event_new(inv->rt->base, -1, 0, deadline_cb, inv);
        if (!inv->timer)
            return FAAS_ENOMEM;
    }
    timer_add(inv->timer, first);
    return 0;
}

void faas_timer_cancel_deadline(struct faas_inv *inv)
{
    if (inv->timer) {
        event_free(inv->timer);
        inv->timer = NULL;
    }
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_runtime *rt = arg;
    (void)fd;
    (void)what;
    rt->reap_at_ns = 0;
    faas_rt_enter(rt);
    faas_pool_reap(rt);
    faas_rt_leave(rt);
}

void faas_timer_arm_reaper(struct faas_runtime *rt, uint64_t at_ns)
{
    uint64_t now;
    if (rt->reap_at_ns && rt->reap_at_ns <= at_ns)
        return;
    if (!rt->reap_ev) {
        rt->reap_ev = event_new(rt->base, -1, 0, reap_cb, rt);
        if (!rt->reap_ev)
            return; /* instances then live until reused or the runtime ends */
    }
    now = faas_now_ns(rt);
    rt->reap_at_ns = at_ns;
    timer_add(rt->reap_ev, at_ns > now ? at_ns - now : 0);
}

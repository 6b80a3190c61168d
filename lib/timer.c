/*
 * timer.c - one-shot timers on the host's loop, read against the runtime's
 * clock (clock.c), so tests can drive time.
 *
 * A timer only fires: whoever arms it gives the callback and its argument,
 * and decides what the time means. The invocation deadlines of THREAD
 * functions are invoke.c's (a deadline timer that fires early re-arms
 * itself for what is left); the idle reaper is pool.c's. A struct
 * faas_timer is embedded in what it serves, and its libevent event is made
 * on first use and kept, so re-arming allocates nothing.
 *
 * Called by invoke.c (THREAD deadlines), pool.c (the idle reaper) and
 * runtime.c (faas_timer_free). May call: clock.c, libevent. Calls nothing
 * above it by name.
 */
#include <event2/event.h>

#include "faas_int.h"

static void fire(evutil_socket_t fd, short what, void *arg)
{
    struct faas_timer *t = arg;
    (void)fd;
    (void)what;
    t->at_ns = 0;
    t->cb(t->arg);
}

/* Sets the callback and makes the event if there is none yet. */
static int prepare(struct faas_runtime *rt, struct faas_timer *t, void (*cb)(void *arg),
                   void *arg)
{
    if (!t->ev) {
        t->ev = event_new(rt->base, -1, 0, fire, t);
        if (!t->ev)
            return FAAS_ENOMEM;
    }
    t->cb = cb;
    t->arg = arg;
    return 0;
}

int faas_timer_arm(struct faas_runtime *rt, struct faas_timer *t, uint64_t delay_ns,
                   void (*cb)(void *arg), void *arg)
{
    struct timeval tv;

    if (prepare(rt, t, cb, arg) != 0)
        return FAAS_ENOMEM;
    tv = faas_ns_to_tv(delay_ns, 0);
    event_add(t->ev, &tv);
    return 0;
}

int faas_timer_arm_at(struct faas_runtime *rt, struct faas_timer *t, uint64_t at_ns,
                      void (*cb)(void *arg), void *arg)
{
    uint64_t now;

    if (t->at_ns && t->at_ns <= at_ns)
        return 0;
    if (prepare(rt, t, cb, arg) != 0)
        return FAAS_ENOMEM; /* what it serves then waits for another look */
    now = faas_now_ns(rt);
    t->at_ns = at_ns;
    return faas_timer_arm(rt, t, at_ns > now ? at_ns - now : 0, cb, arg);
}

void faas_timer_free(struct faas_timer *t)
{
    if (t->ev) {
        event_free(t->ev);
        t->ev = NULL;
    }
    t->at_ns = 0;
}

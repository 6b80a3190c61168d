/*
 * clock.c - time as the runtime reads it, and the arithmetic around it.
 *
 * Owns: the runtime's two clocks (monotonic for durations, deadlines and
 * ages; wall for timestamps in records and schedules), the conversion of a
 * delay to a libevent timeout, ISO-8601 formatting, and the proleptic
 * Gregorian calendar (days <-> dates) the schedules and SigV4 need, and the
 * re-arming of a queue's wake-up timer (async.c, batch.c).
 *
 * Invariants: every duration in lib/ comes from faas_now_ns and every
 * timestamp from faas_wall_ns, so a host (or a test) that sets
 * faas_runtime_opts.clock drives all of time at once. Timeouts are rounded
 * up, never down: a timer that fires early only looks again, one that fired
 * before its deadline would decide too soon.
 *
 * Called by every subsystem that reads time or arms a timer. Calls libc
 * and libevent's event_add/event_del; it knows the runtime only to read its
 * clock option.
 */
#include <stdio.h>
#include <time.h>

#include <event2/event.h>

#include "faas_int.h"

uint64_t faas_now_ns(const struct faas_runtime *rt)
{
    struct timespec ts;
    if (rt->opts.clock.now_ns)
        return rt->opts.clock.now_ns(rt->opts.clock.arg);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t faas_wall_ns(const struct faas_runtime *rt)
{
    struct timespec ts;
    if (rt->opts.clock.wall_ns)
        return rt->opts.clock.wall_ns(rt->opts.clock.arg);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

void faas_iso_time_ms(int64_t wall_ns, char *buf, size_t size)
{
    time_t s = (time_t)(wall_ns / 1000000000);
    int ms = (int)((wall_ns % 1000000000) / 1000000);
    struct tm tm;
    if (ms < 0) {
        ms += 1000;
        s--;
    }
    gmtime_r(&s, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

struct timeval faas_ns_to_tv(uint64_t ns, uint64_t max_ns)
{
    struct timeval tv;
    uint64_t us;

    if (max_ns && ns > max_ns)
        ns = max_ns;
    us = ns / 1000u + (ns % 1000u != 0);
    tv.tv_sec = (time_t)(us / 1000000u);
    tv.tv_usec = (suseconds_t)(us % 1000000u);
    return tv;
}

void faas_timer_rearm(struct event *ev, int *armed, uint64_t *armed_at, uint64_t at,
                      uint64_t now)
{
    struct timeval tv;

    if (at == UINT64_MAX) {
        if (*armed)
            event_del(ev);
        *armed = 0;
        return;
    }
    if (*armed && *armed_at == at)
        return;
    *armed = 1;
    *armed_at = at;
    tv = faas_ns_to_tv(at > now ? at - now : 0, UINT64_C(86400) * 1000000000u);
    event_add(ev, &tv);
}

struct timeval faas_ms_to_tv(uint64_t ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000u);
    tv.tv_usec = (suseconds_t)(ms % 1000u) * 1000;
    return tv;
}

int64_t faas_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153u * (m > 2 ? m - 3 : m + 9) + 2u) / 5u + d - 1u;
    doe = yoe * 365u + yoe / 4u - yoe / 100u + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void faas_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460u + doe / 36524u - doe / 146096u) / 365u;
    doy = doe - (365u * yoe + yoe / 4u - yoe / 100u);
    mp = (5u * doy + 2u) / 153u;
    *d = doy - (153u * mp + 2u) / 5u + 1u;
    *m = mp < 10u ? mp + 3u : mp - 9u;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

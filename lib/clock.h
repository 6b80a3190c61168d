/*
 * clock.h - the runtime's clocks and the calendar and interval arithmetic
 * around them (clock.c).
 *
 * Included by every file through faas_int.h, and alone by schedule.c, which
 * needs the calendar but nothing of the runtime. Declares no state: the
 * clocks read the runtime's clock option.
 */
#ifndef FAAS_CLOCK_H
#define FAAS_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

struct faas_runtime;

/* The runtime's monotonic clock in ns: the host's clock.now_ns when it gave
 * one, else CLOCK_MONOTONIC. Any thread. */
uint64_t faas_now_ns(const struct faas_runtime *rt);
/* The runtime's wall clock in ns since the epoch: clock.wall_ns or
 * CLOCK_REALTIME. Any thread. */
int64_t faas_wall_ns(const struct faas_runtime *rt);
/* ISO-8601 UTC with milliseconds, "2026-11-27T20:43:00.123Z", from wall ns. */
void faas_iso_time_ms(int64_t wall_ns, char *buf, size_t size);

/* A delay in ns as a libevent timeout, rounded up to the microsecond so a
 * timer never fires before the time it serves; delays over max_ns (0: no
 * cap) are cut to max_ns, so a timer far out still looks again. */
struct timeval faas_ns_to_tv(uint64_t ns, uint64_t max_ns);
/* A delay in ms as a libevent timeout. */
struct timeval faas_ms_to_tv(uint64_t ms);

struct event;
/* Arms ev, a timer that looks at a queue's next due time, for the monotonic
 * time `at` (`now` is the clock's reading): never early, at most a day out
 * (it then looks again). at == UINT64_MAX disarms it. *armed and *armed_at
 * remember what it is armed for, so asking for the same time again adds
 * nothing; its callback clears *armed. */
void faas_timer_rearm(struct event *ev, int *armed, uint64_t *armed_at, uint64_t at,
                      uint64_t now);

/* Days since 1970-01-01 of a proleptic Gregorian date, m 1-12, d 1-31
 * (H. Hinnant's days_from_civil). */
int64_t faas_days_from_civil(int64_t y, unsigned m, unsigned d);
/* The inverse of faas_days_from_civil(). */
void faas_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

#endif /* FAAS_CLOCK_H */

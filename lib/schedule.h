/*
 * schedule.h - schedule expressions parsed once, evaluated many times.
 *
 * faas_schedule_next() in faas.h parses and evaluates in one call. The
 * schedule timer parses a mapping's expression once with
 * faas_schedule_parse() (which also says which part is wrong, for the error
 * a host sees) and asks faas_schedule_next_parsed() for every fire.
 *
 * The grammar is EventBridge Scheduler's, UTC only, and deliberately strict:
 *  - "rate(N unit)": exactly one space; N has no sign and no leading zero;
 *    unit is minute|hour|day when N is 1 and minutes|hours|days otherwise;
 *    N times the unit must fit in 64-bit seconds;
 *  - "cron(m h dom mon dow y)": six fields, each separated by exactly one
 *    space, no leading or trailing space. Values: minutes 0-59, hours 0-23,
 *    day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 1-7 or SUN-SAT
 *    (1 = Sunday), year 1970-2199. Items are a value, a range "a-b", "*",
 *    each optionally with "/step" (a lone "a/step" runs to the field's
 *    maximum; step is 1 to the field's maximum, 229 for years), joined by
 *    commas. Numbers may have leading zeros; names, L and W are
 *    case-insensitive. A range must not wrap ("FRI-MON", "50-10" are
 *    errors: write two ranges). Exactly one of day-of-month and day-of-week
 *    is "?". The special forms stand alone in their field: "L" (last day),
 *    "LW" (last weekday) and "nW" (the weekday nearest day n, never leaving
 *    the month; no fire in a month without day n) in day-of-month; "L"
 *    (Saturday, as in EventBridge), "nL" (the last weekday n of the month)
 *    and "n#k" (the k-th weekday n, k 1-5; months without one are skipped)
 *    in day-of-week, where n may be a name ("FRIL", "TUE#2");
 *  - "at(yyyy-mm-ddThh:mm:ss)": exactly that shape, a real date, year
 *    1970-2199, seconds 00-59.
 * Keywords (rate, cron, at, the units) are lower case.
 *
 * Included by schedule.c, source.c (the schedule timer) and the tests.
 */
#ifndef FAAS_SCHEDULE_H
#define FAAS_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "faas.h"

#define FAAS_CRON_YEAR_MIN 1970
#define FAAS_CRON_YEAR_MAX 2199

enum faas_schedule_kind {
    FAAS_SCHEDULE_RATE = 1,
    FAAS_SCHEDULE_CRON = 2,
    FAAS_SCHEDULE_AT = 3
};

/* How the day-of-month field selects days. */
enum faas_cron_mday {
    FAAS_CRON_MDAY_ANY = 0,        /* "?": day-of-week decides */
    FAAS_CRON_MDAY_SET = 1,        /* the days in `mdays` */
    FAAS_CRON_MDAY_LAST = 2,       /* "L" */
    FAAS_CRON_MDAY_LAST_WEEKDAY = 3, /* "LW" */
    FAAS_CRON_MDAY_NEAREST = 4     /* "nW": n in mday_arg */
};

/* How the day-of-week field selects days. */
enum faas_cron_wday {
    FAAS_CRON_WDAY_ANY = 0,  /* "?": day-of-month decides */
    FAAS_CRON_WDAY_SET = 1,  /* the weekdays in `wdays` ("L" is {7}) */
    FAAS_CRON_WDAY_LAST = 2, /* "nL": n in wday_arg */
    FAAS_CRON_WDAY_NTH = 3   /* "n#k": n in wday_arg, k in wday_nth */
};

/*
 * A parsed cron expression as bit sets: bit v set means value v matches
 * (minutes bit 0-59, hours 0-23, mdays 1-31, months 1-12, wdays 1-7 with
 * 1 = Sunday, years bit y - FAAS_CRON_YEAR_MIN). Exactly one of mday_kind
 * and wday_kind is ANY.
 */
struct faas_cron {
    uint64_t minutes;
    uint64_t hours;
    uint64_t mdays;
    uint64_t months;
    uint64_t wdays;
    uint64_t years[4];
    enum faas_cron_mday mday_kind;
    enum faas_cron_wday wday_kind;
    unsigned mday_arg;
    unsigned wday_arg;
    unsigned wday_nth;
};

struct faas_schedule {
    enum faas_schedule_kind kind;
    int64_t period; /* RATE: seconds, > 0 */
    int64_t at;     /* AT: seconds since the epoch */
    struct faas_cron cron;
};

/*
 * Parses `expr` (borrowed, NUL-terminated) into *out. On FAAS_EPARSE, when
 * `err` is not NULL, writes a NUL-terminated message of at most errlen bytes
 * that starts with the part that is wrong: "schedule: ", "rate: ", "at: ",
 * "cron: " and, for a field, its name ("cron: day-of-week: ..."). *out is
 * written only on success. Pure: no allocation, no locale, thread-safe.
 * Returns 0, FAAS_EINVAL (NULL expr or out) or FAAS_EPARSE.
 */
int faas_schedule_parse(const char *expr, struct faas_schedule *out, char *err,
                        size_t errlen);

/*
 * The first fire of a parsed schedule strictly after `after`, as
 * faas_schedule_next() defines it. *next is written only on success.
 * Returns 0, FAAS_EINVAL (NULL argument) or FAAS_ENOENT.
 */
int faas_schedule_next_parsed(const struct faas_schedule *s, time_t after, time_t *next);

/*
 * The last fire of a parsed schedule in (after, upto]: the fire a host that
 * was down from `after` to `upto` missed most recently, where the fires are
 * those faas_schedule_next_parsed() gives one after the other from `after`
 * (rate(): after + k periods). *last is written only on success. Bounded
 * whatever the gap: see schedule.c.
 * Returns 0, FAAS_EINVAL (NULL argument) or FAAS_ENOENT (no fire there).
 */
int faas_schedule_last_parsed(const struct faas_schedule *s, time_t after, time_t upto,
                              time_t *last);

#endif /* FAAS_SCHEDULE_H */

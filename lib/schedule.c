/*
 * schedule.c - schedule expressions (rate, cron, at) and their next fire.
 *
 * The grammar (EventBridge Scheduler's, UTC, strict) is written down in
 * schedule.h. Parsing turns the text into plain bit sets; evaluation never
 * looks at the text again: the next fire after a time, and the last fire
 * in a span (the one a host that was down missed most recently). The
 * callers are source.c's schedule timer, the public faas_schedule_next()
 * and the schedule fuzz target. It calls only
 * libc and clock.h's calendar (faas_days_from_civil, faas_civil_from_days):
 * no runtime, no libevent.
 *
 * Invariants:
 *  - the search for a cron fire steps by field (year, month, day, hour,
 *    minute) with carries: a few steps per month of 1970-2199 at most,
 *    never one per minute, so every call is bounded and fast;
 *  - dates are proleptic Gregorian day numbers computed here, never through
 *    mktime()/timegm(), the TZ variable or the locale; characters are
 *    classified by hand for the same reason;
 *  - nothing is allocated, no state is kept: every function is thread-safe;
 *  - out-parameters are written only on success.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "schedule.h"

#define SECS_PER_DAY 86400
/* 2200-01-01T00:00:00Z: no cron expression fires at or after it. */
#define CRON_END ((int64_t)7258118400)

/* ---- calendar --------------------------------------------------------- */

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned char dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return m == 2 && is_leap(y) ? 29u : dim[m - 1];
}

/* 0 = Sunday ... 6 = Saturday; 1970-01-01 was a Thursday. */
static unsigned weekday(int64_t days)
{
    int64_t w = (days + 4) % 7;
    return (unsigned)(w < 0 ? w + 7 : w);
}

/* ---- errors ------------------------------------------------------------ */

struct perr {
    char *buf;
    size_t len;
    const char *where; /* "cron: minutes", "rate", ... */
};

/* Writes "<where>: <message>" and returns FAAS_EPARSE. */
static int perr(const struct perr *e, const char *fmt, ...) FAAS_PRINTF(2, 3);

static int perr(const struct perr *e, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!e->buf || e->len == 0)
        return FAAS_EPARSE;
    n = snprintf(e->buf, e->len, "%s: ", e->where);
    if (n >= 0 && (size_t)n < e->len) {
        va_start(ap, fmt);
        vsnprintf(e->buf + n, e->len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return FAAS_EPARSE;
}

/* ---- characters -------------------------------------------------------- */

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static int is_alpha(char c)
{
    c = upper(c);
    return c >= 'A' && c <= 'Z';
}

/* Reads decimal digits at *p (before end) into *v and moves *p past them;
 * the value saturates at 100000, so long runs cannot wrap into range. */
static void read_uint(const char **p, const char *end, unsigned *v)
{
    const char *s = *p;
    unsigned x = 0;

    while (s < end && is_digit(*s)) {
        x = x * 10u + (unsigned)(*s - '0');
        if (x > 100000u)
            x = 100000u;
        s++;
    }
    *v = x;
    *p = s;
}

/* ---- cron fields ------------------------------------------------------- */

static const char *const month_names[12] = { "JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                             "JUL", "AUG", "SEP", "OCT", "NOV", "DEC" };
static const char *const wday_names[7] = { "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT" };

struct field_spec {
    const char *where; /* for errors: "cron: minutes" */
    unsigned min, max;
    unsigned max_step;
    const char *const *names; /* names[i] is value min + i; NULL = none */
    unsigned nnames;
};

enum { F_MIN, F_HOUR, F_MDAY, F_MONTH, F_WDAY, F_YEAR, F_COUNT };

static const struct field_spec specs[F_COUNT] = {
    { "cron: minutes", 0, 59, 59, NULL, 0 },
    { "cron: hours", 0, 23, 23, NULL, 0 },
    { "cron: day-of-month", 1, 31, 31, NULL, 0 },
    { "cron: month", 1, 12, 12, month_names, 12 },
    { "cron: day-of-week", 1, 7, 7, wday_names, 7 },
    { "cron: year", FAAS_CRON_YEAR_MIN, FAAS_CRON_YEAR_MAX,
      FAAS_CRON_YEAR_MAX - FAAS_CRON_YEAR_MIN, NULL, 0 },
};

/* A field's text: [p, end), not NUL-terminated. */
struct span {
    const char *p, *end;
};

/* Parses one value (a number or a name) at *p into *v, range-checked. */
static int parse_value(const struct field_spec *f, const struct perr *e, const char **p,
                       const char *end, unsigned *v)
{
    const char *s = *p;

    if (s < end && is_digit(*s)) {
        const char *start = s;
        unsigned x;
        read_uint(&s, end, &x);
        if (x < f->min || x > f->max)
            return perr(e, "value '%.*s' out of range %u-%u", (int)(s - start), start, f->min,
                        f->max);
        *v = x;
        *p = s;
        return 0;
    }
    if (s < end && is_alpha(*s)) {
        const char *start = s;
        while (s < end && is_alpha(*s))
            s++;
        if (f->names && s - start == 3) {
            for (unsigned i = 0; i < f->nnames; i++) {
                const char *n = f->names[i];
                if (upper(start[0]) == n[0] && upper(start[1]) == n[1] &&
                    upper(start[2]) == n[2]) {
                    *v = f->min + i;
                    *p = s;
                    return 0;
                }
            }
        }
        return perr(e, "unknown name '%.*s'", (int)(s - start), start);
    }
    if (s < end)
        return perr(e, "expected a value at '%.*s'", (int)(end - s), s);
    return perr(e, "expected a value");
}

static void set_bit(uint64_t *bits, unsigned i)
{
    bits[i / 64u] |= (uint64_t)1 << (i % 64u);
}

/*
 * Parses a list of items ("*", "a", "a-b", each with an optional "/step")
 * into bits (bit v - f->min for years, bit v otherwise: the caller passes
 * `base`).
 */
static int parse_list(const struct field_spec *f, const struct perr *e, struct span sp,
                      unsigned base, uint64_t *bits)
{
    const char *p = sp.p;

    for (;;) {
        const char *item_end = memchr(p, ',', (size_t)(sp.end - p));
        const char *item = p;
        unsigned lo, hi, step = 1;
        int rc;

        if (!item_end)
            item_end = sp.end;
        if (item_end == p)
            return perr(e, "empty list item");
        if (*p == '*') {
            lo = f->min;
            hi = f->max;
            p++;
        } else {
            if ((rc = parse_value(f, e, &p, item_end, &lo)) != 0)
                return rc;
            hi = lo;
            if (p < item_end && *p == '-') {
                p++;
                if ((rc = parse_value(f, e, &p, item_end, &hi)) != 0)
                    return rc;
                if (hi < lo)
                    return perr(e, "range '%.*s' runs backwards (wrapping ranges are not "
                                   "supported; use two ranges)",
                                (int)(p - item), item);
            } else if (p < item_end && *p == '/') {
                hi = f->max;
            }
        }
        if (p < item_end && *p == '/') {
            const char *s = ++p;
            read_uint(&p, item_end, &step);
            if (p == s)
                return perr(e, "expected a step after '/'");
            if (step < 1 || step > f->max_step)
                return perr(e, "step '%.*s' out of range 1-%u", (int)(p - s), s, f->max_step);
        }
        if (p != item_end)
            return perr(e, "unexpected '%.*s'", (int)(item_end - p), p);
        for (unsigned v = lo; v <= hi; v += step)
            set_bit(bits, v - base);
        if (item_end == sp.end)
            return 0;
        p = item_end + 1;
        if (p == sp.end)
            return perr(e, "empty list item");
    }
}

static int span_is(struct span sp, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(sp.end - sp.p) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (upper(sp.p[i]) != s[i])
            return 0;
    return 1;
}

/* Whether the span holds character c (case-insensitive). */
static int span_has(struct span sp, char c)
{
    for (const char *p = sp.p; p < sp.end; p++)
        if (upper(*p) == c)
            return 1;
    return 0;
}

static int parse_plain(int idx, struct span sp, const struct perr *e, uint64_t *bits)
{
    const struct field_spec *f = &specs[idx];

    if (span_has(sp, '?'))
        return perr(e, "'?' is only allowed, alone, in day-of-month or day-of-week");
    return parse_list(f, e, sp, idx == F_YEAR ? f->min : 0, bits);
}

static int parse_mday(struct span sp, const struct perr *e, struct faas_cron *c)
{
    const struct field_spec *f = &specs[F_MDAY];
    const char *p = sp.p;
    unsigned n;

    if (span_is(sp, "?")) {
        c->mday_kind = FAAS_CRON_MDAY_ANY;
        return 0;
    }
    if (span_is(sp, "L")) {
        c->mday_kind = FAAS_CRON_MDAY_LAST;
        return 0;
    }
    if (span_is(sp, "LW")) {
        c->mday_kind = FAAS_CRON_MDAY_LAST_WEEKDAY;
        return 0;
    }
    if (span_has(sp, '?'))
        return perr(e, "'?' must stand alone");
    if (span_has(sp, 'W')) {
        int rc;
        if (sp.end - sp.p < 2 || upper(sp.end[-1]) != 'W' || !is_digit(*p))
            return perr(e, "'W' must follow a single day, as in '15W', or 'L'");
        if ((rc = parse_value(f, e, &p, sp.end - 1, &n)) != 0)
            return rc;
        if (p != sp.end - 1)
            return perr(e, "'W' must follow a single day, as in '15W', or 'L'");
        c->mday_kind = FAAS_CRON_MDAY_NEAREST;
        c->mday_arg = n;
        return 0;
    }
    if (span_has(sp, 'L'))
        return perr(e, "'L' must stand alone, or as 'LW'");
    c->mday_kind = FAAS_CRON_MDAY_SET;
    return parse_list(f, e, sp, 0, &c->mdays);
}

static int parse_wday(struct span sp, const struct perr *e, struct faas_cron *c)
{
    const struct field_spec *f = &specs[F_WDAY];
    const char *p = sp.p;
    const char *hash = memchr(sp.p, '#', (size_t)(sp.end - sp.p));
    unsigned n, k;
    int rc;

    if (span_is(sp, "?")) {
        c->wday_kind = FAAS_CRON_WDAY_ANY;
        return 0;
    }
    if (span_has(sp, '?'))
        return perr(e, "'?' must stand alone");
    if (span_is(sp, "L")) {
        c->wday_kind = FAAS_CRON_WDAY_SET;
        c->wdays = (uint64_t)1 << 7;
        return 0;
    }
    if (hash) {
        const char *s = hash + 1;
        if ((rc = parse_value(f, e, &p, hash, &n)) != 0)
            return rc;
        if (p != hash)
            return perr(e, "'#' must follow a single weekday, as in '3#2'");
        p = s;
        read_uint(&p, sp.end, &k);
        if (p == s || p != sp.end)
            return perr(e, "expected a number 1-5 after '#'");
        if (k < 1 || k > 5)
            return perr(e, "'#%.*s' out of range 1-5", (int)(p - s), s);
        c->wday_kind = FAAS_CRON_WDAY_NTH;
        c->wday_arg = n;
        c->wday_nth = k;
        return 0;
    }
    if (upper(sp.end[-1]) == 'L') {
        /* "nL" or "FRIL": the value is everything before the L. No weekday
         * name holds an L, so any other L is misplaced. */
        if ((rc = parse_value(f, e, &p, sp.end - 1, &n)) != 0)
            return rc;
        if (p != sp.end - 1)
            return perr(e, "'L' must stand alone or follow a single weekday, as in '6L'");
        c->wday_kind = FAAS_CRON_WDAY_LAST;
        c->wday_arg = n;
        return 0;
    }
    if (span_has(sp, 'L'))
        return perr(e, "'L' must stand alone or follow a single weekday, as in '6L'");
    c->wday_kind = FAAS_CRON_WDAY_SET;
    return parse_list(f, e, sp, 0, &c->wdays);
}

static int parse_cron(const char *body, const char *end, char *err, size_t errlen,
                      struct faas_cron *c)
{
    struct span f[F_COUNT];
    struct perr e = { err, errlen, "cron" };
    const char *p = body;
    int rc;

    for (int i = 0; i < F_COUNT; i++) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        if (i == F_COUNT - 1) {
            if (sp)
                return perr(&e, "expected 6 fields separated by single spaces, got more");
            sp = end;
        } else if (!sp) {
            return perr(&e, "expected 6 fields separated by single spaces, got %d", i + 1);
        }
        if (sp == p)
            return perr(&e, "expected 6 fields separated by single spaces (empty field %d)",
                        i + 1);
        f[i].p = p;
        f[i].end = sp;
        p = sp + 1;
    }

    memset(c, 0, sizeof *c);
    for (int i = 0; i < F_COUNT; i++) {
        struct perr fe = { err, errlen, specs[i].where };
        switch (i) {
        case F_MIN:
            rc = parse_plain(i, f[i], &fe, &c->minutes);
            break;
        case F_HOUR:
            rc = parse_plain(i, f[i], &fe, &c->hours);
            break;
        case F_MDAY:
            rc = parse_mday(f[i], &fe, c);
            break;
        case F_MONTH:
            rc = parse_plain(i, f[i], &fe, &c->months);
            break;
        case F_WDAY:
            rc = parse_wday(f[i], &fe, c);
            break;
        default:
            rc = parse_plain(i, f[i], &fe, c->years);
            break;
        }
        if (rc)
            return rc;
    }
    if ((c->mday_kind == FAAS_CRON_MDAY_ANY) == (c->wday_kind == FAAS_CRON_WDAY_ANY)) {
        struct perr fe = { err, errlen, "cron: day-of-month/day-of-week" };
        return perr(&fe, "exactly one of the two must be '?'");
    }
    return 0;
}

/* ---- rate and at ------------------------------------------------------- */

static int parse_rate(const char *body, const char *end, char *err, size_t errlen,
                      int64_t *period)
{
    static const struct {
        const char *name;
        int64_t secs;
        int plural;
    } units[] = {
        { "minute", 60, 0 },     { "minutes", 60, 1 }, { "hour", 3600, 0 },
        { "hours", 3600, 1 },    { "day", SECS_PER_DAY, 0 }, { "days", SECS_PER_DAY, 1 },
    };
    struct perr e = { err, errlen, "rate" };
    const char *p = body;
    uint64_t n = 0;
    size_t ulen;

    if (p == end || !is_digit(*p))
        return perr(&e, "expected a positive whole number, as in 'rate(5 minutes)'");
    if (*p == '0')
        return perr(&e, "the value must be a positive number without leading zeros");
    while (p < end && is_digit(*p)) {
        if (n > (uint64_t)INT64_MAX / 10u)
            return perr(&e, "value too large");
        n = n * 10u + (uint64_t)(*p - '0');
        p++;
    }
    if (p == end || *p != ' ')
        return perr(&e, "expected one space and a unit after the value");
    p++;
    ulen = (size_t)(end - p);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strlen(units[i].name) != ulen || memcmp(units[i].name, p, ulen) != 0)
            continue;
        if (units[i].plural != (n != 1))
            return perr(&e, n == 1 ? "use the singular unit with 1"
                                   : "use the plural unit with a value other than 1");
        if (n > (uint64_t)(INT64_MAX / units[i].secs))
            return perr(&e, "value too large");
        *period = (int64_t)n * units[i].secs;
        return 0;
    }
    return perr(&e, "unknown unit '%.*s' (minute(s), hour(s) or day(s))", (int)ulen, p);
}

/* Reads exactly `width` digits at *p. */
static int fixed_digits(const char **p, const char *end, int width, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < width; i++) {
        if (*p >= end || !is_digit(**p))
            return -1;
        x = x * 10u + (unsigned)(**p - '0');
        (*p)++;
    }
    *v = x;
    return 0;
}

static int parse_at(const char *body, const char *end, char *err, size_t errlen, int64_t *at)
{
    struct perr e = { err, errlen, "at" };
    static const char seps[] = "--T::";
    static const int widths[6] = { 4, 2, 2, 2, 2, 2 };
    unsigned v[6];
    const char *p = body;

    for (int i = 0; i < 6; i++) {
        if (fixed_digits(&p, end, widths[i], &v[i]) != 0 ||
            (i < 5 && (p >= end || *p++ != seps[i])))
            return perr(&e, "expected yyyy-mm-ddThh:mm:ss");
    }
    if (p != end)
        return perr(&e, "expected yyyy-mm-ddThh:mm:ss");
    if (v[0] < FAAS_CRON_YEAR_MIN || v[0] > FAAS_CRON_YEAR_MAX)
        return perr(&e, "year %u out of range %d-%d", v[0], FAAS_CRON_YEAR_MIN,
                    FAAS_CRON_YEAR_MAX);
    if (v[1] < 1 || v[1] > 12)
        return perr(&e, "month %02u out of range 01-12", v[1]);
    if (v[2] < 1 || v[2] > days_in_month(v[0], v[1]))
        return perr(&e, "day %02u does not exist in %04u-%02u", v[2], v[0], v[1]);
    if (v[3] > 23 || v[4] > 59 || v[5] > 59)
        return perr(&e, "time %02u:%02u:%02u out of range", v[3], v[4], v[5]);
    *at = faas_days_from_civil(v[0], v[1], v[2]) * SECS_PER_DAY +
          (int64_t)(v[3] * 3600u + v[4] * 60u + v[5]);
    return 0;
}

int faas_schedule_parse(const char *expr, struct faas_schedule *out, char *err,
                        size_t errlen)
{
    static const struct {
        const char *prefix;
        const char *name;
        enum faas_schedule_kind kind;
    } kinds[] = {
        { "rate(", "rate", FAAS_SCHEDULE_RATE },
        { "cron(", "cron", FAAS_SCHEDULE_CRON },
        { "at(", "at", FAAS_SCHEDULE_AT },
    };
    struct perr e = { err, errlen, "schedule" };
    struct faas_schedule s;
    size_t len;
    int rc = FAAS_EPARSE;

    if (err && errlen)
        err[0] = '\0';
    if (!expr || !out)
        return FAAS_EINVAL;
    len = strlen(expr);
    if (len == 0)
        return perr(&e, "empty expression");
    memset(&s, 0, sizeof s);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t pl = strlen(kinds[i].prefix);
        const char *body = expr + pl, *end = expr + len - 1;
        if (len < pl || memcmp(expr, kinds[i].prefix, pl) != 0)
            continue;
        if (len == pl || *end != ')' || memchr(body, ')', (size_t)(end - body))) {
            struct perr ke = { err, errlen, kinds[i].name };
            return perr(&ke, "expected one ')' closing the expression");
        }
        s.kind = kinds[i].kind;
        switch (s.kind) {
        case FAAS_SCHEDULE_RATE:
            rc = parse_rate(body, end, err, errlen, &s.period);
            break;
        case FAAS_SCHEDULE_CRON:
            rc = parse_cron(body, end, err, errlen, &s.cron);
            break;
        case FAAS_SCHEDULE_AT:
            rc = parse_at(body, end, err, errlen, &s.at);
            break;
        }
        if (rc)
            return rc;
        *out = s;
        return 0;
    }
    return perr(&e, "expected rate(...), cron(...) or at(...)");
}

/* ---- the next fire ----------------------------------------------------- */

/* The lowest set bit >= from, or -1. */
static int next_bit(uint64_t set, unsigned from)
{
    for (unsigned i = from; i < 64u; i++)
        if (set & ((uint64_t)1 << i))
            return (int)i;
    return -1;
}

/* The days of month m of year y (bits 1-31) the day fields select. */
static uint64_t day_mask(const struct faas_cron *c, int64_t y, unsigned m)
{
    unsigned dim = days_in_month(y, m);
    unsigned wd1 = weekday(faas_days_from_civil(y, m, 1)); /* of the 1st */
    unsigned wdl = (wd1 + dim - 1u) % 7u;              /* of the last day */
    uint64_t mask = 0;
    unsigned d, n, wd;

    switch (c->mday_kind) {
    case FAAS_CRON_MDAY_SET:
        return c->mdays & ((((uint64_t)1 << (dim + 1u)) - 1u) & ~(uint64_t)1);
    case FAAS_CRON_MDAY_LAST:
        return (uint64_t)1 << dim;
    case FAAS_CRON_MDAY_LAST_WEEKDAY:
        d = wdl == 6u ? dim - 1u : wdl == 0u ? dim - 2u : dim;
        return (uint64_t)1 << d;
    case FAAS_CRON_MDAY_NEAREST:
        n = c->mday_arg;
        if (n > dim)
            return 0;
        wd = (wd1 + n - 1u) % 7u;
        d = n;
        if (wd == 6u) /* Saturday: Friday, unless that leaves the month */
            d = n == 1u ? 3u : n - 1u;
        else if (wd == 0u) /* Sunday: Monday, unless that leaves the month */
            d = n == dim ? n - 2u : n + 1u;
        return (uint64_t)1 << d;
    case FAAS_CRON_MDAY_ANY:
        break;
    }
    switch (c->wday_kind) {
    case FAAS_CRON_WDAY_SET:
        for (d = 1; d <= dim; d++)
            if (c->wdays & ((uint64_t)1 << ((wd1 + d - 1u) % 7u + 1u)))
                mask |= (uint64_t)1 << d;
        return mask;
    case FAAS_CRON_WDAY_LAST:
        d = dim - (wdl + 7u - (c->wday_arg - 1u)) % 7u;
        return (uint64_t)1 << d;
    case FAAS_CRON_WDAY_NTH:
        d = 1u + (c->wday_arg - 1u + 7u - wd1) % 7u + 7u * (c->wday_nth - 1u);
        return d <= dim ? (uint64_t)1 << d : 0;
    case FAAS_CRON_WDAY_ANY:
        break;
    }
    return 0;
}

static int year_set(const struct faas_cron *c, int64_t y)
{
    unsigned i = (unsigned)(y - FAAS_CRON_YEAR_MIN);
    return (c->years[i / 64u] >> (i % 64u)) & 1u;
}

/* A candidate time, field by field. */
struct when {
    int64_t y;
    unsigned mo, d, h, mi;
};

/* Moves to the start of the next year, month, day or hour: the finer
 * fields go back to their first value. A day or hour past the end is fine:
 * the next pass finds no match in it and carries. */
static void next_year(struct when *w)
{
    w->y++;
    w->mo = 1;
    w->d = 1;
    w->h = 0;
    w->mi = 0;
}

static void next_month(struct when *w)
{
    if (++w->mo > 12) {
        next_year(w);
        return;
    }
    w->d = 1;
    w->h = 0;
    w->mi = 0;
}

static void next_day(struct when *w)
{
    w->d++;
    w->h = 0;
    w->mi = 0;
}

static int cron_next(const struct faas_cron *c, int64_t after, int64_t *out)
{
    struct when w;
    int64_t start;
    unsigned sod;
    int b;

    if (after >= CRON_END)
        return FAAS_ENOENT;
    /* The first whole minute strictly after `after`, not before 1970. */
    start = after < 0 ? 0 : (after / 60 + 1) * 60;
    faas_civil_from_days(start / SECS_PER_DAY, &w.y, &w.mo, &w.d);
    sod = (unsigned)(start % SECS_PER_DAY);
    w.h = sod / 3600u;
    w.mi = sod % 3600u / 60u;

    /* Each pass either returns or moves the candidate forward to the
     * earliest time the first failing field allows. */
    for (;;) {
        if (w.y > FAAS_CRON_YEAR_MAX)
            return FAAS_ENOENT;
        if (!year_set(c, w.y)) {
            next_year(&w);
            continue;
        }
        if ((b = next_bit(c->months, w.mo)) < 0) {
            next_year(&w);
            continue;
        }
        if ((unsigned)b != w.mo) {
            w.mo = (unsigned)b;
            w.d = 1;
            w.h = 0;
            w.mi = 0;
        }
        if ((b = next_bit(day_mask(c, w.y, w.mo), w.d)) < 0) {
            next_month(&w);
            continue;
        }
        if ((unsigned)b != w.d) {
            w.d = (unsigned)b;
            w.h = 0;
            w.mi = 0;
        }
        if ((b = next_bit(c->hours, w.h)) < 0) {
            next_day(&w);
            continue;
        }
        if ((unsigned)b != w.h) {
            w.h = (unsigned)b;
            w.mi = 0;
        }
        if ((b = next_bit(c->minutes, w.mi)) < 0) {
            w.h++;
            w.mi = 0;
            continue;
        }
        *out = faas_days_from_civil(w.y, w.mo, w.d) * SECS_PER_DAY +
               (int64_t)(w.h * 3600u + (unsigned)b * 60u);
        return 0;
    }
}

int faas_schedule_next_parsed(const struct faas_schedule *s, time_t after, time_t *next)
{
    int64_t a = (int64_t)after, t = 0;
    int rc = FAAS_EINVAL; /* a kind no case below knows */

    if (!s || !next)
        return FAAS_EINVAL;
    switch (s->kind) {
    case FAAS_SCHEDULE_RATE:
        rc = a > INT64_MAX - s->period ? FAAS_ENOENT : 0;
        t = a + (rc ? 0 : s->period);
        break;
    case FAAS_SCHEDULE_AT:
        rc = s->at > a ? 0 : FAAS_ENOENT;
        t = s->at;
        break;
    case FAAS_SCHEDULE_CRON:
        rc = cron_next(&s->cron, a, &t);
        break;
    }
    if (rc)
        return rc;
    /* A 32-bit time_t (armhf before 64-bit time) ends in 2038: a fire after
     * that has no time_t, and a truncated one would be decades early. */
    if (sizeof(time_t) < sizeof(int64_t) && (t < INT32_MIN || t > INT32_MAX))
        return FAAS_ENOENT;
    *next = (time_t)t;
    return 0;
}

/*
 * rate() counts periods from `after`; a cron's fires are fixed, so the
 * search gallops back from `upto` (a minute, two, four...) to a window
 * that holds the last fire, then walks forward through that window only:
 * the steps grow with the log of the gap, the walk with the fires of a
 * window no longer than twice the time since the last one.
 */
int faas_schedule_last_parsed(const struct faas_schedule *s, time_t after, time_t upto,
                              time_t *last)
{
    int64_t a = (int64_t)after, u = (int64_t)upto, delta = 60, from;
    time_t t, found;

    if (!s || !last)
        return FAAS_EINVAL;
    if (faas_schedule_next_parsed(s, after, &t) != 0 || (int64_t)t > u)
        return FAAS_ENOENT;
    if (s->kind == FAAS_SCHEDULE_RATE) {
        *last = (time_t)(a + (u - a) / s->period * s->period);
        return 0;
    }
    for (;;) {
        from = u - a > delta ? u - delta : a;
        if (from == a || (faas_schedule_next_parsed(s, (time_t)from, &t) == 0 &&
                          (int64_t)t <= u))
            break;
        delta *= 2;
    }
    found = t;
    if (from == a)
        faas_schedule_next_parsed(s, after, &found);
    while (faas_schedule_next_parsed(s, found, &t) == 0 && (int64_t)t <= u)
        found = t;
    *last = found;
    return 0;
}

int faas_schedule_next(const char *expr, time_t after, time_t *next)
{
    struct faas_schedule s;
    int rc;

    if (!expr || !next)
        return FAAS_EINVAL;
    if ((rc = faas_schedule_parse(expr, &s, NULL, 0)) != 0)
        return rc;
    return faas_schedule_next_parsed(&s, after, next);
}

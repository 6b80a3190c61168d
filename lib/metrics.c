/*
 * metrics.c - per-function counters and duration histograms, the log
 * records (REPORT and log lines) and the Prometheus text exposition.
 *
 * Counters live in each function and are updated on the loop as results are
 * made, so reading them needs no lock. faas_stats() with no name sums every
 * function.
 *
 * The exposition also shows each function's async queue (async.c keeps
 * those counters, labelled function) and each host-fed mapping's records
 * (batch.c and source.c keep those, labelled mapping with the mapping's
 * name, "SOURCE FUNCTION", escaped as Prometheus label values are), and,
 * with a durable engine, its commit durations and queue (durable.c's
 * figures: faas_durable_stats_get).
 *
 * Owns the counters and histograms in each struct faas_fn (fn->c) and the
 * shape of every log record. Called by invoke.c when a result is made
 * (faas_metrics_record, faas_log_report, faas_log_lines), by every layer
 * that writes a log record (faas_log_event: async.c, batch.c, idem.c,
 * source.c, watch.c, http_conn.c, runtime_api.c) and the host (faas_stats,
 * faas_stats_read, the exposition). May call: runtime.c's lookup, clock.c,
 * text.c (escaping), libevent's evbuffer, getrusage(2); and, for the
 * exposition, async.c's and batch.c's counter getters (faas_async_stats_get,
 * faas_batcher_stats_get): read-only snapshots of the sources' own
 * counters, the one place metrics reads a layer above it (docs/internals.md);
 * and durable.c's figures (faas_durable_stats_get), a layer below.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/buffer.h>

#include "durable.h"
#include "faas_int.h"

/* Upper bounds of the duration histogram, in seconds; the last is +Inf. */
static const double hist_le[FAAS_HIST_BUCKETS - 1] = { 0.0001, 0.0005, 0.001, 0.005,
                                                       0.01,   0.05,   0.1,   0.5,
                                                       1.0,    5.0,    10.0 };

void faas_metrics_record(struct faas_fn *fn, const struct faas_result *res)
{
    struct faas_counters *c = &fn->c;
    double s = (double)res->duration_ns / 1e9;
    int i;

    c->invocations++;
    if (res->status != 0)
        c->errors++;
    if (res->status == FAAS_ETIMEDOUT)
        c->timeouts++;
    if (res->cold)
        c->cold_starts++;
    if (res->replayed)
        c->replays++;
    for (i = 0; i < FAAS_HIST_BUCKETS - 1 && s > hist_le[i]; i++)
        ;
    c->hist[i]++;
    c->duration_sum_ns += res->duration_ns;
}

uint64_t faas_metrics_max_rss_kb(struct faas_runtime *rt, uint64_t now)
{
    /* getrusage is a system call: sample it at most every 100 ms. */
    struct rusage ru;
    if (rt->rss_at_ns == 0 || now - rt->rss_at_ns > 100000000u) {
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            rt->rss_kb = (uint64_t)ru.ru_maxrss;
        rt->rss_at_ns = now ? now : 1;
    }
    return rt->rss_kb;
}

void faas_log_lines(struct faas_runtime *rt, struct faas_ctx *ctx)
{
    struct faas_logline *l, *next;
    struct faas_log_record rec;

    l = ctx->log_head;
    ctx->log_head = NULL;
    ctx->log_tail = &ctx->log_head;
    memset(&rec, 0, sizeof rec);
    rec.kind = FAAS_LOG_LINE;
    rec.function = ctx->fn->name;
    rec.request_id = ctx->request_id;
    for (; l; l = next) {
        next = l->next;
        if (rt->opts.log) {
            rec.line = l->text;
            rt->opts.log(&rec, rt->opts.log_arg);
        }
        free(l);
    }
}

void faas_log_report(struct faas_runtime *rt, const struct faas_result *res)
{
    struct faas_log_record rec;
    if (!rt->opts.log)
        return;
    memset(&rec, 0, sizeof rec);
    rec.kind = FAAS_LOG_REPORT;
    rec.function = res->function;
    rec.request_id = res->request_id;
    rec.result = res;
    rt->opts.log(&rec, rt->opts.log_arg);
}

void faas_log_event(struct faas_runtime *rt, enum faas_log_kind kind, const char *function,
                    const char *request_id, const char *action, const char *key,
                    const char *fmt, ...)
{
    struct faas_log_record rec;
    char text[320], line[320];
    va_list ap;
    int n;

    if (!rt->opts.log)
        return;
    memset(&rec, 0, sizeof rec);
    rec.kind = kind;
    rec.function = function;
    rec.request_id = request_id;
    rec.action = action;
    rec.key = key;
    if (fmt) {
        va_start(ap, fmt);
        n = vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        /* Error messages reach these lines: one record stays one line. */
        faas_log_escape(line, sizeof line, text,
                        n < 0 ? 0 : (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
        rec.line = line;
    }
    rt->opts.log(&rec, rt->opts.log_arg);
}

static void add_stats(struct faas_stats *out, const struct faas_fn *fn)
{
    out->invocations += fn->c.invocations;
    out->errors += fn->c.errors;
    out->timeouts += fn->c.timeouts;
    out->throttles += fn->c.throttles;
    out->cold_starts += fn->c.cold_starts;
    out->replays += fn->c.replays;
    out->instances += fn->ninstances;
    out->concurrency += fn->nbusy;
    out->queued += fn->nwaiting;
}

int faas_stats(struct faas_runtime *rt, const char *function, struct faas_stats *out)
{
    struct faas_list *e;
    if (!rt || !out)
        return FAAS_EINVAL;
    if (function) {
        struct faas_fn *fn = faas_fn_lookup(rt, function);
        if (!fn)
            return FAAS_ENOENT;
        memset(out, 0, sizeof *out);
        add_stats(out, fn);
        return 0;
    }
    memset(out, 0, sizeof *out);
    for (e = rt->fns.next; e != &rt->fns; e = e->next)
        add_stats(out, FAAS_CONTAINER_OF(e, struct faas_fn, link));
    return 0;
}

struct metric {
    const char *name, *type, *help;
    size_t off;   /* offsetof in faas_counters, for counters */
    int gauge;    /* 1 instances, 2 concurrency, 3 queued */
};

static const struct metric metrics[] = {
    { "faas_invocations_total", "counter", "Invocations that produced a result.",
      offsetof(struct faas_counters, invocations), 0 },
    { "faas_errors_total", "counter", "Invocations whose result is an error.",
      offsetof(struct faas_counters, errors), 0 },
    { "faas_timeouts_total", "counter", "Invocations that timed out.",
      offsetof(struct faas_counters, timeouts), 0 },
    { "faas_throttles_total", "counter", "Invocations refused as throttled.",
      offsetof(struct faas_counters, throttles), 0 },
    { "faas_cold_starts_total", "counter", "Invocations that started a new instance.",
      offsetof(struct faas_counters, cold_starts), 0 },
    { "faas_replays_total", "counter", "Idempotent invocations answered from the store.",
      offsetof(struct faas_counters, replays), 0 },
    { "faas_instances", "gauge", "Instances alive.", 0, 1 },
    { "faas_concurrency", "gauge", "Instances running an invocation.", 0, 2 },
    { "faas_queued", "gauge", "Invocations waiting for an instance.", 0, 3 },
};

/* A metric's HELP and TYPE lines; non-zero if out ran out. */
static int write_help(struct evbuffer *out, const char *name, const char *type,
                      const char *help)
{
    return evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type) < 0;
}

/* The async queue of every function. Returns non-zero if out ran out. */
static int write_async(struct faas_runtime *rt, struct evbuffer *out)
{
    static const struct {
        const char *name, *type, *help;
    } am[] = {
        { "faas_async_queue_depth", "gauge", "Async events waiting to run or to be retried." },
        { "faas_async_oldest_event_age_seconds", "gauge",
          "Age of the oldest async event waiting; 0 when none waits." },
        { "faas_async_retries_total", "counter", "Async retries after failed attempts." },
        { "faas_async_dead_letters_total", "counter", "Async events that ended in failure." },
        { "faas_async_dropped_total", "counter",
          "Async events refused by the queue's bounds, dropped for newer ones or expired." },
    };
    uint64_t now = faas_now_ns(rt);
    struct faas_list *e;
    size_t m;
    int rc = 0;

    for (m = 0; m < sizeof am / sizeof am[0]; m++) {
        rc |= write_help(out, am[m].name, am[m].type, am[m].help);
        for (e = rt->fns.next; e != &rt->fns; e = e->next) {
            const struct faas_fn *fn = FAAS_CONTAINER_OF(e, struct faas_fn, link);
            struct faas_async_stats st;
            faas_async_stats_get(fn, now, &st);
            if (m == 1) {
                rc |= evbuffer_add_printf(out, "%s{function=\"%s\"} %.3f\n", am[m].name,
                                          fn->name, (double)st.oldest_age_ns / 1e9) < 0;
                continue;
            }
            rc |= evbuffer_add_printf(out, "%s{function=\"%s\"} %llu\n", am[m].name, fn->name,
                                      (unsigned long long)(m == 0   ? st.depth
                                                           : m == 2 ? st.retries
                                                           : m == 3 ? st.dead_letters
                                                                    : st.dropped)) < 0;
        }
    }
    return rc;
}

/* A mapping's name (faas_map_opts.name, "SOURCE FUNCTION" by default) as
 * a label value: backslash, quote and newline escaped. Names are unique, so
 * each mapping is one series. */
static int add_mapping_label(struct evbuffer *out, const struct faas_mapping *m)
{
    const char *p;
    int rc = 0;
    for (p = m->name; *p && rc == 0; p++) {
        if (*p == '\\' || *p == '"')
            rc = evbuffer_add_printf(out, "\\%c", *p) < 0;
        else if (*p == '\n')
            rc = evbuffer_add(out, "\\n", 2);
        else
            rc = evbuffer_add(out, p, 1);
    }
    return rc;
}

/* The records of every host-fed mapping. Returns non-zero if out ran out. */
static int write_mappings(struct faas_runtime *rt, struct evbuffer *out)
{
    static const struct {
        const char *name, *type, *help;
    } mm[] = {
        { "faas_mapping_records_total", "counter", "Records the mapping took past its filter." },
        { "faas_mapping_filtered_total", "counter", "Records the mapping's filter dropped." },
        { "faas_mapping_failed_records_total", "counter", "Records that failed for good." },
        { "faas_mapping_backlog", "gauge",
          "Records held: waiting for a batch, for a retry, or in one under way." },
        { "faas_mapping_oldest_record_age_seconds", "gauge",
          "Age of the oldest record held; 0 when none is." },
    };
    uint64_t now = faas_now_ns(rt);
    struct faas_list *e;
    size_t k;
    int rc = 0;

    for (k = 0; k < sizeof mm / sizeof mm[0]; k++) {
        rc |= write_help(out, mm[k].name, mm[k].type, mm[k].help);
        for (e = rt->mappings.next; e != &rt->mappings; e = e->next) {
            const struct faas_mapping *m = FAAS_CONTAINER_OF(e, struct faas_mapping, link);
            struct faas_mapping_stats st;
            if (m->dead || !m->batcher)
                continue;
            faas_batcher_stats_get(m, now, &st);
            rc |= evbuffer_add_printf(out, "%s{mapping=\"", mm[k].name) < 0;
            rc |= add_mapping_label(out, m);
            if (k == 4)
                rc |= evbuffer_add_printf(out, "\"} %.3f\n", (double)st.oldest_age_ns / 1e9) < 0;
            else
                rc |= evbuffer_add_printf(out, "\"} %llu\n",
                                          (unsigned long long)(k == 0   ? st.records
                                                               : k == 1 ? m->nfiltered
                                                               : k == 2 ? st.failed
                                                                        : st.backlog)) < 0;
        }
    }
    return rc;
}

/* The durable engine's transactions and queue, when the runtime has one.
 * Returns non-zero if out ran out. */
static int write_durable(struct faas_runtime *rt, struct evbuffer *out)
{
    struct faas_durable_stats st;
    uint64_t cum = 0;
    int i, rc = 0;

    if (!rt->durable)
        return 0;
    faas_durable_stats_get(rt->durable, &st);
    rc |= write_help(out, "faas_durable_commit_seconds", "histogram",
                     "Durable engine transactions (group commits), begin to commit.");
    for (i = 0; i < 12; i++) {
        cum += st.commit_buckets[i];
        if (i < 11)
            rc |= evbuffer_add_printf(out, "faas_durable_commit_seconds_bucket{le=\"%g\"} %llu\n",
                                      faas_durable_commit_bounds_s[i],
                                      (unsigned long long)cum) < 0;
        else
            rc |= evbuffer_add_printf(out,
                                      "faas_durable_commit_seconds_bucket{le=\"+Inf\"} %llu\n",
                                      (unsigned long long)cum) < 0;
    }
    rc |= evbuffer_add_printf(out, "faas_durable_commit_seconds_sum %.9f\n",
                              (double)st.commit_ns_sum / 1e9) < 0;
    rc |= evbuffer_add_printf(out, "faas_durable_commit_seconds_count %llu\n",
                              (unsigned long long)cum) < 0;
    rc |= write_help(out, "faas_durable_pending", "gauge",
                     "Durable operations queued and not yet committed.");
    rc |= evbuffer_add_printf(out, "faas_durable_pending %llu\n",
                              (unsigned long long)st.pending) < 0;
    rc |= write_help(out, "faas_durable_refused_total", "counter",
                     "Operations adding work that the durable engine could not keep "
                     "(disk full, I/O error).");
    rc |= evbuffer_add_printf(out, "faas_durable_refused_total %llu\n",
                              (unsigned long long)st.refused) < 0;
    return rc;
}

int faas_metrics_write(struct faas_runtime *rt, struct evbuffer *out)
{
    struct faas_list *e;
    size_t m;
    int i, rc = 0;

    if (!rt || !out)
        return FAAS_EINVAL;
    /* Names are [A-Za-z0-9_-]: label values need no escaping. */
    for (m = 0; m < sizeof metrics / sizeof metrics[0]; m++) {
        const struct metric *mt = &metrics[m];
        rc |= write_help(out, mt->name, mt->type, mt->help);
        for (e = rt->fns.next; e != &rt->fns; e = e->next) {
            const struct faas_fn *fn = FAAS_CONTAINER_OF(e, struct faas_fn, link);
            uint64_t v;
            switch (mt->gauge) {
            case 1: v = fn->ninstances; break;
            case 2: v = fn->nbusy; break;
            case 3: v = fn->nwaiting; break;
            default:
                memcpy(&v, (const char *)&fn->c + mt->off, sizeof v);
                break;
            }
            rc |= evbuffer_add_printf(out, "%s{function=\"%s\"} %llu\n", mt->name, fn->name,
                                      (unsigned long long)v) < 0;
        }
    }
    rc |= evbuffer_add_printf(out,
                              "# HELP faas_duration_seconds Handler duration.\n"
                              "# TYPE faas_duration_seconds histogram\n") < 0;
    for (e = rt->fns.next; e != &rt->fns; e = e->next) {
        const struct faas_fn *fn = FAAS_CONTAINER_OF(e, struct faas_fn, link);
        uint64_t cum = 0;
        for (i = 0; i < FAAS_HIST_BUCKETS; i++) {
            cum += fn->c.hist[i];
            if (i < FAAS_HIST_BUCKETS - 1)
                rc |= evbuffer_add_printf(out,
                                          "faas_duration_seconds_bucket{function=\"%s\","
                                          "le=\"%g\"} %llu\n",
                                          fn->name, hist_le[i], (unsigned long long)cum) < 0;
            else
                rc |= evbuffer_add_printf(out,
                                          "faas_duration_seconds_bucket{function=\"%s\","
                                          "le=\"+Inf\"} %llu\n",
                                          fn->name, (unsigned long long)cum) < 0;
        }
        rc |= evbuffer_add_printf(out, "faas_duration_seconds_sum{function=\"%s\"} %.9f\n",
                                  fn->name, (double)fn->c.duration_sum_ns / 1e9) < 0;
        rc |= evbuffer_add_printf(out, "faas_duration_seconds_count{function=\"%s\"} %llu\n",
                                  fn->name, (unsigned long long)cum) < 0;
    }
    rc |= write_async(rt, out);
    rc |= write_mappings(rt, out);
    rc |= write_durable(rt, out);
    return rc ? FAAS_ENOMEM : 0;
}

/* ---- struct faas_stats ---------------------------------------------- */

/* The first version: up to `queued`. */
#define STATS_V1_END (offsetof(struct faas_stats, queued) + sizeof(uint32_t))

/*
 * faas_stats() writes sizeof(struct faas_stats) bytes: right while the
 * struct is its first version. When it grows, faas_stats must write the
 * first version's bytes only (hosts built before pass a struct that short).
 */
_Static_assert(sizeof(struct faas_stats) < STATS_V1_END + sizeof(uint64_t),
               "struct faas_stats grew: make faas_stats() write STATS_V1_END bytes");

int faas_stats_read(struct faas_runtime *rt, const char *function, struct faas_stats *out,
                    size_t size)
{
    struct faas_stats all;
    int rc;

    if (!out || size < STATS_V1_END || size > sizeof all)
        return FAAS_EINVAL;
    rc = faas_stats(rt, function, &all);
    if (rc == 0)
        memcpy(out, &all, size);
    return rc;
}

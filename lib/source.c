/*
 * source.c - event-source mappings: the table behind faas_map, schedules
 * on the host's loop, and faas_emit's fan-out to host-fed sources.
 *
 * A mapping is a parsed source key ("kind:pattern"), a function name,
 * copied options and a name, unique among live mappings (opts.name, or
 * "SOURCE FUNCTION"; rt->mapping_names finds them): its durable identity
 * and its metrics label. Each kind hands the rest to its own file: api:
 * routes to http.c, host-fed kinds (s3:, dynamodb:, stream:, queue:) to a
 * batcher in batch.c, and schedule: stays here, as one libevent timer per
 * mapping.
 *
 * Schedules fire from the runtime's wall clock: the timer only decides when
 * to look. A fire that comes late (the loop was blocked, the clock jumped)
 * fires once, and the next one is computed from now, so there is never a
 * burst. The event is EventBridge's Scheduled Event, invoked asynchronously:
 * it runs whether or not the function has warm instances. With a durable
 * engine, each fire first claims its due time under the mapping's name
 * (faas_durable_schedule_claim) and is queued only when the claim wins:
 * the due time is kept before the event is queued, so a restart never
 * fires it again, and of the hosts sharing a Redis engine only one fires
 * it (the others skip it silently; a rate() falls into the winner's step).
 * A new mapping whose name has a kept fire fires the latest due time
 * missed since then once (faas_schedule_last_parsed), or goes on from the
 * kept fire.
 *
 * faas_emit shapes a record once (shapes.c), then offers it to every mapping
 * of its kind whose pattern matches and whose filter passes it. The
 * mappings' byte bounds count a record as the payload limit measured it
 * (faas_json_size: an upper bound of the emitted record's compact JSON),
 * so no record is walked twice. Every refusal, of the whole record or by one
 * mapping, is logged with its reason (FAAS_LOG_WARNING, "record-refused").
 *
 * faas_emit_with's on_accepted is a struct faas_emit_wait: the batchers
 * that hand the record to a durable engine owe it their answers; with
 * nothing owed (no engine, or no mapping took it) it is answered on the
 * next turn from an event of its own, kept on rt->emit_waits so that
 * teardown answers it FAAS_ECANCELED. Nothing costs anything without a
 * callback.
 *
 * While the runtime drains, faas_emit refuses (FAAS_EDRAINING) and
 * schedules do not fire (logged, FAAS_LOG_WARNING "drain"); a fire whose
 * claim was asked before the drain began is queued when it wins.
 *
 * Called by the public API and runtime.c (sweep, free, schedule poll). May
 * call: route.c and http.c (api:), schedule.c, filter.c, shapes.c,
 * batch.c, async.c's faas_invoke_async (a fire), the durable engine
 * (durable.h: schedule get and claim), metrics.c's log records and
 * runtime.c's loop services.
 */
#include <stdarg.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "durable.h"
#include "faas_int.h"
#include "route.h"
#include "json_path.h"
#include "opts.h"
#include "schedule.h"


/* "kind:rest" -> kind and rest; 0 or FAAS_EPARSE. */
static int parse_kind(const char *source, enum faas_src_kind *kind, const char **rest)
{
    static const struct {
        const char *prefix;
        enum faas_src_kind kind;
    } kinds[] = {
        { "api:", FAAS_SRC_API },       { "schedule:", FAAS_SRC_SCHEDULE },
        { "s3:", FAAS_SRC_S3 },         { "dynamodb:", FAAS_SRC_DYNAMODB },
        { "stream:", FAAS_SRC_STREAM }, { "queue:", FAAS_SRC_QUEUE },
    };
    size_t i;
    for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t n = strlen(kinds[i].prefix);
        if (strncmp(source, kinds[i].prefix, n) == 0) {
            *kind = kinds[i].kind;
            *rest = source + n;
            return 0;
        }
    }
    return FAAS_EPARSE;
}

static int name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 128 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return n > 0;
}

/*
 * The event names of S3 notifications, as S3 documents them. A mapping's
 * pattern must match at least one, or it would never fire ("s3:Nope").
 * Emitted names are only checked for their form: a host may emit a name
 * S3 adds later.
 */
static const char *const s3_events[] = {
    "ObjectCreated:Put", "ObjectCreated:Post", "ObjectCreated:Copy",
    "ObjectCreated:CompleteMultipartUpload", "ObjectRemoved:Delete",
    "ObjectRemoved:DeleteMarkerCreated", "ObjectRestore:Post", "ObjectRestore:Completed",
    "ObjectRestore:Delete", "ObjectTagging:Put", "ObjectTagging:Delete", "ObjectAcl:Put",
    "LifecycleExpiration:Delete", "LifecycleExpiration:DeleteMarkerCreated",
    "LifecycleTransition", "IntelligentTiering", "ReducedRedundancyLostObject",
    "Replication:OperationFailedReplication", "Replication:OperationMissedThreshold",
    "Replication:OperationReplicatedAfterThreshold", "Replication:OperationNotTracked",
};

/* Does an S3 pattern match an event name? "ObjectCreated" alone means
 * every ObjectCreated:... event; otherwise the pattern is a glob. */
static int s3_matches(const char *pattern, const char *name)
{
    if (!strchr(pattern, ':') && strcmp(pattern, "*") != 0) {
        size_t n = strlen(pattern);
        return strncmp(name, pattern, n) == 0 && (name[n] == ':' || name[n] == '\0');
    }
    return fnmatch(pattern, name, 0) == 0;
}

static int s3_pattern_known(const char *pattern)
{
    size_t i;
    for (i = 0; i < sizeof s3_events / sizeof s3_events[0]; i++)
        if (s3_matches(pattern, s3_events[i]))
            return 1;
    return 0;
}

/* S3 event names: "Word" or "Word:Word", letters, with '*' allowed in a
 * pattern (glob) and not in an emitted name. */
static int s3_name_ok(const char *s, int glob)
{
    int colons = 0;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (c == ':') {
            if (n == 0 || s[n - 1] == ':' || ++colons > 1)
                return 0;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (glob && c == '*'))) {
            return 0;
        }
    }
    return n > 0 && s[n - 1] != ':';
}

static int dynamodb_name_ok(const char *s, int glob)
{
    return strcmp(s, "INSERT") == 0 || strcmp(s, "MODIFY") == 0 || strcmp(s, "REMOVE") == 0 ||
           (glob && strcmp(s, "*") == 0);
}

/* Does an emitted event name match a mapping's pattern? */
static int pattern_matches(const struct faas_mapping *m, const char *name)
{
    switch (m->kind) {
    case FAAS_SRC_S3:
        return s3_matches(m->pattern, name);
    case FAAS_SRC_DYNAMODB:
        return strcmp(m->pattern, "*") == 0 || strcmp(m->pattern, name) == 0;
    case FAAS_SRC_STREAM:
    case FAAS_SRC_QUEUE:
        return strcmp(m->pattern, name) == 0;
    case FAAS_SRC_API:
    case FAAS_SRC_SCHEDULE:
        break;
    }
    return 0;
}

struct faas_mapping *faas_mapping_find(struct faas_runtime *rt, int id)
{
    struct faas_list *e;
    for (e = rt->mappings.next; e != &rt->mappings; e = e->next) {
        struct faas_mapping *m = FAAS_CONTAINER_OF(e, struct faas_mapping, link);
        if (m->id == id)
            return m->dead ? NULL : m;
    }
    return NULL;
}

/* ---- schedules ------------------------------------------------------ */

static int64_t wall_s(const struct faas_runtime *rt)
{
    return faas_wall_ns(rt) / 1000000000;
}

static void iso_utc(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* EventBridge's Scheduled Event for a fire at `t`. New reference or NULL. */
static json_t *scheduled_event(struct faas_mapping *m, int64_t t)
{
    struct faas_runtime *rt = m->rt;
    char id[FAAS_REQUEST_ID_SIZE], when[32], rule[160];
    faas_request_id(rt, id);
    iso_utc(t, when, sizeof when);
    snprintf(rule, sizeof rule, "arn:aws:events:%s:000000000000:rule/libfaas-%d", rt->opts.region,
             m->id);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:[s],s:{}}", "version", "0", "id", id,
                     "detail-type", "Scheduled Event", "source", "aws.events", "account",
                     "000000000000", "time", when, "region", rt->opts.region, "resources", rule,
                     "detail");
}

/* Seconds until the timer looks again: at most a day. libevent adds the
 * delay to its clock in a time_t, which on a 32-bit time_t overflows for a
 * fire years ahead and would wake at once; waking early only re-arms. */
static int64_t wake_in(int64_t secs)
{
    return secs < 86400 ? secs : 86400;
}

/* Arms m's timer for its next fire after `after`; none when it never fires
 * again. */
static void schedule_arm(struct faas_mapping *m, int64_t after)
{
    time_t next;
    int64_t now;
    struct timeval tv;

    if (faas_schedule_next_parsed(m->sched, (time_t)after, &next) != 0) {
        m->last_fire_s = -1; /* done: at() in the past, or the years ran out */
        return;
    }
    m->last_fire_s = (int64_t)next; /* the fire this timer is for */
    now = wall_s(m->rt);
    tv.tv_sec = (time_t)wake_in(next > now ? next - now : 0);
    tv.tv_usec = 0;
    event_add(m->timer, &tv);
}

/* Queues a fire's event. A fire decided before a drain began (its claim
 * asked then) is accepted work, which the drain finishes. */
static void fire_event(struct faas_runtime *rt, const char *function, json_t *ev)
{
    char id[FAAS_REQUEST_ID_SIZE];
    int rc = !ev             ? FAAS_ENOMEM
             : rt->draining ? faas_async_invoke_internal(rt, function, ev, id)
                            : faas_invoke_async(rt, function, ev, NULL, NULL);
    if (rc != 0)
        faas_log_event(rt, FAAS_LOG_ASYNC, function, "", "failure", NULL, "%s",
                       faas_strerror(rc));
}

/* A fire waiting for its claim's answer (faas_durable_schedule_claim). */
struct fire {
    struct faas_runtime *rt;
    int mapping;   /* m->id: m may be unmapped before the answer */
    int64_t due;
    json_t *event; /* owned */
    char function[FAAS_NAME_MAX + 1];
    char name[];   /* m->name */
};

/*
 * Another host fired m's due time, or a later one, and the fleet's last
 * fire is `fleet_s`: when the fire after it comes sooner than the one
 * armed, m follows it, so a rate() mapped on hosts at different times
 * falls into one step. A cron's fires are fixed: nothing moves.
 */
static void schedule_follow(struct faas_mapping *m, int64_t fleet_s)
{
    time_t next;
    if (m->last_fire_s >= 0 && faas_schedule_next_parsed(m->sched, (time_t)fleet_s, &next) == 0 &&
        (int64_t)next < m->last_fire_s)
        schedule_arm(m, fleet_s);
}

static void fire_claimed(int rc, int64_t fleet_ms, void *arg)
{
    struct fire *f = arg;
    struct faas_runtime *rt = f->rt;
    struct faas_mapping *m;

    if (rc == 0) {
        fire_event(rt, f->function, f->event);
    } else if (rc == FAAS_EEXIST) {
        /* Another host queued this fire: nothing to say. */
        if ((m = faas_mapping_find(rt, f->mapping)) != NULL)
            schedule_follow(m, fleet_ms / 1000 - (fleet_ms % 1000 < 0));
    } else if (rc != FAAS_ECANCELED) {
        faas_log_event(rt, FAAS_LOG_WARNING, f->function, NULL, "durable", NULL,
                       "%s: the fire at %lld not claimed, skipped: %s", f->name,
                       (long long)f->due, faas_strerror(rc));
    }
    json_decref(f->event);
    free(f);
    faas_drain_note(rt); /* a drain counts the claim until its answer */
}

/*
 * Fires m's due time `due` on the one host of the fleet whose claim wins
 * (an engine no fleet shares: this one). The claim keeps the due time
 * before the event is queued, so a restart never fires it again. Takes a
 * reference to ev.
 */
static void fire_claim(struct faas_mapping *m, const char *function, json_t *ev, int64_t due)
{
    struct faas_runtime *rt = m->rt;
    const struct faas_schedule *s = m->sched;
    size_t n = strlen(m->name) + 1;
    struct fire *f = faas_malloc(sizeof *f + n);
    int64_t gap_ms = s->kind == FAAS_SCHEDULE_RATE ? s->period * 1000 : 1;
    int rc = FAAS_ENOMEM;

    if (f && ev) {
        f->rt = rt;
        f->mapping = m->id;
        f->due = due;
        f->event = json_incref(ev);
        memcpy(f->function, function, sizeof f->function);
        memcpy(f->name, m->name, n);
        rc = faas_durable_schedule_claim(rt->durable, m->name, due * 1000, gap_ms, fire_claimed,
                                         f);
        if (rc != 0)
            json_decref(f->event);
    }
    if (rc == 0)
        return;
    faas_log_event(rt, FAAS_LOG_WARNING, function, NULL, "durable", NULL,
                   "%s: the fire at %lld not claimed, skipped: %s", m->name, (long long)due,
                   faas_strerror(rc));
    free(f);
}

/* Fires m if its time has come; returns 1 if it fired. */
static int schedule_check(struct faas_mapping *m)
{
    struct faas_runtime *rt = m->rt;
    int64_t now = wall_s(rt), due = m->last_fire_s;
    char function[FAAS_NAME_MAX + 1];
    time_t sooner;
    json_t *ev;

    if (due < 0)
        return 0;
    if (rt->draining && now >= due) {
        /* No new work: the fire is skipped, and the next one is armed in
         * case the drain ends without the runtime being freed. */
        memcpy(function, m->function, sizeof function);
        schedule_arm(m, now > due ? now : due);
        faas_log_event(rt, FAAS_LOG_WARNING, function, NULL, "drain", NULL,
                       "%s: not fired, the runtime is draining", m->source);
        return 0;
    }
    if (now < due) {
        /* Early: the daily look (wake_in), a fake clock, or the clock
         * stepped back. A fire computed from now that comes sooner (rate()
         * after a step back) wins, so a step back does not silence a
         * schedule for the size of the step. */
        if (faas_schedule_next_parsed(m->sched, (time_t)now, &sooner) == 0 && sooner < due)
            m->last_fire_s = due = (int64_t)sooner;
        struct timeval tv = { (time_t)wake_in(due - now), 0 };
        event_add(m->timer, &tv);
        return 0;
    }
    ev = scheduled_event(m, due);
    memcpy(function, m->function, sizeof function);
    /* Arm the next fire first: what follows runs host code (log records),
     * which may unmap m. Late by more than a period fires once, then from
     * now: no burst. */
    schedule_arm(m, now > due ? now : due);
    if (rt->durable)
        fire_claim(m, function, ev, due);
    else
        fire_event(rt, function, ev);
    json_decref(ev);
    return 1;
}

/*
 * Arms a new schedule mapping. With a durable engine and a fire kept under
 * m's name from an earlier run, the latest due time missed since then fires
 * once, at once (from the loop), with that time; none missed, the
 * schedule goes on from the kept fire. Never kept: from now, as without an
 * engine.
 */
static void schedule_start(struct faas_mapping *m)
{
    struct faas_runtime *rt = m->rt;
    int64_t now = wall_s(rt), kept_ms, kept;
    time_t missed;
    struct timeval at_once = { 0, 0 };

    if (!rt->durable || faas_durable_schedule_get(rt->durable, m->name, &kept_ms) != 0) {
        schedule_arm(m, now);
        return;
    }
    kept = kept_ms / 1000 - (kept_ms % 1000 < 0);
    if (kept < now && faas_schedule_last_parsed(m->sched, (time_t)kept, (time_t)now,
                                                &missed) == 0) {
        m->last_fire_s = (int64_t)missed;
        event_add(m->timer, &at_once);
        return;
    }
    schedule_arm(m, kept < now ? kept : now);
}

static void schedule_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_mapping *m = arg;
    struct faas_runtime *rt = m->rt;
    (void)fd;
    (void)what;
    faas_rt_enter(rt);
    schedule_check(m);
    faas_rt_leave(rt);
}

void faas_schedule_poll(struct faas_runtime *rt)
{
    struct faas_list *e;
    /* Host code a fire runs may unmap mappings: inside the bracket that only
     * marks them dead, so the walk stays valid. */
    faas_rt_enter(rt);
    for (e = rt->mappings.next; e != &rt->mappings && !rt->free_requested; e = e->next) {
        struct faas_mapping *m = FAAS_CONTAINER_OF(e, struct faas_mapping, link);
        if (m->kind == FAAS_SRC_SCHEDULE && !m->dead)
            schedule_check(m);
    }
    faas_rt_leave(rt);
}

/* ---- faas_emit_with's on_accepted -------------------------------------- */

static void emit_wait_answer(struct faas_emit_wait *w, int rc)
{
    faas_emit_accept_fn cb = w->cb;
    void *arg = w->arg;
    if (w->ev)
        event_free(w->ev);
    free(w);
    cb(rc, arg);
}

/* A batcher's note: one mapping's put was answered. */
static void emit_wait_note(struct faas_emit_wait *w, int rc)
{
    if (rc == 0)
        w->kept++;
    else if (!w->refused)
        w->refused = rc;
    if (--w->owed == 0)
        emit_wait_answer(w, w->refused ? w->refused : w->kept);
}

static void emit_wait_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_emit_wait *w = arg;
    struct faas_runtime *rt = w->rt;
    (void)fd;
    (void)what;
    faas_list_remove(&w->link);
    faas_rt_enter(rt);
    emit_wait_answer(w, w->kept);
    faas_rt_leave(rt);
}

/* A wait for opts->on_accepted (NULL when there is none); *rc FAAS_EINVAL
 * for options of an unknown version, FAAS_ENOMEM. */
static struct faas_emit_wait *emit_wait_new(struct faas_runtime *rt,
                                            const struct faas_emit_opts *opts, int *rc)
{
    struct faas_emit_opts o;
    struct faas_emit_wait *w;

    *rc = 0;
    if (!opts)
        return NULL;
    if (faas_emit_opts_read(&o, opts) != 0) {
        *rc = FAAS_EINVAL;
        return NULL;
    }
    if (!o.on_accepted)
        return NULL;
    w = faas_calloc(1, sizeof *w);
    if (w && !(w->ev = event_new(rt->base, -1, 0, emit_wait_cb, w))) {
        free(w);
        w = NULL;
    }
    if (!w) {
        *rc = FAAS_ENOMEM;
        return NULL;
    }
    w->rt = rt;
    w->cb = o.on_accepted;
    w->arg = o.accepted_arg;
    w->owed = 1; /* the call's own */
    w->note = emit_wait_note;
    faas_list_init(&w->link);
    return w;
}

/* faas_emit_with is done: `taken` mappings took the record, or it was
 * refused (taken < 0: no answer owed). */
static void emit_wait_start(struct faas_runtime *rt, struct faas_emit_wait *w, int taken)
{
    if (taken < 0 && w->owed == 1) {
        event_free(w->ev);
        free(w);
        return;
    }
    if (--w->owed > 0)
        return; /* the engine answers */
    if (!rt->durable)
        w->kept = taken;
    if (!rt->emit_waits.next)
        faas_list_init(&rt->emit_waits);
    faas_list_insert_tail(&rt->emit_waits, &w->link);
    event_active(w->ev, EV_TIMEOUT, 1);
}

/* Teardown: answers still waiting for the next turn get FAAS_ECANCELED. */
static void emit_waits_cancel(struct faas_runtime *rt)
{
    struct faas_list *e;
    if (!rt->emit_waits.next)
        return;
    while ((e = faas_list_pop_head(&rt->emit_waits)) != NULL)
        emit_wait_answer(FAAS_CONTAINER_OF(e, struct faas_emit_wait, link), FAAS_ECANCELED);
}

/* ---- faas_map / faas_unmap ----------------------------------------- */

static void mapping_free(struct faas_mapping *m)
{
    faas_htable_remove(&m->rt->mapping_names, &m->name_node);
    if (m->timer)
        event_free(m->timer);
    faas_filter_free(m->filter);
    free(m->sched);
    free(m->source);
    free(m->name);
    free((char *)m->opts.filter);
    free((char *)m->opts.partition_key_path);
    free((char *)m->opts.on_failure);
    free(m);
}

/* Stops m's producer: its route, timer or batcher. */
static void mapping_stop(struct faas_mapping *m)
{
    struct faas_runtime *rt = m->rt;
    switch (m->kind) {
    case FAAS_SRC_API:
        if (m->route)
            faas_http_route_remove(rt, m);
        break;
    case FAAS_SRC_SCHEDULE:
        if (m->timer)
            event_del(m->timer);
        break;
    case FAAS_SRC_S3:
    case FAAS_SRC_DYNAMODB:
    case FAAS_SRC_STREAM:
    case FAAS_SRC_QUEUE:
        if (m->batcher)
            faas_batcher_free(m);
        break;
    }
}

static int copy_opt(const char *in, const char **out)
{
    *out = NULL;
    if (in && !(*out = faas_strdup(in)))
        return FAAS_ENOMEM;
    return 0;
}

static int map_opts(struct faas_mapping *m, const struct faas_map_opts *host_opts)
{
    struct faas_map_opts o, *opts = &o;
    char err[256];
    int rc;

    if (faas_map_opts_read(&o, host_opts) != 0 || opts->batch_size > 10000 ||
        opts->parallelization > 10 || opts->max_retries < -1 ||
        (opts->partition_key_path && !faas_json_path_valid(opts->partition_key_path)))
        return FAAS_EINVAL;
    if (opts->on_failure && !faas_fn_lookup(m->rt, opts->on_failure))
        return FAAS_ENOENT;
    m->opts = *opts;
    if (m->opts.batch_size == 0)
        m->opts.batch_size = 1;
    if (m->opts.parallelization == 0)
        m->opts.parallelization = 1;
    m->opts.filter = m->opts.partition_key_path = m->opts.on_failure = m->opts.name = NULL;
    if (opts->name && (!opts->name[0] || strlen(opts->name) > FAAS_MAPPING_NAME_MAX))
        return FAAS_EINVAL;
    if ((rc = copy_opt(opts->filter, &m->opts.filter)) != 0 ||
        (rc = copy_opt(opts->partition_key_path, &m->opts.partition_key_path)) != 0 ||
        (rc = copy_opt(opts->on_failure, &m->opts.on_failure)) != 0)
        return rc;
    if (opts->filter && (rc = faas_filter_compile(opts->filter, &m->filter, err, sizeof err)))
        return rc;
    return 0;
}

static int name_eq(const struct faas_hnode *n, const void *name)
{
    return strcmp(FAAS_CONTAINER_OF(n, struct faas_mapping, name_node)->name, name) == 0;
}

/*
 * m's durable name: opts.name, or "SOURCE FUNCTION", entered in
 * rt->mapping_names. Returns 0, FAAS_EEXIST (a live mapping has it; one
 * unmapped inside a callback has let it go) or FAAS_ENOMEM.
 */
static int name_take(struct faas_mapping *m, const char *name)
{
    struct faas_runtime *rt = m->rt;
    size_t ns = strlen(m->source), nf = strlen(m->function);
    uint32_t h;

    if (name) {
        m->name = faas_strdup(name);
    } else if ((m->name = faas_malloc(ns + nf + 2)) != NULL) {
        memcpy(m->name, m->source, ns);
        m->name[ns] = ' ';
        memcpy(m->name + ns + 1, m->function, nf + 1);
    }
    if (!m->name)
        return FAAS_ENOMEM;
    m->opts.name = m->name;
    if (!rt->mapping_names.buckets && faas_htable_init(&rt->mapping_names, 16) != 0)
        return FAAS_ENOMEM;
    h = faas_hash_str(m->name);
    if (faas_htable_find(&rt->mapping_names, h, name_eq, m->name))
        return FAAS_EEXIST;
    if (faas_htable_reserve(&rt->mapping_names) != 0)
        return FAAS_ENOMEM;
    faas_htable_insert(&rt->mapping_names, &m->name_node, h);
    return 0;
}

/* The kind's own set-up of a parsed mapping. */
static int mapping_start(struct faas_mapping *m)
{
    struct faas_runtime *rt = m->rt;
    char err[256];

    switch (m->kind) {
    case FAAS_SRC_API:
        return faas_http_route_add(rt, m);
    case FAAS_SRC_SCHEDULE:
        m->sched = faas_malloc(sizeof(struct faas_schedule));
        if (!m->sched)
            return FAAS_ENOMEM;
        if (faas_schedule_parse(m->pattern, m->sched, err, sizeof err) != 0)
            return FAAS_EPARSE;
        m->timer = event_new(rt->base, -1, 0, schedule_cb, m);
        if (!m->timer)
            return FAAS_ENOMEM;
        schedule_start(m);
        return 0;
    case FAAS_SRC_S3:
    case FAAS_SRC_DYNAMODB:
    case FAAS_SRC_STREAM:
    case FAAS_SRC_QUEUE:
        return faas_batcher_new(m);
    }
    return FAAS_EPARSE;
}

/* The checks of a host-fed source's pattern: 0 or FAAS_EPARSE. */
static int pattern_check(enum faas_src_kind kind, const char *pattern)
{
    switch (kind) {
    case FAAS_SRC_S3:
        return s3_name_ok(pattern, 1) && s3_pattern_known(pattern) ? 0 : FAAS_EPARSE;
    case FAAS_SRC_DYNAMODB:
        return dynamodb_name_ok(pattern, 1) ? 0 : FAAS_EPARSE;
    case FAAS_SRC_STREAM:
    case FAAS_SRC_QUEUE:
        return name_ok(pattern) ? 0 : FAAS_EPARSE;
    case FAAS_SRC_API:
    case FAAS_SRC_SCHEDULE:
        break;
    }
    return 0;
}

int faas_source_check(const char *source)
{
    enum faas_src_kind kind;
    const char *rest;
    struct faas_route *route;
    time_t next;
    int rc;

    if (!source)
        return FAAS_EINVAL;
    if (parse_kind(source, &kind, &rest) != 0)
        return FAAS_EPARSE;
    switch (kind) {
    case FAAS_SRC_API:
        if ((rc = faas_route_parse(rest, &route)) != 0)
            return rc;
        faas_route_free(route);
        return 0;
    case FAAS_SRC_SCHEDULE:
        rc = faas_schedule_next(rest, 0, &next);
        return rc == FAAS_EPARSE ? rc : 0; /* an at() long past is a schedule */
    case FAAS_SRC_S3:
    case FAAS_SRC_DYNAMODB:
    case FAAS_SRC_STREAM:
    case FAAS_SRC_QUEUE:
        break;
    }
    return pattern_check(kind, rest);
}

int faas_map(struct faas_runtime *rt, const char *source, const char *function,
             const struct faas_map_opts *opts)
{
    struct faas_mapping *m;
    enum faas_src_kind kind;
    const char *rest;
    int rc;

    if (!rt || !source || !function || rt->closing || rt->free_requested)
        return FAAS_EINVAL;
    if (opts && (opts->version < 1 || opts->version > FAAS_MAP_OPTS_VERSION))
        return FAAS_EINVAL; /* a version from the future */
    if (parse_kind(source, &kind, &rest) != 0 || pattern_check(kind, rest) != 0)
        return FAAS_EPARSE;
    if (!faas_fn_lookup(rt, function))
        return FAAS_ENOENT;
    if (rt->next_mapping_id == INT32_MAX)
        return FAAS_ENOMEM;
    m = faas_calloc(1, sizeof *m);
    if (!m)
        return FAAS_ENOMEM;
    m->rt = rt;
    m->kind = kind;
    m->last_fire_s = -1;
    faas_list_init(&m->link);
    strcpy(m->function, function); /* looked up: it fits */
    if (!(m->source = faas_strdup(source))) {
        mapping_free(m);
        return FAAS_ENOMEM;
    }
    m->pattern = m->source + (rest - source);
    m->id = rt->next_mapping_id; /* the kinds' set-up may use it */
    if ((rc = map_opts(m, opts)) != 0 ||
        (rc = name_take(m, opts && opts->version >= 2 ? opts->name : NULL)) != 0 ||
        (rc = mapping_start(m)) != 0) {
        mapping_stop(m);
        mapping_free(m);
        return rc;
    }
    rt->next_mapping_id++;
    faas_list_insert_tail(&rt->mappings, &m->link);
    return m->id;
}

int faas_unmap(struct faas_runtime *rt, int mapping_id)
{
    struct faas_mapping *m;
    if (!rt || mapping_id < 0)
        return FAAS_EINVAL;
    m = faas_mapping_find(rt, mapping_id);
    if (!m)
        return FAAS_ENOENT;
    if (rt->cb_depth > 0) {
        /* Inside a callback a walk of the mappings may be under way: stop
         * this one now, free it when the outermost callback returns. */
        m->dead = 1;
        rt->dead_mappings++;
        faas_htable_remove(&rt->mapping_names, &m->name_node); /* the name is free */
        mapping_stop(m);
        return 0;
    }
    faas_list_remove(&m->link);
    faas_rt_enter(rt); /* dropped records may reach on_failure callbacks */
    mapping_stop(m);
    mapping_free(m);
    faas_rt_leave(rt);
    return 0;
}

void faas_sources_sweep(struct faas_runtime *rt)
{
    struct faas_list *e, *next;
    for (e = rt->mappings.next; e != &rt->mappings && rt->dead_mappings; e = next) {
        struct faas_mapping *m = FAAS_CONTAINER_OF(e, struct faas_mapping, link);
        next = e->next;
        if (m->dead) {
            faas_list_remove(&m->link);
            mapping_free(m);
            rt->dead_mappings--;
        }
    }
}

void faas_sources_free(struct faas_runtime *rt)
{
    struct faas_list *e;
    while ((e = faas_list_pop_head(&rt->mappings)) != NULL) {
        struct faas_mapping *m = FAAS_CONTAINER_OF(e, struct faas_mapping, link);
        if (!m->dead)
            mapping_stop(m);
        mapping_free(m);
    }
    rt->dead_mappings = 0;
    faas_htable_fini(&rt->mapping_names);
    faas_batcher_marks_free(rt);
    emit_waits_cancel(rt);
    faas_watch_free_all(rt);
    if (rt->http)
        faas_http_free(rt);
}

/* ---- faas_emit ------------------------------------------------------ */

/* Logs why faas_emit refused a record (function: the mapping's, or NULL
 * when the whole record was refused) and returns rc. */
static int refuse(struct faas_runtime *rt, const char *function, int rc, const char *fmt, ...)
    FAAS_PRINTF(4, 5);

static int refuse(struct faas_runtime *rt, const char *function, int rc, const char *fmt, ...)
{
    char line[256];
    va_list ap;

    if (!rt->opts.log)
        return rc;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    faas_log_event(rt, FAAS_LOG_WARNING, function, NULL, "record-refused", NULL, "%s", line);
    return rc;
}

/* The source's own name is valid for emitting; 0 or FAAS_EPARSE. */
static int emit_name_ok(enum faas_src_kind kind, const char *name)
{
    switch (kind) {
    case FAAS_SRC_S3:
        return s3_name_ok(name, 0) && strchr(name, ':') ? 0 : FAAS_EPARSE;
    case FAAS_SRC_DYNAMODB:
        return dynamodb_name_ok(name, 0) ? 0 : FAAS_EPARSE;
    case FAAS_SRC_STREAM:
    case FAAS_SRC_QUEUE:
        return name_ok(name) ? 0 : FAAS_EPARSE;
    case FAAS_SRC_API:
    case FAAS_SRC_SCHEDULE:
        break;
    }
    return FAAS_EPARSE; /* not fed by the host */
}

static int emit(struct faas_runtime *rt, const char *source, json_t *record,
                struct faas_emit_wait *w)
{
    enum faas_src_kind kind;
    const char *name;
    struct faas_list *e;
    json_t *shaped;
    size_t limit, bytes, shaped_bytes = 0;
    char why[192];
    int err = 0, taken = 0, throttled = 0, rc;

    if (!source || !record)
        return refuse(rt, NULL, FAAS_EINVAL, "%s", source ? "no record" : "no source");
    if (rt->closing || rt->free_requested)
        return refuse(rt, NULL, FAAS_EINVAL, "%s: the runtime is being freed", source);
    if (rt->draining)
        return refuse(rt, NULL, FAAS_EDRAINING, "%s: the runtime is draining", source);
    if (parse_kind(source, &kind, &name) != 0 || emit_name_ok(kind, name) != 0)
        return refuse(rt, NULL, FAAS_EPARSE, "%s: not a source the host can feed", source);
    limit = rt->opts.max_async_payload;
    if ((bytes = faas_json_size(record, limit)) > limit)
        return refuse(rt, NULL, FAAS_ETOOBIG, "%s: the record is over %zu bytes", source,
                      limit);
    shaped = faas_shape_record_why(rt, kind, name, record, &err, why, sizeof why);
    if (!shaped) {
        if (err == FAAS_EINVAL)
            return refuse(rt, NULL, err, "%s: %s", source, why);
        return refuse(rt, NULL, err ? err : FAAS_ENOMEM, "%s: out of memory", source);
    }
    faas_rt_enter(rt); /* nothing below frees the runtime before we are done */
    for (e = rt->mappings.next; e != &rt->mappings; e = e->next) {
        struct faas_mapping *m = FAAS_CONTAINER_OF(e, struct faas_mapping, link);
        if (m->dead || m->kind != kind || !pattern_matches(m, name))
            continue;
        if (m->filter && !faas_filter_match(m->filter, shaped)) {
            m->nfiltered++;
            continue;
        }
        /* The bound counts what the batcher holds: the shaped record,
         * measured once, when a mapping first takes it (an S3 record is
         * seven times the parts it was made of). */
        if (!shaped_bytes)
            shaped_bytes = faas_json_bytes(shaped);
        rc = faas_batcher_add_sized(m, json_incref(shaped), shaped_bytes, w);
        if (rc == 0) {
            taken++;
        } else if (rc == FAAS_ETHROTTLED) {
            struct faas_mapping_stats st;
            throttled++;
            faas_batcher_stats_get(m, 0, &st);
            refuse(rt, m->function, rc,
                   "%s: mapping \"%s %s\" holds %llu bytes of records; %zu more would pass "
                   "its bound of %llu",
                   source, m->source, m->function, (unsigned long long)st.bytes, shaped_bytes,
                   (unsigned long long)st.max_bytes);
        } else {
            refuse(rt, m->function, rc, "%s: mapping \"%s %s\": out of memory", source,
                   m->source, m->function);
        }
    }
    json_decref(shaped);
    faas_rt_leave(rt);
    return taken == 0 && throttled ? FAAS_ETHROTTLED : taken;
}

int faas_emit(struct faas_runtime *rt, const char *source, json_t *record)
{
    return faas_emit_with(rt, source, record, NULL);
}

int faas_emit_with(struct faas_runtime *rt, const char *source, json_t *record,
                   const struct faas_emit_opts *opts)
{
    struct faas_emit_wait *w;
    int rc;

    if (!rt)
        return FAAS_EINVAL;
    w = emit_wait_new(rt, opts, &rc);
    if (rc != 0)
        return rc == FAAS_EINVAL ? refuse(rt, NULL, rc, "%s: emit options of an unknown version",
                                          source ? source : "(no source)")
                                 : refuse(rt, NULL, rc, "%s: out of memory",
                                          source ? source : "(no source)");
    rc = emit(rt, source, record, w);
    if (w)
        emit_wait_start(rt, w, rc);
    return rc;
}

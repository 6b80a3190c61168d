/*
 * bench_sources.c - the cost of event sources: armed schedules and
 * faas_emit through filter patterns into a batching queue mapping, each next
 * to a floor measured in the same run (see bench.h for the method).
 *
 * Schedules: 100,000 mappings "schedule:rate(N minutes)" (N = 2..1001, so
 * 100 schedules share each of 1000 times) to one INLINE no-op function, on a
 * runtime whose wall clock is fake (faas_runtime_opts.clock.wall_ns; the
 * monotonic clock is the system's). A round builds a new runtime and times
 *   arm          the 100,000 faas_map calls (parse, mapping, event_add);
 *   fire, cold   the wall clock moved on by 1001 minutes, then
 *                faas_schedule_poll (lib/faas_int.h) and the loop until all
 *                100,000 async invocations ended (on_complete): every
 *                schedule fires once (Scheduled Event built, faas_invoke_async,
 *                timer re-armed), and the function makes 100,000 instances,
 *                as every event starts before any has run;
 *   fire, warm   the same again, on the instances the cold fire left idle;
 * and, in the same round, the floor: 100,000 raw libevent timers, event_new +
 * event_add with timeouts spread over 0..999 us (arm), then, once they are
 * all due, event_base_loop until every callback ran (fire). The figures are
 * per schedule, the medians over BENCH_ROUNDS rounds; no target (the issue
 * asks for the figures, with libevent's own add+fire as the floor).
 *
 * faas_emit: a "queue:orders" mapping (batch_size 100, no window) to an
 * INLINE function that counts its records, with a filter of 5 EventBridge
 * patterns (prefix, numeric, anything-but, on the body's JSON, the message
 * attributes, the attributes and the region). Two SQS-like records of the
 * same size alternate: one matches the second pattern, the other none of
 * the five, so half the records reach the queue and a record that does not
 * match is tried against every pattern (two of which decode the body). A
 * body emits K records in chunks of 1000, then runs the loop until the
 * function has seen every record taken: the time of the faas_emit calls
 * alone is "emit", the whole body "emit+batches" (end to end). Floors, in
 * rounds alternating with the figures: the same records emitted to a
 * mapping without a filter (every record is queued), and jansson
 * build+dump.
 *
 * Run with `make bench`. Exits 0 whatever the figures. BENCH_ROUNDS,
 * BENCH_ROUND_MS and BENCH_VERBOSE in the environment tune the method.
 */
#include "bench.h"

#include <event2/event.h>

#include "faas.h"
#include "faas_int.h" /* faas_schedule_poll */

#define NSCHED 100000u
#define RATE_SPREAD 1000u /* rate(2..1001 minutes) */
#define ADVANCE_NS ((int64_t)(RATE_SPREAD + 1u) * 60 * INT64_C(1000000000))

/* Records per faas_emit chunk, before the loop runs. */
#define CHUNK 1000u

/* ------------------------------------------------------------------ */
/* Schedules                                                           */
/* ------------------------------------------------------------------ */

static int64_t g_wall_ns = INT64_C(1798761600) * 1000000000; /* 2027-01-01 */

static int64_t fake_wall_ns(void *arg)
{
    (void)arg;
    return g_wall_ns;
}

static int noop_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = NULL;
    return 0;
}

struct sched_fix {
    struct event_base *base;
    struct faas_runtime *rt;
    uint64_t done;
    uint64_t errors;
    int first_error;
};

static void sched_complete(const struct faas_result *res, void *arg)
{
    struct sched_fix *f = arg;
    int status = faas_result_status(res);
    if (status != 0 && f->errors++ == 0)
        f->first_error = status;
    f->done++;
}

static void sched_open(struct sched_fix *f)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    int rc;

    memset(f, 0, sizeof *f);
    ro.log = NULL;
    ro.zygote = 0;
    ro.thread_workers = 1;
    ro.clock.wall_ns = fake_wall_ns;
    bench_runtime_open(&f->base, &f->rt, &ro);
    ao.on_complete = sched_complete;
    ao.on_complete_arg = f;
    ao.max_retries = 0;
    ao.max_queue = 0; /* 100,000 fire at once: no overflow */
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.async = &ao;
    rc = faas_register(f->rt, "tick", noop_handler, &fo);
    if (rc != 0) {
        fprintf(stderr, "bench: faas_register: %s\n", faas_strerror(rc));
        exit(2);
    }
}

static void sched_close(struct sched_fix *f)
{
    faas_runtime_free(f->rt);
    event_base_free(f->base);
}

static void sched_arm(struct sched_fix *f)
{
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    char src[64], name[32];
    unsigned i;
    mo.name = name; /* one source maps many times: a name each */
    for (i = 0; i < NSCHED; i++) {
        int id;
        snprintf(src, sizeof src, "schedule:rate(%u minutes)", 2u + i % RATE_SPREAD);
        snprintf(name, sizeof name, "tick-%u", i);
        id = faas_map(f->rt, src, "tick", &mo);
        if (id < 0) {
            fprintf(stderr, "bench: faas_map(%s): %s\n", src, faas_strerror(id));
            exit(2);
        }
    }
}

/* Moves the wall clock past every armed time and runs until all ended. */
static void sched_fire(struct sched_fix *f)
{
    uint64_t want = f->done + NSCHED;
    g_wall_ns += ADVANCE_NS;
    faas_schedule_poll(f->rt);
    while (f->done < want)
        event_base_loop(f->base, EVLOOP_ONCE);
}

/* The floor: raw libevent timers. */
struct raw_timers {
    struct event_base *base;
    struct event **evs;
    uint64_t fired;
};

static void raw_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct raw_timers *t = arg;
    (void)fd;
    (void)what;
    t->fired++;
}

static void raw_arm(struct raw_timers *t)
{
    unsigned i;
    for (i = 0; i < NSCHED; i++) {
        struct timeval tv = { 0, (suseconds_t)(i % RATE_SPREAD) };
        t->evs[i] = event_new(t->base, -1, 0, raw_timer_cb, t);
        if (t->evs[i] == NULL || event_add(t->evs[i], &tv) != 0)
            bench_die("event_new/event_add");
    }
}

static void raw_fire(struct raw_timers *t)
{
    while (t->fired < NSCHED)
        event_base_loop(t->base, EVLOOP_ONCE);
}

static void raw_free(struct raw_timers *t)
{
    unsigned i;
    for (i = 0; i < NSCHED; i++)
        event_free(t->evs[i]);
}

static double per_sched(uint64_t ns)
{
    return (double)ns / (double)NSCHED;
}

static void schedules(void)
{
    double arm[BENCH_ROUNDS_MAX], cold[BENCH_ROUNDS_MAX], warm[BENCH_ROUNDS_MAX];
    double rarm[BENCH_ROUNDS_MAX], rfire[BENCH_ROUNDS_MAX], rall[BENCH_ROUNDS_MAX];
    struct bench_stat s_arm, s_cold, s_warm, s_rarm, s_rfire, s_rall;
    struct raw_timers t;
    int rounds = bench_rounds(), r;
    uint64_t errors = 0;
    int first_error = 0;

    memset(&t, 0, sizeof t);
    t.base = event_base_new();
    t.evs = calloc(NSCHED, sizeof t.evs[0]);
    if (t.base == NULL || t.evs == NULL)
        bench_die("raw timers");

    for (r = 0; r < rounds; r++) {
        struct sched_fix f;
        uint64_t t0, t1, t2, t3;
        struct timespec pause = { 0, 2000000 };

        /* Floor: arm, let every timeout come due (not timed), fire. */
        t.fired = 0;
        t0 = bench_now_ns();
        raw_arm(&t);
        t1 = bench_now_ns();
        nanosleep(&pause, NULL);
        t2 = bench_now_ns();
        raw_fire(&t);
        t3 = bench_now_ns();
        raw_free(&t);
        rarm[r] = per_sched(t1 - t0);
        rfire[r] = per_sched(t3 - t2);
        rall[r] = rarm[r] + rfire[r];

        sched_open(&f);
        t0 = bench_now_ns();
        sched_arm(&f);
        t1 = bench_now_ns();
        sched_fire(&f);
        t2 = bench_now_ns();
        sched_fire(&f);
        t3 = bench_now_ns();
        arm[r] = per_sched(t1 - t0);
        cold[r] = per_sched(t2 - t1);
        warm[r] = per_sched(t3 - t2);
        if (f.errors > 0 && errors++ == 0)
            first_error = f.first_error;
        sched_close(&f);
    }
    s_rarm = bench_stat_of(rarm, rounds, NSCHED);
    s_rfire = bench_stat_of(rfire, rounds, NSCHED);
    s_rall = bench_stat_of(rall, rounds, NSCHED);
    s_arm = bench_stat_of(arm, rounds, NSCHED);
    s_cold = bench_stat_of(cold, rounds, NSCHED);
    s_warm = bench_stat_of(warm, rounds, NSCHED);

    bench_floor_line("raw timer add (new+add)", s_rarm.median_ns);
    bench_floor_line("raw timer fire (loop)", s_rfire.median_ns);
    bench_line("schedule arm, 100k (faas_map)", s_arm.median_ns, "raw timer add+fire",
               s_rall.median_ns, 0);
    bench_line("schedule fire, 100k, cold", s_cold.median_ns, "raw timer add+fire",
               s_rall.median_ns, 0);
    bench_line("schedule fire, 100k, warm", s_warm.median_ns, "raw timer add+fire",
               s_rall.median_ns, 0);
    printf("    (per schedule; arm %.2fx the raw add, fires %.1f/%.1fx the raw fire; "
           "%u rounds of %u schedules)\n",
           s_rarm.median_ns > 0 ? s_arm.median_ns / s_rarm.median_ns : 0.0,
           s_rfire.median_ns > 0 ? s_cold.median_ns / s_rfire.median_ns : 0.0,
           s_rfire.median_ns > 0 ? s_warm.median_ns / s_rfire.median_ns : 0.0, rounds,
           NSCHED);
    if (errors > 0)
        printf("    WARNING: %llu rounds had failed invocations, first with %s\n",
               (unsigned long long)errors, faas_strerror(first_error));
    free(t.evs);
    event_base_free(t.base);
}

/* ------------------------------------------------------------------ */
/* faas_emit                                                           */
/* ------------------------------------------------------------------ */

static const char FILTER[] =
    "["
    "{\"body\":{\"type\":[{\"prefix\":\"order.created\"}],\"total\":[{\"numeric\":[\">=\",1000]}]}},"
    "{\"body\":{\"region\":[{\"anything-but\":[\"eu-west-1\",\"eu-central-1\"]}],"
    "\"priority\":[\"high\"]}},"
    "{\"messageAttributes\":{\"tenant\":{\"stringValue\":[{\"prefix\":\"vip-\"}]}}},"
    "{\"attributes\":{\"ApproximateReceiveCount\":[{\"anything-but\":\"1\"}]}},"
    "{\"awsRegion\":[{\"prefix\":\"ap-\"}]}"
    "]";

/* Records seen by the sink functions (loop thread only). */
static uint64_t g_records;

static int sink_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    g_records += json_array_size(json_object_get(event, "Records"));
    *result = NULL;
    return 0;
}

struct emit_fix {
    struct event_base *base;
    struct faas_runtime *rt;
    json_t *rec[2];     /* [0] matches the filter, [1] does not */
    uint64_t taken;     /* records the mapping took */
    uint64_t emit_ns;   /* time in faas_emit, last body */
    uint64_t errors;
    int first_error;
};

static json_t *sqs_parts(const char *region)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"type\":\"order.updated\",\"orderId\":\"o-000123\",\"total\":250,"
             "\"region\":\"%s\",\"priority\":\"high\",\"items\":3}",
             region);
    return json_pack("{s:s, s:{s:{s:s, s:s}}}", "body", body, "messageAttributes", "tenant",
                     "stringValue", "std-42", "dataType", "String");
}

static void emit_open(struct emit_fix *f, const char *filter)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    int rc;

    memset(f, 0, sizeof *f);
    ro.log = NULL;
    ro.zygote = 0;
    ro.thread_workers = 1;
    bench_runtime_open(&f->base, &f->rt, &ro);
    fo.isolation = FAAS_ISOLATION_INLINE;
    rc = faas_register(f->rt, "sink", sink_handler, &fo);
    if (rc != 0) {
        fprintf(stderr, "bench: faas_register: %s\n", faas_strerror(rc));
        exit(2);
    }
    mo.batch_size = 100;
    mo.filter = filter;
    rc = faas_map(f->rt, "queue:orders", "sink", &mo);
    if (rc < 0) {
        fprintf(stderr, "bench: faas_map(queue:orders): %s\n", faas_strerror(rc));
        exit(2);
    }
    f->rec[0] = sqs_parts("us-east-1");
    f->rec[1] = sqs_parts("eu-west-1");
    if (f->rec[0] == NULL || f->rec[1] == NULL)
        bench_die("json_pack");
}

static void emit_close(struct emit_fix *f)
{
    faas_runtime_free(f->rt);
    event_base_free(f->base);
    json_decref(f->rec[0]);
    json_decref(f->rec[1]);
}

static void emit_body(void *arg, uint64_t k)
{
    struct emit_fix *f = arg;
    uint64_t issued = 0, want = g_records;

    f->emit_ns = 0;
    while (issued < k) {
        uint64_t n = k - issued < CHUNK ? k - issued : CHUNK, i, t0 = bench_now_ns();
        for (i = 0; i < n; i++) {
            int rc = faas_emit(f->rt, "queue:orders", f->rec[(issued + i) & 1u]);
            if (rc > 0) {
                f->taken += (uint64_t)rc;
                want += (uint64_t)rc;
            } else if (rc < 0 && f->errors++ == 0) {
                f->first_error = rc;
            }
        }
        f->emit_ns += bench_now_ns() - t0;
        issued += n;
        while (g_records < want)
            event_base_loop(f->base, EVLOOP_ONCE);
    }
}

/* Checks that the filter takes the first record and not the second. */
static void emit_check(struct emit_fix *f, int want0, int want1, const char *what)
{
    int a = faas_emit(f->rt, "queue:orders", f->rec[0]);
    int b = faas_emit(f->rt, "queue:orders", f->rec[1]);
    uint64_t want = g_records + (uint64_t)(a > 0) + (uint64_t)(b > 0);
    if (a != want0 || b != want1) {
        fprintf(stderr, "bench: %s: faas_emit answered %d and %d, expected %d and %d\n", what, a,
                b, want0, want1);
        exit(2);
    }
    while (g_records < want)
        event_base_loop(f->base, EVLOOP_ONCE);
}

/* Alternating rounds of several bodies; inner[i] (may be NULL) is read after
 * each body as the time of its inner part, in ns over the round. */
struct multi_side {
    bench_body_fn fn;
    void *arg;
    uint64_t k_min, k_max;
    const uint64_t *inner; /* NULL: none */
};

#define MULTI_MAX 4

static void measure_multi(const struct multi_side *s, int n, struct bench_stat *whole,
                          struct bench_stat *inner)
{
    static double per[MULTI_MAX][BENCH_ROUNDS_MAX], in[MULTI_MAX][BENCH_ROUNDS_MAX];
    uint64_t k[MULTI_MAX];
    int rounds = bench_rounds(), r, i;

    for (i = 0; i < n; i++)
        k[i] = bench_calibrate(s[i].fn, s[i].arg, s[i].k_min, s[i].k_max);
    for (r = 0; r < rounds; r++) {
        for (i = 0; i < n; i++) {
            per[i][r] = (double)bench_time_body(s[i].fn, s[i].arg, k[i]) / (double)k[i];
            in[i][r] = s[i].inner ? (double)*s[i].inner / (double)k[i] : 0.0;
        }
    }
    for (i = 0; i < n; i++) {
        whole[i] = bench_stat_of(per[i], rounds, k[i]);
        inner[i] = bench_stat_of(in[i], rounds, k[i]);
    }
}

static double per_second(double ns)
{
    return ns > 0 ? 1e9 / ns : 0.0;
}

static void emits(void)
{
    struct emit_fix filtered, plain;
    struct multi_side s[3];
    struct bench_stat whole[3], inner[3];

    emit_open(&filtered, FILTER);
    emit_open(&plain, NULL);
    emit_check(&filtered, 1, 0, "5 patterns");
    emit_check(&plain, 1, 1, "no filter");
    emit_body(&filtered, 10 * CHUNK); /* warm */
    emit_body(&plain, 10 * CHUNK);
    filtered.taken = plain.taken = 0;

    s[0] = (struct multi_side){ emit_body, &filtered, CHUNK, 1u << 24, &filtered.emit_ns };
    s[1] = (struct multi_side){ emit_body, &plain, CHUNK, 1u << 24, &plain.emit_ns };
    s[2] = (struct multi_side){ bench_jansson_body, NULL, BENCH_JANSSON_K_MIN,
                                BENCH_JANSSON_K_MAX, NULL };
    measure_multi(s, 3, whole, inner);

    bench_floor_line("jansson build+dump", whole[2].median_ns);
    bench_floor_line("emit, no filter", inner[1].median_ns);
    bench_line("emit, 5 patterns, half match", inner[0].median_ns, "emit, no filter",
               inner[1].median_ns, 0);
    bench_line("emit, 5 patterns, half match", inner[0].median_ns, "jansson build+dump",
               whole[2].median_ns, 0);
    bench_line("emit+batches, 5 patterns", whole[0].median_ns, "emit+batches, no filter",
               whole[1].median_ns, 0);
    printf("    (records/s: emit %.0f with 5 patterns, %.0f without; end to end %.0f and "
           "%.0f; batches of 100, half the filtered records queued)\n",
           per_second(inner[0].median_ns), per_second(inner[1].median_ns),
           per_second(whole[0].median_ns), per_second(whole[1].median_ns));
    if (filtered.errors > 0 || plain.errors > 0)
        printf("    WARNING: faas_emit failed %llu times, first with %s\n",
               (unsigned long long)(filtered.errors + plain.errors),
               faas_strerror(filtered.errors ? filtered.first_error : plain.first_error));
    emit_close(&filtered);
    emit_close(&plain);
}

int main(void)
{
    struct bench_place pl[2];
    char extra[96];

    /* A hang in the library must not hang `make bench`: SIGALRM ends it. */
    alarm(300);
    bench_placements(pl);
    if (pl[0].loop_cpu >= 0 && bench_pin(pl[0].loop_cpu) != 0)
        bench_die("pinning the loop thread");
    snprintf(extra, sizeof extra, "libfaas %s, loop on cpu %d", faas_version(),
             pl[0].loop_cpu);
    bench_header("bench_sources", extra);

    emits();
    printf("-- 100,000 schedules, a new runtime per round; the floor in the same round\n");
    schedules();
    printf("bench_sources: no targets (figures reported)\n");
    return 0;
}

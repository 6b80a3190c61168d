/*
 * bench_idem.c - what idempotency adds to an INLINE invocation, next to a
 * plain INLINE invocation of the same handler measured in the same run (see
 * bench.h for the method).
 *
 *   INLINE replay                vs INLINE invoke   target <= 1.5x
 *   INLINE idempotent first run  vs INLINE invoke   reported, no target
 *
 * Every function is INLINE, on one runtime, with the handler of bench_core
 * (it json_packs {"ok":true,"n":42}) and the event {"id":"order-0001"}:
 *   - "plain" has no idempotency: the floor;
 *   - "replay" keys on the path "id" with the default memory store; its key
 *     is completed once before the figure, so every measured invocation is
 *     answered from the store without running the handler;
 *   - "first" takes an explicit key per call (faas_invoke_opts
 *     .idempotency_key), a counter formatted into "order-<n>", so every
 *     invocation is new: hash, INPROGRESS record, run, COMPLETED record.
 *     Its memory store is bounded (max_entries FIRST_MAX_ENTRIES) so the
 *     benchmark's memory stays flat: in that steady state each insert also
 *     evicts the least recently used record, as any store that keeps a
 *     bounded number of results must drop one per new key.
 * Invocations go in batches of BATCH, then the loop runs until every result
 * callback ran, as bench_core's INLINE figure does.
 *
 * Under each figure, the minor page faults per 1000 invocations of it and
 * of its floor, from a pass right after it: a batch allocates its
 * invocation records together and frees them together, and when nothing
 * else sits above them glibc can return the top of the heap to the kernel
 * after each batch, so every batch faults it in again. A figure with faults
 * measures the allocator as much as the library.
 */
#include "bench.h"

#include <sys/resource.h>

#include <event2/event.h>

#include "faas.h"

/* Invocations issued per loop pass. */
#define BATCH 1000u

/* Invocations of the page-fault count, per side. */
#define FAULT_PASS 100000u

/* The bound of the "first" function's memory store. */
#define FIRST_MAX_ENTRIES 65536u

enum mode { MODE_PLAIN, MODE_REPLAY, MODE_FIRST };

/* One function of the fixture and what its results must look like. */
struct side {
    struct fixture *f;
    const char *name;
    enum mode mode;
    uint64_t done;
    uint64_t invoked;   /* every faas_invoke that returned 0 */
    uint64_t errors;
    int first_error;
    uint64_t wrong_replayed; /* faas_result_replayed() not as expected */
    uint64_t bad_payloads;
    int verify;              /* check each payload: the warm-up only */
    uint64_t batch;          /* invocations per loop pass */
};

struct fixture {
    struct event_base *base;
    struct faas_runtime *rt;
    json_t *event;
    uint64_t next_key; /* "first": never repeats */
    struct side plain, replay, first;
};

static void side_note_error(struct side *s, int status)
{
    if (s->errors++ == 0)
        s->first_error = status;
}

static void side_result(const struct faas_result *res, void *arg)
{
    struct side *s = arg;
    int status = faas_result_status(res);
    int want_replayed = s->mode == MODE_REPLAY;

    if (status != 0)
        side_note_error(s, status);
    if ((faas_result_replayed(res) != 0) != want_replayed)
        s->wrong_replayed++;
    if (s->verify) {
        json_t *p = faas_result_payload(res);
        if (!json_is_true(json_object_get(p, "ok")) ||
            json_integer_value(json_object_get(p, "n")) != 42)
            s->bad_payloads++;
    }
    s->done++;
}

static void side_body(void *arg, uint64_t k)
{
    struct side *s = arg;
    struct fixture *f = s->f;
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    const struct faas_invoke_opts *opts = NULL;
    char key[32];
    uint64_t issued = 0;

    if (s->mode == MODE_FIRST) {
        io.idempotency_key = key;
        opts = &io;
    }
    s->done = 0;
    while (issued < k) {
        uint64_t batch = k - issued < s->batch ? k - issued : s->batch;
        uint64_t i;
        for (i = 0; i < batch; i++) {
            int rc;
            if (s->mode == MODE_FIRST)
                snprintf(key, sizeof key, "order-%llu", (unsigned long long)f->next_key++);
            rc = faas_invoke(f->rt, s->name, f->event, opts, side_result, s);
            if (rc != 0) {
                side_note_error(s, rc);
                s->done++; /* its callback never runs */
            } else {
                s->invoked++;
            }
        }
        issued += batch;
        while (s->done < issued)
            event_base_loop(f->base, EVLOOP_ONCE);
    }
}

/* A checked pass over one side, before anything is measured. */
static void side_warm(struct side *s)
{
    s->verify = 1;
    side_body(s, 4 * BATCH);
    s->verify = 0;
}

/* Warns under a figure whose results were not what it claims to measure. */
static void side_report(const struct side *s, const char *what)
{
    if (s->errors > 0)
        printf("    WARNING: %s: %llu invocations failed, first with %s\n", what,
               (unsigned long long)s->errors, faas_strerror(s->first_error));
    if (s->wrong_replayed > 0)
        printf("    WARNING: %s: %llu results %s\n", what,
               (unsigned long long)s->wrong_replayed,
               s->mode == MODE_REPLAY ? "were not replays" : "were replays");
    if (s->bad_payloads > 0)
        printf("    WARNING: %s: %llu results without the handler's payload\n", what,
               (unsigned long long)s->bad_payloads);
}

/* Minor page faults per 1000 invocations of one side, over FAULT_PASS. */
static double side_faults(struct side *s)
{
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    side_body(s, FAULT_PASS);
    getrusage(RUSAGE_SELF, &b);
    return (double)(b.ru_minflt - a.ru_minflt) * 1000.0 / (double)FAULT_PASS;
}

static void print_faults(struct side *figure, struct side *floor)
{
    double fig = side_faults(figure), flo = side_faults(floor);
    printf("    (minor page faults per 1000 invocations: %.1f, floor %.1f)\n", fig, flo);
}

static void fixture_register(struct fixture *f, const char *name,
                             const struct faas_idempotency_opts *idem)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    int rc;
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.idempotency = idem;
    rc = faas_register(f->rt, name, bench_small_handler, &fo);
    if (rc != 0) {
        fprintf(stderr, "bench: faas_register(%s): %s\n", name, faas_strerror(rc));
        exit(2);
    }
}

static void fixture_init(struct fixture *f)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_idempotency_opts replay = FAAS_IDEMPOTENCY_OPTS_INIT;
    struct faas_idempotency_opts first = FAAS_IDEMPOTENCY_OPTS_INIT;

    memset(f, 0, sizeof *f);
    ro.log = NULL;
    ro.thread_workers = 1;
    ro.zygote = 0;
    bench_runtime_open(&f->base, &f->rt, &ro);
    replay.key_path = "id";
    first.key_path = "id"; /* the explicit key overrides it */
    first.max_entries = FIRST_MAX_ENTRIES;
    fixture_register(f, "plain", NULL);
    fixture_register(f, "replay", &replay);
    fixture_register(f, "first", &first);

    f->event = json_pack("{s:s}", "id", "order-0001");
    if (f->event == NULL)
        bench_die("json_pack");
    f->plain = (struct side){ f, "plain", MODE_PLAIN, 0, 0, 0, 0, 0, 0, 0, BATCH };
    f->replay = (struct side){ f, "replay", MODE_REPLAY, 0, 0, 0, 0, 0, 0, 0, BATCH };
    f->first = (struct side){ f, "first", MODE_FIRST, 0, 0, 0, 0, 0, 0, 0, BATCH };
}

static void fixture_free(struct fixture *f)
{
    faas_runtime_free(f->rt);
    event_base_free(f->base);
    json_decref(f->event);
}

/* Runs the "replay" key once, for real, so that every later call replays. */
static void complete_replay_key(struct fixture *f)
{
    struct faas_result *res = NULL;
    int rc = faas_invoke_sync(f->rt, "replay", f->event, NULL, &res);
    if (rc != 0 || faas_result_status(res) != 0 || faas_result_replayed(res)) {
        fprintf(stderr, "bench: the first \"replay\" invocation: %s\n",
                faas_strerror(rc ? rc : faas_result_status(res)));
        exit(2);
    }
    faas_result_free(res);
    f->replay.invoked++;
}

/* Every "replay" invocation but the one that ran must count as a replay. */
static void check_replay_stats(const struct fixture *f)
{
    struct faas_stats st;
    int rc = faas_stats(f->rt, "replay", &st);
    if (rc != 0) {
        printf("    WARNING: faas_stats: %s\n", faas_strerror(rc));
        return;
    }
    if (st.replays + 1 != f->replay.invoked || st.invocations != f->replay.invoked)
        printf("    WARNING: INLINE replay: stats count %llu replays of %llu invocations, "
               "expected %llu of %llu\n",
               (unsigned long long)st.replays, (unsigned long long)st.invocations,
               (unsigned long long)(f->replay.invoked - 1),
               (unsigned long long)f->replay.invoked);
}

int main(void)
{
    struct bench_stat fig, flo;
    struct bench_side figure, ref;
    struct bench_place pl[2];
    struct fixture f;
    char extra[96];
    int over = 0;

    /* A hang in the library must not hang `make bench`: SIGALRM ends it. */
    alarm(120);

    bench_placements(pl);
    if (pl[0].loop_cpu >= 0 && bench_pin(pl[0].loop_cpu) != 0)
        bench_die("pinning the loop thread");
    snprintf(extra, sizeof extra, "libfaas %s, loop on cpu %d", faas_version(),
             pl[0].loop_cpu);
    bench_header("bench_idem", extra);

    fixture_init(&f);
    complete_replay_key(&f);
    side_warm(&f.plain);
    side_warm(&f.replay);
    side_warm(&f.first);
    side_report(&f.plain, "warm-up, INLINE invoke");
    side_report(&f.replay, "warm-up, INLINE replay");
    side_report(&f.first, "warm-up, INLINE idempotent first run");

    ref = (struct bench_side){ side_body, &f.plain, BATCH, 1u << 24 };
    flo = bench_measure(side_body, &f.plain, BATCH, 1u << 24);
    bench_floor_line("INLINE invoke", flo.median_ns);

    printf("-- figures; each floor is measured again in rounds alternating with its figure\n");

    figure = (struct bench_side){ side_body, &f.replay, BATCH, 1u << 24 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    over += bench_line("INLINE replay", fig.median_ns, "INLINE invoke", flo.median_ns, 1.5);
    print_faults(&f.replay, &f.plain);
    side_report(&f.replay, "INLINE replay");

    figure = (struct bench_side){ side_body, &f.first, BATCH, 1u << 24 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    bench_line("INLINE idempotent first run", fig.median_ns, "INLINE invoke", flo.median_ns,
               0);
    print_faults(&f.first, &f.plain);
    side_report(&f.first, "INLINE idempotent first run");

    side_report(&f.plain, "INLINE invoke");
    check_replay_stats(&f);

    fixture_free(&f);
    printf("bench_idem: %d target%s over (reported, not enforced)\n", over,
           over == 1 ? "" : "s");
    return 0;
}

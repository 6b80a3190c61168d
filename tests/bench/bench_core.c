/*
 * bench_core.c - the cost of the core invocation paths, each next to a floor
 * measured in the same run (see bench.h for the method).
 *
 *   INLINE invoke                   vs jansson build+dump   target <= 3x
 *   THREAD invoke round trip        vs raw thread handoff   target <= 1.3x
 *   INLINE invoke, 10000 functions  vs the same with 10     target <= 1.5x
 *
 * and, for reference, the floors of later benchmarks: a socketpair
 * ping-pong between two processes and fork + _exit + waitpid.
 *
 * The loop thread is pinned to the first CPU; round trips are measured with
 * the other side on the second CPU ("2 cpus") and on the same one ("1 cpu"),
 * see bench_placements().
 *
 * Run with `make bench`. Exits 0 whatever the ratios (shared machines drift);
 * a missed target prints OVER. BENCH_ROUNDS, BENCH_ROUND_MS, BENCH_VERBOSE
 * and BENCH_PIN in the environment tune the method (bench.h).
 */
#include "bench.h"

#include <event2/event.h>

#include "faas.h"

/* INLINE invocations issued per loop pass. */
#define BATCH 1000u

/* Functions invoked in the flatness figures: a subset spread over the registry. */
#define FLAT_SUBSET 1000u

/* A runtime on its own base, with `n` functions of one isolation. */
struct fixture {
    struct event_base *base;
    struct faas_runtime *rt;
    char (*names)[16];
    size_t n;
    const char **order; /* the names invoked, in turn */
    size_t norder;
    size_t next;
    json_t *event;
    uint64_t done;
    uint64_t want;
    uint64_t errors;
    int first_error;
    int verify;         /* check each payload: the warm-up only */
    uint64_t bad_payloads;
    double register_ns; /* per faas_register, measured once */
};

static void fixture_init(struct fixture *f, size_t n, enum faas_isolation iso,
                         unsigned workers)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    uint64_t t0;
    size_t i, step;
    int rc;

    memset(f, 0, sizeof *f);
    ro.log = NULL;
    ro.thread_workers = workers;
    ro.zygote = 0; /* no PROCESS functions here */
    fo.isolation = iso;
    bench_runtime_open(&f->base, &f->rt, &ro);
    f->n = n;
    f->names = calloc(n, sizeof f->names[0]);
    if (f->names == NULL)
        bench_die("calloc");
    for (i = 0; i < n; i++)
        snprintf(f->names[i], sizeof f->names[i], "fn%05zu", i);
    t0 = bench_now_ns();
    for (i = 0; i < n; i++) {
        rc = faas_register(f->rt, f->names[i], bench_small_handler, &fo);
        if (rc != 0) {
            fprintf(stderr, "bench: faas_register(%s): %s\n", f->names[i], faas_strerror(rc));
            exit(2);
        }
    }
    f->register_ns = (double)(bench_now_ns() - t0) / (double)n;

    /* Every step-th function, so a large registry is hit all over. */
    f->norder = n < FLAT_SUBSET ? n : FLAT_SUBSET;
    f->order = calloc(f->norder, sizeof f->order[0]);
    if (f->order == NULL)
        bench_die("calloc");
    step = n / f->norder;
    for (i = 0; i < f->norder; i++)
        f->order[i] = f->names[i * step];

    f->event = json_pack("{s:i}", "k", 1);
    if (f->event == NULL)
        bench_die("json_pack");
}

static void fixture_free(struct fixture *f)
{
    faas_runtime_free(f->rt);
    event_base_free(f->base);
    json_decref(f->event);
    free(f->order);
    free(f->names);
}

static void fixture_note_error(struct fixture *f, int status)
{
    if (f->errors++ == 0)
        f->first_error = status;
}

/* Warns under a figure whose invocations failed: its number means little. */
static void fixture_report_errors(const struct fixture *f, const char *what)
{
    if (f->errors > 0)
        printf("    WARNING: %s: %llu invocations failed, first with %s\n", what,
               (unsigned long long)f->errors, faas_strerror(f->first_error));
    if (f->bad_payloads > 0)
        printf("    WARNING: %s: %llu results without the handler's payload\n", what,
               (unsigned long long)f->bad_payloads);
}

/* The warm-up checks that the handler's object reached the callback. */
static void fixture_check(struct fixture *f, const struct faas_result *res)
{
    json_t *p = faas_result_payload(res);
    if (faas_result_status(res) == 0 &&
        (!json_is_true(json_object_get(p, "ok")) ||
         json_integer_value(json_object_get(p, "n")) != 42))
        f->bad_payloads++;
}

static const char *fixture_next_name(struct fixture *f)
{
    const char *name = f->order[f->next];
    if (++f->next == f->norder)
        f->next = 0;
    return name;
}

/* ------------------------------------------------------------------ */
/* INLINE: batches of invocations, then the loop until all results are in */
/* ------------------------------------------------------------------ */

static void inline_result(const struct faas_result *res, void *arg)
{
    struct fixture *f = arg;
    int status = faas_result_status(res);
    if (status != 0)
        fixture_note_error(f, status);
    if (f->verify)
        fixture_check(f, res);
    f->done++;
}

static void inline_body(void *arg, uint64_t k)
{
    struct fixture *f = arg;
    uint64_t issued = 0;

    f->done = 0;
    while (issued < k) {
        uint64_t batch = k - issued < BATCH ? k - issued : BATCH;
        uint64_t i;
        for (i = 0; i < batch; i++) {
            int rc = faas_invoke(f->rt, fixture_next_name(f), f->event, NULL, inline_result, f);
            if (rc != 0) {
                fixture_note_error(f, rc);
                f->done++; /* its callback never runs */
            }
        }
        issued += batch;
        while (f->done < issued)
            event_base_loop(f->base, EVLOOP_ONCE);
    }
}

/* Invokes every function of the subset once, so rounds see warm instances. */
static void inline_warm(struct fixture *f)
{
    f->verify = 1;
    inline_body(f, f->norder);
    f->verify = 0;
    f->next = 0;
}

/* ------------------------------------------------------------------ */
/* THREAD: one invocation in flight, the next issued from the callback  */
/* ------------------------------------------------------------------ */

static void thread_result(const struct faas_result *res, void *arg)
{
    struct fixture *f = arg;
    int status = faas_result_status(res);
    if (status != 0)
        fixture_note_error(f, status);
    if (f->verify)
        fixture_check(f, res);
    if (++f->done < f->want) {
        int rc = faas_invoke(f->rt, f->order[0], f->event, NULL, thread_result, f);
        if (rc != 0) {
            fixture_note_error(f, rc);
            f->done = f->want; /* stop the round */
        }
    }
}

static void thread_body(void *arg, uint64_t k)
{
    struct fixture *f = arg;
    int rc;

    f->done = 0;
    f->want = k;
    rc = faas_invoke(f->rt, f->order[0], f->event, NULL, thread_result, f);
    if (rc != 0) {
        fixture_note_error(f, rc);
        return;
    }
    while (f->done < f->want)
        event_base_loop(f->base, EVLOOP_ONCE);
}

/* The cold start, with the payload checked. */
static void thread_warm(struct fixture *f)
{
    f->verify = 1;
    thread_body(f, 4);
    f->verify = 0;
}

/* THREAD invoke round trip against the raw handoff, with one placement. */
static int thread_figure(const struct bench_place *pl)
{
    struct bench_stat fig, flo;
    struct bench_side figure, ref;
    struct bench_handoff h;
    struct fixture f;
    char name[64], floor_name[64];
    int over;

    /* The pool's worker inherits the CPU of the thread that starts it. */
    if (pl->worker_cpu >= 0)
        bench_pin(pl->worker_cpu);
    fixture_init(&f, 1, FAAS_ISOLATION_THREAD, 1);
    if (pl->loop_cpu >= 0)
        bench_pin(pl->loop_cpu);
    thread_warm(&f);
    bench_handoff_open(&h, pl->worker_cpu);

    figure = (struct bench_side){ thread_body, &f, 64, 1u << 22 };
    ref = (struct bench_side){ bench_handoff_body, &h, BENCH_HANDOFF_K_MIN,
                                 BENCH_HANDOFF_K_MAX };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    snprintf(name, sizeof name, "THREAD invoke round trip, %s", pl->name);
    snprintf(floor_name, sizeof floor_name, "raw thread handoff, %s", pl->name);
    over = bench_line(name, fig.median_ns, floor_name, flo.median_ns, 1.3);
    fixture_report_errors(&f, name);

    bench_handoff_close(&h);
    fixture_free(&f);
    return over;
}

int main(void)
{
    struct bench_stat st, jansson, fig, flo;
    struct bench_side figure, ref;
    struct bench_place pl[2];
    struct fixture f, f10;
    char name[64];
    int npl, i, over = 0;

    /* A hang in the library must not hang `make bench`: SIGALRM ends it. */
    alarm(300);

    npl = bench_start("bench_core", pl);

    /* Floors first, while the process is small and single-threaded. */
    st = bench_floor_raw_call();
    bench_floor_line("raw call", st.median_ns);
    jansson = bench_floor_jansson();
    bench_floor_line("jansson build+dump", jansson.median_ns);
    for (i = 0; i < npl; i++) {
        st = bench_floor_thread_handoff(pl[i].worker_cpu);
        snprintf(name, sizeof name, "raw thread handoff, %s", pl[i].name);
        bench_floor_line(name, st.median_ns);
    }
    for (i = 0; i < npl; i++) {
        st = bench_floor_pipe_round_trip(pl[i].worker_cpu);
        snprintf(name, sizeof name, "raw pipe round trip, %s", pl[i].name);
        bench_floor_line(name, st.median_ns);
    }
    st = bench_floor_fork();
    bench_floor_line("raw fork", st.median_ns);

    printf("-- figures; each floor is measured again in rounds alternating with its figure\n");

    /* INLINE invoke, one function, batches of BATCH. */
    fixture_init(&f, 1, FAAS_ISOLATION_INLINE, 1);
    inline_warm(&f);
    figure = (struct bench_side){ inline_body, &f, BATCH, 1u << 24 };
    ref = (struct bench_side){ bench_jansson_body, NULL, BENCH_JANSSON_K_MIN,
                                 BENCH_JANSSON_K_MAX };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    over += bench_line("INLINE invoke", fig.median_ns, "jansson build+dump", flo.median_ns, 3.0);
    fixture_report_errors(&f, "INLINE invoke");
    fixture_free(&f);

    /* THREAD invoke round trip, one worker, one in flight. */
    for (i = 0; i < npl; i++)
        over += thread_figure(&pl[i]);

    /* Registry/dispatch flatness: 10,000 functions against 10. */
    fixture_init(&f10, 10, FAAS_ISOLATION_INLINE, 1);
    inline_warm(&f10);
    fixture_init(&f, 10000, FAAS_ISOLATION_INLINE, 1);
    inline_warm(&f);
    figure = (struct bench_side){ inline_body, &f, BATCH, 1u << 24 };
    ref = (struct bench_side){ inline_body, &f10, BATCH, 1u << 24 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    bench_line("INLINE invoke, 10 fns", flo.median_ns, "jansson build+dump", jansson.median_ns,
               0);
    over += bench_line("INLINE invoke, 10000 fns", fig.median_ns, "INLINE invoke, 10 fns",
                       flo.median_ns, 1.5);
    printf("    (faas_register, 10000 functions: %.1f ns each)\n", f.register_ns);
    fixture_report_errors(&f10, "INLINE invoke, 10 fns");
    fixture_report_errors(&f, "INLINE invoke, 10000 fns");
    fixture_free(&f);
    fixture_free(&f10);

    printf("bench_core: %d target%s over (reported, not enforced)\n", over,
           over == 1 ? "" : "s");
    return 0;
}

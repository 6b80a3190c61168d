/*
 * bench_async.c - the cost of an asynchronous INLINE invocation, from
 * faas_invoke_async to its final result, next to a request/response INLINE
 * invoke of the same function measured in the same run (see bench.h for the
 * method).
 *
 *   INLINE async event, enqueue to end   vs INLINE invoke   target <= 2x
 *
 * Both sides issue batches of BATCH invocations and run the loop until every
 * result is in; the async side counts its events in on_complete. The
 * figure includes everything an event costs on top of an invoke: the deep
 * copy of the event, the queue, the loop pass that starts it, and its final
 * result.
 *
 * Run with `make bench`. Exits 0 whatever the ratio (shared machines drift);
 * a missed target prints OVER.
 */
#include "bench.h"

#include <event2/event.h>

#include "faas.h"

#define BATCH 1000u

struct fixture {
    struct event_base *base;
    struct faas_runtime *rt;
    json_t *event;
    uint64_t done;
    uint64_t errors;
    int first_error;
};

static void note_error(struct fixture *f, int status)
{
    if (f->errors++ == 0)
        f->first_error = status;
}

static void on_result(const struct faas_result *res, void *arg)
{
    struct fixture *f = arg;
    int status = faas_result_status(res);
    if (status != 0)
        note_error(f, status);
    f->done++;
}

static void fixture_init(struct fixture *f)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;

    memset(f, 0, sizeof *f);
    ro.zygote = 0;
    bench_runtime_open(&f->base, &f->rt, &ro);
    bench_register_async(f->rt, bench_small_handler, on_result, f);
    f->event = json_pack("{s:i}", "k", 1);
    if (f->event == NULL)
        bench_die("json_pack");
}

static void fixture_free(struct fixture *f)
{
    faas_runtime_free(f->rt);
    event_base_free(f->base);
    json_decref(f->event);
}

/* Request/response: the floor. */
static void invoke_body(void *arg, uint64_t k)
{
    struct fixture *f = arg;
    uint64_t issued = 0;

    f->done = 0;
    while (issued < k) {
        uint64_t batch = k - issued < BATCH ? k - issued : BATCH, i;
        for (i = 0; i < batch; i++) {
            int rc = faas_invoke(f->rt, "fn", f->event, NULL, on_result, f);
            if (rc != 0) {
                note_error(f, rc);
                f->done++;
            }
        }
        issued += batch;
        while (f->done < issued)
            event_base_loop(f->base, EVLOOP_ONCE);
    }
}

/* Event invocations: the figure. */
static void async_body(void *arg, uint64_t k)
{
    struct fixture *f = arg;
    uint64_t issued = 0;

    f->done = 0;
    while (issued < k) {
        uint64_t batch = k - issued < BATCH ? k - issued : BATCH, i;
        for (i = 0; i < batch; i++) {
            int rc = faas_invoke_async(f->rt, "fn", f->event, NULL, NULL);
            if (rc != 0) {
                note_error(f, rc);
                f->done++;
            }
        }
        issued += batch;
        while (f->done < issued)
            event_base_loop(f->base, EVLOOP_ONCE);
    }
}

int main(void)
{
    struct bench_stat fig, flo;
    struct bench_side figure, ref;
    struct bench_place pl[2];
    struct fixture f;
    char extra[96];
    int over;

    alarm(300); /* a hang must not hang `make bench` */
    bench_placements(pl);
    if (pl[0].loop_cpu >= 0 && bench_pin(pl[0].loop_cpu) != 0)
        bench_die("pinning the loop thread");
    snprintf(extra, sizeof extra, "libfaas %s, loop on cpu %d", faas_version(),
             pl[0].loop_cpu);
    bench_header("bench_async", extra);

    fixture_init(&f);
    invoke_body(&f, BATCH); /* warm: the instances exist */
    async_body(&f, BATCH);
    figure = (struct bench_side){ async_body, &f, BATCH, 1u << 24 };
    ref = (struct bench_side){ invoke_body, &f, BATCH, 1u << 24 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    over = bench_line("INLINE async event, enqueue to end", fig.median_ns, "INLINE invoke",
                      flo.median_ns, 2.0);
    if (f.errors > 0)
        printf("    WARNING: %llu invocations failed, first with %s\n",
               (unsigned long long)f.errors, faas_strerror(f.first_error));
    fixture_free(&f);
    printf("bench_async: %d target%s over (reported, not enforced)\n", over,
           over == 1 ? "" : "s");
    return 0;
}

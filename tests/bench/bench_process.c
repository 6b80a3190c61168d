/*
 * bench_process.c - the cost of PROCESS isolation, each figure next to a
 * floor measured in the same run (see bench.h for the method).
 *
 *   idle warm worker, VmRSS             vs a bare forked child        target <= 2 MiB
 *   PROCESS warm invoke, 64-byte event  vs raw socketpair ping-pong   target <= 1.5x
 *   PROCESS cold start (fns.so echo)    vs raw fork+dlopen+call+reply target <= 1.5x
 *   the same with 256 MiB of host heap  vs the raw floor forked from that host,
 *                                       and vs the cold start before  target <= 1.5x
 *
 * Warm invoke: a handler of this program that returns its event, registered
 * with FAAS_ISOLATION_PROCESS and min_warm 1; one invocation in flight, the
 * next faas_invoke issued from the result callback. The floor is a child
 * echoing 64 bytes over a socketpair. Both are measured with the worker (or
 * the echoing child) on the loop's CPU and on the other one: the zygote, and
 * so every worker, inherits the CPU the runtime was created on.
 *
 * Cold start: "echo" of build/tests/so/fns.so (faas_register_library, so the
 * worker dlopens it and runs echo_init) with max_uses 1, so that every
 * invocation starts a new worker; timed from faas_invoke to the result
 * callback. The floor: fork, dlopen of the same object, dlsym and a call of
 * echo_init and echo in the child, the reply over a pipe; timed from before
 * fork to the parent reading the reply. The exits (the worker's fini, the
 * floor's _exit and waitpid) happen between the timed operations. Then the
 * host touches 256 MiB of heap, after the runtime (and its zygote) exist, and
 * both are measured again: the floor forks the big host, libfaas forks the
 * small zygote.
 *
 * Memory: /proc/<pid>/status VmRSS and /proc/<pid>/smaps_rollup (Pss,
 * Private_Clean + Private_Dirty) of an idle warm worker after one
 * invocation, against a child forked from this program at the same moment
 * as the zygote, blocked in read().
 *
 * Run with `make bench` from the top of the tree (build/tests/so/fns.so; the
 * environment variable BENCH_FNS_SO names another path). Exits 0 whatever
 * the ratios; a missed target prints OVER. BENCH_ROUNDS, BENCH_ROUND_MS,
 * BENCH_VERBOSE and BENCH_PIN tune the method (bench.h); BENCH_COLD_OPS is
 * the number of cold starts per round (24).
 */
#include "bench.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>

#include <event2/event.h>

#include "faas.h"

#define BIG_HEAP (256u * 1024u * 1024u)
#define COLD_OPS_DEFAULT 24u
#define SETTLE_MS 3 /* loop time between cold starts: the old worker exits */
#define FNS_SO_DEFAULT "build/tests/so/fns.so"

/* ------------------------------------------------------------------ */
/* The host side                                                       */
/* ------------------------------------------------------------------ */

/* The warm figure's handler: the event back, as an INLINE handler would. */
static int echo_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_incref(event);
    return 0;
}

/* The memory figure's handler: which process it ran in. */
static int pid_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_pack("{s:i}", "pid", (int)getpid());
    return *result != NULL ? 0 : 1;
}

struct host {
    struct event_base *base;
    struct faas_runtime *rt;
    const char *name; /* the function invoked */
    json_t *event;
    uint64_t done, want;
    uint64_t errors, warm_misses; /* warm figure: cold starts seen */
    uint64_t cold_misses;         /* cold figure: warm starts seen */
    int first_error;
    int want_cold;
    json_t *last; /* the last payload, when keep_last */
    int keep_last;
};

static void host_open(struct host *h)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;

    memset(h, 0, sizeof *h);
    ro.log = NULL;
    bench_runtime_open(&h->base, &h->rt, &ro);
}

static void host_close(struct host *h)
{
    faas_runtime_free(h->rt);
    event_base_free(h->base);
    json_decref(h->last);
}

static void host_note_error(struct host *h, int status)
{
    if (h->errors++ == 0)
        h->first_error = status;
}

static void host_report(const struct host *h, const char *what)
{
    if (h->errors > 0)
        printf("    WARNING: %s: %llu invocations failed, first with %s\n", what,
               (unsigned long long)h->errors, faas_strerror(h->first_error));
    if (h->warm_misses > 0)
        printf("    WARNING: %s: %llu invocations were cold starts\n", what,
               (unsigned long long)h->warm_misses);
    if (h->cold_misses > 0)
        printf("    WARNING: %s: %llu invocations were not cold starts\n", what,
               (unsigned long long)h->cold_misses);
}

static void host_register(struct host *h, const char *name, faas_handler_fn fn,
                          const char *so_path, uint32_t min_warm, uint32_t max_uses)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    int rc;

    fo.isolation = FAAS_ISOLATION_PROCESS;
    fo.min_warm = min_warm;
    fo.max_uses = max_uses;
    if (so_path != NULL)
        rc = faas_register_library(h->rt, name, so_path, "echo", &fo);
    else
        rc = faas_register(h->rt, name, fn, &fo);
    if (rc != 0) {
        fprintf(stderr, "bench: registering %s: %s\n", name, faas_strerror(rc));
        exit(2);
    }
    h->name = name;
}

static void host_result(const struct faas_result *res, void *arg);

static void host_issue(struct host *h)
{
    int rc = faas_invoke(h->rt, h->name, h->event, NULL, host_result, h);
    if (rc != 0) {
        host_note_error(h, rc);
        h->done = h->want; /* stop: its callback never runs */
    }
}

static void host_result(const struct faas_result *res, void *arg)
{
    struct host *h = arg;
    int status = faas_result_status(res);

    if (status != 0)
        host_note_error(h, status);
    if (faas_result_cold_start(res) && !h->want_cold)
        h->warm_misses++;
    if (!faas_result_cold_start(res) && h->want_cold)
        h->cold_misses++;
    if (h->keep_last) {
        json_decref(h->last);
        h->last = json_incref(faas_result_payload(res));
    }
    if (++h->done < h->want)
        host_issue(h);
}

/* Runs k invocations, one in flight, and the loop until the last result. */
static void host_run(struct host *h, uint64_t k)
{
    h->done = 0;
    h->want = k;
    host_issue(h);
    while (h->done < h->want)
        event_base_loop(h->base, EVLOOP_ONCE);
}

static void warm_body(void *arg, uint64_t k)
{
    host_run(arg, k);
}

static void settle_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Lets the loop run for ms milliseconds (exit reports, fini frames). */
static void host_settle(struct host *h, int ms)
{
    struct timeval tv = { 0, (suseconds_t)ms * 1000 };
    int fired = 0;
    struct event *t = evtimer_new(h->base, settle_cb, &fired);
    if (t == NULL || evtimer_add(t, &tv) != 0)
        bench_die("evtimer");
    while (!fired)
        event_base_loop(h->base, EVLOOP_ONCE);
    event_free(t);
}

/* One cold start, timed from faas_invoke to the result callback. */
static uint64_t cold_once(struct host *h)
{
    uint64_t t0 = bench_now_ns(), t;
    host_run(h, 1);
    t = bench_now_ns() - t0;
    host_settle(h, SETTLE_MS);
    return t;
}

/* ------------------------------------------------------------------ */
/* The raw cold-start floor                                            */
/* ------------------------------------------------------------------ */

struct raw_cold {
    const char *so_path;
    json_t *event;
};

/* In the child: what a worker's cold start minimally does. Never returns. */
static void raw_cold_child(const struct raw_cold *rc, int wfd)
{
    faas_init_fn init;
    faas_handler_fn fn;
    void *dl, *state = NULL;
    json_t *res = NULL;
    char *s;
    uint32_t len;

    dl = dlopen(rc->so_path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL)
        _exit(3);
    *(void **)&init = dlsym(dl, "echo_init");
    *(void **)&fn = dlsym(dl, "echo");
    if (fn == NULL || (init != NULL && init(NULL, &state) != 0))
        _exit(4);
    if (fn(NULL, rc->event, &res) != 0 || (s = json_dumps(res, JSON_COMPACT)) == NULL)
        _exit(5);
    len = (uint32_t)strlen(s);
    if (bench_write_full(wfd, &len, sizeof len) != 0 || bench_write_full(wfd, s, len) != 0)
        _exit(6);
    _exit(0);
}

/* One raw cold start, timed from before fork to the reply read. */
static uint64_t raw_cold_once(const struct raw_cold *rc)
{
    char buf[4096];
    uint64_t t0, t;
    uint32_t len;
    int p[2], st = 0;
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) != 0)
        bench_die("pipe2");
    fflush(NULL);
    t0 = bench_now_ns();
    pid = fork();
    if (pid < 0)
        bench_die("fork");
    if (pid == 0) {
        close(p[0]);
        raw_cold_child(rc, p[1]);
    }
    close(p[1]);
    if (bench_read_full(p[0], &len, sizeof len) != 0 || len > sizeof buf ||
        bench_read_full(p[0], buf, len) != 0)
        bench_die("raw cold start: no reply");
    t = bench_now_ns() - t0;
    close(p[0]);
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            bench_die("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench: raw cold start child failed (status %d)\n", st);
        exit(2);
    }
    return t;
}

/*
 * A cold figure and its floor: rounds of `ops` operations of each, the two
 * alternating operation by operation so that both see the same machine, and
 * each after the same idle pause; a round's figure is its mean, the median
 * is over the rounds.
 */
static void cold_pair(struct host *h, const struct raw_cold *rc, unsigned ops,
                      struct bench_stat *fig, struct bench_stat *flo)
{
    double pf[BENCH_ROUNDS_MAX], pg[BENCH_ROUNDS_MAX];
    int rounds = bench_rounds(), r;
    unsigned i;

    /* Warm-up: page cache, the loader's paths, the pool's first instance. */
    (void)raw_cold_once(rc);
    (void)cold_once(h);
    for (r = 0; r < rounds; r++) {
        uint64_t tf = 0, tg = 0;
        for (i = 0; i < ops; i++) {
            tf += raw_cold_once(rc);
            host_settle(h, SETTLE_MS);
            tg += cold_once(h);
        }
        pf[r] = (double)tf / ops;
        pg[r] = (double)tg / ops;
    }
    *flo = bench_stat_of(pf, rounds, ops);
    *fig = bench_stat_of(pg, rounds, ops);
}

/* ------------------------------------------------------------------ */
/* Memory of a process                                                 */
/* ------------------------------------------------------------------ */

struct proc_mem {
    long rss_kb; /* VmRSS */
    long pss_kb; /* Pss */
    long uss_kb; /* Private_Clean + Private_Dirty */
};

/* The value of "key:" in a /proc file of `pid` in kB, or -1. */
static long proc_field_kb(pid_t pid, const char *file, const char *key)
{
    char path[64], buf[8192], *p;
    size_t klen = strlen(key);
    ssize_t n, got = 0;
    int fd;

    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while ((size_t)got < sizeof buf - 1 &&
           (n = read(fd, buf + got, sizeof buf - 1 - (size_t)got)) > 0)
        got += n;
    close(fd);
    buf[got] = '\0';
    for (p = buf; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, key, klen) == 0 && p[klen] == ':')
            return strtol(p + klen + 1, NULL, 10);
    return -1;
}

static struct proc_mem proc_mem_of(pid_t pid)
{
    struct proc_mem m;
    long pc = proc_field_kb(pid, "smaps_rollup", "Private_Clean");
    long pd = proc_field_kb(pid, "smaps_rollup", "Private_Dirty");
    m.rss_kb = proc_field_kb(pid, "status", "VmRSS");
    m.pss_kb = proc_field_kb(pid, "smaps_rollup", "Pss");
    m.uss_kb = pc >= 0 && pd >= 0 ? pc + pd : -1;
    return m;
}

/* A memory figure next to its floor; target_kb > 0: "[target <= ...]". */
static int mem_line(const char *name, long kb, const char *floor_name, long floor_kb,
                    long target_kb)
{
    int over = target_kb > 0 && (kb < 0 || kb > target_kb);
    printf(BENCH_FMT_NAME " %12ld  " BENCH_FMT_FLOOR " %12ld  %8.2f", name, kb, floor_name,
           floor_kb, floor_kb > 0 ? (double)kb / (double)floor_kb : 0.0);
    if (target_kb > 0)
        printf("  [target <= %ld KiB: %s]", target_kb, over ? "OVER" : "ok");
    printf("\n");
    fflush(stdout);
    return over;
}

static int memory_figures(void)
{
    struct proc_mem w, z, b;
    struct host h;
    pid_t worker, zygote, bare;
    int p[2], over = 0;
    char c;

    host_open(&h);
    /* The floor: forked from this program as it is when the zygote is. */
    if (pipe2(p, O_CLOEXEC) != 0)
        bench_die("pipe2");
    fflush(NULL);
    bare = fork();
    if (bare < 0)
        bench_die("fork");
    if (bare == 0) {
        close(p[1]);
        (void)!read(p[0], &c, 1);
        _exit(0);
    }
    close(p[0]);

    host_register(&h, "pid", pid_handler, NULL, 1, 0);
    h.event = json_null();
    h.keep_last = 1;
    host_settle(&h, 100); /* the min_warm worker starts */
    host_run(&h, 1);
    worker = (pid_t)json_integer_value(json_object_get(h.last, "pid"));
    if (h.errors > 0 || worker <= 0) {
        host_report(&h, "memory");
        bench_die("memory: no worker pid");
    }
    host_settle(&h, 50); /* idle */
    zygote = (pid_t)proc_field_kb(worker, "status", "PPid");
    w = proc_mem_of(worker);
    z = proc_mem_of(zygote);
    b = proc_mem_of(bare);

    printf("-- memory of one process, KiB (ratio: figure / floor)\n");
    over += mem_line("idle warm worker, VmRSS", w.rss_kb, "bare forked child, VmRSS", b.rss_kb,
                     2048);
    mem_line("idle warm worker, Pss", w.pss_kb, "bare forked child, Pss", b.pss_kb, 0);
    mem_line("idle warm worker, USS", w.uss_kb, "bare forked child, USS", b.uss_kb, 0);
    printf("    (zygote: VmRSS %ld, Pss %ld, USS %ld KiB; host: VmRSS %ld KiB)\n", z.rss_kb,
           z.pss_kb, z.uss_kb, proc_field_kb(getpid(), "status", "VmRSS"));

    close(p[1]);
    while (waitpid(bare, NULL, 0) < 0 && errno == EINTR)
        ;
    host_close(&h);
    return over;
}

/* ------------------------------------------------------------------ */
/* Warm invoke                                                          */
/* ------------------------------------------------------------------ */

static int warm_figure(const struct bench_place *pl)
{
    struct bench_stat fig, flo;
    struct bench_side figure, ref;
    struct bench_pipe pipe_floor;
    struct host h;
    char name[64], floor_name[64];
    int over;

    /* The zygote, and every worker it forks, inherit this CPU. */
    if (pl->worker_cpu >= 0)
        bench_pin(pl->worker_cpu);
    host_open(&h);
    if (pl->loop_cpu >= 0)
        bench_pin(pl->loop_cpu);
    host_register(&h, "echo", echo_handler, NULL, 1, 0);
    h.event = bench_event_64();

    /* The min_warm worker starts; then a few invocations, all warm. */
    h.keep_last = 1;
    host_settle(&h, 100);
    host_run(&h, 1);
    h.warm_misses = 0;
    host_run(&h, 16);
    if (!json_equal(h.last, h.event) || h.errors > 0 || h.warm_misses > 0) {
        host_report(&h, "warm-up");
        bench_die("PROCESS echo: wrong result");
    }
    h.keep_last = 0;

    bench_pipe_open(&pipe_floor, pl->worker_cpu);
    figure = (struct bench_side){ warm_body, &h, 16, 1u << 20 };
    ref = (struct bench_side){ bench_pipe_body, &pipe_floor.fd, BENCH_PIPE_K_MIN,
                                 BENCH_PIPE_K_MAX };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    snprintf(name, sizeof name, "PROCESS warm invoke, %s", pl->name);
    snprintf(floor_name, sizeof floor_name, "raw pipe round trip, %s", pl->name);
    over = bench_line(name, fig.median_ns, floor_name, flo.median_ns, 1.5);
    host_report(&h, name);

    bench_pipe_close(&pipe_floor);
    json_decref(h.event);
    host_close(&h);
    return over;
}

/* ------------------------------------------------------------------ */
/* Cold start                                                          */
/* ------------------------------------------------------------------ */

static int cold_figures(const char *so_path, int cpu)
{
    struct bench_stat fig, flo, small_fig, small_flo;
    struct raw_cold rc;
    struct host h;
    unsigned ops = (unsigned)bench_env_ulong("BENCH_COLD_OPS", COLD_OPS_DEFAULT, 1, 10000);
    const char *state;
    char *heap;
    uintptr_t lo, hi, pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    int over = 0;

    if (cpu >= 0)
        bench_pin(cpu);
    host_open(&h);
    host_register(&h, "cold", NULL, so_path, 0, 1);
    h.event = json_pack("{s:s}", "k", "cold");
    h.want_cold = 1;
    h.keep_last = 1;
    host_run(&h, 1);
    state = json_string_value(json_object_get(h.last, "state"));
    if (h.errors > 0 || state == NULL || strcmp(state, "initialised") != 0) {
        host_report(&h, "cold start");
        bench_die("PROCESS library echo: wrong result");
    }
    h.keep_last = 0;
    rc.so_path = so_path;
    rc.event = h.event;

    cold_pair(&h, &rc, ops, &small_fig, &small_flo);
    over += bench_line("PROCESS cold start, fns.so echo", small_fig.median_ns,
                       "raw fork+dlopen+call+reply", small_flo.median_ns, 1.5);
    host_report(&h, "PROCESS cold start");

    /*
     * The host grows after its runtime exists: 256 MiB touched, in 4 KiB
     * pages whatever the transparent huge page setting, as a heap of many
     * small allocations would be.
     */
    heap = malloc(BIG_HEAP);
    if (heap == NULL)
        bench_die("malloc 256 MiB");
    lo = ((uintptr_t)heap + pg - 1) & ~(pg - 1);
    hi = ((uintptr_t)heap + BIG_HEAP) & ~(pg - 1);
    (void)madvise((void *)lo, hi - lo, MADV_NOHUGEPAGE);
    memset(heap, 1, BIG_HEAP);

    cold_pair(&h, &rc, ops, &fig, &flo);
    bench_line("raw fork+dlopen+call+reply, 256M", flo.median_ns, "raw fork+dlopen+call+reply",
               small_flo.median_ns, 0);
    bench_line("PROCESS cold start, 256M host", fig.median_ns,
               "raw fork+dlopen+call+reply, 256M", flo.median_ns, 0);
    over += bench_line("PROCESS cold start, 256M host", fig.median_ns,
                       "PROCESS cold start, small host", small_fig.median_ns, 1.5);
    host_report(&h, "PROCESS cold start, 256M host");

    free(heap);
    json_decref(h.event);
    host_close(&h);
    return over;
}

int main(void)
{
    struct bench_place pl[2];
    const char *so_path = getenv("BENCH_FNS_SO");
    int npl, i, over = 0;

    /* A hang in the library must not hang `make bench`: SIGALRM ends it. */
    alarm(180);

    if (so_path == NULL || *so_path == '\0')
        so_path = FNS_SO_DEFAULT;
    if (access(so_path, R_OK) != 0) {
        fprintf(stderr, "bench: %s: %s (run from the top of the tree, after make bench)\n",
                so_path, strerror(errno));
        return 2;
    }
    npl = bench_start("bench_process", pl);

    /* Memory first, while this program is small. */
    over += memory_figures();

    printf("-- figures, ns; each floor is measured in rounds alternating with its figure\n");
    for (i = 0; i < npl; i++)
        over += warm_figure(&pl[i]);

    /* Cold starts: the zygote, its workers and the raw floor's children all
     * on the loop's CPU. Last: the host grows to 256 MiB here. */
    over += cold_figures(so_path, pl[0].loop_cpu);

    printf("bench_process: %d target%s over (reported, not enforced)\n", over,
           over == 1 ? "" : "s");
    return 0;
}

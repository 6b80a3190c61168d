/*
 * bench.h - shared helpers of the libfaas benchmarks (tests/bench/bench_*.c).
 *
 * Absolute times on shared 2-vCPU machines drift by up to 2x with the load of
 * neighbouring machines, so every figure is printed next to a floor measured
 * in the same run, and the ratio is what a target is checked against.
 *
 * A measured body runs K operations; bench_measure() first calibrates K (the
 * calibration passes double as the warm-up) so that one round takes about
 * BENCH_ROUND_MS, then runs R rounds and takes the median of the per-round
 * ns/op. bench_measure_pair() does the same for a figure and its floor in
 * alternating rounds, so both see the same machine. BENCH_ROUNDS (default 7)
 * and BENCH_ROUND_MS (default 100) in the environment override both;
 * BENCH_VERBOSE prints K and the spread of the rounds.
 *
 * Round trips between two threads or processes depend on where the two
 * sides run (bench_placements()): the benchmarks pin them; BENCH_PIN=0
 * leaves them to the scheduler.
 *
 * The floors shared by every benchmark live here too: a call through a
 * function pointer, a jansson build+dump of a small object, a libevent
 * loop <-> worker thread round trip, a socketpair ping-pong between two
 * processes, and fork + _exit + waitpid.
 *
 * So do the fixtures more than one benchmark sets up alike: the handler of
 * the figures, a runtime on its own base, the 64-byte event.
 *
 * Everything is static inline so that a benchmark uses what it needs and the
 * strict warnings stay quiet about the rest.
 */
#ifndef FAAS_BENCH_H
#define FAAS_BENCH_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "faas.h"

#define BENCH_ROUNDS_DEFAULT 7
#define BENCH_ROUNDS_MAX 101
#define BENCH_ROUND_MS_DEFAULT 100u

/* A measured body: runs `k` operations of one figure. */
typedef void (*bench_body_fn)(void *arg, uint64_t k);

/* What bench_measure() found: the median and spread of per-round ns/op. */
struct bench_stat {
    double median_ns;
    double min_ns;
    double max_ns;
    uint64_t k; /* operations per round */
};

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Prints a message and exits: a benchmark that cannot set up has no figure. */
static inline void bench_die(const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(2);
}

static inline unsigned long bench_env_ulong(const char *name, unsigned long dflt,
                                            unsigned long lo, unsigned long hi)
{
    const char *s = getenv(name);
    char *end = NULL;
    unsigned long v;
    if (s == NULL || *s == '\0')
        return dflt;
    v = strtoul(s, &end, 10);
    if (end == NULL || *end != '\0' || v < lo || v > hi)
        return dflt;
    return v;
}

static inline int bench_rounds(void)
{
    return (int)bench_env_ulong("BENCH_ROUNDS", BENCH_ROUNDS_DEFAULT, 1, BENCH_ROUNDS_MAX);
}

static inline uint64_t bench_round_ns(void)
{
    return (uint64_t)bench_env_ulong("BENCH_ROUND_MS", BENCH_ROUND_MS_DEFAULT, 1, 10000) *
           1000000u;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline uint64_t bench_time_body(bench_body_fn fn, void *arg, uint64_t k)
{
    uint64_t t0 = bench_now_ns();
    fn(arg, k);
    return bench_now_ns() - t0;
}

/*
 * Finds K between k_min and k_max so that a round of the body takes about
 * BENCH_ROUND_MS. The calibration runs are the warm-up.
 */
static inline uint64_t bench_calibrate(bench_body_fn fn, void *arg, uint64_t k_min,
                                       uint64_t k_max)
{
    uint64_t target = bench_round_ns();
    uint64_t k = k_min ? k_min : 1;
    uint64_t t;

    if (k_max < k)
        k_max = k;
    for (;;) {
        t = bench_time_body(fn, arg, k);
        if (t >= target / 4 || k >= k_max)
            break;
        k = k * 4 > k_max ? k_max : k * 4;
    }
    if (t > 0) {
        double scaled = (double)k * (double)target / (double)t;
        k = scaled < (double)k_min ? k_min
            : scaled > (double)k_max ? k_max
                                     : (uint64_t)scaled;
    }
    return k ? k : 1;
}

static inline struct bench_stat bench_stat_of(double *per, int rounds, uint64_t k)
{
    struct bench_stat st;
    qsort(per, (size_t)rounds, sizeof per[0], bench_cmp_double);
    st.median_ns = per[rounds / 2];
    if (rounds % 2 == 0)
        st.median_ns = (per[rounds / 2 - 1] + per[rounds / 2]) / 2.0;
    st.min_ns = per[0];
    st.max_ns = per[rounds - 1];
    st.k = k;
    if (getenv("BENCH_VERBOSE") != NULL)
        printf("    (K=%llu, rounds %d, min %.1f, max %.1f ns/op)\n", (unsigned long long)k,
               rounds, st.min_ns, st.max_ns);
    return st;
}

/*
 * Measures a body: calibrates K, runs the rounds and returns the median of
 * the per-round ns/op.
 */
static inline struct bench_stat bench_measure(bench_body_fn fn, void *arg, uint64_t k_min,
                                              uint64_t k_max)
{
    double per[BENCH_ROUNDS_MAX];
    int rounds = bench_rounds();
    uint64_t k = bench_calibrate(fn, arg, k_min, k_max);
    int i;

    for (i = 0; i < rounds; i++)
        per[i] = (double)bench_time_body(fn, arg, k) / (double)k;
    return bench_stat_of(per, rounds, k);
}

/* One side of bench_measure_pair(). */
struct bench_side {
    bench_body_fn fn;
    void *arg;
    uint64_t k_min, k_max;
};

/*
 * Measures a figure and its floor `ref` in alternating rounds (floor,
 * figure, floor, ...), so a neighbour's burst of load slows both alike and their
 * ratio holds still while the absolute times drift.
 */
static inline void bench_measure_pair(const struct bench_side *figure, struct bench_stat *fig_out,
                                      const struct bench_side *ref, struct bench_stat *ref_out)
{
    double pf[BENCH_ROUNDS_MAX], pg[BENCH_ROUNDS_MAX];
    int rounds = bench_rounds();
    uint64_t kf = bench_calibrate(ref->fn, ref->arg, ref->k_min, ref->k_max);
    uint64_t kg = bench_calibrate(figure->fn, figure->arg, figure->k_min, figure->k_max);
    int i;

    for (i = 0; i < rounds; i++) {
        pf[i] = (double)bench_time_body(ref->fn, ref->arg, kf) / (double)kf;
        pg[i] = (double)bench_time_body(figure->fn, figure->arg, kg) / (double)kg;
    }
    *ref_out = bench_stat_of(pf, rounds, kf);
    *fig_out = bench_stat_of(pg, rounds, kg);
}

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

#define BENCH_FMT_NAME "%-36s"
#define BENCH_FMT_FLOOR "%-32s"

static inline int bench_ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/*
 * Where the two sides of a loop <-> thread (or process) round trip run. On
 * these VMs waking a thread on the other, idle vCPU costs several times a
 * switch on the same vCPU, and the scheduler's placement sticks for seconds,
 * so an unpinned round trip jumps between two figures from run to run.
 * The benchmarks pin the loop thread and place the other side explicitly.
 */
struct bench_place {
    const char *name; /* "2 cpus", "1 cpu", "unpinned" */
    int loop_cpu;     /* -1: not pinned */
    int worker_cpu;
};

/* Pins the calling thread to one CPU; -1: every CPU. Returns 0 or -1. */
static inline int bench_pin(int cpu)
{
    cpu_set_t set;
    int i;
    CPU_ZERO(&set);
    if (cpu >= 0) {
        CPU_SET((size_t)cpu, &set);
    } else {
        for (i = 0; i < CPU_SETSIZE; i++)
            CPU_SET((size_t)i, &set);
    }
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0 ? 0 : -1;
}

/*
 * The placements to measure: the loop and the other side on two CPUs, and
 * both on one CPU. BENCH_PIN=0 in the environment measures unpinned instead.
 * Returns how many were written to out[] (1 or 2).
 */
static inline int bench_placements(struct bench_place out[2])
{
    cpu_set_t set;
    int cpus[2], n = 0, i;

    if (bench_env_ulong("BENCH_PIN", 1, 0, 1) == 0 ||
        sched_getaffinity(0, sizeof set, &set) != 0) {
        out[0] = (struct bench_place){ "unpinned", -1, -1 };
        return 1;
    }
    for (i = 0; i < CPU_SETSIZE && n < 2; i++)
        if (CPU_ISSET((size_t)i, &set))
            cpus[n++] = i;
    if (n < 2) {
        out[0] = (struct bench_place){ "1 cpu", cpus[0], cpus[0] };
        return 1;
    }
    out[0] = (struct bench_place){ "2 cpus", cpus[0], cpus[1] };
    out[1] = (struct bench_place){ "1 cpu", cpus[0], cpus[0] };
    return 2;
}

/* The header: program, core count, rounds, and the column names. */
static inline void bench_header(const char *prog, const char *extra)
{
    printf("%s: %d cores, %d rounds of ~%llu ms, median of per-round ns/op%s%s\n", prog,
           bench_ncpus(), bench_rounds(),
           (unsigned long long)(bench_round_ns() / 1000000u), extra ? ", " : "",
           extra ? extra : "");
    printf(BENCH_FMT_NAME " %12s  " BENCH_FMT_FLOOR " %12s  %8s  %s\n", "name", "median ns",
           "floor", "floor ns", "ratio", "target");
    fflush(stdout);
}

/* A floor's own line: no floor beneath it. */
static inline void bench_floor_line(const char *name, double median_ns)
{
    printf(BENCH_FMT_NAME " %12.1f  " BENCH_FMT_FLOOR " %12s  %8s\n", name, median_ns, "-",
           "-", "-");
    fflush(stdout);
}

/*
 * A figure next to its floor: "name median floor floor_median ratio" and,
 * when target > 0, "[target <= X: ok|OVER]". Returns 1 when over target.
 */
static inline int bench_line(const char *name, double median_ns, const char *floor_name,
                             double floor_ns, double target)
{
    double ratio = floor_ns > 0 ? median_ns / floor_ns : 0.0;
    int over = target > 0 && ratio > target;
    printf(BENCH_FMT_NAME " %12.1f  " BENCH_FMT_FLOOR " %12.1f  %8.2f", name, median_ns,
           floor_name, floor_ns, ratio);
    if (target > 0)
        printf("  [target <= %.2f: %s]", target, over ? "OVER" : "ok");
    printf("\n");
    fflush(stdout);
    return over;
}

/* ------------------------------------------------------------------ */
/* Floor: a call through a function pointer                            */
/* ------------------------------------------------------------------ */

static inline unsigned bench_nop_fn(unsigned x)
{
    return x + 1u;
}

static inline void bench_raw_call_body(void *arg, uint64_t k)
{
    /* volatile: the compiler must load the pointer and make the call. */
    unsigned (*volatile fp)(unsigned) = bench_nop_fn;
    volatile unsigned sink;
    unsigned acc = 0;
    uint64_t i;
    (void)arg;
    for (i = 0; i < k; i++)
        acc = fp(acc);
    sink = acc;
    (void)sink;
}

static inline struct bench_stat bench_floor_raw_call(void)
{
    return bench_measure(bench_raw_call_body, NULL, 1u << 16, 1u << 30);
}

/* ------------------------------------------------------------------ */
/* Floor: jansson build + dump of a small object                       */
/* ------------------------------------------------------------------ */

static inline void bench_jansson_body(void *arg, uint64_t k)
{
    volatile size_t sink = 0;
    uint64_t i;
    (void)arg;
    for (i = 0; i < k; i++) {
        char buf[64];
        json_t *o = json_pack("{s:b,s:i}", "ok", 1, "n", 42);
        if (o == NULL)
            bench_die("json_pack");
        sink += json_dumpb(o, buf, sizeof buf, JSON_COMPACT);
        json_decref(o);
    }
    (void)sink;
}

#define BENCH_JANSSON_K_MIN 1024u
#define BENCH_JANSSON_K_MAX (1u << 26)

static inline struct bench_stat bench_floor_jansson(void)
{
    return bench_measure(bench_jansson_body, NULL, BENCH_JANSSON_K_MIN, BENCH_JANSSON_K_MAX);
}

/* ------------------------------------------------------------------ */
/* Floor: libevent loop <-> worker thread round trip                   */
/* ------------------------------------------------------------------ */

/*
 * The loop side pushes a job under a mutex and signals a condvar; the worker
 * takes it and writes an eventfd; the loop's persistent EV_READ event reads
 * the eventfd and pushes the next job. One job in flight: what a THREAD
 * invocation minimally costs.
 */
struct bench_handoff {
    struct event_base *base;
    struct event *ev;
    int efd;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int has_job;
    int stop;
    uint64_t left;
};

static inline void *bench_handoff_worker(void *arg)
{
    struct bench_handoff *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        uint64_t one = 1;
        while (!h->has_job && !h->stop)
            pthread_cond_wait(&h->cv, &h->mu);
        if (!h->has_job)
            break;
        h->has_job = 0;
        pthread_mutex_unlock(&h->mu);
        if (write(h->efd, &one, sizeof one) != (ssize_t)sizeof one)
            bench_die("eventfd write");
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static inline void bench_handoff_push(struct bench_handoff *h)
{
    pthread_mutex_lock(&h->mu);
    h->has_job = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static inline void bench_handoff_ready(evutil_socket_t fd, short what, void *arg)
{
    struct bench_handoff *h = arg;
    uint64_t v;
    (void)what;
    if (read(fd, &v, sizeof v) != (ssize_t)sizeof v)
        return;
    if (--h->left == 0)
        event_base_loopbreak(h->base);
    else
        bench_handoff_push(h);
}

static inline void bench_handoff_body(void *arg, uint64_t k)
{
    struct bench_handoff *h = arg;
    h->left = k;
    bench_handoff_push(h);
    event_base_dispatch(h->base);
}

/*
 * Starts the worker thread, pinned to worker_cpu (-1: not pinned), and the
 * loop side on a base of its own.
 */
static inline void bench_handoff_open(struct bench_handoff *h, int worker_cpu)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->base = event_base_new();
    h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (h->base == NULL || h->efd < 0)
        bench_die("handoff setup");
    h->ev = event_new(h->base, h->efd, EV_READ | EV_PERSIST, bench_handoff_ready, h);
    if (h->ev == NULL || event_add(h->ev, NULL) != 0)
        bench_die("handoff event");
    if (pthread_create(&h->thread, NULL, bench_handoff_worker, h) != 0)
        bench_die("pthread_create");
    if (worker_cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((size_t)worker_cpu, &set);
        if (pthread_setaffinity_np(h->thread, sizeof set, &set) != 0)
            bench_die("pthread_setaffinity_np");
    }
}

static inline void bench_handoff_close(struct bench_handoff *h)
{
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    event_free(h->ev);
    event_base_free(h->base);
    close(h->efd);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
}

/* K bounds of the handoff body, for bench_measure_pair(). */
#define BENCH_HANDOFF_K_MIN 64u
#define BENCH_HANDOFF_K_MAX (1u << 22)

static inline struct bench_stat bench_floor_thread_handoff(int worker_cpu)
{
    struct bench_handoff h;
    struct bench_stat st;
    bench_handoff_open(&h, worker_cpu);
    st = bench_measure(bench_handoff_body, &h, BENCH_HANDOFF_K_MIN, BENCH_HANDOFF_K_MAX);
    bench_handoff_close(&h);
    return st;
}

/* ------------------------------------------------------------------ */
/* Floor: socketpair ping-pong between two processes                   */
/* ------------------------------------------------------------------ */

#define BENCH_MSG_SIZE 64

/* Reads exactly n bytes; 0 on success, -1 on EOF or error. */
static inline int bench_read_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static inline int bench_write_full(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static inline void bench_pipe_body(void *arg, uint64_t k)
{
    int fd = *(int *)arg;
    char msg[BENCH_MSG_SIZE];
    uint64_t i;
    memset(msg, 'x', sizeof msg);
    for (i = 0; i < k; i++) {
        if (bench_write_full(fd, msg, sizeof msg) != 0 ||
            bench_read_full(fd, msg, sizeof msg) != 0)
            bench_die("socketpair ping-pong");
    }
}

/* A child echoing 64-byte messages on the other end of a socketpair. */
struct bench_pipe {
    int fd; /* the parent's end: the body's argument */
    pid_t pid;
};

/* The child is pinned to child_cpu (-1: not pinned). */
static inline void bench_pipe_open(struct bench_pipe *p, int child_cpu)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        bench_die("socketpair");
    fflush(NULL);
    p->pid = fork();
    if (p->pid < 0)
        bench_die("fork");
    if (p->pid == 0) {
        char msg[BENCH_MSG_SIZE];
        close(sv[0]);
        if (child_cpu >= 0 && bench_pin(child_cpu) != 0)
            _exit(1);
        while (bench_read_full(sv[1], msg, sizeof msg) == 0)
            if (bench_write_full(sv[1], msg, sizeof msg) != 0)
                break;
        _exit(0);
    }
    close(sv[1]);
    p->fd = sv[0];
}

static inline void bench_pipe_close(struct bench_pipe *p)
{
    close(p->fd);
    while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

#define BENCH_PIPE_K_MIN 64u
#define BENCH_PIPE_K_MAX (1u << 22)

static inline struct bench_stat bench_floor_pipe_round_trip(int child_cpu)
{
    struct bench_pipe p;
    struct bench_stat st;
    bench_pipe_open(&p, child_cpu);
    st = bench_measure(bench_pipe_body, &p.fd, BENCH_PIPE_K_MIN, BENCH_PIPE_K_MAX);
    bench_pipe_close(&p);
    return st;
}

/* ------------------------------------------------------------------ */
/* Floor: fork + child _exit + waitpid                                 */
/* ------------------------------------------------------------------ */

static inline void bench_fork_body(void *arg, uint64_t k)
{
    uint64_t i;
    (void)arg;
    for (i = 0; i < k; i++) {
        pid_t pid = fork();
        if (pid < 0)
            bench_die("fork");
        if (pid == 0)
            _exit(0);
        while (waitpid(pid, NULL, 0) < 0)
            if (errno != EINTR)
                bench_die("waitpid");
    }
}

/* Measure it while the process is small: fork cost grows with touched memory. */
static inline struct bench_stat bench_floor_fork(void)
{
    fflush(NULL);
    return bench_measure(bench_fork_body, NULL, 8, 1u << 16);
}

/* ------------------------------------------------------------------ */
/* Fixtures                                                             */
/* ------------------------------------------------------------------ */

/* The handler of the figures: builds the floor's small object. */
static inline int bench_small_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_pack("{s:b,s:i}", "ok", 1, "n", 42);
    return *result != NULL ? 0 : 1;
}

/*
 * A runtime with options ro on a new base; a failure ends the program.
 * stdio is flushed first: a runtime with a zygote forks, and the child
 * must not print the parent's buffered lines again.
 */
static inline void bench_runtime_open(struct event_base **base, struct faas_runtime **rt,
                                      const struct faas_runtime_opts *ro)
{
    int rc;
    *base = event_base_new();
    if (*base == NULL)
        bench_die("event_base_new");
    fflush(NULL);
    rc = faas_runtime_new(rt, *base, ro);
    if (rc != 0) {
        fprintf(stderr, "bench: faas_runtime_new: %s\n", faas_strerror(rc));
        exit(2);
    }
}

/* Registers "fn": INLINE `handler`, whose async events end (no retries)
 * through on_complete(arg). Exits on failure. */
static inline void bench_register_async(struct faas_runtime *rt, faas_handler_fn handler,
                                        faas_result_fn on_complete, void *arg)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    int rc;

    ao.on_complete = on_complete;
    ao.on_complete_arg = arg;
    ao.max_retries = 0;
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.async = &ao;
    rc = faas_register(rt, "fn", handler, &fo);
    if (rc != 0) {
        fprintf(stderr, "bench: faas_register: %s\n", faas_strerror(rc));
        exit(2);
    }
}

/* A JSON object whose compact text is exactly BENCH_MSG_SIZE bytes. */
static inline json_t *bench_event_64(void)
{
    char data[BENCH_MSG_SIZE];
    size_t n = BENCH_MSG_SIZE - strlen("{\"data\":\"\"}");
    json_t *ev;
    char *s;

    memset(data, 'x', n);
    data[n] = '\0';
    ev = json_pack("{s:s}", "data", data);
    s = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    if (s == NULL || strlen(s) != BENCH_MSG_SIZE)
        bench_die("64-byte event");
    free(s);
    return ev;
}

/*
 * The opening of a benchmark that measures on placements: finds them,
 * pins the loop thread to the first one's cpu and prints the header with
 * the library's version. Returns how many placements pl holds.
 */
static inline int bench_start(const char *prog, struct bench_place pl[2])
{
    char extra[96];
    int npl = bench_placements(pl);
    if (pl[0].loop_cpu >= 0 && bench_pin(pl[0].loop_cpu) != 0)
        bench_die("pinning the loop thread");
    snprintf(extra, sizeof extra, "libfaas %s, loop on cpu %d", faas_version(),
             pl[0].loop_cpu);
    bench_header(prog, extra);
    return npl;
}

#endif /* FAAS_BENCH_H */

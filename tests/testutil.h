/*
 * testutil.h - shared helpers of the cmocka suites: drive the host's loop
 * until a condition holds, with a bound, never a bare sleep; and the
 * fixtures more than one suite sets up the same way (a runtime on its own
 * base, counters shared with worker threads, a gate THREAD handlers wait
 * on, a fake clock, the tables of tests/data).
 */
#ifndef FAAS_TESTUTIL_H
#define FAAS_TESTUTIL_H

#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "faas.h"

/* Counters and flags that handlers on worker threads write and the loop
 * thread reads: any scalar or pointer type. */
#define AINC(p) __atomic_add_fetch((p), 1, __ATOMIC_SEQ_CST)
#define ALOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define ASTORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

/* Suites that run a test once per isolation give cmocka &tu_iso_inline or
 * &tu_iso_thread as the test's state; the test reads it with tu_iso. */
static enum faas_isolation tu_iso_inline __attribute__((unused)) = FAAS_ISOLATION_INLINE;
static enum faas_isolation tu_iso_thread __attribute__((unused)) = FAAS_ISOLATION_THREAD;

static inline enum faas_isolation tu_iso(void **state)
{
    return *(const enum faas_isolation *)*state;
}

/*
 * With FAAS_TEST_DURABLE=sqlite in the environment, the runtimes tu_rt_new
 * makes keep their state in a SQLite file of their own (a new temporary
 * directory, removed by tu_rt_free), unless the test names an engine: the
 * suites that run against memory run against SQLite too (make test runs
 * them both ways). With FAAS_TEST_DURABLE=redis they keep it in a
 * redis-server the suite's process starts at its first runtime and stops
 * at exit (redis_util.h), each runtime under a key prefix of its own.
 */
static char tu_durable_dir[64];
static char tu_durable_url[96];

#if FAAS_WITH_REDIS
#include "redis_util.h"

static char tu_durable_prefix[32];

static struct tu_redis tu_redis_srv;
static pid_t tu_redis_owner;

static inline void tu_redis_at_exit(void)
{
    /* forked children (the zygote) leave the server to the suite */
    if (tu_redis_owner == getpid())
        tu_redis_stop(&tu_redis_srv);
}

/* The suite's server, started at the first call. */
static inline const char *tu_redis_url(void)
{
    if (!tu_redis_owner) {
        assert_int_equal(tu_redis_start(&tu_redis_srv), 0);
        tu_redis_owner = getpid();
        atexit(tu_redis_at_exit);
    }
    return tu_redis_srv.url;
}
#endif

static inline const char *tu_durable_kind(void)
{
    const char *want = getenv("FAAS_TEST_DURABLE");
    if (want && strcmp(want, "sqlite") == 0)
        return "sqlite";
#if FAAS_WITH_REDIS
    if (want && strcmp(want, "redis") == 0)
        return "redis";
#endif
    return NULL;
}

static inline int tu_durable_wanted(const struct faas_runtime_opts *o)
{
    return tu_durable_kind() && !tu_durable_dir[0] &&
           (!o || (o->version == FAAS_RUNTIME_OPTS_VERSION && !o->durable));
}

static inline void tu_durable_remove(void)
{
    DIR *d;
    struct dirent *e;
    char path[sizeof tu_durable_dir + 258];

    if (!tu_durable_dir[0])
        return;
    if ((d = opendir(tu_durable_dir)) != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", tu_durable_dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(tu_durable_dir);
    tu_durable_dir[0] = '\0';
}

/*
 * Puts the engine FAAS_TEST_DURABLE names into *o (a suite that makes its
 * runtimes itself calls this before faas_runtime_new, and
 * tu_durable_remove after freeing the runtime), unless o names an engine
 * or a durable runtime of the suite is still open. Returns 1 when it did.
 */
static inline int tu_durable_apply(struct faas_runtime_opts *o)
{
    if (!tu_durable_wanted(o))
        return 0;
    strcpy(tu_durable_dir, "/tmp/faas-tu-XXXXXX");
    assert_non_null(mkdtemp(tu_durable_dir));
    snprintf(tu_durable_url, sizeof tu_durable_url, "sqlite:%s/t.db", tu_durable_dir);
#if FAAS_WITH_REDIS
    if (strcmp(tu_durable_kind(), "redis") == 0) {
        static unsigned runs;
        snprintf(tu_durable_url, sizeof tu_durable_url, "%s", tu_redis_url());
        snprintf(tu_durable_prefix, sizeof tu_durable_prefix, "tu%u", ++runs);
        o->durable_prefix = tu_durable_prefix;
    }
#endif
    o->durable = tu_durable_url;
    o->durable_sync = 0;
    return 1;
}

/*
 * A runtime with options o on a new base of its own; both are asserted.
 * tu_rt_free undoes it and clears both handles, so a teardown may run
 * after a test that freed the runtime itself.
 */
static inline void tu_rt_new(struct event_base **base, struct faas_runtime **rt,
                             const struct faas_runtime_opts *o)
{
    struct faas_runtime_opts d = FAAS_RUNTIME_OPTS_INIT;

    *base = event_base_new();
    assert_non_null(*base);
    *rt = NULL;
    if (tu_durable_wanted(o)) {
        if (o)
            memcpy(&d, o, sizeof d);
        tu_durable_apply(&d);
        o = &d;
    }
    assert_int_equal(faas_runtime_new(rt, *base, o), 0);
    assert_non_null(*rt);
}

static inline void tu_rt_free(struct faas_runtime **rt, struct event_base **base)
{
    faas_runtime_free(*rt);
    *rt = NULL;
    event_base_free(*base);
    *base = NULL;
    tu_durable_remove();
}

/* The figures of one function, asserted to exist. */
static inline struct faas_stats tu_stats(struct faas_runtime *rt, const char *name)
{
    struct faas_stats st;
    memset(&st, 0, sizeof st);
    assert_int_equal(faas_stats(rt, name, &st), 0);
    return st;
}

static inline uint64_t tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * Runs the loop one pass at a time until *counter >= want or bound_ms of real
 * time has passed. Returns 1 when the condition held, 0 on the bound.
 * A pass blocks at most 10 ms so the bound is honoured even when nothing is
 * pending on the base.
 */
static inline void tu_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static inline int tu_run_until(struct event_base *base, const int *counter, int want,
                               unsigned bound_ms)
{
    uint64_t end = tu_now_ms() + bound_ms;
    struct timeval tick = { 0, 10000 };
    struct event *ev = event_new(base, -1, 0, tu_tick_cb, NULL);
    int ok = 1;
    while (*counter < want) {
        if (tu_now_ms() > end) {
            ok = 0;
            break;
        }
        event_add(ev, &tick);
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(ev);
    return ok;
}

/* Runs the loop until pred(arg) holds or bound_ms passed; 1 when it held. */
static inline int tu_run_until_pred(struct event_base *base, int (*pred)(const void *),
                                    const void *arg, unsigned bound_ms)
{
    uint64_t end = tu_now_ms() + bound_ms;
    struct timeval tick = { 0, 10000 };
    struct event *ev = event_new(base, -1, 0, tu_tick_cb, NULL);
    int ok = 1;
    while (!pred(arg)) {
        if (tu_now_ms() > end) {
            ok = 0;
            break;
        }
        event_add(ev, &tick);
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(ev);
    return ok;
}

struct tu_atomic_want {
    int *p;
    int want;
};

static inline int tu_pred_atomic(const void *arg)
{
    const struct tu_atomic_want *w = arg;
    return __atomic_load_n(w->p, __ATOMIC_SEQ_CST) >= w->want;
}

/* Like tu_run_until, for a counter that worker threads update atomically. */
static inline int tu_run_until_atomic(struct event_base *base, int *p, int want,
                                      unsigned bound_ms)
{
    struct tu_atomic_want w = { p, want };
    return tu_run_until_pred(base, tu_pred_atomic, &w, bound_ms);
}

/* timespec arithmetic for bounded condition waits in handlers */
static inline void tu_ts_add_ms(struct timespec *ts, unsigned ms)
{
    ts->tv_sec += (time_t)(ms / 1000u);
    ts->tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static inline int tu_ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/*
 * A gate THREAD handlers wait on and the test opens: *open guarded by mu,
 * cv made with a CLOCK_MONOTONIC attribute.
 */
static inline void tu_gate_open(pthread_mutex_t *mu, pthread_cond_t *cv, int *open)
{
    pthread_mutex_lock(mu);
    *open = 1;
    pthread_cond_broadcast(cv);
    pthread_mutex_unlock(mu);
}

/* A condition variable whose timed waits read CLOCK_MONOTONIC, as
 * tu_gate_wait's deadlines do. */
static inline void tu_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

/* 1: opened, 2: ctx cancelled, 0: the bound passed. */
static inline int tu_gate_wait(pthread_mutex_t *mu, pthread_cond_t *cv, const int *open,
                               const struct faas_ctx *ctx, unsigned bound_ms)
{
    struct timespec end, now;
    int r = 0;
    clock_gettime(CLOCK_MONOTONIC, &end);
    tu_ts_add_ms(&end, bound_ms);
    pthread_mutex_lock(mu);
    for (;;) {
        if (*open) {
            r = 1;
            break;
        }
        if (ctx != NULL && faas_ctx_cancelled(ctx)) {
            r = 2;
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!tu_ts_before(&now, &end))
            break;
        tu_ts_add_ms(&now, 5);
        pthread_cond_timedwait(cv, mu, &now);
    }
    pthread_mutex_unlock(mu);
    return r;
}

/* Runs the loop for about ms milliseconds of real time (to let things happen
 * that must NOT happen, e.g. a callback that must not run twice). */
static inline void tu_run_for(struct event_base *base, unsigned ms)
{
    struct timeval tv = { (time_t)(ms / 1000u), (suseconds_t)((ms % 1000u) * 1000u) };
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* A fake clock for tests: both clocks read *ns, advanced by the test. */
struct tu_clock {
    uint64_t ns;
};

static inline uint64_t tu_clock_now(void *arg)
{
    return __atomic_load_n(&((struct tu_clock *)arg)->ns, __ATOMIC_SEQ_CST);
}

static inline int64_t tu_clock_wall(void *arg)
{
    return (int64_t)(1700000000ull * 1000000000ull + tu_clock_now(arg));
}

static inline void tu_clock_advance(struct tu_clock *c, uint64_t ns)
{
    __atomic_add_fetch(&c->ns, ns, __ATOMIC_SEQ_CST);
}

/*
 * One case of a table in tests/data: a line split at tabs, fields pointing
 * into buf. Blank lines and '#' lines are not cases.
 */
#define TU_ROW_FIELDS_MAX 8

struct tu_row {
    char buf[4096];
    char *f[TU_ROW_FIELDS_MAX];
    int nf;
    int lineno;
};

/* Reads the next case, at most max_fields fields (a line with more fails
 * the test); strips only the newline. Returns 1 with a row, 0 at the end. */
static inline int tu_read_row(FILE *fp, struct tu_row *r, int max_fields)
{
    assert_true(max_fields > 0 && max_fields <= TU_ROW_FIELDS_MAX);
    while (fgets(r->buf, sizeof r->buf, fp)) {
        size_t len = strlen(r->buf);
        char *p;
        r->lineno++;
        if (len == 0 || r->buf[len - 1] != '\n')
            fail_msg("line %d: too long or unterminated", r->lineno);
        r->buf[--len] = '\0';
        if (len == 0 || r->buf[0] == '#')
            continue;
        r->nf = 0;
        p = r->buf;
        for (;;) {
            char *tab = strchr(p, '\t');
            if (r->nf == max_fields)
                fail_msg("line %d: too many fields", r->lineno);
            r->f[r->nf++] = p;
            if (!tab)
                break;
            *tab = '\0';
            p = tab + 1;
        }
        return 1;
    }
    return 0;
}

/* Opens dir/name (dir ends in '/'), paths relative to the repository root. */
static inline FILE *tu_open_data(const char *dir, const char *name)
{
    char path[256];
    FILE *fp;
    snprintf(path, sizeof path, "%s%s", dir, name);
    fp = fopen(path, "r");
    if (!fp)
        fail_msg("cannot open %s: run the suite from the repository root", path);
    return fp;
}

/* Under user-mode emulation (qemu-user; tools/cross.sh sets FAAS_EMULATED)
 * a test that needs what the emulator does not pass on says so and skips. */
#define SKIP_EMULATED(why)                                                    \
    do {                                                                      \
        if (getenv("FAAS_EMULATED")) {                                        \
            print_message("[ SKIPPED  ] under emulation: %s\n", why);         \
            skip();                                                           \
        }                                                                     \
    } while (0)


/* Removes a directory of the suite's own (mkdtemp) and the files in it. */
static inline void tu_rmdir_files(const char *path)
{
    DIR *dir = opendir(path);
    struct dirent *de;
    char p[512];

    if (dir) {
        while ((de = readdir(dir)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            unlink(p);
        }
        closedir(dir);
    }
    rmdir(path);
}

#endif

/*
 * test_durable_async.c - async events on the durable engine (SQLite): what
 * on_accepted promises, recovery after a restart, parking at unregister,
 * drain, a poison event that kills its host, and the crash test: a child
 * host killed with SIGKILL at random moments, restarted on the same
 * database, then drained, with every confirmed event ended at least once.
 *
 * Each test works in a temporary directory (mkdtemp), removed after.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#if FAAS_WITH_SQLITE
#include <sqlite3.h>
#endif

/* ---- small handlers ---------------------------------------------------- */

static int g_ran;

static int count_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    g_ran++;
    *result = json_incref(event);
    return 0;
}

struct ends {
    int n, recovered, failed;
    char last_id[FAAS_REQUEST_ID_SIZE];
    uint32_t attempts_sum;
};

static void on_end(const struct faas_result *res, void *arg)
{
    struct ends *e = arg;
    e->n++;
    e->recovered += faas_result_recovered(res);
    e->failed += faas_result_status(res) != 0;
    snprintf(e->last_id, sizeof e->last_id, "%s", faas_result_request_id(res));
}

static void reg(struct faas_runtime *rt, const char *name, faas_handler_fn h, struct ends *e,
                uint32_t max_concurrency)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.max_concurrency = max_concurrency;
    ao.retry_base_ms = 1;
    ao.on_complete = on_end;
    ao.on_complete_arg = e;
    fo.async = &ao;
    assert_int_equal(faas_register(rt, name, h, &fo), 0);
}

struct accepts {
    int n, bad, inside;
    char ids[16][FAAS_REQUEST_ID_SIZE];
    int ids_seen[16];
};

static void on_acc(int rc, const char *request_id, void *arg)
{
    struct accepts *a = arg;
    int i;
    if (rc != 0)
        a->bad++;
    for (i = 0; i < 16; i++)
        if (strcmp(a->ids[i], request_id) == 0)
            a->ids_seen[i]++;
    a->n++;
}

static void invoke_n(struct faas_runtime *rt, const char *name, int n, struct accepts *acc)
{
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    int i;
    io.on_accepted = acc ? on_acc : NULL;
    io.accepted_arg = acc;
    for (i = 0; i < n; i++) {
        char id[FAAS_REQUEST_ID_SIZE];
        json_t *ev = json_pack("{s:i}", "n", i);
        int before = acc ? acc->n : 0;
        assert_int_equal(faas_invoke_async(rt, name, ev, &io, id), 0);
        json_decref(ev);
        if (acc) {
            assert_int_equal(acc->n, before); /* never inside the call */
            if (i < 16)
                strcpy(acc->ids[i], id);
        }
    }
}

/* ---- on_accepted ------------------------------------------------------- */

static void test_accept_memory(void **state)
{
    struct event_base *base;
    struct faas_runtime *rt;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct accepts acc;
    struct ends e;
    int i;
    (void)state;

    memset(&acc, 0, sizeof acc);
    memset(&e, 0, sizeof e);
    o.zygote = 0;
    tu_rt_new(&base, &rt, &o);
    reg(rt, "f", count_handler, &e, 0);
    invoke_n(rt, "f", 5, &acc);
    assert_true(tu_run_until(base, &e.n, 5, 5000));
    assert_int_equal(acc.n, 5);
    assert_int_equal(acc.bad, 0);
    for (i = 0; i < 5; i++)
        assert_int_equal(acc.ids_seen[i], 1);
    assert_int_equal(e.recovered, 0);
    tu_rt_free(&rt, &base);
}

#if FAAS_WITH_SQLITE

static char g_dir[64];
static char g_url[160];
static char g_db[128];

static int setup(void **state)
{
    (void)state;
    strcpy(g_dir, "/tmp/faas-dasync-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_db, sizeof g_db, "%s/state.db", g_dir);
    snprintf(g_url, sizeof g_url, "sqlite:%s", g_db);
    return 0;
}

static int teardown(void **state)
{
    char cmd[160];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void rt_open(struct event_base **base, struct faas_runtime **rt, const char *url)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    o.zygote = 0;
    o.durable = url;
    o.durable_sync = 0; /* NORMAL: the suite tests logic, not power loss */
    tu_rt_new(base, rt, &o);
}

/* A runtime on g_url with `name` registered; counters zeroed. */
static void start(struct event_base **base, struct faas_runtime **rt, const char *name,
                  struct accepts *acc, struct ends *e)
{
    memset(acc, 0, sizeof *acc);
    memset(e, 0, sizeof *e);
    g_ran = 0;
    rt_open(base, rt, g_url);
    reg(*rt, name, count_handler, e, 0);
}

static void test_accept_durable(void **state)
{
    struct event_base *base;
    struct faas_runtime *rt;
    struct accepts acc;
    struct ends e;
    int i;
    (void)state;

    start(&base, &rt, "f", &acc, &e);
    invoke_n(rt, "f", 10, &acc);
    assert_int_equal(g_ran, 0);
    assert_true(tu_run_until(base, &e.n, 10, 10000));
    assert_int_equal(acc.n, 10);
    assert_int_equal(acc.bad, 0);
    for (i = 0; i < 10; i++)
        assert_int_equal(acc.ids_seen[i], 1);
    assert_int_equal(g_ran, 10);
    assert_int_equal(e.recovered, 0); /* accepted by this process */
    assert_int_equal(e.failed, 0);
    tu_rt_free(&rt, &base);

    /* Everything ended: a new runtime on the file runs nothing. */
    g_ran = 0;
    memset(&e, 0, sizeof e);
    rt_open(&base, &rt, g_url);
    reg(rt, "f", count_handler, &e, 0);
    tu_run_for(base, 50);
    assert_int_equal(g_ran, 0);
    assert_int_equal(e.n, 0);
    tu_rt_free(&rt, &base);
}

/* Accepted, never run: the runtime is freed before the loop turns. The
 * acceptances are still reported, inside faas_runtime_free; the events run
 * after a restart, recovered. */
static void test_restart_recovers(void **state)
{
    struct event_base *base;
    struct faas_runtime *rt;
    struct accepts acc;
    struct ends e;
    (void)state;

    start(&base, &rt, "f", &acc, &e);
    invoke_n(rt, "f", 20, &acc);
    tu_rt_free(&rt, &base);
    assert_int_equal(acc.n, 20);
    assert_int_equal(acc.bad, 0);
    assert_int_equal(g_ran, 0);
    assert_int_equal(e.n, 0); /* no ending with FAAS_ECANCELED */

    rt_open(&base, &rt, g_url);
    tu_run_for(base, 20);
    assert_int_equal(g_ran, 0); /* waits for its function */
    reg(rt, "f", count_handler, &e, 0);
    assert_true(tu_run_until(base, &e.n, 20, 10000));
    assert_int_equal(g_ran, 20);
    assert_int_equal(e.recovered, 20);
    assert_int_equal(e.failed, 0);
    tu_rt_free(&rt, &base);
}

/* ---- unregister parks, registering again runs them ---------------------- */

static void test_unregister_parks(void **state)
{
    struct event_base *base;
    struct faas_runtime *rt;
    struct accepts acc;
    struct ends e;
    (void)state;

    start(&base, &rt, "g", &acc, &e);
    invoke_n(rt, "g", 8, &acc);
    /* Unregistered before anything ran: the events do not end. */
    assert_int_equal(faas_unregister(rt, "g"), 0);
    assert_true(tu_run_until(base, &acc.n, 8, 10000));
    assert_int_equal(acc.bad, 0);
    assert_int_equal(e.n, 0);
    assert_int_equal(g_ran, 0);
    reg(rt, "g", count_handler, &e, 0);
    assert_true(tu_run_until(base, &e.n, 8, 10000));
    assert_int_equal(g_ran, 8);
    assert_int_equal(e.recovered, 0); /* the same process accepted them */
    tu_rt_free(&rt, &base);
}

/* ---- drain ------------------------------------------------------------- */

struct drained {
    int called, rc;
    uint64_t remaining;
};

static void on_drained(int rc, uint64_t remaining, void *arg)
{
    struct drained *d = arg;
    d->called++;
    d->rc = rc;
    d->remaining = remaining;
}

static void test_drain_then_nothing_again(void **state)
{
    struct event_base *base;
    struct faas_runtime *rt;
    struct ends e, sink;
    struct drained d;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    (void)state;

    memset(&e, 0, sizeof e);
    memset(&sink, 0, sizeof sink);
    memset(&d, 0, sizeof d);
    g_ran = 0;
    rt_open(&base, &rt, g_url);
    reg(rt, "sink", count_handler, &sink, 0);
    fo.isolation = FAAS_ISOLATION_INLINE;
    ao.on_success = "sink";
    ao.on_complete = on_end;
    ao.on_complete_arg = &e;
    fo.async = &ao;
    assert_int_equal(faas_register(rt, "src", count_handler, &fo), 0);
    invoke_n(rt, "src", 30, NULL);
    assert_int_equal(faas_drain(rt, 20000, on_drained, &d), 0);
    assert_true(tu_run_until(base, &d.called, 1, 25000));
    assert_int_equal(d.rc, 0);
    assert_int_equal(e.n, 30);
    assert_int_equal(sink.n, 30); /* destinations ended too */
    tu_rt_free(&rt, &base);

    /* Nothing is left, destination events included. */
    g_ran = 0;
    memset(&e, 0, sizeof e);
    memset(&sink, 0, sizeof sink);
    rt_open(&base, &rt, g_url);
    reg(rt, "sink", count_handler, &sink, 0);
    reg(rt, "src", count_handler, &e, 0);
    tu_run_for(base, 50);
    assert_int_equal(g_ran, 0);
    assert_int_equal(e.n + sink.n, 0);
    tu_rt_free(&rt, &base);
}

/* ---- child hosts ------------------------------------------------------- */

/*
 * A child host reports on a pipe, one line per fact, each written whole
 * (shorter than PIPE_BUF):
 *   A n      the event n was accepted (on_accepted, rc 0)
 *   E n s r  the event n ended with status s, recovered r (on_complete)
 *   D n      the event n reached the dead letter
 *   S n      the success destination of n ran to its end
 *   R rc     the final drain's answer
 *   X n      the poison handler starts for n
 */
static int g_out = -1;
static unsigned char *g_failed_once;

static void say(const char *fmt, ...)
{
    char line[96];
    va_list ap;
    int len;
    va_start(ap, fmt);
    len = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (write(g_out, line, (size_t)len) != len)
        _exit(90);
}

static int n_of(json_t *event)
{
    json_t *n = json_object_get(event, "n");
    if (!n) /* a destination record: the event is requestPayload */
        n = json_object_get(json_object_get(event, "requestPayload"), "n");
    return (int)json_integer_value(n);
}

/* kind 0 succeeds, 1 fails once per process then succeeds, 2 always fails */
static int work_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    int n = n_of(event), kind = (int)json_integer_value(json_object_get(event, "k"));
    if (kind == 2)
        return faas_ctx_fail(ctx, "Poison", "always fails");
    if (kind == 1 && !g_failed_once[n]) {
        g_failed_once[n] = 1;
        return faas_ctx_fail(ctx, "Flaky", "fails once");
    }
    *result = json_pack("{s:i}", "n", n);
    return 0;
}

static int sink_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_pack("{s:i}", "n", n_of(event));
    return 0;
}

static void child_end(const struct faas_result *res, void *arg)
{
    json_t *p = faas_result_payload(res);
    (void)arg;
    /* The event is the result's for successes; failures carry it in the
     * request id map the parent keeps: the handler's n is in the payload
     * on success, and the dead letter line names the id. */
    if (faas_result_status(res) == 0)
        say("E %d 0 %d\n", (int)json_integer_value(json_object_get(p, "n")),
            faas_result_recovered(res));
    else
        say("F %s %d\n", faas_result_request_id(res), faas_result_status(res));
}

static void child_dead(const struct faas_result *res, void *arg)
{
    (void)arg;
    say("D %s\n", faas_result_request_id(res));
}

/* The destination's own end: success, or (it too can have its attempts
 * used up by kills while it runs) a failure. */
static void sink_end(const struct faas_result *res, void *arg)
{
    (void)arg;
    if (faas_result_status(res) == 0)
        say("S %d\n", (int)json_integer_value(json_object_get(faas_result_payload(res), "n")));
    else
        say("S %d\n", n_of(faas_result_event(res)));
}

static void child_acc(int rc, const char *request_id, void *arg)
{
    if (rc == 0)
        say("A %d %s\n", (int)(intptr_t)arg, request_id);
}

static void child_drained(int rc, uint64_t remaining, void *arg)
{
    struct event_base *base = arg;
    say("R %d %llu\n", rc, (unsigned long long)remaining);
    event_base_loopbreak(base);
}

#define CRASH_MAX_EVENTS 8192

/* The child host: accepts events [first, first + count) (count 0: none)
 * in bursts, runs until killed; with drain, drains and exits. */
static void child_host(int out, int first, int count, int drain)
{
    struct event_base *base = event_base_new();
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT, so = FAAS_ASYNC_OPTS_INIT;
    struct faas_runtime *rt = NULL;
    int i;

    g_out = out;
    g_failed_once = calloc(CRASH_MAX_EVENTS, 1);
    o.zygote = 0;
    o.durable = g_url;
    if (!base || !g_failed_once || faas_runtime_new(&rt, base, &o) != 0)
        _exit(91);
    fo.isolation = FAAS_ISOLATION_INLINE;
    so.on_complete = sink_end;
    fo.async = &so;
    if (faas_register(rt, "sink", sink_handler, &fo) != 0)
        _exit(92);
    ao.max_retries = 2;
    ao.retry_base_ms = 2;
    ao.on_success = "sink";
    ao.on_complete = child_end;
    ao.dead_letter = child_dead;
    fo.async = &ao;
    if (faas_register(rt, "work", work_handler, &fo) != 0)
        _exit(93);
    for (i = 0; i < count; i++) {
        struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
        int n = first + i;
        json_t *ev = json_pack("{s:i, s:i}", "n", n, "k", n % 7 == 3 ? 2 : n % 5 == 1 ? 1 : 0);
        char id[FAAS_REQUEST_ID_SIZE];
        io.on_accepted = child_acc;
        io.accepted_arg = (void *)(intptr_t)n;
        if (faas_invoke_async(rt, "work", ev, &io, id) != 0)
            _exit(94);
        json_decref(ev);
        if (i % 25 == 24) /* bursts: the loop turns between them */
            event_base_loop(base, EVLOOP_NONBLOCK);
    }
    if (drain && faas_drain(rt, 60000, child_drained, base) != 0)
        _exit(95);
    event_base_dispatch(base);
    if (!drain) /* a round that is killed never gets here */
        _exit(96);
    faas_runtime_free(rt);
    event_base_free(base);
    _exit(0);
}

/* What the parent learns from the children's lines. */
struct crash_log {
    int accepted[CRASH_MAX_EVENTS];   /* confirmed acceptances */
    char ids[CRASH_MAX_EVENTS][FAAS_REQUEST_ID_SIZE];
    int ok_ends[CRASH_MAX_EVENTS];    /* successful endings */
    int fail_ends[CRASH_MAX_EVENTS];  /* failed endings */
    int dead[CRASH_MAX_EVENTS];
    int sink[CRASH_MAX_EVENTS];
    int round_ends[CRASH_MAX_EVENTS]; /* endings in the current round */
    int in_flight[CRASH_MAX_EVENTS];  /* ended, but still kept at a kill */
    int twice_in_a_round;
    int drain_rc, drained;
    long lines;
};

static int id_index(struct crash_log *L, const char *id, int hi)
{
    int i;
    for (i = 0; i < hi; i++)
        if (L->accepted[i] && strcmp(L->ids[i], id) == 0)
            return i;
    return -1;
}

static void parse_line(struct crash_log *L, char *line, int hi)
{
    int n, s, r;
    char id[64];

    L->lines++;
    if (sscanf(line, "A %d %40s", &n, id) == 2 && n >= 0 && n < CRASH_MAX_EVENTS) {
        L->accepted[n]++;
        id[FAAS_REQUEST_ID_SIZE - 1] = '\0';
        memcpy(L->ids[n], id, FAAS_REQUEST_ID_SIZE);
    } else if (sscanf(line, "E %d %d %d", &n, &s, &r) == 3 && n >= 0 && n < CRASH_MAX_EVENTS) {
        L->ok_ends[n]++;
        if (L->round_ends[n]++)
            L->twice_in_a_round++;
    } else if (sscanf(line, "F %40s %d", id, &s) == 2) {
        n = id_index(L, id, hi);
        if (n >= 0) {
            L->fail_ends[n]++;
            if (L->round_ends[n]++)
                L->twice_in_a_round++;
        }
    } else if (sscanf(line, "D %40s", id) == 1) {
        n = id_index(L, id, hi);
        if (n >= 0)
            L->dead[n]++;
    } else if (sscanf(line, "S %d", &n) == 1 && n >= 0 && n < CRASH_MAX_EVENTS) {
        L->sink[n]++;
    } else if (sscanf(line, "R %d", &s) == 1) {
        L->drain_rc = s;
        L->drained = 1;
    }
}

/*
 * Runs one child round and reads its lines; kill_after > 0: SIGKILL once
 * that many lines were read (or the child went quiet for 300 ms). Returns
 * the child's wait status.
 */
static int run_round(struct crash_log *L, int first, int count, int drain, long kill_after)
{
    int fds[2], status = 0, hi = first + count;
    char buf[4096], line[128];
    size_t ll = 0;
    long seen = 0;
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_host(fds[1], first, count, drain);
    }
    close(fds[1]);
    memset(L->round_ends, 0, sizeof L->round_ends);
    for (;;) {
        struct pollfd p = { fds[0], POLLIN, 0 };
        ssize_t got, i;
        int pr = poll(&p, 1, kill_after > 0 ? 300 : 120000);
        if (pr == 0 && kill_after > 0) {
            kill(pid, SIGKILL);
            kill_after = 0;
            continue;
        }
        assert_true(pr > 0);
        got = read(fds[0], buf, sizeof buf);
        if (got <= 0)
            break;
        for (i = 0; i < got; i++) {
            if (buf[i] != '\n') {
                if (ll < sizeof line - 1)
                    line[ll++] = buf[i];
                continue;
            }
            line[ll] = '\0';
            ll = 0;
            parse_line(L, line, hi > CRASH_MAX_EVENTS ? CRASH_MAX_EVENTS : hi);
            if (kill_after > 0 && ++seen >= kill_after) {
                kill(pid, SIGKILL);
                kill_after = 0;
            }
        }
    }
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

/* After a kill: the events that ended in the round but are still in the
 * database were in flight (their end was not committed): only those may
 * end again. */
static void note_in_flight(struct crash_log *L, int hi)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n;

    assert_int_equal(sqlite3_open_v2(g_db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT 1 FROM events WHERE request_id = ?1", -1,
                                        &st, NULL),
                     SQLITE_OK);
    for (n = 0; n < hi && n < CRASH_MAX_EVENTS; n++) {
        if (!L->round_ends[n] || !L->accepted[n])
            continue;
        sqlite3_bind_text(st, 1, L->ids[n], -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            L->in_flight[n]++;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void assert_integrity(void)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(g_db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_crash_kill9(void **state)
{
    const int rounds = 25, per_round = 300;
    struct crash_log *L = calloc(1, sizeof *L);
    unsigned seed = 20261207u;
    int r, n, total = rounds * per_round, lost = 0, dupes = 0, kinds_ok = 1, status;
    int in_flight = 0, beyond = 0;
    (void)state;

    assert_non_null(L);
    for (r = 0; r < rounds; r++) {
        long kill_after;
        seed = seed * 1103515245u + 12345u;
        kill_after = 1 + (long)((seed >> 8) % (unsigned)(per_round * 3));
        status = run_round(L, r * per_round, per_round, 0, kill_after);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        note_in_flight(L, (r + 1) * per_round);
    }
    /* The last start: nothing new, drain what is left. */
    status = run_round(L, total, 0, 1, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(L->drained);
    assert_int_equal(L->drain_rc, 0);

    for (n = 0; n < total; n++) {
        int ends = L->ok_ends[n] + L->fail_ends[n];
        int kind = n % 7 == 3 ? 2 : n % 5 == 1 ? 1 : 0;
        if (!L->accepted[n])
            continue;
        if (ends == 0) {
            lost++;
            continue;
        }
        dupes += ends - 1;
        in_flight += L->in_flight[n];
        if (ends - 1 > L->in_flight[n])
            beyond++;
        /* An ending in flight at a kill may be replaced by another one
         * (a success cut short, then a failure when the kills used up the
         * attempts): at least one ending must have had all its effects. */
        if ((kind == 2 && (L->ok_ends[n] || !L->dead[n])) ||
            !((L->ok_ends[n] && L->sink[n]) || (L->fail_ends[n] && L->dead[n]))) {
            if (kinds_ok)
                print_message("event %d (kind %d): %d successes, %d failures, %d dead "
                              "letters, %d destinations\n",
                              n, kind, L->ok_ends[n], L->fail_ends[n], L->dead[n], L->sink[n]);
            kinds_ok = 0;
        }
    }
    print_message("crash test: %d rounds killed, %ld lines, %d lost, %d duplicated endings, "
                  "%d endings in flight at the kills\n",
                  rounds, L->lines, lost, dupes, in_flight);
    assert_int_equal(lost, 0);
    assert_true(kinds_ok);
    /* One process ends an event once; duplicates only come from a kill
     * between an ending's callbacks and its commit. */
    assert_int_equal(L->twice_in_a_round, 0);
    assert_int_equal(beyond, 0);
    assert_integrity();

    /* Drained and freed: a new host runs nothing again. */
    {
        struct event_base *base;
        struct faas_runtime *rt;
        struct ends e, s;
        memset(&e, 0, sizeof e);
        memset(&s, 0, sizeof s);
        g_ran = 0;
        rt_open(&base, &rt, g_url);
        reg(rt, "sink", count_handler, &s, 0);
        reg(rt, "work", count_handler, &e, 0);
        tu_run_for(base, 50);
        assert_int_equal(g_ran, 0);
        tu_rt_free(&rt, &base);
    }
    free(L);
}

/* ---- a poison event that kills its host -------------------------------- */

static int poison_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)result;
    say("X %d\n", n_of(event));
    raise(SIGKILL);
    return 0;
}

static void poison_dead(const struct faas_result *res, void *arg)
{
    (void)arg;
    say("P %d %u\n", faas_result_status(res), (unsigned)faas_result_recovered(res));
}

static void poison_child(int out, int accept, int drain)
{
    struct event_base *base = event_base_new();
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    struct faas_runtime *rt = NULL;

    g_out = out;
    o.zygote = 0;
    o.durable = g_url;
    if (!base || faas_runtime_new(&rt, base, &o) != 0)
        _exit(91);
    fo.isolation = FAAS_ISOLATION_INLINE;
    ao.max_retries = 2;
    ao.dead_letter = poison_dead;
    fo.async = &ao;
    if (faas_register(rt, "poison", poison_handler, &fo) != 0)
        _exit(92);
    if (accept) {
        json_t *ev = json_pack("{s:i}", "n", 7);
        char id[FAAS_REQUEST_ID_SIZE];
        if (faas_invoke_async(rt, "poison", ev, NULL, id) != 0)
            _exit(93);
        json_decref(ev);
    }
    if (drain && faas_drain(rt, 10000, child_drained, base) != 0)
        _exit(95);
    event_base_dispatch(base);
    faas_runtime_free(rt);
    event_base_free(base);
    _exit(0);
}

static void test_poison_kills_host(void **state)
{
    int starts = 0, dead = 0, dead_status = 0, round, status;
    (void)state;

    for (round = 0; round < 6 && !dead; round++) {
        int fds[2];
        char buf[512];
        ssize_t got;
        size_t used = 0;
        pid_t pid;

        assert_int_equal(pipe(fds), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            poison_child(fds[1], round == 0, 1);
        }
        close(fds[1]);
        while ((got = read(fds[0], buf + used, sizeof buf - 1 - used)) > 0)
            used += (size_t)got;
        buf[used] = '\0';
        close(fds[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        {
            char *p = buf;
            while (p && *p) {
                int a, b;
                if (p[0] == 'X')
                    starts++;
                if (sscanf(p, "P %d %d", &a, &b) == 2) {
                    dead++;
                    dead_status = a;
                }
                p = strchr(p, '\n');
                if (p)
                    p++;
            }
        }
    }
    /* max_retries 2: three starts, each killing the host, then the dead
     * letter without a fourth. */
    assert_int_equal(starts, 3);
    assert_int_equal(dead, 1);
    assert_int_equal(dead_status, FAAS_ECRASHED);
}

#endif /* FAAS_WITH_SQLITE */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_memory),
#if FAAS_WITH_SQLITE
        cmocka_unit_test_setup_teardown(test_accept_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unregister_parks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_then_nothing_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poison_kills_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_kill9, setup, teardown),
#endif
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

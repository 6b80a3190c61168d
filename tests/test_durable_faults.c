/*
 * test_durable_faults.c - the SQLite durable engine under hostile
 * conditions: refused at open (a database locked by this process or held
 * by another one, a file that is not a database, a corrupt one, another
 * schema version, a path that cannot be created), a host killed with
 * SIGKILL at random moments (nothing confirmed is lost, the file stays
 * sound), and a full disk (max_page_count, and a file size limit in a
 * child): accepts refused, endings held until they commit, the log records
 * and the Prometheus figures that say so.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "tu_durable.h"

#if FAAS_WITH_SQLITE
#include <sqlite3.h>

/* ---- refusals at open -------------------------------------------------------- */

static void expect_refused(struct fx *f, const char *why)
{
    struct faas_durable *d = NULL;
    f->log_line[0] = '\0';
    assert_int_equal(faas_durable_open(&d, f->rt, f->url, 1, NULL), FAAS_EUNAVAILABLE);
    assert_null(d);
    assert_string_equal(f->log_action, "durable");
    if (!strstr(f->log_line, why))
        fail_msg("log line \"%s\" does not say \"%s\"", f->log_line, why);
}

static void test_locked_by_this_process(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 1);
    struct faas_runtime *rt2 = NULL;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;

    expect_refused(f, "locked");
    /* a second runtime on the same file fails the same way */
    o.zygote = 0;
    o.durable = f->url;
    assert_int_equal(faas_runtime_new(&rt2, f->base, &o), FAAS_EUNAVAILABLE);
    assert_null(rt2);
    faas_durable_close(d);
    /* released at close */
    d = open_ok(f, 1);
    faas_durable_close(d);
}

static void test_locked_by_another_process(void **state)
{
    struct fx *f = *state;
    int ready[2];
    char c;
    pid_t pid;
    int st;
    struct faas_durable *d;

    assert_int_equal(pipe(ready), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* another program holding the database in a write transaction */
        sqlite3 *db;
        close(ready[0]);
        if (sqlite3_open(f->path, &db) != SQLITE_OK ||
            sqlite3_exec(db, "PRAGMA journal_mode=WAL; BEGIN EXCLUSIVE;"
                             "CREATE TABLE t(x); INSERT INTO t VALUES (1);",
                         NULL, NULL, NULL) != SQLITE_OK)
            _exit(1);
        if (write(ready[1], "r", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    /* fails at once (busy timeout 0), does not wait for it */
    {
        uint64_t t0 = tu_now_ms();
        expect_refused(f, "locked");
        assert_true(tu_now_ms() - t0 < 5000);
    }
    /* killed holding it: the lock goes with the process */
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    d = open_ok(f, 1);
    faas_durable_close(d);
}

static void write_file(const char *path, const void *data, size_t n, off_t at, int trunc)
{
    int fd = open(path, O_WRONLY | O_CREAT | (trunc ? O_TRUNC : 0), 0600);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, n, at), (ssize_t)n);
    close(fd);
}

static void test_not_a_database(void **state)
{
    struct fx *f = *state;
    char junk[8192];
    size_t i;

    for (i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 7 + 3);
    write_file(f->path, junk, sizeof junk, 0, 1);
    expect_refused(f, "not a database");
}

static void test_corrupt_database(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 1);
    struct done_log log = { 0 };
    struct done_arg a = { &log, 0 };
    char id[40], big[2000], junk[4096 * 4];
    int i;

    memset(big, 'x', sizeof big - 3);
    big[0] = '"';
    big[sizeof big - 3] = '"';
    big[sizeof big - 2] = '\0';
    for (i = 0; i < 40; i++) {
        struct faas_durable_event ev;
        snprintf(id, sizeof id, "c-%02d", i);
        ev = mkevent(id, "fn", big, i);
        assert_int_equal(faas_durable_event_put(d, &ev, on_done, &a), 0);
    }
    faas_durable_close(d); /* checkpoints the WAL into the file */
    assert_int_equal(log.n, 40);
    /* pages 2..5 overwritten: the header still says SQLite */
    memset(junk, 0xa5, sizeof junk);
    write_file(f->path, junk, sizeof junk, 4096, 0);
    expect_refused(f, "corrupt");
}

static void test_other_schema_version(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 1);
    sqlite3 *db;

    faas_durable_close(d);
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE schema_version SET version = 7", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    expect_refused(f, "schema version 7");
}

static void test_cannot_create(void **state)
{
    struct fx *f = *state;
    snprintf(f->url, sizeof f->url, "sqlite:%s/no/such/dir/x.db", f->dir);
    expect_refused(f, "cannot be opened");
}

/* ---- kill -9 -------------------------------------------------------------------- */

#define ENDED 0x80000000u

static struct faas_durable *child_d;
static int child_fd;

static void child_confirm(uint32_t v)
{
    if (write(child_fd, &v, sizeof v) != (ssize_t)sizeof v)
        _exit(3);
}

static void child_end_done(int rc, void *arg)
{
    if (rc == 0)
        child_confirm((uint32_t)(uintptr_t)arg | ENDED);
}

static void child_put_done(int rc, void *arg)
{
    uint32_t n = (uint32_t)(uintptr_t)arg;
    char id[FAAS_REQUEST_ID_SIZE];

    if (rc != 0)
        _exit(2);
    child_confirm(n);
    if (n % 3 == 0) {
        snprintf(id, sizeof id, "k-%08u", n);
        if (faas_durable_event_end(child_d, id, NULL, child_end_done, arg) != 0)
            _exit(2);
    }
}

/* A host accepting events as fast as they commit, ending every third. */
static void child_host(const char *url, uint32_t first)
{
    struct event_base *base = event_base_new();
    struct faas_runtime *rt = NULL;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    char id[FAAS_REQUEST_ID_SIZE];
    uint32_t n = first;
    int j;

    o.zygote = 0;
    if (!base || faas_runtime_new(&rt, base, &o) != 0 ||
        faas_durable_open(&child_d, rt, url, 1, "child") != 0)
        _exit(1);
    for (;;) {
        for (j = 0; j < 50; j++, n++) {
            struct faas_durable_event ev;
            snprintf(id, sizeof id, "k-%08u", n);
            ev = mkevent(id, "fn", "{\"payload\":\"0123456789abcdef\"}", n);
            if (faas_durable_event_put(child_d, &ev, child_put_done, (void *)(uintptr_t)n) != 0)
                _exit(1);
        }
        event_base_loop(base, EVLOOP_ONCE);
    }
}

struct confirmed {
    unsigned char *put, *ended; /* by event number */
    uint32_t max;
};

static int check_kept(const struct faas_durable_event *ev, void *arg)
{
    struct confirmed *c = arg;
    unsigned n;
    assert_int_equal(sscanf(ev->request_id, "k-%08u", &n), 1);
    assert_true(n < c->max);
    /* an ending confirmed is never undone */
    if (c->ended[n])
        fail_msg("event %u came back after its end was confirmed", n);
    c->put[n] = 2; /* seen */
    return 0;
}

static void test_killed_host_loses_nothing_confirmed(void **state)
{
    struct fx *f = *state;
    struct confirmed c;
    uint32_t first = 0, v, n;
    int round, fds[2], st, confirmed_total = 0;
    unsigned seed = (unsigned)getpid();

    c.max = 1u << 22;
    c.put = calloc(c.max, 1);
    c.ended = calloc(c.max, 1);
    assert_non_null(c.put);
    assert_non_null(c.ended);
    for (round = 0; round < 4; round++) {
        struct faas_durable *d;
        char check[32];
        pid_t pid;
        uint64_t kill_at;

        assert_int_equal(pipe(fds), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_fd = fds[1];
            child_host(f->url, first);
        }
        close(fds[1]);
        /* confirmations until a random moment, then SIGKILL; what the
         * pipe still holds was confirmed before the kill */
        kill_at = tu_now_ms() + 30 + (uint64_t)(rand_r(&seed) % 200);
        while (tu_now_ms() < kill_at && read(fds[0], &v, sizeof v) == (ssize_t)sizeof v) {
            n = v & ~ENDED;
            assert_true(n < c.max);
            if (v & ENDED)
                c.ended[n] = 1;
            else
                c.put[n] = 1;
            confirmed_total++;
        }
        kill(pid, SIGKILL);
        while (read(fds[0], &v, sizeof v) == (ssize_t)sizeof v) {
            n = v & ~ENDED;
            if (v & ENDED)
                c.ended[n] = 1;
            else
                c.put[n] = 1;
            confirmed_total++;
        }
        close(fds[0]);
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFSIGNALED(st)); /* it ran until killed */

        d = open_ok(f, 1);
        assert_int_equal(faas_durable_events_load(d, check_kept, &c), 0);
        for (n = first; n < c.max && n < first + 2000000u; n++) {
            /* every third had its end queued: committed, perhaps, and
             * killed before it was confirmed */
            if (c.put[n] == 1 && n % 3 != 0)
                fail_msg("round %d: event %u was confirmed and is lost", round, n);
            if (c.put[n] == 2)
                c.put[n] = 1;
        }
        faas_durable_close(d);
        {
            sqlite3 *db;
            assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
            sqlite3_stmt *q;
            assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, NULL),
                             SQLITE_OK);
            assert_int_equal(sqlite3_step(q), SQLITE_ROW);
            snprintf(check, sizeof check, "%s", (const char *)sqlite3_column_text(q, 0));
            sqlite3_finalize(q);
            sqlite3_close(db);
            assert_string_equal(check, "ok");
        }
        first += 1000000u;
    }
    assert_true(confirmed_total > 0);
    free(c.put);
    free(c.ended);
}

/* ---- a full disk --------------------------------------------------------------- */

/* An event of about `size` bytes: bigger than a page, so it needs new ones. */
static struct faas_durable_event big_event(const char *id, char *buf, size_t size)
{
    memset(buf, 'x', size - 1);
    buf[0] = '"';
    buf[size - 2] = '"';
    buf[size - 1] = '\0';
    return mkevent(id, "fn", buf, 1);
}

static uint64_t metric_value(struct faas_runtime *rt, const char *line_start)
{
    struct evbuffer *b = evbuffer_new();
    char *text, *p;
    uint64_t v = UINT64_MAX;
    size_t n;

    assert_int_equal(faas_metrics_write(rt, b), 0);
    n = evbuffer_get_length(b);
    text = calloc(1, n + 1);
    assert_non_null(text);
    evbuffer_remove(b, text, n);
    evbuffer_free(b);
    for (p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, line_start, strlen(line_start)) == 0 && p[strlen(line_start)] == ' ') {
            v = strtoull(p + strlen(line_start) + 1, NULL, 10);
            break;
        }
    free(text);
    return v;
}

static void test_disk_full(void **state)
{
    struct fx *f = *state;
    struct faas_runtime *rt = NULL;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_durable *d;
    static struct done_log log;
    struct done_arg a[8];
    static char buf[3][20000];
    struct faas_durable_event ev;
    struct faas_durable_stats st;
    int i;

    memset(&log, 0, sizeof log);
    for (i = 0; i < 8; i++)
        a[i] = (struct done_arg){ &log, i };
    o.zygote = 0;
    o.durable = f->url;
    o.log = on_log;
    o.log_arg = f;
    assert_int_equal(faas_runtime_new(&rt, f->base, &o), 0);
    d = rt->durable;
    ev = mkevent("kept", "fn", "{}", 1);
    assert_int_equal(faas_durable_event_put(d, &ev, on_done, &a[0]), 0);
    assert_true(tu_run_until(f->base, &log.n, 1, 10000));
    assert_int_equal(log.rc[0], 0);

    /* the file may not grow any more */
    assert_int_equal(faas_durable_sqlite_exec(d, "PRAGMA max_page_count = 1"), 0);
    /* an accept is refused */
    ev = big_event("refused", buf[0], sizeof buf[0]);
    assert_int_equal(faas_durable_event_put(d, &ev, on_done, &a[1]), 0);
    assert_true(tu_run_until(f->base, &log.n, 2, 10000));
    assert_int_equal(log.rc[1], FAAS_EUNAVAILABLE);
    /* said once, when it started failing */
    assert_string_equal(f->log_action, "durable");
    assert_non_null(strstr(f->log_line, "cannot commit (database or disk is full)"));
    assert_int_equal(f->nlogs, 1);
    faas_durable_stats_get(d, &st);
    assert_int_equal(st.refused, 1);
    assert_int_equal(metric_value(rt, "faas_durable_refused_total"), 1);

    /* an ending whose destination needs room waits, retried, and so does
     * what comes after it; an accept queued meanwhile is refused */
    ev = big_event("next", buf[1], sizeof buf[1]);
    assert_int_equal(faas_durable_event_end(d, "kept", &ev, on_done, &a[2]), 0);
    assert_int_equal(faas_durable_schedule_set(d, "s", 42, on_done, &a[3]), 0);
    ev = big_event("refused-2", buf[2], sizeof buf[2]);
    assert_int_equal(faas_durable_event_put(d, &ev, on_done, &a[4]), 0);
    assert_true(tu_run_until(f->base, &log.n, 3, 10000));
    assert_int_equal(log.tag[2], 4);
    assert_int_equal(log.rc[2], FAAS_EUNAVAILABLE);
    /* a few backoffs later, still waiting: counted as pending */
    tu_run_for(f->base, 100);
    assert_int_equal(log.n, 3);
    faas_durable_stats_get(d, &st);
    assert_int_equal(st.pending, 2);
    assert_int_equal(metric_value(rt, "faas_durable_pending"), 2);

    /* room again: both commit, in order */
    assert_int_equal(faas_durable_sqlite_exec(d, "PRAGMA max_page_count = 1000000"), 0);
    assert_true(tu_run_until(f->base, &log.n, 5, 10000));
    assert_int_equal(log.tag[3], 2);
    assert_int_equal(log.rc[3], 0);
    assert_int_equal(log.tag[4], 3);
    assert_int_equal(log.rc[4], 0);
    /* failing since the refusal of "refused" (the first commit after it
     * failed too), and committing again now: one record each */
    assert_int_equal(f->nlogs, 2);
    assert_non_null(strstr(f->log_line, "commits again"));
    assert_int_equal(metric_value(rt, "faas_durable_pending"), 0);
    assert_true(metric_value(rt, "faas_durable_commit_seconds_count") >= 2);
    faas_runtime_free(rt);

    d = open_ok(f, 1);
    {
        static struct seen s;
        memset(&s, 0, sizeof s);
        assert_int_equal(faas_durable_events_load(d, each_event, &s), 0);
        assert_int_equal(s.n, 1);
        assert_string_equal(s.ev[0].id, "next");
    }
    faas_durable_close(d);
}

static void test_disk_full_at_close(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 1);
    struct done_log log = { 0 };
    struct done_arg a = { &log, 0 };
    static char buf[20000];
    struct faas_durable_event ev = mkevent("e", "fn", "{}", 1);

    assert_int_equal(faas_durable_event_put(d, &ev, on_done, &a), 0);
    assert_true(tu_run_until(f->base, &log.n, 1, 10000));
    assert_int_equal(faas_durable_sqlite_exec(d, "PRAGMA max_page_count = 1"), 0);
    ev = big_event("n", buf, sizeof buf);
    assert_int_equal(faas_durable_event_end(d, "e", &ev, on_done, &a), 0);
    tu_run_for(f->base, 30);
    assert_int_equal(log.n, 1);
    /* still no room at close: given up, its completion runs inside */
    faas_durable_close(d);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.rc[1], FAAS_ECANCELED);
    d = open_ok(f, 1);
    assert_int_equal(count_events(d), 1); /* "e" stays for the next start */
    faas_durable_close(d);
}

/* A file size limit (RLIMIT_FSIZE) in a child host: the writes fail with a
 * real I/O error, as on a full disk. Exit codes say what went wrong. */
static int fsize_rc;
static int fsize_done;

static void fsize_cb(int rc, void *arg)
{
    (void)arg;
    fsize_rc = rc;
    fsize_done++;
}

static void child_fsize(const char *url)
{
    struct event_base *base = event_base_new();
    struct faas_runtime *rt = NULL;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_durable *d = NULL;
    struct rlimit rl;
    static char buf[16384];
    char id[FAAS_REQUEST_ID_SIZE];
    int i;

    o.zygote = 0;
    signal(SIGXFSZ, SIG_IGN);
    if (!base || faas_runtime_new(&rt, base, &o) != 0 ||
        faas_durable_open(&d, rt, url, 1, "child") != 0)
        _exit(10);
    rl.rlim_cur = 256 * 1024;
    rl.rlim_max = RLIM_INFINITY;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        _exit(11);
    for (i = 0; i < 200; i++) {
        struct faas_durable_event ev;
        snprintf(id, sizeof id, "f-%d", i);
        ev = big_event(id, buf, sizeof buf);
        fsize_done = 0;
        if (faas_durable_event_put(d, &ev, fsize_cb, NULL) != 0 ||
            !tu_run_until(base, &fsize_done, 1, 10000))
            _exit(12);
        if (fsize_rc == FAAS_EUNAVAILABLE)
            break;
        if (fsize_rc != 0)
            _exit(13);
    }
    if (i == 200)
        _exit(14); /* the limit was never reached */
    rl.rlim_cur = RLIM_INFINITY;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        _exit(15);
    /* room again: the engine goes on */
    {
        struct faas_durable_event ev = big_event("after", buf, sizeof buf);
        fsize_done = 0;
        if (faas_durable_event_put(d, &ev, fsize_cb, NULL) != 0 ||
            !tu_run_until(base, &fsize_done, 1, 10000) || fsize_rc != 0)
            _exit(16);
    }
    faas_durable_close(d);
    faas_runtime_free(rt);
    event_base_free(base);
    _exit(0);
}

static void test_file_size_limit(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d;
    pid_t pid = fork();
    int st, n;

    assert_true(pid >= 0);
    if (pid == 0)
        child_fsize(f->url);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* what was kept before the limit, and after it, is there and sound */
    d = open_ok(f, 1);
    n = count_events(d);
    assert_true(n >= 2);
    faas_durable_close(d);
}


#endif /* FAAS_WITH_SQLITE */

int main(void)
{
#if FAAS_WITH_SQLITE
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_locked_by_this_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_by_another_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cannot_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_host_loses_nothing_confirmed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_at_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_size_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#else
    return 0; /* built without the SQLite engine: nothing to test */
#endif
}

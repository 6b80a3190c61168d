/*
 * test_durable.c - the durable engine (durable.h) through the real SQLite
 * engine on a database in a fresh temporary directory: every operation,
 * what a reopen loads, completion order and group commit, the refusals at
 * open (a database locked by this process or by another one, a file that
 * is not a database, a corrupt one, another schema version, bad URLs), and
 * the runtime's own engine (faas_runtime_opts.durable).
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "durable_engine.h"
#include "faas_int.h"
#include "testutil.h"

#if FAAS_WITH_SQLITE
#include <sqlite3.h>
#endif

/* ---- fixture: a runtime on its own base, a temporary directory -------- */

struct fx {
    struct event_base *base;
    struct faas_runtime *rt;
    char dir[64];
    char url[160];  /* "sqlite:DIR/state.db" */
    char path[128]; /* DIR/state.db */
    char log_action[32];
    char log_line[512];
    int nlogs;
};

static void on_log(const struct faas_log_record *rec, void *arg)
{
    struct fx *f = arg;
    if (rec->kind != FAAS_LOG_WARNING)
        return;
    f->nlogs++;
    snprintf(f->log_action, sizeof f->log_action, "%s", rec->action ? rec->action : "");
    snprintf(f->log_line, sizeof f->log_line, "%s", rec->line ? rec->line : "");
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;

    assert_non_null(f);
    strcpy(f->dir, "/tmp/faas-durable-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
    snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
    o.zygote = 0;
    o.log = on_log;
    o.log_arg = f;
    tu_rt_new(&f->base, &f->rt, &o);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    DIR *dir;
    struct dirent *de;
    char p[512];

    tu_rt_free(&f->rt, &f->base);
    dir = opendir(f->dir);
    if (dir) {
        while ((de = readdir(dir)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", f->dir, de->d_name);
            unlink(p);
        }
        closedir(dir);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

#if FAAS_WITH_SQLITE
/* Completions, in the order they ran. */
#define MAXDONE 4096
struct done_log {
    int n;
    int rc[MAXDONE];
    int tag[MAXDONE];
};

struct done_arg {
    struct done_log *log;
    int tag;
};

static void on_done(int rc, void *arg)
{
    struct done_arg *a = arg;
    struct done_log *l = a->log;
    assert_true(l->n < MAXDONE);
    l->rc[l->n] = rc;
    l->tag[l->n] = a->tag;
    l->n++;
}

static struct faas_durable *open_ok(struct fx *f, int sync)
{
    struct faas_durable *d = NULL;
    assert_int_equal(faas_durable_open(&d, f->rt, f->url, sync, "node-a"), 0);
    assert_non_null(d);
    return d;
}

static struct faas_durable_event mkevent(const char *id, const char *fn, const char *event,
                                         int64_t accepted_ms)
{
    struct faas_durable_event ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.request_id, sizeof ev.request_id, "%s", id);
    ev.function = fn;
    ev.event = event;
    ev.event_len = strlen(event);
    ev.accepted_ms = accepted_ms;
    return ev;
}

/* What a load saw: copies of the fields. */
struct seen_event {
    char id[FAAS_REQUEST_ID_SIZE];
    char function[64], event[256], cc[64], trace[64], idem[64], origin[64];
    int has_cc, has_trace, has_idem;
    uint32_t timeout_ms, attempts;
    int64_t accepted_ms, due_ms;
};

struct seen {
    int n;
    int stop_at; /* return 7 from this row on; 0 = never */
    struct seen_event ev[64];
};

static void copy_opt(char *dst, size_t size, const char *s, int *has)
{
    *has = s != NULL;
    snprintf(dst, size, "%s", s ? s : "");
}

static int each_event(const struct faas_durable_event *ev, void *arg)
{
    struct seen *s = arg;
    struct seen_event *e = &s->ev[s->n];
    int dummy;

    if (s->stop_at && s->n + 1 >= s->stop_at)
        return 7;
    assert_true(s->n < 64);
    snprintf(e->id, sizeof e->id, "%s", ev->request_id);
    copy_opt(e->function, sizeof e->function, ev->function, &dummy);
    assert_int_equal(ev->event_len, strlen(ev->event));
    copy_opt(e->event, sizeof e->event, ev->event, &dummy);
    copy_opt(e->cc, sizeof e->cc, ev->client_context, &e->has_cc);
    copy_opt(e->trace, sizeof e->trace, ev->trace_id, &e->has_trace);
    copy_opt(e->idem, sizeof e->idem, ev->idem_key, &e->has_idem);
    copy_opt(e->origin, sizeof e->origin, ev->origin, &dummy);
    e->timeout_ms = ev->timeout_ms;
    e->attempts = ev->attempts;
    e->accepted_ms = ev->accepted_ms;
    e->due_ms = ev->due_ms;
    s->n++;
    return 0;
}

static int count_each(const struct faas_durable_event *ev, void *arg)
{
    (void)ev;
    (*(int *)arg)++;
    return 0;
}

static int count_events(struct faas_durable *d)
{
    int n = 0;
    assert_int_equal(faas_durable_events_load(d, count_each, &n), 0);
    return n;
}

#endif /* FAAS_WITH_SQLITE */

/* ---- URLs ---------------------------------------------------------------- */

static void test_null_url_is_memory(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = (struct faas_durable *)f; /* must be overwritten */
    struct faas_durable_stats st;

    assert_int_equal(faas_durable_open(&d, f->rt, NULL, 1, NULL), 0);
    assert_null(d);
    faas_durable_close(NULL);
    memset(&st, 0xff, sizeof st);
    faas_durable_stats_get(NULL, &st);
    assert_int_equal(st.commits, 0);
    assert_int_equal(st.pending, 0);
    assert_null(f->rt->durable);
}

static void test_bad_urls(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = NULL;

    assert_int_equal(faas_durable_open(&d, f->rt, "redis://127.0.0.1:6379", 1, NULL),
                     FAAS_EINVAL);
    assert_null(d);
    assert_string_equal(f->log_action, "durable");
    assert_non_null(strstr(f->log_line, "no Redis engine"));
    assert_int_equal(faas_durable_open(&d, f->rt, "postgres://x", 1, NULL), FAAS_EINVAL);
    assert_non_null(strstr(f->log_line, "not a durable engine"));
    assert_int_equal(faas_durable_open(&d, f->rt, "", 1, NULL), FAAS_EINVAL);
#if FAAS_WITH_SQLITE
    assert_int_equal(faas_durable_open(&d, f->rt, "sqlite:", 1, NULL), FAAS_EINVAL);
    assert_non_null(strstr(f->log_line, "names no database"));
    assert_int_equal(faas_durable_open(&d, f->rt, f->url, 1, ""), FAAS_EINVAL);
#else
    assert_int_equal(faas_durable_open(&d, f->rt, f->url, 1, NULL), FAAS_EINVAL);
    assert_non_null(strstr(f->log_line, "no SQLite engine"));
#endif
    assert_null(d);
    assert_int_equal(faas_durable_open(NULL, f->rt, f->url, 1, NULL), FAAS_EINVAL);
    assert_int_equal(faas_durable_open(&d, NULL, f->url, 1, NULL), FAAS_EINVAL);
}

#if FAAS_WITH_SQLITE

/* ---- events --------------------------------------------------------------- */

static void test_events_roundtrip(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 1);
    struct done_log log = { 0 };
    struct done_arg a[8];
    struct faas_durable_event e1 = mkevent("id-1", "fa", "{\"n\":1}", 1000);
    struct faas_durable_event e2 = mkevent("id-2", "fb", "[1,2,3]", 500);
    struct faas_durable_event e3 = mkevent("id-3", "fa", "null", 2000);
    struct faas_durable_event nx = mkevent("id-4", "dest", "{\"next\":true}", 3000);
    struct seen s = { 0 };
    int i;

    for (i = 0; i < 8; i++)
        a[i] = (struct done_arg){ &log, i };
    e1.client_context = "{\"c\":1}";
    e1.trace_id = "Root=1-abc";
    e1.idem_key = "\"k1\"";
    e1.timeout_ms = 1500;
    e1.due_ms = 1200;
    e2.origin = "node-b";
    assert_int_equal(strcmp(faas_durable_node(d), "node-a"), 0);
    assert_int_equal(faas_durable_event_put(d, &e1, on_done, &a[0]), 0);
    assert_int_equal(faas_durable_event_put(d, &e2, on_done, &a[1]), 0);
    assert_int_equal(faas_durable_event_put(d, &e3, on_done, &a[2]), 0);
    assert_int_equal(faas_durable_event_attempt(d, "id-1", 2, on_done, &a[3]), 0);
    assert_int_equal(faas_durable_event_retry(d, "id-2", 99999, on_done, &a[4]), 0);
    assert_int_equal(faas_durable_event_end(d, "id-3", &nx, on_done, &a[5]), 0);
    /* the same request id again: refused by the engine, the rest commits */
    assert_int_equal(faas_durable_event_put(d, &e1, on_done, &a[6]), 0);
    /* never inside the call */
    assert_int_equal(log.n, 0);
    assert_true(tu_run_until(f->base, &log.n, 7, 10000));
    for (i = 0; i < 7; i++)
        assert_int_equal(log.tag[i], i);
    for (i = 0; i < 6; i++)
        assert_int_equal(log.rc[i], 0);
    assert_int_equal(log.rc[6], FAAS_EEXIST);
    faas_durable_close(d);
    assert_int_equal(log.n, 7);

    d = open_ok(f, 1);
    assert_int_equal(faas_durable_events_load(d, each_event, &s), 0);
    assert_int_equal(s.n, 3);
    /* oldest acceptance first */
    assert_string_equal(s.ev[0].id, "id-2");
    assert_string_equal(s.ev[0].function, "fb");
    assert_string_equal(s.ev[0].event, "[1,2,3]");
    assert_string_equal(s.ev[0].origin, "node-b");
    assert_int_equal(s.ev[0].due_ms, 99999);
    assert_false(s.ev[0].has_cc || s.ev[0].has_trace || s.ev[0].has_idem);
    assert_string_equal(s.ev[1].id, "id-1");
    assert_string_equal(s.ev[1].event, "{\"n\":1}");
    assert_string_equal(s.ev[1].cc, "{\"c\":1}");
    assert_string_equal(s.ev[1].trace, "Root=1-abc");
    assert_string_equal(s.ev[1].idem, "\"k1\"");
    assert_string_equal(s.ev[1].origin, "node-a"); /* NULL origin: this node */
    assert_int_equal(s.ev[1].timeout_ms, 1500);
    assert_int_equal(s.ev[1].attempts, 2);
    assert_int_equal(s.ev[1].accepted_ms, 1000);
    assert_int_equal(s.ev[1].due_ms, 1200);
    assert_string_equal(s.ev[2].id, "id-4"); /* id-3 ended, its next put */
    assert_string_equal(s.ev[2].function, "dest");
    /* a callback's non-zero return stops the load and is returned */
    memset(&s, 0, sizeof s);
    s.stop_at = 2;
    assert_int_equal(faas_durable_events_load(d, each_event, &s), 7);
    assert_int_equal(s.n, 1);
    faas_durable_close(d);
}

/* ---- records and schedules ------------------------------------------------- */

struct seen_rec {
    int n;
    uint64_t seq[16];
    char key[16][16];
    int has_key[16];
    char rec[16][64];
    int64_t arrived[16];
};

static int each_record(const struct faas_durable_record *rec, void *arg)
{
    struct seen_rec *s = arg;
    assert_true(s->n < 16);
    assert_string_equal(rec->mapping, "stream:orders fn");
    assert_int_equal(rec->record_len, strlen(rec->record));
    s->seq[s->n] = rec->seq;
    copy_opt(s->key[s->n], sizeof s->key[0], rec->key, &s->has_key[s->n]);
    snprintf(s->rec[s->n], sizeof s->rec[0], "%s", rec->record);
    s->arrived[s->n] = rec->arrived_ms;
    s->n++;
    return 0;
}

static void test_records_and_schedules(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 0);
    struct done_log log = { 0 };
    struct done_arg a = { &log, 0 };
    struct faas_durable_record r;
    struct seen_rec s = { 0 };
    int64_t fired = 0;
    uint64_t seq;
    char text[32];

    for (seq = 1; seq <= 5; seq++) {
        memset(&r, 0, sizeof r);
        r.mapping = seq == 3 ? "queue:other fn" : "stream:orders fn";
        r.seq = seq * 10;
        r.key = seq % 2 ? "p1" : NULL;
        snprintf(text, sizeof text, "{\"r\":%llu}", (unsigned long long)seq);
        r.record = text;
        r.record_len = strlen(text);
        r.arrived_ms = (int64_t)seq * 100;
        assert_int_equal(faas_durable_record_put(d, &r, on_done, &a), 0);
    }
    assert_int_equal(faas_durable_record_del(d, "stream:orders fn", 20, on_done, &a), 0);
    assert_int_equal(faas_durable_schedule_get(d, "sched", &fired), FAAS_ENOENT);
    assert_int_equal(faas_durable_schedule_set(d, "sched", 60000, on_done, &a), 0);
    /* from memory, before the commit */
    assert_int_equal(faas_durable_schedule_get(d, "sched", &fired), 0);
    assert_int_equal(fired, 60000);
    assert_int_equal(faas_durable_schedule_set(d, "sched", 120000, on_done, &a), 0);
    assert_int_equal(faas_durable_schedule_set(d, "other", 5, on_done, &a), 0);
    assert_true(tu_run_until(f->base, &log.n, 9, 10000));
    faas_durable_close(d);
    for (int i = 0; i < 9; i++)
        assert_int_equal(log.rc[i], 0);

    d = open_ok(f, 0);
    assert_int_equal(faas_durable_records_load(d, "stream:orders fn", each_record, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seq[0], 10);
    assert_int_equal(s.seq[1], 40);
    assert_int_equal(s.seq[2], 50);
    assert_true(s.has_key[0]);
    assert_string_equal(s.key[0], "p1");
    assert_false(s.has_key[1]);
    assert_string_equal(s.rec[1], "{\"r\":4}");
    assert_int_equal(s.arrived[2], 500);
    assert_int_equal(faas_durable_schedule_get(d, "sched", &fired), 0);
    assert_int_equal(fired, 120000);
    assert_int_equal(faas_durable_schedule_get(d, "other", &fired), 0);
    assert_int_equal(fired, 5);
    assert_int_equal(faas_durable_schedule_get(d, "none", &fired), FAAS_ENOENT);
    faas_durable_close(d);
}

/* ---- group commit and order ------------------------------------------------ */

static void test_group_commit_order(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 1);
    static struct done_log log;
    static struct done_arg a[1000];
    struct faas_durable_stats st0, st1;
    char id[40];
    int i;

    memset(&log, 0, sizeof log);
    faas_durable_stats_get(d, &st0);
    /* 1000 operations queued in one turn of the loop: a handful of
     * transactions, not one each. */
    for (i = 0; i < 1000; i++) {
        struct faas_durable_event ev;
        a[i] = (struct done_arg){ &log, i };
        snprintf(id, sizeof id, "ev-%04d", i % 3 == 2 ? i - 1 : i);
        ev = mkevent(id, "fn", "{}", i);
        if (i % 3 == 2)
            assert_int_equal(faas_durable_event_end(d, id, NULL, on_done, &a[i]), 0);
        else
            assert_int_equal(faas_durable_event_put(d, &ev, on_done, &a[i]), 0);
    }
    faas_durable_stats_get(d, &st1);
    assert_true(st1.pending > 0 && st1.pending <= 1000);
    assert_true(tu_run_until(f->base, &log.n, 1000, 30000));
    faas_durable_stats_get(d, &st1);
    assert_int_equal(st1.pending, 0);
    assert_true(st1.commits - st0.commits >= 1);
    assert_true(st1.commits - st0.commits <= 10);
    assert_int_equal(st1.refused, 0);
    {
        uint64_t sum = 0;
        for (i = 0; i < 12; i++)
            sum += st1.commit_buckets[i];
        assert_int_equal(sum, st1.commits);
        assert_true(st1.commit_ns_sum > 0);
    }
    for (i = 0; i < 1000; i++) {
        assert_int_equal(log.tag[i], i);
        assert_int_equal(log.rc[i], 0);
    }
    faas_durable_close(d);
    d = open_ok(f, 1);
    /* every third was an end of the one put just before it */
    assert_int_equal(count_events(d), 1000 - 2 * 333);
    faas_durable_close(d);
}

static void test_close_commits_queued(void **state)
{
    struct fx *f = *state;
    struct faas_durable *d = open_ok(f, 1);
    struct done_log log = { 0 };
    struct done_arg a[50];
    static struct seen s;
    char id[40];
    int i;

    for (i = 0; i < 50; i++) {
        struct faas_durable_event ev;
        a[i] = (struct done_arg){ &log, i };
        snprintf(id, sizeof id, "q-%02d", i);
        ev = mkevent(id, "fn", "{}", i);
        assert_int_equal(faas_durable_event_put(d, &ev, on_done, &a[i]), 0);
    }
    /* close without running the loop: everything committed, every
     * completion run inside the call */
    faas_durable_close(d);
    assert_int_equal(log.n, 50);
    for (i = 0; i < 50; i++)
        assert_int_equal(log.rc[i], 0);
    d = open_ok(f, 1);
    assert_int_equal(faas_durable_events_load(d, each_event, &s), 0);
    assert_int_equal(s.n, 50);
    faas_durable_close(d);
}


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

/* ---- the runtime's engine ----------------------------------------------------- */

static void test_runtime_opens_engine(void **state)
{
    struct fx *f = *state;
    struct faas_runtime *rt = NULL;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    char url[200];
    struct done_log log = { 0 };
    struct done_arg a = { &log, 0 };
    struct faas_durable_event ev = mkevent("rt-1", "fn", "{}", 1);
    struct faas_durable *d;

    o.zygote = 1;
    o.node_id = "gw-7";
    snprintf(url, sizeof url, "%s", f->url);
    o.durable = url;
    assert_int_equal(faas_runtime_new(&rt, f->base, &o), 0);
    /* the options' strings were copied */
    memset(url, 0, sizeof url);
    assert_non_null(rt->durable);
    assert_string_equal(faas_durable_node(rt->durable), "gw-7");
    assert_int_equal(faas_durable_event_put(rt->durable, &ev, on_done, &a), 0);
    /* freeing the runtime closes the engine: the completion runs inside */
    faas_runtime_free(rt);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.rc[0], 0);
    d = open_ok(f, 1);
    assert_int_equal(count_events(d), 1);
    faas_durable_close(d);

    /* default node id: hostname:pid */
    o.node_id = NULL;
    o.durable = f->url;
    rt = NULL;
    assert_int_equal(faas_runtime_new(&rt, f->base, &o), 0);
    {
        char want[32];
        const char *node = faas_durable_node(rt->durable);
        snprintf(want, sizeof want, ":%ld", (long)getpid());
        assert_true(strlen(node) > strlen(want));
        assert_string_equal(node + strlen(node) - strlen(want), want);
    }
    faas_runtime_free(rt);

    o.durable = "redis://127.0.0.1:1";
    rt = NULL;
    assert_int_equal(faas_runtime_new(&rt, f->base, &o), FAAS_EINVAL);
    assert_null(rt);
}

#endif /* FAAS_WITH_SQLITE */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_null_url_is_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
#if FAAS_WITH_SQLITE
        cmocka_unit_test_setup_teardown(test_events_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_and_schedules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_commits_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_by_this_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_by_another_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cannot_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_opens_engine, setup, teardown),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

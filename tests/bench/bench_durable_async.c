/*
 * bench_durable_async.c - async events on the SQLite engine (synchronous FULL),
 * each figure next to a floor measured in the same run (see bench.h for
 * the method):
 *
 *   durable async event, accept to end   vs raw SQLite, the same writes     target <= 2x
 *                                          (0.5x the throughput)
 *   accept latency (to on_accepted)      vs one write + fdatasync           target <= 2x
 *   loop lag under a durable load        (reported: the engine must never block the
 *                                          loop for more than 1 ms)
 *   memory async event (no engine)       vs INLINE invoke                   target <= 2x
 *
 * The throughput floor is raw SQLite doing what the engine does for an
 * event (an INSERT when accepted, an UPDATE when its attempt starts, a
 * DELETE when it ends) in the same WAL/FULL database, with as many
 * statements per transaction as the engine managed in the figure's run
 * (its faas_durable_commit_seconds count, from faas_metrics_write).
 *
 * Run with `make bench`. Built only with the SQLite engine. Exits 0 whatever the ratio (shared machines drift);
 * a missed target prints OVER.
 */
#include "bench.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "faas.h"

#if FAAS_WITH_SQLITE
#include <sqlite3.h>

#define BATCH 1000u

static char g_dir[64];

struct fixture {
    struct event_base *base;
    struct faas_runtime *rt;
    json_t *event;
    uint64_t done, accepted, ended; /* ended: every on_complete, ever */
    uint64_t issued_total; /* events issued by async_body, ever */
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
    f->ended++;
}

static void on_accepted(int rc, const char *request_id, void *arg)
{
    struct fixture *f = arg;
    (void)request_id;
    if (rc != 0)
        note_error(f, rc);
    f->accepted++;
}

static void fixture_init(struct fixture *f, const char *url)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;

    memset(f, 0, sizeof *f);
    ro.zygote = 0;
    ro.durable = url;
    ro.durable_sync = 1;
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

/* k invocations in batches of BATCH, each batch run to its end: async
 * events (the figure) or request/response invokes (the floor). */
static void batches(struct fixture *f, uint64_t k, int async)
{
    uint64_t issued = 0;

    f->done = 0;
    while (issued < k) {
        uint64_t batch = k - issued < BATCH ? k - issued : BATCH, i;
        for (i = 0; i < batch; i++) {
            int rc = async ? faas_invoke_async(f->rt, "fn", f->event, NULL, NULL)
                           : faas_invoke(f->rt, "fn", f->event, NULL, on_result, f);
            if (rc != 0) {
                note_error(f, rc);
                f->done++;
            }
        }
        issued += batch;
        if (async)
            f->issued_total += batch;
        while (f->done < issued)
            event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static void async_body(void *arg, uint64_t k)
{
    batches(arg, k, 1);
}

static void invoke_body(void *arg, uint64_t k)
{
    batches(arg, k, 0);
}

/* One event, timed to its on_accepted; then the loop runs until it ended,
 * off the clock, so each accept meets an idle engine (light load). */
static uint64_t accept_one(struct fixture *f)
{
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    uint64_t want = f->accepted + 1, ended = f->ended, t0, t1;
    int rc;

    io.on_accepted = on_accepted;
    io.accepted_arg = f;
    t0 = bench_now_ns();
    rc = faas_invoke_async(f->rt, "fn", f->event, &io, NULL);
    if (rc != 0) {
        note_error(f, rc);
        return 0;
    }
    while (f->accepted < want)
        event_base_loop(f->base, EVLOOP_ONCE);
    t1 = bench_now_ns();
    while (f->ended == ended)
        event_base_loop(f->base, EVLOOP_ONCE);
    return t1 - t0;
}

/* One 4 KiB write and fdatasync of a file beside the database. */
static uint64_t fsync_one(int fd)
{
    static char page[4096];
    uint64_t t0 = bench_now_ns();
    if (pwrite(fd, page, sizeof page, 0) != (ssize_t)sizeof page || fdatasync(fd) != 0)
        bench_die("pwrite/fdatasync");
    return bench_now_ns() - t0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double median_u64(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    return (double)v[n / 2];
}

/* A counter of the metrics text: the value after "name ". */
static double metric(struct faas_runtime *rt, const char *name)
{
    struct evbuffer *b = evbuffer_new();
    size_t n;
    char *text, *p;
    double v = 0;

    if (!b || faas_metrics_write(rt, b) != 0)
        bench_die("faas_metrics_write");
    n = evbuffer_get_length(b);
    text = malloc(n + 1);
    if (!text)
        bench_die("malloc");
    evbuffer_remove(b, text, n);
    text[n] = '\0';
    for (p = text; (p = strstr(p, name)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[strlen(name)] == ' ') {
            v = strtod(p + strlen(name) + 1, NULL);
            break;
        }
    }
    free(text);
    evbuffer_free(b);
    return v;
}

/* ---- the raw SQLite floor ---------------------------------------------- */

struct raw {
    sqlite3 *db;
    sqlite3_stmt *ins, *upd, *del, *begin, *commit;
    uint64_t per_txn;   /* statements per transaction */
    uint64_t next_id;
};

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "bench: sqlite: %s: %s\n", sql, err ? err : "?");
        exit(2);
    }
}

static sqlite3_stmt *raw_prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        bench_die(sql);
    return st;
}

static void raw_open(struct raw *r, const char *path)
{
    memset(r, 0, sizeof *r);
    if (sqlite3_open(path, &r->db) != SQLITE_OK)
        bench_die("sqlite3_open");
    raw_exec(r->db, "PRAGMA journal_mode=WAL");
    raw_exec(r->db, "PRAGMA synchronous=FULL");
    raw_exec(r->db, "CREATE TABLE IF NOT EXISTS ev (id TEXT PRIMARY KEY, fn TEXT, body TEXT,"
                    " attempts INTEGER, accepted_ms INTEGER)");
    r->ins = raw_prep(r->db, "INSERT INTO ev VALUES (?1, 'fn', '{\"k\":1}', 0, 0)");
    r->upd = raw_prep(r->db, "UPDATE ev SET attempts = 1 WHERE id = ?1");
    r->del = raw_prep(r->db, "DELETE FROM ev WHERE id = ?1");
    r->begin = raw_prep(r->db, "BEGIN");
    r->commit = raw_prep(r->db, "COMMIT");
}

static void raw_close(struct raw *r)
{
    sqlite3_finalize(r->ins);
    sqlite3_finalize(r->upd);
    sqlite3_finalize(r->del);
    sqlite3_finalize(r->begin);
    sqlite3_finalize(r->commit);
    sqlite3_close(r->db);
}

static void raw_step(sqlite3_stmt *st)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        bench_die("sqlite3_step");
    sqlite3_reset(st);
}

/* The statements of `n` events, one kind at a time as the engine meets
 * them, per_txn statements a transaction. */
static void raw_kind(struct raw *r, sqlite3_stmt *st, uint64_t first, uint64_t n)
{
    uint64_t i, in_txn = 0;
    char id[40];

    for (i = 0; i < n; i++) {
        if (in_txn == 0)
            raw_step(r->begin);
        snprintf(id, sizeof id, "%036llu", (unsigned long long)(first + i));
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        raw_step(st);
        if (++in_txn == r->per_txn) {
            raw_step(r->commit);
            in_txn = 0;
        }
    }
    if (in_txn)
        raw_step(r->commit);
}

static void raw_body(void *arg, uint64_t k)
{
    struct raw *r = arg;
    uint64_t done = 0;

    while (done < k) {
        uint64_t n = k - done < BATCH ? k - done : BATCH;
        raw_kind(r, r->ins, r->next_id, n);
        raw_kind(r, r->upd, r->next_id, n);
        raw_kind(r, r->del, r->next_id, n);
        r->next_id += n;
        done += n;
    }
}

/* ---- loop lag ------------------------------------------------------------ */

#define LAG_TICKS 2000u   /* 2 s of 1 ms ticks */
#define LAG_PER_TICK 20u  /* events issued a tick: 20000 a second */

struct lag {
    struct fixture *f;
    struct event *ev;
    uint64_t expect_ns, n;
    uint64_t late[LAG_TICKS];
};

/* A 1 ms tick that issues a little work and notes how late it came. */
static void lag_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lag *l = arg;
    uint64_t now = bench_now_ns(), i;
    struct timeval tv = { 0, 1000 };
    (void)fd;
    (void)what;
    if (l->expect_ns)
        l->late[l->n++] = now > l->expect_ns ? now - l->expect_ns : 0;
    for (i = 0; i < LAG_PER_TICK; i++) {
        int rc = faas_invoke_async(l->f->rt, "fn", l->f->event, NULL, NULL);
        if (rc != 0)
            note_error(l->f, rc);
    }
    l->f->issued_total += LAG_PER_TICK;
    if (l->n < LAG_TICKS) {
        l->expect_ns = bench_now_ns() + 1000000u;
        event_add(l->ev, &tv);
    }
}

/* Runs the paced load on f; writes the lateness's p99 and max. */
static void lag_run(struct fixture *f, double *p99, double *max)
{
    struct lag *l = calloc(1, sizeof *l);
    uint64_t target;

    if (!l)
        bench_die("calloc");
    l->f = f;
    l->ev = event_new(f->base, -1, 0, lag_cb, l);
    target = f->ended + (uint64_t)LAG_TICKS * LAG_PER_TICK;
    lag_cb(-1, 0, l);
    while (l->n < LAG_TICKS || f->ended < target)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(l->ev);
    qsort(l->late, LAG_TICKS, sizeof l->late[0], cmp_u64);
    *p99 = (double)l->late[LAG_TICKS * 99u / 100u] / 1e6;
    *max = (double)l->late[LAG_TICKS - 1] / 1e6;
    free(l);
}

int main(void)
{
    struct bench_stat fig, flo;
    struct bench_side figure, ref;
    struct bench_place pl[2];
    struct fixture f;
    struct raw r;
    double p99, max, p99_mem, max_mem;
    char extra[96], url[128], path[128];
    double commits0, commits1, ops_per_commit;
    uint64_t events;
    int over = 0, fd;

    alarm(600); /* a hang must not hang `make bench` */
    bench_placements(pl);
    if (pl[0].loop_cpu >= 0 && bench_pin(pl[0].loop_cpu) != 0)
        bench_die("pinning the loop thread");
    snprintf(extra, sizeof extra, "libfaas %s, loop on cpu %d, SQLite %s", faas_version(),
             pl[0].loop_cpu, sqlite3_libversion());
    bench_header("bench_durable_async", extra);
    strcpy(g_dir, "/tmp/faas-bench-durable-XXXXXX");
    if (!mkdtemp(g_dir))
        bench_die("mkdtemp");

    /* 1. Throughput, accept to end. */
    snprintf(url, sizeof url, "sqlite:%s/engine.db", g_dir);
    fixture_init(&f, url);
    async_body(&f, BATCH); /* warm */
    commits0 = metric(f.rt, "faas_durable_commit_seconds_count");
    events = f.issued_total;
    fig = bench_measure(async_body, &f, BATCH, 1u << 20);
    commits1 = metric(f.rt, "faas_durable_commit_seconds_count");
    /* Three statements an event (accepted, attempt, end) over the
     * transactions the engine committed meanwhile. */
    events = f.issued_total - events;
    ops_per_commit = commits1 > commits0 ? 3.0 * (double)events / (commits1 - commits0) : 0;
    raw_open(&r, (snprintf(path, sizeof path, "%s/raw.db", g_dir), path));
    r.per_txn = ops_per_commit >= 1 ? (uint64_t)ops_per_commit : BATCH / 10u;
    flo = bench_measure(raw_body, &r, BATCH, 1u << 20);
    over += bench_line("durable async event, accept to end", fig.median_ns,
                       "raw SQLite, the same writes", flo.median_ns, 2.0);
    printf("    (FULL, WAL; the engine committed %.0f statements per transaction, the floor "
           "the same)\n",
           (double)r.per_txn);
    raw_close(&r);

    /* 2. Accept latency under light load: accepts and fdatasyncs taken in
     * turn, medians of each. */
    snprintf(path, sizeof path, "%s/sync.bin", g_dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        bench_die("open");
    {
        enum { N = 301 };
        static uint64_t acc[N], syn[N];
        int i;
        for (i = 0; i < N; i++) {
            acc[i] = accept_one(&f);
            syn[i] = fsync_one(fd);
        }
        over += bench_line("accept latency, to on_accepted", median_u64(acc, N),
                           "write + fdatasync", median_u64(syn, N), 2.0);
    }
    close(fd);

    /* 3. The loop's lag under a paced durable load, next to the same load
     * without an engine: how late a 1 ms timer fires. */
    lag_run(&f, &p99, &max);
    if (f.errors > 0)
        printf("    WARNING: %llu invocations failed, first with %s\n",
               (unsigned long long)f.errors, faas_strerror(f.first_error));
    fixture_free(&f);
    fixture_init(&f, NULL);
    lag_run(&f, &p99_mem, &max_mem);
    fixture_free(&f);
    printf(BENCH_FMT_NAME " %9.3f ms p99, %.3f ms max; memory: %.3f p99, %.3f max "
                          "(%u events/s; target: the engine adds < 1 ms)\n",
           "loop lag, 1 ms timer, durable load", p99, max, p99_mem, max_mem,
           LAG_PER_TICK * 1000u);
    if (max - max_mem > 1.0)
        over++;

    /* 4. Memory-only figures are unchanged: the same event, no engine. */
    fixture_init(&f, NULL);
    invoke_body(&f, BATCH);
    async_body(&f, BATCH);
    figure = (struct bench_side){ async_body, &f, BATCH, 1u << 24 };
    ref = (struct bench_side){ invoke_body, &f, BATCH, 1u << 24 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    over += bench_line("memory async event, enqueue to end", fig.median_ns, "INLINE invoke",
                       flo.median_ns, 2.0);
    fixture_free(&f);

    {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench: could not remove %s\n", g_dir);
    }
    printf("bench_durable_async: %d target%s over (reported, not enforced)\n", over,
           over == 1 ? "" : "s");
    return 0;
}
#else
int main(void)
{
    printf("bench_durable_async: built without the SQLite engine (WITH_SQLITE=0)\n");
    return 0;
}
#endif

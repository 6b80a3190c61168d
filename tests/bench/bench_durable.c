/*
 * bench_durable.c - the SQLite durable engine: what group commit buys, and
 * what the engine costs over raw SQLite doing the same writes (see bench.h
 * for the method).
 *
 *   event put then end, all queued at once (FULL)   vs raw SQLite, the same
 *       inserts in one transaction, then the         target <= 2x (0.5x the
 *       deletes in one                               raw throughput)
 *   the same                                         vs raw SQLite, 100 rows
 *                                                    per transaction (for
 *                                                    reference: batching)
 *   event put, one at a time (FULL)                  vs raw SQLite, one insert
 *       per transaction                              target <= 2x
 *   event put, one at a time (FULL)                  vs one 4 KiB write +
 *       fdatasync of a file beside the database      (for reference)
 *   the loop's lag (p99, max) on a 1 ms timer while  vs the same timer with
 *       it accepts 20 events a tick (20k/s)          no load: what the
 *                                                    engine adds (its share
 *                                                    should stay under 1 ms)
 *
 * The engine's figures go through durable.h as the runtime's layers do:
 * operations queued on the loop, committed by the writer thread many per
 * transaction, completions back on the loop; the body runs the loop until
 * every completion came. The floors use one SQLite connection in the same
 * modes (WAL, exclusive locking, synchronous FULL) and prepared statements.
 * All files live in a temporary directory under /tmp, removed at the end.
 *
 * Run with `make bench`. Exits 0 whatever the ratios (shared machines
 * drift); a missed target prints OVER. Built only with the SQLite engine.
 */
#include "bench.h"

#include <dirent.h>
#include <fcntl.h>

#if FAAS_WITH_SQLITE
#include <sqlite3.h>

#include "durable_engine.h"

#define BATCH 100u

static char dir[64];

struct engine {
    struct event_base *base;
    struct faas_runtime *rt;
    struct faas_durable *d;
    uint64_t next_id;
    int done;
};

static void on_done(int rc, void *arg)
{
    struct engine *e = arg;
    if (rc != 0)
        bench_die("durable operation failed");
    e->done++;
}

static void run_until(struct engine *e, int want)
{
    while (e->done < want)
        event_base_loop(e->base, EVLOOP_ONCE);
}

static void put_one(struct engine *e, uint64_t id)
{
    struct faas_durable_event ev;
    static const char event[] = "{\"order\":\"A-0001\",\"amount\":1250,\"currency\":\"EUR\"}";

    memset(&ev, 0, sizeof ev);
    snprintf(ev.request_id, sizeof ev.request_id, "%036llu", (unsigned long long)id);
    ev.function = "orders";
    ev.event = event;
    ev.event_len = sizeof event - 1;
    ev.accepted_ms = (int64_t)id;
    if (faas_durable_event_put(e->d, &ev, on_done, e) != 0)
        bench_die("event_put");
}

/* k events accepted in one turn, then k ended in the next. */
static void engine_group_body(void *arg, uint64_t k)
{
    struct engine *e = arg;
    uint64_t first = e->next_id, i;
    char id[FAAS_REQUEST_ID_SIZE];

    e->done = 0;
    for (i = 0; i < k; i++)
        put_one(e, e->next_id++);
    run_until(e, (int)k);
    for (i = 0; i < k; i++) {
        snprintf(id, sizeof id, "%036llu", (unsigned long long)(first + i));
        if (faas_durable_event_end(e->d, id, NULL, on_done, e) != 0)
            bench_die("event_end");
    }
    run_until(e, (int)(2 * k));
}

/* One event at a time: accepted, committed, then the next. */
static void engine_single_body(void *arg, uint64_t k)
{
    struct engine *e = arg;
    uint64_t i;

    e->done = 0;
    for (i = 0; i < k; i++) {
        put_one(e, e->next_id++);
        run_until(e, (int)(i + 1));
    }
}

/* ---- the loop's lag under a steady durable load ------------------------------- */

#define TICK_NS 1000000u
#define LAG_TICKS 2000

struct lag {
    struct engine *e;
    struct event *tick;
    uint64_t next_ns;   /* when the tick was due */
    unsigned per_tick;  /* events accepted per tick; 0: idle */
    int n;
    double lag_ns[LAG_TICKS];
};

static void lag_tick(evutil_socket_t fd, short what, void *arg)
{
    struct lag *l = arg;
    uint64_t now = bench_now_ns();
    struct timeval tv = { 0, (suseconds_t)(TICK_NS / 1000u) };
    unsigned i;

    (void)fd;
    (void)what;
    l->lag_ns[l->n++] = now > l->next_ns ? (double)(now - l->next_ns) : 0.0;
    for (i = 0; i < l->per_tick; i++)
        put_one(l->e, l->e->next_id++);
    if (l->n < LAG_TICKS) {
        l->next_ns = now + TICK_NS;
        evtimer_add(l->tick, &tv);
    }
}

/* The 99th percentile and the maximum of the loop's lag over LAG_TICKS
 * ticks of 1 ms, accepting per_tick events at each. */
static void measure_lag(struct engine *e, unsigned per_tick, double *p99, double *max)
{
    struct lag *l = calloc(1, sizeof *l);
    struct timeval tv = { 0, (suseconds_t)(TICK_NS / 1000u) };

    if (!l)
        bench_die("calloc");
    l->e = e;
    l->per_tick = per_tick;
    l->tick = evtimer_new(e->base, lag_tick, l);
    e->done = 0;
    l->next_ns = bench_now_ns() + TICK_NS;
    evtimer_add(l->tick, &tv);
    while (l->n < LAG_TICKS)
        event_base_loop(e->base, EVLOOP_ONCE);
    run_until(e, (int)(per_tick * LAG_TICKS));
    qsort(l->lag_ns, LAG_TICKS, sizeof l->lag_ns[0], bench_cmp_double);
    *p99 = l->lag_ns[LAG_TICKS * 99 / 100];
    *max = l->lag_ns[LAG_TICKS - 1];
    event_free(l->tick);
    free(l);
}

/* ---- floors: raw SQLite, and fdatasync ------------------------------------- */

struct raw {
    sqlite3 *db;
    sqlite3_stmt *ins, *del, *begin, *commit;
    uint64_t next_id;
};

static void step(sqlite3_stmt *st)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        bench_die("sqlite3_step");
    sqlite3_reset(st);
}

static void raw_open(struct raw *r, const char *path)
{
    memset(r, 0, sizeof *r);
    if (sqlite3_open(path, &r->db) != SQLITE_OK ||
        sqlite3_exec(r->db,
                     "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL;"
                     "PRAGMA synchronous = FULL;"
                     "CREATE TABLE events (request_id TEXT PRIMARY KEY NOT NULL,"
                     " function TEXT NOT NULL, event TEXT NOT NULL, accepted_ms INTEGER);",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db, "INSERT INTO events VALUES (?1, 'orders', ?2, ?3)", -1,
                           &r->ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db, "DELETE FROM events WHERE request_id = ?1", -1, &r->del,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db, "BEGIN", -1, &r->begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db, "COMMIT", -1, &r->commit, NULL) != SQLITE_OK)
        bench_die("raw sqlite open");
}

static void raw_close(struct raw *r)
{
    sqlite3_finalize(r->ins);
    sqlite3_finalize(r->del);
    sqlite3_finalize(r->begin);
    sqlite3_finalize(r->commit);
    sqlite3_close(r->db);
}

/* ids first..first+k-1 inserted (del 0) or deleted, `batch` per commit. */
static void raw_rows(struct raw *r, uint64_t first, uint64_t k, uint64_t batch, int del)
{
    static const char event[] = "{\"order\":\"A-0001\",\"amount\":1250,\"currency\":\"EUR\"}";
    char id[FAAS_REQUEST_ID_SIZE];
    uint64_t i;

    for (i = 0; i < k; i++) {
        if (i % batch == 0)
            step(r->begin);
        snprintf(id, sizeof id, "%036llu", (unsigned long long)(first + i));
        if (del) {
            sqlite3_bind_text(r->del, 1, id, -1, SQLITE_STATIC);
            step(r->del);
        } else {
            sqlite3_bind_text(r->ins, 1, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(r->ins, 2, event, -1, SQLITE_STATIC);
            sqlite3_bind_int64(r->ins, 3, (sqlite3_int64)(first + i));
            step(r->ins);
        }
        if (i % batch == batch - 1 || i == k - 1)
            step(r->commit);
    }
}

/* The engine's batching at its best: every insert in one transaction,
 * then every delete in one. */
static void raw_group_body(void *arg, uint64_t k)
{
    struct raw *r = arg;
    uint64_t first = r->next_id;
    r->next_id += k;
    raw_rows(r, first, k, k, 0);
    raw_rows(r, first, k, k, 1);
}

static void raw_batch_body(void *arg, uint64_t k)
{
    struct raw *r = arg;
    uint64_t first = r->next_id;
    r->next_id += k;
    raw_rows(r, first, k, BATCH, 0);
    raw_rows(r, first, k, BATCH, 1);
}

static void raw_single_body(void *arg, uint64_t k)
{
    struct raw *r = arg;
    uint64_t first = r->next_id;
    r->next_id += k;
    raw_rows(r, first, k, 1, 0);
}

static void fdatasync_body(void *arg, uint64_t k)
{
    int fd = *(int *)arg;
    char block[4096];
    uint64_t i;

    memset(block, 'x', sizeof block);
    for (i = 0; i < k; i++)
        if (pwrite(fd, block, sizeof block, 0) != (ssize_t)sizeof block || fdatasync(fd) != 0)
            bench_die("fdatasync");
}

static void rm_dir(void)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    char p[512];

    if (!dp)
        return;
    while ((de = readdir(dp)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(dp);
    rmdir(dir);
}

int main(void)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct bench_stat fig, flo;
    struct bench_side figure, ref;
    struct faas_durable_stats st0, st1;
    struct engine e;
    struct raw raw;
    char extra[96], url[128], path[128];
    uint64_t id0;
    int fd, over = 0;

    alarm(600);
    snprintf(extra, sizeof extra, "libfaas %s, SQLite %s", faas_version(), sqlite3_libversion());
    bench_header("bench_durable", extra);
    strcpy(dir, "/tmp/faas-bench-durable-XXXXXX");
    if (!mkdtemp(dir))
        bench_die("mkdtemp");

    memset(&e, 0, sizeof e);
    snprintf(url, sizeof url, "sqlite:%s/engine.db", dir);
    o.zygote = 0;
    o.durable = url;
    o.durable_sync = 1;
    e.base = event_base_new();
    if (!e.base || faas_runtime_new(&e.rt, e.base, &o) != 0)
        bench_die("runtime with a durable engine");
    e.d = e.rt->durable;
    snprintf(path, sizeof path, "%s/raw.db", dir);
    raw_open(&raw, path);
    snprintf(path, sizeof path, "%s/sync.bin", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        bench_die("open sync.bin");

    faas_durable_stats_get(e.d, &st0);
    id0 = e.next_id;
    figure = (struct bench_side){ engine_group_body, &e, 1000, 1u << 20 };
    ref = (struct bench_side){ raw_group_body, &raw, 1000, 1u << 20 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    faas_durable_stats_get(e.d, &st1);
    over += bench_line("event put+end, queued at once", fig.median_ns,
                       "raw insert+delete, 1 commit each", flo.median_ns, 2.0);
    printf("    (%.0f events/s; %.1f operations per engine commit)\n", 1e9 / fig.median_ns,
           st1.commits > st0.commits
               ? 2.0 * (double)(e.next_id - id0) / (double)(st1.commits - st0.commits)
               : 0.0);

    ref = (struct bench_side){ raw_batch_body, &raw, 1000, 1u << 20 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    bench_line("event put+end, queued at once", fig.median_ns, "raw insert+delete, 100/commit",
               flo.median_ns, 0);

    figure = (struct bench_side){ engine_single_body, &e, 10, 1u << 16 };
    ref = (struct bench_side){ raw_single_body, &raw, 10, 1u << 16 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    over += bench_line("event put, one at a time", fig.median_ns, "raw insert, 1/commit",
                       flo.median_ns, 2.0);
    ref = (struct bench_side){ fdatasync_body, &fd, 10, 1u << 16 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    bench_line("event put, one at a time", fig.median_ns, "4 KiB write + fdatasync",
               flo.median_ns, 0);

    {
        double p99_idle, max_idle, p99_load, max_load;
        measure_lag(&e, 0, &p99_idle, &max_idle);
        measure_lag(&e, 20, &p99_load, &max_load);
        bench_line("loop lag p99, 20k events/s durable", p99_load, "loop lag p99, idle",
                   p99_idle, 0);
        bench_line("loop lag max, 20k events/s durable", max_load, "loop lag max, idle",
                   max_idle, 0);
        printf("    (lag the load adds: p99 %+.3f ms, max %+.3f ms)\n",
               (p99_load - p99_idle) / 1e6, (max_load - max_idle) / 1e6);
    }

    close(fd);
    raw_close(&raw);
    faas_runtime_free(e.rt);
    event_base_free(e.base);
    rm_dir();
    (void)over;
    return 0;
}

#else

int main(void)
{
    printf("bench_durable: built without the SQLite engine (WITH_SQLITE=0)\n");
    return 0;
}

#endif

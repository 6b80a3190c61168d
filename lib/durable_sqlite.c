/*
 * durable_sqlite.c - the SQLite engine of durable.h ("sqlite:PATH").
 *
 * One database file in WAL mode, held by one runtime: the connection runs
 * in exclusive locking mode and takes the write lock at open, so a second
 * runtime (this process or another) fails to open it at once
 * (FAAS_EUNAVAILABLE, busy timeout 0) instead of waiting or interleaving.
 * durable_sync 1 is synchronous=FULL (a commit survives a power loss), 0 is
 * NORMAL (it survives a crash of the process).
 *
 * Schema (version 1, in schema_version): events (request_id primary key),
 * records (primary key mapping, seq), schedules (name primary key), idem
 * (primary key scope, key). Another version, a file that is not a
 * database, or one that fails PRAGMA quick_check is refused at open with a
 * log record that says which.
 *
 * Writing: one writer thread owns the transactions. The loop appends
 * operations to `queue` under `mu`; the writer takes everything queued,
 * runs it in ONE transaction (group commit: what arrives while a commit is
 * under way goes into the next one), appends the operations to `done`
 * under `done_mu`, and writes the eventfd once when `done` was empty. The
 * eventfd's read event on the runtime's base hands `done` to the report
 * callback on the loop. Statements are prepared once, at open.
 *
 * A failed transaction (SQLITE_FULL, an I/O error) is rolled back. Its
 * adding operations (event put, record put, a store's put) complete with
 * FAAS_EUNAVAILABLE and the rest runs again at once without them; a group
 * of operations that only move or end kept work is retried, with what was
 * queued since appended, after a backoff of 10 ms doubling to 1 s, until it
 * commits or the engine closes. Operations therefore commit in the order
 * they were queued. An operation that fails alone (a duplicate key) completes
 * with its own code (FAAS_EEXIST) and its transaction goes on. When
 * transactions start failing, and when they commit again, the loop logs it
 * once (FAAS_LOG_WARNING, action "durable", with SQLite's reason). Close
 * wakes the writer, which commits what is queued
 * (one last try for a failing group, whose operations then complete with
 * FAAS_ECANCELED) and exits; close joins it, reports what is left, and
 * commits itself what those completions queue in turn (CLOSE_ROUNDS).
 *
 * Reading (the loads) happens on the loop thread on the same connection,
 * under `conn_mu`, which the writer holds for each transaction: a load
 * sees what was committed. `mu` and `conn_mu` are never held together.
 *
 * Built only with FAAS_WITH_SQLITE (make WITH_SQLITE=0 leaves it out).
 *
 * Owns struct sq, the connection, the thread, the eventfd and its event.
 * Called through faas_durable_sqlite (durable_engine.h) by durable.c only.
 * May call: SQLite, pthreads, eventfd(2), libevent, alloc.c, metrics.c's
 * log records; reports through the callback it was given.
 */
#if FAAS_WITH_SQLITE

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "durable_engine.h"

#define SCHEMA_VERSION 1
#define BACKOFF_FIRST_MS 10u
#define BACKOFF_MAX_MS 1000u
/* Close commits what completions queue, for this many rounds. */
#define CLOSE_ROUNDS 8

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_EVENT_INS,
    ST_EVENT_ATTEMPT,
    ST_EVENT_RETRY,
    ST_EVENT_DEL,
    ST_RECORD_INS,
    ST_RECORD_DEL,
    ST_SCHED_SET,
    ST_IDEM_SET,
    ST_IDEM_DEL,
    ST_IDEM_SWEEP,
    ST_EVENTS_LOAD,
    ST_RECORDS_LOAD,
    ST_SCHED_LOAD,
    ST_IDEM_LOAD,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_EVENT_INS] = "INSERT INTO events(request_id, function, event, client_context, trace_id,"
                     " idem_key, timeout_ms, attempts, accepted_ms, due_ms, origin)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_EVENT_ATTEMPT] = "UPDATE events SET attempts = ?2 WHERE request_id = ?1",
    [ST_EVENT_RETRY] = "UPDATE events SET due_ms = ?2 WHERE request_id = ?1",
    [ST_EVENT_DEL] = "DELETE FROM events WHERE request_id = ?1",
    [ST_RECORD_INS] = "INSERT INTO records(mapping, seq, key, record, arrived_ms)"
                      " VALUES(?1, ?2, ?3, ?4, ?5)",
    [ST_RECORD_DEL] = "DELETE FROM records WHERE mapping = ?1 AND seq = ?2",
    [ST_SCHED_SET] = "INSERT INTO schedules(name, fired_ms) VALUES(?1, ?2)"
                     " ON CONFLICT(name) DO UPDATE SET fired_ms = excluded.fired_ms",
    [ST_IDEM_SET] = "INSERT OR REPLACE INTO idem(scope, key, state, status, payload,"
                    " validation, owner, expires_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_IDEM_DEL] = "DELETE FROM idem WHERE scope = ?1 AND key = ?2",
    [ST_IDEM_SWEEP] = "DELETE FROM idem WHERE scope = ?1 AND expires_ms <= ?2",
    [ST_EVENTS_LOAD] = "SELECT request_id, function, event, client_context, trace_id, idem_key,"
                       " timeout_ms, attempts, accepted_ms, due_ms, origin FROM events"
                       " ORDER BY accepted_ms, rowid",
    [ST_RECORDS_LOAD] = "SELECT seq, key, record, arrived_ms FROM records WHERE mapping = ?1"
                        " ORDER BY seq",
    [ST_SCHED_LOAD] = "SELECT name, fired_ms FROM schedules",
    /* INSERT OR REPLACE gives a written row a new rowid: rowid order is
     * the order of the last writes. */
    [ST_IDEM_LOAD] = "SELECT key, state, status, payload, validation, owner, expires_ms"
                     " FROM idem WHERE scope = ?1 ORDER BY rowid",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS events ("
    " request_id TEXT PRIMARY KEY NOT NULL, function TEXT NOT NULL, event TEXT NOT NULL,"
    " client_context TEXT, trace_id TEXT, idem_key TEXT, timeout_ms INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL, accepted_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL,"
    " origin TEXT);"
    "CREATE TABLE IF NOT EXISTS records ("
    " mapping TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT, record TEXT NOT NULL,"
    " arrived_ms INTEGER NOT NULL, PRIMARY KEY (mapping, seq));"
    "CREATE TABLE IF NOT EXISTS schedules ("
    " name TEXT PRIMARY KEY NOT NULL, fired_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS idem ("
    " scope TEXT NOT NULL, key TEXT NOT NULL, state INTEGER NOT NULL, status INTEGER NOT NULL,"
    " payload TEXT, validation TEXT, owner TEXT, expires_ms INTEGER NOT NULL,"
    " PRIMARY KEY (scope, key));";

struct sq {
    struct faas_runtime *rt;
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];
    int (*report)(void *ctx, struct faas_list *done);
    void *report_ctx;

    pthread_mutex_t conn_mu; /* the connection: a transaction, or a load */

    pthread_mutex_t mu;      /* queue, stop, waiting, st */
    pthread_cond_t cv;
    struct faas_list queue;
    int stop;
    int waiting;             /* the writer sleeps on cv until work comes */
    struct faas_durable_stats st;

    pthread_mutex_t done_mu; /* done, failing, err_rc, news */
    struct faas_list done;
    int failing;             /* the last transaction failed */
    int err_rc;              /* its SQLite code */
    int news;                /* failing changed: the loop logs it */

    char *path;
    int efd;
    struct event *ev;
    pthread_t thread;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- statements --------------------------------------------------------- */

static void bind_str(sqlite3_stmt *st, int i, const char *s, size_t len)
{
    if (s)
        sqlite3_bind_text64(st, i, s, (sqlite3_uint64)len, SQLITE_STATIC, SQLITE_UTF8);
    else
        sqlite3_bind_null(st, i);
}

static void bind_cstr(sqlite3_stmt *st, int i, const char *s)
{
    bind_str(st, i, s, s ? strlen(s) : 0);
}

/* Steps a statement that returns no rows and resets it: SQLITE_OK or the
 * error. */
static int run_stmt(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int insert_event(struct sq *s, const struct faas_durable_event *ev)
{
    sqlite3_stmt *st = s->stmt[ST_EVENT_INS];
    bind_cstr(st, 1, ev->request_id);
    bind_cstr(st, 2, ev->function);
    bind_str(st, 3, ev->event, ev->event_len);
    bind_cstr(st, 4, ev->client_context);
    bind_cstr(st, 5, ev->trace_id);
    bind_cstr(st, 6, ev->idem_key);
    sqlite3_bind_int64(st, 7, ev->timeout_ms);
    sqlite3_bind_int64(st, 8, ev->attempts);
    sqlite3_bind_int64(st, 9, ev->accepted_ms);
    sqlite3_bind_int64(st, 10, ev->due_ms);
    bind_cstr(st, 11, ev->origin);
    return run_stmt(st);
}

/* A statement on a row named by a string and a number. */
static int run_named(struct sq *s, enum stmt_id id, const char *name, int64_t v)
{
    sqlite3_stmt *st = s->stmt[id];
    bind_cstr(st, 1, name);
    sqlite3_bind_int64(st, 2, v);
    return run_stmt(st);
}

static int idem_set(struct sq *s, const struct faas_durable_idem *r)
{
    sqlite3_stmt *st = s->stmt[ST_IDEM_SET];
    bind_cstr(st, 1, r->scope);
    bind_cstr(st, 2, r->key);
    sqlite3_bind_int(st, 3, r->state);
    sqlite3_bind_int(st, 4, r->status);
    bind_str(st, 5, r->payload, r->payload_len);
    bind_cstr(st, 6, r->validation);
    bind_cstr(st, 7, r->owner);
    sqlite3_bind_int64(st, 8, r->expires_ms);
    return run_stmt(st);
}

/*
 * Runs one operation inside the transaction. A fault of the operation
 * alone (a duplicate key, a row too big) is its completion code and the
 * transaction goes on: SQLITE_OK. Anything else is the transaction's
 * failure, returned.
 */
static int apply(struct sq *s, struct faas_dop *op)
{
    int rc = SQLITE_OK;

    op->rc = 0;
    switch (op->kind) {
    case FAAS_DOP_EVENT_PUT:
        rc = insert_event(s, &op->ev);
        break;
    case FAAS_DOP_EVENT_ATTEMPT:
        rc = run_named(s, ST_EVENT_ATTEMPT, op->name, op->attempts);
        break;
    case FAAS_DOP_EVENT_RETRY:
        rc = run_named(s, ST_EVENT_RETRY, op->name, op->when_ms);
        break;
    case FAAS_DOP_EVENT_END:
        bind_cstr(s->stmt[ST_EVENT_DEL], 1, op->name);
        rc = run_stmt(s->stmt[ST_EVENT_DEL]);
        if (rc == SQLITE_OK && op->has_next)
            rc = insert_event(s, &op->ev);
        break;
    case FAAS_DOP_RECORD_PUT: {
        sqlite3_stmt *st = s->stmt[ST_RECORD_INS];
        bind_cstr(st, 1, op->rec.mapping);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)op->rec.seq);
        bind_cstr(st, 3, op->rec.key);
        bind_str(st, 4, op->rec.record, op->rec.record_len);
        sqlite3_bind_int64(st, 5, op->rec.arrived_ms);
        rc = run_stmt(st);
        break;
    }
    case FAAS_DOP_RECORD_DEL:
        rc = run_named(s, ST_RECORD_DEL, op->name, (int64_t)op->seq);
        break;
    case FAAS_DOP_SCHEDULE_SET:
    case FAAS_DOP_SCHEDULE_CLAIM: /* one host: always won */
        rc = run_named(s, ST_SCHED_SET, op->name, op->when_ms);
        break;
    case FAAS_DOP_IDEM_SET:
        rc = idem_set(s, &op->idem);
        break;
    case FAAS_DOP_IDEM_DEL:
        if (!op->idem.key) {
            rc = run_named(s, ST_IDEM_SWEEP, op->idem.scope, op->when_ms);
            break;
        }
        bind_cstr(s->stmt[ST_IDEM_DEL], 1, op->idem.scope);
        bind_cstr(s->stmt[ST_IDEM_DEL], 2, op->idem.key);
        rc = run_stmt(s->stmt[ST_IDEM_DEL]);
        break;
    case FAAS_DOP_NOP:
    case FAAS_DOP_CALL: /* only a shared engine's stores make these */
    case FAAS_DOP_EVENT_RELEASE: /* only on a fleet's queue */
    case FAAS_DOP_DELIVER:
        break;
    }
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        op->rc = FAAS_EEXIST;
        return SQLITE_OK;
    case SQLITE_TOOBIG:
        op->rc = FAAS_ETOOBIG;
        return SQLITE_OK;
    default:
        return rc;
    }
}

/* ---- the writer ---------------------------------------------------------- */

static void commit_stats(struct sq *s, uint64_t n, uint64_t ns)
{
    pthread_mutex_lock(&s->mu);
    s->st.pending -= n;
    s->st.commits++;
    s->st.commit_ns_sum += ns;
    s->st.commit_buckets[faas_durable_bucket((double)ns / 1e9)]++;
    pthread_mutex_unlock(&s->mu);
}

static uint64_t list_len(const struct faas_list *l)
{
    uint64_t n = 0;
    const struct faas_list *e;
    for (e = l->next; e != l; e = e->next)
        n++;
    return n;
}

/* One transaction over every operation of `group`. */
static int run_once(struct sq *s, struct faas_list *group)
{
    struct faas_list *e;
    int rc;

    pthread_mutex_lock(&s->conn_mu);
    rc = run_stmt(s->stmt[ST_BEGIN]);
    for (e = group->next; rc == SQLITE_OK && e != group; e = e->next)
        rc = apply(s, FAAS_CONTAINER_OF(e, struct faas_dop, link));
    if (rc == SQLITE_OK)
        rc = run_stmt(s->stmt[ST_COMMIT]);
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(s->db))
        run_stmt(s->stmt[ST_ROLLBACK]);
    pthread_mutex_unlock(&s->conn_mu);
    return rc;
}

/*
 * Commits `group`, moving its operations to `done`. When the transaction
 * fails, the adding operations are refused (to `done`) and the rest is
 * tried again at once; a group with nothing to refuse stays in `group` for
 * the caller to retry later. Returns the last transaction's SQLite code.
 */
static int run_group(struct sq *s, struct faas_list *group, struct faas_list *done)
{
    for (;;) {
        uint64_t t0 = mono_ns(), n, refused = 0;
        struct faas_list *e, *next;
        int rc = run_once(s, group);

        if (rc == SQLITE_OK) {
            n = list_len(group);
            faas_list_splice(done, group);
            commit_stats(s, n, mono_ns() - t0);
            return rc;
        }
        for (e = group->next; e != group; e = next) {
            struct faas_dop *op = FAAS_CONTAINER_OF(e, struct faas_dop, link);
            next = e->next;
            if (op->adds) {
                faas_list_remove(e);
                op->rc = FAAS_EUNAVAILABLE;
                faas_list_insert_tail(done, e);
                refused++;
            }
        }
        if (refused) {
            pthread_mutex_lock(&s->mu);
            s->st.pending -= refused;
            s->st.refused += refused;
            pthread_mutex_unlock(&s->mu);
        }
        if (!refused || faas_list_empty(group))
            return rc;
    }
}

/* The engine closes without the operations of `group`: FAAS_ECANCELED. */
static void cancel_group(struct sq *s, struct faas_list *group, struct faas_list *done)
{
    uint64_t n = list_len(group);
    struct faas_list *e;

    if (n == 0)
        return;
    for (e = group->next; e != group; e = e->next)
        FAAS_CONTAINER_OF(e, struct faas_dop, link)->rc = FAAS_ECANCELED;
    faas_list_splice(done, group);
    pthread_mutex_lock(&s->mu);
    s->st.pending -= n;
    pthread_mutex_unlock(&s->mu);
}

/*
 * Appends `batch` to the done list and notes how the last transaction went
 * (rc); the first completion, or a change between failing and committing,
 * wakes the loop.
 */
static void hand_done(struct sq *s, struct faas_list *batch, int rc)
{
    uint64_t one = 1;
    int wake;
    ssize_t w;

    pthread_mutex_lock(&s->done_mu);
    wake = faas_list_empty(&s->done) && !faas_list_empty(batch);
    faas_list_splice(&s->done, batch);
    if ((rc != SQLITE_OK) != s->failing) {
        s->failing = rc != SQLITE_OK;
        s->err_rc = rc;
        wake |= !s->news;
        s->news = 1;
    }
    pthread_mutex_unlock(&s->done_mu);
    if (wake) {
        do
            w = write(s->efd, &one, sizeof one);
        while (w < 0 && errno == EINTR);
    }
}

/* With s->mu held: sleeps `ms` or until close. */
static void backoff_wait(struct sq *s, unsigned ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000u);
    until.tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &until) != ETIMEDOUT)
        ;
}

static void *writer_main(void *arg)
{
    struct sq *s = arg;
    struct faas_list group, done;
    unsigned backoff = 0;
    int stop, rc;

    faas_list_init(&group);
    faas_list_init(&done);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        if (backoff) {
            backoff_wait(s, backoff);
        } else {
            while (faas_list_empty(&s->queue) && !s->stop) {
                s->waiting = 1;
                pthread_cond_wait(&s->cv, &s->mu);
                s->waiting = 0;
            }
        }
        faas_list_splice(&group, &s->queue);
        stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (faas_list_empty(&group))
            break; /* closing, and everything is committed */
        rc = run_group(s, &group, &done);
        if (faas_list_empty(&group)) {
            backoff = 0;
        } else if (stop) {
            cancel_group(s, &group, &done); /* the last try failed */
        } else {
            backoff = !backoff ? BACKOFF_FIRST_MS
                      : backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        }
        hand_done(s, &done, rc);
    }
    return NULL;
}

/* ---- the loop side -------------------------------------------------------- */

/* Hands what the writer finished to the report callback, after a log
 * record when the engine started or stopped failing. */
static int take_done(struct sq *s)
{
    struct faas_list batch;
    int news, failing, err_rc;

    faas_list_init(&batch);
    pthread_mutex_lock(&s->done_mu);
    faas_list_splice(&batch, &s->done);
    news = s->news;
    failing = s->failing;
    err_rc = s->err_rc;
    s->news = 0;
    pthread_mutex_unlock(&s->done_mu);
    if (news && failing)
        faas_log_event(s->rt, FAAS_LOG_WARNING, NULL, NULL, "durable", NULL,
                       "sqlite:%s: cannot commit (%s): accepts are refused, endings are "
                       "retried",
                       s->path, sqlite3_errstr(err_rc));
    else if (news)
        faas_log_event(s->rt, FAAS_LOG_WARNING, NULL, NULL, "durable", NULL,
                       "sqlite:%s: commits again", s->path);
    return s->report(s->report_ctx, &batch);
}

static void efd_cb(evutil_socket_t fd, short what, void *arg)
{
    uint64_t n;
    (void)what;
    /* Read first: a completion after the read writes again. */
    if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN && errno != EINTR)
        return;
    take_done(arg);
}

static void sq_submit(void *impl, struct faas_dop *op)
{
    struct sq *s = impl;
    int wake;

    pthread_mutex_lock(&s->mu);
    faas_list_insert_tail(&s->queue, &op->link);
    s->st.pending++;
    wake = s->waiting;
    pthread_mutex_unlock(&s->mu);
    if (wake)
        pthread_cond_signal(&s->cv);
}

static void sq_stats(void *impl, struct faas_durable_stats *out)
{
    struct sq *s = impl;
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

static void sq_free(struct sq *s)
{
    int i;
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    sqlite3_close_v2(s->db);
    if (s->ev)
        event_free(s->ev);
    if (s->efd >= 0)
        close(s->efd);
    pthread_mutex_destroy(&s->conn_mu);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->done_mu);
    free(s->path);
    free(s);
}

static void sq_close(void *impl)
{
    struct sq *s = impl;
    struct faas_list group, batch;
    int round;

    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_mutex_unlock(&s->mu);
    pthread_cond_signal(&s->cv);
    pthread_join(s->thread, NULL);
    event_del(s->ev);
    /* What the writer finished, then what completions queue in turn (an
     * ending's next step): committed here, the writer being gone, for a
     * few rounds; what is still queued after them is given up. */
    faas_list_init(&group);
    for (round = 0;; round++) {
        faas_list_init(&batch);
        pthread_mutex_lock(&s->done_mu);
        faas_list_splice(&batch, &s->done);
        pthread_mutex_unlock(&s->done_mu);
        pthread_mutex_lock(&s->mu);
        faas_list_splice(&group, &s->queue);
        pthread_mutex_unlock(&s->mu);
        if (round < CLOSE_ROUNDS)
            run_group(s, &group, &batch);
        cancel_group(s, &group, &batch);
        if (faas_list_empty(&batch))
            break;
        s->report(s->report_ctx, &batch);
    }
    sq_free(s);
}

/* ---- loads ------------------------------------------------------------------ */

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

typedef int (*event_each_fn)(const struct faas_durable_event *ev, void *arg);
typedef int (*record_each_fn)(const struct faas_durable_record *rec, void *arg);
typedef int (*sched_each_fn)(const char *name, int64_t fired_ms, void *arg);
typedef int (*idem_each_fn)(const struct faas_durable_idem *rec, void *arg);

/* The callbacks travel as data pointers; these wrappers carry them. */
struct each_box {
    event_each_fn ev;
    record_each_fn rec;
    sched_each_fn sched;
    idem_each_fn idem;
    const char *name;
};

static int event_row(sqlite3_stmt *st, void *each, void *arg)
{
    struct faas_durable_event ev;
    const char *id = col_text(st, 0);

    memset(&ev, 0, sizeof ev);
    snprintf(ev.request_id, sizeof ev.request_id, "%s", id ? id : "");
    ev.function = col_text(st, 1);
    ev.event = col_text(st, 2);
    ev.event_len = (size_t)sqlite3_column_bytes(st, 2);
    ev.client_context = col_text(st, 3);
    ev.trace_id = col_text(st, 4);
    ev.idem_key = col_text(st, 5);
    ev.timeout_ms = (uint32_t)sqlite3_column_int64(st, 6);
    ev.attempts = (uint32_t)sqlite3_column_int64(st, 7);
    ev.accepted_ms = sqlite3_column_int64(st, 8);
    ev.due_ms = sqlite3_column_int64(st, 9);
    ev.origin = col_text(st, 10);
    if (!ev.function || !ev.event)
        return 0;
    return ((struct each_box *)each)->ev(&ev, arg);
}

static int record_row(sqlite3_stmt *st, void *each, void *arg)
{
    struct each_box *box = each;
    struct faas_durable_record rec;

    rec.mapping = box->name;
    rec.seq = (uint64_t)sqlite3_column_int64(st, 0);
    rec.key = col_text(st, 1);
    rec.record = col_text(st, 2);
    rec.record_len = (size_t)sqlite3_column_bytes(st, 2);
    rec.arrived_ms = sqlite3_column_int64(st, 3);
    if (!rec.record)
        return 0;
    return box->rec(&rec, arg);
}

static int sched_row(sqlite3_stmt *st, void *each, void *arg)
{
    const char *name = col_text(st, 0);
    if (!name)
        return 0;
    return ((struct each_box *)each)->sched(name, sqlite3_column_int64(st, 1), arg);
}

static int idem_row(sqlite3_stmt *st, void *each, void *arg)
{
    struct each_box *box = each;
    struct faas_durable_idem r;

    r.scope = box->name;
    r.key = col_text(st, 0);
    r.state = sqlite3_column_int(st, 1);
    r.status = sqlite3_column_int(st, 2);
    r.payload = col_text(st, 3);
    r.payload_len = (size_t)sqlite3_column_bytes(st, 3);
    r.validation = col_text(st, 4);
    r.owner = col_text(st, 5);
    r.expires_ms = sqlite3_column_int64(st, 6);
    if (!r.key)
        return 0;
    return box->idem(&r, arg);
}

/* Steps a load's statement (its ?1 bound to `name` when not NULL) under
 * the connection's mutex, calling row() for every row. */
static int load_rows(struct sq *s, enum stmt_id id, const char *name,
                     int (*row)(sqlite3_stmt *st, void *each, void *arg), struct each_box *box,
                     void *arg)
{
    sqlite3_stmt *st = s->stmt[id];
    int rc, r = 0;

    pthread_mutex_lock(&s->conn_mu);
    if (name)
        bind_cstr(st, 1, name);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((r = row(st, box, arg)) != 0)
            break;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&s->conn_mu);
    if (r != 0)
        return r;
    return rc == SQLITE_DONE ? 0 : (rc & 0xff) == SQLITE_NOMEM ? FAAS_ENOMEM : FAAS_EUNAVAILABLE;
}

static int sq_events_load(void *impl, event_each_fn each, void *arg)
{
    struct each_box box = { .ev = each };
    return load_rows(impl, ST_EVENTS_LOAD, NULL, event_row, &box, arg);
}

static int sq_records_load(void *impl, const char *mapping, record_each_fn each, void *arg)
{
    struct each_box box = { .rec = each, .name = mapping };
    return load_rows(impl, ST_RECORDS_LOAD, mapping, record_row, &box, arg);
}

static int sq_schedules_load(void *impl, sched_each_fn each, void *arg)
{
    struct each_box box = { .sched = each };
    return load_rows(impl, ST_SCHED_LOAD, NULL, sched_row, &box, arg);
}

static int sq_idem_load(void *impl, const char *scope, idem_each_fn each, void *arg)
{
    struct each_box box = { .idem = each, .name = scope };
    return load_rows(impl, ST_IDEM_LOAD, scope, idem_row, &box, arg);
}

/* ---- open ------------------------------------------------------------------- */

/* Logs why the database at `path` cannot be used; returns the code. */
static int open_fail(struct sq *s, const char *path, int rc, const char *why)
{
    const char *detail = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);

    if (!why) {
        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            why = "locked by another process (or another runtime of this one)";
            break;
        case SQLITE_NOTADB:
            why = "not a database";
            break;
        case SQLITE_CORRUPT:
            why = "corrupt";
            break;
        case SQLITE_CANTOPEN:
        case SQLITE_PERM:
        case SQLITE_READONLY:
            why = "cannot be opened or created";
            break;
        case SQLITE_NOMEM:
            return FAAS_ENOMEM;
        default:
            why = "cannot be used";
            break;
        }
    }
    faas_log_event(s->rt, FAAS_LOG_WARNING, NULL, NULL, "durable", NULL, "sqlite:%s: %s (%s)",
                   path, why, detail ? detail : "");
    return FAAS_EUNAVAILABLE;
}

/* The first column of the first row of `sql` as text into out, or "". */
static int query_text(sqlite3 *db, const char *sql, char *out, size_t size)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    out[0] = '\0';
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *t = col_text(st, 0);
        snprintf(out, size, "%s", t ? t : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Creates the schema of a new database, checks an existing one's version. */
static int schema_open(struct sq *s, const char *path)
{
    char v[32], sql[96];
    int rc;

    rc = sqlite3_exec(s->db, "BEGIN;"
                             "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);",
                      NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = query_text(s->db, "SELECT version FROM schema_version", v, sizeof v);
    if (rc == SQLITE_OK && !v[0]) {
        snprintf(sql, sizeof sql, "INSERT INTO schema_version VALUES (%d)", SCHEMA_VERSION);
        rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        snprintf(v, sizeof v, "%d", SCHEMA_VERSION);
    }
    if (rc == SQLITE_OK && atoi(v) != SCHEMA_VERSION) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        snprintf(sql, sizeof sql, "schema version %.20s, this build reads version %d", v,
                 SCHEMA_VERSION);
        return open_fail(s, path, SQLITE_ERROR, sql);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int r = open_fail(s, path, rc, NULL);
        if (!sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
    }
    return 0;
}

/* Opens the connection, takes the lock, checks the file and the schema. */
static int db_open(struct sq *s, const char *path, int sync)
{
    char mode[32];
    int rc, i;

    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        return open_fail(s, path, rc, NULL);
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 0);
    /* Exclusive before WAL: no shared-memory index, and the lock the
     * write transaction takes below is held until close. */
    rc = sqlite3_exec(s->db, "PRAGMA locking_mode = EXCLUSIVE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = query_text(s->db, "PRAGMA journal_mode = WAL", mode, sizeof mode);
    if (rc == SQLITE_OK && strcmp(mode, "wal") != 0)
        return open_fail(s, path, SQLITE_ERROR, "cannot be put in WAL mode");
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "BEGIN EXCLUSIVE; COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return open_fail(s, path, rc, NULL);
    rc = query_text(s->db, "PRAGMA quick_check", mode, sizeof mode);
    if (rc != SQLITE_OK)
        return open_fail(s, path, rc, NULL);
    if (strcmp(mode, "ok") != 0)
        return open_fail(s, path, SQLITE_CORRUPT, "corrupt (PRAGMA quick_check failed)");
    rc = sqlite3_exec(s->db, sync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return open_fail(s, path, rc, NULL);
    rc = schema_open(s, path);
    if (rc != 0)
        return rc;
    for (i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                                NULL);
        if (rc != SQLITE_OK)
            return open_fail(s, path, rc, NULL);
    }
    return 0;
}

static int sq_open(void **impl, const struct faas_durable_engine_args *a)
{
    struct sq *s = faas_calloc(1, sizeof *s);
    int rc;

    if (!s)
        return FAAS_ENOMEM;
    s->rt = a->rt;
    s->report = a->report;
    s->report_ctx = a->report_ctx;
    s->efd = -1;
    s->path = faas_strdup(a->target);
    if (!s->path) {
        free(s);
        return FAAS_ENOMEM;
    }
    faas_list_init(&s->queue);
    faas_list_init(&s->done);
    pthread_mutex_init(&s->conn_mu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->done_mu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    rc = db_open(s, a->target, a->sync);
    if (rc == 0) {
        s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->efd >= 0)
            s->ev = event_new(a->rt->base, s->efd, EV_READ | EV_PERSIST, efd_cb, s);
        if (!s->ev || event_add(s->ev, NULL) != 0 ||
            pthread_create(&s->thread, NULL, writer_main, s) != 0)
            rc = open_fail(s, a->target, SQLITE_ERROR, "cannot start the writer thread");
    }
    if (rc != 0) {
        sq_free(s);
        return rc;
    }
    *impl = s;
    return 0;
}

int faas_durable_sqlite_exec(struct faas_durable *d, const char *sql)
{
    struct sq *s = faas_durable_impl(d);
    int rc;
    pthread_mutex_lock(&s->conn_mu);
    rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    pthread_mutex_unlock(&s->conn_mu);
    return rc == SQLITE_OK ? 0 : FAAS_EUNAVAILABLE;
}

const struct faas_durable_engine faas_durable_sqlite = {
    .scheme = "sqlite:",
    .open = sq_open,
    .submit = sq_submit,
    .events_load = sq_events_load,
    .records_load = sq_records_load,
    .schedules_load = sq_schedules_load,
    .idem_load = sq_idem_load,
    .stats = sq_stats,
    .close = sq_close,
};

#endif /* FAAS_WITH_SQLITE */

/*
 * durable_redis_queue.c - the Redis engine's queue shared by a fleet: which
 * host runs an async event (docs/durability.md, "The Redis engine").
 *
 * Each function's events are entries of a Redis Stream, P:q:FUNCTION, with
 * a consumer group `workers`; each host is one consumer, named by its node
 * id. Accepting an event adds its entry (the `put` script of
 * durable_redis_script.c); a host runs an event only when the stream
 * delivers it to this host, so any host that has the function registered
 * may run what another accepted, and a host without it never takes its
 * events. Ending, retrying and releasing are scripts of durable_redis.c's
 * link; this file reads, and keeps the leases of what it was delivered:
 *
 *   reading   XREADGROUP ... BLOCK on a connection of its own (`ac`), for
 *             the functions the runtime wants (faas_rq_want: registered,
 *             with credit: how many more events it takes now), COUNT the
 *             least credit, re-issued after each answer. A change of the
 *             functions while a read blocks unblocks it (CLIENT UNBLOCK on
 *             the main link). Its deadline is the block plus 2 s; a lost
 *             reader reconnects with the main link's backoff.
 *   held      the request ids delivered and not yet ended, retried or
 *             released (faas_rq_forget): a delivery of one already held is
 *             dropped (a `mine` after a reconnect repeats deliveries).
 *   the tick  once a second, on the main link: `due` moves each function's
 *             retries that are due back to its stream; `takeover` takes over
 *             entries no host touched for the function's lease
 *             (XAUTOCLAIM: a dead host's); `touch` renews the leases of
 *             what this host holds, so a live host never loses an event it
 *             holds, however long it waits for an instance.
 *   mine      at each connect of the reader, per function: the entries the
 *             stream already holds for this node (a restart under the same
 *             node id, a delivery whose answer the connection lost).
 *   stop      a drain: no more reads nor claims; leases are still renewed.
 *   leave     at close, per function: what the stream holds for this node
 *             goes back to the stream for the other hosts.
 *
 * Deliveries are struct faas_dop records of kind FAAS_DOP_DELIVER, handed
 * to the runtime through the engine's report (faas_rd_deliver), never from
 * inside hiredis. Called by durable_redis.c only. May call: hiredis,
 * libevent, hash.c, alloc.c, clock.c, durable_redis.c's link.
 */
#include "faas_int.h"

#if FAAS_WITH_REDIS

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>

#include "clock.h"
#include "durable_redis.h"

#define BLOCK_MS 5000u     /* a read's wait in Redis */
#define TICK_MS 1000u      /* due, claim, touch */
#define READ_COUNT_MAX 128u
#define CLAIM_COUNT_MAX 64u
#define MINE_COUNT 1000u
#define TOUCH_IDS 16       /* request ids per touch: FAAS_DOP_CALL_ARGS - 4 */

struct sub {
    struct faas_list link;
    struct rq *q;
    uint32_t credit;       /* events the runtime takes more, as it said */
    uint32_t lease_ms;
    int registered;
    int group_sent;        /* its `group` is queued or answered */
    int ready;             /* its consumer group exists */
    int in_read;           /* named by the read outstanding */
    int mine_due;          /* `mine` after the reader connected */
    uint32_t inflight;     /* delivered, not yet handed to the runtime */
    char cursor[48];       /* where the next takeover looks */
    struct faas_dop *touch; /* the tick's touch being filled */
    char key[];            /* P:q:FUNCTION; the name after the prefix */
};

struct held {
    struct faas_hnode hnode;
    struct sub *sub;       /* whose stream it came from */
    char rid[FAAS_REQUEST_ID_SIZE];
    char sid[48];          /* the stream entry it came in */
    char gone_sid[48];     /* the entry an end, retry or release sent
                              leaves ("" none) */
};

struct rq {
    struct rd *r;
    redisAsyncContext *ac;
    enum link_state state;
    long long client_id;   /* the reader's, for CLIENT UNBLOCK; -1 unknown */
    int reading;
    int unblock_sent;
    int stopped;
    int closing;           /* the engine closes: no reader, no tick */
    unsigned backoff_ms;
    struct event *tmr;     /* the read's deadline, or the reconnect */
    struct event *tick;
    struct faas_list subs;
    struct faas_htable held;
};

static const char *sub_name(const struct sub *s)
{
    return s->key + strlen(s->q->r->prefix) + 3;
}

static void arm(struct event *ev, unsigned ms)
{
    struct timeval tv = faas_rd_tv(ms);
    evtimer_add(ev, &tv);
}

/* ---- held request ids ----------------------------------------------------- */

static int held_eq(const struct faas_hnode *n, const void *rid)
{
    return strcmp(FAAS_CONTAINER_OF(n, struct held, hnode)->rid, rid) == 0;
}

static struct held *held_find(struct rq *q, const char *rid)
{
    struct faas_hnode *n = faas_htable_find(&q->held, faas_hash_str(rid), held_eq, rid);
    return n ? FAAS_CONTAINER_OF(n, struct held, hnode) : NULL;
}

void faas_rq_handed(struct faas_dop *op)
{
    struct sub *s = op->arg;
    if (s->inflight)
        s->inflight--;
}

void faas_rq_leaving(struct rd *r, const char *rid)
{
    struct held *h;
    if (r->q && rid && (h = held_find(r->q, rid)) != NULL)
        strcpy(h->gone_sid, h->sid);
}

void faas_rq_forget(struct rd *r, const char *rid)
{
    struct held *h;
    if (!r->q || !rid || !(h = held_find(r->q, rid)))
        return;
    /* Delivered again in another entry meanwhile: held in that one. */
    if (h->gone_sid[0] && strcmp(h->gone_sid, h->sid) != 0) {
        h->gone_sid[0] = '\0';
        return;
    }
    faas_htable_remove(&r->q->held, &h->hnode);
    free(h);
}

/* Takes `rid`, come in entry `sid`, as held: 1, or 0 when it already was
 * in that entry (or no memory: the delivery is dropped, and its lease runs
 * out for another host). Held in another entry, it is the event again, in
 * the entry a retry or a release of this host's made (Redis applied it,
 * its answer is still on the way). */
static int held_take(struct sub *s, const char *rid, const char *sid)
{
    struct rq *q = s->q;
    struct held *h;
    if (strlen(rid) >= FAAS_REQUEST_ID_SIZE || strlen(sid) >= sizeof h->sid)
        return 0;
    if ((h = held_find(q, rid)) != NULL) {
        if (strcmp(h->sid, sid) == 0)
            return 0;
        strcpy(h->sid, sid);
        h->sub = s;
        return 1;
    }
    if (faas_htable_reserve(&q->held) != 0 || !(h = faas_calloc(1, sizeof *h)))
        return 0;
    strcpy(h->rid, rid);
    strcpy(h->sid, sid);
    h->sub = s;
    faas_htable_insert(&q->held, &h->hnode, faas_hash_str(rid));
    return 1;
}

/* ---- operations on the main link ------------------------------------------- */

/* A FAAS_DOP_CALL of the queue: kind, the function, then `n` strings. */
static struct faas_dop *qop(struct sub *s, const char *kind, int n, const char *const *v,
                            size_t room)
{
    const char *name = sub_name(s);
    size_t extra = strlen(kind) + strlen(name) + 2 + room, i;
    struct faas_dop *op;
    char *cur;
    const char *all[FAAS_DOP_CALL_ARGS];

    for (i = 0; i < (size_t)n; i++)
        extra += strlen(v[i]) + 1;
    if (!(op = faas_calloc(1, sizeof *op + extra)))
        return NULL;
    op->kind = FAAS_DOP_CALL;
    op->arg = s;
    all[0] = kind;
    all[1] = name;
    for (i = 0; i < (size_t)n; i++)
        all[2 + i] = v[i];
    cur = op->buf;
    for (i = 0; i < (size_t)n + 2; i++) {
        size_t len = strlen(all[i]);
        memcpy(cur, all[i], len + 1);
        op->call_argv[i] = cur;
        op->call_len[i] = len;
        cur += len + 1;
    }
    op->call_argc = n + 2;
    return op;
}

/* Adds one more string to a qop made with room for it. */
static void qop_add(struct faas_dop *op, const char *v)
{
    const char *prev = op->call_argv[op->call_argc - 1];
    char *cur = (char *)prev + op->call_len[op->call_argc - 1] + 1;
    size_t len = strlen(v);
    memcpy(cur, v, len + 1);
    op->call_argv[op->call_argc] = cur;
    op->call_len[op->call_argc] = len;
    op->call_argc++;
}

static void read_issue(struct rq *q);

/* The fields of an event a delivery carries, in the order of F_NAMES. */
enum { F_RID, F_SID, F_EVENT, F_CC, F_TRACE, F_IDEM, F_ORIGIN, F_PROC, F_TIMEOUT, F_ATTEMPTS,
       F_ACCEPTED, F_DUE, F_COUNT };
static const char *const F_NAMES[F_COUNT] = { "rid", "sid", "event", "client_context",
                                              "trace_id", "idem_key", "origin", "proc",
                                              "timeout_ms", "attempts", "accepted_ms",
                                              "due_ms" };

/* One pass over a flat field/value array: f[i] the value of F_NAMES[i], or
 * NULL. */
static void fields(const redisReply *a, const redisReply *f[F_COUNT])
{
    size_t i;
    int j;

    memset(f, 0, F_COUNT * sizeof *f);
    if (a->type != REDIS_REPLY_ARRAY)
        return;
    for (i = 0; i + 1 < a->elements; i += 2) {
        if (a->element[i]->type != REDIS_REPLY_STRING ||
            a->element[i + 1]->type != REDIS_REPLY_STRING)
            continue;
        for (j = 0; j < F_COUNT; j++)
            if (strcmp(a->element[i]->str, F_NAMES[j]) == 0) {
                f[j] = a->element[i + 1];
                break;
            }
    }
}

static int64_t num(const redisReply *v)
{
    return v ? strtoll(v->str, NULL, 10) : 0;
}

/* Copies `len` bytes of `s` to *cur, NUL-terminated; s NULL: NULL. */
static const char *copy(char **cur, const char *s, size_t len)
{
    char *p = *cur;
    if (!s)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    *cur = p + len + 1;
    return p;
}

static const char *copy_reply(char **cur, const redisReply *v)
{
    return v ? copy(cur, v->str, v->len) : NULL;
}

/*
 * One event, its hash's fields in `a`, for this host, come in stream entry
 * `sid` (NULL: the hash's own): handed to the runtime unless held already.
 * Returns 1 when delivered.
 */
static int deliver(struct sub *s, const redisReply *a, const char *sid)
{
    struct rq *q = s->q;
    const char *fn = sub_name(s);
    const redisReply *f[F_COUNT];
    struct faas_dop *op;
    size_t room = strlen(fn) + 1;
    char *cur;
    int i;

    fields(a, f);
    if (!sid)
        sid = f[F_SID] ? f[F_SID]->str : "";
    if (!f[F_RID] || !f[F_EVENT] || !held_take(s, f[F_RID]->str, sid))
        return 0;
    s->inflight++;
    for (i = F_EVENT; i <= F_ORIGIN; i++)
        room += f[i] ? f[i]->len + 1 : 0;
    if (!(op = faas_calloc(1, sizeof *op + room))) {
        faas_rq_forget(q->r, f[F_RID]->str);
        s->inflight--;
        return 0;
    }
    op->kind = FAAS_DOP_DELIVER;
    op->arg = s;
    /* Another process accepted it (faas.h): a restart, another host. */
    op->recovered = !f[F_PROC] || strcmp(f[F_PROC]->str, q->r->proc) != 0;
    cur = op->buf;
    snprintf(op->ev.request_id, sizeof op->ev.request_id, "%s", f[F_RID]->str);
    op->ev.function = copy(&cur, fn, strlen(fn));
    op->ev.event = copy_reply(&cur, f[F_EVENT]);
    op->ev.event_len = f[F_EVENT]->len;
    op->ev.client_context = copy_reply(&cur, f[F_CC]);
    op->ev.trace_id = copy_reply(&cur, f[F_TRACE]);
    op->ev.idem_key = copy_reply(&cur, f[F_IDEM]);
    op->ev.origin = copy_reply(&cur, f[F_ORIGIN]);
    op->ev.timeout_ms = (uint32_t)num(f[F_TIMEOUT]);
    op->ev.attempts = (uint32_t)num(f[F_ATTEMPTS]);
    op->ev.accepted_ms = num(f[F_ACCEPTED]);
    op->ev.due_ms = num(f[F_DUE]);
    faas_rd_deliver(q->r, op);
    return 1;
}

/* A mine's answer: {0, hash, hash, ...}; a takeover's: {0, the cursor of
 * the next takeover, hash, ...}. */
static void on_events(struct faas_dop *op, const void *reply)
{
    const redisReply *rep = reply;
    struct sub *s = op->arg;
    size_t i = 1;

    if (strcmp(op->call_argv[0], "takeover") == 0 && rep->elements > 1 &&
        rep->element[1]->type == REDIS_REPLY_STRING &&
        rep->element[1]->len < sizeof s->cursor)
        memcpy(s->cursor, rep->element[i++]->str, rep->element[1]->len + 1);
    for (; i < rep->elements; i++)
        if (deliver(s, rep->element[i], NULL) && s->credit)
            s->credit--;
}

static void on_group(struct faas_dop *op, const void *reply)
{
    struct sub *s = op->arg;
    (void)reply;
    s->ready = 1;
    read_issue(s->q);
}

static void submit(struct rq *q, struct faas_dop *op, int adds,
                   void (*answer)(struct faas_dop *, const void *))
{
    op->adds = adds;
    op->quiet = 1;
    op->call_answer = answer;
    faas_rd_submit(q->r, op);
}

static void group_send(struct sub *s)
{
    struct faas_dop *op = qop(s, "group", 0, NULL, 0);
    if (!op)
        return; /* the next want tries again */
    s->group_sent = 1;
    submit(s->q, op, 0, on_group);
}

/* `mine` or `takeover` of one function. */
static void take_send(struct sub *s, const char *kind, uint32_t count)
{
    struct rq *q = s->q;
    char idle[24], n[24];
    const char *v[4];
    struct faas_dop *op;

    snprintf(idle, sizeof idle, "%u", (unsigned)s->lease_ms);
    snprintf(n, sizeof n, "%u", (unsigned)count);
    v[0] = q->r->node;
    if (strcmp(kind, "takeover") == 0) {
        v[1] = idle;
        v[2] = n;
        v[3] = s->cursor;
    } else {
        v[1] = n;
    }
    op = qop(s, kind, strcmp(kind, "takeover") == 0 ? 4 : 2, v, 0);
    if (op)
        submit(q, op, 1, on_events);
}

/* ---- the reader ------------------------------------------------------------- */

static void on_read(redisAsyncContext *ac, void *reply, void *priv);

static int readable(const struct rq *q, const struct sub *s)
{
    return s->registered && s->ready && s->credit > 0 && !q->stopped;
}

/* Unblocks the read outstanding (its functions changed), on the main link. */
static void unblock(struct rq *q)
{
    struct rd *r = q->r;
    if (!q->reading || q->unblock_sent || q->client_id < 0 || r->state != LINK_UP ||
        !r->ac)
        return;
    if (redisAsyncCommand(r->ac, NULL, NULL, "CLIENT UNBLOCK %lld", q->client_id) == REDIS_OK)
        q->unblock_sent = 1;
}

static void read_issue(struct rq *q)
{
    struct faas_list *e;
    const char **argv;
    size_t *lens;
    uint32_t count = READ_COUNT_MAX;
    int n = 0, i, argc;
    char cnt[16], block[16];

    if (q->state != LINK_UP || q->reading || q->client_id < 0 || q->stopped)
        return;
    for (e = q->subs.next; e != &q->subs; e = e->next) {
        struct sub *s = FAAS_CONTAINER_OF(e, struct sub, link);
        if (readable(q, s)) {
            n++;
            if (s->credit < count)
                count = s->credit;
        }
    }
    if (n == 0)
        return;
    argc = 9 + 2 * n;
    argv = faas_calloc((size_t)argc, sizeof *argv);
    lens = faas_calloc((size_t)argc, sizeof *lens);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return; /* the next want tries again */
    }
    snprintf(cnt, sizeof cnt, "%u", (unsigned)count);
    snprintf(block, sizeof block, "%u", BLOCK_MS);
    argv[0] = "XREADGROUP";
    argv[1] = "GROUP";
    argv[2] = "workers";
    argv[3] = q->r->node;
    argv[4] = "COUNT";
    argv[5] = cnt;
    argv[6] = "BLOCK";
    argv[7] = block;
    argv[8] = "STREAMS";
    i = 9;
    for (e = q->subs.next; e != &q->subs; e = e->next) {
        struct sub *s = FAAS_CONTAINER_OF(e, struct sub, link);
        s->in_read = readable(q, s);
        if (s->in_read) {
            argv[i] = s->key;
            argv[i + n] = ">";
            i++;
        }
    }
    for (i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (redisAsyncCommandArgv(q->ac, on_read, q, argc, argv, lens) == REDIS_OK) {
        q->reading = 1;
        q->unblock_sent = 0;
        arm(q->tmr, BLOCK_MS + 2000u);
    }
    free(argv);
    free(lens);
}

static struct sub *sub_by_key(struct rq *q, const char *key)
{
    struct faas_list *e;
    for (e = q->subs.next; e != &q->subs; e = e->next) {
        struct sub *s = FAAS_CONTAINER_OF(e, struct sub, link);
        if (strcmp(s->key, key) == 0)
            return s;
    }
    return NULL;
}

static void read_done(struct rq *q)
{
    struct faas_list *e;
    if (!q->reading)
        return;
    q->reading = 0;
    evtimer_del(q->tmr);
    for (e = q->subs.next; e != &q->subs; e = e->next)
        FAAS_CONTAINER_OF(e, struct sub, link)->in_read = 0;
}

static void on_read(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rq *q = priv;
    const redisReply *rep = reply;
    size_t i, j;

    if (ac != q->ac || !rep)
        return; /* the loss is on_disconnect's */
    read_done(q);
    if (rep->type == REDIS_REPLY_ERROR) {
        struct faas_list *e;
        faas_rd_log(q->r, "reading the queue failed: ", rep->str);
        if (strncmp(rep->str, "NOGROUP", 7) != 0) {
            /* Anything else: dropped, read again after the backoff. */
            redisAsyncDisconnect(q->ac);
            return;
        }
        /* NOGROUP: the server lost its streams (no persistence): again. */
        for (e = q->subs.next; e != &q->subs; e = e->next) {
            struct sub *s = FAAS_CONTAINER_OF(e, struct sub, link);
            s->ready = 0;
            s->group_sent = 0;
            if (s->registered)
                group_send(s);
        }
        return;
    }
    if (rep->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < rep->elements; i++) {
            const redisReply *st = rep->element[i];
            struct sub *s;
            if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 ||
                st->element[0]->type != REDIS_REPLY_STRING ||
                !(s = sub_by_key(q, st->element[0]->str)))
                continue;
            for (j = 0; j < st->element[1]->elements; j++) {
                const redisReply *en = st->element[1]->element[j];
                if (en->type == REDIS_REPLY_ARRAY && en->elements == 2 &&
                    en->element[0]->type == REDIS_REPLY_STRING &&
                    deliver(s, en->element[1], en->element[0]->str) && s->credit)
                    s->credit--;
            }
        }
    }
    read_issue(q);
}

static void on_client_id(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rq *q = priv;
    const redisReply *rep = reply;
    struct faas_list *e;

    if (ac != q->ac || !rep || rep->type != REDIS_REPLY_INTEGER)
        return;
    q->client_id = rep->integer;
    q->backoff_ms = BACKOFF_FIRST_MS;
    evtimer_del(q->tmr);
    for (e = q->subs.next; e != &q->subs; e = e->next)
        FAAS_CONTAINER_OF(e, struct sub, link)->mine_due = 1;
    read_issue(q);
}

static void reader_down(struct rq *q)
{
    q->state = LINK_DOWN;
    q->ac = NULL;
    q->client_id = -1;
    read_done(q);
    arm(q->tmr, q->backoff_ms);
    q->backoff_ms = q->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : q->backoff_ms * 2;
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    struct rq *q = cac->data;
    char db[24];

    if (cac != q->ac)
        return;
    if (status != REDIS_OK) {
        reader_down(q); /* hiredis frees it */
        return;
    }
    q->state = LINK_UP;
    arm(q->tmr, CONNECT_TIMEOUT_MS); /* until CLIENT ID answers */
    snprintf(db, sizeof db, "%d", q->r->db);
    if (q->r->db)
        redisAsyncCommand(q->ac, NULL, NULL, "SELECT %s", db);
    redisAsyncCommand(q->ac, on_client_id, q, "CLIENT ID");
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct rq *q = cac->data;
    (void)status;
    if (cac == q->ac)
        reader_down(q);
}

static void reader_start(struct rq *q)
{
    redisAsyncContext *ac = redisAsyncConnect(q->r->host, q->r->port);

    q->state = LINK_CONNECTING;
    if (!ac || ac->err || redisLibeventAttach(ac, q->r->base) != REDIS_OK) {
        if (ac)
            redisAsyncFree(ac);
        reader_down(q);
        return;
    }
    ac->data = q;
    q->ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    arm(q->tmr, CONNECT_TIMEOUT_MS);
}

static void on_tmr(evutil_socket_t fd, short what, void *arg)
{
    struct rq *q = arg;
    redisAsyncContext *ac = q->ac;
    (void)fd;
    (void)what;
    if (q->state == LINK_DOWN) {
        reader_start(q);
        return;
    }
    /* Connecting or reading too long: dropped, and again after the backoff. */
    q->ac = NULL;
    reader_down(q);
    if (ac)
        redisAsyncFree(ac);
}

/* ---- the tick ------------------------------------------------------------------ */

static void touch_flush(struct sub *s)
{
    if (s->touch)
        submit(s->q, s->touch, 1, NULL);
    s->touch = NULL;
}

/* Renews the leases of every held event, a touch per function and
 * TOUCH_IDS ids. */
static void touch_all(struct rq *q)
{
    struct faas_hnode *n;
    struct faas_list *e;
    const char *v[1] = { q->r->node };

    for (n = faas_htable_first(&q->held); n; n = faas_htable_next(&q->held, n)) {
        struct held *h = FAAS_CONTAINER_OF(n, struct held, hnode);
        struct sub *s = h->sub;
        if (s->touch && s->touch->call_argc >= 3 + TOUCH_IDS)
            touch_flush(s);
        if (!s->touch &&
            !(s->touch = qop(s, "touch", 1, v, (size_t)TOUCH_IDS * FAAS_REQUEST_ID_SIZE)))
            break;
        qop_add(s->touch, h->rid);
    }
    for (e = q->subs.next; e != &q->subs; e = e->next)
        touch_flush(FAAS_CONTAINER_OF(e, struct sub, link));
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct rq *q = arg;
    struct faas_list *e;
    char now[24];

    (void)fd;
    (void)what;
    arm(q->tick, TICK_MS);
    if (q->r->state != LINK_UP)
        return;
    snprintf(now, sizeof now, "%lld", (long long)(faas_wall_ns(q->r->rt) / 1000000));
    for (e = q->subs.next; e != &q->subs; e = e->next) {
        struct sub *s = FAAS_CONTAINER_OF(e, struct sub, link);
        const char *v[1] = { now };
        struct faas_dop *op;
        if (!s->registered || !s->ready || q->stopped)
            continue;
        if ((op = qop(s, "due", 1, v, 0)) != NULL)
            submit(q, op, 1, NULL);
        if (s->mine_due) {
            s->mine_due = 0;
            take_send(s, "mine", MINE_COUNT);
        }
        if (s->credit > 0)
            take_send(s, "takeover", s->credit < CLAIM_COUNT_MAX ? s->credit : CLAIM_COUNT_MAX);
    }
    if (q->held.count)
        touch_all(q);
}

/* ---- the engine's calls ------------------------------------------------------- */

int faas_rq_open(struct rd *r)
{
    struct rq *q = faas_calloc(1, sizeof *q);

    if (!q)
        return FAAS_ENOMEM;
    q->r = r;
    q->client_id = -1;
    q->backoff_ms = BACKOFF_FIRST_MS;
    faas_list_init(&q->subs);
    r->q = q;
    if (faas_htable_init(&q->held, 64) != 0 ||
        !(q->tmr = evtimer_new(r->base, on_tmr, q)) ||
        !(q->tick = evtimer_new(r->base, on_tick, q)))
        return FAAS_ENOMEM; /* faas_rq_free takes what was made */
    return 0;
}

void faas_rq_link_up(struct rd *r)
{
    struct faas_list *e;
    struct rq *q = r->q;

    for (e = q->subs.next; e != &q->subs; e = e->next) {
        struct sub *s = FAAS_CONTAINER_OF(e, struct sub, link);
        /* A takeover or mine whose answer the lost link carried: asked
         * again, so what it took is not left unrenewed. */
        s->mine_due = 1;
        if (s->registered && !s->group_sent)
            group_send(s);
    }
}

void faas_rq_want(void *impl, const char *function, int registered, uint32_t credit,
                  uint32_t lease_ms)
{
    struct rd *r = impl;
    struct rq *q = r->q;
    struct sub *s;
    char key[1024];
    size_t len;

    if (snprintf(key, sizeof key, "%s:q:%s", r->prefix, function) >= (int)sizeof key)
        return;
    if (!(s = sub_by_key(q, key))) {
        if (!registered)
            return;
        len = strlen(key) + 1;
        if (!(s = faas_calloc(1, sizeof *s + len)))
            return;
        memcpy(s->key, key, len);
        strcpy(s->cursor, "0-0");
        s->q = q;
        s->mine_due = 1;
        faas_list_insert_tail(&q->subs, &s->link);
    }
    s->registered = registered;
    /* What was delivered and not yet handed over counts as taken. */
    s->credit = registered && credit > s->inflight ? credit - s->inflight : 0;
    s->lease_ms = lease_ms;
    if (q->closing)
        return;
    if (registered && !s->group_sent)
        group_send(s);
    if (!q->ac && q->state == LINK_DOWN && !evtimer_pending(q->tmr, NULL))
        reader_start(q);
    if (!evtimer_pending(q->tick, NULL))
        arm(q->tick, TICK_MS);
    /* A function to add to the read blocked now: unblocked, read again.
     * One to leave out stays until the read answers (COUNT bounds what it
     * may still bring). */
    if (q->reading && readable(q, s) && !s->in_read)
        unblock(q);
    read_issue(q);
}

void faas_rq_stop(void *impl)
{
    struct rd *r = impl;
    r->q->stopped = 1;
    unblock(r->q);
}

void faas_rq_close_reader(struct rd *r)
{
    struct rq *q = r->q;
    redisAsyncContext *ac = q->ac;

    q->stopped = 1;
    q->closing = 1;
    q->ac = NULL;
    read_done(q);
    q->state = LINK_DOWN;
    if (ac)
        redisAsyncFree(ac);
    evtimer_del(q->tmr);
    evtimer_del(q->tick);
}

void faas_rq_leave(struct rd *r)
{
    struct rq *q = r->q;
    struct faas_list *e;
    char n[24];

    snprintf(n, sizeof n, "%u", MINE_COUNT);
    for (e = q->subs.next; e != &q->subs; e = e->next) {
        struct sub *s = FAAS_CONTAINER_OF(e, struct sub, link);
        const char *v[2] = { r->node, n };
        struct faas_dop *op;
        if (s->ready && (op = qop(s, "leave", 2, v, 0)) != NULL)
            submit(q, op, 0, NULL);
    }
}

void faas_rq_free(struct rd *r)
{
    struct rq *q = r->q;
    struct faas_hnode *n;
    struct faas_list *e;

    if (!q)
        return;
    if (q->ac) {
        redisAsyncContext *ac = q->ac;
        q->ac = NULL;
        redisAsyncFree(ac);
    }
    while ((n = faas_htable_first(&q->held)) != NULL) {
        faas_htable_remove(&q->held, n);
        free(FAAS_CONTAINER_OF(n, struct held, hnode));
    }
    faas_htable_fini(&q->held);
    while ((e = faas_list_pop_head(&q->subs)) != NULL)
        free(FAAS_CONTAINER_OF(e, struct sub, link));
    if (q->tmr)
        event_free(q->tmr);
    if (q->tick)
        event_free(q->tick);
    free(q);
    r->q = NULL;
}

#endif /* FAAS_WITH_REDIS */

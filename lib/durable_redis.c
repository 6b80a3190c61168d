/*
 * durable_redis.c - the Redis engine of durable.h ("redis://HOST:PORT[/DB]").
 *
 * Writing happens on the runtime's loop: hiredis' async API attached to the
 * runtime's event_base with its libevent adapter. Every operation is one
 * call of one Lua script (SCRIPT LOAD at each connect, then EVALSHA), so
 * each operation, an event's end with its destination included, is atomic
 * in Redis. Operations are pipelined on one connection and Redis answers
 * them in order: a reply completes the head of `sent`, and completions are
 * handed to the report callback from the `kick` event, never from inside
 * hiredis nor inside the submitting call.
 *
 * Keys, all under the prefix P (faas_runtime_opts.durable_prefix):
 *   P:ev:RID              hash: one event's fields, plus `sid` (its entry
 *                         in the function's stream)
 *   P:q:FUNCTION          stream, group `workers`: the fleet's queue of the
 *                         function (durable_redis_queue.c)
 *   P:retry:FUNCTION      zset: RIDs waiting for a retry, by due time
 *   P:qbytes:FUNCTION     the bytes of the function's kept events
 *   P:rec:NODE:MAPPING:SEQ  hash: one record of host NODE's mapping
 *                         (arrived_ms, record, key)
 *   P:recs:NODE:MAPPING   zset: the mapping's seqs
 *   P:sched               hash: schedule name -> fired_ms
 *   P:schednode           hash: schedule name -> the node that fired it
 *                         (a claim's winner: a re-sent claim wins again)
 *   P:idem:SCOPE:KEY      hash: one idempotency record written through
 *                         (durable_store.c's; unused while idem.c takes
 *                         the shared store)
 *   P:idems:SCOPE         zset: the scope's keys by last write
 *   P:store:SCOPE:KEY     hash: a record of the store shared by the fleet
 *                         (durable_redis_store.c, FAAS_DOP_CALL operations)
 *   P:seq                 counter behind P:idems' order
 * The scripts build key names from the prefix: one Redis server (or a
 * primary with replicas), not Redis Cluster.
 *
 * Deadlines come from the runtime's own timers (hiredis 0.14 has none):
 * `tmr` is the reconnect backoff while the link is down, the connect
 * deadline while connecting, and while commands are in flight the time a
 * reply may take after the previous one (CMD_TIMEOUT_MS). A timeout, an
 * error reply or a lost connection drops the link: adding operations in
 * flight or queued complete with FAAS_EUNAVAILABLE; the others are kept,
 * in order, and re-sent after the reconnect (every script is idempotent:
 * a re-sent put of the same event answers as the first did). Reconnects
 * back off from 100 ms doubling to 5 s: never a busy loop. While the link
 * is down after a loss, adding operations are refused at once; before the
 * first connect completes they wait for it.
 *
 * Opening connects a second, blocking connection (redisContext, with a
 * timeout of CONNECT_TIMEOUT_MS for the connect and for each command) and
 * fails with FAAS_EUNAVAILABLE when Redis does not answer its SELECT and
 * SCRIPT LOAD in time: the loads,
 * which durable.h makes synchronous at setup, use it, and so does close,
 * which commits what is still queued while the link is up. No blocking call
 * runs anywhere else. The host name is resolved once, at open.
 *
 * Built only with FAAS_WITH_REDIS (make WITH_REDIS=0 leaves it out).
 *
 * Owns struct rd, both connections and the two events. Called through
 * faas_durable_redis (durable_engine.h) by durable.c only. May call:
 * hiredis, libevent, alloc.c, metrics.c's log records; reports through
 * the callback it was given.
 */
#if FAAS_WITH_REDIS

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>

#include "durable_redis.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct timeval faas_rd_tv(unsigned ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000u);
    tv.tv_usec = (suseconds_t)((ms % 1000u) * 1000u);
    return tv;
}

void faas_rd_log(struct rd *r, const char *fmt, const char *why)
{
    faas_log_event(r->rt, FAAS_LOG_WARNING, NULL, NULL, "durable", NULL, "%s: %s%s", r->url,
                   fmt, why ? why : "");
}

/* ---- an operation's arguments ------------------------------------------ */

struct args {
    const char *v[ARGV_MAX];
    size_t len[ARGV_MAX];
    int n;
    char num[12][24];
    int nums;
};

static void arg_mem(struct args *a, const char *s, size_t len)
{
    a->v[a->n] = s;
    a->len[a->n] = len;
    a->n++;
}

static void arg_str(struct args *a, const char *s)
{
    arg_mem(a, s, strlen(s));
}

static void arg_i64(struct args *a, int64_t v)
{
    char *p = a->num[a->nums++];
    snprintf(p, sizeof a->num[0], "%lld", (long long)v);
    arg_str(a, p);
}

/* A field and its value, when the value exists; counts in *pairs. */
static void arg_pair(struct args *a, const char *field, const char *v, size_t len, int *pairs)
{
    if (!v)
        return;
    arg_str(a, field);
    arg_mem(a, v, len);
    *pairs += 2;
}

static void arg_pair_i64(struct args *a, const char *field, int64_t v, int *pairs)
{
    arg_str(a, field);
    arg_i64(a, v);
    *pairs += 2;
}

/* An event's put, from ARGV[i] on (the script's put(i)). */
static void args_event(const struct rd *r, struct args *a, const struct faas_durable_event *ev)
{
    int pairs = 0, count;
    const char *s;

    arg_str(a, ev->request_id);
    arg_str(a, ev->function);
    arg_i64(a, ev->accepted_ms);
    arg_str(a, ev->origin ? ev->origin : "");
    arg_i64(a, ev->queue_max);
    arg_i64(a, (int64_t)ev->queue_max_bytes);
    count = a->n;
    arg_str(a, "0"); /* the pairs' count, set below */
    arg_pair(a, "event", ev->event, ev->event_len, &pairs);
    s = ev->client_context;
    arg_pair(a, "client_context", s, s ? strlen(s) : 0, &pairs);
    s = ev->trace_id;
    arg_pair(a, "trace_id", s, s ? strlen(s) : 0, &pairs);
    s = ev->idem_key;
    arg_pair(a, "idem_key", s, s ? strlen(s) : 0, &pairs);
    arg_pair_i64(a, "timeout_ms", ev->timeout_ms, &pairs);
    arg_pair_i64(a, "attempts", ev->attempts, &pairs);
    arg_pair_i64(a, "due_ms", ev->due_ms, &pairs);
    arg_pair(a, "proc", r->proc, strlen(r->proc), &pairs);
    snprintf(a->num[a->nums], sizeof a->num[0], "%d", pairs);
    a->v[count] = a->num[a->nums];
    a->len[count] = strlen(a->num[a->nums]);
    a->nums++;
}

static void args_idem(struct args *a, const struct faas_durable_idem *rec)
{
    int pairs = 0, count;

    arg_str(a, rec->scope);
    arg_str(a, rec->key);
    count = a->n;
    arg_str(a, "0");
    arg_pair_i64(a, "state", rec->state, &pairs);
    arg_pair_i64(a, "status", rec->status, &pairs);
    arg_pair_i64(a, "expires_ms", rec->expires_ms, &pairs);
    arg_pair(a, "payload", rec->payload, rec->payload_len, &pairs);
    arg_pair(a, "validation", rec->validation, rec->validation ? strlen(rec->validation) : 0,
             &pairs);
    arg_pair(a, "owner", rec->owner, rec->owner ? strlen(rec->owner) : 0, &pairs);
    snprintf(a->num[a->nums], sizeof a->num[0], "%d", pairs);
    a->v[count] = a->num[a->nums];
    a->len[count] = strlen(a->num[a->nums]);
    a->nums++;
}

/* The EVALSHA of `op`. */
static void op_args(const struct rd *r, const struct faas_dop *op, struct args *a)
{
    a->n = 0;
    a->nums = 0;
    arg_str(a, "EVALSHA");
    arg_str(a, r->sha);
    arg_str(a, "0");
    arg_str(a, r->prefix);
    switch (op->kind) {
    case FAAS_DOP_EVENT_PUT:
        arg_str(a, op->resent ? "putr" : "put");
        args_event(r, a, &op->ev);
        break;
    case FAAS_DOP_EVENT_ATTEMPT:
        arg_str(a, "attempt");
        arg_str(a, op->name);
        arg_i64(a, op->attempts);
        arg_str(a, r->node);
        break;
    case FAAS_DOP_EVENT_RELEASE:
        arg_str(a, "release");
        arg_str(a, op->name);
        arg_i64(a, op->attempts);
        arg_str(a, r->node);
        break;
    case FAAS_DOP_DELIVER:
        break; /* never submitted */
    case FAAS_DOP_EVENT_RETRY:
        arg_str(a, "retry");
        arg_str(a, op->name);
        arg_i64(a, op->when_ms);
        arg_str(a, r->node);
        break;
    case FAAS_DOP_EVENT_END:
        arg_str(a, op->resent ? "endr" : "end");
        arg_str(a, op->name);
        if (op->has_next)
            args_event(r, a, &op->ev);
        break;
    case FAAS_DOP_RECORD_PUT:
        arg_str(a, "rput");
        arg_str(a, r->node);
        arg_str(a, op->rec.mapping);
        arg_i64(a, (int64_t)op->rec.seq);
        arg_i64(a, op->rec.arrived_ms);
        arg_mem(a, op->rec.record, op->rec.record_len);
        if (op->rec.key)
            arg_str(a, op->rec.key);
        break;
    case FAAS_DOP_RECORD_DEL:
        arg_str(a, "rdel");
        arg_str(a, r->node);
        arg_str(a, op->name);
        arg_i64(a, (int64_t)op->seq);
        break;
    case FAAS_DOP_SCHEDULE_SET:
        arg_str(a, "sched");
        arg_str(a, op->name);
        arg_i64(a, op->when_ms);
        break;
    case FAAS_DOP_SCHEDULE_CLAIM:
        arg_str(a, "claim");
        arg_str(a, op->name);
        arg_i64(a, op->when_ms);
        arg_i64(a, (int64_t)op->seq);
        arg_str(a, r->node);
        break;
    case FAAS_DOP_IDEM_SET:
        arg_str(a, "iset");
        args_idem(a, &op->idem);
        break;
    case FAAS_DOP_IDEM_DEL:
        if (op->idem.key) {
            arg_str(a, "idel");
            arg_str(a, op->idem.scope);
            arg_str(a, op->idem.key);
        } else {
            arg_str(a, "isweep");
            arg_str(a, op->idem.scope);
            arg_i64(a, op->when_ms);
        }
        break;
    case FAAS_DOP_NOP:
        arg_str(a, "nop");
        break;
    case FAAS_DOP_CALL:
        for (int i = 0; i < op->call_argc; i++)
            arg_mem(a, op->call_argv[i], op->call_len[i]);
        break;
    }
}

/* A reply that is no script's answer (an error: the link is dropped). */
#define NOT_AN_ANSWER 1

/*
 * The completion code of op's reply, or NOT_AN_ANSWER. A store's call
 * answers an array led by its code (0, FAAS_ENOENT, FAAS_EEXIST), read by
 * the call's own reader; a claim {1, due} (won) or {0, the fleet's last
 * fire} (FAAS_EEXIST); the others 1 (done), 0 (FAAS_EEXIST) or -1 (a full
 * queue: FAAS_ETHROTTLED).
 */
static int reply_rc(struct faas_dop *op, const redisReply *rep)
{
    if (!rep)
        return NOT_AN_ANSWER;
    if (op->kind == FAAS_DOP_CALL) {
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
            rep->element[0]->type != REDIS_REPLY_INTEGER)
            return NOT_AN_ANSWER;
        if (op->call_answer)
            op->call_answer(op, rep);
        return (int)rep->element[0]->integer;
    }
    if (op->kind == FAAS_DOP_SCHEDULE_CLAIM) {
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_INTEGER ||
            rep->element[1]->type != REDIS_REPLY_INTEGER)
            return NOT_AN_ANSWER;
        op->when_ms = rep->element[1]->integer;
        return rep->element[0]->integer == 1 ? 0 : FAAS_EEXIST;
    }
    if (rep->type != REDIS_REPLY_INTEGER)
        return NOT_AN_ANSWER;
    return rep->integer == 1 ? 0 : rep->integer == -1 ? FAAS_ETHROTTLED : FAAS_EEXIST;
}

/* ---- completions -------------------------------------------------------- */

/* An event this host held leaves it once Redis applied its end, retry or
 * release: an upkeep answer sent before (a mine, a takeover) may still
 * name it, and finds it held. */
static int leaves_held(const struct faas_dop *op)
{
    return op->kind == FAAS_DOP_EVENT_END || op->kind == FAAS_DOP_EVENT_RETRY ||
           op->kind == FAAS_DOP_EVENT_RELEASE;
}

/* Deliveries wait until every operation submitted before they arrived
 * completed: a host hears that its own event was accepted (the put's
 * answer, on the main link) before the event runs (the read's answer, on
 * the other connection, which Redis may send first). */
static void release_deliveries(struct rd *r)
{
    struct faas_list *e;
    while ((e = r->deliveries.next) != &r->deliveries &&
           FAAS_CONTAINER_OF(e, struct faas_dop, link)->seq <= r->ncompleted) {
        faas_list_remove(e);
        faas_rq_handed(FAAS_CONTAINER_OF(e, struct faas_dop, link));
        faas_list_insert_tail(&r->done, e);
        event_active(r->kick, 0, 0);
    }
}

static void finish(struct rd *r, struct faas_dop *op, int rc)
{
    if (leaves_held(op))
        faas_rq_forget(r, op->name);
    op->rc = rc;
    r->st.pending -= !op->quiet;
    if (rc == FAAS_EUNAVAILABLE)
        r->st.refused++;
    faas_list_insert_tail(&r->done, &op->link);
    event_active(r->kick, 0, 0);
    r->ncompleted++;
    release_deliveries(r);
}

/* Refuses the adding operations of `l`; the others stay, in order. */
static void refuse_adding(struct rd *r, struct faas_list *l)
{
    struct faas_list *e, *next;
    for (e = l->next; e != l; e = next) {
        struct faas_dop *op = FAAS_CONTAINER_OF(e, struct faas_dop, link);
        next = e->next;
        if (op->adds) {
            faas_list_remove(e);
            finish(r, op, FAAS_EUNAVAILABLE);
        }
    }
}

/* `sent` goes back to the front of `queue`, in order. */
static void unsend(struct rd *r)
{
    struct faas_list *e;
    /* Redis may have applied them: a put sent again checks for itself. */
    for (e = r->sent.next; e != &r->sent; e = e->next)
        FAAS_CONTAINER_OF(e, struct faas_dop, link)->resent = 1;
    faas_list_splice(&r->sent, &r->queue);
    faas_list_splice(&r->queue, &r->sent);
}

static void arm(struct rd *r, unsigned ms)
{
    struct timeval tv = faas_rd_tv(ms);
    evtimer_add(r->tmr, &tv);
}

/*
 * The link is lost (why, for the log): what was sent is kept or refused,
 * and a reconnect is due after the backoff. `free_ac`: the context is still
 * the engine's to free (hiredis frees it when it reported the loss).
 */
static void link_fail(struct rd *r, const char *why, int free_ac)
{
    redisAsyncContext *ac = r->ac;

    if (!r->lost)
        faas_rd_log(r, "Redis unreachable, operations that add work are refused until it is back: ",
               why);
    r->lost = 1;
    r->state = LINK_DOWN;
    r->ac = NULL;
    unsend(r);
    refuse_adding(r, &r->queue);
    if (ac && free_ac)
        redisAsyncFree(ac);
    arm(r, r->backoff_ms);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* ---- sending -------------------------------------------------------------- */

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Sends op; 0, or -1 when the context refused it (the link is dropped). */
static int send_op(struct rd *r, struct faas_dop *op)
{
    struct args a;
    op_args(r, op, &a);
    if (redisAsyncCommandArgv(r->ac, on_reply, r, a.n, a.v, a.len) != REDIS_OK) {
        faas_list_insert_head(&r->queue, &op->link);
        r->drop = 1;
        event_active(r->kick, 0, 0);
        return -1;
    }
    op->sent_ns = mono_ns();
    if (faas_list_empty(&r->sent))
        arm(r, CMD_TIMEOUT_MS);
    faas_list_insert_tail(&r->sent, &op->link);
    return 0;
}

static void send_queue(struct rd *r)
{
    struct faas_list *e;
    while (r->state == LINK_UP && !r->drop && (e = faas_list_pop_head(&r->queue)) != NULL)
        if (send_op(r, FAAS_CONTAINER_OF(e, struct faas_dop, link)) != 0)
            return;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rd *r = priv;
    const redisReply *rep = reply;
    struct faas_list *e;
    struct faas_dop *op;
    uint64_t ns;
    int rc;

    /* A context being freed answers NULL: the loss was handled. */
    if (ac != r->ac || !rep || (e = faas_list_pop_head(&r->sent)) == NULL)
        return;
    op = FAAS_CONTAINER_OF(e, struct faas_dop, link);
    rc = reply_rc(op, rep);
    if (rc == NOT_AN_ANSWER) {
        if (!r->lost)
            faas_rd_log(r, "a script failed: ", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
        faas_list_insert_head(&r->sent, e);
        r->drop = 1;
        event_active(r->kick, 0, 0);
        return;
    }
    ns = mono_ns() - op->sent_ns;
    r->st.commits++;
    r->st.commit_ns_sum += ns;
    r->st.commit_buckets[faas_durable_bucket((double)ns / 1e9)]++;
    finish(r, op, rc);
    if (faas_list_empty(&r->sent))
        evtimer_del(r->tmr);
    else
        arm(r, CMD_TIMEOUT_MS);
}

/* SELECT and SCRIPT LOAD at each connect: an error drops the link. */
static void on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rd *r = priv;
    const redisReply *rep = reply;
    if (ac != r->ac || !rep || rep->type != REDIS_REPLY_ERROR)
        return;
    faas_rd_log(r, "setting the connection up failed: ", rep->str);
    r->drop = 1;
    event_active(r->kick, 0, 0);
}

/* ---- the link ------------------------------------------------------------- */

static void on_connect(const redisAsyncContext *cac, int status)
{
    struct rd *r = cac->data;
    char db[24];

    if (cac != r->ac)
        return;
    if (status != REDIS_OK) {
        link_fail(r, cac->errstr, 0); /* hiredis frees it */
        return;
    }
    if (r->lost)
        faas_rd_log(r, "Redis reachable again", NULL);
    r->state = LINK_UP;
    r->lost = 0;
    r->backoff_ms = BACKOFF_FIRST_MS;
    evtimer_del(r->tmr);
    snprintf(db, sizeof db, "%d", r->db);
    if (r->db)
        redisAsyncCommand(r->ac, on_setup, r, "SELECT %s", db);
    redisAsyncCommand(r->ac, on_setup, r, "SCRIPT LOAD %b", faas_durable_redis_script,
                      strlen(faas_durable_redis_script));
    faas_rq_link_up(r); /* after the set-up: its operations use the script */
    send_queue(r);
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct rd *r = cac->data;
    (void)status;
    if (cac == r->ac)
        link_fail(r, "the connection was lost", 0);
}

static void link_start(struct rd *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);

    if (!ac || ac->err || redisLibeventAttach(ac, r->base) != REDIS_OK) {
        r->state = LINK_CONNECTING;
        link_fail(r, ac && ac->err ? ac->errstr : "no memory", 0);
        if (ac)
            redisAsyncFree(ac);
        return;
    }
    ac->data = r;
    r->ac = ac;
    r->state = LINK_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    arm(r, CONNECT_TIMEOUT_MS);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct rd *r = arg;
    (void)fd;
    (void)what;
    if (r->state == LINK_DOWN)
        link_start(r);
    else
        link_fail(r, r->state == LINK_CONNECTING ? "connecting timed out" : "a command timed out",
                  1);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct rd *r = arg;
    struct faas_list batch;

    (void)fd;
    (void)what;
    if (r->drop) {
        r->drop = 0;
        if (r->state != LINK_DOWN)
            link_fail(r, "the connection was dropped", 1);
    }
    if (faas_list_empty(&r->done))
        return;
    faas_list_init(&batch);
    faas_list_splice(&batch, &r->done);
    r->report(r->report_ctx, &batch);
}

void faas_rd_deliver(struct rd *r, struct faas_dop *op)
{
    op->seq = r->nsubmitted;
    faas_list_insert_tail(&r->deliveries, &op->link);
    release_deliveries(r);
}

void faas_rd_submit(void *impl, struct faas_dop *op)
{
    struct rd *r = impl;

    r->st.pending += !op->quiet;
    r->nsubmitted++;
    if (leaves_held(op))
        faas_rq_leaving(r, op->name);
    if (r->state == LINK_UP && !r->drop && faas_list_empty(&r->queue)) {
        send_op(r, op);
        return;
    }
    if (r->lost && op->adds) {
        finish(r, op, FAAS_EUNAVAILABLE);
        return;
    }
    faas_list_insert_tail(&r->queue, &op->link);
}

/* ---- the blocking connection: open, loads and close ---------------------- */

static redisReply *sc_cmd(struct rd *r, int argc, const char **argv, const size_t *lens)
{
    redisReply *rep;
    if (!r->sc)
        return NULL;
    rep = redisCommandArgv(r->sc, argc, argv, lens);
    if (!rep) {
        redisFree(r->sc);
        r->sc = NULL;
    }
    return rep;
}

static redisReply *sc_cmd1(struct rd *r, const char *a0, const char *a1, const char *a2)
{
    const char *v[3] = { a0, a1, a2 };
    size_t len[3] = { strlen(a0), a1 ? strlen(a1) : 0, a2 ? strlen(a2) : 0 };
    return sc_cmd(r, a2 ? 3 : a1 ? 2 : 1, v, len);
}

/* Connects the blocking context if it is not. 0 or FAAS_EUNAVAILABLE
 * (logged). */
static int sc_get(struct rd *r)
{
    const char *load[3] = { "SCRIPT", "LOAD", faas_durable_redis_script };
    size_t load_len[3] = { 6, 4, strlen(faas_durable_redis_script) };
    char db[24];
    redisReply *rep;
    struct timeval tv = faas_rd_tv(CONNECT_TIMEOUT_MS);

    if (r->sc)
        return 0;
    r->sc = redisConnectWithTimeout(r->host, r->port, tv);
    if (!r->sc || r->sc->err) {
        faas_rd_log(r, "cannot connect: ", r->sc ? r->sc->errstr : "no memory");
        if (r->sc)
            redisFree(r->sc);
        r->sc = NULL;
        return FAAS_EUNAVAILABLE;
    }
    redisSetTimeout(r->sc, tv);
    snprintf(db, sizeof db, "%d", r->db);
    rep = sc_cmd1(r, "SELECT", db, NULL);
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        faas_rd_log(r, "SELECT failed: ", rep ? rep->str : "no answer");
        goto fail;
    }
    freeReplyObject(rep);
    rep = sc_cmd(r, 3, load, load_len);
    if (!rep || rep->type != REDIS_REPLY_STRING || rep->len != 40) {
        faas_rd_log(r, "SCRIPT LOAD failed: ", rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
        goto fail;
    }
    memcpy(r->sha, rep->str, 41);
    freeReplyObject(rep);
    return 0;
fail:
    if (rep)
        freeReplyObject(rep);
    if (r->sc)
        redisFree(r->sc);
    r->sc = NULL;
    return FAAS_EUNAVAILABLE;
}

/*
 * Reads the hashes an index names: ZRANGE `index`, then HGETALL
 * `hash_prefix`MEMBER for each member, pipelined. On 0, *members (the
 * ZRANGE reply) and *hashes (one reply per member, NULL entries for none)
 * are the caller's. 0, FAAS_EUNAVAILABLE or FAAS_ENOMEM.
 */
static int load_hashes(struct rd *r, const char *index, const char *hash_prefix,
                       redisReply **members, redisReply ***hashes)
{
    redisReply *z, **h;
    size_t i, n;
    void *rep;
    int rc = sc_get(r);

    if (rc != 0)
        return rc;
    {
        const char *v[4] = { "ZRANGE", index, "0", "-1" };
        size_t len[4] = { 6, strlen(index), 1, 2 };
        z = sc_cmd(r, 4, v, len);
    }
    if (!z || z->type != REDIS_REPLY_ARRAY) {
        if (z)
            freeReplyObject(z);
        return FAAS_EUNAVAILABLE;
    }
    n = z->elements;
    h = faas_calloc(n ? n : 1, sizeof *h);
    if (!h) {
        freeReplyObject(z);
        return FAAS_ENOMEM;
    }
    for (i = 0; i < n && rc == 0; i++)
        if (redisAppendCommand(r->sc, "HGETALL %s%s", hash_prefix, z->element[i]->str) !=
            REDIS_OK)
            rc = FAAS_ENOMEM;
    for (i = 0; i < n && rc == 0; i++) {
        if (redisGetReply(r->sc, &rep) != REDIS_OK) {
            redisFree(r->sc);
            r->sc = NULL;
            rc = FAAS_EUNAVAILABLE;
            break;
        }
        h[i] = rep;
    }
    if (rc != 0) {
        if (r->sc) { /* replies left unread: the connection is out of step */
            redisFree(r->sc);
            r->sc = NULL;
        }
        for (i = 0; i < n; i++)
            if (h[i])
                freeReplyObject(h[i]);
        free(h);
        freeReplyObject(z);
        return rc;
    }
    *members = z;
    *hashes = h;
    return 0;
}

static void free_hashes(redisReply *members, redisReply **hashes)
{
    size_t i;
    for (i = 0; i < members->elements; i++)
        if (hashes[i])
            freeReplyObject(hashes[i]);
    free(hashes);
    freeReplyObject(members);
}

/* The value of `field` in an HGETALL reply, or NULL; *len its length. */
static const char *hfield(const redisReply *h, const char *field, size_t *len)
{
    size_t i;
    if (!h || h->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (i = 0; i + 1 < h->elements; i += 2)
        if (strcmp(h->element[i]->str, field) == 0) {
            if (len)
                *len = h->element[i + 1]->len;
            return h->element[i + 1]->str;
        }
    return NULL;
}

static int64_t hnum(const redisReply *h, const char *field)
{
    const char *s = hfield(h, field, NULL);
    return s ? strtoll(s, NULL, 10) : 0;
}

static int event_order(const void *a, const void *b)
{
    const struct faas_durable_event *x = a, *y = b;
    if (x->accepted_ms != y->accepted_ms)
        return x->accepted_ms < y->accepted_ms ? -1 : 1;
    return strcmp(x->request_id, y->request_id);
}

static int rd_events_load(void *impl, int (*each)(const struct faas_durable_event *ev, void *arg),
                          void *arg)
{
    struct rd *r = impl;
    const char *v[5] = { "EVALSHA", r->sha, "0", r->prefix, "events" };
    size_t len[5] = { 7, 40, 1, strlen(r->prefix), 6 };
    struct faas_durable_event *evs;
    redisReply *rep;
    size_t i, n = 0;
    int rc = sc_get(r); /* sets r->sha, 40 hex digits */

    if (rc != 0)
        return rc;
    rep = sc_cmd(r, 5, v, len);
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        if (rep)
            freeReplyObject(rep);
        return FAAS_EUNAVAILABLE;
    }
    if (!(evs = faas_calloc(rep->elements ? rep->elements : 1, sizeof *evs))) {
        freeReplyObject(rep);
        return FAAS_ENOMEM;
    }
    for (i = 1; i < rep->elements; i++) {
        const redisReply *h = rep->element[i];
        struct faas_durable_event *ev = &evs[n];
        const char *rid = hfield(h, "rid", NULL);
        if (!rid || !hfield(h, "function", NULL) || !hfield(h, "event", NULL))
            continue;
        snprintf(ev->request_id, sizeof ev->request_id, "%s", rid);
        ev->function = hfield(h, "function", NULL);
        ev->event = hfield(h, "event", &ev->event_len);
        ev->client_context = hfield(h, "client_context", NULL);
        ev->trace_id = hfield(h, "trace_id", NULL);
        ev->idem_key = hfield(h, "idem_key", NULL);
        ev->timeout_ms = (uint32_t)hnum(h, "timeout_ms");
        ev->attempts = (uint32_t)hnum(h, "attempts");
        ev->accepted_ms = hnum(h, "accepted_ms");
        ev->due_ms = hnum(h, "due_ms");
        ev->origin = hfield(h, "origin", NULL);
        n++;
    }
    qsort(evs, n, sizeof *evs, event_order);
    for (i = 0; i < n && rc == 0; i++)
        rc = each(&evs[i], arg);
    free(evs);
    freeReplyObject(rep);
    return rc;
}

static int rd_records_load(void *impl, const char *mapping,
                           int (*each)(const struct faas_durable_record *rec, void *arg),
                           void *arg)
{
    struct rd *r = impl;
    redisReply *z, **h;
    char index[1024], hp[1024];
    size_t i;
    int rc;

    snprintf(index, sizeof index, "%s:recs:%s:%s", r->prefix, r->node, mapping);
    snprintf(hp, sizeof hp, "%s:rec:%s:%s:", r->prefix, r->node, mapping);
    rc = load_hashes(r, index, hp, &z, &h);
    if (rc != 0)
        return rc;
    for (i = 0; i < z->elements && rc == 0; i++) {
        struct faas_durable_record rec;
        memset(&rec, 0, sizeof rec);
        rec.record = hfield(h[i], "record", &rec.record_len);
        if (!rec.record)
            continue;
        rec.mapping = mapping;
        rec.seq = strtoull(z->element[i]->str, NULL, 10);
        rec.key = hfield(h[i], "key", NULL);
        rec.arrived_ms = hnum(h[i], "arrived_ms");
        rc = each(&rec, arg);
    }
    free_hashes(z, h);
    return rc;
}

static int rd_schedules_load(void *impl, int (*each)(const char *name, int64_t fired_ms,
                                                     void *arg),
                             void *arg)
{
    struct rd *r = impl;
    char key[512];
    redisReply *rep;
    size_t i;
    int rc = sc_get(r);

    if (rc != 0)
        return rc;
    snprintf(key, sizeof key, "%s:sched", r->prefix);
    rep = sc_cmd1(r, "HGETALL", key, NULL);
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        if (rep)
            freeReplyObject(rep);
        return FAAS_EUNAVAILABLE;
    }
    for (i = 0; i + 1 < rep->elements && rc == 0; i += 2)
        rc = each(rep->element[i]->str, strtoll(rep->element[i + 1]->str, NULL, 10), arg);
    freeReplyObject(rep);
    return rc;
}

static int rd_idem_load(void *impl, const char *scope,
                        int (*each)(const struct faas_durable_idem *rec, void *arg), void *arg)
{
    struct rd *r = impl;
    redisReply *z, **h;
    char index[1024], hp[1024];
    size_t i;
    int rc;

    snprintf(index, sizeof index, "%s:idems:%s", r->prefix, scope);
    snprintf(hp, sizeof hp, "%s:idem:%s:", r->prefix, scope);
    rc = load_hashes(r, index, hp, &z, &h);
    if (rc != 0)
        return rc;
    for (i = 0; i < z->elements && rc == 0; i++) {
        struct faas_durable_idem rec;
        if (!hfield(h[i], "state", NULL))
            continue;
        memset(&rec, 0, sizeof rec);
        rec.scope = scope;
        rec.key = z->element[i]->str;
        rec.state = (int)hnum(h[i], "state");
        rec.status = (int)hnum(h[i], "status");
        rec.payload = hfield(h[i], "payload", &rec.payload_len);
        rec.validation = hfield(h[i], "validation", NULL);
        rec.owner = hfield(h[i], "owner", NULL);
        rec.expires_ms = hnum(h[i], "expires_ms");
        rc = each(&rec, arg);
    }
    free_hashes(z, h);
    return rc;
}

static void rd_stats(void *impl, struct faas_durable_stats *out)
{
    *out = ((struct rd *)impl)->st;
}

/* ---- open and close ------------------------------------------------------- */

/*
 * HOST:PORT[/DB] into r (the host resolved to a numeric address).
 * 0, FAAS_EINVAL (logged) or FAAS_EUNAVAILABLE (the name does not resolve).
 */
static int parse_target(struct rd *r, const char *t)
{
    char host[256];
    const char *colon, *end, *slash = strchr(t, '/');
    size_t hl;
    long port, db = 0;
    char *stop;
    struct addrinfo hints, *ai = NULL;
    int rc;

    if (t[0] == '[') {
        end = strchr(t, ']');
        colon = end && end[1] == ':' ? end + 1 : NULL;
        t++;
    } else {
        colon = strchr(t, ':');
        end = colon;
    }
    if (!colon || !end || end <= t || (slash && slash < colon) || strpbrk(t, "@?#"))
        goto bad;
    hl = (size_t)(end - t);
    if (hl >= sizeof host)
        goto bad;
    memcpy(host, t, hl);
    host[hl] = '\0';
    port = strtol(colon + 1, &stop, 10);
    if (stop == colon + 1 || port < 1 || port > 65535 || (*stop && *stop != '/'))
        goto bad;
    if (*stop == '/') {
        db = strtol(stop + 1, &stop, 10);
        if (stop == slash + 1 || *stop || db < 0 || db > 65535)
            goto bad;
    }
    r->port = (int)port;
    r->db = (int)db;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc != 0 || getnameinfo(ai->ai_addr, ai->ai_addrlen, r->host, sizeof r->host, NULL, 0,
                               NI_NUMERICHOST) != 0) {
        faas_rd_log(r, "the host name does not resolve: ", rc ? gai_strerror(rc) : host);
        if (ai)
            freeaddrinfo(ai);
        return FAAS_EUNAVAILABLE;
    }
    freeaddrinfo(ai);
    return 0;
bad:
    faas_rd_log(r, "not a Redis URL (redis://HOST:PORT[/DB])", NULL);
    return FAAS_EINVAL;
}

static void rd_free(struct rd *r)
{
    if (r->tmr)
        event_free(r->tmr);
    if (r->kick)
        event_free(r->kick);
    if (r->sc)
        redisFree(r->sc);
    faas_rq_free(r);
    free(r->prefix);
    free(r->url);
    free(r->node);
    free(r);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = faas_malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static int rd_open(void **impl, const struct faas_durable_engine_args *args)
{
    struct rd *r = faas_calloc(1, sizeof *r);
    size_t n = strlen(args->target) + 9;
    int rc;

    if (!r)
        return FAAS_ENOMEM;
    r->rt = args->rt;
    r->base = args->rt->base;
    r->report = args->report;
    r->report_ctx = args->report_ctx;
    r->backoff_ms = BACKOFF_FIRST_MS;
    faas_list_init(&r->queue);
    faas_list_init(&r->sent);
    faas_list_init(&r->done);
    faas_list_init(&r->deliveries);
    r->prefix = dup_str(args->prefix);
    r->node = dup_str(args->node);
    r->url = faas_malloc(n);
    r->tmr = evtimer_new(r->base, on_timer, r);
    r->kick = event_new(r->base, -1, 0, on_kick, r);
    if (!r->prefix || !r->node || !r->url || !r->tmr || !r->kick) {
        rd_free(r);
        return FAAS_ENOMEM;
    }
    snprintf(r->url, n, "redis://%s", args->target);
    faas_request_id(r->rt, r->proc);
    rc = faas_rq_open(r);
    if (rc == 0)
        rc = parse_target(r, args->target);
    if (rc == 0)
        rc = sc_get(r);
    if (rc != 0) {
        rd_free(r);
        return rc;
    }
    link_start(r);
    *impl = r;
    return 0;
}

/*
 * Close: runs `queue` on the blocking connection (pipelined), in order;
 * what cannot run is cancelled. Every operation ends in `done`.
 */
static void close_run(struct rd *r)
{
    struct faas_list *e;
    struct faas_dop *op;
    struct args a;
    void *rep;
    size_t n = 0, i;
    int ok = !r->lost && sc_get(r) == 0;

    for (e = r->queue.next; ok && e != &r->queue; e = e->next) {
        op_args(r, FAAS_CONTAINER_OF(e, struct faas_dop, link), &a);
        if (redisAppendCommandArgv(r->sc, a.n, a.v, a.len) != REDIS_OK)
            ok = 0;
        n++;
    }
    for (i = 0; (e = faas_list_pop_head(&r->queue)) != NULL; i++) {
        int rc = FAAS_ECANCELED;
        op = FAAS_CONTAINER_OF(e, struct faas_dop, link);
        if (ok && i < n) {
            rep = NULL;
            if (redisGetReply(r->sc, &rep) != REDIS_OK)
                ok = 0;
            else if ((rc = reply_rc(op, rep)) == NOT_AN_ANSWER)
                rc = FAAS_ECANCELED;
            if (rep)
                freeReplyObject(rep);
        }
        finish(r, op, rc);
    }
    r->ncompleted = r->nsubmitted; /* at close every delivery goes */
    release_deliveries(r);
    if (!ok && r->sc) {
        redisFree(r->sc);
        r->sc = NULL;
    }
}

static void rd_close(void *impl)
{
    struct rd *r = impl;
    redisAsyncContext *ac = r->ac;
    struct faas_list batch, *e;
    int round, left = 0;

    /* Replies owed on the loop's link are given up: what was sent runs again
     * on the blocking connection (the scripts are idempotent). */
    r->ac = NULL;
    r->state = LINK_DOWN;
    unsend(r);
    if (ac)
        redisAsyncFree(ac);
    evtimer_del(r->tmr);
    faas_rq_close_reader(r);
    /* What completions queue runs in the next round; once that is quiet,
     * what the stream still holds for this host goes back to it (leave),
     * after the releases, which restore the attempts that never ran. */
    for (round = 0; round < CLOSE_ROUNDS + CANCEL_ROUNDS; round++) {
        if (round >= CLOSE_ROUNDS)
            r->lost = 1; /* then they are cancelled, until none comes */
        close_run(r);
        if (faas_list_empty(&r->done)) {
            if (left)
                break;
            left = 1;
            faas_rq_leave(r);
            continue;
        }
        faas_list_init(&batch);
        faas_list_splice(&batch, &r->done);
        r->report(r->report_ctx, &batch);
    }
    /* Still queued by completions after all the rounds (a loop of
     * completions queueing operations): nobody is left to hear of them. */
    faas_list_splice(&r->queue, &r->done);
    faas_list_splice(&r->queue, &r->deliveries);
    while ((e = faas_list_pop_head(&r->queue)) != NULL)
        free(FAAS_CONTAINER_OF(e, struct faas_dop, link));
    rd_free(r);
}

const struct faas_durable_engine faas_durable_redis = {
    .scheme = "redis://",
    .open = rd_open,
    .submit = faas_rd_submit,
    .events_load = rd_events_load,
    .records_load = rd_records_load,
    .schedules_load = rd_schedules_load,
    .idem_load = rd_idem_load,
    .stats = rd_stats,
    .queue_want = faas_rq_want,
    .queue_stop = faas_rq_stop,
    .shared = 1,
    .close = rd_close,
};

#endif

/*
 * durable_redis.h - what the Redis engine's files share: the engine's
 * state (durable_redis.c owns it) and the fleet's queue (durable_redis_queue.c).
 */
#ifndef FAAS_DURABLE_REDIS_H
#define FAAS_DURABLE_REDIS_H

#if FAAS_WITH_REDIS

#include <netdb.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "durable_engine.h"

/* The Lua script of every operation (durable_redis_script.c). */
extern const char faas_durable_redis_script[];

#define CONNECT_TIMEOUT_MS 2000u
#define CMD_TIMEOUT_MS 2000u
#define BACKOFF_FIRST_MS 100u
#define BACKOFF_MAX_MS 5000u
/* Close commits what completions queue, for this many rounds, then
 * cancels what they queue still, for at most this many more. */
#define CLOSE_ROUNDS 8
#define CANCEL_ROUNDS 64
/* The most arguments one operation's EVALSHA takes. */
#define ARGV_MAX 32

enum link_state { LINK_DOWN, LINK_CONNECTING, LINK_UP };

struct rd {
    struct faas_runtime *rt;
    struct event_base *base;
    int (*report)(void *ctx, struct faas_list *done);
    void *report_ctx;
    char *prefix;
    char *url;                 /* for log records */
    char *node;                /* this host's node id: a claim's winner */
    char host[NI_MAXHOST];     /* numeric, resolved at open */
    int port;
    int db;
    char sha[41];              /* the script's SHA1 */
    redisContext *sc;          /* blocking: loads and close */
    redisAsyncContext *ac;     /* the loop's */
    enum link_state state;
    int lost;                  /* down since a loss: adding ops refused */
    int drop;                  /* kick drops the link */
    unsigned backoff_ms;
    struct faas_list queue;    /* not sent yet */
    struct faas_list sent;     /* sent, replies owed, in order */
    struct faas_list done;     /* to report */
    struct faas_list deliveries; /* FAAS_DOP_DELIVER waiting for the ops
                                    submitted before them (seq) */
    uint64_t nsubmitted, ncompleted;
    struct event *tmr;
    struct event *kick;
    struct faas_durable_stats st;
    char proc[FAAS_REQUEST_ID_SIZE]; /* this process: what it accepted */
    struct rq *q;              /* the fleet's queue (durable_redis_queue.c) */
};

struct timeval faas_rd_tv(unsigned ms);
void faas_rd_log(struct rd *r, const char *fmt, const char *why);
/* Submits an operation (the engine's own, FAAS_DOP_CALL) on the link. */
void faas_rd_submit(void *impl, struct faas_dop *op);
/* Hands a delivery (FAAS_DOP_DELIVER) to the runtime, from the kick. */
void faas_rd_deliver(struct rd *r, struct faas_dop *op);

/* ---- durable_redis_queue.c ---------------------------------------------- */
/* 0 or FAAS_ENOMEM. */
int faas_rq_open(struct rd *r);
/* Close: the reader and the tick stop. */
void faas_rq_close_reader(struct rd *r);
/* Close: queues what gives back what the stream still holds for this host
 * (the `leave` script), once the rest was committed. */
void faas_rq_leave(struct rd *r);
/* Frees the queue (after the last operation was reported). */
void faas_rq_free(struct rd *r);
/* A delivery leaves the engine for the runtime. */
void faas_rq_handed(struct faas_dop *op);
/* An end, retry or release of `rid` is sent: the entry it holds goes. */
void faas_rq_leaving(struct rd *r, const char *rid);
/* Redis applied that end, retry or release: this host holds `rid` no more,
 * unless it was delivered again in another entry since. */
void faas_rq_forget(struct rd *r, const char *rid);
/* The main link is (again) up. */
void faas_rq_link_up(struct rd *r);
void faas_rq_want(void *impl, const char *function, int registered, uint32_t credit,
                  uint32_t lease_ms);
void faas_rq_stop(void *impl);

#endif /* FAAS_WITH_REDIS */

#endif

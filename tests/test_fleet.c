/*
 * test_fleet.c - async events shared by a fleet of hosts on one Redis
 * (the Redis engine, lib/durable_redis.c, through the public API only).
 *
 * test_fleet_kill9: three host processes on one redis-server (an
 * append-only file synced at every write) and one key prefix, each with
 * the same function registered, each accepting a share of the events. The
 * parent kills hosts with SIGKILL at moments drawn from a seeded generator
 * and starts them again under a new node id, and once kills the
 * redis-server itself and starts it again on its port and directory. A
 * few events hang the host that first runs them, as a host that stops
 * answering; the parent kills it. Every host reports over a pipe what it
 * accepted and every end it delivered; the parent keeps the books: no
 * accepted event lost, duplicated ends only where a kill cut an end short,
 * work shared between live hosts, faas_result_recovered() set wherever
 * another process runs an event, a hung host's event taken over by another
 * after the function's timeout plus 5 s with the cut attempt counted.
 *
 * test_fleet_redis_down_mid_run: one runtime whose server is stopped and
 * started again, empty: synchronous work keeps serving, async accepts are
 * refused while it is down and accepted and run once it is back.
 *
 * (A schedule mapped on three hosts firing each due time once is
 * test_durable_redis.c's test_schedule_fires_once_per_fleet.)
 *
 * Skipped, with the reason printed, when redis-server is not installed or
 * the build leaves the Redis engine out (WITH_REDIS=0). Under valgrind the
 * fleet runs fewer events, fewer kills, for a shorter time.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#if FAAS_WITH_REDIS
#include "redis_util.h"

#define PREFIX "fleet"
#define NHOST 3
/* Host generations: one per start of a host (NHOST, then one per kill). */
#define MAX_GEN 40
/* Events one generation may offer; an event's number is gen * GEN_EVENTS
 * plus its index, so each number names its accepting process. */
#define GEN_EVENTS 4096
#define MAX_EVENTS (MAX_GEN * GEN_EVENTS)
#define FN_TIMEOUT_MS 2000u
#define FN_MAX_CONCURRENCY 8u
#define FN_MAX_RETRIES 2u

static struct tu_redis srv;
static int have_srv;
static const char *skip_reason;

/* ---- the host process ----------------------------------------------------
 *
 * Lines it writes (each one write(2), shorter than PIPE_BUF):
 *   U gen            up: the runtime is open and the function registered
 *   A n rc id        event n offered: on_accepted said rc (or the call
 *                    returned rc), under request id `id`
 *   E n s gen r a id t
 *                    event n ended (on_complete) with status s in host
 *                    generation gen, faas_result_recovered r, a attempts,
 *                    t ms into the run
 *   D n              event n reached the dead letter
 *   O gen count      done offering (told to stop, or its share used up)
 *                    after `count` offers
 *   H n gen          a stalling event's first run: the host hangs in the
 *                    handler until the parent kills it
 */

static int h_out = -1;
static int h_gen;
static int h_offered, h_tick_ms, h_stall_at, h_offering = 1;
static redisContext *h_redis; /* the stall marks */
static uint64_t h_t0;          /* the run's start: times in lines count from it */
static struct event_base *h_base;
static struct faas_runtime *h_rt;
static struct event *h_tick;

static void say(const char *fmt, ...)
{
    char line[128];
    va_list ap;
    int len;
    va_start(ap, fmt);
    len = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (write(h_out, line, (size_t)len) != len)
        _exit(90);
}

static int event_n(json_t *event)
{
    return (int)json_integer_value(json_object_get(event, "n"));
}

/* A stalling event: the h_stall_at-th of every other generation's
 * offers, one that succeeds. */
static int is_stall(int n)
{
    return n % GEN_EVENTS == h_stall_at && (n / GEN_EVENTS) % 2 == 0 && n % 7 != 0;
}

/* 1 for the first run of event n in the whole fleet: a mark set in Redis
 * (SET NX) outside the engine's keys; 0 when Redis cannot say. */
static int stall_first(int n)
{
    struct timeval tv = { 1, 0 };
    redisReply *rep;
    int first;

    if (h_redis && h_redis->err) {
        redisFree(h_redis);
        h_redis = NULL;
    }
    if (!h_redis && (h_redis = redisConnectWithTimeout("127.0.0.1", srv.port, tv)) != NULL)
        redisSetTimeout(h_redis, tv);
    if (!h_redis || h_redis->err)
        return 0;
    rep = redisCommand(h_redis, "SET " PREFIX "-stall:%d 1 NX", n);
    first = rep && rep->type == REDIS_REPLY_STATUS;
    if (rep)
        freeReplyObject(rep);
    return first;
}

/* Every seventh event always fails: it ends failed after its retries. A
 * stalling event hangs its host at its first run, as a host that stops
 * answering: the loop stops, leases are no longer renewed. */
static int work_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    int n = event_n(event);
    if (is_stall(n) && stall_first(n)) {
        say("H %d %d\n", n, h_gen);
        for (;;)
            pause(); /* until the parent's SIGKILL */
    }
    if (n % 7 == 0)
        return faas_ctx_fail(ctx, "Poison", "event %d always fails", n);
    *result = json_pack("{s:i}", "n", n);
    return 0;
}

static void host_end(const struct faas_result *res, void *arg)
{
    (void)arg;
    say("E %d %d %d %d %u %s %llu\n", event_n(faas_result_event(res)), faas_result_status(res),
        h_gen, faas_result_recovered(res), faas_result_attempts(res),
        faas_result_request_id(res), (unsigned long long)(tu_now_ms() - h_t0));
}

static void host_dead(const struct faas_result *res, void *arg)
{
    (void)arg;
    say("D %d\n", event_n(faas_result_event(res)));
}

static void host_accepted(int rc, const char *request_id, void *arg)
{
    say("A %d %d %s\n", (int)(intptr_t)arg, rc, request_id);
}

static void host_stop_offering(void)
{
    if (!h_offering)
        return;
    h_offering = 0;
    evtimer_del(h_tick);
    say("O %d %d\n", h_gen, h_offered);
}

/* Offers one event every h_tick_ms, numbered after this generation. */
static void host_offer(evutil_socket_t fd, short what, void *arg)
{
    struct timeval tv = { 0, (suseconds_t)h_tick_ms * 1000 };
    (void)fd;
    (void)what;
    (void)arg;
    if (h_offered < GEN_EVENTS) {
        struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
        int n = h_gen * GEN_EVENTS + h_offered, rc;
        json_t *ev = json_pack("{s:i}", "n", n);
        char id[FAAS_REQUEST_ID_SIZE] = "-";
        io.on_accepted = host_accepted;
        io.accepted_arg = (void *)(intptr_t)n;
        rc = faas_invoke_async(h_rt, "work", ev, &io, id);
        json_decref(ev);
        if (rc != 0) /* no on_accepted will come: say it here */
            say("A %d %d %s\n", n, rc, id[0] ? id : "-");
        h_offered++;
    }
    if (h_offered >= GEN_EVENTS)
        host_stop_offering();
    else
        evtimer_add(h_tick, &tv);
}

/* The parent's control pipe: a byte stops the offers, EOF stops the host. */
static void host_ctl(evutil_socket_t fd, short what, void *arg)
{
    char c;
    ssize_t got = read(fd, &c, 1);
    (void)what;
    (void)arg;
    if (got > 0)
        host_stop_offering();
    else if (got == 0 || (errno != EAGAIN && errno != EINTR))
        event_base_loopbreak(h_base);
}

static void host_main(int slot, int gen, int out, int ctl, int tick_ms, int stall_at,
                      int offering)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    struct event *ctl_ev;
    char node[32];
    uint64_t until = tu_now_ms() + 20000;
    int rc;

    h_out = out;
    h_gen = gen;
    h_tick_ms = tick_ms;
    h_stall_at = stall_at;
    snprintf(node, sizeof node, "host%d-gen%d", slot, gen);
    h_base = event_base_new();
    if (!h_base)
        _exit(91);
    o.zygote = 0;
    o.durable = srv.url;
    o.durable_prefix = PREFIX;
    o.node_id = node;
    /* a start while the server restarts waits for it (bounded) */
    while ((rc = faas_runtime_new(&h_rt, h_base, &o)) == FAAS_EUNAVAILABLE &&
           tu_now_ms() < until)
        usleep(100000); /* bounded retry of a blocking open */
    if (rc != 0)
        _exit(92);
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.timeout_ms = FN_TIMEOUT_MS;
    fo.max_concurrency = FN_MAX_CONCURRENCY;
    ao.max_retries = FN_MAX_RETRIES;
    ao.retry_base_ms = 5;
    ao.on_complete = host_end;
    ao.dead_letter = host_dead;
    fo.async = &ao;
    if (faas_register(h_rt, "work", work_handler, &fo) != 0)
        _exit(93);
    h_tick = evtimer_new(h_base, host_offer, NULL);
    ctl_ev = event_new(h_base, ctl, EV_READ | EV_PERSIST, host_ctl, NULL);
    if (!h_tick || !ctl_ev || event_add(ctl_ev, NULL) != 0)
        _exit(94);
    say("U %d\n", gen);
    if (offering)
        host_offer(-1, 0, NULL);
    else
        host_stop_offering();
    event_base_dispatch(h_base);
    faas_runtime_free(h_rt);
    if (h_redis)
        redisFree(h_redis);
    event_free(h_tick);
    event_free(ctl_ev);
    event_base_free(h_base);
    _exit(0);
}

/* ---- the parent's books ------------------------------------------------- */

struct ev_book {
    char id[FAAS_REQUEST_ID_SIZE];
    signed char acc;     /* 1: accepted (on_accepted 0); -1: refused */
    unsigned char nacc;  /* A lines seen */
    unsigned short ends, ok, failed, dead;
    unsigned short in_flight; /* ended by a process killed before Redis
                                 had that end */
    signed char end_gen[4];   /* the generations of its first ends */
    unsigned char end_att[4]; /* and their attempts */
    unsigned end_t[4];        /* and times (ms into the run) */
};

struct end_rec {
    int n, gen;
};

struct host {
    pid_t pid;
    int gen;
    int out, ctl;
    char buf[256];
    size_t len;
    int hung; /* said H: the parent kills it */
};

struct fleet {
    struct ev_book *ev;
    struct end_rec *ends; /* every E line, in order */
    size_t nends, cap;
    int gen_slot[MAX_GEN];
    int gen_killed[MAX_GEN];
    int gen_answered[MAX_GEN]; /* A lines of each generation */
    int gen_offers[MAX_GEN];   /* its O line's count; -1 before it */
    int next_gen;
    struct host h[NHOST];
    int tick_ms; /* a host offers one event per tick */
    int stall_at; /* which offer of a generation stalls (is_stall) */
    int offering; /* 0: hosts started now offer nothing */
    struct stall {
        int n, gen;       /* the event, the host generation it hung */
        uint64_t hung_ms; /* when the parent read that */
        uint64_t end_ms;  /* its first end, read by the parent; 0: none */
        int end_gen, end_status, end_recovered;
        unsigned end_attempts;
    } stalls[MAX_GEN];
    int nstalls, stall_kills;
    uint64_t t0;               /* the run's start */
    char kill_log[1024];       /* "ms:generation" of each kill, "R" for the server's */
    /* figures */
    long lines;
    int offered, accepted, refused, other_rc;
    int ends_by_slot[NHOST];
    int cross_slot;    /* ended in a slot other than the accepting one */
    int cross_live;    /* that, while the accepting process was alive: a
                          share of the work, not a dead host's recovery */
    int cross_process; /* ended in a process other than the accepting one */
    int recovered_wrong;
    int taken_back;   /* ended recovered in the accepting process */
    int attempts_wrong; /* a failure before its last attempt, a success
                           after more than every attempt */
    int id_mismatch;
    int bad_lines;
    int kills, random_kills, redis_kills;
    int in_flight_total, in_flight_max;
};

static void book_line(struct fleet *fl, char *line)
{
    int n, rc, s, g, r;
    unsigned a;
    unsigned long long t = 0;
    char id[64];
    struct ev_book *b;

    fl->lines++;
    if (sscanf(line, "A %d %d %40s", &n, &rc, id) == 3 && n >= 0 && n < MAX_EVENTS) {
        b = &fl->ev[n];
        b->nacc++;
        fl->offered++;
        fl->gen_answered[n / GEN_EVENTS]++;
        id[FAAS_REQUEST_ID_SIZE - 1] = '\0';
        if (b->id[0] && rc == 0 && strcmp(b->id, id) != 0)
            fl->id_mismatch++;
        memcpy(b->id, id, FAAS_REQUEST_ID_SIZE);
        if (rc == 0) {
            b->acc = 1;
            fl->accepted++;
        } else {
            b->acc = -1;
            if (rc == FAAS_EUNAVAILABLE)
                fl->refused++;
            else
                fl->other_rc++;
        }
    } else if (sscanf(line, "E %d %d %d %d %u %40s %llu", &n, &s, &g, &r, &a, id, &t) == 7 &&
               n >= 0 && n < MAX_EVENTS && g >= 0 && g < fl->next_gen) {
        int origin = n / GEN_EVENTS;
        b = &fl->ev[n];
        if (b->ends < 4) {
            b->end_gen[b->ends] = (signed char)g;
            b->end_att[b->ends] = (unsigned char)a;
            b->end_t[b->ends] = (unsigned)t;
        }
        b->ends++;
        if (s == 0)
            b->ok++;
        else
            b->failed++;
        if (s != 0 ? a != FN_MAX_RETRIES + 1 : (a < 1 || a > FN_MAX_RETRIES + 1))
            fl->attempts_wrong++;
        /* its end may be read before its acceptance (another host's pipe) */
        id[FAAS_REQUEST_ID_SIZE - 1] = '\0';
        if (!b->id[0])
            memcpy(b->id, id, FAAS_REQUEST_ID_SIZE);
        else if (strcmp(b->id, id) != 0)
            fl->id_mismatch++;
        fl->ends_by_slot[fl->gen_slot[g]]++;
        if (fl->gen_slot[g] != fl->gen_slot[origin]) {
            fl->cross_slot++;
            /* read after the kill of the origin: maybe written before it;
             * not counted, so the count is never too high */
            if (!fl->gen_killed[origin])
                fl->cross_live++;
        }
        if (g != origin)
            fl->cross_process++;
        /* run by another process than the accepting one: recovered. The
         * accepting process itself may take its event back from a host
         * that died holding it: the engine then says recovered too
         * (counted, not failed: faas.h says 0 in the accepting process,
         * docs/durability.md says 1 for an event taken over) */
        if (g != origin && !r && fl->recovered_wrong++ < 5)
            print_message("event %d accepted in generation %d, ended in %d: not recovered, "
                          "attempts %u\n", n, origin, g, a);
        if (g == origin && r)
            fl->taken_back++;
        if (fl->nends == fl->cap) {
            fl->cap = fl->cap ? fl->cap * 2 : 4096;
            fl->ends = realloc(fl->ends, fl->cap * sizeof *fl->ends);
            assert_non_null(fl->ends);
        }
        fl->ends[fl->nends++] = (struct end_rec){ n, g };
        for (int k = 0; k < fl->nstalls; k++) {
            struct stall *st = &fl->stalls[k];
            if (st->n != n || st->end_ms)
                continue;
            st->end_ms = tu_now_ms();
            st->end_gen = g;
            st->end_status = s;
            st->end_recovered = r;
            st->end_attempts = a;
        }
    } else if (sscanf(line, "H %d %d", &n, &g) == 2 && fl->nstalls < MAX_GEN) {
        fl->stalls[fl->nstalls++] = (struct stall){ n, g, tu_now_ms(), 0, -1, 0, 0, 0 };
    } else if (sscanf(line, "D %d", &n) == 1 && n >= 0 && n < MAX_EVENTS) {
        fl->ev[n].dead++;
    } else if (sscanf(line, "U %d", &g) == 1) {
        /* a host is up: nothing to count */
    } else if (sscanf(line, "O %d %d", &g, &n) == 2 && g >= 0 && g < MAX_GEN) {
        fl->gen_offers[g] = n;
    } else {
        fl->bad_lines++;
    }
}

/* Splits what a host wrote into lines. Returns 0 at EOF. */
static int host_read(struct fleet *fl, struct host *h)
{
    char chunk[4096];
    ssize_t got = read(h->out, chunk, sizeof chunk), i;

    if (got < 0)
        return errno == EAGAIN || errno == EINTR;
    if (got == 0)
        return 0;
    for (i = 0; i < got; i++) {
        if (chunk[i] != '\n') {
            if (h->len < sizeof h->buf - 1)
                h->buf[h->len++] = chunk[i];
            continue;
        }
        h->buf[h->len] = '\0';
        h->len = 0;
        if (h->buf[0] == 'H')
            h->hung = 1;
        book_line(fl, h->buf);
    }
    return 1;
}

static void host_start(struct fleet *fl, int slot)
{
    struct host *h = &fl->h[slot];
    int out[2], ctl[2], i;
    pid_t pid;

    assert_true(fl->next_gen < MAX_GEN);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(ctl, O_CLOEXEC), 0);
    h->gen = fl->next_gen++;
    fl->gen_slot[h->gen] = slot;
    fl->gen_offers[h->gen] = -1;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* the other hosts' pipes are theirs: an inherited write end of a
         * control pipe would keep that host from seeing its EOF */
        for (i = 0; i < NHOST; i++)
            if (i != slot && fl->h[i].pid > 0) {
                close(fl->h[i].out);
                close(fl->h[i].ctl);
            }
        close(out[0]);
        close(ctl[1]);
        h_t0 = fl->t0;
        host_main(slot, h->gen, out[1], ctl[0], fl->tick_ms, fl->stall_at, fl->offering);
    }
    close(out[1]);
    close(ctl[0]);
    assert_int_equal(fcntl(out[0], F_SETFL, O_NONBLOCK), 0);
    h->pid = pid;
    h->out = out[0];
    h->ctl = ctl[1];
    h->len = 0;
    h->hung = 0;
}

/* Reads a host's pipe to its end and reaps it; returns its wait status. */
static int host_reap(struct fleet *fl, struct host *h)
{
    int status = 0;
    for (;;) {
        struct pollfd p = { h->out, POLLIN, 0 };
        assert_true(poll(&p, 1, 30000) > 0);
        if (!host_read(fl, h))
            break;
    }
    close(h->out);
    if (h->ctl >= 0)
        close(h->ctl);
    h->ctl = -1;
    assert_int_equal(waitpid(h->pid, &status, 0), h->pid);
    h->pid = -1;
    return status;
}

/*
 * After a kill: the events the killed process reported ended whose hash
 * Redis still holds were ended by it but their end was not committed; only
 * those may end again. (An end the process had sent and Redis applies
 * after this check makes the count larger, never smaller.)
 */
static void note_in_flight(struct fleet *fl, int gen)
{
    struct timeval tv = { 5, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
    size_t i, asked = 0, k;
    int *ns, here = 0;

    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisSetTimeout(c, tv);
    ns = malloc((fl->nends + 1) * sizeof *ns);
    assert_non_null(ns);
    for (i = 0; i < fl->nends; i++) {
        if (fl->ends[i].gen != gen)
            continue;
        ns[asked++] = fl->ends[i].n;
        redisAppendCommand(c, "EXISTS %s:ev:%s", PREFIX, fl->ev[fl->ends[i].n].id);
    }
    for (k = 0; k < asked; k++) {
        redisReply *rep = NULL;
        assert_int_equal(redisGetReply(c, (void **)&rep), REDIS_OK);
        assert_non_null(rep);
        assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
        if (rep->integer) {
            fl->ev[ns[k]].in_flight++;
            here++;
        }
        freeReplyObject(rep);
    }
    free(ns);
    redisFree(c);
    fl->in_flight_total += here;
    if (here > fl->in_flight_max)
        fl->in_flight_max = here;
}

static void kill_note(struct fleet *fl, const char *fmt, ...) FAAS_PRINTF(2, 3);

static void kill_note(struct fleet *fl, const char *fmt, ...)
{
    size_t len = strlen(fl->kill_log);
    va_list ap;
    if (len + 24 >= sizeof fl->kill_log)
        return;
    if (len)
        fl->kill_log[len++] = ' ';
    va_start(ap, fmt);
    vsnprintf(fl->kill_log + len, sizeof fl->kill_log - len, fmt, ap);
    va_end(ap);
}

static void fleet_kill(struct fleet *fl, int slot)
{
    struct host *h = &fl->h[slot];
    int status, gen = h->gen;

    kill(h->pid, SIGKILL);
    fl->gen_killed[gen] = 1;
    kill_note(fl, "%llu:%d", (unsigned long long)(tu_now_ms() - fl->t0), gen);
    status = host_reap(fl, h);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    fl->kills++;
    note_in_flight(fl, gen);
    host_start(fl, slot);
}

/* Kills and restarts the hosts that hung in a stalling event. */
static void fleet_kill_hung(struct fleet *fl)
{
    for (int i = 0; i < NHOST; i++)
        if (fl->h[i].hung) {
            fleet_kill(fl, i);
            fl->stall_kills++;
        }
}

/* Reads every host's pipe for up to `ms`. */
static void fleet_poll(struct fleet *fl, int ms)
{
    struct pollfd p[NHOST];
    int i;

    for (i = 0; i < NHOST; i++)
        p[i] = (struct pollfd){ fl->h[i].out, POLLIN, 0 };
    if (poll(p, NHOST, ms) <= 0)
        return;
    for (i = 0; i < NHOST; i++)
        if (p[i].revents)
            while (host_read(fl, &fl->h[i]) && (p[i].revents & POLLIN)) {
                struct pollfd q = { fl->h[i].out, POLLIN, 0 };
                if (poll(&q, 1, 0) <= 0)
                    break;
            }
}

/* 1 when every host is done offering, every offer of the live hosts was
 * answered and every accepted event ended at least once. */
static int fleet_settled(const struct fleet *fl)
{
    int i, g;
    for (i = 0; i < NHOST; i++) {
        g = fl->h[i].gen;
        if (fl->gen_offers[g] < 0 || fl->gen_answered[g] < fl->gen_offers[g])
            return 0;
    }
    for (i = 0; i < fl->next_gen * GEN_EVENTS; i++)
        if (fl->ev[i].acc == 1 && fl->ev[i].ends == 0)
            return 0;
    return 1;
}

/* The fleet of the running test: its teardown kills what a failed
 * assertion left running and frees the books. */
static struct fleet *g_fleet;

static int fleet_setup(void **state)
{
    (void)state;
    g_fleet = calloc(1, sizeof *g_fleet);
    assert_non_null(g_fleet);
    g_fleet->ev = calloc(MAX_EVENTS, sizeof *g_fleet->ev);
    assert_non_null(g_fleet->ev);
    for (int i = 0; i < NHOST; i++)
        g_fleet->h[i].pid = -1;
    return 0;
}

static int fleet_teardown(void **state)
{
    struct fleet *fl = g_fleet;
    (void)state;
    for (int i = 0; i < NHOST; i++) {
        struct host *h = &fl->h[i];
        if (h->pid <= 0)
            continue;
        kill(h->pid, SIGKILL);
        waitpid(h->pid, NULL, 0);
        close(h->out);
        if (h->ctl >= 0)
            close(h->ctl);
    }
    free(fl->ends);
    free(fl->ev);
    free(fl);
    g_fleet = NULL;
    return 0;
}

static unsigned lcg(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static int cmp_ms(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/*
 * Duplicates: a process ends an event it holds once, and a live host's
 * hold on an event it runs is never taken from it: a live host ends,
 * retries or times out every attempt within the function's timeout (2 s),
 * well inside the timeout + 5 s after which others may claim the event;
 * the redis-server is down for a second, and the hosts' reconnects back
 * off by at most 1.6 s then. So an event can end twice only when the
 * process that ended it was killed before Redis had that end: the end ran
 * on the host (on_complete), its commit did not. After each kill the parent
 * counts the events the killed process reported ended that Redis still
 * holds (note_in_flight), and every event's duplicated ends must be covered
 * by its own such counts. Per kill those are at most what the engine had
 * not yet committed: the function's max_concurrency (8) running plus the
 * ends queued for the engine's next write; the summary prints the most.
 */
static void test_fleet_kill9(void **state)
{
    const int slow = RUNNING_ON_VALGRIND != 0;
    const long run_ms = slow ? 16000 : 30000;
    const int nkill = slow ? 3 : 12;
    const char *seed_env = getenv("FAAS_FLEET_SEED");
    unsigned seed = seed_env ? (unsigned)strtoul(seed_env, NULL, 10) : 20261207u;
    long kill_at[32], redis_at = run_ms / 2, redis_back = -1, t;
    int kill_slot[32], k = 0, i, lost = 0, dupes = 0, beyond = 0, poison_ok = 1;
    int poison_dead = 0, ok_failed = 0, max_ends = 0, refused_ran = 0, status;
    uint64_t t0, settle_end;
    struct fleet *fl = g_fleet;
    (void)state;

    if (!have_srv) {
        print_message("%s\n", skip_reason);
        skip();
    }
    print_message("fleet: seed %u (FAAS_FLEET_SEED)%s\n", seed, slow ? ", under valgrind" : "");
    fl->tick_ms = slow ? 50 : 10;
    fl->stall_at = slow ? 20 : 150;
    fl->offering = 1;

    /* kill moments: spread over the run, none within 3 s of the server's
     * restart (a host does not start while the server is down) */
    for (i = 0; i < nkill;) {
        t = 1500 + (long)(lcg(&seed) % (unsigned)(run_ms - 2500));
        if (t > redis_at - 3000 && t < redis_at + 3000)
            continue;
        kill_at[i] = t;
        kill_slot[i] = (int)(lcg(&seed) % NHOST);
        i++;
    }
    qsort(kill_at, (size_t)nkill, sizeof kill_at[0], cmp_ms);

    fl->t0 = t0 = tu_now_ms();
    for (i = 0; i < NHOST; i++)
        host_start(fl, i);
    for (;;) {
        long now = (long)(tu_now_ms() - t0);
        if (now >= run_ms)
            break;
        if (k < nkill && now >= kill_at[k]) {
            fleet_kill(fl, kill_slot[k]);
            fl->random_kills++;
            k++;
            continue;
        }
        if (redis_at >= 0 && now >= redis_at) {
            /* the server dies, stays down for a second, and comes back
             * with its append-only file */
            tu_redis_crash(&srv);
            kill_note(fl, "%ld:R", now);
            fl->redis_kills++;
            redis_at = -1;
            redis_back = now + 1000;
            continue;
        }
        if (redis_back >= 0 && now >= redis_back) {
            assert_int_equal(tu_redis_spawn(&srv), 0);
            redis_back = -1;
            continue;
        }
        fleet_poll(fl, 10);
        fleet_kill_hung(fl);
    }
    /* the run is over: the hosts stop offering and run what is left */
    for (i = 0; i < NHOST; i++)
        assert_int_equal(write(fl->h[i].ctl, "s", 1), 1);
    settle_end = tu_now_ms() + 90000;
    fl->offering = 0;
    while (!fleet_settled(fl) && tu_now_ms() < settle_end) {
        fleet_poll(fl, 20);
        fleet_kill_hung(fl);
    }
    for (i = 0; i < NHOST; i++) {
        close(fl->h[i].ctl);
        fl->h[i].ctl = -1;
    }
    for (i = 0; i < NHOST; i++) {
        status = host_reap(fl, &fl->h[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }

    for (i = 0; i < fl->next_gen * GEN_EVENTS; i++) {
        struct ev_book *b = &fl->ev[i];
        if (b->nacc > 1)
            fl->bad_lines++;
        if (b->acc == -1 && b->ends)
            refused_ran++;
        if (b->acc != 1)
            continue;
        if (b->ends == 0) {
            if (lost < 5)
                print_message("lost: event %d (%s)\n", i, b->id);
            lost++;
            continue;
        }
        dupes += b->ends - 1;
        if (b->ends > max_ends)
            max_ends = b->ends;
        if (b->ends - 1 > b->in_flight) {
            if (beyond < 5)
                print_message("event %d (%s): %d ends, %d of them cut short by a kill; "
                              "ended in generations %d, %d (attempts %d, %d) at %u, %u ms, "
                              "generation %d %s\n", i, b->id, b->ends, b->in_flight,
                              b->end_gen[0], b->end_gen[1], b->end_att[0], b->end_att[1],
                              b->end_t[0], b->end_t[1], b->end_gen[0],
                              fl->gen_killed[b->end_gen[0]] ? "killed" : "lived");
            beyond++;
        }
        if (i % 7 == 0) {
            if (b->ok || !b->dead)
                poison_ok = 0;
            poison_dead++;
        } else if (!b->ok) {
            ok_failed++; /* kills used up its attempts */
        }
    }
    print_message("fleet: %d offered, %d accepted, %d refused (server down), %d lost, "
                  "%d duplicated ends (%d ends cut short by kills, at most %d in one kill; "
                  "most ends of one event %d), %d host kills (%d of hung hosts), %d server kill, "
                  "ends per host %d/%d/%d, %d ended on another host (%d while the accepting "
                  "one was alive), %d in another process, "
                  "%d failing events dead-lettered, %d others failed for good, "
                  "%d refused that ran, %d stalls, %d recovered in the accepting process, "
                  "%ld lines\n",
                  fl->offered, fl->accepted, fl->refused, lost, dupes, fl->in_flight_total,
                  fl->in_flight_max, max_ends, fl->kills, fl->stall_kills, fl->redis_kills,
                  fl->ends_by_slot[0], fl->ends_by_slot[1], fl->ends_by_slot[2],
                  fl->cross_slot, fl->cross_live, fl->cross_process, poison_dead, ok_failed, refused_ran, fl->nstalls, fl->taken_back, fl->lines);

    print_message("fleet: kills (ms into the run:generation) %s\n", fl->kill_log);
    for (i = 0; i < fl->nstalls; i++) {
        struct stall *st = &fl->stalls[i];
        long delay = st->end_ms ? (long)(st->end_ms - st->hung_ms) : -1;
        print_message("stall: event %d hung its host (generation %d); ended %ld ms later in "
                      "generation %d: status %d, recovered %d, attempts %u\n",
                      st->n, st->gen, delay, st->end_gen, st->end_status, st->end_recovered,
                      st->end_attempts);
    }
    assert_int_equal(fl->bad_lines, 0);
    assert_int_equal(fl->other_rc, 0);
    assert_int_equal(fl->id_mismatch, 0);
    assert_int_equal(fl->random_kills, nkill);
    assert_int_equal(fl->kills, nkill + fl->stall_kills);
    assert_true(fl->accepted >= (slow ? 200 : 2000));
    assert_int_equal(lost, 0);
    assert_int_equal(beyond, 0);
    assert_true(dupes <= fl->in_flight_total);
    assert_true(poison_ok);
    assert_int_equal(fl->recovered_wrong, 0);
    assert_int_equal(fl->attempts_wrong, 0);
    /* faas_invoke_async: FAAS_EUNAVAILABLE means nothing of it runs. But a
     * put the server wrote to its file before it was killed is there when
     * it comes back, though its answer never left: the engine cannot tell
     * it from one the server never read. Those are the puts a host had
     * sent and not had answered at the kill: a host offers one per 10 ms
     * and sees the connection close at once, so at most two each. */
    assert_true(refused_ran <= NHOST * 2);
    for (i = 0; i < NHOST; i++)
        assert_true(fl->ends_by_slot[i] > 0);
    assert_true(fl->cross_slot > 0);
    /* A hung host's event is taken over by another once its lease ran out:
     * the function's timeout plus 5 s after the last renewal (at most a
     * second before the host hung), found within a second (the claim
     * period), and runs its second attempt there. */
    assert_true(fl->nstalls >= (slow ? 1 : 3));
    for (i = 0; i < fl->nstalls; i++) {
        struct stall *st = &fl->stalls[i];
        assert_true(st->end_ms != 0);
        assert_int_not_equal(st->end_gen, st->gen);
        assert_int_equal(st->end_status, 0);
        assert_int_equal(st->end_attempts, 2);
        assert_true(st->end_ms >= st->hung_ms + FN_TIMEOUT_MS + 5000 - 1500);
        assert_true(st->end_ms <= st->hung_ms + FN_TIMEOUT_MS + 5000 + 8000);
    }
    /* the hosts share the queue: a tenth of the events at least ran on a
     * live host other than the one that accepted them (any host of the
     * three may read an event; evenly shared, two thirds would) */
    assert_true(fl->cross_live * 10 >= fl->accepted);
}

/* ---- one runtime, its server stopped and started again ----------------- */

struct solo {
    int accepted, acc_rc;
    char acc_id[FAAS_REQUEST_ID_SIZE];
    int ends, end_status, end_recovered;
    char end_id[FAAS_REQUEST_ID_SIZE];
};

static int echo_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_incref(event);
    return 0;
}

static void solo_accepted(int rc, const char *request_id, void *arg)
{
    struct solo *s = arg;
    s->accepted++;
    s->acc_rc = rc;
    snprintf(s->acc_id, sizeof s->acc_id, "%s", request_id);
}

static void solo_end(const struct faas_result *res, void *arg)
{
    struct solo *s = arg;
    s->ends++;
    s->end_status = faas_result_status(res);
    s->end_recovered = faas_result_recovered(res);
    snprintf(s->end_id, sizeof s->end_id, "%s", faas_result_request_id(res));
}

/* Offers one async event and waits (bounded) for its on_accepted. */
static int solo_offer(struct event_base *base, struct faas_runtime *rt, struct solo *s, int n)
{
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    char id[FAAS_REQUEST_ID_SIZE];
    json_t *ev = json_pack("{s:i}", "n", n);
    int want = s->accepted + 1;

    io.on_accepted = solo_accepted;
    io.accepted_arg = s;
    assert_int_equal(faas_invoke_async(rt, "echo", ev, &io, id), 0);
    json_decref(ev);
    assert_true(tu_run_until(base, &s->accepted, want, 15000));
    assert_string_equal(s->acc_id, id);
    return s->acc_rc;
}

static void solo_sync(struct faas_runtime *rt, int n)
{
    struct faas_result *res = NULL;
    json_t *ev = json_pack("{s:i}", "n", n);

    assert_int_equal(faas_invoke_sync(rt, "echo", ev, NULL, &res), 0);
    assert_int_equal(faas_result_status(res), 0);
    assert_int_equal(json_integer_value(json_object_get(faas_result_payload(res), "n")), n);
    faas_result_free(res);
    json_decref(ev);
}

/* The test's own server and runtime: its teardown stops and frees what a
 * failed assertion left. */
static struct tu_redis own;
static struct event_base *solo_base;
static struct faas_runtime *solo_rt;
static struct solo solo_log; /* the callbacks may run inside the free */

static int solo_teardown(void **state)
{
    (void)state;
    if (solo_rt)
        tu_rt_free(&solo_rt, &solo_base);
    if (own.dir[0])
        tu_redis_stop(&own);
    return 0;
}

static void test_fleet_redis_down_mid_run(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    struct event_base *base;
    struct faas_runtime *rt;
    struct solo *s = &solo_log;
    uint64_t until;
    int i, rc, ends;
    (void)state;

    if (!have_srv) {
        print_message("%s\n", skip_reason);
        skip();
    }
    memset(s, 0, sizeof *s);
    assert_int_equal(tu_redis_start(&own), 0); /* no persistence: it comes back empty */
    o.zygote = 0;
    o.durable = own.url;
    o.durable_prefix = "solo";
    o.node_id = "solo-1";
    tu_rt_new(&solo_base, &solo_rt, &o);
    base = solo_base;
    rt = solo_rt;
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.timeout_ms = FN_TIMEOUT_MS;
    ao.on_complete = solo_end;
    ao.on_complete_arg = s;
    fo.async = &ao;
    assert_int_equal(faas_register(rt, "echo", echo_handler, &fo), 0);

    /* up: accepted and run */
    assert_int_equal(solo_offer(base, rt, s, 1), 0);
    assert_true(tu_run_until(base, &s->ends, 1, 15000));
    assert_int_equal(s->end_status, 0);
    assert_string_equal(s->end_id, s->acc_id);
    assert_int_equal(s->end_recovered, 0);

    /* down: memory-only work serves, async accepts are refused */
    tu_redis_kill(&own);
    for (i = 0; i < 5; i++)
        solo_sync(rt, 10 + i);
    for (i = 0; i < 3; i++)
        assert_int_equal(solo_offer(base, rt, s, 20 + i), FAAS_EUNAVAILABLE);
    solo_sync(rt, 30);
    tu_run_for(base, 300); /* nothing of a refused event runs */
    assert_int_equal(s->ends, 1);

    /* back on its port, empty: an offer is accepted within the reconnect
     * backoff (at most 5 s) and runs to its end */
    assert_int_equal(tu_redis_spawn(&own), 0);
    until = tu_now_ms() + 20000;
    for (i = 0;; i++) {
        /* its end may come before its acceptance: the queue's reader may
         * hand it over before the write's answer is read */
        ends = s->ends;
        rc = solo_offer(base, rt, s, 40 + i);
        if (rc == 0)
            break;
        assert_int_equal(rc, FAAS_EUNAVAILABLE);
        assert_true(tu_now_ms() < until);
        tu_run_for(base, 100); /* the next offer, after the reconnect backoff */
        assert_int_equal(s->ends, ends);
    }
    assert_true(tu_run_until(base, &s->ends, ends + 1, 15000));
    assert_int_equal(s->end_status, 0);
    assert_string_equal(s->end_id, s->acc_id);
    assert_int_equal(s->end_recovered, 0);
    solo_sync(rt, 99);
    tu_run_for(base, 200); /* it ends once */
    assert_int_equal(s->ends, ends + 1);
}

static int group_setup(void **state)
{
    (void)state;
    if (!tu_redis_available()) {
        skip_reason = "redis-server is not installed: the fleet tests are skipped";
        return 0;
    }
    have_srv = tu_redis_start_aof(&srv) == 0;
    if (!have_srv)
        skip_reason = "redis-server did not start";
    return have_srv ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (have_srv)
        tu_redis_stop(&srv);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_fleet_redis_down_mid_run, solo_teardown),
        cmocka_unit_test_setup_teardown(test_fleet_kill9, fleet_setup, fleet_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

#else

static void test_fleet_redis_left_out(void **state)
{
    (void)state;
    print_message("built with WITH_REDIS=0: the fleet tests are skipped\n");
    skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fleet_redis_left_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif

/*
 * bench_durable_redis.c - async events kept by the Redis engine, end to end
 * through the public API, each figure next to a floor measured in the same
 * run (see bench.h for the method):
 *
 *   Redis async event, accept to end     vs raw hiredis, the same commands   target <= 2x
 *     (faas_invoke_async, INLINE no-op,    an event, pipelined 256 events    (0.5x the
 *      to the async on_complete)            at a time                         throughput)
 *   accept latency (to on_accepted),     vs one raw round trip of HSET+XADD  (reported)
 *     host and server on 2 cpus, 1 cpu
 *   hosts curve: the throughput with     vs 1 host                           (reported)
 *     1, 2, 3 host processes on one
 *     server and prefix
 *
 * The throughput floor is one plain blocking hiredis connection doing per
 * event what the engine asks of Redis for it: HSET of the event's hash and
 * XADD to the function's stream (accepted), XREADGROUP COUNT 128 (delivered,
 * one read per 128 events), HSET attempts (the attempt starts), XACK, XDEL
 * and DEL (ended). It sends plain commands where the engine calls its Lua
 * script (one EVALSHA an accept, an attempt, an end), so the floor has no
 * script's cost; its pipeline keeps a window of 256 events outstanding,
 * their accepts and reads in one write with the previous window's attempts
 * and ends. Its stream entry holds the request id alone.
 *
 * After the pair, the engine and the floor each run once more with the
 * server's command counts reset: the commands an event cost in Redis (a
 * script's inner commands included) and how busy redis-server and the
 * client were, which says which side bounds the throughput.
 *
 * The hosts curve forks 1, 2, 3 hosts, each with a runtime of its own on the
 * same server and prefix (node_id host-1..3); each accepts N/k events, and
 * any host may run any of them. A ledger in memory the hosts share counts
 * each event once when it first ends (an event ends at least once: a second
 * end is counted apart and reported); the parent times from its start
 * signal until each host has seen all N ended. The machine's cores are
 * shared by the hosts, the parent and redis-server.
 *
 * The benchmark starts its own redis-server (tests/redis_util.h: a free
 * loopback port, no persistence) and stops it by PID. It prints a skip line
 * and exits 0 when redis-server is not installed or the build has no Redis
 * engine (WITH_REDIS=0). Run with `make bench`. Exits 0 whatever the ratios
 * (shared machines drift); a missed target prints OVER. About 15 s on 2
 * cores. Only the accept latency is pinned (bench.h's placements, with
 * redis-server as the other side); the throughputs leave the host,
 * redis-server and the floor's client to the scheduler.
 */
#include "bench.h"

#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include <event2/event.h>

#include "faas.h"

#if FAAS_WITH_REDIS
#include "../redis_util.h"

#define PREFIX "bench"
#define RAW_PREFIX "raw"
#define WINDOW 256u     /* events outstanding, the engine's figure and the floor */
#define READ_COUNT 128u /* entries per XREADGROUP */
#define MAX_HOSTS 3
#define ROUND_MS_DEFAULT "300"

static struct tu_redis srv;
static pid_t main_pid;
static pid_t hosts_pid[MAX_HOSTS]; /* the curve's hosts while they run */

/* A benchmark that dies or hangs leaves no server or host behind: both go
 * by PID, from the main process only. */
static void cleanup(void)
{
    int i;
    if (getpid() != main_pid)
        return;
    for (i = 0; i < MAX_HOSTS; i++)
        if (hosts_pid[i] > 0)
            kill(hosts_pid[i], SIGKILL);
    tu_redis_stop(&srv);
}

/* SIGALRM (a hang), and SIGPIPE, SIGINT, SIGTERM, SIGHUP (a reader of the
 * output that went away, ^C): the same, from a signal handler. */
static void on_fatal(int sig)
{
    static const char msg[] = "bench_durable_redis: stopped by a signal\n";
    int i;
    (void)sig;
    for (i = 0; i < MAX_HOSTS; i++)
        if (hosts_pid[i] > 0)
            kill(hosts_pid[i], SIGKILL);
    if (srv.pid > 0 && kill(srv.pid, SIGKILL) == 0 && waitpid(srv.pid, NULL, 0) == srv.pid)
        rmdir(srv.dir); /* empty: the server keeps no files */
    if (write(2, msg, sizeof msg - 1) < 0)
        _exit(3);
    _exit(2);
}

/* ---- the ledger: each event counted once when it ends -------------------- */

/*
 * Every accepted event's request id, and whether it ended, in memory that
 * forked hosts share: an event ends at least once (docs/durability.md), so
 * a second end of one event is counted apart, not as another event's end,
 * and a round waits for every event it accepted. An open-addressing table
 * of 64-bit hashes of the request ids; the accepting host enters an id
 * before its loop can send the event to Redis, so any host's end finds it.
 */
#define LEDGER_SLOTS (1u << 21)

struct ledger {
    _Atomic uint64_t issued, ended, dups;
    _Atomic int first_dup_status;
    _Atomic uint64_t key[LEDGER_SLOTS];
    _Atomic unsigned char state[LEDGER_SLOTS]; /* 1 accepted, 2 ended */
};

static struct ledger *ledger_new(void)
{
    struct ledger *l = mmap(NULL, sizeof *l, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (l == MAP_FAILED)
        bench_die("mmap");
    return l; /* zeroed */
}

static void ledger_free(struct ledger *l)
{
    munmap(l, sizeof *l);
}

static uint64_t rid_hash(const char *rid)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    while (*rid)
        h = (h ^ (unsigned char)*rid++) * 1099511628211u;
    return h ? h : 1;
}

static void ledger_accept(struct ledger *l, const char *rid)
{
    uint64_t h = rid_hash(rid), i = h & (LEDGER_SLOTS - 1);

    if (atomic_fetch_add(&l->issued, 1) > LEDGER_SLOTS / 10 * 7)
        bench_die("ledger full");
    for (;; i = (i + 1) & (LEDGER_SLOTS - 1)) {
        uint64_t zero = 0;
        if (atomic_compare_exchange_strong(&l->key[i], &zero, h)) {
            atomic_store(&l->state[i], 1);
            return;
        }
        if (zero == h)
            bench_die("two events with one request id");
    }
}

/* 1 when this is the event's first end. */
static int ledger_end(struct ledger *l, const char *rid)
{
    uint64_t h = rid_hash(rid), i = h & (LEDGER_SLOTS - 1), k;
    unsigned char one = 1;

    for (; (k = atomic_load(&l->key[i])) != 0; i = (i + 1) & (LEDGER_SLOTS - 1))
        if (k == h)
            return atomic_compare_exchange_strong(&l->state[i], &one, 2);
    return 0;
}

/* ---- a host: a runtime on the server, an INLINE no-op async function ---- */

struct host {
    struct event_base *base;
    struct faas_runtime *rt;
    json_t *event;
    struct ledger *ledger;
    uint64_t ended, accepted; /* first ends on this host; on_accepted calls */
    uint64_t errors;
    int first_error;
};

static void note_error(struct host *h, int status)
{
    if (h->errors++ == 0)
        h->first_error = status;
}

static void on_complete(const struct faas_result *res, void *arg)
{
    struct host *h = arg;
    struct ledger *l = h->ledger;
    int status = faas_result_status(res);

    if (!ledger_end(l, faas_result_request_id(res))) {
        if (atomic_fetch_add(&l->dups, 1) == 0)
            atomic_store(&l->first_dup_status, status);
        return;
    }
    if (status != 0)
        note_error(h, status);
    h->ended++;
    atomic_fetch_add(&l->ended, 1);
}

/* One event accepted: entered in the ledger, or counted as ended when the
 * call refused it. */
static void host_accept(struct host *h, const struct faas_invoke_opts *io)
{
    char rid[FAAS_REQUEST_ID_SIZE];
    int rc = faas_invoke_async(h->rt, "fn", h->event, io, rid);

    if (rc != 0) {
        note_error(h, rc);
        h->ended++;
        atomic_fetch_add(&h->ledger->issued, 1);
        atomic_fetch_add(&h->ledger->ended, 1);
        return;
    }
    ledger_accept(h->ledger, rid);
}

static void on_accepted(int rc, const char *request_id, void *arg)
{
    struct host *h = arg;
    (void)request_id;
    if (rc != 0)
        note_error(h, rc);
    h->accepted++;
}

static int nop_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_true();
    return 0;
}

/* A host on the server (url NULL: without an engine, for reference). */
static void host_open(struct host *h, const char *node, const char *url, struct ledger *l)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;

    memset(h, 0, sizeof *h);
    h->ledger = l;
    ro.zygote = 0;
    ro.durable = url;
    ro.durable_prefix = url ? PREFIX : NULL;
    ro.node_id = node;
    bench_runtime_open(&h->base, &h->rt, &ro);
    bench_register_async(h->rt, nop_handler, on_complete, h);
    h->event = json_pack("{s:i}", "k", 1);
    if (h->event == NULL)
        bench_die("json_pack");
}

static void host_close(struct host *h)
{
    faas_runtime_free(h->rt);
    event_base_free(h->base);
    json_decref(h->event);
}

/*
 * Accepts k events, at most WINDOW of them not yet ended, and runs the loop
 * until all k ended here. Ends counted from h->ended at the call.
 */
static void host_run(struct host *h, uint64_t k)
{
    uint64_t issued = 0, base = h->ended;

    while (h->ended - base < k) {
        while (issued < k && issued - (h->ended - base) < WINDOW) {
            host_accept(h, NULL);
            issued++;
        }
        event_base_loop(h->base, EVLOOP_ONCE);
    }
}

static void async_body(void *arg, uint64_t k)
{
    host_run(arg, k);
}

/* One event, timed to its on_accepted; then the loop runs until it ended,
 * off the clock, so each accept meets an idle engine. */
static uint64_t accept_one(struct host *h)
{
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    uint64_t want = h->accepted + 1, ended = h->ended, t0, t1;

    io.on_accepted = on_accepted;
    io.accepted_arg = h;
    t0 = bench_now_ns();
    host_accept(h, &io);
    if (h->ended != ended)
        return 0;
    while (h->accepted < want)
        event_base_loop(h->base, EVLOOP_ONCE);
    t1 = bench_now_ns();
    while (h->ended == ended)
        event_base_loop(h->base, EVLOOP_ONCE);
    return t1 - t0;
}

/* ---- the raw hiredis floor ------------------------------------------------ */

struct raw {
    redisContext *c;
    uint64_t next_id;
    unsigned held; /* events read, their attempts and ends not yet sent */
    char rid[WINDOW][40];
    char sid[WINDOW][48];
};

static redisReply *raw_reply(struct raw *r)
{
    void *rep = NULL;
    if (redisGetReply(r->c, &rep) != REDIS_OK || rep == NULL)
        bench_die("redisGetReply");
    if (((redisReply *)rep)->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "bench: redis: %s\n", ((redisReply *)rep)->str);
        exit(2);
    }
    return rep;
}

static void raw_skip(struct raw *r, unsigned n)
{
    while (n-- > 0)
        freeReplyObject(raw_reply(r));
}

static void raw_open(struct raw *r)
{
    struct timeval tv = { 5, 0 };

    memset(r, 0, sizeof *r);
    r->c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
    if (r->c == NULL || r->c->err)
        bench_die("redisConnect");
    redisSetTimeout(r->c, tv);
    redisAppendCommand(r->c, "XGROUP CREATE %s:q:fn workers $ MKSTREAM", RAW_PREFIX);
    raw_skip(r, 1);
}

static void raw_close(struct raw *r)
{
    redisFree(r->c);
}

/* The event's hash, as the engine's accept writes it, and its stream entry. */
static void raw_append_accept(struct raw *r, const char *rid)
{
    redisAppendCommand(r->c,
                       "HSET %s:ev:%s function fn accepted_ms %lld origin node-raw "
                       "event {\"k\":1} timeout_ms 3000 attempts 0",
                       RAW_PREFIX, rid, (long long)r->next_id);
    redisAppendCommand(r->c, "XADD %s:q:fn * rid %s", RAW_PREFIX, rid);
}

/* Keeps the rid and entry id of each entry an XREADGROUP delivered. */
static void raw_take_read(struct raw *r, redisReply *rep)
{
    size_t i;

    /* [[stream, [[id, [field, value]], ...]]] */
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 1 ||
        rep->element[0]->elements != 2)
        bench_die("XREADGROUP reply");
    rep = rep->element[0]->element[1];
    for (i = 0; i < rep->elements && r->held < WINDOW; i++) {
        redisReply *e = rep->element[i];
        if (e->elements != 2 || e->element[1]->elements != 2)
            bench_die("XREADGROUP entry");
        snprintf(r->sid[r->held], sizeof r->sid[0], "%s", e->element[0]->str);
        snprintf(r->rid[r->held], sizeof r->rid[0], "%s", e->element[1]->element[1]->str);
        r->held++;
    }
}

/*
 * k events through Redis: each write carries the attempts and ends of the
 * window read before and the accepts and reads of the next, one round trip
 * a window.
 */
static void raw_body(void *arg, uint64_t k)
{
    struct raw *r = arg;
    uint64_t issued = 0;

    while (issued < k || r->held > 0) {
        unsigned prev = r->held, cur = 0, reads, i;
        char rid[40];

        for (i = 0; i < prev; i++) {
            redisAppendCommand(r->c, "HSET %s:ev:%s attempts 1", RAW_PREFIX, r->rid[i]);
            redisAppendCommand(r->c, "XACK %s:q:fn workers %s", RAW_PREFIX, r->sid[i]);
            redisAppendCommand(r->c, "XDEL %s:q:fn %s", RAW_PREFIX, r->sid[i]);
            redisAppendCommand(r->c, "DEL %s:ev:%s", RAW_PREFIX, r->rid[i]);
        }
        while (issued < k && cur < WINDOW) {
            snprintf(rid, sizeof rid, "%036llu", (unsigned long long)r->next_id++);
            raw_append_accept(r, rid);
            cur++;
            issued++;
        }
        reads = (cur + READ_COUNT - 1) / READ_COUNT;
        for (i = 0; i < reads; i++)
            redisAppendCommand(r->c,
                               "XREADGROUP GROUP workers node-raw COUNT %u STREAMS %s:q:fn >",
                               READ_COUNT, RAW_PREFIX);
        raw_skip(r, 4 * prev + 2 * cur);
        r->held = 0;
        for (i = 0; i < reads; i++) {
            redisReply *rep = raw_reply(r);
            raw_take_read(r, rep);
            freeReplyObject(rep);
        }
        if (r->held != cur)
            bench_die("XREADGROUP delivered fewer entries than were added");
    }
}

/* One accept's round trip: HSET and XADD in one write, both replies read;
 * the keys go off the clock. */
static uint64_t raw_accept_one(struct raw *r)
{
    char rid[40], sid[48];
    uint64_t t0, t1;
    redisReply *rep;

    snprintf(rid, sizeof rid, "%036llu", (unsigned long long)r->next_id++);
    t0 = bench_now_ns();
    raw_append_accept(r, rid);
    raw_skip(r, 1);
    rep = raw_reply(r);
    t1 = bench_now_ns();
    snprintf(sid, sizeof sid, "%s", rep->type == REDIS_REPLY_STRING ? rep->str : "0-0");
    freeReplyObject(rep);
    redisAppendCommand(r->c, "XDEL %s:q:fn %s", RAW_PREFIX, sid);
    redisAppendCommand(r->c, "DEL %s:ev:%s", RAW_PREFIX, rid);
    raw_skip(r, 2);
    return t1 - t0;
}

/* ---- the hosts curve -------------------------------------------------------- */

struct child {
    pid_t pid;
    int go;   /* the parent writes: 'g' a round, 'q' the end */
    int done; /* the child writes 'd' when all the round's events ended */
};

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/*
 * A host of the curve: per round, accepts its share of the events while
 * the fleet holds fewer than WINDOW a host not ended (any host may run an
 * event another accepted), and runs its loop until the fleet has ended the
 * round's events.
 */
static void child_main(int idx, int go, int done, struct ledger *sh, uint64_t per_host,
                       uint64_t total, int hosts)
{
    struct host h;
    struct event *tick;
    struct timeval ms = { 0, 1000 };
    char node[32], c;
    uint64_t rounds = 0, window = (uint64_t)hosts * WINDOW;

    signal(SIGALRM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    alarm(0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1)
        _exit(1);
    snprintf(node, sizeof node, "host-%d", idx + 1);
    host_open(&h, node, srv.url, sh);
    /* While the fleet holds a full window, or its own events are issued
     * and others' not ended, the host wakes each millisecond to look at
     * the shared counts (a bounded poll). */
    tick = event_new(h.base, -1, EV_PERSIST, tick_cb, NULL);
    if (tick == NULL || event_add(tick, &ms) != 0)
        bench_die("tick");
    c = 'r';
    if (bench_write_full(done, &c, 1) != 0)
        _exit(1);
    while (bench_read_full(go, &c, 1) == 0 && c == 'g') {
        uint64_t want = ++rounds * total, issued = 0;

        while (atomic_load(&sh->ended) < want) {
            while (issued < per_host &&
                   atomic_load(&sh->issued) - atomic_load(&sh->ended) < window) {
                host_accept(&h, NULL);
                issued++;
            }
            event_base_loop(h.base, EVLOOP_ONCE);
        }
        c = 'd';
        if (bench_write_full(done, &c, 1) != 0)
            _exit(1);
    }
    event_free(tick);
    if (h.errors > 0)
        fprintf(stderr, "bench: %s: %llu invocations failed, first with %s\n", node,
                (unsigned long long)h.errors, faas_strerror(h.first_error));
    host_close(&h);
    _exit(h.errors > 0 ? 1 : 0);
}

/*
 * The seconds of each of `rounds` rounds of `total` events over k hosts
 * (after one round of warm-up), written to secs[]. Returns the events that
 * ended more than once, the first second end's status in *dup_status.
 */
static uint64_t hosts_run(int k, uint64_t total, int rounds, double *secs, int *dup_status)
{
    struct child ch[MAX_HOSTS];
    struct ledger *sh;
    uint64_t dups;
    int i, r;
    char c;

    if (tu_redis_cmd(&srv, "FLUSHALL") != 0)
        bench_die("FLUSHALL");
    sh = ledger_new();
    for (i = 0; i < k; i++) {
        int go[2], done[2];
        if (pipe(go) != 0 || pipe(done) != 0)
            bench_die("pipe");
        fflush(NULL);
        ch[i].pid = fork();
        if (ch[i].pid < 0)
            bench_die("fork");
        hosts_pid[i] = ch[i].pid;
        if (ch[i].pid == 0) {
            int j;
            for (j = 0; j < i; j++) {
                close(ch[j].go);
                close(ch[j].done);
            }
            close(go[1]);
            close(done[0]);
            child_main(i, go[0], done[1], sh, total / (uint64_t)k, total, k);
        }
        close(go[0]);
        close(done[1]);
        ch[i].go = go[1];
        ch[i].done = done[0];
    }
    for (i = 0; i < k; i++)
        if (bench_read_full(ch[i].done, &c, 1) != 0 || c != 'r')
            bench_die("a host did not start");
    for (r = -1; r < rounds; r++) {
        uint64_t t0 = bench_now_ns();
        c = 'g';
        for (i = 0; i < k; i++)
            if (bench_write_full(ch[i].go, &c, 1) != 0)
                bench_die("start signal");
        for (i = 0; i < k; i++)
            if (bench_read_full(ch[i].done, &c, 1) != 0 || c != 'd')
                bench_die("a host ended early");
        if (r >= 0)
            secs[r] = (double)(bench_now_ns() - t0) / 1e9;
    }
    c = 'q';
    for (i = 0; i < k; i++) {
        int st = 0;
        if (bench_write_full(ch[i].go, &c, 1) != 0)
            bench_die("stop signal");
        close(ch[i].go);
        close(ch[i].done);
        while (waitpid(ch[i].pid, &st, 0) < 0 && errno == EINTR)
            ;
        hosts_pid[i] = 0;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            printf("    WARNING: host %d ended with status %d\n", i + 1, st);
    }
    dups = atomic_load(&sh->dups);
    *dup_status = atomic_load(&sh->first_dup_status);
    ledger_free(sh);
    return dups;
}

/* The warning for events that ended twice (at least once: each is counted
 * once, the second end apart). */
static void dups_warning(uint64_t dups, int status)
{
    if (dups > 0)
        printf("    WARNING: %llu events ended twice (the second end: %s); each counted "
               "once\n",
               (unsigned long long)dups, faas_strerror(status));
}

/* ---- figures ---------------------------------------------------------------- */

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

/* Pins redis-server to one cpu; -1: every cpu. 0 or -1. */
static int pin_server(int cpu)
{
    cpu_set_t set;
    int i;

    CPU_ZERO(&set);
    for (i = 0; i < CPU_SETSIZE; i++)
        if (cpu < 0 || i == cpu)
            CPU_SET((size_t)i, &set);
    return sched_setaffinity(srv.pid, sizeof set, &set) == 0 ? 0 : -1;
}

static double median_double(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* The server's version, from INFO server. */
static void redis_version(char *out, size_t size)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
    redisReply *rep = c && !c->err ? redisCommand(c, "INFO server") : NULL;
    const char *v = rep && rep->type == REDIS_REPLY_STRING ? rep->str : NULL;

    v = v ? strstr(v, "redis_version:") : NULL;
    snprintf(out, size, "%.*s", v ? (int)strcspn(v + 14, "\r\n") : 1, v ? v + 14 : "?");
    if (rep)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
}

/* CPU seconds a process spent (user + system), from /proc; 0 if unknown. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* after "(comm) ": state is field 3, utime 14, stime 15 */
    if ((p = strrchr(buf, ')')) == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/*
 * Prints the commands the server counted per event while the host ran `n`
 * events (CONFIG RESETSTAT before, INFO commandstats after): which
 * commands the engine spends on an event; and how busy the server and the
 * host were meanwhile, which says which of them bounds the throughput.
 */
static void commands_per_event(const char *who, bench_body_fn body, void *arg, uint64_t n)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
    redisReply *rep;
    const char *p;
    uint64_t t0;
    double srv0, srv1, me0, me1, wall;

    if (c == NULL || c->err)
        bench_die("redisConnect");
    freeReplyObject(redisCommand(c, "CONFIG RESETSTAT"));
    t0 = bench_now_ns();
    srv0 = cpu_seconds(srv.pid);
    me0 = cpu_seconds(getpid());
    body(arg, n);
    wall = (double)(bench_now_ns() - t0) / 1e9;
    srv1 = cpu_seconds(srv.pid);
    me1 = cpu_seconds(getpid());
    rep = redisCommand(c, "INFO commandstats");
    if (rep == NULL || rep->type != REDIS_REPLY_STRING)
        bench_die("INFO commandstats");
    printf("    (%s: server commands an event:", who);
    for (p = rep->str; (p = strstr(p, "cmdstat_")) != NULL;) {
        const char *name = p + 8, *colon = strchr(name, ':'), *calls;
        p = name;
        if (colon == NULL || (calls = strstr(colon, "calls=")) == NULL)
            break;
        if (strncmp(name, "config", 6) == 0 || strncmp(name, "info", 4) == 0)
            continue;
        printf(" %.*s %.3f", (int)(colon - name), name,
               strtod(calls + 6, NULL) / (double)n);
    }
    printf(";\n     meanwhile redis-server was busy %.0f%% of the time, the client %.0f%%)\n",
           100.0 * (srv1 - srv0) / wall, 100.0 * (me1 - me0) / wall);
    fflush(stdout);
    freeReplyObject(rep);
    redisFree(c);
}

int main(void)
{
    struct bench_stat fig, flo;
    struct bench_side figure, ref;
    struct host h;
    struct raw r;
    struct ledger *l;
    struct bench_place pl[2];
    int npl, j;
    char extra[128], version[32];
    double per_s, hosts_eps[MAX_HOSTS + 1];
    uint64_t total;
    int over = 0, k, rounds;

    if (!tu_redis_available()) {
        printf("bench_durable_redis: skipped: redis-server is not installed\n");
        return 0;
    }
    main_pid = getpid();
    signal(SIGALRM, on_fatal);
    signal(SIGPIPE, on_fatal);
    signal(SIGINT, on_fatal);
    signal(SIGTERM, on_fatal);
    signal(SIGHUP, on_fatal);
    alarm(300); /* a hang must not hang `make bench` */
    setenv("BENCH_ROUND_MS", ROUND_MS_DEFAULT, 0);
    if (tu_redis_start(&srv) != 0)
        bench_die("starting redis-server");
    atexit(cleanup);
    redis_version(version, sizeof version);
    snprintf(extra, sizeof extra,
             "libfaas %s, redis-server %s (no persistence), throughputs unpinned",
             faas_version(), version);
    bench_header("bench_durable_redis", extra);

    /* 1. Throughput, accept to end, alternating with the raw floor. */
    l = ledger_new();
    host_open(&h, "host-1", srv.url, l);
    raw_open(&r);
    host_run(&h, 4 * WINDOW); /* warm */
    raw_body(&r, 4 * WINDOW);
    figure = (struct bench_side){ async_body, &h, 4 * WINDOW, 1u << 22 };
    ref = (struct bench_side){ raw_body, &r, 4 * WINDOW, 1u << 22 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    over += bench_line("Redis async event, accept to end", fig.median_ns,
                       "raw hiredis, same commands", flo.median_ns, 2.0);
    printf("    (%.0f events/s, floor %.0f events/s; the floor sends plain commands where "
           "the engine calls its script: HSET+XADD, XREADGROUP COUNT %u, HSET attempts, "
           "XACK+XDEL+DEL, %u events a pipeline)\n",
           1e9 / fig.median_ns, 1e9 / flo.median_ns, READ_COUNT, WINDOW);
    fflush(stdout);
    per_s = 1e9 / fig.median_ns;
    commands_per_event("engine", async_body, &h, 64 * WINDOW);
    commands_per_event("floor", raw_body, &r, 64 * WINDOW);

    /* 2. Accept latency, one event at a time, taken in turn with one raw
     * round trip of the accept's two commands; the host and redis-server
     * placed on two cpus, then on one (a wake-up of the other, idle vCPU
     * costs tens of microseconds here: unpinned, the figure jumps). */
    npl = bench_placements(pl);
    for (j = 0; j < npl; j++) {
        enum { N = 301 };
        static uint64_t acc[N], raw[N];
        char name[64];
        int i;
        if (bench_pin(pl[j].loop_cpu) != 0 || pin_server(pl[j].worker_cpu) != 0)
            bench_die("pinning");
        for (i = 0; i < N; i++) {
            acc[i] = accept_one(&h);
            raw[i] = raw_accept_one(&r);
        }
        snprintf(name, sizeof name, "accept latency, %s", pl[j].name);
        bench_line(name, median_u64(acc, N), "HSET+XADD, one round trip", median_u64(raw, N),
                   0);
    }
    if (bench_pin(-1) != 0 || pin_server(-1) != 0)
        bench_die("unpinning");
    if (h.errors > 0)
        printf("    WARNING: %llu invocations failed, first with %s\n",
               (unsigned long long)h.errors, faas_strerror(h.first_error));
    dups_warning(atomic_load(&l->dups), atomic_load(&l->first_dup_status));
    raw_close(&r);
    host_close(&h);
    {
        enum { N = 301 };
        static uint64_t acc[N];
        int i;
        host_open(&h, "host-1", NULL, l);
        for (i = 0; i < N; i++)
            acc[i] = accept_one(&h);
        bench_floor_line("accept latency, memory (no engine)", median_u64(acc, N));
        host_close(&h);
    }
    ledger_free(l);

    /* 3. The hosts curve: N events a round, about 0.4 s on one host. */
    total = (uint64_t)(per_s * 0.4);
    total = total < 6000 ? 6000 : total > 120000 ? 120000 : total;
    total -= total % 6;
    rounds = bench_rounds() < 5 ? bench_rounds() : 5;
    printf("hosts curve: %llu events a round over 1..%d host processes on one server and "
           "prefix, median of %d rounds (this machine's %d cores are shared by the hosts "
           "and redis-server, so the curve flattens early)\n",
           (unsigned long long)total, MAX_HOSTS, rounds, bench_ncpus());
    for (k = 1; k <= MAX_HOSTS; k++) {
        double secs[BENCH_ROUNDS_MAX];
        int dup_status = 0;
        uint64_t dups = hosts_run(k, total, rounds, secs, &dup_status);
        hosts_eps[k] = (double)total / median_double(secs, rounds);
        printf("    %d host%s %10.0f events/s  %5.2fx 1 host\n", k, k == 1 ? " " : "s",
               hosts_eps[k], hosts_eps[k] / hosts_eps[1]);
        dups_warning(dups, dup_status);
        fflush(stdout);
    }

    cleanup();
    printf("bench_durable_redis: %d target%s over (reported, not enforced)\n", over,
           over == 1 ? "" : "s");
    return 0;
}
#else
int main(void)
{
    printf("bench_durable_redis: skipped: built without the Redis engine (WITH_REDIS=0)\n");
    return 0;
}
#endif

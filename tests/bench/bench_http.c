/*
 * bench_http.c - the HTTP gateway to an INLINE function (route match,
 * payload 2.0 event, response mapping) against a bare evhttp server that
 * answers "ok", in the same process and the same run.
 *
 * With wrk installed (on PATH, or BENCH_HTTP_WRK=/path/to/wrk), the client
 * is wrk: the loop serves both servers while wrk runs as a child process
 * (`wrk -t1 -cCONNS -dSECONDS http://127.0.0.1:PORT/users/42?x=1`), against
 * the bare server and the gateway in alternating runs - BENCH_ROUNDS runs
 * each (default 7) of BENCH_HTTP_SECONDS (default 1) after a warm-up run of
 * each, the order swapped every round - and the figure is the median of
 * wrk's Requests/sec, printed as ns per request. With two CPUs the loop is
 * pinned to one and wrk to the other (BENCH_PIN=0: unpinned).
 *
 * Without wrk (or with BENCH_HTTP_CLIENT=inproc) an in-process evhttp client
 * stands in, on the same loop: BENCH_HTTP_CONNS (default 16) keep-alive
 * connections, each keeping one request in flight; an operation is one
 * request answered. That client costs the same on both sides, so its ratio
 * understates the gateway's speed relative to a bare server; the output
 * says which client ran.
 *
 * The target: the gateway serves at least 0.75x the bare server's requests
 * per second, i.e. at most 1.33x its time per request.
 *
 * The second figure is Lambda's Invoke API on the same gateway, to an
 * INLINE function: POST /2015-03-31/functions/ok/invocations with a small
 * JSON body (a wrk script sets the method and body; the in-process client
 * sends the same), measured in the same alternating runs against the same
 * bare-server floor, with the same 0.75x target.
 *
 * `bench_http serve SECONDS` only serves both (ports on stdout) for an
 * external client: wrk -t1 -c16 -d3s http://127.0.0.1:PORT/users/42?x=1
 * (the Invoke API: POST http://127.0.0.1:PORT/2015-03-31/functions/ok/invocations)
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "bench.h"
#include "faas.h"

#define MAX_CONNS 256
#define URI "/users/42?x=1"
#define INVOKE_URI "/2015-03-31/functions/ok/invocations"
#define INVOKE_BODY "{\"id\":42}"

struct client;

struct conn {
    struct evhttp_connection *ec;
    struct client *c;
};

struct client {
    struct event_base *base;
    const char *uri;
    const char *body; /* NULL: GET; else POST with this body */
    unsigned nconns;
    struct conn conns[MAX_CONNS];
    uint64_t want, done, sent;
    int failed;
};

static void send_one(struct conn *cn);

static void done_cb(struct evhttp_request *req, void *arg)
{
    struct conn *cn = arg;
    struct client *c = cn->c;
    if (!req || evhttp_request_get_response_code(req) != 200)
        c->failed = 1;
    c->done++;
    if (c->done >= c->want || c->failed)
        event_base_loopbreak(c->base);
    else if (c->sent < c->want)
        send_one(cn);
}

static void send_one(struct conn *cn)
{
    struct evhttp_request *req = evhttp_request_new(done_cb, cn);
    if (!req)
        bench_die("evhttp_request_new");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
    if (cn->c->body)
        evbuffer_add(evhttp_request_get_output_buffer(req), cn->c->body,
                     strlen(cn->c->body));
    cn->c->sent++;
    if (evhttp_make_request(cn->ec, req, cn->c->body ? EVHTTP_REQ_POST : EVHTTP_REQ_GET,
                            cn->c->uri) != 0)
        bench_die("evhttp_make_request");
}

static void client_body(void *arg, uint64_t k)
{
    struct client *c = arg;
    unsigned i;
    c->want = k;
    c->done = c->sent = 0;
    for (i = 0; i < c->nconns && c->sent < k; i++)
        send_one(&c->conns[i]);
    event_base_dispatch(c->base);
    if (c->failed || c->done < k)
        bench_die("a request failed");
}

static void client_open(struct client *c, struct event_base *base, uint16_t port,
                        const char *uri, const char *body, unsigned nconns)
{
    unsigned i;
    memset(c, 0, sizeof *c);
    c->base = base;
    c->uri = uri;
    c->body = body;
    c->nconns = nconns;
    for (i = 0; i < nconns; i++) {
        c->conns[i].c = c;
        c->conns[i].ec = evhttp_connection_base_new(base, NULL, "127.0.0.1", port);
        if (!c->conns[i].ec)
            bench_die("evhttp_connection_base_new");
    }
}

static void client_close(struct client *c)
{
    unsigned i;
    for (i = 0; i < c->nconns; i++)
        evhttp_connection_free(c->conns[i].ec);
}

static void bare_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
    evbuffer_add(evhttp_request_get_output_buffer(req), "ok", 2);
    evhttp_send_reply(req, 200, "OK", NULL);
}

static int h_ok(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_pack("{s:i,s:s}", "statusCode", 200, "body", "ok");
    return *result ? 0 : 1;
}

static uint16_t bound_port(struct evhttp_bound_socket *s)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    if (getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&a, &l) != 0)
        bench_die("getsockname");
    return ntohs(a.sin_port);
}

/* ---- wrk ----------------------------------------------------------------- */

/* wrk's path: BENCH_HTTP_WRK, else the first "wrk" on PATH; NULL if none. */
static const char *find_wrk(char *buf, size_t size)
{
    const char *env = getenv("BENCH_HTTP_WRK"), *path = getenv("PATH"), *p;
    const char *client = getenv("BENCH_HTTP_CLIENT");

    if (client && strcmp(client, "inproc") == 0)
        return NULL;
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    for (p = path ? path : "/usr/bin:/bin"; *p;) {
        size_t n = strcspn(p, ":");
        if (n > 0 && (size_t)snprintf(buf, size, "%.*s/wrk", (int)n, p) < size &&
            access(buf, X_OK) == 0)
            return buf;
        p += n;
        if (*p == ':')
            p++;
    }
    return NULL;
}

/* One wrk run's output, read on the loop while the loop serves. */
struct wrk_run {
    struct event_base *base;
    char out[8192];
    size_t len;
};

static void wrk_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wrk_run *w = arg;
    ssize_t n;
    (void)what;
    for (;;) {
        if (w->len + 1 >= sizeof w->out) { /* keep the tail: the summary */
            memmove(w->out, w->out + sizeof w->out / 2, w->len - sizeof w->out / 2);
            w->len -= sizeof w->out / 2;
        }
        n = read(fd, w->out + w->len, sizeof w->out - 1 - w->len);
        if (n > 0) {
            w->len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            event_base_loopbreak(w->base); /* EOF: wrk is done */
        return;
    }
}

/* A wrk script that POSTs INVOKE_BODY; its path (unlinked by the caller). */
static void wrk_script(char *path, size_t size)
{
    static const char text[] = "wrk.method = \"POST\"\n"
                               "wrk.body = '" INVOKE_BODY "'\n"
                               "wrk.headers[\"Content-Type\"] = \"application/json\"\n";
    const char *dir = getenv("TMPDIR");
    int fd;

    snprintf(path, size, "%s/bench_http_XXXXXX.lua", dir && *dir ? dir : "/tmp");
    if ((fd = mkstemps(path, 4)) < 0 || write(fd, text, sizeof text - 1) != sizeof text - 1)
        bench_die("wrk script");
    close(fd);
}

/*
 * Runs wrk against port and path for `seconds` while the loop serves, with
 * `script` (NULL: none); returns its Requests/sec. Dies when wrk fails or
 * saw errors: no figure then.
 */
static double wrk_rps(struct event_base *base, const char *wrk, uint16_t port,
                      const char *path, const char *script, unsigned conns, unsigned seconds,
                      int cpu)
{
    char url[128], c[16], d[16];
    struct wrk_run w;
    struct event *ev;
    const char *line;
    int fds[2], status;
    pid_t pid;
    double rps;

    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    snprintf(c, sizeof c, "-c%u", conns);
    snprintf(d, sizeof d, "-d%us", seconds);
    if (pipe(fds) != 0)
        bench_die("pipe");
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        bench_die("fork");
    if (pid == 0) {
        if (cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET((size_t)cpu, &set);
            sched_setaffinity(0, sizeof set, &set);
        }
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (script)
            execl(wrk, wrk, "-t1", c, d, "-s", script, url, (char *)NULL);
        else
            execl(wrk, wrk, "-t1", c, d, url, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    memset(&w, 0, sizeof w);
    w.base = base;
    ev = event_new(base, fds[0], EV_READ | EV_PERSIST, wrk_read_cb, &w);
    if (!ev || event_add(ev, NULL) != 0)
        bench_die("event_new");
    event_base_dispatch(base);
    event_free(ev);
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    w.out[w.len] = '\0';
    line = strstr(w.out, "Requests/sec:");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !line ||
        sscanf(line, "Requests/sec: %lf", &rps) != 1 || rps <= 0 ||
        strstr(w.out, "Non-2xx") || strstr(w.out, "Socket errors")) {
        fprintf(stderr, "bench_http: wrk failed against port %u:\n%s\n", (unsigned)port, w.out);
        exit(2);
    }
    return rps;
}

/* A run's figures, in requests per second. */
struct wrk_series {
    double rps[BENCH_ROUNDS_MAX];
    double ratio[BENCH_ROUNDS_MAX]; /* against the bare server's run */
};

/* Prints a figure's line against the floor, and its ratios; 1 when over. */
static int wrk_report(const char *name, const char *label, struct wrk_series *x,
                      double bm, int rounds)
{
    double ns[BENCH_ROUNDS_MAX], m;
    int i, over;

    for (i = 0; i < rounds; i++)
        ns[i] = 1e9 / x->rps[i];
    m = bench_stat_of(ns, rounds, 0).median_ns;
    over = bench_line(name, m, "bare evhttp \"ok\" (wrk)", bm, 1.0 / 0.75);
    qsort(x->ratio, (size_t)rounds, sizeof x->ratio[0], bench_cmp_double);
    printf("requests/s (wrk): %s %.0f, bare %.0f, ratio %.2f (target >= 0.75); "
           "per-run ratios %.2f..%.2f, median %.2f\n",
           label, 1e9 / m, 1e9 / bm, bm / m, x->ratio[0], x->ratio[rounds - 1],
           rounds % 2 ? x->ratio[rounds / 2]
                      : (x->ratio[rounds / 2 - 1] + x->ratio[rounds / 2]) / 2);
    fflush(stdout);
    return over;
}

/* The wrk figures; returns 1 when one is over its target. */
static int run_wrk(struct event_base *base, const char *wrk, uint16_t bare_port,
                   uint16_t gw_port, unsigned conns)
{
    double b[BENCH_ROUNDS_MAX];
    unsigned secs = (unsigned)bench_env_ulong("BENCH_HTTP_SECONDS", 1, 1, 600);
    int rounds = bench_rounds(), i, over, verbose = getenv("BENCH_VERBOSE") != NULL;
    struct wrk_series g, v;
    struct bench_place pl[2];
    char extra[128], script[512];
    double bm;
    int cpu;

    bench_placements(pl);
    if (pl[0].loop_cpu >= 0)
        bench_pin(pl[0].loop_cpu);
    cpu = pl[0].worker_cpu;
    wrk_script(script, sizeof script);
    snprintf(extra, sizeof extra, "%u connections, wrk -t1, alternating runs of %u s (%s)",
             conns, secs, pl[0].name);
    printf("bench_http: %d cores, %d runs of %u s per server, median of wrk's requests/s, "
           "as ns per request; %s\n",
           bench_ncpus(), rounds, secs, extra);
    printf(BENCH_FMT_NAME " %12s  " BENCH_FMT_FLOOR " %12s  %8s  %s\n", "name", "median ns",
           "floor", "floor ns", "ratio", "target");
    fflush(stdout);
    /* warm-up: connections, caches, the function's instance */
    wrk_rps(base, wrk, bare_port, URI, NULL, conns, 1, cpu);
    wrk_rps(base, wrk, gw_port, URI, NULL, conns, 1, cpu);
    wrk_rps(base, wrk, gw_port, INVOKE_URI, script, conns, 1, cpu);
    for (i = 0; i < rounds; i++) {
        /* the order turns every round: bare first, then last */
        if (i % 2 == 0) {
            b[i] = wrk_rps(base, wrk, bare_port, URI, NULL, conns, secs, cpu);
            g.rps[i] = wrk_rps(base, wrk, gw_port, URI, NULL, conns, secs, cpu);
            v.rps[i] = wrk_rps(base, wrk, gw_port, INVOKE_URI, script, conns, secs, cpu);
        } else {
            v.rps[i] = wrk_rps(base, wrk, gw_port, INVOKE_URI, script, conns, secs, cpu);
            g.rps[i] = wrk_rps(base, wrk, gw_port, URI, NULL, conns, secs, cpu);
            b[i] = wrk_rps(base, wrk, bare_port, URI, NULL, conns, secs, cpu);
        }
        g.ratio[i] = g.rps[i] / b[i];
        v.ratio[i] = v.rps[i] / b[i];
        if (verbose)
            printf("  run %d: bare %.0f/s, gateway %.0f/s (%.3f), Invoke API %.0f/s (%.3f)\n",
                   i + 1, b[i], g.rps[i], g.ratio[i], v.rps[i], v.ratio[i]);
        b[i] = 1e9 / b[i]; /* as ns per request, for the shared helpers */
    }
    unlink(script);
    bm = bench_stat_of(b, rounds, 0).median_ns;
    bench_floor_line("bare evhttp \"ok\" (wrk)", bm);
    over = wrk_report("gateway -> INLINE (wrk)", "gateway", &g, bm, rounds);
    over |= wrk_report("Invoke API -> INLINE (wrk)", "Invoke API", &v, bm, rounds);
    return over;
}

int main(int argc, char **argv)
{
    struct event_base *base = event_base_new();
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_runtime *rt;
    struct evhttp *bare;
    struct evhttp_bound_socket *sock;
    struct client gw, raw, api;
    struct bench_side fig, ref;
    struct bench_stat sg, sr, sv, sr2;
    unsigned nconns = (unsigned)bench_env_ulong("BENCH_HTTP_CONNS", 16, 1, MAX_CONNS);
    char extra[64], wrk_path[4096];
    const char *wrk;
    int over;

    signal(SIGPIPE, SIG_IGN);
    if (!base || !(bare = evhttp_new(base)))
        bench_die("evhttp_new");
    evhttp_set_gencb(bare, bare_cb, NULL);
    if (!(sock = evhttp_bind_socket_with_handle(bare, "127.0.0.1", 0)))
        bench_die("bind");
    ro.invoke_api = 1; /* off by default */
    if (faas_runtime_new(&rt, base, &ro) != 0)
        bench_die("faas_runtime_new");
    fo.isolation = FAAS_ISOLATION_INLINE;
    if (faas_register(rt, "ok", h_ok, &fo) != 0 ||
        faas_map(rt, "api:GET /users/{id}", "ok", NULL) < 0 ||
        faas_map(rt, "api:/files/*", "ok", NULL) < 0 ||
        faas_http_bind(rt, "127.0.0.1", 0) != 0)
        bench_die("gateway");
    if (argc == 3 && strcmp(argv[1], "serve") == 0) {
        /* For an external client (wrk): serve both for argv[2] seconds. */
        struct timeval tv = { atol(argv[2]), 0 };
        printf("bare %u gateway %u\n", bound_port(sock), faas_http_port(rt));
        fflush(stdout);
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        faas_runtime_free(rt);
        evhttp_free(bare);
        event_base_free(base);
        return 0;
    }
    if ((wrk = find_wrk(wrk_path, sizeof wrk_path)) != NULL) {
        over = run_wrk(base, wrk, bound_port(sock), faas_http_port(rt), nconns);
        faas_runtime_free(rt);
        evhttp_free(bare);
        event_base_free(base);
        printf("bench_http: %d targets over (reported, not enforced)\n", over);
        return 0;
    }
    printf("bench_http: NOTE: wrk not found (apt-get install wrk, or BENCH_HTTP_WRK=path): "
           "in-process client instead; it costs the same on both sides, so the ratio "
           "understates the gateway\n");
    client_open(&gw, base, faas_http_port(rt), URI, NULL, nconns);
    client_open(&raw, base, bound_port(sock), URI, NULL, nconns);
    client_open(&api, base, faas_http_port(rt), INVOKE_URI, INVOKE_BODY, nconns);
    snprintf(extra, sizeof extra, "%u connections, in-process client", nconns);
    bench_header("bench_http", extra);
    fig.fn = client_body;
    fig.arg = &gw;
    fig.k_min = 64;
    fig.k_max = 1u << 22;
    ref.fn = client_body;
    ref.arg = &raw;
    ref.k_min = 64;
    ref.k_max = 1u << 22;
    bench_measure_pair(&fig, &sg, &ref, &sr);
    bench_floor_line("bare evhttp \"ok\"", sr.median_ns);
    over = bench_line("gateway -> INLINE", sg.median_ns, "bare evhttp \"ok\"", sr.median_ns,
                      1.0 / 0.75);
    printf("requests/s: gateway %.0f, bare %.0f, ratio %.2f (target >= 0.75)\n",
           1e9 / sg.median_ns, 1e9 / sr.median_ns, sr.median_ns / sg.median_ns);
    fig.arg = &api;
    bench_measure_pair(&fig, &sv, &ref, &sr2);
    over |= bench_line("Invoke API -> INLINE", sv.median_ns, "bare evhttp \"ok\"",
                       sr2.median_ns, 1.0 / 0.75);
    printf("requests/s: Invoke API %.0f, bare %.0f, ratio %.2f (target >= 0.75)\n",
           1e9 / sv.median_ns, 1e9 / sr2.median_ns, sr2.median_ns / sv.median_ns);
    client_close(&api);
    client_close(&gw);
    client_close(&raw);
    faas_runtime_free(rt);
    evhttp_free(bare);
    event_base_free(base);
    printf("bench_http: %d targets over (reported, not enforced)\n", over);
    return 0;
}

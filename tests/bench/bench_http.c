/*
 * bench_http.c - the HTTP gateway to an INLINE function (route match,
 * payload 2.0 event, response mapping) against a bare evhttp server that
 * answers "ok", in the same process and the same run.
 *
 * One loop runs both servers and an in-process evhttp client with
 * BENCH_HTTP_CONNS (default 16) keep-alive connections, each keeping one
 * request in flight; an operation is one request answered. The client costs
 * the same on both sides, so the ratio understates the gateway's own speed
 * relative to a bare server driven by an external client such as wrk. The
 * target: the gateway serves at least 0.75x the bare server's requests per
 * second, i.e. at most 1.33x its time per request.
 *
 * `bench_http serve SECONDS` only serves both (ports on stdout) for an
 * external client: wrk -t1 -c16 -d3s http://127.0.0.1:PORT/users/42?x=1
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "bench.h"
#include "faas.h"

#define MAX_CONNS 256

struct client;

struct conn {
    struct evhttp_connection *ec;
    struct client *c;
};

struct client {
    struct event_base *base;
    const char *uri;
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
    cn->c->sent++;
    if (evhttp_make_request(cn->ec, req, EVHTTP_REQ_GET, cn->c->uri) != 0)
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
                        const char *uri, unsigned nconns)
{
    unsigned i;
    memset(c, 0, sizeof *c);
    c->base = base;
    c->uri = uri;
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

int main(int argc, char **argv)
{
    struct event_base *base = event_base_new();
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_runtime *rt;
    struct evhttp *bare;
    struct evhttp_bound_socket *sock;
    struct client gw, raw;
    struct bench_side fig, ref;
    struct bench_stat sg, sr;
    unsigned nconns = (unsigned)bench_env_ulong("BENCH_HTTP_CONNS", 16, 1, MAX_CONNS);
    char extra[64];
    int over;

    signal(SIGPIPE, SIG_IGN);
    if (!base || !(bare = evhttp_new(base)))
        bench_die("evhttp_new");
    evhttp_set_gencb(bare, bare_cb, NULL);
    if (!(sock = evhttp_bind_socket_with_handle(bare, "127.0.0.1", 0)))
        bench_die("bind");
    if (faas_runtime_new(&rt, base, NULL) != 0)
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
    client_open(&gw, base, faas_http_port(rt), "/users/42?x=1", nconns);
    client_open(&raw, base, bound_port(sock), "/users/42?x=1", nconns);
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
    client_close(&gw);
    client_close(&raw);
    faas_runtime_free(rt);
    evhttp_free(bare);
    event_base_free(base);
    return over;
}

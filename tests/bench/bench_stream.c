/*
 * bench_stream.c - time to the first streamed byte through the gateway,
 * against the raw loopback HTTP round trip, in the same process and run.
 *
 * One loop serves everything: a bare evhttp server that answers "ok", the
 * gateway (faas_http_bind, the Invoke API on), and an evhttp client on one
 * keep-alive connection to each, one request at a time. A function writes
 * one chunk with faas_ctx_stream_write at once (no delay of its own) and
 * returns. An operation is one request; what is timed is from the request
 * handed to the client to its first body bytes read (the chunked callback;
 * for the floor, the whole reply). Figures:
 *
 *   InvokeWithResponseStream, INLINE   the event stream's first PayloadChunk
 *   api: route, INLINE                 the chunked body's first bytes
 *   InvokeWithResponseStream, THREAD   with the worker thread's handoff
 *
 * The floor is the bare server's round trip on the same kind of connection.
 * The target (issue 14): the first byte within 2x the raw round trip (the
 * handler's own delay is zero here). Rounds alternate floor and figure, and
 * each figure is the median of the rounds' means (BENCH_ROUNDS, default 7;
 * BENCH_STREAM_OPS requests a round, default 400).
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bench.h"
#include "faas.h"

struct client {
    struct event_base *base;
    struct evhttp_connection *ec;
    int done;
    uint64_t t0, t_first;
};

static void chunk_cb(struct evhttp_request *req, void *arg)
{
    struct client *c = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    if (!c->t_first && evbuffer_get_length(in) > 0)
        c->t_first = bench_now_ns();
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void done_cb(struct evhttp_request *req, void *arg)
{
    struct client *c = arg;
    if (!req || evhttp_request_get_response_code(req) != 200)
        bench_die("a request failed");
    if (!c->t_first)
        c->t_first = bench_now_ns();
    c->done = 1;
}

/* One request; returns ns from sending it to its first body bytes. */
static uint64_t one(struct client *c, const char *uri, int post)
{
    struct evhttp_request *req = evhttp_request_new(done_cb, c);
    evhttp_request_set_chunked_cb(req, chunk_cb);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
    if (post)
        evbuffer_add(evhttp_request_get_output_buffer(req), "{}", 2);
    c->done = 0;
    c->t_first = 0;
    c->t0 = bench_now_ns();
    if (evhttp_make_request(c->ec, req, post ? EVHTTP_REQ_POST : EVHTTP_REQ_GET, uri) != 0)
        bench_die("evhttp_make_request");
    while (!c->done)
        event_base_loop(c->base, EVLOOP_ONCE);
    return c->t_first - c->t0;
}

static void bare_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evbuffer_add(evhttp_request_get_output_buffer(req), "ok", 2);
    evhttp_send_reply(req, 200, "OK", NULL);
}

static int streamer(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    return faas_ctx_stream_write(ctx, "first chunk\n", 12);
}

/* Mean ns of n requests. */
static double round_mean(struct client *c, const char *uri, int post, unsigned n)
{
    uint64_t sum = 0;
    unsigned i;
    for (i = 0; i < n; i++)
        sum += one(c, uri, post);
    return (double)sum / n;
}

struct figure {
    const char *name;
    const char *uri;
    int post;
};

int main(void)
{
    static const struct figure figs[] = {
        { "ttfb InvokeWithResponseStream INLINE",
          "/2021-11-15/functions/inline/response-streaming-invocations", 1 },
        { "ttfb api: route INLINE", "/stream", 0 },
        { "ttfb InvokeWithResponseStream THREAD",
          "/2021-11-15/functions/thread/response-streaming-invocations", 1 },
    };
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct bench_place pl[2];
    struct event_base *base;
    struct faas_runtime *rt;
    struct evhttp *bare;
    struct evhttp_bound_socket *bs;
    struct client floor_c, fig_c;
    double pf[BENCH_ROUNDS_MAX], pg[BENCH_ROUNDS_MAX];
    unsigned ops = (unsigned)bench_env_ulong("BENCH_STREAM_OPS", 400, 10, 1000000);
    int rounds = bench_rounds(), over = 0, r;
    size_t f;
    uint16_t gw_port, bare_port;

    bench_start("bench_stream", pl);
    ro.zygote = 0;
    ro.thread_workers = 1;
    ro.invoke_api = 1;
    bench_runtime_open(&base, &rt, &ro);
    fo.isolation = FAAS_ISOLATION_INLINE;
    if (faas_register(rt, "inline", streamer, &fo) != 0)
        bench_die("faas_register inline");
    fo.isolation = FAAS_ISOLATION_THREAD;
    if (faas_register(rt, "thread", streamer, &fo) != 0)
        bench_die("faas_register thread");
    if (faas_map(rt, "api:GET /stream", "inline", NULL) < 0)
        bench_die("faas_map");
    if (faas_http_bind(rt, "127.0.0.1", 0) != 0)
        bench_die("faas_http_bind");
    gw_port = faas_http_port(rt);

    bare = evhttp_new(base);
    if (!bare || !(bs = evhttp_bind_socket_with_handle(bare, "127.0.0.1", 0)))
        bench_die("the bare server");
    evhttp_set_gencb(bare, bare_cb, NULL);
    {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) != 0)
            bench_die("getsockname");
        bare_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    floor_c.base = fig_c.base = base;
    floor_c.ec = evhttp_connection_base_new(base, NULL, "127.0.0.1", bare_port);
    fig_c.ec = evhttp_connection_base_new(base, NULL, "127.0.0.1", gw_port);

    for (f = 0; f < sizeof figs / sizeof figs[0]; f++) {
        /* warm-up: connections, the THREAD pool, caches */
        round_mean(&floor_c, "/ok", 0, ops / 4 + 1);
        round_mean(&fig_c, figs[f].uri, figs[f].post, ops / 4 + 1);
        for (r = 0; r < rounds; r++) {
            pf[r] = round_mean(&floor_c, "/ok", 0, ops);
            pg[r] = round_mean(&fig_c, figs[f].uri, figs[f].post, ops);
        }
        {
            struct bench_stat sf = bench_stat_of(pf, rounds, ops);
            struct bench_stat sg = bench_stat_of(pg, rounds, ops);
            if (f == 0)
                bench_floor_line("raw loopback HTTP round trip", sf.median_ns);
            over |= bench_line(figs[f].name, sg.median_ns, "raw loopback HTTP round trip",
                               sf.median_ns, 2.0);
        }
    }
    evhttp_connection_free(floor_c.ec);
    evhttp_connection_free(fig_c.ec);
    evhttp_free(bare);
    faas_runtime_free(rt);
    event_base_free(base);
    return over ? 1 : 0;
}

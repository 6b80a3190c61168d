/*
 * test_http_stream.c - streamed responses over real loopback HTTP:
 * InvokeWithResponseStream's event stream (every message checked against
 * the prelude / headers / CRC32 layout), chunked api: routes, the first
 * chunk on the wire before the handler ends, a failure mid-stream, a
 * client that goes away (the handler's next write gets FAAS_ECANCELED), a
 * client that does not read (the stream is cut at a bound), and the
 * CRC32 and codec against known vectors.
 */
#include <fcntl.h>
#include <stdlib.h>

#include "event_stream.h"
#include "http.h"
#include "tu_http.h"

/* ---- the codec ------------------------------------------------------- */

static void crc32_vectors(void **state)
{
    (void)state;
    assert_int_equal(faas_crc32(0, "", 0), 0);
    assert_int_equal(faas_crc32(0, "123456789", 9), 0xcbf43926u);
    assert_int_equal(faas_crc32(0, "The quick brown fox jumps over the lazy dog", 43),
                     0x414fa339u);
    /* in pieces, as the writer goes on from a previous value */
    assert_int_equal(faas_crc32(faas_crc32(0, "12345", 5), "6789", 4), 0xcbf43926u);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One message, byte by byte as the specification lays it out. */
static void codec_layout(void **state)
{
    static const struct faas_es_header h[] = { { ":event-type", "PayloadChunk" } };
    struct evbuffer *b = evbuffer_new();
    struct faas_es_view v;
    const unsigned char *m;
    size_t len, vl;
    const char *val;
    (void)state;

    assert_int_equal(faas_es_write(b, h, 1, "hi", 2), 0);
    len = evbuffer_get_length(b);
    m = evbuffer_pullup(b, -1);
    /* headers: 1 + 11 (name) + 1 (type 7) + 2 + 12 (value) = 27 */
    assert_int_equal(len, 12 + 27 + 2 + 4);
    assert_int_equal(be32(m), len);
    assert_int_equal(be32(m + 4), 27);
    assert_int_equal(be32(m + 8), faas_crc32(0, m, 8));
    assert_int_equal(m[12], 11);
    assert_memory_equal(m + 13, ":event-type", 11);
    assert_int_equal(m[24], 7);
    assert_int_equal(m[25] << 8 | m[26], 12);
    assert_memory_equal(m + 27, "PayloadChunk", 12);
    assert_memory_equal(m + 39, "hi", 2);
    assert_int_equal(be32(m + 41), faas_crc32(0, m, 41));
    assert_int_equal(faas_es_read(m, len, &v), (long)len);
    assert_int_equal(v.payload_len, 2);
    val = faas_es_header_get(&v, ":event-type", &vl);
    assert_non_null(val);
    assert_int_equal(vl, 12);
    assert_int_equal(faas_es_read(m, len - 1, &v), 0); /* more to come */
    {
        unsigned char bad[64];
        memcpy(bad, m, len);
        bad[40] ^= 1; /* the payload: the message CRC no longer matches */
        assert_int_equal(faas_es_read(bad, len, &v), FAAS_EPARSE);
        memcpy(bad, m, len);
        bad[3] ^= 1; /* the total length: the prelude CRC no longer matches */
        assert_int_equal(faas_es_read(bad, len, &v), FAAS_EPARSE);
    }
    evbuffer_free(b);
}

/* ---- handlers -------------------------------------------------------- */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv;
static int gate_open;
static int handler_done;
static int write_rc;
static size_t written;

static int h_gated(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    faas_ctx_stream_write(ctx, "hello ", 6);
    tu_gate_wait(&gate_mu, &gate_cv, &gate_open, NULL, 20000);
    ASTORE(&write_rc, faas_ctx_stream_write(ctx, "world", 5));
    ASTORE(&handler_done, 1);
    return 0;
}

static int h_plain(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_pack("{s:s}", "plain", "yes");
    return 0;
}

static int h_fail_mid(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    faas_ctx_stream_write(ctx, "part", 4);
    return faas_ctx_fail(ctx, "StreamBroke", "after one chunk");
}

/* Writes 64 KiB at a time until refused (or 256 MiB). */
static int h_flood(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    static char buf[65536];
    size_t total = 0;
    int rc = 0;
    (void)event;
    (void)result;
    while (total < ((size_t)256 << 20) && (rc = faas_ctx_stream_write(ctx, buf, sizeof buf)) == 0)
        total += sizeof buf;
    ASTORE(&written, total);
    ASTORE(&write_rc, rc);
    ASTORE(&handler_done, 1);
    return 0;
}

/* PROCESS: writes a line every 5 ms (at most 4000) until refused, then
 * logs what the refusal was. It runs in a worker process: the test hears
 * of it through the log line. */
static int h_process_until_refused(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    struct timespec pace = { 0, 5000000L };
    int i, rc = 0;
    (void)event;
    (void)result;
    for (i = 0; i < 4000 && (rc = faas_ctx_stream_write(ctx, "tick\n", 5)) == 0; i++)
        nanosleep(&pace, NULL);
    faas_ctx_log(ctx, "refused with %d after %d writes", rc, i);
    return 0;
}

/* ---- fixture --------------------------------------------------------- */

struct fx {
    struct event_base *base;
    struct faas_runtime *rt;
    uint16_t port;
    int cuts, failed; /* stream-cut and stream-failed warnings */
    int refused_rc;   /* h_process_until_refused's line: its code */
    int refused_seen;
};

static struct fx *fxp;

static void log_cb(const struct faas_log_record *rec, void *arg)
{
    struct fx *f = arg;
    if (rec->kind == FAAS_LOG_WARNING && rec->action && strcmp(rec->action, "stream-cut") == 0)
        f->cuts++;
    if (rec->kind == FAAS_LOG_WARNING && rec->action && strcmp(rec->action, "stream-failed") == 0)
        f->failed++;
    if (rec->kind == FAAS_LOG_LINE && rec->line &&
        sscanf(rec->line, "refused with %d", &f->refused_rc) == 1)
        f->refused_seen = 1;
}

static void reg(const char *name, faas_handler_fn h)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    o.isolation = FAAS_ISOLATION_THREAD;
    o.timeout_ms = 30000;
    assert_int_equal(faas_register(fxp->rt, name, h, &o), 0);
}

static int setup(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct fx *f = calloc(1, sizeof *f);
    ro.zygote = 0;
    ro.thread_workers = 2;
    ro.invoke_api = 1;
    ro.log = log_cb;
    ro.log_arg = f;
    tu_rt_new(&f->base, &f->rt, &ro);
    assert_int_equal(faas_http_bind(f->rt, "127.0.0.1", 0), 0);
    f->port = faas_http_port(f->rt);
    fxp = f;
    reg("gated", h_gated);
    reg("plain", h_plain);
    reg("failmid", h_fail_mid);
    reg("flood", h_flood);
    {
        struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
        o.isolation = FAAS_ISOLATION_PROCESS;
        o.timeout_ms = 60000;
        assert_int_equal(faas_register(f->rt, "pticks", h_process_until_refused, &o), 0);
    }
    assert_true(faas_map(f->rt, "api:GET /pticks", "pticks", NULL) >= 0);
    assert_true(faas_map(f->rt, "api:GET /gated", "gated", NULL) >= 0);
    assert_true(faas_map(f->rt, "api:GET /failmid", "failmid", NULL) >= 0);
    gate_open = 0;
    handler_done = 0;
    write_rc = 1;
    written = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    tu_gate_open(&gate_mu, &gate_cv, &gate_open); /* no handler left waiting */
    tu_rt_free(&f->rt, &f->base);
    free(f);
    return 0;
}

/* ---- a client that sees the body as it comes ------------------------- */

struct client {
    struct evhttp_connection *conn;
    struct evbuffer *body; /* every body byte so far */
    int done, code;
    char ctype[128];
};

static void client_chunk_cb(struct evhttp_request *req, void *arg)
{
    struct client *c = arg;
    evbuffer_add_buffer(c->body, evhttp_request_get_input_buffer(req));
}

static void client_done_cb(struct evhttp_request *req, void *arg)
{
    struct client *c = arg;
    const char *ct;
    c->done = 1;
    if (!req) {
        c->code = -1;
        return;
    }
    c->code = evhttp_request_get_response_code(req);
    evbuffer_add_buffer(c->body, evhttp_request_get_input_buffer(req));
    ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    snprintf(c->ctype, sizeof c->ctype, "%s", ct ? ct : "");
}

static void client_start(struct client *c, enum evhttp_cmd_type type, const char *uri)
{
    struct evhttp_request *req;
    memset(c, 0, sizeof *c);
    c->body = evbuffer_new();
    c->conn = evhttp_connection_base_new(fxp->base, NULL, "127.0.0.1", fxp->port);
    req = evhttp_request_new(client_done_cb, c);
    evhttp_request_set_chunked_cb(req, client_chunk_cb);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
    if (type == EVHTTP_REQ_POST)
        evbuffer_add(evhttp_request_get_output_buffer(req), "{}", 2);
    assert_int_equal(evhttp_make_request(c->conn, req, type, uri), 0);
}

static void client_free(struct client *c)
{
    if (c->conn)
        evhttp_connection_free(c->conn);
    evbuffer_free(c->body);
}

/* The event stream's messages so far, checked; returns how many are whole. */
struct msgs {
    int n;
    char type[8][32];
    char payload[8][256];
};

static int parse_events(struct evbuffer *body, struct msgs *out)
{
    size_t len = evbuffer_get_length(body), off = 0;
    const unsigned char *p = evbuffer_pullup(body, -1);
    struct faas_es_view v;
    long n;

    memset(out, 0, sizeof *out);
    while ((n = faas_es_read(p + off, len - off, &v)) > 0) {
        size_t vl;
        const char *val = faas_es_header_get(&v, ":event-type", &vl);
        const char *mt;
        assert_non_null(val);
        assert_true(out->n < 8);
        snprintf(out->type[out->n], sizeof out->type[0], "%.*s", (int)vl, val);
        mt = faas_es_header_get(&v, ":message-type", &vl);
        assert_non_null(mt);
        assert_int_equal(vl, 5);
        assert_memory_equal(mt, "event", 5);
        assert_non_null(faas_es_header_get(&v, ":content-type", &vl));
        snprintf(out->payload[out->n], sizeof out->payload[0], "%.*s", (int)v.payload_len,
                 (const char *)v.payload);
        out->n++;
        off += (size_t)n;
    }
    assert_true(n == 0); /* never malformed */
    return out->n;
}

static int events_at_least_one(const void *arg)
{
    struct msgs m;
    return parse_events(((const struct client *)arg)->body, &m) >= 1;
}

#define STREAM_URI(name) "/2021-11-15/functions/" name "/response-streaming-invocations"

/* ---- InvokeWithResponseStream ---------------------------------------- */

static void events_first_chunk_before_end(void **state)
{
    struct fx *f = *state;
    struct client c;
    struct msgs m;

    client_start(&c, EVHTTP_REQ_POST, STREAM_URI("gated"));
    assert_true(tu_run_until_pred(f->base, events_at_least_one, &c, 20000));
    assert_int_equal(ALOAD(&handler_done), 0); /* it still waits for the gate */
    parse_events(c.body, &m);
    assert_string_equal(m.type[0], "PayloadChunk");
    assert_string_equal(m.payload[0], "hello ");
    tu_gate_open(&gate_mu, &gate_cv, &gate_open);
    assert_true(tu_run_until(f->base, &c.done, 1, 20000));
    assert_int_equal(c.code, 200);
    assert_string_equal(c.ctype, "application/vnd.amazon.eventstream");
    assert_int_equal(parse_events(c.body, &m), 3);
    assert_string_equal(m.type[1], "PayloadChunk");
    assert_string_equal(m.payload[1], "world");
    assert_string_equal(m.type[2], "InvokeComplete");
    assert_string_equal(m.payload[2], "{}");
    assert_int_equal(ALOAD(&write_rc), 0);
    client_free(&c);
}

static void events_not_streamed(void **state)
{
    struct fx *f = *state;
    struct client c;
    struct msgs m;

    client_start(&c, EVHTTP_REQ_POST, STREAM_URI("plain"));
    assert_true(tu_run_until(f->base, &c.done, 1, 20000));
    assert_int_equal(c.code, 200);
    assert_int_equal(parse_events(c.body, &m), 2);
    assert_string_equal(m.type[0], "PayloadChunk");
    assert_string_equal(m.payload[0], "{\"plain\":\"yes\"}");
    assert_string_equal(m.type[1], "InvokeComplete");
    assert_string_equal(m.payload[1], "{}");
    client_free(&c);
}

static void events_fail_mid_stream(void **state)
{
    struct fx *f = *state;
    struct client c;
    struct msgs m;
    json_t *j;

    client_start(&c, EVHTTP_REQ_POST, STREAM_URI("failmid"));
    assert_true(tu_run_until(f->base, &c.done, 1, 20000));
    assert_int_equal(c.code, 200);
    assert_int_equal(parse_events(c.body, &m), 2);
    assert_string_equal(m.payload[0], "part");
    assert_string_equal(m.type[1], "InvokeComplete");
    j = json_loads(m.payload[1], 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "ErrorCode")), "StreamBroke");
    assert_string_equal(json_string_value(json_object_get(j, "ErrorDetails")), "after one chunk");
    json_decref(j);
    client_free(&c);
}

static void events_refusals(void **state)
{
    struct fx *f = *state;
    struct client c;

    client_start(&c, EVHTTP_REQ_POST, STREAM_URI("nosuch"));
    assert_true(tu_run_until(f->base, &c.done, 1, 20000));
    assert_int_equal(c.code, 404);
    assert_non_null(strstr((const char *)evbuffer_pullup(c.body, -1), "Function not found"));
    client_free(&c);
    client_start(&c, EVHTTP_REQ_GET, STREAM_URI("plain"));
    assert_true(tu_run_until(f->base, &c.done, 1, 20000));
    assert_int_equal(c.code, 404); /* an unknown operation */
    client_free(&c);
}

/* ---- routes ---------------------------------------------------------- */

static int some_body(const void *arg)
{
    return evbuffer_get_length(((const struct client *)arg)->body) > 0;
}

static void route_first_chunk_before_end(void **state)
{
    struct fx *f = *state;
    struct client c;

    client_start(&c, EVHTTP_REQ_GET, "/gated");
    assert_true(tu_run_until_pred(f->base, some_body, &c, 20000));
    assert_int_equal(ALOAD(&handler_done), 0);
    assert_int_equal(evbuffer_get_length(c.body), 6);
    tu_gate_open(&gate_mu, &gate_cv, &gate_open);
    assert_true(tu_run_until(f->base, &c.done, 1, 20000));
    assert_int_equal(c.code, 200);
    assert_string_equal(c.ctype, "application/octet-stream");
    assert_int_equal(evbuffer_get_length(c.body), 11);
    assert_memory_equal(evbuffer_pullup(c.body, -1), "hello world", 11); /* nothing appended */
    client_free(&c);
}

static void route_fail_mid_stream(void **state)
{
    struct fx *f = *state;
    struct client c;

    client_start(&c, EVHTTP_REQ_GET, "/failmid");
    assert_true(tu_run_until(f->base, &c.done, 1, 20000));
    assert_int_equal(c.code, 200); /* the status was out with the first chunk */
    assert_int_equal(evbuffer_get_length(c.body), 4);
    assert_int_equal(f->failed, 1); /* the failure is logged */
    client_free(&c);
}

/* ---- callers that go, or do not read ---------------------------------- */

static int conns_zero(const void *arg)
{
    (void)arg;
    return faas_http_conn_count(fxp->rt) == 0;
}

static void caller_gone(void **state)
{
    struct fx *f = *state;
    struct client c;
    const char *uris[] = { STREAM_URI("gated"), "/gated" };
    int i;

    for (i = 0; i < 2; i++) {
        gate_open = 0;
        ASTORE(&handler_done, 0);
        ASTORE(&write_rc, 1);
        client_start(&c, i == 0 ? EVHTTP_REQ_POST : EVHTTP_REQ_GET, uris[i]);
        assert_true(tu_run_until_pred(f->base, some_body, &c, 20000));
        evhttp_connection_free(c.conn); /* the caller goes away */
        c.conn = NULL;
        assert_true(tu_run_until_pred(f->base, conns_zero, NULL, 20000));
        tu_gate_open(&gate_mu, &gate_cv, &gate_open);
        assert_true(tu_run_until_atomic(f->base, &handler_done, 1, 20000));
        assert_int_equal(ALOAD(&write_rc), FAAS_ECANCELED);
        client_free(&c);
    }
}

/* PROCESS: the worker hears that the caller went (a STREAM_CLOSED frame)
 * at its next write. */
static void caller_gone_process(void **state)
{
    struct fx *f = *state;
    struct client c;

    client_start(&c, EVHTTP_REQ_GET, "/pticks");
    assert_true(tu_run_until_pred(f->base, some_body, &c, 20000));
    evhttp_connection_free(c.conn);
    c.conn = NULL;
    assert_true(tu_run_until(f->base, &f->refused_seen, 1, 40000));
    assert_int_equal(f->refused_rc, FAAS_ECANCELED);
    client_free(&c);
}

struct slow {
    int fd;
    char *buf;
    size_t len, cap;
};

/* Reads what has come (the client finally reads); 1 at the reply's end. */
static int slow_read_all(const void *arg)
{
    struct slow *s = (struct slow *)(uintptr_t)arg;
    ssize_t n;
    for (;;) {
        if (s->cap - s->len < 65536) {
            s->cap = s->cap * 2 + 65536;
            s->buf = realloc(s->buf, s->cap);
        }
        n = recv(s->fd, s->buf + s->len, s->cap - s->len, MSG_DONTWAIT);
        if (n <= 0)
            break;
        s->len += (size_t)n;
    }
    return n == 0 || (s->len >= 5 && memcmp(s->buf + s->len - 5, "0\r\n\r\n", 5) == 0);
}

static void slow_reader_cut(void **state)
{
    struct fx *f = *state;
    struct slow s;
    int small = 4096;
    char req[256];

    memset(&s, 0, sizeof s);
    s.fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons(f->port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(s.fd, (struct sockaddr *)&a, sizeof a), 0);
    }
    snprintf(req, sizeof req,
             "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}",
             STREAM_URI("flood"));
    assert_int_equal(write(s.fd, req, strlen(req)), (ssize_t)strlen(req));
    /* The client reads nothing until the handler was refused. */
    assert_true(tu_run_until_atomic(f->base, &handler_done, 1, 60000));
    assert_int_equal(ALOAD(&write_rc), FAAS_ECANCELED);
    assert_true(ALOAD(&written) < ((size_t)256 << 20));
    assert_int_equal(f->cuts, 1);
    /* What it reads then ends with the InvokeComplete that says why. */
    assert_true(tu_run_until_pred(f->base, slow_read_all, &s, 60000));
    s.buf[s.len - 5] = '\0';
    assert_non_null(memmem(s.buf + (s.len > 4096 ? s.len - 4096 : 0),
                           s.len > 4096 ? 4096 : s.len, "ResponseStreamBufferFull", 24));
    close(s.fd);
    free(s.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32_vectors),
        cmocka_unit_test(codec_layout),
        cmocka_unit_test_setup_teardown(events_first_chunk_before_end, setup, teardown),
        cmocka_unit_test_setup_teardown(events_not_streamed, setup, teardown),
        cmocka_unit_test_setup_teardown(events_fail_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(events_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(route_first_chunk_before_end, setup, teardown),
        cmocka_unit_test_setup_teardown(route_fail_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(caller_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(caller_gone_process, setup, teardown),
        cmocka_unit_test_setup_teardown(slow_reader_cut, setup, teardown),
    };
    tu_cond_init_monotonic(&gate_cv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_http.c - the HTTP gateway: route patterns and precedence (the pure
 * table, no sockets), then real requests over loopback with libevent's own
 * evhttp client driven by the same base: every payload 2.0 field, response
 * mapping, error replies with JSON bodies, limits, a client that goes away
 * before its result, teardown with a request in flight, attaching to a
 * host's evhttp that keeps its own routes, detaching (faas_http_detach)
 * from it and from a server of our own, and the errno behind FAAS_ESYS.
 *
 * Handlers are INLINE (on the loop) except the gated one, a THREAD handler
 * that waits for the test to open its gate (or for cancellation); what it
 * touches is atomic. The wall clock is fake, so requestContext.time is
 * exact; the "slow" handler advances it past its own timeout (504) without
 * any real waiting.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "faas_int.h"
#include "http.h"
#include "testutil.h"
#include "tu_http.h"

#define BOUND_MS 5000u

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static struct tu_clock g_clock;
static uint16_t g_port;
static json_t *g_reply;  /* what "reply" returns (loop thread) */
static int g_reports;    /* REPORT records (loop thread) */
static int g_gate;       /* atomic: the gated handler may return */
static int g_started;    /* atomic: gated handlers started */

/* ==== handlers ========================================================= */

static int h_echo(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_incref(event);
    return 0;
}

static int h_reply(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_deep_copy(g_reply);
    return 0;
}

static int h_fail(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    return faas_ctx_fail(ctx, "Boom", "it failed");
}

static int h_slow(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    tu_clock_advance(&g_clock, 5000000000ull); /* past its 1 s timeout */
    *result = json_string("late");
    return 0;
}

static int h_gated(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    struct timespec ms = { 0, 1000000 };
    uint64_t end = tu_now_ms() + 10000u;
    (void)event;
    AINC(&g_started);
    while (!ALOAD(&g_gate) && !faas_ctx_cancelled(ctx) && tu_now_ms() < end)
        nanosleep(&ms, NULL);
    *result = json_pack("{s:i,s:s}", "statusCode", 200, "body", "gated");
    return 0;
}

static int g_warn_accept;  /* FAAS_LOG_WARNING "accept" records */
static int g_warn_limit;   /* FAAS_LOG_WARNING "connection-limit" records */
static const char *g_free_on; /* a warning's action: the log frees g_rt */
static int g_freed_in_log;

static void on_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind == FAAS_LOG_WARNING && g_free_on && strcmp(rec->action, g_free_on) == 0 &&
        g_rt) {
        faas_runtime_free(g_rt);
        g_rt = NULL;
        g_freed_in_log++;
    }
    if (rec->kind == FAAS_LOG_REPORT)
        g_reports++;
    if (rec->kind == FAAS_LOG_WARNING && strcmp(rec->action, "accept") == 0) {
        assert_non_null(strstr(rec->line, "Too many open files"));
        g_warn_accept++;
    }
    if (rec->kind == FAAS_LOG_WARNING && strcmp(rec->action, "connection-limit") == 0)
        g_warn_limit++;
}

/* ==== fixture ========================================================== */

static void rt_start(const struct faas_runtime_opts *extra)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;

    if (extra)
        o = *extra;
    g_clock.ns = 0;
    o.clock.now_ns = tu_clock_now;
    o.clock.wall_ns = tu_clock_wall;
    o.clock.arg = &g_clock;
    o.log = on_log;
    o.thread_workers = 2;
    assert_int_equal(faas_runtime_new(&g_rt, g_base, &o), 0);
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.timeout_ms = 1000;
    assert_int_equal(faas_register(g_rt, "echo", h_echo, &fo), 0);
    assert_int_equal(faas_register(g_rt, "reply", h_reply, &fo), 0);
    assert_int_equal(faas_register(g_rt, "fail", h_fail, &fo), 0);
    assert_int_equal(faas_register(g_rt, "slow", h_slow, &fo), 0);
    assert_int_equal(faas_register(g_rt, "gone", h_echo, &fo), 0);
    fo.isolation = FAAS_ISOLATION_THREAD;
    fo.timeout_ms = 0;
    fo.max_concurrency = 1;
    fo.max_queue = 0;
    assert_int_equal(faas_register(g_rt, "gated", h_gated, &fo), 0);
}

static int setup(void **state)
{
    (void)state;
    g_base = event_base_new();
    assert_non_null(g_base);
    g_reports = 0;
    g_warn_accept = g_warn_limit = 0;
    g_free_on = NULL;
    g_freed_in_log = 0;
    ASTORE(&g_gate, 0);
    ASTORE(&g_started, 0);
    g_reply = NULL;
    return 0;
}

static struct rlimit g_nofile; /* saved while a test lowers it */
static int g_nofile_lowered;

static int teardown(void **state)
{
    (void)state;
    if (g_nofile_lowered) {
        setrlimit(RLIMIT_NOFILE, &g_nofile);
        g_nofile_lowered = 0;
    }
    faas_runtime_free(g_rt);
    g_rt = NULL;
    json_decref(g_reply);
    g_reply = NULL;
    event_base_free(g_base);
    g_base = NULL;
    return 0;
}

/* A runtime serving on a port of its own, with the usual routes. */
static void serve(const struct faas_runtime_opts *extra)
{
    static const char *const maps[][2] = {
        { "api:POST /users/{id}/items", "echo" },
        { "api:GET /echo", "echo" },
        { "api:/files/{key+}", "echo" },
        { "api:ANY /reply", "reply" },
        { "api:GET /fail", "fail" },
        { "api:GET /slow", "slow" },
        { "api:GET /gated", "gated" },
        { "api:GET /gone", "gone" },
        { "api:/any/*", "echo" },
    };
    size_t i;
    rt_start(extra);
    for (i = 0; i < sizeof maps / sizeof maps[0]; i++)
        assert_true(faas_map(g_rt, maps[i][0], maps[i][1], NULL) >= 0);
    assert_int_equal(faas_http_port(g_rt), 0);
    assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", 0), 0);
    g_port = faas_http_port(g_rt);
    assert_int_not_equal(g_port, 0);
    assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", 0), FAAS_EBUSY);
}

/* ==== the client (tu_http.h) =========================================== */

static void request_on(uint16_t port, enum evhttp_cmd_type type, const char *uri,
                       const char *const *headers, const void *body, size_t blen,
                       struct tu_resp *r)
{
    tu_http_request(g_base, port, type, uri, headers, body, blen, r, BOUND_MS);
}

static void request(enum evhttp_cmd_type type, const char *uri, const char *const *headers,
                    const void *body, size_t blen, struct tu_resp *r)
{
    request_on(g_port, type, uri, headers, body, blen, r);
}

/* Starts a GET /gated on port that holds the handler until the gate opens. */
static struct evhttp_connection *start_gated(uint16_t port, struct tu_resp *r)
{
    static const char *const host[] = { "Host", "x", NULL };
    return tu_http_start(g_base, port, EVHTTP_REQ_GET, "/gated", host, NULL, 0, r);
}

/* The body as JSON, and the Content-Type must say so. */
static json_t *resp_json(const struct tu_resp *r)
{
    json_t *j = json_loadb(r->body, r->len, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    assert_string_equal(tu_resp_header(r, "content-type"), "application/json");
    return j;
}

static void expect_message(const struct tu_resp *r, int code, const char *msg)
{
    json_t *j;
    assert_int_equal(r->code, code);
    j = resp_json(r);
    assert_string_equal(json_string_value(json_object_get(j, "message")), msg);
    assert_int_equal(json_object_size(j), 1);
    json_decref(j);
}

/* One request whose reply must be the gateway's {"message": msg} with status code. */
static void request_message(enum evhttp_cmd_type type, const char *uri,
                            const char *const *headers, const void *body, size_t blen,
                            int code, const char *msg)
{
    struct tu_resp r;
    request(type, uri, headers, body, blen, &r);
    expect_message(&r, code, msg);
    tu_resp_clear(&r);
}

static int run_until_atomic(const int *p, int want)
{
    uint64_t end = tu_now_ms() + BOUND_MS;
    while (ALOAD(p) < want) {
        if (tu_now_ms() > end)
            return 0;
        tu_run_for(g_base, 1);
    }
    return 1;
}

/* ==== route patterns (pure) ============================================ */

static void test_route_parse(void **state)
{
    static const char *const bad[] = {
        "", "users", "/users/", "//", "/a//b", "get /x", "GET  /x", "GET", "GET ",
        "FOO /x", "ANY", "/a/{", "/a/{}", "/a/{+}", "/a/{b+}/c", "/a/*/b", "/a/b*",
        "/a/{b}c", "/a/x{b}", "/a/{b}/{b}", "/a/{proxy}/*", "/a b", "/a?x", "/a#x",
        "/a%20", "/a/{b c}", "/a/{b.c}", "/*/x", "GET\t/x", " /x", "/a/}", "/{a+}/",
    };
    static const char *const good[] = {
        "/", "GET /", "ANY /x", "/x/*", "/*", "/{a}/{b+}", "OPTIONS /a-b_c.d~e/{x_1}",
        "DELETE /caf\xc3\xa9", "PATCH /a/{A-b}/{proxy+}", "HEAD /h", "PUT /p", "POST /p",
    };
    struct faas_route *r;
    char big[1024];
    size_t i;
    (void)state;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = NULL;
        if (faas_route_parse(bad[i], &r) != FAAS_EPARSE)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_null(r);
    }
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (faas_route_parse(good[i], &r) != 0)
            fail_msg("refused \"%s\"", good[i]);
        faas_route_free(r);
    }
    /* routeKeys */
    assert_int_equal(faas_route_parse("/users/*", &r), 0);
    assert_string_equal(r->key, "ANY /users/*");
    assert_true(r->greedy);
    assert_string_equal(r->greedy_name, "proxy");
    assert_int_equal(r->nsegs, 1);
    faas_route_free(r);
    assert_int_equal(faas_route_parse("GET /users/{id}", &r), 0);
    assert_string_equal(r->key, "GET /users/{id}");
    assert_string_equal(r->name[1], "id");
    assert_null(r->seg[1]);
    faas_route_free(r);
    /* 64 segments, not 65 */
    big[0] = '\0';
    for (i = 0; i < 64; i++)
        strcat(big, "/s");
    assert_int_equal(faas_route_parse(big, &r), 0);
    faas_route_free(r);
    strcat(big, "/s");
    assert_int_equal(faas_route_parse(big, &r), FAAS_EPARSE);
    /* ...but a greedy tail after 64 */
    big[strlen(big) - 2] = '\0';
    strcat(big, "/*");
    assert_int_equal(faas_route_parse(big, &r), 0);
    faas_route_free(r);
}

static void test_route_duplicates(void **state)
{
    static const char *const pairs[][2] = {
        { "GET /u/{id}", "GET /u/{name}" },
        { "/u/*", "ANY /u/{proxy+}" },
        { "/x", "ANY /x" },
        { "GET /a/{x}/{y+}", "GET /a/{p}/*" },
        { "GET /", "GET /" },
    };
    static const char *const distinct[][2] = {
        { "GET /x", "POST /x" },
        { "/u/{id}", "/u/{id}/*" },
        { "/u/*", "/u" },
        { "/u/a", "/u/{a}" },
        { "GET /x", "/x" },
    };
    struct faas_route_table *t;
    struct faas_route *a, *b;
    size_t i;
    (void)state;

    for (i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        assert_int_equal(faas_route_table_new(&t), 0);
        assert_int_equal(faas_route_parse(pairs[i][0], &a), 0);
        assert_int_equal(faas_route_parse(pairs[i][1], &b), 0);
        assert_int_equal(faas_route_table_add(t, a), 0);
        assert_int_equal(faas_route_table_add(t, b), FAAS_EEXIST);
        faas_route_free(b);
        /* gone: the same shape goes in again */
        faas_route_table_remove(t, a);
        assert_int_equal(faas_route_table_count(t), 0);
        faas_route_free(a);
        assert_int_equal(faas_route_parse(pairs[i][1], &b), 0);
        assert_int_equal(faas_route_table_add(t, b), 0);
        faas_route_table_free(t); /* frees b */
    }
    for (i = 0; i < sizeof distinct / sizeof distinct[0]; i++) {
        assert_int_equal(faas_route_table_new(&t), 0);
        assert_int_equal(faas_route_parse(distinct[i][0], &a), 0);
        assert_int_equal(faas_route_parse(distinct[i][1], &b), 0);
        assert_int_equal(faas_route_table_add(t, a), 0);
        assert_int_equal(faas_route_table_add(t, b), 0);
        assert_int_equal(faas_route_table_count(t), 2);
        faas_route_table_free(t);
    }
}

static const char *const prec_routes[] = {
    "GET /users/me",
    "GET /users/{id}",
    "ANY /users/{id}",
    "/users/*",
    "POST /users/{proxy+}",
    "GET /users/{id}/posts/{pid}",
    "GET /users/me/posts/{pid}",
    "/files/{key+}",
    "GET /",
    "/a/{x}/c",
    "/a/b/{y}",
    "DELETE /a/b/c",
    "/{any}/static",
    "OPTIONS /{proxy+}",
    "GET /caf\xc3\xa9",
};

static const struct {
    enum faas_http_method method;
    const char *path;
    const char *key;    /* expected routeKey, NULL: no match */
    const char *params; /* "name=value;..." as decoded, "" none */
} prec_cases[] = {
    { FAAS_HTTP_GET, "/users/me", "GET /users/me", "" },
    { FAAS_HTTP_POST, "/users/me", "ANY /users/{id}", "id=me" },
    { FAAS_HTTP_GET, "/users/42", "GET /users/{id}", "id=42" },
    { FAAS_HTTP_PUT, "/users/42", "ANY /users/{id}", "id=42" },
    { FAAS_HTTP_HEAD, "/users/me", "ANY /users/{id}", "id=me" },
    { FAAS_HTTP_OTHER, "/users/1", "ANY /users/{id}", "id=1" },
    { FAAS_HTTP_GET, "/users/42/x", "ANY /users/*", "proxy=42/x" },
    { FAAS_HTTP_POST, "/users/42/x", "POST /users/{proxy+}", "proxy=42/x" },
    { FAAS_HTTP_GET, "/users", NULL, "" },
    { FAAS_HTTP_OPTIONS, "/users", "OPTIONS /{proxy+}", "proxy=users" },
    { FAAS_HTTP_GET, "/users/me/posts/7", "GET /users/me/posts/{pid}", "pid=7" },
    { FAAS_HTTP_GET, "/users/5/posts/7", "GET /users/{id}/posts/{pid}", "id=5;pid=7" },
    { FAAS_HTTP_GET, "/users/me/posts", "ANY /users/*", "proxy=me/posts" },
    { FAAS_HTTP_GET, "/files/a/b/c.txt", "ANY /files/{key+}", "key=a/b/c.txt" },
    { FAAS_HTTP_GET, "/files", NULL, "" },
    { FAAS_HTTP_GET, "/", "GET /", "" },
    { FAAS_HTTP_POST, "/", NULL, "" },
    { FAAS_HTTP_GET, "/a/b/c", "ANY /a/b/{y}", "y=c" },
    { FAAS_HTTP_DELETE, "/a/b/c", "DELETE /a/b/c", "" },
    { FAAS_HTTP_GET, "/a/z/c", "ANY /a/{x}/c", "x=z" },
    { FAAS_HTTP_GET, "/x/static", "ANY /{any}/static", "any=x" },
    { FAAS_HTTP_GET, "/users/static", "GET /users/{id}", "id=static" },
    { FAAS_HTTP_GET, "/users/%6De", "GET /users/me", "" },
    { FAAS_HTTP_GET, "/users/%6de/posts/%37", "GET /users/me/posts/{pid}", "pid=7" },
    { FAAS_HTTP_GET, "/users/a%2Fb", "GET /users/{id}", "id=a/b" },
    { FAAS_HTTP_GET, "/users/", NULL, "" },
    { FAAS_HTTP_GET, "/caf%C3%A9", "GET /caf\xc3\xa9", "" },
    { FAAS_HTTP_GET, "/caf\xc3\xa9", "GET /caf\xc3\xa9", "" },
    { FAAS_HTTP_GET, "/cafe", NULL, "" },
    { FAAS_HTTP_OPTIONS, "/a/b/c", "ANY /a/b/{y}", "y=c" },
    { FAAS_HTTP_OPTIONS, "/q/r/s", "OPTIONS /{proxy+}", "proxy=q/r/s" },
    { FAAS_HTTP_GET, "/users/%zz", "GET /users/{id}", "id=%zz" },
};

/* "name=value;..." of a match, values percent-decoded. */
static void params_text(const char *path, const struct faas_route_match *m, char *out,
                        size_t size)
{
    const struct faas_route *r = m->route;
    unsigned i;
    size_t o = 0;
    char val[256];

    out[0] = '\0';
    for (i = 0; i <= r->nsegs; i++) {
        const char *name;
        size_t off, len, j, k = 0;
        if (i < r->nsegs) {
            if (r->seg[i])
                continue;
            name = r->name[i], off = m->off[i], len = m->len[i];
        } else {
            if (!r->greedy)
                break;
            name = r->greedy_name, off = m->tail_off, len = m->tail_len;
        }
        for (j = 0; j < len; j++) {
            unsigned c;
            if (path[off + j] == '%' && j + 2 < len && sscanf(path + off + j + 1, "%2x", &c) == 1 &&
                strchr("0123456789abcdefABCDEF", path[off + j + 2]) &&
                strchr("0123456789abcdefABCDEF", path[off + j + 1])) {
                val[k++] = (char)c;
                j += 2;
            } else {
                val[k++] = path[off + j];
            }
        }
        val[k] = '\0';
        o += (size_t)snprintf(out + o, size - o, "%s%s=%s", o ? ";" : "", name, val);
    }
}

static void test_route_precedence(void **state)
{
    struct faas_route_table *t;
    struct faas_route *r;
    struct faas_route_match m;
    char params[512];
    size_t i, order;
    (void)state;

    /* The answer must not depend on the order routes were added in. */
    for (order = 0; order < 2; order++) {
        size_t n = sizeof prec_routes / sizeof prec_routes[0];
        assert_int_equal(faas_route_table_new(&t), 0);
        for (i = 0; i < n; i++) {
            assert_int_equal(faas_route_parse(prec_routes[order ? n - 1 - i : i], &r), 0);
            assert_int_equal(faas_route_table_add(t, r), 0);
        }
        for (i = 0; i < sizeof prec_cases / sizeof prec_cases[0]; i++) {
            const struct faas_route *got;
            memset(&m, 0, sizeof m);
            got = faas_route_match(t, prec_cases[i].method, prec_cases[i].path,
                                   strlen(prec_cases[i].path), &m);
            if (!prec_cases[i].key) {
                if (got)
                    fail_msg("%s %s: got %s, want none",
                             faas_http_method_name(prec_cases[i].method), prec_cases[i].path,
                             got->key);
                continue;
            }
            if (!got || strcmp(got->key, prec_cases[i].key) != 0)
                fail_msg("%s %s: got %s, want %s", faas_http_method_name(prec_cases[i].method),
                         prec_cases[i].path, got ? got->key : "none", prec_cases[i].key);
            params_text(prec_cases[i].path, &m, params, sizeof params);
            if (strcmp(params, prec_cases[i].params) != 0)
                fail_msg("%s: params %s, want %s", prec_cases[i].path, params,
                         prec_cases[i].params);
        }
        faas_route_table_free(t);
    }
}

static void test_route_many(void **state)
{
    struct faas_route_table *t;
    struct faas_route *rs[2000], *r;
    struct faas_route_match m;
    char pat[64], path[64];
    int i;
    (void)state;

    assert_int_equal(faas_route_table_new(&t), 0);
    for (i = 0; i < 1000; i++) {
        snprintf(pat, sizeof pat, "GET /svc%d/items/{id}", i);
        assert_int_equal(faas_route_parse(pat, &rs[i]), 0);
        assert_int_equal(faas_route_table_add(t, rs[i]), 0);
        snprintf(pat, sizeof pat, "/svc%d/*", i);
        assert_int_equal(faas_route_parse(pat, &rs[1000 + i]), 0);
        assert_int_equal(faas_route_table_add(t, rs[1000 + i]), 0);
    }
    assert_int_equal(faas_route_table_count(t), 2000);
    for (i = 0; i < 1000; i++) {
        snprintf(path, sizeof path, "/svc%d/items/%d", i, i * 7);
        r = (struct faas_route *)faas_route_match(t, FAAS_HTTP_GET, path, strlen(path), &m);
        assert_ptr_equal(r, rs[i]);
        snprintf(path, sizeof path, "/svc%d/other", i);
        r = (struct faas_route *)faas_route_match(t, FAAS_HTTP_POST, path, strlen(path), &m);
        assert_ptr_equal(r, rs[1000 + i]);
    }
    /* remove every other service: the rest still match, the removed do not */
    for (i = 0; i < 1000; i += 2) {
        faas_route_table_remove(t, rs[i]);
        faas_route_table_remove(t, rs[1000 + i]);
        faas_route_free(rs[i]);
        faas_route_free(rs[1000 + i]);
    }
    assert_int_equal(faas_route_table_count(t), 1000);
    for (i = 0; i < 1000; i++) {
        snprintf(path, sizeof path, "/svc%d/items/1", i);
        r = (struct faas_route *)faas_route_match(t, FAAS_HTTP_GET, path, strlen(path), &m);
        assert_ptr_equal(r, i % 2 ? rs[i] : NULL);
    }
    faas_route_table_free(t);
}

static void test_map_errors(void **state)
{
    int id, id2;
    (void)state;
    rt_start(NULL);
    assert_int_equal(faas_map(g_rt, "api:GET /bad/", "echo", NULL), FAAS_EPARSE);
    assert_int_equal(faas_map(g_rt, "api:get /x", "echo", NULL), FAAS_EPARSE);
    assert_int_equal(faas_map(g_rt, "api:/x/{a}/{a}", "echo", NULL), FAAS_EPARSE);
    id = faas_map(g_rt, "api:GET /u/{id}", "echo", NULL);
    assert_true(id >= 0);
    assert_int_equal(faas_map(g_rt, "api:GET /u/{name}", "reply", NULL), FAAS_EEXIST);
    assert_true(faas_map(g_rt, "api:/u/{name}", "reply", NULL) >= 0);
    assert_int_equal(faas_unmap(g_rt, id), 0);
    id2 = faas_map(g_rt, "api:GET /u/{name}", "reply", NULL);
    assert_true(id2 >= 0);
    assert_int_equal(faas_http_route_count(g_rt), 2);
    assert_int_equal(faas_http_attach(g_rt, NULL), FAAS_EINVAL);
    assert_int_equal(faas_http_bind(g_rt, NULL, 0), FAAS_EINVAL);
    assert_int_equal(faas_http_bind(g_rt, "not an address", 0), FAAS_ESYS);
    assert_int_equal(faas_http_port(g_rt), 0);
    assert_int_equal(faas_http_port(NULL), 0);
}

/* ==== payload 2.0 ====================================================== */

static const char *jget(json_t *o, const char *path)
{
    char buf[128], *save = NULL, *tok;
    json_t *v = o;
    snprintf(buf, sizeof buf, "%s", path);
    for (tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save))
        v = json_object_get(v, tok);
    return json_string_value(v);
}

static void test_event_fields(void **state)
{
    static const char *const hdrs[] = {
        "Host", "example.com:8080", "User-Agent", "t/1", "X-Dup", "a", "x-dup", "b",
        "Cookie", "s=1; t=2", "Cookie", "u=3", "Content-Type", "application/json", NULL,
    };
    struct tu_resp r;
    json_t *ev, *rc, *h, *q, *c;
    const char *id;
    (void)state;

    serve(NULL);
    request(EVHTTP_REQ_POST, "/users/4%202/items?b=2&a=1&a=x%20y+z&flag&=skip&&c=%C3%A9",
            hdrs, "{\"k\":1}", 7, &r);
    assert_int_equal(r.code, 200);
    ev = resp_json(&r);
    assert_string_equal(jget(ev, "version"), "2.0");
    assert_string_equal(jget(ev, "routeKey"), "POST /users/{id}/items");
    assert_string_equal(jget(ev, "rawPath"), "/users/4%202/items");
    assert_string_equal(jget(ev, "rawQueryString"), "b=2&a=1&a=x%20y+z&flag&=skip&&c=%C3%A9");
    c = json_object_get(ev, "cookies");
    assert_int_equal(json_array_size(c), 3);
    assert_string_equal(json_string_value(json_array_get(c, 0)), "s=1");
    assert_string_equal(json_string_value(json_array_get(c, 1)), "t=2");
    assert_string_equal(json_string_value(json_array_get(c, 2)), "u=3");
    h = json_object_get(ev, "headers");
    assert_string_equal(jget(h, "host"), "example.com:8080");
    assert_string_equal(jget(h, "user-agent"), "t/1");
    assert_string_equal(jget(h, "x-dup"), "a,b");
    assert_string_equal(jget(h, "content-type"), "application/json");
    assert_string_equal(jget(h, "content-length"), "7");
    assert_null(json_object_get(h, "cookie"));
    assert_int_equal(json_object_size(h), 5);
    q = json_object_get(ev, "queryStringParameters");
    assert_string_equal(jget(q, "b"), "2");
    assert_string_equal(jget(q, "a"), "1,x y z");
    assert_string_equal(jget(q, "flag"), "");
    assert_string_equal(jget(q, "c"), "\xc3\xa9");
    assert_int_equal(json_object_size(q), 4);
    assert_string_equal(jget(ev, "pathParameters.id"), "4 2");
    assert_int_equal(json_object_size(json_object_get(ev, "pathParameters")), 1);
    rc = json_object_get(ev, "requestContext");
    assert_string_equal(jget(rc, "accountId"), "000000000000");
    assert_string_equal(jget(rc, "apiId"), "local");
    assert_string_equal(jget(rc, "domainName"), "example.com:8080");
    assert_string_equal(jget(rc, "domainPrefix"), "example");
    assert_string_equal(jget(rc, "http.method"), "POST");
    assert_string_equal(jget(rc, "http.path"), "/users/4 2/items");
    assert_string_equal(jget(rc, "http.protocol"), "HTTP/1.1");
    assert_string_equal(jget(rc, "http.sourceIp"), "127.0.0.1");
    assert_string_equal(jget(rc, "http.userAgent"), "t/1");
    id = jget(rc, "requestId");
    assert_non_null(id);
    assert_int_equal(strlen(id), 36);
    assert_int_equal(id[8], '-');
    assert_int_equal(id[14], '4');
    assert_string_equal(jget(rc, "routeKey"), "POST /users/{id}/items");
    assert_string_equal(jget(rc, "stage"), "$default");
    /* the fake wall clock: 1700000000 s = 2023-11-14T22:13:20Z */
    assert_string_equal(jget(rc, "time"), "14/Nov/2023:22:13:20 +0000");
    assert_int_equal(json_integer_value(json_object_get(rc, "timeEpoch")), 1700000000000ll);
    assert_string_equal(jget(ev, "body"), "{\"k\":1}");
    assert_true(json_is_false(json_object_get(ev, "isBase64Encoded")));
    json_decref(ev);
    tu_resp_clear(&r);
}

static void test_event_minimal(void **state)
{
    struct tu_resp r;
    json_t *ev;
    (void)state;

    serve(NULL);
    request(EVHTTP_REQ_GET, "/echo", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    ev = resp_json(&r);
    /* omitted when there is nothing to say, as API Gateway does */
    assert_null(json_object_get(ev, "cookies"));
    assert_null(json_object_get(ev, "queryStringParameters"));
    assert_null(json_object_get(ev, "pathParameters"));
    assert_null(json_object_get(ev, "body"));
    assert_string_equal(jget(ev, "rawQueryString"), "");
    assert_string_equal(jget(ev, "requestContext.http.userAgent"), "");
    assert_string_equal(jget(ev, "requestContext.domainPrefix"), "127");
    assert_true(json_is_false(json_object_get(ev, "isBase64Encoded")));
    json_decref(ev);
    tu_resp_clear(&r);

    /* a greedy tail, and "*" as {proxy+} */
    request(EVHTTP_REQ_DELETE, "/files/a/b%20c", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    ev = resp_json(&r);
    assert_string_equal(jget(ev, "routeKey"), "ANY /files/{key+}");
    assert_string_equal(jget(ev, "pathParameters.key"), "a/b c");
    assert_string_equal(jget(ev, "requestContext.http.method"), "DELETE");
    json_decref(ev);
    tu_resp_clear(&r);
    request(EVHTTP_REQ_GET, "/any/x/y", NULL, NULL, 0, &r);
    ev = resp_json(&r);
    assert_string_equal(jget(ev, "routeKey"), "ANY /any/*");
    assert_string_equal(jget(ev, "pathParameters.proxy"), "x/y");
    json_decref(ev);
    tu_resp_clear(&r);
    request_message(EVHTTP_REQ_GET, "/any", NULL, NULL, 0, 404, "Not Found");
}

static void test_event_bodies(void **state)
{
    static const char *const bin_hdrs[] = { "Content-Type", "application/octet-stream", NULL };
    static const char *const text_hdrs[] = { "Content-Type", "text/plain; charset=latin1",
                                             NULL };
    static const char *const vnd_hdrs[] = { "Content-Type", "application/vnd.api+json", NULL };
    static const char *const form_hdrs[] = { "Content-Type",
                                             "application/x-www-form-urlencoded", NULL };
    static const unsigned char bin[] = { 0, 1, 2, 255 };
    struct tu_resp r;
    json_t *ev;
    (void)state;

    serve(NULL);
    request(EVHTTP_REQ_POST, "/files/b", bin_hdrs, bin, sizeof bin, &r);
    ev = resp_json(&r);
    assert_string_equal(jget(ev, "body"), "AAEC/w==");
    assert_true(json_is_true(json_object_get(ev, "isBase64Encoded")));
    json_decref(ev);
    tu_resp_clear(&r);

    /* textual type but not UTF-8 */
    request(EVHTTP_REQ_POST, "/files/t", text_hdrs, "\xff\xfe", 2, &r);
    ev = resp_json(&r);
    assert_string_equal(jget(ev, "body"), "//4=");
    assert_true(json_is_true(json_object_get(ev, "isBase64Encoded")));
    json_decref(ev);
    tu_resp_clear(&r);

    request(EVHTTP_REQ_PUT, "/files/v", vnd_hdrs, "{\"a\":\"\xc3\xa9\"}", 10, &r);
    ev = resp_json(&r);
    assert_string_equal(jget(ev, "body"), "{\"a\":\"\xc3\xa9\"}");
    assert_true(json_is_false(json_object_get(ev, "isBase64Encoded")));
    json_decref(ev);
    tu_resp_clear(&r);

    request(EVHTTP_REQ_POST, "/files/f", form_hdrs, "a=1&b=2", 7, &r);
    ev = resp_json(&r);
    assert_string_equal(jget(ev, "body"), "a=1&b=2");
    json_decref(ev);
    tu_resp_clear(&r);
}

/* ==== response mapping ================================================= */

static void reply_with(const char *json)
{
    json_decref(g_reply);
    g_reply = json_loads(json, JSON_DECODE_ANY, NULL);
    assert_non_null(g_reply);
}

static void test_response_mapping(void **state)
{
    struct tu_resp r;
    json_t *sc;
    (void)state;

    serve(NULL);
    reply_with("{\"statusCode\":201,\"headers\":{\"X-A\":\"1\",\"Content-Type\":\"text/html\","
               "\"X-N\":5,\"X-B\":true,\"Content-Length\":\"999\",\"bad name\":\"x\","
               "\"X-Obj\":{}},\"cookies\":[\"a=1; Path=/\",\"b=2\"],\"body\":\"<p>hi</p>\"}");
    request(EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 201);
    assert_string_equal(r.body, "<p>hi</p>");
    assert_string_equal(tu_resp_header(&r, "x-a"), "1");
    assert_string_equal(tu_resp_header(&r, "x-n"), "5");
    assert_string_equal(tu_resp_header(&r, "x-b"), "true");
    assert_string_equal(tu_resp_header(&r, "content-type"), "text/html");
    assert_string_equal(tu_resp_header(&r, "content-length"), "9");
    assert_null(tu_resp_header(&r, "x-obj"));
    sc = json_object_get(r.headers, "set-cookie");
    assert_int_equal(json_array_size(sc), 2);
    assert_string_equal(json_string_value(json_array_get(sc, 0)), "a=1; Path=/");
    assert_string_equal(json_string_value(json_array_get(sc, 1)), "b=2");
    tu_resp_clear(&r);

    reply_with("{\"statusCode\":200,\"isBase64Encoded\":true,\"body\":\"AAEC/w==\","
               "\"headers\":{\"content-type\":\"application/octet-stream\"}}");
    request(EVHTTP_REQ_POST, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.len, 4);
    assert_memory_equal(r.body, "\x00\x01\x02\xff", 4);
    tu_resp_clear(&r);

    reply_with("{\"hello\":\"world\",\"n\":[1,2]}");
    request(EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(tu_resp_header(&r, "content-type"), "application/json");
    assert_string_equal(r.body, "{\"hello\":\"world\",\"n\":[1,2]}");
    tu_resp_clear(&r);

    reply_with("\"just a string\"");
    request(EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(tu_resp_header(&r, "content-type"), "application/json");
    assert_string_equal(r.body, "\"just a string\"");
    tu_resp_clear(&r);

    reply_with("42");
    request(EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "42");
    tu_resp_clear(&r);

    reply_with("null");
    request(EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "null");
    tu_resp_clear(&r);

    reply_with("{\"statusCode\":\"404\",\"body\":\"nope\"}");
    request(EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 404);
    assert_string_equal(r.body, "nope");
    assert_string_equal(tu_resp_header(&r, "content-type"), "text/plain; charset=utf-8");
    tu_resp_clear(&r);

    reply_with("{\"statusCode\":200,\"body\":{\"an\":\"object\"}}");
    request(EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "{\"an\":\"object\"}");
    tu_resp_clear(&r);

    reply_with("{\"statusCode\":204}");
    request(EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 204);
    assert_int_equal(r.len, 0);
    tu_resp_clear(&r);

    /* HEAD: the status and headers, never a body */
    reply_with("{\"statusCode\":200,\"body\":\"abc\"}");
    request(EVHTTP_REQ_HEAD, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.len, 0);
    tu_resp_clear(&r);

    /* malformed responses are the gateway's 502 */
    reply_with("{\"statusCode\":200,\"isBase64Encoded\":true,\"body\":\"!!!\","
               "\"headers\":{\"X-A\":\"1\"}}");
    request(EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, &r);
    expect_message(&r, 502, "Internal Server Error");
    assert_null(tu_resp_header(&r, "x-a"));
    tu_resp_clear(&r);
    reply_with("{\"statusCode\":99}");
    request_message(EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, 502, "Internal Server Error");
    reply_with("{\"statusCode\":\"abc\"}");
    request_message(EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, 502, "Internal Server Error");
}

/* ==== errors ============================================================ */

static void test_errors(void **state)
{
    struct tu_resp r;
    (void)state;

    serve(NULL);
    request_message(EVHTTP_REQ_GET, "/nope", NULL, NULL, 0, 404, "Not Found");
    request_message(EVHTTP_REQ_POST, "/echo", NULL, NULL, 0, 404, "Not Found"); /* wrong method */

    g_reports = 0;
    request(EVHTTP_REQ_GET, "/fail", NULL, NULL, 0, &r);
    expect_message(&r, 502, "Internal Server Error");
    assert_int_equal(g_reports, 1);
    tu_resp_clear(&r);

    request_message(EVHTTP_REQ_GET, "/slow", NULL, NULL, 0, 504, "Endpoint request timed out");

    /* the mapping outlives its function: 502 */
    assert_int_equal(faas_unregister(g_rt, "gone"), 0);
    request_message(EVHTTP_REQ_GET, "/gone", NULL, NULL, 0, 502, "Internal Server Error");
}

/* An idempotent function behind a route: its refusals are the client's. */
static void test_idempotency_statuses(void **state)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    const char *const k1[] = { "Idempotency-Key", "k1", NULL };
    struct tu_resp r;
    (void)state;

    serve(NULL);
    io.key_path = "headers.idempotency-key";
    io.validate_path = "body";
    io.required = 1;
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.idempotency = &io;
    assert_int_equal(faas_register(g_rt, "pay", h_echo, &fo), 0);
    assert_true(faas_map(g_rt, "api:POST /pay", "pay", NULL) >= 0);

    request_message(EVHTTP_REQ_POST, "/pay", NULL, "a", 1, 400, "Idempotency key required");
    request(EVHTTP_REQ_POST, "/pay", k1, "a", 1, &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
    request(EVHTTP_REQ_POST, "/pay", k1, "a", 1, &r); /* a replay */
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
    request_message(EVHTTP_REQ_POST, "/pay", k1, "b", 1, 422,
                    "Idempotency key reused with a different payload");
}

static void test_throttled(void **state)
{
    struct evhttp_connection *c;
    struct tu_resp first;
    (void)state;

    serve(NULL);
    /* The first holds the only instance (max_concurrency 1, max_queue 0). */
    c = start_gated(g_port, &first);
    assert_true(run_until_atomic(&g_started, 1));
    request_message(EVHTTP_REQ_GET, "/gated", NULL, NULL, 0, 429, "Too Many Requests");
    ASTORE(&g_gate, 1);
    assert_true(tu_run_until(g_base, &first.done, 1, BOUND_MS));
    assert_int_equal(first.code, 200);
    assert_string_equal(first.body, "gated");
    tu_resp_clear(&first);
    evhttp_connection_free(c);
}

static void test_limits(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    char body[64], hv[300];
    const char *hdrs[] = { "X-Big", hv, NULL };
    struct tu_resp r;
    json_t *ev;
    (void)state;

    o.http_max_body = 16;
    o.http_max_headers = 256;
    serve(&o);
    memset(body, 'a', sizeof body);
    request(EVHTTP_REQ_POST, "/files/x", NULL, body, 16, &r);
    assert_int_equal(r.code, 200);
    ev = resp_json(&r);
    assert_int_equal(strlen(jget(ev, "body")), 16);
    json_decref(ev);
    tu_resp_clear(&r);
    request_message(EVHTTP_REQ_POST, "/files/x", NULL, body, 17, 413, "Request Entity Too Large");

    memset(hv, 'h', 250);
    hv[250] = '\0';
    request_message(EVHTTP_REQ_GET, "/echo", hdrs, NULL, 0, 431, "Request Header Fields Too Large");
    hv[150] = '\0';
    request(EVHTTP_REQ_GET, "/echo", hdrs, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
    /* The server still serves after refusing. */
    request_message(EVHTTP_REQ_GET, "/nope", NULL, NULL, 0, 404, "Not Found");
}

static void test_event_too_big(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    static const char *const bin_hdrs[] = { "Content-Type", "application/octet-stream", NULL };
    char body[1500];
    struct tu_resp r;
    (void)state;

    /* The body fits http_max_body but its event (base64) does not fit
     * max_sync_payload: faas_invoke refuses it. */
    o.max_sync_payload = 1024;
    o.http_max_body = 4096;
    serve(&o);
    memset(body, 0xff, sizeof body);
    g_reports = 0;
    request(EVHTTP_REQ_POST, "/files/x", bin_hdrs, body, sizeof body, &r);
    expect_message(&r, 413, "Request Entity Too Large");
    assert_int_equal(g_reports, 0);
    tu_resp_clear(&r);
}

/* ==== lifetimes ========================================================= */

static void test_client_gone(void **state)
{
    static const char req[] = "GET /gated HTTP/1.1\r\nHost: x\r\n\r\n";
    struct tu_resp r;
    int fd;
    (void)state;

    serve(NULL);
    g_reports = 0;
    fd = tu_raw_send(g_port, req);
    assert_true(run_until_atomic(&g_started, 1));
    close(fd);
    tu_run_for(g_base, 20);
    ASTORE(&g_gate, 1);
    assert_true(tu_run_until(g_base, &g_reports, 1, BOUND_MS));
    tu_run_for(g_base, 20); /* the reply meets the closed socket */
    assert_int_equal(faas_http_pending_count(g_rt), 0);
    /* and the gateway still serves */
    request(EVHTTP_REQ_GET, "/gated", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
}

static void test_client_gone_then_free(void **state)
{
    static const char req[] = "GET /gated HTTP/1.1\r\nHost: x\r\n\r\n";
    int fd;
    (void)state;

    /* The client goes, then the runtime (and its server) before the result. */
    serve(NULL);
    fd = tu_raw_send(g_port, req);
    assert_true(run_until_atomic(&g_started, 1));
    close(fd);
    tu_run_for(g_base, 20);
    faas_runtime_free(g_rt); /* cancels the gated handler, which returns */
    g_rt = NULL;
}

/* ==== attach ============================================================ */

static void host_health(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evbuffer_add_printf(evhttp_request_get_output_buffer(req), "host ok");
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void test_attach(void **state)
{
    struct evhttp *host = evhttp_new(g_base);
    struct evhttp_bound_socket *sock;
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    uint16_t port;
    struct tu_resp r, pending;
    struct evhttp_connection *c;
    json_t *ev;
    (void)state;

    assert_non_null(host);
    evhttp_set_cb(host, "/health", host_health, NULL);
    sock = evhttp_bind_socket_with_handle(host, "127.0.0.1", 0);
    assert_non_null(sock);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&a, &al),
                     0);
    port = ntohs(a.sin_port);
    rt_start(NULL);
    assert_int_equal(faas_http_attach(g_rt, host), 0);
    assert_int_equal(faas_http_attach(g_rt, host), FAAS_EBUSY);
    assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", 0), FAAS_EBUSY);
    assert_int_equal(faas_http_port(g_rt), 0);
    /* routes added after attaching are served too */
    assert_true(faas_map(g_rt, "api:GET /users/{id}", "echo", NULL) >= 0);
    assert_true(faas_map(g_rt, "api:GET /gated", "gated", NULL) >= 0);

    request_on(port, EVHTTP_REQ_GET, "/health", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "host ok");
    tu_resp_clear(&r);
    request_on(port, EVHTTP_REQ_GET, "/users/7", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    ev = resp_json(&r);
    assert_string_equal(jget(ev, "pathParameters.id"), "7");
    json_decref(ev);
    tu_resp_clear(&r);
    request_on(port, EVHTTP_REQ_GET, "/other", NULL, NULL, 0, &r);
    expect_message(&r, 404, "Not Found");
    tu_resp_clear(&r);

    /* Freed with a request in flight: the host's server answers it 503. */
    c = start_gated(port, &pending);
    assert_true(run_until_atomic(&g_started, 1));
    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_true(tu_run_until(g_base, &pending.done, 1, BOUND_MS));
    expect_message(&pending, 503, "Service Unavailable");
    tu_resp_clear(&pending);
    evhttp_connection_free(c);

    /* The host keeps its server and its own routes; ours are gone. */
    request_on(port, EVHTTP_REQ_GET, "/health", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
    request_on(port, EVHTTP_REQ_GET, "/users/7", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 404);
    tu_resp_clear(&r);
    evhttp_free(host);
}

/* ==== detach ============================================================ */

/* faas_http_detach on a host's evhttp: a held request gets 503, the host's
 * server keeps its routes and serves with no callback of ours (404 for our
 * routes, no connection counted), and attaching again serves the routes
 * that stayed mapped. */
static void test_detach_attached(void **state)
{
    struct evhttp *host = evhttp_new(g_base);
    struct evhttp_bound_socket *sock;
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    uint16_t port;
    struct tu_resp r, pending;
    struct evhttp_connection *c;
    int reports;
    (void)state;

    assert_non_null(host);
    evhttp_set_cb(host, "/health", host_health, NULL);
    sock = evhttp_bind_socket_with_handle(host, "127.0.0.1", 0);
    assert_non_null(sock);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&a, &al),
                     0);
    port = ntohs(a.sin_port);
    rt_start(NULL);
    assert_int_equal(faas_http_detach(g_rt), FAAS_ENOENT); /* not serving yet */
    assert_int_equal(faas_http_detach(NULL), FAAS_EINVAL);
    assert_int_equal(faas_http_attach(g_rt, host), 0);
    assert_true(faas_map(g_rt, "api:GET /users/{id}", "echo", NULL) >= 0);
    assert_true(faas_map(g_rt, "api:GET /gated", "gated", NULL) >= 0);
    request_on(port, EVHTTP_REQ_GET, "/users/7", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);

    c = start_gated(port, &pending);
    assert_true(run_until_atomic(&g_started, 1));
    reports = g_reports;
    assert_int_equal(faas_http_detach(g_rt), 0);
    assert_true(tu_run_until(g_base, &pending.done, 1, BOUND_MS));
    expect_message(&pending, 503, "Service Unavailable");
    tu_resp_clear(&pending);
    evhttp_connection_free(c);
    /* The invocation goes on; its result finds nobody and is dropped. */
    ASTORE(&g_gate, 1);
    assert_true(tu_run_until(g_base, &g_reports, reports + 1, BOUND_MS));
    assert_int_equal(faas_http_pending_count(g_rt), 0);
    assert_int_equal(faas_http_conn_count(g_rt), 0);

    request_on(port, EVHTTP_REQ_GET, "/health", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "host ok");
    tu_resp_clear(&r);
    assert_int_equal(faas_http_conn_count(g_rt), 0); /* no bufferevent callback of ours */
    request_on(port, EVHTTP_REQ_GET, "/users/7", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 404);
    assert_null(strstr(r.body ? r.body : "", "\"message\""));
    tu_resp_clear(&r);
    assert_int_equal(faas_http_detach(g_rt), FAAS_ENOENT); /* already */

    /* Attached again: the routes that stayed mapped are served. */
    assert_int_equal(faas_http_attach(g_rt, host), 0);
    request_on(port, EVHTTP_REQ_GET, "/users/8", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
    assert_int_equal(faas_http_detach(g_rt), 0);
    evhttp_free(host); /* the host may free its server once detached */
    request_on(port, EVHTTP_REQ_GET, "/users/8", NULL, NULL, 0, &r);
    assert_true(r.code <= 0); /* no reply: the connection failed */
    tu_resp_clear(&r);
}

/* faas_http_detach on a server of the runtime's own frees it: its port
 * refuses connections; binding again serves the routes on a new one. */
static void test_detach_bound(void **state)
{
    struct tu_resp r;
    uint16_t old;
    (void)state;

    serve(NULL);
    old = g_port;
    request(EVHTTP_REQ_GET, "/echo", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
    assert_int_equal(faas_http_detach(g_rt), 0);
    assert_int_equal(faas_http_port(g_rt), 0);
    request_on(old, EVHTTP_REQ_GET, "/echo", NULL, NULL, 0, &r);
    assert_true(r.code <= 0); /* nobody listens */
    tu_resp_clear(&r);

    assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", 0), 0);
    g_port = faas_http_port(g_rt);
    assert_int_not_equal(g_port, 0);
    request(EVHTTP_REQ_GET, "/echo", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
}

/* FAAS_ESYS from faas_http_bind keeps its errno: a port in use says
 * EADDRINUSE. */
static void test_bind_errno(void **state)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    (void)state;

    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    rt_start(NULL);
    assert_int_equal(faas_runtime_last_errno(g_rt), 0);
    assert_int_equal(faas_runtime_last_errno(NULL), 0);
    assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", ntohs(a.sin_port)), FAAS_ESYS);
    assert_int_equal(faas_runtime_last_errno(g_rt), EADDRINUSE);
    /* A call that succeeds leaves it as it was. */
    assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", 0), 0);
    assert_int_equal(faas_runtime_last_errno(g_rt), EADDRINUSE);
    close(fd);
}

/* ==== connection bounds ================================================= */

/* Reads what has come without blocking (keeping the last bytes); 1 once the
 * server has closed the connection (end of stream or reset). */
static int raw_closed(const void *arg)
{
    struct tu_raw_resp *r = (struct tu_raw_resp *)(uintptr_t)arg;
    ssize_t n;

    while (!r->closed) {
        if (r->len >= sizeof r->buf - 1)
            r->len = 0;
        n = recv(r->fd, r->buf + r->len, sizeof r->buf - 1 - r->len, MSG_DONTWAIT);
        if (n > 0) {
            r->len += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            r->closed = 1;
        break;
    }
    r->buf[r->len] = '\0';
    return r->closed;
}

/* Sends a whole request on r's connection and runs the loop until its
 * reply is in; the reply's status line must be `status`. */
static void raw_roundtrip(struct tu_raw_resp *r, const char *req, const char *status)
{
    r->len = 0;
    r->buf[0] = '\0';
    assert_int_equal(send(r->fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    assert_true(tu_run_until_pred(g_base, tu_raw_complete, r, BOUND_MS));
    if (strncmp(r->buf, status, strlen(status)) != 0)
        fail_msg("want %s, got: %s", status, r->buf);
}

static const char get_echo[] = "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n";

static void test_read_timeout(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct tu_raw_resp r;
    uint64_t t0, took;
    (void)state;

    /* A header dripped a byte every 40 ms: each byte would restart a read
     * timeout; the whole request's bound does not restart. */
    o.http_read_timeout_ms = 300;
    serve(&o);
    memset(&r, 0, sizeof r);
    r.fd = tu_raw_send(g_port, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Drip: ");
    t0 = tu_now_ms();
    while (!raw_closed(&r) && tu_now_ms() - t0 < 3000) {
        tu_run_for(g_base, 40);
        if (send(r.fd, "a", 1, MSG_NOSIGNAL) != 1)
            break;
    }
    assert_true(tu_run_until_pred(g_base, raw_closed, &r, BOUND_MS));
    took = tu_now_ms() - t0;
    if (took < 250 || took > 2500)
        fail_msg("closed after %llu ms, want about 300", (unsigned long long)took);
    assert_int_equal(r.len, 0); /* no reply: the request never came whole */
    close(r.fd);
}

static void test_idle_timeout(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct tu_raw_resp r;
    uint64_t t0, took;
    (void)state;

    o.http_idle_timeout_ms = 300;
    serve(&o);
    /* a new connection that sends nothing */
    memset(&r, 0, sizeof r);
    r.fd = tu_raw_connect(g_port);
    t0 = tu_now_ms();
    assert_true(tu_run_until_pred(g_base, raw_closed, &r, BOUND_MS));
    took = tu_now_ms() - t0;
    if (took < 250 || took > 2500)
        fail_msg("closed after %llu ms, want about 300", (unsigned long long)took);
    close(r.fd);
    /* a keep-alive connection after its request */
    memset(&r, 0, sizeof r);
    r.fd = tu_raw_connect(g_port);
    raw_roundtrip(&r, get_echo, "HTTP/1.1 200 ");
    t0 = tu_now_ms();
    r.len = 0;
    assert_true(tu_run_until_pred(g_base, raw_closed, &r, BOUND_MS));
    took = tu_now_ms() - t0;
    if (took < 250 || took > 2500)
        fail_msg("closed after %llu ms, want about 300", (unsigned long long)took);
    assert_int_equal(r.len, 0);
    close(r.fd);
    assert_int_equal(faas_http_conn_count(g_rt), 0);
}

static void test_keepalive_within_bounds(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct tu_raw_resp r;
    uint64_t t0;
    int i;
    (void)state;

    /* Six requests 200 ms apart on one connection: longer in all than
     * either bound, each request and each pause within them. */
    o.http_read_timeout_ms = 300;
    o.http_idle_timeout_ms = 400;
    serve(&o);
    memset(&r, 0, sizeof r);
    r.fd = tu_raw_connect(g_port);
    t0 = tu_now_ms();
    for (i = 0; i < 6; i++) {
        raw_roundtrip(&r, get_echo, "HTTP/1.1 200 ");
        assert_false(r.closed);
        tu_run_for(g_base, 200);
    }
    assert_true(tu_now_ms() - t0 >= 1200);
    assert_false(raw_closed(&r));
    assert_int_equal(faas_http_conn_count(g_rt), 1);
    close(r.fd);
}

static int conn_count_is(const void *arg)
{
    return faas_http_conn_count(g_rt) == *(const size_t *)arg;
}

static void test_max_connections(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct tu_raw_resp held[3], extra;
    size_t want = 3, none = 0;
    uint64_t t0;
    int i;
    (void)state;

    o.http_max_connections = 3;
    serve(&o);
    for (i = 0; i < 3; i++) {
        memset(&held[i], 0, sizeof held[i]);
        held[i].fd = tu_raw_connect(g_port);
    }
    assert_true(tu_run_until_pred(g_base, conn_count_is, &want, BOUND_MS));
    /* the fourth is accepted and closed at once */
    memset(&extra, 0, sizeof extra);
    extra.fd = tu_raw_connect(g_port);
    t0 = tu_now_ms();
    assert_true(tu_run_until_pred(g_base, raw_closed, &extra, BOUND_MS));
    assert_true(tu_now_ms() - t0 < 1000);
    assert_int_equal(extra.len, 0);
    close(extra.fd);
    assert_int_equal(faas_http_conn_count(g_rt), 3);
    assert_true(g_warn_limit >= 1);
    /* the first three still work */
    for (i = 0; i < 3; i++)
        raw_roundtrip(&held[i], get_echo, "HTTP/1.1 200 ");
    for (i = 0; i < 3; i++)
        close(held[i].fd);
    assert_true(tu_run_until_pred(g_base, conn_count_is, &none, BOUND_MS));
    /* and their places are free again */
    memset(&extra, 0, sizeof extra);
    extra.fd = tu_raw_connect(g_port);
    raw_roundtrip(&extra, get_echo, "HTTP/1.1 200 ");
    close(extra.fd);
}

static void test_attach_bounds(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct evhttp *host = evhttp_new(g_base);
    struct evhttp_bound_socket *sock;
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    struct tu_raw_resp held, extra;
    size_t one = 1;
    uint64_t t0, took;
    uint16_t port;
    (void)state;

    /* The bounds hold on the host's server too, its own paths included. */
    assert_non_null(host);
    evhttp_set_cb(host, "/health", host_health, NULL);
    o.http_idle_timeout_ms = 300;
    o.http_max_connections = 1;
    rt_start(&o);
    assert_int_equal(faas_http_attach(g_rt, host), 0);
    sock = evhttp_bind_socket_with_handle(host, "127.0.0.1", 0);
    assert_non_null(sock);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&a, &al),
                     0);
    port = ntohs(a.sin_port);
    memset(&held, 0, sizeof held);
    held.fd = tu_raw_connect(port);
    raw_roundtrip(&held, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 ");
    assert_true(tu_run_until_pred(g_base, conn_count_is, &one, BOUND_MS));
    /* a second connection is one too many */
    memset(&extra, 0, sizeof extra);
    extra.fd = tu_raw_connect(port);
    assert_true(tu_run_until_pred(g_base, raw_closed, &extra, BOUND_MS));
    assert_int_equal(extra.len, 0);
    close(extra.fd);
    assert_true(g_warn_limit >= 1);
    /* the first, idle after the host's reply, is closed after the timeout */
    t0 = tu_now_ms();
    held.len = 0;
    assert_true(tu_run_until_pred(g_base, raw_closed, &held, BOUND_MS));
    took = tu_now_ms() - t0;
    if (took > 2500)
        fail_msg("closed after %llu ms, want about 300", (unsigned long long)took);
    close(held.fd);
    faas_runtime_free(g_rt);
    g_rt = NULL;
    /* the host's server is its own again, unbounded */
    memset(&held, 0, sizeof held);
    held.fd = tu_raw_connect(port);
    memset(&extra, 0, sizeof extra);
    extra.fd = tu_raw_connect(port);
    raw_roundtrip(&held, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 ");
    raw_roundtrip(&extra, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 ");
    close(held.fd);
    close(extra.fd);
    evhttp_free(host);
}

static uint64_t cpu_ms(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000u;
}

static void test_accept_emfile(void **state)
{
    struct sockaddr_in a;
    struct rlimit low;
    struct tu_raw_resp r;
    uint64_t cpu0, wall0, cpu, wall;
    int probe;
    (void)state;

    /* Descriptors run out: the next accept fails with EMFILE. The client's
     * socket is made first, the limit then set to the lowest free one. */
    serve(NULL);
    memset(&r, 0, sizeof r);
    r.fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(r.fd >= 0);
    probe = open("/dev/null", O_RDONLY);
    assert_true(probe >= 0);
    close(probe);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &g_nofile), 0);
    low = g_nofile;
    low.rlim_cur = (rlim_t)probe;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    g_nofile_lowered = 1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(g_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(r.fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(send(r.fd, get_echo, strlen(get_echo), MSG_NOSIGNAL),
                     (ssize_t)strlen(get_echo));

    /* Half a second of a loop that cannot accept: no spinning (a spinning
     * loop burns the whole half second), and few warnings. */
    cpu0 = cpu_ms();
    wall0 = tu_now_ms();
    tu_run_for(g_base, 500);
    cpu = cpu_ms() - cpu0;
    wall = tu_now_ms() - wall0;
    if (cpu * 2 > wall)
        fail_msg("%llu ms of CPU in %llu ms", (unsigned long long)cpu, (unsigned long long)wall);
    assert_true(g_warn_accept >= 1);
    assert_true(g_warn_accept <= 3);
    assert_false(tu_raw_complete(&r));

    /* Descriptors again: accepting resumes and the request is served. */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &g_nofile), 0);
    g_nofile_lowered = 0;
    assert_true(tu_run_until_pred(g_base, tu_raw_complete, &r, BOUND_MS));
    if (r.closed && r.len == 0) {
        /* valgrind emulates the limit after the system call: it closes the
         * socket accept returned over it. Accepting must resume anyway. */
        close(r.fd);
        memset(&r, 0, sizeof r);
        r.fd = tu_raw_send(g_port, get_echo);
        assert_true(tu_run_until_pred(g_base, tu_raw_complete, &r, BOUND_MS));
    }
    assert_int_equal(strncmp(r.buf, "HTTP/1.1 200 ", 13), 0);
    close(r.fd);
}

/* The log callback frees the runtime on a connection-limit warning: the
 * gateway touches nothing of it afterwards, and the connections close
 * with its server. */
static void test_free_on_limit_warning(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct tu_raw_resp a, b;
    (void)state;

    o.http_max_connections = 1;
    serve(&o);
    g_free_on = "connection-limit";
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.fd = tu_raw_connect(g_port);
    b.fd = tu_raw_connect(g_port);
    assert_true(tu_run_until(g_base, &g_freed_in_log, 1, BOUND_MS));
    assert_null(g_rt);
    assert_int_equal(g_warn_limit, 1);
    tu_run_for(g_base, 50); /* nothing of the runtime runs any more */
    assert_true(tu_run_until_pred(g_base, raw_closed, &a, BOUND_MS));
    assert_true(tu_run_until_pred(g_base, raw_closed, &b, BOUND_MS));
    close(a.fd);
    close(b.fd);
    assert_int_equal(g_freed_in_log, 1);
}

/* The same with an accept failure's warning. */
static void test_free_on_accept_warning(void **state)
{
    struct sockaddr_in a;
    struct rlimit low;
    int fd, probe;
    (void)state;

    serve(NULL);
    g_free_on = "accept";
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    probe = open("/dev/null", O_RDONLY);
    assert_true(probe >= 0);
    close(probe);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &g_nofile), 0);
    low = g_nofile;
    low.rlim_cur = (rlim_t)probe;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    g_nofile_lowered = 1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(g_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_true(tu_run_until(g_base, &g_freed_in_log, 1, BOUND_MS));
    assert_null(g_rt);
    assert_int_equal(g_warn_accept, 1);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &g_nofile), 0);
    g_nofile_lowered = 0;
    tu_run_for(g_base, 50);
    close(fd);
    assert_int_equal(g_freed_in_log, 1);
}

static void test_drain(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct tu_raw_resp idle, busy, partial, late;
    size_t three = 3;
    uint64_t t0;
    (void)state;

    o.invoke_api = 1;
    serve(&o);
    /* idle: a keep-alive connection after its request */
    memset(&idle, 0, sizeof idle);
    idle.fd = tu_raw_connect(g_port);
    raw_roundtrip(&idle, get_echo, "HTTP/1.1 200 ");
    idle.len = 0;
    /* busy: a request being served */
    memset(&busy, 0, sizeof busy);
    busy.fd = tu_raw_send(g_port, "GET /gated HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(run_until_atomic(&g_started, 1));
    /* partial: a request half sent */
    memset(&partial, 0, sizeof partial);
    partial.fd = tu_raw_send(g_port, "GET /echo HTTP/1.1\r\nHost: x\r\n");
    assert_true(tu_run_until_pred(g_base, conn_count_is, &three, BOUND_MS));
    tu_run_for(g_base, 50); /* its bytes are read */

    g_rt->draining = 1;
    faas_http_drain(g_rt);
    t0 = tu_now_ms();
    assert_true(tu_run_until_pred(g_base, raw_closed, &idle, BOUND_MS));
    assert_true(tu_now_ms() - t0 < 1000);
    assert_int_equal(idle.len, 0);
    close(idle.fd);
    assert_false(raw_closed(&busy));
    assert_false(raw_closed(&partial));

    /* the half-sent request ends: 503, and the connection closes */
    assert_int_equal(send(partial.fd, "\r\n", 2, MSG_NOSIGNAL), 2);
    assert_true(tu_run_until_pred(g_base, raw_closed, &partial, BOUND_MS));
    assert_int_equal(strncmp(partial.buf, "HTTP/1.1 503 ", 13), 0);
    assert_non_null(strcasestr(partial.buf, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(partial.buf, "\r\n\r\n{\"message\":\"Service Unavailable\"}"));
    close(partial.fd);
    /* a new request, on a route and on the Invoke API */
    tu_raw_exchange(g_base, g_port, get_echo, &late, BOUND_MS);
    assert_int_equal(strncmp(late.buf, "HTTP/1.1 503 ", 13), 0);
    assert_non_null(strcasestr(late.buf, "\r\nConnection: close\r\n"));
    tu_raw_exchange(g_base, g_port,
                    "POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: x\r\n"
                    "Content-Length: 2\r\n\r\n{}",
                    &late, BOUND_MS);
    assert_int_equal(strncmp(late.buf, "HTTP/1.1 503 ", 13), 0);
    assert_non_null(strcasestr(late.buf, "\r\nx-amzn-ErrorType: ServiceException\r\n"));
    assert_non_null(strcasestr(late.buf, "\r\nConnection: close\r\n"));

    /* the request being served finishes normally, then its connection goes */
    ASTORE(&g_gate, 1);
    assert_true(tu_run_until_pred(g_base, raw_closed, &busy, BOUND_MS));
    assert_int_equal(strncmp(busy.buf, "HTTP/1.1 200 ", 13), 0);
    assert_non_null(strstr(busy.buf, "\r\n\r\ngated"));
    close(busy.fd);
}

/* ==== NUL in strings ===================================================== */

static void test_nul_strings(void **state)
{
    static const char *const text[] = { "Content-Type", "text/plain", NULL };
    struct tu_resp r;
    json_t *ev;
    (void)state;

    serve(NULL);
    /* a result that is a string with a NUL: JSON with \u0000 */
    g_reply = json_stringn("a\0b", 3);
    request_on(g_port, EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.len, 10);
    assert_memory_equal(r.body, "\"a\\u0000b\"", 10);
    tu_resp_clear(&r);
    /* a structured body with a NUL: the bytes as they are */
    json_decref(g_reply);
    g_reply = json_pack("{s:i,s:s%}", "statusCode", 200, "body", "a\0b", (size_t)3);
    request_on(g_port, EVHTTP_REQ_GET, "/reply", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.len, 3);
    assert_memory_equal(r.body, "a\0b", 3);
    tu_resp_clear(&r);
    /* a request body with a NUL reaches the event and comes back */
    request_on(g_port, EVHTTP_REQ_POST, "/users/1/items", text, "x\0y", 3, &r);
    assert_int_equal(r.code, 200);
    ev = json_loadb(r.body, r.len, JSON_ALLOW_NUL, NULL);
    assert_non_null(ev);
    assert_int_equal(json_string_length(json_object_get(ev, "body")), 3);
    assert_memory_equal(json_string_value(json_object_get(ev, "body")), "x\0y", 3);
    json_decref(ev);
    tu_resp_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_parse),
        cmocka_unit_test(test_route_duplicates),
        cmocka_unit_test(test_route_precedence),
        cmocka_unit_test(test_route_many),
        cmocka_unit_test_setup_teardown(test_map_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_minimal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_then_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach_attached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_errno, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_within_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_emfile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_on_limit_warning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_on_accept_warning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_strings, setup, teardown),
    };
    /* An HTTP server's writes to a client that has gone raise SIGPIPE, as
     * for any evhttp server: the host ignores it (docs/threading.md). */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

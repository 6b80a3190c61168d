/*
 * test_invoke_api.c - Lambda's Invoke API on the HTTP gateway: real
 * requests over loopback (libevent's evhttp client on the same base, and a
 * raw socket for a client that goes away), one test per row of the
 * behaviour: invocation types, result and error mapping, ARNs and
 * qualifiers, limits, log tails, client contexts, SigV4, the option that
 * turns it off, and requests held when their client or the runtime goes.
 *
 * SigV4 is checked twice over: the signer (faas_sigv4_signature) against
 * vectors of AWS's SigV4 test suite, and the gateway against requests that
 * this file signs with a straightforward signer of its own (itself checked
 * against the same vectors first).
 *
 * Handlers are INLINE (on the loop) except "gated" and "sleepy", THREAD
 * handlers that wait on a tu_gate; what they touch is atomic or under the
 * gate's mutex. The clock is the system's: SigV4 dates are real times.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/http.h>
#include <sodium.h>

#include "faas_int.h"
#include "http.h"
#include "sigv4.h"
#include "testutil.h"
#include "tu_http.h"

#define BOUND_MS 5000u

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static uint16_t g_port;
static int g_counted;    /* "count" ran (loop thread) */
static json_t *g_counted_event;
static int g_started;    /* atomic: gated handlers started */
static pthread_mutex_t g_mu;
static pthread_cond_t g_cv;
static int g_open;       /* under g_mu: the gate */

/* ==== handlers ========================================================== */

static int h_echo(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_incref(event);
    return 0;
}

static int h_fail(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    faas_ctx_log(ctx, "about to fail");
    return faas_ctx_fail(ctx, "Boom", "it failed");
}

static int h_count(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)result;
    g_counted++;
    json_decref(g_counted_event);
    g_counted_event = json_deep_copy(event);
    return 0;
}

/* Logs event.lines lines of event.size bytes: "line N xxxx...". */
static int h_log(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_int_t lines = json_integer_value(json_object_get(event, "lines")), i;
    int size = (int)json_integer_value(json_object_get(event, "size"));
    char pad[1024];
    memset(pad, 'x', sizeof pad);
    for (i = 0; i < lines; i++)
        faas_ctx_log(ctx, "line %d %.*s", (int)i, size, pad);
    *result = json_string("logged");
    return 0;
}

static int h_cc(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *cc = faas_ctx_client_context(ctx);
    (void)event;
    *result = cc ? json_deep_copy(cc) : json_string("none");
    return 0;
}

/* THREAD: waits for the gate (or cancellation, or the bound). */
static int h_gated(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    AINC(&g_started);
    tu_gate_wait(&g_mu, &g_cv, &g_open, ctx, 10000u);
    *result = json_string("gated");
    return 0;
}

/* ==== fixture =========================================================== */

static int setup(void **state)
{
    (void)state;
    g_base = event_base_new();
    assert_non_null(g_base);
    g_counted = 0;
    g_counted_event = NULL;
    ASTORE(&g_started, 0);
    g_open = 0;
    pthread_mutex_init(&g_mu, NULL);
    tu_cond_init_monotonic(&g_cv);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_gate_open(&g_mu, &g_cv, &g_open);
    faas_runtime_free(g_rt);
    g_rt = NULL;
    tu_durable_remove();
    json_decref(g_counted_event);
    g_counted_event = NULL;
    event_base_free(g_base);
    g_base = NULL;
    pthread_cond_destroy(&g_cv);
    pthread_mutex_destroy(&g_mu);
    return 0;
}

static void rt_start(const struct faas_runtime_opts *extra)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;

    /* The Invoke API is off by default: the suite turns it on, and the
     * callers that pass options say themselves. */
    if (extra)
        o = *extra;
    else
        o.invoke_api = 1;
    o.thread_workers = 2;
    o.zygote = 0; /* no PROCESS functions here */
    tu_durable_apply(&o); /* make test runs the suite on SQLite too */
    assert_int_equal(faas_runtime_new(&g_rt, g_base, &o), 0);
    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(g_rt, "echo", h_echo, &fo), 0);
    assert_int_equal(faas_register(g_rt, "fail", h_fail, &fo), 0);
    assert_int_equal(faas_register(g_rt, "count", h_count, &fo), 0);
    assert_int_equal(faas_register(g_rt, "log", h_log, &fo), 0);
    assert_int_equal(faas_register(g_rt, "cc", h_cc, &fo), 0);
    io.key_path = "id";
    io.required = 1;
    fo.idempotency = &io;
    assert_int_equal(faas_register(g_rt, "idem", h_echo, &fo), 0);
    fo.idempotency = NULL;
    fo.isolation = FAAS_ISOLATION_THREAD;
    fo.timeout_ms = 0;
    fo.max_concurrency = 1;
    fo.max_queue = 0;
    assert_int_equal(faas_register(g_rt, "gated", h_gated, &fo), 0);
    fo.timeout_ms = 50;
    fo.max_concurrency = 0;
    assert_int_equal(faas_register(g_rt, "sleepy", h_gated, &fo), 0);
    fo.timeout_ms = 0;
    assert_int_equal(faas_register(g_rt, "techo", h_echo, &fo), 0);
}

static void serve(const struct faas_runtime_opts *extra)
{
    rt_start(extra);
    assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", 0), 0);
    g_port = faas_http_port(g_rt);
    assert_int_not_equal(g_port, 0);
}

/* ==== the client (tu_http.h) ============================================= */

static void request_on(uint16_t port, enum evhttp_cmd_type type, const char *uri,
                       const char *const *headers, const void *body, size_t blen,
                       struct tu_resp *r)
{
    tu_http_request(g_base, port, type, uri, headers, body, blen, r, BOUND_MS);
}

static void post(const char *uri, const char *const *headers, const char *body,
                 struct tu_resp *r)
{
    request_on(g_port, EVHTTP_REQ_POST, uri, headers, body, body ? strlen(body) : 0, r);
}

#define INVOKE(fn) "/2015-03-31/functions/" fn "/invocations"

static int is_uuid(const char *s)
{
    size_t i;
    if (!s || strlen(s) != 36)
        return 0;
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!strchr("0123456789abcdef", s[i])) {
            return 0;
        }
    }
    return 1;
}

/* An AWS-shaped error: status, x-amzn-ErrorType, {"Type","message"}. */
static void expect_error(const struct tu_resp *r, int code, const char *type)
{
    json_t *j;
    if (r->code != code)
        fail_msg("status %d, want %d (%s)", r->code, code, r->body);
    assert_string_equal(tu_resp_header(r, "x-amzn-errortype"), type);
    assert_string_equal(tu_resp_header(r, "content-type"), "application/json");
    assert_true(is_uuid(tu_resp_header(r, "x-amzn-requestid")));
    j = json_loadb(r->body, r->len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "Type")),
                        code >= 500 ? "Service" : "User");
    assert_non_null(json_string_value(json_object_get(j, "message")));
    json_decref(j);
}

static const char *jmsg(const struct tu_resp *r, char *buf, size_t size)
{
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    snprintf(buf, size, "%s", j ? json_string_value(json_object_get(j, "message")) : "");
    json_decref(j);
    return buf;
}

/* One POST whose reply must be an AWS-shaped error (expect_error). */
static void post_error(const char *uri, const char *const *headers, const char *body, int code,
                       const char *type)
{
    struct tu_resp r;
    post(uri, headers, body, &r);
    expect_error(&r, code, type);
    tu_resp_clear(&r);
}

static int run_until_atomic(int *p, int want)
{
    return tu_run_until_atomic(g_base, p, want, BOUND_MS);
}

/* ==== a SigV4 signer of the test's own ==================================== */

static void t_hmac(unsigned char out[32], const unsigned char *key, size_t klen, const char *msg)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, klen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, strlen(msg));
    crypto_auth_hmacsha256_final(&st, out);
}

static void t_hex(const unsigned char *b, size_t n, char *out)
{
    size_t i;
    for (i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/*
 * Straight from AWS's description: canon_uri and canon_query are given
 * already canonical; hdrs are "name:value" lines (lower-case, sorted) whose
 * names make the signed header list.
 */
static void t_sign(const char *method, const char *canon_uri, const char *canon_query,
                   const char *const *hdrs, const char *body, const char *date8,
                   const char *amz_date, const char *region, const char *service,
                   const char *secret, char *signed_headers, char sig[65])
{
    char creq[4096], sts[1024], scope[128], key[128], hx[65], bh[65];
    unsigned char d[32], k[32];
    size_t i;

    signed_headers[0] = '\0';
    crypto_hash_sha256(d, (const unsigned char *)body, strlen(body));
    t_hex(d, 32, bh);
    snprintf(creq, sizeof creq, "%s\n%s\n%s\n", method, canon_uri, canon_query);
    for (i = 0; hdrs[i]; i++) {
        size_t n = strcspn(hdrs[i], ":");
        strcat(creq, hdrs[i]);
        strcat(creq, "\n");
        if (i)
            strcat(signed_headers, ";");
        strncat(signed_headers, hdrs[i], n);
    }
    strcat(creq, "\n");
    strcat(creq, signed_headers);
    strcat(creq, "\n");
    strcat(creq, bh);
    crypto_hash_sha256(d, (const unsigned char *)creq, strlen(creq));
    t_hex(d, 32, hx);
    snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", date8, region, service);
    snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, hx);
    snprintf(key, sizeof key, "AWS4%s", secret);
    t_hmac(k, (const unsigned char *)key, strlen(key), date8);
    t_hmac(k, k, 32, region);
    t_hmac(k, k, 32, service);
    t_hmac(k, k, 32, "aws4_request");
    t_hmac(d, k, 32, sts);
    t_hex(d, 32, sig);
}

/* Vectors of AWS's SigV4 test suite (and the IAM example of its docs). */
static const struct {
    const char *method, *query, *canon_query, *host, *ctype, *service, *sig;
} vectors[] = {
    { "GET", "", "", "example.amazonaws.com", NULL, "service",
      "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" }, /* get-vanilla */
    { "POST", "", "", "example.amazonaws.com", NULL, "service",
      "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b" }, /* post-vanilla */
    { "GET", "Param2=value2&Param1=value1", "Param1=value1&Param2=value2",
      "example.amazonaws.com", NULL, "service",
      "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500" },
    { "GET", "Action=ListUsers&Version=2010-05-08", "Action=ListUsers&Version=2010-05-08",
      "iam.amazonaws.com", "application/x-www-form-urlencoded; charset=utf-8", "iam",
      "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7" },
};

static void test_sigv4_vectors(void **state)
{
    const char *e3 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    struct faas_http_header h[3];
    struct faas_sigv4_in in;
    char sig[65], sh[256], scope[128], line_h[128], line_c[128];
    size_t i;
    (void)state;

    for (i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        const char *lines[4];
        size_t n = 0, k = 0;
        snprintf(line_h, sizeof line_h, "host:%s", vectors[i].host);
        if (vectors[i].ctype) {
            snprintf(line_c, sizeof line_c, "content-type:%s", vectors[i].ctype);
            lines[k++] = line_c;
        }
        lines[k++] = line_h;
        lines[k++] = "x-amz-date:20150830T123600Z";
        lines[k] = NULL;
        /* the test's signer */
        t_sign(vectors[i].method, "/", vectors[i].canon_query, lines, "", "20150830",
               "20150830T123600Z", "us-east-1", vectors[i].service, SECRET, sh, sig);
        assert_string_equal(sig, vectors[i].sig);
        /* the library's, from the headers as sent (mixed case, query raw) */
        if (vectors[i].ctype) {
            h[n].name = "Content-Type";
            h[n].value = vectors[i].ctype;
            n++;
        }
        h[n].name = "Host";
        h[n].value = vectors[i].host;
        n++;
        h[n].name = "X-Amz-Date";
        h[n].value = "20150830T123600Z";
        n++;
        for (k = 0; k < n; k++) {
            h[k].name_len = strlen(h[k].name);
            h[k].value_len = strlen(h[k].value);
        }
        snprintf(scope, sizeof scope, "20150830/us-east-1/%s/aws4_request",
                 vectors[i].service);
        memset(&in, 0, sizeof in);
        in.method = vectors[i].method;
        in.path = "/";
        in.query = vectors[i].query;
        in.headers = h;
        in.nheaders = n;
        in.signed_headers = sh;
        in.amz_date = "20150830T123600Z";
        in.scope = scope;
        in.payload_hash = e3;
        memset(sig, 0, sizeof sig);
        assert_int_equal(faas_sigv4_signature(&in, SECRET, sig), 0);
        assert_string_equal(sig, vectors[i].sig);
    }
    /* A malformed scope. */
    in.scope = "20150830/us-east-1/service";
    assert_int_equal(faas_sigv4_signature(&in, SECRET, sig), FAAS_EINVAL);
    /* Values trimmed and blanks folded; a name's values joined by ','. */
    {
        struct faas_http_header hv[3] = {
            { "Host", 4, "example.amazonaws.com", 21 },
            { "My-Header1", 10, "  value2 \t  value3  ", 20 },
            { "my-header1", 10, "value4", 6 },
        };
        const char *lines[] = { "host:example.amazonaws.com",
                                "my-header1:value2 value3,value4",
                                "x-amz-date:20150830T123600Z", NULL };
        struct faas_http_header all[4];
        char want[65];
        memcpy(all, hv, sizeof hv);
        all[3].name = "X-Amz-Date";
        all[3].name_len = 10;
        all[3].value = "20150830T123600Z";
        all[3].value_len = 16;
        t_sign("GET", "/a%2520b/c", "k=v%20w", lines, "", "20150830", "20150830T123600Z",
               "us-east-1", "service", SECRET, sh, want);
        in.method = "GET";
        in.path = "/a%20b/c";
        in.query = "k=v%20w";
        in.headers = all;
        in.nheaders = 4;
        in.signed_headers = sh;
        in.scope = "20150830/us-east-1/service/aws4_request";
        assert_int_equal(faas_sigv4_signature(&in, SECRET, sig), 0);
        assert_string_equal(sig, want);
    }
}

/* ==== the invocation types =============================================== */

static void test_request_response(void **state)
{
    static const char *const rr[] = { "X-Amz-Invocation-Type", "RequestResponse", NULL };
    struct tu_resp r;
    (void)state;

    serve(NULL);
    post(INVOKE("echo"), NULL, "{ \"a\" : [1, 2, {\"b\": \"c\"}] }", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "{\"a\":[1,2,{\"b\":\"c\"}]}");
    assert_string_equal(tu_resp_header(&r, "content-type"), "application/json");
    assert_string_equal(tu_resp_header(&r, "x-amz-executed-version"), "$LATEST");
    assert_true(is_uuid(tu_resp_header(&r, "x-amzn-requestid")));
    assert_null(tu_resp_header(&r, "x-amz-function-error"));
    assert_null(tu_resp_header(&r, "x-amz-log-result"));
    tu_resp_clear(&r);
    /* explicit type; any JSON value */
    post(INVOKE("echo"), rr, "\"hi\"", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "\"hi\"");
    tu_resp_clear(&r);
    /* an empty body is the event null */
    post(INVOKE("echo"), NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "null");
    tu_resp_clear(&r);
    /* two requests, two request ids */
    {
        char first[40];
        post(INVOKE("echo"), NULL, "1", &r);
        snprintf(first, sizeof first, "%s", tu_resp_header(&r, "x-amzn-requestid"));
        tu_resp_clear(&r);
        post(INVOKE("echo"), NULL, "1", &r);
        assert_string_not_equal(first, tu_resp_header(&r, "x-amzn-requestid"));
        tu_resp_clear(&r);
    }
    assert_int_equal(faas_http_pending_count(g_rt), 0);
}

static void test_event(void **state)
{
    static const char *const ev[] = { "X-Amz-Invocation-Type", "Event", NULL };
    struct tu_resp r;
    (void)state;

    serve(NULL);
    post(INVOKE("count"), ev, "{\"n\":7}", &r);
    assert_int_equal(r.code, 202);
    assert_int_equal(r.len, 0);
    assert_true(is_uuid(tu_resp_header(&r, "x-amzn-requestid")));
    assert_null(tu_resp_header(&r, "x-amz-executed-version"));
    tu_resp_clear(&r);
    /* it really runs, once, with the event */
    assert_true(tu_run_until(g_base, &g_counted, 1, BOUND_MS));
    tu_run_for(g_base, 20);
    assert_int_equal(g_counted, 1);
    assert_int_equal(json_integer_value(json_object_get(g_counted_event, "n")), 7);
    /* unknown function */
    post_error(INVOKE("nope"), ev, "{}", 404, "ResourceNotFoundException");
}

static void test_dry_run(void **state)
{
    static const char *const dry[] = { "X-Amz-Invocation-Type", "DryRun", NULL };
    struct tu_resp r;
    (void)state;

    serve(NULL);
    post(INVOKE("count"), dry, "{}", &r);
    assert_int_equal(r.code, 204);
    assert_int_equal(r.len, 0);
    assert_true(is_uuid(tu_resp_header(&r, "x-amzn-requestid")));
    tu_resp_clear(&r);
    post_error(INVOKE("nope"), dry, "{}", 404, "ResourceNotFoundException");
    tu_run_for(g_base, 20);
    assert_int_equal(g_counted, 0); /* nothing ran */
}

/* ==== results ============================================================= */

static void test_function_error(void **state)
{
    struct tu_resp r;
    json_t *j;
    (void)state;

    serve(NULL);
    post(INVOKE("fail"), NULL, "{}", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(tu_resp_header(&r, "x-amz-function-error"), "Unhandled");
    assert_string_equal(tu_resp_header(&r, "x-amz-executed-version"), "$LATEST");
    assert_true(is_uuid(tu_resp_header(&r, "x-amzn-requestid")));
    j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "errorType")), "Boom");
    assert_string_equal(json_string_value(json_object_get(j, "errorMessage")), "it failed");
    json_decref(j);
    tu_resp_clear(&r);
}

static void test_timeout(void **state)
{
    struct tu_resp r;
    json_t *j;
    (void)state;

    serve(NULL);
    post(INVOKE("sleepy"), NULL, "{}", &r); /* a THREAD handler over its 50 ms */
    assert_int_equal(r.code, 200);
    assert_string_equal(tu_resp_header(&r, "x-amz-function-error"), "Unhandled");
    j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "errorType")), "Sandbox.Timedout");
    assert_non_null(strstr(json_string_value(json_object_get(j, "errorMessage")),
                           "Task timed out after 0.05 seconds"));
    json_decref(j);
    tu_resp_clear(&r);
}

static void test_targets(void **state)
{
    static const struct {
        const char *uri;
        int code;
        const char *version; /* 200: X-Amz-Executed-Version; else the error type */
    } cases[] = {
        { INVOKE("echo"), 200, "$LATEST" },
        { INVOKE("arn:aws:lambda:us-east-1:123456789012:function:echo"), 200, "$LATEST" },
        { INVOKE("arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aecho"), 200,
          "$LATEST" },
        { INVOKE("123456789012:function:echo"), 200, "$LATEST" },
        { INVOKE("echo:7"), 200, "7" },
        { INVOKE("echo%3A12"), 200, "12" },
        { INVOKE("arn:aws:lambda:eu-west-1:123456789012:function:echo:3"), 200, "3" },
        { INVOKE("123456789012:function:echo:$LATEST"), 200, "$LATEST" },
        { INVOKE("echo") "?Qualifier=5", 200, "5" },
        { INVOKE("echo") "?Qualifier=%24LATEST", 200, "$LATEST" },
        { INVOKE("echo") "?Qualifier=prod", 200, "$LATEST" }, /* an alias */
        { INVOKE("echo:5") "?Qualifier=5", 200, "5" },
        { INVOKE("echo:5") "?Qualifier=6", 400, "InvalidParameterValueException" },
        { INVOKE("nope"), 404, "ResourceNotFoundException" },
        { INVOKE("arn:aws:lambda:us-east-1:123456789012:function:nope"), 404,
          "ResourceNotFoundException" },
        { INVOKE("123456789012:function:nope:2"), 404, "ResourceNotFoundException" },
        { INVOKE("bad%20name"), 400, "ValidationException" },
        { INVOKE("arn:aws:s3:::bucket"), 400, "ValidationException" },
        { INVOKE("a:b:c:d"), 400, "ValidationException" },
        { INVOKE("echo:bad.qualifier"), 400, "ValidationException" },
        { INVOKE("echo%00x"), 400, "ValidationException" },
        { INVOKE("echo/configuration"), 404, "UnknownOperationException" },
        { "/2015-03-31/functions/echo", 404, "UnknownOperationException" },
        { "/2015-03-31/functions/", 404, "UnknownOperationException" },
        { "/2015-03-31/functions//invocations", 404, "UnknownOperationException" },
    };
    struct tu_resp r;
    char msg[512];
    size_t i;
    (void)state;

    serve(NULL);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        post(cases[i].uri, NULL, "{\"k\":1}", &r);
        if (r.code != cases[i].code)
            fail_msg("%s: %d, want %d: %s", cases[i].uri, r.code, cases[i].code, r.body);
        if (r.code == 200) {
            assert_string_equal(r.body, "{\"k\":1}");
            assert_string_equal(tu_resp_header(&r, "x-amz-executed-version"), cases[i].version);
        } else {
            expect_error(&r, cases[i].code, cases[i].version);
        }
        tu_resp_clear(&r);
    }
    /* The message names the function as an ARN, as Lambda's does. */
    post(INVOKE("nope:4"), NULL, "{}", &r);
    assert_string_equal(jmsg(&r, msg, sizeof msg),
                        "Function not found: arn:aws:lambda:local:000000000000:function:nope:4");
    tu_resp_clear(&r);
    /* Only POST is Invoke. */
    request_on(g_port, EVHTTP_REQ_GET, INVOKE("echo"), NULL, NULL, 0, &r);
    expect_error(&r, 404, "UnknownOperationException");
    tu_resp_clear(&r);
    request_on(g_port, EVHTTP_REQ_PUT, INVOKE("echo"), NULL, "{}", 2, &r);
    expect_error(&r, 404, "UnknownOperationException");
    tu_resp_clear(&r);
}

static void test_throttled(void **state)
{
    struct evhttp_connection *c;
    struct tu_resp first, r;
    char msg[256];
    json_t *j;
    (void)state;

    serve(NULL);
    /* The first holds the only instance (max_concurrency 1, max_queue 0). */
    c = tu_http_start(g_base, g_port, EVHTTP_REQ_POST, INVOKE("gated"), NULL, "{}", 2, &first);
    assert_true(run_until_atomic(&g_started, 1));
    assert_int_equal(faas_http_pending_count(g_rt), 1);
    post(INVOKE("gated"), NULL, "{}", &r);
    expect_error(&r, 429, "TooManyRequestsException");
    assert_string_equal(tu_resp_header(&r, "retry-after"), "1");
    assert_string_equal(jmsg(&r, msg, sizeof msg), "Rate Exceeded.");
    j = json_loadb(r.body, r.len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "Reason")),
                        "ReservedFunctionConcurrentInvocationLimitExceeded");
    json_decref(j);
    tu_resp_clear(&r);
    tu_gate_open(&g_mu, &g_cv, &g_open);
    assert_true(tu_run_until(g_base, &first.done, 1, BOUND_MS));
    assert_int_equal(first.code, 200);
    assert_string_equal(first.body, "\"gated\"");
    tu_resp_clear(&first);
    evhttp_connection_free(c);
    assert_int_equal(faas_http_pending_count(g_rt), 0);
}

/* body = a JSON string of exactly n bytes, "aa...a". */
static const char *quoted_string(char *body, size_t n)
{
    memset(body, 'a', n);
    body[0] = '"';
    body[n - 1] = '"';
    body[n] = '\0';
    return body;
}

static void test_limits(void **state)
{
    static const char *const ev[] = { "X-Amz-Invocation-Type", "Event", NULL };
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    char body[128], msg[256];
    struct tu_resp r;
    (void)state;

    o.invoke_api = 1;
    o.max_sync_payload = 64;
    o.max_async_payload = 32;
    serve(&o);
    /* a JSON string of exactly 64 bytes, then 65 */
    post(INVOKE("echo"), NULL, quoted_string(body, 64), &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
    post(INVOKE("echo"), NULL, quoted_string(body, 65), &r);
    expect_error(&r, 413, "RequestTooLargeException");
    assert_string_equal(jmsg(&r, msg, sizeof msg),
                        "Request must be smaller than 64 bytes for the InvokeFunction operation");
    tu_resp_clear(&r);
    /* Event: its own limit, before parsing */
    post(INVOKE("count"), ev, quoted_string(body, 32), &r);
    assert_int_equal(r.code, 202);
    tu_resp_clear(&r);
    post_error(INVOKE("count"), ev, quoted_string(body, 33), 413, "RequestTooLargeException");
    /* not even JSON, over the limit: 413 first */
    memset(body, '{', 100);
    body[100] = '\0';
    post_error(INVOKE("echo"), NULL, body, 413, "RequestTooLargeException");
}

static void test_bad_requests(void **state)
{
    static const char *const bogus_type[] = { "X-Amz-Invocation-Type", "Later", NULL };
    static const char *const bogus_log[] = { "X-Amz-Log-Type", "Everything", NULL };
    static const char *const none_log[] = { "X-Amz-Log-Type", "None", NULL };
    static const char *const utf8_log[] = { "X-Amz-Log-Type", "Tr\xc3\xa8s\xff", NULL };
    struct tu_resp r;
    char msg[512];
    (void)state;

    serve(NULL);
    post(INVOKE("echo"), NULL, "{\"a\":", &r);
    expect_error(&r, 400, "InvalidRequestContentException");
    assert_non_null(strstr(jmsg(&r, msg, sizeof msg), "Could not parse request body into json"));
    tu_resp_clear(&r);
    post_error(INVOKE("echo"), NULL, "not json", 400, "InvalidRequestContentException");
    /* not UTF-8 */
    post_error(INVOKE("echo"), NULL, "\"\xff\"", 400, "InvalidRequestContentException");
    post_error(INVOKE("echo"), bogus_type, "{}", 400, "InvalidParameterValueException");
    post_error(INVOKE("echo"), bogus_log, "{}", 400, "InvalidParameterValueException");
    /* the message quotes the header: UTF-8 kept, the stray byte U+FFFD */
    post(INVOKE("echo"), utf8_log, "{}", &r);
    expect_error(&r, 400, "InvalidParameterValueException");
    assert_string_equal(jmsg(&r, msg, sizeof msg),
                        "Unsupported log type: Tr\xc3\xa8s\xef\xbf\xbd (None or Tail)");
    tu_resp_clear(&r);
    post(INVOKE("echo"), none_log, "{}", &r);
    assert_int_equal(r.code, 200);
    assert_null(tu_resp_header(&r, "x-amz-log-result"));
    tu_resp_clear(&r);
    /* an idempotent function without its key */
    post_error(INVOKE("idem"), NULL, "{}", 400, "InvalidRequestContentException");
    post(INVOKE("idem"), NULL, "{\"id\":\"k1\"}", &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
    assert_int_equal(faas_http_pending_count(g_rt), 0);
}

/* ==== X-Amz-Log-Type: Tail ================================================ */

static char *decode_log(const struct tu_resp *r, size_t *len)
{
    const char *b64 = tu_resp_header(r, "x-amz-log-result");
    size_t cap;
    char *out;
    assert_non_null(b64);
    cap = strlen(b64);
    out = malloc(cap + 1);
    assert_int_equal(sodium_base642bin((unsigned char *)out, cap, b64, strlen(b64), NULL, len,
                                       NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    out[*len] = '\0';
    return out;
}

/* The text ends with END and REPORT lines of this request. */
static void expect_trailer(const char *text, size_t len, const char *reqid)
{
    char end[128];
    const char *rep = strstr(text, "REPORT RequestId: ");
    assert_non_null(rep);
    assert_true(len > 0 && text[len - 1] == '\n');
    assert_true(strchr(rep, '\n') == text + len - 1); /* the last line */
    assert_non_null(strstr(rep, reqid));
    assert_non_null(strstr(rep, "\tDuration: "));
    assert_non_null(strstr(rep, "\tBilled Duration: "));
    snprintf(end, sizeof end, "END RequestId: %s\nREPORT RequestId: %s\t", reqid, reqid);
    assert_non_null(strstr(text, end));
}

static void test_log_tail(void **state)
{
    static const char *const tail[] = { "X-Amz-Log-Type", "Tail", NULL };
    struct tu_resp r;
    char *text;
    size_t len;
    (void)state;

    serve(NULL);
    post(INVOKE("log"), tail, "{\"lines\":2,\"size\":3}", &r);
    assert_int_equal(r.code, 200);
    text = decode_log(&r, &len);
    assert_true(strncmp(text, "line 0 xxx\nline 1 xxx\nEND RequestId: ", 37) == 0);
    expect_trailer(text, len, tu_resp_header(&r, "x-amzn-requestid"));
    free(text);
    tu_resp_clear(&r);

    /* > 4 KiB of lines: the last 4096 bytes, the trailer whole */
    post(INVOKE("log"), tail, "{\"lines\":40,\"size\":200}", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "\"logged\"");
    text = decode_log(&r, &len);
    assert_int_equal(len, FAAS_LOG_TAIL_MAX);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "line 39 xxxx"));
    assert_null(strstr(text, "line 0 "));
    expect_trailer(text, len, tu_resp_header(&r, "x-amzn-requestid"));
    free(text);
    tu_resp_clear(&r);

    /* a function error keeps its tail */
    post(INVOKE("fail"), tail, "{}", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(tu_resp_header(&r, "x-amz-function-error"), "Unhandled");
    text = decode_log(&r, &len);
    assert_true(strncmp(text, "about to fail\nEND RequestId: ", 29) == 0);
    free(text);
    tu_resp_clear(&r);

    /* no Tail, no log */
    post(INVOKE("log"), NULL, "{\"lines\":2,\"size\":3}", &r);
    assert_int_equal(r.code, 200);
    assert_null(tu_resp_header(&r, "x-amz-log-result"));
    tu_resp_clear(&r);
}

/* ==== X-Amz-Client-Context ================================================ */

static void test_client_context(void **state)
{
    const char *cc_json = "{\"custom\":{\"k\":\"v\"},\"env\":{\"platform\":\"test\"}}";
    char b64[256], notobj[16];
    const char *hdrs[] = { "X-Amz-Client-Context", b64, NULL };
    struct tu_resp r;
    json_t *j;
    (void)state;

    serve(NULL);
    sodium_bin2base64(b64, sizeof b64, (const unsigned char *)cc_json, strlen(cc_json),
                      sodium_base64_VARIANT_ORIGINAL);
    post(INVOKE("cc"), hdrs, "{}", &r);
    assert_int_equal(r.code, 200);
    j = json_loadb(r.body, r.len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "custom"), "k")),
                        "v");
    json_decref(j);
    tu_resp_clear(&r);
    /* none */
    post(INVOKE("cc"), NULL, "{}", &r);
    assert_string_equal(r.body, "\"none\"");
    tu_resp_clear(&r);
    /* not base64; base64 of something that is not a JSON object */
    snprintf(b64, sizeof b64, "%s", "!!not base64!!");
    post_error(INVOKE("cc"), hdrs, "{}", 400, "InvalidRequestContentException");
    sodium_bin2base64(notobj, sizeof notobj, (const unsigned char *)"[1]", 3,
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(b64, sizeof b64, "%s", notobj);
    post_error(INVOKE("cc"), hdrs, "{}", 400, "InvalidRequestContentException");
}

/* ==== SigV4 on the wire ===================================================== */

struct signed_req {
    char amz_date[17], date8[9], auth[512], signed_headers[256], sig[65], host[64];
    const char *hdrs[16];
};

/* Signs a POST as the AWS SDKs do: host, x-amz-date and the Lambda headers. */
static void sign_post(struct signed_req *s, const char *canon_uri, const char *canon_query,
                      const char *body, const char *akid, const char *secret, time_t when)
{
    char lh[96], ld[64];
    const char *lines[4];
    struct tm tm;

    gmtime_r(&when, &tm);
    strftime(s->amz_date, sizeof s->amz_date, "%Y%m%dT%H%M%SZ", &tm);
    memcpy(s->date8, s->amz_date, 8);
    s->date8[8] = '\0';
    snprintf(s->host, sizeof s->host, "127.0.0.1:%u", (unsigned)g_port);
    snprintf(lh, sizeof lh, "host:%s", s->host);
    snprintf(ld, sizeof ld, "x-amz-date:%s", s->amz_date);
    lines[0] = lh;
    lines[1] = "x-amz-invocation-type:RequestResponse";
    lines[2] = ld;
    lines[3] = NULL;
    t_sign("POST", canon_uri, canon_query, lines, body, s->date8, s->amz_date, "us-east-1",
           "lambda", secret, s->signed_headers, s->sig);
    snprintf(s->auth, sizeof s->auth,
             "AWS4-HMAC-SHA256 Credential=%s/%s/us-east-1/lambda/aws4_request, "
             "SignedHeaders=%s, Signature=%s",
             akid, s->date8, s->signed_headers, s->sig);
    s->hdrs[0] = "Host";
    s->hdrs[1] = s->host;
    s->hdrs[2] = "X-Amz-Date";
    s->hdrs[3] = s->amz_date;
    s->hdrs[4] = "X-Amz-Invocation-Type";
    s->hdrs[5] = "  RequestResponse "; /* trimmed by the canonical form */
    s->hdrs[6] = "Authorization";
    s->hdrs[7] = s->auth;
    s->hdrs[8] = "User-Agent";
    s->hdrs[9] = "not signed";
    s->hdrs[10] = NULL;
}

static void test_sigv4(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    static const char *const uri_arn =
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Aecho"
        "/invocations?Qualifier=%24LATEST";
    static const char *const canon_arn =
        "/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1%253A000000000000%253A"
        "function%253Aecho/invocations";
    static const char *const body = "{\"signed\":true}";
    struct signed_req s;
    struct tu_resp r;
    time_t now = time(NULL);
    (void)state;

    o.invoke_api = 1;
    o.access_key_id = AKID;
    o.secret_access_key = SECRET;
    serve(&o);

    /* accepted: a plain name, then an ARN (encoded twice) with a query */
    sign_post(&s, INVOKE("echo"), "", body, AKID, SECRET, now);
    post(INVOKE("echo"), s.hdrs, body, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, body);
    tu_resp_clear(&r);
    sign_post(&s, canon_arn, "Qualifier=%24LATEST", body, AKID, SECRET, now);
    post(uri_arn, s.hdrs, body, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, body);
    tu_resp_clear(&r);
    /* the same, with x-amz-content-sha256 (not signed here: only checked) */
    {
        char hash[65];
        unsigned char d[32];
        crypto_hash_sha256(d, (const unsigned char *)body, strlen(body));
        t_hex(d, 32, hash);
        sign_post(&s, INVOKE("echo"), "", body, AKID, SECRET, now);
        s.hdrs[10] = "X-Amz-Content-Sha256";
        s.hdrs[11] = hash;
        s.hdrs[12] = NULL;
        post(INVOKE("echo"), s.hdrs, body, &r);
        assert_int_equal(r.code, 200);
        tu_resp_clear(&r);
        s.hdrs[11] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        post(INVOKE("echo"), s.hdrs, body, &r);
        expect_error(&r, 403, "InvalidSignatureException");
        tu_resp_clear(&r);
    }

    /* tampered: the body, the path, a signed header, the signature */
    sign_post(&s, INVOKE("echo"), "", body, AKID, SECRET, now);
    post_error(INVOKE("echo"), s.hdrs, "{\"signed\":false}", 403, "InvalidSignatureException");
    post_error(INVOKE("count"), s.hdrs, body, 403, "InvalidSignatureException");
    s.hdrs[5] = "Event";
    post_error(INVOKE("echo"), s.hdrs, body, 403, "InvalidSignatureException");
    assert_int_equal(g_counted, 0);
    sign_post(&s, INVOKE("echo"), "", body, AKID, "wrong secret", now);
    post_error(INVOKE("echo"), s.hdrs, body, 403, "InvalidSignatureException");

    /* an unknown key id; too old; no signature at all; a malformed one */
    sign_post(&s, INVOKE("echo"), "", body, "AKIDOTHER", SECRET, now);
    post_error(INVOKE("echo"), s.hdrs, body, 403, "UnrecognizedClientException");
    sign_post(&s, INVOKE("echo"), "", body, AKID, SECRET, now - 3600);
    post_error(INVOKE("echo"), s.hdrs, body, 403, "InvalidSignatureException");
    post_error(INVOKE("echo"), NULL, body, 403, "MissingAuthenticationTokenException");
    sign_post(&s, INVOKE("echo"), "", body, AKID, SECRET, now);
    s.hdrs[7] = "AWS4-HMAC-SHA256 Credential=" AKID;
    post_error(INVOKE("echo"), s.hdrs, body, 400, "IncompleteSignatureException");
    /* unknown operations are refused the same way before being looked at */
    post_error("/2015-03-31/functions/", NULL, NULL, 403, "MissingAuthenticationTokenException");
    assert_int_equal(g_counted, 0);
}

static void test_sigv4_not_required(void **state)
{
    static const char *const auth[] = {
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=AKIDANY/20200101/us-east-1/lambda/aws4_request, "
        "SignedHeaders=host, Signature=0000",
        NULL
    };
    struct tu_resp r;
    (void)state;

    serve(NULL); /* no key pair: any Authorization is accepted as it is */
    post(INVOKE("echo"), auth, "{}", &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
}

/* ==== invoke_api = 0 ========================================================= */

/* A runtime with a route on the Invoke API's own path, serving on g_port. */
static void serve_over_route(const struct faas_runtime_opts *extra)
{
    rt_start(extra);
    assert_true(faas_map(g_rt, "api:POST /2015-03-31/functions/{name}/invocations", "echo",
                         NULL) >= 0);
    assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", 0), 0);
    g_port = faas_http_port(g_rt);
}

static void test_invoke_api_over_routes(void **state)
{
    struct tu_resp r;
    (void)state;

    /* The Invoke API wins over a route on the same path. */
    serve_over_route(NULL);
    post(INVOKE("echo"), NULL, "{\"x\":1}", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "{\"x\":1}");
    assert_string_equal(tu_resp_header(&r, "x-amz-executed-version"), "$LATEST");
    tu_resp_clear(&r);
}

static void test_invoke_api_off(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct tu_resp r;
    json_t *j;
    (void)state;

    /* Off: the route serves it, as any route. */
    o.invoke_api = 0;
    serve_over_route(&o);
    post(INVOKE("echo"), NULL, "{\"x\":1}", &r);
    assert_int_equal(r.code, 200);
    j = json_loadb(r.body, r.len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "routeKey")),
                        "POST /2015-03-31/functions/{name}/invocations");
    json_decref(j);
    assert_null(tu_resp_header(&r, "x-amz-executed-version"));
    tu_resp_clear(&r);
    /* and a path no route matches is the routes' 404 */
    post(INVOKE("echo") "/more", NULL, "{}", &r);
    assert_int_equal(r.code, 404);
    assert_null(tu_resp_header(&r, "x-amzn-errortype"));
    assert_string_equal(r.body, "{\"message\":\"Not Found\"}");
    tu_resp_clear(&r);
}

/* ==== the defaults =========================================================== */

/* With the defaults (no options at all, then FAAS_RUNTIME_OPTS_INIT) the
 * gateway serves routes, bound or attached, and the Invoke API's path is an
 * unmatched path: 404, and the function does not run. */
static void expect_default_off(uint16_t port)
{
    struct tu_resp r;

    request_on(port, EVHTTP_REQ_POST, "/hello", NULL, "{}", 2, &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
    assert_int_equal(g_counted, 1);
    request_on(port, EVHTTP_REQ_POST, INVOKE("count"), NULL, "{}", 2, &r);
    assert_int_equal(r.code, 404);
    assert_null(tu_resp_header(&r, "x-amzn-errortype"));
    assert_string_equal(r.body, "{\"message\":\"Not Found\"}");
    tu_resp_clear(&r);
    assert_int_equal(g_counted, 1);
}

static void test_invoke_api_default_off(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct evhttp *host;
    struct evhttp_bound_socket *sock;
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    (void)state;

    fo.isolation = FAAS_ISOLATION_INLINE;
    /* bound, NULL options */
    assert_int_equal(faas_runtime_new(&g_rt, g_base, NULL), 0);
    assert_int_equal(g_rt->opts.invoke_api, 0);
    assert_int_equal(faas_register(g_rt, "count", h_count, &fo), 0);
    assert_true(faas_map(g_rt, "api:POST /hello", "count", NULL) >= 0);
    assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", 0), 0);
    expect_default_off(faas_http_port(g_rt));
    faas_runtime_free(g_rt);
    g_rt = NULL;

    /* attached, the _INIT options */
    g_counted = 0;
    host = evhttp_new(g_base);
    assert_non_null(host);
    sock = evhttp_bind_socket_with_handle(host, "127.0.0.1", 0);
    assert_non_null(sock);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&a, &al),
                     0);
    o.zygote = 0;
    assert_int_equal(faas_runtime_new(&g_rt, g_base, &o), 0);
    assert_int_equal(faas_register(g_rt, "count", h_count, &fo), 0);
    assert_true(faas_map(g_rt, "api:POST /hello", "count", NULL) >= 0);
    assert_int_equal(faas_http_attach(g_rt, host), 0);
    expect_default_off(ntohs(a.sin_port));
    faas_runtime_free(g_rt);
    g_rt = NULL;
    evhttp_free(host);
}

/* ==== body limits ============================================================= */

/* A JSON string of n bytes in all (quotes included); the caller frees it. */
static char *big_string(size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, 'x', n);
    s[0] = '"';
    s[n - 1] = '"';
    s[n] = '\0';
    return s;
}

static void test_body_limits(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    size_t limit = 256u * 1024u;
    char *body;
    struct tu_resp r;
    (void)state;

    /* Routes take 1 KiB, the Invoke API max_sync_payload: each its own. */
    o.invoke_api = 1;
    o.http_max_body = 1024;
    o.max_sync_payload = limit;
    rt_start(&o);
    assert_true(faas_map(g_rt, "api:POST /small", "echo", NULL) >= 0);
    assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", 0), 0);
    g_port = faas_http_port(g_rt);

    body = big_string(2048);
    post("/small", NULL, body, &r);
    assert_int_equal(r.code, 413);
    assert_string_equal(r.body, "{\"message\":\"Request Entity Too Large\"}");
    tu_resp_clear(&r);
    free(body);

    body = big_string(limit);
    post(INVOKE("echo"), NULL, body, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.len, limit);
    assert_memory_equal(r.body, body, limit);
    tu_resp_clear(&r);
    free(body);

    body = big_string(limit + 1);
    post(INVOKE("echo"), NULL, body, &r);
    expect_error(&r, 413, "RequestTooLargeException");
    tu_resp_clear(&r);
    free(body);
}

/* ==== NUL in strings ============================================================ */

static void test_nul_strings(void **state)
{
    static const char body[] = "{\"s\":\"a\\u0000b\"}";
    static const char *const fns[] = { INVOKE("echo"), INVOKE("techo") };
    struct tu_resp r;
    size_t i;
    json_t *j;
    (void)state;

    serve(NULL);
    for (i = 0; i < 2; i++) {
        post(fns[i], NULL, body, &r);
        assert_int_equal(r.code, 200);
        j = json_loadb(r.body, r.len, JSON_ALLOW_NUL, NULL);
        assert_non_null(j);
        assert_int_equal(json_string_length(json_object_get(j, "s")), 3);
        assert_memory_equal(json_string_value(json_object_get(j, "s")), "a\0b", 3);
        json_decref(j);
        tu_resp_clear(&r);
    }
}

/* ==== draining ================================================================== */

static void test_draining(void **state)
{
    struct tu_resp r;
    (void)state;

    serve(NULL);
    post(INVOKE("echo"), NULL, "{}", &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
    g_rt->draining = 1;
    faas_http_drain(g_rt);
    post(INVOKE("count"), NULL, "{}", &r);
    expect_error(&r, 503, "ServiceException");
    assert_string_equal(tu_resp_header(&r, "connection"), "close");
    tu_resp_clear(&r);
    assert_int_equal(g_counted, 0);
}

/* ==== lifetimes ================================================================ */

static const char raw_req[] = "POST " INVOKE("gated") " HTTP/1.1\r\nHost: x\r\n"
                              "Content-Length: 2\r\n\r\n{}";

static int gated_done(const void *arg)
{
    struct faas_stats st;
    (void)arg;
    return faas_stats(g_rt, "gated", &st) == 0 && st.invocations == 1;
}

static void test_client_gone(void **state)
{
    struct tu_resp r;
    int fd;
    (void)state;

    serve(NULL);
    fd = tu_raw_send(g_port, raw_req);
    assert_true(run_until_atomic(&g_started, 1));
    assert_int_equal(faas_http_pending_count(g_rt), 1);
    close(fd);
    tu_run_for(g_base, 20);
    tu_gate_open(&g_mu, &g_cv, &g_open);
    /* the result comes and finds nobody */
    assert_true(tu_run_until_pred(g_base, gated_done, NULL, BOUND_MS));
    tu_run_for(g_base, 20);
    assert_int_equal(faas_http_pending_count(g_rt), 0);
    /* and the gateway still serves */
    post(INVOKE("gated"), NULL, "{}", &r);
    assert_int_equal(r.code, 200);
    tu_resp_clear(&r);
}

static void test_client_gone_then_free(void **state)
{
    int fd;
    (void)state;

    serve(NULL);
    fd = tu_raw_send(g_port, raw_req);
    assert_true(run_until_atomic(&g_started, 1));
    close(fd);
    tu_run_for(g_base, 20);
    faas_runtime_free(g_rt); /* cancels the gated handler, which returns */
    g_rt = NULL;
}

static void test_freed_while_pending(void **state)
{
    struct evhttp *host = evhttp_new(g_base);
    struct evhttp_bound_socket *sock;
    struct evhttp_connection *c;
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    char reqid[40];
    struct tu_resp r;
    (void)state;

    /* On the host's server, which outlives the runtime: the client sees 503. */
    assert_non_null(host);
    sock = evhttp_bind_socket_with_handle(host, "127.0.0.1", 0);
    assert_non_null(sock);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&a, &al),
                     0);
    rt_start(NULL);
    assert_int_equal(faas_http_attach(g_rt, host), 0);
    c = tu_http_start(g_base, ntohs(a.sin_port), EVHTTP_REQ_POST, INVOKE("gated"), NULL, "{}", 2,
                      &r);
    assert_true(run_until_atomic(&g_started, 1));
    assert_int_equal(faas_http_pending_count(g_rt), 1);
    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_true(tu_run_until(g_base, &r.done, 1, BOUND_MS));
    expect_error(&r, 503, "ServiceException");
    snprintf(reqid, sizeof reqid, "%s", tu_resp_header(&r, "x-amzn-requestid"));
    assert_true(is_uuid(reqid));
    tu_resp_clear(&r);
    evhttp_connection_free(c);
    /* the host's server is its own again: the path is nobody's */
    request_on(ntohs(a.sin_port), EVHTTP_REQ_POST, INVOKE("echo"), NULL, "{}", 2, &r);
    assert_int_equal(r.code, 404);
    tu_resp_clear(&r);
    evhttp_free(host);
}

static void test_freed_while_pending_own(void **state)
{
    struct evhttp_connection *c;
    struct tu_resp r;
    (void)state;

    /* On a server of our own, freed with it: nothing leaks or is touched,
     * and the client sees its connection end (or the 503, if it was sent
     * before the server went). */
    serve(NULL);
    c = tu_http_start(g_base, g_port, EVHTTP_REQ_POST, INVOKE("gated"), NULL, "{}", 2, &r);
    assert_true(run_until_atomic(&g_started, 1));
    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_true(tu_run_until(g_base, &r.done, 1, BOUND_MS));
    assert_true(r.code == 503 || r.code <= 0);
    tu_resp_clear(&r);
    evhttp_connection_free(c);
}

/* ==== out of memory ========================================================= */

/*
 * Under an injected failure a reply is the success, or an AWS error: 500
 * ServiceException, or 400 when jansson reports its failure as a parse
 * error (it does not always tell out of memory apart).
 */
static void expect_oom_reply(const struct tu_raw_resp *r, const char *ok, int n)
{
    char want[32];
    snprintf(want, sizeof want, "HTTP/1.1 %s ", ok);
    if (strncmp(r->buf, want, strlen(want)) != 0 &&
        !(strncmp(r->buf, "HTTP/1.1 500 ", 13) == 0 &&
          strcasestr(r->buf, "\r\nx-amzn-ErrorType: ServiceException\r\n")) &&
        !(strncmp(r->buf, "HTTP/1.1 400 ", 13) == 0 &&
          strcasestr(r->buf, "\r\nx-amzn-ErrorType: InvalidRequestContentException\r\n")))
        fail_msg("allocation %d failing: %s", n, r->buf);
    assert_non_null(strcasestr(r->buf, "\r\nx-amzn-RequestId: "));
}

static void test_out_of_memory(void **state)
{
    static const char *const sync_body = "{\"lines\":3,\"size\":5}";
    const char *cc_json = "{\"custom\":{\"k\":\"v\"}}";
    char cc[128], req[4096], sync_req[4096];
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct signed_req sr;
    struct tu_raw_resp r;
    long left = -1;
    int n;
    (void)state;

    /* Every allocation of the library and of jansson fails in turn while a
     * signed RequestResponse (Tail, client context, query) and an Event
     * are served: each still gets a well-formed reply, nothing leaks. */
    sodium_bin2base64(cc, sizeof cc, (const unsigned char *)cc_json, strlen(cc_json),
                      sodium_base64_VARIANT_ORIGINAL);
    o.invoke_api = 1;
    o.access_key_id = AKID;
    o.secret_access_key = SECRET;
    o.zygote = 0;
    fo.isolation = FAAS_ISOLATION_INLINE;
    json_set_alloc_funcs(faas_malloc, free);
    for (n = 0; n < 5000; n++) {
        if (n > 0) {
            event_base_free(g_base);
            g_base = event_base_new();
        }
        assert_int_equal(faas_runtime_new(&g_rt, g_base, &o), 0);
        assert_int_equal(faas_register(g_rt, "log", h_log, &fo), 0);
        assert_int_equal(faas_register(g_rt, "count", h_count, &fo), 0);
        assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", 0), 0);
        g_port = faas_http_port(g_rt);
        sign_post(&sr, INVOKE("log"), "Qualifier=3", sync_body, AKID, SECRET, time(NULL));
        snprintf(sync_req, sizeof sync_req,
                 "POST " INVOKE("log") "?Qualifier=3 HTTP/1.1\r\nHost: %s\r\n"
                 "X-Amz-Date: %s\r\nX-Amz-Invocation-Type: RequestResponse\r\n"
                 "Authorization: %s\r\nX-Amz-Log-Type: Tail\r\n"
                 "X-Amz-Client-Context: %s\r\nContent-Length: %zu\r\n\r\n%s",
                 sr.host, sr.amz_date, sr.auth, cc, strlen(sync_body), sync_body);
        snprintf(req, sizeof req,
                 "POST " INVOKE("count") " HTTP/1.1\r\nHost: x\r\n"
                 "X-Amz-Invocation-Type: Event\r\nContent-Length: 2\r\n\r\n{}");

        atomic_store(&faas_alloc_fail_countdown, n);
        tu_raw_exchange(g_base, g_port, sync_req, &r, BOUND_MS);
        expect_oom_reply(&r, "200", n);
        faas_runtime_free(g_rt); /* Event needs no key pair: a runtime of its own */
        o.access_key_id = o.secret_access_key = NULL;
        left = atomic_exchange(&faas_alloc_fail_countdown, -1);
        assert_int_equal(faas_runtime_new(&g_rt, g_base, &o), 0);
        assert_int_equal(faas_register(g_rt, "count", h_count, &fo), 0);
        assert_int_equal(faas_http_bind(g_rt, "127.0.0.1", 0), 0);
        g_port = faas_http_port(g_rt);
        atomic_store(&faas_alloc_fail_countdown, left);
        tu_raw_exchange(g_base, g_port, req, &r, BOUND_MS);
        expect_oom_reply(&r, "202", n);
        left = atomic_exchange(&faas_alloc_fail_countdown, -1);
        faas_runtime_free(g_rt); /* ends the event, if queued */
        g_rt = NULL;
        o.access_key_id = AKID;
        o.secret_access_key = SECRET;
        if (left >= 0)
            break; /* no allocation failed: every one has been tried */
    }
    json_set_alloc_funcs(malloc, free);
    assert_true(n > 10);
    assert_true(n < 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigv4_vectors),
        cmocka_unit_test_setup_teardown(test_request_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_function_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigv4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigv4_not_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invoke_api_over_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invoke_api_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invoke_api_default_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_then_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freed_while_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freed_while_pending_own, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
    };
    if (sodium_init() < 0)
        return 1;
    /* An HTTP server's writes to a client that has gone raise SIGPIPE, as
     * for any evhttp server: the host ignores it (docs/threading.md). */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * lambda_api.c - Lambda's Invoke API (2015-03-31) on the HTTP gateway.
 *
 * http.c hands over every request under /2015-03-31/functions/ before it
 * matches a route (unless rt->opts.invoke_api is 0). The one operation is
 * Invoke: POST /2015-03-31/functions/{FunctionName}/invocations, where
 * {FunctionName} (percent-encoded) is a name, a partial ARN
 * "ACCOUNT:function:NAME" or a full ARN
 * "arn:aws:lambda:REGION:ACCOUNT:function:NAME", each with an optional
 * ":QUALIFIER", which the Qualifier query parameter may also give. The
 * headers, statuses, error types and bodies are Lambda's; where libfaas has
 * no counterpart (versions, aliases, accounts) docs/lambda-compat.md says
 * what is done instead.
 *
 * InvokeWithResponseStream (2021-11-15): POST
 * /2021-11-15/functions/{FunctionName}/response-streaming-invocations,
 * the same target, headers and checks, invocation types RequestResponse
 * and DryRun; the reply is an event stream as the handler writes
 * (http_stream.c), and a refusal is answered as Invoke answers it.
 *
 * X-Amz-Invocation-Type: RequestResponse (the default) is held by the
 * gateway until its result (struct faas_http_hold, the machinery the routes
 * use): a client that goes away only clears the record's request, and at
 * teardown the gateway answers it 503 (faas_invoke_api_unavailable) and
 * orphans it, so the late result finds nobody to answer and frees the
 * record. Event goes to faas_invoke_async and is answered 202 at once;
 * DryRun only looks the function up (204).
 *
 * Per request: one walk over the headers, the body parsed once and handed
 * to faas_invoke_fn (the parsed event is nobody else's, so it needs neither
 * the copy nor the size walk of faas_invoke: Lambda's payload limits are on
 * the body's bytes, checked before parsing), one request id, no system
 * call. Error replies are built without allocating.
 *
 * With rt->opts.access_key_id and rt->opts.secret_access_key both set,
 * every request must carry an AWS Signature Version 4 Authorization header
 * made with that key pair, checked before anything else about the request
 * (the pure signer and the header's parsing are sigv4.c's, shared with the
 * tests). Without them an Authorization header is ignored.
 *
 * Everything runs on the loop thread; the whole request runs inside
 * faas_rt_enter/faas_rt_leave, so a faas_runtime_free from a callback it
 * triggers (an idempotency store, a log record) waits until it is answered.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>

#include "faas_int.h"
#include "http.h"
#include "sigv4.h"

#define API_PREFIX "/2015-03-31/functions/"
#define API_OP "/invocations"
#define STREAM_PREFIX "/2021-11-15/functions/"
#define STREAM_OP "/response-streaming-invocations"

/* A decoded {FunctionName}: a full ARN (170 bytes) and a qualifier. */
#define FUNCTION_ARG_MAX 320
/* Lambda's limit of X-Amz-Client-Context, in base64 characters. */
#define CLIENT_CONTEXT_MAX 3583
/* How far X-Amz-Date may be from the clock, either way (AWS: 5 minutes). */
#define SIGV4_SKEW_S 300
/* Authorization header parts we copy (a credential, signed header names). */
#define SIGV4_PART_MAX 1024

/* What one request is, as far as it has been read. */
struct api_req {
    struct faas_runtime *rt;
    struct evhttp_request *req;
    int head;
    char reqid[FAAS_REQUEST_ID_SIZE];
    /* the headers we read (borrowed from the request), and their size */
    const char *invocation_type, *log_type, *client_context, *trace_id;
    const char *authorization, *amz_date, *content_sha256;
    size_t nheaders, header_bytes;
    /* the target */
    char name[FAAS_NAME_MAX + 1];
    char qualifier[FAAS_QUALIFIER_MAX + 1]; /* "" = none */
    const char *version;                    /* X-Amz-Executed-Version */
};

/* ==== replies =========================================================== */

static void send_reply(struct evhttp_request *req, int head, int code)
{
    if (head) {
        struct evbuffer *out = evhttp_request_get_output_buffer(req);
        evbuffer_drain(out, evbuffer_get_length(out));
    }
    evhttp_send_reply(req, code, NULL, NULL);
}

/*
 * An error as Lambda sends it: x-amzn-ErrorType, and the body
 * {"Type":"User"|"Service","message":...} (plus "Reason" when given).
 */
static void send_error(struct evhttp_request *req, int head, const char *reqid, int code,
                       const char *type, const char *reason, const char *msg)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    /* The message may quote what the client sent: UTF-8 stays as it is,
     * other bytes become U+FFFD. */
    json_t *text = faas_json_text(msg, strlen(msg));

    evhttp_add_header(oh, "x-amzn-RequestId", reqid);
    evhttp_add_header(oh, "x-amzn-ErrorType", type);
    evhttp_add_header(oh, "Content-Type", "application/json");
    evbuffer_add_printf(out, "{\"Type\":\"%s\",", code >= 500 ? "Service" : "User");
    if (reason)
        evbuffer_add_printf(out, "\"Reason\":\"%s\",", reason);
    evbuffer_add(out, "\"message\":", 10);
    if (!text || faas_json_dump_evbuffer(out, text) != 0)
        evbuffer_add(out, "\"\"", 2);
    json_decref(text);
    evbuffer_add(out, "}", 1);
    send_reply(req, head, code);
}

static void fail(struct api_req *a, int code, const char *type, const char *fmt, ...)
    FAAS_PRINTF(4, 5);

static void fail(struct api_req *a, int code, const char *type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    send_error(a->req, a->head, a->reqid, code, type, NULL, msg);
}

/*
 * A refusal (faas_invoke_fn, faas_invoke_async) or a result that is not
 * the function's own: its status, type and message. `msg` NULL: the
 * default message. Function errors never come here (see function_error).
 */
static void send_status(struct evhttp_request *req, int head, const char *reqid, int status,
                        const char *msg, int event)
{
    int code = 500;
    const char *type = "ServiceException", *reason = NULL;

    switch (status) {
    case FAAS_ENOENT:
        code = 404, type = "ResourceNotFoundException";
        break;
    case FAAS_ETHROTTLED:
        code = 429, type = "TooManyRequestsException";
        if (!msg)
            msg = "Rate Exceeded.";
        /* max_concurrency is the function's reserved concurrency */
        if (!event)
            reason = "ReservedFunctionConcurrentInvocationLimitExceeded";
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        break;
    case FAAS_ETOOBIG:
        code = 413, type = "RequestTooLargeException";
        break;
    case FAAS_EINVAL:
    case FAAS_EIDEMPOTENCY_MISMATCH:
        code = 400, type = "InvalidParameterValueException";
        break;
    case FAAS_ENOKEY:
        code = 400, type = "InvalidRequestContentException";
        break;
    case FAAS_EINPROGRESS:
        code = 409, type = "ResourceConflictException";
        break;
    case FAAS_ECANCELED:
        code = 503;
        break;
    default:
        break;
    }
    send_error(req, head, reqid, code, type, reason, msg ? msg : faas_strerror(status));
}

void faas_invoke_api_unavailable(struct faas_http_hold *p, struct evhttp_request *req)
{
    send_error(req, p->head, p->request_id, 503, "ServiceException", NULL,
               "Service Unavailable: the runtime is shutting down");
}

/* ==== results ============================================================ */

/* Failures of the function itself: Lambda answers them 200, "Unhandled". */
static int function_error(int status)
{
    return status == FAAS_EHANDLER || status == FAAS_ETIMEDOUT || status == FAAS_ECRASHED ||
           status == FAAS_EMEMLIMIT || status == FAAS_EINIT ||
           status == FAAS_ETOOBIG; /* a result too large: Function.ResponseSizeTooLarge */
}

/*
 * X-Amz-Log-Result: the last FAAS_LOG_TAIL_MAX bytes of the invocation's
 * lines followed by Lambda's END and REPORT lines, base64.
 */
static void add_log_result(struct evkeyvalq *oh, const struct faas_result *res)
{
    char text[FAAS_LOG_TAIL_MAX], trail[768];
    char b64[sodium_base64_ENCODED_LEN(FAAS_LOG_TAIL_MAX, sodium_base64_VARIANT_ORIGINAL)];
    const char *tail = faas_result_log_tail(res);
    size_t tl = tail ? strlen(tail) : 0, n, keep;
    int m, r;

    m = snprintf(trail, sizeof trail, "END RequestId: %s\n", res->request_id);
    if (m < 0)
        return;
    n = (size_t)m;
    r = faas_result_report(res, trail + n, sizeof trail - n - 1);
    if (r < 0)
        return;
    n += (size_t)r < sizeof trail - n - 1 ? (size_t)r : strlen(trail + n);
    trail[n++] = '\n';
    keep = tl < FAAS_LOG_TAIL_MAX - n ? tl : FAAS_LOG_TAIL_MAX - n;
    if (keep)
        memcpy(text, tail + (tl - keep), keep);
    memcpy(text + keep, trail, n);
    sodium_bin2base64(b64, sizeof b64, (const unsigned char *)text, keep + n,
                      sodium_base64_VARIANT_ORIGINAL);
    evhttp_add_header(oh, "X-Amz-Log-Result", b64);
}

/* 200: the payload, or the error object of a function error. */
static void send_invoked(struct evhttp_request *req, const struct faas_http_hold *p,
                         const struct faas_result *res)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    json_t *payload = faas_result_payload(res);

    if (faas_json_dump_evbuffer(out, payload ? payload : json_null()) != 0) {
        evbuffer_drain(out, evbuffer_get_length(out));
        send_error(req, p->head, res->request_id, 500, "ServiceException", NULL,
                   faas_strerror(FAAS_ENOMEM));
        return;
    }
    evhttp_add_header(oh, "x-amzn-RequestId", res->request_id);
    evhttp_add_header(oh, "X-Amz-Executed-Version", p->version);
    evhttp_add_header(oh, "Content-Type", "application/json");
    if (res->status != 0)
        evhttp_add_header(oh, "X-Amz-Function-Error", "Unhandled");
    if (p->log_tail)
        add_log_result(oh, res);
    send_reply(req, p->head, 200);
}

static void result_cb(const struct faas_result *res, void *arg)
{
    struct faas_http_hold *p = arg;
    struct evhttp_request *req = faas_http_hold_take(p);

    if (req) {
        if (res->status == 0 || function_error(res->status))
            send_invoked(req, p, res);
        else
            send_status(req, p->head, res->request_id, res->status, NULL, 0);
    }
    faas_http_hold_put(p);
}

/* InvokeWithResponseStream: a started stream, or a result to stream, is
 * http_stream.c's; a refusal is answered as Invoke answers it. */
static void stream_result_cb(const struct faas_result *res, void *arg)
{
    struct faas_http_hold *p = arg;
    struct evhttp_request *req = faas_http_hold_take(p);

    if (req) {
        if (p->started || res->status == 0 || function_error(res->status))
            faas_http_stream_finish(p, req, res);
        else
            send_status(req, p->head, res->request_id, res->status, NULL, 0);
    }
    faas_http_hold_put(p);
}

/* ==== the target: {FunctionName} and Qualifier =========================== */


/* Percent-decodes s[0..n) into out (size bytes with the NUL). A '%' not
 * followed by two hex digits is itself. Returns the length, or -1 when it
 * does not fit. */
static long pct_decode(const char *s, size_t n, char *out, size_t size)
{
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = faas_pct_next(s, n, &i, 0);
        if (o + 1 >= size)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (long)o;
}

static int name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return n > 0 && n <= FAAS_NAME_MAX;
}

static int qualifier_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '$'))
            return 0;
    }
    return n > 0 && n <= FAAS_QUALIFIER_MAX;
}

/*
 * Splits a decoded {FunctionName} (modified in place) into the name and
 * the qualifier it names (NULL: none). Returns 0, or -1 when it is none of
 * the forms Lambda accepts.
 */
static int split_function_arg(char *s, const char **name, const char **qualifier)
{
    char *f[9];
    size_t n = 0;
    char *p = s;

    for (;;) {
        char *c = strchr(p, ':');
        if (n == sizeof f / sizeof f[0])
            return -1;
        f[n++] = p;
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
    *qualifier = NULL;
    if (strcmp(f[0], "arn") == 0) {
        /* arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] */
        if ((n != 7 && n != 8) || strncmp(f[1], "aws", 3) != 0 ||
            strcmp(f[2], "lambda") != 0 || !f[3][0] || !f[4][0] ||
            strcmp(f[5], "function") != 0)
            return -1;
        *name = f[6];
        if (n == 8)
            *qualifier = f[7];
    } else if (n >= 3 && strcmp(f[1], "function") == 0) {
        /* ACCOUNT:function:NAME[:QUALIFIER] */
        if (n > 4 || !f[0][0])
            return -1;
        *name = f[2];
        if (n == 4)
            *qualifier = f[3];
    } else if (n <= 2) {
        *name = f[0];
        if (n == 2)
            *qualifier = f[1];
    } else {
        return -1;
    }
    return 0;
}

/* The raw value of query parameter `key` (first one), or NULL. */
static const char *query_param(const char *q, const char *key, size_t *len)
{
    size_t kl = strlen(key);
    while (q && *q) {
        size_t n = strcspn(q, "&");
        if (n > kl && strncmp(q, key, kl) == 0 && q[kl] == '=') {
            *len = n - kl - 1;
            return q + kl + 1;
        }
        if (n == kl && strncmp(q, key, kl) == 0) {
            *len = 0;
            return q + n;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return NULL;
}

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* Fills a->name, a->qualifier and a->version from the path segment and
 * the query; on failure answers and returns -1. */
static int resolve_target(struct api_req *a, const char *seg, size_t seglen, const char *query)
{
    char arg[FUNCTION_ARG_MAX], q[FAAS_QUALIFIER_MAX + 1];
    const char *name, *qual, *raw;
    size_t rawlen;
    long n;

    q[0] = '\0';
    n = pct_decode(seg, seglen, arg, sizeof arg);
    if (n < 0 || (size_t)n != strlen(arg) || split_function_arg(arg, &name, &qual) != 0 ||
        !name_ok(name)) {
        fail(a, 400, "ValidationException",
             "1 validation error detected: Value at 'functionName' failed to satisfy "
             "constraint: Member must satisfy regular expression pattern: "
             "(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?"
             "(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?");
        return -1;
    }
    if ((raw = query_param(query, "Qualifier", &rawlen)) != NULL && rawlen > 0 &&
        ((n = pct_decode(raw, rawlen, q, sizeof q)) < 0 || (size_t)n != strlen(q))) {
        q[0] = '\x01'; /* too long, or a NUL: fails the check below */
        q[1] = '\0';
    }
    if ((qual && !qualifier_ok(qual)) || (q[0] && !qualifier_ok(q))) {
        fail(a, 400, "ValidationException",
             "1 validation error detected: Value at 'qualifier' failed to satisfy "
             "constraint: Member must satisfy regular expression pattern: "
             "(|[a-zA-Z0-9$_-]+)");
        return -1;
    }
    if (qual && q[0] && strcmp(qual, q) != 0) {
        fail(a, 400, "InvalidParameterValueException",
             "The derived qualifier from the function name does not match the specified "
             "qualifier.");
        return -1;
    }
    memcpy(a->name, name, strlen(name) + 1);
    snprintf(a->qualifier, sizeof a->qualifier, "%s", qual ? qual : q);
    /* One version per name: a number names it, anything else is $LATEST. */
    a->version = all_digits(a->qualifier) ? a->qualifier : "$LATEST";
    return 0;
}

/* ==== SigV4: the request's signature checked (the signer is sigv4.c) ===== */

/* A header's method name, for the canonical request. */
static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "GET";
}

/* The signature's arithmetic once its parts are known: 0, or answered. */
static int sigv4_verify(struct api_req *a, const char *path, const char *query,
                        const char *signed_headers, const char *scope, const char *signature,
                        const char *payload_hash)
{
    struct faas_http_header small[32], *hs = small;
    struct evkeyvalq *inh = evhttp_request_get_input_headers(a->req);
    struct faas_sigv4_in in;
    struct evkeyval *kv;
    char want[65];
    size_t i = 0;
    int rc;

    if (a->nheaders > sizeof small / sizeof small[0] &&
        !(hs = faas_malloc(a->nheaders * sizeof *hs))) {
        fail(a, 500, "ServiceException", "%s", faas_strerror(FAAS_ENOMEM));
        return -1;
    }
    TAILQ_FOREACH(kv, inh, next) {
        hs[i].name = kv->key;
        hs[i].name_len = strlen(kv->key);
        hs[i].value = kv->value;
        hs[i].value_len = strlen(kv->value);
        i++;
    }
    memset(&in, 0, sizeof in);
    in.method = method_name(evhttp_request_get_command(a->req));
    in.path = path;
    in.query = query;
    in.headers = hs;
    in.nheaders = i;
    in.signed_headers = signed_headers;
    in.amz_date = a->amz_date;
    in.scope = scope;
    in.payload_hash = payload_hash;
    rc = faas_sigv4_signature(&in, a->rt->opts.secret_access_key, want);
    if (hs != small)
        free(hs);
    if (rc != 0) {
        fail(a, rc == FAAS_ENOMEM ? 500 : 403,
             rc == FAAS_ENOMEM ? "ServiceException" : "InvalidSignatureException", "%s",
             faas_strerror(rc));
        return -1;
    }
    if (strlen(signature) != 64 || sodium_memcmp(want, signature, 64) != 0) {
        fail(a, 403, "InvalidSignatureException",
             "The request signature we calculated does not match the signature you "
             "provided. Check your AWS Secret Access Key and signing method. Consult the "
             "service documentation for details.");
        return -1;
    }
    return 0;
}

/* The scope "DATE/REGION/SERVICE/aws4_request" against the request: 0, or
 * answered. */
static int sigv4_scope(struct api_req *a, const char *scope)
{
    const char *svc, *term;
    int64_t t, now;
    char a1[17], a2[17];

    term = strrchr(scope, '/');
    if (strlen(scope) < 9 || scope[8] != '/' || !term || strcmp(term, "/aws4_request") != 0 ||
        !(svc = memrchr(scope, '/', (size_t)(term - scope))) || svc <= scope + 8) {
        fail(a, 403, "InvalidSignatureException",
             "Credential should be scoped to a valid region, service and terminator.");
        return -1;
    }
    if ((size_t)(term - svc - 1) != 6 || strncmp(svc + 1, "lambda", 6) != 0) {
        fail(a, 403, "InvalidSignatureException",
             "Credential should be scoped to correct service: 'lambda'.");
        return -1;
    }
    if (!a->amz_date) {
        fail(a, 400, "IncompleteSignatureException",
             "Authorization header requires existence of a 'X-Amz-Date' header.");
        return -1;
    }
    if (faas_sigv4_parse_date(a->amz_date, &t) != 0 ||
        strncmp(a->amz_date, scope, 8) != 0) {
        fail(a, 403, "InvalidSignatureException",
             "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
             "date from HTTP: '%.8s' != '%.8s', from '%s'.",
             scope, a->amz_date, a->amz_date);
        return -1;
    }
    now = faas_wall_ns(a->rt) / 1000000000;
    if (t < now - SIGV4_SKEW_S) {
        faas_sigv4_format_date(now - SIGV4_SKEW_S, a1);
        faas_sigv4_format_date(now, a2);
        fail(a, 403, "InvalidSignatureException",
             "Signature expired: %s is now earlier than %s (%s - 5 min.)", a->amz_date, a1, a2);
        return -1;
    }
    if (t > now + SIGV4_SKEW_S) {
        faas_sigv4_format_date(now + SIGV4_SKEW_S, a1);
        faas_sigv4_format_date(now, a2);
        fail(a, 403, "InvalidSignatureException",
             "Signature not yet current: %s is still later than %s (%s + 5 min.)", a->amz_date,
             a1, a2);
        return -1;
    }
    return 0;
}

/* Whether the ';'-separated list names `name` (case-insensitively). */
static int list_has(const char *list, const char *name)
{
    size_t nl = strlen(name);
    while (*list) {
        size_t n = strcspn(list, ";");
        if (n == nl && strncasecmp(list, name, n) == 0)
            return 1;
        list += n;
        if (*list == ';')
            list++;
    }
    return 0;
}

/* With a key pair configured, the request must be signed with it: 0, or
 * answered. */
static int sigv4_check(struct api_req *a, const char *path, const char *query,
                       const unsigned char *body, size_t blen)
{
    char cred[SIGV4_PART_MAX], signed_headers[SIGV4_PART_MAX], sig[80], payload[65];
    const char *auth = a->authorization, *slash, *kid = a->rt->opts.access_key_id;
    unsigned char digest[32];
    static const char alg[] = "AWS4-HMAC-SHA256 ";

    if (!auth) {
        fail(a, 403, "MissingAuthenticationTokenException", "Missing Authentication Token");
        return -1;
    }
    if (strncmp(auth, alg, sizeof alg - 1) != 0 ||
        faas_sigv4_auth_param(auth + sizeof alg - 1, "Credential", cred, sizeof cred) != 0 ||
        faas_sigv4_auth_param(auth + sizeof alg - 1, "SignedHeaders", signed_headers,
                              sizeof signed_headers) != 0 ||
        faas_sigv4_auth_param(auth + sizeof alg - 1, "Signature", sig, sizeof sig) != 0 ||
        !(slash = strchr(cred, '/'))) {
        fail(a, 400, "IncompleteSignatureException",
             "Authorization header requires 'AWS4-HMAC-SHA256' with 'Credential', "
             "'SignedHeaders' and 'Signature' parameters.");
        return -1;
    }
    if ((size_t)(slash - cred) != strlen(kid) || strncmp(cred, kid, strlen(kid)) != 0) {
        fail(a, 403, "UnrecognizedClientException",
             "The security token included in the request is invalid.");
        return -1;
    }
    if (sigv4_scope(a, slash + 1) != 0)
        return -1;
    if (!list_has(signed_headers, "host")) {
        fail(a, 403, "InvalidSignatureException",
             "'Host' must be a 'SignedHeader' in the AWS Authorization.");
        return -1;
    }
    crypto_hash_sha256(digest, body, blen);
    sodium_bin2hex(payload, sizeof payload, digest, sizeof digest);
    if (a->content_sha256 && strcasecmp(a->content_sha256, payload) != 0) {
        fail(a, 403, "InvalidSignatureException",
             "The provided 'x-amz-content-sha256' header does not match what was computed.");
        return -1;
    }
    return sigv4_verify(a, path, query, signed_headers, slash + 1, sig,
                        a->content_sha256 ? a->content_sha256 : payload);
}

/* ==== the request ======================================================== */

/* One walk: the headers we read, and the size of them all. */
static void read_headers(struct api_req *a)
{
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(a->req), next) {
        size_t kl = strlen(kv->key);
        const char **slot = NULL;
        a->nheaders++;
        a->header_bytes += kl + strlen(kv->value) + 4;
        switch (kl) {
        case 10:
            if (strcasecmp(kv->key, "x-amz-date") == 0)
                slot = &a->amz_date;
            break;
        case 13:
            if (strcasecmp(kv->key, "authorization") == 0)
                slot = &a->authorization;
            break;
        case 14:
            if (strcasecmp(kv->key, "x-amz-log-type") == 0)
                slot = &a->log_type;
            break;
        case 15:
            if (strcasecmp(kv->key, "x-amzn-trace-id") == 0)
                slot = &a->trace_id;
            break;
        case 20:
            if (strcasecmp(kv->key, "x-amz-client-context") == 0)
                slot = &a->client_context;
            else if (strcasecmp(kv->key, "x-amz-content-sha256") == 0)
                slot = &a->content_sha256;
            break;
        case 21:
            if (strcasecmp(kv->key, "x-amz-invocation-type") == 0)
                slot = &a->invocation_type;
            break;
        default:
            break;
        }
        if (slot && !*slot)
            *slot = kv->value;
    }
}

enum inv_type { INV_SYNC, INV_EVENT, INV_DRYRUN, INV_STREAM };

/* Whether a failed json_loadb ran out of memory: jansson says so, or
 * failed before it could say anything (a parse error always has a text). */
static int load_oom(const json_error_t *err)
{
    return json_error_code(err) == json_error_out_of_memory || err->text[0] == '\0';
}

/* X-Amz-Client-Context: base64 of a JSON object. NULL with *bad set when
 * it is not one (answered). */
static json_t *client_context(struct api_req *a, int *bad)
{
    unsigned char bin[CLIENT_CONTEXT_MAX];
    size_t n = a->client_context ? strlen(a->client_context) : 0, blen = 0;
    json_error_t err;
    json_t *j;

    *bad = 0;
    if (n == 0)
        return NULL;
    if (n > CLIENT_CONTEXT_MAX) {
        fail(a, 400, "InvalidParameterValueException",
             "Client context must be at most %d bytes of base64.", CLIENT_CONTEXT_MAX);
        *bad = 1;
        return NULL;
    }
    j = NULL;
    memset(&err, 0, sizeof err); /* jansson leaves the code unset on some failures */
    if (sodium_base642bin(bin, sizeof bin, a->client_context, n, NULL, &blen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) == 0 &&
        !(j = json_loadb((const char *)bin, blen, JSON_ALLOW_NUL, &err)) && load_oom(&err)) {
        fail(a, 500, "ServiceException", "%s", faas_strerror(FAAS_ENOMEM));
        *bad = 1;
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        fail(a, 400, "InvalidRequestContentException",
             "Client context must be a valid Base64-encoded JSON object.");
        *bad = 1;
        return NULL;
    }
    return j;
}

/* The parsed body: JSON null when empty; NULL when it is not JSON (answered). */
static json_t *parse_body(struct api_req *a, struct evbuffer *body, size_t blen)
{
    json_error_t err;
    json_t *ev;
    const char *text;

    if (blen == 0)
        return json_null();
    memset(&err, 0, sizeof err);
    text = (const char *)evbuffer_pullup(body, -1);
    ev = text ? json_loadb(text, blen, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err) : NULL;
    if (!ev && (!text || load_oom(&err)))
        fail(a, 500, "ServiceException", "%s", faas_strerror(FAAS_ENOMEM));
    else if (!ev)
        fail(a, 400, "InvalidRequestContentException",
             "Could not parse request body into json: %s at position %d", err.text,
             err.position);
    return ev;
}

static void invoke_event(struct api_req *a, json_t *ev, const struct faas_invoke_opts *o)
{
    char id[FAAS_REQUEST_ID_SIZE];
    int rc = faas_invoke_async(a->rt, a->name, ev, o, id);

    if (rc != 0) {
        char msg[160];
        const char *m = NULL;
        if (rc == FAAS_ETOOBIG) {
            snprintf(msg, sizeof msg,
                     "Request must be smaller than %zu bytes for the InvokeAsync operation",
                     a->rt->opts.max_async_payload);
            m = msg;
        }
        send_status(a->req, a->head, a->reqid, rc, m, 1);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(a->req), "x-amzn-RequestId", id);
    send_reply(a->req, a->head, 202);
}

static void invoke_sync(struct api_req *a, struct faas_fn *fn, json_t *ev,
                        const struct faas_invoke_opts *o, int stream)
{
    struct faas_http_hold *p = faas_http_hold_new(a->rt);
    int rc;

    if (!p) {
        json_decref(ev);
        fail(a, 500, "ServiceException", "%s", faas_strerror(FAAS_ENOMEM));
        return;
    }
    p->api = 1;
    p->head = a->head;
    p->log_tail = o->log_tail;
    memcpy(p->version, a->version, strlen(a->version) + 1);
    memcpy(p->request_id, a->reqid, sizeof p->request_id);
    if (stream) /* takes ev */
        rc = faas_http_stream_invoke(a->rt, fn, ev, o, a->reqid, p, FAAS_HTTP_STREAM_EVENTS,
                                     stream_result_cb);
    else
        rc = faas_invoke_fn(a->rt, fn, ev, o, a->reqid, result_cb, p);
    if (rc == 0) {
        faas_http_hold_wait(p, a->req);
        return;
    }
    send_status(a->req, a->head, a->reqid, rc, NULL, 0);
    faas_http_hold_put(p);
}

/* The function is found, the request is valid: invoke it. */
static void invoke(struct api_req *a, enum inv_type type, struct evbuffer *body, size_t blen)
{
    struct faas_invoke_opts o = FAAS_INVOKE_OPTS_INIT;
    struct faas_fn *fn = faas_fn_lookup(a->rt, a->name);
    json_t *ev, *cc;
    int bad;

    if (!fn) {
        fail(a, 404, "ResourceNotFoundException",
             "Function not found: arn:aws:lambda:%s:000000000000:function:%s%s%s",
             a->rt->opts.region, a->name, a->qualifier[0] ? ":" : "", a->qualifier);
        return;
    }
    if (type == INV_DRYRUN) {
        evhttp_add_header(evhttp_request_get_output_headers(a->req), "x-amzn-RequestId",
                          a->reqid);
        send_reply(a->req, a->head, 204);
        return;
    }
    cc = client_context(a, &bad);
    if (bad)
        return;
    if (!(ev = parse_body(a, body, blen))) {
        json_decref(cc);
        return;
    }
    o.client_context = cc;
    o.trace_id = a->trace_id;
    o.log_tail = a->log_type && strcmp(a->log_type, "Tail") == 0;
    if (type == INV_EVENT) {
        invoke_event(a, ev, &o);
        json_decref(ev);
    } else {
        invoke_sync(a, fn, ev, &o, type == INV_STREAM);
    }
    json_decref(cc);
}

static size_t max_headers(const struct faas_runtime *rt)
{
    return rt->opts.http_max_headers ? rt->opts.http_max_headers : 16u * 1024u;
}

static void handle(struct api_req *a)
{
    struct faas_runtime *rt = a->rt;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(a->req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL, *seg, *rest;
    struct evbuffer *body = evhttp_request_get_input_buffer(a->req);
    size_t blen = evbuffer_get_length(body), limit;
    enum inv_type type = INV_SYNC;
    int stream;

    if (rt->draining) {
        /* faas_drain: no new work, and the connection does not stay */
        evhttp_add_header(evhttp_request_get_output_headers(a->req), "Connection", "close");
        fail(a, 503, "ServiceException", "Service Unavailable: the runtime is draining");
        return;
    }
    if (rt->closing || rt->free_requested) {
        fail(a, 503, "ServiceException", "Service Unavailable: the runtime is shutting down");
        return;
    }
    read_headers(a);
    if (a->header_bytes > max_headers(rt)) {
        fail(a, 431, "RequestTooLargeException", "Request header fields too large");
        return;
    }
    if (rt->opts.access_key_id && rt->opts.secret_access_key) {
        const unsigned char *b = blen ? evbuffer_pullup(body, -1) : (const unsigned char *)"";
        if (!b) {
            fail(a, 500, "ServiceException", "%s", faas_strerror(FAAS_ENOMEM));
            return;
        }
        if (sigv4_check(a, path, query, b, blen) != 0)
            return;
    }
    /* POST /2015-03-31/functions/{FunctionName}/invocations, or
     * POST /2021-11-15/functions/{FunctionName}/response-streaming-invocations
     * (InvokeWithResponseStream) */
    stream = strncmp(path, STREAM_PREFIX, sizeof STREAM_PREFIX - 1) == 0;
    seg = path + (stream ? sizeof STREAM_PREFIX : sizeof API_PREFIX) - 1;
    rest = strchr(seg, '/');
    if (!rest || rest == seg || strcmp(rest, stream ? STREAM_OP : API_OP) != 0 ||
        evhttp_request_get_command(a->req) != EVHTTP_REQ_POST) {
        fail(a, 404, "UnknownOperationException", "Unknown operation");
        return;
    }
    if (resolve_target(a, seg, (size_t)(rest - seg), query) != 0)
        return;
    if (stream) {
        /* RequestResponse (streamed) or DryRun; never Event */
        type = INV_STREAM;
        if (a->invocation_type && strcmp(a->invocation_type, "DryRun") == 0) {
            type = INV_DRYRUN;
        } else if (a->invocation_type && strcmp(a->invocation_type, "RequestResponse") != 0) {
            fail(a, 400, "InvalidParameterValueException",
                 "Unsupported invocation type: %s (RequestResponse or DryRun)",
                 a->invocation_type);
            return;
        }
    } else if (a->invocation_type && strcmp(a->invocation_type, "Event") == 0) {
        type = INV_EVENT;
    } else if (a->invocation_type && strcmp(a->invocation_type, "DryRun") == 0) {
        type = INV_DRYRUN;
    } else if (a->invocation_type && strcmp(a->invocation_type, "RequestResponse") != 0) {
        fail(a, 400, "InvalidParameterValueException",
             "Unsupported invocation type: %s (RequestResponse, Event or DryRun)",
             a->invocation_type);
        return;
    }
    if (a->log_type && strcmp(a->log_type, "Tail") != 0 && strcmp(a->log_type, "None") != 0) {
        fail(a, 400, "InvalidParameterValueException", "Unsupported log type: %s (None or Tail)",
             a->log_type);
        return;
    }
    limit = type == INV_EVENT ? rt->opts.max_async_payload : rt->opts.max_sync_payload;
    if (blen > limit) {
        fail(a, 413, "RequestTooLargeException",
             "Request must be smaller than %zu bytes for the %s operation", limit,
             type == INV_EVENT ? "InvokeAsync" : "InvokeFunction");
        return;
    }
    invoke(a, type, body, blen);
}

void faas_invoke_api_request(struct faas_runtime *rt, struct evhttp_request *req)
{
    struct api_req a;

    memset(&a, 0, sizeof a);
    a.rt = rt;
    a.req = req;
    a.head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
    faas_request_id(rt, a.reqid);
    faas_rt_enter(rt);
    handle(&a);
    faas_rt_leave(rt);
}

/*
 * http_event.c - API Gateway's HTTP API payload 2.0, both ways: a request's
 * parts made into the event a function receives (faas_http_event_build),
 * and the function's result made into the HTTP response (the
 * faas_http_reply_* calls), with the gateway's own JSON error replies.
 *
 * The event builder is pure (no libevent, no runtime): the gateway and the
 * event fuzz target both call it, and its cache of repeated strings belongs
 * to its caller (http_event.h says what may be shared). The replies write
 * to an evhttp request and send it; they never hold it.
 *
 * Payload 2.0's response rules: an object with a statusCode is a
 * structured response (statusCode 200..599 as a number or a numeric string,
 * headers, cookies as Set-Cookie, a body that is a string, base64 with
 * isBase64Encoded, or JSON); anything else is the body of a 200 as JSON.
 * Where API Gateway leaves room: a structured response without a
 * content-type header gets "text/plain; charset=utf-8"; headers that frame
 * the message (Content-Length, Transfer-Encoding, Connection) belong to
 * libevent and are dropped; a malformed structured response is 502, as is
 * a response the function made too large, while a request event too large
 * is 413; a cancelled invocation (teardown, unregister) is 503.
 *
 * Callers: http.c (the gateway, on the loop thread), the event fuzz target.
 * It calls jansson, libsodium's base64, faas_json_text and
 * faas_json_dump_evbuffer (json.h), the UTF-8 and percent-decoding helpers
 * (text.h), invoke.c's result accessor (faas_result_payload), the
 * allocators, and libevent's evhttp to send a reply.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>

#include "faas_int.h"
#include "http_event.h"

/* ==== the payload 2.0 event =========================================== */

/*
 * Pure: faas_http_event_build() makes the event from the request's parts
 * (http.h), without libevent or a runtime; the gateway and the event fuzz
 * target both call it. It checks UTF-8 itself, once, and gives jansson
 * strings it need not check again; constant keys go in with their lengths.
 */

/* A string for slot i of the cache: the cached one when the text is the
 * same, else a new one, which the cache keeps. */
static json_t *cached(struct faas_http_event_cache *c, int i, const char *s, size_t n)
{
    json_t *j;
    if (!c)
        return faas_json_text(s, n);
    j = c->v[i];
    if (j && json_string_length(j) == n && memcmp(json_string_value(j), s, n) == 0)
        return json_incref(j);
    if ((j = faas_json_text(s, n)) != NULL) {
        json_decref(c->v[i]);
        c->v[i] = json_incref(j);
    }
    return j;
}

#define CACHED(c, i, s) cached((c), (i), (s), sizeof(s) - 1)

void faas_http_event_cache_clear(struct faas_http_event_cache *c)
{
    int i;
    for (i = 0; i < FAAS_HTTP_C_N; i++) {
        json_decref(c->v[i]);
        c->v[i] = NULL;
    }
}

/* o[k] = v for a constant key k; v is taken (NULL: -1). */
#define SETK(o, k, v) json_object_setn_new_nocheck((o), (k), sizeof(k) - 1, (v))

/* o[key] = v (n bytes), comma-joined with what key already has. A new key
 * is checked (not UTF-8: -1) unless `checked`. */
static int join_add(json_t *o, const char *key, size_t klen, int checked, const char *v,
                    size_t n, struct faas_http_event_cache *c, int slot)
{
    json_t *old = json_object_getn(o, key, klen), *j;
    char small[256], *buf;
    size_t olen;

    if (!old) {
        j = slot >= 0 ? cached(c, slot, v, n) : faas_json_text(v, n);
        if (!j)
            return -1;
        return checked ? json_object_setn_new_nocheck(o, key, klen, j)
                       : json_object_setn_new(o, key, klen, j);
    }
    olen = json_string_length(old);
    buf = olen + 1 + n <= sizeof small ? small : faas_malloc(olen + 1 + n);
    if (!buf)
        return -1;
    memcpy(buf, json_string_value(old), olen);
    buf[olen] = ',';
    memcpy(buf + olen + 1, v, n);
    j = faas_json_text(buf, olen + 1 + n);
    if (buf != small)
        free(buf);
    return j ? json_object_setn_new_nocheck(o, key, klen, j) : -1;
}

/* The cookies of one Cookie header, split on ';', into the array. */
static int add_cookies(json_t *cookies, const char *s, size_t n)
{
    const char *end = s + n;
    while (s < end) {
        const char *e = memchr(s, ';', (size_t)(end - s));
        size_t len = e ? (size_t)(e - s) : (size_t)(end - s);
        while (len && (*s == ' ' || *s == '\t'))
            s++, len--;
        if (len && json_array_append_new(cookies, faas_json_text(s, len)) != 0)
            return -1;
        s += len;
        if (s < end && *s == ';')
            s++;
    }
    return 0;
}

struct picked {
    const struct faas_http_header *host, *ua, *ct; /* the first of each */
};

/* "headers" (names lower-cased, duplicates comma-joined) and "cookies". */
static int add_headers(json_t *ev, const struct faas_http_event_in *in, struct picked *pk,
                       struct faas_http_event_cache *c)
{
    json_t *headers = json_object(), *cookies = NULL;
    char small[128];
    size_t k;
    int rc = 0;

    if (!headers)
        return -1;
    for (k = 0; k < in->nheaders && rc == 0; k++) {
        const struct faas_http_header *hd = &in->headers[k];
        size_t n = hd->name_len, i;
        char *lower = n < sizeof small ? small : faas_malloc(n + 1);
        if (!lower) {
            rc = -1;
            break;
        }
        for (i = 0; i < n; i++) {
            char ch = hd->name[i];
            lower[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
        }
        lower[n] = '\0';
        if (n == 6 && memcmp(lower, "cookie", 6) == 0) {
            if (!cookies && !(cookies = json_array()))
                rc = -1;
            else
                rc = add_cookies(cookies, hd->value, hd->value_len);
        } else {
            int slot = -1;
            if (n == 4 && memcmp(lower, "host", 4) == 0) {
                slot = FAAS_HTTP_C_HOST;
                if (!pk->host)
                    pk->host = hd;
            } else if (n == 10 && memcmp(lower, "user-agent", 10) == 0) {
                slot = FAAS_HTTP_C_USER_AGENT;
                if (!pk->ua)
                    pk->ua = hd;
            } else if (n == 12 && !pk->ct && memcmp(lower, "content-type", 12) == 0) {
                pk->ct = hd;
            }
            rc = join_add(headers, lower, n, 0, hd->value, hd->value_len, c, slot);
        }
        if (lower != small)
            free(lower);
    }
    if (rc == 0 && cookies && json_array_size(cookies) > 0) {
        rc = SETK(ev, "cookies", cookies);
        cookies = NULL;
    }
    json_decref(cookies);
    if (rc == 0)
        rc = SETK(ev, "headers", headers);
    else
        json_decref(headers);
    return rc;
}

/* "queryStringParameters", omitted when empty; buf has n + 1 bytes. */
static int add_query(json_t *ev, const char *q, size_t n, char *buf)
{
    const char *end = q + n;
    json_t *qs;
    int rc = 0;

    if (n == 0)
        return 0;
    if (!(qs = json_object()))
        return -1;
    while (q < end && rc == 0) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        size_t len = amp ? (size_t)(amp - q) : (size_t)(end - q);
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len, kd, vd;
        if (klen) {
            kd = faas_pct_decode(buf, q, klen, 1);
            /* A decoded key with a NUL cannot be an object key: skip it. */
            if (!memchr(buf, '\0', kd) && faas_utf8_valid(buf, kd)) {
                char *val = buf + kd;
                vd = eq ? faas_pct_decode(val, eq + 1, len - klen - 1, 1) : 0;
                rc = join_add(qs, buf, kd, 1, val, vd, NULL, -1);
            }
        }
        q += len;
        if (q < end && *q == '&')
            q++;
    }
    if (rc == 0 && json_object_size(qs) > 0)
        return SETK(ev, "queryStringParameters", qs);
    json_decref(qs);
    return rc;
}

/* "pathParameters", omitted when the route has none; buf has path_len bytes. */
static int add_path_params(json_t *ev, const struct faas_http_event_in *in, char *buf)
{
    const struct faas_route_match *m = in->match;
    const struct faas_route *r = m->route;
    json_t *pp;
    unsigned i;
    size_t n;
    int rc = 0;

    if (!r->greedy) {
        for (i = 0; i < r->nsegs && r->seg[i]; i++)
            ;
        if (i == r->nsegs)
            return 0; /* no parameter: omitted, as API Gateway does */
    }
    if (!(pp = json_object()))
        return -1;
    for (i = 0; i < r->nsegs && rc == 0; i++) {
        if (r->seg[i])
            continue;
        n = faas_pct_decode(buf, in->path + m->off[i], m->len[i], 0);
        rc = json_object_set_new_nocheck(pp, r->name[i], faas_json_text(buf, n));
    }
    if (r->greedy && rc == 0) {
        n = faas_pct_decode(buf, in->path + m->tail_off, m->tail_len, 0);
        rc = json_object_set_new_nocheck(pp, r->greedy_name, faas_json_text(buf, n));
    }
    if (rc == 0)
        return SETK(ev, "pathParameters", pp);
    json_decref(pp);
    return rc;
}

static int textual(const char *ct, size_t len)
{
    static const char *const exact[] = { "application/json", "application/xml",
                                         "application/x-www-form-urlencoded" };
    size_t n = 0, i;

    if (!ct)
        return 1;
    while (len && (*ct == ' ' || *ct == '\t'))
        ct++, len--;
    while (n < len && ct[n] && !strchr("; \t", ct[n]))
        n++;
    if (n >= 5 && strncasecmp(ct, "text/", 5) == 0)
        return 1;
    for (i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strlen(exact[i]) == n && strncasecmp(ct, exact[i], n) == 0)
            return 1;
    return (n >= 5 && strncasecmp(ct + n - 5, "+json", 5) == 0) ||
           (n >= 4 && strncasecmp(ct + n - 4, "+xml", 4) == 0);
}

static int add_body(json_t *ev, const char *data, size_t n, const struct faas_http_header *ct)
{
    size_t b64len;
    char small[512], *b64;
    json_t *j;

    if (n == 0)
        return SETK(ev, "isBase64Encoded", json_false());
    if (textual(ct ? ct->value : NULL, ct ? ct->value_len : 0) && faas_utf8_valid(data, n)) {
        if (SETK(ev, "body", json_stringn_nocheck(data, n)) != 0)
            return -1;
        return SETK(ev, "isBase64Encoded", json_false());
    }
    b64len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    b64 = b64len <= sizeof small ? small : faas_malloc(b64len);
    if (!b64)
        return -1;
    sodium_bin2base64(b64, b64len, (const unsigned char *)data, n,
                      sodium_base64_VARIANT_ORIGINAL);
    j = json_stringn_nocheck(b64, b64len - 1);
    if (b64 != small)
        free(b64);
    if (SETK(ev, "body", j) != 0)
        return -1;
    return SETK(ev, "isBase64Encoded", json_true());
}

static int add_context(json_t *ev, const struct faas_http_event_in *in, const struct picked *pk,
                       char *buf, struct faas_http_event_cache *c)
{
    const struct faas_route *r = in->match->route;
    json_t *rc = json_object(), *hp = json_object();
    const char *host = pk->host ? pk->host->value : "localhost";
    size_t hlen = pk->host ? pk->host->value_len : 9, pre = 0, dlen;
    const char *ip = in->source_ip ? in->source_ip : "127.0.0.1";
    char proto[32];
    int bad = 0;

    if (!rc || !hp) {
        json_decref(rc);
        json_decref(hp);
        return -1;
    }
    if (in->http_major == 1 && in->http_minor == 1)
        memcpy(proto, "HTTP/1.1", 9);
    else
        snprintf(proto, sizeof proto, "HTTP/%d.%d", in->http_major, in->http_minor);
    while (pre < hlen && host[pre] != '.' && host[pre] != ':' && host[pre])
        pre++;
    dlen = faas_pct_decode(buf, in->path, in->path_len, 0);

    bad |= SETK(hp, "method", cached(c, FAAS_HTTP_C_METHOD, in->method, strlen(in->method)));
    bad |= SETK(hp, "path", faas_json_text(buf, dlen));
    bad |= SETK(hp, "protocol", cached(c, FAAS_HTTP_C_PROTOCOL, proto, strlen(proto)));
    bad |= SETK(hp, "sourceIp", cached(c, FAAS_HTTP_C_SOURCE_IP, ip, strlen(ip)));
    bad |= SETK(hp, "userAgent",
                pk->ua ? cached(c, FAAS_HTTP_C_USER_AGENT, pk->ua->value, pk->ua->value_len)
                       : CACHED(c, FAAS_HTTP_C_EMPTY, ""));

    bad |= SETK(rc, "accountId", CACHED(c, FAAS_HTTP_C_ACCOUNT, "000000000000"));
    bad |= SETK(rc, "apiId", CACHED(c, FAAS_HTTP_C_API, "local"));
    bad |= SETK(rc, "domainName", cached(c, FAAS_HTTP_C_HOST, host, hlen));
    bad |= SETK(rc, "domainPrefix", cached(c, FAAS_HTTP_C_HOST_PREFIX, host, pre));
    bad |= SETK(rc, "http", hp);
    bad |= SETK(rc, "requestId", faas_json_text(in->request_id, strlen(in->request_id)));
    bad |= SETK(rc, "routeKey",
                r->key_json ? json_incref(r->key_json) : faas_json_text(r->key, strlen(r->key)));
    bad |= SETK(rc, "stage", CACHED(c, FAAS_HTTP_C_STAGE, "$default"));
    bad |= SETK(rc, "time", cached(c, FAAS_HTTP_C_TIME, in->time, strlen(in->time)));
    bad |= SETK(rc, "timeEpoch", json_integer(in->time_epoch_ms));
    bad |= SETK(ev, "requestContext", rc);
    return bad ? -1 : 0;
}

json_t *faas_http_event_build(const struct faas_http_event_in *in,
                              struct faas_http_event_cache *c)
{
    const struct faas_route *r = in->match->route;
    struct picked pk = { NULL, NULL, NULL };
    size_t scratch = (in->path_len > in->query_len ? in->path_len : in->query_len) + 1;
    char small[512], *buf = scratch <= sizeof small ? small : faas_malloc(scratch);
    json_t *ev = json_object();
    int bad = 0;

    if (!ev || !buf) {
        if (buf != small)
            free(buf);
        json_decref(ev);
        return NULL;
    }
    bad |= SETK(ev, "version", CACHED(c, FAAS_HTTP_C_VERSION, "2.0"));
    bad |= SETK(ev, "routeKey",
                r->key_json ? json_incref(r->key_json) : faas_json_text(r->key, strlen(r->key)));
    bad |= SETK(ev, "rawPath", faas_json_text(in->path, in->path_len));
    bad |= SETK(ev, "rawQueryString", faas_json_text(in->query, in->query_len));
    if (!bad)
        bad |= add_headers(ev, in, &pk, c);
    if (!bad)
        bad |= add_query(ev, in->query, in->query_len, buf);
    if (!bad)
        bad |= add_path_params(ev, in, buf);
    if (!bad)
        bad |= add_context(ev, in, &pk, buf, c);
    if (!bad)
        bad |= add_body(ev, in->body, in->body_len, pk.ct);
    if (buf != small)
        free(buf);
    if (bad) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}

size_t faas_http_event_bound(const struct faas_http_event_in *in)
{
    size_t hb = 0, k;
    for (k = 0; k < in->nheaders; k++)
        hb += in->headers[k].name_len + in->headers[k].value_len + 4;
    /* 6 bytes (a \u escape) for every byte of a string, counted once for
     * each place it can appear, plus the punctuation: see http.h. */
    return 1024 + 18 * strlen(in->match->route->key) + 24 * in->path_len + 18 * in->query_len +
           24 * hb + 6 * in->body_len +
           6 * (strlen(in->method) + (in->source_ip ? strlen(in->source_ip) : 9) +
                strlen(in->request_id) + strlen(in->time));
}

void faas_http_format_time(int64_t wall_ns, char *buf, size_t size)
{
    static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t s = (time_t)(wall_ns / 1000000000);
    struct tm tm;
    if (!gmtime_r(&s, &tm)) {
        snprintf(buf, size, "01/Jan/1970:00:00:00 +0000");
        return;
    }
    snprintf(buf, size, "%02d/%s/%04d:%02d:%02d:%02d +0000", tm.tm_mday, mon[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ==== replies ========================================================= */

static void reply(struct evhttp_request *req, int head, int code)
{
    if (head) {
        struct evbuffer *out = evhttp_request_get_output_buffer(req);
        evbuffer_drain(out, evbuffer_get_length(out));
    }
    evhttp_send_reply(req, code, NULL, NULL);
}

void faas_http_reply_message(struct evhttp_request *req, int head, int code, const char *msg)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evbuffer_add_printf(evhttp_request_get_output_buffer(req), "{\"message\":\"%s\"}", msg);
    reply(req, head, code);
}

/* An invocation's failure (or faas_invoke's refusal) as the client sees it. */
void faas_http_reply_status(struct evhttp_request *req, int head, int status, int refused)
{
    switch (status) {
    case FAAS_EHANDLER:
    case FAAS_ECRASHED:
    case FAAS_EMEMLIMIT:
    case FAAS_EINIT:
    case FAAS_ENOENT:
        faas_http_reply_message(req, head, 502, "Internal Server Error");
        break;
    case FAAS_ETIMEDOUT:
        faas_http_reply_message(req, head, 504, "Endpoint request timed out");
        break;
    case FAAS_ETHROTTLED:
        faas_http_reply_message(req, head, 429, "Too Many Requests");
        break;
    case FAAS_ETOOBIG:
        if (refused)
            faas_http_reply_message(req, head, 413, "Request Entity Too Large");
        else /* the function's response was too large */
            faas_http_reply_message(req, head, 502, "Internal Server Error");
        break;
    case FAAS_ECANCELED:
        faas_http_reply_message(req, head, 503, "Service Unavailable");
        break;
    /* Idempotency refusals are the client's to act on, not server errors. */
    case FAAS_ENOKEY:
        faas_http_reply_message(req, head, 400, "Idempotency key required");
        break;
    case FAAS_EINPROGRESS:
        faas_http_reply_message(req, head, 409,
                                "A request with this idempotency key is in progress");
        break;
    case FAAS_EIDEMPOTENCY_MISMATCH:
        faas_http_reply_message(req, head, 422,
                                "Idempotency key reused with a different payload");
        break;
    default:
        faas_http_reply_message(req, head, 500, "Internal Server Error");
        break;
    }
}

/* Header names a function may not set: framing belongs to libevent. */
static int header_reserved(const char *name)
{
    return strcasecmp(name, "content-length") == 0 ||
           strcasecmp(name, "transfer-encoding") == 0 || strcasecmp(name, "connection") == 0;
}

static int header_name_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", c))
            return 0;
    }
    return 1;
}

/* A header value from JSON: strings as they are, numbers and booleans as
 * text; NULL for anything else. Writes into buf when it must format. */
static const char *header_text(json_t *v, char *buf, size_t size)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    if (json_is_real(v)) {
        snprintf(buf, size, "%.17g", json_real_value(v));
        return buf;
    }
    if (json_is_boolean(v))
        return json_is_true(v) ? "true" : "false";
    return NULL;
}

/* statusCode as an integer or a numeric string; -1 when it is neither. */
static long status_code(json_t *v)
{
    if (json_is_integer(v))
        return (long)json_integer_value(v);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        long n = strtol(s, &end, 10);
        if (*s && !*end)
            return n;
    }
    return -1;
}

/* A response's payload 2.0 fields, found in one walk of its keys. */
struct resp_fields {
    json_t *status, *headers, *cookies, *body, *b64;
};

static void resp_fields(json_t *p, struct resp_fields *f)
{
    const char *key;
    size_t klen;
    json_t *v;

    memset(f, 0, sizeof *f);
    json_object_keylen_foreach(p, key, klen, v) {
        if (klen == 4 && memcmp(key, "body", 4) == 0)
            f->body = v;
        else if (klen == 7 && memcmp(key, "headers", 7) == 0)
            f->headers = v;
        else if (klen == 7 && memcmp(key, "cookies", 7) == 0)
            f->cookies = v;
        else if (klen == 10 && memcmp(key, "statusCode", 10) == 0)
            f->status = v;
        else if (klen == 15 && memcmp(key, "isBase64Encoded", 15) == 0)
            f->b64 = v;
    }
}

/* Payload 2.0's structured response; 0, or -1 when it is malformed. */
static int reply_structured(struct evhttp_request *req, int head, const struct resp_fields *f)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    json_t *body = f->body, *v;
    long code = status_code(f->status);
    const char *key;
    char num[64];
    size_t i;
    int has_ct = 0;

    if (code < 200 || code > 599)
        return -1;
    if (body && !json_is_null(body)) {
        if (json_is_string(body) && json_is_true(f->b64)) {
            /* decoded in place, in the output buffer */
            const char *b64 = json_string_value(body);
            size_t n = json_string_length(body), cap = n / 4 * 3 + 3, bin_len = 0;
            struct evbuffer_iovec vec;
            if (evbuffer_reserve_space(out, (ev_ssize_t)cap, &vec, 1) < 1 ||
                sodium_base642bin(vec.iov_base, cap, b64, n, " \t\r\n", &bin_len, NULL,
                                  sodium_base64_VARIANT_ORIGINAL) != 0)
                return -1;
            vec.iov_len = bin_len;
            if (evbuffer_commit_space(out, &vec, 1) != 0)
                return -1;
        } else if (json_is_string(body)) {
            evbuffer_add(out, json_string_value(body), json_string_length(body));
        } else if (faas_json_dump_evbuffer(out, body) != 0) {
            return -1;
        }
    }
    if (json_is_object(f->headers)) {
        json_object_foreach(f->headers, key, v) {
            const char *text = header_text(v, num, sizeof num);
            if (!text || !header_name_ok(key) || header_reserved(key))
                continue;
            if (evhttp_add_header(oh, key, text) == 0 && strcasecmp(key, "content-type") == 0)
                has_ct = 1;
        }
    }
    if (json_is_array(f->cookies)) {
        for (i = 0; i < json_array_size(f->cookies); i++) {
            const char *c = json_string_value(json_array_get(f->cookies, i));
            if (c)
                evhttp_add_header(oh, "Set-Cookie", c);
        }
    }
    if (!has_ct)
        evhttp_add_header(oh, "Content-Type", "text/plain; charset=utf-8");
    reply(req, head, (int)code);
    return 0;
}

void faas_http_reply_result(struct evhttp_request *req, int head, const struct faas_result *res)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    json_t *p = faas_result_payload(res);
    struct resp_fields f;

    if (res->status != 0) {
        faas_http_reply_status(req, head, res->status, 0);
        return;
    }
    if (json_is_object(p)) {
        resp_fields(p, &f);
        if (f.status) {
            if (reply_structured(req, head, &f) != 0) {
                /* What it had already added is not sent. */
                evbuffer_drain(out, evbuffer_get_length(out));
                evhttp_clear_headers(evhttp_request_get_output_headers(req));
                faas_http_reply_message(req, head, 502, "Internal Server Error");
            }
            return;
        }
    }
    if (faas_json_dump_evbuffer(out, p ? p : json_null()) != 0) {
        evbuffer_drain(out, evbuffer_get_length(out));
        faas_http_reply_message(req, head, 502, "Internal Server Error");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    reply(req, head, 200);
}

/*
 * http.c - the HTTP gateway: api: routes served on an evhttp server, each
 * request turned into API Gateway's HTTP API payload 2.0 event, invoked
 * request/response, and the result mapped back to an HTTP response with
 * payload 2.0's rules.
 *
 * The route table (route.c) is pure: a trie of path segments that finds a
 * request's most specific route without allocating.
 *
 * The event builder (declared in http.h) is pure too: request parts in, a
 * payload 2.0 event out, shared with the event fuzz target. Per request the
 * gateway walks the headers once, formats the time once a second, shares
 * the strings that repeat between events (a cache, see http.h), hands the
 * event to faas_invoke_fn without the copy or the size walk faas_invoke
 * would make when the parts' lengths already bound its size, reuses its
 * pending-request records and finds a response's fields in one walk.
 *
 * The gateway is one evhttp generic callback, on the host's server
 * (faas_http_attach: the host's own evhttp_set_cb routes keep theirs) or on
 * a server of our own (faas_http_bind). A request that matches is held until
 * its result arrives: the reply is sent from the result callback. A held
 * request sits on h->pending with the connection's close callback pointing
 * at it, so a connection freed before the result (evhttp_free, a failed
 * connection) only clears the pointer, and the late result is dropped. At
 * teardown the pending requests are answered 503 and orphaned: the
 * invocation's callback, which still comes, finds nothing to answer.
 *
 * Requests under /2015-03-31/functions/ go to Lambda's Invoke API
 * (lambda_api.c) before any route is matched, unless rt->opts.invoke_api
 * is 0; it holds its requests on the same pending list (faas_http_hold_*).
 *
 * Limits (faas_runtime_opts): a body over http_max_body is 413 and headers
 * over http_max_headers bytes (names, values, ": " and CRLF) are 431, each
 * with a JSON body; the Invoke API checks its bodies against Lambda's
 * payload limits instead. On a server of our own, libevent itself cuts a
 * request off before reading it all when it is over twice the largest of
 * these limits (its own 413, with libevent's HTML body), so a client cannot
 * make us buffer without bound; an attached server keeps the host's limits.
 * Connections, on either server, are bounded in time and number, and
 * accepting pauses when it fails (see "connections" and "listeners").
 *
 * Draining (rt->draining, faas_http_drain): idle connections are closed,
 * every new request is answered 503 with Connection: close, and requests
 * being served finish, their connections closing after the response.
 *
 * Choices where API Gateway leaves room: a trailing "*" segment is {proxy+}
 * (one or more segments under its parent, not the parent itself; the tail
 * is pathParameters.proxy);
 * a request without Content-Type counts as textual; a structured response
 * without a content-type header gets "text/plain; charset=utf-8"; a response
 * the function made too large is 502, a request event too large is 413; a
 * cancelled invocation (teardown, unregister) is 503; header values and
 * parameters that are not UTF-8 reach the event with U+FFFD for bad bytes.
 * Everything runs on the loop thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <sodium.h>

#include "faas_int.h"
#include "http.h"

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

/* ==== the gateway ===================================================== */

/* Warnings that repeat (accept failures, refused connections) are logged
 * at most once a second each, with the count of those left out. They are
 * made inside evhttp's accept path and a listener's error callback, which
 * touch their state after we return: a log callback that freed the runtime
 * there would pull it from under them. So a warning's line is kept here
 * and delivered by adopt_cb, from the loop, inside faas_rt_enter. */
enum { WARN_ACCEPT, WARN_LIMIT, WARN_N };
#define WARN_LINE_MAX 320

struct faas_http {
    struct faas_runtime *rt;
    struct faas_route_table *routes;
    struct evhttp *http;             /* NULL until attached or bound */
    int own;                         /* http is ours: evhttp_free it */
    uint16_t port;
    struct faas_list pending;        /* struct faas_http_hold */
    struct faas_list spare;          /* freed records, for reuse */
    size_t nspare;
    int time_ok;                     /* time_text is for time_s */
    int64_t time_s;
    char time_text[40];
    struct faas_http_event_cache cache; /* values shared between events */
    /* connections (see "connections" below) */
    struct faas_list fresh;          /* struct http_conn not yet adopted */
    struct faas_list conns;          /* adopted struct http_conn */
    struct faas_list conn_spare;     /* released records, for reuse */
    size_t nconns;                   /* counted against the limit */
    size_t nconn_spare;
    struct event *adopt_ev;          /* adopts h->fresh, first of all events */
    const struct timeval *tv_read;   /* libevent common timeouts */
    const struct timeval *tv_idle;
    struct http_conn **by_fd;        /* adopted connections by descriptor */
    size_t by_fd_len;
    struct faas_list listeners;      /* struct http_listener */
    uint64_t accepted;               /* connections accepted, ever */
    uint64_t warn_at[WARN_N];
    unsigned warn_suppressed[WARN_N];
    int warn_ok[WARN_N];
    const char *warn_action[WARN_N]; /* a kept line's action, or NULL */
    char warn_line[WARN_N][WARN_LINE_MAX];
    int busy;                        /* host code runs inside a callback of
                                        the server: faas_http_detach waits */
};

/* Spare pending records kept at most. */
#define SPARE_MAX 256

/* Held requests are struct faas_http_hold (faas_int.h): the Invoke API
 * (lambda_api.c) holds its requests here too. */

static struct faas_http *http_get(struct faas_runtime *rt)
{
    struct faas_http *h = rt->http;
    if (h)
        return h;
    h = faas_calloc(1, sizeof *h);
    if (!h)
        return NULL;
    if (faas_route_table_new(&h->routes) != 0) {
        free(h);
        return NULL;
    }
    h->rt = rt;
    faas_list_init(&h->pending);
    faas_list_init(&h->spare);
    faas_list_init(&h->fresh);
    faas_list_init(&h->conns);
    faas_list_init(&h->conn_spare);
    faas_list_init(&h->listeners);
    rt->http = h;
    return h;
}

int faas_http_route_add(struct faas_runtime *rt, struct faas_mapping *m)
{
    struct faas_http *h;
    struct faas_route *r;
    int rc;

    if (!rt || !m || !m->pattern)
        return FAAS_EINVAL;
    if ((rc = faas_route_parse(m->pattern, &r)) != 0)
        return rc;
    if (!(h = http_get(rt))) {
        faas_route_free(r);
        return FAAS_ENOMEM;
    }
    r->owner = m;
    if ((rc = faas_route_table_add(h->routes, r)) != 0) {
        faas_route_free(r);
        return rc;
    }
    m->route = r;
    return 0;
}

void faas_http_route_remove(struct faas_runtime *rt, struct faas_mapping *m)
{
    struct faas_route *r = m ? m->route : NULL;
    if (!r)
        return;
    m->route = NULL;
    if (rt && rt->http)
        faas_route_table_remove(rt->http->routes, r);
    faas_route_free(r);
}

/* ---- replies ---------------------------------------------------------- */

static void reply(struct evhttp_request *req, int head, int code)
{
    if (head) {
        struct evbuffer *out = evhttp_request_get_output_buffer(req);
        evbuffer_drain(out, evbuffer_get_length(out));
    }
    evhttp_send_reply(req, code, NULL, NULL);
}

static void reply_message(struct evhttp_request *req, int head, int code, const char *msg)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evbuffer_add_printf(evhttp_request_get_output_buffer(req), "{\"message\":\"%s\"}", msg);
    reply(req, head, code);
}

/* An invocation's failure (or faas_invoke's refusal) as the client sees it. */
static void reply_status(struct evhttp_request *req, int head, int status, int refused)
{
    switch (status) {
    case FAAS_EHANDLER:
    case FAAS_ECRASHED:
    case FAAS_EMEMLIMIT:
    case FAAS_EINIT:
    case FAAS_ENOENT:
        reply_message(req, head, 502, "Internal Server Error");
        break;
    case FAAS_ETIMEDOUT:
        reply_message(req, head, 504, "Endpoint request timed out");
        break;
    case FAAS_ETHROTTLED:
        reply_message(req, head, 429, "Too Many Requests");
        break;
    case FAAS_ETOOBIG:
        if (refused)
            reply_message(req, head, 413, "Request Entity Too Large");
        else /* the function's response was too large */
            reply_message(req, head, 502, "Internal Server Error");
        break;
    case FAAS_ECANCELED:
        reply_message(req, head, 503, "Service Unavailable");
        break;
    /* Idempotency refusals are the client's to act on, not server errors. */
    case FAAS_ENOKEY:
        reply_message(req, head, 400, "Idempotency key required");
        break;
    case FAAS_EINPROGRESS:
        reply_message(req, head, 409, "A request with this idempotency key is in progress");
        break;
    case FAAS_EIDEMPOTENCY_MISMATCH:
        reply_message(req, head, 422, "Idempotency key reused with a different payload");
        break;
    default:
        reply_message(req, head, 500, "Internal Server Error");
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

/* JSON text straight into an evbuffer, in pieces of up to 4 KiB. */
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

static void reply_result(struct evhttp_request *req, int head, const struct faas_result *res)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    json_t *p = faas_result_payload(res);
    struct resp_fields f;

    if (res->status != 0) {
        reply_status(req, head, res->status, 0);
        return;
    }
    if (json_is_object(p)) {
        resp_fields(p, &f);
        if (f.status) {
            if (reply_structured(req, head, &f) != 0) {
                /* What it had already added is not sent. */
                evbuffer_drain(out, evbuffer_get_length(out));
                evhttp_clear_headers(evhttp_request_get_output_headers(req));
                reply_message(req, head, 502, "Internal Server Error");
            }
            return;
        }
    }
    if (faas_json_dump_evbuffer(out, p ? p : json_null()) != 0) {
        evbuffer_drain(out, evbuffer_get_length(out));
        reply_message(req, head, 502, "Internal Server Error");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    reply(req, head, 200);
}

/* ---- connections ------------------------------------------------------ */

/*
 * Every connection of the server is bounded in time and the server in
 * connections (runtime options http_read_timeout_ms, http_idle_timeout_ms,
 * http_max_connections). libevent 2.1 has no hook for a new connection but
 * the bufferevent callback (evhttp_set_bevcb), so the gateway makes each
 * connection's bufferevent itself and keeps a record of it:
 *
 *            first byte              timer fires, evhttp not reading
 *   IDLE ----------------> READING -------------------------------> BUSY
 *    ^  idle timer          read timer, not reset by later bytes     no timer
 *    |                          |                                     |
 *    +--- the response's last byte is written (from either) ----------+
 *
 * Nothing marks the end of reading a request: the read timer goes on while
 * it is served, and BUSY is where its firing finds evhttp serving (see
 * below). One timer per connection, on two of libevent's common timeouts
 * (O(1) to add), moved twice per request. Bytes are seen through
 * callbacks on the bufferevent's input and output buffers, which cost a
 * comparison per read or write. When the timer fires and evhttp is not reading (a request is
 * being served, or its response written) the connection is left alone:
 * the function's timeout bounds the first, and a response whose writing
 * made no progress for an idle period closes the connection. A request a
 * host's own evhttp_set_cb callback keeps open longer than the read
 * timeout is bounded the same way, since evhttp stops reading then too.
 *
 * evhttp makes its connection right after the callback returns, so the
 * record learns it ("adopts" it: the bufferevent's callback argument is
 * the connection) from an event activated in the callback, at the highest
 * priority, before the connection can read. Adoption sets the connection's
 * close callback, which releases the record; until then the record holds
 * a reference to the bufferevent, so a connection evhttp dropped at once
 * is noticed (its callbacks are cleared) rather than touched. A held
 * request (struct faas_http_hold) on a connection with a record is the
 * record's: `hold`, found again through h->by_fd.
 *
 * Past http_max_connections a connection is still accepted (so it does not
 * wait in the backlog) and closed when adopted. A connection the gateway
 * could not give a record to (out of memory, or a host's own bufferevent
 * callback set after faas_http_attach) is served without these bounds.
 */
enum conn_state { CONN_IDLE, CONN_READING, CONN_BUSY };

struct http_conn {
    struct faas_list link;           /* h->fresh, h->conns or h->conn_spare */
    struct faas_http *h;
    struct bufferevent *bev;
    struct evhttp_connection *evcon; /* NULL until adopted */
    struct faas_http_hold *hold;     /* a request held on it, or NULL */
    struct evbuffer_cb_entry *in_cb, *out_cb;
    struct event timer;
    enum conn_state state;
    int counted;                     /* counts against http_max_connections */
    evutil_socket_t fd;              /* its h->by_fd slot; -1: none */
    unsigned out_progress, out_seen; /* writes, and those the timer saw */
};

/* Released records kept at most. */
#define CONN_SPARE_MAX 256
/* Accepting, paused after a failure: first for this long, doubling to the
 * most. */
#define ACCEPT_PAUSE_MS 100u
#define ACCEPT_PAUSE_MAX_MS 1600u

static uint32_t read_timeout_ms(const struct faas_runtime *rt)
{
    return rt->opts.http_read_timeout_ms ? rt->opts.http_read_timeout_ms : 10000u;
}

static uint32_t idle_timeout_ms(const struct faas_runtime *rt)
{
    return rt->opts.http_idle_timeout_ms ? rt->opts.http_idle_timeout_ms : 60000u;
}

static size_t max_connections(const struct faas_runtime *rt)
{
    return rt->opts.http_max_connections ? rt->opts.http_max_connections : 1024u;
}

static void warn(struct faas_http *h, int kind, const char *action, const char *fmt, ...)
    FAAS_PRINTF(4, 5);

/* A FAAS_LOG_WARNING record, at most one a second of each kind: kept for
 * adopt_cb to deliver (see WARN_N), never logged from here. */
static void warn(struct faas_http *h, int kind, const char *action, const char *fmt, ...)
{
    uint64_t now = faas_now_ns(h->rt);
    char line[256];
    va_list ap;

    if (h->warn_ok[kind] && now - h->warn_at[kind] < 1000000000u) {
        h->warn_suppressed[kind]++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (h->warn_suppressed[kind])
        snprintf(h->warn_line[kind], sizeof h->warn_line[kind],
                 "%s (%u more like it in the last second)", line, h->warn_suppressed[kind]);
    else
        snprintf(h->warn_line[kind], sizeof h->warn_line[kind], "%s", line);
    h->warn_action[kind] = action;
    h->warn_ok[kind] = 1;
    h->warn_at[kind] = now;
    h->warn_suppressed[kind] = 0;
    if (h->adopt_ev)
        event_active(h->adopt_ev, EV_TIMEOUT, 0);
}

/* Delivers the kept warnings. The log callback may free the runtime (h
 * with it): the free waits for faas_rt_leave, and nothing is touched
 * after it. */
static void warn_deliver(struct faas_http *h)
{
    struct faas_runtime *rt = h->rt;
    int kind;

    faas_rt_enter(rt);
    h->busy++; /* the log callback may not detach the server under us */
    for (kind = 0; kind < WARN_N; kind++) {
        const char *action = h->warn_action[kind];
        if (!action)
            continue;
        h->warn_action[kind] = NULL;
        faas_log_event(rt, FAAS_LOG_WARNING, NULL, NULL, action, NULL, "%s",
                       h->warn_line[kind]);
    }
    h->busy--;
    faas_rt_leave(rt);
}

/* The record of an adopted connection, or NULL. */
static struct http_conn *conn_of(struct faas_http *h, struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    struct http_conn *c;

    if (!h || fd < 0 || (size_t)fd >= h->by_fd_len)
        return NULL;
    c = h->by_fd[fd];
    return c && c->evcon == evcon ? c : NULL;
}

/* Takes c off its connection (callbacks, timer, slot) and back to the
 * spares. The connection itself is not touched beyond its buffers. */
static void conn_release(struct http_conn *c)
{
    struct faas_http *h = c->h;

    if (c->in_cb)
        evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
    if (c->out_cb)
        evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
    event_del(&c->timer);
    if (c->fd >= 0 && (size_t)c->fd < h->by_fd_len && h->by_fd[c->fd] == c)
        h->by_fd[c->fd] = NULL;
    if (c->counted)
        h->nconns--;
    faas_list_remove(&c->link);
    if (h->nconn_spare < CONN_SPARE_MAX) {
        faas_list_insert_head(&h->conn_spare, &c->link);
        h->nconn_spare++;
    } else {
        free(c);
    }
}

static void pending_closecb(struct evhttp_connection *evcon, void *arg);

/* evhttp is freeing the connection. */
static void conn_closecb(struct evhttp_connection *evcon, void *arg)
{
    struct http_conn *c = arg;
    if (c->hold)
        pending_closecb(evcon, c->hold);
    c->hold = NULL;
    conn_release(c);
}

/* Room for descriptor fd in h->by_fd; 0 or -1. */
static int by_fd_grow(struct faas_http *h, evutil_socket_t fd)
{
    size_t n = h->by_fd_len ? h->by_fd_len : 64;
    struct http_conn **v;

    while (n <= (size_t)fd)
        n *= 2;
    if (!(v = faas_calloc(n, sizeof *v)))
        return -1;
    if (h->by_fd_len)
        memcpy(v, h->by_fd, h->by_fd_len * sizeof *v);
    free(h->by_fd);
    h->by_fd = v;
    h->by_fd_len = n;
    return 0;
}

/*
 * Learns c's evhttp connection (see above). Returns 0; or -1 when evhttp
 * has already dropped it, or c cannot be given a slot (out of memory: the
 * connection is then served unbounded): c is released.
 */
static int conn_adopt(struct http_conn *c)
{
    struct faas_http *h = c->h;
    struct bufferevent *bev = c->bev;
    bufferevent_data_cb readcb;
    bufferevent_event_cb eventcb;
    void *arg = NULL;
    evutil_socket_t fd;

    if (c->evcon)
        return 0;
    bufferevent_getcb(bev, &readcb, NULL, &eventcb, &arg);
    fd = bufferevent_getfd(bev);
    if ((!readcb && !eventcb) || !arg || fd < 0) {
        /* evhttp freed it (bufferevent_free clears the callbacks); our
         * reference kept its memory and buffers */
        conn_release(c);
        bufferevent_decref(bev);
        return -1;
    }
    c->evcon = arg;
    bufferevent_decref(bev); /* evhttp holds it */
    if ((size_t)fd >= h->by_fd_len && by_fd_grow(h, fd) != 0) {
        conn_release(c);
        return -1;
    }
    c->fd = fd;
    h->by_fd[fd] = c;
    faas_list_remove(&c->link);
    faas_list_insert_tail(&h->conns, &c->link);
    evhttp_connection_set_closecb(c->evcon, conn_closecb, c);
    return 0;
}

/* Whether evhttp is reading a request on c: not serving one (it stops
 * reading) nor writing its response (it reads then only to see a close,
 * without a read callback). */
static int conn_reading(struct http_conn *c)
{
    bufferevent_data_cb readcb;

    if (!(bufferevent_get_enabled(c->bev) & EV_READ))
        return 0;
    bufferevent_getcb(c->bev, &readcb, NULL, NULL, NULL);
    return readcb != NULL;
}

/* Closes c's connection now (not from inside evhttp's callbacks). */
static void conn_close(struct http_conn *c)
{
    evhttp_connection_free(c->evcon); /* conn_closecb releases c */
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    struct bufferevent *bev = c->bev;
    (void)fd;
    (void)what;

    if (conn_adopt(c) != 0)
        return;
    if (!c->counted) {
        conn_close(c);
        return;
    }
    if (!conn_reading(c)) {
        /* evhttp is serving a request or writing its response */
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
            c->state = CONN_BUSY;
            return;
        }
        if (c->out_progress != c->out_seen) {
            c->out_seen = c->out_progress;
            event_add(&c->timer, c->h->tv_idle);
            return;
        }
    }
    conn_close(c);
}

/* Bytes read: the first of a request starts its read timer. */
static void conn_in_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct http_conn *c = arg;
    (void)buf;

    if (info->n_added == 0 || c->state != CONN_IDLE)
        return;
    c->state = CONN_READING;
    event_add(&c->timer, c->h->tv_read);
}

/* Bytes written: the last of a response (not of a "100 Continue", written
 * while evhttp reads) makes the connection idle, or starts the next
 * request's read timer if it has begun to come; draining, an idle
 * connection then closes. */
static void conn_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    static const struct timeval now = { 0, 0 };
    struct http_conn *c = arg;

    if (info->n_deleted == 0)
        return;
    c->out_progress++;
    if (evbuffer_get_length(buf) != 0 || conn_reading(c))
        return;
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) != 0) {
        c->state = CONN_READING;
        event_add(&c->timer, c->h->tv_read);
        return;
    }
    c->state = CONN_IDLE;
    event_add(&c->timer, c->h->rt->draining ? &now : c->h->tv_idle);
}

static void listeners_watch(struct faas_http *h);

static void adopt_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_http *h = arg;
    struct faas_list *e;
    (void)fd;
    (void)what;

    while ((e = h->fresh.next) != &h->fresh) {
        struct http_conn *c = FAAS_CONTAINER_OF(e, struct http_conn, link);
        if (conn_adopt(c) == 0 && !c->counted)
            conn_close(c);
    }
    if (!h->own)
        listeners_watch(h); /* the host may have bound more since */
    warn_deliver(h); /* last: h may be gone after it */
}

/* evhttp's new connection: its bufferevent, and a record of it. */
static struct bufferevent *conn_bevcb(struct event_base *base, void *arg)
{
    struct faas_http *h = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    struct faas_list *e;
    struct http_conn *c;

    if (!bev)
        return NULL; /* evhttp makes one itself */
    h->accepted++;
    if ((e = faas_list_pop_head(&h->conn_spare)) != NULL) {
        h->nconn_spare--;
        c = FAAS_CONTAINER_OF(e, struct http_conn, link);
    } else if (!(c = faas_malloc(sizeof *c))) {
        return bev; /* unbounded */
    }
    memset(c, 0, sizeof *c);
    c->h = h;
    c->bev = bev;
    c->fd = -1;
    c->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), conn_in_cb, c);
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), conn_out_cb, c);
    if (!c->in_cb || !c->out_cb) {
        if (c->in_cb)
            evbuffer_remove_cb_entry(bufferevent_get_input(bev), c->in_cb);
        free(c);
        return bev;
    }
    evtimer_assign(&c->timer, base, conn_timer_cb, c);
    faas_list_insert_tail(&h->fresh, &c->link);
    bufferevent_incref(bev);
    if (h->nconns < max_connections(h->rt)) {
        c->counted = 1;
        h->nconns++;
        event_add(&c->timer, h->tv_idle);
    } else {
        static const struct timeval now = { 0, 0 };
        event_add(&c->timer, &now); /* closed even if not adopted first */
        warn(h, WARN_LIMIT, "connection-limit",
             "HTTP connection refused: %zu connections open (http_max_connections)",
             h->nconns);
    }
    event_active(h->adopt_ev, EV_TIMEOUT, 0);
    return bev;
}

/* ---- listeners: accepting pauses when it fails ------------------------- */

/*
 * When accept fails for want of descriptors (EMFILE, ENFILE), the
 * connection waits in the backlog and the listening socket stays readable:
 * libevent would call accept again at once, for ever. The gateway's error
 * callback on each listener disables it, logs (rate-limited) and enables it
 * again after a pause that doubles while accepting keeps failing.
 *
 * libevent gives an error callback the evhttp as its argument, not ours,
 * so the callbacks find their listener in a process-wide registry (a
 * mutex: runtimes may live on different threads). An attached server's
 * listeners are the host's: they are watched when the gateway attaches and
 * as connections come (a host may bind after attaching), and a listener
 * the host removed is never touched again (it is looked for among the
 * server's sockets first).
 */
struct http_listener {
    struct faas_list link;           /* h->listeners */
    struct faas_list reg;            /* the registry */
    struct faas_http *h;
    struct evconnlistener *lev;
    struct event_base *base;         /* h's: entries of other loops are
                                        never touched */
    struct event timer;
    unsigned pause_ms;               /* the next pause */
    uint64_t accepted;               /* h->accepted at the last failure */
    int paused;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct faas_list reg_list = { &reg_list, &reg_list };

struct bound_find {
    struct evconnlistener *lev;
    int found;
};

static void bound_find_cb(struct evhttp_bound_socket *b, void *arg)
{
    struct bound_find *f = arg;
    if (evhttp_bound_socket_get_listener(b) == f->lev)
        f->found = 1;
}

/* Whether lev is still one of h's server's listeners. */
static int listener_live(struct faas_http *h, struct evconnlistener *lev)
{
    struct bound_find f = { lev, 0 };
    if (!h->http)
        return 0;
    evhttp_foreach_bound_socket(h->http, bound_find_cb, &f);
    return f.found;
}

static void listener_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_listener *l = arg;
    (void)fd;
    (void)what;

    l->paused = 0;
    if (listener_live(l->h, l->lev))
        evconnlistener_enable(l->lev);
}

static void listener_free(struct http_listener *l)
{
    pthread_mutex_lock(&reg_lock);
    faas_list_remove(&l->reg);
    pthread_mutex_unlock(&reg_lock);
    faas_list_remove(&l->link);
    event_del(&l->timer);
    free(l);
}

/* lev's entry, or NULL. An entry of a listener the host has since freed
 * (its address now another's) is dropped on the way. */
static struct http_listener *listener_find(struct evconnlistener *lev)
{
    struct event_base *base = evconnlistener_get_base(lev);
    struct http_listener *l;
    struct faas_list *e;

    for (;;) {
        l = NULL;
        pthread_mutex_lock(&reg_lock);
        for (e = reg_list.next; e != &reg_list; e = e->next) {
            struct http_listener *x = FAAS_CONTAINER_OF(e, struct http_listener, reg);
            if (x->lev == lev && x->base == base) {
                l = x;
                break;
            }
        }
        pthread_mutex_unlock(&reg_lock);
        if (!l || listener_live(l->h, lev))
            return l;
        listener_free(l);
    }
}

static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct http_listener *l = listener_find(lev);
    struct timeval tv;
    (void)arg;

    if (!l || l->paused)
        return;
    if (l->accepted != l->h->accepted)
        l->pause_ms = ACCEPT_PAUSE_MS; /* it accepted since: start over */
    l->accepted = l->h->accepted;
    evconnlistener_disable(lev);
    l->paused = 1;
    tv = faas_ms_to_tv(l->pause_ms);
    event_add(&l->timer, &tv);
    warn(l->h, WARN_ACCEPT, "accept", "HTTP gateway cannot accept connections: %s; paused %u ms",
         strerror(err), l->pause_ms);
    if (l->pause_ms < ACCEPT_PAUSE_MAX_MS)
        l->pause_ms *= 2;
}

static void listener_watch_cb(struct evhttp_bound_socket *b, void *arg)
{
    struct faas_http *h = arg;
    struct evconnlistener *lev = evhttp_bound_socket_get_listener(b);
    struct http_listener *l;
    struct faas_list *e;

    for (e = h->listeners.next; e != &h->listeners; e = e->next)
        if (FAAS_CONTAINER_OF(e, struct http_listener, link)->lev == lev)
            return;
    if (!(l = faas_calloc(1, sizeof *l)))
        return; /* unwatched */
    l->h = h;
    l->lev = lev;
    l->base = h->rt->base;
    l->pause_ms = ACCEPT_PAUSE_MS;
    l->accepted = h->accepted;
    evtimer_assign(&l->timer, h->rt->base, listener_resume_cb, l);
    faas_list_insert_tail(&h->listeners, &l->link);
    pthread_mutex_lock(&reg_lock);
    faas_list_insert_tail(&reg_list, &l->reg);
    pthread_mutex_unlock(&reg_lock);
    evconnlistener_set_error_cb(lev, accept_error_cb);
}

/* Watches the server's listeners not yet watched. */
static void listeners_watch(struct faas_http *h)
{
    evhttp_foreach_bound_socket(h->http, listener_watch_cb, h);
}

/* Stops watching; a live listener gets libevent's behaviour back (and is
 * enabled again if paused). */
static void listeners_unwatch(struct faas_http *h)
{
    struct faas_list *e;

    while ((e = h->listeners.next) != &h->listeners) {
        struct http_listener *l = FAAS_CONTAINER_OF(e, struct http_listener, link);
        if (listener_live(h, l->lev)) {
            evconnlistener_set_error_cb(l->lev, NULL);
            if (l->paused)
                evconnlistener_enable(l->lev);
        }
        listener_free(l);
    }
}

/* Sets the connection machinery up on h->http; 0 or FAAS_ENOMEM. */
static int conns_start(struct faas_http *h)
{
    struct faas_runtime *rt = h->rt;
    struct timeval tv;

    if (!h->adopt_ev) {
        if (!(h->adopt_ev = event_new(rt->base, -1, 0, adopt_cb, h)))
            return FAAS_ENOMEM;
        event_priority_set(h->adopt_ev, 0);
    }
    tv = faas_ms_to_tv(read_timeout_ms(rt));
    h->tv_read = event_base_init_common_timeout(rt->base, &tv);
    tv = faas_ms_to_tv(idle_timeout_ms(rt));
    h->tv_idle = event_base_init_common_timeout(rt->base, &tv);
    if (!h->tv_read || !h->tv_idle)
        return FAAS_ENOMEM;
    evhttp_set_bevcb(h->http, conn_bevcb, h);
    return 0;
}

/* The gateway goes; the server may stay (attached). Own server: called
 * after its evhttp_free, which released every adopted record. */
static void conns_stop(struct faas_http *h)
{
    struct faas_list *e;

    while ((e = h->fresh.next) != &h->fresh)
        conn_adopt(FAAS_CONTAINER_OF(e, struct http_conn, link));
    while ((e = h->conns.next) != &h->conns) {
        struct http_conn *c = FAAS_CONTAINER_OF(e, struct http_conn, link);
        evhttp_connection_set_closecb(c->evcon, NULL, NULL);
        conn_release(c);
    }
    while ((e = faas_list_pop_head(&h->conn_spare)) != NULL)
        free(FAAS_CONTAINER_OF(e, struct http_conn, link));
    if (h->adopt_ev)
        event_free(h->adopt_ev);
    free(h->by_fd);
    h->adopt_ev = NULL; /* a later attach or bind starts anew */
    h->by_fd = NULL;
    h->by_fd_len = 0;
}

void faas_http_drain(struct faas_runtime *rt)
{
    struct faas_http *h = rt ? rt->http : NULL;
    struct faas_list *e, *next;

    if (!h)
        return;
    while ((e = h->fresh.next) != &h->fresh)
        conn_adopt(FAAS_CONTAINER_OF(e, struct http_conn, link));
    /* Idle: evhttp reads, and nothing of a request has come. */
    for (e = h->conns.next; e != &h->conns; e = next) {
        struct http_conn *c = FAAS_CONTAINER_OF(e, struct http_conn, link);
        next = e->next;
        if (c->state == CONN_IDLE && conn_reading(c) &&
            evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            conn_close(c);
    }
}

/* ---- pending requests ------------------------------------------------- */

static void pending_closecb(struct evhttp_connection *evcon, void *arg)
{
    struct faas_http_hold *p = arg;
    (void)evcon;
    if (!p->req)
        return;
    /* A request libevent detached from its failed connection is ours to
     * free; one still on the connection goes with it. */
    if (evhttp_request_get_connection(p->req) == NULL)
        evhttp_request_free(p->req);
    p->req = NULL;
    p->evcon = NULL;
}

/* Takes p's request back from the connection, for a reply. */
static struct evhttp_request *pending_take(struct faas_http_hold *p)
{
    struct evhttp_request *req = p->req;
    struct http_conn *c;
    if (!req)
        return NULL;
    if (p->evcon && (c = conn_of(p->h, p->evcon)) != NULL)
        c->hold = NULL;
    else if (p->evcon)
        evhttp_connection_set_closecb(p->evcon, NULL, NULL);
    p->req = NULL;
    p->evcon = NULL;
    return req;
}

static struct faas_http_hold *pending_new(struct faas_http *h)
{
    struct faas_list *e = faas_list_pop_head(&h->spare);
    struct faas_http_hold *p;

    if (e) {
        h->nspare--;
        p = FAAS_CONTAINER_OF(e, struct faas_http_hold, link);
    } else if (!(p = faas_malloc(sizeof *p))) {
        return NULL;
    }
    memset(p, 0, sizeof *p);
    p->h = h;
    faas_list_init(&p->link);
    return p;
}

/* p is on no list: to the spares, or freed. h NULL: the gateway is gone. */
static void pending_put(struct faas_http *h, struct faas_http_hold *p)
{
    if (h && h->nspare < SPARE_MAX) {
        faas_list_insert_head(&h->spare, &p->link);
        h->nspare++;
    } else {
        free(p);
    }
}

/* Holds p's request until its result: on the pending list, with the
 * connection's close callback pointing at p. */
static void pending_wait(struct faas_http *h, struct faas_http_hold *p,
                         struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct faas_list *e;
    struct http_conn *c;

    p->req = req;
    faas_list_insert_tail(&h->pending, &p->link);
    p->evcon = evcon;
    if (!evcon)
        return;
    /* A connection with a record keeps the record's close callback. */
    if (!(c = conn_of(h, evcon)) && !faas_list_empty(&h->fresh)) {
        while ((e = h->fresh.next) != &h->fresh)
            conn_adopt(FAAS_CONTAINER_OF(e, struct http_conn, link));
        c = conn_of(h, evcon);
    }
    if (c)
        c->hold = p;
    else
        evhttp_connection_set_closecb(evcon, pending_closecb, p);
}

struct faas_http_hold *faas_http_hold_new(struct faas_runtime *rt)
{
    return rt->http ? pending_new(rt->http) : NULL;
}

void faas_http_hold_wait(struct faas_http_hold *p, struct evhttp_request *req)
{
    pending_wait(p->h, p, req);
}

struct evhttp_request *faas_http_hold_take(struct faas_http_hold *p)
{
    struct evhttp_request *req = pending_take(p);
    faas_list_remove(&p->link);
    return req;
}

void faas_http_hold_put(struct faas_http_hold *p)
{
    pending_put(p->h, p);
}

static void result_cb(const struct faas_result *res, void *arg)
{
    struct faas_http_hold *p = arg;
    struct evhttp_request *req = pending_take(p);

    faas_list_remove(&p->link);
    if (req)
        reply_result(req, p->head, res);
    pending_put(p->h, p);
}

/* ---- the request callback --------------------------------------------- */

static enum faas_http_method req_method(struct evhttp_request *req, const char **name)
{
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        *name = "GET";
        return FAAS_HTTP_GET;
    case EVHTTP_REQ_POST:
        *name = "POST";
        return FAAS_HTTP_POST;
    case EVHTTP_REQ_PUT:
        *name = "PUT";
        return FAAS_HTTP_PUT;
    case EVHTTP_REQ_PATCH:
        *name = "PATCH";
        return FAAS_HTTP_PATCH;
    case EVHTTP_REQ_DELETE:
        *name = "DELETE";
        return FAAS_HTTP_DELETE;
    case EVHTTP_REQ_HEAD:
        *name = "HEAD";
        return FAAS_HTTP_HEAD;
    case EVHTTP_REQ_OPTIONS:
        *name = "OPTIONS";
        return FAAS_HTTP_OPTIONS;
    case EVHTTP_REQ_TRACE:
        *name = "TRACE";
        return FAAS_HTTP_OTHER;
    case EVHTTP_REQ_CONNECT:
        *name = "CONNECT";
        return FAAS_HTTP_OTHER;
    }
    *name = "GET";
    return FAAS_HTTP_OTHER;
}

static size_t max_body(const struct faas_runtime *rt)
{
    return rt->opts.http_max_body ? rt->opts.http_max_body : rt->opts.max_sync_payload;
}

static size_t max_headers(const struct faas_runtime *rt)
{
    return rt->opts.http_max_headers ? rt->opts.http_max_headers : 16u * 1024u;
}

/* requestContext.time, formatted once a second. */
static const char *http_time(struct faas_http *h, int64_t wall_ns)
{
    int64_t s = wall_ns / 1000000000;
    if (!h->time_ok || s != h->time_s) {
        faas_http_format_time(wall_ns, h->time_text, sizeof h->time_text);
        h->time_s = s;
        h->time_ok = 1;
    }
    return h->time_text;
}

/* Headers on the stack up to this many. */
#define HDRS_SMALL 32

#define INVOKE_API_PREFIX "/2015-03-31/functions/"
#define INVOKE_API_PREFIX_LEN (sizeof INVOKE_API_PREFIX - 1)

static void request_cb(struct evhttp_request *req, void *arg)
{
    struct faas_http *h = arg;
    struct faas_runtime *rt = h->rt;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq *inh = evhttp_request_get_input_headers(req);
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct faas_http_header small[HDRS_SMALL], *hdrs = small;
    struct faas_http_event_in in;
    char reqid[FAAS_REQUEST_ID_SIZE], *peer = NULL;
    const char *mname;
    enum faas_http_method method = req_method(req, &mname);
    int head = method == FAAS_HTTP_HEAD, rc;
    size_t nh = 0, hbytes = 0, limit = rt->opts.max_sync_payload, bound;
    const struct faas_route *r;
    struct faas_route_match m;
    struct faas_http_hold *p;
    struct evkeyval *kv;
    struct faas_fn *fn;
    ev_uint16_t peer_port = 0;
    int64_t wall;
    json_t *ev;

    if (!path || !*path)
        path = "/";
    /* Lambda's Invoke API comes first: routes cannot shadow it. It answers
     * a draining runtime itself, in its own words. */
    if (rt->opts.invoke_api && strncmp(path, INVOKE_API_PREFIX, INVOKE_API_PREFIX_LEN) == 0) {
        faas_rt_enter(rt); /* h outlives the request: a free waits */
        h->busy++;
        faas_invoke_api_request(rt, req);
        h->busy--;
        faas_rt_leave(rt);
        return;
    }
    if (rt->draining) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        reply_message(req, head, 503, "Service Unavailable");
        return;
    }
    if (rt->closing || rt->free_requested) {
        reply_message(req, head, 503, "Service Unavailable");
        return;
    }
    memset(&in, 0, sizeof in);
    in.path = path;
    in.path_len = strlen(path);
    r = faas_route_match(h->routes, method, path, in.path_len, &m);
    if (!r) {
        reply_message(req, head, 404, "Not Found");
        return;
    }
    /* One walk: the sizes, and the first HDRS_SMALL headers. */
    TAILQ_FOREACH(kv, inh, next) {
        size_t kl = strlen(kv->key), vl = strlen(kv->value);
        if (nh < HDRS_SMALL) {
            small[nh].name = kv->key;
            small[nh].name_len = kl;
            small[nh].value = kv->value;
            small[nh].value_len = vl;
        }
        nh++;
        hbytes += kl + vl + 4;
    }
    if (hbytes > max_headers(rt)) {
        reply_message(req, head, 431, "Request Header Fields Too Large");
        return;
    }
    in.body_len = evbuffer_get_length(body);
    if (in.body_len > max_body(rt)) {
        reply_message(req, head, 413, "Request Entity Too Large");
        return;
    }
    if (nh > HDRS_SMALL) {
        size_t i = 0;
        if (!(hdrs = faas_malloc(nh * sizeof *hdrs))) {
            reply_message(req, head, 500, "Internal Server Error");
            return;
        }
        TAILQ_FOREACH(kv, inh, next) {
            hdrs[i].name = kv->key;
            hdrs[i].name_len = strlen(kv->key);
            hdrs[i].value = kv->value;
            hdrs[i].value_len = strlen(kv->value);
            i++;
        }
    }
    if (evcon)
        evhttp_connection_get_peer(evcon, &peer, &peer_port);
    wall = faas_wall_ns(rt);
    faas_request_id(rt, reqid);
    in.match = &m;
    in.method = mname;
    in.query = query ? query : "";
    in.query_len = strlen(in.query);
    in.headers = hdrs;
    in.nheaders = nh;
    in.body = in.body_len ? (const char *)evbuffer_pullup(body, -1) : NULL;
    in.source_ip = peer;
    in.http_major = req->major;
    in.http_minor = req->minor;
    in.request_id = reqid;
    in.time = http_time(h, wall);
    in.time_epoch_ms = wall / 1000000;
    ev = in.body_len && !in.body ? NULL : faas_http_event_build(&in, &h->cache);
    bound = faas_http_event_bound(&in);
    if (hdrs != small)
        free(hdrs);
    p = ev ? pending_new(h) : NULL;
    if (!p) {
        json_decref(ev);
        reply_message(req, head, 500, "Internal Server Error");
        return;
    }
    p->head = head;
    /* What faas_invoke would do, less the copy of an event nobody else
     * holds and, when the request's size bounds it, the size walk. */
    faas_rt_enter(rt); /* the store of an idempotent function is user code */
    h->busy++;
    fn = faas_fn_lookup(rt, ((struct faas_mapping *)r->owner)->function);
    if (!fn) {
        rc = FAAS_ENOENT;
    } else if (bound > limit && faas_json_size(ev, limit) > limit) {
        rc = FAAS_ETOOBIG;
    } else {
        rc = faas_invoke_fn(rt, fn, ev, NULL, NULL, result_cb, p);
        ev = NULL; /* taken */
    }
    json_decref(ev);
    if (rc == 0) {
        pending_wait(h, p, req);
    } else {
        reply_status(req, head, rc, 1);
        pending_put(h, p);
    }
    h->busy--;
    faas_rt_leave(rt);
}

/* ---- attach, bind, free ----------------------------------------------- */

int faas_http_attach(struct faas_runtime *rt, struct evhttp *http)
{
    struct faas_http *h;

    if (!rt || !http || rt->closing || rt->free_requested)
        return FAAS_EINVAL;
    if (rt->http && rt->http->http)
        return FAAS_EBUSY;
    if (!(h = http_get(rt)))
        return FAAS_ENOMEM;
    h->http = http;
    h->own = 0;
    if (conns_start(h) != 0) {
        h->http = NULL;
        return FAAS_ENOMEM;
    }
    listeners_watch(h);
    evhttp_set_gencb(http, request_cb, h);
    return 0;
}

int faas_http_bind(struct faas_runtime *rt, const char *address, uint16_t port)
{
    struct evhttp_bound_socket *sock;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    struct faas_http *h;
    struct evhttp *http;
    size_t body, hdrs;

    if (!rt || !address || rt->closing || rt->free_requested)
        return FAAS_EINVAL;
    if (rt->http && rt->http->http)
        return FAAS_EBUSY;
    if (!(h = http_get(rt)))
        return FAAS_ENOMEM;
    if (!(http = evhttp_new(rt->base)))
        return FAAS_ENOMEM;
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                         EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    /* Over twice our limits libevent stops reading (see the top); the
     * Invoke API's limit is its own. */
    body = max_body(rt);
    if (rt->opts.invoke_api && rt->opts.max_sync_payload > body)
        body = rt->opts.max_sync_payload;
    if (rt->opts.invoke_api && rt->opts.max_async_payload > body)
        body = rt->opts.max_async_payload;
    hdrs = max_headers(rt);
    evhttp_set_max_body_size(http, body > (size_t)INT64_MAX / 2 ? -1 : (ev_ssize_t)(body * 2));
    evhttp_set_max_headers_size(http,
                                hdrs > (size_t)INT64_MAX / 2 ? -1 : (ev_ssize_t)(hdrs * 2));
    h->http = http;
    if (conns_start(h) != 0) {
        h->http = NULL;
        evhttp_free(http);
        return FAAS_ENOMEM;
    }
    sock = evhttp_bind_socket_with_handle(http, address, port);
    if (!sock) {
        int err = errno; /* evhttp_free may change it */
        h->http = NULL;
        evhttp_free(http);
        errno = err;
        return faas_rt_sys_error(rt, FAAS_ESYS);
    }
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    h->own = 1;
    listeners_watch(h);
    evhttp_set_gencb(http, request_cb, h);
    return 0;
}

uint16_t faas_http_port(const struct faas_runtime *rt)
{
    return rt && rt->http && rt->http->own ? rt->http->port : 0;
}

size_t faas_http_route_count(const struct faas_runtime *rt)
{
    return rt && rt->http ? faas_route_table_count(rt->http->routes) : 0;
}

size_t faas_http_pending_count(const struct faas_runtime *rt)
{
    const struct faas_list *e;
    size_t n = 0;
    if (!rt || !rt->http)
        return 0;
    for (e = rt->http->pending.next; e != &rt->http->pending; e = e->next)
        n++;
    return n;
}

size_t faas_http_conn_count(const struct faas_runtime *rt)
{
    return rt && rt->http ? rt->http->nconns : 0;
}

static void route_orphan_cb(struct faas_route *r, void *arg)
{
    (void)arg;
    if (r->owner)
        ((struct faas_mapping *)r->owner)->route = NULL;
    faas_route_free(r);
}

/* The gateway stops serving: what waits is answered 503 (the
 * invocations' callbacks then find nobody), the server is freed (own) or
 * given back with no callbacks of ours (attached). Routes stay. */
static void http_unhook(struct faas_http *h)
{
    struct faas_list *e;

    while ((e = faas_list_pop_head(&h->pending)) != NULL) {
        struct faas_http_hold *p = FAAS_CONTAINER_OF(e, struct faas_http_hold, link);
        struct evhttp_request *req = pending_take(p);
        p->h = NULL;
        if (req && p->api)
            faas_invoke_api_unavailable(p, req);
        else if (req)
            reply_message(req, p->head, 503, "Service Unavailable");
    }
    if (h->http) {
        listeners_unwatch(h);
        if (h->own) {
            evhttp_free(h->http); /* releases the adopted connections' records */
        } else {
            evhttp_set_gencb(h->http, NULL, NULL);
            evhttp_set_bevcb(h->http, NULL, NULL);
        }
    }
    conns_stop(h);
    h->http = NULL;
    h->own = 0;
    h->port = 0;
}

int faas_http_detach(struct faas_runtime *rt)
{
    struct faas_http *h = rt ? rt->http : NULL;

    if (!rt)
        return FAAS_EINVAL;
    if (!h || !h->http)
        return FAAS_ENOENT;
    if (h->busy)
        return FAAS_EBUSY;
    http_unhook(h);
    return 0;
}

void faas_http_free(struct faas_runtime *rt)
{
    struct faas_http *h = rt ? rt->http : NULL;
    struct faas_list *e;

    if (!h)
        return;
    rt->http = NULL;
    http_unhook(h);
    while ((e = faas_list_pop_head(&h->spare)) != NULL)
        free(FAAS_CONTAINER_OF(e, struct faas_http_hold, link));
    faas_route_table_free_each(h->routes, route_orphan_cb, NULL);
    faas_http_event_cache_clear(&h->cache);
    free(h);
}

/*
 * fuzz_http_event.c - libFuzzer target for the HTTP gateway's payload 2.0
 * event builder (faas_http_event_build in lib/http_event.h), without libevent.
 *
 * The input is split on NUL bytes into fields:
 *   0  a route pattern ("GET /users/{id}"; not a valid one: a root "*")
 *   1  the request path (raw; must match the route, else the input is done)
 *   2  the raw query string
 *   3  the body (any bytes but NUL)
 *   4  the first byte picks the method, the second the protocol version
 *   5  the source IP ("" : NULL, i.e. the default)
 *   6... header lines "Name: value" (no ':': the whole field is the name)
 * A field may hold any other byte, so bad UTF-8 and percent escapes arrive.
 *
 * Each input is built twice, without and with a value cache (the second
 * build reusing what the first cached), and the target checks:
 *  - both succeed, except exactly when a header name (not Cookie) is not
 *    UTF-8, and then both fail; the two events are equal (json_equal);
 *  - the event is an object that serialises and parses back equal, and its
 *    compact size is within faas_http_event_bound();
 *  - headers: every key lower-case, one per distinct name, no "cookie";
 *    cookies only when some Cookie header had one;
 *  - body and isBase64Encoded agree: no body and false for an empty body;
 *    else base64 that decodes to the body's bytes, or the body as it is;
 *  - rawPath, rawQueryString and routeKey as given (UTF-8 repaired), the
 *    path parameters present exactly when the route has parameters.
 *
 * Build: see the Makefile's fuzz target (clang -fsanitize=fuzzer,address,
 * undefined with every .c of lib/). Seeds: tests/fuzz/corpus/fuzz_http_event.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "faas_int.h"
#include "http_event.h"

#define MAX_FIELDS 64

static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE",
                                       "HEAD", "OPTIONS", "TRACE" };
static const enum faas_http_method method_ids[] = {
    FAAS_HTTP_GET,    FAAS_HTTP_POST, FAAS_HTTP_PUT,     FAAS_HTTP_PATCH,
    FAAS_HTTP_DELETE, FAAS_HTTP_HEAD, FAAS_HTTP_OPTIONS, FAAS_HTTP_OTHER
};

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_http_event: invariant failed: %s\n", what);
        abort();
    }
}

static int utf8_ok(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n); /* jansson's own check */
    json_decref(j);
    return j != NULL;
}

/* The body as the event has it must be what was sent. */
static void check_body(json_t *ev, const char *body, size_t n, int has_ct)
{
    json_t *b = json_object_get(ev, "body"), *b64 = json_object_get(ev, "isBase64Encoded");

    check(json_is_boolean(b64), "isBase64Encoded is a boolean");
    if (n == 0) {
        check(b == NULL && json_is_false(b64), "an empty body: no body, not base64");
        return;
    }
    check(json_is_string(b), "body is a string");
    check(has_ct || !utf8_ok(body, n) || json_is_false(b64),
          "a UTF-8 body without Content-Type is text");
    if (json_is_true(b64)) {
        size_t len = json_string_length(b), out_len = 0;
        unsigned char *bin = malloc(len / 4 * 3 + 3);
        check(bin != NULL, "malloc");
        check(sodium_base642bin(bin, len / 4 * 3 + 3, json_string_value(b), len, NULL,
                                &out_len, NULL, sodium_base64_VARIANT_ORIGINAL) == 0,
              "base64 body decodes");
        check(out_len == n && memcmp(bin, body, n) == 0, "base64 body is the body");
        free(bin);
    } else {
        check(json_string_length(b) == n && memcmp(json_string_value(b), body, n) == 0,
              "text body is the body");
        check(utf8_ok(body, n), "a text body is UTF-8");
    }
}

static void check_headers(json_t *ev, const struct faas_http_header *h, size_t nh)
{
    json_t *headers = json_object_get(ev, "headers"), *cookies = json_object_get(ev, "cookies");
    const char *key;
    json_t *v;
    size_t i, j, distinct = 0, cookie_bytes = 0;

    check(json_is_object(headers), "headers is an object");
    json_object_foreach(headers, key, v) {
        const char *p;
        for (p = key; *p; p++)
            check(!(*p >= 'A' && *p <= 'Z'), "header names are lower-case");
        check(strcmp(key, "cookie") != 0, "no cookie header");
        check(json_is_string(v), "header values are strings");
    }
    /* one key per distinct name, ignoring case, Cookie aside */
    for (i = 0; i < nh; i++) {
        int seen = 0;
        if (h[i].name_len == 6 && strncasecmp(h[i].name, "cookie", 6) == 0) {
            cookie_bytes += h[i].value_len;
            continue;
        }
        for (j = 0; j < i && !seen; j++)
            seen = h[j].name_len == h[i].name_len &&
                   strncasecmp(h[j].name, h[i].name, h[i].name_len) == 0;
        distinct += !seen;
    }
    check(json_object_size(headers) == distinct, "one header per distinct name");
    if (cookies) {
        check(json_is_array(cookies) && json_array_size(cookies) > 0, "cookies non-empty");
        check(cookie_bytes > 0, "cookies come from Cookie headers");
        for (i = 0; i < json_array_size(cookies); i++) {
            const char *c = json_string_value(json_array_get(cookies, i));
            check(c && *c && *c != ' ' && *c != '\t' && !strchr(c, ';'),
                  "a cookie is trimmed and has no ';'");
        }
    }
}

static int has_params(const struct faas_route *r)
{
    unsigned i;
    if (r->greedy)
        return 1;
    for (i = 0; i < r->nsegs; i++)
        if (!r->seg[i])
            return 1;
    return 0;
}

static void check_event(json_t *ev, const struct faas_http_event_in *in, const char *route_key)
{
    json_t *back, *rc, *s;
    size_t n = json_dumpb(ev, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY), i;
    char *text;
    int has_ct = 0;

    check(json_is_object(ev), "the event is an object");
    check(n > 0, "the event serialises");
    check(n <= faas_http_event_bound(in), "the event is within its bound");
    text = json_dumps(ev, JSON_COMPACT);
    check(text != NULL, "json_dumps");
    back = json_loads(text, JSON_ALLOW_NUL, NULL); /* "%00" decodes to NUL */
    check(back && json_equal(back, ev), "the event parses back equal");
    json_decref(back);
    free(text);

    check(strcmp(json_string_value(json_object_get(ev, "version")), "2.0") == 0, "version");
    s = json_object_get(ev, "rawPath");
    check(json_is_string(s) && (!utf8_ok(in->path, in->path_len) ||
                                (json_string_length(s) == in->path_len &&
                                 memcmp(json_string_value(s), in->path, in->path_len) == 0)),
          "rawPath is the path");
    s = json_object_get(ev, "rawQueryString");
    check(json_is_string(s) && (!utf8_ok(in->query, in->query_len) ||
                                (json_string_length(s) == in->query_len &&
                                 memcmp(json_string_value(s), in->query, in->query_len) == 0)),
          "rawQueryString is the query");
    s = json_object_get(ev, "routeKey");
    check(json_is_string(s) && (!utf8_ok(route_key, strlen(route_key)) ||
                                strcmp(json_string_value(s), route_key) == 0),
          "routeKey is the route's");
    check((json_object_get(ev, "pathParameters") != NULL) == has_params(in->match->route),
          "pathParameters exactly when the route has parameters");
    s = json_object_get(ev, "queryStringParameters");
    check(!s || (json_is_object(s) && json_object_size(s) > 0), "query parameters non-empty");
    rc = json_object_get(ev, "requestContext");
    check(json_is_object(rc), "requestContext");
    check(json_is_object(json_object_get(rc, "http")), "requestContext.http");
    check(json_equal(json_object_get(rc, "routeKey"), json_object_get(ev, "routeKey")),
          "both routeKeys");
    check(json_integer_value(json_object_get(rc, "timeEpoch")) == in->time_epoch_ms,
          "timeEpoch");
    check_headers(ev, in->headers, in->nheaders);
    for (i = 0; i < in->nheaders && !has_ct; i++)
        has_ct = in->headers[i].name_len == 12 &&
                 strncasecmp(in->headers[i].name, "content-type", 12) == 0;
    check_body(ev, in->body, in->body_len, has_ct);
}

/* Does some header other than Cookie have a name that is not UTF-8? */
static int bad_name(const struct faas_http_header *h, size_t nh)
{
    size_t i;
    for (i = 0; i < nh; i++)
        if (!(h[i].name_len == 6 && strncasecmp(h[i].name, "cookie", 6) == 0) &&
            !utf8_ok(h[i].name, h[i].name_len))
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct faas_http_event_cache cache;
    const char *field[MAX_FIELDS];
    size_t flen[MAX_FIELDS], nf = 0, i, nh = 0, mi;
    struct faas_http_header hdrs[MAX_FIELDS];
    struct faas_http_event_in in;
    struct faas_route_table *t = NULL;
    struct faas_route *r = NULL;
    struct faas_route_match m;
    char *copy, *p, *end, time_text[40];
    json_t *plain, *shared;
    const char *sel;

    if (size > 1 << 16)
        return 0;
    /* A NUL-terminated copy: every field is a C string. */
    copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (p = copy, end = copy + size; nf < MAX_FIELDS;) {
        size_t n = strlen(p);
        field[nf] = p;
        flen[nf++] = n;
        if (p + n >= end)
            break;
        p += n + 1;
    }
    while (nf < 6) {
        field[nf] = "";
        flen[nf++] = 0;
    }
    if (faas_route_parse(field[0], &r) != 0 && faas_route_parse("ANY /*", &r) != 0)
        goto out;
    if (faas_route_table_new(&t) != 0 || faas_route_table_add(t, r) != 0) {
        faas_route_free(r);
        goto out;
    }
    sel = field[4];
    mi = (unsigned char)sel[0] % (sizeof methods / sizeof methods[0]);
    if (!faas_route_match(t, method_ids[mi], field[1], flen[1], &m))
        goto out;

    for (i = 6; i < nf; i++) {
        char *colon = memchr(field[i], ':', flen[i]);
        hdrs[nh].name = field[i];
        if (colon) {
            const char *v = colon + 1;
            hdrs[nh].name_len = (size_t)(colon - field[i]);
            while (*v == ' ')
                v++;
            hdrs[nh].value = v;
            hdrs[nh].value_len = flen[i] - (size_t)(v - field[i]);
        } else {
            hdrs[nh].name_len = flen[i];
            hdrs[nh].value = "";
            hdrs[nh].value_len = 0;
        }
        nh++;
    }
    memset(&in, 0, sizeof in);
    in.match = &m;
    in.method = methods[mi];
    in.path = field[1];
    in.path_len = flen[1];
    in.query = field[2];
    in.query_len = flen[2];
    in.headers = hdrs;
    in.nheaders = nh;
    in.body = flen[3] ? field[3] : NULL;
    in.body_len = flen[3];
    in.source_ip = flen[5] ? field[5] : NULL;
    in.http_major = 1;
    in.http_minor = flen[4] > 1 ? (unsigned char)sel[1] % 3 : 1;
    in.request_id = "c0ffee00-0000-4000-8000-000000000000";
    in.time_epoch_ms = 1700000000000 + (int64_t)(size % 4000);
    faas_http_format_time(in.time_epoch_ms * 1000000, time_text, sizeof time_text);
    in.time = time_text;

    plain = faas_http_event_build(&in, NULL);
    shared = faas_http_event_build(&in, &cache);
    if (bad_name(hdrs, nh)) {
        check(!plain && !shared, "a header name that is not UTF-8 fails the event");
    } else {
        check(plain && shared, "the event is built");
        check(json_equal(plain, shared), "a cache changes nothing");
        check_event(plain, &in, r->key);
        check_event(shared, &in, r->key);
    }
    json_decref(plain);
    json_decref(shared);
out:
    faas_route_table_free(t);
    free(copy);
    return 0;
}

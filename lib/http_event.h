/*
 * http_event.h - API Gateway's HTTP API payload 2.0 (http_event.c): the
 * event built from a request's parts, pure (no libevent, no runtime) so
 * that the gateway and the event fuzz target share it, and the reply
 * that maps a function's result back to HTTP.
 *
 * Included by http.h (the gateway), sigv4.c (struct faas_http_header) and
 * the event fuzz target.
 */
#ifndef FAAS_HTTP_EVENT_H
#define FAAS_HTTP_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "route.h"

/*
 * The payload 2.0 event, built from a request's parts: pure (no libevent,
 * no runtime), so the gateway and the event fuzz target share it.
 *
 * Header names and values are byte strings of the given lengths (no NUL
 * needed). Names are lower-cased and duplicates comma-joined in "headers",
 * except Cookie, whose values are split on ';' into "cookies"; the first
 * Host, User-Agent and Content-Type also give domainName/domainPrefix,
 * userAgent, and whether a body is text. Values, the path, its parameters
 * and the query reach the event as UTF-8, with U+FFFD for bad bytes; a
 * query key that does not decode to UTF-8 without NUL is left out. A body
 * is a string when its Content-Type is textual (or absent) and it is UTF-8,
 * otherwise base64 with isBase64Encoded true. "cookies",
 * "queryStringParameters", "pathParameters" and "body" are left out when
 * empty, as API Gateway does.
 */
struct faas_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct faas_http_event_in {
    const struct faas_route_match *match; /* the route and its captures */
    const char *method;                   /* "GET", ...: NUL-terminated */
    const char *path;                     /* raw, as matched */
    size_t path_len;
    const char *query;                    /* raw, without '?'; "" for none */
    size_t query_len;
    const struct faas_http_header *headers; /* as received, in order */
    size_t nheaders;
    const char *body;                     /* NULL when body_len is 0 */
    size_t body_len;
    const char *source_ip;                /* NULL: "127.0.0.1" */
    int http_major, http_minor;
    const char *request_id;               /* NUL-terminated */
    const char *time;                     /* "14/Nov/2023:22:13:20 +0000" */
    int64_t time_epoch_ms;
};

/*
 * Strings that repeat from event to event (the constants, method, protocol,
 * time, source IP, Host and User-Agent) can be shared: with a cache the
 * builder keeps the last value of each and gives the next event a new
 * reference to it when the text is the same. Handlers only read their event
 * (faas_handler_fn), so shared values are never changed in place; jansson's
 * reference counts are atomic, so THREAD workers may drop them. A cache is
 * zeroed to start with and belongs to one thread.
 */
enum {
    FAAS_HTTP_C_VERSION,
    FAAS_HTTP_C_ACCOUNT,
    FAAS_HTTP_C_API,
    FAAS_HTTP_C_STAGE,
    FAAS_HTTP_C_EMPTY,
    FAAS_HTTP_C_METHOD,
    FAAS_HTTP_C_PROTOCOL,
    FAAS_HTTP_C_TIME,
    FAAS_HTTP_C_SOURCE_IP,
    FAAS_HTTP_C_HOST,
    FAAS_HTTP_C_HOST_PREFIX,
    FAAS_HTTP_C_USER_AGENT,
    FAAS_HTTP_C_N
};

struct faas_http_event_cache {
    json_t *v[FAAS_HTTP_C_N];
};

/* Drops the cache's values (it can be used again). */
void faas_http_event_cache_clear(struct faas_http_event_cache *c);

/* A new event, or NULL: out of memory, or a header name (not Cookie) that is
 * not UTF-8 (jansson keys must be). `cache` may be NULL: nothing shared. */
json_t *faas_http_event_build(const struct faas_http_event_in *in,
                              struct faas_http_event_cache *cache);

/* An upper bound of the event's compact serialisation, from the parts'
 * lengths alone: when it is within max_sync_payload the gateway skips the
 * size walk. Each input byte counts 6 (its longest escape) for each place
 * of the event it can reach, plus 1024 for keys, constants, punctuation. */
size_t faas_http_event_bound(const struct faas_http_event_in *in);

/* requestContext.time: "dd/Mon/yyyy:hh:mm:ss +0000" (40 bytes suffice). */
void faas_http_format_time(int64_t wall_ns, char *buf, size_t size);

/*
 * Replies (loop thread). `head`: the request is a HEAD, so the reply has
 * no body. Each sends req's reply; req is evhttp's again after the call.
 */
struct evhttp_request;
struct faas_result;
/* A JSON error reply: {"message":"<msg>"} with status `code`. */
void faas_http_reply_message(struct evhttp_request *req, int head, int code, const char *msg);
/* An invocation's failure (status, a FAAS_E* code) as the client sees it;
 * `refused`: faas_invoke refused it (a FAAS_ETOOBIG event is then 413,
 * not 502). */
void faas_http_reply_status(struct evhttp_request *req, int head, int status, int refused);
/* A result mapped to its response by payload 2.0's rules. */
void faas_http_reply_result(struct evhttp_request *req, int head,
                            const struct faas_result *res);

#endif /* FAAS_HTTP_EVENT_H */

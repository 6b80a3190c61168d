/*
 * http.h - the HTTP gateway's pure parts (no libevent, no runtime): the
 * route table, shared by http.c and the route fuzz target, and the payload
 * 2.0 event builder, shared by http.c and the event fuzz target.
 *
 * A route pattern is "[METHOD ]/path": METHOD one of GET POST PUT PATCH
 * DELETE HEAD OPTIONS ANY (none = ANY), then segments separated by single
 * slashes: a literal, "{name}" (one segment), and as the last segment only
 * "{name+}" (greedy: one or more segments) or "*" (the same as "{proxy+}").
 * "/" alone is the root. Literals take printable ASCII and UTF-8 bytes but
 * not space, '{', '}', '*', '%', '?' or '#'; names are letters, digits, '_'
 * and '-'. Two routes are identical (FAAS_EEXIST) when they have the same
 * method and the same shape: the same literals, parameters and greedy tails
 * in the same places, whatever the parameters are called.
 *
 * Matching walks a trie of segments, most specific first, as API Gateway
 * does: at each segment from the left a literal beats a parameter, which
 * beats a greedy tail; among routes of the same path a specific method beats
 * ANY. A route whose method does not fit is skipped and the next most
 * specific path tried. Request segments are compared percent-decoded; an
 * empty segment ("/a//b", a trailing slash) never matches a literal or a
 * parameter, and a greedy tail needs at least one byte. Matching does not
 * allocate: captures are offsets into the request path.
 */
#ifndef FAAS_HTTP_H
#define FAAS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Route patterns: at most this many segments and bytes. */
#define FAAS_ROUTE_MAX_SEGS 64
#define FAAS_ROUTE_MAX_PATTERN 2048

enum faas_http_method {
    FAAS_HTTP_ANY = 0,
    FAAS_HTTP_GET,
    FAAS_HTTP_POST,
    FAAS_HTTP_PUT,
    FAAS_HTTP_PATCH,
    FAAS_HTTP_DELETE,
    FAAS_HTTP_HEAD,
    FAAS_HTTP_OPTIONS,
    FAAS_HTTP_NMETHODS,
    FAAS_HTTP_OTHER = FAAS_HTTP_NMETHODS /* a request's TRACE, CONNECT: ANY only */
};

struct faas_route_table;

/* A parsed route. Read-only for users of the table. */
struct faas_route {
    enum faas_http_method method;
    unsigned nsegs;          /* segments before a greedy tail */
    int greedy;              /* ends in {name+} or * */
    char *key;               /* "GET /users/{id}": the routeKey; owned */
    const char *path;        /* into key: the path as written */
    const char *seg[FAAS_ROUTE_MAX_SEGS];  /* literal text, NUL-terminated, into
                                              `text`; NULL for a parameter */
    const char *name[FAAS_ROUTE_MAX_SEGS]; /* parameter names; NULL for literals */
    const char *greedy_name; /* "proxy" for * */
    char *text;              /* owned storage of the strings above */
    json_t *key_json;        /* the routeKey as a JSON string, shared by the
                                events of the route */
    void *owner;             /* the caller's (a faas_mapping) */
    struct faas_rnode *node; /* where the table holds it; NULL when not held */
};

/* A match: the route and its parameters as offsets into the path. */
struct faas_route_match {
    const struct faas_route *route;
    size_t off[FAAS_ROUTE_MAX_SEGS]; /* segment i of the route, for parameters */
    size_t len[FAAS_ROUTE_MAX_SEGS];
    size_t tail_off, tail_len;       /* the greedy tail, without its first '/' */
};

/* Parses a pattern into a new route (owner NULL). Returns 0, FAAS_EPARSE or
 * FAAS_ENOMEM. */
int faas_route_parse(const char *pattern, struct faas_route **out);
void faas_route_free(struct faas_route *r);

int faas_route_table_new(struct faas_route_table **out);
/* Frees the table and every route it still holds. NULL is a no-op. */
void faas_route_table_free(struct faas_route_table *t);
/* Takes r into the table. Returns 0, FAAS_EEXIST (an identical route; r is
 * left to the caller) or FAAS_ENOMEM. */
int faas_route_table_add(struct faas_route_table *t, struct faas_route *r);
/* Takes r out of the table (it stays the caller's). */
void faas_route_table_remove(struct faas_route_table *t, struct faas_route *r);
size_t faas_route_table_count(const struct faas_route_table *t);

/*
 * The most specific route for a request: `path` (len bytes, starting with
 * '/', raw: percent escapes are decoded for comparison) and method. Returns
 * the route and fills *m, or NULL.
 */
const struct faas_route *faas_route_match(const struct faas_route_table *t,
                                          enum faas_http_method method, const char *path,
                                          size_t len, struct faas_route_match *m);

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

/* Test hooks: the runtime's routes, requests waiting for a result, open
 * connections. */
struct faas_runtime;
size_t faas_http_route_count(const struct faas_runtime *rt);
size_t faas_http_pending_count(const struct faas_runtime *rt);
/* Connections counted against http_max_connections. */
size_t faas_http_conn_count(const struct faas_runtime *rt);

/* FAAS_HTTP_* for an exact method name (len bytes), or -1. */
int faas_http_method_parse(const char *s, size_t len);
const char *faas_http_method_name(enum faas_http_method m);

#endif /* FAAS_HTTP_H */

/*
 * route.h - the HTTP gateway's route patterns and route table (route.c):
 * pure (no libevent, no runtime), shared by the gateway (http.c), the
 * pattern check of faas_map (source.c) and the route fuzz target.
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
 *
 * Included by http.h and http_event.h, not by faas_int.h.
 */
#ifndef FAAS_ROUTE_H
#define FAAS_ROUTE_H

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

/* Frees the table; `each` sees every route it still holds (it may free
 * the route, whose `node` is already NULL). NULL is a no-op. */
void faas_route_table_free_each(struct faas_route_table *t,
                                void (*each)(struct faas_route *, void *), void *arg);

/* FAAS_HTTP_* for an exact method name (len bytes), or -1. */
int faas_http_method_parse(const char *s, size_t len);
const char *faas_http_method_name(enum faas_http_method m);

#endif /* FAAS_ROUTE_H */

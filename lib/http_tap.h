/*
 * http_tap.h - the trailer tap of the Runtime API's connections
 * (http_tap.c): pure, bytes in, requests out.
 *
 * Why a tap: HTTP/1.1 trailers are how a streaming runtime reports an error
 * after its body has started (Lambda-Runtime-Function-Error-Type and
 * Lambda-Runtime-Function-Error-Body, base64). libevent 2.1.12 as released
 * parses trailers into the request's input headers, but the fix for
 * GHSA-2gmv-p5m7-98p6 (shipped in distribution updates of 2.1.12) discards
 * them, so evhttp never shows them to us. The tap reads a connection's
 * bytes as they arrive, alongside evhttp, and keeps only what evhttp
 * drops: the error trailers of each request, numbered by the request's
 * place on its connection. It follows evhttp's framing (request line,
 * headers, Content-Length or chunked body, trailers) and stops at the first
 * thing it cannot parse, which evhttp refuses too.
 *
 * It also hands over the body of a result posted in the streaming mode
 * (Lambda-Runtime-Function-Response-Mode: streaming) as its bytes arrive
 * (on_body), so they reach the caller before the request ends.
 */
#ifndef FAAS_HTTP_TAP_H
#define FAAS_HTTP_TAP_H

#include <stddef.h>
#include <stdint.h>

#include "faas.h"

/* The Runtime API's paths, and the header of a result's error type. */
#define FAAS_RUNTIME_API_PREFIX "/2018-06-01/runtime/"
#define FAAS_RUNTIME_API_ERROR_TYPE "Lambda-Runtime-Function-Error-Type"

/* Bytes of a request, header or chunk-size line the tap looks at. */
#define FAAS_HTTP_TAP_LINE 256
/* Bytes of one trailer line it keeps (the base64 error body). */
#define FAAS_HTTP_TAP_TRAILER_MAX (256u * 1024u)

/* The error trailers of one request read through. */
struct faas_http_tap_req {
    struct faas_http_tap_req *next;
    uint64_t seq;                  /* its place on the connection, from 0 */
    char id[FAAS_REQUEST_ID_SIZE]; /* the request id in its path, "" if none */
    char *error_type;              /* the trailer's value, owned, or NULL */
    char *error_body;              /* base64 text as sent, owned, or NULL */
};

struct faas_http_tap {
    int state;
    uint64_t left;     /* body or chunk bytes still to skip */
    uint64_t seq;      /* requests read through */
    int chunked;
    int bodyless;      /* HEAD, TRACE: no body whatever the headers say */
    uint64_t clen;
    uint64_t body;     /* body bytes declared or seen so far */
    int result_post;   /* POST .../invocation/{id}/response or /error */
    char id[FAAS_REQUEST_ID_SIZE];
    char small[FAAS_HTTP_TAP_LINE];
    char *line;        /* small, or a heap buffer for a long trailer */
    size_t llen, lcap;
    int ltrunc;        /* the line was longer than kept */
    char *etype, *ebody; /* trailers of the request being read, owned */
    struct faas_http_tap_req *done, **done_tail; /* oldest first */
    uint64_t ndone;
    int streaming;     /* the result posted has Lambda-Runtime-Function-
                          Response-Mode: streaming */
    /* Set by the caller: the body bytes of a streaming result as they
     * arrive (id: the result's request id). NULL: not wanted. */
    void (*on_body)(void *arg, const char *id, const char *p, size_t n);
    void *body_arg;
};

void faas_http_tap_init(struct faas_http_tap *t);
/* Reads n more bytes of the connection. Allocates only for requests that
 * carry error trailers (a failed allocation drops them). */
void faas_http_tap_feed(struct faas_http_tap *t, const char *p, size_t n);
/* The record of request `seq` when it had error trailers (taken over by
 * the caller: faas_http_tap_req_free), else NULL; older records are
 * dropped. */
struct faas_http_tap_req *faas_http_tap_take(struct faas_http_tap *t, uint64_t seq);
void faas_http_tap_req_free(struct faas_http_tap_req *r);
/* The request being read posts a result for `id` and is larger than
 * `limit` bytes (declared or seen so far). */
int faas_http_tap_oversize(const struct faas_http_tap *t, size_t limit, const char **id);
void faas_http_tap_clear(struct faas_http_tap *t);
/* Reads nothing more (a connection it cannot follow); whether it stopped,
 * by this or at something it could not parse. */
void faas_http_tap_stop(struct faas_http_tap *t);
int faas_http_tap_stopped(const struct faas_http_tap *t);

/* The request id in a result's path (".../invocation/{id}/response" or
 * ".../{id}/error"; *idlen its length, not NUL-terminated), or NULL. */
const char *faas_http_tap_result_id(const char *path, size_t *idlen);

#endif /* FAAS_HTTP_TAP_H */

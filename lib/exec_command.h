/*
 * exec_command.h - the parts of exec_command.c that its tests reach: the
 * trailer tap (pure: bytes in, requests out) and a look at an endpoint;
 * and the check of runtime_api_address that faas_runtime_new makes.
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
 */
#ifndef FAAS_EXEC_COMMAND_H
#define FAAS_EXEC_COMMAND_H

#include <stddef.h>
#include <stdint.h>

#include "faas.h"

/* Bytes of a request, header or chunk-size line the tap looks at. */
#define FAAS_CMD_TAP_LINE 256
/* Bytes of one trailer line it keeps (the base64 error body). */
#define FAAS_CMD_TAP_TRAILER_MAX (256u * 1024u)

/* The error trailers of one request read through. */
struct faas_cmd_tap_req {
    struct faas_cmd_tap_req *next;
    uint64_t seq;                  /* its place on the connection, from 0 */
    char id[FAAS_REQUEST_ID_SIZE]; /* the request id in its path, "" if none */
    char *error_type;              /* the trailer's value, owned, or NULL */
    char *error_body;              /* base64 text as sent, owned, or NULL */
};

struct faas_cmd_tap {
    int state;
    uint64_t left;     /* body or chunk bytes still to skip */
    uint64_t seq;      /* requests read through */
    int chunked;
    int bodyless;      /* HEAD, TRACE: no body whatever the headers say */
    uint64_t clen;
    uint64_t body;     /* body bytes declared or seen so far */
    int result_post;   /* POST .../invocation/{id}/response or /error */
    char id[FAAS_REQUEST_ID_SIZE];
    char small[FAAS_CMD_TAP_LINE];
    char *line;        /* small, or a heap buffer for a long trailer */
    size_t llen, lcap;
    int ltrunc;        /* the line was longer than kept */
    char *etype, *ebody; /* trailers of the request being read, owned */
    struct faas_cmd_tap_req *done, **done_tail; /* oldest first */
    uint64_t ndone;
};

void faas_cmd_tap_init(struct faas_cmd_tap *t);
/* Reads n more bytes of the connection. Allocates only for requests that
 * carry error trailers (a failed allocation drops them). */
void faas_cmd_tap_feed(struct faas_cmd_tap *t, const char *p, size_t n);
/* The record of request `seq` when it had error trailers (taken over by
 * the caller: faas_cmd_tap_req_free), else NULL; older records are
 * dropped. */
struct faas_cmd_tap_req *faas_cmd_tap_take(struct faas_cmd_tap *t, uint64_t seq);
void faas_cmd_tap_req_free(struct faas_cmd_tap_req *r);
/* The request being read posts a result for `id` and is larger than
 * `limit` bytes (declared or seen so far). */
int faas_cmd_tap_oversize(const struct faas_cmd_tap *t, size_t limit, const char **id);
void faas_cmd_tap_clear(struct faas_cmd_tap *t);

/*
 * 0 when COMMAND endpoints may listen on `addr` (NULL or "" is the default,
 * 127.0.0.1): a numeric loopback address (127.0.0.0/8, ::1, or ::ffff:127.x),
 * or any address when allow_remote is 1; else FAAS_EINVAL. A name is
 * refused without allow_remote: where it leads is not known until bound.
 */
int faas_cmd_address_check(const char *addr, int allow_remote);

struct faas_instance;
/* Tests: 1 when the instance's endpoint holds a GET /next. */
int faas_cmd_waiting(const struct faas_instance *inst);
/* Tests: the endpoint's port (0: none). */
uint16_t faas_cmd_port(const struct faas_instance *inst);
/* Tests: 1 when an invocation's event waits for the runtime's /next. */
int faas_cmd_queued(const struct faas_instance *inst);
/* Tests: non-zero makes every instance's pid look not yet known, so that
 * first requests park until it is set back to 0; the parks counted. */
extern int faas_cmd_test_hold_pid;
extern unsigned long faas_cmd_test_parks;

#endif /* FAAS_EXEC_COMMAND_H */

/*
 * runtime_api.c - the endpoint a COMMAND instance's runtime process talks
 * to: the AWS Lambda Runtime API (2018-06-01).
 *
 * exec_process.c owns the process (spawning, deadlines, exit, log lines),
 * exec_command.c makes the instance (its environment); this file owns the
 * wire. Each COMMAND instance gets an evhttp server of its own on the
 * host's base, bound to a kernel-chosen port of runtime_api_address
 * (127.0.0.1). Served:
 *
 *   GET  /2018-06-01/runtime/invocation/next           200 the event
 *   POST /2018-06-01/runtime/invocation/{id}/response  202 (413 too large)
 *   POST /2018-06-01/runtime/invocation/{id}/error     202
 *   POST /2018-06-01/runtime/init/error                202 (403 once started)
 *
 * and 400 for a request id that is not the current one (unknown, stale, or
 * answered already), 404 for other paths, 405 for other methods; every body
 * is JSON. The first GET /next means init is done (faas_proc_ready). A /next
 * waits (long poll) until faas_runtime_api_send hands over an invocation; an
 * invocation handed over before its /next waits for it. Results are
 * faas_proc_result.
 *
 * Re-entrancy. faas_proc_ready and faas_proc_result run the pool and the caller's
 * result callback, which may free this instance, start the next invocation
 * on it, or free the runtime. They are never called from inside an evhttp
 * callback: a request callback answers the runtime first, keeps the outcome
 * (one at a time: the next one needs the next invocation, which needs this
 * one delivered) and arms the instance's deliver event, which calls
 * exec_process.c from a clean stack on the loop's next pass, after that
 * pass's I/O: the answer is on the wire first, and the runtime works on
 * while the result goes through the pool and the caller's callback. So
 * faas_runtime_api_free can evhttp_free at once; were it ever called inside
 * one of our evhttp callbacks, the deliver event would do it instead. A
 * reply still in a socket's output buffer when the server goes is written
 * out first (one non-blocking send), so the 202 of a result that retires
 * the instance reaches the runtime.
 *
 * Connections. The server makes each connection's bufferevent through our
 * callback, so every connection has a record (struct cmd_conn) from its
 * first byte: its trailer tap (http_tap.h says why) and, once a request
 * named its evhttp connection, a close callback that frees the record. A
 * GET /next that has waited WATCH_AFTER_MS gets its socket watched with
 * EV_CLOSED (libevent does not read a connection while a request waits
 * for its reply, so neither its close callback nor the request's complete
 * callback tells that the client went), so a runtime that gives up a long
 * poll is dropped and the next invocation waits for its next /next instead
 * of going to a dead socket. A second /next while one waits replaces it
 * (the older connection is closed).
 *
 * Peers. The endpoint serves its instance only: anyone on the host can
 * find a loopback port, and whoever GETs /next takes the event (payload,
 * request id, client context) and may POST a result the caller would take
 * as the runtime's. So each connection's peer is checked once, at its
 * first bytes (peer.c): the socket at its other end must be held by the
 * instance's process or one of its process tree (a bash runtime's curl).
 * Until that is known the connection gets nothing: its bytes do not count
 * towards a result's size, its first request waits (parked) if the zygote
 * has not told the instance's pid yet, and a connection found to be
 * someone else's is answered 403 and closed on every request, logged once
 * (FAAS_LOG_WARNING, "runtime-api-peer"; from warn_ev, never from inside
 * evhttp's callbacks, as results are). A peer that cannot be checked (a
 * remote one, a host without /proc) is refused too, unless
 * runtime_api_allow_remote is 1: then it is served unchecked. The verdict
 * stays with the connection, so a keep-alive runtime pays for the check
 * once, not per invocation.
 *
 * Streaming. A result posted with Lambda-Runtime-Function-Response-Mode:
 * streaming (chunked, error trailers after the body) is the response's
 * bytes as they come: the tap hands them over as it reads them
 * (stream_body), and stream_ev passes them to the invocation
 * (faas_proc_stream) from a clean stack; the outcome takes what is left
 * first, so every byte comes before the result. Its body is bounded as
 * any result's.
 *
 * Sizes. A result body over max_sync_payload fails the invocation with
 * FAAS_ETOOBIG as soon as the tap sees its size (declared, or counted
 * chunk by chunk), and is answered 413. libevent cuts a body off past
 * twice the limit, with a 413 of its own, so a runtime cannot make the
 * host buffer without bound.
 *
 * Everything here runs on the loop thread.
 *
 * May call: http_tap.c, peer.c, runtime_body.c (bodies made into results),
 * exec_process.c (faas_proc_ready, faas_proc_stream_result from deliver_ev,
 * faas_proc_stream from stream_ev, faas_proc_pid from the peer check), the
 * loop services. Called by exec_command.c (a new endpoint) and
 * exec_process.c (send, free).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "faas_int.h"
#include "runtime_body.h"
#include "http.h"
#include "http_tap.h"
#include "peer.h"
#include "runtime_api.h"

/* The deadline a runtime is told when the invocation has none. */
#define NO_DEADLINE_MS (15u * 60u * 1000u)
/* A /next that waits this long has its socket watched for a close. */
#define WATCH_AFTER_MS 100
/* Above the body limit, for what libevent still reads before cutting off. */
#define BODY_SLACK (64u * 1024u)
/* A request parked until the instance's pid is known is looked at again
 * after this, doubling up to RECHECK_MAX_MS. */
#define RECHECK_MS 1
#define RECHECK_MAX_MS 64
/* Refusals kept for warn_ev at most: a flood of outsiders in one pass of
 * the loop costs bounded memory (they are refused all the same). */
#define WARN_KEPT_MAX 64

int faas_runtime_api_test_hold_pid;
unsigned long faas_runtime_api_test_parks;

/* ==== records ========================================================= */

enum out_kind { OUT_NONE = 0, OUT_READY, OUT_RESULT };

/* Who is at the other end of a connection (see the top). */
enum conn_peer {
    PEER_UNCHECKED = 0, /* not yet known: nothing is served or counted */
    PEER_OURS,          /* the instance's process tree (or unchecked, allowed) */
    PEER_REFUSED        /* anyone else: 403 and closed */
};

struct faas_runtime_api;

/* One connection of the runtime's. */
struct cmd_conn {
    struct faas_list link;            /* c->conns, newest first */
    struct faas_runtime_api *c;
    struct bufferevent *bev;          /* compared only, unless evcon is set */
    struct evbuffer_cb_entry *tap_cb; /* NULL: not tapped */
    struct evhttp_connection *evcon;  /* NULL until a request named it */
    struct event *close_ev;           /* EV_CLOSED while a /next waits here */
    uint64_t served;                  /* requests handed to api_cb */
    enum conn_peer peer;
    struct evhttp_request *parked;    /* waits for the verdict */
    struct faas_http_tap_req *parked_tr; /* its trailers, owned */
    struct faas_http_tap tap;
};

/* A refused connection's warning line, kept for warn_ev. */
struct cmd_warn {
    struct cmd_warn *next;
    char line[];
};

struct faas_runtime_api {
    struct faas_instance *inst;       /* NULL once freed */
    struct faas_runtime *rt;
    struct evhttp *http;
    uint16_t port;
    char *arn;                        /* the invoked function's ARN */
    struct faas_list conns;
    struct event *deliver_ev;
    struct event *watch_ev;           /* a /next waited long: watch it */
    struct event *recheck_ev;         /* parked requests: look again */
    unsigned recheck_ms;
    struct event *warn_ev;            /* delivers the kept warnings */
    struct cmd_warn *warns, **warns_tail;
    unsigned nwarns;

    /* the GET /next that waits, with its connection */
    struct evhttp_request *next_req;
    struct cmd_conn *next_conn;

    /* the current invocation */
    char rid[FAAS_REQUEST_ID_SIZE];   /* "" when none */
    char too_big[FAAS_REQUEST_ID_SIZE]; /* failed while its body came */
    int queued;                       /* its event waits for a /next */
    char deadline[24];                /* Unix ms */
    char trace[96];                   /* generated trace id */
    char *trace_given;                /* the caller's, owned, or NULL */
    char *client_context;             /* compact JSON, owned, or NULL */
    struct evbuffer *event;           /* the body of the /next answer */

    int started;                      /* the first /next came */
    int init_failed;                  /* an init error was posted */

    /* an outcome for exec_process.c, delivered by deliver_ev */
    enum out_kind out;
    int out_status;
    json_t *out_payload;
    int out_streamed;                 /* the result was posted streaming */

    /* the current result's body in the streaming mode, as the tap reads
     * it: bytes waiting for stream_ev (or for the outcome, which takes
     * them first), and how many came */
    struct evbuffer *stream;
    struct event *stream_ev;
    uint64_t streamed;

    int depth;                        /* inside one of our evhttp callbacks */
    int dead;                         /* freed inside one: deliver_ev frees */
};

static void conn_free(struct cmd_conn *k)
{
    faas_list_remove(&k->link);
    if (k->close_ev)
        event_free(k->close_ev);
    faas_http_tap_req_free(k->parked_tr);
    faas_http_tap_clear(&k->tap);
    free(k);
}

/* ==== replies ========================================================= */

static void reply_json(struct evhttp_request *req, int code, const char *reason,
                       const char *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    evhttp_send_reply(req, code, reason, NULL);
}

/* type and msg are ours: plain text that needs no JSON escaping. */
static void reply_error(struct evhttp_request *req, int code, const char *reason,
                        const char *type, const char *msg)
{
    char body[320];
    snprintf(body, sizeof body, "{\"errorMessage\":\"%s\",\"errorType\":\"%s\"}", msg, type);
    reply_json(req, code, reason, body);
}

static void reply_accepted(struct evhttp_request *req)
{
    reply_json(req, 202, "Accepted", "{\"status\":\"OK\"}");
}

static void reply_bad_id(struct evhttp_request *req)
{
    reply_error(req, 400, "Bad Request", "InvalidRequestID", "Invalid request ID");
}

/* ==== outcomes ======================================================== */

/* The deliver event: a zero timeout runs on the loop's next pass, after
 * the I/O that pass finds (the answer just queued for the runtime). */
static void deliver_soon(struct faas_runtime_api *c)
{
    static const struct timeval now = { 0, 0 };
    event_add(c->deliver_ev, &now);
}

/* Keeps an outcome for the deliver event (payload taken over). */
static void outcome(struct faas_runtime_api *c, enum out_kind kind, int status, json_t *payload)
{
    if (c->out != OUT_NONE) {
        /* Cannot happen (see the top); keep the first. */
        json_decref(payload);
        return;
    }
    c->out = kind;
    c->out_status = status;
    c->out_payload = payload;
    deliver_soon(c);
}

/* The current invocation fails with FAAS_ETOOBIG: `size` bytes. */
static void outcome_too_big(struct faas_runtime_api *c, uint64_t size)
{
    char msg[160];
    snprintf(msg, sizeof msg,
             "Response payload size (%llu bytes) exceeded maximum allowed payload size "
             "(%zu bytes).",
             (unsigned long long)size, c->rt->opts.max_sync_payload);
    c->rid[0] = '\0';
    outcome(c, OUT_RESULT, FAAS_ETOOBIG,
            faas_error_object("Function.ResponseSizeTooLarge", msg));
}

static void cmd_destroy(struct faas_runtime_api *c);

/* Takes the streamed bytes waiting: a buffer of the caller's, or NULL. */
static struct evbuffer *stream_take(struct faas_runtime_api *c)
{
    struct evbuffer *b;
    if (!c->stream || evbuffer_get_length(c->stream) == 0 || !(b = evbuffer_new()))
        return NULL;
    evbuffer_add_buffer(b, c->stream);
    return b;
}

/* Streamed bytes to the caller, from a clean stack (never inside evhttp's
 * callbacks, for the reasons results are not). */
static void stream_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_runtime_api *c = arg;
    struct faas_runtime *rt = c->rt;
    struct faas_instance *inst = c->inst;
    struct evbuffer *b;

    (void)fd;
    (void)what;
    if (c->dead || !inst || !(b = stream_take(c)))
        return;
    /* c may be freed inside: not touched after the call. */
    faas_rt_enter(rt);
    faas_proc_stream(inst, evbuffer_pullup(b, -1), evbuffer_get_length(b));
    faas_rt_leave(rt);
    evbuffer_free(b);
}

/* The tap read body bytes of a result posted streaming (see http_tap.h). */
static void stream_body(void *arg, const char *id, const char *p, size_t n)
{
    struct cmd_conn *k = arg;
    struct faas_runtime_api *c = k->c;

    /* Only the instance's own connection, for the current invocation. */
    if (k->peer != PEER_OURS || !c->inst || c->dead || !c->rid[0] || c->queued ||
        strcmp(id, c->rid) != 0 || !c->stream)
        return;
    if (evbuffer_add(c->stream, p, n) != 0)
        return; /* lost: the result says what the body holds */
    c->streamed += n;
    event_active(c->stream_ev, EV_TIMEOUT, 1);
}

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_runtime_api *c = arg;
    struct faas_runtime *rt = c->rt;
    struct faas_instance *inst = c->inst;
    enum out_kind kind = c->out;
    json_t *payload = c->out_payload;
    int status = c->out_status, streamed = c->out_streamed;
    struct evbuffer *b;

    (void)fd;
    (void)what;
    if (c->dead) {
        cmd_destroy(c);
        return;
    }
    c->out = OUT_NONE;
    c->out_payload = NULL;
    c->out_streamed = 0;
    if (kind == OUT_NONE || !inst) {
        json_decref(payload);
        return;
    }
    b = kind == OUT_RESULT && streamed ? stream_take(c) : NULL;
    /* c may be freed inside: not touched after the call. */
    faas_rt_enter(rt);
    if (kind == OUT_READY)
        faas_proc_ready(inst, status, payload);
    else
        faas_proc_stream_result(inst, b ? evbuffer_pullup(b, -1) : NULL,
                                b ? evbuffer_get_length(b) : 0, streamed, status, payload);
    faas_rt_leave(rt);
    if (b)
        evbuffer_free(b);
}

/* ==== GET /next ======================================================= */

static void watch_stop(struct faas_runtime_api *c, struct cmd_conn *k)
{
    event_del(c->watch_ev);
    if (k && k->close_ev)
        event_del(k->close_ev);
}

/* Answers the waiting /next with the queued event. */
static void answer_next(struct faas_runtime_api *c)
{
    struct evhttp_request *req = c->next_req;
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);

    watch_stop(c, c->next_conn);
    c->next_req = NULL;
    c->next_conn = NULL;
    c->queued = 0;
    evhttp_add_header(oh, "Content-Type", "application/json");
    evhttp_add_header(oh, "Lambda-Runtime-Aws-Request-Id", c->rid);
    evhttp_add_header(oh, "Lambda-Runtime-Deadline-Ms", c->deadline);
    evhttp_add_header(oh, "Lambda-Runtime-Invoked-Function-Arn", c->arn);
    evhttp_add_header(oh, "Lambda-Runtime-Trace-Id", c->trace_given ? c->trace_given : c->trace);
    if (c->client_context)
        evhttp_add_header(oh, "Lambda-Runtime-Client-Context", c->client_context);
    evhttp_send_reply(req, 200, "OK", c->event);
}

static void closed_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cmd_conn *k = arg;
    struct faas_runtime_api *c = k->c;

    (void)fd;
    (void)what;
    if (c->next_conn != k || !k->evcon)
        return;
    /* The runtime gave up its long poll: free the connection and the
     * request with it (conn_closecb clears c->next_req and frees k). */
    c->depth++;
    evhttp_connection_free(k->evcon);
    c->depth--;
}

/* The waiting /next's socket is watched for the peer's close. */
static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_runtime_api *c = arg;
    struct cmd_conn *k = c->next_conn;

    (void)what;
    if (!k || (fd = bufferevent_getfd(k->bev)) < 0)
        return;
    if (!k->close_ev && !(k->close_ev = event_new(c->rt->base, fd, EV_CLOSED, closed_cb, k)))
        return; /* then a dead /next is only found when answered */
    event_add(k->close_ev, NULL);
}

/*
 * A /next that waits is watched once it has waited WATCH_AFTER: a busy
 * runtime's polls are answered sooner, and pay no epoll_ctl for the watch.
 */
static void watch_start(struct faas_runtime_api *c)
{
    static const struct timeval after = { 0, WATCH_AFTER_MS * 1000 };
    event_add(c->watch_ev, &after);
}

static void on_next(struct faas_runtime_api *c, struct cmd_conn *k, struct evhttp_request *req)
{
    if (!k) {
        /* Without a record its close could not be followed: refuse. */
        reply_error(req, 500, "Internal Server Error", "ServiceException", "out of memory");
        return;
    }
    if (c->next_req && c->next_conn && c->next_conn->evcon) {
        /* A newer long poll replaces the older one. */
        evhttp_connection_free(c->next_conn->evcon);
    }
    c->next_req = req;
    c->next_conn = k;
    if (c->queued) {
        answer_next(c);
        return;
    }
    watch_start(c);
    if (!c->started && !c->init_failed) {
        c->started = 1;
        outcome(c, OUT_READY, 0, NULL);
    }
}

/* ==== results ========================================================= */

static void too_large(struct evhttp_request *req, size_t n, size_t limit)
{
    char msg[200];
    snprintf(msg, sizeof msg,
             "Response payload size (%zu bytes) exceeded maximum allowed payload size "
             "(%zu bytes).",
             n, limit);
    reply_error(req, 413, "Payload Too Large", "Function.ResponseSizeTooLarge", msg);
}

static void on_result(struct faas_runtime_api *c, struct evhttp_request *req, const char *id,
                      int is_error, struct faas_http_tap_req *tr)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    size_t n = evbuffer_get_length(in), limit = c->rt->opts.max_sync_payload;
    const char *p, *mode, *htype;
    json_t *payload;
    int status = 0, streaming;

    if (c->too_big[0] && strcmp(id, c->too_big) == 0) {
        /* Failed already, when its size was seen. */
        c->too_big[0] = '\0';
        too_large(req, n, limit);
        return;
    }
    if (!c->rid[0] || c->queued || strcmp(id, c->rid) != 0) {
        reply_bad_id(req);
        return;
    }
    if (n > limit) {
        too_large(req, n, limit);
        outcome_too_big(c, n);
        return;
    }
    p = n ? (const char *)evbuffer_pullup(in, -1) : "";
    htype = evhttp_find_header(ih, FAAS_RUNTIME_API_ERROR_TYPE);
    mode = evhttp_find_header(ih, "Lambda-Runtime-Function-Response-Mode");
    streaming = !is_error && mode && strcasecmp(mode, "streaming") == 0;
    if (streaming && n > c->streamed && c->stream) {
        /* Bytes the tap could not hand over as they came (a connection
         * whose peer was not known yet): they go now, in order. */
        if (evbuffer_add(c->stream, p + c->streamed, n - (size_t)c->streamed) != 0)
            streaming = 0; /* then the body as a whole, below */
    }
    c->streamed = 0;
    if (is_error) {
        status = FAAS_EHANDLER;
        payload = faas_runtime_body_error(p, n, htype, "Unhandled");
    } else if (tr && (tr->error_type || tr->error_body)) {
        status = FAAS_EHANDLER;
        payload = faas_runtime_body_trailers(tr->error_type, tr->error_body);
    } else if (htype && streaming) {
        /* A libevent that merges trailers into the headers. */
        status = FAAS_EHANDLER;
        payload = faas_runtime_body_trailers(htype, evhttp_find_header(ih,
                                                              "Lambda-Runtime-Function-Error-Body"));
    } else if (streaming) {
        payload = json_null(); /* the bytes streamed are the response */
    } else {
        payload = faas_runtime_body_payload(p, n);
    }
    if (!payload) {
        status = FAAS_ENOMEM;
        payload = faas_error_object("Runtime.OutOfMemory", "the host is out of memory");
    }
    reply_accepted(req);
    c->rid[0] = '\0';
    c->out_streamed = streaming;
    outcome(c, OUT_RESULT, status, payload);
}

static void on_init_error(struct faas_runtime_api *c, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    const char *type = evhttp_find_header(evhttp_request_get_input_headers(req), FAAS_RUNTIME_API_ERROR_TYPE);
    json_t *err;

    if (c->started || c->init_failed) {
        reply_error(req, 403, "Forbidden", "InvalidStateTransition",
                    "State transition from Ready to InitError failed");
        return;
    }
    if (n > c->rt->opts.max_sync_payload)
        n = 0; /* keep the type, drop a body too large to hold */
    err = faas_runtime_body_error(n ? (const char *)evbuffer_pullup(in, -1) : "", n, type,
                                  "Runtime.Unknown");
    c->init_failed = 1;
    reply_accepted(req);
    outcome(c, OUT_READY, FAAS_EINIT, err);
}

/* ==== routing ========================================================= */

static void route(struct faas_runtime_api *c, struct cmd_conn *k, struct evhttp_request *req,
                  const char *path, struct faas_http_tap_req *tr)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const char *rest = path + sizeof FAAS_RUNTIME_API_PREFIX - 1, *id;
    size_t idlen;

    if (strncmp(path, FAAS_RUNTIME_API_PREFIX, sizeof FAAS_RUNTIME_API_PREFIX - 1) != 0) {
        reply_error(req, 404, "Not Found", "NotFound", "Not Found");
    } else if (strcmp(rest, "invocation/next") == 0) {
        if (m == EVHTTP_REQ_GET)
            on_next(c, k, req);
        else
            reply_error(req, 405, "Method Not Allowed", "MethodNotAllowed",
                        "Method Not Allowed");
    } else if (strcmp(rest, "init/error") == 0) {
        if (m == EVHTTP_REQ_POST)
            on_init_error(c, req);
        else
            reply_error(req, 405, "Method Not Allowed", "MethodNotAllowed",
                        "Method Not Allowed");
    } else if ((id = faas_http_tap_result_id(path, &idlen)) != NULL) {
        char rid[FAAS_REQUEST_ID_SIZE];
        memcpy(rid, id, idlen);
        rid[idlen] = '\0';
        if (m != EVHTTP_REQ_POST)
            reply_error(req, 405, "Method Not Allowed", "MethodNotAllowed",
                        "Method Not Allowed");
        else
            on_result(c, req, rid, strcmp(id + idlen, "/error") == 0,
                      tr && strcmp(tr->id, rid) == 0 ? tr : NULL);
    } else {
        reply_error(req, 404, "Not Found", "NotFound", "Not Found");
    }
}

/* ==== connections ===================================================== */

static void reply_refused(struct evhttp_request *req)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    reply_error(req, 403, "Forbidden", "AccessDeniedException",
                "this endpoint serves its instance's runtime only");
}

/*
 * Keeps a "runtime-api-peer" warning for warn_ev. conn_check runs inside
 * evhttp and bufferevent callbacks (tap_cb), which touch their state after
 * it returns: the host's log callback, which may free the runtime and this
 * instance with it, never runs there.
 */
static void warn_keep(struct faas_runtime_api *c, const char *fmt, ...) FAAS_PRINTF(2, 3);

static void warn_keep(struct faas_runtime_api *c, const char *fmt, ...)
{
    struct cmd_warn *w;
    char line[320];
    va_list ap;
    size_t n;

    if (!c->rt->opts.log || c->nwarns >= WARN_KEPT_MAX)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    n = strlen(line);
    if (!(w = faas_malloc(sizeof *w + n + 1)))
        return; /* the warning is lost, the refusal is not */
    w->next = NULL;
    memcpy(w->line, line, n + 1);
    *c->warns_tail = w;
    c->warns_tail = &w->next;
    c->nwarns++;
    event_active(c->warn_ev, EV_TIMEOUT, 0);
}

static void warns_clear(struct faas_runtime_api *c)
{
    struct cmd_warn *w, *next;

    for (w = c->warns; w; w = next) {
        next = w->next;
        free(w);
    }
    c->warns = NULL;
    c->warns_tail = &c->warns;
    c->nwarns = 0;
}

/* The kept warnings, from the loop: inside faas_rt_enter, so a runtime
 * freed by the log callback goes at faas_rt_leave, and inside c->depth,
 * so an instance freed there goes from deliver_ev. Nothing is touched
 * after faas_rt_leave. */
static void warn_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_runtime_api *c = arg;
    struct faas_runtime *rt = c->rt;
    struct cmd_warn *w;

    (void)fd;
    (void)what;
    if (c->dead || !c->inst) {
        warns_clear(c);
        return;
    }
    faas_rt_enter(rt);
    c->depth++;
    while (!c->dead && c->inst && (w = c->warns) != NULL) {
        if (!(c->warns = w->next))
            c->warns_tail = &c->warns;
        c->nwarns--;
        faas_log_event(rt, FAAS_LOG_WARNING, c->inst->fn->name, NULL, "runtime-api-peer", NULL,
                       "%s", w->line);
        free(w);
    }
    warns_clear(c); /* what is left: the instance went */
    c->depth--;
    faas_rt_leave(rt);
}

/*
 * Decides, once, whether k's peer is the instance's (see the top). Stays
 * PEER_UNCHECKED while the instance's pid is not known yet.
 */
static void conn_check(struct faas_runtime_api *c, struct cmd_conn *k)
{
    struct faas_runtime *rt = c->rt;
    struct faas_peer_sock ps;
    evutil_socket_t fd = bufferevent_getfd(k->bev);
    const char *why;
    int rc, found, unverifiable;
    pid_t pid;

    if (k->peer != PEER_UNCHECKED || !c->inst || c->dead || fd < 0)
        return;
    if ((pid = faas_runtime_api_test_hold_pid ? 0 : faas_proc_pid(c->inst)) == 0)
        return;
    rc = faas_peer_socket(fd, 0, &ps);
    found = rc == 0;
    if (found) {
        rc = faas_peer_held(ps.inode, pid, faas_proc_zygote_pid(rt));
        if (rc == 1) {
            k->peer = PEER_OURS;
            return;
        }
        unverifiable = rc != 0;
        why = rc == 0 ? "no process of the instance holds its socket"
                      : "who holds its socket cannot be read from /proc";
    } else {
        unverifiable = 1;
        why = rc == FAAS_ENOENT ? "its socket is not on this host"
                                : "its socket cannot be looked up";
    }
    if (unverifiable && rt->opts.runtime_api_allow_remote) {
        k->peer = PEER_OURS; /* served unchecked, as the host asked */
        return;
    }
    k->peer = PEER_REFUSED;
    if (found)
        warn_keep(c, "refused a Runtime API connection from %s (uid %u): %s",
                  ps.addr[0] ? ps.addr : "?", (unsigned)ps.uid, why);
    else
        warn_keep(c, "refused a Runtime API connection from %s: %s", ps.addr[0] ? ps.addr : "?",
                  why);
}

/* Answers req of k, whose peer is decided; tr: its trailers, borrowed. */
static void serve(struct faas_runtime_api *c, struct cmd_conn *k, struct evhttp_request *req,
                  struct faas_http_tap_req *tr)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

    if (k->peer != PEER_OURS)
        reply_refused(req);
    else if (!path)
        reply_error(req, 404, "Not Found", "NotFound", "Not Found");
    else
        route(c, k, req, path, tr);
}

static void recheck_soon(struct faas_runtime_api *c)
{
    struct timeval tv;

    if (event_pending(c->recheck_ev, EV_TIMEOUT, NULL))
        return;
    if (c->recheck_ms == 0)
        c->recheck_ms = RECHECK_MS;
    tv.tv_sec = 0;
    tv.tv_usec = (suseconds_t)c->recheck_ms * 1000;
    event_add(c->recheck_ev, &tv);
}

/* Parked requests whose peer can now be decided are answered. */
static void recheck_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_runtime_api *c = arg;
    struct faas_list *e;
    int waiting;

    (void)fd;
    (void)what;
    if (c->dead || !c->inst)
        return;
    c->depth++;
again:
    waiting = 0;
    for (e = c->conns.next; e != &c->conns && !c->dead; e = e->next) {
        struct cmd_conn *k = FAAS_CONTAINER_OF(e, struct cmd_conn, link);
        struct evhttp_request *req = k->parked;
        struct faas_http_tap_req *tr = k->parked_tr;

        if (!req)
            continue;
        conn_check(c, k);
        if (k->peer == PEER_UNCHECKED) {
            waiting = 1;
            continue;
        }
        k->parked = NULL;
        k->parked_tr = NULL;
        serve(c, k, req, tr);
        faas_http_tap_req_free(tr);
        goto again; /* serving may have closed other connections */
    }
    c->depth--;
    if (c->dead) {
        return; /* freed inside: deliver_ev finishes it */
    } else if (waiting) {
        c->recheck_ms = c->recheck_ms * 2 > RECHECK_MAX_MS ? RECHECK_MAX_MS : c->recheck_ms * 2;
        recheck_soon(c);
    } else {
        c->recheck_ms = 0;
    }
}

static void tap_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct cmd_conn *k = arg;
    struct faas_runtime_api *c = k->c;
    const char *id;
    size_t len, from, left;
    struct evbuffer_ptr pos;
    struct evbuffer_iovec v[8];

    if (info->n_added == 0)
        return;
    if (k->peer == PEER_UNCHECKED)
        conn_check(c, k);
    if (faas_http_tap_stopped(&k->tap))
        return;
    len = evbuffer_get_length(buf);
    if (len < info->n_added) {
        faas_http_tap_stop(&k->tap); /* bytes went before we saw them */
        return;
    }
    from = len - info->n_added;
    left = info->n_added;
    if (evbuffer_ptr_set(buf, &pos, from, EVBUFFER_PTR_SET) != 0)
        return;
    while (left > 0) {
        int i, nv = evbuffer_peek(buf, (ev_ssize_t)left, &pos, v, 8);
        if (nv <= 0)
            break;
        for (i = 0; i < nv && i < 8 && left > 0; i++) {
            size_t take = v[i].iov_len < left ? v[i].iov_len : left;
            faas_http_tap_feed(&k->tap, v[i].iov_base, take);
            left -= take;
            evbuffer_ptr_set(buf, &pos, take, EVBUFFER_PTR_ADD);
        }
    }
    /* A result too large fails as soon as its size is known (libevent
     * may cut it off before api_cb sees it); only the instance's own
     * connections count. */
    if (k->peer == PEER_OURS && c->inst && !c->dead && c->rid[0] && !c->queued &&
        faas_http_tap_oversize(&k->tap, c->rt->opts.max_sync_payload, &id) &&
        strcmp(id, c->rid) == 0) {
        memcpy(c->too_big, c->rid, sizeof c->too_big);
        outcome_too_big(c, k->tap.body);
    }
}

/* evhttp's factory for a new connection's bufferevent: ours, tapped. */
static struct bufferevent *bev_cb(struct event_base *base, void *arg)
{
    struct faas_runtime_api *c = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    struct faas_list *e, *next;
    struct cmd_conn *k;

    if (!bev)
        return NULL; /* evhttp makes one itself */
    /* A record with this address is of a connection freed before it had a
     * request (its bufferevent's memory is reused): drop it. */
    for (e = c->conns.next; e != &c->conns; e = next) {
        next = e->next;
        k = FAAS_CONTAINER_OF(e, struct cmd_conn, link);
        if (k->bev == bev && !k->evcon)
            conn_free(k);
    }
    if (!(k = faas_calloc(1, sizeof *k)))
        return bev; /* untapped */
    faas_list_init(&k->link);
    k->c = c;
    k->bev = bev;
    faas_http_tap_init(&k->tap);
    k->tap.on_body = stream_body;
    k->tap.body_arg = k;
    k->tap_cb = evbuffer_add_cb(bufferevent_get_input(bev), tap_cb, k);
    if (!k->tap_cb)
        faas_http_tap_stop(&k->tap);
    faas_list_insert_head(&c->conns, &k->link);
    return bev;
}

static void conn_closecb(struct evhttp_connection *evcon, void *arg)
{
    struct cmd_conn *k = arg;
    struct faas_runtime_api *c = k->c;

    (void)evcon;
    if (c->next_conn == k) {
        /* A /next libevent detached from its failed connection is ours to
         * free; one still on the connection goes with it. */
        if (c->next_req && evhttp_request_get_connection(c->next_req) == NULL)
            evhttp_request_free(c->next_req);
        c->next_req = NULL;
        c->next_conn = NULL;
    }
    if (k->parked && evhttp_request_get_connection(k->parked) == NULL)
        evhttp_request_free(k->parked); /* detached: as a /next above */
    k->parked = NULL;
    if (k->tap_cb)
        evbuffer_remove_cb_entry(bufferevent_get_input(k->bev), k->tap_cb);
    conn_free(k);
}

/* The record of req's connection (made now if the factory could not),
 * with its close callback set on first use; NULL when out of memory. */
static struct cmd_conn *conn_of(struct faas_runtime_api *c, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    struct faas_list *e;
    struct cmd_conn *k = NULL;

    if (!bev)
        return NULL;
    for (e = c->conns.next; e != &c->conns; e = e->next) {
        k = FAAS_CONTAINER_OF(e, struct cmd_conn, link);
        if (k->bev == bev)
            break;
        k = NULL;
    }
    if (!k) {
        if (!(k = faas_calloc(1, sizeof *k)))
            return NULL;
        faas_list_init(&k->link);
        k->c = c;
        k->bev = bev;
        faas_http_tap_init(&k->tap);
        faas_http_tap_stop(&k->tap);
        faas_list_insert_head(&c->conns, &k->link);
    }
    if (!k->evcon) {
        k->evcon = evcon;
        evhttp_connection_set_closecb(evcon, conn_closecb, k);
    }
    return k;
}

static void api_cb(struct evhttp_request *req, void *arg)
{
    struct faas_runtime_api *c = arg;
    struct faas_http_tap_req *tr;
    struct cmd_conn *k;

    if (!c->inst || c->dead)
        return; /* going away: dropped with the server */
    c->depth++;
    if (!(k = conn_of(c, req))) {
        /* Without a record no verdict can be kept: refuse. */
        reply_error(req, 500, "Internal Server Error", "ServiceException", "out of memory");
        c->depth--;
        return;
    }
    tr = faas_http_tap_take(&k->tap, k->served++);
    conn_check(c, k);
    if (k->peer == PEER_UNCHECKED && !c->dead) {
        /* Its process is spawned, its pid on the way: the request waits
         * for it (evhttp reads nothing more of this connection meanwhile). */
        k->parked = req;
        k->parked_tr = tr;
        faas_runtime_api_test_parks++;
        recheck_soon(c);
    } else if (!c->dead) {
        serve(c, k, req, tr);
        faas_http_tap_req_free(tr);
    } else {
        faas_http_tap_req_free(tr);
    }
    c->depth--;
}

static int listen_on(struct faas_runtime_api *c, const char *addr)
{
    struct evhttp_bound_socket *sock;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    size_t limit = c->rt->opts.max_sync_payload;

    if (!(c->http = evhttp_new(c->rt->base)))
        return FAAS_ENOMEM;
    /* Every method reaches api_cb, which answers 405 itself. */
    evhttp_set_allowed_methods(c->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(c->http, limit > (size_t)INT64_MAX / 4
                                          ? -1
                                          : (ev_ssize_t)(limit * 2 + BODY_SLACK));
    evhttp_set_max_headers_size(c->http, (ev_ssize_t)(FAAS_HTTP_TAP_TRAILER_MAX + 65536));
    evhttp_set_bevcb(c->http, bev_cb, c);
    evhttp_set_gencb(c->http, api_cb, c);
    if (!(sock = evhttp_bind_socket_with_handle(c->http, addr, 0)))
        return FAAS_ESYS;
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) != 0)
        return FAAS_ESYS;
    if (ss.ss_family == AF_INET)
        c->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
        c->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return c->port ? 0 : FAAS_ESYS;
}

int faas_runtime_api_new(struct faas_instance *inst, const char *addr, uint16_t *port)
{
    struct faas_runtime *rt = inst->fn->rt;
    struct faas_runtime_api *c;
    size_t alen;
    int rc = FAAS_ENOMEM;

    if (!(c = faas_calloc(1, sizeof *c)))
        return FAAS_ENOMEM;
    c->rt = rt;
    faas_list_init(&c->conns);
    c->warns_tail = &c->warns;
    alen = strlen(rt->opts.region) + strlen(inst->fn->name) + 64;
    if (!(c->arn = faas_malloc(alen)) || !(c->event = evbuffer_new()) ||
        !(c->deliver_ev = event_new(rt->base, -1, 0, deliver_cb, c)) ||
        !(c->stream = evbuffer_new()) ||
        !(c->stream_ev = event_new(rt->base, -1, 0, stream_cb, c)) ||
        !(c->watch_ev = event_new(rt->base, -1, 0, watch_cb, c)) ||
        !(c->recheck_ev = event_new(rt->base, -1, 0, recheck_cb, c)) ||
        !(c->warn_ev = event_new(rt->base, -1, 0, warn_cb, c)))
        goto fail;
    snprintf(c->arn, alen, "arn:aws:lambda:%s:000000000000:function:%s", rt->opts.region,
             inst->fn->name);
    if ((rc = listen_on(c, addr)) != 0)
        goto fail;
    c->inst = inst;
    inst->runtime_api = c;
    *port = c->port;
    return 0;
fail:
    cmd_destroy(c);
    return rc;
}

/* Writes what a connection's socket can take of the replies still queued
 * on it (the server is about to go). */
static void flush_replies(struct cmd_conn *k)
{
    struct evbuffer *out = bufferevent_get_output(k->bev);
    evutil_socket_t fd = bufferevent_getfd(k->bev);
    size_t len = evbuffer_get_length(out);
    ssize_t n;

    if (fd < 0 || len == 0)
        return;
    n = send(fd, evbuffer_pullup(out, -1), len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0)
        evbuffer_drain(out, (size_t)n);
}

static void cmd_destroy(struct faas_runtime_api *c)
{
    struct faas_list *e;

    c->inst = NULL;
    c->dead = 1;
    c->next_req = NULL;
    c->next_conn = NULL;
    if (c->deliver_ev)
        event_free(c->deliver_ev);
    if (c->stream_ev)
        event_free(c->stream_ev);
    c->stream_ev = NULL;
    if (c->watch_ev)
        event_free(c->watch_ev);
    if (c->recheck_ev)
        event_free(c->recheck_ev);
    if (c->warn_ev)
        event_free(c->warn_ev);
    c->deliver_ev = c->watch_ev = c->recheck_ev = c->warn_ev = NULL;
    warns_clear(c);
    for (e = c->conns.next; e != &c->conns; e = e->next) {
        struct cmd_conn *k = FAAS_CONTAINER_OF(e, struct cmd_conn, link);
        if (k->evcon)
            flush_replies(k);
    }
    /* Frees every connection: their close callbacks free their records. */
    if (c->http)
        evhttp_free(c->http);
    /* Records of connections that never had a request: their bufferevents
     * are gone with the server, so only the records are freed. */
    while ((e = faas_list_pop_head(&c->conns)) != NULL) {
        struct cmd_conn *k = FAAS_CONTAINER_OF(e, struct cmd_conn, link);
        k->tap_cb = NULL;
        conn_free(k);
    }
    if (c->event)
        evbuffer_free(c->event);
    if (c->stream)
        evbuffer_free(c->stream);
    json_decref(c->out_payload);
    free(c->trace_given);
    free(c->client_context);
    free(c->arn);
    free(c);
}

void faas_runtime_api_free(struct faas_instance *inst)
{
    struct faas_runtime_api *c = inst ? inst->runtime_api : NULL;

    if (!c)
        return;
    inst->runtime_api = NULL;
    c->inst = NULL;
    if (c->depth > 0) {
        /* Inside one of our evhttp callbacks: free from a clean stack. */
        c->dead = 1;
        json_decref(c->out_payload);
        c->out_payload = NULL;
        c->out = OUT_NONE;
        deliver_soon(c);
        return;
    }
    cmd_destroy(c);
}

/* ==== handing over an invocation ======================================= */

static void make_trace_id(struct faas_runtime_api *c)
{
    char a[33], b[33];
    int64_t wall = faas_wall_ns(c->rt);
    faas_random_hex32(c->rt, a);
    faas_random_hex32(c->rt, b);
    snprintf(c->trace, sizeof c->trace, "Root=1-%08llx-%.24s;Parent=%.16s;Sampled=0",
             (unsigned long long)(wall / 1000000000) & 0xffffffffull, a, b);
}

/* Fills the queued event from inv. 0 or FAAS_ENOMEM. */
static int prepare(struct faas_runtime_api *c, struct faas_inv *inv)
{
    struct faas_runtime *rt = c->rt;
    uint64_t deadline = atomic_load(&inv->ctx.deadline_ns), now = faas_now_ns(rt);
    uint64_t left_ms = deadline == 0 ? NO_DEADLINE_MS
                       : deadline > now ? (deadline - now) / 1000000u
                                        : 0;
    int64_t wall_ms = faas_wall_ns(rt) / 1000000;

    snprintf(c->rid, sizeof c->rid, "%s", inv->res.request_id);
    snprintf(c->deadline, sizeof c->deadline, "%lld", (long long)(wall_ms + (int64_t)left_ms));
    free(c->trace_given);
    free(c->client_context);
    c->trace_given = c->client_context = NULL;
    evbuffer_drain(c->event, evbuffer_get_length(c->event));
    if (inv->trace_id && inv->trace_id[0]) {
        if (!(c->trace_given = faas_strdup(inv->trace_id)))
            return FAAS_ENOMEM;
    } else {
        make_trace_id(c);
    }
    if (inv->client_context) {
        size_t n = json_dumpb(inv->client_context, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
        if (n == 0 || !(c->client_context = faas_malloc(n + 1)))
            return FAAS_ENOMEM;
        json_dumpb(inv->client_context, c->client_context, n, JSON_COMPACT | JSON_ENCODE_ANY);
        c->client_context[n] = '\0';
    }
    if (faas_json_dump_evbuffer(c->event, inv->event ? inv->event : json_null()) != 0)
        return FAAS_ENOMEM;
    return 0;
}

void faas_runtime_api_send(struct faas_instance *inst, struct faas_inv *inv)
{
    struct faas_runtime_api *c = inst ? inst->runtime_api : NULL;

    if (!c || c->dead || !inv)
        return;
    /* Nothing of an earlier stream is this invocation's. */
    c->streamed = 0;
    evbuffer_drain(c->stream, evbuffer_get_length(c->stream));
    if (prepare(c, inv) != 0) {
        c->rid[0] = '\0';
        c->queued = 0;
        outcome(c, OUT_RESULT, FAAS_ENOMEM,
                faas_error_object("Runtime.OutOfMemory", "the host is out of memory"));
        return;
    }
    c->queued = 1;
    if (c->next_req)
        answer_next(c);
}

/* ==== tests ============================================================ */

int faas_runtime_api_waiting(const struct faas_instance *inst)
{
    return inst && inst->runtime_api && inst->runtime_api->next_req != NULL;
}

uint16_t faas_runtime_api_port(const struct faas_instance *inst)
{
    return inst && inst->runtime_api ? inst->runtime_api->port : 0;
}

int faas_runtime_api_queued(const struct faas_instance *inst)
{
    return inst && inst->runtime_api && inst->runtime_api->queued;
}

/*
 * http_stream.c - the gateway's replies that stream: a held request
 * (struct faas_http_hold) answered as its handler writes, through
 * stream.c's sink.
 *
 * Two shapes:
 *
 *   EVENTS   InvokeWithResponseStream (lambda_api.c): 200 with
 *            application/vnd.amazon.eventstream, one PayloadChunk event
 *            per write, then one InvokeComplete event (ErrorCode and
 *            ErrorDetails on failure). A handler that did not stream gets
 *            its JSON result sent as one PayloadChunk.
 *   CHUNKED  an api: route (http.c): 200, application/octet-stream, the
 *            bytes as they are, chunked; a failure after the first chunk
 *            ends the body and is logged (the status is already out). A
 *            handler that did not stream is answered as always.
 *
 * The reply starts at the first write (len 0 included): the head goes out
 * with the first chunk. Each chunk is handed to evhttp at once; what the
 * client has not read yet waits in the connection's output buffer. That
 * buffer is the bound: when a chunk leaves more than
 * FAAS_STREAM_BUFFER_MAX bytes unread, the stream is cut (the client
 * reads too slowly, or not at all): an event stream gets an InvokeComplete
 * with ErrorCode "ResponseStreamBufferFull", a chunked body has its
 * connection closed without the last chunk, a warning is logged, and the
 * handler's later writes return FAAS_ECANCELED. A client that goes away
 * (its connection closes, http_conn.c's hold callback) ends the stream
 * the same way for the handler.
 *
 * Invariants: p->inv is the invocation until it releases the sink (just
 * before its result callback, or when it is cancelled) and NULL after; a reply that is cut lets its request go at once
 * (faas_http_hold_release) but the hold stays on the pending list until
 * the result, so teardown still orphans it.
 *
 * Callers: lambda_api.c and http.c, on the loop thread. Calls invoke.c
 * (faas_invoke_stream), stream.c (faas_stream_cancel), event_stream.c,
 * metrics.c's log records, libevent's evhttp.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

#include "event_stream.h"
#include "faas_int.h"
#include "http_int.h"

/* Bytes of one PayloadChunk at most: a larger write is several events. */
#define EVENT_CHUNK_MAX ((size_t)256 * 1024)

static const struct faas_es_header chunk_headers[] = {
    { ":event-type", "PayloadChunk" },
    { ":content-type", "application/octet-stream" },
    { ":message-type", "event" },
};

static const struct faas_es_header complete_headers[] = {
    { ":event-type", "InvokeComplete" },
    { ":content-type", "application/json" },
    { ":message-type", "event" },
};

#define NHDRS(a) (sizeof(a) / sizeof((a)[0]))

static void start(struct faas_http_hold *p, struct evhttp_request *req)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);

    p->started = 1;
    if (p->stream == FAAS_HTTP_STREAM_EVENTS) {
        evhttp_add_header(oh, "Content-Type", "application/vnd.amazon.eventstream");
        evhttp_add_header(oh, "x-amzn-RequestId", p->request_id);
        evhttp_add_header(oh, "X-Amz-Executed-Version", p->version);
    } else {
        evhttp_add_header(oh, "Content-Type", "application/octet-stream");
    }
    evhttp_send_reply_start(req, 200, "OK");
}

/* data as the reply's next bytes: events, or as they are. 0 or FAAS_ENOMEM. */
static int put_chunk(struct faas_http_hold *p, struct evhttp_request *req, const void *data,
                     size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    const char *d = data;
    int rc = 0;

    if (!buf)
        return FAAS_ENOMEM;
    if (p->stream == FAAS_HTTP_STREAM_EVENTS) {
        while (len > 0 && rc == 0) {
            size_t n = len < EVENT_CHUNK_MAX ? len : EVENT_CHUNK_MAX;
            rc = faas_es_write(buf, chunk_headers, NHDRS(chunk_headers), d, n);
            d += n;
            len -= n;
        }
    } else if (evbuffer_add(buf, data, len) != 0) {
        rc = FAAS_ENOMEM;
    }
    if (rc == 0)
        evhttp_send_reply_chunk(req, buf);
    evbuffer_free(buf);
    return rc;
}

/* The InvokeComplete event: {} on success, else ErrorCode and ErrorDetails. */
static void put_complete(struct evhttp_request *req, const char *code, const char *details)
{
    struct evbuffer *buf = evbuffer_new();
    json_t *j = code ? json_pack("{s:s, s:s}", "ErrorCode", code, "ErrorDetails",
                                 details ? details : "")
                     : json_object();
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

    if (buf && faas_es_write(buf, complete_headers, NHDRS(complete_headers),
                             text ? text : "{}", text ? strlen(text) : 2) == 0)
        evhttp_send_reply_chunk(req, buf);
    if (buf)
        evbuffer_free(buf);
    free(text);
    json_decref(j);
}

/* Bytes handed to the connection that the client has not taken yet. */
static size_t unread(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

/* The client reads too slowly: the stream ends here (see the top). */
static void cut(struct faas_http_hold *p, struct evhttp_request *req)
{
    struct faas_inv *inv = p->inv;

    faas_log_event(inv->rt, FAAS_LOG_WARNING, inv->fn->name, inv->res.request_id, "stream-cut",
                   NULL, "more than %zu bytes waited for the client: the response stream was cut",
                   FAAS_STREAM_BUFFER_MAX);
    faas_http_hold_release(p);
    if (p->stream == FAAS_HTTP_STREAM_EVENTS) {
        put_complete(req, "ResponseStreamBufferFull",
                     "the client read the response stream too slowly");
        evhttp_send_reply_end(req);
    } else {
        /* No last chunk: the client sees the body cut short. */
        evhttp_connection_free(evhttp_request_get_connection(req));
    }
}

static int sink(void *arg, const void *data, size_t len)
{
    struct faas_http_hold *p = arg;
    struct evhttp_request *req = p->req;

    if (!req)
        return FAAS_ECANCELED; /* gone, or cut */
    if (!p->started)
        start(p, req);
    if (len == 0)
        return 0;
    if (put_chunk(p, req, data, len) != 0 || unread(req) > FAAS_STREAM_BUFFER_MAX) {
        cut(p, req);
        return FAAS_ECANCELED;
    }
    return 0;
}

static void gone(struct faas_http_hold *p)
{
    if (p->inv)
        faas_stream_cancel(p->inv);
}

/* The invocation is done with p (its result comes next, or it was
 * cancelled): p forgets it. */
static void release(void *arg)
{
    struct faas_http_hold *p = arg;
    p->inv = NULL;
    p->on_gone = NULL;
}

static const struct faas_stream_sink hold_sink = { sink, release };

int faas_http_stream_invoke(struct faas_runtime *rt, struct faas_fn *fn, json_t *ev,
                            const struct faas_invoke_opts *o, const char *reqid,
                            struct faas_http_hold *p, enum faas_http_stream_kind kind,
                            faas_result_fn cb)
{
    struct faas_inv *inv = NULL;
    int rc;

    p->stream = kind;
    rc = faas_invoke_stream(rt, fn, ev, o, reqid, &hold_sink, p, cb, p, &inv);
    if (rc == 0) {
        p->inv = inv;
        p->on_gone = gone;
    }
    return rc;
}

void faas_http_stream_finish(struct faas_http_hold *p, struct evhttp_request *req,
                             const struct faas_result *res)
{
    const char *etype = faas_result_error_type(res), *emsg = faas_result_error_message(res);

    if (p->stream != FAAS_HTTP_STREAM_EVENTS) {
        if (res->status != 0 && p->h)
            faas_log_event(p->h->rt, FAAS_LOG_WARNING, res->function, res->request_id,
                           "stream-failed", NULL, "the response stream ended with %s: %s",
                           etype ? etype : faas_strerror(res->status), emsg ? emsg : "");
        evhttp_send_reply_end(req);
        return;
    }
    if (!p->started) {
        start(p, req);
        if (res->status == 0) {
            char *text = json_dumps(res->payload ? res->payload : json_null(),
                                    JSON_COMPACT | JSON_ENCODE_ANY);
            if (text)
                put_chunk(p, req, text, strlen(text));
            free(text);
        }
    }
    if (res->status == 0)
        put_complete(req, NULL, NULL);
    else
        put_complete(req, etype ? etype : "Unhandled", emsg ? emsg : faas_strerror(res->status));
    evhttp_send_reply_end(req);
}

void faas_http_stream_abort(struct faas_http_hold *p, struct evhttp_request *req)
{
    p->on_gone = NULL;
    if (p->stream == FAAS_HTTP_STREAM_EVENTS)
        put_complete(req, "ServiceException", "the runtime is shutting down");
    evhttp_send_reply_end(req);
}

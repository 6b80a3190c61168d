/*
 * http.c - the HTTP gateway: api: routes served on an evhttp server, each
 * request turned into API Gateway's HTTP API payload 2.0 event, invoked
 * request/response, and the result mapped back to an HTTP response with
 * payload 2.0's rules.
 *
 * It is made of three more files: the route table (route.c), pure, a trie
 * of path segments that finds a request's most specific route without
 * allocating; payload 2.0 (http_event.c), the event built from a request's
 * parts (pure too) and the result mapped back to a reply; and the
 * connections and listeners (http_conn.c), bounded in time and number.
 * This file owns the gateway's state (struct faas_http), its requests and
 * the records that hold them until their results. Per request the gateway
 * walks the headers once, formats the time once a second, shares the
 * strings that repeat between events (a cache, see http_event.h), hands
 * the event to faas_invoke_fn without the copy or the size walk
 * faas_invoke would make when the parts' lengths already bound its size,
 * and reuses its pending-request records.
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
 * Requests under /2015-03-31/functions/ (and /2021-11-15/functions/,
 * InvokeWithResponseStream) go to Lambda's Invoke API
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
 * accepting pauses when it fails (http_conn.c).
 *
 * Draining (rt->draining, faas_http_drain): idle connections are closed,
 * every new request is answered 503 with Connection: close, and requests
 * being served finish, their connections closing after the response.
 *
 * Choices where API Gateway leaves room: a trailing "*" segment is {proxy+}
 * (one or more segments under its parent, not the parent itself; the tail
 * is pathParameters.proxy); a request without Content-Type counts as
 * textual; header values and parameters that are not UTF-8 reach the event
 * with U+FFFD for bad bytes; the response's choices are http_event.c's.
 * Callers: the host (faas_http_attach, _bind, _detach, _port), source.c
 * (a route per HTTP mapping, faas_http_free with the last runtime state),
 * runtime.c (faas_http_drain, http_conn.c's), lambda_api.c (the holds).
 * It calls route.c, http_event.c and http_conn.c, the Invoke API
 * (lambda_api.c), and the invocation's entry (faas_fn_lookup,
 * faas_invoke_fn), whose result comes back through a callback.
 * Everything runs on the loop thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>

#include "faas_int.h"
#include "http_int.h"

/* ==== the gateway ===================================================== */

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

/* ---- pending requests ------------------------------------------------- */

/* Takes p's request back from the connection, for a reply. */
static struct evhttp_request *pending_take(struct faas_http_hold *p)
{
    struct evhttp_request *req = p->req;
    if (!req)
        return NULL;
    faas_http_conn_unhold(p);
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

    p->req = req;
    faas_list_insert_tail(&h->pending, &p->link);
    p->evcon = evcon;
    if (evcon)
        faas_http_conn_hold(h, p);
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

struct evhttp_request *faas_http_hold_release(struct faas_http_hold *p)
{
    return pending_take(p);
}

static void result_cb(const struct faas_result *res, void *arg)
{
    struct faas_http_hold *p = arg;
    struct evhttp_request *req = pending_take(p);

    faas_list_remove(&p->link);
    if (req && p->started)
        faas_http_stream_finish(p, req, res);
    else if (req)
        faas_http_reply_result(req, p->head, res);
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
#define STREAM_API_PREFIX "/2021-11-15/functions/"
#define STREAM_API_PREFIX_LEN (sizeof STREAM_API_PREFIX - 1)

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
    if (rt->opts.invoke_api && (strncmp(path, INVOKE_API_PREFIX, INVOKE_API_PREFIX_LEN) == 0 ||
                                strncmp(path, STREAM_API_PREFIX, STREAM_API_PREFIX_LEN) == 0)) {
        faas_rt_enter(rt); /* h outlives the request: a free waits */
        h->busy++;
        faas_invoke_api_request(rt, req);
        h->busy--;
        faas_rt_leave(rt);
        return;
    }
    if (rt->draining) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        faas_http_reply_message(req, head, 503, "Service Unavailable");
        return;
    }
    if (rt->closing || rt->free_requested) {
        faas_http_reply_message(req, head, 503, "Service Unavailable");
        return;
    }
    memset(&in, 0, sizeof in);
    in.path = path;
    in.path_len = strlen(path);
    r = faas_route_match(h->routes, method, path, in.path_len, &m);
    if (!r) {
        faas_http_reply_message(req, head, 404, "Not Found");
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
        faas_http_reply_message(req, head, 431, "Request Header Fields Too Large");
        return;
    }
    in.body_len = evbuffer_get_length(body);
    if (in.body_len > max_body(rt)) {
        faas_http_reply_message(req, head, 413, "Request Entity Too Large");
        return;
    }
    if (nh > HDRS_SMALL) {
        size_t i = 0;
        if (!(hdrs = faas_malloc(nh * sizeof *hdrs))) {
            faas_http_reply_message(req, head, 500, "Internal Server Error");
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
        faas_http_reply_message(req, head, 500, "Internal Server Error");
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
        /* A handler that streams answers in chunks (not to a HEAD). */
        rc = head ? faas_invoke_fn(rt, fn, ev, NULL, NULL, result_cb, p)
                  : faas_http_stream_invoke(rt, fn, ev, NULL, NULL, p,
                                            FAAS_HTTP_STREAM_CHUNKED, result_cb);
        ev = NULL; /* taken */
    }
    json_decref(ev);
    if (rc == 0) {
        pending_wait(h, p, req);
    } else {
        faas_http_reply_status(req, head, rc, 1);
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
    if (faas_http_conns_start(h) != 0) {
        h->http = NULL;
        return FAAS_ENOMEM;
    }
    faas_http_listeners_watch(h);
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
    if (faas_http_conns_start(h) != 0) {
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
    faas_http_listeners_watch(h);
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
        if (req && p->started)
            faas_http_stream_abort(p, req);
        else if (req && p->api)
            faas_invoke_api_unavailable(p, req);
        else if (req)
            faas_http_reply_message(req, p->head, 503, "Service Unavailable");
    }
    if (h->http) {
        faas_http_listeners_unwatch(h);
        if (h->own) {
            evhttp_free(h->http); /* releases the adopted connections' records */
        } else {
            evhttp_set_gencb(h->http, NULL, NULL);
            evhttp_set_bevcb(h->http, NULL, NULL);
        }
    }
    faas_http_conns_stop(h);
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

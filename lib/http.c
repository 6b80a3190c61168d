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
 * is pathParameters.proxy); a request without Content-Type counts as
 * textual; header values and parameters that are not UTF-8 reach the event
 * with U+FFFD for bad bytes; the response's choices are http_event.c's.
 * Everything runs on the loop thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "faas_int.h"
#include "http.h"

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
        rc = faas_invoke_fn(rt, fn, ev, NULL, NULL, result_cb, p);
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
            faas_http_reply_message(req, p->head, 503, "Service Unavailable");
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

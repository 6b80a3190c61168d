/*
 * http_conn.c - the HTTP gateway's connections and listeners: every
 * connection of its server bounded in time (http_read_timeout_ms,
 * http_idle_timeout_ms) and the server in connections
 * (http_max_connections), accepting paused when it fails, warnings about
 * both rate-limited, and a held request tied to its connection so that a
 * client that goes away only clears the hold's request.
 *
 * It owns the connection records (struct http_conn, the state machine
 * drawn under "connections") and the listener records (struct
 * http_listener, in a process-wide registry), and the fields of struct
 * faas_http (http_int.h) that say so there. Invariants: an adopted record
 * sits on h->conns and in h->by_fd under its descriptor, with the
 * connection's close callback pointing at it; h->nconns counts the records
 * that count against the limit; a hold (struct faas_http_hold) on a
 * connection with a record is the record's `hold`, otherwise the
 * connection's close callback points at the hold.
 *
 * Callers: http.c (the gateway: start and stop on attach, bind, detach and
 * free; holds) and runtime.c (faas_http_drain, declared in faas_int.h).
 * It calls libevent's bufferevent, evhttp and evconnlistener, the
 * runtime's clock and log (faas_now_ns, faas_log_event inside
 * faas_rt_enter/faas_rt_leave) and the allocators; never the invocation
 * pipeline. Everything runs on the loop thread but the registry, which a
 * mutex guards.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "faas_int.h"
#include "http_int.h"

/* The connection of a held request without a record closes. */
static void hold_closecb(struct evhttp_connection *evcon, void *arg)
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
    if (p->on_gone)
        p->on_gone(p); /* a streamed reply: its handler hears it */
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

/* evhttp is freeing the connection. */
static void conn_closecb(struct evhttp_connection *evcon, void *arg)
{
    struct http_conn *c = arg;
    if (c->hold)
        hold_closecb(evcon, c->hold);
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
        faas_http_listeners_watch(h); /* the host may have bound more since */
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
void faas_http_listeners_watch(struct faas_http *h)
{
    evhttp_foreach_bound_socket(h->http, listener_watch_cb, h);
}

/* Stops watching; a live listener gets libevent's behaviour back (and is
 * enabled again if paused). */
void faas_http_listeners_unwatch(struct faas_http *h)
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
int faas_http_conns_start(struct faas_http *h)
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
void faas_http_conns_stop(struct faas_http *h)
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

/* ---- held requests on their connections -------------------------------- */

void faas_http_conn_hold(struct faas_http *h, struct faas_http_hold *p)
{
    struct evhttp_connection *evcon = p->evcon;
    struct faas_list *e;
    struct http_conn *c;

    /* A connection with a record keeps the record's close callback. */
    if (!(c = conn_of(h, evcon)) && !faas_list_empty(&h->fresh)) {
        while ((e = h->fresh.next) != &h->fresh)
            conn_adopt(FAAS_CONTAINER_OF(e, struct http_conn, link));
        c = conn_of(h, evcon);
    }
    if (c)
        c->hold = p;
    else
        evhttp_connection_set_closecb(evcon, hold_closecb, p);
}

void faas_http_conn_unhold(struct faas_http_hold *p)
{
    struct http_conn *c;

    if (p->evcon && (c = conn_of(p->h, p->evcon)) != NULL)
        c->hold = NULL;
    else if (p->evcon)
        evhttp_connection_set_closecb(p->evcon, NULL, NULL);
}

/*
 * http_int.h - the HTTP gateway's state, shared by the two files that make
 * it: http.c (routes, requests, the records that hold them until their
 * results), http_conn.c (connections and listeners) and http_stream.c
 * (replies that stream, which log through the gateway's runtime). Nothing
 * else includes it: the rest of the library reaches the gateway through
 * faas_int.h and http.h.
 */
#ifndef FAAS_HTTP_INT_H
#define FAAS_HTTP_INT_H

#include <stddef.h>
#include <stdint.h>

#include "faas_int.h"
#include "http.h"

struct event;
struct evhttp;
struct timeval;
struct http_conn;

/* Warnings that repeat (accept failures, refused connections) are logged
 * at most once a second each, with the count of those left out. They are
 * made inside evhttp's accept path and a listener's error callback, which
 * touch their state after we return: a log callback that freed the runtime
 * there would pull it from under them. So a warning's line is kept here
 * and delivered by adopt_cb (http_conn.c), from the loop, inside
 * faas_rt_enter. */
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
    /* connections and listeners: http_conn.c's */
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

/* ---- http_conn.c ------------------------------------------------------ */

/* Sets the connection machinery up on h->http (attach, bind); 0 or
 * FAAS_ENOMEM. */
int faas_http_conns_start(struct faas_http *h);
/* The gateway goes; the server may stay (attached). Own server: called
 * after its evhttp_free, which released every adopted record. */
void faas_http_conns_stop(struct faas_http *h);
/* Watches the server's listeners not yet watched: accepting pauses when
 * it fails. */
void faas_http_listeners_watch(struct faas_http *h);
/* Stops watching; a live listener gets libevent's behaviour back (and is
 * enabled again if paused). */
void faas_http_listeners_unwatch(struct faas_http *h);
/* Ties hold p (req and evcon set, evcon not NULL) to its connection: a
 * connection that closes first clears p->req (and frees a request
 * libevent detached from it). */
void faas_http_conn_hold(struct faas_http *h, struct faas_http_hold *p);
/* Unties p from its connection, before its request is answered. */
void faas_http_conn_unhold(struct faas_http_hold *p);

#endif /* FAAS_HTTP_INT_H */

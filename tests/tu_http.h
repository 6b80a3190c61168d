/*
 * tu_http.h - the suites' loopback HTTP client. A request goes out through
 * libevent's own evhttp client on the test's base, and the test runs that
 * base until the reply is in, with a bound: no thread, no sleep. Raw
 * sockets do what evhttp will not: send a request and go away, and read a
 * reply as the bytes on the wire.
 */
#ifndef FAAS_TU_HTTP_H
#define FAAS_TU_HTTP_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "testutil.h"

/* A reply as evhttp's client got it; tu_resp_clear frees it. */
struct tu_resp {
    int done;        /* the request's callback ran */
    int code;        /* -1: no reply (the connection failed or ended) */
    char *body;      /* len bytes, then a NUL */
    size_t len;
    json_t *headers; /* lower-case name -> array of values */
};

static inline void tu_resp_clear(struct tu_resp *r)
{
    free(r->body);
    json_decref(r->headers);
    memset(r, 0, sizeof *r);
}

/* evhttp's request callback: fills the struct tu_resp at arg. */
static inline void tu_resp_cb(struct evhttp_request *req, void *arg)
{
    struct tu_resp *r = arg;
    struct evbuffer *in;
    struct evkeyval *kv;

    r->done = 1;
    if (!req) {
        r->code = -1;
        return;
    }
    r->code = evhttp_request_get_response_code(req);
    in = evhttp_request_get_input_buffer(req);
    r->len = evbuffer_get_length(in);
    r->body = malloc(r->len + 1);
    evbuffer_remove(in, r->body, r->len);
    r->body[r->len] = '\0';
    r->headers = json_object();
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next) {
        char name[128];
        size_t i;
        json_t *a;
        for (i = 0; kv->key[i] && i < sizeof name - 1; i++)
            name[i] = (char)(kv->key[i] >= 'A' && kv->key[i] <= 'Z' ? kv->key[i] + 32
                                                                   : kv->key[i]);
        name[i] = '\0';
        if (!(a = json_object_get(r->headers, name))) {
            a = json_array();
            json_object_set_new(r->headers, name, a);
        }
        json_array_append_new(a, json_string(kv->value));
    }
}

/* The first value of a header (name in lower case), or NULL. */
static inline const char *tu_resp_header(const struct tu_resp *r, const char *name)
{
    return json_string_value(json_array_get(json_object_get(r->headers, name), 0));
}

/*
 * Starts a request on a new connection to 127.0.0.1:port; *r is zeroed and
 * filled when the loop delivers the reply. headers: "Name", "value", ...,
 * NULL (or NULL); a Host header is added if absent. body (blen bytes) may be
 * NULL. The caller frees the connection, once r->done.
 */
static inline struct evhttp_connection *tu_http_start(struct event_base *base, uint16_t port,
                                                      enum evhttp_cmd_type type,
                                                      const char *uri,
                                                      const char *const *headers,
                                                      const void *body, size_t blen,
                                                      struct tu_resp *r)
{
    struct evhttp_connection *c = evhttp_connection_base_new(base, NULL, "127.0.0.1", port);
    struct evhttp_request *req = evhttp_request_new(tu_resp_cb, r);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    int host = 0;

    memset(r, 0, sizeof *r);
    for (; headers && headers[0]; headers += 2) {
        evhttp_add_header(oh, headers[0], headers[1]);
        host |= strcasecmp(headers[0], "Host") == 0;
    }
    if (!host)
        evhttp_add_header(oh, "Host", "127.0.0.1");
    if (body)
        evbuffer_add(evhttp_request_get_output_buffer(req), body, blen);
    assert_int_equal(evhttp_make_request(c, req, type, uri), 0);
    return c;
}

/* One request, as tu_http_start, run until its reply is in (bound_ms). */
static inline void tu_http_request(struct event_base *base, uint16_t port,
                                   enum evhttp_cmd_type type, const char *uri,
                                   const char *const *headers, const void *body, size_t blen,
                                   struct tu_resp *r, unsigned bound_ms)
{
    struct evhttp_connection *c = tu_http_start(base, port, type, uri, headers, body, blen, r);
    assert_true(tu_run_until(base, &r->done, 1, bound_ms));
    evhttp_connection_free(c);
}

/* A blocking socket connected to 127.0.0.1:port. */
static inline int tu_raw_connect(uint16_t port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Connects and writes all of req, a raw request; returns the socket. */
static inline int tu_raw_send(uint16_t port, const char *req)
{
    int fd = tu_raw_connect(port);
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    return fd;
}

/* A raw reply being read: complete once the headers and Content-Length
 * bytes are in, or the connection closed. */
struct tu_raw_resp {
    int fd;
    char buf[16384]; /* NUL-terminated */
    size_t len;
    int closed;
};

/* Reads what has come without blocking; 1 when the reply is complete. */
static inline int tu_raw_complete(const void *arg)
{
    struct tu_raw_resp *r = (struct tu_raw_resp *)(uintptr_t)arg;
    const char *end, *cl;
    ssize_t n = -1;

    while (!r->closed && r->len < sizeof r->buf - 1 &&
           (n = recv(r->fd, r->buf + r->len, sizeof r->buf - 1 - r->len, MSG_DONTWAIT)) != 0) {
        if (n < 0)
            break;
        r->len += (size_t)n;
    }
    if (n == 0)
        r->closed = 1;
    r->buf[r->len] = '\0';
    if (r->closed)
        return 1;
    if (!(end = strstr(r->buf, "\r\n\r\n")))
        return 0;
    cl = strcasestr(r->buf, "\r\ncontent-length:");
    return cl && cl < end &&
           r->len >= (size_t)(end + 4 - r->buf) + strtoul(cl + 17, NULL, 10);
}

/* Sends req over a new connection and runs the loop until its reply is in. */
static inline void tu_raw_exchange(struct event_base *base, uint16_t port, const char *req,
                                   struct tu_raw_resp *r, unsigned bound_ms)
{
    memset(r, 0, sizeof *r);
    r->fd = tu_raw_send(port, req);
    assert_true(tu_run_until_pred(base, tu_raw_complete, r, bound_ms));
    close(r->fd);
}

#endif

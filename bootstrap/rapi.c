/*
 * rapi.c - faas-bootstrap's Runtime API client: a small HTTP/1.1 client on
 * one blocking, kept-alive TCP connection (rapi.h says what it promises).
 *
 * Requests are written whole with one sendmsg (MSG_NOSIGNAL: a peer that
 * went away is an error, not a SIGPIPE). Answers are read through one
 * buffer, in[off..len): the head is found there (at most RAPI_HEAD_MAX
 * bytes), a body is copied out of it and the rest received straight into
 * the body's own allocation. Bodies come with Content-Length, chunked, or
 * until the server closes; an answer that says "Connection: close" closes
 * the connection after it, so the next request opens a new one.
 *
 * The headers every request carries are those the official clients send:
 * Host, User-Agent; a post adds Content-Type and Content-Length (or, when
 * streamed, Transfer-Encoding: chunked and the streaming mode). The
 * connection has TCP_NODELAY, so a small post leaves at once.
 *
 * A blocking call interrupted by a signal goes on, unless rapi_stop says
 * the process is to end: then the request fails and the caller sees the
 * flag. A GET /next may wait for hours (or, frozen, forever): the
 * caller's SIGTERM handler calls rapi_interrupt, which shuts its socket
 * down, so the wait ends whether the signal came before the recv or
 * during it.
 *
 * Calls libc and libsodium (base64) only.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sodium.h>

#include "rapi.h"

volatile sig_atomic_t rapi_stop;
/* The connection a GET /next waits on, for rapi_interrupt; -1. */
static volatile sig_atomic_t waiting_fd = -1;

void rapi_interrupt(void)
{
    int fd = waiting_fd;
    rapi_stop = 1;
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

/* ---- the connection --------------------------------------------------- */

int rapi_init(struct rapi *c, const char *address, const char *user_agent)
{
    const char *host = address, *colon;
    size_t hlen;

    memset(c, 0, sizeof *c);
    c->fd = -1;
    if (!address)
        return -1;
    if (address[0] == '[') {
        const char *end = strchr(address, ']');
        if (!end || end[1] != ':')
            return -1;
        host = address + 1;
        hlen = (size_t)(end - host);
        colon = end + 1;
    } else {
        colon = strrchr(address, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - address);
    }
    if (hlen == 0 || hlen >= sizeof c->host || !colon[1] || strlen(colon + 1) >= sizeof c->port)
        return -1;
    memcpy(c->host, host, hlen);
    c->host[hlen] = '\0';
    snprintf(c->port, sizeof c->port, "%s", colon + 1);
    snprintf(c->user_agent, sizeof c->user_agent, "%s", user_agent);
    return 0;
}

static void conn_close(struct rapi *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->reused = 0;
    c->in_len = c->in_off = 0;
}

void rapi_free(struct rapi *c)
{
    conn_close(c);
    free(c->in);
    c->in = NULL;
    c->in_cap = 0;
}

void rapi_resp_clear(struct rapi_resp *r)
{
    free(r->request_id);
    free(r->deadline_ms);
    free(r->function_arn);
    free(r->trace_id);
    free(r->client_context);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* Connects fd to ai within RAPI_CONNECT_MS; 0 or -1. */
static int connect_bounded(int fd, const struct addrinfo *ai)
{
    struct pollfd p = { fd, POLLOUT, 0 };
    int err = 0, flags = fcntl(fd, F_GETFL);
    socklen_t elen = sizeof err;

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS)
            return -1;
        while (poll(&p, 1, RAPI_CONNECT_MS) < 0)
            if (errno != EINTR || rapi_stop)
                return -1;
        if (!(p.revents & (POLLOUT | POLLERR | POLLHUP)))
            return -1; /* the bound passed */
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
            return -1;
    }
    return fcntl(fd, F_SETFL, flags);
}

static int conn_open(struct rapi *c)
{
    struct addrinfo hints, *res = NULL, *ai;
    int one = 1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(c->host, c->port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect_bounded(fd, ai) == 0) {
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            c->fd = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    if (c->fd < 0)
        return -1;
    c->connects++;
    c->reused = 0;
    c->in_len = c->in_off = 0;
    return 0;
}

/* ---- writing ---------------------------------------------------------- */

static int send_all(struct rapi *c, struct iovec *iov, int n)
{
    while (n > 0) {
        struct msghdr m;
        ssize_t w;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)n;
        w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR && !rapi_stop)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* ---- reading ---------------------------------------------------------- */

/* Reads more into in[]; the bytes received, 0 at the end, -1 on error. */
static ssize_t fill(struct rapi *c)
{
    ssize_t n;
    if (c->in_off == c->in_len) {
        c->in_off = c->in_len = 0;
    } else if (c->in_off && c->in_len == c->in_cap) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_len == c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap * 2 : 16384;
        char *p;
        if (cap > RAPI_HEAD_MAX * 2 || !(p = realloc(c->in, cap)))
            return -1;
        c->in = p;
        c->in_cap = cap;
    }
    for (;;) {
        n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0 && errno == EINTR && !rapi_stop)
            continue;
        break;
    }
    if (n > 0)
        c->in_len += (size_t)n;
    return n;
}

/* The next line (CRLF or LF ended, at most RAPI_HEAD_MAX bytes), NUL
 * put in place of its end; NULL when the connection failed. *got says
 * whether any byte came. */
static char *read_line(struct rapi *c, int *got)
{
    for (;;) {
        char *start = c->in + c->in_off;
        char *nl = c->in_len > c->in_off ? memchr(start, '\n', c->in_len - c->in_off) : NULL;
        if (nl) {
            c->in_off = (size_t)(nl - c->in) + 1;
            if (nl > start && nl[-1] == '\r')
                nl--;
            *nl = '\0';
            return start;
        }
        if (c->in_len - c->in_off > RAPI_HEAD_MAX)
            return NULL;
        if (fill(c) <= 0)
            return NULL;
        *got = 1;
    }
}

/* Copies n bytes of the answer to dst: buffered ones, then recv. 0 or -1. */
static int read_exact(struct rapi *c, char *dst, size_t n)
{
    size_t have = c->in_len - c->in_off;
    if (have > n)
        have = n;
    memcpy(dst, c->in + c->in_off, have);
    c->in_off += have;
    dst += have;
    n -= have;
    while (n > 0) {
        ssize_t r = recv(c->fd, dst, n, 0);
        if (r < 0 && errno == EINTR && !rapi_stop)
            continue;
        if (r <= 0)
            return -1;
        dst += r;
        n -= (size_t)r;
    }
    return 0;
}

static int body_grow(struct rapi_resp *r, size_t add)
{
    char *p;
    if (add > RAPI_BODY_MAX - r->body_len)
        return -1;
    if (!(p = realloc(r->body, r->body_len + add + 1)))
        return -1;
    r->body = p;
    return 0;
}

static int read_body_length(struct rapi *c, struct rapi_resp *r, size_t n)
{
    if (body_grow(r, n) != 0 || read_exact(c, r->body + r->body_len, n) != 0)
        return -1;
    r->body_len += n;
    return 0;
}

static int read_body_chunked(struct rapi *c, struct rapi_resp *r)
{
    int got = 0;
    for (;;) {
        char *line = read_line(c, &got), *end;
        unsigned long long n;
        if (!line)
            return -1;
        n = strtoull(line, &end, 16);
        if (end == line)
            return -1;
        if (n == 0)
            break;
        if (n > RAPI_BODY_MAX || read_body_length(c, r, (size_t)n) != 0 ||
            !(line = read_line(c, &got)) || line[0])
            return -1;
    }
    for (;;) { /* trailers, then the empty line */
        char *line = read_line(c, &got);
        if (!line)
            return -1;
        if (!line[0])
            return 0;
    }
}

static int read_body_to_close(struct rapi *c, struct rapi_resp *r)
{
    for (;;) {
        size_t have = c->in_len - c->in_off;
        ssize_t n;
        if (have && read_body_length(c, r, have) != 0)
            return -1;
        n = fill(c);
        if (n == 0)
            return 0;
        if (n < 0)
            return -1;
    }
}

/* Keeps the value of a header of r's that we read. */
static void keep_header(struct rapi_resp *r, const char *name, const char *value)
{
    static const struct {
        const char *name;
        size_t off;
    } kept[] = {
        { "Lambda-Runtime-Aws-Request-Id", offsetof(struct rapi_resp, request_id) },
        { "Lambda-Runtime-Deadline-Ms", offsetof(struct rapi_resp, deadline_ms) },
        { "Lambda-Runtime-Invoked-Function-Arn", offsetof(struct rapi_resp, function_arn) },
        { "Lambda-Runtime-Trace-Id", offsetof(struct rapi_resp, trace_id) },
        { "Lambda-Runtime-Client-Context", offsetof(struct rapi_resp, client_context) },
    };
    size_t i;
    for (i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        if (strcasecmp(name, kept[i].name) == 0) {
            char **slot = (char **)(void *)((char *)r + kept[i].off);
            free(*slot);
            *slot = strdup(value);
            return;
        }
    }
}

/* Reads an answer into r. 0, or -1 (*got: whether any byte came). */
static int read_answer(struct rapi *c, struct rapi_resp *r, int *got)
{
    char *line = read_line(c, got);
    long long length = -1;
    int chunked = 0, close_after = 0, rc;

    memset(r, 0, sizeof *r);
    if (!line)
        return -1;
    *got = 1;
    if (strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12)
        return -1;
    r->status = atoi(line + 9);
    close_after = line[7] == '0';
    while ((line = read_line(c, got)) != NULL && line[0]) {
        char *colon = strchr(line, ':'), *v, *e;
        if (!colon)
            return -1;
        *colon = '\0';
        for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
            ;
        for (e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t'); e--)
            ;
        *e = '\0';
        if (strcasecmp(line, "Content-Length") == 0)
            length = strtoll(v, NULL, 10);
        else if (strcasecmp(line, "Transfer-Encoding") == 0)
            chunked = strcasestr(v, "chunked") != NULL;
        else if (strcasecmp(line, "Connection") == 0)
            close_after = strcasecmp(v, "close") == 0 ? 1
                          : strcasecmp(v, "keep-alive") == 0 ? 0 : close_after;
        else
            keep_header(r, line, v);
    }
    if (!line)
        return -1;
    if (r->status < 200 || r->status == 204 || r->status == 304)
        rc = 0;
    else if (chunked)
        rc = read_body_chunked(c, r);
    else if (length >= 0)
        rc = length > (long long)RAPI_BODY_MAX ? -1 : read_body_length(c, r, (size_t)length);
    else {
        rc = read_body_to_close(c, r);
        close_after = 1;
    }
    if (rc == 0 && !r->body && body_grow(r, 0) != 0)
        rc = -1;
    if (rc != 0)
        return -1;
    r->body[r->body_len] = '\0';
    if (close_after)
        conn_close(c);
    else
        c->reused = 1;
    return 0;
}

/* ---- requests --------------------------------------------------------- */

/* Sends iov and reads the answer; once more on a new connection when a
 * kept-alive one failed before answering. An interruptible exchange (a
 * /next) ends when rapi_interrupt is called. */
static int exchange(struct rapi *c, struct iovec *iov, int n, struct rapi_resp *r,
                    int interruptible)
{
    struct iovec copy[4];
    int attempt;

    memset(r, 0, sizeof *r);
    for (attempt = 0; attempt < 2; attempt++) {
        int reused, got = 0, rc;
        if (c->fd < 0 && conn_open(c) != 0)
            return -1;
        reused = c->reused;
        memcpy(copy, iov, (size_t)n * sizeof *iov);
        if (interruptible)
            waiting_fd = c->fd;
        /* A signal before waiting_fd was set has set rapi_stop. */
        rc = interruptible && rapi_stop ? -1
             : send_all(c, copy, n) == 0 && read_answer(c, r, &got) == 0 ? 0 : -1;
        waiting_fd = -1;
        if (rc == 0)
            return 0;
        rapi_resp_clear(r);
        conn_close(c);
        if (!reused || got || rapi_stop)
            return -1;
    }
    return -1;
}

int rapi_next(struct rapi *c, struct rapi_resp *r)
{
    char head[512];
    struct iovec iov[1];
    int n = snprintf(head, sizeof head,
                     "GET " RAPI_PREFIX "invocation/next HTTP/1.1\r\n"
                     "Host: %s:%s\r\nUser-Agent: %s\r\n\r\n",
                     c->host, c->port, c->user_agent);
    if (n < 0 || (size_t)n >= sizeof head)
        return -1;
    iov[0].iov_base = head;
    iov[0].iov_len = (size_t)n;
    return exchange(c, iov, 1, r, 1);
}

int rapi_post(struct rapi *c, const char *path, const char *error_type, const char *body,
              size_t len, struct rapi_resp *r)
{
    char head[2048];
    struct iovec iov[2];
    int n = snprintf(head, sizeof head,
                     "POST " RAPI_PREFIX "%s HTTP/1.1\r\n"
                     "Host: %s:%s\r\nUser-Agent: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                     "%s%s%s\r\n",
                     path, c->host, c->port, c->user_agent, len,
                     error_type ? RAPI_ERROR_TYPE ": " : "", error_type ? error_type : "",
                     error_type ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head)
        return -1;
    iov[0].iov_base = head;
    iov[0].iov_len = (size_t)n;
    iov[1].iov_base = (void *)(uintptr_t)body;
    iov[1].iov_len = len;
    return exchange(c, iov, len ? 2 : 1, r, 0);
}

/* ---- streamed responses ----------------------------------------------- */

int rapi_stream_begin(struct rapi *c, const char *path)
{
    char head[2048];
    int attempt, n = snprintf(head, sizeof head,
                              "POST " RAPI_PREFIX "%s HTTP/1.1\r\n"
                              "Host: %s:%s\r\nUser-Agent: %s\r\n"
                              "Content-Type: application/octet-stream\r\n"
                              "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
                              "Transfer-Encoding: chunked\r\n"
                              "Trailer: " RAPI_ERROR_TYPE ", " RAPI_ERROR_BODY "\r\n\r\n",
                              path, c->host, c->port, c->user_agent);
    if (n < 0 || (size_t)n >= sizeof head)
        return -1;
    for (attempt = 0; attempt < 2; attempt++) {
        struct iovec iov = { head, (size_t)n };
        int reused;
        if (c->fd < 0 && conn_open(c) != 0)
            return -1;
        reused = c->reused;
        if (send_all(c, &iov, 1) == 0)
            return 0;
        conn_close(c);
        if (!reused || rapi_stop)
            return -1;
    }
    return -1;
}

int rapi_stream_chunk(struct rapi *c, const void *data, size_t len)
{
    char size[32];
    struct iovec iov[3];

    struct pollfd p;

    if (c->fd < 0)
        return -1;
    if (len == 0)
        return 0;
    /* The API says nothing until the body has ended: bytes or an end of
     * the connection now mean the stream has no reader any more (a send
     * would still succeed into the socket's buffer). */
    p.fd = c->fd;
    p.events = POLLIN | POLLRDHUP;
    p.revents = 0;
    if (poll(&p, 1, 0) != 0) {
        conn_close(c);
        return -1;
    }
    iov[0].iov_base = size;
    iov[0].iov_len = (size_t)snprintf(size, sizeof size, "%zx\r\n", len);
    iov[1].iov_base = (void *)(uintptr_t)data;
    iov[1].iov_len = len;
    iov[2].iov_base = (void *)(uintptr_t)"\r\n";
    iov[2].iov_len = 2;
    if (send_all(c, iov, 3) != 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

int rapi_stream_end(struct rapi *c, const char *error_type, const char *error_body,
                    struct rapi_resp *r)
{
    char *tail = NULL;
    struct iovec iov;
    int got = 0, rc = -1;

    memset(r, 0, sizeof *r);
    if (c->fd < 0)
        return -1;
    if (error_type) {
        size_t blen = strlen(error_body ? error_body : "");
        size_t b64 = sodium_base64_ENCODED_LEN(blen, sodium_base64_VARIANT_ORIGINAL);
        size_t cap = 64 + strlen(error_type) + b64 + sizeof RAPI_ERROR_TYPE + sizeof RAPI_ERROR_BODY;
        int n;
        if (!(tail = malloc(cap)))
            goto out;
        n = snprintf(tail, cap, "0\r\n" RAPI_ERROR_TYPE ": %s\r\n" RAPI_ERROR_BODY ": ",
                     error_type);
        sodium_bin2base64(tail + n, cap - (size_t)n, (const unsigned char *)(error_body ? error_body : ""),
                          blen, sodium_base64_VARIANT_ORIGINAL);
        strcat(tail, "\r\n\r\n");
        iov.iov_base = tail;
        iov.iov_len = strlen(tail);
    } else {
        iov.iov_base = (void *)(uintptr_t)"0\r\n\r\n";
        iov.iov_len = 5;
    }
    if (send_all(c, &iov, 1) == 0 && read_answer(c, r, &got) == 0)
        rc = 0;
out:
    if (rc != 0) {
        rapi_resp_clear(r);
        conn_close(c);
    }
    free(tail);
    return rc;
}

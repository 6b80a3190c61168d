/*
 * crt.c - a small Lambda custom runtime in C: one keep-alive HTTP/1.1
 * connection to $AWS_LAMBDA_RUNTIME_API, GET /next, POST the result,
 * again. The COMMAND runtime of bench_command (and the floor it is
 * compared with: the same client against a bare evhttp server), and of
 * test_command's keep-alive and trailer cases.
 *
 * What it posts depends on the event's text:
 *   contains "stream-error"  a streaming response (chunked) cut short by
 *                            the error trailers Lambda-Runtime-Function-
 *                            Error-Type and -Error-Body (base64)
 *   contains "stream-ok"     a streaming response in three chunks
 *   contains "error-header"  POST /error: the type in the header, a body
 *                            that is not JSON
 *   contains "error-plain"   POST /error: {"errorMessage":"plain failure"}
 *   contains "error-object"  POST /error: an errorMessage that is an object
 *   contains "eat-memory"    allocates and touches 1 MiB blocks until an
 *                            allocation fails, then aborts, as a runtime
 *                            out of memory does
 *   otherwise                the event back (_HANDLER "echo"), or
 *                            {"connects":N,"count":K,"event":E} ("info")
 *
 * CRT_CPU=n pins it to CPU n (benchmarks). It exits when the endpoint goes
 * away. Blocking I/O: it is the only thing the process does.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define BUF_MAX (8u * 1024u * 1024u)

static char host[256], port[16];
static int fd = -1;
static unsigned connects, count;

/* The connection's unread bytes. */
static char *in;
static size_t in_len, in_cap;

static void die(const char *what)
{
    /* The endpoint went away: the instance is gone, so is this process. */
    (void)what;
    exit(0);
}

static void conn_open(void)
{
    struct addrinfo hints, *ai, *a;
    int one = 1;

    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        die("getaddrinfo");
    for (a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        die("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connects++;
    in_len = 0;
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write");
        p += w;
        n -= (size_t)w;
    }
}

/* Reads more into `in`; exits at end of file. */
static void fill(void)
{
    ssize_t r;
    if (in_cap - in_len < 4096) {
        size_t cap = in_cap ? in_cap * 2 : 65536;
        char *p;
        if (cap > BUF_MAX || !(p = realloc(in, cap)))
            die("memory");
        in = p;
        in_cap = cap;
    }
    do {
        r = recv(fd, in + in_len, in_cap - in_len, 0);
    } while (r < 0 && errno == EINTR);
    if (r <= 0)
        die("read");
    in_len += (size_t)r;
}

struct resp {
    int code;
    char request_id[64];
    char *body; /* malloc'd, NUL-terminated */
    size_t len;
    int close;
};

/* Reads one response (Content-Length bodies only: what libfaas sends). */
static void read_response(struct resp *r)
{
    char *end, *line, *next;
    size_t hlen, clen = 0;

    memset(r, 0, sizeof *r);
    for (;;) {
        if (in_len >= 4 && (end = memmem(in, in_len, "\r\n\r\n", 4)) != NULL)
            break;
        fill();
    }
    hlen = (size_t)(end - in) + 4;
    *end = '\0';
    if (sscanf(in, "HTTP/1.%*d %d", &r->code) != 1)
        die("status line");
    for (line = strstr(in, "\r\n"); line; line = next) {
        char *colon, *v;
        line += 2;
        next = strstr(line, "\r\n");
        if (next)
            *next = '\0';
        if (!(colon = strchr(line, ':')))
            continue;
        *colon = '\0';
        for (v = colon + 1; *v == ' '; v++)
            ;
        if (strcasecmp(line, "Content-Length") == 0)
            clen = strtoul(v, NULL, 10);
        else if (strcasecmp(line, "Lambda-Runtime-Aws-Request-Id") == 0)
            snprintf(r->request_id, sizeof r->request_id, "%s", v);
        else if (strcasecmp(line, "Connection") == 0 && strcasecmp(v, "close") == 0)
            r->close = 1;
        if (next)
            *next = '\r';
    }
    while (in_len < hlen + clen)
        fill();
    if (!(r->body = malloc(clen + 1)))
        die("memory");
    memcpy(r->body, in + hlen, clen);
    r->body[clen] = '\0';
    r->len = clen;
    memmove(in, in + hlen + clen, in_len - hlen - clen);
    in_len -= hlen + clen;
}

/* Sends a request with a Content-Length body and reads its answer. */
static void exchange(const char *method, const char *path, const char *extra, const char *body,
                     size_t blen, struct resp *r)
{
    char head[1024];
    int n;
    char *msg;

    if (fd < 0)
        conn_open();
    n = snprintf(head, sizeof head,
                 "%s %s HTTP/1.1\r\nHost: %s:%s\r\n%sContent-Length: %zu\r\n\r\n", method, path,
                 host, port, extra ? extra : "", blen);
    if (n < 0 || (size_t)n >= sizeof head)
        die("request");
    /* One write per request, as a client that cares would. */
    if (!(msg = malloc((size_t)n + blen)))
        die("memory");
    memcpy(msg, head, (size_t)n);
    if (blen)
        memcpy(msg + n, body, blen);
    write_all(msg, (size_t)n + blen);
    free(msg);
    read_response(r);
    if (r->close) {
        close(fd);
        fd = -1;
    }
}

static void chunk(const char *p, size_t n)
{
    char h[32];
    int k = snprintf(h, sizeof h, "%zx\r\n", n);
    write_all(h, (size_t)k);
    write_all(p, n);
    write_all("\r\n", 2);
}

/* A streaming response; with `b64err`, ended by error trailers. */
static void stream(const char *rid, const char *b64err, struct resp *r)
{
    char head[512];
    int n;

    if (fd < 0)
        conn_open();
    n = snprintf(head, sizeof head,
                 "POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\n"
                 "Host: %s:%s\r\n"
                 "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
                 "Transfer-Encoding: chunked\r\n"
                 "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n"
                 "\r\n",
                 rid, host, port);
    write_all(head, (size_t)n);
    chunk("{\"part\":1,", 10);
    if (b64err) {
        write_all("0\r\n", 3);
        write_all("Lambda-Runtime-Function-Error-Type: Function.StreamError\r\n", 58);
        write_all("Lambda-Runtime-Function-Error-Body: ", 36);
        write_all(b64err, strlen(b64err));
        write_all("\r\n\r\n", 4);
    } else {
        chunk("\"part2\":2,", 10);
        chunk("\"done\":true}", 12);
        write_all("0\r\n\r\n", 5);
    }
    read_response(r);
}

int main(void)
{
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    const char *handler = getenv("_HANDLER");
    const char *cpu = getenv("CRT_CPU");
    const char *colon;
    int info = handler && strcmp(handler, "info") == 0;

    if (!api || !(colon = strrchr(api, ':')))
        return 2;
    if (api[0] == '[')
        snprintf(host, sizeof host, "%.*s", (int)(colon - api - 2), api + 1);
    else
        snprintf(host, sizeof host, "%.*s", (int)(colon - api), api);
    snprintf(port, sizeof port, "%s", colon + 1);
    if (cpu && *cpu) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((size_t)atoi(cpu), &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    for (;;) {
        struct resp ev, ack;
        char path[160];

        exchange("GET", "/2018-06-01/runtime/invocation/next", NULL, NULL, 0, &ev);
        if (ev.code != 200)
            return 3;
        count++;
        if (strstr(ev.body, "eat-memory")) {
            for (;;) {
                char *p = malloc(1u << 20);
                if (!p)
                    abort();
                memset(p, 1, 1u << 20);
            }
        } else if (strstr(ev.body, "stream-error")) {
            /* {"errorMessage":"stream broke","errorType":"Function.StreamError",
             *  "stackTrace":["crt.c"]} */
            stream(ev.request_id,
                   "eyJlcnJvck1lc3NhZ2UiOiJzdHJlYW0gYnJva2UiLCJlcnJvclR5cGUiOiJGdW5jdGlvbi5TdHJl"
                   "YW1FcnJvciIsInN0YWNrVHJhY2UiOlsiY3J0LmMiXX0=",
                   &ack);
        } else if (strstr(ev.body, "stream-ok")) {
            stream(ev.request_id, NULL, &ack);
        } else if (strstr(ev.body, "error-plain") || strstr(ev.body, "error-object")) {
            const char *text = strstr(ev.body, "error-plain")
                                   ? "{\"errorMessage\":\"plain failure\"}"
                                   : "{\"errorMessage\":{\"code\":7},\"errorType\":\"Obj.Type\"}";
            snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/error",
                     ev.request_id);
            exchange("POST", path, NULL, text, strlen(text), &ack);
        } else if (strstr(ev.body, "error-header")) {
            static const char text[] = "plain text, not JSON";
            snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/error",
                     ev.request_id);
            exchange("POST", path, "Lambda-Runtime-Function-Error-Type: Header.Type\r\n", text,
                     sizeof text - 1, &ack);
        } else {
            char *out = ev.body;
            size_t olen = ev.len;
            snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/response",
                     ev.request_id);
            if (info) {
                olen = ev.len + 96;
                if (!(out = malloc(olen)))
                    return 4;
                olen = (size_t)snprintf(out, olen, "{\"connects\":%u,\"count\":%u,\"event\":%s}",
                                        connects, count, ev.body);
            }
            exchange("POST", path, NULL, out, olen, &ack);
            if (out != ev.body)
                free(out);
        }
        free(ev.body);
        free(ack.body);
    }
}

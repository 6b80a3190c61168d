/*
 * http_tap.c - the trailer tap of the Runtime API's connections: reads a
 * connection's bytes as they arrive, alongside evhttp, and keeps what
 * evhttp drops, the error trailers of each request (http_tap.h says why).
 *
 * Pure: bytes in, records out; no loop, no sockets, so its tests feed it
 * strings. It follows evhttp's framing (request line, headers,
 * Content-Length or chunked body, trailers) and stops at the first thing it
 * cannot parse, which evhttp refuses too.
 *
 * May call: libc. Called by runtime_api.c.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "faas_int.h"
#include "http_tap.h"


enum tap_state {
    TAP_LINE = 0,   /* the request line (empty lines skipped) */
    TAP_HEADERS,
    TAP_BODY,       /* Content-Length bytes */
    TAP_CHUNK_SIZE, /* a chunk-size line (the CRLF after data: empty) */
    TAP_CHUNK_DATA,
    TAP_TRAILERS,
    TAP_OFF         /* lost the framing: evhttp refuses it too */
};

void faas_http_tap_init(struct faas_http_tap *t)
{
    memset(t, 0, sizeof *t);
    t->line = t->small;
    t->lcap = sizeof t->small;
    t->done_tail = &t->done;
}

void faas_http_tap_req_free(struct faas_http_tap_req *r)
{
    if (!r)
        return;
    free(r->error_type);
    free(r->error_body);
    free(r);
}

static void tap_reset_line(struct faas_http_tap *t)
{
    if (t->line != t->small)
        free(t->line);
    t->line = t->small;
    t->lcap = sizeof t->small;
    t->llen = 0;
    t->ltrunc = 0;
}

static void tap_drop_trailers(struct faas_http_tap *t)
{
    free(t->etype);
    free(t->ebody);
    t->etype = t->ebody = NULL;
}

void faas_http_tap_clear(struct faas_http_tap *t)
{
    struct faas_http_tap_req *r, *next;
    tap_reset_line(t);
    tap_drop_trailers(t);
    for (r = t->done; r; r = next) {
        next = r->next;
        faas_http_tap_req_free(r);
    }
    t->done = NULL;
    t->done_tail = &t->done;
    t->state = TAP_OFF;
}

/* Appends to the line; trailer lines may grow up to their own bound. */
static void tap_line_add(struct faas_http_tap *t, const char *p, size_t n)
{
    size_t max = t->state == TAP_TRAILERS ? FAAS_HTTP_TAP_TRAILER_MAX : sizeof t->small;
    if (t->llen + n > t->lcap && t->lcap < max) {
        size_t cap = t->lcap * 4;
        char *b;
        while (cap < t->llen + n && cap < max)
            cap *= 4;
        if (cap > max)
            cap = max;
        if ((b = faas_malloc(cap)) != NULL) {
            memcpy(b, t->line, t->llen);
            if (t->line != t->small)
                free(t->line);
            t->line = b;
            t->lcap = cap;
        }
    }
    if (n > t->lcap - t->llen) {
        n = t->lcap - t->llen;
        t->ltrunc = 1;
    }
    memcpy(t->line + t->llen, p, n);
    t->llen += n;
}

/* "Name: value" -> name and value (trimmed), NUL-terminated in place. */
static int tap_split(char *line, char **name, char **value)
{
    char *colon = strchr(line, ':'), *e;
    if (!colon || colon == line)
        return -1;
    *colon = '\0';
    *name = line;
    for (colon++; *colon == ' ' || *colon == '\t'; colon++)
        ;
    e = colon + strlen(colon);
    while (e > colon && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    *value = colon;
    return 0;
}

const char *faas_http_tap_result_id(const char *path, size_t *idlen)
{
    static const char pre[] = FAAS_RUNTIME_API_PREFIX "invocation/";
    const char *id, *slash;
    if (strncmp(path, pre, sizeof pre - 1) != 0)
        return NULL;
    id = path + sizeof pre - 1;
    slash = strchr(id, '/');
    if (!slash || slash == id || (size_t)(slash - id) >= FAAS_REQUEST_ID_SIZE ||
        (strcmp(slash, "/response") != 0 && strcmp(slash, "/error") != 0))
        return NULL;
    *idlen = (size_t)(slash - id);
    return id;
}

static void tap_request_line(struct faas_http_tap *t, char *line)
{
    char *sp = strchr(line, ' '), *path, *end;
    const char *id;
    size_t idlen = 0;

    t->chunked = t->bodyless = t->result_post = t->streaming = 0;
    t->clen = t->body = 0;
    t->id[0] = '\0';
    tap_drop_trailers(t);
    if (!sp) {
        t->state = TAP_OFF;
        return;
    }
    *sp = '\0';
    t->bodyless = strcmp(line, "HEAD") == 0 || strcmp(line, "TRACE") == 0;
    path = sp + 1;
    if ((end = strpbrk(path, " ?")) != NULL)
        *end = '\0';
    if (strcmp(line, "POST") == 0 && (id = faas_http_tap_result_id(path, &idlen)) != NULL) {
        t->result_post = 1;
        memcpy(t->id, id, idlen);
        t->id[idlen] = '\0';
    }
    t->state = TAP_HEADERS;
}

/* The last transfer coding is "chunked" (what evhttp requires). */
static int te_chunked(const char *v)
{
    const char *c = strrchr(v, ',');
    c = c ? c + 1 : v;
    while (*c == ' ' || *c == '\t')
        c++;
    return strncasecmp(c, "chunked", 7) == 0 && (c[7] == '\0' || c[7] == ' ' || c[7] == '\t');
}

static void tap_request_done(struct faas_http_tap *t)
{
    if (t->etype || t->ebody) {
        struct faas_http_tap_req *r = faas_calloc(1, sizeof *r);
        if (r) {
            r->seq = t->seq;
            memcpy(r->id, t->id, sizeof r->id);
            r->error_type = t->etype;
            r->error_body = t->ebody;
            t->etype = t->ebody = NULL;
            *t->done_tail = r;
            t->done_tail = &r->next;
            t->ndone++;
        }
        tap_drop_trailers(t);
    }
    t->seq++;
    t->result_post = t->streaming = 0;
    t->state = TAP_LINE;
}

static void tap_end_headers(struct faas_http_tap *t)
{
    if (t->bodyless) {
        tap_request_done(t);
    } else if (t->chunked) {
        t->state = TAP_CHUNK_SIZE;
    } else if (t->clen > 0) {
        t->left = t->body = t->clen;
        t->state = TAP_BODY;
    } else {
        tap_request_done(t);
    }
}

static void tap_header(struct faas_http_tap *t, char *line)
{
    char *name, *value;
    if (line[0] == ' ' || line[0] == '\t' || tap_split(line, &name, &value) != 0)
        return; /* a continuation, or nothing the framing depends on */
    if (strcasecmp(name, "Transfer-Encoding") == 0) {
        t->chunked = te_chunked(value);
    } else if (strcasecmp(name, "Lambda-Runtime-Function-Response-Mode") == 0) {
        t->streaming = strcasecmp(value, "streaming") == 0;
    } else if (strcasecmp(name, "Content-Length") == 0) {
        char *e;
        unsigned long long v = strtoull(value, &e, 10);
        if (e == value || *e != '\0')
            t->state = TAP_OFF;
        else
            t->clen = (uint64_t)v;
    }
}

static void tap_chunk_size(struct faas_http_tap *t, const char *line)
{
    uint64_t v = 0;
    const char *p = line;
    int digits = 0;

    for (; *p; p++, digits++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else
            break;
        if (v >> 59) {
            t->state = TAP_OFF;
            return;
        }
        v = v * 16 + (uint64_t)d;
    }
    if (!digits || (*p && *p != ';' && *p != ' ')) {
        t->state = TAP_OFF;
        return;
    }
    if (v == 0) {
        t->state = TAP_TRAILERS;
        return;
    }
    t->left = v;
    t->body += v;
    t->state = TAP_CHUNK_DATA;
}

static void tap_trailer(struct faas_http_tap *t, char *line)
{
    char *name, *value, **slot = NULL;
    if (tap_split(line, &name, &value) != 0)
        return;
    if (strcasecmp(name, FAAS_RUNTIME_API_ERROR_TYPE) == 0)
        slot = &t->etype;
    else if (strcasecmp(name, "Lambda-Runtime-Function-Error-Body") == 0)
        slot = &t->ebody;
    if (!slot || t->ltrunc)
        return;
    free(*slot);
    *slot = faas_strdup(value);
}

/* One whole line (without its LF) is in t->line. */
static void tap_line_done(struct faas_http_tap *t)
{
    char *line = t->line;
    size_t n = t->llen;

    if (n == t->lcap)
        n--; /* truncated: room for the NUL */
    if (n > 0 && line[n - 1] == '\r')
        n--;
    line[n] = '\0';
    switch (t->state) {
    case TAP_LINE:
        if (n > 0)
            tap_request_line(t, line);
        break;
    case TAP_HEADERS:
        if (n == 0)
            tap_end_headers(t);
        else
            tap_header(t, line);
        break;
    case TAP_CHUNK_SIZE:
        if (n > 0)
            tap_chunk_size(t, line);
        break;
    case TAP_TRAILERS:
        if (n == 0)
            tap_request_done(t);
        else
            tap_trailer(t, line);
        break;
    default:
        break;
    }
    tap_reset_line(t);
}

void faas_http_tap_feed(struct faas_http_tap *t, const char *p, size_t n)
{
    while (n > 0 && t->state != TAP_OFF) {
        const char *nl;
        size_t take;

        if (t->state == TAP_BODY || t->state == TAP_CHUNK_DATA) {
            take = n < t->left ? n : (size_t)t->left;
            if (t->streaming && t->result_post && t->on_body)
                t->on_body(t->body_arg, t->id, p, take);
            p += take;
            n -= take;
            t->left -= take;
            if (t->left == 0) {
                if (t->state == TAP_BODY)
                    tap_request_done(t);
                else
                    t->state = TAP_CHUNK_SIZE;
            }
            continue;
        }
        nl = memchr(p, '\n', n);
        take = nl ? (size_t)(nl - p) : n;
        tap_line_add(t, p, take);
        p += take;
        n -= take;
        if (nl) {
            p++;
            n--;
            tap_line_done(t);
        }
    }
}

struct faas_http_tap_req *faas_http_tap_take(struct faas_http_tap *t, uint64_t seq)
{
    struct faas_http_tap_req *r;
    while ((r = t->done) != NULL && r->seq <= seq) {
        t->done = r->next;
        if (!t->done)
            t->done_tail = &t->done;
        t->ndone--;
        r->next = NULL;
        if (r->seq == seq)
            return r;
        faas_http_tap_req_free(r);
    }
    return NULL;
}

int faas_http_tap_oversize(const struct faas_http_tap *t, size_t limit, const char **id)
{
    if (!t->result_post || t->state == TAP_LINE || t->body <= limit)
        return 0;
    *id = t->id;
    return 1;
}

void faas_http_tap_stop(struct faas_http_tap *t)
{
    t->state = TAP_OFF;
}

int faas_http_tap_stopped(const struct faas_http_tap *t)
{
    return t->state == TAP_OFF;
}

/*
 * ctx.c - the context a handler (or init) gets: who it is, how long it has,
 * the instance's state, and the ways to fail and to log.
 *
 * A context is part of its invocation record and is used by one thread at a
 * time: the loop for INLINE, the worker for THREAD. The two fields the loop
 * may touch while a worker runs (the cancel flag and the deadline) are
 * atomics. Log lines are kept on the record and delivered from the loop when
 * the invocation ends, before its REPORT.
 *
 * What a handler hands in is bounded per invocation: a line at
 * FAAS_LOGLINE_MAX, the lines kept at FAAS_LOG_KEEP_MAX, the error type and
 * message of faas_ctx_fail at ERROR_TYPE_MAX and ERROR_MESSAGE_MAX. A line
 * becomes log text only through faas_log_escape (faas_ctx_add_line is the
 * one way in, for every isolation mode and for the stdout and stderr of
 * processes), so one call of faas_ctx_log is one line for the host.
 *
 * Owns no state of its own: the context and its kept lines are fields of the
 * invocation record (struct faas_inv), freed with it. Called by handlers
 * through the public faas_ctx_* calls, by exec_inline.c (faas_ctx_fail for
 * a handler's error) and exec_process.c (faas_ctx_add_line for a worker's
 * output). Calls clock.c, text.c (the escaping) and alloc.c; nothing above
 * it, so a handler's call never reaches the pool or the invocation layer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faas_int.h"

/* Bytes of an error type and an error message kept from faas_ctx_fail: the
 * error object is part of the result, and a handler that formats without
 * end must not grow it (nor a worker's RESULT frame past its bound). */
#define ERROR_TYPE_MAX 1024u
#define ERROR_MESSAGE_MAX (64u * 1024u)

const char *faas_ctx_request_id(const struct faas_ctx *ctx)
{
    return ctx ? ctx->request_id : NULL;
}

const char *faas_ctx_function_name(const struct faas_ctx *ctx)
{
    return ctx ? ctx->fn->name : NULL;
}

const char *faas_ctx_trace_id(const struct faas_ctx *ctx)
{
    return ctx ? ctx->trace_id : NULL;
}

json_t *faas_ctx_client_context(const struct faas_ctx *ctx)
{
    return ctx ? ctx->client_context : NULL;
}

int64_t faas_ctx_remaining_ms(const struct faas_ctx *ctx)
{
    uint64_t deadline, now;
    if (!ctx)
        return 0;
    deadline = atomic_load(&((struct faas_ctx *)ctx)->deadline_ns);
    if (deadline == 0)
        return INT64_MAX;
    now = faas_now_ns(ctx->rt);
    if (now >= deadline)
        return -(int64_t)((now - deadline) / 1000000u);
    return (int64_t)((deadline - now) / 1000000u);
}

uint32_t faas_ctx_memory_limit_mb(const struct faas_ctx *ctx)
{
    return ctx ? ctx->fn->opts.memory_mb : 0;
}

int faas_ctx_cancelled(const struct faas_ctx *ctx)
{
    struct faas_ctx *c = (struct faas_ctx *)ctx;
    uint64_t deadline;
    if (!c)
        return 0;
    if (atomic_load(&c->cancelled))
        return 1;
    deadline = atomic_load(&c->deadline_ns);
    return deadline != 0 && faas_now_ns(c->rt) >= deadline;
}

void *faas_ctx_state(const struct faas_ctx *ctx)
{
    return ctx ? ctx->state : NULL;
}

/* A copy of s cut at max bytes (and at a whole UTF-8 sequence), or NULL. */
static char *bounded_dup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *d = faas_malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n < max ? n : faas_utf8_whole(d, n)] = '\0';
    return d;
}

int faas_ctx_fail(struct faas_ctx *ctx, const char *error_type, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;

    if (!ctx)
        return FAAS_EINVAL;
    if (!ctx->failed) {
        ctx->failed = 1;
        free(ctx->error_type);
        free(ctx->error_message);
        ctx->error_type = bounded_dup(error_type ? error_type : "Error", ERROR_TYPE_MAX);
        if (fmt) {
            va_list ap2;
            int n;
            va_start(ap, fmt);
            va_copy(ap2, ap);
            n = vsnprintf(NULL, 0, fmt, ap);
            if (n >= 0) {
                size_t keep = (size_t)n < ERROR_MESSAGE_MAX ? (size_t)n : ERROR_MESSAGE_MAX;
                if ((msg = faas_malloc(keep + 1)) != NULL) {
                    vsnprintf(msg, keep + 1, fmt, ap2);
                    msg[faas_utf8_whole(msg, keep)] = '\0';
                }
            }
            va_end(ap2);
            va_end(ap);
        }
        ctx->error_message = msg ? msg : faas_strdup("");
    }
    return ctx->in_init ? FAAS_EINIT : FAAS_EHANDLER;
}

void faas_ctx_log(struct faas_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    char buf[FAAS_LOGLINE_MAX];
    int n;
    size_t len;

    if (!ctx || !fmt)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    while (len > 0 && buf[len - 1] == '\n')
        len--;
    if (ctx->log_hook) {
        ctx->log_hook(ctx, buf, len);
        return;
    }
    faas_ctx_add_line(ctx, buf, len);
}

void faas_ctx_add_line(struct faas_ctx *ctx, const char *text, size_t len)
{
    static const char cut[] = "[log truncated: more than 1 MiB of lines in one invocation]";
    struct faas_logline *l;
    char esc[FAAS_LOGLINE_MAX];

    if (len >= FAAS_LOGLINE_MAX)
        len = FAAS_LOGLINE_MAX - 1;
    /* Handler text is log text only once escaped: a newline in it must not
     * start a line of its own (a forged REPORT). */
    len = faas_log_escape(esc, sizeof esc, text, len);
    text = esc;
    /* A bound on what one invocation keeps until it ends: a handler that
     * prints without end costs the host no more than this. */
    if (ctx->log_bytes >= FAAS_LOG_KEEP_MAX)
        return;
    ctx->log_bytes += len + 1;
    if (ctx->log_bytes >= FAAS_LOG_KEEP_MAX) {
        text = cut;
        len = sizeof cut - 1;
    }
    l = faas_malloc(sizeof *l + len + 1);
    if (!l)
        return; /* the line is lost, the invocation is not */
    l->next = NULL;
    l->len = len;
    memcpy(l->text, text, len);
    l->text[len] = '\0';
    *ctx->log_tail = l;
    ctx->log_tail = &l->next;
}

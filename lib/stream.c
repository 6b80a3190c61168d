/*
 * stream.c - streamed responses (Lambda's response streaming): the bytes a
 * handler writes with faas_ctx_stream_write, on their way to whoever called.
 *
 * A handler writes through its context's writer (ctx->stream), which its
 * executor sets: INLINE writes here at once (the handler runs on the loop),
 * THREAD queues chunks for the loop (exec_thread.c, beside its
 * completions), a PROCESS worker sends STREAM frames on its channel
 * (worker.c; exec_process_io.c reads them), a COMMAND runtime posts a
 * chunked response in the Runtime API's streaming mode (runtime_api.c).
 * Every path ends on the loop in faas_stream_deliver, in the order written
 * and before the invocation's result (each path keeps its chunks ahead of
 * its completion), which hands the bytes to one consumer:
 *
 *   sink       a gateway that answers as the bytes come (lambda_api.c's
 *              event stream, http.c's chunked route reply): it says when
 *              its client is gone or reads too slowly
 *   on_chunk   the host's callback (faas_invoke_opts)
 *   collected  nobody: the bytes become the result's payload, bounded by
 *              max_sync_payload
 *
 * Invariants: inv->streamed is set on the loop by the first delivered
 * chunk, so the result (faas_stream_result) is the stream's exactly when a
 * write reached the loop before the result did. Once inv->stream_gone is
 * set it stays set, and every later write returns FAAS_ECANCELED; the bytes
 * of a result already delivered (a timeout) are dropped.
 *
 * Called by the host's handlers (faas_ctx_stream_write), the executors
 * (the writers, faas_stream_deliver), invoke.c (faas_stream_result,
 * faas_stream_free) and the gateways (faas_stream_cancel). May call: the
 * runtime's callback guard, json.c, text.c, alloc.c, libsodium's base64,
 * and the function's executor (stream_closed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "faas_int.h"

int faas_ctx_stream_write(struct faas_ctx *ctx, const void *data, size_t len)
{
    if (!ctx || (!data && len) || ctx->in_init || !ctx->stream)
        return FAAS_EINVAL;
    return ctx->stream(ctx->stream_arg, data, len);
}

/* Appends to the collected bytes, up to max_sync_payload. */
static void collect(struct faas_inv *inv, const void *data, size_t len)
{
    size_t max = inv->rt->opts.max_sync_payload, cap;
    char *p;

    if (inv->stream_len > max || len > max - inv->stream_len) {
        inv->stream_over = 1;
        atomic_store(&inv->stream_gone, 1);
        return;
    }
    if (inv->stream_len + len > inv->stream_cap) {
        cap = inv->stream_cap ? inv->stream_cap : 4096;
        while (cap < inv->stream_len + len)
            cap *= 2;
        if (!(p = realloc(inv->stream_buf, cap))) {
            inv->stream_over = 1; /* reported as too large: it did not fit */
            atomic_store(&inv->stream_gone, 1);
            return;
        }
        inv->stream_buf = p;
        inv->stream_cap = cap;
    }
    memcpy(inv->stream_buf + inv->stream_len, data, len);
    inv->stream_len += len;
}

void faas_stream_deliver(struct faas_inv *inv, const void *data, size_t len)
{
    struct faas_runtime *rt = inv->rt;
    int first = !inv->streamed;

    if (inv->delivered || atomic_load(&inv->stream_gone))
        return;
    inv->streamed = 1;
    if (inv->sink) {
        if ((len || first) && inv->sink->write(inv->sink_arg, data, len) != 0)
            faas_stream_cancel(inv);
    } else if (inv->on_chunk) {
        if (len) {
            faas_rt_enter(rt);
            inv->on_chunk(data, len, inv->chunk_arg);
            faas_rt_leave(rt); /* a free requested inside waits for the dispatch */
        }
    } else if (len) {
        collect(inv, data, len);
    }
}

int faas_stream_inline_write(void *arg, const void *data, size_t len)
{
    struct faas_inv *inv = arg;

    /* Past its deadline the invocation has ended: nobody takes more. */
    if (atomic_load(&inv->stream_gone) || faas_ctx_cancelled(&inv->ctx))
        return FAAS_ECANCELED;
    faas_stream_deliver(inv, data, len);
    return atomic_load(&inv->stream_gone) ? FAAS_ECANCELED : 0;
}

void faas_stream_cancel(struct faas_inv *inv)
{
    if (atomic_exchange(&inv->stream_gone, 1))
        return;
    if (inv->fn->exec->stream_closed && inv->inst)
        inv->fn->exec->stream_closed(inv);
}

/* The collected bytes as the payload: a string when they are UTF-8. */
static json_t *collected_payload(const struct faas_inv *inv)
{
    const char *s = inv->stream_buf ? inv->stream_buf : "";
    size_t n = inv->stream_len, b64len;
    json_t *j;
    char *b64;

    if (faas_utf8_valid(s, n))
        return json_stringn_nocheck(s, n);
    b64len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    if (!(b64 = faas_malloc(b64len)))
        return NULL;
    sodium_bin2base64(b64, b64len, (const unsigned char *)s, n,
                      sodium_base64_VARIANT_ORIGINAL);
    j = json_pack("{s:s, s:b}", "body", b64, "isBase64Encoded", 1);
    free(b64);
    return j;
}

void faas_stream_result(struct faas_inv *inv, struct faas_result *res)
{
    char msg[160];
    json_t *j;

    if (!inv->streamed || res->status != 0)
        return;
    if (inv->stream_over) {
        snprintf(msg, sizeof msg,
                 "Response payload size exceeded maximum allowed payload size (%zu bytes).",
                 inv->rt->opts.max_sync_payload);
        json_decref(res->payload);
        res->status = FAAS_ETOOBIG;
        res->payload = faas_error_object("Function.ResponseSizeTooLarge", msg);
        return;
    }
    j = inv->sink || inv->on_chunk ? json_null() : collected_payload(inv);
    json_decref(res->payload);
    res->payload = j ? j : json_null();
}

void faas_stream_release(struct faas_inv *inv)
{
    const struct faas_stream_sink *s = inv->sink;

    if (!s)
        return;
    inv->sink = NULL;
    atomic_store(&inv->stream_gone, 1);
    s->release(inv->sink_arg);
}

void faas_stream_free(struct faas_inv *inv)
{
    free(inv->stream_buf);
    inv->stream_buf = NULL;
    inv->stream_len = inv->stream_cap = 0;
}

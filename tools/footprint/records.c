/*
 * records.c - the heap one record costs on this target: a queued async
 * event and an idempotency record, each a small JSON event, measured as
 * the growth of malloc's bytes in use (mallinfo2) over N records, divided
 * by N. That is the target's own libc heap, exact under qemu-user too
 * (unlike RSS, which there is the emulator's). tools/footprint.sh runs it.
 *
 *   queued async event     faas_invoke_async of {"id":"evt-NNNNNN"} while
 *                          the loop does not run: the event waits, copied
 *   idempotency record     a completed INLINE invocation with key body.id
 *                          and result {"ok":true}: the record and its result
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>
#include <jansson.h>

#include "faas.h"

#define N 20000

static int handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_pack("{s:b}", "ok", 1);
    return *result ? 0 : FAAS_ENOMEM;
}

static size_t heap(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void counted(const struct faas_result *res, void *arg)
{
    int *done = arg;
    if (faas_result_status(res) == 0)
        (*done)++;
}

static json_t *event_of(int i, int nested)
{
    char id[32];
    snprintf(id, sizeof id, "evt-%06d", i);
    return nested ? json_pack("{s:{s:s}}", "body", "id", id) : json_pack("{s:s}", "id", id);
}

int main(void)
{
    struct event_base *base = event_base_new();
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    struct faas_runtime *rt = NULL;
    size_t h0;
    int i, done = 0, adone = 0, rc = 1;

    ro.zygote = 0;
    ro.thread_workers = 1;
    if (!base || faas_runtime_new(&rt, base, &ro) != 0)
        return 1;
    o.isolation = FAAS_ISOLATION_INLINE;
    ao.max_queue = N;
    ao.on_complete = counted;
    ao.on_complete_arg = &adone;
    o.async = &ao;
    if (faas_register(rt, "queued", handler, &o) != 0)
        goto out;
    o.async = NULL;
    io.key_path = "body.id";
    io.max_entries = N;
    o.idempotency = &io;
    if (faas_register(rt, "idem", handler, &o) != 0)
        goto out;

    h0 = heap();
    for (i = 0; i < N; i++) {
        json_t *ev = event_of(i, 0);
        int r = ev ? faas_invoke_async(rt, "queued", ev, NULL, NULL) : FAAS_ENOMEM;
        json_decref(ev);
        if (r != 0)
            goto out;
    }
    printf("queued async event: %.0f B heap each ({\"id\":\"evt-NNNNNN\"}, %d waiting)\n",
           (double)(heap() - h0) / N, N);
    /* The queue drains before the next figure. */
    for (i = 0; i < 1000000 && adone < N; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    if (adone != N)
        goto out;

    h0 = heap();
    for (i = 0; i < N; i++) {
        json_t *ev = event_of(i, 1);
        int r = ev ? faas_invoke(rt, "idem", ev, NULL, counted, &done) : FAAS_ENOMEM;
        json_decref(ev);
        if (r != 0)
            goto out;
    }
    for (i = 0; i < 1000000 && done < N; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    if (done != N)
        goto out;
    printf("idempotency record: %.0f B heap each (key of 10 characters, result {\"ok\":true}, "
           "%d kept)\n",
           (double)(heap() - h0) / N, N);
    rc = 0;
out:
    faas_runtime_free(rt);
    event_base_free(base);
    if (rc)
        fprintf(stderr, "records: a step failed\n");
    return rc;
}

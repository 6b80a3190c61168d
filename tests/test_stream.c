/*
 * test_stream.c - streamed responses in the host: faas_ctx_stream_write in
 * INLINE, THREAD and PROCESS, the chunks' order and count on on_chunk
 * before the result, the result's payload with and without a chunk
 * callback, the bound on collected bytes, refusals, a failure mid-stream,
 * the first chunk before the handler ends, and FAAS_ECANCELED once nobody
 * listens.
 */
#include <stdlib.h>

#include "testutil.h"

#define NCHUNKS 100

struct seen {
    int chunks;          /* on_chunk calls */
    int order_ok;        /* every chunk was the one expected next */
    size_t bytes;
    int results;
    int chunks_at_result; /* chunks seen when the result came */
    int status;
    char *payload;       /* compact JSON of the result's payload */
};

static void on_chunk(const void *data, size_t len, void *arg)
{
    struct seen *s = arg;
    char want[32];
    int n = snprintf(want, sizeof want, "chunk-%d\n", s->chunks);
    if (s->order_ok && (len != (size_t)n || memcmp(data, want, len) != 0))
        s->order_ok = 0;
    s->chunks++;
    s->bytes += len;
}

static void on_bytes(const void *data, size_t len, void *arg)
{
    struct seen *s = arg;
    (void)data;
    s->chunks++;
    s->bytes += len;
}

static void on_result(const struct faas_result *res, void *arg)
{
    struct seen *s = arg;
    s->results++;
    s->chunks_at_result = s->chunks;
    s->status = faas_result_status(res);
    free(s->payload);
    s->payload = json_dumps(faas_result_payload(res), JSON_COMPACT | JSON_ENCODE_ANY);
}

/* Writes NCHUNKS numbered chunks, then returns an object (dropped). */
static int h_chunks(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    char buf[32];
    int i;
    (void)event;
    for (i = 0; i < NCHUNKS; i++) {
        int n = snprintf(buf, sizeof buf, "chunk-%d\n", i);
        if (faas_ctx_stream_write(ctx, buf, (size_t)n) != 0)
            return 1;
    }
    *result = json_pack("{s:i}", "ignored", 1);
    return 0;
}

/* Writes two chunks, then fails. */
static int h_fail_mid(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    faas_ctx_stream_write(ctx, "chunk-0\n", 8);
    faas_ctx_stream_write(ctx, "chunk-1\n", 8);
    return faas_ctx_fail(ctx, "StreamBroke", "after two chunks");
}

static int h_plain(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_pack("{s:s}", "plain", "yes");
    return 0;
}

static int h_binary(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    static const unsigned char bin[] = { 0xff, 0x00, 0x01 };
    (void)event;
    (void)result;
    return faas_ctx_stream_write(ctx, bin, sizeof bin);
}

/* Writes 2 KiB at a time, 8 times: over a 10 KiB limit when collected. */
static int h_big(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    char buf[2048];
    int i, rc = 0;
    (void)event;
    (void)result;
    memset(buf, 'x', sizeof buf);
    for (i = 0; i < 8 && rc == 0; i++)
        rc = faas_ctx_stream_write(ctx, buf, sizeof buf);
    return 0;
}

static int refusals_seen;

static int init_tries_stream(struct faas_ctx *ctx, void **state)
{
    (void)state;
    if (faas_ctx_stream_write(ctx, "x", 1) == FAAS_EINVAL)
        refusals_seen++;
    return 0;
}

static int h_refusals(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    if (faas_ctx_stream_write(NULL, "x", 1) == FAAS_EINVAL)
        refusals_seen++;
    if (faas_ctx_stream_write(ctx, NULL, 1) == FAAS_EINVAL)
        refusals_seen++;
    return 0;
}

static struct faas_runtime *new_rt(struct event_base **base, int zygote, size_t max_payload)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_runtime *rt;
    ro.zygote = zygote;
    ro.thread_workers = 2;
    if (max_payload)
        ro.max_sync_payload = max_payload;
    tu_rt_new(base, &rt, &ro);
    return rt;
}

static void reg(struct faas_runtime *rt, const char *name, faas_handler_fn h,
               enum faas_isolation iso)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    o.isolation = iso;
    o.timeout_ms = 10000;
    assert_int_equal(faas_register(rt, name, h, &o), 0);
}

/* Invokes name with (or without) on_chunk and runs the loop to its result. */
static void invoke_wait(struct event_base *base, struct faas_runtime *rt, const char *name,
                        faas_chunk_fn chunk_fn, struct seen *s)
{
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    io.on_chunk = chunk_fn;
    io.chunk_arg = s;
    s->order_ok = 1;
    assert_int_equal(faas_invoke(rt, name, NULL, &io, on_result, s), 0);
    assert_int_equal(s->results, 0); /* never inside the call */
    assert_true(tu_run_until(base, &s->results, 1, 20000));
}

static void check_chunks(enum faas_isolation iso, int zygote)
{
    struct event_base *base;
    struct faas_runtime *rt = new_rt(&base, zygote, 0);
    struct seen s;
    int round;

    reg(rt, "chunks", h_chunks, iso);
    for (round = 0; round < 2; round++) { /* cold, then warm */
        memset(&s, 0, sizeof s);
        invoke_wait(base, rt, "chunks", on_chunk, &s);
        assert_int_equal(s.status, 0);
        assert_int_equal(s.chunks, NCHUNKS);
        assert_int_equal(s.chunks_at_result, NCHUNKS); /* all before the result */
        assert_true(s.order_ok);
        assert_string_equal(s.payload, "null"); /* the bytes went to on_chunk */
        free(s.payload);
    }
    tu_rt_free(&rt, &base);
}

static void chunks_inline(void **state)
{
    (void)state;
    check_chunks(FAAS_ISOLATION_INLINE, 0);
}

static void chunks_thread(void **state)
{
    (void)state;
    check_chunks(FAAS_ISOLATION_THREAD, 0);
}

static void chunks_process(void **state)
{
    (void)state;
    check_chunks(FAAS_ISOLATION_PROCESS, 1);
}

/* Without on_chunk the bytes are the payload; a handler that does not
 * stream answers as it always did, and on_chunk never runs. */
static void collected_and_plain(void **state)
{
    static const enum faas_isolation isos[] = { FAAS_ISOLATION_INLINE, FAAS_ISOLATION_THREAD,
                                                FAAS_ISOLATION_PROCESS };
    struct event_base *base;
    struct faas_runtime *rt = new_rt(&base, 1, 10 * 1024);
    struct seen s;
    size_t i;
    char name[32];
    (void)state;

    for (i = 0; i < sizeof isos / sizeof isos[0]; i++) {
        snprintf(name, sizeof name, "chunks%zu", i);
        reg(rt, name, h_chunks, isos[i]);
        memset(&s, 0, sizeof s);
        invoke_wait(base, rt, name, NULL, &s);
        assert_int_equal(s.status, 0);
        assert_int_equal(strncmp(s.payload, "\"chunk-0\\nchunk-1\\n", 18), 0);
        assert_non_null(strstr(s.payload, "chunk-99\\n\""));
        free(s.payload);

        snprintf(name, sizeof name, "plain%zu", i);
        reg(rt, name, h_plain, isos[i]);
        memset(&s, 0, sizeof s);
        invoke_wait(base, rt, name, on_chunk, &s);
        assert_int_equal(s.status, 0);
        assert_int_equal(s.chunks, 0);
        assert_string_equal(s.payload, "{\"plain\":\"yes\"}");
        free(s.payload);

        snprintf(name, sizeof name, "binary%zu", i);
        reg(rt, name, h_binary, isos[i]);
        memset(&s, 0, sizeof s);
        invoke_wait(base, rt, name, NULL, &s);
        assert_int_equal(s.status, 0);
        assert_string_equal(s.payload, "{\"body\":\"/wAB\",\"isBase64Encoded\":true}");
        free(s.payload);

        snprintf(name, sizeof name, "big%zu", i);
        reg(rt, name, h_big, isos[i]);
        memset(&s, 0, sizeof s);
        invoke_wait(base, rt, name, NULL, &s);
        assert_int_equal(s.status, FAAS_ETOOBIG); /* 16 KiB over 10 KiB */
        assert_non_null(strstr(s.payload, "Function.ResponseSizeTooLarge"));
        free(s.payload);
        memset(&s, 0, sizeof s);
        invoke_wait(base, rt, name, on_bytes, &s); /* with a consumer: no bound */
        assert_int_equal(s.status, 0);
        assert_int_equal(s.bytes, 8 * 2048);
        free(s.payload);
    }
    tu_rt_free(&rt, &base);
}

static void fail_mid_stream(void **state)
{
    static const enum faas_isolation isos[] = { FAAS_ISOLATION_INLINE, FAAS_ISOLATION_THREAD,
                                                FAAS_ISOLATION_PROCESS };
    struct event_base *base;
    struct faas_runtime *rt = new_rt(&base, 1, 0);
    struct seen s;
    size_t i;
    char name[32];
    (void)state;

    for (i = 0; i < sizeof isos / sizeof isos[0]; i++) {
        snprintf(name, sizeof name, "fail%zu", i);
        reg(rt, name, h_fail_mid, isos[i]);
        memset(&s, 0, sizeof s);
        invoke_wait(base, rt, name, on_chunk, &s);
        assert_int_equal(s.chunks_at_result, 2);
        assert_true(s.order_ok);
        assert_int_equal(s.status, FAAS_EHANDLER);
        assert_non_null(strstr(s.payload, "\"errorType\":\"StreamBroke\""));
        free(s.payload);
    }
    tu_rt_free(&rt, &base);
}

static void refusals(void **state)
{
    struct event_base *base;
    struct faas_runtime *rt = new_rt(&base, 0, 0);
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct seen s;
    (void)state;

    refusals_seen = 0;
    o.isolation = FAAS_ISOLATION_INLINE;
    o.init = init_tries_stream;
    assert_int_equal(faas_register(rt, "refusals", h_refusals, &o), 0);
    memset(&s, 0, sizeof s);
    invoke_wait(base, rt, "refusals", on_chunk, &s);
    assert_int_equal(s.status, 0);
    assert_int_equal(refusals_seen, 3);
    assert_int_equal(s.chunks, 0);
    assert_string_equal(s.payload, "null"); /* nothing streamed: the handler's null */
    free(s.payload);
    tu_rt_free(&rt, &base);
}

/* ---- THREAD: the first chunk before the end; nobody listening -------- */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv;
static int gate_open;
static int late_rc;
static int late_done;

static int h_gated(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    faas_ctx_stream_write(ctx, "chunk-0\n", 8);
    tu_gate_wait(&gate_mu, &gate_cv, &gate_open, NULL, 20000);
    faas_ctx_stream_write(ctx, "chunk-1\n", 8);
    return 0;
}

static void first_chunk_before_end(void **state)
{
    struct event_base *base;
    struct faas_runtime *rt = new_rt(&base, 0, 0);
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    struct seen s;
    (void)state;

    gate_open = 0;
    reg(rt, "gated", h_gated, FAAS_ISOLATION_THREAD);
    memset(&s, 0, sizeof s);
    s.order_ok = 1;
    io.on_chunk = on_chunk;
    io.chunk_arg = &s;
    assert_int_equal(faas_invoke(rt, "gated", NULL, &io, on_result, &s), 0);
    assert_true(tu_run_until(base, &s.chunks, 1, 20000));
    assert_int_equal(s.results, 0); /* the handler still waits */
    tu_gate_open(&gate_mu, &gate_cv, &gate_open);
    assert_true(tu_run_until(base, &s.results, 1, 20000));
    assert_int_equal(s.chunks, 2);
    assert_true(s.order_ok);
    free(s.payload);
    tu_rt_free(&rt, &base);
}

/* Streams until its deadline passed, then writes once more. */
static int h_after_deadline(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    faas_ctx_stream_write(ctx, "chunk-0\n", 8);
    while (!faas_ctx_cancelled(ctx))
        tu_gate_wait(&gate_mu, &gate_cv, &gate_open, ctx, 50);
    ASTORE(&late_rc, faas_ctx_stream_write(ctx, "late", 4));
    ASTORE(&late_done, 1);
    return 0;
}

static void canceled_after_timeout(void **state)
{
    struct event_base *base;
    struct faas_runtime *rt = new_rt(&base, 0, 0);
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    struct seen s;
    (void)state;

    gate_open = 0;
    late_done = 0;
    late_rc = 1;
    o.isolation = FAAS_ISOLATION_THREAD;
    o.timeout_ms = 100;
    assert_int_equal(faas_register(rt, "late", h_after_deadline, &o), 0);
    memset(&s, 0, sizeof s);
    s.order_ok = 1;
    io.on_chunk = on_chunk;
    io.chunk_arg = &s;
    assert_int_equal(faas_invoke(rt, "late", NULL, &io, on_result, &s), 0);
    assert_true(tu_run_until(base, &s.results, 1, 20000));
    assert_int_equal(s.status, FAAS_ETIMEDOUT);
    assert_true(tu_run_until_atomic(base, &late_done, 1, 20000));
    assert_int_equal(ALOAD(&late_rc), FAAS_ECANCELED);
    assert_int_equal(s.chunks, 1); /* the late bytes went nowhere */
    free(s.payload);
    tu_rt_free(&rt, &base);
}

/* 8 MiB through THREAD in 64 KiB writes: the worker waits for the loop
 * rather than queueing it all, and every byte arrives. */
static int h_flood(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    static char buf[65536];
    int i;
    (void)event;
    (void)result;
    for (i = 0; i < 128; i++)
        if (faas_ctx_stream_write(ctx, buf, sizeof buf) != 0)
            return 1;
    return 0;
}

static void thread_flood(void **state)
{
    struct event_base *base;
    struct faas_runtime *rt = new_rt(&base, 0, 0);
    struct seen s;
    (void)state;

    reg(rt, "flood", h_flood, FAAS_ISOLATION_THREAD);
    memset(&s, 0, sizeof s);
    invoke_wait(base, rt, "flood", on_bytes, &s);
    assert_int_equal(s.status, 0);
    assert_int_equal(s.bytes, (size_t)128 * 65536);
    free(s.payload);
    tu_rt_free(&rt, &base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chunks_inline),
        cmocka_unit_test(chunks_thread),
        cmocka_unit_test(chunks_process),
        cmocka_unit_test(collected_and_plain),
        cmocka_unit_test(fail_mid_stream),
        cmocka_unit_test(refusals),
        cmocka_unit_test(first_chunk_before_end),
        cmocka_unit_test(canceled_after_timeout),
        cmocka_unit_test(thread_flood),
    };
    tu_cond_init_monotonic(&gate_cv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

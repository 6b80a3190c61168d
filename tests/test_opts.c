/*
 * test_opts.c - option struct versions (opts.c): a host built against the
 * first version of a struct keeps working and gets the defaults of the
 * fields added since; a version from the future is refused; the
 * faas_*_opts_init functions fill what the _INIT macros do, and for an
 * older version write no byte past that version's struct; faas_stats_read
 * fills what its size holds.
 *
 * A "version 1 host" is simulated with a copy of the first version's
 * layout, declared here, placed at the start of a union whose later bytes
 * are set to values that would break the call if the library read them
 * (a 1-byte queue bound, a 1 ms read timeout, remote access allowed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faas_int.h"
#include "testutil.h"

#define BOUND_MS 5000u

/* ---- the first versions' layouts, as a host compiled them ---------------- */

struct runtime_opts_v1 {
    unsigned int version;
    unsigned int thread_workers;
    int zygote;
    size_t max_sync_payload;
    size_t max_async_payload;
    faas_log_fn log;
    void *log_arg;
    struct faas_clock clock;
    size_t http_max_body;
    size_t http_max_headers;
    const char *region;
    int invoke_api;
    const char *runtime_api_address;
    const char *access_key_id;
    const char *secret_access_key;
};

struct async_opts_v1 {
    unsigned int version;
    uint32_t max_retries;
    uint32_t retry_base_ms;
    uint64_t max_event_age_ms;
    uint32_t max_queue;
    enum faas_overflow overflow;
    const char *on_success;
    const char *on_failure;
    faas_result_fn on_complete;
    void *on_complete_arg;
    faas_result_fn dead_letter;
    void *dead_letter_arg;
};

struct idempotency_opts_v1 {
    unsigned int version;
    const char *key_path;
    const char *validate_path;
    uint32_t ttl_s;
    uint32_t max_entries;
    int required;
    struct faas_store *store;
};

/* The first versions are prefixes of today's structs. */
_Static_assert(offsetof(struct runtime_opts_v1, secret_access_key) ==
                   offsetof(struct faas_runtime_opts, secret_access_key),
               "runtime v1 layout");
_Static_assert(offsetof(struct async_opts_v1, dead_letter_arg) ==
                   offsetof(struct faas_async_opts, dead_letter_arg),
               "async v1 layout");
_Static_assert(offsetof(struct idempotency_opts_v1, store) ==
                   offsetof(struct faas_idempotency_opts, store),
               "idempotency v1 layout");

/* A v1 struct with today's struct behind it: the bytes past v1 are traps. */
union runtime_host {
    struct runtime_opts_v1 v1;
    struct faas_runtime_opts now;
};
union async_host {
    struct async_opts_v1 v1;
    struct faas_async_opts now;
};
union idem_host {
    struct idempotency_opts_v1 v1;
    struct faas_idempotency_opts now;
};

static int h_ok(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_incref(event);
    return 0;
}

struct fx {
    struct event_base *base;
    struct faas_runtime *rt;
};

static void fx_new(struct fx *f)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    o.zygote = 0;
    tu_rt_new(&f->base, &f->rt, &o);
}

static void fx_free(struct fx *f)
{
    tu_rt_free(&f->rt, &f->base);
}

/* ---- version 1 hosts ------------------------------------------------------ */

static void test_runtime_v1(void **state)
{
    union runtime_host h;
    struct event_base *base = event_base_new();
    struct faas_runtime *rt = NULL;

    (void)state;
    assert_non_null(base);
    memset(&h, 0, sizeof h);
    h.now.http_read_timeout_ms = 1; /* traps: a v1 host never set these */
    h.now.http_idle_timeout_ms = 1;
    h.now.http_max_connections = 1;
    h.now.runtime_api_allow_remote = 1;
    h.v1.version = 1;
    h.v1.zygote = 0;
    h.v1.max_sync_payload = 1000;
    h.v1.max_async_payload = 500;
    h.v1.region = "eu-west-1";
    h.v1.runtime_api_address = "127.0.0.1";
    assert_int_equal(faas_runtime_new(&rt, base, (const struct faas_runtime_opts *)&h), 0);
    assert_non_null(rt);
    assert_int_equal(rt->opts.version, FAAS_RUNTIME_OPTS_VERSION);
    assert_int_equal(rt->opts.max_sync_payload, 1000);
    assert_int_equal(rt->opts.max_async_payload, 500);
    assert_string_equal(rt->opts.region, "eu-west-1");
    assert_int_equal(rt->opts.http_read_timeout_ms, 10000);
    assert_int_equal(rt->opts.http_idle_timeout_ms, 60000);
    assert_int_equal(rt->opts.http_max_connections, 1024);
    assert_int_equal(rt->opts.runtime_api_allow_remote, 0);
    faas_runtime_free(rt);

    /* A v1 host asking for a remote address cannot have allowed it. */
    h.v1.runtime_api_address = "192.0.2.1";
    rt = NULL;
    assert_int_equal(faas_runtime_new(&rt, base, (const struct faas_runtime_opts *)&h),
                     FAAS_EINVAL);
    assert_null(rt);
    event_base_free(base);
}

static int g_done;
static int g_status;

static void on_result(const struct faas_result *res, void *arg)
{
    (void)arg;
    g_status = faas_result_status(res);
    g_done++;
}

/* max_queue_bytes is not in a v1 async struct: the queue's bound is the
 * default, not the 1 byte behind the host's struct. */
static void test_async_v1(void **state)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    union async_host h;
    struct fx f;
    char id[FAAS_REQUEST_ID_SIZE];
    json_t *ev = json_pack("{s:s}", "k", "a value well over one byte");

    (void)state;
    fx_new(&f);
    h.now = (struct faas_async_opts)FAAS_ASYNC_OPTS_INIT;
    h.now.max_queue_bytes = 1; /* the trap */
    h.v1.version = 1;
    h.v1.on_complete = on_result;
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.async = (const struct faas_async_opts *)&h;
    assert_int_equal(faas_register(f.rt, "v1", h_ok, &fo), 0);
    g_done = 0;
    g_status = -1;
    assert_int_equal(faas_invoke_async(f.rt, "v1", ev, NULL, id), 0);
    assert_true(tu_run_until(f.base, &g_done, 1, BOUND_MS));
    assert_int_equal(g_status, 0);

    /* The same bytes as version 2: the bound is read, and refuses. */
    h.now.version = 2;
    assert_int_equal(faas_register(f.rt, "v2", h_ok, &fo), 0);
    assert_int_equal(faas_invoke_async(f.rt, "v2", ev, NULL, id), FAAS_ETOOBIG);
    json_decref(ev);
    fx_free(&f);
}

/* max_bytes is not in a v1 idempotency struct: the memory store's bound is
 * the default, not 1 byte. */
static void test_idempotency_v1(void **state)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    union idem_host h;
    struct faas_result *res = NULL;
    struct fx f;
    json_t *ev = json_pack("{s:s}", "id", "order-1");

    (void)state;
    fx_new(&f);
    h.now = (struct faas_idempotency_opts)FAAS_IDEMPOTENCY_OPTS_INIT;
    h.now.max_bytes = 1; /* the trap */
    h.v1.version = 1;
    h.v1.key_path = "id";
    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.idempotency = (const struct faas_idempotency_opts *)&h;
    assert_int_equal(faas_register(f.rt, "v1", h_ok, &fo), 0);
    assert_int_equal(faas_invoke_sync(f.rt, "v1", ev, NULL, &res), 0);
    assert_int_equal(faas_result_status(res), 0);
    faas_result_free(res);
    res = NULL;
    assert_int_equal(faas_invoke_sync(f.rt, "v1", ev, NULL, &res), 0);
    assert_int_equal(faas_result_status(res), 0);
    assert_true(faas_result_replayed(res)); /* the record was kept */
    faas_result_free(res);

    /* The same bytes as version 2: a 1-byte store keeps nothing. */
    h.now.version = 2;
    assert_int_equal(faas_register(f.rt, "v2", h_ok, &fo), 0);
    res = NULL;
    assert_int_equal(faas_invoke_sync(f.rt, "v2", ev, NULL, &res), FAAS_ETOOBIG);
    assert_null(res);
    json_decref(ev);
    fx_free(&f);
}

/* ---- the future ------------------------------------------------------------ */

static int st_get(void *impl, const char *key, int64_t now_ms, faas_store_cb cb, void *arg)
{
    (void)impl, (void)key, (void)now_ms, (void)cb, (void)arg;
    return FAAS_ENOENT;
}

static int st_put(void *impl, const char *key, const struct faas_store_record *rec,
                  int64_t now_ms, faas_store_cb cb, void *arg)
{
    (void)impl, (void)key, (void)rec, (void)now_ms, (void)cb, (void)arg;
    return FAAS_ENOENT;
}

static int st_remove(void *impl, const char *key, const char *owner, int64_t now_ms,
                     faas_store_cb cb, void *arg)
{
    (void)impl, (void)key, (void)owner, (void)now_ms, (void)cb, (void)arg;
    return FAAS_ENOENT;
}

static void test_future_refused(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    struct faas_invoke_opts vo = FAAS_INVOKE_OPTS_INIT;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    struct faas_store_ops so;
    struct faas_store *st = NULL;
    struct faas_result *res = NULL;
    struct faas_runtime *rt = NULL;
    char id[FAAS_REQUEST_ID_SIZE];
    struct fx f;

    (void)state;
    fx_new(&f);
    ro.zygote = 0;
    ro.version = FAAS_RUNTIME_OPTS_VERSION + 1;
    assert_int_equal(faas_runtime_new(&rt, f.base, &ro), FAAS_EINVAL);
    ro.version = 0;
    assert_int_equal(faas_runtime_new(&rt, f.base, &ro), FAAS_EINVAL);
    assert_null(rt);

    fo.isolation = FAAS_ISOLATION_INLINE;
    fo.version = FAAS_FUNCTION_OPTS_VERSION + 1;
    assert_int_equal(faas_register(f.rt, "fn", h_ok, &fo), FAAS_EINVAL);
    fo.version = FAAS_FUNCTION_OPTS_VERSION;
    io.key_path = "id";
    io.version = FAAS_IDEMPOTENCY_OPTS_VERSION + 1;
    fo.idempotency = &io;
    assert_int_equal(faas_register(f.rt, "fn", h_ok, &fo), FAAS_EINVAL);
    fo.idempotency = NULL;
    ao.version = FAAS_ASYNC_OPTS_VERSION + 1;
    fo.async = &ao;
    assert_int_equal(faas_register(f.rt, "fn", h_ok, &fo), FAAS_EINVAL);
    fo.async = NULL;
    assert_int_equal(faas_register(f.rt, "fn", h_ok, &fo), 0);

    vo.version = FAAS_INVOKE_OPTS_VERSION + 1;
    assert_int_equal(faas_invoke_sync(f.rt, "fn", NULL, &vo, &res), FAAS_EINVAL);
    assert_int_equal(faas_invoke_async(f.rt, "fn", NULL, &vo, id), FAAS_EINVAL);
    vo.version = FAAS_INVOKE_OPTS_VERSION;
    assert_int_equal(faas_invoke_sync(f.rt, "fn", NULL, &vo, &res), 0);
    faas_result_free(res);

    mo.version = FAAS_MAP_OPTS_VERSION + 1;
    assert_int_equal(faas_map(f.rt, "queue:jobs", "fn", &mo), FAAS_EINVAL);
    mo.version = FAAS_MAP_OPTS_VERSION;
    assert_true(faas_map(f.rt, "queue:jobs", "fn", &mo) >= 0);

    assert_int_equal(faas_store_ops_init(&so, FAAS_STORE_OPS_VERSION), 0);
    so.get = st_get;
    so.put_if_absent = st_put;
    so.complete = st_put;
    so.remove = st_remove;
    so.version = FAAS_STORE_OPS_VERSION + 1;
    assert_int_equal(faas_store_new(&st, &so, NULL), FAAS_EINVAL);
    so.version = FAAS_STORE_OPS_VERSION;
    assert_int_equal(faas_store_new(&st, &so, NULL), 0);
    faas_store_free(st);
    fx_free(&f);
}

/* ---- faas_*_opts_init ---------------------------------------------------- */

/* Filled over 0xab bytes: every byte must be the macro's (static objects'
 * padding is zero, and init copies such an object). */
#define CHECK_INIT(type, fn, version, init)                                     \
    do {                                                                        \
        static const type want_ = init;                                         \
        type got_;                                                              \
        memset(&got_, 0xab, sizeof got_);                                       \
        assert_int_equal(fn(&got_, version), 0);                                \
        assert_memory_equal(&got_, &want_, sizeof got_);                        \
        assert_int_equal(fn(NULL, version), FAAS_EINVAL);                       \
        assert_int_equal(fn(&got_, 0), FAAS_EINVAL);                            \
        assert_int_equal(fn(&got_, (version) + 1), FAAS_EINVAL);                \
    } while (0)

static void test_init_matches_macros(void **state)
{
    static const struct faas_store_ops no_ops = { FAAS_STORE_OPS_VERSION, NULL, NULL,
                                                  NULL, NULL, NULL };
    (void)state;
    CHECK_INIT(struct faas_runtime_opts, faas_runtime_opts_init, FAAS_RUNTIME_OPTS_VERSION,
               FAAS_RUNTIME_OPTS_INIT);
    CHECK_INIT(struct faas_function_opts, faas_function_opts_init, FAAS_FUNCTION_OPTS_VERSION,
               FAAS_FUNCTION_OPTS_INIT);
    CHECK_INIT(struct faas_idempotency_opts, faas_idempotency_opts_init,
               FAAS_IDEMPOTENCY_OPTS_VERSION, FAAS_IDEMPOTENCY_OPTS_INIT);
    CHECK_INIT(struct faas_async_opts, faas_async_opts_init, FAAS_ASYNC_OPTS_VERSION,
               FAAS_ASYNC_OPTS_INIT);
    CHECK_INIT(struct faas_invoke_opts, faas_invoke_opts_init, FAAS_INVOKE_OPTS_VERSION,
               FAAS_INVOKE_OPTS_INIT);
    CHECK_INIT(struct faas_map_opts, faas_map_opts_init, FAAS_MAP_OPTS_VERSION,
               FAAS_MAP_OPTS_INIT);
    CHECK_INIT(struct faas_emit_opts, faas_emit_opts_init, FAAS_EMIT_OPTS_VERSION,
               FAAS_EMIT_OPTS_INIT);
    {
        struct faas_store_ops got;
        memset(&got, 0xab, sizeof got);
        assert_int_equal(faas_store_ops_init(&got, FAAS_STORE_OPS_VERSION), 0);
        assert_memory_equal(&got, &no_ops, sizeof got);
        assert_int_equal(faas_store_ops_init(&got, FAAS_STORE_OPS_VERSION + 1), FAAS_EINVAL);
    }
}

/* An older version's init writes that version's bytes and no more, and the
 * struct it makes is accepted. */
static void test_init_v1(void **state)
{
    union runtime_host rh;
    union async_host ah;
    union idem_host ih;
    struct faas_runtime *rt = NULL;
    struct event_base *base = event_base_new();
    size_t i;

    (void)state;
    memset(&rh, 0xee, sizeof rh);
    assert_int_equal(faas_runtime_opts_init((struct faas_runtime_opts *)&rh, 1), 0);
    assert_int_equal(rh.v1.version, 1);
    assert_int_equal(rh.v1.zygote, 1);
    assert_int_equal(rh.v1.max_sync_payload, 6u * 1024u * 1024u);
    assert_int_equal(rh.v1.max_async_payload, 256u * 1024u);
    assert_null(rh.v1.region);
    assert_int_equal(rh.v1.http_max_headers, 16u * 1024u);
    for (i = offsetof(struct runtime_opts_v1, secret_access_key) + sizeof(const char *);
         i < sizeof rh; i++)
        assert_int_equal(((unsigned char *)&rh)[i], 0xee);
    rh.v1.zygote = 0;
    assert_int_equal(faas_runtime_new(&rt, base, (const struct faas_runtime_opts *)&rh), 0);
    assert_int_equal(rt->opts.http_max_connections, 1024);
    faas_runtime_free(rt);
    event_base_free(base);

    memset(&ah, 0xee, sizeof ah);
    assert_int_equal(faas_async_opts_init((struct faas_async_opts *)&ah, 1), 0);
    assert_int_equal(ah.v1.version, 1);
    assert_int_equal(ah.v1.max_retries, 2);
    assert_int_equal(ah.v1.max_queue, 100000);
    assert_null(ah.v1.dead_letter_arg);
    for (i = offsetof(struct async_opts_v1, dead_letter_arg) + sizeof(void *); i < sizeof ah;
         i++)
        assert_int_equal(((unsigned char *)&ah)[i], 0xee);

    memset(&ih, 0xee, sizeof ih);
    assert_int_equal(faas_idempotency_opts_init((struct faas_idempotency_opts *)&ih, 1), 0);
    assert_int_equal(ih.v1.version, 1);
    assert_int_equal(ih.v1.ttl_s, 3600);
    assert_null(ih.v1.store);
    for (i = offsetof(struct idempotency_opts_v1, store) + sizeof(void *); i < sizeof ih; i++)
        assert_int_equal(((unsigned char *)&ih)[i], 0xee);
}

/* ---- faas_stats_read ---------------------------------------------------- */

static void test_stats_read(void **state)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_result *res = NULL;
    struct faas_stats a, b;
    size_t v1 = offsetof(struct faas_stats, queued) + sizeof(uint32_t);
    unsigned char buf[sizeof(struct faas_stats) + 16];
    struct fx f;
    size_t i;

    (void)state;
    fx_new(&f);
    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(f.rt, "fn", h_ok, &fo), 0);
    assert_int_equal(faas_invoke_sync(f.rt, "fn", NULL, NULL, &res), 0);
    faas_result_free(res);

    memset(&a, 0, sizeof a);
    memset(&b, 0xcd, sizeof b);
    assert_int_equal(faas_stats(f.rt, "fn", &a), 0);
    assert_int_equal(faas_stats_read(f.rt, "fn", &b, sizeof b), 0);
    assert_int_equal(b.invocations, 1);
    assert_int_equal(b.cold_starts, 1);
    assert_memory_equal(&a, &b, v1);

    /* The first version's exact size: nothing written past it. */
    memset(buf, 0xcd, sizeof buf);
    assert_int_equal(faas_stats_read(f.rt, NULL, (struct faas_stats *)(void *)buf, v1), 0);
    assert_memory_equal(buf, &a, v1);
    for (i = v1; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xcd);

    assert_int_equal(faas_stats_read(f.rt, "fn", &b, v1 - 1), FAAS_EINVAL);
    assert_int_equal(faas_stats_read(f.rt, "fn", (struct faas_stats *)(void *)buf, sizeof buf),
                     FAAS_EINVAL); /* a struct from the future */
    assert_int_equal(faas_stats_read(f.rt, "nope", &b, sizeof b), FAAS_ENOENT);
    assert_int_equal(faas_stats_read(NULL, "fn", &b, sizeof b), FAAS_EINVAL);
    assert_int_equal(faas_stats_read(f.rt, "fn", NULL, sizeof b), FAAS_EINVAL);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runtime_v1),
        cmocka_unit_test(test_async_v1),
        cmocka_unit_test(test_idempotency_v1),
        cmocka_unit_test(test_future_refused),
        cmocka_unit_test(test_init_matches_macros),
        cmocka_unit_test(test_init_v1),
        cmocka_unit_test(test_stats_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_runtime.c - runtime lifecycle and the function registry:
 * faas_runtime_new/free arguments, name validation, duplicates, isolation
 * checks, unregister, freeing with invocations in flight (INLINE and
 * THREAD), freeing from inside a result callback, 10,000 functions; the
 * region every record names, decided once.
 */
#include "faas_int.h" /* faas_schedule_poll */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BOUND_MS 5000u

/* ------------------------------------------------------------------ */
/* helpers                                                              */
/* ------------------------------------------------------------------ */

struct fx {
    struct event_base *base;
    struct faas_runtime *rt;
};

static void fx_new(struct fx *f)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    o.thread_workers = 2;
    o.zygote = 0;
    tu_rt_new(&f->base, &f->rt, &o);
}

static void fx_free(struct fx *f)
{
    tu_rt_free(&f->rt, &f->base);
}

/* What a result callback saw; res is borrowed, so copy what we need. */
struct cap {
    int calls;
    int status;
    json_t *payload;
    char rid[FAAS_REQUEST_ID_SIZE];
    char fn[FAAS_NAME_MAX + 1];
};

static void cap_cb(const struct faas_result *res, void *arg)
{
    struct cap *c = arg;
    const char *rid = faas_result_request_id(res);
    const char *fn = faas_result_function_name(res);
    c->calls++;
    c->status = faas_result_status(res);
    json_decref(c->payload);
    c->payload = json_incref(faas_result_payload(res));
    snprintf(c->rid, sizeof c->rid, "%s", rid ? rid : "");
    snprintf(c->fn, sizeof c->fn, "%s", fn ? fn : "");
}

static void cap_clear(struct cap *c)
{
    json_decref(c->payload);
    memset(c, 0, sizeof *c);
}

/* Invokes and drives the loop until the callback ran; returns the
 * faas_invoke() code. */
static int invoke_wait(struct fx *f, const char *name, json_t *event, struct cap *c)
{
    int rc = faas_invoke(f->rt, name, event, NULL, cap_cb, c);
    if (rc == 0)
        assert_true(tu_run_until(f->base, &c->calls, 1, BOUND_MS));
    return rc;
}

/* handlers */

static int h_ok(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_string("ok");
    return 0;
}

static int h_other(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_string("other");
    return 0;
}

static int h_name(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    *result = json_string(faas_ctx_function_name(ctx));
    return 0;
}

/* A handler that blocks until released or cancelled (bounded). */
static int g_started;
static int g_finished;
static int g_saw_cancel;
static int g_release;
static int g_inits;
static int g_finis;

static void reset_globals(void)
{
    ASTORE(&g_started, 0);
    ASTORE(&g_finished, 0);
    ASTORE(&g_saw_cancel, 0);
    ASTORE(&g_release, 0);
    ASTORE(&g_inits, 0);
    ASTORE(&g_finis, 0);
}

static int h_block(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    uint64_t end = tu_now_ms() + 5000u;
    AINC(&g_started);
    for (;;) {
        if (faas_ctx_cancelled(ctx)) {
            AINC(&g_saw_cancel);
            break;
        }
        if (ALOAD(&g_release) || tu_now_ms() > end)
            break;
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
    *result = json_string("late");
    AINC(&g_finished);
    return 0;
}

static int init_count(struct faas_ctx *ctx, void **state)
{
    (void)ctx;
    int *p = malloc(sizeof *p);
    if (!p)
        return 1;
    *p = 7;
    *state = p;
    AINC(&g_inits);
    return 0;
}

static void fini_count(void *state)
{
    /* May run on a worker thread: no cmocka asserts here. */
    if (state && *(int *)state == 7)
        AINC(&g_finis);
    free(state);
}

/* ------------------------------------------------------------------ */
/* runtime_new / runtime_free                                          */
/* ------------------------------------------------------------------ */

static char sentinel_obj;
#define SENTINEL ((struct faas_runtime *)(void *)&sentinel_obj)

static void test_runtime_new_args(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct faas_runtime *rt;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    assert_non_null(base);

    assert_int_equal(faas_runtime_new(NULL, base, NULL), FAAS_EINVAL);
    assert_int_equal(faas_runtime_new(NULL, NULL, NULL), FAAS_EINVAL);

    rt = SENTINEL;
    assert_int_equal(faas_runtime_new(&rt, NULL, NULL), FAAS_EINVAL);
    assert_ptr_equal(rt, SENTINEL);

    o.version = 0;
    assert_int_equal(faas_runtime_new(&rt, base, &o), FAAS_EINVAL);
    assert_ptr_equal(rt, SENTINEL);

    o.version = FAAS_RUNTIME_OPTS_VERSION + 1;
    assert_int_equal(faas_runtime_new(&rt, base, &o), FAAS_EINVAL);
    assert_ptr_equal(rt, SENTINEL);

    o.version = 12345;
    assert_int_equal(faas_runtime_new(&rt, NULL, &o), FAAS_EINVAL);
    assert_ptr_equal(rt, SENTINEL);

    faas_runtime_free(NULL); /* a no-op */
    event_base_free(base);
}

static void test_runtime_new_ok(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct faas_runtime *rt = SENTINEL;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    int before;
    assert_non_null(base);
    before = event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE);

    /* NULL opts: the defaults. */
    assert_int_equal(faas_runtime_new(&rt, base, NULL), 0);
    assert_non_null(rt);
    assert_ptr_not_equal(rt, SENTINEL);
    faas_runtime_free(rt);
    /* The runtime removed whatever it added to the borrowed base. */
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED |
                                                         EVENT_BASE_COUNT_ACTIVE),
                     before);

    /* Explicit opts, started from the _INIT macro. */
    rt = SENTINEL;
    o.thread_workers = 2;
    o.zygote = 0;
    assert_int_equal(faas_runtime_new(&rt, base, &o), 0);
    assert_ptr_not_equal(rt, SENTINEL);
    assert_int_equal(faas_register(rt, "f", h_ok, NULL), 0);
    faas_runtime_free(rt);
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED |
                                                         EVENT_BASE_COUNT_ACTIVE),
                     before);

    /* Two runtimes on one base are independent. */
    struct faas_runtime *a = NULL, *b = NULL;
    assert_int_equal(faas_runtime_new(&a, base, &o), 0);
    assert_int_equal(faas_runtime_new(&b, base, &o), 0);
    assert_ptr_not_equal(a, b);
    assert_int_equal(faas_register(a, "same", h_ok, NULL), 0);
    assert_int_equal(faas_register(b, "same", h_ok, NULL), 0);
    faas_runtime_free(a);
    faas_runtime_free(b);
    event_base_free(base);
}

/* ------------------------------------------------------------------ */
/* registration                                                         */
/* ------------------------------------------------------------------ */

static void test_register_names(void **state)
{
    (void)state;
    struct fx f;
    char name64[FAAS_NAME_MAX + 1];
    char name65[FAAS_NAME_MAX + 2];
    struct cap c = { 0 };
    struct faas_stats st;
    static const char *const bad[] = {
        "a b", "a.b", "a/b", "a:b", "a\tb", "a\nb", "caf\xc3\xa9", "a$", "a*", "$LATEST",
        " lead", "trail ", "a+b", "a@b", "a,b", "a\"b", "a\\b", "a{b}", "\x7f",
    };
    fx_new(&f);

    memset(name64, 'a', FAAS_NAME_MAX);
    name64[FAAS_NAME_MAX] = '\0';
    memset(name65, 'b', FAAS_NAME_MAX + 1);
    name65[FAAS_NAME_MAX + 1] = '\0';

    assert_int_equal(faas_register(f.rt, "", h_ok, NULL), FAAS_EINVAL);
    assert_int_equal(faas_register(f.rt, NULL, h_ok, NULL), FAAS_EINVAL);
    assert_int_equal(faas_register(f.rt, name65, h_ok, NULL), FAAS_EINVAL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(faas_register(f.rt, bad[i], h_ok, NULL), FAAS_EINVAL);

    /* Bad arguments other than the name. */
    assert_int_equal(faas_register(NULL, "good", h_ok, NULL), FAAS_EINVAL);
    assert_int_equal(faas_register(f.rt, "good", NULL, NULL), FAAS_EINVAL);
    {
        struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
        o.version = 0;
        assert_int_equal(faas_register(f.rt, "good", h_ok, &o), FAAS_EINVAL);
        o.version = FAAS_FUNCTION_OPTS_VERSION + 1;
        assert_int_equal(faas_register(f.rt, "good", h_ok, &o), FAAS_EINVAL);
    }
    /* None of the refused registrations left a function behind. */
    assert_int_equal(faas_stats(f.rt, "good", &st), FAAS_ENOENT);
    assert_int_equal(faas_stats(f.rt, NULL, &st), 0);
    assert_int_equal(st.invocations, 0);
    assert_int_equal(st.instances, 0);
    assert_int_equal(faas_register(f.rt, "good", h_ok, NULL), 0);

    /* The edges that are accepted. */
    assert_int_equal(faas_register(f.rt, name64, h_name, NULL), 0);
    assert_int_equal(faas_register(f.rt, "x", h_name, NULL), 0);
    assert_int_equal(faas_register(f.rt, "AZaz09_-", h_name, NULL), 0);
    assert_int_equal(faas_register(f.rt, "-", h_name, NULL), 0);
    assert_int_equal(faas_register(f.rt, "_", h_name, NULL), 0);

    /* The 64-byte name is usable and reported unchanged. */
    assert_int_equal(invoke_wait(&f, name64, NULL, &c), 0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, 0);
    assert_string_equal(c.fn, name64);
    assert_true(json_is_string(c.payload));
    assert_string_equal(json_string_value(c.payload), name64);
    cap_clear(&c);

    assert_int_equal(invoke_wait(&f, "AZaz09_-", NULL, &c), 0);
    assert_int_equal(c.status, 0);
    assert_string_equal(json_string_value(c.payload), "AZaz09_-");
    cap_clear(&c);

    /* Names are case-sensitive: "Good" is not "good". */
    assert_int_equal(faas_stats(f.rt, "Good", &st), FAAS_ENOENT);
    assert_int_equal(faas_register(f.rt, "Good", h_ok, NULL), 0);

    /* The name is copied: a caller buffer can change afterwards. */
    {
        char buf[16];
        snprintf(buf, sizeof buf, "copied");
        assert_int_equal(faas_register(f.rt, buf, h_name, NULL), 0);
        memset(buf, 'z', sizeof buf - 1);
        buf[sizeof buf - 1] = '\0';
        assert_int_equal(invoke_wait(&f, "copied", NULL, &c), 0);
        assert_int_equal(c.status, 0);
        assert_string_equal(json_string_value(c.payload), "copied");
        cap_clear(&c);
    }
    fx_free(&f);
}

static void test_register_duplicate(void **state)
{
    (void)state;
    struct fx f;
    struct cap c = { 0 };
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    fx_new(&f);

    assert_int_equal(faas_register(f.rt, "dup", h_ok, NULL), 0);
    assert_int_equal(faas_register(f.rt, "dup", h_other, NULL), FAAS_EEXIST);
    o.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(f.rt, "dup", h_other, &o), FAAS_EEXIST);

    /* The first registration is the one that runs. */
    assert_int_equal(invoke_wait(&f, "dup", NULL, &c), 0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, 0);
    assert_string_equal(json_string_value(c.payload), "ok");
    cap_clear(&c);
    fx_free(&f);
}

static void test_register_isolation(void **state)
{
    (void)state;
    struct fx f;
    struct faas_stats st;
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct cap c = { 0 };
    fx_new(&f);

    o.isolation = (enum faas_isolation)7;
    assert_int_equal(faas_register(f.rt, "proc", h_ok, &o), FAAS_EINVAL);
    assert_int_equal(faas_stats(f.rt, "proc", &st), FAAS_ENOENT);

    /* The refused name is free to use. */
    o.isolation = FAAS_ISOLATION_THREAD;
    assert_int_equal(faas_register(f.rt, "proc", h_ok, &o), 0);
    assert_int_equal(invoke_wait(&f, "proc", NULL, &c), 0);
    assert_int_equal(c.status, 0);
    cap_clear(&c);
    fx_free(&f);
}

/* ------------------------------------------------------------------ */
/* unregister                                                           */
/* ------------------------------------------------------------------ */

static void test_unregister(void **state)
{
    (void)state;
    struct fx f;
    struct cap c = { 0 };
    struct faas_stats st;
    fx_new(&f);

    assert_int_equal(faas_unregister(f.rt, "nope"), FAAS_ENOENT);
    assert_int_equal(faas_unregister(f.rt, NULL), FAAS_EINVAL);
    assert_int_equal(faas_unregister(NULL, "nope"), FAAS_EINVAL);

    assert_int_equal(faas_register(f.rt, "f", h_ok, NULL), 0);
    assert_int_equal(invoke_wait(&f, "f", NULL, &c), 0);
    assert_string_equal(json_string_value(c.payload), "ok");
    cap_clear(&c);

    assert_int_equal(faas_unregister(f.rt, "f"), 0);
    assert_int_equal(faas_invoke(f.rt, "f", NULL, NULL, cap_cb, &c), FAAS_ENOENT);
    assert_int_equal(faas_unregister(f.rt, "f"), FAAS_ENOENT);
    assert_int_equal(faas_stats(f.rt, "f", &st), FAAS_ENOENT);
    tu_run_for(f.base, 20);
    assert_int_equal(c.calls, 0);

    /* The name can be registered again at once, with another handler. */
    assert_int_equal(faas_register(f.rt, "f", h_other, NULL), 0);
    assert_int_equal(invoke_wait(&f, "f", NULL, &c), 0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, 0);
    assert_string_equal(json_string_value(c.payload), "other");
    cap_clear(&c);
    /* Its counters start afresh. */
    assert_int_equal(faas_stats(f.rt, "f", &st), 0);
    assert_int_equal(st.invocations, 1);
    fx_free(&f);
}

/* Unregister with invocations waiting (INLINE: not yet run) or running
 * (THREAD: blocked): each callback once, FAAS_ECANCELED, from the loop. */
static void test_unregister_inflight(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c[3];
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    memset(c, 0, sizeof c);
    reset_globals();
    fx_new(&f);
    o.isolation = iso;
    o.init = init_count;
    o.fini = fini_count;
    /* INLINE handlers would block the loop: they must not run at all. */
    assert_int_equal(faas_register(f.rt, "u", iso == FAAS_ISOLATION_THREAD ? h_block : h_ok, &o),
                     0);

    for (int i = 0; i < 3; i++)
        assert_int_equal(faas_invoke(f.rt, "u", NULL, NULL, cap_cb, &c[i]), 0);
    if (iso == FAAS_ISOLATION_THREAD)
        assert_true(tu_run_until_atomic(f.base, &g_started, 2, BOUND_MS));

    assert_int_equal(faas_unregister(f.rt, "u"), 0);
    /* Callbacks come from the loop, not from inside faas_unregister. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(c[i].calls, 0);
    int total = 0;
    for (int k = 0; k < 3; k++) {
        assert_true(tu_run_until(f.base, &c[k].calls, 1, BOUND_MS));
    }
    if (iso == FAAS_ISOLATION_THREAD) {
        /* The running handlers were flagged cancelled and have returned. */
        assert_true(tu_run_until_atomic(f.base, &g_finished, ALOAD(&g_started), BOUND_MS));
        assert_int_equal(ALOAD(&g_saw_cancel), ALOAD(&g_started));
    }
    tu_run_for(f.base, 30);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].calls, 1);
        assert_int_equal(c[i].status, FAAS_ECANCELED);
        total += c[i].calls;
    }
    assert_int_equal(total, 3);
    fx_free(&f);
    assert_int_equal(ALOAD(&g_finis), ALOAD(&g_inits));
    for (int i = 0; i < 3; i++)
        cap_clear(&c[i]);
}

/* ------------------------------------------------------------------ */
/* free with invocations in flight                                     */
/* ------------------------------------------------------------------ */

static void test_free_inflight_inline(void **state)
{
    (void)state;
    struct fx f;
    struct cap c[5];
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    memset(c, 0, sizeof c);
    reset_globals();
    fx_new(&f);
    o.isolation = FAAS_ISOLATION_INLINE;
    o.init = init_count;
    o.fini = fini_count;
    assert_int_equal(faas_register(f.rt, "inl", h_ok, &o), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(faas_invoke(f.rt, "inl", NULL, NULL, cap_cb, &c[i]), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(c[i].calls, 0);

    faas_runtime_free(f.rt);
    f.rt = NULL;
    /* Every callback ran once, before free returned. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(c[i].calls, 1);
        assert_int_equal(c[i].status, FAAS_ECANCELED);
    }
    assert_int_equal(ALOAD(&g_finis), ALOAD(&g_inits));
    /* Nothing of the runtime is left on the base. */
    tu_run_for(f.base, 20);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(c[i].calls, 1);
        cap_clear(&c[i]);
    }
    event_base_free(f.base);
}

static void test_free_inflight_thread(void **state)
{
    (void)state;
    struct fx f;
    struct cap c[4];
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    memset(c, 0, sizeof c);
    reset_globals();
    fx_new(&f);
    o.isolation = FAAS_ISOLATION_THREAD;
    o.init = init_count;
    o.fini = fini_count;
    assert_int_equal(faas_register(f.rt, "thr", h_block, &o), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(faas_invoke(f.rt, "thr", NULL, NULL, cap_cb, &c[i]), 0);
    /* Two workers: two handlers running, the others waiting. */
    assert_true(tu_run_until_atomic(f.base, &g_started, 2, BOUND_MS));
    for (int i = 0; i < 4; i++)
        assert_int_equal(c[i].calls, 0);

    faas_runtime_free(f.rt);
    f.rt = NULL;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(c[i].calls, 1);
        assert_int_equal(c[i].status, FAAS_ECANCELED);
    }
    /* Running handlers were flagged and waited for; threads joined. */
    assert_int_equal(ALOAD(&g_finished), ALOAD(&g_started));
    assert_int_equal(ALOAD(&g_saw_cancel), ALOAD(&g_started));
    assert_true(ALOAD(&g_inits) >= 2);
    assert_int_equal(ALOAD(&g_finis), ALOAD(&g_inits));
    /* Late results were discarded. */
    tu_run_for(f.base, 20);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(c[i].calls, 1);
        cap_clear(&c[i]);
    }
    event_base_free(f.base);
}

/* Free right after invoking, before the loop ever ran: with fast THREAD
 * handlers some may already have finished on a worker; still every
 * callback runs exactly once with FAAS_ECANCELED. */
static void test_free_immediately_thread(void **state)
{
    (void)state;
    struct fx f;
    struct cap c[20];
    memset(c, 0, sizeof c);
    fx_new(&f);
    assert_int_equal(faas_register(f.rt, "fast", h_ok, NULL), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(faas_invoke(f.rt, "fast", NULL, NULL, cap_cb, &c[i]), 0);
    faas_runtime_free(f.rt);
    f.rt = NULL;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(c[i].calls, 1);
        assert_int_equal(c[i].status, FAAS_ECANCELED);
    }
    tu_run_for(f.base, 20);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(c[i].calls, 1);
        cap_clear(&c[i]);
    }
    event_base_free(f.base);
}

/* ------------------------------------------------------------------ */
/* free from inside a result callback                                  */
/* ------------------------------------------------------------------ */

struct free_in_cb {
    struct faas_runtime *rt;
    int calls;          /* all callbacks */
    int each[3];
    int status[3];
    int freed;          /* the callback that freed */
    int after_ok;       /* res still readable after free in the callback */
};

struct fic_arg {
    struct free_in_cb *s;
    int idx;
};

static void fic_cb(const struct faas_result *res, void *arg)
{
    struct fic_arg *a = arg;
    struct free_in_cb *s = a->s;
    s->calls++;
    s->each[a->idx]++;
    s->status[a->idx] = faas_result_status(res);
    if (!s->freed) {
        char rid[FAAS_REQUEST_ID_SIZE];
        s->freed = 1;
        snprintf(rid, sizeof rid, "%s", faas_result_request_id(res));
        faas_runtime_free(s->rt);
        /* Deferred: the borrowed result is still valid until we return. */
        s->after_ok = faas_result_request_id(res) != NULL &&
                      strcmp(faas_result_request_id(res), rid) == 0 &&
                      faas_result_payload(res) != NULL;
    }
}

static void test_free_in_callback(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct event_base *base = event_base_new();
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct free_in_cb s;
    struct fic_arg args[3];
    memset(&s, 0, sizeof s);
    reset_globals();
    assert_non_null(base);
    ro.thread_workers = 2;
    ro.zygote = 0;
    assert_int_equal(faas_runtime_new(&s.rt, base, &ro), 0);
    o.isolation = iso;
    o.init = init_count;
    o.fini = fini_count;
    assert_int_equal(faas_register(s.rt, "f", h_ok, &o), 0);
    for (int i = 0; i < 3; i++) {
        args[i].s = &s;
        args[i].idx = i;
        assert_int_equal(faas_invoke(s.rt, "f", NULL, NULL, fic_cb, &args[i]), 0);
    }
    assert_true(tu_run_until(base, &s.calls, 3, BOUND_MS));
    /* Nothing more arrives once the runtime is gone. */
    tu_run_for(base, 30);
    assert_int_equal(s.calls, 3);
    assert_int_equal(s.freed, 1);
    assert_int_equal(s.after_ok, 1);
    int ok = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s.each[i], 1);
        assert_true(s.status[i] == 0 || s.status[i] == FAAS_ECANCELED);
        ok += s.status[i] == 0;
    }
    /* The one that freed had a result. */
    assert_true(ok >= 1);
    assert_int_equal(ALOAD(&g_finis), ALOAD(&g_inits));
    event_base_free(base);
}

/* ------------------------------------------------------------------ */
/* many functions                                                       */
/* ------------------------------------------------------------------ */

#define MANY 10000

struct many_state {
    int calls;
    int bad;
    int *seen;
};

struct many_arg {
    struct many_state *s;
    int idx;
};

static void many_cb(const struct faas_result *res, void *arg)
{
    struct many_arg *a = arg;
    char want[16];
    snprintf(want, sizeof want, "f%05d", a->idx);
    a->s->calls++;
    a->s->seen[a->idx]++;
    if (faas_result_status(res) != 0 || !json_is_string(faas_result_payload(res)) ||
        strcmp(json_string_value(faas_result_payload(res)), want) != 0 ||
        strcmp(faas_result_function_name(res), want) != 0)
        a->s->bad++;
}

static void test_many_functions(void **state)
{
    (void)state;
    struct fx f;
    struct many_state s;
    struct many_arg *args = calloc(MANY, sizeof *args);
    struct faas_function_opts oi = FAAS_FUNCTION_OPTS_INIT;
    struct faas_function_opts ot = FAAS_FUNCTION_OPTS_INIT;
    struct faas_stats st;
    char name[16];
    assert_non_null(args);
    memset(&s, 0, sizeof s);
    s.seen = calloc(MANY, sizeof *s.seen);
    assert_non_null(s.seen);
    oi.isolation = FAAS_ISOLATION_INLINE;
    ot.isolation = FAAS_ISOLATION_THREAD;
    fx_new(&f);

    for (int i = 0; i < MANY; i++) {
        snprintf(name, sizeof name, "f%05d", i);
        assert_int_equal(faas_register(f.rt, name, h_name, (i & 1) ? &ot : &oi), 0);
    }
    /* Every name is taken. */
    assert_int_equal(faas_register(f.rt, "f00000", h_ok, NULL), FAAS_EEXIST);
    assert_int_equal(faas_register(f.rt, "f09999", h_ok, NULL), FAAS_EEXIST);
    assert_int_equal(faas_stats(f.rt, "f10000", &st), FAAS_ENOENT);

    for (int i = 0; i < MANY; i++) {
        snprintf(name, sizeof name, "f%05d", i);
        args[i].s = &s;
        args[i].idx = i;
        assert_int_equal(faas_invoke(f.rt, name, NULL, NULL, many_cb, &args[i]), 0);
    }
    assert_true(tu_run_until(f.base, &s.calls, MANY, 30000));
    tu_run_for(f.base, 20);
    assert_int_equal(s.calls, MANY);
    assert_int_equal(s.bad, 0);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(s.seen[i], 1);

    assert_int_equal(faas_stats(f.rt, NULL, &st), 0);
    assert_int_equal(st.invocations, MANY);
    assert_int_equal(st.errors, 0);
    assert_int_equal(faas_stats(f.rt, "f04321", &st), 0);
    assert_int_equal(st.invocations, 1);

    /* Unregister half of them; the rest still answer. */
    for (int i = 0; i < MANY; i += 2) {
        snprintf(name, sizeof name, "f%05d", i);
        assert_int_equal(faas_unregister(f.rt, name), 0);
    }
    assert_int_equal(faas_stats(f.rt, "f00000", &st), FAAS_ENOENT);
    {
        struct cap c = { 0 };
        assert_int_equal(invoke_wait(&f, "f09999", NULL, &c), 0);
        assert_int_equal(c.status, 0);
        assert_string_equal(json_string_value(c.payload), "f09999");
        cap_clear(&c);
    }
    fx_free(&f);
    free(s.seen);
    free(args);
}

/* ------------------------------------------------------------------ */
/* review regressions                                                   */
/* ------------------------------------------------------------------ */

static struct faas_runtime *g_r9_rt;
static int g_r9_finis_in_init;

/* init_count, and then frees the runtime, from inside faas_register. */
static int init_free_rt(struct faas_ctx *ctx, void **state)
{
    int rc = init_count(ctx, state);
    faas_runtime_free(g_r9_rt);
    /* deferred: nothing is finalised until faas_register returns */
    ASTORE(&g_r9_finis_in_init, ALOAD(&g_finis));
    return rc;
}

/*
 * Review r9: an INLINE min_warm init runs inside faas_register, which is
 * user code on the loop thread like a callback: faas_runtime_free from it
 * takes effect when faas_register returns, not under its feet (ASan and
 * valgrind report the use after free otherwise).
 */
static void test_free_in_inline_prewarm_init(void **state)
{
    (void)state;
    struct fx f;
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    reset_globals();
    fx_new(&f);
    g_r9_rt = f.rt;
    ASTORE(&g_r9_finis_in_init, -1);
    o.isolation = FAAS_ISOLATION_INLINE;
    o.min_warm = 1;
    o.init = init_count;
    o.fini = fini_count;
    assert_int_equal(faas_register(f.rt, "warm", h_ok, &o), 0);
    assert_int_equal(ALOAD(&g_inits), 1);

    o.init = init_free_rt;
    assert_int_equal(faas_register(f.rt, "f", h_ok, &o), 0);
    assert_int_equal(ALOAD(&g_inits), 2);
    assert_int_equal(ALOAD(&g_r9_finis_in_init), 0);
    /* freed on the way out: both instances finalised, once */
    assert_int_equal(ALOAD(&g_finis), 2);
    f.rt = NULL;
    g_r9_rt = NULL;
    tu_run_for(f.base, 20);
    assert_int_equal(ALOAD(&g_finis), 2);
    event_base_free(f.base);
}

#define LF_N 6

/* Which log record frees the runtime (review r11). */
enum lf_target {
    LF_INLINE_LINE,
    LF_INLINE_REPORT,
    LF_THREAD_LINE,
    LF_THREAD_REPORT,
    LF_TIMEOUT_REPORT, /* the REPORT of a timed-out THREAD invocation */
    LF_LATE_LINE,      /* its line, logged when the handler returned */
    LF_NTARGETS
};

struct log_free {
    struct faas_runtime *rt;
    enum lf_target target;
    int freed;
    int rec_ok;  /* the record was still readable after the free */
    int nreported;
    char reported[LF_N + 1][FAAS_REQUEST_ID_SIZE];
    int calls;
    int each[LF_N];
    int status[LF_N];
};

struct lf_arg {
    struct log_free *s;
    int idx;
};

/* Set from the loop thread, read by the slow handler. */
static int g_lf_release;

static int lf_was_reported(const struct log_free *s, const char *rid)
{
    for (int i = 0; i < s->nreported; i++)
        if (strcmp(s->reported[i], rid) == 0)
            return 1;
    return 0;
}

static void lf_log(const struct faas_log_record *rec, void *arg)
{
    struct log_free *s = arg;
    int thread = strcmp(rec->function, "t") == 0;
    int match = 0;

    if (rec->kind == FAAS_LOG_REPORT) {
        int timeout = faas_result_status(rec->result) == FAAS_ETIMEDOUT;
        if (timeout)
            ASTORE(&g_lf_release, 1); /* the slow handler may return now */
        if (s->nreported <= LF_N)
            snprintf(s->reported[s->nreported++], FAAS_REQUEST_ID_SIZE, "%s", rec->request_id);
        match = thread ? (timeout ? s->target == LF_TIMEOUT_REPORT
                                  : s->target == LF_THREAD_REPORT)
                       : s->target == LF_INLINE_REPORT;
    } else if (rec->kind == FAAS_LOG_LINE) {
        if (!thread)
            match = s->target == LF_INLINE_LINE;
        else if (lf_was_reported(s, rec->request_id))
            match = s->target == LF_LATE_LINE;
        else
            match = s->target == LF_THREAD_LINE;
    }
    if (!match || s->freed)
        return;
    s->freed = 1;
    ASTORE(&g_lf_release, 1);
    faas_runtime_free(s->rt);
    /* deferred: the borrowed record is still valid until we return */
    s->rec_ok = rec->function != NULL && rec->request_id != NULL &&
                strlen(rec->request_id) == FAAS_REQUEST_ID_SIZE - 1 &&
                (rec->kind != FAAS_LOG_LINE || strncmp(rec->line, "hello ", 6) == 0) &&
                (rec->kind != FAAS_LOG_REPORT || rec->result != NULL);
}

static void lf_cb(const struct faas_result *res, void *arg)
{
    struct lf_arg *a = arg;
    a->s->calls++;
    a->s->each[a->idx]++;
    a->s->status[a->idx] = faas_result_status(res);
}

/*
 * Logs a line. A "slow" event then waits (bounded) until the loop saw its
 * timeout REPORT or freed the runtime, so its line comes after the REPORT.
 */
static int h_log(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    uint64_t end = tu_now_ms() + 2000u;
    faas_ctx_log(ctx, "hello %d", (int)json_integer_value(json_object_get(event, "n")));
    if (json_is_true(json_object_get(event, "slow"))) {
        while (!ALOAD(&g_lf_release) && tu_now_ms() < end) {
            struct timespec ts = { 0, 1000000L };
            nanosleep(&ts, NULL);
        }
    }
    *result = json_true();
    return 0;
}

/*
 * Review r11: faas_runtime_free from inside the log callback, at each kind
 * of record in turn: an INLINE LINE and REPORT, a THREAD LINE and REPORT,
 * the REPORT of a THREAD invocation that timed out (from the deadline
 * timer) and its line, logged late when its handler returned. Every pending
 * result callback still runs exactly once, every instance is finalised,
 * and ASan and valgrind stay clean.
 */
static void test_free_in_log_callback(void **state)
{
    (void)state;
    /* function and slowness of each invocation */
    static const char *const fns[LF_N] = { "i", "t", "t", "i", "t", "i" };
    static const int slow[LF_N] = { 0, 0, 1, 0, 0, 0 };
    for (int target = 0; target < LF_NTARGETS; target++) {
        struct event_base *base = event_base_new();
        struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
        struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
        struct log_free s;
        struct lf_arg args[LF_N];
        memset(&s, 0, sizeof s);
        reset_globals();
        ASTORE(&g_lf_release, 0);
        assert_non_null(base);
        s.target = (enum lf_target)target;
        ro.thread_workers = 2;
        ro.zygote = 0;
        ro.log = lf_log;
        ro.log_arg = &s;
        assert_int_equal(faas_runtime_new(&s.rt, base, &ro), 0);
        o.init = init_count;
        o.fini = fini_count;
        o.timeout_ms = 50;
        o.min_warm = 1;
        o.isolation = FAAS_ISOLATION_THREAD;
        assert_int_equal(faas_register(s.rt, "t", h_log, &o), 0);
        o.isolation = FAAS_ISOLATION_INLINE;
        assert_int_equal(faas_register(s.rt, "i", h_log, &o), 0);
        for (int i = 0; i < LF_N; i++) {
            json_t *ev = json_pack("{s:i,s:b}", "n", i, "slow", slow[i]);
            args[i].s = &s;
            args[i].idx = i;
            assert_int_equal(faas_invoke(s.rt, fns[i], ev, NULL, lf_cb, &args[i]), 0);
            json_decref(ev);
        }
        assert_true(tu_run_until(base, &s.freed, 1, BOUND_MS));
        assert_true(tu_run_until(base, &s.calls, LF_N, BOUND_MS));
        assert_int_equal(s.rec_ok, 1);
        /* nothing more arrives once the runtime is gone */
        tu_run_for(base, 20);
        assert_int_equal(s.calls, LF_N);
        for (int i = 0; i < LF_N; i++) {
            assert_int_equal(s.each[i], 1);
            if (slow[i])
                assert_true(s.status[i] == FAAS_ETIMEDOUT || s.status[i] == FAAS_ECANCELED);
            else
                assert_true(s.status[i] == 0 || s.status[i] == FAAS_ECANCELED);
        }
        assert_int_equal(ALOAD(&g_finis), ALOAD(&g_inits));
        event_base_free(base);
    }
}

/* ------------------------------------------------------------------ */
/* review regressions                                                   */
/* ------------------------------------------------------------------ */

struct unreg_next {
    struct faas_runtime *rt;
    int completes;
    int status;
    int unregister_rc;
};

static struct unreg_next g_un;

static int h_nop(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    return 0;
}

/* Ends "a"'s queued event during teardown, and unregisters "b", the
 * function teardown walks next. */
static void unregister_next(const struct faas_result *res, void *arg)
{
    struct unreg_next *s = arg;
    s->completes++;
    s->status = faas_result_status(res);
    s->unregister_rc = faas_unregister(s->rt, "b");
}

/* faas_runtime_free from top level with an async event still queued: its
 * on_complete runs during teardown and unregisters another function. The
 * runtime is being freed: faas_unregister says so and leaves the function
 * to teardown. */
/* ---- the region: one value in every record ------------------------- */

static json_t *g_sunk; /* events "sink" received */

static int h_sink(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)result;
    json_array_append(g_sunk, event);
    return 0;
}

static int h_fails(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    return 1;
}

static int sunk_count(const void *arg)
{
    return json_array_size(g_sunk) >= *(const size_t *)arg;
}

static void assert_arn_region(const char *arn, const char *want)
{
    char part[96];
    snprintf(part, sizeof part, ":%s:", want);
    assert_non_null(arn);
    assert_non_null(strstr(arn, part));
}

/* Every record a runtime makes names the region faas_runtime_new decided:
 * S3, DynamoDB, Kinesis and SQS records (awsRegion, eventSourceARN), the
 * scheduled event, an async destination's record and a mapping's
 * on-failure record (functionArn). */
static void check_region(const char *given, const char *want)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    struct tu_clock clock = { 0 };
    struct event_base *base = event_base_new();
    struct faas_runtime *rt = NULL;
    char id[FAAS_REQUEST_ID_SIZE];
    size_t want_n = 7, i;
    json_t *ev;
    int nrec = 0, ndest = 0, nsched = 0;

    assert_non_null(base);
    g_sunk = json_array();
    o.zygote = 0;
    o.region = given;
    o.clock.now_ns = tu_clock_now;
    o.clock.wall_ns = tu_clock_wall;
    o.clock.arg = &clock;
    assert_int_equal(faas_runtime_new(&rt, base, &o), 0);
    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(rt, "sink", h_sink, &fo), 0);
    ao.max_retries = 0;
    ao.on_failure = "sink";
    fo.async = &ao;
    assert_int_equal(faas_register(rt, "fails", h_fails, &fo), 0);
    assert_true(faas_map(rt, "s3:ObjectCreated:*", "sink", NULL) >= 0);
    assert_true(faas_map(rt, "dynamodb:*", "sink", NULL) >= 0);
    assert_true(faas_map(rt, "stream:orders", "sink", NULL) >= 0);
    assert_true(faas_map(rt, "queue:jobs", "sink", NULL) >= 0);
    assert_true(faas_map(rt, "schedule:rate(1 minute)", "sink", NULL) >= 0);
    mo.max_retries = 0;
    mo.on_failure = "sink";
    assert_true(faas_map(rt, "stream:bad", "fails", &mo) >= 0);

    ev = json_pack("{s:s, s:s, s:i, s:s}", "bucket", "b", "key", "k", "size", 1, "eTag", "e");
    assert_int_equal(faas_emit(rt, "s3:ObjectCreated:Put", ev), 1);
    json_decref(ev);
    ev = json_pack("{s:{s:{s:s}}}", "Keys", "id", "S", "1");
    assert_int_equal(faas_emit(rt, "dynamodb:INSERT", ev), 1);
    json_decref(ev);
    ev = json_pack("{s:s, s:s}", "partitionKey", "p", "data", "x");
    assert_int_equal(faas_emit(rt, "stream:orders", ev), 1);
    assert_int_equal(faas_emit(rt, "stream:bad", ev), 1);
    json_decref(ev);
    ev = json_pack("{s:s}", "body", "hi");
    assert_int_equal(faas_emit(rt, "queue:jobs", ev), 1);
    json_decref(ev);
    assert_int_equal(faas_invoke_async(rt, "fails", NULL, NULL, id), 0);
    tu_clock_advance(&clock, 61ull * 1000000000ull);
    faas_schedule_poll(rt);
    assert_true(tu_run_until_pred(base, sunk_count, &want_n, BOUND_MS));

    for (i = 0; i < json_array_size(g_sunk); i++) {
        json_t *e = json_array_get(g_sunk, i);
        json_t *recs = json_object_get(e, "Records");
        json_t *ctx = json_object_get(e, "requestContext");
        if (ctx) { /* a destination or on-failure record */
            assert_arn_region(json_string_value(json_object_get(ctx, "functionArn")), want);
            ndest++;
        } else if (recs) {
            json_t *r = json_array_get(recs, 0);
            const char *arn = json_string_value(json_object_get(r, "eventSourceARN"));
            assert_string_equal(json_string_value(json_object_get(r, "awsRegion")), want);
            if (arn)
                assert_arn_region(arn, want);
            nrec++;
        } else {
            assert_string_equal(json_string_value(json_object_get(e, "source")), "aws.events");
            assert_string_equal(json_string_value(json_object_get(e, "region")), want);
            assert_arn_region(json_string_value(json_array_get(json_object_get(e, "resources"),
                                                               0)),
                              want);
            nsched++;
        }
    }
    assert_int_equal(nrec, 4);
    assert_int_equal(ndest, 2);
    assert_int_equal(nsched, 1);
    faas_runtime_free(rt);
    event_base_free(base);
    json_decref(g_sunk);
    g_sunk = NULL;
}

static void test_region_one_value(void **state)
{
    (void)state;
    check_region(NULL, "local");
    check_region("", "local"); /* "" is the default too, everywhere */
    check_region("eu-west-1", "eu-west-1");
}

static void test_unregister_during_teardown(void **state)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    struct fx f;
    char id[FAAS_REQUEST_ID_SIZE];
    (void)state;

    fx_new(&f);
    memset(&g_un, 0, sizeof g_un);
    g_un.rt = f.rt;
    g_un.status = 1;
    g_un.unregister_rc = 1;
    fo.isolation = FAAS_ISOLATION_INLINE;
    ao.on_complete = unregister_next;
    ao.on_complete_arg = &g_un;
    fo.async = &ao;
    assert_int_equal(faas_register(f.rt, "a", h_nop, &fo), 0);
    fo.async = NULL;
    assert_int_equal(faas_register(f.rt, "b", h_nop, &fo), 0);
    assert_int_equal(faas_invoke_async(f.rt, "a", NULL, NULL, id), 0);
    assert_int_equal(g_un.completes, 0);
    fx_free(&f); /* the loop never ran: the event is still queued */
    assert_int_equal(g_un.completes, 1);
    assert_int_equal(g_un.status, FAAS_ECANCELED);
    assert_int_equal(g_un.unregister_rc, FAAS_ECANCELED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runtime_new_args),
        cmocka_unit_test(test_runtime_new_ok),
        cmocka_unit_test(test_register_names),
        cmocka_unit_test(test_register_duplicate),
        cmocka_unit_test(test_register_isolation),
        cmocka_unit_test(test_unregister),
        cmocka_unit_test_prestate(test_unregister_inflight, &tu_iso_inline),
        cmocka_unit_test_prestate(test_unregister_inflight, &tu_iso_thread),
        cmocka_unit_test(test_free_inflight_inline),
        cmocka_unit_test(test_free_inflight_thread),
        cmocka_unit_test(test_free_immediately_thread),
        cmocka_unit_test_prestate(test_free_in_callback, &tu_iso_inline),
        cmocka_unit_test_prestate(test_free_in_callback, &tu_iso_thread),
        cmocka_unit_test(test_many_functions),
        cmocka_unit_test(test_free_in_inline_prewarm_init),
        cmocka_unit_test(test_free_in_log_callback),
        cmocka_unit_test(test_unregister_during_teardown),
        cmocka_unit_test(test_region_one_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_invoke.c - request/response invocation: the result callback runs
 * exactly once and never inside faas_invoke(), admission errors, payloads
 * (null event, null result, handler errors, faas_ctx_fail, results too big),
 * request ids, faas_invoke_sync(). The main cases run for INLINE and THREAD.
 */
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

static void fx_new_opts(struct fx *f, size_t max_sync)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    o.thread_workers = 2;
    o.zygote = 0;
    if (max_sync)
        o.max_sync_payload = max_sync;
    tu_rt_new(&f->base, &f->rt, &o);
}

static void fx_new(struct fx *f)
{
    fx_new_opts(f, 0);
}

static void fx_free(struct fx *f)
{
    tu_rt_free(&f->rt, &f->base);
}

static void reg(struct fx *f, const char *name, faas_handler_fn fn, enum faas_isolation iso)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    o.isolation = iso;
    assert_int_equal(faas_register(f->rt, name, fn, &o), 0);
}

/* What a result callback saw; res is borrowed, so copy what we need. */
struct cap {
    int calls;
    int status;
    json_t *payload;
    char rid[FAAS_REQUEST_ID_SIZE];
    char fn[FAAS_NAME_MAX + 1];
    int has_etype, has_emsg;
    char etype[256];
    char emsg[256];
};

static void cap_cb(const struct faas_result *res, void *arg)
{
    struct cap *c = arg;
    const char *rid = faas_result_request_id(res);
    const char *fn = faas_result_function_name(res);
    const char *et = faas_result_error_type(res);
    const char *em = faas_result_error_message(res);
    c->calls++;
    c->status = faas_result_status(res);
    json_decref(c->payload);
    c->payload = json_incref(faas_result_payload(res));
    snprintf(c->rid, sizeof c->rid, "%s", rid ? rid : "");
    snprintf(c->fn, sizeof c->fn, "%s", fn ? fn : "");
    c->has_etype = et != NULL;
    c->has_emsg = em != NULL;
    snprintf(c->etype, sizeof c->etype, "%s", et ? et : "");
    snprintf(c->emsg, sizeof c->emsg, "%s", em ? em : "");
}

static void cap_clear(struct cap *c)
{
    json_decref(c->payload);
    memset(c, 0, sizeof *c);
}

static void invoke_wait(struct fx *f, const char *name, json_t *event, struct cap *c)
{
    assert_int_equal(faas_invoke(f->rt, name, event, NULL, cap_cb, c), 0);
    assert_int_equal(c->calls, 0);
    assert_true(tu_run_until(f->base, &c->calls, 1, BOUND_MS));
}

static int valid_request_id(const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (!s || strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!s[i] || !strchr(hex, s[i])) {
            return 0;
        }
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

static void assert_error_payload(const struct cap *c, const char *type, const char *msg)
{
    json_t *want = json_pack("{s:s, s:s}", "errorType", type, "errorMessage", msg);
    assert_non_null(want);
    assert_non_null(c->payload);
    if (!json_equal(c->payload, want)) {
        char *got = json_dumps(c->payload, JSON_COMPACT | JSON_ENCODE_ANY);
        print_error("payload %s, want errorType=%s errorMessage=%s\n", got ? got : "?", type,
                    msg);
        free(got);
        json_decref(want);
        fail();
    }
    json_decref(want);
    assert_int_equal(c->has_etype, 1);
    assert_string_equal(c->etype, type);
    assert_int_equal(c->has_emsg, 1);
    assert_string_equal(c->emsg, msg);
}

/* handlers */

static int g_calls;
static int g_fail_rc1;
static int g_fail_rc2;

static void reset_globals(void)
{
    ASTORE(&g_calls, 0);
    ASTORE(&g_fail_rc1, 0);
    ASTORE(&g_fail_rc2, 0);
}

static int h_echo(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    AINC(&g_calls);
    *result = json_deep_copy(event);
    return 0;
}

static int h_ok(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    AINC(&g_calls);
    *result = json_string("ok");
    return 0;
}

static int h_is_null(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    AINC(&g_calls);
    *result = json_boolean(event != NULL && json_is_null(event));
    return 0;
}

static int h_null_result(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    AINC(&g_calls);
    /* *result left as the runtime gave it: NULL. */
    if (*result != NULL)
        return 99;
    return 0;
}

static int h_return3(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    AINC(&g_calls);
    *result = json_string("discarded"); /* the runtime must free it */
    return 3;
}

static int h_return_neg(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    AINC(&g_calls);
    return -42;
}

static int h_fail(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    AINC(&g_calls);
    ASTORE(&g_fail_rc1, faas_ctx_fail(ctx, "MyError", "bad %d", 7));
    ASTORE(&g_fail_rc2, faas_ctx_fail(ctx, "Second", "ignored %s", "too"));
    *result = json_string("ignored");
    return 0; /* still fails: faas_ctx_fail wins */
}

static int h_fail_null_type(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    AINC(&g_calls);
    return faas_ctx_fail(ctx, NULL, "oops %s", "here");
}

static int h_big(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    size_t n = (size_t)json_integer_value(json_object_get(event, "n"));
    char *s = malloc(n + 1);
    AINC(&g_calls);
    if (!s)
        return 1;
    memset(s, 'y', n);
    s[n] = '\0';
    *result = json_string(s);
    free(s);
    return 0;
}

/* ------------------------------------------------------------------ */
/* exactly once, never inside faas_invoke                              */
/* ------------------------------------------------------------------ */

static void test_once_never_inside(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c[50];
    json_t *ev = json_pack("{s:i, s:[i,i,s]}", "a", 1, "b", 1, 2, "x");
    memset(c, 0, sizeof c);
    reset_globals();
    fx_new(&f);
    reg(&f, "echo", h_echo, iso);

    assert_int_equal(faas_invoke(f.rt, "echo", ev, NULL, cap_cb, &c[0]), 0);
    /* Not inside faas_invoke: neither the callback nor an INLINE handler. */
    assert_int_equal(c[0].calls, 0);
    if (iso == FAAS_ISOLATION_INLINE)
        assert_int_equal(ALOAD(&g_calls), 0);
    assert_true(tu_run_until(f.base, &c[0].calls, 1, BOUND_MS));
    tu_run_for(f.base, 30);
    assert_int_equal(c[0].calls, 1);
    assert_int_equal(ALOAD(&g_calls), 1);
    assert_int_equal(c[0].status, 0);
    assert_true(json_equal(c[0].payload, ev));
    assert_string_equal(c[0].fn, "echo");
    assert_true(valid_request_id(c[0].rid));
    assert_int_equal(c[0].has_etype, 0);
    assert_int_equal(c[0].has_emsg, 0);

    /* Many at once: each callback exactly once. */
    for (int i = 1; i < 50; i++) {
        assert_int_equal(faas_invoke(f.rt, "echo", ev, NULL, cap_cb, &c[i]), 0);
        assert_int_equal(c[i].calls, 0);
    }
    for (int i = 1; i < 50; i++)
        assert_true(tu_run_until(f.base, &c[i].calls, 1, BOUND_MS));
    tu_run_for(f.base, 30);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(c[i].calls, 1);
        assert_int_equal(c[i].status, 0);
        assert_true(json_equal(c[i].payload, ev));
        cap_clear(&c[i]);
    }
    assert_int_equal(ALOAD(&g_calls), 50);
    json_decref(ev);
    fx_free(&f);
}

/* The event is borrowed: the caller may drop its reference at once. */
static void test_event_borrowed(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    json_t *ev = json_pack("{s:s, s:i}", "k", "value", "n", 5);
    json_t *want = json_deep_copy(ev);
    reset_globals();
    fx_new(&f);
    reg(&f, "echo", h_echo, iso);
    assert_int_equal(faas_invoke(f.rt, "echo", ev, NULL, cap_cb, &c), 0);
    json_decref(ev);
    assert_true(tu_run_until(f.base, &c.calls, 1, BOUND_MS));
    assert_int_equal(c.status, 0);
    assert_true(json_equal(c.payload, want));
    cap_clear(&c);
    json_decref(want);
    fx_free(&f);
}

/* ------------------------------------------------------------------ */
/* admission errors                                                     */
/* ------------------------------------------------------------------ */

static void test_invoke_errors(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    json_t *big;
    char *s = malloc(2001);
    assert_non_null(s);
    memset(s, 'x', 2000);
    s[2000] = '\0';
    big = json_pack("{s:s}", "d", s);
    free(s);
    reset_globals();
    fx_new_opts(&f, 1024);
    reg(&f, "f", h_ok, iso);

    assert_int_equal(faas_invoke(f.rt, "missing", NULL, NULL, cap_cb, &c), FAAS_ENOENT);
    assert_int_equal(faas_invoke(NULL, "f", NULL, NULL, cap_cb, &c), FAAS_EINVAL);
    assert_int_equal(faas_invoke(f.rt, NULL, NULL, NULL, cap_cb, &c), FAAS_EINVAL);
    assert_int_equal(faas_invoke(f.rt, "f", NULL, NULL, NULL, &c), FAAS_EINVAL);
    io.version = 0;
    assert_int_equal(faas_invoke(f.rt, "f", NULL, &io, cap_cb, &c), FAAS_EINVAL);
    io.version = FAAS_INVOKE_OPTS_VERSION + 1;
    assert_int_equal(faas_invoke(f.rt, "f", NULL, &io, cap_cb, &c), FAAS_EINVAL);
    assert_int_equal(faas_invoke(f.rt, "f", big, NULL, cap_cb, &c), FAAS_ETOOBIG);

    /* None of them ever calls back or runs the handler. */
    tu_run_for(f.base, 50);
    assert_int_equal(c.calls, 0);
    assert_int_equal(ALOAD(&g_calls), 0);

    /* The runtime still works afterwards. */
    invoke_wait(&f, "f", NULL, &c);
    assert_int_equal(c.status, 0);
    assert_int_equal(ALOAD(&g_calls), 1);
    cap_clear(&c);

    /* Stats count only results. */
    {
        struct faas_stats st;
        assert_int_equal(faas_stats(f.rt, "f", &st), 0);
        assert_int_equal(st.invocations, 1);
        assert_int_equal(st.errors, 0);
    }
    json_decref(big);
    fx_free(&f);
}

/* The limit is on the compact serialisation: {"d":"<n x>"} is n + 8 bytes;
 * exactly the limit passes, one byte over is refused. */
static void test_payload_limit_boundary(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    char s[1100];
    json_t *at, *over;
    reset_globals();
    memset(s, 'x', 1016);
    s[1016] = '\0';
    at = json_pack("{s:s}", "d", s);
    s[1016] = 'x';
    s[1017] = '\0';
    over = json_pack("{s:s}", "d", s);
    fx_new_opts(&f, 1024);
    reg(&f, "echo", h_echo, iso);

    assert_int_equal(faas_invoke(f.rt, "echo", over, NULL, cap_cb, &c), FAAS_ETOOBIG);
    invoke_wait(&f, "echo", at, &c);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, 0);
    assert_true(json_equal(c.payload, at));
    assert_int_equal(ALOAD(&g_calls), 1);
    cap_clear(&c);
    json_decref(at);
    json_decref(over);
    fx_free(&f);
}

/* ------------------------------------------------------------------ */
/* payloads                                                             */
/* ------------------------------------------------------------------ */

static void test_null_event(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    json_t *jnull = json_null();
    reset_globals();
    fx_new(&f);
    reg(&f, "isnull", h_is_null, iso);

    invoke_wait(&f, "isnull", NULL, &c);
    assert_int_equal(c.status, 0);
    assert_true(json_is_true(c.payload));
    cap_clear(&c);

    invoke_wait(&f, "isnull", jnull, &c);
    assert_int_equal(c.status, 0);
    assert_true(json_is_true(c.payload));
    cap_clear(&c);

    {
        json_t *obj = json_object();
        invoke_wait(&f, "isnull", obj, &c);
        assert_int_equal(c.status, 0);
        assert_true(json_is_false(c.payload));
        cap_clear(&c);
        json_decref(obj);
    }
    json_decref(jnull);
    fx_free(&f);
}

static void test_null_result(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    reset_globals();
    fx_new(&f);
    reg(&f, "nul", h_null_result, iso);
    invoke_wait(&f, "nul", NULL, &c);
    assert_int_equal(c.status, 0);
    assert_non_null(c.payload);
    assert_true(json_is_null(c.payload));
    assert_int_equal(c.has_etype, 0);
    assert_int_equal(c.has_emsg, 0);
    assert_int_equal(ALOAD(&g_calls), 1);
    cap_clear(&c);
    fx_free(&f);
}

static void test_handler_error(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    reset_globals();
    fx_new(&f);
    reg(&f, "three", h_return3, iso);
    reg(&f, "neg", h_return_neg, iso);

    invoke_wait(&f, "three", NULL, &c);
    assert_int_equal(c.status, FAAS_EHANDLER);
    assert_error_payload(&c, "Runtime.HandlerError", "handler returned 3");
    cap_clear(&c);

    invoke_wait(&f, "neg", NULL, &c);
    assert_int_equal(c.status, FAAS_EHANDLER);
    assert_error_payload(&c, "Runtime.HandlerError", "handler returned -42");
    cap_clear(&c);

    tu_run_for(f.base, 20);
    assert_int_equal(ALOAD(&g_calls), 2);
    {
        struct faas_stats st;
        assert_int_equal(faas_stats(f.rt, "three", &st), 0);
        assert_int_equal(st.invocations, 1);
        assert_int_equal(st.errors, 1);
    }
    fx_free(&f);
}

static void test_ctx_fail(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    reset_globals();
    fx_new(&f);
    reg(&f, "fail", h_fail, iso);
    reg(&f, "failnull", h_fail_null_type, iso);

    invoke_wait(&f, "fail", NULL, &c);
    assert_int_equal(c.status, FAAS_EHANDLER);
    assert_error_payload(&c, "MyError", "bad 7");
    assert_int_equal(ALOAD(&g_fail_rc1), FAAS_EHANDLER);
    assert_int_equal(ALOAD(&g_fail_rc2), FAAS_EHANDLER);
    cap_clear(&c);

    invoke_wait(&f, "failnull", NULL, &c);
    assert_int_equal(c.status, FAAS_EHANDLER);
    assert_error_payload(&c, "Error", "oops here");
    cap_clear(&c);
    fx_free(&f);
}

static void test_result_too_big(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    json_t *ev_big = json_pack("{s:i}", "n", 2000);
    json_t *ev_small = json_pack("{s:i}", "n", 500);
    reset_globals();
    fx_new_opts(&f, 1024);
    reg(&f, "big", h_big, iso);

    invoke_wait(&f, "big", ev_big, &c);
    assert_int_equal(c.status, FAAS_ETOOBIG);
    assert_int_equal(c.has_etype, 1);
    assert_string_equal(c.etype, "Function.ResponseSizeTooLarge");
    assert_true(json_is_object(c.payload));
    assert_string_equal(json_string_value(json_object_get(c.payload, "errorType")),
                        "Function.ResponseSizeTooLarge");
    assert_true(json_is_string(json_object_get(c.payload, "errorMessage")));
    assert_int_equal(c.has_emsg, 1);
    assert_true(strlen(c.emsg) > 0);
    cap_clear(&c);

    /* Under the limit it passes. */
    invoke_wait(&f, "big", ev_small, &c);
    assert_int_equal(c.status, 0);
    assert_true(json_is_string(c.payload));
    assert_int_equal(json_string_length(c.payload), 500);
    cap_clear(&c);
    {
        struct faas_stats st;
        assert_int_equal(faas_stats(f.rt, "big", &st), 0);
        assert_int_equal(st.invocations, 2);
        assert_int_equal(st.errors, 1);
    }
    json_decref(ev_big);
    json_decref(ev_small);
    fx_free(&f);
}

/* ------------------------------------------------------------------ */
/* request ids                                                          */
/* ------------------------------------------------------------------ */

struct ids {
    int calls;
    int bad;
    char (*id)[FAAS_REQUEST_ID_SIZE];
};

static void ids_cb(const struct faas_result *res, void *arg)
{
    struct ids *s = arg;
    const char *rid = faas_result_request_id(res);
    if (faas_result_status(res) != 0 || !valid_request_id(rid))
        s->bad++;
    snprintf(s->id[s->calls], FAAS_REQUEST_ID_SIZE, "%s", rid ? rid : "");
    s->calls++;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_request_ids(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    int n = iso == FAAS_ISOLATION_INLINE ? 10000 : 3000;
    struct fx f;
    struct ids s;
    memset(&s, 0, sizeof s);
    s.id = calloc((size_t)n, sizeof *s.id);
    assert_non_null(s.id);
    reset_globals();
    fx_new(&f);
    reg(&f, "f", h_ok, iso);
    for (int i = 0; i < n; i++)
        assert_int_equal(faas_invoke(f.rt, "f", NULL, NULL, ids_cb, &s), 0);
    assert_int_equal(s.calls, 0);
    assert_true(tu_run_until(f.base, &s.calls, n, 20000));
    tu_run_for(f.base, 20);
    assert_int_equal(s.calls, n);
    assert_int_equal(s.bad, 0);
    qsort(s.id, (size_t)n, sizeof *s.id, cmp_id);
    for (int i = 1; i < n; i++) {
        if (strcmp(s.id[i - 1], s.id[i]) == 0) {
            print_error("duplicate request id %s\n", s.id[i]);
            fail();
        }
    }
    /* The format check itself rejects what it should. */
    assert_true(valid_request_id("3f2504e0-4f89-41d3-9a0c-0305e82c3301"));
    assert_false(valid_request_id("3f2504e0-4f89-31d3-9a0c-0305e82c3301"));
    assert_false(valid_request_id("3f2504e0-4f89-41d3-7a0c-0305e82c3301"));
    assert_false(valid_request_id("3F2504E0-4F89-41D3-9A0C-0305E82C3301"));
    free(s.id);
    fx_free(&f);
}

/* ------------------------------------------------------------------ */
/* faas_invoke_sync                                                     */
/* ------------------------------------------------------------------ */

static void test_invoke_sync(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct faas_result *res = NULL;
    json_t *ev = json_pack("{s:s}", "hello", "world");
    reset_globals();
    fx_new(&f);
    reg(&f, "echo", h_echo, iso);
    reg(&f, "three", h_return3, iso);

    assert_int_equal(faas_invoke_sync(f.rt, "echo", ev, NULL, &res), 0);
    assert_non_null(res);
    assert_int_equal(faas_result_status(res), 0);
    assert_true(json_equal(faas_result_payload(res), ev));
    assert_string_equal(faas_result_function_name(res), "echo");
    assert_true(valid_request_id(faas_result_request_id(res)));
    assert_null(faas_result_error_type(res));
    assert_null(faas_result_error_message(res));
    faas_result_free(res);
    res = NULL;

    /* An error result is still a result: the call succeeds. */
    assert_int_equal(faas_invoke_sync(f.rt, "three", NULL, NULL, &res), 0);
    assert_non_null(res);
    assert_int_equal(faas_result_status(res), FAAS_EHANDLER);
    assert_string_equal(faas_result_error_type(res), "Runtime.HandlerError");
    assert_string_equal(faas_result_error_message(res), "handler returned 3");
    faas_result_free(res);
    res = NULL;

    /* Admission errors come back as the return code, no result. */
    assert_int_equal(faas_invoke_sync(f.rt, "missing", NULL, NULL, &res), FAAS_ENOENT);
    assert_null(res);
    assert_int_equal(faas_invoke_sync(NULL, "echo", NULL, NULL, &res), FAAS_EINVAL);
    assert_null(res);
    assert_int_equal(faas_invoke_sync(f.rt, NULL, NULL, NULL, &res), FAAS_EINVAL);
    assert_null(res);

    /* The payload can outlive the result with an incref. */
    assert_int_equal(faas_invoke_sync(f.rt, "echo", ev, NULL, &res), 0);
    {
        json_t *p = json_incref(faas_result_payload(res));
        faas_result_free(res);
        res = NULL;
        assert_true(json_equal(p, ev));
        json_decref(p);
    }
    faas_result_free(NULL); /* a no-op */
    assert_int_equal(ALOAD(&g_calls), 3);
    json_decref(ev);
    fx_free(&f);
}

/* A sync result belongs to the caller: it outlives its function and its
 * runtime. */
static void test_sync_result_outlives_runtime(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct faas_result *res = NULL;
    char rid[FAAS_REQUEST_ID_SIZE];
    char line[512];
    reset_globals();
    fx_new(&f);
    reg(&f, "three", h_return3, iso);
    assert_int_equal(faas_invoke_sync(f.rt, "three", NULL, NULL, &res), 0);
    assert_non_null(res);
    snprintf(rid, sizeof rid, "%s", faas_result_request_id(res));
    assert_int_equal(faas_unregister(f.rt, "three"), 0);
    fx_free(&f);
    assert_int_equal(faas_result_status(res), FAAS_EHANDLER);
    assert_string_equal(faas_result_function_name(res), "three");
    assert_string_equal(faas_result_request_id(res), rid);
    assert_string_equal(faas_result_error_type(res), "Runtime.HandlerError");
    assert_string_equal(faas_result_error_message(res), "handler returned 3");
    assert_true(faas_result_report(res, line, sizeof line) > 0);
    assert_non_null(strstr(line, rid));
    faas_result_free(res);
}

struct busy {
    struct faas_runtime *rt;
    int calls;
    int rc;
    struct faas_result *res;
};

static void busy_cb(const struct faas_result *res, void *arg)
{
    struct busy *b = arg;
    (void)res;
    b->calls++;
    b->res = NULL;
    b->rc = faas_invoke_sync(b->rt, "g", NULL, NULL, &b->res);
}

static void test_sync_ebusy_in_callback(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct busy b;
    memset(&b, 0, sizeof b);
    reset_globals();
    fx_new(&f);
    b.rt = f.rt;
    reg(&f, "f", h_ok, iso);
    reg(&f, "g", h_ok, iso);
    assert_int_equal(faas_invoke(f.rt, "f", NULL, NULL, busy_cb, &b), 0);
    assert_true(tu_run_until(f.base, &b.calls, 1, BOUND_MS));
    tu_run_for(f.base, 30);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.rc, FAAS_EBUSY);
    assert_null(b.res);
    /* "g" never ran: only "f"'s handler did. */
    assert_int_equal(ALOAD(&g_calls), 1);
    fx_free(&f);
}

static void busy_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct busy *b = arg;
    (void)fd;
    (void)what;
    b->calls++;
    b->res = NULL;
    b->rc = faas_invoke_sync(b->rt, "g", NULL, NULL, &b->res);
}

/* Any loop callback, not only libfaas' own. */
static void test_sync_ebusy_in_loop_callback(void **state)
{
    (void)state;
    struct fx f;
    struct busy b;
    struct timeval tv = { 0, 0 };
    memset(&b, 0, sizeof b);
    reset_globals();
    fx_new(&f);
    b.rt = f.rt;
    reg(&f, "g", h_ok, FAAS_ISOLATION_INLINE);
    assert_int_equal(event_base_once(f.base, -1, EV_TIMEOUT, busy_timer_cb, &b, &tv), 0);
    assert_true(tu_run_until(f.base, &b.calls, 1, BOUND_MS));
    assert_int_equal(b.rc, FAAS_EBUSY);
    assert_null(b.res);
    tu_run_for(f.base, 20);
    assert_int_equal(ALOAD(&g_calls), 0);
    fx_free(&f);
}

/* ------------------------------------------------------------------ */
/* review regressions                                                   */
/* ------------------------------------------------------------------ */

struct sync_free {
    struct faas_runtime *rt;
    int calls;
    int status;
};

static void sync_free_cb(const struct faas_result *res, void *arg)
{
    struct sync_free *s = arg;
    s->calls++;
    s->status = faas_result_status(res);
    faas_runtime_free(s->rt);
}

/*
 * Review r1: faas_invoke_sync's busy probe (one non-blocking pass of the
 * loop) runs a pending INLINE invocation whose result callback frees the
 * runtime. The call must return FAAS_ECANCELED without reading the freed
 * runtime (ASan and valgrind report the use after free otherwise).
 */
static void test_sync_after_callback_frees_runtime(void **state)
{
    (void)state;
    struct fx f;
    struct sync_free s;
    struct faas_result *res = NULL;
    memset(&s, 0, sizeof s);
    reset_globals();
    fx_new(&f);
    s.rt = f.rt;
    reg(&f, "f", h_ok, FAAS_ISOLATION_INLINE);
    assert_int_equal(faas_invoke(f.rt, "f", NULL, NULL, sync_free_cb, &s), 0);
    assert_int_equal(s.calls, 0);

    assert_int_equal(faas_invoke_sync(f.rt, "f", NULL, NULL, &res), FAAS_ECANCELED);
    assert_null(res);
    /* the pending invocation completed, once, inside the probe pass */
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, 0);
    /* the sync call invoked nothing */
    assert_int_equal(ALOAD(&g_calls), 1);
    tu_run_for(f.base, 20);
    assert_int_equal(s.calls, 1);
    /* the runtime is gone: only the base is left */
    f.rt = NULL;
    event_base_free(f.base);
}

static struct faas_runtime *g_self_rt;
static int g_self_unreg_rc;

/* Unregisters its own function, then returns a result that must not count. */
static int h_unreg_self(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    AINC(&g_calls);
    ASTORE(&g_self_unreg_rc, faas_unregister(g_self_rt, faas_ctx_function_name(ctx)));
    *result = json_string("real");
    return 0;
}

/*
 * Review r7: an INLINE handler that unregisters its own function is a
 * running invocation of an unregistered function: it completes with
 * FAAS_ECANCELED, like any other, not with the handler's result.
 */
static void test_inline_handler_unregisters_itself(void **state)
{
    (void)state;
    struct fx f;
    struct cap c;
    struct faas_stats st;
    memset(&c, 0, sizeof c);
    reset_globals();
    fx_new(&f);
    g_self_rt = f.rt;
    ASTORE(&g_self_unreg_rc, 1);
    reg(&f, "self", h_unreg_self, FAAS_ISOLATION_INLINE);
    reg(&f, "other", h_ok, FAAS_ISOLATION_INLINE);

    assert_int_equal(faas_invoke(f.rt, "self", NULL, NULL, cap_cb, &c), 0);
    assert_int_equal(c.calls, 0);
    assert_true(tu_run_until(f.base, &c.calls, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_calls), 1);
    assert_int_equal(ALOAD(&g_self_unreg_rc), 0);
    assert_int_equal(c.status, FAAS_ECANCELED);
    assert_string_equal(c.etype, "Runtime.Canceled");
    assert_string_equal(c.emsg, "the function was unregistered");
    assert_error_payload(&c, "Runtime.Canceled", "the function was unregistered");
    assert_string_equal(c.fn, "self");
    tu_run_for(f.base, 20);
    assert_int_equal(c.calls, 1);

    /* it is gone; the other function is untouched */
    assert_int_equal(faas_stats(f.rt, "self", &st), FAAS_ENOENT);
    assert_int_equal(faas_invoke(f.rt, "self", NULL, NULL, cap_cb, &c), FAAS_ENOENT);
    cap_clear(&c);
    invoke_wait(&f, "other", NULL, &c);
    assert_int_equal(c.status, 0);
    assert_string_equal(json_string_value(c.payload), "ok");
    assert_int_equal(ALOAD(&g_calls), 2);
    cap_clear(&c);
    g_self_rt = NULL;
    fx_free(&f);
}

#define BOTH(t) cmocka_unit_test_prestate(t, &tu_iso_inline), cmocka_unit_test_prestate(t, &tu_iso_thread)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_once_never_inside),
        BOTH(test_event_borrowed),
        BOTH(test_invoke_errors),
        BOTH(test_payload_limit_boundary),
        BOTH(test_null_event),
        BOTH(test_null_result),
        BOTH(test_handler_error),
        BOTH(test_ctx_fail),
        BOTH(test_result_too_big),
        BOTH(test_request_ids),
        BOTH(test_invoke_sync),
        BOTH(test_sync_result_outlives_runtime),
        BOTH(test_sync_ebusy_in_callback),
        cmocka_unit_test(test_sync_ebusy_in_loop_callback),
        cmocka_unit_test(test_sync_after_callback_frees_runtime),
        cmocka_unit_test(test_inline_handler_unregisters_itself),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

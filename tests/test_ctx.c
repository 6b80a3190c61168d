/*
 * test_ctx.c - the context handed to handlers: every faas_ctx_* accessor
 * observed from inside INLINE and THREAD handlers, faas_ctx_log lines
 * reaching the runtime's log callback, in order, before the REPORT record,
 * one record a call with control characters escaped, the bounds on what an
 * invocation keeps (lines, error type and message), log text cut at a
 * bound that stays valid UTF-8, and strings holding NUL through a
 * handler.
 */
#include "testutil.h"
#include "faas_int.h"

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

static void fx_new_log(struct fx *f, faas_log_fn log, void *log_arg)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    o.thread_workers = 2;
    o.zygote = 0;
    o.log = log;
    o.log_arg = log_arg;
    tu_rt_new(&f->base, &f->rt, &o);
}

static void fx_new(struct fx *f)
{
    fx_new_log(f, NULL, NULL);
}

static void fx_free(struct fx *f)
{
    tu_rt_free(&f->rt, &f->base);
}

struct cap {
    int calls;
    int status;
    json_t *payload;
    char rid[FAAS_REQUEST_ID_SIZE];
    int logs_at_cb; /* log records seen when the result callback ran */
    int *log_count;
};

static void cap_cb(const struct faas_result *res, void *arg)
{
    struct cap *c = arg;
    const char *rid = faas_result_request_id(res);
    c->calls++;
    c->status = faas_result_status(res);
    json_decref(c->payload);
    c->payload = json_incref(faas_result_payload(res));
    snprintf(c->rid, sizeof c->rid, "%s", rid ? rid : "");
    c->logs_at_cb = c->log_count ? *c->log_count : -1;
}

static void cap_clear(struct cap *c)
{
    json_decref(c->payload);
    memset(c, 0, sizeof *c);
}

static void invoke_wait(struct fx *f, const char *name, json_t *event,
                        const struct faas_invoke_opts *io, struct cap *c)
{
    assert_int_equal(faas_invoke(f->rt, name, event, io, cap_cb, c), 0);
    assert_int_equal(c->calls, 0);
    assert_true(tu_run_until(f->base, &c->calls, 1, BOUND_MS));
}

/* What a handler saw. Written by the handler (maybe on a worker thread),
 * read by the test after the result callback ran. */
struct obs {
    int ran;
    char rid[FAAS_REQUEST_ID_SIZE];
    char fn[FAAS_NAME_MAX + 1];
    uint32_t mem;
    int has_trace;
    char trace[256];
    int has_cc;
    char cc[512];
    int64_t remaining;
    void *state;
    int state_value;
    int cancelled;
};

static struct obs g_obs;
static int g_inits;
static int g_finis;
static int g_init_state_value;

static void reset_globals(void)
{
    memset(&g_obs, 0, sizeof g_obs);
    ASTORE(&g_inits, 0);
    ASTORE(&g_finis, 0);
    ASTORE(&g_init_state_value, 42);
}

static int h_observe(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *rid = faas_ctx_request_id(ctx);
    const char *fn = faas_ctx_function_name(ctx);
    const char *trace = faas_ctx_trace_id(ctx);
    json_t *cc = faas_ctx_client_context(ctx);
    (void)event;
    g_obs.ran++;
    snprintf(g_obs.rid, sizeof g_obs.rid, "%s", rid ? rid : "(null)");
    snprintf(g_obs.fn, sizeof g_obs.fn, "%s", fn ? fn : "(null)");
    g_obs.mem = faas_ctx_memory_limit_mb(ctx);
    g_obs.has_trace = trace != NULL;
    snprintf(g_obs.trace, sizeof g_obs.trace, "%s", trace ? trace : "");
    g_obs.has_cc = cc != NULL;
    if (cc) {
        char *s = json_dumps(cc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        snprintf(g_obs.cc, sizeof g_obs.cc, "%s", s ? s : "");
        free(s);
    }
    g_obs.remaining = faas_ctx_remaining_ms(ctx);
    g_obs.state = faas_ctx_state(ctx);
    g_obs.state_value = g_obs.state ? *(int *)g_obs.state : -1;
    g_obs.cancelled = faas_ctx_cancelled(ctx);
    *result = json_string(rid ? rid : "");
    return 0;
}

static int init_state(struct faas_ctx *ctx, void **state)
{
    int *p = malloc(sizeof *p);
    (void)ctx;
    if (!p)
        return 1;
    *p = ALOAD(&g_init_state_value);
    *state = p;
    AINC(&g_inits);
    return 0;
}

static void fini_state(void *state)
{
    if (state)
        AINC(&g_finis);
    free(state);
}

static void reg(struct fx *f, const char *name, enum faas_isolation iso, uint32_t timeout_ms,
                uint32_t memory_mb, faas_init_fn init)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    o.isolation = iso;
    o.timeout_ms = timeout_ms;
    o.memory_mb = memory_mb;
    o.init = init;
    o.fini = init ? fini_state : NULL;
    assert_int_equal(faas_register(f->rt, name, h_observe, &o), 0);
}

/* ------------------------------------------------------------------ */
/* accessors                                                            */
/* ------------------------------------------------------------------ */

static void test_ctx_defaults(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    reset_globals();
    fx_new(&f);
    reg(&f, "ctxfn", iso, 3000, 256, NULL);

    invoke_wait(&f, "ctxfn", NULL, NULL, &c);
    assert_int_equal(c.status, 0);
    assert_int_equal(g_obs.ran, 1);
    /* The request id the handler saw is the result's. */
    assert_string_equal(g_obs.rid, c.rid);
    assert_int_equal(strlen(c.rid), 36);
    assert_string_equal(json_string_value(c.payload), c.rid);
    assert_string_equal(g_obs.fn, "ctxfn");
    assert_int_equal(g_obs.mem, 256);
    assert_int_equal(g_obs.has_trace, 0);
    assert_int_equal(g_obs.has_cc, 0);
    assert_true(g_obs.remaining > 1500);
    assert_true(g_obs.remaining <= 3000);
    assert_null(g_obs.state);
    assert_int_equal(g_obs.cancelled, 0);
    cap_clear(&c);

    /* A second invocation has its own request id. */
    {
        char first[FAAS_REQUEST_ID_SIZE];
        snprintf(first, sizeof first, "%s", g_obs.rid);
        invoke_wait(&f, "ctxfn", NULL, NULL, &c);
        assert_int_equal(g_obs.ran, 2);
        assert_string_equal(g_obs.rid, c.rid);
        assert_string_not_equal(g_obs.rid, first);
        cap_clear(&c);
    }
    fx_free(&f);
}

static void test_ctx_default_memory(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    reset_globals();
    fx_new(&f);
    o.isolation = iso;
    assert_int_equal(faas_register(f.rt, "m", h_observe, &o), 0);
    invoke_wait(&f, "m", NULL, NULL, &c);
    assert_int_equal(c.status, 0);
    assert_int_equal(g_obs.mem, 128);
    assert_true(g_obs.remaining > 1500 && g_obs.remaining <= 3000);
    cap_clear(&c);
    fx_free(&f);
}

static void test_ctx_invoke_opts(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    char trace[128];
    json_t *cc = json_pack("{s:{s:s}, s:{s:s, s:i}}", "client", "app_title", "t", "custom",
                           "k", "v", "n", 3);
    char *cc_text = json_dumps(cc, JSON_COMPACT | JSON_SORT_KEYS);
    reset_globals();
    fx_new(&f);
    reg(&f, "opt", iso, 3000, 128, NULL);

    snprintf(trace, sizeof trace, "%s", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1");
    io.trace_id = trace;
    io.client_context = cc;
    io.timeout_ms = 500;
    assert_int_equal(faas_invoke(f.rt, "opt", NULL, &io, cap_cb, &c), 0);
    /* The trace id is copied: the caller's buffer may change now. */
    memset(trace, 'Z', sizeof trace - 1);
    trace[sizeof trace - 1] = '\0';
    assert_true(tu_run_until(f.base, &c.calls, 1, BOUND_MS));
    assert_int_equal(c.status, 0);
    assert_int_equal(g_obs.has_trace, 1);
    assert_string_equal(g_obs.trace, "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1");
    assert_int_equal(g_obs.has_cc, 1);
    assert_string_equal(g_obs.cc, cc_text);
    /* The shortened deadline. */
    assert_true(g_obs.remaining > 250);
    assert_true(g_obs.remaining <= 500);
    assert_int_equal(g_obs.cancelled, 0);
    cap_clear(&c);

    /* Without them again: NULLs, the function's timeout. */
    invoke_wait(&f, "opt", NULL, NULL, &c);
    assert_int_equal(g_obs.has_trace, 0);
    assert_int_equal(g_obs.has_cc, 0);
    assert_true(g_obs.remaining > 500);
    cap_clear(&c);

    free(cc_text);
    json_decref(cc);
    fx_free(&f);
}

static void test_ctx_timeout_never_lengthens(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    reset_globals();
    fx_new(&f);
    reg(&f, "t", iso, 1000, 128, NULL);
    io.timeout_ms = 60000;
    invoke_wait(&f, "t", NULL, &io, &c);
    assert_int_equal(c.status, 0);
    assert_true(g_obs.remaining > 500);
    assert_true(g_obs.remaining <= 1000);
    cap_clear(&c);

    /* timeout_ms 0 in the invoke opts means the function's. */
    io.timeout_ms = 0;
    invoke_wait(&f, "t", NULL, &io, &c);
    assert_true(g_obs.remaining > 500);
    assert_true(g_obs.remaining <= 1000);
    cap_clear(&c);
    fx_free(&f);
}

static void test_ctx_no_timeout(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    reset_globals();
    fx_new(&f);
    reg(&f, "forever", iso, 0, 128, NULL);
    invoke_wait(&f, "forever", NULL, NULL, &c);
    assert_int_equal(c.status, 0);
    assert_true(g_obs.remaining == INT64_MAX);
    cap_clear(&c);

    io.timeout_ms = 0;
    invoke_wait(&f, "forever", NULL, &io, &c);
    assert_int_equal(c.status, 0);
    assert_true(g_obs.remaining == INT64_MAX);
    cap_clear(&c);
    fx_free(&f);
}

static void test_ctx_state(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    void *first;
    reset_globals();
    fx_new(&f);
    reg(&f, "st", iso, 3000, 128, init_state);
    reg(&f, "nostate", iso, 3000, 128, NULL);

    invoke_wait(&f, "st", NULL, NULL, &c);
    assert_int_equal(c.status, 0);
    assert_non_null(g_obs.state);
    assert_int_equal(g_obs.state_value, 42);
    assert_int_equal(ALOAD(&g_inits), 1);
    first = g_obs.state;
    cap_clear(&c);

    /* Warm: the same instance, the same state, no second init. */
    invoke_wait(&f, "st", NULL, NULL, &c);
    assert_int_equal(c.status, 0);
    assert_ptr_equal(g_obs.state, first);
    assert_int_equal(g_obs.state_value, 42);
    assert_int_equal(ALOAD(&g_inits), 1);
    cap_clear(&c);

    invoke_wait(&f, "nostate", NULL, NULL, &c);
    assert_int_equal(c.status, 0);
    assert_null(g_obs.state);
    cap_clear(&c);

    assert_int_equal(ALOAD(&g_finis), 0);
    fx_free(&f);
    /* fini ran once for the one instance init made. */
    assert_int_equal(ALOAD(&g_finis), 1);
}

/* ------------------------------------------------------------------ */
/* faas_ctx_log                                                         */
/* ------------------------------------------------------------------ */

#define MAX_RECS 64

struct rec {
    enum faas_log_kind kind;
    char function[FAAS_NAME_MAX + 1];
    char rid[FAAS_REQUEST_ID_SIZE];
    char *line;
    int has_result;
    char result_rid[FAAS_REQUEST_ID_SIZE];
    int result_status;
};

struct logs {
    int n;
    int overflow;
    struct rec r[MAX_RECS];
};

static void log_cb(const struct faas_log_record *rec, void *arg)
{
    struct logs *l = arg;
    struct rec *r;
    if (l->n >= MAX_RECS) {
        l->overflow++;
        return;
    }
    r = &l->r[l->n];
    memset(r, 0, sizeof *r);
    r->kind = rec->kind;
    snprintf(r->function, sizeof r->function, "%s", rec->function ? rec->function : "(null)");
    snprintf(r->rid, sizeof r->rid, "%s", rec->request_id ? rec->request_id : "(null)");
    if (rec->kind == FAAS_LOG_LINE && rec->line)
        r->line = strdup(rec->line);
    if (rec->kind == FAAS_LOG_REPORT && rec->result) {
        const char *rr = faas_result_request_id(rec->result);
        r->has_result = 1;
        snprintf(r->result_rid, sizeof r->result_rid, "%s", rr ? rr : "");
        r->result_status = faas_result_status(rec->result);
    }
    l->n++;
}

static void logs_clear(struct logs *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->r[i].line);
    memset(l, 0, sizeof *l);
}

static int h_log3(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *tag = json_string_value(json_object_get(event, "tag"));
    for (int i = 0; i < 3; i++)
        faas_ctx_log(ctx, "%s line %d", tag ? tag : "?", i);
    *result = json_string(faas_ctx_request_id(ctx));
    return 0;
}

static int h_log_fail(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    faas_ctx_log(ctx, "about to fail");
    return faas_ctx_fail(ctx, "Boom", "failed");
}

static int h_log_long(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    char *s = malloc(6001);
    (void)event;
    (void)result;
    if (!s)
        return 1;
    memset(s, 'L', 6000);
    s[6000] = '\0';
    faas_ctx_log(ctx, "%s", s);
    free(s);
    return 0;
}

/* Checks, for one request id, the records: LINE "<tag> line 0..2" in
 * order, then REPORT, then nothing more for that id. */
static void check_invocation_logs(const struct logs *l, const char *rid, const char *fn,
                                  const char *tag)
{
    int lines = 0, report_at = -1;
    for (int i = 0; i < l->n; i++) {
        const struct rec *r = &l->r[i];
        if (strcmp(r->rid, rid) != 0)
            continue;
        assert_string_equal(r->function, fn);
        assert_int_equal(report_at, -1); /* nothing after the REPORT */
        if (r->kind == FAAS_LOG_LINE) {
            char want[64];
            snprintf(want, sizeof want, "%s line %d", tag, lines);
            assert_non_null(r->line);
            assert_string_equal(r->line, want);
            lines++;
        } else {
            assert_int_equal(r->kind, FAAS_LOG_REPORT);
            assert_int_equal(r->has_result, 1);
            assert_string_equal(r->result_rid, rid);
            report_at = i;
        }
    }
    assert_int_equal(lines, 3);
    assert_true(report_at >= 0);
}

static void test_ctx_log(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct logs l;
    struct cap c = { 0 };
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    json_t *ev = json_pack("{s:s}", "tag", "a");
    memset(&l, 0, sizeof l);
    fx_new_log(&f, log_cb, &l);
    o.isolation = iso;
    assert_int_equal(faas_register(f.rt, "logger", h_log3, &o), 0);

    c.log_count = &l.n;
    invoke_wait(&f, "logger", ev, NULL, &c);
    assert_int_equal(c.status, 0);
    /* All four records arrived before the result callback. */
    assert_int_equal(c.logs_at_cb, 4);
    assert_int_equal(l.n, 4);
    for (int i = 0; i < 3; i++)
        assert_int_equal(l.r[i].kind, FAAS_LOG_LINE);
    assert_int_equal(l.r[3].kind, FAAS_LOG_REPORT);
    assert_int_equal(l.r[3].result_status, 0);
    check_invocation_logs(&l, c.rid, "logger", "a");
    tu_run_for(f.base, 20);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.overflow, 0);
    cap_clear(&c);
    logs_clear(&l);

    /* Two invocations at once: each one's lines are tagged with its own
     * id, in order, before its own REPORT. */
    {
        struct cap c2 = { 0 };
        json_t *ev2 = json_pack("{s:s}", "tag", "b");
        c.log_count = &l.n;
        c2.log_count = &l.n;
        assert_int_equal(faas_invoke(f.rt, "logger", ev, NULL, cap_cb, &c), 0);
        assert_int_equal(faas_invoke(f.rt, "logger", ev2, NULL, cap_cb, &c2), 0);
        assert_true(tu_run_until(f.base, &c.calls, 1, BOUND_MS));
        assert_true(tu_run_until(f.base, &c2.calls, 1, BOUND_MS));
        assert_int_equal(l.n, 8);
        assert_string_not_equal(c.rid, c2.rid);
        check_invocation_logs(&l, c.rid, "logger", "a");
        check_invocation_logs(&l, c2.rid, "logger", "b");
        assert_true(c.logs_at_cb >= 4);
        assert_true(c2.logs_at_cb >= 4);
        cap_clear(&c);
        cap_clear(&c2);
        logs_clear(&l);
        json_decref(ev2);
    }
    json_decref(ev);
    fx_free(&f);
}

static void test_ctx_log_failure_and_long(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct logs l;
    struct cap c = { 0 };
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    memset(&l, 0, sizeof l);
    fx_new_log(&f, log_cb, &l);
    o.isolation = iso;
    assert_int_equal(faas_register(f.rt, "failer", h_log_fail, &o), 0);
    assert_int_equal(faas_register(f.rt, "longer", h_log_long, &o), 0);

    c.log_count = &l.n;
    invoke_wait(&f, "failer", NULL, NULL, &c);
    assert_int_equal(c.status, FAAS_EHANDLER);
    assert_int_equal(c.logs_at_cb, 2);
    assert_int_equal(l.r[0].kind, FAAS_LOG_LINE);
    assert_string_equal(l.r[0].line, "about to fail");
    assert_string_equal(l.r[0].rid, c.rid);
    assert_string_equal(l.r[0].function, "failer");
    assert_int_equal(l.r[1].kind, FAAS_LOG_REPORT);
    assert_string_equal(l.r[1].rid, c.rid);
    assert_int_equal(l.r[1].result_status, FAAS_EHANDLER);
    cap_clear(&c);
    logs_clear(&l);

    /* Lines over 4 KiB are truncated, not dropped. */
    c.log_count = &l.n;
    invoke_wait(&f, "longer", NULL, NULL, &c);
    assert_int_equal(c.status, 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.r[0].kind, FAAS_LOG_LINE);
    assert_non_null(l.r[0].line);
    {
        size_t n = strlen(l.r[0].line);
        assert_true(n >= 4000);
        assert_true(n <= 4096);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(l.r[0].line[i], 'L');
    }
    assert_int_equal(l.r[1].kind, FAAS_LOG_REPORT);
    cap_clear(&c);
    logs_clear(&l);
    fx_free(&f);
}


static int h_log_forge(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    faas_ctx_log(ctx, "a\nREPORT RequestId: forged");
    faas_ctx_log(ctx, "tab\there\rcr \x01\x1f\x7f caf\xc3\xa9 back\\slash");
    *result = json_null();
    return 0;
}

/* One call of faas_ctx_log is one LINE record: a newline in the text is
 * escaped, so a handler cannot forge a REPORT line of its own. */
static void test_ctx_log_escaped(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct logs l;
    struct cap c = { 0 };
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    memset(&l, 0, sizeof l);
    fx_new_log(&f, log_cb, &l);
    o.isolation = iso;
    assert_int_equal(faas_register(f.rt, "forger", h_log_forge, &o), 0);

    c.log_count = &l.n;
    invoke_wait(&f, "forger", NULL, NULL, &c);
    assert_int_equal(c.status, 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.r[0].kind, FAAS_LOG_LINE);
    assert_null(strchr(l.r[0].line, '\n'));
    assert_string_equal(l.r[0].line, "a\\nREPORT RequestId: forged");
    assert_int_equal(l.r[1].kind, FAAS_LOG_LINE);
    assert_string_equal(l.r[1].line,
                        "tab\\there\\rcr \\u0001\\u001f\\u007f caf\xc3\xa9 back\\slash");
    assert_int_equal(l.r[2].kind, FAAS_LOG_REPORT);
    cap_clear(&c);
    logs_clear(&l);
    fx_free(&f);
}

static int h_log_newlines(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    char s[3001];
    (void)event;
    (void)result;
    memset(s, '\n', 3000);
    s[0] = 'x'; /* not all trailing: the rest is kept, escaped */
    s[3000] = '\0';
    faas_ctx_log(ctx, "%s.", s);
    return 0;
}

/* An escaped line stays within 4 KiB and is cut between escapes. */
static void test_ctx_log_escaped_long(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct logs l;
    struct cap c = { 0 };
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    size_t n, i;
    memset(&l, 0, sizeof l);
    fx_new_log(&f, log_cb, &l);
    o.isolation = iso;
    assert_int_equal(faas_register(f.rt, "nl", h_log_newlines, &o), 0);

    invoke_wait(&f, "nl", NULL, NULL, &c);
    assert_int_equal(c.status, 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.r[0].kind, FAAS_LOG_LINE);
    n = strlen(l.r[0].line);
    assert_true(n >= 4090 && n <= 4095);
    assert_int_equal(l.r[0].line[0], 'x');
    for (i = 1; i < n; i += 2) {
        assert_int_equal(l.r[0].line[i], '\\');
        assert_int_equal(l.r[0].line[i + 1], 'n');
    }
    assert_int_equal(n % 2, 1);
    cap_clear(&c);
    logs_clear(&l);
    fx_free(&f);
}

static int h_fail_huge(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    size_t n = 200 * 1024, i;
    char *type = malloc(5001), *msg = malloc(n + 1);
    int rc;
    (void)event;
    (void)result;
    if (!type || !msg) {
        free(type);
        free(msg);
        return 1;
    }
    memset(type, 'T', 5000);
    type[5000] = '\0';
    /* Two-byte characters from an odd offset: a cut at 64 KiB lands in
     * the middle of one. */
    msg[0] = 'm';
    for (i = 1; i + 1 < n; i += 2) {
        msg[i] = '\xc3';
        msg[i + 1] = '\xa9';
    }
    msg[i] = '\0';
    rc = faas_ctx_fail(ctx, type, "%s", msg);
    free(type);
    free(msg);
    return rc;
}

/* faas_ctx_fail keeps a bounded error type and message, cut at a whole
 * UTF-8 character, so the error object still holds both. */
static void test_ctx_fail_bounded(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    const char *type, *msg;
    fx_new(&f);
    o.isolation = iso;
    assert_int_equal(faas_register(f.rt, "huge", h_fail_huge, &o), 0);

    invoke_wait(&f, "huge", NULL, NULL, &c);
    assert_int_equal(c.status, FAAS_EHANDLER);
    type = json_string_value(json_object_get(c.payload, "errorType"));
    msg = json_string_value(json_object_get(c.payload, "errorMessage"));
    assert_non_null(type);
    assert_non_null(msg);
    assert_int_equal(strlen(type), 1024);
    assert_int_equal(strlen(msg), 64 * 1024 - 1); /* 'm' and whole 2-byte characters */
    assert_int_equal(msg[0], 'm');
    assert_memory_equal(msg + strlen(msg) - 2, "\xc3\xa9", 2);
    cap_clear(&c);
    fx_free(&f);
}

static int h_log_flood(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    char line[1001];
    (void)event;
    (void)result;
    memset(line, 'z', 1000);
    line[1000] = '\0';
    for (int i = 0; i < 3000; i++)
        faas_ctx_log(ctx, "%s", line);
    return 0;
}

static int g_flood_lines, g_flood_cut;
static size_t g_flood_bytes;

static void flood_log(const struct faas_log_record *r, void *arg)
{
    (void)arg;
    if (r->kind != FAAS_LOG_LINE)
        return;
    g_flood_lines++;
    g_flood_bytes += strlen(r->line) + 1;
    g_flood_cut += strncmp(r->line, "[log truncated", 14) == 0;
}

/* A handler that logs without end costs the host 1 MiB of kept lines, and
 * its log tail stays at 4 KiB. */
static void test_ctx_log_bounded(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    struct faas_result *res = NULL;
    fx_new_log(&f, flood_log, NULL);
    o.isolation = iso;
    assert_int_equal(faas_register(f.rt, "flood", h_log_flood, &o), 0);
    g_flood_lines = g_flood_cut = 0;
    g_flood_bytes = 0;
    io.log_tail = 1;
    assert_int_equal(faas_invoke_sync(f.rt, "flood", NULL, &io, &res), 0);
    assert_int_equal(faas_result_status(res), 0);
    assert_int_equal(g_flood_cut, 1);
    assert_true(g_flood_lines > 1000 && g_flood_lines < 1100);
    assert_true(g_flood_bytes <= 1024 * 1024 + 4096);
    assert_non_null(faas_result_log_tail(res));
    assert_true(strlen(faas_result_log_tail(res)) <= 4096);
    assert_non_null(strstr(faas_result_log_tail(res), "[log truncated"));
    faas_result_free(res);
    fx_free(&f);
}

static int h_echo(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_deep_copy(event);
    return 0;
}

/* A string holding NUL goes through a handler and back unchanged. */
static void test_ctx_nul_in_strings(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct cap c = { 0 };
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    json_error_t err;
    json_t *ev = json_loads("{\"s\":\"a\\u0000b\"}", JSON_ALLOW_NUL, &err);
    assert_non_null(ev);
    assert_int_equal(json_string_length(json_object_get(ev, "s")), 3);
    fx_new(&f);
    o.isolation = iso;
    assert_int_equal(faas_register(f.rt, "echo", h_echo, &o), 0);
    invoke_wait(&f, "echo", ev, NULL, &c);
    assert_int_equal(c.status, 0);
    assert_true(json_equal(c.payload, ev));
    assert_int_equal(json_string_length(json_object_get(c.payload, "s")), 3);
    cap_clear(&c);
    json_decref(ev);
    fx_free(&f);
}

/* s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or code
 * points past U+10FFFF, no sequence cut short). */
static int utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len, k;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            len = 2, cp = c & 0x1fu;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3, cp = c & 0x0fu;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4, cp = c & 0x07u;
        else
            return 0;
        if (n - i < len)
            return 0;
        for (k = 1; k < len; k++) {
            unsigned char d = (unsigned char)s[i + k];
            if ((d & 0xc0u) != 0x80u)
                return 0;
            cp = cp << 6 | (d & 0x3fu);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static int h_log_wide(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    char *s = malloc(3000 * 2 + 1);
    (void)event;
    (void)result;
    if (!s)
        return 1;
    for (int i = 0; i < 3000; i++)
        memcpy(s + 2 * i, "\xc3\xa9", 2);
    s[6000] = '\0';
    faas_ctx_log(ctx, "%s", s);
    free(s);
    return 0;
}

/* A line cut at its bound in the middle of a character ends before it:
 * valid UTF-8, within 4 KiB. */
static void test_ctx_log_multibyte_cut(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct logs l;
    struct cap c = { 0 };
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    size_t n;
    memset(&l, 0, sizeof l);
    fx_new_log(&f, log_cb, &l);
    o.isolation = iso;
    assert_int_equal(faas_register(f.rt, "wide", h_log_wide, &o), 0);

    invoke_wait(&f, "wide", NULL, NULL, &c);
    assert_int_equal(c.status, 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.r[0].kind, FAAS_LOG_LINE);
    n = strlen(l.r[0].line);
    assert_true(n <= 4095);
    assert_int_equal(n, 4094); /* 2047 whole characters */
    assert_true(utf8_valid(l.r[0].line, n));
    cap_clear(&c);
    logs_clear(&l);
    fx_free(&f);
}

/* faas_log_escape with an input cut anywhere in a character of 2, 3 or 4
 * bytes, the output large enough or not: whole characters only. */
static void test_log_escape_cut_input(void **state)
{
    static const char *const chars[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };
    char in[64], out[64];
    size_t w, len, size, n;
    (void)state;

    for (w = 0; w < 3; w++) {
        size_t cl = strlen(chars[w]);
        for (len = 0; len + cl <= sizeof in; len += cl)
            memcpy(in + len, chars[w], cl);
        for (len = 0; len <= sizeof in; len++) {
            for (size = 1; size <= sizeof out; size++) {
                n = faas_log_escape(out, size, in, len);
                assert_true(n < size);
                assert_int_equal(out[n], '\0');
                assert_int_equal(n % cl, 0);
                assert_true(utf8_valid(out, n));
                /* Nothing whole is dropped that fits. */
                assert_int_equal(n, (len < size - 1 ? len : size - 1) / cl * cl);
            }
        }
    }
}

static char g_event_line[512];
static int g_events;

static void event_log(const struct faas_log_record *r, void *arg)
{
    (void)arg;
    if (r->kind != FAAS_LOG_ASYNC || !r->line)
        return;
    g_events++;
    snprintf(g_event_line, sizeof g_event_line, "%s", r->line);
}

/* A runtime's own record (an async failure) whose text runs past its
 * bound in the middle of a character: cut before it. */
static void test_log_event_multibyte_cut(void **state)
{
    char msg[1001];
    struct fx f;
    size_t n;
    (void)state;

    for (n = 0; n + 3 <= 999; n += 3)
        memcpy(msg + n, "\xe2\x82\xac", 3);
    msg[n] = '\0';
    g_events = 0;
    fx_new_log(&f, event_log, NULL);
    /* "x: " puts the 320-byte buffer's cut inside a character. */
    faas_log_event(f.rt, FAAS_LOG_ASYNC, "fn", "rid", "failure", NULL, "x: %s", msg);
    assert_int_equal(g_events, 1);
    n = strlen(g_event_line);
    assert_true(n > 300 && n < 320);
    assert_true(utf8_valid(g_event_line, n));
    assert_int_equal(strncmp(g_event_line, "x: \xe2\x82\xac", 6), 0);
    fx_free(&f);
}

#define BOTH(t) cmocka_unit_test_prestate(t, &tu_iso_inline), cmocka_unit_test_prestate(t, &tu_iso_thread)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_ctx_defaults),
        BOTH(test_ctx_default_memory),
        BOTH(test_ctx_invoke_opts),
        BOTH(test_ctx_timeout_never_lengthens),
        BOTH(test_ctx_no_timeout),
        BOTH(test_ctx_state),
        BOTH(test_ctx_log),
        BOTH(test_ctx_log_failure_and_long),
        BOTH(test_ctx_log_escaped),
        BOTH(test_ctx_log_escaped_long),
        BOTH(test_ctx_fail_bounded),
        BOTH(test_ctx_log_bounded),
        BOTH(test_ctx_nul_in_strings),
        BOTH(test_ctx_log_multibyte_cut),
        cmocka_unit_test(test_log_escape_cut_input),
        cmocka_unit_test(test_log_event_multibyte_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

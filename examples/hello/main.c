/*
 * hello - a complete libevent host program for libfaas, to copy from.
 *
 * It shows:
 *  - a runtime created on the host's own event_base, with a log callback
 *    that prints every faas_ctx_log() line and every invocation's REPORT line;
 *  - an INLINE function ("add", runs on the loop thread) and a THREAD function
 *    ("greet", runs on the runtime's worker threads) whose init makes state
 *    (a greeting prefix) that every warm invocation finds with
 *    faas_ctx_state(), and whose fini frees it;
 *  - one faas_invoke_sync() before the loop starts, faas_invoke() calls with
 *    a result callback from application code and from a timer on the loop,
 *    and a failing invocation whose error object is checked too;
 *  - stopping by itself: when every expected result is in, the program calls
 *    event_base_loopexit(). It cannot wait for the loop to run out of events:
 *    while THREAD functions exist, the runtime keeps an event registered on
 *    the base for completions coming back from its worker threads.
 *
 * Every result is checked; the program exits 0 only if all checks pass.
 *
 * Run it from the top of the source tree:
 *
 *   make run
 *
 * (or `make examples && ./build/examples/hello`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "faas.h"

#define TICKS 3            /* timer ticks; each invokes both functions */
#define TICK_MS 100        /* between ticks */
#define DEADLINE_S 10      /* a safety net: give up after this long */

/* From application code: 2 before the loop, 2 per tick. */
#define EXPECTED_RESULTS (2 + 2 * TICKS)

struct app {
    struct event_base *base;
    struct faas_runtime *rt;
    struct event *ticker;
    int ticks;
    int results;  /* result callbacks run */
    int reports;  /* REPORT records seen by the log callback */
    int failures; /* checks that failed */
};

/* One faas_invoke() call and what its result must be. */
struct call {
    struct app *app;
    char label[48];
    int want_status;
    json_t *want_payload; /* success: the exact payload; NULL when failing */
    const char *want_error_type;
};

static void check(struct app *app, int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "CHECK FAILED: %s\n", what);
        app->failures++;
    }
}

/* ------------------------------------------------------------------ */
/* The functions                                                       */
/* ------------------------------------------------------------------ */

/* INLINE: {"a": x, "b": y} -> {"sum": x + y}. Runs on the loop thread. */
static int add_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *a = json_object_get(event, "a");
    json_t *b = json_object_get(event, "b");
    if (!json_is_integer(a) || !json_is_integer(b))
        return faas_ctx_fail(ctx, "InvalidInput", "a and b must be integers");
    *result = json_pack("{s:I}", "sum", json_integer_value(a) + json_integer_value(b));
    return *result ? 0 : -1;
}

/* THREAD state, made once per instance (the cold start) by greet_init. */
struct greeter {
    char prefix[32];
    unsigned long served; /* one instance runs one invocation at a time */
};

static int greet_init(struct faas_ctx *ctx, void **state)
{
    struct greeter *g = calloc(1, sizeof *g);
    if (!g)
        return faas_ctx_fail(ctx, "OutOfMemory", "no memory for the greeter");
    snprintf(g->prefix, sizeof g->prefix, "Hello");
    *state = g;
    return 0;
}

static void greet_fini(void *state)
{
    free(state);
}

/* THREAD: {"name": s} -> {"message": "Hello, s!"}. Runs on a worker thread,
 * so it only calls faas_ctx_* and thread-safe code (jansson objects of its
 * own are fine). */
static int greet_handler(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    struct greeter *g = faas_ctx_state(ctx);
    const char *name = json_string_value(json_object_get(event, "name"));
    char msg[128];

    if (!name)
        return faas_ctx_fail(ctx, "InvalidInput", "name must be a string");
    g->served++;
    faas_ctx_log(ctx, "greeting %s (this instance's call #%lu, %lld ms left)", name,
                 g->served, (long long)faas_ctx_remaining_ms(ctx));
    snprintf(msg, sizeof msg, "%s, %s!", g->prefix, name);
    *result = json_pack("{s:s}", "message", msg);
    return *result ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Logs and results                                                    */
/* ------------------------------------------------------------------ */

/* The runtime's log callback: on the loop thread, for every function. */
static void on_log(const struct faas_log_record *rec, void *arg)
{
    struct app *app = arg;
    char line[512];

    switch (rec->kind) {
    case FAAS_LOG_LINE:
        printf("  %s %.8s  %s\n", rec->function, rec->request_id, rec->line);
        break;
    case FAAS_LOG_REPORT:
        app->reports++;
        if (faas_result_report(rec->result, line, sizeof line) < 0) {
            check(app, 0, "faas_result_report");
            break;
        }
        printf("  %s\n", line);
        break;
    default: /* idempotency and async records: not used here */
        break;
    }
}

/* Checks one result against what the call expected; prints its payload. */
static void check_result(struct app *app, const char *label, const struct faas_result *res,
                         int want_status, json_t *want_payload, const char *want_error_type)
{
    json_t *payload = faas_result_payload(res);
    char *text = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
    int status = faas_result_status(res);
    char what[160];

    printf("%-14s -> %s (%s)\n", label, text ? text : "?",
           status ? faas_strerror(status) : "ok");
    free(text);

    snprintf(what, sizeof what, "%s: status %d, want %d", label, status, want_status);
    check(app, status == want_status, what);
    if (want_payload) {
        snprintf(what, sizeof what, "%s: payload", label);
        check(app, json_equal(payload, want_payload), what);
    }
    if (want_error_type) {
        const char *type = faas_result_error_type(res);
        snprintf(what, sizeof what, "%s: errorType %s", label, type ? type : "(none)");
        check(app, type && strcmp(type, want_error_type) == 0, what);
    }
    snprintf(what, sizeof what, "%s: request id", label);
    check(app, strlen(faas_result_request_id(res)) == FAAS_REQUEST_ID_SIZE - 1, what);
}

/* The result callback of faas_invoke(): once per call, on the loop thread. */
static void on_result(const struct faas_result *res, void *arg)
{
    struct call *c = arg;
    struct app *app = c->app;

    check_result(app, c->label, res, c->want_status, c->want_payload, c->want_error_type);
    json_decref(c->want_payload);
    free(c);

    /* Stop when everything is in: the loop would not run out of events. */
    if (++app->results == EXPECTED_RESULTS)
        event_base_loopexit(app->base, NULL);
}

/* Invokes `function` with `event` (stolen) and records what must come back
 * (`want_payload` stolen too). */
static void invoke(struct app *app, const char *label, const char *function, json_t *event,
                   int want_status, json_t *want_payload, const char *want_error_type)
{
    struct call *c = calloc(1, sizeof *c);
    int rc;

    if (!c || !event) {
        check(app, 0, "out of memory");
        free(c);
        json_decref(event);
        json_decref(want_payload);
        return;
    }
    c->app = app;
    snprintf(c->label, sizeof c->label, "%s", label);
    c->want_status = want_status;
    c->want_payload = want_payload;
    c->want_error_type = want_error_type;

    /* The event is borrowed: the runtime keeps its own reference or copy. */
    rc = faas_invoke(app->rt, function, event, NULL, on_result, c);
    json_decref(event);
    if (rc != 0) {
        /* On an error the callback never runs, so the call is ours to free. */
        fprintf(stderr, "faas_invoke(%s): %s\n", function, faas_strerror(rc));
        check(app, 0, "faas_invoke");
        json_decref(c->want_payload);
        free(c);
    }
}

/* ------------------------------------------------------------------ */
/* Timers                                                              */
/* ------------------------------------------------------------------ */

/* Every TICK_MS: invoke both functions from the loop. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    char label[32], name[32];
    int n = ++app->ticks;
    (void)fd;
    (void)what;

    snprintf(label, sizeof label, "tick %d greet", n);
    snprintf(name, sizeof name, "tick %d", n);
    char want[64];
    snprintf(want, sizeof want, "Hello, %s!", name);
    invoke(app, label, "greet", json_pack("{s:s}", "name", name), 0,
           json_pack("{s:s}", "message", want), NULL);

    snprintf(label, sizeof label, "tick %d add", n);
    invoke(app, label, "add", json_pack("{s:i, s:i}", "a", n, "b", 10 * n), 0,
           json_pack("{s:i}", "sum", 11 * n), NULL);

    if (n == TICKS)
        event_del(app->ticker);
}

/* The safety net: the results did not all arrive in time. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    (void)fd;
    (void)what;
    fprintf(stderr, "gave up after %d s with %d of %d results\n", DEADLINE_S, app->results,
            EXPECTED_RESULTS);
    app->failures++;
    event_base_loopexit(app->base, NULL);
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

int main(void)
{
    struct app app;
    struct event *deadline = NULL;
    struct faas_result *res = NULL;
    struct faas_stats st;
    json_t *event, *want;
    int rc;

    memset(&app, 0, sizeof app);
    printf("libfaas %s\n", faas_version());

    /* The host owns the loop; libfaas only adds events to it. */
    app.base = event_base_new();
    if (!app.base) {
        fprintf(stderr, "event_base_new failed\n");
        return 1;
    }

    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    ro.log = on_log;
    ro.log_arg = &app;
    rc = faas_runtime_new(&app.rt, app.base, &ro);
    if (rc != 0) {
        fprintf(stderr, "faas_runtime_new: %s\n", faas_strerror(rc));
        event_base_free(app.base);
        return 1;
    }

    struct faas_function_opts add = FAAS_FUNCTION_OPTS_INIT;
    add.isolation = FAAS_ISOLATION_INLINE;
    add.timeout_ms = 1000;
    rc = faas_register(app.rt, "add", add_handler, &add);
    check(&app, rc == 0, "register add");

    struct faas_function_opts greet = FAAS_FUNCTION_OPTS_INIT; /* THREAD */
    greet.init = greet_init;
    greet.fini = greet_fini;
    greet.max_concurrency = 4;
    greet.max_queue = 16;
    rc = faas_register(app.rt, "greet", greet_handler, &greet);
    check(&app, rc == 0, "register greet");
    if (app.failures)
        goto out;

    /* 1. Synchronous, before the loop starts: faas_invoke_sync() runs the
     * base itself until the result is in. This one is a cold start. */
    event = json_pack("{s:s}", "name", "world");
    rc = faas_invoke_sync(app.rt, "greet", event, NULL, &res);
    json_decref(event);
    check(&app, rc == 0, "faas_invoke_sync greet");
    if (rc == 0) {
        want = json_pack("{s:s}", "message", "Hello, world!");
        check_result(&app, "sync greet", res, 0, want, NULL);
        check(&app, faas_result_cold_start(res) == 1, "sync greet: cold start");
        json_decref(want);
        faas_result_free(res);
    }

    /* 2. From application code, with a result callback: a success and a
     * failure (the handler calls faas_ctx_fail). */
    invoke(&app, "app add", "add", json_pack("{s:i, s:i}", "a", 2, "b", 40), 0,
           json_pack("{s:i}", "sum", 42), NULL);
    invoke(&app, "app add (bad)", "add", json_pack("{s:s}", "a", "two"), FAAS_EHANDLER, NULL,
           "InvalidInput");

    /* 3. From a timer on the loop. */
    struct timeval tick = { 0, TICK_MS * 1000 };
    struct timeval limit = { DEADLINE_S, 0 };
    app.ticker = event_new(app.base, -1, EV_PERSIST, on_tick, &app);
    deadline = evtimer_new(app.base, on_deadline, &app);
    if (!app.ticker || !deadline) {
        check(&app, 0, "event_new");
        goto out;
    }
    event_add(app.ticker, &tick);
    event_add(deadline, &limit);

    event_base_dispatch(app.base);

    check(&app, app.results == EXPECTED_RESULTS, "every result arrived");
    check(&app, app.reports == EXPECTED_RESULTS + 1, "a REPORT for every invocation");

    if (faas_stats(app.rt, NULL, &st) == 0) {
        printf("stats: %llu invocations, %llu errors, %llu cold starts, %u instances\n",
               (unsigned long long)st.invocations, (unsigned long long)st.errors,
               (unsigned long long)st.cold_starts, st.instances);
        check(&app, st.invocations == EXPECTED_RESULTS + 1, "stats: invocations");
        check(&app, st.errors == 1, "stats: errors");
    } else {
        check(&app, 0, "faas_stats");
    }

out:
    /* Frees instances (greet_fini runs for each) and joins the threads. */
    faas_runtime_free(app.rt);
    if (app.ticker)
        event_free(app.ticker);
    if (deadline)
        event_free(deadline);
    event_base_free(app.base);

    if (app.failures) {
        fprintf(stderr, "hello: %d check(s) failed\n", app.failures);
        return 1;
    }
    printf("hello: all checks passed\n");
    return 0;
}

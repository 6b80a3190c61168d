/*
 * orders - idempotency and asynchronous invocation, in one host program to
 * copy from.
 *
 * It shows:
 *  - "create-order", a THREAD function made idempotent on body.order_id of an
 *    API Gateway-style event (the body arrives as a JSON string; the key path
 *    reaches into it), with body.amount as the validated part:
 *      1. the first call runs the handler and stores its result;
 *      2. the same order again is answered from the store: the same payload,
 *         faas_result_replayed() true, and the handler does not run again;
 *      3. the same order with another amount fails with
 *         FAAS_EIDEMPOTENCY_MISMATCH instead of being replayed;
 *  - "charge-card", invoked with faas_invoke_async(): the call returns a
 *    request id at once, the first attempt fails (a transient gateway error),
 *    the runtime retries it after a short backoff with the same request id,
 *    and the second attempt succeeds. Its async options set an on_complete
 *    callback (the event's final result, exactly once), a dead_letter
 *    callback (must not run here) and an on_success destination;
 *  - "audit", the destination: it is invoked asynchronously with Lambda's
 *    destination record (requestContext, requestPayload, responsePayload...)
 *    and records it in an audit trail;
 *  - the log callback printing the FAAS_LOG_IDEMPOTENCY records (with the
 *    key's hash, never the raw key) and the FAAS_LOG_ASYNC records (retry,
 *    success...), and the handlers' own faas_ctx_log() lines;
 *  - running the host's loop until the async work is done, bounded by a
 *    timer, then stopping with event_base_loopexit(): while THREAD functions
 *    exist the runtime keeps an event on the base, so the loop would not run
 *    out of events by itself.
 *
 * Every result is checked; the program exits 0 only if everything happened
 * as expected.
 *
 * Run it from the top of the source tree:
 *
 *   make examples && ./build/examples/orders
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "faas.h"

#define DEADLINE_S 5    /* a safety net for the async part */
#define RETRY_BASE_MS 50 /* the first retry comes 25..50 ms after the failure */

struct app {
    struct event_base *base;
    struct faas_runtime *rt;
    int failures;              /* checks that failed */
    char charge_id[FAAS_REQUEST_ID_SIZE]; /* from faas_invoke_async */
    json_t *charge_event;      /* what was sent to charge-card */
    int charge_completes;      /* charge-card's on_complete calls */
    int audit_completes;       /* audit's on_complete calls */
    int dead_letters;          /* any function's dead_letter calls */
    /* FAAS_LOG_IDEMPOTENCY actions seen */
    int idem_store, idem_complete, idem_replay, idem_mismatch, idem_other;
    char idem_key[65];         /* the key hash of the first record */
    int idem_same_key;         /* every record carried that hash */
    /* FAAS_LOG_ASYNC actions seen */
    int async_retry, async_success, async_other;
};

/*
 * A handler has no user argument, so what the handlers share with main()
 * lives here. create-order is THREAD (it runs on worker threads): its counter
 * is atomic. charge-card and audit are INLINE (they run on the loop thread,
 * like every callback): plain variables are enough.
 */
static atomic_uint create_runs;
static unsigned charge_runs;
static char charge_seen[2][FAAS_REQUEST_ID_SIZE]; /* the request id per attempt */
static json_t *audit_trail;                       /* destination records */

static void check(struct app *app, int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "CHECK FAILED: %s\n", what);
        app->failures++;
    }
}

static void print_json(const char *label, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    printf("%s%s\n", label, text ? text : "?");
    free(text);
}

/* ------------------------------------------------------------------ */
/* The functions                                                       */
/* ------------------------------------------------------------------ */

/*
 * THREAD, idempotent on body.order_id. The body is a JSON string, as API
 * Gateway delivers it: {"order_id": "...", "amount": n}. Returns the order,
 * with the request id of the invocation that created it (a replay returns
 * this same payload, so it names the first invocation).
 */
static int create_order(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *body = json_string_value(json_object_get(event, "body"));
    json_t *order, *id, *amount;
    json_error_t err;

    if (!body)
        return faas_ctx_fail(ctx, "InvalidInput", "the event has no body");
    order = json_loads(body, 0, &err);
    id = json_object_get(order, "order_id");
    amount = json_object_get(order, "amount");
    if (!json_is_string(id) || !json_is_integer(amount)) {
        json_decref(order);
        return faas_ctx_fail(ctx, "InvalidInput", "order_id and amount are required");
    }
    atomic_fetch_add(&create_runs, 1);
    faas_ctx_log(ctx, "creating order %s for %lld", json_string_value(id),
                 (long long)json_integer_value(amount));
    *result = json_pack("{s:O, s:O, s:s, s:s}", "order_id", id, "amount", amount, "status",
                        "created", "created_by", faas_ctx_request_id(ctx));
    json_decref(order);
    return *result ? 0 : -1;
}

/*
 * INLINE, invoked asynchronously. The first attempt fails as a payment
 * gateway might (a transient error, worth retrying); later ones succeed.
 */
static int charge_card(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *order = json_object_get(event, "order_id");
    json_t *amount = json_object_get(event, "amount");
    unsigned n = ++charge_runs;

    if (n <= 2)
        snprintf(charge_seen[n - 1], FAAS_REQUEST_ID_SIZE, "%s", faas_ctx_request_id(ctx));
    if (!json_is_string(order) || !json_is_integer(amount))
        return faas_ctx_fail(ctx, "InvalidInput", "order_id and amount are required");
    if (n == 1) {
        faas_ctx_log(ctx, "attempt %u: the card gateway did not answer", n);
        return faas_ctx_fail(ctx, "GatewayUnavailable", "the card gateway timed out");
    }
    faas_ctx_log(ctx, "attempt %u: charged %lld for order %s", n,
                 (long long)json_integer_value(amount), json_string_value(order));
    *result = json_pack("{s:O, s:O, s:b}", "order_id", order, "charged", amount, "ok", 1);
    return *result ? 0 : -1;
}

/*
 * INLINE, the on_success destination of charge-card: its event is Lambda's
 * destination record. It keeps a copy in the audit trail.
 */
static int audit(struct faas_ctx *ctx, json_t *record, json_t **result)
{
    json_t *rc = json_object_get(record, "requestContext");
    const char *cond = json_string_value(json_object_get(rc, "condition"));
    const char *req = json_string_value(json_object_get(rc, "requestId"));
    json_t *copy;

    if (!cond || !req)
        return faas_ctx_fail(ctx, "InvalidInput", "not a destination record");
    copy = json_deep_copy(record);
    if (!copy || json_array_append_new(audit_trail, copy) != 0)
        return faas_ctx_fail(ctx, "OutOfMemory", "cannot record the event");
    faas_ctx_log(ctx, "recorded %s of request %.8s (%lld invocations)", cond, req,
                 (long long)json_integer_value(json_object_get(rc, "approximateInvokeCount")));
    *result = json_pack("{s:I}", "recorded", (json_int_t)json_array_size(audit_trail));
    return *result ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Logs and callbacks                                                  */
/* ------------------------------------------------------------------ */

static void on_idempotency_log(struct app *app, const struct faas_log_record *rec)
{
    const char *a = rec->action;

    printf("  [idempotency] %s %-8s key %.12s... request %.8s\n", rec->function, a,
           rec->key ? rec->key : "-", rec->request_id);
    if (strcmp(a, "store") == 0)
        app->idem_store++;
    else if (strcmp(a, "complete") == 0)
        app->idem_complete++;
    else if (strcmp(a, "replay") == 0)
        app->idem_replay++;
    else if (strcmp(a, "mismatch") == 0)
        app->idem_mismatch++;
    else
        app->idem_other++;
    /* One order id: every record names the same hash. */
    if (!app->idem_key[0]) {
        snprintf(app->idem_key, sizeof app->idem_key, "%s", rec->key ? rec->key : "");
        app->idem_same_key = rec->key && strlen(rec->key) == 64;
    } else if (!rec->key || strcmp(rec->key, app->idem_key) != 0) {
        app->idem_same_key = 0;
    }
}

/* The runtime's log callback: on the loop thread, for every function. */
static void on_log(const struct faas_log_record *rec, void *arg)
{
    struct app *app = arg;

    switch (rec->kind) {
    case FAAS_LOG_LINE:
        printf("  [log] %s %.8s: %s\n", rec->function, rec->request_id, rec->line);
        break;
    case FAAS_LOG_IDEMPOTENCY:
        on_idempotency_log(app, rec);
        break;
    case FAAS_LOG_ASYNC:
        printf("  [async] %s %s request %.8s: %s\n", rec->function, rec->action,
               rec->request_id, rec->line);
        if (strcmp(rec->action, "retry") == 0)
            app->async_retry++;
        else if (strcmp(rec->action, "success") == 0)
            app->async_success++;
        else
            app->async_other++;
        break;
    case FAAS_LOG_WARNING:
        printf("  [warning] %s: %s\n", rec->action, rec->line ? rec->line : "");
        break;
    case FAAS_LOG_REPORT:
        break; /* examples/hello prints REPORT lines */
    }
}

static void maybe_stop(struct app *app)
{
    if (app->charge_completes >= 1 && app->audit_completes >= 1)
        event_base_loopexit(app->base, NULL);
}

/* charge-card's final result: exactly once per accepted event. */
static void on_charge_complete(const struct faas_result *res, void *arg)
{
    struct app *app = arg;
    int status = faas_result_status(res);

    app->charge_completes++;
    printf("charge-card on_complete: %s after %u attempt(s), request %.8s\n",
           status ? faas_strerror(status) : "success", faas_result_attempts(res),
           faas_result_request_id(res));
    print_json("  event   ", faas_result_event(res));
    print_json("  payload ", faas_result_payload(res));
    check(app, status == 0, "charge-card: final status 0");
    check(app, faas_result_attempts(res) == 2, "charge-card: 2 attempts");
    check(app, strcmp(faas_result_request_id(res), app->charge_id) == 0,
          "charge-card: the request id faas_invoke_async returned");
    check(app, json_equal(faas_result_event(res), app->charge_event),
          "charge-card: faas_result_event is the event sent");
    check(app, json_is_true(json_object_get(faas_result_payload(res), "ok")),
          "charge-card: the second attempt's payload");
    maybe_stop(app);
}

/* audit's final result: its event is the destination record it got. */
static void on_audit_complete(const struct faas_result *res, void *arg)
{
    struct app *app = arg;

    app->audit_completes++;
    printf("audit on_complete: status %d, request %.8s\n", faas_result_status(res),
           faas_result_request_id(res));
    check(app, faas_result_status(res) == 0, "audit: status 0");
    maybe_stop(app);
}

/* Events that failed for good. None should here. */
static void on_dead_letter(const struct faas_result *res, void *arg)
{
    struct app *app = arg;

    app->dead_letters++;
    fprintf(stderr, "dead letter: %s request %.8s: %s (%s)\n",
            faas_result_function_name(res), faas_result_request_id(res),
            faas_strerror(faas_result_status(res)),
            faas_result_error_type(res) ? faas_result_error_type(res) : "-");
    maybe_stop(app);
}

/* The safety net: the async work did not finish in time. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    (void)fd;
    (void)what;
    fprintf(stderr, "gave up after %d s (charge-card completes %d, audit completes %d)\n",
            DEADLINE_S, app->charge_completes, app->audit_completes);
    app->failures++;
    event_base_loopexit(app->base, NULL);
}

/* ------------------------------------------------------------------ */
/* Steps                                                               */
/* ------------------------------------------------------------------ */

/* An API Gateway-style event whose body is the order as a JSON string. New
 * reference, or NULL. */
static json_t *order_event(const char *order_id, int amount)
{
    char body[128];
    snprintf(body, sizeof body, "{\"order_id\": \"%s\", \"amount\": %d}", order_id, amount);
    return json_pack("{s:s, s:s, s:s}", "httpMethod", "POST", "path", "/orders", "body", body);
}

/* Invokes create-order and waits for the result (NULL on error). */
static struct faas_result *create(struct app *app, const char *step, const char *order_id,
                                  int amount)
{
    struct faas_result *res = NULL;
    json_t *event = order_event(order_id, amount);
    int rc, status;

    printf("\n%s: create-order %s, amount %d\n", step, order_id, amount);
    if (!event) {
        check(app, 0, "out of memory");
        return NULL;
    }
    rc = faas_invoke_sync(app->rt, "create-order", event, NULL, &res);
    json_decref(event);
    if (rc != 0) {
        fprintf(stderr, "faas_invoke_sync(create-order): %s\n", faas_strerror(rc));
        check(app, 0, "faas_invoke_sync create-order");
        return NULL;
    }
    status = faas_result_status(res);
    printf("  -> %s, replayed %d, request %.8s\n", status ? faas_strerror(status) : "ok",
           faas_result_replayed(res), faas_result_request_id(res));
    print_json("     payload ", faas_result_payload(res));
    return res;
}

static void idempotency_steps(struct app *app)
{
    struct faas_result *first, *second, *third;
    json_t *p1, *p2;
    const char *etype;

    /* 1. A new order: the handler runs and the result is stored. */
    first = create(app, "1", "A-1001", 30);
    if (first) {
        check(app, faas_result_status(first) == 0, "1: status 0");
        check(app, faas_result_replayed(first) == 0, "1: not replayed");
    }

    /* 2. The client retries the same order: replayed from the store. */
    second = create(app, "2", "A-1001", 30);
    if (first && second) {
        p1 = faas_result_payload(first);
        p2 = faas_result_payload(second);
        check(app, faas_result_status(second) == 0, "2: status 0");
        check(app, faas_result_replayed(second) == 1, "2: replayed");
        check(app, json_equal(p1, p2), "2: the first result's payload");
        check(app, strcmp(faas_result_request_id(first), faas_result_request_id(second)) != 0,
              "2: a request id of its own");
        check(app,
              strcmp(json_string_value(json_object_get(p2, "created_by")),
                     faas_result_request_id(first)) == 0,
              "2: created by the first invocation");
    }
    printf("  create-order's handler ran %u time(s)\n", atomic_load(&create_runs));
    check(app, atomic_load(&create_runs) == 1, "2: the handler ran once");

    /* 3. The same order id with another amount: an error, not a replay. */
    third = create(app, "3", "A-1001", 45);
    if (third) {
        etype = faas_result_error_type(third);
        printf("  -> errorType %s\n", etype ? etype : "(none)");
        check(app, faas_result_status(third) == FAAS_EIDEMPOTENCY_MISMATCH,
              "3: FAAS_EIDEMPOTENCY_MISMATCH");
        check(app, faas_result_replayed(third) == 0, "3: not replayed");
        check(app, etype && strcmp(etype, "IdempotencyValidationError") == 0,
              "3: errorType IdempotencyValidationError");
    }
    check(app, atomic_load(&create_runs) == 1, "3: the handler did not run");

    faas_result_free(first);
    faas_result_free(second);
    faas_result_free(third);
}

/* Checks the record audit got from charge-card's on_success destination. */
static void check_audit_trail(struct app *app)
{
    json_t *rec = json_array_get(audit_trail, 0);
    json_t *rc = json_object_get(rec, "requestContext");
    json_t *resp = json_object_get(rec, "responseContext");
    const char *arn = json_string_value(json_object_get(rc, "functionArn"));
    const char *req = json_string_value(json_object_get(rc, "requestId"));
    const char *cond = json_string_value(json_object_get(rc, "condition"));

    printf("\naudit trail: %zu record(s)\n", json_array_size(audit_trail));
    if (rec)
        print_json("  ", rec);
    check(app, json_array_size(audit_trail) == 1, "audit: one destination record");
    check(app, json_is_string(json_object_get(rec, "version")), "record: version");
    check(app, json_is_string(json_object_get(rec, "timestamp")), "record: timestamp");
    check(app, req && strcmp(req, app->charge_id) == 0, "record: requestId");
    check(app, cond && strcmp(cond, "Success") == 0, "record: condition Success");
    check(app, arn && strstr(arn, ":function:charge-card:") != NULL, "record: functionArn");
    check(app, json_integer_value(json_object_get(rc, "approximateInvokeCount")) == 2,
          "record: approximateInvokeCount 2");
    check(app, json_equal(json_object_get(rec, "requestPayload"), app->charge_event),
          "record: requestPayload");
    check(app, json_integer_value(json_object_get(resp, "statusCode")) == 200,
          "record: statusCode 200");
    check(app, json_object_get(resp, "functionError") == NULL, "record: no functionError");
    check(app, json_is_true(json_object_get(json_object_get(rec, "responsePayload"), "ok")),
          "record: responsePayload");
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

int main(void)
{
    struct app app;
    struct event *deadline = NULL;
    struct faas_stats st;
    int rc;

    memset(&app, 0, sizeof app);
    audit_trail = json_array();
    app.base = event_base_new();
    if (!app.base || !audit_trail) {
        fprintf(stderr, "out of memory\n");
        json_decref(audit_trail);
        if (app.base)
            event_base_free(app.base);
        return 1;
    }

    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    ro.log = on_log;
    ro.log_arg = &app;
    rc = faas_runtime_new(&app.rt, app.base, &ro);
    if (rc != 0) {
        fprintf(stderr, "faas_runtime_new: %s\n", faas_strerror(rc));
        json_decref(audit_trail);
        event_base_free(app.base);
        return 1;
    }

    /* create-order: THREAD, idempotent on the order id, the amount validated.
     * Both option structs are copied by faas_register(). */
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    io.key_path = "body.order_id";
    io.validate_path = "body.amount";
    io.required = 1; /* an order without an id is the caller's error */
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    fo.isolation = FAAS_ISOLATION_THREAD;
    fo.timeout_ms = 2000;
    fo.idempotency = &io;
    rc = faas_register(app.rt, "create-order", create_order, &fo);
    check(&app, rc == 0, "register create-order");

    /* audit: INLINE, the destination; registered before charge-card uses
     * it (a destination is looked up by name when an event ends). */
    struct faas_async_opts audit_ao = FAAS_ASYNC_OPTS_INIT;
    audit_ao.max_retries = 0;
    audit_ao.on_complete = on_audit_complete;
    audit_ao.on_complete_arg = &app;
    audit_ao.dead_letter = on_dead_letter;
    audit_ao.dead_letter_arg = &app;
    struct faas_function_opts audit_fo = FAAS_FUNCTION_OPTS_INIT;
    audit_fo.isolation = FAAS_ISOLATION_INLINE;
    audit_fo.async = &audit_ao;
    rc = faas_register(app.rt, "audit", audit, &audit_fo);
    check(&app, rc == 0, "register audit");

    /* charge-card: INLINE, retried up to twice after a failure. */
    struct faas_async_opts ao = FAAS_ASYNC_OPTS_INIT;
    ao.max_retries = 2;
    ao.retry_base_ms = RETRY_BASE_MS;
    ao.on_success = "audit";
    ao.on_complete = on_charge_complete;
    ao.on_complete_arg = &app;
    ao.dead_letter = on_dead_letter;
    ao.dead_letter_arg = &app;
    struct faas_function_opts charge_fo = FAAS_FUNCTION_OPTS_INIT;
    charge_fo.isolation = FAAS_ISOLATION_INLINE;
    charge_fo.async = &ao;
    rc = faas_register(app.rt, "charge-card", charge_card, &charge_fo);
    check(&app, rc == 0, "register charge-card");
    if (app.failures)
        goto out;

    /* Steps 1-3: idempotency, with faas_invoke_sync before the loop runs. */
    idempotency_steps(&app);
    check(&app, app.idem_store == 1, "log: one idempotency store");
    check(&app, app.idem_complete == 1, "log: one idempotency complete");
    check(&app, app.idem_replay == 1, "log: one idempotency replay");
    check(&app, app.idem_mismatch == 1, "log: one idempotency mismatch");
    check(&app, app.idem_other == 0, "log: no other idempotency record");
    check(&app, app.idem_same_key, "log: every record carries the same key hash");
    if (faas_stats(app.rt, "create-order", &st) == 0) {
        printf("  create-order stats: %llu invocations, %llu replays\n",
               (unsigned long long)st.invocations, (unsigned long long)st.replays);
        check(&app, st.replays == 1, "stats: one replay");
    } else {
        check(&app, 0, "faas_stats create-order");
    }

    /* Step 4: charge the card asynchronously. faas_invoke_async queues a
     * copy of the event and returns the request id at once; nothing runs
     * inside the call. */
    app.charge_event = json_pack("{s:s, s:i}", "order_id", "A-1001", "amount", 30);
    if (!app.charge_event) {
        check(&app, 0, "out of memory");
        goto out;
    }
    printf("\n4: charge-card, asynchronously\n");
    rc = faas_invoke_async(app.rt, "charge-card", app.charge_event, NULL, app.charge_id);
    if (rc != 0) {
        fprintf(stderr, "faas_invoke_async(charge-card): %s\n", faas_strerror(rc));
        check(&app, 0, "faas_invoke_async charge-card");
        goto out;
    }
    printf("  accepted, request %s (nothing ran yet: %u attempts)\n", app.charge_id,
           charge_runs);
    check(&app, charge_runs == 0, "4: nothing ran inside faas_invoke_async");

    /* Run the loop until charge-card's event ended and audit ran. */
    struct timeval limit = { DEADLINE_S, 0 };
    deadline = evtimer_new(app.base, on_deadline, &app);
    if (!deadline || event_add(deadline, &limit) != 0) {
        check(&app, 0, "the deadline timer");
        goto out;
    }
    event_base_dispatch(app.base);

    check(&app, app.charge_completes == 1, "charge-card: on_complete ran once");
    check(&app, app.audit_completes == 1, "audit: on_complete ran once");
    check(&app, app.dead_letters == 0, "no dead letters");
    check(&app, charge_runs == 2, "charge-card: two attempts ran");
    check(&app, strcmp(charge_seen[0], app.charge_id) == 0 &&
                    strcmp(charge_seen[1], app.charge_id) == 0,
          "charge-card: both attempts saw the request id");
    check(&app, app.async_retry == 1, "log: one async retry");
    check(&app, app.async_success == 2, "log: async success of charge-card and audit");
    check(&app, app.async_other == 0, "log: no other async record");
    check_audit_trail(&app);

out:
    /* Pending async events would end here, in their dead letters, with
     * FAAS_ECANCELED; there are none left. */
    faas_runtime_free(app.rt);
    if (deadline)
        event_free(deadline);
    event_base_free(app.base);
    json_decref(app.charge_event);
    json_decref(audit_trail);

    if (app.failures) {
        fprintf(stderr, "orders: %d check(s) failed\n", app.failures);
        return 1;
    }
    printf("\norders: all checks passed\n");
    return 0;
}

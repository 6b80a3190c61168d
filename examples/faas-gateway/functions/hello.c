/*
 * hello.c - a function in a shared object, for the faas-gateway demo.
 *
 * faas_register_library() finds the handler by its symbol, "hello", and
 * the instance's init and fini by the library's convention,
 * "hello_init" and "hello_fini". With "isolation": "process" each instance
 * is a worker process that loads this object: init runs once per instance
 * (the cold start) and makes the state every warm invocation finds with
 * faas_ctx_state(); the pid in the answer tells the instances apart.
 *
 * It answers an HTTP route (an API Gateway payload 2.0 event: the name is
 * the query string's "name") with a payload 2.0 response, and a direct
 * invocation (the Invoke API: {"name": "..."}) with plain JSON. A
 * "sleep_ms" (query string or event, at most 5000) makes it take that long,
 * to watch concurrency, throttling and the gateway's drain at shutdown.
 *
 * It only calls faas_ctx_* and jansson: the gateway exports the former to
 * the objects it loads, so this object does not link libfaas.
 *
 * Build: cc -std=c11 -fPIC -shared -Iinclude -o hello.so hello.c
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faas.h"

#define MAX_SLEEP_MS 5000

int hello(struct faas_ctx *ctx, json_t *event, json_t **result);
int hello_init(struct faas_ctx *ctx, void **state);
void hello_fini(void *state);

/* One per instance, made by hello_init. */
struct hello_state {
    long pid;
    unsigned long served; /* an instance runs one invocation at a time */
};

int hello_init(struct faas_ctx *ctx, void **state)
{
    struct hello_state *st = calloc(1, sizeof *st);

    if (!st)
        return faas_ctx_fail(ctx, "OutOfMemory", "no memory for the instance's state");
    st->pid = (long)getpid();
    faas_ctx_log(ctx, "cold start: instance pid %ld", st->pid);
    *state = st;
    return 0;
}

void hello_fini(void *state)
{
    free(state);
}

/* A parameter from the query string (HTTP) or the event (direct). */
static const char *param(json_t *event, const char *key)
{
    json_t *qs = json_object_get(event, "queryStringParameters");
    const char *v = json_string_value(json_object_get(qs, key));
    return v ? v : json_string_value(json_object_get(event, key));
}

static long sleep_ms(json_t *event)
{
    json_t *n = json_object_get(event, "sleep_ms");
    const char *s = param(event, "sleep_ms");
    long ms = json_is_integer(n) ? (long)json_integer_value(n) : s ? strtol(s, NULL, 10) : 0;
    return ms < 0 ? 0 : ms > MAX_SLEEP_MS ? MAX_SLEEP_MS : ms;
}

static void pause_ms(struct faas_ctx *ctx, long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    faas_ctx_log(ctx, "sleeping %ld ms (%lld ms left)", ms,
                 (long long)faas_ctx_remaining_ms(ctx));
    while (nanosleep(&ts, &ts) != 0 && !faas_ctx_cancelled(ctx))
        ;
}

int hello(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    struct hello_state *st = faas_ctx_state(ctx);
    const char *name = param(event, "name");
    int http = json_object_get(json_object_get(event, "requestContext"), "http") != NULL;
    long ms = sleep_ms(event);
    char msg[160], *body;
    json_t *doc;

    if (!st)
        return faas_ctx_fail(ctx, "NoState", "hello_init did not run");
    st->served++;
    snprintf(msg, sizeof msg, "Hello, %s!", name && *name ? name : "world");
    faas_ctx_log(ctx, "%s (pid %ld, invocation #%lu of this instance)", msg, st->pid,
                 st->served);
    if (ms > 0)
        pause_ms(ctx, ms);
    doc = json_pack("{s:s, s:I, s:I, s:s}", "message", msg, "pid", (json_int_t)st->pid,
                    "instance_invocations", (json_int_t)st->served, "request_id",
                    faas_ctx_request_id(ctx));
    if (!doc)
        return faas_ctx_fail(ctx, "OutOfMemory", "cannot build the answer");
    if (!http) {
        *result = doc;
        return 0;
    }
    /* API Gateway payload 2.0: the body is a string. */
    body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!body)
        return faas_ctx_fail(ctx, "OutOfMemory", "cannot build the body");
    *result = json_pack("{s:i, s:{s:s}, s:s}", "statusCode", 200, "headers", "content-type",
                        "application/json", "body", body);
    free(body);
    return *result ? 0 : faas_ctx_fail(ctx, "OutOfMemory", "cannot build the response");
}

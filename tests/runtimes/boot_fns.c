/*
 * boot_fns.c - native handlers in a shared object, run by faas-bootstrap
 * in test_bootstrap and bench_command (build/.../tests/runtimes/boot_fns.so).
 * Like a handler written for AWS Lambda, it links no libfaas: faas_ctx_*
 * come from the program that loads it.
 *
 *   info      {"request_id","function","memory","remaining","trace",
 *             "trace_env" (_X_AMZN_TRACE_ID),"client_context","state",
 *             "event","pid"}; info_init logs a line and makes the state,
 *             info_fini writes "fini" to $BOOT_FINI_FILE when it is set
 *   echo      the event back (no init): the benchmark's handler
 *   fail      faas_ctx_fail(ctx, "OrderError", "order <event.id> refused")
 *   nonzero   returns 3 without a word
 *   nap       sleeps event.ms milliseconds, then returns {"slept": ms}
 *   logs      logs three lines (one holding a newline), returns 1
 *   badinit   its init fails: ConfigError "no configuration"
 *   chunks    streams the strings of event.parts, one faas_ctx_stream_write
 *             each, logging "write I: RC" after each; after the first, waits
 *             (at most 20 s) for the file event.gate when there is one;
 *             then fails with StreamError when event.fail is true, else
 *             returns {"dropped":true} (a streamed response drops it)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faas.h"

int info_init(struct faas_ctx *ctx, void **state);
int info(struct faas_ctx *ctx, json_t *event, json_t **result);
void info_fini(void *state);
int echo(struct faas_ctx *ctx, json_t *event, json_t **result);
int fail(struct faas_ctx *ctx, json_t *event, json_t **result);
int nonzero(struct faas_ctx *ctx, json_t *event, json_t **result);
int nap(struct faas_ctx *ctx, json_t *event, json_t **result);
int logs(struct faas_ctx *ctx, json_t *event, json_t **result);
int badinit_init(struct faas_ctx *ctx, void **state);
int badinit(struct faas_ctx *ctx, json_t *event, json_t **result);
int chunks(struct faas_ctx *ctx, json_t *event, json_t **result);

int info_init(struct faas_ctx *ctx, void **state)
{
    faas_ctx_log(ctx, "info_init in %s", faas_ctx_function_name(ctx));
    *state = strdup("initialised");
    return *state ? 0 : -1;
}

int info(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *trace = faas_ctx_trace_id(ctx), *env = getenv("_X_AMZN_TRACE_ID");
    json_t *cc = faas_ctx_client_context(ctx);
    *result = json_pack("{s:s,s:s,s:I,s:I,s:s?,s:s?,s:O,s:s,s:O,s:i}", "request_id",
                        faas_ctx_request_id(ctx), "function", faas_ctx_function_name(ctx),
                        "memory", (json_int_t)faas_ctx_memory_limit_mb(ctx), "remaining",
                        (json_int_t)faas_ctx_remaining_ms(ctx), "trace", trace, "trace_env",
                        env, "client_context", cc ? cc : json_null(), "state",
                        faas_ctx_state(ctx) ? (const char *)faas_ctx_state(ctx) : "",
                        "event", event ? event : json_null(), "pid", (int)getpid());
    return *result ? 0 : -1;
}

void info_fini(void *state)
{
    const char *path = getenv("BOOT_FINI_FILE");
    FILE *f;
    free(state);
    if (path && (f = fopen(path, "w")) != NULL) {
        fputs("fini", f);
        fclose(f);
    }
}

int echo(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_incref(event);
    return 0;
}

int fail(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)result;
    return faas_ctx_fail(ctx, "OrderError", "order %s refused",
                         json_string_value(json_object_get(event, "id")));
}

int nonzero(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    return 3;
}

int nap(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_int_t ms = json_integer_value(json_object_get(event, "ms"));
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    (void)ctx;
    nanosleep(&ts, NULL);
    *result = json_pack("{s:I}", "slept", ms);
    return 0;
}

int logs(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    faas_ctx_log(ctx, "first line");
    faas_ctx_log(ctx, "second\nline");
    faas_ctx_log(ctx, "third line %d", 3);
    *result = json_integer(1);
    return 0;
}

int badinit_init(struct faas_ctx *ctx, void **state)
{
    (void)state;
    return faas_ctx_fail(ctx, "ConfigError", "no configuration");
}

int badinit(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_true();
    return 0;
}

/* Waits for `path` to exist, polling, at most 20 s. */
static void wait_file(const char *path)
{
    struct timespec tick = { 0, 2000000L };
    int i;
    for (i = 0; i < 10000 && access(path, F_OK) != 0; i++)
        nanosleep(&tick, NULL);
}

int chunks(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *parts = json_object_get(event, "parts"), *p;
    const char *gate = json_string_value(json_object_get(event, "gate"));
    size_t i;

    json_array_foreach(parts, i, p) {
        int rc = faas_ctx_stream_write(ctx, json_string_value(p), json_string_length(p));
        faas_ctx_log(ctx, "write %zu: %d", i, rc);
        if (i == 0 && gate)
            wait_file(gate);
    }
    if (json_is_true(json_object_get(event, "fail")))
        return faas_ctx_fail(ctx, "StreamError", "broke after %zu chunks", json_array_size(parts));
    *result = json_pack("{s:b}", "dropped", 1);
    return 0;
}

/*
 * fns.c - functions in a shared object, for faas_register_library: the
 * suites and benchmarks load build/tests/so/fns.so.
 *
 * echo: returns {"event": <event>, "state": <what echo_init made>, "pid"}.
 * fail_init: its init fails. boom: crashes. no_init: a handler alone.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faas.h"

static int fini_calls;

int echo_init(struct faas_ctx *ctx, void **state);
int echo(struct faas_ctx *ctx, json_t *event, json_t **result);
void echo_fini(void *state);
int fail_init_init(struct faas_ctx *ctx, void **state);
int fail_init(struct faas_ctx *ctx, json_t *event, json_t **result);
int boom(struct faas_ctx *ctx, json_t *event, json_t **result);
int no_init(struct faas_ctx *ctx, json_t *event, json_t **result);

int echo_init(struct faas_ctx *ctx, void **state)
{
    faas_ctx_log(ctx, "echo_init in %s", faas_ctx_function_name(ctx));
    *state = strdup("initialised");
    return *state ? 0 : -1;
}

int echo(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *st = faas_ctx_state(ctx);
    faas_ctx_log(ctx, "echo called");
    *result = json_pack("{s:O,s:s,s:i,s:i}", "event", event ? event : json_null(), "state",
                        st ? st : "", "pid", (int)getpid(), "fini_calls", fini_calls);
    return *result ? 0 : -1;
}

void echo_fini(void *state)
{
    fini_calls++;
    free(state);
}

int fail_init_init(struct faas_ctx *ctx, void **state)
{
    (void)state;
    return faas_ctx_fail(ctx, "ConfigError", "no configuration");
}

int fail_init(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    *result = json_true();
    return 0;
}

int boom(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    raise(SIGSEGV);
    return 0;
}

int no_init(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_incref(event ? event : json_null());
    return 0;
}

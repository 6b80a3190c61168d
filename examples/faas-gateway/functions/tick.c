/*
 * tick.c - a scheduled function in a shared object, for the faas-gateway
 * demo: "schedule:rate(1 minute)" invokes it asynchronously with
 * EventBridge's Scheduled Event, and it logs when the fire was due and
 * which rule fired. Invoked directly (the Invoke API) it logs what it got.
 *
 * Build: cc -std=c11 -fPIC -shared -Iinclude -o tick.so tick.c
 */
#include <stdlib.h>

#include "faas.h"

int tick(struct faas_ctx *ctx, json_t *event, json_t **result);

int tick(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *type = json_string_value(json_object_get(event, "detail-type"));
    const char *when = json_string_value(json_object_get(event, "time"));
    const char *rule =
        json_string_value(json_array_get(json_object_get(event, "resources"), 0));
    char *text;

    if (type && when) {
        faas_ctx_log(ctx, "%s due at %s from %s", type, when, rule ? rule : "?");
    } else {
        text = json_dumps(event, JSON_COMPACT | JSON_ENCODE_ANY);
        faas_ctx_log(ctx, "invoked directly with %s", text ? text : "?");
        free(text);
    }
    *result = json_pack("{s:b, s:s}", "ok", 1, "request_id", faas_ctx_request_id(ctx));
    return *result ? 0 : faas_ctx_fail(ctx, "OutOfMemory", "cannot build the answer");
}

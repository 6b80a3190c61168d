/*
 * orders.c - an idempotent function in a shared object, for the
 * faas-gateway demo, behind "api:POST /orders".
 *
 * The gateway's config gives it an idempotency policy keyed on
 * "body.order_id" (the key path walks into the JSON text of an API Gateway
 * body): the first request with an order id runs the handler and its
 * answer is stored; a duplicate within the TTL gets the stored answer
 * without running it again. The answer carries the request id of the
 * invocation that made it ("confirmation"), so a replay is easy to see.
 * The validated part is the whole body: the same order id with another
 * body is refused (422).
 *
 * Invoked directly (the Invoke API), the event is {"body": {...}}, the
 * same path; the answer is then plain JSON instead of an HTTP response.
 *
 * Build: cc -std=c11 -fPIC -shared -Iinclude -o orders.so orders.c
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "faas.h"

int orders(struct faas_ctx *ctx, json_t *event, json_t **result);

/* An HTTP response of payload 2.0, or `doc` itself for a direct call;
 * takes `doc`. */
static int answer(struct faas_ctx *ctx, int http, int status, json_t *doc, json_t **result)
{
    char *body;

    if (!doc)
        return faas_ctx_fail(ctx, "OutOfMemory", "cannot build the answer");
    if (!http) {
        *result = doc;
        return 0;
    }
    body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!body)
        return faas_ctx_fail(ctx, "OutOfMemory", "cannot build the body");
    *result = json_pack("{s:i, s:{s:s}, s:s}", "statusCode", status, "headers",
                        "content-type", "application/json", "body", body);
    free(body);
    return *result ? 0 : faas_ctx_fail(ctx, "OutOfMemory", "cannot build the response");
}

/* The order: the body as JSON text (HTTP) or as an object (direct). */
static json_t *order_of(json_t *event)
{
    json_t *body = json_object_get(event, "body");

    if (json_is_object(body))
        return json_incref(body);
    if (json_is_string(body))
        return json_loads(json_string_value(body), 0, NULL);
    return NULL;
}

int orders(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    int http = json_object_get(json_object_get(event, "requestContext"), "http") != NULL;
    json_t *order = order_of(event);
    const char *id = json_string_value(json_object_get(order, "order_id"));
    const char *item = json_string_value(json_object_get(order, "item"));
    json_t *qty = json_object_get(order, "quantity");
    time_t now = time(NULL);
    char when[32];
    struct tm tm;
    int rc;

    if (!id || !item || !json_is_integer(qty) || json_integer_value(qty) < 1) {
        json_decref(order);
        faas_ctx_log(ctx, "refused: not an order");
        return answer(ctx, http, 400,
                      json_pack("{s:s}", "message",
                                "expected {\"order_id\": string, \"item\": string, "
                                "\"quantity\": positive integer}"),
                      result);
    }
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    faas_ctx_log(ctx, "order %s: %lld x %s accepted", id, (long long)json_integer_value(qty),
                 item);
    rc = answer(ctx, http, 201,
                json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "order_id", id, "item", item,
                          "quantity", json_integer_value(qty), "status", "accepted",
                          "confirmation", faas_ctx_request_id(ctx), "accepted_at", when),
                result);
    json_decref(order);
    return rc;
}
